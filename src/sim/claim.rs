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
