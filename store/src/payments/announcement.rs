//! Announcements: the outbox of "payment received" messages to a terminal's device, their
//! delivery attempts, and their queries.

use serde::Serialize;
use time::OffsetDateTime;

use crate::Db;
use crate::PaymentStore;
use crate::db::{Exec, query, query_as};
use crate::{PaymentRules, StoreError, StoreResult, Transaction, TransactionStatus};

string_enum!(
    AnnouncementStatus {
        /// Waiting to be sent (or re-sent).
        Pending = "pending",
        /// The device acknowledged it.
        Delivered = "delivered",
        /// Gave up after the retry budget.
        Failed = "failed",
        /// Not delivered before its expiry; never spoken.
        Expired = "expired",
        /// The terminal had no active bound device when the payment arrived.
        NoDevice = "no_device",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Announcement {
    pub id: String,
    pub transaction_id: String,
    pub terminal_id: String,
    pub device_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: AnnouncementStatus,
    /// Per-device counter, increasing by one per announcement to that device.
    pub sequence: i64,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub expires_at_ms: i64,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_attempt_at: Option<OffsetDateTime>,
    pub delivered_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
}

/// An announcement with what the device needs to say it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AnnouncementDelivery {
    pub id: String,
    pub transaction_id: String,
    pub device_id: String,
    pub sequence: i64,
    pub attempts: i64,
    pub expires_at_ms: i64,
    pub amount: i64,
    pub issuer: Option<String>,
    pub provider: Option<String>,
    pub paid_at: Option<OffsetDateTime>,
    /// When the announcement was committed (with the callback that paid): the start of
    /// the callback → acknowledgement latency.
    pub created_at: OffsetDateTime,
    /// The device's desired config (JSON written by the gateway), when one is set: the
    /// relay announces in its language.
    pub desired_config: Option<String>,
}

/// What a delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// Try again at `next_attempt_at_ms` (the device was offline or did not ack in time).
    Retry {
        error: String,
        next_attempt_at_ms: i64,
    },
    Failed {
        error: String,
    },
    Expired,
    /// Not attempted (the device is offline): wait until `next_attempt_at_ms` or until
    /// the device reconnects. Does not count as an attempt.
    Deferred {
        next_attempt_at_ms: i64,
    },
}

/// Records an attempt's result on a pending announcement; `false` if there is no
/// such announcement. A result for an announcement no longer pending changes nothing.
pub(crate) async fn record_one_delivery(
    conn: &mut Exec<'_>,
    announcement_id: &str,
    update: &crate::payments::batch::DeliveryUpdate,
) -> StoreResult<bool> {
    use crate::payments::batch::{ANNOUNCEMENT_EXISTS, RECORD_DELIVERY};
    let done = query(RECORD_DELIVERY)
        .bind_all(update.params(announcement_id))
        .execute(&mut *conn)
        .await?;
    if done > 0 {
        return Ok(true);
    }
    let exists: Option<(String,)> = query_as(ANNOUNCEMENT_EXISTS)
        .bind(announcement_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(exists.is_some())
}

/// An announcement for a paid transaction, to the device bound to its terminal now;
/// with no active bound device it is recorded as `no_device`, not dropped.
pub(crate) async fn insert_announcement(
    conn: &mut Exec<'_>,
    transaction: &Transaction,
    rules: &dyn PaymentRules,
    now: time::OffsetDateTime,
) -> StoreResult<Announcement> {
    // The bound device and its next announcement sequence number, in one query.
    let device: Option<(String, i64)> = query_as(
        "SELECT d.id, COALESCE((SELECT MAX(a.sequence) FROM announcements a \
         WHERE a.device_id = d.id), 0) + 1 \
         FROM devices d WHERE d.terminal_id = $1 AND d.status = 'active'",
    )
    .bind(&transaction.terminal_id)
    .fetch_optional(&mut *conn)
    .await?;
    let (device_id, sequence) = match device {
        Some((id, sequence)) => (Some(id), sequence),
        None => (None, 0),
    };
    let status = if device_id.is_some() {
        AnnouncementStatus::Pending
    } else {
        AnnouncementStatus::NoDevice
    };
    let now_ms = crate::payments::batch::unix_ms(now);
    Ok(query_as::<Announcement>(
        "INSERT INTO announcements (id, transaction_id, terminal_id, device_id, status, \
         sequence, next_attempt_at_ms, expires_at_ms, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $9, $6, $7, $8, $8) RETURNING *",
    )
    .bind(crate::sql::new_id("ann"))
    .bind(&transaction.id)
    .bind(&transaction.terminal_id)
    .bind(device_id)
    .bind(status.as_str())
    .bind(now_ms)
    .bind(now_ms + rules.announcement_ttl_ms())
    .bind(now)
    .bind(sequence)
    .fetch_one(&mut *conn)
    .await?)
}

pub(crate) async fn transaction_announcements(db: &Db, id: &str) -> StoreResult<Vec<Announcement>> {
    db.get_transaction(id).await?;
    Ok(query_as::<Announcement>(
        "SELECT * FROM announcements WHERE transaction_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(db.read())
    .await?)
}

pub(crate) async fn queue_announcement(
    db: &Db,
    transaction_id: &str,
    rules: &dyn PaymentRules,
) -> StoreResult<Announcement> {
    let now = crate::sql::now();
    let mut tx = db.begin_write().await?;
    let transaction = query_as::<Transaction>(
        ["SELECT * FROM transactions WHERE id = $1 ", db.row_lock()].concat(),
    )
    .bind(transaction_id)
    .fetch_optional(&mut tx)
    .await?
    .ok_or_else(|| StoreError::not_found("transaction", transaction_id))?;
    if transaction.status != TransactionStatus::Paid {
        return Err(StoreError::conflict(
            "not_paid",
            None,
            format!(
                "transaction {transaction_id} is {}; only paid transactions are announced",
                transaction.status.as_str()
            ),
        ));
    }
    let announcement = insert_announcement(&mut tx.exec(), &transaction, rules, now).await?;
    tx.commit().await?;
    Ok(announcement)
}

pub(crate) async fn due_announcements(
    db: &Db,
    device_id: Option<&str>,
    now_ms: i64,
    limit: u32,
) -> StoreResult<Vec<AnnouncementDelivery>> {
    // Two texts, not one with `($2 IS NULL OR a.device_id = $2)`: a cached generic plan of
    // that cannot use the device's index, and read every pending row of the fleet for one
    // device.
    const HEAD: &str = "SELECT a.id, a.transaction_id, a.device_id, a.sequence, a.attempts, \
         a.expires_at_ms, a.created_at, t.amount, t.issuer, t.provider, t.paid_at, \
         c.desired AS desired_config \
         FROM announcements a JOIN transactions t ON t.id = a.transaction_id \
         LEFT JOIN device_configs c ON c.device_id = a.device_id \
         WHERE a.status = 'pending' AND a.next_attempt_at_ms <= $1 AND ";
    const TAIL: &str = " ORDER BY a.device_id, a.sequence LIMIT $2";
    let limit = i64::from(limit.max(1));
    let query = match device_id {
        Some(device_id) => {
            query_as::<AnnouncementDelivery>([HEAD, "a.device_id = $3", TAIL].concat())
                .bind(now_ms)
                .bind(limit)
                .bind(device_id)
        }
        None => query_as([HEAD, "a.device_id IS NOT NULL", TAIL].concat())
            .bind(now_ms)
            .bind(limit),
    };
    Ok(query.fetch_all(db.read()).await?)
}

pub(crate) async fn next_announcement_due_ms(db: &Db, after_ms: i64) -> StoreResult<Option<i64>> {
    let (next,): (Option<i64>,) = query_as(
        "SELECT MIN(next_attempt_at_ms) FROM announcements \
         WHERE status = 'pending' AND next_attempt_at_ms > $1 \
         AND device_id IS NOT NULL",
    )
    .bind(after_ms)
    .fetch_one(db.read())
    .await?;
    Ok(next)
}

pub(crate) async fn record_delivery(
    db: &Db,
    announcement_id: &str,
    result: DeliveryResult,
) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    let update = crate::payments::batch::DeliveryUpdate::of(&result, crate::sql::now());
    let found = record_one_delivery(&mut tx.exec(), announcement_id, &update).await?;
    tx.commit().await?;
    if !found {
        return Err(StoreError::not_found("announcement", announcement_id));
    }
    Ok(())
}
