//! The TLS listener's protocol versions and its handshake cap: a TLS 1.2-only client gets
//! in, a TLS 1.0 or 1.1 ClientHello is refused, and a handshake past
//! `tls.max_concurrent_handshakes` waits for a slot and then completes.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::mqttbytes::v4::ConnectReturnCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Metrics, RawClient, TestBroker, WAIT, secret, tls_over};

#[tokio::test]
async fn a_tls_1_2_only_client_connects() {
    let t = TestBroker::start().await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &t.ca_pem[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(t.broker.tls_addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("a TLS 1.2 handshake succeeds");
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let mut c = RawClient::new(stream);
    let ack = c.connect_as("a", &secret("a"), |_| {}).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    c.ping().await;
}

/// A minimal ClientHello offering `version` (no `supported_versions` extension, as a TLS 1.0,
/// 1.1 or 1.2 client sends it), with suites and extensions a TLS 1.2 server can use.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    fn with_len16(v: &[u8]) -> Vec<u8> {
        let mut out = u16::try_from(v.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(v);
        out
    }
    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend(with_len16(data));
        out
    }
    let mut body = version.to_vec();
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // no session id
    // ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256 (TLS 1.2), and the CBC
    // suites a TLS 1.0/1.1 client offers.
    let suites: Vec<u8> = [0xc02b_u16, 0xc02f, 0xc009, 0xc013, 0x002f]
        .iter()
        .flat_map(|s| s.to_be_bytes())
        .collect();
    body.extend(with_len16(&suites));
    body.extend_from_slice(&[1, 0]); // compression: null
    let host = b"localhost";
    let mut sni = vec![0];
    sni.extend(with_len16(host));
    let mut extensions = extension(0x0000, &with_len16(&sni));
    // supported_groups: secp256r1, x25519
    extensions.extend(extension(0x000a, &with_len16(&[0x00, 0x17, 0x00, 0x1d])));
    // ec_point_formats: uncompressed
    extensions.extend(extension(0x000b, &[1, 0]));
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    extensions.extend(extension(
        0x000d,
        &with_len16(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01]),
    ));
    body.extend(with_len16(&extensions));

    let mut handshake = vec![1]; // ClientHello
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(with_len16(&handshake));
    record
}

/// Sends `hello` and returns the first TLS record the server answers with (or what came
/// before it closed), and the connection.
async fn first_record(addr: std::net::SocketAddr, hello: &[u8]) -> (Vec<u8>, TcpStream) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 1024];
        loop {
            if got.len() >= 5 {
                let len = usize::from(u16::from_be_bytes([got[3], got[4]]));
                if got.len() >= 5 + len {
                    got.truncate(5 + len);
                    return;
                }
            }
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server answers or closes in time");
    (got, tcp)
}

#[tokio::test]
async fn tls_1_0_and_1_1_client_hellos_are_refused_with_a_protocol_version_alert() {
    let t = TestBroker::start().await;
    let addr = t.broker.tls_addr();
    // The same ClientHello offering TLS 1.2 gets a ServerHello: what follows is refused for
    // its version, not for its shape.
    let (answer, _) = first_record(addr, &client_hello([0x03, 0x03])).await;
    assert!(
        answer.len() > 5 && answer[0] == 0x16 && answer[5] == 2,
        "a handshake record holding a ServerHello: {answer:02x?}"
    );
    for (name, version) in [("TLS 1.0", [0x03, 0x01]), ("TLS 1.1", [0x03, 0x02])] {
        let (answer, mut tcp) = first_record(addr, &client_hello(version)).await;
        // An alert record (21) of two bytes: fatal (2), protocol_version (70).
        assert_eq!(
            answer.get(..2).zip(answer.get(3..)),
            Some((&[0x15, 0x03][..], &[0x00, 0x02, 2, 70][..])),
            "{name}: expected a fatal protocol_version alert, got {answer:02x?}"
        );
        // Then the server closes.
        let mut rest = [0u8; 16];
        let read = tokio::time::timeout(WAIT, tcp.read(&mut rest))
            .await
            .expect("the server closes in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{name}: {read:?}");
    }
}

#[tokio::test]
async fn a_handshake_past_the_cap_waits_for_a_slot_and_then_completes() {
    let metrics = Metrics::capture();
    // A handshake timeout far beyond the test, so only the test frees a slot.
    let t = TestBroker::start_with(|c| {
        c.tls.max_concurrent_handshakes = 2;
        c.tls.handshake_timeout = Duration::from_secs(600);
    })
    .await;
    let addr = t.broker.tls_addr();
    // Two clients start a handshake (the first bytes of a ClientHello) and stall: each
    // holds a slot.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
            .await
            .unwrap();
        stalled.push(s);
    }
    metrics
        .wait_for("gema_broker_tls_handshakes_active", &[], 2.0)
        .await;

    let ca = t.ca_pem.clone();
    let third =
        tokio::spawn(async move { tls_over(TcpStream::connect(addr).await.unwrap(), &ca).await });
    metrics
        .wait_for("gema_broker_tls_handshakes_waiting", &[], 1.0)
        .await;
    // Both slots are held until a stalled client goes: the third cannot have finished.
    assert!(!third.is_finished());
    assert_eq!(metrics.value("gema_broker_tls_handshakes_active", &[]), 2.0);

    // One stalled client gives up; its slot goes to the third, which completes.
    drop(stalled.remove(0));
    let stream = tokio::time::timeout(WAIT, third)
        .await
        .expect("the waiting handshake completes once a slot is free")
        .unwrap()
        .expect("the handshake succeeds");
    metrics
        .wait_for("gema_broker_tls_handshakes_waiting", &[], 0.0)
        .await;
    let mut c = RawClient::new(stream);
    let ack = c.connect_as("a", &secret("a"), |_| {}).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    // The other stalled client still holds its slot.
    metrics
        .wait_for("gema_broker_tls_handshakes_active", &[], 1.0)
        .await;
}
