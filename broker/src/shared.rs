//! The state every listener, connection and handle shares ([`Shared`]): sessions, the
//! subscription and retained tries, the uplink and presence channels, the limits. Routing an
//! authorized message to its subscribers happens here; deciding whether it is authorized
//! does not (the connection asks `gema-acl` first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use gema_acl::Rule;
use rumqttc::mqttbytes::QoS;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Authenticator};
use crate::config::BrokerConfig;
use crate::events::{DeliveryOutcome, PresenceChange, PresenceEvent, ProvisioningRequest, Uplink};
use crate::router::{Retained, RetainedStore, Router, SessionKey};
use crate::session::{Outgoing, Session, lock};
use crate::tls;

/// State shared by listeners, connections and handles.
pub(crate) struct Shared {
    pub(crate) config: BrokerConfig,
    pub(crate) services: HashMap<String, Arc<[Rule]>>,
    /// Service principals whose password the broker checks itself.
    pub(crate) service_passwords: HashMap<String, String>,
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) router: RwLock<Router>,
    pub(crate) retained: Mutex<RetainedStore>,
    pub(crate) sessions: Mutex<HashMap<SessionKey, Arc<Session>>>,
    pub(crate) uplinks: mpsc::Sender<Uplink>,
    /// Claim sessions' requests (provisioning by claim).
    pub(crate) provisioning: mpsc::Sender<ProvisioningRequest>,
    pub(crate) presence: broadcast::Sender<PresenceEvent>,
    pub(crate) login_limiter: Mutex<auth::LoginLimiter>,
    pub(crate) handshakes: Arc<Semaphore>,
    pub(crate) connections: Arc<Semaphore>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) cert: Arc<tls::ReloadableCert>,
    pub(crate) next_connection_id: std::sync::atomic::AtomicU64,
    /// Client ids the broker assigns (`auto-<start>-<n>`): this broker's start instant in
    /// microseconds, and a counter.
    pub(crate) assigned_ids: (u64, std::sync::atomic::AtomicU64),
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// Device sessions are keyed `d:<device id>`; service principals' `s:<length of the
/// principal's name>:<principal><client id>` (the length keeps the key unambiguous); clean
/// sessions of clients whose id the broker assigned `a:<client id>`, so an assigned id can
/// never take over a session a client named itself. A service's client ids are its own:
/// another principal connecting with the same client id neither ends its connection nor
/// resumes its persistent session (subscriptions, queued messages); it gets a session of
/// its own.
pub(crate) const DEVICE_KEY_PREFIX: &str = "d:";

pub(crate) fn device_key(device_id: &str) -> SessionKey {
    Arc::from(format!("{DEVICE_KEY_PREFIX}{device_id}"))
}

/// A claim session's key: `p:<serial>` (a serial is one plain topic level).
pub(crate) fn provisioning_key(serial: &str) -> SessionKey {
    Arc::from(format!("p:{serial}"))
}

pub(crate) fn service_key(principal: &str, client_id: &str, assigned: bool) -> SessionKey {
    if assigned {
        Arc::from(format!("a:{client_id}"))
    } else {
        Arc::from(format!("s:{}:{principal}{client_id}", principal.len()))
    }
}

impl Shared {
    /// Routes an already-authorized message to every matching subscriber, storing it first
    /// when retained. `receipt_for` names the session whose acknowledgement the receipt
    /// tracks.
    pub(crate) fn route(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        mut receipt_for: Option<(SessionKey, oneshot::Sender<DeliveryOutcome>)>,
    ) {
        if retain {
            let mut store = lock(&self.retained);
            if store.len() >= self.config.limits.max_retained
                && !payload.is_empty()
                && !store.contains(topic)
            {
                metrics::counter!("gema_broker_retained_refused_total").increment(1);
            } else {
                store.set(
                    topic,
                    Retained {
                        payload: payload.clone(),
                        qos,
                    },
                );
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!("gema_broker_retained_messages").set(store.len() as f64);
            }
        }
        let targets = self
            .router
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .route(topic);
        let topic: Arc<str> = Arc::from(topic);
        let now = Instant::now();
        for (key, granted) in targets {
            let Some(session) = lock(&self.sessions).get(&key).cloned() else {
                continue;
            };
            let receipt = match &receipt_for {
                Some((k, _)) if *k == key => receipt_for.take().map(|(_, tx)| tx),
                _ => None,
            };
            session.enqueue(
                Outgoing {
                    topic: topic.clone(),
                    payload: payload.clone(),
                    qos: min_qos(qos, granted),
                    retain: false,
                    enqueued: now,
                    receipt,
                },
                &self.config.sessions,
            );
        }
        if let Some((key, tx)) = receipt_for {
            let live = lock(&self.sessions)
                .get(&key)
                .is_some_and(|s| lock(&s.state).live.is_some());
            let _ = tx.send(if live {
                DeliveryOutcome::NotSubscribed
            } else {
                DeliveryOutcome::Offline { queued: false }
            });
        }
    }

    /// A client id for a client that sent an empty one: unique within this broker's life
    /// and, through the start instant, across restarts.
    pub(crate) fn assign_client_id(&self) -> String {
        let n = self
            .assigned_ids
            .1
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("auto-{:x}-{n}", self.assigned_ids.0)
    }

    pub(crate) fn emit_presence(&self, device_id: &str, connection: u64, change: PresenceChange) {
        let _ = self.presence.send(PresenceEvent {
            device_id: device_id.to_owned(),
            connection,
            at: SystemTime::now(),
            change,
        });
    }
}

pub(crate) fn min_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) { a } else { b }
}
