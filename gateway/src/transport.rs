//! How the gateway reaches devices, and what devices send it. [`DeviceTransport`] is a
//! trait so the gateway never names the broker crate: the binary implements it over the
//! embedded broker's handle (`src/devices.rs`), tests use
//! `testing::RecordingTransport`. Uplinks and presence arrive as [`UplinkMessage`] and
//! [`Presence`] on channels given to [`crate::Gateway::run`].

use std::time::Duration;

/// What became of one publish to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The device's MQTT client acknowledged it (QoS 1 PUBACK).
    Acknowledged,
    /// The device has no live connection.
    Offline,
    /// Connected but not subscribed to the topic (a firmware or setup fault).
    NotSubscribed,
    /// Anything else: no acknowledgement in time, dropped, refused.
    Failed(String),
}

#[async_trait::async_trait]
pub trait DeviceTransport: Send + Sync + std::fmt::Debug {
    /// Publishes `payload` on `topic` (inside the device's downlink namespace) at QoS 1 and
    /// waits at most `wait` for the device's MQTT acknowledgement.
    async fn publish(
        &self,
        device_id: &str,
        topic: &str,
        payload: Vec<u8>,
        wait: Duration,
    ) -> PublishOutcome;

    /// Whether the device has a live connection now.
    fn is_connected(&self, device_id: &str) -> bool;

    /// How many devices have a live connection here now (this node's share of the fleet).
    fn connected_count(&self) -> usize;

    /// Ends the device's live connection (its credential was rotated or revoked, it was
    /// disabled or unbound with a kick). Returns whether one was live.
    fn disconnect(&self, device_id: &str) -> bool;
}

/// A message a device published, with the authenticated device id (never taken from the
/// topic or payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkMessage {
    pub device_id: String,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// A device came or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Connected { device_id: String },
    Disconnected { device_id: String, reason: String },
}

impl Presence {
    pub fn device_id(&self) -> &str {
        match self {
            Presence::Connected { device_id } | Presence::Disconnected { device_id, .. } => {
                device_id
            }
        }
    }
}
