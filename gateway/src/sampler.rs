//! Gauges that are states, not events: the fleet's health, outbox backlogs, invoices,
//! payouts, the WhatsApp queue, the cluster's nodes. The sampler reads them from the store
//! (and the fleet's health from device operations) on a timer and sets `metrics` gauges;
//! the binary's exporter serves them.
//!
//! It runs on **every node** (no lease): a lease would leave the previous holder serving
//! its last values after it lost the lease. So the cluster-wide gauges (everything but
//! this node's own) have the same value on every node, and dashboards and alerts take
//! `max` over the nodes. Every query it runs is an aggregate over an indexed status or a
//! small table (`gema_store::monitoring`), except the fleet's health, which pages through
//! the registry and so has its own, longer interval.
//!
//! Labels stay bounded: statuses, outbox kinds, WhatsApp senders (the operator and the
//! merchants with a number of their own), node ids; never a device.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gema_store::Store;

use crate::clock::Clock;
use crate::cluster::{Cluster, NodeState};
use crate::device_ops::DeviceOps;

/// How often the sampler reads.
#[derive(Debug, Clone)]
pub struct SamplerSettings {
    /// Outboxes, invoices, payouts, WhatsApp, nodes.
    pub interval: Duration,
    /// The fleet's health (online, degraded, offline), read a registry page at a time.
    pub fleet_interval: Duration,
}

impl Default for SamplerSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            fleet_interval: Duration::from_secs(60),
        }
    }
}

/// The sampler's inputs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sampler {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cluster: Cluster,
    pub(crate) device_ops: DeviceOps,
    pub(crate) settings: SamplerSettings,
}

/// Label sets seen before: a series that drops out of a reading (a sender whose queue
/// emptied, a pause that ended) is set to 0 rather than left at its last value.
#[derive(Debug, Default)]
pub struct SeenSeries {
    whatsapp_queue: BTreeSet<(String, String)>,
    paused_senders: BTreeSet<String>,
    invoices: BTreeSet<String>,
    settlements: BTreeSet<String>,
}

impl Sampler {
    /// Samples until `stop`: the store's figures every `interval`, the fleet's health every
    /// `fleet_interval`. A failed reading is logged and the gauges keep their values.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.settings.interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fleet_tick =
            tokio::time::interval(self.settings.fleet_interval.max(Duration::from_millis(10)));
        fleet_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = SeenSeries::default();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(err) = self.sample_store(&mut seen).await {
                        tracing::warn!(error = %err, "metrics sampler: reading the store failed");
                    }
                }
                _ = fleet_tick.tick() => self.sample_fleet().await,
                () = &mut stop => return,
            }
        }
    }

    /// Outboxes, invoices, payouts, WhatsApp and the cluster's nodes.
    pub async fn sample_store(&self, seen: &mut SeenSeries) -> crate::GatewayResult<()> {
        let now_ms = self.clock.now_ms();
        let snapshot = self.store.monitoring_snapshot(now_ms).await?;
        for outbox in &snapshot.outboxes {
            metrics::gauge!("gema_outbox_pending", "kind" => outbox.kind)
                .set(outbox.pending as f64);
            let age_ms = outbox
                .oldest_created_ms
                .map_or(0, |created| (now_ms - created).max(0));
            let age = Duration::from_millis(u64::try_from(age_ms).unwrap_or(0));
            metrics::gauge!("gema_outbox_oldest_pending_age_seconds", "kind" => outbox.kind)
                .set(age.as_secs_f64());
        }

        let mut invoices = BTreeSet::new();
        for row in &snapshot.invoices {
            metrics::gauge!("gema_billing_invoices", "status" => row.status.clone())
                .set(row.count as f64);
            metrics::gauge!("gema_billing_invoices_amount_rupiah", "status" => row.status.clone())
                .set(row.amount as f64);
            invoices.insert(row.status.clone());
        }
        for status in ["unpaid", "paid"] {
            if !invoices.contains(status) {
                metrics::gauge!("gema_billing_invoices", "status" => status).set(0.0);
                metrics::gauge!("gema_billing_invoices_amount_rupiah", "status" => status).set(0.0);
            }
        }
        for gone in seen.invoices.difference(&invoices) {
            metrics::gauge!("gema_billing_invoices", "status" => gone.clone()).set(0.0);
            metrics::gauge!("gema_billing_invoices_amount_rupiah", "status" => gone.clone())
                .set(0.0);
        }
        seen.invoices = invoices;

        let mut settlements = BTreeSet::new();
        for row in &snapshot.settlements {
            metrics::gauge!("gema_settlement_batches", "status" => row.status.clone())
                .set(row.count as f64);
            metrics::gauge!("gema_settlement_amount_rupiah", "status" => row.status.clone())
                .set(row.amount as f64);
            settlements.insert(row.status.clone());
        }
        // Pending and paid are always there, so a payout panel has a line from the start.
        for status in ["pending", "paid"] {
            if !settlements.contains(status) {
                metrics::gauge!("gema_settlement_batches", "status" => status).set(0.0);
                metrics::gauge!("gema_settlement_amount_rupiah", "status" => status).set(0.0);
            }
        }
        for gone in seen.settlements.difference(&settlements) {
            metrics::gauge!("gema_settlement_batches", "status" => gone.clone()).set(0.0);
            metrics::gauge!("gema_settlement_amount_rupiah", "status" => gone.clone()).set(0.0);
        }
        seen.settlements = settlements;

        // The operator's sender always has its series, so an idle queue reads as 0.
        let mut queue: BTreeSet<(String, String)> = ["pending", "sending", "uncertain"]
            .into_iter()
            .map(|status| (gema_store::OPERATOR_SENDER.to_owned(), status.to_owned()))
            .collect();
        for (sender, status) in &queue {
            if !snapshot
                .whatsapp_queue
                .iter()
                .any(|row| &row.sender_id == sender && &row.status == status)
            {
                metrics::gauge!("gema_whatsapp_queue_messages",
                    "sender" => sender.clone(), "status" => status.clone())
                .set(0.0);
            }
        }
        for row in &snapshot.whatsapp_queue {
            metrics::gauge!("gema_whatsapp_queue_messages",
                "sender" => row.sender_id.clone(), "status" => row.status.clone())
            .set(row.count as f64);
            queue.insert((row.sender_id.clone(), row.status.clone()));
        }
        for (sender, status) in seen.whatsapp_queue.difference(&queue) {
            metrics::gauge!("gema_whatsapp_queue_messages",
                "sender" => sender.clone(), "status" => status.clone())
            .set(0.0);
        }
        seen.whatsapp_queue = queue;

        // Only a sender Meta restricted is paused (until the next Jakarta midnight).
        let mut paused = BTreeSet::new();
        for (sender, _reason) in &snapshot.paused_senders {
            metrics::gauge!("gema_whatsapp_sender_paused", "sender" => sender.clone()).set(1.0);
            paused.insert(sender.clone());
        }
        for sender in seen.paused_senders.difference(&paused) {
            metrics::gauge!("gema_whatsapp_sender_paused", "sender" => sender.clone()).set(0.0);
        }
        seen.paused_senders = paused;

        let nodes = self.cluster.nodes().await?;
        for state in [
            NodeState::Running,
            NodeState::Stopped,
            NodeState::Unresponsive,
        ] {
            let count = nodes.iter().filter(|n| n.state == state).count();
            metrics::gauge!("gema_cluster_nodes", "state" => state.as_str()).set(count as f64);
        }
        for node in &nodes {
            metrics::gauge!("gema_cluster_node_devices_held", "node" => node.record.id.clone())
                .set(node.record.devices_held as f64);
        }
        Ok(())
    }

    /// Devices by health status, the whole fleet.
    pub async fn sample_fleet(&self) {
        match self.device_ops.fleet_counts(None).await {
            Ok([online, degraded, offline]) => {
                metrics::gauge!("gema_devices", "health" => "online").set(online as f64);
                metrics::gauge!("gema_devices", "health" => "degraded").set(degraded as f64);
                metrics::gauge!("gema_devices", "health" => "offline").set(offline as f64);
            }
            Err(err) => {
                tracing::warn!(error = %err, "metrics sampler: reading the fleet's health failed");
            }
        }
    }
}
