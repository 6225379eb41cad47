//! Export jobs: one claim per job, progress under the claim, take-over of an interrupted
//! job and its end after too many starts, expiry; the kinds' rows in keyset pages.

use std::collections::HashSet;
use std::sync::Arc;

use gema_store::testing::{ApprovedTerminal, approved_terminal};
use gema_store::*;
use time::OffsetDateTime;

use crate::payments::{Rules, event, inbox, order};

const T0: i64 = 1_700_000_000_000;

async fn queued(store: &dyn Store, kind: ExportKind) -> ExportJob {
    store
        .create_export(NewExport {
            kind,
            filter: ExportFilter {
                merchant_id: Some("mer_x".into()),
                ..Default::default()
            },
            created_by: "user:finance".into(),
        })
        .await
        .unwrap()
}

pub async fn an_export_is_claimed_once_and_progresses_only_under_its_claim(store: Arc<dyn Store>) {
    let job = queued(&*store, ExportKind::LedgerEntries).await;
    assert_eq!(job.status, ExportStatus::Queued);
    assert_eq!(job.filter().unwrap().merchant_id.as_deref(), Some("mer_x"));

    let claimed = store
        .claim_export("node-a", T0, T0 + 60_000, 3)
        .await
        .unwrap()
        .expect("a queued job to claim");
    assert_eq!(claimed.id, job.id);
    assert_eq!(claimed.status, ExportStatus::Running);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.claimed_by.as_deref(), Some("node-a"));
    // Held: no other node gets it while the claim lasts.
    assert!(
        store
            .claim_export("node-b", T0 + 1, T0 + 60_001, 3)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store
            .export_progress(&job.id, "node-b", 5, Some(10), T0 + 70_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .export_progress(&job.id, "node-a", 5, Some(10), T0 + 70_000)
            .await
            .unwrap()
    );
    let running = store.get_export(&job.id).await.unwrap();
    assert_eq!((running.rows_done, running.rows_total), (5, Some(10)));
    assert_eq!(running.claim_until_ms, Some(T0 + 70_000));

    assert!(
        store
            .finish_export(&job.id, "node-a", 10, 1234, T0 + 2_000, T0 + 3_600_000)
            .await
            .unwrap()
    );
    let done = store.get_export(&job.id).await.unwrap();
    assert_eq!(done.status, ExportStatus::Done);
    assert_eq!((done.rows_done, done.rows_total), (10, Some(10)));
    assert_eq!(done.file_bytes, Some(1234));
    assert_eq!(done.expires_at_ms, Some(T0 + 3_600_000));
    // A done job is not claimed again, and finishing it twice changes nothing.
    assert!(
        store
            .claim_export("node-b", T0 + 999_999, T0 + 1_059_999, 3)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store
            .fail_export(&job.id, "node-a", "late", T0 + 3_000)
            .await
            .unwrap()
    );

    // Expiry: due only once its time has come; then marked expired once.
    assert!(
        store
            .exports_due_to_expire(T0 + 3_599_999, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store
        .exports_due_to_expire(T0 + 3_600_000, 10)
        .await
        .unwrap();
    assert_eq!(due.iter().map(|j| &j.id).collect::<Vec<_>>(), [&job.id]);
    assert!(store.mark_export_expired(&job.id).await.unwrap());
    assert!(!store.mark_export_expired(&job.id).await.unwrap());
    assert_eq!(
        store.get_export(&job.id).await.unwrap().status,
        ExportStatus::Expired
    );

    let listed = store
        .list_exports(
            &ExportJobFilter {
                status: Some(ExportStatus::Expired),
                created_by: Some("user:finance".into()),
            },
            &PageRequest::first(10),
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(matches!(
        store.get_export("exp_missing").await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn an_interrupted_export_is_taken_over_then_failed_after_its_attempts(
    store: Arc<dyn Store>,
) {
    let job = queued(&*store, ExportKind::Transactions).await;
    store
        .claim_export("node-a", T0, T0 + 1_000, 2)
        .await
        .unwrap()
        .unwrap();
    store
        .export_progress(&job.id, "node-a", 7, Some(9), T0 + 1_000)
        .await
        .unwrap();
    // node-a went silent; its claim ran out: node-b starts the job from scratch.
    let taken = store
        .claim_export("node-b", T0 + 1_000, T0 + 2_000, 2)
        .await
        .unwrap()
        .expect("a job whose claim ran out");
    assert_eq!(taken.id, job.id);
    assert_eq!(taken.attempts, 2);
    assert_eq!(taken.rows_done, 0);
    assert_eq!(taken.claimed_by.as_deref(), Some("node-b"));
    // node-a wakes up: its progress is refused, so it stops.
    assert!(
        !store
            .export_progress(&job.id, "node-a", 8, None, T0 + 3_000)
            .await
            .unwrap()
    );
    // node-b dies too: two starts were allowed, so the job fails instead of a third.
    assert!(
        store
            .claim_export("node-c", T0 + 2_000, T0 + 3_000, 2)
            .await
            .unwrap()
            .is_none()
    );
    let failed = store.get_export(&job.id).await.unwrap();
    assert_eq!(failed.status, ExportStatus::Failed);
    assert!(failed.error.unwrap().contains("interrupted 2 times"));
}

pub async fn a_restarted_node_queues_its_running_exports_again(store: Arc<dyn Store>) {
    let job = queued(&*store, ExportKind::LedgerEntries).await;
    let other = queued(&*store, ExportKind::LedgerEntries).await;
    store
        .claim_export("node-a", T0, T0 + 60_000, 3)
        .await
        .unwrap()
        .unwrap();
    store
        .claim_export("node-b", T0, T0 + 60_000, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.requeue_exports_of("node-a").await.unwrap(), 1);
    let requeued = store.get_export(&job.id).await.unwrap();
    assert_eq!(requeued.status, ExportStatus::Queued);
    assert_eq!(requeued.claimed_by, None);
    // node-b's job is not node-a's to give up.
    assert_eq!(
        store.get_export(&other.id).await.unwrap().status,
        ExportStatus::Running
    );
    let again = store
        .claim_export("node-a", T0 + 1, T0 + 60_001, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.attempts), (job.id.clone(), 2));
    // A job that takes its node down with it is not started once per restart: after its
    // third start it fails, although its claim never ran out.
    assert_eq!(store.requeue_exports_of("node-a").await.unwrap(), 1);
    let third = store
        .claim_export("node-a", T0 + 2, T0 + 60_002, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((third.id, third.attempts), (job.id.clone(), 3));
    assert_eq!(store.requeue_exports_of("node-a").await.unwrap(), 1);
    let next = store
        .claim_export("node-a", T0 + 3, T0 + 60_003, 3)
        .await
        .unwrap();
    assert!(next.is_none(), "{next:?}");
    let failed = store.get_export(&job.id).await.unwrap();
    assert_eq!(failed.status, ExportStatus::Failed);
    assert!(failed.error.unwrap().contains("interrupted 3 times"));
}

pub async fn concurrent_claimers_take_each_export_once(store: Arc<dyn Store>) {
    let mut created = HashSet::new();
    for _ in 0..6 {
        created.insert(queued(&*store, ExportKind::LedgerEntries).await.id);
    }
    let claimers = (0..4).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let node = format!("node-{n}");
            let mut mine = Vec::new();
            while let Some(job) = store.claim_export(&node, T0, T0 + 60_000, 3).await.unwrap() {
                mine.push(job.id);
            }
            mine
        })
    });
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.unwrap());
    }
    let unique: HashSet<_> = claimed.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        claimed.len(),
        "a job claimed twice: {claimed:?}"
    );
    assert_eq!(unique, created);
}

async fn paid(store: &dyn Store, terminal: &Terminal, order_ref: &str, amount: i64) {
    order(store, terminal, order_ref, amount).await;
    store
        .apply_payment_event(inbox(), event(order_ref, "paid", amount), &Rules)
        .await
        .unwrap();
}

pub(crate) async fn all_rows(
    store: &dyn Store,
    kind: ExportKind,
    filter: &ExportFilter,
) -> ExportRows {
    let mut after: Option<String> = None;
    let mut ledger = Vec::new();
    let mut transactions = Vec::new();
    let mut adjustments = Vec::new();
    let mut run_rows = Vec::new();
    let mut invoices = Vec::new();
    let mut customers = Vec::new();
    loop {
        let page = store
            .export_rows(kind, filter, after.as_deref(), 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last_id();
        match page {
            ExportRows::LedgerEntries(rows) => ledger.extend(rows),
            ExportRows::Transactions(rows) => transactions.extend(rows),
            ExportRows::SettlementAdjustments(rows) => adjustments.extend(rows),
            ExportRows::ReconciliationRows(rows) => run_rows.extend(rows),
            ExportRows::BillingInvoices(rows) => invoices.extend(rows),
            ExportRows::BillingCustomers(rows) => customers.extend(rows),
        }
    }
    match kind {
        ExportKind::LedgerEntries => ExportRows::LedgerEntries(ledger),
        ExportKind::Transactions => ExportRows::Transactions(transactions),
        ExportKind::SettlementAdjustments => ExportRows::SettlementAdjustments(adjustments),
        ExportKind::ReconciliationRows => ExportRows::ReconciliationRows(run_rows),
        ExportKind::BillingInvoices | ExportKind::BillingInvoicesXlsx => {
            ExportRows::BillingInvoices(invoices)
        }
        ExportKind::BillingCustomers => ExportRows::BillingCustomers(customers),
    }
}

pub async fn export_rows_page_by_id_and_filter_by_merchant_time_and_type(store: Arc<dyn Store>) {
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let ApprovedTerminal {
        terminal: ta,
        merchant: ma,
        ..
    } = approved_terminal(&*store, "EXA").await;
    let ApprovedTerminal { terminal: tb, .. } = approved_terminal(&*store, "EXB").await;
    paid(&*store, &ta, "EX-A1", 10_000).await;
    paid(&*store, &ta, "EX-A2", 20_000).await;
    paid(&*store, &tb, "EX-B1", 30_000).await;
    order(&*store, &ta, "EX-A3", 5_000).await; // pending: no ledger rows
    let after = OffsetDateTime::now_utc() + time::Duration::seconds(1);

    let of_a = ExportFilter {
        merchant_id: Some(ma.id.clone()),
        ..Default::default()
    };
    let ExportRows::LedgerEntries(rows) = all_rows(&*store, ExportKind::LedgerEntries, &of_a).await
    else {
        panic!("ledger rows")
    };
    // Three postings per paid transaction, in id order, only merchant A's.
    assert_eq!(rows.len(), 6);
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
    assert!(rows.iter().all(|r| r.merchant_id == ma.id));
    assert_eq!(
        store
            .count_export_rows(ExportKind::LedgerEntries, &of_a)
            .await
            .unwrap(),
        6
    );
    let fees = ExportFilter {
        entry_type: Some(LedgerEntryType::GrossIncome),
        ..of_a.clone()
    };
    let ExportRows::LedgerEntries(gross) =
        all_rows(&*store, ExportKind::LedgerEntries, &fees).await
    else {
        panic!("ledger rows")
    };
    assert_eq!(
        gross.iter().map(|r| r.amount).collect::<Vec<_>>(),
        [10_000, 20_000]
    );

    // The time range: everything lies between `before` and `after`.
    let window = |from, to| ExportFilter {
        from,
        to,
        ..Default::default()
    };
    for (filter, expected) in [
        (window(Some(before), Some(after)), 9),
        (window(Some(after), None), 0),
        (window(None, Some(before)), 0),
    ] {
        assert_eq!(
            store
                .count_export_rows(ExportKind::LedgerEntries, &filter)
                .await
                .unwrap(),
            expected,
            "{filter:?}"
        );
    }

    let pending = ExportFilter {
        status: Some(TransactionStatus::Pending),
        ..Default::default()
    };
    let ExportRows::Transactions(rows) =
        all_rows(&*store, ExportKind::Transactions, &pending).await
    else {
        panic!("transaction rows")
    };
    assert_eq!(
        rows.iter()
            .map(|t| t.order_ref.as_str())
            .collect::<Vec<_>>(),
        ["EX-A3"]
    );
    assert_eq!(
        store
            .count_export_rows(ExportKind::Transactions, &ExportFilter::default())
            .await
            .unwrap(),
        4
    );
}

pub async fn bench_seeding_writes_ordered_ledger_rows(store: Arc<dyn Store>) {
    let ApprovedTerminal {
        terminal, merchant, ..
    } = approved_terminal(&*store, "EXS").await;
    let trx = order(&*store, &terminal, "EX-S1", 1_000).await;
    store
        .seed_ledger_entries_for_bench(&merchant.id, &trx.id, 1_000)
        .await
        .unwrap();
    let filter = ExportFilter {
        merchant_id: Some(merchant.id.clone()),
        ..Default::default()
    };
    assert_eq!(
        store
            .count_export_rows(ExportKind::LedgerEntries, &filter)
            .await
            .unwrap(),
        1_000
    );
    let ExportRows::LedgerEntries(first) = store
        .export_rows(ExportKind::LedgerEntries, &filter, None, 3)
        .await
        .unwrap()
    else {
        panic!("ledger rows")
    };
    assert_eq!(
        first.iter().map(|r| r.entry_type).collect::<Vec<_>>(),
        [
            LedgerEntryType::GrossIncome,
            LedgerEntryType::PlatformFee,
            LedgerEntryType::MerchantPayable
        ]
    );
}
