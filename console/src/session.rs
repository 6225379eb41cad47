//! Who is looking at the console, and the checks every request passes.
//!
//! - The session is the gateway's own login session: `gema_session` holds its access token
//!   (`HttpOnly`, `SameSite=Strict`, `Path=/`, `Secure` when the request came over TLS).
//!   [`Session`] authenticates it on every request and slides its expiry
//!   ([`Auth::extend`](gema_gateway::auth::Auth::extend)), so an idle session ends after the
//!   access lifetime and logout ends it everywhere. There is no session state in the
//!   process, so any node of a cluster serves any page.
//! - The CSRF token of a session is an HMAC of its access token: only a page of this origin
//!   (which the `SameSite=Strict` cookie and the CSP keep to this origin) can know it, and no
//!   node has to remember it. Every POST goes through [`Posted`], which refuses a form
//!   without the token before its handler runs. The login form, before any session, carries
//!   a token tied to a random `gema_login` cookie instead.
//! - A page refused by the permission matrix answers the 403 page; one a merchant may not
//!   see because it is another merchant's answers the 404 page, exactly like the API.

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gema_admin_api::AppState;
use gema_gateway::GatewayError;
use gema_gateway::auth::{Action, Principal, RequestMeta};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::frame::{Chrome, ErrorPage, NAV, NavItem, Prefs, Problem, UserBar};
pub use crate::frame::{LANG_COOKIE, THEME_COOKIE, Theme, cookie};

pub const SESSION_COOKIE: &str = "gema_session";
pub const LOGIN_COOKIE: &str = "gema_login";

/// Whether the browser reached us over TLS (directly, or through a proxy that says so): then
/// cookies are `Secure`.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value for `name`. `max_age` of `Some(0)` deletes it; `None` makes a
/// cookie that ends with the browser.
pub fn set_cookie(
    headers: &HeaderMap,
    name: &str,
    value: &str,
    http_only: bool,
    max_age: Option<u64>,
) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/; SameSite=Strict");
    if http_only {
        cookie.push_str("; HttpOnly");
    }
    if over_tls(headers) {
        cookie.push_str("; Secure");
    }
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The HMAC of `secret` under a fixed label, as the form token of whoever holds `secret`.
pub fn csrf_token(secret: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, b"gema console csrf").as_ref())
}

/// Whether `presented` is the form token of `secret`, compared in constant time.
pub fn csrf_matches(secret: &str, presented: &str) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    match URL_SAFE_NO_PAD.decode(presented) {
        Ok(tag) => ring::hmac::verify(&key, b"gema console csrf", &tag).is_ok(),
        Err(_) => false,
    }
}

/// A logged-in user of the console.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// The token every form of this session carries.
    pub csrf: String,
    pub prefs: Prefs,
    /// The path asked for, for the navigation's current-page marker.
    pub path: String,
    pub meta: RequestMeta,
}

impl Session {
    /// `Ok` if the matrix allows the action, else the 403 page.
    pub fn require(&self, action: Action) -> Result<(), ErrorPage> {
        if self.principal.may(action) {
            Ok(())
        } else {
            Err(self.problem(Problem::Forbidden))
        }
    }

    /// A list's filter from its query: empty is no filter; a value `parse` does not know is
    /// the 400 page naming `field` and what it takes (`choices`).
    pub fn filter<T>(
        &self,
        field: &str,
        text: &str,
        parse: impl FnOnce(&str) -> Option<T>,
        choices: &str,
    ) -> Result<Option<T>, ErrorPage> {
        match text {
            "" => Ok(None),
            s => parse(s).map(Some).ok_or_else(|| {
                self.problem(Problem::Invalid(format!(
                    "{field}: one of {choices}, not {s:?}"
                )))
            }),
        }
    }

    pub fn may(&self, action: Action) -> bool {
        self.principal.may(action)
    }

    /// The merchant whose rows a merchant user is limited to; `None` for operators.
    pub fn merchant(&self) -> Option<&str> {
        self.principal.merchant_id.as_deref()
    }

    pub fn problem(&self, problem: Problem) -> ErrorPage {
        ErrorPage::new(problem, self.chrome())
    }

    /// The frame of a page this session sees: its navigation, its name, its form token.
    pub fn chrome(&self) -> Chrome {
        let lang = self.prefs.lang;
        let nav = NAV
            .iter()
            .filter(|(_, _, action)| self.may(*action))
            .map(|(href, key, _)| NavItem {
                href,
                label: lang.t(key),
                current: crate::frame::in_section(&self.path, href),
            })
            .collect();
        Chrome {
            lang,
            theme: self.prefs.theme.code(),
            path: self.path.clone(),
            user: Some(UserBar {
                name: self.principal.name.clone(),
                role: self.principal.role.to_string(),
                csrf: self.csrf.clone(),
            }),
            nav,
        }
    }

    /// A gateway error as the page a user should see: not found, refused, or a logged 500.
    pub fn failed(&self, error: GatewayError) -> ErrorPage {
        self.problem(Problem::from_gateway(error))
    }
}

impl Session {
    /// Runs a write the console does for this user, with its audit row, exactly as the API's
    /// guard does: the write's first transaction carries the row
    /// ([`gema_store::audit_scope`]), so write and row commit together; then the row gets
    /// the outcome (`ok`, or `failed` and the error) and `after` (never a secret). A write
    /// that committed nothing still leaves the attempt's row. `action` names the action as
    /// the matrix does (`device.credentials`), `target` the row (`device:<id>`).
    pub async fn audited<T>(
        &self,
        state: &AppState,
        action: Action,
        target: String,
        work: impl std::future::Future<Output = Result<T, GatewayError>>,
        after: impl FnOnce(&T) -> serde_json::Value,
    ) -> Result<T, GatewayError> {
        let entry = gema_store::NewAuditEntry {
            actor: self.principal.actor.clone(),
            action: action.name().to_owned(),
            target: Some(target),
            ..state.auth.entry(&self.meta)
        };
        let (result, written) = gema_store::audit_scope(entry.clone(), work).await;
        let (outcome, after) = match &result {
            Ok(value) => ("ok", after(value)),
            Err(err) => ("failed", serde_json::json!({ "error": err.to_string() })),
        };
        let after = after.to_string();
        let closed = match written {
            Some(id) => state
                .auth
                .finish_audit(&id, outcome, Some(&after))
                .await
                .map(|_| ()),
            None => state
                .auth
                .audit(gema_store::NewAuditEntry {
                    outcome: outcome.to_owned(),
                    after_json: Some(after),
                    ..entry
                })
                .await
                .map(|_| ()),
        };
        if let Err(err) = closed {
            // The write (if any) committed with its row; only the outcome is missing.
            tracing::error!(error = %err, "recording a console write's outcome in the audit log failed");
        }
        result
    }
}

/// Where the request came from, for lockout and audit (the peer address; a proxy's
/// `X-Forwarded-For` is not trusted here, as in the API).
pub fn request_meta(parts: &Parts) -> RequestMeta {
    let source = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    RequestMeta {
        source,
        request_id: parts
            .headers
            .get(gema_admin_api::REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect()),
    }
}

/// Why a request has no session: the login page (for a page) or 401 (for the event stream,
/// which a script reads).
#[derive(Debug)]
pub enum NoSession {
    Login { next: String, expired: bool },
    Failed(ErrorPage),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::Login { next, expired } => {
                let mut to = format!("/login?next={}", encode_path(&next));
                if expired {
                    to.push_str("&expired=1");
                }
                Redirect::to(&to).into_response()
            }
            NoSession::Failed(page) => page.into_response(),
        }
    }
}

/// A path for a `next=` parameter: only our own absolute paths, percent-encoding what a
/// query value cannot hold.
pub fn encode_path(path: &str) -> String {
    let path = safe_next(path);
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `next` if it is a path of this console (so a login link cannot send the user elsewhere),
/// else `/`.
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.contains("://");
    if local { next } else { "/" }
}

impl<S> FromRequestParts<S> for Session
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = NoSession;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let prefs = Prefs::of(&parts.headers);
        let next = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(NoSession::Login {
                next,
                expired: false,
            });
        };
        let principal = match state.auth.authenticate(token).await {
            // Only a login session lives in the cookie, never an API token.
            Ok(Some(p)) if p.session_id.is_some() => p,
            Ok(_) => {
                return Err(NoSession::Login {
                    next,
                    expired: true,
                });
            }
            Err(e) => {
                return Err(NoSession::Failed(ErrorPage::new(
                    Problem::from_gateway(e),
                    Chrome::anonymous(prefs, "/"),
                )));
            }
        };
        if let Err(e) = state.auth.extend(&principal).await {
            // The page still works; the session ends at its old expiry.
            tracing::warn!(error = %e, "extending a console session failed");
        }
        Ok(Session {
            csrf: csrf_token(token),
            principal,
            prefs,
            path: parts.uri.path().to_owned(),
            meta: request_meta(parts),
        })
    }
}

/// A form posted by a logged-in user, with its CSRF token checked before the handler runs.
/// `T` is the form's own fields; `csrf` is taken off.
#[derive(Debug)]
pub struct Posted<T>(pub Session, pub T);

impl<S, T> FromRequest<S> for Posted<T>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    T: DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let request = Request::from_parts(parts, body);
        let bytes = match axum::body::Bytes::from_request(request, state).await {
            Ok(bytes) => bytes,
            Err(rejection) => {
                return Err(session
                    .problem(Problem::Invalid(rejection.body_text()))
                    .into_response());
            }
        };
        // The token first, whatever else the form holds: a form without it is refused as
        // such (403), and only a form that carries it is read further (400 naming a field).
        let token: Token = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        if !csrf_matches_session(&session, &token.csrf) {
            tracing::warn!(actor = %session.principal.actor, path = %session.path,
                "console form without a valid CSRF token refused");
            return Err(session.problem(Problem::Csrf).into_response());
        }
        match serde_urlencoded::from_bytes::<T>(&bytes) {
            Ok(form) => Ok(Posted(session, form)),
            Err(e) => Err(session
                .problem(Problem::Invalid(e.to_string()))
                .into_response()),
        }
    }
}

#[derive(Deserialize, Default)]
struct Token {
    #[serde(default)]
    csrf: String,
}

/// `session.csrf` was computed from the cookie of this very request. The digests are
/// compared, so the time taken says nothing about how much of the token was right.
pub(crate) fn csrf_matches_session(session: &Session, presented: &str) -> bool {
    let digest = |v: &str| ring::digest::digest(&ring::digest::SHA256, v.as_bytes());
    !presented.is_empty() && digest(presented).as_ref() == digest(&session.csrf).as_ref()
}

/// A redirect after a successful POST (post/redirect/get), so reloading does not repeat it.
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csrf_token_belongs_to_its_secret_only() {
        let token = csrf_token("gat_one");
        assert!(csrf_matches("gat_one", &token));
        assert!(!csrf_matches("gat_two", &token));
        assert!(!csrf_matches("gat_one", ""));
        assert!(!csrf_matches("gat_one", "not base64 !"));
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next("/devices?status=offline"),
            "/devices?status=offline"
        );
        assert_eq!(safe_next("//evil.example/x"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(encode_path("/devices?a=b&c"), "/devices%3Fa%3Db%26c");
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("gema_session_x=1; gema_session=gat_abc; gema_lang=en"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("gat_abc"));
        assert_eq!(Prefs::of(&headers).lang, crate::i18n::Lang::En);
    }
}
