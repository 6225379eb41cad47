//! The command line: the daemon's own subcommands (`serve`, `migrate`, `config`, `admin`)
//! and the client commands technicians and operators run against a daemon's admin API
//! (`merchant`, `outlet`, `terminal`, `device`). Client commands print a readable summary,
//! or the API's JSON with `--json`, or only ids with `--quiet` (for shell scripts).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

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
    },
}

#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// How many devices to register and run.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Serial numbers are this prefix plus a number (default: SIM-<unix time>-).
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
    /// Broker host to dial (default: what the API says devices use).
    #[arg(long)]
    pub mqtt_host: Option<String>,
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
    },
    /// Revoke the device's secret; `rotate` issues a new one.
    Revoke {
        id: String,
    },
}

/// An error answered by the API, or a failure to reach it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{message} [{code}, HTTP {status}{}]", request_id.as_deref().map(|id| format!(", request {id}")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    #[error("cannot reach the Gema API at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("unexpected response from {url}: {reason}")]
    Unexpected { url: String, reason: String },
}

/// A small client for the admin API.
#[derive(Debug)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, Option<String>)],
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}/api/v1{path}", self.base);
        let query: Vec<(&str, String)> = query
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (*k, v)))
            .collect();
        let mut request = self.http.request(method, &url).query(&query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        let value: Value = serde_json::from_str(&text).map_err(|_| ClientError::Unexpected {
            url: url.clone(),
            reason: format!("HTTP {status}, body is not JSON"),
        })?;
        if status.is_success() {
            return Ok(value);
        }
        let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        Err(ClientError::Api {
            status: status.as_u16(),
            code: field("code").unwrap_or_else(|| "unknown".into()),
            message: field("message").unwrap_or_else(|| text.clone()),
            request_id: field("request_id"),
        })
    }
}

/// How a client command prints what the API answered.
#[derive(Debug, Clone, Copy)]
enum Output {
    Human,
    Json,
    Quiet,
}

impl From<&ApiArgs> for Output {
    fn from(args: &ApiArgs) -> Self {
        if args.json {
            Output::Json
        } else if args.quiet {
            Output::Quiet
        } else {
            Output::Human
        }
    }
}

/// Runs a client command and returns what to print on stdout.
pub async fn run_client(command: Command) -> Result<String, ClientError> {
    let (api, call): (ApiArgs, ClientCall) = match command {
        Command::Merchant { api, command } => (api, merchant_call(command)),
        Command::Outlet { api, command } => (api, outlet_call(command)),
        Command::Terminal { api, command } => (api, terminal_call(command)),
        Command::Device { api, command } => (api, device_call(command)),
        other => unreachable!("not a client command: {other:?}"),
    };
    let client = ApiClient::new(&api.api_url, api.token.clone());
    let ClientCall {
        method,
        path,
        query,
        body,
        shape,
    } = call;
    let value = client.call(method, &path, &query, body).await?;
    Ok(render(&value, shape, Output::from(&api)))
}

/// What the response is, for printing it.
#[derive(Debug, Clone, Copy)]
enum Shape {
    One(&'static str),
    List(&'static str),
    Issued,
    Bindings,
    DynamicQr,
    Status,
    Config,
    Messages,
}

struct ClientCall {
    method: Method,
    path: String,
    query: Vec<(&'static str, Option<String>)>,
    body: Option<Value>,
    shape: Shape,
}

impl ClientCall {
    fn get(path: String, shape: Shape) -> Self {
        Self {
            method: Method::GET,
            path,
            query: Vec::new(),
            body: None,
            shape,
        }
    }

    fn list(path: &str, shape: &'static str, query: Vec<(&'static str, Option<String>)>) -> Self {
        Self {
            query,
            ..Self::get(path.to_string(), Shape::List(shape))
        }
    }

    fn patch(path: String, body: Value, shape: Shape) -> Self {
        Self {
            method: Method::PATCH,
            body: Some(body),
            ..Self::get(path, shape)
        }
    }

    fn post(path: String, body: Option<Value>, shape: Shape) -> Self {
        Self {
            method: Method::POST,
            body,
            ..Self::get(path, shape)
        }
    }
}

fn page_query(limit: Option<u32>, cursor: Option<String>) -> Vec<(&'static str, Option<String>)> {
    vec![("limit", limit.map(|l| l.to_string())), ("cursor", cursor)]
}

fn merchant_call(command: MerchantCommand) -> ClientCall {
    let one = Shape::One("merchant");
    match command {
        MerchantCommand::Add { name, email, phone } => ClientCall::post(
            "/merchants".into(),
            Some(json!({ "name": name, "email": email, "phone": phone })),
            one,
        ),
        MerchantCommand::List {
            status,
            limit,
            cursor,
        } => {
            let mut query = page_query(limit, cursor);
            query.push(("status", status));
            ClientCall::list("/merchants", "merchant", query)
        }
        MerchantCommand::Show { id } => ClientCall::get(format!("/merchants/{id}"), one),
        MerchantCommand::Approve { id } => {
            ClientCall::post(format!("/merchants/{id}/approve"), None, one)
        }
        MerchantCommand::Reject { id, reason } => ClientCall::post(
            format!("/merchants/{id}/reject"),
            Some(json!({ "reason": reason })),
            one,
        ),
        MerchantCommand::Suspend { id, reason } => ClientCall::post(
            format!("/merchants/{id}/suspend"),
            Some(json!({ "reason": reason })),
            one,
        ),
    }
}

fn outlet_call(command: OutletCommand) -> ClientCall {
    match command {
        OutletCommand::Add {
            merchant,
            name,
            address,
            city,
        } => ClientCall::post(
            "/outlets".into(),
            Some(
                json!({ "merchant_id": merchant, "name": name, "address": address, "city": city }),
            ),
            Shape::One("outlet"),
        ),
        OutletCommand::List {
            merchant,
            limit,
            cursor,
        } => {
            let mut query = page_query(limit, cursor);
            query.push(("merchant_id", merchant));
            ClientCall::list("/outlets", "outlet", query)
        }
        OutletCommand::Show { id } => {
            ClientCall::get(format!("/outlets/{id}"), Shape::One("outlet"))
        }
    }
}

fn terminal_call(command: TerminalCommand) -> ClientCall {
    match command {
        TerminalCommand::Add {
            outlet,
            label,
            name,
            static_qris,
        } => ClientCall::post(
            "/terminals".into(),
            Some(json!({
                "outlet_id": outlet, "label": label, "name": name, "static_qris": static_qris,
            })),
            Shape::One("terminal"),
        ),
        TerminalCommand::DynamicQr {
            id,
            amount,
            expires_in_secs,
        } => ClientCall::post(
            format!("/terminals/{id}/dynamic-qr"),
            Some(json!({ "amount": amount, "expires_in_secs": expires_in_secs })),
            Shape::DynamicQr,
        ),
        TerminalCommand::List {
            outlet,
            limit,
            cursor,
        } => {
            let mut query = page_query(limit, cursor);
            query.push(("outlet_id", outlet));
            ClientCall::list("/terminals", "terminal", query)
        }
        TerminalCommand::Show { id } => {
            ClientCall::get(format!("/terminals/{id}"), Shape::One("terminal"))
        }
    }
}

fn device_call(command: DeviceCommand) -> ClientCall {
    let one = Shape::One("device");
    match command {
        DeviceCommand::Add {
            serial,
            model,
            firmware,
        } => ClientCall::post(
            "/devices".into(),
            Some(json!({ "serial": serial, "model": model, "firmware_version": firmware })),
            Shape::Issued,
        ),
        DeviceCommand::List {
            terminal,
            status,
            health,
            limit,
            cursor,
        } => {
            let mut query = page_query(limit, cursor);
            query.push(("terminal_id", terminal));
            query.push(("status", status));
            query.push(("health", health));
            ClientCall::list("/devices", "device", query)
        }
        DeviceCommand::Status { id } => {
            ClientCall::get(format!("/devices/{id}/status"), Shape::Status)
        }
        DeviceCommand::Config { id } => {
            ClientCall::get(format!("/devices/{id}/config"), Shape::Config)
        }
        DeviceCommand::SetConfig {
            id,
            version,
            volume,
            language,
            heartbeat_interval,
            qr_timeout,
        } => {
            let mut body = json!({ "version": version });
            for (key, value) in [
                ("volume", volume.map(Value::from)),
                ("language", language.map(Value::from)),
                ("heartbeat_interval_s", heartbeat_interval.map(Value::from)),
                ("qr_timeout_s", qr_timeout.map(Value::from)),
            ] {
                if let Some(value) = value {
                    body[key] = value;
                }
            }
            ClientCall::patch(format!("/devices/{id}/config"), body, Shape::Config)
        }
        DeviceCommand::Command {
            id,
            name,
            args,
            expires_in,
            interactive,
        } => {
            // Unparseable --args is sent as a string: the API names the field at fault.
            let args = args.map(|a| serde_json::from_str::<Value>(&a).unwrap_or(Value::String(a)));
            let mut action = json!({ "name": name });
            if let Some(args) = args {
                action["args"] = args;
            }
            ClientCall::post(
                format!("/devices/{id}/commands"),
                Some(json!({ "action": action, "expires_in_secs": expires_in,
                    "interactive": interactive })),
                Shape::One("command"),
            )
        }
        DeviceCommand::Commands {
            id,
            command_id: Some(command_id),
            ..
        } => ClientCall::get(
            format!("/devices/{id}/commands/{command_id}"),
            Shape::One("command"),
        ),
        DeviceCommand::Commands {
            id,
            command_id: None,
            limit,
            cursor,
        } => ClientCall {
            path: format!("/devices/{id}/commands"),
            ..ClientCall::list("", "command", page_query(limit, cursor))
        },
        DeviceCommand::Messages { id } => {
            ClientCall::get(format!("/devices/{id}/messages"), Shape::Messages)
        }
        DeviceCommand::Show { id } => ClientCall::get(format!("/devices/{id}"), one),
        DeviceCommand::Bind { id, terminal } => ClientCall::post(
            format!("/devices/{id}/bind"),
            Some(json!({ "terminal_id": terminal })),
            one,
        ),
        DeviceCommand::Unbind { id, kick } => ClientCall::post(
            format!(
                "/devices/{id}/unbind{}",
                if kick { "?kick=true" } else { "" }
            ),
            None,
            one,
        ),
        DeviceCommand::Bindings { id } => {
            ClientCall::get(format!("/devices/{id}/bindings"), Shape::Bindings)
        }
        DeviceCommand::Rotate { id } => ClientCall::post(
            format!("/devices/{id}/credentials/rotate"),
            None,
            Shape::Issued,
        ),
        DeviceCommand::Revoke { id } => {
            ClientCall::post(format!("/devices/{id}/credentials/revoke"), None, one)
        }
    }
}

fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn render(value: &Value, shape: Shape, output: Output) -> String {
    match output {
        Output::Json => serde_json::to_string_pretty(value).unwrap_or_default(),
        Output::Quiet => match shape {
            Shape::One(_) | Shape::Bindings => text(value, "id"),
            Shape::Status => text(&value["health"], "status"),
            Shape::Config => text(value, "version"),
            Shape::Messages => value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|m| text(m, "topic"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
            Shape::Issued => text(&value["device"], "id"),
            Shape::DynamicQr => text(&value["transaction"], "id"),
            Shape::List(_) => value["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| text(i, "id"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
        },
        Output::Human => match shape {
            Shape::One(kind) => render_one(kind, value),
            Shape::List(kind) => render_list(kind, value),
            Shape::Issued => render_issued(value),
            Shape::Bindings => render_bindings(value),
            Shape::Status => {
                let mut rows = Vec::new();
                render_fields(value, "", &mut rows);
                format!(
                    "device {} is {}\n{}",
                    text(value, "device_id"),
                    text(&value["health"], "status"),
                    aligned(&rows)
                )
            }
            Shape::Config => {
                let mut rows = Vec::new();
                render_fields(value, "", &mut rows);
                format!(
                    "config version {} ({})\n{}",
                    text(value, "version"),
                    text(value, "sync"),
                    aligned(&rows)
                )
            }
            Shape::Messages => {
                let items = value.as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    return "no messages traced".into();
                }
                items
                    .iter()
                    .map(|m| {
                        format!(
                            "{}  {:<4}  {}  {} B  {}",
                            text(m, "at"),
                            text(m, "direction"),
                            text(m, "topic"),
                            text(m, "size"),
                            text(m, "summary")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Shape::DynamicQr => format!(
                "transaction {} (order {}, {} rupiah, pending until {})\n{}",
                text(&value["transaction"], "id"),
                text(&value["transaction"], "order_ref"),
                text(&value["transaction"], "amount"),
                text(&value["transaction"], "expires_at"),
                text(value, "payload")
            ),
        },
    }
}

fn render_fields(value: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    if let Some(object) = value.as_object() {
        for (key, field) in object {
            let name = format!("{prefix}{key}");
            if prefix.is_empty() && key == "id" {
                continue; // already in the heading
            }
            if field.is_object() {
                render_fields(field, &format!("{name}."), out);
            } else {
                out.push((name, text(value, key)));
            }
        }
    }
}

fn aligned(rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("  {k:<width$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_one(kind: &str, value: &Value) -> String {
    let mut rows = Vec::new();
    render_fields(value, "", &mut rows);
    format!("{kind} {}\n{}", text(value, "id"), aligned(&rows))
}

fn render_list(kind: &str, value: &Value) -> String {
    let columns: &[&str] = match kind {
        "merchant" => &["id", "status", "name"],
        "outlet" => &["id", "merchant_id", "name"],
        "terminal" => &["id", "outlet_id", "label"],
        "command" => &["id", "status", "expires_at"],
        _ => &["id", "serial", "status", "terminal_id"],
    };
    let items = value["items"].as_array().cloned().unwrap_or_default();
    let mut lines: Vec<String> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|c| text(item, c))
                .collect::<Vec<_>>()
                .join("  ")
        })
        .collect();
    if lines.is_empty() {
        lines.push(format!("no {kind}s"));
    }
    if let Some(next) = value["next_cursor"].as_str() {
        lines.push(format!("(more: --cursor {next})"));
    }
    lines.join("\n")
}

fn render_bindings(value: &Value) -> String {
    let items = value.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return "never bound".into();
    }
    items
        .iter()
        .map(|b| {
            format!(
                "{}  terminal {}  bound {}  unbound {}",
                text(b, "id"),
                text(b, "terminal_id"),
                text(b, "bound_at"),
                text(b, "unbound_at")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_issued(value: &Value) -> String {
    let device = &value["device"];
    let c = &value["credentials"];
    let rows = vec![
        ("Broker host".to_string(), text(c, "mqtt_host")),
        (
            "Broker port".to_string(),
            format!("{} (MQTT over TLS)", text(c, "mqtt_port")),
        ),
        ("Username".to_string(), text(c, "username")),
        ("Client id".to_string(), text(c, "client_id")),
        ("Secret".to_string(), text(c, "secret")),
        ("CA certificate".to_string(), text(c, "ca_certificate_path")),
        ("Topic prefix".to_string(), text(c, "topic_prefix")),
        ("Subscribe to".to_string(), text(c, "subscribe_filter")),
        ("Publish under".to_string(), text(c, "publish_prefix")),
    ];
    format!(
        "device {} (serial {}, model {})\n\nEnter these on the device. The secret is shown only now:\n{}",
        text(device, "id"),
        text(device, "serial"),
        text(device, "model"),
        aligned(&rows)
    )
}
