//! Login, token refresh, logout, and the caller's own profile and sessions.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gema_gateway::auth::{IssuedTokens, SecondFactor};
use gema_gateway::credentials::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::authz::{Caller, Meta};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::users::User;
use crate::state::AppState;

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
    /// The six-digit code, for an account with TOTP on.
    pub totp_code: Option<String>,
    /// Instead of `totp_code`: a one-time recovery code.
    #[schema(value_type = Option<String>)]
    pub recovery_code: Option<SecretString>,
}

impl Login {
    fn second_factor(&self) -> Option<SecondFactor> {
        second_factor(self.totp_code.clone(), self.recovery_code.clone())
    }
}

fn second_factor(code: Option<String>, recovery: Option<SecretString>) -> Option<SecondFactor> {
    match (code, recovery) {
        (Some(code), _) => Some(SecondFactor::Code(code)),
        (None, Some(recovery)) => Some(SecondFactor::Recovery(recovery)),
        (None, None) => None,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    pub code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorBody {
    pub totp_code: Option<String>,
    #[schema(value_type = Option<String>)]
    pub recovery_code: Option<SecretString>,
}

/// Load `secret` (or `uri` as a QR code) into an authenticator app, then confirm with a
/// code. Shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpSetupView {
    pub secret: String,
    pub uri: String,
}

/// One-time recovery codes, each good for one login without the app. Shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
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
    let second = body.second_factor();
    let issued = state
        .auth
        .login(&body.email, body.password, second, &meta)
        .await?;
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

#[utoipa::path(post, path = "/auth/totp/setup", tag = "auth",
    responses((status = 200, description = "A new secret, not active until confirmed",
        body = TotpSetupView),
        (status = 409, description = "TOTP is already on", body = ErrorBody),
        (status = 422, description = "Not a user session", body = ErrorBody)))]
pub async fn totp_setup(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<TotpSetupView>> {
    let setup = state.auth.totp_setup(&caller).await?;
    Ok(Json(TotpSetupView {
        secret: setup.secret.expose().to_owned(),
        uri: setup.uri.expose().to_owned(),
    }))
}

#[utoipa::path(post, path = "/auth/totp/enable", tag = "auth", request_body = TotpCode,
    responses((status = 200, description = "TOTP is on from now", body = RecoveryCodes),
        (status = 409, description = "No setup waiting", body = ErrorBody),
        (status = 422, description = "Wrong code", body = ErrorBody)))]
pub async fn totp_enable(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<TotpCode>,
) -> ApiResult<Json<RecoveryCodes>> {
    let codes = state.auth.totp_enable(&caller, &body.code).await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes.iter().map(|c| c.expose().to_owned()).collect(),
    }))
}

#[utoipa::path(post, path = "/auth/totp/disable", tag = "auth", request_body = SecondFactorBody,
    responses((status = 204, description = "TOTP is off"),
        (status = 401, description = "Wrong code", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn totp_disable(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<SecondFactorBody>,
) -> ApiResult<StatusCode> {
    let Some(second) = second_factor(body.totp_code, body.recovery_code) else {
        return Err(crate::error::ApiError::invalid_field(
            "totp_code",
            "send totp_code or recovery_code",
        ));
    };
    state.auth.totp_disable(&caller, second).await?;
    Ok(StatusCode::NO_CONTENT)
}
