//! A real browser for the console's tests: Debian's headless Chromium driven through its
//! chromedriver (WebDriver, `fantoccini`) on loopback. [`Browser::start`] gives `None`
//! (skipped, loudly) when the driver, the browser or axe-core is missing, and panics under
//! `CI=true`, where `.ci/run` installs them. [`Browser::check_page`] is what every visited
//! page must pass: no JavaScript console errors, no serious or critical axe-core
//! violations, and a screenshot saved to `target/console-screenshots/`.
//!
//! The browser never leaves loopback: no component updates, sync, background networking or
//! QUIC, and every host name but `localhost` fails to resolve.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// axe-core as `npm ci` in `tests/daemon/axe` installs it (pinned in its lockfile).
const AXE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/daemon/axe/node_modules/axe-core/axe.min.js"
);
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a click's page may take to arrive.
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(15);

/// The desktop window every session starts with, and the phone the responsive checks use
/// (an iPhone 12-class viewport).
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

/// A headless Chromium session behind its own chromedriver and its own fresh profile.
pub struct Browser {
    pub client: Client,
    /// Where the pages are: the daemon's `http://127.0.0.1:port`.
    base_url: String,
    driver: Child,
    driver_addr: SocketAddr,
    session_id: String,
    axe_source: String,
    /// Whether the pages' own scripts run (see [`Browser::start_without_scripts`]).
    scripts: bool,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A browser whose relative paths resolve against `base_url`; `None` (after a loud
    /// SKIPPED line) when Chromium, chromedriver or axe-core is not installed outside CI.
    pub async fn start(base_url: &str) -> Option<Browser> {
        Self::launch(base_url, true).await
    }

    /// [`Self::start`] with the pages' own scripts switched off (a site setting, as a user
    /// would); WebDriver's commands still run, and the checks but axe-core's.
    pub async fn start_without_scripts(base_url: &str) -> Option<Browser> {
        Self::launch(base_url, false).await
    }

    async fn launch(base_url: &str, scripts: bool) -> Option<Browser> {
        let missing: Vec<&str> = [
            (
                CHROMEDRIVER,
                "chromedriver (apt-get install chromium-driver)",
            ),
            (CHROMIUM, "chromium (apt-get install chromium)"),
            (AXE, "axe-core (cd tests/daemon/axe && npm ci)"),
        ]
        .into_iter()
        .filter(|(path, _)| !Path::new(path).is_file())
        .map(|(_, what)| what)
        .collect();
        if !missing.is_empty() {
            let missing = missing.join(", ");
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the console's browser tests need {missing}: under CI they must run"
            );
            eprintln!("SKIPPED: {missing} not installed; the console was not checked in a browser");
            return None;
        }
        let axe_source = std::fs::read_to_string(AXE).expect("read axe.min.js");
        let (driver, driver_addr) = start_chromedriver();
        let profile = tempfile::tempdir().expect("a browser profile directory");

        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-extensions".into(),
            "--password-store=basic".into(),
            // Nothing but loopback: any other host name (or address) fails to resolve.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        // An Indonesian browser, as the console's users have (its own language would
        // otherwise follow the test machine's locale).
        args.push("--lang=id-ID".into());
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "prefs": {
                    "profile.managed_default_content_settings.javascript": if scripts { 1 } else { 2 },
                },
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{driver_addr}"))
            .await
            .expect("a Chromium session from chromedriver");
        let session_id = client
            .session_id()
            .await
            .expect("the session id")
            .expect("a session");
        let browser = Browser {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            driver,
            driver_addr,
            session_id,
            axe_source,
            scripts,
            _profile: profile,
        };
        browser.resize(DESKTOP).await;
        Some(browser)
    }

    /// The absolute URL of `path` on the daemon.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Navigates to `path` on the daemon and waits for the page to load.
    pub async fn visit(&self, path: &str) {
        self.client
            .goto(&self.url(path))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// The path (and query) of the page now shown.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Resizes the viewport (the page's own area, not the window around it) to [`DESKTOP`]
    /// or [`PHONE`]: WebDriver sizes the window, so the difference is measured and added.
    pub async fn resize(&self, (width, height): (u32, u32)) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize the window");
        let inner = self
            .run("return [window.innerWidth, window.innerHeight];", vec![])
            .await;
        let inner = |i: usize| inner[i].as_u64().expect("the viewport's size") as u32;
        let (extra_w, extra_h) = (
            width.saturating_sub(inner(0)),
            height.saturating_sub(inner(1)),
        );
        if extra_w > 0 || extra_h > 0 {
            self.client
                .set_window_size(width + extra_w, height + extra_h)
                .await
                .expect("resize the window");
        }
    }

    /// The first element matching `css`; a failure names the page it is not on.
    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("no {css} on {}: {e}", self.describe().await),
        }
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("element text")
    }

    /// Types `value` into the form field named `name` (clearing it first).
    pub async fn fill(&self, name: &str, value: &str) {
        let field = self.find(&format!("[name=\"{name}\"]")).await;
        field.clear().await.expect("clear the field");
        field.send_keys(value).await.expect("type into the field");
    }

    /// Clicks the first element matching `css` and waits for the page it leads to: a
    /// click returns before a form's navigation has necessarily finished, so a mark is put
    /// on the document before, and the wait is for a complete document without it.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.run("window.gemaBeforeClick = true;", vec![]).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
        self.wait_until(
            "return window.gemaBeforeClick !== true && document.readyState === 'complete';",
            NAVIGATION_TIMEOUT,
            &format!("the page after clicking {css}"),
        )
        .await;
    }

    /// Runs `script` in the page (a function body; `arguments` are `args`).
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` (a function body) returns `true`, at most `timeout`; a script
    /// that fails (the page is being replaced) counts as not yet.
    pub async fn wait_until(&self, script: &str, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Value::Bool(true)) = self.client.execute(script, vec![]).await {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: not within {timeout:?} on {}",
                    self.describe().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every check a visited page must pass: no JavaScript console errors, no serious or
    /// critical accessibility violations, and a screenshot as `<name>.png`.
    pub async fn check_page(&self, name: &str) {
        self.check_page_answered(name, None).await;
    }

    /// [`Self::check_page`] for a page the server answers with the error `status` (a 403
    /// page): Chromium logs every 4xx document as a console error, and that one is expected.
    pub async fn check_error_page(&self, name: &str, status: u16) {
        self.check_page_answered(name, Some(status)).await;
    }

    async fn check_page_answered(&self, name: &str, status: Option<u16>) {
        self.screenshot(name).await;
        // axe-core's run needs the page's timers, which a page without scripts does not
        // have; the same pages are checked in the sessions with scripts.
        let violations = if self.scripts {
            self.axe_violations().await
        } else {
            Vec::new()
        };
        let errors: Vec<String> = self
            .console_errors()
            .await
            .into_iter()
            .filter(|entry| {
                status.is_none_or(|status| {
                    !(entry.contains("Failed to load resource")
                        && entry.contains(&format!("status of {status}")))
                })
            })
            .collect();
        let page = self.describe().await;
        assert!(
            errors.is_empty(),
            "JavaScript console errors on {name} ({page}):\n{}",
            errors.join("\n")
        );
        assert!(
            violations.is_empty(),
            "serious or critical accessibility violations on {name} ({page}):\n{}",
            violations.join("\n")
        );
    }

    /// The console entries at level SEVERE since the last call (reading the log empties
    /// it), each as `source: message`.
    pub async fn console_errors(&self) -> Vec<String> {
        // chromedriver's log endpoint (not in the W3C protocol, so not in fantoccini).
        let entries: Value = reqwest::Client::new()
            .post(format!(
                "http://{}/session/{}/se/log",
                self.driver_addr, self.session_id
            ))
            .json(&json!({ "type": "browser" }))
            .send()
            .await
            .expect("ask chromedriver for the browser log")
            .json()
            .await
            .expect("the browser log as JSON");
        entries["value"]
            .as_array()
            .unwrap_or_else(|| panic!("no browser log: {entries}"))
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| {
                format!(
                    "{}: {}",
                    entry["source"].as_str().unwrap_or("?"),
                    entry["message"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    /// axe-core's serious and critical violations on the page as shown, one readable
    /// paragraph each (rule, impact, help, the offending elements).
    pub async fn axe_violations(&self) -> Vec<String> {
        // Injected through WebDriver, which the page's Content-Security-Policy does not
        // apply to; the page itself loads no script from anywhere but the daemon.
        self.client
            .execute(&self.axe_source, vec![])
            .await
            .expect("inject axe-core");
        let outcome = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ["violations"] })
                    .then(r => done({ violations: r.violations }))
                    .catch(e => done({ error: String(e) }));"#,
                vec![],
            )
            .await
            .expect("run axe-core");
        if let Some(error) = outcome.get("error") {
            panic!("axe-core failed: {error}");
        }
        outcome["violations"]
            .as_array()
            .expect("axe-core's violations")
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| {
                let nodes: Vec<String> = v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|node| {
                        format!(
                            "    {}\n      {}",
                            node["target"],
                            node["failureSummary"]
                                .as_str()
                                .unwrap_or("")
                                .replace('\n', "\n      ")
                        )
                    })
                    .collect();
                format!(
                    "  [{}] {}: {} ({})\n{}",
                    v["impact"].as_str().unwrap_or("?"),
                    v["id"].as_str().unwrap_or("?"),
                    v["help"].as_str().unwrap_or("?"),
                    v["helpUrl"].as_str().unwrap_or(""),
                    nodes.join("\n")
                )
            })
            .collect()
    }

    /// Saves the window as `target/console-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create the screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
    }

    /// The page now shown, for failure messages: its URL, title and the start of its text.
    pub async fn describe(&self) -> String {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let text = self
            .client
            .execute(
                "return document.title + ' | ' + (document.body ? document.body.innerText : '')",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let text: String = text.chars().take(400).collect();
        format!("{url}: {text:?}")
    }
}

impl Drop for Browser {
    /// Ends the session (chromedriver quits Chromium) and stops chromedriver, also when a
    /// test panicked half-way; synchronous because `Drop` is.
    fn drop(&mut self) {
        let _ = driver_request(
            self.driver_addr,
            "DELETE",
            &format!("/session/{}", self.session_id),
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `target/console-screenshots`, next to the test binary's `target/debug/deps`.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .expect("the target directory")
        .join("console-screenshots")
}

/// chromedriver on a free loopback port, answering `/status`.
fn start_chromedriver() -> (Child, SocketAddr) {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let deadline = Instant::now() + DRIVER_START_TIMEOUT;
    loop {
        if driver_ready(addr) {
            return (driver, addr);
        }
        if let Ok(Some(status)) = driver.try_wait() {
            panic!("chromedriver exited at start ({status}), port {port}");
        }
        if Instant::now() > deadline {
            let _ = driver.kill();
            panic!("chromedriver did not answer on {addr} within {DRIVER_START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether chromedriver answers `GET /status` with `"ready": true`.
fn driver_ready(addr: SocketAddr) -> bool {
    driver_request(addr, "GET", "/status").is_ok_and(|body| body.contains("\"ready\":true"))
}

/// A body-less request to chromedriver and its response body, over plain blocking HTTP/1.1
/// (for `Drop` and start-up, outside the async client). chromedriver keeps the connection
/// open whatever the request says, so the body is read by its `Content-Length`.
fn driver_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                return Ok(String::from_utf8_lossy(&received[end + 4..end + 4 + length]).into());
            }
        }
    }
    Ok(String::from_utf8_lossy(&received).into())
}
