//! The customer CSV import: its query string and its report; the customer-data export's
//! request.

use gema_gateway::billing::import as gw;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// How the upload is handled.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// `dry_run` (check every row, write nothing) or `import` (write the valid rows in one
    /// transaction). Required: an upload never writes by default.
    pub mode: Option<String>,
    /// `true`: one invalid (or skipped) row and nothing is written. Default `false`.
    pub all_or_nothing: Option<bool>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    DryRun,
    Import,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    Valid,
    Invalid,
    Imported,
    /// Valid when checked, refused inside the import's transaction (`phone_taken`,
    /// `package_changed`).
    Skipped,
}

/// A rule a row breaks.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowProblem {
    /// `unreadable`, `missing_name`, `bad_name`, `bad_phone`, `phone_taken`,
    /// `duplicate_phone_in_file`, `unknown_area`, `ambiguous_area`, `unknown_package`,
    /// `inactive_package`, `price_mismatch`, `bad_number`, `bad_discount`,
    /// `total_mismatch`, `bad_billing_day`, `bad_nik`, `bad_register_date`,
    /// `package_changed`.
    pub code: String,
    /// The CSV column at fault (`line` for a line that cannot be read).
    pub field: String,
    pub message: String,
}

/// A valid row's values as written (phone normalised to `62…`, the merchant the area names).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportCustomer {
    pub merchant_id: String,
    pub package_id: String,
    pub name: String,
    pub phone: String,
    pub nik: Option<String>,
    pub billing_day: i64,
    /// Rupiah.
    pub discount: i64,
    /// The package's price, rupiah.
    pub price: i64,
    /// Price − discount, rupiah.
    pub total: i64,
    /// `YYYY-MM-DD`.
    pub register_date: String,
    /// Once imported.
    pub customer_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportRow {
    /// The file's line the row starts on (the header is line 1).
    pub line: i64,
    pub status: RowStatus,
    pub problems: Vec<RowProblem>,
    /// A valid row's values; `null` for an invalid one.
    pub customer: Option<ImportCustomer>,
}

/// What the upload found and, for an import, did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerImport {
    pub mode: ImportMode,
    pub all_or_nothing: bool,
    /// `imp_…`, once an import wrote (or tried to write): the imported customers'
    /// history events name it (`import:<id>`).
    pub import_id: Option<String>,
    /// Data rows in the file.
    pub rows: usize,
    pub valid: usize,
    pub invalid: usize,
    pub imported: usize,
    pub skipped: usize,
    /// A dry run: every row. An import: the rows not imported.
    pub results: Vec<ImportRow>,
}

impl From<gw::ImportReport> for CustomerImport {
    fn from(r: gw::ImportReport) -> Self {
        CustomerImport {
            mode: match r.mode {
                gw::ImportMode::DryRun => ImportMode::DryRun,
                gw::ImportMode::Import => ImportMode::Import,
            },
            all_or_nothing: r.all_or_nothing,
            import_id: r.import_id,
            rows: r.rows,
            valid: r.valid,
            invalid: r.invalid,
            imported: r.imported,
            skipped: r.skipped,
            results: r.results.into_iter().map(ImportRow::from).collect(),
        }
    }
}

impl From<gw::ImportRow> for ImportRow {
    fn from(r: gw::ImportRow) -> Self {
        ImportRow {
            line: r.line,
            status: match r.status {
                gw::RowStatus::Valid => RowStatus::Valid,
                gw::RowStatus::Invalid => RowStatus::Invalid,
                gw::RowStatus::Imported => RowStatus::Imported,
                gw::RowStatus::Skipped => RowStatus::Skipped,
            },
            problems: r
                .problems
                .into_iter()
                .map(|p| RowProblem {
                    code: p.code.into(),
                    field: p.field.into(),
                    message: p.message,
                })
                .collect(),
            customer: r.customer.map(|c| ImportCustomer {
                merchant_id: c.merchant_id,
                package_id: c.package_id,
                name: c.name,
                phone: c.phone,
                nik: c.nik,
                billing_day: c.billing_day,
                discount: c.discount,
                price: c.price,
                total: c.total,
                register_date: c.register_date,
                customer_id: c.customer_id,
            }),
        }
    }
}

impl CustomerImport {
    /// What the audit row keeps of an import: the counts and the id, never the rows (a
    /// file's worth of names and phones).
    pub fn audit_summary(&self, bytes: usize) -> serde_json::Value {
        serde_json::json!({
            "mode": self.mode,
            "all_or_nothing": self.all_or_nothing,
            "import_id": self.import_id,
            "file_bytes": bytes,
            "rows": self.rows,
            "valid": self.valid,
            "invalid": self.invalid,
            "imported": self.imported,
            "skipped": self.skipped,
        })
    }
}

/// Queues a customer-data export (an export job of kind `billing_customers`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomerExport {
    /// Only this merchant's customers; default: every merchant's.
    pub merchant_id: Option<String>,
}
