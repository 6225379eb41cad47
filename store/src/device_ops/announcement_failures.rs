//! Failed announcements counted per device, for device health.

use crate::Db;
use crate::StoreResult;
use crate::db::query_as;

pub(crate) async fn failed_announcement_counts(
    db: &Db,
    device_ids: &[String],
    since_ms: i64,
) -> StoreResult<Vec<(String, i64)>> {
    if device_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT device_id, COUNT(*) FROM announcements WHERE status = 'failed' \
         AND expires_at_ms > $1 AND device_id IN ({}) GROUP BY device_id",
        crate::device_ops::placeholders(2, device_ids.len())
    );
    let mut query = query_as::<(String, i64)>(&sql).bind(since_ms);
    for id in device_ids {
        query = query.bind(id);
    }
    Ok(query.fetch_all(db.read()).await?)
}
