//! One task per connection: TLS handshake (with its own timeout, under the handshake cap),
//! CONNECT and authentication, then the packet loop. Nothing here blocks another connection:
//! every wait is inside this connection's task.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use gema_acl::{Principal, Rule};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, PubAck, PubComp, PubRec, PubRel,
    Publish, SubAck, Subscribe, SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use crate::auth::{AuthRefusal, Identity};
use crate::codec::{self, Inbound};
use crate::config::DenyAction;
use crate::events::{
    DeliveryOutcome, DisconnectReason, DropReason, PresenceChange, ProvisioningRequest, Uplink,
};
use crate::session::{
    Awaiting, Inflight, Kick, LiveStamp, Outgoing, Reader, Session, count_drop, lock, qos_label,
};
use crate::shared::{Shared, device_key, min_qos, provisioning_key, service_key};

/// How long a takeover waits for the old connection to detach.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
/// Best-effort writes on the way out (refusing CONNACK, final flush) wait no longer.
const PARTING_WRITE: Duration = Duration::from_secs(1);
/// Publishes encoded per wake-up, so one wake-up's writes stay bounded.
const PUMP_BATCH: usize = 64;

pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                metrics::counter!("gema_broker_accept_errors_total").increment(1);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
            metrics::counter!("gema_broker_connections_refused_total", "reason" => "max_connections")
                .increment(1);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        if let Some(idle) = shared.config.limits.tcp_keepalive {
            // Finds peers that vanished behind a NAT, also for clients with MQTT keepalive 0.
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval(idle / 4);
            let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        }
        let shared2 = shared.clone();
        let tls = tls.clone();
        // Every stage is boxed and the stream lives behind a pointer, so the task keeps only
        // what the current stage needs: an idle connection holds neither the handshake's
        // state nor a copy of the stream in a larger future.
        shared.tracker.spawn(async move {
            match tls {
                Some(acceptor) => {
                    let handshake = Box::pin(handshake(&shared2, acceptor, tcp, peer)).await;
                    if let Some((stream, cert_device)) = handshake {
                        Box::pin(serve(shared2, stream, peer, Listener::Tls { cert_device })).await;
                    }
                }
                None => Box::pin(serve(shared2, Box::new(tcp), peer, Listener::Plain)).await,
            }
            drop(permit);
        });
    }
}

/// One unit of a gauge for as long as it lives, also when its future is dropped (a
/// handshake that times out while waiting for a slot).
struct GaugeHold(&'static str);

impl GaugeHold {
    fn new(name: &'static str) -> Self {
        metrics::gauge!(name).increment(1.0);
        Self(name)
    }
}

impl Drop for GaugeHold {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// What a certificate said about the client, if it presented one.
#[derive(Debug)]
enum Listener {
    Tls {
        cert_device: Option<(String, crate::auth::ClientCertificate)>,
    },
    Plain,
}

async fn handshake(
    shared: &Shared,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(
    Box<tokio_rustls::server::TlsStream<TcpStream>>,
    Option<(String, crate::auth::ClientCertificate)>,
)> {
    let timeout = shared.config.tls.handshake_timeout;
    let attempt = async {
        // A client that opened TCP and sent nothing holds no handshake slot: the slot is
        // taken only once its ClientHello starts to arrive.
        // (`readable()` is optimistic on a fresh socket; a peek really waits for a byte.)
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await.ok()? == 0 {
            return None;
        }
        let waiting = GaugeHold::new("gema_broker_tls_handshakes_waiting");
        let _permit = shared.handshakes.acquire().await.ok()?;
        drop(waiting);
        let _active = GaugeHold::new("gema_broker_tls_handshakes_active");
        Some(acceptor.accept(tcp).await)
    };
    let result = tokio::select! {
        _ = shared.shutdown.cancelled() => return None,
        r = tokio::time::timeout(timeout, attempt) => r,
    };
    let stream = match result {
        Ok(Some(Ok(s))) => s,
        Ok(Some(Err(e))) => {
            metrics::counter!("gema_broker_tls_handshakes_total", "result" => "failed")
                .increment(1);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Ok(None) => return None,
        Err(_) => {
            metrics::counter!("gema_broker_tls_handshakes_total", "result" => "timeout")
                .increment(1);
            tracing::debug!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    metrics::counter!("gema_broker_tls_handshakes_total", "result" => "ok").increment(1);
    let cert_device = match stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    {
        None => None,
        Some(cert) => match crate::tls::device_id_from_certificate(cert) {
            Some(id) => Some(id),
            None => {
                metrics::counter!("gema_broker_auth_failures_total", "reason" => "certificate_identity")
                    .increment(1);
                tracing::info!(%peer, "client certificate names no valid device id");
                return None;
            }
        },
    };
    Some((Box::new(stream), cert_device))
}

/// The authenticated client of one connection.
#[derive(Debug, Clone)]
enum Who {
    Device(String),
    Service {
        name: String,
        client_id: String,
        /// The client sent an empty client id and the broker chose `client_id`.
        assigned: bool,
        rules: Arc<[Rule]>,
    },
    /// A claim session: a device provisioning itself, known by its serial (client id).
    Claim {
        claim_id: String,
        serial: String,
    },
}

impl Who {
    fn acl(&self) -> Principal<'_> {
        match self {
            Who::Device(id) => Principal::Device { id },
            Who::Service {
                name,
                client_id,
                rules,
                ..
            } => Principal::Service {
                username: name,
                client_id,
                rules,
            },
            Who::Claim { serial, .. } => Principal::Provisioning { serial },
        }
    }

    fn device_id(&self) -> Option<&str> {
        match self {
            Who::Device(id) => Some(id),
            Who::Service { .. } | Who::Claim { .. } => None,
        }
    }

    fn label(&self) -> &str {
        match self {
            Who::Device(id) => id,
            Who::Service { client_id, .. } => client_id,
            Who::Claim { serial, .. } => serial,
        }
    }
}

struct Conn<S> {
    shared: Arc<Shared>,
    /// Boxed: a TLS stream is large, and futures that hold a `Conn` stay small.
    stream: Box<S>,
    peer: SocketAddr,
    rx: BytesMut,
    tx: BytesMut,
}

/// Ends the packet loop.
type Close = DisconnectReason;

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn write(&mut self, packet: &Packet) {
        if let Err(e) = codec::encode(packet, &mut self.tx) {
            // Only oversized outgoing publishes can fail, and publish() refuses those.
            tracing::error!(error = %e, "cannot encode outgoing packet");
        }
    }

    async fn flush(&mut self) -> Result<(), Close> {
        if self.tx.is_empty() {
            return Ok(());
        }
        self.stream
            .write_all(&self.tx)
            .await
            .map_err(|_| DisconnectReason::ConnectionLost)?;
        self.stream
            .flush()
            .await
            .map_err(|_| DisconnectReason::ConnectionLost)?;
        // Written: release the buffer, so an idle connection holds none.
        self.tx = BytesMut::new();
        Ok(())
    }

    /// Reads until the first frame (which must be CONNECT) is decoded.
    async fn first_frame(&mut self) -> Result<Inbound, Close> {
        loop {
            let max = self.shared.config.limits.max_packet_size;
            match codec::decode_first(&mut self.rx, max) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => {
                    tracing::info!(peer = %self.peer, error = %e, "closing connection: bad first packet");
                    return Err(DisconnectReason::ProtocolViolation);
                }
            }
            self.read_more().await?;
        }
    }

    fn decode(&mut self) -> Result<Option<Inbound>, Close> {
        match codec::decode(&mut self.rx, self.shared.config.limits.max_packet_size) {
            Ok(f) => Ok(f),
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %e, "closing connection: bad packet");
                Err(DisconnectReason::ProtocolViolation)
            }
        }
    }

    async fn read_more(&mut self) -> Result<(), Close> {
        // An idle connection waits here with an empty buffer (`read_buf` then reserves a
        // few bytes); plaintext is already buffered by rustls, so small reads only cost a
        // copy. Room is made only for the rest of a partial frame.
        if !self.rx.is_empty() && self.rx.capacity() - self.rx.len() < 1024 {
            self.rx.reserve(4096);
        }
        match self.stream.read_buf(&mut self.rx).await {
            Ok(0) | Err(_) => Err(DisconnectReason::ConnectionLost),
            Ok(_) => Ok(()),
        }
    }

    /// Answers a refusing CONNACK (never a silent close) and closes, without waiting on a
    /// client that does not read.
    async fn refuse(&mut self, code: ConnectReturnCode) {
        self.write(&Packet::ConnAck(ConnAck::new(code, false)));
        let _ = tokio::time::timeout(PARTING_WRITE, async {
            let _ = self.flush().await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    stream: Box<S>,
    peer: SocketAddr,
    listener: Listener,
) {
    let mut conn = Conn {
        shared: shared.clone(),
        stream,
        peer,
        rx: BytesMut::new(),
        tx: BytesMut::new(),
    };
    let first = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(shared.config.limits.connect_timeout, conn.first_frame()) => r,
    };
    let connect = match first {
        Ok(Ok(Inbound::Packet(Packet::Connect(c)))) => c,
        Ok(Ok(Inbound::UnsupportedProtocol { name, level })) => {
            tracing::info!(%peer, %name, level, "unsupported MQTT protocol level");
            conn.refuse(ConnectReturnCode::RefusedProtocolVersion).await;
            return;
        }
        Ok(Ok(Inbound::Packet(_))) | Ok(Err(_)) => return,
        Err(_) => {
            metrics::counter!("gema_broker_connect_timeouts_total").increment(1);
            return;
        }
    };
    // In a connect storm a login can wait longer than the client does: a client that
    // gave up and closed is dropped here, before its login takes a hash and its session
    // takes the on-connect reads, all for nobody (its next attempt pays them). Bytes the
    // client sends after CONNECT (it may pipeline a SUBSCRIBE) stay buffered, up to one
    // packet's worth.
    let auth = {
        let login = tokio::time::timeout(
            shared.config.limits.connect_timeout,
            authenticate(&shared, &connect, peer, &listener),
        );
        let mut login = std::pin::pin!(login);
        loop {
            let listening = conn.rx.len() < shared.config.limits.max_packet_size;
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                r = &mut login => break r.unwrap_or_else(|_| {
                    auth_failure("timeout");
                    Err(ConnectReturnCode::ServiceUnavailable)
                }),
                read = conn.read_more(), if listening => {
                    if read.is_err() {
                        auth_failure("client_gone");
                        return;
                    }
                }
            }
        }
    };
    let who = match auth {
        Ok(who) => who,
        Err(code) => {
            conn.refuse(code).await;
            return;
        }
    };
    if let Some(will) = &connect.last_will
        && let Err(denied) = gema_acl::check_publish(who.acl(), &will.topic)
    {
        metrics::counter!("gema_acl_denied_total", "kind" => "will", "reason" => denied.as_label())
            .increment(1);
        tracing::info!(%peer, client = who.label(), topic = %will.topic, %denied, "will refused");
        conn.refuse(ConnectReturnCode::NotAuthorized).await;
        return;
    }
    run_session(conn, who, connect).await;
}

fn auth_failure(reason: &'static str) {
    metrics::counter!("gema_broker_auth_failures_total", "reason" => reason).increment(1);
}

/// Decides who the client is, or which CONNACK code refuses it.
async fn authenticate(
    shared: &Shared,
    connect: &Connect,
    peer: SocketAddr,
    listener: &Listener,
) -> Result<Who, ConnectReturnCode> {
    let login = connect.login.as_ref().filter(|l| !l.username.is_empty());
    let identity = match (listener, login) {
        (
            Listener::Tls {
                cert_device: Some((id, certificate)),
            },
            login,
        ) => {
            if login.is_some_and(|l| l.username != *id) {
                auth_failure("certificate_username_mismatch");
                return Err(ConnectReturnCode::NotAuthorized);
            }
            shared
                .authenticator
                .authorize_certificate(id, certificate, peer)
                .await
                .map_err(|r| refusal(r, "certificate"))?;
            Identity::Device(id.clone())
        }
        (_, Some(login)) => {
            let now = Instant::now();
            if lock(&shared.login_limiter).is_limited(&login.username, peer.ip(), now) {
                auth_failure("rate_limited");
                return Err(ConnectReturnCode::NotAuthorized);
            }
            let checked = match shared.service_passwords.get(&login.username) {
                Some(expected) => {
                    if constant_time_eq(expected.as_bytes(), login.password.as_bytes()) {
                        Ok(Identity::Service(login.username.clone()))
                    } else {
                        Err(AuthRefusal::BadCredentials)
                    }
                }
                None => {
                    shared
                        .authenticator
                        .authenticate(&login.username, &login.password, peer)
                        .await
                }
            };
            match checked {
                Ok(identity) => {
                    lock(&shared.login_limiter).record_success(&login.username);
                    identity
                }
                Err(r) => {
                    if r != AuthRefusal::Unavailable {
                        lock(&shared.login_limiter).record_failure(&login.username, peer.ip(), now);
                    }
                    return Err(refusal(r, "credentials"));
                }
            }
        }
        (Listener::Plain, None) => match shared
            .config
            .plain
            .as_ref()
            .and_then(|p| p.anonymous_service.clone())
        {
            Some(service) => Identity::Service(service),
            None => {
                auth_failure("no_credentials");
                return Err(ConnectReturnCode::BadUserNamePassword);
            }
        },
        (Listener::Tls { cert_device: None }, None) => {
            auth_failure("no_credentials");
            return Err(ConnectReturnCode::BadUserNamePassword);
        }
    };
    match identity {
        Identity::Device(id) => {
            if gema_firmware_protocol::topic::validate_device_id(&id).is_err() {
                auth_failure("invalid_device_id");
                return Err(ConnectReturnCode::NotAuthorized);
            }
            if connect.client_id != id {
                auth_failure("client_id_mismatch");
                return Err(ConnectReturnCode::BadClientId);
            }
            Ok(Who::Device(id))
        }
        Identity::Claim(claim_id) => {
            if gema_firmware_protocol::claim::validate_serial(&connect.client_id).is_err() {
                auth_failure("claim_serial_invalid");
                return Err(ConnectReturnCode::BadClientId);
            }
            Ok(Who::Claim {
                claim_id,
                serial: connect.client_id.clone(),
            })
        }
        Identity::Service(name) => {
            let Some(rules) = shared.services.get(&name) else {
                auth_failure("unknown_service");
                return Err(ConnectReturnCode::NotAuthorized);
            };
            if connect.client_id.len() > 128 {
                auth_failure("client_id_invalid");
                return Err(ConnectReturnCode::BadClientId);
            }
            // MQTT 3.1.1 §3.1.3.1: a zero-length client id is given one by the server, but
            // only with CleanSession = 1 (there is no session to come back to); otherwise
            // CONNACK 0x02. (Devices never get here: their client id is their device id.)
            let assigned = connect.client_id.is_empty();
            if assigned && !connect.clean_session {
                auth_failure("client_id_empty_persistent");
                return Err(ConnectReturnCode::BadClientId);
            }
            let client_id = if assigned {
                shared.assign_client_id()
            } else {
                connect.client_id.clone()
            };
            Ok(Who::Service {
                name,
                client_id,
                assigned,
                rules: rules.clone(),
            })
        }
    }
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refusal(r: AuthRefusal, how: &'static str) -> ConnectReturnCode {
    match r {
        AuthRefusal::BadCredentials => {
            auth_failure(if how == "certificate" {
                "certificate_refused"
            } else {
                "bad_credentials"
            });
            ConnectReturnCode::BadUserNamePassword
        }
        AuthRefusal::NotAuthorized => {
            auth_failure("not_authorized");
            ConnectReturnCode::NotAuthorized
        }
        AuthRefusal::Unavailable => {
            auth_failure("unavailable");
            ConnectReturnCode::ServiceUnavailable
        }
    }
}

/// Takes the session over (kicking a live connection with the same client id and waiting
/// for it to detach), answers CONNACK, runs the packet loop, then fires the will if the
/// connection died and detaches.
async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: Conn<S>,
    who: Who,
    connect: Connect,
) {
    let shared = conn.shared.clone();
    let key = match &who {
        Who::Device(id) => device_key(id),
        Who::Service {
            name,
            client_id,
            assigned,
            ..
        } => service_key(name, client_id, *assigned),
        Who::Claim { serial, .. } => provisioning_key(serial),
    };
    let kick = Arc::new(Kick::default());
    let mut attempts = 0;
    let (session, lease) = loop {
        attempts += 1;
        let session = lock(&shared.sessions)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Session::new(key.clone())))
            .clone();
        if let Some(old) = lock(&session.state).live.clone() {
            old.kick(DisconnectReason::Takeover);
        }
        let lease = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = tokio::time::timeout(TAKEOVER_WAIT, session.lease.clone().lock_owned()) => r,
        };
        let Ok(lease) = lease else {
            tracing::warn!(
                client = who.label(),
                "previous connection did not detach in time"
            );
            conn.refuse(ConnectReturnCode::ServiceUnavailable).await;
            return;
        };
        let current = lock(&shared.sessions)
            .get(&key)
            .is_some_and(|s| Arc::ptr_eq(s, &session));
        if current {
            break (session, lease);
        }
        drop(lease);
        if attempts > 3 {
            conn.refuse(ConnectReturnCode::ServiceUnavailable).await;
            return;
        }
    };
    // Ids only grow, and this one is taken under the lease: a device's later connection
    // always has the larger id (what `PresenceFeed` orders a device's events by).
    let connection_id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
    let session_present = {
        let mut st = lock(&session.state);
        let present = !connect.clean_session && st.persistent;
        if connect.clean_session || !st.persistent {
            st.purge(&key, &shared.router);
        }
        st.persistent = !connect.clean_session;
        st.live = Some(kick.clone());
        st.live_since = Some(LiveStamp {
            connection: connection_id,
            since: SystemTime::now(),
            peer: conn.peer,
            session_present: present,
        });
        st.disconnected_at = None;
        st.reader = match &who {
            Who::Service {
                name,
                client_id,
                rules,
                ..
            } if gema_acl::has_deny_rules(rules) => Some(Reader {
                username: name.clone(),
                client_id: client_id.clone(),
                rules: rules.clone(),
            }),
            _ => None,
        };
        present
    };
    let span = tracing::info_span!("mqtt", client = who.label(), connection_id);

    conn.write(&Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        session_present,
    )));
    metrics::counter!("gema_broker_connections_opened_total").increment(1);
    metrics::gauge!("gema_broker_connections_current").increment(1.0);
    tracing::info!(parent: &span, peer = %conn.peer, session_present, "connected");
    if let Some(id) = who.device_id() {
        // Device sessions only: service principals are not the fleet.
        metrics::counter!("gema_device_connects_total").increment(1);
        metrics::gauge!("gema_devices_connected").increment(1.0);
        shared.emit_presence(
            id,
            connection_id,
            PresenceChange::Connected {
                peer: conn.peer,
                session_present,
            },
        );
    }

    let mut will = connect.last_will.clone();
    let reason = {
        let mut lp = PacketLoop {
            conn: &mut conn,
            session: &session,
            who: &who,
            kick: &kick,
            keepalive: Duration::from_millis(u64::from(connect.keep_alive) * 1500),
            denied: DeniedWindow::default(),
            pubacks: PendingPubAcks::default(),
        };
        // Every log line of the packet loop carries the client and connection ids.
        tracing::Instrument::instrument(lp.run(), span.clone()).await
    };
    if reason == DisconnectReason::ClientDisconnect {
        will = None;
    }
    let _ = tokio::time::timeout(PARTING_WRITE, async {
        let _ = conn.flush().await;
        let _ = conn.stream.shutdown().await;
    })
    .await;

    if reason.fires_will()
        && let Some(will) = will.take()
    {
        publish_will(&shared, &who, will);
    }
    {
        let mut sessions = lock(&shared.sessions);
        let mut st = lock(&session.state);
        st.live = None;
        st.live_since = None;
        if st.persistent {
            st.disconnected_at = Some(Instant::now());
            // QoS 0 is not kept for an offline session.
            let before = st.queue.len();
            st.queue.retain(|m| m.qos != QoS::AtMostOnce);
            for _ in st.queue.len()..before {
                count_drop(DropReason::Offline);
            }
        } else {
            st.purge(&key, &shared.router);
            if sessions.get(&key).is_some_and(|s| Arc::ptr_eq(s, &session)) {
                sessions.remove(&key);
            }
        }
    }
    metrics::counter!("gema_broker_connections_closed_total", "reason" => reason.as_label())
        .increment(1);
    metrics::gauge!("gema_broker_connections_current").decrement(1.0);
    tracing::info!(parent: &span, reason = reason.as_label(), "disconnected");
    if let Some(id) = who.device_id() {
        metrics::counter!("gema_device_disconnects_total", "reason" => reason.as_label())
            .increment(1);
        metrics::gauge!("gema_devices_connected").decrement(1.0);
        shared.emit_presence(id, connection_id, PresenceChange::Disconnected { reason });
    }
    // Only now may a taking-over connection attach and announce itself, so presence events
    // for one device are always in order: this Disconnected comes before its Connected.
    drop(lease);
}

fn publish_will(shared: &Shared, who: &Who, will: LastWill) {
    metrics::counter!("gema_broker_wills_published_total").increment(1);
    if let Some(id) = who.device_id() {
        // Never wait here: a will is best-effort towards the gateway if it is saturated.
        if shared
            .uplinks
            .try_send(Uplink {
                device_id: id.to_owned(),
                topic: will.topic.clone(),
                payload: will.message.clone(),
                qos: will.qos,
                retain: will.retain,
                last_will: true,
                received_at: SystemTime::now(),
                settle: None,
            })
            .is_err()
        {
            metrics::counter!("gema_broker_uplinks_dropped_total", "reason" => "will_channel_full")
                .increment(1);
        }
    }
    shared.route(&will.topic, will.message, will.qos, will.retain, None);
}

struct PacketLoop<'a, S> {
    conn: &'a mut Conn<S>,
    session: &'a Arc<Session>,
    who: &'a Who,
    kick: &'a Kick,
    keepalive: Duration,
    denied: DeniedWindow,
    pubacks: PendingPubAcks,
}

/// The PUBACKs this connection owes, in the order their PUBLISHes came (MQTT 3.1.1 §4.6):
/// a device uplink's waits until the gateway settles it ([`Uplink::settle`]); any other
/// QoS 1 PUBLISH's is ready at once but, behind an unsettled one, waits its turn.
#[derive(Debug, Default)]
struct PendingPubAcks {
    queue: VecDeque<PendingPubAck>,
}

#[derive(Debug)]
struct PendingPubAck {
    pkid: u16,
    /// `None` once settled (or for a PUBLISH nobody settles).
    settled: Option<oneshot::Receiver<()>>,
    /// When the connection gives up on it (closes without the PUBACK).
    deadline: Instant,
}

impl PendingPubAcks {
    fn len(&self) -> usize {
        self.queue.len()
    }

    fn push(&mut self, pkid: u16, settled: Option<oneshot::Receiver<()>>, deadline: Instant) {
        self.queue.push_back(PendingPubAck {
            pkid,
            settled,
            deadline,
        });
    }

    /// Takes the packet ids of the settled PUBACKs at the front, in order. An error if the
    /// front one's settle handle was dropped unsent (the gateway could not record it).
    fn take_ready(&mut self) -> Result<Vec<u16>, Close> {
        let mut ready = Vec::new();
        while let Some(front) = self.queue.front_mut() {
            if let Some(settled) = front.settled.as_mut() {
                match settled.try_recv() {
                    Ok(()) => front.settled = None,
                    Err(oneshot::error::TryRecvError::Empty) => break,
                    Err(oneshot::error::TryRecvError::Closed) => {
                        return Err(unsettled("dropped", front.pkid));
                    }
                }
            }
            ready.push(front.pkid);
            self.queue.pop_front();
        }
        Ok(ready)
    }

    /// Waits until the front PUBACK is settled (pending forever if there is none); an
    /// error if its handle is dropped unsent or its deadline passes first.
    async fn front_settled(&mut self) -> Result<(), Close> {
        let Some(front) = self.queue.front_mut() else {
            return std::future::pending().await;
        };
        let Some(settled) = front.settled.as_mut() else {
            return Ok(());
        };
        tokio::select! {
            r = settled => match r {
                Ok(()) => {
                    front.settled = None;
                    Ok(())
                }
                Err(_) => Err(unsettled("dropped", front.pkid)),
            },
            _ = tokio::time::sleep_until(front.deadline.into()) => {
                Err(unsettled("timeout", front.pkid))
            }
        }
    }
}

/// Counts and logs a device uplink whose PUBACK is withheld; the connection closes.
fn unsettled(reason: &'static str, pkid: u16) -> Close {
    metrics::counter!("gema_broker_uplinks_unsettled_total", "reason" => reason).increment(1);
    tracing::warn!(
        pkid,
        reason,
        "uplink not settled by the gateway; closing without its PUBACK (the client re-sends it)"
    );
    DisconnectReason::UplinkUnsettled
}

/// Refused PUBLISHes of one connection in the current fixed window.
#[derive(Debug, Default)]
struct DeniedWindow {
    started: Option<Instant>,
    count: u32,
}

impl DeniedWindow {
    /// Counts one refusal at `now` and returns the count in its window.
    fn record(&mut self, now: Instant, window: Duration) -> u32 {
        match self.started {
            Some(start) if now.duration_since(start) < window => {}
            _ => {
                self.started = Some(now);
                self.count = 0;
            }
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> PacketLoop<'_, S> {
    async fn run(&mut self) -> DisconnectReason {
        self.resend_inflight();
        let mut deadline = Instant::now() + self.keepalive;
        loop {
            let max_unsettled = self.conn.shared.config.limits.max_unsettled_uplinks.max(1);
            // Handle every complete frame already buffered (while the PUBACKs owed stay
            // under their cap: past it, the client waits for the gateway).
            while self.pubacks.len() < max_unsettled {
                match self.conn.decode() {
                    Ok(Some(Inbound::Packet(p))) => {
                        // Boxed so the idle loop's future does not reserve room for the
                        // largest packet handler.
                        if let Err(reason) = Box::pin(self.handle(p)).await {
                            return reason;
                        }
                    }
                    Ok(Some(Inbound::UnsupportedProtocol { .. })) => {
                        return DisconnectReason::ProtocolViolation;
                    }
                    Ok(None) => break,
                    Err(reason) => return reason,
                }
            }
            if self.conn.rx.is_empty() {
                self.conn.rx = BytesMut::new();
            }
            if self.pump() {
                // More is queued than one batch: come back after this write.
                self.session.notify.notify_one();
            }
            let shutdown = self.conn.shared.shutdown.clone();
            let write_timeout = self.conn.shared.config.limits.write_timeout;
            // A client that stops reading cannot hold the task beyond the write timeout, nor
            // delay a kick or a takeover.
            tokio::select! {
                _ = self.kick.token.cancelled() => return self.kick.reason(),
                _ = shutdown.cancelled() => return DisconnectReason::Shutdown,
                r = tokio::time::timeout(write_timeout, self.conn.flush()) => match r {
                    Ok(Ok(())) => {}
                    Ok(Err(reason)) => return reason,
                    Err(_) => return DisconnectReason::WriteTimeout,
                },
            }
            let keepalive_on = !self.keepalive.is_zero();
            let reading = self.pubacks.len() < max_unsettled;
            tokio::select! {
                _ = self.kick.token.cancelled() => return self.kick.reason(),
                _ = shutdown.cancelled() => return DisconnectReason::Shutdown,
                _ = tokio::time::sleep_until(deadline.into()), if keepalive_on && reading => {
                    return DisconnectReason::KeepaliveTimeout;
                }
                r = self.conn.read_more(), if reading => {
                    if let Err(reason) = r {
                        return reason;
                    }
                    deadline = Instant::now() + self.keepalive;
                }
                r = self.pubacks.front_settled() => {
                    if let Err(reason) = r.and_then(|()| self.write_ready_pubacks()) {
                        return reason;
                    }
                    // Not reading meanwhile was the broker's doing, not the client's.
                    deadline = deadline.max(Instant::now() + self.keepalive);
                }
                _ = self.session.notify.notified() => {}
            }
        }
    }

    /// After a reconnect: unacknowledged publishes again with DUP, PUBRELs again.
    fn resend_inflight(&mut self) {
        let packets: Vec<Packet> = lock(&self.session.state)
            .inflight
            .iter()
            .map(|i| match i.stage {
                Awaiting::Comp => Packet::PubRel(PubRel::new(i.pkid)),
                Awaiting::Ack | Awaiting::Rec => {
                    Packet::Publish(publish_packet(&i.msg, i.pkid, true))
                }
            })
            .collect();
        for p in &packets {
            self.conn.write(p);
        }
    }

    /// Moves queued messages into the inflight window and encodes up to one batch of them.
    /// Returns whether more could be sent right away.
    fn pump(&mut self) -> bool {
        let limits = &self.conn.shared.config.sessions;
        let mut out = Vec::new();
        let more = {
            let mut st = lock(&self.session.state);
            while st.inflight.len() < limits.max_inflight.max(1) && out.len() < PUMP_BATCH {
                let Some(mut msg) = st.queue.pop_front() else {
                    break;
                };
                if msg.enqueued.elapsed() > limits.max_queued_age {
                    count_drop(DropReason::Expired);
                    msg.resolve(DeliveryOutcome::Dropped(DropReason::Expired));
                    continue;
                }
                metrics::counter!("gema_broker_messages_out_total", "qos" => qos_label(msg.qos))
                    .increment(1);
                if msg.qos == QoS::AtMostOnce {
                    out.push(publish_packet(&msg, 0, false));
                    msg.resolve(DeliveryOutcome::Sent);
                    continue;
                }
                let pkid = st.allocate_pkid();
                out.push(publish_packet(&msg, pkid, false));
                let stage = if msg.qos == QoS::AtLeastOnce {
                    Awaiting::Ack
                } else {
                    Awaiting::Rec
                };
                st.inflight.push_back(Inflight { pkid, msg, stage });
                metrics::gauge!("gema_broker_inflight").increment(1.0);
            }
            !st.queue.is_empty() && st.inflight.len() < limits.max_inflight.max(1)
        };
        for p in out {
            self.conn.write(&Packet::Publish(p));
        }
        more
    }

    async fn handle(&mut self, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Publish(p) => self.on_publish(p).await,
            Packet::PubAck(PubAck { pkid }) => {
                self.complete(pkid, Awaiting::Ack);
                Ok(())
            }
            Packet::PubRec(PubRec { pkid }) => {
                let known = {
                    let mut st = lock(&self.session.state);
                    match st.inflight.iter_mut().find(|i| i.pkid == pkid) {
                        Some(i) if i.stage == Awaiting::Rec => {
                            i.stage = Awaiting::Comp;
                            i.msg.payload = Bytes::new();
                            true
                        }
                        Some(i) => i.stage == Awaiting::Comp,
                        None => false,
                    }
                };
                if known {
                    self.conn.write(&Packet::PubRel(PubRel::new(pkid)));
                }
                Ok(())
            }
            Packet::PubComp(PubComp { pkid }) => {
                self.complete(pkid, Awaiting::Comp);
                Ok(())
            }
            Packet::PubRel(PubRel { pkid }) => {
                lock(&self.session.state).incoming_qos2.remove(&pkid);
                self.conn.write(&Packet::PubComp(PubComp::new(pkid)));
                Ok(())
            }
            Packet::Subscribe(s) => {
                self.on_subscribe(s);
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingReq => {
                self.conn.write(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect => Err(DisconnectReason::ClientDisconnect),
            Packet::Connect(_) => {
                tracing::info!(client = self.who.label(), "second CONNECT");
                Err(DisconnectReason::ProtocolViolation)
            }
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(DisconnectReason::ProtocolViolation)
            }
        }
    }

    /// Finishes an outgoing QoS 1/2 flow; unknown or out-of-stage packet ids are ignored.
    fn complete(&mut self, pkid: u16, stage: Awaiting) {
        let done = {
            let mut st = lock(&self.session.state);
            let pos = st
                .inflight
                .iter()
                .position(|i| i.pkid == pkid && i.stage == stage);
            pos.and_then(|p| st.inflight.remove(p))
        };
        if let Some(mut i) = done {
            metrics::gauge!("gema_broker_inflight").decrement(1.0);
            i.msg.resolve(DeliveryOutcome::Acknowledged);
        }
    }

    /// Writes the PUBACKs owed whose turn has come (settled, and every earlier one too).
    fn write_ready_pubacks(&mut self) -> Result<(), Close> {
        for pkid in self.pubacks.take_ready()? {
            self.conn.write(&Packet::PubAck(PubAck::new(pkid)));
        }
        Ok(())
    }

    async fn on_publish(&mut self, p: Publish) -> Result<(), Close> {
        let shared = self.conn.shared.clone();
        if let Err(denied) = gema_acl::check_publish(self.who.acl(), &p.topic) {
            return self.on_denied_publish(&p, denied);
        }
        metrics::counter!("gema_broker_messages_in_total", "qos" => qos_label(p.qos)).increment(1);
        if let Who::Claim { claim_id, serial } = self.who {
            return self.on_provisioning_publish(&p, claim_id, serial).await;
        }
        if p.qos == QoS::ExactlyOnce && lock(&self.session.state).incoming_qos2.contains(&p.pkid) {
            // A retransmission of a QoS 2 message already delivered.
            self.conn.write(&Packet::PubRec(PubRec::new(p.pkid)));
            return Ok(());
        }
        // A device's QoS 1 uplink is PUBACKed once the gateway settles it (its effect is
        // durable), not on routing: a crash in between must leave the device re-sending it.
        let mut settled = None;
        if let Some(id) = self.who.device_id() {
            let settle = if p.qos == QoS::AtLeastOnce {
                let (settle, receiver) = oneshot::channel();
                settled = Some(receiver);
                Some(settle)
            } else {
                None
            };
            let uplink = Uplink {
                device_id: id.to_owned(),
                topic: p.topic.clone(),
                payload: p.payload.clone(),
                qos: p.qos,
                retain: p.retain,
                last_will: false,
                received_at: SystemTime::now(),
                settle,
            };
            tokio::select! {
                _ = self.kick.token.cancelled() => return Err(self.kick.reason()),
                _ = shared.shutdown.cancelled() => return Err(DisconnectReason::Shutdown),
                r = shared.uplinks.send(uplink) => {
                    if r.is_err() {
                        metrics::counter!("gema_broker_uplinks_dropped_total", "reason" => "no_consumer").increment(1);
                        // Nobody to settle it: acknowledged on routing, as for anyone else.
                        settled = None;
                    }
                }
            }
        }
        shared.route(&p.topic, p.payload, p.qos, p.retain, None);
        if p.qos == QoS::ExactlyOnce {
            // Recorded only once delivered: if the connection ends before this point, the
            // client's retransmission is delivered instead of being taken for a duplicate.
            lock(&self.session.state).incoming_qos2.insert(p.pkid);
        }
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                let deadline = Instant::now() + shared.config.limits.settle_timeout;
                self.pubacks.push(p.pkid, settled, deadline);
                self.write_ready_pubacks()?;
            }
            QoS::ExactlyOnce => self.conn.write(&Packet::PubRec(PubRec::new(p.pkid))),
        }
        Ok(())
    }

    /// A claim session's request: handed to whoever takes provisioning requests, never
    /// routed (nobody else reads another device's provisioning), and acknowledged at once
    /// (the answer is the acknowledgement that matters).
    async fn on_provisioning_publish(
        &mut self,
        p: &Publish,
        claim_id: &str,
        serial: &str,
    ) -> Result<(), Close> {
        let shared = self.conn.shared.clone();
        let request = ProvisioningRequest {
            claim_id: claim_id.to_owned(),
            serial: serial.to_owned(),
            payload: p.payload.clone(),
            received_at: SystemTime::now(),
        };
        tokio::select! {
            _ = self.kick.token.cancelled() => return Err(self.kick.reason()),
            _ = shared.shutdown.cancelled() => return Err(DisconnectReason::Shutdown),
            r = shared.provisioning.send(request) => {
                if r.is_err() {
                    metrics::counter!("gema_broker_uplinks_dropped_total", "reason" => "no_provisioning_consumer").increment(1);
                }
            }
        }
        self.acknowledge_unrouted(p)
    }

    /// A PUBLISH the ACL refused: dropped and counted; then acknowledged as if accepted
    /// (`ignore`, until the flood limit) or the connection closed (`disconnect`).
    fn on_denied_publish(&mut self, p: &Publish, denied: gema_acl::Denied) -> Result<(), Close> {
        metrics::counter!("gema_acl_denied_total", "kind" => "publish", "reason" => denied.as_label())
            .increment(1);
        let policy = &self.conn.shared.config.denied_publish;
        let client = self.who.label();
        if policy.action == DenyAction::Disconnect {
            tracing::warn!(client, topic = %p.topic, %denied, "publish refused; closing");
            return Err(DisconnectReason::AclViolation);
        }
        let count = self.denied.record(Instant::now(), policy.flood_window);
        if policy.flood_limit != 0 && count > policy.flood_limit {
            tracing::warn!(client, topic = %p.topic, %denied, count, "refused publishes past the flood limit; closing");
            return Err(DisconnectReason::AclViolation);
        }
        // One line per window at info, the rest at debug: a client repeating itself does
        // not flood the log either.
        if count == 1 {
            tracing::info!(client, topic = %p.topic, %denied, "publish refused; acknowledged and dropped");
        } else {
            tracing::debug!(client, topic = %p.topic, %denied, count, "publish refused; acknowledged and dropped");
        }
        self.acknowledge_unrouted(p)
    }

    /// Acknowledges a PUBLISH that no subscriber receives through the router (refused, or
    /// taken by a consumer of its own) as if delivered. QoS 1: in its turn behind any PUBACK
    /// still owed (§4.6). QoS 2: the client's PUBREL is answered with PUBCOMP like any other;
    /// nothing was routed, so nothing is recorded against a retransmission.
    fn acknowledge_unrouted(&mut self, p: &Publish) -> Result<(), Close> {
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.pubacks.push(p.pkid, None, Instant::now());
                self.write_ready_pubacks()?;
            }
            QoS::ExactlyOnce => self.conn.write(&Packet::PubRec(PubRec::new(p.pkid))),
        }
        Ok(())
    }

    fn on_subscribe(&mut self, s: Subscribe) {
        let shared = self.conn.shared.clone();
        let key = self.session.key.clone();
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        for f in &s.filters {
            let decision = gema_acl::check_subscribe(self.who.acl(), &f.path);
            let full = {
                let st = lock(&self.session.state);
                st.subscriptions.len() >= shared.config.sessions.max_subscriptions
                    && !st.subscriptions.contains_key(&f.path)
            };
            if decision.is_ok() && full {
                metrics::counter!("gema_broker_subscriptions_refused_total", "reason" => "limit")
                    .increment(1);
                codes.push(SubscribeReasonCode::Failure);
                continue;
            }
            match decision {
                Ok(()) => {
                    lock(&self.session.state)
                        .subscriptions
                        .insert(f.path.clone(), f.qos);
                    shared
                        .router
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .subscribe(&f.path, &key, f.qos);
                    for (topic, m) in lock(&shared.retained).matching(&f.path) {
                        retained.push((topic, m, f.qos));
                    }
                    codes.push(SubscribeReasonCode::Success(f.qos));
                }
                Err(denied) => {
                    metrics::counter!("gema_acl_denied_total", "kind" => "subscribe", "reason" => denied.as_label())
                        .increment(1);
                    tracing::info!(client = self.who.label(), filter = %f.path, %denied, "subscription refused");
                    codes.push(SubscribeReasonCode::Failure);
                }
            }
        }
        self.conn.write(&Packet::SubAck(SubAck::new(s.pkid, codes)));
        let now = Instant::now();
        for (topic, m, granted) in retained {
            self.session.enqueue(
                Outgoing {
                    topic: Arc::from(topic),
                    payload: m.payload,
                    qos: min_qos(m.qos, granted),
                    retain: true,
                    enqueued: now,
                    receipt: None,
                },
                &shared.config.sessions,
            );
        }
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let key = self.session.key.clone();
        for filter in &u.topics {
            if lock(&self.session.state)
                .subscriptions
                .remove(filter)
                .is_some()
            {
                self.conn
                    .shared
                    .router
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .unsubscribe(filter, &key);
            }
        }
        self.conn.write(&Packet::UnsubAck(UnsubAck::new(u.pkid)));
    }
}

fn publish_packet(msg: &Outgoing, pkid: u16, dup: bool) -> Publish {
    let mut p = Publish::from_bytes(msg.topic.as_ref(), msg.qos, msg.payload.clone());
    p.pkid = pkid;
    p.dup = dup;
    p.retain = msg.retain;
    p
}
