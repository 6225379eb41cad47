//! Keeping the broker's certificate valid while the daemon runs. Every
//! `[tls] renewal_check_interval_secs` the development server certificate is re-issued when
//! it has fewer than `renew_before_days` left (under the same CA, so devices notice nothing)
//! and the broker serves the new one at once; with the operator's own files nothing is
//! written (the broker reloads them when they change), and one with fewer than
//! `renew_before_days` left is logged as a warning at every check. Either way the days
//! left of the served certificate, of its CA and of the device CA are exported as
//! `gema_tls_certificate_days_left{certificate="server"|"ca"|"device_ca"}`.

use std::future::Future;
use std::time::Duration;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use gema_broker::BrokerHandle;
use gema_certs::{DevPki, DevPkiOutcome, DeviceCa, DeviceCaFiles, TlsFiles, certificate_info};
use gema_gateway::certificates::DeviceCertSettings;
use gema_gateway::clock::Clock;
use gema_store::{Backend, Store};

use crate::config::Config;

/// The device CA: the operator's (`[mqtt] device_ca` and `device_ca_key`; without the key
/// Gema verifies but cannot issue), or the one Gema creates in
/// `<data_dir>/certs/device-ca.{pem,key}`. On PostgreSQL the created one is shared through
/// the database like the development CA, so a certificate from one node is trusted by
/// every node. Returns the CA certificate file the broker trusts and the gateway's
/// settings for issuing.
pub(crate) async fn device_ca(
    config: &Config,
    store: &dyn Store,
    clock: &dyn Clock,
) -> anyhow::Result<(PathBuf, DeviceCertSettings)> {
    let validity = time::Duration::days(i64::from(config.mqtt.device_cert_validity_days));
    let (cert, ca) = match (&config.mqtt.device_ca, &config.mqtt.device_ca_key) {
        (Some(cert), Some(key)) => {
            let ca = DeviceCa::load(cert, key)
                .with_context(|| format!("loading the device CA {}", cert.display()))?;
            (cert.clone(), Some(ca))
        }
        (Some(cert), None) => {
            tracing::info!(
                ca = %cert.display(),
                "device certificates are verified against the configured device CA; without \
                 [mqtt] device_ca_key this daemon does not issue them"
            );
            (cert.clone(), None)
        }
        (None, _) => {
            let dir = config.data_dir.join("certs");
            let files = DeviceCa::ensure_files(&dir).context("preparing the device CA")?;
            if store.backend() == Backend::Postgres {
                share_device_ca(&files, store, clock).await?;
            } else if files.created {
                tracing::info!(ca = %files.cert.display(), "created the device CA");
            }
            let ca = DeviceCa::load(&files.cert, &files.key).context("loading the device CA")?;
            (files.cert, Some(ca))
        }
    };
    Ok((
        cert,
        DeviceCertSettings {
            ca: ca.map(Arc::new),
            validity,
            ..DeviceCertSettings::default()
        },
    ))
}

/// Offers this node's device CA to the cluster and adopts the one stored first.
async fn share_device_ca(
    files: &DeviceCaFiles,
    store: &dyn Store,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let mine = (read(&files.cert)?, read(&files.key)?);
    let shared = share_ca("device-ca", "device CA", &mine, store, clock).await?;
    if shared != mine {
        DeviceCa::write_files(files, &shared.0, &shared.1)
            .context("adopting the cluster's device CA")?;
        tracing::info!("adopted the cluster's device CA");
    }
    Ok(())
}

/// Offers `mine` (a CA's certificate and key PEM) to the cluster under `name` and returns
/// the one stored first, which every node then uses.
pub(crate) async fn share_ca(
    name: &str,
    what: &str,
    mine: &(String, String),
    store: &dyn Store,
    clock: &dyn Clock,
) -> anyhow::Result<(String, String)> {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct SharedCa {
        ca_cert: String,
        ca_key: String,
    }
    let offered = serde_json::to_vec(&SharedCa {
        ca_cert: mine.0.clone(),
        ca_key: mine.1.clone(),
    })?;
    let stored = store
        .shared_secret(name, &offered, clock.now_ms())
        .await
        .with_context(|| format!("sharing the {what} through the database"))?;
    let shared: SharedCa =
        serde_json::from_slice(&stored).with_context(|| format!("reading the cluster's {what}"))?;
    Ok((shared.ca_cert, shared.ca_key))
}

/// The development PKI's directory under the data directory.
pub(crate) fn development_pki(config: &Config) -> DevPki {
    DevPki::new(config.data_dir.join("certs"))
}

/// The names the development server certificate is issued for.
pub(crate) fn development_hostnames(config: &Config) -> Vec<String> {
    let mut hostnames: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    if !hostnames.contains(&config.mqtt.public_host) {
        hostnames.push(config.mqtt.public_host.clone());
    }
    hostnames
}

/// What the periodic check looks after.
#[derive(Debug, Clone)]
pub(crate) struct CertificateWatch {
    files: TlsFiles,
    /// The CA device certificates are verified against (its days left are exported too).
    device_ca: PathBuf,
    /// The development PKI and its host names; `None` with the operator's own files.
    development: Option<(DevPki, Vec<String>)>,
    renew_before: time::Duration,
    every: Duration,
}

impl CertificateWatch {
    pub(crate) fn new(config: &Config, files: TlsFiles, device_ca: PathBuf) -> Self {
        let development = config
            .tls
            .cert
            .is_none()
            .then(|| (development_pki(config), development_hostnames(config)));
        Self {
            files,
            device_ca,
            development,
            renew_before: time::Duration::days(i64::from(config.tls.renew_before_days)),
            every: Duration::from_secs(config.tls.renewal_check_interval_secs.max(1)),
        }
    }

    /// Checks now, then every interval, until `stop`.
    pub(crate) async fn run(self, broker: BrokerHandle, stop: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut stop => return,
            }
            let watch = self.clone();
            let renewed = tokio::task::spawn_blocking(move || watch.check()).await;
            if matches!(renewed, Ok(true)) {
                match broker.reload_certificates() {
                    Ok(()) => tracing::info!(
                        cert = %self.files.server_cert.display(),
                        "re-issued the development server certificate before its expiry; now serving it"
                    ),
                    Err(err) => tracing::error!(
                        error = %err,
                        "the re-issued server certificate could not be loaded; still serving the old one"
                    ),
                }
            }
        }
    }

    /// Renews the development certificate if due and updates the metrics. Whether a new
    /// certificate was written.
    fn check(&self) -> bool {
        let mut renewed = false;
        if let Some((pki, hostnames)) = &self.development {
            match pki.ensure_renewing(hostnames, self.renew_before) {
                Ok(DevPkiOutcome::Existing) => {}
                Ok(DevPkiOutcome::ReissuedServer | DevPkiOutcome::CreatedCa) => renewed = true,
                Err(err) => tracing::error!(
                    error = %err,
                    "renewing the development server certificate failed; will retry at the next check"
                ),
            }
        }
        let now = time::OffsetDateTime::now_utc();
        for (label, path) in [
            ("server", &self.files.server_cert),
            ("ca", &self.files.ca_cert),
            ("device_ca", &self.device_ca),
        ] {
            match certificate_info(path) {
                Ok(info) => {
                    let days = info.days_left(now);
                    #[allow(clippy::cast_precision_loss)]
                    metrics::gauge!("gema_tls_certificate_days_left", "certificate" => label)
                        .set(days as f64);
                    // The development certificate was just renewed if due; the operator's
                    // own is the operator's to renew.
                    if label == "server"
                        && self.development.is_none()
                        && days < self.renew_before.whole_days()
                    {
                        tracing::warn!(
                            days_left = days,
                            cert = %path.display(),
                            "the served certificate expires soon; renew it"
                        );
                    }
                }
                Err(err) => tracing::error!(
                    error = %err,
                    certificate = label,
                    "reading a certificate for its expiry failed"
                ),
            }
        }
        renewed
    }
}
