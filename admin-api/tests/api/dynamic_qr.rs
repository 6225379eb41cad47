//! Dynamic QRIS by API: a terminal's static code, an amount, a pending transaction.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{TestApi, assert_envelope, field};

/// Static DOKU code from the QRIS test vectors (V1).
const STATIC: &str = "00020101021126530012COM.DOKU.WWW0118936008990000002475020424750303URE51440014ID.CO.QRIS.WWW0215ID10200392934820303URE5204539953033605802ID5911GUREUM SHOP6013JAKARTA PUSAT61051064062070703A016304455C";
/// V2 from the same vectors: dynamic, so not a terminal's static code.
const DYNAMIC: &str = "00020101021226530012COM.DOKU.WWW0118936008990000002475020424750303URE51440014ID.CO.QRIS.WWW0215ID10200392934820303URE5204539953033605404100055020256035005802ID5911GUREUM SHOP6013JAKARTA PUSAT61051064062070703A016304FD26";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_qr_carries_the_amount_the_order_and_the_terminal() {
    let api = TestApi::new().await;
    let (_, _, terminal) = api.terminal(true).await;
    let set = api
        .call(
            "PATCH",
            &format!("/api/v1/terminals/{terminal}"),
            Some(json!({ "static_qris": STATIC })),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["static_qris"], STATIC);

    let reply = api
        .post(
            &format!("/api/v1/terminals/{terminal}/dynamic-qr"),
            json!({ "amount": 25_000 }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let payload = reply.body["payload"].as_str().unwrap();
    let qr = gema_qris::decode(payload).expect("the payload decodes, CRC included");
    assert_eq!(
        qr.point_of_initiation(),
        Some(gema_qris::PointOfInitiation::Dynamic)
    );
    assert_eq!(qr.amount(), Some(25_000));
    assert_eq!(qr.merchant_name(), Some("GUREUM SHOP"));
    let order_ref = reply.body["transaction"]["order_ref"].as_str().unwrap();
    assert_eq!(qr.reference_label(), Some(order_ref));
    assert_eq!(qr.terminal_label(), Some("A01"));

    assert_eq!(reply.body["transaction"]["status"], "pending");
    assert_eq!(reply.body["transaction"]["amount"], 25_000);
    assert_eq!(reply.body["transaction"]["terminal_id"], terminal.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_codes_and_missing_codes_are_refused_clearly() {
    let api = TestApi::new().await;
    let (_, _, terminal) = api.terminal(true).await;
    let path = format!("/api/v1/terminals/{terminal}");

    // A changed character with the old CRC, a dynamic code, garbage.
    let tampered = STATIC.replace("GUREUM", "GUREUN");
    for bad in [tampered.as_str(), DYNAMIC, "not a qris"] {
        let reply = api
            .call("PATCH", &path, Some(json!({ "static_qris": bad })))
            .await;
        assert_envelope(
            &reply,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert_eq!(field(&reply), "static_qris");
    }

    let none = api
        .post(&format!("{path}/dynamic-qr"), json!({ "amount": 1_000 }))
        .await;
    assert_envelope(&none, StatusCode::CONFLICT, "no_static_qris");

    api.call("PATCH", &path, Some(json!({ "static_qris": STATIC })))
        .await;
    let zero = api
        .post(&format!("{path}/dynamic-qr"), json!({ "amount": 0 }))
        .await;
    assert_envelope(&zero, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let transactions = api.get("/api/v1/transactions").await;
    assert_eq!(
        transactions.body["items"],
        json!([]),
        "a refusal creates nothing"
    );

    let unknown = api
        .post(
            "/api/v1/terminals/ter_missing/dynamic-qr",
            json!({ "amount": 1_000 }),
        )
        .await;
    assert_envelope(&unknown, StatusCode::NOT_FOUND, "not_found");
}
