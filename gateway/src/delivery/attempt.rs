//! One attempt at a downlink, of any kind: publish it at QoS 1, wait for the MQTT PUBACK,
//! then for the device's protocol-level `ack` uplink naming the downlink's message id.
//!
//! Ack matching is keyed by the envelope's `msg_id` alone ([`AckWaiters`]), so an
//! announcement (`ann_…`), a config push or a command share it: whoever publishes a
//! downlink and wants its `ack` registers the id before publishing, and every `ack` uplink
//! is offered here first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use gema_firmware_protocol::message::{Ack, AckStatus, Downlink, Uplink, UplinkBody};
use gema_firmware_protocol::topic::{MessageKind, parse_topic};
use gema_firmware_protocol::{Encoding, decode_on_topic, encode};
use tokio::sync::oneshot;

use crate::transport::{DeviceTransport, PublishOutcome, Settle, UplinkMessage};

/// What became of one attempt.
#[derive(Debug)]
pub(crate) enum AttemptOutcome {
    /// The device answered with an `ack` of this status; settle its uplink once the result
    /// is committed.
    Acked(AckStatus, Settle),
    /// The device's MQTT client took it (PUBACK), but no `ack` message came in time.
    NoAck,
    /// The device has no live connection.
    Offline,
    /// Connected, not subscribed to its downlink topics.
    NotSubscribed,
    /// No PUBACK in time, dropped, refused.
    Failed(String),
}

/// An `ack` on its way to the attempt waiting for it, with its uplink's settle handle.
type AckWaiter = oneshot::Sender<(AckStatus, Settle)>;

/// Attempts waiting for their `ack`, by message id.
#[derive(Debug, Default)]
pub(crate) struct AckWaiters {
    waiting: Mutex<HashMap<String, AckWaiter>>,
}

impl AckWaiters {
    /// Hands `status` and the uplink's `settle` to the attempt waiting for `msg_id`, which
    /// records the result and then settles. Gives `settle` back if no attempt took it (a
    /// late ack, an ack after a restart, a stray one, or an attempt that stopped waiting
    /// this instant): the caller records the ack itself.
    pub(crate) fn resolve(
        &self,
        msg_id: &str,
        status: AckStatus,
        settle: Settle,
    ) -> Result<(), Settle> {
        let Some(waiter) = self.waiting().remove(msg_id) else {
            return Err(settle);
        };
        waiter.send((status, settle)).map_err(|(_, settle)| settle)
    }

    fn expect(&self, msg_id: &str) -> oneshot::Receiver<(AckStatus, Settle)> {
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(msg_id.to_string(), tx);
        rx
    }

    fn forget(&self, msg_id: &str) {
        self.waiting().remove(msg_id);
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, AckWaiter>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long an attempt waits for each acknowledgement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waits {
    pub puback: Duration,
    pub ack: Duration,
}

/// Publishes `downlink` to `device_id` (JSON) and waits for the PUBACK, then for the `ack`
/// naming its message id.
pub(crate) async fn attempt(
    transport: &dyn DeviceTransport,
    waiters: &AckWaiters,
    device_id: &str,
    downlink: &Downlink,
    waits: Waits,
) -> AttemptOutcome {
    let encoding = Encoding::Json;
    let topic = downlink.topic(device_id, encoding);
    let msg_id = downlink.envelope.msg_id.as_str();
    // Registered before publishing: the ack can arrive before `publish` returns.
    let ack = waiters.expect(msg_id);
    let published = transport
        .publish(device_id, &topic, encode(downlink, encoding), waits.puback)
        .await;
    let outcome = match published {
        PublishOutcome::Acknowledged => match tokio::time::timeout(waits.ack, ack).await {
            Ok(Ok((status, settle))) => AttemptOutcome::Acked(status, settle),
            Ok(Err(_)) | Err(_) => AttemptOutcome::NoAck,
        },
        PublishOutcome::Offline => AttemptOutcome::Offline,
        PublishOutcome::NotSubscribed => AttemptOutcome::NotSubscribed,
        PublishOutcome::Failed(reason) => AttemptOutcome::Failed(reason),
    };
    waiters.forget(msg_id);
    outcome
}

/// The `ack` a device's uplink carries; `None` for other kinds. A malformed ack or an
/// unknown topic is counted and logged, never a reason to disconnect.
pub(crate) fn read_ack(message: &UplinkMessage) -> Option<Ack> {
    let Ok(topic) = parse_topic(&message.topic) else {
        metrics::counter!("gema_uplinks_rejected_total", "reason" => "topic", "kind" => "unknown")
            .increment(1);
        tracing::warn!(device_id = %message.device_id, topic = %message.topic, "uplink on an unknown topic");
        return None;
    };
    if topic.kind != MessageKind::Ack {
        return None; // other uplink kinds belong to device operations
    }
    let uplink: Uplink = match decode_on_topic(&topic, &message.payload) {
        Ok(uplink) => uplink,
        Err(err) => {
            metrics::counter!("gema_uplinks_rejected_total", "reason" => "payload", "kind" => "ack")
                .increment(1);
            tracing::warn!(device_id = %message.device_id, error = %err, "malformed ack uplink");
            return None;
        }
    };
    let UplinkBody::Ack(ack) = uplink.body else {
        return None;
    };
    metrics::counter!("gema_uplinks_total", "kind" => "ack").increment(1);
    Some(ack)
}
