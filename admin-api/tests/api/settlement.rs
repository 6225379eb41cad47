//! Merchant payouts over HTTP: bank accounts (validated, masked by role), generation with
//! skips reported, the lifecycle's refusals, adjustments, the two CSV reports, merchant
//! scoping, the batch reconciliation and the dashboard summary.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{MIDTRANS_KEY, TestApi};
use crate::payments::{notification, notify};

/// A merchant with a terminal and `amounts` paid through Midtrans; returns the merchant.
async fn merchant_with_payments(api: &TestApi, tag: &str, amounts: &[i64]) -> String {
    let (merchant, _, terminal) = api.terminal(true).await;
    for (i, amount) in amounts.iter().enumerate() {
        let order = format!("ORD-{tag}-{i}");
        let created = api
            .post(
                "/api/v1/transactions",
                json!({ "terminal_id": terminal, "order_ref": order, "amount": amount }),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let paid = notify(
            api,
            &notification(&order, "settlement", &format!("{amount}.00"), MIDTRANS_KEY),
        )
        .await;
        assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    }
    merchant
}

async fn put(api: &TestApi, path: &str, body: Value) -> crate::helpers::Reply {
    api.call("PUT", path, Some(body)).await
}

fn assert_invalid(reply: &crate::helpers::Reply, field: &str) {
    assert!(
        reply.status == StatusCode::UNPROCESSABLE_ENTITY || reply.status == StatusCode::BAD_REQUEST,
        "{} {}",
        reply.status,
        reply.body
    );
    assert_eq!(reply.body["details"]["field"], field, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_generated_paid_exported_and_reconciled() {
    let api = TestApi::with_providers(true).await;
    // Today's figures are in Jakarta days of the real clock (ledger ids carry it).
    api.clock.set_ms(
        i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap(),
    );
    let sari = merchant_with_payments(&api, "sari", &[100_000, 50_000]).await;
    let budi = merchant_with_payments(&api, "budi", &[30_000]).await;

    // Bank details are validated, field by field.
    let bank = |code: &str, number: &str, holder: &str| json!({ "bank_code": code, "account_number": number, "account_holder": holder });
    let path = format!("/api/v1/merchants/{sari}/bank-account");
    assert_invalid(
        &put(&api, &path, bank("14", "1234567890", "Sari")).await,
        "bank_code",
    );
    assert_invalid(
        &put(&api, &path, bank("014", "12AB", "Sari")).await,
        "account_number",
    );
    assert_invalid(
        &put(&api, &path, bank("014", "1234567890", " ")).await,
        "account_holder",
    );
    let saved = put(&api, &path, bank("014", "123-456-7890", "Warung Sari")).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert_eq!(
        saved.body["account_number"], "••••••7890",
        "a write's answer is masked"
    );
    let missing = put(
        &api,
        "/api/v1/merchants/mer_nobody/bank-account",
        bank("014", "1234567890", "X"),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Finance sees the whole number, support the last four digits.
    api.user("finance@ops.test", "finance", None).await;
    api.user("support@ops.test", "support", None).await;
    let finance = api.login("finance@ops.test").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let support = api.login("support@ops.test").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let seen = api.call_as(Some(&finance), "GET", &path, None, None).await;
    assert_eq!(seen.body["account_number"], "1234567890");
    let seen = api.call_as(Some(&support), "GET", &path, None, None).await;
    assert_eq!(seen.body["account_number"], "••••••7890");
    assert_eq!(seen.body["account_number_masked"], true);

    // Payout settings: validated; Budi keeps the configured defaults (Rp 50,000 minimum).
    let settings = format!("/api/v1/merchants/{sari}/payout-settings");
    let bad = put(
        &api,
        &settings,
        json!({ "schedule": "daily", "minimum_amount": 0, "cutoff_time": "17:00" }),
    )
    .await;
    assert_invalid(&bad, "minimum_amount");
    let bad = put(
        &api,
        &settings,
        json!({ "schedule": "hourly", "minimum_amount": 1, "cutoff_time": "17:00" }),
    )
    .await;
    assert_invalid(&bad, "schedule");
    let bad = put(
        &api,
        &settings,
        json!({ "schedule": "daily", "minimum_amount": 1, "cutoff_time": "25:00" }),
    )
    .await;
    assert_invalid(&bad, "cutoff_time");
    let defaults = api
        .get(&format!("/api/v1/merchants/{budi}/payout-settings"))
        .await;
    assert_eq!(defaults.body["is_default"], true);
    assert_eq!(defaults.body["minimum_amount"], 50_000);

    // Generation: bad input first, then one batch, the skip said out loud.
    let future = (time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = api
        .post("/api/v1/settlement-batches", json!({ "cutoff": future }))
        .await;
    assert_invalid(&r, "cutoff");
    let r = api
        .post("/api/v1/settlement-batches", json!({ "merchant_ids": [] }))
        .await;
    assert_invalid(&r, "merchant_ids");
    let r = api
        .post(
            "/api/v1/settlement-batches",
            json!({ "merchant_ids": ["mer_nobody"] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let made = api.post("/api/v1/settlement-batches", json!({})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let batches = made.body["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 1, "{}", made.body);
    let batch = batches[0]["id"].as_str().unwrap().to_string();
    // 0.7% fee, floored: 100,000 → 99,300; 50,000 → 49,650.
    assert_eq!(batches[0]["net_amount"], 148_950);
    assert_eq!(batches[0]["merchant_id"], sari.as_str());
    let skipped = made.body["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["merchant_id"], budi.as_str());
    assert_eq!(skipped[0]["reason"], "no_bank_account");
    assert_eq!(skipped[0]["amount"], 29_790);

    // Adjustments: the sign rules, then a hold that shows in the batch and the ledger.
    let adjust = |kind: &str, amount: i64| json!({ "adjustment_type": kind, "amount": amount, "reason": "KTP belum lengkap" });
    let at = format!("/api/v1/settlement-batches/{batch}/adjustments");
    assert_invalid(&api.post(&at, adjust("hold", 5_000)).await, "amount");
    assert_invalid(
        &api.post(&at, adjust("bonus", 5_000)).await,
        "adjustment_type",
    );
    assert_invalid(&api.post(&at, adjust("manual", 0)).await, "amount");
    let too_much = api.post(&at, adjust("release", 1_000)).await;
    assert_eq!(too_much.status, StatusCode::CONFLICT, "{}", too_much.body);
    assert_eq!(
        too_much.body["details"]["field"], "amount",
        "{}",
        too_much.body
    );
    let held = api.post(&at, adjust("hold", -8_950)).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    assert_eq!(held.body["batch"]["net_amount"], 140_000);
    let listed = api
        .get(&format!(
            "/api/v1/settlement-adjustments?merchant_id={sari}&adjustment_type=hold"
        ))
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    let bad_filter = api
        .get("/api/v1/settlement-adjustments?adjustment_type=bonus")
        .await;
    assert_invalid(&bad_filter, "adjustment_type");

    // The standard report: one row per entry, amounts summing to the batch.
    let csv = api
        .get(&format!("/api/v1/settlement-batches/{batch}/export.csv"))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let text = csv.body.as_str().unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        gema_gateway::settlement::STANDARD_COLUMNS
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3, "{text}");
    let sum: i64 = rows.iter().map(|r| r[7].parse::<i64>().unwrap()).sum();
    assert_eq!(sum, 140_000);
    assert!(rows.iter().all(|r| r[8].ends_with("+07:00")), "{text}");
    // The bank file: one transfer, the whole account number.
    let bank_file = api
        .get(&format!(
            "/api/v1/settlement-batches/{batch}/export.csv?format=bank_generic"
        ))
        .await;
    let text = bank_file.body.as_str().unwrap();
    assert_eq!(
        text.lines().nth(1).unwrap(),
        format!("014,1234567890,Warung Sari,140000,IDR,{batch},Gema payout {batch}")
    );
    let bad_format = api
        .get(&format!(
            "/api/v1/settlement-batches/{batch}/export.csv?format=xlsx"
        ))
        .await;
    assert_invalid(&bad_format, "format");

    // Paid once; the same reference again is the same answer, another one a conflict.
    let paid_at = format!("/api/v1/settlement-batches/{batch}/mark-paid");
    let r = api.post(&paid_at, json!({ "payout_reference": " " })).await;
    assert_invalid(&r, "payout_reference");
    let paid = api
        .post(
            &paid_at,
            json!({ "payout_reference": "BCA-20261203-001", "note": "bulk transfer" }),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    assert_eq!(paid.body["status"], "paid");
    assert_eq!(paid.body["paid_amount"], 140_000);
    let again = api
        .post(&paid_at, json!({ "payout_reference": "BCA-20261203-001" }))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let other = api
        .post(&paid_at, json!({ "payout_reference": "BCA-OTHER" }))
        .await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{}", other.body);
    assert_eq!(
        other.body["details"]["field"], "payout_reference",
        "{}",
        other.body
    );
    let reprocess = api
        .post(
            &format!("/api/v1/settlement-batches/{batch}/reprocess"),
            json!({}),
        )
        .await;
    assert_eq!(reprocess.status, StatusCode::CONFLICT, "{}", reprocess.body);
    let cancel = api
        .post(
            &format!("/api/v1/settlement-batches/{batch}/cancel"),
            json!({ "reason": "late" }),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::CONFLICT, "{}", cancel.body);
    let corrected = api
        .call(
            "PATCH",
            &format!("/api/v1/settlement-batches/{batch}/reference"),
            Some(json!({ "payout_reference": "BCA-20261203-002" })),
        )
        .await;
    assert_eq!(corrected.status, StatusCode::OK, "{}", corrected.body);

    // History and audit.
    let detail = api
        .get(&format!("/api/v1/settlement-batches/{batch}"))
        .await;
    let events: Vec<&str> = detail.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["generated", "adjusted", "paid", "reference_changed"]
    );
    assert_eq!(detail.body["adjustments"].as_array().unwrap().len(), 1);
    let audit = api.get("/api/v1/audit-logs?limit=200").await;
    let targets: Vec<String> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e["action"], e["target"]))
        .collect();
    for route in [
        format!("\"settlement.write\" \"/api/v1/settlement-batches/{batch}/mark-paid\""),
        format!("\"settlement.write\" \"/api/v1/settlement-batches/{batch}/reference\""),
        format!("\"settlement.write\" \"/api/v1/settlement-batches/{batch}/adjustments\""),
        format!("\"settlement.write\" \"/api/v1/merchants/{sari}/bank-account\""),
    ] {
        assert!(
            targets.contains(&route),
            "no audit row {route}: {targets:?}"
        );
    }
    let audit_text = audit.body.to_string();
    assert!(
        !audit_text.contains("1234567890"),
        "an audit row holds a whole account number"
    );

    // Balances, summary, reconciliation, dashboard.
    let balance = api.get(&format!("/api/v1/merchants/{sari}/balance")).await;
    assert_eq!(balance.body["paid"], 140_000);
    assert_eq!(balance.body["held"], 8_950);
    assert_eq!(balance.body["ledger_total"], 148_950);
    let reconciled = api.get("/api/v1/reconciliation/settlement-batches").await;
    let first = &reconciled.body["items"][0];
    assert_eq!(first["expected_amount"], 140_000);
    assert_eq!(first["differences"], json!([]));
    let dashboard = api.get("/api/v1/dashboard/summary").await;
    assert_eq!(dashboard.status, StatusCode::OK, "{}", dashboard.body);
    assert_eq!(dashboard.body["paid_today"]["count"], 3);
    assert_eq!(dashboard.body["paid_today"]["amount"], 180_000);
    assert_eq!(dashboard.body["settlement"]["paid_payout"], 140_000);
    assert_eq!(dashboard.body["settlement"]["unbatched"], 29_790);
    assert_eq!(
        dashboard.body["settlement"]["platform_fees"],
        700 + 350 + 210
    );

    // Sari's owner sees Sari's batch and report; Budi's owner sees neither.
    api.user("owner@sari.test", "owner", Some(&sari)).await;
    api.user("owner@budi.test", "owner", Some(&budi)).await;
    let sari_owner = api.login("owner@sari.test").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let budi_owner = api.login("owner@budi.test").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let own = api
        .call_as(
            Some(&sari_owner),
            "GET",
            "/api/v1/settlement-batches",
            None,
            None,
        )
        .await;
    assert_eq!(own.body["items"].as_array().unwrap().len(), 1);
    let report = api
        .call_as(
            Some(&sari_owner),
            "GET",
            &format!("/api/v1/settlement-batches/{batch}/export.csv"),
            None,
            None,
        )
        .await;
    assert_eq!(report.status, StatusCode::OK);
    let theirs = api
        .call_as(
            Some(&budi_owner),
            "GET",
            &format!("/api/v1/settlement-batches/{batch}/export.csv"),
            None,
            None,
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let none = api
        .call_as(
            Some(&budi_owner),
            "GET",
            "/api/v1/settlement-batches",
            None,
            None,
        )
        .await;
    assert_eq!(none.body["items"], json!([]));
    let own_summary = api
        .call_as(
            Some(&budi_owner),
            "GET",
            "/api/v1/dashboard/summary",
            None,
            None,
        )
        .await;
    assert_eq!(own_summary.body["paid_today"]["count"], 1);
    assert_eq!(own_summary.body["settlement"]["unbatched"], 29_790);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_reprocessed_into_the_next_one_never_paid_twice() {
    let api = TestApi::with_providers(true).await;
    let sari = merchant_with_payments(&api, "fail", &[60_000]).await;
    let r = put(
        &api,
        &format!("/api/v1/merchants/{sari}/bank-account"),
        json!({ "bank_code": "008", "account_number": "9876543210", "account_holder": "Sari" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let first = api.post("/api/v1/settlement-batches", json!({})).await;
    let first = first.body["batches"][0]["id"].as_str().unwrap().to_string();
    let failed = api
        .post(
            &format!("/api/v1/settlement-batches/{first}/mark-failed"),
            json!({ "reason": "rekening ditutup" }),
        )
        .await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.body);
    // Until reprocessed, nothing new is batched.
    let nothing = api.post("/api/v1/settlement-batches", json!({})).await;
    assert_eq!(nothing.body["batches"], json!([]));
    let reprocessed = api
        .post(
            &format!("/api/v1/settlement-batches/{first}/reprocess"),
            json!({}),
        )
        .await;
    assert_eq!(reprocessed.status, StatusCode::OK, "{}", reprocessed.body);
    let twice = api
        .post(
            &format!("/api/v1/settlement-batches/{first}/reprocess"),
            json!({}),
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    let second = api.post("/api/v1/settlement-batches", json!({})).await;
    assert_eq!(second.body["batches"][0]["net_amount"], 59_580);
    let second = second.body["batches"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(second, first);
    let paid = api
        .post(
            &format!("/api/v1/settlement-batches/{second}/mark-paid"),
            json!({ "payout_reference": "MDR-1" }),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK);
    let balance = api.get(&format!("/api/v1/merchants/{sari}/balance")).await;
    assert_eq!(balance.body["paid"], 59_580);
    assert_eq!(balance.body["in_batch"], 0);
    assert_eq!(balance.body["unbatched"], 0);
    let summary = api
        .get(&format!("/api/v1/settlement-summary?merchant_id={sari}"))
        .await;
    assert_eq!(summary.body["paid_payout"], 59_580);
}
