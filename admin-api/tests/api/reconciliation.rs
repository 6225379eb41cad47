//! Provider reconciliation through the API: a Midtrans report with one row of every
//! outcome, its rows and CSV export, a re-run, refused reports, and who may do it.

use axum::body::Body;
use axum::http::{StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{MIDTRANS_KEY, Reply, TestApi, assert_envelope, field};
use crate::payments::{notification, notify};

const HEADER: &str = "Order ID,Transaction ID,Gross Amount,Transaction Status,Settlement Time\n";

/// Now in Jakarta, as Midtrans writes it.
fn jakarta_now() -> String {
    let now = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(+7));
    now.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))
    .unwrap()
}

fn rfc3339(offset_secs: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_secs))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn upload(api: &TestApi, query: &str, csv: String, token: Option<&str>) -> Reply {
    let mut builder = axum::http::Request::post(format!("/api/v1/reconciliation/runs{query}"))
        .header(header::CONTENT_TYPE, "text/csv");
    builder = builder.header(
        header::AUTHORIZATION,
        format!("Bearer {}", token.unwrap_or(&api.token)),
    );
    api.send(builder.body(Body::from(csv)).unwrap()).await
}

/// A pending order on `terminal`, paid through a Midtrans callback unless `paid` is false.
async fn order(api: &TestApi, terminal: &str, order_ref: &str, amount: i64, paid: bool) -> String {
    let created = api
        .post(
            "/api/v1/transactions",
            json!({ "terminal_id": terminal, "order_ref": order_ref, "amount": amount }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    if paid {
        pay(api, order_ref, amount).await;
    }
    created.body["id"].as_str().unwrap().to_string()
}

async fn pay(api: &TestApi, order_ref: &str, amount: i64) {
    let mut body = notification(
        order_ref,
        "settlement",
        &format!("{amount}.00"),
        MIDTRANS_KEY,
    );
    body["settlement_time"] = Value::from(jakarta_now());
    let r = notify(api, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

fn period() -> String {
    format!(
        "?provider=midtrans&from={}&to={}",
        rfc3339(-3600).replace('+', "%2B"),
        rfc3339(3600).replace('+', "%2B")
    )
}

/// Every outcome once: A matched, B amount mismatch, D status mismatch (pending in Gema),
/// E missing in Gema, F malformed (a fraction of a rupiah), C missing in the report.
async fn report_with_every_outcome(api: &TestApi) -> (Value, String) {
    let (_, _, terminal) = api.terminal(true).await;
    order(api, &terminal, "ORD-A", 25_000, true).await;
    order(api, &terminal, "ORD-B", 25_000, true).await;
    let c = order(api, &terminal, "ORD-C", 30_000, true).await;
    order(api, &terminal, "ORD-D", 20_000, false).await;
    let at = jakarta_now();
    let csv = format!(
        "{HEADER}ORD-A,mt-ORD-A,25000.00,settlement,{at}\n\
         ORD-B,mt-ORD-B,26000.00,settlement,{at}\n\
         ORD-D,,20000.00,settlement,{at}\n\
         ORD-E,mt-ORD-E,5000.00,settlement,{at}\n\
         ORD-F,mt-ORD-F,100.50,settlement,{at}\n"
    );
    let r = upload(api, &period(), csv, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (r.body, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_midtrans_report_gets_one_row_per_outcome_with_counts() {
    let api = TestApi::new().await;
    let (run, missing) = report_with_every_outcome(&api).await;
    assert_eq!(run["format"], "midtrans");
    assert_eq!(run["provider"], "midtrans");
    assert_eq!(run["report_rows"], 5);
    assert_eq!(
        run["counts"],
        json!({ "matched": 1, "amount_mismatch": 1, "status_mismatch": 1,
                "missing_in_gema": 1, "missing_in_report": 1, "malformed": 1 })
    );
    assert_eq!(run["created_by"], "token:bootstrap");
    let id = run["id"].as_str().unwrap();

    let rows = api
        .get(&format!("/api/v1/reconciliation/runs/{id}/rows"))
        .await;
    assert_eq!(rows.status, StatusCode::OK, "{}", rows.body);
    let items = rows.body["items"].as_array().unwrap();
    let seen: Vec<(Value, Value, Value)> = items
        .iter()
        .map(|r| {
            (
                r["line"].clone(),
                r["order_id"].clone(),
                r["outcome"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (json!(2), json!("ORD-A"), json!("matched")),
            (json!(3), json!("ORD-B"), json!("amount_mismatch")),
            (json!(4), json!("ORD-D"), json!("status_mismatch")),
            (json!(5), json!("ORD-E"), json!("missing_in_gema")),
            (json!(6), json!("ORD-F"), json!("malformed")),
            (Value::Null, json!("ORD-C"), json!("missing_in_report")),
        ]
    );
    assert_eq!(items[1]["report_amount"], 26_000);
    assert_eq!(items[1]["gema_amount"], 25_000);
    assert_eq!(items[2]["gema_status"], "pending");
    assert_eq!(items[2]["report_status"], "settlement");
    assert_eq!(items[5]["transaction_id"], missing.as_str());

    let malformed = api
        .get(&format!(
            "/api/v1/reconciliation/runs/{id}/rows?outcome=malformed"
        ))
        .await;
    let items = malformed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["line"], 6);
    assert!(
        items[0]["reason"].as_str().unwrap().contains("fraction"),
        "{}",
        items[0]
    );

    // Pages follow the rows in order.
    let first = api
        .get(&format!("/api/v1/reconciliation/runs/{id}/rows?limit=4"))
        .await;
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let rest = api
        .get(&format!(
            "/api/v1/reconciliation/runs/{id}/rows?limit=4&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(rest.body["next_cursor"], Value::Null);

    let got = api.get(&format!("/api/v1/reconciliation/runs/{id}")).await;
    assert_eq!(got.body["counts"], run["counts"]);
    let list = api.get("/api/v1/reconciliation/runs").await;
    assert_eq!(list.body["items"][0]["id"], id);

    // The write left its audit row.
    let audit = api.get("/api/v1/audit-logs").await;
    assert!(
        audit.body.to_string().contains("reconciliation.write"),
        "{}",
        audit.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_rows_export_as_csv() {
    let api = TestApi::new().await;
    let (run, _) = report_with_every_outcome(&api).await;
    let id = run["id"].as_str().unwrap();
    let request = api
        .request("GET", &format!("/api/v1/reconciliation/runs/{id}/rows.csv"))
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/csv; charset=utf-8"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert!(lines[0].starts_with("line,order_id,provider_transaction_id,report_amount"));
    assert!(lines[2].starts_with("3,ORD-B,mt-ORD-B,26000,25000,settlement,paid,amount_mismatch,"));
    assert!(
        lines[2].contains("+07:00"),
        "times in Jakarta: {}",
        lines[2]
    );
    assert!(lines[6].starts_with(",ORD-C,mt-ORD-C,,30000,,paid,missing_in_report,"));

    let missing = api
        .get("/api/v1/reconciliation/runs/rec_00000000000000000000000000/rows.csv")
        .await;
    assert_envelope(&missing, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_matches_the_same_rows_against_the_transactions_as_they_are_now() {
    let api = TestApi::new().await;
    let (run, _) = report_with_every_outcome(&api).await;
    let id = run["id"].as_str().unwrap();
    // D's payment arrives late.
    pay(&api, "ORD-D", 20_000).await;
    let rerun = api
        .call(
            "POST",
            &format!("/api/v1/reconciliation/runs/{id}/rerun"),
            None,
        )
        .await;
    assert_eq!(rerun.status, StatusCode::CREATED, "{}", rerun.body);
    assert_eq!(rerun.body["rerun_of"], id);
    assert_ne!(rerun.body["id"], id);
    assert_eq!(rerun.body["report_rows"], 5);
    assert_eq!(rerun.body["counts"]["matched"], 2);
    assert_eq!(rerun.body["counts"]["status_mismatch"], 0);
    assert_eq!(rerun.body["counts"]["malformed"], 1);
    assert_eq!(rerun.body["period_from"], run["period_from"]);
    // The earlier run is as it was.
    let earlier = api.get(&format!("/api/v1/reconciliation/runs/{id}")).await;
    assert_eq!(earlier.body["counts"], run["counts"]);

    let unknown = api
        .call(
            "POST",
            "/api/v1/reconciliation/runs/rec_00000000000000000000000000/rerun",
            None,
        )
        .await;
    assert_envelope(&unknown, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reports_name_the_field_and_write_nothing() {
    let api = TestApi::new().await;
    let r = upload(
        &api,
        "?provider=midtrans",
        "Order ID,Amount\nA,1\n".into(),
        None,
    )
    .await;
    assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field(&r), "columns");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("Transaction Status")
    );

    let r = upload(&api, "?provider=midtrans", String::new(), None).await;
    assert_eq!(field(&r), "columns", "{}", r.body);

    let r = upload(
        &api,
        "?format=generic&order_id_column=ref&amount_column=nominal&status_column=state",
        "ref,nominal\nA,1\n".into(),
        None,
    )
    .await;
    assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field(&r), "status_column");

    let r = upload(&api, "?format=csv", HEADER.into(), None).await;
    assert_eq!(field(&r), "format", "{}", r.body);
    let r = upload(
        &api,
        "?provider=midtrans&from=yesterday",
        HEADER.into(),
        None,
    )
    .await;
    assert_eq!(field(&r), "from", "{}", r.body);
    let r = upload(&api, "?provider=midtrans&colour=red", HEADER.into(), None).await;
    assert_envelope(&r, StatusCode::BAD_REQUEST, "invalid_query");

    let request = api
        .request("POST", "/api/v1/reconciliation/runs?provider=midtrans")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let r = api.send(request).await;
    assert_envelope(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    let runs = api.get("/api/v1/reconciliation/runs").await;
    assert_eq!(runs.body["items"], json!([]), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_report_over_the_default_body_limit_is_read_whole() {
    let api = TestApi::new().await;
    // About 200 KiB: over the API's 64 KiB limit, under the upload's own.
    let mut csv = String::from("ref;nominal;state\n");
    for i in 0..6_000 {
        csv.push_str(&format!("UNKNOWN-{i:06};15000;PAID\n"));
    }
    assert!(csv.len() > gema_admin_api::BODY_LIMIT_BYTES);
    let request = api
        .request(
            "POST",
            "/api/v1/reconciliation/runs?order_id_column=ref&amount_column=nominal&status_column=state",
        )
        .header(header::CONTENT_TYPE, "text/csv")
        .header("idempotency-key", "recon-large-1")
        .body(Body::from(csv))
        .unwrap();
    let r = api.send(request).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["format"], "generic");
    assert_eq!(r.body["provider"], Value::Null);
    assert_eq!(r.body["report_rows"], 6_000);
    assert_eq!(r.body["counts"]["missing_in_gema"], 6_000);
    assert_eq!(
        r.body["period_from"],
        Value::Null,
        "no paid times, no period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_users_may_not_reconcile() {
    let api = TestApi::new().await;
    let (run, _) = report_with_every_outcome(&api).await;
    let id = run["id"].as_str().unwrap();
    let (merchant, _, _) = api.terminal(true).await;
    api.user("owner@m.test", "owner", Some(&merchant)).await;
    api.user("finance@m.test", "finance", Some(&merchant)).await;
    for email in ["owner@m.test", "finance@m.test"] {
        let token = api.login(email).await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let r = upload(&api, "?provider=midtrans", HEADER.into(), Some(&token)).await;
        assert_envelope(&r, StatusCode::FORBIDDEN, "forbidden");
        for path in [
            "/api/v1/reconciliation/runs".to_string(),
            format!("/api/v1/reconciliation/runs/{id}"),
            format!("/api/v1/reconciliation/runs/{id}/rows"),
            format!("/api/v1/reconciliation/runs/{id}/rows.csv"),
        ] {
            let r = api.call_as(Some(&token), "GET", &path, None, None).await;
            assert_envelope(&r, StatusCode::FORBIDDEN, "forbidden");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_xendit_report_matches_by_reference_or_product_id() {
    let api = TestApi::with_providers(true).await;
    let (_, _, terminal) = api.terminal(true).await;
    for (order_ref, payment) in [("ORD-X1", "qrpy_x1"), ("ORD-X2", "qrpy_x2")] {
        order(&api, &terminal, order_ref, 10_000, false).await;
        let body = json!({
            "event": "qr.payment", "api_version": "2022-07-31",
            "data": {"id": payment, "amount": 10000, "currency": "IDR", "status": "SUCCEEDED",
                     "qr_id": "qr_1", "reference_id": order_ref, "channel_code": "ID_DANA"}
        });
        let request = axum::http::Request::post("/api/v1/payments/xendit/callback")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-callback-token", crate::helpers::XENDIT_TOKEN)
            .body(Body::from(body.to_string()))
            .unwrap();
        let paid = api.send(request).await;
        assert_eq!(paid.body["outcome"], "applied", "{}", paid.body);
    }
    // Semicolons, a header with a time zone, a reference left blank on the second line.
    let csv = "Reference;Product ID;Type;Amount;Status;Created Date (GMT+7)\n\
               ORD-X1;qrpy_x1;PAYMENT;10000;SUCCESS;\n\
               ;qrpy_x2;PAYMENT;10000;SUCCESS;\n\
               ORD-X3;qrpy_x3;PAYMENT;10000;FAILED;\n"
        .to_string();
    let r = upload(&api, "?provider=xendit", csv, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["format"], "xendit");
    assert_eq!(
        r.body["counts"],
        json!({ "matched": 2, "amount_mismatch": 0, "status_mismatch": 0,
                "missing_in_gema": 1, "missing_in_report": 0, "malformed": 0 })
    );
}

/// A run's rows as an export job: the worker pages them by position, filtered by outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_rows_export_as_a_job() {
    let api = TestApi::new().await;
    let (run, _) = report_with_every_outcome(&api).await;
    let run_id = run["id"].as_str().unwrap().to_string();
    let refused = api
        .post("/api/v1/exports", json!({ "kind": "reconciliation_rows" }))
        .await;
    assert_eq!(
        refused.body["details"]["field"], "run_id",
        "{}",
        refused.body
    );
    let refused = api
        .post(
            "/api/v1/exports",
            json!({ "kind": "reconciliation_rows", "run_id": run_id, "merchant_id": "mer_x" }),
        )
        .await;
    assert_eq!(
        refused.body["details"]["field"], "merchant_id",
        "{}",
        refused.body
    );
    let refused = api
        .post(
            "/api/v1/exports",
            json!({ "kind": "ledger_entries", "run_id": run_id }),
        )
        .await;
    assert_eq!(
        refused.body["details"]["field"], "run_id",
        "{}",
        refused.body
    );

    for (outcome, expected) in [(None, 6usize), (Some("amount_mismatch"), 1)] {
        let mut body = json!({ "kind": "reconciliation_rows", "run_id": run_id });
        if let Some(outcome) = outcome {
            body["outcome"] = json!(outcome);
        }
        let created = api.post("/api/v1/exports", body).await;
        assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
        let id = created.body["id"].as_str().unwrap().to_string();
        let done = gema_gateway::testing::eventually(&format!("export {id}"), || async {
            let job = api.get(&format!("/api/v1/exports/{id}")).await;
            (job.body["status"] == "done").then_some(job.body)
        })
        .await;
        assert_eq!(done["rows_total"], expected as i64, "{done}");
        let file = api.get(&format!("/api/v1/exports/{id}/download")).await;
        let text = file.body.as_str().unwrap();
        let mut lines = text.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("run_id,seq,line,outcome,")
        );
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), expected, "{text}");
        if outcome.is_some() {
            assert!(rows[0].contains(",amount_mismatch,ORD-B,"), "{text}");
            assert!(rows[0].contains(",26000,25000,"), "{text}");
        }
    }
}
