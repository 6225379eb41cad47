//! The announcement relay against a real SQLite store and a scripted transport.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gema_firmware_protocol::message::{
    Ack, AckStatus, Downlink, DownlinkBody, Envelope, Uplink, UplinkBody,
};
use gema_firmware_protocol::topic::MessageKind;
use gema_firmware_protocol::{Encoding, decode, encode, topic};
use gema_gateway::payments::{
    AnnouncementRelay, PaymentSettings, Payments, RelaySettings, RelayWake,
};
use gema_gateway::transport::{DeviceTransport, Presence, PublishOutcome, UplinkMessage};
use gema_store::*;
use tokio::sync::mpsc;

/// A device on the other end of the transport.
#[derive(Debug, Default)]
struct FakeDevice {
    connected: HashSet<String>,
    /// Ack announcements (as a soundbox does) or stay silent.
    ack: bool,
    /// Every announcement published, in order.
    received: Vec<(String, i64, u64)>,
}

#[derive(Debug, Clone)]
struct FakeTransport {
    device: Arc<Mutex<FakeDevice>>,
    uplinks: mpsc::Sender<UplinkMessage>,
}

#[async_trait::async_trait]
impl DeviceTransport for FakeTransport {
    async fn publish(
        &self,
        device_id: &str,
        topic: &str,
        payload: Vec<u8>,
        _wait: Duration,
    ) -> PublishOutcome {
        let downlink: Downlink = decode(&payload, Encoding::Json).expect("relay sends valid JSON");
        assert_eq!(topic, downlink.topic(device_id, Encoding::Json));
        let DownlinkBody::Announce(announce) = &downlink.body else {
            panic!("expected an announcement");
        };
        let ack = {
            let mut device = self.device.lock().unwrap();
            if !device.connected.contains(device_id) {
                return PublishOutcome::Offline;
            }
            device.received.push((
                announce.transaction_id.clone(),
                announce.amount,
                announce.sequence,
            ));
            device.ack
        };
        if ack {
            let uplink = Uplink {
                envelope: Envelope::new(format!("up-{}", downlink.envelope.msg_id), 0),
                body: UplinkBody::Ack(Ack {
                    acked_msg_id: downlink.envelope.msg_id.clone(),
                    transaction_id: Some(announce.transaction_id.clone()),
                    status: AckStatus::Spoken,
                }),
            };
            let message = UplinkMessage {
                device_id: device_id.to_string(),
                topic: topic::topic(device_id, MessageKind::Ack, Encoding::Json),
                payload: encode(&uplink, Encoding::Json),
            };
            self.uplinks.send(message).await.unwrap();
        }
        PublishOutcome::Acknowledged
    }

    fn is_connected(&self, device_id: &str) -> bool {
        self.device.lock().unwrap().connected.contains(device_id)
    }

    fn disconnect(&self, device_id: &str) -> bool {
        self.device.lock().unwrap().connected.remove(device_id)
    }
}

struct Harness {
    store: Arc<dyn Store>,
    device: Arc<Mutex<FakeDevice>>,
    presence: mpsc::Sender<Presence>,
    rules: gema_gateway::payments::StandardRules,
    wake: Arc<RelayWake>,
    terminal: Terminal,
    device_id: String,
    _dir: tempfile::TempDir,
}

async fn harness(settings: RelaySettings, connected: bool, ack: bool) -> Harness {
    harness_with(settings, PaymentSettings::default(), connected, ack).await
}

async fn harness_with(
    settings: RelaySettings,
    payment_settings: PaymentSettings,
    connected: bool,
    ack: bool,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gema.db").display());
    let store = gema_store::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let m = store
        .create_merchant(NewMerchant {
            name: "W".into(),
            email: None,
            phone: None,
        })
        .await
        .unwrap();
    store
        .transition_merchant(
            &m.id,
            &[MerchantStatus::Pending],
            MerchantStatus::Approved,
            None,
        )
        .await
        .unwrap();
    let o = store
        .create_outlet(NewOutlet {
            merchant_id: m.id,
            name: "O".into(),
            address: None,
            city: None,
        })
        .await
        .unwrap();
    let terminal = store
        .create_terminal(NewTerminal {
            outlet_id: o.id,
            label: "A01".into(),
            name: None,
            payment_ref: None,
            static_qris: None,
        })
        .await
        .unwrap();
    let d = store
        .create_device(NewDevice {
            serial: "SN".into(),
            model: "SB".into(),
            firmware_version: None,
            secret_hash: "h".into(),
        })
        .await
        .unwrap();
    store.bind_device(&d.id, &terminal.id).await.unwrap();

    let device = Arc::new(Mutex::new(FakeDevice {
        ack,
        ..Default::default()
    }));
    if connected {
        device.lock().unwrap().connected.insert(d.id.clone());
    }
    let (uplink_tx, uplink_rx) = mpsc::channel(64);
    let (presence_tx, presence_rx) = mpsc::channel(64);
    let transport = Arc::new(FakeTransport {
        device: device.clone(),
        uplinks: uplink_tx,
    });
    let wake = RelayWake::new();
    let payments = Payments::new(store.clone(), payment_settings, wake.clone());
    let relay = AnnouncementRelay::new(store.clone(), transport, settings, wake.clone());
    tokio::spawn(relay.run(uplink_rx, presence_rx, std::future::pending()));
    Harness {
        store,
        device,
        presence: presence_tx,
        rules: *payments.rules(),
        wake,
        terminal,
        device_id: d.id,
        _dir: dir,
    }
}

impl Harness {
    /// A paid transaction of `amount`, as a provider event would make it.
    async fn pay(&self, order_ref: &str, amount: i64) -> String {
        let now = time::OffsetDateTime::now_utc();
        let t = self
            .store
            .create_transaction(NewTransaction {
                terminal_id: self.terminal.id.clone(),
                order_ref: order_ref.into(),
                amount,
                expires_at_ms: (now.unix_timestamp() + 600) * 1000,
            })
            .await
            .unwrap();
        let outcome = self
            .store
            .apply_payment_event(
                InboxEntry {
                    provider: "generic".into(),
                    received_at: now,
                    headers: "{}".into(),
                    body: vec![],
                },
                IncomingEvent {
                    provider: "generic".into(),
                    provider_transaction_id: order_ref.into(),
                    order_ref: order_ref.into(),
                    amount,
                    status: "paid".into(),
                    raw_status: "paid".into(),
                    issuer: None,
                    paid_at: None,
                    is_test: false,
                },
                &self.rules,
            )
            .await
            .unwrap();
        // As the commit loop does: the committed announcement is handed to the relay.
        let PaymentOutcome::Applied { delivery, .. } = outcome else {
            panic!("expected an applied payment, got {outcome:?}");
        };
        self.wake.hand_over(delivery.map(|d| *d));
        t.id
    }

    async fn announcement(&self, transaction_id: &str) -> Announcement {
        self.store
            .transaction_announcements(transaction_id)
            .await
            .unwrap()
            .remove(0)
    }

    /// Waits (bounded) until the transaction's announcement is in `status`.
    async fn until_status(&self, transaction_id: &str, status: AnnouncementStatus) -> Announcement {
        for _ in 0..200 {
            let a = self.announcement(transaction_id).await;
            if a.status == status {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "announcement never became {status:?}: {:?}",
            self.announcement(transaction_id).await
        );
    }

    async fn connect(&self) {
        self.device
            .lock()
            .unwrap()
            .connected
            .insert(self.device_id.clone());
        self.presence
            .send(Presence::Connected {
                device_id: self.device_id.clone(),
            })
            .await
            .unwrap();
    }

    fn received(&self) -> Vec<(String, i64, u64)> {
        self.device.lock().unwrap().received.clone()
    }
}

fn fast() -> RelaySettings {
    RelaySettings {
        ack_timeout: Duration::from_millis(200),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
        max_attempts: 3,
        ..RelaySettings::default()
    }
}

#[tokio::test]
async fn a_connected_device_gets_the_announcement_and_acks_it() {
    let h = harness(fast(), true, true).await;
    let id = h.pay("ORD-1", 25_000).await;
    let a = h.until_status(&id, AnnouncementStatus::Delivered).await;
    assert_eq!(a.attempts, 1);
    assert!(a.delivered_at.is_some());
    assert_eq!(h.received(), vec![(id, 25_000, 1)]);
}

#[tokio::test]
async fn an_offline_device_gets_its_announcements_in_order_on_reconnect() {
    let h = harness(fast(), false, true).await;
    let first = h.pay("ORD-A", 1_000).await;
    let second = h.pay("ORD-B", 2_000).await;
    let third = h.pay("ORD-C", 3_000).await;
    // Offline: nothing sent, nothing spent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.received().is_empty());
    let a = h.announcement(&first).await;
    assert_eq!((a.status, a.attempts), (AnnouncementStatus::Pending, 0));

    h.connect().await;
    h.until_status(&third, AnnouncementStatus::Delivered).await;
    h.until_status(&first, AnnouncementStatus::Delivered).await;
    h.until_status(&second, AnnouncementStatus::Delivered).await;
    let order: Vec<(i64, u64)> = h
        .received()
        .into_iter()
        .map(|(_, amount, seq)| (amount, seq))
        .collect();
    assert_eq!(order, vec![(1_000, 1), (2_000, 2), (3_000, 3)]);
}

#[tokio::test]
async fn an_announcement_that_expired_offline_is_never_spoken() {
    let payments = PaymentSettings {
        announcement_ttl: Duration::from_millis(50),
        ..PaymentSettings::default()
    };
    let h = harness_with(fast(), payments, false, true).await;
    let id = h.pay("ORD-OLD", 5_000).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // the device stays away too long
    h.connect().await;
    let a = h.until_status(&id, AnnouncementStatus::Expired).await;
    assert_eq!(a.attempts, 0);
    assert!(h.received().is_empty(), "an expired announcement was sent");
}

#[tokio::test]
async fn a_silent_device_is_retried_then_marked_failed() {
    let h = harness(fast(), true, false).await;
    let id = h.pay("ORD-SILENT", 7_000).await;
    let a = h.until_status(&id, AnnouncementStatus::Failed).await;
    assert_eq!(a.attempts, 3);
    assert!(a.last_error.unwrap().contains("gave up after 3 attempts"));
    assert_eq!(h.received().len(), 3, "one send per attempt");
}

#[tokio::test]
async fn a_retry_after_a_reconnect_comes_on_its_backoff_not_the_offline_recheck() {
    // Offline at payment time: the announcement is deferred to the 30 s offline recheck.
    let h = harness(fast(), false, false).await;
    let id = h.pay("ORD-BACK", 4_000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Back, but the first attempt goes unacknowledged: a retry is due after 20 ms.
    h.connect().await;
    for _ in 0..200 {
        if !h.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.device.lock().unwrap().ack = true;
    // Delivered by the retry (until_status gives up after about 5 s, long before 30 s).
    let a = h.until_status(&id, AnnouncementStatus::Delivered).await;
    // Two attempts, or three if this test was slow to turn acks on; one send each.
    assert!(a.attempts >= 2, "{a:?}");
    assert_eq!(h.received().len() as i64, a.attempts);
}
