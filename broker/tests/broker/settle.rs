//! A device's QoS 1 uplink is PUBACKed only once the gateway settles it (its effect is
//! durable), in the order the PUBLISHes came (MQTT 3.1.1 §4.6); one dropped unsettled, or
//! not settled in time, gets no PUBACK and the connection closes, so the client re-sends it.

use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Packet, PubAck};

use crate::helpers::{RawClient, TestBroker};

/// Sends PINGREQ and expects PINGRESP as the next packet: everything the broker had to say
/// about the packets sent before it (a PUBACK, say) would have come first.
async fn nothing_else_owed<S>(client: &mut RawClient<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    client.send(&Packet::PingReq).await;
    match client.recv().await {
        Some(Packet::PingResp) => {}
        other => panic!("expected only PINGRESP, got {other:?}"),
    }
}

async fn expect_puback<S>(client: &mut RawClient<S>) -> u16
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match client.recv().await {
        Some(Packet::PubAck(PubAck { pkid })) => pkid,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn a_device_qos1_publish_is_pubacked_only_once_the_gateway_settles_it() {
    let mut t = TestBroker::start_settling_by_hand(|_| {}).await;
    let mut a = t.device("a").await;
    a.publish("devices/a/up/ack", QoS::AtLeastOnce, 7, b"{}")
        .await;
    let mut uplink = t.next_uplink().await;
    assert_eq!(uplink.topic, "devices/a/up/ack");
    let settle = uplink
        .settle
        .take()
        .expect("a QoS 1 uplink carries a settle handle");
    nothing_else_owed(&mut a).await;

    settle.send(()).unwrap();
    assert_eq!(expect_puback(&mut a).await, 7);
}

#[tokio::test]
async fn pubacks_leave_in_the_order_the_publishes_came_whatever_order_they_settle_in() {
    let mut t = TestBroker::start_settling_by_hand(|_| {}).await;
    let mut a = t.device("a").await;
    for pkid in 1..=3 {
        a.publish("devices/a/up/ack", QoS::AtLeastOnce, pkid, b"{}")
            .await;
    }
    // The connection kept reading: all three reached the gateway with none settled.
    let mut settles = Vec::new();
    for _ in 0..3 {
        settles.push(t.next_uplink().await.settle.take().unwrap());
    }
    let first = settles.remove(0);
    for later in settles {
        later.send(()).unwrap();
    }
    // The later two are settled, but their PUBACKs wait behind the first one's.
    nothing_else_owed(&mut a).await;

    first.send(()).unwrap();
    assert_eq!(expect_puback(&mut a).await, 1);
    assert_eq!(expect_puback(&mut a).await, 2);
    assert_eq!(expect_puback(&mut a).await, 3);
    // A publish the gateway records nothing for (QoS 0) owes nothing and waits for nothing.
    a.publish("devices/a/up/heartbeat", QoS::AtMostOnce, 0, b"{}")
        .await;
    assert!(t.next_uplink().await.settle.is_none());
    nothing_else_owed(&mut a).await;
}

#[tokio::test]
async fn an_uplink_dropped_unsettled_gets_no_puback_and_its_connection_closes() {
    let mut t = TestBroker::start_settling_by_hand(|_| {}).await;
    let mut a = t.device("a").await;
    a.publish("devices/a/up/ack", QoS::AtLeastOnce, 1, b"{}")
        .await;
    a.publish("devices/a/up/ack", QoS::AtLeastOnce, 2, b"{}")
        .await;
    let first = t.next_uplink().await;
    let mut second = t.next_uplink().await;
    // The second is settled; the first is dropped (the gateway could not record it).
    second.settle.take().unwrap().send(()).unwrap();
    drop(first);
    // No PUBACK at all (the second's would come after the first's, which never comes):
    // the client re-sends both after it reconnects.
    while let Some(packet) = a.recv().await {
        assert!(
            !matches!(packet, Packet::PubAck(_)),
            "no PUBACK for an unsettled uplink or those behind it: {packet:?}"
        );
    }
}

#[tokio::test]
async fn an_uplink_not_settled_within_the_settle_timeout_closes_its_connection_unacknowledged() {
    let mut t = TestBroker::start_settling_by_hand(|config| {
        config.limits.settle_timeout = Duration::from_millis(200);
    })
    .await;
    let mut a = t.device("a").await;
    a.publish("devices/a/up/ack", QoS::AtLeastOnce, 1, b"{}")
        .await;
    // Held, never settled.
    let _held = t.next_uplink().await;
    while let Some(packet) = a.recv().await {
        assert!(
            !matches!(packet, Packet::PubAck(_)),
            "no PUBACK for an unsettled uplink: {packet:?}"
        );
    }
}

#[tokio::test]
async fn past_the_cap_of_unsettled_uplinks_the_connection_waits_for_the_oldest() {
    let mut t = TestBroker::start_settling_by_hand(|config| {
        config.limits.max_unsettled_uplinks = 2;
    })
    .await;
    let mut a = t.device("a").await;
    for pkid in 1..=3 {
        a.publish("devices/a/up/ack", QoS::AtLeastOnce, pkid, b"{}")
            .await;
    }
    let mut first = t.next_uplink().await;
    let _second = t.next_uplink().await;
    // The third is not read while two are owed.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), t.uplinks.recv())
            .await
            .is_err(),
        "a third uplink was read past the cap"
    );
    first.settle.take().unwrap().send(()).unwrap();
    assert_eq!(expect_puback(&mut a).await, 1);
    let third = t.next_uplink().await;
    assert!(third.settle.is_some());
}

#[tokio::test]
async fn a_service_principals_publish_is_pubacked_on_routing() {
    let t = TestBroker::start_settling_by_hand(|_| {}).await;
    let mut ops = t.raw().await;
    let ack = ops.connect_as("ops", "ops-secret", |_| {}).await;
    assert_eq!(ack.code, rumqttc::mqttbytes::v4::ConnectReturnCode::Success);
    ops.publish("ops/ops/x", QoS::AtLeastOnce, 4, b"hi").await;
    assert_eq!(expect_puback(&mut ops).await, 4);
}
