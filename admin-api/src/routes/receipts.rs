//! The public receipt and pay pages, outside `/api/v1`: no login, no bearer token, no JSON.
//!
//! `GET /r/{token}` (A4; `?format=thermal` for a 58 mm roll), `GET /r/{token}/logo` (the
//! merchant's logo, only beside a paid invoice's receipt) and the two stylesheets. An
//! unknown token and an unpaid invoice get the same 404 page, found through the token's
//! unique index (one lookup, nothing compared byte by byte here).
//!
//! `GET /p/{token}`, the link in a bill reminder: an unpaid invoice's bill with its QRIS
//! (one pending code per invoice, shared by every visit), `303` to `/r/{token}` once it is
//! paid, the same 404 page for an unknown token. A visit may issue the invoice's QRIS (a
//! pending transaction that expires unpaid), so a link preview issues at most the one
//! code a customer would have seen. Every answer carries a
//! strict CSP, `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` (the token is in the
//! URL), `Cache-Control: no-store` and `X-Robots-Tag: noindex`.
//!
//! Requests are rate-limited per source address with the callbacks' class. A token is 128
//! random bits or more: guessing one at any rate a network allows is out of reach, so the
//! limit is there against load, not against guessing.

use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use gema_gateway::auth::ratelimit::LimitClass;
use gema_gateway::billing::PayPage;

use crate::authz::source_of;
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::receipts::{
    CSP, RECEIPT_CSS, THERMAL_CSS, not_found_page, pay_page, receipt_page,
};

/// The receipt routes, public.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/r/receipt.css", get(receipt_css))
        .route("/r/thermal.css", get(thermal_css))
        .route("/r/{token}", get(page))
        .route("/r/{token}/logo", get(logo))
        .route("/p/{token}", get(pay))
        .route_layer(axum::middleware::from_fn_with_state(state, limit))
}

async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let key = format!("receipt-source:{}", source_of(req.extensions()));
    if let Err(err) = state.auth.check_rate(LimitClass::Callback, &key) {
        return ApiError::from(err).into_response();
    }
    next.run(req).await
}

/// The headers of every receipt answer.
fn secured(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    response
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

fn not_found() -> Response {
    secured(
        (StatusCode::NOT_FOUND, not_found_page()).into_response(),
        HTML,
    )
}

async fn page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    // `format=thermal` for a 58 mm roll; anything else is A4.
    let thermal = query.is_some_and(|q| q.split('&').any(|pair| pair == "format=thermal"));
    match state.billing.receipt(&token).await {
        Ok(Some(receipt)) => secured(
            (StatusCode::OK, receipt_page(&receipt, &token, thermal)).into_response(),
            HTML,
        ),
        Ok(None) => not_found(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn pay(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.billing.pay_page(&token).await {
        Ok(Some(PayPage::Unpaid(invoice))) => {
            secured((StatusCode::OK, pay_page(&invoice)).into_response(), HTML)
        }
        // The token passed `plausible_token`: URL-safe characters only.
        Ok(Some(PayPage::Paid)) => {
            secured(Redirect::to(&format!("/r/{token}")).into_response(), HTML)
        }
        Ok(None) => not_found(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn logo(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.billing.receipt_logo(&token).await {
        Ok(Some(logo)) => {
            let mut response =
                super::billing_finance::image_response(logo, "no-store").into_response();
            for (name, value) in [
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::REFERRER_POLICY, "no-referrer"),
            ] {
                response
                    .headers_mut()
                    .insert(name, HeaderValue::from_static(value));
            }
            response
        }
        Ok(None) => not_found(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn receipt_css() -> Response {
    secured(RECEIPT_CSS.into_response(), CSS)
}

async fn thermal_css() -> Response {
    secured(THERMAL_CSS.into_response(), CSS)
}
