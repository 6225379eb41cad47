//! `gema doctor` against real ports, a real data directory and a real database: a fresh
//! configuration that is ready, a port another process holds, a database a daemon has
//! migrated, a certificate that does not name the host devices are told to use, and no
//! provider secret. `gema health` against a running daemon.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use crate::helpers::{Daemon, GEMA};

const SECRET: (&str, &str) = (
    "GEMA_PAYMENTS__GENERIC__SECRET",
    "a-long-generic-callback-secret",
);

/// `gema doctor` in `dir` on free loopback ports (unless `env` says otherwise).
fn doctor(dir: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(GEMA);
    command
        .arg("doctor")
        .current_dir(dir)
        .env_remove("GEMA_DATABASE__URL")
        .env_remove("RUST_LOG");
    for (key, port) in [
        ("GEMA_HTTP__LISTEN", free_port()),
        ("GEMA_METRICS__LISTEN", free_port()),
        ("GEMA_MQTT__LISTEN", free_port()),
    ] {
        command.env(key, format!("127.0.0.1:{port}"));
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let Output { status, stdout, .. } = command.output().expect("run gema doctor");
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn line<'a>(report: &'a str, start: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{report}"))
}

#[test]
fn a_fresh_configuration_is_ready_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ready, report) = doctor(dir.path(), &[SECRET]);
    assert!(ready, "{report}");
    assert!(
        line(&report, "ok    database").contains("does not exist yet"),
        "{report}"
    );
    assert!(
        line(&report, "ok    secrets").contains("payments.generic.secret"),
        "{report}"
    );
    assert!(line(&report, "ok    clock").contains("(UTC)"), "{report}");
    assert!(report.contains("\nready"), "{report}");
    // Nothing written: the first start creates the data directory, not the doctor.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_taken_port_and_a_missing_secret_are_problems_with_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ready, report) = doctor(dir.path(), &[("GEMA_MQTT__LISTEN", &addr)]);
    assert!(!ready, "{report}");
    assert!(
        line(&report, "FAIL  ports").contains(&format!("mqtt.listen {addr} is in use")),
        "{report}"
    );
    assert!(
        report.contains("FAIL  secrets       no payment provider's secret"),
        "{report}"
    );
    assert!(
        report.contains("fix: set payments.midtrans.server_key"),
        "{report}"
    );
    assert!(
        report.contains("not ready: 2 problem(s) to fix"),
        "{report}"
    );

    // Two listeners on one port.
    let port = free_port().to_string();
    let (ready, report) = doctor(
        dir.path(),
        &[
            SECRET,
            ("GEMA_HTTP__LISTEN", &format!("127.0.0.1:{port}")),
            ("GEMA_METRICS__LISTEN", &format!("127.0.0.1:{port}")),
        ],
    );
    assert!(!ready, "{report}");
    assert!(
        line(&report, "FAIL  ports").contains("uses the port of http.listen"),
        "{report}"
    );
}

#[tokio::test]
async fn a_served_data_directory_is_checked_and_health_answers() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());

    let health = Command::new(GEMA)
        .args(["health", "--url", &format!("{}/health", daemon.api_url)])
        .output()
        .unwrap();
    assert!(health.status.success(), "{health:?}");
    let (status, _) = daemon.terminate().await;
    assert!(status.success());
    // Nothing listens on a port just found free.
    let stopped = Command::new(GEMA)
        .args([
            "health",
            "--url",
            &format!("http://127.0.0.1:{}/health", free_port()),
        ])
        .output()
        .unwrap();
    assert!(!stopped.status.success(), "nothing listens any more");

    let (ready, report) = doctor(dir.path(), &[SECRET]);
    assert!(ready, "{report}");
    assert!(
        line(&report, "ok    database").contains("answers; schema at version"),
        "{report}"
    );
    assert!(
        line(&report, "ok    certificates  development").contains("more days"),
        "{report}"
    );

    // The operator's certificate (here the development one) must name mqtt.public_host.
    let certs = dir.path().join("gema-data/certs");
    let (cert, key, ca) = (
        certs.join("server.pem"),
        certs.join("server.key"),
        certs.join("ca.pem"),
    );
    let tls = [
        SECRET,
        ("GEMA_TLS__CERT", cert.to_str().unwrap()),
        ("GEMA_TLS__KEY", key.to_str().unwrap()),
        ("GEMA_TLS__CA_CERT", ca.to_str().unwrap()),
    ];
    let (ready, report) = doctor(dir.path(), &tls);
    assert!(ready, "{report}");
    assert!(
        line(&report, "ok    certificates  tls.cert").contains("more days"),
        "{report}"
    );
    let mut elsewhere = tls.to_vec();
    elsewhere.push(("GEMA_MQTT__PUBLIC_HOST", "gema.example.id"));
    let (ready, report) = doctor(dir.path(), &elsewhere);
    assert!(!ready, "{report}");
    assert!(
        line(&report, "FAIL  certificates")
            .contains("does not name mqtt.public_host gema.example.id"),
        "{report}"
    );
}

#[tokio::test]
async fn on_postgresql_the_schema_and_the_clock_are_compared_with_the_server() {
    let Some(database) = crate::cluster::database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ready, report) = doctor(dir.path(), &[SECRET, ("GEMA_DATABASE__URL", &database)]);
    assert!(ready, "{report}");
    // A fresh database: every migration pending, applied at the first start.
    assert!(
        line(&report, "WARN  database").contains("migration(s) pending"),
        "{report}"
    );
    assert!(
        line(&report, "ok    clock").contains("ms from the database server's clock"),
        "{report}"
    );
}
