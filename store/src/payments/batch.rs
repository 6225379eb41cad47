//! Applying payment events in batches: the group commit behind high callback rates.
//!
//! One batch is one database transaction (one commit, one fsync). It reads its
//! transactions (locked on PostgreSQL), the dedupe keys and the bound devices up front,
//! applies the events in memory ([`stage_events`], shared by both backends over
//! [`BatchIo`] for its few rare-path statements: a static QR payment, a refund's originals,
//! a non-delivery result), then writes each changed transaction with one
//! `UPDATE … FROM (VALUES …)` and its inbox, event, ledger and announcement rows with one
//! multi-row INSERT per table. The I/O around it is each backend's:
//! `crate::sqlite_payments` (rusqlite, on the store's payment thread; multi-row statements
//! in chunks of 64/16/4/1 rows, [`insert_chunks`], so the statement cache keeps few
//! shapes) and `crate::postgres_payments` (tokio-postgres: three reads and one write of
//! data-modifying `WITH` clauses, every one of them taking its rows as arrays, so one text
//! for any batch, sent in two pipelined round trips with `BEGIN` and `COMMIT`).
//!
//! A batch that fails is rolled back, and retried one event per transaction, so the event
//! that fails fails alone (its raw request kept in the inbox as `failed`). There is no
//! savepoint per event.

use super::inbox::insert_inbox;
use crate::Db;
use crate::PaymentStore;
use crate::db::Param;
use crate::{
    AnnouncementDelivery, AnnouncementStatus, DeliveryResult, InboxEntry, IncomingEvent,
    LedgerEntryType, PaymentOutcome, PaymentRules, StoreError, StoreResult, Transaction,
};

impl Db {
    /// Applies events, and records delivery results, in one database transaction (each
    /// backend's batch I/O: `sqlite_payments` on the SQLite writer's thread, `postgres_payments`).
    /// Any failing statement fails the whole batch, which is rolled back. The batch comes
    /// back with the result, for the caller's retries.
    async fn apply_in_one_transaction(
        &self,
        batch: Batch,
        rules: &dyn PaymentRules,
    ) -> (Batch, StoreResult<Vec<PaymentOutcome>>) {
        match self {
            Db::Sqlite(s) => s.payments.apply(batch, rules).await,
            Db::Postgres(p) => {
                let result = p
                    .apply_in_one_transaction(&batch.items, rules, &batch.deliveries)
                    .await;
                (batch, result)
            }
        }
    }

    /// One event in a transaction of its own; if it fails, its raw request is kept.
    async fn apply_alone(
        &self,
        item: (InboxEntry, IncomingEvent),
        rules: &dyn PaymentRules,
    ) -> StoreResult<PaymentOutcome> {
        let (batch, result) = self
            .apply_in_one_transaction(Batch::of(vec![item]), rules)
            .await;
        match result {
            Ok(mut outcome) => outcome
                .pop()
                .ok_or_else(|| StoreError::Corrupt("no outcome for an event".into())),
            Err(err) => match batch.items.first() {
                Some((entry, _)) => Err(self.record_failed(entry, err).await),
                None => Err(err),
            },
        }
    }

    /// Keeps the raw request of an event whose application failed, and returns the
    /// failure (or, if even that cannot be written, the original failure).
    async fn record_failed(&self, entry: &InboxEntry, err: StoreError) -> StoreError {
        let detail = err.to_string();
        if let Ok(mut conn) = self.write_conn().await
            && let Err(inbox_err) =
                insert_inbox(&mut conn.exec(), entry, "failed", Some(&detail)).await
        {
            tracing::error!(error = %inbox_err, "could not record a failed payment event");
        }
        err
    }
}

// ---- staging for the batch apply (plain Rust, shared by both backends) ----

/// A batch of payment events and delivery results, on its way to a backend's writer and
/// back (SQLite's runs on a thread of its own; the batch moves there and returns with the
/// result, so a failed batch is retried without a copy).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub items: Vec<(InboxEntry, IncomingEvent)>,
    pub deliveries: Vec<(String, DeliveryResult)>,
}

impl Batch {
    /// Events without delivery results.
    pub fn of(items: Vec<(InboxEntry, IncomingEvent)>) -> Self {
        Self {
            items,
            deliveries: Vec::new(),
        }
    }
}

/// Splits rows into multi-row INSERTs of 64, 16, 4 or 1 rows. A batch of any size then uses
/// at most four statement shapes per table, so the prepared-statement cache keeps them
/// instead of parsing a new statement for every batch size. (The widest: 64 rows × 10
/// columns, far below SQLite's 32,766 parameters.)
pub(crate) fn insert_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let size = [64, 16, 4, 1]
            .into_iter()
            .find(|size| *size <= rest.len())?;
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// The events of a batch that touch the database (not test notifications), and their order
/// references, sorted and without repeats.
pub(crate) fn batch_keys(
    items: &[(InboxEntry, IncomingEvent)],
) -> (Vec<&IncomingEvent>, Vec<&str>) {
    let events: Vec<&IncomingEvent> = items
        .iter()
        .map(|(_, e)| e)
        .filter(|e| !e.is_test)
        .collect();
    let orders: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.order_ref.as_str()).collect();
    (events, orders.into_iter().collect())
}

/// Which of the keys `(provider, provider id, status)` in a VALUES list were recorded before:
/// the SQL before and after the list. A join with the keys, not a row-value IN, which SQLite
/// answers by a scan.
pub(crate) const RECORDED_KEYS: (&str, &str) = (
    "SELECT e.provider, e.provider_transaction_id, e.status, \
     COALESCE(e.transaction_id, '') FROM (VALUES ",
    ") v JOIN transaction_events e ON e.provider = v.column1 \
     AND e.provider_transaction_id = v.column2 AND e.status = v.column3",
);

/// The active devices bound to terminals, with each one's next announcement sequence and
/// desired config; followed by a test of the terminal id (`IN (…)`, `= ANY(…)`).
pub(crate) const BOUND_DEVICES: &str = "SELECT d.terminal_id, d.id, \
     COALESCE((SELECT MAX(a.sequence) FROM announcements a WHERE a.device_id = d.id), 0) + 1, \
     c.desired FROM devices d LEFT JOIN device_configs c ON c.device_id = d.id \
     WHERE d.status = 'active' AND d.terminal_id";

/// A part of a batch's write: one multi-row statement over some of the staged rows.
pub(crate) enum Piece<'a> {
    /// Transactions the batch changed, set to their final state.
    Transactions(&'a [&'a Transaction]),
    Inbox(&'a [InboxRow]),
    Events(&'a [EventRow]),
    Ledger(&'a [LedgerRow]),
    Announcements(&'a [AnnouncementRow]),
    /// Pending announcements the device acknowledged: marked delivered.
    Delivered(&'a [String]),
}

impl Piece<'_> {
    /// How many parameters [`Self::sql`] has.
    pub fn params(&self) -> usize {
        match self {
            Piece::Transactions(rows) => rows.len() * 8,
            Piece::Inbox(rows) => rows.len() * 8,
            Piece::Events(rows) => rows.len() * 10,
            Piece::Ledger(rows) => rows.len() * 8,
            Piece::Announcements(rows) => rows.len() * 10,
            Piece::Delivered(ids) => 3 + ids.len(),
        }
    }

    /// The statement, its parameters numbered from `first`; they are bound row by row,
    /// column by column.
    pub fn sql(&self, placeholders: Placeholders, first: usize) -> String {
        match self {
            Piece::Transactions(rows) => {
                // One UPDATE for all of them, joined with their new values. PostgreSQL
                // types a VALUES list from its parameters, so they carry casts.
                let mut sql = String::from(
                    "UPDATE transactions SET status = v.column2, provider = v.column3, \
                     provider_transaction_id = v.column4, issuer = v.column5, \
                     paid_at = v.column6, paid_after_expiry = v.column7, \
                     updated_at = v.column8 FROM (VALUES ",
                );
                const TYPES: [&str; 8] = [
                    "text",
                    "text",
                    "text",
                    "text",
                    "text",
                    "timestamptz",
                    "boolean",
                    "timestamptz",
                ];
                for row in 0..rows.len() {
                    sql.push_str(if row == 0 { "(" } else { ", (" });
                    for (column, ty) in TYPES.iter().enumerate() {
                        if column > 0 {
                            sql.push_str(", ");
                        }
                        let n = first + row * TYPES.len() + column;
                        push_param(&mut sql, placeholders, n, ty);
                    }
                    sql.push(')');
                }
                sql.push_str(") AS v WHERE transactions.id = v.column1");
                sql
            }
            Piece::Inbox(rows) => insert_sql_from(
                first,
                "INSERT INTO payment_inbox (id, provider, received_at, headers, body, \
                 outcome, detail, transaction_id) VALUES ",
                placeholders,
                rows.len(),
                8,
                "",
            ),
            Piece::Events(rows) => insert_sql_from(
                first,
                "INSERT INTO transaction_events (id, transaction_id, provider, \
                 provider_transaction_id, status, raw_status, amount, effect, inbox_id, \
                 created_at) VALUES ",
                placeholders,
                rows.len(),
                10,
                "",
            ),
            Piece::Ledger(rows) => insert_sql_from(
                first,
                "INSERT INTO ledger_entries (id, transaction_id, merchant_id, entry_type, \
                 amount, external_id, reverses_id, created_at) VALUES ",
                placeholders,
                rows.len(),
                8,
                " ON CONFLICT (external_id) DO NOTHING",
            ),
            Piece::Announcements(rows) => insert_sql_from(
                first,
                "INSERT INTO announcements (id, transaction_id, terminal_id, device_id, \
                 status, sequence, next_attempt_at_ms, expires_at_ms, created_at, \
                 updated_at) VALUES ",
                placeholders,
                rows.len(),
                10,
                "",
            ),
            Piece::Delivered(ids) => {
                let mut sql = String::from(
                    "UPDATE announcements SET status = 'delivered', attempts = attempts + 1, \
                     (delivered_at, last_attempt_at, updated_at) = (",
                );
                push_params(&mut sql, placeholders, first, 3);
                sql.push_str(") WHERE status = 'pending' AND id IN (");
                push_params(&mut sql, placeholders, first + 3, ids.len());
                sql.push(')');
                sql
            }
        }
    }
}

/// How a backend's multi-row INSERTs name their parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Placeholders {
    /// `$1, $2, …` (PostgreSQL).
    Numbered,
    /// `?, ?, …` (SQLite). Binding `$N` parameters in SQLite looks each name up in a list
    /// (`sqlite3_bind_parameter_name`), quadratic in the parameter count: a 256-row insert
    /// spent most of the commit there. Anonymous parameters bind by position.
    Anonymous,
}

/// `head` + `(…), (…)` with one parameter per column of each row + `tail`.
pub(crate) fn insert_sql(
    head: &str,
    placeholders: Placeholders,
    rows: usize,
    columns: usize,
    tail: &str,
) -> String {
    insert_sql_from(1, head, placeholders, rows, columns, tail)
}

/// [`insert_sql`] with its parameters numbered from `first`.
pub(crate) fn insert_sql_from(
    first: usize,
    head: &str,
    placeholders: Placeholders,
    rows: usize,
    columns: usize,
    tail: &str,
) -> String {
    let mut sql = String::with_capacity(head.len() + rows * columns * 5 + tail.len());
    sql.push_str(head);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        push_params(&mut sql, placeholders, first + row * columns, columns);
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// Appends `count` comma-separated parameters, numbered from `first` where numbered.
pub(crate) fn push_params(
    sql: &mut String,
    placeholders: Placeholders,
    first: usize,
    count: usize,
) {
    for i in 0..count {
        if i > 0 {
            sql.push_str(", ");
        }
        push_param(sql, placeholders, first + i, "");
    }
}

/// Appends parameter `n`, with a cast to `ty` where the parameters are numbered (PostgreSQL)
/// and `ty` is not empty.
fn push_param(sql: &mut String, placeholders: Placeholders, n: usize, ty: &str) {
    use std::fmt::Write;
    match placeholders {
        Placeholders::Numbered if ty.is_empty() => {
            let _ = write!(sql, "${n}");
        }
        Placeholders::Numbered => {
            let _ = write!(sql, "${n}::{ty}");
        }
        Placeholders::Anonymous => sql.push('?'),
    }
}

pub(crate) fn transaction_of(outcome: &PaymentOutcome) -> Option<String> {
    use PaymentOutcome::*;
    match outcome {
        Applied { transaction_id, .. }
        | Stale { transaction_id }
        | AmountMismatch { transaction_id } => Some(transaction_id.clone()),
        Duplicate { transaction_id } => transaction_id.clone(),
        Test | UnknownOrder => None,
    }
}

pub(crate) struct InboxRow {
    pub id: String,
    /// Index of the request in the batch.
    pub item: usize,
    pub outcome: &'static str,
    pub detail: Option<String>,
    pub transaction_id: Option<String>,
}

pub(crate) struct EventRow {
    pub id: String,
    pub transaction_id: String,
    pub event: IncomingEvent,
    pub effect: &'static str,
    pub inbox_id: String,
}

pub(crate) struct LedgerRow {
    pub id: String,
    pub transaction_id: String,
    pub merchant_id: String,
    pub entry_type: &'static str,
    pub amount: i64,
    pub external_id: String,
    pub reverses_id: Option<String>,
}

pub(crate) struct AnnouncementRow {
    pub id: String,
    pub transaction_id: String,
    pub terminal_id: String,
    pub device_id: Option<String>,
    pub sequence: i64,
    pub next_attempt_at_ms: i64,
    pub expires_at_ms: i64,
}

impl AnnouncementRow {
    /// Pending for a bound device; with none, recorded as such.
    pub fn status(&self) -> AnnouncementStatus {
        if self.device_id.is_some() {
            AnnouncementStatus::Pending
        } else {
            AnnouncementStatus::NoDevice
        }
    }
}

pub(crate) fn unix_ms(t: time::OffsetDateTime) -> i64 {
    t.unix_timestamp() * 1000 + i64::from(t.millisecond())
}

/// The active device bound to a terminal, as a batch sees it.
pub(crate) struct BoundDevice {
    pub id: String,
    /// The sequence number its next announcement gets.
    pub next_sequence: i64,
    /// Its desired config (JSON), for the announcement's language.
    pub desired_config: Option<String>,
}

/// What a batch read before its events, what it will insert, and what it must remember
/// between its events: the transactions by order reference (as the batch left them), the
/// dedupe keys recorded before or applied in the batch (→ their transaction id, `""` if none),
/// and per terminal its bound device and that device's next announcement sequence.
#[derive(Default)]
pub(crate) struct Staged {
    pub inbox: Vec<InboxRow>,
    pub events: Vec<EventRow>,
    pub ledger: Vec<LedgerRow>,
    pub announcements: Vec<AnnouncementRow>,
    /// Announcements to mark delivered with the batch (results the relay handed in).
    pub delivered: Vec<String>,
    /// Each transaction the batch changed, as the batch left it (by id).
    pub updates: std::collections::BTreeMap<String, Transaction>,
    pub transactions: std::collections::HashMap<String, Transaction>,
    pub known: std::collections::HashMap<(String, String, String), String>,
    pub devices: std::collections::HashMap<String, Option<BoundDevice>>,
}

impl Staged {
    /// Gross income, platform fee and merchant payable for a paid transaction, or, for a
    /// refund, the reversal of each of those that was posted (`originals`: external id → id).
    /// Each posting's external id makes it idempotent.
    pub fn stage_ledger(
        &mut self,
        transaction: &Transaction,
        rules: &dyn PaymentRules,
        reversal: bool,
        originals: Vec<(String, String)>,
    ) {
        use LedgerEntryType::*;
        let (fee, payable) = rules.split_fee(transaction.amount);
        for (entry_type, amount) in [
            (GrossIncome, transaction.amount),
            (PlatformFee, fee),
            (MerchantPayable, payable),
        ] {
            let original_external = format!("{}:{}", transaction.id, entry_type.as_str());
            let (external_id, amount, reverses_id) = if reversal {
                let Some((_, original)) = originals.iter().find(|(e, _)| *e == original_external)
                else {
                    continue; // nothing was posted, nothing to reverse
                };
                (
                    format!("{}:refund:{}", transaction.id, entry_type.as_str()),
                    -amount,
                    Some(original.clone()),
                )
            } else {
                (original_external, amount, None)
            };
            self.ledger.push(LedgerRow {
                id: crate::sql::new_id("led"),
                transaction_id: transaction.id.clone(),
                merchant_id: transaction.merchant_id.clone(),
                entry_type: entry_type.as_str(),
                amount,
                external_id,
                reverses_id,
            });
        }
    }
}

// ---- a batch's staging: plain Rust over a few backend statements ----

/// The statements a batch's staging needs beyond what it prefetched, run on the batch's
/// transaction: the rare paths (a payment to a static QR, a refund, a delivery result other
/// than "delivered"). Each backend implements it on its connection; SQLite's futures are
/// ready at once (`sqlite_payments` drives the staging synchronously).
pub(crate) trait BatchIo {
    /// The terminal with this static QR reference, and its merchant.
    async fn static_qr_terminal(
        &mut self,
        payment_ref: &str,
    ) -> StoreResult<Option<(String, String)>>;

    /// Inserts a transaction as given (a payment to a static QR creates one).
    async fn insert_transaction(&mut self, transaction: &Transaction) -> StoreResult<()>;

    /// A timeline entry of Gema's own ([`INTERNAL_EVENT`]).
    async fn insert_internal_event(
        &mut self,
        transaction_id: &str,
        status: &str,
        amount: i64,
        now: time::OffsetDateTime,
    ) -> StoreResult<()>;

    /// Writes the ledger postings staged so far, then reads the transaction's original
    /// postings (external id → id): a refund reverses them, and they may be this batch's.
    async fn ledger_originals(
        &mut self,
        staged: &mut Staged,
        transaction_id: &str,
        now: time::OffsetDateTime,
    ) -> StoreResult<Vec<(String, String)>>;

    /// The active device bound to each terminal and its next announcement sequence, into
    /// `staged.devices` (`None` for a terminal without one).
    async fn prefetch_devices(
        &mut self,
        staged: &mut Staged,
        terminals: &[&str],
    ) -> StoreResult<()>;

    /// Records an attempt's result on a pending announcement ([`RECORD_DELIVERY`]); `false`
    /// if there is no such announcement.
    async fn record_one_delivery(
        &mut self,
        announcement_id: &str,
        update: &DeliveryUpdate,
    ) -> StoreResult<bool>;
}

/// Stages a batch of events, after its prefetch: what each does (the outcomes, in order)
/// and the rows to write, which `staged` collects for the backend's flush.
pub(crate) async fn stage_events(
    io: &mut impl BatchIo,
    staged: &mut Staged,
    items: &[(InboxEntry, IncomingEvent)],
    rules: &dyn PaymentRules,
    now: time::OffsetDateTime,
) -> StoreResult<Vec<PaymentOutcome>> {
    let mut outcomes = Vec::with_capacity(items.len());
    for (item, (_, event)) in items.iter().enumerate() {
        let inbox_id = crate::sql::new_id("inb");
        let outcome = stage_event(io, staged, &inbox_id, event, rules, now).await?;
        let detail = (outcome == PaymentOutcome::UnknownOrder).then(|| event.order_ref.clone());
        staged.inbox.push(InboxRow {
            transaction_id: transaction_of(&outcome),
            id: inbox_id,
            item,
            outcome: outcome.as_str(),
            detail,
        });
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Stages delivery results: plain deliveries join `staged.delivered` (one statement for all,
/// [`Piece::Delivered`]); the others are recorded one by one now.
pub(crate) async fn stage_deliveries(
    io: &mut impl BatchIo,
    staged: &mut Staged,
    results: &[(String, DeliveryResult)],
    now: time::OffsetDateTime,
) -> StoreResult<()> {
    for (id, result) in results {
        match result {
            DeliveryResult::Delivered => staged.delivered.push(id.clone()),
            other => {
                io.record_one_delivery(id, &DeliveryUpdate::of(other, now))
                    .await?;
            }
        }
    }
    Ok(())
}

/// Works out what one event does: finds its transaction (prefetched, or created for a
/// static QR), moves it, and stages the event, ledger and announcement rows. An unknown
/// order writes nothing, so the provider's retry applies once it exists.
async fn stage_event(
    io: &mut impl BatchIo,
    staged: &mut Staged,
    inbox_id: &str,
    event: &IncomingEvent,
    rules: &dyn PaymentRules,
    now: time::OffsetDateTime,
) -> StoreResult<PaymentOutcome> {
    use crate::{PaymentOutcome, TransactionSource, TransactionStatus, Transition};
    if event.is_test {
        return Ok(PaymentOutcome::Test);
    }
    let key = (
        event.provider.clone(),
        event.provider_transaction_id.clone(),
        event.status.clone(),
    );
    // Recorded before (read after the batch's row locks), or earlier in this batch. The
    // unique key on transaction_events stays the last word: should anything slip past this
    // check, the insert fails rather than apply twice.
    if let Some(earlier) = staged.known.get(&key) {
        return Ok(PaymentOutcome::Duplicate {
            transaction_id: (!earlier.is_empty()).then(|| earlier.clone()),
        });
    }
    let event_id = crate::sql::new_id("evt");
    let found = staged.transactions.get(&event.order_ref).cloned();

    let (transaction, created) = match found {
        Some(t) => (t, false),
        None => {
            // A paid event for a terminal's static QR reference creates the transaction;
            // anything else for an unknown order is left for the provider to retry.
            let terminal = if event.status == "paid" {
                io.static_qr_terminal(&event.order_ref).await?
            } else {
                None
            };
            let Some((terminal_id, merchant_id)) = terminal else {
                return Ok(PaymentOutcome::UnknownOrder);
            };
            let t = Transaction {
                id: crate::sql::new_id("trx"),
                order_ref: format!("{}:{}", event.provider, event.provider_transaction_id),
                terminal_id,
                merchant_id,
                amount: event.amount,
                status: TransactionStatus::Pending,
                source: TransactionSource::StaticQr,
                provider: None,
                provider_transaction_id: None,
                issuer: None,
                paid_at: None,
                expires_at_ms: now.unix_timestamp() * 1000,
                paid_after_expiry: false,
                created_at: now,
                updated_at: now,
            };
            io.insert_transaction(&t).await?;
            (t, true)
        }
    };

    let transition = if event.status == "paid" && event.amount != transaction.amount {
        None
    } else {
        Some(rules.transition(transaction.status, &event.status))
    };
    let (effect, outcome) = match transition {
        None => (
            "amount_mismatch",
            PaymentOutcome::AmountMismatch {
                transaction_id: transaction.id.clone(),
            },
        ),
        Some(Transition::Ignore) => (
            "stale",
            PaymentOutcome::Stale {
                transaction_id: transaction.id.clone(),
            },
        ),
        Some(Transition::To {
            status,
            flag_paid_after_expiry,
        }) => {
            let paid_at = (status == TransactionStatus::Paid).then(|| event.paid_at.unwrap_or(now));
            // Written with the batch's other rows (the last state of each transaction); a
            // later event of this batch for the same order sees it.
            let updated = Transaction {
                status,
                provider: Some(event.provider.clone()),
                provider_transaction_id: Some(event.provider_transaction_id.clone()),
                issuer: event.issuer.clone().or(transaction.issuer.clone()),
                paid_at: paid_at.or(transaction.paid_at),
                paid_after_expiry: transaction.paid_after_expiry || flag_paid_after_expiry,
                updated_at: now,
                ..transaction.clone()
            };
            staged
                .updates
                .insert(transaction.id.clone(), updated.clone());
            if !created {
                staged
                    .transactions
                    .insert(event.order_ref.clone(), updated.clone());
            }
            let mut announcement_id = None;
            let mut delivery = None;
            match status {
                TransactionStatus::Paid => {
                    staged.stage_ledger(&transaction, rules, false, Vec::new());
                    let (id, to_device) =
                        stage_announcement(io, staged, &updated, rules, now).await?;
                    announcement_id = Some(id);
                    delivery = to_device.map(Box::new);
                }
                TransactionStatus::Refunded => {
                    let originals = io.ledger_originals(staged, &transaction.id, now).await?;
                    staged.stage_ledger(&transaction, rules, true, originals);
                }
                _ => {}
            }
            let effect = if flag_paid_after_expiry {
                "paid_after_expiry"
            } else {
                "applied"
            };
            (
                effect,
                PaymentOutcome::Applied {
                    transaction_id: transaction.id.clone(),
                    status,
                    announcement_id,
                    delivery,
                },
            )
        }
    };
    staged.events.push(EventRow {
        id: event_id,
        transaction_id: transaction.id.clone(),
        event: event.clone(),
        effect,
        inbox_id: inbox_id.to_owned(),
    });
    if created {
        io.insert_internal_event(&transaction.id, "created", event.amount, now)
            .await?;
    }
    staged.known.insert(key, transaction.id);
    Ok(outcome)
}

/// An announcement for a paid transaction, staged; the device is the one bound to its
/// terminal now, the sequence one past the device's last (counting this batch's). Returns
/// its id and, when a device is bound, what to deliver.
async fn stage_announcement(
    io: &mut impl BatchIo,
    staged: &mut Staged,
    transaction: &Transaction,
    rules: &dyn PaymentRules,
    now: time::OffsetDateTime,
) -> StoreResult<(String, Option<AnnouncementDelivery>)> {
    if !staged.devices.contains_key(&transaction.terminal_id) {
        io.prefetch_devices(staged, &[transaction.terminal_id.as_str()])
            .await?;
    }
    let device = staged
        .devices
        .get_mut(&transaction.terminal_id)
        .and_then(Option::as_mut)
        .map(|device| {
            let sequence = device.next_sequence;
            device.next_sequence += 1;
            (device.id.clone(), sequence, device.desired_config.clone())
        });
    let id = crate::sql::new_id("ann");
    let expires_at_ms = unix_ms(now) + rules.announcement_ttl_ms();
    // Handed over with the outcome when a device is bound (see
    // `PaymentRules::handover_lease_ms`).
    let next_attempt_at_ms = unix_ms(now)
        + if device.is_some() {
            rules.handover_lease_ms().max(0)
        } else {
            0
        };
    let delivery = device.map(
        |(device_id, sequence, desired_config)| AnnouncementDelivery {
            id: id.clone(),
            transaction_id: transaction.id.clone(),
            device_id,
            sequence,
            attempts: 0,
            expires_at_ms,
            amount: transaction.amount,
            issuer: transaction.issuer.clone(),
            provider: transaction.provider.clone(),
            paid_at: transaction.paid_at,
            created_at: now,
            desired_config,
        },
    );
    staged.announcements.push(AnnouncementRow {
        id: id.clone(),
        transaction_id: transaction.id.clone(),
        terminal_id: transaction.terminal_id.clone(),
        device_id: delivery.as_ref().map(|d| d.device_id.clone()),
        sequence: delivery.as_ref().map_or(0, |d| d.sequence),
        next_attempt_at_ms,
        expires_at_ms,
    });
    Ok((id, delivery))
}

/// The terminals of the batch's transactions, sorted, without repeats.
pub(crate) fn staged_terminals(staged: &Staged) -> Vec<String> {
    let terminals: std::collections::BTreeSet<&str> = staged
        .transactions
        .values()
        .map(|t| t.terminal_id.as_str())
        .collect();
    terminals.into_iter().map(str::to_owned).collect()
}

/// Everything a batch staged, as statements: each transaction's new state, then the inbox
/// rows (events name them), the events, the ledger postings, the announcements and the
/// deliveries, each table in multi-row pieces ([`insert_chunks`]).
pub(crate) fn batch_pieces<'a>(
    staged: &'a Staged,
    updates: &'a [&'a Transaction],
) -> Vec<Piece<'a>> {
    let mut pieces = Vec::new();
    pieces.extend(insert_chunks(updates).map(Piece::Transactions));
    pieces.extend(insert_chunks(&staged.inbox).map(Piece::Inbox));
    pieces.extend(insert_chunks(&staged.events).map(Piece::Events));
    pieces.extend(insert_chunks(&staged.ledger).map(Piece::Ledger));
    pieces.extend(insert_chunks(&staged.announcements).map(Piece::Announcements));
    pieces.extend(insert_chunks(&staged.delivered).map(Piece::Delivered));
    pieces
}

/// A piece's parameters in the order of [`Piece::sql`]: row by row, column by column.
pub(crate) fn piece_params<'a>(
    piece: &Piece<'a>,
    items: &'a [(InboxEntry, IncomingEvent)],
    now: time::OffsetDateTime,
) -> Vec<Param<'a>> {
    use Param::{Blob, Bool, Int, Text, Time};
    let text = |s: &'a String| Text(Some(s.as_str()));
    let opt = |s: &'a Option<String>| Text(s.as_deref());
    let mut params = Vec::with_capacity(piece.params());
    match piece {
        Piece::Transactions(rows) => {
            for t in *rows {
                params.extend([
                    text(&t.id),
                    Text(Some(t.status.as_str())),
                    opt(&t.provider),
                    opt(&t.provider_transaction_id),
                    opt(&t.issuer),
                    Time(t.paid_at),
                    Bool(t.paid_after_expiry),
                    Time(Some(t.updated_at)),
                ]);
            }
        }
        Piece::Inbox(rows) => {
            for row in *rows {
                let entry = &items[row.item].0;
                params.extend([
                    text(&row.id),
                    text(&entry.provider),
                    Time(Some(entry.received_at)),
                    text(&entry.headers),
                    Blob(&entry.body),
                    Text(Some(row.outcome)),
                    opt(&row.detail),
                    opt(&row.transaction_id),
                ]);
            }
        }
        Piece::Events(rows) => {
            for row in *rows {
                params.extend([
                    text(&row.id),
                    text(&row.transaction_id),
                    text(&row.event.provider),
                    text(&row.event.provider_transaction_id),
                    text(&row.event.status),
                    text(&row.event.raw_status),
                    Int(Some(row.event.amount)),
                    Text(Some(row.effect)),
                    text(&row.inbox_id),
                    Time(Some(now)),
                ]);
            }
        }
        Piece::Ledger(rows) => {
            for row in *rows {
                params.extend([
                    text(&row.id),
                    text(&row.transaction_id),
                    text(&row.merchant_id),
                    Text(Some(row.entry_type)),
                    Int(Some(row.amount)),
                    text(&row.external_id),
                    opt(&row.reverses_id),
                    Time(Some(now)),
                ]);
            }
        }
        Piece::Announcements(rows) => {
            for row in *rows {
                params.extend([
                    text(&row.id),
                    text(&row.transaction_id),
                    text(&row.terminal_id),
                    opt(&row.device_id),
                    Text(Some(row.status().as_str())),
                    Int(Some(row.sequence)),
                    Int(Some(row.next_attempt_at_ms)),
                    Int(Some(row.expires_at_ms)),
                    Time(Some(now)),
                    Time(Some(now)),
                ]);
            }
        }
        Piece::Delivered(ids) => {
            params.extend([Time(Some(now)), Time(Some(now)), Time(Some(now))]);
            params.extend(ids.iter().map(text));
        }
    }
    params
}

/// What recording a delivery result sets on its announcement ([`RECORD_DELIVERY`]).
pub(crate) struct DeliveryUpdate {
    pub status: &'static str,
    /// Added to the attempts: 0 for a result that was not an attempt.
    pub attempted: i64,
    pub error: Option<String>,
    pub next_attempt_at_ms: Option<i64>,
    pub delivered_at: Option<time::OffsetDateTime>,
    pub now: time::OffsetDateTime,
}

impl DeliveryUpdate {
    pub fn of(result: &DeliveryResult, now: time::OffsetDateTime) -> Self {
        use DeliveryResult::*;
        let (status, attempted, error, next_attempt_at_ms, delivered_at) = match result {
            Delivered => ("delivered", 1, None, None, Some(now)),
            Retry {
                error,
                next_attempt_at_ms,
            } => (
                "pending",
                1,
                Some(error.clone()),
                Some(*next_attempt_at_ms),
                None,
            ),
            Failed { error } => ("failed", 1, Some(error.clone()), None, None),
            Expired => ("expired", 0, None, None, None),
            Deferred { next_attempt_at_ms } => {
                ("pending", 0, None, Some(*next_attempt_at_ms), None)
            }
        };
        Self {
            status,
            attempted,
            error,
            next_attempt_at_ms,
            delivered_at,
            now,
        }
    }

    /// The parameters of [`RECORD_DELIVERY`], in order.
    pub fn params<'a>(&'a self, announcement_id: &'a str) -> [Param<'a>; 7] {
        [
            Param::Text(Some(self.status)),
            Param::Int(Some(self.attempted)),
            Param::Text(self.error.as_deref()),
            Param::Int(self.next_attempt_at_ms),
            Param::Time(self.delivered_at),
            Param::Time(Some(self.now)),
            Param::Text(Some(announcement_id)),
        ]
    }
}

// Statements both backends run with their parameters in order (`$1`, `$2`, … by first
// use), so a driver that binds by position binds them right; a unit test checks the order.

/// A result on a pending announcement; one no longer pending changes nothing.
pub(crate) const RECORD_DELIVERY: &str = "UPDATE announcements SET status = $1, \
     attempts = attempts + $2, last_error = COALESCE($3, last_error), \
     next_attempt_at_ms = COALESCE($4, next_attempt_at_ms), \
     delivered_at = COALESCE($5, delivered_at), last_attempt_at = $6, updated_at = $6 \
     WHERE id = $7 AND status = 'pending'";

pub(crate) const ANNOUNCEMENT_EXISTS: &str = "SELECT id FROM announcements WHERE id = $1";

/// A timeline entry of Gema's own (created, expired): provider `gema`, keyed by the
/// transaction id. Parameters: id, transaction id, status, amount, time.
pub(crate) const INTERNAL_EVENT: &str = "INSERT INTO transaction_events (id, transaction_id, \
     provider, provider_transaction_id, status, raw_status, amount, effect, created_at) \
     VALUES ($1, $2, 'gema', $2, $3, $3, $4, $3, $5) \
     ON CONFLICT (provider, provider_transaction_id, status) DO NOTHING";

/// The parameters of [`INTERNAL_EVENT`], in order.
pub(crate) fn internal_event_params<'a>(
    id: &'a str,
    transaction_id: &'a str,
    status: &'a str,
    amount: i64,
    now: time::OffsetDateTime,
) -> [Param<'a>; 5] {
    [
        Param::Text(Some(id)),
        Param::Text(Some(transaction_id)),
        Param::Text(Some(status)),
        Param::Int(Some(amount)),
        Param::Time(Some(now)),
    ]
}

/// The terminal with a static QR reference, and its merchant.
pub(crate) const STATIC_QR_TERMINAL: &str = "SELECT t.id, o.merchant_id FROM terminals t \
     JOIN outlets o ON o.id = t.outlet_id WHERE t.payment_ref = $1";

/// A transaction's postings that are not reversals: external id, id.
pub(crate) const LEDGER_ORIGINALS: &str = "SELECT external_id, id FROM ledger_entries \
     WHERE transaction_id = $1 AND reverses_id IS NULL";

/// Inserts a whole transaction; parameters as [`transaction_params`].
pub(crate) const INSERT_TRANSACTION: &str = "INSERT INTO transactions (id, order_ref, \
     terminal_id, merchant_id, amount, status, source, provider, provider_transaction_id, \
     issuer, paid_at, expires_at_ms, paid_after_expiry, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

pub(crate) fn transaction_params(t: &Transaction) -> [Param<'_>; 15] {
    use Param::{Bool, Int, Text, Time};
    [
        Text(Some(&t.id)),
        Text(Some(&t.order_ref)),
        Text(Some(&t.terminal_id)),
        Text(Some(&t.merchant_id)),
        Int(Some(t.amount)),
        Text(Some(t.status.as_str())),
        Text(Some(t.source.as_str())),
        Text(t.provider.as_deref()),
        Text(t.provider_transaction_id.as_deref()),
        Text(t.issuer.as_deref()),
        Time(t.paid_at),
        Int(Some(t.expires_at_ms)),
        Bool(t.paid_after_expiry),
        Time(Some(t.created_at)),
        Time(Some(t.updated_at)),
    ]
}

/// The transactions with these order references (`count` parameters), then `tail` (a lock
/// clause, or nothing).
pub(crate) fn transactions_by_order_sql(
    placeholders: Placeholders,
    count: usize,
    tail: &str,
) -> String {
    let mut sql = String::from("SELECT * FROM transactions WHERE order_ref IN (");
    push_params(&mut sql, placeholders, 1, count);
    sql.push_str(") ORDER BY order_ref ");
    sql.push_str(tail);
    sql
}

/// [`BOUND_DEVICES`] for `count` terminals.
pub(crate) fn bound_devices_sql(placeholders: Placeholders, count: usize) -> String {
    let mut sql = format!("{BOUND_DEVICES} IN (");
    push_params(&mut sql, placeholders, 1, count);
    sql.push(')');
    sql
}

/// [`RECORDED_KEYS`] for `count` keys of three parameters each.
pub(crate) fn recorded_keys_sql(placeholders: Placeholders, count: usize) -> String {
    insert_sql(RECORDED_KEYS.0, placeholders, count, 3, RECORDED_KEYS.1)
}

pub(crate) async fn apply_payment_events(
    db: &Db,
    items: Vec<(InboxEntry, IncomingEvent)>,
    rules: &dyn PaymentRules,
) -> StoreResult<Vec<StoreResult<PaymentOutcome>>> {
    db.apply_payment_events_and_deliveries(items, rules, Vec::new())
        .await
}

pub(crate) async fn apply_payment_events_and_deliveries(
    db: &Db,
    items: Vec<(InboxEntry, IncomingEvent)>,
    rules: &dyn PaymentRules,
    deliveries: Vec<(String, DeliveryResult)>,
) -> StoreResult<Vec<StoreResult<PaymentOutcome>>> {
    let sent = items.len();
    let (batch, result) = db
        .apply_in_one_transaction(Batch { items, deliveries }, rules)
        .await;
    let mut failure = match result {
        Ok(outcomes) => return Ok(outcomes.into_iter().map(Ok).collect()),
        Err(err) => err,
    };
    let Batch {
        mut items,
        deliveries,
    } = batch;
    if items.len() != sent {
        // The batch did not come back (SQLite's writer thread died with it).
        return Err(failure);
    }
    if !deliveries.is_empty() {
        // Record the results on their own, then try the events as a batch again. If the
        // results fail too, the whole call fails: the caller must not take them for
        // recorded (it would settle the devices' acks), and the events are better retried
        // by their providers than applied by a database failing twice in a row. The
        // announcements stay pending; the devices re-send their unsettled acks.
        if let Err(err) = db.record_deliveries(deliveries).await {
            tracing::error!(error = %err, "recording delivery results failed");
            return Err(failure);
        }
        let (batch, result) = db.apply_in_one_transaction(Batch::of(items), rules).await;
        failure = match result {
            Ok(outcomes) => return Ok(outcomes.into_iter().map(Ok).collect()),
            Err(err) => err,
        };
        items = batch.items;
        if items.len() != sent {
            return Err(failure);
        }
    }
    if items.len() == 1 {
        return Ok(vec![Err(db.record_failed(&items[0].0, failure).await)]);
    }
    tracing::warn!(
        error = %failure,
        events = items.len(),
        "a batch of payment events failed; applying them one by one"
    );
    // One transaction per event, so the event that fails fails alone.
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        results.push(db.apply_alone(item, rules).await);
    }
    Ok(results)
}

pub(crate) async fn apply_payment_event(
    db: &Db,
    entry: InboxEntry,
    event: IncomingEvent,
    rules: &dyn PaymentRules,
) -> StoreResult<PaymentOutcome> {
    db.apply_payment_events(vec![(entry, event)], rules)
        .await?
        .pop()
        .unwrap_or(Err(StoreError::Corrupt("no outcome for an event".into())))
}

pub(crate) async fn record_deliveries(
    db: &Db,
    results: Vec<(String, DeliveryResult)>,
) -> StoreResult<()> {
    match db {
        Db::Sqlite(s) => s.payments.record_deliveries(results).await,
        Db::Postgres(p) => p.write_deliveries(&results).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn insert_chunks_cover_every_row_in_order_with_four_shapes() {
        for n in [0usize, 1, 3, 4, 5, 63, 64, 65, 100, 256, 1_000] {
            let rows: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = super::insert_chunks(&rows).collect();
            assert_eq!(chunks.concat(), rows, "n = {n}");
            assert!(
                chunks.iter().all(|c| [64, 16, 4, 1].contains(&c.len())),
                "n = {n}"
            );
        }
    }

    /// SQLite binds `$N` parameters by position of first use; these statements must use
    /// them in order for the position to be N.
    #[test]
    fn shared_statements_use_their_parameters_in_order() {
        for sql in [
            super::RECORD_DELIVERY,
            super::ANNOUNCEMENT_EXISTS,
            super::INTERNAL_EVENT,
            super::STATIC_QR_TERMINAL,
            super::LEDGER_ORIGINALS,
            super::INSERT_TRANSACTION,
        ] {
            let mut seen = Vec::new();
            for part in sql.split('$').skip(1) {
                let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
                let n: usize = digits.parse().expect("a number after $");
                if !seen.contains(&n) {
                    seen.push(n);
                }
            }
            let expected: Vec<usize> = (1..=seen.len()).collect();
            assert_eq!(seen, expected, "{sql}");
        }
        assert_eq!(super::INSERT_TRANSACTION.matches('$').count(), 15);
    }

    #[test]
    fn insert_sql_numbers_parameters_row_by_row() {
        assert_eq!(
            super::insert_sql(
                "INSERT INTO t (a, b) VALUES ",
                super::Placeholders::Numbered,
                2,
                2,
                " ON CONFLICT DO NOTHING"
            ),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            super::insert_sql(
                "INSERT INTO t (a) VALUES ",
                super::Placeholders::Anonymous,
                2,
                1,
                ""
            ),
            "INSERT INTO t (a) VALUES (?), (?)"
        );
    }
}
