//! Claims: the credentials of production batches with which factory-fresh devices provision
//! themselves (provisioning by claim), and the record of which serial each provisioned.
//!
//! A claim's use count and expiry hold under concurrency because a provisioning takes a use
//! with one conditional `UPDATE … WHERE uses < max_uses AND expires_at_ms > now AND status =
//! 'active'` inside the transaction that creates the device: on SQLite write transactions
//! are serial (`BEGIN IMMEDIATE`); on PostgreSQL the `UPDATE` takes the claim's row lock and
//! re-checks its condition against the committed row after waiting. A serial is provisioned
//! once: `claim_provisionings.serial` is the primary key and `devices.serial` is unique; a
//! second attempt is refused unless an operator allowed it ([`ClaimStore::allow_reprovision`]),
//! and then the same device gets a new secret hash. The claim's secret is stored only as a
//! hash and never carried by [`Claim`].

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::db::{Exec, query, query_as};
use crate::device::{DEVICE_COLUMNS, DeviceRow};
use crate::{Db, Device, DeviceStatus, Page, PageRequest, StoreError, StoreResult};

/// Whether a claim may still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    Active,
    Revoked,
}

impl ClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Active => "active",
            ClaimStatus::Revoked => "revoked",
        }
    }
}

/// Which serial numbers a claim may provision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimSerials {
    /// A glob over the serial: `*` any run of characters, `?` one character
    /// (`SB24A-*`).
    Pattern(String),
    /// Exactly these serials.
    List(Vec<String>),
}

/// A claim, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub id: String,
    pub name: String,
    pub serials: ClaimSerials,
    pub max_uses: i64,
    pub uses: i64,
    pub expires_at: OffsetDateTime,
    pub status: ClaimStatus,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A claim to create. The caller generated the secret and hashed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClaim {
    pub name: String,
    pub secret_hash: String,
    pub serials: ClaimSerials,
    pub max_uses: i64,
    pub expires_at_ms: i64,
}

/// A serial provisioned by claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimProvisioning {
    pub serial: String,
    /// The claim that provisioned it last.
    pub claim_id: String,
    pub device_id: String,
    pub provisioned_at: OffsetDateTime,
    /// How many times it was provisioned (more than once only when an operator allowed it).
    pub times: i64,
    /// An operator allowed it to be provisioned again, and it has not been yet.
    pub reprovision_allowed: bool,
}

/// One provisioning attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionByClaim {
    pub claim_id: String,
    pub serial: String,
    pub model: String,
    pub firmware_version: Option<String>,
    /// Hash of the fresh device secret.
    pub secret_hash: String,
    pub now_ms: i64,
}

/// A provisioning that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedDevice {
    /// Unbound (a technician binds it); with the new secret's hash.
    pub device: Device,
    /// The serial had been provisioned before and an operator allowed it again: the same
    /// device got a new secret.
    pub reprovisioned: bool,
    /// The claim's uses after this one.
    pub uses: i64,
}

/// Why a provisioning was refused; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClaimRefusal {
    UnknownClaim,
    Revoked,
    Expired,
    Exhausted,
    /// Provisioned before (or registered by hand), and not allowed again.
    SerialTaken,
}

#[async_trait]
pub trait ClaimStore: Send + Sync {
    async fn create_claim(&self, new: NewClaim) -> StoreResult<Claim>;
    async fn get_claim(&self, id: &str) -> StoreResult<Claim>;
    /// Claims by id (creation order), keyset-paged.
    async fn list_claims(&self, page: &PageRequest) -> StoreResult<Page<Claim>>;
    /// The stored hash of the claim's secret. `NotFound` for an unknown claim.
    async fn claim_secret_hash(&self, id: &str) -> StoreResult<String>;
    /// Revokes the claim (again: no change). No device it provisioned is touched.
    async fn revoke_claim(&self, id: &str) -> StoreResult<Claim>;
    /// The serials the claim provisioned last, by serial. `NotFound` for an unknown claim.
    async fn claim_provisionings(&self, claim_id: &str) -> StoreResult<Vec<ClaimProvisioning>>;
    /// Lets a serial provisioned by claim be provisioned once more (a device reset to
    /// factory). `NotFound` if it was never provisioned by claim.
    async fn allow_reprovision(&self, serial: &str) -> StoreResult<ClaimProvisioning>;
    /// Provisions `serial` with the claim, in one transaction: takes one of the claim's uses
    /// (if it is active, unexpired at `now_ms` and not exhausted), creates the device
    /// unbound (or, if allowed again, gives its device the new secret hash and revokes its
    /// certificates) and records the serial. A refusal writes nothing.
    async fn provision_by_claim(
        &self,
        attempt: ProvisionByClaim,
    ) -> StoreResult<Result<ProvisionedDevice, ClaimRefusal>>;
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    name: String,
    serial_pattern: Option<String>,
    serials_json: Option<String>,
    max_uses: i64,
    uses: i64,
    expires_at_ms: i64,
    status: String,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
}

const CLAIM_COLUMNS: &str = "id, name, serial_pattern, serials_json, max_uses, uses, \
     expires_at_ms, status, created_at_ms, revoked_at_ms";

fn instant(ms: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Corrupt(format!("instant {ms}: {e}")))
}

fn now_ms() -> i64 {
    i64::try_from(crate::sql::now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl TryFrom<ClaimRow> for Claim {
    type Error = StoreError;
    fn try_from(row: ClaimRow) -> Result<Self, Self::Error> {
        let serials = match (row.serial_pattern, row.serials_json) {
            (Some(pattern), None) => ClaimSerials::Pattern(pattern),
            (None, Some(json)) => ClaimSerials::List(
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("claim serials: {e}")))?,
            ),
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "claim {} has no serial pattern or list",
                    row.id
                )));
            }
        };
        let status = match row.status.as_str() {
            "active" => ClaimStatus::Active,
            "revoked" => ClaimStatus::Revoked,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown claim status {other:?}"
                )));
            }
        };
        Ok(Claim {
            id: row.id,
            name: row.name,
            serials,
            max_uses: row.max_uses,
            uses: row.uses,
            expires_at: instant(row.expires_at_ms)?,
            status,
            created_at: instant(row.created_at_ms)?,
            revoked_at: row.revoked_at_ms.map(instant).transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ProvisioningRow {
    serial: String,
    claim_id: String,
    device_id: String,
    provisioned_at_ms: i64,
    times: i64,
    reprovision_allowed_at_ms: Option<i64>,
}

const PROVISIONING_COLUMNS: &str =
    "serial, claim_id, device_id, provisioned_at_ms, times, reprovision_allowed_at_ms";

impl TryFrom<ProvisioningRow> for ClaimProvisioning {
    type Error = StoreError;
    fn try_from(row: ProvisioningRow) -> Result<Self, Self::Error> {
        Ok(ClaimProvisioning {
            serial: row.serial,
            claim_id: row.claim_id,
            device_id: row.device_id,
            provisioned_at: instant(row.provisioned_at_ms)?,
            times: row.times,
            reprovision_allowed: row.reprovision_allowed_at_ms.is_some(),
        })
    }
}

async fn claim_row<'c>(on: impl Into<Exec<'c>>, id: &str) -> StoreResult<ClaimRow> {
    query_as::<ClaimRow>(["SELECT ", CLAIM_COLUMNS, " FROM claims WHERE id = $1"].concat())
        .bind(id)
        .fetch_optional(on)
        .await?
        .ok_or_else(|| StoreError::not_found("claim", id))
}

/// Why the conditional `UPDATE` took no use, from the claim's committed row.
fn refusal_of(row: Option<ClaimRow>, now_ms: i64) -> ClaimRefusal {
    match row {
        None => ClaimRefusal::UnknownClaim,
        Some(row) if row.status != "active" => ClaimRefusal::Revoked,
        Some(row) if row.expires_at_ms <= now_ms => ClaimRefusal::Expired,
        Some(_) => ClaimRefusal::Exhausted,
    }
}

#[async_trait]
impl ClaimStore for Db {
    async fn create_claim(&self, new: NewClaim) -> StoreResult<Claim> {
        let (pattern, list) = match &new.serials {
            ClaimSerials::Pattern(p) => (Some(p.clone()), None),
            ClaimSerials::List(l) => (
                None,
                Some(serde_json::to_string(l).map_err(|e| StoreError::Corrupt(e.to_string()))?),
            ),
        };
        let mut tx = self.begin_write().await?;
        let row = query_as::<ClaimRow>(
            [
                "INSERT INTO claims (id, name, secret_hash, serial_pattern, serials_json, \
                 max_uses, uses, expires_at_ms, status, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 'active', $8) RETURNING ",
                CLAIM_COLUMNS,
            ]
            .concat(),
        )
        .bind(crate::sql::new_id("clm"))
        .bind(new.name)
        .bind(new.secret_hash)
        .bind(pattern)
        .bind(list)
        .bind(new.max_uses)
        .bind(new.expires_at_ms)
        .bind(now_ms())
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn get_claim(&self, id: &str) -> StoreResult<Claim> {
        claim_row(self.read(), id).await?.try_into()
    }

    async fn list_claims(&self, page: &PageRequest) -> StoreResult<Page<Claim>> {
        let rows = query_as::<ClaimRow>(
            [
                "SELECT ",
                CLAIM_COLUMNS,
                " FROM claims WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
            ]
            .concat(),
        )
        .bind(page.after.as_deref())
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        let claims = rows
            .into_iter()
            .map(Claim::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(crate::sql::paginate(claims, page.limit, |c| &c.id))
    }

    async fn claim_secret_hash(&self, id: &str) -> StoreResult<String> {
        let found: Option<(String,)> = query_as("SELECT secret_hash FROM claims WHERE id = $1")
            .bind(id)
            .fetch_optional(self.read())
            .await?;
        found
            .map(|(hash,)| hash)
            .ok_or_else(|| StoreError::not_found("claim", id))
    }

    async fn revoke_claim(&self, id: &str) -> StoreResult<Claim> {
        let mut tx = self.begin_write().await?;
        query(
            "UPDATE claims SET status = 'revoked', revoked_at_ms = $1 \
             WHERE id = $2 AND status = 'active'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut tx)
        .await?;
        let row = claim_row(&mut tx, id).await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn claim_provisionings(&self, claim_id: &str) -> StoreResult<Vec<ClaimProvisioning>> {
        let mut tx = self.begin_read().await?;
        claim_row(&mut tx, claim_id).await?;
        let rows = query_as::<ProvisioningRow>(
            [
                "SELECT ",
                PROVISIONING_COLUMNS,
                " FROM claim_provisionings WHERE claim_id = $1 ORDER BY serial",
            ]
            .concat(),
        )
        .bind(claim_id)
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        rows.into_iter().map(ClaimProvisioning::try_from).collect()
    }

    async fn allow_reprovision(&self, serial: &str) -> StoreResult<ClaimProvisioning> {
        let mut tx = self.begin_write().await?;
        let row = query_as::<ProvisioningRow>(
            [
                "UPDATE claim_provisionings SET reprovision_allowed_at_ms = $1 \
                 WHERE serial = $2 RETURNING ",
                PROVISIONING_COLUMNS,
            ]
            .concat(),
        )
        .bind(now_ms())
        .bind(serial)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| StoreError::not_found("claim provisioning", serial))?;
        tx.commit().await?;
        row.try_into()
    }

    async fn provision_by_claim(
        &self,
        attempt: ProvisionByClaim,
    ) -> StoreResult<Result<ProvisionedDevice, ClaimRefusal>> {
        let mut tx = self.begin_write().await?;
        // The use first: on PostgreSQL this takes the claim's row lock, so attempts under
        // one claim queue here and each reads the serials the earlier ones committed.
        let took: Option<(i64,)> = query_as(
            "UPDATE claims SET uses = uses + 1 WHERE id = $1 AND status = 'active' \
             AND uses < max_uses AND expires_at_ms > $2 RETURNING uses",
        )
        .bind(&attempt.claim_id)
        .bind(attempt.now_ms)
        .fetch_optional(&mut tx)
        .await?;
        let Some((uses,)) = took else {
            let row = match claim_row(&mut tx, &attempt.claim_id).await {
                Ok(row) => Some(row),
                Err(StoreError::NotFound { .. }) => None,
                Err(other) => return Err(other),
            };
            return Ok(Err(refusal_of(row, attempt.now_ms)));
        };
        let earlier = query_as::<ProvisioningRow>(
            [
                "SELECT ",
                PROVISIONING_COLUMNS,
                " FROM claim_provisionings WHERE serial = $1",
            ]
            .concat(),
        )
        .bind(&attempt.serial)
        .fetch_optional(&mut tx)
        .await?;
        let now = crate::sql::now();
        let (row, reprovisioned) = match earlier {
            Some(earlier) if earlier.reprovision_allowed_at_ms.is_none() => {
                return Ok(Err(ClaimRefusal::SerialTaken));
            }
            Some(earlier) => {
                let row = query_as::<DeviceRow>(
                    [
                        "UPDATE devices SET credential_hash = $1, credential_issued_at = $2, \
                         credential_revoked_at = NULL, updated_at = $2 WHERE id = $3 RETURNING ",
                        DEVICE_COLUMNS,
                    ]
                    .concat(),
                )
                .bind(&attempt.secret_hash)
                .bind(now)
                .bind(&earlier.device_id)
                .fetch_one(&mut tx)
                .await?;
                crate::device_certificate::revoke_all(&mut tx, &earlier.device_id, now).await?;
                query(
                    "UPDATE claim_provisionings SET claim_id = $1, provisioned_at_ms = $2, \
                     times = times + 1, reprovision_allowed_at_ms = NULL WHERE serial = $3",
                )
                .bind(&attempt.claim_id)
                .bind(attempt.now_ms)
                .bind(&attempt.serial)
                .execute(&mut tx)
                .await?;
                (row, true)
            }
            None => {
                let taken: Option<(String,)> = query_as("SELECT id FROM devices WHERE serial = $1")
                    .bind(&attempt.serial)
                    .fetch_optional(&mut tx)
                    .await?;
                if taken.is_some() {
                    return Ok(Err(ClaimRefusal::SerialTaken));
                }
                let device_id = crate::sql::new_id("dev");
                let inserted = query_as::<DeviceRow>(
                    [
                        "INSERT INTO devices (id, serial, model, firmware_version, status, \
                         credential_hash, credential_issued_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7) RETURNING ",
                        DEVICE_COLUMNS,
                    ]
                    .concat(),
                )
                .bind(&device_id)
                .bind(&attempt.serial)
                .bind(&attempt.model)
                .bind(attempt.firmware_version.clone())
                .bind(DeviceStatus::Active.as_str())
                .bind(&attempt.secret_hash)
                .bind(now)
                .fetch_one(&mut tx)
                .await;
                let row = match inserted {
                    Ok(row) => row,
                    // The same serial committed by a provisioning under another claim, or
                    // registered by hand, meanwhile.
                    Err(e)
                        if e.as_database_error()
                            .is_some_and(|d| d.is_unique_violation()) =>
                    {
                        return Ok(Err(ClaimRefusal::SerialTaken));
                    }
                    Err(e) => return Err(e.into()),
                };
                let recorded = query(
                    "INSERT INTO claim_provisionings (serial, claim_id, device_id, \
                     provisioned_at_ms, times) VALUES ($1, $2, $3, $4, 1)",
                )
                .bind(&attempt.serial)
                .bind(&attempt.claim_id)
                .bind(&device_id)
                .bind(attempt.now_ms)
                .execute(&mut tx)
                .await;
                match recorded {
                    Ok(_) => {}
                    Err(e)
                        if e.as_database_error()
                            .is_some_and(|d| d.is_unique_violation()) =>
                    {
                        return Ok(Err(ClaimRefusal::SerialTaken));
                    }
                    Err(e) => return Err(e.into()),
                }
                (row, false)
            }
        };
        tx.commit().await?;
        Ok(Ok(ProvisionedDevice {
            device: row.try_into()?,
            reprovisioned,
            uses,
        }))
    }
}
