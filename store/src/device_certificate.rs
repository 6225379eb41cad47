//! Device certificates: the client certificates the device CA issued, their status
//! (active, revoked, superseded), and the revocation list other nodes poll.
//!
//! A certificate is never deleted: revoking or superseding it sets its status and
//! `changed_at_ms`, which is what [`DeviceCertificateStore::revoked_device_certificates`]
//! pages by.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::db::{Exec, query, query_as};
use crate::{AuthMethod, Db, StoreError, StoreResult};

/// Where a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateStatus {
    /// The device may connect with it.
    Active,
    /// Revoked by an operator, or with its device's credential.
    Revoked,
    /// The device connected with a certificate issued after this one.
    Superseded,
}

impl CertificateStatus {
    pub const ALL: [CertificateStatus; 3] = [
        CertificateStatus::Active,
        CertificateStatus::Revoked,
        CertificateStatus::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Active => "active",
            CertificateStatus::Revoked => "revoked",
            CertificateStatus::Superseded => "superseded",
        }
    }
}

/// A certificate the device CA issued (its PEM is not kept: the device has it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceCertificate {
    /// Lowercase hex.
    pub serial: String,
    pub device_id: String,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    /// `ecdsa_p256` | `ed25519`.
    pub key_type: String,
    pub status: CertificateStatus,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub issued_at: OffsetDateTime,
    /// `api` | `mqtt`.
    pub issued_via: String,
    /// When it was revoked or superseded.
    pub revoked_at: Option<OffsetDateTime>,
}

/// A certificate just signed, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeviceCertificate {
    pub serial: String,
    pub device_id: String,
    pub fingerprint: String,
    pub key_type: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub issued_via: String,
}

/// A fingerprint on the revocation list and when it got there.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RevokedCertificate {
    pub fingerprint: String,
    pub changed_at_ms: i64,
}

#[async_trait]
pub trait DeviceCertificateStore: Send + Sync {
    /// Records an issued certificate (an audited write). `NotFound` for an unknown device.
    async fn insert_device_certificate(
        &self,
        new: NewDeviceCertificate,
    ) -> StoreResult<DeviceCertificate>;
    /// The device's certificates, oldest first. `NotFound` for an unknown device.
    async fn device_certificates(&self, device_id: &str) -> StoreResult<Vec<DeviceCertificate>>;
    async fn device_certificate_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> StoreResult<Option<DeviceCertificate>>;
    /// Revokes one certificate of the device (again: no change, the first time is kept).
    /// `NotFound` if the device has no certificate with that serial.
    async fn revoke_device_certificate(
        &self,
        device_id: &str,
        serial: &str,
    ) -> StoreResult<DeviceCertificate>;
    /// The device connected with certificate `in_use`: its active certificates issued
    /// before that one become superseded, and its last authentication is `certificate`.
    /// Returns the certificates superseded now.
    async fn use_device_certificate(
        &self,
        device_id: &str,
        in_use: &str,
    ) -> StoreResult<Vec<DeviceCertificate>>;
    /// Fingerprints of certificates revoked or superseded at or after `since_ms`, oldest
    /// change first.
    async fn revoked_device_certificates(
        &self,
        since_ms: i64,
    ) -> StoreResult<Vec<RevokedCertificate>>;
    /// Records how the device last authenticated, writing only when it changed.
    async fn set_device_last_auth(&self, device_id: &str, method: AuthMethod) -> StoreResult<()>;
}

#[derive(sqlx::FromRow)]
struct CertificateRow {
    serial: String,
    device_id: String,
    fingerprint: String,
    key_type: String,
    status: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    issued_at: OffsetDateTime,
    issued_via: String,
    revoked_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "serial, device_id, fingerprint, key_type, status, not_before, not_after, \
     issued_at, issued_via, revoked_at";

impl TryFrom<CertificateRow> for DeviceCertificate {
    type Error = StoreError;
    fn try_from(row: CertificateRow) -> Result<Self, Self::Error> {
        let status = CertificateStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == row.status)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("unknown certificate status {:?}", row.status))
            })?;
        Ok(DeviceCertificate {
            serial: row.serial,
            device_id: row.device_id,
            fingerprint: row.fingerprint,
            key_type: row.key_type,
            status,
            not_before: row.not_before,
            not_after: row.not_after,
            issued_at: row.issued_at,
            issued_via: row.issued_via,
            revoked_at: row.revoked_at,
        })
    }
}

fn rows(rows: Vec<CertificateRow>) -> StoreResult<Vec<DeviceCertificate>> {
    rows.into_iter().map(DeviceCertificate::try_from).collect()
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

async fn device_exists<'c>(on: impl Into<Exec<'c>>, device_id: &str) -> StoreResult<()> {
    let found: Option<(String,)> = query_as("SELECT id FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_optional(on)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::not_found("device", device_id)),
    }
}

/// Revokes every active certificate of the device, inside the caller's transaction (the
/// device's credential is being revoked).
pub(crate) async fn revoke_all<'c>(
    on: impl Into<Exec<'c>>,
    device_id: &str,
    now: OffsetDateTime,
) -> StoreResult<()> {
    query(
        "UPDATE device_certificates SET status = 'revoked', revoked_at = $1, \
         changed_at_ms = $2 WHERE device_id = $3 AND status = 'active'",
    )
    .bind(now)
    .bind(unix_ms(now))
    .bind(device_id)
    .execute(on)
    .await?;
    Ok(())
}

#[async_trait]
impl DeviceCertificateStore for Db {
    async fn insert_device_certificate(
        &self,
        new: NewDeviceCertificate,
    ) -> StoreResult<DeviceCertificate> {
        let now = crate::sql::now();
        let mut tx = self.begin_write().await?;
        device_exists(&mut tx, &new.device_id).await?;
        let row = query_as::<CertificateRow>(
            [
                "INSERT INTO device_certificates (serial, device_id, fingerprint, key_type, \
                 status, not_before, not_after, issued_at, issued_at_ms, issued_via) \
                 VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9) RETURNING ",
                COLUMNS,
            ]
            .concat(),
        )
        .bind(new.serial)
        .bind(new.device_id)
        .bind(new.fingerprint)
        .bind(new.key_type)
        .bind(new.not_before)
        .bind(new.not_after)
        .bind(now)
        .bind(unix_ms(now))
        .bind(new.issued_via)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn device_certificates(&self, device_id: &str) -> StoreResult<Vec<DeviceCertificate>> {
        let mut tx = self.begin_read().await?;
        device_exists(&mut tx, device_id).await?;
        let found = query_as::<CertificateRow>(
            [
                "SELECT ",
                COLUMNS,
                " FROM device_certificates WHERE device_id = $1 \
                 ORDER BY issued_at_ms, serial",
            ]
            .concat(),
        )
        .bind(device_id)
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        rows(found)
    }

    async fn device_certificate_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> StoreResult<Option<DeviceCertificate>> {
        query_as::<CertificateRow>(
            [
                "SELECT ",
                COLUMNS,
                " FROM device_certificates WHERE fingerprint = $1",
            ]
            .concat(),
        )
        .bind(fingerprint)
        .fetch_optional(self.read())
        .await?
        .map(DeviceCertificate::try_from)
        .transpose()
    }

    async fn revoke_device_certificate(
        &self,
        device_id: &str,
        serial: &str,
    ) -> StoreResult<DeviceCertificate> {
        let now = crate::sql::now();
        let mut tx = self.begin_write().await?;
        let row = query_as::<CertificateRow>(
            [
                "UPDATE device_certificates SET status = 'revoked', \
                 revoked_at = COALESCE(revoked_at, $1), \
                 changed_at_ms = COALESCE(changed_at_ms, $2) \
                 WHERE device_id = $3 AND serial = $4 RETURNING ",
                COLUMNS,
            ]
            .concat(),
        )
        .bind(now)
        .bind(unix_ms(now))
        .bind(device_id)
        .bind(serial)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| StoreError::not_found("certificate", serial))?;
        tx.commit().await?;
        row.try_into()
    }

    async fn use_device_certificate(
        &self,
        device_id: &str,
        in_use: &str,
    ) -> StoreResult<Vec<DeviceCertificate>> {
        let now = crate::sql::now();
        let mut tx = self.begin_write().await?;
        let superseded = query_as::<CertificateRow>(
            [
                "UPDATE device_certificates SET status = 'superseded', revoked_at = $1, \
                 changed_at_ms = $2 \
                 WHERE device_id = $3 AND status = 'active' AND serial <> $4 \
                 AND (issued_at_ms, serial) < \
                     (SELECT issued_at_ms, serial FROM device_certificates WHERE serial = $4) \
                 RETURNING ",
                COLUMNS,
            ]
            .concat(),
        )
        .bind(now)
        .bind(unix_ms(now))
        .bind(device_id)
        .bind(in_use)
        .fetch_all(&mut tx)
        .await?;
        query(
            "UPDATE devices SET last_auth = $1 WHERE id = $2 \
             AND (last_auth IS NULL OR last_auth <> $1)",
        )
        .bind(AuthMethod::Certificate.as_str())
        .bind(device_id)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        rows(superseded)
    }

    async fn revoked_device_certificates(
        &self,
        since_ms: i64,
    ) -> StoreResult<Vec<RevokedCertificate>> {
        Ok(query_as::<RevokedCertificate>(
            "SELECT fingerprint, changed_at_ms FROM device_certificates \
             WHERE changed_at_ms IS NOT NULL AND changed_at_ms >= $1 \
             ORDER BY changed_at_ms",
        )
        .bind(since_ms)
        .fetch_all(self.read())
        .await?)
    }

    async fn set_device_last_auth(&self, device_id: &str, method: AuthMethod) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        query(
            "UPDATE devices SET last_auth = $1 WHERE id = $2 \
             AND (last_auth IS NULL OR last_auth <> $1)",
        )
        .bind(method.as_str())
        .bind(device_id)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
