//! Users: operators and merchant staff (admin only).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gema_gateway::auth::UserInput;
use gema_gateway::credentials::SecretString;
use gema_store as store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::auth::rfc3339_ms;
use crate::state::AppState;
use crate::views::{Page, PageParams};

/// A user. The password (and its hash) never appears in any response.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    /// `admin` (an operator) or `merchant` (a merchant's staff).
    pub kind: String,
    /// Operators: admin, finance, ops, support, viewer. Merchant staff: owner, finance, ops,
    /// viewer.
    pub role: String,
    pub merchant_id: Option<String>,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<store::User> for User {
    fn from(u: store::User) -> Self {
        User {
            id: u.id,
            email: u.email,
            name: u.name,
            kind: u.kind.as_str().to_owned(),
            role: u.role,
            merchant_id: u.merchant_id,
            disabled: u.disabled_ms.is_some(),
            created_at: rfc3339_ms(u.created_ms),
            updated_at: rfc3339_ms(u.updated_ms),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    pub name: String,
    pub role: String,
    /// Makes a merchant user of this merchant; omit for an operator.
    pub merchant_id: Option<String>,
    /// At least 12 characters.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

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
