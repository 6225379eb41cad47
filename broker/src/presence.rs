//! Presence that no connect storm can lose: [`PresenceFeed`].
//!
//! Connections announce themselves on a bounded broadcast channel
//! ([`crate::Limits::presence_capacity`]); the broker never waits for a slow receiver, so a
//! receiver that falls behind loses the oldest events (`RecvError::Lagged`). The session set,
//! not the channel, is the authority on who is connected: every session with a live
//! connection holds that connection's id, instant, peer and session-present flag. A
//! [`PresenceFeed`] remembers, per device, the newest connection it has reported and whether
//! it reported it connected; when it lags it takes a snapshot of the session set and derives
//! the changes it missed against that memory (a device connected under a newer connection:
//! `Connected`; a device it reported connected that has no live connection now:
//! `Disconnected` with [`DisconnectReason::Unobserved`]). Events still in the channel after
//! that are news only if they name a newer connection (or end the one it reported
//! connected), so a stale event from before the snapshot never undoes it.
//!
//! What this promises, per device: the last event a feed yields states the device's actual
//! presence once things settle, and a reconnect (a newer connection) is always reported as a
//! `Connected`, even if the disconnect before it was folded away. What it does not: every
//! intermediate event (a connect and disconnect both missed in a lag are reported as
//! nothing, or as the disconnect alone), and the real disconnect reason of one missed.
//! Memory: one small entry per device the feed has seen, plus the changes of one resync.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::events::{DisconnectReason, PresenceChange, PresenceEvent};
use crate::session::lock;
use crate::shared::Shared;

/// A device with a live connection, as the session set has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedDevice {
    pub device_id: String,
    /// The live connection's id (see [`PresenceEvent::connection`]).
    pub connection: u64,
    /// When that connection attached.
    pub since: SystemTime,
    pub peer: SocketAddr,
    pub session_present: bool,
}

/// What a feed last reported for one device.
#[derive(Debug, Clone, Copy)]
struct Reported {
    connection: u64,
    connected: bool,
}

/// A receiver of presence changes that cannot lose a device's latest state (module docs).
/// Made by [`crate::BrokerHandle::presence_feed`]; starts with every device connected then.
#[derive(Debug)]
pub struct PresenceFeed {
    events: broadcast::Receiver<PresenceEvent>,
    /// Weak, so a feed alone does not keep the broker's state (and its channel) alive.
    shared: Weak<Shared>,
    reported: HashMap<String, Reported>,
    /// Changes derived by a resync, yielded before the channel is read again.
    derived: VecDeque<PresenceEvent>,
    resyncs: u64,
    lagged_events: u64,
}

impl PresenceFeed {
    /// Subscribes, then starts with a `Connected` for every device live now, so a device
    /// that connected before the feed existed is reported too.
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        let mut feed = Self {
            events: shared.presence.subscribe(),
            shared: Arc::downgrade(shared),
            reported: HashMap::new(),
            derived: VecDeque::new(),
            resyncs: 0,
            lagged_events: 0,
        };
        feed.sync_with(shared.connected_devices());
        feed
    }

    /// The next change; `None` once the broker is gone.
    pub async fn recv(&mut self) -> Option<PresenceEvent> {
        loop {
            if let Some(event) = self.derived.pop_front() {
                return Some(event);
            }
            match self.events.recv().await {
                Ok(event) => {
                    if self.is_news(&event) {
                        return Some(event);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => self.resync(missed),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Waits for the next change, then takes up to `max` (at least one) of those ready
    /// without waiting; an empty batch means the broker is gone.
    pub async fn recv_batch(&mut self, max: usize) -> Vec<PresenceEvent> {
        let Some(first) = self.recv().await else {
            return Vec::new();
        };
        let mut batch = vec![first];
        while batch.len() < max {
            if let Some(event) = self.derived.pop_front() {
                batch.push(event);
                continue;
            }
            match self.events.try_recv() {
                Ok(event) => {
                    if self.is_news(&event) {
                        batch.push(event);
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(missed)) => self.resync(missed),
                Err(_) => break,
            }
        }
        batch
    }

    /// How often this feed fell behind and resynchronised, and how many events it missed
    /// in all (their effect was recovered from the session set).
    pub fn lag_counts(&self) -> (u64, u64) {
        (self.resyncs, self.lagged_events)
    }

    /// Whether `event` changes what this feed last reported for its device; remembers it
    /// if so.
    fn is_news(&mut self, event: &PresenceEvent) -> bool {
        let connected = matches!(event.change, PresenceChange::Connected { .. });
        let news = match self.reported.get(&event.device_id) {
            None => true,
            Some(last) => {
                event.connection > last.connection
                    || (event.connection == last.connection && last.connected && !connected)
            }
        };
        if news {
            self.reported.insert(
                event.device_id.clone(),
                Reported {
                    connection: event.connection,
                    connected,
                },
            );
        }
        news
    }

    /// Derives what was missed from a snapshot of the session set (module docs).
    fn resync(&mut self, missed: u64) {
        self.resyncs += 1;
        self.lagged_events += missed;
        metrics::counter!("gema_broker_presence_resyncs_total").increment(1);
        metrics::counter!("gema_broker_presence_lagged_events_total").increment(missed);
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let live = shared.connected_devices();
        tracing::warn!(
            missed,
            connected = live.len(),
            "presence receiver fell behind; resynchronising from the session set"
        );
        self.sync_with(live);
    }

    /// Queues what changed between what this feed reported and `live`, the session set.
    fn sync_with(&mut self, live: Vec<ConnectedDevice>) {
        let mut live_ids = HashSet::with_capacity(live.len());
        for device in live {
            live_ids.insert(device.device_id.clone());
            let event = PresenceEvent {
                device_id: device.device_id,
                connection: device.connection,
                at: device.since,
                change: PresenceChange::Connected {
                    peer: device.peer,
                    session_present: device.session_present,
                },
            };
            if self.is_news(&event) {
                self.derived.push_back(event);
            }
        }
        let now = SystemTime::now();
        for (device_id, last) in &mut self.reported {
            if last.connected && !live_ids.contains(device_id) {
                last.connected = false;
                self.derived.push_back(PresenceEvent {
                    device_id: device_id.clone(),
                    connection: last.connection,
                    at: now,
                    change: PresenceChange::Disconnected {
                        reason: DisconnectReason::Unobserved,
                    },
                });
            }
        }
    }
}

impl Shared {
    /// Every device with a live connection now (the authority [`PresenceFeed`] resyncs
    /// from).
    pub(crate) fn connected_devices(&self) -> Vec<ConnectedDevice> {
        let sessions = lock(&self.sessions);
        sessions
            .iter()
            .filter_map(|(key, session)| {
                let device_id = key.strip_prefix(crate::shared::DEVICE_KEY_PREFIX)?;
                let stamp = lock(&session.state).live_since?;
                Some(ConnectedDevice {
                    device_id: device_id.to_owned(),
                    connection: stamp.connection,
                    since: stamp.since,
                    peer: stamp.peer,
                    session_present: stamp.session_present,
                })
            })
            .collect()
    }
}
