//! `gema bench billing`: the daily invoice run over N customers. Seeds M merchants × P
//! active customers billed on the 5th (bulk inserts, `gema_store::seed`), then runs the
//! billing service's generation for 4 February (the day before), as the daily run and
//! `POST /api/v1/billing/invoice-runs` do, and runs it again (idempotent: it must create
//! nothing). Prints the figures; it asserts nothing but the counts.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use gema_gateway::billing::{Billing, BillingSettings};
use gema_gateway::clock::SystemClock;
use gema_gateway::delivery::{Handover, results_channel};
use gema_gateway::payments::{PaymentSettings, Payments};
use gema_gateway::whatsapp::{WhatsApp, WhatsAppSettings};

#[derive(Debug, Clone)]
pub struct BillingBench {
    pub merchants: usize,
    pub per_merchant: usize,
    pub database_url: Option<String>,
}

pub async fn billing(bench: BillingBench) -> anyhow::Result<()> {
    if bench.merchants == 0 || bench.per_merchant == 0 {
        bail!("--merchants and --per-merchant must be at least 1");
    }
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let (store, url, backend) =
        super::scratch_store(bench.database_url.as_deref(), dir.path()).await?;
    let customers = bench.merchants * bench.per_merchant;
    println!(
        "billing bench ({backend}): seeding {} merchants × {} customers billed on the 5th ({customers} customers)…",
        bench.merchants, bench.per_merchant
    );
    let started = Instant::now();
    gema_store::seed::seed_billing_customers(&url, bench.merchants, bench.per_merchant, 5)
        .await
        .context("seeding")?;
    println!("  seeded in {:.1} s", started.elapsed().as_secs_f64());

    let clock = Arc::new(SystemClock);
    let (_results, results_queue) = results_channel();
    let payments = Payments::new(
        store.clone(),
        PaymentSettings::default(),
        clock.clone(),
        Handover::new(),
        results_queue,
    );
    // No WhatsApp sender is configured: nothing is queued.
    let whatsapp = WhatsApp::new(
        store.clone(),
        clock.clone(),
        WhatsAppSettings::default(),
        "bench".into(),
    );
    let billing = Billing::new(
        store,
        clock,
        BillingSettings::default(),
        payments,
        whatsapp,
        "bench".into(),
    );
    let run_date = time::macros::date!(2026 - 02 - 04);
    let started = Instant::now();
    let report = billing
        .generate(run_date, None)
        .await
        .context("generating")?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "  generate: {} invoices for {} in {took:.2} s ({:.0} invoices/s; goal ≤ 5 s for 100,000 on SQLite)",
        report.created,
        report.period.as_deref().unwrap_or("-"),
        report.created as f64 / took
    );
    if report.created != customers as u64 {
        bail!("made {} invoices for {customers} customers", report.created);
    }
    let started = Instant::now();
    let again = billing
        .generate(run_date, None)
        .await
        .context("re-running")?;
    println!(
        "  re-run: {} new invoices in {:.2} s",
        again.created,
        started.elapsed().as_secs_f64()
    );
    if again.created != 0 {
        bail!("a re-run made {} invoices", again.created);
    }
    Ok(())
}
