//! The crash loop in its short form (issue 14): `gema bench crash-loop` runs the real binary
//! under payment load from simulated soundboxes and kills it with SIGKILL at random moments,
//! restarting it each time; it fails if any accepted callback lost its paid transaction,
//! its ledger postings or its one acknowledged announcement, or if SQLite's integrity check
//! does not pass. These tests also require that no device heard an announcement twice:
//! the broker PUBACKs a device's ack only once its result is committed, so an ack the
//! daemon died holding is re-sent by the device and recorded before the replay. The long
//! form (100 kills per backend) and its figures are in the README.

use crate::helpers::GEMA;

/// Runs the crash loop; returns its report (stdout), failing the test if it failed.
fn crash_loop(kills: &str, database_url: Option<&str>) -> String {
    let mut command = std::process::Command::new(GEMA);
    command.args([
        "bench",
        "crash-loop",
        "--kills",
        kills,
        "--devices",
        "10",
        "--rate",
        "30",
    ]);
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    let output = command
        .env_remove("RUST_LOG")
        .output()
        .expect("run the crash loop");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the crash loop failed:\n{stdout}\n{stderr}"
    );
    stdout
}

fn count(report: &str, label: &str) -> usize {
    report
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{label} missing from the report:\n{report}"))
}

fn assert_nothing_lost(report: &str) {
    assert_eq!(count(report, "lost"), 0, "{report}");
    assert_eq!(
        count(report, "duplicates delivered"),
        0,
        "an announcement was heard twice:\n{report}"
    );
    let accepted = count(report, "callbacks accepted (2xx)");
    assert!(accepted > 0, "{report}");
    assert_eq!(count(report, "transactions paid"), accepted, "{report}");
    assert_eq!(
        count(report, "announcements delivered (acked)"),
        accepted,
        "{report}"
    );
}

#[test]
fn twenty_kills_on_sqlite_lose_nothing_and_announce_nothing_twice() {
    let report = crash_loop("20", None);
    assert_nothing_lost(&report);
    assert!(
        report.contains("integrity_check                     ok"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_kills_on_postgresql_lose_nothing_and_announce_nothing_twice() {
    let Some(database) = crate::cluster::database().await else {
        return;
    };
    let report = tokio::task::spawn_blocking(move || crash_loop("20", Some(&database)))
        .await
        .unwrap();
    assert_nothing_lost(&report);
}
