//! Several nodes on one database: periodic work runs on the one node holding its lease,
//! and moves to another when that node goes silent.

use std::sync::Arc;
use std::time::Duration;

use gema_gateway::clock::ManualClock;
use gema_gateway::cluster::{Cluster, ClusterWork, NodeSettings, NodeState};
use gema_gateway::testing::{RecordingTransport, temp_store};

fn node(store: &Arc<dyn gema_store::Store>, clock: &Arc<ManualClock>, id: &str) -> Cluster {
    Cluster::new(
        store.clone(),
        Arc::new(RecordingTransport::new()),
        clock.clone(),
        NodeSettings {
            id: id.into(),
            ..NodeSettings::default()
        },
    )
}

#[tokio::test]
async fn cluster_work_runs_on_one_node_and_moves_when_it_goes_silent() {
    let (store, _dir) = temp_store().await;
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let (a, b) = (node(&store, &clock, "a"), node(&store, &clock, "b"));
    let every = Duration::from_secs(1);

    assert!(a.holds(ClusterWork::ExpirySweep, every).await);
    assert!(
        !b.holds(ClusterWork::ExpirySweep, every).await,
        "a holds it"
    );
    assert!(
        b.holds(ClusterWork::CommandSweep, every).await,
        "each work has its own lease"
    );

    // a keeps ticking: its lease is renewed and b never gets the work.
    for _ in 0..30 {
        clock.advance(every);
        assert!(a.holds(ClusterWork::ExpirySweep, every).await);
        assert!(!b.holds(ClusterWork::ExpirySweep, every).await);
    }

    // a stops ticking (dead or paused): within the lease (10 s at least) b takes over, and
    // a, waking up, finds the work taken.
    clock.advance(Duration::from_secs(11));
    assert!(b.holds(ClusterWork::ExpirySweep, every).await);
    assert!(!a.holds(ClusterWork::ExpirySweep, every).await);

    // A clean shutdown hands the work over at once.
    b.leave().await;
    assert!(a.holds(ClusterWork::ExpirySweep, every).await);
}

#[tokio::test]
async fn nodes_are_listed_with_their_state() {
    let (store, _dir) = temp_store().await;
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let (a, b) = (node(&store, &clock, "a"), node(&store, &clock, "b"));
    let addr = "127.0.0.1:1".parse().unwrap();
    a.join(addr, addr).await.unwrap();
    b.join(addr, addr).await.unwrap();
    clock.advance(Duration::from_secs(10));
    a.heartbeat().await.unwrap();
    clock.advance(Duration::from_secs(10));

    let seen: Vec<(String, NodeState, bool)> = a
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.record.id, n.state, n.this_node))
        .collect();
    assert_eq!(
        seen,
        [
            ("a".to_string(), NodeState::Running, true),
            ("b".to_string(), NodeState::Unresponsive, false),
        ]
    );
}
