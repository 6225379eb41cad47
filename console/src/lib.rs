//! The web console: server-rendered pages for operators and merchants, served by `gema serve`
//! on the admin HTTP listener beside `/api/v1`. **API Boundary**: browsers.
//!
//! It only knows HTTP: every page calls the gateway's services (the same [`AppState`] the API
//! handlers get) and asks the gateway's permission matrix ([`Principal::may`]) before it
//! shows a screen or a button, and again before it does what a form asks; a merchant user
//! only ever sees their own merchant's rows, exactly as in the API.
//!
//! - Pages are askama templates (`console/templates/`), compiled into the binary and checked
//!   at build time, HTML-escaped by default; the few assets (stylesheet, one script, icon,
//!   manifest) are embedded too. No Node build step, no CDN.
//! - Every page works as plain HTML. The one script (`assets/console.js`) only adds live
//!   updates from server-sent events ([`events`]) and the dialog niceties.
//! - Sessions ([`session`]): the login of [`gema_gateway::auth::Auth`] (password and TOTP),
//!   its access token in an `HttpOnly`, `SameSite=Strict` cookie, slid forward while used so
//!   the access lifetime is the idle timeout; a CSRF token on every form; a strict
//!   Content-Security-Policy without inline script, `X-Frame-Options: DENY` ([`headers`]).
//! - Bahasa Indonesia by default, English by choice ([`i18n`]); money as `Rp 25.000`, times
//!   in Asia/Jakarta ([`mod@format`]).
//!
//! It must never reach the store or the broker directly, and never show a secret twice.

pub mod assets;
pub mod events;
pub mod format;
pub mod frame;
pub mod headers;
pub mod i18n;
pub mod pages;
pub mod session;

use axum::Router;
use axum::routing::{get, post};
use gema_admin_api::AppState;
pub use gema_gateway::auth::Principal;

/// The console's routes, ready to merge beside the API's router (which keeps the fallback).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/login", get(pages::login::form).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route("/preferences", get(pages::preferences::set))
        .route("/devices", get(pages::devices::registry))
        .route("/devices/{id}", get(pages::device::page))
        .route(
            "/devices/{id}/config/push",
            post(pages::device::push_config),
        )
        .route("/devices/{id}/bind", post(pages::device::bind))
        .route("/devices/{id}/unbind", post(pages::device::unbind))
        .route("/devices/{id}/rotate", post(pages::device::rotate))
        .route(
            "/devices/{id}/revoke",
            get(pages::device::revoke_confirm).post(pages::device::revoke),
        )
        .route("/transactions", get(pages::transactions::list))
        .route("/transactions/{id}", get(pages::transactions::detail))
        .route(
            "/transactions/{id}/retry-notification",
            post(pages::transactions::retry_notification),
        )
        .route("/events/payments", get(events::payments))
        .route("/events/devices", get(events::devices))
        .route(
            "/users",
            get(pages::people::users).post(pages::people::create_user),
        )
        .route("/roles", get(pages::people::roles))
        .route("/users/{id}/{change}", post(pages::people::set_disabled))
        .route(
            "/tokens",
            get(pages::people::tokens).post(pages::people::create_token),
        )
        .route("/tokens/{id}/revoke", post(pages::people::revoke_token))
        .route("/whatsapp", get(pages::whatsapp::queue))
        .route("/whatsapp/{id}", get(pages::whatsapp::message))
        .route("/whatsapp/{id}/retry", post(pages::whatsapp::retry))
        .route("/whatsapp/{id}/cancel", post(pages::whatsapp::cancel))
        .route("/assets/{name}", get(assets::serve))
        .route("/manifest.webmanifest", get(assets::manifest))
        .route("/settlement", get(pages::settlement::list))
        .route("/settlement/generate", post(pages::settlement::generate))
        .route("/settlement/{id}", get(pages::settlement::detail))
        .route(
            "/settlement/{id}/export.csv",
            get(pages::settlement::export),
        )
        .route(
            "/settlement/{id}/mark-paid",
            post(pages::settlement::mark_paid),
        )
        .route(
            "/settlement/{id}/mark-failed",
            post(pages::settlement::mark_failed),
        )
        .route("/settlement/{id}/cancel", post(pages::settlement::cancel))
        .route(
            "/settlement/{id}/reprocess",
            get(pages::settlement::reprocess_confirm).post(pages::settlement::reprocess),
        )
        .route("/merchants", get(pages::merchants::list))
        .route("/merchants/{id}", get(pages::merchants::detail))
        .route("/merchants/{id}/approve", post(pages::merchants::approve))
        .route("/merchants/{id}/reject", post(pages::merchants::reject))
        .route("/merchants/{id}/suspend", post(pages::merchants::suspend))
        .route(
            "/billing/customers",
            get(pages::billing::customers).post(pages::customer_form::create),
        )
        .route(
            "/billing/customers/new",
            get(pages::customer_form::new_form),
        )
        .route(
            "/billing/customers/{id}/edit",
            get(pages::customer_form::edit_form).post(pages::customer_form::update),
        )
        .route(
            "/billing/import",
            get(pages::billing::import_form)
                .post(pages::billing::import)
                // The upload counts its own bytes against billing.import_max_bytes.
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/audit", get(pages::audit::log))
        .route(
            "/settings/receipt",
            get(pages::receipt::show).post(pages::receipt::save),
        )
        .route(
            "/settings/receipt/logo",
            get(pages::receipt::logo).post(pages::receipt::upload_logo),
        )
        // Billing: packages, a customer, invoices.
        .route(
            "/billing/packages",
            get(pages::packages::list).post(pages::packages::create),
        )
        .route(
            "/billing/packages/{id}",
            get(pages::packages::edit_form).post(pages::packages::update),
        )
        .route(
            "/billing/packages/{id}/deactivate",
            post(pages::packages::deactivate),
        )
        .route(
            "/billing/packages/{id}/activate",
            post(pages::packages::activate),
        )
        .route("/billing/customers/{id}", get(pages::customer::detail))
        .route(
            "/billing/customers/{id}/isolate",
            post(pages::customer::isolate),
        )
        .route(
            "/billing/customers/{id}/reactivate",
            post(pages::customer::reactivate),
        )
        .route("/billing/customers/{id}/stop", post(pages::customer::stop))
        .route("/billing/invoices", get(pages::invoices::list))
        .route("/billing/invoices/{id}", get(pages::invoices::detail))
        .route("/billing/invoices/{id}/pay", post(pages::invoices::pay))
        .route("/billing/invoices/{id}/unpay", post(pages::invoices::unpay))
        .route("/billing/invoices/{id}/qris", post(pages::invoices::qris))
        // Settlement adjustments, reconciliation runs, the nodes, device commands.
        .route(
            "/settlement/adjustments",
            get(pages::settlement::adjustments),
        )
        .route(
            "/settlement/{id}/adjustments",
            post(pages::settlement::adjust),
        )
        .route("/reconciliation", get(pages::reconciliation::list))
        .route(
            "/reconciliation/runs",
            post(pages::reconciliation::upload)
                // The upload counts its own bytes against the API's report limit.
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/reconciliation/batches",
            get(pages::reconciliation::batches),
        )
        .route("/reconciliation/{id}", get(pages::reconciliation::run))
        .route(
            "/reconciliation/{id}/rows.csv",
            get(pages::reconciliation::export),
        )
        .route(
            "/reconciliation/{id}/rerun",
            post(pages::reconciliation::rerun),
        )
        .route("/nodes", get(pages::nodes::list))
        .route("/devices/{id}/commands", post(pages::device::send_command))
        // Layers last: they wrap only the routes added before them.
        .layer(axum::Extension(std::sync::Arc::new(
            pages::overview::OverviewCache::default(),
        )))
        .layer(axum::middleware::from_fn(headers::secure))
        .with_state(state)
}
