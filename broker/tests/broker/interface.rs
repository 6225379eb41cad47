//! The in-process interface the gateway uses, and interoperability with a stock client.

use std::sync::Arc;
use std::time::Duration;

use gema_broker::{
    BrokerConfig, DeliveryOutcome, DisconnectReason, PlainListenerConfig, PresenceChange,
    PublishError,
};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, PubAck};
use tokio::net::TcpStream;

use crate::helpers::{RawClient, TestBroker, WAIT, downlink, secret, tls_connect};

#[tokio::test]
async fn a_downlink_receipt_reports_the_devices_acknowledgement() {
    let t = TestBroker::start().await;
    let mut a = t.device("a").await;
    a.subscribe(1, &[("devices/a/down/#", QoS::ExactlyOnce)])
        .await;

    let r1 = t
        .handle
        .publish(downlink("a", "devices/a/down/pay", "q1", QoS::AtLeastOnce))
        .unwrap();
    let p = a.expect_publish().await;
    a.send(&Packet::PubAck(PubAck::new(p.pkid))).await;
    assert_eq!(r1.outcome().await, DeliveryOutcome::Acknowledged);

    let r0 = t
        .handle
        .publish(downlink("a", "devices/a/down/pay", "q0", QoS::AtMostOnce))
        .unwrap();
    assert_eq!(a.expect_publish().await.qos, QoS::AtMostOnce);
    assert_eq!(r0.outcome().await, DeliveryOutcome::Sent);

    let offline = t
        .handle
        .publish(downlink("b", "devices/b/down/pay", "x", QoS::AtLeastOnce))
        .unwrap();
    assert_eq!(
        offline.outcome().await,
        DeliveryOutcome::Offline { queued: false }
    );
}

#[tokio::test]
async fn downlinks_outside_the_devices_namespace_are_refused() {
    let t = TestBroker::start().await;
    for (device, topic) in [
        ("a", "devices/b/down/x"),
        ("a", "devices/a/up/x"),
        ("a", "devices/a/down/"),
        ("a", "elsewhere"),
    ] {
        assert!(
            matches!(
                t.handle
                    .publish(downlink(device, topic, "x", QoS::AtLeastOnce)),
                Err(PublishError::OutsideNamespace { .. })
            ),
            "{topic}"
        );
    }
    assert!(matches!(
        t.handle
            .publish(downlink("A/B", "devices/A/B/down/x", "x", QoS::AtLeastOnce)),
        Err(PublishError::InvalidDeviceId(_))
    ));
    assert!(matches!(
        t.handle
            .publish(downlink("a", "devices/a/down/+", "x", QoS::AtLeastOnce)),
        Err(PublishError::InvalidTopic(_))
    ));
    let huge = "x".repeat(gema_broker::Limits::default().max_packet_size + 1);
    assert!(matches!(
        t.handle
            .publish(downlink("a", "devices/a/down/x", &huge, QoS::AtLeastOnce)),
        Err(PublishError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn uplinks_carry_the_authenticated_device_id() {
    let mut t = TestBroker::start().await;
    let mut a = t.device("a").await;
    a.publish("devices/a/up/event", QoS::AtLeastOnce, 5, b"{\"ok\":true}")
        .await;
    assert_eq!(a.recv().await, Some(Packet::PubAck(PubAck::new(5))));
    let up = t.next_uplink().await;
    assert_eq!(up.device_id, "a");
    assert_eq!(up.topic, "devices/a/up/event");
    assert_eq!(up.qos, QoS::AtLeastOnce);
    assert!(!up.last_will);
}

#[tokio::test]
async fn presence_and_revocation_kick() {
    let mut t = TestBroker::start().await;
    let mut a = t.device("a").await;
    let ev = t.next_presence().await;
    assert_eq!(ev.device_id, "a");
    assert!(matches!(
        ev.change,
        PresenceChange::Connected {
            session_present: false,
            ..
        }
    ));
    assert!(t.handle.is_connected("a"));

    assert!(t.handle.disconnect("a"));
    a.expect_closed().await;
    let ev = t.next_presence().await;
    assert_eq!(
        ev.change,
        PresenceChange::Disconnected {
            reason: DisconnectReason::Kicked
        }
    );
    assert!(!t.handle.is_connected("a"));
    assert!(!t.handle.disconnect("a"));
}

#[tokio::test]
async fn certificates_reload_without_restart() {
    let t = TestBroker::start().await;
    let before = peer_cert(&t).await;
    // Re-issue the server certificate (a new host name forces it) and reload.
    gema_certs::DevPki::new(t.dir.path())
        .ensure(&["localhost".into(), "127.0.0.1".into(), "gema.test".into()])
        .unwrap();
    t.handle.reload_certificates().unwrap();
    let after = peer_cert(&t).await;
    assert_ne!(before, after);
    let on_disk =
        rustls_pemfile::certs(&mut &std::fs::read(t.dir.path().join("server.pem")).unwrap()[..])
            .next()
            .unwrap()
            .unwrap();
    assert_eq!(after, on_disk.as_ref());
    // A bad file is refused and the current certificate stays in service.
    std::fs::write(t.dir.path().join("server.pem"), b"not a certificate").unwrap();
    assert!(t.handle.reload_certificates().is_err());
    assert_eq!(peer_cert(&t).await, after);
}

async fn peer_cert(t: &TestBroker) -> Vec<u8> {
    let s = tls_connect(t.broker.tls_addr(), &t.ca_pem).await;
    s.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn the_plain_listener_maps_anonymous_clients_to_a_service_principal() {
    let t = TestBroker::start_with(|c: &mut BrokerConfig| {
        c.plain = Some(PlainListenerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            anonymous_service: Some("monitor".into()),
        });
    })
    .await;
    let plain = t.broker.plain_addr().unwrap();
    let mut m = RawClient::new(TcpStream::connect(plain).await.unwrap());
    let ack = m.connect_as("dev-console", "", |c| c.login = None).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    m.subscribe(1, &[("devices/+/up/#", QoS::AtMostOnce)]).await;
    let mut a = t.device("a").await;
    a.publish("devices/a/up/event", QoS::AtMostOnce, 0, b"hello")
        .await;
    assert_eq!(&m.expect_publish().await.payload[..], b"hello");
}

#[tokio::test]
async fn a_stock_rumqttc_client_works_over_tls() {
    let mut t = TestBroker::start().await;
    let addr = t.broker.tls_addr();
    let mut opts = rumqttc::MqttOptions::new("a", "localhost", addr.port());
    opts.set_credentials("a", secret("a"));
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
        ca: t.ca_pem.clone(),
        alpn: None,
        client_auth: None,
    }));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 16);
    client
        .subscribe("devices/a/down/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .publish("devices/a/up/hello", rumqttc::QoS::AtLeastOnce, false, "hi")
        .await
        .unwrap();
    let handle = t.handle.clone();
    let run = async {
        let mut receipt = None;
        loop {
            match eventloop.poll().await.unwrap() {
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                    receipt = Some(
                        handle
                            .publish(downlink(
                                "a",
                                "devices/a/down/pay",
                                "Rp 5.000",
                                QoS::AtLeastOnce,
                            ))
                            .unwrap(),
                    );
                }
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                    assert_eq!(&p.payload[..], b"Rp 5.000");
                    // rumqttc acknowledges on the next poll.
                    let outcome = receipt.take().unwrap().outcome();
                    tokio::pin!(outcome);
                    loop {
                        tokio::select! {
                            outcome = &mut outcome => return outcome,
                            r = eventloop.poll() => { r.unwrap(); }
                        }
                    }
                }
                _ => {}
            }
        }
    };
    let outcome = tokio::time::timeout(WAIT, run).await.unwrap();
    assert_eq!(outcome, DeliveryOutcome::Acknowledged);
    let up = t.next_uplink().await;
    assert_eq!(
        (up.device_id.as_str(), up.topic.as_str()),
        ("a", "devices/a/up/hello")
    );
}

#[tokio::test]
async fn shutdown_closes_connections_and_returns() {
    let t = TestBroker::start().await;
    let mut a = t.device("a").await;
    let TestBroker { broker, .. } = t;
    tokio::time::timeout(WAIT, broker.shutdown()).await.unwrap();
    a.expect_closed().await;
}

#[tokio::test]
async fn tls_sessions_resume() {
    let t = TestBroker::start().await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &t.ca_pem[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(t.broker.tls_addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        let mut c = RawClient::new(tls);
        // TLS 1.3 tickets arrive after the handshake: a round trip makes sure they did.
        assert_eq!(
            c.connect_as("a", &secret("a"), |_| {}).await.code,
            ConnectReturnCode::Success
        );
        kinds.push(c.stream.get_ref().1.handshake_kind());
    }
    assert_eq!(
        kinds,
        vec![
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}

#[tokio::test]
async fn a_certificate_changed_on_disk_is_picked_up_without_a_signal() {
    let t =
        TestBroker::start_with(|c| c.tls.reload_check_interval = Duration::from_millis(100)).await;
    let before = peer_cert(&t).await;
    gema_certs::DevPki::new(t.dir.path())
        .ensure(&[
            "localhost".into(),
            "127.0.0.1".into(),
            "renewed.test".into(),
        ])
        .unwrap();
    let changed = async {
        loop {
            let now = peer_cert(&t).await;
            if now != before {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let after = tokio::time::timeout(WAIT, changed).await.unwrap();
    let on_disk =
        rustls_pemfile::certs(&mut &std::fs::read(t.dir.path().join("server.pem")).unwrap()[..])
            .next()
            .unwrap()
            .unwrap();
    assert_eq!(after, on_disk.as_ref());
}
