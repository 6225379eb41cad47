//! Subscription billing that a merchant runs for its own customers: operator-wide packages,
//! customers, prepaid monthly invoices (one per customer and period), their histories, the
//! QRIS payments issued for invoices, merchants' billing settings, the isolation webhooks'
//! outbox and the daily run.
//!
//! Dates are ISO text (`YYYY-MM-DD`, Asia/Jakarta calendar days) and periods `YYYY-MM`, on
//! both backends; money is integer rupiah.

use serde::Serialize;
use time::OffsetDateTime;

string_enum!(
    /// A billing customer's state: `isolated` customers are cut off for not paying and get
    /// no new invoices; `stopped` customers left.
    CustomerStatus {
        Active = "active",
        Isolated = "isolated",
        Stopped = "stopped",
    }
);

string_enum!(
    InvoiceStatus {
        Unpaid = "unpaid",
        Paid = "paid",
    }
);

string_enum!(
    /// How an invoice was paid.
    PaymentMethod {
        Cash = "cash",
        Transfer = "transfer",
        /// A dynamic QRIS issued for the invoice, paid at the merchant's soundbox.
        Qris = "qris",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub speed: Option<String>,
    pub description: Option<String>,
    pub price: i64,
    pub active: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Customer {
    pub id: String,
    pub merchant_id: String,
    pub package_id: String,
    pub name: String,
    /// `62…` digits.
    pub phone: String,
    pub nik: Option<String>,
    pub address: Option<String>,
    pub billing_day: i64,
    pub discount: i64,
    #[sqlx(try_from = "String")]
    pub status: CustomerStatus,
    /// `YYYY-MM-DD`.
    pub register_date: String,
    pub notes: Option<String>,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What a customer pays a month: the package's price less the discount, never negative.
pub fn customer_total(price: i64, discount: i64) -> i64 {
    (price - discount).max(0)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Invoice {
    pub id: String,
    pub customer_id: String,
    pub merchant_id: String,
    /// `YYYY-MM`: the month paid for in advance.
    pub period: String,
    pub package_id: String,
    pub package_name: String,
    pub amount: i64,
    pub discount: i64,
    pub total_amount: i64,
    #[sqlx(try_from = "String")]
    pub status: InvoiceStatus,
    /// `YYYY-MM-DD`.
    pub due_date: String,
    pub paid_at: Option<OffsetDateTime>,
    pub paid_by: Option<String>,
    pub payment_method: Option<String>,
    pub payment_note: Option<String>,
    pub transaction_id: Option<String>,
    pub receipt_token: String,
    pub reminder_queued_at: Option<OffsetDateTime>,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}
