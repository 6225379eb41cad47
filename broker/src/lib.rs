//! Gema's embedded MQTT broker, purpose-made for soundboxes.
//!
//! MQTT 3.1.1 over TLS (tokio + rustls, `rumqttc::mqttbytes` as the packet codec behind the
//! fence in [`codec`]); per-device authentication through the [`Authenticator`] trait the
//! binary implements over the registry; the `gema-acl` decision before any message is routed;
//! sessions with bounded queues; and the in-process interface the gateway uses: publish a
//! downlink with a delivery receipt ([`BrokerHandle::publish`]), a channel of [`Uplink`]s
//! carrying the authenticated device id, [`PresenceEvent`]s, and
//! [`BrokerHandle::disconnect`] for revocation.
//!
//! Architecture Invariant: this crate knows MQTT and TLS but no database and no SQL; it
//! depends on no `store`, `gateway` or `admin-api`. It emits `tracing` and `metrics` only.
//! API Boundary: the TLS listener faces the internet.
//!
//! # Modules
//!
//! - [`config`]: the broker's configuration as plain values ([`BrokerConfig`] with the
//!   documented defaults); the binary fills it from its own config tree, the broker reads no
//!   file and no environment.
//! - [`auth`]: the [`Authenticator`] trait the binary implements over the registry, and the
//!   failed-login limiter.
//! - [`codec`]: the frame boundary (below).
//! - `connection`: the accept loop and the per-connection task (handshake, CONNECT,
//!   authentication, takeover, packet loop, will).
//! - `session`: session state, the bounded queue, the inflight window, `Kick` (revocation and
//!   takeover).
//! - `presence`: [`PresenceFeed`], presence that a connect storm cannot lose (below).
//! - `router`: the subscription trie and the retained-message trie.
//! - `tls`: the rustls server config (TLS 1.2 and 1.3, session cache and tickets, optional
//!   device client certificates) and the reloadable certificate resolver.
//! - `limits`: [`raise_fd_limit`] for the binary.
//!
//! # The path of a message
//!
//! ```text
//! soundbox ──TLS──▶ accept loop ──spawn──▶ connection task ─────────────────────────────────┐
//!                   (never waits on a      │ 1. TLS handshake: own timeout, handshake cap     │
//!                    client)               │ 2. CONNECT within connect timeout                │
//!                                          │ 3. Authenticator (binary, over store) ─▶ identity │
//!                                          │    + failed-login limiter, client id == device id│
//!                                          │ 4. Last Will checked with gema-acl (publish rule) │
//!                                          │ 5. session takeover, CONNACK                      │
//!                                          │ 6. packet loop: every SUBSCRIBE / PUBLISH asks    │
//!                                          │    gema-acl first, then router / uplink channel   │
//!                                          └──────────────────────────────────────────────────┘
//! gateway ──BrokerHandle::publish──▶ router (topic trie) ──▶ session queue ──▶ connection ──▶ device
//! device  ──PUBLISH (ACL ok)──▶ Uplink { device_id (authenticated), topic, payload } ──▶ gateway
//! ```
//!
//! # Codec: `rumqttc::mqttbytes` (v4), fenced
//!
//! We use the MQTT 3.1.1 packet types and parsers inside `rumqttc` 0.24 (`rumqttc::mqttbytes::v4`),
//! not `rmqtt-codec` 0.3:
//! - `rumqttc` is already in the tree for the simulator, tests and benchmarks; using its codec
//!   adds no crate and no second maintainer, and the tests' raw clients encode with exactly the
//!   types the broker decodes.
//! - It exposes `mqttbytes::check(bytes, max)`, which parses only the fixed header: the maximum
//!   packet size is enforced from the remaining-length bytes, before a frame is buffered or parsed,
//!   so what one connection buffers is bounded by `max_packet_size + 5`.
//! - `rmqtt-codec` is more server-oriented (3.1 / 5 support), but we do not want MQTT 3.1, MQTT 5 is
//!   not in scope yet, and its version detection is a small amount of code we own instead.
//!
//! `rumqttc`'s codec is client-oriented, so `codec.rs` fences it. Before `rumqttc` sees a frame we
//! refuse, from the first byte: packet types a server never receives (CONNACK, SUBACK, UNSUBACK,
//! PINGRESP, 0, 15), reserved fixed-header flags, PUBLISH with QoS 3 or DUP on QoS 0, and any first
//! packet that is not CONNECT. CONNECT is dispatched on its protocol name and level ourselves
//! (`rumqttc` would parse an MQTT 5 CONNECT with the 3.1.1 layout): level 4 goes on, MQTT 3.1
//! (`MQIsdp`/3) and MQTT 5 get CONNACK 0x01 (this is the door for a v5 path later), reserved or
//! inconsistent connect flags (will QoS/retain without will, password without user name) close the
//! connection, and reserved SUBSCRIBE option bits are refused. Known limit: `rumqttc` reads the
//! password as UTF-8; a non-UTF-8 password is a malformed CONNECT and the connection is closed
//! without CONNACK (device secrets are text). Every decode path returns an error on bad input;
//! `broker/tests/codec_fuzz.rs` (proptest: arbitrary bytes in arbitrary chunks, mutated valid
//! packets) and the cargo-fuzz target `broker/fuzz` (`frame`) check no panic and bounded buffering.
//!
//! # Refused operations
//!
//! - **SUBSCRIBE:** each refused filter gets SUBACK 0x80, the others are granted, the connection
//!   stays up (MQTT 3.1.1 has a per-filter failure code, so the device learns exactly what failed).
//! - **PUBLISH:** a refused PUBLISH is dropped (never routed, retained or handed to the gateway)
//!   and counted (`gema_acl_denied_total{kind="publish",reason}`). What the client hears is
//!   [`DeniedPublish::action`]. `Ignore` (the default): it is acknowledged as if accepted (PUBACK
//!   for QoS 1, PUBREC then PUBCOMP for QoS 2, nothing for QoS 0) and the connection stays, as
//!   Mosquitto does and EMQX's default `deny_action = ignore`: MQTT 3.1.1 has no negative
//!   PUBACK, and a stock client waiting for its acknowledgement would stall or reconnect in a
//!   loop (Paho's `$` topics case). A connection that sends more than `flood_limit` refused
//!   PUBLISHes within `flood_window` is closed (the will fires;
//!   `gema_broker_connections_closed_total{reason="acl_violation"}`), so a faulty or hostile
//!   client still shows in the metrics and its reconnect loop. `Disconnect` closes at the first.
//! - **Receiving:** a service principal with `deny` rules may hold a granted wildcard that also
//!   matches a denied topic; each message is checked before it is queued for it (retained ones
//!   too) and withheld (`gema_acl_denied_total{kind="receive"}`).
//! - **Last Will:** checked at CONNECT with the publish rule; refused with CONNACK 0x05.
//!
//! # Sessions and delivery
//! - mTLS (optional, same port): with `tls.client_ca` set, a client may present a certificate
//!   issued by the device CA; its subject CN must be a valid device id and is the identity;
//!   `Authenticator::authorize_certificate` is asked at CONNECT with the certificate's serial
//!   and SHA-256 fingerprint (a revoked device or certificate → 0x05: revocation is checked at
//!   CONNECT, not inside the TLS handshake, because the revocation list lives behind the
//!   authenticator); a user name, if sent, must equal it. Clients without a certificate use passwords as before.
//! - Service principals come from configuration with their rules and, optionally, a password the
//!   broker checks itself (constant-time); otherwise the `Authenticator` may return
//!   `Identity::Service(name)`. The same failed-login limiter applies.
//! - Client id must equal the authenticated device id (CONNACK 0x02 otherwise); service principals'
//!   sessions live in a separate key space, so no principal can take over a device's session.
//!   A service principal's zero-length client id with CleanSession = 1 is assigned one
//!   (`auto-<broker start>-<n>`, in a key space of its own; MQTT 3.1.1 §3.1.3.1); with
//!   CleanSession = 0 it gets CONNACK 0x02.
//! - Takeover: the new connection kicks the old one and waits (up to 5 s) for it to detach; the old
//!   connection publishes *its own* will (takeover is an abnormal close for it), the new one's will
//!   is untouched.
//! - Persistent sessions keep subscriptions, QoS 1/2 messages (QoS 0 is not queued for an offline
//!   session), the inflight window (resent with DUP / PUBREL on reconnect) and inbound QoS 2 ids.
//!   Queues are bounded by count (oldest dropped) and age; every drop is counted by reason. An
//!   abandoned session expires after `sessions.expiry` (default 7 days).
//! - Inbound QoS 2 is delivered once, on PUBLISH; retransmissions are answered with PUBREC only.
//! - **A device's QoS 1 uplink is PUBACKed once the gateway settles it**, not when it is routed:
//!   the [`Uplink`] carries a settle handle ([`Uplink::settle`]) the consumer completes once the
//!   uplink's effect is durable (an announcement's `ack` once the commit recording it has
//!   succeeded), so a crash between the two leaves the device's client re-sending the PUBLISH
//!   instead of holding an acknowledgement for something forgotten. PUBACKs leave in the order
//!   the PUBLISHes came (MQTT 3.1.1 §4.6) from a per-connection queue; the connection keeps
//!   reading while the gateway commits, and stops reading (TCP back-pressure) only with
//!   `limits.max_unsettled_uplinks` (32) PUBACKs owed. A handle dropped unsettled (the gateway
//!   could not record it, or is stopping) or not settled within `limits.settle_timeout`
//!   (30 s) gets no PUBACK: the connection is closed (`uplink_unsettled`), so the client sends
//!   the PUBLISH again after it reconnects. Not "PUBACK anyway after the timeout": that would
//!   acknowledge what may never be recorded, the loss this exists to prevent; and not waiting
//!   for ever: a device whose acknowledgements stop would stall with its connection open.
//!   Service principals' PUBLISHes and QoS 2 uplinks are acknowledged on routing, as before; a
//!   device's refused QoS 1 PUBLISH is acknowledged in its turn behind those still owed.
//! - `BrokerHandle::publish` returns a `DeliveryReceipt`: `Acknowledged` (PUBACK/PUBCOMP), `Sent`
//!   (QoS 0 written), `Offline { queued }`, `NotSubscribed`, or `Dropped(reason)`.
//! - Limits per session: inflight window (32), queue (1000, 24 h), subscriptions (64); globally:
//!   retained messages (100,000), connections (100,000), concurrent handshakes (1024; those in
//!   progress and those waiting for a slot are the gauges `gema_broker_tls_handshakes_active`
//!   and `gema_broker_tls_handshakes_waiting`).

//!
//! # Presence
//!
//! A connection announces itself ([`PresenceChange::Connected`] after CONNACK,
//! [`PresenceChange::Disconnected`] with its [`DisconnectReason`] once it has detached) on a
//! broadcast channel of `limits.presence_capacity` events (default 4096). The broker never
//! waits for a receiver, so a receiver that falls behind (a storm of 9,000 connects while
//! the gateway writes rows) loses events. Each event carries its connection's id, which only
//! grows, and a device's events are in order (a takeover's new connection announces itself
//! only after the old one's disconnect).
//!
//! The session set is the authority: every session with a live connection records that
//! connection's id and instant, and [`BrokerHandle::connected_devices`] is a snapshot of it.
//! [`BrokerHandle::presence_feed`] is the receiver for whoever must not lose presence (the
//! gateway): a [`PresenceFeed`] remembers per device the newest connection it reported and
//! whether it reported it connected; on a lag it resynchronises, yielding `Connected` for
//! every device live under a connection it has not reported and `Disconnected`
//! ([`DisconnectReason::Unobserved`]) for every device it reported connected that is gone,
//! and afterwards ignores stale events (an older connection, or a connect it already
//! reported). So for each device the last event it yields equals the broker's state once
//! things settle, and a reconnect is always a `Connected` (the gateway's replay on connect
//! depends on that). Chosen over a coalescing map because the channel keeps every event in
//! order for those who keep up (tests, observers) and the lossy case costs nothing until it
//! happens; memory is one entry per device seen. Missed events are counted
//! (`gema_broker_presence_lagged_events_total`, `gema_broker_presence_resyncs_total`).

pub mod auth;
pub mod codec;
pub mod config;
mod connection;
mod error;
mod events;
mod limits;
mod presence;
mod router;
mod session;
mod shared;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{AuthRefusal, Authenticator, ClientCertificate, Identity};
pub use config::{
    BrokerConfig, DeniedPublish, DenyAction, FailedLoginLimits, Limits, PlainListenerConfig,
    ServicePrincipal, SessionLimits, TlsListenerConfig,
};
pub use error::{BrokerError, PublishError};
pub use events::{
    DeliveryOutcome, DeliveryReceipt, DisconnectReason, Downlink, DropReason, PresenceChange,
    PresenceEvent, ProvisioningRequest, Uplink,
};
pub use gema_acl::{Access, Rule};
pub use limits::raise_fd_limit;
pub use presence::{ConnectedDevice, PresenceFeed};
pub use rumqttc::mqttbytes::QoS;

use router::{RetainedStore, Router};
use session::lock;
use shared::{Shared, device_key};

/// The in-process interface to a running broker. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    shared: Arc<Shared>,
}

impl BrokerHandle {
    /// Publishes a downlink to one device (and to any service subscriber whose filter
    /// matches). Never blocks: the message is queued on each matching session. The topic
    /// must lie inside the device's `down/` namespace.
    pub fn publish(&self, downlink: Downlink) -> Result<DeliveryReceipt, PublishError> {
        use gema_firmware_protocol::topic::{downlink_prefix, validate_device_id};
        validate_device_id(&downlink.device_id)
            .map_err(|e| PublishError::InvalidDeviceId(e.to_string()))?;
        gema_acl::topic::validate_topic_name(&downlink.topic)
            .map_err(PublishError::InvalidTopic)?;
        let prefix = downlink_prefix(&downlink.device_id);
        if !downlink.topic.starts_with(&prefix) || downlink.topic.len() == prefix.len() {
            return Err(PublishError::OutsideNamespace {
                topic: downlink.topic,
                prefix,
            });
        }
        let size = downlink.topic.len() + downlink.payload.len() + 4;
        if size > self.shared.config.limits.max_packet_size {
            return Err(PublishError::TooLarge { size });
        }
        let (tx, rx) = oneshot::channel();
        self.shared.route(
            &downlink.topic,
            downlink.payload,
            downlink.qos,
            downlink.retain,
            Some((device_key(&downlink.device_id), tx)),
        );
        Ok(DeliveryReceipt { rx })
    }

    /// Answers a claim session on `provisioning/<serial>/down` at QoS 1, delivered to that
    /// session alone (never routed to other subscribers: the answer holds a secret).
    /// `NotSubscribed` if the session is live but has not subscribed to its down topic,
    /// `Offline` if there is none.
    pub fn answer_provisioning(
        &self,
        serial: &str,
        payload: bytes::Bytes,
    ) -> Result<DeliveryReceipt, PublishError> {
        let topic = gema_firmware_protocol::claim::down_topic(serial);
        gema_acl::topic::validate_topic_name(&topic).map_err(PublishError::InvalidTopic)?;
        let size = topic.len() + payload.len() + 4;
        if size > self.shared.config.limits.max_packet_size {
            return Err(PublishError::TooLarge { size });
        }
        let (tx, rx) = oneshot::channel();
        let session = lock(&self.shared.sessions)
            .get(&shared::provisioning_key(serial))
            .cloned();
        let Some(session) = session else {
            let _ = tx.send(DeliveryOutcome::Offline { queued: false });
            return Ok(DeliveryReceipt { rx });
        };
        let granted = lock(&session.state).subscriptions.get(&topic).copied();
        let Some(granted) = granted else {
            let _ = tx.send(DeliveryOutcome::NotSubscribed);
            return Ok(DeliveryReceipt { rx });
        };
        session.enqueue(
            session::Outgoing {
                topic: Arc::from(topic),
                payload,
                qos: shared::min_qos(QoS::AtLeastOnce, granted),
                retain: false,
                enqueued: Instant::now(),
                receipt: Some(tx),
            },
            &self.shared.config.sessions,
        );
        Ok(DeliveryReceipt { rx })
    }

    /// A new receiver of every presence event (from now on), for observers. A receiver
    /// that falls more than `limits.presence_capacity` events behind loses the oldest
    /// (`RecvError::Lagged`); the broker never waits. What must not lose a device's state
    /// uses [`BrokerHandle::presence_feed`].
    pub fn presence(&self) -> broadcast::Receiver<PresenceEvent> {
        self.shared.presence.subscribe()
    }

    /// A new presence receiver that cannot lose a device's latest state: it starts with a
    /// `Connected` for every device connected now, and when it falls behind it
    /// resynchronises from the session set (see [`PresenceFeed`]).
    pub fn presence_feed(&self) -> PresenceFeed {
        PresenceFeed::new(&self.shared)
    }

    /// Every device with a live connection now, from the session set.
    pub fn connected_devices(&self) -> Vec<ConnectedDevice> {
        self.shared.connected_devices()
    }

    /// Ends the device's live connection now (revocation, rotation, unbinding with kick).
    /// Its will fires; a persistent session is kept until it expires. Returns whether a
    /// connection was live.
    pub fn disconnect(&self, device_id: &str) -> bool {
        let session = lock(&self.shared.sessions)
            .get(&device_key(device_id))
            .cloned();
        let Some(session) = session else {
            return false;
        };
        let live = lock(&session.state).live.clone();
        match live {
            Some(kick) => {
                kick.kick(DisconnectReason::Kicked);
                true
            }
            None => false,
        }
    }

    /// Whether the device has a live connection.
    pub fn is_connected(&self, device_id: &str) -> bool {
        lock(&self.shared.sessions)
            .get(&device_key(device_id))
            .is_some_and(|s| lock(&s.state).live.is_some())
    }

    /// When the device's live connection was established (`None` if it has none).
    pub fn connected_since(&self, device_id: &str) -> Option<std::time::SystemTime> {
        let session = lock(&self.shared.sessions)
            .get(&device_key(device_id))
            .cloned()?;
        let state = lock(&session.state);
        state.live.as_ref()?;
        state.live_since.as_ref().map(|stamp| stamp.since)
    }

    /// How many devices have a live connection now (walks the session table).
    pub fn connected_count(&self) -> usize {
        lock(&self.shared.sessions)
            .values()
            .filter(|s| lock(&s.state).live.is_some())
            .count()
    }

    /// Re-reads the server certificate and key (for SIGHUP). On error the old ones stay.
    pub fn reload_certificates(&self) -> Result<(), BrokerError> {
        self.shared.cert.reload()
    }
}

/// A started broker: its listeners are bound and accepting.
#[derive(Debug)]
pub struct Broker {
    handle: BrokerHandle,
    uplinks: Option<mpsc::Receiver<Uplink>>,
    provisioning: Option<mpsc::Receiver<ProvisioningRequest>>,
    tls_addr: SocketAddr,
    plain_addr: Option<SocketAddr>,
}

impl Broker {
    /// Loads TLS material, binds every listener and starts accepting. Must be called within
    /// a tokio runtime. Port 0 in the configuration binds an ephemeral port; see
    /// [`Broker::tls_addr`].
    pub async fn start(
        config: BrokerConfig,
        authenticator: Arc<dyn Authenticator>,
    ) -> Result<Broker, BrokerError> {
        for service in &config.services {
            gema_acl::check_rule_order(&service.rules).map_err(|e| {
                BrokerError::Invalid(format!("service principal {:?}: {e}", service.name))
            })?;
        }
        let services: HashMap<String, Arc<[Rule]>> = config
            .services
            .iter()
            .map(|s| (s.name.clone(), Arc::from(s.rules.clone())))
            .collect();
        let service_passwords: HashMap<String, String> = config
            .services
            .iter()
            .filter_map(|s| s.password.clone().map(|p| (s.name.clone(), p)))
            .collect();
        if let Some(plain) = &config.plain
            && let Some(anon) = &plain.anonymous_service
            && !services.contains_key(anon)
        {
            return Err(BrokerError::Invalid(format!(
                "anonymous_service {anon:?} is not a configured service principal"
            )));
        }
        let cert = Arc::new(tls::ReloadableCert::load(
            &config.tls.server_cert,
            &config.tls.server_key,
        )?);
        let tls_config = tls::server_config(cert.clone(), config.tls.client_ca.as_deref())?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);

        let tls_listener = bind(config.tls.bind, config.limits.backlog)?;
        let tls_addr = local_addr(&tls_listener)?;
        let plain_listener = match &config.plain {
            Some(p) => Some(bind(p.bind, config.limits.backlog)?),
            None => None,
        };
        let plain_addr = plain_listener.as_ref().map(local_addr).transpose()?;

        let (uplink_tx, uplink_rx) = mpsc::channel(config.limits.uplink_capacity.max(1));
        let (provisioning_tx, provisioning_rx) =
            mpsc::channel(config.limits.uplink_capacity.max(1));
        let (presence_tx, _) = broadcast::channel(config.limits.presence_capacity.max(1));
        let shared = Arc::new(Shared {
            services,
            service_passwords,
            authenticator,
            router: RwLock::new(Router::default()),
            retained: Mutex::new(RetainedStore::default()),
            sessions: Mutex::new(HashMap::new()),
            uplinks: uplink_tx,
            provisioning: provisioning_tx,
            presence: presence_tx,
            login_limiter: Mutex::new(auth::LoginLimiter::new(config.failed_logins.clone())),
            handshakes: Arc::new(Semaphore::new(config.tls.max_concurrent_handshakes.max(1))),
            connections: Arc::new(Semaphore::new(config.limits.max_connections.max(1))),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            cert,
            next_connection_id: std::sync::atomic::AtomicU64::new(1),
            assigned_ids: (
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                std::sync::atomic::AtomicU64::new(1),
            ),
            config,
        });

        shared.tracker.spawn(connection::accept_loop(
            shared.clone(),
            tls_listener,
            Some(acceptor),
        ));
        if let Some(l) = plain_listener {
            shared
                .tracker
                .spawn(connection::accept_loop(shared.clone(), l, None));
        }
        shared.tracker.spawn(maintenance(shared.clone()));
        tracing::info!(%tls_addr, ?plain_addr, "MQTT broker listening");
        Ok(Broker {
            handle: BrokerHandle { shared },
            uplinks: Some(uplink_rx),
            provisioning: Some(provisioning_rx),
            tls_addr,
            plain_addr,
        })
    }

    pub fn handle(&self) -> BrokerHandle {
        self.handle.clone()
    }

    /// The uplink stream; `None` after the first call. The consumer must keep draining it:
    /// when it is full, publishing devices wait.
    pub fn take_uplinks(&mut self) -> Option<mpsc::Receiver<Uplink>> {
        self.uplinks.take()
    }

    /// Claim sessions' provisioning requests; `None` after the first call. Nobody taking
    /// them leaves claim sessions unanswered (their publishes are acknowledged and dropped).
    pub fn take_provisioning_requests(&mut self) -> Option<mpsc::Receiver<ProvisioningRequest>> {
        self.provisioning.take()
    }

    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addr
    }

    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_addr
    }

    /// Stops accepting, closes every connection (wills are not fired: the devices did not
    /// fail) and waits for every task to finish.
    pub async fn shutdown(self) {
        let shared = &self.handle.shared;
        shared.shutdown.cancel();
        shared.tracker.close();
        shared.tracker.wait().await;
        tracing::info!("MQTT broker stopped");
    }
}

impl Drop for Broker {
    /// Dropping the broker without [`Broker::shutdown`] still stops it: listeners and
    /// connections end on their own (without being waited for).
    fn drop(&mut self) {
        self.handle.shared.shutdown.cancel();
    }
}

fn local_addr(l: &TcpListener) -> Result<SocketAddr, BrokerError> {
    l.local_addr().map_err(|source| BrokerError::Io {
        what: "reading listener address".into(),
        source,
    })
}

/// Binds with an explicit (large) backlog, which `TcpListener::bind` does not allow.
fn bind(addr: SocketAddr, backlog: u32) -> Result<TcpListener, BrokerError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let io = |source| BrokerError::Io {
        what: format!("binding {addr}"),
        source,
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(io)?;
    socket.set_reuse_address(true).map_err(io)?;
    socket.set_nonblocking(true).map_err(io)?;
    socket.bind(&addr.into()).map_err(io)?;
    socket
        .listen(i32::try_from(backlog).unwrap_or(i32::MAX))
        .map_err(io)?;
    TcpListener::from_std(socket.into()).map_err(io)
}

/// Expires abandoned persistent sessions and watches the certificate files.
async fn maintenance(shared: Arc<Shared>) {
    let expiry = shared.config.sessions.expiry;
    let reload_every = shared.config.tls.reload_check_interval;
    let tick = std::time::Duration::from_secs(1)
        .max(expiry / 4)
        .min(std::time::Duration::from_secs(60));
    let tick = if reload_every.is_zero() {
        tick
    } else {
        tick.min(reload_every)
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reload_check = Instant::now();
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        expire_sessions(&shared);
        if !reload_every.is_zero() && last_reload_check.elapsed() >= reload_every {
            last_reload_check = Instant::now();
            if let Err(e) = shared.cert.reload_if_changed() {
                tracing::error!(error = %e, "certificate changed on disk but cannot be loaded; keeping the old one");
            }
        }
    }
}

fn expire_sessions(shared: &Shared) {
    let expiry = shared.config.sessions.expiry;
    let mut sessions = lock(&shared.sessions);
    let mut expired = Vec::new();
    for (key, session) in sessions.iter() {
        let mut st = lock(&session.state);
        if st.live.is_none() && st.disconnected_at.is_some_and(|t| t.elapsed() >= expiry) {
            st.purge(key, &shared.router);
            expired.push(key.clone());
        }
    }
    for key in expired {
        sessions.remove(&key);
        metrics::counter!("gema_broker_sessions_expired_total").increment(1);
    }
}

#[cfg(test)]
mod tests {
    use gema_firmware_protocol::topic;

    #[test]
    fn the_acl_and_the_firmware_protocol_agree_on_the_topic_scheme() {
        assert_eq!(gema_acl::DEVICE_ROOT, topic::ROOT);
        assert_eq!(
            topic::downlink_prefix("d1"),
            format!("{}/d1/{}/", gema_acl::DEVICE_ROOT, gema_acl::DOWN_LEVEL)
        );
        assert_eq!(
            topic::uplink_prefix("d1"),
            format!("{}/d1/{}/", gema_acl::DEVICE_ROOT, gema_acl::UP_LEVEL)
        );
    }
}
