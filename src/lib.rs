//! The `gema` daemon: configuration, telemetry and wiring of the workspace crates, plus the
//! command line (`cli`), the simulated soundbox fleet (`sim`) and the payments benchmark
//! (`bench`). This is the only crate that reads configuration files and the environment,
//! installs the log subscriber and the metrics recorder, and decides which implementation
//! backs which trait.

pub mod app;
/// `gema backup` and `gema restore` (the restore drill too).
pub mod backup;
pub mod bench;
mod certificates;
mod claims;
pub mod cli;
pub mod config;
mod devices;
/// `gema doctor`: the pre-flight check of a configuration and a host.
pub mod doctor;
/// A stand-in for Meta's WhatsApp Cloud API (a real HTTP server) for tests and benchmarks.
pub mod fake_cloud_api;
mod health;
pub mod people;
pub mod sim;
pub mod telemetry;

pub use app::App;
pub use config::Config;

/// A multi-threaded runtime with `worker_threads` threads (0: one per core, tokio's
/// default) named `thread_name`: the daemon's (`node.worker_threads`) and the benchmarks'.
pub fn runtime(
    worker_threads: usize,
    thread_name: &str,
) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder.thread_name(thread_name).enable_all().build()
}
