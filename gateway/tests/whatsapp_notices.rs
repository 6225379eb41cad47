//! The notifications Gema queues by itself, driven through the services on a real SQLite
//! file: each trigger queues one outbox row for the right number with the right values,
//! and repeating the trigger (a sweep run again, an unpay and pay, repeated heartbeats)
//! queues nothing more. Nothing is sent: the sender worker does not run.

use std::sync::Arc;
use std::time::Duration;

use gema_gateway::billing::{CustomerInput, PackageInput, PayPage};
use gema_gateway::clock::ManualClock;
use gema_gateway::settlement::GenerateInput;
use gema_gateway::testing::{RecordingTransport, STATIC_QRIS, temp_store};
use gema_gateway::whatsapp::{CloudNumber, Route, WhatsAppSettings};
use gema_gateway::{Gateway, GatewayDeps, GatewaySettings};
use gema_store::billing::{
    Customer, CustomerStatus, Invoice, InvoiceFilter, NewInvoice, PaymentMethod,
};
use gema_store::testing::{
    approved_terminal, approved_terminal_with_device, paid_event, paid_transaction,
    payable_merchant,
};
use gema_store::{
    BatchFilter, NewBillingSettings, NewHeartbeat, NewTransaction, PageRequest, PresenceRecord,
    Store, TerminalPatch, WaMerchantSettings, WaMessage, WaMessageFilter,
};
use time::macros::datetime;
use time::{OffsetDateTime, PrimitiveDateTime};

struct Env {
    gateway: Gateway,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

/// Milliseconds of a wall-clock time in Asia/Jakarta.
fn jakarta_ms(at: PrimitiveDateTime) -> i64 {
    let utc = at.assume_offset(gema_gateway::settlement::JAKARTA);
    i64::try_from(utc.unix_timestamp_nanos() / 1_000_000).unwrap()
}

fn real_now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap()
}

/// A gateway built like the daemon's (not running: the tests call the sweeps), whose
/// WhatsApp has an operator number that nothing sends through.
async fn env(now_ms: i64, whatsapp: WhatsAppSettings) -> Env {
    let (store, dir) = temp_store().await;
    let clock = Arc::new(ManualClock::new(now_ms));
    let gateway = Gateway::build(GatewayDeps {
        store: store.clone(),
        transport: Arc::new(RecordingTransport::new()),
        clock: clock.clone(),
        settings: GatewaySettings {
            whatsapp: WhatsAppSettings {
                operator: Some(Route::Cloud(CloudNumber {
                    phone_number_id: "1".into(),
                    access_token: "t".into(),
                })),
                api_base_url: "http://127.0.0.1:9".into(),
                public_url: "https://bayar.example.id/".into(),
                ..whatsapp
            },
            ..GatewaySettings::default()
        },
    });
    Env {
        gateway,
        store,
        clock,
        _dir: dir,
    }
}

impl Env {
    /// Gives the terminal a static QRIS: its merchant takes QRIS payments for invoices.
    async fn take_qris(&self, terminal_id: &str) {
        self.store
            .update_terminal(
                terminal_id,
                TerminalPatch {
                    static_qris: Some(Some(STATIC_QRIS.into())),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }

    async fn messages(&self, kind: &str) -> Vec<WaMessage> {
        self.store
            .list_wa_messages(
                &WaMessageFilter {
                    kind: Some(kind.into()),
                    ..Default::default()
                },
                &PageRequest::first(100),
            )
            .await
            .unwrap()
            .items
    }

    async fn all_messages(&self) -> Vec<WaMessage> {
        self.store
            .list_wa_messages(&WaMessageFilter::default(), &PageRequest::first(100))
            .await
            .unwrap()
            .items
    }

    /// A package at `price` and a customer of `merchant_id` billed on `billing_day`.
    async fn customer(
        &self,
        merchant_id: &str,
        name: &str,
        phone: &str,
        billing_day: i64,
        price: i64,
    ) -> Customer {
        let package = self
            .gateway
            .billing
            .create_package(PackageInput {
                name: format!("Paket {name}"),
                speed: Some("20 Mbps".into()),
                description: None,
                price,
                active: None,
            })
            .await
            .unwrap();
        self.gateway
            .billing
            .create_customer(
                CustomerInput {
                    merchant_id: merchant_id.into(),
                    package_id: package.id,
                    name: name.into(),
                    phone: phone.into(),
                    nik: None,
                    address: None,
                    billing_day,
                    discount: None,
                    register_date: Some("2026-01-01".into()),
                    notes: None,
                },
                "admin",
            )
            .await
            .unwrap()
    }

    /// An unpaid invoice of `customer` for `period`, due on `due_date`.
    async fn invoice(&self, customer: &Customer, period: &str, due_date: &str, amount: i64) {
        let created = self
            .store
            .insert_invoices(vec![NewInvoice {
                customer_id: customer.id.clone(),
                merchant_id: customer.merchant_id.clone(),
                period: period.into(),
                package_id: customer.package_id.clone(),
                package_name: "Paket 20 Mbps".into(),
                amount,
                discount: 0,
                due_date: due_date.into(),
                receipt_token: format!("tok{}{}", customer.id, period.replace('-', "")),
            }])
            .await
            .unwrap();
        assert_eq!(created, 1);
    }

    async fn business(&self, merchant_id: &str, name: &str, bank: &str, auto_isolate: Option<i64>) {
        self.store
            .put_billing_settings(
                merchant_id,
                NewBillingSettings {
                    business_name: Some(name.into()),
                    bank_details: Some(bank.into()),
                    receipt_show_nik: false,
                    receipt_show_area: false,
                    receipt_show_package: true,
                    receipt_show_discount: false,
                    receipt_show_method: true,
                    auto_isolate_days: auto_isolate,
                    isolation_webhook_url: None,
                    isolation_webhook_secret: Default::default(),
                },
            )
            .await
            .unwrap();
    }

    async fn wa_settings(
        &self,
        merchant_id: &str,
        contact: Option<&str>,
        summary: bool,
        alerts: bool,
    ) {
        self.gateway
            .whatsapp
            .put_merchant_settings(WaMerchantSettings {
                merchant_id: merchant_id.into(),
                contact_phone: contact.map(Into::into),
                daily_summary: summary,
                device_alerts: alerts,
                open_minute: 8 * 60,
                close_minute: 21 * 60,
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_customer_gets_one_reminder_the_day_before_listing_every_invoice_due() {
    let env = env(
        jakarta_ms(datetime!(2026-12-04 08:00)),
        WhatsAppSettings {
            reminder_time: (9, 0),
            ..WhatsAppSettings::default()
        },
    )
    .await;
    let t = approved_terminal(&*env.store, "net").await;
    env.business(&t.merchant.id, "FiberNode", "BCA 123 a.n. Budi", None)
        .await;
    let sari = env
        .customer(&t.merchant.id, "Sari", "0812 1111 0001", 5, 100_000)
        .await;
    env.invoice(&sari, "2026-12", "2026-12-05", 50_000).await;
    env.invoice(&sari, "2027-01", "2026-12-05", 100_000).await;
    let stopped = env
        .customer(&t.merchant.id, "Joko", "081211110002", 5, 100_000)
        .await;
    env.invoice(&stopped, "2027-01", "2026-12-05", 100_000)
        .await;
    env.gateway
        .billing
        .set_customer_status(&stopped.id, CustomerStatus::Stopped, None, "admin")
        .await
        .unwrap();
    let later = env
        .customer(&t.merchant.id, "Tini", "081211110003", 6, 100_000)
        .await;
    env.invoice(&later, "2027-01", "2026-12-06", 100_000).await;

    // Before the reminder time: nothing.
    assert_eq!(env.gateway.whatsapp.queue_reminders().await.unwrap(), 0);
    env.clock.set_ms(jakarta_ms(datetime!(2026-12-04 09:30)));
    assert_eq!(env.gateway.whatsapp.queue_reminders().await.unwrap(), 1);
    // Every later sweep that day (and the whole sweep) adds nothing.
    assert_eq!(env.gateway.whatsapp.queue_reminders().await.unwrap(), 0);
    env.gateway.whatsapp.notice_sweep().await.unwrap();

    let reminders = env.messages("reminder").await;
    assert_eq!(reminders.len(), 1, "{reminders:#?}");
    let reminder = &reminders[0];
    assert_eq!(reminder.recipient, "6281211110001");
    assert!(reminder.bulk);
    assert_eq!(
        reminder.dedupe_key.as_deref(),
        Some(format!("reminder:{}:2026-12-05", sari.id).as_str())
    );
    for expected in [
        "Halo Sari",
        "FiberNode",
        "Desember 2026 (Rp 50.000), Januari 2027 (Rp 100.000)",
        "sebesar Rp 150.000",
        "jatuh tempo 5 Desember 2026",
        "BCA 123 a.n. Budi",
    ] {
        assert!(
            reminder.body.contains(expected),
            "{expected}: {}",
            reminder.body
        );
    }
    assert!(
        !reminder.body.contains("QRIS"),
        "no terminal with a static QRIS, no QRIS link: {}",
        reminder.body
    );
    let invoices = env
        .store
        .list_invoices(
            &InvoiceFilter {
                customer_id: Some(sari.id.clone()),
                ..Default::default()
            },
            &PageRequest::first(10),
        )
        .await
        .unwrap()
        .items;
    assert!(invoices.iter().all(|i| i.reminder_queued_at.is_some()));

    // The next day Tini's turn comes; Sari's invoices, due today, are not reminded again.
    // The merchant has set its terminal's static QRIS since: the reminder links the pay page.
    env.take_qris(&t.terminal.id).await;
    env.clock.set_ms(jakarta_ms(datetime!(2026-12-05 09:30)));
    assert_eq!(env.gateway.whatsapp.queue_reminders().await.unwrap(), 1);
    let reminders = env.messages("reminder").await;
    assert_eq!(reminders.len(), 2);
    assert_eq!(reminders[0].recipient, "6281211110003");
    assert!(reminders[0].body.contains("jatuh tempo 6 Desember 2026"));
    let tini_invoice = invoice_of(&env, &later).await;
    let link = format!(
        "Bayar dengan QRIS: https://bayar.example.id/p/{}",
        tini_invoice.receipt_token
    );
    assert!(
        reminders[0].body.contains(&link),
        "{link}: {}",
        reminders[0].body
    );
}

async fn invoice_of(env: &Env, customer: &Customer) -> Invoice {
    env.store
        .list_invoices(
            &InvoiceFilter {
                customer_id: Some(customer.id.clone()),
                ..Default::default()
            },
            &PageRequest::first(10),
        )
        .await
        .unwrap()
        .items
        .remove(0)
}

#[tokio::test]
async fn a_pay_page_shows_one_qris_for_the_invoice_until_it_is_paid() {
    let env = env(
        jakarta_ms(datetime!(2026-12-04 08:00)),
        WhatsAppSettings::default(),
    )
    .await;
    let t = approved_terminal(&*env.store, "pay").await;
    env.business(&t.merchant.id, "FiberNode", "BCA 123 a.n. Budi", None)
        .await;
    let sari = env
        .customer(&t.merchant.id, "Sari", "0812 1111 0001", 5, 100_000)
        .await;
    env.invoice(&sari, "2026-12", "2026-12-05", 75_000).await;
    let invoice = invoice_of(&env, &sari).await;
    let billing = &env.gateway.billing;
    assert_eq!(billing.pay_page("no-such-token").await.unwrap(), None);
    assert_eq!(billing.pay_page("../etc/passwd").await.unwrap(), None);

    // No terminal with a static QRIS: the page shows the bill and the bank details only.
    let Some(PayPage::Unpaid(page)) = billing.pay_page(&invoice.receipt_token).await.unwrap()
    else {
        panic!("an unpaid invoice has a pay page");
    };
    assert_eq!(
        (page.business_name.as_str(), page.customer_name.as_str()),
        ("FiberNode", "Sari")
    );
    assert_eq!(
        (
            page.total.as_str(),
            page.due_date.as_str(),
            page.period.as_str()
        ),
        ("Rp 75.000", "5 Desember 2026", "Desember 2026")
    );
    assert_eq!(page.bank_details.as_deref(), Some("BCA 123 a.n. Budi"));
    assert_eq!(page.qris, None);

    env.take_qris(&t.terminal.id).await;
    let qris = |page: Option<PayPage>| match page {
        Some(PayPage::Unpaid(invoice)) if invoice.qris.is_some() => invoice.qris.unwrap(),
        other => panic!("expected a QRIS, got {other:?}"),
    };
    let first = qris(billing.pay_page(&invoice.receipt_token).await.unwrap());
    let decoded = gema_qris::decode(&first.payload).unwrap();
    assert_eq!(decoded.amount(), Some(75_000));
    // Every visit shows the same code while it is pending.
    let again = qris(billing.pay_page(&invoice.receipt_token).await.unwrap());
    assert_eq!(again, first);
    let issued = || async {
        env.store
            .invoice_events(&invoice.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "qris_issued")
            .map(|e| e.transaction_id.unwrap())
            .collect::<Vec<_>>()
    };
    let transactions = issued().await;
    assert_eq!(transactions.len(), 1);

    // Paid by that QRIS: the page becomes the receipt.
    let order_ref = decoded.reference_label().unwrap().to_owned();
    paid_event(&*env.store, &order_ref, 75_000).await;
    billing.settle_qris(&transactions[0]).await.unwrap();
    assert_eq!(
        billing.pay_page(&invoice.receipt_token).await.unwrap(),
        Some(PayPage::Paid)
    );
    assert_eq!(issued().await.len(), 1, "a paid invoice issues no QRIS");
}

#[tokio::test]
async fn a_missed_reminder_day_is_not_caught_up() {
    let env = env(
        jakarta_ms(datetime!(2026-12-06 09:30)),
        WhatsAppSettings::default(),
    )
    .await;
    let t = approved_terminal(&*env.store, "net").await;
    let tini = env
        .customer(&t.merchant.id, "Tini", "081211110003", 6, 100_000)
        .await;
    // Due today: its reminder day (yesterday) passed while nothing ran.
    env.invoice(&tini, "2027-01", "2026-12-06", 100_000).await;
    env.gateway.whatsapp.notice_sweep().await.unwrap();
    assert!(env.messages("reminder").await.is_empty());
}

#[tokio::test]
async fn a_paid_invoice_gets_one_receipt_even_when_it_is_unpaid_and_paid_again() {
    let env = env(
        jakarta_ms(datetime!(2026-12-04 10:00)),
        WhatsAppSettings::default(),
    )
    .await;
    let t = approved_terminal(&*env.store, "net").await;
    let sari = env
        .customer(&t.merchant.id, "Sari", "081211110001", 5, 100_000)
        .await;
    env.invoice(&sari, "2027-01", "2026-12-05", 100_000).await;
    let invoice = invoice_of(&env, &sari).await;

    let paid = env
        .gateway
        .billing
        .pay(
            &invoice.id,
            invoice.version,
            PaymentMethod::Cash,
            None,
            "kasir",
        )
        .await
        .unwrap();
    let unpaid = env
        .gateway
        .billing
        .unpay(
            &invoice.id,
            paid.invoice.version,
            Some("salah input"),
            "kasir",
        )
        .await
        .unwrap();
    env.gateway
        .billing
        .pay(
            &invoice.id,
            unpaid.version,
            PaymentMethod::Transfer,
            None,
            "kasir",
        )
        .await
        .unwrap();

    let receipts = env.messages("receipt").await;
    assert_eq!(receipts.len(), 1, "{receipts:#?}");
    let receipt = &receipts[0];
    assert_eq!(receipt.recipient, "6281211110001");
    assert_eq!(
        receipt.dedupe_key.as_deref(),
        Some(format!("receipt:{}", invoice.id).as_str())
    );
    for expected in [
        "Terima kasih Sari",
        "Warung net",
        "periode Januari 2027",
        "Rp 100.000",
        "WIB",
        &format!("https://bayar.example.id/r/{}", invoice.receipt_token),
    ] {
        assert!(
            receipt.body.contains(expected),
            "{expected}: {}",
            receipt.body
        );
    }
}

#[tokio::test]
async fn an_invoice_paid_by_qris_gets_one_receipt_however_often_the_payment_is_applied() {
    let env = env(
        jakarta_ms(datetime!(2026-12-04 10:00)),
        WhatsAppSettings::default(),
    )
    .await;
    let t = approved_terminal(&*env.store, "net").await;
    let sari = env
        .customer(&t.merchant.id, "Sari", "081211110001", 5, 100_000)
        .await;
    env.invoice(&sari, "2027-01", "2026-12-05", 100_000).await;
    let invoice = invoice_of(&env, &sari).await;
    let transaction = env
        .store
        .create_invoice_qris(
            &invoice.id,
            NewTransaction {
                terminal_id: t.terminal.id.clone(),
                order_ref: "IV-QRIS-1".into(),
                amount: 100_000,
                expires_at_ms: i64::MAX / 2,
            },
            "kasir",
        )
        .await
        .unwrap();
    paid_event(&*env.store, "IV-QRIS-1", 100_000).await;
    // The wake-up and the sweep's look for missed payments both apply it.
    for _ in 0..3 {
        env.gateway
            .billing
            .settle_qris(&transaction.id)
            .await
            .unwrap();
    }
    let receipts = env.messages("receipt").await;
    assert_eq!(receipts.len(), 1, "{receipts:#?}");
    assert!(
        receipts[0].body.contains(&invoice.receipt_token),
        "{}",
        receipts[0].body
    );
}

#[tokio::test]
async fn each_isolation_is_announced_once_by_hand_or_by_schedule() {
    let env = env(
        jakarta_ms(datetime!(2026-12-10 10:00)),
        WhatsAppSettings::default(),
    )
    .await;
    let t = approved_terminal(&*env.store, "net").await;
    env.business(&t.merchant.id, "FiberNode", "BCA 123", Some(3))
        .await;
    let sari = env
        .customer(&t.merchant.id, "Sari", "081211110001", 5, 100_000)
        .await;
    env.invoice(&sari, "2027-01", "2026-12-05", 100_000).await;
    let paid_up = env
        .customer(&t.merchant.id, "Budi", "081211110009", 5, 100_000)
        .await;

    let billing = &env.gateway.billing;
    billing
        .set_customer_status(&sari.id, CustomerStatus::Isolated, Some("telat"), "admin")
        .await
        .unwrap();
    // The same status again changes nothing and announces nothing.
    billing
        .set_customer_status(&sari.id, CustomerStatus::Isolated, None, "admin")
        .await
        .unwrap();
    let notices = env.messages("isolation").await;
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert_eq!(notices[0].recipient, "6281211110001");
    for expected in ["Halo Sari", "FiberNode", "Januari 2027", "Rp 100.000"] {
        assert!(
            notices[0].body.contains(expected),
            "{expected}: {}",
            notices[0].body
        );
    }
    // Isolated with nothing unpaid: the text would be wrong, so no notice.
    billing
        .set_customer_status(&paid_up.id, CustomerStatus::Isolated, None, "admin")
        .await
        .unwrap();
    assert_eq!(env.messages("isolation").await.len(), 1);

    // Re-activated by hand, then isolated again by the schedule (3 days overdue): a new
    // isolation, a new notice.
    billing
        .set_customer_status(&sari.id, CustomerStatus::Active, None, "admin")
        .await
        .unwrap();
    let today = time::macros::date!(2026 - 12 - 10);
    assert_eq!(billing.auto_isolate(today).await.unwrap(), 1);
    assert_eq!(billing.auto_isolate(today).await.unwrap(), 0);
    let notices = env.messages("isolation").await;
    assert_eq!(notices.len(), 2, "{notices:#?}");
    assert_ne!(notices[0].dedupe_key, notices[1].dedupe_key);
    assert!(
        notices
            .iter()
            .all(|n| n.dedupe_key.as_deref().unwrap().starts_with("isolation:"))
    );
}

/// A paid QRIS transaction of `amount` at `terminal_id`.
/// The provider's "paid" for the transaction `order_ref`.
#[tokio::test]
async fn a_paid_batch_tells_the_merchant_once() {
    // Ledger ids carry the real time, so the clock is the real now.
    let env = env(real_now_ms(), WhatsAppSettings::default()).await;
    let mut merchants = Vec::new();
    for tag in ["kontak", "telepon", "tanpa"] {
        let t = payable_merchant(&*env.store, tag, &format!("PO-{tag}")).await;
        merchants.push(t.merchant);
    }
    // One has a WhatsApp contact, one only its registered phone, one neither.
    env.wa_settings(&merchants[0].id, Some("081299990001"), false, false)
        .await;
    env.store
        .update_merchant(
            &merchants[1].id,
            gema_store::MerchantPatch {
                phone: Some(Some("+62 812 9999 0002".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let settlement = &env.gateway.settlement;
    settlement
        .generate(GenerateInput::default(), "finance")
        .await
        .unwrap();
    let batches = env
        .store
        .list_settlement_batches(&BatchFilter::default(), &PageRequest::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(batches.len(), 3);
    for batch in &batches {
        settlement
            .mark_paid(&batch.id, "TRF-001", None, "finance")
            .await
            .unwrap();
        // Marked paid again with the same reference: no second notice.
        settlement
            .mark_paid(&batch.id, "TRF-001", None, "finance")
            .await
            .unwrap();
    }
    let mut payouts = env.messages("payout").await;
    payouts.sort_by(|a, b| a.recipient.cmp(&b.recipient));
    assert_eq!(payouts.len(), 2, "{payouts:#?}");
    assert_eq!(payouts[0].recipient, "6281299990001");
    assert_eq!(payouts[1].recipient, "6281299990002");
    let batch = batches
        .iter()
        .find(|b| b.merchant_id == merchants[0].id)
        .unwrap();
    assert_eq!(
        payouts[0].dedupe_key.as_deref(),
        Some(format!("payout:{}", batch.id).as_str())
    );
    for expected in [
        "Halo Warung kontak",
        batch.id.as_str(),
        &gema_gateway::billing::receipts::rupiah(batch.net_amount()),
        "Referensi: TRF-001",
    ] {
        assert!(
            payouts[0].body.contains(expected),
            "{expected}: {}",
            payouts[0].body
        );
    }
}

fn heartbeat(device_id: &str, at_ms: i64, battery: i64, charging: bool) -> NewHeartbeat {
    NewHeartbeat {
        device_id: device_id.into(),
        received_at_ms: at_ms,
        battery_pct: Some(battery),
        charging,
        signal_dbm: None,
        network: "wifi".into(),
        firmware_version: "1.0.0".into(),
        audio_pack_version: "1".into(),
        uptime_s: 10,
        last_transaction_id: None,
        config_version: 0,
    }
}

async fn presence(store: &dyn Store, device_id: &str, connected: bool, at_ms: i64) {
    store
        .record_presences(&[PresenceRecord {
            device_id: device_id.into(),
            connected,
            reason: (!connected).then(|| "keepalive timeout".into()),
            changed_at_ms: at_ms,
        }])
        .await
        .unwrap();
}

#[tokio::test]
async fn an_offline_soundbox_is_alerted_once_and_its_return_with_the_downtime() {
    let start = jakarta_ms(datetime!(2026-12-04 10:00));
    let env = env(start, WhatsAppSettings::default()).await;
    let (t, device) = approved_terminal_with_device(&*env.store, "SB0001").await;
    env.wa_settings(&t.merchant.id, Some("081299990001"), false, true)
        .await;
    let whatsapp = &env.gateway.whatsapp;

    presence(&*env.store, &device.id, false, start).await;
    // Ten minutes: not yet (the default threshold is fifteen).
    env.clock.advance(Duration::from_secs(10 * 60));
    assert_eq!(whatsapp.queue_device_alerts().await.unwrap(), 0);
    env.clock.advance(Duration::from_secs(6 * 60));
    assert_eq!(whatsapp.queue_device_alerts().await.unwrap(), 1);
    env.clock.advance(Duration::from_secs(30));
    assert_eq!(whatsapp.queue_device_alerts().await.unwrap(), 0);
    let offline = env.messages("device_offline").await;
    assert_eq!(offline.len(), 1);
    assert_eq!(offline[0].recipient, "6281299990001");
    assert!(offline[0].body.contains("SB0001"), "{}", offline[0].body);
    assert!(
        offline[0].body.contains("4 Desember 2026 10:00 WIB"),
        "{}",
        offline[0].body
    );

    // Back two hours and five minutes after it left.
    presence(&*env.store, &device.id, true, start + (2 * 60 + 5) * 60_000).await;
    env.clock.set_ms(start + (2 * 60 + 6) * 60_000);
    assert_eq!(whatsapp.queue_device_alerts().await.unwrap(), 1);
    assert_eq!(whatsapp.queue_device_alerts().await.unwrap(), 0);
    let online = env.messages("device_online").await;
    assert_eq!(online.len(), 1);
    assert!(
        online[0].body.contains("2 jam 5 menit"),
        "{}",
        online[0].body
    );

    // A second outage is a new incident: one more alert.
    presence(&*env.store, &device.id, false, start + 3 * 3_600_000).await;
    env.clock.set_ms(start + 4 * 3_600_000);
    assert_eq!(whatsapp.queue_device_alerts().await.unwrap(), 1);
    assert_eq!(env.messages("device_offline").await.len(), 2);
}

#[tokio::test]
async fn an_offline_soundbox_outside_opening_hours_is_not_alerted_until_opening() {
    let start = jakarta_ms(datetime!(2026-12-04 21:30));
    let env = env(start, WhatsAppSettings::default()).await;
    let (t, device) = approved_terminal_with_device(&*env.store, "SB0002").await;
    env.wa_settings(&t.merchant.id, Some("081299990001"), false, true)
        .await;
    presence(&*env.store, &device.id, false, start).await;
    env.clock.set_ms(jakarta_ms(datetime!(2026-12-04 23:30)));
    assert_eq!(env.gateway.whatsapp.queue_device_alerts().await.unwrap(), 0);
    env.clock.set_ms(jakarta_ms(datetime!(2026-12-05 07:59)));
    assert_eq!(env.gateway.whatsapp.queue_device_alerts().await.unwrap(), 0);
    assert!(env.messages("device_offline").await.is_empty());
    // Opening time: it is still offline.
    env.clock.set_ms(jakarta_ms(datetime!(2026-12-05 08:00)));
    assert_eq!(env.gateway.whatsapp.queue_device_alerts().await.unwrap(), 1);
}

#[tokio::test]
async fn a_low_battery_is_alerted_once_until_it_is_charged() {
    let start = jakarta_ms(datetime!(2026-12-04 10:00));
    let env = env(start, WhatsAppSettings::default()).await;
    let (t, device) = approved_terminal_with_device(&*env.store, "SB0003").await;
    env.wa_settings(&t.merchant.id, Some("081299990001"), false, true)
        .await;
    // A merchant without device alerts: its soundbox is not watched.
    let (_, quiet) = approved_terminal_with_device(&*env.store, "SB0004").await;
    let whatsapp = &env.gateway.whatsapp;
    presence(&*env.store, &device.id, true, start).await;

    for (minute, battery) in [(0, 12), (1, 11), (2, 9)] {
        env.store
            .record_heartbeat(
                heartbeat(&device.id, start + minute * 60_000, battery, false),
                10,
            )
            .await
            .unwrap();
        env.store
            .record_heartbeat(
                heartbeat(&quiet.id, start + minute * 60_000, battery, false),
                10,
            )
            .await
            .unwrap();
        whatsapp.queue_device_alerts().await.unwrap();
    }
    let low = env.messages("battery_low").await;
    assert_eq!(low.len(), 1, "{low:#?}");
    assert!(
        low[0].body.contains("SB0003") && low[0].body.contains("12%"),
        "{}",
        low[0].body
    );

    // 20% is above the alert but below the recovery threshold: nothing either way.
    env.store
        .record_heartbeat(heartbeat(&device.id, start + 3 * 60_000, 20, false), 10)
        .await
        .unwrap();
    assert_eq!(whatsapp.queue_device_alerts().await.unwrap(), 0);
    // Plugged in: recovered.
    env.store
        .record_heartbeat(heartbeat(&device.id, start + 4 * 60_000, 21, true), 10)
        .await
        .unwrap();
    assert_eq!(whatsapp.queue_device_alerts().await.unwrap(), 1);
    assert_eq!(whatsapp.queue_device_alerts().await.unwrap(), 0);
    let ok = env.messages("battery_ok").await;
    assert_eq!(ok.len(), 1);
    assert!(ok[0].body.contains("diisi daya (21%)"), "{}", ok[0].body);
    assert_eq!(env.all_messages().await.len(), 2);
}

#[tokio::test]
async fn merchants_that_want_it_get_one_summary_of_the_day() {
    // Payments are stamped with the real time: the clock is the real now, and the
    // summary time midnight, so it has passed.
    let env = env(
        real_now_ms(),
        WhatsAppSettings {
            summary_time: (0, 0),
            ..WhatsAppSettings::default()
        },
    )
    .await;
    let busy = approved_terminal(&*env.store, "ramai").await;
    let quiet = approved_terminal(&*env.store, "sepi").await;
    let not_asked = approved_terminal(&*env.store, "diam").await;
    paid_transaction(&*env.store, &busy.terminal.id, "DS-1", 100_000).await;
    paid_transaction(&*env.store, &busy.terminal.id, "DS-2", 50_000).await;
    paid_transaction(&*env.store, &not_asked.terminal.id, "DS-3", 10_000).await;
    env.wa_settings(&busy.merchant.id, Some("081299990001"), true, false)
        .await;
    env.wa_settings(&quiet.merchant.id, Some("081299990002"), true, false)
        .await;
    env.wa_settings(&not_asked.merchant.id, Some("081299990003"), false, false)
        .await;

    assert_eq!(
        env.gateway.whatsapp.queue_daily_summaries().await.unwrap(),
        2
    );
    assert_eq!(
        env.gateway.whatsapp.queue_daily_summaries().await.unwrap(),
        0
    );
    env.gateway.whatsapp.notice_sweep().await.unwrap();
    let mut summaries = env.messages("daily_summary").await;
    summaries.sort_by(|a, b| a.recipient.cmp(&b.recipient));
    assert_eq!(summaries.len(), 2, "{summaries:#?}");
    assert_eq!(summaries[0].recipient, "6281299990001");
    assert!(
        summaries[0].body.contains("2 pembayaran") && summaries[0].body.contains("Rp 150.000"),
        "{}",
        summaries[0].body
    );
    assert!(
        summaries[1].body.contains("0 pembayaran") && summaries[1].body.contains("Rp 0"),
        "{}",
        summaries[1].body
    );
    let today = OffsetDateTime::now_utc()
        .to_offset(gema_gateway::settlement::JAKARTA)
        .date();
    assert_eq!(
        summaries[0].dedupe_key.as_deref(),
        Some(
            format!(
                "summary:{}:{}",
                busy.merchant.id,
                gema_gateway::billing::iso_date(today)
            )
            .as_str()
        )
    );
}
