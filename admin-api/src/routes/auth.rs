//! Login, token refresh, logout, and the caller's own profile and sessions.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::authz::{Caller, Meta};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views::people::{
    Login, Me, RecoveryCodes, Refresh, SecondFactorBody, Session, TokenPair, TotpCode,
    TotpSetupView,
};

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
            .map(|s| Session::new(s, caller.session_id.as_deref()))
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
    let Some(second) = body.second_factor() else {
        return Err(crate::error::ApiError::invalid_field(
            "totp_code",
            "send totp_code or recovery_code",
        ));
    };
    state.auth.totp_disable(&caller, second).await?;
    Ok(StatusCode::NO_CONTENT)
}
