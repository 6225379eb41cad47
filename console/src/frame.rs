//! The frame around every page and the pages every request may end in: the header, the
//! navigation a role may use, the language and theme links ([`Chrome`], from the
//! [`Prefs`] cookies), and the error pages ([`ErrorPage`]): 403 (the matrix refused, or a
//! form without its CSRF token), 404 (no such row, or another merchant's), 400 (a form that
//! does not parse, naming the field) and 500 (logged once, shown without detail). Each is a
//! whole page with the navigation, never a blank.
//!
//! It knows no session: a session builds its chrome (`Session::chrome`).

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gema_gateway::GatewayError;
use gema_gateway::auth::Action;

use crate::i18n::Lang;

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
pub const LANG_COOKIE: &str = "gema_lang";
pub const THEME_COOKIE: &str = "gema_theme";

/// Language and theme, from their cookies; known before (and without) a login.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prefs {
    pub lang: Lang,
    pub theme: Theme,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    #[default]
    Auto,
    Light,
    Dark,
}

impl Theme {
    pub fn parse(value: &str) -> Option<Theme> {
        match value {
            "auto" => Some(Theme::Auto),
            "light" => Some(Theme::Light),
            "dark" => Some(Theme::Dark),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Theme::Auto => "auto",
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }
}

impl Prefs {
    pub fn of(headers: &HeaderMap) -> Prefs {
        Prefs {
            lang: crate::frame::cookie(headers, LANG_COOKIE)
                .and_then(Lang::parse)
                .unwrap_or_default(),
            theme: crate::frame::cookie(headers, THEME_COOKIE)
                .and_then(Theme::parse)
                .unwrap_or_default(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Prefs {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Prefs::of(&parts.headers))
    }
}

/// The console's navigation: path, text key, and the action a role needs to see the link.
/// A screen's handler checks the same action again.
pub const NAV: &[(&str, &str, Action)] = &[
    ("/", "nav.overview", Action::DashboardRead),
    ("/devices", "nav.devices", Action::DeviceList),
    ("/transactions", "nav.transactions", Action::TransactionList),
    ("/whatsapp", "nav.whatsapp", Action::WhatsAppRead),
    ("/users", "nav.users", Action::UserList),
    ("/settlement", "nav.settlement", Action::SettlementRead),
    ("/merchants", "nav.merchants", Action::MerchantList),
    ("/billing/customers", "nav.billing", Action::BillingRead),
    ("/audit", "nav.audit", Action::AuditRead),
    ("/settings/receipt", "nav.receipt", Action::BillingSettings),
    (
        "/reconciliation",
        "nav.reconciliation",
        Action::ReconciliationRead,
    ),
    ("/nodes", "nav.nodes", Action::NodeList),
];

#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The frame around every page.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub lang: Lang,
    pub theme: &'static str,
    /// The page's own path, for the language and theme links to come back to.
    pub path: String,
    /// Set when someone is logged in.
    pub user: Option<UserBar>,
    pub nav: Vec<NavItem>,
}

#[derive(Debug, Clone)]
pub struct UserBar {
    /// The user's name as they know it (never their id).
    pub name: String,
    pub role: String,
    pub csrf: String,
}

impl Chrome {
    pub fn anonymous(prefs: Prefs, path: &str) -> Chrome {
        Chrome {
            lang: prefs.lang,
            theme: prefs.theme.code(),
            path: path.to_owned(),
            user: None,
            nav: Vec::new(),
        }
    }

    /// The session's form token, for a page's own forms.
    pub fn csrf(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.csrf.as_str())
    }

    /// The text of `key` in the page's language.
    pub fn t(&self, key: &str) -> &'static str {
        self.lang.t(key)
    }

    pub fn rupiah(&self, amount: &i64) -> String {
        crate::format::rupiah(*amount)
    }

    pub fn time(&self, at: &time::OffsetDateTime) -> String {
        crate::format::jakarta(*at, self.lang)
    }

    pub fn time_ms(&self, ms: &i64) -> String {
        crate::format::jakarta_ms(*ms, self.lang)
    }
}

/// Whether `href` is the page of `path` or a page under it (`/devices` on `/devices/dev_1`).
pub(crate) fn current(path: &str, href: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or("");
    if href == "/" {
        path == "/"
    } else {
        path == href || path.starts_with(&format!("{href}/"))
    }
}

/// Whether the navigation entry `href` is the section of `path`: their first segments are
/// the same (the entry `/billing/customers` is current on `/billing/invoices/…`).
pub(crate) fn in_section(path: &str, href: &str) -> bool {
    let section = |p: &str| {
        let p = p.split(['?', '#']).next().unwrap_or("");
        p.trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned()
    };
    section(path) == section(href)
}

/// A rendered page, or the 500 page if the template failed.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a console page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "internal error",
            )
                .into_response()
        }
    }
}

#[derive(Debug, Clone)]
pub enum Problem {
    Forbidden,
    Csrf,
    NotFound,
    /// A form or query the handler cannot take; the text says which field.
    Invalid(String),
    Internal,
}

impl Problem {
    pub fn from_gateway(error: GatewayError) -> Problem {
        match error {
            GatewayError::NotFound { .. } => Problem::NotFound,
            GatewayError::Invalid { .. }
            | GatewayError::Conflict { .. }
            | GatewayError::BadRequest { .. }
            | GatewayError::TooManyRequests { .. } => Problem::Invalid(error.to_string()),
            other => {
                tracing::error!(error = %other, "console page failed");
                Problem::Internal
            }
        }
    }
}

#[derive(Debug)]
pub struct ErrorPage {
    problem: Problem,
    /// Boxed: a page's error travels in `Result`s, and a session is large.
    chrome: Box<Chrome>,
}

impl ErrorPage {
    /// The page inside `chrome` (the session's, or [`Chrome::anonymous`]).
    pub fn new(problem: Problem, chrome: Chrome) -> ErrorPage {
        ErrorPage {
            problem,
            chrome: Box::new(chrome),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorView {
    chrome: Chrome,
    title: &'static str,
    text: &'static str,
    detail: Option<String>,
}

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        let chrome = *self.chrome;
        let lang = chrome.lang;
        let (status, title, text, detail) = match self.problem {
            Problem::Forbidden => (
                StatusCode::FORBIDDEN,
                "error.forbidden",
                "error.forbidden_text",
                None,
            ),
            Problem::Csrf => (
                StatusCode::FORBIDDEN,
                "error.forbidden",
                "error.csrf_text",
                None,
            ),
            Problem::NotFound => (
                StatusCode::NOT_FOUND,
                "error.not_found",
                "error.not_found_text",
                None,
            ),
            Problem::Invalid(detail) => (
                StatusCode::BAD_REQUEST,
                "error.invalid",
                "error.invalid",
                Some(detail),
            ),
            Problem::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "error.internal",
                "error.internal_text",
                None,
            ),
        };
        html(
            status,
            &ErrorView {
                title: lang.t(title),
                text: lang.t(text),
                detail,
                chrome,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_current_under_its_entry_and_a_section_under_its_first_segment() {
        assert!(current("/devices/dev_1", "/devices"));
        assert!(current("/devices?health=offline", "/devices"));
        assert!(!current("/devicesx", "/devices"));
        assert!(!current("/devices", "/"));
        assert!(in_section("/billing/invoices/inv_1", "/billing/customers"));
        assert!(in_section("/?lang=en", "/"));
        assert!(!in_section("/devices", "/"));
        assert!(!in_section("/settlement", "/settings/receipt"));
    }
}
