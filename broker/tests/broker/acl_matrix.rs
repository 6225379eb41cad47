//! The ACL matrix with devices A and B: what A may and may not touch.

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, SubscribeReasonCode};

use crate::helpers::{TestBroker, downlink, secret, will};

#[tokio::test]
async fn a_cannot_subscribe_outside_its_down_namespace() {
    let t = TestBroker::start().await;
    let mut a = t.device("a").await;
    let refused = [
        "devices/b/down/#",
        "devices/b/#",
        "#",
        "+/b/down/#",
        "devices/+/down/#",
        "devices/+/up/#",
        "devices/a/#",
        "devices/a/up/#",
        "$SYS/#",
        "$share/g/devices/b/#",
        "$share/g/devices/a/down/#",
    ];
    for (i, filter) in refused.iter().enumerate() {
        let codes = a
            .subscribe(i as u16 + 1, &[(filter, QoS::AtLeastOnce)])
            .await;
        assert_eq!(codes, vec![SubscribeReasonCode::Failure], "{filter}");
    }
    // Mixed in one SUBSCRIBE: each filter gets its own code.
    let codes = a
        .subscribe(
            100,
            &[
                ("devices/a/down/#", QoS::AtLeastOnce),
                ("devices/b/down/#", QoS::AtLeastOnce),
                ("devices/a/down/+", QoS::ExactlyOnce),
            ],
        )
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::ExactlyOnce),
        ]
    );
    // A refused subscription does not close the connection.
    a.ping().await;
}

#[tokio::test]
async fn a_receives_its_own_downlinks_and_not_bs() {
    let t = TestBroker::start().await;
    let mut a = t.device("a").await;
    let mut b = t.device("b").await;
    a.subscribe(1, &[("devices/a/down/#", QoS::AtLeastOnce)])
        .await;
    b.subscribe(1, &[("devices/b/down/#", QoS::AtLeastOnce)])
        .await;

    t.handle
        .publish(downlink(
            "b",
            "devices/b/down/announce",
            "for b",
            QoS::AtLeastOnce,
        ))
        .unwrap();
    t.handle
        .publish(downlink(
            "a",
            "devices/a/down/announce",
            "for a",
            QoS::AtLeastOnce,
        ))
        .unwrap();
    let p = a.expect_publish().await;
    assert_eq!(p.topic, "devices/a/down/announce");
    assert_eq!(&p.payload[..], b"for a");
    let p = b.expect_publish().await;
    assert_eq!(&p.payload[..], b"for b");
}

#[tokio::test]
async fn as_publish_into_bs_namespace_is_never_delivered_and_closes_a() {
    let mut t = TestBroker::start().await;
    let mut b = t.device("b").await;
    b.subscribe(1, &[("devices/b/down/#", QoS::AtLeastOnce)])
        .await;

    let mut a = t.device("a").await;
    a.publish("devices/b/down/announce", QoS::AtLeastOnce, 1, b"spoofed")
        .await;
    a.expect_closed().await;

    let mut a = t.device("a").await;
    a.publish("devices/b/up/event", QoS::AtLeastOnce, 1, b"spoofed uplink")
        .await;
    a.expect_closed().await;

    let mut a = t.device("a").await;
    a.publish("devices/a/down/announce", QoS::AtMostOnce, 0, b"to itself")
        .await;
    a.expect_closed().await;

    // A marker sent after the spoofing attempts is the first thing B gets, and the first
    // uplink the gateway sees is A's legitimate one.
    t.handle
        .publish(downlink(
            "b",
            "devices/b/down/marker",
            "marker",
            QoS::AtLeastOnce,
        ))
        .unwrap();
    assert_eq!(&b.expect_publish().await.payload[..], b"marker");
    let mut a = t.device("a").await;
    a.publish("devices/a/up/event", QoS::AtLeastOnce, 1, b"legit")
        .await;
    let up = t.next_uplink().await;
    assert_eq!(up.device_id, "a");
    assert_eq!(up.topic, "devices/a/up/event");
    assert_eq!(&up.payload[..], b"legit");
}

#[tokio::test]
async fn a_will_aimed_at_bs_namespace_is_refused_at_connect() {
    let t = TestBroker::start().await;
    for topic in ["devices/b/up/status", "devices/a/down/x", "$SYS/x"] {
        let mut c = t.raw().await;
        let ack = c
            .connect_as("a", &secret("a"), |c| {
                c.last_will = Some(will(topic, "bye"))
            })
            .await;
        assert_eq!(ack.code, ConnectReturnCode::NotAuthorized, "{topic}");
        c.expect_closed().await;
    }
    let mut c = t.raw().await;
    let ack = c
        .connect_as("a", &secret("a"), |c| {
            c.last_will = Some(will("devices/a/up/status", "bye"))
        })
        .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
}

#[tokio::test]
async fn connack_codes_follow_the_spec() {
    let t = TestBroker::start().await;

    let mut c = t.raw().await;
    let ack = c.connect_as("a", "wrong", |_| {}).await;
    assert_eq!(ack.code, ConnectReturnCode::BadUserNamePassword);
    c.expect_closed().await;

    // Client id must equal the device id, so B cannot take over A's session.
    let mut c = t.raw().await;
    let ack = c
        .connect_as("b", &secret("b"), |c| c.client_id = "a".into())
        .await;
    assert_eq!(ack.code, ConnectReturnCode::BadClientId);

    let mut c = t.raw().await;
    let ack = c.connect_as("a", &secret("a"), |c| c.login = None).await;
    assert_eq!(ack.code, ConnectReturnCode::BadUserNamePassword);

    t.registry.revoked.lock().unwrap().push("c".into());
    let mut c = t.raw().await;
    let ack = c.connect_as("c", &secret("c"), |_| {}).await;
    assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);

    // MQTT 3.1 (and, for now, MQTT 5) get "unacceptable protocol version".
    let mut c = t.raw().await;
    c.send_bytes(&[
        0x10, 0x11, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3c, 0x00,
        0x03, b'a', b'b', b'c',
    ])
    .await;
    match c.recv().await {
        Some(rumqttc::mqttbytes::v4::Packet::ConnAck(a)) => {
            assert_eq!(a.code, ConnectReturnCode::RefusedProtocolVersion)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_device() {
    let t = TestBroker::start_with(|c| {
        c.failed_logins.per_device = 2;
        c.failed_logins.per_address = 100;
    })
    .await;
    for _ in 0..2 {
        let mut c = t.raw().await;
        assert_eq!(
            c.connect_as("a", "wrong", |_| {}).await.code,
            ConnectReturnCode::BadUserNamePassword
        );
    }
    // Now even the right password is refused without reaching the registry.
    let mut c = t.raw().await;
    assert_eq!(
        c.connect_as("a", &secret("a"), |_| {}).await.code,
        ConnectReturnCode::NotAuthorized
    );
    // Another device from the same address is not affected.
    let mut c = t.raw().await;
    assert_eq!(
        c.connect_as("b", &secret("b"), |_| {}).await.code,
        ConnectReturnCode::Success
    );
}

#[tokio::test]
async fn a_service_principal_gets_only_its_rules() {
    let t = TestBroker::start().await;
    let mut m = t.raw().await;
    let ack = m
        .connect_as("monitor-1", "monitor-secret", |c| {
            c.set_login("monitor", "monitor-secret");
        })
        .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let codes = m
        .subscribe(
            1,
            &[
                ("devices/+/up/#", QoS::AtMostOnce),
                ("devices/+/down/#", QoS::AtMostOnce),
                ("#", QoS::AtMostOnce),
            ],
        )
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure
        ]
    );
    let mut a = t.device("a").await;
    a.publish("devices/a/up/event", QoS::AtMostOnce, 0, b"seen by monitor")
        .await;
    let p = m.expect_publish().await;
    assert_eq!(p.topic, "devices/a/up/event");
    // The monitor may not publish.
    m.publish("devices/a/down/x", QoS::AtMostOnce, 0, b"no")
        .await;
    m.expect_closed().await;
}

#[tokio::test]
async fn a_configured_service_password_is_checked_by_the_broker() {
    let t = TestBroker::start().await;
    let mut c = t.raw().await;
    let ack = c
        .connect_as("ops-1", "wrong", |c| {
            c.set_login("ops", "wrong");
        })
        .await;
    assert_eq!(ack.code, ConnectReturnCode::BadUserNamePassword);

    let mut c = t.raw().await;
    let ack = c
        .connect_as("ops-1", "ops-secret", |c| {
            c.set_login("ops", "ops-secret");
        })
        .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    // `%c` is its client id: it may use ops/ops-1/… and nothing else.
    let codes = c
        .subscribe(
            1,
            &[
                ("ops/ops-1/#", QoS::AtMostOnce),
                ("ops/ops-2/#", QoS::AtMostOnce),
                ("devices/a/down/#", QoS::AtMostOnce),
            ],
        )
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure
        ]
    );
    c.publish("ops/ops-1/ping", QoS::AtMostOnce, 0, b"self")
        .await;
    let p = c.expect_publish().await;
    assert_eq!(p.topic, "ops/ops-1/ping");
}
