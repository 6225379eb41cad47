//! Zero-configuration start, the one-time token, health, graceful stop, restart.

use crate::helpers::{Daemon, GEMA, cli};

#[tokio::test(flavor = "multi_thread")]
async fn first_start_needs_no_configuration_and_prints_the_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let token = daemon
        .token
        .clone()
        .expect("first start prints the admin token");
    assert!(dir.path().join("gema-data/gema.db").exists());
    for file in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        assert!(
            dir.path().join("gema-data/certs").join(file).exists(),
            "{file}"
        );
    }
    assert!(
        !daemon.stderr().contains(&token),
        "the token is printed on stdout, never logged"
    );

    let (status, health) = daemon.get("/health/deep").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    let names: Vec<&str> = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "database",
            "migrations",
            "server_certificate",
            "ca_certificate"
        ]
    );
    assert_eq!(
        health["checks"][1]["detail"]["pending"],
        serde_json::json!([])
    );

    let (status, _) = daemon.get("/api/v1/merchants").await;
    assert_eq!(status, 200);

    let (exit, stderr) = daemon.terminate().await;
    assert!(exit.success(), "graceful stop exits 0: {exit:?}\n{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");

    // The second start prints no token, and the first one still works.
    let mut again = Daemon::start(dir.path());
    assert_eq!(again.token, None, "{}", again.stdout());
    again.token = Some(token);
    let (status, _) = again.get("/api/v1/merchants").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_token_can_be_replaced_from_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let old = daemon.token.clone().unwrap();
    let output = std::process::Command::new(GEMA)
        .args(["admin", "rotate-bootstrap-token"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let new = stdout
        .split_whitespace()
        .find(|w| w.starts_with("gema_"))
        .expect("new token printed")
        .to_string();
    assert_ne!(new, old);

    let refused = cli(&daemon.api_url, Some(&old), &["merchant", "list"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unauthorized"));
    let accepted = cli(&daemon.api_url, Some(&new), &["merchant", "list"]);
    assert!(accepted.status.success());
}

#[test]
fn migrate_and_print_default_work_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(GEMA)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let data_arg = data.to_str().unwrap();
    let first = run(&["migrate", "--data-dir", data_arg]);
    assert!(
        first.starts_with("applied ") && !first.starts_with("applied 0"),
        "{first}"
    );
    let second = run(&["migrate", "--data-dir", data_arg]);
    assert!(second.starts_with("applied 0 migration"), "{second}");

    let default = run(&["config", "print-default"]);
    let parsed: toml::Value = toml::from_str(&default).expect("the printed default is TOML");
    assert_eq!(parsed["http"]["listen"].as_str(), Some("127.0.0.1:8080"));
}

#[test]
fn a_broken_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gema.toml");
    std::fs::write(&file, "[http]\nlisten_adress = \"127.0.0.1:1\"\n").unwrap();
    let output = std::process::Command::new(GEMA)
        .args(["serve", "--config", file.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listen_adress"), "{stderr}");
}

#[test]
fn a_mistyped_environment_override_is_an_error_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(GEMA)
        .arg("serve")
        .env("GEMA_HTTP_LISTEN", "127.0.0.1:1") // one underscore: not a section separator
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("http_listen"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_the_same_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Daemon::start(dir.path());
    let output = std::process::Command::new(GEMA)
        .arg("serve")
        .env("GEMA_HTTP__LISTEN", "127.0.0.1:0")
        .env("GEMA_METRICS__LISTEN", "127.0.0.1:0")
        .env("GEMA_MQTT__LISTEN", "127.0.0.1:0")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "the second daemon must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another gema daemon is running on"),
        "a clear error: {stderr}"
    );

    // The lock goes with its process (even a killed one): the next start succeeds.
    first.kill_hard();
    let again = Daemon::start(dir.path());
    let (status, _) = again.get("/health").await;
    assert_eq!(status, 200);
}

/// The certificate the broker serves on `addr`, verified against `ca_pem` (DER).
fn served_certificate(addr: std::net::SocketAddr, ca_pem: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::io::Cursor::new(ca_pem)) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.flush().unwrap();
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(tls.sock).unwrap();
    }
    tls.conn.peer_certificates().unwrap()[0].as_ref().to_vec()
}

/// A daemon that runs past its development certificate's renewal margin re-issues it under
/// the same CA and serves the new one without a restart; the days left are a metric. (A
/// margin of 400 days, longer than the certificate's 365, makes every check renew.)
#[tokio::test(flavor = "multi_thread")]
async fn the_development_certificate_is_renewed_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(
        dir.path(),
        &[
            ("GEMA_TLS__RENEW_BEFORE_DAYS", "400"),
            ("GEMA_TLS__RENEWAL_CHECK_INTERVAL_SECS", "1"),
        ],
    );
    let ca = std::fs::read(dir.path().join("gema-data/certs/ca.pem")).unwrap();
    let addr = daemon.mqtt_addr;
    let first = tokio::task::spawn_blocking({
        let ca = ca.clone();
        move || served_certificate(addr, &ca)
    })
    .await
    .unwrap();
    gema_gateway::testing::eventually("a renewed certificate served", || {
        let ca = ca.clone();
        let first = first.clone();
        async move {
            let now = tokio::task::spawn_blocking(move || served_certificate(addr, &ca))
                .await
                .unwrap();
            (now != first).then_some(())
        }
    })
    .await;
    let metrics = daemon.metrics().await;
    let server_days = metrics
        .lines()
        .find(|l| l.starts_with("gema_tls_certificate_days_left{certificate=\"server\"}"))
        .unwrap_or_else(|| panic!("the days-left metric is exported:\n{metrics}"));
    let days: f64 = server_days.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((364.0..=365.0).contains(&days), "{server_days}");
    daemon
        .until_logged("re-issued the development server certificate before its expiry")
        .await;
}
