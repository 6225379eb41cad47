//! Extractors whose rejections are our envelope and name the field at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::ApiError;

/// Largest request body we read (JSON registry requests are small). The router's body limit
/// and the idempotency guard, which buffers a write's body to hash it, both use it.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// The body limit of a provider report upload (`POST /api/v1/reconciliation/runs`): a
/// 100,000-line report is about 7 MiB.
pub const RECONCILIATION_BODY_LIMIT_BYTES: usize = 32 * 1024 * 1024;

/// The body limit of the customer CSV upload (`POST /api/v1/billing/customer-imports`):
/// the most `billing.import_max_bytes` may be; the handler refuses a file over the
/// configured size itself (413 naming `file`).
pub const BILLING_IMPORT_BODY_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// The body limit of a route (method and path template): [`BODY_LIMIT_BYTES`] but for the
/// uploads' own.
pub fn body_limit(method: &str, route: &str) -> usize {
    if !method.eq_ignore_ascii_case("POST") {
        return BODY_LIMIT_BYTES;
    }
    match route {
        "/api/v1/reconciliation/runs" => RECONCILIATION_BODY_LIMIT_BYTES,
        "/api/v1/billing/customer-imports" => BILLING_IMPORT_BODY_LIMIT_BYTES,
        _ => BODY_LIMIT_BYTES,
    }
}

/// The request's media type: `text/csv` of `Content-Type: text/csv; charset=utf-8`.
pub fn media_type(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
}

/// Whether an upload's body says it is CSV (`text/csv`, `application/csv` or `text/plain`):
/// the report and customer uploads take the file as the body.
pub fn is_csv(headers: &axum::http::HeaderMap) -> bool {
    media_type(headers).is_some_and(|mime| {
        ["text/csv", "application/csv", "text/plain"]
            .iter()
            .any(|m| mime.eq_ignore_ascii_case(m))
    })
}

/// A JSON body. Wrong content type → 415; unreadable or oversized body → 400/413; syntax
/// errors, wrong types, missing or unknown fields → 400 `invalid_body` with the field's path
/// in `details.field`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = media_type(req.headers()).is_some_and(|mime| {
            mime.eq_ignore_ascii_case("application/json")
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "invalid_body"
            };
            ApiError::new(status, code, rejection.body_text())
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body, reporting the path of the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let inner = err.inner().to_string();
        body_error(&field_at_fault(&err.path().to_string(), &inner), &inner)
    })?;
    deserializer
        .end()
        .map_err(|err| body_error("", &err.to_string()))?;
    Ok(value)
}

/// The field a deserialisation error at `path` is about (empty for the whole input): serde
/// reports a missing field at its parent's path, so the field itself is named instead.
fn field_at_fault(path: &str, reason: &str) -> String {
    let field = match reason.strip_prefix("missing field `") {
        Some(rest) => {
            let name = rest.split('`').next().unwrap_or_default();
            if path == "." {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        }
        None => path.to_string(),
    };
    if field == "." { String::new() } else { field }
}

fn body_error(field: &str, reason: &str) -> ApiError {
    input_error("invalid_body", "JSON body", "JSON body at", field, reason)
}

/// A 400 `code` naming `field` (empty: the `whole` input) in its message and details.
fn input_error(code: &str, whole: &str, part: &str, field: &str, reason: &str) -> ApiError {
    let message = if field.is_empty() {
        format!("invalid {whole}: {reason}")
    } else {
        format!("invalid {part} {field}: {reason}")
    };
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
        .with_details(json!({ "field": field, "reason": reason }))
}

/// Query parameters; a value that does not parse (a number that is not one, an unknown
/// status) is a 400 `invalid_query` envelope naming the parameter in `details.field`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Parses a query string (as axum's `Query` does), reporting the parameter at fault.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let reason = err.inner().to_string();
        let field = field_at_fault(&err.path().to_string(), &reason);
        input_error(
            "invalid_query",
            "query string",
            "query parameter",
            &field,
            &reason,
        )
    })
}

/// For PATCH bodies: distinguishes an absent field (`None`) from an explicit `null`
/// (`Some(None)`, which clears the value).
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
        nested: Option<Nested>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        label: String,
    }

    fn field(bytes: &str) -> String {
        let err = parse_json::<Body>(bytes.as_bytes()).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        err.details["field"].as_str().unwrap().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field(r#"{"count": 1}"#), "name");
        assert_eq!(field(r#"{"name": "a", "count": "x"}"#), "count");
        assert_eq!(field(r#"{"name": "a", "count": 1, "extra": 2}"#), "extra");
        assert_eq!(
            field(r#"{"name": "a", "count": 1, "nested": {}}"#),
            "nested.label"
        );
        assert_eq!(field(r#"{"name": "a", "count": -1}"#), "count");
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Params {
        limit: Option<u32>,
        url: String,
    }

    #[test]
    fn a_bad_query_parameter_is_named() {
        let query_field = |query: &str| {
            let err = parse_query::<Params>(query).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert_eq!(err.code, "invalid_query");
            err.details["field"].as_str().unwrap().to_string()
        };
        assert_eq!(query_field("url=x&limit=abc"), "limit");
        assert_eq!(query_field("url=x&limit=-1"), "limit");
        assert_eq!(query_field("limit=5"), "url");
        assert_eq!(
            parse_query::<Params>("url=a%20b&limit=5").unwrap().limit,
            Some(5)
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_rejected() {
        for bad in [
            "",
            "{",
            "[]",
            "null",
            r#"{"name":"a","count":1} x"#,
            "\u{0}",
        ] {
            assert!(parse_json::<Body>(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
