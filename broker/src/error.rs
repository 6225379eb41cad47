//! The broker's errors: starting or reconfiguring it ([`BrokerError`]) and a refused
//! downlink ([`PublishError`]).

use std::path::PathBuf;

/// Errors starting or reconfiguring the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS material in {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    #[error("invalid broker configuration: {0}")]
    Invalid(String),
}

/// Why [`BrokerHandle::publish`](crate::BrokerHandle::publish) refused a downlink.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("invalid device id: {0}")]
    InvalidDeviceId(String),
    #[error("topic {topic:?} is not inside {prefix:?}")]
    OutsideNamespace { topic: String, prefix: String },
    #[error("invalid topic: {0}")]
    InvalidTopic(gema_acl::topic::TopicError),
    #[error("payload of {size} bytes exceeds the maximum packet size")]
    TooLarge { size: usize },
}
