//! Bulk rows for the benchmarks (`gema bench settlement`; billing's catalogue for
//! `gema bench billing-import` and the import's tests): a million paid transactions and
//! their ledger go in faster than any API would write them, as multi-row `INSERT`s in large
//! transactions. Not for production data: no audit rows, no inbox, no announcements.

use crate::db::{Param, query};
use crate::{Db, StoreResult};

/// Rows per `INSERT` statement: few, because sqlx binds SQLite parameters by name, and
/// finding a name walks the list (binding is quadratic in a statement's parameters).
const ROWS_PER_STATEMENT: usize = 48;
/// Rows per transaction.
const ROWS_PER_TRANSACTION: usize = 40_000;

/// What [`seed_paid_ledger`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    pub merchants: Vec<String>,
    /// Each merchant's one terminal, in the same order.
    pub terminals: Vec<String>,
    pub transactions: u64,
    pub ledger_entries: u64,
}

/// An id as `new_id` makes them, but for a moment in the past.
fn past_id(prefix: &str, at: time::OffsetDateTime) -> String {
    let ms = (at.unix_timestamp_nanos() / 1_000_000) as u64;
    let ulid = ulid::Ulid::from_parts(ms, rand_bits());
    format!("{prefix}_{}", ulid.to_string().to_lowercase())
}

/// 80 random bits for a ULID: a fresh ULID's own.
fn rand_bits() -> u128 {
    ulid::Ulid::new().random()
}

async fn insert_rows(
    db: &Db,
    table_and_columns: &str,
    columns: usize,
    rows: &[Vec<Param<'static>>],
) -> StoreResult<()> {
    for big in rows.chunks(ROWS_PER_TRANSACTION) {
        let mut tx = db.begin_write().await?;
        for chunk in big.chunks(ROWS_PER_STATEMENT) {
            let mut sql = format!("INSERT INTO {table_and_columns} VALUES ");
            let mut n = 0;
            for (i, _) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for c in 0..columns {
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    n += 1;
                    sql.push_str(&format!("${n}"));
                }
                sql.push(')');
            }
            query(sql)
                .bind_all(chunk.iter().flat_map(|r| r.iter().cloned()))
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// `merchants` approved merchants, each with an outlet, a terminal, a bank account and
/// `per_merchant` paid transactions of `amount` with their three ledger entries (fee
/// `fee`). With `spread_days` 0 every row is made now (so every entry is before a cut-off
/// of now); else each merchant's transactions are spread evenly over the last
/// `spread_days` days (their ids' times and their paid times), as a live system's are.
pub async fn seed_paid_ledger(
    url: &str,
    merchants: usize,
    per_merchant: usize,
    amount: i64,
    fee: i64,
    spread_days: i64,
) -> StoreResult<Seeded> {
    let db = &crate::open_db(url, &crate::ConnectOptions::default()).await?;
    let now = crate::sql::now();
    let text = |s: String| Param::OwnedText(Some(s));
    let mut merchant_rows = Vec::with_capacity(merchants);
    let mut outlet_rows = Vec::with_capacity(merchants);
    let mut terminal_rows = Vec::with_capacity(merchants);
    let mut bank_rows = Vec::with_capacity(merchants);
    let mut ids = Vec::with_capacity(merchants);
    let mut terminals = Vec::with_capacity(merchants);
    for m in 0..merchants {
        let merchant = crate::sql::new_id("mer");
        let outlet = crate::sql::new_id("out");
        let terminal = crate::sql::new_id("ter");
        merchant_rows.push(vec![
            text(merchant.clone()),
            text(format!("Bench merchant {m}")),
            text("approved".into()),
            Param::Time(Some(now)),
            Param::Time(Some(now)),
        ]);
        outlet_rows.push(vec![
            text(outlet.clone()),
            text(merchant.clone()),
            text("Bench outlet".into()),
            Param::Time(Some(now)),
            Param::Time(Some(now)),
        ]);
        terminal_rows.push(vec![
            text(terminal.clone()),
            text(outlet),
            text("K1".into()),
            Param::Time(Some(now)),
            Param::Time(Some(now)),
        ]);
        bank_rows.push(vec![
            text(merchant.clone()),
            text("014".into()),
            text(format!("{:010}", m)),
            text(format!("Bench merchant {m}")),
            Param::Time(Some(now)),
            Param::Time(Some(now)),
        ]);
        ids.push(merchant);
        terminals.push(terminal);
    }
    insert_rows(
        db,
        "merchants (id, name, status, created_at, updated_at)",
        5,
        &merchant_rows,
    )
    .await?;
    insert_rows(
        db,
        "outlets (id, merchant_id, name, created_at, updated_at)",
        5,
        &outlet_rows,
    )
    .await?;
    insert_rows(
        db,
        "terminals (id, outlet_id, label, created_at, updated_at)",
        5,
        &terminal_rows,
    )
    .await?;
    insert_rows(
        db,
        "merchant_bank_accounts \
         (merchant_id, bank_code, account_number, account_holder, created_at, updated_at)",
        6,
        &bank_rows,
    )
    .await?;

    // Transactions and ledger entries, a slice of merchants at a time, so memory stays flat.
    let mut transactions = 0u64;
    let mut entries = 0u64;
    let per_slice = (ROWS_PER_TRANSACTION / per_merchant.max(1)).max(1);
    for slice in (0..merchants).collect::<Vec<_>>().chunks(per_slice) {
        let mut trx_rows = Vec::new();
        let mut ledger_rows = Vec::new();
        for &m in slice {
            for i in 0..per_merchant {
                let back_ms = spread_days * 86_400_000 * i as i64 / per_merchant.max(1) as i64;
                let at = now - time::Duration::milliseconds(back_ms);
                let id = |prefix: &str| match back_ms {
                    0 => crate::sql::new_id(prefix),
                    _ => past_id(prefix, at),
                };
                let trx = id("trx");
                trx_rows.push(vec![
                    text(trx.clone()),
                    text(format!("BENCH-{m}-{i}")),
                    text(terminals[m].clone()),
                    text(ids[m].clone()),
                    Param::Int(Some(amount)),
                    text("paid".into()),
                    text("api".into()),
                    Param::Time(Some(at)),
                    Param::Int(Some(0)),
                    Param::Time(Some(at)),
                    Param::Time(Some(at)),
                ]);
                for (entry_type, value) in [
                    ("gross_income", amount),
                    ("platform_fee", fee),
                    ("merchant_payable", amount - fee),
                ] {
                    ledger_rows.push(vec![
                        text(id("led")),
                        text(trx.clone()),
                        text(ids[m].clone()),
                        text(entry_type.into()),
                        Param::Int(Some(value)),
                        text(format!("{trx}:{entry_type}")),
                        Param::Time(Some(at)),
                    ]);
                }
            }
        }
        transactions += trx_rows.len() as u64;
        entries += ledger_rows.len() as u64;
        insert_rows(
            db,
            "transactions (id, order_ref, terminal_id, merchant_id, amount, status, source, \
             paid_at, expires_at_ms, created_at, updated_at)",
            11,
            &trx_rows,
        )
        .await?;
        insert_rows(
            db,
            "ledger_entries \
             (id, transaction_id, merchant_id, entry_type, amount, external_id, created_at)",
            7,
            &ledger_rows,
        )
        .await?;
    }
    Ok(Seeded {
        merchants: ids,
        terminals,
        transactions,
        ledger_entries: entries,
    })
}

/// `count` active devices (serials `BENCH-000001`, …; a credential no secret matches), the
/// first of them bound one each to `bind_to`'s terminals. Returns their ids in order.
pub async fn seed_devices(url: &str, count: usize, bind_to: &[String]) -> StoreResult<Vec<String>> {
    let db = &crate::open_db(url, &crate::ConnectOptions::default()).await?;
    let now = crate::sql::now();
    let text = |s: String| Param::OwnedText(Some(s));
    let mut rows = Vec::with_capacity(count);
    let mut bindings = Vec::new();
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let id = crate::sql::new_id("dev");
        let terminal = bind_to.get(i).cloned();
        if let Some(terminal) = &terminal {
            bindings.push(vec![
                text(crate::sql::new_id("bnd")),
                text(id.clone()),
                text(terminal.clone()),
                Param::Time(Some(now)),
            ]);
        }
        rows.push(vec![
            text(id.clone()),
            text(format!("BENCH-{:06}", i + 1)),
            text("SB-100".into()),
            text("1.0.0".into()),
            text("active".into()),
            Param::OwnedText(terminal),
            text("seeded:no-secret-matches".into()),
            Param::Time(Some(now)),
            Param::Time(Some(now)),
            Param::Time(Some(now)),
        ]);
        ids.push(id);
    }
    insert_rows(
        db,
        "devices (id, serial, model, firmware_version, status, terminal_id, credential_hash, \
         credential_issued_at, created_at, updated_at)",
        10,
        &rows,
    )
    .await?;
    insert_rows(
        db,
        "device_bindings (id, device_id, terminal_id, bound_at)",
        4,
        &bindings,
    )
    .await?;
    Ok(ids)
}

/// `merchants` approved merchants with `per_merchant` active billing customers each, all on
/// one package (Rp 100,000) and billed on `billing_day`: the customers whose invoices
/// `gema bench billing` makes. Returns the merchant ids.
pub async fn seed_billing_customers(
    url: &str,
    merchants: usize,
    per_merchant: usize,
    billing_day: i64,
) -> StoreResult<Vec<String>> {
    let db = &crate::open_db(url, &crate::ConnectOptions::default()).await?;
    let now = crate::sql::now();
    let text = |s: String| Param::OwnedText(Some(s));
    let package = crate::sql::new_id("pkg");
    insert_rows(
        db,
        "billing_packages (id, name, price, active, created_at, updated_at)",
        6,
        &[vec![
            text(package.clone()),
            text(format!("Bench package {package}")),
            Param::Int(Some(100_000)),
            Param::Bool(true),
            Param::Time(Some(now)),
            Param::Time(Some(now)),
        ]],
    )
    .await?;
    let ids: Vec<String> = (0..merchants).map(|_| crate::sql::new_id("mer")).collect();
    let merchant_rows: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(m, id)| {
            vec![
                text(id.clone()),
                text(format!("Bench billing merchant {m}")),
                text("approved".into()),
                Param::Time(Some(now)),
                Param::Time(Some(now)),
            ]
        })
        .collect();
    insert_rows(
        db,
        "merchants (id, name, status, created_at, updated_at)",
        5,
        &merchant_rows,
    )
    .await?;
    let per_slice = (ROWS_PER_TRANSACTION / per_merchant.max(1)).max(1);
    for slice in ids.chunks(per_slice) {
        let mut rows = Vec::with_capacity(slice.len() * per_merchant);
        for merchant in slice {
            for i in 0..per_merchant {
                rows.push(vec![
                    text(crate::sql::new_id("cus")),
                    text(merchant.clone()),
                    text(package.clone()),
                    text(format!("Pelanggan {i}")),
                    text(format!("628{:011}", i)),
                    Param::Int(Some(billing_day)),
                    Param::Int(Some(if i.is_multiple_of(10) { 10_000 } else { 0 })),
                    text("active".into()),
                    text("2026-01-01".into()),
                    Param::Time(Some(now)),
                    Param::Time(Some(now)),
                ]);
            }
        }
        insert_rows(
            db,
            "billing_customers (id, merchant_id, package_id, name, phone, billing_day, discount, \
             status, register_date, created_at, updated_at)",
            11,
            &rows,
        )
        .await?;
    }
    Ok(ids)
}

/// A package to seed with [`seed_billing_catalogue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedPackage {
    pub name: String,
    pub price: i64,
    pub active: bool,
}

/// Billing packages and merchants' billing business names, written straight into the
/// database `url` names, for the import's tests and `gema bench billing-import` (the
/// billing service's own package and settings writes are not on this branch's path).
/// Returns the packages' ids in order. No audit rows.
pub async fn seed_billing_catalogue(
    url: &str,
    packages: &[SeedPackage],
    business_names: &[(&str, &str)],
) -> StoreResult<Vec<String>> {
    let db = &crate::open_db(url, &crate::ConnectOptions::default()).await?;
    let now = crate::sql::now();
    let mut ids = Vec::with_capacity(packages.len());
    let mut tx = db.begin_write().await?;
    for package in packages {
        let id = crate::sql::new_id("pkg");
        query(
            "INSERT INTO billing_packages (id, name, price, active, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id.as_str())
        .bind(package.name.as_str())
        .bind(package.price)
        .bind(package.active)
        .bind(now)
        .execute(&mut tx)
        .await?;
        ids.push(id);
    }
    for (merchant, name) in business_names {
        query(
            "INSERT INTO billing_merchant_settings (merchant_id, business_name, \
             receipt_show_nik, receipt_show_area, receipt_show_package, receipt_show_discount, \
             receipt_show_method, updated_at) VALUES ($1, $2, TRUE, TRUE, TRUE, TRUE, TRUE, $3) \
             ON CONFLICT (merchant_id) DO UPDATE SET business_name = $2, updated_at = $3",
        )
        .bind(*merchant)
        .bind(*name)
        .bind(now)
        .execute(&mut tx)
        .await?;
    }
    tx.commit().await?;
    Ok(ids)
}
