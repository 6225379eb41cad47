use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use gema::cli::{AdminCommand, Cli, Command, ConfigCommand, DaemonArgs};
use gema::{App, Config, telemetry};
use gema_gateway::Registry;

/// The daemon allocates per request and per message on two runtime threads and sqlx's
/// connection threads; under load glibc's malloc (arena locks, consolidation) was about a
/// tenth of its CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match start(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the runtime the command runs on, then runs it: `serve` on `node.worker_threads`
/// threads, `bench payments`' load generator on `--load-threads`, the rest on one per core.
fn start(cli: Cli) -> anyhow::Result<()> {
    let threads =
        |threads, name| gema::runtime(threads, name).context("starting the async runtime");
    match cli.command {
        Command::Serve(args) => {
            let config = load_config(&args)?;
            threads(config.node.worker_threads, "gema-daemon")?.block_on(serve(config))
        }
        Command::Bench {
            command: gema::cli::BenchCommand::Payments { load_threads, .. },
        } => threads(load_threads, "bench-load")?.block_on(run(cli)),
        _ => threads(0, "tokio-runtime-worker")?.block_on(run(cli)),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        // `start` runs `serve` on a runtime sized by its configuration; this arm is what
        // `serve` means anywhere else.
        Command::Serve(args) => serve(load_config(&args)?).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Backup(args) => {
            let config = load_config(&args.daemon)?;
            let done = gema::backup::backup(&config, &args.out, args.keep).await?;
            println!("{}", done.display());
            Ok(())
        }
        Command::Restore(args) => restore(args).await,
        Command::Doctor(args) => {
            let config = load_config(&args)?;
            let (text, failed) = gema::doctor::report(&gema::doctor::examine(&config).await);
            print!("{text}");
            if failed {
                anyhow::bail!("gema doctor found problems to fix before going live");
            }
            Ok(())
        }
        Command::Health(args) => health(args).await,
        Command::Config {
            command: ConfigCommand::PrintDefault,
        } => {
            print!("{}", gema::config::DEFAULT_TOML);
            Ok(())
        }
        Command::Admin {
            daemon,
            command: AdminCommand::RotateBootstrapToken,
        } => rotate_bootstrap_token(daemon).await,
        Command::Admin { daemon, command } => {
            gema::people::admin_command(&load_config(&daemon)?, command).await
        }
        Command::Bench {
            command:
                gema::cli::BenchCommand::Payments {
                    devices,
                    rate,
                    seconds,
                    concurrency,
                    database_url,
                    nodes,
                    daemon_threads,
                    ..
                },
        } => {
            // Quiet unless asked: a log line per request would be part of what is measured.
            if std::env::var_os("RUST_LOG").is_some() {
                telemetry::init_logging(&gema::config::LogConfig::default())?;
            }
            gema::bench::payments(gema::bench::PaymentsBench {
                devices,
                rate,
                duration: std::time::Duration::from_secs(seconds),
                concurrency: concurrency.max(1),
                database_url,
                nodes,
                daemon_threads,
            })
            .await
        }
        Command::Bench {
            command:
                gema::cli::BenchCommand::Claims {
                    devices,
                    concurrency,
                    database_url,
                },
        } => {
            gema::bench::claims::claims(gema::bench::claims::ClaimsBench {
                devices,
                concurrency,
                database_url,
            })
            .await
        }
        Command::Bench {
            command: gema::cli::BenchCommand::Presence { devices, procs },
        } => {
            if std::env::var_os("RUST_LOG").is_some() {
                telemetry::init_logging(&gema::config::LogConfig::default())?;
            }
            gema::bench::presence::presence(gema::bench::presence::PresenceBench { devices, procs })
                .await
        }
        Command::Bench {
            command:
                gema::cli::BenchCommand::CrashLoop {
                    kills,
                    devices,
                    rate,
                    database_url,
                    seed,
                },
        } => {
            gema::bench::crash::crash_loop(gema::bench::crash::CrashLoop {
                kills,
                devices,
                rate,
                database_url,
                seed,
            })
            .await
        }
        Command::Bench {
            command:
                gema::cli::BenchCommand::Billing {
                    merchants,
                    per_merchant,
                    database_url,
                },
        } => {
            gema::bench::billing::billing(gema::bench::billing::BillingBench {
                merchants,
                per_merchant,
                database_url,
            })
            .await
        }
        Command::Bench {
            command:
                gema::cli::BenchCommand::Settlement {
                    merchants,
                    per_merchant,
                    database_url,
                },
        } => {
            gema::bench::settlement::settlement(gema::bench::settlement::SettlementBench {
                merchants,
                per_merchant,
                database_url,
            })
            .await
        }
        Command::Bench {
            command: gema::cli::BenchCommand::Reconcile { rows, database_url },
        } => {
            gema::bench::reconcile::reconcile(gema::bench::reconcile::ReconcileBench {
                rows,
                database_url,
            })
            .await
        }
        Command::Bench {
            command:
                gema::cli::BenchCommand::Export {
                    rows,
                    database_url,
                    page_rows,
                },
        } => {
            if std::env::var_os("RUST_LOG").is_some() {
                telemetry::init_logging(&gema::config::LogConfig::default())?;
            }
            gema::bench::export::export(gema::bench::export::ExportBench {
                rows,
                database_url,
                page_rows: page_rows.max(1),
            })
            .await
        }
        Command::Bench {
            command:
                gema::cli::BenchCommand::Console {
                    devices,
                    transactions,
                    merchants,
                    requests,
                    database_url,
                },
        } => {
            gema::bench::console::console(gema::bench::console::ConsoleBench {
                devices,
                transactions,
                merchants,
                requests,
                database_url,
            })
            .await
        }
        Command::Bench {
            command:
                gema::cli::BenchCommand::BillingImport {
                    rows,
                    merchants,
                    database_url,
                },
        } => {
            gema::bench::billing_import::billing_import(
                gema::bench::billing_import::BillingImportBench {
                    rows,
                    merchants,
                    database_url,
                },
            )
            .await
        }
        Command::Bench {
            command:
                gema::cli::BenchCommand::Certs {
                    devices,
                    concurrency,
                    renewals,
                    database_url,
                },
        } => {
            gema::bench::certs::certs(gema::bench::certs::CertsBench {
                devices,
                concurrency,
                renewals,
                database_url,
            })
            .await
        }
        Command::Bench {
            command:
                gema::cli::BenchCommand::Whatsapp {
                    messages,
                    senders,
                    spacing_ms,
                    database_url,
                },
        } => {
            gema::bench::whatsapp::whatsapp(gema::bench::whatsapp::WhatsAppBench {
                messages,
                senders,
                spacing_ms,
                database_url,
            })
            .await
        }
        Command::Bench {
            command: gema::cli::BenchCommand::PresenceFleet { port, ca, devices },
        } => gema::bench::presence::fleet(port, &ca, &devices).await,
        Command::Sim(args) => gema::sim::run_fleet(args).await,
        client => {
            let output = gema::cli::run_client(client).await?;
            println!("{output}");
            Ok(())
        }
    }
}

fn load_config(args: &DaemonArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init_logging(&config.log)?;
    // One descriptor per device or HTTP connection: use everything the hard limit allows.
    // `App::build` shares it between the two listeners' connection caps.
    match gema_broker::raise_fd_limit() {
        Ok(limit) => tracing::info!(open_files = limit, "open-file limit raised"),
        Err(err) => tracing::warn!(error = %err, "could not raise the open-file limit"),
    }
    let mut app = App::build(config).await?;
    // Shown on stdout, not in the logs, and only on the start that created it.
    if let Some(token) = app.take_bootstrap_token() {
        println!(
            "\nAdmin API token (shown once; only its hash is stored):\n\n    {}\n\n\
             Use it as `Authorization: Bearer <token>`, or export GEMA_TOKEN for the CLI.\n\
             Lost it? `gema admin rotate-bootstrap-token` issues a new one.\n",
            token.expose()
        );
    }
    println!(
        "console    http://{}/ (log in as a user: gema admin create-user)",
        app.http_addr()
    );
    println!("admin API  http://{}/api/v1", app.http_addr());
    println!("health     http://{}/health/deep", app.http_addr());
    println!("metrics    http://{}/metrics", app.metrics_addr());
    println!("MQTT/TLS   {}", app.mqtt_addr());
    if let Some(plain) = app.mqtt_plain_addr() {
        println!("MQTT plain {plain}");
    }
    println!("CA file    {}", app.tls_files().ca_cert.display());
    app.run_until(shutdown_signal()).await
}

async fn health(args: gema::cli::HealthArgs) -> anyhow::Result<()> {
    let url = match args.url {
        Some(url) => url,
        None => {
            let mut listen = load_config(&args.daemon)?.http.listen;
            if listen.ip().is_unspecified() {
                listen.set_ip(match listen {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{listen}/health")
        }
    };
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("asking {url}"))?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("{url} answered {status}");
    }
    println!("{url}: {status}");
    Ok(())
}

async fn migrate(args: DaemonArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store = gema::app::open_store(&config).await?;
    let applied = store.migrate().await.context("applying migrations")?;
    let status = store.migration_status().await?;
    println!(
        "applied {applied} migration(s); the database is at version {}",
        status.applied.iter().max().copied().unwrap_or(0)
    );
    Ok(())
}

async fn restore(args: gema::cli::RestoreArgs) -> anyhow::Result<()> {
    let config = load_config(&args.daemon)?;
    if let Some(backup) = &args.verify {
        let report = gema::backup::verify(&config, backup).await?;
        print!("{}", report.render());
        anyhow::ensure!(
            report.failures() == 0,
            "the backup {} failed verification: {} problem(s), listed above",
            backup.display(),
            report.failures()
        );
        return Ok(());
    }
    match &args.from {
        Some(backup) => gema::backup::restore(&config, backup, args.force).await,
        None => anyhow::bail!("name the backup: --from BACKUP or --verify BACKUP"),
    }
}

async fn rotate_bootstrap_token(args: DaemonArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let store = gema::app::open_store(&config).await?;
    store.migrate().await.context("applying migrations")?;
    if store.count_admin_users().await? > 0 {
        anyhow::bail!(
            "an admin user exists, so the bootstrap token is disabled; \
             use `gema admin reset-password --email …` to recover an admin's access"
        );
    }
    let registry = Registry::new(store.clone());
    let token = gema::people::audited(
        store.as_ref(),
        "admin_token.rotate_bootstrap",
        "admin_token:bootstrap".to_owned(),
        async {
            registry
                .rotate_bootstrap_token()
                .await
                .context("rotating the bootstrap token")
        },
        |_| serde_json::json!({ "name": "bootstrap" }),
    )
    .await?;
    println!(
        "New admin API token (shown once; the old bootstrap token no longer works):\n\n    {}\n",
        token.expose()
    );
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
