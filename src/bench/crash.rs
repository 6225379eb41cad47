//! `gema bench crash-loop`: the real binary as a child process under payment load from
//! simulated soundboxes, killed with SIGKILL at random moments and restarted on the same
//! data, `--kills` times. The load is what a provider does: each signed callback is sent
//! until it is answered 2xx (a refused connection or a 5xx during a restart is sent again
//! 200 ms later). At the end the daemon is stopped and its database read directly:
//!
//! - every callback that got a 2xx has exactly one paid transaction, its ledger postings,
//!   and exactly one announcement, acknowledged by its device;
//! - the devices' receipts: spoken once each, and how many times an announcement the device
//!   had already spoken arrived again (it deduplicates on the transaction id and says
//!   nothing, but the receipt is counted: the goal is zero);
//! - config pushes and commands issued through the API during the loop (one of each every
//!   half second, to a device in turn) end in a final state: each device runs the config
//!   last set (`applied`, in sync) and each command is `succeeded` (or another final state);
//! - SQLite's `PRAGMA integrity_check`.
//!
//! It prints the counts (callbacks accepted, announcements delivered, duplicates, lost) and
//! fails when anything is lost, paid twice, announced other than once, or the file is not
//! sound.

// Rates and timings for display only; no money is computed here.
#![allow(clippy::float_arithmetic)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gema_store::{AnnouncementStatus, LedgerFilter, PageRequest, TransactionStatus};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::cli::ApiClient;
use crate::sim::SimEvent;

#[derive(Debug, Clone)]
pub struct CrashLoop {
    pub kills: usize,
    pub devices: usize,
    /// Callbacks per second offered.
    pub rate: u32,
    /// `None`: a fresh SQLite file. Otherwise a scratch database (e.g. `postgres://…`).
    pub database_url: Option<String>,
    /// Seeds the kill moments (the same seed, the same schedule of delays).
    pub seed: u64,
}

/// Ports fixed for the whole run: the restarted daemon listens where devices and the load
/// generator expect it.
struct Ports {
    http: u16,
    mqtt: u16,
    metrics: u16,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Why a start failed: a port taken meanwhile (worth another try), or anything else.
enum StartError {
    AddressInUse(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

/// The daemon under test, a child process.
struct Daemon {
    child: tokio::process::Child,
}

impl Daemon {
    /// Starts `gema serve` and waits until it listens; the admin token if it printed one.
    /// While the daemon is down its fixed ports are free, and a client's outgoing connection
    /// may briefly hold one as its local port: a start refused only for an address in use is
    /// tried again, at most five times. Any other failure ends the run, with the daemon's
    /// last words.
    async fn start(
        data_dir: &Path,
        ports: &Ports,
        database_url: Option<&str>,
    ) -> anyhow::Result<(Self, Option<String>)> {
        let mut attempt = 1;
        loop {
            match Self::start_once(data_dir, ports, database_url).await {
                Err(StartError::AddressInUse(stderr)) if attempt < 5 => {
                    eprintln!("gema serve found a port in use, starting it again: {stderr}");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(StartError::AddressInUse(stderr)) => {
                    bail!("gema serve found a port in use {attempt} times: {stderr}")
                }
                Err(StartError::Other(e)) => return Err(e),
                Ok(started) => return Ok(started),
            }
        }
    }

    async fn start_once(
        data_dir: &Path,
        ports: &Ports,
        database_url: Option<&str>,
    ) -> Result<(Self, Option<String>), StartError> {
        let exe = std::env::current_exe().context("this binary's path")?;
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("serve")
            .env("GEMA_DATA_DIR", data_dir)
            .env("GEMA_HTTP__LISTEN", format!("127.0.0.1:{}", ports.http))
            .env("GEMA_MQTT__LISTEN", format!("127.0.0.1:{}", ports.mqtt))
            .env(
                "GEMA_METRICS__LISTEN",
                format!("127.0.0.1:{}", ports.metrics),
            )
            .env("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", super::SERVER_KEY)
            // Provisioning writes through the API with one token; the guard against
            // runaway clients would only measure itself.
            .env("GEMA_AUTH__WRITES_PER_MINUTE", "0")
            .env("GEMA_LOG__LEVEL", "warn")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(url) = database_url {
            command.env("GEMA_DATABASE__URL", url);
        }
        let mut child = command.spawn().context("starting gema serve")?;
        let stdout = child.stdout.take().context("the daemon's stdout")?;
        let stderr = child.stderr.take().context("the daemon's stderr")?;
        // Drained from the start (a restart may warn a lot before it listens); its last
        // lines are kept for the report of a failed start.
        let last_words = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            let mut last = std::collections::VecDeque::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if last.len() == 20 {
                    last.pop_front();
                }
                last.push_back(line);
            }
            Vec::from(last).join("\n")
        });
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut token = None;
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(t) = line.split_whitespace().find(|w| w.starts_with("gema_")) {
                    token = Some(t.to_owned());
                }
                if line.starts_with("CA file") {
                    return Ok::<_, std::io::Error>(true);
                }
            }
            Ok(false)
        })
        .await;
        if !matches!(ready, Ok(Ok(true))) {
            let _ = child.start_kill();
            let _ = child.wait().await;
            // The pipe closes once the process is gone.
            let said = tokio::time::timeout(Duration::from_secs(5), last_words)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            if said.contains("Address already in use") {
                return Err(StartError::AddressInUse(said));
            }
            return Err(StartError::Other(anyhow::anyhow!(
                "gema serve did not start (or exited): {said}"
            )));
        }
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((Self { child }, token))
    }

    /// SIGKILL, and wait for the process to be gone.
    async fn kill(mut self) -> anyhow::Result<()> {
        self.child.start_kill().context("SIGKILL")?;
        self.child
            .wait()
            .await
            .context("waiting for the killed daemon")?;
        Ok(())
    }

    /// SIGTERM: a graceful stop, waited for (at most 30 s).
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status.context("waiting for the daemon")?;
            }
            Err(_) => {
                self.child.start_kill()?;
                bail!("the daemon did not stop within 30 s of SIGTERM");
            }
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A tiny xorshift for the kill schedule.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// What the devices reported, per transaction.
#[derive(Debug, Default)]
struct Receipts {
    spoken: HashMap<String, u32>,
    /// When each transaction was first spoken.
    spoken_at: HashMap<String, Instant>,
    duplicates: HashMap<String, u32>,
    /// Each duplicate receipt: device, transaction, when it arrived.
    duplicate_receipts: Vec<(String, String, Instant)>,
}

pub async fn crash_loop(bench: CrashLoop) -> anyhow::Result<()> {
    if bench.devices == 0 || bench.rate == 0 {
        bail!("--devices and --rate must be at least 1");
    }
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let data_dir: PathBuf = dir.path().join("data");
    let ports = Ports {
        http: free_port()?,
        mqtt: free_port()?,
        metrics: free_port()?,
    };
    let db_url = bench.database_url.as_deref();
    let backend = if db_url.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    let (mut daemon, token) = Daemon::start(&data_dir, &ports, db_url).await?;
    let Some(token) = token else {
        bail!("the crash loop needs an empty database (no admin token was printed)");
    };
    let api_url = format!("http://127.0.0.1:{}", ports.http);
    let api = Arc::new(ApiClient::new(&api_url, Some(token)));
    let fleet = super::provision(&api, bench.devices).await?;
    let (events_tx, mut events) = mpsc::channel::<SimEvent>(65_536);
    let _devices = super::connect(&fleet, ports.mqtt, &events_tx, &mut events).await?;
    drop(events_tx);
    // Enough orders for the kills at about 1.3 s each (a mean delay of 0.9 s and a restart).
    let total = (u64::from(bench.rate) * (bench.kills as u64 * 13 / 10 + 2)).max(20);
    let orders = super::prepare_orders(&api, &fleet, total).await?;

    let receipts = Arc::new(Mutex::new(Receipts::default()));
    let listener = tokio::spawn({
        let receipts = receipts.clone();
        async move {
            while let Some(event) = events.recv().await {
                let mut r = lock(&receipts);
                match event {
                    SimEvent::Spoke {
                        transaction_id, at, ..
                    } => {
                        r.spoken_at.entry(transaction_id.clone()).or_insert(at);
                        *r.spoken.entry(transaction_id).or_default() += 1;
                    }
                    SimEvent::Duplicate {
                        transaction_id,
                        device_id,
                    } => {
                        *r.duplicates.entry(transaction_id.clone()).or_default() += 1;
                        r.duplicate_receipts
                            .push((device_id, transaction_id, Instant::now()));
                    }
                    _ => {}
                }
            }
        }
    });

    println!(
        "crash loop: {backend}, {} devices, {} callbacks at {}/s, {} SIGKILLs at random moments",
        bench.devices,
        orders.len(),
        bench.rate,
        bench.kills
    );
    let started = Instant::now();
    let resent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = tokio::spawn(send_all(
        api_url.clone(),
        orders.clone(),
        bench.rate,
        resent.clone(),
    ));
    let device_ids: Vec<String> = fleet
        .counters
        .iter()
        .map(|c| c.device.device_id.clone())
        .collect();
    let (stop_work, stop_work_rx) = tokio::sync::watch::channel(false);
    let work = tokio::spawn(device_work(api.clone(), device_ids.clone(), stop_work_rx));
    let mut dice = Dice(bench.seed | 1);
    let mut restart_times = Vec::with_capacity(bench.kills);
    let mut kill_times = Vec::with_capacity(bench.kills);
    for _ in 0..bench.kills {
        tokio::time::sleep(Duration::from_millis(200 + dice.below(1400))).await;
        kill_times.push(Instant::now());
        daemon.kill().await?;
        let restarted = Instant::now();
        daemon = Daemon::start(&data_dir, &ports, db_url).await?.0;
        restart_times.push(restarted.elapsed());
    }
    let accepted = load.await.context("the load generator")??;
    let load_time = started.elapsed();
    let _ = stop_work.send(true);
    let (configs_set, commands) = work.await.context("the config and command load")?;

    // Every accepted callback's announcement, heard (or given up on after 120 s).
    let wanted: HashSet<&str> = accepted.iter().map(|(_, id)| id.as_str()).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let heard = {
            let r = lock(&receipts);
            wanted
                .iter()
                .filter(|id| r.spoken.contains_key(**id))
                .count()
        };
        if heard == wanted.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unsettled = settle_device_work(&api, &device_ids, &commands).await;
    settle_announcements(&api, &wanted).await;
    daemon.stop().await?;
    listener.abort();

    let config = {
        let mut config = crate::Config {
            data_dir: data_dir.clone(),
            ..crate::Config::default()
        };
        if let Some(url) = db_url {
            config.database.url = Some(crate::config::DatabaseUrl(url.to_owned()));
        }
        config
    };
    let store = crate::app::open_store(&config).await?;
    let mut report = Report {
        accepted: accepted.len(),
        ..Report::default()
    };
    report.lost.extend(unsettled.iter().cloned());
    for (order_ref, _) in orders.iter().filter(|o| !accepted.contains(o)) {
        report.lost.push(format!(
            "{order_ref}: never answered 2xx in {MAX_SENDS} sends"
        ));
    }
    let mut postings_seen: HashMap<usize, usize> = HashMap::new();
    for (_, transaction_id) in &accepted {
        let transaction = store.get_transaction(transaction_id).await?;
        if transaction.status == TransactionStatus::Paid {
            report.paid += 1;
        } else {
            report
                .lost
                .push(format!("{transaction_id}: {:?}", transaction.status));
            continue;
        }
        let postings = store
            .list_ledger_entries(
                &LedgerFilter {
                    transaction_id: Some(transaction_id.clone()),
                    ..LedgerFilter::default()
                },
                &PageRequest::first(50),
            )
            .await?
            .items
            .len();
        *postings_seen.entry(postings).or_default() += 1;
        let announcements = store.transaction_announcements(transaction_id).await?;
        let delivered = announcements
            .iter()
            .filter(|a| a.status == AnnouncementStatus::Delivered)
            .count();
        if announcements.len() == 1 && delivered == 1 {
            report.delivered += 1;
        } else {
            report.lost.push(format!(
                "{transaction_id}: {} announcements, {delivered} delivered",
                announcements.len()
            ));
        }
    }
    {
        let r = lock(&receipts);
        for (_, id) in &accepted {
            match r.spoken.get(id) {
                Some(1) => report.spoken += 1,
                Some(n) => report.lost.push(format!("{id}: spoken {n} times")),
                None => report.lost.push(format!("{id}: never heard by its device")),
            }
        }
        report.duplicates = r.duplicates.values().map(|n| *n as usize).sum();
    }
    let integrity = store.integrity_check().await?;
    restart_times.sort();

    println!(
        "load {:.1?} (callbacks resent after a refusal or a non-2xx: {}); restarts: p50 {:.0?}, max {:.0?}",
        load_time,
        resent.load(std::sync::atomic::Ordering::Relaxed),
        restart_times
            .get(restart_times.len() / 2)
            .copied()
            .unwrap_or_default(),
        restart_times.last().copied().unwrap_or_default(),
    );
    let mut postings: Vec<_> = postings_seen.into_iter().collect();
    postings.sort_unstable();
    println!("callbacks accepted (2xx)            {}", report.accepted);
    println!("transactions paid                   {}", report.paid);
    println!(
        "ledger postings per paid transaction {}",
        postings
            .iter()
            .map(|(n, count)| format!("{n} ({count} transactions)"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "announcements delivered (acked)     {} (exactly one per transaction)",
        report.delivered
    );
    println!("announcements spoken once           {}", report.spoken);
    println!(
        "duplicates delivered                {} (receipts of an announcement already spoken)",
        report.duplicates
    );
    println!(
        "config pushes / commands issued      {configs_set} / {} (not final at the end: {})",
        commands.len(),
        unsettled.len()
    );
    println!("lost                                {}", report.lost.len());
    println!(
        "integrity_check                     {}",
        integrity.join("; ")
    );
    for line in report.lost.iter().take(20) {
        println!("  lost: {line}");
    }
    {
        // Where each duplicate came from: spoken before a kill and heard again after the
        // restart is the crash window; heard again with no kill in between is a retry.
        let r = lock(&receipts);
        let since = |at: Instant| at.saturating_duration_since(started).as_millis();
        for (device_id, transaction_id, at) in r.duplicate_receipts.iter().take(50) {
            let spoken = r.spoken_at.get(transaction_id).copied();
            let kill = kill_times.iter().rposition(|k| k <= at);
            let between = match (spoken, kill) {
                (Some(spoken), Some(k)) if kill_times[k] >= spoken => format!(
                    "kill #{} at +{} ms in between, heard again {} ms after it",
                    k + 1,
                    since(kill_times[k]),
                    at.saturating_duration_since(kill_times[k]).as_millis()
                ),
                _ => "no kill in between".to_string(),
            };
            println!(
                "  duplicate: {transaction_id} on {device_id}: spoken at +{} ms, again at +{} ms; {between}",
                spoken.map(since).unwrap_or_default(),
                since(*at),
            );
        }
    }
    if !report.lost.is_empty() || postings.len() != 1 || integrity != ["ok"] {
        bail!("the crash loop lost or broke something (see above)");
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Report {
    accepted: usize,
    paid: usize,
    delivered: usize,
    spoken: usize,
    duplicates: usize,
    lost: Vec<String>,
}

/// Sends of one callback before the load generator gives up on it (a minute of refusals).
const MAX_SENDS: u32 = 300;

/// Sends one signed settlement callback per order at `rate` per second, each until it is
/// answered 2xx (at most [`MAX_SENDS`] times); returns the orders accepted.
async fn send_all(
    api_url: String,
    orders: Vec<(String, String)>,
    rate: u32,
    resent: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<Vec<(String, String)>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("{api_url}/api/v1/payments/midtrans/notification");
    let interval = Duration::from_nanos(1_000_000_000 / u64::from(rate));
    let started = Instant::now();
    let mut sends = Vec::with_capacity(orders.len());
    for (n, order) in orders.into_iter().enumerate() {
        tokio::time::sleep_until((started + interval * u32::try_from(n)?).into()).await;
        let http = http.clone();
        let url = url.clone();
        let resent = resent.clone();
        sends.push(tokio::spawn(async move {
            let body = super::notification(&order.0);
            for _ in 0..MAX_SENDS {
                match http.post(&url).json(&body).send().await {
                    Ok(response) if response.status().is_success() => return Some(order),
                    _ => {
                        resent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            None
        }));
    }
    let mut accepted = Vec::with_capacity(sends.len());
    for send in sends {
        if let Some(order) = send.await? {
            accepted.push(order);
        }
    }
    Ok(accepted)
}

/// Every half second until `stop`: a config push (a new volume) to one device and a command
/// (`get_status`) to the next, in turn, each sent until the API accepts it. Returns how many
/// config changes were made and the commands' `(device, id)`.
async fn device_work(
    api: Arc<ApiClient>,
    devices: Vec<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (usize, Vec<(String, String)>) {
    let mut configs = 0;
    let mut commands = Vec::new();
    let mut turn = 0usize;
    while !*stop.borrow() {
        let device = &devices[turn % devices.len()];
        let next = &devices[(turn + 1) % devices.len()];
        turn += 1;
        let volume = 1 + turn % 10;
        if set_config(&api, device, volume).await {
            configs += 1;
        }
        if let Some(id) = queue_command(&api, next).await {
            commands.push((next.clone(), id));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => {}
        }
    }
    (configs, commands)
}

/// Sets the device's volume (reading the version to send first), retrying through
/// restarts for up to 30 s; whether it was set.
async fn set_config(api: &ApiClient, device: &str, volume: usize) -> bool {
    let path = format!("/devices/{device}/config");
    for _ in 0..150 {
        let Ok(current) = api.call(reqwest::Method::GET, &path, &[], None).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let body = serde_json::json!({ "version": current["version"], "volume": volume });
        match api
            .call(reqwest::Method::PATCH, &path, &[], Some(body))
            .await
        {
            Ok(_) => return true,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    false
}

/// Queues a `get_status` command, retrying through restarts for up to 30 s. A retry after
/// an answer lost to a kill may queue it twice; both must end final.
async fn queue_command(api: &ApiClient, device: &str) -> Option<String> {
    let path = format!("/devices/{device}/commands");
    let body = serde_json::json!({ "action": { "name": "get_status" }, "expires_in_secs": 600 });
    for _ in 0..150 {
        match api
            .call(reqwest::Method::POST, &path, &[], Some(body.clone()))
            .await
        {
            Ok(command) => return command["id"].as_str().map(str::to_owned),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    None
}

/// Waits (at most 60 s) until no announcement of `transactions` is pending. A device that
/// heard one may have had its ack die with a killed daemon; it acks again only when the
/// announcement is replayed on its next connection, which its reconnect backoff (up to
/// 16 s) puts off. What is still pending after that, the report counts as lost.
async fn settle_announcements(api: &ApiClient, transactions: &HashSet<&str>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut left: Vec<&str> = transactions.iter().copied().collect();
    loop {
        let mut pending = Vec::new();
        for id in left {
            let path = format!("/transactions/{id}/announcements");
            match api.call(reqwest::Method::GET, &path, &[], None).await {
                Ok(list)
                    if list.as_array().is_some_and(|list| {
                        !list.is_empty() && list.iter().all(|a| a["status"] != "pending")
                    }) => {}
                _ => pending.push(id),
            }
        }
        if pending.is_empty() || Instant::now() >= deadline {
            return;
        }
        left = pending;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits (at most 60 s) until every device runs its desired config and every command is
/// final; returns what is not, one line each.
async fn settle_device_work(
    api: &ApiClient,
    devices: &[String],
    commands: &[(String, String)],
) -> Vec<String> {
    const FINAL: [&str; 4] = ["succeeded", "failed", "timed_out", "expired"];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut unsettled = Vec::new();
        for device in devices {
            match api
                .call(
                    reqwest::Method::GET,
                    &format!("/devices/{device}/config"),
                    &[],
                    None,
                )
                .await
            {
                Ok(c) if c["version"] == 0 || c["sync"] == "in_sync" => {}
                Ok(c) => unsettled.push(format!(
                    "{device}: config version {} push {} sync {}",
                    c["version"], c["push_status"], c["sync"]
                )),
                Err(err) => unsettled.push(format!("{device}: config unreadable: {err}")),
            }
        }
        for (device, id) in commands {
            match api
                .call(
                    reqwest::Method::GET,
                    &format!("/devices/{device}/commands/{id}"),
                    &[],
                    None,
                )
                .await
            {
                Ok(c) if c["status"].as_str().is_some_and(|s| FINAL.contains(&s)) => {}
                Ok(c) => unsettled.push(format!("{id}: command {}", c["status"])),
                Err(err) => unsettled.push(format!("{id}: command unreadable: {err}")),
            }
        }
        if unsettled.is_empty() || Instant::now() >= deadline {
            return unsettled;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
