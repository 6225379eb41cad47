//! The web console in a real browser (`browser.rs`: headless Chromium through chromedriver):
//! every page visited passes the console-error, axe-core and screenshot checks of
//! [`Browser::check_page`]. Skipped loudly without Chromium, chromedriver or axe-core;
//! under `CI=true` that is a failure.

use crate::browser::Browser;

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
