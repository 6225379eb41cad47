//! SQLite has two writer connections: the payment path's, which the store drives from a
//! thread of its own, and sqlx's, for everything else. They take turns. Payment batches back
//! to back must leave the other writes their turn: when SQLite's own lock arbitrated, a
//! waiting sqlx write slept 1, 2, 5 … 100 ms between attempts, nearly always found the
//! payment connection holding the lock again, and failed with "database is locked" at its
//! busy timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gema_store::testing::{ReferenceRules as Rules, TempStore};
use gema_store::{ConnectOptions, InboxEntry, IncomingEvent, PaymentOutcome};
use time::OffsetDateTime;

fn inbox() -> InboxEntry {
    InboxEntry {
        provider: "midtrans".into(),
        received_at: OffsetDateTime::now_utc(),
        headers: "{}".into(),
        body: b"{\"raw\":true}".to_vec(),
    }
}

/// An event for an order nobody created: the batch still commits (its inbox rows).
fn unknown_order(n: u64) -> IncomingEvent {
    IncomingEvent {
        provider: "midtrans".into(),
        provider_transaction_id: format!("mt-{n}"),
        order_ref: format!("NO-SUCH-ORDER-{n}"),
        amount: 25_000,
        status: "paid".into(),
        raw_status: "settlement".into(),
        issuer: None,
        paid_at: None,
        is_test: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_writes_get_their_turn_between_back_to_back_payment_batches() {
    let temp = TempStore::sqlite_with(&ConnectOptions {
        busy_timeout: Duration::from_millis(500),
        ..ConnectOptions::default()
    })
    .await;
    let store = temp.store.clone();

    // Payment batches back to back, on a thread of their own, as the commit loop runs them.
    let stop = Arc::new(AtomicBool::new(false));
    let payments = std::thread::spawn({
        let store = store.clone();
        let stop = stop.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mut batches = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let items = (0..8)
                    .map(|i| (inbox(), unknown_order(batches * 8 + i)))
                    .collect();
                let outcomes = runtime
                    .block_on(store.apply_payment_events(items, &Rules))
                    .expect("a payment batch");
                assert!(
                    outcomes
                        .iter()
                        .all(|o| matches!(o, Ok(PaymentOutcome::UnknownOrder))),
                    "{outcomes:?}"
                );
                batches += 1;
            }
            batches
        }
    });

    // Meanwhile, writes on sqlx's connection: each must get its turn.
    for n in 0..100 {
        store
            .record_inbox(inbox(), "unauthorized", Some("bad signature"))
            .await
            .unwrap_or_else(|err| panic!("write {n} did not get its turn: {err}"));
    }
    stop.store(true, Ordering::Relaxed);
    let batches = payments.join().expect("the payment thread");
    assert!(
        batches > 0,
        "payment batches ran alongside the other writes"
    );
}

/// The payment writer waits for its turn on its own thread: a caller on a runtime with one
/// thread, whose other task holds the turn for an sqlx write, is not blocked by the wait
/// (when the batch ran on the caller's thread, the two waited for each other until the busy
/// timeout).
#[tokio::test(flavor = "current_thread")]
async fn payment_batches_do_not_block_their_callers_thread() {
    let temp = TempStore::sqlite_with(&ConnectOptions {
        busy_timeout: Duration::from_millis(500),
        ..ConnectOptions::default()
    })
    .await;
    let store = temp.store.clone();

    let others = tokio::spawn({
        let store = store.clone();
        async move {
            for n in 0..100 {
                store
                    .record_inbox(inbox(), "unauthorized", Some("bad signature"))
                    .await
                    .unwrap_or_else(|err| panic!("write {n} did not get its turn: {err}"));
                tokio::task::yield_now().await;
            }
        }
    });
    for batch in 0..50u64 {
        // The other task first: it takes the turn and waits for sqlx's connection.
        tokio::task::yield_now().await;
        let items = (0..8)
            .map(|i| (inbox(), unknown_order(batch * 8 + i)))
            .collect();
        let outcomes = store
            .apply_payment_events(items, &Rules)
            .await
            .unwrap_or_else(|err| panic!("payment batch {batch}: {err}"));
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Ok(PaymentOutcome::UnknownOrder))),
            "{outcomes:?}"
        );
    }
    others.await.expect("the other writes");
}
