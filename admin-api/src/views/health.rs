//! `/health` and `/health/deep`.

use serde::Serialize;
use utoipa::ToSchema;

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    pub status: String,
}

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
