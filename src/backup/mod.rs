//! `gema backup` and `gema restore`: a consistent copy of the database and of the data
//! directory's certificates while the daemon serves, put back into an empty place, and the
//! restore drill (`restore --verify`, in `verify`).
//!
//! A backup is a directory `gema-backup-<UTC time>` holding the database (`database.sqlite`,
//! a `VACUUM INTO` copy; or `database.pgdump`, `pg_dump --format=custom`), `certs/` (the
//! development CA and server certificate with their keys, modes kept) and `manifest.json`
//! (`manifest`). It is written as `.gema-backup-<time>.partial` and renamed when complete,
//! so a directory with the final name is always whole. The manifest's figures are read
//! from the very snapshot that was copied (the copied SQLite file; PostgreSQL's exported
//! snapshot, which `pg_dump` shares), so they describe the backup exactly.
//!
//! A restore never overwrites anything unless told `--force`, and never runs beside a
//! daemon on the same SQLite file (it takes the daemon's lock). The SQL is in
//! `gema_store::backup`; `pg_tools` runs PostgreSQL's own tools.

mod manifest;
mod pg_tools;
mod verify;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use gema_store::backup::{PgSnapshot, sqlite_file};
use time::OffsetDateTime;

use crate::config::Config;
use manifest::{BackupBackend, FORMAT, FileEntry, Manifest, PostgresDump};

pub use verify::{VerifyReport, verify};

/// The prefix of a complete backup's directory name.
const PREFIX: &str = "gema-backup-";
/// The data directory's certificates (see `crate::certificates::development_pki`).
const CERTS: &str = "certs";

/// Which backend a configuration uses.
fn configured_backend(config: &Config) -> anyhow::Result<BackupBackend> {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        Ok(BackupBackend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(BackupBackend::Postgres)
    } else {
        anyhow::bail!(
            "unsupported database URL {}: expected sqlite://… or postgres://…",
            gema_store::redact_url(&url)
        )
    }
}

fn configured_sqlite_file(config: &Config) -> anyhow::Result<PathBuf> {
    let url = config.database_url();
    sqlite_file(&url).with_context(|| {
        format!(
            "{} names no SQLite file (an in-memory database cannot be backed up or restored)",
            gema_store::redact_url(&url)
        )
    })
}

/// Writes a backup into a new directory under `out` and returns its path. With `keep`, then
/// deletes the oldest complete backups in `out` beyond the newest `keep` (never anything
/// else: only directories named `gema-backup-<time>` that hold a manifest).
pub async fn backup(config: &Config, out: &Path, keep: Option<usize>) -> anyhow::Result<PathBuf> {
    if let Some(keep) = keep {
        anyhow::ensure!(
            keep >= 1,
            "--keep must be at least 1 (the backup just made)"
        );
    }
    create_private_dir_all(out)?;
    let started = OffsetDateTime::now_utc();
    let stamp = started.format(time::macros::format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))?;
    let name = format!("{PREFIX}{stamp}");
    let done = out.join(&name);
    anyhow::ensure!(
        !done.exists(),
        "{} already exists; wait a second and run again",
        done.display()
    );
    let partial = out.join(format!(".{name}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing the unfinished {}", partial.display()))?;
    }
    create_private_dir_all(&partial)?;
    match write_backup(config, &partial, started).await {
        Ok(()) => {}
        Err(err) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(err);
        }
    }
    std::fs::rename(&partial, &done)
        .with_context(|| format!("renaming {} to {}", partial.display(), done.display()))?;
    manifest::sync_file(out)?;
    if let Some(keep) = keep {
        for old in prune(out, keep)? {
            eprintln!("removed the old backup {}", old.display());
        }
    }
    Ok(done)
}

async fn write_backup(config: &Config, dir: &Path, started: OffsetDateTime) -> anyhow::Result<()> {
    let backend = configured_backend(config)?;
    let database = dir.join(backend.database_file());
    let url = config.database_url();
    let (summary, postgres) = match backend {
        BackupBackend::Sqlite => {
            let source = configured_sqlite_file(config)?;
            anyhow::ensure!(
                source.is_file(),
                "there is no database at {}; is data_dir (or [database] url) the daemon's?",
                source.display()
            );
            gema_store::backup::sqlite_snapshot(
                &source,
                &database,
                Duration::from_millis(config.database.busy_timeout_ms.max(5_000)),
            )
            .await
            .with_context(|| format!("copying {} (VACUUM INTO)", source.display()))?;
            let summary = gema_store::backup::sqlite_summary(&database)
                .await
                .context("reading the copy's row counts")?;
            (summary, None)
        }
        BackupBackend::Postgres => {
            let pg_dump = pg_tools::find("pg_dump").await?;
            let mut snapshot = PgSnapshot::export(&url).await.with_context(|| {
                format!("opening a snapshot of {}", gema_store::redact_url(&url))
            })?;
            pg_tools::check_not_older(&pg_dump, snapshot.server_version_num())?;
            let summary = snapshot
                .summary()
                .await
                .context("counting rows in the snapshot")?;
            let dumped = pg_tools::dump(&pg_dump, &url, snapshot.id(), &database).await;
            let server_version_num = snapshot.server_version_num();
            snapshot.close().await.context("ending the snapshot")?;
            dumped?;
            (
                summary,
                Some(PostgresDump {
                    server_version_num,
                    pg_dump_version: pg_dump.version_line.clone(),
                }),
            )
        }
    };

    // It holds credential hashes (and on PostgreSQL the development CA's key).
    manifest::set_mode(&database, 0o600)?;

    let certs = config.data_dir.join(CERTS);
    if certs.is_dir() {
        let target = dir.join(CERTS);
        create_private_dir_all(&target)?;
        for name in manifest::files_under(&certs)? {
            copy_with_mode(&certs.join(&name), &target.join(&name))?;
        }
    }

    let mut files = std::collections::BTreeMap::new();
    for name in manifest::files_under(dir)? {
        let path = dir.join(&name);
        manifest::sync_file(&path)?;
        files.insert(name, manifest::file_entry(&path)?);
    }
    Manifest {
        format: FORMAT,
        created_at: started.format(&time::format_description::well_known::Rfc3339)?,
        gema_version: env!("CARGO_PKG_VERSION").to_owned(),
        backend,
        postgres,
        schema_version: summary.schema_version,
        row_counts: summary.row_counts,
        ledger_totals: summary.ledger_totals,
        files,
    }
    .write(dir)?;
    manifest::sync_file(dir)?;
    Ok(())
}

/// Copies a file, the copy created private (0600) and then given the original's mode, so a
/// key is never readable by others on the way.
fn copy_with_mode(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mode = manifest::file_entry(from)?.mode;
    write_private(to, &mut std::fs::File::open(from)?)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    manifest::set_mode(to, mode)
}

/// Creates (or truncates) `path` readable by its owner only and fills it from `from`, synced.
fn write_private(path: &Path, from: &mut impl std::io::Read) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        create_private_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::copy(from, &mut file).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()?;
    Ok(())
}

fn create_private_dir_all(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Deletes the complete backups in `out` older than its newest `keep`; returns them.
fn prune(out: &Path, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut complete: Vec<PathBuf> = std::fs::read_dir(out)
        .with_context(|| format!("listing {}", out.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(PREFIX))
                .is_some_and(|stamp| {
                    stamp.len() == 16 && stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T'
                })
                && path.join(manifest::MANIFEST).is_file()
        })
        .collect();
    // The names are UTC times of fixed width: by name is by age.
    complete.sort();
    let excess = complete.len().saturating_sub(keep);
    let old: Vec<PathBuf> = complete.into_iter().take(excess).collect();
    for path in &old {
        std::fs::remove_dir_all(path)
            .with_context(|| format!("removing the old backup {}", path.display()))?;
    }
    Ok(old)
}

/// The files of a backup whose checksum, size or presence differ from its manifest, and
/// files it holds that the manifest does not list; each as a sentence.
fn damaged_files(dir: &Path, manifest: &Manifest) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for (name, expected) in &manifest.files {
        let path = dir.join(name);
        if !path.is_file() {
            problems.push(format!("{name}: missing"));
            continue;
        }
        let found: FileEntry = manifest::file_entry(&path)?;
        if found.sha256 != expected.sha256 || found.size != expected.size {
            problems.push(format!(
                "{name}: checksum mismatch (manifest sha256 {}, {} bytes; file sha256 {}, {} bytes)",
                expected.sha256, expected.size, found.sha256, found.size
            ));
        }
    }
    for name in manifest::files_under(dir)? {
        if name != manifest::MANIFEST && !manifest.files.contains_key(&name) {
            problems.push(format!("{name}: not listed in the manifest"));
        }
    }
    Ok(problems)
}

/// Restores the backup at `from` into the configured data directory and database. Refuses a
/// damaged backup, a backup of the other backend, a SQLite file a daemon holds, and (unless
/// `force`) a target that holds anything.
pub async fn restore(config: &Config, from: &Path, force: bool) -> anyhow::Result<()> {
    let manifest = Manifest::read(from)?;
    let damaged = damaged_files(from, &manifest)?;
    anyhow::ensure!(
        damaged.is_empty(),
        "the backup {} is damaged, nothing was restored:\n  {}\n(`gema restore --verify` \
         prints the full report)",
        from.display(),
        damaged.join("\n  ")
    );
    let backend = configured_backend(config)?;
    anyhow::ensure!(
        backend == manifest.backend,
        "{} is a {} backup but the configured database is {}; set [database] url \
         (GEMA_DATABASE__URL) to the kind of database it was taken from",
        from.display(),
        manifest.backend.as_str(),
        backend.as_str()
    );

    // What is there already, each as what would be overwritten.
    let mut occupied: Vec<String> = Vec::new();
    let certs_target = config.data_dir.join(CERTS);
    let cert_files: Vec<&String> = manifest
        .files
        .keys()
        .filter(|name| name.starts_with("certs/"))
        .collect();
    for name in &cert_files {
        let relative = name.trim_start_matches("certs/");
        let path = certs_target.join(relative);
        if path.exists() {
            occupied.push(format!("the file {}", path.display()));
        }
    }

    let url = config.database_url();
    // Held until the restore is done: no daemon starts on the file meanwhile.
    let mut sqlite_lock = None;
    let database_file = from.join(manifest.backend.database_file());
    let mut pg_restore = None;
    match backend {
        BackupBackend::Sqlite => {
            let target = configured_sqlite_file(config)?;
            sqlite_lock = crate::app::lock_sqlite_database(config).map_err(|err| {
                anyhow::anyhow!(
                    "{err:#}\nA restore replaces the database file: stop the daemon first \
                     (systemctl stop gema)"
                )
            })?;
            if target.exists() {
                let tables = gema_store::backup::sqlite_tables(&target)
                    .await
                    .with_context(|| format!("reading {}", target.display()))?;
                if !tables.is_empty() {
                    occupied.push(format!(
                        "the database {} ({} tables)",
                        target.display(),
                        tables.len()
                    ));
                }
            }
        }
        BackupBackend::Postgres => {
            let tool = pg_tools::find("pg_restore").await?;
            if let Some(dump) = &manifest.postgres
                && let Some(major) = pg_tools::major_version(&dump.pg_dump_version)
            {
                anyhow::ensure!(
                    tool.major >= major,
                    "{} is PostgreSQL {} but the dump was written by PostgreSQL {major}'s \
                     pg_dump, which it cannot read; install postgresql-client-{major} or newer",
                    tool.path.display(),
                    tool.major
                );
            }
            pg_restore = Some(tool);
            let tables = gema_store::backup::postgres_tables(&url)
                .await
                .with_context(|| format!("connecting to {}", gema_store::redact_url(&url)))?;
            if !tables.is_empty() {
                occupied.push(format!(
                    "the database {} ({} tables, among them {})",
                    gema_store::redact_url(&url),
                    tables.len(),
                    tables
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }

    if !occupied.is_empty() {
        anyhow::ensure!(
            force,
            "refusing to restore: the target is not empty:\n  {}\nA restore goes only into an \
             empty data directory and database. Restore elsewhere (--data-dir, \
             GEMA_DATABASE__URL), or pass --force to overwrite them, losing what they hold",
            occupied.join("\n  ")
        );
        eprintln!(
            "WARNING: --force: overwriting what is there; its current contents are lost:\n  {}",
            occupied.join("\n  ")
        );
    }

    match backend {
        BackupBackend::Sqlite => {
            let target = configured_sqlite_file(config)?;
            let partial = PathBuf::from(format!("{}.restore-partial", target.display()));
            write_private(&partial, &mut std::fs::File::open(&database_file)?)?;
            // An old write-ahead log would be replayed into the restored file: remove it
            // (no daemon holds the file: we hold its lock).
            for suffix in ["-wal", "-shm", "-journal"] {
                let side = PathBuf::from(format!("{}{suffix}", target.display()));
                if side.exists() {
                    std::fs::remove_file(&side)
                        .with_context(|| format!("removing {}", side.display()))?;
                }
            }
            std::fs::rename(&partial, &target)
                .with_context(|| format!("moving the restored database to {}", target.display()))?;
            if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
                manifest::sync_file(parent)?;
            }
            println!("restored the database to {}", target.display());
        }
        BackupBackend::Postgres => {
            let tool = pg_restore.context("pg_restore was not looked up")?;
            pg_tools::restore(&tool, &url, &database_file, force)
                .await
                .context("restoring the dump")?;
            println!(
                "restored the database into {}",
                gema_store::redact_url(&url)
            );
        }
    }

    for name in cert_files {
        let relative = name.trim_start_matches("certs/");
        let target = certs_target.join(relative);
        let partial = PathBuf::from(format!("{}.restore-partial", target.display()));
        copy_with_mode(&from.join(name), &partial)?;
        std::fs::rename(&partial, &target)
            .with_context(|| format!("moving {} into place", target.display()))?;
        println!("restored {}", target.display());
    }
    drop(sqlite_lock);
    println!(
        "restore complete (backup of {}, schema version {}); start the daemon: it applies any \
         newer migrations",
        manifest.created_at, manifest.schema_version
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_complete_backups_and_touches_nothing_else() {
        let out = tempfile::tempdir().unwrap();
        let make = |name: &str, complete: bool| {
            let dir = out.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            if complete {
                std::fs::write(dir.join(manifest::MANIFEST), "{}").unwrap();
            }
        };
        make("gema-backup-20261201T030000Z", true);
        make("gema-backup-20261202T030000Z", true);
        make("gema-backup-20261203T030000Z", true);
        make("gema-backup-20261130T030000Z", false);
        make(".gema-backup-20261204T030000Z.partial", true);
        make("gema-backup-notes", true);
        let removed = prune(out.path(), 2).unwrap();
        assert_eq!(
            removed,
            vec![out.path().join("gema-backup-20261201T030000Z")]
        );
        let mut left: Vec<String> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".gema-backup-20261204T030000Z.partial",
                "gema-backup-20261130T030000Z",
                "gema-backup-20261202T030000Z",
                "gema-backup-20261203T030000Z",
                "gema-backup-notes",
            ]
        );
    }
}
