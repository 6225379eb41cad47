//! Claims over the API: created with a secret shown once (never in the audit row), listed
//! without it, refused naming the field, revoked; unknown ids are 404.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{TestApi, assert_envelope, field};

fn in_an_hour() -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_shows_its_secret_once_and_is_listed_and_revoked_without_it() {
    let api = TestApi::new().await;
    let created = api
        .post(
            "/api/v1/claims",
            json!({ "name": "batch 24A", "serial_pattern": "SB24A-*", "max_uses": 40,
                    "expires_at": in_an_hour() }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32);
    let id = created.body["claim"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["claim"]["username"], format!("claim:{id}"));
    assert_eq!(created.body["claim"]["uses"], 0);
    assert!(created.body["ca_certificate_pem"].is_string());

    let listed = api.get("/api/v1/claims").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["items"][0]["id"], id.as_str());
    assert!(!listed.body.to_string().contains(&secret), "never listed");
    let audit = api.get("/api/v1/audit-logs?limit=200").await;
    assert!(
        audit.body.to_string().contains("/api/v1/claims"),
        "audited: {}",
        audit.body
    );
    assert!(
        !audit.body.to_string().contains(&secret),
        "never in the audit log"
    );

    let revoked = api
        .post(&format!("/api/v1/claims/{id}/revoke"), json!({}))
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.body["status"], "revoked");
    let none = api.get(&format!("/api/v1/claims/{id}/provisionings")).await;
    assert_eq!(none.body, json!([]));

    for path in [
        "/api/v1/claims/clm_nope".to_owned(),
        "/api/v1/claims/clm_nope/provisionings".to_owned(),
    ] {
        assert_envelope(&api.get(&path).await, StatusCode::NOT_FOUND, "not_found");
    }
    let never = api
        .post(
            "/api/v1/claims/provisionings/SB-NEVER/allow-reprovision",
            json!({}),
        )
        .await;
    assert_envelope(&never, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_claims_are_refused_naming_the_field() {
    let api = TestApi::new().await;
    // Long before the test clock's instant.
    let past = "2001-01-01T00:00:00Z";
    for (body, expected) in [
        (
            json!({ "name": "", "serial_pattern": "A-*", "max_uses": 1, "expires_at": in_an_hour() }),
            "name",
        ),
        (
            json!({ "name": "b", "max_uses": 1, "expires_at": in_an_hour() }),
            "serial_pattern",
        ),
        (
            json!({ "name": "b", "serial_pattern": "*", "max_uses": 1, "expires_at": in_an_hour() }),
            "serial_pattern",
        ),
        (
            json!({ "name": "b", "serial_pattern": "A-*", "serials": ["A-1"], "max_uses": 1, "expires_at": in_an_hour() }),
            "serial_pattern",
        ),
        (
            json!({ "name": "b", "serials": ["A-1", "A-1"], "max_uses": 1, "expires_at": in_an_hour() }),
            "serials",
        ),
        (
            json!({ "name": "b", "serials": ["a/b"], "max_uses": 1, "expires_at": in_an_hour() }),
            "serials",
        ),
        (
            json!({ "name": "b", "serial_pattern": "A-*", "max_uses": 0, "expires_at": in_an_hour() }),
            "max_uses",
        ),
        (
            json!({ "name": "b", "serial_pattern": "A-*", "max_uses": 1, "expires_at": past }),
            "expires_at",
        ),
    ] {
        let reply = api.post("/api/v1/claims", body.clone()).await;
        assert_envelope(
            &reply,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert_eq!(field(&reply), expected, "{body}: {}", reply.body);
    }
    let listed = api.get("/api/v1/claims").await;
    assert_eq!(listed.body["items"], json!([]), "nothing created");
}
