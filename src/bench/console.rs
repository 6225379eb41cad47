//! `gema bench console`: the web console's pages on a big database. Seeds D devices and T
//! paid transactions (with their ledger) over M merchants straight into a fresh database
//! (not measured), starts the real daemon on it, logs in through the console's own login
//! form as an operator and as a merchant user, and requests every page N times one after
//! another: the time from the request to the whole page read on loopback (p50, p95, max)
//! and the page's size, against the goal (p95 ≤ 50 ms, ≤ 200 KB). It prints figures; it
//! fails only if a page does not answer 200.

// Milliseconds and KB for display only; no money is computed here.
#![allow(clippy::float_arithmetic)]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::Method;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use super::BenchDaemon;

#[derive(Debug, Clone)]
pub struct ConsoleBench {
    pub devices: usize,
    pub transactions: usize,
    pub merchants: usize,
    /// Requests per page.
    pub requests: usize,
    pub database_url: Option<String>,
}

/// The goals of issue 18 (the first request of a page is shown apart: it fills the
/// overview's figure cache).
const GOAL_P95: Duration = Duration::from_millis(50);
const GOAL_BYTES: usize = 200 * 1024;

pub async fn console(bench: ConsoleBench) -> anyhow::Result<()> {
    if bench.merchants == 0 || bench.requests == 0 {
        bail!("--merchants and --requests must be at least 1");
    }
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let mut config = super::loopback_config(dir.path(), bench.database_url.as_deref())?;
    config.node.id = Some("bench-0".into());
    let url = config.database_url();
    let backend = if bench.database_url.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    let daemon = BenchDaemon::start(config, None).await?;
    println!(
        "console bench ({backend}): {} devices, {} paid transactions over {} merchants",
        bench.devices, bench.transactions, bench.merchants
    );

    let started = Instant::now();
    let seeded = gema_store::seed::seed_paid_ledger(
        &url,
        bench.merchants,
        bench.transactions.div_ceil(bench.merchants),
        25_000,
        175,
        // Spread over a hundred days, as a live system's are: "today" is a day's worth.
        100,
    )
    .await
    .context("seeding transactions")?;
    let devices = gema_store::seed::seed_devices(&url, bench.devices, &seeded.terminals)
        .await
        .context("seeding devices")?;
    println!(
        "seed: {} transactions, {} ledger rows, {} devices in {:.1} s (not measured)",
        seeded.transactions,
        seeded.ledger_entries,
        devices.len(),
        started.elapsed().as_secs_f64()
    );

    // Billing: one more merchant's customers and their invoices (the run goes through the
    // API while the bootstrap token still works).
    gema_store::seed::seed_billing_customers(&url, 1, 200, 16)
        .await
        .context("seeding billing customers")?;
    daemon
        .api
        .call(
            Method::POST,
            "/billing/invoice-runs",
            &[],
            Some(json!({ "date": "2026-11-15" })),
        )
        .await
        .context("running the invoice generation")?;

    let password = "console bench password";
    // The merchant user first: once an operator with role admin exists, the bootstrap
    // token stops working.
    for (email, role, merchant) in [
        (
            "merchant@bench.invalid",
            "owner",
            seeded.merchants.first().cloned(),
        ),
        ("operator@bench.invalid", "admin", None),
    ] {
        daemon
            .api
            .call(
                Method::POST,
                "/users",
                &[],
                Some(json!({
                    "email": email, "name": email, "role": role,
                    "merchant_id": merchant, "password": password,
                })),
            )
            .await
            .with_context(|| format!("creating {email}"))?;
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = daemon.api_url.clone();
    let operator = login(&http, &base, "operator@bench.invalid", password).await?;
    let merchant = login(&http, &base, "merchant@bench.invalid", password).await?;

    let middle = devices.get(devices.len() / 2).cloned().unwrap_or_default();
    let a_device = devices.first().cloned().unwrap_or_default();
    let a_merchant = seeded.merchants.first().cloned().unwrap_or_default();
    // A transaction, from the console's own list (the bootstrap token no longer works once
    // an admin user exists).
    let list = http
        .get(format!("{base}/transactions"))
        .header(COOKIE, operator.as_str())
        .send()
        .await?
        .text()
        .await?;
    let a_transaction = list
        .split("data-transaction-id=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("no transaction on the console's list")?
        .to_owned();
    let an_invoice = first_id(&http, &base, &operator, "/billing/invoices", "invoice").await?;
    let a_customer = first_id(&http, &base, &operator, "/billing/customers", "customer").await?;
    let pages: Vec<(&str, String, &String)> = vec![
        ("operator", "/".into(), &operator),
        ("operator", "/devices".into(), &operator),
        ("operator", "/devices?status=offline".into(), &operator),
        ("operator", format!("/devices?after={middle}"), &operator),
        ("operator", format!("/devices/{a_device}"), &operator),
        ("operator", "/transactions".into(), &operator),
        ("operator", "/transactions?status=paid".into(), &operator),
        (
            "operator",
            format!("/transactions/{a_transaction}"),
            &operator,
        ),
        ("operator", "/settlement".into(), &operator),
        ("operator", "/merchants".into(), &operator),
        ("operator", format!("/merchants/{a_merchant}"), &operator),
        ("operator", "/billing/customers".into(), &operator),
        (
            "operator",
            format!("/billing/customers/{a_customer}"),
            &operator,
        ),
        ("operator", "/billing/customers/new".into(), &operator),
        (
            "operator",
            format!("/billing/customers/{a_customer}/edit"),
            &operator,
        ),
        ("operator", "/billing/invoices".into(), &operator),
        (
            "operator",
            "/billing/invoices?status=unpaid".into(),
            &operator,
        ),
        (
            "operator",
            format!("/billing/invoices/{an_invoice}"),
            &operator,
        ),
        ("operator", "/billing/packages".into(), &operator),
        ("operator", "/whatsapp".into(), &operator),
        ("operator", "/audit".into(), &operator),
        ("operator", "/users".into(), &operator),
        ("operator", "/roles".into(), &operator),
        ("operator", "/tokens".into(), &operator),
        ("operator", "/settlement/adjustments".into(), &operator),
        ("operator", "/reconciliation".into(), &operator),
        ("operator", "/reconciliation/batches".into(), &operator),
        ("operator", "/nodes".into(), &operator),
        ("merchant", "/".into(), &merchant),
        ("merchant", "/devices".into(), &merchant),
        ("merchant", "/transactions".into(), &merchant),
        ("merchant", "/settlement".into(), &merchant),
        ("merchant", "/billing/invoices".into(), &merchant),
        ("merchant", "/settlement/adjustments".into(), &merchant),
    ];

    println!(
        "{:<9} {:<40} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "user", "page", "first ms", "p50 ms", "p95 ms", "max ms", "KB"
    );
    let mut over = 0;
    for (who, path, cookie) in &pages {
        let target = format!("{base}{path}");
        let mut times = Vec::with_capacity(bench.requests);
        let mut bytes = 0;
        let mut first = Duration::ZERO;
        for i in 0..bench.requests + 2 {
            let began = Instant::now();
            let answer = http
                .get(&target)
                .header(COOKIE, cookie.as_str())
                .send()
                .await?;
            let status = answer.status();
            let body = answer.bytes().await?;
            let took = began.elapsed();
            if status != reqwest::StatusCode::OK {
                bail!("{who} {path}: {status}");
            }
            bytes = body.len();
            // The first two warm the caches (the overview's figures are computed by the
            // first); they are not counted, the first is shown apart.
            if i == 0 {
                first = took;
            }
            if i >= 2 {
                times.push(took);
            }
        }
        times.sort();
        let at = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)];
        let (p50, p95, max) = (at(50), at(95), times[times.len() - 1]);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let verdict = if p95 <= GOAL_P95 && bytes <= GOAL_BYTES {
            ""
        } else {
            over += 1;
            "  over the goal"
        };
        println!(
            "{who:<9} {path:<40} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1}{verdict}",
            ms(first),
            ms(p50),
            ms(p95),
            ms(max),
            bytes as f64 / 1024.0
        );
    }
    println!(
        "goal: every page p95 ≤ {} ms and ≤ {} KB; {over} of {} pages over",
        GOAL_P95.as_millis(),
        GOAL_BYTES / 1024,
        pages.len()
    );
    daemon.stop().await
}

/// Logs in through the console's form, as a browser does: the form's token and its cookie,
/// then the session cookie from the answer. Returns the `Cookie` header to send.
async fn login(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let form = http.get(format!("{base}/login")).send().await?;
    let login_cookie = cookie_of(&form, "gema_login").context("no login cookie")?;
    let html = form.text().await?;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("no csrf field on the login form")?
        .to_owned();
    let answer = http
        .post(format!("{base}/login"))
        .header(COOKIE, format!("gema_login={login_cookie}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", password),
            ("next", "/"),
        ])
        .send()
        .await?;
    if answer.status() != reqwest::StatusCode::SEE_OTHER || answer.headers().get(LOCATION).is_none()
    {
        bail!("login as {email}: {}", answer.status());
    }
    let session = cookie_of(&answer, "gema_session").context("no session cookie")?;
    Ok(format!("gema_session={session}"))
}

fn cookie_of(answer: &reqwest::Response, name: &str) -> Option<String> {
    answer
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The first `data-<kind>-id` on the console's `path`, read as `cookie`'s user.
async fn first_id(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    path: &str,
    kind: &str,
) -> anyhow::Result<String> {
    let page = http
        .get(format!("{base}{path}"))
        .header(COOKIE, cookie)
        .send()
        .await?
        .text()
        .await?;
    Ok(page
        .split(&format!("data-{kind}-id=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .with_context(|| format!("no {kind} on the console's {path}"))?
        .to_owned())
}
