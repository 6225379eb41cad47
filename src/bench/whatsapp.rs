//! `gema bench whatsapp`: N bill reminders for M merchants' own Cloud API senders, sent by
//! the real outbox worker (claims, pacing, HTTP) to the fake Cloud API (a real HTTP server
//! on 127.0.0.1). Prints, per sender, the achieved rate against the configured bulk pacing,
//! how many requests reached the fake per message (no message may be sent twice), and the
//! drain time against the time the pacing implies. It asserts nothing but the counts.

#![allow(clippy::float_arithmetic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use gema_gateway::clock::SystemClock;
use gema_gateway::cluster::{Cluster, NodeSettings};
use gema_gateway::transport::{DeviceTransport, PublishOutcome};
use gema_gateway::whatsapp::{BulkSettings, Kind, Notice, PaceLimits, WhatsApp, WhatsAppSettings};
use gema_store::{NewWaSender, SenderKind};

use crate::fake_cloud_api::FakeCloudApi;

#[derive(Debug, Clone)]
pub struct WhatsAppBench {
    pub messages: usize,
    pub senders: usize,
    /// The bulk spacing per sender, in milliseconds.
    pub spacing_ms: u64,
    pub database_url: Option<String>,
}

/// The cluster's transport for a benchmark that has no devices.
#[derive(Debug)]
struct NoDevices;

#[async_trait]
impl DeviceTransport for NoDevices {
    async fn publish(
        &self,
        _device_id: &str,
        _topic: &str,
        _payload: Vec<u8>,
        _wait: Duration,
    ) -> PublishOutcome {
        PublishOutcome::Offline
    }
    fn is_connected(&self, _device_id: &str) -> bool {
        false
    }
    fn connected_for(&self, _device_id: &str) -> Option<Duration> {
        None
    }
    fn connected_count(&self) -> usize {
        0
    }
    fn disconnect(&self, _device_id: &str) -> bool {
        false
    }
}

pub async fn whatsapp(bench: WhatsAppBench) -> anyhow::Result<()> {
    if bench.messages == 0 || bench.senders == 0 || bench.spacing_ms == 0 {
        bail!("--messages, --senders and --spacing-ms must be at least 1");
    }
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let (store, _url, backend) =
        super::scratch_store(bench.database_url.as_deref(), dir.path()).await?;
    let fake = FakeCloudApi::start()
        .await
        .context("starting the fake Cloud API")?;
    let per_sender = bench.messages.div_ceil(bench.senders);
    println!(
        "whatsapp bench ({backend}): {} reminders for {} merchants' senders (~{per_sender} each), one every {} ms per sender…",
        bench.messages, bench.senders, bench.spacing_ms
    );
    let mut merchants = Vec::with_capacity(bench.senders);
    for i in 0..bench.senders {
        let (merchant, _terminal) =
            super::bench_terminal(store.as_ref(), &format!("Toko {i}"), &format!("T{i}"), None)
                .await?;
        let merchant = merchant.id;
        let phone_number_id = format!("{}", 100_000 + i);
        let token = format!("token-{i}");
        fake.register(&phone_number_id, &token);
        store
            .put_wa_sender(
                &merchant,
                NewWaSender {
                    kind: SenderKind::Cloud,
                    phone_number_id: Some(phone_number_id),
                    access_token: Some(token),
                    gateway_url: None,
                    gateway_headers: None,
                    gateway_body: None,
                    rate_per_sec: None,
                    daily_recipients: Some(100_000),
                    active: true,
                },
            )
            .await?;
        merchants.push(merchant);
    }
    let spacing = Duration::from_millis(bench.spacing_ms);
    let settings = WhatsAppSettings {
        api_base_url: fake.base_url(),
        pacing: PaceLimits {
            rate_per_sec: 80,
            burst: 1,
            recipient_gap: Duration::from_secs(6),
            daily_recipients: 100_000,
            bulk: BulkSettings {
                delay_min: spacing,
                delay_max: spacing,
                batch_size: 0,
                batch_pause: Duration::ZERO,
                hourly_cap: 0,
                daily_cap: 0,
            },
        },
        poll_interval: Duration::from_millis(200),
        ..WhatsAppSettings::default()
    };
    let clock = Arc::new(SystemClock);
    let wa = WhatsApp::new(store.clone(), clock.clone(), settings, "bench".into());
    let mut notices = Vec::with_capacity(bench.messages);
    for n in 0..bench.messages {
        let merchant = &merchants[n % merchants.len()];
        notices.push(Notice {
            merchant_id: Some(merchant.clone()),
            recipient: format!("628{:09}", n),
            kind: Kind::Reminder,
            values: BTreeMap::from([
                ("customer", format!("Pelanggan {n}")),
                ("business", "Net".to_owned()),
                ("package", "10 Mbps".to_owned()),
                ("period", "2026-12".to_owned()),
                ("amount", "Rp150.000".to_owned()),
                ("due_date", "2026-12-05".to_owned()),
                ("bank_details", "BCA 123".to_owned()),
                ("payment_link", String::new()),
            ]),
            dedupe_key: Some(format!("reminder:bench:{n}")),
            not_before_ms: None,
            created_by: "bench".into(),
        });
    }
    let started = Instant::now();
    let queued = wa.queue(notices).await.context("queueing")?;
    println!(
        "  queued {} in {:.2} s",
        queued.len(),
        started.elapsed().as_secs_f64()
    );
    let cluster = Cluster::new(
        store.clone(),
        Arc::new(NoDevices),
        clock,
        NodeSettings {
            id: "bench".into(),
            ..NodeSettings::default()
        },
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let worker = tokio::spawn(wa.clone().run(cluster, async {
        let _ = stop_rx.await;
    }));
    let implied =
        spacing.saturating_mul(u32::try_from(per_sender.saturating_sub(1)).unwrap_or(u32::MAX));
    let deadline = implied * 2 + Duration::from_secs(60);
    if !fake.wait_for(queued.len(), deadline).await {
        println!(
            "  only {} of {} requests reached the fake within {:.0} s",
            fake.count(),
            queued.len(),
            deadline.as_secs_f64()
        );
    }
    let drained = started.elapsed();
    // Let the last answers be recorded (every row `sent`, for 20 s at most), then stop.
    let recorded_by = Instant::now() + Duration::from_secs(20);
    while Instant::now() < recorded_by {
        let counts = wa.counts(None).await?;
        if counts.get("sent").copied().unwrap_or(0) >= i64::try_from(queued.len())? {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    let _ = worker.await;

    let requests = fake.requests();
    let mut by_sender: HashMap<String, Vec<Instant>> = HashMap::new();
    let mut per_recipient: HashMap<String, usize> = HashMap::new();
    for request in &requests {
        by_sender
            .entry(request.phone_number_id.clone())
            .or_default()
            .push(request.at);
        *per_recipient.entry(request.to.clone()).or_default() += 1;
    }
    let twice = per_recipient.values().filter(|&&n| n > 1).count();
    // Achieved spacing per sender: (last - first) / (n - 1), against the configured one,
    // in parts per 10,000 (integers; no floats in the arithmetic that decides).
    let mut deviations: Vec<i64> = Vec::new();
    for times in by_sender.values_mut() {
        times.sort();
        if times.len() < 2 {
            continue;
        }
        let span = times[times.len() - 1].duration_since(times[0]);
        let gaps = u128::try_from(times.len() - 1).unwrap_or(1);
        let achieved_us = i64::try_from(span.as_micros() / gaps).unwrap_or(i64::MAX);
        let configured_us = i64::try_from(spacing.as_micros()).unwrap_or(i64::MAX);
        deviations.push((achieved_us - configured_us) * 10_000 / configured_us);
    }
    deviations.sort_unstable();
    let pct = |bp: i64| format!("{:+.2}%", bp as f64 / 100.0);
    let counts = wa.counts(None).await?;
    println!(
        "  drained: {} requests in {:.2} s (the pacing implies {:.2} s: {} per sender, one every {} ms)",
        requests.len(),
        drained.as_secs_f64(),
        implied.as_secs_f64(),
        per_sender,
        bench.spacing_ms
    );
    if let (Some(first), Some(last)) = (deviations.first(), deviations.last()) {
        let median = deviations[deviations.len() / 2];
        println!(
            "  achieved spacing vs configured, over {} senders: median {}, min {}, max {} (goal: within ±1%)",
            deviations.len(),
            pct(median),
            pct(*first),
            pct(*last)
        );
    }
    println!(
        "  recipients messaged twice: {twice}; outbox: sent {}, sending {}, pending {}, failed {}, uncertain {}",
        counts.get("sent").copied().unwrap_or(0),
        counts.get("sending").copied().unwrap_or(0),
        counts.get("pending").copied().unwrap_or(0),
        counts.get("failed").copied().unwrap_or(0),
        counts.get("uncertain").copied().unwrap_or(0),
    );
    if twice > 0 || requests.len() != queued.len() {
        bail!(
            "{} requests for {} messages, {twice} recipients twice",
            requests.len(),
            queued.len()
        );
    }
    Ok(())
}
