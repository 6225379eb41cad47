//! Transactions, their events and announcements, the ledger, dynamic QR, and the answer to a
//! provider's callback.

use gema_store as store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::timestamps::instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransactionStatus {
    Pending,
    Paid,
    Refunded,
    Expired,
    Failed,
}

impl From<store::TransactionStatus> for TransactionStatus {
    fn from(s: store::TransactionStatus) -> Self {
        match s {
            store::TransactionStatus::Pending => TransactionStatus::Pending,
            store::TransactionStatus::Paid => TransactionStatus::Paid,
            store::TransactionStatus::Refunded => TransactionStatus::Refunded,
            store::TransactionStatus::Expired => TransactionStatus::Expired,
            store::TransactionStatus::Failed => TransactionStatus::Failed,
        }
    }
}

impl From<TransactionStatus> for store::TransactionStatus {
    fn from(s: TransactionStatus) -> Self {
        match s {
            TransactionStatus::Pending => store::TransactionStatus::Pending,
            TransactionStatus::Paid => store::TransactionStatus::Paid,
            TransactionStatus::Refunded => store::TransactionStatus::Refunded,
            TransactionStatus::Expired => store::TransactionStatus::Expired,
            TransactionStatus::Failed => store::TransactionStatus::Failed,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Transaction {
    pub id: String,
    pub order_ref: String,
    pub terminal_id: String,
    pub merchant_id: String,
    /// Whole rupiah.
    pub amount: i64,
    pub status: TransactionStatus,
    /// `api` or `static_qr`.
    pub source: String,
    pub provider: Option<String>,
    pub provider_transaction_id: Option<String>,
    pub issuer: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub paid_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Paid after it had expired or failed (the payment still counts).
    pub paid_after_expiry: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<store::Transaction> for Transaction {
    fn from(t: store::Transaction) -> Self {
        Transaction {
            id: t.id,
            order_ref: t.order_ref,
            terminal_id: t.terminal_id,
            merchant_id: t.merchant_id,
            amount: t.amount,
            status: t.status.into(),
            source: t.source.as_str().into(),
            provider: t.provider,
            provider_transaction_id: t.provider_transaction_id,
            issuer: t.issuer,
            paid_at: t.paid_at,
            expires_at: instant(t.expires_at_ms),
            paid_after_expiry: t.paid_after_expiry,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTransaction {
    pub terminal_id: String,
    /// Your order reference, unique; providers' callbacks carry it back.
    pub order_ref: String,
    /// Whole rupiah.
    pub amount: i64,
    /// Seconds until an unpaid transaction expires (default from configuration).
    pub expires_in_secs: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransactionQuery {
    pub status: Option<TransactionStatus>,
    pub terminal_id: Option<String>,
    pub merchant_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionEvent {
    pub id: String,
    /// `midtrans`, `xendit`, `generic`, or `gema` for Gema's own (created, expired).
    pub provider: String,
    pub provider_transaction_id: String,
    pub status: String,
    pub raw_status: String,
    pub amount: Option<i64>,
    /// What it did: `created`, `applied`, `stale`, `paid_after_expiry`, `amount_mismatch`,
    /// `expired`.
    pub effect: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<store::TransactionEvent> for TransactionEvent {
    fn from(e: store::TransactionEvent) -> Self {
        TransactionEvent {
            id: e.id,
            provider: e.provider,
            provider_transaction_id: e.provider_transaction_id,
            status: e.status,
            raw_status: e.raw_status,
            amount: e.amount,
            effect: e.effect,
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Announcement {
    pub id: String,
    pub transaction_id: String,
    pub terminal_id: String,
    pub device_id: Option<String>,
    /// `pending`, `delivered`, `failed`, `expired` or `no_device`.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<store::Announcement> for Announcement {
    fn from(a: store::Announcement) -> Self {
        Announcement {
            id: a.id,
            transaction_id: a.transaction_id,
            terminal_id: a.terminal_id,
            device_id: a.device_id,
            status: a.status.as_str().into(),
            attempts: a.attempts,
            last_error: a.last_error,
            expires_at: instant(a.expires_at_ms),
            last_attempt_at: a.last_attempt_at,
            delivered_at: a.delivered_at,
            created_at: a.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub id: String,
    /// The transaction it posts; null for a settlement adjustment's entries.
    pub transaction_id: Option<String>,
    /// The settlement adjustment it posts; null for a transaction's entries.
    pub adjustment_id: Option<String>,
    pub merchant_id: String,
    /// `gross_income`, `platform_fee`, `merchant_payable`, `payable_adjustment` (what an
    /// adjustment changes in the merchant's payout) or `merchant_held` (withheld by a hold,
    /// returned by a release).
    pub entry_type: String,
    /// Whole rupiah; negative on a refund's reversing entries.
    pub amount: i64,
    pub external_id: String,
    pub reverses_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<store::LedgerEntry> for LedgerEntry {
    fn from(e: store::LedgerEntry) -> Self {
        LedgerEntry {
            id: e.id,
            transaction_id: e.transaction_id,
            adjustment_id: e.adjustment_id,
            merchant_id: e.merchant_id,
            entry_type: e.entry_type.as_str().into(),
            amount: e.amount,
            external_id: e.external_id,
            reverses_id: e.reverses_id,
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    pub merchant_id: Option<String>,
    pub transaction_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExpiredTransactions {
    pub count: usize,
    pub transaction_ids: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDynamicQr {
    /// Whole rupiah.
    pub amount: i64,
    /// Seconds until the QR (and its pending transaction) expires; default from configuration.
    pub expires_in_secs: Option<u64>,
}

/// A dynamic QR and the pending transaction it pays.
#[derive(Debug, Serialize, ToSchema)]
pub struct DynamicQr {
    /// The QRIS text to render: the terminal's static code with tag 01 = 12, the amount in
    /// 54, the transaction's order reference in 62.05 and the terminal label in 62.07.
    pub payload: String,
    pub transaction: Transaction,
}

/// The answer to a provider: 200 means "recorded, do not retry".
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackAck {
    pub status: String,
    /// `applied`, `duplicate`, `stale`, `amount_mismatch` or `test`.
    pub outcome: String,
    pub transaction_id: Option<String>,
}
