//! Transactions: the list (newest first, a page at a time by keyset on the id, filtered by
//! status; a merchant user sees only their own merchant's), where new payments appear at
//! the top without a reload ([`crate::events::payments`] sends each as the row this module
//! renders), and one transaction with its event timeline, its announcements to the device
//! and the retry-notification button.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_admin_api::authz::{Scope, owns};
use gema_gateway::auth::Action;
use gema_store::{
    AnnouncementStatus, PageRequest, Transaction, TransactionFilter, TransactionStatus,
};
use serde::Deserialize;

use crate::frame::{Chrome, ErrorPage, html};
use crate::session::{Posted, Session, see_other};

/// Rows per page.
pub const PAGE_SIZE: u32 = 50;

/// One row of the list, as the page and the live feed show it.
#[derive(Debug, Clone)]
pub struct TransactionRow {
    pub id: String,
    pub order_ref: String,
    pub amount: i64,
    pub status: &'static str,
    pub status_class: &'static str,
    pub status_text: &'static str,
    pub terminal: String,
    pub merchant: String,
    pub issuer: String,
    pub created: time::OffsetDateTime,
    pub paid: Option<time::OffsetDateTime>,
}

pub fn status_text(status: TransactionStatus) -> &'static str {
    match status {
        TransactionStatus::Pending => "txn.pending",
        TransactionStatus::Paid => "txn.paid",
        TransactionStatus::Refunded => "txn.refunded",
        TransactionStatus::Expired => "txn.expired",
        TransactionStatus::Failed => "txn.failed",
    }
}

fn status_class(status: TransactionStatus) -> &'static str {
    match status {
        TransactionStatus::Paid => "ok",
        TransactionStatus::Pending | TransactionStatus::Refunded => "warn",
        TransactionStatus::Expired | TransactionStatus::Failed => "bad",
    }
}

pub fn row(t: Transaction, chrome: &Chrome) -> TransactionRow {
    TransactionRow {
        status: t.status.as_str(),
        status_class: status_class(t.status),
        status_text: chrome.t(status_text(t.status)),
        id: t.id,
        order_ref: t.order_ref,
        amount: t.amount,
        terminal: t.terminal_id,
        merchant: t.merchant_id,
        issuer: t.issuer.unwrap_or_default(),
        created: t.created_at,
        paid: t.paid_at,
    }
}

/// One row alone, for the live feed (the same markup as the list's rows).
#[derive(Debug, Template)]
#[template(path = "transaction_row.html")]
pub struct RowView<'a> {
    pub chrome: &'a Chrome,
    pub t: &'a TransactionRow,
    /// Operators see the merchant column; a merchant user only ever sees their own.
    pub merchant_column: bool,
}

/// The status filter's choices: value and text key.
pub const FILTERS: [(&str, &str); 6] = [
    ("", "health.all"),
    ("paid", "txn.paid"),
    ("pending", "txn.pending"),
    ("expired", "txn.expired"),
    ("failed", "txn.failed"),
    ("refunded", "txn.refunded"),
];

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "transactions.html")]
struct ListView {
    chrome: Chrome,
    rows: Vec<TransactionRow>,
    filters: Vec<(&'static str, &'static str, bool)>,
    status: String,
    next: Option<String>,
    first_page: bool,
    merchant_column: bool,
    /// The live feed's URL, on the first page of a list new payments belong in.
    live: Option<String>,
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(0)
}

/// `GET /transactions`.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::TransactionList)?;
    let status_text = q.status.unwrap_or_default();
    let status = session.filter(
        "status",
        &status_text,
        TransactionStatus::parse,
        "paid, pending, expired, failed, refunded",
    )?;
    let after = q.after.filter(|a| !a.is_empty());
    let filter = TransactionFilter {
        status,
        merchant_id: session.merchant().map(str::to_owned),
        newest_first: true,
        ..TransactionFilter::default()
    };
    // Read before the page, so the live feed starts where the page ends.
    let rendered_at = now_ms();
    let page = state
        .payments
        .transactions(
            &filter,
            &PageRequest {
                after: after.clone(),
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    let chrome = session.chrome();
    let rows = page.items.into_iter().map(|t| row(t, &chrome)).collect();
    let next = page.next_after.map(|after| {
        let mut link = format!("/transactions?after={after}");
        if !status_text.is_empty() {
            link.push_str(&format!("&status={status_text}"));
        }
        link
    });
    let first_page = after.is_none();
    let live = (first_page && matches!(status_text.as_str(), "" | "paid"))
        .then(|| format!("/events/payments?since={rendered_at}"));
    let lang = chrome.lang;
    Ok(html(
        StatusCode::OK,
        &ListView {
            filters: FILTERS
                .iter()
                .map(|(value, key)| (*value, lang.t(key), *value == status_text))
                .collect(),
            rows,
            status: status_text,
            next,
            first_page,
            merchant_column: session.merchant().is_none(),
            live,
            chrome,
        },
    ))
}

#[derive(Debug)]
pub struct EventLine {
    pub at: time::OffsetDateTime,
    pub provider: String,
    pub status: String,
    pub raw_status: String,
    pub amount: Option<i64>,
    pub effect: String,
}

#[derive(Debug)]
pub struct AnnouncementLine {
    pub created: time::OffsetDateTime,
    pub device: String,
    pub status_class: &'static str,
    pub status_text: &'static str,
    pub sequence: i64,
    pub attempts: i64,
    pub delivered: Option<time::OffsetDateTime>,
    pub error: String,
}

fn announcement_text(status: AnnouncementStatus) -> (&'static str, &'static str) {
    match status {
        AnnouncementStatus::Pending => ("warn", "announcement.pending"),
        AnnouncementStatus::Delivered => ("ok", "announcement.delivered"),
        AnnouncementStatus::Failed => ("bad", "announcement.failed"),
        AnnouncementStatus::Expired => ("bad", "announcement.expired"),
        AnnouncementStatus::NoDevice => ("bad", "announcement.no_device"),
    }
}

#[derive(Template)]
#[template(path = "transaction.html")]
struct DetailView {
    chrome: Chrome,
    t: TransactionRow,
    source: &'static str,
    provider: String,
    provider_transaction_id: String,
    expires_at_ms: i64,
    paid_after_expiry: bool,
    updated: time::OffsetDateTime,
    events: Vec<EventLine>,
    announcements: Vec<AnnouncementLine>,
    may_retry: bool,
    notice: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    #[serde(default)]
    done: Option<String>,
}

/// `GET /transactions/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::TransactionRead)?;
    let fail = |e| session.failed(e);
    owns(&state, &session.principal, Scope::Transaction, &id)
        .await
        .map_err(fail)?;
    let transaction = state.payments.transaction(&id).await.map_err(fail)?;
    let events = state.payments.timeline(&id).await.map_err(fail)?;
    let announcements = state.payments.announcements(&id).await.map_err(fail)?;
    let chrome = session.chrome();
    let paid = transaction.status == TransactionStatus::Paid;
    let view = DetailView {
        source: transaction.source.as_str(),
        provider: transaction.provider.clone().unwrap_or_default(),
        provider_transaction_id: transaction
            .provider_transaction_id
            .clone()
            .unwrap_or_default(),
        expires_at_ms: transaction.expires_at_ms,
        paid_after_expiry: transaction.paid_after_expiry,
        updated: transaction.updated_at,
        t: row(transaction, &chrome),
        events: events
            .into_iter()
            .map(|e| EventLine {
                at: e.created_at,
                provider: e.provider,
                status: e.status,
                raw_status: e.raw_status,
                amount: e.amount,
                effect: e.effect,
            })
            .collect(),
        announcements: announcements
            .into_iter()
            .map(|a| {
                let (class, key) = announcement_text(a.status);
                AnnouncementLine {
                    created: a.created_at,
                    device: a.device_id.unwrap_or_default(),
                    status_class: class,
                    status_text: chrome.t(key),
                    sequence: a.sequence,
                    attempts: a.attempts,
                    delivered: a.delivered_at,
                    error: a.last_error.unwrap_or_default(),
                }
            })
            .collect(),
        may_retry: paid && session.may(Action::TransactionOperate),
        notice: (q.done.as_deref() == Some("retried")).then_some("txn.retried"),
        chrome,
    };
    Ok(html(StatusCode::OK, &view))
}

#[derive(Debug, Deserialize)]
pub struct Confirm {}

/// `POST /transactions/{id}/retry-notification`: queue a new announcement of a paid
/// transaction to its terminal's device.
pub async fn retry_notification(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, Confirm {}): Posted<Confirm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::TransactionOperate)?;
    owns(&state, &session.principal, Scope::Transaction, &id)
        .await
        .map_err(|e| session.failed(e))?;
    session
        .audited(
            &state,
            Action::TransactionOperate,
            format!("transaction:{id}"),
            state.payments.retry_notification(&id),
            |a| serde_json::json!({ "announcement_id": a.id, "device_id": a.device_id }),
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/transactions/{id}?done=retried")))
}
