//! Settlement behaviours every backend must show: batches take each payable once, the
//! lifecycle's rules, adjustments as ledger entries, and balances that always add up.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use gema_store::testing::{ApprovedTerminal, approved_terminal};
use gema_store::*;

use crate::payments::{Rules, event, inbox, now_ms, order};

fn bank() -> NewBankAccount {
    NewBankAccount {
        bank_code: "014".into(),
        account_number: "1234567890".into(),
        account_holder: "Warung Bu Sri".into(),
    }
}

fn request(cutoff_ms: i64, merchants: Option<Vec<String>>) -> GenerateBatches {
    GenerateBatches {
        cutoff_ms: Some(cutoff_ms),
        merchant_ids: merchants,
        exclude_merchant_ids: Vec::new(),
        schedule: None,
        default_schedule: PayoutSchedule::Manual,
        default_minimum: 1,
        generated_by: "test".into(),
    }
}

async fn pay(store: &dyn Store, terminal: &Terminal, order_ref: &str, amount: i64) {
    order(store, terminal, order_ref, amount).await;
    store
        .apply_payment_event(inbox(), event(order_ref, "paid", amount), &Rules)
        .await
        .unwrap();
}

async fn all_items(store: &dyn Store, batch_id: &str) -> Vec<BatchItem> {
    let mut items = Vec::new();
    let mut page = PageRequest::first(200);
    loop {
        let got = store.settlement_batch_items(batch_id, &page).await.unwrap();
        items.extend(got.items);
        match got.next_after {
            Some(after) => page.after = Some(after),
            None => return items,
        }
    }
}

async fn all_batches(store: &dyn Store) -> Vec<SettlementBatch> {
    let mut batches = Vec::new();
    let mut page = PageRequest::first(200);
    loop {
        let got = store
            .list_settlement_batches(&BatchFilter::default(), &page)
            .await
            .unwrap();
        batches.extend(got.items);
        match got.next_after {
            Some(after) => page.after = Some(after),
            None => return batches,
        }
    }
}

/// Every merchant's balances add up, each live entry is in one batch, and each batch's
/// recorded totals are what its items sum to.
async fn check_books(store: &dyn Store, merchants: &[String], step: &str) {
    let mut live = HashSet::new();
    for batch in all_batches(store).await {
        let items = all_items(store, &batch.id).await;
        let live_items: Vec<&BatchItem> = items.iter().filter(|i| i.live).collect();
        for item in &live_items {
            assert!(
                live.insert(item.ledger_entry_id.clone()),
                "{step}: entry {} is in two live batches",
                item.ledger_entry_id
            );
        }
        assert_eq!(
            items.iter().map(|i| i.amount).sum::<i64>(),
            batch.net_amount(),
            "{step}: batch {} totals differ from its items",
            batch.id
        );
        if batch.reprocessed_at.is_some() {
            assert!(
                live_items.is_empty(),
                "{step}: a reprocessed batch keeps entries"
            );
        } else {
            assert_eq!(live_items.len(), items.len(), "{step}");
        }
        if batch.status == BatchStatus::Paid {
            assert_eq!(batch.paid_amount, Some(batch.net_amount()), "{step}");
        }
    }
    for merchant in merchants {
        let b = store.merchant_balance(merchant).await.unwrap();
        assert_eq!(
            b.ledger_total,
            b.unbatched + b.in_batch + b.paid + b.held,
            "{step}: balances of {merchant} do not add up: {b:?}"
        );
        assert!(b.held >= 0, "{step}: negative held {b:?}");
    }
}

/// A small deterministic generator, so a failing sequence can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The model's view of a batch: what each operation is allowed to do to it.
#[derive(Debug, Clone)]
struct ModelBatch {
    status: BatchStatus,
    reprocessed: bool,
    reference: Option<String>,
}

/// Random sequences of payments, refunds, generations, adjustments, mark-paid, fail,
/// cancel and reprocess, over three merchants: after every step the books add up, no entry
/// is in two live batches, and each operation succeeds exactly when the lifecycle allows it.
pub async fn balances_add_up_through_random_operations(store: Arc<dyn Store>) {
    let mut terminals = Vec::new();
    let mut merchants = Vec::new();
    for tag in ["S1", "S2", "S3"] {
        let ApprovedTerminal {
            merchant, terminal, ..
        } = approved_terminal(&*store, tag).await;
        if tag != "S3" {
            store.put_bank_account(&merchant.id, bank()).await.unwrap();
        }
        merchants.push(merchant.id.clone());
        terminals.push(terminal);
    }
    for seed in [7u64, 1_234_567, 987_654_321] {
        let mut rng = Rng(seed);
        let mut paid_orders: Vec<(String, i64)> = Vec::new();
        let mut model: BTreeMap<String, ModelBatch> = BTreeMap::new();
        for step in 0..45 {
            let op = rng.below(10);
            let label = format!("seed {seed} step {step} op {op}");
            let batch_ids: Vec<String> = model.keys().cloned().collect();
            let pick = |rng: &mut Rng| {
                (!batch_ids.is_empty())
                    .then(|| batch_ids[rng.below(batch_ids.len() as u64) as usize].clone())
            };
            match op {
                0..=2 => {
                    let t = rng.below(3) as usize;
                    let amount = 1_000 * (1 + rng.below(90) as i64);
                    let order_ref = format!("SET-{seed}-{step}");
                    pay(&*store, &terminals[t], &order_ref, amount).await;
                    paid_orders.push((order_ref, amount));
                }
                3 => {
                    if let Some((order_ref, amount)) = paid_orders.pop() {
                        store
                            .apply_payment_event(
                                inbox(),
                                event(&order_ref, "refunded", amount),
                                &Rules,
                            )
                            .await
                            .unwrap();
                    }
                }
                4 => {
                    let only =
                        (rng.below(2) == 0).then(|| vec![merchants[rng.below(3) as usize].clone()]);
                    let done = store
                        .generate_settlement_batches(request(now_ms(), only))
                        .await
                        .unwrap();
                    for batch in done.batches {
                        assert_ne!(batch.merchant_id, merchants[2], "{label}: no bank account");
                        model.insert(
                            batch.id,
                            ModelBatch {
                                status: BatchStatus::Pending,
                                reprocessed: false,
                                reference: None,
                            },
                        );
                    }
                    for skipped in done.skipped {
                        if skipped.merchant_id == merchants[2] && skipped.amount > 0 {
                            assert_eq!(skipped.reason, "no_bank_account", "{label}");
                        }
                    }
                }
                5 => {
                    let Some(id) = pick(&mut rng) else { continue };
                    let types = AdjustmentType::ALL;
                    let kind = types[rng.below(types.len() as u64) as usize];
                    let magnitude = 100 * (1 + rng.below(50) as i64);
                    let amount = match kind {
                        AdjustmentType::Hold | AdjustmentType::Chargeback => -magnitude,
                        AdjustmentType::Release => magnitude,
                        _ if rng.below(2) == 0 => magnitude,
                        _ => -magnitude,
                    };
                    let result = store
                        .add_settlement_adjustment(
                            &id,
                            NewAdjustment {
                                adjustment_type: kind,
                                amount,
                                reason: "test".into(),
                            },
                            "test",
                        )
                        .await;
                    let pending = model[&id].status == BatchStatus::Pending;
                    match result {
                        Ok(_) => assert!(pending, "{label}: adjusted a closed batch"),
                        Err(StoreError::Conflict { field, .. }) => {
                            assert!(
                                !pending || field == Some("amount"),
                                "{label}: a pending batch refused for {field:?}"
                            )
                        }
                        Err(err) => panic!("{label}: {err}"),
                    }
                }
                6 => {
                    let Some(id) = pick(&mut rng) else { continue };
                    let reference = format!("TRF-{}", rng.below(3));
                    let result = store
                        .mark_settlement_batch_paid(&id, &reference, Some("note"), "test")
                        .await;
                    let m = model.get_mut(&id).unwrap();
                    let allowed = m.status == BatchStatus::Pending
                        || (m.status == BatchStatus::Paid
                            && m.reference.as_deref() == Some(reference.as_str()));
                    assert_eq!(result.is_ok(), allowed, "{label}: {result:?} {m:?}");
                    if allowed {
                        m.status = BatchStatus::Paid;
                        m.reference = Some(reference);
                    }
                }
                7 | 8 => {
                    let Some(id) = pick(&mut rng) else { continue };
                    let to = if op == 7 {
                        BatchStatus::Failed
                    } else {
                        BatchStatus::Cancelled
                    };
                    let result = store
                        .close_settlement_batch(&id, to, "bank rejected", "test")
                        .await;
                    let m = model.get_mut(&id).unwrap();
                    assert_eq!(result.is_ok(), m.status == BatchStatus::Pending, "{label}");
                    if result.is_ok() {
                        m.status = to;
                    }
                }
                _ => {
                    let Some(id) = pick(&mut rng) else { continue };
                    let result = store.reprocess_settlement_batch(&id, "test").await;
                    let m = model.get_mut(&id).unwrap();
                    let allowed = matches!(m.status, BatchStatus::Failed | BatchStatus::Cancelled)
                        && !m.reprocessed;
                    assert_eq!(result.is_ok(), allowed, "{label}: {result:?}");
                    if allowed {
                        m.reprocessed = true;
                    }
                }
            }
            check_books(&*store, &merchants, &label).await;
        }
    }
    // Everything paid out was paid once: the sum of paid batches is the paid balance.
    let paid_batches: i64 = all_batches(&*store)
        .await
        .iter()
        .filter(|b| b.status == BatchStatus::Paid)
        .map(|b| b.net_amount())
        .sum();
    let mut paid_balances = 0;
    for m in &merchants {
        paid_balances += store.merchant_balance(m).await.unwrap().paid;
    }
    assert_eq!(paid_batches, paid_balances);
}

/// Two generations at the same time: each payable lands in exactly one batch.
pub async fn concurrent_generations_never_batch_an_entry_twice(store: Arc<dyn Store>) {
    let mut merchants = Vec::new();
    for tag in ["C1", "C2", "C3", "C4"] {
        let ApprovedTerminal {
            merchant, terminal, ..
        } = approved_terminal(&*store, tag).await;
        store.put_bank_account(&merchant.id, bank()).await.unwrap();
        for i in 0..10 {
            pay(&*store, &terminal, &format!("CG-{tag}-{i}"), 10_000 + i).await;
        }
        merchants.push(merchant.id);
    }
    let cutoff = now_ms();
    let a = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .generate_settlement_batches(request(cutoff, None))
                .await
        })
    };
    let b = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .generate_settlement_batches(request(cutoff, None))
                .await
        })
    };
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert_eq!(
        a.batches.len() + b.batches.len(),
        4,
        "one batch per merchant: {a:?} {b:?}"
    );
    let mut seen = HashSet::new();
    for batch in a.batches.iter().chain(&b.batches) {
        for item in all_items(&*store, &batch.id).await {
            assert!(seen.insert(item.ledger_entry_id), "an entry in two batches");
        }
    }
    assert_eq!(seen.len(), 40);
    check_books(&*store, &merchants, "after concurrent generations").await;
}

/// The lifecycle, step by step: skips are reported, mark-paid is idempotent only with its
/// reference, a failed batch's entries come back once, a refund after payout nets into the
/// next batch, a hold is kept until released.
pub async fn the_batch_lifecycle_follows_its_rules(store: Arc<dyn Store>) {
    let ApprovedTerminal {
        merchant, terminal, ..
    } = approved_terminal(&*store, "L1").await;
    pay(&*store, &terminal, "LC-1", 100_000).await;
    pay(&*store, &terminal, "LC-2", 50_000).await;

    // No bank account: skipped, and said so.
    let none = store
        .generate_settlement_batches(request(now_ms(), None))
        .await
        .unwrap();
    assert!(none.batches.is_empty());
    assert_eq!(none.skipped.len(), 1);
    assert_eq!(none.skipped[0].reason, "no_bank_account");
    assert_eq!(none.skipped[0].amount, 99_300 + 49_650);

    // Below the minimum: skipped.
    store.put_bank_account(&merchant.id, bank()).await.unwrap();
    let mut high = request(now_ms(), None);
    high.default_minimum = 1_000_000;
    let low = store.generate_settlement_batches(high).await.unwrap();
    assert_eq!(low.skipped[0].reason, "below_minimum");

    // A cut-off before the payments takes nothing.
    let early = store
        .generate_settlement_batches(request(now_ms() - 3_600_000, None))
        .await
        .unwrap();
    assert!(early.batches.is_empty() && early.skipped.is_empty());

    let first = store
        .generate_settlement_batches(request(now_ms(), Some(vec![merchant.id.clone()])))
        .await
        .unwrap();
    assert_eq!(first.batches.len(), 1);
    let batch = &first.batches[0];
    assert_eq!(batch.payable_amount, 148_950);
    assert_eq!(batch.item_count, 2);
    assert_eq!(batch.account_number, "1234567890");

    // Nothing is batched twice.
    let again = store
        .generate_settlement_batches(request(now_ms(), None))
        .await
        .unwrap();
    assert!(again.batches.is_empty() && again.skipped.is_empty());

    // A hold withholds; a release beyond it is refused.
    let (_, held) = store
        .add_settlement_adjustment(
            &batch.id,
            NewAdjustment {
                adjustment_type: AdjustmentType::Hold,
                amount: -8_950,
                reason: "KYC document pending".into(),
            },
            "finance@test",
        )
        .await
        .unwrap();
    assert_eq!(held.net_amount(), 140_000);
    let too_much = store
        .add_settlement_adjustment(
            &batch.id,
            NewAdjustment {
                adjustment_type: AdjustmentType::Release,
                amount: 10_000,
                reason: "too much".into(),
            },
            "finance@test",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            too_much,
            StoreError::Conflict {
                field: Some("amount"),
                ..
            }
        ),
        "{too_much:?}"
    );
    let below_nothing = store
        .add_settlement_adjustment(
            &batch.id,
            NewAdjustment {
                adjustment_type: AdjustmentType::Chargeback,
                amount: -200_000,
                reason: "chargeback".into(),
            },
            "finance@test",
        )
        .await
        .unwrap_err();
    assert!(matches!(
        below_nothing,
        StoreError::Conflict {
            field: Some("amount"),
            ..
        }
    ));

    // Fail, reprocess once, regenerate: the same entries, the hold still in.
    store
        .close_settlement_batch(
            &batch.id,
            BatchStatus::Failed,
            "account closed",
            "finance@test",
        )
        .await
        .unwrap();
    let paid_failed = store
        .mark_settlement_batch_paid(&batch.id, "TRF-1", None, "finance@test")
        .await
        .unwrap_err();
    assert!(matches!(
        paid_failed,
        StoreError::Conflict {
            code: "invalid_transition",
            ..
        }
    ));
    store
        .reprocess_settlement_batch(&batch.id, "finance@test")
        .await
        .unwrap();
    assert!(
        store
            .reprocess_settlement_batch(&batch.id, "finance@test")
            .await
            .is_err()
    );
    let second = store
        .generate_settlement_batches(request(now_ms(), None))
        .await
        .unwrap();
    assert_eq!(second.batches.len(), 1);
    let second = &second.batches[0];
    assert_eq!(second.net_amount(), 140_000);
    assert_eq!(second.payable_amount, 148_950);

    // Paid once; again with the same reference is the same answer, another is refused.
    let paid = store
        .mark_settlement_batch_paid(&second.id, "TRF-2", Some("BCA bulk"), "finance@test")
        .await
        .unwrap();
    assert_eq!(paid.status, BatchStatus::Paid);
    assert_eq!(paid.paid_amount, Some(140_000));
    let same = store
        .mark_settlement_batch_paid(&second.id, "TRF-2", Some("BCA bulk"), "finance@test")
        .await
        .unwrap();
    assert_eq!(same, paid);
    let other = store
        .mark_settlement_batch_paid(&second.id, "TRF-3", None, "finance@test")
        .await
        .unwrap_err();
    assert!(matches!(
        other,
        StoreError::Conflict {
            code: "already_paid",
            ..
        }
    ));
    assert!(
        store
            .reprocess_settlement_batch(&second.id, "finance@test")
            .await
            .is_err()
    );
    let corrected = store
        .set_settlement_batch_reference(&second.id, "TRF-2b", "finance@test")
        .await
        .unwrap();
    assert_eq!(corrected.payout_reference.as_deref(), Some("TRF-2b"));

    // A refund after payout nets into the next batch.
    store
        .apply_payment_event(inbox(), event("LC-2", "refunded", 50_000), &Rules)
        .await
        .unwrap();
    pay(&*store, &terminal, "LC-3", 200_000).await;
    let third = store
        .generate_settlement_batches(request(now_ms(), None))
        .await
        .unwrap();
    assert_eq!(third.batches[0].payable_amount, 198_600 - 49_650);

    let balance = store.merchant_balance(&merchant.id).await.unwrap();
    assert_eq!(balance.held, 8_950);
    assert_eq!(balance.paid, 140_000);
    assert_eq!(balance.in_batch, 198_600 - 49_650);
    assert_eq!(balance.unbatched, 0);
    assert_eq!(balance.ledger_total, 148_950 - 49_650 + 198_600);

    let events: Vec<String> = store
        .settlement_batch_events(&batch.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events, ["generated", "adjusted", "failed", "reprocessed"]);
    let adjustments = store
        .list_settlement_adjustments(
            &AdjustmentFilter {
                merchant_id: Some(merchant.id.clone()),
                batch_id: None,
                adjustment_type: Some(AdjustmentType::Hold),
                from_ms: Some(now_ms() - 60_000),
                to_ms: Some(now_ms() + 1),
            },
            &PageRequest::first(10),
        )
        .await
        .unwrap();
    assert_eq!(adjustments.items.len(), 1);
    let totals = store.settlement_totals(Some(&merchant.id)).await.unwrap();
    assert_eq!(totals.paid_payout, 140_000);
    assert_eq!(totals.pending_payout, 198_600 - 49_650);
    assert_eq!(totals.held, 8_950);
    let today = store
        .paid_totals(Some(&merchant.id), now_ms() - 60_000, now_ms() + 1)
        .await
        .unwrap();
    assert_eq!(
        today,
        PaidTotals {
            count: 3,
            amount: 350_000
        }
    );
}
