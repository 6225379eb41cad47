//! WhatsApp end to end: the real binary sends through the fake Cloud API (a real HTTP
//! server on 127.0.0.1, `gema::fake_cloud_api`), which answers message ids or injects Meta's
//! error codes; statuses come back as webhooks signed with the app secret. Covered: a send
//! and its statuses, every retry rule (131047 → the template, 131026 final, 130429 sender
//! back-off, 131056 recipient delay, 131057 temporary, 131049 recipient stopped for the day,
//! 131048 sender stopped for the day), and a send in flight when the daemon is killed:
//! `uncertain` after the restart, never re-sent.

use std::path::Path;
use std::time::Duration;

use gema::fake_cloud_api::FakeCloudApi;
use gema_gateway::testing::{eventually, eventually_within};
use gema_store::MessageStatus;
use serde_json::{Value, json};

use crate::helpers::Daemon;

const APP_SECRET: &str = "app-secret-for-tests";
const NUMBER: &str = "1098765";
const TOKEN: &str = "cloud-token-for-tests";

fn env(fake: &FakeCloudApi) -> Vec<(&'static str, String)> {
    vec![
        ("GEMA_WHATSAPP__API_BASE_URL", fake.base_url()),
        ("GEMA_WHATSAPP__PHONE_NUMBER_ID", NUMBER.into()),
        ("GEMA_WHATSAPP__ACCESS_TOKEN", TOKEN.into()),
        ("GEMA_WHATSAPP__APP_SECRET", APP_SECRET.into()),
        ("GEMA_WHATSAPP__VERIFY_TOKEN", "verify-me".into()),
        ("GEMA_WHATSAPP__RETRY_BASE_SECS", "1".into()),
        ("GEMA_WHATSAPP__THROTTLE_BASE_SECS", "1".into()),
        ("GEMA_WHATSAPP__RECIPIENT_GAP_SECS", "1".into()),
        // A claimed send is given four times this (the claim timeout, 8 s) before a
        // worker may call it `uncertain`.
        ("GEMA_WHATSAPP__REQUEST_TIMEOUT_SECS", "2".into()),
        // One node id across a test's restarts: the restarted daemon is the same node.
        ("GEMA_NODE__ID", "whatsapp-test-node".into()),
        (
            "GEMA_WHATSAPP__TEMPLATES__MANUAL__NAME",
            "gema_pesan_manual".into(),
        ),
    ]
}

fn start(dir: &std::path::Path, fake: &FakeCloudApi) -> Daemon {
    let env = env(fake);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Daemon::start_with(dir, &pairs)
}

/// The daemon's database in `dir` (SQLite), opened beside it as another process would.
async fn database(dir: &Path) -> std::sync::Arc<dyn gema_store::Store> {
    let url = format!("sqlite://{}", dir.join("gema-data/gema.db").display());
    gema_store::connect(&url, &gema_store::ConnectOptions::default())
        .await
        .expect("open the daemon's database")
}

/// Waits until the daemon has applied every webhook it answered 200: it records each one
/// and applies it afterwards, on a task of its own (an inbound message opens the 24-hour
/// window only then).
async fn webhooks_applied(dir: &Path) {
    let store = database(dir).await;
    let store = &store;
    eventually("every recorded webhook applied", || async move {
        let left = store.unprocessed_wa_webhooks(100).await.ok()?;
        left.is_empty().then_some(())
    })
    .await;
}

/// A new approved merchant; its id.
async fn merchant(daemon: &Daemon) -> String {
    let (status, m) = daemon
        .post("/api/v1/merchants", json!({ "name": "Toko Makmur" }))
        .await;
    assert_eq!(status, 201, "{m}");
    let id = m["id"].as_str().unwrap().to_owned();
    daemon
        .post(&format!("/api/v1/merchants/{id}/approve"), json!({}))
        .await;
    id
}

/// Queues a staff message to `to`; the message's id.
async fn send(daemon: &Daemon, merchant: &str, to: &str, text: &str) -> String {
    let (status, body) = daemon
        .post(
            &format!("/api/v1/merchants/{merchant}/whatsapp/messages"),
            json!({ "to": to, "text": text }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().expect("the message's id").to_owned()
}

async fn message(daemon: &Daemon, id: &str) -> Value {
    let (status, body) = daemon.get(&format!("/api/v1/whatsapp/messages/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the message has `status`; returns it.
async fn until_status(daemon: &Daemon, id: &str, status: &str) -> Value {
    eventually_within(
        &format!("message {id} becomes {status}"),
        Duration::from_secs(30),
        || async {
            let body = message(daemon, id).await;
            if body["message"]["status"] == status {
                Ok(Some(body))
            } else {
                Err(body)
            }
        },
    )
    .await
}

fn requests_to(fake: &FakeCloudApi, to: &str) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|r| r.to == to)
        .map(|r| r.body)
        .collect()
}

async fn webhook(daemon: &Daemon, body: &Value) -> u16 {
    let bytes = serde_json::to_vec(body).unwrap();
    let signature = gema_gateway::whatsapp::webhook::sign(APP_SECRET.as_bytes(), &bytes);
    reqwest::Client::new()
        .post(format!("{}/api/v1/whatsapp/webhook", daemon.api_url))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(bytes)
        .send()
        .await
        .expect("webhook request")
        .status()
        .as_u16()
}

fn status_webhook(wamid: &str, to: &str, status: &str, at: i64) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "waba", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "628111", "phone_number_id": NUMBER },
            "statuses": [{ "id": wamid, "status": status, "timestamp": at.to_string(),
                           "recipient_id": to }]
        }}]}]
    })
}

#[tokio::test]
async fn messages_go_out_and_statuses_only_move_forward() {
    let fake = FakeCloudApi::start().await.unwrap();
    fake.register(NUMBER, TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), &fake);
    let merchant = merchant(&daemon).await;

    let id = send(
        &daemon,
        &merchant,
        "0812 1111 0001",
        "Halo, paket Anda aktif.",
    )
    .await;
    let sent = until_status(&daemon, &id, "sent").await;
    let wamid = sent["message"]["wamid"].as_str().unwrap().to_owned();
    let requests = requests_to(&fake, "6281211110001");
    assert_eq!(requests.len(), 1, "{requests:?}");
    // No inbound message yet: the 24-hour window is closed, so the registered template
    // goes, with the text as its parameter.
    assert_eq!(requests[0]["type"], "template", "{}", requests[0]);
    assert_eq!(requests[0]["template"]["name"], "gema_pesan_manual");

    // Read, then a late delivered and a duplicate sent: read stays.
    for status in ["delivered", "read", "delivered", "sent"] {
        assert_eq!(
            webhook(
                &daemon,
                &status_webhook(&wamid, "6281211110001", status, 1_800_000_000)
            )
            .await,
            200
        );
    }
    until_status(&daemon, &id, "read").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(message(&daemon, &id).await["message"]["status"], "read");

    // A bad signature: 401 and nothing changes.
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/whatsapp/webhook", daemon.api_url))
        .header("x-hub-signature-256", "sha256=00")
        .body(serde_json::to_vec(&status_webhook(&wamid, "6281211110001", "failed", 1)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    // The customer writes: the window is open, so the next message goes as text.
    let inbound = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "waba", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "628111", "phone_number_id": NUMBER },
            "contacts": [{ "wa_id": "6281211110001", "profile": { "name": "Budi" } }],
            "messages": [{ "from": "6281211110001", "id": "wamid.in-1",
                           "timestamp": (time::OffsetDateTime::now_utc().unix_timestamp()).to_string(),
                           "type": "text", "text": { "body": "Terima kasih" } }]
        }}]}]
    });
    assert_eq!(webhook(&daemon, &inbound).await, 200);
    webhooks_applied(dir.path()).await;
    let id = send(&daemon, &merchant, "6281211110001", "Sama-sama").await;
    until_status(&daemon, &id, "sent").await;
    let requests = requests_to(&fake, "6281211110001");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1]["type"], "text", "{}", requests[1]);
    assert_eq!(requests[1]["text"]["body"], "Sama-sama");
    // The token went to Meta, and nowhere else: not to the logs (debug level), not to
    // the log of a message.
    assert_eq!(
        requests_to(&fake, "6281211110001").len(),
        fake.requests()
            .iter()
            .filter(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}")))
            .count()
    );
    let (_, stderr) = daemon.terminate().await;
    for secret in [TOKEN, APP_SECRET, "verify-me"] {
        assert!(!stderr.contains(secret), "{secret} in the log");
    }
}

#[tokio::test]
async fn each_meta_error_code_gets_its_rule() {
    let fake = FakeCloudApi::start().await.unwrap();
    fake.register(NUMBER, TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), &fake);
    let merchant = merchant(&daemon).await;

    // The customer wrote in the last 24 hours, so text goes first; 131047 says the window
    // is closed after all: the template follows.
    fake.inject(Some("6281200000001"), 131_047, 400, 1);
    // 131026: undeliverable, final, never retried.
    fake.inject(Some("6281200000002"), 131_026, 400, 1);
    // 130429: throughput; the sender backs off and it goes on the next try.
    fake.inject(Some("6281200000003"), 130_429, 400, 1);
    // 131056: too many to this recipient; later.
    fake.inject(Some("6281200000004"), 131_056, 400, 1);
    // 131057: maintenance; retried.
    fake.inject(Some("6281200000005"), 131_057, 400, 1);
    let window = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "waba", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "628111", "phone_number_id": NUMBER },
            "messages": [{ "from": "6281200000001", "id": "wamid.in-w",
                           "timestamp": (time::OffsetDateTime::now_utc().unix_timestamp()).to_string(),
                           "type": "text", "text": { "body": "halo" } }]
        }}]}]
    });
    assert_eq!(webhook(&daemon, &window).await, 200);
    webhooks_applied(dir.path()).await;

    let window_closed = send(&daemon, &merchant, "6281200000001", "satu").await;
    let undeliverable = send(&daemon, &merchant, "6281200000002", "dua").await;
    let throttled = send(&daemon, &merchant, "6281200000003", "tiga").await;
    let pair_limited = send(&daemon, &merchant, "6281200000004", "empat").await;
    let maintenance = send(&daemon, &merchant, "6281200000005", "lima").await;

    until_status(&daemon, &window_closed, "sent").await;
    let requests = requests_to(&fake, "6281200000001");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0]["type"], "text");
    assert_eq!(requests[1]["type"], "template");

    let failed = until_status(&daemon, &undeliverable, "failed").await;
    assert_eq!(failed["message"]["error_code"], 131_026, "{failed}");
    until_status(&daemon, &throttled, "sent").await;
    assert_eq!(requests_to(&fake, "6281200000003").len(), 2);
    until_status(&daemon, &pair_limited, "sent").await;
    assert_eq!(requests_to(&fake, "6281200000004").len(), 2);
    until_status(&daemon, &maintenance, "sent").await;
    assert_eq!(requests_to(&fake, "6281200000005").len(), 2);
    // The final failure was not tried again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(requests_to(&fake, "6281200000002").len(), 1);

    // 131049: this recipient is stopped for the day; others still get theirs.
    fake.inject(Some("6281200000006"), 131_049, 400, 1);
    let limited = send(&daemon, &merchant, "6281200000006", "enam").await;
    let other = send(&daemon, &merchant, "6281200000007", "tujuh").await;
    until_status(&daemon, &other, "sent").await;
    let body = eventually("the limited message waits for tomorrow", || async {
        let body = message(&daemon, &limited).await;
        (body["message"]["error_code"] == 131_049).then_some(body)
    })
    .await;
    assert_eq!(body["message"]["status"], "pending", "{body}");
    let tomorrow = time::OffsetDateTime::parse(
        body["message"]["next_attempt_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        tomorrow > time::OffsetDateTime::now_utc() + time::Duration::minutes(1),
        "{body}"
    );

    // 131048: the number is restricted; the whole sender stops for the day.
    fake.inject(Some("6281200000008"), 131_048, 400, 1);
    let restricted = send(&daemon, &merchant, "6281200000008", "delapan").await;
    eventually("the sender is stopped", || async {
        let body = message(&daemon, &restricted).await;
        (body["message"]["error_code"] == 131_048).then_some(())
    })
    .await;
    let held = send(&daemon, &merchant, "6281200000009", "sembilan").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        message(&daemon, &held).await["message"]["status"],
        "pending"
    );
    assert!(requests_to(&fake, "6281200000009").is_empty());
    let metrics = daemon.metrics().await;
    assert!(
        metrics.contains("gema_whatsapp_alerts_total{reason=\"sender_restricted\"}"),
        "{metrics}"
    );
    daemon.terminate().await;
}

#[tokio::test]
async fn a_send_in_flight_when_the_daemon_dies_is_uncertain_and_not_sent_again() {
    let fake = FakeCloudApi::start().await.unwrap();
    fake.register(NUMBER, TOKEN);
    // Requests to this number are received and never answered.
    fake.hold("6281277770001");
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), &fake);
    let token = daemon.token.clone();
    let merchant = merchant(&daemon).await;
    let id = send(&daemon, &merchant, "6281277770001", "Tagihan Anda").await;
    assert!(fake.wait_for(1, Duration::from_secs(30)).await);
    // Killed at once: the request must still be in flight, inside its time limit (after
    // which the daemon would mark it uncertain itself).
    daemon.kill_hard();
    let store = database(dir.path()).await;
    let left = store.get_wa_message(&id).await.unwrap();
    assert_eq!(left.status, MessageStatus::Sending, "{left:?}");
    drop(store);

    // Restarted at once under the same node id (`env`), so it takes the sender lease back
    // before the send's claim (8 s) has run out: the send is found uncertain by a later
    // look, not only when the lease is taken.
    let mut restarted = start(dir.path(), &fake);
    restarted.token = token;
    let body = until_status(&restarted, &id, "uncertain").await;
    let events: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["status"].as_str())
        .collect();
    assert_eq!(events, ["queued", "sending", "uncertain"], "{body}");
    // Marked by the restarted worker, not by a time-out of the killed process.
    assert!(
        body["events"][2]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("worker stopped")),
        "{body}"
    );
    // Never re-sent by itself.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(requests_to(&fake, "6281277770001").len(), 1);
    assert_eq!(
        message(&restarted, &id).await["message"]["status"],
        "uncertain"
    );
    restarted.terminate().await;
}

/// An external gateway the merchant runs: a real HTTP server that records what it gets.
async fn recording_gateway() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
) {
    use axum::http::HeaderMap;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post({
            let seen = seen.clone();
            move |headers: HeaderMap, body: axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    let auth = headers
                        .get("x-api-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().unwrap().push((auth, body.0));
                    axum::Json(json!({ "status": true }))
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn a_merchant_sends_through_its_own_external_gateway() {
    let fake = FakeCloudApi::start().await.unwrap();
    fake.register(NUMBER, TOKEN);
    let (url, seen) = recording_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), &fake);
    let merchant = merchant(&daemon).await;
    let (status, sender) = daemon
        .put(
            &format!("/api/v1/merchants/{merchant}/whatsapp/sender"),
            json!({
                "kind": "gateway",
                "gateway_url": url,
                "gateway_headers": { "x-api-key": "gateway-key-secret" },
                "gateway_body": r#"{"number":"{to}","message":"{text}"}"#,
                "active": true
            }),
        )
        .await;
    assert_eq!(status, 200, "{sender}");
    assert!(
        !sender.to_string().contains("gateway-key-secret"),
        "{sender}"
    );

    let id = send(
        &daemon,
        &merchant,
        "0812-5555-0001",
        "Tagihan \"Desember\"\nsudah terbit",
    )
    .await;
    until_status(&daemon, &id, "sent").await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "gateway-key-secret");
    assert_eq!(
        seen[0].1,
        json!({ "number": "6281255550001", "message": "Tagihan \"Desember\"\nsudah terbit" })
    );
    // Not through the operator's Cloud API number.
    assert!(fake.requests().is_empty());
    daemon.terminate().await;
}
