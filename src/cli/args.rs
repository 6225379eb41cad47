//! The clap tree: every subcommand, flag and help text of `gema`. Only declarations live
//! here; `main.rs` runs the daemon commands, [`super::run_client`] the admin-API ones.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "gema",
    version,
    about = "Gateway daemon for QRIS payment soundboxes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (zero configuration: data in ./gema-data).
    Serve(DaemonArgs),
    /// Apply pending database migrations and exit.
    Migrate(DaemonArgs),
    /// Write a consistent backup (database, certificates, manifest) while the daemon runs.
    Backup(BackupArgs),
    /// Restore a backup into an empty data directory and database, or drill one (--verify).
    Restore(RestoreArgs),
    /// Check a configuration and this host before going live (ports, file limits,
    /// certificates, database, provider secrets, clock); exits non-zero on a problem.
    Doctor(DaemonArgs),
    /// Ask a running daemon's `/health` (for container health checks); exits non-zero unless
    /// it answers 200 within 5 s.
    Health(HealthArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Operator tasks that work on the daemon's database directly.
    Admin {
        #[command(flatten)]
        daemon: DaemonArgs,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Play a fleet of simulated soundboxes against a running daemon.
    Sim(SimArgs),
    /// Merchants (through the admin API).
    Merchant {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// Outlets (through the admin API).
    Outlet {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: OutletCommand,
    },
    /// Terminals (through the admin API).
    Terminal {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: TerminalCommand,
    },
    /// Devices and their credentials (through the admin API).
    Device {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Claims for provisioning by claim (through the admin API): a production batch's
    /// credential with which factory-fresh devices get their own identity.
    Claim {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: ClaimCommand,
    },
    /// Subscription billing (through the admin API): the customer CSV import.
    Billing {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: BillingCommand,
    },
    /// Export ledger entries or transactions as CSV (an export job, through the admin API).
    Export {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        export: ExportArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClaimCommand {
    /// Create a claim for a batch. Its secret is printed once (as `ID:SECRET`, what
    /// `gema sim --claim` and the factory image take); devices connect with MQTT user name
    /// `claim:<ID>` and their serial as client id.
    Create {
        /// The batch, as you call it.
        #[arg(long)]
        name: String,
        /// The serials it may provision, as a glob (`*` any run, `?` one character).
        #[arg(long, conflicts_with = "serials", required_unless_present = "serials")]
        serial_pattern: Option<String>,
        /// Or exactly these serials (comma-separated).
        #[arg(long, value_delimiter = ',')]
        serials: Option<Vec<String>>,
        /// How many devices it may provision.
        #[arg(long)]
        max_uses: i64,
        /// Days until it stops working.
        #[arg(long, default_value_t = 30)]
        expires_in_days: i64,
    },
    /// List claims with their uses.
    List,
    /// Revoke a claim: no device connects with it any more.
    Revoke { id: String },
    /// The serials a claim provisioned, with their device ids.
    Provisionings { id: String },
    /// Let a serial be provisioned by claim once more (a device reset to factory).
    AllowReprovision { serial: String },
}

#[derive(Debug, Subcommand)]
pub enum BillingCommand {
    /// Import customers from the billing seed's CSV (nama,telepon,diskon,tanggal,area,
    /// paket_nama,paket_tarif,total_bayar,nik,tanggal_register): the file is checked first
    /// (a dry run, its counts on stderr), then its valid rows are imported in one
    /// transaction; the rows that were not imported are listed with their problems.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Only check the file; import nothing.
        #[arg(long)]
        dry_run: bool,
        /// Import nothing if any row is invalid.
        #[arg(long)]
        all_or_nothing: bool,
    },
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// What to export: ledger_entries, transactions, settlement_adjustments,
    /// reconciliation_rows (of one run: --run), billing_invoices or billing_invoices_xlsx
    /// (by --period-from/--period-to), or billing_customers (customer data: needs billing
    /// management too; --merchant only).
    pub kind: String,
    /// Only this merchant's rows.
    #[arg(long)]
    pub merchant: Option<String>,
    /// Rows created at or after this instant (RFC 3339, e.g. 2026-12-01T00:00:00+07:00).
    #[arg(long)]
    pub from: Option<String>,
    /// Rows created before this instant (RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// Transactions only: pending, paid, refunded, expired or failed.
    #[arg(long)]
    pub status: Option<String>,
    /// Ledger entries only: gross_income, platform_fee, merchant_payable,
    /// payable_adjustment or merchant_held.
    #[arg(long)]
    pub entry_type: Option<String>,
    /// Settlement adjustments only: hold, release, fee_correction, chargeback or manual.
    #[arg(long)]
    pub adjustment_type: Option<String>,
    /// Reconciliation rows only: the run (required).
    #[arg(long)]
    pub run: Option<String>,
    /// Reconciliation rows only: matched, amount_mismatch, status_mismatch,
    /// missing_in_gema, missing_in_report or malformed.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Billing invoices only: the first invoice period included (YYYY-MM).
    #[arg(long)]
    pub period_from: Option<String>,
    /// Billing invoices only: the last invoice period included (YYYY-MM).
    #[arg(long)]
    pub period_to: Option<String>,
    /// Wait for the job (a progress bar on stderr), then download the file.
    #[arg(long)]
    pub wait: bool,
    /// Where to save the file (implies --wait; default: the job id with `.csv`).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// TOML configuration file (optional; defaults and GEMA_* variables apply).
    #[arg(long, short = 'c', env = "GEMA_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// The URL to ask. Default: `/health` on the configured `http.listen` (an unspecified
    /// address such as 0.0.0.0 is asked on loopback).
    #[arg(long)]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// The directory to write into: the backup is a new directory `gema-backup-<UTC time>`
    /// in it (written under a temporary name, renamed when complete); its path is printed.
    #[arg(long)]
    pub out: PathBuf,
    /// Afterwards, delete the oldest complete backups in --out beyond the newest N.
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from", "verify"])))]
pub struct RestoreArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// The backup directory to restore into the configured data directory and database
    /// (refused unless they are empty; the daemon must be stopped).
    #[arg(long, value_name = "BACKUP")]
    pub from: Option<PathBuf>,
    /// Drill: restore the backup into a scratch place, migrate, compare row counts, ledger
    /// totals and checksums with its manifest; exits non-zero on any mismatch.
    #[arg(long, value_name = "BACKUP")]
    pub verify: Option<PathBuf>,
    /// With --from: overwrite a data directory or database that is not empty.
    #[arg(long, requires = "from")]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The daemon, N devices over MQTT/TLS and signed callbacks at a rate: callback → device
    /// latency and sustained throughput.
    Payments {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Callbacks per second; 0 = as fast as --concurrency allows.
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// A scratch database to use instead of a fresh SQLite file (e.g. postgres://…).
        #[arg(long)]
        database_url: Option<String>,
        /// Gateway nodes on the one database (PostgreSQL only): callbacks go to the first,
        /// the devices connect to the last, so every announcement crosses nodes.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// Threads of each node's runtime, as `node.worker_threads` (0: one per core).
        #[arg(long, default_value_t = 0)]
        daemon_threads: usize,
        /// Threads of the load generator's and simulated devices' runtime (0: one per
        /// core). One by default: on a small box the load's threads take cores from the
        /// daemon and PostgreSQL under test.
        #[arg(long, default_value_t = 1)]
        load_threads: usize,
    },
    /// The real binary under payment load from simulated soundboxes, killed with SIGKILL at
    /// random moments and restarted, N times: prints callbacks accepted, announcements
    /// delivered, duplicates and lost, and fails if anything was lost.
    CrashLoop {
        #[arg(long, default_value_t = 100)]
        kills: usize,
        #[arg(long, default_value_t = 20)]
        devices: usize,
        /// Callbacks per second offered.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// A scratch database to use instead of a fresh SQLite file (e.g. postgres://…).
        #[arg(long)]
        database_url: Option<String>,
        /// Seeds the kill schedule.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Settlement at scale: seeds N merchants × P paid transactions (with their ledger),
    /// then generates every merchant's batch through the settlement service and streams
    /// the largest batch's payout report: seconds and rows per second.
    Settlement {
        #[arg(long, default_value_t = 10_000)]
        merchants: usize,
        /// Paid transactions (payables) per merchant.
        #[arg(long, default_value_t = 100)]
        per_merchant: usize,
        /// A scratch database to use instead of a fresh SQLite file (e.g. postgres://…).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// The daily billing run over M merchants × P customers (seeded in bulk): seconds and
    /// invoices per second, and the idempotent re-run.
    Billing {
        #[arg(long, default_value_t = 100)]
        merchants: usize,
        /// Active customers per merchant, all billed on the same day.
        #[arg(long, default_value_t = 1000)]
        per_merchant: usize,
        /// A scratch database to use instead of a fresh SQLite file (e.g. postgres://…).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// The daemon and a connect storm of N devices over MQTT/TLS from K child processes:
    /// the time from the last connect until every device's presence is recorded.
    Presence {
        #[arg(long, default_value_t = 9000)]
        devices: usize,
        /// Child processes the fleet is spread over (a process may hold only so many
        /// open files).
        #[arg(long, default_value_t = 3)]
        procs: usize,
    },
    /// Provisioning by claim through the whole first boot, over TLS against a real daemon:
    /// N factory-fresh devices (at most C at once) connect with one claim, ask, get their
    /// credential and reconnect as themselves; devices per second and the latency.
    Claims {
        #[arg(long, default_value_t = 500)]
        devices: usize,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// A scratch database to use instead of a fresh SQLite file (e.g. postgres://…).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// A provider report of N lines (a few mismatches of every kind) reconciled against N
    /// paid transactions through the gateway's reconciliation service: seconds and rows/s.
    Reconcile {
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
        /// A scratch database to use instead of a fresh SQLite file (e.g. postgres://…).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// N ledger rows seeded straight into a fresh database, then one export job of them
    /// run by the real export worker: rows per second and the process's memory growth.
    Export {
        #[arg(long, default_value_t = 1_000_000)]
        rows: i64,
        /// A scratch database to use instead of a fresh SQLite file (e.g. postgres://…).
        #[arg(long)]
        database_url: Option<String>,
        /// Rows read per page.
        #[arg(long, default_value_t = 1000)]
        page_rows: u32,
    },
    /// The web console's pages on a big database: D devices and T paid transactions
    /// seeded, then every page requested N times as an operator and as a merchant user:
    /// p50/p95 time and size per page against the goal (p95 ≤ 50 ms, ≤ 200 KB).
    Console {
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        #[arg(long, default_value_t = 1_000_000)]
        transactions: usize,
        #[arg(long, default_value_t = 100)]
        merchants: usize,
        /// Requests per page.
        #[arg(long, default_value_t = 40)]
        requests: usize,
        /// A scratch database to use instead of a fresh SQLite file (e.g. postgres://…).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// The customer CSV import through the daemon's admin API: an N-row file checked (dry
    /// run), imported in one transaction, and checked again (every phone taken): seconds
    /// and rows per second.
    BillingImport {
        #[arg(long, default_value_t = 10_000)]
        rows: usize,
        /// Merchants (areas) the rows are spread over.
        #[arg(long, default_value_t = 20)]
        merchants: usize,
        /// A scratch database to use instead of a fresh SQLite file (e.g. postgres://…).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Device certificates through the real daemon: N CSRs signed through the admin API
    /// (certificates/s), then M of those devices renewing over MQTT/TLS at once
    /// (renewals/s and latency).
    Certs {
        #[arg(long, default_value_t = 2000)]
        devices: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Of those devices, how many renew over MQTT (0: skip).
        #[arg(long, default_value_t = 200)]
        renewals: usize,
        /// A scratch database to use instead of a fresh SQLite file (e.g. postgres://…).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// N bill reminders for M merchants' own Cloud API senders, sent by the outbox worker
    /// to a fake Cloud API on 127.0.0.1: the achieved rate per sender against the configured
    /// bulk spacing, messages sent twice (none), and the drain time against the pacing's.
    Whatsapp {
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        #[arg(long, default_value_t = 500)]
        senders: usize,
        /// The bulk spacing per sender (delay_min_ms = delay_max_ms), in milliseconds.
        #[arg(long, default_value_t = 2000)]
        spacing_ms: u64,
        /// A scratch database to use instead of a fresh SQLite file (e.g. postgres://…).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// One child process of `bench presence` (started by it).
    #[command(hide = true)]
    PresenceFleet {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        ca: PathBuf,
        /// A JSON list of `{device_id, secret}`.
        #[arg(long)]
        devices: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// How many devices to register and run.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Serial numbers are this prefix plus a number (default: SIM-{unix time}-).
    #[arg(long)]
    pub serial_prefix: Option<String>,
    /// Also create an approved merchant, an outlet, and a terminal per device, and bind.
    #[arg(long)]
    pub setup: bool,
    /// Percent of announcements whose ack the devices drop.
    #[arg(long, default_value_t = 0)]
    pub drop_acks: u8,
    /// Percent chance per announcement that a device disconnects afterwards.
    #[arg(long, default_value_t = 0)]
    pub disconnect: u8,
    /// Broker host to dial (default: what the API says devices use; with --claim,
    /// localhost).
    #[arg(long)]
    pub mqtt_host: Option<String>,
    /// Play factory-fresh devices that provision themselves with this claim (`ID:SECRET`,
    /// as `gema claim create` printed it), then reconnect as themselves. Needs --mqtt-port
    /// and --ca; registers nothing through the API.
    #[arg(long, conflicts_with = "setup", requires_all = ["mqtt_port", "ca"])]
    pub claim: Option<String>,
    /// The broker's MQTT/TLS port (with --claim).
    #[arg(long)]
    pub mqtt_port: Option<u16>,
    /// PEM of the CA the broker's certificate chains to (with --claim).
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the default configuration, with comments.
    PrintDefault,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Revoke the bootstrap admin token and print a new one (once).
    RotateBootstrapToken,
    /// Create a user: the first admin, or anyone, without the API. Reads the password from
    /// the first line of standard input (never from the command line). The first user with
    /// the `admin` role disables the bootstrap token.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Operators: admin, finance, ops, support, viewer. With --merchant-id: owner,
        /// finance, ops, viewer.
        #[arg(long)]
        role: String,
        /// Makes a merchant user of this merchant.
        #[arg(long)]
        merchant_id: Option<String>,
    },
    /// Set a user's password (recovery); every session of the user ends and its failed-login
    /// count is cleared. Reads the password from the first line of standard input.
    ResetPassword {
        #[arg(long)]
        email: String,
        /// Also turn off the user's TOTP second factor (lost phone and recovery codes).
        #[arg(long)]
        disable_totp: bool,
    },
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Base URL of the daemon's admin API.
    #[arg(
        long,
        env = "GEMA_API_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub api_url: String,
    /// Admin API token.
    #[arg(long, env = "GEMA_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the API's JSON response.
    #[arg(long, global = true, conflicts_with = "quiet")]
    pub json: bool,
    /// Print only the id(s) of what the command created, changed or listed.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum MerchantCommand {
    /// Register a merchant (status pending).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        phone: Option<String>,
    },
    List {
        /// pending, approved, rejected or suspended.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    Show {
        id: String,
    },
    Approve {
        id: String,
    },
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
    },
    Suspend {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutletCommand {
    Add {
        #[arg(long)]
        merchant: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        city: Option<String>,
    },
    List {
        #[arg(long)]
        merchant: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    Show {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TerminalCommand {
    Add {
        #[arg(long)]
        outlet: String,
        /// Terminal label (QRIS tag 62.07), unique within the outlet, e.g. A01.
        #[arg(long)]
        label: String,
        #[arg(long)]
        name: Option<String>,
        /// The terminal's static QRIS payload (the text inside its printed QR).
        #[arg(long)]
        static_qris: Option<String>,
    },
    /// A pending transaction and the dynamic QRIS that pays it.
    DynamicQr {
        id: String,
        /// Whole rupiah.
        #[arg(long)]
        amount: i64,
        #[arg(long)]
        expires_in_secs: Option<u64>,
    },
    List {
        #[arg(long)]
        outlet: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    Show {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device and print its credentials (the secret is shown only now).
    Add {
        #[arg(long)]
        serial: String,
        #[arg(long)]
        model: String,
        #[arg(long)]
        firmware: Option<String>,
        #[command(flatten)]
        qr: QrArgs,
    },
    List {
        #[arg(long)]
        terminal: Option<String>,
        /// active or disabled.
        #[arg(long)]
        status: Option<String>,
        /// online, degraded or offline.
        #[arg(long)]
        health: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    Show {
        id: String,
    },
    /// Health, presence, last heartbeat and config sync of a device.
    Status {
        id: String,
    },
    /// Desired and reported config.
    Config {
        id: String,
    },
    /// Change the desired config; pass the version `config` showed (a stale one is refused).
    SetConfig {
        id: String,
        #[arg(long)]
        version: i64,
        #[arg(long)]
        volume: Option<u8>,
        /// id or en.
        #[arg(long)]
        language: Option<String>,
        #[arg(long)]
        heartbeat_interval: Option<u32>,
        #[arg(long)]
        qr_timeout: Option<u32>,
    },
    /// Send a command: set_volume, reboot, replay_last, announce_daily_summary, get_status,
    /// fw_update, audio_update.
    Command {
        id: String,
        name: String,
        /// The command's arguments as JSON, e.g. '{"volume":7}'.
        #[arg(long)]
        args: Option<String>,
        #[arg(long)]
        expires_in: Option<u64>,
        /// Fail at once if the device is offline.
        #[arg(long)]
        interactive: bool,
    },
    /// The device's commands (or one of them).
    Commands {
        id: String,
        command_id: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// The device's last MQTT messages, newest first (kept in memory by the daemon).
    Messages {
        id: String,
    },
    /// Bind a device to a terminal of an approved merchant.
    Bind {
        id: String,
        #[arg(long)]
        terminal: String,
    },
    Unbind {
        id: String,
        /// Also end the device's live MQTT session now.
        #[arg(long)]
        kick: bool,
    },
    /// Binding history.
    Bindings {
        id: String,
    },
    /// Issue a new secret (printed once); the old one stops working.
    Rotate {
        id: String,
        #[command(flatten)]
        qr: QrArgs,
    },
    /// Revoke the device's secret; `rotate` issues a new one.
    Revoke {
        id: String,
    },
    /// Sign the device's CSR (PEM, made on the device) with the device CA; prints the
    /// certificate and the CA chain, or writes them to --out.
    Cert {
        id: String,
        /// The certificate signing request, PEM (ECDSA P-256 or Ed25519; CN = the device id).
        #[arg(long)]
        csr: std::path::PathBuf,
        /// Write the certificate followed by the chain here instead of printing them.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

/// The issued credentials as a QR code of the provisioning string
/// (`GEMA1:host=…;port=…;id=…;secret=…;ca=…`, see the README), for a technician to scan.
#[derive(Debug, Clone, Default, Args)]
pub struct QrArgs {
    /// Also draw the QR code in the terminal (for a dark background), with the string below.
    #[arg(long)]
    pub qr: bool,
    /// Also write the QR code as a PNG file (mode 0600: it holds the secret).
    #[arg(long, value_name = "FILE")]
    pub qr_png: Option<PathBuf>,
}
