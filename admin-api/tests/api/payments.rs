//! Provider callbacks through the router: signed, duplicated, late, forged.

use axum::body::Body;
use axum::http::{StatusCode, header};
use gema_gateway::payments::providers::midtrans_signature;
use serde_json::{Value, json};

use crate::helpers::{GENERIC_SECRET, MIDTRANS_KEY, Reply, TestApi, XENDIT_TOKEN, assert_envelope};

pub(crate) fn notification(order: &str, status: &str, amount: &str, key: &str) -> Value {
    json!({
        "transaction_time": "2026-11-21 10:00:00",
        "transaction_status": status,
        "transaction_id": format!("mt-{order}"),
        "status_message": "midtrans payment notification",
        "status_code": "200",
        "signature_key": midtrans_signature(order, "200", amount, key),
        "settlement_time": "2026-11-21 10:00:03",
        "payment_type": "qris",
        "order_id": order,
        "merchant_id": "G123456789",
        "issuer": "gopay",
        "gross_amount": amount,
        "fraud_status": "accept",
        "currency": "IDR",
        "acquirer": "gopay"
    })
}

pub(crate) async fn notify(api: &TestApi, body: &Value) -> Reply {
    let request = axum::http::Request::post("/api/v1/payments/midtrans/notification")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    api.send(request).await
}

/// An approved terminal with a bound device, and a pending order on it: the transaction id.
async fn order(api: &TestApi, order_ref: &str, amount: i64) -> String {
    let (_, _, terminal) = api.terminal(true).await;
    let (device, _) = api.device(&format!("SN-{order_ref}")).await;
    let bound = api
        .post(
            &format!("/api/v1/devices/{device}/bind"),
            json!({ "terminal_id": terminal }),
        )
        .await;
    assert_eq!(bound.status, StatusCode::OK);
    let created = api
        .post(
            "/api/v1/transactions",
            json!({ "terminal_id": terminal, "order_ref": order_ref, "amount": amount }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["status"], "pending");
    created.body["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_settlement_pays_posts_the_ledger_and_queues_an_announcement() {
    let api = TestApi::new().await;
    let id = order(&api, "ORD-1", 25_000).await;
    let reply = notify(
        &api,
        &notification("ORD-1", "settlement", "25000.00", MIDTRANS_KEY),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["outcome"], "applied");
    assert_eq!(reply.body["transaction_id"], id.as_str());

    let t = api.get(&format!("/api/v1/transactions/{id}")).await;
    assert_eq!(t.body["status"], "paid");
    assert_eq!(t.body["issuer"], "gopay");
    assert_eq!(t.body["paid_at"], "2026-11-21T03:00:03Z");

    let ledger = api
        .get(&format!("/api/v1/ledger-entries?transaction_id={id}"))
        .await;
    let amounts: Vec<(String, i64)> = ledger.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["entry_type"].as_str().unwrap().to_string(),
                e["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        amounts,
        [
            ("gross_income".to_string(), 25_000),
            ("platform_fee".to_string(), 175),
            ("merchant_payable".to_string(), 24_825)
        ]
    );
    let announcements = api
        .get(&format!("/api/v1/transactions/{id}/announcements"))
        .await;
    assert_eq!(announcements.body.as_array().unwrap().len(), 1);
    assert_eq!(announcements.body[0]["status"], "pending");

    let timeline = api.get(&format!("/api/v1/transactions/{id}/events")).await;
    let effects: Vec<&str> = timeline
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["effect"].as_str().unwrap())
        .collect();
    assert_eq!(effects, ["created", "applied"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_copies_announce_once_and_post_once() {
    let api = TestApi::new().await;
    let id = order(&api, "ORD-50", 10_000).await;
    let body = notification("ORD-50", "settlement", "10000.00", MIDTRANS_KEY);
    let copies = (0..50).map(|_| {
        let router = api.router.clone();
        let body = body.to_string();
        tokio::spawn(async move {
            use tower::ServiceExt;
            let request = axum::http::Request::post("/api/v1/payments/midtrans/notification")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        })
    });
    let replies = futures_util::future::join_all(copies).await;
    let mut applied = 0;
    for reply in replies {
        let (status, body) = reply.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        match body["outcome"].as_str().unwrap() {
            "applied" => applied += 1,
            "duplicate" => {}
            other => panic!("unexpected outcome {other}"),
        }
    }
    assert_eq!(applied, 1);
    let ledger = api
        .get(&format!("/api/v1/ledger-entries?transaction_id={id}"))
        .await;
    assert_eq!(ledger.body["items"].as_array().unwrap().len(), 3);
    let announcements = api
        .get(&format!("/api/v1/transactions/{id}/announcements"))
        .await;
    assert_eq!(announcements.body.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_stale_and_forged_notifications_behave() {
    let api = TestApi::new().await;

    // settlement after expire: the payment wins and is flagged.
    let id = order(&api, "ORD-LATE", 10_000).await;
    let expire = notify(
        &api,
        &notification("ORD-LATE", "expire", "10000.00", MIDTRANS_KEY),
    )
    .await;
    assert_eq!(expire.body["outcome"], "applied");
    assert_eq!(
        api.get(&format!("/api/v1/transactions/{id}")).await.body["status"],
        "expired"
    );
    let late = notify(
        &api,
        &notification("ORD-LATE", "settlement", "10000.00", MIDTRANS_KEY),
    )
    .await;
    assert_eq!(late.body["outcome"], "applied");
    let t = api.get(&format!("/api/v1/transactions/{id}")).await;
    assert_eq!(t.body["status"], "paid");
    assert_eq!(t.body["paid_after_expiry"], true);

    // pending after settlement: stale, 200, nothing changes.
    let stale = notify(
        &api,
        &notification("ORD-LATE", "pending", "10000.00", MIDTRANS_KEY),
    )
    .await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.body["outcome"], "stale");
    assert_eq!(
        api.get(&format!("/api/v1/transactions/{id}")).await.body["status"],
        "paid"
    );

    // A forged signature: 401, nothing changes.
    let other = order(&api, "ORD-FORGED", 10_000).await;
    let forged = notify(
        &api,
        &notification("ORD-FORGED", "settlement", "10000.00", "not-the-key"),
    )
    .await;
    assert_envelope(&forged, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        api.get(&format!("/api/v1/transactions/{other}")).await.body["status"],
        "pending"
    );
    let ledger = api
        .get(&format!("/api/v1/ledger-entries?transaction_id={other}"))
        .await;
    assert_eq!(ledger.body["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_orders_malformed_bodies_tests_and_disabled_providers() {
    let api = TestApi::new().await;
    let unknown = notify(
        &api,
        &notification("ORD-NOPE", "settlement", "5000.00", MIDTRANS_KEY),
    )
    .await;
    assert_envelope(&unknown, StatusCode::NOT_FOUND, "not_found");

    let test = notify(
        &api,
        &notification(
            "payment_notif_test_G123-abc",
            "settlement",
            "5000.00",
            MIDTRANS_KEY,
        ),
    )
    .await;
    assert_eq!(test.status, StatusCode::OK);
    assert_eq!(test.body["outcome"], "test");

    let request = axum::http::Request::post("/api/v1/payments/midtrans/notification")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    assert_envelope(
        &api.send(request).await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );

    // Xendit and the generic callback have no credentials in this configuration.
    for path in [
        "/api/v1/payments/xendit/callback",
        "/api/v1/payments/callback",
    ] {
        let request = axum::http::Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        assert_envelope(&api.send(request).await, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_validate_their_input() {
    let api = TestApi::new().await;
    let (_, _, terminal) = api.terminal(true).await;
    for (body, field) in [
        (
            json!({ "terminal_id": terminal, "order_ref": "A", "amount": 0 }),
            "amount",
        ),
        (
            json!({ "terminal_id": terminal, "order_ref": "A", "amount": -5 }),
            "amount",
        ),
        (
            json!({ "terminal_id": terminal, "order_ref": "has space", "amount": 5 }),
            "order_ref",
        ),
        (
            json!({ "terminal_id": terminal, "order_ref": "A", "amount": 5, "expires_in_secs": 0 }),
            "expires_in_secs",
        ),
    ] {
        let reply = api.post("/api/v1/transactions", body).await;
        assert_envelope(
            &reply,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert_eq!(reply.body["details"]["field"], field);
    }
    let reply = api
        .post(
            "/api/v1/transactions",
            json!({ "terminal_id": terminal, "order_ref": "A", "amount": 1.5 }),
        )
        .await;
    assert_envelope(&reply, StatusCode::BAD_REQUEST, "invalid_body");

    let first = api
        .post(
            "/api/v1/transactions",
            json!({ "terminal_id": terminal, "order_ref": "A", "amount": 5 }),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let dup = api
        .post(
            "/api/v1/transactions",
            json!({ "terminal_id": terminal, "order_ref": "A", "amount": 5 }),
        )
        .await;
    assert_envelope(&dup, StatusCode::CONFLICT, "order_ref_taken");

    let (_, _, pending_terminal) = api.terminal(false).await;
    let refused = api
        .post(
            "/api/v1/transactions",
            json!({ "terminal_id": pending_terminal, "order_ref": "B", "amount": 5 }),
        )
        .await;
    assert_envelope(&refused, StatusCode::CONFLICT, "merchant_not_approved");

    let expired = api.post("/api/v1/transactions/expire-due", json!({})).await;
    assert_eq!(expired.status, StatusCode::OK);
    assert_eq!(expired.body["count"], 0);
}

async fn post_raw(api: &TestApi, path: &str, headers: &[(&str, String)], body: &str) -> Reply {
    let mut request =
        axum::http::Request::post(path).header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    api.send(request.body(Body::from(body.to_string())).unwrap())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xendit_callbacks_pay_once_and_need_the_token() {
    let api = TestApi::with_providers(true).await;
    let id = order(&api, "ORD-X1", 10_000).await;
    let body = json!({
        "event": "qr.payment", "api_version": "2022-07-31",
        "data": {"id": "qrpy_x1", "amount": 10000, "currency": "IDR", "status": "SUCCEEDED",
                 "qr_id": "qr_1", "reference_id": "ORD-X1", "channel_code": "ID_DANA",
                 "payment_detail": {"source": "DANA", "receipt_id": "r1"}}
    })
    .to_string();
    let path = "/api/v1/payments/xendit/callback";
    let token = [("x-callback-token", XENDIT_TOKEN.to_string())];

    let forged = post_raw(&api, path, &[("x-callback-token", "wrong".into())], &body).await;
    assert_envelope(&forged, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        api.get(&format!("/api/v1/transactions/{id}")).await.body["status"],
        "pending"
    );

    let paid = post_raw(&api, path, &token, &body).await;
    assert_eq!(
        (paid.status, paid.body["outcome"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
    let again = post_raw(&api, path, &token, &body).await;
    assert_eq!(again.body["outcome"], "duplicate");
    let t = api.get(&format!("/api/v1/transactions/{id}")).await;
    assert_eq!(
        (t.body["status"].as_str(), t.body["issuer"].as_str()),
        (Some("paid"), Some("DANA"))
    );
    let ledger = api
        .get(&format!("/api/v1/ledger-entries?transaction_id={id}"))
        .await;
    assert_eq!(ledger.body["items"].as_array().unwrap().len(), 3);

    // The legacy flat shape works too.
    let legacy_id = order(&api, "ORD-X2", 15_000).await;
    let legacy = json!({
        "event": "qr.payment", "id": "qrpy_x2", "amount": 15000, "status": "COMPLETED",
        "qr_code": {"id": "qr_2", "external_id": "ORD-X2", "type": "DYNAMIC"}
    })
    .to_string();
    assert_eq!(
        post_raw(&api, path, &token, &legacy).await.body["outcome"],
        "applied"
    );
    assert_eq!(
        api.get(&format!("/api/v1/transactions/{legacy_id}"))
            .await
            .body["status"],
        "paid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_callbacks_check_signature_and_replay_window() {
    use gema_gateway::payments::providers::generic_signature;
    let api = TestApi::with_providers(true).await;
    let id = order(&api, "ORD-G1", 20_000).await;
    let path = "/api/v1/payments/callback";
    let body = json!({ "transaction_id": "bk-1", "order_ref": "ORD-G1", "amount": 20000, "status": "paid" })
        .to_string();
    // The gateway's clock is the test's: the replay window is measured from it.
    let clock_secs = gema_gateway::clock::Clock::now_ms(api.clock.as_ref()) / 1000;
    let now = clock_secs.to_string();
    let signed = |ts: &str, secret: &str| {
        vec![
            ("x-gema-timestamp", ts.to_string()),
            (
                "x-gema-signature",
                generic_signature(secret, ts, body.as_bytes()),
            ),
        ]
    };

    let forged = post_raw(&api, path, &signed(&now, "not-the-secret"), &body).await;
    assert_envelope(&forged, StatusCode::UNAUTHORIZED, "unauthorized");
    let old = (clock_secs - 3_600).to_string();
    let replayed = post_raw(&api, path, &signed(&old, GENERIC_SECRET), &body).await;
    assert_envelope(&replayed, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        api.get(&format!("/api/v1/transactions/{id}")).await.body["status"],
        "pending"
    );

    let paid = post_raw(&api, path, &signed(&now, GENERIC_SECRET), &body).await;
    assert_eq!(
        (paid.status, paid.body["outcome"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
    let again = post_raw(&api, path, &signed(&now, GENERIC_SECRET), &body).await;
    assert_eq!(again.body["outcome"], "duplicate");
    assert_eq!(
        api.get(&format!("/api/v1/transactions/{id}")).await.body["status"],
        "paid"
    );

    let malformed =
        r#"{"transaction_id":"bk-2","order_ref":"ORD-G1","amount":"lots","status":"paid"}"#;
    let sig = vec![
        ("x-gema-timestamp", now.clone()),
        (
            "x-gema-signature",
            generic_signature(GENERIC_SECRET, &now, malformed.as_bytes()),
        ),
    ];
    assert_envelope(
        &post_raw(&api, path, &sig, malformed).await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
}
