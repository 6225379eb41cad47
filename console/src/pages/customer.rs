//! One billing customer: their package and what they pay, billing day, status, their
//! history (status changes and edits, the isolation webhooks sent to the merchant's
//! network) and their newest invoices; for the roles with `billing.manage` the isolate,
//! reactivate and stop buttons, each with the reason the API takes (`POST
//! /customers/{id}/isolate` and its siblings). A merchant user sees their own merchant's
//! customers only: another merchant's is the 404 page, as in the API.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_admin_api::authz::{Scope, owns};
use gema_gateway::auth::Action;
use gema_store::PageRequest;
use gema_store::billing::{Customer, CustomerStatus, InvoiceFilter, customer_total};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::frame::{Chrome, ErrorPage, html};
use crate::pages::billing_nav::{Tab, tabs};
use crate::pages::invoices::{InvoiceRow, invoice_row};
use crate::session::{Posted, Session, see_other};

/// The customer's newest invoices shown on their page; the rest are on the invoice list,
/// filtered to them.
pub const INVOICES_SHOWN: u32 = 12;

/// A customer status as a badge: class and text key.
pub fn status_badge(status: CustomerStatus) -> (&'static str, &'static str) {
    match status {
        CustomerStatus::Active => ("ok", "billing.status.active"),
        CustomerStatus::Isolated => ("bad", "billing.status.isolated"),
        CustomerStatus::Stopped => ("neutral", "billing.status.stopped"),
    }
}

#[derive(Debug)]
pub struct EventRow {
    pub kind: String,
    pub from_status: String,
    pub to_status: String,
    pub reason: String,
    pub actor: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug)]
pub struct WebhookRow {
    pub event: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: String,
    pub delivered_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

/// A status button the customer's status allows: the path's last part, the form's ids
/// and text keys.
#[derive(Debug)]
pub struct StatusAction {
    pub change: &'static str,
    pub title: &'static str,
    pub danger: bool,
}

/// The buttons a customer in `status` gets: into each other status, but a customer who
/// left (stopped) is not isolated, only taken back.
pub fn status_actions(status: CustomerStatus) -> Vec<StatusAction> {
    [
        (
            CustomerStatus::Isolated,
            "isolate",
            "customer.isolate",
            true,
        ),
        (
            CustomerStatus::Active,
            "reactivate",
            "customer.reactivate",
            false,
        ),
        (CustomerStatus::Stopped, "stop", "customer.stop", true),
    ]
    .into_iter()
    .filter(|(to, ..)| {
        *to != status && !(status == CustomerStatus::Stopped && *to == CustomerStatus::Isolated)
    })
    .map(|(_, change, title, danger)| StatusAction {
        change,
        title,
        danger,
    })
    .collect()
}

#[derive(Template)]
#[template(path = "billing_customer.html")]
struct DetailView {
    chrome: Chrome,
    tabs: Vec<Tab>,
    csrf: String,
    id: String,
    name: String,
    phone: String,
    merchant_id: String,
    address: String,
    notes: String,
    package_id: String,
    package_name: String,
    price: Option<i64>,
    monthly: Option<i64>,
    billing_day: i64,
    discount: i64,
    /// `active`, `isolated`, `stopped`: the badge's `data-status`.
    status: &'static str,
    badge: &'static str,
    status_text: &'static str,
    register_date: String,
    events: Vec<EventRow>,
    webhooks: Vec<WebhookRow>,
    invoices: Vec<InvoiceRow>,
    more_invoices: bool,
    operator: bool,
    may_edit: bool,
    actions: Vec<StatusAction>,
    notice: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    /// Set by the redirect after a button: the status it set.
    #[serde(default)]
    done: Option<String>,
}

/// The customer, if this user may see them: another merchant's is not found.
pub(crate) async fn visible_customer(
    state: &AppState,
    session: &Session,
    id: &str,
) -> Result<Customer, ErrorPage> {
    owns(state, &session.principal, Scope::BillingCustomer, id)
        .await
        .map_err(|e| session.failed(e))?;
    state
        .billing
        .customer(id)
        .await
        .map_err(|e| session.failed(e))
}

pub async fn detail(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingRead)?;
    let c = visible_customer(&state, &session, &id).await?;
    let fail = |e| session.failed(e);
    let history = state.billing.customer_history(&id).await.map_err(fail)?;
    let invoices = state
        .billing
        .invoices(
            InvoiceFilter {
                customer_id: Some(id.clone()),
                merchant_id: Some(c.merchant_id.clone()),
                ..InvoiceFilter::default()
            },
            &PageRequest {
                after: None,
                limit: INVOICES_SHOWN,
            },
        )
        .await
        .map_err(fail)?;
    // A package is never deleted while a customer has it; should it be, the page still
    // shows the customer.
    let package = state.billing.package(&c.package_id).await.ok();
    let chrome = session.chrome();
    let (badge, key) = status_badge(c.status);
    let notice = match q.done.as_deref() {
        Some("isolated") => Some("customer.done.isolated"),
        Some("active") => Some("customer.done.active"),
        Some("stopped") => Some("customer.done.stopped"),
        Some("created") => Some("customer.done.created"),
        Some("edited") => Some("customer.done.edited"),
        _ => None,
    };
    let view = DetailView {
        tabs: tabs(&session),
        csrf: session.csrf.clone(),
        package_name: package.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
        price: package.as_ref().map(|p| p.price),
        monthly: package
            .as_ref()
            .map(|p| customer_total(p.price, c.discount)),
        status: c.status.as_str(),
        badge,
        status_text: chrome.t(key),
        events: history
            .events
            .into_iter()
            .map(|e| EventRow {
                kind: e.kind,
                from_status: e.from_status.unwrap_or_default(),
                to_status: e.to_status.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                actor: e.actor,
                created_at: e.created_at,
            })
            .collect(),
        webhooks: history
            .webhooks
            .into_iter()
            .map(|w| WebhookRow {
                event: w.event,
                status: w.status,
                attempts: w.attempts,
                last_error: w.last_error.unwrap_or_default(),
                delivered_at: w.delivered_at,
                created_at: w.created_at,
            })
            .collect(),
        more_invoices: invoices.next_after.is_some(),
        invoices: invoices
            .items
            .into_iter()
            .map(|i| invoice_row(i, c.name.clone(), &chrome))
            .collect(),
        operator: session.merchant().is_none(),
        may_edit: session.may(Action::BillingCustomerWrite),
        actions: if session.may(Action::BillingManage) {
            status_actions(c.status)
        } else {
            Vec::new()
        },
        notice,
        id: c.id,
        name: c.name,
        phone: c.phone,
        merchant_id: c.merchant_id,
        address: c.address.unwrap_or_default(),
        notes: c.notes.unwrap_or_default(),
        package_id: c.package_id,
        billing_day: c.billing_day,
        discount: c.discount,
        register_date: c.register_date,
        chrome,
    };
    Ok(html(StatusCode::OK, &view))
}

#[derive(Debug, Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    reason: String,
}

/// Sets the customer's status as the API's isolate / reactivate / stop do: `billing.manage`,
/// the customer in the user's scope, the reason kept in the customer's history, the write
/// audited.
async fn set_status(
    state: AppState,
    id: String,
    session: Session,
    form: ReasonForm,
    to: CustomerStatus,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingManage)?;
    visible_customer(&state, &session, &id).await?;
    let reason = Some(form.reason.trim()).filter(|r| !r.is_empty());
    session
        .audited(
            &state,
            Action::BillingManage,
            format!("billing_customer:{id}"),
            state
                .billing
                .set_customer_status(&id, to, reason, &session.principal.actor),
            // Not the customer's phone or NIK: the change, and why.
            |c| {
                serde_json::json!({
                    "id": c.id,
                    "status": c.status.as_str(),
                    "reason": reason,
                    "version": c.version,
                })
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!(
        "/billing/customers/{id}?done={}",
        to.as_str()
    )))
}

pub async fn isolate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<ReasonForm>,
) -> Result<Response, ErrorPage> {
    set_status(state, id, session, form, CustomerStatus::Isolated).await
}

pub async fn reactivate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<ReasonForm>,
) -> Result<Response, ErrorPage> {
    set_status(state, id, session, form, CustomerStatus::Active).await
}

pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<ReasonForm>,
) -> Result<Response, ErrorPage> {
    set_status(state, id, session, form, CustomerStatus::Stopped).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_gets_the_buttons_into_the_other_statuses() {
        let changes = |s| {
            status_actions(s)
                .into_iter()
                .map(|a| a.change)
                .collect::<Vec<_>>()
        };
        assert_eq!(changes(CustomerStatus::Active), ["isolate", "stop"]);
        assert_eq!(changes(CustomerStatus::Isolated), ["reactivate", "stop"]);
        assert_eq!(changes(CustomerStatus::Stopped), ["reactivate"]);
        for s in [CustomerStatus::Active, CustomerStatus::Isolated] {
            for a in status_actions(s) {
                assert!(
                    crate::i18n::TEXTS.iter().any(|(k, _, _)| *k == a.title),
                    "{}",
                    a.title
                );
            }
        }
    }
}
