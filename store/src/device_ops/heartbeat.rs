//! Heartbeats: a bounded history per device of what it reported, and their queries.

use crate::Db;
use crate::StoreResult;
use crate::db::{query, query_as};

/// One heartbeat as received (the gateway stamps `received_at_ms` with its own clock).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HeartbeatRecord {
    pub id: String,
    pub device_id: String,
    pub received_at_ms: i64,
    pub battery_pct: Option<i64>,
    pub charging: bool,
    pub signal_dbm: Option<i64>,
    /// `wifi`, `2g`, `3g`, `4g`, `ethernet`, `unknown`.
    pub network: String,
    pub firmware_version: String,
    pub audio_pack_version: String,
    pub uptime_s: i64,
    pub last_transaction_id: Option<String>,
    pub config_version: i64,
}

/// A heartbeat to store (the id is made by the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHeartbeat {
    pub device_id: String,
    pub received_at_ms: i64,
    pub battery_pct: Option<i64>,
    pub charging: bool,
    pub signal_dbm: Option<i64>,
    pub network: String,
    pub firmware_version: String,
    pub audio_pack_version: String,
    pub uptime_s: i64,
    pub last_transaction_id: Option<String>,
    pub config_version: i64,
}

pub(crate) async fn record_heartbeat(db: &Db, hb: NewHeartbeat, keep: u32) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    query(
        "INSERT INTO device_heartbeats (id, device_id, received_at_ms, battery_pct, \
         charging, signal_dbm, network, firmware_version, audio_pack_version, \
         uptime_s, last_transaction_id, config_version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(crate::sql::new_id("hb"))
    .bind(&hb.device_id)
    .bind(hb.received_at_ms)
    .bind(hb.battery_pct)
    .bind(hb.charging)
    .bind(hb.signal_dbm)
    .bind(&hb.network)
    .bind(&hb.firmware_version)
    .bind(&hb.audio_pack_version)
    .bind(hb.uptime_s)
    .bind(&hb.last_transaction_id)
    .bind(hb.config_version)
    .execute(&mut tx)
    .await
    .map_err(|err| crate::device_ops::device_missing(err, &hb.device_id))?;
    query(
        "DELETE FROM device_heartbeats WHERE device_id = $1 AND id NOT IN \
         (SELECT id FROM device_heartbeats WHERE device_id = $1 \
          ORDER BY id DESC LIMIT $2)",
    )
    .bind(&hb.device_id)
    .bind(i64::from(keep.max(1)))
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn heartbeats(
    db: &Db,
    device_id: &str,
    limit: u32,
) -> StoreResult<Vec<HeartbeatRecord>> {
    Ok(query_as::<HeartbeatRecord>(
        "SELECT * FROM device_heartbeats WHERE device_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(device_id)
    .bind(i64::from(limit.max(1)))
    .fetch_all(db.read())
    .await?)
}

pub(crate) async fn latest_heartbeats(
    db: &Db,
    device_ids: &[String],
) -> StoreResult<Vec<HeartbeatRecord>> {
    if device_ids.is_empty() {
        return Ok(Vec::new());
    }
    crate::device_ops::fetch_for_ids(
        db,
        device_ids,
        1,
        |list| {
            format!(
                "SELECT h.* FROM device_heartbeats h WHERE h.device_id IN ({list}) AND h.id = \
                 (SELECT MAX(l.id) FROM device_heartbeats l WHERE l.device_id = h.device_id)"
            )
        },
        |q| q,
    )
    .await
}
