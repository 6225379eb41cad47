//! A factory-fresh simulated soundbox that provisions itself by claim: it connects with its
//! batch's claim (user name `claim:<claim id>`, client id = its serial), subscribes to
//! `provisioning/<serial>/down`, publishes its request on `provisioning/<serial>/up`, and
//! takes the answer: its own device id and secret (which [`super::run_device`] then connects
//! with), or the reason it was refused. `gema sim --claim`, the end-to-end tests and
//! `gema bench claims` use it.

use std::time::Duration;

use gema_firmware_protocol::claim::{
    self as wire, ProvisionRequest, ProvisionResponse, RefusalReason,
};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, Transport};

use super::{SimDevice, SimOptions, tls_config};

/// A claim's credential, as `gema claim create` printed it.
#[derive(Debug, Clone)]
pub struct ClaimCredential {
    pub claim_id: String,
    pub secret: String,
}

impl ClaimCredential {
    /// Parses `ID:SECRET`.
    pub fn parse(text: &str) -> Option<Self> {
        let (claim_id, secret) = text.split_once(':')?;
        (!claim_id.is_empty() && !secret.is_empty()).then(|| ClaimCredential {
            claim_id: claim_id.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

/// How a provisioning attempt ended.
#[derive(Debug, Clone)]
pub enum Provisioned {
    /// The device's own credential (and certificate chain, if it sent a CSR).
    Device {
        device: SimDevice,
        certificate_pem: Option<String>,
    },
    /// Gema answered with a refusal.
    Refused(RefusalReason),
    /// The broker refused the claim session at CONNECT (CONNACK code).
    ConnectRefused(String),
}

/// Provisions `serial` (model `model`) with `claim`, then disconnects: one first boot.
/// An error means no answer came within `timeout` or the connection failed otherwise.
pub async fn provision(
    options: &SimOptions,
    claim: &ClaimCredential,
    serial: &str,
    model: &str,
    csr_pem: Option<String>,
    timeout: Duration,
) -> anyhow::Result<Provisioned> {
    let mut mqtt = MqttOptions::new(serial, &options.host, options.port);
    mqtt.set_credentials(wire::claim_username(&claim.claim_id), &claim.secret);
    mqtt.set_keep_alive(options.keep_alive);
    mqtt.set_clean_session(true);
    mqtt.set_transport(Transport::Tls(tls_config(&options.ca_pem)));
    let (client, mut eventloop) = AsyncClient::new(mqtt, 8);
    // In a first-boot storm the TLS handshake can wait longer than rumqttc's 5 s default.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_connection_timeout(30);
    eventloop.set_network_options(network);
    let mut requested = false;
    let down = wire::down_topic(serial);
    let msg_id = ulid_like(serial);
    let mut request = ProvisionRequest::new(msg_id.clone(), serial, model);
    request.firmware_version = Some("sim-1.0".into());
    request.csr_pem = csr_pem;
    let run = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code != ConnectReturnCode::Success {
                        return Ok(Provisioned::ConnectRefused(format!("{:?}", ack.code)));
                    }
                    client.subscribe(&down, QoS::AtLeastOnce).await?;
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        anyhow::bail!("the subscription to {down} was refused");
                    }
                    client
                        .publish(
                            wire::up_topic(serial),
                            QoS::AtLeastOnce,
                            false,
                            request.encode(),
                        )
                        .await?;
                    requested = true;
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == down => {
                    let response = wire::decode_response(&p.payload)
                        .map_err(|e| anyhow::anyhow!("undecodable answer: {e}"))?;
                    return Ok(match response {
                        ProvisionResponse::Provisioned {
                            request_msg_id,
                            device_id,
                            secret,
                            certificate_pem,
                            ..
                        } => {
                            anyhow::ensure!(
                                request_msg_id == msg_id,
                                "an answer to another request"
                            );
                            Provisioned::Device {
                                device: SimDevice { device_id, secret },
                                certificate_pem,
                            }
                        }
                        ProvisionResponse::Refused { reason, .. } => Provisioned::Refused(reason),
                    });
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    return Ok(Provisioned::ConnectRefused(format!("{code:?}")));
                }
                // Before its request went out, a device just tries again, as firmware
                // would (the next poll reconnects); after, the answer may be lost with the
                // connection, and this first boot failed.
                Err(_) if !requested => tokio::time::sleep(Duration::from_millis(250)).await,
                Err(e) => return Err(anyhow::Error::new(e)),
            }
        }
    };
    let outcome = tokio::time::timeout(timeout, run).await.map_err(|_| {
        anyhow::anyhow!("no answer to the provisioning request of {serial} within {timeout:?}")
    })?;
    // Let the PUBACK of the answer go out, then hang up.
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    outcome
}

/// A message id unique enough for a simulator: the serial and the time.
fn ulid_like(serial: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut id = format!("{nanos:x}-{serial}");
    id.truncate(64);
    id
}

/// `gema sim --claim ID:SECRET`: `--count` factory-fresh devices (serials
/// `--serial-prefix` plus a number) provision themselves at once, print what they got, and
/// those provisioned run as themselves until Ctrl-C.
pub async fn run_fleet(args: crate::cli::SimArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU8;

    use anyhow::Context;

    use super::{SimEvent, run_device};

    let claim = args
        .claim
        .as_deref()
        .and_then(ClaimCredential::parse)
        .context("--claim must be ID:SECRET")?;
    let ca = args.ca.as_ref().context("--claim needs --ca")?;
    let options = SimOptions {
        host: args.mqtt_host.clone().unwrap_or_else(|| "localhost".into()),
        port: args.mqtt_port.context("--claim needs --mqtt-port")?,
        ca_pem: std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?,
        drop_ack_percent: Arc::new(AtomicU8::new(args.drop_acks.min(100))),
        disconnect_percent: args.disconnect.min(100),
        keep_alive: Duration::from_secs(60),
        periodic_heartbeats: true,
    };
    let prefix = super::serial_prefix(&args);
    let boots = (1..=args.count).map(|i| {
        let (options, claim) = (options.clone(), claim.clone());
        let serial = format!("{prefix}{i:04}");
        tokio::spawn(async move {
            let outcome = provision(
                &options,
                &claim,
                &serial,
                "SIM-SOUNDBOX",
                None,
                Duration::from_secs(60),
            )
            .await;
            (serial, outcome)
        })
    });
    let mut devices = Vec::new();
    for boot in futures_util::future::join_all(boots).await {
        let (serial, outcome) = boot.context("a first boot's task")?;
        match outcome {
            Ok(Provisioned::Device { device, .. }) => {
                println!("{serial}: provisioned as device {}", device.device_id);
                devices.push(device);
            }
            Ok(Provisioned::Refused(reason)) => println!("{serial}: refused ({})", reason.as_str()),
            Ok(Provisioned::ConnectRefused(code)) => {
                println!("{serial}: claim session refused at CONNECT ({code})")
            }
            Err(e) => println!("{serial}: {e:#}"),
        }
    }
    if devices.is_empty() {
        anyhow::bail!("no device was provisioned");
    }
    let (tx, mut events) = tokio::sync::mpsc::channel(1024);
    let count = devices.len();
    for device in devices {
        tokio::spawn(run_device(device, options.clone(), tx.clone()));
    }
    println!("running {count} provisioned soundbox(es) as themselves; Ctrl-C stops");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.recv() => match event {
                Some(SimEvent::Connected { device_id }) => println!("{device_id} connected as itself"),
                Some(SimEvent::Disconnected { device_id, error }) => {
                    println!("{device_id} disconnected: {error}")
                }
                Some(SimEvent::Spoke { device_id, transaction_id, amount, .. }) => println!(
                    "{device_id}: \"pembayaran diterima, {} rupiah\" ({transaction_id})",
                    super::terbilang(amount)
                ),
                Some(_) => {}
                None => break,
            },
        }
    }
    Ok(())
}

/// Connects once as `device` (its own id and secret) and hangs up after the CONNACK: the
/// last step of a first boot. An error if the broker refuses it or no CONNACK comes.
pub async fn connect_as_itself(options: &SimOptions, device: &SimDevice) -> anyhow::Result<()> {
    let mut mqtt = MqttOptions::new(&device.device_id, &options.host, options.port);
    mqtt.set_credentials(&device.device_id, &device.secret);
    mqtt.set_keep_alive(options.keep_alive);
    mqtt.set_clean_session(true);
    mqtt.set_transport(Transport::Tls(tls_config(&options.ca_pem)));
    let (client, mut eventloop) = AsyncClient::new(mqtt, 4);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_connection_timeout(30);
    eventloop.set_network_options(network);
    loop {
        match eventloop.poll().await? {
            Event::Incoming(Packet::ConnAck(ack)) => {
                anyhow::ensure!(
                    ack.code == ConnectReturnCode::Success,
                    "{} refused: {:?}",
                    device.device_id,
                    ack.code
                );
                break;
            }
            _ => continue,
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    Ok(())
}
