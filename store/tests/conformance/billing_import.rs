//! The customer CSV import's storage: the catalogue it matches against, taken phones, the
//! one-transaction write with its history events and skips, and the customer export rows.

use std::sync::Arc;

use gema_store::billing::CustomerStatus;
use gema_store::seed::{SeedPackage, seed_billing_catalogue};
use gema_store::testing::approved_merchant;
use gema_store::{
    CustomerImport, ExportFilter, ExportKind, ExportRows, ImportSkip, ImportSkipReason,
    NewImportedCustomer, Store,
};

fn customer(
    line: i64,
    merchant: &str,
    package: &str,
    price: i64,
    phone: &str,
) -> NewImportedCustomer {
    NewImportedCustomer {
        line,
        merchant_id: merchant.into(),
        package_id: package.into(),
        price,
        name: format!("Pelanggan {line}"),
        phone: phone.into(),
        nik: (line % 2 == 0).then(|| "3201234567890001".to_string()),
        billing_day: 5,
        discount: 10_000,
        register_date: "2025-01-15".into(),
    }
}

/// How many history events an import wrote, read with the database's own driver.
async fn events_of(url: &str, import_id: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM billing_customer_events WHERE actor = $1 \
               AND kind = 'imported' AND to_status = 'active'";
    let actor = format!("import:{import_id}");
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as(sql)
            .bind(actor)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as(sql)
            .bind(actor)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }
}

pub async fn billing_import_writes_customers_with_their_history_and_skips_what_changed(
    store: Arc<dyn Store>,
    url: &str,
) {
    let a = approved_merchant(&*store, "Warung A").await;
    let b = approved_merchant(&*store, "Warung B").await;
    let packages = seed_billing_catalogue(
        url,
        &[
            SeedPackage {
                name: "Paket 10 Mbps".into(),
                price: 100_000,
                active: true,
            },
            SeedPackage {
                name: "Paket Lama".into(),
                price: 50_000,
                active: false,
            },
        ],
        &[(a.id.as_str(), "  WiFi Sukamaju ")],
    )
    .await
    .unwrap();
    let (p10, old) = (packages[0].as_str(), packages[1].as_str());

    // The catalogue: every package, and each merchant's area (business name, else name).
    let catalogue = store.customer_import_catalogue().await.unwrap();
    assert_eq!(catalogue.packages.len(), 2);
    assert!(
        !catalogue
            .packages
            .iter()
            .find(|p| p.id == old)
            .unwrap()
            .active
    );
    let area = |m: &str| {
        catalogue
            .areas
            .iter()
            .find(|x| x.merchant_id == m)
            .map(|x| x.area.clone())
    };
    assert_eq!(area(&a.id).as_deref(), Some("WiFi Sukamaju"));
    assert_eq!(area(&b.id).as_deref(), Some("Warung B"));

    let pairs = vec![(a.id.clone(), "6281100000001".to_string())];
    assert!(
        store
            .taken_customer_phones(&pairs)
            .await
            .unwrap()
            .is_empty()
    );

    // 300 customers cross the 256-row statement; each gets its `imported` event.
    let many: Vec<NewImportedCustomer> = (0..300)
        .map(|i| customer(i + 2, &a.id, p10, 100_000, &format!("62811{i:08}")))
        .collect();
    let outcome = store
        .import_customers(CustomerImport {
            created_by: "user:usr_test".into(),
            all_or_nothing: false,
            customers: many,
        })
        .await
        .unwrap();
    assert_eq!(outcome.imported.len(), 300);
    assert!(outcome.skipped.is_empty());
    assert!(outcome.import_id.starts_with("imp_"));
    assert_eq!(outcome.imported[0].0, 2, "in the file's order");
    assert_eq!(events_of(url, &outcome.import_id).await, 300);

    // Taken phones are found per merchant: B may have A's customer's phone.
    let pairs = vec![
        (a.id.clone(), "6281100000000".to_string()),
        (a.id.clone(), "6289999999999".to_string()),
        (b.id.clone(), "6281100000000".to_string()),
    ];
    assert_eq!(
        store.taken_customer_phones(&pairs).await.unwrap(),
        vec![(a.id.clone(), "6281100000000".to_string())]
    );

    // A phone taken since the check, a package stopped or repriced: skipped, the rest in.
    let outcome = store
        .import_customers(CustomerImport {
            created_by: "user:usr_test".into(),
            all_or_nothing: false,
            customers: vec![
                customer(2, &a.id, p10, 100_000, "6281100000000"),
                customer(3, &b.id, p10, 100_000, "6281100000000"),
                customer(4, &b.id, old, 50_000, "6282200000001"),
                customer(5, &b.id, p10, 90_000, "6282200000002"),
            ],
        })
        .await
        .unwrap();
    assert_eq!(
        outcome.imported.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(
        outcome.skipped,
        vec![
            ImportSkip {
                line: 2,
                reason: ImportSkipReason::PhoneTaken
            },
            ImportSkip {
                line: 4,
                reason: ImportSkipReason::PackageChanged
            },
            ImportSkip {
                line: 5,
                reason: ImportSkipReason::PackageChanged
            },
        ]
    );
    assert_eq!(events_of(url, &outcome.import_id).await, 1);

    // All or nothing: one taken phone and the good row is not written either.
    let outcome = store
        .import_customers(CustomerImport {
            created_by: "user:usr_test".into(),
            all_or_nothing: true,
            customers: vec![
                customer(2, &b.id, p10, 100_000, "6283300000001"),
                customer(3, &b.id, p10, 100_000, "6281100000000"),
            ],
        })
        .await
        .unwrap();
    assert!(outcome.imported.is_empty());
    assert_eq!(outcome.skipped.len(), 1);
    let pairs = vec![(b.id.clone(), "6283300000001".to_string())];
    assert!(
        store
            .taken_customer_phones(&pairs)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(events_of(url, &outcome.import_id).await, 0);
}

pub async fn billing_customers_export_pages_by_id_with_package_and_area(
    store: Arc<dyn Store>,
    url: &str,
) {
    let a = approved_merchant(&*store, "Warung A").await;
    let b = approved_merchant(&*store, "Warung B").await;
    let packages = seed_billing_catalogue(
        url,
        &[SeedPackage {
            name: "Paket 20 Mbps".into(),
            price: 150_000,
            active: true,
        }],
        &[(a.id.as_str(), "Net Mekarjaya")],
    )
    .await
    .unwrap();
    let mut rows = Vec::new();
    for i in 0..5 {
        let merchant = if i < 3 { &a.id } else { &b.id };
        rows.push(customer(
            i + 2,
            merchant,
            &packages[0],
            150_000,
            &format!("6285{i:09}"),
        ));
    }
    let outcome = store
        .import_customers(CustomerImport {
            created_by: "user:usr_test".into(),
            all_or_nothing: false,
            customers: rows,
        })
        .await
        .unwrap();
    assert_eq!(outcome.imported.len(), 5);

    let of_a = ExportFilter {
        merchant_id: Some(a.id.clone()),
        ..Default::default()
    };
    assert_eq!(
        store
            .count_export_rows(ExportKind::BillingCustomers, &of_a)
            .await
            .unwrap(),
        3
    );
    let ExportRows::BillingCustomers(got) =
        crate::exports::all_rows(&*store, ExportKind::BillingCustomers, &of_a).await
    else {
        panic!("customer rows");
    };
    assert_eq!(got.len(), 3);
    assert!(
        got.windows(2).all(|w| w[0].customer.id < w[1].customer.id),
        "id order"
    );
    assert!(got.iter().all(|r| r.area == "Net Mekarjaya"
        && r.package_name == "Paket 20 Mbps"
        && r.package_price == 150_000
        && r.customer.status == CustomerStatus::Active
        && r.customer.discount == 10_000
        && r.customer.merchant_id == a.id));
    let all = crate::exports::all_rows(
        &*store,
        ExportKind::BillingCustomers,
        &ExportFilter::default(),
    )
    .await;
    let ExportRows::BillingCustomers(all) = all else {
        panic!("customer rows");
    };
    assert_eq!(all.len(), 5);
    assert_eq!(
        all[4].area, "Warung B",
        "no business name: the merchant's name"
    );
}
