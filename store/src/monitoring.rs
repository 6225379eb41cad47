//! The figures the metrics sampler reads: outbox backlogs, invoices, payouts, the
//! WhatsApp queue and paused senders. Each is a small aggregate over an indexed status
//! column (or a small table), cheap enough to read every few seconds on every node; none
//! reads a whole history table (the ledger, sent messages, delivered announcements).

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::db::query_as;
use crate::{Db, StoreResult};

/// An outbox's pending rows: how many, and since when the oldest waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxBacklog {
    /// `announcement`, `config`, `command`, `qr`, `whatsapp` or `webhook`.
    pub kind: &'static str,
    pub pending: i64,
    /// When the oldest pending row was created (Unix ms); `None` when none is pending.
    pub oldest_created_ms: Option<i64>,
}

/// Rows and their amount (rupiah) in one status.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatusAmount {
    pub status: String,
    pub count: i64,
    pub amount: i64,
}

/// WhatsApp messages not yet finished, per sender (`operator` or a merchant id) and status
/// (`pending`, `sending`, `uncertain`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SenderQueue {
    pub sender_id: String,
    pub status: String,
    pub count: i64,
}

/// What [`MonitoringStore::monitoring_snapshot`] reads, in one call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonitoringSnapshot {
    /// Every kind, in a fixed order, also when nothing is pending.
    pub outboxes: Vec<OutboxBacklog>,
    /// Subscription invoices by status (`unpaid`, `paid`), with their total.
    pub invoices: Vec<StatusAmount>,
    /// Settlement batches by status, with their net amount (paid batches: the amount paid).
    pub settlements: Vec<StatusAmount>,
    pub whatsapp_queue: Vec<SenderQueue>,
    /// Senders stopped until a time still to come: `(sender id, reason)`.
    pub paused_senders: Vec<(String, String)>,
}

/// Aggregates for the metrics sampler.
#[async_trait]
pub trait MonitoringStore: Send + Sync {
    /// The figures above as of `now_ms` (for the paused senders).
    async fn monitoring_snapshot(&self, now_ms: i64) -> StoreResult<MonitoringSnapshot>;
}

/// Outboxes whose rows carry their creation as a time column.
const TIMED_OUTBOXES: [(&str, &str); 3] = [
    (
        "announcement",
        "SELECT COUNT(*), MIN(created_at) FROM announcements WHERE status = 'pending'",
    ),
    (
        "whatsapp",
        "SELECT COUNT(*), MIN(created_at) FROM wa_messages WHERE status = 'pending'",
    ),
    (
        "webhook",
        "SELECT COUNT(*), MIN(created_at) FROM billing_webhooks WHERE status = 'pending'",
    ),
];

/// Outboxes whose rows carry their creation as Unix milliseconds.
const MS_OUTBOXES: [(&str, &str); 3] = [
    (
        "config",
        "SELECT COUNT(*), MIN(desired_at_ms) FROM device_configs WHERE push_status = 'pending'",
    ),
    (
        "command",
        "SELECT COUNT(*), MIN(created_at_ms) FROM device_commands WHERE status = 'queued'",
    ),
    (
        "qr",
        "SELECT COUNT(*), MIN(created_at_ms) FROM device_qr_requests \
         WHERE show_status = 'pending' OR clear_status = 'pending'",
    ),
];

#[async_trait]
impl MonitoringStore for Db {
    async fn monitoring_snapshot(&self, now_ms: i64) -> StoreResult<MonitoringSnapshot> {
        let mut outboxes = Vec::with_capacity(TIMED_OUTBOXES.len() + MS_OUTBOXES.len());
        for (kind, sql) in TIMED_OUTBOXES {
            let (pending, oldest): (i64, Option<OffsetDateTime>) =
                query_as(sql).fetch_one(self.read()).await?;
            outboxes.push(OutboxBacklog {
                kind,
                pending,
                oldest_created_ms: oldest
                    .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)),
            });
        }
        for (kind, sql) in MS_OUTBOXES {
            let (pending, oldest_created_ms): (i64, Option<i64>) =
                query_as(sql).fetch_one(self.read()).await?;
            outboxes.push(OutboxBacklog {
                kind,
                pending,
                oldest_created_ms,
            });
        }
        let invoices = query_as::<StatusAmount>(
            "SELECT status, COUNT(*) AS count, \
             CAST(COALESCE(SUM(total_amount), 0) AS BIGINT) AS amount \
             FROM billing_invoices GROUP BY status ORDER BY status",
        )
        .fetch_all(self.read())
        .await?;
        let settlements = query_as::<StatusAmount>(
            "SELECT status, COUNT(*) AS count, CAST(COALESCE(SUM(CASE WHEN status = 'paid' \
             THEN COALESCE(paid_amount, payable_amount + adjustment_amount) \
             ELSE payable_amount + adjustment_amount END), 0) AS BIGINT) AS amount \
             FROM settlement_batches GROUP BY status ORDER BY status",
        )
        .fetch_all(self.read())
        .await?;
        let whatsapp_queue = query_as::<SenderQueue>(
            "SELECT sender_id, status, COUNT(*) AS count FROM wa_messages \
             WHERE status IN ('pending', 'sending', 'uncertain') \
             GROUP BY sender_id, status ORDER BY sender_id, status",
        )
        .fetch_all(self.read())
        .await?;
        let paused_senders = query_as::<(String, String)>(
            "SELECT sender_id, reason FROM wa_sender_pauses WHERE paused_until_ms > $1 \
             ORDER BY sender_id",
        )
        .bind(now_ms)
        .fetch_all(self.read())
        .await?;
        Ok(MonitoringSnapshot {
            outboxes,
            invoices,
            settlements,
            whatsapp_queue,
            paused_senders,
        })
    }
}

/// PostgreSQL's write-ahead log so far: what the benchmarks report per callback, a figure
/// that travels between machines (unlike milliseconds) and that every index entry and row
/// version adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCounters {
    /// Bytes of WAL written since the cluster was created (its current insert position).
    pub bytes: i64,
    /// WAL flushes to disk (`pg_stat_wal.wal_sync`): at most one per commit, fewer when
    /// commits share one.
    pub flushes: i64,
}

/// The WAL counters of the PostgreSQL server at `url` (one connection of its own, closed
/// after); `None` for any other URL (SQLite has no WAL position to report).
pub async fn wal_counters(url: &str) -> StoreResult<Option<WalCounters>> {
    use sqlx::Connection;
    if !crate::is_postgres_url(url) {
        return Ok(None);
    }
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let (bytes, flushes): (i64, i64) = sqlx::query_as(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, wal_sync FROM pg_stat_wal",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(Some(WalCounters { bytes, flushes }))
}
