//! `GET /api/v1/nodes`: the nodes sharing the database, as any node sees them.

use std::time::Duration;

use axum::http::StatusCode;

use crate::helpers::TestApi;

#[tokio::test]
async fn the_node_list_shows_each_nodes_heartbeat_and_state() {
    let api = TestApi::new().await;
    let cluster = &api.gateway.gateway.cluster;
    cluster
        .join(
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:8883".parse().unwrap(),
        )
        .await
        .unwrap();

    let listed = api.get("/api/v1/nodes").await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    let nodes = listed.body["items"].as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    let node = &nodes[0];
    assert_eq!(node["id"], cluster.node_id());
    assert_eq!(node["state"], "running");
    assert_eq!(node["this_node"], true);
    assert_eq!(node["mqtt_addr"], "127.0.0.1:8883");
    assert_eq!(node["devices_held"], 0);
    assert_eq!(node["stopped_at"], serde_json::Value::Null);

    // Silent past three heartbeat intervals: shown as unresponsive, until it beats again.
    api.clock.advance(Duration::from_secs(16));
    assert_eq!(
        api.get("/api/v1/nodes").await.body["items"][0]["state"],
        "unresponsive"
    );
    cluster.heartbeat().await.unwrap();
    assert_eq!(
        api.get("/api/v1/nodes").await.body["items"][0]["state"],
        "running"
    );

    cluster.leave().await;
    let stopped = api.get("/api/v1/nodes").await;
    assert_eq!(stopped.body["items"][0]["state"], "stopped");
    assert!(stopped.body["items"][0]["stopped_at"].is_string());
}
