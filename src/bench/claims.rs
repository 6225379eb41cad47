//! `gema bench claims`: the provisioning-by-claim rate through the whole first boot, with a
//! real daemon over TLS: a claim for N devices is created through the API, then N
//! factory-fresh simulated devices (at most C at once) each connect with the claim, ask,
//! receive their credential, and reconnect as themselves. Prints devices per second and
//! the first boot's latency.

use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::Method;
use serde_json::json;

use crate::sim::SimOptions;
use crate::sim::claim::{ClaimCredential, Provisioned, connect_as_itself, provision};

#[derive(Debug, Clone)]
pub struct ClaimsBench {
    pub devices: usize,
    pub concurrency: usize,
    /// A scratch database instead of a fresh SQLite file.
    pub database_url: Option<String>,
}

pub async fn claims(bench: ClaimsBench) -> anyhow::Result<()> {
    let data = tempfile::tempdir().context("a scratch data directory")?;
    let mut config = super::loopback_config(data.path(), bench.database_url.as_deref())?;
    config.mqtt.max_concurrent_handshakes = 4096;
    println!(
        "start: a daemon on a fresh {} database",
        if bench.database_url.is_some() {
            "scratch"
        } else {
            "SQLite"
        }
    );
    let daemon = super::BenchDaemon::start(config, None).await?;
    let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let issued = daemon
        .api
        .call(
            Method::POST,
            "/claims",
            &[],
            Some(json!({
                "name": "bench batch",
                "serial_pattern": "BENCH-*",
                "max_uses": bench.devices,
                "expires_at": expires.format(&time::format_description::well_known::Rfc3339)?,
            })),
        )
        .await?;
    let claim = ClaimCredential {
        claim_id: issued["claim"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        secret: issued["secret"].as_str().unwrap_or_default().to_owned(),
    };
    let options = SimOptions {
        host: "localhost".into(),
        port: daemon.mqtt_port,
        ca_pem: issued["ca_certificate_pem"]
            .as_str()
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
        drop_ack_percent: Arc::new(AtomicU8::new(0)),
        disconnect_percent: 0,
        keep_alive: Duration::from_secs(60),
        periodic_heartbeats: false,
    };
    println!(
        "run: {} first boots, at most {} at once (connect with the claim, request, credential, reconnect as itself)",
        bench.devices, bench.concurrency
    );
    let permits = Arc::new(tokio::sync::Semaphore::new(bench.concurrency.max(1)));
    let started = Instant::now();
    let boots = (0..bench.devices).map(|i| {
        let (options, claim, permits) = (options.clone(), claim.clone(), permits.clone());
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let t0 = Instant::now();
            let serial = format!("BENCH-{i:06}");
            let outcome = provision(
                &options,
                &claim,
                &serial,
                "SB-1",
                None,
                Duration::from_secs(120),
            )
            .await?;
            let Provisioned::Device { device, .. } = outcome else {
                anyhow::bail!("{serial} was not provisioned: {outcome:?}");
            };
            connect_as_itself(&options, &device).await?;
            anyhow::Ok(t0.elapsed())
        })
    });
    let mut latencies = Vec::with_capacity(bench.devices);
    let mut failed = 0usize;
    for boot in futures_util::future::join_all(boots).await {
        match boot.context("a first boot's task")? {
            Ok(latency) => latencies.push(latency),
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("first boot failed: {e:#}");
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let claim_now = daemon
        .api
        .call(
            Method::GET,
            &format!("/claims/{}", claim.claim_id),
            &[],
            None,
        )
        .await?;
    daemon.stop().await?;
    latencies.sort_unstable();
    report(
        &bench,
        &latencies,
        failed,
        elapsed,
        &claim_now["uses"].to_string(),
    );
    Ok(())
}

#[allow(clippy::float_arithmetic, clippy::cast_precision_loss)]
fn report(
    bench: &ClaimsBench,
    latencies: &[Duration],
    failed: usize,
    elapsed: Duration,
    uses: &str,
) {
    let at = |q: usize| {
        latencies
            .get((latencies.len().saturating_sub(1)) * q / 100)
            .copied()
            .unwrap_or_default()
    };
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "report: {} of {} devices provisioned and reconnected as themselves in {elapsed:.2?} \
         ({rate:.1} devices/s); {failed} failed; claim uses {uses}",
        latencies.len(),
        bench.devices
    );
    println!(
        "first boot latency: p50 {:.1?}, p90 {:.1?}, p99 {:.1?}, max {:.1?}",
        at(50),
        at(90),
        at(99),
        at(100)
    );
}
