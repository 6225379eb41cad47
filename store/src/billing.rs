//! Subscription billing that a merchant runs for its own customers: operator-wide packages,
//! customers, prepaid monthly invoices (one per customer and period), their histories, the
//! QRIS payments issued for invoices, merchants' billing settings, the isolation webhooks'
//! outbox and the daily run.
//!
//! Dates are ISO text (`YYYY-MM-DD`, Asia/Jakarta calendar days) and periods `YYYY-MM`, on
//! both backends; money is integer rupiah.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::db::{Exec, query, query_as};
use crate::sql::{fetch_limit, new_id, now, paginate};
use crate::{Db, Page, PageRequest, StoreError, StoreResult};

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPackage {
    pub name: String,
    pub speed: Option<String>,
    pub description: Option<String>,
    pub price: i64,
    pub active: bool,
}

/// A package's changes; `None` keeps a field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackagePatch {
    pub name: Option<String>,
    pub speed: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub price: Option<i64>,
    pub active: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomer {
    pub merchant_id: String,
    pub package_id: String,
    pub name: String,
    pub phone: String,
    pub nik: Option<String>,
    pub address: Option<String>,
    pub billing_day: i64,
    pub discount: i64,
    pub register_date: String,
    pub notes: Option<String>,
}

/// A customer's changes; `None` keeps a field. Status changes go through
/// [`BillingStore::set_customer_status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerPatch {
    pub package_id: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub nik: Option<Option<String>>,
    pub address: Option<Option<String>>,
    pub billing_day: Option<i64>,
    pub discount: Option<i64>,
    pub register_date: Option<String>,
    pub notes: Option<Option<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFilter {
    pub merchant_id: Option<String>,
    pub status: Option<CustomerStatus>,
    pub package_id: Option<String>,
    pub billing_day: Option<i64>,
    /// The start of a name (case-insensitive) or of a phone number.
    pub search: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CustomerEvent {
    pub id: String,
    pub customer_id: String,
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub reason: Option<String>,
    pub actor: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceFilter {
    pub merchant_id: Option<String>,
    pub customer_id: Option<String>,
    /// `YYYY-MM`.
    pub period: Option<String>,
    pub status: Option<InvoiceStatus>,
    /// `YYYY-MM-DD`.
    pub due_date: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct InvoiceEvent {
    pub id: String,
    pub invoice_id: String,
    pub kind: String,
    pub method: Option<String>,
    pub note: Option<String>,
    pub transaction_id: Option<String>,
    pub actor: String,
    pub created_at: OffsetDateTime,
}

/// A customer due an invoice for a period: what the invoice snapshots.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InvoiceCandidate {
    pub customer_id: String,
    pub merchant_id: String,
    pub package_id: String,
    pub package_name: String,
    pub price: i64,
    pub discount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvoice {
    pub customer_id: String,
    pub merchant_id: String,
    pub period: String,
    pub package_id: String,
    pub package_name: String,
    pub amount: i64,
    pub discount: i64,
    pub due_date: String,
    pub receipt_token: String,
}

/// Marking an invoice paid by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualPayment {
    /// The version the caller saw; another one is a `Conflict` (`stale_version`).
    pub version: i64,
    pub method: PaymentMethod,
    pub note: Option<String>,
    pub actor: String,
    /// Today in Asia/Jakarta (`YYYY-MM-DD`): an isolated customer with no other invoice
    /// overdue by then is re-activated.
    pub today: String,
}

/// What paying an invoice did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paid {
    pub invoice: Invoice,
    /// The customer, when paying re-activated it.
    pub reactivated: Option<Customer>,
}

/// The outcome of a paid QRIS transaction issued for an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QrisSettled {
    /// The invoice is now paid by this transaction.
    Paid(Box<Paid>),
    /// It was paid already (by hand, or by another QRIS): recorded as `paid_again`, for an
    /// operator to settle with the customer.
    AlreadyPaid(Box<Invoice>),
    /// Seen before: nothing changed.
    Unchanged,
    /// The transaction is not (or no longer) paid, or paid another amount.
    NotPaid,
}

/// An unpaid invoice due on a date, with what its bill reminder needs.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReminderInvoice {
    pub invoice_id: String,
    pub customer_id: String,
    pub customer_name: String,
    pub phone: String,
    pub merchant_id: String,
    pub period: String,
    pub package_name: String,
    pub total_amount: i64,
    pub due_date: String,
    /// The invoice's token: its pay page while unpaid, its receipt once paid.
    pub receipt_token: String,
    /// The merchant has a terminal with a static QRIS (the reminder links the pay page).
    pub payable_by_qris: bool,
}

/// An isolation webhook, with what signs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BillingWebhook {
    pub id: String,
    pub merchant_id: String,
    pub customer_id: String,
    pub event: String,
    pub url: String,
    pub body: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

/// A claimed webhook and the merchant's current signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimedWebhook {
    pub webhook: BillingWebhook,
    pub secret: Option<String>,
}

/// Never the signing secret, only whether there is one.
impl std::fmt::Debug for ClaimedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedWebhook")
            .field("webhook", &self.webhook)
            .field("secret", &self.secret.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

/// What the isolation of merchants' customers needs from their settings.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AutoIsolation {
    pub merchant_id: String,
    pub auto_isolate_days: i64,
}

#[async_trait]
pub trait BillingStore: Send + Sync {
    async fn create_package(&self, new: NewPackage) -> StoreResult<Package>;
    async fn get_package(&self, id: &str) -> StoreResult<Package>;
    /// Every package by name; inactive ones only when asked.
    async fn list_packages(&self, include_inactive: bool) -> StoreResult<Vec<Package>>;
    async fn update_package(&self, id: &str, patch: PackagePatch) -> StoreResult<Package>;
    /// `Conflict` (`package_in_use`) while a customer has it.
    async fn delete_package(&self, id: &str) -> StoreResult<()>;

    /// With a `created` history row. The package must exist and be active; the phone must
    /// be new to the merchant (`phone_taken`).
    async fn create_customer(&self, new: NewCustomer, actor: &str) -> StoreResult<Customer>;
    async fn get_customer(&self, id: &str) -> StoreResult<Customer>;
    async fn list_customers(
        &self,
        filter: &CustomerFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Customer>>;
    /// With an `updated` history row naming the fields changed. `version`, when given, must
    /// be the stored one (`stale_version`).
    async fn update_customer(
        &self,
        id: &str,
        version: Option<i64>,
        patch: CustomerPatch,
        actor: &str,
    ) -> StoreResult<Customer>;
    /// Moves a customer to `status` with a history row and, when the merchant has an
    /// isolation webhook and the change is into or out of `isolated`, a webhook in the
    /// outbox, all in one transaction. The same status again changes nothing.
    async fn set_customer_status(
        &self,
        id: &str,
        status: CustomerStatus,
        reason: Option<&str>,
        actor: &str,
    ) -> StoreResult<Customer>;
    async fn customer_events(&self, id: &str) -> StoreResult<Vec<CustomerEvent>>;

    /// Active customers billed on `billing_day` with no invoice for `period` yet.
    async fn invoice_candidates(
        &self,
        billing_day: i64,
        period: &str,
        merchant_id: Option<&str>,
    ) -> StoreResult<Vec<InvoiceCandidate>>;
    /// Inserts the invoices in one transaction, skipping any customer that has one for the
    /// period already (a concurrent run); returns how many were inserted.
    async fn insert_invoices(&self, invoices: Vec<NewInvoice>) -> StoreResult<u64>;
    async fn get_invoice(&self, id: &str) -> StoreResult<Invoice>;
    async fn list_invoices(
        &self,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Invoice>>;
    async fn invoice_events(&self, id: &str) -> StoreResult<Vec<InvoiceEvent>>;
    /// `unpaid → paid` by hand, at the caller's version (`stale_version`, `already_paid`).
    async fn pay_invoice(&self, id: &str, payment: ManualPayment) -> StoreResult<Paid>;
    /// `paid → unpaid` at the caller's version; an invoice paid by QRIS stays paid
    /// (`paid_by_qris`: the money moved; a refund undoes it).
    async fn unpay_invoice(
        &self,
        id: &str,
        version: i64,
        note: Option<&str>,
        actor: &str,
    ) -> StoreResult<Invoice>;
    /// Creates a pending QRIS transaction for the invoice's total and links it, with a
    /// `qris_issued` history row, in one transaction.
    async fn create_invoice_qris(
        &self,
        invoice_id: &str,
        new: crate::NewTransaction,
        actor: &str,
    ) -> StoreResult<crate::Transaction>;
    /// The invoice's newest QRIS still pending at `now_ms` for its current total, or, when
    /// there is none, `new` created as [`BillingStore::create_invoice_qris`] does; under the
    /// invoice's lock, so concurrent callers share one QRIS. `true` when it was created.
    async fn current_or_create_invoice_qris(
        &self,
        invoice_id: &str,
        now_ms: i64,
        new: crate::NewTransaction,
        actor: &str,
    ) -> StoreResult<(crate::Transaction, bool)>;
    /// The invoice whose receipt token is `token`, whatever its status (the public pay page).
    async fn invoice_by_token(&self, token: &str) -> StoreResult<Option<Invoice>>;
    /// The merchant's terminal that takes its invoices' QRIS payments: the oldest with a
    /// static QRIS, if it has one.
    async fn invoice_qris_terminal(&self, merchant_id: &str) -> StoreResult<Option<String>>;
    /// Applies a paid QRIS transaction to its invoice (idempotent).
    async fn settle_invoice_qris(
        &self,
        transaction_id: &str,
        today: &str,
    ) -> StoreResult<QrisSettled>;
    /// Paid invoice transactions not yet applied to their invoices (a missed wake-up).
    async fn unsettled_invoice_qris(&self, limit: i64) -> StoreResult<Vec<String>>;

    /// Unpaid invoices due on `due_date` with no reminder queued yet, of customers who are
    /// not stopped, by customer and period.
    async fn reminder_invoices(&self, due_date: &str) -> StoreResult<Vec<ReminderInvoice>>;
    /// Stamps `reminder_queued_at` on the invoices.
    async fn mark_reminders_queued(
        &self,
        invoice_ids: &[String],
        at: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Merchants that isolate overdue customers automatically.
    async fn auto_isolations(&self) -> StoreResult<Vec<AutoIsolation>>;
    /// The merchant's active customers with an unpaid invoice due on or before `due_by`.
    async fn overdue_customers(&self, merchant_id: &str, due_by: &str) -> StoreResult<Vec<String>>;

    /// Claims up to `limit` webhooks due at `now_ms` for `node` until `claim_until_ms`.
    async fn claim_billing_webhooks(
        &self,
        node: &str,
        now_ms: i64,
        claim_until_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedWebhook>>;
    /// A delivery's result: delivered, or failed with the next attempt (`None`: given up).
    async fn finish_billing_webhook(
        &self,
        id: &str,
        error: Option<&str>,
        next_attempt_ms: Option<i64>,
    ) -> StoreResult<()>;
    async fn customer_webhooks(&self, customer_id: &str) -> StoreResult<Vec<BillingWebhook>>;

    /// The newest recorded daily run's date.
    async fn last_billing_run(&self) -> StoreResult<Option<String>>;
    /// Records the daily run for a Jakarta date; `false` if it ran already.
    async fn record_billing_run(
        &self,
        run_date: &str,
        invoices: i64,
        isolated: i64,
        run_by: &str,
    ) -> StoreResult<bool>;
}

const INVOICE_COLUMNS: &str = "id, customer_id, merchant_id, period, package_id, package_name, \
     amount, discount, total_amount, status, due_date, receipt_token, version, created_at, \
     updated_at";
const INVOICE_WIDTH: usize = 15;
/// Invoices per multi-row INSERT.
const INVOICE_CHUNK: usize = 256;

fn stale(entity: &str, id: &str) -> StoreError {
    StoreError::conflict(
        "stale_version",
        Some("version"),
        format!("{entity} {id} was changed by someone else; reload it and try again"),
    )
}

/// The JSON an isolation webhook carries.
fn webhook_body(
    id: &str,
    event: &str,
    customer: &Customer,
    reason: Option<&str>,
    at: OffsetDateTime,
) -> String {
    serde_json::json!({
        "id": id,
        "event": event,
        "occurred_at": at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "merchant_id": customer.merchant_id,
        "customer": {
            "id": customer.id,
            "name": customer.name,
            "phone": customer.phone,
            "status": customer.status.as_str(),
        },
        "reason": reason,
    })
    .to_string()
}

async fn customer_in(exec: Exec<'_>, id: &str, lock: &str) -> StoreResult<Customer> {
    query_as::<Customer>(format!(
        "SELECT * FROM billing_customers WHERE id = $1 {lock}"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?
    .ok_or_else(|| StoreError::not_found("customer", id))
}

async fn invoice_in(exec: Exec<'_>, id: &str, lock: &str) -> StoreResult<Invoice> {
    query_as::<Invoice>(format!(
        "SELECT * FROM billing_invoices WHERE id = $1 {lock}"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?
    .ok_or_else(|| StoreError::not_found("invoice", id))
}

/// Issues an invoice QRIS under the invoice's lock; with `reuse_at_ms`, returns the newest
/// one still pending then for the invoice's total instead, if there is one.
async fn invoice_qris(
    db: &Db,
    invoice_id: &str,
    reuse_at_ms: Option<i64>,
    new: crate::NewTransaction,
    actor: &str,
) -> StoreResult<(crate::Transaction, bool)> {
    let mut tx = db.begin_write().await?;
    let invoice = invoice_in(tx.exec(), invoice_id, db.row_lock()).await?;
    if invoice.status == InvoiceStatus::Paid {
        return Err(StoreError::conflict(
            "already_paid",
            None,
            format!("invoice {invoice_id} is paid already"),
        ));
    }
    if let Some(now_ms) = reuse_at_ms {
        let current = query_as::<crate::Transaction>(
            "SELECT t.* FROM billing_invoice_payments p \
             JOIN transactions t ON t.id = p.transaction_id \
             WHERE p.invoice_id = $1 AND t.status = 'pending' AND t.expires_at_ms > $2 \
             AND t.amount = $3 ORDER BY t.expires_at_ms DESC, t.id LIMIT 1",
        )
        .bind(invoice_id)
        .bind(now_ms)
        .bind(invoice.total_amount)
        .fetch_optional(tx.exec())
        .await?;
        if let Some(current) = current {
            tx.commit().await?;
            return Ok((current, false));
        }
    }
    let transaction = crate::transaction::create_transaction_in(&mut tx, new).await?;
    if transaction.merchant_id != invoice.merchant_id {
        return Err(StoreError::conflict(
            "terminal_of_another_merchant",
            Some("terminal_id"),
            "the terminal is not the invoice's merchant's",
        ));
    }
    query(
        "INSERT INTO billing_invoice_payments (transaction_id, invoice_id, created_at) \
         VALUES ($1, $2, $3)",
    )
    .bind(&transaction.id)
    .bind(invoice_id)
    .bind(now())
    .execute(tx.exec())
    .await?;
    invoice_event(
        tx.exec(),
        invoice_id,
        "qris_issued",
        Some(PaymentMethod::Qris.as_str()),
        None,
        Some(&transaction.id),
        actor,
    )
    .await?;
    tx.commit().await?;
    Ok((transaction, true))
}

async fn customer_event(
    exec: Exec<'_>,
    customer_id: &str,
    kind: &str,
    statuses: (Option<&str>, Option<&str>),
    reason: Option<&str>,
    actor: &str,
) -> StoreResult<()> {
    query(
        "INSERT INTO billing_customer_events \
         (id, customer_id, kind, from_status, to_status, reason, actor, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id("cev"))
    .bind(customer_id)
    .bind(kind)
    .bind(statuses.0)
    .bind(statuses.1)
    .bind(reason)
    .bind(actor)
    .bind(now())
    .execute(exec)
    .await?;
    Ok(())
}

async fn invoice_event(
    exec: Exec<'_>,
    invoice_id: &str,
    kind: &str,
    method: Option<&str>,
    note: Option<&str>,
    transaction_id: Option<&str>,
    actor: &str,
) -> StoreResult<()> {
    query(
        "INSERT INTO billing_invoice_events \
         (id, invoice_id, kind, method, note, transaction_id, actor, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id("iev"))
    .bind(invoice_id)
    .bind(kind)
    .bind(method)
    .bind(note)
    .bind(transaction_id)
    .bind(actor)
    .bind(now())
    .execute(exec)
    .await?;
    Ok(())
}

/// Moves a customer to `to` inside `tx`: the row, its history, and (into or out of
/// `isolated`, when the merchant has a webhook URL) the webhook. `None` if it was there.
async fn change_status(
    db: &Db,
    tx: &mut crate::Tx,
    id: &str,
    to: CustomerStatus,
    reason: Option<&str>,
    actor: &str,
) -> StoreResult<(Customer, bool)> {
    let before = customer_in(tx.exec(), id, db.row_lock()).await?;
    if before.status == to {
        return Ok((before, false));
    }
    let at = now();
    let after = query_as::<Customer>(
        "UPDATE billing_customers SET status = $2, version = version + 1, updated_at = $3 \
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(to.as_str())
    .bind(at)
    .fetch_one(tx.exec())
    .await?;
    let kind = match to {
        CustomerStatus::Isolated => "isolated",
        CustomerStatus::Active if before.status == CustomerStatus::Isolated => "reactivated",
        CustomerStatus::Active => "activated",
        CustomerStatus::Stopped => "stopped",
    };
    customer_event(
        tx.exec(),
        id,
        kind,
        (Some(before.status.as_str()), Some(to.as_str())),
        reason,
        actor,
    )
    .await?;
    let isolation = to == CustomerStatus::Isolated || before.status == CustomerStatus::Isolated;
    if isolation {
        let url: Option<(Option<String>,)> = query_as(
            "SELECT isolation_webhook_url FROM billing_merchant_settings WHERE merchant_id = $1",
        )
        .bind(&after.merchant_id)
        .fetch_optional(tx.exec())
        .await?;
        if let Some((Some(url),)) = url {
            let event = if to == CustomerStatus::Isolated {
                "customer.isolated"
            } else {
                "customer.reactivated"
            };
            let webhook_id = new_id("bwh");
            let body = webhook_body(&webhook_id, event, &after, reason, at);
            query(
                "INSERT INTO billing_webhooks (id, merchant_id, customer_id, event, url, body, \
                 status, attempts, next_attempt_ms, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, 0, $7, $7)",
            )
            .bind(&webhook_id)
            .bind(&after.merchant_id)
            .bind(id)
            .bind(event)
            .bind(url)
            .bind(body)
            // Due at once (whatever clock the sender keeps).
            .bind(at)
            .execute(tx.exec())
            .await?;
        }
    }
    Ok((after, true))
}

/// Marks an unpaid invoice paid inside `tx` and re-activates its isolated customer when no
/// other invoice of theirs is overdue on `today`.
struct Payment<'a> {
    method: PaymentMethod,
    note: Option<&'a str>,
    transaction_id: Option<&'a str>,
    actor: &'a str,
    today: &'a str,
}

async fn mark_paid(
    db: &Db,
    tx: &mut crate::Tx,
    invoice: &Invoice,
    payment: Payment<'_>,
) -> StoreResult<Paid> {
    let Payment {
        method,
        note,
        transaction_id,
        actor,
        today,
    } = payment;
    let updated = query_as::<Invoice>(
        "UPDATE billing_invoices SET status = 'paid', paid_at = $3, paid_by = $4, \
         payment_method = $5, payment_note = $6, transaction_id = $7, version = version + 1, \
         updated_at = $3 WHERE id = $1 AND version = $2 AND status = 'unpaid' RETURNING *",
    )
    .bind(&invoice.id)
    .bind(invoice.version)
    .bind(now())
    .bind(actor)
    .bind(method.as_str())
    .bind(note)
    .bind(transaction_id)
    .fetch_optional(tx.exec())
    .await?;
    let Some(updated) = updated else {
        return Err(stale("invoice", &invoice.id));
    };
    invoice_event(
        tx.exec(),
        &invoice.id,
        "paid",
        Some(method.as_str()),
        note,
        transaction_id,
        actor,
    )
    .await?;
    let customer = customer_in(tx.exec(), &invoice.customer_id, db.row_lock()).await?;
    let mut reactivated = None;
    if customer.status == CustomerStatus::Isolated {
        let overdue: (i64,) = query_as(
            "SELECT COUNT(*) FROM billing_invoices WHERE customer_id = $1 \
             AND status = 'unpaid' AND due_date < $2",
        )
        .bind(&customer.id)
        .bind(today)
        .fetch_one(tx.exec())
        .await?;
        if overdue.0 == 0 {
            let reason = format!("invoice {} paid", invoice.id);
            let (customer, _) = change_status(
                db,
                tx,
                &customer.id,
                CustomerStatus::Active,
                Some(&reason),
                actor,
            )
            .await?;
            reactivated = Some(customer);
        }
    }
    Ok(Paid {
        invoice: updated,
        reactivated,
    })
}

fn phone_taken(phone: &str) -> StoreError {
    StoreError::conflict(
        "phone_taken",
        Some("phone"),
        format!("the merchant already has a customer with phone {phone}"),
    )
}

async fn phone_free(
    exec: Exec<'_>,
    merchant_id: &str,
    phone: &str,
    except: Option<&str>,
) -> StoreResult<()> {
    let other: Option<(String,)> = query_as(
        "SELECT id FROM billing_customers WHERE merchant_id = $1 AND phone = $2 \
         AND ($3 IS NULL OR id <> $3)",
    )
    .bind(merchant_id)
    .bind(phone)
    .bind(except)
    .fetch_optional(exec)
    .await?;
    match other {
        Some(_) => Err(phone_taken(phone)),
        None => Ok(()),
    }
}

async fn package_usable(exec: Exec<'_>, id: &str, field: &'static str) -> StoreResult<Package> {
    let package = query_as::<Package>("SELECT * FROM billing_packages WHERE id = $1")
        .bind(id)
        .fetch_optional(exec)
        .await?
        .ok_or_else(|| {
            StoreError::conflict("unknown_package", Some(field), format!("no package {id}"))
        })?;
    if !package.active {
        return Err(StoreError::conflict(
            "package_inactive",
            Some(field),
            format!("package {id} is no longer offered to new customers"),
        ));
    }
    Ok(package)
}

#[async_trait]
impl BillingStore for Db {
    async fn create_package(&self, new: NewPackage) -> StoreResult<Package> {
        let mut tx = self.begin_write().await?;
        let taken: Option<(String,)> = query_as("SELECT id FROM billing_packages WHERE name = $1")
            .bind(&new.name)
            .fetch_optional(tx.exec())
            .await?;
        if taken.is_some() {
            return Err(StoreError::conflict(
                "package_name_taken",
                Some("name"),
                format!("a package is named {:?} already", new.name),
            ));
        }
        let at = now();
        let row = query_as::<Package>(
            "INSERT INTO billing_packages \
             (id, name, speed, description, price, active, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *",
        )
        .bind(new_id("pkg"))
        .bind(new.name)
        .bind(new.speed)
        .bind(new.description)
        .bind(new.price)
        .bind(new.active)
        .bind(at)
        .fetch_one(tx.exec())
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn get_package(&self, id: &str) -> StoreResult<Package> {
        query_as::<Package>("SELECT * FROM billing_packages WHERE id = $1")
            .bind(id)
            .fetch_optional(self.read())
            .await?
            .ok_or_else(|| StoreError::not_found("package", id))
    }

    async fn list_packages(&self, include_inactive: bool) -> StoreResult<Vec<Package>> {
        Ok(query_as::<Package>(
            "SELECT * FROM billing_packages WHERE ($1 OR active) ORDER BY name, id",
        )
        .bind(include_inactive)
        .fetch_all(self.read())
        .await?)
    }

    async fn update_package(&self, id: &str, patch: PackagePatch) -> StoreResult<Package> {
        let mut tx = self.begin_write().await?;
        let current = query_as::<Package>(format!(
            "SELECT * FROM billing_packages WHERE id = $1 {}",
            self.row_lock()
        ))
        .bind(id)
        .fetch_optional(tx.exec())
        .await?
        .ok_or_else(|| StoreError::not_found("package", id))?;
        if let Some(name) = &patch.name {
            let taken: Option<(String,)> =
                query_as("SELECT id FROM billing_packages WHERE name = $1 AND id <> $2")
                    .bind(name)
                    .bind(id)
                    .fetch_optional(tx.exec())
                    .await?;
            if taken.is_some() {
                return Err(StoreError::conflict(
                    "package_name_taken",
                    Some("name"),
                    format!("a package is named {name:?} already"),
                ));
            }
        }
        let row = query_as::<Package>(
            "UPDATE billing_packages SET name = $2, speed = $3, description = $4, price = $5, \
             active = $6, updated_at = $7 WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(patch.name.unwrap_or(current.name))
        .bind(patch.speed.unwrap_or(current.speed))
        .bind(patch.description.unwrap_or(current.description))
        .bind(patch.price.unwrap_or(current.price))
        .bind(patch.active.unwrap_or(current.active))
        .bind(now())
        .fetch_one(tx.exec())
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn delete_package(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let used: (i64,) = query_as(
            "SELECT (SELECT COUNT(*) FROM billing_customers WHERE package_id = $1) \
             + (SELECT COUNT(*) FROM billing_invoices WHERE package_id = $1)",
        )
        .bind(id)
        .fetch_one(tx.exec())
        .await?;
        if used.0 > 0 {
            return Err(StoreError::conflict(
                "package_in_use",
                None,
                format!("package {id} is billed to customers; make it inactive instead"),
            ));
        }
        let gone = query("DELETE FROM billing_packages WHERE id = $1")
            .bind(id)
            .execute(tx.exec())
            .await?;
        if gone == 0 {
            return Err(StoreError::not_found("package", id));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_customer(&self, new: NewCustomer, actor: &str) -> StoreResult<Customer> {
        let mut tx = self.begin_write().await?;
        let merchant: Option<(String,)> = query_as("SELECT id FROM merchants WHERE id = $1")
            .bind(&new.merchant_id)
            .fetch_optional(tx.exec())
            .await?;
        if merchant.is_none() {
            return Err(StoreError::conflict(
                "unknown_merchant",
                Some("merchant_id"),
                format!("no merchant {}", new.merchant_id),
            ));
        }
        let package = package_usable(tx.exec(), &new.package_id, "package_id").await?;
        if new.discount > package.price {
            return Err(StoreError::conflict(
                "discount_above_price",
                Some("discount"),
                format!(
                    "the discount is more than the package's price ({})",
                    package.price
                ),
            ));
        }
        phone_free(tx.exec(), &new.merchant_id, &new.phone, None).await?;
        let at = now();
        let row = query_as::<Customer>(
            "INSERT INTO billing_customers (id, merchant_id, package_id, name, phone, nik, \
             address, billing_day, discount, status, register_date, notes, version, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11, 1, \
             $12, $12) RETURNING *",
        )
        .bind(new_id("cus"))
        .bind(new.merchant_id)
        .bind(new.package_id)
        .bind(new.name)
        .bind(new.phone)
        .bind(new.nik)
        .bind(new.address)
        .bind(new.billing_day)
        .bind(new.discount)
        .bind(new.register_date)
        .bind(new.notes)
        .bind(at)
        .fetch_one(tx.exec())
        .await?;
        customer_event(
            tx.exec(),
            &row.id,
            "created",
            (None, Some(row.status.as_str())),
            None,
            actor,
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn get_customer(&self, id: &str) -> StoreResult<Customer> {
        customer_in(self.read(), id, "").await
    }

    async fn list_customers(
        &self,
        filter: &CustomerFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Customer>> {
        let search = filter
            .search
            .as_deref()
            .map(|s| format!("{}%", s.to_lowercase().replace(['%', '_'], "")));
        let rows = query_as::<Customer>(
            "SELECT * FROM billing_customers WHERE ($1 IS NULL OR id < $1) \
             AND ($2 IS NULL OR merchant_id = $2) AND ($3 IS NULL OR status = $3) \
             AND ($4 IS NULL OR package_id = $4) AND ($5 IS NULL OR billing_day = $5) \
             AND ($6 IS NULL OR lower(name) LIKE $6 OR phone LIKE $6) \
             ORDER BY id DESC LIMIT $7",
        )
        .bind(page.after.as_deref())
        .bind(filter.merchant_id.as_deref())
        .bind(filter.status.map(CustomerStatus::as_str))
        .bind(filter.package_id.as_deref())
        .bind(filter.billing_day)
        .bind(search)
        .bind(fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(paginate(rows, page.limit, |c| &c.id))
    }

    async fn update_customer(
        &self,
        id: &str,
        version: Option<i64>,
        patch: CustomerPatch,
        actor: &str,
    ) -> StoreResult<Customer> {
        let mut tx = self.begin_write().await?;
        let current = customer_in(tx.exec(), id, self.row_lock()).await?;
        if version.is_some_and(|v| v != current.version) {
            return Err(stale("customer", id));
        }
        let mut changed = Vec::new();
        let price = match &patch.package_id {
            Some(package_id) if *package_id != current.package_id => {
                changed.push("package_id");
                package_usable(tx.exec(), package_id, "package_id")
                    .await?
                    .price
            }
            _ => {
                let (price,): (i64,) = query_as("SELECT price FROM billing_packages WHERE id = $1")
                    .bind(&current.package_id)
                    .fetch_one(tx.exec())
                    .await?;
                price
            }
        };
        let discount = patch.discount.unwrap_or(current.discount);
        if patch.discount.is_some_and(|d| d != current.discount) {
            changed.push("discount");
        }
        if discount > price && (patch.discount.is_some() || patch.package_id.is_some()) {
            return Err(StoreError::conflict(
                "discount_above_price",
                Some("discount"),
                format!("the discount is more than the package's price ({price})"),
            ));
        }
        if let Some(phone) = &patch.phone
            && *phone != current.phone
        {
            changed.push("phone");
            phone_free(tx.exec(), &current.merchant_id, phone, Some(id)).await?;
        }
        macro_rules! note_change {
            ($($field:ident),*) => {$(
                if patch.$field.as_ref().is_some_and(|v| *v != current.$field) {
                    changed.push(stringify!($field));
                }
            )*};
        }
        note_change!(name, nik, address, billing_day, register_date, notes);
        let row = query_as::<Customer>(
            "UPDATE billing_customers SET package_id = $2, name = $3, phone = $4, nik = $5, \
             address = $6, billing_day = $7, discount = $8, register_date = $9, notes = $10, \
             version = version + 1, updated_at = $11 WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(patch.package_id.unwrap_or(current.package_id))
        .bind(patch.name.unwrap_or(current.name))
        .bind(patch.phone.unwrap_or(current.phone))
        .bind(patch.nik.unwrap_or(current.nik))
        .bind(patch.address.unwrap_or(current.address))
        .bind(patch.billing_day.unwrap_or(current.billing_day))
        .bind(discount)
        .bind(patch.register_date.unwrap_or(current.register_date))
        .bind(patch.notes.unwrap_or(current.notes))
        .bind(now())
        .fetch_one(tx.exec())
        .await?;
        let fields = changed.join(",");
        customer_event(tx.exec(), id, "updated", (None, None), Some(&fields), actor).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn set_customer_status(
        &self,
        id: &str,
        status: CustomerStatus,
        reason: Option<&str>,
        actor: &str,
    ) -> StoreResult<Customer> {
        let mut tx = self.begin_write().await?;
        let (customer, changed) = change_status(self, &mut tx, id, status, reason, actor).await?;
        if changed {
            tx.commit().await?;
        }
        Ok(customer)
    }

    async fn customer_events(&self, id: &str) -> StoreResult<Vec<CustomerEvent>> {
        Ok(query_as::<CustomerEvent>(
            "SELECT * FROM billing_customer_events WHERE customer_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.read())
        .await?)
    }

    async fn invoice_candidates(
        &self,
        billing_day: i64,
        period: &str,
        merchant_id: Option<&str>,
    ) -> StoreResult<Vec<InvoiceCandidate>> {
        Ok(query_as::<InvoiceCandidate>(
            "SELECT c.id AS customer_id, c.merchant_id, c.package_id, p.name AS package_name, \
             p.price, c.discount FROM billing_customers c \
             JOIN billing_packages p ON p.id = c.package_id \
             WHERE c.billing_day = $1 AND c.status = 'active' \
             AND ($3 IS NULL OR c.merchant_id = $3) \
             AND NOT EXISTS (SELECT 1 FROM billing_invoices i \
                             WHERE i.customer_id = c.id AND i.period = $2) \
             ORDER BY c.id",
        )
        .bind(billing_day)
        .bind(period)
        .bind(merchant_id)
        .fetch_all(self.read())
        .await?)
    }

    async fn insert_invoices(&self, invoices: Vec<NewInvoice>) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let at = now();
        let mut inserted = 0;
        for chunk in invoices.chunks(INVOICE_CHUNK) {
            let sql = format!(
                "INSERT INTO billing_invoices ({INVOICE_COLUMNS}) VALUES {} \
                 ON CONFLICT DO NOTHING",
                crate::sql::placeholders(self, chunk.len(), INVOICE_WIDTH)
            );
            let mut statement = query(sql);
            for invoice in chunk {
                let total = customer_total(invoice.amount, invoice.discount);
                statement = statement
                    .bind(new_id("inv"))
                    .bind(invoice.customer_id.as_str())
                    .bind(invoice.merchant_id.as_str())
                    .bind(invoice.period.as_str())
                    .bind(invoice.package_id.as_str())
                    .bind(invoice.package_name.as_str())
                    .bind(invoice.amount)
                    .bind(invoice.discount.min(invoice.amount))
                    .bind(total)
                    .bind(InvoiceStatus::Unpaid.as_str())
                    .bind(invoice.due_date.as_str())
                    .bind(invoice.receipt_token.as_str())
                    .bind(1_i64)
                    .bind(at)
                    .bind(at);
            }
            inserted += statement.execute(tx.exec()).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn get_invoice(&self, id: &str) -> StoreResult<Invoice> {
        invoice_in(self.read(), id, "").await
    }

    async fn list_invoices(
        &self,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Invoice>> {
        let rows = query_as::<Invoice>(
            "SELECT * FROM billing_invoices WHERE ($1 IS NULL OR id < $1) \
             AND ($2 IS NULL OR merchant_id = $2) AND ($3 IS NULL OR customer_id = $3) \
             AND ($4 IS NULL OR period = $4) AND ($5 IS NULL OR status = $5) \
             AND ($6 IS NULL OR due_date = $6) ORDER BY id DESC LIMIT $7",
        )
        .bind(page.after.as_deref())
        .bind(filter.merchant_id.as_deref())
        .bind(filter.customer_id.as_deref())
        .bind(filter.period.as_deref())
        .bind(filter.status.map(InvoiceStatus::as_str))
        .bind(filter.due_date.as_deref())
        .bind(fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(paginate(rows, page.limit, |i| &i.id))
    }

    async fn invoice_events(&self, id: &str) -> StoreResult<Vec<InvoiceEvent>> {
        Ok(query_as::<InvoiceEvent>(
            "SELECT * FROM billing_invoice_events WHERE invoice_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.read())
        .await?)
    }

    async fn pay_invoice(&self, id: &str, payment: ManualPayment) -> StoreResult<Paid> {
        let mut tx = self.begin_write().await?;
        let invoice = invoice_in(tx.exec(), id, self.row_lock()).await?;
        if invoice.version != payment.version {
            return Err(stale("invoice", id));
        }
        if invoice.status == InvoiceStatus::Paid {
            return Err(StoreError::conflict(
                "already_paid",
                None,
                format!("invoice {id} is paid already"),
            ));
        }
        let paid = mark_paid(
            self,
            &mut tx,
            &invoice,
            Payment {
                method: payment.method,
                note: payment.note.as_deref(),
                transaction_id: None,
                actor: &payment.actor,
                today: &payment.today,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(paid)
    }

    async fn unpay_invoice(
        &self,
        id: &str,
        version: i64,
        note: Option<&str>,
        actor: &str,
    ) -> StoreResult<Invoice> {
        let mut tx = self.begin_write().await?;
        let invoice = invoice_in(tx.exec(), id, self.row_lock()).await?;
        if invoice.version != version {
            return Err(stale("invoice", id));
        }
        if invoice.status == InvoiceStatus::Unpaid {
            return Err(StoreError::conflict(
                "not_paid",
                None,
                format!("invoice {id} is not paid"),
            ));
        }
        if invoice.payment_method.as_deref() == Some(PaymentMethod::Qris.as_str()) {
            return Err(StoreError::conflict(
                "paid_by_qris",
                None,
                format!(
                    "invoice {id} was paid by QRIS: the money moved; refund the transaction instead"
                ),
            ));
        }
        let row = query_as::<Invoice>(
            "UPDATE billing_invoices SET status = 'unpaid', paid_at = NULL, paid_by = NULL, \
             payment_method = NULL, payment_note = NULL, version = version + 1, updated_at = $3 \
             WHERE id = $1 AND version = $2 RETURNING *",
        )
        .bind(id)
        .bind(version)
        .bind(now())
        .fetch_optional(tx.exec())
        .await?
        .ok_or_else(|| stale("invoice", id))?;
        invoice_event(tx.exec(), id, "unpaid", None, note, None, actor).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn create_invoice_qris(
        &self,
        invoice_id: &str,
        new: crate::NewTransaction,
        actor: &str,
    ) -> StoreResult<crate::Transaction> {
        Ok(invoice_qris(self, invoice_id, None, new, actor).await?.0)
    }

    async fn current_or_create_invoice_qris(
        &self,
        invoice_id: &str,
        now_ms: i64,
        new: crate::NewTransaction,
        actor: &str,
    ) -> StoreResult<(crate::Transaction, bool)> {
        invoice_qris(self, invoice_id, Some(now_ms), new, actor).await
    }

    async fn invoice_by_token(&self, token: &str) -> StoreResult<Option<Invoice>> {
        Ok(
            query_as::<Invoice>("SELECT * FROM billing_invoices WHERE receipt_token = $1")
                .bind(token)
                .fetch_optional(self.read())
                .await?,
        )
    }

    async fn invoice_qris_terminal(&self, merchant_id: &str) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = query_as(
            "SELECT t.id FROM terminals t JOIN outlets o ON o.id = t.outlet_id \
             WHERE o.merchant_id = $1 AND t.static_qris IS NOT NULL \
             ORDER BY t.created_at, t.id LIMIT 1",
        )
        .bind(merchant_id)
        .fetch_optional(self.read())
        .await?;
        Ok(row.map(|(id,)| id))
    }

    async fn settle_invoice_qris(
        &self,
        transaction_id: &str,
        today: &str,
    ) -> StoreResult<QrisSettled> {
        let mut tx = self.begin_write().await?;
        let link: Option<(String, String, i64)> = query_as(
            "SELECT p.invoice_id, t.status, t.amount FROM billing_invoice_payments p \
             JOIN transactions t ON t.id = p.transaction_id WHERE p.transaction_id = $1",
        )
        .bind(transaction_id)
        .fetch_optional(tx.exec())
        .await?;
        let Some((invoice_id, status, amount)) = link else {
            return Ok(QrisSettled::NotPaid);
        };
        let invoice = invoice_in(tx.exec(), &invoice_id, self.row_lock()).await?;
        if status != "paid" || amount != invoice.total_amount {
            return Ok(QrisSettled::NotPaid);
        }
        let seen: (i64,) = query_as(
            "SELECT COUNT(*) FROM billing_invoice_events WHERE invoice_id = $1 \
             AND transaction_id = $2 AND kind IN ('paid', 'paid_again')",
        )
        .bind(&invoice_id)
        .bind(transaction_id)
        .fetch_one(tx.exec())
        .await?;
        if seen.0 > 0 {
            return Ok(QrisSettled::Unchanged);
        }
        let actor = format!("payment:{transaction_id}");
        let outcome = if invoice.status == InvoiceStatus::Paid {
            invoice_event(
                tx.exec(),
                &invoice_id,
                "paid_again",
                Some(PaymentMethod::Qris.as_str()),
                Some("a QRIS payment arrived for an invoice already paid"),
                Some(transaction_id),
                &actor,
            )
            .await?;
            QrisSettled::AlreadyPaid(Box::new(invoice))
        } else {
            QrisSettled::Paid(Box::new(
                mark_paid(
                    self,
                    &mut tx,
                    &invoice,
                    Payment {
                        method: PaymentMethod::Qris,
                        note: None,
                        transaction_id: Some(transaction_id),
                        actor: &actor,
                        today,
                    },
                )
                .await?,
            ))
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn unsettled_invoice_qris(&self, limit: i64) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = query_as(
            "SELECT p.transaction_id FROM billing_invoice_payments p \
             JOIN transactions t ON t.id = p.transaction_id \
             WHERE t.status = 'paid' AND NOT EXISTS (SELECT 1 FROM billing_invoice_events e \
                 WHERE e.invoice_id = p.invoice_id AND e.transaction_id = p.transaction_id \
                 AND e.kind IN ('paid', 'paid_again')) \
             ORDER BY p.transaction_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.read())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn reminder_invoices(&self, due_date: &str) -> StoreResult<Vec<ReminderInvoice>> {
        Ok(query_as::<ReminderInvoice>(
            "SELECT i.id AS invoice_id, i.customer_id, c.name AS customer_name, c.phone, \
             i.merchant_id, i.period, i.package_name, i.total_amount, i.due_date, \
             i.receipt_token, EXISTS (SELECT 1 FROM terminals t \
             JOIN outlets o ON o.id = t.outlet_id \
             WHERE o.merchant_id = i.merchant_id AND t.static_qris IS NOT NULL) \
             AS payable_by_qris \
             FROM billing_invoices i JOIN billing_customers c ON c.id = i.customer_id \
             WHERE i.status = 'unpaid' AND i.due_date = $1 AND i.reminder_queued_at IS NULL \
             AND c.status <> 'stopped' ORDER BY i.customer_id, i.period, i.id",
        )
        .bind(due_date)
        .fetch_all(self.read())
        .await?)
    }

    async fn mark_reminders_queued(
        &self,
        invoice_ids: &[String],
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        if invoice_ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for id in invoice_ids {
            query("UPDATE billing_invoices SET reminder_queued_at = $2 WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(tx.exec())
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn auto_isolations(&self) -> StoreResult<Vec<AutoIsolation>> {
        Ok(query_as::<AutoIsolation>(
            "SELECT merchant_id, auto_isolate_days FROM billing_merchant_settings \
             WHERE auto_isolate_days IS NOT NULL ORDER BY merchant_id",
        )
        .fetch_all(self.read())
        .await?)
    }

    async fn overdue_customers(&self, merchant_id: &str, due_by: &str) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = query_as(
            "SELECT DISTINCT c.id FROM billing_customers c \
             JOIN billing_invoices i ON i.customer_id = c.id \
             WHERE c.merchant_id = $1 AND c.status = 'active' AND i.status = 'unpaid' \
             AND i.due_date <= $2 ORDER BY c.id",
        )
        .bind(merchant_id)
        .bind(due_by)
        .fetch_all(self.read())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn claim_billing_webhooks(
        &self,
        node: &str,
        now_ms: i64,
        claim_until_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedWebhook>> {
        let mut tx = self.begin_write().await?;
        let due: Vec<(String,)> = query_as(format!(
            "SELECT id FROM billing_webhooks WHERE status = 'pending' AND next_attempt_ms <= $1 \
             AND (claim_until_ms IS NULL OR claim_until_ms < $1) ORDER BY next_attempt_ms, id \
             LIMIT $2 {}",
            match self {
                Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
                Db::Sqlite(_) => "",
            }
        ))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(tx.exec())
        .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for (id,) in due {
            let webhook = query_as::<BillingWebhook>(
                "UPDATE billing_webhooks SET claimed_by = $2, claim_until_ms = $3, \
                 attempts = attempts + 1, updated_at = $4 WHERE id = $1 \
                 RETURNING id, merchant_id, customer_id, event, url, body, status, attempts, \
                 next_attempt_ms, last_error, delivered_at, created_at",
            )
            .bind(&id)
            .bind(node)
            .bind(claim_until_ms)
            .bind(now())
            .fetch_one(tx.exec())
            .await?;
            let secret: Option<(Option<String>,)> = query_as(
                "SELECT isolation_webhook_secret FROM billing_merchant_settings \
                 WHERE merchant_id = $1",
            )
            .bind(&webhook.merchant_id)
            .fetch_optional(tx.exec())
            .await?;
            claimed.push(ClaimedWebhook {
                webhook,
                secret: secret.and_then(|(s,)| s),
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish_billing_webhook(
        &self,
        id: &str,
        error: Option<&str>,
        next_attempt_ms: Option<i64>,
    ) -> StoreResult<()> {
        let at = now();
        let mut conn = self.write_conn().await?;
        let statement = match (error, next_attempt_ms) {
            (None, _) => query(
                "UPDATE billing_webhooks SET status = 'delivered', delivered_at = $2, \
                 claimed_by = NULL, claim_until_ms = NULL, last_error = NULL, updated_at = $2 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(at),
            (Some(error), Some(next)) => query(
                "UPDATE billing_webhooks SET next_attempt_ms = $3, last_error = $4, \
                 claimed_by = NULL, claim_until_ms = NULL, updated_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(at)
            .bind(next)
            .bind(error),
            (Some(error), None) => query(
                "UPDATE billing_webhooks SET status = 'failed', last_error = $3, \
                 claimed_by = NULL, claim_until_ms = NULL, updated_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(at)
            .bind(error),
        };
        statement.execute(conn.exec()).await?;
        Ok(())
    }

    async fn customer_webhooks(&self, customer_id: &str) -> StoreResult<Vec<BillingWebhook>> {
        Ok(query_as::<BillingWebhook>(
            "SELECT id, merchant_id, customer_id, event, url, body, status, attempts, \
             next_attempt_ms, last_error, delivered_at, created_at FROM billing_webhooks \
             WHERE customer_id = $1 ORDER BY id",
        )
        .bind(customer_id)
        .fetch_all(self.read())
        .await?)
    }

    async fn last_billing_run(&self) -> StoreResult<Option<String>> {
        let last: (Option<String>,) = query_as("SELECT MAX(run_date) FROM billing_runs")
            .fetch_one(self.read())
            .await?;
        Ok(last.0)
    }

    async fn record_billing_run(
        &self,
        run_date: &str,
        invoices: i64,
        isolated: i64,
        run_by: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = query(
            "INSERT INTO billing_runs (run_date, invoices, isolated, run_by, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_date) DO NOTHING",
        )
        .bind(run_date)
        .bind(invoices)
        .bind(isolated)
        .bind(run_by)
        .bind(now())
        .execute(tx.exec())
        .await?;
        tx.commit().await?;
        Ok(done == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_webhooks_debug_never_shows_its_signing_secret() {
        let claimed = ClaimedWebhook {
            webhook: BillingWebhook {
                id: "bwh_1".into(),
                merchant_id: "mer_1".into(),
                customer_id: "cus_1".into(),
                event: "customer.isolated".into(),
                url: "https://isp.example/hook".into(),
                body: "{}".into(),
                status: "pending".into(),
                attempts: 0,
                next_attempt_ms: 0,
                last_error: None,
                delivered_at: None,
                created_at: OffsetDateTime::UNIX_EPOCH,
            },
            secret: Some("whsec-do-not-print".into()),
        };
        let shown = format!("{claimed:?}");
        assert!(!shown.contains("whsec-do-not-print"), "{shown}");
        assert!(
            shown.contains("bwh_1") && shown.contains("<secret>"),
            "{shown}"
        );
    }
}
