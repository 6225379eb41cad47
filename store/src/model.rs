//! The registry as stored: merchants → outlets → terminals → devices, plus admin tokens.
//!
//! These are plain records. They never carry a secret or a secret's hash: a device's
//! credential hash is only reachable through [`crate::Store::device_secret_hash`], so no
//! code that serialises a `Device` can leak it.

use serde::Serialize;
use time::OffsetDateTime;

/// Where a merchant is in its review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MerchantStatus {
    Pending,
    Approved,
    Rejected,
    Suspended,
}

impl MerchantStatus {
    pub const ALL: [MerchantStatus; 4] = [
        MerchantStatus::Pending,
        MerchantStatus::Approved,
        MerchantStatus::Rejected,
        MerchantStatus::Suspended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MerchantStatus::Pending => "pending",
            MerchantStatus::Approved => "approved",
            MerchantStatus::Rejected => "rejected",
            MerchantStatus::Suspended => "suspended",
        }
    }
}

impl TryFrom<String> for MerchantStatus {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| format!("unknown merchant status {value:?}"))
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: MerchantStatus,
    /// Why the merchant was rejected or suspended.
    pub status_reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMerchant {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// Changes to a merchant; `None` leaves a field as it is. For the optional fields,
/// `Some(None)` clears the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerchantPatch {
    pub name: Option<String>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Outlet {
    pub id: String,
    pub merchant_id: String,
    pub name: String,
    pub address: Option<String>,
    pub city: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutlet {
    pub merchant_id: String,
    pub name: String,
    pub address: Option<String>,
    pub city: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutletPatch {
    pub name: Option<String>,
    pub address: Option<Option<String>>,
    pub city: Option<Option<String>>,
}

/// A payment point of an outlet. `label` is the terminal label a dynamic QRIS carries in
/// tag 62.07, unique within the outlet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Terminal {
    pub id: String,
    pub outlet_id: String,
    pub label: String,
    pub name: Option<String>,
    /// The reference this terminal's static QR carries (unique): a paid event for it
    /// creates a transaction for this terminal.
    pub payment_ref: Option<String>,
    /// The terminal's static QRIS payload, base of its dynamic QR codes.
    pub static_qris: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTerminal {
    pub outlet_id: String,
    pub label: String,
    pub name: Option<String>,
    pub payment_ref: Option<String>,
    pub static_qris: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminalPatch {
    pub label: Option<String>,
    pub name: Option<Option<String>>,
    pub payment_ref: Option<Option<String>>,
    pub static_qris: Option<Option<String>>,
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
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
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

/// An API token for the admin API. Only the hash of the token is stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AdminToken {
    pub id: String,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// Keyset pagination: items after `after` (an id), at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: u32,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 200;

    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }
}

/// One page of a list. `next_after` is the cursor for the next page, `None` on the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_after: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerchantFilter {
    pub status: Option<MerchantStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutletFilter {
    pub merchant_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminalFilter {
    pub outlet_id: Option<String>,
    /// Only terminals of this merchant's outlets.
    pub merchant_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    pub terminal_id: Option<String>,
    pub status: Option<DeviceStatus>,
    /// Only devices bound to a terminal of this merchant.
    pub merchant_id: Option<String>,
}

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Migrations compiled into this binary versus those applied to the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationStatus {
    pub applied: Vec<i64>,
    pub pending: Vec<i64>,
}
