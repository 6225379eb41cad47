//! Device operations through the API: health on the device list and detail (filtered by
//! status, moved by a hand-driven clock), versioned config PATCH, push retry, heartbeats,
//! the message trace.

use std::time::Duration;

use axum::http::StatusCode;
use gema_firmware_protocol::message::{Envelope, Heartbeat, Network, Uplink};
use gema_firmware_protocol::topic::MessageKind;
use gema_firmware_protocol::{Encoding, encode, topic};
use gema_gateway::transport::{Presence, UplinkMessage};
use serde_json::json;

use crate::helpers::{TestApi, assert_envelope, field};

async fn beat(api: &TestApi, device: &str, battery: u8) {
    let uplink = Uplink::new(
        Envelope::new("hb1", 0),
        Heartbeat {
            battery_pct: Some(battery),
            charging: false,
            signal_dbm: Some(-71),
            network: Network::Wifi,
            firmware_version: "2.0.1".into(),
            audio_pack_version: "id-7".into(),
            uptime_s: 99,
            last_transaction_id: None,
            config_version: 0,
        },
    );
    api.device_ops
        .handle_uplink(UplinkMessage {
            device_id: device.into(),
            topic: topic::topic(device, MessageKind::Heartbeat, Encoding::Json),
            payload: encode(&uplink, Encoding::Json),
            settle: Default::default(),
        })
        .await;
}

async fn connect(api: &TestApi, device: &str) {
    api.transport.connect(device);
    api.device_ops
        .handle_presence(&Presence::Connected {
            device_id: device.into(),
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_list_shows_health_and_filters_by_it() {
    let api = TestApi::new().await;
    let (a, _) = api.device("SB-H-1").await;
    let (b, _) = api.device("SB-H-2").await;
    connect(&api, &a).await;
    beat(&api, &a, 90).await;

    let detail = api.get(&format!("/api/v1/devices/{a}")).await;
    assert_eq!(detail.status, StatusCode::OK);
    let health = &detail.body["health_summary"];
    assert_eq!(health["status"], "online", "{health}");
    assert_eq!(health["score"], 100);
    assert_eq!(health["heartbeat_age_secs"], 0);
    assert_eq!(health["connected"], true);

    let other = api.get(&format!("/api/v1/devices/{b}")).await;
    assert_eq!(other.body["health_summary"]["status"], "offline");
    assert_eq!(
        other.body["health_summary"]["reasons"][0]["code"],
        "never_seen"
    );

    let online = api.get("/api/v1/devices?health=online").await;
    assert_eq!(online.status, StatusCode::OK);
    let ids: Vec<_> = online.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![a.clone()]);

    // Four minutes of silence (default: degraded after 180 s).
    api.clock.advance(Duration::from_secs(240));
    let degraded = api.get("/api/v1/devices?health=degraded").await;
    assert_eq!(degraded.body["items"].as_array().unwrap().len(), 1);
    let h = &degraded.body["items"][0]["health_summary"];
    assert_eq!(h["reasons"][0]["code"], "stale_heartbeat");
    assert_eq!(h["heartbeat_age_secs"], 240);
    let offline = api.get("/api/v1/devices?health=offline&limit=1").await;
    assert_eq!(offline.body["items"][0]["id"], b.as_str());

    let bad = api.get("/api/v1/devices?health=sleepy").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let status = api.get(&format!("/api/v1/devices/{a}/status")).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(status.body["health"]["status"], "degraded");
    assert_eq!(status.body["presence"]["connected"], true);
    assert_eq!(status.body["last_heartbeat"]["battery_pct"], 90);
    assert_eq!(status.body["last_heartbeat"]["network"], "wifi");

    let beats = api
        .get(&format!("/api/v1/devices/{a}/heartbeats?limit=5"))
        .await;
    assert_eq!(beats.body.as_array().unwrap().len(), 1);
    assert_eq!(beats.body[0]["firmware_version"], "2.0.1");

    let missing = api.get("/api/v1/devices/dev_nope/status").await;
    assert_envelope(&missing, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_patched_by_version_and_pushed() {
    let api = TestApi::new().await;
    let (a, _) = api.device("SB-C-1").await;
    let path = format!("/api/v1/devices/{a}/config");
    let initial = api.get(&path).await;
    assert_eq!(initial.status, StatusCode::OK);
    assert_eq!(initial.body["version"], 0);
    assert_eq!(initial.body["push_status"], "none");
    assert_eq!(initial.body["sync"], "unknown");

    let patched = api
        .call(
            "PATCH",
            &path,
            Some(json!({ "version": 0, "volume": 3, "language": "en",
                "quiet_hours": { "start_minute": 1320, "end_minute": 360,
                    "utc_offset_minutes": 420, "volume": 1 } })),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["version"], 1);
    assert_eq!(patched.body["desired"]["volume"], 3);
    assert_eq!(patched.body["desired"]["language"], "en");
    assert_eq!(patched.body["desired"]["quiet_hours"]["start_minute"], 1320);
    assert_eq!(patched.body["push_status"], "pending", "device offline");

    let stale = api
        .call("PATCH", &path, Some(json!({ "version": 0, "volume": 5 })))
        .await;
    assert_envelope(&stale, StatusCode::CONFLICT, "stale_version");

    let out_of_range = api
        .call("PATCH", &path, Some(json!({ "version": 1, "volume": 11 })))
        .await;
    assert_eq!(out_of_range.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field(&out_of_range), "volume");

    let unknown_field = api
        .call("PATCH", &path, Some(json!({ "version": 1, "loudness": 5 })))
        .await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);

    // Quiet hours removed with null; version 2.
    let cleared = api
        .call(
            "PATCH",
            &path,
            Some(json!({ "version": 1, "quiet_hours": null })),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
    assert_eq!(cleared.body["version"], 2);
    assert!(cleared.body["desired"]["quiet_hours"].is_null());
    assert_eq!(
        cleared.body["desired"]["volume"], 3,
        "untouched fields stay"
    );

    // Retry while connected publishes now. The connect replays it already, and the pusher
    // the PATCH woke may publish it too if it runs only after the device is connected (a
    // busy box): at least once, the device keeps the newest version it applied.
    assert!(
        api.transport.published().is_empty(),
        "offline: nothing sent"
    );
    connect(&api, &a).await;
    let replayed = api.transport.published().len();
    assert!((1..=2).contains(&replayed), "{replayed} pushes on connect");
    let retried = api.post(&format!("{path}/push"), json!({})).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    assert_eq!(retried.body["push_status"], "sent");
    let published: Vec<(String, String)> = api
        .transport
        .published()
        .into_iter()
        .map(|p| (p.device_id, p.topic))
        .collect();
    assert_eq!(published.len(), replayed + 1, "the retry sends once");
    assert!(
        published
            .iter()
            .all(|(_, t)| t == &format!("devices/{a}/down/config"))
    );

    // The trace holds every push.
    let messages = api.get(&format!("/api/v1/devices/{a}/messages")).await;
    assert_eq!(messages.status, StatusCode::OK);
    let list = messages.body.as_array().unwrap();
    assert_eq!(list.len(), published.len());
    assert_eq!(list[0]["direction"], "down");
    assert_eq!(list[0]["outcome"], "acknowledged");
    assert!(
        list[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("config version=2")
    );

    let (b, _) = api.device("SB-C-2").await;
    let none = api
        .post(&format!("/api/v1/devices/{b}/config/push"), json!({}))
        .await;
    assert_envelope(&none, StatusCode::NOT_FOUND, "not_found");
    let missing = api.get("/api/v1/devices/dev_nope/messages").await;
    assert_envelope(&missing, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_created_listed_and_read() {
    let api = TestApi::new().await;
    let (a, _) = api.device("SB-K-1").await;
    let path = format!("/api/v1/devices/{a}/commands");

    let offline = api
        .post(
            &path,
            json!({ "action": { "name": "get_status" }, "interactive": true }),
        )
        .await;
    assert_eq!(offline.status, StatusCode::CREATED, "{}", offline.body);
    assert_eq!(offline.body["status"], "failed");
    assert_eq!(offline.body["action"]["name"], "get_status");

    let queued = api
        .post(
            &path,
            json!({ "action": { "name": "set_volume", "args": { "volume": 5 } },
                "expires_in_secs": 600 }),
        )
        .await;
    assert_eq!(queued.status, StatusCode::CREATED);
    assert_eq!(queued.body["status"], "queued");
    assert_eq!(queued.body["action"]["args"]["volume"], 5);

    connect(&api, &a).await; // delivered on connect
    let id = queued.body["id"].as_str().unwrap();
    let got = api.get(&format!("{path}/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["status"], "sent");
    assert_eq!(got.body["attempts"], 1);
    assert!(got.body["sent_at"].is_string());

    let fw = api
        .post(
            &path,
            json!({ "action": { "name": "fw_update", "args": {
                "url": "https://cdn.example/fw.bin", "sha256": "ab".repeat(32),
                "version": "2.1.0", "size": 1048576 } } }),
        )
        .await;
    assert_eq!(fw.status, StatusCode::CREATED, "{}", fw.body);
    assert_eq!(fw.body["status"], "sent");
    assert_eq!(fw.body["action"]["args"]["version"], "2.1.0");

    let bad = api
        .post(
            &path,
            json!({ "action": { "name": "set_volume", "args": { "volume": 12 } } }),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field(&bad), "action.args.volume");
    let unknown = api
        .post(&path, json!({ "action": { "name": "self_destruct" } }))
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let too_long = api
        .post(
            &path,
            json!({ "action": { "name": "reboot" }, "expires_in_secs": 999999 }),
        )
        .await;
    assert_eq!(field(&too_long), "expires_in_secs");

    let list = api.get(&format!("{path}?limit=2")).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    assert!(list.body["next_cursor"].is_string());

    let (b, _) = api.device("SB-K-2").await;
    let other = api.get(&format!("/api/v1/devices/{b}/commands/{id}")).await;
    assert_envelope(&other, StatusCode::NOT_FOUND, "not_found");
    let missing = api
        .post(
            "/api/v1/devices/dev_nope/commands",
            json!({ "action": { "name": "reboot" } }),
        )
        .await;
    assert_envelope(&missing, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_operations_are_documented_with_distinct_operation_ids() {
    let api = TestApi::new().await;
    let doc = api.get("/api/v1/openapi.json").await;
    let paths = doc.body["paths"].as_object().unwrap();
    for (path, method, operation_id) in [
        ("/api/v1/devices/{id}/status", "get", "device_status"),
        (
            "/api/v1/devices/{id}/heartbeats",
            "get",
            "device_heartbeats",
        ),
        ("/api/v1/devices/{id}/config", "get", "device_config_get"),
        (
            "/api/v1/devices/{id}/config",
            "patch",
            "device_config_update",
        ),
        (
            "/api/v1/devices/{id}/config/push",
            "post",
            "device_config_push_retry",
        ),
        ("/api/v1/devices/{id}/messages", "get", "device_messages"),
        (
            "/api/v1/devices/{id}/commands",
            "post",
            "device_command_create",
        ),
        (
            "/api/v1/devices/{id}/commands",
            "get",
            "device_command_list",
        ),
        (
            "/api/v1/devices/{id}/commands/{command_id}",
            "get",
            "device_command_get",
        ),
    ] {
        let op = &paths[path][method];
        assert_eq!(op["operationId"], operation_id, "{method} {path}");
        assert_eq!(op["tags"][0], "device operations");
    }
    // Each of these ids names exactly one operation in the whole document.
    let ids: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    for mine in ids.iter().filter(|id| id.starts_with("device_")) {
        assert_eq!(ids.iter().filter(|id| *id == mine).count(), 1, "{mine}");
    }
    // The list documents its health filter.
    let params = paths["/api/v1/devices"]["get"]["parameters"]
        .as_array()
        .unwrap();
    assert!(params.iter().any(|p| p["name"] == "health"));
}
