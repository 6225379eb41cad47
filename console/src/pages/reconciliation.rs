//! Provider reconciliation, as the API's `/reconciliation/…` routes do it: the runs (newest
//! first, a page at a time), a form that uploads a provider's report (Midtrans, Xendit, or
//! any CSV with its column names) to start a run, a run's page (its period, its counts per
//! outcome and its rows, by outcome, a page at a time), the rows as a CSV download (the
//! API's own streamed response), and a re-run (a new run of the same report rows against
//! the transactions as they are now). Beside them, the per-batch check of settlement
//! batches against the ledger (`GET /reconciliation/settlement-batches`).
//!
//! Runs belong to no merchant: the matrix gives them to finance (and admin) only, as in
//! the API. The upload is `multipart/form-data`, which [`Posted`] does not read, so
//! [`upload`] checks the CSRF token itself before anything else, and counts the bytes
//! against the API's own limit for a report ([`RECONCILIATION_BODY_LIMIT_BYTES`]).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::{AppState, RECONCILIATION_BODY_LIMIT_BYTES};
use gema_gateway::GatewayError;
use gema_gateway::auth::Action;
use gema_gateway::reconciliation::{ColumnMapping, ImportRequest, ReportFormat};
use gema_store::{
    PageRequest, ReconciliationOutcome, ReconciliationRow, ReconciliationRowFilter,
    ReconciliationRun,
};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::frame::{Chrome, ErrorPage, Problem, html};
use crate::pages::settlement::status_badge;
use crate::session::{Posted, Session, csrf_matches_session, see_other};

/// Runs per page, and rows per page of a run.
pub const PAGE_SIZE: u32 = 50;

/// The outcomes in the order a run's summary shows them: value, text key, badge class.
pub const OUTCOMES: [(&str, &str, &str); 6] = [
    ("matched", "recon.outcome.matched", "ok"),
    ("amount_mismatch", "recon.outcome.amount_mismatch", "bad"),
    ("status_mismatch", "recon.outcome.status_mismatch", "bad"),
    ("missing_in_gema", "recon.outcome.missing_in_gema", "warn"),
    (
        "missing_in_report",
        "recon.outcome.missing_in_report",
        "warn",
    ),
    ("malformed", "recon.outcome.malformed", "neutral"),
];

/// The text key and badge class of an outcome.
pub fn outcome_badge(outcome: ReconciliationOutcome) -> (&'static str, &'static str) {
    let value = outcome.as_str();
    OUTCOMES
        .iter()
        .find(|(v, _, _)| *v == value)
        .map_or(("recon.outcome.malformed", "neutral"), |(_, key, badge)| {
            (*key, *badge)
        })
}

/// A run's figures, as its list row and its page's summary show them.
#[derive(Debug)]
pub struct RunView {
    pub id: String,
    pub format: String,
    pub provider: String,
    pub period: Option<(OffsetDateTime, OffsetDateTime)>,
    pub rerun_of: Option<String>,
    pub report_rows: i64,
    pub matched: i64,
    /// Per outcome, in [`OUTCOMES`] order: value, text, badge, count.
    pub counts: Vec<(&'static str, &'static str, &'static str, i64)>,
    /// Rows that are not `matched`.
    pub problems: i64,
    pub created_by: String,
    pub created_at: OffsetDateTime,
}

impl RunView {
    fn new(r: &ReconciliationRun, chrome: &Chrome) -> RunView {
        let figures = [
            r.matched,
            r.amount_mismatch,
            r.status_mismatch,
            r.missing_in_gema,
            r.missing_in_report,
            r.malformed,
        ];
        RunView {
            id: r.id.clone(),
            format: r.format.clone(),
            provider: r.provider.clone().unwrap_or_default(),
            period: r.period_from.zip(r.period_to),
            rerun_of: r.rerun_of.clone(),
            report_rows: r.report_rows,
            matched: r.matched,
            counts: OUTCOMES
                .iter()
                .zip(figures)
                .map(|((value, key, badge), n)| (*value, chrome.t(key), *badge, n))
                .collect(),
            problems: figures[1..].iter().sum(),
            created_by: r.created_by.clone(),
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "reconciliation.html")]
struct ListView {
    chrome: Chrome,
    csrf: String,
    runs: Vec<RunView>,
    next: Option<String>,
    first_page: bool,
    may_write: bool,
    max_mib: usize,
}

/// `GET /reconciliation`: the runs, newest first, and the upload form.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::ReconciliationRead)?;
    let after = q.after.filter(|a| !a.is_empty());
    let page = state
        .reconciliation
        .runs_newest_first(&PageRequest {
            after: after.clone(),
            limit: PAGE_SIZE,
        })
        .await
        .map_err(|e| session.failed(e))?;
    let chrome = session.chrome();
    Ok(html(
        StatusCode::OK,
        &ListView {
            runs: page
                .items
                .iter()
                .map(|r| RunView::new(r, &chrome))
                .collect(),
            next: page
                .next_after
                .map(|after| format!("/reconciliation?after={after}")),
            first_page: after.is_none(),
            may_write: session.may(Action::ReconciliationWrite),
            max_mib: RECONCILIATION_BODY_LIMIT_BYTES / (1024 * 1024),
            csrf: session.csrf.clone(),
            chrome,
        },
    ))
}

/// What the upload form sent: its text fields by name, and the file.
#[derive(Debug, Default)]
struct Upload {
    fields: HashMap<String, String>,
    file: Option<Vec<u8>>,
}

impl Upload {
    /// A text field, trimmed; `None` when absent or empty.
    fn text(&self, name: &str) -> Option<String> {
        self.fields
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }
}

/// Reads the multipart form into `upload`, at most `limit` bytes of field data in all. On
/// an error, `upload` keeps what was read before it (the token comes first in our form),
/// so a refused upload is told apart from a forged one.
async fn read_upload(mut form: Multipart, limit: usize, upload: &mut Upload) -> Result<(), String> {
    let mut total = 0usize;
    while let Some(mut field) = form.next_field().await.map_err(|e| e.body_text())? {
        let name = field.name().unwrap_or_default().to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| e.body_text())? {
            total += chunk.len();
            if total > limit {
                return Err(format!("file: the report is over {limit} bytes"));
            }
            bytes.extend_from_slice(&chunk);
        }
        if name == "file" {
            upload.file = Some(bytes);
        } else {
            upload
                .fields
                .insert(name, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok(())
}

/// The import the form asks for, as the API reads its query: the format chosen, the
/// provider if one is named, the generic format's columns, and the period (both or
/// neither, `datetime-local` in Jakarta time). A bad value names its field.
fn import_request(upload: &Upload) -> Result<ImportRequest, GatewayError> {
    let format = match upload.text("format") {
        None => ReportFormat::Midtrans,
        Some(f) => ReportFormat::parse(&f).ok_or_else(|| {
            GatewayError::invalid("format", "format must be midtrans, xendit or generic")
        })?,
    };
    let mapping = ColumnMapping {
        order_id: upload.text("order_id_column"),
        amount: upload.text("amount_column"),
        status: upload.text("status_column"),
        provider_id: upload.text("provider_id_column"),
        paid_at: upload.text("paid_at_column"),
    };
    // The column fields belong to the generic format; for the others they are ignored,
    // as the form says.
    let mapping =
        (format == ReportFormat::Generic && mapping != ColumnMapping::default()).then_some(mapping);
    let instant = |field: &'static str| {
        crate::format::parse_jakarta_local(upload.fields.get(field).map_or("", String::as_str))
            .map_err(|_| GatewayError::invalid(field, "is a date and time, YYYY-MM-DDTHH:MM (WIB)"))
    };
    Ok(ImportRequest {
        format,
        provider: upload.text("provider"),
        mapping,
        from: instant("from")?,
        to: instant("to")?,
    })
}

/// The audit row's `after` of a run the console made.
fn run_after(r: &ReconciliationRun) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "format": r.format,
        "provider": r.provider,
        "rerun_of": r.rerun_of,
        "report_rows": r.report_rows,
        "matched": r.matched,
    })
}

/// `POST /reconciliation/runs`: the report uploaded, read, matched and stored as a run
/// (audited); then the run's page.
pub async fn upload(
    State(state): State<AppState>,
    session: Session,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ErrorPage> {
    // The report, and the form's few other fields.
    let limit = RECONCILIATION_BODY_LIMIT_BYTES + 64 * 1024;
    let mut upload = Upload::default();
    let read = match form {
        Ok(form) => read_upload(form, limit, &mut upload).await,
        Err(e) => Err(e.body_text()),
    };
    // The token first, whatever else the form holds, as `Posted` does.
    let token = upload.fields.get("csrf").map_or("", String::as_str);
    if !csrf_matches_session(&session, token) {
        tracing::warn!(actor = %session.principal.actor, path = %session.path,
            "console upload without a valid CSRF token refused");
        return Err(session.problem(Problem::Csrf));
    }
    session.require(Action::ReconciliationWrite)?;
    read.map_err(|e| session.problem(Problem::Invalid(e)))?;
    let request = import_request(&upload).map_err(|e| session.failed(e))?;
    let file = upload.file.filter(|f| !f.is_empty()).ok_or_else(|| {
        session.problem(Problem::Invalid(
            "file: choose the provider's report (CSV)".into(),
        ))
    })?;
    let run = session
        .audited(
            &state,
            Action::ReconciliationWrite,
            "reconciliation_run:import".to_owned(),
            state
                .reconciliation
                .import(request, &file, &session.principal.actor),
            run_after,
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/reconciliation/{}", run.id)))
}

#[derive(Debug)]
pub struct RowView {
    pub seq: i64,
    pub line: Option<i64>,
    pub order_id: String,
    pub provider_transaction_id: String,
    pub report_amount: Option<i64>,
    pub gema_amount: Option<i64>,
    pub report_status: String,
    pub gema_status: String,
    pub report_paid_at: Option<OffsetDateTime>,
    pub transaction_id: Option<String>,
    /// The outcome's value (`data-outcome`), text and badge.
    pub outcome: &'static str,
    pub outcome_text: &'static str,
    pub badge: &'static str,
    pub reason: String,
}

impl RowView {
    fn new(r: ReconciliationRow, chrome: &Chrome) -> RowView {
        let (key, badge) = outcome_badge(r.outcome);
        RowView {
            seq: r.seq,
            line: r.line,
            order_id: r.order_id.unwrap_or_default(),
            provider_transaction_id: r.provider_transaction_id.unwrap_or_default(),
            report_amount: r.report_amount,
            gema_amount: r.gema_amount,
            report_status: r.report_status.unwrap_or_default(),
            gema_status: r.gema_status.unwrap_or_default(),
            report_paid_at: r.report_paid_at,
            transaction_id: r.transaction_id,
            outcome: r.outcome.as_str(),
            outcome_text: chrome.t(key),
            badge,
            reason: r.reason.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RunQuery {
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "reconciliation_run.html")]
struct RunPage {
    chrome: Chrome,
    csrf: String,
    run: RunView,
    rows: Vec<RowView>,
    /// The outcome filter's choices: value, text, selected.
    outcomes: Vec<(&'static str, &'static str, bool)>,
    outcome: String,
    next: Option<String>,
    first_page: bool,
    may_write: bool,
    may_transactions: bool,
}

/// `GET /reconciliation/{id}`: the run's summary and its rows.
pub async fn run(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::ReconciliationRead)?;
    let outcome_text = q.outcome.unwrap_or_default();
    let outcome = session.filter(
        "outcome",
        &outcome_text,
        ReconciliationOutcome::parse,
        "matched, amount_mismatch, status_mismatch, missing_in_gema, missing_in_report, malformed",
    )?;
    let after = q.after.filter(|a| !a.is_empty());
    let fail = |e| session.failed(e);
    let run = state.reconciliation.run(&id).await.map_err(fail)?;
    let rows = state
        .reconciliation
        .rows(
            &id,
            &ReconciliationRowFilter { outcome },
            &PageRequest {
                after: after.clone(),
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(fail)?;
    let chrome = session.chrome();
    let next = rows.next_after.map(|after| {
        let mut link = format!("/reconciliation/{id}?after={after}");
        if !outcome_text.is_empty() {
            link.push_str(&format!("&outcome={outcome_text}"));
        }
        link
    });
    let mut outcomes = vec![("", chrome.t("health.all"), outcome_text.is_empty())];
    outcomes.extend(
        OUTCOMES
            .iter()
            .map(|(value, key, _)| (*value, chrome.t(key), *value == outcome_text)),
    );
    Ok(html(
        StatusCode::OK,
        &RunPage {
            run: RunView::new(&run, &chrome),
            rows: rows
                .items
                .into_iter()
                .map(|r| RowView::new(r, &chrome))
                .collect(),
            outcomes,
            outcome: outcome_text,
            next,
            first_page: after.is_none(),
            may_write: session.may(Action::ReconciliationWrite),
            may_transactions: session.may(Action::TransactionRead),
            csrf: session.csrf.clone(),
            chrome,
        },
    ))
}

/// `GET /reconciliation/{id}/rows.csv`: every row, streamed by the API's own response.
pub async fn export(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, ErrorPage> {
    session.require(Action::ReconciliationRead)?;
    let run = state
        .reconciliation
        .run(&id)
        .await
        .map_err(|e| session.failed(e))?;
    Ok(gema_admin_api::routes::reconciliation::rows_csv_response(
        state.reconciliation.clone(),
        run.id,
    ))
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

/// `POST /reconciliation/{id}/rerun`: a new run of the same report rows; then its page.
pub async fn rerun(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, Empty {}): Posted<Empty>,
) -> Result<Response, ErrorPage> {
    session.require(Action::ReconciliationWrite)?;
    let run = session
        .audited(
            &state,
            Action::ReconciliationWrite,
            format!("reconciliation_run:{id}"),
            state.reconciliation.rerun(&id, &session.principal.actor),
            run_after,
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/reconciliation/{}", run.id)))
}

/// One settlement batch against the ledger.
#[derive(Debug)]
pub struct BatchCheck {
    pub batch_id: String,
    pub merchant_id: String,
    pub status: &'static str,
    pub status_badge: &'static str,
    pub status_text: &'static str,
    pub expected_amount: i64,
    pub recorded_amount: i64,
    pub adjustment_amount: i64,
    pub paid_amount: Option<i64>,
    /// Empty when everything agrees.
    pub differences: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "reconciliation_batches.html")]
struct BatchesView {
    chrome: Chrome,
    rows: Vec<BatchCheck>,
    next: Option<String>,
    first_page: bool,
    may_batches: bool,
}

/// The text key of a batch check's difference.
pub fn difference_text(code: &str) -> &'static str {
    match code {
        "ledger_differs_from_batch_total" => "recon.diff.ledger_total",
        "entry_count_differs" => "recon.diff.entry_count",
        "paid_differs_from_ledger" => "recon.diff.paid",
        _ => "recon.diff.other",
    }
}

/// `GET /reconciliation/batches`: each settlement batch (newest first) against the ledger.
pub async fn batches(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::ReconciliationRead)?;
    let after = q.after.filter(|a| !a.is_empty());
    let page = state
        .settlement
        .reconcile_batches(
            session.merchant().map(str::to_owned),
            &PageRequest {
                after: after.clone(),
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    let chrome = session.chrome();
    let rows = page
        .items
        .into_iter()
        .map(|b| {
            let (badge, key) = status_badge(b.status);
            BatchCheck {
                batch_id: b.batch_id,
                merchant_id: b.merchant_id,
                status: b.status.as_str(),
                status_badge: badge,
                status_text: chrome.t(key),
                expected_amount: b.expected_amount,
                recorded_amount: b.recorded_amount,
                adjustment_amount: b.adjustment_amount,
                paid_amount: b.paid_amount,
                differences: b
                    .differences
                    .iter()
                    .map(|d| chrome.t(difference_text(d)))
                    .collect(),
            }
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &BatchesView {
            rows,
            next: page
                .next_after
                .map(|after| format!("/reconciliation/batches?after={after}")),
            first_page: after.is_none(),
            may_batches: session.may(Action::SettlementRead),
            chrome,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(fields: &[(&str, &str)]) -> Upload {
        Upload {
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            file: None,
        }
    }

    #[test]
    fn the_form_reads_as_the_apis_query_does() {
        let r = import_request(&upload(&[("format", "xendit"), ("provider", " ")])).unwrap();
        assert_eq!(r.format, ReportFormat::Xendit);
        assert_eq!(r.provider, None);
        assert_eq!(r.mapping, None);
        assert_eq!((r.from, r.to), (None, None));

        // Columns count for the generic format only.
        let columns = [("amount_column", "Jumlah"), ("status_column", "Status")];
        let midtrans = import_request(&upload(&[&[("format", "midtrans")], &columns[..]].concat()));
        assert_eq!(midtrans.unwrap().mapping, None);
        let generic =
            import_request(&upload(&[&[("format", "generic")], &columns[..]].concat())).unwrap();
        let mapping = generic.mapping.expect("the generic format's columns");
        assert_eq!(mapping.amount.as_deref(), Some("Jumlah"));
        assert_eq!(mapping.order_id, None);

        let period = import_request(&upload(&[
            ("format", "midtrans"),
            ("from", "2026-12-05T07:00"),
            ("to", "2026-12-05T08:00"),
        ]))
        .unwrap();
        assert_eq!(
            period.from,
            Some(time::macros::datetime!(2026-12-05 00:00 UTC))
        );
    }

    #[test]
    fn a_bad_value_names_its_field() {
        let bad = |fields: &[(&str, &str)]| match import_request(&upload(fields)) {
            Err(GatewayError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(bad(&[("format", "csv")]), "format");
        assert_eq!(bad(&[("from", "yesterday")]), "from");
        assert_eq!(bad(&[("to", "2026-13-01T00:00")]), "to");
    }

    #[test]
    fn every_outcome_has_a_badge_and_a_text() {
        for (value, key, badge) in OUTCOMES {
            let outcome = ReconciliationOutcome::parse(value).expect("a store outcome");
            assert_eq!(outcome_badge(outcome), (key, badge));
        }
    }
}
