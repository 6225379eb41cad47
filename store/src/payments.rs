//! Payment records: transactions, their event timeline, ledger entries, announcements, and
//! the raw inbox. The rules (which transitions are allowed, the fee, how long an
//! announcement lives) are the gateway's, passed in as [`PaymentRules`]; the store applies
//! them inside one transaction so an event's effects are all there or none are.

use serde::Serialize;
use time::OffsetDateTime;

string_enum!(
    /// Where a transaction is: pending → paid → refunded; pending → expired | failed.
    /// A paid event after expiry or failure still wins (and is flagged).
    TransactionStatus {
        Pending = "pending",
        Paid = "paid",
        Refunded = "refunded",
        Expired = "expired",
        Failed = "failed",
    }
);

string_enum!(
    /// How the transaction came to exist.
    TransactionSource {
        /// `POST /api/v1/transactions` (an order with an amount, e.g. a dynamic QR).
        Api = "api",
        /// A paid event for a terminal's static QR reference.
        StaticQr = "static_qr",
    }
);

string_enum!(
    AnnouncementStatus {
        /// Waiting to be sent (or re-sent).
        Pending = "pending",
        /// The device acknowledged it.
        Delivered = "delivered",
        /// Gave up after the retry budget.
        Failed = "failed",
        /// Not delivered before its expiry; never spoken.
        Expired = "expired",
        /// The terminal had no active bound device when the payment arrived.
        NoDevice = "no_device",
    }
);

string_enum!(
    LedgerEntryType {
        GrossIncome = "gross_income",
        PlatformFee = "platform_fee",
        MerchantPayable = "merchant_payable",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Transaction {
    pub id: String,
    pub order_ref: String,
    pub terminal_id: String,
    pub merchant_id: String,
    /// Whole rupiah.
    pub amount: i64,
    #[sqlx(try_from = "String")]
    pub status: TransactionStatus,
    #[sqlx(try_from = "String")]
    pub source: TransactionSource,
    pub provider: Option<String>,
    pub provider_transaction_id: Option<String>,
    pub issuer: Option<String>,
    pub paid_at: Option<OffsetDateTime>,
    /// Unix milliseconds after which a pending transaction expires.
    pub expires_at_ms: i64,
    /// A paid event arrived after the transaction had expired or failed, and won.
    pub paid_after_expiry: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransaction {
    pub terminal_id: String,
    pub order_ref: String,
    pub amount: i64,
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionFilter {
    pub status: Option<TransactionStatus>,
    pub terminal_id: Option<String>,
    pub merchant_id: Option<String>,
}

/// One entry of a transaction's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TransactionEvent {
    pub id: String,
    pub transaction_id: Option<String>,
    pub provider: String,
    pub provider_transaction_id: String,
    pub status: String,
    pub raw_status: String,
    pub amount: Option<i64>,
    /// `created`, `applied`, `stale`, `paid_after_expiry`, `amount_mismatch`, `expired`.
    pub effect: String,
    pub inbox_id: Option<String>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LedgerEntry {
    pub id: String,
    pub transaction_id: String,
    pub merchant_id: String,
    #[sqlx(try_from = "String")]
    pub entry_type: LedgerEntryType,
    /// Whole rupiah; negative on a refund's reversing entries.
    pub amount: i64,
    pub external_id: String,
    pub reverses_id: Option<String>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerFilter {
    pub merchant_id: Option<String>,
    pub transaction_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Announcement {
    pub id: String,
    pub transaction_id: String,
    pub terminal_id: String,
    pub device_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: AnnouncementStatus,
    /// Per-device counter, increasing by one per announcement to that device.
    pub sequence: i64,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub expires_at_ms: i64,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_attempt_at: Option<OffsetDateTime>,
    pub delivered_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
}

/// An announcement with what the device needs to say it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AnnouncementDelivery {
    pub id: String,
    pub transaction_id: String,
    pub device_id: String,
    pub sequence: i64,
    pub attempts: i64,
    pub expires_at_ms: i64,
    pub amount: i64,
    pub issuer: Option<String>,
    pub provider: Option<String>,
    pub paid_at: Option<OffsetDateTime>,
    /// The device's desired config (JSON written by the gateway), when one is set: the
    /// relay announces in its language.
    pub desired_config: Option<String>,
}

/// What a delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// Try again at `next_attempt_at_ms` (the device was offline or did not ack in time).
    Retry {
        error: String,
        next_attempt_at_ms: i64,
    },
    Failed {
        error: String,
    },
    Expired,
    /// Not attempted (the device is offline): wait until `next_attempt_at_ms` or until
    /// the device reconnects. Does not count as an attempt.
    Deferred {
        next_attempt_at_ms: i64,
    },
}

/// A provider request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub provider: String,
    pub received_at: OffsetDateTime,
    /// The request headers as a JSON object (secrets such as tokens removed by the caller).
    pub headers: String,
    pub body: Vec<u8>,
}

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
