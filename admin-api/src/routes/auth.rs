//! Login, token refresh, logout, and the caller's own profile and sessions.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gema_gateway::auth::IssuedTokens;
use gema_gateway::credentials::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::authz::{Caller, Meta};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::users::User;

/// Unix milliseconds as RFC 3339.
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
}

/// A token pair, shown only in this response. Send the access token as
/// `Authorization: Bearer <access_token>`; trade the refresh token (once) for a new pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// Seconds the refresh token lives.
    pub refresh_expires_in: u64,
    pub session_id: String,
    pub user: User,
}

impl From<IssuedTokens> for TokenPair {
    fn from(t: IssuedTokens) -> Self {
        TokenPair {
            access_token: t.access_token.expose().to_owned(),
            refresh_token: t.refresh_token.expose().to_owned(),
            token_type: "Bearer",
            expires_in: t.access_expires_in.as_secs(),
            refresh_expires_in: t.refresh_expires_in.as_secs(),
            session_id: t.session.id,
            user: t.user.into(),
        }
    }
}

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// `user:<id>` or `token:<name>`.
    pub actor: String,
    /// `admin:<role>` or `merchant:<role>`.
    pub role: String,
    pub merchant_id: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
}

/// One login session (a token pair that can still be refreshed).
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub id: String,
    pub created_at: String,
    pub access_expires_at: String,
    pub refresh_expires_at: String,
    pub user_agent: Option<String>,
    pub source: Option<String>,
    /// Whether this is the session of the token making the request.
    pub current: bool,
}

#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Login,
    security(()),
    responses((status = 200, body = TokenPair),
        (status = 401, description = "Wrong e-mail or password", body = ErrorBody),
        (status = 429, description = "Locked out after repeated failures; see Retry-After",
            body = ErrorBody),
        (status = 400, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<Login>,
) -> ApiResult<Json<TokenPair>> {
    let issued = state.auth.login(&body.email, body.password, &meta).await?;
    Ok(Json(issued.into()))
}

#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = Refresh,
    security(()),
    responses((status = 200, description = "A new pair; the old refresh token is spent", body = TokenPair),
        (status = 401, description = "Unknown, expired or already used (the session is then revoked)",
            body = ErrorBody),
        (status = 400, body = ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<Refresh>,
) -> ApiResult<Json<TokenPair>> {
    let issued = state.auth.refresh(&body.refresh_token, &meta).await?;
    Ok(Json(issued.into()))
}

#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses((status = 204, description = "The session's tokens no longer work"),
        (status = 422, description = "Not a user session", body = ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<StatusCode> {
    state.auth.logout(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/auth/me", tag = "auth", responses((status = 200, body = Me)))]
pub async fn me(Caller(caller): Caller) -> Json<Me> {
    Json(Me {
        actor: caller.actor,
        role: caller.role.to_string(),
        merchant_id: caller.merchant_id,
        user_id: caller.user_id,
        session_id: caller.session_id,
    })
}

#[utoipa::path(get, path = "/auth/sessions", tag = "auth",
    responses((status = 200, description = "The caller's live sessions, oldest first",
        body = Vec<Session>)))]
pub async fn sessions(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Vec<Session>>> {
    let sessions = state.auth.sessions(&caller).await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| Session {
                current: caller.session_id.as_deref() == Some(s.id.as_str()),
                id: s.id,
                created_at: rfc3339_ms(s.created_ms),
                access_expires_at: rfc3339_ms(s.access_expires_ms),
                refresh_expires_at: rfc3339_ms(s.refresh_expires_ms),
                user_agent: s.user_agent,
                source: s.source,
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/auth/sessions/{id}", tag = "auth", params(("id" = String, Path)),
    responses((status = 204, description = "Revoked"),
        (status = 404, description = "Not one of the caller's sessions", body = ErrorBody)))]
pub async fn revoke_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.auth.revoke_session(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
