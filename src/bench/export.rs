//! `gema bench export`: N ledger rows written straight into a fresh database, then one
//! export job of all of them run by the real export worker (`gema_gateway::exports`), as
//! the daemon runs it. Prints rows, seconds, rows per second, the file's size and how much
//! this process's resident memory grew while the export ran (sampled from
//! `/proc/self/status`: VmRSS every 20 ms, and VmHWM, the kernel's peak). It asserts
//! nothing.
//!
//! The rows are seeded by one `INSERT … SELECT` over a generated series
//! (`ExportStore::seed_ledger_entries_for_bench`): the benchmark is about reading and
//! writing them, not about making payments, which `gema bench payments` measures.

// Rates and MiB for display only; no money is computed here.
#![allow(clippy::float_arithmetic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gema_gateway::clock::SystemClock;
use gema_gateway::exports::{ExportSettings, Exports};
use gema_store::{ConnectOptions, ExportFilter, ExportKind, ExportStatus, NewTransaction, Store};

#[derive(Debug, Clone)]
pub struct ExportBench {
    pub rows: i64,
    /// `None`: a fresh SQLite file. Otherwise a scratch database to fill.
    pub database_url: Option<String>,
    /// Rows per page (the `[exports] page_rows` setting).
    pub page_rows: u32,
}

pub async fn export(bench: ExportBench) -> anyhow::Result<()> {
    if bench.rows < 1 {
        bail!("--rows must be at least 1");
    }
    let dir = tempfile::tempdir().context("temporary directory")?;
    let (url, backend) = match &bench.database_url {
        Some(url) => (url.clone(), "postgresql"),
        None => (
            format!("sqlite://{}", dir.path().join("gema.db").display()),
            "sqlite",
        ),
    };
    let store = gema_store::connect(&url, &ConnectOptions::default())
        .await
        .with_context(|| format!("opening {}", gema_store::redact_url(&url)))?;
    store.migrate().await.context("migrating")?;

    let started = Instant::now();
    let merchant_id = seed(store.as_ref(), bench.rows).await?;
    println!(
        "seed: {} ledger rows on {backend} in {:.2} s",
        bench.rows,
        started.elapsed().as_secs_f64()
    );

    let exports = Exports::new(
        store.clone(),
        Arc::new(SystemClock),
        ExportSettings {
            dir: dir.path().join("exports"),
            page_rows: bench.page_rows,
            ..ExportSettings::default()
        },
        "bench".into(),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(exports.clone().run(async {
        let _ = stop_rx.await;
    }));

    let cpu_before = cpu_ticks();
    let rss_before = super::proc_status_kib("VmRSS:").unwrap_or(0);
    let hwm_before = super::proc_status_kib("VmHWM:").unwrap_or(0);
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        let sampling = sampling.clone();
        async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(rss) = super::proc_status_kib("VmRSS:") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let started = Instant::now();
    let job = exports
        .create(
            ExportKind::LedgerEntries,
            ExportFilter {
                merchant_id: Some(merchant_id),
                ..Default::default()
            },
            "bench",
        )
        .await?;
    let job = loop {
        let job = exports.job(&job.id).await?;
        match job.status {
            ExportStatus::Done => break job,
            ExportStatus::Failed | ExportStatus::Expired => {
                bail!("the export {}: {:?}", job.status.as_str(), job.error)
            }
            ExportStatus::Queued | ExportStatus::Running => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let elapsed = started.elapsed();
    let cpu = cpu_ticks()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let hwm_after = super::proc_status_kib("VmHWM:").unwrap_or(0);
    let _ = stop_tx.send(());
    let _ = worker.await;

    let secs = elapsed.as_secs_f64();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "export: {} rows ({} bytes of CSV, pages of {}) on {backend} in {secs:.2} s = {:.0} rows/s",
        job.rows_done,
        job.file_bytes.unwrap_or(0),
        bench.page_rows,
        job.rows_done as f64 / secs
    );
    if let Some(ticks) = cpu {
        // Clock ticks are 1/100 s on Linux.
        println!(
            "cpu: {:.2} s of this process's CPU time (user + system, every thread) for the export",
            ticks as f64 / 100.0
        );
    }
    println!(
        "memory: RSS {:.1} MiB before, {:.1} MiB at most during the export (sampled every \
         20 ms): growth {:.1} MiB; VmHWM {:.1} -> {:.1} MiB",
        mib(rss_before),
        mib(peak),
        mib(peak.saturating_sub(rss_before)),
        mib(hwm_before),
        mib(hwm_after),
    );
    Ok(())
}

/// A merchant, its outlet, terminal and one transaction, and `rows` ledger entries of it.
async fn seed(store: &dyn Store, rows: i64) -> anyhow::Result<String> {
    let (merchant, terminal) = super::bench_terminal(store, "Warung Bench", "B01", None).await?;
    let transaction = store
        .create_transaction(NewTransaction {
            terminal_id: terminal.id,
            order_ref: format!("BENCH-{}", merchant.id),
            amount: 10_000,
            expires_at_ms: i64::MAX / 2,
        })
        .await?;
    store
        .seed_ledger_entries_for_bench(&merchant.id, &transaction.id, rows)
        .await?;
    Ok(merchant.id)
}

/// This process's user + system CPU time in clock ticks (`/proc/self/stat` fields 14, 15).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it follow its `)`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}
