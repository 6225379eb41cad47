//! The HTTP accept loop: serves a [`Router`] on a listener with the connection limits that
//! keep one listener from starving the others (and the MQTT broker) of file descriptors.
//! `axum::serve` accepts every connection and keeps it as long as the client likes; a few
//! thousand idle sockets that each sent half a request header once took every descriptor
//! the daemon had. Here:
//!
//! - at most [`ConnectionLimits::max_connections`] connections at once, and at most
//!   [`ConnectionLimits::max_connections_per_source`] from one source address; a connection
//!   past either cap is accepted and closed at once (shed, so it does not wait in the
//!   backlog), counted in `gema_http_connections_refused_total{listener, reason}` and
//!   logged at most once per ten seconds per reason;
//! - a request's header must arrive within [`ConnectionLimits::header_read_timeout`] (from
//!   accept, or on a kept-alive connection from the end of the previous response), its body
//!   within [`ConnectionLimits::body_read_timeout`] of its header (else 408 and the
//!   connection closes), and a connection on which no handler is working and no byte has
//!   moved for [`ConnectionLimits::idle_timeout`] is closed.
//!
//! It only speaks HTTP: the caps are given by the binary, which derives them from the
//! configuration and the process's open-file limit.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::error::ApiError;

/// How many connections one listener keeps and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Names the listener in metrics and logs (`api`, `metrics`).
    pub listener: &'static str,
    /// Open connections at once; past it new ones are closed at once.
    pub max_connections: usize,
    /// Open connections from one source address at once.
    pub max_connections_per_source: usize,
    /// How long a request's header may take to arrive.
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive, from its header.
    pub body_read_timeout: Duration,
    /// How long a connection may stay with no handler working and no byte moving.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            listener: "api",
            max_connections: 1024,
            max_connections_per_source: 64,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, lets
/// every connection finish its request in flight (idle ones close at once) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let admission = Arc::new(Admission {
        permits: Arc::new(Semaphore::new(max)),
        per_source: Mutex::new(HashMap::new()),
        limits,
        refused_max: RefusalLog::default(),
        refused_per_source: RefusalLog::default(),
        accept_errors: RefusalLog::default(),
    });
    let (close_tx, close_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // The peer gave up before we took it: nothing to wait for.
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) {
                    continue;
                }
                // Out of descriptors or buffers: back off instead of spinning.
                metrics::counter!("gema_http_accept_errors_total", "listener" => limits.listener)
                    .increment(1);
                if let Some(suppressed) = admission.accept_errors.due() {
                    tracing::warn!(
                        listener = limits.listener,
                        error = %err,
                        suppressed,
                        "HTTP accept failed"
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = admission.admit(peer.ip()) else {
            // Shed: closing now frees the descriptor and tells the client at once.
            drop(stream);
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            slot,
            close_rx.clone(),
        ));
    }
    drop(listener);
    let _ = close_tx.send(true);
    // Every connection holds a permit until it ends.
    let _ = admission
        .permits
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
}

/// Who may connect: the global cap (a semaphore) and the per-source counts.
#[derive(Debug)]
struct Admission {
    permits: Arc<Semaphore>,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    limits: ConnectionLimits,
    refused_max: RefusalLog,
    refused_per_source: RefusalLog,
    accept_errors: RefusalLog,
}

impl Admission {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let ip = ip.to_canonical();
        let listener = self.limits.listener;
        {
            let mut per_source = self
                .per_source
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let count = per_source.entry(ip).or_insert(0);
            if *count >= self.limits.max_connections_per_source.max(1) {
                drop(per_source);
                self.refuse("per_source", &self.refused_per_source, ip);
                return None;
            }
            *count += 1;
        }
        // From here on the slot undoes the count when dropped, also on refusal below.
        let mut slot = Slot {
            admission: self.clone(),
            ip,
            permit: None,
        };
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                slot.permit = Some(permit);
                metrics::gauge!("gema_http_connections", "listener" => listener).increment(1.0);
                Some(slot)
            }
            Err(_) => {
                drop(slot);
                self.refuse("max_connections", &self.refused_max, ip);
                None
            }
        }
    }

    fn refuse(&self, reason: &'static str, log: &RefusalLog, ip: IpAddr) {
        let listener = self.limits.listener;
        metrics::counter!(
            "gema_http_connections_refused_total",
            "listener" => listener,
            "reason" => reason
        )
        .increment(1);
        if let Some(suppressed) = log.due() {
            tracing::warn!(
                listener,
                reason,
                source = %ip,
                max_connections = self.limits.max_connections,
                max_connections_per_source = self.limits.max_connections_per_source,
                refused_since_last_log = suppressed,
                "HTTP connection refused: at the connection cap"
            );
        }
    }
}

/// A connection's place under both caps; dropping it gives both back.
#[derive(Debug)]
struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
    /// `None` only while [`Admission::admit`] is deciding.
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_source = self
            .admission
            .per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_source.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_source.remove(&self.ip);
            }
        }
        if self.permit.is_some() {
            metrics::gauge!("gema_http_connections", "listener" => self.admission.limits.listener)
                .decrement(1.0);
        }
    }
}

/// At most one log line per interval; counts what it kept quiet about.
#[derive(Debug, Default)]
struct RefusalLog {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

impl RefusalLog {
    /// `Some(events suppressed since the last line)` when a line is due now.
    fn due(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    slot: Slot,
    mut close: watch::Receiver<bool>,
) {
    let limits = slot.admission.limits;
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |mut request: Request<Incoming>| {
            let router = router.clone();
            let busy = activity.busy();
            async move {
                request.extensions_mut().insert(ConnectInfo(peer));
                let timed_out = Arc::new(AtomicBool::new(false));
                let request = request.map(|body| {
                    Body::new(DeadlineBody {
                        inner: Box::pin(body),
                        deadline: Box::pin(tokio::time::sleep(limits.body_read_timeout)),
                        timed_out: timed_out.clone(),
                    })
                });
                let response = router.oneshot(request).await;
                drop(busy);
                if timed_out.load(Ordering::Relaxed) {
                    return Ok(body_timeout(limits.body_read_timeout));
                }
                response
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let idle = limits.idle_timeout.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(5)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(listener = limits.listener, peer = %peer, error = %err, "HTTP connection ended");
                }
                break;
            }
            _ = close.wait_for(|close| *close), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tick.tick() => {
                if activity.idle_for() >= idle {
                    metrics::counter!("gema_http_connections_idle_closed_total", "listener" => limits.listener)
                        .increment(1);
                    break;
                }
            }
        }
    }
    drop(slot);
}

/// The 408 a request gets when its body did not arrive in time; the connection closes.
fn body_timeout(limit: Duration) -> Response {
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the request body did not arrive within {} s",
            limit.as_millis().div_ceil(1000)
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// When a byte last moved on a connection, and how many handlers are working on it.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last read or write of at least one byte.
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long nothing has happened; zero while a handler works.
    fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }
}

/// A handler at work: the connection is not idle.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, noting every read and write that moved bytes.
#[derive(Debug)]
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that must arrive before a deadline; past it, reading fails and the
/// request is answered 408.
struct DeadlineBody {
    inner: Pin<Box<Incoming>>,
    deadline: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = self.inner.as_mut().poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&*self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&*self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpSocket;

    /// A guard for reads that should end: a test never hangs, and no duration is asserted.
    const GUARD: Duration = Duration::from_secs(20);

    async fn start(limits: ConnectionLimits) -> (SocketAddr, watch::Sender<bool>) {
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/echo", post(|body: Bytes| async move { body }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, mut stop_rx) = watch::channel(false);
        tokio::spawn(serve(listener, router, limits, async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }));
        (addr, stop_tx)
    }

    async fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::from((source, 0)))
            .expect("any 127.0.0.0/8 address is local on Linux");
        socket.connect(addr).await.unwrap()
    }

    /// Everything the server sends until it closes the connection.
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let read = tokio::time::timeout(GUARD, async {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the server kept the connection open");
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One request on a kept-alive connection, answered 200.
    async fn get_ok(stream: &mut TcpStream) {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let mut got = String::new();
        while !got.ends_with("ok") {
            let n = tokio::time::timeout(GUARD, stream.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "closed before answering: {got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }

    #[tokio::test]
    async fn a_connection_that_trickles_header_lines_is_closed_at_the_header_timeout() {
        let (addr, _stop) = start(ConnectionLimits {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(60),
            ..ConnectionLimits::default()
        })
        .await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        // A header line every 50 ms keeps bytes moving; only the header deadline ends it.
        let (mut read, mut write) = stream.into_split();
        let trickle = tokio::spawn(async move {
            for i in 0..1_000 {
                if write
                    .write_all(format!("x-{i}: y\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        });
        let closed = tokio::time::timeout(GUARD, async {
            let mut buf = [0u8; 1024];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a trickling header kept the connection");
        trickle.abort();
    }

    #[tokio::test]
    async fn an_idle_kept_alive_connection_is_closed() {
        let (addr, _stop) = start(ConnectionLimits {
            header_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_millis(200),
            ..ConnectionLimits::default()
        })
        .await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        get_ok(&mut stream).await;
        assert_eq!(read_to_close(&mut stream).await, "");
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
        let (addr, _stop) = start(ConnectionLimits {
            body_read_timeout: Duration::from_millis(300),
            ..ConnectionLimits::default()
        })
        .await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        let answer = read_to_close(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
    }

    #[tokio::test]
    async fn past_the_per_source_cap_a_new_connection_is_closed_at_once() {
        let (addr, _stop) = start(ConnectionLimits {
            max_connections: 10,
            max_connections_per_source: 2,
            ..ConnectionLimits::default()
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = connect_from([127, 0, 0, 1], addr).await;
            get_ok(&mut stream).await;
            held.push(stream);
        }
        let mut third = connect_from([127, 0, 0, 1], addr).await;
        assert_eq!(read_to_close(&mut third).await, "");
        // Another source has its own share.
        let mut other = connect_from([127, 0, 0, 2], addr).await;
        get_ok(&mut other).await;
        // A closed connection gives its place back.
        drop(held.pop());
        gema_gateway::testing::eventually("the source's place is given back", || async {
            let mut again = connect_from([127, 0, 0, 1], addr).await;
            again
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .ok()?;
            let mut buf = [0u8; 64];
            matches!(again.read(&mut buf).await, Ok(n) if n > 0).then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn past_the_global_cap_a_new_connection_is_closed_at_once() {
        let (addr, _stop) = start(ConnectionLimits {
            max_connections: 2,
            max_connections_per_source: 10,
            ..ConnectionLimits::default()
        })
        .await;
        let mut first = connect_from([127, 0, 0, 1], addr).await;
        get_ok(&mut first).await;
        let mut second = connect_from([127, 0, 0, 2], addr).await;
        get_ok(&mut second).await;
        let mut third = connect_from([127, 0, 0, 3], addr).await;
        assert_eq!(read_to_close(&mut third).await, "");
        // The ones admitted are still served.
        get_ok(&mut first).await;
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections() {
        let (addr, stop) = start(ConnectionLimits::default()).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        get_ok(&mut idle).await;
        stop.send(true).unwrap();
        assert_eq!(read_to_close(&mut idle).await, "");
    }
}
