//! The announcement relay: delivers queued announcements to devices, at least once, in
//! order per device, never after their expiry.
//!
//! It wakes when a payment commits (a `Notify` from [`super::Payments`]), when the earliest
//! retry is due, and when a device connects (its pending announcements are replayed at once,
//! oldest first). Each attempt publishes the `announce` downlink at QoS 1, waits for the MQTT
//! PUBACK, then for the protocol-level `ack` uplink whose `acked_msg_id` is the announcement
//! id: `spoken` or `duplicate` → delivered, `expired` → expired, `rejected` → failed. No ack
//! in time → retried with exponential backoff while the device stays connected; an offline
//! device's announcements wait (without spending attempts) for it to come back or expire.
//!
//! Delivery is at least once: a crash between publish and ack re-sends after restart, and the
//! device deduplicates on the transaction id (and answers `duplicate`), so the amount is
//! spoken once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gema_firmware_protocol::message::{
    AckStatus, Announce, Currency, Downlink, DownlinkBody, Envelope, Language, Uplink, UplinkBody,
};
use gema_firmware_protocol::topic::{MessageKind, parse_topic};
use gema_firmware_protocol::{Encoding, decode_on_topic, encode};
use gema_store::{AnnouncementDelivery, DeliveryResult, Store};
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot};

use super::service::unix_ms;
use crate::transport::{DeviceTransport, Presence, PublishOutcome, UplinkMessage};

#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// How long to wait for the MQTT PUBACK.
    pub puback_timeout: Duration,
    /// How long to wait, after the PUBACK, for the device's `ack` message.
    pub ack_timeout: Duration,
    /// Attempts (sends) before an announcement is marked failed.
    pub max_attempts: i64,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Language of announcements to devices with no desired config (see `device_ops`).
    pub language: Language,
    /// How often an offline device's pending announcements are looked at again, in case
    /// its reconnect event was lost.
    pub offline_recheck: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            puback_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(5),
            max_attempts: 8,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            language: Language::Id,
            offline_recheck: Duration::from_secs(30),
        }
    }
}

/// A delivery result waiting for the next group commit.
#[derive(Debug)]
struct PendingRecord {
    id: String,
    result: DeliveryResult,
    done: oneshot::Sender<()>,
}

/// Writes delivery results in batches: every result that arrived while the previous write
/// ran goes into one transaction, so recording does not cost an fsync per announcement.
async fn record_loop(store: Arc<dyn Store>, mut queue: mpsc::Receiver<PendingRecord>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (results, done): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|r| ((r.id, r.result), r.done))
            .unzip();
        if let Err(err) = store.record_deliveries(results).await {
            // The announcements stay pending; the relay re-sends and the device dedupes.
            tracing::error!(error = %err, "relay: recording deliveries failed");
        }
        for done in done {
            let _ = done.send(());
        }
    }
}

#[derive(Debug)]
pub struct AnnouncementRelay {
    records: mpsc::Sender<PendingRecord>,
    store: Arc<dyn Store>,
    transport: Arc<dyn DeviceTransport>,
    settings: RelaySettings,
    wake: Arc<Notify>,
    /// Devices with a delivery worker running.
    busy: Mutex<HashSet<String>>,
    /// Announcement id → the attempt waiting for its ack.
    waiting: Mutex<HashMap<String, oneshot::Sender<AckStatus>>>,
}

fn now_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AnnouncementRelay {
    pub fn new(
        store: Arc<dyn Store>,
        transport: Arc<dyn DeviceTransport>,
        settings: RelaySettings,
        wake: Arc<Notify>,
    ) -> Arc<Self> {
        let (records, queue) = mpsc::channel(4096);
        tokio::spawn(record_loop(store.clone(), queue));
        Arc::new(Self {
            records,
            store,
            transport,
            settings,
            wake,
            busy: Mutex::new(HashSet::new()),
            waiting: Mutex::new(HashMap::new()),
        })
    }

    /// Runs until `shutdown` resolves: dispatches due announcements, handles device acks
    /// from `uplinks` and replays on `presence` connects. Acks and connects have tasks of
    /// their own, so an ack never waits behind an outbox query.
    pub async fn run(
        self: Arc<Self>,
        mut uplinks: mpsc::Receiver<UplinkMessage>,
        mut presence: mpsc::Receiver<Presence>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let acks = tokio::spawn({
            let relay = self.clone();
            async move {
                while let Some(message) = uplinks.recv().await {
                    relay.handle_uplink(message).await;
                }
            }
        });
        let connects = tokio::spawn({
            let relay = self.clone();
            async move {
                while let Some(change) = presence.recv().await {
                    if let Presence::Connected { device_id } = change {
                        relay.clone().start_worker(device_id, true);
                    }
                }
            }
        });
        tokio::pin!(shutdown);
        loop {
            self.clone().dispatch(None).await;
            let pause = match self.store.next_announcement_due_ms().await {
                Ok(Some(due)) => Duration::from_millis(
                    u64::try_from(due - now_ms()).unwrap_or(0).clamp(50, 60_000),
                ),
                Ok(None) => Duration::from_secs(60),
                Err(err) => {
                    tracing::error!(error = %err, "relay: reading the outbox failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        acks.abort();
        connects.abort();
    }

    /// Starts a worker for every device with due announcements (or for one device).
    async fn dispatch(self: Arc<Self>, device: Option<&str>) {
        let due = match self.store.due_announcements(device, now_ms(), 500).await {
            Ok(due) => due,
            Err(err) => {
                tracing::error!(error = %err, "relay: reading due announcements failed");
                return;
            }
        };
        let devices: HashSet<String> = due.into_iter().map(|a| a.device_id).collect();
        for device_id in devices {
            self.clone().start_worker(device_id, false);
        }
    }

    /// One worker per device at a time: delivers its announcements in sequence order.
    /// `replay` delivers everything pending now, even if its retry time has not come
    /// (the device just connected).
    fn start_worker(self: Arc<Self>, device_id: String, replay: bool) {
        if !lock(&self.busy).insert(device_id.clone()) {
            return;
        }
        tokio::spawn(async move {
            self.deliver_device(&device_id, replay).await;
            lock(&self.busy).remove(&device_id);
            // Something may have been queued for this device while we were busy.
            self.wake.notify_one();
        });
    }

    async fn deliver_device(&self, device_id: &str, replay: bool) {
        let mut seen = HashSet::new();
        loop {
            let until = if replay { i64::MAX } else { now_ms() };
            let due = match self
                .store
                .due_announcements(Some(device_id), until, 50)
                .await
            {
                Ok(due) => due,
                Err(err) => {
                    tracing::error!(error = %err, device_id, "relay: reading announcements failed");
                    return;
                }
            };
            let fresh: Vec<_> = due
                .into_iter()
                .filter(|a| seen.insert(a.id.clone()))
                .collect();
            if fresh.is_empty() {
                return;
            }
            for announcement in fresh {
                if !self.deliver_one(announcement).await {
                    return; // offline or retry scheduled: later announcements wait behind it
                }
            }
        }
    }

    /// Delivers one announcement; `false` if later ones for this device must wait.
    #[tracing::instrument(skip_all, fields(announcement_id = %a.id, device_id = %a.device_id, transaction_id = %a.transaction_id))]
    async fn deliver_one(&self, a: AnnouncementDelivery) -> bool {
        let now = now_ms();
        if a.expires_at_ms <= now {
            self.record(&a.id, DeliveryResult::Expired, "expired").await;
            return true;
        }
        if !self.transport.is_connected(&a.device_id) {
            self.record(
                &a.id,
                DeliveryResult::Deferred {
                    next_attempt_at_ms: self.recheck_at(a.expires_at_ms),
                },
                "deferred",
            )
            .await;
            return false;
        }
        let downlink = Downlink {
            envelope: Envelope::new(a.id.clone(), now),
            body: DownlinkBody::Announce(Announce {
                transaction_id: a.transaction_id.clone(),
                amount: a.amount,
                currency: Currency::Idr,
                provider: a.provider.clone().unwrap_or_else(|| "direct".into()),
                issuer: a.issuer.clone(),
                language: announcement_language(
                    a.desired_config.as_deref(),
                    self.settings.language,
                ),
                paid_at: a.paid_at.map(unix_ms).unwrap_or(now),
                expires_at: a.expires_at_ms,
                sequence: u64::try_from(a.sequence).unwrap_or(0),
            }),
        };
        let encoding = Encoding::Json;
        let topic = downlink.topic(&a.device_id, encoding);
        let (ack_tx, ack_rx) = oneshot::channel();
        lock(&self.waiting).insert(a.id.clone(), ack_tx);

        let published = self
            .transport
            .publish(
                &a.device_id,
                &topic,
                encode(&downlink, encoding),
                self.settings.puback_timeout,
            )
            .await;
        let result = match published {
            PublishOutcome::Acknowledged => {
                match tokio::time::timeout(self.settings.ack_timeout, ack_rx).await {
                    Ok(Ok(AckStatus::Spoken | AckStatus::Duplicate | AckStatus::Processed)) => {
                        DeliveryResult::Delivered
                    }
                    Ok(Ok(AckStatus::Expired)) => DeliveryResult::Expired,
                    Ok(Ok(AckStatus::Rejected)) => DeliveryResult::Failed {
                        error: "the device rejected the announcement".into(),
                    },
                    Ok(Err(_)) | Err(_) => self.retry(&a, "no ack message from the device in time"),
                }
            }
            PublishOutcome::Offline => DeliveryResult::Deferred {
                next_attempt_at_ms: self.recheck_at(a.expires_at_ms),
            },
            PublishOutcome::NotSubscribed => {
                self.retry(&a, "the device is not subscribed to its downlink topics")
            }
            PublishOutcome::Failed(reason) => self.retry(&a, &reason),
        };
        lock(&self.waiting).remove(&a.id);
        let keep_going = matches!(
            result,
            DeliveryResult::Delivered | DeliveryResult::Expired | DeliveryResult::Failed { .. }
        );
        let label = match &result {
            DeliveryResult::Delivered => "delivered",
            DeliveryResult::Expired => "expired",
            DeliveryResult::Failed { .. } => "failed",
            DeliveryResult::Retry { .. } => "retry",
            DeliveryResult::Deferred { .. } => "deferred",
        };
        self.record(&a.id, result, label).await;
        keep_going
    }

    /// When to look at an offline device's announcement again: on reconnect (the presence
    /// event replays it), and also every `offline_recheck`, because presence events can be
    /// lost when their channel lags behind a reconnect storm. A recheck costs a lookup, not
    /// an attempt.
    fn recheck_at(&self, expires_at_ms: i64) -> i64 {
        let recheck =
            i64::try_from(self.settings.offline_recheck.as_millis()).unwrap_or(i64::MAX / 2);
        expires_at_ms.min(now_ms() + recheck)
    }

    /// Retry with exponential backoff, or give up after the attempt budget.
    fn retry(&self, a: &AnnouncementDelivery, error: &str) -> DeliveryResult {
        let attempt = a.attempts + 1;
        if attempt >= self.settings.max_attempts {
            return DeliveryResult::Failed {
                error: format!("{error} (gave up after {attempt} attempts)"),
            };
        }
        let shift = u32::try_from(a.attempts.clamp(0, 16)).unwrap_or(16);
        let backoff = self
            .settings
            .backoff_initial
            .saturating_mul(1u32 << shift)
            .min(self.settings.backoff_max);
        DeliveryResult::Retry {
            error: error.to_string(),
            next_attempt_at_ms: now_ms()
                + i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX / 2),
        }
    }

    async fn record(&self, id: &str, result: DeliveryResult, label: &'static str) {
        metrics::counter!("gema_announcement_attempts_total", "result" => label).increment(1);
        let (done, recorded) = oneshot::channel();
        let pending = PendingRecord {
            id: id.to_string(),
            result,
            done,
        };
        if self.records.send(pending).await.is_ok() {
            let _ = recorded.await;
        }
        tracing::debug!(
            announcement_id = id,
            result = label,
            "announcement attempt recorded"
        );
    }

    /// Handles a device's uplink: acks resolve the waiting attempt (or, after a restart or a
    /// timeout, settle the announcement directly). Malformed messages are counted and
    /// logged; one bad message never costs the device its connection.
    pub async fn handle_uplink(&self, message: UplinkMessage) {
        let Ok(topic) = parse_topic(&message.topic) else {
            metrics::counter!("gema_uplinks_rejected_total", "reason" => "topic", "kind" => "unknown")
                .increment(1);
            tracing::warn!(device_id = %message.device_id, topic = %message.topic, "uplink on an unknown topic");
            return;
        };
        if topic.kind != MessageKind::Ack {
            return; // other uplink kinds belong to device operations
        }
        let uplink: Uplink = match decode_on_topic(&topic, &message.payload) {
            Ok(uplink) => uplink,
            Err(err) => {
                metrics::counter!("gema_uplinks_rejected_total", "reason" => "payload", "kind" => "ack")
                    .increment(1);
                tracing::warn!(device_id = %message.device_id, error = %err, "malformed ack uplink");
                return;
            }
        };
        let UplinkBody::Ack(ack) = uplink.body else {
            return;
        };
        metrics::counter!("gema_uplinks_total", "kind" => "ack").increment(1);
        let waiter = lock(&self.waiting).remove(&ack.acked_msg_id);
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(ack.status);
            }
            None if ack.acked_msg_id.starts_with("ann_") => {
                let result = match ack.status {
                    AckStatus::Spoken | AckStatus::Duplicate | AckStatus::Processed => {
                        DeliveryResult::Delivered
                    }
                    AckStatus::Expired => DeliveryResult::Expired,
                    AckStatus::Rejected => DeliveryResult::Failed {
                        error: "the device rejected the announcement".into(),
                    },
                };
                // Only a still-pending announcement changes; a stray ack is harmless.
                self.record(&ack.acked_msg_id, result, "late_ack").await;
            }
            None => {}
        }
    }
}

/// The language of the device's desired config (JSON), or `default` when it has none (or
/// it cannot be read).
fn announcement_language(desired_config: Option<&str>, default: Language) -> Language {
    #[derive(serde::Deserialize)]
    struct LanguageOnly {
        language: Language,
    }
    desired_config
        .and_then(|json| serde_json::from_str::<LanguageOnly>(json).ok())
        .map_or(default, |c| c.language)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_follow_the_devices_desired_language() {
        let en = r#"{"volume":5,"language":"en","heartbeat_interval_s":60,"qr_timeout_s":300,"quiet_hours":null}"#;
        assert_eq!(announcement_language(Some(en), Language::Id), Language::En);
        assert_eq!(announcement_language(None, Language::Id), Language::Id);
        assert_eq!(
            announcement_language(Some("{oops"), Language::Id),
            Language::Id
        );
    }
}
