//! API tokens for machines (backends, CI, the CLI): named, with a role, shown once,
//! revocable, with their last use.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::{Page, PageParams};

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: String,
    /// Set for a merchant's token: it sees only that merchant's rows.
    pub merchant_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Recorded at most once a minute.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<gema_store::ApiToken> for ApiToken {
    fn from(t: gema_store::ApiToken) -> Self {
        ApiToken {
            id: t.id,
            name: t.name,
            role: t.role,
            merchant_id: t.merchant_id,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiToken {
    /// Unique among active tokens; letters, digits, `-`, `_`, `.`.
    pub name: String,
    pub role: String,
    pub merchant_id: Option<String>,
}

/// The new token: `token` is shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedApiToken {
    pub token: String,
    #[serde(flatten)]
    pub api_token: ApiToken,
}

#[utoipa::path(post, path = "/api-tokens", tag = "api tokens", request_body = CreateApiToken,
    responses((status = 201, body = IssuedApiToken),
        (status = 409, description = "Name taken", body = ErrorBody),
        (status = 404, description = "Unknown merchant", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateApiToken>,
) -> ApiResult<(StatusCode, Json<IssuedApiToken>)> {
    let (token, secret) = state
        .auth
        .create_api_token(&body.name, &body.role, body.merchant_id.as_deref())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedApiToken {
            token: secret.expose().to_owned(),
            api_token: token.into(),
        }),
    ))
}

#[utoipa::path(get, path = "/api-tokens", tag = "api tokens", params(PageParams),
    responses((status = 200, body = Page<ApiToken>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<ApiToken>>> {
    let tokens = state.auth.api_tokens(&page.to_request()?).await?;
    Ok(Json(Page::from_store(tokens, ApiToken::from)))
}

#[utoipa::path(post, path = "/api-tokens/{id}/revoke", tag = "api tokens",
    params(("id" = String, Path)),
    responses((status = 200, description = "Revoked; it no longer authenticates", body = ApiToken),
        (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiToken>> {
    Ok(Json(state.auth.revoke_api_token(&id).await?.into()))
}
