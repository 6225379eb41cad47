//! A device's requests for a dynamic QR, kept once and closed when their transaction moves;
//! and their queries. A request row is also the outbox of its two downlinks: `qr_show`
//! (owed from creation) and `qr_clear` (owed from closing), each `pending` until the device
//! acknowledges it, then `delivered`, or `expired` / `failed`. The pending transaction and
//! its request row are created in one transaction ([`create_qr_request`]), so a retried
//! request can never leave a second transaction behind.

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
    /// The `qr_show` downlink: `pending`, `delivered`, `expired` or `failed`.
    pub show_status: String,
    /// The `qr_clear` downlink, once the request is closed: as `show_status`.
    pub clear_status: Option<String>,
    /// Sends of the downlink now owed.
    pub attempts: i64,
    /// When the owed downlink is sent again if still unacknowledged.
    pub next_attempt_at_ms: i64,
}

/// Which of a request's two downlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrDownlink {
    Show,
    Clear,
}

impl QrDownlink {
    fn column(self) -> &'static str {
        match self {
            QrDownlink::Show => "show_status",
            QrDownlink::Clear => "clear_status",
        }
    }
}

/// A new request for a dynamic QR, created with its pending transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQrRequest {
    pub device_id: String,
    pub request_id: String,
    pub payload: String,
    pub created_at_ms: i64,
}

impl QrRequestRecord {
    /// The downlink this request owes now, if any (a clear is owed before a show).
    pub fn owed(&self) -> Option<QrDownlink> {
        if self.clear_status.as_deref() == Some("pending") {
            Some(QrDownlink::Clear)
        } else if self.show_status == "pending" && self.status == "shown" {
            Some(QrDownlink::Show)
        } else {
            None
        }
    }
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

/// The request `(device, request id)` with its pending transaction `transaction`, both
/// created in one write transaction; or, if the device already made that request, the
/// stored one (`false`: nothing was created).
pub(crate) async fn create_qr_request(
    db: &Db,
    transaction: crate::NewTransaction,
    r: NewQrRequest,
) -> StoreResult<(QrRequestRecord, bool)> {
    let mut tx = db.begin_write().await?;
    let existing = query_as::<QrRequestRecord>(
        "SELECT * FROM device_qr_requests WHERE device_id = $1 AND request_id = $2",
    )
    .bind(&r.device_id)
    .bind(&r.request_id)
    .fetch_optional(&mut tx)
    .await?;
    if let Some(existing) = existing {
        return Ok((existing, false));
    }
    let created = crate::payments::transaction::create_transaction_in(&mut tx, transaction).await?;
    // Two requests of one id at once on PostgreSQL: the second waits here for the first's
    // commit, inserts nothing, and rolls its transaction back (below).
    let inserted = query(
        "INSERT INTO device_qr_requests (device_id, request_id, transaction_id, amount, \
         payload, expires_at_ms, status, created_at_ms, show_status, attempts, \
         next_attempt_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, 'shown', $7, 'pending', 0, 0) \
         ON CONFLICT (device_id, request_id) DO NOTHING",
    )
    .bind(&r.device_id)
    .bind(&r.request_id)
    .bind(&created.id)
    .bind(created.amount)
    .bind(&r.payload)
    .bind(created.expires_at_ms)
    .bind(r.created_at_ms)
    .execute(&mut tx)
    .await
    .map_err(|err| crate::device_ops::device_missing(err, &r.device_id))?
        > 0;
    if !inserted {
        drop(tx);
        let stored = qr_request(db, &r.device_id, &r.request_id)
            .await?
            .ok_or_else(|| crate::StoreError::not_found("qr request", &r.request_id))?;
        return Ok((stored, false));
    }
    let stored = query_as::<QrRequestRecord>(
        "SELECT * FROM device_qr_requests WHERE device_id = $1 AND request_id = $2",
    )
    .bind(&r.device_id)
    .bind(&r.request_id)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    Ok((stored, true))
}

/// Requests owing a downlink that is due: of `device_id` whatever their next attempt (it
/// just connected), or of every device once their next attempt is due. Never one whose QR
/// has expired.
pub(crate) async fn due_qr_downlinks(
    db: &Db,
    device_id: Option<&str>,
    now_ms: i64,
    limit: u32,
) -> StoreResult<Vec<QrRequestRecord>> {
    Ok(query_as::<QrRequestRecord>(
        "SELECT * FROM device_qr_requests \
         WHERE (show_status = 'pending' OR clear_status = 'pending') AND expires_at_ms > $1 \
         AND (($2 IS NULL AND next_attempt_at_ms <= $1) OR device_id = $2) \
         ORDER BY created_at_ms LIMIT $3",
    )
    .bind(now_ms)
    .bind(device_id)
    .bind(i64::from(limit.max(1)))
    .fetch_all(db.read())
    .await?)
}

/// The owed downlink `kind` was sent: one more attempt, the next at `next_attempt_at_ms`.
pub(crate) async fn qr_downlink_sent(
    db: &Db,
    device_id: &str,
    request_id: &str,
    kind: QrDownlink,
    next_attempt_at_ms: i64,
) -> StoreResult<()> {
    let sql = format!(
        "UPDATE device_qr_requests SET attempts = attempts + 1, next_attempt_at_ms = $1 \
         WHERE device_id = $2 AND request_id = $3 AND {} = 'pending'",
        kind.column()
    );
    let mut tx = db.begin_write().await?;
    query(sql)
        .bind(next_attempt_at_ms)
        .bind(device_id)
        .bind(request_id)
        .execute(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Ends the owed downlink `kind` of the device's request for `transaction_id` with `outcome`
/// (`delivered`, `expired`, `failed`); whether it was still pending.
pub(crate) async fn finish_qr_downlink(
    db: &Db,
    device_id: &str,
    transaction_id: &str,
    kind: QrDownlink,
    outcome: &str,
) -> StoreResult<bool> {
    let column = kind.column();
    let sql = format!(
        "UPDATE device_qr_requests SET {column} = $1 \
         WHERE device_id = $2 AND transaction_id = $3 AND {column} = 'pending'"
    );
    let mut tx = db.begin_write().await?;
    let changed = query(sql)
        .bind(outcome)
        .bind(device_id)
        .bind(transaction_id)
        .execute(&mut tx)
        .await?
        > 0;
    tx.commit().await?;
    Ok(changed)
}

/// Ends, as `expired`, every owed downlink whose QR expired at or before `now_ms`: the
/// device dropped the QR by itself. Returns how many requests changed.
pub(crate) async fn expire_qr_downlinks(db: &Db, now_ms: i64) -> StoreResult<u64> {
    let mut tx = db.begin_write().await?;
    let changed = query(
        "UPDATE device_qr_requests SET \
         show_status = CASE WHEN show_status = 'pending' THEN 'expired' ELSE show_status END, \
         clear_status = CASE WHEN clear_status = 'pending' THEN 'expired' ELSE clear_status END \
         WHERE (show_status = 'pending' OR clear_status = 'pending') AND expires_at_ms <= $1",
    )
    .bind(now_ms)
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(changed)
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

/// Closes a shown QR and makes its `qr_clear` owed (a `qr_show` not yet delivered is no
/// longer owed). Whether it was open.
pub(crate) async fn close_qr_request(
    db: &Db,
    device_id: &str,
    request_id: &str,
    reason: &str,
    now_ms: i64,
) -> StoreResult<bool> {
    let mut tx = db.begin_write().await?;
    let changed = query(
        "UPDATE device_qr_requests SET status = 'closed', close_reason = $1, \
         closed_at_ms = $2, clear_status = 'pending', attempts = 0, next_attempt_at_ms = 0, \
         show_status = CASE WHEN show_status = 'pending' THEN 'expired' ELSE show_status END \
         WHERE device_id = $3 AND request_id = $4 AND status = 'shown'",
    )
    .bind(reason)
    .bind(now_ms)
    .bind(device_id)
    .bind(request_id)
    .execute(&mut tx)
    .await?
        > 0;
    tx.commit().await?;
    Ok(changed)
}
