//! Payment records: transactions, their event timeline, ledger entries, announcements, and
//! the raw inbox. The rules (which transitions are allowed, the fee, how long an
//! announcement lives) are the gateway's, passed in as [`PaymentRules`]; the store applies
//! them inside one transaction so an event's effects are all there or none are.

use time::OffsetDateTime;

use crate::Db;
use crate::{Page, PageRequest, PaymentStore, StoreResult};

pub(crate) mod announcement;
pub(crate) mod batch;
pub(crate) mod inbox;
pub(crate) mod ledger;
pub(crate) mod transaction;

pub use announcement::{Announcement, AnnouncementDelivery, AnnouncementStatus, DeliveryResult};
pub use inbox::InboxEntry;
pub use ledger::{LedgerEntry, LedgerEntryType, LedgerFilter};
pub use transaction::{
    NewTransaction, Transaction, TransactionEvent, TransactionFilter, TransactionSource,
    TransactionStatus,
};

/// A verified, normalised provider event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingEvent {
    pub provider: String,
    pub provider_transaction_id: String,
    pub order_ref: String,
    pub amount: i64,
    /// `pending`, `paid`, `failed`, `expired`, `refunded`, or a status we do not know.
    pub status: String,
    pub raw_status: String,
    pub issuer: Option<String>,
    pub paid_at: Option<OffsetDateTime>,
    pub is_test: bool,
}

/// What the rules say an event does to a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Move to this status; `flag_paid_after_expiry` marks a paid event that beat an
    /// expiry.
    To {
        status: TransactionStatus,
        flag_paid_after_expiry: bool,
    },
    /// Stale, repeated in another form, or unknown: record it, change nothing.
    Ignore,
}

/// The gateway's payment rules, applied by the store inside the event's transaction.
pub trait PaymentRules: Send + Sync {
    /// What an event with `event_status` does to a transaction in `current`.
    fn transition(&self, current: TransactionStatus, event_status: &str) -> Transition;
    /// `(platform fee, merchant payable)` for a gross amount; they add up to it.
    fn split_fee(&self, gross: i64) -> (i64, i64);
    /// How long after the payment an announcement may still be spoken.
    fn announcement_ttl_ms(&self) -> i64;
    /// How long an announcement handed over to the relay at its commit (one for a bound
    /// device) stays out of outbox reads of what is due: its first `next_attempt_at_ms`
    /// is the commit plus this. The relay's worker already holds it; under load the outbox
    /// reread every announcement still in flight, and each device's worker read it again
    /// (measured: a third of PostgreSQL's work per callback). Reads that deliver everything
    /// pending (a device's replay after it connects, another node's wake-up) see it at
    /// once; if its node dies before an attempt, the outbox recheck finds it after this.
    fn handover_lease_ms(&self) -> i64;
}

/// What applying an event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// The event changed the transaction (and possibly queued an announcement).
    Applied {
        transaction_id: String,
        status: TransactionStatus,
        announcement_id: Option<String>,
        /// The announcement as the relay should send it, when a device is bound: the
        /// committed row, handed over so delivery needs no read.
        delivery: Option<Box<AnnouncementDelivery>>,
    },
    /// The same (provider, id, status) was already recorded; nothing changed.
    Duplicate { transaction_id: Option<String> },
    /// Recorded on the timeline; the transaction was already past it.
    Stale { transaction_id: String },
    /// A paid event whose amount differs from the transaction's; recorded, not applied.
    AmountMismatch { transaction_id: String },
    /// A provider dashboard's test notification; recorded in the inbox only.
    Test,
    /// No transaction has this order reference and no terminal's static QR carries it.
    UnknownOrder,
}

impl PaymentOutcome {
    /// The inbox's word for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentOutcome::Applied { .. } => "applied",
            PaymentOutcome::Duplicate { .. } => "duplicate",
            PaymentOutcome::Stale { .. } => "stale",
            PaymentOutcome::AmountMismatch { .. } => "amount_mismatch",
            PaymentOutcome::Test => "test",
            PaymentOutcome::UnknownOrder => "unknown_order",
        }
    }
}

/// The one implementation, for both backends: each method is its entity module's function.
#[async_trait::async_trait]
impl PaymentStore for Db {
    async fn record_inbox(
        &self,
        entry: InboxEntry,
        outcome: &str,
        detail: Option<&str>,
    ) -> StoreResult<String> {
        inbox::record_inbox(self, entry, outcome, detail).await
    }

    async fn apply_payment_events(
        &self,
        items: Vec<(InboxEntry, IncomingEvent)>,
        rules: &dyn PaymentRules,
    ) -> StoreResult<Vec<StoreResult<PaymentOutcome>>> {
        batch::apply_payment_events(self, items, rules).await
    }

    async fn apply_payment_events_and_deliveries(
        &self,
        items: Vec<(InboxEntry, IncomingEvent)>,
        rules: &dyn PaymentRules,
        deliveries: Vec<(String, DeliveryResult)>,
    ) -> StoreResult<Vec<StoreResult<PaymentOutcome>>> {
        batch::apply_payment_events_and_deliveries(self, items, rules, deliveries).await
    }

    async fn apply_payment_event(
        &self,
        entry: InboxEntry,
        event: IncomingEvent,
        rules: &dyn PaymentRules,
    ) -> StoreResult<PaymentOutcome> {
        batch::apply_payment_event(self, entry, event, rules).await
    }

    async fn create_transaction(&self, new: NewTransaction) -> StoreResult<Transaction> {
        transaction::create_transaction(self, new).await
    }

    async fn get_transaction(&self, id: &str) -> StoreResult<Transaction> {
        transaction::get_transaction(self, id).await
    }

    async fn list_transactions(
        &self,
        filter: &TransactionFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Transaction>> {
        transaction::list_transactions(self, filter, page).await
    }

    async fn transaction_events(&self, id: &str) -> StoreResult<Vec<TransactionEvent>> {
        transaction::transaction_events(self, id).await
    }

    async fn transaction_announcements(&self, id: &str) -> StoreResult<Vec<Announcement>> {
        announcement::transaction_announcements(self, id).await
    }

    async fn list_ledger_entries(
        &self,
        filter: &LedgerFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<LedgerEntry>> {
        ledger::list_ledger_entries(self, filter, page).await
    }

    async fn expire_due_transactions(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<String>> {
        transaction::expire_due_transactions(self, now_ms, limit).await
    }

    async fn queue_announcement(
        &self,
        transaction_id: &str,
        rules: &dyn PaymentRules,
    ) -> StoreResult<Announcement> {
        announcement::queue_announcement(self, transaction_id, rules).await
    }

    async fn due_announcements(
        &self,
        device_id: Option<&str>,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<AnnouncementDelivery>> {
        announcement::due_announcements(self, device_id, now_ms, limit).await
    }

    async fn next_announcement_due_ms(&self, after_ms: i64) -> StoreResult<Option<i64>> {
        announcement::next_announcement_due_ms(self, after_ms).await
    }

    async fn record_delivery(
        &self,
        announcement_id: &str,
        result: DeliveryResult,
    ) -> StoreResult<()> {
        announcement::record_delivery(self, announcement_id, result).await
    }

    async fn record_deliveries(&self, results: Vec<(String, DeliveryResult)>) -> StoreResult<()> {
        batch::record_deliveries(self, results).await
    }
}
