//! An HTTP connection flood cannot lock devices out: the daemon runs with few descriptors,
//! three child processes open many idle connections that each sent half a request header
//! (as once took all 20,000 of the daemon's descriptors, so that `/health` stopped
//! answering and the broker could accept no soundbox), and while they hold them a device
//! connects over MQTT/TLS, a signed callback is answered 200 and `/health` answers. Then a
//! flood from more addresses fills the HTTP cap, and another device still connects: the
//! broker's descriptors are its own.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use gema::sim::SimEvent;
use gema_gateway::testing::{DEFAULT_DEADLINE, eventually_within};

use crate::helpers::{Daemon, connected_sim, next_event};
use crate::payments::{KEY, notification, notify, order};

/// Opens `count` connections from each of the comma-separated `sources` to the port, sends
/// each half a request header and says how many connected; once told (a line on its stdin)
/// that the daemon has decided on every one, says how many it kept, and holds them until
/// its stdin closes.
const FLOODER: &str = r#"
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
sources, port, count = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])
held = []
# Bounded: against a daemon that no longer accepts, a connect waits in a full backlog.
deadline = time.monotonic() + 20
for i in range(count * len(sources)):
    if time.monotonic() > deadline:
        break
    s = socket.socket()
    s.bind((sources[i % len(sources)], 0))
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: gema\r\n")
        s.setblocking(False)
        held.append(s)
    except OSError:
        s.close()

print("connected", len(held), flush=True)
sys.stdin.readline()

def open_ones():
    alive = []
    for s in held:
        try:
            if s.recv(1):
                alive.append(s)
            else:
                s.close()
        except BlockingIOError:
            alive.append(s)
        except OSError:
            s.close()
    return alive

# The daemon has counted its decision on each; the closes it sent may still be on their way:
# until the count stops changing.
previous = -1
for _ in range(100):
    time.sleep(0.3)
    held = open_ones()
    if len(held) == previous:
        break
    previous = len(held)
print("kept", len(held), flush=True)
sys.stdin.read()
"#;

/// A flooding child process; killed when dropped.
struct Flooder {
    child: Child,
    said: BufReader<ChildStdout>,
}

impl Flooder {
    /// Starts a flood and returns once its connections are open: how many connected.
    fn start(source: &str, port: u16, count: usize) -> (Flooder, usize) {
        let mut child = Command::new("python3")
            .args(["-c", FLOODER, source, &port.to_string(), &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the flooder");
        let said = BufReader::new(child.stdout.take().unwrap());
        let mut flooder = Flooder { child, said };
        let connected = flooder.number("connected ");
        (flooder, connected)
    }

    /// How many of its connections the daemon kept: the caller has seen the daemon decide
    /// on every one (its metrics), so only the closes on their way are waited for.
    fn kept(&mut self) -> usize {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(b"count\n")
            .and_then(|()| stdin.flush())
            .unwrap();
        self.number("kept ")
    }

    fn number(&mut self, label: &str) -> usize {
        let mut line = String::new();
        self.said.read_line(&mut line).unwrap();
        line.strip_prefix(label)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("the flooder said {line:?}, not {label:?}"))
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the daemon has refused `refused` connections for `reason` in all: it has then
/// decided on every flood connection so far (accepted into the cap or refused). Before, a
/// connection still in its accept backlog looks kept to the flooder.
async fn refusals_reach(daemon: &Daemon, reason: &str, refused: u64) {
    let labels = format!("reason=\"{reason}\"");
    let labels = labels.as_str();
    eventually_within(
        &format!("{refused} connections refused ({reason})"),
        DEFAULT_DEADLINE,
        || async move {
            let metrics = daemon.metrics().await;
            let now = counter(&metrics, "gema_http_connections_refused_total", labels);
            if now >= refused {
                Ok(Some(()))
            } else {
                Err(now)
            }
        },
    )
    .await;
}

/// Sum of a Prometheus counter's series whose labels contain `labels`.
fn counter(metrics: &str, name: &str, labels: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_connection_flood_leaves_devices_callbacks_and_health_served() {
    let dir = tempfile::tempdir().unwrap();
    // 1,024 descriptors: the flood below (3,000 connections) would take them all three
    // times over if every connection were kept.
    let daemon = Daemon::start_with_open_files(
        dir.path(),
        &[
            ("GEMA_PAYMENTS__MIDTRANS__SERVER_KEY", KEY),
            ("GEMA_HTTP__MAX_CONNECTIONS", "200"),
            ("GEMA_HTTP__MAX_CONNECTIONS_PER_SOURCE", "40"),
            // Long enough that the flood is still held while the test checks.
            ("GEMA_HTTP__HEADER_READ_TIMEOUT_SECS", "120"),
        ],
        1024,
    );
    let c = daemon.approved_terminal_with_device("SB-FLOOD-1").await;
    let second = daemon.register_device("SB-FLOOD-2").await;
    let id = order(&daemon, &c.terminal, "ORD-FLOOD-1", 15_000).await;

    let port = daemon.http_port();
    let mut floods = Vec::new();
    let mut shed = 0;
    for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let (mut flood, connected) = Flooder::start(source, port, 1_000);
        assert!(connected >= 40, "{source}: {connected} connected");
        shed += (connected - 40) as u64;
        refusals_reach(&daemon, "per_source", shed).await;
        let kept = flood.kept();
        assert_eq!(kept, 40, "each source keeps its share, the rest is shed");
        floods.push(flood);
    }

    // A soundbox still connects over MQTT/TLS…
    let (fleet, mut events) = connected_sim(daemon.mqtt_addr.port(), &c.device, &c.ca_pem).await;
    // … a signed callback is answered, and the device speaks it …
    let (status, reply) = notify(
        &daemon,
        &notification("ORD-FLOOD-1", "settlement", "15000.00"),
    )
    .await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("applied")));
    let spoke = next_event(&mut events, |e| matches!(e, SimEvent::Spoke { .. })).await;
    assert!(
        matches!(&spoke, SimEvent::Spoke { transaction_id, .. } if *transaction_id == id),
        "{spoke:?}"
    );
    // … and /health answers.
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!("{}/health", daemon.api_url))
        .send()
        .await
        .expect("/health answers during the flood");
    assert_eq!(health.status(), 200);

    let metrics = daemon.metrics().await;
    assert!(
        counter(
            &metrics,
            "gema_http_connections_refused_total",
            "reason=\"per_source\""
        ) >= 3 * 960,
        "{metrics}"
    );
    daemon.until_logged("HTTP connection refused").await;

    // Ten more addresses fill the HTTP cap (200: 120 are held already) …
    let sources: Vec<String> = (1..=10).map(|i| format!("127.0.1.{i}")).collect();
    let (mut wide, connected) = Flooder::start(&sources.join(","), port, 40);
    assert!(connected >= 80, "{connected} connected");
    refusals_reach(&daemon, "max_connections", (connected - 80) as u64).await;
    let kept = wide.kept();
    assert_eq!(kept, 200 - 3 * 40, "the rest of the cap, no more");
    let metrics = daemon.metrics().await;
    assert!(
        counter(
            &metrics,
            "gema_http_connections_refused_total",
            "reason=\"max_connections\""
        ) >= 400 - 80,
        "{metrics}"
    );
    // … and a device still connects over MQTT/TLS.
    let (second_fleet, _) =
        connected_sim(daemon.mqtt_addr.port(), &second.device, &second.ca_pem).await;
    drop((floods, wide));
    fleet.abort();
    second_fleet.abort();
}
