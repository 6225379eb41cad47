//! The announcement relay: its main loop (what to dispatch, when to read the outbox next)
//! and one worker per device that delivers that device's announcements in sequence order.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gema_firmware_protocol::message::Language;
use gema_store::{AnnouncementDelivery, DeliveryResult, Store};
use tokio::sync::mpsc;

use super::announce;
use super::attempt::{self, AckWaiters, AttemptOutcome, Waits};
use super::backoff::{self, AfterFailure, Backoff};
use super::handover::Handover;
use super::results::ResultsSender;
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::lock;
use crate::transport::{DeviceTransport, Presence, UplinkMessage};

/// What became of one announcement a worker took.
enum Attempted {
    /// Delivered, expired or failed: the worker goes on to the next.
    Settled,
    /// Offline or to be retried: the device's later announcements wait behind it.
    Wait,
    /// Nothing written, nothing sent: another node holds the device (and was woken to
    /// deliver it), or the device's connection is younger than the replay grace (its
    /// replay delivers it).
    Elsewhere,
}

/// How the relay delivers (`[delivery]` has no config section yet: the daemon uses the
/// defaults).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
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
    /// The longest the relay goes without reading the outbox: the recheck that catches a
    /// lost signal from another node.
    pub outbox_recheck: Duration,
    /// How long after a device connects its pending announcements are replayed. An MQTT
    /// client re-sends, right after CONNACK, the QoS 1 messages whose PUBACK it did not get
    /// (among them acks of announcements it spoke just before the connection or the daemon
    /// died); they settle those announcements first. Measured with `gema bench crash-loop`
    /// (20 SIGKILLs, SQLite): 28–32 announcements received twice without it, 5–7 with
    /// 500 ms; with the broker's PUBACK of an ack also waiting for its commit (so every ack
    /// the daemon died holding is among those re-sent) and nothing at all sent to a
    /// connection younger than this (`DeviceTransport::connected_for`), 0 over 100
    /// SIGKILLs on either backend. Announcements committed meanwhile wait for the replay.
    pub replay_grace: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            puback_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(5),
            max_attempts: 8,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            language: Language::Id,
            offline_recheck: Duration::from_secs(30),
            outbox_recheck: Duration::from_secs(2),
            replay_grace: Duration::from_millis(500),
        }
    }
}

impl DeliverySettings {
    fn backoff(&self) -> Backoff {
        Backoff {
            initial: self.backoff_initial,
            max: self.backoff_max,
            max_attempts: self.max_attempts,
        }
    }

    fn waits(&self) -> Waits {
        Waits {
            puback: self.puback_timeout,
            ack: self.ack_timeout,
        }
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

/// Delivers announcements to devices (see the [module docs](super)).
#[derive(Debug)]
pub struct AnnouncementRelay {
    store: Arc<dyn Store>,
    transport: Arc<dyn DeviceTransport>,
    clock: Arc<dyn Clock>,
    settings: DeliverySettings,
    handover: Handover,
    results: ResultsSender,
    /// Devices with a delivery worker running (one at a time, so a device hears its
    /// announcements in order).
    workers: Mutex<HashMap<String, Worker>>,
    /// Attempts waiting for their device's `ack`, by message id.
    waiters: AckWaiters,
    /// Which devices other nodes hold, and how to wake them.
    cluster: Cluster,
}

impl AnnouncementRelay {
    /// `handover` is how producers wake it; `results` is the sender of the channel whose
    /// queue the one results writer (the payments commit loop) holds.
    pub fn new(
        store: Arc<dyn Store>,
        transport: Arc<dyn DeviceTransport>,
        clock: Arc<dyn Clock>,
        settings: DeliverySettings,
        handover: Handover,
        results: ResultsSender,
        cluster: Cluster,
    ) -> Arc<Self> {
        // Every final state has a series from the start, so "none expired" reads as 0 and
        // `increase()` sees the first one.
        for state in ["delivered", "expired", "failed"] {
            metrics::counter!("gema_announcements_total", "state" => state).increment(0);
        }
        Arc::new(Self {
            store,
            transport,
            clock,
            settings,
            handover,
            results,
            workers: Mutex::new(HashMap::new()),
            waiters: AckWaiters::default(),
            cluster,
        })
    }

    /// The relay's wake-up handle (what payments hands committed announcements to).
    pub fn handover(&self) -> &Handover {
        &self.handover
    }

    /// Runs until `shutdown` resolves: dispatches due announcements, handles device acks
    /// from `uplinks` and replays on `presence` connects. Acks and connects have tasks of
    /// their own, so an ack never waits behind an outbox query.
    #[tracing::instrument(name = "delivery", skip_all)]
    pub async fn run(
        self: Arc<Self>,
        mut uplinks: mpsc::Receiver<UplinkMessage>,
        mut presence: mpsc::Receiver<Presence>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let acks = tokio::spawn({
            let relay = self.clone();
            async move {
                // Each on a task of its own: a late ack waits for its commit, and the acks a
                // fleet re-sends after a restart must all be committed (in one batch, not one
                // after another) before their devices' replays, `replay_grace` later.
                while let Some(message) = uplinks.recv().await {
                    let relay = relay.clone();
                    tokio::spawn(async move { relay.handle_uplink(message).await });
                }
            }
        });
        let connects = tokio::spawn({
            let relay = self.clone();
            async move {
                while let Some(change) = presence.recv().await {
                    if let Presence::Connected { device_id } = change {
                        // After the grace: the device's client first re-sends the acks
                        // whose PUBACK it never got (the connection, or the daemon, died
                        // first); replaying before they arrive would make it receive
                        // announcements it has already spoken.
                        let relay = relay.clone();
                        let grace = relay.settings.replay_grace;
                        tokio::spawn(async move {
                            tokio::time::sleep(grace).await;
                            relay.start_worker(device_id, true);
                        });
                    }
                }
            }
        });
        tokio::pin!(shutdown);
        // The first outbox read waits `replay_grace` too: a device that reconnected to this
        // (re)started daemon before it got here is due a replay, and its client re-sends
        // the acks of what it already spoke first. Read at once, its announcements that
        // were in flight when the last run died would be sent again before those acks.
        tokio::select! {
            _ = &mut shutdown => {
                acks.abort();
                connects.abort();
                return;
            }
            _ = tokio::time::sleep(self.settings.replay_grace) => {}
        }
        let mut read_outbox = true;
        let mut wake_at = tokio::time::Instant::now();
        loop {
            // The plan (when to read the outbox next) changes only with the outbox's earliest
            // due time, which a hand-over does not move: handed-over announcements are due
            // now and their workers have them. Whatever a worker cannot deliver (a retry, an
            // offline device) asks for a read, and the plan is made again after it.
            if read_outbox {
                let now = self.clock.now_ms();
                let dispatched = self.clone().dispatch(now).await;
                let pause = match self.store.next_announcement_due_ms(now).await {
                    _ if dispatched.is_err() => Duration::from_secs(1),
                    _ if dispatched == Ok(true) => Duration::from_millis(50),
                    Ok(Some(due)) => Duration::from_millis(
                        u64::try_from(due - self.clock.now_ms())
                            .unwrap_or(0)
                            .clamp(50, 60_000),
                    ),
                    Ok(None) => Duration::from_secs(60),
                    Err(err) => {
                        tracing::error!(error = %err, "relay: reading the outbox failed");
                        Duration::from_secs(1)
                    }
                }
                .min(self.settings.outbox_recheck);
                wake_at = tokio::time::Instant::now() + pause;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.handover.woken() => {
                    let (handed, read) = self.handover.take();
                    self.offer(handed);
                    read_outbox = read;
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
        let full_page = due.len() >= PAGE as usize;
        let devices: HashSet<String> = due.into_iter().map(|a| a.device_id).collect();
        // Another page soon only if this one had work for this node: rows of devices held
        // elsewhere stay due until their node delivers them, and rereading them at once
        // would only signal that node again.
        let here = devices
            .iter()
            .any(|device_id| self.transport.is_connected(device_id));
        for device_id in devices {
            self.clone().start_worker(device_id, false);
        }
        Ok(full_page && here)
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
            Deliver(Box<AnnouncementDelivery>),
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
                    Next::Deliver(Box::new(a))
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
                    match self.deliver_one(*a).await {
                        Attempted::Settled => {
                            settled.insert(id);
                            continue;
                        }
                        // Offline, or a retry is scheduled: later announcements wait behind
                        // it in the outbox, unless a connect asked for a read meanwhile. The
                        // main loop plans its next wake from the outbox's earliest due time,
                        // which this result just moved: have it look again.
                        Attempted::Wait => self.handover.read_outbox(),
                        // Another node holds the device and was woken; nothing changed here.
                        Attempted::Elsewhere => {}
                    }
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
                    let until = if replay {
                        i64::MAX
                    } else {
                        self.clock.now_ms()
                    };
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

    /// Delivers one announcement, or says why the device's later ones must wait.
    #[tracing::instrument(skip_all, fields(announcement_id = %a.id, device_id = %a.device_id, transaction_id = %a.transaction_id))]
    async fn deliver_one(&self, a: AnnouncementDelivery) -> Attempted {
        let now = self.clock.now_ms();
        if a.expires_at_ms <= now {
            self.record(&a.id, DeliveryResult::Expired, "expired").await;
            return Attempted::Settled;
        }
        if !self.transport.is_connected(&a.device_id) {
            if self.cluster.held_elsewhere(&a.device_id).await.is_some() {
                // Its node delivers it. Nothing is written: the row stays due, so that
                // node's outbox recheck finds it if the wake-up is lost, and this node's
                // recheck wakes that node again while it stays pending.
                self.cluster.wake_elsewhere(&a.device_id);
                metrics::counter!("gema_announcement_attempts_total", "result" => "elsewhere")
                    .increment(1);
                return Attempted::Elsewhere;
            }
            let deferred = self.deferred(a.expires_at_ms);
            self.record(&a.id, deferred, "deferred").await;
            return Attempted::Wait;
        }
        if self
            .transport
            .connected_for(&a.device_id)
            .is_some_and(|age| age < self.settings.replay_grace)
        {
            // A fresh connection: its client is re-sending the acks of what it already
            // spoke, and the replay after `replay_grace` delivers this (nothing is written:
            // the row stays due). Sent now, an announcement that was in flight when the
            // connection or the daemon died would be heard twice.
            metrics::counter!("gema_announcement_attempts_total", "result" => "held_for_replay")
                .increment(1);
            return Attempted::Elsewhere;
        }
        let downlink = announce::downlink(&a, self.settings.language, now);
        let outcome = attempt::attempt(
            &*self.transport,
            &self.waiters,
            &a.device_id,
            &downlink,
            self.settings.waits(),
        )
        .await;
        // The device's `ack` uplink is acknowledged to it (PUBACK) only once its result is
        // committed: a crash before that leaves the device re-sending it.
        let mut settle = None;
        let result = match outcome {
            AttemptOutcome::Acked(status, ack) => {
                settle = Some(ack);
                announce::settled_by(status)
            }
            AttemptOutcome::NoAck => self.retry(&a, "no ack message from the device in time"),
            AttemptOutcome::Offline => self.deferred(a.expires_at_ms),
            AttemptOutcome::NotSubscribed => {
                self.retry(&a, "the device is not subscribed to its downlink topics")
            }
            AttemptOutcome::Failed(reason) => self.retry(&a, &reason),
        };
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
        let committed = self.record(&a.id, result, label).await;
        if committed && label == "delivered" {
            // From the commit of the callback that paid to the device's acknowledgement.
            let created_ms =
                i64::try_from(a.created_at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
            let latency_ms = u64::try_from(self.clock.now_ms() - created_ms).unwrap_or(0);
            metrics::histogram!("gema_announcement_ack_latency_seconds")
                .record(Duration::from_millis(latency_ms).as_secs_f64());
        }
        if let Some(settle) = settle.filter(|_| committed) {
            settle.settle();
        }
        if keep_going {
            Attempted::Settled
        } else {
            Attempted::Wait
        }
    }

    /// An offline device's announcement waits, without spending an attempt, for a
    /// reconnect or the offline recheck.
    fn deferred(&self, expires_at_ms: i64) -> DeliveryResult {
        DeliveryResult::Deferred {
            next_attempt_at_ms: backoff::offline_recheck_at(
                self.clock.now_ms(),
                self.settings.offline_recheck,
                expires_at_ms,
            ),
        }
    }

    /// Has the workers of `devices` (connected here) read their outbox now: another node
    /// committed announcements for them.
    pub fn wake_devices(self: &Arc<Self>, devices: Vec<String>) {
        for device_id in devices {
            self.clone().start_worker(device_id, true);
        }
    }

    /// Retry with exponential backoff, or give up after the attempt budget.
    fn retry(&self, a: &AnnouncementDelivery, error: &str) -> DeliveryResult {
        match self
            .settings
            .backoff()
            .after_failure(a.attempts, self.clock.now_ms())
        {
            AfterFailure::GiveUp { attempt } => DeliveryResult::Failed {
                error: format!("{error} (gave up after {attempt} attempts)"),
            },
            AfterFailure::RetryAt(at) => DeliveryResult::Retry {
                error: error.to_string(),
                next_attempt_at_ms: at,
            },
        }
    }

    /// Records a result through the commit loop; whether it was committed.
    async fn record(&self, id: &str, result: DeliveryResult, label: &'static str) -> bool {
        metrics::counter!("gema_announcement_attempts_total", "result" => label).increment(1);
        let final_state = match &result {
            DeliveryResult::Delivered => Some("delivered"),
            DeliveryResult::Expired => Some("expired"),
            DeliveryResult::Failed { .. } => Some("failed"),
            DeliveryResult::Retry { .. } | DeliveryResult::Deferred { .. } => None,
        };
        let committed = self.results.record(id, result).await;
        if let Some(state) = final_state.filter(|_| committed) {
            metrics::counter!("gema_announcements_total", "state" => state).increment(1);
        }
        tracing::debug!(
            announcement_id = id,
            result = label,
            committed,
            "announcement attempt recorded"
        );
        committed
    }

    /// Handles a device's uplink: an `ack` resolves the attempt waiting for its message id
    /// or, after a restart or a timeout, settles the announcement it names directly. Other
    /// kinds are ignored here. Malformed acks are counted and logged; one bad message never
    /// costs the device its connection.
    ///
    /// The uplink is settled (the device gets its PUBACK) once the ack's result is
    /// committed, by whoever records it (the waiting attempt's worker, or this); at once if
    /// it records nothing (malformed, another kind, an id that names no announcement);
    /// never if the write fails (the device sends the ack again).
    #[tracing::instrument(skip_all, fields(device_id = %message.device_id))]
    pub async fn handle_uplink(&self, mut message: UplinkMessage) {
        let settle = std::mem::take(&mut message.settle);
        let Some(ack) = attempt::read_ack(&message) else {
            settle.settle();
            return;
        };
        let Err(settle) = self.waiters.resolve(&ack.acked_msg_id, ack.status, settle) else {
            return;
        };
        if !ack.acked_msg_id.starts_with(announce::ID_PREFIX) {
            settle.settle();
            return;
        }
        // Only a still-pending announcement changes; a stray ack is harmless.
        let result = announce::settled_by(ack.status);
        if self.record(&ack.acked_msg_id, result, "late_ack").await {
            settle.settle();
        }
    }
}
