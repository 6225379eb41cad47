//! The console's few static files, embedded in the binary: one stylesheet, one script, the
//! icon and the web app manifest (so a merchant can install the console on a phone). They
//! are served with a validator (`ETag` from the binary's version) and cached briefly, so an
//! upgrade is picked up within minutes without a build step that renames files.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");
const ICON: &str = include_str!("../assets/icon.svg");
const MANIFEST: &str = include_str!("../assets/manifest.webmanifest");

const ETAG: &str = concat!("\"gema-", env!("CARGO_PKG_VERSION"), "\"");

fn asset(headers: &HeaderMap, content_type: &'static str, body: &'static str) -> Response {
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == ETAG.as_bytes())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
            (header::ETAG, HeaderValue::from_static(ETAG)),
        ],
        body,
    )
        .into_response()
}

pub async fn serve(headers: HeaderMap, Path(name): Path<String>) -> Response {
    match name.as_str() {
        "console.css" => asset(&headers, "text/css; charset=utf-8", CSS),
        "console.js" => asset(&headers, "text/javascript; charset=utf-8", JS),
        "icon.svg" => asset(&headers, "image/svg+xml", ICON),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

pub async fn manifest(headers: HeaderMap) -> Response {
    asset(&headers, "application/manifest+json", MANIFEST)
}
