//! The customer CSV import's storage: what a file's rows are matched against (packages by
//! name, merchants by their billing area name), which phones are taken, and the import
//! itself, in one transaction; and the customer-data export's row (read by `exports`).
//!
//! Which row is valid is the gateway's rule (`gema_gateway::billing::import`); this module
//! re-checks, inside the import's transaction, only what can change between the check and
//! the write: a package's price and whether it is still offered, and whether a phone was
//! taken meanwhile (`INSERT … ON CONFLICT (merchant_id, phone) DO NOTHING RETURNING id`, so
//! a customer added concurrently on PostgreSQL is skipped, not an error). Each imported
//! customer gets a `billing_customer_events` row of kind `imported` with actor
//! `import:<import id>`.
//!
//! Rows go in as multi-row INSERTs of 256, 16 and 1 rows (few statement shapes), with `?`
//! placeholders on SQLite (see `reconciliation`).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use serde::Serialize;

use crate::billing::Customer;
use crate::db::{Param, query, query_as};
use crate::sql::{in_list, placeholders};
use crate::{Db, StoreResult};

/// A package as the import matches it: by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ImportPackage {
    pub id: String,
    pub name: String,
    pub price: i64,
    pub active: bool,
}

/// A merchant's billing area name: its billing business name, or else its own name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ImportArea {
    pub merchant_id: String,
    pub area: String,
}

/// What an import's rows are matched against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportCatalogue {
    pub packages: Vec<ImportPackage>,
    pub areas: Vec<ImportArea>,
}

/// A valid row, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImportedCustomer {
    /// The file's line the row starts on.
    pub line: i64,
    pub merchant_id: String,
    pub package_id: String,
    /// The package's price the row was checked against; a package whose price changed
    /// since skips the row.
    pub price: i64,
    pub name: String,
    /// `62…` digits.
    pub phone: String,
    pub nik: Option<String>,
    pub billing_day: i64,
    pub discount: i64,
    /// `YYYY-MM-DD`.
    pub register_date: String,
}

/// An import to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerImport {
    /// Who asked (`api:<user>`, `cli:<OS user>`): in each customer event's reason.
    pub created_by: String,
    /// Write nothing if any row would be skipped.
    pub all_or_nothing: bool,
    pub customers: Vec<NewImportedCustomer>,
}

/// Why a valid row was not written after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportSkipReason {
    /// The merchant has a customer with this phone now (added since the check).
    PhoneTaken,
    /// The package was deleted, stopped being offered, or changed its price.
    PackageChanged,
}

impl ImportSkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportSkipReason::PhoneTaken => "phone_taken",
            ImportSkipReason::PackageChanged => "package_changed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSkip {
    pub line: i64,
    pub reason: ImportSkipReason,
}

/// What an import wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerImportOutcome {
    /// `imp_…`: the customer events' actor is `import:<id>`.
    pub import_id: String,
    /// `(line, customer id)` of each customer written, in the file's order.
    pub imported: Vec<(i64, String)>,
    /// The rows not written because they became invalid (in the file's order); with
    /// `all_or_nothing` and any skip, nothing was written.
    pub skipped: Vec<ImportSkip>,
}

/// One customer as the customer-data export writes it: the customer, its billing area
/// (business name, or the merchant's name) and its package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CustomerExportRow {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub customer: Customer,
    pub area: String,
    pub package_name: String,
    pub package_price: i64,
}

/// The import's storage.
#[async_trait]
pub trait CustomerImportStore: Send + Sync {
    /// Every package (active or not) and every merchant's area name.
    async fn customer_import_catalogue(&self) -> StoreResult<ImportCatalogue>;
    /// Of these `(merchant id, phone)` pairs, those a customer already has.
    async fn taken_customer_phones(
        &self,
        pairs: &[(String, String)],
    ) -> StoreResult<Vec<(String, String)>>;
    /// Writes the customers and their `imported` events in one transaction (so, in an
    /// audit scope, with its audit row), skipping rows whose package changed or whose phone
    /// was taken since they were checked; with `all_or_nothing`, any skip writes nothing.
    async fn import_customers(&self, import: CustomerImport) -> StoreResult<CustomerImportOutcome>;
}

/// Multi-row INSERT sizes, largest first.
const CHUNKS: [usize; 3] = [256, 16, 1];
/// Keys per `IN (…)` lookup.
const LOOKUP_CHUNK: usize = 500;
const CUSTOMER_COLUMNS: &str = "id, merchant_id, package_id, name, phone, nik, billing_day, \
     discount, status, register_date, created_at, updated_at";
const CUSTOMER_WIDTH: usize = 12;
const EVENT_COLUMNS: &str = "id, customer_id, kind, to_status, reason, actor, created_at";
const EVENT_WIDTH: usize = 7;

#[async_trait]
impl CustomerImportStore for Db {
    async fn customer_import_catalogue(&self) -> StoreResult<ImportCatalogue> {
        let mut tx = self.begin_read().await?;
        let packages = query_as::<ImportPackage>(
            "SELECT id, name, price, active FROM billing_packages ORDER BY id",
        )
        .fetch_all(&mut tx)
        .await?;
        let areas = query_as::<ImportArea>(
            "SELECT m.id AS merchant_id, \
             COALESCE(NULLIF(TRIM(s.business_name), ''), m.name) AS area \
             FROM merchants m LEFT JOIN billing_merchant_settings s ON s.merchant_id = m.id \
             ORDER BY m.id",
        )
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(ImportCatalogue { packages, areas })
    }

    async fn taken_customer_phones(
        &self,
        pairs: &[(String, String)],
    ) -> StoreResult<Vec<(String, String)>> {
        let mut by_merchant: HashMap<&str, Vec<&str>> = HashMap::new();
        for (merchant, phone) in pairs {
            by_merchant.entry(merchant).or_default().push(phone);
        }
        let mut taken = Vec::new();
        if by_merchant.is_empty() {
            return Ok(taken);
        }
        let mut tx = self.begin_read().await?;
        for (merchant, phones) in by_merchant {
            for chunk in phones.chunks(LOOKUP_CHUNK) {
                let found = phones_taken(self, &mut tx, merchant, chunk).await?;
                taken.extend(found.into_iter().map(|phone| (merchant.to_owned(), phone)));
            }
        }
        tx.commit().await?;
        Ok(taken)
    }

    async fn import_customers(&self, import: CustomerImport) -> StoreResult<CustomerImportOutcome> {
        import_customers(self, import).await
    }
}

/// The phones of `merchant` among `phones` that a customer has (the `(merchant_id, phone)`
/// index).
async fn phones_taken(
    db: &Db,
    tx: &mut crate::Tx,
    merchant: &str,
    phones: &[&str],
) -> StoreResult<Vec<String>> {
    // The merchant is the last parameter, so `?` placeholders bind in order.
    let merchant_param = match db {
        Db::Sqlite(_) => "?".to_owned(),
        Db::Postgres(_) => format!("${}", phones.len() + 1),
    };
    let sql = format!(
        "SELECT phone FROM billing_customers WHERE phone IN ({}) AND merchant_id = {merchant_param}",
        in_list(db, phones.len())
    );
    let params = phones
        .iter()
        .map(|p| Param::Text(Some(*p)))
        .chain([Param::Text(Some(merchant))]);
    let rows: Vec<(String,)> = query_as(sql).bind_all(params).fetch_all(tx).await?;
    Ok(rows.into_iter().map(|(phone,)| phone).collect())
}

async fn import_customers(db: &Db, import: CustomerImport) -> StoreResult<CustomerImportOutcome> {
    let import_id = crate::sql::new_id("imp");
    let actor = format!("import:{import_id}");
    let now = crate::sql::now();
    let mut tx = db.begin_write().await?;

    // The packages as they are now (locked on PostgreSQL until the customers are in).
    let package_ids: Vec<&str> = import
        .customers
        .iter()
        .map(|c| c.package_id.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut packages: HashMap<String, (i64, bool)> = HashMap::new();
    for chunk in package_ids.chunks(LOOKUP_CHUNK) {
        let sql = format!(
            "SELECT id, name, price, active FROM billing_packages WHERE id IN ({}) {}",
            in_list(db, chunk.len()),
            db.row_lock()
        );
        let found: Vec<ImportPackage> = query_as(sql)
            .bind_all(chunk.iter().map(|id| Param::Text(Some(*id))))
            .fetch_all(&mut tx)
            .await?;
        packages.extend(found.into_iter().map(|p| (p.id, (p.price, p.active))));
    }
    let mut skipped = Vec::new();
    let mut rows = Vec::with_capacity(import.customers.len());
    for customer in import.customers {
        match packages.get(&customer.package_id) {
            Some((price, true)) if *price == customer.price => {
                rows.push((crate::sql::new_id("cus"), customer));
            }
            _ => skipped.push(ImportSkip {
                line: customer.line,
                reason: ImportSkipReason::PackageChanged,
            }),
        }
    }
    if import.all_or_nothing && !skipped.is_empty() {
        return Ok(CustomerImportOutcome {
            import_id,
            imported: Vec::new(),
            skipped,
        });
    }

    // The customers; a phone taken meanwhile is not inserted and not returned.
    let mut inserted: HashSet<String> = HashSet::with_capacity(rows.len());
    let mut at = 0;
    while at < rows.len() {
        let size = chunk_size(rows.len() - at);
        let sql = format!(
            "INSERT INTO billing_customers ({CUSTOMER_COLUMNS}) VALUES {} \
             ON CONFLICT (merchant_id, phone) DO NOTHING RETURNING id",
            placeholders(db, size, CUSTOMER_WIDTH)
        );
        let mut params: Vec<Param<'_>> = Vec::with_capacity(size * CUSTOMER_WIDTH);
        for (id, c) in &rows[at..at + size] {
            params.extend([
                Param::Text(Some(id.as_str())),
                Param::Text(Some(c.merchant_id.as_str())),
                Param::Text(Some(c.package_id.as_str())),
                Param::Text(Some(c.name.as_str())),
                Param::Text(Some(c.phone.as_str())),
                Param::Text(c.nik.as_deref()),
                Param::Int(Some(c.billing_day)),
                Param::Int(Some(c.discount)),
                Param::Text(Some("active")),
                Param::Text(Some(c.register_date.as_str())),
                Param::Time(Some(now)),
                Param::Time(Some(now)),
            ]);
        }
        let ids: Vec<(String,)> = query_as(sql).bind_all(params).fetch_all(&mut tx).await?;
        inserted.extend(ids.into_iter().map(|(id,)| id));
        at += size;
    }
    let mut imported = Vec::with_capacity(inserted.len());
    for (id, customer) in &rows {
        if inserted.contains(id) {
            imported.push((customer.line, id.clone()));
        } else {
            skipped.push(ImportSkip {
                line: customer.line,
                reason: ImportSkipReason::PhoneTaken,
            });
        }
    }
    skipped.sort_by_key(|s| s.line);
    if import.all_or_nothing && !skipped.is_empty() {
        // Dropped without a commit: rolled back.
        return Ok(CustomerImportOutcome {
            import_id,
            imported: Vec::new(),
            skipped,
        });
    }

    // Each customer's history starts with its import.
    let events: Vec<(String, &str, String)> = imported
        .iter()
        .map(|(line, id)| {
            (
                crate::sql::new_id("cev"),
                id.as_str(),
                format!("line {line}; by {}", import.created_by),
            )
        })
        .collect();
    let mut at = 0;
    while at < events.len() {
        let size = chunk_size(events.len() - at);
        let sql = format!(
            "INSERT INTO billing_customer_events ({EVENT_COLUMNS}) VALUES {}",
            placeholders(db, size, EVENT_WIDTH)
        );
        let mut params: Vec<Param<'_>> = Vec::with_capacity(size * EVENT_WIDTH);
        for (id, customer, reason) in &events[at..at + size] {
            params.extend([
                Param::Text(Some(id.as_str())),
                Param::Text(Some(customer)),
                Param::Text(Some("imported")),
                Param::Text(Some("active")),
                Param::Text(Some(reason.as_str())),
                Param::Text(Some(actor.as_str())),
                Param::Time(Some(now)),
            ]);
        }
        query(sql).bind_all(params).execute(&mut tx).await?;
        at += size;
    }
    tx.commit().await?;
    Ok(CustomerImportOutcome {
        import_id,
        imported,
        skipped,
    })
}

fn chunk_size(remaining: usize) -> usize {
    CHUNKS
        .into_iter()
        .find(|size| *size <= remaining)
        .unwrap_or(1)
}
