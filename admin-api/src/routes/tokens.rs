//! API tokens for machines (backends, CI, the CLI): named, with a role, shown once,
//! revocable, with their last use.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::people::{ApiToken, CreateApiToken, IssuedApiToken};
use crate::views::{Page, PageParams};

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
