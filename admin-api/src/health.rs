//! `GET /health` (liveness: the process answers) and `GET /health/deep` (the daemon's
//! dependencies: database round trip, pending migrations, certificate expiry). The checks
//! themselves are supplied by the binary through [`HealthProbe`], since this crate knows
//! only HTTP.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;
use crate::views::Liveness;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    /// Works, but needs attention soon (a certificate close to expiry).
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeepHealth {
    /// The worst status of all checks.
    pub status: CheckStatus,
    pub checks: Vec<Check>,
}

#[async_trait::async_trait]
pub trait HealthProbe: Send + Sync + std::fmt::Debug {
    async fn checks(&self) -> Vec<Check>;
}

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
