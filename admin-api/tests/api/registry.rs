//! The registry through the API: the happy paths, pagination, secrets shown once.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::TestApi;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_gets_credentials_once_and_binds_to_a_terminal() {
    let api = TestApi::new().await;
    let (_, _, terminal) = api.terminal(true).await;

    let created = api
        .post(
            "/api/v1/devices",
            json!({ "serial": "SB-0001", "model": "SB-100", "firmware_version": "1.2.0" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let device = created.body["device"]["id"].as_str().unwrap().to_string();
    let creds = &created.body["credentials"];
    let secret = creds["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 32);
    assert_eq!(creds["username"], device.as_str());
    assert_eq!(creds["client_id"], device.as_str());
    assert_eq!(creds["mqtt_host"], "gema.test");
    assert_eq!(creds["mqtt_port"], 8883);
    assert_eq!(creds["ca_certificate_path"], "/etc/gema/ca.pem");
    assert_eq!(creds["topic_prefix"], format!("devices/{device}/"));
    assert_eq!(
        creds["subscribe_filter"],
        format!("devices/{device}/down/#")
    );
    assert_eq!(creds["publish_prefix"], format!("devices/{device}/up/"));

    // The secret is never readable again.
    for path in [
        format!("/api/v1/devices/{device}"),
        "/api/v1/devices".to_string(),
    ] {
        let reply = api.get(&path).await;
        assert!(
            !reply.body.to_string().contains(&secret),
            "{path} leaks the secret"
        );
    }
    let stored = api
        .store
        .device_secret_hash(&device)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.contains(&secret), "stored in clear");

    let bound = api
        .post(
            &format!("/api/v1/devices/{device}/bind"),
            json!({ "terminal_id": terminal }),
        )
        .await;
    assert_eq!(bound.status, StatusCode::OK, "{}", bound.body);
    assert_eq!(bound.body["terminal_id"], terminal.as_str());

    let rotated = api
        .call(
            "POST",
            &format!("/api/v1/devices/{device}/credentials/rotate"),
            None,
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_secret = rotated.body["credentials"]["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);

    let revoked = api
        .call(
            "POST",
            &format!("/api/v1/devices/{device}/credentials/revoke"),
            None,
        )
        .await;
    assert_eq!(revoked.body["credential"]["status"], "revoked");
    assert!(revoked.body["credential"]["revoked_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_with_a_cursor_and_filter() {
    let api = TestApi::new().await;
    for i in 0..5 {
        api.post("/api/v1/merchants", json!({ "name": format!("M{i}") }))
            .await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/merchants?limit=2".to_string();
    loop {
        let page = api.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|m| m["name"].as_str().unwrap().to_string()),
        );
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/merchants?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["M0", "M1", "M2", "M3", "M4"]);

    let pending = api.get("/api/v1/merchants?status=approved").await;
    assert_eq!(pending.body["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_only_what_is_sent_and_null_clears() {
    let api = TestApi::new().await;
    let created = api
        .post(
            "/api/v1/merchants",
            json!({ "name": "Toko", "email": "a@toko.id", "phone": "+62 812 0000 1111" }),
        )
        .await;
    assert_eq!(created.body["phone"], "+6281200001111");
    let id = created.body["id"].as_str().unwrap();
    let patched = api
        .call(
            "PATCH",
            &format!("/api/v1/merchants/{id}"),
            Some(json!({ "email": null })),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.body["email"], json!(null));
    assert_eq!(patched.body["name"], "Toko");
    assert_eq!(patched.body["phone"], "+6281200001111");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route() {
    let api = TestApi::new().await;
    let doc = api.get("/api/v1/openapi.json").await;
    let paths = doc.body["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/merchants", "post"),
        ("/api/v1/merchants", "get"),
        ("/api/v1/merchants/{id}", "patch"),
        ("/api/v1/merchants/{id}/approve", "post"),
        ("/api/v1/merchants/{id}/reject", "post"),
        ("/api/v1/outlets/{id}", "get"),
        ("/api/v1/terminals", "post"),
        ("/api/v1/devices/{id}/bind", "post"),
        ("/api/v1/devices/{id}/unbind", "post"),
        ("/api/v1/devices/{id}/bindings", "get"),
        ("/api/v1/devices/{id}/credentials/rotate", "post"),
        ("/api/v1/devices/{id}/credentials/revoke", "post"),
        ("/health/deep", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());
}
