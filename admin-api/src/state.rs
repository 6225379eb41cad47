//! What every handler gets: the gateway services the API calls, the health checks the
//! binary supplies, and what a technician is told about reaching the broker. The binary
//! (and the test harness) builds it; this crate only reads it. Re-exported at the crate
//! root, so callers write `gema_admin_api::AppState`.

use std::sync::Arc;

use gema_gateway::Registry;
use gema_gateway::auth::Auth;
use gema_gateway::billing::Billing;
use gema_gateway::cluster::Cluster;
use gema_gateway::device_ops::DeviceOps;
use gema_gateway::exports::Exports;
use gema_gateway::payments::Payments;
use gema_gateway::reconciliation::Reconciliation;
use gema_gateway::settlement::Settlement;
use gema_gateway::whatsapp::WhatsApp;

use crate::views::health::Check;

/// What the API tells a technician about reaching the broker, when it issues a secret.
#[derive(Debug, Clone)]
pub struct ProvisioningInfo {
    pub mqtt_host: String,
    pub mqtt_port: u16,
    pub ca_certificate_path: String,
    pub ca_certificate_pem: String,
}

/// What every handler gets, behind one `Arc`: axum hands each request (and each of its
/// extractors and middleware layers) a copy, and a copy of a dozen services' handles was
/// a dozen reference counts up and down per copy (7 % of the daemon's CPU on the payment
/// path, measured with `perf` under `gema bench payments`). Reads its fields through
/// `Deref`: `state.payments`.
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppServices>);

impl AppState {
    pub fn new(services: AppServices) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppServices;

    fn deref(&self) -> &AppServices {
        &self.0
    }
}

/// The services [`AppState`] shares.
#[derive(Debug)]
pub struct AppServices {
    pub registry: Registry,
    /// Device certificates: signing CSRs, revocation.
    pub certificates: gema_gateway::certificates::DeviceCertificates,
    /// Provisioning by claim: production batches' claims.
    pub claims: gema_gateway::claims::Claims,
    pub auth: Auth,
    pub payments: Payments,
    pub device_ops: DeviceOps,
    /// This node's membership: the node list.
    pub cluster: Cluster,
    pub settlement: Settlement,
    /// Provider reports matched against the transactions.
    pub reconciliation: Reconciliation,
    /// Export jobs: queue, follow, download.
    pub exports: Exports,
    /// Subscription billing: packages, customers, invoices, import, receipts, finance.
    pub billing: Billing,
    /// WhatsApp: the outbox, staff messages, senders, texts, settings, Meta's webhook.
    pub whatsapp: WhatsApp,
    pub health: Arc<dyn HealthProbe>,
    pub provisioning: Arc<ProvisioningInfo>,
}

/// The daemon's dependency checks behind `GET /health/deep` (database, migrations,
/// certificates). The binary implements it; this crate only reports the result.
#[async_trait::async_trait]
pub trait HealthProbe: Send + Sync + std::fmt::Debug {
    async fn checks(&self) -> Vec<Check>;
}
