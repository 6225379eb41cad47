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

use sqlx::pool::PoolConnection;
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

    /// The write connection for a batch of payment events. Every statement is a round trip
    /// to the connection's thread (sqlx runs each SQLite connection on a thread of its own),
    /// and on a busy machine each costs more than the statement. So the batch's BEGIN
    /// travels with its reads ([`Self::prefetch_batch`]) and its COMMIT with its writes
    /// (`flush_staged`): two round trips for a batch that needs nothing else.
    async fn begin_batch(&self) -> StoreResult<BatchConnection> {
        Ok(BatchConnection {
            conn: self.write.acquire().await?,
            in_transaction: true,
        })
    }

    /// `BEGIN IMMEDIATE`, then what `prefetch` reads, in one query: the events'
    /// transactions, which events were recorded before, and the devices bound to those
    /// transactions' terminals.
    ///
    /// Several statements in one query is SQLite-only behaviour of sqlx 0.8 (deprecated
    /// there: <https://github.com/launchbadge/sqlx/issues/3108>); the conformance suite
    /// fails if a later sqlx stops running them all.
    async fn prefetch_batch(
        batch: &mut BatchConnection,
        staged: &mut crate::sql_payments::Staged,
        items: &[(crate::InboxEntry, crate::IncomingEvent)],
    ) -> StoreResult<()> {
        use futures_util::TryStreamExt;
        use sqlx::{Either, FromRow, Row};

        use crate::sql_payments::{
            BOUND_DEVICES, Placeholders, RECORDED_KEYS, batch_keys, insert_sql, push_params,
        };
        #[derive(Clone, Copy)]
        enum Read {
            Begin,
            Transactions,
            Recorded,
            Devices,
        }
        let (events, orders) = batch_keys(items);
        let mut sql = String::from("BEGIN IMMEDIATE");
        let mut reads = vec![Read::Begin];
        if !orders.is_empty() {
            let mut in_orders = String::new();
            push_params(&mut in_orders, Placeholders::Anonymous, 1, orders.len());
            sql.push_str(";\nSELECT * FROM transactions WHERE order_ref IN (");
            sql.push_str(&in_orders);
            sql.push_str(") ORDER BY order_ref;\n");
            sql.push_str(&insert_sql(
                RECORDED_KEYS.0,
                Placeholders::Anonymous,
                events.len(),
                3,
                RECORDED_KEYS.1,
            ));
            sql.push_str(";\n");
            sql.push_str(BOUND_DEVICES);
            sql.push_str(" (SELECT terminal_id FROM transactions WHERE order_ref IN (");
            sql.push_str(&in_orders);
            sql.push_str("))");
            reads.extend([Read::Transactions, Read::Recorded, Read::Devices]);
        }
        let mut query = sqlx::query(&sql);
        for order in &orders {
            query = query.bind(*order);
        }
        for e in &events {
            query = query
                .bind(&e.provider)
                .bind(&e.provider_transaction_id)
                .bind(&e.status);
        }
        for order in &orders {
            query = query.bind(*order);
        }
        let mut devices = Vec::new();
        {
            #[allow(deprecated)] // several statements in one query: see above
            let mut steps = query.fetch_many(&mut *batch.conn);
            let mut statement = 0;
            while let Some(step) = steps.try_next().await? {
                let row = match step {
                    Either::Left(_) => {
                        statement += 1;
                        continue;
                    }
                    Either::Right(row) => row,
                };
                match reads.get(statement) {
                    Some(Read::Transactions) => {
                        let t = crate::Transaction::from_row(&row)?;
                        staged.transactions.insert(t.order_ref.clone(), t);
                    }
                    Some(Read::Recorded) => {
                        staged.known.insert(
                            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?),
                            row.try_get(3)?,
                        );
                    }
                    Some(Read::Devices) => devices.push((
                        row.try_get::<String, _>(0)?,
                        crate::sql_payments::BoundDevice {
                            id: row.try_get(1)?,
                            next_sequence: row.try_get(2)?,
                            desired_config: row.try_get(3)?,
                        },
                    )),
                    Some(Read::Begin) | None => {
                        return Err(crate::StoreError::Corrupt(
                            "a batch read returned rows it should not".into(),
                        ));
                    }
                }
            }
        }
        for t in staged.transactions.values() {
            staged.devices.insert(t.terminal_id.clone(), None);
        }
        for (terminal, device) in devices {
            staged.devices.insert(terminal, Some(device));
        }
        Ok(())
    }

    /// The batch's writes ended with its COMMIT; what is left is to mark it so.
    async fn commit_batch(mut batch: BatchConnection) -> StoreResult<()> {
        batch.in_transaction = false;
        Ok(())
    }

    /// Rolls a failed batch back. If even that fails, dropping the connection closes it,
    /// which rolls back too.
    async fn abort_batch(mut batch: BatchConnection) {
        // Harmless when the failure came before BEGIN or after COMMIT: SQLite answers "no
        // transaction is active", and the connection is as it should be.
        let done = sqlx::query("ROLLBACK").execute(&mut *batch.conn).await;
        batch.in_transaction = match done {
            Ok(_) => false,
            Err(err) => !err.to_string().contains("no transaction is active"),
        };
    }
}

/// The write connection while a batch of payment events is applied on it (see
/// [`SqliteStore::begin_batch`]). Dropped before its COMMIT ran (a statement failed, or the
/// future was cancelled) it closes the connection, which rolls the transaction back; the
/// pool opens a new one.
pub(crate) struct BatchConnection {
    conn: PoolConnection<Sqlite>,
    /// Until shown otherwise: the BEGIN may have run.
    in_transaction: bool,
}

impl std::ops::Deref for BatchConnection {
    type Target = sqlx::SqliteConnection;

    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for BatchConnection {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl Drop for BatchConnection {
    fn drop(&mut self) {
        if self.in_transaction {
            self.conn.close_on_drop();
        }
    }
}

impl_store!(SqliteStore, Backend::Sqlite, MIGRATOR, lock = "");
impl_payment_store!(SqliteStore, lock = "");
payment_helpers!(Sqlite, lock = "", placeholders = Anonymous, writes = Script);
impl_device_ops_store!(SqliteStore, lock = "");
impl_auth_store!(SqliteStore, lock = "");
auth_helpers!(Sqlite);
