//! The error pages: 403 (the matrix refused, or a form without its CSRF token), 404 (no such
//! row, or another merchant's), 400 (a form that does not parse) and 500 (logged once, shown
//! without detail). Each is a whole page with the navigation, never a blank.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gema_gateway::GatewayError;

use super::{Chrome, html};
use crate::session::{Prefs, Session};

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
    prefs: Prefs,
    /// Boxed: a page's error travels in `Result`s, and a session is large.
    session: Option<Box<Session>>,
}

impl ErrorPage {
    pub fn new(problem: Problem, prefs: Prefs, session: Option<Session>) -> ErrorPage {
        ErrorPage {
            problem,
            prefs,
            session: session.map(Box::new),
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
        let chrome = match &self.session {
            Some(session) => Chrome::of(session),
            None => Chrome::anonymous(self.prefs, "/"),
        };
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
