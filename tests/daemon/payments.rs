//! Payments end to end on real sockets: the real binary, a simulated soundbox over MQTT/TLS,
//! signed Midtrans notifications over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use gema::sim::{SimEvent, run_device};
use gema_gateway::payments::providers::midtrans_signature;
use gema_gateway::testing::eventually_within;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::{Daemon, connected_sim, next_event, sim_options};

pub const KEY: &str = "SB-Mid-server-e2e";

pub fn notification(order: &str, status: &str, amount: &str) -> Value {
    json!({
        "transaction_time": "2026-11-21 10:00:00", "transaction_status": status,
        "transaction_id": format!("mt-{order}"), "status_code": "200",
        "signature_key": midtrans_signature(order, "200", amount, KEY),
        "payment_type": "qris", "order_id": order, "issuer": "gopay",
        "gross_amount": amount, "fraud_status": "accept", "currency": "IDR",
    })
}

pub async fn notify(daemon: &Daemon, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/payments/midtrans/notification",
            daemon.api_url
        ))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

pub async fn order(daemon: &Daemon, terminal: &str, order_ref: &str, amount: i64) -> String {
    let (status, t) = daemon
        .post(
            "/api/v1/transactions",
            json!({ "terminal_id": terminal, "order_ref": order_ref, "amount": amount }),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    t["id"].as_str().unwrap().to_string()
}

/// The transaction's announcements once none is pending (waiting at most 20 s).
async fn settled_announcements(daemon: &Daemon, transaction: &str) -> Vec<Value> {
    settled_within(daemon, transaction, Duration::from_secs(20)).await
}

/// The transaction's announcements once none is pending (waiting at most `deadline`).
async fn settled_within(daemon: &Daemon, transaction: &str, deadline: Duration) -> Vec<Value> {
    let path = format!("/api/v1/transactions/{transaction}/announcements");
    let path = path.as_str();
    eventually_within(
        &format!("announcements of {transaction} settled"),
        deadline,
        || async move {
            let (_, list) = daemon.get(path).await;
            let list = list.as_array().unwrap().clone();
            if !list.is_empty() && list.iter().all(|a| a["status"] != "pending") {
                Ok(Some(list))
            } else {
                Err(Unsettled { last: list, daemon })
            }
        },
    )
    .await
}

/// What a wait for settled announcements saw last, shown if it fails: the list, and what
/// the relay and the broker said, for whoever reads a failed run.
struct Unsettled<'a> {
    last: Vec<Value>,
    daemon: &'a Daemon,
}

impl std::fmt::Debug for Unsettled<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log: Vec<String> = self
            .daemon
            .stderr()
            .lines()
            .filter(|l| l.contains("relay") || l.contains("announce") || l.contains("connect"))
            .map(str::to_owned)
            .collect();
        write!(f, "{:?}\n{}", self.last, log.join("\n"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_notification_is_spoken_once_by_the_device_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    // On one runtime thread, as a box that PostgreSQL shares may run it: nothing in the
    // path may wait synchronously for another task.
    let daemon = Daemon::start_with(
        dir.path(),
        &[
            ("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY),
            ("GEMA_NODE__WORKER_THREADS", "1"),
        ],
    );
    let c = daemon.approved_terminal_with_device("SB-E2E-1").await;
    let device = c.device.device_id.clone();
    let (fleet, mut events) = connected_sim(daemon.mqtt_addr.port(), &c.device, &c.ca_pem).await;

    let id = order(&daemon, &c.terminal, "ORD-E2E-1", 25_000).await;
    let (status, reply) = notify(
        &daemon,
        &notification("ORD-E2E-1", "settlement", "25000.00"),
    )
    .await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("applied")));

    let spoke = next_event(&mut events, |e| matches!(e, SimEvent::Spoke { .. })).await;
    assert!(
        matches!(
            &spoke,
            SimEvent::Spoke { device_id, transaction_id, amount: 25_000, .. }
                if *device_id == device && *transaction_id == id
        ),
        "{spoke:?}"
    );

    let announcements = settled_announcements(&daemon, &id).await;
    assert_eq!(announcements.len(), 1);
    assert_eq!(announcements[0]["status"], "delivered");
    assert_eq!(announcements[0]["attempts"], 1);
    assert_eq!(announcements[0]["device_id"], device.as_str());
    let (_, t) = daemon.get(&format!("/api/v1/transactions/{id}")).await;
    assert_eq!(t["status"], "paid");
    let (_, ledger) = daemon
        .get(&format!("/api/v1/ledger-entries?transaction_id={id}"))
        .await;
    assert_eq!(ledger["items"].as_array().unwrap().len(), 3);

    // The provider retries the same notification: no second announcement.
    for _ in 0..5 {
        let (status, reply) = notify(
            &daemon,
            &notification("ORD-E2E-1", "settlement", "25000.00"),
        )
        .await;
        assert_eq!(
            (status, reply["outcome"].as_str()),
            (200, Some("duplicate"))
        );
    }
    let (_, list) = daemon
        .get(&format!("/api/v1/transactions/{id}/announcements"))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    fleet.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_device_hears_it_on_reconnect_unless_it_expired() {
    // The fresh announcement below must reach the device within this of its payment: the
    // device's first connect (debug build: TLS handshake and password hash), the replay's
    // grace and the delivery, on a loaded CI machine (6 s was tight for that).
    const TTL: Duration = Duration::from_secs(15);
    let dir = tempfile::tempdir().unwrap();
    let ttl = TTL.as_secs().to_string();
    let daemon = Daemon::start_with(
        dir.path(),
        &[
            ("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY),
            ("GEMA_PAYMENTS__ANNOUNCEMENT_TTL_SECS", ttl.as_str()),
        ],
    );
    let c = daemon.approved_terminal_with_device("SB-E2E-2").await;

    // Paid while the device is away, and the device stays away past the announcement's life:
    // until the relay, rechecking it at its expiry, has marked it expired.
    let stale = order(&daemon, &c.terminal, "ORD-E2E-STALE", 5_000).await;
    notify(
        &daemon,
        &notification("ORD-E2E-STALE", "settlement", "5000.00"),
    )
    .await;
    let old = settled_within(&daemon, &stale, TTL + Duration::from_secs(30)).await;
    assert_eq!(old[0]["status"], "expired");
    // Paid while away, and the device comes back in time.
    let fresh = order(&daemon, &c.terminal, "ORD-E2E-FRESH", 7_000).await;
    notify(
        &daemon,
        &notification("ORD-E2E-FRESH", "settlement", "7000.00"),
    )
    .await;

    let (tx, mut events) = mpsc::channel(64);
    let fleet = tokio::spawn(run_device(
        c.device.clone(),
        sim_options(
            daemon.mqtt_addr.port(),
            c.ca_pem.clone(),
            Arc::new(AtomicU8::new(0)),
        ),
        tx,
    ));
    let spoke = next_event(&mut events, |e| matches!(e, SimEvent::Spoke { .. })).await;
    assert!(
        matches!(&spoke, SimEvent::Spoke { transaction_id, amount: 7_000, .. } if *transaction_id == fresh),
        "{spoke:?}"
    );
    assert_eq!(
        settled_announcements(&daemon, &fresh).await[0]["status"],
        "delivered"
    );
    let old = settled_announcements(&daemon, &stale).await;
    assert_eq!(old[0]["status"], "expired");
    assert_eq!(
        old[0]["attempts"], 0,
        "an expired announcement is never sent"
    );
    fleet.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_commit_and_ack_still_announces_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    // A fixed MQTT port, so the device reconnects to the restarted daemon by itself.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let env = [
        ("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY),
        ("GEMA_MQTT__LISTEN", listen.as_str()),
    ];
    let daemon = Daemon::start_with(dir.path(), &env);
    let token = daemon.token.clone();
    let c = daemon.approved_terminal_with_device("SB-E2E-3").await;
    let drop_acks = Arc::new(AtomicU8::new(100));
    let (tx, mut events) = mpsc::channel(256);
    let fleet = tokio::spawn(run_device(
        c.device.clone(),
        sim_options(port, c.ca_pem.clone(), drop_acks.clone()),
        tx,
    ));
    next_event(&mut events, |e| matches!(e, SimEvent::Connected { .. })).await;

    let id = order(&daemon, &c.terminal, "ORD-E2E-CRASH", 50_000).await;
    notify(
        &daemon,
        &notification("ORD-E2E-CRASH", "settlement", "50000.00"),
    )
    .await;
    // The device has it (and speaks it) but its ack is lost; then the daemon dies hard.
    next_event(&mut events, |e| matches!(e, SimEvent::Spoke { .. })).await;
    daemon.kill_hard();

    drop_acks.store(0, Ordering::Relaxed);
    let mut restarted = Daemon::start_with(dir.path(), &env);
    restarted.token = token;
    let announcements = settled_announcements(&restarted, &id).await;
    assert_eq!(announcements.len(), 1);
    assert_eq!(announcements[0]["status"], "delivered");

    // The re-sent announcement was recognised by the device, not spoken again.
    let mut spoken = 1;
    let mut duplicates = 0;
    while let Ok(event) = events.try_recv() {
        match event {
            SimEvent::Spoke { .. } => spoken += 1,
            SimEvent::Duplicate { .. } => duplicates += 1,
            _ => {}
        }
    }
    assert_eq!(spoken, 1, "the amount was spoken more than once");
    assert!(
        duplicates >= 1,
        "the announcement was re-sent after the restart"
    );
    fleet.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_live_device_ends_its_session_and_keeps_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(dir.path(), &[("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY)]);
    let c = daemon.approved_terminal_with_device("SB-E2E-REVOKE").await;
    let (fleet, mut events) = connected_sim(daemon.mqtt_addr.port(), &c.device, &c.ca_pem).await;

    let device = &c.device.device_id;
    let (status, revoked) = daemon
        .post(
            &format!("/api/v1/devices/{device}/credentials/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    let kicked = next_event(&mut events, |e| matches!(e, SimEvent::Disconnected { .. })).await;
    assert!(matches!(kicked, SimEvent::Disconnected { .. }));

    // The device keeps retrying with its old secret (every 0.5 s) and is refused each time.
    let mut refusals = 0;
    while refusals < 3 {
        match next_event(&mut events, |_| true).await {
            SimEvent::Connected { .. } => panic!("a revoked device got back in"),
            SimEvent::Disconnected { .. } => refusals += 1,
            _ => {}
        }
    }
    fleet.abort();
}
