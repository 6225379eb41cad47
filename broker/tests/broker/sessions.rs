//! Session behaviour: takeover and wills, persistent sessions, retransmission, keepalive,
//! retained messages, expiry.

use std::time::Duration;

use gema_broker::{DeliveryOutcome, DisconnectReason, PresenceChange};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, PubRel, Subscribe,
};

use crate::helpers::{TestBroker, WAIT, downlink, secret, will};

#[tokio::test]
async fn takeover_fires_the_old_connections_will_only() {
    let mut t = TestBroker::start().await;
    let mut old = t
        .device_with("a", |c| {
            c.last_will = Some(will("devices/a/up/status", "old died"))
        })
        .await;
    let mut new = t
        .device_with("a", |c| {
            c.last_will = Some(will("devices/a/up/status", "new died"))
        })
        .await;
    old.expect_closed().await;

    let up = t.next_uplink().await;
    assert!(up.last_will);
    assert_eq!(&up.payload[..], b"old died");

    // Presence stays in order: the old connection leaves before the new one arrives.
    let changes: Vec<PresenceChange> = [
        t.next_presence().await,
        t.next_presence().await,
        t.next_presence().await,
    ]
    .into_iter()
    .map(|e| e.change)
    .collect();
    assert!(matches!(changes[0], PresenceChange::Connected { .. }));
    assert_eq!(
        changes[1],
        PresenceChange::Disconnected {
            reason: DisconnectReason::Takeover
        }
    );
    assert!(matches!(changes[2], PresenceChange::Connected { .. }));

    // The new connection ends cleanly: its will is discarded.
    new.send(&Packet::Disconnect).await;
    new.expect_closed().await;
    let mut b = t.device("b").await;
    b.publish("devices/b/up/marker", QoS::AtLeastOnce, 1, b"marker")
        .await;
    let up = t.next_uplink().await;
    assert_eq!(
        (up.device_id.as_str(), &up.payload[..]),
        ("b", &b"marker"[..])
    );
}

#[tokio::test]
async fn an_abnormal_close_fires_the_will_to_subscribers_too() {
    let mut t = TestBroker::start().await;
    let mut m = t.raw().await;
    m.connect_as("mon", "monitor-secret", |c| {
        c.set_login("monitor", "monitor-secret");
    })
    .await;
    m.subscribe(1, &[("devices/+/up/#", QoS::AtLeastOnce)])
        .await;
    let a = t
        .device_with("a", |c| {
            c.last_will = Some(will("devices/a/up/status", "offline"))
        })
        .await;
    drop(a);
    let p = m.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("devices/a/up/status", &b"offline"[..])
    );
    assert!(t.next_uplink().await.last_will);
}

#[tokio::test]
async fn qos1_and_qos2_to_an_offline_persistent_session_arrive_on_reconnect() {
    let t = TestBroker::start().await;
    let mut a = t.device_with("a", |c| c.clean_session = false).await;
    a.subscribe(1, &[("devices/a/down/#", QoS::ExactlyOnce)])
        .await;
    a.send(&Packet::Disconnect).await;
    a.expect_closed().await;

    let r1 = t
        .handle
        .publish(downlink("a", "devices/a/down/one", "q1", QoS::AtLeastOnce))
        .unwrap();
    let r2 = t
        .handle
        .publish(downlink("a", "devices/a/down/two", "q2", QoS::ExactlyOnce))
        .unwrap();
    let r0 = t
        .handle
        .publish(downlink("a", "devices/a/down/zero", "q0", QoS::AtMostOnce))
        .unwrap();
    assert_eq!(
        r1.outcome().await,
        DeliveryOutcome::Offline { queued: true }
    );
    assert_eq!(
        r2.outcome().await,
        DeliveryOutcome::Offline { queued: true }
    );
    assert_eq!(
        r0.outcome().await,
        DeliveryOutcome::Offline { queued: false }
    );

    let mut a = t.raw().await;
    let ack = a
        .connect_as("a", &crate::helpers::secret("a"), |c| {
            c.clean_session = false
        })
        .await;
    assert!(ack.session_present);
    let p1 = a.expect_publish().await;
    assert_eq!((p1.qos, &p1.payload[..]), (QoS::AtLeastOnce, &b"q1"[..]));
    a.send(&Packet::PubAck(PubAck::new(p1.pkid))).await;
    let p2 = a.expect_publish().await;
    assert_eq!((p2.qos, &p2.payload[..]), (QoS::ExactlyOnce, &b"q2"[..]));
    a.send(&Packet::PubRec(PubRec::new(p2.pkid))).await;
    assert_eq!(a.recv().await, Some(Packet::PubRel(PubRel::new(p2.pkid))));
    a.send(&Packet::PubComp(PubComp::new(p2.pkid))).await;
    a.ping().await;
}

#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_and_the_receipt_waits_for_the_ack() {
    let t = TestBroker::start().await;
    let mut a = t.device_with("a", |c| c.clean_session = false).await;
    a.subscribe(1, &[("devices/a/down/#", QoS::AtLeastOnce)])
        .await;
    let receipt = t
        .handle
        .publish(downlink(
            "a",
            "devices/a/down/pay",
            "Rp 10.000",
            QoS::AtLeastOnce,
        ))
        .unwrap();
    let first = a.expect_publish().await;
    assert!(!first.dup);
    drop(a); // no PUBACK

    let mut a = t.device_with("a", |c| c.clean_session = false).await;
    let again = a.expect_publish().await;
    assert!(again.dup);
    assert_eq!(again.pkid, first.pkid);
    assert_eq!(again.payload, first.payload);
    a.send(&Packet::PubAck(PubAck::new(again.pkid))).await;
    assert_eq!(
        tokio::time::timeout(WAIT, receipt.outcome()).await.unwrap(),
        DeliveryOutcome::Acknowledged
    );
}

#[tokio::test]
async fn qos2_from_a_device_is_delivered_once_despite_retransmission() {
    let mut t = TestBroker::start().await;
    let mut a = t.device("a").await;
    a.publish("devices/a/up/sale", QoS::ExactlyOnce, 9, b"once")
        .await;
    assert_eq!(a.recv().await, Some(Packet::PubRec(PubRec::new(9))));
    let mut dup = rumqttc::mqttbytes::v4::Publish::new(
        "devices/a/up/sale",
        QoS::ExactlyOnce,
        b"once".to_vec(),
    );
    dup.pkid = 9;
    dup.dup = true;
    a.send(&Packet::Publish(dup)).await;
    assert_eq!(a.recv().await, Some(Packet::PubRec(PubRec::new(9))));
    a.send(&Packet::PubRel(PubRel::new(9))).await;
    assert_eq!(a.recv().await, Some(Packet::PubComp(PubComp::new(9))));
    a.publish("devices/a/up/next", QoS::AtLeastOnce, 10, b"next")
        .await;
    assert_eq!(&t.next_uplink().await.payload[..], b"once");
    assert_eq!(&t.next_uplink().await.payload[..], b"next");
}

#[tokio::test]
async fn keepalive_expiry_closes_a_silent_client() {
    let mut t = TestBroker::start().await;
    let mut a = t.device_with("a", |c| c.keep_alive = 1).await;
    assert!(matches!(
        t.next_presence().await.change,
        PresenceChange::Connected { .. }
    ));
    a.expect_closed().await;
    assert_eq!(
        t.next_presence().await.change,
        PresenceChange::Disconnected {
            reason: DisconnectReason::KeepaliveTimeout
        }
    );
}

#[tokio::test]
async fn retained_downlinks_reach_a_later_subscriber() {
    let t = TestBroker::start().await;
    let mut d = downlink("a", "devices/a/down/config", "volume=7", QoS::AtLeastOnce);
    d.retain = true;
    assert_eq!(
        t.handle.publish(d).unwrap().outcome().await,
        DeliveryOutcome::Offline { queued: false }
    );
    let mut a = t.device("a").await;
    a.subscribe(1, &[("devices/a/down/#", QoS::AtLeastOnce)])
        .await;
    let p = a.expect_publish().await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"volume=7");
    // B sees nothing of A's retained messages.
    let mut b = t.device("b").await;
    b.subscribe(1, &[("devices/b/down/#", QoS::AtLeastOnce)])
        .await;
    b.ping().await;
}

#[tokio::test]
async fn a_clean_session_discards_what_a_persistent_one_kept() {
    let t = TestBroker::start().await;
    let mut a = t.device_with("a", |c| c.clean_session = false).await;
    a.subscribe(1, &[("devices/a/down/#", QoS::AtLeastOnce)])
        .await;
    a.send(&Packet::Disconnect).await;
    a.expect_closed().await;
    t.handle
        .publish(downlink(
            "a",
            "devices/a/down/x",
            "queued",
            QoS::AtLeastOnce,
        ))
        .unwrap();
    let mut a = t.raw().await;
    let ack = a
        .connect_as("a", &crate::helpers::secret("a"), |_| {})
        .await;
    assert!(!ack.session_present);
    a.ping().await;
    let r = t
        .handle
        .publish(downlink("a", "devices/a/down/x", "again", QoS::AtLeastOnce))
        .unwrap();
    assert_eq!(r.outcome().await, DeliveryOutcome::NotSubscribed);
}

#[tokio::test]
async fn an_abandoned_persistent_session_expires() {
    let t = TestBroker::start_with(|c| c.sessions.expiry = Duration::from_secs(1)).await;
    let mut a = t.device_with("a", |c| c.clean_session = false).await;
    a.subscribe(1, &[("devices/a/down/#", QoS::AtLeastOnce)])
        .await;
    a.send(&Packet::Disconnect).await;
    a.expect_closed().await;
    let expired = async {
        loop {
            let r = t
                .handle
                .publish(downlink("a", "devices/a/down/x", "probe", QoS::AtLeastOnce))
                .unwrap();
            if r.outcome().await == (DeliveryOutcome::Offline { queued: false }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(WAIT, expired).await.unwrap();
}

#[tokio::test]
async fn the_queue_of_an_offline_session_is_bounded() {
    let t = TestBroker::start_with(|c| c.sessions.max_queued = 2).await;
    let mut a = t.device_with("a", |c| c.clean_session = false).await;
    a.subscribe(1, &[("devices/a/down/#", QoS::AtLeastOnce)])
        .await;
    a.send(&Packet::Disconnect).await;
    a.expect_closed().await;
    for i in 0..4 {
        t.handle
            .publish(downlink(
                "a",
                "devices/a/down/x",
                &format!("m{i}"),
                QoS::AtLeastOnce,
            ))
            .unwrap();
    }
    let mut a = t.device_with("a", |c| c.clean_session = false).await;
    let first = a.expect_publish().await;
    let second = a.expect_publish().await;
    assert_eq!(
        (&first.payload[..], &second.payload[..]),
        (&b"m2"[..], &b"m3"[..])
    );
    a.send(&Packet::PubAck(PubAck::new(first.pkid))).await;
    a.send(&Packet::PubAck(PubAck::new(second.pkid))).await;
    a.ping().await;
}

/// A login slower than its client's patience (a registry under a connect storm): the
/// client gives up and closes. The broker drops that login instead of opening a session
/// nobody is on: no presence change, no connected device.
#[tokio::test]
async fn a_client_that_closes_while_its_login_waits_gets_no_session() {
    let mut t = TestBroker::start().await;
    *t.registry.login_delay.lock().unwrap() = Duration::from_millis(600);
    let mut c = t.raw().await;
    let mut connect = Connect::new("a");
    connect.set_login("a", secret("a"));
    c.send(&Packet::Connect(connect)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(c);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        t.handle.connected_devices().is_empty(),
        "no session for the client that left"
    );
    match t.presence.try_recv() {
        Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {}
        other => panic!("no presence change expected, got {other:?}"),
    }
}

/// Packets a client sends after CONNECT while its login is pending are kept and answered
/// once the session starts (MQTT 3.1.1 §3.1.4 lets a client send before CONNACK).
#[tokio::test]
async fn packets_pipelined_behind_a_slow_login_are_answered() {
    let t = TestBroker::start().await;
    *t.registry.login_delay.lock().unwrap() = Duration::from_millis(300);
    let mut c = t.raw().await;
    let mut connect = Connect::new("a");
    connect.keep_alive = 60;
    connect.set_login("a", secret("a"));
    let mut subscribe = Subscribe::new("devices/a/down/#", QoS::AtLeastOnce);
    subscribe.pkid = 7;
    c.send(&Packet::Connect(connect)).await;
    c.send(&Packet::Subscribe(subscribe)).await;
    match c.recv().await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    match c.recv().await {
        Some(Packet::SubAck(a)) => assert_eq!(a.pkid, 7),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    assert_eq!(
        t.registry.logins.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

/// A service principal's client ids are its own: another principal naming the same client
/// id neither ends the first one's connection nor resumes its persistent session.
#[tokio::test]
async fn another_principal_with_the_same_client_id_gets_a_session_of_its_own() {
    let t = TestBroker::start().await;
    let mut monitor = t.raw().await;
    let ack = monitor
        .connect_as("shared-id", "monitor-secret", |c| {
            c.set_login("monitor", "monitor-secret");
            c.clean_session = false;
        })
        .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert_eq!(
        monitor
            .subscribe(1, &[("devices/+/up/#", QoS::AtLeastOnce)])
            .await,
        vec![rumqttc::mqttbytes::v4::SubscribeReasonCode::Success(
            QoS::AtLeastOnce
        )]
    );

    let mut ops = t.raw().await;
    let ack = ops
        .connect_as("shared-id", "ops-secret", |c| {
            c.set_login("ops", "ops-secret");
            c.clean_session = false;
        })
        .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(
        !ack.session_present,
        "ops must not resume monitor's persistent session"
    );

    // The first connection is still live and still gets what it subscribed to.
    monitor.ping().await;
    let mut a = t.device("a").await;
    a.publish("devices/a/up/status", QoS::AtLeastOnce, 1, b"hello")
        .await;
    let p = monitor.expect_publish().await;
    assert_eq!(&p.payload[..], b"hello");
    ops.ping().await;

    // The same principal with the same client id still takes its own session over.
    let mut again = t.raw().await;
    let ack = again
        .connect_as("shared-id", "monitor-secret", |c| {
            c.set_login("monitor", "monitor-secret");
            c.clean_session = false;
        })
        .await;
    assert!(ack.session_present);
    monitor.expect_closed().await;
}
