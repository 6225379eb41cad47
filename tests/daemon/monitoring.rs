//! The operations metrics, the Grafana dashboard and the Prometheus alert rules, checked
//! against the real thing: the real daemon under `gema sim` load and signed Midtrans
//! callbacks, and a real Prometheus (Debian package `prometheus`) scraping it.
//!
//! The Prometheus test needs `prometheus` and `promtool`; without them it is skipped,
//! loudly, and under `CI=true` a missing one is a failure (`.ci/run` installs them).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gema_gateway::testing::eventually_within;
use serde_json::Value;

use crate::helpers::{Daemon, GEMA};
use crate::payments::{KEY, notification, notify, order};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
/// Simulated soundboxes, and payments spoken by them.
const DEVICES: usize = 3;
/// Metrics a query may name that this load never produces, and why: every other name a
/// panel or rule uses must exist in Prometheus (a typo would otherwise read as "nothing
/// wrong").
const APPEAR_ON_EVENT: [(&str, &str); 3] = [
    (
        "gema_whatsapp_sender_paused",
        "only while Meta restricts a sender",
    ),
    ("gema_acl_denied_total", "only after an ACL denial"),
    (
        "gema_claim_provisionings_total",
        "only after a provisioning by claim",
    ),
];
const PAYMENTS: usize = 12;
/// The outboxes whose backlog the store sampler exports.
const OUTBOXES: [&str; 6] = [
    "announcement",
    "config",
    "command",
    "qr",
    "whatsapp",
    "webhook",
];

/// A daemon with `gema sim` devices connected and payments spoken on them.
struct Loaded {
    daemon: Daemon,
    sim: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        let _ = self.sim.kill();
        let _ = self.sim.wait();
    }
}

/// Starts the daemon (gauges sampled every second), `gema sim --setup` with [`DEVICES`]
/// soundboxes, and posts [`PAYMENTS`] signed callbacks plus a few with a wrong signature;
/// once every payment was spoken and acknowledged, rotates one device's secret, which ends
/// its session (its simulator keeps retrying with the old secret): the fleet then has one
/// device offline and a disconnect. Returns when the metrics show that, and the outbox
/// backlogs sampled after the payments (empty).
async fn loaded_daemon() -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(
        dir.path(),
        &[
            ("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY),
            ("GEMA_METRICS__SAMPLE_INTERVAL_SECS", "1"),
            ("GEMA_METRICS__FLEET_SAMPLE_INTERVAL_SECS", "1"),
        ],
    );
    let mut sim = Command::new(GEMA)
        .args(["sim", "--setup", "--count", &DEVICES.to_string()])
        .env("GEMA_API_URL", &daemon.api_url)
        .env(
            "GEMA_TOKEN",
            daemon.token.as_deref().expect("bootstrap token"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gema sim");
    // Its output is read to the end (a closed pipe would end it), the terminals passed on.
    let (terminals_tx, terminals_rx) = std::sync::mpsc::channel();
    let stdout = sim.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // "device dev_… (serial …) on terminal ter_…"
            let words: Vec<&str> = line.split_whitespace().collect();
            if let (Some(device), Some(terminal)) = (words.get(1), words.last())
                && line.contains("on terminal")
            {
                let _ = terminals_tx.send((device.to_string(), terminal.to_string()));
            }
        }
    });
    let fleet: Vec<(String, String)> = (0..DEVICES)
        .map(|_| {
            terminals_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("gema sim prints each device's terminal")
        })
        .collect();
    let loaded = Loaded {
        daemon,
        sim,
        _dir: dir,
    };
    let daemon = &loaded.daemon;
    // Connected, and their presence recorded: the fleet's health says so.
    eventually_within(
        "the simulated soundboxes are connected and online",
        Duration::from_secs(30),
        || async move {
            let metrics = daemon.metrics().await;
            let connected = sample(&metrics, "gema_devices_connected", "").zip(sample(
                &metrics,
                "gema_devices",
                "health=\"online\"",
            ));
            if connected == Some((DEVICES as f64, DEVICES as f64)) {
                Ok(Some(()))
            } else {
                Err(connected)
            }
        },
    )
    .await;

    for i in 0..PAYMENTS {
        let terminal = &fleet[i % DEVICES].1;
        let order_ref = format!("ORD-MON-{i}");
        let amount = 10_000 + 1_000 * i as i64;
        order(daemon, terminal, &order_ref, amount).await;
        let (status, reply) = notify(
            daemon,
            &notification(&order_ref, "settlement", &format!("{amount}.00")),
        )
        .await;
        assert_eq!((status, reply["outcome"].as_str()), (200, Some("applied")));
    }
    // A provider with the wrong key: refused, and counted as such.
    for i in 0..3 {
        let mut forged = notification(&format!("ORD-MON-{i}"), "settlement", "10000.00");
        forged["signature_key"] = "0".repeat(128).into();
        let (status, _) = notify(daemon, &forged).await;
        assert_eq!(status, 401);
    }
    eventually_within(
        "every payment was spoken and acknowledged",
        // An announcement that found its device between connecting and being recorded
        // online waits for the offline recheck (30 s).
        Duration::from_secs(60),
        || async move {
            let metrics = daemon.metrics().await;
            let delivered = sample(&metrics, "gema_announcements_total", "state=\"delivered\"");
            if delivered == Some(PAYMENTS as f64) {
                Ok(Some(()))
            } else {
                Err(metrics
                    .lines()
                    .filter(|l| l.starts_with("gema_announcement"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>())
            }
        },
    )
    .await;

    let (status, _) = daemon
        .post(
            &format!("/api/v1/devices/{}/credentials/rotate", fleet[0].0),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200);
    eventually_within(
        "the rotated device is disconnected and offline",
        Duration::from_secs(30),
        || async move {
            let metrics = daemon.metrics().await;
            let seen = (
                sample(
                    &metrics,
                    "gema_device_disconnects_total",
                    "reason=\"kicked\"",
                ),
                sample(&metrics, "gema_devices", "health=\"offline\""),
            );
            if seen == (Some(1.0), Some(1.0)) {
                Ok(Some(()))
            } else {
                Err(seen)
            }
        },
    )
    .await;
    // The sampler reads the fleet and the store in turn, each every second: the fleet's
    // sample just seen may come before the store's of the same second, and the store's
    // before that may predate the last delivery (an announcement still pending). The
    // backlogs are looked at once a store sample after the payments is in.
    eventually_within(
        "the outbox backlogs sampled after the payments",
        Duration::from_secs(30),
        || async move {
            let metrics = daemon.metrics().await;
            let backlogs: Vec<_> = OUTBOXES
                .iter()
                .map(|kind| {
                    let labels = format!("kind=\"{kind}\"");
                    (
                        *kind,
                        sample(&metrics, "gema_outbox_pending", &labels),
                        sample(&metrics, "gema_outbox_oldest_pending_age_seconds", &labels),
                    )
                })
                .collect();
            if backlogs
                .iter()
                .all(|(_, pending, age)| (*pending, *age) == (Some(0.0), Some(0.0)))
            {
                Ok(Some(()))
            } else {
                Err(backlogs)
            }
        },
    )
    .await;
    loaded
}

/// The value of the first series of `name` whose labels contain `labels`.
fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (series, value) = rest.rsplit_once(' ')?;
        let series_ok = (series.is_empty() || series.starts_with('{')) && series.contains(labels);
        series_ok.then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_listener_exports_fleet_payment_outbox_and_platform_metrics() {
    let loaded = loaded_daemon().await;
    let daemon = &loaded.daemon;
    let metrics = daemon.metrics().await;

    let expect = |name: &str, labels: &str| {
        sample(&metrics, name, labels)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in:\n{metrics}"))
    };
    // One device's secret was rotated: its session ended, and its retries are refused.
    assert_eq!(expect("gema_devices_connected", ""), (DEVICES - 1) as f64);
    assert_eq!(
        expect("gema_devices", "health=\"online\""),
        (DEVICES - 1) as f64
    );
    assert_eq!(expect("gema_devices", "health=\"offline\""), 1.0);
    assert_eq!(expect("gema_device_connects_total", ""), DEVICES as f64);
    assert_eq!(
        expect("gema_device_disconnects_total", "reason=\"kicked\""),
        1.0
    );
    assert_eq!(
        expect(
            "gema_payment_callbacks_total",
            "provider=\"midtrans\",outcome=\"applied\""
        ),
        PAYMENTS as f64
    );
    assert_eq!(
        expect(
            "gema_payment_callbacks_total",
            "provider=\"midtrans\",outcome=\"unauthorized\""
        ),
        3.0
    );
    assert_eq!(expect("gema_announcements_total", "state=\"expired\""), 0.0);
    assert_eq!(
        expect("gema_announcement_ack_latency_seconds_count", ""),
        PAYMENTS as f64
    );
    assert!(
        expect(
            "gema_announcement_ack_latency_seconds_bucket",
            "le=\"+Inf\""
        ) >= 1.0
    );
    assert!(expect("gema_payment_commit_duration_seconds_count", "") >= 1.0);
    assert!(expect("gema_payment_commit_batch_size_bucket", "le=\"+Inf\"") >= 1.0);
    assert!(expect("gema_broker_tls_handshakes_total", "result=\"ok\"") >= DEVICES as f64);
    for kind in OUTBOXES {
        let labels = format!("kind=\"{kind}\"");
        assert_eq!(expect("gema_outbox_pending", &labels), 0.0, "{kind}");
        assert_eq!(
            expect("gema_outbox_oldest_pending_age_seconds", &labels),
            0.0,
            "{kind}"
        );
    }
    assert_eq!(
        expect("gema_settlement_amount_rupiah", "status=\"pending\""),
        0.0
    );
    assert_eq!(expect("gema_billing_invoices", "status=\"unpaid\""), 0.0);
    assert_eq!(
        expect(
            "gema_whatsapp_queue_messages",
            "sender=\"operator\",status=\"pending\""
        ),
        0.0
    );
    assert_eq!(expect("gema_cluster_nodes", "state=\"running\""), 1.0);
    assert_eq!(expect("gema_build_info", "database=\"sqlite\""), 1.0);
    for certificate in ["server", "ca", "device_ca"] {
        let days = expect(
            "gema_tls_certificate_days_left",
            &format!("certificate=\"{certificate}\""),
        );
        assert!(days > 300.0, "{certificate}: {days} days left");
    }
    // No device id is ever a label.
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        assert!(!line.contains("dev_"), "a device id in a label: {line}");
    }
}

/// `prometheus` and `promtool`, or `None` (skipped, loudly) outside CI.
fn prometheus_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    };
    match (find("prometheus"), find("promtool")) {
        (Some(prometheus), Some(promtool)) => Some((prometheus, promtool)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "prometheus and promtool are not installed: under CI the monitoring check \
                 must run (apt-get install prometheus)"
            );
            eprintln!(
                "SKIPPED: prometheus is not installed (apt-get install prometheus); the \
                 dashboard and alert rules were not checked"
            );
            None
        }
    }
}

fn promtool(promtool: &Path, args: &[&str]) {
    let out = Command::new(promtool)
        .args(args)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    println!("promtool {}: ok", args.join(" "));
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus that is stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Runs an instant query; its `data.result` when Prometheus parsed and evaluated it.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        let result = &body["data"]["result"];
        Ok(match result {
            Value::Array(items) => items.clone(),
            // A scalar or string result is one value.
            other => vec![other.clone()],
        })
    }
}

/// The metric names (`gema_…`, `up`) a PromQL expression uses; a histogram's `_bucket`
/// is its own name in Prometheus.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("gema_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    if expr.contains("up{") {
        names.push("up".to_owned());
    }
    names
}

/// Every `expr` of every panel (rows' nested panels too) of a Grafana dashboard.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_owned()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_panel_and_alert_rule_evaluates_on_a_real_prometheus_scraping_the_daemon() {
    let Some((prometheus_bin, promtool_bin)) = prometheus_tools() else {
        return;
    };
    let started = Instant::now();
    // The shipped files, as an operator would check them.
    promtool(
        &promtool_bin,
        &[
            "check",
            "config",
            &format!("{DEPLOY}/prometheus/prometheus.yml"),
        ],
    );
    promtool(
        &promtool_bin,
        &["check", "rules", &format!("{DEPLOY}/prometheus/alerts.yml")],
    );
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DEPLOY}/grafana/dashboards/gema.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = panel_queries(&dashboard);
    assert!(panels.len() >= 10, "{panels:?}");

    let loaded = loaded_daemon().await;
    let metrics_addr = loaded
        .daemon
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("metrics"))
        .map(|rest| {
            rest.trim()
                .trim_start_matches("http://")
                .trim_end_matches("/metrics")
                .to_owned()
        })
        .expect("the metrics address is printed");

    // Prometheus with the shipped rules, scraping this daemon every second.
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {DEPLOY}/prometheus/alerts.yml\n\
             scrape_configs:\n  - job_name: gema\n    static_configs:\n      \
             - targets: ['{metrics_addr}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(work.path().join("prometheus.log")).unwrap();
    let prometheus = Prometheus {
        child: Command::new(&prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
        url: format!("http://127.0.0.1:{port}"),
    };
    let prometheus = &prometheus;
    // Rates need two scrapes in their window: wait for a few.
    eventually_within(
        "Prometheus has scraped the daemon a few times",
        Duration::from_secs(60),
        || async move {
            let scrapes: Option<f64> = prometheus
                .query("count_over_time(up{job=\"gema\"}[1m])")
                .await
                .ok()
                .and_then(|r| r.first()?["value"][1].as_str()?.parse().ok());
            match scrapes {
                Some(n) if n >= 5.0 => Ok(Some(())),
                other => Err(other),
            }
        },
    )
    .await;
    let up = prometheus.query("up{job=\"gema\"}").await.unwrap();
    assert_eq!(up[0]["value"][1], "1", "the daemon is scraped: {up:?}");

    // Every metric a panel or rule names exists (or is known to appear only on its event).
    let known: Value = reqwest::get(format!("{}/api/v1/label/__name__/values", prometheus.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let known: Vec<&str> = known["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let rules_text = std::fs::read_to_string(format!("{DEPLOY}/prometheus/alerts.yml")).unwrap();
    let mut named: Vec<String> = panels
        .iter()
        .flat_map(|(_, expr)| metric_names(expr))
        .chain(
            rules_text
                .lines()
                .filter(|l| !l.contains("summary:") && !l.contains("description:"))
                .flat_map(metric_names),
        )
        .collect();
    named.sort();
    named.dedup();
    for name in &named {
        if known.contains(&name.as_str()) {
            continue;
        }
        let (_, why) = APPEAR_ON_EVENT
            .iter()
            .find(|(event_only, _)| event_only == name)
            .unwrap_or_else(|| {
                panic!("{name} is used by the dashboard or the rules but not exported")
            });
        println!("metric {name}: not in this run ({why})");
    }
    println!(
        "{} metric names used, each exported or known to appear on its event",
        named.len()
    );

    // Every panel's query parses and returns data.
    for (title, expr) in &panels {
        let result = eventually_within(
            &format!("panel {title:?} returns data for {expr}"),
            Duration::from_secs(20),
            || async move {
                match prometheus.query(expr).await {
                    Ok(result) if !result.is_empty() => Ok(Some(result)),
                    Ok(_) => Err("an empty result"),
                    Err(err) => panic!("panel {title:?}: {expr} does not evaluate: {err}"),
                }
            },
        )
        .await;
        println!("panel {title:?}: {} series: {expr}", result.len());
    }

    // Every rule of the shipped file is loaded, healthy, and its expression evaluates.
    let rules: Value = reqwest::get(format!("{}/api/v1/rules", prometheus.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let loaded_rules: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    let in_file = std::fs::read_to_string(format!("{DEPLOY}/prometheus/alerts.yml"))
        .unwrap()
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert_eq!(loaded_rules.len(), in_file, "every alert rule is loaded");
    for rule in &loaded_rules {
        let name = rule["name"].as_str().unwrap();
        let expr = rule["query"].as_str().unwrap();
        assert_ne!(rule["health"], "err", "rule {name}: {}", rule["lastError"]);
        let result = prometheus
            .query(expr)
            .await
            .unwrap_or_else(|err| panic!("alert {name}: {expr} does not evaluate: {err}"));
        println!(
            "alert {name}: evaluates ({} series match now)",
            result.len()
        );
    }
    // The forged callbacks are what the signature alert watches.
    let forged = prometheus
        .query("sum(gema_payment_callbacks_total{outcome=\"unauthorized\"})")
        .await
        .unwrap();
    assert_eq!(forged[0]["value"][1], "3");
    println!(
        "checked {} panel queries and {} alert rules against Prometheus in {:.0?}",
        panels.len(),
        loaded_rules.len(),
        started.elapsed()
    );
}
