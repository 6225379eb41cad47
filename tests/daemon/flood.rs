//! An HTTP connection flood cannot lock devices out: the daemon runs with few descriptors,
//! three child processes open many idle connections that each sent half a request header
//! (as once took all 20,000 of the daemon's descriptors, so that `/health` stopped
//! answering and the broker could accept no soundbox), and while they hold them a device
//! connects over MQTT/TLS, a signed callback is answered 200 and `/health` answers. Then a
//! flood from more addresses fills the HTTP cap, and another device still connects: the
//! broker's descriptors are its own.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gema::sim::SimEvent;
use gema_gateway::testing::eventually;

use crate::helpers::{Daemon, connected_sim, next_event};
use crate::payments::{KEY, notification, notify, order};

/// Opens `count` connections from each of the comma-separated `sources` to the port, sends
/// each half a request header, says how many the daemon kept, and holds them until its
/// stdin closes.
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

# Until the daemon has decided on every connection: the count stops changing.
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
struct Flooder(Child);

impl Flooder {
    fn start(source: &str, port: u16, count: usize) -> (Flooder, usize) {
        let mut child = Command::new("python3")
            .args(["-c", FLOODER, source, &port.to_string(), &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the flooder");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let kept = line
            .strip_prefix("kept ")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("the flooder said {line:?}"));
        (Flooder(child), kept)
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let floods: Vec<_> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .into_iter()
        .map(|source| Flooder::start(source, port, 1_000))
        .collect();
    for (_, kept) in &floods {
        assert_eq!(*kept, 40, "each source keeps its share, the rest is shed");
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
    eventually("the refusals are logged", || async {
        daemon
            .stderr()
            .contains("HTTP connection refused")
            .then_some(())
    })
    .await;

    // Ten more addresses fill the HTTP cap (200: 120 are held already) …
    let sources: Vec<String> = (1..=10).map(|i| format!("127.0.1.{i}")).collect();
    let (wide, kept) = Flooder::start(&sources.join(","), port, 40);
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
