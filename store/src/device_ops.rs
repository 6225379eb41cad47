//! Device operations records: heartbeats, presence, desired and reported configuration.
//!
//! The store keeps what devices said and what operators want; what it means (health,
//! drift, which ranges are valid) is the gateway's. Every instant here is Unix milliseconds
//! passed in by the caller, so the gateway's clock (a controllable one in tests) decides
//! what "now" is.

use async_trait::async_trait;

use crate::StoreResult;

/// One heartbeat as received (the gateway stamps `received_at_ms` with its own clock).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HeartbeatRecord {
    pub id: String,
    pub device_id: String,
    pub received_at_ms: i64,
    pub battery_pct: Option<i64>,
    pub charging: bool,
    pub signal_dbm: Option<i64>,
    /// `wifi`, `2g`, `3g`, `4g`, `ethernet`, `unknown`.
    pub network: String,
    pub firmware_version: String,
    pub audio_pack_version: String,
    pub uptime_s: i64,
    pub last_transaction_id: Option<String>,
    pub config_version: i64,
}

/// A heartbeat to store (the id is made by the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHeartbeat {
    pub device_id: String,
    pub received_at_ms: i64,
    pub battery_pct: Option<i64>,
    pub charging: bool,
    pub signal_dbm: Option<i64>,
    pub network: String,
    pub firmware_version: String,
    pub audio_pack_version: String,
    pub uptime_s: i64,
    pub last_transaction_id: Option<String>,
    pub config_version: i64,
}

/// The last presence change the broker reported for a device.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PresenceRecord {
    pub device_id: String,
    pub connected: bool,
    /// Why it disconnected (the broker's label); `None` while connected.
    pub reason: Option<String>,
    pub changed_at_ms: i64,
}

string_enum!(
    /// Where the push of the desired config stands.
    ConfigPushStatus {
        /// No desired config set yet (the row only holds a report).
        None = "none",
        /// Due: not yet delivered to the device (new version, retry, or device offline).
        Pending = "pending",
        /// Published and acknowledged by MQTT; waiting for the device's report.
        Sent = "sent",
        /// The device reported this version applied.
        Applied = "applied",
        /// The device refused this version.
        Rejected = "rejected",
        /// Could not be delivered (kept for the operator's retry).
        Failed = "failed",
    }
);

/// A device's desired config, its push state and its reported config. `desired` and
/// `reported` are JSON written and read by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConfigRecord {
    pub device_id: String,
    /// 0 while none was set.
    pub desired_version: i64,
    pub desired: Option<String>,
    pub desired_at_ms: Option<i64>,
    #[sqlx(try_from = "String")]
    pub push_status: ConfigPushStatus,
    pub push_attempts: i64,
    pub push_error: Option<String>,
    pub pushed_at_ms: Option<i64>,
    pub reported_version: Option<i64>,
    pub reported: Option<String>,
    pub reported_cause: Option<String>,
    pub reported_at_ms: Option<i64>,
}

/// What the device reported (`reported_config` uplink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedConfigUpdate {
    pub applied_version: i64,
    /// `applied`, `rejected`, `local_change`, `boot`.
    pub cause: String,
    pub config: String,
    pub at_ms: i64,
}

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

/// Heartbeats, presence and configuration of devices.
#[async_trait]
pub trait DeviceOpsStore: Send + Sync {
    /// Stores a heartbeat and keeps only the newest `keep` of the device's heartbeats.
    async fn record_heartbeat(&self, heartbeat: NewHeartbeat, keep: u32) -> StoreResult<()>;
    /// The device's newest heartbeats, newest first.
    async fn heartbeats(&self, device_id: &str, limit: u32) -> StoreResult<Vec<HeartbeatRecord>>;
    /// The newest heartbeat of each of `device_ids` that has one.
    async fn latest_heartbeats(&self, device_ids: &[String]) -> StoreResult<Vec<HeartbeatRecord>>;

    /// Records a presence change (replacing the previous one).
    async fn record_presence(&self, presence: PresenceRecord) -> StoreResult<()>;
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
    /// Devices whose desired config push is due (`pending`), up to `limit`.
    async fn pending_config_pushes(&self, limit: u32) -> StoreResult<Vec<ConfigRecord>>;

    /// Stores a new command (its id is made here).
    async fn create_command(&self, new: NewCommand) -> StoreResult<CommandRecord>;
    /// `NotFound` unless the command exists and belongs to `device_id`.
    async fn get_command(&self, device_id: &str, command_id: &str) -> StoreResult<CommandRecord>;
    /// The device's commands, oldest first, by keyset page.
    async fn list_commands(
        &self,
        device_id: &str,
        page: &crate::PageRequest,
    ) -> StoreResult<crate::Page<CommandRecord>>;
    /// Queued, unexpired commands (of one device, or all), oldest first.
    async fn due_commands(
        &self,
        device_id: Option<&str>,
        now_ms: i64,
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
    /// Records the QR made for a request (status `shown`). If the request already has one
    /// (a race between two copies), that one is returned and `false`.
    async fn record_qr_request(
        &self,
        record: QrRequestRecord,
    ) -> StoreResult<(QrRequestRecord, bool)>;
    /// Shown QRs whose transaction is no longer pending, with the transaction's status.
    async fn qr_requests_to_close(&self, limit: u32)
    -> StoreResult<Vec<(QrRequestRecord, String)>>;
    /// Marks a shown QR closed.
    async fn close_qr_request(
        &self,
        device_id: &str,
        request_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<()>;

    /// For each of `device_ids` with any: how many of its announcements failed (status
    /// `failed`) among those expiring after `since_ms`.
    async fn failed_announcement_counts(
        &self,
        device_ids: &[String],
        since_ms: i64,
    ) -> StoreResult<Vec<(String, i64)>>;
}
