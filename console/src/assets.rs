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
/// The icon as PNG too: a phone's "add to home screen" wants 192 and 512 pixel PNGs
/// (rendered once from `icon.svg` by headless Chromium).
const ICON_192: &[u8] = include_bytes!("../assets/icon-192.png");
const ICON_512: &[u8] = include_bytes!("../assets/icon-512.png");

const ETAG: &str = concat!("\"gema-", env!("CARGO_PKG_VERSION"), "\"");

fn asset(
    headers: &HeaderMap,
    content_type: &'static str,
    body: impl Into<axum::body::Body>,
) -> Response {
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
        body.into(),
    )
        .into_response()
}

pub async fn serve(headers: HeaderMap, Path(name): Path<String>) -> Response {
    match name.as_str() {
        "console.css" => asset(&headers, "text/css; charset=utf-8", CSS),
        "console.js" => asset(&headers, "text/javascript; charset=utf-8", JS),
        "icon.svg" => asset(&headers, "image/svg+xml", ICON),
        "icon-192.png" => asset(&headers, "image/png", ICON_192),
        "icon-512.png" => asset(&headers, "image/png", ICON_512),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

pub async fn manifest(headers: HeaderMap) -> Response {
    asset(&headers, "application/manifest+json", MANIFEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_manifest_names_only_icons_that_are_served() {
        let manifest: serde_json::Value = serde_json::from_str(MANIFEST).expect("valid JSON");
        assert_eq!(manifest["start_url"], "/");
        let icons = manifest["icons"].as_array().expect("icons");
        assert!(
            icons.iter().any(|i| i["sizes"] == "512x512"),
            "installable needs a 512 px icon"
        );
        for icon in icons {
            let src = icon["src"].as_str().expect("src");
            let name = src.strip_prefix("/assets/").expect("an embedded asset");
            let answer = serve(HeaderMap::new(), Path(name.to_owned())).await;
            assert_eq!(answer.status(), StatusCode::OK, "{src}");
            assert_eq!(
                answer.headers()[header::CONTENT_TYPE],
                icon["type"].as_str().expect("type"),
                "{src}"
            );
        }
    }
}
