//! PostgreSQL's own dump tools, `pg_dump` and `pg_restore`: finding them, checking that the
//! client is not older than the server, and running them without the password on their
//! command line (it goes in `PGPASSWORD`, which other users cannot read in `ps`).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;

/// A found `pg_dump` or `pg_restore` and its major version.
#[derive(Debug, Clone)]
pub(crate) struct PgTool {
    pub path: PathBuf,
    /// `pg_dump (PostgreSQL) 16.4 (Debian 16.4-1)` → the whole line.
    pub version_line: String,
    pub major: u32,
}

/// The newest `tool` on `PATH` or in `/usr/lib/postgresql/*/bin`.
pub(crate) async fn find(tool: &str) -> anyhow::Result<PgTool> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join(tool)));
    }
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        candidates.extend(versions.flatten().map(|v| v.path().join("bin").join(tool)));
    }
    let mut best: Option<PgTool> = None;
    for path in candidates.into_iter().filter(|p| p.is_file()) {
        let Ok(output) = tokio::process::Command::new(&path)
            .arg("--version")
            .output()
            .await
        else {
            continue;
        };
        let version_line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let Some(major) = major_version(&version_line) else {
            continue;
        };
        if best.as_ref().is_none_or(|b| major > b.major) {
            best = Some(PgTool {
                path,
                version_line,
                major,
            });
        }
    }
    best.with_context(|| {
        format!(
            "{tool} not found on PATH or in /usr/lib/postgresql/*/bin; install the PostgreSQL \
             client of the server's version (Debian: apt-get install postgresql-client-<major>)"
        )
    })
}

/// The major version in `pg_dump --version`'s line (`pg_dump (PostgreSQL) 16.4 …` → 16;
/// `9.6.24` → 9).
pub(crate) fn major_version(line: &str) -> Option<u32> {
    let after = line.split_once(')').map_or(line, |(_, rest)| rest).trim();
    let number = after.split_whitespace().next()?;
    number.split('.').next()?.parse().ok()
}

/// The major version of a `server_version_num` (160004 → 16; 90624 → 9).
pub(crate) fn server_major(version_num: i64) -> u32 {
    u32::try_from(version_num / 10_000).unwrap_or(0)
}

/// Refuses a client older than the server: its dump could miss what it does not know.
pub(crate) fn check_not_older(tool: &PgTool, server_version_num: i64) -> anyhow::Result<()> {
    let server = server_major(server_version_num);
    anyhow::ensure!(
        tool.major >= server,
        "{} is PostgreSQL {} but the server is PostgreSQL {server}: a client older than the \
         server cannot dump it faithfully; install postgresql-client-{server} (or newer) and \
         run again",
        tool.path.display(),
        tool.major
    );
    Ok(())
}

/// A libpq connection string without the password, and the password (percent-decoded), if
/// the URL has one.
pub(crate) fn split_password(url: &str) -> (String, Option<String>) {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority_end, _) = rest
            .char_indices()
            .find(|(_, c)| *c == '/' || *c == '?')
            .unwrap_or((rest.len(), ' '));
        let authority = &rest[..authority_end];
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, password)) = userinfo.split_once(':')
        {
            return (
                format!("{scheme}://{user}@{host}{}", &rest[authority_end..]),
                Some(percent_decode(password)),
            );
        }
    }
    (url.to_owned(), None)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `tool` with `args` against the database `url`, the password in `PGPASSWORD`;
/// an error carries the tool's stderr.
pub(crate) async fn run(tool: &PgTool, url: &str, args: &[&str]) -> anyhow::Result<()> {
    let (dbname, password) = split_password(url);
    let mut command = tokio::process::Command::new(&tool.path);
    command
        .arg(format!("--dbname={dbname}"))
        .arg("--no-password")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match password {
        Some(password) => command.env("PGPASSWORD", password),
        None => command.env_remove("PGPASSWORD"),
    };
    let name = tool
        .path
        .file_name()
        .map_or_else(|| "tool".into(), |n| n.to_string_lossy());
    let output = command
        .output()
        .await
        .with_context(|| format!("running {}", tool.path.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{name} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// `pg_dump --format=custom` of `url` at the exported `snapshot` into `file`.
pub(crate) async fn dump(
    tool: &PgTool,
    url: &str,
    snapshot: &str,
    file: &Path,
) -> anyhow::Result<()> {
    let file = format!("--file={}", file.display());
    let snapshot = format!("--snapshot={snapshot}");
    run(tool, url, &["--format=custom", &snapshot, &file]).await
}

/// `pg_restore` of `file` into `url` in one transaction; with `clean`, dropping the
/// objects it restores first.
pub(crate) async fn restore(
    tool: &PgTool,
    url: &str,
    file: &Path,
    clean: bool,
) -> anyhow::Result<()> {
    let file = file.display().to_string();
    let mut args = vec![
        "--single-transaction",
        "--exit-on-error",
        "--no-owner",
        "--no-privileges",
    ];
    if clean {
        args.extend(["--clean", "--if-exists"]);
    }
    args.push(&file);
    run(tool, url, &args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_tools_and_the_server() {
        assert_eq!(
            major_version("pg_dump (PostgreSQL) 16.4 (Debian 16.4-1.pgdg120+1)"),
            Some(16)
        );
        assert_eq!(major_version("pg_restore (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(major_version("garbage"), None);
        assert_eq!(server_major(160_004), 16);
        assert_eq!(server_major(90_624), 9);
        let old = PgTool {
            path: "/usr/bin/pg_dump".into(),
            version_line: String::new(),
            major: 15,
        };
        let err = check_not_older(&old, 160_004).unwrap_err().to_string();
        assert!(
            err.contains("PostgreSQL 15") && err.contains("PostgreSQL 16"),
            "{err}"
        );
        assert!(check_not_older(&old, 150_002).is_ok());
    }

    #[test]
    fn the_password_leaves_the_url_for_the_environment() {
        assert_eq!(
            split_password("postgres://gema:s%40cret@db:5432/gema?sslmode=require"),
            (
                "postgres://gema@db:5432/gema?sslmode=require".to_owned(),
                Some("s@cret".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://postgres@127.0.0.1:5432/postgres"),
            (
                "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
                None
            )
        );
    }
}
