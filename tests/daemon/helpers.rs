use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

impl Daemon {
    pub fn start(dir: &Path) -> Daemon {
        Self::start_with(dir, &[])
    }

    /// Starts with extra environment (`GEMA_*` overrides).
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(GEMA);
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
        {
            let stdout = stdout.clone();
            let pipe = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    stdout.lock().unwrap().push_str(&format!("{line}\n"));
                    if line.starts_with("CA file") {
                        let _ = ready_tx.send(());
                    }
                }
            });
        }
        {
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
            });
        }
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
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGKILL: no shutdown, no flush, like a power cut or the OOM killer.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Give the reader thread a moment to drain the pipe.
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.stderr());
            }
            assert!(Instant::now() < deadline, "gema did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
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

    /// `POST` JSON with the bootstrap token: `(status, JSON body)`.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    /// `PATCH` JSON with the bootstrap token: `(status, JSON body)`.
    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send_json(reqwest::Method::PATCH, path, body).await
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
