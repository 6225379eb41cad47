//! Billing settings, billing finance and the billing exports' request: their JSON shapes.
//! The isolation webhook secret is write-only: requests may carry it (their `Debug` does
//! not show it), answers only say whether one is set.

use gema_gateway::billing::finance as gw;
use gema_store as store;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

/// Which invoice fields a receipt shows (all by default).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptFields {
    #[serde(default = "shown")]
    pub nik: bool,
    /// The seed's "area": the merchant's business name.
    #[serde(default = "shown")]
    pub area: bool,
    #[serde(default = "shown")]
    pub package: bool,
    #[serde(default = "shown")]
    pub discount: bool,
    #[serde(default = "shown")]
    pub method: bool,
}

fn shown() -> bool {
    true
}

impl Default for ReceiptFields {
    fn default() -> Self {
        ReceiptFields {
            nik: true,
            area: true,
            package: true,
            discount: true,
            method: true,
        }
    }
}

/// A merchant's billing settings. Never the webhook secret: `has_isolation_webhook_secret`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillingSettings {
    pub merchant_id: String,
    pub business_name: Option<String>,
    /// Shown on reminders: where to transfer.
    pub bank_details: Option<String>,
    pub has_logo: bool,
    pub logo_content_type: Option<String>,
    pub receipt_fields: ReceiptFields,
    /// Isolate a customer this many days after an unpaid invoice's due date; `null`: never.
    pub auto_isolate_days: Option<i64>,
    pub isolation_webhook_url: Option<String>,
    pub has_isolation_webhook_secret: bool,
    /// `null` while the merchant has only the defaults.
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
}

impl From<store::BillingMerchantSettings> for BillingSettings {
    fn from(s: store::BillingMerchantSettings) -> Self {
        BillingSettings {
            merchant_id: s.merchant_id,
            business_name: s.business_name,
            bank_details: s.bank_details,
            has_logo: s.has_logo,
            logo_content_type: s.logo_content_type,
            receipt_fields: ReceiptFields {
                nik: s.receipt_show_nik,
                area: s.receipt_show_area,
                package: s.receipt_show_package,
                discount: s.receipt_show_discount,
                method: s.receipt_show_method,
            },
            auto_isolate_days: s.auto_isolate_days,
            isolation_webhook_url: s.isolation_webhook_url,
            has_isolation_webhook_secret: s.has_isolation_webhook_secret,
            updated_at: s.updated_at,
        }
    }
}

/// Replaces a merchant's billing settings (not its logo: `PUT …/billing-logo`). The
/// isolation webhook secret is kept when the field is absent, removed when `null`, and
/// replaced by a string (16 to 256 bytes); it is never shown again.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutBillingSettings {
    pub business_name: Option<String>,
    pub bank_details: Option<String>,
    #[serde(default)]
    pub receipt_fields: ReceiptFields,
    /// 1 to 365, or `null` for never.
    pub auto_isolate_days: Option<i64>,
    /// `https://…`, or `http://` to a loopback or private address.
    pub isolation_webhook_url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, write_only)]
    pub isolation_webhook_secret: Option<Option<String>>,
}

/// `Some(value)` for a field that is present (`Some(None)` when `null`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl std::fmt::Debug for PutBillingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutBillingSettings")
            .field("business_name", &self.business_name)
            .field("receipt_fields", &self.receipt_fields)
            .field("auto_isolate_days", &self.auto_isolate_days)
            .field("isolation_webhook_url", &self.isolation_webhook_url)
            .finish_non_exhaustive()
    }
}

impl From<PutBillingSettings> for store::NewBillingSettings {
    fn from(b: PutBillingSettings) -> Self {
        store::NewBillingSettings {
            business_name: b.business_name,
            bank_details: b.bank_details,
            receipt_show_nik: b.receipt_fields.nik,
            receipt_show_area: b.receipt_fields.area,
            receipt_show_package: b.receipt_fields.package,
            receipt_show_discount: b.receipt_fields.discount,
            receipt_show_method: b.receipt_fields.method,
            auto_isolate_days: b.auto_isolate_days,
            isolation_webhook_url: b.isolation_webhook_url,
            isolation_webhook_secret: match b.isolation_webhook_secret {
                None => store::SecretChange::Keep,
                Some(None) => store::SecretChange::Clear,
                Some(Some(secret)) => store::SecretChange::Set(secret),
            },
        }
    }
}

/// The finance routes' query: a merchant (operators; merchant users always see their own),
/// and at most one of `month`, `year`, `date`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FinanceQuery {
    pub merchant_id: Option<String>,
    /// `YYYY-MM`: invoices of that period (the default: this Jakarta month, for the summary).
    pub month: Option<String>,
    /// `YYYY`: invoices of that year's periods, with a per-month breakdown.
    pub year: Option<String>,
    /// `YYYY-MM-DD`: invoices due that day.
    pub date: Option<String>,
    /// The detail table only: `paid` or `unpaid`.
    pub status: Option<String>,
}

/// How many months a chart covers (1 to 36, default 12).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonthsQuery {
    pub merchant_id: Option<String>,
    pub months: Option<u32>,
}

/// One period's invoices. Amounts are integer rupiah.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeriodTotals {
    pub period: String,
    pub invoices: i64,
    pub billed: i64,
    pub paid_invoices: i64,
    pub paid: i64,
    pub unpaid_invoices: i64,
    pub unpaid: i64,
}

impl From<store::PeriodTotals> for PeriodTotals {
    fn from(t: store::PeriodTotals) -> Self {
        PeriodTotals {
            unpaid_invoices: t.invoices - t.paid_invoices,
            unpaid: t.billed - t.paid,
            period: t.period,
            invoices: t.invoices,
            billed: t.billed,
            paid_invoices: t.paid_invoices,
            paid: t.paid,
        }
    }
}

/// Billed, paid and unpaid for a month, a year or a due date.
#[derive(Debug, Serialize, ToSchema)]
pub struct FinanceSummary {
    /// `null`: every merchant.
    pub merchant_id: Option<String>,
    /// `2026-12`, `2026` or `2026-12-03`.
    pub period: String,
    pub active_customers: i64,
    pub invoices: i64,
    pub billed: i64,
    pub paid_invoices: i64,
    pub paid: i64,
    pub unpaid_invoices: i64,
    pub unpaid: i64,
    /// paid / billed in basis points (8750 = 87.50 %), rounded down.
    pub collected_basis_points: i64,
    /// The same with one decimal, for display: `"87.5"`.
    pub collected_percent: String,
    /// A year's twelve months; empty for a month or a date.
    pub months: Vec<PeriodTotals>,
}

impl From<gw::FinanceSummary> for FinanceSummary {
    fn from(s: gw::FinanceSummary) -> Self {
        FinanceSummary {
            merchant_id: s.merchant_id,
            period: s.period,
            active_customers: s.active_customers,
            invoices: s.invoices,
            billed: s.billed,
            paid_invoices: s.paid_invoices,
            paid: s.paid,
            unpaid_invoices: s.unpaid_invoices,
            unpaid: s.unpaid,
            collected_basis_points: s.collected_basis_points,
            collected_percent: s.collected_percent,
            months: s.months.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MonthRevenue {
    /// `YYYY-MM`, Asia/Jakarta.
    pub month: String,
    pub paid_invoices: i64,
    pub paid: i64,
}

/// What was paid per Jakarta month (by payment time), oldest first, zeros included.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revenue {
    pub merchant_id: Option<String>,
    pub months: Vec<MonthRevenue>,
}

impl Revenue {
    pub fn new(merchant_id: Option<String>, months: Vec<gw::MonthRevenue>) -> Self {
        Revenue {
            merchant_id,
            months: months
                .into_iter()
                .map(|m| MonthRevenue {
                    month: m.month,
                    paid_invoices: m.paid_invoices,
                    paid: m.paid,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MonthGrowth {
    pub month: String,
    /// Customers registered that month.
    pub new_customers: i64,
    /// Customers registered up to the end of that month.
    pub total_customers: i64,
}

/// New customers per month (by register date) and the running total, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerGrowth {
    pub merchant_id: Option<String>,
    pub months: Vec<MonthGrowth>,
}

impl CustomerGrowth {
    pub fn new(merchant_id: Option<String>, months: Vec<gw::MonthGrowth>) -> Self {
        CustomerGrowth {
            merchant_id,
            months: months
                .into_iter()
                .map(|m| MonthGrowth {
                    month: m.month,
                    new_customers: m.new_customers,
                    total_customers: m.total_customers,
                })
                .collect(),
        }
    }
}

/// A row of the finance detail table.
#[derive(Debug, Serialize, ToSchema)]
pub struct FinanceInvoice {
    pub id: String,
    pub merchant_id: String,
    pub customer_id: String,
    pub customer_name: String,
    pub period: String,
    pub due_date: String,
    pub package_name: String,
    pub total_amount: i64,
    /// `paid` or `unpaid`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub paid_at: Option<OffsetDateTime>,
    /// Who marked it paid (`api:<user>`, or `payment:<transaction>` for QRIS).
    pub paid_by: Option<String>,
    pub payment_method: Option<String>,
}

impl From<store::FinanceInvoice> for FinanceInvoice {
    fn from(r: store::FinanceInvoice) -> Self {
        FinanceInvoice {
            id: r.id,
            merchant_id: r.merchant_id,
            customer_id: r.customer_id,
            customer_name: r.customer_name,
            period: r.period,
            due_date: r.due_date,
            package_name: r.package_name,
            total_amount: r.total_amount,
            status: r.status.as_str().to_owned(),
            paid_at: r.paid_at,
            paid_by: r.paid_by,
            payment_method: r.payment_method,
        }
    }
}

/// One page of the detail table; pass `next_cursor` as `cursor` for the next.
#[derive(Debug, Serialize, ToSchema)]
pub struct FinanceInvoices {
    pub merchant_id: Option<String>,
    pub items: Vec<FinanceInvoice>,
    pub next_cursor: Option<String>,
}

/// A billing export's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingExportKind {
    BillingInvoices,
    BillingInvoicesXlsx,
}

impl From<BillingExportKind> for store::ExportKind {
    fn from(k: BillingExportKind) -> Self {
        match k {
            BillingExportKind::BillingInvoices => store::ExportKind::BillingInvoices,
            BillingExportKind::BillingInvoicesXlsx => store::ExportKind::BillingInvoicesXlsx,
        }
    }
}

/// Queues a billing invoice export (CSV, or XLSX), selected by invoice period
/// (`YYYY-MM`, both ends included) and merchant; the file ends with summary rows `TOTAL`,
/// `PAID`, `UNPAID`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBillingExport {
    pub kind: BillingExportKind,
    pub merchant_id: Option<String>,
    pub period_from: Option<String>,
    pub period_to: Option<String>,
}
