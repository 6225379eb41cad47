//! This gateway as one node among several on one database.
//!
//! Every daemon is a node with a stable id ([`NodeSettings::id`]; the binary derives the
//! default from the host name and the MQTT port, so two nodes on one machine differ). It
//! registers at start ([`Cluster::join`]), heartbeats with how many devices it holds
//! ([`Cluster::heartbeat`], every [`NodeSettings::heartbeat_interval`]), and marks itself
//! stopped on a clean shutdown ([`Cluster::leave`]). A node whose heartbeat is older than
//! [`NodeSettings::presumed_dead_after`] is shown as unresponsive.
//!
//! Periodic work that must happen once per cluster, not once per node, runs only on the
//! node holding that work's lease ([`Cluster::holds`]): the transaction expiry sweep and
//! the command sweep (expiry of commands, clearing of finished dynamic QRs). A lease lasts a
//! few of the work's periods, so when its node dies another takes the work over within
//! that time; a paused node that wakes up after its lease passed finds it taken and does
//! nothing. Work that is already partitioned by device (config pushes and command sends go
//! only to devices connected to this node) needs no lease.
//!
//! On SQLite there is one node, which holds every lease; the code path is the same.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gema_store::{NewNode, NodeRecord, Store};

use crate::GatewayResult;
use crate::clock::Clock;
use crate::transport::DeviceTransport;

/// Who this node is and how often it says so.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Stable across restarts; unique in the cluster.
    pub id: String,
    /// The software version, shown in the node list.
    pub version: String,
    pub heartbeat_interval: Duration,
    /// A node silent for this long is shown as unresponsive.
    pub presumed_dead_after: Duration,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            id: "gema".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            heartbeat_interval: Duration::from_secs(5),
            presumed_dead_after: Duration::from_secs(15),
        }
    }
}

/// Periodic work done by one node of the cluster at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterWork {
    /// Pending transactions past their expiry become expired.
    ExpirySweep,
    /// Commands past their deadlines close; finished dynamic QRs are cleared.
    CommandSweep,
}

impl ClusterWork {
    pub fn lease_name(self) -> &'static str {
        match self {
            ClusterWork::ExpirySweep => "expiry-sweep",
            ClusterWork::CommandSweep => "command-sweep",
        }
    }
}

/// A node as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub record: NodeRecord,
    pub state: NodeState,
    /// Whether this is the node answering.
    pub this_node: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Running,
    /// Stopped cleanly.
    Stopped,
    /// No heartbeat for longer than `presumed_dead_after`: crashed, paused or cut off.
    Unresponsive,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Running => "running",
            NodeState::Stopped => "stopped",
            NodeState::Unresponsive => "unresponsive",
        }
    }
}

/// This node's membership in the cluster. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cluster {
    store: Arc<dyn Store>,
    transport: Arc<dyn DeviceTransport>,
    clock: Arc<dyn Clock>,
    settings: Arc<NodeSettings>,
    /// Leases this node holds, with when they run out (Unix ms), so a lease well inside
    /// its time is not renewed at every tick.
    leases: Arc<Mutex<HashMap<ClusterWork, i64>>>,
}

impl Cluster {
    pub fn new(
        store: Arc<dyn Store>,
        transport: Arc<dyn DeviceTransport>,
        clock: Arc<dyn Clock>,
        settings: NodeSettings,
    ) -> Cluster {
        Cluster {
            store,
            transport,
            clock,
            settings: Arc::new(settings),
            leases: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.settings.id
    }

    pub fn settings(&self) -> &NodeSettings {
        &self.settings
    }

    /// Registers this node with the addresses it bound. A row under the same id that is
    /// neither stopped nor silent means another running process was given the same id (or
    /// this node restarted within a heartbeat after a crash): it is logged, not refused.
    pub async fn join(&self, http_addr: SocketAddr, mqtt_addr: SocketAddr) -> GatewayResult<()> {
        let now_ms = self.clock.now_ms();
        let previous = self
            .store
            .register_node(NewNode {
                id: self.settings.id.clone(),
                version: self.settings.version.clone(),
                http_addr: http_addr.to_string(),
                mqtt_addr: mqtt_addr.to_string(),
                now_ms,
            })
            .await?;
        if let Some(previous) = previous
            && self.state_of(&previous, now_ms) == NodeState::Running
        {
            tracing::warn!(
                node_id = %self.settings.id,
                last_heartbeat_ms_ago = now_ms - previous.heartbeat_at_ms,
                "this node id was running a moment ago: if another process has it, give each node its own `node.id`"
            );
        }
        tracing::info!(node_id = %self.settings.id, "joined the cluster");
        Ok(())
    }

    /// Records this node's heartbeat and how many devices it holds.
    pub async fn heartbeat(&self) -> GatewayResult<()> {
        let held = i64::try_from(self.transport.connected_count()).unwrap_or(i64::MAX);
        self.store
            .heartbeat_node(&self.settings.id, self.clock.now_ms(), held)
            .await?;
        Ok(())
    }

    /// A clean shutdown: gives up this node's leases and marks it stopped.
    pub async fn leave(&self) {
        let held: Vec<ClusterWork> = self.lock_leases().drain().map(|(work, _)| work).collect();
        for work in held {
            if let Err(err) = self
                .store
                .release_lease(work.lease_name(), &self.settings.id)
                .await
            {
                tracing::warn!(error = %err, lease = work.lease_name(), "releasing a lease failed");
            }
        }
        if let Err(err) = self
            .store
            .stop_node(&self.settings.id, self.clock.now_ms())
            .await
        {
            tracing::warn!(error = %err, "marking this node stopped failed");
        }
    }

    /// Every node that ever registered, with its state now.
    pub async fn nodes(&self) -> GatewayResult<Vec<NodeStatus>> {
        let now_ms = self.clock.now_ms();
        Ok(self
            .store
            .list_nodes()
            .await?
            .into_iter()
            .map(|record| NodeStatus {
                state: self.state_of(&record, now_ms),
                this_node: record.id == self.settings.id,
                record,
            })
            .collect())
    }

    /// Whether this node should do `work` now, work that runs every `period`: takes or
    /// renews its lease (lasting three periods, at least ten seconds) when less than half
    /// of it is left. A storage error counts as "no": the work waits for the next tick
    /// rather than risk running twice.
    pub async fn holds(&self, work: ClusterWork, period: Duration) -> bool {
        let ttl_ms = i64::try_from(period.saturating_mul(3).as_millis())
            .unwrap_or(i64::MAX)
            .max(10_000);
        let now_ms = self.clock.now_ms();
        if let Some(until) = self.lock_leases().get(&work)
            && until - now_ms > ttl_ms / 2
        {
            return true;
        }
        match self
            .store
            .take_lease(work.lease_name(), &self.settings.id, now_ms, ttl_ms)
            .await
        {
            Ok(true) => {
                self.lock_leases().insert(work, now_ms + ttl_ms);
                true
            }
            Ok(false) => {
                self.lock_leases().remove(&work);
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, lease = work.lease_name(), "taking a lease failed");
                self.lock_leases().remove(&work);
                false
            }
        }
    }

    /// Heartbeats every `heartbeat_interval` until `stop`.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.settings.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(err) = self.heartbeat().await {
                        tracing::warn!(error = %err, "node heartbeat failed");
                    }
                }
                _ = &mut stop => break,
            }
        }
    }

    fn state_of(&self, record: &NodeRecord, now_ms: i64) -> NodeState {
        let silent_ms =
            i64::try_from(self.settings.presumed_dead_after.as_millis()).unwrap_or(i64::MAX);
        if record.stopped_at_ms.is_some() {
            NodeState::Stopped
        } else if now_ms - record.heartbeat_at_ms > silent_ms {
            NodeState::Unresponsive
        } else {
            NodeState::Running
        }
    }

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<ClusterWork, i64>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }
}
