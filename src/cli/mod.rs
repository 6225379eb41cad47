//! The command line: the daemon's own subcommands (`serve`, `migrate`, `config`, `admin`)
//! and the client commands technicians and operators run against a daemon's admin API
//! (`merchant`, `outlet`, `terminal`, `device`, `claim`, `export`, `billing import`). Client commands print a readable summary,
//! or the API's JSON with `--json`, or only ids with `--quiet` (for shell scripts).
//!
//! `args` is the clap tree, `client` the admin-API client and the table of what each client
//! command asks the API, `render` how the answer is printed. This module only ties the
//! three together in [`run_client`]; `export` (queue, follow with a progress bar,
//! download) and `billing` (the customer import: check, then import) make more than one
//! call; `provisioning` draws `device add|rotate --qr/--qr-png` from the issued credentials.

mod args;
mod billing;
mod claim;
mod client;
mod device_cert;
mod export;
mod provisioning;
mod render;

pub use args::{
    AdminCommand, ApiArgs, BackupArgs, BenchCommand, BillingCommand, ClaimCommand, Cli, Command,
    ConfigCommand, DaemonArgs, DeviceCommand, ExportArgs, HealthArgs, MerchantCommand,
    OutletCommand, QrArgs, RestoreArgs, SimArgs, TerminalCommand,
};
pub use client::{ApiClient, ClientError};

use client::{ClientCall, device_call, merchant_call, outlet_call, terminal_call};
use provisioning::QrRequest;
use render::{Output, render};

/// Runs a client command and returns what to print on stdout.
pub async fn run_client(command: Command) -> Result<String, ClientError> {
    let mut qr = QrArgs::default();
    let (api, call): (ApiArgs, ClientCall) = match command {
        Command::Merchant { api, command } => (api, merchant_call(command)),
        Command::Outlet { api, command } => (api, outlet_call(command)),
        Command::Terminal { api, command } => (api, terminal_call(command)),
        Command::Device {
            api,
            command: DeviceCommand::Cert { id, csr, out },
        } => return device_cert::run_device_cert(api, id, csr, out).await,
        Command::Device { api, command } => {
            if let DeviceCommand::Add { qr: asked, .. } | DeviceCommand::Rotate { qr: asked, .. } =
                &command
            {
                qr = asked.clone();
            }
            (api, device_call(command))
        }
        Command::Export { api, export } => return export::run_export(api, export).await,
        Command::Billing { api, command } => return billing::run_billing(api, command).await,
        Command::Claim { api, command } => return claim::run_claim(api, command).await,
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
    // Before the call: a refused flag or an unwritable PNG path must not cost a secret.
    let qr = QrRequest::prepare(qr, Output::from(&api))?;
    let value = match client.call(method, &path, &query, body).await {
        Ok(value) => value,
        Err(e) => {
            if let Some(qr) = qr {
                qr.abandon();
            }
            return Err(e);
        }
    };
    let printed = render(&value, shape, Output::from(&api));
    let Some(qr) = qr else {
        return Ok(printed);
    };
    match qr.finish(&value) {
        Ok(extra) if extra.is_empty() => Ok(printed),
        Ok(extra) => Ok(format!("{printed}\n\n{extra}")),
        Err(e) => {
            // The secret exists now and is shown only in this answer: print it before
            // reporting that its QR code could not be made.
            println!("{printed}");
            Err(e)
        }
    }
}
