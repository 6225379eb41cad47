//! The harness of the end-to-end tests: [`Daemon`] starts `gema serve` as a child process
//! and drives it over HTTP and through the CLI; [`Daemon::approved_terminal_with_device`]
//! and [`Daemon::register_device`] are the setup most tests share, and [`sim_options`] how
//! their simulated soundbox dials in. Waiting is done with `gema_gateway::testing`'s
//! `eventually` poller, never with a hand-written sleep loop.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::AtomicU8;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use gema::sim::{SimDevice, SimEvent, SimOptions};
use gema_gateway::testing::{eventually, eventually_within};
use serde_json::json;

pub const GEMA: &str = env!("CARGO_BIN_EXE_gema");
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `gema serve`, started in `dir` with no config file. Only the listen ports are
/// overridden (to port 0), so tests can run side by side.
pub struct Daemon {
    child: Child,
    pub api_url: String,
    /// The MQTT over TLS listener.
    pub mqtt_addr: std::net::SocketAddr,
    pub token: Option<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The threads that copy the child's stdout and stderr; they end when the child's pipes
    /// close, that is, when it has exited.
    readers: [JoinHandle<()>; 2],
}

impl Daemon {
    pub fn start(dir: &Path) -> Daemon {
        Self::start_with(dir, &[])
    }

    /// Starts with extra environment (`GEMA_*` overrides).
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_command(Command::new(GEMA), dir, env)
    }

    /// Starts with extra environment and at most `open_files` descriptors (soft and hard
    /// limit, so the daemon cannot raise it).
    pub fn start_with_open_files(dir: &Path, env: &[(&str, &str)], open_files: u64) -> Daemon {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            &format!("ulimit -n {open_files} && exec \"$0\" \"$@\""),
            GEMA,
        ]);
        Self::start_command(command, dir, env)
    }

    fn start_command(mut command: Command, dir: &Path, env: &[(&str, &str)]) -> Daemon {
        command
            .env("GEMA_HTTP__LISTEN", "127.0.0.1:0")
            .env("GEMA_METRICS__LISTEN", "127.0.0.1:0")
            .env("GEMA_MQTT__LISTEN", "127.0.0.1:0");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .arg("serve")
            .current_dir(dir)
            // Debug logs everywhere: a secret must not show up even there.
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gema serve");

        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout_reader = {
            let stdout = stdout.clone();
            let pipe = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    stdout.lock().unwrap().push_str(&format!("{line}\n"));
                    if line.starts_with("CA file") {
                        let _ = ready_tx.send(());
                    }
                }
            })
        };
        let stderr_reader = {
            let stderr = stderr.clone();
            let mut pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        };
        if ready_rx.recv_timeout(START_TIMEOUT).is_err() {
            let _ = child.kill();
            panic!(
                "gema serve did not start:\nstdout:\n{}\nstderr:\n{}",
                stdout.lock().unwrap(),
                stderr.lock().unwrap()
            );
        }
        let out = stdout.lock().unwrap().clone();
        let api_url = out
            .lines()
            .find_map(|l| l.strip_prefix("admin API"))
            .map(|rest| rest.trim().trim_end_matches("/api/v1").to_string())
            .expect("the admin API address is printed");
        let mqtt_addr = out
            .lines()
            .find_map(|l| l.strip_prefix("MQTT/TLS"))
            .and_then(|rest| rest.trim().parse().ok())
            .expect("the MQTT address is printed");
        let token = out
            .split_whitespace()
            .find(|w| w.starts_with("gema_"))
            .map(str::to_owned);
        Daemon {
            child,
            api_url,
            mqtt_addr,
            token,
            stdout,
            stderr,
            readers: [stdout_reader, stderr_reader],
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the daemon's log (stderr or stdout) holds `text`: its lines are read by
    /// a thread of their own, so a line written as a response goes out may arrive after it.
    pub async fn until_logged(&self, text: &str) {
        eventually(&format!("the daemon logs {text:?}"), || async {
            (self.stderr().contains(text) || self.stdout().contains(text)).then_some(())
        })
        .await
    }

    /// Sends SIGKILL: no shutdown, no flush, like a power cut or the OOM killer.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the daemon's process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// The admin API's port.
    pub fn http_port(&self) -> u16 {
        self.api_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the admin API URL ends in its port")
    }

    /// Sends SIGTERM and waits (at most 30 s) for the process to exit; returns its status and
    /// everything it wrote to stderr.
    pub async fn terminate(mut self) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let status = eventually_within("gema stops after SIGTERM", Duration::from_secs(30), || {
            let exited = self.child.try_wait().unwrap();
            async move { Ok::<_, ()>(exited) }
        })
        .await;
        // Its pipes are closed now: once the readers have copied the rest, all is in.
        eventually("the daemon's output read to its end", || {
            let drained = self.readers.iter().all(JoinHandle::is_finished);
            async move { drained.then_some(()) }
        })
        .await;
        (status, self.stderr())
    }

    /// Runs a CLI command against this daemon with its bootstrap token.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.api_url, self.token.as_deref(), args)
    }

    /// Like [`Daemon::cli`], asserting success and returning stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "gema {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// A terminal labelled `label` at a new outlet of a new, approved merchant; its id.
    pub async fn approved_terminal(&self, label: &str) -> String {
        let (_, m) = self
            .post(
                "/api/v1/merchants",
                serde_json::json!({ "name": "Warung Sari" }),
            )
            .await;
        let m = m["id"].as_str().unwrap().to_string();
        self.post(
            &format!("/api/v1/merchants/{m}/approve"),
            serde_json::json!({}),
        )
        .await;
        let (_, o) = self
            .post(
                "/api/v1/outlets",
                serde_json::json!({ "merchant_id": m, "name": "Pasar Baru" }),
            )
            .await;
        let (status, t) = self
            .post(
                "/api/v1/terminals",
                serde_json::json!({ "outlet_id": o["id"], "label": label }),
            )
            .await;
        assert_eq!(status, 201, "{t}");
        t["id"].as_str().unwrap().to_string()
    }

    /// Registers a device (model SB-100) through the API: its credential and the CA it is to
    /// trust.
    pub async fn register_device(&self, serial: &str) -> RegisteredDevice {
        let (status, d) = self
            .post(
                "/api/v1/devices",
                json!({ "serial": serial, "model": "SB-100" }),
            )
            .await;
        assert_eq!(status, 201, "{d}");
        RegisteredDevice {
            device: SimDevice {
                device_id: d["device"]["id"].as_str().unwrap().to_string(),
                secret: d["credentials"]["secret"].as_str().unwrap().to_string(),
            },
            ca_pem: d["credentials"]["ca_certificate_pem"]
                .as_str()
                .unwrap()
                .as_bytes()
                .to_vec(),
        }
    }

    /// An approved merchant's terminal (label A01) with a freshly registered device bound
    /// to it.
    pub async fn approved_terminal_with_device(&self, serial: &str) -> BoundDevice {
        let terminal = self.approved_terminal("A01").await;
        let RegisteredDevice { device, ca_pem } = self.register_device(serial).await;
        let (status, _) = self
            .post(
                &format!("/api/v1/devices/{}/bind", device.device_id),
                json!({ "terminal_id": terminal }),
            )
            .await;
        assert_eq!(status, 200);
        BoundDevice {
            terminal,
            device,
            ca_pem,
        }
    }

    /// `POST` JSON with the bootstrap token: `(status, JSON body)`.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    /// `PATCH` JSON with the bootstrap token: `(status, JSON body)`.
    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send_json(reqwest::Method::PATCH, path, body).await
    }

    /// `PUT` JSON with the bootstrap token: `(status, JSON body)`.
    pub async fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send_json(reqwest::Method::PUT, path, body).await
    }

    async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.api_url))
            .json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// The Prometheus text from the daemon's metrics listener.
    pub async fn metrics(&self) -> String {
        let out = self.stdout();
        let url = out
            .lines()
            .find_map(|l| l.strip_prefix("metrics"))
            .map(|rest| rest.trim().to_string())
            .expect("the metrics address is printed");
        reqwest::get(url)
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics text")
    }

    /// `GET` with the bootstrap token: `(status, JSON body)`.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let mut request = reqwest::Client::new().get(format!("{}{path}", self.api_url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// `POST /api/v1/auth/login`: `(status, JSON body)`, the token pair on a 200.
    pub async fn login(&self, email: &str, password: &str) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/login", self.api_url))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("HTTP request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }
}

/// A device registered through the API, not yet bound.
pub struct RegisteredDevice {
    pub device: SimDevice,
    /// PEM of the CA that signed the broker's certificate.
    pub ca_pem: Vec<u8>,
}

/// A device bound to a terminal of an approved merchant.
pub struct BoundDevice {
    pub terminal: String,
    pub device: SimDevice,
    /// PEM of the CA that signed the broker's certificate.
    pub ca_pem: Vec<u8>,
}

/// A simulated soundbox dialling `mqtt_port` with `device`'s credential, trusting `ca_pem`
/// and acking everything, once it has connected: its task and its events.
pub async fn connected_sim(
    mqtt_port: u16,
    device: &SimDevice,
    ca_pem: &[u8],
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::Receiver<SimEvent>,
) {
    let (tx, mut events) = tokio::sync::mpsc::channel(256);
    let task = tokio::spawn(gema::sim::run_device(
        device.clone(),
        sim_options(mqtt_port, ca_pem.to_vec(), Arc::new(AtomicU8::new(0))),
        tx,
    ));
    next_event(&mut events, |e| matches!(e, SimEvent::Connected { .. })).await;
    (task, events)
}

/// How the tests' simulated soundbox dials in: to `localhost:port` over TLS trusting
/// `ca_pem`, dropping `drop_acks` percent of its acks, never hanging up by itself, and
/// sending heartbeats only when a test tells it to.
pub fn sim_options(port: u16, ca_pem: Vec<u8>, drop_acks: Arc<AtomicU8>) -> SimOptions {
    SimOptions {
        host: "localhost".into(),
        port,
        ca_pem,
        drop_ack_percent: drop_acks,
        disconnect_percent: 0,
        keep_alive: Duration::from_secs(30),
        periodic_heartbeats: false,
    }
}

/// Prints the daemon's log when the test fails (dropped while panicking): its stdout, its
/// last 30 warnings and errors and the last 30 lines of its stderr. A browser test's panic
/// names the page, the log says why the server answered it so; after minutes of a storm
/// logged at `debug`, only the warnings still say something.
pub struct LogOnFailure<'a>(pub &'a Daemon);

impl Drop for LogOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let stderr = self.0.stderr();
            let last = |keep: fn(&str) -> bool| {
                let mut lines: Vec<&str> =
                    stderr.lines().rev().filter(|l| keep(l)).take(30).collect();
                lines.reverse();
                lines.join("\n")
            };
            let warnings =
                last(|l| l.contains(r#""level":"WARN""#) || l.contains(r#""level":"ERROR""#));
            eprintln!(
                "--- the daemon's stdout:\n{}\n--- its last warnings and errors:\n{warnings}\n\
                 --- the end of its stderr:\n{}",
                self.0.stdout(),
                last(|_| true)
            );
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn cli(api_url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(GEMA);
    command
        .args(args)
        .env("GEMA_API_URL", api_url)
        .env_remove("GEMA_TOKEN");
    if let Some(token) = token {
        command.env("GEMA_TOKEN", token);
    }
    command.output().expect("run gema")
}

/// The simulated fleet's next event matching `pick`, waiting at most 30 s.
pub async fn next_event(
    events: &mut tokio::sync::mpsc::Receiver<SimEvent>,
    pick: impl Fn(&SimEvent) -> bool,
) -> SimEvent {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let event = events.recv().await.expect("the fleet is running");
            if pick(&event) {
                return event;
            }
        }
    })
    .await
    .expect("the expected device event did not happen")
}
