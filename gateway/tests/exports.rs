//! The export worker across a restart: a job its node was running when the process died
//! is started again when the node comes back, never left "running".

use std::sync::Arc;
use std::time::Duration;

use gema_gateway::GatewaySettings;
use gema_gateway::clock::{Clock, ManualClock};
use gema_gateway::testing::{TestGateway, eventually, temp_store};
use gema_store::{ExportFilter, ExportKind, ExportStatus, NewExport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_running_when_its_node_died_is_run_again_when_the_node_restarts() {
    let (store, dir) = temp_store().await;
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let settings = GatewaySettings::default();
    let node = settings.node.id.clone();
    let job = store
        .create_export(NewExport {
            kind: ExportKind::Transactions,
            filter: ExportFilter::default(),
            created_by: "user:test".into(),
        })
        .await
        .unwrap();
    // The previous process of this node claimed it, wrote part of the file, and was killed:
    // its claim would last another minute, and a partial file is on disk.
    let now = clock.now_ms();
    store
        .claim_export(&node, now, now + 60_000, 3)
        .await
        .unwrap()
        .unwrap();
    let exports_dir = dir.path().join("exports");
    std::fs::create_dir_all(&exports_dir).unwrap();
    let part = exports_dir.join(format!("{}.csv.part", job.id));
    std::fs::write(&part, "id,created_at\ngarbage,half a ro").unwrap();

    let gateway = TestGateway::start_on(store.clone(), dir, settings, clock.clone()).await;
    let done = eventually("the interrupted export done again", || async {
        let job = store.get_export(&job.id).await.ok()?;
        (job.status == ExportStatus::Done).then_some(job)
    })
    .await;
    assert_eq!(done.attempts, 2, "started once more, from scratch");
    let file = exports_dir.join(format!("{}.csv", job.id));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("garbage"), "{text}");
    assert_eq!(
        text.lines().count(),
        1,
        "the header of an empty export: {text}"
    );
    assert!(!part.exists());
    assert_eq!(done.file_bytes, Some(text.len() as i64));
    gateway.stop().await;
    // Nothing queued, nothing running once the node stopped cleanly.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        store.get_export(&job.id).await.unwrap().status,
        ExportStatus::Done
    );
}
