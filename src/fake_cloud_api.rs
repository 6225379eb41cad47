//! A real HTTP server on 127.0.0.1 that stands in for Meta's WhatsApp Cloud API in tests and
//! `gema bench whatsapp`: it records every send, answers like Meta (a `wamid` or Meta's
//! error JSON), checks bearer tokens per phone number id, and can inject errors or hold a
//! request unanswered. Never used by the daemon itself.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::watch;

/// A handle on the running fake; clones share it. The server stops when the last clone is
/// dropped (held requests are then released and their connections closed).
#[derive(Debug, Clone)]
pub struct FakeCloudApi {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    _stop: Arc<StopOnDrop>,
}

/// One send the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub phone_number_id: String,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// The JSON body; `Null` when the body was not JSON.
    pub body: Value,
    /// `body.to`, or empty.
    pub to: String,
    pub at: Instant,
    /// The `wamid` answered; `None` when an error was answered (injected, bad token, bad
    /// body) or the request is held.
    pub answered_wamid: Option<String>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<FakeState>,
    next_id: AtomicU64,
    port: u16,
    stopped: watch::Receiver<bool>,
}

#[derive(Debug, Default)]
struct FakeState {
    tokens: HashMap<String, String>,
    injections: Vec<Injection>,
    held: HashSet<String>,
    requests: Vec<RecordedRequest>,
}

#[derive(Debug)]
struct Injection {
    recipient: Option<String>,
    code: i64,
    http_status: u16,
    remaining: usize,
}

#[derive(Debug)]
struct StopOnDrop(watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FakeCloudApi {
    /// Binds 127.0.0.1 on a free port and serves until the last handle is dropped.
    pub async fn start() -> std::io::Result<FakeCloudApi> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState::default()),
            next_id: AtomicU64::new(1),
            port: addr.port(),
            stopped: stop_rx.clone(),
        });
        let app = Router::new()
            .route("/{version}/{phone_number_id}/messages", post(send_message))
            .with_state(Arc::clone(&shared));
        let mut stopped = stop_rx;
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "the fake Cloud API stopped");
            }
        });
        Ok(FakeCloudApi {
            addr,
            shared,
            _stop: Arc::new(StopOnDrop(stop_tx)),
        })
    }

    /// `http://127.0.0.1:<port>`, to use as the Cloud API base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Only `Bearer <token>` is accepted for `phone_number_id` from now on (401 with code
    /// 190 otherwise); numbers never registered accept any token, or none.
    pub fn register(&self, phone_number_id: &str, token: &str) {
        self.shared
            .lock()
            .tokens
            .insert(phone_number_id.to_owned(), token.to_owned());
    }

    /// The next `times` sends to `recipient` (to anyone when `None`) are answered with
    /// Meta's error JSON for `code` and `http_status` (Meta mostly uses 400, also for
    /// 130429). Injections are used up in the order they were made.
    pub fn inject(&self, recipient: Option<&str>, code: i64, http_status: u16, times: usize) {
        self.shared.lock().injections.push(Injection {
            recipient: recipient.map(str::to_owned),
            code,
            http_status,
            remaining: times,
        });
    }

    /// Sends to `recipient` are recorded but never answered: the connection stays open
    /// until the client gives up or the fake stops. Checked after the token, before
    /// injections.
    pub fn hold(&self, recipient: &str) {
        self.shared.lock().held.insert(recipient.to_owned());
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Waits, polling every 10 ms, until at least `n` requests were recorded; `false` if
    /// `timeout` passed first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

enum Answer {
    Wamid(String),
    Error { code: i64, http_status: u16 },
    Hold,
}

async fn send_message(
    State(shared): State<Arc<Shared>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let to = body
        .get("to")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();

    let answer = {
        let mut state = shared.lock();
        let answer = decide(
            &shared,
            &mut state,
            &phone_number_id,
            authorization.as_deref(),
            &body,
            &to,
        );
        state.requests.push(RecordedRequest {
            phone_number_id,
            authorization,
            body,
            to: to.clone(),
            at: Instant::now(),
            answered_wamid: match &answer {
                Answer::Wamid(w) => Some(w.clone()),
                Answer::Error { .. } | Answer::Hold => None,
            },
        });
        answer
    };

    match answer {
        Answer::Wamid(wamid) => Json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": to, "wa_id": to }],
            "messages": [{ "id": wamid }],
        }))
        .into_response(),
        Answer::Error { code, http_status } => error_response(code, http_status),
        Answer::Hold => {
            let mut stopped = shared.stopped.clone();
            let _ = stopped.wait_for(|s| *s).await;
            error_response(131016, 503)
        }
    }
}

fn decide(
    shared: &Shared,
    state: &mut FakeState,
    phone_number_id: &str,
    authorization: Option<&str>,
    body: &Value,
    to: &str,
) -> Answer {
    if let Some(token) = state.tokens.get(phone_number_id) {
        let expected = format!("Bearer {token}");
        if authorization != Some(expected.as_str()) {
            return Answer::Error {
                code: 190,
                http_status: 401,
            };
        }
    }
    if !body.is_object() || to.is_empty() {
        return Answer::Error {
            code: 100,
            http_status: 400,
        };
    }
    if state.held.contains(to) {
        return Answer::Hold;
    }
    if let Some(injection) = state
        .injections
        .iter_mut()
        .find(|i| i.remaining > 0 && i.recipient.as_deref().is_none_or(|r| r == to))
    {
        injection.remaining -= 1;
        return Answer::Error {
            code: injection.code,
            http_status: injection.http_status,
        };
    }
    let n = shared.next_id.fetch_add(1, Ordering::Relaxed);
    Answer::Wamid(format!("wamid.FAKE{}x{n:08}", shared.port))
}

/// Meta's error JSON for `code`, with a title close to Meta's own.
fn error_response(code: i64, http_status: u16) -> Response {
    let title = match code {
        4 | 80007 | 130429 => "Rate limit hit",
        100 => "Invalid parameter",
        190 => "Invalid OAuth access token - Cannot parse access token",
        368 => "Temporarily blocked for policies violations",
        131026 => "Message undeliverable",
        131031 => "Account has been locked",
        131047 => "Re-engagement message",
        131048 => "Spam rate limit hit",
        131049 => "Meta chose not to deliver",
        131056 => "(Business Account, Consumer Account) pair rate limit hit",
        131057 => "Account in maintenance mode",
        131016 => "Service unavailable",
        _ => "Error injected by the fake Cloud API",
    };
    let body = json!({
        "error": {
            "message": format!("(#{code}) {title}"),
            "type": "OAuthException",
            "code": code,
            "error_data": { "messaging_product": "whatsapp", "details": title },
            "fbtrace_id": "fake",
        }
    });
    let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gema_gateway::whatsapp::wire::{
        ErrorClass, Outgoing, SendResult, classify, message_body, messages_url, parse_send_response,
    };

    async fn send(
        fake: &FakeCloudApi,
        number: &str,
        token: Option<&str>,
        to: &str,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let mut request = client
            .post(messages_url(&fake.base_url(), "v21.0", number))
            .json(&message_body(to, &Outgoing::Text { body: "Halo" }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?.to_vec()))
    }

    const LONG: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_send_is_accepted_with_a_unique_wamid_and_recorded() {
        let fake = FakeCloudApi::start().await.expect("starts");
        let mut wamids = Vec::new();
        for _ in 0..3 {
            let (status, body) = send(&fake, "111", Some("t"), "628123", LONG)
                .await
                .expect("answered");
            let SendResult::Accepted { wamid } = parse_send_response(status, &body) else {
                panic!("rejected: {}", String::from_utf8_lossy(&body));
            };
            wamids.push(wamid);
        }
        wamids.sort();
        wamids.dedup();
        assert_eq!(wamids.len(), 3);

        let requests = fake.requests();
        assert_eq!(requests.len(), 3);
        let first = &requests[0];
        assert_eq!(first.phone_number_id, "111");
        assert_eq!(first.to, "628123");
        assert_eq!(first.authorization.as_deref(), Some("Bearer t"));
        assert_eq!(first.body["text"]["body"], json!("Halo"));
        assert!(first.answered_wamid.is_some());
    }

    #[tokio::test]
    async fn an_injected_error_is_answered_as_meta_does_then_runs_out() {
        let fake = FakeCloudApi::start().await.expect("starts");
        fake.inject(Some("628999"), 131047, 400, 1);
        fake.inject(None, 130429, 429, 2);

        let mut results = Vec::new();
        for to in ["628111", "628999", "628999", "628111"] {
            let (status, body) = send(&fake, "111", None, to, LONG).await.expect("answered");
            results.push(parse_send_response(status, &body));
        }
        let codes: Vec<_> = results
            .iter()
            .map(|r| match r {
                SendResult::Rejected {
                    code, http_status, ..
                } => Some((*code, *http_status)),
                SendResult::Accepted { .. } => None,
            })
            .collect();
        assert_eq!(
            codes,
            [
                Some((Some(130429), 429)),
                Some((Some(131047), 400)),
                Some((Some(130429), 429)),
                None
            ]
        );
        assert_eq!(classify(Some(131047), 400), ErrorClass::WindowClosed);
        if let SendResult::Rejected { message, .. } = &results[1] {
            assert!(
                message.starts_with("(#131047) Re-engagement message"),
                "{message}"
            );
        }
        let answered: Vec<_> = fake
            .requests()
            .iter()
            .map(|r| r.answered_wamid.is_some())
            .collect();
        assert_eq!(answered, [false, false, false, true]);
    }

    #[tokio::test]
    async fn a_registered_number_accepts_only_its_token() {
        let fake = FakeCloudApi::start().await.expect("starts");
        fake.register("111", "secret");
        for token in [None, Some("wrong"), Some("Secret"), Some("secret2")] {
            let (status, body) = send(&fake, "111", token, "628123", LONG)
                .await
                .expect("answered");
            let SendResult::Rejected {
                code,
                message,
                http_status,
            } = parse_send_response(status, &body)
            else {
                panic!("accepted with token {token:?}");
            };
            assert_eq!((code, http_status), (Some(190), 401), "{token:?}");
            assert!(message.starts_with("(#190) "), "{message}");
        }
        let (status, body) = send(&fake, "111", Some("secret"), "628123", LONG)
            .await
            .expect("answered");
        assert!(matches!(
            parse_send_response(status, &body),
            SendResult::Accepted { .. }
        ));
        // Another number was never registered: any token will do.
        let (status, body) = send(&fake, "222", Some("whatever"), "628123", LONG)
            .await
            .expect("answered");
        assert!(matches!(
            parse_send_response(status, &body),
            SendResult::Accepted { .. }
        ));
        assert_eq!(fake.count(), 6);
    }

    #[tokio::test]
    async fn a_held_request_is_recorded_but_never_answered() {
        let fake = FakeCloudApi::start().await.expect("starts");
        fake.hold("628777");
        let held = send(&fake, "111", None, "628777", Duration::from_millis(300)).await;
        match held {
            Err(e) => assert!(e.is_timeout(), "{e}"),
            Ok((status, _)) => panic!("answered with HTTP {status}"),
        }
        assert!(fake.wait_for(1, LONG).await);
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].to, "628777");
        assert_eq!(requests[0].answered_wamid, None);

        // Others are still answered.
        let (status, body) = send(&fake, "111", None, "628111", LONG)
            .await
            .expect("answered");
        assert!(matches!(
            parse_send_response(status, &body),
            SendResult::Accepted { .. }
        ));
    }

    #[tokio::test]
    async fn wait_for_gives_up_after_its_timeout() {
        let fake = FakeCloudApi::start().await.expect("starts");
        assert!(!fake.wait_for(1, Duration::from_millis(50)).await);
        send(&fake, "111", None, "628111", LONG)
            .await
            .expect("answered");
        assert!(fake.wait_for(1, Duration::from_millis(50)).await);
    }

    #[tokio::test]
    async fn the_server_stops_when_the_last_handle_is_dropped() {
        let fake = FakeCloudApi::start().await.expect("starts");
        let url = fake.base_url();
        let clone = fake.clone();
        drop(fake);
        // A clone keeps it running.
        let (status, _) = send(&clone, "111", None, "628111", LONG)
            .await
            .expect("answered");
        assert_eq!(status, 200);
        drop(clone);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let mut refused = false;
        for _ in 0..100 {
            let result = client
                .post(format!("{url}/v21.0/111/messages"))
                .body("{}")
                .send()
                .await;
            if result.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "the fake still answers after the last handle went");
    }
}
