//! Commands to a device: their states (each moved through once), and their queries.

use crate::Db;
use crate::db::{query, query_as};
use crate::{Page, PageRequest, StoreError, StoreResult};

string_enum!(
    /// Where a command is. `queued → sent → acknowledged → succeeded | failed`, or
    /// `expired` (never delivered before its expiry, or the device says it came too late), or
    /// `timed_out` (delivered, no final result by its deadline).
    CommandStatus {
        Queued = "queued",
        Sent = "sent",
        Acknowledged = "acknowledged",
        Succeeded = "succeeded",
        Failed = "failed",
        TimedOut = "timed_out",
        Expired = "expired",
    }
);

impl CommandStatus {
    /// No further change happens to a command in this status.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CommandStatus::Succeeded
                | CommandStatus::Failed
                | CommandStatus::TimedOut
                | CommandStatus::Expired
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CommandRecord {
    pub id: String,
    pub device_id: String,
    /// `set_volume`, `reboot`, …
    pub name: String,
    /// The action, JSON encoded by the gateway.
    pub action: String,
    pub interactive: bool,
    #[sqlx(try_from = "String")]
    pub status: CommandStatus,
    pub expires_at_ms: i64,
    pub result_deadline_ms: i64,
    pub attempts: i64,
    /// The device's result map, JSON.
    pub result: Option<String>,
    pub message: Option<String>,
    pub created_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    pub acknowledged_at_ms: Option<i64>,
    pub completed_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommand {
    pub device_id: String,
    pub name: String,
    pub action: String,
    pub interactive: bool,
    /// `Queued`, or `Failed` for an interactive command to an offline device.
    pub status: CommandStatus,
    pub message: Option<String>,
    pub expires_at_ms: i64,
    pub result_deadline_ms: i64,
    pub now_ms: i64,
}

/// A change of a command's status, applied only if it is in one of `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandUpdate {
    pub from: Vec<CommandStatus>,
    pub to: CommandStatus,
    pub result: Option<String>,
    pub message: Option<String>,
    pub at_ms: i64,
    /// Count this as a delivery attempt.
    pub attempt: bool,
}

pub(crate) async fn create_command(db: &Db, new: NewCommand) -> StoreResult<CommandRecord> {
    let mut tx = db.begin_write().await?;
    let done = new.status.is_final().then_some(new.now_ms);
    let record = query_as::<CommandRecord>(
        "INSERT INTO device_commands (id, device_id, name, action, interactive, status, \
         expires_at_ms, result_deadline_ms, attempts, message, created_at_ms, completed_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11) RETURNING *",
    )
    .bind(crate::sql::new_id("cmd"))
    .bind(&new.device_id)
    .bind(&new.name)
    .bind(&new.action)
    .bind(new.interactive)
    .bind(new.status.as_str())
    .bind(new.expires_at_ms)
    .bind(new.result_deadline_ms)
    .bind(&new.message)
    .bind(new.now_ms)
    .bind(done)
    .fetch_one(&mut tx)
    .await
    .map_err(|err| crate::device_ops::device_missing(err, &new.device_id))?;
    tx.commit().await?;
    Ok(record)
}

pub(crate) async fn get_command(
    db: &Db,
    device_id: &str,
    command_id: &str,
) -> StoreResult<CommandRecord> {
    query_as::<CommandRecord>("SELECT * FROM device_commands WHERE id = $1 AND device_id = $2")
        .bind(command_id)
        .bind(device_id)
        .fetch_optional(db.read())
        .await?
        .ok_or_else(|| StoreError::not_found("command", command_id))
}

pub(crate) async fn list_commands(
    db: &Db,
    device_id: &str,
    page: &PageRequest,
) -> StoreResult<Page<CommandRecord>> {
    let rows = query_as::<CommandRecord>(
        "SELECT * FROM device_commands WHERE device_id = $1 \
         AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(device_id)
    .bind(page.after.as_deref())
    .bind(crate::sql::fetch_limit(page.limit))
    .fetch_all(db.read())
    .await?;
    Ok(crate::sql::paginate(rows, page.limit, |c| &c.id))
}

pub(crate) async fn due_commands(
    db: &Db,
    device_id: Option<&str>,
    now_ms: i64,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<CommandRecord>> {
    Ok(query_as::<CommandRecord>(
        "SELECT * FROM device_commands WHERE \
         ((status = 'queued' AND expires_at_ms > $1) \
          OR ($2 IS NOT NULL AND status IN ('sent', 'acknowledged') AND result_deadline_ms > $1)) \
         AND ($2 IS NULL OR device_id = $2) AND id > $3 ORDER BY id LIMIT $4",
    )
    .bind(now_ms)
    .bind(device_id)
    .bind(after.unwrap_or(""))
    .bind(i64::from(limit.max(1)))
    .fetch_all(db.read())
    .await?)
}

pub(crate) async fn update_command(
    db: &Db,
    command_id: &str,
    update: CommandUpdate,
) -> StoreResult<(CommandRecord, bool)> {
    use CommandStatus as S;
    let stamp = match update.to {
        S::Queued => "created_at_ms = created_at_ms",
        S::Sent => "sent_at_ms = COALESCE(sent_at_ms, $4)",
        S::Acknowledged => "acknowledged_at_ms = COALESCE(acknowledged_at_ms, $4)",
        S::Succeeded | S::Failed | S::TimedOut | S::Expired => "completed_at_ms = $4",
    };
    let sql = format!(
        "UPDATE device_commands SET status = $1, result = COALESCE($2, result), \
         message = COALESCE($3, message), attempts = attempts + $5, {stamp} \
         WHERE id = $6 AND status IN ({})",
        crate::device_ops::placeholders(7, update.from.len().max(1))
    );
    let mut tx = db.begin_write().await?;
    let mut query = query(&sql)
        .bind(update.to.as_str())
        .bind(&update.result)
        .bind(&update.message)
        .bind(update.at_ms)
        .bind(i64::from(update.attempt))
        .bind(command_id);
    if update.from.is_empty() {
        query = query.bind("");
    }
    for from in &update.from {
        query = query.bind(from.as_str());
    }
    let changed = query.execute(&mut tx).await? > 0;
    let record = query_as::<CommandRecord>("SELECT * FROM device_commands WHERE id = $1")
        .bind(command_id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| StoreError::not_found("command", command_id))?;
    tx.commit().await?;
    Ok((record, changed))
}

pub(crate) async fn expire_commands(db: &Db, now_ms: i64) -> StoreResult<Vec<CommandRecord>> {
    // A read first: the sweep runs every second and should not take the write
    // lock when nothing is due.
    let due: Option<(String,)> = query_as(
        "SELECT id FROM device_commands WHERE (status = 'queued' AND expires_at_ms <= $1) \
         OR (status IN ('sent', 'acknowledged') AND result_deadline_ms <= $1) LIMIT 1",
    )
    .bind(now_ms)
    .fetch_optional(db.read())
    .await?;
    if due.is_none() {
        return Ok(Vec::new());
    }
    let mut tx = db.begin_write().await?;
    let mut changed = query_as::<CommandRecord>(
        "UPDATE device_commands SET status = 'expired', completed_at_ms = $1, \
         message = COALESCE(message, 'not delivered before its expiry') \
         WHERE status = 'queued' AND expires_at_ms <= $1 RETURNING *",
    )
    .bind(now_ms)
    .fetch_all(&mut tx)
    .await?;
    changed.extend(
        query_as::<CommandRecord>(
            "UPDATE device_commands SET status = 'timed_out', completed_at_ms = $1, \
             message = COALESCE(message, 'no result from the device in time') \
             WHERE status IN ('sent', 'acknowledged') AND result_deadline_ms <= $1 \
             RETURNING *",
        )
        .bind(now_ms)
        .fetch_all(&mut tx)
        .await?,
    );
    tx.commit().await?;
    Ok(changed)
}
