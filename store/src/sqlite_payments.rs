//! SQLite's payment writes: a rusqlite connection of their own, on a thread of their own.
//!
//! Why not sqlx here, as everywhere else: sqlx runs each SQLite connection on a thread of its
//! own, and every statement, every row and every result is a hand-off between that thread and
//! the caller's. Measured at saturation (`gema bench payments --rate 0`), the write
//! connection's thread spent about a third of its time in those hand-offs (channel sends,
//! wake-ups, context switches) and re-preparing statements, and each hand-off waited for a
//! core the HTTP and TLS work was using. On the payment path that was most of a batch's
//! time. Here a batch is plain function calls on one thread: `BEGIN IMMEDIATE`, a few cached
//! statements, `COMMIT`.
//!
//! That thread (`gema-sqlite-payments`, [`PaymentThread`]) owns the connection ([`PaymentWriter`]).
//! A call is one hand-off per batch, not per statement: the batch moves to the thread
//! through a channel, and the result (with the batch, for the caller's retries) comes back
//! through a oneshot the caller awaits, so the caller's thread is never blocked, not even
//! while the writer waits for its write turn or for the fsync. The thread ends when the
//! store's last handle is dropped and the channel closes. The caller's `&dyn PaymentRules`
//! cannot cross threads, so it travels as a table of its answers ([`RuleBook`]).
//!
//! What the batch does is the shared staging (`payments::batch::stage_events`); its futures
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
use tokio::sync::oneshot;

use crate::db::Param;
use crate::payments::batch::{
    ANNOUNCEMENT_EXISTS, Batch, BatchIo, BoundDevice, DeliveryUpdate, INSERT_TRANSACTION,
    LEDGER_ORIGINALS, Piece, Placeholders, RECORD_DELIVERY, STATIC_QR_TERMINAL, Staged, batch_keys,
    batch_pieces, bound_devices_sql, insert_chunks, internal_event_params, piece_params,
    recorded_keys_sql, stage_deliveries, stage_events, staged_terminals, transaction_params,
    transactions_by_order_sql,
};
use crate::{
    DeliveryResult, InboxEntry, IncomingEvent, PaymentOutcome, PaymentRules, StoreError,
    StoreResult, Transaction, TransactionSource, TransactionStatus, Transition,
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
    fn open(
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
    ///
    /// `rules` is the caller's rules as a table; if the batch asked it something it has no
    /// answer for, nothing is written and [`RuleBook::take_questions`] says what.
    fn apply(
        &mut self,
        items: &[(InboxEntry, IncomingEvent)],
        rules: &RuleBook,
        deliveries: &[(String, DeliveryResult)],
    ) -> StoreResult<Vec<PaymentOutcome>> {
        self.in_transaction(|tx, staged, now| {
            prefetch(tx, staged, items)?;
            let mut io = SqliteBatch(tx);
            let outcomes = ready(stage_events(&mut io, staged, items, rules, now))?;
            ready(stage_deliveries(&mut io, staged, deliveries, now))?;
            if rules.lacked_an_answer() {
                return Err(StoreError::PaymentWriter(
                    "the batch needs rules the caller did not hand over".into(),
                ));
            }
            flush(tx, staged, items, now)?;
            Ok(outcomes)
        })
    }

    /// Delivery results that no payment batch carried, in a transaction of their own.
    fn record_deliveries(&mut self, results: &[(String, DeliveryResult)]) -> StoreResult<()> {
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

    /// The write turn, from the writer's thread: it queues like any writer (the lock is
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

/// The payment writer's thread, as the store sees it: where to send work. Each call is one
/// message in and one reply out ([`tokio::sync::oneshot`]); the batch itself moves, it is
/// not copied. The thread ends when the last handle is dropped (the channel closes).
///
/// A caller that stops waiting (its future dropped) does not stop the batch: it commits,
/// and its events' retries are then recorded as duplicates.
#[derive(Debug, Clone)]
pub(crate) struct PaymentThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Work for the writer's thread.
enum Job {
    /// Events and delivery results in one transaction.
    Apply {
        batch: Batch,
        rules: RuleBook,
        reply: oneshot::Sender<Applied>,
    },
    /// Delivery results in a transaction of their own.
    Deliveries {
        results: Vec<(String, DeliveryResult)>,
        reply: oneshot::Sender<StoreResult<()>>,
    },
}

/// What became of a [`Job::Apply`]: the batch comes back with its result, so the caller can
/// retry it without a copy.
enum Applied {
    Done(Batch, StoreResult<Vec<PaymentOutcome>>),
    /// The rules table had no answer for these questions; nothing was written.
    NeedsRules(Batch, RuleBook, Vec<Question>),
}

impl PaymentThread {
    /// Opens the payment connection on the database file the sqlx pools use (it exists:
    /// they created it), and starts the thread that owns it.
    ///
    /// The thread is not joined: it ends on its own once the channel closes (after the
    /// job in hand, if any), and no one waits for it.
    pub fn start(
        path: &Path,
        busy_timeout: Duration,
        turn: Arc<tokio::sync::Mutex<()>>,
    ) -> StoreResult<(Self, std::thread::JoinHandle<()>)> {
        let writer = PaymentWriter::open(path, busy_timeout, turn)?;
        let (jobs, queue) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("gema-sqlite-payments".into())
            .spawn(move || writer.serve(queue))
            .map_err(|err| StoreError::PaymentWriter(format!("cannot start its thread: {err}")))?;
        Ok((Self { jobs }, thread))
    }

    /// Applies events, and records delivery results, in one transaction on the writer's
    /// thread; the caller's thread only waits for the reply. Returns the batch with the
    /// result.
    pub async fn apply(
        &self,
        mut batch: Batch,
        rules: &dyn PaymentRules,
    ) -> (Batch, StoreResult<Vec<PaymentOutcome>>) {
        let mut book = RuleBook::new(rules, &batch.items);
        loop {
            let (reply, answer) = oneshot::channel();
            let job = Job::Apply {
                batch,
                rules: book,
                reply,
            };
            if let Err(std::sync::mpsc::SendError(job)) = self.jobs.send(job) {
                let Job::Apply { batch, .. } = job else {
                    unreachable!("the job sent was an Apply")
                };
                return (batch, Err(writer_gone()));
            }
            match answer.await {
                Ok(Applied::Done(batch, result)) => return (batch, result),
                // Rare (a refund of another amount than its event's): teach the table and
                // run the batch again.
                Ok(Applied::NeedsRules(returned, mut returned_book, questions)) => {
                    returned_book.learn(rules, questions);
                    (batch, book) = (returned, returned_book);
                }
                // The thread died with the batch; it cannot come back.
                Err(_) => return (Batch::default(), Err(writer_gone())),
            }
        }
    }

    /// Delivery results that no payment batch carried, in a transaction of their own on the
    /// writer's thread.
    pub async fn record_deliveries(
        &self,
        results: Vec<(String, DeliveryResult)>,
    ) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Deliveries { results, reply })
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> StoreError {
    StoreError::PaymentWriter("its thread has stopped".into())
}

impl PaymentWriter {
    /// The writer thread's loop: one job at a time, until every sender is gone. A job that
    /// panics is answered with an error (its transaction rolled back when it unwound) and
    /// the thread goes on.
    fn serve(mut self, queue: std::sync::mpsc::Receiver<Job>) {
        while let Ok(job) = queue.recv() {
            match job {
                Job::Apply {
                    batch,
                    rules,
                    reply,
                } => {
                    let result = self
                        .catching(|writer| writer.apply(&batch.items, &rules, &batch.deliveries));
                    let questions = rules.take_questions();
                    let answer = if questions.is_empty() {
                        Applied::Done(batch, result)
                    } else {
                        Applied::NeedsRules(batch, rules, questions)
                    };
                    // The caller may have gone (its future dropped): nothing to tell.
                    let _ = reply.send(answer);
                }
                Job::Deliveries { results, reply } => {
                    let result = self.catching(|writer| writer.record_deliveries(&results));
                    let _ = reply.send(result);
                }
            }
        }
    }

    fn catching<T>(&mut self, work: impl FnOnce(&mut Self) -> StoreResult<T>) -> StoreResult<T> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(self)))
            .unwrap_or_else(|_| Err(StoreError::PaymentWriter("a batch panicked".into())))
    }
}

/// The caller's [`PaymentRules`] as a table the writer's thread can take: the rules are
/// borrowed for the call (`&dyn PaymentRules`) and cannot cross to another thread, but
/// they are pure functions of small inputs. The table holds every transition from any
/// status on each event status in the batch, the fee split of each event's amount, the
/// announcement lifetime and the hand-over lease. A question it cannot answer (a refund
/// whose transaction's amount is not an event's) is noted, the batch is not committed, and
/// the caller answers it ([`RuleBook::learn`]) and sends the batch again.
pub(crate) struct RuleBook {
    transitions: Vec<(TransactionStatus, String, Transition)>,
    fees: std::collections::HashMap<i64, (i64, i64)>,
    announcement_ttl_ms: i64,
    handover_lease_ms: i64,
    /// What the batch asked that the table could not answer.
    unanswered: std::sync::Mutex<Vec<Question>>,
}

/// A question for the caller's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Question {
    Transition(TransactionStatus, String),
    SplitFee(i64),
}

impl RuleBook {
    fn new(rules: &dyn PaymentRules, items: &[(InboxEntry, IncomingEvent)]) -> Self {
        let mut book = Self {
            transitions: Vec::new(),
            fees: std::collections::HashMap::with_capacity(items.len()),
            announcement_ttl_ms: rules.announcement_ttl_ms(),
            handover_lease_ms: rules.handover_lease_ms(),
            unanswered: std::sync::Mutex::new(Vec::new()),
        };
        let mut statuses: Vec<&str> = items.iter().map(|(_, e)| e.status.as_str()).collect();
        statuses.sort_unstable();
        statuses.dedup();
        let questions = statuses
            .into_iter()
            .flat_map(|status| {
                TransactionStatus::ALL
                    .iter()
                    .map(move |current| Question::Transition(*current, status.to_owned()))
            })
            .chain(items.iter().map(|(_, e)| Question::SplitFee(e.amount)));
        book.learn(rules, questions);
        book
    }

    /// Adds the rules' answers to these questions.
    fn learn(&mut self, rules: &dyn PaymentRules, questions: impl IntoIterator<Item = Question>) {
        for question in questions {
            match question {
                Question::Transition(current, status) => {
                    let to = rules.transition(current, &status);
                    self.transitions.push((current, status, to));
                }
                Question::SplitFee(gross) => {
                    self.fees.insert(gross, rules.split_fee(gross));
                }
            }
        }
    }

    fn ask(&self, question: Question) {
        self.unanswered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(question);
    }

    fn lacked_an_answer(&self) -> bool {
        !self
            .unanswered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty()
    }

    fn take_questions(&self) -> Vec<Question> {
        std::mem::take(
            &mut *self
                .unanswered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Answers from the table; an unknown question is noted and answered with a placeholder
/// the batch never commits (see [`PaymentWriter::apply`]).
impl PaymentRules for RuleBook {
    fn transition(&self, current: TransactionStatus, event_status: &str) -> Transition {
        let known = self
            .transitions
            .iter()
            .find(|(from, status, _)| *from == current && status == event_status);
        match known {
            Some((_, _, to)) => *to,
            None => {
                self.ask(Question::Transition(current, event_status.to_owned()));
                Transition::Ignore
            }
        }
    }

    fn split_fee(&self, gross: i64) -> (i64, i64) {
        match self.fees.get(&gross) {
            Some(split) => *split,
            None => {
                self.ask(Question::SplitFee(gross));
                (0, gross)
            }
        }
    }

    fn announcement_ttl_ms(&self) -> i64 {
        self.announcement_ttl_ms
    }

    fn handover_lease_ms(&self) -> i64 {
        self.handover_lease_ms
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
            .prepare_cached(crate::payments::batch::INTERNAL_EVENT)?
            .execute(params_from_iter(internal_event_params(
                &id,
                transaction_id,
                status,
                amount,
                now,
            )))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_thread_ends_when_its_last_handle_is_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("gema.db");
        Connection::open(&path).expect("create the file");
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let (payments, thread) =
            PaymentThread::start(&path, Duration::from_secs(1), turn).expect("start");
        assert_eq!(thread.thread().name(), Some("gema-sqlite-payments"));
        let copy = payments.clone();
        drop(payments);
        // One handle left: the thread waits for work.
        assert!(!thread.is_finished());
        drop(copy);
        thread.join().expect("the thread ends without a panic");
    }
}
