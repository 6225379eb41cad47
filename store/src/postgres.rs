//! The PostgreSQL backend, for deployments with several gateway nodes.
//!
//! Transactions run at READ COMMITTED; rows a transaction is about to change are read with
//! `FOR UPDATE`, and unique constraints back every "check, then insert" in case two nodes
//! race.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor};

use crate::payments::batch::{
    BOUND_DEVICES, BatchIo, BoundDevice, DeliveryUpdate, INSERT_TRANSACTION, LEDGER_ORIGINALS,
    Piece, Placeholders, STATIC_QR_TERMINAL, Staged, batch_keys, insert_chunks, piece_params,
    stage_deliveries, stage_events, staged_terminals, transaction_params,
};
use crate::{
    ConnectOptions, DeliveryResult, InboxEntry, IncomingEvent, PaymentOutcome, PaymentRules,
    StoreResult,
};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub(crate) struct PostgresStore {
    pub(crate) read: PgPool,
    pub(crate) write: PgPool,
    /// The payment batches' own connections (see [`BatchConnections`]).
    batches: Arc<BatchConnections>,
    /// How long a batch waits for a connection of [`BatchConnections`].
    acquire_timeout: Duration,
}

/// Connections for payment batches, enough for the gateway's commit loops side by side.
const BATCH_CONNECTIONS: usize = 8;

/// The payment batches' connections, kept between batches, at most [`BATCH_CONNECTIONS`]
/// in use at once. Not a sqlx pool: a pool pings a connection when it is taken and again
/// when it is given back, two round trips per batch that wake the server's backend (on a
/// small box, for a core the batch's own statements wait for) to learn what the batch's
/// `BEGIN` finds out anyway. A kept connection that the server closed meanwhile (a
/// restart, `pg_terminate_backend`, an idle timeout) fails its `BEGIN` and is replaced by
/// another; a batch that fails after its `BEGIN` gives its connection back only if its
/// `ROLLBACK` went through.
///
/// Their sessions use generic plans only (`plan_cache_mode = force_generic_plan`): a
/// batch's statements take arrays whose lengths the planner sees, so with the default it
/// kept planning each execution anew (a custom plan per batch size looks cheaper than the
/// generic one), while the generic plan of a lookup by key is the right one for any size.
/// Other statements keep the default on the main pool.
#[derive(Debug)]
struct BatchConnections {
    options: PgConnectOptions,
    permits: tokio::sync::Semaphore,
    /// Connections outside any transaction, the most recently given back last.
    idle: Mutex<Vec<PgConnection>>,
}

/// A batch connection with a transaction begun on it. [`BatchConnection::commit`] and
/// [`BatchConnection::rollback`] end the transaction and keep the connection for the next
/// batch; dropping it closes the connection, and the server rolls the transaction back.
struct BatchConnection<'a> {
    conn: PgConnection,
    owner: &'a BatchConnections,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl BatchConnections {
    fn new(options: PgConnectOptions) -> Self {
        Self {
            options,
            permits: tokio::sync::Semaphore::new(BATCH_CONNECTIONS),
            idle: Mutex::new(Vec::with_capacity(BATCH_CONNECTIONS)),
        }
    }

    /// A connection for one batch, its transaction begun: the most recently given back
    /// whose `BEGIN` works, or a new one. Waiting for a free one and connecting a new one
    /// take `acquire_timeout` at most, as a pool's acquire would.
    async fn begin(&self, acquire_timeout: Duration) -> StoreResult<BatchConnection<'_>> {
        let deadline = tokio::time::Instant::now() + acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let kept = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut conn) = kept else {
                break;
            };
            match conn.execute("BEGIN").await {
                Ok(_) => {
                    return Ok(BatchConnection {
                        conn,
                        owner: self,
                        _permit: permit,
                    });
                }
                Err(err) => {
                    tracing::debug!(error = %err, "a kept payment batch connection is gone")
                }
            }
        }
        let mut conn = tokio::time::timeout_at(deadline, PgConnection::connect_with(&self.options))
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        conn.execute("SET plan_cache_mode = force_generic_plan")
            .await?;
        conn.execute("BEGIN").await?;
        Ok(BatchConnection {
            conn,
            owner: self,
            _permit: permit,
        })
    }
}

impl BatchConnection<'_> {
    async fn commit(mut self) -> StoreResult<()> {
        self.conn.execute("COMMIT").await?;
        self.keep();
        Ok(())
    }

    async fn rollback(mut self) -> StoreResult<()> {
        self.conn.execute("ROLLBACK").await?;
        self.keep();
        Ok(())
    }

    /// Keeps the connection, outside any transaction now, for the next batch.
    fn keep(self) {
        self.owner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.conn);
    }
}

impl PostgresStore {
    pub async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await?;
        let batches = Arc::new(BatchConnections::new(url.parse()?));
        Ok(Self {
            read: pool.clone(),
            write: pool,
            batches,
            acquire_timeout: options.acquire_timeout,
        })
    }
}

/// Payment batches: the reads three statements whatever the batch's size, the writes one
/// ([`BATCH_WRITE`]).
impl PostgresStore {
    /// Applies events, and records delivery results, in one database transaction. Any
    /// failing statement fails the whole batch, which is rolled back.
    pub(crate) async fn apply_in_one_transaction(
        &self,
        items: &[(InboxEntry, IncomingEvent)],
        rules: &dyn PaymentRules,
        deliveries: &[(String, DeliveryResult)],
    ) -> StoreResult<Vec<PaymentOutcome>> {
        let now = crate::sql::now();
        let mut stages = Stages::start();
        let mut tx = self.batches.begin(self.acquire_timeout).await?;
        stages.lap("begin");
        let applied = async {
            let conn = &mut tx.conn;
            let mut staged = Staged::default();
            prefetch(conn, &mut staged, items, &mut stages).await?;
            let mut io = PgBatch(conn);
            let outcomes = stage_events(&mut io, &mut staged, items, rules, now).await?;
            stage_deliveries(&mut io, &mut staged, deliveries, now).await?;
            stages.lap("stage");
            flush(conn, &staged, items, now).await?;
            stages.lap("write");
            Ok::<_, crate::StoreError>(outcomes)
        }
        .await;
        match applied {
            Ok(outcomes) => {
                tx.commit().await?;
                stages.lap("commit");
                Ok(outcomes)
            }
            Err(err) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rolling back a failed batch failed");
                }
                Err(err)
            }
        }
    }

    /// Delivery results that no payment batch carried, in a transaction of their own.
    pub(crate) async fn write_deliveries(
        &self,
        results: &[(String, DeliveryResult)],
    ) -> StoreResult<()> {
        let now = crate::sql::now();
        let mut tx = self.batches.begin(self.acquire_timeout).await?;
        let mut staged = Staged::default();
        stage_deliveries(&mut PgBatch(&mut tx.conn), &mut staged, results, now).await?;
        flush(&mut tx.conn, &staged, &[], now).await?;
        tx.commit().await
    }
}

/// Where a payment batch's time goes: each stage's wall time, from the daemon's side (so a
/// statement's includes its round trip and the server's work), into
/// `gema_payment_commit_stage_seconds{stage}`. The stages, in order: `begin` (a kept
/// connection and `BEGIN`), `lock` (the transactions' row locks), `keys` (the sequence locks
/// and the events recorded before), `devices` (the bound devices), `stage` (the daemon
/// deciding each event's rows; rare statements of its own), `write` ([`BATCH_WRITE`]) and
/// `commit`. A batch of delivery results only has no `lock`, `keys` or `devices`.
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

/// Reads what a batch's events need, three statements whatever the batch's size: their
/// transactions (locked, in order_ref order so concurrent batches lock alike), then which
/// of the events were recorded before (after the locks, so a copy committed by the lock's
/// previous holder is seen), then the devices bound to those terminals. Each takes its
/// keys as arrays, so each is one prepared statement for any batch.
async fn prefetch(
    conn: &mut PgConnection,
    staged: &mut Staged,
    items: &[(InboxEntry, IncomingEvent)],
    stages: &mut Stages,
) -> StoreResult<()> {
    let (events, orders) = batch_keys(items);
    if !orders.is_empty() {
        let locked: Vec<crate::Transaction> = sqlx::query_as(LOCK_TRANSACTIONS)
            .bind(&orders)
            .fetch_all(&mut *conn)
            .await?;
        stages.lap("lock");
        for t in locked {
            staged.transactions.insert(t.order_ref.clone(), t);
        }
    }
    if events.is_empty() {
        return Ok(());
    }
    // The terminals' sequence locks (see [`SEQUENCE_LOCK_CLASS`]) are taken with the keys'
    // read: before the devices' read, after the transactions' locks.
    let terminals = staged_terminals(staged);
    let locks = sequence_lock_keys(&terminals);
    let providers: Vec<&str> = events.iter().map(|e| e.provider.as_str()).collect();
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e.provider_transaction_id.as_str())
        .collect();
    let statuses: Vec<&str> = events.iter().map(|e| e.status.as_str()).collect();
    let recorded: Vec<(String, String, String, String)> = sqlx::query_as(RECORDED_KEYS)
        .bind(providers)
        .bind(ids)
        .bind(statuses)
        .bind(SEQUENCE_LOCK_CLASS)
        .bind(locks)
        .fetch_all(&mut *conn)
        .await?;
    stages.lap("keys");
    for (provider, id, status, transaction) in recorded {
        staged.known.insert((provider, id, status), transaction);
    }
    prefetch_devices(conn, staged, &terminals).await?;
    stages.lap("devices");
    Ok(())
}

async fn prefetch_devices(
    conn: &mut PgConnection,
    staged: &mut Staged,
    terminals: &[impl AsRef<str> + Sync],
) -> StoreResult<()> {
    if terminals.is_empty() {
        return Ok(());
    }
    let terminals: Vec<&str> = terminals.iter().map(AsRef::as_ref).collect();
    for terminal in &terminals {
        staged.devices.insert((*terminal).to_owned(), None);
    }
    let bound: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(&BOUND_DEVICES_SQL)
        .bind(&terminals)
        .fetch_all(&mut *conn)
        .await?;
    for (terminal, id, next_sequence, desired_config) in bound {
        staged.devices.insert(
            terminal,
            Some(BoundDevice {
                id,
                next_sequence,
                desired_config,
            }),
        );
    }
    Ok(())
}

/// Locks a batch's transactions: `$1` the order references.
const LOCK_TRANSACTIONS: &str =
    "SELECT * FROM transactions WHERE order_ref = ANY($1::text[]) ORDER BY order_ref FOR UPDATE";

/// Which keys `(provider, provider id, status)` were recorded before: `$1`, `$2`, `$3` the
/// keys' columns. First it takes the sequence locks `$5` of class `$4`
/// ([`SEQUENCE_LOCK_CLASS`]), in the array's order: the one-time filter runs before any row.
const RECORDED_KEYS: &str = "WITH locks AS MATERIALIZED \
     (SELECT pg_advisory_xact_lock($4::int4, k) FROM unnest($5::int4[]) AS k) \
     SELECT e.provider, e.provider_transaction_id, e.status, \
     COALESCE(e.transaction_id, '') \
     FROM unnest($1::text[], $2::text[], $3::text[]) AS k (provider, id, status) \
     JOIN transaction_events e ON e.provider = k.provider \
     AND e.provider_transaction_id = k.id AND e.status = k.status \
     WHERE (SELECT count(*) FROM locks) >= 0";

/// The advisory-lock class ("GMSQ") of the per-terminal locks on the next announcement
/// sequence. Two batches that announce to one device at once (two nodes, or two commit
/// loops of one) would each read the same `MAX(sequence)` and give two announcements one
/// number. So a batch holds, until its commit, a transaction-scoped advisory lock per
/// terminal it reads devices for (this class, key a hash of the terminal id), taken after
/// its transactions' row locks and in ascending key order, so batches cannot deadlock on
/// them. Advisory locks block no other writer of the devices or announcements.
const SEQUENCE_LOCK_CLASS: i32 = 0x474d_5351;

/// Takes the sequence locks `$2` of class `$1` in the array's order.
const TAKE_SEQUENCE_LOCKS: &str =
    "SELECT pg_advisory_xact_lock($1::int4, k) FROM unnest($2::int4[]) AS k";

/// The sequence lock keys of these terminals, ascending, without repeats (FNV-1a, so they
/// are the same on every node).
fn sequence_lock_keys(terminals: &[impl AsRef<str>]) -> Vec<i32> {
    let mut keys: Vec<i32> = terminals
        .iter()
        .map(|terminal| {
            let hash = terminal
                .as_ref()
                .bytes()
                .fold(0x811c_9dc5_u32, |hash, byte| {
                    (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
                });
            i32::from_ne_bytes(hash.to_ne_bytes())
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// [`BOUND_DEVICES`] for `$1`, the terminals.
static BOUND_DEVICES_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{BOUND_DEVICES} = ANY($1::text[])"));

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

/// Writes everything the batch staged ([`BATCH_WRITE`]).
async fn flush(
    conn: &mut PgConnection,
    staged: &Staged,
    items: &[(InboxEntry, IncomingEvent)],
    now: time::OffsetDateTime,
) -> StoreResult<()> {
    if staged.updates.is_empty()
        && staged.inbox.is_empty()
        && staged.events.is_empty()
        && staged.ledger.is_empty()
        && staged.announcements.is_empty()
        && staged.delivered.is_empty()
    {
        return Ok(());
    }
    let changed: Vec<&crate::Transaction> = staged.updates.values().collect();
    let inbox = &staged.inbox;
    let events = &staged.events;
    let ledger = &staged.ledger;
    let announcements = &staged.announcements;
    sqlx::query(BATCH_WRITE)
        .bind(now)
        .bind(
            announcements
                .iter()
                .map(|r| r.next_attempt_at_ms)
                .collect::<Vec<_>>(),
        )
        // Changed transactions.
        .bind(changed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>())
        .bind(
            changed
                .iter()
                .map(|t| t.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            changed
                .iter()
                .map(|t| t.provider.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            changed
                .iter()
                .map(|t| t.provider_transaction_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            changed
                .iter()
                .map(|t| t.issuer.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(changed.iter().map(|t| t.paid_at).collect::<Vec<_>>())
        .bind(
            changed
                .iter()
                .map(|t| t.paid_after_expiry)
                .collect::<Vec<_>>(),
        )
        .bind(changed.iter().map(|t| t.updated_at).collect::<Vec<_>>())
        // Inbox.
        .bind(inbox.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .bind(
            inbox
                .iter()
                .map(|r| items[r.item].0.provider.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            inbox
                .iter()
                .map(|r| items[r.item].0.received_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            inbox
                .iter()
                .map(|r| items[r.item].0.headers.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            inbox
                .iter()
                .map(|r| items[r.item].0.body.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(inbox.iter().map(|r| r.outcome).collect::<Vec<_>>())
        .bind(
            inbox
                .iter()
                .map(|r| r.detail.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            inbox
                .iter()
                .map(|r| r.transaction_id.as_deref())
                .collect::<Vec<_>>(),
        )
        // Events.
        .bind(events.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|r| r.transaction_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|r| r.event.provider.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|r| r.event.provider_transaction_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|r| r.event.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|r| r.event.raw_status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|r| r.event.amount).collect::<Vec<_>>())
        .bind(events.iter().map(|r| r.effect).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|r| r.inbox_id.as_str())
                .collect::<Vec<_>>(),
        )
        // Ledger.
        .bind(ledger.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .bind(
            ledger
                .iter()
                .map(|r| r.transaction_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            ledger
                .iter()
                .map(|r| r.merchant_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(ledger.iter().map(|r| r.entry_type).collect::<Vec<_>>())
        .bind(ledger.iter().map(|r| r.amount).collect::<Vec<_>>())
        .bind(
            ledger
                .iter()
                .map(|r| r.external_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            ledger
                .iter()
                .map(|r| r.reverses_id.as_deref())
                .collect::<Vec<_>>(),
        )
        // Announcements.
        .bind(
            announcements
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            announcements
                .iter()
                .map(|r| r.transaction_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            announcements
                .iter()
                .map(|r| r.terminal_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            announcements
                .iter()
                .map(|r| r.device_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            announcements
                .iter()
                .map(|r| r.status().as_str())
                .collect::<Vec<_>>(),
        )
        .bind(announcements.iter().map(|r| r.sequence).collect::<Vec<_>>())
        .bind(
            announcements
                .iter()
                .map(|r| r.expires_at_ms)
                .collect::<Vec<_>>(),
        )
        // Delivered.
        .bind(
            staged
                .delivered
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A batch's transaction, for the staging's other statements.
struct PgBatch<'c>(&'c mut PgConnection);

impl BatchIo for PgBatch<'_> {
    async fn static_qr_terminal(
        &mut self,
        payment_ref: &str,
    ) -> StoreResult<Option<(String, String)>> {
        Ok(sqlx::query_as(STATIC_QR_TERMINAL)
            .bind(payment_ref)
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn insert_transaction(&mut self, transaction: &crate::Transaction) -> StoreResult<()> {
        crate::db::query(INSERT_TRANSACTION)
            .bind_all(transaction_params(transaction))
            .execute(&mut *self.0)
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
        crate::payments::transaction::insert_internal_event(
            &mut self.0.into(),
            transaction_id,
            status,
            amount,
            now,
        )
        .await
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
            crate::db::query(piece.sql(Placeholders::Numbered, 1))
                .bind_all(piece_params(&piece, &[], now))
                .execute(&mut *self.0)
                .await?;
        }
        Ok(sqlx::query_as(LEDGER_ORIGINALS)
            .bind(transaction_id)
            .fetch_all(&mut *self.0)
            .await?)
    }

    /// A terminal the batch did not prefetch (a static QR's): its sequence lock is taken
    /// now, out of order; a deadlock this could make is PostgreSQL's to break, and the
    /// batch is then applied again one event at a time.
    async fn prefetch_devices(
        &mut self,
        staged: &mut Staged,
        terminals: &[&str],
    ) -> StoreResult<()> {
        sqlx::query(TAKE_SEQUENCE_LOCKS)
            .bind(SEQUENCE_LOCK_CLASS)
            .bind(sequence_lock_keys(terminals))
            .execute(&mut *self.0)
            .await?;
        prefetch_devices(self.0, staged, terminals).await
    }

    async fn record_one_delivery(
        &mut self,
        announcement_id: &str,
        update: &DeliveryUpdate,
    ) -> StoreResult<bool> {
        crate::payments::announcement::record_one_delivery(
            &mut self.0.into(),
            announcement_id,
            update,
        )
        .await
    }
}
