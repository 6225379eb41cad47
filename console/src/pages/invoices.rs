//! Billing invoices: the list (newest first, a page at a time by keyset on the id, by
//! status, period and customer; a merchant user sees their own merchant's) and one invoice
//! with its history and what the API's `billing.pay` routes do: mark it paid by hand (cash
//! or transfer, with a note), mark a hand payment undone, and issue the invoice's dynamic
//! QRIS on one of its merchant's terminals, shown as a QR code in the POST's answer with
//! its amount and expiry (like a rotated device secret, no GET shows it again; the public
//! pay page `/p/<token>` shows the invoice's current one to the customer). Another
//! merchant's invoice, or terminal, is the 404 page, as in the API.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_admin_api::authz::{Scope, owns};
use gema_gateway::GatewayError;
use gema_gateway::auth::Action;
use gema_gateway::billing::parse_period;
use gema_store::billing::{Invoice, InvoiceFilter, InvoiceStatus, PaymentMethod};
use gema_store::{PageRequest, TerminalFilter};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::frame::{Chrome, ErrorPage, Problem, html};
use crate::pages::billing_nav::{Tab, query_value, tabs};
use crate::session::{Posted, Session, see_other};

/// Rows per page.
pub const PAGE_SIZE: u32 = 50;

/// The status filter's choices: value and text key.
pub const STATUSES: [(&str, &str); 3] = [
    ("", "health.all"),
    ("unpaid", "invoice.status.unpaid"),
    ("paid", "invoice.status.paid"),
];

/// The hand payment methods (QRIS payments mark their invoice themselves): value and text
/// key.
pub const METHODS: [(&str, &str); 2] = [
    ("cash", "invoice.method.cash"),
    ("transfer", "invoice.method.transfer"),
];

/// An invoice status as a badge: class and text key.
pub fn status_badge(status: InvoiceStatus) -> (&'static str, &'static str) {
    match status {
        InvoiceStatus::Unpaid => ("warn", "invoice.status.unpaid"),
        InvoiceStatus::Paid => ("ok", "invoice.status.paid"),
    }
}

#[derive(Debug)]
pub struct InvoiceRow {
    pub id: String,
    pub customer_id: String,
    pub customer_name: String,
    pub merchant_id: String,
    pub period: String,
    pub package_name: String,
    pub total: i64,
    pub due_date: String,
    /// `unpaid` or `paid`: the row's `data-status`.
    pub status: &'static str,
    pub badge: &'static str,
    pub status_text: &'static str,
}

pub fn invoice_row(i: Invoice, customer_name: String, chrome: &Chrome) -> InvoiceRow {
    let (badge, key) = status_badge(i.status);
    InvoiceRow {
        status: i.status.as_str(),
        badge,
        status_text: chrome.t(key),
        id: i.id,
        customer_id: i.customer_id,
        customer_name,
        merchant_id: i.merchant_id,
        period: i.period,
        package_name: i.package_name,
        total: i.total_amount,
        due_date: i.due_date,
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    /// `YYYY-MM` (a `month` input).
    #[serde(default)]
    period: Option<String>,
    /// A customer's id.
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "billing_invoices.html")]
struct ListView {
    chrome: Chrome,
    tabs: Vec<Tab>,
    rows: Vec<InvoiceRow>,
    statuses: Vec<(&'static str, &'static str, bool)>,
    period: String,
    customer: String,
    next: Option<String>,
    /// The list's first page with the same filters, when this is not it.
    first: Option<String>,
    operator: bool,
}

/// The list's link with these filters, from `after` when given.
fn list_link(status: &str, period: &str, customer: &str, after: Option<&str>) -> String {
    let pairs = [
        ("status", status),
        ("period", period),
        ("customer", customer),
        ("after", after.unwrap_or_default()),
    ];
    let query: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", query_value(v)))
        .collect();
    if query.is_empty() {
        "/billing/invoices".to_owned()
    } else {
        format!("/billing/invoices?{}", query.join("&"))
    }
}

/// The names of the customers of `invoices`, by id (one read per customer of the page);
/// a customer that cannot be read is shown by id.
async fn customer_names(state: &AppState, invoices: &[Invoice]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for i in invoices {
        if names.contains_key(&i.customer_id) {
            continue;
        }
        let name = match state.billing.customer(&i.customer_id).await {
            Ok(c) => c.name,
            Err(e) => {
                tracing::warn!(error = %e, customer_id = %i.customer_id, "an invoice's customer is unreadable");
                String::new()
            }
        };
        names.insert(i.customer_id.clone(), name);
    }
    names
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingRead)?;
    let status_text = q.status.clone().unwrap_or_default();
    let status = session.filter("status", &status_text, InvoiceStatus::parse, "unpaid, paid")?;
    let period_text = q.period.clone().unwrap_or_default().trim().to_owned();
    let period = Some(period_text.as_str())
        .filter(|p| !p.is_empty())
        .map(|p| parse_period("period", p))
        .transpose()
        .map_err(|e| session.failed(e))?;
    let customer = q.customer.clone().unwrap_or_default().trim().to_owned();
    let after = q.after.clone().filter(|a| !a.is_empty());
    let page = state
        .billing
        .invoices(
            InvoiceFilter {
                merchant_id: session.merchant().map(str::to_owned),
                customer_id: Some(customer.clone()).filter(|c| !c.is_empty()),
                period,
                status,
                due_date: None,
            },
            &PageRequest {
                after: after.clone(),
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    let names = customer_names(&state, &page.items).await;
    let chrome = session.chrome();
    let rows = page
        .items
        .into_iter()
        .map(|i| {
            let name = names.get(&i.customer_id).cloned().unwrap_or_default();
            invoice_row(i, name, &chrome)
        })
        .collect();
    let next = page
        .next_after
        .map(|a| list_link(&status_text, &period_text, &customer, Some(&a)));
    let first = after
        .is_some()
        .then(|| list_link(&status_text, &period_text, &customer, None));
    Ok(html(
        StatusCode::OK,
        &ListView {
            tabs: tabs(&session),
            rows,
            statuses: STATUSES
                .iter()
                .map(|(value, key)| (*value, chrome.t(key), *value == status_text))
                .collect(),
            period: period_text,
            customer,
            next,
            first,
            operator: session.merchant().is_none(),
            chrome,
        },
    ))
}

#[derive(Debug)]
pub struct EventRow {
    pub kind: String,
    pub method: String,
    pub note: String,
    pub transaction_id: String,
    pub actor: String,
    pub created_at: OffsetDateTime,
}

/// A terminal the invoice's QRIS may be issued on: one of its merchant's with a static
/// QRIS.
#[derive(Debug)]
pub struct TerminalChoice {
    pub id: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "billing_invoice.html")]
struct DetailView {
    chrome: Chrome,
    tabs: Vec<Tab>,
    csrf: String,
    invoice: InvoiceRow,
    amount: i64,
    discount: i64,
    version: i64,
    paid_at: Option<OffsetDateTime>,
    paid_by: String,
    payment_method: String,
    payment_note: String,
    transaction_id: String,
    /// `/p/<token>` while unpaid, `/r/<token>` (the receipt) once paid.
    pay_path: Option<String>,
    receipt_path: Option<String>,
    created_at: OffsetDateTime,
    events: Vec<EventRow>,
    operator: bool,
    may_transactions: bool,
    /// Which forms the invoice's status (and the user's role) allow.
    may_pay: bool,
    may_unpay: bool,
    may_qris: bool,
    methods: Vec<(&'static str, &'static str)>,
    terminals: Vec<TerminalChoice>,
    notice: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    /// Set by the redirect after a form: which one.
    #[serde(default)]
    done: Option<String>,
}

/// The invoice, if this user may see it: another merchant's is not found.
async fn visible_invoice(
    state: &AppState,
    session: &Session,
    id: &str,
) -> Result<Invoice, ErrorPage> {
    owns(state, &session.principal, Scope::BillingInvoice, id)
        .await
        .map_err(|e| session.failed(e))?;
    state
        .billing
        .invoice(id)
        .await
        .map_err(|e| session.failed(e))
}

/// The merchant's terminals that can take an invoice's QRIS (a static QRIS to build it on),
/// oldest first as the pay page picks them.
async fn qris_terminals(
    state: &AppState,
    merchant_id: &str,
) -> Result<Vec<TerminalChoice>, GatewayError> {
    let page = state
        .registry
        .terminals(
            &TerminalFilter {
                merchant_id: Some(merchant_id.to_owned()),
                outlet_id: None,
            },
            &PageRequest {
                after: None,
                limit: PageRequest::MAX_LIMIT,
            },
        )
        .await?;
    let mut terminals: Vec<_> = page
        .items
        .into_iter()
        .filter(|t| t.static_qris.is_some())
        .collect();
    terminals.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(terminals
        .into_iter()
        .map(|t| TerminalChoice {
            label: match t.name {
                Some(name) if !name.is_empty() => format!("{} · {name}", t.label),
                _ => t.label,
            },
            id: t.id,
        })
        .collect())
}

pub async fn detail(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingRead)?;
    let i = visible_invoice(&state, &session, &id).await?;
    let fail = |e| session.failed(e);
    let events = state.billing.invoice_events(&id).await.map_err(fail)?;
    let customer_name = state
        .billing
        .customer(&i.customer_id)
        .await
        .map(|c| c.name)
        .unwrap_or_default();
    let may_pay_role = session.may(Action::BillingPay);
    let unpaid = i.status == InvoiceStatus::Unpaid;
    let may_qris = may_pay_role && unpaid && i.total_amount > 0;
    let terminals = if may_qris {
        qris_terminals(&state, &i.merchant_id).await.map_err(fail)?
    } else {
        Vec::new()
    };
    let notice = match q.done.as_deref() {
        Some("paid") => Some("invoice.done.paid"),
        Some("unpaid") => Some("invoice.done.unpaid"),
        _ => None,
    };
    let chrome = session.chrome();
    let view = DetailView {
        tabs: tabs(&session),
        csrf: session.csrf.clone(),
        amount: i.amount,
        discount: i.discount,
        version: i.version,
        paid_at: i.paid_at,
        paid_by: i.paid_by.clone().unwrap_or_default(),
        payment_method: i.payment_method.clone().unwrap_or_default(),
        payment_note: i.payment_note.clone().unwrap_or_default(),
        transaction_id: i.transaction_id.clone().unwrap_or_default(),
        pay_path: unpaid.then(|| format!("/p/{}", i.receipt_token)),
        receipt_path: (!unpaid).then(|| format!("/r/{}", i.receipt_token)),
        created_at: i.created_at,
        events: events
            .into_iter()
            .map(|e| EventRow {
                kind: e.kind,
                method: e.method.unwrap_or_default(),
                note: e.note.unwrap_or_default(),
                transaction_id: e.transaction_id.unwrap_or_default(),
                actor: e.actor,
                created_at: e.created_at,
            })
            .collect(),
        operator: session.merchant().is_none(),
        may_transactions: session.may(Action::TransactionRead),
        may_pay: may_pay_role && unpaid,
        // A QRIS payment moved money: a refund undoes it, not this button.
        may_unpay: may_pay_role
            && !unpaid
            && i.payment_method.as_deref() != Some(PaymentMethod::Qris.as_str()),
        may_qris,
        methods: METHODS.iter().map(|(v, k)| (*v, chrome.t(k))).collect(),
        terminals,
        notice,
        invoice: invoice_row(i, customer_name, &chrome),
        chrome,
    };
    Ok(html(StatusCode::OK, &view))
}

/// The invoice's version as the form carried it (optimistic locking, as the API's).
fn version(text: &str) -> Result<i64, GatewayError> {
    text.trim()
        .parse()
        .map_err(|_| GatewayError::invalid("version", "is the invoice's version: reload the page"))
}

/// An optional note: empty is none.
fn note(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|n| !n.is_empty())
}

/// The audit row's `after` of an invoice a form changed (not the customer's details).
fn invoice_after(i: &Invoice) -> serde_json::Value {
    serde_json::json!({
        "id": i.id,
        "status": i.status.as_str(),
        "payment_method": i.payment_method,
        "payment_note": i.payment_note,
        "version": i.version,
    })
}

#[derive(Debug, Deserialize)]
pub struct PayForm {
    #[serde(default)]
    method: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    version: String,
}

pub async fn pay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<PayForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingPay)?;
    visible_invoice(&state, &session, &id).await?;
    let method = PaymentMethod::parse(&form.method)
        .filter(|m| *m != PaymentMethod::Qris)
        .ok_or_else(|| {
            GatewayError::invalid(
                "method",
                "is cash or transfer (QRIS payments mark their invoice themselves)",
            )
        })
        .map_err(|e| session.failed(e))?;
    let version = version(&form.version).map_err(|e| session.failed(e))?;
    session
        .audited(
            &state,
            Action::BillingPay,
            format!("billing_invoice:{id}"),
            state.billing.pay(
                &id,
                version,
                method,
                note(&form.note),
                &session.principal.actor,
            ),
            |paid| {
                let mut after = invoice_after(&paid.invoice);
                after["reactivated_customer"] =
                    serde_json::json!(paid.reactivated.as_ref().map(|c| &c.id));
                after
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/billing/invoices/{id}?done=paid")))
}

#[derive(Debug, Deserialize)]
pub struct UnpayForm {
    #[serde(default)]
    note: String,
    #[serde(default)]
    version: String,
}

pub async fn unpay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<UnpayForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingPay)?;
    visible_invoice(&state, &session, &id).await?;
    let version = version(&form.version).map_err(|e| session.failed(e))?;
    session
        .audited(
            &state,
            Action::BillingPay,
            format!("billing_invoice:{id}"),
            state
                .billing
                .unpay(&id, version, note(&form.note), &session.principal.actor),
            invoice_after,
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/billing/invoices/{id}?done=unpaid")))
}

#[derive(Debug, Deserialize)]
pub struct QrisForm {
    #[serde(default)]
    terminal_id: String,
}

#[derive(Template)]
#[template(path = "billing_invoice_qris.html")]
struct QrisView {
    chrome: Chrome,
    tabs: Vec<Tab>,
    invoice_id: String,
    customer_name: String,
    period: String,
    amount: i64,
    expires_at_ms: i64,
    order_ref: String,
    transaction_id: String,
    may_transactions: bool,
    /// The QR code as inline SVG, drawn by us from the payload (no user text in it).
    qr: Option<String>,
    payload: String,
    pay_path: String,
}

/// `POST /billing/invoices/{id}/qris`: a new dynamic QRIS for the invoice's total on the
/// chosen terminal (a merchant user may name only their own terminals: another merchant's
/// is the 404 page, as in the API), shown in this answer.
pub async fn qris(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<QrisForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingPay)?;
    let invoice = visible_invoice(&state, &session, &id).await?;
    let terminal_id = form.terminal_id.trim().to_owned();
    if terminal_id.is_empty() {
        return Err(session.problem(Problem::Invalid(
            "terminal_id: choose the terminal whose QRIS the customer pays".into(),
        )));
    }
    owns(&state, &session.principal, Scope::Terminal, &terminal_id)
        .await
        .map_err(|e| session.failed(e))?;
    let (transaction, payload) = session
        .audited(
            &state,
            Action::BillingPay,
            format!("billing_invoice:{id}"),
            state
                .billing
                .issue_qris(&id, &terminal_id, &session.principal.actor),
            |(t, _)| {
                serde_json::json!({
                    "invoice_id": id,
                    "transaction_id": t.id,
                    "order_ref": t.order_ref,
                    "terminal_id": t.terminal_id,
                    "amount": t.amount,
                    "expires_at_ms": t.expires_at_ms,
                })
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    let customer_name = state
        .billing
        .customer(&invoice.customer_id)
        .await
        .map(|c| c.name)
        .unwrap_or_default();
    let chrome = session.chrome();
    let qr = gema_admin_api::views::qr::svg(&payload, chrome.t("invoice.qr_label"));
    Ok(html(
        StatusCode::OK,
        &QrisView {
            tabs: tabs(&session),
            invoice_id: id,
            customer_name,
            period: invoice.period,
            amount: transaction.amount,
            expires_at_ms: transaction.expires_at_ms,
            order_ref: transaction.order_ref,
            transaction_id: transaction.id,
            may_transactions: session.may(Action::TransactionRead),
            qr,
            payload,
            pay_path: format!("/p/{}", invoice.receipt_token),
            chrome,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_link_keeps_the_filters_and_encodes_them() {
        assert_eq!(list_link("", "", "", None), "/billing/invoices");
        assert_eq!(
            list_link("paid", "2026-12", "cus 1&x", Some("inv_9")),
            "/billing/invoices?status=paid&period=2026-12&customer=cus+1%26x&after=inv_9"
        );
    }

    #[test]
    fn a_form_version_must_be_a_number_and_a_note_may_be_empty() {
        assert_eq!(version(" 3 ").ok(), Some(3));
        let err = version("three").expect_err("not a number");
        assert!(err.to_string().starts_with("version: "), "{err}");
        assert_eq!(note("  "), None);
        assert_eq!(note(" BCA 123 "), Some("BCA 123"));
    }

    #[test]
    fn every_status_and_method_has_a_text() {
        let keys = STATUSES
            .iter()
            .map(|(_, k)| *k)
            .chain(METHODS.iter().map(|(_, k)| *k))
            .chain([InvoiceStatus::Unpaid, InvoiceStatus::Paid].map(|s| status_badge(s).1));
        for key in keys {
            assert!(
                crate::i18n::TEXTS.iter().any(|(k, _, _)| *k == key),
                "{key} has no text"
            );
        }
    }
}
