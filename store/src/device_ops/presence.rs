//! Presence: the newest connect or disconnect the broker reported per device, and its
//! queries. It is written in batches (a connect storm is thousands of changes a second):
//! one transaction of multi-row upserts, `INSERT … SELECT … FROM (VALUES …)`, the same text
//! on both backends. A batch is a list of [`PresenceRecord`]s so a record can grow fields
//! (a node, a connection epoch) without changing the shape of the call.

use crate::Db;
use crate::StoreResult;
use crate::db::query;

/// The last presence change the broker reported for a device.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PresenceRecord {
    pub device_id: String,
    pub connected: bool,
    /// Why it disconnected (the broker's label); `None` while connected.
    pub reason: Option<String>,
    pub changed_at_ms: i64,
}

/// Rows per statement: 4 parameters each.
const PRESENCE_ROWS_PER_STATEMENT: usize = crate::device_ops::MAX_LIST_PARAMS / 4;

pub(crate) async fn record_presences(db: &Db, batch: &[PresenceRecord]) -> StoreResult<()> {
    let newest = newest_per_device(batch);
    if newest.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin_write().await?;
    for chunk in newest.chunks(PRESENCE_ROWS_PER_STATEMENT) {
        let rows = (0..chunk.len())
            .map(|i| format!("({})", crate::device_ops::placeholders(i * 4 + 1, 4)))
            .collect::<Vec<_>>()
            .join(", ");
        // `VALUES` names its columns column1… on both backends. Devices that no longer
        // exist are left out rather than failing everyone else's row; only a newer change
        // replaces the stored one (events can arrive late).
        let sql = format!(
            "INSERT INTO device_presence (device_id, connected, reason, changed_at_ms) \
             SELECT v.column1, v.column2, v.column3, v.column4 FROM (VALUES {rows}) AS v \
             WHERE EXISTS (SELECT 1 FROM devices WHERE devices.id = v.column1) \
             ON CONFLICT (device_id) DO UPDATE SET \
             connected = excluded.connected, reason = excluded.reason, \
             changed_at_ms = excluded.changed_at_ms \
             WHERE device_presence.changed_at_ms <= excluded.changed_at_ms"
        );
        let mut statement = query(sql);
        for p in chunk {
            statement = statement
                .bind(&p.device_id)
                .bind(p.connected)
                .bind(&p.reason)
                .bind(p.changed_at_ms);
        }
        statement.execute(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One record per device, the newest (the later in `batch` among equals): one statement
/// may not change a row twice on PostgreSQL.
fn newest_per_device(batch: &[PresenceRecord]) -> Vec<&PresenceRecord> {
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut newest: Vec<&PresenceRecord> = Vec::with_capacity(batch.len());
    for p in batch {
        match index.get(p.device_id.as_str()) {
            Some(&i) => {
                if newest[i].changed_at_ms <= p.changed_at_ms {
                    newest[i] = p;
                }
            }
            None => {
                index.insert(&p.device_id, newest.len());
                newest.push(p);
            }
        }
    }
    newest
}

pub(crate) async fn presences(db: &Db, device_ids: &[String]) -> StoreResult<Vec<PresenceRecord>> {
    if device_ids.is_empty() {
        return Ok(Vec::new());
    }
    crate::device_ops::fetch_for_ids(
        db,
        device_ids,
        1,
        |list| format!("SELECT * FROM device_presence WHERE device_id IN ({list})"),
        |q| q,
    )
    .await
}
