//! One module per screen. Each handler takes a [`Session`](crate::session::Session) (or a
//! [`Posted`](crate::session::Posted) form), asks the matrix, calls the gateway's services
//! and renders its template inside the [`Chrome`]: the header, the navigation a role may
//! use, the language and theme links.

pub mod devices;
pub mod errors;
pub mod login;
pub mod overview;
pub mod preferences;

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gema_gateway::auth::Action;

use crate::i18n::Lang;
use crate::session::{Prefs, Session};

/// The console's navigation: path, text key, and the action a role needs to see the link.
/// A screen's handler checks the same action again.
pub const NAV: &[(&str, &str, Action)] = &[
    ("/", "nav.overview", Action::DashboardRead),
    ("/devices", "nav.devices", Action::DeviceList),
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
    pub actor: String,
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

    pub fn of(session: &Session) -> Chrome {
        let lang = session.prefs.lang;
        let nav = NAV
            .iter()
            .filter(|(_, _, action)| session.may(*action))
            .map(|(href, key, _)| NavItem {
                href,
                label: lang.t(key),
                current: current(&session.path, href),
            })
            .collect();
        Chrome {
            lang,
            theme: session.prefs.theme.code(),
            path: session.path.clone(),
            user: Some(UserBar {
                actor: session.principal.actor.clone(),
                role: session.principal.role.to_string(),
                csrf: session.csrf.clone(),
            }),
            nav,
        }
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

fn current(path: &str, href: &str) -> bool {
    if href == "/" {
        path == "/"
    } else {
        path == href || path.starts_with(&format!("{href}/"))
    }
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
