//! What the broker tells the process that embeds it, as plain values: a device's
//! [`Uplink`]s, its presence ([`PresenceEvent`]), what became of a [`Downlink`]
//! ([`DeliveryReceipt`], [`DeliveryOutcome`]) and why a connection ended or a message was
//! dropped. Nothing here does I/O.

use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;
use tokio::sync::oneshot;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT (its will is discarded).
    ClientDisconnect,
    /// The socket closed or failed without DISCONNECT.
    ConnectionLost,
    /// Nothing received for 1.5 × the keepalive.
    KeepaliveTimeout,
    /// The client stopped reading what the broker sends.
    WriteTimeout,
    /// Malformed, oversized or out-of-order packet (including a second CONNECT).
    ProtocolViolation,
    /// The client published outside what its ACL allows.
    AclViolation,
    /// Another connection with the same client id took the session over.
    Takeover,
    /// [`BrokerHandle::disconnect`](crate::BrokerHandle::disconnect) (revocation, rotation, unbinding).
    Kicked,
    /// The broker is shutting down.
    Shutdown,
    /// The consumer of a device's QoS 1 uplink dropped its settle handle (it could not
    /// record the uplink) or did not settle it within the settle timeout: the PUBACK is
    /// withheld and the connection closed, so the client sends it again after reconnecting.
    UplinkUnsettled,
    /// Never a connection's own ending: a [`crate::PresenceFeed`] that fell behind found the
    /// device gone from the session set, and the event naming the real reason was lost.
    Unobserved,
}

impl DisconnectReason {
    pub fn as_label(&self) -> &'static str {
        match self {
            DisconnectReason::ClientDisconnect => "client_disconnect",
            DisconnectReason::ConnectionLost => "connection_lost",
            DisconnectReason::KeepaliveTimeout => "keepalive_timeout",
            DisconnectReason::WriteTimeout => "write_timeout",
            DisconnectReason::ProtocolViolation => "protocol_violation",
            DisconnectReason::AclViolation => "acl_violation",
            DisconnectReason::Takeover => "takeover",
            DisconnectReason::Kicked => "kicked",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::UplinkUnsettled => "uplink_unsettled",
            DisconnectReason::Unobserved => "unobserved",
        }
    }

    /// Whether the Last Will is published for this ending (MQTT 3.1.1 §3.1.2.5: any close
    /// not preceded by DISCONNECT; a broker shutdown is not the device's failure).
    pub(crate) fn fires_will(&self) -> bool {
        !matches!(
            self,
            DisconnectReason::ClientDisconnect | DisconnectReason::Shutdown
        )
    }
}

/// Why a queued message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The session's queue was full; the oldest message went.
    QueueFull,
    /// It waited longer than the queue age limit.
    Expired,
    /// The session was discarded (clean session ended, expired, or replaced) first.
    SessionEnded,
    /// QoS 0 for an offline session, or anything for a non-persistent offline one.
    Offline,
}

impl DropReason {
    pub fn as_label(&self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Expired => "expired",
            DropReason::SessionEnded => "session_ended",
            DropReason::Offline => "offline",
        }
    }
}

/// What became of a downlink for the device it was addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// QoS 0: written to the device's connection (there is no acknowledgement).
    Sent,
    /// QoS 1: PUBACK received; QoS 2: PUBCOMP received.
    Acknowledged,
    /// The device has no live connection. `queued`: its persistent session holds the message
    /// and will deliver it on reconnect (no further receipt is given).
    Offline {
        queued: bool,
    },
    /// The device is connected but not subscribed to the topic.
    NotSubscribed,
    Dropped(DropReason),
}

/// A message for one device, from the gateway.
#[derive(Debug, Clone)]
pub struct Downlink {
    pub device_id: String,
    /// Must lie inside `devices/<device_id>/down/`.
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

/// Resolves once the addressed device acknowledged the downlink, or it is known that it
/// will not (now).
#[derive(Debug)]
pub struct DeliveryReceipt {
    pub(crate) rx: oneshot::Receiver<DeliveryOutcome>,
}

impl DeliveryReceipt {
    /// Waits for the outcome. A persistent session's inflight message survives reconnects,
    /// so this may wait as long as the device stays away; callers put their own timeout.
    pub async fn outcome(self) -> DeliveryOutcome {
        self.rx
            .await
            .unwrap_or(DeliveryOutcome::Dropped(DropReason::SessionEnded))
    }
}

/// A message a device published, after the ACL allowed it.
#[derive(Debug)]
pub struct Uplink {
    /// The authenticated device, never taken from the topic or the payload.
    pub device_id: String,
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// This is the device's Last Will, published because its connection died.
    pub last_will: bool,
    pub received_at: SystemTime,
    /// For a QoS 1 PUBLISH: the broker writes its PUBACK only once this is sent `()`, i.e.
    /// once the consumer has made the uplink's effect durable (or decided it records
    /// nothing). PUBACKs leave in the order the PUBLISHes came (MQTT 3.1.1 §4.6), so one
    /// unsettled uplink holds back the PUBACKs of the device's later ones; the connection
    /// keeps reading meanwhile, up to [`crate::Limits::max_unsettled_uplinks`]. Dropped
    /// without sending, or not sent within [`crate::Limits::settle_timeout`]: no PUBACK,
    /// and the connection is closed, so the device's client sends the PUBLISH again after
    /// it reconnects. `None` for QoS 0 and 2 (QoS 2 gets its PUBREC on routing) and Last
    /// Wills.
    pub settle: Option<oneshot::Sender<()>>,
}

/// What a claim session published on `provisioning/<serial>/up`, after the ACL allowed it.
/// Seen by nobody else (not routed to subscribers); the answer goes back with
/// [`crate::BrokerHandle::answer_provisioning`].
#[derive(Debug)]
pub struct ProvisioningRequest {
    /// The claim the session authenticated with, never taken from the payload.
    pub claim_id: String,
    /// The session's client id.
    pub serial: String,
    pub payload: Bytes,
    pub received_at: SystemTime,
}

/// A device came or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    pub device_id: String,
    /// The connection this is about. Ids only grow: a device's later connection has the
    /// larger one, which is how a [`crate::PresenceFeed`] tells a stale event from news.
    pub connection: u64,
    pub at: SystemTime,
    pub change: PresenceChange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceChange {
    Connected {
        peer: SocketAddr,
        session_present: bool,
    },
    Disconnected {
        reason: DisconnectReason,
    },
}
