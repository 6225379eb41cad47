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
//! the command sweep (expiry of commands, clearing of finished dynamic QRs), the export
//! sweep (deleting export files past their retention). A lease lasts a
//! few of the work's periods, so when its node dies another takes the work over within
//! that time; a paused node that wakes up after its lease passed finds it taken and does
//! nothing. Work that is already partitioned by device (config pushes and command sends go
//! only to devices connected to this node) needs no lease.
//!
//! # Devices on any node
//!
//! A device connects to whichever node the load balancer picks. The node records that it
//! holds the device's session ([`Cluster::sessions_changed`]; the store's `device_sessions`
//! with the device's connection epoch, one more on every connect anywhere). Taking a device
//! over from another node signals that node (`kick <device> <epoch>`), which ends its older
//! session (its will fires there, once); its late disconnect then changes nothing, and is
//! not passed on as presence, since the device is online elsewhere. A missed signal is
//! caught at the next heartbeat, which asks for sessions started elsewhere since the last
//! one. Revoking, rotating, disabling or unbinding with a kick ends the session wherever
//! it is: [`ClusterTransport::disconnect`] ends the local one and signals `kick <device> 0`.
//!
//! Delivery is claimed per device, not per row: only the node holding a device's current
//! session sends to it (one sender per device also keeps its order). A node that has work
//! for a device held elsewhere (a callback landed on it) signals `work <device> …`; the
//! holder reads that device's outbox at once. The row stays in the table, so a missed
//! signal costs only until the holder's next outbox recheck.
//!
//! The fence: a node sends nothing unless its last heartbeat succeeded within two
//! heartbeat intervals ([`ClusterTransport`] answers "offline" otherwise). A node that
//! was paused (SIGSTOP) past its devices' keepalive wakes up with a stale heartbeat; before
//! it sends again it heartbeats, and ends every local session the database says was taken
//! over meanwhile, so it sends nothing stale. Real elapsed time (not the injected clock)
//! measures the fence: it is about this process, not the domain's "now".
//!
//! On SQLite there is one node, which holds every lease and every session; signals go
//! nowhere; the code path is the same.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gema_store::cluster::MAX_SIGNAL_BYTES;
use gema_store::{NewNode, NodeRecord, Store};
use tokio::sync::mpsc;

use crate::GatewayResult;
use crate::clock::Clock;
use crate::lock;
use crate::transport::{DeviceTransport, Presence, PublishOutcome};

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
    /// Settlement batches generated on their payout schedules.
    SettlementSchedule,
    /// Export files past their retention are deleted and their jobs marked expired.
    ExportSweep,
    /// Billing's daily run, isolation webhooks, missed invoice payments.
    BillingSweep,
    /// The WhatsApp sender worker: one node sends, so pacing and claims stay in one place.
    WhatsAppSender,
    /// Bill reminders, device alerts and daily summaries queued for WhatsApp.
    WhatsAppNotices,
}

impl ClusterWork {
    pub fn lease_name(self) -> &'static str {
        match self {
            ClusterWork::ExpirySweep => "expiry-sweep",
            ClusterWork::CommandSweep => "command-sweep",
            ClusterWork::SettlementSchedule => "settlement-schedule",
            ClusterWork::ExportSweep => "export-sweep",
            ClusterWork::BillingSweep => "billing-sweep",
            ClusterWork::WhatsAppSender => "whatsapp-sender",
            ClusterWork::WhatsAppNotices => "whatsapp-notices",
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
    /// The transport itself, not the fenced [`ClusterTransport`]: ending a session needs
    /// no fence.
    transport: Arc<dyn DeviceTransport>,
    clock: Arc<dyn Clock>,
    settings: Arc<NodeSettings>,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    /// Leases this node holds, with when they run out (Unix ms), so a lease well inside
    /// its time is not renewed at every tick.
    leases: Mutex<HashMap<ClusterWork, i64>>,
    /// The epoch of each session this node holds.
    sessions: Mutex<HashMap<String, i64>>,
    /// When this node last proved it is alive (joined, or a heartbeat succeeded); `None`
    /// until it joins, and then the fence is not armed (a gateway in a test that never
    /// joins sends freely).
    alive_at: Mutex<Option<Instant>>,
    /// The clock's time of the last check for sessions taken over by other nodes.
    resynced_at_ms: Mutex<i64>,
    /// The nodes that were running at the last heartbeat (this one included).
    running: Mutex<std::collections::HashSet<String>>,
    /// Devices with outbox work held elsewhere, to be signalled (batched by `run`).
    wake_tx: mpsc::UnboundedSender<String>,
    wake_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

/// What another node asked of this one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Signal {
    /// These devices have outbox work: whoever holds them reads their outbox.
    Work(Vec<String>),
    /// End this node's session of the device if it is older than `epoch` (0: any).
    Kick { device_id: String, epoch: i64 },
}

impl Signal {
    fn parse(text: &str) -> Option<Signal> {
        let mut words = text.split_ascii_whitespace();
        match words.next()? {
            "work" => Some(Signal::Work(words.map(str::to_owned).collect())),
            "kick" => {
                let device_id = words.next()?.to_owned();
                let epoch = words.next()?.parse().ok()?;
                Some(Signal::Kick { device_id, epoch })
            }
            _ => None,
        }
    }
}

impl Cluster {
    pub fn new(
        store: Arc<dyn Store>,
        transport: Arc<dyn DeviceTransport>,
        clock: Arc<dyn Clock>,
        settings: NodeSettings,
    ) -> Cluster {
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        Cluster {
            store,
            transport,
            clock,
            settings: Arc::new(settings),
            state: Arc::new(State {
                leases: Mutex::new(HashMap::new()),
                sessions: Mutex::new(HashMap::new()),
                alive_at: Mutex::new(None),
                resynced_at_ms: Mutex::new(0),
                running: Mutex::new(std::collections::HashSet::new()),
                wake_tx,
                wake_rx: Mutex::new(Some(wake_rx)),
            }),
        }
    }

    /// The transport every downlink sender should use: `transport` behind this node's
    /// fence, whose `disconnect` reaches the device on whichever node holds it.
    pub fn transport(&self, transport: Arc<dyn DeviceTransport>) -> Arc<dyn DeviceTransport> {
        Arc::new(ClusterTransport {
            inner: transport,
            cluster: self.clone(),
        })
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
        // Sessions recorded for this node before this start are over.
        self.store
            .end_node_sessions(&self.settings.id, now_ms)
            .await?;
        *lock(&self.state.resynced_at_ms) = now_ms;
        *lock(&self.state.alive_at) = Some(Instant::now());
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

    /// Records this node's heartbeat and how many devices it holds, then ends the local
    /// sessions other nodes took over since the last heartbeat (in case their signal was
    /// missed). Only then does the fence open again.
    pub async fn heartbeat(&self) -> GatewayResult<()> {
        let held = i64::try_from(self.transport.connected_count()).unwrap_or(i64::MAX);
        let now_ms = self.clock.now_ms();
        self.store
            .heartbeat_node(&self.settings.id, now_ms, held)
            .await?;
        // Overlap the previous check by a heartbeat: clocks of nodes differ a little.
        let interval_ms = millis(self.settings.heartbeat_interval);
        let since = *lock(&self.state.resynced_at_ms) - interval_ms;
        let elsewhere = self
            .store
            .sessions_started_elsewhere(&self.settings.id, since)
            .await?;
        for session in elsewhere {
            self.end_older_session(&session.device_id, session.epoch, "taken over");
        }
        *lock(&self.state.resynced_at_ms) = now_ms;
        let running = self
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.state == NodeState::Running)
            .map(|n| n.record.id)
            .collect();
        *lock(&self.state.running) = running;
        let mut alive_at = lock(&self.state.alive_at);
        if alive_at.is_some() {
            *alive_at = Some(Instant::now());
        }
        Ok(())
    }

    /// Whether this node may send to devices now: it has not joined (a test), or its last
    /// heartbeat succeeded within two heartbeat intervals.
    pub fn may_send(&self) -> bool {
        match *lock(&self.state.alive_at) {
            None => true,
            Some(at) => at.elapsed() <= self.settings.heartbeat_interval * 2,
        }
    }

    /// Records presence changes reported by this node's broker as session starts and ends,
    /// signals the nodes whose sessions were taken over, and returns the changes to pass on
    /// as presence: every connect, and the disconnects of sessions that were still the
    /// device's current one (a session taken over by another node ends here unannounced,
    /// the device being online there).
    pub async fn sessions_changed(&self, changes: Vec<Presence>) -> Vec<Presence> {
        let mut passed = Vec::with_capacity(changes.len());
        let mut connects: Vec<String> = Vec::new();
        for change in changes {
            match change {
                Presence::Connected { ref device_id } => {
                    connects.push(device_id.clone());
                    passed.push(change);
                }
                Presence::Disconnected { ref device_id, .. } => {
                    if connects.contains(device_id) {
                        self.start_sessions(std::mem::take(&mut connects)).await;
                    }
                    if self.end_session(device_id).await {
                        passed.push(change);
                    }
                }
            }
        }
        self.start_sessions(connects).await;
        passed
    }

    async fn start_sessions(&self, devices: Vec<String>) {
        if devices.is_empty() {
            return;
        }
        let now_ms = self.clock.now_ms();
        match self
            .store
            .start_sessions(&self.settings.id, &devices, now_ms)
            .await
        {
            Ok(started) => {
                let mut sessions = lock(&self.state.sessions);
                for start in &started {
                    sessions.insert(start.device_id.clone(), start.epoch);
                }
                drop(sessions);
                for start in started {
                    if let Some(from) = start.taken_from {
                        tracing::info!(device_id = %start.device_id, from = %from, epoch = start.epoch, "device taken over from another node");
                        self.send_signal(format!("kick {} {}", start.device_id, start.epoch));
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, devices = devices.len(), "recording device sessions failed");
            }
        }
    }

    /// Ends the local record of the device's session; `true` if it was the device's
    /// current session (or this node never learnt its epoch).
    async fn end_session(&self, device_id: &str) -> bool {
        let Some(epoch) = lock(&self.state.sessions).remove(device_id) else {
            return true;
        };
        let sessions = [(device_id.to_owned(), epoch)];
        match self
            .store
            .end_sessions(&self.settings.id, &sessions, self.clock.now_ms())
            .await
        {
            Ok(ended) => !ended.is_empty(),
            Err(err) => {
                tracing::error!(error = %err, device_id, "recording a session's end failed");
                true
            }
        }
    }

    /// Ends this node's session of the device if it is older than `epoch` (0: any).
    fn end_older_session(&self, device_id: &str, epoch: i64, why: &'static str) {
        let local = lock(&self.state.sessions).get(device_id).copied();
        let older = match local {
            Some(local) => epoch == 0 || local < epoch,
            // Connected here but not recorded yet (or never): a kick for any session, or
            // one the database says is elsewhere, ends it.
            None => true,
        };
        if older && self.transport.is_connected(device_id) && self.transport.disconnect(device_id) {
            tracing::info!(
                device_id,
                why,
                "device session ended at another node's request"
            );
        }
    }

    /// Asks the node holding `device_id` to read its outbox (batched with others).
    pub fn wake_elsewhere(&self, device_id: &str) {
        let _ = self.state.wake_tx.send(device_id.to_owned());
    }

    /// Which other running node holds the device's current session, if one does (a node
    /// that stopped heartbeating holds nothing: its devices are reconnecting elsewhere).
    pub async fn held_elsewhere(&self, device_id: &str) -> Option<String> {
        match self.store.device_session(device_id).await {
            Ok(Some(s))
                if s.connected
                    && s.node_id != self.settings.id
                    && lock(&self.state.running).contains(&s.node_id) =>
            {
                Some(s.node_id)
            }
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(error = %err, device_id, "reading a device's session failed");
                None
            }
        }
    }

    /// Which of `device_ids` other running nodes hold now.
    pub async fn connected_elsewhere(
        &self,
        device_ids: &[String],
    ) -> std::collections::HashSet<String> {
        let running = lock(&self.state.running).clone();
        if running.iter().all(|n| *n == self.settings.id) {
            return Default::default(); // no other node is running
        }
        match self.store.device_sessions(device_ids).await {
            Ok(sessions) => sessions
                .into_iter()
                .filter(|s| {
                    s.connected && s.node_id != self.settings.id && running.contains(&s.node_id)
                })
                .map(|s| s.device_id)
                .collect(),
            Err(err) => {
                tracing::warn!(error = %err, "reading device sessions failed");
                Default::default()
            }
        }
    }

    fn send_signal(&self, payload: String) {
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.signal(&payload).await {
                tracing::warn!(error = %err, "signalling the other nodes failed");
            }
        });
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

    /// Until `stop`: heartbeats every `heartbeat_interval`, listens for other nodes'
    /// signals (kicks are handled here; devices with work go to `work`, for delivery),
    /// and sends the `work` signals this node asked for, batched.
    pub async fn run(
        self,
        work: mpsc::Sender<Vec<String>>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let listener = match self.store.listen().await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::error!(error = %err, "listening for other nodes' signals failed; relying on rechecks");
                None
            }
        };
        let listening = tokio::spawn({
            let cluster = self.clone();
            async move {
                let Some(mut signals) = listener else { return };
                while let Some(text) = signals.recv().await {
                    match Signal::parse(&text) {
                        Some(Signal::Work(devices)) => {
                            let held: Vec<String> = devices
                                .into_iter()
                                .filter(|d| cluster.transport.is_connected(d))
                                .collect();
                            if !held.is_empty() && work.send(held).await.is_err() {
                                return;
                            }
                        }
                        Some(Signal::Kick { device_id, epoch }) => {
                            cluster.end_older_session(&device_id, epoch, "kicked");
                        }
                        None => tracing::warn!(signal = %text, "unreadable cluster signal"),
                    }
                }
            }
        });
        let waking = tokio::spawn({
            let cluster = self.clone();
            let wake_rx = lock(&self.state.wake_rx).take();
            async move {
                let Some(mut wake_rx) = wake_rx else { return };
                while let Some(first) = wake_rx.recv().await {
                    let mut payload = format!("work {first}");
                    while payload.len() < MAX_SIGNAL_BYTES - 64 {
                        match wake_rx.try_recv() {
                            Ok(device) => {
                                payload.push(' ');
                                payload.push_str(&device);
                            }
                            Err(_) => break,
                        }
                    }
                    if let Err(err) = cluster.store.signal(&payload).await {
                        tracing::warn!(error = %err, "signalling work to the other nodes failed");
                    }
                }
            }
        });
        let mut tick = tokio::time::interval(self.settings.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // A gateway that never joined (a test harness) has no row to beat.
                    if lock(&self.state.alive_at).is_none() {
                        continue;
                    }
                    if let Err(err) = self.heartbeat().await {
                        tracing::warn!(error = %err, "node heartbeat failed");
                    }
                }
                _ = &mut stop => break,
            }
        }
        listening.abort();
        waking.abort();
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
        lock(&self.state.leases)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A transport behind this node's fence: while the fence is closed (the node's last
/// heartbeat is too old), every device counts as offline here and nothing is published.
/// `disconnect` ends the device's session here and signals every other node to end theirs.
#[derive(Debug)]
pub struct ClusterTransport {
    inner: Arc<dyn DeviceTransport>,
    cluster: Cluster,
}

#[async_trait::async_trait]
impl DeviceTransport for ClusterTransport {
    async fn publish(
        &self,
        device_id: &str,
        topic: &str,
        payload: Vec<u8>,
        wait: Duration,
    ) -> PublishOutcome {
        if !self.cluster.may_send() {
            return PublishOutcome::Offline;
        }
        self.inner.publish(device_id, topic, payload, wait).await
    }

    fn is_connected(&self, device_id: &str) -> bool {
        self.cluster.may_send() && self.inner.is_connected(device_id)
    }

    fn connected_for(&self, device_id: &str) -> Option<Duration> {
        self.inner.connected_for(device_id)
    }

    fn connected_count(&self) -> usize {
        self.inner.connected_count()
    }

    /// Ends the local session now and asks every other node to end theirs; returns whether
    /// one was live here.
    fn disconnect(&self, device_id: &str) -> bool {
        let here = self.inner.disconnect(device_id);
        self.cluster.send_signal(format!("kick {device_id} 0"));
        here
    }
}

#[cfg(test)]
mod tests {
    use super::Signal;

    #[test]
    fn signals_parse_and_garbage_is_refused() {
        assert_eq!(
            Signal::parse("work dev_1 dev_2"),
            Some(Signal::Work(vec!["dev_1".into(), "dev_2".into()]))
        );
        assert_eq!(
            Signal::parse("kick dev_1 7"),
            Some(Signal::Kick {
                device_id: "dev_1".into(),
                epoch: 7
            })
        );
        for bad in ["", "kick", "kick dev_1", "kick dev_1 seven", "hello dev_1"] {
            assert_eq!(Signal::parse(bad), None, "{bad:?}");
        }
    }
}
