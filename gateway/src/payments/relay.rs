//! The announcement relay: delivers queued announcements to devices, at least once, in
//! order per device, never after their expiry.
//!
//! Work reaches it three ways. When a payment commits, the commit loop hands the committed
//! announcements over in memory ([`RelayWake::hand_over`]), so a delivery costs no outbox
//! read; the outbox (the `announcements` table) stays the record, and is read when the
//! earliest retry is due, when an operator re-queues an announcement, at start-up, and when a
//! device connects (its pending announcements are replayed at once, oldest first). Each attempt publishes the `announce` downlink at QoS 1, waits for the MQTT
//! PUBACK, then for the protocol-level `ack` uplink whose `acked_msg_id` is the announcement
//! id: `spoken` or `duplicate` → delivered, `expired` → expired, `rejected` → failed. No ack
//! in time → retried with exponential backoff while the device stays connected; an offline
//! device's announcements wait (without spending attempts) for it to come back or expire.
//!
//! Delivery is at least once: a crash between publish and ack re-sends after restart, and the
//! device deduplicates on the transaction id (and answers `duplicate`), so the amount is
//! spoken once.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
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

/// How the relay and the payments commit loop reach each other: committed announcements
/// handed over in memory, or a request to read the outbox (either wakes the relay at once);
/// and the other way, the relay's delivery results, which the commit loop writes (see
/// `service::commit_loop`).
#[derive(Debug)]
pub struct RelayWake {
    notify: Notify,
    handed: Mutex<Vec<AnnouncementDelivery>>,
    read_outbox: std::sync::atomic::AtomicBool,
    results: mpsc::Sender<PendingRecord>,
    results_queue: Mutex<Option<mpsc::Receiver<PendingRecord>>>,
}

impl RelayWake {
    pub fn new() -> Arc<Self> {
        let (results, queue) = mpsc::channel(4096);
        Arc::new(Self {
            notify: Notify::new(),
            handed: Mutex::new(Vec::new()),
            read_outbox: std::sync::atomic::AtomicBool::new(false),
            results,
            results_queue: Mutex::new(Some(queue)),
        })
    }

    /// The queue of delivery results, for the one writer that records them (the first to
    /// ask gets it).
    pub(crate) fn take_results(&self) -> Option<mpsc::Receiver<PendingRecord>> {
        lock(&self.results_queue).take()
    }

    /// Announcements just committed for bound devices, exactly as the outbox holds them.
    pub fn hand_over(&self, deliveries: impl IntoIterator<Item = AnnouncementDelivery>) {
        lock(&self.handed).extend(deliveries);
        self.notify.notify_one();
    }

    /// Something changed in the outbox that only a read will find (a re-queued
    /// announcement, a restart).
    pub fn read_outbox(&self) {
        self.read_outbox
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_one();
    }
}

/// A device's running delivery worker and what is waiting for it.
#[derive(Debug, Default)]
struct Worker {
    /// Handed-over announcements, in sequence order.
    queue: VecDeque<AnnouncementDelivery>,
    /// Read the device's outbox once the queue is empty (and deliver everything pending,
    /// not only what is due, if `replay`).
    read_outbox: bool,
    replay: bool,
    /// The last read filled its page: read the next one (in the same mode) when the queue
    /// is empty.
    next_page: Option<bool>,
}

/// A delivery result waiting for the next group commit.
#[derive(Debug)]
pub(crate) struct PendingRecord {
    pub id: String,
    pub result: DeliveryResult,
    /// Told once the result is written (or its write failed).
    pub done: oneshot::Sender<()>,
}

#[derive(Debug)]
pub struct AnnouncementRelay {
    store: Arc<dyn Store>,
    transport: Arc<dyn DeviceTransport>,
    settings: RelaySettings,
    wake: Arc<RelayWake>,
    /// Devices with a delivery worker running (one at a time, so a device hears its
    /// announcements in order).
    workers: Mutex<HashMap<String, Worker>>,
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
        wake: Arc<RelayWake>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            transport,
            settings,
            wake,
            workers: Mutex::new(HashMap::new()),
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
        let mut read_outbox = true;
        let mut wake_at = tokio::time::Instant::now();
        loop {
            // The plan (when to read the outbox next) changes only with the outbox's earliest
            // due time, which a hand-over does not move: handed-over announcements are due
            // now and their workers have them. Whatever a worker cannot deliver (a retry, an
            // offline device) asks for a read, and the plan is made again after it.
            if read_outbox {
                let now = now_ms();
                let dispatched = self.clone().dispatch(now).await;
                let pause = match self.store.next_announcement_due_ms(now).await {
                    _ if dispatched.is_err() => Duration::from_secs(1),
                    _ if dispatched == Ok(true) => Duration::from_millis(50),
                    Ok(Some(due)) => Duration::from_millis(
                        u64::try_from(due - now_ms()).unwrap_or(0).clamp(50, 60_000),
                    ),
                    Ok(None) => Duration::from_secs(60),
                    Err(err) => {
                        tracing::error!(error = %err, "relay: reading the outbox failed");
                        Duration::from_secs(1)
                    }
                };
                wake_at = tokio::time::Instant::now() + pause;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notify.notified() => {
                    let handed = std::mem::take(&mut *lock(&self.wake.handed));
                    self.offer(handed);
                    read_outbox = self
                        .wake
                        .read_outbox
                        .swap(false, std::sync::atomic::Ordering::SeqCst);
                }
                _ = tokio::time::sleep_until(wake_at) => read_outbox = true,
            }
        }
        acks.abort();
        connects.abort();
    }

    /// Starts a worker for every device with announcements due by `now`; `true` if there
    /// may be more than one read found.
    async fn dispatch(self: Arc<Self>, now: i64) -> Result<bool, ()> {
        const PAGE: u32 = 500;
        let due = match self.store.due_announcements(None, now, PAGE).await {
            Ok(due) => due,
            Err(err) => {
                tracing::error!(error = %err, "relay: reading due announcements failed");
                return Err(());
            }
        };
        let more = due.len() >= PAGE as usize;
        let devices: HashSet<String> = due.into_iter().map(|a| a.device_id).collect();
        for device_id in devices {
            self.clone().start_worker(device_id, false);
        }
        Ok(more)
    }

    /// Queues handed-over announcements on their devices' workers, starting those not
    /// running.
    fn offer(self: &Arc<Self>, deliveries: Vec<AnnouncementDelivery>) {
        let mut workers = lock(&self.workers);
        for delivery in deliveries {
            match workers.entry(delivery.device_id.clone()) {
                Entry::Occupied(mut worker) => worker.get_mut().queue.push_back(delivery),
                Entry::Vacant(slot) => {
                    let device_id = slot.key().clone();
                    slot.insert(Worker {
                        queue: VecDeque::from([delivery]),
                        ..Worker::default()
                    });
                    tokio::spawn(self.clone().run_worker(device_id));
                }
            }
        }
    }

    /// Has the device's worker read its outbox (starting the worker if none runs).
    /// `replay` delivers everything pending now, even if its retry time has not come (the
    /// device just connected).
    fn start_worker(self: Arc<Self>, device_id: String, replay: bool) {
        let mut workers = lock(&self.workers);
        match workers.entry(device_id) {
            Entry::Occupied(mut worker) => {
                let worker = worker.get_mut();
                worker.read_outbox = true;
                worker.replay |= replay;
            }
            Entry::Vacant(slot) => {
                let device_id = slot.key().clone();
                slot.insert(Worker {
                    read_outbox: true,
                    replay,
                    ..Worker::default()
                });
                tokio::spawn(self.clone().run_worker(device_id));
            }
        }
    }

    /// A device's worker: delivers handed-over announcements and what its outbox holds, in
    /// sequence order, until there is nothing left; it unregisters under the same lock
    /// that queues work, so nothing queued is ever left without a worker.
    async fn run_worker(self: Arc<Self>, device_id: String) {
        enum Next {
            Deliver(AnnouncementDelivery),
            Read { replay: bool },
        }
        const PAGE: u32 = 50;
        // Settled by this worker (delivered, expired or failed): a copy still queued or
        // read back before its result committed is skipped. An announcement that was
        // deferred or set to retry is not settled, so a later replay sends it again.
        let mut settled = HashSet::new();
        loop {
            let next = {
                let mut workers = lock(&self.workers);
                let Some(worker) = workers.get_mut(&device_id) else {
                    return;
                };
                if let Some(a) = worker.queue.pop_front() {
                    Next::Deliver(a)
                } else if worker.read_outbox {
                    worker.read_outbox = false;
                    Next::Read {
                        replay: std::mem::take(&mut worker.replay),
                    }
                } else if let Some(replay) = worker.next_page.take() {
                    Next::Read { replay }
                } else {
                    workers.remove(&device_id);
                    return;
                }
            };
            match next {
                Next::Deliver(a) => {
                    if settled.contains(&a.id) {
                        continue;
                    }
                    let id = a.id.clone();
                    if self.deliver_one(a).await {
                        settled.insert(id);
                        continue;
                    }
                    // Offline, or a retry is scheduled: later announcements wait behind it
                    // in the outbox, unless a connect asked for a read meanwhile. The main
                    // loop plans its next wake from the outbox's earliest due time, which
                    // this result just moved: have it look again.
                    self.wake.read_outbox();
                    let mut workers = lock(&self.workers);
                    if let Some(worker) = workers.get_mut(&device_id) {
                        worker.queue.clear();
                        worker.next_page = None;
                        if !worker.read_outbox {
                            workers.remove(&device_id);
                            return;
                        }
                    }
                }
                Next::Read { replay } => {
                    let until = if replay { i64::MAX } else { now_ms() };
                    let due = match self
                        .store
                        .due_announcements(Some(&device_id), until, PAGE)
                        .await
                    {
                        Ok(due) => due,
                        Err(err) => {
                            tracing::error!(error = %err, device_id, "relay: reading announcements failed");
                            Vec::new()
                        }
                    };
                    let full_page = due.len() >= PAGE as usize;
                    let fresh: Vec<_> = due
                        .into_iter()
                        .filter(|a| !settled.contains(&a.id))
                        .collect();
                    let mut workers = lock(&self.workers);
                    if let Some(worker) = workers.get_mut(&device_id) {
                        worker.queue.extend(fresh);
                        worker.queue.make_contiguous().sort_by_key(|a| a.sequence);
                        // The outbox may hold more than one page.
                        if full_page {
                            worker.next_page = Some(replay);
                        }
                    }
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
        if self.wake.results.send(pending).await.is_ok() {
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
