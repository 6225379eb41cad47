//! The permission walk: every route in the OpenAPI document, called with no token, with
//! every operator role, and with every role of a merchant user of ANOTHER merchant, against
//! the rule table (`authz::RULES`) and the matrix (`auth::permits`). A route without a rule
//! fails here, loudly, by name.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use gema_admin_api::authz::{RULES, Rule, Scope, rule_for};
use gema_gateway::auth::{AdminRole, MerchantRole, Role, permits};
use serde_json::json;

use crate::helpers::{MIDTRANS_KEY, TestApi};

/// One merchant's rows.
struct Rows {
    merchant: String,
    outlet: String,
    terminal: String,
    device: String,
    transaction: String,
    /// A command queued for `device`.
    command: String,
    /// A pending settlement batch of the merchant, with one adjustment.
    batch: String,
    /// A billing customer of the merchant, and its invoice.
    customer: String,
    invoice: String,
    /// A WhatsApp message of the merchant.
    wa_message: String,
}

impl Rows {
    fn ids(&self) -> [&str; 5] {
        [
            &self.merchant,
            &self.outlet,
            &self.terminal,
            &self.device,
            &self.transaction,
        ]
    }

    fn id_for(&self, scope: Scope) -> Option<&str> {
        match scope {
            Scope::Merchant => Some(&self.merchant),
            Scope::Outlet => Some(&self.outlet),
            Scope::Terminal => Some(&self.terminal),
            Scope::Device => Some(&self.device),
            Scope::Transaction => Some(&self.transaction),
            Scope::SettlementBatch => Some(&self.batch),
            Scope::BillingCustomer => Some(&self.customer),
            Scope::BillingInvoice => Some(&self.invoice),
            Scope::WhatsAppMessage => Some(&self.wa_message),
            Scope::None => None,
        }
    }
}

/// A merchant with an outlet, a terminal, a bound device and a paid transaction.
async fn rows(api: &TestApi, tag: &str) -> Rows {
    let (merchant, outlet, terminal) = api.terminal(true).await;
    let (device, _) = api.device(&format!("SN-{tag}")).await;
    let bound = api
        .post(
            &format!("/api/v1/devices/{device}/bind"),
            json!({ "terminal_id": terminal }),
        )
        .await;
    assert_eq!(bound.status, StatusCode::OK);
    let order = format!("ORDER-{tag}");
    let created = api
        .post(
            "/api/v1/transactions",
            json!({ "terminal_id": terminal, "order_ref": order, "amount": 25_000 }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let paid = crate::payments::notify(
        api,
        &crate::payments::notification(&order, "settlement", "25000.00", MIDTRANS_KEY),
    )
    .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    let command = api
        .post(
            &format!("/api/v1/devices/{device}/commands"),
            json!({ "action": { "name": "get_status" } }),
        )
        .await;
    assert_eq!(command.status, StatusCode::CREATED, "{}", command.body);
    let batch = settled_batch(api, &merchant).await;
    let (customer, invoice) = crate::billing::invoiced_customer(api, &merchant, tag).await;
    // A logo, so the owner's read of it (the positive control) finds one.
    let logo = crate::billing_finance::put_logo(
        api,
        &api.token,
        &merchant,
        "image/png",
        crate::billing_finance::png(16, 16),
    )
    .await;
    assert_eq!(logo.status, StatusCode::OK, "{}", logo.body);
    let wa_message = crate::whatsapp::stored_message(api, &merchant).await;
    Rows {
        wa_message,
        batch,
        customer,
        invoice,
        command: command.body["id"].as_str().unwrap().to_string(),
        merchant,
        outlet,
        terminal,
        device,
        transaction: created.body["id"].as_str().unwrap().to_string(),
    }
}

/// A bank account, a minimum of Rp 1, a batch of the paid transaction, and an adjustment.
pub(crate) async fn settled_batch(api: &TestApi, merchant: &str) -> String {
    let bank = api
        .call(
            "PUT",
            &format!("/api/v1/merchants/{merchant}/bank-account"),
            Some(
                json!({ "bank_code": "014", "account_number": "1234 5678 90",
                         "account_holder": "Warung Sari" }),
            ),
        )
        .await;
    assert_eq!(bank.status, StatusCode::OK, "{}", bank.body);
    let settings = api
        .call(
            "PUT",
            &format!("/api/v1/merchants/{merchant}/payout-settings"),
            Some(json!({ "schedule": "manual", "minimum_amount": 1, "cutoff_time": "23:59" })),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    let made = api
        .post(
            "/api/v1/settlement-batches",
            json!({ "merchant_ids": [merchant] }),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let batch = made.body["batches"][0]["id"].as_str().unwrap().to_string();
    let adjusted = api
        .post(
            &format!("/api/v1/settlement-batches/{batch}/adjustments"),
            json!({ "adjustment_type": "manual", "amount": 100, "reason": "promo" }),
        )
        .await;
    assert_eq!(adjusted.status, StatusCode::CREATED, "{}", adjusted.body);
    batch
}

fn role_email(role: Role, merchant_tag: &str) -> String {
    match role {
        Role::Admin(r) => format!("{}@ops.test", r.as_str()),
        Role::Merchant(r) => format!("{}@{merchant_tag}.test", r.as_str()),
    }
}

/// The path with `{id}` filled in with merchant A's row (or a made-up id).
fn concrete(path: &str, scope: Scope, a: &Rows, some_user: &str) -> String {
    let id = match (scope, path) {
        (Scope::None, p) if p.starts_with("/api/v1/users/") => some_user.to_string(),
        (Scope::None, _) => "ses_00000000000000000000000000".to_string(),
        (scope, _) => a.id_for(scope).unwrap().to_string(),
    };
    path.replace("{id}", &id)
        .replace("{command_id}", &a.command)
        .replace("{kind}", "reminder")
}

/// The writes merchant users make (everything else of theirs is read-only): their billing
/// customers (add; phone and discount), marking their invoices paid or unpaid, and (owners)
/// their billing settings and logo, and their own billing finance exports; WhatsApp: writing
/// to their customers, and (owners) retrying and cancelling their messages and their sender,
/// texts and settings.
fn merchant_writes(method: &str, path: &str) -> bool {
    path.contains("/billing")
        || path.contains("/whatsapp/")
        || matches!(
            (method, path),
            ("POST", "/api/v1/customers")
                | ("PATCH", "/api/v1/customers/{id}")
                | ("POST", "/api/v1/invoices/{id}/pay")
                | ("POST", "/api/v1/invoices/{id}/unpay")
                | ("POST", "/api/v1/invoices/{id}/qris")
        )
}

/// Who must reach the sensitive routes, stated independently of the rule table, so a wrong
/// line in the table (not only a missing one) fails.
fn intended(method: &str, path: &str) -> Option<&'static [&'static str]> {
    const MONEY: &[&str] = &["admin:admin", "admin:finance"];
    match (method, path) {
        (_, p) if p.starts_with("/api/v1/billing/finance") => Some(&[
            "admin:admin",
            "admin:finance",
            "merchant:owner",
            "merchant:finance",
        ]),
        (_, p) if p.ends_with("/billing-settings") => {
            Some(&["admin:admin", "admin:ops", "merchant:owner"])
        }
        (m, p) if m != "GET" && p.ends_with("/billing-logo") => {
            Some(&["admin:admin", "admin:ops", "merchant:owner"])
        }
        ("POST", p) if p.starts_with("/api/v1/merchants/") && p.contains("/whatsapp/") => Some(&[
            "admin:admin",
            "admin:ops",
            "merchant:owner",
            "merchant:finance",
            "merchant:ops",
        ]),
        (m, p) if m != "GET" && p.contains("/whatsapp/") => {
            Some(&["admin:admin", "admin:ops", "merchant:owner"])
        }
        ("GET", p) if p.contains("/whatsapp/") => Some(&[
            "admin:admin",
            "admin:finance",
            "admin:ops",
            "merchant:owner",
            "merchant:finance",
            "merchant:ops",
        ]),
        (_, p) if p.contains("/credentials/") => Some(&["admin:admin", "admin:ops"]),
        (_, p) if p.starts_with("/api/v1/users") => Some(&["admin:admin"]),
        (_, p) if p.starts_with("/api/v1/api-tokens") => Some(&["admin:admin"]),
        (_, "/api/v1/audit-logs") => Some(&["admin:admin", "admin:support"]),
        (_, "/api/v1/ledger-entries") => Some(&[
            "admin:admin",
            "admin:finance",
            "merchant:owner",
            "merchant:finance",
        ]),
        ("POST", "/api/v1/transactions") => Some(MONEY),
        ("GET", "/api/v1/merchants/{id}/bank-account") => None,
        ("GET", "/api/v1/dashboard/summary") => None,
        ("GET", "/api/v1/reconciliation/settlement-batches") => Some(MONEY),
        (_, p)
            if method != "GET"
                && (p.contains("/settlement")
                    || p.contains("/bank-account")
                    || p.contains("/payout-settings")) =>
        {
            Some(MONEY)
        }
        ("GET", p)
            if p.contains("/settlement")
                || p.contains("/payout-settings")
                || p.ends_with("/balance") =>
        {
            Some(&[
                "admin:admin",
                "admin:finance",
                "merchant:owner",
                "merchant:finance",
            ])
        }
        ("POST", p) if p.ends_with("/dynamic-qr") => Some(MONEY),
        ("POST", "/api/v1/customers") | ("PATCH", "/api/v1/customers/{id}") => {
            Some(&["admin:admin", "admin:ops", "merchant:owner", "merchant:ops"])
        }
        ("POST", p) if p.starts_with("/api/v1/invoices/") => Some(&[
            "admin:admin",
            "admin:finance",
            "admin:ops",
            "merchant:owner",
            "merchant:finance",
            "merchant:ops",
        ]),
        (_, p)
            if method != "GET"
                && (p.starts_with("/api/v1/packages")
                    || p.starts_with("/api/v1/customers/")
                    || p == "/api/v1/billing/invoice-runs") =>
        {
            Some(&["admin:admin", "admin:ops"])
        }
        ("POST", p) if p.ends_with("/commands") => {
            Some(&["admin:admin", "admin:ops", "admin:support"])
        }
        (_, p) if p.contains("/config") && method != "GET" => Some(&["admin:admin", "admin:ops"]),
        (_, p) if p.ends_with("/messages") => Some(&[
            "admin:admin",
            "admin:finance",
            "admin:ops",
            "admin:support",
            "admin:viewer",
        ]),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_has_a_rule_and_the_matrix_holds_for_every_role() {
    let api = TestApi::with_providers(true).await;
    let a = rows(&api, "a").await;
    let b = rows(&api, "b").await;

    // Users: every operator role (admin last: it retires the bootstrap token), every
    // merchant role at B, and A's owner as the positive control for scoping.
    let mut roles: Vec<Role> = Role::all();
    roles.sort_by_key(|r| *r == Role::Admin(AdminRole::Admin));
    api.user("owner@a.test", "owner", Some(&a.merchant)).await;
    // The target of /users/{id} routes: nobody's token depends on it.
    let spare = api.user("spare@ops.test", "viewer", None).await;
    for role in &roles {
        let (role_name, merchant) = match role {
            Role::Admin(r) => (r.as_str(), None),
            Role::Merchant(r) => (r.as_str(), Some(b.merchant.as_str())),
        };
        api.user(&role_email(*role, "b"), role_name, merchant).await;
    }
    let mut tokens = Vec::new();
    for role in &roles {
        let pair = api.login(&role_email(*role, "b")).await;
        tokens.push((*role, pair["access_token"].as_str().unwrap().to_string()));
    }
    let owner_a = api.login("owner@a.test").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    let doc = api
        .call_as(None, "GET", "/api/v1/openapi.json", None, None)
        .await
        .body;
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "patch", "put", "delete"] {
            if item.get(method).is_some() {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    let documented: BTreeSet<_> = routes.iter().cloned().collect();
    let stale: Vec<_> = RULES
        .iter()
        .filter(|(m, p, _)| !documented.contains(&(m.to_string(), p.to_string())))
        .collect();
    assert!(
        stale.is_empty(),
        "rules for routes that do not exist: {stale:?}"
    );
    let missing: Vec<_> = routes
        .iter()
        .filter(|(_, p)| !p.starts_with("/health") && !p.ends_with("/openapi.json"))
        .filter(|(m, p)| rule_for(m, p).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "ROUTES WITHOUT A PERMISSION RULE (add a line to admin-api/src/authz.rs RULES): \
         {missing:?}"
    );
    // Logging out kills the caller's token: walk it last.
    routes.sort_by_key(|(_, p)| p.ends_with("/auth/logout"));

    let mut checked = 0;
    for (method, path) in &routes {
        let Some(rule) = rule_for(method, path) else {
            continue; // health and the document itself: public
        };
        let (action, scope) = match rule {
            Rule::Public => {
                let r = api.call_as(None, method, path, Some(json!({})), None).await;
                assert!(
                    r.status != StatusCode::UNAUTHORIZED && r.status != StatusCode::FORBIDDEN,
                    "{method} {path} is public but answered {}",
                    r.status
                );
                continue;
            }
            Rule::Provider => {
                let r = api.call_as(None, method, path, Some(json!({})), None).await;
                assert!(
                    !r.body["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("bearer"),
                    "{method} {path} is a provider callback but asks for a bearer token"
                );
                continue;
            }
            Rule::Guarded(action, scope) => (action, scope),
        };
        let allowed: Vec<String> = Role::all()
            .into_iter()
            .filter(|r| permits(*r, action))
            .map(|r| r.to_string())
            .collect();
        if let Some(intended) = intended(method, path) {
            assert_eq!(allowed, intended, "{method} {path} reaches the wrong roles");
        }
        if method != "GET" && !path.starts_with("/api/v1/auth/") && !merchant_writes(method, path) {
            assert!(
                allowed.iter().all(|r| r.starts_with("admin:")),
                "merchant users are read-only, but {method} {path} allows {allowed:?}"
            );
        }
        let target = concrete(path, scope, &a, &spare);
        let body = (method != "GET" && method != "DELETE").then(|| json!({}));

        let anonymous = api.call_as(None, method, &target, body.clone(), None).await;
        assert_eq!(
            anonymous.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );

        for (role, token) in &tokens {
            let r = api
                .call_as(Some(token), method, &target, body.clone(), None)
                .await;
            let allowed = permits(*role, action);
            let what = format!(
                "{role} {method} {target} ({}): {} {}",
                action.name(),
                r.status,
                r.body
            );
            if !allowed {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "must be refused: {what}");
                assert_eq!(r.body["code"], "forbidden", "{what}");
                continue;
            }
            assert!(
                r.status != StatusCode::FORBIDDEN && r.status != StatusCode::UNAUTHORIZED,
                "must be allowed: {what}"
            );
            if let Role::Merchant(_) = role {
                if scope != Scope::None {
                    // A row of merchant A, asked for by a user of merchant B.
                    assert_eq!(r.status, StatusCode::NOT_FOUND, "must be hidden: {what}");
                } else {
                    let text = r.body.to_string();
                    for id in a.ids() {
                        assert!(!text.contains(id), "B's user sees A's {id}: {what}");
                    }
                    if method == "GET" && r.status == StatusCode::OK && path != "/api/v1/auth/me" {
                        assert!(
                            b.ids().iter().any(|id| text.contains(id))
                                || path.contains("/auth/")
                                || path == "/api/v1/packages",
                            "a list shows B's user its own rows: {what}"
                        );
                    }
                }
            }
            checked += 1;
        }

        // The positive control: A's owner reads A's rows.
        if method == "GET"
            && scope != Scope::None
            && permits(Role::Merchant(MerchantRole::Owner), action)
        {
            let r = api
                .call_as(Some(&owner_a), method, &target, None, None)
                .await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "A's owner reads {target}: {}",
                r.body
            );
        }
    }
    assert!(checked > 100, "the walk checked {checked} allowed calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_user_cannot_widen_a_list_with_query_filters() {
    let api = TestApi::with_providers(true).await;
    let a = rows(&api, "a").await;
    let b = rows(&api, "b").await;
    api.user("owner@b.test", "owner", Some(&b.merchant)).await;
    let token = api.login("owner@b.test").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        format!("/api/v1/outlets?merchant_id={}", a.merchant),
        format!("/api/v1/terminals?outlet_id={}", a.outlet),
        format!("/api/v1/devices?terminal_id={}", a.terminal),
        format!("/api/v1/transactions?merchant_id={}", a.merchant),
        format!("/api/v1/ledger-entries?merchant_id={}", a.merchant),
        format!("/api/v1/ledger-entries?transaction_id={}", a.transaction),
    ] {
        let r = api.call_as(Some(&token), "GET", &path, None, None).await;
        let text = r.body.to_string();
        for id in a.ids().into_iter().skip(1) {
            assert!(!text.contains(id), "{path} shows A's {id}");
        }
        if path.contains("merchant_id=") {
            // Naming another merchant is as if it did not exist.
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {text}");
        } else {
            // Filtering by A's rows finds nothing of A, and nothing of B either.
            assert_eq!(r.status, StatusCode::OK, "{path}: {text}");
            assert_eq!(r.body["items"], json!([]), "{path}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_device_shows_its_new_merchant_only_its_own_history() {
    let api = TestApi::new().await;
    let (_, _, terminal_a) = api.terminal(true).await;
    let (merchant_b, _, terminal_b) = api.terminal(true).await;
    let (device, _) = api.device("SN-MOVED").await;
    let bind = |terminal: String| {
        let api = &api;
        let device = device.clone();
        async move {
            let r = api
                .post(
                    &format!("/api/v1/devices/{device}/bind"),
                    json!({ "terminal_id": terminal }),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
    };
    bind(terminal_a.clone()).await;
    let r = api
        .call("POST", &format!("/api/v1/devices/{device}/unbind"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    bind(terminal_b.clone()).await;
    api.user("owner@b.test", "owner", Some(&merchant_b)).await;
    let token = api.login("owner@b.test").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/v1/devices/{device}/bindings");
    let all = api.get(&path).await;
    assert_eq!(all.body.as_array().unwrap().len(), 2);
    let mine = api.call_as(Some(&token), "GET", &path, None, None).await;
    assert_eq!(mine.status, StatusCode::OK);
    let mine = mine.body.as_array().unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["terminal_id"], terminal_b.as_str());
    assert!(!serde_json::to_string(mine).unwrap().contains(&terminal_a));
}
