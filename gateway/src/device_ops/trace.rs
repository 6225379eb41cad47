//! The message trace: the last N MQTT messages per device, both directions, for support
//! staff. Kept **in memory** (a ring per device, lost on restart, per node): it is a
//! debugging aid, not a record; the durable facts (announcements, config, heartbeats) are in
//! the store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gema_firmware_protocol::message::{
    CertRenewOutcome, Downlink, DownlinkBody, Uplink, UplinkBody,
};
use gema_firmware_protocol::{Direction, decode_on_topic, parse_topic};

use crate::clock::Clock;
use crate::transport::{DeviceTransport, PublishOutcome};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    pub at_ms: i64,
    /// `up` (device → Gema) or `down`.
    pub direction: &'static str,
    pub topic: String,
    pub size: usize,
    /// What the message says, decoded (or why it could not be).
    pub summary: String,
    /// Downlinks: what became of the publish (`acknowledged`, `offline`, …).
    pub outcome: Option<String>,
}

/// Rings of the last `per_device` messages, for at most `max_devices` devices (the least
/// recently active device's ring is dropped first).
#[derive(Debug)]
pub struct MessageTrace {
    per_device: usize,
    max_devices: usize,
    rings: Mutex<HashMap<String, (u64, VecDeque<TraceEntry>)>>,
    tick: std::sync::atomic::AtomicU64,
}

impl MessageTrace {
    pub fn new(per_device: usize, max_devices: usize) -> Self {
        Self {
            per_device: per_device.max(1),
            max_devices: max_devices.max(1),
            rings: Mutex::new(HashMap::new()),
            tick: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn record(&self, device_id: &str, entry: TraceEntry) {
        let tick = self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut rings = self
            .rings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !rings.contains_key(device_id) && rings.len() >= self.max_devices {
            let oldest = rings
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                rings.remove(&oldest);
            }
        }
        let (last, ring) = rings
            .entry(device_id.to_string())
            .or_insert_with(|| (tick, VecDeque::new()));
        *last = tick;
        if ring.len() >= self.per_device {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// The device's traced messages, newest first.
    pub fn messages(&self, device_id: &str) -> Vec<TraceEntry> {
        let rings = self
            .rings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rings
            .get(device_id)
            .map(|(_, ring)| ring.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

/// A one-line summary of a payload on `topic`: never fails, never panics.
pub fn summarize(topic: &str, payload: &[u8]) -> String {
    let Ok(parsed) = parse_topic(topic) else {
        return "unknown topic".into();
    };
    match parsed.direction {
        Direction::Up => match decode_on_topic::<Uplink>(&parsed, payload) {
            Ok(up) => uplink_summary(&up),
            Err(err) => format!("malformed: {err}"),
        },
        Direction::Down => match decode_on_topic::<Downlink>(&parsed, payload) {
            Ok(down) => downlink_summary(&down),
            Err(err) => format!("malformed: {err}"),
        },
    }
}

fn uplink_summary(up: &Uplink) -> String {
    match &up.body {
        UplinkBody::Ack(a) => format!("ack {} {:?}", a.acked_msg_id, a.status).to_lowercase(),
        UplinkBody::CommandResult(r) => format!("command_result {} {:?}", r.command_id, r.state),
        UplinkBody::Heartbeat(h) => format!(
            "heartbeat battery={} signal={} fw={} audio={} config_version={}",
            h.battery_pct
                .map_or_else(|| "-".into(), |p| format!("{p}%")),
            h.signal_dbm
                .map_or_else(|| "-".into(), |d| format!("{d}dBm")),
            h.firmware_version,
            h.audio_pack_version,
            h.config_version
        ),
        UplinkBody::ReportedConfig(r) => format!(
            "reported_config applied_version={} cause={:?} volume={}",
            r.applied_version, r.cause, r.config.volume
        ),
        UplinkBody::DynamicQrRequest(q) => {
            format!("qr_request {} amount={}", q.request_id, q.amount)
        }
        UplinkBody::ButtonEvent(b) => format!("button {:?} {:?}", b.button, b.press),
        // The CSR itself is never shown.
        UplinkBody::CertRenew(r) => {
            format!("cert_renew {} csr={} bytes", r.request_id, r.csr_pem.len())
        }
    }
}

fn downlink_summary(down: &Downlink) -> String {
    match &down.body {
        DownlinkBody::Announce(a) => format!(
            "announce {} amount={} seq={}",
            a.transaction_id, a.amount, a.sequence
        ),
        DownlinkBody::DynamicQrShow(q) => {
            format!("qr_show {} amount={}", q.transaction_id, q.amount)
        }
        DownlinkBody::DynamicQrClear(c) => format!(
            "qr_clear {} {:?}",
            c.transaction_id
                .as_deref()
                .or(c.request_id.as_deref())
                .unwrap_or("-"),
            c.reason
        ),
        DownlinkBody::ConfigPush(c) => format!(
            "config version={} volume={}",
            c.config_version, c.config.volume
        ),
        DownlinkBody::Command(c) => {
            format!("command {} {}", c.command_id, super::action_name(&c.action))
        }
        DownlinkBody::CertRenewResult(r) => match &r.outcome {
            CertRenewOutcome::Issued(cert) => {
                format!(
                    "cert_renew_result {} issued serial={}",
                    r.request_id, cert.serial
                )
            }
            CertRenewOutcome::Refused(reason) => {
                format!("cert_renew_result {} refused {reason:?}", r.request_id).to_lowercase()
            }
        },
    }
}

/// A [`DeviceTransport`] that records every downlink in the trace, then passes it on.
#[derive(Debug)]
pub struct TracingTransport {
    pub inner: Arc<dyn DeviceTransport>,
    pub trace: Arc<MessageTrace>,
    pub clock: Arc<dyn Clock>,
}

#[async_trait::async_trait]
impl DeviceTransport for TracingTransport {
    async fn publish(
        &self,
        device_id: &str,
        topic: &str,
        payload: Vec<u8>,
        wait: Duration,
    ) -> PublishOutcome {
        let at_ms = self.clock.now_ms();
        let size = payload.len();
        let summary = summarize(topic, &payload);
        let outcome = self.inner.publish(device_id, topic, payload, wait).await;
        let label = match &outcome {
            PublishOutcome::Acknowledged => "acknowledged".to_string(),
            PublishOutcome::Offline => "offline".to_string(),
            PublishOutcome::NotSubscribed => "not_subscribed".to_string(),
            PublishOutcome::Failed(reason) => format!("failed: {reason}"),
        };
        self.trace.record(
            device_id,
            TraceEntry {
                at_ms,
                direction: "down",
                topic: topic.to_string(),
                size,
                summary,
                outcome: Some(label),
            },
        );
        outcome
    }

    fn is_connected(&self, device_id: &str) -> bool {
        self.inner.is_connected(device_id)
    }

    fn connected_for(&self, device_id: &str) -> Option<std::time::Duration> {
        self.inner.connected_for(device_id)
    }

    fn connected_count(&self) -> usize {
        self.inner.connected_count()
    }

    fn disconnect(&self, device_id: &str) -> bool {
        self.inner.disconnect(device_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> TraceEntry {
        TraceEntry {
            at_ms: n as i64,
            direction: "up",
            topic: format!("t{n}"),
            size: n,
            summary: String::new(),
            outcome: None,
        }
    }

    #[test]
    fn rings_keep_the_newest_per_device_and_bound_the_devices() {
        let trace = MessageTrace::new(3, 2);
        for n in 0..5 {
            trace.record("a", entry(n));
        }
        let sizes: Vec<usize> = trace.messages("a").iter().map(|e| e.size).collect();
        assert_eq!(sizes, vec![4, 3, 2]);
        trace.record("b", entry(9));
        trace.record("c", entry(10)); // evicts "a", the least recently active
        assert!(trace.messages("a").is_empty());
        assert_eq!(trace.messages("b").len(), 1);
        assert_eq!(trace.messages("c").len(), 1);
    }

    #[test]
    fn summaries_never_fail() {
        assert_eq!(summarize("nope", b"{}"), "unknown topic");
        assert!(summarize("devices/d1/up/heartbeat", b"{oops").starts_with("malformed"));
        let hb = br#"{"type":"heartbeat","version":1,"msg_id":"m1","sent_at":1,"battery_pct":80,"charging":false,"signal_dbm":-70,"network":"4g","firmware_version":"1.2","audio_pack_version":"a1","uptime_s":5,"last_transaction_id":null,"config_version":2}"#;
        assert_eq!(
            summarize("devices/d1/up/heartbeat", hb),
            "heartbeat battery=80% signal=-70dBm fw=1.2 audio=a1 config_version=2"
        );
    }

    proptest::proptest! {
        #[test]
        fn summarize_takes_any_bytes(topic in "devices/[a-z0-9]{1,4}/(up|down)/[a-z_]{1,16}(/bin)?", payload in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = summarize(&topic, &payload);
        }
    }
}
