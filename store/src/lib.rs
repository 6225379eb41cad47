//! Gema's storage: the one place that holds SQL.
//!
//! [`Store`] is the storage interface the rest of Gema uses, with its supertraits
//! [`PaymentStore`], [`DeviceOpsStore`] and [`AuthStore`]. Two backends are compiled into
//! every binary and chosen at run time by the database URL ([`connect`]): SQLite (the
//! embedded default, one machine) and PostgreSQL (several gateway nodes). Each has its own
//! migrations folder (`migrations/sqlite`, `migrations/postgres`), embedded into the binary.
//! `tests/conformance` is one suite, generic over the traits, run on both.
//!
//! Every method is one database transaction: checks and writes that belong together (bind
//! a device only if the terminal's merchant is approved and the terminal is free) are done
//! atomically here, so nothing half-written is ever left behind. A write transaction
//! committed inside an audit scope ([`audit_scope`]) carries that scope's audit row, so an
//! audited write and its row commit together (`auth::audit`). No other crate may contain
//! SQL. Driver errors are mapped to [`StoreError`] here (`NotFound`, `Conflict { code,
//! field }`, …).
//!
//! # Where things are
//!
//! One module per entity, each holding its records and its queries (as chirpstack's
//! `storage/` does): the registry in `merchant`, `outlet`, `terminal`, `device` and
//! `admin_token` (their records re-exported by [`model`]); [`payments`] (`transaction`,
//! `announcement`, `ledger`, `inbox`, and `batch`, the batch apply); [`device_ops`]
//! (`heartbeat`, `presence`, `config`, `command`, `qr_request`, `announcement_failures`);
//! [`auth`] (`user`, `session`, `login_failure`, `api_token`, `totp`, `idempotency`,
//! `audit`); [`cluster`] (nodes, cluster leases, shared secrets); [`settlement`] (bank
//! accounts, payout settings, settlement batches, adjustments, balances);
//! [`reconciliation`] (provider report runs and their rows); [`exports`] (export jobs and
//! the paged reads of the rows they export); [`billing_import`] (the customer CSV import's
//! lookups and its one-transaction write, the customer-data export's rows). Each trait has one
//! implementation, on `Db` (defined here, with [`Store`]'s
//! impl; the others' in each area's `mod.rs`), whose methods hand over to those modules.
//! Shared helpers (ids, the time, pages) are in `sql`, the backend-neutral statement types
//! in `db`; neither imports an entity or a backend.
//! `testing` (feature `testing`) has fixtures for any crate's tests.
//!
//! # One text for two databases
//!
//! Both SQLite and PostgreSQL accept `$1`-style parameters, `RETURNING` and the same DDL
//! apart from column types, so each query's text is written once. It runs through `Db`,
//! an enum of the two backends: a statement is a `db::Query` (the SQL and its parameters as
//! values) that each fetch method dispatches with one `match`, and rows decode with
//! `#[derive(sqlx::FromRow)]` on both. Not code generic over `sqlx::Database`: that needs
//! higher-ranked bounds on every function and every caller, and it was the macro bodies'
//! reason to exist; an enum costs a branch per statement and keeps every function one a
//! reader and rust-analyzer can follow. (Not sqlx's `Any` driver either: it has no UUID,
//! time or JSON types and fails at run time. Not a query builder: the statements are fixed
//! text with few dynamic parts.) What really differs stays in the backends' modules:
//! connection setup and the write turn (`sqlite`), the row-lock suffix (`Db::row_lock`:
//! `FOR UPDATE` on PostgreSQL, nothing on SQLite, where a write transaction already holds
//! the database's lock), and the payment batch's I/O (`sqlite_payments`, `postgres_payments`).
//!
//! Instants compared inside SQL (expiry, next retry, sessions, lockout windows) are stored
//! as Unix milliseconds chosen by the caller's clock, because sqlx writes SQLite timestamps
//! as RFC 3339 text with a trimmed fraction, which does not sort at whole seconds. Ids are
//! ULIDs from one monotonic generator per process, so keyset pages follow creation order.
//!
//! # Durability and the payment batch
//!
//! `synchronous = FULL` on every SQLite connection, not only on money paths: payments and
//! ledger rows share the file with everything else, and a 2xx to a provider must mean the
//! event is on disk. Throughput comes from the group commit (many events per fsync), not
//! from weaker durability. The payment rules (which transition an event causes, the fee, an
//! announcement's lifetime) are the gateway's, passed in as [`PaymentRules`]; the store
//! applies them inside the transaction, so rules stay domain code and atomicity stays with
//! the database.
//!
//! A batch ([`PaymentStore::apply_payment_events_and_deliveries`]) is one transaction and
//! costs few statements: it reads its transactions (locked on PostgreSQL), dedupe keys and
//! bound devices up front, applies the events in memory, then writes each changed
//! transaction with one `UPDATE … FROM (VALUES …)` and its inbox, event, ledger and
//! announcement rows with one multi-row INSERT per table (chunks of 64/16/4/1 rows, so the
//! statement cache keeps few shapes). The relay's delivery results ride in the same
//! transaction. What a batch does is shared code (`payments::batch::stage_events`, over a
//! `BatchIo` trait for its few rare-path statements: a static QR payment, a refund's
//! originals, a non-delivery result); the I/O around it is each backend's. PostgreSQL runs
//! a batch in two round trips whatever its size (`postgres_payments`, on tokio-postgres,
//! which pipelines): `BEGIN` with three reads (lock the transactions; the dedupe keys,
//! taking the terminals' sequence locks first; the bound devices), then one write (each
//! table a data-modifying `WITH` clause) with `COMMIT`. Its
//! statements take their rows as one array per column (`unnest`), so each is one fixed
//! text that every connection prepares once: multi-row `VALUES` lists gave each batch
//! size a statement of its own, which the server parsed and planned anew (measured
//! saturated: 1.3 ms of server CPU per callback, against 0.34 ms with arrays). Batches run
//! on connections of their own whose sessions use generic plans only: with the default
//! the array reads got a custom plan, planned anew, every batch. Several batches may run
//! at once on PostgreSQL (several nodes, or the gateway's several commit loops): the row
//! locks on the transactions, taken in order reference order, and a transaction-scoped
//! advisory lock per terminal, taken after them in key order, keep two batches from
//! applying one order twice or giving one device's announcements one sequence number,
//! without deadlocks between batches. A batch that fails is rolled back; its delivery
//! results are then recorded on their own,
//! the events tried again as a batch, and if that fails too, one event per transaction, so
//! the event that fails fails alone (its raw request kept in the inbox as `failed`). There
//! is no savepoint per event.
//!
//! # SQLite's payment writer, its thread, and the write turn
//!
//! SQLite's payment path does not use sqlx: sqlx runs each SQLite connection on a thread of
//! its own and hands every statement, row and result across, which at saturation was a
//! third of the writer's time and most of a batch's latency. Instead a rusqlite connection
//! of its own on the same file (`sqlite_payments::PaymentWriter`) runs a batch as plain
//! function calls with cached statements, `?` placeholders (sqlx binds `$N` by name, and
//! SQLite finds a name by walking a list, which made binding quadratic in the row count).
//!
//! That connection lives on a thread the store owns, `gema-sqlite-payments`: a batch moves
//! there through a channel and comes back, with its outcomes, through a oneshot the caller
//! awaits (one hand-off per batch, no copy of it). So the payment methods never block the
//! caller's thread, on either backend, and callers need not know which backend they have.
//! The thread ends when the store's last handle is dropped. The caller's `&dyn PaymentRules`
//! cannot cross threads; it travels as a table of its answers for the batch's statuses and
//! amounts (`sqlite_payments::RuleBook`), and a question the table lacks (a refund of
//! another amount than its event's) rolls the batch back and sends it again with the
//! answer.
//!
//! That connection and sqlx's one write connection (everything else) take turns through a
//! fair lock (`sqlite::WriteTurn`), held from before `BEGIN` to after `COMMIT`, the payment
//! thread queueing on it like any writer. SQLite's own lock would arbitrate unfairly: a
//! waiting writer sleeps 1 to 100 ms between attempts and the payment connection,
//! committing a thousand times a second, nearly always has the lock again; measured with
//! 9,000 devices, the device flows' writes starved and announcements waited a minute behind
//! them. `tests/sqlite_writers.rs` fails without the turn.

/// A fieldless enum stored as text: its variants, `as_str`, `parse`, `ALL`, and the
/// `TryFrom<String>` sqlx decodes it with.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value).ok_or_else(|| format!("unknown {} {value:?}", stringify!($name)))
            }
        }
    };
}

mod admin_token;
pub mod auth;
pub mod backup;
pub mod billing;
pub mod billing_finance;
pub mod billing_import;
pub mod claim;
pub mod cluster;
mod db;
mod device;
pub mod device_certificate;
pub mod device_ops;
mod error;
pub mod exports;
mod merchant;
pub mod model;
pub mod monitoring;
mod outlet;
pub mod payments;
mod postgres;
mod postgres_payments;
pub mod reconciliation;
pub mod seed;
pub mod settlement;
mod sql;
mod sqlite;
mod sqlite_payments;
mod terminal;
#[cfg(feature = "testing")]
pub mod testing;
pub mod whatsapp;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::db::{Exec, query};
use crate::postgres::PostgresStore;
use crate::sqlite::{SqliteStore, WriteTurn};

pub use auth::*;
pub use billing::BillingStore;
pub use billing_finance::{
    BillingFinanceStore, BillingFixture, BillingLogo, BillingMerchantSettings, FinanceInvoice,
    FinanceInvoiceFilter, InvoiceFixture, InvoiceSelection, MonthCount, NewBillingSettings,
    PeriodTotals, ReceiptRecord, SecretChange,
};
pub use billing_import::{
    CustomerExportRow, CustomerImport, CustomerImportOutcome, CustomerImportStore, ImportArea,
    ImportCatalogue, ImportPackage, ImportSkip, ImportSkipReason, NewImportedCustomer,
};
pub use claim::{
    Claim, ClaimProvisioning, ClaimRefusal, ClaimSerials, ClaimStatus, ClaimStore, NewClaim,
    ProvisionByClaim, ProvisionedDevice,
};
pub use cluster::{ClusterStore, NewNode, NodeRecord, SessionRecord, SessionStart};
pub use device_certificate::{
    CertificateStatus, DeviceCertificate, DeviceCertificateStore, NewDeviceCertificate,
    RevokedCertificate,
};
pub use device_ops::*;
pub use error::{StoreError, StoreResult};
pub use exports::{
    ExportFilter, ExportJob, ExportJobFilter, ExportKind, ExportRows, ExportStatus, ExportStore,
    NewExport,
};
pub use model::*;
pub use monitoring::{
    MonitoringSnapshot, MonitoringStore, OutboxBacklog, SenderQueue, StatusAmount, WalCounters,
    wal_counters,
};
pub use payments::*;
pub use reconciliation::{
    NewReconciliationRow, NewReconciliationRun, ReconcilableTransaction, ReconciliationOutcome,
    ReconciliationRow, ReconciliationRowFilter, ReconciliationRun, ReconciliationStore,
};
pub use settlement::*;
pub use whatsapp::{
    AlertableDevice, DailyTakings, MessageStatus, NewWaMessage, NewWaSender, OPERATOR_SENDER,
    SenderKind, WaContact, WaIncident, WaMerchantSettings, WaMessage, WaMessageEvent,
    WaMessageFilter, WaRecentSend, WaSendOutcome, WaSender, WaText, WaWebhook, WhatsAppStore,
};

/// The storage interface. See the crate docs for the transaction rule.
#[async_trait]
pub trait Store:
    PaymentStore
    + BillingStore
    + DeviceOpsStore
    + AuthStore
    + ClusterStore
    + SettlementStore
    + ReconciliationStore
    + ExportStore
    + BillingFinanceStore
    + CustomerImportStore
    + WhatsAppStore
    + DeviceCertificateStore
    + MonitoringStore
    + ClaimStore
    + Send
    + Sync
    + std::fmt::Debug
{
    fn backend(&self) -> Backend;

    /// One round trip to the database.
    async fn ping(&self) -> StoreResult<()>;
    /// The database server's clock (Unix ms) where it is another machine's: PostgreSQL's
    /// `clock_timestamp()`. `None` on SQLite, which has no clock but the process's.
    async fn server_clock_ms(&self) -> StoreResult<Option<i64>>;
    /// The database's own consistency check: SQLite's `PRAGMA integrity_check` (its lines,
    /// `["ok"]` when sound); PostgreSQL checks itself, `["ok"]`.
    async fn integrity_check(&self) -> StoreResult<Vec<String>>;
    /// Applies pending migrations; returns how many were applied.
    async fn migrate(&self) -> StoreResult<usize>;
    async fn migration_status(&self) -> StoreResult<MigrationStatus>;

    // Admin tokens.
    async fn count_active_admin_tokens(&self) -> StoreResult<i64>;
    async fn create_admin_token(&self, name: &str, token_hash: &str) -> StoreResult<AdminToken>;
    /// Revokes every active token with this name; returns how many.
    async fn revoke_admin_tokens_named(&self, name: &str) -> StoreResult<u64>;

    // Merchants.
    async fn create_merchant(&self, new: NewMerchant) -> StoreResult<Merchant>;
    async fn get_merchant(&self, id: &str) -> StoreResult<Merchant>;
    async fn list_merchants(
        &self,
        filter: &MerchantFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Merchant>>;
    async fn update_merchant(&self, id: &str, patch: MerchantPatch) -> StoreResult<Merchant>;
    /// Moves a merchant to `to` if its current status is one of `from`; otherwise a
    /// `Conflict` with code `invalid_transition`.
    async fn transition_merchant(
        &self,
        id: &str,
        from: &[MerchantStatus],
        to: MerchantStatus,
        reason: Option<String>,
    ) -> StoreResult<Merchant>;

    // Outlets.
    async fn create_outlet(&self, new: NewOutlet) -> StoreResult<Outlet>;
    async fn get_outlet(&self, id: &str) -> StoreResult<Outlet>;
    async fn list_outlets(
        &self,
        filter: &OutletFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Outlet>>;
    async fn update_outlet(&self, id: &str, patch: OutletPatch) -> StoreResult<Outlet>;

    // Terminals.
    async fn create_terminal(&self, new: NewTerminal) -> StoreResult<Terminal>;
    async fn get_terminal(&self, id: &str) -> StoreResult<Terminal>;
    async fn list_terminals(
        &self,
        filter: &TerminalFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Terminal>>;
    async fn update_terminal(&self, id: &str, patch: TerminalPatch) -> StoreResult<Terminal>;

    // Devices.
    async fn create_device(&self, new: NewDevice) -> StoreResult<Device>;
    async fn get_device(&self, id: &str) -> StoreResult<Device>;
    async fn list_devices(
        &self,
        filter: &DeviceFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Device>>;
    async fn update_device(&self, id: &str, patch: DevicePatch) -> StoreResult<Device>;
    /// Binds a device to a terminal of an approved merchant. Binding to the terminal it is
    /// already bound to is a no-op; any other existing binding (of the device or of the
    /// terminal) is a `Conflict`.
    async fn bind_device(&self, device_id: &str, terminal_id: &str) -> StoreResult<Device>;
    async fn unbind_device(&self, device_id: &str) -> StoreResult<Device>;
    /// The device's binding history, oldest first.
    async fn device_bindings(&self, device_id: &str) -> StoreResult<Vec<DeviceBinding>>;
    /// Replaces the device's secret hash (rotate, or re-issue after revoke).
    async fn set_device_secret_hash(&self, device_id: &str, hash: &str) -> StoreResult<Device>;
    /// Revokes the device's credential: the hash is deleted.
    async fn revoke_device_secret(&self, device_id: &str) -> StoreResult<Device>;
    /// The stored hash of an active credential; `None` if revoked. `NotFound` for an
    /// unknown device.
    async fn device_secret_hash(&self, device_id: &str) -> StoreResult<Option<String>>;
}

/// Payments: the inbox, transactions, their timeline, the ledger and the announcement
/// outbox.
#[async_trait]
pub trait PaymentStore: Send + Sync {
    /// Keeps a request that was refused before it became an event (bad signature,
    /// malformed body), with why. Returns the inbox id.
    async fn record_inbox(
        &self,
        entry: InboxEntry,
        outcome: &str,
        detail: Option<&str>,
    ) -> StoreResult<String>;

    /// Records the request and applies its verified event, all in one transaction: the
    /// dedupe key (provider, provider transaction id, status), the state change decided by
    /// `rules`, ledger postings and the announcement. An unknown order changes nothing but the
    /// inbox (kept with outcome `unknown_order`), so the provider's retry is processed.
    async fn apply_payment_event(
        &self,
        entry: InboxEntry,
        event: IncomingEvent,
        rules: &dyn PaymentRules,
    ) -> StoreResult<PaymentOutcome>;

    /// Applies several events in one database transaction (one commit, one fsync): the
    /// group commit behind high callback rates. Each event gets its own outcome; an
    /// unknown order or a failing event is undone without affecting the others.
    ///
    /// None of the payment methods blocks the calling thread, on either backend: on SQLite
    /// the batch (this, the other `apply_payment_event*` methods and
    /// [`Self::record_deliveries`]) runs on the store's payment writer thread
    /// (`gema-sqlite-payments`) and the caller awaits its reply; call them from any task.
    async fn apply_payment_events(
        &self,
        items: Vec<(InboxEntry, IncomingEvent)>,
        rules: &dyn PaymentRules,
    ) -> StoreResult<Vec<StoreResult<PaymentOutcome>>>;
    /// [`Self::apply_payment_events`], with delivery results recorded in the same transaction
    /// (one commit for both, as [`Self::record_deliveries`] would record them). If the batch
    /// fails, the results are recorded on their own and the events applied as
    /// `apply_payment_events` would; if the results cannot be recorded on their own either,
    /// the call fails (an `Ok` always means the results are committed).
    async fn apply_payment_events_and_deliveries(
        &self,
        items: Vec<(InboxEntry, IncomingEvent)>,
        rules: &dyn PaymentRules,
        deliveries: Vec<(String, DeliveryResult)>,
    ) -> StoreResult<Vec<StoreResult<PaymentOutcome>>>;

    /// A pending transaction for a terminal of an approved merchant.
    async fn create_transaction(&self, new: NewTransaction) -> StoreResult<Transaction>;
    async fn get_transaction(&self, id: &str) -> StoreResult<Transaction>;
    async fn list_transactions(
        &self,
        filter: &TransactionFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Transaction>>;
    /// The timeline, oldest first.
    async fn transaction_events(&self, id: &str) -> StoreResult<Vec<TransactionEvent>>;
    async fn transaction_announcements(&self, id: &str) -> StoreResult<Vec<Announcement>>;
    async fn list_ledger_entries(
        &self,
        filter: &LedgerFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<LedgerEntry>>;
    /// Expires up to `limit` pending transactions whose expiry is at or before `now_ms`;
    /// returns their ids.
    async fn expire_due_transactions(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<String>>;
    /// A new announcement for a paid transaction (an operator's retry).
    async fn queue_announcement(
        &self,
        transaction_id: &str,
        rules: &dyn PaymentRules,
    ) -> StoreResult<Announcement>;
    /// Pending announcements due at `now_ms` (of one device, or of all), oldest first.
    async fn due_announcements(
        &self,
        device_id: Option<&str>,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<AnnouncementDelivery>>;
    /// When the earliest pending announcement due after `after_ms` is due, if any is. (Those
    /// due by `after_ms` are the caller's to read with [`Self::due_announcements`].)
    async fn next_announcement_due_ms(&self, after_ms: i64) -> StoreResult<Option<i64>>;
    /// Records an attempt's result on a pending announcement.
    async fn record_delivery(
        &self,
        announcement_id: &str,
        result: DeliveryResult,
    ) -> StoreResult<()>;
    /// Records several results in one transaction (one fsync). Unknown ids are skipped.
    async fn record_deliveries(&self, results: Vec<(String, DeliveryResult)>) -> StoreResult<()>;
}

/// Connection settings shared by both backends.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// SQLite only: how long a writer waits for another process's write lock.
    pub busy_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens the store named by `url` (`sqlite://…` or `postgres://…`/`postgresql://…`).
/// Does not migrate; call [`Store::migrate`].
pub async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Arc<dyn Store>> {
    Ok(Arc::new(open_db(url, options).await?))
}

/// The backend a URL names, connected.
pub(crate) async fn open_db(url: &str, options: &ConnectOptions) -> StoreResult<Db> {
    if url.starts_with("sqlite:") {
        Ok(Db::Sqlite(
            sqlite::SqliteStore::connect(url, options).await?,
        ))
    } else if is_postgres_url(url) {
        Ok(Db::Postgres(
            postgres::PostgresStore::connect(url, options).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub(crate) fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    // scheme://user:password@host/…  →  scheme://user:***@host/…
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _password)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

/// The store: one of the two backends. Every storage trait is implemented once, on this.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Db {
    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Appended to a `SELECT` that reads rows the transaction is about to change:
    /// `FOR UPDATE` on PostgreSQL; nothing on SQLite, where a write transaction already
    /// holds the database's write lock.
    pub fn row_lock(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => "FOR UPDATE",
        }
    }

    /// The read pool (on SQLite, read-only connections).
    pub fn read(&self) -> Exec<'_> {
        match self {
            Db::Sqlite(s) => Exec::SqlitePool(&s.read),
            Db::Postgres(p) => Exec::PgPool(&p.read),
        }
    }

    /// A write transaction (on SQLite: on the write turn, started with `BEGIN IMMEDIATE`).
    pub async fn begin_write(&self) -> StoreResult<Tx> {
        Ok(match self {
            Db::Sqlite(s) => Tx::SqliteWrite(s.begin_write().await?),
            Db::Postgres(p) => Tx::Postgres(p.write.begin().await?),
        })
    }

    /// A read-only transaction: several reads on one snapshot.
    pub async fn begin_read(&self) -> StoreResult<Tx> {
        Ok(match self {
            Db::Sqlite(s) => Tx::SqliteRead(s.read.begin().await?),
            Db::Postgres(p) => Tx::PostgresRead(p.read.begin().await?),
        })
    }

    /// The write connection, for a statement that is a transaction of its own. Never
    /// audited: a write an audit row records (anything an admin request or CLI command
    /// changes) goes through [`Db::begin_write`] and [`Tx::commit`], which carry the
    /// row of the task's audit scope (`auth::audit`). Bookkeeping (audit rows themselves,
    /// idempotency keys, login failures, token use, cluster upkeep) stays here.
    pub async fn write_conn(&self) -> StoreResult<Conn> {
        debug_assert!(
            !crate::auth::audit::scope_awaits_row(),
            "a write outside a transaction in an audit scope whose row is not written yet"
        );
        Ok(match self {
            Db::Sqlite(s) => Conn::Sqlite(s.write_conn().await?),
            Db::Postgres(p) => Conn::Postgres(p.write.acquire().await?),
        })
    }
}

/// A transaction on either backend. Dropped without [`Tx::commit`], it rolls back.
pub(crate) enum Tx {
    SqliteWrite(WriteTurn<sqlx::Transaction<'static, sqlx::Sqlite>>),
    SqliteRead(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    PostgresRead(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    /// Commits. A write transaction in an audit scope whose row is not written yet
    /// inserts that row first, so the write and its row commit together; if the insert
    /// fails, nothing is committed (`StoreError::Audit`).
    pub async fn commit(mut self) -> StoreResult<()> {
        let scoped = match self {
            Tx::SqliteWrite(_) | Tx::Postgres(_) => {
                crate::auth::audit::insert_scoped(&mut self.exec()).await?
            }
            Tx::SqliteRead(_) | Tx::PostgresRead(_) => None,
        };
        match self {
            Tx::SqliteWrite(tx) => tx.commit().await,
            Tx::SqliteRead(tx) => tx.commit().await,
            Tx::Postgres(tx) | Tx::PostgresRead(tx) => tx.commit().await,
        }?;
        if let Some(row) = scoped {
            row.committed();
        }
        Ok(())
    }
}

/// A write connection outside a transaction (on SQLite: holding the write turn).
pub(crate) enum Conn {
    Sqlite(WriteTurn<sqlx::pool::PoolConnection<sqlx::Sqlite>>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl Tx {
    /// The transaction, for a function that runs several statements on it.
    pub fn exec(&mut self) -> Exec<'_> {
        self.into()
    }
}

impl Conn {
    /// The connection, for a function that runs several statements on it.
    pub fn exec(&mut self) -> Exec<'_> {
        self.into()
    }
}

impl<'c> From<&'c mut Tx> for Exec<'c> {
    fn from(tx: &'c mut Tx) -> Self {
        match tx {
            Tx::SqliteWrite(tx) => Exec::Sqlite(tx),
            Tx::SqliteRead(tx) => Exec::Sqlite(tx),
            Tx::Postgres(tx) | Tx::PostgresRead(tx) => Exec::Pg(tx),
        }
    }
}

impl<'c> From<&'c mut Conn> for Exec<'c> {
    fn from(conn: &'c mut Conn) -> Self {
        match conn {
            Conn::Sqlite(conn) => Exec::Sqlite(conn),
            Conn::Postgres(conn) => Exec::Pg(conn),
        }
    }
}

/// The one implementation, for both backends: each method is its entity module's function.
#[async_trait::async_trait]
impl Store for Db {
    fn backend(&self) -> Backend {
        Db::backend(self)
    }

    async fn ping(&self) -> StoreResult<()> {
        query("SELECT 1").execute(self.read()).await?;
        Ok(())
    }

    async fn server_clock_ms(&self) -> StoreResult<Option<i64>> {
        match self {
            Db::Sqlite(_) => Ok(None),
            Db::Postgres(_) => {
                let (ms,) = crate::db::query_as::<(i64,)>(
                    "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
                )
                .fetch_one(self.read())
                .await?;
                Ok(Some(ms))
            }
        }
    }

    async fn integrity_check(&self) -> StoreResult<Vec<String>> {
        match self {
            Db::Sqlite(_) => Ok(crate::db::query_as::<(String,)>("PRAGMA integrity_check")
                .fetch_all(self.read())
                .await?
                .into_iter()
                .map(|(line,)| line)
                .collect()),
            Db::Postgres(_) => Ok(vec!["ok".to_string()]),
        }
    }

    async fn migrate(&self) -> StoreResult<usize> {
        let pending = self.migration_status().await?.pending.len();
        match self {
            Db::Sqlite(s) => crate::sqlite::MIGRATOR.run(&s.write).await?,
            Db::Postgres(p) => crate::postgres::MIGRATOR.run(&p.write).await?,
        }
        Ok(pending)
    }

    async fn migration_status(&self) -> StoreResult<MigrationStatus> {
        match self {
            Db::Sqlite(s) => {
                migration_status(&mut *s.write.acquire().await?, &crate::sqlite::MIGRATOR).await
            }
            Db::Postgres(p) => {
                migration_status(&mut *p.write.acquire().await?, &crate::postgres::MIGRATOR).await
            }
        }
    }

    // ---- admin tokens ------------------------------------------------------------

    async fn count_active_admin_tokens(&self) -> StoreResult<i64> {
        crate::admin_token::count_active_admin_tokens(self).await
    }

    async fn create_admin_token(&self, name: &str, token_hash: &str) -> StoreResult<AdminToken> {
        crate::admin_token::create_admin_token(self, name, token_hash).await
    }

    async fn revoke_admin_tokens_named(&self, name: &str) -> StoreResult<u64> {
        crate::admin_token::revoke_admin_tokens_named(self, name).await
    }

    // ---- merchants ---------------------------------------------------------------

    async fn create_merchant(&self, new: NewMerchant) -> StoreResult<Merchant> {
        crate::merchant::create_merchant(self, new).await
    }

    async fn get_merchant(&self, id: &str) -> StoreResult<Merchant> {
        crate::merchant::get_merchant(self, id).await
    }

    async fn list_merchants(
        &self,
        filter: &MerchantFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Merchant>> {
        crate::merchant::list_merchants(self, filter, page).await
    }

    async fn update_merchant(&self, id: &str, patch: MerchantPatch) -> StoreResult<Merchant> {
        crate::merchant::update_merchant(self, id, patch).await
    }

    async fn transition_merchant(
        &self,
        id: &str,
        from: &[MerchantStatus],
        to: MerchantStatus,
        reason: Option<String>,
    ) -> StoreResult<Merchant> {
        crate::merchant::transition_merchant(self, id, from, to, reason).await
    }

    // ---- outlets -----------------------------------------------------------------

    async fn create_outlet(&self, new: NewOutlet) -> StoreResult<Outlet> {
        crate::outlet::create_outlet(self, new).await
    }

    async fn get_outlet(&self, id: &str) -> StoreResult<Outlet> {
        crate::outlet::get_outlet(self, id).await
    }

    async fn list_outlets(
        &self,
        filter: &OutletFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Outlet>> {
        crate::outlet::list_outlets(self, filter, page).await
    }

    async fn update_outlet(&self, id: &str, patch: OutletPatch) -> StoreResult<Outlet> {
        crate::outlet::update_outlet(self, id, patch).await
    }

    // ---- terminals ---------------------------------------------------------------

    async fn create_terminal(&self, new: NewTerminal) -> StoreResult<Terminal> {
        crate::terminal::create_terminal(self, new).await
    }

    async fn get_terminal(&self, id: &str) -> StoreResult<Terminal> {
        crate::terminal::get_terminal(self, id).await
    }

    async fn list_terminals(
        &self,
        filter: &TerminalFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Terminal>> {
        crate::terminal::list_terminals(self, filter, page).await
    }

    async fn update_terminal(&self, id: &str, patch: TerminalPatch) -> StoreResult<Terminal> {
        crate::terminal::update_terminal(self, id, patch).await
    }

    // ---- devices -----------------------------------------------------------------

    async fn create_device(&self, new: NewDevice) -> StoreResult<Device> {
        crate::device::create_device(self, new).await
    }

    async fn get_device(&self, id: &str) -> StoreResult<Device> {
        crate::device::get_device(self, id).await
    }

    async fn list_devices(
        &self,
        filter: &DeviceFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Device>> {
        crate::device::list_devices(self, filter, page).await
    }

    async fn update_device(&self, id: &str, patch: DevicePatch) -> StoreResult<Device> {
        crate::device::update_device(self, id, patch).await
    }

    async fn bind_device(&self, device_id: &str, terminal_id: &str) -> StoreResult<Device> {
        crate::device::bind_device(self, device_id, terminal_id).await
    }

    async fn unbind_device(&self, device_id: &str) -> StoreResult<Device> {
        crate::device::unbind_device(self, device_id).await
    }

    async fn device_bindings(&self, device_id: &str) -> StoreResult<Vec<DeviceBinding>> {
        crate::device::device_bindings(self, device_id).await
    }

    async fn set_device_secret_hash(&self, device_id: &str, hash: &str) -> StoreResult<Device> {
        crate::device::set_device_secret_hash(self, device_id, hash).await
    }

    async fn revoke_device_secret(&self, device_id: &str) -> StoreResult<Device> {
        crate::device::revoke_device_secret(self, device_id).await
    }

    async fn device_secret_hash(&self, device_id: &str) -> StoreResult<Option<String>> {
        crate::device::device_secret_hash(self, device_id).await
    }
}

/// Which of `migrator`'s migrations the database has, and which it lacks.
async fn migration_status(
    conn: &mut impl sqlx::migrate::Migrate,
    migrator: &sqlx::migrate::Migrator,
) -> StoreResult<MigrationStatus> {
    conn.ensure_migrations_table().await?;
    let applied: Vec<i64> = conn
        .list_applied_migrations()
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    let pending = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    Ok(MigrationStatus { applied, pending })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://gema:s3cret@db:5432/gema"),
            "postgres://gema:***@db:5432/gema"
        );
        assert_eq!(redact_url("postgres://db/gema"), "postgres://db/gema");
        assert_eq!(redact_url("sqlite://./gema.db"), "sqlite://./gema.db");
    }
}
