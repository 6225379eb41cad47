//! PostgreSQL's payment batches: connections of their own, on a driver that pipelines.
//!
//! Why not sqlx here, as everywhere else: sqlx sends a statement and waits for its answer
//! before it sends the next, so a batch was six round trips (`BEGIN`, three reads, the
//! write, `COMMIT`), and each one woke the server's backend and then the daemon's task, on
//! a small box each waiting for a core. tokio-postgres sends the requests of futures polled
//! together back to back and reads their answers in order: a batch here is two round trips,
//! `BEGIN` and the three reads in one, the write and `COMMIT` in the other (plus a statement
//! of the rare paths, [`BatchIo`], when an event needs one). The server still runs the
//! statements one after the other, each on a snapshot of its own (READ COMMITTED), so the
//! reads after the row locks see what the locks' previous holder committed, as before.
//!
//! The reads cannot wait for the locked rows to name the terminals, so they find them in
//! SQL: the sequence locks are taken and the bound devices read for the terminals of the
//! batch's order references.
//!
//! What the batch does is the shared staging (`payments::batch::stage_events`), as on
//! SQLite (`sqlite_payments`); its rare statements take the shared SQL and [`Param`]s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};

use crate::db::Param;
use crate::payments::batch::{
    ANNOUNCEMENT_EXISTS, BOUND_DEVICES, BatchIo, BoundDevice, DeliveryUpdate, INSERT_TRANSACTION,
    INTERNAL_EVENT, InboxRow, LEDGER_ORIGINALS, Piece, Placeholders, RECORD_DELIVERY,
    STATIC_QR_TERMINAL, Staged, batch_keys, insert_chunks, internal_event_params, piece_params,
    stage_deliveries, stage_events, staged_terminals, transaction_params,
};
use crate::{
    DeliveryResult, InboxEntry, IncomingEvent, PaymentOutcome, PaymentRules, StoreError,
    StoreResult, Transaction, TransactionSource, TransactionStatus,
};

/// Connections for payment batches, enough for the gateway's commit loops side by side.
const BATCH_CONNECTIONS: usize = 8;

/// The payment batches' connections, kept between batches, at most [`BATCH_CONNECTIONS`]
/// in use at once. Not a pool: a pool pings a connection when it is taken and again when it
/// is given back, round trips that learn what the batch's first one finds out anyway. A
/// kept connection that the server closed meanwhile (a restart, `pg_terminate_backend`, an
/// idle timeout) fails its batch's first round trip, which is then sent again on a new
/// connection (nothing of it took effect); a batch that fails later gives its connection
/// back only if its transaction ended.
///
/// Their sessions use generic plans only (`plan_cache_mode = force_generic_plan`): a
/// batch's statements take arrays whose lengths the planner sees, so with the default it
/// kept planning each execution anew (a custom plan per batch size looks cheaper than the
/// generic one), while the generic plan of a lookup by key is the right one for any size.
pub(crate) struct BatchConnections {
    config: tokio_postgres::Config,
    permits: tokio::sync::Semaphore,
    /// Connections outside any transaction, the most recently given back last.
    idle: Mutex<Vec<BatchConnection>>,
    acquire_timeout: Duration,
}

impl std::fmt::Debug for BatchConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchConnections").finish_non_exhaustive()
    }
}

/// One connection and the statements prepared on it.
struct BatchConnection {
    client: Client,
    lock: Statement,
    keys: Statement,
    devices: Statement,
    write: Statement,
    /// The rare paths' statements, by their text, prepared when first needed.
    other: HashMap<String, Statement>,
}

impl BatchConnections {
    pub fn new(url: &str, acquire_timeout: Duration) -> StoreResult<Self> {
        let config = url.parse()?;
        Ok(Self {
            config,
            permits: tokio::sync::Semaphore::new(BATCH_CONNECTIONS),
            idle: Mutex::new(Vec::with_capacity(BATCH_CONNECTIONS)),
            acquire_timeout,
        })
    }

    fn keep(&self, conn: BatchConnection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }

    fn kept(&self) -> Option<BatchConnection> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// A new connection, its session set up and its statements prepared.
    async fn connect(&self) -> StoreResult<BatchConnection> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "a payment batch connection ended");
            }
        });
        client
            .batch_execute("SET plan_cache_mode = force_generic_plan")
            .await?;
        let (lock, keys, devices, write) = futures_util::try_join!(
            client.prepare(LOCK_TRANSACTIONS),
            client.prepare(&RECORDED_KEYS),
            client.prepare(&BOUND_DEVICES_SQL),
            client.prepare(BATCH_WRITE),
        )?;
        Ok(BatchConnection {
            client,
            lock,
            keys,
            devices,
            write,
            other: HashMap::new(),
        })
    }

    /// Applies events, and records delivery results, in one database transaction. Any
    /// failing statement fails the whole batch, which is rolled back.
    pub async fn apply(
        &self,
        items: &[(InboxEntry, IncomingEvent)],
        rules: &dyn PaymentRules,
        deliveries: &[(String, DeliveryResult)],
    ) -> StoreResult<Vec<PaymentOutcome>> {
        self.run(items, Some(rules), deliveries).await
    }

    /// Delivery results that no payment batch carried, in a transaction of their own.
    pub async fn write_deliveries(&self, results: &[(String, DeliveryResult)]) -> StoreResult<()> {
        self.run(&[], None, results).await.map(drop)
    }

    /// A batch: events (with their rules) and delivery results.
    async fn run(
        &self,
        items: &[(InboxEntry, IncomingEvent)],
        rules: Option<&dyn PaymentRules>,
        deliveries: &[(String, DeliveryResult)],
    ) -> StoreResult<Vec<PaymentOutcome>> {
        let now = crate::sql::now();
        let mut stages = Stages::start();
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let _permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| timed_out())?;
        let keys = Keys::of(items);
        // The first round trip, on a kept connection if one works, else on a new one.
        let (mut conn, reads) = loop {
            let (conn, kept) = match self.kept() {
                Some(conn) => (conn, true),
                None => (
                    tokio::time::timeout_at(deadline, self.connect())
                        .await
                        .map_err(|_| timed_out())??,
                    false,
                ),
            };
            match keys.read(&conn).await {
                Ok(reads) => break (conn, reads),
                Err(err) if kept && session_ended(&err, &conn.client) => {
                    tracing::debug!(error = %err, "a kept payment batch connection is gone");
                }
                Err(err) => {
                    self.end(conn).await;
                    return Err(err.into());
                }
            }
        };
        stages.lap("read");
        let applied = async {
            let mut staged = Staged::default();
            let mut outcomes = Vec::new();
            if let Some(rules) = rules {
                reads.into_staged(&mut staged)?;
                outcomes =
                    stage_events(&mut PgBatch(&mut conn), &mut staged, items, rules, now).await?;
            }
            stage_deliveries(&mut PgBatch(&mut conn), &mut staged, deliveries, now).await?;
            stages.lap("stage");
            Ok::<_, StoreError>((outcomes, staged))
        }
        .await;
        let (outcomes, staged) = match applied {
            Ok(applied) => applied,
            Err(err) => {
                self.end(conn).await;
                return Err(err);
            }
        };
        self.write_and_commit(conn, &staged, items, now).await?;
        stages.lap("write");
        Ok(outcomes)
    }

    /// The batch's write ([`BATCH_WRITE`]) and `COMMIT`, sent together. If the write fails,
    /// the server ends the transaction at the `COMMIT` with a rollback.
    async fn write_and_commit(
        &self,
        conn: BatchConnection,
        staged: &Staged,
        items: &[(InboxEntry, IncomingEvent)],
        now: time::OffsetDateTime,
    ) -> StoreResult<()> {
        let empty = staged.updates.is_empty()
            && staged.inbox.is_empty()
            && staged.events.is_empty()
            && staged.ledger.is_empty()
            && staged.announcements.is_empty()
            && staged.delivered.is_empty();
        let (written, committed) = if empty {
            (Ok(0), conn.client.batch_execute("COMMIT").await)
        } else {
            let params = write_params(staged, items, now);
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as _).collect();
            futures_util::join!(
                conn.client.execute(&conn.write, &refs),
                conn.client.batch_execute("COMMIT"),
            )
        };
        match committed {
            // The transaction ended, committed or (after a failed write) rolled back.
            Ok(()) => self.keep(conn),
            Err(err) => return Err(written.err().unwrap_or(err).into()),
        }
        written?;
        Ok(())
    }

    /// Rolls a failed batch's transaction back; the connection is kept only if that went
    /// through.
    async fn end(&self, conn: BatchConnection) {
        match conn.client.batch_execute("ROLLBACK").await {
            Ok(()) => self.keep(conn),
            Err(err) => tracing::warn!(error = %err, "rolling back a failed batch failed"),
        }
    }
}

/// Whether an error says the connection's session is over: closed, or ended by the server
/// (a `FATAL` error, such as `pg_terminate_backend`'s, which a kept connection reads as the
/// answer to its next request, maybe before it has seen the socket close).
fn session_ended(err: &tokio_postgres::Error, client: &Client) -> bool {
    use tokio_postgres::error::Severity;
    err.is_closed()
        || client.is_closed()
        || err
            .as_db_error()
            .is_some_and(|db| db.parsed_severity() == Some(Severity::Fatal))
}

fn timed_out() -> StoreError {
    StoreError::Database(sqlx::Error::PoolTimedOut)
}

/// A batch's keys: the order references of its events (not test notifications), and the
/// events' dedupe keys by column.
struct Keys<'a> {
    orders: Vec<&'a str>,
    providers: Vec<&'a str>,
    ids: Vec<&'a str>,
    statuses: Vec<&'a str>,
}

/// What the first round trip read: locked transactions, recorded keys, bound devices.
struct Reads(
    Vec<tokio_postgres::Row>,
    Vec<tokio_postgres::Row>,
    Vec<tokio_postgres::Row>,
);

impl<'a> Keys<'a> {
    fn of(items: &'a [(InboxEntry, IncomingEvent)]) -> Self {
        let (events, orders) = batch_keys(items);
        Self {
            providers: events.iter().map(|e| e.provider.as_str()).collect(),
            ids: events
                .iter()
                .map(|e| e.provider_transaction_id.as_str())
                .collect(),
            statuses: events.iter().map(|e| e.status.as_str()).collect(),
            orders,
        }
    }

    /// `BEGIN` and, if there are events, the three reads, sent together: one round trip.
    async fn read(&self, conn: &BatchConnection) -> Result<Reads, tokio_postgres::Error> {
        let client = &conn.client;
        if self.orders.is_empty() {
            client.batch_execute("BEGIN").await?;
            return Ok(Reads(Vec::new(), Vec::new(), Vec::new()));
        }
        let orders: [&(dyn ToSql + Sync); 1] = [&self.orders];
        let keys: [&(dyn ToSql + Sync); 5] = [
            &self.providers,
            &self.ids,
            &self.statuses,
            &SEQUENCE_LOCK_CLASS,
            &self.orders,
        ];
        let (_, locked, recorded, bound) = futures_util::try_join!(
            client.batch_execute("BEGIN"),
            client.query(&conn.lock, &orders),
            client.query(&conn.keys, &keys),
            client.query(&conn.devices, &orders),
        )?;
        Ok(Reads(locked, recorded, bound))
    }
}

impl Reads {
    /// Into the batch's staging: transactions by order reference, keys recorded before,
    /// each terminal's bound device (or none). A batch without events read nothing.
    fn into_staged(self, staged: &mut Staged) -> StoreResult<()> {
        let Reads(locked, recorded, bound) = self;
        for row in &locked {
            let t = transaction_from_row(row)?;
            staged.transactions.insert(t.order_ref.clone(), t);
        }
        for row in &recorded {
            let key = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            staged.known.insert(key, row.try_get(3)?);
        }
        for terminal in staged_terminals(staged) {
            staged.devices.insert(terminal, None);
        }
        bound_devices(staged, &bound)
    }
}

/// Where a payment batch's time goes: each stage's wall time, from the daemon's side (so a
/// round trip's includes the server's work), into `gema_payment_commit_stage_seconds{stage}`.
/// The stages, in order: `read` (a kept connection; `BEGIN` and the three reads, one round
/// trip), `stage` (the daemon deciding each event's rows; rare statements of its own) and
/// `write` ([`BATCH_WRITE`] and `COMMIT`, one round trip).
struct Stages(std::time::Instant);

impl Stages {
    fn start() -> Self {
        Self(std::time::Instant::now())
    }

    /// Records the time since the previous lap as `stage`.
    fn lap(&mut self, stage: &'static str) {
        let now = std::time::Instant::now();
        metrics::histogram!("gema_payment_commit_stage_seconds", "stage" => stage)
            .record(now.duration_since(self.0).as_secs_f64());
        self.0 = now;
    }
}

/// Locks a batch's transactions: `$1` the order references.
const LOCK_TRANSACTIONS: &str =
    "SELECT * FROM transactions WHERE order_ref = ANY($1::text[]) ORDER BY order_ref FOR UPDATE";

/// Which keys `(provider, provider id, status)` were recorded before: `$1`, `$2`, `$3` the
/// keys' columns. First it takes the sequence locks of class `$4` ([`SEQUENCE_LOCK_CLASS`])
/// of the terminals of the order references `$5`: the one-time filter runs before any row.
/// It runs after [`LOCK_TRANSACTIONS`], so it reads the terminals of the rows locked and the
/// keys their previous holder committed.
static RECORDED_KEYS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH locks AS MATERIALIZED ({}) \
         SELECT e.provider, e.provider_transaction_id, e.status, \
         COALESCE(e.transaction_id, '') \
         FROM unnest($1::text[], $2::text[], $3::text[]) AS k (provider, id, status) \
         JOIN transaction_events e ON e.provider = k.provider \
         AND e.provider_transaction_id = k.id AND e.status = k.status \
         WHERE (SELECT count(*) FROM locks) >= 0",
        sequence_locks(
            "$4",
            "(SELECT t.terminal_id FROM transactions t WHERE t.order_ref = ANY($5::text[]))"
        )
    )
});

/// The advisory-lock class ("GMSQ") of the per-terminal locks on the next announcement
/// sequence. Two batches that announce to one device at once (two nodes, or two commit
/// loops of one) would each read the same `MAX(sequence)` and give two announcements one
/// number. So a batch holds, until its commit, a transaction-scoped advisory lock per
/// terminal it reads devices for (this class, key a hash of the terminal id), taken after
/// its transactions' row locks and in ascending key order, so batches cannot deadlock on
/// them. Advisory locks block no other writer of the devices or announcements.
const SEQUENCE_LOCK_CLASS: i32 = 0x474d_5351;

/// A statement that takes the sequence locks of class `class` of the terminals `terminals`
/// (a subquery of one text column): keys `hashtext` of the terminal id, each once, in
/// ascending order, so two batches cannot deadlock on them. Every batch takes them through
/// this one text, so every node computes a terminal's key alike (a collision of two
/// terminals' keys only makes their batches wait for each other).
fn sequence_locks(class: &str, terminals: &str) -> String {
    format!(
        "SELECT pg_advisory_xact_lock({class}::int4, s.k) FROM \
         (SELECT DISTINCT hashtext(t.terminal_id) AS k FROM {terminals} AS t (terminal_id) \
          ORDER BY 1) AS s"
    )
}

/// Takes the sequence locks of class `$1` of the terminals `$2`.
static TAKE_SEQUENCE_LOCKS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| sequence_locks("$1", "unnest($2::text[])"));

/// [`BOUND_DEVICES`] for the terminals of the order references `$1`. The terminals are an
/// array the server computes once (`ARRAY(…)`, an init plan), so the devices are found
/// through their terminal index; as `IN (SELECT …)` the generic plan scanned every device.
static BOUND_DEVICES_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{BOUND_DEVICES} = ANY(ARRAY(SELECT t.terminal_id FROM transactions t \
         WHERE t.order_ref = ANY($1::text[])))"
    )
});

/// [`BOUND_DEVICES`] for the terminals `$1`.
static BOUND_DEVICES_OF_TERMINALS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{BOUND_DEVICES} = ANY($1::text[])"));

/// The bound devices' rows into the batch's terminals.
fn bound_devices(staged: &mut Staged, rows: &[tokio_postgres::Row]) -> StoreResult<()> {
    for row in rows {
        staged.devices.insert(
            row.try_get(0)?,
            Some(BoundDevice {
                id: row.try_get(1)?,
                next_sequence: row.try_get(2)?,
                desired_config: row.try_get(3)?,
            }),
        );
    }
    Ok(())
}

/// A batch's writes in one statement whatever its size: each table's rows travel as one
/// array per column and are unnested, each table a data-modifying `WITH` clause (they all
/// run on one snapshot; foreign keys are checked at the statement's end). One text, so
/// every connection prepares it once; an empty array writes nothing. The delivered
/// announcements are joined with their ids' array, not filtered by `id = ANY(…)`: the
/// generic plan of that walked every pending row of the outbox comparing each with every
/// id.
///
/// `$1` now, `$2` the announcements' next attempt times; changed transactions `$3`–`$10`;
/// inbox `$11`–`$18`; events `$19`–`$27`; ledger `$28`–`$34`; announcements `$35`–`$41`;
/// `$42` the announcements delivered.
const BATCH_WRITE: &str = "WITH \
     changed AS (UPDATE transactions t SET status = v.status, provider = v.provider, \
       provider_transaction_id = v.provider_transaction_id, issuer = v.issuer, \
       paid_at = v.paid_at, paid_after_expiry = v.paid_after_expiry, updated_at = v.updated_at \
       FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::timestamptz[], $9::boolean[], $10::timestamptz[]) \
         AS v (id, status, provider, provider_transaction_id, issuer, paid_at, \
         paid_after_expiry, updated_at) \
       WHERE t.id = v.id), \
     inbox AS (INSERT INTO payment_inbox (id, provider, received_at, headers, body, outcome, \
       detail, transaction_id) \
       SELECT * FROM unnest($11::text[], $12::text[], $13::timestamptz[], $14::text[], \
         $15::bytea[], $16::text[], $17::text[], $18::text[])), \
     events AS (INSERT INTO transaction_events (id, transaction_id, provider, \
       provider_transaction_id, status, raw_status, amount, effect, inbox_id, created_at) \
       SELECT *, $1::timestamptz FROM unnest($19::text[], $20::text[], $21::text[], \
         $22::text[], $23::text[], $24::text[], $25::bigint[], $26::text[], $27::text[])), \
     ledger AS (INSERT INTO ledger_entries (id, transaction_id, merchant_id, entry_type, \
       amount, external_id, reverses_id, created_at) \
       SELECT *, $1::timestamptz FROM unnest($28::text[], $29::text[], $30::text[], \
         $31::text[], $32::bigint[], $33::text[], $34::text[]) \
       ON CONFLICT (external_id) DO NOTHING), \
     announced AS (INSERT INTO announcements (id, transaction_id, terminal_id, device_id, \
       status, sequence, next_attempt_at_ms, expires_at_ms, created_at, updated_at) \
       SELECT a.id, a.transaction_id, a.terminal_id, a.device_id, a.status, a.sequence, \
         a.next_attempt_at_ms, a.expires_at_ms, $1::timestamptz, $1::timestamptz \
       FROM unnest($35::text[], $36::text[], $37::text[], $38::text[], $39::text[], \
         $40::bigint[], $2::bigint[], $41::bigint[]) \
         AS a (id, transaction_id, terminal_id, device_id, status, sequence, \
         next_attempt_at_ms, expires_at_ms)), \
     delivered AS (UPDATE announcements a SET status = 'delivered', attempts = attempts + 1, \
       delivered_at = $1::timestamptz, last_attempt_at = $1::timestamptz, \
       updated_at = $1::timestamptz \
       FROM unnest($42::text[]) AS d (id) WHERE a.id = d.id AND a.status = 'pending') \
     SELECT 1";

/// A parameter of [`BATCH_WRITE`], borrowing from the batch.
type WriteParam<'a> = Box<dyn ToSql + Send + Sync + 'a>;

/// The parameters of [`BATCH_WRITE`], in its order: one array per column.
fn write_params<'a>(
    staged: &'a Staged,
    items: &'a [(InboxEntry, IncomingEvent)],
    now: time::OffsetDateTime,
) -> Vec<WriteParam<'a>> {
    /// One column of some rows, as an array.
    fn column<'a, R: 'a, T: ToSql + Send + Sync + 'a>(
        rows: impl IntoIterator<Item = &'a R>,
        value: impl Fn(&'a R) -> T,
    ) -> WriteParam<'a> {
        Box::new(rows.into_iter().map(value).collect::<Vec<T>>())
    }
    let changed = || staged.updates.values();
    let inbox = &staged.inbox;
    let request = |row: &InboxRow| &items[row.item].0;
    let events = &staged.events;
    let ledger = &staged.ledger;
    let announced = &staged.announcements;
    vec![
        Box::new(now),
        column(announced, |r| r.next_attempt_at_ms),
        column(changed(), |t| t.id.as_str()),
        column(changed(), |t| t.status.as_str()),
        column(changed(), |t| t.provider.as_deref()),
        column(changed(), |t| t.provider_transaction_id.as_deref()),
        column(changed(), |t| t.issuer.as_deref()),
        column(changed(), |t| t.paid_at),
        column(changed(), |t| t.paid_after_expiry),
        column(changed(), |t| t.updated_at),
        column(inbox, |r| r.id.as_str()),
        column(inbox, |r| request(r).provider.as_str()),
        column(inbox, |r| request(r).received_at),
        column(inbox, |r| request(r).headers.as_str()),
        column(inbox, |r| request(r).body.as_slice()),
        column(inbox, |r| r.outcome),
        column(inbox, |r| r.detail.as_deref()),
        column(inbox, |r| r.transaction_id.as_deref()),
        column(events, |r| r.id.as_str()),
        column(events, |r| r.transaction_id.as_str()),
        column(events, |r| r.event.provider.as_str()),
        column(events, |r| r.event.provider_transaction_id.as_str()),
        column(events, |r| r.event.status.as_str()),
        column(events, |r| r.event.raw_status.as_str()),
        column(events, |r| r.event.amount),
        column(events, |r| r.effect),
        column(events, |r| r.inbox_id.as_str()),
        column(ledger, |r| r.id.as_str()),
        column(ledger, |r| r.transaction_id.as_str()),
        column(ledger, |r| r.merchant_id.as_str()),
        column(ledger, |r| r.entry_type),
        column(ledger, |r| r.amount),
        column(ledger, |r| r.external_id.as_str()),
        column(ledger, |r| r.reverses_id.as_deref()),
        column(announced, |r| r.id.as_str()),
        column(announced, |r| r.transaction_id.as_str()),
        column(announced, |r| r.terminal_id.as_str()),
        column(announced, |r| r.device_id.as_deref()),
        column(announced, |r| r.status().as_str()),
        column(announced, |r| r.sequence),
        column(announced, |r| r.expires_at_ms),
        column(&staged.delivered, String::as_str),
    ]
}

/// A `transactions` row (`SELECT *`).
fn transaction_from_row(row: &tokio_postgres::Row) -> StoreResult<Transaction> {
    let status: String = row.try_get("status")?;
    let source: String = row.try_get("source")?;
    Ok(Transaction {
        id: row.try_get("id")?,
        order_ref: row.try_get("order_ref")?,
        terminal_id: row.try_get("terminal_id")?,
        merchant_id: row.try_get("merchant_id")?,
        amount: row.try_get("amount")?,
        status: TransactionStatus::try_from(status).map_err(StoreError::Corrupt)?,
        source: TransactionSource::try_from(source).map_err(StoreError::Corrupt)?,
        provider: row.try_get("provider")?,
        provider_transaction_id: row.try_get("provider_transaction_id")?,
        issuer: row.try_get("issuer")?,
        paid_at: row.try_get("paid_at")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        paid_after_expiry: row.try_get("paid_after_expiry")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A batch's transaction, for the staging's other statements.
struct PgBatch<'c>(&'c mut BatchConnection);

impl PgBatch<'_> {
    /// Runs one of the shared statements with its [`Param`]s, typed as sqlx would bind
    /// them (the server casts them to the columns' types); prepared once per connection.
    async fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> StoreResult<Vec<tokio_postgres::Row>> {
        let statement = self.statement(sql, &param_types(params)).await?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        Ok(self.0.client.query(&statement, &refs).await?)
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<u64> {
        let statement = self.statement(sql, &param_types(params)).await?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        Ok(self.0.client.execute(&statement, &refs).await?)
    }

    /// `sql` prepared on this connection once, its parameters of `types` (none: as the
    /// statement's casts say).
    async fn statement(&mut self, sql: &str, types: &[Type]) -> StoreResult<Statement> {
        if let Some(statement) = self.0.other.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.0.client.prepare_typed(sql, types).await?;
        self.0.other.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

impl BatchIo for PgBatch<'_> {
    async fn static_qr_terminal(
        &mut self,
        payment_ref: &str,
    ) -> StoreResult<Option<(String, String)>> {
        let rows = self
            .query(STATIC_QR_TERMINAL, &[Param::Text(Some(payment_ref))])
            .await?;
        rows.first()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .transpose()
    }

    async fn insert_transaction(&mut self, transaction: &Transaction) -> StoreResult<()> {
        self.execute(INSERT_TRANSACTION, &transaction_params(transaction))
            .await?;
        Ok(())
    }

    async fn insert_internal_event(
        &mut self,
        transaction_id: &str,
        status: &str,
        amount: i64,
        now: time::OffsetDateTime,
    ) -> StoreResult<()> {
        let id = crate::sql::new_id("evt");
        let params = internal_event_params(&id, transaction_id, status, amount, now);
        self.execute(INTERNAL_EVENT, &params).await?;
        Ok(())
    }

    async fn ledger_originals(
        &mut self,
        staged: &mut Staged,
        transaction_id: &str,
        now: time::OffsetDateTime,
    ) -> StoreResult<Vec<(String, String)>> {
        let rows = std::mem::take(&mut staged.ledger);
        for chunk in insert_chunks(&rows) {
            let piece = Piece::Ledger(chunk);
            let params: Vec<Param<'_>> = piece_params(&piece, &[], now).into_iter().collect();
            self.execute(&piece.sql(Placeholders::Numbered, 1), &params)
                .await?;
        }
        let rows = self
            .query(LEDGER_ORIGINALS, &[Param::Text(Some(transaction_id))])
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// A terminal the batch did not prefetch (a static QR's): its sequence lock is taken
    /// now, out of order; a deadlock this could make is PostgreSQL's to break, and the
    /// batch is then applied again one event at a time.
    async fn prefetch_devices(
        &mut self,
        staged: &mut Staged,
        terminals: &[&str],
    ) -> StoreResult<()> {
        if terminals.is_empty() {
            return Ok(());
        }
        let locks = self.statement(&TAKE_SEQUENCE_LOCKS, &[]).await?;
        let devices = self.statement(&BOUND_DEVICES_OF_TERMINALS, &[]).await?;
        let client = &self.0.client;
        client
            .query(&locks, &[&SEQUENCE_LOCK_CLASS, &terminals])
            .await?;
        for terminal in terminals {
            staged.devices.insert((*terminal).to_owned(), None);
        }
        let rows = client.query(&devices, &[&terminals]).await?;
        bound_devices(staged, &rows)
    }

    async fn record_one_delivery(
        &mut self,
        announcement_id: &str,
        update: &DeliveryUpdate,
    ) -> StoreResult<bool> {
        let params: Vec<Param<'_>> = update.params(announcement_id).into_iter().collect();
        if self.execute(RECORD_DELIVERY, &params).await? > 0 {
            return Ok(true);
        }
        let exists = self
            .query(ANNOUNCEMENT_EXISTS, &[Param::Text(Some(announcement_id))])
            .await?;
        Ok(!exists.is_empty())
    }
}

/// The types of these parameters, as sqlx's PostgreSQL driver declares them.
fn param_types(params: &[Param<'_>]) -> Vec<Type> {
    params.iter().map(Param::pg_type).collect()
}

impl Param<'_> {
    /// The type sqlx's PostgreSQL driver declares for this value.
    fn pg_type(&self) -> Type {
        match self {
            Param::Text(_) | Param::OwnedText(_) => Type::TEXT,
            Param::Int(_) => Type::INT8,
            Param::Bool(_) => Type::BOOL,
            Param::Blob(_) | Param::OwnedBlob(_) => Type::BYTEA,
            Param::Time(_) => Type::TIMESTAMPTZ,
        }
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Text(text) => text.to_sql(ty, out),
            Param::OwnedText(text) => text.as_deref().to_sql(ty, out),
            Param::Int(n) => n.to_sql(ty, out),
            Param::Bool(flag) => flag.to_sql(ty, out),
            Param::Blob(bytes) => bytes.to_sql(ty, out),
            Param::OwnedBlob(bytes) => bytes.as_slice().to_sql(ty, out),
            Param::Time(t) => t.to_sql(ty, out),
        }
    }

    /// Checked per value in [`ToSql::to_sql_checked`]: the statement was prepared with
    /// [`Param::pg_type`], so each value meets its own type.
    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        match err.code() {
            Some(code) if *code == SqlState::UNIQUE_VIOLATION => StoreError::conflict(
                "already_exists",
                None,
                "a record with the same unique value already exists",
            ),
            Some(code) if *code == SqlState::FOREIGN_KEY_VIOLATION => StoreError::conflict(
                "reference_missing",
                None,
                "a referenced record does not exist",
            ),
            _ => StoreError::Postgres(err),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The write's parameters are one list in [`super::BATCH_WRITE`]'s order: as many as the
    /// statement names (a missing or extra column would shift every one after it).
    #[test]
    fn the_write_gets_a_parameter_for_every_one_its_statement_names() {
        let mut named: Vec<usize> = super::BATCH_WRITE
            .split('$')
            .skip(1)
            .map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().unwrap()
            })
            .collect();
        named.sort_unstable();
        named.dedup();
        let staged = crate::payments::batch::Staged::default();
        let params = super::write_params(&staged, &[], crate::sql::now());
        assert_eq!(named, (1..=params.len()).collect::<Vec<_>>());
    }
}
