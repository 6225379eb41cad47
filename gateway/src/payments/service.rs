//! The payment flow: a provider request in, a recorded event, a moved transaction, ledger
//! postings and a queued announcement out, handed to delivery at once.

use std::sync::Arc;
use std::time::Duration;

use gema_store::{
    InboxEntry, IncomingEvent, LedgerEntry, LedgerFilter, NewTransaction, Page, PageRequest,
    PaymentOutcome, PaymentRules, Store, Terminal, Transaction, TransactionEvent,
    TransactionFilter, TransactionStatus, Transition,
};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::money::{MAX_AMOUNT, split_fee};
use super::providers::{self, IngestError, PaymentEvent, Provider};
use crate::clock::Clock;
use crate::credentials::{self, SecretString};
use crate::delivery::{DeliveryRecord, Handover, ResultsQueue};
use crate::error::{GatewayError, GatewayResult};
use crate::validate;

/// Provider credentials and payment policy. A provider without credentials is off: its
/// endpoint answers 404.
#[derive(Debug, Clone)]
pub struct PaymentSettings {
    /// Platform fee in basis points of the gross amount (70 = 0.7%, QRIS's MDR).
    pub platform_fee_bps: u32,
    /// How long a pending transaction waits for payment when the caller does not say.
    pub default_pending_ttl: Duration,
    /// How long after a payment its announcement may still be spoken.
    pub announcement_ttl: Duration,
    /// How long an announcement handed over to the relay at its commit stays out of the
    /// outbox's due reads ([`gema_store::PaymentRules::handover_lease_ms`]). Any value is
    /// correct (a worker skips what it already settled and a device's replay reads
    /// everything); it only spares the outbox rereads of announcements in flight. Longer
    /// delays the recheck's catch of one whose node died before an attempt.
    pub handover_lease: Duration,
    pub midtrans_server_key: Option<SecretString>,
    pub xendit_callback_token: Option<SecretString>,
    pub generic_secret: Option<SecretString>,
    /// Allowed clock difference for the generic callback's timestamp.
    pub generic_tolerance: Duration,
    /// How long delivery results with no payment event to ride with wait for one before
    /// the commit loop writes them alone (zero: at once). A store with one writer at a
    /// time (SQLite) wants a few milliseconds: a transaction of results alone is an fsync a
    /// provider's callback may wait behind. The binary sets it from the store's backend.
    pub delivery_results_gather: Duration,
    /// Run the commit loop on a thread of its own (a single-threaded runtime) instead of as
    /// a task on the shared runtime. A batch's duration is every waiting caller's latency,
    /// so with a store whose write is quick and local (SQLite's writer thread) the loop
    /// should not wait in a run queue behind HTTP, TLS and device work (measured at
    /// 2,000 callbacks/s: p50 0.17 ms lower). With a networked store (PostgreSQL) the hop
    /// between runtimes cost more than it saved. The binary chooses.
    pub commit_loop_thread: bool,
    /// How many commit loops may apply events side by side (at least one). The first
    /// takes everything until its queue backs up; then the others join (see
    /// `CommitQueues`). Events of one order in flight stay on one loop, so they keep their
    /// order; delivery results go to the first loop. A store that commits one transaction
    /// at a time (SQLite) wants one. With PostgreSQL under heavy load a loop spends most of
    /// a batch waiting (round trips, the WAL flush) while the server and the daemon take
    /// turns; several loops overlap those waits and share WAL flushes. The binary chooses.
    pub commit_loops: usize,
    /// How many events may wait in the first commit loop's queue before new orders go to
    /// the others (zero: every order to the loop with the shortest queue, in turn).
    pub commit_spill: usize,
    /// How often pending transactions past their expiry are expired ([`Payments::expire_due`],
    /// run by [`crate::Gateway::run`]).
    pub expiry_sweep_interval: Duration,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            platform_fee_bps: 70,
            default_pending_ttl: Duration::from_secs(15 * 60),
            announcement_ttl: Duration::from_secs(5 * 60),
            handover_lease: Duration::from_secs(2),
            midtrans_server_key: None,
            xendit_callback_token: None,
            generic_secret: None,
            generic_tolerance: Duration::from_secs(300),
            delivery_results_gather: Duration::ZERO,
            commit_loop_thread: false,
            commit_loops: 1,
            commit_spill: MAX_BATCH / 4,
            expiry_sweep_interval: Duration::from_secs(30),
        }
    }
}

/// The state rules: only forward (pending → paid → refunded; pending → expired | failed);
/// a paid event beats an expiry or failure and is flagged; anything else is stale.
#[derive(Debug, Clone, Copy)]
pub struct StandardRules {
    pub fee_bps: u32,
    pub announcement_ttl_ms: i64,
    /// See [`PaymentSettings::handover_lease`].
    pub handover_lease_ms: i64,
}

impl PaymentRules for StandardRules {
    fn transition(&self, current: TransactionStatus, event_status: &str) -> Transition {
        use TransactionStatus::*;
        let to = |status, flag_paid_after_expiry| Transition::To {
            status,
            flag_paid_after_expiry,
        };
        match (current, event_status) {
            (Pending, "paid") => to(Paid, false),
            (Expired | Failed, "paid") => to(Paid, true),
            (Pending, "expired") => to(Expired, false),
            (Pending, "failed") => to(Failed, false),
            (Paid, "refunded") => to(Refunded, false),
            _ => Transition::Ignore,
        }
    }

    fn split_fee(&self, gross: i64) -> (i64, i64) {
        split_fee(gross, self.fee_bps)
    }

    fn announcement_ttl_ms(&self) -> i64 {
        self.announcement_ttl_ms
    }

    fn handover_lease_ms(&self) -> i64 {
        self.handover_lease_ms
    }
}

/// A provider request as it arrived.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// Header names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The headers as JSON for the inbox, without the ones that carry a shared secret.
    fn headers_for_inbox(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let value = if matches!(name.as_str(), "x-callback-token" | "authorization") {
                    "<redacted>".to_string()
                } else {
                    value.clone()
                };
                (name.clone(), serde_json::Value::String(value))
            })
            .collect();
        serde_json::Value::Object(map).to_string()
    }
}

/// A new order for a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionInput {
    pub terminal_id: String,
    pub order_ref: String,
    pub amount: i64,
    /// Seconds until the pending transaction expires; `None` for the configured default.
    pub expires_in_secs: Option<u64>,
}

/// Payments: ingest provider events, create and read transactions, expire them, re-queue
/// announcements. Cheap to clone; every clone feeds the same commit loops.
#[derive(Debug, Clone)]
pub struct Payments {
    store: Arc<dyn Store>,
    settings: Arc<PaymentSettings>,
    clock: Arc<dyn Clock>,
    rules: StandardRules,
    handover: Handover,
    commits: Arc<CommitQueues<PendingEvent>>,
    /// Told the id of every transaction paid whose order reference starts with
    /// [`INVOICE_ORDER_PREFIX`] (billing's wake-up; billing also sweeps for missed ones).
    invoice_paid: Arc<std::sync::OnceLock<mpsc::Sender<String>>>,
}

/// The order reference prefix of the dynamic QRIS issued for billing invoices, so the
/// payment path recognises their payments without a read.
pub const INVOICE_ORDER_PREFIX: &str = "IV";

/// A verified event waiting for the next group commit, and where to send its outcome.
#[derive(Debug)]
struct PendingEvent {
    entry: InboxEntry,
    event: IncomingEvent,
    reply: oneshot::Sender<GatewayResult<PaymentOutcome>>,
    /// Its order's hold on its commit loop, released once the event is committed (or
    /// failed): dropped by the loop after it answers. None with one loop: nothing to hold.
    hold: Option<OrderHold>,
}

/// The commit loops' queues, and which loop each order with an event in flight uses.
///
/// Fewer, larger batches cost less: a batch's fixed work (its statements, its commit)
/// outweighs its events' at moderate rates. So an order with nothing in flight goes to the
/// first loop, which takes whatever waits in its queue; only when `spill` events wait
/// there ([`PaymentSettings::commit_spill`]) do new orders go to the loop with the shortest
/// queue, and the loops work side by side. An order's events stay on the loop its first
/// one in flight went to (the order is held until that loop has committed them), so they
/// are applied in the order they were queued, whatever the routing did meanwhile.
#[derive(Debug)]
struct CommitQueues<T> {
    loops: Vec<mpsc::Sender<T>>,
    spill: usize,
    held: HeldOrders,
    /// Where the next search for the shortest queue starts, so that ties take turns.
    turn: std::sync::atomic::AtomicUsize,
}

/// Order reference → (its loop, its events in flight).
type HeldOrders = Arc<std::sync::Mutex<std::collections::HashMap<String, (usize, usize)>>>;

impl<T> CommitQueues<T> {
    fn new(loops: Vec<mpsc::Sender<T>>, spill: usize) -> Self {
        Self {
            loops,
            spill,
            held: HeldOrders::default(),
            turn: Default::default(),
        }
    }

    /// The queue for an event of `order_ref`, and the hold that keeps the order on it (none
    /// with one loop, the SQLite path, which then pays no lock and no map per event).
    fn route(&self, order_ref: &str) -> (&mpsc::Sender<T>, Option<OrderHold>) {
        if let [only] = self.loops.as_slice() {
            return (only, None);
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let index = match held.get_mut(order_ref) {
            Some((index, events)) => {
                *events += 1;
                *index
            }
            None => {
                let index = self.least_busy();
                held.insert(order_ref.to_owned(), (index, 1));
                index
            }
        };
        let hold = OrderHold {
            held: self.held.clone(),
            order_ref: order_ref.to_owned(),
        };
        (&self.loops[index], Some(hold))
    }

    /// The first loop while fewer than `spill` events wait in its queue; else the loop
    /// whose queue is shortest (of equals, each in turn).
    fn least_busy(&self) -> usize {
        let waiting = |queue: &mpsc::Sender<T>| queue.max_capacity() - queue.capacity();
        let loops = self.loops.len();
        match self.loops.first() {
            Some(first) if waiting(first) >= self.spill => {
                let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (0..loops)
                    .map(|offset| (turn + offset) % loops)
                    .min_by_key(|&index| waiting(&self.loops[index]))
                    .unwrap_or(0)
            }
            _ => 0,
        }
    }
}

/// One event's hold on its order's commit loop (see [`CommitQueues`]).
#[derive(Debug)]
struct OrderHold {
    held: HeldOrders,
    order_ref: String,
}

impl Drop for OrderHold {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, events)) = held.get_mut(&self.order_ref) {
            *events -= 1;
            if *events == 0 {
                held.remove(&self.order_ref);
            }
        }
    }
}

/// Most events applied in one database transaction.
const MAX_BATCH: usize = 256;

/// Most delivery results written in one database transaction.
const MAX_RESULTS: usize = 512;

/// Group commit: applies every event that arrived in its queue while its previous commit
/// was running in one transaction (one fsync), then answers each caller. (One loop per
/// queue; see [`PaymentSettings::commit_loops`].)
/// Under light load a batch is one event and nothing waits; under heavy load batches grow
/// and the fsync is shared. A provider is answered only after its event's commit.
///
/// Delivery's results are written here too, in the same transaction as the events when
/// there are any; results with no events wait up to `gather`
/// ([`PaymentSettings::delivery_results_gather`]) for some.
///
/// It is a plain task on the shared runtime; the store decides how its writes wait. It
/// runs until both sides are gone: the `Payments` handles (the event queue closes) and
/// delivery's results sender (its queue closes).
async fn commit_loop(
    store: Arc<dyn Store>,
    rules: StandardRules,
    handover: Handover,
    mut queue: mpsc::Receiver<PendingEvent>,
    mut results: ResultsQueue,
    wait: Duration,
) {
    let (mut events_open, mut results_open) = (true, true);
    while events_open || results_open {
        let mut batch = Vec::new();
        let mut records = Vec::new();
        tokio::select! {
            biased;
            event = queue.recv(), if events_open => match event {
                Some(event) => batch.push(event),
                None => events_open = false,
            },
            record = results.recv(), if results_open => match record {
                Some(record) => records.push(record),
                None => results_open = false,
            },
        }
        if batch.is_empty() && !records.is_empty() && events_open && !wait.is_zero() {
            match tokio::time::timeout(wait, queue.recv()).await {
                Ok(Some(event)) => batch.push(event),
                Ok(None) => events_open = false,
                Err(_) => {}
            }
        }
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        while records.len() < MAX_RESULTS {
            match results.try_recv() {
                Ok(next) => records.push(next),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            write_results(&*store, records).await;
            continue;
        }
        metrics::histogram!("gema_payment_commit_batch_size").record(batch.len() as f64);
        // The orders stay held on this loop until their events are answered (below).
        let mut holds = Vec::with_capacity(batch.len());
        let (items, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|p| {
                holds.push(p.hold);
                ((p.entry, p.event), p.reply)
            })
            .unzip();
        let (results_now, done): (Vec<_>, Vec<_>) = records
            .into_iter()
            .map(|r| ((r.id, r.result), r.done))
            .unzip();
        let started = std::time::Instant::now();
        let applied = store
            .apply_payment_events_and_deliveries(items, &rules, results_now)
            .await;
        metrics::histogram!("gema_payment_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let committed = match applied {
            Ok(mut outcomes) => {
                let deliveries: Vec<_> = outcomes
                    .iter_mut()
                    .filter_map(|outcome| match outcome {
                        Ok(PaymentOutcome::Applied { delivery, .. }) => delivery.take(),
                        _ => None,
                    })
                    .map(|delivery| *delivery)
                    .collect();
                if !deliveries.is_empty() {
                    handover.hand_over(deliveries);
                }
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    let _ = reply.send(outcome.map_err(GatewayError::from));
                }
                true
            }
            Err(err) => {
                // The results stay pending: the relay re-sends and the device dedupes.
                tracing::error!(error = %err, "group commit failed; the providers will retry");
                for reply in replies {
                    let _ = reply.send(Err(GatewayError::Internal(err.to_string())));
                }
                false
            }
        };
        for done in done {
            let _ = done.send(committed);
        }
        drop(holds);
    }
}

/// Writes delivery results that no payment batch carried.
async fn write_results(store: &dyn Store, records: Vec<DeliveryRecord>) {
    if records.is_empty() {
        return;
    }
    let (results, done): (Vec<_>, Vec<_>) = records
        .into_iter()
        .map(|r| ((r.id, r.result), r.done))
        .unzip();
    let committed = match store.record_deliveries(results).await {
        Ok(()) => true,
        Err(err) => {
            // The announcements stay pending; the relay re-sends and the device dedupes.
            tracing::error!(error = %err, "recording delivery results failed");
            false
        }
    };
    for done in done {
        let _ = done.send(committed);
    }
}

impl Payments {
    /// Starts the commit loop (a task: call inside a tokio runtime). Committed
    /// announcements go to `handover`; `results` is the queue of delivery's results
    /// channel, whose one writer this becomes.
    pub fn new(
        store: Arc<dyn Store>,
        settings: PaymentSettings,
        clock: Arc<dyn Clock>,
        handover: Handover,
        results: ResultsQueue,
    ) -> Self {
        let rules = StandardRules {
            fee_bps: settings.platform_fee_bps,
            announcement_ttl_ms: i64::try_from(settings.announcement_ttl.as_millis())
                .unwrap_or(i64::MAX),
            handover_lease_ms: i64::try_from(settings.handover_lease.as_millis())
                .unwrap_or(i64::MAX),
        };
        let mut commits = Vec::new();
        let mut results = Some(results);
        for _ in 0..settings.commit_loops.max(1) {
            // Deep enough for a burst; when full, callers wait (backpressure, never loss).
            let (sender, queue) = mpsc::channel(4 * MAX_BATCH);
            commits.push(sender);
            // The first loop writes delivery's results; the others get a closed queue.
            let results = results.take().unwrap_or_else(|| mpsc::channel(1).1);
            let commits_loop = commit_loop(
                store.clone(),
                rules,
                handover.clone(),
                queue,
                results,
                settings.delivery_results_gather,
            );
            if settings.commit_loop_thread {
                spawn_on_own_thread(commits_loop);
            } else {
                tokio::spawn(commits_loop);
            }
        }
        let commits = Arc::new(CommitQueues::new(commits, settings.commit_spill));
        Self {
            store,
            settings: Arc::new(settings),
            clock,
            rules,
            handover,
            commits,
            invoice_paid: Arc::default(),
        }
    }

    /// Where the ids of paid invoice transactions go (set once, by billing). A full queue
    /// drops the wake-up; billing's sweep finds the payment anyway.
    pub fn on_invoice_paid(&self, sender: mpsc::Sender<String>) {
        let _ = self.invoice_paid.set(sender);
    }

    pub fn rules(&self) -> &StandardRules {
        &self.rules
    }

    pub fn settings(&self) -> &PaymentSettings {
        &self.settings
    }

    /// Handles one provider request: keep it, verify it, apply it. Returns the outcome; a
    /// refused request is kept in the inbox and returned as an error.
    #[tracing::instrument(skip_all, fields(
        provider = provider.as_str(),
        order_ref = tracing::field::Empty,
        transaction_id = tracing::field::Empty,
    ))]
    pub async fn ingest(
        &self,
        provider: Provider,
        request: RawRequest,
    ) -> GatewayResult<PaymentOutcome> {
        let received_at = self.clock.now_utc();
        let verified = self.verify(provider, &request, received_at)?;
        let entry = InboxEntry {
            provider: provider.as_str().into(),
            received_at,
            headers: request.headers_for_inbox(),
            body: request.body,
        };
        let event = match verified {
            Ok(event) => event,
            Err(err) => {
                let (outcome, detail) = match &err {
                    IngestError::Unauthorized(m) => ("unauthorized", m.clone()),
                    IngestError::Malformed { .. } => ("malformed", err.to_string()),
                };
                self.store
                    .record_inbox(entry, outcome, Some(&detail))
                    .await?;
                metrics::counter!("gema_payment_callbacks_total",
                    "provider" => provider.as_str(), "outcome" => outcome)
                .increment(1);
                tracing::warn!(outcome, detail, "payment callback refused");
                return Err(match err {
                    IngestError::Unauthorized(m) => GatewayError::Unauthorized(m),
                    IngestError::Malformed { field, message } => {
                        GatewayError::BadRequest { field, message }
                    }
                });
            }
        };
        let order_ref = event.order_ref.clone();
        tracing::Span::current().record("order_ref", order_ref.as_str());
        let incoming = incoming(event);
        let (reply, outcome) = oneshot::channel();
        let (queue, hold) = self.commits.route(&order_ref);
        queue
            .send(PendingEvent {
                entry,
                event: incoming,
                reply,
                hold,
            })
            .await
            .map_err(|_| GatewayError::Internal("the commit loop has stopped".into()))?;
        let outcome = outcome
            .await
            .map_err(|_| GatewayError::Internal("the commit loop dropped an event".into()))??;
        metrics::counter!("gema_payment_callbacks_total",
            "provider" => provider.as_str(), "outcome" => outcome.as_str())
        .increment(1);
        match &outcome {
            PaymentOutcome::Applied {
                transaction_id,
                status,
                ..
            } => {
                tracing::Span::current().record("transaction_id", transaction_id.as_str());
                tracing::info!(%transaction_id, status = status.as_str(), "payment event applied");
                if *status == TransactionStatus::Paid
                    && order_ref.starts_with(INVOICE_ORDER_PREFIX)
                    && let Some(wake) = self.invoice_paid.get()
                {
                    let _ = wake.try_send(transaction_id.clone());
                }
            }
            PaymentOutcome::UnknownOrder => {
                tracing::warn!(order_ref, "payment event for an unknown order");
                return Err(GatewayError::NotFound {
                    entity: "order",
                    id: order_ref,
                });
            }
            PaymentOutcome::AmountMismatch { transaction_id } => {
                tracing::warn!(%transaction_id, "paid event amount differs from the transaction's");
            }
            other => tracing::info!(outcome = other.as_str(), "payment event recorded"),
        }
        Ok(outcome)
    }

    /// `Err(GatewayError)` if the provider is off; `Ok(Err(IngestError))` if the request
    /// fails verification or parsing.
    fn verify(
        &self,
        provider: Provider,
        request: &RawRequest,
        now: OffsetDateTime,
    ) -> GatewayResult<Result<PaymentEvent, IngestError>> {
        let off = || GatewayError::NotFound {
            entity: "payment provider",
            id: provider.as_str().into(),
        };
        Ok(match provider {
            Provider::Midtrans => {
                let key = self.settings.midtrans_server_key.as_ref().ok_or_else(off)?;
                providers::midtrans(&request.body, key.expose())
            }
            Provider::Xendit => {
                let token = self
                    .settings
                    .xendit_callback_token
                    .as_ref()
                    .ok_or_else(off)?;
                providers::xendit(
                    &request.body,
                    request.header("x-callback-token"),
                    token.expose(),
                )
            }
            Provider::Generic => {
                let secret = self.settings.generic_secret.as_ref().ok_or_else(off)?;
                providers::generic(
                    &request.body,
                    request.header(providers::GENERIC_TIMESTAMP_HEADER),
                    request.header(providers::GENERIC_SIGNATURE_HEADER),
                    secret.expose(),
                    i64::try_from(self.settings.generic_tolerance.as_secs()).unwrap_or(i64::MAX),
                    now,
                )
            }
        })
    }

    #[tracing::instrument(skip_all, fields(
        terminal_id = %input.terminal_id,
        transaction_id = tracing::field::Empty,
    ))]
    pub async fn create_transaction(&self, input: TransactionInput) -> GatewayResult<Transaction> {
        let new = self.new_transaction(input)?;
        let transaction = self.store.create_transaction(new).await?;
        tracing::Span::current().record("transaction_id", transaction.id.as_str());
        tracing::info!(amount = transaction.amount, "transaction created");
        Ok(transaction)
    }

    /// A checked pending transaction, not yet stored.
    fn new_transaction(&self, input: TransactionInput) -> GatewayResult<NewTransaction> {
        let order_ref = validate::code("order_ref", &input.order_ref, 64)?;
        if !(1..=MAX_AMOUNT).contains(&input.amount) {
            return Err(GatewayError::invalid(
                "amount",
                format!("must be whole rupiah between 1 and {MAX_AMOUNT}"),
            ));
        }
        let ttl = match input.expires_in_secs {
            Some(0) => return Err(GatewayError::invalid("expires_in_secs", "must be positive")),
            Some(secs) if secs > 7 * 24 * 3600 => {
                return Err(GatewayError::invalid(
                    "expires_in_secs",
                    "must be at most 7 days",
                ));
            }
            Some(secs) => Duration::from_secs(secs),
            None => self.settings.default_pending_ttl,
        };
        let expires_at_ms =
            self.clock.now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        Ok(NewTransaction {
            terminal_id: input.terminal_id,
            order_ref,
            amount: input.amount,
            expires_at_ms,
        })
    }

    /// A dynamic QR for an amount at a terminal: a pending transaction whose order
    /// reference travels in the QR (tag 62.05, with the terminal label in 62.07), so the
    /// acquirer's callback comes back to it. The payload is built and checked before the
    /// transaction is created, so a refusal leaves nothing behind.
    #[tracing::instrument(skip_all, fields(terminal_id = terminal_id))]
    pub async fn dynamic_qr(
        &self,
        terminal_id: &str,
        amount: i64,
        expires_in_secs: Option<u64>,
    ) -> GatewayResult<(Transaction, String)> {
        let (new, payload) = self
            .prepare_dynamic_qr(terminal_id, amount, expires_in_secs)
            .await?;
        let transaction = self.store.create_transaction(new).await?;
        tracing::info!(transaction_id = %transaction.id, amount, "dynamic QR transaction created");
        Ok((transaction, payload))
    }

    /// What [`Payments::dynamic_qr`] stores, checked and built but not stored: for a caller
    /// that stores it with rows of its own in one transaction (a device's QR request).
    #[tracing::instrument(skip_all, fields(terminal_id = terminal_id))]
    pub async fn prepare_dynamic_qr(
        &self,
        terminal_id: &str,
        amount: i64,
        expires_in_secs: Option<u64>,
    ) -> GatewayResult<(NewTransaction, String)> {
        self.prepare_dynamic_qr_with(terminal_id, amount, expires_in_secs, "QR")
            .await
    }

    /// [`Payments::prepare_dynamic_qr`] with the order reference's two-letter prefix
    /// (`QR`, or [`INVOICE_ORDER_PREFIX`] for an invoice's QRIS).
    pub async fn prepare_dynamic_qr_with(
        &self,
        terminal_id: &str,
        amount: i64,
        expires_in_secs: Option<u64>,
        prefix: &str,
    ) -> GatewayResult<(NewTransaction, String)> {
        if !(1..=MAX_AMOUNT).contains(&amount) {
            return Err(GatewayError::invalid(
                "amount",
                format!("must be whole rupiah between 1 and {MAX_AMOUNT}"),
            ));
        }
        let terminal = self.store.get_terminal(terminal_id).await?;
        // 22 characters: fits the 25 that acquirers accept in 62.05.
        let order_ref = format!("{prefix}{}", random_reference());
        let payload = dynamic_payload(&terminal, &order_ref, amount)?;
        let new = self.new_transaction(TransactionInput {
            terminal_id: terminal_id.to_string(),
            order_ref,
            amount,
            expires_in_secs,
        })?;
        Ok((new, payload))
    }

    /// The dynamic QRIS payload of a transaction issued by
    /// [`Payments::prepare_dynamic_qr_with`], built again from its terminal's static QRIS
    /// (the same inputs give the same payload; payloads are not stored).
    pub async fn dynamic_payload_of(&self, transaction: &Transaction) -> GatewayResult<String> {
        let terminal = self.store.get_terminal(&transaction.terminal_id).await?;
        dynamic_payload(&terminal, &transaction.order_ref, transaction.amount)
    }

    #[tracing::instrument(skip_all, fields(transaction_id = id))]
    pub async fn transaction(&self, id: &str) -> GatewayResult<Transaction> {
        Ok(self.store.get_transaction(id).await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn transactions(
        &self,
        filter: &TransactionFilter,
        page: &PageRequest,
    ) -> GatewayResult<Page<Transaction>> {
        Ok(self.store.list_transactions(filter, page).await?)
    }

    #[tracing::instrument(skip_all, fields(transaction_id = id))]
    pub async fn timeline(&self, id: &str) -> GatewayResult<Vec<TransactionEvent>> {
        Ok(self.store.transaction_events(id).await?)
    }

    #[tracing::instrument(skip_all, fields(transaction_id = id))]
    pub async fn announcements(&self, id: &str) -> GatewayResult<Vec<gema_store::Announcement>> {
        Ok(self.store.transaction_announcements(id).await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn ledger(
        &self,
        filter: &LedgerFilter,
        page: &PageRequest,
    ) -> GatewayResult<Page<LedgerEntry>> {
        Ok(self.store.list_ledger_entries(filter, page).await?)
    }

    /// Expires every pending transaction past its expiry, in batches; returns their ids.
    #[tracing::instrument(skip_all)]
    pub async fn expire_due(&self) -> GatewayResult<Vec<String>> {
        let mut expired = Vec::new();
        loop {
            let now = self.clock.now_ms();
            let batch = self.store.expire_due_transactions(now, 500).await?;
            let done = batch.len() < 500;
            expired.extend(batch);
            if done {
                break;
            }
        }
        if !expired.is_empty() {
            metrics::counter!("gema_transactions_expired_total").increment(expired.len() as u64);
            tracing::info!(count = expired.len(), "expired pending transactions");
        }
        Ok(expired)
    }

    /// Queues a new announcement for a paid transaction, on an operator's request.
    #[tracing::instrument(skip_all, fields(transaction_id = id))]
    pub async fn retry_notification(&self, id: &str) -> GatewayResult<gema_store::Announcement> {
        let announcement = self.store.queue_announcement(id, &self.rules).await?;
        self.handover.read_outbox();
        tracing::info!(announcement_id = %announcement.id, "announcement re-queued");
        Ok(announcement)
    }
}

/// 20 random upper-case base32 characters (100 bits): an order reference no one can guess
/// or collide with, short enough for QRIS tag 62.05.
fn random_reference() -> String {
    let random = credentials::generate_device_secret();
    random.expose()[..20].to_ascii_uppercase()
}

fn incoming(event: PaymentEvent) -> IncomingEvent {
    IncomingEvent {
        provider: event.provider.as_str().into(),
        provider_transaction_id: event.provider_transaction_id,
        order_ref: event.order_ref,
        amount: event.amount,
        status: event.status.as_str().into(),
        raw_status: event.raw_status,
        issuer: event.issuer,
        paid_at: event.paid_at,
        is_test: event.is_test,
    }
}

/// Runs the commit loop on a thread of its own with a single-threaded runtime (see
/// [`PaymentSettings::commit_loop_thread`]). If no runtime can be built the loop runs on
/// the shared one; if no thread can be started the error is logged and ingest answers
/// every event with "the commit loop has stopped" (providers retry).
fn spawn_on_own_thread(commit_loop: impl std::future::Future<Output = ()> + Send + 'static) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::warn!(error = %err, "no runtime for the commit loop; it shares the main one");
            tokio::spawn(commit_loop);
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("gema-commit".into())
        .spawn(move || runtime.block_on(commit_loop));
    if let Err(err) = spawned {
        tracing::error!(error = %err, "could not start the payment commit loop's thread");
    }
}

/// A terminal's static QRIS made dynamic for `amount`, carrying `order_ref` and its label.
fn dynamic_payload(terminal: &Terminal, order_ref: &str, amount: i64) -> GatewayResult<String> {
    let Some(static_qris) = terminal.static_qris.as_deref() else {
        return Err(GatewayError::Conflict {
            code: "no_static_qris",
            message: format!(
                "terminal {} has no static QRIS; set static_qris on it first",
                terminal.id
            ),
            field: None,
        });
    };
    gema_qris::to_dynamic(
        static_qris,
        gema_qris::DynamicOptions {
            amount,
            fee: None,
            reference: Some(gema_qris::Reference::Label(order_ref.to_owned())),
            terminal_label: Some(terminal.label.clone()),
        },
    )
    .map_err(|e| GatewayError::Internal(format!("building the dynamic QRIS: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPILL: usize = 8;

    /// Three loops' queues, deep enough to fill the first past [`SPILL`].
    fn queues() -> (CommitQueues<u32>, Vec<mpsc::Receiver<u32>>) {
        let (senders, receivers) = (0..3).map(|_| mpsc::channel(4 * SPILL)).unzip();
        (CommitQueues::new(senders, SPILL), receivers)
    }

    fn index_of(queues: &CommitQueues<u32>, queue: &mpsc::Sender<u32>) -> usize {
        queues
            .loops
            .iter()
            .position(|q| q.same_channel(queue))
            .expect("a queue of these loops")
    }

    #[test]
    fn orders_go_to_the_first_loop_until_its_queue_backs_up_then_to_the_shortest() {
        let (queues, _receivers) = queues();
        let (queue, _a) = queues.route("order-a");
        assert_eq!(index_of(&queues, queue), 0);
        for n in 0..SPILL {
            queues.loops[0].try_send(n as u32).unwrap();
        }
        queues.loops[1].try_send(0).unwrap();
        let (queue, _b) = queues.route("order-b");
        assert_eq!(
            index_of(&queues, queue),
            2,
            "the shortest queue once the first backs up"
        );
    }

    #[test]
    fn with_no_spill_new_orders_take_turns_over_empty_queues() {
        let (senders, _receivers): (Vec<_>, Vec<_>) =
            (0..3).map(|_| mpsc::channel::<u32>(4)).unzip();
        let queues = CommitQueues::new(senders, 0);
        let mut loops: Vec<usize> = ["order-a", "order-b", "order-c"]
            .into_iter()
            .map(|order| index_of(&queues, queues.route(order).0))
            .collect();
        loops.sort_unstable();
        assert_eq!(loops, [0, 1, 2]);
    }

    #[test]
    fn an_orders_events_stay_on_its_loop_until_the_last_in_flight_is_released() {
        let (queues, _receivers) = queues();
        let (_, first) = queues.route("order-a");
        for n in 0..SPILL {
            queues.loops[0].try_send(n as u32).unwrap();
        }
        let (queue, second) = queues.route("order-a");
        assert_eq!(
            index_of(&queues, queue),
            0,
            "held on the first loop though it backed up"
        );
        drop(first);
        let (queue, third) = queues.route("order-a");
        assert_eq!(
            index_of(&queues, queue),
            0,
            "one event still in flight holds it"
        );
        drop((second, third));
        assert!(
            queues.held.lock().unwrap().is_empty(),
            "released with its last event"
        );
        let (queue, _) = queues.route("order-a");
        assert_ne!(
            index_of(&queues, queue),
            0,
            "free to go where the work is short"
        );
    }
}
