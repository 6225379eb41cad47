//! Export jobs through the router, run by the gateway's real worker on a real SQLite file:
//! queue, follow, download the CSV; bad input; who may; interruption; expiry.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gema_gateway::clock::Clock;
use gema_gateway::testing::eventually;
use gema_store::{ExportFilter, ExportKind, NewExport};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{MIDTRANS_KEY, TestApi, assert_envelope, field};
use crate::payments::{notification, notify};

/// A paid order of `amount` on `terminal`, its issuer as given: the transaction id.
async fn paid(api: &TestApi, terminal: &str, order_ref: &str, amount: i64, issuer: &str) -> String {
    let created = api
        .post(
            "/api/v1/transactions",
            json!({ "terminal_id": terminal, "order_ref": order_ref, "amount": amount }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let mut body = notification(
        order_ref,
        "settlement",
        &format!("{amount}.00"),
        MIDTRANS_KEY,
    );
    body["issuer"] = json!(issuer);
    let reply = notify(api, &body).await;
    assert_eq!(reply.body["outcome"], "applied", "{}", reply.body);
    created.body["id"].as_str().unwrap().to_string()
}

/// Polls the job until `status`; returns it.
async fn until_status(api: &TestApi, id: &str, status: &str) -> Value {
    eventually(&format!("export {id} {status}"), || async {
        let job = api.get(&format!("/api/v1/exports/{id}")).await;
        (job.body["status"] == status).then_some(job.body)
    })
    .await
}

/// The download: status, content type, body text.
async fn download(api: &TestApi, token: &str, id: &str) -> (StatusCode, String, String) {
    let request = Request::get(format!("/api/v1/exports/{id}/download"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

fn records(csv_text: &str) -> Vec<Vec<String>> {
    csv::Reader::from_reader(csv_text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

fn header_of(csv_text: &str) -> Vec<String> {
    csv::Reader::from_reader(csv_text.as_bytes())
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_export_runs_in_the_worker_and_downloads_as_csv() {
    let api = TestApi::new().await;
    let (merchant, _, terminal) = api.terminal(true).await;
    let (_, _, other_terminal) = api.terminal(true).await;
    let first = paid(&api, &terminal, "EXP-1", 25_000, "gopay").await;
    let second = paid(&api, &terminal, "EXP-2", 10_000, "ovo").await;
    paid(&api, &other_terminal, "EXP-3", 99_000, "dana").await;
    api.user("fin@example.id", "finance", None).await;
    let finance = api.login("fin@example.id").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let created = api
        .call_as(
            Some(&finance),
            "POST",
            "/api/v1/exports",
            Some(json!({ "kind": "ledger_entries", "merchant_id": merchant })),
            None,
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    assert_eq!(created.body["status"], "queued");
    assert_eq!(created.body["filters"]["merchant_id"], merchant.as_str());
    let id = created.body["id"].as_str().unwrap().to_owned();

    let done = until_status(&api, &id, "done").await;
    // Pages of two rows: six rows crossed three pages and reported progress on the way.
    assert_eq!(done["rows_total"], 6);
    assert_eq!(done["rows_done"], 6);
    assert_eq!(done["attempts"], 1);
    assert!(done["created_by"].as_str().unwrap().starts_with("user:"));
    assert!(done["expires_at"].is_string());

    let (status, content_type, text) = download(&api, &finance, &id).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    assert_eq!(done["file_bytes"], text.len());
    assert_eq!(
        header_of(&text),
        [
            "id",
            "created_at",
            "merchant_id",
            "transaction_id",
            "entry_type",
            "amount",
            "external_id",
            "reverses_id",
            "adjustment_id"
        ]
    );
    let rows = records(&text);
    let summary: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[3].as_str(), r[4].as_str(), r[5].as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (first.as_str(), "gross_income", "25000"),
            (first.as_str(), "platform_fee", "175"),
            (first.as_str(), "merchant_payable", "24825"),
            (second.as_str(), "gross_income", "10000"),
            (second.as_str(), "platform_fee", "70"),
            (second.as_str(), "merchant_payable", "9930"),
        ]
    );
    for row in &rows {
        assert_eq!(row[2], merchant);
        // Asia/Jakarta, with its offset, to the second.
        let at =
            time::OffsetDateTime::parse(&row[1], &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert_eq!(at.offset(), time::macros::offset!(+7), "{}", row[1]);
        assert!(
            row[1].ends_with("+07:00") && !row[1].contains('.'),
            "{}",
            row[1]
        );
    }

    let listed = api.get("/api/v1/exports?status=done").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["items"][0]["id"], id.as_str());

    // The write was audited with the caller as actor.
    let audit = api.get("/api/v1/audit-logs?action=export.jobs").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    let targets: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["target"].as_str())
        .collect();
    assert!(targets.contains(&"/api/v1/exports"), "{}", audit.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactions_export_filters_by_status_and_quotes_its_fields() {
    let api = TestApi::new().await;
    let (_, _, terminal) = api.terminal(true).await;
    let paid_id = paid(&api, &terminal, "EXP-P", 12_000, "Bank \"Rakyat\", QRIS").await;
    let pending = api
        .post(
            "/api/v1/transactions",
            json!({ "terminal_id": terminal, "order_ref": "EXP-Q", "amount": 5_000 }),
        )
        .await;
    assert_eq!(pending.status, StatusCode::CREATED);

    let created = api
        .post(
            "/api/v1/exports",
            json!({ "kind": "transactions", "status": "paid",
                    "from": "2020-01-01T00:00:00+07:00", "to": "2100-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let done = until_status(&api, &id, "done").await;
    assert_eq!(done["rows_total"], 1);

    let (status, _, text) = download(&api, &api.token, &id).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("\"Bank \"\"Rakyat\"\", QRIS\""),
        "the issuer quoted: {text}"
    );
    let rows = records(&text);
    assert_eq!(rows.len(), 1);
    let columns = header_of(&text);
    let col = |name: &str| columns.iter().position(|c| c == name).unwrap();
    assert_eq!(rows[0][col("id")], paid_id);
    assert_eq!(rows[0][col("amount")], "12000");
    assert_eq!(rows[0][col("status")], "paid");
    assert_eq!(rows[0][col("issuer")], "Bank \"Rakyat\", QRIS");
    // The notification's settlement time, 03:00:03 UTC, in Jakarta.
    assert_eq!(rows[0][col("paid_at")], "2026-11-21T10:00:03+07:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_export_requests_are_refused_naming_the_field() {
    let api = TestApi::new().await;
    let cases = [
        (
            json!({ "kind": "payouts" }),
            StatusCode::BAD_REQUEST,
            "kind",
        ),
        (json!({}), StatusCode::BAD_REQUEST, "kind"),
        (
            json!({ "kind": "ledger_entries", "from": "yesterday" }),
            StatusCode::BAD_REQUEST,
            "from",
        ),
        (
            json!({ "kind": "transactions", "status": "lost" }),
            StatusCode::BAD_REQUEST,
            "status",
        ),
        (
            json!({ "kind": "ledger_entries", "status": "paid" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "status",
        ),
        (
            json!({ "kind": "transactions", "entry_type": "platform_fee" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "entry_type",
        ),
        (
            json!({ "kind": "transactions", "from": "2026-12-02T00:00:00Z",
                    "to": "2026-12-01T00:00:00Z" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "to",
        ),
    ];
    for (body, status, named) in cases {
        let reply = api.post("/api/v1/exports", body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        assert_eq!(field(&reply), named, "{body}: {}", reply.body);
    }
    // An unknown filter is refused and named in the message.
    let reply = api
        .post(
            "/api/v1/exports",
            json!({ "kind": "transactions", "colour": "red" }),
        )
        .await;
    assert_envelope(&reply, StatusCode::BAD_REQUEST, "invalid_body");
    assert!(
        reply.body["message"].as_str().unwrap().contains("colour"),
        "{}",
        reply.body
    );
    // Nothing was queued by any of them.
    let listed = api.get("/api/v1/exports").await;
    assert_eq!(listed.body["items"], json!([]));
    let missing = api.get("/api/v1/exports/exp_nope").await;
    assert_envelope(&missing, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_users_may_not_touch_exports() {
    let api = TestApi::new().await;
    let (merchant, _, _) = api.terminal(true).await;
    // A merchant's own finance user too: exports are Gema's finance staff's.
    let mut tokens = Vec::new();
    for role in ["owner", "finance"] {
        let email = format!("{role}@warung.example.id");
        api.user(&email, role, Some(&merchant)).await;
        tokens.push(
            api.login(&email).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let job = api
        .post("/api/v1/exports", json!({ "kind": "ledger_entries" }))
        .await;
    let id = job.body["id"].as_str().unwrap().to_owned();
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/exports".to_owned(),
            Some(json!({ "kind": "ledger_entries", "merchant_id": merchant })),
        ),
        ("GET", "/api/v1/exports".to_owned(), None),
        ("GET", format!("/api/v1/exports/{id}"), None),
        ("GET", format!("/api/v1/exports/{id}/download"), None),
    ] {
        for token in &tokens {
            let reply = api
                .call_as(Some(token), method, &path, body.clone(), None)
                .await;
            assert_envelope(&reply, StatusCode::FORBIDDEN, "forbidden");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_by_a_vanished_node_is_taken_over_when_its_claim_runs_out() {
    let api = TestApi::new().await;
    let (_, _, terminal) = api.terminal(true).await;
    paid(&api, &terminal, "EXP-C", 40_000, "gopay").await;
    // Another node claimed the job and then vanished (its process killed mid-export).
    let job = api
        .store
        .create_export(NewExport {
            kind: ExportKind::LedgerEntries,
            filter: ExportFilter::default(),
            created_by: "user:test".into(),
        })
        .await
        .unwrap();
    let now = api.clock.now_ms();
    let claimed = api
        .store
        .claim_export("node-gone", now, now + 30_000, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, job.id);

    // While its claim lasts, the job is running and its file cannot be downloaded.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let running = api.get(&format!("/api/v1/exports/{}", job.id)).await;
    assert_eq!(running.body["status"], "running");
    let (status, _, text) = download(&api, &api.token, &job.id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(text.contains("export_not_done"), "{text}");

    // The claim runs out: this node's worker starts the job again, from scratch.
    api.clock.advance(Duration::from_secs(31));
    let done = until_status(&api, &job.id, "done").await;
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["rows_done"], 3);
    let (status, _, text) = download(&api, &api.token, &job.id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(records(&text).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_past_its_retention_is_deleted_and_its_job_expires() {
    let api = TestApi::new().await;
    let created = api
        .post("/api/v1/exports", json!({ "kind": "transactions" }))
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let done = until_status(&api, &id, "done").await;
    assert_eq!(done["rows_total"], 0);
    let file = api.dir().join("exports").join(format!("{id}.csv"));
    assert!(file.exists(), "{}", file.display());
    let (status, _, text) = download(&api, &api.token, &id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text.lines().count(), 1, "only the header: {text}");

    // Retention is a day by default.
    api.clock.advance(Duration::from_secs(23 * 3600));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        api.get(&format!("/api/v1/exports/{id}")).await.body["status"],
        "done"
    );
    api.clock.advance(Duration::from_secs(3600));
    until_status(&api, &id, "expired").await;
    assert!(!file.exists());
    let (status, _, text) = download(&api, &api.token, &id).await;
    assert_eq!(status, StatusCode::GONE, "{text}");
    assert!(text.contains("export_expired"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_adjustments_export_by_type() {
    let api = TestApi::new().await;
    let (merchant, _, terminal) = api.terminal(true).await;
    paid(&api, &terminal, "EXP-S", 80_000, "gopay").await;
    let batch = crate::permissions::settled_batch(&api, &merchant).await; // a manual +100
    let hold = api
        .post(
            &format!("/api/v1/settlement-batches/{batch}/adjustments"),
            json!({ "adjustment_type": "hold", "amount": -5_000, "reason": "=KTP, belum \"lengkap\"" }),
        )
        .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
    let refused = api
        .post(
            "/api/v1/exports",
            json!({ "kind": "settlement_adjustments", "adjustment_type": "bonus" }),
        )
        .await;
    assert_eq!(field(&refused), "adjustment_type", "{}", refused.body);
    let refused = api
        .post(
            "/api/v1/exports",
            json!({ "kind": "transactions", "adjustment_type": "hold" }),
        )
        .await;
    assert_eq!(field(&refused), "adjustment_type", "{}", refused.body);

    let created = api
        .post(
            "/api/v1/exports",
            json!({ "kind": "settlement_adjustments", "adjustment_type": "hold",
                    "merchant_id": merchant }),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let done = until_status(&api, &id, "done").await;
    assert_eq!(done["rows_total"], 1);
    let (status, _, text) = download(&api, &api.token, &id).await;
    assert_eq!(status, StatusCode::OK);
    let columns = header_of(&text);
    let rows = records(&text);
    assert_eq!(rows.len(), 1, "{text}");
    let col = |name: &str| columns.iter().position(|c| c == name).unwrap();
    assert_eq!(rows[0][col("batch_id")], batch);
    assert_eq!(rows[0][col("adjustment_type")], "hold");
    assert_eq!(rows[0][col("amount")], "-5000");
    // Quoted, and defused: a spreadsheet shows it and does not run it as a formula.
    assert_eq!(rows[0][col("reason")], "'=KTP, belum \"lengkap\"");
    assert!(rows[0][col("created_at")].ends_with("+07:00"));
}
