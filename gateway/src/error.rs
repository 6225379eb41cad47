use gema_store::StoreError;
use thiserror::Error;

/// What a domain operation can fail with. The admin API maps each variant to one status code.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// Input that breaks a rule; `field` names the offending input field.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },

    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },

    /// Valid input that contradicts the current state; `code` is stable.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },

    /// A caller that could not prove who it is (bad signature, wrong token).
    #[error("unauthorized: {0}")]
    Unauthorized(String),

    /// Too many attempts (login lockout, rate limit); retry after this many seconds.
    #[error("{message}")]
    TooManyRequests {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },

    /// A request body we cannot read; `field` names the spot when known.
    #[error("bad request: {message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },

    /// Anything else (database down, corrupt data). Details are logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        GatewayError::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl From<StoreError> for GatewayError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { entity, id } => GatewayError::NotFound { entity, id },
            StoreError::Conflict {
                code,
                message,
                field,
            } => GatewayError::Conflict {
                code,
                message,
                field,
            },
            other => GatewayError::Internal(other.to_string()),
        }
    }
}

pub type GatewayResult<T> = Result<T, GatewayError>;
