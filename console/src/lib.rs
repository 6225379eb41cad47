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
//!   in Asia/Jakarta ([`format`]).
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
        .route("/events/devices", get(events::devices))
        .route("/whatsapp", get(pages::whatsapp::queue))
        .route("/whatsapp/{id}", get(pages::whatsapp::message))
        .route("/whatsapp/{id}/retry", post(pages::whatsapp::retry))
        .route("/whatsapp/{id}/cancel", post(pages::whatsapp::cancel))
        .route("/assets/{name}", get(assets::serve))
        .route("/manifest.webmanifest", get(assets::manifest))
        .layer(axum::Extension(std::sync::Arc::new(
            pages::overview::OverviewCache::default(),
        )))
        .layer(axum::middleware::from_fn(headers::secure))
        .with_state(state)
}
