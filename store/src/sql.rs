//! [`crate::Store`] (registry and admin tokens), implemented once on [`Db`] for both
//! backends, and the helpers every query module uses (ids, time, pages).
//!
//! Both SQLite and PostgreSQL accept `$1`-style parameters, `RETURNING`, and the same DDL
//! apart from column types, so one text serves both. [`Db`] supplies the read pool,
//! `write_conn()` and `begin_write()` for writes (SQLite starts write transactions with
//! `BEGIN IMMEDIATE` so a read-then-write transaction never fails on a stale snapshot, and
//! both wait for the write turn, see `sqlite.rs`), and the row-lock suffix
//! ([`Db::row_lock`]: `FOR UPDATE` on PostgreSQL, nothing on SQLite where the write
//! transaction already holds the database lock).

use time::OffsetDateTime;

use crate::StoreError;
use crate::db::{Db, query, query_as};
use crate::model::{CredentialState, CredentialStatus, Device, DeviceStatus, Page};
use crate::sql_auth::touch_token;
use crate::sql_payments::payment_ref_free;

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
) -> crate::StoreResult<crate::MigrationStatus> {
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
    Ok(crate::MigrationStatus { applied, pending })
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
    i64::from(limit.clamp(1, crate::PageRequest::MAX_LIMIT)) + 1
}

/// The `devices` columns a [`DeviceRow`] reads (not the credential hash).
pub(crate) const DEVICE_COLUMNS: &str = "id, serial, model, firmware_version, status, \
     terminal_id, credential_issued_at, credential_revoked_at, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct DeviceRow {
    id: String,
    serial: String,
    model: String,
    firmware_version: Option<String>,
    status: String,
    terminal_id: Option<String>,
    credential_issued_at: OffsetDateTime,
    credential_revoked_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<DeviceRow> for Device {
    type Error = StoreError;
    fn try_from(row: DeviceRow) -> Result<Self, Self::Error> {
        Ok(Device {
            status: DeviceStatus::try_from(row.status).map_err(StoreError::Corrupt)?,
            credential: CredentialState {
                status: if row.credential_revoked_at.is_some() {
                    CredentialStatus::Revoked
                } else {
                    CredentialStatus::Active
                },
                issued_at: row.credential_issued_at,
                revoked_at: row.credential_revoked_at,
            },
            id: row.id,
            serial: row.serial,
            model: row.model,
            firmware_version: row.firmware_version,
            terminal_id: row.terminal_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[async_trait::async_trait]
impl crate::Store for Db {
    fn backend(&self) -> crate::Backend {
        Db::backend(self)
    }

    async fn ping(&self) -> crate::StoreResult<()> {
        query("SELECT 1").execute(self.read()).await?;
        Ok(())
    }

    async fn migrate(&self) -> crate::StoreResult<usize> {
        let pending = self.migration_status().await?.pending.len();
        match self {
            Db::Sqlite(s) => crate::sqlite::MIGRATOR.run(&s.write).await?,
            Db::Postgres(p) => crate::postgres::MIGRATOR.run(&p.write).await?,
        }
        Ok(pending)
    }

    async fn migration_status(&self) -> crate::StoreResult<crate::MigrationStatus> {
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

    async fn count_active_admin_tokens(&self) -> crate::StoreResult<i64> {
        let (count,): (i64,) =
            query_as("SELECT COUNT(*) FROM admin_tokens WHERE revoked_at IS NULL")
                .fetch_one(self.read())
                .await?;
        Ok(count)
    }

    async fn create_admin_token(
        &self,
        name: &str,
        token_hash: &str,
    ) -> crate::StoreResult<crate::AdminToken> {
        let token = query_as::<crate::AdminToken>(
            "INSERT INTO admin_tokens (id, name, token_hash, created_at) \
             VALUES ($1, $2, $3, $4) \
             RETURNING id, name, created_at, last_used_at, revoked_at",
        )
        .bind(crate::sql::new_id("tok"))
        .bind(name)
        .bind(token_hash)
        .bind(crate::sql::now())
        .fetch_one(&mut self.write_conn().await?)
        .await?;
        Ok(token)
    }

    async fn use_admin_token(
        &self,
        token_hash: &str,
    ) -> crate::StoreResult<Option<crate::AdminToken>> {
        let token = query_as::<crate::AdminToken>(
            "SELECT id, name, created_at, last_used_at, revoked_at FROM admin_tokens \
             WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(self.read())
        .await?;
        let Some(mut token) = token else {
            return Ok(None);
        };
        token.last_used_at = touch_token(
            &mut self.write_conn().await?.exec(),
            &token.id,
            token.last_used_at,
        )
        .await?;
        Ok(Some(token))
    }

    async fn revoke_admin_tokens_named(&self, name: &str) -> crate::StoreResult<u64> {
        let done = query(
            "UPDATE admin_tokens SET revoked_at = $1 \
             WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(crate::sql::now())
        .bind(name)
        .execute(&mut self.write_conn().await?)
        .await?;
        Ok(done)
    }

    // ---- merchants ---------------------------------------------------------------

    async fn create_merchant(
        &self,
        new: crate::NewMerchant,
    ) -> crate::StoreResult<crate::Merchant> {
        let now = crate::sql::now();
        let merchant = query_as::<crate::Merchant>(
            "INSERT INTO merchants \
             (id, name, email, phone, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *",
        )
        .bind(crate::sql::new_id("mer"))
        .bind(new.name)
        .bind(new.email)
        .bind(new.phone)
        .bind(crate::MerchantStatus::Pending.as_str())
        .bind(now)
        .fetch_one(&mut self.write_conn().await?)
        .await?;
        Ok(merchant)
    }

    async fn get_merchant(&self, id: &str) -> crate::StoreResult<crate::Merchant> {
        query_as::<crate::Merchant>("SELECT * FROM merchants WHERE id = $1")
            .bind(id)
            .fetch_optional(self.read())
            .await?
            .ok_or_else(|| crate::StoreError::not_found("merchant", id))
    }

    async fn list_merchants(
        &self,
        filter: &crate::MerchantFilter,
        page: &crate::PageRequest,
    ) -> crate::StoreResult<crate::Page<crate::Merchant>> {
        let rows = query_as::<crate::Merchant>(
            "SELECT * FROM merchants \
             WHERE ($1 IS NULL OR id > $1) AND ($2 IS NULL OR status = $2) \
             ORDER BY id LIMIT $3",
        )
        .bind(page.after.as_deref())
        .bind(filter.status.map(|s| s.as_str()))
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |m| &m.id))
    }

    async fn update_merchant(
        &self,
        id: &str,
        patch: crate::MerchantPatch,
    ) -> crate::StoreResult<crate::Merchant> {
        let mut tx = self.begin_write().await?;
        let mut merchant = query_as::<crate::Merchant>(
            ["SELECT * FROM merchants WHERE id = $1 ", self.row_lock()].concat(),
        )
        .bind(id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| crate::StoreError::not_found("merchant", id))?;
        if let Some(name) = patch.name {
            merchant.name = name;
        }
        if let Some(email) = patch.email {
            merchant.email = email;
        }
        if let Some(phone) = patch.phone {
            merchant.phone = phone;
        }
        let merchant = query_as::<crate::Merchant>(
            "UPDATE merchants SET name = $1, email = $2, phone = $3, updated_at = $4 \
             WHERE id = $5 RETURNING *",
        )
        .bind(merchant.name)
        .bind(merchant.email)
        .bind(merchant.phone)
        .bind(crate::sql::now())
        .bind(id)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(merchant)
    }

    async fn transition_merchant(
        &self,
        id: &str,
        from: &[crate::MerchantStatus],
        to: crate::MerchantStatus,
        reason: Option<String>,
    ) -> crate::StoreResult<crate::Merchant> {
        let mut tx = self.begin_write().await?;
        let merchant = query_as::<crate::Merchant>(
            ["SELECT * FROM merchants WHERE id = $1 ", self.row_lock()].concat(),
        )
        .bind(id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| crate::StoreError::not_found("merchant", id))?;
        if !from.contains(&merchant.status) {
            return Err(crate::StoreError::conflict(
                "invalid_transition",
                None,
                format!(
                    "merchant {id} is {}; it cannot become {}",
                    merchant.status.as_str(),
                    to.as_str()
                ),
            ));
        }
        let merchant = query_as::<crate::Merchant>(
            "UPDATE merchants SET status = $1, status_reason = $2, updated_at = $3 \
             WHERE id = $4 RETURNING *",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(crate::sql::now())
        .bind(id)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(merchant)
    }

    // ---- outlets -----------------------------------------------------------------

    async fn create_outlet(&self, new: crate::NewOutlet) -> crate::StoreResult<crate::Outlet> {
        let mut tx = self.begin_write().await?;
        let merchant: Option<(String,)> = query_as("SELECT id FROM merchants WHERE id = $1")
            .bind(&new.merchant_id)
            .fetch_optional(&mut tx)
            .await?;
        if merchant.is_none() {
            return Err(crate::StoreError::not_found("merchant", new.merchant_id));
        }
        let now = crate::sql::now();
        let outlet = query_as::<crate::Outlet>(
            "INSERT INTO outlets \
             (id, merchant_id, name, address, city, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *",
        )
        .bind(crate::sql::new_id("out"))
        .bind(new.merchant_id)
        .bind(new.name)
        .bind(new.address)
        .bind(new.city)
        .bind(now)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(outlet)
    }

    async fn get_outlet(&self, id: &str) -> crate::StoreResult<crate::Outlet> {
        query_as::<crate::Outlet>("SELECT * FROM outlets WHERE id = $1")
            .bind(id)
            .fetch_optional(self.read())
            .await?
            .ok_or_else(|| crate::StoreError::not_found("outlet", id))
    }

    async fn list_outlets(
        &self,
        filter: &crate::OutletFilter,
        page: &crate::PageRequest,
    ) -> crate::StoreResult<crate::Page<crate::Outlet>> {
        let rows = query_as::<crate::Outlet>(
            "SELECT * FROM outlets \
             WHERE ($1 IS NULL OR id > $1) AND ($2 IS NULL OR merchant_id = $2) \
             ORDER BY id LIMIT $3",
        )
        .bind(page.after.as_deref())
        .bind(filter.merchant_id.as_deref())
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |o| &o.id))
    }

    async fn update_outlet(
        &self,
        id: &str,
        patch: crate::OutletPatch,
    ) -> crate::StoreResult<crate::Outlet> {
        let mut tx = self.begin_write().await?;
        let mut outlet = query_as::<crate::Outlet>(
            ["SELECT * FROM outlets WHERE id = $1 ", self.row_lock()].concat(),
        )
        .bind(id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| crate::StoreError::not_found("outlet", id))?;
        if let Some(name) = patch.name {
            outlet.name = name;
        }
        if let Some(address) = patch.address {
            outlet.address = address;
        }
        if let Some(city) = patch.city {
            outlet.city = city;
        }
        let outlet = query_as::<crate::Outlet>(
            "UPDATE outlets SET name = $1, address = $2, city = $3, updated_at = $4 \
             WHERE id = $5 RETURNING *",
        )
        .bind(outlet.name)
        .bind(outlet.address)
        .bind(outlet.city)
        .bind(crate::sql::now())
        .bind(id)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(outlet)
    }

    // ---- terminals ---------------------------------------------------------------

    async fn create_terminal(
        &self,
        new: crate::NewTerminal,
    ) -> crate::StoreResult<crate::Terminal> {
        let mut tx = self.begin_write().await?;
        let outlet: Option<(String,)> = query_as("SELECT id FROM outlets WHERE id = $1")
            .bind(&new.outlet_id)
            .fetch_optional(&mut tx)
            .await?;
        if outlet.is_none() {
            return Err(crate::StoreError::not_found("outlet", new.outlet_id));
        }
        let taken: Option<(String,)> =
            query_as("SELECT id FROM terminals WHERE outlet_id = $1 AND label = $2")
                .bind(&new.outlet_id)
                .bind(&new.label)
                .fetch_optional(&mut tx)
                .await?;
        if let Some((other,)) = taken {
            return Err(crate::StoreError::conflict(
                "label_taken",
                Some("label"),
                format!(
                    "terminal {other} of this outlet already has label {}",
                    new.label
                ),
            ));
        }
        if let Some(payment_ref) = &new.payment_ref {
            payment_ref_free(&mut tx.exec(), payment_ref, None).await?;
        }
        let now = crate::sql::now();
        let terminal = query_as::<crate::Terminal>(
            "INSERT INTO terminals \
             (id, outlet_id, label, name, payment_ref, static_qris, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $7, $6, $6) RETURNING *",
        )
        .bind(crate::sql::new_id("ter"))
        .bind(new.outlet_id)
        .bind(new.label)
        .bind(new.name)
        .bind(new.payment_ref)
        .bind(now)
        .bind(new.static_qris)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(terminal)
    }

    async fn get_terminal(&self, id: &str) -> crate::StoreResult<crate::Terminal> {
        query_as::<crate::Terminal>("SELECT * FROM terminals WHERE id = $1")
            .bind(id)
            .fetch_optional(self.read())
            .await?
            .ok_or_else(|| crate::StoreError::not_found("terminal", id))
    }

    async fn list_terminals(
        &self,
        filter: &crate::TerminalFilter,
        page: &crate::PageRequest,
    ) -> crate::StoreResult<crate::Page<crate::Terminal>> {
        let rows = query_as::<crate::Terminal>(
            "SELECT * FROM terminals \
             WHERE ($1 IS NULL OR id > $1) AND ($2 IS NULL OR outlet_id = $2) \
             AND ($4 IS NULL OR outlet_id IN \
                 (SELECT o.id FROM outlets o WHERE o.merchant_id = $4)) \
             ORDER BY id LIMIT $3",
        )
        .bind(page.after.as_deref())
        .bind(filter.outlet_id.as_deref())
        .bind(crate::sql::fetch_limit(page.limit))
        .bind(filter.merchant_id.as_deref())
        .fetch_all(self.read())
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |t| &t.id))
    }

    async fn update_terminal(
        &self,
        id: &str,
        patch: crate::TerminalPatch,
    ) -> crate::StoreResult<crate::Terminal> {
        let mut tx = self.begin_write().await?;
        let mut terminal = query_as::<crate::Terminal>(
            ["SELECT * FROM terminals WHERE id = $1 ", self.row_lock()].concat(),
        )
        .bind(id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| crate::StoreError::not_found("terminal", id))?;
        if let Some(label) = patch.label {
            if label != terminal.label {
                let taken: Option<(String,)> =
                    query_as("SELECT id FROM terminals WHERE outlet_id = $1 AND label = $2")
                        .bind(&terminal.outlet_id)
                        .bind(&label)
                        .fetch_optional(&mut tx)
                        .await?;
                if let Some((other,)) = taken {
                    return Err(crate::StoreError::conflict(
                        "label_taken",
                        Some("label"),
                        format!("terminal {other} of this outlet already has label {label}"),
                    ));
                }
            }
            terminal.label = label;
        }
        if let Some(name) = patch.name {
            terminal.name = name;
        }
        if let Some(payment_ref) = patch.payment_ref {
            if let Some(payment_ref) = &payment_ref {
                payment_ref_free(&mut tx.exec(), payment_ref, Some(id)).await?;
            }
            terminal.payment_ref = payment_ref;
        }
        if let Some(static_qris) = patch.static_qris {
            terminal.static_qris = static_qris;
        }
        let terminal = query_as::<crate::Terminal>(
            "UPDATE terminals SET label = $1, name = $2, payment_ref = $3, \
             updated_at = $4, static_qris = $6 WHERE id = $5 RETURNING *",
        )
        .bind(terminal.label)
        .bind(terminal.name)
        .bind(terminal.payment_ref)
        .bind(crate::sql::now())
        .bind(id)
        .bind(terminal.static_qris)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(terminal)
    }

    // ---- devices -----------------------------------------------------------------

    async fn create_device(&self, new: crate::NewDevice) -> crate::StoreResult<crate::Device> {
        let mut tx = self.begin_write().await?;
        let taken: Option<(String,)> = query_as("SELECT id FROM devices WHERE serial = $1")
            .bind(&new.serial)
            .fetch_optional(&mut tx)
            .await?;
        if let Some((other,)) = taken {
            return Err(crate::StoreError::conflict(
                "serial_taken",
                Some("serial"),
                format!("device {other} already has serial {}", new.serial),
            ));
        }
        let now = crate::sql::now();
        let row = query_as::<crate::sql::DeviceRow>(
            [
                "INSERT INTO devices (id, serial, model, firmware_version, status, \
             credential_hash, credential_issued_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7) RETURNING ",
                crate::sql::DEVICE_COLUMNS,
            ]
            .concat(),
        )
        .bind(crate::sql::new_id("dev"))
        .bind(new.serial)
        .bind(new.model)
        .bind(new.firmware_version)
        .bind(crate::DeviceStatus::Active.as_str())
        .bind(new.secret_hash)
        .bind(now)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn get_device(&self, id: &str) -> crate::StoreResult<crate::Device> {
        query_as::<crate::sql::DeviceRow>(
            [
                "SELECT ",
                crate::sql::DEVICE_COLUMNS,
                " FROM devices WHERE id = $1",
            ]
            .concat(),
        )
        .bind(id)
        .fetch_optional(self.read())
        .await?
        .ok_or_else(|| crate::StoreError::not_found("device", id))?
        .try_into()
    }

    async fn list_devices(
        &self,
        filter: &crate::DeviceFilter,
        page: &crate::PageRequest,
    ) -> crate::StoreResult<crate::Page<crate::Device>> {
        let rows = query_as::<crate::sql::DeviceRow>(
            [
                "SELECT ",
                crate::sql::DEVICE_COLUMNS,
                " FROM devices \
             WHERE ($1 IS NULL OR id > $1) AND ($2 IS NULL OR terminal_id = $2) \
             AND ($3 IS NULL OR status = $3) \
             AND ($5 IS NULL OR terminal_id IN (SELECT t.id FROM terminals t \
                 JOIN outlets o ON o.id = t.outlet_id WHERE o.merchant_id = $5)) \
             ORDER BY id LIMIT $4",
            ]
            .concat(),
        )
        .bind(page.after.as_deref())
        .bind(filter.terminal_id.as_deref())
        .bind(filter.status.map(|s| s.as_str()))
        .bind(crate::sql::fetch_limit(page.limit))
        .bind(filter.merchant_id.as_deref())
        .fetch_all(self.read())
        .await?;
        let devices = rows
            .into_iter()
            .map(crate::Device::try_from)
            .collect::<crate::StoreResult<Vec<_>>>()?;
        Ok(crate::sql::paginate(devices, page.limit, |d| &d.id))
    }

    async fn update_device(
        &self,
        id: &str,
        patch: crate::DevicePatch,
    ) -> crate::StoreResult<crate::Device> {
        let mut tx = self.begin_write().await?;
        let mut device: crate::Device = query_as::<crate::sql::DeviceRow>(
            [
                "SELECT ",
                crate::sql::DEVICE_COLUMNS,
                " FROM devices WHERE id = $1 ",
                self.row_lock(),
            ]
            .concat(),
        )
        .bind(id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| crate::StoreError::not_found("device", id))?
        .try_into()?;
        if let Some(model) = patch.model {
            device.model = model;
        }
        if let Some(firmware_version) = patch.firmware_version {
            device.firmware_version = firmware_version;
        }
        if let Some(status) = patch.status {
            device.status = status;
        }
        let row = query_as::<crate::sql::DeviceRow>(
            [
                "UPDATE devices SET model = $1, firmware_version = $2, status = $3, \
             updated_at = $4 WHERE id = $5 RETURNING ",
                crate::sql::DEVICE_COLUMNS,
            ]
            .concat(),
        )
        .bind(device.model)
        .bind(device.firmware_version)
        .bind(device.status.as_str())
        .bind(crate::sql::now())
        .bind(id)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn bind_device(
        &self,
        device_id: &str,
        terminal_id: &str,
    ) -> crate::StoreResult<crate::Device> {
        let mut tx = self.begin_write().await?;
        let device: crate::Device = query_as::<crate::sql::DeviceRow>(
            [
                "SELECT ",
                crate::sql::DEVICE_COLUMNS,
                " FROM devices WHERE id = $1 ",
                self.row_lock(),
            ]
            .concat(),
        )
        .bind(device_id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| crate::StoreError::not_found("device", device_id))?
        .try_into()?;
        match device.terminal_id.as_deref() {
            Some(current) if current == terminal_id => return Ok(device),
            Some(current) => {
                return Err(crate::StoreError::conflict(
                    "device_already_bound",
                    Some("terminal_id"),
                    format!("device {device_id} is bound to terminal {current}; unbind it first"),
                ));
            }
            None => {}
        }
        if device.status != crate::DeviceStatus::Active {
            return Err(crate::StoreError::conflict(
                "device_disabled",
                None,
                format!("device {device_id} is disabled"),
            ));
        }
        let merchant: Option<(String, String)> = query_as(
            [
                "SELECT m.id, m.status FROM terminals t \
             JOIN outlets o ON o.id = t.outlet_id \
             JOIN merchants m ON m.id = o.merchant_id WHERE t.id = $1 ",
                self.row_lock(),
            ]
            .concat(),
        )
        .bind(terminal_id)
        .fetch_optional(&mut tx)
        .await?;
        let Some((merchant_id, status)) = merchant else {
            return Err(crate::StoreError::not_found("terminal", terminal_id));
        };
        if status != crate::MerchantStatus::Approved.as_str() {
            return Err(crate::StoreError::conflict(
                "merchant_not_approved",
                Some("terminal_id"),
                format!(
                    "terminal {terminal_id} belongs to merchant {merchant_id}, \
                     which is {status}; only an approved merchant's terminals take devices"
                ),
            ));
        }
        let occupant: Option<(String,)> = query_as("SELECT id FROM devices WHERE terminal_id = $1")
            .bind(terminal_id)
            .fetch_optional(&mut tx)
            .await?;
        if let Some((other,)) = occupant {
            return Err(crate::StoreError::conflict(
                "terminal_occupied",
                Some("terminal_id"),
                format!("terminal {terminal_id} already has device {other} bound"),
            ));
        }
        let now = crate::sql::now();
        let row = query_as::<crate::sql::DeviceRow>(
            [
                "UPDATE devices SET terminal_id = $1, updated_at = $2 WHERE id = $3 \
             RETURNING ",
                crate::sql::DEVICE_COLUMNS,
            ]
            .concat(),
        )
        .bind(terminal_id)
        .bind(now)
        .bind(device_id)
        .fetch_one(&mut tx)
        .await?;
        query(
            "INSERT INTO device_bindings (id, device_id, terminal_id, bound_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(crate::sql::new_id("bnd"))
        .bind(device_id)
        .bind(terminal_id)
        .bind(now)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn unbind_device(&self, device_id: &str) -> crate::StoreResult<crate::Device> {
        let mut tx = self.begin_write().await?;
        let current: Option<(Option<String>,)> = query_as(
            [
                "SELECT terminal_id FROM devices WHERE id = $1 ",
                self.row_lock(),
            ]
            .concat(),
        )
        .bind(device_id)
        .fetch_optional(&mut tx)
        .await?;
        match current {
            None => return Err(crate::StoreError::not_found("device", device_id)),
            Some((None,)) => {
                return Err(crate::StoreError::conflict(
                    "device_not_bound",
                    None,
                    format!("device {device_id} is not bound to a terminal"),
                ));
            }
            Some((Some(_),)) => {}
        }
        let now = crate::sql::now();
        let row = query_as::<crate::sql::DeviceRow>(
            [
                "UPDATE devices SET terminal_id = NULL, updated_at = $1 WHERE id = $2 \
             RETURNING ",
                crate::sql::DEVICE_COLUMNS,
            ]
            .concat(),
        )
        .bind(now)
        .bind(device_id)
        .fetch_one(&mut tx)
        .await?;
        query(
            "UPDATE device_bindings SET unbound_at = $1 \
             WHERE device_id = $2 AND unbound_at IS NULL",
        )
        .bind(now)
        .bind(device_id)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn device_bindings(
        &self,
        device_id: &str,
    ) -> crate::StoreResult<Vec<crate::DeviceBinding>> {
        let mut tx = self.begin_read().await?;
        let exists: Option<(String,)> = query_as("SELECT id FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(&mut tx)
            .await?;
        if exists.is_none() {
            return Err(crate::StoreError::not_found("device", device_id));
        }
        let bindings = query_as::<crate::DeviceBinding>(
            "SELECT * FROM device_bindings WHERE device_id = $1 ORDER BY id",
        )
        .bind(device_id)
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(bindings)
    }

    async fn set_device_secret_hash(
        &self,
        device_id: &str,
        hash: &str,
    ) -> crate::StoreResult<crate::Device> {
        query_as::<crate::sql::DeviceRow>(
            [
                "UPDATE devices SET credential_hash = $1, credential_issued_at = $2, \
             credential_revoked_at = NULL, updated_at = $2 WHERE id = $3 RETURNING ",
                crate::sql::DEVICE_COLUMNS,
            ]
            .concat(),
        )
        .bind(hash)
        .bind(crate::sql::now())
        .bind(device_id)
        .fetch_optional(&mut self.write_conn().await?)
        .await?
        .ok_or_else(|| crate::StoreError::not_found("device", device_id))?
        .try_into()
    }

    async fn revoke_device_secret(&self, device_id: &str) -> crate::StoreResult<crate::Device> {
        // Revoking twice is not an error: the credential is revoked either way, and
        // the first revocation time is kept.
        let now = crate::sql::now();
        query_as::<crate::sql::DeviceRow>(
            [
                "UPDATE devices SET credential_hash = NULL, \
             credential_revoked_at = COALESCE(credential_revoked_at, $1), \
             updated_at = $1 WHERE id = $2 RETURNING ",
                crate::sql::DEVICE_COLUMNS,
            ]
            .concat(),
        )
        .bind(now)
        .bind(device_id)
        .fetch_optional(&mut self.write_conn().await?)
        .await?
        .ok_or_else(|| crate::StoreError::not_found("device", device_id))?
        .try_into()
    }

    async fn device_secret_hash(&self, device_id: &str) -> crate::StoreResult<Option<String>> {
        let row: Option<(Option<String>,)> =
            query_as("SELECT credential_hash FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_optional(self.read())
                .await?;
        row.map(|(hash,)| hash)
            .ok_or_else(|| crate::StoreError::not_found("device", device_id))
    }
}
