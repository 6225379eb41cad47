//! The device registry: every device with its health, filtered by health, a page at a time
//! (keyset pagination on the device id: no count, no offset). The presence column updates
//! live from [`crate::events::devices`].

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_gateway::auth::Action;
use gema_gateway::device_ops::{HealthReason, HealthStatus, HealthSummary};
use gema_store::{Device, DeviceFilter, PageRequest};
use serde::Deserialize;

use crate::frame::ErrorPage;
use crate::frame::{Chrome, html};
use crate::i18n::Lang;
use crate::session::Session;

/// Rows per page.
pub const PAGE_SIZE: u32 = 50;

#[derive(Debug, Deserialize)]
pub struct RegistryQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Debug)]
pub struct DeviceRow {
    pub id: String,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    pub terminal: Option<String>,
    /// `online`, `degraded`, `offline`: the class and the `data-state` the script updates.
    pub state: &'static str,
    pub state_text: &'static str,
    pub reasons: String,
}

/// The health filter's choices: value and text key.
pub const FILTERS: [(&str, &str); 4] = [
    ("", "health.all"),
    ("online", "health.online"),
    ("degraded", "health.degraded"),
    ("offline", "health.offline"),
];

#[derive(Template)]
#[template(path = "devices.html")]
struct RegistryView {
    chrome: Chrome,
    rows: Vec<DeviceRow>,
    filters: Vec<(&'static str, &'static str, bool)>,
    status: String,
    /// The next page's link, if there is one.
    next: Option<String>,
    first_page: bool,
    /// The ids on this page, for the live presence stream.
    ids: String,
}

pub fn health_text(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Online => "health.online",
        HealthStatus::Degraded => "health.degraded",
        HealthStatus::Offline => "health.offline",
    }
}

/// A device's health reasons in the reader's language, joined: "baterai 12%, sinyal -101 dBm".
pub fn health_reasons(lang: Lang, reasons: &[HealthReason]) -> String {
    let text = |reason: &HealthReason| match reason {
        HealthReason::NeverSeen => lang.t("reason.never_seen").to_owned(),
        HealthReason::Disconnected { reason: None } => lang.t("reason.disconnected").to_owned(),
        HealthReason::Disconnected { reason: Some(why) } => {
            format!("{} ({why})", lang.t("reason.disconnected"))
        }
        HealthReason::NoHeartbeat => lang.t("reason.no_heartbeat").to_owned(),
        HealthReason::StaleHeartbeat { age_ms } => lang
            .t("reason.stale_heartbeat")
            .replace("{}", &(age_ms / 1000).to_string()),
        HealthReason::LowBattery { pct } => {
            lang.t("reason.low_battery").replace("{}", &pct.to_string())
        }
        HealthReason::WeakSignal { dbm } => {
            lang.t("reason.weak_signal").replace("{}", &dbm.to_string())
        }
        HealthReason::ConfigDrift => lang.t("reason.config_drift").to_owned(),
        HealthReason::ConfigPushFailed => lang.t("reason.config_push_failed").to_owned(),
        HealthReason::FailedDeliveries { count } => lang
            .t("reason.failed_deliveries")
            .replace("{}", &count.to_string()),
    };
    reasons.iter().map(text).collect::<Vec<_>>().join(", ")
}

pub fn row(device: Device, health: &HealthSummary, session: &Session) -> DeviceRow {
    DeviceRow {
        id: device.id,
        serial: device.serial,
        model: device.model,
        firmware: device.firmware_version.unwrap_or_default(),
        terminal: device.terminal_id,
        state: health.status.as_str(),
        state_text: session.prefs.lang.t(health_text(health.status)),
        reasons: health_reasons(session.prefs.lang, &health.reasons),
    }
}

pub async fn registry(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<RegistryQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::DeviceList)?;
    let status_text = q.status.unwrap_or_default();
    let status = session.filter(
        "status",
        &status_text,
        HealthStatus::parse,
        "online, degraded, offline",
    )?;
    let filter = DeviceFilter {
        merchant_id: session.merchant().map(str::to_owned),
        ..DeviceFilter::default()
    };
    let page = state
        .device_ops
        .devices_with_health(
            &filter,
            &PageRequest {
                after: q.after.clone().filter(|a| !a.is_empty()),
                limit: PAGE_SIZE,
            },
            status,
        )
        .await
        .map_err(|e| session.failed(e))?;
    let rows: Vec<DeviceRow> = page
        .items
        .into_iter()
        .map(|(device, health)| row(device, &health, &session))
        .collect();
    let ids = rows
        .iter()
        .map(|r| r.id.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let lang = session.prefs.lang;
    let next = page.next_after.map(|after| {
        let mut link = format!("/devices?after={after}");
        if !status_text.is_empty() {
            link.push_str(&format!("&status={status_text}"));
        }
        link
    });
    Ok(html(
        StatusCode::OK,
        &RegistryView {
            chrome: session.chrome(),
            filters: FILTERS
                .iter()
                .map(|(value, key)| (*value, lang.t(key), *value == status_text))
                .collect(),
            rows,
            status: status_text,
            next,
            first_page: q.after.is_none_or(|a| a.is_empty()),
            ids,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reasons_read_in_the_readers_language_with_their_figures() {
        let reasons = [
            HealthReason::LowBattery { pct: 12 },
            HealthReason::WeakSignal { dbm: -101 },
            HealthReason::Disconnected {
                reason: Some("keepalive_timeout".into()),
            },
        ];
        assert_eq!(
            health_reasons(Lang::En, &reasons),
            "battery at 12%, signal at -101 dBm, disconnected (keepalive_timeout)"
        );
        assert_eq!(
            health_reasons(Lang::Id, &reasons),
            "baterai 12%, sinyal -101 dBm, terputus (keepalive_timeout)"
        );
        assert_eq!(health_reasons(Lang::Id, &[]), "");
    }
}
