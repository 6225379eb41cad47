//! Log in and log out. The login is the gateway's (password, then the TOTP code when the
//! account has one; lockout per account and per source; every attempt audited); this page
//! only carries it to a browser and keeps the access token in the session cookie.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gema_admin_api::AppState;
use gema_gateway::GatewayError;
use gema_gateway::auth::{Action, SecondFactor};
use gema_gateway::credentials::SecretString;
use ring::rand::SecureRandom;
use serde::Deserialize;

use crate::frame::{Chrome, Prefs, html};
use crate::session::{
    self, LOGIN_COOKIE, Posted, SESSION_COOKIE, csrf_matches, csrf_token, safe_next, see_other,
    set_cookie,
};

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    expired: Option<String>,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginView {
    chrome: Chrome,
    csrf: String,
    next: String,
    email: String,
    /// A text key: why the last attempt failed, or why the user is here.
    alert: Option<&'static str>,
    /// Whether to ask for the authenticator code prominently.
    ask_code: bool,
}

fn fresh_login_secret() -> String {
    let mut bytes = [0u8; 32];
    // The system's random source does not fail on Linux; if it did, the form would carry a
    // token no cookie matches, and the login would be refused, not weakened.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn login_page(
    headers: &HeaderMap,
    prefs: Prefs,
    status: StatusCode,
    next: &str,
    email: String,
    alert: Option<&'static str>,
    ask_code: bool,
) -> Response {
    let secret = fresh_login_secret();
    let mut response = html(
        status,
        &LoginView {
            chrome: Chrome::anonymous(prefs, "/login"),
            csrf: csrf_token(&secret),
            next: safe_next(next).to_owned(),
            email,
            alert,
            ask_code,
        },
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(headers, LOGIN_COOKIE, &secret, true, None),
    );
    response
}

pub async fn form(headers: HeaderMap, prefs: Prefs, Query(q): Query<LoginQuery>) -> Response {
    let alert = q.expired.is_some().then_some("login.expired");
    login_page(
        &headers,
        prefs,
        StatusCode::OK,
        q.next.as_deref().unwrap_or("/"),
        String::new(),
        alert,
        false,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: String,
}

pub async fn submit(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    let prefs = Prefs::of(&headers);
    let meta = session::request_meta(&parts);
    let request = axum::extract::Request::from_parts(parts, body);
    let form = match <axum::Form<LoginForm> as axum::extract::FromRequest<AppState>>::from_request(
        request, &state,
    )
    .await
    {
        Ok(axum::Form(form)) => form,
        Err(_) => {
            return login_page(
                &headers,
                prefs,
                StatusCode::BAD_REQUEST,
                "/",
                String::new(),
                Some("login.failed"),
                false,
            );
        }
    };
    let secret = session::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if secret.is_empty() || !csrf_matches(secret, &form.csrf) {
        return login_page(
            &headers,
            prefs,
            StatusCode::FORBIDDEN,
            &form.next,
            form.email,
            Some("login.form_expired"),
            false,
        );
    }
    let code = form.code.trim();
    let second = (!code.is_empty()).then(|| {
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            SecondFactor::Code(code.to_owned())
        } else {
            SecondFactor::Recovery(SecretString::new(code.to_owned()))
        }
    });
    let outcome = state
        .auth
        .login(&form.email, SecretString::new(form.password), second, &meta)
        .await;
    match outcome {
        Ok(issued) => {
            let mut response = see_other(safe_next(&form.next));
            let h = response.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(
                    &headers,
                    SESSION_COOKIE,
                    issued.access_token.expose(),
                    true,
                    None,
                ),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(&headers, LOGIN_COOKIE, "", true, Some(0)),
            );
            response
        }
        Err(error) => {
            let (status, alert, ask_code) = match &error {
                GatewayError::TooManyRequests { .. } => {
                    (StatusCode::TOO_MANY_REQUESTS, "login.locked", false)
                }
                GatewayError::Unauthorized(message) if message.contains("totp_code") => {
                    (StatusCode::UNAUTHORIZED, "login.code_needed", true)
                }
                GatewayError::Unauthorized(message) if message.contains("TOTP") => {
                    (StatusCode::UNAUTHORIZED, "login.code_wrong", true)
                }
                GatewayError::Unauthorized(_) | GatewayError::Invalid { .. } => {
                    (StatusCode::UNAUTHORIZED, "login.failed", false)
                }
                other => {
                    tracing::error!(error = %other, "console login failed");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "error.internal_text",
                        false,
                    )
                }
            };
            login_page(
                &headers,
                prefs,
                status,
                &form.next,
                form.email,
                Some(alert),
                ask_code,
            )
        }
    }
}

/// A form with no fields but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Nothing {}

/// Ends the session (its whole family, on every node), audited as the API's logout is, and
/// forgets the cookie.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted(session, Nothing {}): Posted<Nothing>,
) -> Response {
    let target = format!(
        "session:{}",
        session.principal.session_id.as_deref().unwrap_or_default()
    );
    let ended = session
        .audited(
            &state,
            Action::OwnSession,
            target,
            state.auth.logout(&session.principal),
            |_| serde_json::json!({ "logged_out": true }),
        )
        .await;
    if let Err(e) = ended {
        tracing::warn!(error = %e, "console logout failed");
    }
    let mut response = see_other("/login");
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, "", true, Some(0)),
    );
    response.into_response()
}
