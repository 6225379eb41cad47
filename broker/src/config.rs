//! The broker's configuration: plain values the binary fills from its own config tree.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gema_acl::Rule;

/// Everything the broker needs to start. [`Default`] holds the documented defaults.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub tls: TlsListenerConfig,
    /// Optional plain-TCP listener for development and conformance tests (off by default).
    pub plain: Option<PlainListenerConfig>,
    /// Service principals (not devices) and their ACL rules.
    pub services: Vec<ServicePrincipal>,
    pub limits: Limits,
    pub sessions: SessionLimits,
    pub failed_logins: FailedLoginLimits,
    /// What a PUBLISH the ACL refuses leads to.
    pub denied_publish: DeniedPublish,
}

impl BrokerConfig {
    /// The defaults, serving the given certificate and key.
    pub fn new(server_cert: impl Into<PathBuf>, server_key: impl Into<PathBuf>) -> Self {
        Self {
            tls: TlsListenerConfig::new(server_cert, server_key),
            plain: None,
            services: Vec::new(),
            limits: Limits::default(),
            sessions: SessionLimits::default(),
            failed_logins: FailedLoginLimits::default(),
            denied_publish: DeniedPublish::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsListenerConfig {
    /// Default `0.0.0.0:8883`.
    pub bind: SocketAddr,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// CA that issues device certificates. When set, a client may authenticate with a
    /// certificate instead of a password (mTLS on the same port; certificates are optional).
    pub client_ca: Option<PathBuf>,
    /// How long a client has to finish the TLS handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; more wait (within their timeout). Default 1024.
    pub max_concurrent_handshakes: usize,
    /// How often certificate files are checked for changes (0 = never; reload can also be
    /// triggered with `BrokerHandle::reload_certificates`). Default 30 s.
    pub reload_check_interval: Duration,
}

impl TlsListenerConfig {
    pub fn new(server_cert: impl Into<PathBuf>, server_key: impl Into<PathBuf>) -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 8883)),
            server_cert: server_cert.into(),
            server_key: server_key.into(),
            client_ca: None,
            handshake_timeout: Duration::from_secs(10),
            max_concurrent_handshakes: 1024,
            reload_check_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlainListenerConfig {
    /// Default `127.0.0.1:1883`: loopback unless explicitly configured otherwise.
    pub bind: SocketAddr,
    /// Clients that send no user name are mapped to this service principal (must be one of
    /// [`BrokerConfig::services`]). `None` (the default) refuses them.
    pub anonymous_service: Option<String>,
}

impl Default for PlainListenerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 1883)),
            anonymous_service: None,
        }
    }
}

/// A non-device principal with explicit Mosquitto-style rules (`%u`, `%c`).
#[derive(Clone)]
pub struct ServicePrincipal {
    /// Its MQTT user name. Must not be a device id: a name listed here with a password is
    /// never passed to the authenticator.
    pub name: String,
    /// When set, the broker itself checks this password for user `name` (in constant time)
    /// without asking the [`Authenticator`](crate::Authenticator). When `None`, the
    /// authenticator may still return `Identity::Service(name)`, or the plain listener may
    /// map anonymous clients to it.
    pub password: Option<String>,
    pub rules: Vec<Rule>,
}

impl std::fmt::Debug for ServicePrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicePrincipal")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("rules", &self.rules)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest packet accepted (remaining length), checked before it is buffered.
    /// Default 64 KiB.
    pub max_packet_size: usize,
    /// Time between TCP/TLS establishment and CONNECT. Default 10 s.
    pub connect_timeout: Duration,
    /// Listen backlog of each listener. Default 4096.
    pub backlog: u32,
    /// Open connections (past the handshake cap) at once; more are closed at accept.
    /// Default 100,000.
    pub max_connections: usize,
    /// TCP keepalive idle time on every accepted socket (probes every quarter of it), so a
    /// peer that vanished is found even when its MQTT keepalive is 0. `None` disables.
    /// Default 120 s.
    pub tcp_keepalive: Option<Duration>,
    /// A write to a client that does not read for this long closes it. Default 30 s.
    pub write_timeout: Duration,
    /// Retained messages kept in all; past it, new retained topics are not stored (counted).
    /// Default 100,000.
    pub max_retained: usize,
    /// Capacity of the uplink channel towards the gateway; when full, devices publishing
    /// wait (TCP back-pressure). Default 1024.
    pub uplink_capacity: usize,
    /// Presence events buffered per receiver. A receiver that falls further behind loses
    /// events; a [`crate::PresenceFeed`] then resynchronises from the session set, so no
    /// device's latest state is lost. Default 4096.
    pub presence_capacity: usize,
    /// A device's QoS 1 uplinks whose PUBACK waits for the gateway to settle them, per
    /// connection (see [`crate::Uplink::settle`]); at this many the connection stops
    /// reading until the oldest is settled (TCP back-pressure). Default 32.
    pub max_unsettled_uplinks: usize,
    /// How long the oldest unsettled uplink may wait before the connection is closed
    /// without its PUBACK (the client re-sends it after reconnecting). Default 30 s, as
    /// `write_timeout`: a commit slower than that means the store is in trouble, and the
    /// device is not held up meanwhile (it keeps publishing, up to `max_unsettled_uplinks`).
    pub settle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_packet_size: 64 * 1024,
            connect_timeout: Duration::from_secs(10),
            backlog: 4096,
            max_connections: 100_000,
            tcp_keepalive: Some(Duration::from_secs(120)),
            write_timeout: Duration::from_secs(30),
            max_retained: 100_000,
            uplink_capacity: 1024,
            presence_capacity: 4096,
            max_unsettled_uplinks: 32,
            settle_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Messages queued per session (offline, or waiting for the inflight window); the oldest
    /// is dropped, and counted, when full. Default 1000.
    pub max_queued: usize,
    /// A queued message older than this is dropped, and counted, instead of sent.
    /// Default 24 h.
    pub max_queued_age: Duration,
    /// QoS 1/2 messages sent and not yet acknowledged, per session. Default 32.
    pub max_inflight: usize,
    /// A persistent session with no connection for this long is discarded. Default 7 days.
    pub expiry: Duration,
    /// Subscriptions per session; more get SUBACK 0x80. Default 64.
    pub max_subscriptions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_queued: 1000,
            max_queued_age: Duration::from_secs(24 * 3600),
            max_inflight: 32,
            expiry: Duration::from_secs(7 * 24 * 3600),
            max_subscriptions: 64,
        }
    }
}

/// Failed logins allowed per window before CONNECT is refused without asking the registry.
#[derive(Debug, Clone)]
pub struct FailedLoginLimits {
    /// Default 10.
    pub per_device: u32,
    /// Default 50.
    pub per_address: u32,
    /// Default 60 s.
    pub window: Duration,
}

impl Default for FailedLoginLimits {
    fn default() -> Self {
        Self {
            per_device: 10,
            per_address: 50,
            window: Duration::from_secs(60),
        }
    }
}

/// What the broker does with a PUBLISH its ACL refuses. Either way the message is dropped
/// (never routed, retained or handed to the gateway) and counted in
/// `gema_acl_denied_total{kind="publish"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DenyAction {
    /// Acknowledge as if accepted (PUBACK for QoS 1, PUBREC then PUBCOMP for QoS 2, nothing
    /// for QoS 0) and keep the connection, as Mosquitto does and EMQX's default
    /// `deny_action = ignore`: MQTT 3.1.1 has no negative PUBACK, and a client that waits
    /// for its acknowledgement would otherwise stall or reconnect in a loop. A client past
    /// the flood limit is disconnected.
    #[default]
    Ignore,
    /// Close the connection at the first refused PUBLISH (the will fires).
    Disconnect,
}

impl DenyAction {
    /// `"ignore"` or `"disconnect"`, as written in configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            DenyAction::Ignore => "ignore",
            DenyAction::Disconnect => "disconnect",
        }
    }
}

impl std::str::FromStr for DenyAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ignore" => Ok(DenyAction::Ignore),
            "disconnect" => Ok(DenyAction::Disconnect),
            other => Err(format!(
                "{other:?}: the deny action is \"ignore\" or \"disconnect\""
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeniedPublish {
    /// Default [`DenyAction::Ignore`].
    pub action: DenyAction,
    /// With [`DenyAction::Ignore`], a connection that sends more refused PUBLISHes than this
    /// within one [`DeniedPublish::flood_window`] is closed (the will fires;
    /// `gema_broker_connections_closed_total{reason="acl_violation"}`). 0 never closes.
    /// Default 30.
    pub flood_limit: u32,
    /// Default 60 s.
    pub flood_window: Duration,
}

impl Default for DeniedPublish {
    fn default() -> Self {
        Self {
            action: DenyAction::Ignore,
            flood_limit: 30,
            flood_window: Duration::from_secs(60),
        }
    }
}
