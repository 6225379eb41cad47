//! The one constructor: [`Gateway::build`] makes every service from a store, a transport,
//! a clock and the settings, in dependency order, and [`Gateway::run`] runs what must run.
//! The daemon (`src/app.rs`) and the test harnesses (`testing::TestGateway`, the admin
//! API's `TestApi`) all build the gateway here, so no harness wires it differently.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gema_store::Store;
use tokio::sync::{mpsc, watch};

use crate::auth::{Auth, AuthSettings};
use crate::billing::{Billing, BillingSettings};
use crate::certificates::{DeviceCertSettings, DeviceCertificates};
use crate::clock::Clock;
use crate::cluster::{Cluster, ClusterWork, NodeSettings};
use crate::delivery::{self, AnnouncementRelay, DeliverySettings, Handover};
use crate::device_ops::{DeviceOps, DeviceOpsSettings};
use crate::exports::{ExportSettings, Exports};
use crate::payments::{PaymentSettings, Payments};
use crate::reconciliation::Reconciliation;
use crate::registry::Registry;
use crate::sampler::{Sampler, SamplerSettings};
use crate::settlement::{Settlement, SettlementSettings};
use crate::transport::{DeviceTransport, Presence, UplinkMessage};
use crate::whatsapp::notices::NOTICE_SWEEP_INTERVAL;
use crate::whatsapp::{WhatsApp, WhatsAppSettings};

/// What the gateway is built from.
#[derive(Debug)]
pub struct GatewayDeps {
    pub store: Arc<dyn Store>,
    /// How devices are reached: the embedded broker in the daemon, a fake in tests.
    pub transport: Arc<dyn DeviceTransport>,
    /// "Now" for every service.
    pub clock: Arc<dyn Clock>,
    pub settings: GatewaySettings,
}

/// The rules and tunables of every service.
#[derive(Debug, Clone, Default)]
pub struct GatewaySettings {
    pub payments: PaymentSettings,
    pub delivery: DeliverySettings,
    pub device_ops: DeviceOpsSettings,
    pub auth: AuthSettings,
    pub node: NodeSettings,
    pub settlement: SettlementSettings,
    pub exports: ExportSettings,
    pub billing: BillingSettings,
    pub whatsapp: WhatsAppSettings,
    pub device_certs: DeviceCertSettings,
    pub sampler: SamplerSettings,
}

/// The gateway's services, built and wired. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub registry: Registry,
    pub auth: Auth,
    pub payments: Payments,
    pub device_ops: DeviceOps,
    pub delivery: Arc<AnnouncementRelay>,
    pub cluster: Cluster,
    pub settlement: Settlement,
    pub reconciliation: Reconciliation,
    pub exports: Exports,
    pub billing: Billing,
    pub whatsapp: WhatsApp,
    pub certificates: DeviceCertificates,
    /// The gauges read from the store (outboxes, invoices, payouts, fleet health, …).
    pub sampler: Sampler,
    /// Provisioning by claim (`claims.rs`).
    pub claims: crate::claims::Claims,
}

impl Gateway {
    /// Builds every service, in dependency order, each given what it needs:
    /// 1. delivery's [`Handover`] and results channel (plain values, made first);
    /// 2. [`Payments`] (the hand-over, the results queue: it starts the commit loop, the
    ///    one writer of payment events and delivery results);
    /// 3. [`DeviceOps`] (payments, for the dynamic QRs devices ask for); it wraps the
    ///    transport so every downlink is traced, and everything below gets the wrapped one;
    /// 4. delivery's [`AnnouncementRelay`] (the hand-over, the results sender);
    /// 5. [`Registry`] (ends live sessions through the transport), [`Auth`] and
    ///    [`Cluster`] (this node's membership; [`Cluster::join`] registers it once the
    ///    listeners' addresses are known), and [`Reconciliation`] (the store only);
    /// 6. [`WhatsApp`], then [`Settlement`] (payout notices) and [`Billing`] (payments;
    ///    isolation notices and receipts).
    ///
    /// Starts the payments commit loop, so call it inside a tokio runtime; nothing else
    /// runs until [`Gateway::run`] (ingest already works: it needs only the commit loop).
    pub fn build(deps: GatewayDeps) -> Gateway {
        let GatewayDeps {
            store,
            transport,
            clock,
            settings,
        } = deps;
        let node_id = settings.node.id.clone();
        let exports = Exports::new(
            store.clone(),
            clock.clone(),
            settings.exports,
            settings.node.id.clone(),
        );
        let cluster = Cluster::new(
            store.clone(),
            transport.clone(),
            clock.clone(),
            settings.node,
        );
        // Every sender below goes through this node's fence; a kick reaches every node.
        let transport = cluster.transport(transport);
        let handover = Handover::new();
        let (results, results_queue) = delivery::results_channel();
        let payments = Payments::new(
            store.clone(),
            settings.payments,
            clock.clone(),
            handover.clone(),
            results_queue,
        );
        let revocations = settings.device_certs.revocations.clone();
        // Its transport only ends sessions (on revocation); the answers to devices'
        // renewals go through device operations' traced transport.
        let certificates = DeviceCertificates::new(
            store.clone(),
            Some(transport.clone()),
            settings.device_certs,
        );
        let device_ops = DeviceOps::new(
            store.clone(),
            transport,
            clock.clone(),
            settings.device_ops,
            Some(payments.clone()),
            cluster.clone(),
            Some(certificates.clone()),
        );
        // Every downlink goes through device operations' transport, which traces it.
        let transport = device_ops.transport();
        let delivery = AnnouncementRelay::new(
            store.clone(),
            transport.clone(),
            clock.clone(),
            settings.delivery,
            handover,
            results,
            cluster.clone(),
        );
        let registry = Registry::connected(store.clone(), transport).with_revocations(revocations);
        let claims = crate::claims::Claims::new(store.clone(), clock.clone(), certificates.clone());
        let whatsapp = WhatsApp::new(
            store.clone(),
            clock.clone(),
            settings.whatsapp,
            node_id.clone(),
        );
        let settlement = Settlement::new(
            store.clone(),
            clock.clone(),
            settings.settlement,
            whatsapp.clone(),
        );
        let reconciliation = Reconciliation::new(store.clone());
        let billing = Billing::new(
            store.clone(),
            clock.clone(),
            settings.billing,
            payments.clone(),
            whatsapp.clone(),
            node_id,
        );
        let sampler = Sampler {
            store: store.clone(),
            clock: clock.clone(),
            cluster: cluster.clone(),
            device_ops: device_ops.clone(),
            settings: settings.sampler,
        };
        let auth = Auth::new(store, settings.auth).with_clock(clock);
        Gateway {
            sampler,
            registry,
            auth,
            payments,
            device_ops,
            delivery,
            cluster,
            settlement,
            reconciliation,
            exports,
            billing,
            whatsapp,
            certificates,
            claims,
        }
    }

    /// Runs the gateway until `shutdown` resolves, then stops its tasks and returns:
    /// device operations (every uplink and presence change enters there: traced, acks and
    /// presence passed on to delivery at once, the rest handled; config pushes and the
    /// queued commands on their timers), delivery (announcements; the outbox is read at
    /// once, so whatever was committed before this start is delivered), this node's
    /// heartbeat, and the cluster-wide sweeps, each on the node holding its lease: the
    /// payments expiry sweep (every [`PaymentSettings::expiry_sweep_interval`]) and the
    /// closing of overdue commands and finished QRs (every `command_sweep_interval`), and
    /// the export sweep (files past their retention), the billing sweep, and WhatsApp's
    /// notice sweep (reminders, device alerts, daily summaries, every
    /// [`NOTICE_SWEEP_INTERVAL`]); and on every node the export worker,
    /// which claims queued export jobs one at a time, and the metrics [`Sampler`].
    /// On shutdown the node gives its leases up and is marked stopped. Returns an error if
    /// one of the tasks panicked.
    pub async fn run(
        self,
        uplinks: mpsc::Receiver<UplinkMessage>,
        mut presence: mpsc::Receiver<Presence>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tokio::task::JoinError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // Presence is first recorded as sessions (which node holds each device); what is
        // still news after that goes on to device operations.
        let (sessions_tx, sessions_rx) = mpsc::channel::<Presence>(4096);
        let sessions = tokio::spawn({
            let cluster = self.cluster.clone();
            async move {
                const BATCH: usize = 256;
                let mut batch = Vec::with_capacity(BATCH);
                while presence.recv_many(&mut batch, BATCH).await > 0 {
                    for change in cluster.sessions_changed(std::mem::take(&mut batch)).await {
                        if sessions_tx.send(change).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let presence = sessions_rx;
        // Device operations → delivery: acks and presence.
        let (ack_tx, ack_rx) = mpsc::channel::<UplinkMessage>(4096);
        let (presence_tx, presence_rx) = mpsc::channel::<Presence>(4096);
        let device_ops = tokio::spawn(self.device_ops.clone().run(
            uplinks,
            ack_tx,
            presence,
            presence_tx,
            stopped(stop_rx.clone()),
        ));
        let delivery = tokio::spawn(self.delivery.clone().run(
            ack_rx,
            presence_rx,
            stopped(stop_rx.clone()),
        ));
        // Anything committed before this start (a crash, a restart) is delivered now.
        self.delivery.handover().read_outbox();
        // Other nodes' signals: devices held here with outbox work go to delivery.
        let (work_tx, mut work_rx) = mpsc::channel::<Vec<String>>(1024);
        let heartbeat = tokio::spawn(self.cluster.clone().run(work_tx, stopped(stop_rx.clone())));
        let wake = tokio::spawn({
            let relay = self.delivery.clone();
            let ops = self.device_ops.clone();
            async move {
                while let Some(devices) = work_rx.recv().await {
                    relay.wake_devices(devices.clone());
                    ops.devices_have_work(&devices).await;
                }
            }
        });
        let expiry = self.payments.settings().expiry_sweep_interval;
        let payments = self.payments.clone();
        let expiry_sweep = tokio::spawn(cluster_sweep(
            self.cluster.clone(),
            ClusterWork::ExpirySweep,
            expiry,
            move || {
                let payments = payments.clone();
                async move {
                    if let Err(err) = payments.expire_due().await {
                        tracing::error!(error = %err, "expiry sweep failed");
                    }
                }
            },
            stopped(stop_rx.clone()),
        ));
        let ops = self.device_ops.clone();
        let command_sweep = tokio::spawn(cluster_sweep(
            self.cluster.clone(),
            ClusterWork::CommandSweep,
            self.device_ops.settings().command_sweep_interval,
            move || {
                let ops = ops.clone();
                async move { ops.close_due().await }
            },
            stopped(stop_rx.clone()),
        ));
        let settlement = self.settlement.clone();
        let settlement_schedule = tokio::spawn(cluster_sweep(
            self.cluster.clone(),
            ClusterWork::SettlementSchedule,
            self.settlement.settings().schedule_check_interval,
            move || {
                let settlement = settlement.clone();
                async move {
                    if let Err(err) = settlement.run_schedule().await {
                        tracing::error!(error = %err, "scheduled settlement run failed");
                    }
                }
            },
            stopped(stop_rx.clone()),
        ));
        let exports = self.exports.clone();
        let export_sweep = tokio::spawn(cluster_sweep(
            self.cluster.clone(),
            ClusterWork::ExportSweep,
            self.exports.settings().sweep_interval,
            move || {
                let exports = exports.clone();
                async move {
                    if let Err(err) = exports.expire_due().await {
                        tracing::error!(error = %err, "export sweep failed");
                    }
                }
            },
            stopped(stop_rx.clone()),
        ));
        let billing = self.billing.clone();
        let billing_sweep = tokio::spawn(cluster_sweep(
            self.cluster.clone(),
            ClusterWork::BillingSweep,
            self.billing.settings().sweep_interval,
            move || {
                let billing = billing.clone();
                async move {
                    if let Err(err) = billing.sweep().await {
                        tracing::error!(error = %err, "billing sweep failed");
                    }
                }
            },
            stopped(stop_rx.clone()),
        ));
        let billing_payments = tokio::spawn(self.billing.clone().run(stopped(stop_rx.clone())));
        let notices = self.whatsapp.clone();
        let whatsapp_notices = tokio::spawn(cluster_sweep(
            self.cluster.clone(),
            ClusterWork::WhatsAppNotices,
            NOTICE_SWEEP_INTERVAL,
            move || {
                let notices = notices.clone();
                async move {
                    if let Err(err) = notices.notice_sweep().await {
                        tracing::error!(error = %err, "WhatsApp notice sweep failed");
                    }
                }
            },
            stopped(stop_rx.clone()),
        ));
        let whatsapp = tokio::spawn(
            self.whatsapp
                .clone()
                .run(self.cluster.clone(), stopped(stop_rx.clone())),
        );
        // On every node: the revocation list follows revocations made on any node.
        let revocations = tokio::spawn({
            let certificates = self.certificates.clone();
            let stop = stopped(stop_rx.clone());
            async move {
                tokio::pin!(stop);
                let mut tick = tokio::time::interval(crate::certificates::REVOCATION_REFRESH);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        () = &mut stop => return,
                    }
                    if let Err(err) = certificates.refresh_revocations().await {
                        tracing::error!(error = %err, "reading the certificate revocation list failed");
                    }
                }
            }
        });
        let sampler = tokio::spawn(self.sampler.clone().run(stopped(stop_rx.clone())));
        let export_worker = tokio::spawn(self.exports.clone().run(stopped(stop_rx)));
        shutdown.await;
        let _ = stop_tx.send(true);
        let results = [
            expiry_sweep.await,
            command_sweep.await,
            settlement_schedule.await,
            export_sweep.await,
            billing_sweep.await,
            billing_payments.await,
            whatsapp_notices.await,
            whatsapp.await,
            export_worker.await,
            revocations.await,
            sampler.await,
            heartbeat.await,
            delivery.await,
            device_ops.await,
        ];
        wake.abort();
        sessions.abort();
        self.cluster.leave().await;
        results.into_iter().collect()
    }
}

/// Runs `work` every `every` while this node holds `lease`, until `stop`.
async fn cluster_sweep<F, Fut>(
    cluster: Cluster,
    lease: ClusterWork,
    every: Duration,
    work: F,
    stop: impl Future<Output = ()>,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let every = every.max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if cluster.holds(lease, every).await {
                    work().await;
                }
            }
            _ = &mut stop => break,
        }
    }
}
