//! [`Store`]'s one implementation, on [`Db`] for both backends (its registry methods
//! hand over to the entity modules: `merchant`, `outlet`, `terminal`, `device`,
//! `admin_token`), and the helpers every query module uses: ids, the time, pages.

use time::OffsetDateTime;

use crate::db::{Db, query};

use crate::model::Page;
use crate::{
    AdminToken, Backend, Device, DeviceBinding, DeviceFilter, DevicePatch, Merchant,
    MerchantFilter, MerchantPatch, MerchantStatus, MigrationStatus, NewDevice, NewMerchant,
    NewOutlet, NewTerminal, Outlet, OutletFilter, OutletPatch, PageRequest, Store, StoreResult,
    Terminal, TerminalFilter, TerminalPatch,
};

/// A new time-ordered id with a type prefix: `dev_01jd…`. Ids sort by creation time, which
/// is what keyset pagination relies on: a plain ULID only orders by millisecond (its tail is
/// random), so ids come from one monotonic generator per process, strictly increasing even
/// within a millisecond. Across nodes sharing PostgreSQL, order holds to the millisecond.
pub(crate) fn new_id(prefix: &str) -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    // The generator fails only if 2^80 ids were made in one millisecond; a poisoned lock
    // only if a thread panicked mid-generate. Either way a fresh ULID is still unique.
    let monotonic = GENERATOR
        .lock()
        .ok()
        .and_then(|mut generator| generator.generate().ok());
    let ulid = match monotonic {
        Some(ulid) => ulid,
        None => ulid::Ulid::new(),
    };
    format!("{prefix}_{}", ulid.to_string().to_lowercase())
}

/// Now, truncated to microseconds (what PostgreSQL stores), so a value read back equals the
/// value written on both backends.
pub(crate) fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
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

/// Cuts a `limit + 1` result down to a page and its cursor.
pub(crate) fn paginate<T>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> &str) -> Page<T> {
    let limit = limit as usize;
    let next_after = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|row| id(row).to_string())
    } else {
        None
    };
    Page {
        items: rows,
        next_after,
    }
}

/// The `limit` to bind: one more than requested, to learn whether another page exists.
pub(crate) fn fetch_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, PageRequest::MAX_LIMIT)) + 1
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

    async fn use_admin_token(&self, token_hash: &str) -> StoreResult<Option<AdminToken>> {
        crate::admin_token::use_admin_token(self, token_hash).await
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
