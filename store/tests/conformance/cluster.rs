//! Several nodes on one database: node registration and heartbeats, leases that one node
//! holds at a time, secrets created once.

use std::sync::Arc;

use gema_store::*;

fn node(id: &str, now_ms: i64) -> NewNode {
    NewNode {
        id: id.into(),
        version: "0.1.0".into(),
        http_addr: "127.0.0.1:8080".into(),
        mqtt_addr: "127.0.0.1:8883".into(),
        now_ms,
    }
}

pub async fn nodes_register_heartbeat_and_stop(store: Arc<dyn Store>) {
    assert_eq!(
        store.register_node(node("node-b", 1_000)).await.unwrap(),
        None
    );
    assert_eq!(
        store.register_node(node("node-a", 1_000)).await.unwrap(),
        None
    );
    store.heartbeat_node("node-a", 6_000, 42).await.unwrap();

    let nodes = store.list_nodes().await.unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["node-a", "node-b"], "listed by id");
    assert_eq!(nodes[0].heartbeat_at_ms, 6_000);
    assert_eq!(nodes[0].devices_held, 42);
    assert_eq!(nodes[0].started_at_ms, 1_000);
    assert_eq!(
        nodes[1].heartbeat_at_ms, 1_000,
        "a registration is a heartbeat"
    );

    store.stop_node("node-a", 7_000).await.unwrap();
    let stopped = &store.list_nodes().await.unwrap()[0];
    assert_eq!(stopped.stopped_at_ms, Some(7_000));
    assert_eq!(stopped.devices_held, 0, "a stopped node holds no device");

    // A restart under the same id replaces the row and shows what it replaced.
    let previous = store
        .register_node(node("node-a", 9_000))
        .await
        .unwrap()
        .expect("the earlier registration");
    assert_eq!(previous.stopped_at_ms, Some(7_000));
    let restarted = &store.list_nodes().await.unwrap()[0];
    assert_eq!(restarted.started_at_ms, 9_000);
    assert_eq!(restarted.stopped_at_ms, None);

    let unknown = store.heartbeat_node("node-z", 9_000, 0).await.unwrap_err();
    assert!(
        matches!(unknown, StoreError::NotFound { entity: "node", .. }),
        "{unknown:?}"
    );
}

pub async fn a_lease_has_one_holder_until_it_expires(store: Arc<dyn Store>) {
    let name = "expiry-sweep";
    assert!(store.take_lease(name, "a", 1_000, 5_000).await.unwrap());
    assert!(
        !store.take_lease(name, "b", 2_000, 5_000).await.unwrap(),
        "held by a"
    );
    assert!(
        store.take_lease(name, "a", 4_000, 5_000).await.unwrap(),
        "a renews"
    );
    assert!(
        !store.take_lease(name, "b", 8_999, 5_000).await.unwrap(),
        "renewed to 9,000"
    );
    assert!(
        store.take_lease(name, "b", 9_000, 5_000).await.unwrap(),
        "expired: b takes it"
    );
    assert!(!store.take_lease(name, "a", 9_001, 5_000).await.unwrap());

    // Releasing someone else's lease does nothing; releasing one's own frees it at once.
    store.release_lease(name, "a").await.unwrap();
    assert!(!store.take_lease(name, "a", 9_002, 5_000).await.unwrap());
    store.release_lease(name, "b").await.unwrap();
    assert!(store.take_lease(name, "a", 9_003, 5_000).await.unwrap());

    // Leases are independent of each other.
    assert!(
        store
            .take_lease("config-retry", "b", 9_004, 5_000)
            .await
            .unwrap()
    );
}

pub async fn concurrent_lease_takers_let_one_win(store: Arc<dyn Store>) {
    let takers = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .take_lease("command-timeouts", &format!("node-{i}"), 1_000, 5_000)
                .await
                .unwrap()
        })
    });
    let mut won = 0;
    for taker in takers {
        if taker.await.unwrap() {
            won += 1;
        }
    }
    assert_eq!(
        won, 1,
        "exactly one of eight concurrent takers holds the lease"
    );
}

pub async fn a_shared_secret_keeps_its_first_value(store: Arc<dyn Store>) {
    let first = store
        .shared_secret("dev-pki", b"first", 1_000)
        .await
        .unwrap();
    assert_eq!(first, b"first");
    let second = store
        .shared_secret("dev-pki", b"second", 2_000)
        .await
        .unwrap();
    assert_eq!(second, b"first", "the value stored first stays");
    let other = store.shared_secret("other", b"x", 2_000).await.unwrap();
    assert_eq!(other, b"x");
}

pub async fn sessions_record_the_holding_node_and_fence_old_epochs(store: Arc<dyn Store>) {
    let d = gema_store::testing::device(&*store, "SESS-1").await;
    let ids = [d.id.clone(), "dev_unknown".to_string()];

    let on_a = store.start_sessions("a", &ids, 1_000).await.unwrap();
    assert_eq!(
        on_a,
        [SessionStart {
            device_id: d.id.clone(),
            epoch: 1,
            taken_from: None
        }],
        "an unknown device is skipped"
    );
    // The device reconnects through another node before a saw it go: b takes it over.
    let on_b = store.start_sessions("b", &ids[..1], 2_000).await.unwrap();
    assert_eq!(on_b[0].epoch, 2);
    assert_eq!(on_b[0].taken_from.as_deref(), Some("a"));
    let elsewhere = store.sessions_started_elsewhere("a", 1_500).await.unwrap();
    assert_eq!(elsewhere.len(), 1);
    assert_eq!(
        (elsewhere[0].node_id.as_str(), elsewhere[0].epoch),
        ("b", 2)
    );
    assert!(
        store
            .sessions_started_elsewhere("b", 0)
            .await
            .unwrap()
            .is_empty()
    );

    // a's late disconnect of epoch 1 changes nothing; b's of epoch 2 ends the session.
    let stale = store
        .end_sessions("a", &[(d.id.clone(), 1)], 3_000)
        .await
        .unwrap();
    assert!(stale.is_empty());
    let session = store.device_session(&d.id).await.unwrap().unwrap();
    assert!(session.connected && session.node_id == "b");
    let ended = store
        .end_sessions("b", &[(d.id.clone(), 2)], 3_000)
        .await
        .unwrap();
    assert_eq!(ended, std::slice::from_ref(&d.id));
    assert!(
        !store
            .device_session(&d.id)
            .await
            .unwrap()
            .unwrap()
            .connected
    );

    // A connect after a clean disconnect takes nothing from anyone.
    let again = store.start_sessions("a", &ids[..1], 4_000).await.unwrap();
    assert_eq!((again[0].epoch, again[0].taken_from.clone()), (3, None));
    // A node that restarts holds no session.
    assert_eq!(store.end_node_sessions("a", 5_000).await.unwrap(), 1);
    assert!(
        !store
            .device_session(&d.id)
            .await
            .unwrap()
            .unwrap()
            .connected
    );
    assert_eq!(store.device_session("dev_unknown").await.unwrap(), None);
}

pub async fn signals_reach_every_listener(store: Arc<dyn Store>) {
    let too_long = "x".repeat(gema_store::cluster::MAX_SIGNAL_BYTES + 1);
    assert!(
        store.signal(&too_long).await.is_err(),
        "a payload PostgreSQL would refuse"
    );
    let Some(mut first) = store.listen().await.unwrap() else {
        assert_eq!(
            store.backend(),
            Backend::Sqlite,
            "only SQLite has nobody to signal"
        );
        store.signal("work dev_1").await.unwrap();
        return;
    };
    let mut second = store.listen().await.unwrap().unwrap();
    store.signal("work dev_1 dev_2").await.unwrap();
    for listener in [&mut first, &mut second] {
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
            .await
            .expect("the signal arrives")
            .unwrap();
        assert_eq!(got, "work dev_1 dev_2");
    }
}
