//! `gema bench payments`: the real daemon in this process, N simulated soundboxes over
//! MQTT/TLS, and signed Midtrans callbacks over HTTP at a target rate. It measures what a
//! merchant feels: from the moment the provider's callback is sent to the moment the device
//! has the announcement. It prints figures; it asserts nothing.
//!
//! Everything shares this machine's cores: the load generator, the HTTP client, the
//! simulated devices and the daemon. The figures are therefore a floor for the daemon alone.
//!
//! A run is a sequence of steps, one function each: `BenchDaemon::start` (the daemon on a
//! runtime of its own), `provision` and `connect` the fleet, `wait_until_settled` (the
//! daemon has recorded every connect), `prepare_orders`; then the measured part,
//! `fire_callbacks` (the load generator) and `collect` (HTTP answers, then the devices'
//! announcements), and `print_report`. The set-up steps print how long they took; the
//! report's figures come from the measured part only.

// Rates and percent figures for display only; no money is computed here.
#![allow(clippy::float_arithmetic)]

pub mod billing;
pub mod billing_import;
pub mod certs;
pub mod claims;
pub mod console;
pub mod crash;
pub mod export;
pub mod presence;
pub mod reconcile;
pub mod settlement;
pub mod whatsapp;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::cli::{ApiClient, ClientError};
use crate::sim::{SimDevice, SimEvent, SimOptions, run_device};
use crate::{App, Config};

mod cpu;
mod writes;

/// A benchmark daemon's configuration: data in `data_dir`, every listener on loopback port 0,
/// the database `database_url` (PostgreSQL) or the SQLite default, and the write limit off
/// (a guard against runaway clients; a bench provisioning through the API with one token
/// would only measure it).
pub(crate) fn loopback_config(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> anyhow::Result<Config> {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse()?;
    config.metrics.listen = "127.0.0.1:0".parse()?;
    config.mqtt.listen = "127.0.0.1:0".parse()?;
    config.auth.writes_per_minute = 0;
    if let Some(url) = database_url {
        config.database.url = Some(crate::config::DatabaseUrl(url.to_owned()));
    }
    Ok(config)
}

/// A migrated scratch database for a benchmark: `database_url` if given (PostgreSQL), else a
/// fresh SQLite file in `dir`. Returns the store, its URL (for bulk seeding) and the
/// backend's name for the printout.
pub(crate) async fn scratch_store(
    database_url: Option<&str>,
    dir: &std::path::Path,
) -> anyhow::Result<(std::sync::Arc<dyn gema_store::Store>, String, &'static str)> {
    use anyhow::Context;
    let (url, backend) = match database_url {
        Some(url) => (url.to_owned(), "postgresql"),
        None => (
            format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
            "sqlite",
        ),
    };
    let store = gema_store::connect(&url, &gema_store::ConnectOptions::default())
        .await
        .with_context(|| format!("opening {}", gema_store::redact_url(&url)))?;
    store.migrate().await.context("migrating")?;
    Ok((store, url, backend))
}

/// An approved merchant named `name` with one outlet and one terminal (`label`, paid by
/// static QR under `payment_ref` if given): the rows every benchmark's seed starts from.
pub(crate) async fn bench_terminal(
    store: &dyn gema_store::Store,
    name: &str,
    label: &str,
    payment_ref: Option<&str>,
) -> anyhow::Result<(gema_store::Merchant, gema_store::Terminal)> {
    use gema_store::{MerchantStatus, NewMerchant, NewOutlet, NewTerminal};
    let merchant = store
        .create_merchant(NewMerchant {
            name: name.into(),
            email: None,
            phone: None,
        })
        .await?;
    let merchant = store
        .transition_merchant(
            &merchant.id,
            &[MerchantStatus::Pending],
            MerchantStatus::Approved,
            None,
        )
        .await?;
    let outlet = store
        .create_outlet(NewOutlet {
            merchant_id: merchant.id.clone(),
            name: format!("Outlet {name}"),
            address: None,
            city: None,
        })
        .await?;
    let terminal = store
        .create_terminal(NewTerminal {
            outlet_id: outlet.id,
            label: label.into(),
            payment_ref: payment_ref.map(str::to_owned),
            ..Default::default()
        })
        .await?;
    Ok((merchant, terminal))
}

/// A `/proc/self/status` line's value in KiB (`VmRSS:`, `VmHWM:`).
pub(crate) fn proc_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

use cpu::{CpuSample, CpuUse, Side};

const SERVER_KEY: &str = "bench-midtrans-server-key";

#[derive(Debug, Clone)]
pub struct PaymentsBench {
    pub devices: usize,
    /// Callbacks per second; 0 sends as fast as `concurrency` allows.
    pub rate: u32,
    pub duration: Duration,
    /// Callbacks in flight at most.
    pub concurrency: usize,
    /// `None`: a fresh SQLite file. Otherwise a database to use (it gets migrated and
    /// filled with bench data: give it a scratch database).
    pub database_url: Option<String>,
    /// Gateway nodes on the database: callbacks go to the first, devices connect to the
    /// last (more than one needs PostgreSQL).
    pub nodes: usize,
    /// Each node's `node.worker_threads`.
    pub daemon_threads: usize,
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{}.{:03} ms", d.as_millis(), d.as_micros() % 1000)
}

pub async fn payments(bench: PaymentsBench) -> anyhow::Result<()> {
    if bench.devices == 0 {
        bail!("--devices must be at least 1");
    }
    if bench.nodes == 0 || (bench.nodes > 1 && bench.database_url.is_none()) {
        bail!("--nodes: at least 1, and more than one needs --database-url postgres://…");
    }
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let backend = match (&bench.database_url, bench.nodes) {
        (None, _) => "sqlite".to_string(),
        (Some(_), 1) => "postgresql".to_string(),
        (Some(_), n) => {
            format!("postgresql, {n} nodes (callbacks on the first, devices on the last)")
        }
    };
    let daemon =
        BenchDaemon::start(bench_config(&bench, &dir.path().join("node-0"), 0)?, None).await?;
    // The other nodes, on the same database; the admin token is the first node's.
    let mut others = Vec::new();
    for i in 1..bench.nodes {
        let token = daemon.api.token().map(str::to_owned);
        others.push(
            BenchDaemon::start(
                bench_config(&bench, &dir.path().join(format!("node-{i}")), i)?,
                token,
            )
            .await?,
        );
    }
    let devices_node = others.last().unwrap_or(&daemon);
    let api = daemon.api.clone();
    let fleet = provision(&api, bench.devices).await?;
    // The fleet's sender stays here until the end, as the devices' own clones do: the
    // collection below waits out its deadline rather than stopping at a closed channel.
    let (events_tx, mut events) = mpsc::channel::<SimEvent>(65_536);
    let devices = connect(&fleet, devices_node.mqtt_port, &events_tx, &mut events).await?;
    wait_until_settled(&api, &fleet).await?;
    let orders = prepare_orders(&api, &fleet, orders_to_send(&bench)).await?;
    let postgres_port = bench
        .database_url
        .as_deref()
        .and_then(|url| reqwest::Url::parse(url).ok())
        .map(|url| url.port().unwrap_or(5432));
    let wal_before = wal_counters(bench.database_url.as_deref()).await;
    let commits_before = writes::CommitSample::now();
    let cpu_before = CpuSample::now(postgres_port);
    let fired = fire_callbacks(&bench, &daemon.api_url, &orders).await?;
    let figures = collect(fired, &mut events, orders.len()).await;
    let cpu = CpuSample::now(postgres_port).since(&cpu_before);
    let commits = writes::CommitSample::now().since(&commits_before);
    let wal_after = wal_counters(bench.database_url.as_deref()).await;
    print_report(&bench, &backend, orders.len(), &figures, &cpu);
    for line in [commits.line(), commits.stages_line()]
        .into_iter()
        .flatten()
    {
        println!("{line}");
    }
    if let (Some(before), Some(after)) = (wal_before, wal_after) {
        println!("{}", writes::wal_line(before, after, orders.len()));
    }

    for device in devices {
        device.abort();
    }
    for other in others {
        other.stop().await?;
    }
    daemon.stop().await
}

/// PostgreSQL's WAL counters at `url`, when the run has one and they can be read (the
/// report leaves the line out otherwise).
async fn wal_counters(url: Option<&str>) -> Option<gema_store::WalCounters> {
    gema_store::wal_counters(url?).await.ok().flatten()
}

/// The daemon's configuration for a bench run: everything on loopback port 0 in `data_dir`,
/// limits raised so that provisioning through the API does not measure them.
fn bench_config(
    bench: &PaymentsBench,
    data_dir: &std::path::Path,
    node: usize,
) -> anyhow::Result<Config> {
    let mut config = loopback_config(data_dir, bench.database_url.as_deref())?;
    config.node.id = Some(format!("bench-{node}"));
    config.node.worker_threads = bench.daemon_threads;
    config.mqtt.max_concurrent_handshakes = 4096;
    config.database.max_connections = 16;
    // Every request comes from 127.0.0.1 (the provisioning client's pooled connections, then
    // the load generator's), as behind a reverse proxy: with the per-source cap (128) the
    // provisioning's idle connections took every slot and ~99% of the callbacks were refused.
    config.http.max_connections_per_source = config.http.max_connections;
    config.payments.midtrans.server_key = Some(gema_gateway::credentials::SecretString::new(
        SERVER_KEY.into(),
    ));
    Ok(config)
}

/// The daemon under test, running on a runtime of its own, and an admin-API client holding
/// its bootstrap token.
///
/// The runtime is shut down without waiting, on every path ([`BenchDaemon::stop`] and
/// drop): dropping a runtime waits for its blocking pool, which panics inside the bench's
/// own runtime ("Cannot drop a runtime in a context where blocking is not allowed").
struct BenchDaemon {
    /// `None` once shut down.
    runtime: Option<tokio::runtime::Runtime>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Taken when sent.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    api: Arc<ApiClient>,
    api_url: String,
    mqtt_port: u16,
}

impl BenchDaemon {
    /// Builds the app on its own runtime and waits until it listens. The daemon gets a
    /// runtime of its own, as it has in production: the load generator's HTTP client and the
    /// simulated fleet then do not queue in the daemon's run queues (they still share the
    /// machine's cores).
    /// `token`: the admin token, for a node that joins a database another node set up
    /// (it issues none itself).
    async fn start(config: Config, token: Option<String>) -> anyhow::Result<Self> {
        let runtime = crate::runtime(config.node.worker_threads, "gema-daemon")
            .context("the daemon's runtime")?;
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            let mut app = App::build(config).await?;
            let token = app.take_bootstrap_token().map(|t| t.expose().to_owned());
            let _ = started_tx.send((token, app.http_addr(), app.mqtt_addr().port()));
            app.run_until(async move {
                let _ = stop_rx.await;
            })
            .await
        });
        let Ok((issued, http_addr, mqtt_port)) = started_rx.await else {
            let stopped = task.await;
            runtime.shutdown_background();
            return Err(stopped
                .context("daemon task")?
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the daemon stopped before it started")));
        };
        let Some(token) = token.or(issued) else {
            let _ = stop.send(());
            let _ = task.await;
            runtime.shutdown_background();
            bail!("the bench needs an empty database (no admin token yet)");
        };
        let api_url = format!("http://{http_addr}");
        let api = Arc::new(ApiClient::new(&api_url, Some(token)));
        Ok(Self {
            runtime: Some(runtime),
            task,
            stop: Some(stop),
            api,
            api_url,
            mqtt_port,
        })
    }

    /// Asks the daemon to drain and stop, and waits for it; then shuts its runtime down
    /// (whatever the daemon's result), leaving its blocking threads to end on their own.
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let stopped = (&mut self.task).await;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        stopped.context("daemon task")?
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One simulated soundbox and the terminal it is bound to.
struct Counter {
    terminal: String,
    device: SimDevice,
}

/// What provisioning made: the counters, and the CA the devices trust.
struct Fleet {
    counters: Vec<Counter>,
    ca_pem: Vec<u8>,
}

/// One approved merchant and outlet, then a terminal and a bound device per device, through
/// the admin API (64 at a time). Prints how long it took.
async fn provision(api: &Arc<ApiClient>, devices: usize) -> anyhow::Result<Fleet> {
    let started = Instant::now();
    let merchant = api
        .call(
            reqwest::Method::POST,
            "/merchants",
            &[],
            Some(json!({ "name": "Bench" })),
        )
        .await?;
    let merchant = merchant["id"].as_str().unwrap_or_default().to_string();
    api.call(
        reqwest::Method::POST,
        &format!("/merchants/{merchant}/approve"),
        &[],
        None,
    )
    .await?;
    let outlet = api
        .call(
            reqwest::Method::POST,
            "/outlets",
            &[],
            Some(json!({ "merchant_id": merchant, "name": "Bench outlet" })),
        )
        .await?;
    let outlet = outlet["id"].as_str().unwrap_or_default().to_string();
    let mut counters = Vec::with_capacity(devices);
    let mut ca_pem = Vec::new();
    for chunk in (0..devices).collect::<Vec<_>>().chunks(64) {
        let jobs = chunk.iter().map(|i| {
            let api = api.clone();
            let outlet = outlet.clone();
            let i = *i;
            tokio::spawn(async move {
                let terminal = api
                    .call(
                        reqwest::Method::POST,
                        "/terminals",
                        &[],
                        Some(json!({ "outlet_id": outlet, "label": format!("T{i}") })),
                    )
                    .await?;
                let terminal = terminal["id"].as_str().unwrap_or_default().to_string();
                let device = api
                    .call(
                        reqwest::Method::POST,
                        "/devices",
                        &[],
                        Some(json!({ "serial": format!("BENCH-{i}"), "model": "SIM" })),
                    )
                    .await?;
                let id = device["device"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                api.call(
                    reqwest::Method::POST,
                    &format!("/devices/{id}/bind"),
                    &[],
                    Some(json!({ "terminal_id": terminal })),
                )
                .await?;
                Ok::<_, ClientError>((terminal, device))
            })
        });
        for job in futures_util::future::join_all(jobs).await {
            let (terminal, device) = job??;
            let (device, ca) = issued_device(&device);
            if ca_pem.is_empty() {
                ca_pem = ca;
            }
            counters.push(Counter { terminal, device });
        }
    }
    println!(
        "provisioned {} devices and terminals through the API in {:.1?}",
        devices,
        started.elapsed()
    );
    Ok(Fleet { counters, ca_pem })
}

/// Starts every device of the fleet over MQTT/TLS and waits (at most 120 s) until each has
/// connected. Prints the connect rate; returns the devices' tasks.
async fn connect(
    fleet: &Fleet,
    mqtt_port: u16,
    events_tx: &mpsc::Sender<SimEvent>,
    events: &mut mpsc::Receiver<SimEvent>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let options = SimOptions {
        host: "localhost".into(),
        port: mqtt_port,
        ca_pem: fleet.ca_pem.clone(),
        drop_ack_percent: Arc::new(AtomicU8::new(0)),
        disconnect_percent: 0,
        keep_alive: Duration::from_secs(60),
        periodic_heartbeats: false,
    };
    let devices = fleet.counters.len();
    let started = Instant::now();
    let tasks: Vec<_> = fleet
        .counters
        .iter()
        .map(|counter| {
            tokio::spawn(run_device(
                counter.device.clone(),
                options.clone(),
                events_tx.clone(),
            ))
        })
        .collect();
    let mut connected = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while connected < devices {
        match tokio::time::timeout_at(deadline.into(), events.recv()).await {
            Ok(Some(SimEvent::Connected { .. })) => connected += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => bail!("only {connected} of {devices} devices connected"),
        }
    }
    let connect_time = started.elapsed();
    println!(
        "connected {} devices over MQTT/TLS in {:.2?} ({:.0} connects/s)",
        devices,
        connect_time,
        devices as f64 / connect_time.as_secs_f64()
    );
    Ok(tasks)
}

/// Waits (at most 120 s) until the daemon has recorded every device's presence and boot
/// config, asking the API for each device's status every 200 ms; prints how long that took,
/// or how many were still missing (and goes on).
///
/// Each connect is a presence row and the device's boot report of its config, written by
/// the device flows; with a fleet connecting at once that work runs on for seconds after
/// the last CONNACK, and it takes turns with the payments for SQLite's write lock. The
/// load starts once it is done: the figures are for a connected fleet, not a connect
/// storm.
async fn wait_until_settled(api: &Arc<ApiClient>, fleet: &Fleet) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut unsettled: Vec<String> = fleet
        .counters
        .iter()
        .map(|counter| counter.device.device_id.clone())
        .collect();
    while !unsettled.is_empty() && started.elapsed() < Duration::from_secs(120) {
        let mut still = Vec::new();
        for chunk in unsettled.chunks(64) {
            let checks = chunk.iter().map(|id| {
                let api = api.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    let status = api
                        .call(
                            reqwest::Method::GET,
                            &format!("/devices/{id}/status"),
                            &[],
                            None,
                        )
                        .await;
                    let settled = status.is_ok_and(|s| {
                        s["presence"]["connected"] == true && !s["config"]["reported_at"].is_null()
                    });
                    (id, settled)
                })
            });
            for check in futures_util::future::join_all(checks).await {
                let (id, settled) = check?;
                if !settled {
                    still.push(id);
                }
            }
        }
        unsettled = still;
        if !unsettled.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if unsettled.is_empty() {
        println!(
            "the daemon recorded every device's presence and boot config {:.1?} later",
            started.elapsed()
        );
    } else {
        println!(
            "{} devices still without presence or boot config after {:.0?}; going on",
            unsettled.len(),
            started.elapsed()
        );
    }
    Ok(())
}

/// How many callbacks the run sends: `rate` × seconds, or with `--rate 0` enough to keep
/// `concurrency` busy for a while (at least 2,000).
fn orders_to_send(bench: &PaymentsBench) -> u64 {
    if bench.rate == 0 {
        (bench.concurrency as u64 * 50).max(2_000)
    } else {
        u64::from(bench.rate) * bench.duration.as_secs().max(1)
    }
}

/// A pending transaction per callback, round robin over the terminals, created through the
/// API before the clock starts (128 at a time). Returns `(order_ref, transaction_id)` pairs.
async fn prepare_orders(
    api: &Arc<ApiClient>,
    fleet: &Fleet,
    total: u64,
) -> anyhow::Result<Vec<(String, String)>> {
    let counters = &fleet.counters;
    let mut orders = Vec::with_capacity(total as usize);
    for chunk in (0..total).collect::<Vec<_>>().chunks(128) {
        let jobs = chunk.iter().map(|n| {
            let api = api.clone();
            let terminal = counters[*n as usize % counters.len()].terminal.clone();
            let order_ref = format!("BENCH-ORD-{n}");
            tokio::spawn(async move {
                let t = api
                    .call(
                        reqwest::Method::POST,
                        "/transactions",
                        &[],
                        Some(json!({ "terminal_id": terminal, "order_ref": order_ref, "amount": 25_000 })),
                    )
                    .await?;
                Ok::<_, ClientError>((order_ref, t["id"].as_str().unwrap_or_default().to_string()))
            })
        });
        for job in futures_util::future::join_all(jobs).await {
            orders.push(job??);
        }
    }
    println!("prepared {} pending transactions", orders.len());
    Ok(orders)
}

/// What the load generator leaves for the collection: when each transaction's callback was
/// sent, the callbacks' answers as they come, and the clock.
struct Fired {
    sent_at: HashMap<String, Instant>,
    /// `(HTTP latency, answered 2xx)` per callback; closed once every callback answered.
    done: mpsc::Receiver<(Duration, bool)>,
    started: Instant,
    send_time: Duration,
}

/// The load generator: one signed settlement callback per order, on schedule at `rate` per
/// second (or back to back with `--rate 0`), at most `concurrency` in flight. Returns once
/// the last one is sent, not answered.
async fn fire_callbacks(
    bench: &PaymentsBench,
    api_url: &str,
    orders: &[(String, String)],
) -> anyhow::Result<Fired> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(bench.concurrency)
        .build()?;
    let url = format!("{api_url}/api/v1/payments/midtrans/notification");
    let limiter = Arc::new(tokio::sync::Semaphore::new(bench.concurrency));
    let mut sent_at: HashMap<String, Instant> = HashMap::with_capacity(orders.len());
    let (done_tx, done_rx) = mpsc::channel::<(Duration, bool)>(65_536);
    let interval = if bench.rate == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(1_000_000_000 / u64::from(bench.rate))
    };
    let fire_started = Instant::now();
    for (n, (order_ref, transaction_id)) in orders.iter().enumerate() {
        if !interval.is_zero() {
            let due = fire_started + interval * n as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = limiter.clone().acquire_owned().await?;
        let body = notification(order_ref);
        let http = http.clone();
        let url = url.clone();
        let done = done_tx.clone();
        sent_at.insert(transaction_id.clone(), Instant::now());
        tokio::spawn(async move {
            let begun = Instant::now();
            let ok = match http.post(&url).json(&body).send().await {
                Ok(response) if response.status().is_success() => true,
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    report_failure(&format!("HTTP {status}: {text}"));
                    false
                }
                Err(err) => {
                    let mut reason = err.to_string();
                    let mut source = std::error::Error::source(&err);
                    while let Some(cause) = source {
                        reason.push_str(": ");
                        reason.push_str(&cause.to_string());
                        source = cause.source();
                    }
                    report_failure(&reason);
                    false
                }
            };
            let _ = done.send((begun.elapsed(), ok)).await;
            drop(permit);
        });
    }
    let send_time = fire_started.elapsed();
    drop(done_tx);
    Ok(Fired {
        sent_at,
        done: done_rx,
        started: fire_started,
        send_time,
    })
}

/// Prints the first callback failure of the run, so a run that fails says why.
fn report_failure(reason: &str) {
    static REPORTED: std::sync::Once = std::sync::Once::new();
    REPORTED.call_once(|| eprintln!("first failed callback: {reason}"));
}

/// The measured figures of a run.
struct Figures {
    send_time: Duration,
    /// From the first callback sent to the last one answered.
    callbacks_done: Duration,
    /// Sorted.
    http_latencies: Vec<Duration>,
    failures: usize,
    /// Callback sent → announcement spoken by the device, sorted.
    receipt: Vec<Duration>,
    /// From the first callback sent to the last announcement spoken.
    delivered_in: Duration,
}

/// Collects every callback's answer, then the devices' announcements of the callbacks that
/// succeeded (waiting at most 60 s after the last answer).
async fn collect(fired: Fired, events: &mut mpsc::Receiver<SimEvent>, callbacks: usize) -> Figures {
    let Fired {
        sent_at,
        mut done,
        started: fire_started,
        send_time,
    } = fired;
    let mut http_latencies = Vec::with_capacity(callbacks);
    let mut failures = 0;
    while let Some((latency, ok)) = done.recv().await {
        http_latencies.push(latency);
        if !ok {
            failures += 1;
        }
    }
    let callbacks_done = fire_started.elapsed();
    let mut receipt = Vec::with_capacity(callbacks);
    let mut last_receipt = fire_started;
    let deadline = Instant::now() + Duration::from_secs(60);
    while receipt.len() < callbacks - failures {
        match tokio::time::timeout_at(deadline.into(), events.recv()).await {
            Ok(Some(SimEvent::Spoke {
                transaction_id, at, ..
            })) => {
                if let Some(sent) = sent_at.get(&transaction_id) {
                    receipt.push(at.saturating_duration_since(*sent));
                    last_receipt = last_receipt.max(at);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    http_latencies.sort();
    receipt.sort();
    Figures {
        send_time,
        callbacks_done,
        http_latencies,
        failures,
        receipt,
        delivered_in: last_receipt.saturating_duration_since(fire_started),
    }
}

/// Prints the report of a run.
fn print_report(
    bench: &PaymentsBench,
    backend: &str,
    callbacks: usize,
    figures: &Figures,
    cpu: &CpuUse,
) {
    let Figures {
        send_time,
        callbacks_done,
        http_latencies,
        failures,
        receipt,
        delivered_in,
    } = figures;
    println!();
    println!(
        "gema bench payments: {backend}, {} devices, {} callbacks",
        bench.devices, callbacks
    );
    if bench.rate == 0 {
        println!(
            "offered load      as fast as {} in flight allow",
            bench.concurrency
        );
    } else {
        println!(
            "offered load      {} callbacks/s for {:?}",
            bench.rate, bench.duration
        );
    }
    println!(
        "sent in           {:.2?} ({:.0} callbacks/s offered, HTTP answered {:.0}/s)",
        send_time,
        callbacks as f64 / send_time.as_secs_f64().max(1e-9),
        callbacks as f64 / callbacks_done.as_secs_f64().max(1e-9)
    );
    println!(
        "HTTP 200 latency  p50 {}  p95 {}  p99 {}  (failures: {failures})",
        ms(percentile(http_latencies, 50)),
        ms(percentile(http_latencies, 95)),
        ms(percentile(http_latencies, 99)),
    );
    println!(
        "callback→device   p50 {}  p95 {}  p99 {}  ({} of {} received)",
        ms(percentile(receipt, 50)),
        ms(percentile(receipt, 95)),
        ms(percentile(receipt, 99)),
        receipt.len(),
        callbacks
    );
    println!(
        "sustained         {:.0} announcements/s delivered",
        receipt.len() as f64 / delivered_in.as_secs_f64().max(1e-9)
    );
    print_cpu(cpu, callbacks);
}

/// CPU time per callback over the measured part (sending until the last announcement or
/// the collection's deadline), split as [`cpu`] explains.
fn print_cpu(cpu: &CpuUse, callbacks: usize) {
    let callbacks = u128::try_from(callbacks.max(1)).unwrap_or(u128::MAX);
    let per = |d: Duration| format!("{} µs", d.as_micros() / callbacks);
    let Some(process) = cpu.process else {
        println!("CPU per callback  not measured (no /proc)");
        return;
    };
    println!(
        "CPU per callback  {} process: daemon's threads {}, load generator's and devices' {}",
        per(process),
        per(cpu.side(Side::Daemon)),
        per(cpu.side(Side::Load)),
    );
    let threads: Vec<String> = cpu
        .threads
        .iter()
        .filter(|(_, d)| !d.is_zero())
        .map(|(name, d)| format!("{name} {}", per(*d)))
        .collect();
    println!("  by thread name  {}", threads.join(", "));
    if let Some(server) = cpu.postgres {
        println!("  PostgreSQL server (all its processes) {}", per(server));
    }
}

/// The credential and CA of a `POST /devices` answer (shown once), as a simulated device
/// dials in with them.
fn issued_device(issued: &Value) -> (SimDevice, Vec<u8>) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        SimDevice {
            device_id: text(&issued["device"]["id"]),
            secret: text(&issued["credentials"]["secret"]),
        },
        text(&issued["credentials"]["ca_certificate_pem"]).into_bytes(),
    )
}

fn notification(order_ref: &str) -> Value {
    let amount = "25000.00";
    json!({
        "transaction_status": "settlement",
        "transaction_id": format!("mt-{order_ref}"),
        "status_code": "200",
        "signature_key": gema_gateway::payments::providers::midtrans_signature(order_ref, "200", amount, SERVER_KEY),
        "payment_type": "qris",
        "order_id": order_ref,
        "issuer": "gopay",
        "gross_amount": amount,
        "fraud_status": "accept",
        "currency": "IDR",
        "transaction_time": "2026-11-21 10:00:00",
        "settlement_time": "2026-11-21 10:00:01",
    })
}
