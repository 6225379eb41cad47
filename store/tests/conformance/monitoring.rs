//! The metrics sampler's aggregates: every outbox kind always reported, pending rows
//! counted with their oldest one's creation time, paused senders only while paused.

use std::sync::Arc;

use gema_store::testing::{ApprovedTerminal, approved_terminal_with_device};
use gema_store::*;

use crate::payments::{Rules, event, inbox, now_ms, order};

const KINDS: [&str; 6] = [
    "announcement",
    "whatsapp",
    "webhook",
    "config",
    "command",
    "qr",
];

pub async fn the_monitoring_snapshot_counts_pending_rows_their_age_and_paused_senders(
    store: Arc<dyn Store>,
) {
    let empty = store.monitoring_snapshot(now_ms()).await.unwrap();
    let kinds: Vec<&str> = empty.outboxes.iter().map(|o| o.kind).collect();
    assert_eq!(kinds, KINDS);
    for outbox in &empty.outboxes {
        assert_eq!(
            (outbox.pending, outbox.oldest_created_ms),
            (0, None),
            "{outbox:?}"
        );
    }
    assert!(empty.invoices.is_empty() && empty.settlements.is_empty());
    assert!(empty.whatsapp_queue.is_empty() && empty.paused_senders.is_empty());

    // A payment for a device: its announcement waits in the outbox.
    let (ApprovedTerminal { terminal, .. }, _device) =
        approved_terminal_with_device(&*store, "SN-MON-1").await;
    order(&*store, &terminal, "ORD-MON-1", 25_000).await;
    let before = now_ms();
    store
        .apply_payment_event(inbox(), event("ORD-MON-1", "paid", 25_000), &Rules)
        .await
        .unwrap();
    let after = now_ms();
    store
        .pause_wa_sender(OPERATOR_SENDER, after + 60_000, "restricted by Meta")
        .await
        .unwrap();

    let snapshot = store.monitoring_snapshot(after).await.unwrap();
    let announcements = &snapshot.outboxes[0];
    assert_eq!(announcements.kind, "announcement");
    assert_eq!(announcements.pending, 1);
    let created = announcements.oldest_created_ms.expect("an oldest row");
    // Stored to the microsecond: within the call, give or take the truncation.
    assert!(
        (before - 1..=after).contains(&created),
        "{before} <= {created} <= {after}"
    );
    assert_eq!(
        snapshot.paused_senders,
        vec![(OPERATOR_SENDER.to_owned(), "restricted by Meta".to_owned())]
    );
    // A pause that has ended is not reported.
    let later = store.monitoring_snapshot(after + 120_000).await.unwrap();
    assert!(later.paused_senders.is_empty());
}
