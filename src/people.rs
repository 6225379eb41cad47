//! `gema admin create-user` and `gema admin reset-password`: user management straight on
//! the daemon's database, for the first admin and for recovery; and [`audited`], which gives
//! every such command (these and `rotate-bootstrap-token`) its audit row, actor
//! `cli:<OS user>`, in the same transaction as its write.

use std::future::Future;
use std::io::BufRead;

use anyhow::Context;
use gema_gateway::auth::{Auth, UserInput};
use gema_gateway::credentials::SecretString;
use gema_store::{NewAuditEntry, Store};

use crate::cli::AdminCommand;
use crate::config::Config;

/// Runs a user-management subcommand. The password is the first line of standard input.
pub async fn admin_command(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let store = crate::app::open_store(config).await?;
    store.migrate().await.context("applying migrations")?;
    let auth = Auth::new(store.clone(), config.auth.settings());
    match command {
        AdminCommand::CreateUser {
            email,
            name,
            role,
            merchant_id,
        } => {
            let had_admin = store.count_admin_users().await? > 0;
            let password = read_password()?;
            let target = format!("email:{email}");
            let user = audited(
                store.as_ref(),
                "user.create",
                target,
                async {
                    auth.create_user(UserInput {
                        email,
                        name,
                        role,
                        merchant_id,
                        password,
                    })
                    .await
                    .context("creating the user")
                },
                |user| serde_json::json!({ "id": user.id, "email": user.email, "role": user.role }),
            )
            .await?;
            println!("created user {} ({}, {})", user.id, user.email, user.role);
            if !had_admin && store.count_admin_users().await? > 0 {
                println!(
                    "the bootstrap admin token is now disabled: log in with \
                     POST /api/v1/auth/login"
                );
            }
        }
        AdminCommand::ResetPassword {
            email,
            disable_totp,
        } => {
            let password = read_password()?;
            let user = audited(
                store.as_ref(),
                "user.reset_password",
                format!("email:{email}"),
                async {
                    let user = auth
                        .reset_password(&email, password)
                        .await
                        .context("resetting the password")?;
                    if disable_totp {
                        store
                            .disable_totp(&user.id)
                            .await
                            .context("turning TOTP off")?;
                    }
                    Ok(user)
                },
                |user| serde_json::json!({ "id": user.id, "totp_disabled": disable_totp }),
            )
            .await?;
            if disable_totp {
                println!("TOTP of {} is off; its recovery codes are void", user.email);
            }
            println!(
                "password of {} ({}) replaced; its sessions are ended",
                user.email, user.id
            );
        }
        AdminCommand::RotateBootstrapToken => {
            anyhow::bail!("rotate-bootstrap-token is handled by the daemon's main")
        }
    }
    Ok(())
}

/// Runs a command that writes to the database directly, with its audit row: the first
/// write transaction of `work` carries it (`gema_store::audit_scope`), so the write and its
/// row commit together; then the row gets the outcome (`ok`, or `failed` and the error) and
/// `after` (never a secret). A command that wrote nothing still leaves a row of the attempt.
pub async fn audited<T>(
    store: &dyn Store,
    action: &str,
    target: String,
    work: impl Future<Output = anyhow::Result<T>>,
    after: impl FnOnce(&T) -> serde_json::Value,
) -> anyhow::Result<T> {
    let entry = NewAuditEntry {
        at_ms: now_ms(),
        actor: cli_actor(),
        action: action.to_owned(),
        target: Some(target),
        source: Some("cli".to_owned()),
        ..Default::default()
    };
    let (result, written) = gema_store::audit_scope(entry.clone(), work).await;
    let (outcome, after) = match &result {
        Ok(value) => ("ok", after(value)),
        Err(err) => ("failed", serde_json::json!({ "error": format!("{err:#}") })),
    };
    let closing = NewAuditEntry {
        outcome: outcome.to_owned(),
        after_json: Some(after.to_string()),
        ..entry
    };
    if let Err(err) = store.close_audit(written.as_deref(), closing).await {
        // The write (if any) committed with its row; only the outcome is missing.
        eprintln!("warning: recording the command's outcome in the audit log failed: {err}");
    }
    result
}

/// `cli:<OS user>` from `$USER` or `$LOGNAME`, else `cli:uid:<uid>` (the owner of this
/// process's `/proc` entry), else `cli:unknown`.
pub fn cli_actor() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(name) = std::env::var(var)
            && !name.trim().is_empty()
        {
            return format!("cli:{}", name.trim());
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(proc_self) = std::fs::metadata("/proc/self") {
            return format!("cli:uid:{}", proc_self.uid());
        }
    }
    "cli:unknown".to_owned()
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

fn read_password() -> anyhow::Result<SecretString> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        anyhow::bail!(
            "no password on standard input (pipe it in, e.g. `read -s P; echo \"$P\" | gema admin …`)"
        );
    }
    Ok(SecretString::new(password))
}
