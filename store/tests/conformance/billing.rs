//! Billing behaviours every backend must show: one invoice per customer and period whatever
//! runs at once, one winner among concurrent payments, an invoice QRIS applied once.

use std::sync::Arc;

use gema_store::billing::*;
use gema_store::testing::approved_terminal;
use gema_store::*;

use crate::payments::{Rules, event, inbox, now_ms};

async fn package(store: &dyn Store, name: &str) -> Package {
    store
        .create_package(NewPackage {
            name: name.into(),
            speed: Some("10 Mbps".into()),
            description: None,
            price: 100_000,
            active: true,
        })
        .await
        .unwrap()
}

fn new_customer(merchant: &str, package: &str, i: usize) -> NewCustomer {
    NewCustomer {
        merchant_id: merchant.into(),
        package_id: package.into(),
        name: format!("Pelanggan {i}"),
        phone: format!("62812{:08}", i),
        nik: None,
        address: None,
        billing_day: 5,
        discount: if i.is_multiple_of(2) { 10_000 } else { 0 },
        register_date: "2026-01-01".into(),
        notes: None,
    }
}

fn invoices_for(candidates: &[InvoiceCandidate], tag: &str) -> Vec<NewInvoice> {
    candidates
        .iter()
        .map(|c| NewInvoice {
            customer_id: c.customer_id.clone(),
            merchant_id: c.merchant_id.clone(),
            period: "2026-03".into(),
            package_id: c.package_id.clone(),
            package_name: c.package_name.clone(),
            amount: c.price,
            discount: c.discount,
            due_date: "2026-02-05".into(),
            receipt_token: format!("{tag}-{}", c.customer_id),
        })
        .collect()
}

fn stale(err: StoreError) -> &'static str {
    match err {
        StoreError::Conflict { code, .. } => code,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn one_invoice(store: &dyn Store, merchant: &str, tag: &str) -> Invoice {
    let package = package(store, &format!("Paket {tag}")).await;
    let customer = store
        .create_customer(new_customer(merchant, &package.id, 1), "test")
        .await
        .unwrap();
    let candidates = store
        .invoice_candidates(5, "2026-03", Some(merchant))
        .await
        .unwrap();
    assert_eq!(candidates.len(), 1);
    store
        .insert_invoices(invoices_for(&candidates, tag))
        .await
        .unwrap();
    store
        .list_invoices(
            &InvoiceFilter {
                customer_id: Some(customer.id),
                ..Default::default()
            },
            &PageRequest::first(10),
        )
        .await
        .unwrap()
        .items
        .remove(0)
}

pub async fn concurrent_runs_make_one_invoice_per_customer_and_period(store: Arc<dyn Store>) {
    let merchant = testing::approved_merchant(&*store, "Warung Billing").await;
    let package = package(&*store, "Paket 10 Mbps").await;
    for i in 0..40 {
        store
            .create_customer(new_customer(&merchant.id, &package.id, i), "test")
            .await
            .unwrap();
    }
    // A stopped customer is not billed.
    let stopped = store
        .create_customer(new_customer(&merchant.id, &package.id, 99), "test")
        .await
        .unwrap();
    store
        .set_customer_status(&stopped.id, CustomerStatus::Stopped, None, "test")
        .await
        .unwrap();
    let candidates = store.invoice_candidates(5, "2026-03", None).await.unwrap();
    assert_eq!(candidates.len(), 40);
    // Two runs that both read the candidates before either wrote.
    let (a, b) = tokio::join!(
        store.insert_invoices(invoices_for(&candidates, "a")),
        store.insert_invoices(invoices_for(&candidates, "b"))
    );
    assert_eq!(a.unwrap() + b.unwrap(), 40, "each customer's invoice once");
    assert!(
        store
            .invoice_candidates(5, "2026-03", None)
            .await
            .unwrap()
            .is_empty()
    );
    let all = store
        .list_invoices(&InvoiceFilter::default(), &PageRequest::first(200))
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 40);
    let discounted = all.iter().filter(|i| i.discount == 10_000).count();
    assert_eq!(discounted, 20);
    assert!(all.iter().all(|i| i.total_amount == i.amount - i.discount));
    // Another period is another invoice.
    assert_eq!(
        store
            .invoice_candidates(5, "2026-04", None)
            .await
            .unwrap()
            .len(),
        40
    );
}

pub async fn concurrent_payments_of_one_invoice_let_one_win(store: Arc<dyn Store>) {
    let merchant = testing::approved_merchant(&*store, "Warung Bayar").await;
    let invoice = one_invoice(&*store, &merchant.id, "pay").await;
    let mut tasks = Vec::new();
    for n in 0..6 {
        let store = store.clone();
        let id = invoice.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .pay_invoice(
                    &id,
                    ManualPayment {
                        version: 1,
                        method: PaymentMethod::Cash,
                        note: None,
                        actor: format!("user-{n}"),
                        today: "2026-02-05".into(),
                    },
                )
                .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(paid) => {
                won += 1;
                assert_eq!(paid.invoice.version, 2);
            }
            Err(err) => assert_eq!(stale(err), "stale_version"),
        }
    }
    assert_eq!(won, 1, "one payment wins");
    let events = store.invoice_events(&invoice.id).await.unwrap();
    assert_eq!(events.len(), 1);
    let unpaid = store
        .unpay_invoice(&invoice.id, 2, Some("salah catat"), "test")
        .await
        .unwrap();
    assert_eq!((unpaid.status, unpaid.version), (InvoiceStatus::Unpaid, 3));
    assert_eq!(
        stale(
            store
                .unpay_invoice(&invoice.id, 3, None, "test")
                .await
                .unwrap_err()
        ),
        "not_paid"
    );
}

pub async fn an_invoice_qris_payment_is_applied_once(store: Arc<dyn Store>) {
    let approved = approved_terminal(&*store, "qris").await;
    let invoice = one_invoice(&*store, &approved.merchant.id, "qris").await;
    let transaction = store
        .create_invoice_qris(
            &invoice.id,
            NewTransaction {
                terminal_id: approved.terminal.id.clone(),
                order_ref: "IVTESTORDER1".into(),
                amount: invoice.total_amount,
                expires_at_ms: now_ms() + 600_000,
            },
            "test",
        )
        .await
        .unwrap();
    // Not paid yet: nothing to apply.
    assert_eq!(
        store
            .settle_invoice_qris(&transaction.id, "2026-02-05")
            .await
            .unwrap(),
        QrisSettled::NotPaid
    );
    store
        .apply_payment_event(
            inbox(),
            event("IVTESTORDER1", "paid", invoice.total_amount),
            &Rules,
        )
        .await
        .unwrap();
    assert_eq!(
        store.unsettled_invoice_qris(10).await.unwrap(),
        std::slice::from_ref(&transaction.id),
        "a paid invoice QRIS not yet applied is found by the sweep"
    );
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        let id = transaction.id.clone();
        tasks.push(tokio::spawn(async move {
            store.settle_invoice_qris(&id, "2026-02-05").await.unwrap()
        }));
    }
    let mut paid = 0;
    for task in tasks {
        match task.await.unwrap() {
            QrisSettled::Paid(p) => {
                paid += 1;
                assert_eq!(p.invoice.payment_method.as_deref(), Some("qris"));
                assert_eq!(
                    p.invoice.transaction_id.as_deref(),
                    Some(transaction.id.as_str())
                );
            }
            QrisSettled::Unchanged => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(paid, 1);
    assert!(store.unsettled_invoice_qris(10).await.unwrap().is_empty());
    let kinds: Vec<String> = store
        .invoice_events(&invoice.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["qris_issued", "paid"]);
    assert_eq!(
        stale(
            store
                .unpay_invoice(&invoice.id, 2, None, "test")
                .await
                .unwrap_err()
        ),
        "paid_by_qris"
    );
}

pub async fn concurrent_pay_pages_share_one_invoice_qris(store: Arc<dyn Store>) {
    let approved = approved_terminal(&*store, "paypage").await;
    let invoice = one_invoice(&*store, &approved.merchant.id, "paypage").await;
    let without = store.reminder_invoices("2026-02-05").await.unwrap();
    assert!(
        without
            .iter()
            .any(|r| r.invoice_id == invoice.id && !r.payable_by_qris),
        "a merchant whose terminals have no static QRIS is not payable by QRIS"
    );
    assert!(
        store
            .invoice_qris_terminal(&approved.merchant.id)
            .await
            .unwrap()
            .is_none()
    );
    store
        .update_terminal(
            &approved.terminal.id,
            TerminalPatch {
                static_qris: Some(Some("000201".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .invoice_qris_terminal(&approved.merchant.id)
            .await
            .unwrap()
            .as_deref(),
        Some(approved.terminal.id.as_str())
    );
    let by_token = store
        .invoice_by_token(&invoice.receipt_token)
        .await
        .unwrap()
        .expect("the token finds its invoice while unpaid");
    assert_eq!(by_token.id, invoice.id);
    assert!(
        store
            .invoice_by_token("no-such-token")
            .await
            .unwrap()
            .is_none()
    );
    let reminders = store.reminder_invoices("2026-02-05").await.unwrap();
    let reminder = reminders
        .iter()
        .find(|r| r.invoice_id == invoice.id)
        .expect("the unpaid invoice is due for a reminder");
    assert!(reminder.payable_by_qris, "its merchant has a QRIS terminal");
    assert_eq!(reminder.receipt_token, invoice.receipt_token);

    let new = |n: usize, expires_at_ms: i64| NewTransaction {
        terminal_id: approved.terminal.id.clone(),
        order_ref: format!("IVPAYPAGE{n}"),
        amount: invoice.total_amount,
        expires_at_ms,
    };
    let now = now_ms();
    let mut tasks = Vec::new();
    for n in 0..6 {
        let store = store.clone();
        let id = invoice.id.clone();
        let new = new(n, now + 600_000);
        tasks.push(tokio::spawn(async move {
            store
                .current_or_create_invoice_qris(&id, now, new, "pay-page")
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    let mut created = 0;
    for task in tasks {
        let (transaction, was_created) = task.await.unwrap();
        created += usize::from(was_created);
        ids.push(transaction.id);
    }
    ids.dedup();
    assert_eq!(
        (created, ids.len()),
        (1, 1),
        "one QRIS shared by every caller"
    );
    // Past its expiry a new one is issued.
    let (later, was_created) = store
        .current_or_create_invoice_qris(
            &invoice.id,
            now + 600_001,
            new(9, now + 1_200_000),
            "pay-page",
        )
        .await
        .unwrap();
    assert!(was_created);
    assert_ne!(later.id, ids[0]);
    let issued = store
        .invoice_events(&invoice.id)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == "qris_issued")
        .count();
    assert_eq!(issued, 2);
}

pub async fn packages_in_use_stay_and_phones_are_unique_per_merchant(store: Arc<dyn Store>) {
    let a = testing::approved_merchant(&*store, "Warung A").await;
    let b = testing::approved_merchant(&*store, "Warung B").await;
    let used = package(&*store, "Paket Dipakai").await;
    store
        .create_customer(new_customer(&a.id, &used.id, 7), "test")
        .await
        .unwrap();
    assert_eq!(
        stale(
            store
                .create_customer(new_customer(&a.id, &used.id, 7), "test")
                .await
                .unwrap_err()
        ),
        "phone_taken"
    );
    // The same number at another merchant is another customer.
    store
        .create_customer(new_customer(&b.id, &used.id, 7), "test")
        .await
        .unwrap();
    assert_eq!(
        stale(store.delete_package(&used.id).await.unwrap_err()),
        "package_in_use"
    );
    let unused = package(&*store, "Paket Kosong").await;
    store.delete_package(&unused.id).await.unwrap();
    assert!(matches!(
        store.get_package(&unused.id).await,
        Err(StoreError::NotFound { .. })
    ));
}
