//! The restore drill, `gema restore --verify`: checks every file against the manifest,
//! restores the database into a scratch place (a temporary SQLite file, or a scratch
//! PostgreSQL database created and dropped on the configured server), compares its row
//! counts and ledger totals with the manifest, runs the migrations (the backup may be
//! older than this gema) and compares the ledger again. Nothing configured is touched.

use std::path::Path;

use anyhow::Context;
use gema_store::backup::{DatabaseSummary, ScratchDatabase};

use super::manifest::{BackupBackend, Manifest};
use crate::config::Config;

/// The drill's findings, one line per check.
#[derive(Debug, Default)]
pub struct VerifyReport {
    lines: Vec<(bool, String)>,
}

impl VerifyReport {
    fn ok(&mut self, line: impl Into<String>) {
        self.lines.push((true, line.into()));
    }

    fn fail(&mut self, line: impl Into<String>) {
        self.lines.push((false, line.into()));
    }

    /// How many checks failed.
    pub fn failures(&self) -> usize {
        self.lines.iter().filter(|(ok, _)| !ok).count()
    }

    /// The report as printed: `ok` or `FAIL` before each line, a verdict last.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (ok, line) in &self.lines {
            out.push_str(if *ok { "ok    " } else { "FAIL  " });
            out.push_str(line);
            out.push('\n');
        }
        match self.failures() {
            0 => out.push_str("verification passed\n"),
            n => out.push_str(&format!("verification FAILED: {n} problem(s)\n")),
        }
        out
    }
}

/// Runs the drill on the backup at `path`. An `Err` means the drill could not run at all
/// (no manifest, no server to restore a PostgreSQL dump on); mismatches are in the report.
pub async fn verify(config: &Config, path: &Path) -> anyhow::Result<VerifyReport> {
    let manifest = Manifest::read(path)?;
    let mut report = VerifyReport::default();
    report.ok(format!(
        "manifest: {} backup of {} by gema {}, schema version {}, {} files",
        manifest.backend.as_str(),
        manifest.created_at,
        manifest.gema_version,
        manifest.schema_version,
        manifest.files.len()
    ));

    let damaged = super::damaged_files(path, &manifest)?;
    if damaged.is_empty() {
        report.ok(format!(
            "checksums: all {} files match the manifest",
            manifest.files.len()
        ));
    }
    for problem in damaged {
        report.fail(problem);
    }
    for name in manifest.files.keys().filter(|n| n.ends_with(".pem")) {
        match gema_certs::certificate_info(&path.join(name)) {
            Ok(info) => report.ok(format!(
                "{name}: a certificate with {} days left",
                info.days_left(time::OffsetDateTime::now_utc())
            )),
            Err(err) => report.fail(format!("{name}: not a readable certificate: {err}")),
        }
    }

    let expected = manifest.summary();
    let database = path.join(manifest.backend.database_file());
    match manifest.backend {
        BackupBackend::Sqlite => {
            if let Err(err) = drill_sqlite(&database, &expected, &mut report).await {
                report.fail(format!("restoring the SQLite copy failed: {err:#}"));
            }
        }
        BackupBackend::Postgres => {
            let server = config.database_url();
            anyhow::ensure!(
                server.starts_with("postgres://") || server.starts_with("postgresql://"),
                "verifying a PostgreSQL backup needs a PostgreSQL server to restore it on: set \
                 [database] url (GEMA_DATABASE__URL) to a database there whose role may \
                 CREATE DATABASE; the drill creates gema_verify_<random> and drops it"
            );
            let tool = super::pg_tools::find("pg_restore").await?;
            let scratch = ScratchDatabase::create(&server).await.with_context(|| {
                format!(
                    "creating a scratch database on {}",
                    gema_store::redact_url(&server)
                )
            })?;
            report.ok(format!("scratch database {} created", scratch.name()));
            let drilled = drill_postgres(&tool, &scratch, &database, &expected, &mut report).await;
            if let Err(err) = drilled {
                report.fail(format!("restoring the dump failed: {err:#}"));
            }
            let name = scratch.name().to_owned();
            match scratch.drop_database().await {
                Ok(()) => report.ok(format!("scratch database {name} dropped")),
                Err(err) => report.fail(format!(
                    "dropping the scratch database {name} failed ({err}); drop it by hand"
                )),
            }
        }
    }
    Ok(report)
}

async fn drill_sqlite(
    database: &Path,
    expected: &DatabaseSummary,
    report: &mut VerifyReport,
) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let file = scratch.path().join("gema.db");
    std::fs::copy(database, &file)
        .with_context(|| format!("copying {} to a scratch file", database.display()))?;
    let restored = gema_store::backup::sqlite_summary(&file).await?;
    compare("restored", expected, &restored, report);
    let url = format!("sqlite://{}", file.display());
    let store = gema_store::connect(&url, &gema_store::ConnectOptions::default()).await?;
    match store.integrity_check().await? {
        lines if lines == ["ok"] => report.ok("SQLite integrity_check: ok"),
        lines => report.fail(format!("SQLite integrity_check: {}", lines.join("; "))),
    }
    let applied = store
        .migrate()
        .await
        .context("migrating the restored copy")?;
    drop(store);
    let migrated = gema_store::backup::sqlite_summary(&file).await?;
    after_migrations(applied, expected, &migrated, report);
    Ok(())
}

async fn drill_postgres(
    tool: &super::pg_tools::PgTool,
    scratch: &ScratchDatabase,
    dump: &Path,
    expected: &DatabaseSummary,
    report: &mut VerifyReport,
) -> anyhow::Result<()> {
    super::pg_tools::restore(tool, scratch.url(), dump, false).await?;
    report.ok(format!("pg_restore into {}: done", scratch.name()));
    let restored = gema_store::backup::postgres_summary(scratch.url()).await?;
    compare("restored", expected, &restored, report);
    let store = gema_store::connect(scratch.url(), &gema_store::ConnectOptions::default()).await?;
    let applied = store
        .migrate()
        .await
        .context("migrating the restored copy")?;
    drop(store);
    let migrated = gema_store::backup::postgres_summary(scratch.url()).await?;
    after_migrations(applied, expected, &migrated, report);
    Ok(())
}

/// After migrating: the ledger must be what the manifest says (migrations may add tables
/// and rows elsewhere, never ledger postings).
fn after_migrations(
    applied: usize,
    expected: &DatabaseSummary,
    migrated: &DatabaseSummary,
    report: &mut VerifyReport,
) {
    report.ok(format!(
        "migrations: {applied} applied, schema version {} → {}",
        expected.schema_version, migrated.schema_version
    ));
    if migrated.ledger_totals == expected.ledger_totals {
        report.ok("ledger totals after the migrations: unchanged");
    } else {
        report.fail("ledger totals after the migrations differ from the manifest");
    }
}

/// Compares a restored database's figures with the manifest's, a line per difference.
fn compare(
    what: &str,
    expected: &DatabaseSummary,
    found: &DatabaseSummary,
    report: &mut VerifyReport,
) {
    if found.schema_version == expected.schema_version {
        report.ok(format!("{what} schema version: {}", found.schema_version));
    } else {
        report.fail(format!(
            "{what} schema version {} but the manifest says {}",
            found.schema_version, expected.schema_version
        ));
    }

    let mut count_mismatches = 0;
    let tables: std::collections::BTreeSet<&String> = expected
        .row_counts
        .keys()
        .chain(found.row_counts.keys())
        .collect();
    for table in &tables {
        let want = expected.row_counts.get(*table);
        let have = found.row_counts.get(*table);
        if want != have {
            count_mismatches += 1;
            let show = |n: Option<&i64>| n.map_or("no table".to_owned(), |n| format!("{n} rows"));
            report.fail(format!(
                "{what} table {table}: {} but the manifest says {}",
                show(have),
                show(want)
            ));
        }
    }
    if count_mismatches == 0 {
        let rows: i64 = found.row_counts.values().sum();
        report.ok(format!(
            "{what} row counts: all {} tables match ({rows} rows)",
            tables.len()
        ));
    }

    if found.ledger_totals == expected.ledger_totals {
        let amount: i64 = found.ledger_totals.iter().map(|t| t.amount).sum();
        report.ok(format!(
            "{what} ledger totals: all {} accounts match (net {amount})",
            found.ledger_totals.len()
        ));
    } else {
        for want in &expected.ledger_totals {
            let have = found
                .ledger_totals
                .iter()
                .find(|t| t.merchant_id == want.merchant_id && t.entry_type == want.entry_type);
            if have != Some(want) {
                report.fail(format!(
                    "{what} ledger {} {}: {} but the manifest says {} entries, {}",
                    want.merchant_id,
                    want.entry_type,
                    have.map_or("absent".to_owned(), |h| format!(
                        "{} entries, {}",
                        h.entries, h.amount
                    )),
                    want.entries,
                    want.amount
                ));
            }
        }
        for have in &found.ledger_totals {
            let known = expected
                .ledger_totals
                .iter()
                .any(|t| t.merchant_id == have.merchant_id && t.entry_type == have.entry_type);
            if !known {
                report.fail(format!(
                    "{what} ledger {} {}: {} entries, {}, which the manifest does not list",
                    have.merchant_id, have.entry_type, have.entries, have.amount
                ));
            }
        }
    }
}
