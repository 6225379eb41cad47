//! Device configuration: the desired config (versioned, guarding concurrent writers), its
//! push state, and what the device reported; and their queries.

use crate::Db;
use crate::db::{query, query_as};
use crate::{StoreError, StoreResult};

string_enum!(
    /// Where the push of the desired config stands.
    ConfigPushStatus {
        /// No desired config set yet (the row only holds a report).
        None = "none",
        /// Due: not yet delivered to the device (new version, retry, or device offline).
        Pending = "pending",
        /// Published and acknowledged by MQTT; waiting for the device's report.
        Sent = "sent",
        /// The device reported this version applied.
        Applied = "applied",
        /// The device refused this version.
        Rejected = "rejected",
        /// Could not be delivered (kept for the operator's retry).
        Failed = "failed",
    }
);

/// A device's desired config, its push state and its reported config. `desired` and
/// `reported` are JSON written and read by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConfigRecord {
    pub device_id: String,
    /// 0 while none was set.
    pub desired_version: i64,
    pub desired: Option<String>,
    pub desired_at_ms: Option<i64>,
    #[sqlx(try_from = "String")]
    pub push_status: ConfigPushStatus,
    pub push_attempts: i64,
    pub push_error: Option<String>,
    pub pushed_at_ms: Option<i64>,
    pub reported_version: Option<i64>,
    pub reported: Option<String>,
    pub reported_cause: Option<String>,
    pub reported_at_ms: Option<i64>,
}

/// What the device reported (`reported_config` uplink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedConfigUpdate {
    pub applied_version: i64,
    /// `applied`, `rejected`, `local_change`, `boot`.
    pub cause: String,
    pub config: String,
    pub at_ms: i64,
}

pub(crate) async fn device_config(db: &Db, device_id: &str) -> StoreResult<Option<ConfigRecord>> {
    let exists: Option<(String,)> = query_as("SELECT id FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_optional(db.read())
        .await?;
    if exists.is_none() {
        return Err(StoreError::not_found("device", device_id));
    }
    Ok(
        query_as::<ConfigRecord>("SELECT * FROM device_configs WHERE device_id = $1")
            .bind(device_id)
            .fetch_optional(db.read())
            .await?,
    )
}

pub(crate) async fn device_configs(
    db: &Db,
    device_ids: &[String],
) -> StoreResult<Vec<ConfigRecord>> {
    if device_ids.is_empty() {
        return Ok(Vec::new());
    }
    crate::device_ops::fetch_for_ids(
        db,
        device_ids,
        1,
        |list| format!("SELECT * FROM device_configs WHERE device_id IN ({list})"),
        |q| q,
    )
    .await
}

pub(crate) async fn set_desired_config(
    db: &Db,
    device_id: &str,
    expected_version: i64,
    desired: &str,
    now_ms: i64,
) -> StoreResult<ConfigRecord> {
    let mut tx = db.begin_write().await?;
    let exists: Option<(String,)> =
        query_as(["SELECT id FROM devices WHERE id = $1 ", db.row_lock()].concat())
            .bind(device_id)
            .fetch_optional(&mut tx)
            .await?;
    if exists.is_none() {
        return Err(StoreError::not_found("device", device_id));
    }
    let current: Option<(i64,)> = query_as(
        [
            "SELECT desired_version FROM device_configs WHERE device_id = $1 ",
            db.row_lock(),
        ]
        .concat(),
    )
    .bind(device_id)
    .fetch_optional(&mut tx)
    .await?;
    let version = current.map_or(0, |(v,)| v);
    if version != expected_version {
        return Err(StoreError::conflict(
            "stale_version",
            Some("version"),
            format!(
                "the desired config is at version {version}, not {expected_version}; \
                 read it again and re-apply your change"
            ),
        ));
    }
    let record = query_as::<ConfigRecord>(
        "INSERT INTO device_configs (device_id, desired_version, desired, desired_at_ms, \
         push_status, push_attempts) VALUES ($1, $2, $3, $4, 'pending', 0) \
         ON CONFLICT (device_id) DO UPDATE SET desired_version = excluded.desired_version, \
         desired = excluded.desired, desired_at_ms = excluded.desired_at_ms, \
         push_status = 'pending', push_attempts = 0, push_error = NULL \
         RETURNING *",
    )
    .bind(device_id)
    .bind(version + 1)
    .bind(desired)
    .bind(now_ms)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(record)
}

pub(crate) async fn record_config_push(
    db: &Db,
    device_id: &str,
    version: i64,
    status: ConfigPushStatus,
    error: Option<&str>,
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    // Only a push still in flight for this version changes: a report that
    // arrived first (applied) is not overwritten by the PUBACK's `sent`.
    query(
        "UPDATE device_configs SET push_status = $1, push_error = $2, \
         push_attempts = push_attempts + 1, pushed_at_ms = $3 \
         WHERE device_id = $4 AND desired_version = $5 \
         AND push_status IN ('pending', 'sent', 'failed')",
    )
    .bind(status.as_str())
    .bind(error)
    .bind(now_ms)
    .bind(device_id)
    .bind(version)
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn requeue_config_push(db: &Db, device_id: &str) -> StoreResult<ConfigRecord> {
    let mut tx = db.begin_write().await?;
    let record = query_as::<ConfigRecord>(
        "UPDATE device_configs SET push_status = 'pending', push_error = NULL \
         WHERE device_id = $1 AND desired_version > 0 RETURNING *",
    )
    .bind(device_id)
    .fetch_optional(&mut tx)
    .await?;
    tx.commit().await?;
    record.ok_or_else(|| StoreError::not_found("desired config of device", device_id))
}

pub(crate) async fn record_reported_config(
    db: &Db,
    device_id: &str,
    report: ReportedConfigUpdate,
) -> StoreResult<ConfigRecord> {
    let mut tx = db.begin_write().await?;
    query(
        "INSERT INTO device_configs (device_id, push_status, reported_version, reported, \
         reported_cause, reported_at_ms) VALUES ($1, 'none', $2, $3, $4, $5) \
         ON CONFLICT (device_id) DO UPDATE SET reported_version = excluded.reported_version, \
         reported = excluded.reported, reported_cause = excluded.reported_cause, \
         reported_at_ms = excluded.reported_at_ms",
    )
    .bind(device_id)
    .bind(report.applied_version)
    .bind(&report.config)
    .bind(&report.cause)
    .bind(report.at_ms)
    .execute(&mut tx)
    .await
    .map_err(|err| crate::device_ops::device_missing(err, device_id))?;
    let settled = match report.cause.as_str() {
        "applied" => Some("applied"),
        "rejected" => Some("rejected"),
        _ => None,
    };
    if let Some(settled) = settled {
        query(
            "UPDATE device_configs SET push_status = $1 WHERE device_id = $2 \
             AND desired_version = $3 AND desired_version > 0",
        )
        .bind(settled)
        .bind(device_id)
        .bind(report.applied_version)
        .execute(&mut tx)
        .await?;
    }
    let record = query_as::<ConfigRecord>("SELECT * FROM device_configs WHERE device_id = $1")
        .bind(device_id)
        .fetch_one(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(record)
}

pub(crate) async fn pending_config_pushes(
    db: &Db,
    after: Option<(i64, &str)>,
    limit: u32,
) -> StoreResult<Vec<ConfigRecord>> {
    let (after_ms, after_device) = after.unwrap_or((i64::MIN, ""));
    Ok(query_as::<ConfigRecord>(
        "SELECT * FROM device_configs WHERE push_status = 'pending' \
         AND (COALESCE(desired_at_ms, 0), device_id) > ($1, $2) \
         ORDER BY COALESCE(desired_at_ms, 0), device_id LIMIT $3",
    )
    .bind(after_ms)
    .bind(after_device)
    .bind(i64::from(limit.max(1)))
    .fetch_all(db.read())
    .await?)
}
