//! Billing: the customer list (by status and name or phone, a page at a time; a merchant
//! user sees their own customers) and the customer CSV import in two steps, as the API's
//! `POST /billing/customer-imports` does it: a dry run that shows every row with its
//! problems per field, then the import of the same file.
//!
//! The upload is a `multipart/form-data` form, which [`Posted`](crate::session::Posted)
//! does not read, so [`import`] checks the CSRF token itself, before it looks at the file.
//! The dry run's page carries the file (base64, in a hidden field) to its import button, so
//! the second step imports exactly the bytes the first one checked, without keeping them
//! on the server.
//!
//! The billing section's own navigation is [`billing_nav`](crate::pages::billing_nav).

use askama::Template;
use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gema_admin_api::AppState;
use gema_gateway::auth::Action;
use gema_gateway::billing::import::{ImportMode, ImportReport, RowStatus};
use gema_store::PageRequest;
use gema_store::billing::{CustomerFilter, CustomerStatus};
use serde::Deserialize;

use crate::frame::{Chrome, ErrorPage, Problem, html};
use crate::pages::billing_nav::{Tab, query_value, tabs};
use crate::pages::customer::status_badge;
use crate::session::{Session, csrf_matches_session, see_other};

/// Rows per page of the customer list.
pub const PAGE_SIZE: u32 = 50;

/// Rows a dry run's table shows; the counts cover the whole file.
pub const SHOWN_ROWS: usize = 1_000;

/// The status filter's choices: value and text key.
pub const STATUSES: [(&str, &str); 4] = [
    ("", "health.all"),
    ("active", "billing.status.active"),
    ("isolated", "billing.status.isolated"),
    ("stopped", "billing.status.stopped"),
];

#[derive(Debug)]
pub struct CustomerRow {
    pub id: String,
    pub merchant_id: String,
    pub name: String,
    pub phone: String,
    pub package_id: String,
    pub billing_day: i64,
    pub discount: i64,
    pub badge: &'static str,
    pub status_text: &'static str,
    pub register_date: String,
}

#[derive(Debug, Deserialize)]
pub struct CustomerQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "billing_customers.html")]
struct CustomersView {
    chrome: Chrome,
    tabs: Vec<Tab>,
    rows: Vec<CustomerRow>,
    statuses: Vec<(&'static str, &'static str, bool)>,
    status: String,
    search: String,
    next: Option<String>,
    first_page: bool,
    operator: bool,
    may_add: bool,
    may_import: bool,
}

pub async fn customers(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<CustomerQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingRead)?;
    let status_text = q.status.clone().unwrap_or_default();
    let status = session.filter(
        "status",
        &status_text,
        CustomerStatus::parse,
        "active, isolated, stopped",
    )?;
    let search = q.q.clone().unwrap_or_default().trim().to_owned();
    let after = q.after.clone().filter(|a| !a.is_empty());
    let page = state
        .billing
        .customers(
            CustomerFilter {
                merchant_id: session.merchant().map(str::to_owned),
                status,
                package_id: None,
                billing_day: None,
                search: Some(search.clone()).filter(|s| !s.is_empty()),
            },
            &PageRequest {
                after: after.clone(),
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    let chrome = session.chrome();
    let next = page.next_after.map(|after| {
        let mut link = format!("/billing/customers?after={}", query_value(&after));
        if !status_text.is_empty() {
            link.push_str(&format!("&status={status_text}"));
        }
        if !search.is_empty() {
            link.push_str(&format!("&q={}", query_value(&search)));
        }
        link
    });
    let rows = page
        .items
        .into_iter()
        .map(|c| {
            let (badge, key) = status_badge(c.status);
            CustomerRow {
                id: c.id,
                merchant_id: c.merchant_id,
                name: c.name,
                phone: c.phone,
                package_id: c.package_id,
                billing_day: c.billing_day,
                discount: c.discount,
                badge,
                status_text: chrome.t(key),
                register_date: c.register_date,
            }
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &CustomersView {
            rows,
            statuses: STATUSES
                .iter()
                .map(|(value, key)| (*value, chrome.t(key), *value == status_text))
                .collect(),
            status: status_text,
            search,
            next,
            first_page: after.is_none(),
            operator: session.merchant().is_none(),
            may_add: session.may(Action::BillingCustomerWrite),
            may_import: session.may(Action::BillingManage),
            tabs: tabs(&session),
            chrome,
        },
    ))
}

/// One row of a dry run's (or an import's) table.
#[derive(Debug)]
pub struct ImportRowView {
    pub line: i64,
    pub badge: &'static str,
    pub status_text: &'static str,
    /// The checked values of a valid row.
    pub name: String,
    pub phone: String,
    pub merchant_id: String,
    pub package_id: String,
    pub billing_day: String,
    pub total: Option<i64>,
    /// `field: message` per problem.
    pub problems: Vec<(String, String)>,
}

/// The summary an import's redirect carries back to the upload page.
#[derive(Debug, Default, Deserialize)]
pub struct ImportDone {
    #[serde(default)]
    imported: Option<usize>,
    #[serde(default)]
    not_imported: Option<usize>,
    #[serde(default)]
    import_id: Option<String>,
}

#[derive(Template)]
#[template(path = "billing_import.html")]
struct ImportView {
    chrome: Chrome,
    tabs: Vec<Tab>,
    csrf: String,
    /// The dry run's report, when there is one.
    report: Option<ReportView>,
    /// After an import (the redirect's summary): imported, not imported, the import's id.
    done: Option<(usize, usize, String)>,
    max_bytes: usize,
}

#[derive(Debug)]
struct ReportView {
    rows: usize,
    valid: usize,
    invalid: usize,
    shown: Vec<ImportRowView>,
    /// More rows than the table shows.
    truncated: bool,
    all_or_nothing: bool,
    /// The checked file, for the import button to send again.
    file_b64: String,
}

fn row_status(status: RowStatus) -> (&'static str, &'static str) {
    match status {
        RowStatus::Valid => ("ok", "import.status.valid"),
        RowStatus::Invalid => ("bad", "import.status.invalid"),
        RowStatus::Imported => ("ok", "import.status.imported"),
        RowStatus::Skipped => ("warn", "import.status.skipped"),
    }
}

fn report_view(report: ImportReport, chrome: &Chrome, file: &[u8]) -> ReportView {
    let truncated = report.results.len() > SHOWN_ROWS;
    let shown = report
        .results
        .into_iter()
        .take(SHOWN_ROWS)
        .map(|r| {
            let (badge, key) = row_status(r.status);
            let c = r.customer;
            ImportRowView {
                line: r.line,
                badge,
                status_text: chrome.t(key),
                name: c.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
                phone: c.as_ref().map(|c| c.phone.clone()).unwrap_or_default(),
                merchant_id: c
                    .as_ref()
                    .map(|c| c.merchant_id.clone())
                    .unwrap_or_default(),
                package_id: c.as_ref().map(|c| c.package_id.clone()).unwrap_or_default(),
                billing_day: c
                    .as_ref()
                    .map(|c| c.billing_day.to_string())
                    .unwrap_or_default(),
                total: c.as_ref().map(|c| c.total),
                problems: r
                    .problems
                    .into_iter()
                    .map(|p| (p.field.to_owned(), p.message))
                    .collect(),
            }
        })
        .collect();
    ReportView {
        rows: report.rows,
        valid: report.valid,
        invalid: report.invalid,
        shown,
        truncated,
        all_or_nothing: report.all_or_nothing,
        file_b64: STANDARD.encode(file),
    }
}

pub async fn import_form(
    State(state): State<AppState>,
    session: Session,
    Query(done): Query<ImportDone>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingManage)?;
    Ok(html(
        StatusCode::OK,
        &ImportView {
            chrome: session.chrome(),
            tabs: tabs(&session),
            csrf: session.csrf.clone(),
            report: None,
            done: done.imported.map(|imported| {
                (
                    imported,
                    done.not_imported.unwrap_or(0),
                    done.import_id.clone().unwrap_or_default(),
                )
            }),
            max_bytes: state.billing.settings().import_max_bytes,
        },
    ))
}

/// What the upload form sent.
#[derive(Debug, Default)]
struct Upload {
    csrf: String,
    mode: String,
    all_or_nothing: bool,
    /// The file chosen, or the dry run's file sent again (`file_b64`).
    file: Option<Vec<u8>>,
    file_b64: Option<String>,
}

/// Reads the multipart form into `upload`, at most `limit` bytes of field data in all. On
/// an error, `upload` keeps what was read before it (the token comes first in our forms),
/// so a refused upload is told apart from a forged one.
async fn read_upload(mut form: Multipart, limit: usize, upload: &mut Upload) -> Result<(), String> {
    let mut total = 0usize;
    while let Some(mut field) = form.next_field().await.map_err(|e| e.body_text())? {
        let name = field.name().unwrap_or_default().to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| e.body_text())? {
            total += chunk.len();
            if total > limit {
                return Err(format!(
                    "file: the upload is over {limit} bytes (billing.import_max_bytes)"
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match name.as_str() {
            "csrf" => upload.csrf = text(),
            "mode" => upload.mode = text(),
            "all_or_nothing" => upload.all_or_nothing = !bytes.is_empty(),
            "file" => upload.file = Some(bytes),
            "file_b64" => upload.file_b64 = Some(text()),
            _ => {}
        }
    }
    Ok(())
}

/// Step 1 (`mode=dry_run`): check the file and show every row; step 2 (`mode=import`):
/// write its valid rows, audited, then back to the form with the counts.
pub async fn import(
    State(state): State<AppState>,
    session: Session,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ErrorPage> {
    let max_bytes = state.billing.settings().import_max_bytes;
    // Base64 of a file at the limit, and the form's few other fields.
    let limit = max_bytes / 3 * 4 + 4 + 64 * 1024;
    let mut upload = Upload::default();
    // A body that is not a multipart form carries no token we can read: refused as such.
    let read = match form {
        Ok(form) => read_upload(form, limit, &mut upload).await,
        Err(e) => Err(e.body_text()),
    };
    // The token first, whatever else the form holds, as `Posted` does.
    if !csrf_matches_session(&session, &upload.csrf) {
        tracing::warn!(actor = %session.principal.actor, path = %session.path,
            "console upload without a valid CSRF token refused");
        return Err(session.problem(Problem::Csrf));
    }
    session.require(Action::BillingManage)?;
    read.map_err(|e| session.problem(Problem::Invalid(e)))?;
    let mode = ImportMode::parse(&upload.mode).ok_or_else(|| {
        session.problem(Problem::Invalid(
            "mode: dry_run to check the file, import to write it".into(),
        ))
    })?;
    let file = match (upload.file, upload.file_b64) {
        (Some(file), _) if !file.is_empty() => file,
        (_, Some(b64)) => STANDARD.decode(b64.trim()).map_err(|_| {
            session.problem(Problem::Invalid(
                "file: the checked file did not come back whole".into(),
            ))
        })?,
        _ => {
            return Err(session.problem(Problem::Invalid(
                "file: choose the customer CSV file".into(),
            )));
        }
    };
    let actor = session.principal.actor.clone();
    let bytes = file.len();
    let report = session
        .audited(
            &state,
            Action::BillingManage,
            "billing_import".to_owned(),
            state
                .billing
                .import_customers(&file, mode, upload.all_or_nothing, &actor),
            |r| {
                serde_json::json!({
                    "mode": r.mode.as_str(),
                    "all_or_nothing": r.all_or_nothing,
                    "import_id": r.import_id,
                    "file_bytes": bytes,
                    "rows": r.rows,
                    "valid": r.valid,
                    "invalid": r.invalid,
                    "imported": r.imported,
                    "skipped": r.skipped,
                })
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    match mode {
        ImportMode::Import => Ok(see_other(&format!(
            "/billing/import?imported={}&not_imported={}&import_id={}",
            report.imported,
            report.rows.saturating_sub(report.imported),
            query_value(report.import_id.as_deref().unwrap_or_default()),
        ))),
        ImportMode::DryRun => {
            let chrome = session.chrome();
            let report = report_view(report, &chrome, &file);
            Ok(html(
                StatusCode::OK,
                &ImportView {
                    tabs: tabs(&session),
                    csrf: session.csrf.clone(),
                    report: Some(report),
                    done: None,
                    max_bytes,
                    chrome,
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_customer_status_has_a_text() {
        for key in STATUSES.iter().map(|(_, key)| *key) {
            assert!(
                crate::i18n::TEXTS.iter().any(|(k, _, _)| *k == key),
                "{key} has no text"
            );
        }
    }
}
