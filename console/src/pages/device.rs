//! One device: who it is, its health and presence (live, from the same stream as the
//! registry), battery and signal, the heartbeat history as a chart drawn here as SVG,
//! desired against reported config with a push-again button, its commands and a form to send
//! one (the commands and arguments the API's `POST /devices/{id}/commands` takes), the message
//! trace, binding, and its credential: rotate (the new secret shown once, in the POST's own
//! answer, never behind a GET that could show it again) and revoke (after a confirm page).
//!
//! A merchant user sees only devices bound to their own terminals (else the 404 page).

use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_admin_api::authz::{Scope, owns};
use gema_firmware_protocol::{
    CommandAction, DeviceConfig, ImageUpdate, Language, ProvisioningString,
};
use gema_gateway::GatewayError;
use gema_gateway::auth::Action;
use gema_gateway::device_ops::{CommandInput, ConfigState};
use gema_store::{
    CommandRecord, CommandStatus, ConfigPushStatus, CredentialStatus, HeartbeatRecord, PageRequest,
};
use serde::Deserialize;

use crate::frame::{Chrome, ErrorPage, html};
use crate::pages::devices::health_text;
use crate::session::{Posted, Session, see_other};

/// Heartbeats drawn in the chart (the store keeps at most `devices.heartbeat_history`).
const CHART_HEARTBEATS: u32 = 60;
/// Commands per page of the device's command list.
const COMMANDS_PAGE: u32 = 20;

#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    /// The command list's cursor.
    #[serde(default)]
    commands_after: Option<String>,
    /// What the last form did, for the notice (post/redirect/get).
    #[serde(default)]
    done: Option<String>,
    /// The command just sent, whose state the page shows at the top.
    #[serde(default)]
    command: Option<String>,
}

/// One line of the config comparison: the setting, desired, reported, and whether they
/// differ.
#[derive(Debug)]
pub struct ConfigLine {
    pub label: &'static str,
    pub desired: String,
    pub reported: Option<String>,
    pub differs: bool,
}

#[derive(Debug)]
pub struct CommandLine {
    pub id: String,
    /// The status's value (`data-status`): `queued`, `sent`, …
    pub state: &'static str,
    pub name: String,
    pub status: &'static str,
    pub status_text: &'static str,
    pub attempts: i64,
    pub message: String,
    pub created_ms: i64,
    pub completed_ms: Option<i64>,
}

#[derive(Debug)]
pub struct TraceLine {
    pub at_ms: i64,
    pub direction: &'static str,
    pub topic: String,
    pub size: usize,
    pub summary: String,
    pub outcome: String,
}

#[derive(Debug)]
pub struct HeartbeatLine {
    pub at_ms: i64,
    pub battery: Option<i64>,
    pub charging: bool,
    pub signal: Option<i64>,
    pub network: String,
}

/// The heartbeat chart: polyline points in a 600 × 160 box (battery 0–100 %, signal
/// −120…−30 dBm, both top = best), and the time span it covers.
#[derive(Debug, Default)]
pub struct Chart {
    pub battery: String,
    pub signal: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub points: usize,
}

/// The chart's box, in SVG user units (integers: the workspace keeps floats out).
pub const CHART_W: i64 = 600;
pub const CHART_H: i64 = 160;

impl Chart {
    /// `beats` newest first, as the store gives them.
    pub fn of(beats: &[HeartbeatRecord]) -> Chart {
        let (Some(newest), Some(oldest)) = (beats.first(), beats.last()) else {
            return Chart::default();
        };
        let (from, to) = (oldest.received_at_ms, newest.received_at_ms);
        let span = (to - from).max(1);
        let x = |ms: i64| {
            if beats.len() == 1 {
                CHART_W / 2
            } else {
                (ms - from).clamp(0, span) * CHART_W / span
            }
        };
        // `value` within `0..=range`, top = `range`.
        let y = |value: i64, range: i64| CHART_H - value.clamp(0, range) * CHART_H / range;
        let mut battery = Vec::new();
        let mut signal = Vec::new();
        for beat in beats.iter().rev() {
            let at = x(beat.received_at_ms);
            if let Some(pct) = beat.battery_pct {
                battery.push(format!("{at},{}", y(pct, 100)));
            }
            if let Some(dbm) = beat.signal_dbm {
                signal.push(format!("{at},{}", y(dbm + 120, 90)));
            }
        }
        Chart {
            battery: battery.join(" "),
            signal: signal.join(" "),
            from_ms: from,
            to_ms: to,
            points: beats.len(),
        }
    }
}

/// The device's identity.
#[derive(Debug)]
pub struct Identity {
    pub id: String,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    pub active: bool,
    pub terminal: Option<String>,
    pub credential_revoked: bool,
    pub credential_issued: time::OffsetDateTime,
    pub last_auth: Option<&'static str>,
    pub created: time::OffsetDateTime,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DeviceView {
    chrome: Chrome,
    device: Identity,
    state: &'static str,
    state_text: &'static str,
    reasons: String,
    connected: bool,
    score: u8,
    last_heartbeat_ms: Option<i64>,
    presence_changed_ms: Option<i64>,
    disconnect_reason: Option<String>,
    battery: Option<i64>,
    charging: bool,
    signal: Option<i64>,
    network: String,
    chart: Chart,
    heartbeats: Vec<HeartbeatLine>,
    config_version: i64,
    config: Vec<ConfigLine>,
    sync: &'static str,
    sync_text: &'static str,
    push_status: &'static str,
    push_attempts: i64,
    push_error: Option<String>,
    pushed_ms: Option<i64>,
    reported_ms: Option<i64>,
    reported_cause: Option<String>,
    commands: Vec<CommandLine>,
    commands_next: Option<String>,
    commands_first: bool,
    /// The command just sent (`?command=`), as it stands now.
    sent: Option<CommandLine>,
    /// The command form's choices: value and text.
    command_names: Vec<(&'static str, &'static str)>,
    may_command: bool,
    /// `None` when the role may not read the trace.
    trace: Option<Vec<TraceLine>>,
    may_configure: bool,
    may_bind: bool,
    may_credentials: bool,
    notice: Option<&'static str>,
}

fn language(l: Language) -> &'static str {
    match l {
        Language::Id => "Bahasa Indonesia",
        Language::En => "English",
    }
}

fn quiet_hours(c: &DeviceConfig, none: &str) -> String {
    match &c.quiet_hours {
        Some(q) => format!(
            "{:02}:{:02}–{:02}:{:02} (UTC{:+}:{:02}), {}",
            q.start_minute / 60,
            q.start_minute % 60,
            q.end_minute / 60,
            q.end_minute % 60,
            q.utc_offset_minutes / 60,
            (q.utc_offset_minutes % 60).abs(),
            q.volume
        ),
        None => none.to_owned(),
    }
}

fn config_lines(config: &ConfigState, chrome: &Chrome) -> Vec<ConfigLine> {
    let none = chrome.t("device.none");
    type Field = fn(&DeviceConfig, &str) -> String;
    let fields: [(&str, Field); 5] = [
        ("device.volume", |c, _| c.volume.to_string()),
        ("device.language", |c, _| language(c.language).to_owned()),
        ("device.heartbeat_interval", |c, _| {
            format!("{} s", c.heartbeat_interval_s)
        }),
        ("device.qr_timeout", |c, _| format!("{} s", c.qr_timeout_s)),
        ("device.quiet_hours", quiet_hours),
    ];
    fields
        .iter()
        .map(|(key, show)| {
            let desired = show(&config.desired, none);
            let reported = config.reported.as_ref().map(|r| show(r, none));
            ConfigLine {
                label: chrome.t(key),
                differs: reported.as_ref().is_some_and(|r| *r != desired),
                desired,
                reported,
            }
        })
        .collect()
}

pub fn command_text(status: CommandStatus) -> &'static str {
    match status {
        CommandStatus::Queued => "command.queued",
        CommandStatus::Sent => "command.sent",
        CommandStatus::Acknowledged => "command.acknowledged",
        CommandStatus::Succeeded => "command.succeeded",
        CommandStatus::Failed => "command.failed",
        CommandStatus::TimedOut => "command.timed_out",
        CommandStatus::Expired => "command.expired",
    }
}

/// The badge class of a command's status.
fn command_class(status: CommandStatus) -> &'static str {
    match status {
        CommandStatus::Succeeded => "ok",
        CommandStatus::Failed | CommandStatus::TimedOut | CommandStatus::Expired => "bad",
        _ => "warn",
    }
}

fn command_line(c: CommandRecord, chrome: &Chrome) -> CommandLine {
    CommandLine {
        id: c.id,
        state: c.status.as_str(),
        name: c.name,
        status: command_class(c.status),
        status_text: chrome.t(command_text(c.status)),
        attempts: c.attempts,
        message: c.message.unwrap_or_default(),
        created_ms: c.created_at_ms,
        completed_ms: c.completed_at_ms,
    }
}

fn sync_text(sync: &str) -> &'static str {
    match sync {
        "in_sync" => "sync.in_sync",
        "pending" => "sync.pending",
        "drift" => "sync.drift",
        _ => "sync.unknown",
    }
}

/// The notice for `?done=…` after a form, if it is one we know.
fn notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "pushed" => Some("device.pushed"),
        "bound" => Some("device.bound"),
        "unbound" => Some("device.unbound_done"),
        "revoked" => Some("device.revoked_done"),
        "command" => Some("command.sent_done"),
        _ => None,
    }
}

/// The device's page, after the matrix and the merchant scope said yes.
async fn detail(
    state: &AppState,
    session: &Session,
    id: &str,
    q: DetailQuery,
) -> Result<Response, ErrorPage> {
    let fail = |e| session.failed(e);
    let device = state.registry.device(id).await.map_err(fail)?;
    let status = state.device_ops.status(id).await.map_err(fail)?;
    let beats = state
        .device_ops
        .heartbeats(id, CHART_HEARTBEATS)
        .await
        .map_err(fail)?;
    let commands_after = q.commands_after.filter(|a| !a.is_empty());
    let commands = state
        .device_ops
        .commands(
            id,
            &PageRequest {
                after: commands_after.clone(),
                limit: COMMANDS_PAGE,
            },
        )
        .await
        .map_err(fail)?;
    let sent = match q.command.as_deref().filter(|c| !c.is_empty()) {
        Some(command) => Some(state.device_ops.command(id, command).await.map_err(fail)?),
        None => None,
    };
    let chrome = session.chrome();
    let trace = session.may(Action::DeviceDiagnostics).then(|| {
        state
            .device_ops
            .messages(id)
            .into_iter()
            .map(|m| TraceLine {
                at_ms: m.at_ms,
                direction: m.direction,
                topic: m.topic,
                size: m.size,
                summary: m.summary,
                outcome: m.outcome.unwrap_or_default(),
            })
            .collect()
    });
    let health = &status.health;
    let newest = status.heartbeat.as_ref();
    let config = &status.config;
    let view = DeviceView {
        device: Identity {
            id: device.id.clone(),
            serial: device.serial,
            model: device.model,
            firmware: device.firmware_version.unwrap_or_default(),
            active: device.status == gema_store::DeviceStatus::Active,
            terminal: device.terminal_id,
            credential_revoked: device.credential.status == CredentialStatus::Revoked,
            credential_issued: device.credential.issued_at,
            last_auth: device.last_auth.map(|a| a.as_str()),
            created: device.created_at,
        },
        state: health.status.as_str(),
        state_text: chrome.t(health_text(health.status)),
        reasons: super::devices::health_reasons(chrome.lang, &health.reasons),
        connected: health.connected,
        score: health.score,
        last_heartbeat_ms: health.last_heartbeat_at_ms,
        presence_changed_ms: status.presence.as_ref().map(|p| p.changed_at_ms),
        disconnect_reason: status.presence.as_ref().and_then(|p| p.reason.clone()),
        battery: newest.and_then(|h| h.battery_pct),
        charging: newest.is_some_and(|h| h.charging),
        signal: newest.and_then(|h| h.signal_dbm),
        network: newest.map(|h| h.network.clone()).unwrap_or_default(),
        chart: Chart::of(&beats),
        heartbeats: beats
            .iter()
            .map(|h| HeartbeatLine {
                at_ms: h.received_at_ms,
                battery: h.battery_pct,
                charging: h.charging,
                signal: h.signal_dbm,
                network: h.network.clone(),
            })
            .collect(),
        config_version: config.desired_version,
        config: config_lines(config, &chrome),
        sync: config.sync.as_str(),
        sync_text: chrome.t(sync_text(config.sync.as_str())),
        push_status: chrome.t(match config.push_status {
            ConfigPushStatus::None => "push.none",
            ConfigPushStatus::Pending => "push.pending",
            ConfigPushStatus::Sent => "push.sent",
            ConfigPushStatus::Applied => "push.applied",
            ConfigPushStatus::Rejected => "push.rejected",
            ConfigPushStatus::Failed => "push.failed",
        }),
        push_attempts: config.push_attempts,
        push_error: config.push_error.clone(),
        pushed_ms: config.pushed_at_ms,
        reported_ms: config.reported_at_ms,
        reported_cause: config.reported_cause.clone(),
        commands: commands
            .items
            .into_iter()
            .map(|c| command_line(c, &chrome))
            .collect(),
        commands_next: commands
            .next_after
            .map(|after| format!("/devices/{id}?commands_after={after}#commands")),
        commands_first: commands_after.is_none(),
        sent: sent.map(|c| command_line(c, &chrome)),
        command_names: COMMAND_NAMES
            .iter()
            .map(|(value, key)| (*value, chrome.t(key)))
            .collect(),
        may_command: session.may(Action::DeviceCommand),
        trace,
        may_configure: session.may(Action::DeviceConfigure),
        may_bind: session.may(Action::DeviceBind),
        may_credentials: session.may(Action::DeviceCredentials),
        notice: notice(q.done.as_deref()),
        chrome,
    };
    Ok(html(StatusCode::OK, &view))
}

/// `GET /devices/{id}`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::DeviceRead)?;
    owns(&state, &session.principal, Scope::Device, &id)
        .await
        .map_err(|e| session.failed(e))?;
    detail(&state, &session, &id, q).await
}

/// The matrix, then the merchant scope, for a form about device `id`.
async fn allowed(
    state: &AppState,
    session: &Session,
    action: Action,
    id: &str,
) -> Result<(), ErrorPage> {
    session.require(action)?;
    owns(state, &session.principal, Scope::Device, id)
        .await
        .map_err(|e| session.failed(e))
}

/// A form with no fields but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Confirm {}

/// `POST /devices/{id}/config/push`: send the desired config again.
pub async fn push_config(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, Confirm {}): Posted<Confirm>,
) -> Result<Response, ErrorPage> {
    allowed(&state, &session, Action::DeviceConfigure, &id).await?;
    session
        .audited(
            &state,
            Action::DeviceConfigure,
            format!("device:{id}"),
            state.device_ops.retry_config_push(&id),
            |c| serde_json::json!({ "push_status": c.push_status.as_str(), "version": c.desired_version }),
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/devices/{id}?done=pushed")))
}

#[derive(Debug, Deserialize)]
pub struct BindForm {
    terminal_id: String,
}

/// `POST /devices/{id}/bind`.
pub async fn bind(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<BindForm>,
) -> Result<Response, ErrorPage> {
    allowed(&state, &session, Action::DeviceBind, &id).await?;
    let terminal = form.terminal_id.trim().to_owned();
    session
        .audited(
            &state,
            Action::DeviceBind,
            format!("device:{id}"),
            state.registry.bind_device(&id, &terminal),
            |d| serde_json::json!({ "terminal_id": d.terminal_id }),
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/devices/{id}?done=bound")))
}

/// The commands a device takes, as the API names them: value and text key.
pub const COMMAND_NAMES: [(&str, &str); 7] = [
    ("get_status", "command.name.get_status"),
    ("set_volume", "command.name.set_volume"),
    ("replay_last", "command.name.replay_last"),
    (
        "announce_daily_summary",
        "command.name.announce_daily_summary",
    ),
    ("reboot", "command.name.reboot"),
    ("fw_update", "command.name.fw_update"),
    ("audio_update", "command.name.audio_update"),
];

/// The command form: the command's name and the arguments it takes (the others are left
/// empty and ignored).
#[derive(Debug, Default, Deserialize)]
pub struct CommandForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    volume: String,
    #[serde(default)]
    count: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    sha256: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    size: String,
    #[serde(default)]
    expires_in_secs: String,
    /// A checkbox: present to fail at once when the device is offline.
    #[serde(default)]
    interactive: Option<String>,
}

/// `text` as a number for `field`; a bad one names the field.
fn number<T: std::str::FromStr>(field: &'static str, text: &str) -> Result<T, GatewayError> {
    text.trim()
        .parse()
        .map_err(|_| GatewayError::invalid(field, format!("a whole number, not {text:?}")))
}

impl CommandForm {
    /// The command the form asks for, as the API's `CreateCommand` would carry it; the
    /// gateway checks the ranges (volume 0–10, count 1–10, the image's URL and digest).
    pub fn input(&self) -> Result<CommandInput, GatewayError> {
        let image = || -> Result<ImageUpdate, GatewayError> {
            Ok(ImageUpdate {
                url: self.url.trim().to_owned(),
                sha256: self.sha256.trim().to_owned(),
                version: self.version.trim().to_owned(),
                size: number("size", &self.size)?,
            })
        };
        let action = match self.name.as_str() {
            "set_volume" => CommandAction::SetVolume {
                volume: number("volume", &self.volume)?,
            },
            "reboot" => CommandAction::Reboot,
            "replay_last" => CommandAction::ReplayLast {
                count: number("count", &self.count)?,
            },
            "announce_daily_summary" => CommandAction::AnnounceDailySummary,
            "get_status" => CommandAction::GetStatus,
            "fw_update" => CommandAction::FwUpdate(image()?),
            "audio_update" => CommandAction::AudioUpdate(image()?),
            _ => {
                return Err(GatewayError::invalid(
                    "name",
                    "one of get_status, set_volume, replay_last, announce_daily_summary, \
                     reboot, fw_update, audio_update",
                ));
            }
        };
        let expires_in = match self.expires_in_secs.trim() {
            "" => None,
            secs => Some(Duration::from_secs(number("expires_in_secs", secs)?)),
        };
        Ok(CommandInput {
            action,
            expires_in,
            interactive: self.interactive.is_some(),
        })
    }
}

/// `POST /devices/{id}/commands`: queue a command (sent at once when the device is
/// connected), audited; then the device's page showing where it stands.
pub async fn send_command(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<CommandForm>,
) -> Result<Response, ErrorPage> {
    allowed(&state, &session, Action::DeviceCommand, &id).await?;
    let input = form.input().map_err(|e| session.failed(e))?;
    let command = session
        .audited(
            &state,
            Action::DeviceCommand,
            format!("device:{id}"),
            state.device_ops.send_command(&id, input),
            |c| serde_json::json!({ "command_id": c.id, "name": c.name, "status": c.status.as_str() }),
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!(
        "/devices/{id}?done=command&command={}#commands",
        command.id
    )))
}

#[derive(Debug, Deserialize)]
pub struct UnbindForm {
    /// A checkbox: present (`on`) to also end the device's MQTT session.
    #[serde(default)]
    kick: Option<String>,
}

/// `POST /devices/{id}/unbind`.
pub async fn unbind(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<UnbindForm>,
) -> Result<Response, ErrorPage> {
    allowed(&state, &session, Action::DeviceBind, &id).await?;
    let kick = form.kick.is_some();
    session
        .audited(
            &state,
            Action::DeviceBind,
            format!("device:{id}"),
            state.registry.unbind_device(&id, kick),
            |_| serde_json::json!({ "terminal_id": null, "kick": kick }),
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/devices/{id}?done=unbound")))
}

#[derive(Template)]
#[template(path = "device_secret.html")]
struct SecretView {
    chrome: Chrome,
    id: String,
    serial: String,
    secret: String,
    host: String,
    port: u16,
    /// The provisioning string, when the credentials make one (a broker CA is known).
    provisioning: Option<String>,
    /// Its QR code as inline SVG (drawn by us from the string; no user text in it).
    qr: Option<String>,
}

/// SHA-256 of the DER of the first certificate in `pem`: the `ca` field of the
/// provisioning string (as `gema device rotate --qr` writes it).
fn ca_fingerprint(pem: &str) -> Option<[u8; 32]> {
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .and_then(Result::ok)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Some(out)
}

/// `POST /devices/{id}/rotate`: a new secret, shown in this answer only. There is no GET
/// that shows it: reloading the device's page shows none, and the page is `no-store`.
pub async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, Confirm {}): Posted<Confirm>,
) -> Result<Response, ErrorPage> {
    allowed(&state, &session, Action::DeviceCredentials, &id).await?;
    let (device, issued) = session
        .audited(
            &state,
            Action::DeviceCredentials,
            format!("device:{id}"),
            state.registry.rotate_device_secret(&id),
            // Never the secret.
            |(d, _)| serde_json::json!({ "rotated": true, "credential_status": "active", "device_id": d.id }),
        )
        .await
        .map_err(|e| session.failed(e))?;
    let p = &state.provisioning;
    let secret = issued.secret.expose().to_owned();
    let provisioning = ca_fingerprint(&p.ca_certificate_pem).and_then(|ca| {
        ProvisioningString::new(&p.mqtt_host, p.mqtt_port, &issued.username, &secret, ca)
            .ok()
            .map(|s| s.to_string())
    });
    let chrome = session.chrome();
    let qr = provisioning
        .as_deref()
        .and_then(|s| gema_admin_api::views::qr::svg(s, chrome.t("secret.qr_label")));
    Ok(html(
        StatusCode::OK,
        &SecretView {
            chrome,
            id: device.id,
            serial: device.serial,
            secret,
            host: p.mqtt_host.clone(),
            port: p.mqtt_port,
            provisioning,
            qr,
        },
    ))
}

#[derive(Template)]
#[template(path = "device_revoke.html")]
struct RevokeView {
    chrome: Chrome,
    id: String,
    serial: String,
}

/// `GET /devices/{id}/revoke`: the confirm step (a page with the form, no script).
pub async fn revoke_confirm(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, ErrorPage> {
    allowed(&state, &session, Action::DeviceCredentials, &id).await?;
    let device = state
        .registry
        .device(&id)
        .await
        .map_err(|e| session.failed(e))?;
    Ok(html(
        StatusCode::OK,
        &RevokeView {
            chrome: session.chrome(),
            id: device.id,
            serial: device.serial,
        },
    ))
}

/// `POST /devices/{id}/revoke`: the device can no longer connect until a rotate.
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, Confirm {}): Posted<Confirm>,
) -> Result<Response, ErrorPage> {
    allowed(&state, &session, Action::DeviceCredentials, &id).await?;
    session
        .audited(
            &state,
            Action::DeviceCredentials,
            format!("device:{id}"),
            state.registry.revoke_device_secret(&id),
            |_| serde_json::json!({ "credential_status": "revoked" }),
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/devices/{id}?done=revoked")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(name: &str) -> CommandForm {
        CommandForm {
            name: name.into(),
            ..CommandForm::default()
        }
    }

    #[test]
    fn the_command_form_reads_as_the_apis_command_does() {
        let volume = CommandForm {
            volume: " 7 ".into(),
            interactive: Some("on".into()),
            expires_in_secs: "60".into(),
            ..form("set_volume")
        }
        .input()
        .unwrap();
        assert_eq!(volume.action, CommandAction::SetVolume { volume: 7 });
        assert!(volume.interactive);
        assert_eq!(volume.expires_in, Some(Duration::from_secs(60)));
        let status = form("get_status").input().unwrap();
        assert_eq!(status.action, CommandAction::GetStatus);
        assert!(!status.interactive);
        assert_eq!(status.expires_in, None);
        let image = CommandForm {
            url: "https://fw.example/1.2.bin".into(),
            sha256: "ab".repeat(32),
            version: "1.2".into(),
            size: "1024".into(),
            ..form("fw_update")
        }
        .input()
        .unwrap();
        assert!(matches!(image.action, CommandAction::FwUpdate(ref i) if i.size == 1024));
        // Every name the form offers is one the form reads.
        for (name, _) in COMMAND_NAMES {
            let filled = CommandForm {
                volume: "1".into(),
                count: "1".into(),
                size: "1".into(),
                ..form(name)
            };
            assert!(filled.input().is_ok(), "{name}");
        }
    }

    #[test]
    fn a_bad_command_names_its_field() {
        let field = |f: CommandForm| match f.input() {
            Err(GatewayError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(form("self_destruct")), "name");
        assert_eq!(field(form("set_volume")), "volume");
        assert_eq!(
            field(CommandForm {
                volume: "300".into(),
                ..form("set_volume")
            }),
            "volume"
        );
        assert_eq!(field(form("replay_last")), "count");
        assert_eq!(field(form("audio_update")), "size");
        assert_eq!(
            field(CommandForm {
                expires_in_secs: "soon".into(),
                ..form("reboot")
            }),
            "expires_in_secs"
        );
    }

    fn beat(at: i64, battery: Option<i64>, signal: Option<i64>) -> HeartbeatRecord {
        HeartbeatRecord {
            id: format!("hb{at}"),
            device_id: "dev".into(),
            received_at_ms: at,
            battery_pct: battery,
            charging: false,
            signal_dbm: signal,
            network: "wifi".into(),
            firmware_version: "1".into(),
            audio_pack_version: "1".into(),
            uptime_s: 0,
            last_transaction_id: None,
            config_version: 0,
        }
    }

    #[test]
    fn the_chart_runs_oldest_to_newest_with_best_at_the_top() {
        // Newest first, as the store gives them.
        let chart = Chart::of(&[
            beat(2_000, Some(100), Some(-30)),
            beat(1_000, Some(50), None),
            beat(0, Some(0), Some(-120)),
        ]);
        assert_eq!(chart.battery, "0,160 300,80 600,0");
        assert_eq!(chart.signal, "0,160 600,0");
        assert_eq!((chart.from_ms, chart.to_ms, chart.points), (0, 2_000, 3));
        assert_eq!(Chart::of(&[]).points, 0);
        assert_eq!(Chart::of(&[beat(5, Some(100), None)]).battery, "300,0");
    }
}
