//! Billing settings, receipts and finance reads on every backend: a write-only webhook
//! secret, a logo kept apart from the settings, receipts only for paid invoices, and
//! finance figures that add up (periods, paid-at ranges, register-date growth, pages).

use std::sync::Arc;

use gema_store::testing::approved_merchant;
use gema_store::*;
use time::macros::datetime;

fn settings(secret: SecretChange) -> NewBillingSettings {
    NewBillingSettings {
        business_name: Some("WiFi Sukamaju".into()),
        bank_details: Some("BCA 123".into()),
        receipt_show_nik: false,
        receipt_show_area: true,
        receipt_show_package: true,
        receipt_show_discount: false,
        receipt_show_method: true,
        auto_isolate_days: Some(7),
        isolation_webhook_url: Some("https://isp.example/hook".into()),
        isolation_webhook_secret: secret,
    }
}

fn fixture(
    merchant: &str,
    name: &str,
    price: i64,
    invoice: Option<InvoiceFixture>,
) -> BillingFixture {
    BillingFixture {
        merchant_id: merchant.into(),
        customer_name: name.into(),
        nik: Some("3201".into()),
        register_date: "2026-10-15".into(),
        customer_status: "active",
        package_name: format!("Paket {price}"),
        price,
        discount: 0,
        invoice,
    }
}

fn invoice(period: &str, token: &str, paid_at: Option<time::OffsetDateTime>) -> InvoiceFixture {
    InvoiceFixture {
        period: period.into(),
        due_date: format!("{period}-05"),
        receipt_token: token.into(),
        paid: paid_at.map(|at| (at, "cash", "api:test".to_owned())),
    }
}

pub async fn billing_settings_keep_a_write_only_secret_and_a_separate_logo(store: Arc<dyn Store>) {
    let merchant = approved_merchant(&*store, "Sukamaju").await;
    let defaults = store.billing_settings(&merchant.id).await.unwrap();
    assert!(defaults.receipt_show_nik && defaults.receipt_show_method);
    assert!(!defaults.has_logo && !defaults.has_isolation_webhook_secret);
    assert_eq!(defaults.updated_at, None);
    assert!(matches!(
        store.billing_settings("mer_nope").await,
        Err(StoreError::NotFound { .. })
    ));

    let set = store
        .put_billing_settings(
            &merchant.id,
            settings(SecretChange::Set("s3cret-s3cret-s3cret".into())),
        )
        .await
        .unwrap();
    assert!(set.has_isolation_webhook_secret);
    assert!(!set.receipt_show_nik && set.receipt_show_area && !set.receipt_show_discount);
    assert_eq!(set.auto_isolate_days, Some(7));
    assert!(!format!("{set:?}").contains("s3cret"));
    let kept = store
        .put_billing_settings(&merchant.id, settings(SecretChange::Keep))
        .await
        .unwrap();
    assert!(kept.has_isolation_webhook_secret);

    let logo = BillingLogo {
        content_type: "image/png".into(),
        bytes: vec![0x89, b'P', b'N', b'G', 0, 1, 2, 255],
    };
    let with_logo = store
        .put_billing_logo(&merchant.id, logo.clone())
        .await
        .unwrap();
    assert!(with_logo.has_logo);
    assert_eq!(with_logo.business_name.as_deref(), Some("WiFi Sukamaju"));
    assert_eq!(store.billing_logo(&merchant.id).await.unwrap(), Some(logo));
    // A settings write leaves the logo; a logo write leaves the settings.
    let again = store
        .put_billing_settings(&merchant.id, settings(SecretChange::Clear))
        .await
        .unwrap();
    assert!(again.has_logo && !again.has_isolation_webhook_secret);
    assert!(store.delete_billing_logo(&merchant.id).await.unwrap());
    assert!(!store.delete_billing_logo(&merchant.id).await.unwrap());
    assert_eq!(store.billing_logo(&merchant.id).await.unwrap(), None);

    // A logo first makes a row with every receipt field shown.
    let other = approved_merchant(&*store, "Mekarjaya").await;
    let first = store
        .put_billing_logo(
            &other.id,
            BillingLogo {
                content_type: "image/jpeg".into(),
                bytes: vec![0xFF, 0xD8],
            },
        )
        .await
        .unwrap();
    assert!(first.receipt_show_nik && first.receipt_show_discount && first.has_logo);
}

pub async fn billing_receipts_are_found_only_for_paid_invoices(store: Arc<dyn Store>) {
    let merchant = approved_merchant(&*store, "Sukamaju").await;
    let paid_at = datetime!(2026-12-03 07:00 UTC);
    store
        .seed_billing_fixture(fixture(
            &merchant.id,
            "Sari",
            25_000,
            Some(invoice("2026-12", "tok-paid", Some(paid_at))),
        ))
        .await
        .unwrap();
    store
        .seed_billing_fixture(fixture(
            &merchant.id,
            "Budi",
            25_000,
            Some(invoice("2026-12", "tok-unpaid", None)),
        ))
        .await
        .unwrap();
    let receipt = store
        .receipt("tok-paid")
        .await
        .unwrap()
        .expect("a paid receipt");
    assert_eq!(receipt.customer_name, "Sari");
    assert_eq!(receipt.merchant_name, "Sukamaju");
    assert_eq!(receipt.business_name, None);
    assert_eq!(receipt.total_amount, 25_000);
    assert_eq!(receipt.paid_at, Some(paid_at));
    assert_eq!(receipt.payment_method.as_deref(), Some("cash"));
    assert!(receipt.show_nik && receipt.show_method && !receipt.has_logo);
    assert_eq!(store.receipt("tok-unpaid").await.unwrap(), None);
    assert_eq!(store.receipt("tok-nope").await.unwrap(), None);
    assert_eq!(store.receipt("tok-pai").await.unwrap(), None);

    store
        .put_billing_settings(&merchant.id, settings(SecretChange::Keep))
        .await
        .unwrap();
    let logo = BillingLogo {
        content_type: "image/png".into(),
        bytes: vec![1, 2, 3],
    };
    store
        .put_billing_logo(&merchant.id, logo.clone())
        .await
        .unwrap();
    let receipt = store.receipt("tok-paid").await.unwrap().unwrap();
    assert_eq!(receipt.business_name.as_deref(), Some("WiFi Sukamaju"));
    assert!(!receipt.show_nik && !receipt.show_discount && receipt.has_logo);
    assert_eq!(store.receipt_logo("tok-paid").await.unwrap(), Some(logo));
    assert_eq!(store.receipt_logo("tok-unpaid").await.unwrap(), None);
}

pub async fn billing_finance_totals_revenue_and_growth_add_up(store: Arc<dyn Store>) {
    let a = approved_merchant(&*store, "A").await.id;
    let b = approved_merchant(&*store, "B").await.id;
    let seed = |f: BillingFixture| {
        let store = store.clone();
        async move { store.seed_billing_fixture(f).await.unwrap() }
    };
    seed(fixture(
        &a,
        "a1",
        10_000,
        Some(invoice(
            "2026-11",
            "t1",
            Some(datetime!(2026-11-30 18:00 UTC)),
        )),
    ))
    .await;
    seed(fixture(
        &a,
        "a2",
        20_000,
        Some(invoice("2026-11", "t2", None)),
    ))
    .await;
    seed(fixture(
        &a,
        "a3",
        40_000,
        Some(invoice(
            "2026-12",
            "t3",
            Some(datetime!(2026-12-10 01:00 UTC)),
        )),
    ))
    .await;
    let mut early = fixture(&a, "a4", 40_000, None);
    early.register_date = "2025-01-01".into();
    early.customer_status = "isolated";
    seed(early).await;
    seed(fixture(
        &b,
        "b1",
        99_000,
        Some(invoice(
            "2026-11",
            "t5",
            Some(datetime!(2026-11-02 01:00 UTC)),
        )),
    ))
    .await;

    let november = InvoiceSelection::Periods {
        from: "2026-11".into(),
        to: "2026-11".into(),
    };
    let totals = store
        .billing_period_totals(Some(&a), &november)
        .await
        .unwrap();
    assert_eq!(
        totals,
        vec![PeriodTotals {
            period: "2026-11".into(),
            invoices: 2,
            billed: 30_000,
            paid_invoices: 1,
            paid: 10_000,
        }]
    );
    let all = store.billing_period_totals(None, &november).await.unwrap();
    assert_eq!(
        (all[0].invoices, all[0].billed, all[0].paid),
        (3, 129_000, 109_000)
    );
    let year = InvoiceSelection::Periods {
        from: "2026-01".into(),
        to: "2026-12".into(),
    };
    let by_period = store.billing_period_totals(Some(&a), &year).await.unwrap();
    assert_eq!(
        by_period
            .iter()
            .map(|t| t.period.as_str())
            .collect::<Vec<_>>(),
        ["2026-11", "2026-12"]
    );
    let due = store
        .billing_period_totals(Some(&a), &InvoiceSelection::DueDate("2026-12-05".into()))
        .await
        .unwrap();
    assert_eq!((due[0].invoices, due[0].billed), (1, 40_000));
    assert!(
        store
            .billing_period_totals(Some(&b), &year)
            .await
            .unwrap()
            .len()
            == 1
    );

    assert_eq!(
        store
            .count_active_billing_customers(Some(&a))
            .await
            .unwrap(),
        3
    );
    assert_eq!(store.count_active_billing_customers(None).await.unwrap(), 4);

    // Paid-at ranges are instants: 18:00 UTC on 30 November is December in Jakarta.
    let jakarta = time::UtcOffset::from_hms(7, 0, 0).unwrap();
    let dec = datetime!(2026-12-01 00:00).assume_offset(jakarta);
    let jan = datetime!(2027-01-01 00:00).assume_offset(jakarta);
    let nov = datetime!(2026-11-01 00:00).assume_offset(jakarta);
    assert_eq!(
        store
            .billing_paid_between(Some(&a), dec, jan)
            .await
            .unwrap(),
        (2, 50_000)
    );
    assert_eq!(
        store
            .billing_paid_between(Some(&a), nov, dec)
            .await
            .unwrap(),
        (0, 0)
    );
    assert_eq!(
        store.billing_paid_between(None, nov, dec).await.unwrap(),
        (1, 99_000)
    );

    let (before, months) = store
        .billing_customer_growth(Some(&a), "2026-01-01")
        .await
        .unwrap();
    assert_eq!(before, 1);
    assert_eq!(
        months,
        vec![MonthCount {
            month: "2026-10".into(),
            count: 3,
        }]
    );

    let filter = FinanceInvoiceFilter {
        merchant_id: Some(a.clone()),
        selection: Some(year),
        status: None,
    };
    let first = store
        .billing_finance_invoices(&filter, &PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(
        first
            .items
            .iter()
            .map(|r| r.customer_name.as_str())
            .collect::<Vec<_>>(),
        ["a1", "a2"]
    );
    assert_eq!(first.items[0].paid_by.as_deref(), Some("api:test"));
    let rest = store
        .billing_finance_invoices(
            &filter,
            &PageRequest {
                after: first.next_after.clone(),
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next_after, None);
    let unpaid = store
        .billing_finance_invoices(
            &FinanceInvoiceFilter {
                status: Some(gema_store::billing::InvoiceStatus::Unpaid),
                ..FinanceInvoiceFilter::default()
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    assert_eq!(unpaid.items.len(), 1);
    assert_eq!(unpaid.items[0].customer_name, "a2");

    // The export kinds read the same rows, by period and merchant, in id pages.
    let export = ExportFilter {
        merchant_id: Some(a.clone()),
        period_from: Some("2026-11".into()),
        period_to: Some("2026-11".into()),
        ..ExportFilter::default()
    };
    assert_eq!(
        store
            .count_export_rows(ExportKind::BillingInvoices, &export)
            .await
            .unwrap(),
        2
    );
    let page = store
        .export_rows(ExportKind::BillingInvoicesXlsx, &export, None, 1)
        .await
        .unwrap();
    let ExportRows::BillingInvoices(rows) = &page else {
        panic!("billing rows expected, got {page:?}");
    };
    assert_eq!(rows[0].customer_name, "a1");
    let next = store
        .export_rows(
            ExportKind::BillingInvoices,
            &export,
            page.last_id().as_deref(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
}
