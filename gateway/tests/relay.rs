//! Delivery's announcement relay against a real SQLite store and the recording transport,
//! in a gateway built and run by the daemon's constructor ([`TestGateway`]).

use std::sync::Arc;
use std::time::Duration;

use gema_firmware_protocol::message::DownlinkBody;
use gema_gateway::GatewaySettings;
use gema_gateway::clock::SystemClock;
use gema_gateway::delivery::DeliverySettings;
use gema_gateway::payments::PaymentSettings;
use gema_gateway::testing::{TestGateway, approved_terminal_with_device, eventually_within};
use gema_gateway::transport::Presence;
use gema_store::*;

// The tests run on two workers: until SQLite's payment writer stops blocking its caller
// (the store's change), the commit loop's write blocks the worker it runs on while it waits
// for its turn to write, and device operations' writes (presence) must go on meanwhile.

/// How long a step that writes to the database may take here: generous for a debug build
/// on a loaded machine, and still half the relay's 30 s offline recheck, which a retry on
/// its backoff must come well before.
const SETTLE: Duration = Duration::from_secs(15);

/// A `replay_grace` for the tests in which a device's re-sent ack must be committed within
/// the grace: the default 500 ms is little for a debug build's SQLite write on a loaded
/// machine.
const LONG_GRACE: Duration = Duration::from_secs(3);

struct Harness {
    gw: TestGateway,
    terminal: Terminal,
    device_id: String,
}

async fn harness(settings: DeliverySettings, connected: bool, ack: bool) -> Harness {
    harness_with(settings, PaymentSettings::default(), connected, ack).await
}

async fn harness_with(
    settings: DeliverySettings,
    payment_settings: PaymentSettings,
    connected: bool,
    ack: bool,
) -> Harness {
    // The store stamps an announcement's expiry with real time: so does the relay here.
    let gw = TestGateway::start(
        GatewaySettings {
            delivery: settings,
            payments: payment_settings,
            ..GatewaySettings::default()
        },
        Arc::new(SystemClock),
    )
    .await;
    let fixture = approved_terminal_with_device(&gw.gateway.registry, "SN").await;
    gw.transport.set_acking(ack);
    if connected {
        gw.transport.connect(&fixture.device.id);
    }
    Harness {
        gw,
        terminal: fixture.terminal,
        device_id: fixture.device.id,
    }
}

impl Harness {
    /// A paid transaction of `amount`, as a provider event would make it.
    async fn pay(&self, order_ref: &str, amount: i64) -> String {
        let now = time::OffsetDateTime::now_utc();
        let t = self
            .gw
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
            .gw
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
                self.gw.gateway.payments.rules(),
            )
            .await
            .unwrap();
        // As the commit loop does: the committed announcement is handed to the relay.
        let PaymentOutcome::Applied { delivery, .. } = outcome else {
            panic!("expected an applied payment, got {outcome:?}");
        };
        self.gw
            .gateway
            .delivery
            .handover()
            .hand_over(delivery.map(|d| *d));
        t.id
    }

    async fn announcement(&self, transaction_id: &str) -> Announcement {
        self.gw
            .store
            .transaction_announcements(transaction_id)
            .await
            .unwrap()
            .remove(0)
    }

    /// Waits (bounded, [`SETTLE`]) until the transaction's announcement is in `status`.
    async fn until_status(&self, transaction_id: &str, status: AnnouncementStatus) -> Announcement {
        eventually_within(
            &format!("announcement became {status:?}"),
            SETTLE,
            || async move {
                let a = self.announcement(transaction_id).await;
                if a.status == status {
                    Ok(Some(a))
                } else {
                    Err(a)
                }
            },
        )
        .await
    }

    async fn connect(&self) {
        self.gw.transport.connect(&self.device_id);
        self.gw
            .presence
            .send(Presence::Connected {
                device_id: self.device_id.clone(),
            })
            .await
            .unwrap();
    }

    /// Every announcement the device was given: (transaction id, amount, sequence).
    fn received(&self) -> Vec<(String, i64, u64)> {
        self.gw
            .transport
            .downlinks()
            .into_iter()
            .map(|(_, downlink)| match downlink.body {
                DownlinkBody::Announce(a) => (a.transaction_id, a.amount, a.sequence),
                other => panic!("expected an announcement, got {other:?}"),
            })
            .collect()
    }
}

/// A generic callback with `body`, signed now with `secret`.
fn signed_generic(secret: &str, body: String) -> gema_gateway::payments::RawRequest {
    use gema_gateway::payments::RawRequest;
    use gema_gateway::payments::providers::{
        GENERIC_SIGNATURE_HEADER, GENERIC_TIMESTAMP_HEADER, generic_signature,
    };
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    RawRequest {
        headers: vec![
            (GENERIC_TIMESTAMP_HEADER.into(), timestamp.clone()),
            (
                GENERIC_SIGNATURE_HEADER.into(),
                generic_signature(secret, &timestamp, body.as_bytes()),
            ),
        ],
        body: body.into_bytes(),
    }
}

fn fast() -> DeliverySettings {
    DeliverySettings {
        ack_timeout: Duration::from_millis(200),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
        max_attempts: 3,
        ..DeliverySettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_device_gets_the_announcement_and_acks_it() {
    let h = harness(fast(), true, true).await;
    let id = h.pay("ORD-1", 25_000).await;
    let a = h.until_status(&id, AnnouncementStatus::Delivered).await;
    assert_eq!(a.attempts, 1);
    assert!(a.delivered_at.is_some());
    assert_eq!(h.received(), vec![(id, 25_000, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

/// The device spoke an announcement and acked it, but the connection died before its
/// client got the PUBACK; right after reconnecting, the client re-sends that ack. The
/// replay waits `replay_grace` for such acks, so the device is not given the announcement
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_resent_right_after_a_reconnect_comes_before_the_replay() {
    use gema_firmware_protocol::message::{Ack, AckStatus, Envelope, Uplink, UplinkBody};
    use gema_firmware_protocol::topic::{MessageKind, topic};
    use gema_firmware_protocol::{Encoding, encode};
    use gema_gateway::transport::UplinkMessage;

    let settings = DeliverySettings {
        replay_grace: LONG_GRACE,
        ..fast()
    };
    let h = harness(settings, true, false).await;
    let id = h.pay("ORD-LATE-ACK", 4_000).await;
    let sent_msg_id = sent_once(&h).await;
    h.gw.transport.go_offline(&h.device_id);
    h.gw.presence
        .send(Presence::Disconnected {
            device_id: h.device_id.clone(),
            reason: "connection_lost".into(),
        })
        .await
        .unwrap();
    // The attempt ends unanswered (as it does with a daemon that died): the announcement
    // waits, pending, for the device.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        h.announcement(&id).await.status,
        AnnouncementStatus::Pending
    );

    h.connect().await;
    // The client's re-sent ack, a moment after CONNACK.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ack = Uplink {
        envelope: Envelope::new("up-late", 0),
        body: UplinkBody::Ack(Ack {
            acked_msg_id: sent_msg_id.clone(),
            transaction_id: Some(id.clone()),
            status: AckStatus::Spoken,
        }),
    };
    h.gw.uplinks
        .send(UplinkMessage {
            device_id: h.device_id.clone(),
            topic: topic(&h.device_id, MessageKind::Ack, Encoding::Json),
            payload: encode(&ack, Encoding::Json),
            settle: Default::default(),
        })
        .await
        .unwrap();
    h.until_status(&id, AnnouncementStatus::Delivered).await;
    tokio::time::sleep(LONG_GRACE + Duration::from_millis(300)).await;
    assert_eq!(h.received().len(), 1, "not given again: {:?}", h.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_is_retried_then_marked_failed() {
    let h = harness(fast(), true, false).await;
    let id = h.pay("ORD-SILENT", 7_000).await;
    let a = h.until_status(&id, AnnouncementStatus::Failed).await;
    assert_eq!(a.attempts, 3);
    assert!(a.last_error.unwrap().contains("gave up after 3 attempts"));
    assert_eq!(h.received().len(), 3, "one send per attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_reconnect_comes_on_its_backoff_not_the_offline_recheck() {
    // Offline at payment time: the announcement is deferred to the 30 s offline recheck.
    let h = harness(fast(), false, false).await;
    let id = h.pay("ORD-BACK", 4_000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Back, but the first attempt goes unacknowledged: a retry is due after 20 ms.
    h.connect().await;
    // After the replay's grace (500 ms); well before the offline recheck all the same.
    eventually_within("the first attempt", Duration::from_secs(10), || async {
        Ok::<_, ()>((!h.received().is_empty()).then_some(()))
    })
    .await;
    h.gw.transport.set_acking(true);
    // Delivered by the retry (until_status gives up after SETTLE: with the wait above at
    // most 25 s after the payment, still before the 30 s offline recheck).
    let a = h.until_status(&id, AnnouncementStatus::Delivered).await;
    // Two attempts, or three if this test was slow to turn acks on; one send each.
    assert!(a.attempts >= 2, "{a:?}");
    assert_eq!(h.received().len() as i64, a.attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_callback_through_the_built_gateway_is_announced_and_acked() {
    // Ingest → commit loop → hand-over → relay → transport → ack → result written by the
    // commit loop: every channel Gateway::build makes, end to end.
    use gema_gateway::payments::TransactionInput;
    use gema_gateway::payments::providers::Provider;
    const SECRET: &str = "generic-secret";
    let payments = PaymentSettings {
        generic_secret: Some(gema_gateway::credentials::SecretString::new(SECRET.into())),
        ..PaymentSettings::default()
    };
    let h = harness_with(fast(), payments, true, true).await;
    let payments = &h.gw.gateway.payments;
    let t = payments
        .create_transaction(TransactionInput {
            terminal_id: h.terminal.id.clone(),
            order_ref: "ORD-WIRED".into(),
            amount: 12_000,
            expires_in_secs: None,
        })
        .await
        .unwrap();
    let body = serde_json::json!({
        "transaction_id": "bk-wired", "order_ref": "ORD-WIRED", "amount": 12000, "status": "paid"
    })
    .to_string();
    let outcome = payments
        .ingest(Provider::Generic, signed_generic(SECRET, body))
        .await
        .unwrap();
    assert!(
        matches!(outcome, PaymentOutcome::Applied { .. }),
        "{outcome:?}"
    );
    let a = h.until_status(&t.id, AnnouncementStatus::Delivered).await;
    assert_eq!(a.attempts, 1);
    assert_eq!(h.received(), vec![(t.id, 12_000, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_commit_loops_every_callback_is_applied_once_and_sequenced_once() {
    use gema_gateway::payments::TransactionInput;
    use gema_gateway::payments::providers::Provider;
    const SECRET: &str = "generic-secret";
    const ORDERS: usize = 12;
    let payments = PaymentSettings {
        generic_secret: Some(gema_gateway::credentials::SecretString::new(SECRET.into())),
        commit_loops: 4,
        // Every order to the next loop, so that the four work side by side.
        commit_spill: 0,
        ..PaymentSettings::default()
    };
    let h = harness_with(fast(), payments, true, true).await;
    let payments = &h.gw.gateway.payments;
    let mut transactions = Vec::new();
    for n in 0..ORDERS {
        let t = payments
            .create_transaction(TransactionInput {
                terminal_id: h.terminal.id.clone(),
                order_ref: format!("ORD-LOOPS-{n}"),
                amount: 1_000,
                expires_in_secs: None,
            })
            .await
            .unwrap();
        transactions.push(t.id);
    }
    let callback = |n: usize, status: &str| {
        let body = serde_json::json!({
            "transaction_id": format!("bk-loops-{n}"), "order_ref": format!("ORD-LOOPS-{n}"),
            "amount": 1000, "status": status
        })
        .to_string();
        signed_generic(SECRET, body)
    };
    // Each order paid twice at once (a provider's retry), all orders together.
    let mut calls = tokio::task::JoinSet::new();
    for n in (0..ORDERS).flat_map(|n| [n, n]) {
        let (payments, request) = (payments.clone(), callback(n, "paid"));
        calls.spawn(async move { payments.ingest(Provider::Generic, request).await });
    }
    let outcomes = calls.join_all().await;
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(PaymentOutcome::Applied { .. })))
        .count();
    let duplicates = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(PaymentOutcome::Duplicate { .. })))
        .count();
    assert_eq!((applied, duplicates), (ORDERS, ORDERS), "{outcomes:?}");
    for id in &transactions {
        h.until_status(id, AnnouncementStatus::Delivered).await;
    }
    let mut sequences: Vec<u64> = h.received().into_iter().map(|(_, _, seq)| seq).collect();
    sequences.sort_unstable();
    let expected: Vec<u64> = (1..=ORDERS as u64).collect();
    assert_eq!(
        sequences, expected,
        "one announcement per order, each its own number"
    );
}

/// The device's `ack` of the harness's one announcement (as its client publishes it).
fn ack_uplink(
    h: &Harness,
    acked_msg_id: &str,
    transaction_id: &str,
) -> (
    gema_gateway::transport::UplinkMessage,
    tokio::sync::oneshot::Receiver<()>,
) {
    use gema_firmware_protocol::message::{Ack, AckStatus, Envelope, Uplink, UplinkBody};
    use gema_firmware_protocol::topic::{MessageKind, topic};
    use gema_firmware_protocol::{Encoding, encode};
    use gema_gateway::transport::{Settle, UplinkMessage};

    let ack = Uplink {
        envelope: Envelope::new(format!("ack-{acked_msg_id}"), 0),
        body: UplinkBody::Ack(Ack {
            acked_msg_id: acked_msg_id.into(),
            transaction_id: Some(transaction_id.into()),
            status: AckStatus::Spoken,
        }),
    };
    let (settle, settled) = Settle::pair();
    let message = UplinkMessage {
        device_id: h.device_id.clone(),
        topic: topic(&h.device_id, MessageKind::Ack, Encoding::Json),
        payload: encode(&ack, Encoding::Json),
        settle,
    };
    (message, settled)
}

/// Another writer holding the database's write lock (SQLite, WAL: readers go on).
fn hold_write_lock(h: &Harness) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(h.gw.dir().join("gema.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    db
}

/// Waits for the announcement's one send; its downlink's message id.
async fn sent_once(h: &Harness) -> String {
    eventually_within("sent once", SETTLE, || async {
        if h.received().len() == 1 {
            Ok(Some(()))
        } else {
            Err(h.received().len())
        }
    })
    .await;
    h.gw.transport.downlinks().remove(0).1.envelope.msg_id
}

/// The attempt waits for the device's `ack` long enough for these tests.
fn patient() -> DeliverySettings {
    DeliverySettings {
        ack_timeout: Duration::from_secs(30),
        ..DeliverySettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_ack_is_acknowledged_to_the_device_only_after_the_commit_recording_it() {
    let h = harness(patient(), true, false).await;
    let id = h.pay("ORD-SETTLE", 7_000).await;
    let msg_id = sent_once(&h).await;

    let lock = hold_write_lock(&h);
    let (ack, mut settled) = ack_uplink(&h, &msg_id, &id);
    h.gw.uplinks.send(ack).await.unwrap();
    // The result cannot commit while another writer holds the lock: no PUBACK yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        settled.try_recv(),
        Err(tokio::sync::oneshot::error::TryRecvError::Empty),
        "the ack was settled before its result was committed"
    );
    assert_eq!(
        h.announcement(&id).await.status,
        AnnouncementStatus::Pending
    );

    lock.execute_batch("COMMIT").unwrap();
    tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .expect("settled once committed")
        .expect("settled, not dropped");
    assert_eq!(
        h.announcement(&id).await.status,
        AnnouncementStatus::Delivered
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_whose_write_fails_is_not_acknowledged_and_its_resend_settles_it_without_a_replay() {
    let settings = DeliverySettings {
        replay_grace: LONG_GRACE,
        ..patient()
    };
    let h = harness(settings, true, false).await;
    let id = h.pay("ORD-RESEND", 8_000).await;
    let msg_id = sent_once(&h).await;

    let lock = hold_write_lock(&h);
    let (ack, settled) = ack_uplink(&h, &msg_id, &id);
    h.gw.uplinks.send(ack).await.unwrap();
    // The write fails (the lock outlasts the store's busy timeout): the handle is dropped
    // unsettled, so the broker sends no PUBACK and closes the connection.
    let outcome = tokio::time::timeout(Duration::from_secs(20), settled)
        .await
        .expect("the write ends, one way or the other");
    assert!(outcome.is_err(), "a failed write must not settle the ack");
    h.gw.transport.go_offline(&h.device_id);
    h.gw.presence
        .send(Presence::Disconnected {
            device_id: h.device_id.clone(),
            reason: "uplink_unsettled".into(),
        })
        .await
        .unwrap();
    lock.execute_batch("ROLLBACK").unwrap();
    assert_ne!(
        h.announcement(&id).await.status,
        AnnouncementStatus::Delivered
    );

    // The device reconnects and its client re-sends the unacknowledged ack first.
    h.connect().await;
    let (resent, settled) = ack_uplink(&h, &msg_id, &id);
    h.gw.uplinks.send(resent).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .expect("the re-sent ack is settled")
        .expect("settled once recorded");
    h.until_status(&id, AnnouncementStatus::Delivered).await;
    tokio::time::sleep(LONG_GRACE + Duration::from_millis(300)).await;
    assert_eq!(
        h.received().len(),
        1,
        "the announcement was not replayed: {:?}",
        h.received()
    );
}
