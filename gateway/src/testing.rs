//! Test support shared by every crate's tests (feature `testing`): never compiled into the
//! daemon.
//!
//! - [`eventually`] / [`eventually_within`]: what a test waits for, it waits for here: one
//!   poller with a deadline and a message that says what never happened, instead of
//!   hand-written sleep loops.
//! - [`RecordingTransport`]: the one fake [`DeviceTransport`]: a connected set, recorded
//!   publishes, scripted or persistent failures, counted disconnects, and (when asked) a
//!   soundbox's `ack` for every announcement it is given.
//! - [`temp_store`]: a migrated SQLite database in a temporary directory.
//! - [`TestGateway`]: a gateway on a temporary database and a [`RecordingTransport`],
//!   built by [`Gateway::build`] (the daemon's constructor) and running.
//! - Fixtures that go through the [`Registry`]: [`approved_terminal`],
//!   [`approved_terminal_with_device`].

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gema_firmware_protocol::message::{
    Ack, AckStatus, Downlink, DownlinkBody, Envelope, Uplink, UplinkBody,
};
use gema_firmware_protocol::topic::{self as topics, MessageKind};
use gema_firmware_protocol::{Encoding, decode, encode};
use gema_store::{
    ConnectOptions, Device, Merchant, NewMerchant, NewOutlet, NewTerminal, Outlet, Store, Terminal,
};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::credentials::SecretString;
use crate::gateway::{Gateway, GatewayDeps, GatewaySettings};
use crate::registry::{DeviceInput, Registry};
use crate::transport::{DeviceTransport, Presence, PublishOutcome, UplinkMessage};

/// A real merchant's static QRIS (a DOKU sample), valid for dynamic QR codes.
pub const STATIC_QRIS: &str = "00020101021126530012COM.DOKU.WWW0118936008990000002475020424750303URE51440014ID.CO.QRIS.WWW0215ID10200392934820303URE5204539953033605802ID5911GUREUM SHOP6013JAKARTA PUSAT61051064062070703A016304455C";

/// How long [`eventually`] waits unless told otherwise: generous, because CI machines are
/// slow and a passing test never waits this long.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// Calls `check` until it returns `Some`, every 20 ms, for at most `deadline`; returns that
/// value. Panics naming `what` when the deadline passes, with the last `Debug` of what
/// `check` saw if it reported one through `Err`.
///
/// `check` returns `Ok(Some(value))` when done, `Ok(None)` to try again, and `Err(last)` to
/// try again while remembering what it saw (shown if the wait fails).
pub async fn eventually_within<T, S, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    S: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, S>>,
{
    let start = tokio::time::Instant::now();
    let mut last: Option<S> = None;
    loop {
        match check().await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(seen) => last = Some(seen),
        }
        if start.elapsed() >= deadline {
            match last {
                Some(seen) => panic!("{what}: not within {deadline:?}; last seen: {seen:?}"),
                None => panic!("{what}: not within {deadline:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually_within`] with [`DEFAULT_DEADLINE`] and a check that only says yes or no.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, DEFAULT_DEADLINE, || {
        let next = check();
        async move { Ok::<_, ()>(next.await) }
    })
    .await
}

// ---- the one fake transport --------------------------------------------------------------

/// One publish the transport accepted (to a connected device, not scripted to fail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub device_id: String,
    pub topic: String,
    pub payload: Vec<u8>,
}

impl Published {
    /// The downlink, decoded (the gateway publishes JSON).
    pub fn downlink(&self) -> Downlink {
        decode(&self.payload, Encoding::Json).expect("the gateway publishes valid JSON downlinks")
    }
}

#[derive(Debug, Default)]
struct Wire {
    connected: HashSet<String>,
    /// Outcomes for the next publishes to connected devices, first first.
    scripted: VecDeque<PublishOutcome>,
    /// Every publish to a connected device fails with this reason while set.
    failing: Option<String>,
    /// Where to send a soundbox's `ack` for each announcement, and whether to.
    acks_to: Option<mpsc::Sender<UplinkMessage>>,
    acking: bool,
    published: Vec<Published>,
    disconnects: usize,
}

/// The one recording [`DeviceTransport`] for tests. Cheap to clone (clones share the wire).
///
/// A publish to a device not in the connected set is `Offline` and not recorded; otherwise
/// a scripted outcome is used if one is queued, then the persistent failure if set, and
/// otherwise the publish is recorded and `Acknowledged` (and, if acking, answered with an
/// `ack` uplink of status `spoken` when it is an announcement). Every publish must be a
/// valid JSON downlink on its own topic.
#[derive(Debug, Clone, Default)]
pub struct RecordingTransport {
    wire: Arc<Mutex<Wire>>,
}

impl RecordingTransport {
    pub fn new() -> Self {
        Self::default()
    }

    fn wire(&self) -> std::sync::MutexGuard<'_, Wire> {
        self.wire
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The device has a live connection from now on (no presence event is sent).
    pub fn connect(&self, device_id: &str) {
        self.wire().connected.insert(device_id.to_string());
    }

    /// The device's connection is gone (no presence event, not counted as a disconnect).
    pub fn go_offline(&self, device_id: &str) {
        self.wire().connected.remove(device_id);
    }

    /// The next publish to a connected device has this outcome (queued in order).
    pub fn script(&self, outcome: PublishOutcome) {
        self.wire().scripted.push_back(outcome);
    }

    /// Every publish to a connected device fails with `reason` (`None`: they succeed).
    pub fn set_failing(&self, reason: Option<&str>) {
        self.wire().failing = reason.map(str::to_string);
    }

    /// Where acks for announcements go (the gateway's uplink stream).
    pub fn send_acks_to(&self, uplinks: mpsc::Sender<UplinkMessage>) {
        self.wire().acks_to = Some(uplinks);
    }

    /// Whether announcements are answered with an `ack` (as a soundbox does).
    pub fn set_acking(&self, acking: bool) {
        self.wire().acking = acking;
    }

    /// Every recorded publish, in order.
    pub fn published(&self) -> Vec<Published> {
        self.wire().published.clone()
    }

    /// Every recorded publish as (device id, downlink), in order.
    pub fn downlinks(&self) -> Vec<(String, Downlink)> {
        self.published()
            .into_iter()
            .map(|p| {
                let downlink = p.downlink();
                (p.device_id, downlink)
            })
            .collect()
    }

    /// How many times [`DeviceTransport::disconnect`] was called.
    pub fn disconnects(&self) -> usize {
        self.wire().disconnects
    }
}

#[async_trait::async_trait]
impl DeviceTransport for RecordingTransport {
    async fn publish(
        &self,
        device_id: &str,
        topic: &str,
        payload: Vec<u8>,
        _wait: Duration,
    ) -> PublishOutcome {
        let downlink: Downlink = decode(&payload, Encoding::Json).expect("a valid JSON downlink");
        assert_eq!(topic, downlink.topic(device_id, Encoding::Json));
        let ack_to = {
            let mut wire = self.wire();
            if !wire.connected.contains(device_id) {
                return PublishOutcome::Offline;
            }
            if let Some(outcome) = wire.scripted.pop_front() {
                return outcome;
            }
            if let Some(reason) = &wire.failing {
                return PublishOutcome::Failed(reason.clone());
            }
            wire.published.push(Published {
                device_id: device_id.to_string(),
                topic: topic.to_string(),
                payload,
            });
            match (&downlink.body, wire.acking, &wire.acks_to) {
                (DownlinkBody::Announce(announce), true, Some(to)) => {
                    Some((to.clone(), announce.transaction_id.clone()))
                }
                _ => None,
            }
        };
        if let Some((to, transaction_id)) = ack_to {
            let uplink = Uplink {
                envelope: Envelope::new(format!("up-{}", downlink.envelope.msg_id), 0),
                body: UplinkBody::Ack(Ack {
                    acked_msg_id: downlink.envelope.msg_id.clone(),
                    transaction_id: Some(transaction_id),
                    status: AckStatus::Spoken,
                }),
            };
            let message = UplinkMessage::new(
                device_id,
                topics::topic(device_id, MessageKind::Ack, Encoding::Json),
                encode(&uplink, Encoding::Json),
            );
            let _ = to.send(message).await;
        }
        PublishOutcome::Acknowledged
    }

    fn is_connected(&self, device_id: &str) -> bool {
        self.wire().connected.contains(device_id)
    }

    /// Not modelled: the relay never holds back for a fresh connection here.
    fn connected_for(&self, _device_id: &str) -> Option<Duration> {
        None
    }

    fn connected_count(&self) -> usize {
        self.wire().connected.len()
    }

    fn disconnect(&self, device_id: &str) -> bool {
        let mut wire = self.wire();
        wire.disconnects += 1;
        wire.connected.remove(device_id)
    }
}

// ---- a database and a gateway ------------------------------------------------------------

/// A migrated SQLite database in a fresh temporary directory (kept while the directory
/// lives).
pub async fn temp_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("gema.db").display());
    let store = gema_store::connect(&url, &ConnectOptions::default())
        .await
        .expect("opening the test database");
    store.migrate().await.expect("migrating the test database");
    (store, dir)
}

/// A gateway on a temporary SQLite database and a [`RecordingTransport`], built by
/// [`Gateway::build`] and running ([`Gateway::run`]) until dropped or stopped. Feed it what
/// the broker would through [`TestGateway::uplinks`] and [`TestGateway::presence`].
#[derive(Debug)]
pub struct TestGateway {
    pub gateway: Gateway,
    pub store: Arc<dyn Store>,
    pub transport: RecordingTransport,
    pub clock: Arc<dyn Clock>,
    pub uplinks: mpsc::Sender<UplinkMessage>,
    pub presence: mpsc::Sender<Presence>,
    stop: Option<oneshot::Sender<()>>,
    runner: Option<tokio::task::JoinHandle<Result<(), tokio::task::JoinError>>>,
    dir: tempfile::TempDir,
}

impl TestGateway {
    /// Builds and runs a gateway with these settings and this clock. The transport sends
    /// its acks (once [`RecordingTransport::set_acking`]) into the gateway's uplinks.
    /// Export files go under the database's directory unless `settings` name one.
    pub async fn start(settings: GatewaySettings, clock: Arc<dyn Clock>) -> TestGateway {
        let (store, dir) = temp_store().await;
        Self::start_on(store, dir, settings, clock).await
    }

    /// [`TestGateway::start`] on a store the test made (and filled) first, kept in `dir`.
    pub async fn start_on(
        store: Arc<dyn Store>,
        dir: tempfile::TempDir,
        mut settings: GatewaySettings,
        clock: Arc<dyn Clock>,
    ) -> TestGateway {
        if settings.exports.dir == crate::exports::ExportSettings::default().dir {
            settings.exports.dir = dir.path().join("exports");
        }
        let transport = RecordingTransport::new();
        let gateway = Gateway::build(GatewayDeps {
            store: store.clone(),
            transport: Arc::new(transport.clone()),
            clock: clock.clone(),
            settings,
        });
        let (uplinks, uplink_rx) = mpsc::channel(4096);
        let (presence, presence_rx) = mpsc::channel(4096);
        transport.send_acks_to(uplinks.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let runner = tokio::spawn(gateway.clone().run(uplink_rx, presence_rx, async {
            let _ = stopped.await;
        }));
        TestGateway {
            gateway,
            store,
            transport,
            clock,
            uplinks,
            presence,
            stop: Some(stop),
            runner: Some(runner),
            dir,
        }
    }

    /// The directory holding the database files.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops the gateway's tasks and waits for them; panics if one of them panicked.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runner) = self.runner.take() {
            runner
                .await
                .expect("the gateway's run task")
                .expect("a gateway task panicked");
        }
    }
}

// ---- fixtures through the registry -------------------------------------------------------

/// An approved merchant with one outlet and one terminal (label `A01`), made through the
/// registry as the API would.
pub async fn approved_terminal(registry: &Registry) -> (Merchant, Outlet, Terminal) {
    let merchant = registry
        .create_merchant(NewMerchant {
            name: "Warung Sari".into(),
            email: None,
            phone: None,
        })
        .await
        .expect("creating the merchant");
    let merchant = registry
        .approve_merchant(&merchant.id)
        .await
        .expect("approving the merchant");
    let outlet = registry
        .create_outlet(NewOutlet {
            merchant_id: merchant.id.clone(),
            name: "Pasar Baru".into(),
            address: None,
            city: None,
        })
        .await
        .expect("creating the outlet");
    let terminal = registry
        .create_terminal(NewTerminal {
            outlet_id: outlet.id.clone(),
            label: "A01".into(),
            name: None,
            payment_ref: None,
            static_qris: None,
        })
        .await
        .expect("creating the terminal");
    (merchant, outlet, terminal)
}

/// [`approved_terminal`] and a device registered with `serial` and bound to the terminal.
#[derive(Debug, Clone)]
pub struct TerminalWithDevice {
    pub merchant: Merchant,
    pub outlet: Outlet,
    pub terminal: Terminal,
    pub device: Device,
    /// The device's MQTT secret, as issued.
    pub secret: SecretString,
}

/// An approved terminal with a device bound to it, made through the registry.
pub async fn approved_terminal_with_device(
    registry: &Registry,
    serial: &str,
) -> TerminalWithDevice {
    let (merchant, outlet, terminal) = approved_terminal(registry).await;
    let (device, issued) = registry
        .create_device(DeviceInput {
            serial: serial.into(),
            model: "SB-100".into(),
            firmware_version: None,
        })
        .await
        .expect("registering the device");
    let device = registry
        .bind_device(&device.id, &terminal.id)
        .await
        .expect("binding the device");
    TerminalWithDevice {
        merchant,
        outlet,
        terminal,
        device,
        secret: issued.secret,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn eventually_returns_the_first_value_that_arrives() {
        let calls = Arc::new(AtomicU32::new(0));
        let value = eventually("the third call", || {
            let calls = calls.clone();
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                (n == 3).then_some(n)
            }
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn eventually_within_says_what_never_happened_and_what_it_last_saw() {
        let waited = tokio::spawn(eventually_within(
            "a value that never comes",
            Duration::from_millis(60),
            || async { Err::<Option<()>, _>("still nothing") },
        ))
        .await;
        let panic = waited.expect_err("the wait must fail").into_panic();
        let message = panic
            .downcast_ref::<String>()
            .expect("a formatted panic message");
        assert!(message.contains("a value that never comes"), "{message}");
        assert!(message.contains("still nothing"), "{message}");
    }
}
