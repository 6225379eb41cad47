//! `gema bench billing-import`: the customer CSV import of N rows through the real daemon
//! and its admin API, as `gema billing import` sends it: a dry run (every row checked, every
//! row answered as JSON), then the import (checked again, written in one transaction with
//! an event per customer and the audit row), then the same file again (every phone taken).
//! Each step is timed from the request to the whole answer read. It prints figures; it
//! asserts nothing.
//!
//! Steps: `start` (a daemon on a fresh SQLite file, or on the database given), `seed`
//! (merchants through the API, the packages and billing names straight into the database:
//! not measured), `file` (the CSV, in memory: every merchant's area and every package in
//! turn, a discount on every third row), then the measured `dry run`, `import` and
//! `again`.

// Rates and MiB for display only; no money is computed here.
#![allow(clippy::float_arithmetic)]

use std::time::Instant;

use anyhow::{Context, bail};
use gema_store::seed::{SeedPackage, seed_billing_catalogue};
use reqwest::Method;
use serde_json::{Value, json};

use super::BenchDaemon;

#[derive(Debug, Clone)]
pub struct BillingImportBench {
    /// Rows in the file.
    pub rows: usize,
    /// Merchants the rows are spread over (their names are the areas).
    pub merchants: usize,
    /// `None`: a fresh SQLite file. Otherwise a scratch database (migrated and filled).
    pub database_url: Option<String>,
}

/// The packages: `(name, price)`.
const PACKAGES: [(&str, i64); 4] = [
    ("Bench 10 Mbps", 100_000),
    ("Bench 20 Mbps", 150_000),
    ("Bench 50 Mbps", 250_000),
    ("Bench 100 Mbps", 400_000),
];

pub async fn billing_import(bench: BillingImportBench) -> anyhow::Result<()> {
    if bench.rows == 0 || bench.merchants == 0 {
        bail!("--rows and --merchants must be at least 1");
    }
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let mut config = super::loopback_config(dir.path(), bench.database_url.as_deref())?;
    config.node.id = Some("bench-0".into());
    config.billing.import_max_bytes = gema_admin_api::BILLING_IMPORT_BODY_LIMIT_BYTES;
    let url = config.database_url();
    let backend = if bench.database_url.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    let daemon = BenchDaemon::start(config, None).await?;
    println!(
        "billing-import bench: {} rows over {} merchants on {backend}",
        bench.rows, bench.merchants
    );

    let started = Instant::now();
    let mut areas = Vec::with_capacity(bench.merchants);
    for m in 0..bench.merchants {
        let name = format!("Bench Area {m:03}");
        daemon
            .api
            .call(
                Method::POST,
                "/merchants",
                &[],
                Some(json!({ "name": name })),
            )
            .await?;
        areas.push(name);
    }
    let packages: Vec<SeedPackage> = PACKAGES
        .iter()
        .map(|(name, price)| SeedPackage {
            name: (*name).into(),
            price: *price,
            active: true,
        })
        .collect();
    seed_billing_catalogue(&url, &packages, &[])
        .await
        .context("seeding the packages")?;
    println!(
        "seed: {} merchants, {} packages in {:.2} s (not measured)",
        areas.len(),
        packages.len(),
        started.elapsed().as_secs_f64()
    );

    let csv = file(bench.rows, &areas);
    println!(
        "file: {} rows, {:.2} MiB",
        bench.rows,
        csv.len() as f64 / (1024.0 * 1024.0)
    );

    let run = |mode: &'static str| {
        let api = daemon.api.clone();
        let csv = csv.clone();
        async move {
            let started = Instant::now();
            let answer = api
                .post_csv(
                    "/billing/customer-imports",
                    &[("mode", mode.to_owned())],
                    csv,
                )
                .await?;
            Ok::<_, anyhow::Error>((answer, started.elapsed().as_secs_f64()))
        }
    };
    let report = |step: &str, answer: &Value, seconds: f64| {
        println!(
            "{step}: {} rows in {seconds:.3} s, {:.0} rows/s (goal: 10,000 rows in ≤ 3 s): \
             {} valid, {} invalid, {} imported, {} skipped",
            answer["rows"],
            answer["rows"].as_f64().unwrap_or(0.0) / seconds,
            answer["valid"],
            answer["invalid"],
            answer["imported"],
            answer["skipped"]
        );
    };
    let (answer, seconds) = run("dry_run").await?;
    report("dry run", &answer, seconds);
    let (answer, seconds) = run("import").await?;
    report("import", &answer, seconds);
    let (answer, seconds) = run("dry_run").await?;
    report("again (every phone taken)", &answer, seconds);
    daemon.stop().await
}

/// The CSV: the seed's header, then `rows` customers with distinct phones, every merchant's
/// area and every package in turn, a discount on every third row.
fn file(rows: usize, areas: &[String]) -> Vec<u8> {
    let mut csv = String::with_capacity(rows * 110);
    csv.push_str(
        "nama,telepon,diskon,tanggal,area,paket_nama,paket_tarif,total_bayar,nik,tanggal_register\n",
    );
    for i in 0..rows {
        let (package, price) = PACKAGES[i % PACKAGES.len()];
        let discount = if i % 3 == 0 { 10_000 } else { 0 };
        let area = &areas[i % areas.len()];
        let nik = if i % 2 == 0 {
            format!("{:016}", 3_201_000_000_000_000_u64 + i as u64)
        } else {
            String::new()
        };
        csv.push_str(&format!(
            "Pelanggan {i},62812{i:08},{discount},{},{area},{package},{price},{},{nik},2025-{:02}-{:02}\n",
            i % 28 + 1,
            price - discount,
            i % 12 + 1,
            i % 28 + 1,
        ));
    }
    csv.into_bytes()
}
