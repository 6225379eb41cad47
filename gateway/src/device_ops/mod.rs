//! Device operations: heartbeats and health, presence, desired/reported config and its
//! delivery, commands, dynamic QR codes asked for by devices, and the message trace.
//!
//! Every uplink and presence change from the broker enters the gateway here.
//! [`DeviceOps::run`] (started by [`crate::Gateway::run`]) takes each one, traces it, hands
//! `ack` uplinks (and presence) on to [`crate::delivery`] at once, and handles the other
//! kinds itself on a task of its own, so a slow heartbeat write never delays an
//! announcement's ack. Its timers: the config pusher (every `config_retry_interval`) and
//! the sending of queued commands (every `command_sweep_interval`), both for the devices
//! connected to this node. Closing overdue commands and finished QRs
//! ([`DeviceOps::close_due`]) is cluster-wide work: [`crate::Gateway::run`] runs it on the
//! node holding its lease.
//!
//! Presence is handled in batches: whatever changes arrived while the previous batch was
//! being handled (up to 1024) are passed to delivery one by one first (its replay on
//! connect), then written with one store call ([`DeviceOpsStore::record_presences`], one
//! transaction of multi-row upserts), then each device whose last change in the batch is a
//! connect gets its config and command replay. A connect storm is thus a few large writes.
//! Nothing on this path drops a change: the channel into it is bounded and waited on, and
//! the binary feeds it from the broker's `PresenceFeed`, which resynchronises from the
//! broker's session set when it falls behind (the broker crate docs say how).
//!
//! [`DeviceOpsStore::record_presences`]: gema_store::DeviceOpsStore::record_presences
//!
//! Downlinks: every sender in the gateway is given [`DeviceOps::transport`], the
//! [`TracingTransport`] around the real one, so the trace sees every message both ways.
//! Config pushes, commands and QR downlinks are published here, each kind from a row that
//! is its outbox (below), retried and replayed on connect; `delivery`'s module docs say how
//! they would move onto its machinery.
//!
//! Config delivery: the `device_configs` row is the outbox. Changing the desired config
//! bumps its version and makes the push due (`pending`); the pusher publishes `config`
//! downlinks for due rows of connected devices (woken by the change, by a device's connect,
//! and every `config_retry_interval`), then waits for the device's `reported_config`
//! naming the version. A device that was offline gets the current desired config when it
//! connects (replay on connect; nothing is retained in the broker).
//!
//! Commands: the `device_commands` row is the outbox too. A new command is published at
//! once to a connected device, to an offline one when it connects (or failed at once if it
//! is `interactive`); a sweep every `command_sweep_interval` retries queued ones, expires
//! those never delivered (`expired`) and closes delivered ones with no final result by
//! their deadline (`timed_out`). The device's `command_result`s move it forward only.
//! Delivery is at least once; the device deduplicates on `command_id`.
//!
//! Dynamic QR: a device's `qr_request` becomes a pending transaction (built by
//! [`crate::payments::Payments::prepare_dynamic_qr`], the device's `qr_timeout_s` as its
//! lifetime) and the `device_qr_requests` row that owes its `qr_show`, in one commit; the
//! same request id gets the same QR. The cluster-wide sweep closes the row once the
//! transaction leaves `pending`, which owes the `qr_clear` (`paid`, `expired`,
//! `cancelled`). Both downlinks are retried every `config_retry_interval` until acked,
//! replayed on connect, and end `delivered`, `expired` (with the QR) or `failed`; `qr.rs`
//! has the details.
//!
//! Certificate renewal: a device's `cert_renew` is signed by
//! [`DeviceCertificates::renew`] (an audited write, actor `device:<id>`) and answered at
//! once with a `cert_renew_result` (the new chain, or the refusal's reason); not retried:
//! a device that missed the answer asks again. `certs.rs` has the details.
//!
//! Every uplink that fails to decode or validate is counted
//! (`gema_uplinks_rejected_total{reason, kind}`) and logged, and otherwise ignored; only a
//! device that keeps sending them (more than `malformed_flood_limit` in a minute) is
//! disconnected.

mod certs;
mod commands;
pub mod health;
mod qr;
pub mod trace;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gema_firmware_protocol::message::{
    CommandAction, ConfigPush, DeviceConfig, Downlink, DownlinkBody, Envelope, Language,
    QuietHours, Uplink, UplinkBody,
};
use gema_firmware_protocol::topic::MessageKind;
use gema_firmware_protocol::{Encoding, decode_on_topic, encode, parse_topic};
use gema_store::{
    ConfigPushStatus, ConfigRecord, Device, DeviceFilter, HeartbeatRecord, NewHeartbeat, Page,
    PageRequest, PresenceRecord, ReportedConfigUpdate, Store,
};
use tokio::sync::{Notify, mpsc};

pub use health::{HealthReason, HealthSettings, HealthStatus, HealthSummary};
pub use trace::{MessageTrace, TraceEntry, TracingTransport};

use crate::certificates::DeviceCertificates;
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::error::{GatewayError, GatewayResult};
use crate::lock;
use crate::payments::Payments;
use crate::transport::{DeviceTransport, Presence, PublishOutcome, UplinkMessage};

/// Presence changes written to the store in one batch at most.
const PRESENCE_BATCH: usize = 1024;

/// Settings, from `[devices]` in the daemon's config.
#[derive(Debug, Clone)]
pub struct DeviceOpsSettings {
    pub health: HealthSettings,
    /// Heartbeats kept per device (the newest).
    pub heartbeat_history: u32,
    /// Messages kept per device in the in-memory trace.
    pub trace_per_device: usize,
    /// Devices with a trace ring at once (least recently active dropped first).
    pub trace_max_devices: usize,
    /// How long a config publish waits for the MQTT PUBACK.
    pub publish_timeout: Duration,
    /// How often due config pushes are looked at without a wake-up.
    pub config_retry_interval: Duration,
    /// Failed publishes of one config version before it is marked failed.
    pub config_max_attempts: i64,
    /// Malformed uplinks per device per minute before it is disconnected (0: never).
    pub malformed_flood_limit: u32,
    /// The desired config a device starts from before an operator sets one.
    pub default_config: DeviceConfig,
    /// A command's lifetime when its sender does not say.
    pub command_default_ttl: Duration,
    /// The longest lifetime a command may ask for.
    pub command_max_ttl: Duration,
    /// How long after its expiry a delivered command may still report its final result
    /// before it is `timed_out` (a firmware update takes a while).
    pub command_result_timeout: Duration,
    /// How often commands are expired and undelivered ones retried.
    pub command_sweep_interval: Duration,
}

impl Default for DeviceOpsSettings {
    fn default() -> Self {
        Self {
            health: HealthSettings::default(),
            heartbeat_history: 100,
            trace_per_device: 50,
            trace_max_devices: 10_000,
            publish_timeout: Duration::from_secs(5),
            config_retry_interval: Duration::from_secs(30),
            config_max_attempts: 5,
            malformed_flood_limit: 30,
            default_config: DeviceConfig {
                volume: 7,
                language: Language::Id,
                heartbeat_interval_s: 60,
                qr_timeout_s: 300,
                quiet_hours: None,
            },
            command_default_ttl: Duration::from_secs(300),
            command_max_ttl: Duration::from_secs(24 * 3600),
            command_result_timeout: Duration::from_secs(300),
            command_sweep_interval: Duration::from_secs(1),
        }
    }
}

/// A command an operator sends.
#[derive(Debug, Clone)]
pub struct CommandInput {
    pub action: CommandAction,
    /// Lifetime from now; the default when absent.
    pub expires_in: Option<Duration>,
    /// Fail at once (rather than wait until expiry) when the device is offline.
    pub interactive: bool,
}

/// The wire name of an action (`set_volume`, …).
pub fn action_name(action: &CommandAction) -> &'static str {
    match action {
        CommandAction::SetVolume { .. } => "set_volume",
        CommandAction::Reboot => "reboot",
        CommandAction::ReplayLast { .. } => "replay_last",
        CommandAction::AnnounceDailySummary => "announce_daily_summary",
        CommandAction::GetStatus => "get_status",
        CommandAction::FwUpdate(_) => "fw_update",
        CommandAction::AudioUpdate(_) => "audio_update",
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// How the device's reported config compares with the desired one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSync {
    /// No desired config set, or the device has not reported one.
    Unknown,
    InSync,
    /// A newer desired version is on its way (or waiting for the device to connect).
    Pending,
    /// The device runs something else than desired (a local change, a refused push).
    Drift,
}

impl ConfigSync {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigSync::Unknown => "unknown",
            ConfigSync::InSync => "in_sync",
            ConfigSync::Pending => "pending",
            ConfigSync::Drift => "drift",
        }
    }
}

/// A device's config: desired (with its version), reported, and how they compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigState {
    pub device_id: String,
    /// 0 while no desired config was set (then `desired` is the default).
    pub desired_version: i64,
    pub desired: DeviceConfig,
    pub desired_at_ms: Option<i64>,
    pub push_status: ConfigPushStatus,
    pub push_attempts: i64,
    pub push_error: Option<String>,
    pub pushed_at_ms: Option<i64>,
    pub reported_version: Option<i64>,
    pub reported: Option<DeviceConfig>,
    pub reported_cause: Option<String>,
    pub reported_at_ms: Option<i64>,
    pub sync: ConfigSync,
}

/// A change to the desired config: absent fields keep their current value.
#[derive(Debug, Clone, Default)]
pub struct ConfigPatch {
    pub volume: Option<u8>,
    pub language: Option<Language>,
    pub heartbeat_interval_s: Option<u32>,
    pub qr_timeout_s: Option<u32>,
    /// `Some(None)` removes quiet hours.
    pub quiet_hours: Option<Option<QuietHours>>,
}

/// Everything known about a device's operation, for the status endpoint.
#[derive(Debug, Clone)]
pub struct DeviceStatusReport {
    pub health: HealthSummary,
    pub presence: Option<PresenceRecord>,
    pub heartbeat: Option<HeartbeatRecord>,
    pub config: ConfigState,
}

#[derive(Debug, Clone)]
pub struct DeviceOps {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    transport: Arc<dyn DeviceTransport>,
    clock: Arc<dyn Clock>,
    settings: DeviceOpsSettings,
    trace: Arc<MessageTrace>,
    wake_pusher: Notify,
    /// Device → (start of its window, malformed uplinks in it).
    malformed: Mutex<HashMap<String, (i64, u32)>>,
    /// Makes the dynamic QRs devices ask for; `None`: such requests are refused.
    payments: Option<Payments>,
    /// Which devices other nodes hold, and how to wake them.
    cluster: Cluster,
    /// Signs the CSRs of devices' `cert_renew`; `None`: such requests are refused
    /// `unavailable`.
    certificates: Option<DeviceCertificates>,
}

fn parse_config(json: Option<&str>) -> Option<DeviceConfig> {
    json.and_then(|j| serde_json::from_str(j).ok())
}

impl DeviceOps {
    /// `transport` is wrapped so every downlink through [`DeviceOps::transport`] is traced.
    /// `payments` makes the dynamic QRs devices ask for (`up/qr_request`), `certificates`
    /// the certificates they renew (`up/cert_renew`); without them (tests of device
    /// operations alone) such requests are refused.
    pub fn new(
        store: Arc<dyn Store>,
        transport: Arc<dyn DeviceTransport>,
        clock: Arc<dyn Clock>,
        settings: DeviceOpsSettings,
        payments: Option<Payments>,
        cluster: Cluster,
        certificates: Option<DeviceCertificates>,
    ) -> Self {
        let trace = Arc::new(MessageTrace::new(
            settings.trace_per_device,
            settings.trace_max_devices,
        ));
        let transport: Arc<dyn DeviceTransport> = Arc::new(TracingTransport {
            inner: transport,
            trace: trace.clone(),
            clock: clock.clone(),
        });
        DeviceOps {
            inner: Arc::new(Inner {
                store,
                transport,
                clock,
                settings,
                trace,
                wake_pusher: Notify::new(),
                malformed: Mutex::new(HashMap::new()),
                payments,
                cluster,
                certificates,
            }),
        }
    }

    /// Another node committed work for these devices (held here): push their config and
    /// send their queued commands now.
    pub async fn devices_have_work(&self, devices: &[String]) {
        self.inner.wake_pusher.notify_one();
        for device_id in devices {
            self.deliver_due_commands(Some(device_id)).await;
            self.deliver_due_qrs(Some(device_id)).await;
        }
    }

    /// The transport every downlink should go through (it records the trace).
    pub fn transport(&self) -> Arc<dyn DeviceTransport> {
        self.inner.transport.clone()
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    pub fn settings(&self) -> &DeviceOpsSettings {
        &self.inner.settings
    }

    /// Runs until `shutdown`: routes uplinks (acks to `to_relay`, delivery's uplink stream;
    /// the rest handled here) and presence (passed to `presence_to_relay`, delivery's, then
    /// recorded), pushes due config and sends queued commands to the devices connected here.
    #[tracing::instrument(name = "device_ops", skip_all)]
    pub async fn run(
        self,
        mut uplinks: mpsc::Receiver<UplinkMessage>,
        to_relay: mpsc::Sender<UplinkMessage>,
        mut presence: mpsc::Receiver<Presence>,
        presence_to_relay: mpsc::Sender<Presence>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let (ops_tx, mut ops_rx) = mpsc::channel::<UplinkMessage>(4096);
        let router = tokio::spawn({
            let ops = self.clone();
            async move {
                while let Some(message) = uplinks.recv().await {
                    ops.trace_uplink(&message);
                    // Acks go to delivery, except those of QR downlinks (handled here).
                    let is_ack = parse_topic(&message.topic).is_ok_and(|t| {
                        t.kind == MessageKind::Ack
                            && !decode_on_topic::<Uplink>(&t, &message.payload).is_ok_and(
                                |u| matches!(&u.body, UplinkBody::Ack(ack) if qr::is_qr_ack(ack)),
                            )
                    });
                    let sent = if is_ack {
                        to_relay.send(message).await.is_ok()
                    } else {
                        ops_tx.send(message).await.is_ok()
                    };
                    if !sent {
                        break;
                    }
                }
            }
        });
        let handler = tokio::spawn({
            let ops = self.clone();
            async move {
                while let Some(message) = ops_rx.recv().await {
                    ops.handle_uplink(message).await;
                }
            }
        });
        let presences = tokio::spawn({
            let ops = self.clone();
            async move {
                // Whatever arrived while the previous batch was written is the next batch:
                // a connect storm becomes a few large writes, not one per device.
                let mut batch = Vec::with_capacity(PRESENCE_BATCH);
                while presence.recv_many(&mut batch, PRESENCE_BATCH).await > 0 {
                    // The relay first: a reconnect's announcement replay must not wait
                    // behind the presence write and the config and command lookups.
                    for change in &batch {
                        if presence_to_relay.send(change.clone()).await.is_err() {
                            return;
                        }
                    }
                    ops.handle_presences(&batch).await;
                    batch.clear();
                }
            }
        });
        tokio::pin!(shutdown);
        let mut command_tick = tokio::time::interval(self.inner.settings.command_sweep_interval);
        command_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut config_tick = tokio::time::interval(self.inner.settings.config_retry_interval);
        config_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.inner.wake_pusher.notified() => self.push_due_configs().await,
                _ = config_tick.tick() => self.push_due_configs().await,
                _ = command_tick.tick() => {
                    self.deliver_due_commands(None).await;
                    self.deliver_due_qrs(None).await;
                }
            }
        }
        router.abort();
        handler.abort();
        presences.abort();
    }

    fn trace_uplink(&self, message: &UplinkMessage) {
        self.inner.trace.record(
            &message.device_id,
            TraceEntry {
                at_ms: self.inner.clock.now_ms(),
                direction: "up",
                topic: message.topic.clone(),
                size: message.payload.len(),
                summary: trace::summarize(&message.topic, &message.payload),
                outcome: None,
            },
        );
    }

    /// The device's last traced messages, newest first (in memory; see [`trace`]).
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub fn messages(&self, device_id: &str) -> Vec<TraceEntry> {
        self.inner.trace.messages(device_id)
    }

    /// Records a presence change; a connect also replays the desired config if due.
    pub async fn handle_presence(&self, change: &Presence) {
        self.handle_presences(std::slice::from_ref(change)).await;
    }

    /// Records a batch of presence changes (in order) with one store write, then, for each
    /// device whose last change in the batch is a connect, replays the desired config if
    /// due and the commands waiting for it.
    #[tracing::instrument(skip_all, fields(changes = changes.len()))]
    pub async fn handle_presences(&self, changes: &[Presence]) {
        let now = self.inner.clock.now_ms();
        let records: Vec<PresenceRecord> = changes
            .iter()
            .map(|change| match change {
                Presence::Connected { device_id } => PresenceRecord {
                    device_id: device_id.clone(),
                    connected: true,
                    reason: None,
                    changed_at_ms: now,
                },
                Presence::Disconnected { device_id, reason } => PresenceRecord {
                    device_id: device_id.clone(),
                    connected: false,
                    reason: Some(reason.clone()),
                    changed_at_ms: now,
                },
            })
            .collect();
        if let Err(err) = self.inner.store.record_presences(&records).await {
            tracing::warn!(changes = records.len(), error = %err, "recording presence failed");
        }
        // A device that connected and left again within the batch needs no replay.
        let mut last: HashMap<&str, bool> = HashMap::new();
        let mut order = Vec::new();
        for change in changes {
            let connected = matches!(change, Presence::Connected { .. });
            if last.insert(change.device_id(), connected).is_none() {
                order.push(change.device_id());
            }
        }
        for device_id in order.into_iter().filter(|id| last[id]) {
            self.replay_on_connect(device_id).await;
        }
    }

    /// What a device gets when it connects: its desired config if a push is due, and the
    /// commands waiting for it.
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    async fn replay_on_connect(&self, device_id: &str) {
        match self.inner.store.device_config(device_id).await {
            Ok(Some(config))
                if matches!(
                    config.push_status,
                    ConfigPushStatus::Pending | ConfigPushStatus::Sent
                ) =>
            {
                self.push_config(&config).await;
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(device_id, error = %err, "reading config on connect failed");
            }
        }
        self.deliver_due_commands(Some(device_id)).await;
        self.deliver_due_qrs(Some(device_id)).await;
    }

    /// Counts and logs a refused uplink; disconnects a device that floods.
    fn reject(
        &self,
        message: &UplinkMessage,
        kind: &'static str,
        reason: &'static str,
        error: &str,
    ) {
        metrics::counter!("gema_uplinks_rejected_total", "reason" => reason, "kind" => kind)
            .increment(1);
        tracing::warn!(device_id = %message.device_id, topic = %message.topic, kind, error, "uplink rejected");
        let limit = self.inner.settings.malformed_flood_limit;
        if limit == 0 {
            return;
        }
        // A window of one minute from the first malformed uplink (not a clock-aligned
        // minute, so a burst is never split in two).
        let now = self.inner.clock.now_ms();
        let flooding = {
            let mut counts = lock(&self.inner.malformed);
            let entry = counts.entry(message.device_id.clone()).or_insert((now, 0));
            if now - entry.0 >= 60_000 {
                *entry = (now, 0);
            }
            entry.1 += 1;
            entry.1 > limit
        };
        if flooding && self.inner.transport.disconnect(&message.device_id) {
            metrics::counter!("gema_devices_disconnected_for_flooding_total").increment(1);
            tracing::warn!(device_id = %message.device_id, limit, "device disconnected: too many malformed uplinks");
            lock(&self.inner.malformed).remove(&message.device_id);
        }
    }

    /// Handles one non-ack uplink. Never fails: problems are counted and logged.
    ///
    /// The uplink is settled (the device gets its PUBACK) once what it says is written if it
    /// answers something the gateway sent (a command result, a QR downlink's ack, a config
    /// report that applies or rejects a push) or asks for something (a QR request, a
    /// certificate renewal): lost
    /// with a crash, that would be asked again or left open. Never if that write fails, so
    /// the device sends it again after reconnecting. Heartbeats, button presses and boot or
    /// local-change reports are settled at once: the next one supersedes them, and a fleet
    /// reconnecting at once (a boot report each, written one after another) must not wait
    /// on a queue of writes for its PUBACKs. A refused uplink is settled at once too (a
    /// malformed one is not made right by sending it again).
    #[tracing::instrument(skip_all, fields(device_id = %message.device_id, topic = %message.topic))]
    pub async fn handle_uplink(&self, mut message: UplinkMessage) {
        let settle = std::mem::take(&mut message.settle);
        let topic = match parse_topic(&message.topic) {
            Ok(topic) => topic,
            Err(err) => {
                self.reject(&message, "unknown", "topic", &err.to_string());
                settle.settle();
                return;
            }
        };
        let kind = topic.kind.as_str();
        let uplink: Uplink = match decode_on_topic(&topic, &message.payload) {
            Ok(uplink) => uplink,
            Err(err) => {
                self.reject(&message, kind, "payload", &err.to_string());
                settle.settle();
                return;
            }
        };
        metrics::counter!("gema_uplinks_total", "kind" => kind).increment(1);
        let answers_or_asks = match &uplink.body {
            UplinkBody::CommandResult(_)
            | UplinkBody::DynamicQrRequest(_)
            | UplinkBody::Ack(_)
            | UplinkBody::CertRenew(_) => true,
            UplinkBody::ReportedConfig(r) => matches!(
                r.cause,
                gema_firmware_protocol::ReportCause::Applied
                    | gema_firmware_protocol::ReportCause::Rejected
            ),
            UplinkBody::Heartbeat(_) | UplinkBody::ButtonEvent(_) => false,
        };
        let settle = if answers_or_asks {
            Some(settle)
        } else {
            settle.settle();
            None
        };
        let device_id = message.device_id.as_str();
        let now = self.inner.clock.now_ms();
        let outcome: GatewayResult<()> = match uplink.body {
            UplinkBody::Heartbeat(h) => {
                let heartbeat = NewHeartbeat {
                    device_id: device_id.to_string(),
                    received_at_ms: now,
                    battery_pct: h.battery_pct.map(i64::from),
                    charging: h.charging,
                    signal_dbm: h.signal_dbm.map(i64::from),
                    network: network_label(h.network).to_string(),
                    firmware_version: h.firmware_version,
                    audio_pack_version: h.audio_pack_version,
                    uptime_s: i64::try_from(h.uptime_s).unwrap_or(i64::MAX),
                    last_transaction_id: h.last_transaction_id,
                    config_version: i64::try_from(h.config_version).unwrap_or(i64::MAX),
                };
                self.inner
                    .store
                    .record_heartbeat(heartbeat, self.inner.settings.heartbeat_history)
                    .await
                    .map(|_| ())
                    .map_err(GatewayError::from)
            }
            UplinkBody::ReportedConfig(r) => {
                let cause = match r.cause {
                    gema_firmware_protocol::ReportCause::Applied => "applied",
                    gema_firmware_protocol::ReportCause::Rejected => "rejected",
                    gema_firmware_protocol::ReportCause::LocalChange => "local_change",
                    gema_firmware_protocol::ReportCause::Boot => "boot",
                };
                let report = ReportedConfigUpdate {
                    applied_version: i64::try_from(r.applied_version).unwrap_or(i64::MAX),
                    cause: cause.to_string(),
                    config: serde_json::to_string(&r.config).unwrap_or_default(),
                    at_ms: now,
                };
                self.inner
                    .store
                    .record_reported_config(device_id, report)
                    .await
                    .map(|_| ())
                    .map_err(GatewayError::from)
            }
            UplinkBody::ButtonEvent(b) => {
                tracing::info!(device_id, button = ?b.button, press = ?b.press, "device button pressed");
                Ok(())
            }
            UplinkBody::CommandResult(r) => self
                .command_result(device_id, r, now)
                .await
                .map_err(GatewayError::from),
            UplinkBody::DynamicQrRequest(request) => self
                .qr_request(device_id, request, now)
                .await
                .map_err(GatewayError::from),
            // Only a QR downlink's ack gets here; the others went to delivery.
            UplinkBody::Ack(ack) => self
                .qr_ack(device_id, &ack)
                .await
                .map_err(GatewayError::from),
            UplinkBody::CertRenew(request) => self.cert_renew(device_id, request, now).await,
        };
        match (outcome, settle) {
            (Ok(()), Some(settle)) => settle.settle(),
            (Ok(()), None) => {}
            (Err(err), settle) => {
                // Unsettled (dropped here), the device is not acknowledged and sends it again.
                let acknowledged = settle.is_none();
                tracing::error!(device_id, kind, acknowledged, error = %err, "storing an uplink failed");
            }
        }
    }

    // Health.

    /// Health of each of `device_ids` now.
    #[tracing::instrument(skip_all, fields(devices = device_ids.len()))]
    pub async fn health_of(
        &self,
        device_ids: &[String],
    ) -> GatewayResult<HashMap<String, HealthSummary>> {
        let store = &self.inner.store;
        let heartbeats = store.latest_heartbeats(device_ids).await?;
        let presences = store.presences(device_ids).await?;
        let elsewhere = self.inner.cluster.connected_elsewhere(device_ids).await;
        let configs = store.device_configs(device_ids).await?;
        let now = self.inner.clock.now_ms();
        let window = duration_ms(self.inner.settings.health.failed_delivery_window);
        let failures = store
            .failed_announcement_counts(device_ids, now - window)
            .await?;
        let mut out = HashMap::new();
        for id in device_ids {
            let heartbeat = heartbeats.iter().find(|h| &h.device_id == id);
            let presence = presences.iter().find(|p| &p.device_id == id);
            let config = configs.iter().find(|c| &c.device_id == id);
            let state = config.map(|c| self.config_state(id, Some(c)));
            let summary = health::summarize(
                health::HealthInput {
                    connected: self.inner.transport.is_connected(id) || elsewhere.contains(id),
                    presence,
                    heartbeat,
                    config_drift: state.as_ref().is_some_and(|s| s.sync == ConfigSync::Drift),
                    config_push: config.map(|c| c.push_status),
                    failed_deliveries: failures
                        .iter()
                        .find(|(d, _)| d == id)
                        .map_or(0, |(_, n)| *n),
                },
                &self.inner.settings.health,
                now,
            );
            out.insert(id.clone(), summary);
        }
        Ok(out)
    }

    /// A page of devices with their health, optionally only those with `status`. With a
    /// status filter the page is filled by reading further pages of the registry (at most
    /// 20), so `next_after` stays a valid keyset cursor.
    #[tracing::instrument(skip_all)]
    pub async fn devices_with_health(
        &self,
        filter: &DeviceFilter,
        page: &PageRequest,
        status: Option<HealthStatus>,
    ) -> GatewayResult<Page<(Device, HealthSummary)>> {
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT) as usize;
        let mut after = page.after.clone();
        let mut items = Vec::new();
        for _ in 0..20 {
            let devices = self
                .inner
                .store
                .list_devices(
                    filter,
                    &PageRequest {
                        after: after.clone(),
                        limit: page.limit,
                    },
                )
                .await?;
            let ids: Vec<String> = devices.items.iter().map(|d| d.id.clone()).collect();
            let mut health = self.health_of(&ids).await?;
            for device in devices.items {
                after = Some(device.id.clone());
                let Some(summary) = health.remove(&device.id) else {
                    continue;
                };
                if status.is_none_or(|s| s == summary.status) {
                    items.push((device, summary));
                    if items.len() == limit {
                        // More may follow: the cursor is the last device returned.
                        return Ok(Page {
                            items,
                            next_after: after,
                        });
                    }
                }
            }
            if devices.next_after.is_none() {
                return Ok(Page {
                    items,
                    next_after: None,
                });
            }
        }
        Ok(Page {
            items,
            next_after: after,
        })
    }

    /// How many devices (of one merchant, or all) are online, degraded and offline now,
    /// read a registry page at a time.
    #[tracing::instrument(skip_all)]
    pub async fn fleet_counts(&self, merchant_id: Option<String>) -> GatewayResult<[i64; 3]> {
        let filter = DeviceFilter {
            merchant_id,
            ..DeviceFilter::default()
        };
        let mut counts = [0i64; 3];
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let devices = self.inner.store.list_devices(&filter, &page).await?;
            let ids: Vec<String> = devices.items.iter().map(|d| d.id.clone()).collect();
            for summary in self.health_of(&ids).await?.values() {
                counts[match summary.status {
                    HealthStatus::Online => 0,
                    HealthStatus::Degraded => 1,
                    HealthStatus::Offline => 2,
                }] += 1;
            }
            match devices.next_after {
                Some(after) => page.after = Some(after),
                None => return Ok(counts),
            }
        }
    }

    /// Health, presence, newest heartbeat and config of one device.
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn status(&self, device_id: &str) -> GatewayResult<DeviceStatusReport> {
        let config = self.config(device_id).await?; // NotFound for an unknown device
        let ids = [device_id.to_string()];
        let mut health = self.health_of(&ids).await?;
        let presence = self.inner.store.presences(&ids).await?.pop();
        let heartbeat = self.inner.store.heartbeats(device_id, 1).await?.pop();
        let health = health
            .remove(device_id)
            .ok_or_else(|| GatewayError::Internal("no health computed".into()))?;
        Ok(DeviceStatusReport {
            health,
            presence,
            heartbeat,
            config,
        })
    }

    /// The device's newest heartbeats, newest first.
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn heartbeats(
        &self,
        device_id: &str,
        limit: u32,
    ) -> GatewayResult<Vec<HeartbeatRecord>> {
        self.inner.store.get_device(device_id).await?;
        Ok(self
            .inner
            .store
            .heartbeats(
                device_id,
                limit.clamp(1, self.inner.settings.heartbeat_history),
            )
            .await?)
    }

    // Config.

    fn config_state(&self, device_id: &str, record: Option<&ConfigRecord>) -> ConfigState {
        let desired = record
            .and_then(|r| parse_config(r.desired.as_deref()))
            .unwrap_or_else(|| self.inner.settings.default_config.clone());
        let reported = record.and_then(|r| parse_config(r.reported.as_deref()));
        let desired_version = record.map_or(0, |r| r.desired_version);
        let push_status = record.map_or(ConfigPushStatus::None, |r| r.push_status);
        let reported_version = record.and_then(|r| r.reported_version);
        let sync = match (&reported, desired_version) {
            (_, 0) | (None, _) => ConfigSync::Unknown,
            (Some(reported), _) if *reported == desired => ConfigSync::InSync,
            (Some(_), _)
                if matches!(
                    push_status,
                    ConfigPushStatus::Pending | ConfigPushStatus::Sent
                ) && reported_version.unwrap_or(0) < desired_version =>
            {
                ConfigSync::Pending
            }
            (Some(_), _) => ConfigSync::Drift,
        };
        ConfigState {
            device_id: device_id.to_string(),
            desired_version,
            desired,
            desired_at_ms: record.and_then(|r| r.desired_at_ms),
            push_status,
            push_attempts: record.map_or(0, |r| r.push_attempts),
            push_error: record.and_then(|r| r.push_error.clone()),
            pushed_at_ms: record.and_then(|r| r.pushed_at_ms),
            reported_version,
            reported,
            reported_cause: record.and_then(|r| r.reported_cause.clone()),
            reported_at_ms: record.and_then(|r| r.reported_at_ms),
            sync,
        }
    }

    /// The device's desired and reported config. `NotFound` for an unknown device.
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn config(&self, device_id: &str) -> GatewayResult<ConfigState> {
        let record = self.inner.store.device_config(device_id).await?;
        Ok(self.config_state(device_id, record.as_ref()))
    }

    /// Applies `patch` to the desired config if it is still at `expected_version`
    /// (`Conflict` `stale_version` otherwise), validates the result, and pushes it.
    #[tracing::instrument(skip_all, fields(device_id = device_id, expected_version = expected_version))]
    pub async fn set_config(
        &self,
        device_id: &str,
        expected_version: i64,
        patch: ConfigPatch,
    ) -> GatewayResult<ConfigState> {
        if expected_version < 0 {
            return Err(GatewayError::invalid("version", "must not be negative"));
        }
        let current = self.config(device_id).await?;
        let mut desired = current.desired;
        if let Some(v) = patch.volume {
            desired.volume = v;
        }
        if let Some(l) = patch.language {
            desired.language = l;
        }
        if let Some(h) = patch.heartbeat_interval_s {
            desired.heartbeat_interval_s = h;
        }
        if let Some(q) = patch.qr_timeout_s {
            desired.qr_timeout_s = q;
        }
        if let Some(q) = patch.quiet_hours {
            desired.quiet_hours = q;
        }
        desired.validate().map_err(|err| {
            GatewayError::invalid(
                err.field.strip_prefix("config.").unwrap_or(err.field),
                err.to_string(),
            )
        })?;
        let json = serde_json::to_string(&desired)
            .map_err(|err| GatewayError::Internal(err.to_string()))?;
        let record = self
            .inner
            .store
            .set_desired_config(
                device_id,
                expected_version,
                &json,
                self.inner.clock.now_ms(),
            )
            .await?;
        self.inner.wake_pusher.notify_one();
        if !self.inner.transport.is_connected(device_id) {
            self.inner.cluster.wake_elsewhere(device_id);
        }
        Ok(self.config_state(device_id, Some(&record)))
    }

    /// Pushes the desired config again now (an operator's retry); `NotFound` when none
    /// was ever set.
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn retry_config_push(&self, device_id: &str) -> GatewayResult<ConfigState> {
        self.inner.store.get_device(device_id).await?;
        let record = self.inner.store.requeue_config_push(device_id).await?;
        self.push_config(&record).await;
        self.config(device_id).await
    }

    /// Pushes every pending config whose device this node holds. All pending rows are read,
    /// a page at a time: most may be of devices that are offline or on other nodes, and
    /// reading only the oldest page would leave a connected device's retry behind them.
    async fn push_due_configs(&self) {
        const PAGE: u32 = 500;
        let mut after: Option<(i64, String)> = None;
        loop {
            let page = match self
                .inner
                .store
                .pending_config_pushes(after.as_ref().map(|(at, id)| (*at, id.as_str())), PAGE)
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    tracing::error!(error = %err, "reading due config pushes failed");
                    return;
                }
            };
            for record in &page {
                if self.inner.transport.is_connected(&record.device_id) {
                    self.push_config(record).await;
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => {
                    after = Some((last.desired_at_ms.unwrap_or(0), last.device_id.clone()));
                }
                _ => return,
            }
        }
    }

    /// Publishes the desired config of `record` and records the outcome.
    async fn push_config(&self, record: &ConfigRecord) {
        let Some(config) = parse_config(record.desired.as_deref()) else {
            return;
        };
        let device_id = record.device_id.as_str();
        let version = record.desired_version;
        if !self.inner.transport.is_connected(device_id) {
            return; // stays pending; pushed when the device connects
        }
        let now = self.inner.clock.now_ms();
        let downlink = Downlink {
            envelope: Envelope::new(format!("cfg_{version}"), now),
            body: DownlinkBody::ConfigPush(ConfigPush {
                config_version: u64::try_from(version).unwrap_or(0),
                config,
            }),
        };
        let encoding = Encoding::Json;
        let topic = downlink.topic(device_id, encoding);
        let outcome = self
            .inner
            .transport
            .publish(
                device_id,
                &topic,
                encode(&downlink, encoding),
                self.inner.settings.publish_timeout,
            )
            .await;
        let (status, error) = match outcome {
            PublishOutcome::Acknowledged => (ConfigPushStatus::Sent, None),
            PublishOutcome::Offline => return,
            PublishOutcome::NotSubscribed => (
                ConfigPushStatus::Pending,
                Some("the device is not subscribed to its downlink topics".to_string()),
            ),
            PublishOutcome::Failed(reason) => (ConfigPushStatus::Pending, Some(reason)),
        };
        let status = if status == ConfigPushStatus::Pending
            && record.push_attempts + 1 >= self.inner.settings.config_max_attempts
        {
            ConfigPushStatus::Failed
        } else {
            status
        };
        metrics::counter!("gema_config_pushes_total", "result" => status.as_str()).increment(1);
        if let Err(err) = self
            .inner
            .store
            .record_config_push(device_id, version, status, error.as_deref(), now)
            .await
        {
            tracing::error!(device_id, error = %err, "recording a config push failed");
        }
    }
}

fn network_label(network: gema_firmware_protocol::Network) -> &'static str {
    use gema_firmware_protocol::Network;
    match network {
        Network::Wifi => "wifi",
        Network::Cellular2g => "2g",
        Network::Cellular3g => "3g",
        Network::Cellular4g => "4g",
        Network::Ethernet => "ethernet",
        Network::Unknown => "unknown",
    }
}
