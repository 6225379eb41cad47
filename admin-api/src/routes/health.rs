//! `GET /health` (liveness: the process answers) and `GET /health/deep` (the daemon's
//! dependencies: database round trip, pending migrations, certificate expiry). The checks
//! themselves are supplied by the binary through the state's
//! [`HealthProbe`](crate::state::HealthProbe), since this crate knows only HTTP. Both routes
//! are public.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::state::AppState;
use crate::views::health::{CheckStatus, DeepHealth, Liveness};

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The process is up", body = Liveness)))]
pub async fn liveness() -> Json<Liveness> {
    Json(Liveness {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/health/deep", tag = "health",
    responses(
        (status = 200, description = "Every dependency works (some may warn)", body = DeepHealth),
        (status = 503, description = "A dependency failed", body = DeepHealth)))]
pub async fn deep(State(state): State<AppState>) -> (StatusCode, Json<DeepHealth>) {
    let checks = state.health.checks().await;
    let status = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(CheckStatus::Ok);
    let code = if status == CheckStatus::Fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(DeepHealth { status, checks }))
}
