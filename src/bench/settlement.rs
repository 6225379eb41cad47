//! `gema bench settlement`: batch generation over a million payables. Seeds N merchants ×
//! P paid transactions with their ledger (bulk inserts, `gema_store::seed`), then asks the
//! settlement service for every merchant's batch, as `POST /api/v1/settlement-batches`
//! does, and streams the largest batch's standard payout report. Prints the figures; it
//! asserts nothing but that every payable was batched once.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use gema_gateway::clock::SystemClock;
use gema_gateway::settlement::{GenerateInput, ReportFormat, Settlement, SettlementSettings};
use gema_gateway::whatsapp::{WhatsApp, WhatsAppSettings};

#[derive(Debug, Clone)]
pub struct SettlementBench {
    pub merchants: usize,
    pub per_merchant: usize,
    pub database_url: Option<String>,
}

pub async fn settlement(bench: SettlementBench) -> anyhow::Result<()> {
    if bench.merchants == 0 || bench.per_merchant == 0 {
        bail!("--merchants and --per-merchant must be at least 1");
    }
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let (store, url, backend) =
        super::scratch_store(bench.database_url.as_deref(), dir.path()).await?;

    let payables = bench.merchants * bench.per_merchant;
    println!(
        "settlement bench ({backend}): seeding {} merchants × {} paid transactions ({payables} payables, {} ledger rows)…",
        bench.merchants,
        bench.per_merchant,
        payables * 3
    );
    let started = Instant::now();
    let seeded = gema_store::seed::seed_paid_ledger(
        &url,
        bench.merchants,
        bench.per_merchant,
        25_000,
        175,
        0,
    )
    .await
    .context("seeding")?;
    println!(
        "  seeded {} transactions, {} ledger rows in {:.1} s",
        seeded.transactions,
        seeded.ledger_entries,
        started.elapsed().as_secs_f64()
    );

    let clock = Arc::new(SystemClock);
    // No WhatsApp sender is configured: nothing is queued.
    let whatsapp = WhatsApp::new(
        store.clone(),
        clock.clone(),
        WhatsAppSettings::default(),
        "bench".into(),
    );
    let service = Settlement::new(
        store.clone(),
        clock,
        SettlementSettings {
            minimum_payout: 1,
            ..SettlementSettings::default()
        },
        whatsapp,
    );
    let started = Instant::now();
    let done = service
        .generate(GenerateInput::default(), "bench")
        .await
        .context("generating")?;
    let took = started.elapsed().as_secs_f64();
    let batched: i64 = done.batches.iter().map(|b| b.item_count).sum();
    println!(
        "  generate: {} batches, {batched} payables in {took:.2} s ({:.0} payables/s; goal ≤ 5 s SQLite, ≤ 10 s PostgreSQL)",
        done.batches.len(),
        batched as f64 / took
    );
    if batched != payables as i64 || !done.skipped.is_empty() {
        bail!(
            "{batched} of {payables} payables batched, {} merchants skipped",
            done.skipped.len()
        );
    }
    let again = service
        .generate(GenerateInput::default(), "bench")
        .await
        .context("generating again")?;
    if !again.batches.is_empty() {
        bail!("a second generation made {} batches", again.batches.len());
    }

    let largest = done
        .batches
        .iter()
        .max_by_key(|b| b.item_count)
        .context("no batch")?;
    let rss_before = super::proc_status_kib("VmRSS:").unwrap_or(0);
    let started = Instant::now();
    let mut report = service.report(&largest.id, ReportFormat::Standard).await?;
    let (mut bytes, mut rows) = (0usize, 0usize);
    while let Some(chunk) = report.next_chunk().await? {
        rows += chunk.iter().filter(|b| **b == b'\n').count();
        bytes += chunk.len();
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "  payout report of {}: {} rows, {} KiB in {:.3} s ({:.0} rows/s), RSS {} → {} KiB",
        largest.id,
        rows.saturating_sub(1),
        bytes / 1024,
        took,
        rows as f64 / took,
        rss_before,
        super::proc_status_kib("VmRSS:").unwrap_or(0)
    );
    Ok(())
}
