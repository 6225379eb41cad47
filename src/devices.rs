//! The glue between the embedded broker and the gateway: the broker's `Authenticator` over
//! the device registry, the gateway's `DeviceTransport` over the broker's handle, and the
//! tasks that carry uplinks and presence from one to the other.

use std::net::SocketAddr;
use std::time::Duration;

use gema_broker::{
    AuthRefusal, BrokerConfig, BrokerHandle, DeliveryOutcome, DeniedPublish, DenyAction, Identity,
    PlainListenerConfig, PresenceChange, PresenceFeed, QoS, Rule, ServicePrincipal,
};
use gema_certs::TlsFiles;
use gema_gateway::transport::{DeviceTransport, Presence, PublishOutcome, Settle, UplinkMessage};
use gema_gateway::{Registry, SecretCheck};
use tokio::sync::mpsc;

use crate::config::MqttConfig;

/// The broker's configuration from `[mqtt]` and the TLS files.
pub fn broker_config(mqtt: &MqttConfig, tls: &TlsFiles) -> BrokerConfig {
    let mut config = BrokerConfig::new(&tls.server_cert, &tls.server_key);
    config.tls.bind = mqtt.listen;
    config.tls.handshake_timeout = Duration::from_secs(mqtt.handshake_timeout_secs);
    config.tls.max_concurrent_handshakes = mqtt.max_concurrent_handshakes;
    // The device CA the binary prepared (the operator's or the generated one) replaces
    // this in `App::build`.
    config.tls.client_ca = mqtt.device_ca.clone();
    config.limits.backlog = mqtt.backlog;
    config.limits.max_connections = mqtt.max_connections;
    config.limits.max_packet_size = mqtt.max_packet_size;
    config.limits.presence_capacity = mqtt.presence_capacity;
    config.plain = mqtt.plain_listen.map(|bind| PlainListenerConfig {
        bind,
        anonymous_service: mqtt.plain_anonymous_service.clone(),
    });
    config.services = mqtt
        .services
        .iter()
        .map(|service| ServicePrincipal {
            name: service.name.clone(),
            // The broker checks a service's password itself, in constant time.
            password: service.password.as_ref().map(|p| p.expose().to_owned()),
            // Validated when the configuration was loaded (and again by `Broker::start`).
            rules: Rule::parse_list(&service.rules).unwrap_or_default(),
        })
        .collect();
    config.denied_publish = DeniedPublish {
        action: match mqtt.deny_action {
            crate::config::DenyAction::Ignore => DenyAction::Ignore,
            crate::config::DenyAction::Disconnect => DenyAction::Disconnect,
        },
        flood_limit: mqtt.deny_flood_limit,
        flood_window: Duration::from_secs(mqtt.deny_flood_window_secs),
    };
    config
}

/// Devices authenticate against the registry. (Service principals with a password are
/// checked by the broker itself and never reach this.)
pub struct RegistryAuthenticator {
    pub registry: Registry,
    /// Decides certificates: revocation list, supersession, `last_auth`.
    pub certificates: gema_gateway::certificates::DeviceCertificates,
    /// Claim sessions (`claim:<claim id>`): provisioning by claim (`crate::claims`).
    pub claims: gema_gateway::claims::Claims,
}

impl std::fmt::Debug for RegistryAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuthenticator")
            .finish_non_exhaustive()
    }
}

fn refusal(check: SecretCheck) -> Result<(), AuthRefusal> {
    match check {
        SecretCheck::Valid => Ok(()),
        SecretCheck::Wrong | SecretCheck::UnknownDevice => Err(AuthRefusal::BadCredentials),
        SecretCheck::Revoked | SecretCheck::Disabled => Err(AuthRefusal::NotAuthorized),
    }
}

#[async_trait::async_trait]
impl gema_broker::Authenticator for RegistryAuthenticator {
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
        _peer: SocketAddr,
    ) -> Result<Identity, AuthRefusal> {
        if let Some(claim_id) = gema_firmware_protocol::claim::claim_id_of(username) {
            return crate::claims::authenticate(&self.claims, claim_id, password).await;
        }
        let check = self
            .registry
            .check_device_secret(username, password)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "device authentication could not reach the registry");
                AuthRefusal::Unavailable
            })?;
        refusal(check).map(|()| Identity::Device(username.to_string()))
    }

    async fn authorize_certificate(
        &self,
        device_id: &str,
        certificate: &gema_broker::ClientCertificate,
        _peer: SocketAddr,
    ) -> Result<(), AuthRefusal> {
        let check = self
            .certificates
            .authorize(device_id, &certificate.serial, &certificate.fingerprint)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "certificate check could not reach the registry");
                AuthRefusal::Unavailable
            })?;
        refusal(check)
    }
}

/// The gateway's view of the embedded broker.
#[derive(Debug, Clone)]
pub struct BrokerTransport {
    pub handle: BrokerHandle,
}

#[async_trait::async_trait]
impl DeviceTransport for BrokerTransport {
    async fn publish(
        &self,
        device_id: &str,
        topic: &str,
        payload: Vec<u8>,
        wait: Duration,
    ) -> PublishOutcome {
        let receipt = match self.handle.publish(gema_broker::Downlink {
            device_id: device_id.to_string(),
            topic: topic.to_string(),
            payload: payload.into(),
            qos: QoS::AtLeastOnce,
            retain: false,
        }) {
            Ok(receipt) => receipt,
            Err(err) => return PublishOutcome::Failed(err.to_string()),
        };
        match tokio::time::timeout(wait, receipt.outcome()).await {
            Ok(DeliveryOutcome::Acknowledged | DeliveryOutcome::Sent) => {
                PublishOutcome::Acknowledged
            }
            Ok(DeliveryOutcome::Offline { .. }) => PublishOutcome::Offline,
            Ok(DeliveryOutcome::NotSubscribed) => PublishOutcome::NotSubscribed,
            Ok(DeliveryOutcome::Dropped(reason)) => {
                PublishOutcome::Failed(format!("dropped by the broker: {}", reason.as_label()))
            }
            Err(_) => PublishOutcome::Failed(format!("no PUBACK within {wait:?}")),
        }
    }

    fn is_connected(&self, device_id: &str) -> bool {
        self.handle.is_connected(device_id)
    }

    fn connected_for(&self, device_id: &str) -> Option<Duration> {
        self.handle
            .connected_since(device_id)
            .map(|since| since.elapsed().unwrap_or_default())
    }

    fn connected_count(&self) -> usize {
        self.handle.connected_count()
    }

    fn disconnect(&self, device_id: &str) -> bool {
        self.handle.disconnect(device_id)
    }
}

/// Carries device uplinks from the broker to the gateway, as they come, each with the
/// broker's settle handle (its PUBACK waits for the gateway to settle it).
pub fn forward_uplinks(
    mut from: mpsc::Receiver<gema_broker::Uplink>,
    to: mpsc::Sender<UplinkMessage>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(uplink) = from.recv().await {
            let message = UplinkMessage {
                device_id: uplink.device_id,
                topic: uplink.topic,
                payload: uplink.payload.to_vec(),
                // The broker PUBACKs a QoS 1 uplink once the gateway settles this.
                settle: uplink.settle.map(Settle::new).unwrap_or_default(),
            };
            if to.send(message).await.is_err() {
                break;
            }
        }
    })
}

/// Carries presence changes from the broker to the gateway, and logs them. The broker's
/// [`PresenceFeed`] cannot lose a device's latest state (it resynchronises from the session
/// set when it falls behind), and the gateway's channel is waited on, so no change is lost
/// here either: while the gateway is busy, the feed falls behind and catches up later.
pub fn forward_presence(
    mut from: PresenceFeed,
    to: mpsc::Sender<Presence>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let batch = from.recv_batch(1024).await;
            if batch.is_empty() {
                break;
            }
            for event in batch {
                let presence = match event.change {
                    PresenceChange::Connected { peer, .. } => {
                        tracing::info!(device_id = %event.device_id, %peer, "device connected");
                        Presence::Connected {
                            device_id: event.device_id,
                        }
                    }
                    PresenceChange::Disconnected { reason } => {
                        tracing::info!(device_id = %event.device_id, reason = reason.as_label(), "device disconnected");
                        Presence::Disconnected {
                            device_id: event.device_id,
                            reason: reason.as_label().to_string(),
                        }
                    }
                };
                if to.send(presence).await.is_err() {
                    return;
                }
            }
        }
    })
}
