//! `gema export` against the real daemon: queue, a progress bar while it waits, the CSV
//! downloaded; rows from real signed payments.

use crate::helpers::Daemon;
use crate::payments::{KEY, notification, notify, order};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gema_export_waits_with_a_progress_bar_and_downloads_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(dir.path(), &[("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY)]);
    let terminal = daemon.approved_terminal("A01").await;
    for (n, amount) in [(1, 25_000), (2, 10_000), (3, 7_500)] {
        let order_ref = format!("EXP-E2E-{n}");
        order(&daemon, &terminal, &order_ref, amount).await;
        let (status, body) = notify(
            &daemon,
            &notification(&order_ref, "settlement", &format!("{amount}.00")),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    let target = dir.path().join("ledger.csv");
    let output = daemon.cli(&[
        "export",
        "ledger-entries",
        "--wait",
        "--output",
        target.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "gema export failed:\n{stderr}");
    assert!(stderr.contains("100% 9/9 rows  done"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("9 rows"), "{stdout}");

    let text = std::fs::read_to_string(&target).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "id,created_at,merchant_id,transaction_id,entry_type,amount,external_id,reverses_id,adjustment_id"
        )
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 9);
    let gross: Vec<&str> = rows
        .iter()
        .filter(|r| r[4] == "gross_income")
        .map(|r| r[5])
        .collect();
    assert_eq!(gross, ["25000", "10000", "7500"]);
    assert!(rows.iter().all(|r| r[1].ends_with("+07:00")), "{text}");

    // Without --wait it only queues, and -q prints the job's id; the job still runs.
    let id = daemon.cli_ok(&["export", "transactions", "--status", "paid", "-q"]);
    assert!(id.starts_with("exp_"), "{id}");
    let path = format!("/api/v1/exports/{id}");
    let job = gema_gateway::testing::eventually_within(
        "the queued export done",
        // The job's claim, rows and file are database writes: the shared, generous bound,
        // not 10 s, on a loaded CI machine.
        gema_gateway::testing::DEFAULT_DEADLINE,
        || {
            let path = path.clone();
            let daemon = &daemon;
            async move {
                let (_, job) = daemon.get(&path).await;
                Ok::<_, ()>((job["status"] == "done").then_some(job))
            }
        },
    )
    .await;
    assert_eq!(job["rows_total"], 3);
    assert!(
        dir.path()
            .join("gema-data/exports")
            .join(format!("{id}.csv"))
            .exists()
    );

    // A refused request is the API's message, naming the field.
    let bad = daemon.cli(&["export", "ledger_entries", "--status", "paid"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("status"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
