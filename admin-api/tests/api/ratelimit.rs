//! Rate limits: login and callbacks per source address, writes per caller and per source,
//! each answered 429 with Retry-After, and lifted as the key's allowance refills.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use gema_gateway::auth::AuthSettings;
use gema_gateway::auth::ratelimit::RateLimits;
use serde_json::json;

use crate::helpers::{Reply, TestApi, assert_envelope};

fn at(ip: &str) -> Option<SocketAddr> {
    Some(format!("{ip}:40000").parse().unwrap())
}

fn limited(reply: &Reply) {
    assert_envelope(reply, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let secs: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
}

async fn api() -> TestApi {
    TestApi::with_auth(AuthSettings {
        rate_limits: RateLimits {
            login_per_minute: 3,
            writes_per_minute: 5,
            callbacks_per_minute: 2,
        },
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_limited_per_source() {
    let api = api().await;
    let login = |ip: &'static str| {
        let api = &api;
        async move {
            api.call_as(
                None,
                "POST",
                "/api/v1/auth/login",
                Some(json!({ "email": "x@gema.test", "password": "whatever-long" })),
                at(ip),
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(login("10.0.0.1").await.status, StatusCode::UNAUTHORIZED);
    }
    limited(&login("10.0.0.1").await);
    assert_eq!(login("10.0.0.2").await.status, StatusCode::UNAUTHORIZED);
    api.clock.advance(Duration::from_secs(60));
    assert_eq!(login("10.0.0.1").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_limited_per_caller_and_per_source() {
    let api = api().await;
    let write = |token: String, ip: &'static str| {
        let api = &api;
        async move {
            api.call_as(
                Some(&token),
                "POST",
                "/api/v1/merchants",
                Some(json!({ "name": "Toko" })),
                at(ip),
            )
            .await
        }
    };
    let ci = api
        .call_as(
            Some(&api.token),
            "POST",
            "/api/v1/api-tokens",
            Some(json!({ "name": "ci", "role": "ops" })),
            at("10.0.0.9"),
        )
        .await;
    assert_eq!(ci.status, StatusCode::CREATED);
    let ci = ci.body["token"].as_str().unwrap().to_string();
    for _ in 0..4 {
        assert_eq!(
            write(api.token.clone(), "10.0.0.1").await.status,
            StatusCode::CREATED
        );
    }
    // The bootstrap token made five writes: its sixth is refused from any address.
    limited(&write(api.token.clone(), "10.0.0.2").await);
    // Another caller is not held up by it...
    assert_eq!(
        write(ci.clone(), "10.0.0.3").await.status,
        StatusCode::CREATED
    );
    // ...except from the busy address, which made five writes too.
    assert_eq!(
        write(ci.clone(), "10.0.0.1").await.status,
        StatusCode::CREATED
    );
    limited(&write(ci.clone(), "10.0.0.1").await);
    // Reads are not limited.
    let r = api
        .call_as(
            Some(&api.token),
            "GET",
            "/api/v1/merchants",
            None,
            at("10.0.0.1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    api.clock.advance(Duration::from_secs(60));
    assert_eq!(
        write(api.token.clone(), "10.0.0.1").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_limited_per_source() {
    let api = api().await;
    let callback = |ip: &'static str| {
        let api = &api;
        async move {
            api.call_as(
                None,
                "POST",
                "/api/v1/payments/midtrans/notification",
                Some(json!({})),
                at(ip),
            )
            .await
        }
    };
    for _ in 0..2 {
        let r = callback("10.0.0.1").await;
        assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    }
    limited(&callback("10.0.0.1").await);
    assert_ne!(
        callback("10.0.0.2").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}
