//! The sender worker (one per cluster, on the node holding the `whatsapp-sender` lease) and
//! the webhook processor (on every node).
//!
//! The worker keeps each sender's queue and pacing in memory: every poll it reads the due
//! pending rows it does not know yet, and whenever a sender's pace allows, it claims the
//! first message it may send (`pending → sending`, committed) and sends it on a task of its
//! own. A claim is a compare-and-set on `pending`, so a message is sent at most once even
//! if two nodes briefly both think they hold the lease. When the worker (re)starts it first
//! marks rows left `sending` past their claim `uncertain` (and looks again once per claim
//! timeout, for claims that had not run out yet), and replays the last 24 hours of sends
//! into its pacing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use gema_store::{MessageStatus, OPERATOR_SENDER, SenderKind, WaMessage, WaSendOutcome, WaSender};
use tokio::sync::mpsc;

use super::pacing::{Jitter, PaceLimits, SenderPace};
use super::transport::{SendAttempt, SenderTarget};
use super::webhook::{self, DeliveryStatus, Keyword, Progress, StatusUpdate};
use super::wire::{self, ErrorClass, Outgoing};
use super::{CloudNumber, GatewayEndpoint, Kind, Route, WhatsApp};
use crate::cluster::{Cluster, ClusterWork};
use crate::error::GatewayResult;
use crate::jakarta::JAKARTA;

const DAY_MS: i64 = 24 * 3600 * 1000;
/// Due rows read per poll.
const READ_BATCH: i64 = 5_000;
/// Requests in flight per sender.
const IN_FLIGHT_PER_SENDER: usize = 4;
/// How far into a sender's queue the worker looks for a message it may send now (one
/// recipient's gap must not hold up everyone behind it).
const LOOKAHEAD: usize = 64;
/// A webhook naming a message id not recorded yet (its send's answer is being committed)
/// is looked at again for this long.
const UNKNOWN_WAMID_GRACE_MS: i64 = 60_000;

#[derive(Debug, Clone)]
struct Queued {
    id: String,
    recipient: String,
    bulk: bool,
}

#[derive(Debug, Default)]
struct SenderQueue {
    urgent: VecDeque<Queued>,
    bulk: VecDeque<Queued>,
}

/// What a finished send tells the pacing.
#[derive(Debug)]
enum PaceEffect {
    None,
    PauseSender(i64),
    HoldRecipient(String, i64),
    Throttled(i64),
}

#[derive(Debug)]
struct Done {
    sender: String,
    id: String,
    effect: PaceEffect,
}

/// The instant the next Jakarta day starts.
fn next_jakarta_midnight_ms(now_ms: i64) -> i64 {
    let now = crate::clock::from_unix_ms(now_ms).to_offset(JAKARTA);
    now.date()
        .next_day()
        .map(|day| crate::clock::unix_ms(day.midnight().assume_offset(JAKARTA)))
        .unwrap_or(now_ms + DAY_MS)
}

fn progress(status: MessageStatus) -> Progress {
    match status {
        MessageStatus::Sent => Progress::Sent,
        MessageStatus::Delivered => Progress::Delivered,
        MessageStatus::Read => Progress::Read,
        MessageStatus::Failed => Progress::Failed,
        MessageStatus::Pending
        | MessageStatus::Sending
        | MessageStatus::Uncertain
        | MessageStatus::Cancelled => Progress::Unsent,
    }
}

fn status_of(progress: Progress) -> Option<MessageStatus> {
    match progress {
        Progress::Sent => Some(MessageStatus::Sent),
        Progress::Delivered => Some(MessageStatus::Delivered),
        Progress::Read => Some(MessageStatus::Read),
        Progress::Failed => Some(MessageStatus::Failed),
        Progress::Unsent => None,
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

struct Worker {
    wa: WhatsApp,
    paces: HashMap<String, SenderPace>,
    queues: HashMap<String, SenderQueue>,
    known: HashSet<String>,
    in_flight: HashMap<String, usize>,
    targets: HashMap<String, (SenderTarget, PaceLimits)>,
    throttles: HashMap<String, u32>,
    jitter: Jitter,
    inbound_seen_ms: i64,
    /// When rows left `sending` past their claim are next looked for.
    stale_check_ms: i64,
    done_tx: mpsc::UnboundedSender<Done>,
}

impl Worker {
    fn limits_for(&self, sender: Option<&WaSender>, route: &Route) -> PaceLimits {
        let settings = self.wa.settings();
        let mut limits = settings.pacing.clone();
        if matches!(route, Route::Gateway(_)) {
            limits.bulk = settings.gateway_bulk.clone();
        }
        if let Some(sender) = sender {
            if let Some(rate) = sender.rate_per_sec {
                limits.rate_per_sec = u32::try_from(rate).unwrap_or(limits.rate_per_sec);
            }
            if let Some(daily) = sender.daily_recipients {
                limits.daily_recipients = u32::try_from(daily).unwrap_or(u32::MAX);
            }
        }
        limits
    }

    /// Reads the senders (merchants' and the operator's) into routes and limits.
    async fn refresh_targets(&mut self) -> GatewayResult<()> {
        let mut targets = HashMap::new();
        if let Some(route) = &self.wa.settings().operator {
            let limits = self.limits_for(None, route);
            targets.insert(
                OPERATOR_SENDER.to_owned(),
                (
                    SenderTarget {
                        sender_id: OPERATOR_SENDER.to_owned(),
                        route: route.clone(),
                    },
                    limits,
                ),
            );
        }
        for sender in self.wa.store.list_wa_senders().await? {
            if !sender.active {
                continue;
            }
            let route = match sender.kind {
                SenderKind::Cloud => match (&sender.phone_number_id, &sender.access_token) {
                    (Some(id), Some(token)) => Route::Cloud(CloudNumber {
                        phone_number_id: id.clone(),
                        access_token: token.clone(),
                    }),
                    _ => continue,
                },
                SenderKind::Gateway => match (&sender.gateway_url, &sender.gateway_body) {
                    (Some(url), Some(body)) => Route::Gateway(GatewayEndpoint {
                        url: url.clone(),
                        headers: sender
                            .gateway_headers
                            .as_deref()
                            .and_then(|h| serde_json::from_str::<BTreeMap<String, String>>(h).ok())
                            .map(|h| h.into_iter().collect())
                            .unwrap_or_default(),
                        body: body.clone(),
                    }),
                    _ => continue,
                },
            };
            let limits = self.limits_for(Some(&sender), &route);
            targets.insert(
                sender.merchant_id.clone(),
                (
                    SenderTarget {
                        sender_id: sender.merchant_id.clone(),
                        route,
                    },
                    limits,
                ),
            );
        }
        let now = self.wa.now_ms();
        for (id, (_, limits)) in &targets {
            match self.paces.get_mut(id) {
                Some(pace) => {
                    if pace.limits() != limits {
                        pace.set_limits(limits.clone());
                    }
                }
                None => {
                    self.paces
                        .insert(id.clone(), SenderPace::new(limits.clone(), now));
                }
            }
        }
        self.targets = targets;
        Ok(())
    }

    /// The sender a message goes from now: its own, or the operator's when its own is gone.
    fn effective_sender(&self, message: &WaMessage) -> Option<String> {
        if self.targets.contains_key(&message.sender_id) {
            Some(message.sender_id.clone())
        } else if self.targets.contains_key(OPERATOR_SENDER) {
            Some(OPERATOR_SENDER.to_owned())
        } else {
            None
        }
    }

    /// Marks `uncertain` the rows left `sending` past their claim: their worker stopped with
    /// the request in flight. Looked for when the lease is taken and then once per claim
    /// timeout: a worker that retakes the lease before a dead holder's claims ran out (a
    /// restart under the same node id does) finds them later, not never.
    async fn mark_stale(&mut self, now: i64) -> GatewayResult<()> {
        let stale = self.wa.store.mark_stale_wa_sends(now).await?;
        for id in &stale {
            count_for("unknown", "uncertain");
            tracing::warn!(message_id = %id, "WhatsApp message was in flight when its worker stopped: marked uncertain, not re-sent");
        }
        self.stale_check_ms = now + ms(self.wa.settings().claim_timeout);
        Ok(())
    }

    /// Taking (or retaking) the lease: what the last holder left in flight is uncertain,
    /// and the pacing remembers the last day's sends.
    async fn start(&mut self) -> GatewayResult<()> {
        let now = self.wa.now_ms();
        self.mark_stale(now).await?;
        self.paces.clear();
        self.queues.clear();
        self.known.clear();
        self.refresh_targets().await?;
        for sent in self.wa.store.recent_wa_sends(now - DAY_MS).await? {
            if let Some(pace) = self.paces.get_mut(&sent.sender_id) {
                pace.replay(sent.sent_at_ms, &sent.recipient, sent.bulk);
            }
        }
        self.inbound_seen_ms = now;
        Ok(())
    }

    async fn refresh(&mut self) -> GatewayResult<()> {
        let now = self.wa.now_ms();
        if now >= self.stale_check_ms {
            self.mark_stale(now).await?;
        }
        self.refresh_targets().await?;
        for (sender, until, _) in self.wa.store.wa_sender_pauses(now).await? {
            if let Some(pace) = self.paces.get_mut(&sender) {
                pace.pause_until(until);
            }
        }
        for (sender, count) in self.wa.store.wa_inbound_since(self.inbound_seen_ms).await? {
            if let Some(pace) = self.paces.get_mut(&sender) {
                pace.inbound(now, count);
            }
        }
        self.inbound_seen_ms = now;
        let due = self
            .wa
            .store
            .due_wa_messages(now + ms(self.wa.settings().poll_interval), READ_BATCH)
            .await?;
        for message in due {
            if self.known.contains(&message.id) {
                continue;
            }
            let Some(sender) = self.effective_sender(&message) else {
                continue;
            };
            self.known.insert(message.id.clone());
            let queued = Queued {
                id: message.id.clone(),
                recipient: message.recipient.clone(),
                bulk: message.bulk,
            };
            let queue = self.queues.entry(sender).or_default();
            if message.bulk {
                queue.bulk.push_back(queued);
            } else {
                queue.urgent.push_back(queued);
            }
        }
        Ok(())
    }

    /// Sends what the pacing allows now; returns the earliest instant something else may go.
    /// The pass decides in memory, claims everything it picked in one transaction, then
    /// starts the sends.
    async fn dispatch(&mut self) -> Option<i64> {
        let now = self.wa.now_ms();
        let mut next: Option<i64> = None;
        let mut picks: Vec<(String, Queued)> = Vec::new();
        let senders: Vec<String> = self.queues.keys().cloned().collect();
        for sender in senders {
            if !self.targets.contains_key(&sender) {
                // The sender is gone: its messages are read again for the operator's.
                if let Some(queue) = self.queues.remove(&sender) {
                    for queued in queue.urgent.iter().chain(queue.bulk.iter()) {
                        self.known.remove(&queued.id);
                    }
                }
                continue;
            }
            let mut room = IN_FLIGHT_PER_SENDER
                .saturating_sub(self.in_flight.get(&sender).copied().unwrap_or(0));
            let (Some(pace), Some(queue)) =
                (self.paces.get_mut(&sender), self.queues.get_mut(&sender))
            else {
                continue;
            };
            while room > 0 {
                // Urgent first, then bulk; the first message (within the lookahead) that
                // may go now.
                let mut pick: Option<(bool, usize)> = None;
                let mut earliest: Option<i64> = None;
                for (bulk, list) in [(false, &queue.urgent), (true, &queue.bulk)] {
                    for (index, queued) in list.iter().take(LOOKAHEAD).enumerate() {
                        let at = pace.ready_at(now, &queued.recipient, queued.bulk);
                        if at <= now {
                            pick = Some((bulk, index));
                            break;
                        }
                        earliest = Some(earliest.map_or(at, |e: i64| e.min(at)));
                    }
                    if pick.is_some() {
                        break;
                    }
                }
                let Some((bulk, index)) = pick else {
                    if let Some(at) = earliest {
                        next = Some(next.map_or(at, |n| n.min(at)));
                    }
                    break;
                };
                let list = if bulk {
                    &mut queue.bulk
                } else {
                    &mut queue.urgent
                };
                let Some(queued) = list.remove(index) else {
                    break;
                };
                pace.record(now, &queued.recipient, queued.bulk, &mut self.jitter);
                room -= 1;
                picks.push((sender.clone(), queued));
            }
        }
        self.queues
            .retain(|_, q| !q.urgent.is_empty() || !q.bulk.is_empty());
        if picks.is_empty() {
            return next;
        }
        let ids: Vec<String> = picks.iter().map(|(_, q)| q.id.clone()).collect();
        let claim_until = now + ms(self.wa.settings().claim_timeout);
        let claimed = match self
            .wa
            .store
            .claim_wa_messages(&ids, &self.wa.node_id, now, claim_until)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::error!(error = %err, "claiming WhatsApp messages failed");
                for id in &ids {
                    self.known.remove(id);
                }
                return Some(now + 1_000);
            }
        };
        let mut claimed: HashMap<String, WaMessage> =
            claimed.into_iter().map(|m| (m.id.clone(), m)).collect();
        for (sender, queued) in picks {
            let Some(message) = claimed.remove(&queued.id) else {
                // Cancelled, or claimed elsewhere: forget it.
                self.known.remove(&queued.id);
                continue;
            };
            let Some((target, _)) = self.targets.get(&sender).cloned() else {
                continue;
            };
            *self.in_flight.entry(sender.clone()).or_default() += 1;
            let wa = self.wa.clone();
            let done = self.done_tx.clone();
            let throttles = self.throttles.get(&sender).copied().unwrap_or(0);
            let jitter = self.jitter.between(0, i64::MAX / 4);
            tokio::spawn(async move {
                let id = message.id.clone();
                let effect = match send_one(&wa, &target, message, throttles, jitter).await {
                    Ok(effect) => effect,
                    Err(err) => {
                        tracing::error!(error = %err, message_id = %id, "recording a WhatsApp send failed");
                        PaceEffect::None
                    }
                };
                let _ = done.send(Done { sender, id, effect });
            });
        }
        next
    }

    fn finished(&mut self, done: Done) {
        self.known.remove(&done.id);
        if let Some(count) = self.in_flight.get_mut(&done.sender) {
            *count = count.saturating_sub(1);
        }
        let pace = self.paces.get_mut(&done.sender);
        match done.effect {
            PaceEffect::None => {
                self.throttles.remove(&done.sender);
            }
            PaceEffect::PauseSender(until) => {
                if let Some(pace) = pace {
                    pace.pause_until(until);
                }
            }
            PaceEffect::Throttled(until) => {
                *self.throttles.entry(done.sender.clone()).or_default() += 1;
                if let Some(pace) = pace {
                    pace.pause_until(until);
                }
            }
            PaceEffect::HoldRecipient(recipient, until) => {
                if let Some(pace) = pace {
                    pace.hold_recipient(&recipient, until);
                }
            }
        }
    }
}

/// Sends one claimed message and records how it ended.
async fn send_one(
    wa: &WhatsApp,
    target: &SenderTarget,
    message: WaMessage,
    throttles: u32,
    jitter_seed: i64,
) -> GatewayResult<PaceEffect> {
    let settings = wa.settings();
    let mut jitter = Jitter::new(u64::try_from(jitter_seed).unwrap_or(0));
    let now = wa.now_ms();
    let kind = Kind::parse(&message.kind);
    let contact = wa
        .store
        .get_wa_contact(&target.sender_id, &message.recipient)
        .await?;
    // Every outcome below is counted per sender (the operator or a merchant's number).
    let count = |outcome: &'static str| count_for(&target.sender_id, outcome);
    let finish = |outcome: WaSendOutcome| async {
        wa.store
            .finish_wa_message(&message.id, outcome, wa.now_ms())
            .await
    };
    if let Some(contact) = &contact {
        if contact.opted_out_ms.is_some() && !kind.is_some_and(Kind::ignores_opt_out) {
            count("opted_out");
            finish(WaSendOutcome::Failed {
                error_code: None,
                error: "the recipient opted out (STOP); only receipts reach them".into(),
            })
            .await?;
            return Ok(PaceEffect::None);
        }
        if let Some(until) = contact.paused_until_ms.filter(|&u| u > now) {
            finish(WaSendOutcome::Retry {
                next_attempt_ms: until,
                error_code: None,
                error: "the recipient is paused for the day".into(),
                via_template: message.via_template,
                refund_attempt: true,
            })
            .await?;
            return Ok(PaceEffect::None);
        }
    }
    let window_open = contact
        .as_ref()
        .and_then(|c| c.last_inbound_ms)
        .is_some_and(|at| at > now - DAY_MS);
    let registered = match (&target.route, kind) {
        (Route::Cloud(_), Some(kind)) => settings.templates.get(&kind),
        _ => None,
    };
    let params: Vec<String> = message
        .template_params
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    let as_template = registered.is_some() && (message.via_template || !window_open);
    let outgoing = match registered {
        Some(t) if as_template => Outgoing::Template {
            name: &t.name,
            language: &t.language,
            params: &params,
        },
        _ => Outgoing::Text {
            body: &message.body,
        },
    };
    let attempt = wa
        .transport
        .send(target, &message.recipient, outgoing, &message.id)
        .await;
    let now = wa.now_ms();
    let attempts = u32::try_from(message.attempts).unwrap_or(u32::MAX);
    let backoff = |attempts: u32| {
        let base = ms(settings.retry_base);
        base.saturating_mul(1_i64 << attempts.saturating_sub(1).min(10))
            .min(6 * 3600 * 1000)
    };
    let (outcome, effect) = match attempt {
        SendAttempt::Accepted { wamid } => {
            count("sent");
            (WaSendOutcome::Sent { wamid, at_ms: now }, PaceEffect::None)
        }
        SendAttempt::Unknown { error } => {
            count("uncertain");
            tracing::warn!(message_id = %message.id, error, "WhatsApp send may or may not have gone: marked uncertain");
            (WaSendOutcome::Uncertain { error }, PaceEffect::None)
        }
        SendAttempt::NotSent { error } => {
            if attempts >= settings.max_attempts {
                count("failed");
                (
                    WaSendOutcome::Failed {
                        error_code: None,
                        error,
                    },
                    PaceEffect::None,
                )
            } else {
                count("retry");
                (
                    WaSendOutcome::Retry {
                        next_attempt_ms: now + backoff(attempts),
                        error_code: None,
                        error,
                        via_template: message.via_template,
                        refund_attempt: false,
                    },
                    PaceEffect::None,
                )
            }
        }
        SendAttempt::Rejected {
            code,
            message: text,
            http_status,
        } => {
            let error = match code {
                Some(code) => format!("{code}: {text}"),
                None => format!("HTTP {http_status}: {text}"),
            };
            let retry = |next: i64, via_template: bool, refund: bool| WaSendOutcome::Retry {
                next_attempt_ms: next,
                error_code: code,
                error: error.clone(),
                via_template,
                refund_attempt: refund,
            };
            let failed = || WaSendOutcome::Failed {
                error_code: code,
                error: error.clone(),
            };
            match wire::classify(code, http_status) {
                ErrorClass::Throttled => {
                    count("throttled");
                    let base = ms(settings.throttle_base)
                        .saturating_mul(1_i64 << throttles.min(8))
                        .min(300_000);
                    let until = now + base + jitter.between(0, base / 2);
                    (
                        retry(until, message.via_template, true),
                        PaceEffect::Throttled(until),
                    )
                }
                ErrorClass::PairRateLimit => {
                    count("recipient_rate_limited");
                    let gap = ms(settings.pacing.recipient_gap);
                    let until = now + 2 * gap + jitter.between(0, gap);
                    (
                        retry(until, message.via_template, true),
                        PaceEffect::HoldRecipient(message.recipient.clone(), until),
                    )
                }
                ErrorClass::WindowClosed => {
                    if registered.is_some() && !as_template {
                        count("template_fallback");
                        (retry(now, true, true), PaceEffect::None)
                    } else {
                        count("failed");
                        let error = format!(
                            "{error} (outside the 24-hour window and no template is registered for {})",
                            message.kind
                        );
                        (
                            WaSendOutcome::Failed {
                                error_code: code,
                                error,
                            },
                            PaceEffect::None,
                        )
                    }
                }
                ErrorClass::SenderRestricted => {
                    count("sender_restricted");
                    let until = next_jakarta_midnight_ms(now);
                    wa.store
                        .pause_wa_sender(&target.sender_id, until, &error)
                        .await?;
                    metrics::counter!("gema_whatsapp_alerts_total", "reason" => "sender_restricted")
                        .increment(1);
                    tracing::error!(sender = %target.sender_id, error, "WhatsApp sender restricted: stopped until tomorrow");
                    (
                        retry(until, message.via_template, true),
                        PaceEffect::PauseSender(until),
                    )
                }
                ErrorClass::RecipientLimited => {
                    count("recipient_limited");
                    let until = next_jakarta_midnight_ms(now);
                    wa.store
                        .pause_wa_contact(&target.sender_id, &message.recipient, until)
                        .await?;
                    metrics::counter!("gema_whatsapp_alerts_total", "reason" => "recipient_limited")
                        .increment(1);
                    tracing::warn!(sender = %target.sender_id, message_id = %message.id, error, "WhatsApp recipient not reachable today: retried tomorrow");
                    (
                        retry(until, message.via_template, true),
                        PaceEffect::HoldRecipient(message.recipient.clone(), until),
                    )
                }
                ErrorClass::Temporary if attempts < settings.max_attempts => {
                    count("retry");
                    (
                        retry(now + backoff(attempts), message.via_template, false),
                        PaceEffect::None,
                    )
                }
                ErrorClass::Undeliverable | ErrorClass::Permanent | ErrorClass::Temporary => {
                    count("failed");
                    (failed(), PaceEffect::None)
                }
            }
        }
    };
    finish(outcome).await?;
    Ok(effect)
}

fn count_for(sender: &str, outcome: &'static str) {
    metrics::counter!("gema_whatsapp_messages_total",
        "sender" => sender.to_owned(), "outcome" => outcome)
    .increment(1);
}

impl WhatsApp {
    /// Runs the sender worker while this node holds the `whatsapp-sender` lease, and the
    /// webhook processor, until `stop`.
    pub async fn run(self, cluster: Cluster, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let mut worker = Worker {
            wa: self.clone(),
            paces: HashMap::new(),
            queues: HashMap::new(),
            known: HashSet::new(),
            in_flight: HashMap::new(),
            targets: HashMap::new(),
            throttles: HashMap::new(),
            jitter: Jitter::from_entropy(),
            inbound_seen_ms: 0,
            stale_check_ms: 0,
            done_tx,
        };
        let poll = self.settings.poll_interval.max(Duration::from_millis(10));
        let webhooks = tokio::spawn({
            let wa = self.clone();
            async move {
                loop {
                    if let Err(err) = wa.process_webhooks().await {
                        tracing::error!(error = %err, "processing WhatsApp webhooks failed");
                    }
                    let _ = tokio::time::timeout(poll * 5, wa.webhooks.notified()).await;
                }
            }
        });
        let mut holding = false;
        let mut last_refresh = tokio::time::Instant::now() - poll;
        // Whether a sender exists, read once per poll (the loop turns on every finished
        // send; the senders table need not be read each time).
        let mut configured: Option<(tokio::time::Instant, bool)> = None;
        loop {
            let is_configured = match configured {
                Some((at, known)) if at.elapsed() < poll => Ok(known),
                _ => self.configured().await.inspect(|known| {
                    configured = Some((tokio::time::Instant::now(), *known));
                }),
            };
            let holds = match is_configured {
                Ok(true) => cluster.holds(ClusterWork::WhatsAppSender, poll).await,
                Ok(false) => false,
                Err(err) => {
                    tracing::error!(error = %err, "reading the WhatsApp senders failed");
                    false
                }
            };
            if holds && !holding {
                match worker.start().await {
                    Ok(()) => holding = true,
                    Err(err) => {
                        tracing::error!(error = %err, "starting the WhatsApp worker failed")
                    }
                }
            } else if !holds {
                holding = false;
            }
            let mut wait = poll;
            if holding {
                if last_refresh.elapsed() >= poll {
                    if let Err(err) = worker.refresh().await {
                        tracing::error!(error = %err, "reading the WhatsApp outbox failed");
                    }
                    last_refresh = tokio::time::Instant::now();
                }
                if let Some(at) = worker.dispatch().await {
                    let ahead = u64::try_from(at - self.now_ms()).unwrap_or(0);
                    wait = wait.min(Duration::from_millis(ahead.max(1)));
                }
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {
                    last_refresh = tokio::time::Instant::now() - poll;
                }
                Some(done) = done_rx.recv() => {
                    worker.finished(done);
                    while let Ok(done) = done_rx.try_recv() {
                        worker.finished(done);
                    }
                }
            }
        }
        webhooks.abort();
        // Sends in flight finish on their own tasks and record their outcome; one cut off by
        // the process ending is found `uncertain` by the next worker.
    }

    /// Meta's webhook verification: the challenge when the mode and token match.
    pub fn verify_subscription(
        &self,
        mode: Option<&str>,
        token: Option<&str>,
        challenge: Option<&str>,
    ) -> Option<String> {
        let expected = self.settings.verify_token.as_deref()?;
        webhook::verify_subscription(mode, token, challenge, expected)
    }

    /// A webhook delivery: checks `X-Hub-Signature-256` over the exact bytes, records the
    /// body, and returns; the processor applies it after. A bad signature records nothing.
    pub async fn ingest_webhook(&self, body: &[u8], signature: Option<&str>) -> GatewayResult<()> {
        let Some(secret) = self.settings.app_secret.as_deref() else {
            return Err(crate::error::GatewayError::Unauthorized(
                "WhatsApp webhooks are not configured (whatsapp.app_secret)".into(),
            ));
        };
        if !webhook::verify_signature(secret.as_bytes(), signature, body) {
            metrics::counter!("gema_whatsapp_webhooks_total", "outcome" => "bad_signature")
                .increment(1);
            return Err(crate::error::GatewayError::Unauthorized(
                "X-Hub-Signature-256 does not match the body".into(),
            ));
        }
        let text =
            std::str::from_utf8(body).map_err(|_| crate::error::GatewayError::BadRequest {
                field: None,
                message: "the body is not UTF-8".into(),
            })?;
        self.store.record_wa_webhook(text, self.now_ms()).await?;
        metrics::counter!("gema_whatsapp_webhooks_total", "outcome" => "recorded").increment(1);
        self.webhooks.notify_one();
        Ok(())
    }

    /// Applies recorded webhooks: statuses (forward only) and inbound messages (the window,
    /// STOP / BERHENTI / MULAI). Safe on several nodes at once: every step is idempotent.
    pub async fn process_webhooks(&self) -> GatewayResult<usize> {
        let rows = self.store.unprocessed_wa_webhooks(100).await?;
        let mut done = 0;
        for row in rows {
            let now = self.now_ms();
            let batch = match webhook::parse_webhook(row.body.as_bytes()) {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::warn!(webhook_id = %row.id, error = %err, "WhatsApp webhook not understood");
                    self.store
                        .finish_wa_webhook(&row.id, now, Some(&err.to_string()))
                        .await?;
                    continue;
                }
            };
            let mut unknown = 0;
            for update in &batch.statuses {
                if !self.apply_status(update).await? {
                    unknown += 1;
                }
            }
            for inbound in &batch.inbound {
                let sender = self.sender_of(&inbound.phone_number_id).await?;
                let Ok(phone) = crate::validate::wa_phone("from", &inbound.from) else {
                    continue;
                };
                let new = self
                    .store
                    .record_wa_inbound(
                        &sender,
                        &phone,
                        &inbound.wamid,
                        inbound.text.as_deref(),
                        inbound.timestamp.saturating_mul(1000),
                    )
                    .await?;
                if !new {
                    continue;
                }
                match inbound.text.as_deref().and_then(webhook::keyword) {
                    Some(Keyword::OptOut) => {
                        self.store
                            .set_wa_opt_out(&sender, &phone, Some(now))
                            .await?;
                        tracing::info!(sender, "a WhatsApp number opted out");
                    }
                    Some(Keyword::OptIn) => {
                        self.store.set_wa_opt_out(&sender, &phone, None).await?;
                    }
                    None => {}
                }
            }
            if unknown > 0 && now - row.received_ms < UNKNOWN_WAMID_GRACE_MS {
                // A send's answer may still be on its way to the outbox: look again later.
                continue;
            }
            self.store.finish_wa_webhook(&row.id, now, None).await?;
            done += 1;
        }
        Ok(done)
    }

    /// Which sender a business number is: the operator's, a merchant's, else the operator's.
    async fn sender_of(&self, phone_number_id: &str) -> GatewayResult<String> {
        if let Some(Route::Cloud(number)) = &self.settings.operator
            && number.phone_number_id == phone_number_id
        {
            return Ok(OPERATOR_SENDER.to_owned());
        }
        Ok(self
            .store
            .wa_sender_by_phone_number_id(phone_number_id)
            .await?
            .map_or_else(|| OPERATOR_SENDER.to_owned(), |s| s.merchant_id))
    }

    /// One status, applied if it moves the message forward; `false` when no message has
    /// that id.
    async fn apply_status(&self, update: &StatusUpdate) -> GatewayResult<bool> {
        let Some(mut message) = self.store.wa_message_by_wamid(&update.wamid).await? else {
            return Ok(false);
        };
        for _ in 0..3 {
            let Some(next) = webhook::advance(progress(message.status), update.status) else {
                return Ok(true);
            };
            let Some(to) = status_of(next) else {
                return Ok(true);
            };
            let error = (update.status == DeliveryStatus::Failed).then(|| {
                (
                    update.error_code,
                    update
                        .error_title
                        .clone()
                        .unwrap_or_else(|| "failed".into()),
                )
            });
            if self
                .store
                .advance_wa_message(
                    &message.id,
                    message.status,
                    to,
                    update.timestamp.saturating_mul(1000),
                    error,
                    None,
                )
                .await?
            {
                metrics::counter!("gema_whatsapp_statuses_total", "status" => to.as_str())
                    .increment(1);
                return Ok(true);
            }
            message = self.store.get_wa_message(&message.id).await?;
        }
        Ok(true)
    }
}
