//! How the gateway reaches devices, and what devices send it. [`DeviceTransport`] is a
//! trait so the gateway never names the broker crate: the binary implements it over the
//! embedded broker's handle (`src/devices.rs`), tests use
//! `testing::RecordingTransport`. Uplinks and presence arrive as [`UplinkMessage`] and
//! [`Presence`] on channels given to [`crate::Gateway::run`].

use std::time::Duration;

use tokio::sync::oneshot;

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

    /// How long the device's live connection has lasted, if the transport knows (`None`:
    /// not connected, or unknown). Delivery holds back what it would send a device in the
    /// first `replay_grace` of a connection, for the replay that follows.
    fn connected_for(&self, device_id: &str) -> Option<Duration>;

    /// How many devices have a live connection here now (this node's share of the fleet).
    fn connected_count(&self) -> usize;

    /// Ends the device's live connection (its credential was rotated or revoked, it was
    /// disabled or unbound with a kick). Returns whether one was live.
    fn disconnect(&self, device_id: &str) -> bool;
}

/// A message a device published, with the authenticated device id (never taken from the
/// topic or payload).
#[derive(Debug)]
pub struct UplinkMessage {
    pub device_id: String,
    pub topic: String,
    pub payload: Vec<u8>,
    /// Settled once the uplink's effect is durable (see [`Settle`]).
    pub settle: Settle,
}

impl UplinkMessage {
    /// An uplink nobody waits on to acknowledge it (tests, QoS 0).
    pub fn new(device_id: impl Into<String>, topic: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            device_id: device_id.into(),
            topic: topic.into(),
            payload,
            settle: Settle::none(),
        }
    }
}

/// How the gateway tells the transport that an uplink's effect is durable, so the device
/// may be told it was received (the MQTT PUBACK of a QoS 1 PUBLISH). [`Settle::settle`]
/// once the write that records it has committed (an announcement's `ack`: once the commit
/// loop's transaction holding its result succeeded), or at once for an uplink the gateway
/// records nothing for. Dropped without settling (the write failed, the gateway is
/// stopping): the transport does not acknowledge it and the device sends it again after
/// reconnecting. A plain `oneshot` sender underneath, so the gateway names no broker type.
#[derive(Debug, Default)]
pub struct Settle(Option<oneshot::Sender<()>>);

impl Settle {
    /// A handle that completes `sender`.
    pub fn new(sender: oneshot::Sender<()>) -> Self {
        Self(Some(sender))
    }

    /// A handle nobody waits on.
    pub fn none() -> Self {
        Self(None)
    }

    /// A handle and the receiver it completes (for transports and tests).
    pub fn pair() -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Self::new(tx), rx)
    }

    /// The uplink's effect is durable: the transport may acknowledge it.
    pub fn settle(mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(());
        }
    }
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
