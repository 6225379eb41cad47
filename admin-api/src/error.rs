//! The one error type of the HTTP API and its JSON envelope:
//! `{code, message, details, request_id, timestamp}`, for every error, including rejected
//! bodies, unknown routes and panics. 5xx responses carry a generic message; the real error
//! is logged once, with the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gema_gateway::GatewayError;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

tokio::task_local! {
    /// The current request's id, set by the request-id middleware for the whole request.
    pub(crate) static REQUEST_ID: String;
}

pub(crate) fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable error code (`validation_failed`, `not_found`,
    /// `device_already_bound`, …).
    pub code: String,
    /// A sentence for humans.
    pub message: String,
    /// Structured details: for validation errors `{field, reason}`.
    #[schema(value_type = Object)]
    pub details: Value,
    pub request_id: Option<String>,
    /// RFC 3339 time of the response.
    pub timestamp: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Value,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{field}: {reason}"),
        )
        .with_details(json!({ "field": field, "reason": reason }))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A server-side failure: logged here with its cause, answered with a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the request id identifies it in the logs",
        )
    }
}

impl From<GatewayError> for ApiError {
    fn from(err: GatewayError) -> Self {
        match err {
            GatewayError::Invalid { field, message } => ApiError::invalid_field(field, message),
            GatewayError::NotFound { entity, id } => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{entity} {id} not found"),
            )
            .with_details(json!({ "entity": entity, "id": id })),
            GatewayError::Conflict {
                code,
                message,
                field,
            } => ApiError::new(StatusCode::CONFLICT, code, message)
                .with_details(field.map_or(Value::Null, |f| json!({ "field": f }))),
            GatewayError::Unauthorized(message) => ApiError::unauthorized(message),
            GatewayError::BadRequest { field, message } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
                    .with_details(json!({ "field": field }))
            }
            GatewayError::TooManyRequests {
                code,
                message,
                retry_after_secs,
            } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
                .with_details(json!({ "retry_after_secs": retry_after_secs })),
            GatewayError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let timestamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let retry_after = self.details.get("retry_after_secs").and_then(Value::as_u64);
        let body = ErrorBody {
            code: self.code,
            message: self.message,
            details: self.details,
            request_id: current_request_id(),
            timestamp,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS
            && let Some(secs) = retry_after
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
