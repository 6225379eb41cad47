//! Device operations against a real SQLite store, a recording transport and a hand-moved
//! clock: health thresholds without sleeping, config versions and delivery, malformed
//! uplinks, the message trace.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use gema_firmware_protocol::message::*;
use gema_firmware_protocol::topic::MessageKind;
use gema_firmware_protocol::{Encoding, encode, topic};
use gema_gateway::clock::ManualClock;
use gema_gateway::cluster::{Cluster, NodeSettings};
use gema_gateway::device_ops::{
    CommandInput, ConfigPatch, ConfigSync, DeviceOps, DeviceOpsSettings, HealthSettings,
    HealthStatus,
};
use gema_gateway::testing::{RecordingTransport, STATIC_QRIS, eventually, temp_store};
use gema_gateway::transport::{Presence, UplinkMessage};
use gema_gateway::{GatewayError, Registry};
use gema_store::testing::device;
use gema_store::*;

/// A node with no other node: every device it reaches is its own.
fn alone(store: &Arc<dyn Store>, wire: &RecordingTransport, clock: &ManualClock) -> Cluster {
    Cluster::new(
        store.clone(),
        Arc::new(wire.clone()),
        Arc::new(clock.clone()),
        NodeSettings::default(),
    )
}

struct Harness {
    ops: DeviceOps,
    wire: RecordingTransport,
    clock: ManualClock,
    store: Arc<dyn Store>,
    device_id: String,
    _dir: tempfile::TempDir,
}

const START: i64 = 1_763_700_000_000;

/// Device operations alone (no payments: devices' QR requests are refused) on a fresh
/// database with one unbound device.
async fn harness(settings: DeviceOpsSettings) -> Harness {
    let (store, dir) = temp_store().await;
    let device_id = device(&*store, "SB-OPS-1").await.id;
    let wire = RecordingTransport::new();
    let clock = ManualClock::new(START);
    let ops = DeviceOps::new(
        store.clone(),
        Arc::new(wire.clone()),
        Arc::new(clock.clone()),
        settings,
        None,
        alone(&store, &wire, &clock),
        None,
    );
    Harness {
        ops,
        wire,
        clock,
        store,
        device_id,
        _dir: dir,
    }
}

/// Runs the device-ops loops with nothing coming in (its own timers only) until the
/// returned sender is used.
fn run_quietly(
    h: &Harness,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (_up_tx, up_rx) = tokio::sync::mpsc::channel(8);
    let (relay_tx, _relay_rx) = tokio::sync::mpsc::channel(8);
    let (_p_tx, p_rx) = tokio::sync::mpsc::channel(8);
    let (rp_tx, _rp_rx) = tokio::sync::mpsc::channel(8);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(h.ops.clone().run(up_rx, relay_tx, p_rx, rp_tx, async {
        let _ = stop_rx.await;
    }));
    (stop_tx, runner)
}

impl Harness {
    async fn connect(&self) {
        self.wire.connect(&self.device_id);
        self.ops
            .handle_presence(&Presence::Connected {
                device_id: self.device_id.clone(),
            })
            .await;
    }

    async fn drop_connection(&self, reason: &str) {
        self.wire.go_offline(&self.device_id);
        self.ops
            .handle_presence(&Presence::Disconnected {
                device_id: self.device_id.clone(),
                reason: reason.into(),
            })
            .await;
    }

    async fn send(&self, body: impl Into<UplinkBody>) {
        let uplink = Uplink::new(Envelope::new("m1", START), body);
        self.send_raw(uplink.kind(), encode(&uplink, Encoding::Json))
            .await;
    }

    async fn send_raw(&self, kind: MessageKind, payload: Vec<u8>) {
        self.ops
            .handle_uplink(UplinkMessage {
                device_id: self.device_id.clone(),
                topic: topic::topic(&self.device_id, kind, Encoding::Json),
                payload,
                settle: Default::default(),
            })
            .await;
    }

    async fn health(&self) -> gema_gateway::device_ops::HealthSummary {
        self.ops
            .health_of(std::slice::from_ref(&self.device_id))
            .await
            .unwrap()
            .remove(&self.device_id)
            .unwrap()
    }

    fn published_configs(&self) -> Vec<ConfigPush> {
        self.wire
            .downlinks()
            .iter()
            .filter_map(|(_, d)| match &d.body {
                DownlinkBody::ConfigPush(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }
}

fn heartbeat(battery: u8) -> Heartbeat {
    Heartbeat {
        battery_pct: Some(battery),
        charging: false,
        signal_dbm: Some(-67),
        network: Network::Cellular4g,
        firmware_version: "1.4.2".into(),
        audio_pack_version: "id-2025.1".into(),
        uptime_s: 3_600,
        last_transaction_id: None,
        config_version: 0,
    }
}

fn codes(summary: &gema_gateway::device_ops::HealthSummary) -> Vec<&'static str> {
    summary.reasons.iter().map(|r| r.code()).collect()
}

#[tokio::test]
async fn a_silent_device_goes_degraded_then_offline_at_the_thresholds() {
    let h = harness(DeviceOpsSettings {
        health: HealthSettings {
            degraded_after: Duration::from_secs(90),
            offline_after: Duration::from_secs(300),
            ..HealthSettings::default()
        },
        ..DeviceOpsSettings::default()
    })
    .await;
    assert_eq!(h.health().await.status, HealthStatus::Offline);
    assert_eq!(codes(&h.health().await), vec!["never_seen"]);

    h.connect().await;
    h.send(heartbeat(80)).await;
    let fresh = h.health().await;
    assert_eq!(fresh.status, HealthStatus::Online, "{fresh:?}");
    assert_eq!(fresh.score, 100);
    assert_eq!(fresh.heartbeat_age_ms, Some(0));
    assert_eq!(fresh.last_heartbeat_at_ms, Some(START));

    h.clock.advance(Duration::from_secs(89));
    assert_eq!(h.health().await.status, HealthStatus::Online);
    h.clock.advance(Duration::from_secs(1));
    let degraded = h.health().await;
    assert_eq!(degraded.status, HealthStatus::Degraded);
    assert_eq!(codes(&degraded), vec!["stale_heartbeat"]);
    assert_eq!(degraded.heartbeat_age_ms, Some(90_000));

    // The list can be filtered by health.
    let page = PageRequest::first(50);
    let filter = DeviceFilter::default();
    let only = |status| {
        let ops = h.ops.clone();
        let (filter, page) = (filter.clone(), page.clone());
        async move {
            ops.devices_with_health(&filter, &page, Some(status))
                .await
                .unwrap()
                .items
                .len()
        }
    };
    assert_eq!(only(HealthStatus::Degraded).await, 1);
    assert_eq!(only(HealthStatus::Online).await, 0);

    h.clock.advance(Duration::from_secs(210));
    let offline = h.health().await;
    assert_eq!(
        offline.status,
        HealthStatus::Offline,
        "still connected, but silent"
    );
    assert_eq!(offline.score, 0);
    assert_eq!(only(HealthStatus::Offline).await, 1);

    // A heartbeat brings it back; a disconnect takes it away with the broker's reason.
    h.send(heartbeat(80)).await;
    assert_eq!(h.health().await.status, HealthStatus::Online);
    h.drop_connection("keep_alive_timeout").await;
    let gone = h.health().await;
    assert_eq!(gone.status, HealthStatus::Offline);
    assert_eq!(
        gone.reasons[0].message(),
        "disconnected (keep_alive_timeout)"
    );
    let history = h.ops.heartbeats(&h.device_id, 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].received_at_ms, START + 300_000);
}

#[tokio::test]
async fn low_battery_degrades_and_history_is_bounded() {
    let h = harness(DeviceOpsSettings {
        heartbeat_history: 3,
        ..DeviceOpsSettings::default()
    })
    .await;
    h.connect().await;
    for battery in [50, 40, 30, 20, 10] {
        h.send(heartbeat(battery)).await;
        h.clock.advance(Duration::from_secs(1));
    }
    let summary = h.health().await;
    assert_eq!(summary.status, HealthStatus::Degraded);
    assert_eq!(codes(&summary), vec!["low_battery"]);
    let history = h.ops.heartbeats(&h.device_id, 100).await.unwrap();
    let batteries: Vec<_> = history.iter().map(|hb| hb.battery_pct).collect();
    assert_eq!(batteries, vec![Some(10), Some(20), Some(30)]);
}

#[tokio::test]
async fn malformed_uplinks_are_refused_without_disconnecting_until_a_flood() {
    let h = harness(DeviceOpsSettings {
        malformed_flood_limit: 6,
        ..DeviceOpsSettings::default()
    })
    .await;
    h.connect().await;
    for kind in [
        MessageKind::Heartbeat,
        MessageKind::ReportedConfig,
        MessageKind::CommandResult,
        MessageKind::DynamicQrRequest,
        MessageKind::ButtonEvent,
    ] {
        h.send_raw(kind, b"{\"type\":\"heartbeat\",\"version\":1".to_vec())
            .await;
    }
    // Wrong kind for the topic, and a value out of range.
    let bad = Uplink::new(Envelope::new("m", START), heartbeat(101));
    h.send_raw(MessageKind::Heartbeat, encode(&bad, Encoding::Json))
        .await;
    assert!(
        h.store
            .heartbeats(&h.device_id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(h.ops.transport().is_connected(&h.device_id));
    assert_eq!(h.wire.disconnects(), 0);
    // Still served.
    h.send(heartbeat(77)).await;
    assert_eq!(h.store.heartbeats(&h.device_id, 10).await.unwrap().len(), 1);

    // The same minute: the flood limit (6) is past, so the device is cut off.
    h.send_raw(MessageKind::Heartbeat, b"garbage".to_vec())
        .await;
    assert_eq!(h.wire.disconnects(), 1);
    assert!(!h.ops.transport().is_connected(&h.device_id));
}

#[tokio::test]
async fn desired_config_is_versioned_pushed_acked_and_drift_is_seen() {
    let h = harness(DeviceOpsSettings::default()).await;
    let initial = h.ops.config(&h.device_id).await.unwrap();
    assert_eq!(initial.desired_version, 0);
    assert_eq!(initial.sync, ConfigSync::Unknown);

    // Offline: stored and due, nothing published.
    let v1 = h
        .ops
        .set_config(
            &h.device_id,
            0,
            ConfigPatch {
                volume: Some(4),
                ..ConfigPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(v1.desired_version, 1);
    assert_eq!(v1.desired.volume, 4);
    assert_eq!(v1.push_status, ConfigPushStatus::Pending);

    // A stale version is a conflict; an out-of-range value is refused by field.
    let stale = h
        .ops
        .set_config(&h.device_id, 0, ConfigPatch::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            stale,
            GatewayError::Conflict {
                code: "stale_version",
                ..
            }
        ),
        "{stale:?}"
    );
    let invalid = h
        .ops
        .set_config(
            &h.device_id,
            1,
            ConfigPatch {
                heartbeat_interval_s: Some(5),
                ..ConfigPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            invalid,
            GatewayError::Invalid {
                field: "heartbeat_interval_s",
                ..
            }
        ),
        "{invalid:?}"
    );
    assert!(h.published_configs().is_empty());

    // Connecting replays the desired config.
    h.connect().await;
    let pushed = h.published_configs();
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].config_version, 1);
    assert_eq!(pushed[0].config.volume, 4);
    assert_eq!(
        h.ops.config(&h.device_id).await.unwrap().push_status,
        ConfigPushStatus::Sent
    );
    assert_eq!(
        h.ops.config(&h.device_id).await.unwrap().sync,
        ConfigSync::Unknown
    );

    // The device applies it.
    h.send(ReportedConfig {
        applied_version: 1,
        cause: ReportCause::Applied,
        config: pushed[0].config.clone(),
    })
    .await;
    let synced = h.ops.config(&h.device_id).await.unwrap();
    assert_eq!(synced.push_status, ConfigPushStatus::Applied);
    assert_eq!(synced.sync, ConfigSync::InSync);
    assert_eq!(synced.reported_version, Some(1));

    // A volume button press on the device: drift, shown in health too.
    let mut local = pushed[0].config.clone();
    local.volume = 9;
    h.send(ReportedConfig {
        applied_version: 1,
        cause: ReportCause::LocalChange,
        config: local,
    })
    .await;
    h.send(heartbeat(90)).await;
    let drifted = h.ops.config(&h.device_id).await.unwrap();
    assert_eq!(drifted.sync, ConfigSync::Drift);
    assert_eq!(drifted.reported.as_ref().map(|c| c.volume), Some(9));
    let health = h.health().await;
    assert_eq!(health.status, HealthStatus::Degraded);
    assert_eq!(codes(&health), vec!["config_drift"]);

    // The operator's retry re-sends the desired config.
    let retried = h.ops.retry_config_push(&h.device_id).await.unwrap();
    assert_eq!(retried.push_status, ConfigPushStatus::Sent);
    assert_eq!(h.published_configs().len(), 2);

    // A new version while connected is published by the pusher loop.
    let (stop_tx, runner) = run_quietly(&h);
    h.ops
        .set_config(
            &h.device_id,
            1,
            ConfigPatch {
                volume: Some(6),
                ..ConfigPatch::default()
            },
        )
        .await
        .unwrap();
    eventually("v2 pushed", || async {
        (h.published_configs().len() >= 3).then_some(())
    })
    .await;
    assert_eq!(h.published_configs()[2].config_version, 2);
    let _ = stop_tx.send(());
    runner.await.unwrap();
}

#[tokio::test]
async fn the_trace_keeps_both_directions() {
    let h = harness(DeviceOpsSettings::default()).await;
    h.connect().await;
    let (up_tx, up_rx) = tokio::sync::mpsc::channel(8);
    let (relay_tx, mut relay_rx) = tokio::sync::mpsc::channel(8);
    let (_p_tx, p_rx) = tokio::sync::mpsc::channel(8);
    let (rp_tx, _rp_rx) = tokio::sync::mpsc::channel(8);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(h.ops.clone().run(up_rx, relay_tx, p_rx, rp_tx, async {
        let _ = stop_rx.await;
    }));
    let ack = Uplink::new(
        Envelope::new("a1", START),
        Ack {
            acked_msg_id: "ann_1".into(),
            transaction_id: None,
            status: AckStatus::Spoken,
        },
    );
    up_tx
        .send(UplinkMessage {
            device_id: h.device_id.clone(),
            topic: topic::topic(&h.device_id, MessageKind::Ack, Encoding::Json),
            payload: encode(&ack, Encoding::Json),
            settle: Default::default(),
        })
        .await
        .unwrap();
    // Acks go on to the relay.
    let routed = tokio::time::timeout(Duration::from_secs(30), relay_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(routed.topic.ends_with("/up/ack"));
    h.ops
        .set_config(&h.device_id, 0, ConfigPatch::default())
        .await
        .unwrap();
    eventually("the trace has both messages", || async {
        (h.ops.messages(&h.device_id).len() >= 2).then_some(())
    })
    .await;
    let messages = h.ops.messages(&h.device_id);
    let down = messages.iter().find(|m| m.direction == "down").unwrap();
    assert!(down.topic.ends_with("/down/config"));
    assert_eq!(down.outcome.as_deref(), Some("acknowledged"));
    assert!(
        down.summary.starts_with("config version=1"),
        "{}",
        down.summary
    );
    let up = messages.iter().find(|m| m.direction == "up").unwrap();
    assert_eq!(up.summary, "ack ann_1 spoken");
    assert!(up.size > 0);
    let _ = stop_tx.send(());
    runner.await.unwrap();
}

fn published_commands(h: &Harness) -> Vec<Command> {
    h.wire
        .downlinks()
        .iter()
        .filter_map(|(_, d)| match &d.body {
            DownlinkBody::Command(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn input(action: CommandAction, secs: u64, interactive: bool) -> CommandInput {
    CommandInput {
        action,
        expires_in: Some(Duration::from_secs(secs)),
        interactive,
    }
}

async fn result(h: &Harness, command_id: &str, state: CommandState, out: &[(&str, &str)]) {
    h.send(CommandResult {
        command_id: command_id.into(),
        state,
        result: out
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        message: None,
    })
    .await;
}

/// A command delivered and acknowledged whose result was lost (the gateway crashed, the
/// connection dropped) is sent again when the device reconnects; the device answers the
/// re-send with its result, and the command ends final instead of timing out.
#[tokio::test]
async fn a_command_without_its_result_is_sent_again_on_reconnect() {
    let h = harness(DeviceOpsSettings {
        command_result_timeout: Duration::from_secs(600),
        ..DeviceOpsSettings::default()
    })
    .await;
    h.connect().await;
    let queued = h
        .ops
        .send_command(&h.device_id, input(CommandAction::GetStatus, 60, false))
        .await
        .unwrap();
    assert_eq!(published_commands(&h).len(), 1);
    result(&h, &queued.id, CommandState::Acknowledged, &[]).await;
    // Nothing more while connected: the device is working on it.
    h.ops.sweep_commands().await;
    assert_eq!(published_commands(&h).len(), 1);

    h.drop_connection("connection_lost").await;
    h.connect().await;
    let sent = published_commands(&h);
    assert_eq!(sent.len(), 2, "sent again on reconnect");
    assert_eq!(sent[1].command_id, queued.id);
    result(
        &h,
        &queued.id,
        CommandState::Succeeded,
        &[("battery_pct", "80")],
    )
    .await;
    let done = h.ops.command(&h.device_id, &queued.id).await.unwrap();
    assert_eq!(done.status, CommandStatus::Succeeded);
    // Final: never sent again.
    h.drop_connection("connection_lost").await;
    h.connect().await;
    assert_eq!(published_commands(&h).len(), 2);
}

/// The sweep's retry reaches a connected device's command however many older queued
/// commands of offline devices (or of devices on other nodes) come first: more than a
/// page of them.
#[tokio::test]
async fn a_queued_command_is_retried_behind_a_page_of_offline_devices() {
    let h = harness(DeviceOpsSettings::default()).await;
    for i in 0..210 {
        let offline = device(&*h.store, &format!("SB-AWAY-{i}")).await.id;
        let waiting = h
            .ops
            .send_command(&offline, input(CommandAction::GetStatus, 600, false))
            .await
            .unwrap();
        assert_eq!(waiting.status, CommandStatus::Queued);
    }
    h.connect().await;
    h.wire.set_failing(Some("no PUBACK"));
    let mine = h
        .ops
        .send_command(&h.device_id, input(CommandAction::GetStatus, 600, false))
        .await
        .unwrap();
    assert_eq!(mine.status, CommandStatus::Queued);
    h.wire.set_failing(None);
    h.ops.sweep_commands().await;
    let after = h.ops.command(&h.device_id, &mine.id).await.unwrap();
    assert_eq!(after.status, CommandStatus::Sent, "{after:?}");
}

#[tokio::test]
async fn commands_reach_every_final_state() {
    let h = harness(DeviceOpsSettings {
        command_result_timeout: Duration::from_secs(60),
        ..DeviceOpsSettings::default()
    })
    .await;
    let id = h.device_id.clone();

    // Refused input, by field.
    for (action, field) in [
        (
            CommandAction::SetVolume { volume: 11 },
            "action.args.volume",
        ),
        (CommandAction::ReplayLast { count: 0 }, "action.args.count"),
        (
            CommandAction::FwUpdate(ImageUpdate {
                url: "ftp://x".into(),
                sha256: "ab".repeat(32),
                version: "2.0".into(),
                size: 10,
            }),
            "action.args.url",
        ),
        (
            CommandAction::AudioUpdate(ImageUpdate {
                url: "https://cdn.example/a.bin".into(),
                sha256: "XYZ".into(),
                version: "2.0".into(),
                size: 10,
            }),
            "action.args.sha256",
        ),
    ] {
        let err = h
            .ops
            .send_command(&id, input(action, 60, false))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, GatewayError::Invalid { field: f, .. } if *f == field),
            "{err:?}"
        );
    }
    let err = h
        .ops
        .send_command(&id, input(CommandAction::Reboot, 0, false))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        GatewayError::Invalid {
            field: "expires_in_secs",
            ..
        }
    ));

    // Interactive and offline: failed at once, nothing published.
    let c = h
        .ops
        .send_command(&id, input(CommandAction::GetStatus, 60, true))
        .await
        .unwrap();
    assert_eq!(c.status, CommandStatus::Failed);
    assert!(c.message.unwrap().contains("offline"));

    // Not interactive and offline: queued; it expires if the device never comes.
    let lost = h
        .ops
        .send_command(&id, input(CommandAction::Reboot, 30, false))
        .await
        .unwrap();
    assert_eq!(lost.status, CommandStatus::Queued);
    // This one is delivered when the device connects before its expiry.
    let waiting = h
        .ops
        .send_command(&id, input(CommandAction::AnnounceDailySummary, 120, false))
        .await
        .unwrap();
    h.clock.advance(Duration::from_secs(31));
    h.ops.sweep_commands().await;
    assert_eq!(
        h.ops.command(&id, &lost.id).await.unwrap().status,
        CommandStatus::Expired
    );
    assert!(published_commands(&h).is_empty());
    h.connect().await;
    let sent = h.ops.command(&id, &waiting.id).await.unwrap();
    assert_eq!(sent.status, CommandStatus::Sent);
    assert_eq!(published_commands(&h).len(), 1, "only the unexpired one");
    assert_eq!(published_commands(&h)[0].command_id, waiting.id);

    // queued → sent → acknowledged → succeeded, with the device's result.
    let vol = h
        .ops
        .send_command(&id, input(CommandAction::SetVolume { volume: 6 }, 60, true))
        .await
        .unwrap();
    assert_eq!(vol.status, CommandStatus::Sent);
    assert_eq!(vol.attempts, 1);
    result(&h, &vol.id, CommandState::Acknowledged, &[]).await;
    assert_eq!(
        h.ops.command(&id, &vol.id).await.unwrap().status,
        CommandStatus::Acknowledged
    );
    result(&h, &vol.id, CommandState::Succeeded, &[("volume", "6")]).await;
    let done = h.ops.command(&id, &vol.id).await.unwrap();
    assert_eq!(done.status, CommandStatus::Succeeded);
    assert_eq!(done.result.as_deref(), Some(r#"{"volume":"6"}"#));
    // A late "failed" does not undo success.
    result(&h, &vol.id, CommandState::Failed, &[]).await;
    assert_eq!(
        h.ops.command(&id, &vol.id).await.unwrap().status,
        CommandStatus::Succeeded
    );

    // Failed by the device.
    let fw = h
        .ops
        .send_command(
            &id,
            input(
                CommandAction::FwUpdate(ImageUpdate {
                    url: "https://cdn.example/fw-2.0.bin".into(),
                    sha256: "0f".repeat(32),
                    version: "2.0".into(),
                    size: 1_048_576,
                }),
                60,
                false,
            ),
        )
        .await
        .unwrap();
    result(&h, &fw.id, CommandState::Failed, &[]).await;
    assert_eq!(
        h.ops.command(&id, &fw.id).await.unwrap().status,
        CommandStatus::Failed
    );

    // The device says it came too late.
    let late = h
        .ops
        .send_command(
            &id,
            input(CommandAction::ReplayLast { count: 2 }, 60, false),
        )
        .await
        .unwrap();
    result(&h, &late.id, CommandState::Expired, &[]).await;
    assert_eq!(
        h.ops.command(&id, &late.id).await.unwrap().status,
        CommandStatus::Expired
    );

    // Acknowledged but never finished: timed out after expiry + result timeout.
    let slow = h
        .ops
        .send_command(&id, input(CommandAction::Reboot, 60, false))
        .await
        .unwrap();
    result(&h, &slow.id, CommandState::Acknowledged, &[]).await;
    h.clock.advance(Duration::from_secs(119));
    h.ops.sweep_commands().await;
    assert_eq!(
        h.ops.command(&id, &slow.id).await.unwrap().status,
        CommandStatus::Acknowledged
    );
    h.clock.advance(Duration::from_secs(1));
    h.ops.sweep_commands().await;
    let timed_out = h.ops.command(&id, &slow.id).await.unwrap();
    assert_eq!(timed_out.status, CommandStatus::TimedOut);
    assert!(timed_out.completed_at_ms.is_some());

    let all = h.ops.commands(&id, &PageRequest::first(50)).await.unwrap();
    assert_eq!(all.items.len(), 7);
    let statuses: HashSet<CommandStatus> = all.items.iter().map(|c| c.status).collect();
    for status in [
        CommandStatus::Succeeded,
        CommandStatus::Failed,
        CommandStatus::TimedOut,
        CommandStatus::Expired,
    ] {
        assert!(statuses.contains(&status), "{status:?} never reached");
    }
}

fn published_qr(h: &Harness) -> Vec<DownlinkBody> {
    h.wire
        .downlinks()
        .iter()
        .filter(|(_, d)| {
            matches!(
                d.body,
                DownlinkBody::DynamicQrShow(_) | DownlinkBody::DynamicQrClear(_)
            )
        })
        .map(|(_, d)| d.body.clone())
        .collect()
}

/// The same device operations with payments attached. Payments keeps real time: the store
/// stamps a transaction's creation with it, and tests compare the two.
fn with_payments(h: &mut Harness, settings: DeviceOpsSettings) {
    let (_results, results_queue) = gema_gateway::delivery::results_channel();
    let payments = gema_gateway::payments::Payments::new(
        h.store.clone(),
        gema_gateway::payments::PaymentSettings::default(),
        Arc::new(gema_gateway::clock::SystemClock),
        gema_gateway::delivery::Handover::new(),
        results_queue,
    );
    h.ops = DeviceOps::new(
        h.store.clone(),
        Arc::new(h.wire.clone()),
        Arc::new(h.clock.clone()),
        settings,
        Some(payments),
        alone(&h.store, &h.wire, &h.clock),
        None,
    );
}

/// Binds the harness's device to a new approved terminal with a static QRIS.
async fn bind_to_a_qris_terminal(h: &Harness) -> Terminal {
    let registry = Registry::new(h.store.clone());
    let (_, _, t) = gema_gateway::testing::approved_terminal(&registry).await;
    registry
        .update_terminal(
            &t.id,
            TerminalPatch {
                static_qris: Some(Some(STATIC_QRIS.into())),
                ..TerminalPatch::default()
            },
        )
        .await
        .unwrap();
    h.store.bind_device(&h.device_id, &t.id).await.unwrap();
    t
}

/// The device's QR request `request_id` as stored.
async fn stored_qr(h: &Harness, request_id: &str) -> QrRequestRecord {
    h.store
        .qr_request(&h.device_id, request_id)
        .await
        .unwrap()
        .expect("the request is stored")
}

/// The device acknowledges a downlink as carried out (`processed`).
fn processed(msg_id: String, transaction_id: &str) -> Ack {
    Ack {
        acked_msg_id: msg_id,
        transaction_id: Some(transaction_id.into()),
        status: AckStatus::Processed,
    }
}

#[tokio::test]
async fn qr_downlinks_are_retried_until_acknowledged_and_replayed_on_reconnect() {
    let mut h = harness(DeviceOpsSettings::default()).await;
    with_payments(&mut h, DeviceOpsSettings::default());
    bind_to_a_qris_terminal(&h).await;
    let retry = DeviceOpsSettings::default().config_retry_interval + Duration::from_secs(1);
    h.connect().await;
    h.send(DynamicQrRequest {
        request_id: "r1".into(),
        amount: 25_000,
    })
    .await;
    let shows = published_qr(&h);
    let Some(DownlinkBody::DynamicQrShow(show)) = shows.last() else {
        panic!("no qr_show: {shows:?}");
    };
    let trx = show.transaction_id.clone();

    // Not acknowledged: sent again once the retry interval has passed, not before.
    h.ops.sweep_commands().await;
    assert_eq!(published_qr(&h).len(), 1);
    h.clock.advance(retry);
    h.ops.sweep_commands().await;
    assert_eq!(published_qr(&h).len(), 2, "qr_show resent");

    // Offline: nothing sent; on reconnect, replayed at once.
    h.drop_connection("connection_lost").await;
    h.clock.advance(retry);
    h.ops.sweep_commands().await;
    assert_eq!(published_qr(&h).len(), 2);
    h.connect().await;
    assert_eq!(published_qr(&h).len(), 3, "qr_show replayed on connect");
    assert!(
        matches!(published_qr(&h).last(), Some(DownlinkBody::DynamicQrShow(s)) if s.transaction_id == trx)
    );

    // Acknowledged: never sent again.
    h.send(processed(format!("qrs_{trx}"), &trx)).await;
    h.clock.advance(retry);
    h.ops.sweep_commands().await;
    h.drop_connection("connection_lost").await;
    h.connect().await;
    assert_eq!(published_qr(&h).len(), 3);
    let stored = stored_qr(&h, "r1").await;
    assert_eq!(stored.show_status, "delivered");

    // The transaction ends while the device is offline: its qr_clear is owed, sent when
    // it reconnects, resent until acknowledged.
    h.drop_connection("connection_lost").await;
    h.store
        .expire_due_transactions(
            h.store.get_transaction(&trx).await.unwrap().expires_at_ms,
            10,
        )
        .await
        .unwrap();
    h.ops.sweep_commands().await;
    assert_eq!(published_qr(&h).len(), 3, "nothing to an offline device");
    h.connect().await;
    let clear = DownlinkBody::DynamicQrClear(DynamicQrClear {
        transaction_id: Some(trx.clone()),
        request_id: Some("r1".into()),
        reason: QrClearReason::Expired,
    });
    assert_eq!(published_qr(&h).last(), Some(&clear));
    assert_eq!(published_qr(&h).len(), 4);
    h.clock.advance(retry);
    h.ops.sweep_commands().await;
    assert_eq!(published_qr(&h).len(), 5, "qr_clear resent");
    h.send(processed(format!("qrc_{trx}"), &trx)).await;
    h.clock.advance(retry);
    h.ops.sweep_commands().await;
    assert_eq!(published_qr(&h).len(), 5);
    let stored = stored_qr(&h, "r1").await;
    assert_eq!(stored.clear_status.as_deref(), Some("delivered"));
}

#[tokio::test]
async fn an_owed_qr_downlink_ends_expired_with_its_qr() {
    let mut h = harness(DeviceOpsSettings::default()).await;
    with_payments(&mut h, DeviceOpsSettings::default());
    bind_to_a_qris_terminal(&h).await;
    h.connect().await;
    h.send(DynamicQrRequest {
        request_id: "r1".into(),
        amount: 10_000,
    })
    .await;
    assert_eq!(published_qr(&h).len(), 1);
    let stored = stored_qr(&h, "r1").await;
    // Past the QR's own expiry the device has dropped it: nothing more is sent.
    h.clock.set_ms(stored.expires_at_ms);
    h.ops.sweep_commands().await;
    h.drop_connection("connection_lost").await;
    h.connect().await;
    assert_eq!(published_qr(&h).len(), 1);
    let stored = stored_qr(&h, "r1").await;
    assert_eq!(stored.show_status, "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qr_request_sent_twice_at_once_makes_one_transaction() {
    let mut h = harness(DeviceOpsSettings::default()).await;
    with_payments(&mut h, DeviceOpsSettings::default());
    let t = bind_to_a_qris_terminal(&h).await;
    h.connect().await;
    let request = || DynamicQrRequest {
        request_id: "twice".into(),
        amount: 12_000,
    };
    tokio::join!(h.send(request()), h.send(request()), h.send(request()));
    let made = h
        .store
        .list_transactions(
            &TransactionFilter {
                terminal_id: Some(t.id.clone()),
                ..TransactionFilter::default()
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    assert_eq!(made.items.len(), 1, "one transaction: {:?}", made.items);
    // Every copy was answered with that one QR.
    let shows: HashSet<String> = published_qr(&h)
        .into_iter()
        .filter_map(|d| match d {
            DownlinkBody::DynamicQrShow(s) => Some(s.transaction_id),
            _ => None,
        })
        .collect();
    assert_eq!(shows, HashSet::from([made.items[0].id.clone()]));
}

#[tokio::test]
async fn a_device_qr_request_makes_a_transaction_and_is_cleared_when_it_expires() {
    let mut h = harness(DeviceOpsSettings::default()).await;
    let request = |id: &str, amount: i64| DynamicQrRequest {
        request_id: id.into(),
        amount,
    };
    // No payments attached: refused.
    h.connect().await;
    h.send(request("r0", 15_000)).await;
    assert!(matches!(
        published_qr(&h).last(),
        Some(DownlinkBody::DynamicQrClear(DynamicQrClear {
            reason: QrClearReason::Refused,
            ..
        }))
    ));

    with_payments(&mut h, DeviceOpsSettings::default());
    // Not bound to a terminal: refused.
    h.send(request("r1", 15_000)).await;
    assert_eq!(published_qr(&h).len(), 2);

    let t = bind_to_a_qris_terminal(&h).await;

    // A malformed request (amount 0) is refused by the decoder: nothing is made.
    h.send(request("r2", 0)).await;
    assert_eq!(published_qr(&h).len(), 2);

    h.send(request("r3", 15_000)).await;
    let shows = published_qr(&h);
    let Some(DownlinkBody::DynamicQrShow(show)) = shows.last() else {
        panic!("no qr_show: {shows:?}");
    };
    assert_eq!(show.request_id.as_deref(), Some("r3"));
    assert_eq!(show.amount, 15_000);
    assert_eq!(
        gema_qris::decode(&show.payload).unwrap().amount(),
        Some(15_000)
    );
    let trx = h.store.get_transaction(&show.transaction_id).await.unwrap();
    assert_eq!(trx.status, TransactionStatus::Pending);
    assert_eq!(trx.terminal_id, t.id);
    // The device's QR timeout (300 s by default) is the transaction's lifetime. The expiry
    // is reckoned when the request is handled, the creation stamped (to the second) once
    // the store's write turn comes: on a loaded machine a second or more apart, so the
    // slack is 10 s (the default pending lifetime, 15 minutes, is far off all the same).
    let lifetime_ms = trx.expires_at_ms - trx.created_at.unix_timestamp() * 1000;
    assert!((lifetime_ms - 300_000).abs() < 10_000, "{lifetime_ms} ms");

    // Nothing to clear while pending; once expired, one qr_clear (expired).
    h.ops.sweep_commands().await;
    assert_eq!(published_qr(&h).len(), 3);
    h.store
        .expire_due_transactions(trx.expires_at_ms, 10)
        .await
        .unwrap();
    h.ops.sweep_commands().await;
    h.ops.sweep_commands().await;
    let all = published_qr(&h);
    assert_eq!(all.len(), 4);
    assert_eq!(
        all[3],
        DownlinkBody::DynamicQrClear(DynamicQrClear {
            transaction_id: Some(show.transaction_id.clone()),
            request_id: Some("r3".into()),
            reason: QrClearReason::Expired,
        })
    );
    // A late retry of the same request is told it expired, no new transaction.
    h.send(request("r3", 15_000)).await;
    let all = published_qr(&h);
    assert!(matches!(
        &all[4],
        DownlinkBody::DynamicQrClear(DynamicQrClear {
            reason: QrClearReason::Expired,
            ..
        })
    ));
}

/// Settings that retry a failed config push every 20 ms, and all but forever.
fn retrying() -> DeviceOpsSettings {
    DeviceOpsSettings {
        config_retry_interval: Duration::from_millis(20),
        config_max_attempts: 1_000,
        ..DeviceOpsSettings::default()
    }
}

/// Connects the device and sets a config whose push fails ("no PUBACK"): pending, and the
/// wire keeps failing until the caller says otherwise.
async fn a_push_failing_while_connected(h: &Harness) {
    h.connect().await;
    h.wire.set_failing(Some("no PUBACK"));
    let state = h
        .ops
        .set_config(&h.device_id, 0, ConfigPatch::default())
        .await
        .unwrap();
    assert_eq!(state.push_status, ConfigPushStatus::Pending);
}

/// The device's config state once `want` holds (bounded, the shared deadline).
async fn config_until(
    h: &Harness,
    want: fn(&gema_gateway::device_ops::ConfigState) -> bool,
) -> gema_gateway::device_ops::ConfigState {
    gema_gateway::testing::eventually_within(
        "the config state wanted",
        gema_gateway::testing::DEFAULT_DEADLINE,
        || async {
            let state = h.ops.config(&h.device_id).await.unwrap();
            if want(&state) {
                Ok(Some(state))
            } else {
                Err(state)
            }
        },
    )
    .await
}

/// The loop's retry reaches a connected device however many older pending pushes of
/// offline devices (or of devices on other nodes) come first: more than one page of them.
#[tokio::test]
async fn a_failed_config_push_is_retried_behind_a_page_of_offline_devices() {
    let h = harness(retrying()).await;
    for i in 0..520 {
        let offline = device(&*h.store, &format!("SB-AWAY-{i}")).await.id;
        h.store
            .set_desired_config(&offline, 0, r#"{"volume":3}"#, START - 60_000 + i)
            .await
            .unwrap();
    }
    a_push_failing_while_connected(&h).await;
    h.wire.set_failing(None);
    let (stop_tx, runner) = run_quietly(&h);
    let sent = config_until(&h, |s| s.push_status == ConfigPushStatus::Sent).await;
    assert_eq!(sent.desired_version, 1);
    assert_eq!(h.published_configs().len(), 1);
    let _ = stop_tx.send(());
    runner.await.unwrap();
}

#[tokio::test]
async fn a_failed_config_push_is_retried_by_the_loop_then_given_up() {
    let h = harness(retrying()).await;
    a_push_failing_while_connected(&h).await;
    let (stop_tx, runner) = run_quietly(&h);
    let failing = config_until(&h, |s| s.push_attempts >= 2).await;
    assert_eq!(failing.push_status, ConfigPushStatus::Pending);
    assert_eq!(failing.push_error.as_deref(), Some("no PUBACK"));
    h.wire.set_failing(None);
    let sent = config_until(&h, |s| s.push_status == ConfigPushStatus::Sent).await;
    assert_eq!(sent.desired_version, 1);
    assert_eq!(h.published_configs().len(), 1);
    let _ = stop_tx.send(());
    runner.await.unwrap();

    // With a budget of one attempt, a failure is final until an operator retries.
    let h = harness(DeviceOpsSettings {
        config_max_attempts: 1,
        ..DeviceOpsSettings::default()
    })
    .await;
    h.connect().await;
    h.wire.set_failing(Some("no PUBACK"));
    h.ops
        .set_config(&h.device_id, 0, ConfigPatch::default())
        .await
        .unwrap();
    h.ops.retry_config_push(&h.device_id).await.unwrap();
    let failed = h.ops.config(&h.device_id).await.unwrap();
    assert_eq!(failed.push_status, ConfigPushStatus::Failed);
    assert_eq!(codes(&h.health().await), vec!["config_push_failed"]);
    h.wire.set_failing(None);
    let retried = h.ops.retry_config_push(&h.device_id).await.unwrap();
    assert_eq!(retried.push_status, ConfigPushStatus::Sent);
}

#[tokio::test]
async fn the_health_filter_pages_by_cursor_across_registry_pages() {
    let h = harness(DeviceOpsSettings::default()).await;
    let mut ids = vec![h.device_id.clone()];
    for n in 2..=6 {
        ids.push(device(&*h.store, &format!("SB-PAGE-{n}")).await.id);
    }
    // Devices 2 and 5 (of 6) are online.
    for id in [&ids[1], &ids[4]] {
        h.wire.connect(id);
        h.ops
            .handle_uplink(UplinkMessage {
                device_id: id.clone(),
                topic: topic::topic(id, MessageKind::Heartbeat, Encoding::Json),
                payload: encode(
                    &Uplink::new(Envelope::new("hb", START), heartbeat(90)),
                    Encoding::Json,
                ),
                settle: Default::default(),
            })
            .await;
    }
    let filter = DeviceFilter::default();
    let mut after = None;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let page = h
            .ops
            .devices_with_health(
                &filter,
                &PageRequest {
                    after: after.clone(),
                    limit: 1,
                },
                Some(HealthStatus::Online),
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|(d, s)| {
            assert_eq!(s.status, HealthStatus::Online);
            d.id.clone()
        }));
        after = page.next_after;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(seen, vec![ids[1].clone(), ids[4].clone()]);
    assert!(after.is_none(), "the last page has no cursor");
    let offline = h
        .ops
        .devices_with_health(
            &filter,
            &PageRequest::first(50),
            Some(HealthStatus::Offline),
        )
        .await
        .unwrap();
    assert_eq!(offline.items.len(), 4);
    assert_eq!(offline.next_after, None);
}

#[tokio::test]
async fn a_batch_of_presence_changes_is_recorded_at_once_and_only_connects_get_a_replay() {
    let h = harness(DeviceOpsSettings::default()).await;
    let mut others = Vec::new();
    for i in 0..40 {
        others.push(device(&*h.store, &format!("SB-STORM-{i}")).await.id);
    }
    // A config is due for the harness's device and for the first other one.
    for id in [&h.device_id, &others[0]] {
        h.ops
            .set_config(
                id,
                0,
                ConfigPatch {
                    volume: Some(3),
                    ..ConfigPatch::default()
                },
            )
            .await
            .unwrap();
    }
    let connected = |id: &String| Presence::Connected {
        device_id: id.clone(),
    };
    let gone = |id: &String| Presence::Disconnected {
        device_id: id.clone(),
        reason: "connection_lost".into(),
    };
    // The harness's device drops and comes back within the batch: it is connected, and
    // gets its config. The first other one comes and goes: disconnected, no replay.
    h.wire.connect(&h.device_id);
    let mut batch = vec![connected(&h.device_id), connected(&others[0])];
    batch.extend(others[1..].iter().map(connected));
    batch.push(gone(&h.device_id));
    batch.push(gone(&others[0]));
    batch.push(connected(&h.device_id));
    h.ops.handle_presences(&batch).await;

    let mut all = others.clone();
    all.push(h.device_id.clone());
    let recorded = h.store.presences(&all).await.unwrap();
    assert_eq!(recorded.len(), all.len(), "every device is recorded");
    for p in &recorded {
        assert_eq!(p.connected, p.device_id != others[0], "{p:?}");
    }
    let pushed: Vec<String> = h
        .wire
        .downlinks()
        .into_iter()
        .filter(|(_, d)| matches!(d.body, DownlinkBody::ConfigPush(_)))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(pushed, vec![h.device_id.clone()]);
}

/// `body` as the device's client publishes it, with the settle handle its PUBACK waits for.
fn settled_uplink(
    h: &Harness,
    body: impl Into<UplinkBody>,
    kind: MessageKind,
) -> (UplinkMessage, tokio::sync::oneshot::Receiver<()>) {
    let (settle, settled) = gema_gateway::transport::Settle::pair();
    let uplink = Uplink::new(Envelope::new("m-settle", START), body);
    let message = UplinkMessage {
        device_id: h.device_id.clone(),
        topic: topic::topic(&h.device_id, kind, Encoding::Json),
        payload: encode(&uplink, Encoding::Json),
        settle,
    };
    (message, settled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_report_answering_a_push_is_acknowledged_only_once_written_a_heartbeat_at_once() {
    let h = harness(DeviceOpsSettings::default()).await;
    let config = DeviceConfig {
        volume: 5,
        language: Language::Id,
        heartbeat_interval_s: 60,
        qr_timeout_s: 120,
        quiet_hours: None,
    };
    let applied = || ReportedConfig {
        applied_version: 1,
        cause: ReportCause::Applied,
        config: config.clone(),
    };
    // Another writer holds the database: every write here waits, then fails.
    let db = rusqlite::Connection::open(h._dir.path().join("gema.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();

    // A heartbeat is acknowledged at once, whatever becomes of its write.
    let (beat, beat_settled) = settled_uplink(&h, heartbeat(80), MessageKind::Heartbeat);
    let ops = h.ops.clone();
    let beat_handled = tokio::spawn(async move { ops.handle_uplink(beat).await });
    tokio::time::timeout(Duration::from_secs(2), beat_settled)
        .await
        .expect("a heartbeat is settled before its write")
        .expect("settled, not dropped");

    // A report that applies a push answers the gateway: no PUBACK while its write waits,
    // none at all when it fails (the device sends it again).
    let (report, mut report_settled) = settled_uplink(&h, applied(), MessageKind::ReportedConfig);
    let ops = h.ops.clone();
    let report_handled = tokio::spawn(async move { ops.handle_uplink(report).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        report_settled.try_recv(),
        Err(tokio::sync::oneshot::error::TryRecvError::Empty)
    );
    report_handled.await.unwrap();
    assert!(
        report_settled.await.is_err(),
        "a report whose write failed must not be acknowledged"
    );
    beat_handled.await.unwrap();

    // Written: acknowledged.
    db.execute_batch("ROLLBACK").unwrap();
    let (again, again_settled) = settled_uplink(&h, applied(), MessageKind::ReportedConfig);
    h.ops.handle_uplink(again).await;
    again_settled.await.expect("settled once written");
}

/// Device operations with a device CA, so devices' `cert_renew` uplinks are signed.
fn with_certificates(h: &mut Harness) {
    let (cert, key) = gema_certs::DeviceCa::generate().unwrap();
    let settings = gema_gateway::certificates::DeviceCertSettings {
        ca: Some(Arc::new(
            gema_certs::DeviceCa::from_pem(&cert, &key).unwrap(),
        )),
        ..Default::default()
    };
    let certificates =
        gema_gateway::certificates::DeviceCertificates::new(h.store.clone(), None, settings);
    h.ops = DeviceOps::new(
        h.store.clone(),
        Arc::new(h.wire.clone()),
        Arc::new(h.clock.clone()),
        DeviceOpsSettings::default(),
        None,
        alone(&h.store, &h.wire, &h.clock),
        Some(certificates),
    );
}

/// A CSR for a new P-256 key whose common name is `name`.
fn csr_naming(name: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, name);
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn renewal_answers(h: &Harness) -> Vec<CertRenewResult> {
    h.wire
        .downlinks()
        .into_iter()
        .filter_map(|(_, d)| match d.body {
            DownlinkBody::CertRenewResult(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_is_signed_answered_and_audited_and_a_quick_second_one_is_refused() {
    let mut h = harness(DeviceOpsSettings::default()).await;
    with_certificates(&mut h);
    h.wire.connect(&h.device_id);

    let (message, settled) = settled_uplink(
        &h,
        CertRenew {
            request_id: "r1".into(),
            csr_pem: csr_naming(&h.device_id),
        },
        MessageKind::CertRenew,
    );
    h.ops.handle_uplink(message).await;
    settled
        .await
        .expect("settled once the certificate is recorded");
    let answers = renewal_answers(&h);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].request_id, "r1");
    let CertRenewOutcome::Issued(issued) = &answers[0].outcome else {
        panic!("issued: {:?}", answers[0].outcome);
    };
    // The device's new certificate first, then the CA's.
    assert_eq!(
        issued
            .chain_pem
            .matches("-----BEGIN CERTIFICATE-----")
            .count(),
        2
    );
    let recorded = h.store.device_certificates(&h.device_id).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].serial, issued.serial);
    assert_eq!(recorded[0].issued_via, "mqtt");
    assert_eq!(recorded[0].status, CertificateStatus::Active);
    let first_cert = gema_certs::first_certificate_der(&issued.chain_pem).unwrap();
    assert_eq!(
        gema_certs::certificate_fingerprint(&first_cert),
        recorded[0].fingerprint
    );

    // Again at once: refused, nothing issued.
    h.send(CertRenew {
        request_id: "r2".into(),
        csr_pem: csr_naming(&h.device_id),
    })
    .await;
    let answers = renewal_answers(&h);
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[1].request_id, "r2");
    assert_eq!(
        answers[1].outcome,
        CertRenewOutcome::Refused(CertRenewRefusal::TooSoon)
    );
    assert_eq!(
        h.store
            .device_certificates(&h.device_id)
            .await
            .unwrap()
            .len(),
        1
    );

    // One audit row each, the device as actor.
    let rows = h
        .store
        .list_audit(
            &AuditFilter {
                actor: Some(format!("device:{}", h.device_id)),
                ..Default::default()
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap()
        .items;
    let outcomes: Vec<_> = rows.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["ok", "denied"], "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.action == "device.credentials" && r.source.as_deref() == Some("mqtt"))
    );
    assert!(
        rows[0]
            .after_json
            .as_deref()
            .unwrap()
            .contains(&issued.serial)
    );
    assert!(rows[1].after_json.as_deref().unwrap().contains("too_soon"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_naming_another_device_or_without_a_valid_csr_is_refused_with_its_reason() {
    let mut h = harness(DeviceOpsSettings::default()).await;
    with_certificates(&mut h);
    h.wire.connect(&h.device_id);
    h.send(CertRenew {
        request_id: "other".into(),
        csr_pem: csr_naming("dev_someone_else"),
    })
    .await;
    // PEM-shaped (the protocol's check) but not a request inside.
    h.send(CertRenew {
        request_id: "garbage".into(),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            .into(),
    })
    .await;
    let answers = renewal_answers(&h);
    let outcomes: Vec<_> = answers
        .iter()
        .map(|a| (a.request_id.as_str(), a.outcome.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (
                "other",
                CertRenewOutcome::Refused(CertRenewRefusal::WrongName)
            ),
            (
                "garbage",
                CertRenewOutcome::Refused(CertRenewRefusal::InvalidCsr)
            ),
        ]
    );
    assert!(
        h.store
            .device_certificates(&h.device_id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_device_ca_a_renewal_is_refused_unavailable() {
    let h = harness(DeviceOpsSettings::default()).await;
    h.wire.connect(&h.device_id);
    h.send(CertRenew {
        request_id: "r1".into(),
        csr_pem: csr_naming(&h.device_id),
    })
    .await;
    assert_eq!(
        renewal_answers(&h)
            .into_iter()
            .map(|a| a.outcome)
            .collect::<Vec<_>>(),
        [CertRenewOutcome::Refused(CertRenewRefusal::Unavailable)]
    );
}
