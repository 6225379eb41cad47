//! Presence: the newest connect or disconnect the broker reported per device, and its
//! queries.

use crate::Db;
use crate::StoreResult;
use crate::db::{query, query_as};

/// The last presence change the broker reported for a device.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PresenceRecord {
    pub device_id: String,
    pub connected: bool,
    /// Why it disconnected (the broker's label); `None` while connected.
    pub reason: Option<String>,
    pub changed_at_ms: i64,
}

pub(crate) async fn record_presence(db: &Db, p: PresenceRecord) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    // Only a newer change replaces the stored one (events can arrive late).
    query(
        "INSERT INTO device_presence (device_id, connected, reason, changed_at_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (device_id) DO UPDATE SET \
         connected = excluded.connected, reason = excluded.reason, \
         changed_at_ms = excluded.changed_at_ms \
         WHERE device_presence.changed_at_ms <= excluded.changed_at_ms",
    )
    .bind(&p.device_id)
    .bind(p.connected)
    .bind(&p.reason)
    .bind(p.changed_at_ms)
    .execute(&mut tx)
    .await
    .map_err(|err| crate::device_ops::device_missing(err, &p.device_id))?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn presences(db: &Db, device_ids: &[String]) -> StoreResult<Vec<PresenceRecord>> {
    if device_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT * FROM device_presence WHERE device_id IN ({})",
        crate::device_ops::placeholders(1, device_ids.len())
    );
    let mut query = query_as::<PresenceRecord>(&sql);
    for id in device_ids {
        query = query.bind(id);
    }
    Ok(query.fetch_all(db.read()).await?)
}
