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
//! - Two writer connections: the payment path's (`sqlite_payments`, a rusqlite connection
//!   owned by the store's `gema-sqlite-payments` thread) and sqlx's pool of one for
//!   everything else. SQLite allows one writer at a time; the two take turns first come,
//!   first served ([`WriteTurn`]), and
//!   write transactions start with `BEGIN IMMEDIATE` (a deferred transaction that reads and
//!   then writes can fail with `SQLITE_BUSY` on a stale snapshot, which no timeout cures).
//!   Reads use a separate pool of read-only connections.
//! - `temp_store = MEMORY`: a multi-row statement's statement journal stays in memory
//!   instead of a temporary file (measured: 6% of the writer's time at saturation).
//! - No in-memory databases: each connection would get a database of its own.

use std::str::FromStr;
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::sqlite_payments::PaymentThread;
use crate::{ConnectOptions, StoreResult};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    pub(crate) read: SqlitePool,
    pub(crate) write: SqlitePool,
    /// The payment path's connection, on a thread of its own; see `sqlite_payments`.
    pub(crate) payments: PaymentThread,
    /// Whose turn it is to write: see [`WriteTurn`].
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// The two writer connections (sqlx's and the payment path's) take turns through this
/// lock, held from before `BEGIN` to after `COMMIT`. SQLite's own lock would serialise them
/// too, but unfairly: a waiting writer sleeps 1, 2, 5 … 100 ms between attempts while the
/// payment path commits a thousand times a second, so under load sqlx's writes (presence,
/// config, admin) starved until their busy timeout (measured with 9,000 devices at
/// 2,000/s: acquires over 2 s, and announcements late by a minute behind the stalled
/// device flows). This lock is first come, first served: a queued writer is next.
pub(crate) struct WriteTurn<T> {
    inner: T,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl<T: std::ops::Deref<Target = sqlx::SqliteConnection>> std::ops::Deref for WriteTurn<T> {
    type Target = sqlx::SqliteConnection;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<T: std::ops::DerefMut<Target = sqlx::SqliteConnection>> std::ops::DerefMut for WriteTurn<T> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl WriteTurn<Transaction<'static, Sqlite>> {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await
    }
}

impl SqliteStore {
    pub async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Self> {
        // An in-memory database exists per connection, and the store has several.
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(crate::StoreError::UnsupportedUrl(format!(
                "{url} (an in-memory SQLite database cannot be shared by connections; name a file)"
            )));
        }
        let base = SqliteConnectOptions::from_str(url)
            .map_err(crate::StoreError::Database)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(options.busy_timeout)
            .pragma("temp_store", "memory");

        // No ping before each acquire (sqlx's default): these are files, not sockets, and the
        // ping is one more round trip to the connection's thread on every transaction.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.clone().create_if_missing(true))
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.clone().read_only(true))
            .await?;
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        // Detached: it ends when the store's last handle drops (see `PaymentThread`).
        let (payments, _thread) =
            PaymentThread::start(base.get_filename(), options.busy_timeout, turn.clone())?;
        Ok(Self {
            read,
            write,
            payments,
            turn,
        })
    }

    pub(crate) async fn begin_write(&self) -> StoreResult<WriteTurn<Transaction<'static, Sqlite>>> {
        let turn = self.turn.clone().lock_owned().await;
        Ok(WriteTurn {
            inner: self.write.begin_with("BEGIN IMMEDIATE").await?,
            _turn: turn,
        })
    }

    /// The write connection, for statements that are their own transaction.
    pub(crate) async fn write_conn(&self) -> StoreResult<WriteTurn<PoolConnection<Sqlite>>> {
        let turn = self.turn.clone().lock_owned().await;
        Ok(WriteTurn {
            inner: self.write.acquire().await?,
            _turn: turn,
        })
    }
}
