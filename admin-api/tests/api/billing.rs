//! Subscription billing over the API: packages, customers (the seed's phone, day and
//! discount rules; merchant users' limited edits), the prepaid invoice run across month and
//! year ends, paying by hand with optimistic locking, paying by QRIS at the soundbox.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::billing_isolation::isolation_reaches_the_network_once_per_change;
use crate::helpers::{MIDTRANS_KEY, TestApi, assert_envelope, field};

/// Every test here runs on SQLite and on PostgreSQL (the latter under `scripts/with-postgres`).
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::helpers::TestApi::with_providers(true).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(api) = crate::helpers::TestApi::on_postgres(true).await {
                        super::$test(api).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    isolation_reaches_the_network_once_per_change,
    the_daemon_runs_each_day_once_after_six_and_catches_up_missed_days,
    packages_are_unique_by_name_hidden_when_inactive_and_kept_while_used,
    customers_follow_the_seed_rules_and_merchants_edit_only_phone_and_discount,
    the_daily_run_bills_tomorrows_customers_for_the_month_after_once,
    paying_by_hand_is_optimistically_locked_and_two_users_at_once_get_one_win,
    an_invoice_paid_by_qris_is_paid_once_and_spoken_once_whatever_the_callbacks,
    a_qris_payment_for_an_invoice_paid_by_hand_is_recorded_for_an_operator,
    the_pay_page_shows_one_qris_for_the_invoice_and_then_its_receipt,
);

/// Static DOKU code from the QRIS test vectors (V1).
const STATIC: &str = "00020101021126530012COM.DOKU.WWW0118936008990000002475020424750303URE51440014ID.CO.QRIS.WWW0215ID10200392934820303URE5204539953033605802ID5911GUREUM SHOP6013JAKARTA PUSAT61051064062070703A016304455C";

pub(crate) async fn package(api: &TestApi, name: &str, price: i64) -> String {
    let made = api
        .post(
            "/api/v1/packages",
            json!({ "name": name, "speed": "10 Mbps", "price": price }),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    made.body["id"].as_str().unwrap().to_string()
}

pub(crate) async fn customer(
    api: &TestApi,
    merchant: &str,
    package: &str,
    phone: &str,
    day: i64,
    discount: i64,
) -> Value {
    let made = api
        .post(
            "/api/v1/customers",
            json!({ "merchant_id": merchant, "package_id": package, "name": format!("Pelanggan {phone}"),
                    "phone": phone, "billing_day": day, "discount": discount }),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    made.body
}

async fn run(api: &TestApi, date: &str) -> Value {
    let r = api
        .post("/api/v1/billing/invoice-runs", json!({ "date": date }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn invoices_of(api: &TestApi, customer: &str) -> Vec<Value> {
    let r = api
        .get(&format!("/api/v1/invoices?customer_id={customer}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

/// A customer of `merchant` billed on the 16th and its invoice (the run of 2023-11-15, the
/// test clock's Jakarta date): for the permission walk.
pub(crate) async fn invoiced_customer(
    api: &TestApi,
    merchant: &str,
    tag: &str,
) -> (String, String) {
    let package = package(api, &format!("Paket {tag}"), 100_000).await;
    let phone = format!("62812000{:05}", tag.bytes().map(u32::from).sum::<u32>());
    let customer = customer(api, merchant, &package, &phone, 16, 0).await;
    let id = customer["id"].as_str().unwrap().to_string();
    let r = api
        .post(
            "/api/v1/billing/invoice-runs",
            json!({ "date": "2023-11-15", "merchant_id": merchant }),
        )
        .await;
    assert_eq!(r.body["created"], 1, "{}", r.body);
    let invoice = invoices_of(api, &id).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    (id, invoice)
}

async fn packages_are_unique_by_name_hidden_when_inactive_and_kept_while_used(api: TestApi) {
    let (merchant, _, _) = api.terminal(true).await;
    let basic = package(&api, "Paket 10 Mbps", 100_000).await;
    let dup = api
        .post(
            "/api/v1/packages",
            json!({ "name": "Paket 10 Mbps", "price": 1 }),
        )
        .await;
    assert_envelope(&dup, StatusCode::CONFLICT, "package_name_taken");
    let negative = api
        .post("/api/v1/packages", json!({ "name": "Minus", "price": -1 }))
        .await;
    assert_eq!(field(&negative), "price");

    let old = package(&api, "Paket Lama", 50_000).await;
    customer(&api, &merchant, &old, "081234567890", 5, 0).await;
    let off = api
        .call(
            "PATCH",
            &format!("/api/v1/packages/{old}"),
            Some(json!({ "active": false })),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    let listed = api.get("/api/v1/packages").await;
    let names: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Paket 10 Mbps"],
        "inactive packages are not offered"
    );
    let all = api.get("/api/v1/packages?include_inactive=true").await;
    assert_eq!(all.body.as_array().unwrap().len(), 2);
    // Not for new customers, but the existing one keeps it.
    let refused = api
        .post(
            "/api/v1/customers",
            json!({ "merchant_id": merchant, "package_id": old, "name": "Baru",
                    "phone": "081299999999", "billing_day": 1 }),
        )
        .await;
    assert_envelope(&refused, StatusCode::CONFLICT, "package_inactive");
    assert_eq!(field(&refused), "package_id");

    let in_use = api
        .call("DELETE", &format!("/api/v1/packages/{old}"), None)
        .await;
    assert_envelope(&in_use, StatusCode::CONFLICT, "package_in_use");
    let gone = api
        .call("DELETE", &format!("/api/v1/packages/{basic}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get(&format!("/api/v1/packages/{basic}")).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn customers_follow_the_seed_rules_and_merchants_edit_only_phone_and_discount(api: TestApi) {
    let (merchant, _, _) = api.terminal(true).await;
    let package = package(&api, "Paket 20 Mbps", 150_000).await;
    let made = customer(&api, &merchant, &package, "+62 812-3456-7890", 10, 10_000).await;
    assert_eq!(made["phone"], "6281234567890");
    assert_eq!(made["status"], "active");
    assert_eq!(made["register_date"], "2023-11-15", "today in Jakarta");
    let id = made["id"].as_str().unwrap();

    for (body, want) in [
        (json!({ "phone": "0812" }), "phone"),
        (json!({ "phone": "+1 415 555 0100" }), "phone"),
        (json!({ "billing_day": 29 }), "billing_day"),
        (json!({ "billing_day": 0 }), "billing_day"),
        (json!({ "nik": "123" }), "nik"),
        (json!({ "discount": -5 }), "discount"),
        (json!({ "register_date": "2023-02-30" }), "register_date"),
    ] {
        let mut full = json!({ "merchant_id": merchant, "package_id": package, "name": "X",
                               "phone": "081200000001", "billing_day": 1 });
        for (k, v) in body.as_object().unwrap() {
            full[k] = v.clone();
        }
        let r = api.post("/api/v1/customers", full).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.body
        );
        assert_eq!(field(&r), want, "{body}");
    }
    let same_phone = api
        .post(
            "/api/v1/customers",
            json!({ "merchant_id": merchant, "package_id": package, "name": "Dup",
                    "phone": "081234567890", "billing_day": 3 }),
        )
        .await;
    assert_envelope(&same_phone, StatusCode::CONFLICT, "phone_taken");
    let too_much = api
        .post(
            "/api/v1/customers",
            json!({ "merchant_id": merchant, "package_id": package, "name": "Gratis+",
                    "phone": "081200000002", "billing_day": 3, "discount": 150_001 }),
        )
        .await;
    assert_envelope(&too_much, StatusCode::CONFLICT, "discount_above_price");

    // A merchant owner: adds to its own merchant without naming it, edits phone and
    // discount, nothing else, and cannot isolate.
    api.user("owner@warung.test", "owner", Some(&merchant))
        .await;
    let owner = api.login("owner@warung.test").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let added = api
        .call_as(
            Some(&owner),
            "POST",
            "/api/v1/customers",
            Some(
                json!({ "package_id": package, "name": "Budi", "phone": "6281122334455",
                         "billing_day": 15 }),
            ),
            None,
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert_eq!(added.body["merchant_id"], merchant.as_str());
    let path = format!("/api/v1/customers/{id}");
    let renamed = api
        .call_as(
            Some(&owner),
            "PATCH",
            &path,
            Some(json!({ "name": "Lain" })),
            None,
        )
        .await;
    assert_envelope(&renamed, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(field(&renamed), "name");
    let edited = api
        .call_as(
            Some(&owner),
            "PATCH",
            &path,
            Some(json!({ "phone": "0813 1111 2222", "discount": 0, "version": 1 })),
            None,
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!(edited.body["phone"], "6281311112222");
    assert_eq!(edited.body["version"], 2);
    let stale = api
        .call_as(
            Some(&owner),
            "PATCH",
            &path,
            Some(json!({ "discount": 5, "version": 1 })),
            None,
        )
        .await;
    assert_envelope(&stale, StatusCode::CONFLICT, "stale_version");
    let isolate = api
        .call_as(
            Some(&owner),
            "POST",
            &format!("{path}/isolate"),
            Some(json!({})),
            None,
        )
        .await;
    assert_envelope(&isolate, StatusCode::FORBIDDEN, "forbidden");

    let history = api.get(&format!("{path}/history")).await;
    let kinds: Vec<&str> = history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "updated"]);
    assert_eq!(history.body["events"][1]["reason"], "discount,phone");
}

async fn the_daily_run_bills_tomorrows_customers_for_the_month_after_once(api: TestApi) {
    let (merchant, _, _) = api.terminal(true).await;
    let package = package(&api, "Paket 10 Mbps", 100_000).await;
    let first = customer(&api, &merchant, &package, "081200000001", 1, 0).await;
    let last = customer(&api, &merchant, &package, "081200000028", 28, 20_000).await;
    let fifth = customer(&api, &merchant, &package, "081200000005", 5, 0).await;
    let isolated = customer(&api, &merchant, &package, "081200000099", 1, 0).await;
    let stopped = customer(&api, &merchant, &package, "081200000098", 1, 0).await;
    let id = |c: &Value| c["id"].as_str().unwrap().to_string();
    api.post(
        &format!("/api/v1/customers/{}/isolate", id(&isolated)),
        json!({ "reason": "nunggak" }),
    )
    .await;
    api.post(
        &format!("/api/v1/customers/{}/stop", id(&stopped)),
        json!({}),
    )
    .await;

    // 31 January: tomorrow is 1 February, billed for March.
    let jan31 = run(&api, "2026-01-31").await;
    assert_eq!(jan31["billing_date"], "2026-02-01");
    assert_eq!(jan31["period"], "2026-03");
    assert_eq!(
        jan31["created"], 1,
        "only the active day-1 customer: {jan31}"
    );
    let invoice = &invoices_of(&api, &id(&first)).await[0];
    assert_eq!(invoice["period"], "2026-03");
    assert_eq!(invoice["due_date"], "2026-02-01");
    assert_eq!(invoice["total_amount"], 100_000);
    assert_eq!(invoice["status"], "unpaid");
    assert!(invoices_of(&api, &id(&isolated)).await.is_empty());
    assert!(invoices_of(&api, &id(&stopped)).await.is_empty());
    // Again: nothing new.
    let again = run(&api, "2026-01-31").await;
    assert_eq!(again["created"], 0, "{again}");

    // 27 February: the 28th, the last billing day; the discount is a snapshot.
    let feb27 = run(&api, "2026-02-27").await;
    assert_eq!(
        (feb27["period"].as_str(), feb27["created"].as_u64()),
        (Some("2026-03"), Some(1))
    );
    api.call(
        "PATCH",
        &format!("/api/v1/customers/{}", id(&last)),
        Some(json!({ "discount": 0 })),
    )
    .await;
    let snap = &invoices_of(&api, &id(&last)).await[0];
    assert_eq!(
        (snap["discount"].as_i64(), snap["total_amount"].as_i64()),
        (Some(20_000), Some(80_000))
    );

    // The 28th to the 31st bill nobody (billing days end at 28).
    for date in ["2026-02-28", "2026-03-28", "2026-03-29", "2026-03-30"] {
        let none = run(&api, date).await;
        if date == "2026-02-28" {
            // ... except that the 28th of February is the day before 1 March.
            assert_eq!(
                (none["period"].as_str(), none["created"].as_u64()),
                (Some("2026-04"), Some(1))
            );
        } else if date == "2026-03-28" {
            assert_eq!(none["period"], Value::Null, "{date}");
            assert_eq!(none["billing_date"], "2026-03-29");
        } else {
            assert_eq!(none["period"], Value::Null, "{date}");
            assert_eq!(none["created"], 0);
        }
    }
    // Year end: 31 December bills 1 January for February.
    let dec31 = run(&api, "2026-12-31").await;
    assert_eq!(
        (dec31["period"].as_str(), dec31["created"].as_u64()),
        (Some("2027-02"), Some(1))
    );
    // 4 February bills the 5th for March.
    let feb4 = run(&api, "2026-02-04").await;
    assert_eq!(feb4["created"], 1);
    assert_eq!(invoices_of(&api, &id(&fifth)).await[0]["period"], "2026-03");

    let bad = api
        .post(
            "/api/v1/billing/invoice-runs",
            json!({ "date": "2026-02-30" }),
        )
        .await;
    assert_eq!(field(&bad), "date");
}

async fn paying_by_hand_is_optimistically_locked_and_two_users_at_once_get_one_win(api: TestApi) {
    let (merchant, _, _) = api.terminal(true).await;
    let (_, invoice) = invoiced_customer(&api, &merchant, "pay").await;
    let path = format!("/api/v1/invoices/{invoice}");

    let qris = api
        .post(
            &format!("{path}/pay"),
            json!({ "version": 1, "method": "qris" }),
        )
        .await;
    assert_eq!(field(&qris), "method");
    let missing = api
        .post(&format!("{path}/pay"), json!({ "method": "cash" }))
        .await;
    assert_eq!(field(&missing), "version");
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.body);

    // Two users mark it paid at once with the version they both read.
    let body = json!({ "version": 1, "method": "cash", "note": "di loket" });
    let pay = format!("{path}/pay");
    let (a, b) = tokio::join!(api.post(&pay, body.clone()), api.post(&pay, body.clone()));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{} / {}",
        a.body,
        b.body
    );
    let loser = if a.status == StatusCode::CONFLICT {
        &a
    } else {
        &b
    };
    assert_eq!(loser.body["code"], "stale_version");
    let detail = api.get(&path).await;
    assert_eq!(detail.body["status"], "paid");
    assert_eq!(detail.body["payment_method"], "cash");
    assert_eq!(detail.body["version"], 2);
    assert!(
        detail.body["receipt_path"]
            .as_str()
            .unwrap()
            .starts_with("/r/")
    );
    assert_eq!(
        detail.body["events"].as_array().unwrap().len(),
        1,
        "paid once"
    );

    let stale = api
        .post(&format!("{path}/unpay"), json!({ "version": 1 }))
        .await;
    assert_envelope(&stale, StatusCode::CONFLICT, "stale_version");
    let unpaid = api
        .post(
            &format!("{path}/unpay"),
            json!({ "version": 2, "note": "salah" }),
        )
        .await;
    assert_eq!(unpaid.status, StatusCode::OK, "{}", unpaid.body);
    assert_eq!(unpaid.body["status"], "unpaid");
    assert_eq!(unpaid.body["receipt_path"], Value::Null);
    let twice = api
        .post(&format!("{path}/unpay"), json!({ "version": 3 }))
        .await;
    assert_envelope(&twice, StatusCode::CONFLICT, "not_paid");
    let repaid = api
        .post(
            &format!("{path}/pay"),
            json!({ "version": 3, "method": "transfer" }),
        )
        .await;
    assert_eq!(repaid.status, StatusCode::OK, "{}", repaid.body);
    let paid_again = api
        .post(
            &format!("{path}/pay"),
            json!({ "version": 4, "method": "cash" }),
        )
        .await;
    assert_envelope(&paid_again, StatusCode::CONFLICT, "already_paid");
}

/// An approved merchant's terminal with a static QRIS: (merchant id, terminal id).
async fn qris_terminal(api: &TestApi) -> (String, String) {
    let (merchant, _, terminal) = api.terminal(true).await;
    let patched = api
        .call(
            "PATCH",
            &format!("/api/v1/terminals/{terminal}"),
            Some(json!({ "static_qris": STATIC })),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    (merchant, terminal)
}

async fn an_invoice_paid_by_qris_is_paid_once_and_spoken_once_whatever_the_callbacks(api: TestApi) {
    let (merchant, terminal) = qris_terminal(&api).await;
    let (device, _) = api.device("SN-INVOICE").await;
    let bound = api
        .post(
            &format!("/api/v1/devices/{device}/bind"),
            json!({ "terminal_id": terminal }),
        )
        .await;
    assert_eq!(bound.status, StatusCode::OK);
    api.transport.connect(&device);
    let (customer, invoice) = invoiced_customer(&api, &merchant, "qris").await;
    // Isolated for not paying: the QRIS payment re-activates.
    api.post(&format!("/api/v1/customers/{customer}/isolate"), json!({}))
        .await;

    let issued = api
        .post(
            &format!("/api/v1/invoices/{invoice}/qris"),
            json!({ "terminal_id": terminal }),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    let qr = gema_qris::decode(issued.body["payload"].as_str().unwrap()).unwrap();
    assert_eq!(qr.amount(), Some(100_000));
    let order = issued.body["transaction"]["order_ref"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(order.starts_with("IV"), "{order}");
    let transaction = issued.body["transaction"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let paid = crate::payments::notification(&order, "settlement", "100000.00", MIDTRANS_KEY);
    for _ in 0..3 {
        let r = crate::payments::notify(&api, &paid).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let detail = gema_gateway::testing::eventually("the invoice is paid", || async {
        let d = api.get(&format!("/api/v1/invoices/{invoice}")).await;
        (d.body["status"] == "paid").then_some(d)
    })
    .await;
    assert_eq!(detail.body["payment_method"], "qris");
    assert_eq!(detail.body["transaction_id"], transaction.as_str());
    assert_eq!(detail.body["paid_by"], format!("payment:{transaction}"));
    let kinds: Vec<&str> = detail.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["qris_issued", "paid"]);
    let customer_now = api.get(&format!("/api/v1/customers/{customer}")).await;
    assert_eq!(
        customer_now.body["status"], "active",
        "paying the overdue invoice re-activates"
    );

    let announcements = api
        .get(&format!("/api/v1/transactions/{transaction}/announcements"))
        .await;
    assert_eq!(
        announcements.body.as_array().unwrap().len(),
        1,
        "{}",
        announcements.body
    );
    let spoken = gema_gateway::testing::eventually("the announcement is published", || async {
        let n = api
            .transport
            .published()
            .iter()
            .filter(|p| p.device_id == device && p.topic.ends_with("/announce"))
            .count();
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(spoken, 1);

    let unpay = api
        .post(
            &format!("/api/v1/invoices/{invoice}/unpay"),
            json!({ "version": detail.body["version"] }),
        )
        .await;
    assert_envelope(&unpay, StatusCode::CONFLICT, "paid_by_qris");
    let again = api
        .post(
            &format!("/api/v1/invoices/{invoice}/qris"),
            json!({ "terminal_id": terminal }),
        )
        .await;
    assert_envelope(&again, StatusCode::CONFLICT, "already_paid");
}

async fn the_pay_page_shows_one_qris_for_the_invoice_and_then_its_receipt(api: TestApi) {
    let (merchant, terminal) = qris_terminal(&api).await;
    let (_, invoice) = invoiced_customer(&api, &merchant, "paypage").await;
    let detail = api.get(&format!("/api/v1/invoices/{invoice}")).await;
    assert_eq!(detail.body["receipt_path"], Value::Null);
    let pay_path = detail.body["pay_path"].as_str().unwrap().to_owned();
    let token = pay_path.strip_prefix("/p/").unwrap().to_owned();

    let (status, headers, body) = api.get_bytes(None, &pay_path).await;
    let html = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(headers[axum::http::header::CACHE_CONTROL], "no-store");
    assert!(
        headers[axum::http::header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert!(html.contains("Rp 100.000"), "{html}");
    // The code on the page is the invoice's one pending QRIS, for its total.
    let events = api.get(&format!("/api/v1/invoices/{invoice}")).await.body["events"].clone();
    let issued: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "qris_issued")
        .collect();
    assert_eq!(issued.len(), 1, "{events}");
    let transaction = issued[0]["transaction_id"].as_str().unwrap().to_owned();
    let pending = api
        .get(&format!("/api/v1/transactions/{transaction}"))
        .await;
    assert_eq!(pending.body["status"], "pending");
    assert_eq!(pending.body["amount"], 100_000);
    let order = pending.body["order_ref"].as_str().unwrap().to_owned();
    let payload = gema_qris::to_dynamic(
        STATIC,
        gema_qris::DynamicOptions {
            amount: 100_000,
            fee: None,
            reference: Some(gema_qris::Reference::Label(order.clone())),
            terminal_label: Some(
                api.get(&format!("/api/v1/terminals/{terminal}")).await.body["label"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
        },
    )
    .unwrap();
    let svg = gema_admin_api::views::qr::svg(&payload, "QRIS Rp 100.000").unwrap();
    assert!(
        html.contains(&svg),
        "the page draws the invoice's QRIS: {html}"
    );
    // A second visit shows the same code and issues nothing.
    let (_, _, again) = api.get_bytes(None, &pay_path).await;
    assert_eq!(String::from_utf8(again).unwrap(), html);
    let events = api.get(&format!("/api/v1/invoices/{invoice}")).await.body["events"].clone();
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");

    // Paid by it: the pay page sends the visitor to the receipt.
    let paid = crate::payments::notification(&order, "settlement", "100000.00", MIDTRANS_KEY);
    let r = crate::payments::notify(&api, &paid).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    gema_gateway::testing::eventually("the invoice is paid", || async {
        let d = api.get(&format!("/api/v1/invoices/{invoice}")).await;
        (d.body["status"] == "paid").then_some(d)
    })
    .await;
    let (status, headers, _) = api.get_bytes(None, &pay_path).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[axum::http::header::LOCATION], format!("/r/{token}"));
    let (status, _, receipt) = api.get_bytes(None, &format!("/r/{token}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8(receipt).unwrap().contains("LUNAS"));
    // An unknown token: the receipts' 404 page.
    let (status, _, _) = api
        .get_bytes(None, "/p/rcpt_nosuchtoken0123456789abcdef0")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn a_qris_payment_for_an_invoice_paid_by_hand_is_recorded_for_an_operator(api: TestApi) {
    let (merchant, terminal) = qris_terminal(&api).await;
    let (_, invoice) = invoiced_customer(&api, &merchant, "twice").await;
    let issued = api
        .post(
            &format!("/api/v1/invoices/{invoice}/qris"),
            json!({ "terminal_id": terminal }),
        )
        .await;
    let order = issued.body["transaction"]["order_ref"]
        .as_str()
        .unwrap()
        .to_string();
    let cash = api
        .post(
            &format!("/api/v1/invoices/{invoice}/pay"),
            json!({ "version": 1, "method": "cash" }),
        )
        .await;
    assert_eq!(cash.status, StatusCode::OK, "{}", cash.body);
    let r = crate::payments::notify(
        &api,
        &crate::payments::notification(&order, "settlement", "100000.00", MIDTRANS_KEY),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let detail = gema_gateway::testing::eventually("the second payment is recorded", || async {
        let d = api.get(&format!("/api/v1/invoices/{invoice}")).await;
        (d.body["events"].as_array().unwrap().len() == 3).then_some(d)
    })
    .await;
    assert_eq!(detail.body["events"][2]["kind"], "paid_again");
    assert_eq!(
        detail.body["payment_method"], "cash",
        "the first payment stands"
    );

    // Another merchant's terminal cannot take this invoice's QRIS.
    let (_, other) = qris_terminal(&api).await;
    let (_, open) = invoiced_customer(&api, &merchant, "other").await;
    let refused = api
        .post(
            &format!("/api/v1/invoices/{open}/qris"),
            json!({ "terminal_id": other }),
        )
        .await;
    assert_envelope(
        &refused,
        StatusCode::CONFLICT,
        "terminal_of_another_merchant",
    );
}

/// Unix ms of a Jakarta wall-clock time.
pub(crate) fn jakarta_ms(date: &str, hh: i64, mm: i64) -> i64 {
    let day = gema_gateway::billing::parse_date("d", date).unwrap();
    let midnight_utc = day.midnight().assume_utc().unix_timestamp();
    (midnight_utc + hh * 3600 + mm * 60 - 7 * 3600) * 1000
}

async fn wait_for_invoices(api: &TestApi, customer: &str, n: usize) -> Vec<Value> {
    gema_gateway::testing::eventually("the daily run", || async {
        let invoices = invoices_of(api, customer).await;
        (invoices.len() == n).then_some(invoices)
    })
    .await
}

async fn the_daemon_runs_each_day_once_after_six_and_catches_up_missed_days(api: TestApi) {
    let (merchant, _, _) = api.terminal(true).await;
    let package = package(&api, "Paket Harian", 100_000).await;
    // The daemon has been running: the run of 3 February (customers of the 4th) is done.
    let sentinel = customer(&api, &merchant, &package, "081200000004", 4, 0).await;
    api.clock.set_ms(jakarta_ms("2026-02-03", 7, 0));
    wait_for_invoices(&api, sentinel["id"].as_str().unwrap(), 1).await;
    let mut by_day = Vec::new();
    for day in 5..=8 {
        let c = customer(
            &api,
            &merchant,
            &package,
            &format!("0812000000{day:02}"),
            day,
            0,
        )
        .await;
        by_day.push(c["id"].as_str().unwrap().to_string());
    }
    // 4 February, 05:59 Jakarta: before the run's hour; nothing for the 5th.
    api.clock.set_ms(jakarta_ms("2026-02-04", 5, 59));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        invoices_of(&api, &by_day[0]).await.is_empty(),
        "not before 06:00"
    );
    // 06:00: the 5th's customers get March.
    api.clock.set_ms(jakarta_ms("2026-02-04", 6, 0));
    let made = wait_for_invoices(&api, &by_day[0], 1).await;
    assert_eq!(made[0]["period"], "2026-03");
    assert!(invoices_of(&api, &by_day[1]).await.is_empty());
    // Every node down for two days: on the 7th at 07:00, the runs of the 5th, 6th and 7th
    // happen, each once (customers of the 6th, 7th and 8th).
    api.clock.set_ms(jakarta_ms("2026-02-07", 7, 0));
    for customer in &by_day[1..] {
        let made = wait_for_invoices(&api, customer, 1).await;
        assert_eq!(made[0]["period"], "2026-03");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for customer in &by_day {
        assert_eq!(invoices_of(&api, customer).await.len(), 1, "{customer}");
    }
}
