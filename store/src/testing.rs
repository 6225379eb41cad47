//! Fixtures for tests that need a store (feature `testing`): a fresh SQLite store in a
//! temporary directory, the registry chain a payment needs (an approved merchant → an
//! outlet → a terminal → a device bound to it), and the payment rules the tests share.
//!
//! Fixtures panic on failure: they are setup, not the behaviour under test.

use std::sync::Arc;

use tempfile::TempDir;

use crate::{
    ConnectOptions, Device, InboxEntry, IncomingEvent, Merchant, MerchantStatus, NewBankAccount,
    NewDevice, NewMerchant, NewOutlet, NewTerminal, NewTransaction, Outlet, PaymentRules, Store,
    Terminal, TransactionStatus, Transition,
};

/// A migrated SQLite store in a temporary directory, deleted when this is dropped (keep it
/// alive as long as the store is used).
#[derive(Debug)]
pub struct TempStore {
    pub store: Arc<dyn Store>,
    /// The database URL (`sqlite://…/gema.db`), for a second connection or the binary.
    pub url: String,
    dir: TempDir,
}

impl TempStore {
    /// A fresh store with the default connection settings.
    pub async fn sqlite() -> Self {
        Self::sqlite_with(&ConnectOptions::default()).await
    }

    /// A fresh store with these connection settings.
    pub async fn sqlite_with(options: &ConnectOptions) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("gema.db").display());
        let store = crate::connect(&url, options)
            .await
            .expect("open the SQLite store");
        store.migrate().await.expect("migrate the SQLite store");
        Self { store, url, dir }
    }

    /// The directory the database lives in.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// A new, empty database in the PostgreSQL cluster `admin_url` names (a superuser's URL
/// ending in `/<database>`, as `scripts/with-postgres` exports in
/// `GEMA_TEST_POSTGRES_URL`); returns its URL. Not migrated. The throwaway cluster is
/// deleted with everything in it, so nothing drops it.
pub async fn fresh_postgres_database(admin_url: &str) -> String {
    let name = format!("gema_test_{}", ulid::Ulid::new().to_string().to_lowercase());
    let admin = sqlx::PgPool::connect(admin_url)
        .await
        .expect("connect to the test cluster");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create a test database");
    admin.close().await;
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("the cluster URL ends in /<database>");
    format!("{base}/{name}")
}

/// Makes every insert into `audit_logs` fail from now on, in the database `url` names (a
/// trigger; SQLite or PostgreSQL): for tests of what a write does when its audit row
/// cannot be written.
pub async fn refuse_audit_rows(url: &str) {
    refuse_writes(url, "INSERT", "audit_logs").await;
}

/// Makes every `operation` (`INSERT`, `UPDATE` or `DELETE`) on `table` fail from now on, in
/// the database `url` names (a trigger; SQLite or PostgreSQL).
pub async fn refuse_writes(url: &str, operation: &str, table: &str) {
    let name = format!("refuse_{}_{table}", operation.to_ascii_lowercase());
    let message = format!("{operation} on {table} refused by a test");
    let sql = if url.starts_with("sqlite:") {
        format!(
            "CREATE TRIGGER {name} BEFORE {operation} ON {table} \
             BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )
    } else {
        format!(
            "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION '{message}'; END $$; \
             CREATE TRIGGER {name} BEFORE {operation} ON {table} \
             FOR EACH ROW EXECUTE FUNCTION {name}();"
        )
    };
    execute_sql(url, &sql).await.expect("create the trigger");
}

/// Runs `sql` on the database at `url` (SQLite or PostgreSQL) in a connection of its own:
/// `Err` with the database's message (and PostgreSQL's constraint name) if it refused it, for
/// a test of the schema's checks.
pub async fn execute_sql(url: &str, sql: &str) -> Result<(), String> {
    async fn on<DB: sqlx::Database>(url: &str, sql: &str) -> Result<(), sqlx::Error>
    where
        for<'p> &'p sqlx::Pool<DB>: sqlx::Executor<'p, Database = DB>,
    {
        let pool = sqlx::Pool::<DB>::connect(url)
            .await
            .expect("connect to the test database");
        let result = sqlx::raw_sql(sql).execute(&pool).await.map(drop);
        pool.close().await;
        result
    }
    let result = if url.starts_with("sqlite:") {
        on::<sqlx::Sqlite>(url, sql).await
    } else {
        on::<sqlx::Postgres>(url, sql).await
    };
    match result {
        Ok(()) => Ok(()),
        Err(sqlx::Error::Database(db)) => Err(format!(
            "{} (constraint {})",
            db.message(),
            db.constraint().unwrap_or("none")
        )),
        Err(err) => panic!("the test statement did not reach the database: {err}"),
    }
}

/// Ends every other session on the database `url` names, as a server restart or an
/// operator's `pg_terminate_backend` would (PostgreSQL; an SQLite file has no sessions to
/// end, so there it does nothing). Returns how many it ended.
pub async fn end_other_sessions(url: &str) -> i64 {
    if url.starts_with("sqlite:") {
        return 0;
    }
    let pool = sqlx::PgPool::connect(url)
        .await
        .expect("connect to the PostgreSQL test database");
    let (ended,): (i64,) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&pool)
    .await
    .expect("end the other sessions");
    pool.close().await;
    ended
}

/// Tables a refused request may still write: the audit log itself, login failures,
/// idempotency keys (claimed, then released), and the migrations' own bookkeeping.
const BOOKKEEPING_TABLES: &[&str] = &[
    "audit_logs",
    "login_failures",
    "idempotency_keys",
    "_sqlx_migrations",
    "sqlite_sequence",
];

/// A digest of every table's rows in the SQLite database at `path` (`<dir>/gema.db`), by
/// table, for tests that a refused request changed nothing. Bookkeeping a refused request
/// may write is left out: the tables above and tokens' `last_used_at` (authentication
/// records a token's use whatever the request then does). Row order does not matter.
pub fn table_digests(path: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    use std::hash::{Hash, Hasher};
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the test database read-only");
    let mut tables = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("list tables");
    let names: Vec<String> = tables
        .query_map([], |row| row.get(0))
        .expect("list tables")
        .collect::<Result<_, _>>()
        .expect("list tables");
    let mut digests = std::collections::BTreeMap::new();
    for name in names {
        if BOOKKEEPING_TABLES.contains(&name.as_str()) {
            continue;
        }
        let mut select = db
            .prepare(&format!("SELECT * FROM \"{name}\""))
            .expect("read a table");
        let kept: Vec<usize> = (0..select.column_count())
            .filter(|&i| select.column_name(i).ok() != Some("last_used_at"))
            .collect();
        let mut rows: Vec<String> = select
            .query_map([], |row| {
                Ok(kept
                    .iter()
                    .map(|&i| format!("{:?}", row.get_ref(i).map(rusqlite::types::Value::from)))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .expect("read a table")
            .collect::<Result<_, _>>()
            .expect("read a table");
        rows.sort();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        rows.hash(&mut hasher);
        digests.insert(name, hasher.finish());
    }
    digests
}

/// A merchant, approved (only an approved merchant's terminals take devices and payments).
pub async fn approved_merchant(store: &dyn Store, name: &str) -> Merchant {
    let merchant = store
        .create_merchant(NewMerchant {
            name: name.into(),
            email: None,
            phone: None,
        })
        .await
        .expect("create a merchant");
    approve(store, &merchant).await
}

/// Approves a pending merchant.
pub async fn approve(store: &dyn Store, merchant: &Merchant) -> Merchant {
    store
        .transition_merchant(
            &merchant.id,
            &[MerchantStatus::Pending],
            MerchantStatus::Approved,
            None,
        )
        .await
        .expect("approve the merchant")
}

/// An outlet of `merchant`.
pub async fn outlet(store: &dyn Store, merchant: &Merchant, name: &str) -> Outlet {
    store
        .create_outlet(NewOutlet {
            merchant_id: merchant.id.clone(),
            name: name.into(),
            address: None,
            city: None,
        })
        .await
        .expect("create an outlet")
}

/// A terminal at `outlet`, with a static QR reference if `payment_ref` is given.
pub async fn terminal(
    store: &dyn Store,
    outlet: &Outlet,
    label: &str,
    payment_ref: Option<String>,
) -> Terminal {
    store
        .create_terminal(NewTerminal {
            outlet_id: outlet.id.clone(),
            label: label.into(),
            name: None,
            payment_ref,
            static_qris: None,
        })
        .await
        .expect("create a terminal")
}

/// An active device, bound to nothing.
pub async fn device(store: &dyn Store, serial: &str) -> Device {
    store
        .create_device(NewDevice {
            serial: serial.into(),
            model: "SB-100".into(),
            firmware_version: None,
            secret_hash: "h".into(),
        })
        .await
        .expect("create a device")
}

/// A new device with this serial, bound to `terminal`.
pub async fn bound_device(store: &dyn Store, terminal: &Terminal, serial: &str) -> Device {
    let device = device(store, serial).await;
    store
        .bind_device(&device.id, &terminal.id)
        .await
        .expect("bind the device")
}

/// An approved merchant's terminal, and the chain above it.
#[derive(Debug, Clone)]
pub struct ApprovedTerminal {
    pub merchant: Merchant,
    pub outlet: Outlet,
    pub terminal: Terminal,
}

/// A terminal that takes payments: an approved merchant (`Warung {tag}`), its outlet
/// (`Outlet {tag}`) and terminal `K1`, whose static QR reference is `STATIC-{tag}`.
pub async fn approved_terminal(store: &dyn Store, tag: &str) -> ApprovedTerminal {
    let merchant = approved_merchant(store, &format!("Warung {tag}")).await;
    let outlet = outlet(store, &merchant, &format!("Outlet {tag}")).await;
    let terminal = terminal(store, &outlet, "K1", Some(format!("STATIC-{tag}"))).await;
    ApprovedTerminal {
        merchant,
        outlet,
        terminal,
    }
}

/// An approved terminal (as [`approved_terminal`]) with a device bound to it, the device's
/// serial being `serial` (and the static QR reference `STATIC-{serial}`).
pub async fn approved_terminal_with_device(
    store: &dyn Store,
    serial: &str,
) -> (ApprovedTerminal, Device) {
    let approved = approved_terminal(store, serial).await;
    let device = bound_device(store, &approved.terminal, serial).await;
    (approved, device)
}

/// A pending transaction on `terminal_id` that never expires, paid by a Midtrans event
/// ([`paid_event`]).
pub async fn paid_transaction(store: &dyn Store, terminal_id: &str, order_ref: &str, amount: i64) {
    store
        .create_transaction(NewTransaction {
            terminal_id: terminal_id.into(),
            order_ref: order_ref.into(),
            amount,
            expires_at_ms: i64::MAX / 2,
        })
        .await
        .expect("create a transaction");
    paid_event(store, order_ref, amount).await;
}

/// An approved terminal (as [`approved_terminal`]) whose merchant has a bank account
/// (held by `tag`) and Rp 100.000 paid as `order_ref`: a merchant with a payout due.
pub async fn payable_merchant(store: &dyn Store, tag: &str, order_ref: &str) -> ApprovedTerminal {
    let t = approved_terminal(store, tag).await;
    store
        .put_bank_account(
            &t.merchant.id,
            NewBankAccount {
                bank_code: "014".into(),
                account_number: "1234567890".into(),
                account_holder: tag.into(),
            },
        )
        .await
        .expect("put a bank account");
    paid_transaction(store, &t.terminal.id, order_ref, 100_000).await;
    t
}

/// A Midtrans `settlement` for `order_ref` applied with [`ReferenceRules`] (its provider
/// transaction id is `mt-{order_ref}`).
pub async fn paid_event(store: &dyn Store, order_ref: &str, amount: i64) {
    store
        .apply_payment_event(
            InboxEntry {
                provider: "midtrans".into(),
                received_at: time::OffsetDateTime::now_utc(),
                headers: "{}".into(),
                body: b"{}".to_vec(),
            },
            IncomingEvent {
                provider: "midtrans".into(),
                provider_transaction_id: format!("mt-{order_ref}"),
                order_ref: order_ref.into(),
                amount,
                status: "paid".into(),
                raw_status: "settlement".into(),
                issuer: None,
                paid_at: None,
                is_test: false,
            },
            &ReferenceRules,
        )
        .await
        .expect("apply a paid event");
}

/// The payment rules as Gema states them (the gateway's `StandardRules` with a 70 bps
/// fee and five-minute announcements, on the non-negative amounts tests use), once, for
/// every test that applies events:
/// forward only (pending → paid → refunded; pending → expired | failed); a paid event
/// beats an expiry or a failure and is flagged; anything else is stale. The gateway's tests
/// check its rules answer as these do.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceRules;

impl PaymentRules for ReferenceRules {
    fn transition(&self, current: TransactionStatus, event_status: &str) -> Transition {
        use TransactionStatus::*;
        let to = |status, flag_paid_after_expiry| Transition::To {
            status,
            flag_paid_after_expiry,
        };
        match (current, event_status) {
            (Pending, "paid") => to(Paid, false),
            (Expired | Failed, "paid") => to(Paid, true),
            (Pending, "expired") => to(Expired, false),
            (Pending, "failed") => to(Failed, false),
            (Paid, "refunded") => to(Refunded, false),
            _ => Transition::Ignore,
        }
    }

    fn split_fee(&self, gross: i64) -> (i64, i64) {
        let fee = gross * 70 / 10_000;
        (fee, gross - fee)
    }

    fn announcement_ttl_ms(&self) -> i64 {
        300_000
    }

    /// None: the store's tests read what a batch committed back as due at once.
    fn handover_lease_ms(&self) -> i64 {
        0
    }
}

/// The event statuses the providers' adapters produce, for checking a set of rules
/// against [`ReferenceRules`] on every (status, event) pair.
pub const EVENT_STATUSES: &[&str] = &["pending", "paid", "expired", "failed", "refunded"];
