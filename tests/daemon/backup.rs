//! Backup and restore with the real binary: `gema backup` taken while signed payment
//! callbacks keep arriving, `gema restore --verify` (the drill), and `gema restore --from`
//! into a fresh data directory (and database) that a new daemon then serves: every
//! callback acknowledged before the backup began is there. Also what a restore refuses and
//! what the drill catches: a tampered file, a manifest whose figures differ, a malformed
//! manifest.
//!
//! The PostgreSQL test needs a cluster (`scripts/with-postgres` exports its URL in
//! `GEMA_TEST_POSTGRES_URL`); without one it is skipped, loudly; under `CI=true` a missing
//! cluster is a failure.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use gema_gateway::testing::eventually;
use serde_json::Value;

use crate::helpers::{Daemon, GEMA};
use crate::payments::{KEY, notification, order};

/// Runs `gema` with `args` and `env` (nothing else of the test's `GEMA_*` environment).
fn gema(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(GEMA);
    command
        .args(args)
        .env_remove("GEMA_DATABASE__URL")
        .env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run gema")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn gema_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = gema(args, env);
    assert!(
        output.status.success(),
        "gema {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// A callback the daemon answered 200, and when.
struct Acked {
    transaction: String,
    at: Instant,
}

/// Keeps paying until `stop` is set, from four tasks: each creates an order on `terminal`
/// (as the backend would) and posts its signed settlement callback; records the callbacks
/// answered 200. The load is bounded by `stop`, not by a number of orders, so it is still
/// running however long the backup takes.
fn pay_continuously(
    daemon: &Daemon,
    terminal: &str,
    tag: &str,
    stop: Arc<AtomicBool>,
    acked: Arc<std::sync::Mutex<Vec<Acked>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let token = daemon.token.clone().expect("the bootstrap token");
    (0..4)
        .map(|lane| {
            let (api_url, token, terminal, tag, stop, acked) = (
                daemon.api_url.clone(),
                token.clone(),
                terminal.to_owned(),
                tag.to_owned(),
                stop.clone(),
                acked.clone(),
            );
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let notify = format!("{api_url}/api/v1/payments/midtrans/notification");
                let create = format!("{api_url}/api/v1/transactions");
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let order_ref = format!("ORD-{tag}-{lane}-{i}");
                    let amount: i64 = 10_000 + i;
                    let body = serde_json::json!(
                        { "terminal_id": terminal, "order_ref": order_ref, "amount": amount }
                    );
                    // The daemon keeps serving while the backup runs: an order it refuses
                    // fails the test (the task's panic surfaces where it is joined).
                    let created = client
                        .post(&create)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .expect("create an order");
                    let status = created.status().as_u16();
                    let created: Value = created.json().await.expect("the order as JSON");
                    assert_eq!(status, 201, "{created}");
                    let transaction = created["id"].as_str().unwrap_or_default().to_owned();
                    let body = notification(&order_ref, "settlement", &format!("{amount}.00"));
                    let Ok(response) = client.post(&notify).json(&body).send().await else {
                        continue;
                    };
                    if response.status().as_u16() == 200 {
                        acked.lock().unwrap().push(Acked {
                            transaction,
                            at: Instant::now(),
                        });
                    }
                }
            })
        })
        .collect()
}

/// `count` pending orders on `terminal`: `(order ref, transaction id, amount)`.
async fn orders(
    daemon: &Daemon,
    terminal: &str,
    tag: &str,
    count: i64,
) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for i in 0..count {
        let order_ref = format!("ORD-{tag}-{i}");
        let amount = 10_000 + i;
        let id = order(daemon, terminal, &order_ref, amount).await;
        out.push((order_ref, id, amount));
    }
    out
}

/// Takes a backup of the daemon's database (`env` names it, or the data directory `data`)
/// while callbacks keep arriving; returns the backup's path and the transactions whose
/// callbacks were acknowledged before the backup began.
async fn backup_under_load(
    daemon: &Daemon,
    data: &Path,
    out: &Path,
    env: &[(&str, &str)],
    tag: &str,
) -> (PathBuf, Vec<String>) {
    let terminal = daemon.approved_terminal("A01").await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<Acked>::new()));
    let load = pay_continuously(daemon, &terminal, tag, stop.clone(), acked.clone());
    {
        let acked = acked.clone();
        eventually("the first 40 callbacks acknowledged", move || {
            let n = acked.lock().unwrap().len();
            async move { (n >= 40).then_some(()) }
        })
        .await;
    }

    let began = Instant::now();
    let args: Vec<String> = vec![
        "backup".into(),
        "--out".into(),
        path_str(out).into(),
        "--data-dir".into(),
        path_str(data).into(),
    ];
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let stdout = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        gema_ok(&args, &env)
    })
    .await
    .unwrap();
    let ended = Instant::now();
    let backup = PathBuf::from(stdout.trim());
    assert!(backup.join("manifest.json").is_file(), "{stdout}");

    // The daemon kept serving: callbacks are still acknowledged after the backup.
    {
        let acked = acked.clone();
        eventually("a callback acknowledged after the backup", move || {
            let after = acked.lock().unwrap().iter().any(|a| a.at > ended);
            async move { after.then_some(()) }
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    let acked = acked.lock().unwrap();
    let before: Vec<String> = acked
        .iter()
        .filter(|a| a.at < began)
        .map(|a| a.transaction.clone())
        .collect();
    let during = acked
        .iter()
        .filter(|a| a.at >= began && a.at <= ended)
        .count();
    println!(
        "{} callbacks acknowledged before the backup began, {during} while it ran, {} in all",
        before.len(),
        acked.len()
    );
    assert!(before.len() >= 40);
    (backup, before)
}

/// Every transaction in `paid` is paid in the database `daemon` serves.
async fn assert_all_paid(daemon: &Daemon, paid: &[String]) {
    for id in paid {
        let (status, t) = daemon.get(&format!("/api/v1/transactions/{id}")).await;
        assert_eq!(status, 200, "{id}: {t}");
        assert_eq!(
            t["status"], "paid",
            "{id} acknowledged before the backup: {t}"
        );
    }
}

fn manifest(backup: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_backup_under_payment_load_restores_every_callback_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gema-data");
    let out = dir.path().join("backups");
    let daemon = Daemon::start_with(dir.path(), &[("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY)]);
    let (backup, before) = backup_under_load(&daemon, &data, &out, &[], "SQ").await;

    let m = manifest(&backup);
    assert_eq!(m["backend"], "sqlite");
    assert!(m["schema_version"].as_i64().unwrap() >= 13, "{m}");
    assert!(
        m["row_counts"]["transactions"].as_i64().unwrap() >= before.len() as i64,
        "{m}"
    );
    let paid = m["row_counts"]["ledger_entries"].as_i64().unwrap();
    assert!(paid >= 3 * before.len() as i64, "{m}");
    assert!(m["files"]["database.sqlite"]["sha256"].is_string(), "{m}");
    assert_eq!(m["files"]["database.sqlite"]["mode"], 0o600, "{m}");
    assert!(m["files"]["certs/server.key"].is_object(), "{m}");
    assert_eq!(m["files"]["certs/server.key"]["mode"], 0o600);

    let report = gema_ok(&["restore", "--verify", path_str(&backup)], &[]);
    assert!(report.contains("verification passed"), "{report}");
    assert!(report.contains("ledger totals: all"), "{report}");

    let fresh = tempfile::tempdir().unwrap();
    let fresh_data = fresh.path().join("gema-data");
    gema_ok(
        &[
            "restore",
            "--from",
            path_str(&backup),
            "--data-dir",
            path_str(&fresh_data),
        ],
        &[],
    );
    assert_eq!(
        std::fs::read(fresh_data.join("certs/ca.pem")).unwrap(),
        std::fs::read(data.join("certs/ca.pem")).unwrap()
    );
    #[cfg(unix)]
    assert_eq!(mode(&fresh_data.join("certs/server.key")), 0o600);

    let mut restored = Daemon::start_with(
        fresh.path(),
        &[("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY)],
    );
    // The restored database holds the original's admin token.
    assert_eq!(
        restored.token, None,
        "no new bootstrap token on a restored database"
    );
    restored.token = daemon.token.clone();
    assert_all_paid(&restored, &before).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgresql_backup_under_payment_load_restores_every_callback_acknowledged_before_it() {
    let Some(database) = crate::cluster::database().await else {
        return;
    };
    let cluster = std::env::var("GEMA_TEST_POSTGRES_URL").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gema-data");
    let out = dir.path().join("backups");
    let env = [
        ("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY),
        ("GEMA_DATABASE__URL", database.as_str()),
    ];
    let daemon = Daemon::start_with(dir.path(), &env);
    let db_env = [("GEMA_DATABASE__URL", database.as_str())];
    let (backup, before) = backup_under_load(&daemon, &data, &out, &db_env, "PG").await;

    let m = manifest(&backup);
    assert_eq!(m["backend"], "postgres");
    assert!(
        m["postgres"]["server_version_num"].as_i64().unwrap() > 0,
        "{m}"
    );
    assert!(m["files"]["database.pgdump"]["sha256"].is_string(), "{m}");
    assert!(
        m["row_counts"]["transactions"].as_i64().unwrap() >= before.len() as i64,
        "{m}"
    );

    // The drill restores into a scratch database on the configured server and drops it.
    let report = gema_ok(&["restore", "--verify", path_str(&backup)], &db_env);
    assert!(report.contains("verification passed"), "{report}");
    assert!(report.contains("scratch database gema_verify_"), "{report}");
    assert!(report.contains("dropped"), "{report}");

    // Restore into an empty database and a fresh data directory.
    let target = gema_store::testing::fresh_postgres_database(&cluster).await;
    let fresh = tempfile::tempdir().unwrap();
    let fresh_data = fresh.path().join("gema-data");
    let target_env = [("GEMA_DATABASE__URL", target.as_str())];
    gema_ok(
        &[
            "restore",
            "--from",
            path_str(&backup),
            "--data-dir",
            path_str(&fresh_data),
        ],
        &target_env,
    );
    // The database holds tables now: a second restore is refused.
    let again = gema(
        &[
            "restore",
            "--from",
            path_str(&backup),
            "--data-dir",
            path_str(&fresh_data),
        ],
        &target_env,
    );
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("refusing to restore"),
        "{}",
        text(&again.stderr)
    );

    let mut restored = Daemon::start_with(
        fresh.path(),
        &[
            ("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY),
            ("GEMA_DATABASE__URL", target.as_str()),
        ],
    );
    restored.token = daemon.token.clone();
    assert_all_paid(&restored, &before).await;
}

/// Copies a backup directory (one level of subdirectories, as backups have).
fn copy_backup(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("certs")).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            for inner in std::fs::read_dir(entry.path()).unwrap() {
                let inner = inner.unwrap();
                std::fs::copy(
                    inner.path(),
                    to.join(entry.file_name()).join(inner.file_name()),
                )
                .unwrap();
            }
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_refuses_what_it_would_overwrite_and_the_drill_catches_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gema-data");
    let daemon = Daemon::start_with(dir.path(), &[("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY)]);
    let terminal = daemon.approved_terminal("A01").await;
    for (order_ref, _, amount) in orders(&daemon, &terminal, "RF", 3).await {
        let body = notification(&order_ref, "settlement", &format!("{amount}.00"));
        let (status, reply) = crate::payments::notify(&daemon, &body).await;
        assert_eq!(status, 200, "{reply}");
    }
    let out = dir.path().join("backups");
    let backup = PathBuf::from(
        gema_ok(
            &[
                "backup",
                "--out",
                path_str(&out),
                "--data-dir",
                path_str(&data),
            ],
            &[],
        )
        .trim(),
    );
    let from = [
        "restore",
        "--from",
        path_str(&backup),
        "--data-dir",
        path_str(&data),
    ];

    // The daemon holds the database: not even --force replaces it under it.
    let running = gema(&[&from[..], &["--force"]].concat(), &[]);
    assert!(!running.status.success());
    let stderr = text(&running.stderr);
    assert!(stderr.contains("stop the daemon"), "{stderr}");

    let (status, _) = daemon.terminate().await;
    assert!(status.success());
    // Stopped, but the data directory is not empty.
    let refused = gema(&from, &[]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("refusing to restore"), "{stderr}");
    assert!(stderr.contains("gema.db"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let forced = gema(&[&from[..], &["--force"]].concat(), &[]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let stderr = text(&forced.stderr);
    assert!(
        stderr.contains("WARNING") && stderr.contains("gema.db"),
        "{stderr}"
    );

    // A file changed after the backup: its checksum fails the drill.
    let tampered = dir.path().join("tampered");
    copy_backup(&backup, &tampered);
    let mut db = std::fs::OpenOptions::new()
        .append(true)
        .open(tampered.join("database.sqlite"))
        .unwrap();
    std::io::Write::write_all(&mut db, b"tampered").unwrap();
    drop(db);
    let drill = gema(&["restore", "--verify", path_str(&tampered)], &[]);
    assert!(!drill.status.success());
    let stdout = text(&drill.stdout);
    assert!(
        stdout.contains("FAIL  database.sqlite: checksum mismatch"),
        "{stdout}"
    );
    // A damaged backup is not restored either.
    let elsewhere = dir.path().join("elsewhere");
    let damaged = gema(
        &[
            "restore",
            "--from",
            path_str(&tampered),
            "--data-dir",
            path_str(&elsewhere),
        ],
        &[],
    );
    assert!(!damaged.status.success());
    assert!(
        text(&damaged.stderr).contains("is damaged"),
        "{}",
        text(&damaged.stderr)
    );
    assert!(!elsewhere.join("gema.db").exists());

    // A manifest whose figures differ from the database: the drill names each difference.
    let miscounted = dir.path().join("miscounted");
    copy_backup(&backup, &miscounted);
    let mut m = manifest(&miscounted);
    let transactions = m["row_counts"]["transactions"].as_i64().unwrap();
    assert_eq!(transactions, 3);
    m["row_counts"]["transactions"] = (transactions + 1).into();
    let first = m["ledger_totals"][0]["amount"].as_i64().unwrap();
    m["ledger_totals"][0]["amount"] = (first + 1).into();
    std::fs::write(miscounted.join("manifest.json"), m.to_string()).unwrap();
    let drill = gema(&["restore", "--verify", path_str(&miscounted)], &[]);
    assert!(!drill.status.success());
    let stdout = text(&drill.stdout);
    assert!(
        stdout.contains("FAIL  restored table transactions: 3 rows but the manifest says 4 rows"),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL  restored ledger "), "{stdout}");
    assert!(stdout.contains("verification FAILED"), "{stdout}");

    // A manifest that is not one: an error that says so, not a panic.
    let malformed = dir.path().join("malformed");
    copy_backup(&backup, &malformed);
    std::fs::write(
        malformed.join("manifest.json"),
        "{\"format\": 1, \"backend\": 7",
    )
    .unwrap();
    let drill = gema(&["restore", "--verify", path_str(&malformed)], &[]);
    assert!(!drill.status.success());
    let stderr = text(&drill.stderr);
    assert!(stderr.contains("not a valid manifest"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
