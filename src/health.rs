//! The deep health check: database round trip, pending migrations, certificate expiry.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gema_admin_api::{Check, CheckStatus, HealthProbe};
use gema_store::Store;
use serde_json::json;
use time::OffsetDateTime;

/// A certificate closer than this to expiry makes the check warn.
const CERT_WARN_DAYS: i64 = 30;
const DB_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct DaemonHealth {
    pub store: Arc<dyn Store>,
    /// `(check name, certificate file)`.
    pub certificates: Vec<(&'static str, PathBuf)>,
}

#[async_trait::async_trait]
impl HealthProbe for DaemonHealth {
    async fn checks(&self) -> Vec<Check> {
        let mut checks = vec![self.database().await, self.migrations().await];
        for (name, path) in &self.certificates {
            checks.push(certificate(name, path));
        }
        checks
    }
}

impl DaemonHealth {
    async fn database(&self) -> Check {
        let started = Instant::now();
        let (status, detail) = match tokio::time::timeout(DB_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => (
                CheckStatus::Ok,
                json!({
                    "backend": self.store.backend(),
                    "round_trip_us": started.elapsed().as_micros() as u64,
                }),
            ),
            Ok(Err(err)) => (CheckStatus::Fail, json!({ "error": err.to_string() })),
            Err(_) => (
                CheckStatus::Fail,
                json!({ "error": format!("no answer within {DB_TIMEOUT:?}") }),
            ),
        };
        Check {
            name: "database".into(),
            status,
            detail,
        }
    }

    async fn migrations(&self) -> Check {
        let (status, detail) = match self.store.migration_status().await {
            Ok(s) if s.pending.is_empty() => (
                CheckStatus::Ok,
                json!({ "applied": s.applied.len(), "pending": [] }),
            ),
            Ok(s) => (
                CheckStatus::Fail,
                json!({ "applied": s.applied.len(), "pending": s.pending }),
            ),
            Err(err) => (CheckStatus::Fail, json!({ "error": err.to_string() })),
        };
        Check {
            name: "migrations".into(),
            status,
            detail,
        }
    }
}

fn certificate(name: &str, path: &Path) -> Check {
    let (status, detail) = match gema_certs::certificate_info(path) {
        Ok(info) => {
            let days_left = info.days_left(OffsetDateTime::now_utc());
            let status = if days_left < 0 {
                CheckStatus::Fail
            } else if days_left < CERT_WARN_DAYS {
                CheckStatus::Warn
            } else {
                CheckStatus::Ok
            };
            let not_after = info
                .not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            (
                status,
                json!({
                    "path": path.display().to_string(),
                    "subject": info.subject,
                    "not_after": not_after,
                    "days_left": days_left,
                }),
            )
        }
        Err(err) => (CheckStatus::Fail, json!({ "error": err.to_string() })),
    };
    Check {
        name: name.into(),
        status,
        detail,
    }
}
