//! Device operations records: heartbeats, presence, desired and reported configuration.
//!
//! The store keeps what devices said and what operators want; what it means (health,
//! drift, which ranges are valid) is the gateway's. Every instant here is Unix milliseconds
//! passed in by the caller, so the gateway's clock (a controllable one in tests) decides
//! what "now" is.

use async_trait::async_trait;

use crate::Db;
use crate::StoreResult;
use crate::{Page, PageRequest, StoreError};

pub(crate) mod announcement_failures;
pub(crate) mod command;
pub(crate) mod config;
pub(crate) mod heartbeat;
pub(crate) mod presence;
pub(crate) mod qr_request;

pub use command::{CommandRecord, CommandStatus, CommandUpdate, NewCommand};
pub use config::{ConfigPushStatus, ConfigRecord, ReportedConfigUpdate};
pub use heartbeat::{HeartbeatRecord, NewHeartbeat};
pub use presence::PresenceRecord;
pub use qr_request::{NewQrRequest, QrDownlink, QrRequestRecord};

/// Heartbeats, presence and configuration of devices.
#[async_trait]
pub trait DeviceOpsStore: Send + Sync {
    /// Stores a heartbeat and keeps only the newest `keep` of the device's heartbeats.
    async fn record_heartbeat(&self, heartbeat: NewHeartbeat, keep: u32) -> StoreResult<()>;
    /// The device's newest heartbeats, newest first.
    async fn heartbeats(&self, device_id: &str, limit: u32) -> StoreResult<Vec<HeartbeatRecord>>;
    /// The newest heartbeat of each of `device_ids` that has one.
    async fn latest_heartbeats(&self, device_ids: &[String]) -> StoreResult<Vec<HeartbeatRecord>>;

    /// Records a batch of presence changes in one transaction (multi-row upserts). Per
    /// device only the newest change counts, and it replaces the stored one only if that
    /// is not newer (`changed_at_ms`; events may arrive late). Devices that do not exist
    /// (deleted since they connected) are skipped, so one cannot fail the batch.
    async fn record_presences(&self, batch: &[PresenceRecord]) -> StoreResult<()>;
    /// The last presence change of each of `device_ids` that has one.
    async fn presences(&self, device_ids: &[String]) -> StoreResult<Vec<PresenceRecord>>;

    /// The device's config record, if a desired config was ever set. `NotFound` for an
    /// unknown device.
    async fn device_config(&self, device_id: &str) -> StoreResult<Option<ConfigRecord>>;
    /// The config records of each of `device_ids` that has one.
    async fn device_configs(&self, device_ids: &[String]) -> StoreResult<Vec<ConfigRecord>>;
    /// Replaces the desired config if its current version is `expected_version` (0 when
    /// none was ever set); the new version is `expected_version + 1` and the push is due
    /// again. A `Conflict` with code `stale_version` otherwise.
    async fn set_desired_config(
        &self,
        device_id: &str,
        expected_version: i64,
        desired: &str,
        now_ms: i64,
    ) -> StoreResult<ConfigRecord>;
    /// Records a push attempt's outcome for `version` (ignored when the desired version has
    /// moved on since). `status` is `Sent`, `Pending` (offline: wait) or `Failed`.
    async fn record_config_push(
        &self,
        device_id: &str,
        version: i64,
        status: ConfigPushStatus,
        error: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Makes the push due again (an operator's retry). `NotFound` when no desired config.
    async fn requeue_config_push(&self, device_id: &str) -> StoreResult<ConfigRecord>;
    /// Stores what the device reported; an `applied` (or `rejected`) report of the desired
    /// version settles the push.
    async fn record_reported_config(
        &self,
        device_id: &str,
        report: ReportedConfigUpdate,
    ) -> StoreResult<ConfigRecord>;
    /// Devices whose desired config push is due (`pending`), up to `limit`, oldest desire
    /// first; a page after `after`, the `(desired_at_ms, device_id)` of the previous page's
    /// last record (a missing `desired_at_ms` counts as 0).
    async fn pending_config_pushes(
        &self,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<ConfigRecord>>;

    /// Stores a new command (its id is made here).
    async fn create_command(&self, new: NewCommand) -> StoreResult<CommandRecord>;
    /// `NotFound` unless the command exists and belongs to `device_id`.
    async fn get_command(&self, device_id: &str, command_id: &str) -> StoreResult<CommandRecord>;
    /// The device's commands, oldest first, by keyset page.
    async fn list_commands(
        &self,
        device_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<CommandRecord>>;
    /// Queued, unexpired commands (of one device, or all), oldest first. For one device
    /// (it just connected) also those delivered but without a final result before their
    /// result deadline: the device's answer may have been lost with a connection or a
    /// crash, and it answers a re-send (same `command_id`) with its result again. A page
    /// after the command id `after`.
    async fn due_commands(
        &self,
        device_id: Option<&str>,
        now_ms: i64,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<CommandRecord>>;
    /// Applies `update` if the command is in one of `update.from`; returns the command as
    /// it is afterwards, and whether it changed. `NotFound` for an unknown id.
    async fn update_command(
        &self,
        command_id: &str,
        update: CommandUpdate,
    ) -> StoreResult<(CommandRecord, bool)>;
    /// Queued commands past their expiry → `expired`; sent or acknowledged ones past their
    /// result deadline → `timed_out`. Returns what changed.
    async fn expire_commands(&self, now_ms: i64) -> StoreResult<Vec<CommandRecord>>;

    /// The QR made for a device's request, if any.
    async fn qr_request(
        &self,
        device_id: &str,
        request_id: &str,
    ) -> StoreResult<Option<QrRequestRecord>>;
    /// Creates the pending transaction and the request for its QR in one write
    /// transaction; if the device already made this request, returns the stored one and
    /// `false`.
    async fn create_qr_request(
        &self,
        transaction: crate::NewTransaction,
        request: NewQrRequest,
    ) -> StoreResult<(QrRequestRecord, bool)>;
    /// Shown QRs whose transaction is no longer pending, with the transaction's status.
    async fn qr_requests_to_close(&self, limit: u32)
    -> StoreResult<Vec<(QrRequestRecord, String)>>;
    /// Marks a shown QR closed and its `qr_clear` owed; whether it was open.
    async fn close_qr_request(
        &self,
        device_id: &str,
        request_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Requests owing a due downlink (see `qr_request::due_qr_downlinks`).
    async fn due_qr_downlinks(
        &self,
        device_id: Option<&str>,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<QrRequestRecord>>;
    /// The owed downlink was sent; the next attempt at `next_attempt_at_ms`.
    async fn qr_downlink_sent(
        &self,
        device_id: &str,
        request_id: &str,
        kind: QrDownlink,
        next_attempt_at_ms: i64,
    ) -> StoreResult<()>;
    /// Ends the owed downlink of the device's request for `transaction_id` with `outcome`;
    /// whether it was still pending.
    async fn finish_qr_downlink(
        &self,
        device_id: &str,
        transaction_id: &str,
        kind: QrDownlink,
        outcome: &str,
    ) -> StoreResult<bool>;
    /// Owed downlinks of QRs expired by `now_ms` → `expired`; how many requests changed.
    async fn expire_qr_downlinks(&self, now_ms: i64) -> StoreResult<u64>;

    /// For each of `device_ids` with any: how many of its announcements failed (status
    /// `failed`) among those expiring after `since_ms`.
    async fn failed_announcement_counts(
        &self,
        device_ids: &[String],
        since_ms: i64,
    ) -> StoreResult<Vec<(String, i64)>>;
}

/// `$first, $first+1, …` placeholders for an `IN (…)` list of `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Most parameters bound to one sqlx statement that grows with its input (an `IN` list, a
/// multi-row `VALUES`). sqlx finds each `$N` on SQLite by its name, and SQLite finds a name
/// by walking the statement's list of them, so binding n parameters costs n²: during a
/// 9,000-device connect storm one statement per batch with every connected device's id kept
/// SQLite's threads busy for 23 s of CPU. (SQLite also refuses more than 32,766.)
pub(crate) const MAX_LIST_PARAMS: usize = 400;

/// The rows of `sql` for every one of `ids`, one statement per [`MAX_LIST_PARAMS`] of
/// them: `sql` gets the `IN` list's placeholders (numbered from `first`) and `leading`
/// binds the `first - 1` parameters before it.
pub(crate) async fn fetch_for_ids<'q, T: crate::db::Row>(
    db: &Db,
    ids: &'q [String],
    first: usize,
    sql: impl Fn(&str) -> String,
    leading: impl Fn(crate::db::QueryAs<'q, T>) -> crate::db::QueryAs<'q, T>,
) -> StoreResult<Vec<T>> {
    let mut rows = Vec::new();
    for chunk in ids.chunks(MAX_LIST_PARAMS) {
        let text = sql(&placeholders(first, chunk.len()));
        let mut statement = leading(crate::db::query_as::<T>(text));
        for id in chunk {
            statement = statement.bind(id);
        }
        rows.extend(statement.fetch_all(db.read()).await?);
    }
    Ok(rows)
}

/// A foreign-key failure on a device's row means the device does not exist.
pub(crate) fn device_missing(err: sqlx::Error, device_id: &str) -> StoreError {
    match StoreError::from(err) {
        StoreError::Conflict {
            code: "reference_missing",
            ..
        } => StoreError::not_found("device", device_id),
        other => other,
    }
}

/// The one implementation, for both backends: each method is its entity module's function.
#[async_trait::async_trait]
impl DeviceOpsStore for Db {
    async fn record_heartbeat(&self, hb: NewHeartbeat, keep: u32) -> StoreResult<()> {
        heartbeat::record_heartbeat(self, hb, keep).await
    }

    async fn heartbeats(&self, device_id: &str, limit: u32) -> StoreResult<Vec<HeartbeatRecord>> {
        heartbeat::heartbeats(self, device_id, limit).await
    }

    async fn latest_heartbeats(&self, device_ids: &[String]) -> StoreResult<Vec<HeartbeatRecord>> {
        heartbeat::latest_heartbeats(self, device_ids).await
    }

    async fn record_presences(&self, batch: &[PresenceRecord]) -> StoreResult<()> {
        presence::record_presences(self, batch).await
    }

    async fn presences(&self, device_ids: &[String]) -> StoreResult<Vec<PresenceRecord>> {
        presence::presences(self, device_ids).await
    }

    async fn device_config(&self, device_id: &str) -> StoreResult<Option<ConfigRecord>> {
        config::device_config(self, device_id).await
    }

    async fn device_configs(&self, device_ids: &[String]) -> StoreResult<Vec<ConfigRecord>> {
        config::device_configs(self, device_ids).await
    }

    async fn set_desired_config(
        &self,
        device_id: &str,
        expected_version: i64,
        desired: &str,
        now_ms: i64,
    ) -> StoreResult<ConfigRecord> {
        config::set_desired_config(self, device_id, expected_version, desired, now_ms).await
    }

    async fn record_config_push(
        &self,
        device_id: &str,
        version: i64,
        status: ConfigPushStatus,
        error: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()> {
        config::record_config_push(self, device_id, version, status, error, now_ms).await
    }

    async fn requeue_config_push(&self, device_id: &str) -> StoreResult<ConfigRecord> {
        config::requeue_config_push(self, device_id).await
    }

    async fn record_reported_config(
        &self,
        device_id: &str,
        report: ReportedConfigUpdate,
    ) -> StoreResult<ConfigRecord> {
        config::record_reported_config(self, device_id, report).await
    }

    async fn pending_config_pushes(
        &self,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<ConfigRecord>> {
        config::pending_config_pushes(self, after, limit).await
    }

    async fn create_command(&self, new: NewCommand) -> StoreResult<CommandRecord> {
        command::create_command(self, new).await
    }

    async fn get_command(&self, device_id: &str, command_id: &str) -> StoreResult<CommandRecord> {
        command::get_command(self, device_id, command_id).await
    }

    async fn list_commands(
        &self,
        device_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<CommandRecord>> {
        command::list_commands(self, device_id, page).await
    }

    async fn due_commands(
        &self,
        device_id: Option<&str>,
        now_ms: i64,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<CommandRecord>> {
        command::due_commands(self, device_id, now_ms, after, limit).await
    }

    async fn update_command(
        &self,
        command_id: &str,
        update: CommandUpdate,
    ) -> StoreResult<(CommandRecord, bool)> {
        command::update_command(self, command_id, update).await
    }

    async fn expire_commands(&self, now_ms: i64) -> StoreResult<Vec<CommandRecord>> {
        command::expire_commands(self, now_ms).await
    }

    async fn qr_request(
        &self,
        device_id: &str,
        request_id: &str,
    ) -> StoreResult<Option<QrRequestRecord>> {
        qr_request::qr_request(self, device_id, request_id).await
    }

    async fn create_qr_request(
        &self,
        transaction: crate::NewTransaction,
        request: NewQrRequest,
    ) -> StoreResult<(QrRequestRecord, bool)> {
        qr_request::create_qr_request(self, transaction, request).await
    }

    async fn qr_requests_to_close(
        &self,
        limit: u32,
    ) -> StoreResult<Vec<(QrRequestRecord, String)>> {
        qr_request::qr_requests_to_close(self, limit).await
    }

    async fn close_qr_request(
        &self,
        device_id: &str,
        request_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        qr_request::close_qr_request(self, device_id, request_id, reason, now_ms).await
    }

    async fn due_qr_downlinks(
        &self,
        device_id: Option<&str>,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<QrRequestRecord>> {
        qr_request::due_qr_downlinks(self, device_id, now_ms, limit).await
    }

    async fn qr_downlink_sent(
        &self,
        device_id: &str,
        request_id: &str,
        kind: QrDownlink,
        next_attempt_at_ms: i64,
    ) -> StoreResult<()> {
        qr_request::qr_downlink_sent(self, device_id, request_id, kind, next_attempt_at_ms).await
    }

    async fn finish_qr_downlink(
        &self,
        device_id: &str,
        transaction_id: &str,
        kind: QrDownlink,
        outcome: &str,
    ) -> StoreResult<bool> {
        qr_request::finish_qr_downlink(self, device_id, transaction_id, kind, outcome).await
    }

    async fn expire_qr_downlinks(&self, now_ms: i64) -> StoreResult<u64> {
        qr_request::expire_qr_downlinks(self, now_ms).await
    }

    async fn failed_announcement_counts(
        &self,
        device_ids: &[String],
        since_ms: i64,
    ) -> StoreResult<Vec<(String, i64)>> {
        announcement_failures::failed_announcement_counts(self, device_ids, since_ms).await
    }
}
