//! Device operations end to end: the real binary, a simulated soundbox over MQTT/TLS
//! (rumqttc), the admin API over HTTP.

use std::sync::Arc;
use std::sync::atomic::AtomicU8;

use gema::sim::{SimControl, SimEvent, run_device_with};
use gema_firmware_protocol::topic::MessageKind;
use gema_gateway::testing::{DEFAULT_DEADLINE, eventually_within};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::{Daemon, RegisteredDevice, next_event, sim_options};

struct Sim {
    device_id: String,
    controls: mpsc::Sender<SimControl>,
    events: mpsc::Receiver<SimEvent>,
    task: tokio::task::JoinHandle<()>,
}

/// Registers a device and runs it in the simulator until it is connected.
async fn connected_device(daemon: &Daemon, serial: &str) -> Sim {
    let RegisteredDevice { device, ca_pem } = daemon.register_device(serial).await;
    let device_id = device.device_id.clone();
    let options = sim_options(daemon.mqtt_addr.port(), ca_pem, Arc::new(AtomicU8::new(0)));
    let (tx, mut events) = mpsc::channel(64);
    let (controls, control_rx) = mpsc::channel(16);
    let task = tokio::spawn(run_device_with(device, options, tx, control_rx));
    next_event(&mut events, |e| matches!(e, SimEvent::Connected { .. })).await;
    Sim {
        device_id,
        controls,
        events,
        task,
    }
}

/// GETs `path` until `ok` holds (at most 30 s); returns that body.
async fn eventually(daemon: &Daemon, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let ok = &ok;
    eventually_within(
        &format!("{path} never got there"),
        DEFAULT_DEADLINE,
        || async move {
            let (status, body) = daemon.get(path).await;
            if status == 200 && ok(&body) {
                Ok(Some(body))
            } else {
                Err(body)
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn config_is_applied_and_acked_and_a_button_press_shows_drift() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let mut sim = connected_device(&daemon, "SB-OPS-E2E-1").await;
    let id = sim.device_id.clone();

    // Health: online once a heartbeat is in.
    sim.controls.send(SimControl::Heartbeat).await.unwrap();
    let device = eventually(&daemon, &format!("/api/v1/devices/{id}"), |d| {
        d["health_summary"]["status"] == "online"
    })
    .await;
    assert_eq!(device["health_summary"]["connected"], true);
    let (_, online) = daemon.get("/api/v1/devices?health=online").await;
    assert_eq!(online["items"][0]["id"], id.as_str());

    // The device reported its boot config; nothing desired yet.
    let config = eventually(&daemon, &format!("/api/v1/devices/{id}/config"), |c| {
        c["reported_cause"] == "boot"
    })
    .await;
    assert_eq!(config["version"], 0);
    assert_eq!(config["reported"]["volume"], 7);

    // Operator sets volume 3: the device applies version 1 and reports it.
    let (status, patched) = daemon
        .patch(
            &format!("/api/v1/devices/{id}/config"),
            json!({ "version": 0, "volume": 3 }),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["version"], 1);
    let applied = next_event(&mut sim.events, |e| {
        matches!(e, SimEvent::ConfigApplied { .. })
    })
    .await;
    assert_eq!(
        applied,
        SimEvent::ConfigApplied {
            device_id: id.clone(),
            version: 1,
            volume: 3
        }
    );
    let synced = eventually(&daemon, &format!("/api/v1/devices/{id}/config"), |c| {
        c["sync"] == "in_sync"
    })
    .await;
    assert_eq!(synced["push_status"], "applied");
    assert_eq!(synced["reported_version"], 1);
    assert_eq!(synced["reported"]["volume"], 3);
    assert_eq!(synced["drift"], false);

    // A stale PATCH is refused.
    let (status, stale) = daemon
        .patch(
            &format!("/api/v1/devices/{id}/config"),
            json!({ "version": 0, "volume": 9 }),
        )
        .await;
    assert_eq!(
        (status, stale["code"].as_str()),
        (409, Some("stale_version"))
    );

    // The merchant presses volume-up on the device: drift, in config and in health.
    sim.controls.send(SimControl::PressVolumeUp).await.unwrap();
    let drifted = eventually(&daemon, &format!("/api/v1/devices/{id}/config"), |c| {
        c["drift"] == true
    })
    .await;
    assert_eq!(drifted["reported"]["volume"], 4);
    assert_eq!(drifted["reported_cause"], "local_change");
    assert_eq!(drifted["desired"]["volume"], 3);
    let status = eventually(&daemon, &format!("/api/v1/devices/{id}/status"), |s| {
        s["health"]["status"] == "degraded"
    })
    .await;
    assert_eq!(status["health"]["reasons"][0]["code"], "config_drift");
    assert_eq!(status["config"]["sync"], "drift");

    // The operator puts it back with a new version; the device follows.
    let (status, _) = daemon
        .patch(
            &format!("/api/v1/devices/{id}/config"),
            json!({ "version": 1, "volume": 3 }),
        )
        .await;
    assert_eq!(status, 200);
    next_event(&mut sim.events, |e| {
        matches!(e, SimEvent::ConfigApplied { version: 2, .. })
    })
    .await;
    eventually(&daemon, &format!("/api/v1/devices/{id}/config"), |c| {
        c["sync"] == "in_sync" && c["reported_version"] == 2
    })
    .await;

    // The message trace shows both directions.
    let (_, messages) = daemon.get(&format!("/api/v1/devices/{id}/messages")).await;
    let list = messages.as_array().unwrap();
    let has = |direction: &str, topic_end: &str| {
        list.iter().any(|m| {
            m["direction"] == direction && m["topic"].as_str().unwrap().ends_with(topic_end)
        })
    };
    assert!(has("up", "/up/heartbeat"), "{messages}");
    assert!(has("up", "/up/reported_config"), "{messages}");
    assert!(has("up", "/up/button"), "{messages}");
    assert!(has("down", "/down/config"), "{messages}");
    let down = list.iter().find(|m| m["direction"] == "down").unwrap();
    assert_eq!(down["outcome"], "acknowledged");
    assert!(down["size"].as_u64().unwrap() > 0);

    // The same through the CLI.
    let status = daemon.cli_ok(&["device", "status", &id]);
    assert!(
        status.starts_with(&format!("device {id} is online")),
        "{status}"
    );
    let listed = daemon.cli_ok(&["device", "list", "--health", "online", "-q"]);
    assert_eq!(listed, id);
    let set = daemon.cli_ok(&[
        "device",
        "set-config",
        &id,
        "--version",
        "2",
        "--volume",
        "5",
    ]);
    assert!(set.starts_with("config version 3"), "{set}");
    next_event(&mut sim.events, |e| {
        matches!(
            e,
            SimEvent::ConfigApplied {
                version: 3,
                volume: 5,
                ..
            }
        )
    })
    .await;
    let stale = daemon.cli(&[
        "device",
        "set-config",
        &id,
        "--version",
        "2",
        "--volume",
        "6",
    ]);
    assert!(!stale.status.success());
    assert!(String::from_utf8_lossy(&stale.stderr).contains("stale_version"));
    let command = daemon.cli_ok(&[
        "device",
        "command",
        &id,
        "set_volume",
        "--args",
        r#"{"volume":2}"#,
        "-q",
    ]);
    assert!(command.starts_with("cmd_"), "{command}");
    let shown = eventually(
        &daemon,
        &format!("/api/v1/devices/{id}/commands/{command}"),
        |c| c["status"] == "succeeded",
    )
    .await;
    assert_eq!(shown["result"]["volume"], "2");
    let commands = daemon.cli_ok(&["device", "commands", &id]);
    assert!(
        commands.contains(&command) && commands.contains("succeeded"),
        "{commands}"
    );
    let trace = daemon.cli_ok(&["device", "messages", &id]);
    assert!(
        trace.contains("/down/command") && trace.contains("/up/command_result"),
        "{trace}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_uplinks_are_counted_and_the_device_stays_connected() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let mut sim = connected_device(&daemon, "SB-OPS-E2E-2").await;
    let id = sim.device_id.clone();
    for (kind, payload) in [
        (MessageKind::Heartbeat, b"{not json".to_vec()),
        (MessageKind::ReportedConfig, br#"{"type":"reported_config","version":1}"#.to_vec()),
        (MessageKind::ButtonEvent, vec![0xff, 0x00, 0x13]),
        (MessageKind::CommandResult, b"[]".to_vec()),
        (MessageKind::DynamicQrRequest, br#"{"type":"qr_request","version":1,"msg_id":"m","sent_at":1,"request_id":"r1","amount":-5}"#.to_vec()),
    ] {
        sim.controls
            .send(SimControl::Raw { kind, payload })
            .await
            .unwrap();
    }
    sim.controls.send(SimControl::Heartbeat).await.unwrap();
    // The good heartbeat after the bad messages is stored: the device was not cut off.
    eventually(&daemon, &format!("/api/v1/devices/{id}/heartbeats"), |h| {
        h.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    let metrics = daemon.metrics().await;
    for kind in [
        "heartbeat",
        "reported_config",
        "button",
        "command_result",
        "qr_request",
    ] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("gema_uplinks_rejected_total")
                    && l.contains(&format!("kind=\"{kind}\""))
                    && l.contains("reason=\"payload\"")
            })
            .unwrap_or_else(|| panic!("no rejected counter for {kind}:\n{metrics}"));
        assert!(line.ends_with(" 1"), "{line}");
    }
    let (_, device) = daemon.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(device["health_summary"]["connected"], true);
    while let Ok(event) = sim.events.try_recv() {
        assert!(
            !matches!(event, SimEvent::Disconnected { .. }),
            "the device was disconnected: {event:?}"
        );
    }
    // The trace shows why each was refused.
    let (_, messages) = daemon.get(&format!("/api/v1/devices/{id}/messages")).await;
    let malformed = messages
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["summary"].as_str().unwrap().starts_with("malformed"))
        .count();
    assert_eq!(malformed, 5, "{messages}");
    daemon.until_logged("uplink rejected").await;
}

async fn command(daemon: &Daemon, device: &str, body: Value) -> Value {
    let (status, c) = daemon
        .post(&format!("/api/v1/devices/{device}/commands"), body)
        .await;
    assert_eq!(status, 201, "{c}");
    c
}

async fn command_reaches(daemon: &Daemon, device: &str, id: &Value, status: &str) -> Value {
    let id = id.as_str().unwrap();
    eventually(
        daemon,
        &format!("/api/v1/devices/{device}/commands/{id}"),
        |c| c["status"] == status,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_go_through_every_final_state() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(
        dir.path(),
        &[("GEMA_DEVICES__COMMAND_RESULT_TIMEOUT_SECS", "1")],
    );
    let mut sim = connected_device(&daemon, "SB-OPS-E2E-3").await;
    let id = sim.device_id.clone();

    // queued → sent → acknowledged → succeeded, with the device's result.
    let c = command(
        &daemon,
        &id,
        json!({ "action": { "name": "set_volume", "args": { "volume": 9 } }, "interactive": true }),
    )
    .await;
    let done = command_reaches(&daemon, &id, &c["id"], "succeeded").await;
    assert_eq!(done["result"]["volume"], "9");
    assert_eq!(done["attempts"], 1);
    for stamp in ["sent_at", "acknowledged_at", "completed_at"] {
        assert!(done[stamp].is_string(), "{stamp} missing: {done}");
    }

    // Failed by the device (the simulator cannot install images).
    let fw = command(
        &daemon,
        &id,
        json!({ "action": { "name": "fw_update", "args": {
            "url": "https://updates.example/sb100-2.0.bin", "sha256": "9f".repeat(32),
            "version": "2.0.0", "size": 524288 } } }),
    )
    .await;
    let failed = command_reaches(&daemon, &id, &fw["id"], "failed").await;
    assert!(failed["message"].as_str().unwrap().contains("cannot"));

    // Acknowledged, never finished: timed out (expiry + result timeout 1 s). The expiry
    // leaves room to deliver it and record the device's acknowledgement first (one arriving
    // past it is answered `expired` by the device): 1 s was tight for a debug build on a
    // loaded machine.
    sim.controls
        .send(SimControl::StallCommands(true))
        .await
        .unwrap();
    let slow = command(
        &daemon,
        &id,
        json!({ "action": { "name": "reboot" }, "expires_in_secs": 10 }),
    )
    .await;
    next_event(&mut sim.events, |e| {
        matches!(e, SimEvent::Command { command_id, .. } if command_id == slow["id"].as_str().unwrap())
    })
    .await;
    let timed_out = command_reaches(&daemon, &id, &slow["id"], "timed_out").await;
    assert!(timed_out["acknowledged_at"].is_string(), "{timed_out}");

    // The device goes away.
    sim.task.abort();
    let gone = eventually(&daemon, &format!("/api/v1/devices/{id}"), |d| {
        d["health_summary"]["connected"] == false
    })
    .await;
    assert_eq!(gone["health_summary"]["status"], "offline");
    assert_eq!(gone["health_summary"]["reasons"][0]["code"], "disconnected");
    // The broker's reason is kept with the presence change.
    let status = eventually(&daemon, &format!("/api/v1/devices/{id}/status"), |s| {
        s["presence"]["connected"] == false
    })
    .await;
    assert!(status["presence"]["reason"].is_string(), "{status}");
    // Interactive: failed at once. Otherwise: waits, then expires.
    let now = command(
        &daemon,
        &id,
        json!({ "action": { "name": "get_status" }, "interactive": true }),
    )
    .await;
    assert_eq!(now["status"], "failed");
    let later = command(
        &daemon,
        &id,
        json!({ "action": { "name": "announce_daily_summary" }, "expires_in_secs": 1 }),
    )
    .await;
    assert_eq!(later["status"], "queued");
    let expired = command_reaches(&daemon, &id, &later["id"], "expired").await;
    assert!(expired["sent_at"].is_null());

    let (_, list) = daemon.get(&format!("/api/v1/devices/{id}/commands")).await;
    let statuses: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec!["succeeded", "failed", "timed_out", "failed", "expired"]
    );
}

const MIDTRANS_KEY: &str = "SB-Mid-server-ops-e2e";
/// A static QRIS (the shared domain test vector), the base of the dynamic codes.
const STATIC_QRIS: &str = "00020101021126530012COM.DOKU.WWW0118936008990000002475020424750303URE51440014ID.CO.QRIS.WWW0215ID10200392934820303URE5204539953033605802ID5911GUREUM SHOP6013JAKARTA PUSAT61051064062070703A016304455C";

#[tokio::test(flavor = "multi_thread")]
async fn a_qr_asked_for_by_the_device_is_paid_then_cleared_and_announced() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(
        dir.path(),
        &[("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", MIDTRANS_KEY)],
    );
    // An approved merchant's terminal with a static QRIS, and a bound device.
    let terminal = daemon.approved_terminal("K1").await;
    let (status, body) = daemon
        .patch(
            &format!("/api/v1/terminals/{terminal}"),
            json!({ "static_qris": STATIC_QRIS }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut sim = connected_device(&daemon, "SB-OPS-E2E-4").await;
    let id = sim.device_id.clone();

    // Unbound: the request is refused.
    sim.controls
        .send(SimControl::RequestQr {
            request_id: "req-unbound".into(),
            amount: 10_000,
        })
        .await
        .unwrap();
    let refused = next_event(&mut sim.events, |e| matches!(e, SimEvent::QrCleared { .. })).await;
    assert!(
        matches!(&refused, SimEvent::QrCleared { reason: gema_firmware_protocol::QrClearReason::Refused, request_id: Some(r), transaction_id: None, .. } if r == "req-unbound"),
        "{refused:?}"
    );

    let (status, _) = daemon
        .post(
            &format!("/api/v1/devices/{id}/bind"),
            json!({ "terminal_id": terminal }),
        )
        .await;
    assert_eq!(status, 200);

    // The merchant keys in 25,000 on the device.
    sim.controls
        .send(SimControl::RequestQr {
            request_id: "req-1".into(),
            amount: 25_000,
        })
        .await
        .unwrap();
    let shown = next_event(&mut sim.events, |e| matches!(e, SimEvent::QrShown { .. })).await;
    let SimEvent::QrShown {
        request_id,
        transaction_id,
        payload,
        amount,
        ..
    } = shown
    else {
        unreachable!()
    };
    assert_eq!(request_id.as_deref(), Some("req-1"));
    assert_eq!(amount, 25_000);
    // The payload is a valid dynamic QRIS for that amount with a correct CRC.
    let qris = gema_qris::decode(&payload).expect("a valid QRIS");
    assert_eq!(qris.amount(), Some(25_000));
    assert_eq!(
        qris.point_of_initiation(),
        Some(gema_qris::PointOfInitiation::Dynamic)
    );
    let (body, crc) = payload.split_at(payload.len() - 4);
    assert_eq!(crc, gema_qris::crc16_hex(body.as_bytes()));
    // …and a pending transaction exists for it.
    let (_, trx) = daemon
        .get(&format!("/api/v1/transactions/{transaction_id}"))
        .await;
    assert_eq!(trx["status"], "pending");
    assert_eq!(trx["amount"], 25_000);
    assert_eq!(trx["terminal_id"], terminal.as_str());
    let order_ref = trx["order_ref"].as_str().unwrap().to_string();

    // A retried request gets the same QR, not a second transaction.
    sim.controls
        .send(SimControl::RequestQr {
            request_id: "req-1".into(),
            amount: 25_000,
        })
        .await
        .unwrap();
    let again = next_event(&mut sim.events, |e| matches!(e, SimEvent::QrShown { .. })).await;
    assert!(
        matches!(&again, SimEvent::QrShown { transaction_id: t, .. } if *t == transaction_id),
        "{again:?}"
    );

    // The customer pays: the device is told to close the QR, and announces.
    let notification = json!({
        "transaction_time": "2026-11-21 10:00:00", "transaction_status": "settlement",
        "transaction_id": format!("mt-{order_ref}"), "status_code": "200",
        "signature_key": gema_gateway::payments::providers::midtrans_signature(
            &order_ref, "200", "25000.00", MIDTRANS_KEY),
        "payment_type": "qris", "order_id": order_ref, "issuer": "gopay",
        "gross_amount": "25000.00", "fraud_status": "accept", "currency": "IDR",
    });
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/payments/midtrans/notification",
            daemon.api_url
        ))
        .json(&notification)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut spoke = false;
    let mut cleared = false;
    while !(spoke && cleared) {
        let event = next_event(&mut sim.events, |e| {
            matches!(e, SimEvent::Spoke { .. } | SimEvent::QrCleared { .. })
        })
        .await;
        match event {
            SimEvent::Spoke {
                transaction_id: t,
                amount,
                ..
            } => {
                assert_eq!((t.as_str(), amount), (transaction_id.as_str(), 25_000));
                spoke = true;
            }
            SimEvent::QrCleared {
                transaction_id: t,
                reason,
                ..
            } => {
                assert_eq!(t.as_deref(), Some(transaction_id.as_str()));
                assert_eq!(reason, gema_firmware_protocol::QrClearReason::Paid);
                cleared = true;
            }
            _ => unreachable!(),
        }
    }
    let (_, messages) = daemon.get(&format!("/api/v1/devices/{id}/messages")).await;
    let topics: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["topic"].as_str().unwrap())
        .collect();
    for end in [
        "/up/qr_request",
        "/down/qr_show",
        "/down/qr_clear",
        "/down/announce",
    ] {
        assert!(
            topics.iter().any(|t| t.ends_with(end)),
            "{end} not traced: {topics:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_that_floods_malformed_uplinks_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(dir.path(), &[("GEMA_DEVICES__MALFORMED_FLOOD_LIMIT", "3")]);
    let mut sim = connected_device(&daemon, "SB-OPS-E2E-5").await;
    for _ in 0..4 {
        sim.controls
            .send(SimControl::Raw {
                kind: MessageKind::Heartbeat,
                payload: b"\x00garbage".to_vec(),
            })
            .await
            .unwrap();
    }
    next_event(&mut sim.events, |e| {
        matches!(e, SimEvent::Disconnected { .. })
    })
    .await;
    let metrics = daemon.metrics().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("gema_devices_disconnected_for_flooding_total") && l.ends_with(" 1")
        ),
        "{metrics}"
    );
    // It may come back (and is served again).
    next_event(&mut sim.events, |e| matches!(e, SimEvent::Connected { .. })).await;
    sim.controls.send(SimControl::Heartbeat).await.unwrap();
    let id = sim.device_id.clone();
    eventually(&daemon, &format!("/api/v1/devices/{id}/heartbeats"), |h| {
        h.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
}
