//! A backup's `manifest.json`: what the backup holds and the figures a restore is checked
//! against, and the checksums of its files.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gema_store::backup::{DatabaseSummary, LedgerTotal};
use serde::{Deserialize, Serialize};

pub(crate) const MANIFEST: &str = "manifest.json";
/// The layout version this build writes and reads.
pub(crate) const FORMAT: u32 = 1;

/// Which database a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BackupBackend {
    Sqlite,
    Postgres,
}

impl BackupBackend {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BackupBackend::Sqlite => "sqlite",
            BackupBackend::Postgres => "postgres",
        }
    }

    /// The database file's name inside the backup.
    pub(crate) fn database_file(self) -> &'static str {
        match self {
            BackupBackend::Sqlite => "database.sqlite",
            BackupBackend::Postgres => "database.pgdump",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub format: u32,
    /// RFC 3339, UTC: when the database's snapshot was taken.
    pub created_at: String,
    pub gema_version: String,
    pub backend: BackupBackend,
    /// PostgreSQL only: the server's `server_version_num` and the `pg_dump` that dumped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresDump>,
    /// The highest migration applied to the backed-up database.
    pub schema_version: i64,
    pub row_counts: BTreeMap<String, i64>,
    /// Per ledger account (merchant and entry type): entries and their sum.
    pub ledger_totals: Vec<LedgerTotal>,
    /// Every file of the backup but this manifest, by its path inside the backup.
    pub files: BTreeMap<String, FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresDump {
    pub server_version_num: i64,
    pub pg_dump_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileEntry {
    /// Lower-case hex.
    pub sha256: String,
    pub size: u64,
    /// Unix permission bits (e.g. 384 = 0o600 for a private key), restored as they were.
    pub mode: u32,
}

impl Manifest {
    pub(crate) fn summary(&self) -> DatabaseSummary {
        DatabaseSummary {
            schema_version: self.schema_version,
            row_counts: self.row_counts.clone(),
            ledger_totals: self.ledger_totals.clone(),
        }
    }

    /// Reads and checks `<dir>/manifest.json`; an error names what is wrong with it.
    pub(crate) fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is {} a backup made by `gema backup`?)",
                path.display(),
                dir.display()
            )
        })?;
        let mut deserializer = serde_json::Deserializer::from_str(&text);
        let manifest: Manifest = serde_path_to_error::deserialize(&mut deserializer)
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        anyhow::ensure!(
            manifest.format == FORMAT,
            "{} has format {}; this gema reads format {FORMAT}",
            path.display(),
            manifest.format
        );
        for name in manifest.files.keys() {
            anyhow::ensure!(
                safe_relative(name).is_some(),
                "{} lists {name:?}, which is not a plain path inside the backup",
                path.display()
            );
        }
        let database = manifest.backend.database_file();
        anyhow::ensure!(
            manifest.files.contains_key(database),
            "{} lists no {database} for its {} backend",
            path.display(),
            manifest.backend.as_str()
        );
        Ok(manifest)
    }

    pub(crate) fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(MANIFEST);
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        sync_file(&path)
    }
}

/// `name` as a relative path of normal components only (no `..`, no root): where a
/// manifest's file may be.
pub(crate) fn safe_relative(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    let plain = !name.is_empty()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    plain.then(|| path.to_path_buf())
}

/// The SHA-256 (hex), size and mode of a file.
pub(crate) fn file_entry(path: &Path) -> anyhow::Result<FileEntry> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let metadata = file.metadata()?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        context.update(&buf[..n]);
    }
    Ok(FileEntry {
        sha256: hex::encode(context.finish().as_ref()),
        size,
        mode: mode_of(&metadata),
    })
}

#[cfg(unix)]
fn mode_of(metadata: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode_of(_: &std::fs::Metadata) -> u32 {
    0o644
}

/// Sets a file's permission bits (Unix; elsewhere nothing).
pub(crate) fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Flushes a file (or a directory's entries) to disk.
pub(crate) fn sync_file(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", path.display()))
}

/// Every regular file under `dir`, as paths relative to it with `/` separators, sorted.
pub(crate) fn files_under(dir: &Path) -> anyhow::Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else {
                let relative = path.strip_prefix(root)?;
                let parts: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_backup_files() {
        assert!(safe_relative("certs/ca.pem").is_some());
        assert!(safe_relative("database.sqlite").is_some());
        for bad in ["", "/etc/passwd", "../outside", "certs/../../x", "./x"] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_malformed_manifest_is_an_error_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(MANIFEST),
            "{\"format\": 1, \"created_at\": 5}",
        )
        .unwrap();
        let err = format!("{:#}", Manifest::read(dir.path()).unwrap_err());
        assert!(err.contains("created_at"), "{err}");
        std::fs::write(dir.path().join(MANIFEST), "not json").unwrap();
        let err = format!("{:#}", Manifest::read(dir.path()).unwrap_err());
        assert!(err.contains("not a valid manifest"), "{err}");
    }

    #[test]
    fn a_file_entry_is_its_sha256_size_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "abc").unwrap();
        set_mode(&path, 0o600).unwrap();
        let entry = file_entry(&path).unwrap();
        assert_eq!(
            entry.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(entry.size, 3);
        #[cfg(unix)]
        assert_eq!(entry.mode, 0o600);
    }
}
