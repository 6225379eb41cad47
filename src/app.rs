//! Wiring: from a `Config` to bound listeners and running services.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use gema_admin_api::{AppServices, AppState, ConnectionLimits, ProvisioningInfo};
use gema_broker::Broker;
use gema_certs::{DevPki, DevPkiOutcome, TlsFiles};
use gema_gateway::clock::{Clock, SystemClock};
use gema_gateway::credentials::SecretString;
use gema_gateway::transport::{DeviceTransport, Presence, UplinkMessage};
use gema_gateway::{Gateway, GatewayDeps, GatewaySettings, Registry};
use gema_store::{Backend, ConnectOptions, Store};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::health::DaemonHealth;

/// A built daemon: every listener is bound, the database is migrated, TLS material exists.
/// Nothing serves until [`App::run_until`].
#[derive(Debug)]
pub struct App {
    http: TcpListener,
    http_limits: ConnectionLimits,
    metrics: TcpListener,
    router: Router,
    metrics_router: Router,
    bootstrap_token: Option<SecretString>,
    tls: TlsFiles,
    broker: Broker,
    gateway: Gateway,
    /// Held while the daemon runs on a SQLite file: a second daemon on it is refused.
    _lock: Option<std::fs::File>,
    /// `[mqtt] presence_capacity`: also the bound of the presence channel into the gateway.
    presence_capacity: usize,
    /// Renews the development certificate while running; the days-left metric.
    certificates: crate::certificates::CertificateWatch,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`App::build`] with the clock every gateway service uses (health, logins, payments,
    /// delivery); tests move it.
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        // The recorder first: what the services register while they are built (series
        // that start at 0) must reach it.
        let prometheus = crate::telemetry::prometheus();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;

        let lock = lock_sqlite_database(&config)?;
        let store = open_store(&config).await?;
        let applied = store.migrate().await.context("applying migrations")?;
        if applied > 0 {
            tracing::info!(applied, "database migrated");
        }
        let tls = tls_files(&config, &*store, &*clock).await?;
        let (device_ca_cert, device_certs) =
            crate::certificates::device_ca(&config, &*store, &*clock).await?;
        // The revocation list as it stands, before the first device connects.
        device_certs
            .revocations
            .refresh(&*store)
            .await
            .context("reading the certificate revocation list")?;

        // The broker authenticates devices against the registry before the gateway (which
        // needs the broker as its transport) exists; that registry only reads, and the
        // certificate check shares the gateway's revocation list.
        let authenticator = crate::devices::RegistryAuthenticator {
            registry: Registry::new(store.clone()),
            certificates: gema_gateway::certificates::DeviceCertificates::new(
                store.clone(),
                None,
                device_certs.clone(),
            ),
            claims: gema_gateway::claims::Claims::new(
                store.clone(),
                clock.clone(),
                gema_gateway::certificates::DeviceCertificates::new(
                    store.clone(),
                    None,
                    device_certs.clone(),
                ),
            ),
        };
        let budget = ConnectionBudget::from_open_file_limit(&config);
        let mut broker_config = crate::devices::broker_config(&config.mqtt, &tls);
        broker_config.tls.client_ca = Some(device_ca_cert.clone());
        broker_config.limits.max_connections = budget.mqtt;
        let broker = Broker::start(broker_config, Arc::new(authenticator))
            .await
            .context("starting the MQTT broker")?;
        let transport: Arc<dyn DeviceTransport> = Arc::new(crate::devices::BrokerTransport {
            handle: broker.handle(),
        });
        let gateway = Gateway::build(GatewayDeps {
            store: store.clone(),
            transport,
            clock,
            settings: GatewaySettings {
                device_certs,
                ..gateway_settings(&config, store.backend(), broker.tls_addr().port())
            },
        });
        let registry = gateway.registry.clone();
        let auth = gateway.auth.clone();
        // Once an admin user exists the bootstrap token is refused, so none is issued.
        let bootstrap_token = if auth.admin_users_exist().await? {
            tracing::info!("admin users exist: the bootstrap admin token is disabled");
            None
        } else {
            registry
                .ensure_bootstrap_token()
                .await
                .context("creating the bootstrap admin token")?
        };

        let ca_certificate_pem = std::fs::read_to_string(&tls.ca_cert)
            .with_context(|| format!("reading {}", tls.ca_cert.display()))?;
        let provisioning = ProvisioningInfo {
            mqtt_host: config.mqtt.public_host.clone(),
            mqtt_port: config.mqtt.public_port.unwrap_or(broker.tls_addr().port()),
            ca_certificate_path: absolute(&tls.ca_cert).display().to_string(),
            ca_certificate_pem,
        };
        let health = DaemonHealth {
            store: store.clone(),
            certificates: vec![
                ("server_certificate", tls.server_cert.clone()),
                ("ca_certificate", tls.ca_cert.clone()),
            ],
        };
        let state = AppState::new(AppServices {
            claims: gateway.claims.clone(),
            certificates: gateway.certificates.clone(),
            registry,
            auth,
            payments: gateway.payments.clone(),
            device_ops: gateway.device_ops.clone(),
            cluster: gateway.cluster.clone(),
            settlement: gateway.settlement.clone(),
            reconciliation: gateway.reconciliation.clone(),
            exports: gateway.exports.clone(),
            billing: gateway.billing.clone(),
            whatsapp: gateway.whatsapp.clone(),
            health: Arc::new(health),
            provisioning: Arc::new(provisioning),
        });
        // The console's pages beside the API, on the same listener; the API's router keeps
        // the fallback (its JSON 404).
        let router = gema_console::router(state.clone()).merge(gema_admin_api::router(state));

        let metrics_router = Router::new().route(
            "/metrics",
            get(move || {
                let prometheus = prometheus.clone();
                async move { prometheus.render() }
            }),
        );

        let http = bind(config.http.listen, "admin API").await?;
        let metrics = bind(config.metrics.listen, "metrics").await?;
        gateway
            .cluster
            .join(http.local_addr()?, broker.tls_addr())
            .await
            .context("registering this node")?;
        tracing::info!(
            admin_api = %http.local_addr()?,
            metrics = %metrics.local_addr()?,
            database = %gema_store::redact_url(&config.database_url()),
            "listeners bound"
        );
        tracing::info!(
            mqtt_tls = %broker.tls_addr(),
            mqtt_plain = ?broker.plain_addr(),
            "MQTT broker listening"
        );
        let certificates =
            crate::certificates::CertificateWatch::new(&config, tls.clone(), device_ca_cert);
        crate::telemetry::build_info(gateway.cluster.node_id(), store.backend());
        Ok(App {
            certificates,
            http,
            http_limits: config.http.connection_limits(budget.http),
            metrics,
            router,
            metrics_router,
            bootstrap_token,
            tls,
            broker,
            gateway,
            _lock: lock,
            presence_capacity: config.mqtt.presence_capacity.max(1),
        })
    }

    /// The MQTT over TLS listener's address.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.broker.tls_addr()
    }

    /// The plain MQTT listener's address, when configured.
    pub fn mqtt_plain_addr(&self) -> Option<SocketAddr> {
        self.broker.plain_addr()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The admin token created on this start, if this was the first start. Taken once.
    pub fn take_bootstrap_token(&mut self) -> Option<SecretString> {
        self.bootstrap_token.take()
    }

    pub fn tls_files(&self) -> &TlsFiles {
        &self.tls
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests
    /// finish, and returns.
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

        // Broker → the gateway (device operations first, which traces everything, handles
        // heartbeats, config reports, …, and passes acks and presence to delivery).
        let (uplink_tx, uplink_rx) = tokio::sync::mpsc::channel::<UplinkMessage>(4096);
        // Presence waits here when the gateway is busy; the broker's feed then falls behind
        // and resynchronises, so a small bound loses nothing.
        let (presence_tx, presence_rx) =
            tokio::sync::mpsc::channel::<Presence>(self.presence_capacity);
        let uplinks = self
            .broker
            .take_uplinks()
            .context("the broker's uplink stream was already taken")?;
        let forward_uplinks = crate::devices::forward_uplinks(uplinks, uplink_tx);
        let provisioning = self
            .broker
            .take_provisioning_requests()
            .context("the broker's provisioning requests were already taken")?;
        let answer_claims = crate::claims::answer_requests(
            provisioning,
            self.gateway.claims.clone(),
            self.broker.handle(),
        );
        let forward_presence =
            crate::devices::forward_presence(self.broker.handle().presence_feed(), presence_tx);
        let gateway = tokio::spawn(self.gateway.clone().run(uplink_rx, presence_rx, {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        }));

        #[cfg(unix)]
        let reload = tokio::spawn({
            let handle = self.broker.handle();
            let mut rx = stop_rx.clone();
            async move {
                let Ok(mut hup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                else {
                    return;
                };
                loop {
                    tokio::select! {
                        _ = hup.recv() => match handle.reload_certificates() {
                            Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                            Err(err) => tracing::error!(error = %err, "SIGHUP: certificate reload failed; keeping the old ones"),
                        },
                        _ = rx.wait_for(|stop| *stop) => break,
                    }
                }
            }
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let certificates = tokio::spawn(
            self.certificates
                .clone()
                .run(self.broker.handle(), stopped(stop_rx.clone())),
        );

        let upkeep = tokio::spawn({
            let rx = stop_rx.clone();
            let prometheus = crate::telemetry::prometheus();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                let stop = stopped(rx);
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        _ = tick.tick() => prometheus.run_upkeep(),
                        _ = &mut stop => break,
                    }
                }
            }
        });
        let http = tokio::spawn(gema_admin_api::serve(
            self.http,
            self.router,
            self.http_limits,
            stopped(stop_rx.clone()),
        ));
        // The metrics listener has a few connections of its own, inside the reserve.
        let metrics = tokio::spawn(gema_admin_api::serve(
            self.metrics,
            self.metrics_router,
            ConnectionLimits {
                listener: "metrics",
                max_connections: METRICS_MAX_CONNECTIONS,
                max_connections_per_source: METRICS_MAX_CONNECTIONS,
                ..self.http_limits
            },
            stopped(stop_rx),
        ));

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        http.await.context("admin API task")?;
        metrics.await.context("metrics task")?;
        upkeep.await.context("metrics upkeep task")?;
        gateway
            .await
            .context("gateway task")?
            .context("a gateway task (device operations, delivery, expiry sweep)")?;
        #[cfg(unix)]
        reload.await.context("certificate reload task")?;
        certificates.await.context("certificate renewal task")?;
        self.broker.shutdown().await;
        forward_uplinks.abort();
        forward_presence.abort();
        answer_claims.abort();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Connections the metrics listener keeps at once (Prometheus needs one or two).
const METRICS_MAX_CONNECTIONS: usize = 16;
/// Descriptors kept for everything that is not a client connection: listeners, the
/// runtime, certificate and database files, logs. The database pool and the metrics
/// listener come on top.
const RESERVED_OPEN_FILES: u64 = 64;

/// Descriptors that are not client connections: the reserve, the database pool and the
/// metrics listener's connections. `gema doctor` counts with it too.
pub(crate) fn reserved_open_files(config: &Config) -> u64 {
    RESERVED_OPEN_FILES
        + u64::from(config.database.max_connections)
        + METRICS_MAX_CONNECTIONS as u64
}

/// How the process's open files are shared between HTTP and MQTT connections, so that
/// neither listener can take the descriptors the other (or the database) needs: HTTP
/// clients flooding the API port once took every descriptor, and devices could no longer
/// connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// The most HTTP connections (admin API listener) at once.
    pub http: usize,
    /// The most MQTT connections (TLS and plain listeners together) at once.
    pub mqtt: usize,
}

impl ConnectionBudget {
    /// From the open-file limit in force (the daemon raised it to the hard limit first).
    fn from_open_file_limit(config: &Config) -> Self {
        let wanted = (config.http.max_connections, config.mqtt.max_connections);
        let reserved = reserved_open_files(config);
        let open_files = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok((soft, _hard)) => soft,
            Err(err) => {
                tracing::warn!(error = %err, "could not read the open-file limit; connection caps as configured");
                return Self {
                    http: wanted.0,
                    mqtt: wanted.1,
                };
            }
        };
        let budget = Self::split(open_files, reserved, wanted.0, wanted.1);
        if (budget.http, budget.mqtt) != wanted {
            tracing::warn!(
                open_files,
                reserved,
                http_max_connections = budget.http,
                mqtt_max_connections = budget.mqtt,
                "connection caps lowered to fit the open-file limit (http.max_connections {}, \
                 mqtt.max_connections {} do not fit); raise the limit (LimitNOFILE=) for more",
                wanted.0,
                wanted.1
            );
        } else {
            tracing::info!(
                open_files,
                reserved,
                http_max_connections = budget.http,
                mqtt_max_connections = budget.mqtt,
                "connection caps fit the open-file limit"
            );
        }
        budget
    }

    /// Both caps as configured when they fit in `open_files - reserved`; otherwise HTTP
    /// gets at most a quarter of what is available (more only when the broker wants less),
    /// and the broker the rest. Each gets at least one.
    fn split(open_files: u64, reserved: u64, http: usize, mqtt: usize) -> Self {
        let available = usize::try_from(open_files.saturating_sub(reserved)).unwrap_or(usize::MAX);
        if http.saturating_add(mqtt) <= available {
            return Self { http, mqtt };
        }
        let http = http
            .min((available / 4).max(available.saturating_sub(mqtt)))
            .max(1);
        let mqtt = mqtt.min(available.saturating_sub(http)).max(1);
        Self { http, mqtt }
    }
}

/// Every gateway service's settings from the configuration. The store's backend matters for
/// the commit loops: SQLite has one writer at a time, so delivery results with no payment
/// batch to ride in wait up to 5 ms for one (a transaction of results alone is an fsync a
/// provider's callback may wait behind) and the one commit loop has a thread of its own;
/// PostgreSQL writes results at once, and may run four commit loops side by side, so
/// under heavy load the server works on one batch (or waits for its WAL flush) while the
/// daemon stages the next. The others join only when the first one's queue backs up
/// (the gateway's routing): a batch's fixed work (six statements, a commit) is most of the
/// server's CPU at moderate rates, so there one loop's larger batches cost less (README,
/// "commit loops").
fn gateway_settings(config: &Config, backend: Backend, mqtt_port: u16) -> GatewaySettings {
    let mut payments = config.payments.settings();
    if backend == Backend::Sqlite {
        payments.delivery_results_gather = Duration::from_millis(5);
        payments.commit_loop_thread = true;
    } else {
        payments.commit_loops = 4;
    }
    GatewaySettings {
        payments,
        device_ops: config.devices.settings(),
        auth: config.auth.settings(),
        node: config.node_settings(mqtt_port),
        settlement: config.settlement.settings(),
        exports: config.export_settings(),
        billing: config.billing.settings(),
        whatsapp: config.whatsapp.settings(),
        sampler: config.metrics.sampler_settings(),
        ..GatewaySettings::default()
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener to {addr}"))
}

pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url();
    let options = ConnectOptions {
        max_connections: config.database.max_connections,
        acquire_timeout: Duration::from_secs(config.database.acquire_timeout_secs),
        busy_timeout: Duration::from_millis(config.database.busy_timeout_ms),
    };
    gema_store::connect(&url, &options)
        .await
        .with_context(|| format!("opening database {}", gema_store::redact_url(&url)))
}

/// On SQLite, an exclusive lock on `<database file>.lock`, held for the daemon's life: two
/// daemons writing one file would each believe it is the only writer (each has its own
/// write turn and commit loop). PostgreSQL needs none: several nodes are its purpose.
pub(crate) fn lock_sqlite_database(config: &Config) -> anyhow::Result<Option<std::fs::File>> {
    let url = config.database_url();
    let Some(path) = sqlite_file(&url) else {
        return Ok(None);
    };
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating database directory {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening the database lock {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another gema daemon is running on {} (it holds {}); stop it first, or give this \
             one its own data_dir. Several nodes share a PostgreSQL database, not a SQLite file",
            path.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("locking {}", lock_path.display()))
        }
    }
}

/// The file a `sqlite:` URL names; `None` for other databases and in-memory SQLite.
pub(crate) fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

/// The configured TLS files, or the development PKI in `<data_dir>/certs`, created or
/// renewed as needed. On PostgreSQL (several nodes) the development CA is created once and
/// shared through the database, so a device moving between nodes trusts every one of
/// them.
async fn tls_files(
    config: &Config,
    store: &dyn Store,
    clock: &dyn Clock,
) -> anyhow::Result<TlsFiles> {
    if let (Some(cert), Some(key), Some(ca)) =
        (&config.tls.cert, &config.tls.key, &config.tls.ca_cert)
    {
        return Ok(TlsFiles {
            ca_cert: ca.clone(),
            server_cert: cert.clone(),
            server_key: key.clone(),
        });
    }
    let pki = crate::certificates::development_pki(config);
    let hostnames = crate::certificates::development_hostnames(config);
    let outcome = pki
        .ensure_renewing(
            &hostnames,
            time::Duration::days(i64::from(config.tls.renew_before_days)),
        )
        .context("preparing the development certificates")?;
    if store.backend() == Backend::Postgres {
        share_development_ca(&pki, &hostnames, store, clock).await?;
    }
    let files = pki.files();
    match outcome {
        DevPkiOutcome::CreatedCa => tracing::info!(
            ca = %files.ca_cert.display(),
            "created a development CA and server certificate; give devices the CA file"
        ),
        DevPkiOutcome::ReissuedServer => tracing::info!(
            cert = %files.server_cert.display(),
            "re-issued the development server certificate"
        ),
        DevPkiOutcome::Existing => {}
    }
    Ok(files)
}

/// Offers this node's development CA to the cluster and adopts the one stored first.
async fn share_development_ca(
    pki: &DevPki,
    hostnames: &[String],
    store: &dyn Store,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let mine = pki.ca_pem().context("reading the development CA")?;
    let (ca_cert, ca_key) =
        crate::certificates::share_ca("development-ca", "development CA", &mine, store, clock)
            .await?;
    if pki
        .adopt_ca(&ca_cert, &ca_key, hostnames)
        .context("adopting the cluster's development CA")?
    {
        tracing::info!(
            "adopted the cluster's development CA; the server certificate was re-issued from it"
        );
    }
    tracing::warn!(
        "the development CA's private key is stored unencrypted in the database so that every node \
         serves a certificate from it; for production set [tls] cert, key and ca_cert"
    );
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::ConnectionBudget;

    #[test]
    fn caps_that_fit_the_open_file_limit_are_kept() {
        let budget = ConnectionBudget::split(200_000, 100, 1024, 100_000);
        assert_eq!((budget.http, budget.mqtt), (1024, 100_000));
    }

    #[test]
    fn caps_that_do_not_fit_leave_room_for_each_other_and_the_reserve() {
        // The measured box: 20,000 open files, the broker wanting 100,000 connections.
        let budget = ConnectionBudget::split(20_000, 100, 1024, 100_000);
        assert_eq!(budget.http, 1024);
        assert_eq!(budget.mqtt, 20_000 - 100 - 1024);
        // HTTP configured greedily gets a quarter; the broker keeps the rest.
        let budget = ConnectionBudget::split(20_000, 100, 50_000, 100_000);
        assert_eq!(budget.http, (20_000 - 100) / 4);
        assert_eq!(budget.http + budget.mqtt, 20_000 - 100);
        // A broker that wants little leaves the rest to HTTP.
        let budget = ConnectionBudget::split(20_000, 100, 50_000, 900);
        assert_eq!((budget.http, budget.mqtt), (20_000 - 100 - 900, 900));
        // Even a tiny limit leaves each listener one connection.
        let budget = ConnectionBudget::split(10, 100, 1024, 100_000);
        assert_eq!((budget.http, budget.mqtt), (1, 1));
    }
}
