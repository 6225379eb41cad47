//! `gema bench broker`: connects N simulated soundboxes over TLS (from 127.0.0.x source
//! addresses, spread over several client processes so neither side exceeds its descriptor
//! limit) and prints figures: connect rate, RSS per idle connection, and downlink latency
//! (publish → device receives, QoS 1) at a given rate. The same load can be pointed at a
//! Mosquitto 2.0 started with the same certificate, for comparison.
//!
//! ```text
//! cargo run --release -p gema-broker --example bench_broker -- \
//!     [--target gema|mosquitto] [--devices 10000] [--procs 4] [--concurrency 1000] \
//!     [--rate 200] [--messages 2000]
//! ```
//!
//! `--concurrency` caps connects in flight per client process (devices reconnecting after an
//! outage arrive in waves, not in one burst larger than the kernel's accept queue:
//! `net.core.somaxconn` caps any listen backlog).
//!
//! Performance is measured here, never asserted in tests.

// Figures are ratios and percentiles: floating point is the point here.
#![allow(clippy::float_arithmetic)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use gema_broker::codec::encode;
use gema_broker::{AuthRefusal, Authenticator, Broker, BrokerConfig, Downlink, Identity, QoS};
use rumqttc::mqttbytes::v4::{self, Connect, Packet, PubAck, Subscribe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const PASSWORD: &str = "bench";

fn device_id(i: usize) -> String {
    format!("dev{i:06}")
}

#[derive(Debug)]
struct BenchRegistry;

#[async_trait::async_trait]
impl Authenticator for BenchRegistry {
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
        _: SocketAddr,
    ) -> Result<Identity, AuthRefusal> {
        if password == PASSWORD {
            Ok(Identity::Device(username.to_owned()))
        } else {
            Err(AuthRefusal::BadCredentials)
        }
    }
    async fn authorize_certificate(
        &self,
        _: &str,
        _: &gema_broker::ClientCertificate,
        _: SocketAddr,
    ) -> Result<(), AuthRefusal> {
        Err(AuthRefusal::NotAuthorized)
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(client(&args));
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(parent(&args));
}

enum Target {
    Gema(Broker),
    Mosquitto(Child),
}

async fn parent(args: &[String]) {
    let target_name: String = arg(args, "--target", "gema".to_owned());
    let devices: usize = arg(args, "--devices", 10_000);
    let procs: usize = arg(args, "--procs", 4).max(1);
    let rate: u64 = arg(args, "--rate", 200).max(1);
    let messages: usize = arg(args, "--messages", 2000);
    let concurrency: usize = arg(args, "--concurrency", 1000);
    let limit = gema_broker::raise_fd_limit().unwrap_or(0);

    let dir = tempfile::tempdir().unwrap();
    let pki = gema_certs::DevPki::new(dir.path());
    pki.ensure(&["localhost".into(), "127.0.0.1".into()])
        .unwrap();
    let files = pki.files();

    let (target, port, pid) = if target_name == "mosquitto" {
        let port = free_port();
        let child = start_mosquitto(dir.path(), &files, port);
        let pid = child.id();
        (Target::Mosquitto(child), port, pid)
    } else {
        let mut config = BrokerConfig::new(&files.server_cert, &files.server_key);
        config.tls.bind = "127.0.0.1:0".parse().unwrap();
        config.limits.backlog = 65_535;
        let mut broker = Broker::start(config, Arc::new(BenchRegistry))
            .await
            .unwrap();
        // Drain uplinks, settling each (its PUBACK goes out), so devices never wait on the
        // gateway.
        let mut uplinks = broker.take_uplinks().unwrap();
        tokio::spawn(async move {
            while let Some(uplink) = uplinks.recv().await {
                if let Some(settle) = uplink.settle {
                    let _ = settle.send(());
                }
            }
        });
        let port = broker.tls_addr().port();
        (Target::Gema(broker), port, std::process::id())
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_kib(pid);
    println!(
        "target: {target_name}, devices: {devices}, client processes: {procs}, \
         connects in flight per process: {concurrency}, fd limit: {limit}"
    );

    // Start the clients and let them set up before the clock starts.
    let per = devices.div_ceil(procs);
    let mut children = Vec::new();
    for p in 0..procs {
        let start = p * per;
        let count = per.min(devices.saturating_sub(start));
        if count == 0 {
            break;
        }
        let src = Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(p).unwrap());
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("client")
            .args(["--port", &port.to_string()])
            .args(["--ca", &files.ca_cert.display().to_string()])
            .args(["--start", &start.to_string(), "--count", &count.to_string()])
            .args(["--src", &src.to_string()])
            .args(["--concurrency", &concurrency.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        children.push((child, stdin, stdout));
    }
    for (_, _, out) in &mut children {
        expect_line(out, "STARTED");
    }
    let t0 = Instant::now();
    for (_, stdin, _) in &mut children {
        writeln!(stdin, "GO").unwrap();
    }
    let mut failed = 0usize;
    for (_, _, out) in &mut children {
        let line = expect_line(out, "READY");
        failed += line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0usize);
    }
    let connect_time = t0.elapsed();
    let connected = devices - failed;
    println!(
        "connect: {connected} TLS devices connected+subscribed in {:.3} s = {:.0} connects/s ({failed} failed)",
        connect_time.as_secs_f64(),
        connected as f64 / connect_time.as_secs_f64()
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let loaded = rss_kib(pid);
    println!(
        "rss: baseline {baseline} KiB, with {connected} idle devices {loaded} KiB = {:.2} KiB per idle TLS device",
        (loaded.saturating_sub(baseline)) as f64 / connected.max(1) as f64
    );

    // Downlink latency at a fixed rate.
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let mut publisher = match &target {
        Target::Gema(broker) => Publisher::Gema(broker.handle()),
        Target::Mosquitto(_) => Publisher::mosquitto(port, &files.ca_cert).await,
    };
    let mut ticker = tokio::time::interval(interval);
    for m in 0..messages {
        ticker.tick().await;
        let id = device_id((m * 7919) % devices);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        publisher
            .publish(&id, Bytes::copy_from_slice(&now.to_be_bytes()))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut latencies = Vec::new();
    for (_, stdin, _) in &mut children {
        writeln!(stdin, "STOP").unwrap();
    }
    for (child, _, out) in &mut children {
        let line = expect_line(out, "LAT");
        latencies.extend(
            line.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse::<u64>().ok()),
        );
        let _ = child.wait();
    }
    latencies.sort_unstable();
    let pct = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "downlink latency (QoS 1, {rate}/s, {} of {messages} received): p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        pct(50) as f64 / 1000.0,
        pct(99) as f64 / 1000.0
    );

    match target {
        Target::Gema(broker) => broker.shutdown().await,
        Target::Mosquitto(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

enum Publisher {
    Gema(gema_broker::BrokerHandle),
    Mosquitto(rumqttc::AsyncClient),
}

impl Publisher {
    async fn mosquitto(port: u16, ca: &Path) -> Self {
        let mut opts = rumqttc::MqttOptions::new("bench-gateway", "localhost", port);
        opts.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
            ca: std::fs::read(ca).unwrap(),
            alpn: None,
            client_auth: None,
        }));
        opts.set_inflight(1000);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 1000);
        tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        Publisher::Mosquitto(client)
    }

    async fn publish(&mut self, device: &str, payload: Bytes) {
        let topic = format!("devices/{device}/down/pay");
        match self {
            Publisher::Gema(h) => {
                let _ = h.publish(Downlink {
                    device_id: device.to_owned(),
                    topic,
                    payload,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                });
            }
            Publisher::Mosquitto(c) => {
                let _ = c
                    .publish_bytes(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                    .await;
            }
        }
    }
}

fn expect_line(out: &mut impl BufRead, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("client process ended before {prefix}");
        }
        if line.starts_with(prefix) {
            return line.trim().to_owned();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_mosquitto(dir: &Path, files: &gema_certs::TlsFiles, port: u16) -> Child {
    let conf: PathBuf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nper_listener_settings false\nallow_anonymous true\npersistence false\nlog_dest none\n\
             max_connections -1\nmax_inflight_messages 32\n\
             listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            files.ca_cert.display(),
            files.server_cert.display(),
            files.server_key.display()
        ),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto installed (Debian package `mosquitto`)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// One client process: `count` devices from one source address.
async fn client(args: &[String]) {
    let port: u16 = arg(args, "--port", 0);
    let ca: String = arg(args, "--ca", String::new());
    let start: usize = arg(args, "--start", 0);
    let count: usize = arg(args, "--count", 0);
    let src: Ipv4Addr = arg(args, "--src", Ipv4Addr::LOCALHOST);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(
        arg(args, "--concurrency", 1000).max(1),
    ));
    let _ = gema_broker::raise_fd_limit();

    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &std::fs::read(&ca).unwrap()[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);

    println!("STARTED");
    let mut stdin = BufReader::new(std::io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).unwrap();

    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    for i in start..start + count {
        let connector = connector.clone();
        let ready = ready_tx.clone();
        let latencies = latencies.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            let permit = in_flight.acquire_owned().await.unwrap();
            let connected = device(connector, server, src, &device_id(i)).await;
            drop(permit);
            match connected {
                Ok(mut session) => {
                    let _ = ready.send(true);
                    session.serve(&latencies).await;
                }
                Err(_) => {
                    let _ = ready.send(false);
                }
            }
        });
    }
    let mut failed = 0;
    for _ in 0..count {
        if !ready_rx.recv().await.unwrap_or(false) {
            failed += 1;
        }
    }
    println!("READY {failed}");
    // Wait for STOP on a blocking thread, keep serving meanwhile.
    tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = stdin.read_line(&mut line);
    })
    .await
    .unwrap();
    let l = latencies.lock().unwrap();
    let values: Vec<String> = l.iter().map(u64::to_string).collect();
    println!("LAT {}", values.join(" "));
    std::io::stdout().flush().unwrap();
    std::process::exit(0);
}

struct DeviceSession {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: BytesMut,
}

async fn device(
    connector: tokio_rustls::TlsConnector,
    server: SocketAddr,
    src: Ipv4Addr,
    id: &str,
) -> std::io::Result<DeviceSession> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    let tcp = socket.connect(server).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await?;
    let mut s = DeviceSession {
        stream,
        buf: BytesMut::new(),
    };
    let mut c = Connect::new(id);
    c.keep_alive = 600;
    c.set_login(id, PASSWORD);
    s.send(&Packet::Connect(c)).await?;
    match s.recv().await? {
        Packet::ConnAck(a) if a.code == v4::ConnectReturnCode::Success => {}
        other => return Err(std::io::Error::other(format!("{other:?}"))),
    }
    let mut sub = Subscribe::new(
        format!("devices/{id}/down/#"),
        rumqttc::mqttbytes::QoS::AtLeastOnce,
    );
    sub.pkid = 1;
    s.send(&Packet::Subscribe(sub)).await?;
    match s.recv().await? {
        Packet::SubAck(_) => Ok(s),
        other => Err(std::io::Error::other(format!("{other:?}"))),
    }
}

impl DeviceSession {
    async fn send(&mut self, p: &Packet) -> std::io::Result<()> {
        let mut b = BytesMut::new();
        encode(p, &mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.stream.write_all(&b).await?;
        self.stream.flush().await
    }

    async fn recv(&mut self) -> std::io::Result<Packet> {
        loop {
            match v4::read(&mut self.buf, 1 << 20) {
                Ok(p) => {
                    if self.buf.is_empty() {
                        self.buf = BytesMut::new();
                    }
                    return Ok(p);
                }
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn serve(&mut self, latencies: &std::sync::Mutex<Vec<u64>>) {
        while let Ok(p) = self.recv().await {
            if let Packet::Publish(p) = p {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64;
                if let Ok(sent) = <[u8; 8]>::try_from(&p.payload[..]) {
                    latencies
                        .lock()
                        .unwrap()
                        .push(now.saturating_sub(u64::from_be_bytes(sent)) / 1000);
                }
                if p.qos != rumqttc::mqttbytes::QoS::AtMostOnce
                    && self
                        .send(&Packet::PubAck(PubAck::new(p.pkid)))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
    }
}
