//! Presence under a connect storm: a `PresenceFeed` whose channel overflows still ends with
//! every device's actual state.

use std::collections::{HashMap, HashSet};

use gema_broker::{PresenceChange, PresenceEvent};
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::helpers::{RawClient, TestBroker, WAIT, secret, tls_connect};

type Client = RawClient<tokio_rustls::client::TlsStream<TcpStream>>;

/// Connects every one of `ids` at once, each over its own TLS connection.
async fn connect_all(t: &TestBroker, ids: &[String]) -> HashMap<String, Client> {
    let mut set = JoinSet::new();
    for id in ids {
        let (addr, ca, id) = (t.broker.tls_addr(), t.ca_pem.clone(), id.clone());
        set.spawn(async move {
            let mut c = RawClient::new(tls_connect(addr, &ca).await);
            let ack = c.connect_as(&id, &secret(&id), |_| {}).await;
            assert_eq!(ack.code, ConnectReturnCode::Success, "{id} connects");
            (id, c)
        });
    }
    let mut clients = HashMap::new();
    while let Some(joined) = set.join_next().await {
        let (id, c) = joined.unwrap();
        clients.insert(id, c);
    }
    clients
}

/// Whether what the feed reported last per device is the broker's session set: every live
/// device reported connected under its live connection, every other one not connected.
fn settled(reported: &HashMap<String, PresenceEvent>, t: &TestBroker) -> bool {
    let live: HashSet<(String, u64)> = t
        .handle
        .connected_devices()
        .into_iter()
        .map(|d| (d.device_id, d.connection))
        .collect();
    let reported_live: HashSet<(String, u64)> = reported
        .values()
        .filter(|e| matches!(e.change, PresenceChange::Connected { .. }))
        .map(|e| (e.device_id.clone(), e.connection))
        .collect();
    live == reported_live
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_falls_behind_a_connect_storm_ends_with_every_devices_state() {
    let ids: Vec<String> = (0..300).map(|i| format!("storm-{i}")).collect();
    let t = TestBroker::start_with_devices(&ids, |c| c.limits.presence_capacity = 8).await;
    let mut feed = t.handle.presence_feed();

    // Nobody reads the feed while 300 devices connect, a third leave and half of those
    // come back: 8 events of room, 500 events.
    let mut clients = connect_all(&t, &ids).await;
    let leaving: Vec<String> = ids.iter().step_by(3).cloned().collect();
    for id in &leaving {
        let mut c = clients.remove(id).unwrap();
        c.send(&Packet::Disconnect).await;
        c.expect_closed().await;
    }
    let returning: Vec<String> = leaving.iter().step_by(2).cloned().collect();
    clients.extend(connect_all(&t, &returning).await);
    assert_eq!(t.handle.connected_devices().len(), 250);

    let mut reported: HashMap<String, PresenceEvent> = HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !settled(&reported, &t) {
        let batch = tokio::time::timeout_at(deadline, feed.recv_batch(64))
            .await
            .expect("the feed reports every device's state in time");
        assert!(!batch.is_empty(), "the broker is still running");
        for event in batch {
            reported.insert(event.device_id.clone(), event);
        }
    }
    let (resyncs, missed) = feed.lag_counts();
    assert!(resyncs > 0 && missed > 0, "the feed did fall behind");
    // Devices that came back are reported under their new connection: a reconnect is a
    // `Connected` even when the disconnect before it was missed.
    for id in &returning {
        assert!(matches!(
            reported[id].change,
            PresenceChange::Connected { .. }
        ));
    }
    drop(clients);
}

#[tokio::test]
async fn a_feed_that_keeps_up_reports_every_event_in_order() {
    let mut t = TestBroker::start().await;
    let mut feed = t.handle.presence_feed();
    let mut a = t.device("a").await;
    a.send(&Packet::Disconnect).await;
    a.expect_closed().await;
    let _a = t.device("a").await;
    let mut changes = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(WAIT, feed.recv())
            .await
            .expect("an event in time")
            .expect("the broker is running");
        changes.push(event);
    }
    assert!(matches!(
        changes[0].change,
        PresenceChange::Connected { .. }
    ));
    assert!(matches!(
        changes[1].change,
        PresenceChange::Disconnected { .. }
    ));
    assert!(matches!(
        changes[2].change,
        PresenceChange::Connected { .. }
    ));
    assert_eq!(changes[0].connection, changes[1].connection);
    assert!(changes[2].connection > changes[1].connection);
    assert_eq!(feed.lag_counts(), (0, 0));
    // The observers' channel saw the same.
    assert_eq!(t.next_presence().await.connection, changes[0].connection);
}
