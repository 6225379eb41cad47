//! Payment behaviours every backend must show: dedupe, state rules, ledger, announcements.

use std::sync::Arc;

use gema_store::testing::{ApprovedTerminal, approved_terminal_with_device};
use gema_store::*;
use time::OffsetDateTime;

/// The payment rules every test applies: the one reference copy, shared with the gateway's
/// tests.
pub use gema_store::testing::ReferenceRules as Rules;

pub(crate) fn now_ms() -> i64 {
    let now = OffsetDateTime::now_utc();
    now.unix_timestamp() * 1000 + i64::from(now.millisecond())
}

pub(crate) fn inbox() -> InboxEntry {
    InboxEntry {
        provider: "midtrans".into(),
        received_at: OffsetDateTime::now_utc(),
        headers: "{}".into(),
        body: b"{\"raw\":true}".to_vec(),
    }
}

pub(crate) fn event(order_ref: &str, status: &str, amount: i64) -> IncomingEvent {
    IncomingEvent {
        provider: "midtrans".into(),
        provider_transaction_id: format!("mt-{order_ref}"),
        order_ref: order_ref.into(),
        amount,
        status: status.into(),
        raw_status: status.into(),
        issuer: Some("gopay".into()),
        paid_at: None,
        is_test: false,
    }
}

pub(crate) async fn order(
    store: &dyn Store,
    terminal: &Terminal,
    order_ref: &str,
    amount: i64,
) -> Transaction {
    store
        .create_transaction(NewTransaction {
            terminal_id: terminal.id.clone(),
            order_ref: order_ref.into(),
            amount,
            expires_at_ms: now_ms() + 600_000,
        })
        .await
        .unwrap()
}

async fn ledger(store: &dyn Store, transaction_id: &str) -> Vec<LedgerEntry> {
    store
        .list_ledger_entries(
            &LedgerFilter {
                transaction_id: Some(transaction_id.into()),
                merchant_id: None,
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap()
        .items
}

pub async fn a_paid_event_posts_the_ledger_and_queues_one_announcement(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, device) =
        approved_terminal_with_device(&*store, "SN-P1").await;
    let trx = order(&*store, &terminal, "ORD-1", 25_000).await;
    let outcome = store
        .apply_payment_event(inbox(), event("ORD-1", "paid", 25_000), &Rules)
        .await
        .unwrap();
    let PaymentOutcome::Applied {
        transaction_id,
        status,
        announcement_id: Some(announcement_id),
        delivery: Some(delivery),
    } = outcome
    else {
        panic!("expected an applied payment with an announcement, got {outcome:?}");
    };
    assert_eq!(transaction_id, trx.id);
    assert_eq!(status, TransactionStatus::Paid);

    let paid = store.get_transaction(&trx.id).await.unwrap();
    assert_eq!(paid.status, TransactionStatus::Paid);
    assert_eq!(paid.issuer.as_deref(), Some("gopay"));
    assert!(paid.paid_at.is_some());
    assert!(!paid.paid_after_expiry);

    let entries = ledger(&*store, &trx.id).await;
    let amount = |t: LedgerEntryType| entries.iter().find(|e| e.entry_type == t).unwrap().amount;
    assert_eq!(entries.len(), 3);
    assert_eq!(amount(LedgerEntryType::GrossIncome), 25_000);
    assert_eq!(amount(LedgerEntryType::PlatformFee), 175);
    assert_eq!(amount(LedgerEntryType::MerchantPayable), 24_825);

    let announcements = store.transaction_announcements(&trx.id).await.unwrap();
    assert_eq!(announcements.len(), 1);
    assert_eq!(announcements[0].id, announcement_id);
    // What the relay is handed is what it would read back from the outbox.
    let due = store
        .due_announcements(Some(&device.id), now_ms() + 1_000, 10)
        .await
        .unwrap();
    assert_eq!(due, vec![*delivery]);
    assert_eq!(announcements[0].status, AnnouncementStatus::Pending);
    assert_eq!(
        announcements[0].device_id.as_deref(),
        Some(device.id.as_str())
    );

    let due = store
        .due_announcements(Some(&device.id), now_ms() + 1, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].amount, 25_000);

    let timeline: Vec<String> = store
        .transaction_events(&trx.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{}:{}", e.status, e.effect))
        .collect();
    assert_eq!(timeline, ["created:created", "paid:applied"]);
}

/// The rules with a one-minute hand-over lease.
struct Leased;

impl PaymentRules for Leased {
    fn transition(&self, current: TransactionStatus, event_status: &str) -> Transition {
        Rules.transition(current, event_status)
    }
    fn split_fee(&self, gross: i64) -> (i64, i64) {
        Rules.split_fee(gross)
    }
    fn announcement_ttl_ms(&self) -> i64 {
        Rules.announcement_ttl_ms()
    }
    fn handover_lease_ms(&self) -> i64 {
        60_000
    }
}

pub async fn a_handed_over_announcement_is_not_due_until_its_lease_passes(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, device) =
        approved_terminal_with_device(&*store, "SN-LEASE").await;
    order(&*store, &terminal, "ORD-LEASE", 7_000).await;
    let before = now_ms();
    let PaymentOutcome::Applied {
        delivery: Some(delivery),
        ..
    } = store
        .apply_payment_event(inbox(), event("ORD-LEASE", "paid", 7_000), &Leased)
        .await
        .unwrap()
    else {
        panic!("expected an applied payment handed over to the device");
    };
    // Neither the relay's outbox read nor the device's worker sees it as due yet...
    for device_id in [None, Some(device.id.as_str())] {
        let due = store
            .due_announcements(device_id, before + 59_000, 10)
            .await
            .unwrap();
        assert!(due.is_empty(), "due inside its lease: {due:?}");
    }
    // ...the outbox's next due time is the lease's end...
    let next = store.next_announcement_due_ms(before).await.unwrap();
    assert!(
        next.is_some_and(|at| (before + 60_000..=now_ms() + 60_000).contains(&at)),
        "next due at {next:?}, the lease ends at {}",
        before + 60_000
    );
    // ...and a read of everything pending (a replay) or one after the lease has it.
    for until in [i64::MAX, now_ms() + 60_000] {
        let due = store
            .due_announcements(Some(&device.id), until, 10)
            .await
            .unwrap();
        assert_eq!(due, vec![(*delivery).clone()]);
    }
}

pub async fn a_repeated_event_changes_nothing(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, _) =
        approved_terminal_with_device(&*store, "SN-P2").await;
    let trx = order(&*store, &terminal, "ORD-2", 10_000).await;
    store
        .apply_payment_event(inbox(), event("ORD-2", "paid", 10_000), &Rules)
        .await
        .unwrap();
    let again = store
        .apply_payment_event(inbox(), event("ORD-2", "paid", 10_000), &Rules)
        .await
        .unwrap();
    assert_eq!(
        again,
        PaymentOutcome::Duplicate {
            transaction_id: Some(trx.id.clone())
        }
    );
    assert_eq!(ledger(&*store, &trx.id).await.len(), 3);
    assert_eq!(
        store
            .transaction_announcements(&trx.id)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn concurrent_copies_of_one_event_apply_once(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, _) =
        approved_terminal_with_device(&*store, "SN-P3").await;
    let trx = order(&*store, &terminal, "ORD-3", 50_000).await;
    let copies = (0..20).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .apply_payment_event(inbox(), event("ORD-3", "paid", 50_000), &Rules)
                .await
        })
    });
    let outcomes = futures_util::future::join_all(copies).await;
    let applied = outcomes
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .filter(|o| matches!(o, PaymentOutcome::Applied { .. }))
        .count();
    assert_eq!(applied, 1);
    assert_eq!(ledger(&*store, &trx.id).await.len(), 3);
    assert_eq!(
        store
            .transaction_announcements(&trx.id)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Payments to one device that concurrent batches commit (a node's commit loops, or
/// several nodes) number its announcements once each, without a gap: a batch holds the
/// terminal's sequence lock from its reads to its commit, whether it found the terminal
/// through an order (PostgreSQL takes that lock in SQL) or through a static QR reference
/// (taken later, by the daemon's statement).
pub async fn concurrent_payments_number_one_devices_announcements_once(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, device) =
        approved_terminal_with_device(&*store, "SN-P19").await;
    for i in 0..12 {
        order(&*store, &terminal, &format!("ORD-Q{i}"), 1_000 + i).await;
    }
    let dynamic = (0..12).map(|i| event(&format!("ORD-Q{i}"), "paid", 1_000 + i));
    let fixed = (0..6).map(|i| IncomingEvent {
        provider_transaction_id: format!("mt-static-{i}"),
        ..event("STATIC-SN-P19", "paid", 2_000 + i)
    });
    let payments = dynamic.chain(fixed).map(|event| {
        let store = store.clone();
        tokio::spawn(async move { store.apply_payment_event(inbox(), event, &Rules).await })
    });
    let mut sequences = Vec::new();
    for outcome in futures_util::future::join_all(payments).await {
        let outcome = outcome.unwrap().unwrap();
        let PaymentOutcome::Applied { transaction_id, .. } = outcome else {
            panic!("{outcome:?}");
        };
        for a in store
            .transaction_announcements(&transaction_id)
            .await
            .unwrap()
        {
            assert_eq!(a.device_id.as_deref(), Some(device.id.as_str()));
            sequences.push(a.sequence);
        }
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=18).collect::<Vec<i64>>());
}

pub async fn stale_and_mismatched_events_are_recorded_not_applied(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, _) =
        approved_terminal_with_device(&*store, "SN-P4").await;
    let trx = order(&*store, &terminal, "ORD-4", 10_000).await;
    let mismatch = store
        .apply_payment_event(inbox(), event("ORD-4", "paid", 99_000), &Rules)
        .await
        .unwrap();
    assert_eq!(
        mismatch,
        PaymentOutcome::AmountMismatch {
            transaction_id: trx.id.clone()
        }
    );
    assert_eq!(
        store.get_transaction(&trx.id).await.unwrap().status,
        TransactionStatus::Pending
    );

    let mut paid = event("ORD-4", "paid", 10_000);
    paid.provider_transaction_id = "mt-ORD-4-second".into();
    store
        .apply_payment_event(inbox(), paid, &Rules)
        .await
        .unwrap();
    let stale = store
        .apply_payment_event(inbox(), event("ORD-4", "pending", 10_000), &Rules)
        .await
        .unwrap();
    assert_eq!(
        stale,
        PaymentOutcome::Stale {
            transaction_id: trx.id.clone()
        }
    );
    assert_eq!(
        store.get_transaction(&trx.id).await.unwrap().status,
        TransactionStatus::Paid
    );
    let effects: Vec<String> = store
        .transaction_events(&trx.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.effect)
        .collect();
    assert_eq!(effects, ["created", "amount_mismatch", "applied", "stale"]);
}

pub async fn paid_after_expiry_wins_and_is_flagged(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, _) =
        approved_terminal_with_device(&*store, "SN-P5").await;
    let trx = store
        .create_transaction(NewTransaction {
            terminal_id: terminal.id.clone(),
            order_ref: "ORD-5".into(),
            amount: 10_000,
            expires_at_ms: now_ms() - 1,
        })
        .await
        .unwrap();
    let expired = store.expire_due_transactions(now_ms(), 100).await.unwrap();
    assert_eq!(expired, vec![trx.id.clone()]);
    assert_eq!(
        store.expire_due_transactions(now_ms(), 100).await.unwrap(),
        Vec::<String>::new()
    );

    let outcome = store
        .apply_payment_event(inbox(), event("ORD-5", "paid", 10_000), &Rules)
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        PaymentOutcome::Applied {
            status: TransactionStatus::Paid,
            ..
        }
    ));
    let t = store.get_transaction(&trx.id).await.unwrap();
    assert_eq!(t.status, TransactionStatus::Paid);
    assert!(t.paid_after_expiry);
    assert_eq!(ledger(&*store, &trx.id).await.len(), 3);
}

pub async fn a_refund_reverses_the_ledger(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, _) =
        approved_terminal_with_device(&*store, "SN-P6").await;
    let trx = order(&*store, &terminal, "ORD-6", 20_000).await;
    store
        .apply_payment_event(inbox(), event("ORD-6", "paid", 20_000), &Rules)
        .await
        .unwrap();
    store
        .apply_payment_event(inbox(), event("ORD-6", "refunded", 20_000), &Rules)
        .await
        .unwrap();
    assert_eq!(
        store.get_transaction(&trx.id).await.unwrap().status,
        TransactionStatus::Refunded
    );
    let entries = ledger(&*store, &trx.id).await;
    assert_eq!(entries.len(), 6);
    assert_eq!(entries.iter().map(|e| e.amount).sum::<i64>(), 0);
    assert_eq!(
        entries.iter().filter(|e| e.reverses_id.is_some()).count(),
        3
    );
}

/// The refund event's amount is not the transaction's (a provider's partial refund): the
/// reversal is still of what was posted. (On SQLite the batch's rules travel as a table of
/// the events' amounts; this one needs the fee split of an amount no event carries.)
pub async fn a_refund_of_another_amount_reverses_what_was_posted(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, _) =
        approved_terminal_with_device(&*store, "SN-P6b").await;
    let trx = order(&*store, &terminal, "ORD-6b", 20_000).await;
    store
        .apply_payment_event(inbox(), event("ORD-6b", "paid", 20_000), &Rules)
        .await
        .unwrap();
    let refund = store
        .apply_payment_event(inbox(), event("ORD-6b", "refunded", 5_000), &Rules)
        .await
        .unwrap();
    assert!(
        matches!(refund, PaymentOutcome::Applied { .. }),
        "{refund:?}"
    );
    let entries = ledger(&*store, &trx.id).await;
    assert_eq!(entries.len(), 6);
    assert_eq!(entries.iter().map(|e| e.amount).sum::<i64>(), 0);
}

pub async fn unknown_orders_leave_no_trace_but_the_inbox(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, _) =
        approved_terminal_with_device(&*store, "SN-P7").await;
    let outcome = store
        .apply_payment_event(inbox(), event("ORD-LATER", "paid", 10_000), &Rules)
        .await
        .unwrap();
    assert_eq!(outcome, PaymentOutcome::UnknownOrder);
    // Once the order exists, the provider's retry of the same event applies.
    order(&*store, &terminal, "ORD-LATER", 10_000).await;
    let retry = store
        .apply_payment_event(inbox(), event("ORD-LATER", "paid", 10_000), &Rules)
        .await
        .unwrap();
    assert!(matches!(retry, PaymentOutcome::Applied { .. }), "{retry:?}");
}

pub async fn a_static_qr_payment_creates_its_transaction(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, device) =
        approved_terminal_with_device(&*store, "SN-P8").await;
    let outcome = store
        .apply_payment_event(inbox(), event("STATIC-SN-P8", "paid", 15_000), &Rules)
        .await
        .unwrap();
    let PaymentOutcome::Applied { transaction_id, .. } = outcome else {
        panic!("{outcome:?}");
    };
    let t = store.get_transaction(&transaction_id).await.unwrap();
    assert_eq!(t.terminal_id, terminal.id);
    assert_eq!(t.source, TransactionSource::StaticQr);
    assert_eq!(t.status, TransactionStatus::Paid);
    assert_eq!(t.amount, 15_000);
    let a = store.transaction_announcements(&t.id).await.unwrap();
    assert_eq!(a[0].device_id.as_deref(), Some(device.id.as_str()));
    // A non-paid event for a static reference is an unknown order.
    let other = store
        .apply_payment_event(inbox(), event("STATIC-SN-P8", "pending", 15_000), &Rules)
        .await
        .unwrap();
    assert_eq!(other, PaymentOutcome::UnknownOrder);
}

pub async fn no_bound_device_is_recorded_not_lost(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, device) =
        approved_terminal_with_device(&*store, "SN-P9").await;
    store.unbind_device(&device.id).await.unwrap();
    let trx = order(&*store, &terminal, "ORD-9", 5_000).await;
    store
        .apply_payment_event(inbox(), event("ORD-9", "paid", 5_000), &Rules)
        .await
        .unwrap();
    let a = store.transaction_announcements(&trx.id).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].status, AnnouncementStatus::NoDevice);
    assert_eq!(a[0].device_id, None);
}

pub async fn transactions_page_newest_first_by_keyset(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, _) =
        approved_terminal_with_device(&*store, "SN-P11").await;
    let mut made = Vec::new();
    for n in 0..3 {
        made.push(
            order(&*store, &terminal, &format!("ORD-11-{n}"), 1_000)
                .await
                .id,
        );
    }
    let filter = TransactionFilter {
        terminal_id: Some(terminal.id.clone()),
        newest_first: true,
        ..TransactionFilter::default()
    };
    let first = store
        .list_transactions(&filter, &PageRequest::first(2))
        .await
        .unwrap();
    let ids: Vec<_> = first.items.iter().map(|t| t.id.clone()).collect();
    assert_eq!(ids, [made[2].clone(), made[1].clone()]);
    let rest = store
        .list_transactions(
            &filter,
            &PageRequest {
                after: first.next_after,
                limit: 2,
            },
        )
        .await
        .unwrap();
    let ids: Vec<_> = rest.items.iter().map(|t| t.id.clone()).collect();
    assert_eq!(ids, [made[0].clone()]);
    assert_eq!(rest.next_after, None);
}

pub async fn test_notifications_touch_nothing(store: Arc<dyn Store>) {
    let mut e = event("payment_notif_test_1", "paid", 1_000);
    e.is_test = true;
    assert_eq!(
        store.apply_payment_event(inbox(), e, &Rules).await.unwrap(),
        PaymentOutcome::Test
    );
    let all = store
        .list_transactions(&TransactionFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert!(all.items.is_empty());
}

pub async fn deliveries_are_recorded(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, device) =
        approved_terminal_with_device(&*store, "SN-P10").await;
    let trx = order(&*store, &terminal, "ORD-10", 5_000).await;
    store
        .apply_payment_event(inbox(), event("ORD-10", "paid", 5_000), &Rules)
        .await
        .unwrap();
    let due = store
        .due_announcements(None, now_ms() + 1, 10)
        .await
        .unwrap();
    let id = due
        .iter()
        .find(|d| d.transaction_id == trx.id)
        .unwrap()
        .id
        .clone();

    let later = now_ms() + 60_000;
    store
        .record_delivery(
            &id,
            DeliveryResult::Retry {
                error: "device offline".into(),
                next_attempt_at_ms: later,
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .due_announcements(Some(&device.id), now_ms() + 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.next_announcement_due_ms(0).await.unwrap(),
        Some(later)
    );
    assert_eq!(store.next_announcement_due_ms(later).await.unwrap(), None);
    assert_eq!(
        store
            .due_announcements(Some(&device.id), later, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    store
        .record_delivery(&id, DeliveryResult::Delivered)
        .await
        .unwrap();
    // A late result for a finished announcement changes nothing.
    store
        .record_delivery(&id, DeliveryResult::Expired)
        .await
        .unwrap();
    let a = store.transaction_announcements(&trx.id).await.unwrap();
    assert_eq!(a[0].status, AnnouncementStatus::Delivered);
    assert_eq!(a[0].attempts, 2);
    assert_eq!(a[0].last_error.as_deref(), Some("device offline"));
    assert!(a[0].delivered_at.is_some());
    assert!(matches!(
        store
            .record_delivery("ann_missing", DeliveryResult::Delivered)
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // An operator's retry queues a new announcement.
    let again = store.queue_announcement(&trx.id, &Rules).await.unwrap();
    assert_eq!(again.status, AnnouncementStatus::Pending);
    assert_eq!(
        store
            .transaction_announcements(&trx.id)
            .await
            .unwrap()
            .len(),
        2
    );
}

pub async fn transactions_need_an_approved_terminal_and_a_fresh_order_ref(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, _) =
        approved_terminal_with_device(&*store, "SN-P11").await;
    order(&*store, &terminal, "ORD-11", 5_000).await;
    let dup = store
        .create_transaction(NewTransaction {
            terminal_id: terminal.id.clone(),
            order_ref: "ORD-11".into(),
            amount: 5_000,
            expires_at_ms: now_ms(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            dup,
            StoreError::Conflict {
                code: "order_ref_taken",
                ..
            }
        ),
        "{dup:?}"
    );
    let missing = store
        .create_transaction(NewTransaction {
            terminal_id: "ter_missing".into(),
            order_ref: "ORD-X".into(),
            amount: 5_000,
            expires_at_ms: now_ms(),
        })
        .await
        .unwrap_err();
    assert!(matches!(
        missing,
        StoreError::NotFound {
            entity: "terminal",
            ..
        }
    ));
    let err = store
        .create_terminal(NewTerminal {
            outlet_id: terminal.outlet_id.clone(),
            label: "B02".into(),
            name: None,
            payment_ref: terminal.payment_ref.clone(),
            static_qris: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::Conflict {
            code: "payment_ref_taken",
            ..
        }
    ));
}

pub async fn a_batch_commits_together_and_undoes_only_its_bad_events(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, _) =
        approved_terminal_with_device(&*store, "SN-P12").await;
    let first = order(&*store, &terminal, "ORD-B1", 1_000).await;
    let second = order(&*store, &terminal, "ORD-B2", 2_000).await;
    let outcomes = store
        .apply_payment_events(
            vec![
                (inbox(), event("ORD-B1", "paid", 1_000)),
                (inbox(), event("ORD-UNKNOWN", "paid", 9_000)),
                (inbox(), event("ORD-B1", "paid", 1_000)),
                (inbox(), event("ORD-B2", "paid", 2_000)),
            ],
            &Rules,
        )
        .await
        .unwrap();
    let outcomes: Vec<PaymentOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
    assert!(
        matches!(&outcomes[0], PaymentOutcome::Applied { transaction_id, .. } if *transaction_id == first.id)
    );
    assert_eq!(outcomes[1], PaymentOutcome::UnknownOrder);
    assert_eq!(
        outcomes[2],
        PaymentOutcome::Duplicate {
            transaction_id: Some(first.id.clone())
        }
    );
    assert!(
        matches!(&outcomes[3], PaymentOutcome::Applied { transaction_id, .. } if *transaction_id == second.id)
    );
    assert_eq!(ledger(&*store, &first.id).await.len(), 3);
    assert_eq!(ledger(&*store, &second.id).await.len(), 3);
    // The unknown order's event was undone: once the order exists, the retry applies.
    order(&*store, &terminal, "ORD-UNKNOWN", 9_000).await;
    let retry = store
        .apply_payment_event(inbox(), event("ORD-UNKNOWN", "paid", 9_000), &Rules)
        .await
        .unwrap();
    assert!(matches!(retry, PaymentOutcome::Applied { .. }), "{retry:?}");
}

pub async fn one_batch_sees_its_own_earlier_events(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, device) =
        approved_terminal_with_device(&*store, "SN-P13").await;
    let first = order(&*store, &terminal, "ORD-S1", 10_000).await;
    let second = order(&*store, &terminal, "ORD-S2", 20_000).await;
    let outcomes: Vec<PaymentOutcome> = store
        .apply_payment_events(
            vec![
                (inbox(), event("ORD-S1", "paid", 10_000)),
                (inbox(), event("ORD-S2", "paid", 20_000)),
                (inbox(), event("ORD-S1", "refunded", 10_000)),
            ],
            &Rules,
        )
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        matches!(
            &outcomes[2],
            PaymentOutcome::Applied {
                status: TransactionStatus::Refunded,
                ..
            }
        ),
        "{outcomes:?}"
    );
    // The refund in the same batch reversed the postings its paid event made.
    let postings = ledger(&*store, &first.id).await;
    assert_eq!(postings.len(), 6, "{postings:?}");
    assert_eq!(postings.iter().map(|p| p.amount).sum::<i64>(), 0);
    for reversal in postings.iter().filter(|p| p.amount < 0) {
        let original = reversal
            .reverses_id
            .as_deref()
            .expect("a reversal names its original");
        assert!(
            postings
                .iter()
                .any(|p| p.id == original && p.amount == -reversal.amount)
        );
    }
    // Two announcements for one device in one batch: consecutive sequence numbers.
    let a = &store.transaction_announcements(&first.id).await.unwrap()[0];
    let b = &store.transaction_announcements(&second.id).await.unwrap()[0];
    assert_eq!(b.sequence, a.sequence + 1);
    // And what the relay is handed matches the outbox, batch or not.
    let handed: Vec<AnnouncementDelivery> = outcomes
        .iter()
        .filter_map(|o| match o {
            PaymentOutcome::Applied {
                delivery: Some(d), ..
            } => Some((**d).clone()),
            _ => None,
        })
        .collect();
    let due = store
        .due_announcements(Some(&device.id), now_ms() + 1_000, 10)
        .await
        .unwrap();
    assert_eq!(handed, due);
}

pub async fn a_failing_event_fails_alone(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, _) =
        approved_terminal_with_device(&*store, "SN-P14").await;
    let good = order(&*store, &terminal, "ORD-F1", 3_000).await;
    // The static QR payment below would create its transaction under the order reference
    // `midtrans:mt-STATIC-SN-P14`; taking that reference first makes its insert fail.
    order(&*store, &terminal, "midtrans:mt-STATIC-SN-P14", 4_000).await;
    let outcomes = store
        .apply_payment_events(
            vec![
                (inbox(), event("ORD-F1", "paid", 3_000)),
                (inbox(), event("STATIC-SN-P14", "paid", 4_000)),
                (inbox(), event("ORD-UNKNOWN-F", "paid", 5_000)),
            ],
            &Rules,
        )
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[0], Ok(PaymentOutcome::Applied { transaction_id, .. }) if *transaction_id == good.id),
        "{outcomes:?}"
    );
    assert!(outcomes[1].is_err(), "{outcomes:?}");
    assert!(
        matches!(outcomes[2], Ok(PaymentOutcome::UnknownOrder)),
        "{outcomes:?}"
    );
    assert_eq!(ledger(&*store, &good.id).await.len(), 3);
    // The failed batch left no transaction open: the next batch applies and commits.
    let next = order(&*store, &terminal, "ORD-F2", 6_000).await;
    let outcome = store
        .apply_payment_event(inbox(), event("ORD-F2", "paid", 6_000), &Rules)
        .await
        .unwrap();
    assert!(
        matches!(outcome, PaymentOutcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_eq!(ledger(&*store, &next.id).await.len(), 3);
}

/// Pays each order (one event each) on a terminal whose device has nothing else pending;
/// returns the transaction ids and, in the same order, their announcement ids.
async fn paid_announcements(
    store: &dyn Store,
    terminal: &Terminal,
    device: &Device,
    orders: &[&str],
) -> (Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    for (n, order_ref) in orders.iter().enumerate() {
        let trx = order(store, terminal, order_ref, 1_000 * (n as i64 + 1)).await;
        store
            .apply_payment_event(inbox(), event(order_ref, "paid", trx.amount), &Rules)
            .await
            .unwrap();
        ids.push(trx.id);
    }
    let due = store
        .due_announcements(Some(&device.id), now_ms() + 1_000, 10)
        .await
        .unwrap();
    (ids, due.into_iter().map(|a| a.id).collect())
}

/// The announcement of a transaction with one.
async fn announcement_of(store: &dyn Store, transaction_id: &str) -> Announcement {
    store
        .transaction_announcements(transaction_id)
        .await
        .unwrap()
        .remove(0)
}

pub async fn a_batch_of_delivery_results_is_recorded_like_single_ones(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, device) =
        approved_terminal_with_device(&*store, "SN-P15").await;
    let (ids, due) = paid_announcements(
        &*store,
        &terminal,
        &device,
        &["ORD-D1", "ORD-D2", "ORD-D3", "ORD-D4"],
    )
    .await;
    let [a, b, c, d] = [&due[0], &due[1], &due[2], &due[3]];
    // c already finished: a second result for it changes nothing.
    store
        .record_delivery(c, DeliveryResult::Expired)
        .await
        .unwrap();
    store
        .record_deliveries(vec![
            (a.clone(), DeliveryResult::Delivered),
            (
                b.clone(),
                DeliveryResult::Retry {
                    error: "no ack".into(),
                    next_attempt_at_ms: now_ms() + 60_000,
                },
            ),
            (c.clone(), DeliveryResult::Delivered),
        ])
        .await
        .unwrap();
    let (a, b, c) = (
        announcement_of(&*store, &ids[0]).await,
        announcement_of(&*store, &ids[1]).await,
        announcement_of(&*store, &ids[2]).await,
    );
    assert_eq!((a.status, a.attempts), (AnnouncementStatus::Delivered, 1));
    assert!(a.delivered_at.is_some());
    assert_eq!((b.status, b.attempts), (AnnouncementStatus::Pending, 1));
    assert_eq!((c.status, c.attempts), (AnnouncementStatus::Expired, 0));
    assert!(c.delivered_at.is_none());

    // Deliveries alone (a backend may write them apart from other results): the pending
    // one is delivered, the finished one stays as it was.
    store
        .record_deliveries(vec![
            (d.clone(), DeliveryResult::Delivered),
            (c.id.clone(), DeliveryResult::Delivered),
        ])
        .await
        .unwrap();
    let d = announcement_of(&*store, &ids[3]).await;
    assert_eq!((d.status, d.attempts), (AnnouncementStatus::Delivered, 1));
    assert!(d.delivered_at.is_some());
    let c = announcement_of(&*store, &ids[2]).await;
    assert_eq!((c.status, c.attempts), (AnnouncementStatus::Expired, 0));
}

pub async fn events_and_delivery_results_commit_together(store: Arc<dyn Store>) {
    let (ApprovedTerminal { terminal, .. }, device) =
        approved_terminal_with_device(&*store, "SN-P16").await;
    let (ids, due) = paid_announcements(&*store, &terminal, &device, &["ORD-W1", "ORD-W2"]).await;
    let [a, b] = [&due[0], &due[1]];
    let third = order(&*store, &terminal, "ORD-W3", 3_000).await;
    let retry_at = now_ms() + 60_000;
    let outcomes = store
        .apply_payment_events_and_deliveries(
            vec![(inbox(), event("ORD-W3", "paid", 3_000))],
            &Rules,
            vec![
                (a.clone(), DeliveryResult::Delivered),
                (
                    b.clone(),
                    DeliveryResult::Retry {
                        error: "no ack".into(),
                        next_attempt_at_ms: retry_at,
                    },
                ),
                ("ann_unknown".into(), DeliveryResult::Delivered),
            ],
        )
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[..], [Ok(PaymentOutcome::Applied { transaction_id, .. })] if *transaction_id == third.id),
        "{outcomes:?}"
    );
    let (a, b) = (
        announcement_of(&*store, &ids[0]).await,
        announcement_of(&*store, &ids[1]).await,
    );
    assert_eq!((a.status, a.attempts), (AnnouncementStatus::Delivered, 1));
    assert!(a.delivered_at.is_some());
    assert_eq!((b.status, b.attempts), (AnnouncementStatus::Pending, 1));
    assert_eq!(b.next_attempt_at_ms, retry_at);
    assert_eq!(b.last_error.as_deref(), Some("no ack"));
    let c = announcement_of(&*store, &third.id).await;
    assert_eq!((c.status, c.attempts), (AnnouncementStatus::Pending, 0));
    assert_eq!(ledger(&*store, &third.id).await.len(), 3);

    // A batch that fails still records its results, and its good events.
    let fourth = order(&*store, &terminal, "ORD-W4", 4_000).await;
    order(&*store, &terminal, "midtrans:mt-STATIC-SN-P16", 5_000).await;
    let outcomes = store
        .apply_payment_events_and_deliveries(
            vec![
                (inbox(), event("ORD-W4", "paid", 4_000)),
                (inbox(), event("STATIC-SN-P16", "paid", 5_000)),
            ],
            &Rules,
            vec![(c.id.clone(), DeliveryResult::Delivered)],
        )
        .await
        .unwrap();
    assert!(
        matches!(outcomes[0], Ok(PaymentOutcome::Applied { .. })),
        "{outcomes:?}"
    );
    assert!(outcomes[1].is_err(), "{outcomes:?}");
    assert_eq!(ledger(&*store, &fourth.id).await.len(), 3);
    let c = announcement_of(&*store, &third.id).await;
    assert_eq!(c.status, AnnouncementStatus::Delivered);
}

/// When a batch fails and its delivery results cannot be written on their own either, the
/// call fails: an `Ok` would let the caller take the results for recorded (and settle the
/// devices' acks) and apply the events on a database that has just failed twice.
pub async fn results_that_cannot_be_written_fail_the_whole_batch(store: Arc<dyn Store>, url: &str) {
    let (ApprovedTerminal { terminal, .. }, device) =
        approved_terminal_with_device(&*store, "SN-P17").await;
    let (ids, due) = paid_announcements(&*store, &terminal, &device, &["ORD-F1"]).await;
    let next = order(&*store, &terminal, "ORD-F2", 2_000).await;
    gema_store::testing::refuse_writes(url, "UPDATE", "announcements").await;
    let result = store
        .apply_payment_events_and_deliveries(
            vec![(inbox(), event("ORD-F2", "paid", 2_000))],
            &Rules,
            vec![(due[0].clone(), DeliveryResult::Delivered)],
        )
        .await;
    assert!(result.is_err(), "{result:?}");
    let announcement = announcement_of(&*store, &ids[0]).await;
    assert_eq!(announcement.status, AnnouncementStatus::Pending);
    assert!(
        ledger(&*store, &next.id).await.is_empty(),
        "the event was not applied"
    );
    assert_eq!(
        store.get_transaction(&next.id).await.unwrap().status,
        TransactionStatus::Pending
    );
}

/// A database session that ends between two payments (a server restart, an operator's
/// `pg_terminate_backend`, an idle timeout) costs no event: the next payment is applied.
pub async fn a_payment_after_the_database_ended_its_sessions_is_applied(
    store: Arc<dyn Store>,
    url: &str,
) {
    let (ApprovedTerminal { terminal, .. }, _device) =
        approved_terminal_with_device(&*store, "SN-P18").await;
    let first = order(&*store, &terminal, "ORD-S1", 3_000).await;
    let second = order(&*store, &terminal, "ORD-S2", 4_000).await;
    store
        .apply_payment_event(inbox(), event("ORD-S1", "paid", 3_000), &Rules)
        .await
        .unwrap();
    let paid = store.get_transaction(&first.id).await.unwrap();
    assert_eq!(paid.status, TransactionStatus::Paid);
    let ended = gema_store::testing::end_other_sessions(url).await;
    if url.starts_with("postgres") {
        assert!(ended >= 1, "the store's sessions were ended");
    }
    let outcome = store
        .apply_payment_event(inbox(), event("ORD-S2", "paid", 4_000), &Rules)
        .await
        .expect("applied on a session that works");
    assert!(
        matches!(&outcome, PaymentOutcome::Applied { transaction_id, .. } if *transaction_id == second.id),
        "{outcome:?}"
    );
    let paid = store.get_transaction(&second.id).await.unwrap();
    assert_eq!(paid.status, TransactionStatus::Paid);
    assert_eq!(ledger(&*store, &second.id).await.len(), 3);
}

/// A payment's copies of its merchant and terminal are checked against its transaction
/// (migration 0016), not merely against the merchants and terminals: a ledger entry or an
/// announcement naming another merchant's or terminal's is refused, and so is moving an
/// entry to another merchant; the transaction's own are taken.
pub async fn a_payments_copies_of_its_merchant_and_terminal_must_be_its_transactions(
    store: Arc<dyn Store>,
    url: &str,
) {
    let own = gema_store::testing::approved_terminal(&*store, "K-OWN").await;
    let other = gema_store::testing::approved_terminal(&*store, "K-OTHER").await;
    let trx = order(&*store, &own.terminal, "ORD-K1", 1_000).await;
    const AT: &str = "2026-12-07T00:00:00Z";
    let ledger = |merchant: &str, tag: &str| {
        format!(
            "INSERT INTO ledger_entries (id, transaction_id, merchant_id, entry_type, amount, \
             external_id, created_at) VALUES ('led_k_{tag}', '{}', '{merchant}', \
             'gross_income', 1000, 'k:{tag}', '{AT}')",
            trx.id
        )
    };
    let announcement = |terminal: &str, tag: &str| {
        format!(
            "INSERT INTO announcements (id, transaction_id, terminal_id, status, \
             next_attempt_at_ms, expires_at_ms, created_at, updated_at) VALUES \
             ('ann_k_{tag}', '{}', '{terminal}', 'no_device', 0, 0, '{AT}', '{AT}')",
            trx.id
        )
    };
    let refused = gema_store::testing::execute_sql(url, &ledger(&other.merchant.id, "x"))
        .await
        .unwrap_err();
    assert!(refused.contains("ledger_entries_transaction"), "{refused}");
    let refused = gema_store::testing::execute_sql(url, &announcement(&other.terminal.id, "x"))
        .await
        .unwrap_err();
    assert!(refused.contains("announcements_transaction"), "{refused}");
    assert_eq!(
        gema_store::testing::execute_sql(url, &ledger(&own.merchant.id, "own")).await,
        Ok(())
    );
    assert_eq!(
        gema_store::testing::execute_sql(url, &announcement(&own.terminal.id, "own")).await,
        Ok(())
    );
    let moved = format!(
        "UPDATE ledger_entries SET merchant_id = '{}' WHERE id = 'led_k_own'",
        other.merchant.id
    );
    let refused = gema_store::testing::execute_sql(url, &moved)
        .await
        .unwrap_err();
    assert!(refused.contains("ledger_entries_transaction"), "{refused}");
}
