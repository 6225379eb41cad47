//! The audit log.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::timestamps::rfc3339_ms;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub at: String,
    /// `user:<id>`, `token:<name>`, or `email:<address>` for a login by an unknown caller.
    pub actor: String,
    /// `auth.login`, `auth.refresh`, or the permission name of a write (`device.credentials`).
    pub action: String,
    /// The path written to, or what a login was for.
    pub target: Option<String>,
    /// A write's HTTP status; for logins `ok`, `failed`, `locked`.
    pub outcome: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    pub request_id: Option<String>,
    pub source: Option<String>,
}

impl From<gema_store::AuditEntry> for AuditEntry {
    fn from(e: gema_store::AuditEntry) -> Self {
        let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        AuditEntry {
            id: e.id,
            at: rfc3339_ms(e.at_ms),
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            before: json(e.before_json),
            after: json(e.after_json),
            request_id: e.request_id,
            source: e.source,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// RFC 3339; entries at or after.
    pub from: Option<String>,
    /// RFC 3339; entries before.
    pub to: Option<String>,
}
