//! Provider callbacks. Public routes: each provider authenticates with its own signature or
//! token, checked by the gateway against the exact bytes received. A provider without
//! credentials in the configuration is off, and its route answers 404.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use gema_gateway::payments::RawRequest;
use gema_gateway::payments::providers::Provider;

use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use crate::views::payments::CallbackAck;

async fn ingest(
    state: &AppState,
    provider: Provider,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<CallbackAck>> {
    let request = RawRequest {
        headers: headers
            .iter()
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|v| (name.as_str().to_ascii_lowercase(), v.to_string()))
            })
            .collect(),
        body: body.to_vec(),
    };
    let outcome = state.payments.ingest(provider, request).await?;
    use gema_store::PaymentOutcome::*;
    let transaction_id = match &outcome {
        Applied { transaction_id, .. }
        | Stale { transaction_id }
        | AmountMismatch { transaction_id } => Some(transaction_id.clone()),
        Duplicate { transaction_id } => transaction_id.clone(),
        Test | UnknownOrder => None,
    };
    Ok(Json(CallbackAck {
        status: "ok".into(),
        outcome: outcome.as_str().into(),
        transaction_id,
    }))
}

#[utoipa::path(post, path = "/payments/midtrans/notification", tag = "payment callbacks",
    security(()),
    request_body(content = Object, description = "A Midtrans HTTP notification, verified by its signature_key"),
    responses(
        (status = 200, description = "Recorded (including duplicates and test notifications)", body = CallbackAck),
        (status = 400, description = "Not a Midtrans notification", body = ErrorBody),
        (status = 401, description = "Signature does not match", body = ErrorBody),
        (status = 404, description = "Unknown order (Midtrans retries), or Midtrans is not configured", body = ErrorBody)))]
pub async fn midtrans(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<CallbackAck>> {
    ingest(&state, Provider::Midtrans, headers, body).await
}

#[utoipa::path(post, path = "/payments/xendit/callback", tag = "payment callbacks",
    security(()),
    request_body(content = Object, description = "A Xendit QR payment callback (current or legacy shape), with x-callback-token"),
    responses(
        (status = 200, body = CallbackAck),
        (status = 400, body = ErrorBody),
        (status = 401, description = "x-callback-token missing or wrong", body = ErrorBody),
        (status = 404, description = "Unknown order, or Xendit is not configured", body = ErrorBody)))]
pub async fn xendit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<CallbackAck>> {
    ingest(&state, Provider::Xendit, headers, body).await
}

#[utoipa::path(post, path = "/payments/callback", tag = "payment callbacks",
    security(()),
    request_body(content = Object, description = "{transaction_id, order_ref, amount, status, issuer?, paid_at?}, \
        signed: x-gema-timestamp (Unix seconds) and x-gema-signature: sha256=<hex HMAC-SHA256(secret, timestamp + \".\" + body)>"),
    responses(
        (status = 200, body = CallbackAck),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Signature wrong or timestamp outside the window", body = ErrorBody),
        (status = 404, description = "Unknown order, or the generic callback is not configured", body = ErrorBody)))]
pub async fn generic(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<CallbackAck>> {
    ingest(&state, Provider::Generic, headers, body).await
}
