//! Device operations: health, heartbeats, presence, desired and reported config, the message
//! trace and commands.

use gema_gateway::device_ops::{self as ops, ConfigState, HealthReason, HealthSummary};
use gema_store as store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::timestamps::instant;
use crate::extract::double_option;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Online,
    Degraded,
    Offline,
}

impl From<ops::HealthStatus> for HealthStatus {
    fn from(s: ops::HealthStatus) -> Self {
        match s {
            ops::HealthStatus::Online => HealthStatus::Online,
            ops::HealthStatus::Degraded => HealthStatus::Degraded,
            ops::HealthStatus::Offline => HealthStatus::Offline,
        }
    }
}

impl From<HealthStatus> for ops::HealthStatus {
    fn from(s: HealthStatus) -> Self {
        match s {
            HealthStatus::Online => ops::HealthStatus::Online,
            HealthStatus::Degraded => ops::HealthStatus::Degraded,
            HealthStatus::Offline => ops::HealthStatus::Offline,
        }
    }
}

/// Why a device is not simply online.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReasonView {
    /// `never_seen`, `disconnected`, `no_heartbeat`, `stale_heartbeat`, `low_battery`,
    /// `weak_signal`, `config_drift`, `config_push_failed`, `failed_deliveries`.
    pub code: &'static str,
    pub message: String,
}

impl From<&HealthReason> for HealthReasonView {
    fn from(r: &HealthReason) -> Self {
        HealthReasonView {
            code: r.code(),
            message: r.message(),
        }
    }
}

/// A device's health now.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthSummaryView {
    pub status: HealthStatus,
    /// 0 ..= 100; 0 when offline.
    pub score: u8,
    /// Whether the device has a live MQTT session.
    pub connected: bool,
    /// Seconds since the newest heartbeat was received.
    pub heartbeat_age_secs: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_heartbeat_at: Option<OffsetDateTime>,
    pub reasons: Vec<HealthReasonView>,
}

impl From<&HealthSummary> for HealthSummaryView {
    fn from(h: &HealthSummary) -> Self {
        HealthSummaryView {
            status: h.status.into(),
            score: h.score,
            connected: h.connected,
            heartbeat_age_secs: h.heartbeat_age_ms.map(|ms| ms / 1000),
            last_heartbeat_at: h.last_heartbeat_at_ms.map(instant),
            reasons: h.reasons.iter().map(Into::into).collect(),
        }
    }
}

/// Filter for the device list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HealthQuery {
    /// Only devices with this health status. The page is filled by scanning further (at
    /// most 20 registry pages per request), so a page may hold fewer than `limit` devices
    /// while `next_cursor` is set.
    pub health: Option<HealthStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatView {
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub battery_pct: Option<i64>,
    pub charging: bool,
    pub signal_dbm: Option<i64>,
    /// `wifi`, `2g`, `3g`, `4g`, `ethernet`, `unknown`.
    pub network: String,
    pub firmware_version: String,
    pub audio_pack_version: String,
    pub uptime_secs: i64,
    pub last_transaction_id: Option<String>,
    /// The config version the device says it applied.
    pub config_version: i64,
}

impl From<store::HeartbeatRecord> for HeartbeatView {
    fn from(h: store::HeartbeatRecord) -> Self {
        HeartbeatView {
            received_at: instant(h.received_at_ms),
            battery_pct: h.battery_pct,
            charging: h.charging,
            signal_dbm: h.signal_dbm,
            network: h.network,
            firmware_version: h.firmware_version,
            audio_pack_version: h.audio_pack_version,
            uptime_secs: h.uptime_s,
            last_transaction_id: h.last_transaction_id,
            config_version: h.config_version,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PresenceView {
    pub connected: bool,
    /// The broker's reason for the last disconnect.
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub changed_at: OffsetDateTime,
}

impl From<store::PresenceRecord> for PresenceView {
    fn from(p: store::PresenceRecord) -> Self {
        PresenceView {
            connected: p.connected,
            reason: p.reason,
            changed_at: instant(p.changed_at_ms),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    Id,
    En,
}

impl From<gema_firmware_protocol::Language> for Language {
    fn from(l: gema_firmware_protocol::Language) -> Self {
        match l {
            gema_firmware_protocol::Language::Id => Language::Id,
            gema_firmware_protocol::Language::En => Language::En,
        }
    }
}

impl From<Language> for gema_firmware_protocol::Language {
    fn from(l: Language) -> Self {
        match l {
            Language::Id => gema_firmware_protocol::Language::Id,
            Language::En => gema_firmware_protocol::Language::En,
        }
    }
}

/// A daily window (device-local time) with a lower volume.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursView {
    /// Minutes after local midnight, 0..1440.
    pub start_minute: u16,
    /// Minutes after local midnight, 0..1440, not equal to `start_minute`.
    pub end_minute: u16,
    /// WIB 420, WITA 480, WIT 540.
    pub utc_offset_minutes: i16,
    /// 0 ..= 10.
    pub volume: u8,
}

/// The settings Gema can change on a device.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceConfigView {
    /// 0 (mute) ..= 10.
    pub volume: u8,
    pub language: Language,
    /// 10 ..= 3600.
    pub heartbeat_interval_s: u32,
    /// 30 ..= 3600.
    pub qr_timeout_s: u32,
    pub quiet_hours: Option<QuietHoursView>,
}

impl From<&gema_firmware_protocol::DeviceConfig> for DeviceConfigView {
    fn from(c: &gema_firmware_protocol::DeviceConfig) -> Self {
        DeviceConfigView {
            volume: c.volume,
            language: c.language.into(),
            heartbeat_interval_s: c.heartbeat_interval_s,
            qr_timeout_s: c.qr_timeout_s,
            quiet_hours: c.quiet_hours.as_ref().map(|q| QuietHoursView {
                start_minute: q.start_minute,
                end_minute: q.end_minute,
                utc_offset_minutes: q.utc_offset_minutes,
                volume: q.volume,
            }),
        }
    }
}

/// Desired config (what Gema wants), reported config (what the device runs) and the push.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigView {
    /// Send this back as `version` when you PATCH; 0 while none was set (then `desired`
    /// shows the defaults).
    pub version: i64,
    pub desired: DeviceConfigView,
    #[serde(with = "time::serde::rfc3339::option")]
    pub desired_at: Option<OffsetDateTime>,
    /// `none`, `pending` (waiting to be sent, e.g. device offline), `sent` (waiting for the
    /// device's report), `applied`, `rejected`, `failed`.
    pub push_status: &'static str,
    pub push_attempts: i64,
    pub push_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub pushed_at: Option<OffsetDateTime>,
    /// The version the device last reported applied.
    pub reported_version: Option<i64>,
    pub reported: Option<DeviceConfigView>,
    /// `applied`, `rejected`, `local_change` (e.g. a volume button), `boot`.
    pub reported_cause: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub reported_at: Option<OffsetDateTime>,
    /// `unknown`, `in_sync`, `pending`, `drift` (reported ≠ desired).
    pub sync: &'static str,
    /// True when the device runs something other than the desired config.
    pub drift: bool,
}

impl From<ConfigState> for ConfigView {
    fn from(c: ConfigState) -> Self {
        ConfigView {
            version: c.desired_version,
            desired: (&c.desired).into(),
            desired_at: c.desired_at_ms.map(instant),
            push_status: c.push_status.as_str(),
            push_attempts: c.push_attempts,
            push_error: c.push_error,
            pushed_at: c.pushed_at_ms.map(instant),
            reported_version: c.reported_version,
            reported: c.reported.as_ref().map(Into::into),
            reported_cause: c.reported_cause,
            reported_at: c.reported_at_ms.map(instant),
            sync: c.sync.as_str(),
            drift: c.sync == ops::ConfigSync::Drift,
        }
    }
}

/// A change to the desired config. Absent fields keep their value; `quiet_hours: null`
/// removes quiet hours.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// The `version` you read; a stale one is answered 409 `stale_version`.
    pub version: i64,
    pub volume: Option<u8>,
    pub language: Option<Language>,
    pub heartbeat_interval_s: Option<u32>,
    pub qr_timeout_s: Option<u32>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<QuietHoursView>)]
    pub quiet_hours: Option<Option<QuietHoursView>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceStatusView {
    pub device_id: String,
    pub health: HealthSummaryView,
    pub presence: Option<PresenceView>,
    pub last_heartbeat: Option<HeartbeatView>,
    pub config: ConfigView,
}

/// One traced MQTT message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `up` (device → Gema) or `down`.
    pub direction: &'static str,
    pub topic: String,
    /// Payload size in bytes.
    pub size: usize,
    /// The decoded message in one line, or why it could not be decoded.
    pub summary: String,
    /// Downlinks: `acknowledged` (MQTT PUBACK), `offline`, `not_subscribed`, `failed: …`.
    pub outcome: Option<String>,
}

impl From<ops::TraceEntry> for MessageView {
    fn from(m: ops::TraceEntry) -> Self {
        MessageView {
            at: instant(m.at_ms),
            direction: m.direction,
            topic: m.topic,
            size: m.size,
            summary: m.summary,
            outcome: m.outcome,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// 1 ..= the configured history length (default 20).
    pub limit: Option<u32>,
}

/// Where to fetch a firmware image or audio pack, and how the device checks it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageArgs {
    /// `https://…` (or `http://` on a private network; integrity comes from `sha256`).
    pub url: String,
    /// Lower-case hex SHA-256 of the whole image (64 characters).
    pub sha256: String,
    /// The version the image reports once installed.
    pub version: String,
    /// Image size in bytes.
    pub size: u64,
}

/// The command and its arguments: `{"name": "set_volume", "args": {"volume": 7}}`,
/// `{"name": "reboot"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "name", content = "args", rename_all = "snake_case")]
pub enum CommandActionView {
    /// 0 ..= 10.
    SetVolume {
        volume: u8,
    },
    Reboot,
    /// Speak the last `count` (1 ..= 10) announcements again.
    ReplayLast {
        count: u8,
    },
    AnnounceDailySummary,
    /// The device answers with a heartbeat now.
    GetStatus,
    FwUpdate(ImageArgs),
    AudioUpdate(ImageArgs),
}

fn image_to_wire(i: ImageArgs) -> gema_firmware_protocol::ImageUpdate {
    gema_firmware_protocol::ImageUpdate {
        url: i.url,
        sha256: i.sha256,
        version: i.version,
        size: i.size,
    }
}

fn image_from_wire(i: gema_firmware_protocol::ImageUpdate) -> ImageArgs {
    ImageArgs {
        url: i.url,
        sha256: i.sha256,
        version: i.version,
        size: i.size,
    }
}

impl From<CommandActionView> for gema_firmware_protocol::CommandAction {
    fn from(a: CommandActionView) -> Self {
        use gema_firmware_protocol::CommandAction as W;
        match a {
            CommandActionView::SetVolume { volume } => W::SetVolume { volume },
            CommandActionView::Reboot => W::Reboot,
            CommandActionView::ReplayLast { count } => W::ReplayLast { count },
            CommandActionView::AnnounceDailySummary => W::AnnounceDailySummary,
            CommandActionView::GetStatus => W::GetStatus,
            CommandActionView::FwUpdate(i) => W::FwUpdate(image_to_wire(i)),
            CommandActionView::AudioUpdate(i) => W::AudioUpdate(image_to_wire(i)),
        }
    }
}

impl From<gema_firmware_protocol::CommandAction> for CommandActionView {
    fn from(a: gema_firmware_protocol::CommandAction) -> Self {
        use gema_firmware_protocol::CommandAction as W;
        match a {
            W::SetVolume { volume } => CommandActionView::SetVolume { volume },
            W::Reboot => CommandActionView::Reboot,
            W::ReplayLast { count } => CommandActionView::ReplayLast { count },
            W::AnnounceDailySummary => CommandActionView::AnnounceDailySummary,
            W::GetStatus => CommandActionView::GetStatus,
            W::FwUpdate(i) => CommandActionView::FwUpdate(image_from_wire(i)),
            W::AudioUpdate(i) => CommandActionView::AudioUpdate(image_from_wire(i)),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCommand {
    pub action: CommandActionView,
    /// Do not run after this many seconds from now (default and maximum from
    /// `[devices]`). A command for an offline device waits until then.
    pub expires_in_secs: Option<u64>,
    /// Fail at once when the device is offline, instead of waiting.
    #[serde(default)]
    pub interactive: bool,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatusView {
    Queued,
    Sent,
    Acknowledged,
    Succeeded,
    Failed,
    TimedOut,
    Expired,
}

impl From<store::CommandStatus> for CommandStatusView {
    fn from(s: store::CommandStatus) -> Self {
        use store::CommandStatus as S;
        match s {
            S::Queued => CommandStatusView::Queued,
            S::Sent => CommandStatusView::Sent,
            S::Acknowledged => CommandStatusView::Acknowledged,
            S::Succeeded => CommandStatusView::Succeeded,
            S::Failed => CommandStatusView::Failed,
            S::TimedOut => CommandStatusView::TimedOut,
            S::Expired => CommandStatusView::Expired,
        }
    }
}

/// A command and where it stands: `queued → sent → acknowledged → succeeded | failed`, or
/// `expired` (not delivered in time, or the device got it too late), or `timed_out`
/// (delivered, no final result in time).
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandView {
    pub id: String,
    pub device_id: String,
    pub action: Option<CommandActionView>,
    pub interactive: bool,
    pub status: CommandStatusView,
    /// Delivery attempts (MQTT publishes).
    pub attempts: i64,
    /// What the device answered (`{"volume": "7"}`); empty when it said nothing.
    pub result: std::collections::BTreeMap<String, String>,
    pub message: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub acknowledged_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
}

impl From<store::CommandRecord> for CommandView {
    fn from(c: store::CommandRecord) -> Self {
        CommandView {
            action: serde_json::from_str::<gema_firmware_protocol::CommandAction>(&c.action)
                .ok()
                .map(Into::into),
            result: c
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or_default(),
            id: c.id,
            device_id: c.device_id,
            interactive: c.interactive,
            status: c.status.into(),
            attempts: c.attempts,
            message: c.message,
            created_at: instant(c.created_at_ms),
            expires_at: instant(c.expires_at_ms),
            sent_at: c.sent_at_ms.map(instant),
            acknowledged_at: c.acknowledged_at_ms.map(instant),
            completed_at: c.completed_at_ms.map(instant),
        }
    }
}
