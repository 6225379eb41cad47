//! Reading a provider's report: which columns hold what (per format, or the caller's
//! mapping for the generic format), and each line into a [`ReportRow`]: whole-rupiah
//! amount, a status Gema can compare, the paid time. A line that cannot be read becomes a
//! malformed row with its reason; only a header without the needed columns refuses the
//! whole report (naming the column).
//!
//! Column names are compared without case, spaces or punctuation, and without a trailing
//! parenthesis (`Created Date (GMT+7)` is `createddate`), so `Order ID`, `order_id` and
//! `ORDER-ID` are one name.

use time::format_description::well_known::Rfc3339;
use time::macros::{format_description, offset};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::error::{GatewayError, GatewayResult};
use crate::payments::money::parse_rupiah;

use crate::csv_in as csv;

/// How a report is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportFormat {
    /// Midtrans' transaction report (the notification's field names, or their
    /// title-case forms as the dashboard writes them).
    Midtrans,
    /// Xendit's transactions report (version 2) and its older versions.
    Xendit,
    /// Any CSV, with the caller's [`ColumnMapping`].
    Generic,
}

impl ReportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Midtrans => "midtrans",
            ReportFormat::Xendit => "xendit",
            ReportFormat::Generic => "generic",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "midtrans" => Some(ReportFormat::Midtrans),
            "xendit" => Some(ReportFormat::Xendit),
            "generic" => Some(ReportFormat::Generic),
            _ => None,
        }
    }
}

/// The generic format's columns, by header name. At least one of `order_id` and
/// `provider_id` is needed; `amount` and `status` are.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ColumnMapping {
    pub order_id: Option<String>,
    pub amount: Option<String>,
    pub status: Option<String>,
    pub provider_id: Option<String>,
    pub paid_at: Option<String>,
}

/// A status as Gema compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportStatus {
    Paid,
    Pending,
    /// Failed, expired, cancelled, denied, voided: final and not paid.
    NotPaid,
    Refunded,
}

impl ReportStatus {
    /// Gema's status in the same terms.
    pub fn of_gema(status: gema_store::TransactionStatus) -> Self {
        use gema_store::TransactionStatus as S;
        match status {
            S::Paid => ReportStatus::Paid,
            S::Pending => ReportStatus::Pending,
            S::Expired | S::Failed => ReportStatus::NotPaid,
            S::Refunded => ReportStatus::Refunded,
        }
    }
}

/// The status a report's text means, for the format; `None` if the format does not know it.
pub fn normalise_status(format: ReportFormat, raw: &str) -> Option<ReportStatus> {
    let text = raw.trim().to_ascii_lowercase();
    let midtrans = || match text.as_str() {
        "settlement" | "capture" => Some(ReportStatus::Paid),
        "pending" | "authorize" => Some(ReportStatus::Pending),
        "deny" | "cancel" | "expire" | "failure" => Some(ReportStatus::NotPaid),
        "refund" | "partial_refund" | "chargeback" | "partial_chargeback" => {
            Some(ReportStatus::Refunded)
        }
        _ => None,
    };
    let xendit = || match text.as_str() {
        "success" | "succeeded" | "successful" | "completed" | "settled" | "paid" => {
            Some(ReportStatus::Paid)
        }
        "pending" => Some(ReportStatus::Pending),
        "failed" | "voided" | "reversed" | "expired" => Some(ReportStatus::NotPaid),
        "refunded" | "partially_refunded" => Some(ReportStatus::Refunded),
        _ => None,
    };
    match format {
        ReportFormat::Midtrans => midtrans(),
        ReportFormat::Xendit => xendit(),
        ReportFormat::Generic => midtrans().or_else(xendit).or(match text.as_str() {
            "failed" | "expired" | "cancelled" | "canceled" => Some(ReportStatus::NotPaid),
            "refunded" => Some(ReportStatus::Refunded),
            _ => None,
        }),
    }
}

/// One data line of a report, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub line: i64,
    pub order_id: Option<String>,
    pub provider_id: Option<String>,
    pub amount: Option<i64>,
    /// As the report wrote it.
    pub raw_status: Option<String>,
    pub status: Option<ReportStatus>,
    pub paid_at: Option<OffsetDateTime>,
    /// Why the line could not be used; `None` for a good line.
    pub malformed: Option<String>,
}

/// Where each value is: column positions in the header.
#[derive(Debug, Clone, Copy)]
struct Columns {
    order_id: Option<usize>,
    provider_id: Option<usize>,
    amount: usize,
    status: usize,
    paid_at: Option<usize>,
}

/// A header name as compared: lower case, letters and digits only, without a trailing
/// parenthesis.
fn normalise_name(name: &str) -> String {
    let name = name.trim();
    let name = match name.rfind('(') {
        Some(open) if name.ends_with(')') && open > 0 => &name[..open],
        _ => name,
    };
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The first of `names` the header has.
fn find(header: &[String], names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|name| header.iter().position(|h| h == name))
}

/// A 422 naming the column the report lacks.
fn missing(field: &'static str, wanted: &str) -> GatewayError {
    GatewayError::invalid(
        field,
        format!("the report has no {wanted} column (the header must name it)"),
    )
}

fn resolve(
    format: ReportFormat,
    mapping: Option<&ColumnMapping>,
    header: &[String],
) -> GatewayResult<Columns> {
    let header: Vec<String> = header.iter().map(|h| normalise_name(h)).collect();
    match format {
        ReportFormat::Midtrans => Ok(Columns {
            order_id: Some(
                find(&header, &["orderid"]).ok_or_else(|| missing("columns", "Order ID"))?,
            ),
            provider_id: find(&header, &["transactionid"]),
            amount: find(&header, &["grossamount", "amount"])
                .ok_or_else(|| missing("columns", "Gross Amount"))?,
            status: find(&header, &["transactionstatus", "status"])
                .ok_or_else(|| missing("columns", "Transaction Status"))?,
            paid_at: find(&header, &["settlementtime", "transactiontime"]),
        }),
        ReportFormat::Xendit => Ok(Columns {
            order_id: Some(
                find(&header, &["reference", "referenceid", "externalid"])
                    .ok_or_else(|| missing("columns", "Reference"))?,
            ),
            provider_id: find(&header, &["productid", "paymentid"]),
            amount: find(&header, &["amount"]).ok_or_else(|| missing("columns", "Amount"))?,
            status: find(&header, &["status"]).ok_or_else(|| missing("columns", "Status"))?,
            paid_at: find(
                &header,
                &[
                    "createddate",
                    "transactiondate",
                    "created",
                    "date",
                    "settlementdate",
                ],
            ),
        }),
        ReportFormat::Generic => {
            let mapping = mapping.cloned().unwrap_or_default();
            let column = |field: &'static str, name: &Option<String>| -> GatewayResult<_> {
                match name {
                    None => Ok(None),
                    Some(name) => find(&header, &[normalise_name(name).as_str()])
                        .map(Some)
                        .ok_or_else(|| {
                            GatewayError::invalid(
                                field,
                                format!("the report has no column {name:?}"),
                            )
                        }),
                }
            };
            let order_id = column("order_id_column", &mapping.order_id)?;
            let provider_id = column("provider_id_column", &mapping.provider_id)?;
            if order_id.is_none() && provider_id.is_none() {
                return Err(GatewayError::invalid(
                    "order_id_column",
                    "the generic format needs order_id_column or provider_id_column",
                ));
            }
            let required = |field: &'static str, name: &Option<String>| {
                column(field, name)?.ok_or_else(|| {
                    GatewayError::invalid(field, "the generic format needs this column's name")
                })
            };
            Ok(Columns {
                order_id,
                provider_id,
                amount: required("amount_column", &mapping.amount)?,
                status: required("status_column", &mapping.status)?,
                paid_at: column("paid_at_column", &mapping.paid_at)?,
            })
        }
    }
}

/// Reads a whole report: its data lines, each read or malformed. `Invalid` (naming
/// `columns` or the mapping field) when the header lacks a needed column, and when the
/// report has no header at all.
pub fn read_report(
    format: ReportFormat,
    mapping: Option<&ColumnMapping>,
    bytes: &[u8],
) -> GatewayResult<Vec<ReportRow>> {
    let mut records = csv::read(bytes).into_iter();
    let header = match records.next() {
        None => {
            return Err(GatewayError::invalid(
                "columns",
                "the report is empty: it needs a header line",
            ));
        }
        Some(csv::Record {
            fields: Err(reason),
            line,
        }) => {
            return Err(GatewayError::invalid(
                "columns",
                format!("the header (line {line}) cannot be read: {reason}"),
            ));
        }
        Some(csv::Record {
            fields: Ok(header), ..
        }) => header,
    };
    let columns = resolve(format, mapping, &header)?;
    Ok(records
        .map(|record| {
            let line = i64::try_from(record.line).unwrap_or(i64::MAX);
            match record.fields {
                Ok(fields) => read_row(format, columns, line, &fields),
                Err(reason) => ReportRow {
                    line,
                    order_id: None,
                    provider_id: None,
                    amount: None,
                    raw_status: None,
                    status: None,
                    paid_at: None,
                    malformed: Some(reason),
                },
            }
        })
        .collect())
}

fn read_row(format: ReportFormat, columns: Columns, line: i64, fields: &[String]) -> ReportRow {
    let get = |at: Option<usize>| {
        at.and_then(|i| fields.get(i))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let mut row = ReportRow {
        line,
        order_id: get(columns.order_id),
        provider_id: get(columns.provider_id),
        amount: None,
        raw_status: get(Some(columns.status)),
        status: None,
        paid_at: None,
        malformed: None,
    };
    let mut problems = Vec::new();
    let amount = get(Some(columns.amount));
    match amount.as_deref().map(parse_rupiah) {
        None => problems.push("no amount".to_string()),
        Some(Ok(amount)) => row.amount = Some(amount),
        Some(Err(err)) => problems.push(format!("amount: {err}")),
    }
    match row.raw_status.as_deref() {
        None => problems.push("no status".to_string()),
        Some(raw) => match normalise_status(format, raw) {
            Some(status) => row.status = Some(status),
            None => problems.push(format!("unknown status {raw:?}")),
        },
    }
    if row.order_id.is_none() && row.provider_id.is_none() {
        problems.push(match format {
            ReportFormat::Generic => "no order id and no provider id".to_string(),
            _ => "no order id".to_string(),
        });
    }
    if let Some(text) = get(columns.paid_at) {
        match parse_time(&text) {
            Some(at) => row.paid_at = Some(at),
            None => problems.push(format!("paid time {text:?} is not a date and time")),
        }
    }
    if !problems.is_empty() {
        row.malformed = Some(problems.join("; "));
    }
    row
}

/// RFC 3339, or `YYYY-MM-DD HH:MM:SS` (or with `T`) without an offset, which providers'
/// Indonesian reports write in Asia/Jakarta time (UTC+7, no daylight saving).
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at);
    }
    let spaced = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let with_t = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    // A fraction of a second, if any, is dropped: reports are read to the second.
    let whole = text.split('.').next().unwrap_or(text);
    PrimitiveDateTime::parse(whole, &spaced)
        .or_else(|_| PrimitiveDateTime::parse(whole, &with_t))
        .ok()
        .map(|at| at.assume_offset(offset!(+7)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIDTRANS: &str =
        "Order ID,Transaction ID,Gross Amount,Transaction Status,Settlement Time\n";

    #[test]
    fn reads_a_midtrans_report() {
        let text = format!(
            "{MIDTRANS}A-1,tx-1,25000.00,settlement,2026-12-01 10:00:00\nA-2,tx-2,25000.50,settlement,\n"
        );
        let rows = read_report(ReportFormat::Midtrans, None, text.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].amount, Some(25_000));
        assert_eq!(rows[0].status, Some(ReportStatus::Paid));
        assert_eq!(
            rows[0].paid_at.unwrap().unix_timestamp(),
            parse_time("2026-12-01T03:00:00Z").unwrap().unix_timestamp()
        );
        assert_eq!(rows[0].line, 2);
        assert!(rows[1].malformed.as_deref().unwrap().contains("fraction"));
    }

    #[test]
    fn a_missing_column_is_named() {
        let err = read_report(ReportFormat::Midtrans, None, b"Order ID,Amount\nA,1\n").unwrap_err();
        assert!(
            matches!(&err, GatewayError::Invalid { field: "columns", message } if message.contains("Transaction Status")),
            "{err:?}"
        );
        let mapping = ColumnMapping {
            order_id: Some("ref".into()),
            amount: Some("nominal".into()),
            status: Some("state".into()),
            ..Default::default()
        };
        let err =
            read_report(ReportFormat::Generic, Some(&mapping), b"ref,nominal\nA,1\n").unwrap_err();
        assert!(
            matches!(
                &err,
                GatewayError::Invalid {
                    field: "status_column",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn xendit_headers_with_time_zones_are_found() {
        let text = "Reference,Product ID,Amount,Status,Created Date (GMT+7)\nA-1,qrpy_1,10000,SUCCESS,2026-12-01T10:00:00+07:00\n";
        let rows = read_report(ReportFormat::Xendit, None, text.as_bytes()).unwrap();
        assert_eq!(rows[0].provider_id.as_deref(), Some("qrpy_1"));
        assert_eq!(rows[0].status, Some(ReportStatus::Paid));
        assert!(rows[0].paid_at.is_some());
    }

    proptest! {
        #[test]
        fn random_reports_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            for format in [ReportFormat::Midtrans, ReportFormat::Xendit] {
                let mut text = MIDTRANS.as_bytes().to_vec();
                text.extend_from_slice(&bytes);
                let _ = read_report(format, None, &text);
                let _ = read_report(format, None, &bytes);
            }
        }

        /// The generic format's mapping comes from the query (`order_id_column=` …): any
        /// column names, with any header and rows.
        #[test]
        fn random_generic_mappings_never_panic(
            names in prop::collection::vec(prop::option::of("\\PC{0,12}"), 5),
            header in "\\PC{0,60}",
            rows in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let mapping = ColumnMapping {
                order_id: names[0].clone(),
                amount: names[1].clone(),
                status: names[2].clone(),
                provider_id: names[3].clone(),
                paid_at: names[4].clone(),
            };
            let mut text = header.into_bytes();
            text.push(b'\n');
            text.extend_from_slice(&rows);
            let _ = read_report(ReportFormat::Generic, Some(&mapping), &text);
            // The header names the mapped columns, so the rows are read.
            let named: Vec<String> = names.iter().flatten().cloned().collect();
            let mut text = named.join(",").into_bytes();
            text.push(b'\n');
            text.extend_from_slice(&rows);
            let _ = read_report(ReportFormat::Generic, Some(&mapping), &text);
        }

        #[test]
        fn random_rows_are_read_or_malformed(rows in prop::collection::vec(
            ("[A-Z0-9-]{0,8}", "[a-z0-9]{0,6}", "-?[0-9.,]{0,10}", "(settlement|pending|expire|refund|x)", "[0-9: -]{0,19}"), 0..20)) {
            let mut text = MIDTRANS.to_string();
            for (order, id, amount, status, at) in &rows {
                text.push_str(&format!("{order},{id},{amount},{status},{at}\n"));
            }
            let read = read_report(ReportFormat::Midtrans, None, text.as_bytes()).unwrap();
            prop_assert_eq!(read.len(), rows.len());
            for row in read {
                prop_assert!(row.malformed.is_some() || (row.amount.is_some() && row.status.is_some()));
            }
        }
    }
}
