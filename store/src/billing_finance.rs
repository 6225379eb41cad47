//! A merchant's billing settings (business name, bank details, logo, receipt fields, the
//! isolation settings), the public receipt's lookup by token, and billing finance: totals
//! per period, paid amounts in a time range, customer growth, and the invoice detail table
//! (also read, in pages, by the billing export jobs).
//!
//! The isolation webhook secret is written here and never read back: the settings record
//! only says whether one is set; the isolation code (`billing.rs`) reads it with its own
//! query. The logo's bytes are read only by [`BillingFinanceStore::billing_logo`] and
//! [`BillingFinanceStore::receipt_logo`], never with the settings.
//!
//! A receipt is found by its token through the unique index, and only for a paid invoice:
//! an unknown token and an unpaid invoice's both answer `None`.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::billing::InvoiceStatus;
use crate::db::{Param, query, query_as};
use crate::settlement::merchant_exists;
use crate::{Db, Page, PageRequest, StoreResult};

/// A merchant's billing settings as shown: never the webhook secret, never the logo bytes.
/// A merchant without a row has the defaults (every receipt field shown, nothing else set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BillingMerchantSettings {
    pub merchant_id: String,
    pub business_name: Option<String>,
    pub bank_details: Option<String>,
    pub has_logo: bool,
    pub logo_content_type: Option<String>,
    pub receipt_show_nik: bool,
    pub receipt_show_area: bool,
    pub receipt_show_package: bool,
    pub receipt_show_discount: bool,
    pub receipt_show_method: bool,
    pub auto_isolate_days: Option<i64>,
    pub isolation_webhook_url: Option<String>,
    pub has_isolation_webhook_secret: bool,
    /// `None` while the merchant has no settings row.
    pub updated_at: Option<OffsetDateTime>,
}

impl BillingMerchantSettings {
    fn defaults(merchant_id: &str) -> Self {
        BillingMerchantSettings {
            merchant_id: merchant_id.to_owned(),
            business_name: None,
            bank_details: None,
            has_logo: false,
            logo_content_type: None,
            receipt_show_nik: true,
            receipt_show_area: true,
            receipt_show_package: true,
            receipt_show_discount: true,
            receipt_show_method: true,
            auto_isolate_days: None,
            isolation_webhook_url: None,
            has_isolation_webhook_secret: false,
            updated_at: None,
        }
    }
}

/// What happens to the stored isolation webhook secret on a settings write.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum SecretChange {
    #[default]
    Keep,
    Clear,
    Set(String),
}

impl std::fmt::Debug for SecretChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretChange::Keep => f.write_str("Keep"),
            SecretChange::Clear => f.write_str("Clear"),
            SecretChange::Set(_) => f.write_str("Set(<redacted>)"),
        }
    }
}

/// A settings write: every field replaced but the logo (its own routes) and the secret
/// (kept unless changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBillingSettings {
    pub business_name: Option<String>,
    pub bank_details: Option<String>,
    pub receipt_show_nik: bool,
    pub receipt_show_area: bool,
    pub receipt_show_package: bool,
    pub receipt_show_discount: bool,
    pub receipt_show_method: bool,
    pub auto_isolate_days: Option<i64>,
    pub isolation_webhook_url: Option<String>,
    pub isolation_webhook_secret: SecretChange,
}

/// A stored logo.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BillingLogo {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// What a receipt shows, read for a paid invoice by its token. The merchant's toggles come
/// with it (their defaults when it has no settings); the gateway drops what they hide.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReceiptRecord {
    pub invoice_id: String,
    pub merchant_id: String,
    pub merchant_name: String,
    pub business_name: Option<String>,
    pub has_logo: bool,
    pub customer_name: String,
    pub nik: Option<String>,
    /// `YYYY-MM`.
    pub period: String,
    pub package_name: String,
    pub amount: i64,
    pub discount: i64,
    pub total_amount: i64,
    pub paid_at: Option<OffsetDateTime>,
    pub payment_method: Option<String>,
    pub show_nik: bool,
    pub show_area: bool,
    pub show_package: bool,
    pub show_discount: bool,
    pub show_method: bool,
}

/// Which invoices a finance figure counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceSelection {
    /// Invoices whose period is in `from..=to` (`YYYY-MM`).
    Periods { from: String, to: String },
    /// Invoices due on this day (`YYYY-MM-DD`).
    DueDate(String),
}

/// One period's invoices: counts and sums of `total_amount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PeriodTotals {
    pub period: String,
    pub invoices: i64,
    pub billed: i64,
    pub paid_invoices: i64,
    pub paid: i64,
}

/// New customers in one month (`YYYY-MM`, by register date).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct MonthCount {
    pub month: String,
    pub count: i64,
}

/// Which invoices the detail table (and the billing exports) list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinanceInvoiceFilter {
    pub merchant_id: Option<String>,
    pub selection: Option<InvoiceSelection>,
    pub status: Option<InvoiceStatus>,
}

/// A row of the finance detail table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct FinanceInvoice {
    pub id: String,
    pub merchant_id: String,
    pub customer_id: String,
    pub customer_name: String,
    pub period: String,
    pub due_date: String,
    pub package_name: String,
    pub total_amount: i64,
    #[sqlx(try_from = "String")]
    pub status: InvoiceStatus,
    pub paid_at: Option<OffsetDateTime>,
    pub paid_by: Option<String>,
    pub payment_method: Option<String>,
}

/// Rows for tests: a customer (and its package, made if no package has its name) and,
/// optionally, one invoice of it. Not a domain write: invoices are made by the billing
/// run and paid by the pay flows.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct BillingFixture {
    pub merchant_id: String,
    pub customer_name: String,
    pub nik: Option<String>,
    pub register_date: String,
    pub customer_status: &'static str,
    pub package_name: String,
    pub price: i64,
    pub discount: i64,
    pub invoice: Option<InvoiceFixture>,
}

#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct InvoiceFixture {
    pub period: String,
    pub due_date: String,
    pub receipt_token: String,
    /// When, how and by whom it was paid; `None`: unpaid.
    pub paid: Option<(OffsetDateTime, &'static str, String)>,
}

/// Billing settings, receipts and finance reads.
#[async_trait]
pub trait BillingFinanceStore: Send + Sync {
    /// `NotFound` for an unknown merchant; the defaults for one without settings.
    async fn billing_settings(&self, merchant_id: &str) -> StoreResult<BillingMerchantSettings>;
    async fn put_billing_settings(
        &self,
        merchant_id: &str,
        settings: NewBillingSettings,
    ) -> StoreResult<BillingMerchantSettings>;
    async fn put_billing_logo(
        &self,
        merchant_id: &str,
        logo: BillingLogo,
    ) -> StoreResult<BillingMerchantSettings>;
    /// `false` when there was no logo.
    async fn delete_billing_logo(&self, merchant_id: &str) -> StoreResult<bool>;
    async fn billing_logo(&self, merchant_id: &str) -> StoreResult<Option<BillingLogo>>;
    /// A paid invoice's receipt by its token; `None` for an unknown token or an unpaid
    /// invoice alike.
    async fn receipt(&self, token: &str) -> StoreResult<Option<ReceiptRecord>>;
    /// The logo shown on a paid invoice's receipt.
    async fn receipt_logo(&self, token: &str) -> StoreResult<Option<BillingLogo>>;

    /// Totals per period of the selected invoices, in period order.
    async fn billing_period_totals(
        &self,
        merchant_id: Option<&str>,
        selection: &InvoiceSelection,
    ) -> StoreResult<Vec<PeriodTotals>>;
    async fn count_active_billing_customers(&self, merchant_id: Option<&str>) -> StoreResult<i64>;
    /// (count, amount) of invoices paid in `[from, to)`.
    async fn billing_paid_between(
        &self,
        merchant_id: Option<&str>,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<(i64, i64)>;
    /// Customers registered before `from` (`YYYY-MM-DD`), and those registered from then on
    /// per month.
    async fn billing_customer_growth(
        &self,
        merchant_id: Option<&str>,
        from: &str,
    ) -> StoreResult<(i64, Vec<MonthCount>)>;
    /// The detail table, by invoice id.
    async fn billing_finance_invoices(
        &self,
        filter: &FinanceInvoiceFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<FinanceInvoice>>;

    /// Test rows; see [`BillingFixture`]. Returns (customer id, invoice id).
    #[doc(hidden)]
    async fn seed_billing_fixture(
        &self,
        fixture: BillingFixture,
    ) -> StoreResult<(String, Option<String>)>;
}

const SETTINGS_COLUMNS: &str = "merchant_id, business_name, bank_details, \
    logo IS NOT NULL AS has_logo, logo_content_type, receipt_show_nik, receipt_show_area, \
    receipt_show_package, receipt_show_discount, receipt_show_method, auto_isolate_days, \
    isolation_webhook_url, isolation_webhook_secret IS NOT NULL AS has_isolation_webhook_secret, \
    updated_at";

/// The conditions of an invoice selection on `billing_invoices` as `alias`, numbered after
/// `params`.
fn selection_conditions<'a>(
    alias: &str,
    merchant_id: Option<&'a str>,
    selection: Option<&'a InvoiceSelection>,
    params: &mut Vec<Param<'a>>,
) -> Vec<String> {
    let mut conditions = Vec::new();
    let mut add = |condition: String, param: Param<'a>, params: &mut Vec<Param<'a>>| {
        params.push(param);
        conditions.push(format!("{condition} ${}", params.len()));
    };
    if let Some(merchant) = merchant_id {
        add(format!("{alias}.merchant_id ="), merchant.into(), params);
    }
    match selection {
        Some(InvoiceSelection::Periods { from, to }) => {
            add(format!("{alias}.period >="), from.into(), params);
            add(format!("{alias}.period <="), to.into(), params);
        }
        Some(InvoiceSelection::DueDate(day)) => {
            add(format!("{alias}.due_date ="), day.into(), params);
        }
        None => {}
    }
    conditions
}

fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// A page of the detail table after the invoice id `after` (the export jobs read it too).
pub(crate) async fn finance_invoices_page(
    db: &Db,
    filter: &FinanceInvoiceFilter,
    after: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<FinanceInvoice>> {
    let mut params = Vec::new();
    let mut conditions = selection_conditions(
        "i",
        filter.merchant_id.as_deref(),
        filter.selection.as_ref(),
        &mut params,
    );
    if let Some(status) = filter.status {
        params.push(status.as_str().into());
        conditions.push(format!("i.status = ${}", params.len()));
    }
    if let Some(after) = after {
        params.push(after.into());
        conditions.push(format!("i.id > ${}", params.len()));
    }
    params.push(limit.into());
    let sql = format!(
        "SELECT i.id, i.merchant_id, i.customer_id, c.name AS customer_name, i.period, \
         i.due_date, i.package_name, i.total_amount, i.status, i.paid_at, i.paid_by, \
         i.payment_method FROM billing_invoices i \
         JOIN billing_customers c ON c.id = i.customer_id{} ORDER BY i.id LIMIT ${}",
        where_clause(&conditions),
        params.len()
    );
    Ok(query_as::<FinanceInvoice>(sql)
        .bind_all(params)
        .fetch_all(db.read())
        .await?)
}

#[async_trait]
impl BillingFinanceStore for Db {
    async fn billing_settings(&self, merchant_id: &str) -> StoreResult<BillingMerchantSettings> {
        let mut tx = self.begin_read().await?;
        merchant_exists(&mut tx, merchant_id).await?;
        let row = query_as::<BillingMerchantSettings>(format!(
            "SELECT {SETTINGS_COLUMNS} FROM billing_merchant_settings WHERE merchant_id = $1"
        ))
        .bind(merchant_id)
        .fetch_optional(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(row.unwrap_or_else(|| BillingMerchantSettings::defaults(merchant_id)))
    }

    async fn put_billing_settings(
        &self,
        merchant_id: &str,
        s: NewBillingSettings,
    ) -> StoreResult<BillingMerchantSettings> {
        let (keep_secret, secret) = match s.isolation_webhook_secret {
            SecretChange::Keep => (true, None),
            SecretChange::Clear => (false, None),
            SecretChange::Set(secret) => (false, Some(secret)),
        };
        let mut tx = self.begin_write().await?;
        merchant_exists(&mut tx, merchant_id).await?;
        let row = query_as::<BillingMerchantSettings>(format!(
            "INSERT INTO billing_merchant_settings (merchant_id, business_name, bank_details, \
             receipt_show_nik, receipt_show_area, receipt_show_package, receipt_show_discount, \
             receipt_show_method, auto_isolate_days, isolation_webhook_url, \
             isolation_webhook_secret, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (merchant_id) DO UPDATE SET business_name = excluded.business_name, \
             bank_details = excluded.bank_details, receipt_show_nik = excluded.receipt_show_nik, \
             receipt_show_area = excluded.receipt_show_area, \
             receipt_show_package = excluded.receipt_show_package, \
             receipt_show_discount = excluded.receipt_show_discount, \
             receipt_show_method = excluded.receipt_show_method, \
             auto_isolate_days = excluded.auto_isolate_days, \
             isolation_webhook_url = excluded.isolation_webhook_url, \
             isolation_webhook_secret = CASE WHEN $13 \
             THEN billing_merchant_settings.isolation_webhook_secret \
             ELSE excluded.isolation_webhook_secret END, \
             updated_at = excluded.updated_at RETURNING {SETTINGS_COLUMNS}"
        ))
        .bind(merchant_id)
        .bind(s.business_name)
        .bind(s.bank_details)
        .bind(s.receipt_show_nik)
        .bind(s.receipt_show_area)
        .bind(s.receipt_show_package)
        .bind(s.receipt_show_discount)
        .bind(s.receipt_show_method)
        .bind(s.auto_isolate_days)
        .bind(s.isolation_webhook_url)
        .bind(secret)
        .bind(crate::sql::now())
        .bind(keep_secret)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn put_billing_logo(
        &self,
        merchant_id: &str,
        logo: BillingLogo,
    ) -> StoreResult<BillingMerchantSettings> {
        let mut tx = self.begin_write().await?;
        merchant_exists(&mut tx, merchant_id).await?;
        let row = query_as::<BillingMerchantSettings>(format!(
            "INSERT INTO billing_merchant_settings (merchant_id, logo, logo_content_type, \
             receipt_show_nik, receipt_show_area, receipt_show_package, receipt_show_discount, \
             receipt_show_method, updated_at) \
             VALUES ($1, $2, $3, TRUE, TRUE, TRUE, TRUE, TRUE, $4) \
             ON CONFLICT (merchant_id) DO UPDATE SET logo = excluded.logo, \
             logo_content_type = excluded.logo_content_type, updated_at = excluded.updated_at \
             RETURNING {SETTINGS_COLUMNS}"
        ))
        .bind(merchant_id)
        .bind(logo.bytes)
        .bind(logo.content_type)
        .bind(crate::sql::now())
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn delete_billing_logo(&self, merchant_id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        merchant_exists(&mut tx, merchant_id).await?;
        let changed = query(
            "UPDATE billing_merchant_settings SET logo = NULL, logo_content_type = NULL, \
             updated_at = $2 WHERE merchant_id = $1 AND logo IS NOT NULL",
        )
        .bind(merchant_id)
        .bind(crate::sql::now())
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(changed == 1)
    }

    async fn billing_logo(&self, merchant_id: &str) -> StoreResult<Option<BillingLogo>> {
        Ok(query_as::<BillingLogo>(
            "SELECT logo_content_type AS content_type, logo AS bytes \
             FROM billing_merchant_settings WHERE merchant_id = $1 AND logo IS NOT NULL \
             AND logo_content_type IS NOT NULL",
        )
        .bind(merchant_id)
        .fetch_optional(self.read())
        .await?)
    }

    async fn receipt(&self, token: &str) -> StoreResult<Option<ReceiptRecord>> {
        Ok(query_as::<ReceiptRecord>(
            "SELECT i.id AS invoice_id, i.merchant_id, m.name AS merchant_name, \
             s.business_name, COALESCE(s.logo IS NOT NULL, FALSE) AS has_logo, \
             c.name AS customer_name, c.nik, i.period, i.package_name, i.amount, i.discount, \
             i.total_amount, i.paid_at, i.payment_method, \
             COALESCE(s.receipt_show_nik, TRUE) AS show_nik, \
             COALESCE(s.receipt_show_area, TRUE) AS show_area, \
             COALESCE(s.receipt_show_package, TRUE) AS show_package, \
             COALESCE(s.receipt_show_discount, TRUE) AS show_discount, \
             COALESCE(s.receipt_show_method, TRUE) AS show_method \
             FROM billing_invoices i \
             JOIN billing_customers c ON c.id = i.customer_id \
             JOIN merchants m ON m.id = i.merchant_id \
             LEFT JOIN billing_merchant_settings s ON s.merchant_id = i.merchant_id \
             WHERE i.receipt_token = $1 AND i.status = 'paid'",
        )
        .bind(token)
        .fetch_optional(self.read())
        .await?)
    }

    async fn receipt_logo(&self, token: &str) -> StoreResult<Option<BillingLogo>> {
        Ok(query_as::<BillingLogo>(
            "SELECT s.logo_content_type AS content_type, s.logo AS bytes \
             FROM billing_invoices i \
             JOIN billing_merchant_settings s ON s.merchant_id = i.merchant_id \
             WHERE i.receipt_token = $1 AND i.status = 'paid' AND s.logo IS NOT NULL \
             AND s.logo_content_type IS NOT NULL",
        )
        .bind(token)
        .fetch_optional(self.read())
        .await?)
    }

    async fn billing_period_totals(
        &self,
        merchant_id: Option<&str>,
        selection: &InvoiceSelection,
    ) -> StoreResult<Vec<PeriodTotals>> {
        let mut params = Vec::new();
        let conditions = selection_conditions("i", merchant_id, Some(selection), &mut params);
        let sql = format!(
            "SELECT i.period, COUNT(*) AS invoices, \
             CAST(COALESCE(SUM(i.total_amount), 0) AS BIGINT) AS billed, \
             CAST(COALESCE(SUM(CASE WHEN i.status = 'paid' THEN 1 ELSE 0 END), 0) AS BIGINT) \
             AS paid_invoices, \
             CAST(COALESCE(SUM(CASE WHEN i.status = 'paid' THEN i.total_amount ELSE 0 END), 0) \
             AS BIGINT) AS paid \
             FROM billing_invoices i{} GROUP BY i.period ORDER BY i.period",
            where_clause(&conditions)
        );
        Ok(query_as::<PeriodTotals>(sql)
            .bind_all(params)
            .fetch_all(self.read())
            .await?)
    }

    async fn count_active_billing_customers(&self, merchant_id: Option<&str>) -> StoreResult<i64> {
        let (count,): (i64,) = match merchant_id {
            Some(merchant) => {
                query_as(
                    "SELECT COUNT(*) FROM billing_customers \
                     WHERE merchant_id = $1 AND status = 'active'",
                )
                .bind(merchant)
                .fetch_one(self.read())
                .await?
            }
            None => {
                query_as("SELECT COUNT(*) FROM billing_customers WHERE status = 'active'")
                    .fetch_one(self.read())
                    .await?
            }
        };
        Ok(count)
    }

    async fn billing_paid_between(
        &self,
        merchant_id: Option<&str>,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<(i64, i64)> {
        // In UTC, as every instant is written: SQLite compares the text.
        let utc = time::UtcOffset::UTC;
        let mut params: Vec<Param<'_>> = vec![from.to_offset(utc).into(), to.to_offset(utc).into()];
        let mut sql = String::from(
            "SELECT COUNT(*), CAST(COALESCE(SUM(total_amount), 0) AS BIGINT) \
             FROM billing_invoices WHERE status = 'paid' AND paid_at >= $1 AND paid_at < $2",
        );
        if let Some(merchant) = merchant_id {
            params.push(merchant.into());
            sql.push_str(" AND merchant_id = $3");
        }
        let (count, amount): (i64, i64) = query_as(sql)
            .bind_all(params)
            .fetch_one(self.read())
            .await?;
        Ok((count, amount))
    }

    async fn billing_customer_growth(
        &self,
        merchant_id: Option<&str>,
        from: &str,
    ) -> StoreResult<(i64, Vec<MonthCount>)> {
        let merchant = if merchant_id.is_some() {
            " AND merchant_id = $2"
        } else {
            ""
        };
        let params = || {
            let mut params: Vec<Param<'_>> = vec![from.into()];
            if let Some(merchant) = merchant_id {
                params.push(merchant.into());
            }
            params
        };
        let mut tx = self.begin_read().await?;
        let (before,): (i64,) = query_as(format!(
            "SELECT COUNT(*) FROM billing_customers WHERE register_date < $1{merchant}"
        ))
        .bind_all(params())
        .fetch_one(&mut tx)
        .await?;
        let months = query_as::<MonthCount>(format!(
            "SELECT substr(register_date, 1, 7) AS month, COUNT(*) AS count \
             FROM billing_customers WHERE register_date >= $1{merchant} \
             GROUP BY substr(register_date, 1, 7) ORDER BY month"
        ))
        .bind_all(params())
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        Ok((before, months))
    }

    async fn billing_finance_invoices(
        &self,
        filter: &FinanceInvoiceFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<FinanceInvoice>> {
        let rows = finance_invoices_page(
            self,
            filter,
            page.after.as_deref(),
            crate::sql::fetch_limit(page.limit),
        )
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |r| &r.id))
    }

    async fn seed_billing_fixture(
        &self,
        f: BillingFixture,
    ) -> StoreResult<(String, Option<String>)> {
        let now = crate::sql::now();
        let mut tx = self.begin_write().await?;
        let existing: Option<(String,)> =
            query_as("SELECT id FROM billing_packages WHERE name = $1")
                .bind(&f.package_name)
                .fetch_optional(&mut tx)
                .await?;
        let package_id = match existing {
            Some((id,)) => id,
            None => {
                let id = crate::sql::new_id("bpk");
                query(
                    "INSERT INTO billing_packages (id, name, price, active, created_at, \
                     updated_at) VALUES ($1, $2, $3, TRUE, $4, $4)",
                )
                .bind(&id)
                .bind(&f.package_name)
                .bind(f.price)
                .bind(now)
                .execute(&mut tx)
                .await?;
                id
            }
        };
        let customer_id = crate::sql::new_id("bcu");
        // A phone unique within the merchant, made from the id's random tail.
        let digits: String = customer_id
            .bytes()
            .rev()
            .take(10)
            .map(|b| char::from(b'0' + b % 10))
            .collect();
        query(
            "INSERT INTO billing_customers (id, merchant_id, package_id, name, phone, nik, \
             billing_day, discount, status, register_date, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $10, $10)",
        )
        .bind(&customer_id)
        .bind(&f.merchant_id)
        .bind(&package_id)
        .bind(&f.customer_name)
        .bind(format!("628{digits}"))
        .bind(f.nik.clone())
        .bind(f.discount)
        .bind(f.customer_status)
        .bind(&f.register_date)
        .bind(now)
        .execute(&mut tx)
        .await?;
        let invoice_id = match f.invoice {
            None => None,
            Some(invoice) => {
                let id = crate::sql::new_id("binv");
                let (status, paid_at, method, paid_by) = match invoice.paid {
                    Some((at, method, by)) => ("paid", Some(at), Some(method), Some(by)),
                    None => ("unpaid", None, None, None),
                };
                query(
                    "INSERT INTO billing_invoices (id, customer_id, merchant_id, period, \
                     package_id, package_name, amount, discount, total_amount, status, \
                     due_date, paid_at, paid_by, payment_method, receipt_token, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                     $13, $14, $15, $16, $16)",
                )
                .bind(&id)
                .bind(&customer_id)
                .bind(&f.merchant_id)
                .bind(&invoice.period)
                .bind(&package_id)
                .bind(&f.package_name)
                .bind(f.price)
                .bind(f.discount)
                .bind(crate::billing::customer_total(f.price, f.discount))
                .bind(status)
                .bind(&invoice.due_date)
                .bind(paid_at)
                .bind(paid_by)
                .bind(method)
                .bind(&invoice.receipt_token)
                .bind(now)
                .execute(&mut tx)
                .await?;
                Some(id)
            }
        };
        tx.commit().await?;
        Ok((customer_id, invoice_id))
    }
}
