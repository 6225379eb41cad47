//! Export jobs: the request that queues one, a job as the API shows it, and the list's
//! query.

use gema_store as store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::payments::TransactionStatus;
use super::timestamps::instant;

/// What an export contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    LedgerEntries,
    Transactions,
    SettlementAdjustments,
    /// One reconciliation run's rows (`run_id` required).
    ReconciliationRows,
    /// Billing invoices by period (`period_from`, `period_to`), with summary rows.
    BillingInvoices,
    /// The same as an XLSX workbook.
    BillingInvoicesXlsx,
    /// Billing customers with their package and area (only `merchant_id`); needs the
    /// billing-management permission as well as export jobs'.
    BillingCustomers,
}

impl From<ExportKind> for store::ExportKind {
    fn from(k: ExportKind) -> Self {
        match k {
            ExportKind::LedgerEntries => store::ExportKind::LedgerEntries,
            ExportKind::Transactions => store::ExportKind::Transactions,
            ExportKind::SettlementAdjustments => store::ExportKind::SettlementAdjustments,
            ExportKind::ReconciliationRows => store::ExportKind::ReconciliationRows,
            ExportKind::BillingInvoices => store::ExportKind::BillingInvoices,
            ExportKind::BillingInvoicesXlsx => store::ExportKind::BillingInvoicesXlsx,
            ExportKind::BillingCustomers => store::ExportKind::BillingCustomers,
        }
    }
}

impl From<store::ExportKind> for ExportKind {
    fn from(k: store::ExportKind) -> Self {
        match k {
            store::ExportKind::LedgerEntries => ExportKind::LedgerEntries,
            store::ExportKind::Transactions => ExportKind::Transactions,
            store::ExportKind::SettlementAdjustments => ExportKind::SettlementAdjustments,
            store::ExportKind::ReconciliationRows => ExportKind::ReconciliationRows,
            store::ExportKind::BillingInvoices => ExportKind::BillingInvoices,
            store::ExportKind::BillingInvoicesXlsx => ExportKind::BillingInvoicesXlsx,
            store::ExportKind::BillingCustomers => ExportKind::BillingCustomers,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LedgerEntryType {
    GrossIncome,
    PlatformFee,
    MerchantPayable,
    PayableAdjustment,
    MerchantHeld,
}

impl From<LedgerEntryType> for store::LedgerEntryType {
    fn from(t: LedgerEntryType) -> Self {
        match t {
            LedgerEntryType::GrossIncome => store::LedgerEntryType::GrossIncome,
            LedgerEntryType::PlatformFee => store::LedgerEntryType::PlatformFee,
            LedgerEntryType::MerchantPayable => store::LedgerEntryType::MerchantPayable,
            LedgerEntryType::PayableAdjustment => store::LedgerEntryType::PayableAdjustment,
            LedgerEntryType::MerchantHeld => store::LedgerEntryType::MerchantHeld,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    Queued,
    Running,
    Done,
    Failed,
    Expired,
}

impl From<store::ExportStatus> for ExportStatus {
    fn from(s: store::ExportStatus) -> Self {
        match s {
            store::ExportStatus::Queued => ExportStatus::Queued,
            store::ExportStatus::Running => ExportStatus::Running,
            store::ExportStatus::Done => ExportStatus::Done,
            store::ExportStatus::Failed => ExportStatus::Failed,
            store::ExportStatus::Expired => ExportStatus::Expired,
        }
    }
}

impl From<ExportStatus> for store::ExportStatus {
    fn from(s: ExportStatus) -> Self {
        match s {
            ExportStatus::Queued => store::ExportStatus::Queued,
            ExportStatus::Running => store::ExportStatus::Running,
            ExportStatus::Done => store::ExportStatus::Done,
            ExportStatus::Failed => store::ExportStatus::Failed,
            ExportStatus::Expired => store::ExportStatus::Expired,
        }
    }
}

/// Queues an export. Rows are selected by when they were created: `from` inclusive, `to`
/// exclusive (RFC 3339). `status` only for transactions, `entry_type` only for ledger
/// entries, `adjustment_type` (`hold`, `release`, `fee_correction`, `chargeback`,
/// `manual`) only for settlement adjustments; `run_id` (required) and `outcome` only for
/// reconciliation rows, which take no other filter; `period_from` and `period_to`
/// (`YYYY-MM`, both included) only for billing invoices, which take no time range.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExport {
    pub kind: ExportKind,
    pub merchant_id: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    pub status: Option<TransactionStatus>,
    pub entry_type: Option<LedgerEntryType>,
    pub adjustment_type: Option<String>,
    pub run_id: Option<String>,
    /// `matched`, `amount_mismatch`, `status_mismatch`, `missing_in_gema`,
    /// `missing_in_report` or `malformed`.
    pub outcome: Option<String>,
    pub period_from: Option<String>,
    pub period_to: Option<String>,
}

/// The filters a job was made with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportFilters {
    pub merchant_id: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    pub status: Option<String>,
    pub entry_type: Option<String>,
    pub adjustment_type: Option<String>,
    pub run_id: Option<String>,
    pub outcome: Option<String>,
    pub period_from: Option<String>,
    pub period_to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportJob {
    pub id: String,
    pub kind: ExportKind,
    pub filters: ExportFilters,
    pub status: ExportStatus,
    /// Rows written so far (all of them once done).
    pub rows_done: i64,
    /// Rows the export selects; `null` until the worker has counted them.
    pub rows_total: Option<i64>,
    /// The CSV file's size once done.
    pub file_bytes: Option<i64>,
    /// Who asked for it (the audit actor).
    pub created_by: String,
    /// Why it failed.
    pub error: Option<String>,
    /// How many times a node started it (more than one after an interruption).
    pub attempts: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// When a done job's file is deleted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl From<store::ExportJob> for ExportJob {
    fn from(j: store::ExportJob) -> Self {
        let filter = j.filter().unwrap_or_default();
        ExportJob {
            kind: j.kind.into(),
            filters: ExportFilters {
                merchant_id: filter.merchant_id,
                from: filter.from,
                to: filter.to,
                status: filter.status.map(|s| s.as_str().into()),
                entry_type: filter.entry_type.map(|t| t.as_str().into()),
                adjustment_type: filter.adjustment_type.map(|t| t.as_str().into()),
                run_id: filter.run_id,
                outcome: filter.outcome.map(|o| o.as_str().into()),
                period_from: filter.period_from,
                period_to: filter.period_to,
            },
            status: j.status.into(),
            rows_done: j.rows_done,
            rows_total: j.rows_total,
            file_bytes: j.file_bytes,
            created_by: j.created_by,
            error: j.error,
            attempts: j.attempts,
            created_at: j.created_at,
            finished_at: j.finished_at_ms.map(instant),
            expires_at: j.expires_at_ms.map(instant),
            id: j.id,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    pub status: Option<ExportStatus>,
}
