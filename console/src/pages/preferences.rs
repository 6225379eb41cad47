//! Language and theme: links that set a cookie and come back to the page. They carry no
//! authority (a third party setting someone's language does no harm), so they are plain GET
//! links that work without a login and without JavaScript.

use axum::extract::Query;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::Deserialize;

use crate::i18n::Lang;
use crate::session::{LANG_COOKIE, THEME_COOKIE, Theme, safe_next, see_other, set_cookie};

#[derive(Debug, Deserialize)]
pub struct PreferenceQuery {
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    theme: Option<String>,
    #[serde(default)]
    next: Option<String>,
}

const A_YEAR: u64 = 365 * 24 * 3600;

pub async fn set(headers: HeaderMap, Query(q): Query<PreferenceQuery>) -> Response {
    let mut response = see_other(safe_next(q.next.as_deref().unwrap_or("/")));
    if let Some(lang) = q.lang.as_deref().and_then(Lang::parse) {
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(&headers, LANG_COOKIE, lang.code(), false, Some(A_YEAR)),
        );
    }
    if let Some(theme) = q.theme.as_deref().and_then(Theme::parse) {
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(&headers, THEME_COOKIE, theme.code(), false, Some(A_YEAR)),
        );
    }
    response
}
