//! The web console in a real browser (`browser.rs`: headless Chromium through chromedriver),
//! following what operators and merchants do: log in (a wrong password, a TOTP code), watch
//! a soundbox come online in the registry without a reload, be refused a form without its
//! CSRF token (the 403 page), and, as a merchant, see only their own merchant and devices
//! (another merchant's page is the 404 page) and be refused an operator page and a screen
//! their role may not use (the 403 page, and no link to it). The everyday work too: an
//! operator rotates a device's credential and sees the new secret once (the old one is then
//! refused at the broker), a merchant watches a signed payment arrive on their open payments
//! page, finance generates a settlement batch, marks it paid and downloads its CSV, and an
//! operator imports customers from a CSV after its dry run names the bad row. Finance adds an
//! adjustment to a pending batch and finds it in the adjustments list, and uploads a
//! provider's report for the payments of a paid settlement batch (the run shows them
//! matched, its CSV and a re-run too); an operator sends a command to a connected soundbox
//! from its page and sees it succeed in the list. A merchant owner shows an invoice's QRIS,
//! marks the invoice paid (and undoes it) and cannot open another merchant's; an operator
//! prices a package and isolates a customer with a reason. An admin adds a merchant's owner
//! (the form refuses a merchant role without the merchant, naming the field), reads the role
//! table, and issues an API token that is shown once and then works against the API. A
//! merchant owner adds a customer on a phone and changes their phone and discount (the only
//! fields a merchant may change; a forged name is refused).
//! Logging out of the console leaves its audit row, as the API's logout does.
//! Every page visited passes the console-error, axe-core and screenshot checks of
//! [`Browser::check_page`], some at phone size and in the dark theme too. Skipped loudly
//! without Chromium, chromedriver or axe-core; under `CI=true` that is a failure.
//!
//! Users, merchants and devices are made through the JSON API with the bootstrap token (the
//! operators made here are never `admin`, which would retire that token).

use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

use gema::sim::{SimDevice, SimEvent, run_device};
use gema_gateway::settlement::STANDARD_COLUMNS;
use serde_json::json;

use crate::browser::{Browser, DESKTOP, PHONE};
use crate::helpers::{Daemon, LogOnFailure, connected_sim, next_event, sim_options};
use crate::payments::{KEY, notification, notify, order};

const PASSWORD: &str = "kopi-tubruk-manis";
/// How long a live update may take to reach the page.
const LIVE: Duration = Duration::from_secs(15);

/// `gema serve` with a cheap password hash: a debug build need not pay the production
/// 600,000 rounds on every login.
fn daemon(dir: &std::path::Path) -> Daemon {
    Daemon::start_with(dir, &[("GEMA_AUTH__PASSWORD_ITERATIONS", "10000")])
}

/// [`daemon`] taking signed Midtrans callbacks (the payments tests' server key).
fn paying_daemon(dir: &std::path::Path) -> Daemon {
    Daemon::start_with(
        dir,
        &[
            ("GEMA_AUTH__PASSWORD_ITERATIONS", "10000"),
            ("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY),
        ],
    )
}

/// A user with [`PASSWORD`]: an operator (`ops`) or, with a merchant, its staff.
async fn create_user(daemon: &Daemon, email: &str, role: &str, merchant_id: Option<&str>) {
    let (status, body) = daemon
        .post(
            "/api/v1/users",
            json!({
                "email": email,
                "name": email.split('@').next().unwrap(),
                "role": role,
                "merchant_id": merchant_id,
                "password": PASSWORD,
            }),
        )
        .await;
    assert_eq!(status, 201, "create {email}: {body}");
}

/// An approved merchant's id.
async fn approved_merchant(daemon: &Daemon, name: &str) -> String {
    let (status, merchant) = daemon
        .post("/api/v1/merchants", json!({ "name": name }))
        .await;
    assert_eq!(status, 201, "{merchant}");
    let id = merchant["id"].as_str().unwrap().to_string();
    let (status, body) = daemon
        .post(&format!("/api/v1/merchants/{id}/approve"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    id
}

/// Turns TOTP on for `email` through the API (its own session, as a user would from the
/// profile) and returns the secret. The code that confirms it is the previous step's, so
/// the current one is still unused for the login that follows.
async fn enable_totp(daemon: &Daemon, email: &str) -> Vec<u8> {
    let (_, pair) = daemon.login(email, PASSWORD).await;
    let token = pair["access_token"].as_str().expect("an access token");
    let client = reqwest::Client::new();
    let setup: serde_json::Value = client
        .post(format!("{}/api/v1/auth/totp/setup", daemon.api_url))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = gema_gateway::auth::totp::base32_decode(setup["secret"].as_str().unwrap())
        .expect("a base32 secret");
    let response = client
        .post(format!("{}/api/v1/auth/totp/enable", daemon.api_url))
        .bearer_auth(token)
        .json(&json!({ "code": totp_code(&secret, -30) }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    secret
}

/// The authenticator app's code, `offset_secs` from now.
fn totp_code(secret: &[u8], offset_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    format!(
        "{:06}",
        gema_gateway::auth::totp::totp(secret, now + offset_secs, 6)
    )
}

/// Fills and sends the login form as a person would.
async fn log_in(browser: &Browser, email: &str, password: &str, code: Option<&str>) {
    if !browser.path().await.starts_with("/login") {
        browser.visit("/login").await;
    }
    browser.fill("email", email).await;
    browser.fill("password", password).await;
    if let Some(code) = code {
        browser.fill("code", code).await;
    }
    browser
        .click("form[action=\"/login\"] button[type=submit]")
        .await;
}

/// The text of the login page's alert.
async fn login_alert(browser: &Browser) -> String {
    assert!(
        browser.path().await.starts_with("/login"),
        "still on the login page: {}",
        browser.describe().await
    );
    browser.text("[role=alert]").await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_logs_in_after_a_wrong_password_and_a_totp_user_must_give_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    create_user(&daemon, "ops@gema.test", "ops", None).await;
    create_user(&daemon, "finance@gema.test", "finance", None).await;
    let secret = enable_totp(&daemon, "finance@gema.test").await;

    // Not logged in: the console sends the browser to the login page.
    browser.visit("/").await;
    assert!(
        browser.path().await.starts_with("/login"),
        "{}",
        browser.describe().await
    );
    browser.check_page("login").await;

    log_in(&browser, "ops@gema.test", "not-the-password", None).await;
    let alert = login_alert(&browser).await;
    assert!(!alert.trim().is_empty(), "an empty alert");
    browser.check_error_page("login-failed", 401).await;

    log_in(&browser, "ops@gema.test", PASSWORD, None).await;
    assert_eq!(browser.path().await, "/", "{}", browser.describe().await);
    browser.find("main h1").await;
    browser.check_page("overview").await;
    let session = browser
        .client
        .get_named_cookie("gema_session")
        .await
        .expect("the session cookie");
    assert_eq!(session.http_only(), Some(true), "{session:?}");
    // (fantoccini does not re-export the cookie crate's `SameSite`.)
    assert_eq!(
        format!("{:?}", session.same_site()),
        "Some(Strict)",
        "{session:?}"
    );

    // Log out through the header's form; the overview then asks for a login again.
    browser
        .click("form[action=\"/logout\"] button[type=submit]")
        .await;
    assert!(browser.path().await.starts_with("/login"));
    browser.visit("/").await;
    assert!(browser.path().await.starts_with("/login"), "logged out");

    // TOTP on: the password alone is not enough, a wrong code neither.
    log_in(&browser, "finance@gema.test", PASSWORD, None).await;
    let asked = login_alert(&browser).await;
    log_in(&browser, "finance@gema.test", PASSWORD, Some("000000")).await;
    let wrong = login_alert(&browser).await;
    assert_ne!(
        asked, wrong,
        "the code missing and the code wrong read alike"
    );
    browser.check_error_page("login-code", 401).await;
    log_in(
        &browser,
        "finance@gema.test",
        PASSWORD,
        Some(&totp_code(&secret, 0)),
    )
    .await;
    assert_eq!(browser.path().await, "/", "{}", browser.describe().await);
    browser.check_page("overview-finance").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_already_open_shows_a_soundbox_come_online_without_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    create_user(&daemon, "ops@gema.test", "ops", None).await;
    let bound = daemon
        .approved_terminal_with_device("SB100-CONSOLE-1")
        .await;
    let id = bound.device.device_id.clone();

    log_in(&browser, "ops@gema.test", PASSWORD, None).await;
    browser.visit("/devices").await;
    let presence = format!("tr[data-device-id=\"{id}\"] [data-presence]");
    let state = |expected: &str| {
        format!(
            "const cell = document.querySelector('{}'); \
             return cell !== null && cell.getAttribute('data-state') === '{expected}';",
            presence.replace('\'', "\\'")
        )
    };
    let offline = browser
        .find(&presence)
        .await
        .attr("data-state")
        .await
        .unwrap();
    assert_ne!(
        offline.as_deref(),
        Some("online"),
        "online before it dialled in"
    );
    browser.check_page("devices").await;
    // A mark on this document: a reload (or any navigation) would lose it.
    browser.run("window.gemaSameDocument = true;", vec![]).await;

    let (_sim, _events) =
        connected_sim(daemon.mqtt_addr.port(), &bound.device, &bound.ca_pem).await;
    browser
        .wait_until(&state("online"), LIVE, "the device shown online")
        .await;
    assert_eq!(
        browser
            .run("return window.gemaSameDocument === true;", vec![])
            .await,
        json!(true),
        "the page was reloaded"
    );
    browser.check_page("devices-online").await;

    // At phone size the registry still fits the screen's width (the table scrolls inside
    // its own box, the page does not), and in the dark theme it passes the checks too.
    browser.resize(PHONE).await;
    assert_page_fits_width(&browser).await;
    browser.check_page("devices-phone").await;
    browser.resize(DESKTOP).await;
    browser.visit("/preferences?theme=dark&next=/devices").await;
    assert_eq!(browser.path().await, "/devices");
    browser.check_page("devices-dark").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_javascript_an_operator_logs_in_reads_the_registry_and_switches_to_english() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start_without_scripts(&daemon.api_url).await else {
        return;
    };
    create_user(&daemon, "ops@gema.test", "ops", None).await;
    let bound = daemon.approved_terminal_with_device("SB100-NOSCRIPT").await;
    let id = &bound.device.device_id;

    log_in(&browser, "ops@gema.test", PASSWORD, None).await;
    assert_eq!(browser.path().await, "/", "{}", browser.describe().await);
    browser.visit("/devices").await;
    assert_eq!(
        browser.run("return typeof window.gemaLive;", vec![]).await,
        json!("undefined"),
        "the page's script ran: scripts are not off"
    );
    let presence = format!("tr[data-device-id=\"{id}\"] [data-presence]");
    let (_sim, _events) =
        connected_sim(daemon.mqtt_addr.port(), &bound.device, &bound.ca_pem).await;
    // Without the live stream a reload shows it.
    let deadline = std::time::Instant::now() + LIVE;
    loop {
        browser.visit("/devices").await;
        let state = browser
            .find(&presence)
            .await
            .attr("data-state")
            .await
            .unwrap();
        if state.as_deref() == Some("online") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not shown online after reloads: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    browser.check_page("devices-noscript").await;

    let indonesian = browser.text("main h1").await;
    browser.click("footer a[lang=en]").await;
    assert_eq!(browser.path().await, "/devices");
    assert_eq!(
        browser
            .find("html")
            .await
            .attr("lang")
            .await
            .unwrap()
            .as_deref(),
        Some("en")
    );
    assert_ne!(browser.text("main h1").await, indonesian, "not translated");
    browser.check_page("devices-english").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_posted_without_its_csrf_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    create_user(&daemon, "ops@gema.test", "ops", None).await;

    // The login form, before any session.
    browser.visit("/login").await;
    browser
        .run(
            "document.querySelector('form[action=\"/login\"] input[name=csrf]').remove();",
            vec![],
        )
        .await;
    log_in(&browser, "ops@gema.test", PASSWORD, None).await;
    login_alert(&browser).await;
    browser.visit("/").await;
    assert!(
        browser.path().await.starts_with("/login"),
        "logged in without the form's token"
    );

    // The logout form of a session: refused with the 403 page, and the session lives on.
    log_in(&browser, "ops@gema.test", PASSWORD, None).await;
    assert_eq!(browser.path().await, "/", "{}", browser.describe().await);
    browser
        .run(
            "document.querySelector('form[action=\"/logout\"] input[name=csrf]').remove();",
            vec![],
        )
        .await;
    browser
        .click("form[action=\"/logout\"] button[type=submit]")
        .await;
    assert_forbidden_page(&browser).await;
    browser.check_error_page("csrf-refused", 403).await;
    browser.visit("/").await;
    assert_eq!(browser.path().await, "/", "the refused logout logged out");

    // The same without a browser: the session's cookie, a form without the token.
    let cookie = browser
        .client
        .get_named_cookie("gema_session")
        .await
        .expect("the session cookie");
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(browser.url("/logout"))
        .header("cookie", format!("gema_session={}", cookie.value()))
        .form(&[("nothing", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn logging_out_of_the_console_leaves_an_audit_row_as_the_apis_logout_does() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    create_user(&daemon, "ops@gema.test", "ops", None).await;
    let (_, pair) = daemon.login("ops@gema.test", PASSWORD).await;
    let token = pair["access_token"].as_str().expect("an access token");

    // The header's logout form, as a browser posts it: the session's cookie and its token.
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/logout", daemon.api_url))
        .header("cookie", format!("gema_session={token}"))
        .form(&[("csrf", gema_console::session::csrf_token(token))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let me = reqwest::Client::new()
        .get(format!("{}/api/v1/auth/me", daemon.api_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401, "the session outlived its logout");

    let (status, audit) = daemon.get("/api/v1/audit-logs?action=session.own").await;
    assert_eq!(status, 200, "{audit}");
    let logged_out = audit["items"].as_array().unwrap().iter().any(|entry| {
        entry["outcome"] == "ok"
            && entry["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("user:"))
            && entry["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("session:"))
    });
    assert!(logged_out, "no audit row for the logout: {audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merchant_user_sees_only_their_own_merchant_and_devices_also_on_a_phone() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    let (sari, sari_device) = merchant_with_device(&daemon, "Warung Sari", "SB100-SARI").await;
    let (other, other_device) = merchant_with_device(&daemon, "Toko Makmur", "SB100-MAKMUR").await;
    create_user(&daemon, "owner@sari.test", "owner", Some(&sari)).await;

    log_in(&browser, "owner@sari.test", PASSWORD, None).await;
    assert_eq!(browser.path().await, "/", "{}", browser.describe().await);
    browser.check_page("overview-merchant").await;
    browser.resize(PHONE).await;
    assert_page_fits_width(&browser).await;
    browser.check_page("overview-merchant-phone").await;
    browser.resize(DESKTOP).await;

    browser.visit("/devices").await;
    browser
        .find(&format!("tr[data-device-id=\"{sari_device}\"]"))
        .await;
    let others = browser
        .run(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(format!("tr[data-device-id=\"{other_device}\"]"))],
        )
        .await;
    assert_eq!(others, json!(0), "another merchant's device is listed");
    let page = browser.client.source().await.unwrap();
    assert!(
        !page.contains(&other_device) && !page.contains("SB100-MAKMUR"),
        "another merchant's device on the page"
    );
    browser.check_page("devices-merchant").await;

    // Their own merchant's page, yes; another merchant's is not found (as in the API), and
    // an operator page (users) is refused: each a whole page, never a blank.
    browser.visit(&format!("/merchants/{sari}")).await;
    browser.find("main h1").await;
    browser.check_page("merchant-own").await;
    browser.visit(&format!("/merchants/{other}")).await;
    assert_eq!(
        browser.text("main h1").await,
        "Tidak ditemukan",
        "{}",
        browser.describe().await
    );
    assert!(
        !browser
            .client
            .source()
            .await
            .unwrap()
            .contains("Toko Makmur")
    );
    browser.check_error_page("merchant-other", 404).await;
    browser.visit("/users").await;
    assert_forbidden_page(&browser).await;
    browser.check_error_page("forbidden-users", 403).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merchant_viewer_is_not_shown_the_whatsapp_log_and_gets_the_403_page_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    let sari = approved_merchant(&daemon, "Warung Sari").await;
    create_user(&daemon, "owner@sari.test", "owner", Some(&sari)).await;
    create_user(&daemon, "viewer@sari.test", "viewer", Some(&sari)).await;
    let whatsapp_link = "header nav a[href=\"/whatsapp\"]";
    let links = |css: &str| {
        format!(
            "return document.querySelectorAll('{}').length;",
            css.replace('\'', "\\'")
        )
    };

    // The owner may read the merchant's WhatsApp log: the link, and the page.
    log_in(&browser, "owner@sari.test", PASSWORD, None).await;
    assert_eq!(browser.run(&links(whatsapp_link), vec![]).await, json!(1));
    browser.click(whatsapp_link).await;
    assert_eq!(browser.path().await, "/whatsapp");
    browser.find("main h1").await;
    browser.check_page("whatsapp-merchant").await;
    browser
        .click("form[action=\"/logout\"] button[type=submit]")
        .await;

    // A viewer may not (customers' numbers and words): no link, and the 403 page.
    log_in(&browser, "viewer@sari.test", PASSWORD, None).await;
    assert_eq!(browser.path().await, "/", "{}", browser.describe().await);
    assert_eq!(
        browser.run(&links(whatsapp_link), vec![]).await,
        json!(0),
        "the viewer is shown a link to a page it may not open"
    );
    browser.visit("/whatsapp").await;
    assert_forbidden_page(&browser).await;
    browser.check_error_page("forbidden", 403).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_rotates_a_credential_and_sees_the_new_secret_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    create_user(&daemon, "ops@gema.test", "ops", None).await;
    let bound = daemon.approved_terminal_with_device("SB100-ROTATE").await;
    let id = bound.device.device_id.clone();
    let device_page = format!("/devices/{id}");

    log_in(&browser, "ops@gema.test", PASSWORD, None).await;
    browser.visit(&device_page).await;
    browser.check_page("device").await;
    browser.click("#rotate").await;
    assert_eq!(
        browser.path().await,
        format!("/devices/{id}/rotate"),
        "{}",
        browser.describe().await
    );
    browser.find("dialog#secret-dialog[open]").await;
    let secret = browser.text("#device-secret").await;
    assert!(!secret.trim().is_empty(), "an empty secret");
    assert_ne!(secret, bound.device.secret, "the secret did not change");
    assert_eq!(browser.text("#device-username").await, id);
    browser.find("#provisioning-qr svg").await;
    // Inside a closed <details>: its text content, not the rendered text.
    let provisioning = browser
        .run(
            "return document.querySelector('#provisioning-string').textContent;",
            vec![],
        )
        .await;
    let provisioning = provisioning.as_str().expect("the provisioning string");
    assert!(
        provisioning.contains(&format!("id={id};")) && provisioning.contains(&secret),
        "the provisioning string is not this credential's: {provisioning}"
    );
    browser.check_page("device-secret").await;

    // Shown once: the device's page, and a refresh of it, never carry it again.
    browser.visit(&device_page).await;
    assert_no_secret(&browser, &secret).await;
    browser.check_page("console-device").await;
    browser.client.refresh().await.expect("refresh the page");
    assert_eq!(browser.path().await, device_page);
    assert_no_secret(&browser, &secret).await;
    browser.check_page("device-refreshed").await;

    // The old secret is refused at the broker; the one shown gets in.
    let (tx, mut events) = tokio::sync::mpsc::channel(64);
    let old = tokio::spawn(run_device(
        bound.device.clone(),
        sim_options(
            daemon.mqtt_addr.port(),
            bound.ca_pem.clone(),
            Arc::new(AtomicU8::new(0)),
        ),
        tx,
    ));
    let first = next_event(&mut events, |e| {
        matches!(
            e,
            SimEvent::Connected { .. } | SimEvent::Disconnected { .. }
        )
    })
    .await;
    old.abort();
    assert!(
        matches!(first, SimEvent::Disconnected { .. }),
        "the old secret got in: {first:?}"
    );
    let new = SimDevice {
        device_id: id.clone(),
        secret,
    };
    let (_sim, _events) = connected_sim(daemon.mqtt_addr.port(), &new, &bound.ca_pem).await;
}

/// No trace of `secret` on the page now shown: no secret field, not in its source.
async fn assert_no_secret(browser: &Browser, secret: &str) {
    assert_eq!(
        count(browser, "#device-secret").await,
        0,
        "{}",
        browser.describe().await
    );
    let source = browser.client.source().await.expect("the page's source");
    assert!(!source.contains(secret), "the secret is on the page again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_callback_shows_the_payment_on_the_merchants_open_page_without_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = paying_daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    let (sari, terminal) = merchant_with_terminal(&daemon, "Warung Sari").await;
    create_user(&daemon, "owner@sari.test", "owner", Some(&sari)).await;

    log_in(&browser, "owner@sari.test", PASSWORD, None).await;
    browser.visit("/transactions").await;
    browser.find("table#payments-live[data-live]").await;
    browser.check_page("payments-merchant").await;
    browser.run("window.gemaSameDocument = true;", vec![]).await;

    // The customer pays: the order, then the provider's signed callback.
    let id = order(&daemon, &terminal, "ORD-CONSOLE-LIVE", 25_000).await;
    let (status, reply) = notify(
        &daemon,
        &notification("ORD-CONSOLE-LIVE", "settlement", "25000.00"),
    )
    .await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("applied")));
    browser
        .wait_until(
            &format!(
                "return document.querySelector('table#payments-live \
                 tr[data-transaction-id=\"{id}\"][data-status=\"paid\"]') !== null;"
            ),
            LIVE,
            "the paid transaction shown",
        )
        .await;
    assert_eq!(
        browser
            .run("return window.gemaSameDocument === true;", vec![])
            .await,
        json!(true),
        "the page was reloaded"
    );
    browser.check_page("payments-merchant-live").await;

    browser.resize(PHONE).await;
    assert_page_fits_width(&browser).await;
    // The stacked rows fit too: nothing of a payment hides behind a sideways scroll.
    let hidden = browser
        .run(
            "const wrap = document.querySelector('table.stack').closest('.table-wrap');
             return wrap.scrollWidth - wrap.clientWidth;",
            vec![],
        )
        .await;
    assert!(
        hidden.as_i64().is_some_and(|px| px <= 1),
        "the payments scroll sideways on a phone by {hidden}px"
    );
    browser.check_page("console-payments-phone").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn finance_generates_a_settlement_batch_marks_it_paid_and_downloads_its_csv() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = paying_daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    create_user(&daemon, "finance@gema.test", "finance", None).await;
    let (sari, terminal) = merchant_with_terminal(&daemon, "Warung Sari").await;
    let (status, body) = daemon
        .put(
            &format!("/api/v1/merchants/{sari}/bank-account"),
            json!({
                "bank_code": "014",
                "account_number": "1234567890",
                "account_holder": "Warung Sari",
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Over the default payout minimum (Rp 50,000).
    let transaction = order(&daemon, &terminal, "ORD-CONSOLE-PAYOUT", 100_000).await;
    let (status, reply) = notify(
        &daemon,
        &notification("ORD-CONSOLE-PAYOUT", "settlement", "100000.00"),
    )
    .await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("applied")));

    log_in(&browser, "finance@gema.test", PASSWORD, None).await;
    assert_eq!(browser.path().await, "/", "{}", browser.describe().await);
    browser.check_page("console-overview").await;
    browser.visit("/settlement").await;
    browser.check_page("settlement").await;
    browser.click("#generate-batches #generate-submit").await;
    assert!(
        browser
            .path()
            .await
            .starts_with("/settlement?generated=1&skipped=0"),
        "{}",
        browser.describe().await
    );
    let batch = browser
        .find("tr[data-batch-id]")
        .await
        .attr("data-batch-id")
        .await
        .unwrap()
        .expect("the batch's id");
    assert_eq!(count(&browser, "tr[data-batch-id]").await, 1);
    browser.check_page("settlement-generated").await;

    browser
        .click(&format!(
            "tr[data-batch-id=\"{batch}\"] a[href=\"/settlement/{batch}\"]"
        ))
        .await;
    assert_eq!(browser.path().await, format!("/settlement/{batch}"));
    browser.check_page("settlement-batch").await;
    browser.fill("payout_reference", "BCA-20261205-001").await;
    browser.click("#mark-paid").await;
    assert_eq!(
        browser.text("#batch-status").await,
        "Dibayar",
        "{}",
        browser.describe().await
    );
    assert_eq!(browser.text("#batch-reference").await, "BCA-20261205-001");
    browser.check_page("settlement-batch-paid").await;
    let (_, paid) = daemon
        .get(&format!("/api/v1/settlement-batches/{batch}"))
        .await;
    assert_eq!(paid["batch"]["status"], "paid", "{paid}");

    // The CSV behind the page's link, with the browser's session.
    let href = browser
        .find("#batch-csv")
        .await
        .attr("href")
        .await
        .unwrap()
        .expect("the CSV link");
    let response = session_get(&browser, &href).await;
    assert_eq!(response.status(), 200);
    let csv = response.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(STANDARD_COLUMNS), "{csv}");
    let rows: Vec<&str> = lines.collect();
    assert!(!rows.is_empty(), "no rows: {csv}");
    assert!(
        rows.iter()
            .all(|row| row.starts_with(&format!("{batch},{sari},"))),
        "{csv}"
    );
    assert!(
        rows.iter()
            .any(|row| row.contains(&transaction) && row.contains("ORD-CONSOLE-PAYOUT")),
        "the paid transaction is not in the batch: {csv}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_imports_customers_from_a_csv_after_its_dry_run_names_the_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    create_user(&daemon, "ops@gema.test", "ops", None).await;
    approved_merchant(&daemon, "Warung Sari").await;
    billing_package(&daemon, "Paket 10 Mbps", 100_000).await;
    // Two good rows and one with a phone and a billing day that are not.
    let file = dir.path().join("pelanggan.csv");
    std::fs::write(
        &file,
        "nama,telepon,diskon,tanggal,area,paket_nama,paket_tarif,total_bayar,nik,tanggal_register\n\
         Budi Santoso,081234567801,0,5,Warung Sari,Paket 10 Mbps,100000,100000,,2026-11-01\n\
         Siti Aminah,+6281234567802,10000,12,Warung Sari,Paket 10 Mbps,100000,90000,,\n\
         Joko Widodo,12,0,31,Warung Sari,Paket 10 Mbps,100000,100000,,\n",
    )
    .unwrap();

    log_in(&browser, "ops@gema.test", PASSWORD, None).await;
    browser.visit("/billing/import").await;
    browser.check_page("billing-import").await;
    browser
        .find("#import-file")
        .await
        .send_keys(file.to_str().unwrap())
        .await
        .expect("choose the file");
    browser.click("#dry-run").await;
    assert_eq!(
        count(&browser, "#import-rows tr[data-line][data-status]").await,
        3,
        "{}",
        browser.describe().await
    );
    assert_eq!(
        count(&browser, "#import-rows tr[data-status=\"ok\"]").await,
        2
    );
    let bad = "#import-rows tr[data-status=\"bad\"]";
    assert_eq!(count(&browser, bad).await, 1);
    for field in ["telepon", "tanggal"] {
        assert_eq!(
            count(&browser, &format!("{bad} li[data-field=\"{field}\"]")).await,
            1,
            "no problem with {field} shown: {}",
            browser.text(bad).await
        );
    }
    browser.check_page("billing-import-dry-run").await;
    let (_, customers) = daemon.get("/api/v1/customers").await;
    assert_eq!(
        customers["items"].as_array().map(Vec::len),
        Some(0),
        "the dry run wrote: {customers}"
    );

    browser.click("#import-submit").await;
    assert!(
        browser
            .path()
            .await
            .starts_with("/billing/import?imported=2"),
        "{}",
        browser.describe().await
    );
    let done = browser.text("#import-done").await;
    assert!(done.contains(": 2 "), "{done}");
    browser.check_page("billing-import-done").await;

    browser.visit("/billing/customers").await;
    assert_eq!(count(&browser, "#customers tr[data-customer-id]").await, 2);
    let page = browser.client.source().await.unwrap();
    assert!(
        page.contains("Budi Santoso") && page.contains("Siti Aminah"),
        "the imported customers are not listed"
    );
    assert!(
        !page.contains("Joko Widodo"),
        "the invalid row was imported"
    );
    browser.check_page("billing-customers").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merchant_owner_adds_a_customer_on_a_phone_and_changes_only_phone_and_discount() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    let sari = approved_merchant(&daemon, "Warung Sari").await;
    let package = billing_package(&daemon, "Paket 20 Mbps", 150_000).await;
    create_user(&daemon, "owner@sari.test", "owner", Some(&sari)).await;

    log_in(&browser, "owner@sari.test", PASSWORD, None).await;
    browser.resize(PHONE).await;
    browser.visit("/billing/customers").await;
    browser.click("#add-customer").await;
    assert_eq!(browser.path().await, "/billing/customers/new");
    assert_eq!(
        count(&browser, "#customer-form [name=merchant_id]").await,
        0
    );
    assert_page_fits_width(&browser).await;
    browser.check_page("billing-customer-new-phone").await;

    // A phone number that is no number: refused, the field named, nobody added.
    fill_new_customer(&browser, "bukan nomor", &package).await;
    browser.click("#save-customer").await;
    let source = browser.client.source().await.unwrap();
    assert!(source.contains("phone"), "{}", browser.describe().await);
    browser
        .check_error_page("billing-customer-bad-phone", 400)
        .await;
    let (_, listed) = daemon.get("/api/v1/customers").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 0, "{listed}");

    browser.visit("/billing/customers/new").await;
    fill_new_customer(&browser, "081234567890", &package).await;
    browser.click("#save-customer").await;
    let path = browser.path().await;
    let id = path
        .strip_prefix("/billing/customers/")
        .and_then(|rest| rest.strip_suffix("?done=created"))
        .unwrap_or_else(|| panic!("not the new customer's page: {path}"))
        .to_string();
    browser.find("#notice").await;
    let (status, customer) = daemon.get(&format!("/api/v1/customers/{id}")).await;
    assert_eq!(status, 200, "{customer}");
    assert_eq!(customer["merchant_id"], json!(sari));
    assert_eq!(customer["name"], json!("Rina Wati"));
    assert_eq!(customer["phone"], json!("6281234567890"));
    assert_eq!(customer["discount"], json!(25_000));
    assert_eq!(customer["billing_day"], json!(7));
    assert_eq!(
        rupiah_shown(&browser.text("#customer-monthly").await),
        125_000
    );

    // The edit form: phone and discount only.
    browser.click("#edit-customer").await;
    assert_eq!(
        browser.path().await,
        format!("/billing/customers/{id}/edit")
    );
    for field in [
        "name",
        "package_id",
        "billing_day",
        "nik",
        "address",
        "notes",
    ] {
        assert_eq!(
            count(&browser, &format!("#customer-form [name={field}]")).await,
            0,
            "a merchant's edit form offers {field}"
        );
    }
    browser.check_page("billing-customer-edit-phone").await;
    browser.fill("phone", "6289876543210").await;
    browser.fill("discount", "50.000").await;
    browser.click("#save-customer").await;
    assert_eq!(
        browser.path().await,
        format!("/billing/customers/{id}?done=edited")
    );
    assert_eq!(
        rupiah_shown(&browser.text("#customer-monthly").await),
        100_000
    );

    // A name slipped into the form is refused (the 403 page), and nothing changes.
    browser
        .visit(&format!("/billing/customers/{id}/edit"))
        .await;
    browser
        .run(
            "const f = document.querySelector('#customer-form');
             const i = document.createElement('input');
             i.type = 'hidden'; i.name = 'name'; i.value = 'Orang Lain';
             f.appendChild(i);",
            vec![],
        )
        .await;
    browser.click("#save-customer").await;
    assert_forbidden_page(&browser).await;
    browser
        .check_error_page("billing-customer-forged-edit", 403)
        .await;
    let (_, customer) = daemon.get(&format!("/api/v1/customers/{id}")).await;
    assert_eq!(customer["name"], json!("Rina Wati"));
    assert_eq!(customer["phone"], json!("6289876543210"));
    assert_eq!(customer["discount"], json!(50_000));
}

/// A static QRIS (the shared domain test vector), the base of an invoice's dynamic QRIS.
const STATIC_QRIS: &str = "00020101021126530012COM.DOKU.WWW0118936008990000002475020424750303URE51440014ID.CO.QRIS.WWW0215ID10200392934820303URE5204539953033605802ID5911GUREUM SHOP6013JAKARTA PUSAT61051064062070703A016304455C";

/// Fills the add-customer form for Rina Wati on `package`, billed on the 7th with Rp 25.000
/// off, with `phone` as typed.
async fn fill_new_customer(browser: &Browser, phone: &str, package: &str) {
    browser.fill("name", "Rina Wati").await;
    browser.fill("phone", phone).await;
    browser
        .run(
            "document.querySelector('#package_id').value = arguments[0];",
            vec![json!(package)],
        )
        .await;
    browser.fill("billing_day", "7").await;
    browser.fill("discount", "Rp 25.000").await;
}

/// A billing package's id.
async fn billing_package(daemon: &Daemon, name: &str, price: i64) -> String {
    let (status, package) = daemon
        .post("/api/v1/packages", json!({ "name": name, "price": price }))
        .await;
    assert_eq!(status, 201, "{package}");
    package["id"].as_str().unwrap().to_string()
}

/// A billing customer of `merchant` on `package`, billed on the 16th.
async fn billing_customer(
    daemon: &Daemon,
    merchant: &str,
    package: &str,
    name: &str,
    phone: &str,
    discount: i64,
) -> String {
    let (status, customer) = daemon
        .post(
            "/api/v1/customers",
            json!({ "merchant_id": merchant, "package_id": package, "name": name,
                    "phone": phone, "billing_day": 16, "discount": discount }),
        )
        .await;
    assert_eq!(status, 201, "{customer}");
    customer["id"].as_str().unwrap().to_string()
}

/// Runs the invoice generation of 2026-11-15 through the API (the customers billed on the
/// 16th get their December invoice) and returns each customer's invoice id.
async fn invoices_of(daemon: &Daemon, customers: &[&str]) -> Vec<String> {
    let (status, run) = daemon
        .post(
            "/api/v1/billing/invoice-runs",
            json!({ "date": "2026-11-15" }),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["created"], customers.len(), "{run}");
    let mut ids = Vec::new();
    for customer in customers {
        let (status, page) = daemon
            .get(&format!("/api/v1/invoices?customer_id={customer}"))
            .await;
        assert_eq!(status, 200, "{page}");
        ids.push(
            page["items"][0]["id"]
                .as_str()
                .expect("an invoice")
                .to_string(),
        );
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merchant_owner_shows_an_invoices_qris_marks_it_paid_and_cannot_open_anothers() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    let (sari, terminal) = merchant_with_terminal(&daemon, "Warung Sari").await;
    let (status, body) = daemon
        .patch(
            &format!("/api/v1/terminals/{terminal}"),
            json!({ "static_qris": STATIC_QRIS }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let other = approved_merchant(&daemon, "Toko Makmur").await;
    let package = &billing_package(&daemon, "Paket 10 Mbps", 100_000).await;
    let budi = billing_customer(
        &daemon,
        &sari,
        package,
        "Budi Santoso",
        "6281234567801",
        10_000,
    )
    .await;
    let joko = billing_customer(&daemon, &other, package, "Joko Susilo", "6281234567809", 0).await;
    let [invoice, others]: [String; 2] = invoices_of(&daemon, &[&budi, &joko])
        .await
        .try_into()
        .unwrap();
    create_user(&daemon, "owner@sari.test", "owner", Some(&sari)).await;

    log_in(&browser, "owner@sari.test", PASSWORD, None).await;
    assert_eq!(browser.path().await, "/", "{}", browser.describe().await);
    // The billing section's own navigation leads to the invoices: only their own.
    browser.visit("/billing/customers").await;
    browser.click("nav a[href=\"/billing/invoices\"]").await;
    assert_eq!(browser.path().await, "/billing/invoices");
    assert_eq!(count(&browser, "#invoices tr[data-invoice-id]").await, 1);
    let row = format!("#invoices tr[data-invoice-id=\"{invoice}\"]");
    assert_eq!(
        browser
            .find(&row)
            .await
            .attr("data-status")
            .await
            .unwrap()
            .as_deref(),
        Some("unpaid")
    );
    let page = browser.client.source().await.unwrap();
    assert!(
        page.contains("Budi Santoso") && !page.contains("Joko Susilo"),
        "the list shows another merchant's customer, or not their own"
    );
    browser.check_page("billing-invoices-merchant").await;

    browser
        .click(&format!("{row} a[href=\"/billing/invoices/{invoice}\"]"))
        .await;
    assert_eq!(browser.path().await, format!("/billing/invoices/{invoice}"));
    assert_eq!(browser.text("#invoice-status").await, "Belum dibayar");
    assert_eq!(browser.text("#invoice-total").await, "Rp 90.000");
    browser.find("#invoice-pay-link").await;
    browser.check_page("billing-invoice-unpaid").await;

    // Its QRIS: the code drawn on the page, for the invoice's total, and when it expires.
    browser.click("#issue-qris").await;
    assert_eq!(
        count(&browser, "#invoice-qr svg[role=img] path").await,
        1,
        "no QR code shown: {}",
        browser.describe().await
    );
    assert_eq!(browser.text("#qris-amount").await, "Rp 90.000");
    assert!(browser.text("#qris-expires").await.ends_with("WIB"));
    let payload = browser
        .run(
            "return document.getElementById('qris-payload').textContent;",
            vec![],
        )
        .await;
    let qris = gema_qris::decode(payload.as_str().unwrap()).expect("a valid QRIS");
    assert_eq!(qris.amount(), Some(90_000));
    browser.check_page("billing-invoice-qris").await;
    // Shown to the customer at the counter, often on a phone.
    browser.resize(PHONE).await;
    assert_page_fits_width(&browser).await;
    browser.check_page("billing-invoice-qris-phone").await;
    browser.resize(DESKTOP).await;
    browser.click("#qris-done").await;
    assert_eq!(
        count(&browser, "#invoice-events tr[data-kind=\"qris_issued\"]").await,
        1,
        "{}",
        browser.describe().await
    );

    // Paid by transfer, by hand.
    browser
        .find("#method")
        .await
        .select_by_value("transfer")
        .await
        .expect("choose the method");
    browser.fill("note", "BCA 0042").await;
    browser.click("#mark-paid").await;
    assert_eq!(
        browser.text("#invoice-status").await,
        "Lunas",
        "{}",
        browser.describe().await
    );
    assert_eq!(browser.text("#invoice-method").await, "transfer");
    assert_eq!(browser.text("#invoice-note").await, "BCA 0042");
    assert_eq!(count(&browser, "#mark-paid, #issue-qris").await, 0);
    browser.find("#invoice-receipt-link").await;
    browser.check_page("billing-invoice-paid").await;
    let (_, paid) = daemon.get(&format!("/api/v1/invoices/{invoice}")).await;
    assert_eq!(paid["status"], "paid", "{paid}");

    // The customer's page lists it paid; isolation is not the owner's to do.
    browser.click("#invoice-customer").await;
    assert_eq!(browser.path().await, format!("/billing/customers/{budi}"));
    assert_eq!(
        count(
            &browser,
            &format!("#customer-invoices tr[data-invoice-id=\"{invoice}\"][data-status=\"paid\"]")
        )
        .await,
        1,
        "{}",
        browser.describe().await
    );
    assert_eq!(browser.text("#customer-monthly").await, "Rp 90.000");
    assert_eq!(count(&browser, "section.actions form").await, 0);
    browser.check_page("billing-customer-merchant").await;

    browser.visit("/billing/invoices?status=paid").await;
    assert_eq!(
        browser
            .find(&row)
            .await
            .attr("data-status")
            .await
            .unwrap()
            .as_deref(),
        Some("paid")
    );
    assert_eq!(browser.text(&format!("{row} .badge")).await, "Lunas");
    browser.resize(PHONE).await;
    assert_page_fits_width(&browser).await;
    browser.check_page("billing-invoices-paid-phone").await;
    browser.resize(DESKTOP).await;
    browser.visit("/billing/invoices?status=unpaid").await;
    assert_eq!(count(&browser, "#invoices tr[data-invoice-id]").await, 0);

    // Another merchant's invoice is not found, as in the API; their customer too.
    for path in [
        format!("/billing/invoices/{others}"),
        format!("/billing/customers/{joko}"),
    ] {
        browser.visit(&path).await;
        assert_eq!(
            browser.text("main h1").await,
            "Tidak ditemukan",
            "{}",
            browser.describe().await
        );
        assert!(
            !browser
                .client
                .source()
                .await
                .unwrap()
                .contains("Joko Susilo")
        );
    }
    browser.check_error_page("billing-invoice-other", 404).await;

    // A payment recorded by mistake is undone, and the invoice can be paid again.
    browser.visit(&format!("/billing/invoices/{invoice}")).await;
    browser.fill("note", "Salah catat").await;
    browser.click("#unpay").await;
    assert_eq!(
        browser.text("#invoice-status").await,
        "Belum dibayar",
        "{}",
        browser.describe().await
    );
    browser.find("#mark-paid").await;
    let (_, unpaid) = daemon.get(&format!("/api/v1/invoices/{invoice}")).await;
    assert_eq!(unpaid["status"], "unpaid", "{unpaid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_prices_a_package_and_isolates_a_customer_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    create_user(&daemon, "ops@gema.test", "ops", None).await;
    let sari = approved_merchant(&daemon, "Warung Sari").await;
    create_user(&daemon, "viewer@sari.test", "viewer", Some(&sari)).await;

    log_in(&browser, "ops@gema.test", PASSWORD, None).await;
    browser.visit("/billing/packages").await;
    browser.check_page("billing-packages-empty").await;
    browser.fill("name", "Paket 20 Mbps").await;
    browser.fill("speed", "20 Mbps").await;
    browser.fill("price", "150.000").await;
    browser.click("#create-package").await;
    assert!(
        browser.path().await.ends_with("done=created"),
        "{}",
        browser.describe().await
    );
    let package = browser
        .find("#packages tr[data-package-id]")
        .await
        .attr("data-package-id")
        .await
        .unwrap()
        .expect("the package's id");
    assert_eq!(
        browser.text("#packages tr[data-package-id] td.num").await,
        "Rp 150.000"
    );
    browser.check_page("billing-packages").await;

    // A price that is not whole rupiah is refused, naming the field.
    browser
        .click(&format!("a[href=\"/billing/packages/{package}\"]"))
        .await;
    browser.fill("price", "175.000,50").await;
    browser.click("#save-package").await;
    assert!(
        browser.text("main").await.contains("price"),
        "{}",
        browser.describe().await
    );
    browser
        .check_error_page("billing-package-bad-price", 400)
        .await;
    browser.visit(&format!("/billing/packages/{package}")).await;
    browser.fill("price", "175000").await;
    browser.click("#save-package").await;
    assert_eq!(
        browser.text("#packages tr[data-package-id] td.num").await,
        "Rp 175.000"
    );

    // A customer on it, through the API; isolated from their page, with a reason.
    let customer =
        billing_customer(&daemon, &sari, &package, "Budi Santoso", "6281234567801", 0).await;
    browser.visit("/billing/customers").await;
    browser
        .click(&format!("a[href=\"/billing/customers/{customer}\"]"))
        .await;
    assert_eq!(browser.text("#customer-status").await, "Aktif");
    assert_eq!(browser.text("#customer-monthly").await, "Rp 175.000");
    browser.check_page("billing-customer").await;
    browser.fill("reason", "Menunggak dua bulan").await;
    browser.click("#isolate-customer").await;
    assert_eq!(
        browser.text("#customer-status").await,
        "Terisolir",
        "{}",
        browser.describe().await
    );
    assert!(
        browser
            .text("#customer-events")
            .await
            .contains("Menunggak dua bulan")
    );
    assert_eq!(count(&browser, "#isolate-customer").await, 0);
    assert_eq!(
        count(&browser, "#reactivate-customer, #stop-customer").await,
        2
    );
    browser.check_page("billing-customer-isolated").await;
    let (_, isolated) = daemon.get(&format!("/api/v1/customers/{customer}")).await;
    assert_eq!(isolated["status"], "isolated", "{isolated}");

    // Deactivated, the package is listed only with the inactive ones.
    browser.visit(&format!("/billing/packages/{package}")).await;
    browser.click("#deactivate-package").await;
    assert_eq!(
        browser
            .find(&format!("tr[data-package-id=\"{package}\"]"))
            .await
            .attr("data-active")
            .await
            .unwrap()
            .as_deref(),
        Some("false")
    );
    browser.visit("/billing/packages").await;
    assert_eq!(count(&browser, "#packages tr[data-package-id]").await, 0);
    browser
        .click("form[action=\"/logout\"] button[type=submit]")
        .await;

    // A merchant viewer reads the customer but is shown no button, and a form posted
    // anyway is refused.
    log_in(&browser, "viewer@sari.test", PASSWORD, None).await;
    browser
        .visit(&format!("/billing/customers/{customer}"))
        .await;
    assert_eq!(browser.text("#customer-status").await, "Terisolir");
    assert_eq!(count(&browser, "section.actions form").await, 0);
    browser.visit("/billing/packages").await;
    assert_eq!(count(&browser, "#new-package").await, 0);
    let csrf = browser
        .find("form[action=\"/logout\"] input[name=csrf]")
        .await
        .attr("value")
        .await
        .unwrap()
        .expect("the form token");
    let cookie = browser
        .client
        .get_named_cookie("gema_session")
        .await
        .expect("the session cookie");
    let response = reqwest::Client::new()
        .post(browser.url(&format!("/billing/customers/{customer}/reactivate")))
        .header("cookie", format!("gema_session={}", cookie.value()))
        .form(&[("csrf", csrf.as_str()), ("reason", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let (_, still) = daemon.get(&format!("/api/v1/customers/{customer}")).await;
    assert_eq!(still["status"], "isolated", "{still}");
}

/// A merchant with a bank account whose paid payments (one per `(order, amount)`, through
/// signed Midtrans callbacks) are in one settlement batch, generated through the API: the
/// merchant's id and the batch's.
async fn merchant_with_pending_batch(
    daemon: &Daemon,
    payments: &[(&str, i64)],
) -> (String, String) {
    let (merchant, terminal) = merchant_with_terminal(daemon, "Warung Sari").await;
    let (status, body) = daemon
        .put(
            &format!("/api/v1/merchants/{merchant}/bank-account"),
            json!({
                "bank_code": "014",
                "account_number": "1234567890",
                "account_holder": "Warung Sari",
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for (order_ref, amount) in payments {
        order(daemon, &terminal, order_ref, *amount).await;
        let (status, reply) = notify(
            daemon,
            &notification(order_ref, "settlement", &format!("{amount}.00")),
        )
        .await;
        assert_eq!((status, reply["outcome"].as_str()), (200, Some("applied")));
    }
    let (status, generated) = daemon
        .post(
            "/api/v1/settlement-batches",
            json!({ "merchant_ids": [merchant] }),
        )
        .await;
    assert_eq!(status, 201, "{generated}");
    let batch = generated["batches"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no batch made: {generated}"))
        .to_string();
    (merchant, batch)
}

#[tokio::test(flavor = "multi_thread")]
async fn finance_adds_an_adjustment_to_a_pending_batch_and_finds_it_in_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = paying_daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    create_user(&daemon, "finance@gema.test", "finance", None).await;
    let (sari, batch) = merchant_with_pending_batch(&daemon, &[("ORD-ADJUST-1", 100_000)]).await;
    create_user(&daemon, "owner@sari.test", "owner", Some(&sari)).await;

    log_in(&browser, "finance@gema.test", PASSWORD, None).await;
    browser.visit(&format!("/settlement/{batch}")).await;
    // The payout: the payment less the platform's fee.
    let net = rupiah_shown(&browser.text("#batch-net").await);
    assert!((90_000..100_000).contains(&net), "{net}");
    browser.check_page("settlement-batch-adjust").await;
    // A sign the type does not take is refused, naming the field.
    browser
        .find("#adjustment_type")
        .await
        .select_by_value("chargeback")
        .await
        .expect("choose the type");
    type_into(&browser, "#adjust_amount", "2.500").await;
    type_into(&browser, "#adjust_reason", "Chargeback ORD-ADJUST-1").await;
    browser.click("#adjust-submit").await;
    let refused = browser.text("main").await;
    assert!(refused.contains("amount"), "{refused}");
    browser
        .check_error_page("settlement-adjust-refused", 400)
        .await;

    browser.visit(&format!("/settlement/{batch}")).await;
    browser
        .find("#adjustment_type")
        .await
        .select_by_value("chargeback")
        .await
        .expect("choose the type");
    type_into(&browser, "#adjust_amount", "-2.500").await;
    type_into(&browser, "#adjust_reason", "Chargeback ORD-ADJUST-1").await;
    browser.click("#adjust-submit").await;
    assert_eq!(
        browser.path().await,
        format!("/settlement/{batch}?done=adjusted"),
        "{}",
        browser.describe().await
    );
    assert_eq!(rupiah_shown(&browser.text("#batch-net").await), net - 2_500);
    let row = "#batch-adjustments tr[data-type=\"chargeback\"]";
    assert_eq!(
        count(&browser, row).await,
        1,
        "{}",
        browser.describe().await
    );
    assert!(browser.text(row).await.contains("-Rp 2.500"));
    browser.check_page("settlement-batch-adjusted").await;

    browser.visit("/settlement").await;
    browser.click("#all-adjustments").await;
    assert_eq!(browser.path().await, "/settlement/adjustments");
    let listed = "#adjustments tr[data-adjustment-id]";
    assert_eq!(count(&browser, listed).await, 1);
    let line = browser.text(listed).await;
    assert!(
        line.contains(&batch)
            && line.contains("Chargeback ORD-ADJUST-1")
            && line.contains("-Rp 2.500"),
        "{line}"
    );
    browser.check_page("settlement-adjustments").await;
    browser
        .visit("/settlement/adjustments?adjustment_type=hold")
        .await;
    assert_eq!(count(&browser, listed).await, 0);
    browser
        .visit(&format!(
            "/settlement/adjustments?adjustment_type=chargeback&merchant_id={sari}"
        ))
        .await;
    assert_eq!(count(&browser, listed).await, 1);
    browser
        .visit("/settlement/adjustments?from=2999-01-01T00%3A00")
        .await;
    assert_eq!(count(&browser, listed).await, 0);
    browser.visit("/settlement/adjustments?from=kemarin").await;
    assert!(browser.text("main").await.contains("from"));
    browser
        .check_error_page("settlement-adjustments-bad-from", 400)
        .await;
    browser.click("header form.who button").await;

    // The merchant's owner reads the adjustment but may not add one, and is shown neither
    // the reconciliation nor the nodes (the 403 page if asked for them).
    log_in(&browser, "owner@sari.test", PASSWORD, None).await;
    browser.visit("/settlement/adjustments").await;
    assert_eq!(
        count(&browser, listed).await,
        1,
        "{}",
        browser.describe().await
    );
    browser.visit(&format!("/settlement/{batch}")).await;
    assert_eq!(
        count(&browser, "#batch-adjustments tr[data-adjustment-id]").await,
        1
    );
    assert_eq!(count(&browser, "#adjust-form").await, 0);
    for path in ["/reconciliation", "/nodes"] {
        assert_eq!(
            count(&browser, &format!("header nav a[href=\"{path}\"]")).await,
            0,
            "{path} offered to a merchant"
        );
        browser.visit(path).await;
        assert_forbidden_page(&browser).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn finance_uploads_the_providers_report_of_a_paid_batch_and_sees_its_rows_matched() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = paying_daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    create_user(&daemon, "finance@gema.test", "finance", None).await;
    let payments = [("ORD-RECON-1", 60_000), ("ORD-RECON-2", 40_000)];
    let (_, batch) = merchant_with_pending_batch(&daemon, &payments).await;
    let (status, paid) = daemon
        .post(
            &format!("/api/v1/settlement-batches/{batch}/mark-paid"),
            json!({ "payout_reference": "BCA-RECON-001" }),
        )
        .await;
    assert_eq!(status, 200, "{paid}");

    // The provider's report of those payments, as Midtrans writes it.
    let at = time::OffsetDateTime::now_utc()
        .to_offset(time::macros::offset!(+7))
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap();
    let file = dir.path().join("midtrans-report.csv");
    let mut report =
        String::from("Order ID,Transaction ID,Gross Amount,Transaction Status,Settlement Time\n");
    for (order_ref, amount) in payments {
        report.push_str(&format!(
            "{order_ref},mt-{order_ref},{amount}.00,settlement,{at}\n"
        ));
    }
    std::fs::write(&file, report).unwrap();

    log_in(&browser, "finance@gema.test", PASSWORD, None).await;
    browser
        .click("header nav a[href=\"/reconciliation\"]")
        .await;
    assert_eq!(browser.path().await, "/reconciliation");
    browser.check_page("reconciliation").await;
    browser
        .find("#recon-file")
        .await
        .send_keys(file.to_str().unwrap())
        .await
        .expect("choose the file");
    browser.click("#recon-submit").await;
    let run_path = browser.path().await;
    assert!(
        run_path.starts_with("/reconciliation/rec_"),
        "{}",
        browser.describe().await
    );
    let run = run_path.trim_start_matches("/reconciliation/").to_string();
    assert_eq!(count(&browser, "#run-rows tr[data-outcome]").await, 2);
    for (order_ref, _) in payments {
        let row = format!("#run-rows tr[data-order-id=\"{order_ref}\"]");
        assert_eq!(
            browser
                .find(&row)
                .await
                .attr("data-outcome")
                .await
                .unwrap()
                .as_deref(),
            Some("matched"),
            "{}",
            browser.text(&row).await
        );
    }
    assert_eq!(
        browser
            .text("#run-counts tr[data-outcome=\"matched\"] td")
            .await,
        "2"
    );
    assert_eq!(browser.text("#run-report-rows").await, "2");
    browser.check_page("reconciliation-run").await;

    // The rows' CSV behind the page's link, with the browser's session.
    let href = browser
        .find("#run-csv")
        .await
        .attr("href")
        .await
        .unwrap()
        .expect("the CSV link");
    let response = session_get(&browser, &href).await;
    assert_eq!(response.status(), 200);
    let csv = response.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        gema_admin_api::views::reconciliation::CSV_HEADER
            .lines()
            .next(),
        "{csv}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows.iter().all(|r| r.contains(",matched,")), "{csv}");
    // An upload without the session's form token is refused before it is read.
    let cookie = browser
        .client
        .get_named_cookie("gema_session")
        .await
        .expect("the session cookie");
    let forged = reqwest::Client::new()
        .post(browser.url("/reconciliation/runs"))
        .header("cookie", format!("gema_session={}", cookie.value()))
        .header("content-type", "multipart/form-data; boundary=x")
        .body("--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.csv\"\r\n\r\nOrder ID\r\n--x--\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // A re-run is a new run of the same lines, named after this one, listed first.
    browser.click("#rerun").await;
    let again = browser.path().await;
    assert_ne!(again, run_path, "{}", browser.describe().await);
    assert!(again.starts_with("/reconciliation/rec_"), "{again}");
    assert_eq!(
        count(&browser, "#run-rows tr[data-outcome=\"matched\"]").await,
        2
    );
    assert!(browser.text("main dl.facts").await.contains(&run));
    browser.visit("/reconciliation").await;
    let listed = browser
        .find("#runs tr[data-run-id]")
        .await
        .attr("data-run-id")
        .await
        .unwrap();
    assert_eq!(listed.as_deref(), again.strip_prefix("/reconciliation/"));
    assert_eq!(count(&browser, "#runs tr[data-run-id]").await, 2);

    // The paid batch agrees with the ledger.
    browser.click("#batch-checks").await;
    assert_eq!(browser.path().await, "/reconciliation/batches");
    let checked = format!("#batch-checks tr[data-batch-id=\"{batch}\"]");
    assert_eq!(
        browser
            .find(&checked)
            .await
            .attr("data-agrees")
            .await
            .unwrap()
            .as_deref(),
        Some("true"),
        "{}",
        browser.text(&checked).await
    );
    browser.check_page("reconciliation-batches").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_sends_a_command_to_a_connected_soundbox_and_sees_it_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    create_user(&daemon, "ops@gema.test", "ops", None).await;
    create_user(&daemon, "viewer@gema.test", "viewer", None).await;
    let bound = daemon
        .approved_terminal_with_device("SB100-CONSOLE-CMD")
        .await;
    let id = bound.device.device_id.clone();
    let (_sim, mut events) =
        connected_sim(daemon.mqtt_addr.port(), &bound.device, &bound.ca_pem).await;

    // A viewer may read the device, not command it: no form, and the 403 page for a post.
    log_in(&browser, "viewer@gema.test", PASSWORD, None).await;
    browser.visit(&format!("/devices/{id}")).await;
    assert_eq!(count(&browser, "#command-form").await, 0);
    let csrf = browser
        .find("header form.who input[name=\"csrf\"]")
        .await
        .attr("value")
        .await
        .unwrap()
        .expect("the session's form token");
    let cookie = browser
        .client
        .get_named_cookie("gema_session")
        .await
        .expect("the session cookie");
    let refused = reqwest::Client::new()
        .post(browser.url(&format!("/devices/{id}/commands")))
        .header("cookie", format!("gema_session={}", cookie.value()))
        .form(&[("csrf", csrf.as_str()), ("name", "reboot")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    browser.click("header form.who button").await;

    log_in(&browser, "ops@gema.test", PASSWORD, None).await;
    browser.visit(&format!("/devices/{id}")).await;
    browser.check_page("device-command-form").await;
    browser
        .find("#command-name")
        .await
        .select_by_value("set_volume")
        .await
        .expect("choose the command");
    browser.fill("volume", "4").await;
    browser.click("#command-submit").await;
    assert!(
        browser
            .path()
            .await
            .starts_with(&format!("/devices/{id}?done=command&command=cmd_")),
        "{}",
        browser.describe().await
    );
    let command = browser
        .find("#command-sent")
        .await
        .attr("data-command-id")
        .await
        .unwrap()
        .expect("the command's id");
    let answered = next_event(
        &mut events,
        |e| matches!(e, SimEvent::Command { command_id, .. } if *command_id == command),
    )
    .await;
    assert!(
        matches!(
            answered,
            SimEvent::Command {
                state: gema_firmware_protocol::CommandState::Succeeded,
                ..
            }
        ),
        "{answered:?}"
    );
    // Once the device's answer is recorded, the page shows it.
    let path = format!("/api/v1/devices/{id}/commands/{command}");
    let (path, daemon_ref) = (path.as_str(), &daemon);
    gema_gateway::testing::eventually("the command recorded as succeeded", || async move {
        let (_, c) = daemon_ref.get(path).await;
        (c["status"] == "succeeded").then_some(())
    })
    .await;
    browser.visit(&format!("/devices/{id}")).await;
    let row = format!("#commands-list tr[data-command-id=\"{command}\"]");
    assert_eq!(
        browser
            .find(&row)
            .await
            .attr("data-status")
            .await
            .unwrap()
            .as_deref(),
        Some("succeeded"),
        "{}",
        browser.text(&row).await
    );
    let line = browser.text(&row).await;
    assert!(
        line.contains("set_volume") && line.contains("Berhasil"),
        "{line}"
    );
    browser.check_page("device-command-succeeded").await;

    // The node this daemon runs is listed as running, its listeners named.
    browser.click("header nav a[href=\"/nodes\"]").await;
    assert_eq!(browser.path().await, "/nodes");
    assert_eq!(count(&browser, "#nodes tr[data-node-id]").await, 1);
    let node = browser.find("#nodes tr[data-node-id]").await;
    assert_eq!(
        node.attr("data-state").await.unwrap().as_deref(),
        Some("running")
    );
    let text = node.text().await.unwrap();
    assert!(
        text.contains(&daemon.mqtt_addr.port().to_string()) && text.contains("node ini"),
        "{text}"
    );
    browser.check_page("nodes").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_adds_a_merchants_owner_reads_the_roles_and_issues_a_token_shown_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let _logs = LogOnFailure(&daemon);
    let Some(browser) = Browser::start(&daemon.api_url).await else {
        return;
    };
    let sari = approved_merchant(&daemon, "Warung Sari").await;
    // The last call with the bootstrap token: the first admin retires it.
    create_user(&daemon, "admin@gema.test", "admin", None).await;
    const OWNER_PASSWORD: &str = "es-teh-manis-dingin";

    log_in(&browser, "admin@gema.test", PASSWORD, None).await;
    assert_eq!(browser.path().await, "/", "{}", browser.describe().await);
    browser.visit("/users").await;
    browser.check_page("users").await;
    let pick_role = |role: &str| {
        format!(
            "document.querySelector('#new-user select[name=role], #new-token select[name=role]').value = '{role}';"
        )
    };

    // A merchant role without the merchant: refused, the page names the field, nobody added.
    browser.fill("email", "owner@sari.test").await;
    browser.fill("name", "Bu Sari").await;
    browser.run(&pick_role("merchant:owner"), vec![]).await;
    browser.fill("password", OWNER_PASSWORD).await;
    browser.click("#create-user").await;
    let source = browser.client.source().await.unwrap();
    assert!(
        source.contains("merchant_id"),
        "{}",
        browser.describe().await
    );
    assert!(
        !source.contains(OWNER_PASSWORD),
        "the password is on the error page"
    );
    browser.check_error_page("user-without-merchant", 400).await;

    // With the merchant: added, listed with its role and merchant.
    browser.visit("/users").await;
    browser.fill("email", "owner@sari.test").await;
    browser.fill("name", "Bu Sari").await;
    browser.run(&pick_role("merchant:owner"), vec![]).await;
    browser.fill("merchant_id", &sari).await;
    browser.fill("password", OWNER_PASSWORD).await;
    browser.click("#create-user").await;
    assert_eq!(
        browser.path().await,
        "/users?done=created",
        "{}",
        browser.describe().await
    );
    browser.find("#notice").await;
    let row = browser
        .run(
            "const row = [...document.querySelectorAll('#users tbody tr')]
                 .find(r => r.textContent.includes('owner@sari.test'));
             return row ? row.textContent : null;",
            vec![],
        )
        .await;
    let row = row.as_str().expect("the new user's row");
    assert!(row.contains("owner") && row.contains(&sari), "{row}");

    // The role table is the matrix the server enforces: users are the admin's alone.
    browser.click("#roles-link").await;
    assert_eq!(browser.path().await, "/roles");
    let allowed = |action: &str| {
        format!(
            "return [...document.querySelectorAll('#roles tr[data-action=\"{action}\"] td')]
                 .map(td => td.textContent.includes('✓'));"
        )
    };
    let user_write = browser.run(&allowed("user.write"), vec![]).await;
    let heads = browser
        .run(
            "return [...document.querySelectorAll('#roles thead th code')].map(c => c.textContent);",
            vec![],
        )
        .await;
    let heads: Vec<String> = serde_json::from_value(heads).unwrap();
    let user_write: Vec<bool> = serde_json::from_value(user_write).unwrap();
    assert_eq!(heads.len(), user_write.len(), "{heads:?} {user_write:?}");
    let may: Vec<&str> = heads
        .iter()
        .zip(&user_write)
        .filter(|(_, yes)| **yes)
        .map(|(role, _)| role.as_str())
        .collect();
    assert_eq!(may, ["admin:admin"]);
    let device_list: Vec<bool> =
        serde_json::from_value(browser.run(&allowed("device.list"), vec![]).await).unwrap();
    assert!(device_list.iter().all(|yes| *yes), "{device_list:?}");
    browser.check_page("roles").await;

    // A token for a backend: shown once, on the POST's own page, and it works.
    browser.visit("/tokens").await;
    browser.check_page("tokens").await;
    browser.fill("name", "kasir-backend").await;
    browser.run(&pick_role("operator:viewer"), vec![]).await;
    browser.click("#create-token").await;
    browser.find("dialog#token-dialog[open]").await;
    let token = browser.text("#api-token").await;
    assert!(token.len() >= 32, "a short token: {token}");
    browser.check_page("token-issued").await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/devices", daemon.api_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the issued token is refused");
    browser.click("#token-done").await;
    assert_eq!(browser.path().await, "/tokens");
    browser.find("tr[data-token-id]").await;
    for _ in 0..2 {
        let source = browser.client.source().await.unwrap();
        assert!(!source.contains(&token), "the token is on the list");
        assert!(source.contains("kasir-backend"));
        browser.client.refresh().await.expect("refresh the page");
    }

    // Both writes are in the audit log, which carries neither the password nor the token;
    // nor does the daemon's log.
    browser.visit("/audit").await;
    let source = browser.client.source().await.unwrap();
    assert!(
        source.contains("user.write") && source.contains("api_token.write"),
        "{}",
        browser.describe().await
    );
    assert!(!source.contains(OWNER_PASSWORD) && !source.contains(&token));
    let logs = format!("{}{}", daemon.stdout(), daemon.stderr());
    assert!(!logs.contains(OWNER_PASSWORD) && !logs.contains(&token));

    // The new owner logs in with the first password and sees their merchant.
    browser
        .click("form[action=\"/logout\"] button[type=submit]")
        .await;
    log_in(&browser, "owner@sari.test", OWNER_PASSWORD, None).await;
    assert_eq!(browser.path().await, "/", "{}", browser.describe().await);
    browser.visit(&format!("/merchants/{sari}")).await;
    let heading = browser.text("main h1").await;
    assert!(
        heading.contains("Warung Sari"),
        "{}",
        browser.describe().await
    );
}

/// The amount a page shows as `Rp 99.300` (or `-Rp 2.500`), in rupiah.
fn rupiah_shown(text: &str) -> i64 {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let value: i64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("not an amount: {text:?}"));
    if text.trim_start().starts_with('-') {
        -value
    } else {
        value
    }
}

/// Types `value` into the field `css` names (where several forms share a field's name).
async fn type_into(browser: &Browser, css: &str, value: &str) {
    let field = browser.find(css).await;
    field.clear().await.expect("clear the field");
    field.send_keys(value).await.expect("type into the field");
}

/// How many elements on the page match `css`.
async fn count(browser: &Browser, css: &str) -> u64 {
    browser
        .run(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(css)],
        )
        .await
        .as_u64()
        .expect("a count")
}

/// `GET path` outside the browser with the browser's session cookie (a download).
async fn session_get(browser: &Browser, path: &str) -> reqwest::Response {
    let cookie = browser
        .client
        .get_named_cookie("gema_session")
        .await
        .expect("the session cookie");
    reqwest::Client::new()
        .get(browser.url(path))
        .header("cookie", format!("gema_session={}", cookie.value()))
        .send()
        .await
        .unwrap()
}

/// An approved merchant with an outlet and a terminal: the merchant's id and the
/// terminal's.
async fn merchant_with_terminal(daemon: &Daemon, name: &str) -> (String, String) {
    let merchant = approved_merchant(daemon, name).await;
    let (status, outlet) = daemon
        .post(
            "/api/v1/outlets",
            json!({ "merchant_id": merchant, "name": "Pasar Baru" }),
        )
        .await;
    assert_eq!(status, 201, "{outlet}");
    let (status, terminal) = daemon
        .post(
            "/api/v1/terminals",
            json!({ "outlet_id": outlet["id"], "label": "A01" }),
        )
        .await;
    assert_eq!(status, 201, "{terminal}");
    (merchant, terminal["id"].as_str().unwrap().to_string())
}

/// An approved merchant with an outlet, a terminal and a device bound to it: the
/// merchant's id and the device's.
async fn merchant_with_device(daemon: &Daemon, name: &str, serial: &str) -> (String, String) {
    let (merchant, terminal) = merchant_with_terminal(daemon, name).await;
    let device = daemon.register_device(serial).await.device.device_id;
    let (status, body) = daemon
        .post(
            &format!("/api/v1/devices/{device}/bind"),
            json!({ "terminal_id": terminal }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (merchant, device)
}

/// The page shown is the 403 page: its status, and a heading that says so (Indonesian by
/// default), not a blank.
async fn assert_forbidden_page(browser: &Browser) {
    let heading = browser.text("main h1").await;
    assert_eq!(heading, "Akses ditolak", "{}", browser.describe().await);
    let status = browser
        .run(
            "const nav = performance.getEntriesByType('navigation')[0]; \
             return nav ? nav.responseStatus : null;",
            vec![],
        )
        .await;
    assert_eq!(status, json!(403), "{}", browser.describe().await);
}

/// The page does not scroll sideways at the window's width; a failure names the elements
/// that stick out.
async fn assert_page_fits_width(browser: &Browser) {
    let fit = browser
        .run(
            "const width = window.innerWidth; \
             const out = [...document.body.querySelectorAll('*')] \
                 .filter(e => e.getBoundingClientRect().right > width + 0.5) \
                 .filter(e => ![...e.children].some(c => c.getBoundingClientRect().right > width + 0.5)) \
                 .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') \
                     + (e.className ? '.' + String(e.className).split(' ').join('.') : '') \
                     + ' right=' + Math.round(e.getBoundingClientRect().right)); \
             return { scroll: document.documentElement.scrollWidth, width, out };",
            vec![],
        )
        .await;
    let (scroll, width) = (
        fit["scroll"].as_u64().unwrap(),
        fit["width"].as_u64().unwrap(),
    );
    assert!(
        scroll <= width,
        "the page is {scroll}px wide in a {width}px window; sticking out: {}\n{}",
        fit["out"],
        browser.describe().await
    );
}

/// The harness itself: a page with a console error and an image without a text
/// alternative fails both checks, so a console page passing them means something.
#[tokio::test]
async fn the_browser_checks_catch_a_console_error_and_an_inaccessible_page() {
    let Some(browser) = Browser::start("http://localhost").await else {
        return;
    };
    browser
        .client
        .goto(
            "data:text/html,<!doctype html><p>x</p><img src='data:image/gif;base64,R0lGODlhAQABAAAAACw='>\
             <script>console.error('boom')</script>",
        )
        .await
        .expect("open the page");
    let errors = browser.console_errors().await;
    assert!(
        errors.iter().any(|e| e.contains("boom")),
        "the console error was not collected: {errors:?}"
    );
    assert!(
        browser.console_errors().await.is_empty(),
        "reading the log empties it"
    );
    let violations = browser.axe_violations().await.join("\n");
    for rule in ["image-alt", "html-has-lang", "document-title"] {
        assert!(
            violations.contains(rule),
            "axe-core did not report {rule}:\n{violations}"
        );
    }
    browser.screenshot("harness-self-check").await;
}
