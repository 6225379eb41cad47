//! The audit log: every write and every login attempt.

use axum::Json;
use axum::extract::State;
use gema_store::AuditFilter;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::views::audit::{AuditEntry, AuditQuery};
use crate::views::{Page, PageParams};

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
