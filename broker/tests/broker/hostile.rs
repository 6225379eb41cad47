//! Clients that misbehave must not affect anyone else.

use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::{RawClient, TestBroker, WAIT, secret, tls_over};

#[tokio::test]
async fn silent_and_stalled_tls_clients_do_not_delay_another_clients_connect() {
    // A handshake timeout far longer than the test's own wait: if a stalled client could
    // block the accept path, the prompt client below would not get through in time.
    let t = TestBroker::start_with(|c| {
        c.tls.handshake_timeout = Duration::from_secs(120);
        // Fewer handshake slots than silent clients: a silent client holds none.
        c.tls.max_concurrent_handshakes = 2;
    })
    .await;
    let addr = t.broker.tls_addr();
    // Opens TCP and sends nothing.
    let _silent: Vec<TcpStream> = futures_silent(addr, 4).await;
    // Sends the first bytes of a ClientHello and stalls.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .unwrap();

    let prompt = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut c = RawClient::new(tls_over(tcp, &t.ca_pem).await.unwrap());
        c.connect_as("a", &secret("a"), |_| {}).await
    };
    let ack = tokio::time::timeout(WAIT, prompt)
        .await
        .expect("prompt client connects");
    assert_eq!(ack.code, ConnectReturnCode::Success);
    drop(stalled);
}

async fn futures_silent(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(TcpStream::connect(addr).await.unwrap());
    }
    v
}

#[tokio::test]
async fn a_handshake_that_never_completes_is_closed_after_the_timeout() {
    let t = TestBroker::start_with(|c| c.tls.handshake_timeout = Duration::from_millis(300)).await;
    let mut silent = RawClient::new(TcpStream::connect(t.broker.tls_addr()).await.unwrap());
    // The broker closes it: read sees EOF.
    assert!(silent.recv().await.is_none());
}

#[tokio::test]
async fn garbage_oversized_and_second_connect_close_only_the_offender() {
    let t = TestBroker::start_with(|c| c.limits.max_packet_size = 1024).await;
    let mut b = t.device("b").await;
    b.subscribe(1, &[("devices/b/down/#", QoS::AtLeastOnce)])
        .await;

    // Garbage instead of CONNECT.
    let mut g = t.raw().await;
    g.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    g.expect_closed().await;

    // Garbage after CONNECT.
    let mut g = t.device("a").await;
    g.send_bytes(&[0xF0, 0x00, 0xFF, 0xFF]).await;
    g.expect_closed().await;

    // An oversized packet, announced by its header alone.
    let mut o = t.device("a").await;
    o.send_bytes(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).await;
    o.expect_closed().await;

    // An oversized packet sent in full.
    let mut o = t.device("a").await;
    o.publish("devices/a/up/x", QoS::AtMostOnce, 0, &vec![0u8; 4096])
        .await;
    o.expect_closed().await;

    // A second CONNECT.
    let mut s = t.device("a").await;
    let mut c = Connect::new("a");
    c.set_login("a", secret("a"));
    s.send(&Packet::Connect(c)).await;
    s.expect_closed().await;

    // A packet before CONNECT.
    let mut e = t.raw().await;
    e.send(&Packet::PingReq).await;
    e.expect_closed().await;

    // B never noticed.
    b.ping().await;
    t.handle
        .publish(crate::helpers::downlink(
            "b",
            "devices/b/down/x",
            "still here",
            QoS::AtLeastOnce,
        ))
        .unwrap();
    assert_eq!(&b.expect_publish().await.payload[..], b"still here");
}

#[tokio::test]
async fn a_client_that_never_sends_connect_is_closed() {
    let t = TestBroker::start_with(|c| c.limits.connect_timeout = Duration::from_millis(300)).await;
    let mut c = t.raw().await;
    assert!(c.recv().await.is_none());
}

#[tokio::test]
async fn a_device_that_stops_reading_is_closed_and_others_keep_going() {
    let mut t = TestBroker::start_with(|c| {
        c.limits.write_timeout = Duration::from_millis(500);
        c.limits.max_packet_size = 1 << 20;
    })
    .await;
    let mut a = t.device("a").await;
    a.subscribe(1, &[("devices/a/down/#", QoS::AtMostOnce)])
        .await;
    assert!(matches!(
        t.next_presence().await.change,
        gema_broker::PresenceChange::Connected { .. }
    ));
    // A never reads again; its socket buffers fill.
    let payload = "x".repeat(256 * 1024);
    let flood = async {
        loop {
            let _ = t
                .handle
                .publish(crate::helpers::downlink(
                    "a",
                    "devices/a/down/x",
                    &payload,
                    QoS::AtMostOnce,
                ))
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            if !t.handle.is_connected("a") {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, flood)
        .await
        .expect("A is closed");
    assert_eq!(
        t.next_presence().await.change,
        gema_broker::PresenceChange::Disconnected {
            reason: gema_broker::DisconnectReason::WriteTimeout
        }
    );
    let mut b = t.device("b").await;
    b.ping().await;
    drop(a);
}

#[tokio::test]
async fn subscriptions_per_session_are_bounded() {
    let t = TestBroker::start_with(|c| c.sessions.max_subscriptions = 2).await;
    let mut a = t.device("a").await;
    let codes = a
        .subscribe(
            1,
            &[
                ("devices/a/down/1", QoS::AtMostOnce),
                ("devices/a/down/2", QoS::AtMostOnce),
                ("devices/a/down/3", QoS::AtMostOnce),
                ("devices/a/down/1", QoS::AtLeastOnce),
            ],
        )
        .await;
    use rumqttc::mqttbytes::v4::SubscribeReasonCode::{Failure, Success};
    assert_eq!(
        codes,
        vec![
            Success(QoS::AtMostOnce),
            Success(QoS::AtMostOnce),
            Failure,
            Success(QoS::AtLeastOnce)
        ]
    );
}
