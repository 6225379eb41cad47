//! `gema admin create-user` and `gema admin reset-password`: user management straight on
//! the daemon's database, for the first admin and for recovery.

use std::io::BufRead;

use anyhow::Context;
use gema_gateway::auth::{Auth, UserInput};
use gema_gateway::credentials::SecretString;

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
            let user = auth
                .create_user(UserInput {
                    email,
                    name,
                    role,
                    merchant_id,
                    password: read_password()?,
                })
                .await
                .context("creating the user")?;
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
            let user = auth
                .reset_password(&email, read_password()?)
                .await
                .context("resetting the password")?;
            if disable_totp {
                store
                    .disable_totp(&user.id)
                    .await
                    .context("turning TOTP off")?;
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
