//! Users through the shipped binary: `gema admin create-user` disables the bootstrap token,
//! login works over real HTTP (with the real peer address in the audit log), and
//! `gema admin reset-password` replaces a password.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::helpers::{Daemon, GEMA};

/// Runs `gema admin <args>` in `dir` with `password` on stdin; returns stdout.
fn admin(dir: &std::path::Path, args: &[&str], password: &str) -> String {
    let output = admin_as(dir, args, password, Some("amelia"));
    assert!(
        output.status.success(),
        "gema admin {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(!stdout.contains(password), "the password is not echoed");
    stdout
}

/// Runs `gema admin <args>` in `dir` with `password` on stdin, as OS user `user` (`$USER`;
/// `None`: neither `$USER` nor `$LOGNAME` set).
fn admin_as(
    dir: &std::path::Path,
    args: &[&str],
    password: &str,
    user: Option<&str>,
) -> std::process::Output {
    let mut command = Command::new(GEMA);
    match user {
        Some(user) => command.env("USER", user),
        None => command.env_remove("USER").env_remove("LOGNAME"),
    };
    let mut child = command
        .arg("admin")
        .args(args)
        .current_dir(dir)
        // The production work factor is 600,000 rounds; a debug build need not pay it.
        .env("GEMA_AUTH__PASSWORD_ITERATIONS", "10000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_admin_comes_from_the_cli_and_retires_the_bootstrap_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_with(dir.path(), &[("GEMA_AUTH__PASSWORD_ITERATIONS", "10000")]);
    let (status, _) = daemon.get("/api/v1/merchants").await;
    assert_eq!(status, 200);

    let out = admin(
        dir.path(),
        &[
            "create-user",
            "--email",
            "root@gema.test",
            "--name",
            "Root",
            "--role",
            "admin",
        ],
        "sambal-terasi-pedas",
    );
    assert!(
        out.contains("bootstrap admin token is now disabled"),
        "{out}"
    );
    let (status, body) = daemon.get("/api/v1/merchants").await;
    assert_eq!(status, 401, "{body}");
    daemon.until_logged("bootstrap admin token refused").await;
    let rotate = Command::new(GEMA)
        .args(["admin", "rotate-bootstrap-token"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        !rotate.status.success(),
        "no new bootstrap token once an admin exists"
    );
    assert!(String::from_utf8_lossy(&rotate.stderr).contains("reset-password"));

    let (status, pair) = daemon.login("root@gema.test", "sambal-terasi-pedas").await;
    assert_eq!(status, 200, "{pair}");
    daemon.token = Some(pair["access_token"].as_str().unwrap().to_string());
    let (status, _) = daemon.get("/api/v1/merchants").await;
    assert_eq!(status, 200);
    let (_, audit) = daemon.get("/api/v1/audit-logs?action=auth.login").await;
    assert_eq!(audit["items"][0]["outcome"], "ok", "{audit}");
    assert_eq!(
        audit["items"][0]["source"], "127.0.0.1",
        "the real peer address"
    );

    // Turn on TOTP; then the password alone no longer logs in.
    let (status, setup) = daemon.post("/api/v1/auth/totp/setup", json!({})).await;
    assert_eq!(status, 200, "{setup}");
    let secret =
        gema_gateway::auth::totp::base32_decode(setup["secret"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let code = format!("{:06}", gema_gateway::auth::totp::totp(&secret, now, 6));
    let (status, codes) = daemon
        .post("/api/v1/auth/totp/enable", json!({ "code": code }))
        .await;
    assert_eq!(status, 200, "{codes}");
    let (status, _) = daemon.login("root@gema.test", "sambal-terasi-pedas").await;
    assert_eq!(status, 401, "TOTP is on");

    let out = admin(
        dir.path(),
        &[
            "reset-password",
            "--email",
            "root@gema.test",
            "--disable-totp",
        ],
        "rendang-padang-enak",
    );
    assert!(out.contains("TOTP of root@gema.test is off"), "{out}");
    let (status, _) = daemon.get("/api/v1/merchants").await;
    assert_eq!(status, 401, "a password reset ends the user's sessions");
    let (status, _) = daemon.login("root@gema.test", "sambal-terasi-pedas").await;
    assert_eq!(status, 401);
    let (status, _) = daemon.login("root@gema.test", "rendang-padang-enak").await;
    assert_eq!(status, 200);
    let stderr = daemon.stderr();
    for secret in [
        "sambal-terasi-pedas",
        "rendang-padang-enak",
        pair["refresh_token"].as_str().unwrap(),
    ] {
        assert!(
            !stderr.contains(secret),
            "a secret reached the daemon's logs"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_s_direct_writes_leave_audit_rows_naming_the_os_user() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("gema-data")).unwrap();
    admin(
        dir.path(),
        &[
            "create-user",
            "--email",
            "root@gema.test",
            "--name",
            "Root",
            "--role",
            "admin",
        ],
        "sambal-terasi-pedas",
    );
    let reset = admin_as(
        dir.path(),
        &["reset-password", "--email", "root@gema.test"],
        "rendang-padang-enak",
        None,
    );
    assert!(reset.status.success(), "{reset:?}");
    let unknown = admin_as(
        dir.path(),
        &["reset-password", "--email", "nobody@gema.test"],
        "rendang-padang-enak",
        Some("amelia"),
    );
    assert!(!unknown.status.success());

    let url = format!(
        "sqlite://{}",
        dir.path().join("gema-data/gema.db").display()
    );
    let store = gema_store::connect(&url, &gema_store::ConnectOptions::default())
        .await
        .unwrap();
    let rows = store
        .list_audit(
            &gema_store::AuditFilter::default(),
            &gema_store::PageRequest::first(50),
        )
        .await
        .unwrap()
        .items;
    let summary: Vec<(&str, &str, Option<&str>, &str)> = rows
        .iter()
        .map(|r| {
            (
                r.actor.as_str(),
                r.action.as_str(),
                r.target.as_deref(),
                r.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(summary.len(), 3, "{rows:#?}");
    assert_eq!(
        summary[0],
        (
            "cli:amelia",
            "user.create",
            Some("email:root@gema.test"),
            "ok"
        )
    );
    // Without $USER and $LOGNAME, the uid.
    assert!(summary[1].0.starts_with("cli:uid:"), "{rows:#?}");
    assert_eq!(
        (summary[1].1, summary[1].2, summary[1].3),
        ("user.reset_password", Some("email:root@gema.test"), "ok")
    );
    assert_eq!(
        summary[2],
        (
            "cli:amelia",
            "user.reset_password",
            Some("email:nobody@gema.test"),
            "failed"
        )
    );
    for row in &rows {
        let after = row.after_json.as_deref().unwrap_or_default();
        for secret in ["sambal-terasi-pedas", "rendang-padang-enak"] {
            assert!(!after.contains(secret), "a password in the audit log");
        }
    }
    let created: serde_json::Value =
        serde_json::from_str(rows[0].after_json.as_deref().unwrap()).unwrap();
    assert_eq!(created["email"], "root@gema.test");
}
