//! A broker on port 0 with fresh TLS material per test, a registry stand-in, and a raw MQTT
//! client that speaks packets directly (in the style of Mosquitto's raw-packet tests).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use gema_broker::codec::encode;
use gema_broker::{
    AuthRefusal, Authenticator, Broker, BrokerConfig, BrokerHandle, Identity, PlainListenerConfig,
    PresenceEvent, Rule, ServicePrincipal, Uplink,
};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{self, ConnAck, Connect, ConnectReturnCode, LastWill, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};

/// Upper bound on any single wait in a test, so a broken broker fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(10);

/// The registry stand-in: device id → secret, plus a revocation set.
#[derive(Debug, Default)]
pub struct TestRegistry {
    pub secrets: HashMap<String, String>,
    pub revoked: Mutex<Vec<String>>,
    /// Revoked client certificates, by fingerprint.
    pub revoked_certificates: Mutex<Vec<String>>,
    /// The certificates presented at CONNECT, in order.
    pub presented_certificates: Mutex<Vec<gema_broker::ClientCertificate>>,
    /// How long each password login takes (a registry under a connect storm).
    pub login_delay: Mutex<Duration>,
    /// Password logins answered so far.
    pub logins: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Authenticator for TestRegistry {
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
        _peer: SocketAddr,
    ) -> Result<Identity, AuthRefusal> {
        let delay = *self.login_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        self.logins
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if username == "monitor" && password == "monitor-secret" {
            return Ok(Identity::Service("monitor".into()));
        }
        match self.secrets.get(username) {
            Some(s) if s == password => {
                if self.revoked.lock().unwrap().iter().any(|r| r == username) {
                    Err(AuthRefusal::NotAuthorized)
                } else {
                    Ok(Identity::Device(username.to_owned()))
                }
            }
            _ => Err(AuthRefusal::BadCredentials),
        }
    }

    async fn authorize_certificate(
        &self,
        device_id: &str,
        certificate: &gema_broker::ClientCertificate,
        _peer: SocketAddr,
    ) -> Result<(), AuthRefusal> {
        self.presented_certificates
            .lock()
            .unwrap()
            .push(certificate.clone());
        if self
            .revoked_certificates
            .lock()
            .unwrap()
            .contains(&certificate.fingerprint)
        {
            return Err(AuthRefusal::NotAuthorized);
        }
        if self.secrets.contains_key(device_id) {
            Ok(())
        } else {
            Err(AuthRefusal::NotAuthorized)
        }
    }
}

pub fn secret(id: &str) -> String {
    format!("secret-of-{id}")
}

pub struct TestBroker {
    pub broker: Broker,
    pub handle: BrokerHandle,
    /// Device uplinks. Unless the broker was started with [`TestBroker::start_settling_by_hand`],
    /// each was settled (its PUBACK released) as it came, as a consumer that records
    /// nothing does, and arrives with `settle: None`.
    pub uplinks: mpsc::Receiver<Uplink>,
    pub presence: broadcast::Receiver<PresenceEvent>,
    pub ca_pem: Vec<u8>,
    pub dir: tempfile::TempDir,
    pub registry: Arc<TestRegistry>,
}

pub fn tls_material(dir: &std::path::Path) -> gema_certs::TlsFiles {
    let pki = gema_certs::DevPki::new(dir);
    pki.ensure(&["localhost".into(), "127.0.0.1".into()])
        .unwrap();
    pki.files()
}

pub fn base_config(dir: &std::path::Path) -> BrokerConfig {
    let files = tls_material(dir);
    let mut config = BrokerConfig::new(files.server_cert, files.server_key);
    config.tls.bind = "127.0.0.1:0".parse().unwrap();
    config.plain = Some(PlainListenerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        anonymous_service: None,
    });
    config.services = vec![
        // Authenticated by the registry stand-in.
        ServicePrincipal {
            name: "monitor".into(),
            password: None,
            rules: vec![Rule::parse("read devices/+/up/#").unwrap()],
        },
        // Authenticated by the broker from configuration.
        ServicePrincipal {
            name: "ops".into(),
            password: Some("ops-secret".into()),
            rules: vec![Rule::parse("readwrite ops/%c/#").unwrap()],
        },
    ];
    config
}

impl TestBroker {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut BrokerConfig)) -> Self {
        Self::start_with_devices(&["a", "b", "c"], adjust).await
    }

    /// A broker whose device uplinks reach [`TestBroker::uplinks`] with their settle
    /// handles: the test decides when (and whether) each is PUBACKed.
    pub async fn start_settling_by_hand(adjust: impl FnOnce(&mut BrokerConfig)) -> Self {
        Self::start_inner(&["a", "b", "c"], adjust, false).await
    }

    /// A broker whose registry knows `devices` (each with [`secret`]).
    pub async fn start_with_devices(
        devices: &[impl AsRef<str>],
        adjust: impl FnOnce(&mut BrokerConfig),
    ) -> Self {
        Self::start_inner(devices, adjust, true).await
    }

    async fn start_inner(
        devices: &[impl AsRef<str>],
        adjust: impl FnOnce(&mut BrokerConfig),
        settle_at_once: bool,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = base_config(dir.path());
        adjust(&mut config);
        let registry = Arc::new(TestRegistry {
            secrets: devices
                .iter()
                .map(|id| (id.as_ref().to_string(), secret(id.as_ref())))
                .collect(),
            ..TestRegistry::default()
        });
        let mut broker = Broker::start(config, registry.clone()).await.unwrap();
        let handle = broker.handle();
        let mut uplinks = broker.take_uplinks().unwrap();
        if settle_at_once {
            let (tx, rx) = mpsc::channel(1024);
            tokio::spawn(async move {
                while let Some(mut uplink) = uplinks.recv().await {
                    if let Some(settle) = uplink.settle.take() {
                        let _ = settle.send(());
                    }
                    if tx.send(uplink).await.is_err() {
                        break;
                    }
                }
            });
            uplinks = rx;
        }
        let presence = handle.presence();
        let ca_pem = std::fs::read(dir.path().join("ca.pem")).unwrap();
        TestBroker {
            broker,
            handle,
            uplinks,
            presence,
            ca_pem,
            dir,
            registry,
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A raw client over TLS, TLS established, nothing sent yet.
    pub async fn raw(&self) -> RawClient<tokio_rustls::client::TlsStream<TcpStream>> {
        RawClient::new(tls_connect(self.broker.tls_addr(), &self.ca_pem).await)
    }

    /// A raw client that sent CONNECT as device `id` and got CONNACK 0.
    pub async fn device(&self, id: &str) -> RawClient<tokio_rustls::client::TlsStream<TcpStream>> {
        self.device_with(id, |_| {}).await
    }

    pub async fn device_with(
        &self,
        id: &str,
        adjust: impl FnOnce(&mut Connect),
    ) -> RawClient<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut c = self.raw().await;
        let ack = c.connect_as(id, &secret(id), adjust).await;
        assert_eq!(ack.code, ConnectReturnCode::Success, "{id} connects");
        c
    }

    pub async fn next_uplink(&mut self) -> Uplink {
        tokio::time::timeout(WAIT, self.uplinks.recv())
            .await
            .expect("an uplink in time")
            .expect("uplink channel open")
    }

    pub async fn next_presence(&mut self) -> PresenceEvent {
        tokio::time::timeout(WAIT, self.presence.recv())
            .await
            .expect("a presence event in time")
            .expect("presence channel open")
    }
}

pub async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tls_over(tcp, ca_pem).await.unwrap()
}

pub async fn tls_over(
    tcp: TcpStream,
    ca_pem: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

/// Speaks MQTT packets over any stream.
pub struct RawClient<S> {
    pub stream: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, packet: &Packet) {
        let mut b = BytesMut::new();
        encode(packet, &mut b).unwrap();
        self.send_bytes(&b).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        // The broker may already have closed; a write error shows up as a close on recv.
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// The next packet, or `None` when the broker closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(WAIT, async {
            loop {
                match v4::read(&mut self.buf, 1 << 20) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("broker sent a malformed packet: {e}"),
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("a packet or a close in time")
    }

    /// Asserts the broker closes the connection (skipping anything it sends first, such as
    /// a CONNACK).
    pub async fn expect_closed(&mut self) {
        while let Some(p) = self.recv().await {
            if let Packet::Publish(p) = p {
                panic!("unexpected publish before close: {p:?}");
            }
        }
    }

    pub async fn connect_as(
        &mut self,
        client_id: &str,
        password: &str,
        adjust: impl FnOnce(&mut Connect),
    ) -> ConnAck {
        let mut c = Connect::new(client_id);
        c.keep_alive = 60;
        c.set_login(client_id, password);
        adjust(&mut c);
        self.send(&Packet::Connect(c)).await;
        match self.recv().await {
            Some(Packet::ConnAck(a)) => a,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Subscribes to each filter and returns the SUBACK return codes.
    pub async fn subscribe(
        &mut self,
        pkid: u16,
        filters: &[(&str, QoS)],
    ) -> Vec<v4::SubscribeReasonCode> {
        let mut s = v4::Subscribe::new_many(
            filters
                .iter()
                .map(|(f, q)| v4::SubscribeFilter::new((*f).to_owned(), *q)),
        );
        s.pkid = pkid;
        self.send(&Packet::Subscribe(s)).await;
        match self.recv().await {
            Some(Packet::SubAck(a)) => {
                assert_eq!(a.pkid, pkid);
                a.return_codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub async fn publish(&mut self, topic: &str, qos: QoS, pkid: u16, payload: &[u8]) {
        let mut p = v4::Publish::new(topic, qos, payload.to_vec());
        p.pkid = pkid;
        self.send(&Packet::Publish(p)).await;
    }

    pub async fn expect_publish(&mut self) -> v4::Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// PINGREQ answered by PINGRESP: the connection is alive and everything before it was
    /// processed.
    pub async fn ping(&mut self) {
        self.send(&Packet::PingReq).await;
        loop {
            match self.recv().await {
                Some(Packet::PingResp) => return,
                Some(Packet::Publish(p)) => panic!("unexpected publish: {p:?}"),
                Some(_) => {}
                None => panic!("connection closed instead of PINGRESP"),
            }
        }
    }
}

pub fn will(topic: &str, payload: &str) -> LastWill {
    LastWill::new(topic, payload.as_bytes().to_vec(), QoS::AtLeastOnce, false)
}

pub fn downlink(device: &str, topic: &str, payload: &str, qos: QoS) -> gema_broker::Downlink {
    gema_broker::Downlink {
        device_id: device.into(),
        topic: topic.into(),
        payload: bytes::Bytes::from(payload.to_owned()),
        qos,
        retain: false,
    }
}

/// The metrics recorded on the test's thread from now on. `#[tokio::test]` runs the broker's
/// tasks on that one thread, so this sees the broker's counters and gauges and no other
/// test's.
pub struct Metrics {
    handle: metrics_exporter_prometheus::PrometheusHandle,
    _guard: metrics::LocalRecorderGuard<'static>,
}

impl Metrics {
    pub fn capture() -> Self {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Leaked so the guard may live in the struct; one small recorder per test.
        let recorder: &'static _ = Box::leak(Box::new(recorder));
        Metrics {
            handle,
            _guard: metrics::set_default_local_recorder(recorder),
        }
    }

    /// The sum of every series of `name` whose labels include all of `labels` (0 when none).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.handle.render();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                (metric == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())
                .flatten()
            })
            .sum()
    }

    /// Waits (up to [`WAIT`]) until `value(name, labels)` equals `want`.
    pub async fn wait_for(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let reached = tokio::time::timeout(WAIT, async {
            loop {
                #[allow(clippy::float_cmp)]
                if self.value(name, labels) == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "{name}{labels:?} is {} after {WAIT:?}, expected {want}",
            self.value(name, labels)
        );
    }
}
