//! Users, login, refresh-token rotation, lockout, sessions, the audit log, and secrets kept
//! out of responses, the database and logs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApi, assert_envelope};

const LOGIN: &str = "/api/v1/auth/login";

async fn wrong_login(api: &TestApi, email: &str, source: SocketAddr) -> crate::helpers::Reply {
    api.call_as(
        None,
        "POST",
        LOGIN,
        Some(json!({ "email": email, "password": "not-the-password" })),
        Some(source),
    )
    .await
}

async fn right_login(api: &TestApi, email: &str, source: SocketAddr) -> crate::helpers::Reply {
    api.call_as(
        None,
        "POST",
        LOGIN,
        Some(json!({ "email": email, "password": PASSWORD })),
        Some(source),
    )
    .await
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn token<'a>(pair: &'a Value, key: &str) -> &'a str {
    pair[key].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_user_disables_the_bootstrap_token() {
    let api = TestApi::new().await;
    assert_eq!(api.get("/api/v1/merchants").await.status, StatusCode::OK);
    // A merchant user is not an admin: the bootstrap token keeps working.
    let (merchant, _, _) = api.terminal(true).await;
    api.user("owner@warung.test", "owner", Some(&merchant))
        .await;
    assert_eq!(api.get("/api/v1/merchants").await.status, StatusCode::OK);

    api.user("admin@gema.test", "admin", None).await;
    let refused = api.get("/api/v1/merchants").await;
    assert_envelope(&refused, StatusCode::UNAUTHORIZED, "unauthorized");

    let pair = api.login("ADMIN@gema.test").await;
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["user"]["role"], "admin");
    let r = api
        .call_as(
            Some(token(&pair, "access_token")),
            "GET",
            "/api/v1/merchants",
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let me = api
        .call_as(
            Some(token(&pair, "access_token")),
            "GET",
            "/api/v1/auth/me",
            None,
            None,
        )
        .await;
    assert_eq!(me.body["role"], "admin:admin");
    assert_eq!(me.body["session_id"], pair["session_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_validated() {
    let api = TestApi::new().await;
    let bad = |body: Value| {
        let api = &api;
        async move { api.post("/api/v1/users", body).await }
    };
    let r =
        bad(json!({ "email": "a@gema.test", "name": "A", "role": "owner", "password": PASSWORD }))
            .await;
    assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.body["details"]["field"], "role");
    let r =
        bad(json!({ "email": "a@gema.test", "name": "A", "role": "viewer", "password": "short" }))
            .await;
    assert_eq!(r.body["details"]["field"], "password");
    let r =
        bad(json!({ "email": "nope", "name": "A", "role": "viewer", "password": PASSWORD })).await;
    assert_eq!(r.body["details"]["field"], "email");
    let r = bad(
        json!({ "email": "m@gema.test", "name": "A", "role": "owner",
        "merchant_id": "mer_missing", "password": PASSWORD }),
    )
    .await;
    assert_envelope(&r, StatusCode::NOT_FOUND, "not_found");
    api.user("a@gema.test", "viewer", None).await;
    let r =
        bad(json!({ "email": "A@gema.test", "name": "A", "role": "viewer", "password": PASSWORD }))
            .await;
    assert_envelope(&r, StatusCode::CONFLICT, "email_taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_used_twice_revokes_the_whole_family() {
    let api = TestApi::new().await;
    api.user("ops@gema.test", "ops", None).await;
    let first = api.login("ops@gema.test").await;
    let refresh = |t: String| {
        let api = &api;
        async move {
            api.call_as(
                None,
                "POST",
                "/api/v1/auth/refresh",
                Some(json!({ "refresh_token": t })),
                None,
            )
            .await
        }
    };
    let second = refresh(token(&first, "refresh_token").into()).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let second = second.body;
    assert_ne!(second["access_token"], first["access_token"]);
    let get = |t: String| {
        let api = &api;
        async move {
            api.call_as(Some(&t), "GET", "/api/v1/devices", None, None)
                .await
                .status
        }
    };
    // Rotation retires the old pair.
    assert_eq!(
        get(token(&first, "access_token").into()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(token(&second, "access_token").into()).await,
        StatusCode::OK
    );

    // The first refresh token again: someone copied it. Both pairs die.
    let reuse = refresh(token(&first, "refresh_token").into()).await;
    assert_envelope(&reuse, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        get(token(&second, "access_token").into()).await,
        StatusCode::UNAUTHORIZED
    );
    let after = refresh(token(&second, "refresh_token").into()).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);

    let audit = api.get("/api/v1/audit-logs?action=auth.refresh").await;
    assert_eq!(
        audit.body["items"][0]["outcome"], "reused",
        "{}",
        audit.body
    );

    // An access token expires with the clock.
    let fresh = api.login("ops@gema.test").await;
    assert_eq!(
        get(token(&fresh, "access_token").into()).await,
        StatusCode::OK
    );
    api.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        get(token(&fresh, "access_token").into()).await,
        StatusCode::UNAUTHORIZED
    );
    let renewed = refresh(token(&fresh, "refresh_token").into()).await;
    assert_eq!(renewed.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_revoked_and_logged_out() {
    let api = TestApi::new().await;
    api.user("sri@gema.test", "viewer", None).await;
    api.user("budi@gema.test", "viewer", None).await;
    let phone = api.login("sri@gema.test").await;
    let laptop = api.login("sri@gema.test").await;
    let budi = api.login("budi@gema.test").await;
    let as_laptop = |method: &'static str, path: String| {
        let api = &api;
        let t = token(&laptop, "access_token").to_string();
        async move { api.call_as(Some(&t), method, &path, None, None).await }
    };
    let list = as_laptop("GET", "/api/v1/auth/sessions".into()).await;
    assert_eq!(list.status, StatusCode::OK);
    let sessions = list.body.as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{}", list.body);
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], laptop["session_id"]);

    // Someone else's session is not found.
    let r = as_laptop(
        "DELETE",
        format!("/api/v1/auth/sessions/{}", token(&budi, "session_id")),
    )
    .await;
    assert_envelope(&r, StatusCode::NOT_FOUND, "not_found");
    let r = as_laptop(
        "DELETE",
        format!("/api/v1/auth/sessions/{}", token(&phone, "session_id")),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api
        .call_as(
            Some(token(&phone, "access_token")),
            "GET",
            "/api/v1/auth/me",
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = as_laptop("POST", "/api/v1/auth/logout".into()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = as_laptop("GET", "/api/v1/auth/me".into()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api
        .call_as(
            None,
            "POST",
            "/api/v1/auth/refresh",
            Some(json!({ "refresh_token": token(&laptop, "refresh_token") })),
            None,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "logout kills the refresh token too"
    );
    // Budi is untouched.
    let r = api
        .call_as(
            Some(token(&budi, "access_token")),
            "GET",
            "/api/v1/auth/me",
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_locks_the_account_and_every_attempt_is_audited() {
    let api = TestApi::new().await;
    api.user("kasir@gema.test", "viewer", None).await;
    let attacker = addr("203.0.113.7:5000");
    let mut statuses = Vec::new();
    for _ in 0..100 {
        let r = wrong_login(&api, "kasir@gema.test", attacker).await;
        statuses.push(r.status);
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_envelope(&r, StatusCode::TOO_MANY_REQUESTS, "login_locked");
            assert_eq!(r.headers["retry-after"], "900");
        }
    }
    assert!(
        statuses[..5].iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[5..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );

    // The right password during lockout, even from elsewhere, is refused.
    let r = right_login(&api, "kasir@gema.test", addr("198.51.100.1:1")).await;
    assert_envelope(&r, StatusCode::TOO_MANY_REQUESTS, "login_locked");

    // All 101 attempts are in the audit log.
    let audit = api
        .get("/api/v1/audit-logs?action=auth.login&target=email:kasir@gema.test&limit=200")
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    let items = audit.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 101);
    let count = |o: &str| items.iter().filter(|e| e["outcome"] == o).count();
    assert_eq!((count("failed"), count("locked")), (5, 96));
    assert!(items[..100].iter().all(|e| e["source"] == "203.0.113.7"));
    assert!(items.iter().all(|e| e["request_id"].is_string()));

    // After the window, the right password works.
    api.clock.advance(Duration::from_secs(15 * 60 + 1));
    let r = right_login(&api, "kasir@gema.test", addr("198.51.100.1:1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ok = api
        .get("/api/v1/audit-logs?action=auth.login&actor=user:")
        .await;
    assert_eq!(
        ok.body["items"].as_array().unwrap().len(),
        0,
        "actor filter is exact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_guessing_many_accounts_is_locked_out() {
    let api = TestApi::new().await;
    for i in 0..6 {
        api.user(&format!("u{i}@gema.test"), "viewer", None).await;
    }
    let attacker = addr("203.0.113.9:4000");
    for i in 0..5 {
        let r = wrong_login(&api, &format!("u{i}@gema.test"), attacker).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // A sixth account, never tried, from the same source: refused, even with its password.
    let r = right_login(&api, "u5@gema.test", attacker).await;
    assert_envelope(&r, StatusCode::TOO_MANY_REQUESTS, "login_locked");
    // The same account from another source is fine.
    let r = right_login(&api, "u5@gema.test", addr("198.51.100.2:1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Unknown e-mails fail like wrong passwords and count too.
    let r = wrong_login(&api, "ghost@gema.test", addr("198.51.100.3:1")).await;
    assert_envelope(&r, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_audited_with_actor_request_id_and_source() {
    let api = TestApi::new().await;
    let r = api
        .call_as(
            Some(&api.token),
            "POST",
            "/api/v1/merchants",
            Some(json!({ "name": "Toko Makmur" })),
            Some(addr("10.1.2.3:999")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let merchant = r.body["id"].as_str().unwrap().to_string();
    let renamed = api
        .call(
            "PATCH",
            &format!("/api/v1/merchants/{merchant}"),
            Some(json!({ "name": "Toko Makmur Jaya" })),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    let patch = api
        .get(&format!(
            "/api/v1/audit-logs?target=/api/v1/merchants/{merchant}"
        ))
        .await;
    let row = &patch.body["items"][0];
    assert_eq!(row["before"]["name"], "Toko Makmur", "{}", patch.body);
    assert_eq!(row["after"]["name"], "Toko Makmur Jaya");
    api.user("viewer@gema.test", "viewer", None).await;
    let viewer = api.login("viewer@gema.test").await;
    let denied = api
        .call_as(
            Some(token(&viewer, "access_token")),
            "POST",
            "/api/v1/merchants",
            Some(json!({ "name": "Nope" })),
            None,
        )
        .await;
    assert_envelope(&denied, StatusCode::FORBIDDEN, "forbidden");

    let admin_pair = {
        api.user("boss@gema.test", "admin", None).await;
        api.login("boss@gema.test").await
    };
    let audit = api
        .call_as(
            Some(token(&admin_pair, "access_token")),
            "GET",
            "/api/v1/audit-logs?action=merchant.write",
            None,
            None,
        )
        .await;
    let items = audit.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{}", audit.body);
    assert_eq!(items[0]["actor"], "token:bootstrap");
    assert_eq!(items[0]["target"], "/api/v1/merchants");
    assert_eq!(items[0]["outcome"], "201");
    assert_eq!(items[0]["source"], "10.1.2.3");
    assert_eq!(items[0]["request_id"].as_str(), r.request_id.as_deref());
    assert_eq!(
        items[2]["actor"],
        format!("user:{}", viewer["user"]["id"].as_str().unwrap())
    );
    assert_eq!(items[2]["outcome"], "403");
    assert_eq!(items[2]["after"], Value::Null);
    assert_eq!(items[0]["after"]["name"], "Toko Makmur");
    assert_eq!(items[0]["before"], Value::Null);

    // Time filters: nothing before the clock's start, everything from it.
    let t0 = "2023-11-14T22:13:20Z"; // the test clock's start
    let q = |from: &str| format!("/api/v1/audit-logs?action=merchant.write&from={from}");
    let all = api
        .call_as(
            Some(token(&admin_pair, "access_token")),
            "GET",
            &q(t0),
            None,
            None,
        )
        .await;
    assert_eq!(
        all.body["items"].as_array().unwrap().len(),
        3,
        "{}",
        all.body
    );
    let none = api
        .call_as(
            Some(token(&admin_pair, "access_token")),
            "GET",
            &q("2023-11-14T22:13:21Z"),
            None,
            None,
        )
        .await;
    assert_eq!(none.body["items"].as_array().unwrap().len(), 0);
    let bad = api
        .call_as(
            Some(token(&admin_pair, "access_token")),
            "GET",
            &q("yesterday"),
            None,
            None,
        )
        .await;
    assert_envelope(&bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}

/// A `tracing` writer into a buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every log line of this test binary from the first call on (a process-wide subscriber:
/// a thread-scoped one misses events whose call sites other tests registered first).
fn captured_logs() -> Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        logs
    })
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_tokens_never_reach_responses_the_database_or_logs() {
    let logs = captured_logs();
    let api = TestApi::new().await;
    let created = api
        .post(
            "/api/v1/users",
            json!({ "email": "admin@gema.test", "name": "A",
            "role": "admin", "password": PASSWORD }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let pair = api.login("admin@gema.test").await;
    let refreshed = api
        .call_as(
            None,
            "POST",
            "/api/v1/auth/refresh",
            Some(json!({ "refresh_token": token(&pair, "refresh_token") })),
            None,
        )
        .await
        .body;
    let wrong = wrong_login(&api, "admin@gema.test", addr("10.0.0.1:1")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let access = token(&refreshed, "access_token").to_string();
    // A second factor and a machine token too.
    let totp_post = |path: &'static str, body: Value| {
        let api = &api;
        let access = access.clone();
        async move {
            api.call_as(Some(&access), "POST", path, Some(body), None)
                .await
        }
    };
    let setup = totp_post("/api/v1/auth/totp/setup", json!({})).await.body;
    let totp_secret = setup["secret"].as_str().unwrap().to_string();
    let raw = gema_gateway::auth::totp::base32_decode(&totp_secret).unwrap();
    let code = format!(
        "{:06}",
        gema_gateway::auth::totp::totp(&raw, 1_700_000_000, 6)
    );
    let enabled = totp_post("/api/v1/auth/totp/enable", json!({ "code": code })).await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.body);
    let recovery: Vec<String> = enabled.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let machine = totp_post(
        "/api/v1/api-tokens",
        json!({ "name": "backend", "role": "viewer" }),
    )
    .await;
    let machine = machine.body["token"].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    for path in [
        "/api/v1/users",
        "/api/v1/audit-logs?limit=200",
        "/api/v1/auth/sessions",
        "/api/v1/auth/me",
    ] {
        let r = api.call_as(Some(&access), "GET", path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        seen.extend_from_slice(r.body.to_string().as_bytes());
    }
    seen.extend_from_slice(created.body.to_string().as_bytes());
    assert!(created.body.get("password").is_none() && created.body.get("password_hash").is_none());

    let mut database = Vec::new();
    for entry in std::fs::read_dir(api.dir()).unwrap() {
        database.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(
        contains(&database, "admin@gema.test"),
        "the search does find stored text"
    );
    let secrets = [
        PASSWORD,
        "not-the-password",
        token(&pair, "access_token"),
        token(&pair, "refresh_token"),
        token(&refreshed, "access_token"),
        token(&refreshed, "refresh_token"),
        api.token.as_str(),
    ];
    let logs = logs.0.lock().unwrap().clone();
    assert!(contains(&logs, "request"), "the log capture works");
    for secret in secrets {
        assert!(!contains(&seen, secret), "a response shows a secret");
        assert!(
            !contains(&database, secret),
            "the database stores a secret in clear"
        );
        assert!(!contains(&logs, secret), "the logs show a secret");
    }
    for secret in recovery.iter().chain([&machine]) {
        assert!(!contains(&seen, secret), "a response shows a secret");
        assert!(
            !contains(&database, secret),
            "the database stores a secret in clear"
        );
        assert!(!contains(&logs, secret), "the logs show a secret");
    }
    // The TOTP secret must be readable to check codes, so it is in the database; it is
    // shown only by the setup response and never logged.
    assert!(
        !contains(&seen, &totp_secret),
        "a response shows the TOTP secret"
    );
    assert!(
        !contains(&logs, &totp_secret),
        "the logs show the TOTP secret"
    );
    assert!(contains(&logs, "bootstrap admin token is disabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_shown_once_scoped_to_their_role_and_revocable() {
    let api = TestApi::new().await;
    let (merchant, _, _) = api.terminal(true).await;
    let created = api
        .post(
            "/api/v1/api-tokens",
            json!({ "name": "ci-deploy", "role": "viewer" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let secret = created.body["token"].as_str().unwrap().to_string();
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["role"], "viewer");
    assert_eq!(created.body["last_used_at"], Value::Null);

    let as_ci = |method: &'static str, path: &'static str| {
        let api = &api;
        let secret = secret.clone();
        async move {
            api.call_as(
                Some(&secret),
                method,
                path,
                Some(json!({ "name": "X" })),
                None,
            )
            .await
        }
    };
    assert_eq!(
        as_ci("GET", "/api/v1/merchants").await.status,
        StatusCode::OK
    );
    let denied = as_ci("POST", "/api/v1/merchants").await;
    assert_envelope(&denied, StatusCode::FORBIDDEN, "forbidden");

    let list = api.get("/api/v1/api-tokens").await;
    let text = list.body.to_string();
    assert!(!text.contains(&secret), "the token is shown only once");
    let audit = api.get("/api/v1/audit-logs?action=api_token.write").await;
    assert_eq!(audit.body["items"][0]["outcome"], "201", "{}", audit.body);
    assert!(
        !audit.body.to_string().contains(&secret),
        "nor in the audit log"
    );
    let ci = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(ci["last_used_at"].is_string(), "{ci}");
    assert!(ci.get("token").is_none() && ci.get("token_hash").is_none());

    // A merchant token sees its merchant only.
    let pos = api
        .post(
            "/api/v1/api-tokens",
            json!({ "name": "pos", "role": "owner", "merchant_id": merchant }),
        )
        .await;
    let pos = pos.body["token"].as_str().unwrap().to_string();
    let r = api
        .call_as(
            Some(&pos),
            "GET",
            &format!("/api/v1/merchants/{merchant}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api
        .call_as(Some(&pos), "GET", "/api/v1/merchants", None, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    for (body, field) in [
        (json!({ "name": "bootstrap", "role": "admin" }), "name"),
        (json!({ "name": "x", "role": "owner" }), "role"),
        (json!({ "name": "has space", "role": "viewer" }), "name"),
    ] {
        let r = api.post("/api/v1/api-tokens", body).await;
        assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(r.body["details"]["field"], field);
    }
    let dup = api
        .post(
            "/api/v1/api-tokens",
            json!({ "name": "ci-deploy", "role": "ops" }),
        )
        .await;
    assert_envelope(&dup, StatusCode::CONFLICT, "name_taken");

    let revoked = api
        .post(&format!("/api/v1/api-tokens/{id}/revoke"), json!({}))
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(revoked.body["revoked_at"].is_string());
    assert_eq!(
        as_ci("GET", "/api/v1/merchants").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_guards_login_refuses_replays_and_recovery_codes_work_once() {
    use gema_gateway::auth::totp;
    let api = TestApi::new().await;
    api.user("sec@gema.test", "ops", None).await;
    let pair = api.login("sec@gema.test").await;
    let access = token(&pair, "access_token").to_string();
    let post = |path: &'static str, body: Value| {
        let api = &api;
        let access = access.clone();
        async move {
            api.call_as(Some(&access), "POST", path, Some(body), None)
                .await
        }
    };
    let setup = post("/api/v1/auth/totp/setup", json!({})).await;
    assert_eq!(setup.status, StatusCode::OK, "{}", setup.body);
    let secret_b32 = setup.body["secret"].as_str().unwrap().to_string();
    assert!(
        setup.body["uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Gema:")
    );
    let secret = totp::base32_decode(&secret_b32).unwrap();
    let code_now = |api: &TestApi| {
        let secs = gema_gateway::auth::Clock::now_ms(api.clock.as_ref()) / 1000;
        format!("{:06}", totp::totp(&secret, secs, 6))
    };

    let wrong = post("/api/v1/auth/totp/enable", json!({ "code": "000000" })).await;
    let first_code = code_now(&api);
    if first_code != "000000" {
        assert_envelope(
            &wrong,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    }
    let enabled = post("/api/v1/auth/totp/enable", json!({ "code": first_code })).await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.body);
    let recovery: Vec<String> = enabled.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(recovery.len(), 10);

    let login = |body: Value| {
        let api = &api;
        async move { api.call_as(None, "POST", LOGIN, Some(body), None).await }
    };
    let base = json!({ "email": "sec@gema.test", "password": PASSWORD });
    let with = |extra: Value| {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let r = login(base.clone()).await;
    assert_envelope(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(r.body["message"].as_str().unwrap().contains("TOTP"));
    // The code that enabled TOTP cannot log in: its step is spent.
    let r = login(with(json!({ "totp_code": first_code }))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    api.clock.advance(Duration::from_secs(30));
    let next = code_now(&api);
    let r = login(with(json!({ "totp_code": next }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = login(with(json!({ "totp_code": next }))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a code logs in once");

    let r = login(with(json!({ "recovery_code": recovery[3] }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = login(with(json!({ "recovery_code": recovery[3] }))).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a recovery code works once"
    );

    // Neither the secret nor the recovery codes show up anywhere afterwards.
    let mut seen = String::new();
    for path in [
        "/api/v1/users",
        "/api/v1/audit-logs?limit=200",
        "/api/v1/auth/me",
    ] {
        seen.push_str(&api.get(path).await.body.to_string());
    }
    assert!(!seen.contains(&secret_b32));
    assert!(recovery.iter().all(|c| !seen.contains(c.as_str())));

    api.clock.advance(Duration::from_secs(30));
    let off = post(
        "/api/v1/auth/totp/disable",
        json!({ "totp_code": code_now(&api) }),
    )
    .await;
    assert_eq!(off.status, StatusCode::NO_CONTENT, "{}", off.body);
    let r = login(base).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_user_is_out_until_enabled_and_the_last_admin_stays() {
    let api = TestApi::new().await;
    let kasir = api.user("kasir@gema.test", "viewer", None).await;
    let pair = api.login("kasir@gema.test").await;
    let r = api
        .post(&format!("/api/v1/users/{kasir}/disable"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["disabled"], true);
    let me = api
        .call_as(
            Some(token(&pair, "access_token")),
            "GET",
            "/api/v1/auth/me",
            None,
            None,
        )
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    let r = right_login(&api, "kasir@gema.test", addr("10.9.9.9:1")).await;
    assert_envelope(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = api
        .post(&format!("/api/v1/users/{kasir}/enable"), json!({}))
        .await;
    assert_eq!(r.body["disabled"], false);
    api.login("kasir@gema.test").await;

    let root = api.user("root@gema.test", "admin", None).await;
    let admin = api.login("root@gema.test").await;
    let r = api
        .call_as(
            Some(token(&admin, "access_token")),
            "POST",
            &format!("/api/v1/users/{root}/disable"),
            Some(json!({})),
            None,
        )
        .await;
    assert_envelope(&r, StatusCode::CONFLICT, "last_admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_audit_row_cannot_be_written_is_refused_and_rolled_back() {
    let api = TestApi::new().await;
    let (device, _) = api.device("SN-AUDIT").await;
    let created = api
        .post("/api/v1/merchants", json!({ "name": "Toko Tercatat" }))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let audit = api
        .get("/api/v1/audit-logs?action=merchant.write&target=/api/v1/merchants")
        .await;
    let items = audit.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one row per write: {}", audit.body);
    assert_eq!(items[0]["actor"], "token:bootstrap");
    assert_eq!(items[0]["outcome"], "201", "the row is finished");
    assert_eq!(items[0]["after"]["id"], created.body["id"]);

    // From now on every audit insert fails: the writes they record must not happen.
    let url = format!("sqlite://{}", api.gateway.dir().join("gema.db").display());
    gema_store::testing::refuse_audit_rows(&url).await;
    let refused = api
        .post("/api/v1/merchants", json!({ "name": "Toko Tanpa Jejak" }))
        .await;
    assert_envelope(&refused, StatusCode::INTERNAL_SERVER_ERROR, "internal");
    let merchants = api.get("/api/v1/merchants").await;
    let names: Vec<&str> = merchants.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Toko Tercatat"], "the write was rolled back");

    // A single-statement write (a credential revocation) is held to the same rule.
    let revoke = api
        .call(
            "POST",
            &format!("/api/v1/devices/{device}/credentials/revoke"),
            None,
        )
        .await;
    assert_envelope(&revoke, StatusCode::INTERNAL_SERVER_ERROR, "internal");
    let after = api.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(
        after.body["credential"]["status"], "active",
        "{}",
        after.body
    );
}
