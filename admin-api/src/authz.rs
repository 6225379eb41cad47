//! Who may call which route: the route table, the guard that enforces it on every `/api/v1`
//! route, merchant scoping, and the audit row of every write.
//!
//! [`RULES`] maps each route (method and path template, exactly as in the OpenAPI document)
//! to a [`Rule`]. The role × action matrix itself is `gema_gateway::auth::permits`; this
//! file only names the action a route performs and which path id identifies the row, so a
//! new route needs one line here. A route without a line is refused (500, logged) and fails
//! the route-walking permission test.
//!
//! Merchant users only ever see their own merchant's rows: a path id of another merchant's
//! row answers 404 exactly as a missing row does, and list handlers force the caller's
//! merchant into their filter ([`MerchantScope`]).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gema_gateway::GatewayError;
use gema_gateway::auth::ratelimit::LimitClass;
use gema_gateway::auth::{Action, Principal, RequestMeta, idempotency};
use gema_store::{IdempotencyBegin, NewAuditEntry};

use crate::error::{ApiError, current_request_id};
use crate::extract::body_limit;
use crate::state::AppState;

/// Which path id names the row a route touches (for merchant scoping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No row in the path (lists filter in the handler; actions merchants never get).
    None,
    Merchant,
    Outlet,
    Terminal,
    Device,
    Transaction,
    SettlementBatch,
    /// A billing customer (`/customers/{id}`).
    BillingCustomer,
    /// A billing invoice (`/invoices/{id}`).
    BillingInvoice,
    /// A WhatsApp message (`/whatsapp/messages/{id}`): its merchant's (the operator's own
    /// notices belong to no merchant).
    WhatsAppMessage,
}

impl Scope {
    /// The row's id in a concrete path: `/api/v1/<collection>/<id>[/…]`, but
    /// `/api/v1/whatsapp/messages/<id>[/…]`.
    fn id_of(self, path: &str) -> Option<&str> {
        let at = match self {
            Scope::WhatsAppMessage => 5,
            _ => 4,
        };
        path.split('/').nth(at)
    }
}

/// How a route is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// No token: login and refresh (they are rate-limited by lockout instead).
    Public,
    /// No bearer token: the payment provider authenticates with its own signature or token.
    Provider,
    /// A bearer token whose role the matrix allows `Action`; merchant users only on their
    /// own rows.
    Guarded(Action, Scope),
}

use Action as A;
use Rule::Guarded as G;
use Scope as S;

/// Every route under `/api/v1` and its rule. One line per route.
#[rustfmt::skip]
pub const RULES: &[(&str, &str, Rule)] = &[
    ("POST", "/api/v1/auth/login", Rule::Public),
    ("POST", "/api/v1/auth/refresh", Rule::Public),
    ("POST", "/api/v1/auth/logout", G(A::OwnSession, S::None)),
    ("GET", "/api/v1/auth/me", G(A::OwnSession, S::None)),
    ("GET", "/api/v1/auth/sessions", G(A::OwnSession, S::None)),
    ("DELETE", "/api/v1/auth/sessions/{id}", G(A::OwnSession, S::None)),
    ("POST", "/api/v1/auth/totp/setup", G(A::OwnSession, S::None)),
    ("POST", "/api/v1/auth/totp/enable", G(A::OwnSession, S::None)),
    ("POST", "/api/v1/auth/totp/disable", G(A::OwnSession, S::None)),
    ("GET", "/api/v1/users", G(A::UserList, S::None)),
    ("POST", "/api/v1/users", G(A::UserWrite, S::None)),
    ("GET", "/api/v1/users/{id}", G(A::UserRead, S::None)),
    ("POST", "/api/v1/users/{id}/disable", G(A::UserWrite, S::None)),
    ("POST", "/api/v1/users/{id}/enable", G(A::UserWrite, S::None)),
    ("GET", "/api/v1/audit-logs", G(A::AuditRead, S::None)),
    ("GET", "/api/v1/nodes", G(A::NodeList, S::None)),
    ("GET", "/api/v1/api-tokens", G(A::ApiTokenList, S::None)),
    ("POST", "/api/v1/api-tokens", G(A::ApiTokenWrite, S::None)),
    ("POST", "/api/v1/api-tokens/{id}/revoke", G(A::ApiTokenWrite, S::None)),
    ("GET", "/api/v1/merchants", G(A::MerchantList, S::None)),
    ("POST", "/api/v1/merchants", G(A::MerchantWrite, S::None)),
    ("GET", "/api/v1/merchants/{id}", G(A::MerchantRead, S::Merchant)),
    ("PATCH", "/api/v1/merchants/{id}", G(A::MerchantWrite, S::Merchant)),
    ("POST", "/api/v1/merchants/{id}/approve", G(A::MerchantReview, S::Merchant)),
    ("POST", "/api/v1/merchants/{id}/reject", G(A::MerchantReview, S::Merchant)),
    ("POST", "/api/v1/merchants/{id}/suspend", G(A::MerchantReview, S::Merchant)),
    ("GET", "/api/v1/outlets", G(A::OutletList, S::None)),
    ("POST", "/api/v1/outlets", G(A::OutletWrite, S::None)),
    ("GET", "/api/v1/outlets/{id}", G(A::OutletRead, S::Outlet)),
    ("PATCH", "/api/v1/outlets/{id}", G(A::OutletWrite, S::Outlet)),
    ("GET", "/api/v1/terminals", G(A::TerminalList, S::None)),
    ("POST", "/api/v1/terminals", G(A::TerminalWrite, S::None)),
    ("GET", "/api/v1/terminals/{id}", G(A::TerminalRead, S::Terminal)),
    ("PATCH", "/api/v1/terminals/{id}", G(A::TerminalWrite, S::Terminal)),
    ("POST", "/api/v1/terminals/{id}/dynamic-qr", G(A::TransactionCreate, S::Terminal)),
    ("GET", "/api/v1/devices", G(A::DeviceList, S::None)),
    ("POST", "/api/v1/devices", G(A::DeviceWrite, S::None)),
    ("GET", "/api/v1/devices/{id}", G(A::DeviceRead, S::Device)),
    ("PATCH", "/api/v1/devices/{id}", G(A::DeviceWrite, S::Device)),
    ("POST", "/api/v1/devices/{id}/bind", G(A::DeviceBind, S::Device)),
    ("POST", "/api/v1/devices/{id}/unbind", G(A::DeviceBind, S::Device)),
    ("GET", "/api/v1/devices/{id}/bindings", G(A::DeviceRead, S::Device)),
    ("POST", "/api/v1/devices/{id}/credentials/rotate", G(A::DeviceCredentials, S::Device)),
    ("POST", "/api/v1/devices/{id}/credentials/revoke", G(A::DeviceCredentials, S::Device)),
    ("GET", "/api/v1/devices/{id}/certificates", G(A::DeviceRead, S::Device)),
    ("POST", "/api/v1/devices/{id}/certificates", G(A::DeviceCredentials, S::Device)),
    ("POST", "/api/v1/devices/{id}/certificates/{serial}/revoke", G(A::DeviceCredentials, S::Device)),
    // Claims (provisioning by claim): operators only, like device credentials.
    ("GET", "/api/v1/claims", G(A::DeviceCredentials, S::None)),
    ("POST", "/api/v1/claims", G(A::DeviceCredentials, S::None)),
    ("GET", "/api/v1/claims/{id}", G(A::DeviceCredentials, S::None)),
    ("POST", "/api/v1/claims/{id}/revoke", G(A::DeviceCredentials, S::None)),
    ("GET", "/api/v1/claims/{id}/provisionings", G(A::DeviceCredentials, S::None)),
    ("POST", "/api/v1/claims/provisionings/{serial}/allow-reprovision", G(A::DeviceCredentials, S::None)),
    ("GET", "/api/v1/devices/{id}/status", G(A::DeviceRead, S::Device)),
    ("GET", "/api/v1/devices/{id}/heartbeats", G(A::DeviceRead, S::Device)),
    ("GET", "/api/v1/devices/{id}/config", G(A::DeviceRead, S::Device)),
    ("PATCH", "/api/v1/devices/{id}/config", G(A::DeviceConfigure, S::Device)),
    ("POST", "/api/v1/devices/{id}/config/push", G(A::DeviceConfigure, S::Device)),
    ("GET", "/api/v1/devices/{id}/messages", G(A::DeviceDiagnostics, S::Device)),
    ("GET", "/api/v1/devices/{id}/commands", G(A::DeviceRead, S::Device)),
    ("POST", "/api/v1/devices/{id}/commands", G(A::DeviceCommand, S::Device)),
    ("GET", "/api/v1/devices/{id}/commands/{command_id}", G(A::DeviceRead, S::Device)),
    ("GET", "/api/v1/transactions", G(A::TransactionList, S::None)),
    ("POST", "/api/v1/transactions", G(A::TransactionCreate, S::None)),
    ("POST", "/api/v1/transactions/expire-due", G(A::TransactionOperate, S::None)),
    ("GET", "/api/v1/transactions/{id}", G(A::TransactionRead, S::Transaction)),
    ("GET", "/api/v1/transactions/{id}/events", G(A::TransactionRead, S::Transaction)),
    ("GET", "/api/v1/transactions/{id}/announcements", G(A::TransactionRead, S::Transaction)),
    ("POST", "/api/v1/transactions/{id}/retry-notification", G(A::TransactionOperate, S::Transaction)),
    ("GET", "/api/v1/ledger-entries", G(A::LedgerRead, S::None)),
    ("GET", "/api/v1/merchants/{id}/bank-account", G(A::MerchantRead, S::Merchant)),
    ("PUT", "/api/v1/merchants/{id}/bank-account", G(A::SettlementWrite, S::Merchant)),
    ("GET", "/api/v1/merchants/{id}/payout-settings", G(A::SettlementRead, S::Merchant)),
    ("PUT", "/api/v1/merchants/{id}/payout-settings", G(A::SettlementWrite, S::Merchant)),
    ("GET", "/api/v1/merchants/{id}/balance", G(A::SettlementRead, S::Merchant)),
    ("POST", "/api/v1/settlement-batches", G(A::SettlementWrite, S::None)),
    ("GET", "/api/v1/settlement-batches", G(A::SettlementRead, S::None)),
    ("GET", "/api/v1/settlement-batches/{id}", G(A::SettlementRead, S::SettlementBatch)),
    ("GET", "/api/v1/settlement-batches/{id}/items", G(A::SettlementRead, S::SettlementBatch)),
    ("GET", "/api/v1/settlement-batches/{id}/export.csv", G(A::SettlementRead, S::SettlementBatch)),
    ("POST", "/api/v1/settlement-batches/{id}/mark-paid", G(A::SettlementWrite, S::SettlementBatch)),
    ("PATCH", "/api/v1/settlement-batches/{id}/reference", G(A::SettlementWrite, S::SettlementBatch)),
    ("POST", "/api/v1/settlement-batches/{id}/mark-failed", G(A::SettlementWrite, S::SettlementBatch)),
    ("POST", "/api/v1/settlement-batches/{id}/cancel", G(A::SettlementWrite, S::SettlementBatch)),
    ("POST", "/api/v1/settlement-batches/{id}/reprocess", G(A::SettlementWrite, S::SettlementBatch)),
    ("POST", "/api/v1/settlement-batches/{id}/adjustments", G(A::SettlementWrite, S::SettlementBatch)),
    ("GET", "/api/v1/packages", G(A::BillingRead, S::None)),
    ("POST", "/api/v1/packages", G(A::BillingManage, S::None)),
    ("GET", "/api/v1/packages/{id}", G(A::BillingRead, S::None)),
    ("PATCH", "/api/v1/packages/{id}", G(A::BillingManage, S::None)),
    ("DELETE", "/api/v1/packages/{id}", G(A::BillingManage, S::None)),
    ("GET", "/api/v1/customers", G(A::BillingRead, S::None)),
    ("POST", "/api/v1/customers", G(A::BillingCustomerWrite, S::None)),
    ("GET", "/api/v1/customers/{id}", G(A::BillingRead, S::BillingCustomer)),
    ("PATCH", "/api/v1/customers/{id}", G(A::BillingCustomerWrite, S::BillingCustomer)),
    ("GET", "/api/v1/customers/{id}/history", G(A::BillingRead, S::BillingCustomer)),
    ("POST", "/api/v1/customers/{id}/isolate", G(A::BillingManage, S::BillingCustomer)),
    ("POST", "/api/v1/customers/{id}/reactivate", G(A::BillingManage, S::BillingCustomer)),
    ("POST", "/api/v1/customers/{id}/stop", G(A::BillingManage, S::BillingCustomer)),
    ("GET", "/api/v1/invoices", G(A::BillingRead, S::None)),
    ("GET", "/api/v1/invoices/{id}", G(A::BillingRead, S::BillingInvoice)),
    ("POST", "/api/v1/invoices/{id}/pay", G(A::BillingPay, S::BillingInvoice)),
    ("POST", "/api/v1/invoices/{id}/unpay", G(A::BillingPay, S::BillingInvoice)),
    ("POST", "/api/v1/invoices/{id}/qris", G(A::BillingPay, S::BillingInvoice)),
    ("POST", "/api/v1/billing/invoice-runs", G(A::BillingManage, S::None)),
    ("GET", "/api/v1/settlement-adjustments", G(A::SettlementRead, S::None)),
    ("GET", "/api/v1/settlement-summary", G(A::SettlementRead, S::None)),
    ("GET", "/api/v1/reconciliation/settlement-batches", G(A::ReconciliationRead, S::None)),
    ("GET", "/api/v1/dashboard/summary", G(A::DashboardRead, S::None)),
    ("POST", "/api/v1/reconciliation/runs", G(A::ReconciliationWrite, S::None)),
    ("GET", "/api/v1/reconciliation/runs", G(A::ReconciliationRead, S::None)),
    ("GET", "/api/v1/reconciliation/runs/{id}", G(A::ReconciliationRead, S::None)),
    ("GET", "/api/v1/reconciliation/runs/{id}/rows", G(A::ReconciliationRead, S::None)),
    ("GET", "/api/v1/reconciliation/runs/{id}/rows.csv", G(A::ReconciliationRead, S::None)),
    ("POST", "/api/v1/reconciliation/runs/{id}/rerun", G(A::ReconciliationWrite, S::None)),
    ("GET", "/api/v1/exports", G(A::ExportJobs, S::None)),
    ("POST", "/api/v1/exports", G(A::ExportJobs, S::None)),
    ("GET", "/api/v1/exports/{id}", G(A::ExportJobs, S::None)),
    ("GET", "/api/v1/exports/{id}/download", G(A::ExportJobs, S::None)),
    ("GET", "/api/v1/merchants/{id}/billing-settings", G(A::BillingSettings, S::Merchant)),
    ("PUT", "/api/v1/merchants/{id}/billing-settings", G(A::BillingSettings, S::Merchant)),
    ("GET", "/api/v1/merchants/{id}/billing-logo", G(A::BillingRead, S::Merchant)),
    ("PUT", "/api/v1/merchants/{id}/billing-logo", G(A::BillingSettings, S::Merchant)),
    ("DELETE", "/api/v1/merchants/{id}/billing-logo", G(A::BillingSettings, S::Merchant)),
    ("GET", "/api/v1/billing/finance/summary", G(A::BillingFinance, S::None)),
    ("GET", "/api/v1/billing/finance/revenue", G(A::BillingFinance, S::None)),
    ("GET", "/api/v1/billing/finance/customer-growth", G(A::BillingFinance, S::None)),
    ("GET", "/api/v1/billing/finance/invoices", G(A::BillingFinance, S::None)),
    ("POST", "/api/v1/billing/finance/exports", G(A::BillingFinance, S::None)),
    ("GET", "/api/v1/billing/finance/exports/{id}", G(A::BillingFinance, S::None)),
    ("GET", "/api/v1/billing/finance/exports/{id}/download", G(A::BillingFinance, S::None)),
    ("POST", "/api/v1/billing/customer-imports", G(A::BillingManage, S::None)),
    ("POST", "/api/v1/billing/customer-exports", G(A::BillingManage, S::None)),
    ("GET", "/api/v1/billing/customer-exports/{id}", G(A::BillingManage, S::None)),
    ("GET", "/api/v1/billing/customer-exports/{id}/download", G(A::BillingManage, S::None)),
    ("GET", "/api/v1/whatsapp/messages", G(A::WhatsAppRead, S::None)),
    ("GET", "/api/v1/whatsapp/messages/{id}", G(A::WhatsAppRead, S::WhatsAppMessage)),
    ("POST", "/api/v1/whatsapp/messages/{id}/retry", G(A::WhatsAppOperate, S::WhatsAppMessage)),
    ("POST", "/api/v1/whatsapp/messages/{id}/cancel", G(A::WhatsAppOperate, S::WhatsAppMessage)),
    ("GET", "/api/v1/whatsapp/summary", G(A::WhatsAppRead, S::None)),
    ("POST", "/api/v1/merchants/{id}/whatsapp/messages", G(A::WhatsAppSend, S::Merchant)),
    ("POST", "/api/v1/merchants/{id}/whatsapp/bulk", G(A::WhatsAppSend, S::Merchant)),
    ("GET", "/api/v1/merchants/{id}/whatsapp/sender", G(A::WhatsAppRead, S::Merchant)),
    ("PUT", "/api/v1/merchants/{id}/whatsapp/sender", G(A::WhatsAppManage, S::Merchant)),
    ("DELETE", "/api/v1/merchants/{id}/whatsapp/sender", G(A::WhatsAppManage, S::Merchant)),
    ("GET", "/api/v1/merchants/{id}/whatsapp/texts", G(A::WhatsAppRead, S::Merchant)),
    ("PUT", "/api/v1/merchants/{id}/whatsapp/texts/{kind}", G(A::WhatsAppManage, S::Merchant)),
    ("DELETE", "/api/v1/merchants/{id}/whatsapp/texts/{kind}", G(A::WhatsAppManage, S::Merchant)),
    ("GET", "/api/v1/merchants/{id}/whatsapp/settings", G(A::WhatsAppRead, S::Merchant)),
    ("PUT", "/api/v1/merchants/{id}/whatsapp/settings", G(A::WhatsAppManage, S::Merchant)),
    ("POST", "/api/v1/payments/midtrans/notification", Rule::Provider),
    ("POST", "/api/v1/payments/xendit/callback", Rule::Provider),
    ("POST", "/api/v1/payments/callback", Rule::Provider),
    ("GET", "/api/v1/whatsapp/webhook", Rule::Provider),
    ("POST", "/api/v1/whatsapp/webhook", Rule::Provider),
];

/// The rule of a route (method and path template), if it has one.
pub fn rule_for(method: &str, path: &str) -> Option<Rule> {
    RULES
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path)
        .map(|(_, _, rule)| *rule)
}

/// The caller's source address: the TCP peer (a reverse proxy's `X-Forwarded-For` is not
/// trusted: a client could write anything there).
pub fn source_of(parts: &axum::http::Extensions) -> String {
    parts.get::<ConnectInfo<SocketAddr>>().map_or_else(
        || "unknown".to_owned(),
        |ConnectInfo(addr)| addr.ip().to_string(),
    )
}

/// Origin of the request, for lockout and audit rows.
#[derive(Debug, Clone)]
pub struct Meta(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Meta(RequestMeta {
            source: source_of(&parts.extensions),
            request_id: current_request_id(),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(200).collect()),
        }))
    }
}

/// The merchant a list must be limited to: the caller's own for a merchant user, else
/// whatever the query asked for.
#[derive(Debug, Clone, Default)]
pub struct MerchantScope(pub Option<String>);

impl MerchantScope {
    /// The merchant filter to use: a merchant user's own merchant; asking for another one is
    /// `404` (as for any of its rows).
    pub fn apply(&self, requested: Option<String>) -> Result<Option<String>, ApiError> {
        match (&self.0, requested) {
            (Some(mine), Some(asked)) if *mine != asked => Err(GatewayError::NotFound {
                entity: "merchant",
                id: asked,
            }
            .into()),
            (Some(mine), _) => Ok(Some(mine.clone())),
            (None, asked) => Ok(asked),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MerchantScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Principal>() {
            Some(principal) => Ok(MerchantScope(principal.merchant_id.clone())),
            // The guard runs before every handler that asks; no principal is a wiring bug.
            None => Err(ApiError::internal(
                "merchant scope asked for outside the guard",
            )),
        }
    }
}

/// The caller, as the guard decided.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::internal("caller asked for outside the guard"))
    }
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The guard on every protected route: authenticate, look up the route's rule, check the
/// matrix, scope merchant users to their rows, run the handler, audit a write.
///
/// A write's handler runs in an audit scope (`gema_store::audit_scope`): its first write
/// transaction commits the audit row with it, or fails with it (a 5xx, nothing written).
/// Every guarded write commits on this task (the handler's), which the scope needs: a
/// task-local does not follow `tokio::spawn` or a channel. A write that would go through
/// another task (a commit loop, a worker) must send along
/// `gema_store::CarriedAuditScope::current()` and `enter` it there. What handlers leave to
/// other tasks today is follow-up, not the audited write: a downlink's publish outcome, the
/// config pusher's retries, the relay's delivery results of a re-queued announcement, and
/// the cluster signal (a `NOTIFY`, no row).
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return ApiError::internal("guard ran on an unmatched route").into_response();
    };
    let Some(rule) = rule_for(method.as_str(), &route) else {
        tracing::error!(%method, %route, "route has no permission rule; refusing it");
        return ApiError::internal(format!("no permission rule for {method} {route}"))
            .into_response();
    };
    let (action, scope) = match rule {
        Rule::Guarded(action, scope) => (action, scope),
        Rule::Public | Rule::Provider => return next.run(req).await,
    };

    let source = source_of(req.extensions());
    let is_write = method != Method::GET && method != Method::HEAD;
    if is_write
        && let Err(err) = state
            .auth
            .check_rate(LimitClass::Write, &format!("source:{source}"))
    {
        return ApiError::from(err).into_response();
    }
    let Some(token) = bearer(&req) else {
        return ApiError::unauthorized("missing bearer token: send Authorization: Bearer <token>")
            .into_response();
    };
    let principal = match state.auth.authenticate(token).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return ApiError::unauthorized("invalid or revoked token").into_response(),
        Err(err) => return ApiError::from(err).into_response(),
    };
    if is_write && let Err(err) = state.auth.check_rate(LimitClass::Write, &principal.actor) {
        return ApiError::from(err).into_response();
    }
    let meta = RequestMeta {
        source,
        request_id: current_request_id(),
        user_agent: None,
    };
    let target = req.uri().path().to_owned();
    let secret = shows_secret(&method, &route, action);
    let mut before = None;
    // The audit row of a write, before the handler runs: its first write transaction
    // inserts it (`gema_store::audit_scope`), so the write never commits without it.
    let audit_entry = |before: &Option<serde_json::Value>, outcome: String| NewAuditEntry {
        actor: principal.actor.clone(),
        action: action.name().into(),
        target: Some(target.clone()),
        outcome,
        before_json: before.as_ref().map(|v| v.to_string()),
        ..state.auth.entry(&meta)
    };

    let mut handler = AuditedRun::default();
    let response = if !principal.may(action) {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("your role may not {}", action.name()),
        )
        .with_details(serde_json::json!({ "action": action.name() }))
        .into_response()
    } else {
        match check_scope(&state, &principal, scope, &target).await {
            Err(err) => ApiError::from(err).into_response(),
            Ok(()) => {
                if is_write {
                    before = snapshot(&state, scope, &target).await;
                    handler.entry = Some(audit_entry(&before, String::new()));
                }
                req.extensions_mut().insert(principal.clone());
                let idempotency_key = req.headers().get(IDEMPOTENCY_KEY).cloned();
                match idempotency_key {
                    Some(key) if method == Method::POST || method == Method::PATCH => {
                        idempotent(&state, &principal, &key, secret, &mut handler, req, next).await
                    }
                    _ => handler.run(req, next).await,
                }
            }
        }
    };

    if !is_write {
        return response;
    }
    // The row after the write is the response itself, unless it carries a secret or the
    // handler gave a summary instead ([`AuditAfter`]).
    let status = response.status();
    let summary = response
        .extensions()
        .get::<AuditAfter>()
        .map(|AuditAfter(v)| v.to_string());
    let (response, after) = if let Some(summary) = summary {
        (response, Some(summary))
    } else if status.is_success() && !secret {
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => {
                let after = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .map(|v| v.to_string());
                (
                    Response::from_parts(parts, axum::body::Body::from(bytes)),
                    after,
                )
            }
            Err(err) => (
                ApiError::internal(format!("reading the response: {err}")).into_response(),
                None,
            ),
        }
    } else {
        (response, None)
    };
    let outcome = status.as_u16().to_string();
    match handler.written {
        // The write committed with its row; now the row learns how the request ended.
        Some(id) => match state
            .auth
            .finish_audit(&id, &outcome, after.as_deref())
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::error!(audit_id = %id, "the write's audit row is missing"),
            // The row exists (outcome "committed"); failing the response now would invite
            // a retry of a write that happened.
            Err(err) => {
                tracing::error!(error = %err, audit_id = %id, "finishing the audit row failed");
            }
        },
        // Nothing committed (refused, invalid, failed): a row for the attempt.
        None => {
            let entry = NewAuditEntry {
                after_json: after,
                ..audit_entry(&before, outcome)
            };
            if let Err(err) = state.auth.audit(entry).await {
                tracing::error!(error = %err, "writing the audit row failed");
            }
        }
    }
    response
}

/// What a write's audit row keeps as `after` instead of the response body, when the body
/// is too large or too personal to keep (the customer import's rows): a handler puts it in
/// the response's extensions.
#[derive(Debug, Clone)]
pub struct AuditAfter(pub serde_json::Value);

/// The handler's run: in an audit scope when `entry` is the row of a write; afterwards
/// `written` is the id of the row if the handler committed a write (which carried it).
#[derive(Debug, Default)]
struct AuditedRun {
    entry: Option<NewAuditEntry>,
    written: Option<String>,
}

impl AuditedRun {
    async fn run(&mut self, req: Request, next: Next) -> Response {
        match self.entry.take() {
            Some(entry) => {
                let (response, written) = gema_store::audit_scope(entry, next.run(req)).await;
                self.written = written;
                response
            }
            None => next.run(req).await,
        }
    }
}

/// The row a write is about to change, as the API shows it, for the audit row's `before`.
async fn snapshot(state: &AppState, scope: Scope, path: &str) -> Option<serde_json::Value> {
    use crate::views::billing_finance::BillingSettings;
    use crate::views::payments::Transaction;
    use crate::views::registry::{Device, Merchant, Outlet, Terminal};
    use crate::views::settlement::{BankAccount, Batch};
    use crate::views::whatsapp::{Message, Sender, Settings};
    let id = scope.id_of(path)?;
    let value = match scope {
        Scope::None => return None,
        // As the API shows them: never the sender's token or its headers' values.
        Scope::Merchant if path.ends_with("/whatsapp/sender") => {
            serde_json::to_value(state.whatsapp.sender(id).await.ok()?.map(Sender::from))
        }
        Scope::Merchant if path.ends_with("/whatsapp/settings") => serde_json::to_value(
            Settings::from(state.whatsapp.merchant_settings(id).await.ok()?),
        ),
        // Messages written and texts: nothing there before.
        Scope::Merchant if path.contains("/whatsapp/") => return None,
        // The settings as the API shows them: no webhook secret, no logo bytes.
        Scope::Merchant
            if path.ends_with("/billing-settings") || path.ends_with("/billing-logo") =>
        {
            serde_json::to_value(BillingSettings::from(
                state.billing.merchant_settings(id).await.ok()?,
            ))
        }
        Scope::Merchant if path.ends_with("/bank-account") => serde_json::to_value(
            BankAccount::new(state.settlement.bank_account(id).await.ok()?, false),
        ),
        Scope::Merchant => {
            serde_json::to_value(Merchant::from(state.registry.merchant(id).await.ok()?))
        }
        Scope::Outlet => serde_json::to_value(Outlet::from(state.registry.outlet(id).await.ok()?)),
        Scope::Terminal => {
            serde_json::to_value(Terminal::from(state.registry.terminal(id).await.ok()?))
        }
        Scope::Device => serde_json::to_value(Device::from(state.registry.device(id).await.ok()?)),
        Scope::Transaction => serde_json::to_value(Transaction::from(
            state.payments.transaction(id).await.ok()?,
        )),
        Scope::SettlementBatch => {
            serde_json::to_value(Batch::new(state.settlement.batch(id).await.ok()?, false))
        }
        Scope::BillingCustomer => serde_json::to_value(crate::views::billing::Customer::from(
            state.billing.customer(id).await.ok()?,
        )),
        Scope::BillingInvoice => serde_json::to_value(crate::views::billing::Invoice::from(
            state.billing.invoice(id).await.ok()?,
        )),
        Scope::WhatsAppMessage => serde_json::to_value(Message::from(
            state.whatsapp.message(id).await.ok()?.message,
        )),
    };
    value.ok()
}

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on a response that replays a stored one.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Whether the route's response carries a secret shown only once (a device secret, an API
/// token, a TOTP secret or recovery codes): such a response is never stored, neither for
/// idempotent replay nor as the audit row's `after`.
fn shows_secret(method: &Method, route: &str, action: Action) -> bool {
    action == Action::DeviceCredentials
        || (*method == Method::POST && matches!(route, "/api/v1/devices" | "/api/v1/api-tokens"))
        || route.starts_with("/api/v1/auth/totp/")
}

/// Runs a write under its `Idempotency-Key`: the first response (unless 5xx) is kept and
/// replayed; the same key with another request is 422; a retry while the first still runs
/// waits for it, then 409.
async fn idempotent(
    state: &AppState,
    principal: &Principal,
    key: &axum::http::HeaderValue,
    secret: bool,
    handler: &mut AuditedRun,
    req: Request,
    next: Next,
) -> Response {
    let Some(key) = key.to_str().ok().filter(|k| idempotency::valid_key(k)) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
        .with_details(serde_json::json!({ "field": "Idempotency-Key" }))
        .into_response();
    };
    let limit = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(crate::extract::BODY_LIMIT_BYTES, |route| {
            body_limit(req.method().as_str(), route.as_str())
        });
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body exceeds {limit} bytes"),
            )
            .into_response();
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let hash = idempotency::request_hash(parts.method.as_str(), &path, &bytes);
    let actor = &principal.actor;
    match state.auth.begin_idempotency(actor, key, &hash).await {
        Err(err) => ApiError::from(err).into_response(),
        Ok(IdempotencyBegin::Mismatch) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        )
        .into_response(),
        Ok(IdempotencyBegin::InProgress) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_progress",
            "a request with this Idempotency-Key is still running; retry later",
        )
        .into_response(),
        Ok(IdempotencyBegin::Replay { status, body }) => {
            let Some(body) = body else {
                return ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotent_response_not_kept",
                    "this Idempotency-Key's request is done, and its response carried a secret \
                     shown only once; rotate the credential for a new one",
                )
                .with_details(serde_json::json!({ "status": status }))
                .into_response();
            };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response =
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
            response.headers_mut().insert(
                IDEMPOTENT_REPLAYED,
                axum::http::HeaderValue::from_static("true"),
            );
            response
        }
        Ok(IdempotencyBegin::Started) => {
            let req = Request::from_parts(parts, axum::body::Body::from(bytes));
            // Only the handler runs in the audit scope: the key's own bookkeeping carries
            // no audit row.
            let response = handler.run(req, next).await;
            let (parts, body) = response.into_parts();
            let status = parts.status;
            let bytes = match axum::body::to_bytes(body, usize::MAX).await {
                Ok(bytes) => bytes,
                Err(err) => {
                    let _ = state.auth.abandon_idempotency(actor, key).await;
                    return ApiError::internal(format!("reading the response: {err}"))
                        .into_response();
                }
            };
            let kept = if status.is_server_error() {
                state.auth.abandon_idempotency(actor, key).await
            } else {
                let text = String::from_utf8_lossy(&bytes);
                let body = (!secret).then_some(text.as_ref());
                state
                    .auth
                    .finish_idempotency(actor, key, status.as_u16(), body)
                    .await
            };
            if let Err(err) = kept {
                tracing::error!(error = %err, "storing the idempotent response failed");
            }
            Response::from_parts(parts, axum::body::Body::from(bytes))
        }
    }
}

/// Rate limits of the routes without a bearer token: login and refresh, and payment
/// callbacks, per source address. Health and the OpenAPI document are not limited.
pub async fn limit_public(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let class = match route.and_then(|r| rule_for(req.method().as_str(), &r)) {
        Some(Rule::Public) => Some(LimitClass::Login),
        Some(Rule::Provider) => Some(LimitClass::Callback),
        _ => None,
    };
    if let Some(class) = class {
        let key = format!("source:{}", source_of(req.extensions()));
        if let Err(err) = state.auth.check_rate(class, &key) {
            return ApiError::from(err).into_response();
        }
    }
    next.run(req).await
}

/// For a merchant user, the row named by the path's id must be its merchant's.
async fn check_scope(
    state: &AppState,
    principal: &Principal,
    scope: Scope,
    path: &str,
) -> Result<(), GatewayError> {
    owns(
        state,
        principal,
        scope,
        scope.id_of(path).unwrap_or_default(),
    )
    .await
}

/// For a merchant user, the row `id` of kind `scope` must be its merchant's: else
/// `NotFound`, exactly as for a missing row. Operators pass. The console asks the same.
pub async fn owns(
    state: &AppState,
    principal: &Principal,
    scope: Scope,
    id: &str,
) -> Result<(), GatewayError> {
    let Some(mine) = &principal.merchant_id else {
        return Ok(());
    };
    let (entity, owner) = match scope {
        Scope::None => return Ok(()),
        Scope::Merchant => ("merchant", Some(id.to_owned())),
        Scope::Outlet => ("outlet", owner_of_outlet(state, id).await?),
        Scope::Terminal => ("terminal", owner_of_terminal(state, id).await?),
        Scope::Device => {
            let device = state.registry.device(id).await?;
            let owner = match device.terminal_id {
                Some(terminal) => owner_of_terminal(state, &terminal).await?,
                None => None,
            };
            ("device", owner)
        }
        Scope::Transaction => (
            "transaction",
            Some(state.payments.transaction(id).await?.merchant_id),
        ),
        Scope::SettlementBatch => (
            "settlement batch",
            Some(state.settlement.batch(id).await?.merchant_id),
        ),
        Scope::BillingCustomer => (
            "customer",
            Some(state.billing.customer(id).await?.merchant_id),
        ),
        Scope::BillingInvoice => (
            "invoice",
            Some(state.billing.invoice(id).await?.merchant_id),
        ),
        Scope::WhatsAppMessage => (
            "whatsapp message",
            state.whatsapp.message(id).await?.message.merchant_id,
        ),
    };
    if owner.as_deref() == Some(mine.as_str()) {
        Ok(())
    } else {
        Err(GatewayError::NotFound {
            entity,
            id: id.to_owned(),
        })
    }
}

async fn owner_of_outlet(state: &AppState, id: &str) -> Result<Option<String>, GatewayError> {
    Ok(Some(state.registry.outlet(id).await?.merchant_id))
}

pub(crate) async fn owner_of_terminal(
    state: &AppState,
    id: &str,
) -> Result<Option<String>, GatewayError> {
    let terminal = state.registry.terminal(id).await?;
    owner_of_outlet(state, &terminal.outlet_id).await
}
