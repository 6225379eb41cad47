//! Reconciliation runs and their rows; the upload's query string; the rows' CSV line.

use gema_gateway::reconciliation::ColumnMapping;
use gema_store as store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

/// How the report is read and what it is compared with. `format` defaults to the
/// provider's own (`midtrans`, `xendit`), else `generic`, which needs the `*_column`
/// parameters (header names): `amount_column`, `status_column`, and `order_id_column` or
/// `provider_id_column`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// `midtrans`, `xendit` or `generic`.
    pub format: Option<String>,
    /// The Gema provider whose transactions the report is compared with (`midtrans`,
    /// `xendit`, `generic`); default: the format's provider, or every provider.
    pub provider: Option<String>,
    pub order_id_column: Option<String>,
    pub amount_column: Option<String>,
    pub status_column: Option<String>,
    pub provider_id_column: Option<String>,
    pub paid_at_column: Option<String>,
    /// The period's start (RFC 3339); with `to`. Default: the report's earliest paid time.
    pub from: Option<String>,
    /// The period's end (RFC 3339); with `from`. Default: the report's latest paid time.
    pub to: Option<String>,
}

impl ImportQuery {
    /// The generic format's mapping, if any column was named.
    pub fn mapping(&self) -> Option<ColumnMapping> {
        let mapping = ColumnMapping {
            order_id: self.order_id_column.clone(),
            amount: self.amount_column.clone(),
            status: self.status_column.clone(),
            provider_id: self.provider_id_column.clone(),
            paid_at: self.paid_at_column.clone(),
        };
        (mapping != ColumnMapping::default()).then_some(mapping)
    }
}

/// What a row came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Matched,
    AmountMismatch,
    StatusMismatch,
    MissingInGema,
    MissingInReport,
    Malformed,
}

impl From<store::ReconciliationOutcome> for Outcome {
    fn from(o: store::ReconciliationOutcome) -> Self {
        use store::ReconciliationOutcome as O;
        match o {
            O::Matched => Outcome::Matched,
            O::AmountMismatch => Outcome::AmountMismatch,
            O::StatusMismatch => Outcome::StatusMismatch,
            O::MissingInGema => Outcome::MissingInGema,
            O::MissingInReport => Outcome::MissingInReport,
            O::Malformed => Outcome::Malformed,
        }
    }
}

impl From<Outcome> for store::ReconciliationOutcome {
    fn from(o: Outcome) -> Self {
        use store::ReconciliationOutcome as O;
        match o {
            Outcome::Matched => O::Matched,
            Outcome::AmountMismatch => O::AmountMismatch,
            Outcome::StatusMismatch => O::StatusMismatch,
            Outcome::MissingInGema => O::MissingInGema,
            Outcome::MissingInReport => O::MissingInReport,
            Outcome::Malformed => O::Malformed,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RowQuery {
    /// Only rows with this outcome.
    pub outcome: Option<Outcome>,
}

/// How many rows came to each outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutcomeCounts {
    pub matched: i64,
    pub amount_mismatch: i64,
    pub status_mismatch: i64,
    pub missing_in_gema: i64,
    pub missing_in_report: i64,
    pub malformed: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationRun {
    pub id: String,
    /// `midtrans`, `xendit` or `generic`.
    pub format: String,
    /// The provider whose transactions were compared; `null`: every provider.
    pub provider: Option<String>,
    /// The generic format's column mapping.
    #[schema(value_type = Option<Object>)]
    pub mapping: Option<serde_json::Value>,
    /// `null` when neither given nor in the report (then nothing is `missing_in_report`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub period_from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub period_to: Option<OffsetDateTime>,
    /// The run this one matched again.
    pub rerun_of: Option<String>,
    /// Data lines in the report, malformed ones included.
    pub report_rows: i64,
    pub counts: OutcomeCounts,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<store::ReconciliationRun> for ReconciliationRun {
    fn from(r: store::ReconciliationRun) -> Self {
        ReconciliationRun {
            mapping: r
                .mapping
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            id: r.id,
            format: r.format,
            provider: r.provider,
            period_from: r.period_from,
            period_to: r.period_to,
            rerun_of: r.rerun_of,
            report_rows: r.report_rows,
            counts: OutcomeCounts {
                matched: r.matched,
                amount_mismatch: r.amount_mismatch,
                status_mismatch: r.status_mismatch,
                missing_in_gema: r.missing_in_gema,
                missing_in_report: r.missing_in_report,
                malformed: r.malformed,
            },
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationRow {
    /// The report's line (the header is line 1); `null` for `missing_in_report`.
    pub line: Option<i64>,
    pub order_id: Option<String>,
    pub provider_transaction_id: Option<String>,
    /// Whole rupiah.
    pub report_amount: Option<i64>,
    pub gema_amount: Option<i64>,
    /// As the report wrote it.
    pub report_status: Option<String>,
    pub gema_status: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub report_paid_at: Option<OffsetDateTime>,
    pub outcome: Outcome,
    pub transaction_id: Option<String>,
    /// Why a row is malformed.
    pub reason: Option<String>,
}

impl From<store::ReconciliationRow> for ReconciliationRow {
    fn from(r: store::ReconciliationRow) -> Self {
        ReconciliationRow {
            line: r.line,
            order_id: r.order_id,
            provider_transaction_id: r.provider_transaction_id,
            report_amount: r.report_amount,
            gema_amount: r.gema_amount,
            report_status: r.report_status,
            gema_status: r.gema_status,
            report_paid_at: r.report_paid_at,
            outcome: r.outcome.into(),
            transaction_id: r.transaction_id,
            reason: r.reason,
        }
    }
}

/// The export's header line.
pub const CSV_HEADER: &str = "line,order_id,provider_transaction_id,report_amount,gema_amount,\
     report_status,gema_status,outcome,transaction_id,report_paid_at,reason\n";

/// A row as one line of the export: amounts as integers, times in Asia/Jakarta (+07:00)
/// with the offset.
pub fn csv_line(row: &store::ReconciliationRow, out: &mut String) {
    let number = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    let jakarta = time::macros::offset!(+7);
    let paid_at = row
        .report_paid_at
        .and_then(|t| {
            t.to_offset(jakarta)
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let fields = [
        number(row.line),
        row.order_id.clone().unwrap_or_default(),
        row.provider_transaction_id.clone().unwrap_or_default(),
        number(row.report_amount),
        number(row.gema_amount),
        row.report_status.clone().unwrap_or_default(),
        row.gema_status.clone().unwrap_or_default(),
        row.outcome.as_str().to_string(),
        row.transaction_id.clone().unwrap_or_default(),
        paid_at,
        row.reason.clone().unwrap_or_default(),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(field, out);
    }
    out.push('\n');
}

/// One field, quoted when it must be; text a spreadsheet would run as a formula (starting
/// with `=`, `+`, `-`, `@`) gets a leading `'`. Numbers here are never negative.
fn push_field(field: &str, out: &mut String) {
    out.push_str(&gema_gateway::csv_out::field(field));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        let mut out = String::new();
        push_field("plain", &mut out);
        out.push('|');
        push_field("a,\"b\"", &mut out);
        out.push('|');
        push_field("=HYPERLINK(1)", &mut out);
        assert_eq!(out, "plain|\"a,\"\"b\"\"\"|'=HYPERLINK(1)");
    }
}
