//! Device certificates end to end, over real TLS with a real MQTT client (rumqttc): a
//! device whose CSR the daemon signed connects without a password and is identified from
//! its certificate; a certificate from another CA and an expired one are refused; revoking
//! the certificate ends the live session and CONNECT with it is refused afterwards (with
//! CONNACK 0x05: revocation is checked at CONNECT, not in the handshake); a password
//! device still connects on the same port. Renewal over MQTT: a device asks on its live
//! session (`cert_renew`), gets the new chain on its down topic, connects with it, and from
//! then on the old certificate is refused; a request naming another device is refused with
//! its reason and issues nothing. `gema device cert --csr FILE` against the daemon.

use std::sync::Arc;
use std::time::Duration;

use gema_firmware_protocol::topic::{MessageKind, downlink_filter, topic};
use gema_firmware_protocol::{
    CertRenew, CertRenewOutcome, CertRenewRefusal, CertRenewResult, Downlink, DownlinkBody,
    Encoding, Envelope, Uplink, decode, encode,
};
use rumqttc::tokio_rustls::rustls::{ClientConfig, RootCertStore};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
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

    let (key, chain, serial) = issued_over_the_api(&daemon, &device_id).await;

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

/// Sends `cert_renew` with `csr` on the live session and waits for Gema's answer.
async fn renew_over_mqtt(
    client: &AsyncClient,
    events: &mut EventLoop,
    device_id: &str,
    request_id: &str,
    csr: &str,
) -> CertRenewResult {
    client
        .subscribe(downlink_filter(device_id), QoS::AtLeastOnce)
        .await
        .unwrap();
    let sent_at = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let ask = Uplink::new(
        Envelope::new(format!("m-{request_id}"), sent_at),
        CertRenew {
            request_id: request_id.into(),
            csr_pem: csr.into(),
        },
    );
    client
        .publish(
            topic(device_id, MessageKind::CertRenew, Encoding::Json),
            QoS::AtLeastOnce,
            false,
            encode(&ask, Encoding::Json),
        )
        .await
        .unwrap();
    let answer_topic = topic(device_id, MessageKind::CertRenewResult, Encoding::Json);
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Event::Incoming(Packet::Publish(publish)) = events.poll().await.unwrap()
                && publish.topic == answer_topic
            {
                let answer: Downlink = decode(&publish.payload, Encoding::Json).unwrap();
                let DownlinkBody::CertRenewResult(result) = answer.body else {
                    panic!("not a renewal answer: {answer:?}");
                };
                return result;
            }
        }
    })
    .await
    .expect("an answer to the renewal within 20 s")
}

/// `(serial, status)` of the device's certificates, oldest first.
async fn certificate_statuses(daemon: &Daemon, device_id: &str) -> Vec<(String, String)> {
    let (status, list) = daemon
        .get(&format!("/api/v1/devices/{device_id}/certificates"))
        .await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["serial"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A certificate for `device_id` through the API: `(key, chain PEM, serial)`.
async fn issued_over_the_api(daemon: &Daemon, device_id: &str) -> (rcgen::KeyPair, String, String) {
    let (key, csr) = key_and_csr(device_id);
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
    (key, chain, issued["serial"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_renews_its_certificate_over_mqtt_and_the_old_one_stops_working_once_the_new_one_is_used()
 {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let registered = daemon.register_device("SN-CERT-RENEW").await;
    let device_id = registered.device.device_id.clone();
    let (old_key, old_chain, old_serial) = issued_over_the_api(&daemon, &device_id).await;

    // Connected with the first certificate, the device asks for a new one.
    let (session, mut events) = client(
        &daemon,
        &device_id,
        &registered.ca_pem,
        &old_chain,
        &old_key,
    );
    connect(&mut events)
        .await
        .expect("connected with the first certificate");
    let (new_key, new_csr) = key_and_csr(&device_id);
    let answer = renew_over_mqtt(&session, &mut events, &device_id, "renew-1", &new_csr).await;
    assert_eq!(answer.request_id, "renew-1");
    let CertRenewOutcome::Issued(renewed) = answer.outcome else {
        panic!("a certificate: {:?}", answer.outcome);
    };
    assert_ne!(renewed.serial, old_serial);
    assert_eq!(
        certificate_statuses(&daemon, &device_id).await,
        [
            (old_serial.clone(), "active".to_owned()),
            (renewed.serial.clone(), "active".to_owned()),
        ],
        "until the new one is used, both work"
    );
    // The renewal's audit row names the device.
    let (_, audit) = daemon
        .get(&format!("/api/v1/audit-logs?actor=device:{device_id}"))
        .await;
    assert!(audit.to_string().contains(&renewed.serial), "{audit}");
    session.disconnect().await.unwrap();
    drop(events);

    // The new certificate connects and identifies the device…
    let (_new_client, mut new_events) = client(
        &daemon,
        &device_id,
        &registered.ca_pem,
        &renewed.chain_pem,
        &new_key,
    );
    connect(&mut new_events)
        .await
        .expect("connected with the renewed certificate");
    let (_, device) = daemon.get(&format!("/api/v1/devices/{device_id}")).await;
    assert_eq!(device["last_auth"], "certificate", "{device}");
    assert_eq!(
        certificate_statuses(&daemon, &device_id).await,
        [
            (old_serial, "superseded".to_owned()),
            (renewed.serial, "active".to_owned()),
        ]
    );
    // …and the old one is refused at CONNECT from then on.
    let (_old_client, mut old_events) = client(
        &daemon,
        &device_id,
        &registered.ca_pem,
        &old_chain,
        &old_key,
    );
    let again = connect(&mut old_events).await;
    assert!(refused_not_authorized(&again), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_naming_another_device_is_refused_and_issues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let registered = daemon.register_device("SN-CERT-NOSY").await;
    let device_id = registered.device.device_id.clone();
    let victim = daemon.register_device("SN-CERT-VICTIM").await;
    let (key, chain, serial) = issued_over_the_api(&daemon, &device_id).await;

    let (session, mut events) = client(&daemon, &device_id, &registered.ca_pem, &chain, &key);
    connect(&mut events).await.expect("connected");
    let (_, csr_for_victim) = key_and_csr(&victim.device.device_id);
    let answer = renew_over_mqtt(
        &session,
        &mut events,
        &device_id,
        "steal-1",
        &csr_for_victim,
    )
    .await;
    assert_eq!(answer.request_id, "steal-1");
    assert_eq!(
        answer.outcome,
        CertRenewOutcome::Refused(CertRenewRefusal::WrongName)
    );
    // Nothing issued to either device.
    assert_eq!(
        certificate_statuses(&daemon, &device_id).await,
        [(serial, "active".to_owned())]
    );
    assert!(
        certificate_statuses(&daemon, &victim.device.device_id)
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gema_device_cert_signs_a_csr_file_and_refuses_one_naming_another_device() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let registered = daemon.register_device("SN-CERT-CLI").await;
    let device_id = registered.device.device_id.clone();
    let (key, csr) = key_and_csr(&device_id);
    let csr_file = dir.path().join("device.csr");
    std::fs::write(&csr_file, &csr).unwrap();
    let out = dir.path().join("device-chain.pem");

    let printed = daemon.cli_ok(&[
        "device",
        "cert",
        &device_id,
        "--csr",
        csr_file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let chain = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        chain.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "{chain}"
    );
    let statuses = certificate_statuses(&daemon, &device_id).await;
    assert_eq!(statuses.len(), 1);
    assert!(printed.contains(&statuses[0].0), "{printed}");
    // The written chain is what the device connects with.
    let (_client, mut events) = client(&daemon, &device_id, &registered.ca_pem, &chain, &key);
    connect(&mut events)
        .await
        .expect("connected with the CLI's certificate");

    // A CSR naming another device is refused, and nothing is issued.
    let other = daemon.register_device("SN-CERT-CLI-2").await;
    let refused = daemon.cli(&[
        "device",
        "cert",
        &other.device.device_id,
        "--csr",
        csr_file.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("csr"), "{stderr}");
    assert!(
        certificate_statuses(&daemon, &other.device.device_id)
            .await
            .is_empty()
    );
}
