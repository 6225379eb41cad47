//! Logs and metrics: installed here, in the binary, and nowhere else. Libraries only emit
//! `tracing` events and `metrics` values.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the log subscriber: pretty on a terminal, JSON lines otherwise, to stderr.
/// `RUST_LOG` overrides the configured level.
pub fn init_logging(config: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => EnvFilter::try_new(filter)?,
        _ => EnvFilter::try_new(&config.level)?,
    };
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

/// The process's Prometheus recorder. The `metrics` facade has one global recorder per
/// process, so it is installed on first use and shared by every `App` in the process
/// (tests build several).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = histogram_buckets(PrometheusBuilder::new()).build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, which this binary never does.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Histograms as Prometheus histograms (buckets, so `histogram_quantile` works across
/// nodes), not the exporter's default summaries.
fn histogram_buckets(builder: PrometheusBuilder) -> PrometheusBuilder {
    // Seconds: HTTP requests, commits, callback → acknowledgement (which includes a
    // device's reconnect and replay, hence the long tail).
    const SECONDS: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        300.0,
    ];
    // Events per commit batch.
    const BATCH: &[f64] = &[
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
    ];
    builder
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH))
        .expect("bucket lists are not empty")
}

/// `gema_build_info{version, node, database} 1`: which build each node runs, and a join
/// key from a node's `instance` to its `node.id`.
pub fn build_info(node: &str, backend: gema_store::Backend) {
    let database = match backend {
        gema_store::Backend::Sqlite => "sqlite",
        gema_store::Backend::Postgres => "postgres",
    };
    metrics::gauge!("gema_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "node" => node.to_owned(),
        "database" => database)
    .set(1.0);
}
