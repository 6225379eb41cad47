//! WhatsApp over the API: Meta's webhook (the handshake, signed deliveries, statuses that
//! only move a message forward, STOP and MULAI), the outbox's retry and cancel rules, staff
//! messages to one or many numbers, merchant users kept to their merchant, a sender whose
//! token never comes back, texts held to their kind's placeholders, and Jakarta hours.
//!
//! The operator's sender is paused for good ([`TestApi::with_whatsapp`]), so the worker
//! never takes a message: a test moves a message itself (claim, then finish) where it needs
//! one sent, and applies webhooks with `process_webhooks` instead of waiting.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gema_gateway::whatsapp::webhook::sign;
use gema_store::{NewWaMessage, OPERATOR_SENDER, WaSendOutcome};
use serde_json::{Value, json};

use crate::helpers::{
    Reply, TestApi, WA_APP_SECRET, WA_PHONE_NUMBER_ID, WA_VERIFY_TOKEN, assert_envelope, field,
};

/// Every test here runs on SQLite and on PostgreSQL (the latter under `scripts/with-postgres`).
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let api = crate::helpers::TestApi::with_whatsapp(false).await.unwrap();
                    super::$test(api).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(api) = crate::helpers::TestApi::with_whatsapp(true).await {
                        super::$test(api).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    meta_verification_answers_the_challenge_only_to_the_verify_token,
    a_signed_webhook_is_recorded_and_a_bad_signature_records_nothing,
    statuses_move_a_message_forward_only_and_it_ends_read,
    stop_opts_a_number_out_and_mulai_opts_it_back_in,
    retry_takes_failed_or_uncertain_and_cancel_takes_pending,
    merchant_users_see_and_touch_only_their_merchants_messages,
    a_sender_answer_never_carries_its_token_or_header_values,
    texts_take_only_their_kinds_placeholders_and_reset_to_the_built_in_one,
    settings_are_jakarta_hours_and_bad_input_names_its_field,
    staff_messages_name_the_bad_field_and_bulk_counts_what_it_skipped,
);

const CUSTOMER: &str = "6281234567890";

/// A message of `merchant` written straight into the outbox (no sender needed; with none
/// configured the worker never takes it): for the permission walk.
pub(crate) async fn stored_message(api: &TestApi, merchant: &str) -> String {
    let queued = api
        .store
        .enqueue_wa_messages(vec![NewWaMessage {
            merchant_id: Some(merchant.to_owned()),
            sender_id: OPERATOR_SENDER.to_owned(),
            recipient: CUSTOMER.to_owned(),
            kind: "manual".into(),
            bulk: false,
            body: "Halo".into(),
            template_params: None,
            dedupe_key: None,
            not_before_ms: 0,
            created_by: "test".into(),
        }])
        .await
        .unwrap();
    queued[0].id.clone()
}

async fn merchant(api: &TestApi) -> String {
    let r = api
        .post("/api/v1/merchants", json!({ "name": "Warung Sari" }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

/// A staff message from the operator's token: the queued message.
async fn send(api: &TestApi, merchant: &str, to: &str, text: &str) -> Reply {
    api.post(
        &format!("/api/v1/merchants/{merchant}/whatsapp/messages"),
        json!({ "to": to, "text": text }),
    )
    .await
}

async fn queued(api: &TestApi, merchant: &str) -> String {
    let r = send(
        api,
        merchant,
        "0812-3456-7890",
        "Halo, pesanan siap diambil",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["recipient"], CUSTOMER);
    r.body["id"].as_str().unwrap().to_string()
}

/// The message as the API shows it, and its log's statuses.
async fn message(api: &TestApi, id: &str) -> (Value, Vec<String>) {
    let r = api.get(&format!("/api/v1/whatsapp/messages/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let events = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_string())
        .collect();
    (r.body["message"].clone(), events)
}

/// What the worker does to send a message, done by the test: claimed, then accepted by
/// WhatsApp with `wamid`.
async fn mark_sent(api: &TestApi, id: &str, wamid: &str) {
    let now = now_ms(api);
    let claimed = api
        .store
        .claim_wa_message(id, "test-node", now, now + 60_000)
        .await
        .unwrap();
    assert!(claimed.is_some(), "the message was pending");
    api.store
        .finish_wa_message(
            id,
            WaSendOutcome::Sent {
                wamid: wamid.to_owned(),
                at_ms: now,
            },
            now,
        )
        .await
        .unwrap();
}

async fn post_webhook(api: &TestApi, body: &str, signature: Option<&str>) -> Reply {
    let mut request =
        Request::post("/api/v1/whatsapp/webhook").header(header::CONTENT_TYPE, "application/json");
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    api.send(request.body(Body::from(body.to_owned())).unwrap())
        .await
}

/// Delivers a webhook signed with the app secret and applies it at once.
async fn deliver(api: &TestApi, body: Value) {
    let body = body.to_string();
    let r = post_webhook(
        api,
        &body,
        Some(&sign(WA_APP_SECRET.as_bytes(), body.as_bytes())),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({ "status": "ok" }));
    api.gateway
        .gateway
        .whatsapp
        .process_webhooks()
        .await
        .unwrap();
}

fn envelope(value: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "WABA-1", "changes": [{ "field": "messages", "value": value }] }]
    })
}

fn status_webhook(wamid: &str, status: &str, timestamp: i64) -> Value {
    envelope(json!({
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "6281100000000", "phone_number_id": WA_PHONE_NUMBER_ID },
        "statuses": [{ "id": wamid, "status": status, "timestamp": timestamp.to_string(),
                       "recipient_id": CUSTOMER }]
    }))
}

fn inbound_webhook(wamid: &str, text: &str) -> Value {
    envelope(json!({
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "6281100000000", "phone_number_id": WA_PHONE_NUMBER_ID },
        "contacts": [{ "wa_id": CUSTOMER, "profile": { "name": "Budi" } }],
        "messages": [{ "from": CUSTOMER, "id": wamid, "timestamp": "1700000000",
                       "type": "text", "text": { "body": text } }]
    }))
}

/// A merchant user's access token.
async fn merchant_user(api: &TestApi, email: &str, role: &str, merchant: &str) -> String {
    api.user(email, role, Some(merchant)).await;
    api.login(email).await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The test clock's instant.
fn now_ms(api: &TestApi) -> i64 {
    use gema_gateway::clock::Clock;
    api.clock.now_ms()
}

async fn meta_verification_answers_the_challenge_only_to_the_verify_token(api: TestApi) {
    let path = |mode: &str, token: &str| {
        format!(
            "/api/v1/whatsapp/webhook?hub.mode={mode}&hub.verify_token={token}&hub.challenge=1158201444"
        )
    };
    let (status, headers, body) = api
        .get_bytes(None, &path("subscribe", WA_VERIFY_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(body, b"1158201444");

    for wrong in [
        path("subscribe", "not-the-token"),
        path("unsubscribe", WA_VERIFY_TOKEN),
        "/api/v1/whatsapp/webhook?hub.mode=subscribe&hub.challenge=1".to_string(),
    ] {
        let r = api.call_as(None, "GET", &wrong, None, None).await;
        assert_envelope(&r, StatusCode::FORBIDDEN, "forbidden");
    }
}

async fn a_signed_webhook_is_recorded_and_a_bad_signature_records_nothing(api: TestApi) {
    // A status for a message not in the outbox yet: kept unprocessed for a while (the
    // send's answer may still be on its way), so the recorded row stays visible.
    let body = status_webhook("wamid.not-yet-known", "delivered", 1_700_000_100).to_string();
    let inbox = || async {
        api.store
            .unprocessed_wa_webhooks(100)
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.body)
            .collect::<Vec<_>>()
    };

    let wrong_secret = sign(b"someone-elses-secret", body.as_bytes());
    for signature in [
        None,
        Some(wrong_secret.as_str()),
        Some("sha256=00"),
        Some("not a signature"),
    ] {
        let r = post_webhook(&api, &body, signature).await;
        assert_envelope(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // The right signature over other bytes.
    let tampered = body.replace("delivered", "read");
    let r = post_webhook(
        &api,
        &tampered,
        Some(&sign(WA_APP_SECRET.as_bytes(), body.as_bytes())),
    )
    .await;
    assert_envelope(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(inbox().await.is_empty(), "nothing recorded");

    let r = post_webhook(
        &api,
        &body,
        Some(&sign(WA_APP_SECRET.as_bytes(), body.as_bytes())),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({ "status": "ok" }));
    api.gateway
        .gateway
        .whatsapp
        .process_webhooks()
        .await
        .unwrap();
    assert_eq!(inbox().await, vec![body], "recorded as received");
}

async fn statuses_move_a_message_forward_only_and_it_ends_read(api: TestApi) {
    let merchant = merchant(&api).await;
    let id = queued(&api, &merchant).await;
    mark_sent(&api, &id, "wamid.HBgNNjI4MTIzNDU2Nzg5MA").await;
    let (sent, _) = message(&api, &id).await;
    assert_eq!(sent["status"], "sent");

    let mut seen = Vec::new();
    for (status, at) in [
        ("delivered", 1_700_000_200),
        ("sent", 1_700_000_100),
        ("read", 1_700_000_300),
        ("failed", 1_700_000_400),
        ("delivered", 1_700_000_500),
    ] {
        deliver(
            &api,
            status_webhook("wamid.HBgNNjI4MTIzNDU2Nzg5MA", status, at),
        )
        .await;
        seen.push(message(&api, &id).await.0["status"].clone());
    }
    assert_eq!(
        seen,
        ["delivered", "delivered", "read", "read", "read"],
        "a late sent, a failed after read and a repeated delivered change nothing"
    );
    let (read, events) = message(&api, &id).await;
    assert_eq!(read["delivered_at"], "2023-11-14T22:16:40Z");
    assert_eq!(read["read_at"], "2023-11-14T22:18:20Z");
    assert_eq!(read["last_error"], Value::Null);
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "delivered" || *e == "read")
            .count(),
        2,
        "one log line per move: {events:?}"
    );
}

async fn stop_opts_a_number_out_and_mulai_opts_it_back_in(api: TestApi) {
    let merchant = merchant(&api).await;
    queued(&api, &merchant).await;

    deliver(&api, inbound_webhook("wamid.in-1", " stop ")).await;
    let r = send(&api, &merchant, "+62 812 3456 7890", "Promo hari ini").await;
    assert_envelope(&r, StatusCode::CONFLICT, "opted_out");
    assert_eq!(field(&r), "to");
    let bulk = api
        .post(
            &format!("/api/v1/merchants/{merchant}/whatsapp/bulk"),
            json!({ "text": "Promo", "to": ["081234567890", "081298765432"] }),
        )
        .await;
    assert_eq!(bulk.status, StatusCode::ACCEPTED, "{}", bulk.body);
    assert_eq!(bulk.body, json!({ "queued": 1, "skipped": 1 }));

    // The same delivery again changes nothing; a message that only mentions stop neither.
    deliver(&api, inbound_webhook("wamid.in-1", "STOP")).await;
    deliver(
        &api,
        inbound_webhook("wamid.in-2", "stop dulu ya, nanti MULAI lagi"),
    )
    .await;
    assert_eq!(
        send(&api, &merchant, CUSTOMER, "Halo").await.status,
        StatusCode::CONFLICT
    );

    deliver(&api, inbound_webhook("wamid.in-3", "MULAI")).await;
    let r = send(&api, &merchant, CUSTOMER, "Selamat datang kembali").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
}

async fn retry_takes_failed_or_uncertain_and_cancel_takes_pending(api: TestApi) {
    let merchant = merchant(&api).await;
    let action = |id: &str, what: &str| format!("/api/v1/whatsapp/messages/{id}/{what}");

    // Pending: not retried; cancelled once.
    let pending = queued(&api, &merchant).await;
    let r = api.call("POST", &action(&pending, "retry"), None).await;
    assert_envelope(&r, StatusCode::CONFLICT, "wrong_status");
    let r = api.call("POST", &action(&pending, "cancel"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    for what in ["cancel", "retry"] {
        let r = api.call("POST", &action(&pending, what), None).await;
        assert_envelope(&r, StatusCode::CONFLICT, "wrong_status");
    }

    // Failed: retried, pending again and due now.
    let failed = queued(&api, &merchant).await;
    let now = now_ms(&api);
    api.store
        .claim_wa_message(&failed, "test-node", now, now + 60_000)
        .await
        .unwrap()
        .unwrap();
    api.store
        .finish_wa_message(
            &failed,
            WaSendOutcome::Failed {
                error_code: Some(131026),
                error: "Message undeliverable".into(),
            },
            now,
        )
        .await
        .unwrap();
    let r = api.call("POST", &action(&failed, "cancel"), None).await;
    assert_envelope(&r, StatusCode::CONFLICT, "wrong_status");
    let r = api.call("POST", &action(&failed, "retry"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    let (_, events) = message(&api, &failed).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("retry"),
        "{events:?}"
    );

    // Uncertain (its worker stopped mid-send): retried only by a person.
    let uncertain = queued(&api, &merchant).await;
    api.store
        .claim_wa_message(&uncertain, "test-node", now, now + 1)
        .await
        .unwrap()
        .unwrap();
    let stale = api.store.mark_stale_wa_sends(now + 10).await.unwrap();
    assert_eq!(stale, vec![uncertain.clone()]);
    assert_eq!(message(&api, &uncertain).await.0["status"], "uncertain");
    let r = api.call("POST", &action(&uncertain, "retry"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "pending");

    let r = api.call("POST", &action("wam_nope", "retry"), None).await;
    assert_envelope(&r, StatusCode::NOT_FOUND, "not_found");

    // Each write has its audit row.
    let audit = api.get("/api/v1/audit-logs?action=whatsapp.operate").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    let outcomes: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 8, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == "200").count(), 3);
}

async fn merchant_users_see_and_touch_only_their_merchants_messages(api: TestApi) {
    let a = merchant(&api).await;
    let b = merchant(&api).await;
    let mine = queued(&api, &a).await;
    let theirs = queued(&api, &b).await;
    let owner = merchant_user(&api, "owner@a.test", "owner", &a).await;
    let ops = merchant_user(&api, "ops@a.test", "ops", &a).await;
    let viewer = merchant_user(&api, "viewer@a.test", "viewer", &a).await;
    let as_ = |token: &str, method: &str, path: &str, body: Option<Value>| {
        let token = token.to_string();
        let method = method.to_string();
        let path = path.to_string();
        let api = &api;
        async move { api.call_as(Some(&token), &method, &path, body, None).await }
    };

    let list = as_(&owner, "GET", "/api/v1/whatsapp/messages", None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()]);
    let all = api.get("/api/v1/whatsapp/messages").await;
    assert_eq!(
        all.body["items"].as_array().unwrap().len(),
        2,
        "operators see both"
    );

    for path in [
        format!("/api/v1/whatsapp/messages?merchant_id={b}"),
        format!("/api/v1/whatsapp/summary?merchant_id={b}"),
        format!("/api/v1/whatsapp/messages/{theirs}"),
        format!("/api/v1/merchants/{b}/whatsapp/texts"),
    ] {
        let r = as_(&owner, "GET", &path, None).await;
        assert_envelope(&r, StatusCode::NOT_FOUND, "not_found");
    }
    for what in ["retry", "cancel"] {
        let r = as_(
            &owner,
            "POST",
            &format!("/api/v1/whatsapp/messages/{theirs}/{what}"),
            None,
        )
        .await;
        assert_envelope(&r, StatusCode::NOT_FOUND, "not_found");
    }
    let r = as_(
        &owner,
        "POST",
        &format!("/api/v1/merchants/{b}/whatsapp/messages"),
        Some(json!({ "to": CUSTOMER, "text": "Halo" })),
    )
    .await;
    assert_envelope(&r, StatusCode::NOT_FOUND, "not_found");

    let summary = as_(&owner, "GET", "/api/v1/whatsapp/summary", None).await;
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.body);
    assert_eq!(summary.body["merchant_id"], a.as_str());
    assert_eq!(summary.body["counts"]["pending"], 1);
    assert_eq!(summary.body["counts"]["read"], 0);
    let everyone = api.get("/api/v1/whatsapp/summary").await;
    assert_eq!(everyone.body["counts"]["pending"], 2);

    // Merchant ops write to customers but neither cancel nor manage; viewers see nothing.
    let r = as_(
        &ops,
        "POST",
        &format!("/api/v1/merchants/{a}/whatsapp/messages"),
        Some(json!({ "to": "081234567891", "text": "Pesanan siap" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert!(r.body["created_by"].as_str().unwrap().starts_with("user:"));
    let r = as_(
        &ops,
        "POST",
        &format!("/api/v1/whatsapp/messages/{mine}/cancel"),
        None,
    )
    .await;
    assert_envelope(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = as_(
        &ops,
        "PUT",
        &format!("/api/v1/merchants/{a}/whatsapp/texts/manual"),
        Some(json!({ "body": "{text}" })),
    )
    .await;
    assert_envelope(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = as_(&viewer, "GET", "/api/v1/whatsapp/messages", None).await;
    assert_envelope(&r, StatusCode::FORBIDDEN, "forbidden");

    // The owner cancels its own.
    let r = as_(
        &owner,
        "POST",
        &format!("/api/v1/whatsapp/messages/{mine}/cancel"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(message(&api, &theirs).await.0["status"], "pending");
}

async fn a_sender_answer_never_carries_its_token_or_header_values(api: TestApi) {
    let merchant = merchant(&api).await;
    let path = format!("/api/v1/merchants/{merchant}/whatsapp/sender");
    let r = api.get(&path).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, Value::Null, "no sender: the operator's number");

    let token = "EAAGm0PX4ZCpsBA-merchant-secret-token";
    let r = api
        .call(
            "PUT",
            &path,
            Some(json!({ "kind": "cloud", "phone_number_id": "109876543210",
                          "access_token": token, "rate_per_sec": 20, "active": false })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["kind"], "cloud");
    assert_eq!(r.body["has_access_token"], true);
    assert_eq!(r.body["active"], false);
    assert!(!r.body.to_string().contains(token));
    let r = api.get(&path).await;
    assert_eq!(r.body["phone_number_id"], "109876543210");
    assert!(!r.body.to_string().contains(token));

    let header_secret = "Bearer gw-header-secret-value";
    let r = api
        .call(
            "PUT",
            &path,
            Some(
                json!({ "kind": "gateway", "gateway_url": "http://127.0.0.1:9/send",
                          "gateway_headers": { "Authorization": header_secret },
                          "gateway_body": "{\"phone\":\"{to}\",\"message\":\"{text}\"}",
                          "active": false }),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["gateway_header_names"], json!(["Authorization"]));
    assert_eq!(r.body["has_access_token"], false);
    assert!(!r.body.to_string().contains(header_secret));

    // Nor does the audit log keep them (before or after).
    let audit = api.get("/api/v1/audit-logs?action=whatsapp.manage").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    assert_eq!(audit.body["items"].as_array().unwrap().len(), 2);
    let text = audit.body.to_string();
    assert!(
        !text.contains(token) && !text.contains(header_secret),
        "{text}"
    );

    for (body, bad) in [
        (
            json!({ "kind": "cloud", "phone_number_id": "1098" }),
            "access_token",
        ),
        (
            json!({ "kind": "cloud", "access_token": "x" }),
            "phone_number_id",
        ),
        (
            json!({ "kind": "gateway", "gateway_url": "ftp://x", "gateway_body": "{}" }),
            "gateway_url",
        ),
        (
            json!({ "kind": "cloud", "phone_number_id": "1", "access_token": "x", "rate_per_sec": 0 }),
            "rate_per_sec",
        ),
    ] {
        let r = api.call("PUT", &path, Some(body)).await;
        assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(field(&r), bad);
    }
    let r = api.call("PUT", &path, Some(json!({ "kind": "sms" }))).await;
    assert_envelope(&r, StatusCode::BAD_REQUEST, "invalid_body");
    assert_eq!(field(&r), "kind");

    let r = api.call("DELETE", &path, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(api.get(&path).await.body, Value::Null);
    let r = api.call("DELETE", &path, None).await;
    assert_envelope(&r, StatusCode::NOT_FOUND, "not_found");
    let r = api.get("/api/v1/merchants/mer_nope/whatsapp/sender").await;
    assert_envelope(&r, StatusCode::NOT_FOUND, "not_found");
}

async fn texts_take_only_their_kinds_placeholders_and_reset_to_the_built_in_one(api: TestApi) {
    let merchant = merchant(&api).await;
    let texts = format!("/api/v1/merchants/{merchant}/whatsapp/texts");
    let all = api.get(&texts).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let reminder = |body: &Value| {
        body.as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == "reminder")
            .unwrap()
            .clone()
    };
    let built_in = reminder(&all.body);
    assert_eq!(all.body.as_array().unwrap().len(), 11);
    assert_eq!(built_in["custom"], false);
    assert!(
        built_in["placeholders"]
            .as_array()
            .unwrap()
            .contains(&json!("due_date"))
    );

    let own =
        "Halo {customer}, tagihan {package} {period} sebesar {amount} jatuh tempo {due_date}.";
    let r = api
        .call(
            "PUT",
            &format!("{texts}/reminder"),
            Some(json!({ "body": own })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["custom"], true);
    assert_eq!(r.body["body"], own);
    assert_eq!(reminder(&api.get(&texts).await.body)["body"], own);

    // A device's placeholder is not a reminder's.
    let r = api
        .call(
            "PUT",
            &format!("{texts}/reminder"),
            Some(json!({ "body": "Perangkat {device} mati" })),
        )
        .await;
    assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field(&r), "body");
    let r = api
        .call(
            "PUT",
            &format!("{texts}/sms"),
            Some(json!({ "body": "Halo" })),
        )
        .await;
    assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field(&r), "kind");
    assert_eq!(
        reminder(&api.get(&texts).await.body)["body"],
        own,
        "unchanged"
    );

    let r = api.call("DELETE", &format!("{texts}/reminder"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(reminder(&api.get(&texts).await.body), built_in);
    let r = api.call("DELETE", &format!("{texts}/sms"), None).await;
    assert_eq!(field(&r), "kind");
}

async fn settings_are_jakarta_hours_and_bad_input_names_its_field(api: TestApi) {
    let merchant = merchant(&api).await;
    let path = format!("/api/v1/merchants/{merchant}/whatsapp/settings");
    let r = api.get(&path).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({ "merchant_id": merchant, "contact_phone": null, "daily_summary": false,
                "device_alerts": false, "open": "08:00", "close": "21:00" })
    );

    let r = api
        .call(
            "PUT",
            &path,
            Some(
                json!({ "contact_phone": "0811-2233-4455", "daily_summary": true,
                          "device_alerts": true, "open": "07:30", "close": "24:00" }),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let expected = json!({ "merchant_id": merchant, "contact_phone": "6281122334455",
        "daily_summary": true, "device_alerts": true, "open": "07:30", "close": "24:00" });
    assert_eq!(r.body, expected);
    assert_eq!(api.get(&path).await.body, expected);

    for (body, bad) in [
        (json!({ "open": "25:00" }), "open"),
        (json!({ "open": "7.30" }), "open"),
        (json!({ "open": "10:00", "close": "09:00" }), "close"),
        (json!({ "close": "8pm" }), "close"),
        (json!({ "contact_phone": "12345" }), "contact_phone"),
    ] {
        let r = api.call("PUT", &path, Some(body)).await;
        assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(field(&r), bad);
    }
    assert_eq!(api.get(&path).await.body, expected, "unchanged");
}

async fn staff_messages_name_the_bad_field_and_bulk_counts_what_it_skipped(api: TestApi) {
    let merchant = merchant(&api).await;
    let too_long = "x".repeat(4097);
    for (to, text, bad) in [
        ("12345", "Halo", "to"),
        ("0812 3456 7890", "   ", "text"),
        ("0812 3456 7890", too_long.as_str(), "text"),
    ] {
        let r = send(&api, &merchant, to, text).await;
        assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(field(&r), bad);
    }
    let r = send(&api, "mer_nope", CUSTOMER, "Halo").await;
    assert_envelope(&r, StatusCode::NOT_FOUND, "not_found");

    let bulk = format!("/api/v1/merchants/{merchant}/whatsapp/bulk");
    let r = api
        .post(
            &bulk,
            json!({ "text": "Libur lebaran", "to": ["081234567890", "+6281234567890", "081298765432"] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body, json!({ "queued": 2, "skipped": 1 }));
    let listed = api
        .get(&format!(
            "/api/v1/whatsapp/messages?kind=bulk&merchant_id={merchant}"
        ))
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
    let listed = api
        .get("/api/v1/whatsapp/messages?status=pending&recipient=081298765432")
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    for (query, bad) in [
        ("kind=sms", "kind"),
        ("status=lost", "status"),
        ("recipient=1", "recipient"),
    ] {
        let r = api.get(&format!("/api/v1/whatsapp/messages?{query}")).await;
        assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(field(&r), bad);
    }

    // Every active billing customer: a stopped one is left out.
    let package = crate::billing::package(&api, "Paket 10", 100_000).await;
    crate::billing::customer(&api, &merchant, &package, "081311110001", 5, 0).await;
    crate::billing::customer(&api, &merchant, &package, "081311110002", 5, 0).await;
    let stopped = crate::billing::customer(&api, &merchant, &package, "081311110003", 5, 0).await;
    let r = api
        .post(
            &format!("/api/v1/customers/{}/stop", stopped["id"].as_str().unwrap()),
            json!({ "reason": "pindah" }),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = api
        .post(
            &bulk,
            json!({ "text": "Gangguan jaringan", "customers": "active" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body, json!({ "queued": 2, "skipped": 0 }));

    for (body, bad) in [
        (json!({ "text": "Halo", "customers": "all" }), "customers"),
        (json!({ "text": "Halo" }), "to"),
        (json!({ "text": "Halo", "to": [] }), "to"),
        (
            json!({ "text": "Halo", "to": ["0812345678901", "nope"] }),
            "to",
        ),
        (json!({ "text": "", "to": [CUSTOMER] }), "text"),
    ] {
        let r = api.post(&bulk, body).await;
        assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(field(&r), bad);
    }
}
