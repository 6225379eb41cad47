//! A device's requests for a dynamic QR, kept once and closed when their transaction moves;
//! and their queries.

use crate::Db;
use crate::StoreResult;
use crate::db::{query, query_as};

/// A dynamic QR a device asked for.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QrRequestRecord {
    pub device_id: String,
    pub request_id: String,
    pub transaction_id: String,
    pub amount: i64,
    pub payload: String,
    pub expires_at_ms: i64,
    /// `shown` or `closed`.
    pub status: String,
    /// `paid`, `expired`, … once closed.
    pub close_reason: Option<String>,
    pub created_at_ms: i64,
    pub closed_at_ms: Option<i64>,
}

pub(crate) async fn qr_request(
    db: &Db,
    device_id: &str,
    request_id: &str,
) -> StoreResult<Option<QrRequestRecord>> {
    Ok(query_as::<QrRequestRecord>(
        "SELECT * FROM device_qr_requests WHERE device_id = $1 AND request_id = $2",
    )
    .bind(device_id)
    .bind(request_id)
    .fetch_optional(db.read())
    .await?)
}

pub(crate) async fn record_qr_request(
    db: &Db,
    r: QrRequestRecord,
) -> StoreResult<(QrRequestRecord, bool)> {
    let mut tx = db.begin_write().await?;
    let inserted = query(
        "INSERT INTO device_qr_requests (device_id, request_id, transaction_id, amount, \
         payload, expires_at_ms, status, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, 'shown', $7) \
         ON CONFLICT (device_id, request_id) DO NOTHING",
    )
    .bind(&r.device_id)
    .bind(&r.request_id)
    .bind(&r.transaction_id)
    .bind(r.amount)
    .bind(&r.payload)
    .bind(r.expires_at_ms)
    .bind(r.created_at_ms)
    .execute(&mut tx)
    .await
    .map_err(|err| crate::device_ops::device_missing(err, &r.device_id))?
        > 0;
    let stored = query_as::<QrRequestRecord>(
        "SELECT * FROM device_qr_requests WHERE device_id = $1 AND request_id = $2",
    )
    .bind(&r.device_id)
    .bind(&r.request_id)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    Ok((stored, inserted))
}

pub(crate) async fn qr_requests_to_close(
    db: &Db,
    limit: u32,
) -> StoreResult<Vec<(QrRequestRecord, String)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        qr: QrRequestRecord,
        transaction_status: String,
    }
    let rows = query_as::<Row>(
        "SELECT q.*, t.status AS transaction_status FROM device_qr_requests q \
         JOIN transactions t ON t.id = q.transaction_id \
         WHERE q.status = 'shown' AND t.status <> 'pending' \
         ORDER BY q.created_at_ms LIMIT $1",
    )
    .bind(i64::from(limit.max(1)))
    .fetch_all(db.read())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.qr, r.transaction_status))
        .collect())
}

pub(crate) async fn close_qr_request(
    db: &Db,
    device_id: &str,
    request_id: &str,
    reason: &str,
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    query(
        "UPDATE device_qr_requests SET status = 'closed', close_reason = $1, \
         closed_at_ms = $2 WHERE device_id = $3 AND request_id = $4 AND status = 'shown'",
    )
    .bind(reason)
    .bind(now_ms)
    .bind(device_id)
    .bind(request_id)
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
