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

use crate::helpers::{Daemon, connected_sim, next_event, sim_options};

const KEY: &str = "SB-Mid-server-cluster";

/// A fresh database in the test cluster, or `None` (skipped) outside CI without one.
pub(crate) async fn database() -> Option<String> {
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
    let (fleet, mut events) = connected_sim(b.mqtt_addr.port(), &c.device, &c.ca_pem).await;
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

/// HAProxy in TCP mode in front of the nodes' MQTT ports, each node health-checked on its
/// `/health`, as `deploy/SCALING.md` describes.
struct Balancer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Balancer {
    /// `None` (skipped, loudly) when HAProxy is not installed, outside CI.
    fn start(nodes: &[(&str, &Daemon)]) -> Option<Balancer> {
        let haproxy = ["haproxy", "/usr/sbin/haproxy"].into_iter().find(|bin| {
            std::process::Command::new(bin)
                .arg("-v")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        let Some(haproxy) = haproxy else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "HAProxy is not installed: under CI the balancer test must run (apt-get install haproxy)"
            );
            eprintln!("SKIPPED: HAProxy is not installed (apt-get install haproxy)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "global\n    maxconn 4096\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 120s\n    \
             timeout server 120s\n    timeout check 500ms\n\
             frontend mqtt\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
             backend nodes\n    balance roundrobin\n    option httpchk GET /health\n    \
             default-server inter 300ms fall 2 rise 2\n"
        );
        for (name, node) in nodes {
            config.push_str(&format!(
                "    server {name} 127.0.0.1:{} check port {}\n",
                node.mqtt_addr.port(),
                node.http_port()
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let child = std::process::Command::new(haproxy)
            .args(["-db", "-f"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start haproxy");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "HAProxy did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Balancer {
            child,
            port,
            _dir: dir,
        })
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the fleet has heard: each transaction spoken (first receipt) and repeated.
#[derive(Default)]
struct Heard {
    spoken: std::collections::HashMap<String, usize>,
    duplicates: usize,
    connects: usize,
}

impl Heard {
    fn take(&mut self, event: SimEvent) {
        match event {
            SimEvent::Spoke { transaction_id, .. } => {
                *self.spoken.entry(transaction_id).or_default() += 1;
            }
            SimEvent::Duplicate { .. } => self.duplicates += 1,
            SimEvent::Connected { .. } => self.connects += 1,
            _ => {}
        }
    }
}

/// Reads the fleet's events into `heard` until `done` holds (at most `within`).
async fn hear_until(
    events: &mut mpsc::Receiver<SimEvent>,
    heard: &mut Heard,
    what: &str,
    within: Duration,
    done: impl Fn(&Heard) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !done(heard) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => heard.take(event),
            _ => panic!(
                "{what}: not within {within:?} ({} spoken, {} duplicates, {} connects)",
                heard.spoken.len(),
                heard.duplicates,
                heard.connects
            ),
        }
    }
}

/// Pays one order per terminal through `nodes` in turn; returns the transaction ids.
async fn pay_round(nodes: &[&Daemon], terminals: &[String], round: &str) -> Vec<String> {
    let mut paid = Vec::new();
    for (i, terminal) in terminals.iter().enumerate() {
        let node = nodes[i % nodes.len()];
        let order_ref = format!("ORD-{round}-{i}");
        let amount = 1_000 + i64::try_from(i).unwrap();
        let (status, t) = node
            .post(
                "/api/v1/transactions",
                json!({ "terminal_id": terminal, "order_ref": order_ref, "amount": amount }),
            )
            .await;
        assert_eq!(status, 201, "{t}");
        let (status, reply) = notify(node, &order_ref, &format!("{amount}.00")).await;
        assert_eq!((status, reply["outcome"].as_str()), (200, Some("applied")));
        paid.push(t["id"].as_str().unwrap().to_string());
    }
    paid
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_behind_haproxy_lose_nothing_when_one_dies_or_pauses() {
    let Some(database) = database().await else {
        return;
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), &database, "node-a");
    let mut b = node(dirs[1].path(), &database, "node-b");
    let mut c = node(dirs[2].path(), &database, "node-c");
    b.token = a.token.clone();
    c.token = a.token.clone();
    let Some(balancer) = Balancer::start(&[("a", &a), ("b", &b), ("c", &c)]) else {
        return;
    };

    const DEVICES: usize = 18;
    let mut terminals = Vec::new();
    let (tx, mut events) = mpsc::channel(1024);
    let mut fleet = Vec::new();
    for i in 0..DEVICES {
        let bound = a.approved_terminal_with_device(&format!("SB-LB-{i}")).await;
        terminals.push(bound.terminal.clone());
        let mut options = sim_options(
            balancer.port,
            bound.ca_pem.clone(),
            Arc::new(AtomicU8::new(0)),
        );
        options.keep_alive = Duration::from_secs(2);
        fleet.push(tokio::spawn(run_device(
            bound.device.clone(),
            options,
            tx.clone(),
        )));
    }
    let mut heard = Heard::default();
    hear_until(
        &mut events,
        &mut heard,
        "the fleet connects through HAProxy",
        Duration::from_secs(60),
        |h| h.connects >= DEVICES,
    )
    .await;
    nodes_until(&a, "every node holds some of the fleet", |items| {
        items.len() == 3
            && items
                .iter()
                .all(|n| n["devices_held"].as_i64().unwrap_or(0) > 0)
            && items
                .iter()
                .map(|n| n["devices_held"].as_i64().unwrap_or(0))
                .sum::<i64>()
                == DEVICES as i64
    })
    .await;

    // Callbacks on every node; node a dies (SIGKILL) while their announcements go out.
    let mut paid = pay_round(&[&a, &b, &c], &terminals, "KILL").await;
    let killed_at = std::time::Instant::now();
    a.kill_hard();
    // More callbacks while a's devices come back through the balancer to b and c.
    paid.extend(pay_round(&[&b, &c], &terminals, "AFTER").await);
    hear_until(
        &mut events,
        &mut heard,
        "every paid transaction spoken",
        Duration::from_secs(90),
        |h| paid.iter().all(|t| h.spoken.contains_key(t)),
    )
    .await;
    nodes_until(&b, "a's devices are back on b and c", |items| {
        let held = |id| {
            node_named(items, id)
                .and_then(|n| n["devices_held"].as_i64())
                .unwrap_or(0)
        };
        held("node-b") + held("node-c") == DEVICES as i64
    })
    .await;
    eprintln!(
        "node a killed: {} transactions spoken, {} duplicate receipts, every device back within {:?}",
        paid.len(),
        heard.duplicates,
        killed_at.elapsed()
    );
    assert!(heard.spoken.values().all(|n| *n == 1), "each spoken once");

    // Node b pauses (SIGSTOP) right after accepting callbacks, past its devices' keepalive:
    // they move to c, which speaks what b had not; b, resumed, sends nothing stale.
    let before_pause = heard.duplicates;
    let round = pay_round(&[&b], &terminals, "PAUSE").await;
    b.signal("STOP");
    let paused_at = std::time::Instant::now();
    hear_until(
        &mut events,
        &mut heard,
        "b's work spoken by c while b sleeps",
        Duration::from_secs(90),
        |h| round.iter().all(|t| h.spoken.contains_key(t)),
    )
    .await;
    nodes_until(&c, "c holds the whole fleet while b sleeps", |items| {
        node_named(items, "node-c").is_some_and(|n| n["devices_held"] == DEVICES as i64)
    })
    .await;
    eprintln!(
        "node b paused: its devices spoken by c within {:?}",
        paused_at.elapsed()
    );
    b.signal("CONT");
    // b wakes up: it heartbeats, ends the sessions c took over, and sends nothing.
    let after = pay_round(&[&c], &terminals, "RESUMED").await;
    hear_until(
        &mut events,
        &mut heard,
        "payments after b resumed",
        Duration::from_secs(60),
        |h| after.iter().all(|t| h.spoken.contains_key(t)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    while let Ok(event) = events.try_recv() {
        heard.take(event);
    }
    eprintln!(
        "node b resumed: {} duplicate receipts since the pause (before it: {before_pause})",
        heard.duplicates - before_pause
    );
    assert!(heard.spoken.values().all(|n| *n == 1), "each spoken once");
    let all: Vec<&String> = paid.iter().chain(&round).chain(&after).collect();
    let c_ref = &c;
    let all_ref = &all;
    eventually_within(
        "every announcement recorded delivered, once",
        Duration::from_secs(30),
        || async move {
            let mut unsettled = Vec::new();
            for transaction in all_ref {
                let (_, list) = c_ref
                    .get(&format!("/api/v1/transactions/{transaction}/announcements"))
                    .await;
                let list = list.as_array().cloned().unwrap_or_default();
                if list.len() != 1 || list[0]["status"] != "delivered" {
                    unsettled.push((transaction.to_string(), list));
                }
            }
            if unsettled.is_empty() {
                Ok(Some(()))
            } else {
                Err(unsettled)
            }
        },
    )
    .await;
    for device in fleet {
        device.abort();
    }
    drop(balancer);
}
