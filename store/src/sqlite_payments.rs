//! SQLite's payment writes: a connection of their own, used synchronously on the calling
//! thread.
//!
//! Why not sqlx here, as everywhere else: sqlx runs each SQLite connection on a thread of its
//! own, and every statement, every row and every result is a hand-off between that thread and
//! the caller's. Measured at saturation (`gema bench payments --rate 0`), the write
//! connection's thread spent about a third of its time in those hand-offs (channel sends,
//! wake-ups, context switches) and re-preparing statements, and each hand-off waited for a
//! core the HTTP and TLS work was using. On the payment path that was most of a batch's
//! time. Here a batch is plain function calls on the gateway's commit thread: `BEGIN
//! IMMEDIATE`, a few cached statements, `COMMIT`.
//!
//! What the batch does is the shared staging (`sql_payments::stage_events`); its futures
//! are ready at once on this connection, so they are polled once and never wait.
//!
//! This connection and the sqlx write connection both write the one file. They take turns
//! through the store's write turn (`sqlite::WriteTurn`), first come, first served; SQLite's
//! lock alone would starve the sqlx side. Against other processes (`gema admin …`) SQLite's
//! lock is what remains: waiting for it, this connection retries every 100 µs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params_from_iter};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::sql_payments::{
    ANNOUNCEMENT_EXISTS, BatchIo, BoundDevice, DeliveryUpdate, INSERT_TRANSACTION,
    LEDGER_ORIGINALS, Param, Piece, Placeholders, RECORD_DELIVERY, STATIC_QR_TERMINAL, Staged,
    batch_keys, batch_pieces, bound_devices_sql, insert_chunks, piece_params, recorded_keys_sql,
    stage_deliveries, stage_events, staged_terminals, transaction_params,
    transactions_by_order_sql,
};
use crate::{
    DeliveryResult, InboxEntry, IncomingEvent, PaymentOutcome, PaymentRules, StoreError,
    StoreResult, Transaction, TransactionSource, TransactionStatus,
};

/// Retries of the busy handler (100 µs apart) before a write gives up on the lock.
static BUSY_RETRIES: AtomicI32 = AtomicI32::new(50_000);

const BUSY_RETRY: Duration = Duration::from_micros(100);

/// Statement shapes a batch uses: six tables and three reads, four chunk sizes each.
const STATEMENT_CACHE: usize = 64;

/// The payment path's write connection.
pub(crate) struct PaymentWriter {
    conn: Connection,
    /// Shared with the sqlx writes (`SqliteStore`'s `WriteTurn`).
    turn: Arc<tokio::sync::Mutex<()>>,
    busy_timeout: Duration,
}

impl std::fmt::Debug for PaymentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentWriter")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl PaymentWriter {
    /// Opens the database file the sqlx pools use (it exists: they created it).
    pub fn open(
        path: &Path,
        busy_timeout: Duration,
        turn: Arc<tokio::sync::Mutex<()>>,
    ) -> StoreResult<Self> {
        let conn = Connection::open(path)?;
        // Same settings as the sqlx connections (see `sqlite.rs`); WAL is the file's.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let retries = busy_timeout.as_micros() / BUSY_RETRY.as_micros();
        BUSY_RETRIES.store(
            i32::try_from(retries).unwrap_or(i32::MAX).max(1),
            Ordering::Relaxed,
        );
        conn.busy_handler(Some(wait_for_lock))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self {
            conn,
            turn,
            busy_timeout,
        })
    }

    /// Applies events, and records delivery results, in one transaction (one commit). Any
    /// failing statement fails the whole batch, which is rolled back.
    pub fn apply(
        &mut self,
        items: &[(InboxEntry, IncomingEvent)],
        rules: &dyn PaymentRules,
        deliveries: &[(String, DeliveryResult)],
    ) -> StoreResult<Vec<PaymentOutcome>> {
        self.in_transaction(|tx, staged, now| {
            prefetch(tx, staged, items)?;
            let mut io = SqliteBatch(tx);
            let outcomes = ready(stage_events(&mut io, staged, items, rules, now))?;
            ready(stage_deliveries(&mut io, staged, deliveries, now))?;
            flush(tx, staged, items, now)?;
            Ok(outcomes)
        })
    }

    /// Delivery results that no payment batch carried, in a transaction of their own.
    pub fn record_deliveries(&mut self, results: &[(String, DeliveryResult)]) -> StoreResult<()> {
        self.in_transaction(|tx, staged, now| {
            ready(stage_deliveries(&mut SqliteBatch(tx), staged, results, now))?;
            flush(tx, staged, &[], now)
        })
    }

    /// Runs `batch` in a write transaction, on the write turn, and commits it. Dropped
    /// without a commit (`batch` failed), the transaction rolls back.
    fn in_transaction<T>(
        &mut self,
        batch: impl FnOnce(&Connection, &mut Staged, OffsetDateTime) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let _turn = self.wait_for_turn()?;
        let now = crate::sql::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut staged = Staged::default();
        let done = batch(&tx, &mut staged, now)?;
        tx.commit()?;
        Ok(done)
    }

    /// The write turn, from this blocking thread: it queues like any writer (the lock is
    /// first come, first served), and the thread sleeps until its turn comes.
    fn wait_for_turn(&self) -> StoreResult<tokio::sync::OwnedMutexGuard<()>> {
        let turn = self.turn.clone().lock_owned();
        block_on(turn, self.busy_timeout).ok_or_else(|| {
            // What SQLite itself answers when its lock stays taken.
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some(format!("no turn to write in {:?}", self.busy_timeout)),
            ))
        })
    }
}

/// Runs a future to completion on this thread, parking it while the future waits; `None`
/// if it is not done within `limit`.
fn block_on<F: Future>(future: F, limit: Duration) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return Some(output);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}

/// SQLite's busy handler: sleep briefly and retry, up to the configured timeout.
fn wait_for_lock(attempt: i32) -> bool {
    if attempt >= BUSY_RETRIES.load(Ordering::Relaxed) {
        return false;
    }
    std::thread::sleep(BUSY_RETRY);
    true
}

/// Runs staging on this connection: every step is synchronous, so the future is done the
/// first time it is polled.
fn ready<T>(staging: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    staging.now_or_never().unwrap_or_else(|| {
        Err(StoreError::Corrupt(
            "a SQLite payment batch waited on something".into(),
        ))
    })
}

/// The batch's transactions, which of its events were recorded before, and the devices
/// bound to those transactions' terminals.
fn prefetch(
    conn: &Connection,
    staged: &mut Staged,
    items: &[(InboxEntry, IncomingEvent)],
) -> StoreResult<()> {
    let (events, orders) = batch_keys(items);
    for chunk in insert_chunks(&orders) {
        let sql = transactions_by_order_sql(Placeholders::Anonymous, chunk.len(), "");
        let mut statement = conn.prepare_cached(&sql)?;
        let mut rows = statement.query(params_from_iter(chunk.iter()))?;
        while let Some(row) = rows.next()? {
            let t = transaction_from_row(row)?;
            staged.transactions.insert(t.order_ref.clone(), t);
        }
    }
    for chunk in insert_chunks(&events) {
        let sql = recorded_keys_sql(Placeholders::Anonymous, chunk.len());
        let mut statement = conn.prepare_cached(&sql)?;
        let keys = chunk
            .iter()
            .flat_map(|e| [&e.provider, &e.provider_transaction_id, &e.status]);
        let mut rows = statement.query(params_from_iter(keys))?;
        while let Some(row) = rows.next()? {
            staged
                .known
                .insert((row.get(0)?, row.get(1)?, row.get(2)?), row.get(3)?);
        }
    }
    prefetch_devices(conn, staged, &staged_terminals(staged))
}

fn prefetch_devices(
    conn: &Connection,
    staged: &mut Staged,
    terminals: &[impl AsRef<str>],
) -> StoreResult<()> {
    for chunk in insert_chunks(terminals) {
        for terminal in chunk {
            staged.devices.insert(terminal.as_ref().to_owned(), None);
        }
        let sql = bound_devices_sql(Placeholders::Anonymous, chunk.len());
        let mut statement = conn.prepare_cached(&sql)?;
        let mut rows = statement.query(params_from_iter(chunk.iter().map(AsRef::as_ref)))?;
        while let Some(row) = rows.next()? {
            staged.devices.insert(
                row.get(0)?,
                Some(BoundDevice {
                    id: row.get(1)?,
                    next_sequence: row.get(2)?,
                    desired_config: row.get(3)?,
                }),
            );
        }
    }
    Ok(())
}

/// Writes everything the batch staged, piece by piece (each a cached statement).
fn flush(
    conn: &Connection,
    staged: &Staged,
    items: &[(InboxEntry, IncomingEvent)],
    now: OffsetDateTime,
) -> StoreResult<()> {
    let updates: Vec<&Transaction> = staged.updates.values().collect();
    for piece in batch_pieces(staged, &updates) {
        execute_piece(conn, &piece, items, now)?;
    }
    Ok(())
}

fn execute_piece(
    conn: &Connection,
    piece: &Piece<'_>,
    items: &[(InboxEntry, IncomingEvent)],
    now: OffsetDateTime,
) -> StoreResult<()> {
    conn.prepare_cached(&piece.sql(Placeholders::Anonymous, 1))?
        .execute(params_from_iter(piece_params(piece, items, now)))?;
    Ok(())
}

/// A batch's transaction, for the staging's other statements.
struct SqliteBatch<'c>(&'c Connection);

impl BatchIo for SqliteBatch<'_> {
    async fn static_qr_terminal(
        &mut self,
        payment_ref: &str,
    ) -> StoreResult<Option<(String, String)>> {
        Ok(self
            .0
            .prepare_cached(STATIC_QR_TERMINAL)?
            .query_row([payment_ref], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    async fn insert_transaction(&mut self, transaction: &Transaction) -> StoreResult<()> {
        self.0
            .prepare_cached(INSERT_TRANSACTION)?
            .execute(params_from_iter(transaction_params(transaction)))?;
        Ok(())
    }

    async fn insert_internal_event(
        &mut self,
        transaction_id: &str,
        status: &str,
        amount: i64,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let id = crate::sql::new_id("evt");
        self.0
            .prepare_cached(crate::sql_payments::INTERNAL_EVENT)?
            .execute(params_from_iter([
                Param::Text(Some(&id)),
                Param::Text(Some(transaction_id)),
                Param::Text(Some(status)),
                Param::Int(Some(amount)),
                Param::Time(Some(now)),
            ]))?;
        Ok(())
    }

    async fn ledger_originals(
        &mut self,
        staged: &mut Staged,
        transaction_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<(String, String)>> {
        let rows = std::mem::take(&mut staged.ledger);
        for chunk in insert_chunks(&rows) {
            execute_piece(self.0, &Piece::Ledger(chunk), &[], now)?;
        }
        let mut statement = self.0.prepare_cached(LEDGER_ORIGINALS)?;
        let originals = statement
            .query_map([transaction_id], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(originals)
    }

    async fn prefetch_devices(
        &mut self,
        staged: &mut Staged,
        terminals: &[&str],
    ) -> StoreResult<()> {
        prefetch_devices(self.0, staged, terminals)
    }

    async fn record_one_delivery(
        &mut self,
        announcement_id: &str,
        update: &DeliveryUpdate,
    ) -> StoreResult<bool> {
        let changed = self
            .0
            .prepare_cached(RECORD_DELIVERY)?
            .execute(params_from_iter(update.params(announcement_id)))?;
        if changed > 0 {
            return Ok(true);
        }
        let exists = self
            .0
            .prepare_cached(ANNOUNCEMENT_EXISTS)?
            .query_row([announcement_id], |_| Ok(()))
            .optional()?;
        Ok(exists.is_some())
    }
}

/// Values as sqlx's SQLite driver stores them, so either connection reads what the other
/// wrote: booleans as 0/1, times as RFC 3339 text.
impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Text(Some(text)) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            Param::OwnedText(Some(text)) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            Param::Int(Some(n)) => ToSqlOutput::Owned(Value::Integer(*n)),
            Param::Bool(flag) => ToSqlOutput::Owned(Value::Integer(i64::from(*flag))),
            Param::Blob(bytes) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
            Param::OwnedBlob(bytes) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
            Param::Time(Some(t)) => ToSqlOutput::Owned(Value::Text(
                t.format(&Rfc3339)
                    .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?,
            )),
            Param::Text(None) | Param::OwnedText(None) | Param::Int(None) | Param::Time(None) => {
                ToSqlOutput::Owned(Value::Null)
            }
        })
    }
}

/// A `transactions` row (`SELECT *`).
fn transaction_from_row(row: &rusqlite::Row<'_>) -> StoreResult<Transaction> {
    let status: String = row.get("status")?;
    let source: String = row.get("source")?;
    Ok(Transaction {
        id: row.get("id")?,
        order_ref: row.get("order_ref")?,
        terminal_id: row.get("terminal_id")?,
        merchant_id: row.get("merchant_id")?,
        amount: row.get("amount")?,
        status: TransactionStatus::try_from(status).map_err(StoreError::Corrupt)?,
        source: TransactionSource::try_from(source).map_err(StoreError::Corrupt)?,
        provider: row.get("provider")?,
        provider_transaction_id: row.get("provider_transaction_id")?,
        issuer: row.get("issuer")?,
        paid_at: row
            .get::<_, Option<String>>("paid_at")?
            .as_deref()
            .map(parse_time)
            .transpose()?,
        expires_at_ms: row.get("expires_at_ms")?,
        paid_after_expiry: row.get("paid_after_expiry")?,
        created_at: parse_time(&row.get::<_, String>("created_at")?)?,
        updated_at: parse_time(&row.get::<_, String>("updated_at")?)?,
    })
}

fn parse_time(text: &str) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|err| StoreError::Corrupt(format!("a stored time {text:?}: {err}")))
}
