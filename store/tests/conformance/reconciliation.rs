//! Reconciliation runs every backend must store alike: all rows or none, in order, counted;
//! and the transaction reads matching relies on.

use std::sync::Arc;

use gema_store::testing::approved_terminal;
use gema_store::*;
use time::OffsetDateTime;

use crate::payments::{Rules, event, inbox, order};

fn row(line: Option<i64>, order_id: &str, outcome: ReconciliationOutcome) -> NewReconciliationRow {
    NewReconciliationRow {
        line,
        order_id: Some(order_id.into()),
        provider_transaction_id: Some(format!("mt-{order_id}")),
        report_amount: line.map(|_| 25_000),
        report_status: line.map(|_| "settlement".to_string()),
        report_paid_at: line.map(|_| OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()),
        gema_amount: Some(25_000),
        gema_status: Some("paid".into()),
        transaction_id: None,
        outcome,
        reason: (outcome == ReconciliationOutcome::Malformed).then(|| "no amount".to_string()),
    }
}

fn new_run(rerun_of: Option<String>) -> NewReconciliationRun {
    NewReconciliationRun {
        format: "midtrans".into(),
        provider: Some("midtrans".into()),
        mapping: None,
        period_from: Some(OffsetDateTime::from_unix_timestamp(1_799_000_000).unwrap()),
        period_to: Some(OffsetDateTime::from_unix_timestamp(1_801_000_000).unwrap()),
        rerun_of,
        created_by: "user:finance".into(),
    }
}

pub async fn reconciliation_runs_keep_every_row_in_order_and_count_them(store: Arc<dyn Store>) {
    use ReconciliationOutcome as O;
    // 300 rows: the 256-, 16- and 1-row statements all run.
    let outcomes = [
        O::Matched,
        O::AmountMismatch,
        O::StatusMismatch,
        O::MissingInGema,
        O::Malformed,
    ];
    let mut rows: Vec<NewReconciliationRow> = (0..297)
        .map(|i| {
            row(
                Some(i + 2),
                &format!("ORD-{i:04}"),
                outcomes[i as usize % 5],
            )
        })
        .collect();
    rows.extend((0..3).map(|i| row(None, &format!("GEMA-{i}"), O::MissingInReport)));
    let run = store
        .create_reconciliation_run(new_run(None), rows.clone())
        .await
        .unwrap();
    assert_eq!(run.report_rows, 297);
    assert_eq!(
        (
            run.matched,
            run.amount_mismatch,
            run.status_mismatch,
            run.missing_in_gema,
            run.malformed,
            run.missing_in_report
        ),
        (60, 60, 59, 59, 59, 3)
    );
    assert_eq!(store.get_reconciliation_run(&run.id).await.unwrap(), run);

    let mut seen = Vec::new();
    let mut after = -1;
    loop {
        let chunk = store
            .reconciliation_row_chunk(&run.id, after, 128)
            .await
            .unwrap();
        let Some(last) = chunk.last() else { break };
        after = last.seq;
        seen.extend(chunk);
    }
    assert_eq!(seen.len(), 300);
    for (i, (stored, given)) in seen.iter().zip(&rows).enumerate() {
        assert_eq!(stored.seq, i as i64);
        assert_eq!(stored.line, given.line);
        assert_eq!(stored.order_id, given.order_id);
        assert_eq!(stored.outcome, given.outcome);
        assert_eq!(stored.report_paid_at, given.report_paid_at);
        assert_eq!(stored.reason, given.reason);
    }

    let filter = ReconciliationRowFilter {
        outcome: Some(O::Malformed),
    };
    let first = store
        .list_reconciliation_rows(&run.id, &filter, &PageRequest::first(50))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 50);
    assert!(first.items.iter().all(|r| r.outcome == O::Malformed));
    let rest = store
        .list_reconciliation_rows(
            &run.id,
            &filter,
            &PageRequest {
                after: first.next_after.clone(),
                limit: 50,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 9);
    assert_eq!(rest.next_after, None);

    let unknown = store
        .list_reconciliation_rows("rec_missing", &filter, &PageRequest::first(5))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound { .. })),
        "{unknown:?}"
    );

    // A re-run of a run that does not exist stores nothing.
    let refused = store
        .create_reconciliation_run(new_run(Some("rec_missing".into())), rows)
        .await;
    assert!(
        matches!(refused, Err(StoreError::NotFound { .. })),
        "{refused:?}"
    );
    let again = store
        .create_reconciliation_run(
            new_run(Some(run.id.clone())),
            vec![row(Some(2), "X", O::MissingInGema)],
        )
        .await
        .unwrap();
    assert_eq!(again.rerun_of.as_deref(), Some(run.id.as_str()));
    let runs = store
        .list_reconciliation_runs(&PageRequest::first(10))
        .await
        .unwrap();
    let ids: Vec<&str> = runs.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec![run.id.as_str(), again.id.as_str()]);
    let newest = store
        .list_reconciliation_runs_newest_first(&PageRequest::first(1))
        .await
        .unwrap();
    assert_eq!(newest.items[0].id, again.id);
    let older = store
        .list_reconciliation_runs_newest_first(&PageRequest {
            after: newest.next_after.clone(),
            limit: 1,
        })
        .await
        .unwrap();
    let ids: Vec<&str> = older.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec![run.id.as_str()]);
    assert_eq!(older.next_after, None);
}

pub async fn matching_finds_transactions_by_order_ref_provider_id_and_creation_time(
    store: Arc<dyn Store>,
) {
    let terminal = approved_terminal(&*store, "R1").await.terminal;
    let paid = order(&*store, &terminal, "ORD-R1", 25_000).await;
    let pending = order(&*store, &terminal, "ORD-R2", 10_000).await;
    store
        .apply_payment_event(inbox(), event("ORD-R1", "paid", 25_000), &Rules)
        .await
        .unwrap();

    let refs = vec![
        "ORD-R1".to_string(),
        "ORD-R2".to_string(),
        "ORD-NONE".to_string(),
    ];
    let mut found = store.transactions_by_order_ref(&refs).await.unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].id, paid.id);
    assert_eq!(found[0].status, TransactionStatus::Paid);
    assert_eq!(
        found[0].provider_transaction_id.as_deref(),
        Some("mt-ORD-R1")
    );
    assert_eq!(found[1].id, pending.id);
    assert_eq!(found[1].status, TransactionStatus::Pending);

    let by_id = store
        .transactions_by_provider_id(&["mt-ORD-R1".to_string(), "mt-none".to_string()])
        .await
        .unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].order_ref, "ORD-R1");
    assert!(
        store
            .transactions_by_order_ref(&[])
            .await
            .unwrap()
            .is_empty()
    );

    // 1,200 keys: several lookups of 500.
    let many: Vec<String> = (0..1_200)
        .map(|i| format!("ORD-X{i}"))
        .chain(refs)
        .collect();
    assert_eq!(
        store.transactions_by_order_ref(&many).await.unwrap().len(),
        2
    );

    let now = OffsetDateTime::now_utc();
    let hour = time::Duration::hours(1);
    let in_period = store
        .paid_transactions_created_between(Some("midtrans"), now - hour, now + hour)
        .await
        .unwrap();
    assert_eq!(in_period.len(), 1, "only the paid one");
    assert_eq!(in_period[0].id, paid.id);
    let other_provider = store
        .paid_transactions_created_between(Some("xendit"), now - hour, now + hour)
        .await
        .unwrap();
    assert!(other_provider.is_empty());
    let any_provider = store
        .paid_transactions_created_between(None, now - hour, now + hour)
        .await
        .unwrap();
    assert_eq!(any_provider.len(), 1);
    let earlier = store
        .paid_transactions_created_between(None, now - hour * 3, now - hour * 2)
        .await
        .unwrap();
    assert!(earlier.is_empty());
    // A period in Jakarta time (as providers' reports give it) is the same instants: the
    // paid transaction of a minute ago is inside "the last 2 minutes" written at +07:00.
    let jakarta = time::UtcOffset::from_hms(7, 0, 0).unwrap();
    let minute: time::Duration = time::Duration::minutes(1);
    let local = store
        .paid_transactions_created_between(
            None,
            (now - minute * 2_i32).to_offset(jakarta),
            (now + minute).to_offset(jakarta),
        )
        .await
        .unwrap();
    assert_eq!(local.len(), 1, "a +07:00 period finds the paid transaction");
}
