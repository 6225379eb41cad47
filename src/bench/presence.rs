//! `gema bench presence`: a connect storm. The real daemon runs in this process (on a
//! runtime of its own); N devices are registered through the admin API; then K child
//! processes (`gema bench presence-fleet`, hidden) connect their share of the fleet over
//! MQTT/TLS, all at once on a signal. Children, because a process may hold only so many
//! open files: each device here is two sockets, the daemon's and the client's, so the
//! clients live elsewhere. It measures what issue 13 was about: from the last device's
//! CONNACK to the moment the daemon's store has every device recorded as connected; and it
//! prints how many presence events the broker's feed missed (and recovered from the session
//! set). It asserts nothing.

use std::collections::HashSet;
use std::io::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::BenchDaemon;
use crate::Config;
use crate::cli::ApiClient;
use crate::sim::{SimDevice, SimEvent, SimOptions, run_device};

/// How long the storm and the recording may take before the run gives up.
const GIVE_UP: Duration = Duration::from_secs(180);

#[derive(Debug, Clone)]
pub struct PresenceBench {
    pub devices: usize,
    /// Child processes the fleet is spread over.
    pub procs: usize,
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub async fn presence(bench: PresenceBench) -> anyhow::Result<()> {
    if bench.devices == 0 || bench.procs == 0 {
        bail!("--devices and --procs must be at least 1");
    }
    let _ = gema_broker::raise_fd_limit();
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let config = storm_config(dir.path())?;
    let daemon = BenchDaemon::start(config.clone(), None).await?;
    // The daemon is stopped whatever happened: dropping its runtime here would panic.
    let outcome = storm(&bench, &daemon, &config, dir.path()).await;
    daemon.stop().await?;
    outcome
}

/// Registers the fleet, starts the children, lets them connect at once and reports.
async fn storm(
    bench: &PresenceBench,
    daemon: &BenchDaemon,
    config: &Config,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    // A second handle on the daemon's database, to watch its presence rows without going
    // through (and loading) the admin API.
    let store = crate::app::open_store(config).await?;
    let (devices, ca_pem) = register(&daemon.api, bench.devices).await?;
    let ids: Vec<String> = devices.iter().map(|d| d.device_id.clone()).collect();

    let ca_path = dir.join("bench-ca.pem");
    std::fs::write(&ca_path, &ca_pem)?;
    let mut children = Vec::new();
    for (k, share) in devices
        .chunks(bench.devices.div_ceil(bench.procs))
        .enumerate()
    {
        let path = dir.join(format!("fleet-{k}.json"));
        let list: Vec<Value> = share
            .iter()
            .map(|d| json!({ "device_id": d.device_id, "secret": d.secret }))
            .collect();
        std::fs::write(&path, serde_json::to_vec(&list)?)?;
        children.push(FleetChild::spawn(daemon.mqtt_port, &ca_path, &path)?);
    }
    for child in &mut children {
        child.expect_line("ready").await?;
    }

    println!(
        "storm: {} devices from {} processes, all at once",
        bench.devices,
        children.len()
    );
    let cpu_before = super::cpu::CpuSample::now(None);
    let started = Instant::now();
    for child in &mut children {
        child.go()?;
    }
    let watch = tokio::spawn(watch_presence(store, ids.clone(), started));
    let mut last_connect_ms = 0;
    let mut connected = 0;
    for child in &mut children {
        let line = child.expect_line("connected").await?;
        let mut words = line.split_whitespace().skip(1);
        connected += words
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        last_connect_ms = last_connect_ms.max(
            words
                .next()
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or(0),
        );
    }
    let storm = started.elapsed();
    let cpu = super::cpu::CpuSample::now(None).since(&cpu_before);
    let recorded = watch.await.context("the presence watch")?;
    let (lagged, resyncs) = presence_lag_counters();
    drop(children);

    #[allow(clippy::cast_precision_loss)]
    let rate = connected as f64 / storm.as_secs_f64();
    println!(
        "connected {connected} of {} devices in {storm:.2?} ({rate:.0} connects/s)",
        ids.len()
    );
    let daemon_cpu = cpu.side(super::cpu::Side::Daemon);
    #[allow(clippy::cast_precision_loss)]
    let per_connect = daemon_cpu.as_secs_f64() * 1e3 / connected.max(1) as f64;
    let busiest: Vec<String> = cpu
        .threads
        .iter()
        .take(3)
        .map(|(name, d)| format!("{name} {:.1} s", d.as_secs_f64()))
        .collect();
    println!(
        "daemon CPU during the storm: {:.1} s, {per_connect:.2} ms per connected device \
         (busiest threads: {})",
        daemon_cpu.as_secs_f64(),
        busiest.join(", ")
    );
    match recorded.all_at_ms {
        Some(at) => println!(
            "presence recorded for {} of {} devices; the last {} ms after the last connect",
            recorded.count,
            ids.len(),
            at - last_connect_ms
        ),
        None => println!(
            "presence recorded for only {} of {} devices after {GIVE_UP:?}",
            recorded.count,
            ids.len()
        ),
    }
    println!(
        "presence events the broker's feed missed: {lagged} (recovered in {resyncs} resyncs \
         from the session set); devices without presence: {}",
        ids.len() - recorded.count
    );
    Ok(())
}

/// The daemon's configuration: loopback port 0 for everything in `data_dir`, the handshake
/// cap and write limit raised so the storm measures presence, not them.
fn storm_config(data_dir: &std::path::Path) -> anyhow::Result<Config> {
    let mut config = super::loopback_config(data_dir, None)?;
    config.mqtt.max_concurrent_handshakes = 4096;
    config.database.max_connections = 16;
    Ok(config)
}

/// Registers `n` devices through the API, 64 at a time: their credentials and the CA.
async fn register(api: &Arc<ApiClient>, n: usize) -> anyhow::Result<(Vec<SimDevice>, Vec<u8>)> {
    let started = Instant::now();
    let mut devices = Vec::with_capacity(n);
    let mut ca_pem = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let jobs = chunk.iter().map(|i| {
            let api = api.clone();
            let i = *i;
            tokio::spawn(async move {
                api.call(
                    reqwest::Method::POST,
                    "/devices",
                    &[],
                    Some(json!({ "serial": format!("STORM-{i}"), "model": "SIM" })),
                )
                .await
            })
        });
        for job in futures_util::future::join_all(jobs).await {
            let (device, ca) = super::issued_device(&job??);
            if ca_pem.is_empty() {
                ca_pem = ca;
            }
            devices.push(device);
        }
    }
    println!(
        "registered {n} devices through the API in {:.1?}",
        started.elapsed()
    );
    Ok((devices, ca_pem))
}

/// What the watch saw: how many devices were recorded connected, and when all were.
struct Recorded {
    count: usize,
    all_at_ms: Option<i64>,
}

/// Reads the daemon's presence rows every 20 ms until every device is recorded connected
/// (or [`GIVE_UP`]).
async fn watch_presence(
    store: Arc<dyn gema_store::Store>,
    ids: Vec<String>,
    started: Instant,
) -> Recorded {
    let mut waiting = ids;
    let total = waiting.len();
    loop {
        let mut recorded = HashSet::new();
        for chunk in waiting.chunks(500) {
            if let Ok(rows) = store.presences(chunk).await {
                recorded.extend(
                    rows.into_iter()
                        .filter(|p| p.connected)
                        .map(|p| p.device_id),
                );
            }
        }
        let now_ms = unix_ms(SystemTime::now());
        waiting.retain(|id| !recorded.contains(id));
        if waiting.is_empty() {
            return Recorded {
                count: total,
                all_at_ms: Some(now_ms),
            };
        }
        if started.elapsed() > GIVE_UP {
            return Recorded {
                count: total - waiting.len(),
                all_at_ms: None,
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `gema_broker_presence_lagged_events_total` and `…_resyncs_total` from this process's
/// metrics (the daemon runs here).
fn presence_lag_counters() -> (u64, u64) {
    let text = crate::telemetry::prometheus().render();
    let value = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .map(|v| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let v = v as u64;
                v
            })
            .sum::<u64>()
    };
    (
        value("gema_broker_presence_lagged_events_total"),
        value("gema_broker_presence_resyncs_total"),
    )
}

/// One child process of the fleet, spoken to over its stdin and stdout (a thread reads
/// its lines; this crate's tokio has no process support).
struct FleetChild {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
}

impl FleetChild {
    fn spawn(port: u16, ca: &std::path::Path, devices: &std::path::Path) -> anyhow::Result<Self> {
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args(["bench", "presence-fleet", "--port", &port.to_string()])
            .arg("--ca")
            .arg(ca)
            .arg("--devices")
            .arg(devices)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a fleet process")?;
        let stdin = child.stdin.take().context("the child's stdin")?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            lines,
        })
    }

    /// The child's next line, which must start with `word`.
    async fn expect_line(&mut self, word: &str) -> anyhow::Result<String> {
        let line = tokio::time::timeout(GIVE_UP, self.lines.recv())
            .await
            .with_context(|| format!("a fleet process did not say {word:?} in time"))?
            .with_context(|| format!("a fleet process ended before saying {word:?}"))?;
        if !line.starts_with(word) {
            bail!("a fleet process said {line:?}, not {word:?}");
        }
        Ok(line)
    }

    fn go(&mut self) -> anyhow::Result<()> {
        self.stdin.write_all(b"go\n")?;
        self.stdin.flush()?;
        Ok(())
    }
}

impl Drop for FleetChild {
    /// A child never outlives the bench, whichever way the bench ends.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hidden `gema bench presence-fleet`: loads its devices, says `ready`, connects them
/// all when a line arrives on stdin, says `connected <count> <unix ms of the last
/// CONNACK>`, and keeps them connected until stdin closes.
pub async fn fleet(
    port: u16,
    ca: &std::path::Path,
    devices: &std::path::Path,
) -> anyhow::Result<()> {
    let _ = gema_broker::raise_fd_limit();
    let ca_pem = std::fs::read(ca).context("reading the CA")?;
    let list: Vec<Value> = serde_json::from_slice(&std::fs::read(devices)?)?;
    let devices: Vec<SimDevice> = list
        .iter()
        .map(|d| SimDevice {
            device_id: d["device_id"].as_str().unwrap_or_default().into(),
            secret: d["secret"].as_str().unwrap_or_default().into(),
        })
        .collect();
    let options = SimOptions {
        host: "localhost".into(),
        port,
        ca_pem,
        drop_ack_percent: Arc::new(AtomicU8::new(0)),
        disconnect_percent: 0,
        keep_alive: Duration::from_secs(60),
        periodic_heartbeats: false,
    };
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    say("ready".into());
    // A line on stdin is the signal; its end, the parent hanging up.
    let (line_tx, mut stdin) = mpsc::unbounded_channel::<()>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if line.is_err() || line_tx.send(()).is_err() {
                break;
            }
        }
    });
    if stdin.recv().await.is_none() {
        return Ok(());
    }

    let (events_tx, mut events) = mpsc::channel(devices.len().max(1) * 2);
    let tasks: Vec<_> = devices
        .iter()
        .map(|d| tokio::spawn(run_device(d.clone(), options.clone(), events_tx.clone())))
        .collect();
    let mut connected = HashSet::new();
    let mut last = SystemTime::now();
    while connected.len() < devices.len() {
        match tokio::time::timeout(GIVE_UP, events.recv()).await {
            Ok(Some(SimEvent::Connected { device_id })) => {
                if connected.insert(device_id) {
                    last = SystemTime::now();
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    say(format!("connected {} {}", connected.len(), unix_ms(last)));
    // Keep the fleet up (and its events drained) until the parent hangs up.
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    while stdin.recv().await.is_some() {}
    drain.abort();
    for task in tasks {
        task.abort();
    }
    Ok(())
}
