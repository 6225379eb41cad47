//! The WhatsApp queue and log: messages newest first, filtered by status, a page at a time;
//! a message's log of statuses; retry a failed or uncertain one, cancel a pending one
//! (`whatsapp.operate`). A merchant user sees their own merchant's messages only.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_admin_api::authz::{Scope, owns};
use gema_gateway::auth::Action;
use gema_store::{MessageStatus, PageRequest, WaMessage, WaMessageFilter};
use serde::Deserialize;

use crate::frame::{Chrome, ErrorPage, html};
use crate::pages::login::Nothing;
use crate::session::{Posted, Session, see_other};

const PAGE_SIZE: u32 = 50;

#[derive(Debug, Deserialize)]
pub struct QueueQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Debug)]
pub struct MessageRow {
    pub id: String,
    pub recipient: String,
    pub kind: String,
    pub status: &'static str,
    pub badge: &'static str,
    pub attempts: i64,
    pub last_error: String,
    pub created_at: time::OffsetDateTime,
    pub retry: bool,
    pub cancel: bool,
}

fn badge(status: MessageStatus) -> &'static str {
    match status {
        MessageStatus::Sent | MessageStatus::Delivered | MessageStatus::Read => "ok",
        MessageStatus::Pending | MessageStatus::Sending | MessageStatus::Cancelled => "warn",
        MessageStatus::Failed | MessageStatus::Uncertain => "bad",
    }
}

fn row(m: WaMessage, may_operate: bool) -> MessageRow {
    MessageRow {
        retry: may_operate && matches!(m.status, MessageStatus::Failed | MessageStatus::Uncertain),
        cancel: may_operate && m.status == MessageStatus::Pending,
        id: m.id,
        recipient: m.recipient,
        kind: m.kind,
        status: m.status.as_str(),
        badge: badge(m.status),
        attempts: m.attempts,
        last_error: m.last_error.unwrap_or_default(),
        created_at: m.created_at,
    }
}

#[derive(Template)]
#[template(path = "whatsapp.html")]
struct QueueView {
    chrome: Chrome,
    rows: Vec<MessageRow>,
    statuses: Vec<(&'static str, bool)>,
    next: Option<String>,
}

pub async fn queue(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<QueueQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::WhatsAppRead)?;
    let status_text = q.status.unwrap_or_default();
    let status = session.filter(
        "status",
        &status_text,
        MessageStatus::parse,
        "pending, sending, sent, delivered, read, failed, uncertain, cancelled",
    )?;
    let page = state
        .whatsapp
        .messages(
            &WaMessageFilter {
                merchant_id: session.merchant().map(str::to_owned),
                status,
                ..WaMessageFilter::default()
            },
            &PageRequest {
                after: q.after.filter(|a| !a.is_empty()),
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    let operate = session.may(Action::WhatsAppOperate);
    let next = page.next_after.map(|after| {
        let mut link = format!("/whatsapp?after={after}");
        if !status_text.is_empty() {
            link.push_str(&format!("&status={status_text}"));
        }
        link
    });
    Ok(html(
        StatusCode::OK,
        &QueueView {
            chrome: session.chrome(),
            rows: page.items.into_iter().map(|m| row(m, operate)).collect(),
            statuses: MessageStatus::ALL
                .iter()
                .map(|s| (s.as_str(), s.as_str() == status_text))
                .collect(),
            next,
        },
    ))
}

#[derive(Debug)]
pub struct EventRow {
    pub status: String,
    pub detail: String,
    pub at_ms: i64,
}

#[derive(Template)]
#[template(path = "whatsapp_message.html")]
struct MessageView {
    chrome: Chrome,
    message: MessageRow,
    body: String,
    events: Vec<EventRow>,
}

pub async fn message(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, ErrorPage> {
    session.require(Action::WhatsAppRead)?;
    owns(&state, &session.principal, Scope::WhatsAppMessage, &id)
        .await
        .map_err(|e| session.failed(e))?;
    let detail = state
        .whatsapp
        .message(&id)
        .await
        .map_err(|e| session.failed(e))?;
    let body = detail.message.body.clone();
    Ok(html(
        StatusCode::OK,
        &MessageView {
            chrome: session.chrome(),
            message: row(detail.message, session.may(Action::WhatsAppOperate)),
            body,
            events: detail
                .events
                .into_iter()
                .map(|e| EventRow {
                    status: e.status,
                    detail: e.detail.unwrap_or_default(),
                    at_ms: e.at_ms,
                })
                .collect(),
        },
    ))
}

/// Retry a failed or uncertain message (due now).
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, Nothing {}): Posted<Nothing>,
) -> Result<Response, ErrorPage> {
    operate(state, session, id, true).await
}

/// Cancel a pending message.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, Nothing {}): Posted<Nothing>,
) -> Result<Response, ErrorPage> {
    operate(state, session, id, false).await
}

async fn operate(
    state: AppState,
    session: Session,
    id: String,
    retry: bool,
) -> Result<Response, ErrorPage> {
    session.require(Action::WhatsAppOperate)?;
    owns(&state, &session.principal, Scope::WhatsAppMessage, &id)
        .await
        .map_err(|e| session.failed(e))?;
    let actor = session.principal.actor.clone();
    let work = async {
        if retry {
            state.whatsapp.retry(&id, &actor).await
        } else {
            state.whatsapp.cancel(&id, &actor).await
        }
    };
    session
        .audited(
            &state,
            Action::WhatsAppOperate,
            format!("whatsapp_message:{id}"),
            work,
            |m| serde_json::json!({ "status": m.status.as_str() }),
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/whatsapp/{id}")))
}
