//! Device certificates end to end, over real TLS with a real MQTT client (rumqttc): a
//! device whose CSR the daemon signed connects without a password and is identified from
//! its certificate; a certificate from another CA and an expired one are refused; revoking
//! the certificate ends the live session and CONNECT with it is refused afterwards (with
//! CONNACK 0x05: revocation is checked at CONNECT, not in the handshake); a password
//! device still connects on the same port.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::tokio_rustls::rustls::{ClientConfig, RootCertStore};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet,
    TlsConfiguration, Transport,
};
use serde_json::json;

use crate::helpers::Daemon;

/// A new P-256 key and a CSR naming `device_id`: `(key PEM, CSR PEM)`.
fn key_and_csr(device_id: &str) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, device_id);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, csr)
}

/// A client for `device_id` presenting `chain_pem` with `key`, trusting `server_ca`.
fn client(
    daemon: &Daemon,
    device_id: &str,
    server_ca: &[u8],
    chain_pem: &str,
    key: &rcgen::KeyPair,
) -> (AsyncClient, EventLoop) {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(
        rustls_pemfile::certs(&mut std::io::Cursor::new(server_ca)).filter_map(Result::ok),
    );
    let chain: Vec<_> = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = rustls_pemfile::private_key(&mut key.serialize_pem().as_bytes())
        .unwrap()
        .unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let mut options = MqttOptions::new(device_id, "localhost", daemon.mqtt_addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))));
    AsyncClient::new(options, 10)
}

/// Polls until the CONNACK or an error.
async fn connect(events: &mut EventLoop) -> Result<(), ConnectionError> {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = events.poll().await? {
                return Ok(());
            }
        }
    })
    .await
    .expect("an answer within 20 s")
}

/// Polls a connected client until its connection ends.
async fn until_disconnected(events: &mut EventLoop) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while events.poll().await.is_ok() {}
    })
    .await
    .expect("the session ends within 20 s");
}

fn refused_not_authorized(result: &Result<(), ConnectionError>) -> bool {
    matches!(
        result,
        Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized
        ))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_a_gema_certificate_connects_and_revoking_it_ends_the_session_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let registered = daemon.register_device("SN-CERT-E2E").await;
    let device_id = registered.device.device_id.clone();

    // The device CA was created in the data directory, its key for the owner only.
    let certs = dir.path().join("gema-data/certs");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(certs.join("device-ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let (key, csr) = key_and_csr(&device_id);
    let (status, issued) = daemon
        .post(
            &format!("/api/v1/devices/{device_id}/certificates"),
            json!({ "csr": csr }),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let chain = format!(
        "{}{}",
        issued["certificate_pem"].as_str().unwrap(),
        issued["chain_pem"].as_str().unwrap()
    );
    let serial = issued["serial"].as_str().unwrap().to_string();

    // Identified from the certificate, no password.
    let (_client, mut events) = client(&daemon, &device_id, &registered.ca_pem, &chain, &key);
    connect(&mut events)
        .await
        .expect("connected with the certificate");
    let (_, device) = daemon.get(&format!("/api/v1/devices/{device_id}")).await;
    assert_eq!(device["last_auth"], "certificate", "{device}");

    // A password device connects on the same port (the client certificate is optional).
    let other = daemon.register_device("SN-PASSWORD").await;
    let (sim, _sim_events) =
        crate::helpers::connected_sim(daemon.mqtt_addr.port(), &other.device, &other.ca_pem).await;
    sim.abort();
    let (_, password_device) = daemon
        .get(&format!("/api/v1/devices/{}", other.device.device_id))
        .await;
    assert_eq!(password_device["last_auth"], "password");

    // Revoking the certificate ends the live session at once…
    let (status, revoked) = daemon
        .post(
            &format!("/api/v1/devices/{device_id}/certificates/{serial}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    until_disconnected(&mut events).await;
    // …and the certificate is refused at CONNECT afterwards.
    let (_client, mut events) = client(&daemon, &device_id, &registered.ca_pem, &chain, &key);
    let again = connect(&mut events).await;
    assert!(refused_not_authorized(&again), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_or_past_their_expiry_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let registered = daemon.register_device("SN-CERT-BAD").await;
    let device_id = registered.device.device_id.clone();
    let (key, csr) = key_and_csr(&device_id);
    let request = gema_certs::DeviceCsr::from_pem(&csr).unwrap();
    let now = time::OffsetDateTime::now_utc();

    // Another CA: the handshake fails.
    let (other_cert, other_key) = gema_certs::DeviceCa::generate().unwrap();
    let other = gema_certs::DeviceCa::from_pem(&other_cert, &other_key).unwrap();
    let foreign = other
        .issue(&request, &device_id, now, now + time::Duration::days(30))
        .unwrap();
    let (_client, mut events) = client(
        &daemon,
        &device_id,
        &registered.ca_pem,
        &foreign.certificate_pem,
        &key,
    );
    let foreign_result = connect(&mut events).await;
    assert!(
        matches!(
            foreign_result,
            Err(ConnectionError::Tls(_) | ConnectionError::Io(_))
                | Err(ConnectionError::ConnectionRefused(_))
        ),
        "{foreign_result:?}"
    );

    // The daemon's own device CA, but validity in the past: the handshake fails.
    let certs = dir.path().join("gema-data/certs");
    let ours =
        gema_certs::DeviceCa::load(&certs.join("device-ca.pem"), &certs.join("device-ca.key"))
            .unwrap();
    let expired = ours
        .issue(
            &request,
            &device_id,
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
        .unwrap();
    let (_client, mut events) = client(
        &daemon,
        &device_id,
        &registered.ca_pem,
        &expired.certificate_pem,
        &key,
    );
    let expired_result = connect(&mut events).await;
    assert!(
        matches!(
            expired_result,
            Err(ConnectionError::Tls(_) | ConnectionError::Io(_))
                | Err(ConnectionError::ConnectionRefused(_))
        ),
        "{expired_result:?}"
    );
    // The same CA, in its validity: accepted (so the refusals above were the CA and the
    // dates, not the client).
    let valid = ours
        .issue(&request, &device_id, now, now + time::Duration::days(1))
        .unwrap();
    let (_client, mut events) = client(
        &daemon,
        &device_id,
        &registered.ca_pem,
        &valid.certificate_pem,
        &key,
    );
    connect(&mut events)
        .await
        .expect("a valid certificate connects");
}
