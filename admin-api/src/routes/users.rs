//! Users: operators and merchant staff (admin only).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gema_gateway::auth::UserInput;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::people::{CreateUser, User};
use crate::views::{Page, PageParams};

#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = User),
        (status = 404, description = "Unknown merchant", body = ErrorBody),
        (status = 409, description = "E-mail taken", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let user = state
        .auth
        .create_user(UserInput {
            email: body.email,
            name: body.name,
            role: body.role,
            merchant_id: body.merchant_id,
            password: body.password,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[utoipa::path(get, path = "/users", tag = "users", params(PageParams),
    responses((status = 200, body = Page<User>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<User>>> {
    let users = state.auth.users(&page.to_request()?).await?;
    Ok(Json(Page::from_store(users, User::from)))
}

#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = String, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<User>> {
    Ok(Json(state.auth.user(&id).await?.into()))
}

#[utoipa::path(post, path = "/users/{id}/disable", tag = "users", params(("id" = String, Path)),
    responses((status = 200, description = "Disabled; its sessions are ended", body = User),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The last enabled admin", body = ErrorBody)))]
pub async fn disable(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(state.auth.set_user_disabled(&id, true).await?.into()))
}

#[utoipa::path(post, path = "/users/{id}/enable", tag = "users", params(("id" = String, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(state.auth.set_user_disabled(&id, false).await?.into()))
}
