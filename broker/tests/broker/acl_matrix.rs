//! The ACL matrix with devices A and B: what A may and may not touch.

use std::time::Duration;

use gema_broker::{DenyAction, DisconnectReason, PresenceChange, Rule, ServicePrincipal};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnectReturnCode, Packet, PubAck, PubComp, PubRec, PubRel, SubscribeReasonCode,
};

use crate::helpers::{Metrics, TestBroker, downlink, secret, will};

#[tokio::test]
async fn a_cannot_subscribe_outside_its_down_namespace() {
    let metrics = Metrics::capture();
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
    assert_eq!(
        metrics.value("gema_acl_denied_total", &[("kind", "subscribe")]),
        (refused.len() + 1) as f64
    );
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
async fn as_publish_into_bs_namespace_is_acknowledged_never_delivered_and_counted() {
    let metrics = Metrics::capture();
    let mut t = TestBroker::start().await;
    let mut b = t.device("b").await;
    b.subscribe(1, &[("devices/b/down/#", QoS::AtLeastOnce)])
        .await;

    let mut a = t.device("a").await;
    // QoS 0: no answer; the connection stays.
    a.publish("devices/a/down/announce", QoS::AtMostOnce, 0, b"to itself")
        .await;
    a.ping().await;
    // QoS 1: PUBACK, as if accepted (MQTT 3.1.1 has no negative PUBACK).
    a.publish("devices/b/down/announce", QoS::AtLeastOnce, 7, b"spoofed")
        .await;
    assert_eq!(a.recv().await, Some(Packet::PubAck(PubAck::new(7))));
    // QoS 2: PUBREC, then PUBCOMP for the client's PUBREL.
    a.publish("devices/b/up/event", QoS::ExactlyOnce, 8, b"spoofed uplink")
        .await;
    assert_eq!(a.recv().await, Some(Packet::PubRec(PubRec::new(8))));
    a.send(&Packet::PubRel(PubRel::new(8))).await;
    assert_eq!(a.recv().await, Some(Packet::PubComp(PubComp::new(8))));
    a.ping().await;
    assert_eq!(
        metrics.value("gema_acl_denied_total", &[("kind", "publish")]),
        3.0
    );

    // A marker sent after the spoofing attempts is the first thing B gets, and the first
    // uplink the gateway sees is A's legitimate one, on the same connection.
    t.handle
        .publish(downlink(
            "b",
            "devices/b/down/marker",
            "marker",
            QoS::AtLeastOnce,
        ))
        .unwrap();
    assert_eq!(&b.expect_publish().await.payload[..], b"marker");
    a.publish("devices/a/up/event", QoS::AtLeastOnce, 9, b"legit")
        .await;
    assert_eq!(a.recv().await, Some(Packet::PubAck(PubAck::new(9))));
    let up = t.next_uplink().await;
    assert_eq!(up.device_id, "a");
    assert_eq!(up.topic, "devices/a/up/event");
    assert_eq!(&up.payload[..], b"legit");
}

#[tokio::test]
async fn past_the_flood_limit_refused_publishes_close_the_connection_and_fire_the_will() {
    let t = TestBroker::start_with(|c| {
        c.denied_publish.flood_limit = 3;
        c.denied_publish.flood_window = Duration::from_secs(3600);
    })
    .await;
    let mut b = t.device("b").await;
    let mut a = t
        .device_with("a", |c| {
            c.last_will = Some(will("devices/a/up/status", "gone"))
        })
        .await;
    // The monitor sees every device's uplinks, the will included.
    let mut m = t.raw().await;
    let ack = m
        .connect_as("monitor-1", "monitor-secret", |c| {
            c.set_login("monitor", "monitor-secret");
        })
        .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    m.subscribe(1, &[("devices/+/up/#", QoS::AtLeastOnce)])
        .await;
    for pkid in 1..=3 {
        a.publish("devices/b/down/x", QoS::AtLeastOnce, pkid, b"no")
            .await;
        assert_eq!(a.recv().await, Some(Packet::PubAck(PubAck::new(pkid))));
    }
    a.publish("devices/b/down/x", QoS::AtLeastOnce, 4, b"no")
        .await;
    a.expect_closed().await;
    let p = m.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("devices/a/up/status", &b"gone"[..])
    );
    // B never heard any of it.
    b.ping().await;
}

#[tokio::test]
async fn with_deny_action_disconnect_the_first_refused_publish_closes() {
    let mut t = TestBroker::start_with(|c| c.denied_publish.action = DenyAction::Disconnect).await;
    let mut a = t.device("a").await;
    assert!(matches!(
        t.next_presence().await.change,
        PresenceChange::Connected { .. }
    ));
    a.publish("devices/b/down/x", QoS::AtLeastOnce, 1, b"no")
        .await;
    a.expect_closed().await;
    assert_eq!(
        t.next_presence().await.change,
        PresenceChange::Disconnected {
            reason: DisconnectReason::AclViolation
        }
    );
}

#[tokio::test]
async fn a_will_aimed_at_bs_namespace_is_refused_at_connect() {
    let metrics = Metrics::capture();
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
    assert_eq!(
        metrics.value("gema_acl_denied_total", &[("kind", "will")]),
        3.0
    );
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
    // The monitor may not publish: dropped, and it stays connected.
    let mut b = t.device("b").await;
    b.subscribe(1, &[("devices/b/down/#", QoS::AtMostOnce)])
        .await;
    m.publish("devices/b/down/x", QoS::AtMostOnce, 0, b"no")
        .await;
    m.ping().await;
    b.ping().await;
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

#[tokio::test]
async fn an_empty_client_id_is_assigned_to_a_service_with_a_clean_session_never_to_a_device() {
    let t = TestBroker::start().await;
    let ops = |clean: bool| {
        move |c: &mut rumqttc::mqttbytes::v4::Connect| {
            c.client_id = String::new();
            c.clean_session = clean;
            c.set_login("ops", "ops-secret");
        }
    };
    // MQTT 3.1.1 §3.1.3.1: without a clean session there is no session to come back to.
    let mut c = t.raw().await;
    let ack = c.connect_as("", "", ops(false)).await;
    assert_eq!(ack.code, ConnectReturnCode::BadClientId);
    c.expect_closed().await;

    // With one, each gets an id of its own: the second does not take the first one over.
    let mut first = t.raw().await;
    assert_eq!(
        first.connect_as("", "", ops(true)).await.code,
        ConnectReturnCode::Success
    );
    let mut second = t.raw().await;
    assert_eq!(
        second.connect_as("", "", ops(true)).await.code,
        ConnectReturnCode::Success
    );
    first.ping().await;
    second.ping().await;

    // A device's client id is its device id, so an empty one is refused either way.
    for clean in [true, false] {
        let mut d = t.raw().await;
        let ack = d
            .connect_as("a", &secret("a"), |c| {
                c.client_id = String::new();
                c.clean_session = clean;
            })
            .await;
        assert_eq!(ack.code, ConnectReturnCode::BadClientId, "clean {clean}");
    }
}

fn service(name: &str, password: &str, rules: &[&str]) -> ServicePrincipal {
    ServicePrincipal {
        name: name.into(),
        password: Some(password.into()),
        rules: Rule::parse_list(rules).unwrap(),
    }
}

#[tokio::test]
async fn a_deny_rule_refuses_its_filter_and_withholds_what_a_granted_wildcard_matches() {
    let metrics = Metrics::capture();
    let t = TestBroker::start_with(|c| {
        c.services.push(service(
            "watcher",
            "w",
            &["deny test/secret", "read test/#"],
        ));
        c.services.push(service("feeder", "f", &["write test/#"]));
    })
    .await;
    let mut feeder = t.raw().await;
    let ack = feeder
        .connect_as("feeder-1", "f", |c| {
            c.set_login("feeder", "f");
        })
        .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let mut retained = rumqttc::mqttbytes::v4::Publish::new(
        "test/secret",
        QoS::AtLeastOnce,
        b"retained secret".to_vec(),
    );
    retained.pkid = 1;
    retained.retain = true;
    feeder.send(&Packet::Publish(retained)).await;
    assert_eq!(feeder.recv().await, Some(Packet::PubAck(PubAck::new(1))));

    let mut watcher = t.raw().await;
    let ack = watcher
        .connect_as("watcher-1", "w", |c| {
            c.set_login("watcher", "w");
        })
        .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    // MQTT 3.1.1 §3.9.3: the denied filter gets 0x80, the wildcard beside it is granted.
    let codes = watcher
        .subscribe(
            1,
            &[
                ("test/secret", QoS::AtLeastOnce),
                ("test/+", QoS::AtLeastOnce),
            ],
        )
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        ]
    );
    feeder
        .publish("test/secret", QoS::AtLeastOnce, 2, b"live secret")
        .await;
    assert_eq!(feeder.recv().await, Some(Packet::PubAck(PubAck::new(2))));
    feeder
        .publish("test/open", QoS::AtLeastOnce, 3, b"open")
        .await;
    assert_eq!(feeder.recv().await, Some(Packet::PubAck(PubAck::new(3))));
    // Neither the retained nor the live secret: the first message is the open one.
    let p = watcher.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("test/open", &b"open"[..])
    );
    watcher.send(&Packet::PubAck(PubAck::new(p.pkid))).await;
    watcher.ping().await;
    assert_eq!(
        metrics.value("gema_acl_denied_total", &[("kind", "receive")]),
        2.0
    );
}

#[tokio::test]
async fn a_service_whose_deny_rule_could_never_apply_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::base_config(dir.path());
    config.services.push(ServicePrincipal {
        name: "careless".into(),
        password: None,
        rules: vec![
            Rule::parse("readwrite #").unwrap(),
            Rule::parse("deny secret/#").unwrap(),
        ],
    });
    let err = gema_broker::Broker::start(
        config,
        std::sync::Arc::new(crate::helpers::TestRegistry::default()),
    )
    .await
    .unwrap_err();
    let err = err.to_string();
    assert!(
        err.contains("careless") && err.contains("never applied"),
        "{err}"
    );
}
