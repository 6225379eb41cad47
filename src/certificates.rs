//! Keeping the broker's certificate valid while the daemon runs. Every
//! `[tls] renewal_check_interval_secs` the development server certificate is re-issued when
//! it has fewer than `renew_before_days` left (under the same CA, so devices notice nothing)
//! and the broker serves the new one at once; with the operator's own files nothing is
//! written (the broker reloads them when they change), and one with fewer than
//! `renew_before_days` left is logged as a warning at every check. Either way the days
//! left of the served certificate and of the CA are exported as
//! `gema_tls_certificate_days_left`.

use std::future::Future;
use std::time::Duration;

use gema_broker::BrokerHandle;
use gema_certs::{DevPki, DevPkiOutcome, TlsFiles, certificate_info};

use crate::config::Config;

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
    /// The development PKI and its host names; `None` with the operator's own files.
    development: Option<(DevPki, Vec<String>)>,
    renew_before: time::Duration,
    every: Duration,
}

impl CertificateWatch {
    pub(crate) fn new(config: &Config, files: TlsFiles) -> Self {
        let development = config
            .tls
            .cert
            .is_none()
            .then(|| (development_pki(config), development_hostnames(config)));
        Self {
            files,
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
