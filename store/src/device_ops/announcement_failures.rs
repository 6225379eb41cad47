//! Failed announcements counted per device, for device health.

use crate::Db;
use crate::StoreResult;

pub(crate) async fn failed_announcement_counts(
    db: &Db,
    device_ids: &[String],
    since_ms: i64,
) -> StoreResult<Vec<(String, i64)>> {
    if device_ids.is_empty() {
        return Ok(Vec::new());
    }
    crate::device_ops::fetch_for_ids(
        db,
        device_ids,
        2,
        |list| {
            format!(
                "SELECT device_id, COUNT(*) FROM announcements WHERE status = 'failed' \
                 AND expires_at_ms > $1 AND device_id IN ({list}) GROUP BY device_id"
            )
        },
        |q| q.bind(since_ms),
    )
    .await
}
