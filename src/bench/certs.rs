//! `gema bench certs`: device certificates issued through the real daemon, two ways.
//!
//! - **Issuance over HTTP**: `POST /api/v1/devices/{id}/certificates` for N registered
//!   devices, `--concurrency` requests in flight, each a CSR made beforehand: the HTTP
//!   stack, the permission guard, the CSR check (parse, self-signature, name), signing
//!   with the device CA, and the certificate's row committed with its audit row. Timed
//!   from the first request to the last answer read: certificates per second.
//! - **Renewal over MQTT**: M of those devices connected over TLS with their new
//!   certificates each send a `cert_renew` at once; timed from the first publish to the
//!   last `cert_renew_result` received: renewals per second, and each device's latency.
//!   Device operations handle uplinks one at a time (each answer waits for the device's
//!   PUBACK), so this is the rate of that one queue.
//!
//! It prints figures; it asserts nothing. Steps: `start` (a daemon on a fresh SQLite file,
//! or the database given), `register` the devices and `csr` their requests (not measured),
//! then the measured `issue`; `connect` (not measured), then the measured `renew`.

// Rates and latencies for display only; no money is computed here.
#![allow(clippy::float_arithmetic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gema_firmware_protocol::topic::{MessageKind, downlink_filter, topic};
use gema_firmware_protocol::{
    CertRenew, CertRenewOutcome, Downlink, DownlinkBody, Encoding, Envelope, Uplink, decode, encode,
};
use reqwest::Method;
use rumqttc::tokio_rustls::rustls::{ClientConfig, RootCertStore};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::json;

use super::BenchDaemon;
use crate::cli::ApiClient;

#[derive(Debug, Clone)]
pub struct CertsBench {
    /// Devices given a certificate over HTTP.
    pub devices: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Of those devices, how many renew over MQTT (0: skip).
    pub renewals: usize,
    /// `None`: a fresh SQLite file. Otherwise a scratch database.
    pub database_url: Option<String>,
}

/// One device: its id, the key its first certificate is for, and the CSR.
struct BenchDevice {
    id: String,
    key: rcgen::KeyPair,
    csr: String,
}

pub async fn certs(bench: CertsBench) -> anyhow::Result<()> {
    if bench.devices == 0 || bench.concurrency == 0 {
        bail!("--devices and --concurrency must be at least 1");
    }
    let renewals = bench.renewals.min(bench.devices);
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let mut config = super::loopback_config(dir.path(), bench.database_url.as_deref())?;
    config.node.id = Some("bench-0".into());
    let backend = if bench.database_url.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    let daemon = BenchDaemon::start(config, None).await?;
    println!(
        "certs bench: {} devices, {} requests in flight, {renewals} renewals over MQTT, \
         on {backend}; ECDSA P-256 CSRs, the daemon's generated device CA (P-256)",
        bench.devices, bench.concurrency
    );

    let started = Instant::now();
    let (devices, ca_pem) = register(&daemon.api, bench.devices, bench.concurrency).await?;
    println!(
        "register: {} devices through the API, their keys and CSRs, in {:.2} s (not measured)",
        devices.len(),
        started.elapsed().as_secs_f64()
    );

    // Measured: every CSR signed through the HTTP API.
    let started = Instant::now();
    let chains = issue(&daemon.api, &devices, bench.concurrency).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "issue (HTTP API, real daemon: POST /api/v1/devices/{{id}}/certificates, guard, CSR \
         check, signing, row + audit row): {} certificates in {seconds:.3} s, {:.0} \
         certificates/s",
        chains.len(),
        chains.len() as f64 / seconds
    );

    if renewals > 0 {
        renew(&daemon, &devices[..renewals], &chains[..renewals], &ca_pem).await?;
    }
    daemon.stop().await
}

/// Registers `count` devices through the API and makes each a key and a CSR. Returns them
/// and the server CA they trust.
async fn register(
    api: &Arc<ApiClient>,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<BenchDevice>, Vec<u8>)> {
    let mut devices = Vec::with_capacity(count);
    let mut ca_pem = Vec::new();
    let indices: Vec<usize> = (0..count).collect();
    for chunk in indices.chunks(concurrency) {
        let jobs = chunk.iter().map(|i| {
            let api = api.clone();
            let serial = format!("BENCH-CERT-{i}");
            async move {
                api.call(
                    Method::POST,
                    "/devices",
                    &[],
                    Some(json!({ "serial": serial, "model": "SIM" })),
                )
                .await
            }
        });
        for answer in futures_util::future::join_all(jobs).await {
            let answer = answer?;
            let id = answer["device"]["id"]
                .as_str()
                .context("a device id in the answer")?
                .to_owned();
            if ca_pem.is_empty() {
                ca_pem = answer["credentials"]["ca_certificate_pem"]
                    .as_str()
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec();
            }
            let (key, csr) = key_and_csr(&id)?;
            devices.push(BenchDevice { id, key, csr });
        }
    }
    Ok((devices, ca_pem))
}

/// A new P-256 key and a CSR whose common name is `device_id`.
fn key_and_csr(device_id: &str) -> anyhow::Result<(rcgen::KeyPair, String)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, device_id);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key, csr))
}

/// Every device's CSR signed through the API, `concurrency` at a time; the chains (the
/// certificate, then the CA's), in the devices' order.
async fn issue(
    api: &Arc<ApiClient>,
    devices: &[BenchDevice],
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let mut chains = Vec::with_capacity(devices.len());
    for chunk in devices.chunks(concurrency) {
        let jobs = chunk.iter().map(|device| {
            let api = api.clone();
            let path = format!("/devices/{}/certificates", device.id);
            let body = json!({ "csr": device.csr });
            async move { api.call(Method::POST, &path, &[], Some(body)).await }
        });
        for answer in futures_util::future::join_all(jobs).await {
            let answer = answer?;
            let text = |key: &str| answer[key].as_str().unwrap_or_default().to_owned();
            chains.push(format!("{}{}", text("certificate_pem"), text("chain_pem")));
        }
    }
    Ok(chains)
}

/// A TLS MQTT session for `device` presenting `chain`, trusting `server_ca`; connected.
async fn connect(
    mqtt_port: u16,
    device: &BenchDevice,
    chain: &str,
    server_ca: &[u8],
) -> anyhow::Result<(AsyncClient, EventLoop)> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(
        rustls_pemfile::certs(&mut std::io::Cursor::new(server_ca)).filter_map(Result::ok),
    );
    let certs = rustls_pemfile::certs(&mut chain.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut device.key.serialize_pem().as_bytes())?
        .context("the device's key")?;
    let tls = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    let mut options = MqttOptions::new(&device.id, "localhost", mqtt_port);
    options.set_keep_alive(Duration::from_secs(60));
    options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls))));
    let (client, mut events) = AsyncClient::new(options, 10);
    client
        .subscribe(downlink_filter(&device.id), QoS::AtLeastOnce)
        .await?;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = events.poll().await? {
                return Ok::<_, anyhow::Error>(());
            }
        }
    })
    .await
    .context("no SUBACK within 30 s")??;
    Ok((client, events))
}

/// Each device sends one `cert_renew` at once over its live session and waits for the
/// answer. Prints the rate and the latencies.
async fn renew(
    daemon: &BenchDaemon,
    devices: &[BenchDevice],
    chains: &[String],
    server_ca: &[u8],
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(devices.len());
    for (device, chain) in devices.iter().zip(chains) {
        sessions.push(connect(daemon.mqtt_port, device, chain, server_ca).await?);
    }
    let mut csrs = Vec::with_capacity(devices.len());
    for device in devices {
        csrs.push(key_and_csr(&device.id)?.1);
    }
    println!(
        "connect: {} devices over TLS with their new certificates, new CSRs made, in {:.2} s \
         (not measured)",
        sessions.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let jobs =
        sessions
            .into_iter()
            .zip(devices)
            .zip(csrs)
            .map(|(((client, events), device), csr)| {
                let id = device.id.clone();
                tokio::spawn(async move { renew_one(client, events, &id, csr, started).await })
            });
    let mut latencies = Vec::with_capacity(devices.len());
    let mut refused = 0usize;
    for job in futures_util::future::join_all(jobs).await {
        let (issued, latency) = job.context("a renewing device")??;
        if !issued {
            refused += 1;
        }
        latencies.push(latency);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().unwrap_or_default()
    };
    println!(
        "renew (MQTT over TLS, real daemon: cert_renew → device operations → signing, row + \
         audit row → cert_renew_result): {} renewals in {seconds:.3} s, {:.0} renewals/s; \
         {refused} refused; latency from the first publish p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        latencies.len(),
        latencies.len() as f64 / seconds,
        at(0.5),
        at(0.99),
        at(1.0),
    );
    Ok(())
}

/// Publishes one `cert_renew` and polls until its answer: whether a certificate was
/// issued, and the time since `started`.
async fn renew_one(
    client: AsyncClient,
    mut events: EventLoop,
    device_id: &str,
    csr: String,
    started: Instant,
) -> anyhow::Result<(bool, Duration)> {
    let sent_at = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let ask = Uplink::new(
        Envelope::new("bench-renew", sent_at),
        CertRenew {
            request_id: "bench-renew".into(),
            csr_pem: csr,
        },
    );
    client
        .publish(
            topic(device_id, MessageKind::CertRenew, Encoding::Json),
            QoS::AtLeastOnce,
            false,
            encode(&ask, Encoding::Json),
        )
        .await?;
    let answer_topic = topic(device_id, MessageKind::CertRenewResult, Encoding::Json);
    let issued = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if let Event::Incoming(Packet::Publish(publish)) = events.poll().await?
                && publish.topic == answer_topic
            {
                let answer: Downlink = decode(&publish.payload, Encoding::Json)?;
                if let DownlinkBody::CertRenewResult(result) = answer.body {
                    return Ok::<_, anyhow::Error>(matches!(
                        result.outcome,
                        CertRenewOutcome::Issued(_)
                    ));
                }
            }
        }
    })
    .await
    .context("no answer to cert_renew within 120 s")??;
    let latency = started.elapsed();
    let _ = client.disconnect().await;
    Ok((issued, latency))
}
