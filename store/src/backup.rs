//! The database side of backups (`gema backup`, `gema restore`): a consistent copy of a
//! live SQLite file, the figures a backup's manifest records and a restore is checked
//! against (rows per table, ledger totals per account, the schema version), the snapshot a
//! `pg_dump` shares with those figures, and the scratch databases of a restore drill.
//!
//! It works on its own connections, not on a [`crate::Store`]: a backup runs beside a
//! daemon that owns the store, and a drill reads a database nothing else has opened. It
//! never writes to the database it backs up. Running `pg_dump`/`pg_restore` is the
//! binary's business (they are external programs); the SQL they need is here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::StoreResult;

/// sqlx's migrations table: its rows are the schema version, not data.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// What a backup's manifest records about its database, and what a restore must show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseSummary {
    /// The highest migration applied (0 for a database never migrated).
    pub schema_version: i64,
    /// Rows per table (every table but sqlx's migrations table), by table name.
    pub row_counts: BTreeMap<String, i64>,
    /// The ledger's totals per account (a merchant and an entry type), ordered by both.
    pub ledger_totals: Vec<LedgerTotal>,
}

/// One ledger account's postings: a merchant's entries of one type (`gross_income`,
/// `platform_fee`, `merchant_payable`, …). Reversals are negative entries, so `amount` is
/// the account's balance in whole rupiah.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    sqlx::FromRow,
)]
pub struct LedgerTotal {
    pub merchant_id: String,
    pub entry_type: String,
    pub entries: i64,
    pub amount: i64,
}

const LEDGER_TOTALS: &str = "SELECT merchant_id, entry_type, COUNT(*) AS entries, \
     CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS amount \
     FROM ledger_entries GROUP BY merchant_id, entry_type ORDER BY merchant_id, entry_type";

/// A table name as a quoted SQL identifier (the names come from the catalogue, but a
/// quote in one must not end the identifier).
const SCHEMA_VERSION: &str =
    "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM _sqlx_migrations WHERE success";

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

// ---- SQLite -----------------------------------------------------------------------------

fn sqlite_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
}

/// Writes a transactionally consistent copy of the SQLite database at `source` to `dest`
/// (which must not exist) with `VACUUM INTO`, while other processes keep using it. In WAL
/// mode the copy is one read transaction: writers go on committing meanwhile (they wait
/// for nothing but `busy_timeout` on a lock a checkpoint might want). The copy is not
/// synced to disk here; the caller syncs the files it keeps.
#[tracing::instrument(skip_all, fields(source = %source.display()))]
pub async fn sqlite_snapshot(
    source: &Path,
    dest: &Path,
    busy_timeout: Duration,
) -> StoreResult<()> {
    let mut conn =
        SqliteConnection::connect_with(&sqlite_options(source).busy_timeout(busy_timeout)).await?;
    let dest = dest.to_string_lossy().into_owned();
    sqlx::query("VACUUM INTO $1")
        .bind(dest)
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// The tables of the SQLite database at `path` (sqlx's migrations table included; SQLite's
/// own excluded), by name. An empty list for a database that holds nothing.
pub async fn sqlite_tables(path: &Path) -> StoreResult<Vec<String>> {
    let mut conn = SqliteConnection::connect_with(&sqlite_options(path).read_only(true)).await?;
    let tables = sqlite_table_names(&mut conn).await?;
    conn.close().await?;
    Ok(tables)
}

async fn sqlite_table_names(conn: &mut SqliteConnection) -> StoreResult<Vec<String>> {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(names.into_iter().map(|(name,)| name).collect())
}

/// The figures of the SQLite database at `path`, read in one transaction (opened read-only).
pub async fn sqlite_summary(path: &Path) -> StoreResult<DatabaseSummary> {
    let mut conn = SqliteConnection::connect_with(&sqlite_options(path).read_only(true)).await?;
    let mut tx = conn.begin().await?;
    let tables = sqlite_table_names(&mut tx).await?;
    let mut row_counts = BTreeMap::new();
    for table in tables.iter().filter(|t| *t != MIGRATIONS_TABLE) {
        let (rows,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {}", quoted(table)))
            .fetch_one(&mut *tx)
            .await?;
        row_counts.insert(table.clone(), rows);
    }
    let ledger_totals = if row_counts.contains_key("ledger_entries") {
        sqlx::query_as(LEDGER_TOTALS).fetch_all(&mut *tx).await?
    } else {
        Vec::new()
    };
    let schema_version = if tables.iter().any(|t| t == MIGRATIONS_TABLE) {
        let (version,): (i64,) = sqlx::query_as(SCHEMA_VERSION).fetch_one(&mut *tx).await?;
        version
    } else {
        0
    };
    tx.rollback().await?;
    conn.close().await?;
    Ok(DatabaseSummary {
        schema_version,
        row_counts,
        ledger_totals,
    })
}

// ---- PostgreSQL -------------------------------------------------------------------------

/// The tables of the `public` schema of the database `url` names (sqlx's migrations table
/// included), by name.
pub async fn postgres_tables(url: &str) -> StoreResult<Vec<String>> {
    let mut conn = PgConnection::connect(url).await?;
    let tables = postgres_table_names(&mut conn).await?;
    conn.close().await?;
    Ok(tables)
}

async fn postgres_table_names(conn: &mut PgConnection) -> StoreResult<Vec<String>> {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = 'public' \
         ORDER BY tablename",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(names.into_iter().map(|(name,)| name).collect())
}

async fn postgres_figures(conn: &mut PgConnection) -> StoreResult<DatabaseSummary> {
    let tables = postgres_table_names(conn).await?;
    let mut row_counts = BTreeMap::new();
    for table in tables.iter().filter(|t| *t != MIGRATIONS_TABLE) {
        let (rows,): (i64,) =
            sqlx::query_as(&format!("SELECT COUNT(*) FROM public.{}", quoted(table)))
                .fetch_one(&mut *conn)
                .await?;
        row_counts.insert(table.clone(), rows);
    }
    let ledger_totals = if row_counts.contains_key("ledger_entries") {
        sqlx::query_as(LEDGER_TOTALS).fetch_all(&mut *conn).await?
    } else {
        Vec::new()
    };
    let schema_version = if tables.iter().any(|t| t == MIGRATIONS_TABLE) {
        let (version,): (i64,) = sqlx::query_as(SCHEMA_VERSION).fetch_one(&mut *conn).await?;
        version
    } else {
        0
    };
    Ok(DatabaseSummary {
        schema_version,
        row_counts,
        ledger_totals,
    })
}

/// The figures of the PostgreSQL database `url` names, read in one repeatable-read
/// transaction.
pub async fn postgres_summary(url: &str) -> StoreResult<DatabaseSummary> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut conn)
        .await?;
    let summary = postgres_figures(&mut conn).await;
    sqlx::query("ROLLBACK").execute(&mut conn).await?;
    conn.close().await?;
    summary
}

/// A read-only snapshot of a PostgreSQL database held open and exported
/// (`pg_export_snapshot()`), so that `pg_dump --snapshot=<id>` dumps exactly the rows
/// [`PgSnapshot::summary`] counts. Keep it until the dump has finished, then
/// [`PgSnapshot::close`] it.
pub struct PgSnapshot {
    conn: PgConnection,
    id: String,
    server_version_num: i64,
}

impl std::fmt::Debug for PgSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSnapshot")
            .field("id", &self.id)
            .field("server_version_num", &self.server_version_num)
            .finish_non_exhaustive()
    }
}

impl PgSnapshot {
    /// Connects to `url`, starts a repeatable-read, read-only transaction and exports its
    /// snapshot.
    pub async fn export(url: &str) -> StoreResult<PgSnapshot> {
        let mut conn = PgConnection::connect(url).await?;
        let (version,): (String,) = sqlx::query_as("SHOW server_version_num")
            .fetch_one(&mut conn)
            .await?;
        let server_version_num = version.trim().parse().map_err(|_| {
            crate::StoreError::Corrupt(format!("server_version_num {version:?} is not a number"))
        })?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut conn)
            .await?;
        let (id,): (String,) = sqlx::query_as("SELECT pg_export_snapshot()")
            .fetch_one(&mut conn)
            .await?;
        Ok(PgSnapshot {
            conn,
            id,
            server_version_num,
        })
    }

    /// The snapshot's id, for `pg_dump --snapshot`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The server's `server_version_num` (e.g. 160004 for 16.4).
    pub fn server_version_num(&self) -> i64 {
        self.server_version_num
    }

    /// The figures as of the snapshot.
    pub async fn summary(&mut self) -> StoreResult<DatabaseSummary> {
        postgres_figures(&mut self.conn).await
    }

    /// Ends the snapshot's transaction and the connection.
    pub async fn close(mut self) -> StoreResult<()> {
        sqlx::query("ROLLBACK").execute(&mut self.conn).await?;
        self.conn.close().await?;
        Ok(())
    }
}

/// A database made for a restore drill on the server of the database the caller uses, and
/// dropped afterwards with [`ScratchDatabase::drop_database`].
pub struct ScratchDatabase {
    server_url: String,
    name: String,
    url: String,
}

/// Only the name: the URLs carry the role's password.
impl std::fmt::Debug for ScratchDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ScratchDatabase {
    /// Creates `gema_verify_<random>` on the server `server_url` connects to (the role needs
    /// `CREATEDB`).
    pub async fn create(server_url: &str) -> StoreResult<ScratchDatabase> {
        let name = format!(
            "gema_verify_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let (without_query, query) = match server_url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (server_url, None),
        };
        let Some((base, _database)) = without_query
            .rsplit_once('/')
            .filter(|(base, _)| base.contains("//") && !base.ends_with('/'))
        else {
            return Err(crate::StoreError::UnsupportedUrl(format!(
                "{} (it names no database: postgres://user@host/<database>)",
                crate::redact_url(server_url)
            )));
        };
        let url = match query {
            Some(query) => format!("{base}/{name}?{query}"),
            None => format!("{base}/{name}"),
        };
        let mut conn = PgConnection::connect(server_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(ScratchDatabase {
            server_url: server_url.to_owned(),
            name,
            url,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL (with the server URL's credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops it, ending any session still connected to it.
    pub async fn drop_database(self) -> StoreResult<()> {
        let mut conn = PgConnection::connect(&self.server_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok(())
    }
}

/// `url` as a SQLite file path, if it is a `sqlite:` URL naming a file.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://./gema-data/gema.db?mode=rwc"),
            Some("./gema-data/gema.db".into())
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://db/gema"), None);
    }
}
