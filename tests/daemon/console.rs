//! The web console in a real browser (`browser.rs`: headless Chromium through chromedriver),
//! following what operators and merchants do: log in (a wrong password, a TOTP code), watch
//! a soundbox come online in the registry without a reload, be refused a form without its
//! CSRF token (the 403 page), and, as a merchant, see only their own merchant and devices
//! (another merchant's page is the 404 page) and be refused an operator page and a screen
//! their role may not use (the 403 page, and no link to it). Every page
//! visited passes the console-error, axe-core and screenshot checks of
//! [`Browser::check_page`], some at phone size and in the dark theme too. Skipped loudly
//! without Chromium, chromedriver or axe-core; under `CI=true` that is a failure.
//!
//! Users, merchants and devices are made through the JSON API with the bootstrap token (the
//! operators made here are never `admin`, which would retire that token).

use std::time::Duration;

use serde_json::json;

use crate::browser::{Browser, DESKTOP, PHONE};
use crate::helpers::{Daemon, connected_sim};

const PASSWORD: &str = "kopi-tubruk-manis";
/// How long a live update may take to reach the page.
const LIVE: Duration = Duration::from_secs(15);

/// `gema serve` with a cheap password hash: a debug build need not pay the production
/// 600,000 rounds on every login.
fn daemon(dir: &std::path::Path) -> Daemon {
    Daemon::start_with(dir, &[("GEMA_AUTH__PASSWORD_ITERATIONS", "10000")])
}

/// Prints the end of the daemon's log when the test fails: a browser test's panic names
/// the page, the daemon's log says why the server answered it so.
struct LogOnFailure<'a>(&'a Daemon);

impl Drop for LogOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let stderr = self.0.stderr();
            let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
            eprintln!(
                "--- the daemon's stdout:\n{}\n--- the end of its stderr:",
                self.0.stdout()
            );
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
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
    let pair: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", daemon.api_url))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

/// An approved merchant with an outlet, a terminal and a device bound to it: the
/// merchant's id and the device's.
async fn merchant_with_device(daemon: &Daemon, name: &str, serial: &str) -> (String, String) {
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
    let device = daemon.register_device(serial).await.device.device_id;
    let (status, body) = daemon
        .post(
            &format!("/api/v1/devices/{device}/bind"),
            json!({ "terminal_id": terminal["id"] }),
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
