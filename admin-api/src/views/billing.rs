//! Billing's packages, customers, invoices and their histories, as the API shows them.

use gema_gateway::billing as domain;
use gema_store::billing as store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::payments::Transaction;
use crate::extract::double_option;

#[derive(Debug, Serialize, ToSchema)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub speed: Option<String>,
    pub description: Option<String>,
    /// Whole rupiah a month.
    pub price: i64,
    /// Inactive packages are offered to no new customer; existing ones keep them.
    pub active: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<store::Package> for Package {
    fn from(p: store::Package) -> Self {
        Package {
            id: p.id,
            name: p.name,
            speed: p.speed,
            description: p.description,
            price: p.price,
            active: p.active,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePackage {
    /// Unique (the CSV import names packages by name).
    pub name: String,
    pub speed: Option<String>,
    pub description: Option<String>,
    /// Whole rupiah a month.
    pub price: i64,
    /// Default true.
    pub active: Option<bool>,
}

/// Absent fields stay as they are; `null` clears an optional one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePackage {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub speed: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub price: Option<i64>,
    pub active: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PackageQuery {
    /// Also inactive packages (default false).
    pub include_inactive: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Customer {
    pub id: String,
    pub merchant_id: String,
    pub package_id: String,
    pub name: String,
    /// WhatsApp number, `62…` digits.
    pub phone: String,
    pub nik: Option<String>,
    pub address: Option<String>,
    /// Billed on this day of every month (1–28), for the month after (prepaid).
    pub billing_day: i64,
    /// Whole rupiah off the package's price.
    pub discount: i64,
    /// `active`, `isolated` or `stopped`.
    pub status: String,
    /// `YYYY-MM-DD`.
    pub register_date: String,
    pub notes: Option<String>,
    /// Send it back with a change (optimistic locking).
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<store::Customer> for Customer {
    fn from(c: store::Customer) -> Self {
        Customer {
            id: c.id,
            merchant_id: c.merchant_id,
            package_id: c.package_id,
            name: c.name,
            phone: c.phone,
            nik: c.nik,
            address: c.address,
            billing_day: c.billing_day,
            discount: c.discount,
            status: c.status.as_str().into(),
            register_date: c.register_date,
            notes: c.notes,
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    /// Operators name the merchant; a merchant user's own is used (another is 404).
    pub merchant_id: Option<String>,
    /// An active package.
    pub package_id: String,
    pub name: String,
    /// `08…`, `+62…` or `62…`; stored as `62…` digits (10–15).
    pub phone: String,
    /// 16 digits.
    pub nik: Option<String>,
    pub address: Option<String>,
    /// 1–28.
    pub billing_day: i64,
    /// Whole rupiah, at most the package's price; default 0.
    pub discount: Option<i64>,
    /// `YYYY-MM-DD`; default today (Asia/Jakarta).
    pub register_date: Option<String>,
    pub notes: Option<String>,
}

/// Absent fields stay as they are; `null` clears an optional one. Merchant users may
/// change `phone` and `discount` only (any other field is 403).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    /// The version read; a stale one is 409 `stale_version`.
    pub version: Option<i64>,
    pub package_id: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub nik: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub address: Option<Option<String>>,
    pub billing_day: Option<i64>,
    pub discount: Option<i64>,
    pub register_date: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
}

impl From<UpdateCustomer> for domain::CustomerChanges {
    fn from(u: UpdateCustomer) -> Self {
        domain::CustomerChanges {
            version: u.version,
            package_id: u.package_id,
            name: u.name,
            phone: u.phone,
            nik: u.nik,
            address: u.address,
            billing_day: u.billing_day,
            discount: u.discount,
            register_date: u.register_date,
            notes: u.notes,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    pub merchant_id: Option<String>,
    /// `active`, `isolated` or `stopped`.
    pub status: Option<String>,
    pub package_id: Option<String>,
    pub billing_day: Option<i64>,
    /// The start of a name or a phone number.
    pub q: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerStatusChange {
    /// Why, for the history (and the webhook).
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerEvent {
    pub id: String,
    /// `created`, `updated`, `imported`, `isolated`, `reactivated`, `activated`, `stopped`.
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    /// For `updated`: the fields changed, comma-separated.
    pub reason: Option<String>,
    pub actor: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<store::CustomerEvent> for CustomerEvent {
    fn from(e: store::CustomerEvent) -> Self {
        CustomerEvent {
            id: e.id,
            kind: e.kind,
            from_status: e.from_status,
            to_status: e.to_status,
            reason: e.reason,
            actor: e.actor,
            created_at: e.created_at,
        }
    }
}

/// An isolation webhook: its body as sent, and how delivery went.
#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    /// `customer.isolated` or `customer.reactivated`.
    pub event: String,
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<store::BillingWebhook> for Webhook {
    fn from(w: store::BillingWebhook) -> Self {
        Webhook {
            id: w.id,
            event: w.event,
            url: w.url,
            status: w.status,
            attempts: w.attempts,
            last_error: w.last_error,
            delivered_at: w.delivered_at,
            created_at: w.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerHistory {
    pub events: Vec<CustomerEvent>,
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Invoice {
    pub id: String,
    pub customer_id: String,
    pub merchant_id: String,
    /// The month paid for in advance, `YYYY-MM`.
    pub period: String,
    pub package_id: String,
    pub package_name: String,
    /// The package's price when the invoice was made.
    pub amount: i64,
    pub discount: i64,
    /// What the customer pays: amount − discount.
    pub total_amount: i64,
    /// `unpaid` or `paid`.
    pub status: String,
    /// `YYYY-MM-DD` (the billing day).
    pub due_date: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub paid_at: Option<OffsetDateTime>,
    /// Who marked it paid, or `payment:<transaction id>` for QRIS.
    pub paid_by: Option<String>,
    /// `cash`, `transfer` or `qris`.
    pub payment_method: Option<String>,
    pub payment_note: Option<String>,
    pub transaction_id: Option<String>,
    /// The public receipt page, once paid (`/r/<token>`).
    pub receipt_path: Option<String>,
    /// The public pay page while unpaid (`/p/<token>`): the bill and its QRIS, the link a
    /// bill reminder carries.
    pub pay_path: Option<String>,
    /// Send it back with pay and unpay (optimistic locking).
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<store::Invoice> for Invoice {
    fn from(i: store::Invoice) -> Self {
        let paid = i.status == store::InvoiceStatus::Paid;
        Invoice {
            receipt_path: paid.then(|| format!("/r/{}", i.receipt_token)),
            pay_path: (!paid).then(|| format!("/p/{}", i.receipt_token)),
            id: i.id,
            customer_id: i.customer_id,
            merchant_id: i.merchant_id,
            period: i.period,
            package_id: i.package_id,
            package_name: i.package_name,
            amount: i.amount,
            discount: i.discount,
            total_amount: i.total_amount,
            status: i.status.as_str().into(),
            due_date: i.due_date,
            paid_at: i.paid_at,
            paid_by: i.paid_by,
            payment_method: i.payment_method,
            payment_note: i.payment_note,
            transaction_id: i.transaction_id,
            version: i.version,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceEvent {
    pub id: String,
    /// `qris_issued`, `paid`, `unpaid`, `paid_again` (a QRIS payment for an invoice already
    /// paid: the money is in the ledger; settle it with the customer).
    pub kind: String,
    pub method: Option<String>,
    pub note: Option<String>,
    pub transaction_id: Option<String>,
    pub actor: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<store::InvoiceEvent> for InvoiceEvent {
    fn from(e: store::InvoiceEvent) -> Self {
        InvoiceEvent {
            id: e.id,
            kind: e.kind,
            method: e.method,
            note: e.note,
            transaction_id: e.transaction_id,
            actor: e.actor,
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceDetail {
    #[serde(flatten)]
    pub invoice: Invoice,
    pub events: Vec<InvoiceEvent>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvoiceQuery {
    pub merchant_id: Option<String>,
    pub customer_id: Option<String>,
    /// `YYYY-MM`.
    pub period: Option<String>,
    /// `unpaid` or `paid`.
    pub status: Option<String>,
    /// `YYYY-MM-DD`.
    pub due_date: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayInvoice {
    /// The invoice's version as read; another user's change since is 409 `stale_version`.
    pub version: i64,
    /// `cash` or `transfer` (QRIS payments mark their invoice themselves).
    pub method: String,
    pub note: Option<String>,
}

/// What paying did.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaidInvoice {
    #[serde(flatten)]
    pub invoice: Invoice,
    /// The customer, when paying re-activated it (isolated, nothing else overdue).
    pub reactivated_customer: Option<Customer>,
}

impl From<store::Paid> for PaidInvoice {
    fn from(p: store::Paid) -> Self {
        PaidInvoice {
            invoice: p.invoice.into(),
            reactivated_customer: p.reactivated.map(Customer::from),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnpayInvoice {
    pub version: i64,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceQris {
    /// One of the invoice's merchant's terminals, with a static QRIS.
    pub terminal_id: String,
}

/// An invoice's QRIS: pay it and the invoice is paid, the soundbox speaks it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceQrisIssued {
    pub invoice_id: String,
    /// The QRIS text to render.
    pub payload: String,
    pub transaction: Transaction,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceRun {
    /// The run's date, `YYYY-MM-DD` (Asia/Jakarta): customers billed the day after get the
    /// invoice for the month after that. Default today.
    pub date: Option<String>,
    /// One merchant's customers only; default all.
    pub merchant_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceRunReport {
    pub run_date: String,
    /// The customers' billing date (the day after `run_date`).
    pub billing_date: String,
    /// `YYYY-MM`; `null` when the billing date is past the 28th (nobody is billed).
    pub period: Option<String>,
    /// Invoices made by this run (customers who had theirs already are not counted).
    pub created: u64,
}

impl From<domain::GenerationReport> for InvoiceRunReport {
    fn from(r: domain::GenerationReport) -> Self {
        InvoiceRunReport {
            run_date: domain::iso_date(r.run_date),
            billing_date: domain::iso_date(r.billing_date),
            period: r.period,
            created: r.created,
        }
    }
}
