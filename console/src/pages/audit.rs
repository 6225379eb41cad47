//! The audit log: every write (the API's and the console's) and every login attempt,
//! filtered by actor, action, target and time, oldest first as the store keeps it, a page
//! at a time. Without a time filter it starts a day back, so the first page is recent; the
//! form shows that bound and clearing it shows the whole log.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_gateway::auth::Action;
use gema_store::{AuditFilter, PageRequest};
use serde::{Deserialize, Serialize};

use crate::format::{jakarta_local, parse_jakarta_local};
use crate::frame::{Chrome, ErrorPage, Problem, html};
use crate::session::Session;

/// Rows per page.
pub const PAGE_SIZE: u32 = 50;

/// How far back the log starts when no time is asked for.
const DEFAULT_SPAN: time::Duration = time::Duration::days(1);

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AuditQuery {
    /// `None` (not in the query): a day back; empty: no lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

#[derive(Debug)]
pub struct AuditRow {
    pub id: String,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub badge: &'static str,
    pub after: String,
    pub source: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditView {
    chrome: Chrome,
    rows: Vec<AuditRow>,
    from: String,
    to: String,
    actor: String,
    action: String,
    target: String,
    next: Option<String>,
    /// The first page of the same filter, when this is a later one.
    first: Option<String>,
}

fn outcome_badge(outcome: &str) -> &'static str {
    match outcome {
        "ok" => "ok",
        "denied" | "failed" => "bad",
        o if o.starts_with('2') => "ok",
        _ => "warn",
    }
}

/// A filter's text, `None` when empty.
fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

pub async fn log(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::AuditRead)?;
    let from = match &q.from {
        Some(from) => from.clone(),
        None => jakarta_local(time::OffsetDateTime::now_utc() - DEFAULT_SPAN),
    };
    let to = q.to.clone().unwrap_or_default();
    let ms = |field: &str, value: &str| {
        parse_jakarta_local(value)
            .map(|at| at.map(|at| (at.unix_timestamp_nanos() / 1_000_000) as i64))
            .map_err(|_| {
                session.problem(Problem::Invalid(format!(
                    "{field}: a date and time, YYYY-MM-DDTHH:MM (WIB)"
                )))
            })
    };
    let filter = AuditFilter {
        from_ms: ms("from", &from)?,
        to_ms: ms("to", &to)?,
        actor: given(&q.actor),
        action: given(&q.action),
        target: given(&q.target),
    };
    let after = given(&q.after);
    let page = state
        .auth
        .audit_log(
            &filter,
            &PageRequest {
                after: after.clone(),
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    let link = |after: Option<String>| {
        let query = AuditQuery {
            from: Some(from.clone()),
            to: Some(to.clone()),
            actor: q.actor.clone(),
            action: q.action.clone(),
            target: q.target.clone(),
            after,
        };
        format!(
            "/audit?{}",
            serde_urlencoded::to_string(&query).unwrap_or_default()
        )
    };
    let next = page.next_after.map(|after| link(Some(after)));
    let first = after.is_some().then(|| link(None));
    let rows = page
        .items
        .into_iter()
        .map(|e| AuditRow {
            badge: outcome_badge(&e.outcome),
            id: e.id,
            at_ms: e.at_ms,
            actor: e.actor,
            action: e.action,
            target: e.target.unwrap_or_default(),
            outcome: e.outcome,
            after: e.after_json.unwrap_or_default(),
            source: e.source.unwrap_or_default(),
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &AuditView {
            chrome: session.chrome(),
            rows,
            from,
            to,
            actor: q.actor.unwrap_or_default(),
            action: q.action.unwrap_or_default(),
            target: q.target.unwrap_or_default(),
            next,
            first,
        },
    ))
}
