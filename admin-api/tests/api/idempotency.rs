//! `Idempotency-Key` on writes: one effect, the same answer for every retry.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gema_gateway::auth::AuthSettings;
use gema_gateway::auth::idempotency::request_hash;
use gema_store::IdempotencyBegin;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApi, assert_envelope};

fn keyed(api: &TestApi, method: &str, path: &str, key: &str, body: &Value) -> Request<Body> {
    api.request(method, path)
        .header("idempotency-key", key)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn order_count(api: &TestApi, order_ref: &str) -> usize {
    let list = api.get("/api/v1/transactions?limit=200").await;
    list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["order_ref"] == order_ref)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_posts_with_one_key_create_one_row_and_answer_alike() {
    let api = TestApi::new().await;
    let (_, _, terminal) = api.terminal(true).await;
    let body = json!({ "terminal_id": terminal, "order_ref": "INV-20", "amount": 25_000 });
    let replies: Vec<Reply> = futures_util::future::join_all(
        (0..20).map(|_| api.send(keyed(&api, "POST", "/api/v1/transactions", "pay-20", &body))),
    )
    .await;
    let first = &replies[0];
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    for reply in &replies {
        assert_eq!(reply.status, first.status);
        assert_eq!(reply.body, first.body);
    }
    let replayed = replies
        .iter()
        .filter(|r| r.headers.contains_key("idempotent-replayed"))
        .count();
    assert_eq!(replayed, 19, "one ran, nineteen were replayed");
    assert_eq!(order_count(&api, "INV-20").await, 1);

    // The same key with another body is refused; the row is untouched.
    let other = json!({ "terminal_id": terminal, "order_ref": "INV-21", "amount": 1 });
    let r = api
        .send(keyed(
            &api,
            "POST",
            "/api/v1/transactions",
            "pay-20",
            &other,
        ))
        .await;
    assert_envelope(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    );
    assert_eq!(order_count(&api, "INV-21").await, 0);

    // Keys are kept 24 hours.
    api.clock.advance(Duration::from_secs(24 * 3600 + 1));
    let r = api
        .send(keyed(
            &api,
            "POST",
            "/api/v1/transactions",
            "pay-20",
            &other,
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_the_first_runs_is_a_conflict() {
    let api = TestApi::with_auth(AuthSettings {
        idempotency_wait: Duration::ZERO,
        ..Default::default()
    })
    .await;
    let body = json!({ "name": "Toko Sinar" });
    // The first request with this key is "running": claimed and not finished.
    let hash = request_hash("POST", "/api/v1/merchants", body.to_string().as_bytes());
    let claimed = api
        .store
        .begin_idempotency("token:bootstrap", "m-1", &hash, 1_700_000_000_000, 0)
        .await
        .unwrap();
    assert_eq!(claimed, IdempotencyBegin::Started);
    let r = api
        .send(keyed(&api, "POST", "/api/v1/merchants", "m-1", &body))
        .await;
    assert_envelope(&r, StatusCode::CONFLICT, "idempotency_key_in_progress");
    let merchants = api.get("/api/v1/merchants").await;
    assert_eq!(merchants.body["items"], json!([]));

    let r = api
        .send(keyed(&api, "POST", "/api/v1/merchants", "bad key", &body))
        .await;
    assert_envelope(&r, StatusCode::BAD_REQUEST, "invalid_header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_replay_too_and_device_secrets_are_never_kept() {
    let api = TestApi::new().await;
    // A refused request is an answer too: the retry gets the same 422.
    let bad = json!({ "name": "" });
    let first = api
        .send(keyed(&api, "POST", "/api/v1/merchants", "m-bad", &bad))
        .await;
    assert_eq!(first.status, StatusCode::UNPROCESSABLE_ENTITY);
    let again = api
        .send(keyed(&api, "POST", "/api/v1/merchants", "m-bad", &bad))
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(again.body, first.body);

    // A PATCH with a key.
    let (merchant, _, _) = api.terminal(false).await;
    let patch = json!({ "name": "Warung Baru" });
    let path = format!("/api/v1/merchants/{merchant}");
    let one = api.send(keyed(&api, "PATCH", &path, "p-1", &patch)).await;
    let two = api.send(keyed(&api, "PATCH", &path, "p-1", &patch)).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body, two.body);
    assert!(two.headers.contains_key("idempotent-replayed"));

    // Registering a device shows its secret once: a retry does not register a second device
    // and does not get the secret again.
    let device = json!({ "serial": "SN-IDEM", "model": "SB-100" });
    let created = api
        .send(keyed(&api, "POST", "/api/v1/devices", "d-1", &device))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body["credentials"]["secret"].as_str().unwrap();
    let retry = api
        .send(keyed(&api, "POST", "/api/v1/devices", "d-1", &device))
        .await;
    assert_envelope(&retry, StatusCode::CONFLICT, "idempotent_response_not_kept");
    assert!(!retry.body.to_string().contains(secret));
    let mut database = Vec::new();
    for entry in std::fs::read_dir(api.dir()).unwrap() {
        database.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(
        !database
            .windows(secret.len())
            .any(|w| w == secret.as_bytes()),
        "the device secret is not stored"
    );
}
