//! Merchants → outlets → terminals: the merchant list (by status, a page at a time), a
//! merchant's page with its outlets and terminals, and the review buttons its status allows
//! (approve a pending or suspended merchant; reject a pending one, suspend an approved one,
//! each with its reason). A merchant user may open only their own merchant's page
//! (read-only); the list is for operators.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_admin_api::authz::{Scope, owns};
use gema_gateway::auth::Action;
use gema_store::{
    Merchant, MerchantFilter, MerchantStatus, OutletFilter, PageRequest, TerminalFilter,
};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::frame::{Chrome, ErrorPage, html};
use crate::session::{Posted, Session, see_other};

/// Rows per page (merchants; a merchant's outlets and terminals).
pub const PAGE_SIZE: u32 = 50;

/// The status filter's choices: value and text key.
pub const STATUSES: [(&str, &str); 5] = [
    ("", "health.all"),
    ("pending", "merchants.status.pending"),
    ("approved", "merchants.status.approved"),
    ("rejected", "merchants.status.rejected"),
    ("suspended", "merchants.status.suspended"),
];

/// A merchant status as a badge: class and text key.
pub fn status_badge(status: MerchantStatus) -> (&'static str, &'static str) {
    match status {
        MerchantStatus::Pending => ("warn", "merchants.status.pending"),
        MerchantStatus::Approved => ("ok", "merchants.status.approved"),
        MerchantStatus::Rejected => ("bad", "merchants.status.rejected"),
        MerchantStatus::Suspended => ("neutral", "merchants.status.suspended"),
    }
}

#[derive(Debug)]
pub struct MerchantRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub badge: &'static str,
    pub status_text: &'static str,
    pub status_reason: String,
    pub created_at: OffsetDateTime,
}

impl MerchantRow {
    fn new(m: Merchant, chrome: &Chrome) -> MerchantRow {
        let (badge, key) = status_badge(m.status);
        MerchantRow {
            id: m.id,
            name: m.name,
            email: m.email.unwrap_or_default(),
            phone: m.phone.unwrap_or_default(),
            badge,
            status_text: chrome.t(key),
            status_reason: m.status_reason.unwrap_or_default(),
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "merchants.html")]
struct ListView {
    chrome: Chrome,
    rows: Vec<MerchantRow>,
    statuses: Vec<(&'static str, &'static str, bool)>,
    status: String,
    next: Option<String>,
    first_page: bool,
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::MerchantList)?;
    let status_text = q.status.clone().unwrap_or_default();
    let status = session.filter(
        "status",
        &status_text,
        |s| MerchantStatus::try_from(s.to_owned()).ok(),
        "pending, approved, rejected, suspended",
    )?;
    let after = q.after.clone().filter(|a| !a.is_empty());
    let page = state
        .registry
        .merchants(
            &MerchantFilter { status },
            &PageRequest {
                after: after.clone(),
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    let chrome = session.chrome();
    let next = page.next_after.map(|after| {
        let mut link = format!("/merchants?after={after}");
        if !status_text.is_empty() {
            link.push_str(&format!("&status={status_text}"));
        }
        link
    });
    Ok(html(
        StatusCode::OK,
        &ListView {
            rows: page
                .items
                .into_iter()
                .map(|m| MerchantRow::new(m, &chrome))
                .collect(),
            statuses: STATUSES
                .iter()
                .map(|(value, key)| (*value, chrome.t(key), *value == status_text))
                .collect(),
            status: status_text,
            next,
            first_page: after.is_none(),
            chrome,
        },
    ))
}

#[derive(Debug)]
pub struct OutletRow {
    pub id: String,
    pub name: String,
    pub address: String,
    pub city: String,
}

#[derive(Debug)]
pub struct TerminalRow {
    pub id: String,
    pub outlet_id: String,
    pub label: String,
    pub name: String,
    pub payment_ref: String,
}

#[derive(Template)]
#[template(path = "merchant.html")]
struct DetailView {
    chrome: Chrome,
    csrf: String,
    merchant: MerchantRow,
    outlets: Vec<OutletRow>,
    outlets_next: Option<String>,
    terminals: Vec<TerminalRow>,
    terminals_next: Option<String>,
    may_approve: bool,
    may_reject: bool,
    may_suspend: bool,
    may_settlement: bool,
    /// Operators reach a merchant's receipt settings from here.
    may_receipt: bool,
    notice: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    #[serde(default)]
    outlets_after: Option<String>,
    #[serde(default)]
    terminals_after: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

pub async fn detail(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::MerchantRead)?;
    owns(&state, &session.principal, Scope::Merchant, &id)
        .await
        .map_err(|e| session.failed(e))?;
    let fail = |e| session.failed(e);
    let merchant = state.registry.merchant(&id).await.map_err(fail)?;
    let outlets = if session.may(Action::OutletList) {
        Some(
            state
                .registry
                .outlets(
                    &OutletFilter {
                        merchant_id: Some(id.clone()),
                    },
                    &PageRequest {
                        after: q.outlets_after.clone().filter(|a| !a.is_empty()),
                        limit: PAGE_SIZE,
                    },
                )
                .await
                .map_err(fail)?,
        )
    } else {
        None
    };
    let terminals = if session.may(Action::TerminalList) {
        Some(
            state
                .registry
                .terminals(
                    &TerminalFilter {
                        outlet_id: None,
                        merchant_id: Some(id.clone()),
                    },
                    &PageRequest {
                        after: q.terminals_after.clone().filter(|a| !a.is_empty()),
                        limit: PAGE_SIZE,
                    },
                )
                .await
                .map_err(fail)?,
        )
    } else {
        None
    };
    let review = session.may(Action::MerchantReview);
    let status = merchant.status;
    let notice = match q.done.as_deref() {
        Some("approved") => Some("merchants.done.approved"),
        Some("rejected") => Some("merchants.done.rejected"),
        Some("suspended") => Some("merchants.done.suspended"),
        _ => None,
    };
    let chrome = session.chrome();
    let (outlets, outlets_next) = match outlets {
        Some(page) => (
            page.items
                .into_iter()
                .map(|o| OutletRow {
                    id: o.id,
                    name: o.name,
                    address: o.address.unwrap_or_default(),
                    city: o.city.unwrap_or_default(),
                })
                .collect(),
            page.next_after
                .map(|after| format!("/merchants/{id}?outlets_after={after}")),
        ),
        None => (Vec::new(), None),
    };
    let (terminals, terminals_next) = match terminals {
        Some(page) => (
            page.items
                .into_iter()
                .map(|t| TerminalRow {
                    id: t.id,
                    outlet_id: t.outlet_id,
                    label: t.label,
                    name: t.name.unwrap_or_default(),
                    payment_ref: t.payment_ref.unwrap_or_default(),
                })
                .collect(),
            page.next_after
                .map(|after| format!("/merchants/{id}?terminals_after={after}")),
        ),
        None => (Vec::new(), None),
    };
    Ok(html(
        StatusCode::OK,
        &DetailView {
            merchant: MerchantRow::new(merchant, &chrome),
            outlets,
            outlets_next,
            terminals,
            terminals_next,
            may_approve: review
                && matches!(status, MerchantStatus::Pending | MerchantStatus::Suspended),
            may_reject: review && status == MerchantStatus::Pending,
            may_suspend: review && status == MerchantStatus::Approved,
            may_settlement: session.may(Action::SettlementRead),
            may_receipt: session.may(Action::BillingSettings),
            notice,
            csrf: session.csrf.clone(),
            chrome,
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

#[derive(Debug, Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    reason: String,
}

/// The audit row's `after` of a reviewed merchant.
fn merchant_after(m: &Merchant) -> serde_json::Value {
    serde_json::json!({
        "id": m.id,
        "status": m.status.as_str(),
        "status_reason": m.status_reason,
    })
}

/// Approve, reject or suspend, audited, then back to the merchant's page.
async fn review(
    state: &AppState,
    session: &Session,
    id: &str,
    work: impl std::future::Future<Output = Result<Merchant, gema_gateway::GatewayError>>,
    done: &str,
) -> Result<Response, ErrorPage> {
    session.require(Action::MerchantReview)?;
    session
        .audited(
            state,
            Action::MerchantReview,
            format!("merchant:{id}"),
            work,
            merchant_after,
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/merchants/{id}?done={done}")))
}

pub async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, _): Posted<Empty>,
) -> Result<Response, ErrorPage> {
    session.require(Action::MerchantReview)?;
    review(
        &state,
        &session,
        &id,
        state.registry.approve_merchant(&id),
        "approved",
    )
    .await
}

pub async fn reject(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<ReasonForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::MerchantReview)?;
    review(
        &state,
        &session,
        &id,
        state.registry.reject_merchant(&id, &form.reason),
        "rejected",
    )
    .await
}

pub async fn suspend(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<ReasonForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::MerchantReview)?;
    review(
        &state,
        &session,
        &id,
        state.registry.suspend_merchant(&id, &form.reason),
        "suspended",
    )
    .await
}
