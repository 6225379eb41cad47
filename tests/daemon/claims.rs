//! Provisioning by claim against the real daemon over real TLS: fifty factory-fresh devices
//! boot at once under one claim with a limit of forty; exactly forty get an identity (each
//! serial once) and reconnect as themselves, ten are refused. And a claim session can use
//! its own two provisioning topics and nothing else.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

use gema::sim::claim::{ClaimCredential, Provisioned, provision};
use gema_firmware_protocol::claim::{
    self as wire, ProvisionRequest, ProvisionResponse, RefusalReason,
};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode, Transport,
};
use serde_json::json;

use crate::helpers::{Daemon, connected_sim, sim_options};

/// Creates a claim through the API: its credential and the CA PEM devices trust.
async fn create_claim(daemon: &Daemon, pattern: &str, max_uses: i64) -> (ClaimCredential, Vec<u8>) {
    let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let (status, body) = daemon
        .post(
            "/api/v1/claims",
            json!({
                "name": "batch under test",
                "serial_pattern": pattern,
                "max_uses": max_uses,
                "expires_at": expires.format(&time::format_description::well_known::Rfc3339).unwrap(),
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["claim"]["username"],
        format!("claim:{}", body["claim"]["id"].as_str().unwrap())
    );
    (
        ClaimCredential {
            claim_id: body["claim"]["id"].as_str().unwrap().to_owned(),
            secret: body["secret"].as_str().unwrap().to_owned(),
        },
        body["ca_certificate_pem"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_first_boots_under_a_claim_of_forty_provision_exactly_forty() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let port = daemon.mqtt_addr.port();
    let (claim, ca_pem) = create_claim(&daemon, "SB50-*", 40).await;
    let options = sim_options(port, ca_pem.clone(), Arc::new(AtomicU8::new(0)));

    let boots = (0..50).map(|i| {
        let (options, claim) = (options.clone(), claim.clone());
        tokio::spawn(async move {
            let serial = format!("SB50-{i:03}");
            let outcome = provision(
                &options,
                &claim,
                &serial,
                "SB-1",
                None,
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|e| panic!("{serial}: {e:#}"));
            (serial, outcome)
        })
    });
    let mut provisioned = Vec::new();
    let mut refused = Vec::new();
    for boot in futures_util::future::join_all(boots).await {
        let (serial, outcome) = boot.expect("boot task");
        match outcome {
            Provisioned::Device { device, .. } => provisioned.push((serial, device)),
            // Exhausted while its request waited, or already at its CONNECT.
            Provisioned::Refused(RefusalReason::ClaimExhausted) => refused.push(serial),
            Provisioned::ConnectRefused(code) => {
                assert!(code.contains("NotAuthorized"), "{serial}: {code}");
                refused.push(serial);
            }
            Provisioned::Refused(other) => panic!("{serial} refused for {other:?}"),
        }
    }
    assert_eq!(provisioned.len(), 40, "refused: {refused:?}");
    assert_eq!(refused.len(), 10);
    let ids: HashSet<_> = provisioned
        .iter()
        .map(|(_, d)| d.device_id.clone())
        .collect();
    assert_eq!(ids.len(), 40, "each device its own id");

    let (status, claim_now) = daemon
        .get(&format!("/api/v1/claims/{}", claim.claim_id))
        .await;
    assert_eq!(status, 200);
    assert_eq!(claim_now["uses"], 40);
    let (_, records) = daemon
        .get(&format!("/api/v1/claims/{}/provisionings", claim.claim_id))
        .await;
    let records = records.as_array().unwrap();
    let serials: HashSet<_> = records
        .iter()
        .map(|r| r["serial"].as_str().unwrap())
        .collect();
    assert_eq!(serials.len(), 40, "no serial twice");
    for (serial, device) in &provisioned {
        assert!(serials.contains(serial.as_str()));
        let (_, d) = daemon
            .get(&format!("/api/v1/devices/{}", device.device_id))
            .await;
        assert_eq!(d["serial"], serial.as_str());
        assert!(
            d["terminal_id"].is_null(),
            "provisioned devices start unbound: {d}"
        );
    }
    let (_, audit) = daemon
        .get("/api/v1/audit-logs?action=device.provision_by_claim&limit=200")
        .await;
    let ok_rows = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["outcome"] == "ok")
        .count();
    assert_eq!(ok_rows, 40, "every provisioning audited: {audit}");

    // Every provisioned device reconnects as itself.
    for (_, device) in &provisioned {
        // Returns once the device's own CONNECT is accepted.
        let (task, _events) = connected_sim(port, device, &ca_pem).await;
        task.abort();
    }

    // A serial provisioned once is refused under another claim too.
    let (other, _) = create_claim(&daemon, "SB50-*", 5).await;
    let again = provision(
        &options,
        &other,
        &provisioned[0].0,
        "SB-1",
        None,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(
        matches!(again, Provisioned::Refused(RefusalReason::SerialTaken)),
        "{again:?}"
    );
}

/// A raw claim session for serial `serial`, connected (CONNACK accepted).
async fn claim_session(
    port: u16,
    ca_pem: &[u8],
    claim: &ClaimCredential,
    serial: &str,
) -> (AsyncClient, EventLoop) {
    let mut mqtt = MqttOptions::new(serial, "localhost", port);
    mqtt.set_credentials(wire::claim_username(&claim.claim_id), &claim.secret);
    mqtt.set_clean_session(true);
    mqtt.set_keep_alive(Duration::from_secs(30));
    let roots = {
        let mut roots = rumqttc::tokio_rustls::rustls::RootCertStore::empty();
        roots.add_parsable_certificates(
            rustls_pemfile::certs(&mut std::io::Cursor::new(ca_pem)).filter_map(Result::ok),
        );
        roots
    };
    let config = rumqttc::tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    mqtt.set_transport(Transport::Tls(rumqttc::TlsConfiguration::Rustls(Arc::new(
        config,
    ))));
    let (client, mut eventloop) = AsyncClient::new(mqtt, 32);
    loop {
        match eventloop.poll().await.expect("claim session connects") {
            Event::Incoming(Packet::ConnAck(ack)) => {
                assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
                return (client, eventloop);
            }
            _ => continue,
        }
    }
}

/// Polls until `pick` returns something, at most 30 s.
async fn until<T>(eventloop: &mut EventLoop, mut pick: impl FnMut(&Packet) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Event::Incoming(packet) = eventloop.poll().await.expect("connection stays up")
                && let Some(found) = pick(&packet)
            {
                return found;
            }
        }
    })
    .await
    .expect("the expected packet did not come")
}

fn denied_publishes(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("gema_acl_denied_total") && l.contains("kind=\"publish\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_session_cannot_touch_any_other_topic() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let port = daemon.mqtt_addr.port();
    let (claim, ca_pem) = create_claim(&daemon, "SBX-*", 5).await;
    let victim = daemon.register_device("VICTIM-1").await.device;

    // B is a genuine device of the batch, connected and subscribed, not asking yet.
    let (b, mut b_loop) = claim_session(port, &ca_pem, &claim, "SBX-B").await;
    b.subscribe(wire::down_topic("SBX-B"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let codes = until(&mut b_loop, |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    })
    .await;
    assert!(matches!(codes[..], [SubscribeReasonCode::Success(_)]));

    // A tries every other subscription: each refused.
    let (a, mut a_loop) = claim_session(port, &ca_pem, &claim, "SBX-A").await;
    let forbidden = [
        "#".to_owned(),
        "+".to_owned(),
        "$SYS/#".to_owned(),
        "devices/#".to_owned(),
        format!("devices/{}/down/#", victim.device_id),
        format!("devices/{}/up/#", victim.device_id),
        "provisioning/#".to_owned(),
        "provisioning/+/down".to_owned(),
        "provisioning/SBX-B/down".to_owned(),
        "provisioning/SBX-A/#".to_owned(),
        "provisioning/SBX-A/up".to_owned(),
    ];
    for filter in &forbidden {
        a.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let codes = until(&mut a_loop, |p| match p {
            Packet::SubAck(ack) => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await;
        assert!(
            matches!(codes[..], [SubscribeReasonCode::Failure]),
            "{filter}: {codes:?}"
        );
    }
    a.subscribe(wire::down_topic("SBX-A"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let codes = until(&mut a_loop, |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    })
    .await;
    assert!(
        matches!(codes[..], [SubscribeReasonCode::Success(_)]),
        "its own down topic"
    );

    // A publishes everywhere else: each refused (acknowledged and dropped, and counted).
    let before = denied_publishes(&daemon.metrics().await);
    let forged = ProvisionResponse::Provisioned {
        version: 1,
        request_msg_id: "forged".into(),
        device_id: "dev_forged".into(),
        secret: "forged-secret".into(),
        certificate_pem: None,
    }
    .encode();
    let targets = [
        "provisioning/SBX-B/down".to_owned(),
        "provisioning/SBX-B/up".to_owned(),
        "provisioning/SBX-A/down".to_owned(),
        format!("devices/{}/up/heartbeat", victim.device_id),
        format!("devices/{}/down/announce", victim.device_id),
        "$SYS/broker/x".to_owned(),
        "anything".to_owned(),
    ];
    for topic in &targets {
        a.publish(topic, QoS::AtLeastOnce, false, forged.clone())
            .await
            .unwrap();
        until(&mut a_loop, |p| {
            matches!(p, Packet::PubAck(_)).then_some(())
        })
        .await;
    }
    let after = denied_publishes(&daemon.metrics().await);
    assert_eq!(
        after - before,
        targets.len() as u64,
        "every publish refused by the ACL"
    );

    // B's first message is its own answer, not A's forgery (which, routed, would have been
    // queued before A's PUBACK).
    let mut request = ProvisionRequest::new("b-request-1", "SBX-B", "SB-1");
    request.firmware_version = None;
    b.publish(
        wire::up_topic("SBX-B"),
        QoS::AtLeastOnce,
        false,
        request.encode(),
    )
    .await
    .unwrap();
    let answer = until(&mut b_loop, |p| match p {
        Packet::Publish(p) => Some((p.topic.clone(), p.payload.clone())),
        _ => None,
    })
    .await;
    assert_eq!(answer.0, wire::down_topic("SBX-B"));
    match wire::decode_response(&answer.1).unwrap() {
        ProvisionResponse::Provisioned {
            request_msg_id,
            device_id,
            ..
        } => {
            assert_eq!(request_msg_id, "b-request-1");
            assert!(device_id.starts_with("dev_"));
        }
        other => panic!("B was not provisioned: {other:?}"),
    }
    // A claim session asking for another serial than its own is refused.
    let stranger = ProvisionRequest::new("a-request-1", "SBX-C", "SB-1");
    a.publish(
        wire::up_topic("SBX-A"),
        QoS::AtLeastOnce,
        false,
        stranger.encode(),
    )
    .await
    .unwrap();
    let answer = until(&mut a_loop, |p| match p {
        Packet::Publish(p) => Some(p.payload.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        wire::decode_response(&answer).unwrap(),
        ProvisionResponse::refused("a-request-1", RefusalReason::InvalidRequest)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gema_claim_create_and_gema_sim_claim_provision_devices_that_reconnect_as_themselves() {
    use std::io::{BufRead, BufReader};

    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let quiet = daemon.cli_ok(&[
        "claim",
        "create",
        "--name",
        "quiet batch",
        "--serial-pattern",
        "Q-*",
        "--max-uses",
        "1",
        "-q",
    ]);
    let credential = ClaimCredential::parse(&quiet).expect("-q prints ID:SECRET");
    assert!(credential.claim_id.starts_with("clm_"), "{quiet}");

    let created: serde_json::Value = serde_json::from_str(&daemon.cli_ok(&[
        "claim",
        "create",
        "--name",
        "cli batch",
        "--serials",
        "CLI-0001,CLI-0002",
        "--max-uses",
        "2",
        "--expires-in-days",
        "7",
        "--json",
    ]))
    .unwrap();
    let ca = dir.path().join("claim-ca.pem");
    std::fs::write(&ca, created["ca_certificate_pem"].as_str().unwrap()).unwrap();
    let claim = format!(
        "{}:{}",
        created["claim"]["id"].as_str().unwrap(),
        created["secret"].as_str().unwrap()
    );
    let listed = daemon.cli_ok(&["claim", "list"]);
    assert!(
        listed.contains("0/2") && listed.contains("cli batch"),
        "{listed}"
    );

    let mut sim = std::process::Command::new(crate::helpers::GEMA)
        .args([
            "sim",
            "--claim",
            &claim,
            "--mqtt-port",
            &daemon.mqtt_addr.port().to_string(),
            "--ca",
            ca.to_str().unwrap(),
            "--count",
            "2",
            "--serial-prefix",
            "CLI-",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = sim.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut connected = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.contains("connected as itself") {
                connected += 1;
            }
            seen.push(line);
            if connected == 2 {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(Duration::from_secs(60), lines)
        .await
        .expect("the simulated devices provision and connect")
        .unwrap();
    let _ = sim.kill();
    let _ = sim.wait();
    let provisioned = lines
        .iter()
        .filter(|l| l.contains("provisioned as device dev_"))
        .count();
    assert_eq!(provisioned, 2, "{lines:?}");

    let shown = daemon.cli_ok(&[
        "claim",
        "provisionings",
        created["claim"]["id"].as_str().unwrap(),
    ]);
    assert!(
        shown.contains("CLI-0001") && shown.contains("CLI-0002"),
        "{shown}"
    );
    // Allowed again, a serial gets the same device a new secret.
    let allowed = daemon.cli_ok(&["claim", "allow-reprovision", "CLI-0001"]);
    assert!(allowed.contains("may be provisioned again"), "{allowed}");
    let revoked = daemon.cli_ok(&["claim", "revoke", created["claim"]["id"].as_str().unwrap()]);
    assert!(revoked.contains("revoked"), "{revoked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_boot_with_a_csr_gets_a_certificate_for_its_new_device() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let (claim, ca_pem) = create_claim(&daemon, "CSR-*", 2).await;
    let options = sim_options(daemon.mqtt_addr.port(), ca_pem, Arc::new(AtomicU8::new(0)));
    let csr = |common_name: &str| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.serialize_request(&key).unwrap().pem().unwrap()
    };
    // A CSR naming something other than the device's serial is refused, and takes no use.
    let wrong = provision(
        &options,
        &claim,
        "CSR-1",
        "SB-1",
        Some(csr("CSR-2")),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(
        matches!(wrong, Provisioned::Refused(RefusalReason::InvalidCsr)),
        "{wrong:?}"
    );

    let outcome = provision(
        &options,
        &claim,
        "CSR-1",
        "SB-1",
        Some(csr("CSR-1")),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let Provisioned::Device {
        device,
        certificate_pem,
    } = outcome
    else {
        panic!("not provisioned: {outcome:?}");
    };
    let pem = certificate_pem.expect("a certificate for the CSR");
    let der = gema_certs::first_certificate_der(&pem).unwrap();
    // Recorded as the new device's certificate (the device CA names the device id in it).
    let (_, listed) = daemon
        .get(&format!(
            "/api/v1/devices/{}/certificates",
            device.device_id
        ))
        .await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0]["serial"].as_str(),
        gema_certs::certificate_serial_hex(&der).as_deref()
    );
    let (_, claim_now) = daemon
        .get(&format!("/api/v1/claims/{}", claim.claim_id))
        .await;
    assert_eq!(claim_now["uses"], 1);
}
