//! Several `gema serve` nodes on one PostgreSQL database: one CA for all, a callback on
//! one node spoken by the device on another, a takeover and a revoke that reach the node
//! holding the device.
//!
//! They need a PostgreSQL cluster (`scripts/with-postgres` exports its URL in
//! `GEMA_TEST_POSTGRES_URL`). Without one they are skipped, loudly; under `CI=true` a
//! missing cluster is a failure.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

use gema::sim::{SimEvent, run_device};
use gema_gateway::payments::providers::midtrans_signature;
use gema_gateway::testing::eventually_within;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::{Daemon, sim_options};

const KEY: &str = "SB-Mid-server-cluster";

/// A fresh database in the test cluster, or `None` (skipped) outside CI without one.
async fn database() -> Option<String> {
    let Ok(cluster) = std::env::var("GEMA_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "GEMA_TEST_POSTGRES_URL is not set: under CI the cluster tests must run \
             (scripts/with-postgres cargo test --test daemon)"
        );
        eprintln!(
            "SKIPPED: no PostgreSQL for the cluster tests; run them with \
             scripts/with-postgres cargo test --test daemon cluster"
        );
        return None;
    };
    Some(gema_store::testing::fresh_postgres_database(&cluster).await)
}

/// A node on `database` named `id`, heartbeating every second.
fn node(dir: &Path, database: &str, id: &str) -> Daemon {
    Daemon::start_with(
        dir,
        &[
            ("GEMA_DATABASE__URL", database),
            ("GEMA_NODE__ID", id),
            ("GEMA_NODE__HEARTBEAT_INTERVAL_SECS", "1"),
            ("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY),
        ],
    )
}

fn ca_of(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("gema-data/certs/ca.pem")).expect("the node's CA file")
}

async fn notify(daemon: &Daemon, order: &str, amount: &str) -> (u16, Value) {
    let body = json!({
        "transaction_time": "2026-12-03 10:00:00", "transaction_status": "settlement",
        "transaction_id": format!("mt-{order}"), "status_code": "200",
        "signature_key": midtrans_signature(order, "200", amount, KEY),
        "payment_type": "qris", "order_id": order, "issuer": "gopay",
        "gross_amount": amount, "fraud_status": "accept", "currency": "IDR",
    });
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/payments/midtrans/notification",
            daemon.api_url
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The next event matching `pick`, waiting at most 30 s.
async fn next_event(
    events: &mut mpsc::Receiver<SimEvent>,
    pick: impl Fn(&SimEvent) -> bool,
) -> SimEvent {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let event = events.recv().await.expect("the device is running");
            if pick(&event) {
                return event;
            }
        }
    })
    .await
    .expect("the expected device event did not happen")
}

/// `GET /api/v1/nodes` until `check` holds for its items.
async fn nodes_until(daemon: &Daemon, what: &str, check: impl Fn(&[Value]) -> bool) {
    let check = &check;
    eventually_within(what, Duration::from_secs(20), || async move {
        let (_, nodes) = daemon.get("/api/v1/nodes").await;
        let items = nodes["items"].as_array().cloned().unwrap_or_default();
        if check(&items) {
            Ok(Some(()))
        } else {
            Err(items)
        }
    })
    .await
}

fn node_named<'a>(items: &'a [Value], id: &str) -> Option<&'a Value> {
    items.iter().find(|n| n["id"] == id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_on_one_node_is_spoken_by_the_device_on_another_and_a_revoke_reaches_it() {
    let Some(database) = database().await else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(dir_a.path(), &database, "node-a");
    let mut b = node(dir_b.path(), &database, "node-b");
    assert!(
        b.token.is_none(),
        "the bootstrap token is issued once per cluster"
    );
    b.token = a.token.clone();
    assert_eq!(
        ca_of(dir_a.path()),
        ca_of(dir_b.path()),
        "every node serves a certificate from the one development CA"
    );

    // Provisioned through a; the device dials b, trusting the CA a handed out.
    let c = a.approved_terminal_with_device("SB-CLUSTER-1").await;
    let device = c.device.device_id.clone();
    let (tx, mut events) = mpsc::channel(64);
    let fleet = tokio::spawn(run_device(
        c.device.clone(),
        sim_options(
            b.mqtt_addr.port(),
            c.ca_pem.clone(),
            Arc::new(AtomicU8::new(0)),
        ),
        tx,
    ));
    next_event(&mut events, |e| matches!(e, SimEvent::Connected { .. })).await;
    nodes_until(&a, "b holds the device, a none", |items| {
        node_named(items, "node-b")
            .is_some_and(|n| n["devices_held"] == 1 && n["state"] == "running")
            && node_named(items, "node-a").is_some_and(|n| n["devices_held"] == 0)
    })
    .await;
    let (_, status) = a.get(&format!("/api/v1/devices/{device}/status")).await;
    assert_eq!(
        status["health"]["connected"], true,
        "a sees the device b holds: {status}"
    );

    // The callback lands on a; b holds the device and speaks it, once.
    let (status, order) = a
        .post(
            "/api/v1/transactions",
            json!({ "terminal_id": c.terminal, "order_ref": "ORD-CL-1", "amount": 25_000 }),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let (status, reply) = notify(&a, "ORD-CL-1", "25000.00").await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("applied")));
    let spoke = next_event(&mut events, |e| {
        matches!(e, SimEvent::Spoke { .. } | SimEvent::Duplicate { .. })
    })
    .await;
    assert!(
        matches!(&spoke, SimEvent::Spoke { amount: 25_000, .. }),
        "{spoke:?}"
    );
    let transaction = order["id"].as_str().unwrap();
    let path = format!("/api/v1/transactions/{transaction}/announcements");
    let b_ref = &b;
    let path = path.as_str();
    let announcements = eventually_within(
        "delivered, seen from b",
        Duration::from_secs(20),
        || async move {
            let (_, list) = b_ref.get(path).await;
            let list = list.as_array().cloned().unwrap_or_default();
            if list.len() == 1 && list[0]["status"] == "delivered" {
                Ok(Some(list))
            } else {
                Err(list)
            }
        },
    )
    .await;
    assert_eq!(announcements[0]["attempts"], 1);

    // Revoked through a: b ends the device's session, and it cannot come back.
    let (status, _) = a
        .post(
            &format!("/api/v1/devices/{device}/credentials/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    next_event(&mut events, |e| matches!(e, SimEvent::Disconnected { .. })).await;
    nodes_until(&a, "b holds no device after the revoke", |items| {
        node_named(items, "node-b").is_some_and(|n| n["devices_held"] == 0)
    })
    .await;
    fleet.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_that_reconnects_to_another_node_is_taken_over_there() {
    let Some(database) = database().await else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(dir_a.path(), &database, "node-a");
    let mut b = node(dir_b.path(), &database, "node-b");
    b.token = a.token.clone();
    let c = a.approved_terminal_with_device("SB-CLUSTER-2").await;
    let device = c.device.device_id.clone();

    // The device on a, as one plain MQTT client that does not reconnect by itself.
    let mut options = rumqttc::MqttOptions::new(&device, "localhost", a.mqtt_addr.port());
    options.set_credentials(&device, &c.device.secret);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
        ca: c.ca_pem.clone(),
        alpn: None,
        client_auth: None,
    }));
    let (_client, mut on_a) = rumqttc::AsyncClient::new(options, 16);
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), on_a.poll())
            .await
            .expect("connected to a in time")
            .expect("connected to a");
        if matches!(event, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) {
            break;
        }
    }
    nodes_until(&b, "a holds the device", |items| {
        node_named(items, "node-a").is_some_and(|n| n["devices_held"] == 1)
    })
    .await;

    // The device comes back through b while its connection to a is still open (as after
    // a network change): a ends that session.
    let (tx_b, mut on_b) = mpsc::channel(64);
    let second = tokio::spawn(run_device(
        c.device.clone(),
        sim_options(
            b.mqtt_addr.port(),
            c.ca_pem.clone(),
            Arc::new(AtomicU8::new(0)),
        ),
        tx_b,
    ));
    next_event(&mut on_b, |e| matches!(e, SimEvent::Connected { .. })).await;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Err(err) = on_a.poll().await {
                return err;
            }
        }
    })
    .await
    .expect("a ends the old session");
    eprintln!("the connection to a ended: {ended}");
    nodes_until(&a, "b holds the device, a none", |items| {
        node_named(items, "node-b").is_some_and(|n| n["devices_held"] == 1)
            && node_named(items, "node-a").is_some_and(|n| n["devices_held"] == 0)
    })
    .await;
    // Presence is b's: a's late disconnect did not mark the device offline.
    let (_, status) = a.get(&format!("/api/v1/devices/{device}/status")).await;
    assert_eq!(status["health"]["connected"], true, "{status}");
    second.abort();
}
