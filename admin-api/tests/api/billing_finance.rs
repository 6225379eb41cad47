//! Billing settings (the write-only webhook secret, the logo's checks), the public receipt
//! page, billing finance on a known data set, merchant isolation, and the billing exports
//! (CSV and XLSX, with their summary rows) run by the real export worker.
//!
//! Invoices come from `Store::seed_billing_fixture` (test rows straight into the tables):
//! the invoice run and the pay flows are not this slice's.

use std::io::Read;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gema_gateway::testing::eventually;
use gema_store::{BillingFixture, InvoiceFixture};
use serde_json::{Value, json};
use time::macros::datetime;

use crate::helpers::{Reply, TestApi, assert_envelope, field};

const SECRET: &str = "whsec-0123456789-very-secret";

/// A PNG's signature and IHDR (`width` × `height`, 8-bit RGBA), then a little data.
pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(&13u32.to_be_bytes());
    bytes.extend_from_slice(b"IHDR");
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0x1a, 0x2b, 0x3c, 0x4d]);
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    bytes.extend_from_slice(b"IEND");
    bytes
}

fn jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46];
    bytes.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 0x08]);
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&[0x01, 0x01, 0x11, 0x00, 0xFF, 0xD9]);
    bytes
}

/// `PUT …/billing-logo` with these bytes and content type, as `token`.
pub(crate) async fn put_logo(
    api: &TestApi,
    token: &str,
    merchant: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Reply {
    let request = Request::put(format!("/api/v1/merchants/{merchant}/billing-logo"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(bytes))
        .unwrap();
    api.send(request).await
}

/// A public GET (no token): status, headers, body bytes.
async fn public_get(api: &TestApi, path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    api.get_bytes(None, path).await
}

fn customer(merchant: &str, name: &str, price: i64, discount: i64) -> BillingFixture {
    BillingFixture {
        merchant_id: merchant.to_owned(),
        customer_name: name.to_owned(),
        nik: Some("3201010101010001".into()),
        register_date: "2023-06-10".into(),
        customer_status: "active",
        package_name: format!("Paket {price}"),
        price,
        discount,
        invoice: None,
    }
}

fn invoice(period: &str, due: &str, token: &str) -> InvoiceFixture {
    InvoiceFixture {
        period: period.into(),
        due_date: due.into(),
        receipt_token: token.into(),
        paid: None,
    }
}

fn paid(
    mut invoice: InvoiceFixture,
    at: time::OffsetDateTime,
    method: &'static str,
) -> InvoiceFixture {
    invoice.paid = Some((at, method, "api:finance@ops.test".into()));
    invoice
}

async fn login_as(api: &TestApi, email: &str, role: &str, merchant: Option<&str>) -> String {
    api.user(email, role, merchant).await;
    api.login(email).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_round_trip_and_the_webhook_secret_is_never_shown() {
    let api = TestApi::new().await;
    let (merchant, _, _) = api.terminal(true).await;
    let path = format!("/api/v1/merchants/{merchant}/billing-settings");

    let defaults = api.get(&path).await;
    assert_eq!(defaults.status, StatusCode::OK, "{}", defaults.body);
    assert_eq!(defaults.body["receipt_fields"]["nik"], true);
    assert_eq!(defaults.body["has_isolation_webhook_secret"], false);
    assert_eq!(defaults.body["updated_at"], Value::Null);

    let put = api
        .call(
            "PUT",
            &path,
            Some(json!({
                "business_name": "WiFi Sukamaju",
                "bank_details": "BCA 1234567890 a.n. Sari",
                "receipt_fields": { "nik": false, "method": false },
                "auto_isolate_days": 7,
                "isolation_webhook_url": "http://127.0.0.1:9/isolate",
                "isolation_webhook_secret": SECRET,
            })),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["business_name"], "WiFi Sukamaju");
    assert_eq!(put.body["receipt_fields"]["nik"], false);
    assert_eq!(put.body["receipt_fields"]["area"], true);
    assert_eq!(put.body["auto_isolate_days"], 7);
    assert_eq!(put.body["has_isolation_webhook_secret"], true);
    assert!(!put.body.to_string().contains(SECRET));

    // Absent: kept. The answer still never shows it.
    let kept = api
        .call(
            "PUT",
            &path,
            Some(json!({ "business_name": "WiFi Sukamaju", "auto_isolate_days": null })),
        )
        .await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
    assert_eq!(kept.body["has_isolation_webhook_secret"], true);
    assert_eq!(kept.body["auto_isolate_days"], Value::Null);
    let read = api.get(&path).await;
    assert_eq!(read.body["has_isolation_webhook_secret"], true);
    assert!(!read.body.to_string().contains(SECRET));

    let audit = api.get("/api/v1/audit-logs?limit=200").await;
    assert_eq!(audit.status, StatusCode::OK);
    let text = audit.body.to_string();
    assert!(text.contains("billing-settings"), "the writes are audited");
    assert!(!text.contains(SECRET), "the secret is in the audit log");

    // null: removed.
    let cleared = api
        .call(
            "PUT",
            &path,
            Some(json!({ "isolation_webhook_secret": null })),
        )
        .await;
    assert_eq!(cleared.body["has_isolation_webhook_secret"], false);

    for (body, named) in [
        (json!({ "auto_isolate_days": 0 }), "auto_isolate_days"),
        (json!({ "auto_isolate_days": 366 }), "auto_isolate_days"),
        (
            json!({ "isolation_webhook_url": "http://example.com/x" }),
            "isolation_webhook_url",
        ),
        (
            json!({ "isolation_webhook_url": "not a url" }),
            "isolation_webhook_url",
        ),
        (
            json!({ "isolation_webhook_secret": "short" }),
            "isolation_webhook_secret",
        ),
        (json!({ "business_name": "x".repeat(121) }), "business_name"),
    ] {
        let r = api.call("PUT", &path, Some(body.clone())).await;
        assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(field(&r), named, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logos_are_accepted_only_as_the_png_or_jpeg_they_claim_to_be() {
    let api = TestApi::new().await;
    let (merchant, _, _) = api.terminal(true).await;
    let path = format!("/api/v1/merchants/{merchant}/billing-logo");

    let r = put_logo(&api, &api.token, &merchant, "image/png", png(200, 80)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["has_logo"], true);
    assert_eq!(r.body["logo_content_type"], "image/png");
    let r = put_logo(&api, &api.token, &merchant, "image/jpeg", jpeg(300, 100)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["logo_content_type"], "image/jpeg");
    let got = api.get(&path).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(got.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

    let mut fake_png = b"\x89PNG\r\n\x1a\n".to_vec();
    fake_png.extend_from_slice(b"<script>alert(1)</script>");
    for (content_type, bytes, status) in [
        (
            "image/gif",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "image/png",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("image/png", fake_png, StatusCode::UNPROCESSABLE_ENTITY),
        ("image/png", jpeg(10, 10), StatusCode::UNPROCESSABLE_ENTITY),
        ("image/png", png(0, 10), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "image/png",
            png(10, 70_000),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("image/png", Vec::new(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "image/png",
            {
                let mut big = png(10, 10);
                big.resize(300 * 1024, 0);
                big
            },
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let r = put_logo(&api, &api.token, &merchant, content_type, bytes).await;
        assert_eq!(r.status, status, "{content_type}: {}", r.body);
        assert_eq!(field(&r), "logo", "{}", r.body);
    }
    // Still the last good one.
    assert_eq!(
        api.get(&path).await.headers[header::CONTENT_TYPE],
        "image/jpeg"
    );

    let audit = api
        .get("/api/v1/audit-logs?limit=200")
        .await
        .body
        .to_string();
    assert!(audit.contains("billing-logo"));
    assert!(
        !audit.contains("JFIF") && !audit.contains("IHDR"),
        "logo bytes in the audit log"
    );

    let deleted = api.call("DELETE", &path, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.call("DELETE", &path, None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_shows_the_enabled_fields_escaped_with_strict_headers() {
    let api = TestApi::new().await;
    let (merchant, _, _) = api.terminal(true).await;
    let token = "rcpt_0123456789abcdef0123456789abcdef";
    let mut fixture = customer(&merchant, "<script>alert(1)</script>", 30_000, 5_000);
    fixture.invoice = Some(paid(
        invoice("2026-12", "2026-12-05", token),
        // 19:30 UTC is 02:30 the next day in Jakarta.
        datetime!(2026-12-03 19:30 UTC),
        "cash",
    ));
    api.store.seed_billing_fixture(fixture).await.unwrap();
    api.call(
        "PUT",
        &format!("/api/v1/merchants/{merchant}/billing-settings"),
        Some(json!({ "business_name": "WiFi \"Suka\" & Maju" })),
    )
    .await;

    let (status, headers, body) = public_get(&api, &format!("/r/{token}")).await;
    let html = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("WiFi &quot;Suka&quot; &amp; Maju"), "{html}");
    for shown in [
        "Rp 25.000",
        "Rp 5.000",
        "Desember 2026 (pra-bayar)",
        "4 Desember 2026 02:30 WIB",
        "3201010101010001",
        "Paket 30000",
        "Tunai",
        "/r/receipt.css",
    ] {
        assert!(html.contains(shown), "{shown} missing: {html}");
    }
    assert!(!html.contains("thermal.css"));
    assert!(!html.contains("/logo\""), "no logo set yet");
    assert!(!html.contains("style=") && !html.contains("<script"));
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("style-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers["x-robots-tag"], "noindex");

    // Toggles off: NIK, area, package, discount and method are gone.
    api.call(
        "PUT",
        &format!("/api/v1/merchants/{merchant}/billing-settings"),
        Some(
            json!({ "business_name": "WiFi Sukamaju", "receipt_fields": {
            "nik": false, "area": false, "package": false, "discount": false, "method": false
        } }),
        ),
    )
    .await;
    put_logo(&api, &api.token, &merchant, "image/png", png(64, 64)).await;
    let (_, _, body) = public_get(&api, &format!("/r/{token}?format=thermal")).await;
    let html = String::from_utf8(body).unwrap();
    for hidden in [
        "3201010101010001",
        "Paket 30000",
        "Rp 5.000",
        "Tunai",
        ">Area<",
        ">NIK<",
    ] {
        assert!(!html.contains(hidden), "{hidden} shown: {html}");
    }
    assert!(html.contains("Rp 25.000") && html.contains("WiFi Sukamaju"));
    assert!(html.contains("/r/thermal.css"), "{html}");
    assert!(html.contains(&format!("/r/{token}/logo")), "{html}");
    let (status, headers, bytes) = public_get(&api, &format!("/r/{token}/logo")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    assert_eq!(bytes, png(64, 64));
    let (status, headers, css) = public_get(&api, "/r/receipt.css").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    assert!(String::from_utf8(css).unwrap().contains("@media print"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_unpaid_receipts_get_the_same_404() {
    let api = TestApi::new().await;
    let (merchant, _, _) = api.terminal(true).await;
    let unpaid = "rcpt_unpaid0123456789abcdef012345";
    let mut fixture = customer(&merchant, "Budi", 25_000, 0);
    fixture.invoice = Some(invoice("2026-12", "2026-12-05", unpaid));
    api.store.seed_billing_fixture(fixture).await.unwrap();
    put_logo(&api, &api.token, &merchant, "image/png", png(8, 8)).await;

    let (s1, h1, b1) = public_get(&api, &format!("/r/{unpaid}")).await;
    let (s2, h2, b2) = public_get(&api, "/r/rcpt_nosuchtoken0123456789abcdef0").await;
    let (s3, _, b3) = public_get(&api, "/r/%3Cscript%3E").await;
    assert_eq!(s1, StatusCode::NOT_FOUND);
    assert_eq!((s1, &b1), (s2, &b2));
    assert_eq!((s1, &b1), (s3, &b3));
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_SECURITY_POLICY,
        header::CACHE_CONTROL,
        header::X_FRAME_OPTIONS,
    ] {
        assert_eq!(h1[&name], h2[&name]);
    }
    assert!(!String::from_utf8(b1).unwrap().contains("Budi"));
    // An unpaid invoice's merchant logo is not served by its token either.
    let (status, _, _) = public_get(&api, &format!("/r/{unpaid}/logo")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Merchant A: one paid and one unpaid invoice for 2023-11, one paid for 2023-10, a
/// stopped customer; merchant B: one paid for 2023-11. The test clock is in 2023-11.
async fn known_data(api: &TestApi) -> (String, String) {
    let (a, _, _) = api.terminal(true).await;
    let (b, _, _) = api.terminal(true).await;
    let seed = |f: BillingFixture| async move { api.store.seed_billing_fixture(f).await.unwrap() };
    let mut sari = customer(&a, "Sari", 30_000, 5_000);
    sari.register_date = "2023-09-02".into();
    // 17:30 UTC on 31 October is 00:30 on 1 November in Jakarta: November's revenue.
    sari.invoice = Some(paid(
        invoice("2023-11", "2023-11-02", "tok-sari"),
        datetime!(2023-10-31 17:30 UTC),
        "transfer",
    ));
    seed(sari).await;
    let mut budi = customer(&a, "=HYPERLINK(\"x\")", 30_000, 0);
    budi.register_date = "2023-10-20".into();
    budi.invoice = Some(invoice("2023-11", "2023-11-20", "tok-budi"));
    seed(budi).await;
    let mut tono = customer(&a, "Tono", 50_000, 0);
    tono.register_date = "2022-01-05".into();
    tono.invoice = Some(paid(
        invoice("2023-10", "2023-10-05", "tok-tono"),
        datetime!(2023-10-06 03:00 UTC),
        "cash",
    ));
    seed(tono).await;
    let mut gone = customer(&a, "Gone", 30_000, 0);
    gone.customer_status = "stopped";
    gone.register_date = "2023-11-01".into();
    seed(gone).await;
    let mut other = customer(&b, "Other", 100_000, 0);
    other.invoice = Some(paid(
        invoice("2023-11", "2023-11-02", "tok-other"),
        datetime!(2023-11-02 03:00 UTC),
        "qris",
    ));
    seed(other).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_figures_on_a_known_data_set() {
    let api = TestApi::new().await;
    let (a, b) = known_data(&api).await;

    let month = api
        .get(&format!(
            "/api/v1/billing/finance/summary?merchant_id={a}&month=2023-11"
        ))
        .await;
    assert_eq!(month.status, StatusCode::OK, "{}", month.body);
    let m = &month.body;
    assert_eq!(m["merchant_id"], a.as_str());
    assert_eq!(m["period"], "2023-11");
    assert_eq!(m["active_customers"], 3);
    assert_eq!(
        (m["invoices"].as_i64(), m["billed"].as_i64()),
        (Some(2), Some(55_000))
    );
    assert_eq!(
        (m["paid_invoices"].as_i64(), m["paid"].as_i64()),
        (Some(1), Some(25_000))
    );
    assert_eq!(
        (m["unpaid_invoices"].as_i64(), m["unpaid"].as_i64()),
        (Some(1), Some(30_000))
    );
    assert_eq!(m["collected_basis_points"], 4_545);
    assert_eq!(m["collected_percent"], "45.4");
    assert_eq!(m["months"], json!([]));

    // The default period is this (test clock's) Jakarta month.
    let default = api
        .get(&format!("/api/v1/billing/finance/summary?merchant_id={a}"))
        .await;
    assert_eq!(default.body["period"], "2023-11");
    assert_eq!(default.body["billed"], 55_000);

    let year = api
        .get(&format!(
            "/api/v1/billing/finance/summary?merchant_id={a}&year=2023"
        ))
        .await
        .body;
    assert_eq!(
        (year["billed"].as_i64(), year["paid"].as_i64()),
        (Some(105_000), Some(75_000))
    );
    assert_eq!(year["collected_percent"], "71.4");
    let months = year["months"].as_array().unwrap();
    assert_eq!(months.len(), 12);
    assert_eq!(months[0]["period"], "2023-01");
    assert_eq!(months[0]["billed"], 0);
    assert_eq!(months[9]["period"], "2023-10");
    assert_eq!(months[9]["paid"], 50_000);
    assert_eq!(months[10]["unpaid"], 30_000);

    let day = api
        .get(&format!(
            "/api/v1/billing/finance/summary?merchant_id={a}&date=2023-11-20"
        ))
        .await
        .body;
    assert_eq!(
        (day["invoices"].as_i64(), day["unpaid"].as_i64()),
        (Some(1), Some(30_000))
    );

    // Every merchant: B's invoice counts too.
    let all = api
        .get("/api/v1/billing/finance/summary?month=2023-11")
        .await
        .body;
    assert_eq!(all["merchant_id"], Value::Null);
    assert_eq!(
        (all["billed"].as_i64(), all["paid"].as_i64()),
        (Some(155_000), Some(125_000))
    );
    assert_eq!(all["active_customers"], 4);

    let revenue = api
        .get(&format!("/api/v1/billing/finance/revenue?merchant_id={a}"))
        .await
        .body;
    let months = revenue["months"].as_array().unwrap();
    assert_eq!(months.len(), 12);
    assert_eq!(
        months[11],
        json!({ "month": "2023-11", "paid_invoices": 1, "paid": 25_000 })
    );
    assert_eq!(
        months[10],
        json!({ "month": "2023-10", "paid_invoices": 1, "paid": 50_000 })
    );
    assert_eq!(months[0]["month"], "2022-12");
    assert_eq!(months[0]["paid"], 0);

    let growth = api
        .get(&format!(
            "/api/v1/billing/finance/customer-growth?merchant_id={a}&months=3"
        ))
        .await
        .body;
    assert_eq!(
        growth["months"],
        json!([
            { "month": "2023-09", "new_customers": 1, "total_customers": 2 },
            { "month": "2023-10", "new_customers": 1, "total_customers": 3 },
            { "month": "2023-11", "new_customers": 1, "total_customers": 4 },
        ])
    );

    let table = api
        .get(&format!(
            "/api/v1/billing/finance/invoices?merchant_id={a}&month=2023-11&limit=1"
        ))
        .await;
    assert_eq!(table.status, StatusCode::OK, "{}", table.body);
    assert_eq!(table.body["items"].as_array().unwrap().len(), 1);
    let first = &table.body["items"][0];
    assert_eq!(first["customer_name"], "Sari");
    assert_eq!(first["package_name"], "Paket 30000");
    assert_eq!(first["total_amount"], 25_000);
    assert_eq!(first["status"], "paid");
    assert_eq!(first["paid_by"], "api:finance@ops.test");
    let cursor = table.body["next_cursor"].as_str().unwrap();
    let next = api
        .get(&format!(
            "/api/v1/billing/finance/invoices?merchant_id={a}&month=2023-11&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(next.body["items"][0]["status"], "unpaid");
    assert_eq!(next.body["next_cursor"], Value::Null);
    let unpaid = api
        .get("/api/v1/billing/finance/invoices?status=unpaid")
        .await
        .body;
    assert_eq!(unpaid["items"].as_array().unwrap().len(), 1);
    assert!(!unpaid.to_string().contains(&b));

    for (query, named) in [
        ("month=2023-13", "month"),
        ("month=2023-11&year=2023", "month"),
        ("date=2023-02-30", "date"),
        ("year=23", "year"),
    ] {
        let r = api
            .get(&format!("/api/v1/billing/finance/summary?{query}"))
            .await;
        assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(field(&r), named);
    }
    let r = api.get("/api/v1/billing/finance/revenue?months=0").await;
    assert_eq!(field(&r), "months");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_user_sees_only_its_own_billing_finance() {
    let api = TestApi::new().await;
    let (a, b) = known_data(&api).await;
    let owner_a = login_as(&api, "owner@a.test", "owner", Some(&a)).await;
    let ops_a = login_as(&api, "ops@a.test", "ops", Some(&a)).await;
    let as_owner = |path: String| {
        let api = &api;
        let owner_a = owner_a.clone();
        async move { api.call_as(Some(&owner_a), "GET", &path, None, None).await }
    };

    let mine = as_owner("/api/v1/billing/finance/summary?month=2023-11".into()).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    assert_eq!(mine.body["merchant_id"], a.as_str());
    assert_eq!(mine.body["billed"], 55_000);
    for path in [
        format!("/api/v1/billing/finance/summary?merchant_id={b}"),
        format!("/api/v1/billing/finance/revenue?merchant_id={b}"),
        format!("/api/v1/billing/finance/customer-growth?merchant_id={b}"),
        format!("/api/v1/billing/finance/invoices?merchant_id={b}"),
        format!("/api/v1/merchants/{b}/billing-settings"),
        format!("/api/v1/merchants/{b}/billing-logo"),
    ] {
        let r = as_owner(path.clone()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
    }
    let table = as_owner("/api/v1/billing/finance/invoices".into()).await;
    let text = table.body.to_string();
    assert_eq!(table.body["items"].as_array().unwrap().len(), 3);
    assert!(!text.contains(&b) && !text.contains("Other"));
    // Ops may not see finance; the owner keeps its own settings.
    let r = api
        .call_as(
            Some(&ops_a),
            "GET",
            "/api/v1/billing/finance/summary",
            None,
            None,
        )
        .await;
    assert_envelope(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = api
        .call_as(
            Some(&owner_a),
            "PUT",
            &format!("/api/v1/merchants/{a}/billing-settings"),
            Some(json!({ "business_name": "Net A" })),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

async fn until_done(api: &TestApi, token: &str, id: &str) -> Value {
    eventually(&format!("billing export {id} done"), || async {
        let job = api
            .call_as(
                Some(token),
                "GET",
                &format!("/api/v1/billing/finance/exports/{id}"),
                None,
                None,
            )
            .await;
        assert_eq!(job.status, StatusCode::OK, "{}", job.body);
        assert_ne!(job.body["status"], "failed", "{}", job.body);
        (job.body["status"] == "done").then_some(job.body)
    })
    .await
}

async fn download(api: &TestApi, token: &str, id: &str) -> (StatusCode, String, Vec<u8>) {
    let (status, headers, bytes) = api
        .get_bytes(
            Some(token),
            &format!("/api/v1/billing/finance/exports/{id}/download"),
        )
        .await;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_exports_end_with_summary_rows_in_csv_and_xlsx() {
    let api = TestApi::new().await;
    let (a, b) = known_data(&api).await;
    let owner_a = login_as(&api, "owner@a.test", "owner", Some(&a)).await;
    let owner_b = login_as(&api, "owner@b.test", "owner", Some(&b)).await;

    // A merchant user's export is of its own merchant, whatever it asks.
    let asked = api
        .call_as(
            Some(&owner_a),
            "POST",
            "/api/v1/billing/finance/exports",
            Some(json!({ "kind": "billing_invoices", "merchant_id": b })),
            None,
        )
        .await;
    assert_eq!(asked.status, StatusCode::NOT_FOUND, "{}", asked.body);
    let created = api
        .call_as(
            Some(&owner_a),
            "POST",
            "/api/v1/billing/finance/exports",
            Some(json!({ "kind": "billing_invoices", "period_from": "2023-10", "period_to": "2023-11" })),
            None,
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    assert_eq!(created.body["filters"]["merchant_id"], a.as_str());
    let id = created.body["id"].as_str().unwrap().to_owned();
    until_done(&api, &owner_a, &id).await;
    let (status, content_type, bytes) = download(&api, &owner_a, &id).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/csv"));
    let text = String::from_utf8(bytes).unwrap();
    let rows: Vec<Vec<String>> = csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 6, "{text}");
    assert!(text.starts_with("invoice_id,merchant_id,customer_name,period,due_date,package,total_amount,status,paid_at,paid_by,payment_method"));
    assert_eq!(rows[0][2], "Sari");
    assert_eq!(rows[0][8], "2023-11-01T00:30:00+07:00");
    // A formula-looking name is defused.
    assert_eq!(rows[1][2], "'=HYPERLINK(\"x\")");
    assert_eq!(rows[2][2], "Tono");
    assert_eq!(&rows[3][..1], ["TOTAL"]);
    assert_eq!(
        (rows[3][2].as_str(), rows[3][6].as_str()),
        ("3 invoices", "105000")
    );
    assert_eq!(
        (
            rows[4][0].as_str(),
            rows[4][2].as_str(),
            rows[4][6].as_str()
        ),
        ("PAID", "2 invoices", "75000")
    );
    assert_eq!(
        (
            rows[5][0].as_str(),
            rows[5][2].as_str(),
            rows[5][6].as_str()
        ),
        ("UNPAID", "1 invoices", "30000")
    );

    // B's user cannot follow or fetch A's export.
    for path in [
        format!("/api/v1/billing/finance/exports/{id}"),
        format!("/api/v1/billing/finance/exports/{id}/download"),
    ] {
        let r = api.call_as(Some(&owner_b), "GET", &path, None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }

    // An operator's XLSX of everyone, through the general exports route.
    let xlsx = api
        .post(
            "/api/v1/exports",
            json!({ "kind": "billing_invoices_xlsx", "period_from": "2023-11" }),
        )
        .await;
    assert_eq!(xlsx.status, StatusCode::ACCEPTED, "{}", xlsx.body);
    let id = xlsx.body["id"].as_str().unwrap().to_owned();
    until_done(&api, &api.token, &id).await;
    let (status, content_type, bytes) = download(&api, &api.token, &id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        content_type,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("an XLSX is a zip");
    let mut sheet = String::new();
    archive
        .by_name("xl/worksheets/sheet1.xml")
        .expect("the sheet")
        .read_to_string(&mut sheet)
        .unwrap();
    for value in [
        "invoice_id",
        "Sari",
        "Other",
        "TOTAL",
        "PAID",
        "UNPAID",
        "3 invoices",
        "155000",
        "125000",
        "30000",
        "HYPERLINK",
    ] {
        assert!(
            sheet.contains(value),
            "{value} missing from the sheet: {sheet}"
        );
    }
    assert!(!sheet.contains("Tono"), "2023-10 is outside the periods");
    assert!(
        !sheet.contains(">=HYPERLINK"),
        "a formula-looking name is defused: {sheet}"
    );

    for (body, named) in [
        (
            json!({ "kind": "billing_invoices", "period_from": "2023-1" }),
            "period_from",
        ),
        (
            json!({ "kind": "billing_invoices", "period_from": "2023-11", "period_to": "2023-10" }),
            "period_to",
        ),
    ] {
        let r = api.post("/api/v1/billing/finance/exports", body).await;
        assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(field(&r), named);
    }
    let r = api
        .post(
            "/api/v1/exports",
            json!({ "kind": "transactions", "period_from": "2023-11" }),
        )
        .await;
    assert_eq!(field(&r), "period_from");
}
