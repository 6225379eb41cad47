//! Devices: the soundboxes, their binding to a terminal (with its history) and their
//! credential, and their queries.
//!
//! The record never carries a secret or a secret's hash: a device's credential hash is
//! only reachable through [`crate::Store::device_secret_hash`], so no code that serialises
//! a `Device` can leak it.

use serde::Serialize;
use time::OffsetDateTime;

use crate::Db;
use crate::StoreError;
use crate::db::{query, query_as};
use crate::{MerchantStatus, Page, PageRequest, StoreResult};

/// Whether a device may be used at all (independent of its credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Active,
    Disabled,
}

impl DeviceStatus {
    pub const ALL: [DeviceStatus; 2] = [DeviceStatus::Active, DeviceStatus::Disabled];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Disabled => "disabled",
        }
    }
}

impl TryFrom<String> for DeviceStatus {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| format!("unknown device status {value:?}"))
    }
}

/// The state of a device's MQTT credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialStatus {
    /// A secret is issued and valid.
    Active,
    /// The last secret was revoked; the device cannot connect until a new one is issued.
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Also the device's MQTT username and client id.
    pub id: String,
    pub serial: String,
    pub model: String,
    pub firmware_version: Option<String>,
    pub status: DeviceStatus,
    /// The terminal the device is bound to, if any (at most one).
    pub terminal_id: Option<String>,
    pub credential: CredentialState,
    /// How the device last authenticated on the broker (`None`: it never connected).
    pub last_auth: Option<AuthMethod>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// How a device proved who it is at its last CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Its device id and secret.
    Password,
    /// A client certificate from the device CA.
    Certificate,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Certificate => "certificate",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [AuthMethod::Password, AuthMethod::Certificate]
            .into_iter()
            .find(|m| m.as_str() == value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CredentialState {
    pub status: CredentialStatus,
    /// When the current (or last) secret was issued.
    pub issued_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A device to register. The caller has already generated the secret and hashed it; the
/// store only ever sees the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub serial: String,
    pub model: String,
    pub firmware_version: Option<String>,
    pub secret_hash: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevicePatch {
    pub model: Option<String>,
    pub firmware_version: Option<Option<String>>,
    pub status: Option<DeviceStatus>,
}

/// One period during which a device was bound to a terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DeviceBinding {
    pub id: String,
    pub device_id: String,
    pub terminal_id: String,
    pub bound_at: OffsetDateTime,
    /// `None` while the binding is current.
    pub unbound_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    pub terminal_id: Option<String>,
    pub status: Option<DeviceStatus>,
    /// Only devices bound to a terminal of this merchant.
    pub merchant_id: Option<String>,
}

/// The `devices` columns a [`DeviceRow`] reads (not the credential hash).
pub(crate) const DEVICE_COLUMNS: &str = "id, serial, model, firmware_version, status, \
     terminal_id, credential_issued_at, credential_revoked_at, last_auth, created_at, updated_at";

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
    last_auth: Option<String>,
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
            last_auth: match row.last_auth.as_deref() {
                None => None,
                Some(value) => Some(AuthMethod::parse(value).ok_or_else(|| {
                    StoreError::Corrupt(format!("unknown device last_auth {value:?}"))
                })?),
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

pub(crate) async fn create_device(db: &Db, new: NewDevice) -> StoreResult<Device> {
    let mut tx = db.begin_write().await?;
    let taken: Option<(String,)> = query_as("SELECT id FROM devices WHERE serial = $1")
        .bind(&new.serial)
        .fetch_optional(&mut tx)
        .await?;
    if let Some((other,)) = taken {
        return Err(StoreError::conflict(
            "serial_taken",
            Some("serial"),
            format!("device {other} already has serial {}", new.serial),
        ));
    }
    let now = crate::sql::now();
    let row = query_as::<DeviceRow>(
        [
            "INSERT INTO devices (id, serial, model, firmware_version, status, \
         credential_hash, credential_issued_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7) RETURNING ",
            DEVICE_COLUMNS,
        ]
        .concat(),
    )
    .bind(crate::sql::new_id("dev"))
    .bind(new.serial)
    .bind(new.model)
    .bind(new.firmware_version)
    .bind(DeviceStatus::Active.as_str())
    .bind(new.secret_hash)
    .bind(now)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    row.try_into()
}

pub(crate) async fn get_device(db: &Db, id: &str) -> StoreResult<Device> {
    query_as::<DeviceRow>(["SELECT ", DEVICE_COLUMNS, " FROM devices WHERE id = $1"].concat())
        .bind(id)
        .fetch_optional(db.read())
        .await?
        .ok_or_else(|| StoreError::not_found("device", id))?
        .try_into()
}

pub(crate) async fn list_devices(
    db: &Db,
    filter: &DeviceFilter,
    page: &PageRequest,
) -> StoreResult<Page<Device>> {
    let rows = query_as::<DeviceRow>(
        [
            "SELECT ",
            DEVICE_COLUMNS,
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
    .fetch_all(db.read())
    .await?;
    let devices = rows
        .into_iter()
        .map(Device::try_from)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(crate::sql::paginate(devices, page.limit, |d| &d.id))
}

pub(crate) async fn update_device(db: &Db, id: &str, patch: DevicePatch) -> StoreResult<Device> {
    let mut tx = db.begin_write().await?;
    let mut device: Device = query_as::<DeviceRow>(
        [
            "SELECT ",
            DEVICE_COLUMNS,
            " FROM devices WHERE id = $1 ",
            db.row_lock(),
        ]
        .concat(),
    )
    .bind(id)
    .fetch_optional(&mut tx)
    .await?
    .ok_or_else(|| StoreError::not_found("device", id))?
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
    let row = query_as::<DeviceRow>(
        [
            "UPDATE devices SET model = $1, firmware_version = $2, status = $3, \
         updated_at = $4 WHERE id = $5 RETURNING ",
            DEVICE_COLUMNS,
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

pub(crate) async fn bind_device(
    db: &Db,
    device_id: &str,
    terminal_id: &str,
) -> StoreResult<Device> {
    let mut tx = db.begin_write().await?;
    let device: Device = query_as::<DeviceRow>(
        [
            "SELECT ",
            DEVICE_COLUMNS,
            " FROM devices WHERE id = $1 ",
            db.row_lock(),
        ]
        .concat(),
    )
    .bind(device_id)
    .fetch_optional(&mut tx)
    .await?
    .ok_or_else(|| StoreError::not_found("device", device_id))?
    .try_into()?;
    match device.terminal_id.as_deref() {
        Some(current) if current == terminal_id => return Ok(device),
        Some(current) => {
            return Err(StoreError::conflict(
                "device_already_bound",
                Some("terminal_id"),
                format!("device {device_id} is bound to terminal {current}; unbind it first"),
            ));
        }
        None => {}
    }
    if device.status != DeviceStatus::Active {
        return Err(StoreError::conflict(
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
            db.row_lock(),
        ]
        .concat(),
    )
    .bind(terminal_id)
    .fetch_optional(&mut tx)
    .await?;
    let Some((merchant_id, status)) = merchant else {
        return Err(StoreError::not_found("terminal", terminal_id));
    };
    if status != MerchantStatus::Approved.as_str() {
        return Err(StoreError::conflict(
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
        return Err(StoreError::conflict(
            "terminal_occupied",
            Some("terminal_id"),
            format!("terminal {terminal_id} already has device {other} bound"),
        ));
    }
    let now = crate::sql::now();
    let row = query_as::<DeviceRow>(
        [
            "UPDATE devices SET terminal_id = $1, updated_at = $2 WHERE id = $3 \
         RETURNING ",
            DEVICE_COLUMNS,
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

pub(crate) async fn unbind_device(db: &Db, device_id: &str) -> StoreResult<Device> {
    let mut tx = db.begin_write().await?;
    let current: Option<(Option<String>,)> = query_as(
        [
            "SELECT terminal_id FROM devices WHERE id = $1 ",
            db.row_lock(),
        ]
        .concat(),
    )
    .bind(device_id)
    .fetch_optional(&mut tx)
    .await?;
    match current {
        None => return Err(StoreError::not_found("device", device_id)),
        Some((None,)) => {
            return Err(StoreError::conflict(
                "device_not_bound",
                None,
                format!("device {device_id} is not bound to a terminal"),
            ));
        }
        Some((Some(_),)) => {}
    }
    let now = crate::sql::now();
    let row = query_as::<DeviceRow>(
        [
            "UPDATE devices SET terminal_id = NULL, updated_at = $1 WHERE id = $2 \
         RETURNING ",
            DEVICE_COLUMNS,
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

pub(crate) async fn device_bindings(db: &Db, device_id: &str) -> StoreResult<Vec<DeviceBinding>> {
    let mut tx = db.begin_read().await?;
    let exists: Option<(String,)> = query_as("SELECT id FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_optional(&mut tx)
        .await?;
    if exists.is_none() {
        return Err(StoreError::not_found("device", device_id));
    }
    let bindings =
        query_as::<DeviceBinding>("SELECT * FROM device_bindings WHERE device_id = $1 ORDER BY id")
            .bind(device_id)
            .fetch_all(&mut tx)
            .await?;
    tx.commit().await?;
    Ok(bindings)
}

pub(crate) async fn set_device_secret_hash(
    db: &Db,
    device_id: &str,
    hash: &str,
) -> StoreResult<Device> {
    let mut tx = db.begin_write().await?;
    let device = query_as::<DeviceRow>(
        [
            "UPDATE devices SET credential_hash = $1, credential_issued_at = $2, \
         credential_revoked_at = NULL, updated_at = $2 WHERE id = $3 RETURNING ",
            DEVICE_COLUMNS,
        ]
        .concat(),
    )
    .bind(hash)
    .bind(crate::sql::now())
    .bind(device_id)
    .fetch_optional(&mut tx)
    .await?
    .ok_or_else(|| StoreError::not_found("device", device_id))?
    .try_into()?;
    tx.commit().await?;
    Ok(device)
}

pub(crate) async fn revoke_device_secret(db: &Db, device_id: &str) -> StoreResult<Device> {
    // Revoking twice is not an error: the credential is revoked either way, and
    // the first revocation time is kept.
    let now = crate::sql::now();
    let mut tx = db.begin_write().await?;
    let device = query_as::<DeviceRow>(
        [
            "UPDATE devices SET credential_hash = NULL, \
         credential_revoked_at = COALESCE(credential_revoked_at, $1), \
         updated_at = $1 WHERE id = $2 RETURNING ",
            DEVICE_COLUMNS,
        ]
        .concat(),
    )
    .bind(now)
    .bind(device_id)
    .fetch_optional(&mut tx)
    .await?
    .ok_or_else(|| StoreError::not_found("device", device_id))?
    .try_into()?;
    // Revoking the device's credential revokes its certificates with it.
    crate::device_certificate::revoke_all(&mut tx, device_id, now).await?;
    tx.commit().await?;
    Ok(device)
}

pub(crate) async fn device_secret_hash(db: &Db, device_id: &str) -> StoreResult<Option<String>> {
    let row: Option<(Option<String>,)> =
        query_as("SELECT credential_hash FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(db.read())
            .await?;
    row.map(|(hash,)| hash)
        .ok_or_else(|| StoreError::not_found("device", device_id))
}
