//! Session state: what survives a connection for a persistent (clean session = false) client,
//! and the bounded queue through which every message reaches a connection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use gema_acl::Rule;
use rumqttc::mqttbytes::QoS;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::SessionLimits;
use crate::events::{DeliveryOutcome, DisconnectReason, DropReason};
use crate::router::{Router, SessionKey};

/// Lets one party end a live connection and say why.
#[derive(Debug, Default)]
pub(crate) struct Kick {
    pub(crate) token: CancellationToken,
    reason: Mutex<Option<DisconnectReason>>,
}

impl Kick {
    /// Ends the connection; the first reason given wins.
    pub(crate) fn kick(&self, reason: DisconnectReason) {
        let mut r = lock(&self.reason);
        if r.is_none() {
            *r = Some(reason);
        }
        drop(r);
        self.token.cancel();
    }

    pub(crate) fn reason(&self) -> DisconnectReason {
        lock(&self.reason).unwrap_or(DisconnectReason::Kicked)
    }
}

/// A message on its way to one session.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) topic: Arc<str>,
    pub(crate) payload: Bytes,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) enqueued: Instant,
    /// Resolved when the device acknowledges (or the message is dropped).
    pub(crate) receipt: Option<oneshot::Sender<DeliveryOutcome>>,
}

impl Outgoing {
    pub(crate) fn resolve(&mut self, outcome: DeliveryOutcome) {
        if let Some(r) = self.receipt.take() {
            let _ = r.send(outcome);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Awaiting {
    /// QoS 1 sent, waiting for PUBACK.
    Ack,
    /// QoS 2 sent, waiting for PUBREC.
    Rec,
    /// PUBREL sent, waiting for PUBCOMP.
    Comp,
}

#[derive(Debug)]
pub(crate) struct Inflight {
    pub(crate) pkid: u16,
    pub(crate) msg: Outgoing,
    pub(crate) stage: Awaiting,
}

#[derive(Debug, Default)]
pub(crate) struct SessionState {
    pub(crate) persistent: bool,
    pub(crate) subscriptions: HashMap<String, QoS>,
    pub(crate) queue: VecDeque<Outgoing>,
    /// In the order sent; acknowledgements are matched by packet id.
    pub(crate) inflight: VecDeque<Inflight>,
    /// Inbound QoS 2 packet ids between PUBLISH and PUBREL (delivered once, on PUBLISH).
    pub(crate) incoming_qos2: HashSet<u16>,
    pub(crate) next_pkid: u16,
    /// The live connection, if any.
    pub(crate) live: Option<Arc<Kick>>,
    /// Which connection is live and since when (set with `live`, cleared with it): what
    /// the session set tells a presence feed that fell behind.
    pub(crate) live_since: Option<LiveStamp>,
    pub(crate) disconnected_at: Option<Instant>,
    /// Set for a service principal whose rules include `deny`: what its subscriptions match
    /// is checked per message (set at each connect, from the connecting principal).
    pub(crate) reader: Option<Reader>,
}

/// A service principal with `deny` rules, as a receiver: a wildcard subscription it was
/// granted may match a topic a `deny` rule withholds (`gema_acl::check_receive`).
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    pub(crate) username: String,
    pub(crate) client_id: String,
    pub(crate) rules: Arc<[Rule]>,
}

impl Reader {
    /// Whether a message on `topic` may be delivered; a refusal is counted.
    pub(crate) fn may_receive(&self, topic: &str) -> bool {
        let principal = gema_acl::Principal::Service {
            username: &self.username,
            client_id: &self.client_id,
            rules: &self.rules,
        };
        match gema_acl::check_receive(principal, topic) {
            Ok(()) => true,
            Err(denied) => {
                metrics::counter!("gema_acl_denied_total", "kind" => "receive", "reason" => denied.as_label())
                    .increment(1);
                false
            }
        }
    }
}

/// The live connection of a session, as a snapshot of the session set reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveStamp {
    pub(crate) connection: u64,
    pub(crate) since: SystemTime,
    pub(crate) peer: SocketAddr,
    pub(crate) session_present: bool,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) key: SessionKey,
    /// Held by the live connection for its whole life, so a takeover waits until the old
    /// connection has fired its will and detached.
    pub(crate) lease: Arc<tokio::sync::Mutex<()>>,
    /// Wakes the live connection when something was queued.
    pub(crate) notify: Notify,
    pub(crate) state: Mutex<SessionState>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn qos_label(qos: QoS) -> &'static str {
    match qos {
        QoS::AtMostOnce => "0",
        QoS::AtLeastOnce => "1",
        QoS::ExactlyOnce => "2",
    }
}

pub(crate) fn count_drop(reason: DropReason) {
    metrics::counter!("gema_broker_queue_drops_total", "reason" => reason.as_label()).increment(1);
}

impl Session {
    pub(crate) fn new(key: SessionKey) -> Self {
        Self {
            key,
            lease: Arc::new(tokio::sync::Mutex::new(())),
            notify: Notify::new(),
            state: Mutex::new(SessionState {
                next_pkid: 1,
                ..Default::default()
            }),
        }
    }

    /// Queues `msg` for this session within `limits`, resolving its receipt at once when the
    /// session is offline (queued or not) or when something is dropped.
    pub(crate) fn enqueue(&self, mut msg: Outgoing, limits: &SessionLimits) {
        let mut st = lock(&self.state);
        if st
            .reader
            .as_ref()
            .is_some_and(|r| !r.may_receive(&msg.topic))
        {
            msg.resolve(DeliveryOutcome::NotSubscribed);
            return;
        }
        if st.live.is_none() {
            if msg.qos == QoS::AtMostOnce || !st.persistent {
                count_drop(DropReason::Offline);
                msg.resolve(DeliveryOutcome::Offline { queued: false });
                return;
            }
            msg.resolve(DeliveryOutcome::Offline { queued: true });
        }
        if st.queue.len() >= limits.max_queued.max(1)
            && let Some(mut oldest) = st.queue.pop_front()
        {
            count_drop(DropReason::QueueFull);
            oldest.resolve(DeliveryOutcome::Dropped(DropReason::QueueFull));
        }
        st.queue.push_back(msg);
        let live = st.live.is_some();
        drop(st);
        if live {
            self.notify.notify_one();
        }
    }
}

impl SessionState {
    /// Forgets everything: subscriptions (also from the router), queued and inflight
    /// messages (their receipts say the session ended).
    pub(crate) fn purge(&mut self, key: &SessionKey, router: &RwLock<Router>) {
        if !self.subscriptions.is_empty() {
            let mut r = router.write().unwrap_or_else(|e| e.into_inner());
            for filter in self.subscriptions.keys() {
                r.unsubscribe(filter, key);
            }
        }
        self.subscriptions.clear();
        for mut m in self.queue.drain(..) {
            count_drop(DropReason::SessionEnded);
            m.resolve(DeliveryOutcome::Dropped(DropReason::SessionEnded));
        }
        let inflight = self.inflight.len();
        for mut i in self.inflight.drain(..) {
            i.msg
                .resolve(DeliveryOutcome::Dropped(DropReason::SessionEnded));
        }
        metrics::gauge!("gema_broker_inflight").decrement(inflight as f64);
        self.incoming_qos2.clear();
    }

    /// Next packet id not used by an inflight message.
    pub(crate) fn allocate_pkid(&mut self) -> u16 {
        loop {
            let id = self.next_pkid;
            self.next_pkid = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.iter().any(|i| i.pkid == id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(qos: QoS, receipt: Option<oneshot::Sender<DeliveryOutcome>>) -> Outgoing {
        Outgoing {
            topic: Arc::from("devices/a/down/x"),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            enqueued: Instant::now(),
            receipt,
        }
    }

    #[test]
    fn packet_ids_skip_those_in_flight_and_wrap_past_65535() {
        let mut st = SessionState {
            next_pkid: u16::MAX,
            ..Default::default()
        };
        st.inflight.push_back(Inflight {
            pkid: 1,
            msg: outgoing(QoS::AtLeastOnce, None),
            stage: Awaiting::Ack,
        });
        assert_eq!(st.allocate_pkid(), u16::MAX);
        assert_eq!(st.allocate_pkid(), 2, "0 is never used and 1 is in flight");
    }

    #[test]
    fn an_offline_session_queues_qos1_for_a_persistent_session_only() {
        let limits = SessionLimits::default();
        let s = Session::new(Arc::from("d:a"));
        let (tx, mut rx) = oneshot::channel();
        s.enqueue(outgoing(QoS::AtLeastOnce, Some(tx)), &limits);
        assert_eq!(
            rx.try_recv(),
            Ok(DeliveryOutcome::Offline { queued: false })
        );

        lock(&s.state).persistent = true;
        let (tx, mut rx) = oneshot::channel();
        s.enqueue(outgoing(QoS::AtLeastOnce, Some(tx)), &limits);
        assert_eq!(rx.try_recv(), Ok(DeliveryOutcome::Offline { queued: true }));
        let (tx, mut rx) = oneshot::channel();
        s.enqueue(outgoing(QoS::AtMostOnce, Some(tx)), &limits);
        assert_eq!(
            rx.try_recv(),
            Ok(DeliveryOutcome::Offline { queued: false })
        );
        assert_eq!(lock(&s.state).queue.len(), 1);
    }

    #[test]
    fn a_full_queue_drops_its_oldest_message() {
        let limits = SessionLimits {
            max_queued: 1,
            ..Default::default()
        };
        let s = Session::new(Arc::from("d:a"));
        lock(&s.state).live = Some(Arc::new(Kick::default()));
        let (old_tx, mut old_rx) = oneshot::channel();
        s.enqueue(outgoing(QoS::AtLeastOnce, Some(old_tx)), &limits);
        s.enqueue(outgoing(QoS::AtLeastOnce, None), &limits);
        assert_eq!(
            old_rx.try_recv(),
            Ok(DeliveryOutcome::Dropped(DropReason::QueueFull))
        );
        assert_eq!(lock(&s.state).queue.len(), 1);
    }
}
