//! `gema bench reconcile`: a store with N paid transactions, a provider report of N lines
//! with a few mismatches of every kind, and the reconciliation run through the gateway
//! service the API uses (`gema_gateway::reconciliation::Reconciliation::import`): parse,
//! look up, match, store the run and its rows. Then the run's rows read back in the
//! export's pieces. It prints figures; it asserts nothing.
//!
//! Steps: `open_store` (a fresh SQLite file, or the database given), `seed` (N static-QR
//! payments through the payment batch, 500 a transaction: the real payment path, not
//! measured), `report` (the CSV, in memory), then the measured `import` and `export`.

// Rates for display only; no money is computed here.
#![allow(clippy::float_arithmetic)]

use std::time::Instant;

use anyhow::{Context, bail};
use gema_gateway::payments::StandardRules;
use gema_gateway::reconciliation::{ImportRequest, Reconciliation, ReportFormat};
use gema_store::{InboxEntry, IncomingEvent, Store};
use time::OffsetDateTime;

const STATIC_REF: &str = "BENCH-STATIC-QR";
const AMOUNT: i64 = 25_000;
/// Events per seeding transaction.
const SEED_BATCH: usize = 500;

#[derive(Debug, Clone)]
pub struct ReconcileBench {
    /// Transactions seeded, and lines in the report.
    pub rows: usize,
    /// `None`: a fresh SQLite file. Otherwise a scratch database (it gets migrated and
    /// filled).
    pub database_url: Option<String>,
}

/// How the report differs from the store, by design.
struct Planted {
    amount_mismatch: usize,
    status_mismatch: usize,
    missing_in_gema: usize,
    missing_in_report: usize,
    malformed: usize,
}

impl Planted {
    fn for_rows(rows: usize) -> Self {
        Planted {
            amount_mismatch: rows / 1_000,
            status_mismatch: rows / 2_000,
            missing_in_gema: rows / 2_000,
            missing_in_report: rows / 2_000,
            malformed: rows / 10_000,
        }
    }
}

pub async fn reconcile(bench: ReconcileBench) -> anyhow::Result<()> {
    if bench.rows < 10 {
        bail!("--rows must be at least 10");
    }
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let (store, _, backend) =
        super::scratch_store(bench.database_url.as_deref(), dir.path()).await?;
    println!("reconcile bench: {} rows on {backend}", bench.rows);

    let started = Instant::now();
    let (from, to) = seed(&*store, bench.rows).await?;
    println!(
        "seed: {} paid transactions in {:.2} s (not measured)",
        bench.rows,
        started.elapsed().as_secs_f64()
    );

    let planted = Planted::for_rows(bench.rows);
    let csv = report(bench.rows, &planted, from);
    println!(
        "report: {} lines, {:.1} MiB",
        bench.rows,
        csv.len() as f64 / (1024.0 * 1024.0)
    );

    let service = Reconciliation::new(store.clone());
    let request = ImportRequest {
        format: ReportFormat::Midtrans,
        provider: None,
        mapping: None,
        from: Some(from - time::Duration::minutes(1)),
        to: Some(to + time::Duration::minutes(1)),
    };
    let started = Instant::now();
    let run = service.import(request, &csv, "bench").await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "import: {} rows in {seconds:.3} s, {:.0} rows/s (goal: 100,000 rows in ≤ 5 s)",
        run.report_rows,
        run.report_rows as f64 / seconds
    );
    println!(
        "  matched {}, amount_mismatch {} (planted {}), status_mismatch {} (planted {}), \
         missing_in_gema {} (planted {}), missing_in_report {} (planted {}), malformed {} \
         (planted {})",
        run.matched,
        run.amount_mismatch,
        planted.amount_mismatch,
        run.status_mismatch,
        planted.status_mismatch,
        run.missing_in_gema,
        planted.missing_in_gema,
        run.missing_in_report,
        // The payments the report leaves out, and those its malformed lines name.
        planted.missing_in_report + planted.malformed,
        run.malformed,
        planted.malformed
    );

    let started = Instant::now();
    let mut after = -1;
    let mut read = 0usize;
    loop {
        let chunk = service.row_chunk(&run.id, after, 2_000).await?;
        let Some(last) = chunk.last() else { break };
        after = last.seq;
        read += chunk.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "read back: {read} rows in {seconds:.3} s, {:.0} rows/s (the CSV export's reads)",
        read as f64 / seconds
    );
    Ok(())
}

/// `rows` static-QR payments of [`AMOUNT`] on one terminal, through the payment batch;
/// returns the first and last payment time.
async fn seed(store: &dyn Store, rows: usize) -> anyhow::Result<(OffsetDateTime, OffsetDateTime)> {
    super::bench_terminal(store, "Bench Reconcile", "R01", Some(STATIC_REF)).await?;
    let rules = StandardRules {
        fee_bps: 70,
        announcement_ttl_ms: 60_000,
        handover_lease_ms: 0,
    };
    let first = OffsetDateTime::now_utc();
    let mut n = 0;
    while n < rows {
        let items: Vec<(InboxEntry, IncomingEvent)> = (n..(n + SEED_BATCH).min(rows))
            .map(|i| {
                (
                    InboxEntry {
                        provider: "midtrans".into(),
                        received_at: OffsetDateTime::now_utc(),
                        headers: "{}".into(),
                        body: b"{}".to_vec(),
                    },
                    IncomingEvent {
                        provider: "midtrans".into(),
                        provider_transaction_id: provider_id(i),
                        order_ref: STATIC_REF.into(),
                        amount: AMOUNT,
                        status: "paid".into(),
                        raw_status: "settlement".into(),
                        issuer: None,
                        paid_at: Some(OffsetDateTime::now_utc()),
                        is_test: false,
                    },
                )
            })
            .collect();
        n += items.len();
        for outcome in store.apply_payment_events(items, &rules).await? {
            outcome.context("a seeded payment failed")?;
        }
    }
    Ok((first, OffsetDateTime::now_utc()))
}

fn provider_id(i: usize) -> String {
    format!("bench-{i:07}")
}

/// The Midtrans report of the seeded payments, with the planted differences: the first
/// ones get another amount, the next a pending status; some payments are left out and
/// replaced by orders Gema never saw; a few lines are malformed.
fn report(rows: usize, planted: &Planted, paid: OffsetDateTime) -> Vec<u8> {
    let jakarta = paid.to_offset(time::macros::offset!(+7));
    let at = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        jakarta.year(),
        u8::from(jakarta.month()),
        jakarta.day(),
        jakarta.hour(),
        jakarta.minute(),
        jakarta.second()
    );
    let mut csv = String::with_capacity(rows * 80);
    csv.push_str("Order ID,Transaction ID,Gross Amount,Transaction Status,Settlement Time\n");
    let amounts = planted.amount_mismatch;
    let statuses = amounts + planted.status_mismatch;
    let left_out = rows - planted.missing_in_report;
    let malformed_from = left_out - planted.malformed;
    for i in 0..rows {
        let id = provider_id(i);
        let order = format!("midtrans:{id}");
        let line = if i < amounts {
            format!("{order},{id},{}.00,settlement,{at}\n", AMOUNT + 1)
        } else if i < statuses {
            format!("{order},{id},{AMOUNT}.00,pending,{at}\n")
        } else if i >= left_out {
            let unknown = format!("unknown-{i:07}");
            format!("midtrans:{unknown},{unknown},{AMOUNT}.00,settlement,{at}\n")
        } else if i >= malformed_from {
            format!("{order},{id},{AMOUNT}.50,settlement,{at}\n")
        } else {
            format!("{order},{id},{AMOUNT}.00,settlement,{at}\n")
        };
        csv.push_str(&line);
    }
    csv.into_bytes()
}
