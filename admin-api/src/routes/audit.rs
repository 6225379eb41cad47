//! The audit log: every write and every login attempt.

use axum::Json;
use axum::extract::State;
use gema_store::AuditFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::routes::auth::rfc3339_ms;
use crate::state::AppState;
use crate::views::{Page, PageParams};

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

fn parse_time(field: &str, value: Option<String>) -> ApiResult<Option<i64>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let t = time::OffsetDateTime::parse(&value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::invalid_field(field, "is not an RFC 3339 time"))?;
    Ok(Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

#[utoipa::path(get, path = "/audit-logs", tag = "audit", params(PageParams, AuditQuery),
    responses((status = 200, description = "Oldest first", body = Page<AuditEntry>),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let filter = AuditFilter {
        from_ms: parse_time("from", query.from)?,
        to_ms: parse_time("to", query.to)?,
        actor: query.actor,
        action: query.action,
        target: query.target,
    };
    let entries = state.auth.audit_log(&filter, &page.to_request()?).await?;
    Ok(Json(Page::from_store(entries, AuditEntry::from)))
}
