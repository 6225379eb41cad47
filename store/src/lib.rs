//! Gema's storage: the one place that holds SQL.
//!
//! [`Store`] is the storage interface the rest of Gema uses. Two implementations are compiled
//! into every binary and chosen at run time by the database URL: SQLite (the embedded
//! default, one machine) and PostgreSQL (several gateway nodes). Each backend has its own
//! migrations folder (`migrations/sqlite`, `migrations/postgres`), embedded into the binary.
//! The query code is written once, as plain functions over `db::Db` (an enum of the two
//! backends; see the `db` module for why); what really differs (connection setup,
//! write-transaction start, row locking, the payment batch's I/O) lives in each backend's
//! module.
//!
//! Every method is one database transaction: checks and writes that belong together (bind
//! a device only if the terminal's merchant is approved and the terminal is free) are done
//! atomically here, so nothing half-written is ever left behind. No other crate may contain
//! SQL.

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
mod db;
mod device;
pub mod device_ops;
mod error;
mod merchant;
pub mod model;
mod outlet;
pub mod payments;
mod postgres;
mod sql;
mod sqlite;
mod sqlite_payments;
mod terminal;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use auth::*;
pub use device_ops::*;
pub use error::{StoreError, StoreResult};
pub use model::*;
pub use payments::*;

/// The storage interface. See the crate docs for the transaction rule.
#[async_trait]
pub trait Store: PaymentStore + DeviceOpsStore + AuthStore + Send + Sync + std::fmt::Debug {
    fn backend(&self) -> Backend;

    /// One round trip to the database.
    async fn ping(&self) -> StoreResult<()>;
    /// Applies pending migrations; returns how many were applied.
    async fn migrate(&self) -> StoreResult<usize>;
    async fn migration_status(&self) -> StoreResult<MigrationStatus>;

    // Admin tokens.
    async fn count_active_admin_tokens(&self) -> StoreResult<i64>;
    async fn create_admin_token(&self, name: &str, token_hash: &str) -> StoreResult<AdminToken>;
    /// Finds a non-revoked token by hash and records its use.
    async fn use_admin_token(&self, token_hash: &str) -> StoreResult<Option<AdminToken>>;
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
    /// `apply_payment_events` would.
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
    if url.starts_with("sqlite:") {
        Ok(Arc::new(db::Db::Sqlite(
            sqlite::SqliteStore::connect(url, options).await?,
        )))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(db::Db::Postgres(
            postgres::PostgresStore::connect(url, options).await?,
        )))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
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
