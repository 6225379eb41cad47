//! The SQLite backend: the embedded default.
//!
//! Settings, and why:
//! - WAL journal: readers never block the writer and vice versa.
//! - `synchronous = FULL` on every connection, not only for money paths: payments and their
//!   ledger share this file with everything else, and a 200 to a payment provider must mean
//!   the event is on disk. In WAL mode FULL costs one fsync per commit (about 0.125 ms
//!   measured on this machine); throughput comes from grouping work per commit, not from
//!   weakening durability.
//! - Foreign keys on (SQLite leaves them off by default).
//! - A busy timeout, for the other processes that may open the file (`gema migrate`,
//!   `gema admin …`).
//! - One writer connection, and write transactions start with `BEGIN IMMEDIATE`: SQLite
//!   allows one writer at a time anyway, and a deferred transaction that reads and then
//!   writes can fail with `SQLITE_BUSY` on a stale snapshot, which no timeout cures.
//!   Reads use a separate pool of read-only connections.

use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::sql::impl_store;
use crate::sql_auth::{auth_helpers, impl_auth_store};
use crate::sql_device_ops::impl_device_ops_store;
use crate::sql_payments::{impl_payment_store, payment_helpers};
use crate::{Backend, ConnectOptions, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Self> {
        let base = SqliteConnectOptions::from_str(url)
            .map_err(crate::StoreError::Database)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(options.busy_timeout);

        // No ping before each acquire (sqlx's default): these are files, not sockets, and the
        // ping is one more round trip to the connection's thread on every transaction.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.clone().create_if_missing(true))
            .await?;
        // An in-memory database exists per connection: readers must share the writer's.
        let read = if url.contains(":memory:") {
            write.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .test_before_acquire(false)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(base.read_only(true))
                .await?
        };
        Ok(Self { read, write })
    }

    async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }
}

impl_store!(SqliteStore, Backend::Sqlite, MIGRATOR, lock = "");
impl_payment_store!(SqliteStore, lock = "");
payment_helpers!(Sqlite, lock = "", placeholders = Anonymous);
impl_device_ops_store!(SqliteStore, lock = "");
impl_auth_store!(SqliteStore, lock = "");
auth_helpers!(Sqlite);
