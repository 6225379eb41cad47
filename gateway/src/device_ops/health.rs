//! A device's health, from what is known about it: live connection, the last presence
//! change, the newest heartbeat, config drift and failed config pushes. Pure: "now" and the
//! thresholds are parameters.

use std::time::Duration;

use gema_store::{ConfigPushStatus, HeartbeatRecord, PresenceRecord};

/// Thresholds, from `[devices]` in the daemon's config.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// A heartbeat older than this makes an online device degraded.
    pub degraded_after: Duration,
    /// A heartbeat older than this makes the device offline even if its MQTT session
    /// looks alive (a hung firmware).
    pub offline_after: Duration,
    /// Battery at or below this percent (and not charging) is a reason.
    pub low_battery_pct: u8,
    /// Signal at or below this dBm is a reason.
    pub weak_signal_dbm: i16,
    /// Announcements that failed (no ack after every attempt, or refused) count as a
    /// reason while their expiry is within this window.
    pub failed_delivery_window: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            degraded_after: Duration::from_secs(180),
            offline_after: Duration::from_secs(600),
            low_battery_pct: 20,
            weak_signal_dbm: -100,
            failed_delivery_window: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    Online,
    Degraded,
    Offline,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Online => "online",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Offline => "offline",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "online" => HealthStatus::Online,
            "degraded" => HealthStatus::Degraded,
            "offline" => HealthStatus::Offline,
            _ => return None,
        })
    }
}

/// Why a device is not simply online. Stable codes (`as_str`) for tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthReason {
    /// Never connected nor sent a heartbeat.
    NeverSeen,
    /// No live MQTT session; the broker's reason when known.
    Disconnected {
        reason: Option<String>,
    },
    /// Connected, but no heartbeat yet for longer than the degraded threshold.
    NoHeartbeat,
    /// The newest heartbeat is older than a threshold.
    StaleHeartbeat {
        age_ms: i64,
    },
    LowBattery {
        pct: u8,
    },
    WeakSignal {
        dbm: i16,
    },
    /// The reported config differs from the desired one.
    ConfigDrift,
    /// The desired config could not be delivered, or the device refused it.
    ConfigPushFailed,
    /// Announcements to the device failed within the window.
    FailedDeliveries {
        count: i64,
    },
}

impl HealthReason {
    pub fn code(&self) -> &'static str {
        match self {
            HealthReason::NeverSeen => "never_seen",
            HealthReason::Disconnected { .. } => "disconnected",
            HealthReason::NoHeartbeat => "no_heartbeat",
            HealthReason::StaleHeartbeat { .. } => "stale_heartbeat",
            HealthReason::LowBattery { .. } => "low_battery",
            HealthReason::WeakSignal { .. } => "weak_signal",
            HealthReason::ConfigDrift => "config_drift",
            HealthReason::ConfigPushFailed => "config_push_failed",
            HealthReason::FailedDeliveries { .. } => "failed_deliveries",
        }
    }

    pub fn message(&self) -> String {
        match self {
            HealthReason::NeverSeen => "the device has never connected".into(),
            HealthReason::Disconnected { reason: Some(r) } => format!("disconnected ({r})"),
            HealthReason::Disconnected { reason: None } => "not connected".into(),
            HealthReason::NoHeartbeat => "connected but no heartbeat received yet".into(),
            HealthReason::StaleHeartbeat { age_ms } => {
                format!("last heartbeat {} s ago", age_ms / 1000)
            }
            HealthReason::LowBattery { pct } => format!("battery at {pct}%"),
            HealthReason::WeakSignal { dbm } => format!("signal at {dbm} dBm"),
            HealthReason::ConfigDrift => "reported config differs from the desired config".into(),
            HealthReason::ConfigPushFailed => {
                "the desired config was not delivered or was refused".into()
            }
            HealthReason::FailedDeliveries { count } => {
                format!("{count} announcement(s) failed to reach the device recently")
            }
        }
    }

    /// Points off a score of 100.
    fn penalty(&self) -> u8 {
        match self {
            HealthReason::NeverSeen | HealthReason::Disconnected { .. } => 100,
            HealthReason::NoHeartbeat | HealthReason::StaleHeartbeat { .. } => 40,
            HealthReason::LowBattery { .. } => 20,
            HealthReason::WeakSignal { .. } => 15,
            HealthReason::ConfigDrift => 15,
            HealthReason::ConfigPushFailed => 20,
            HealthReason::FailedDeliveries { .. } => 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSummary {
    pub status: HealthStatus,
    /// 0 ..= 100; 0 when offline.
    pub score: u8,
    pub connected: bool,
    pub last_heartbeat_at_ms: Option<i64>,
    pub heartbeat_age_ms: Option<i64>,
    pub reasons: Vec<HealthReason>,
}

/// What health is computed from.
#[derive(Debug, Clone, Copy)]
pub struct HealthInput<'a> {
    /// Whether the device has a live MQTT session now.
    pub connected: bool,
    pub presence: Option<&'a PresenceRecord>,
    pub heartbeat: Option<&'a HeartbeatRecord>,
    pub config_drift: bool,
    pub config_push: Option<ConfigPushStatus>,
    /// Failed announcements within the window.
    pub failed_deliveries: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The health summary at `now_ms`.
pub fn summarize(input: HealthInput<'_>, settings: &HealthSettings, now_ms: i64) -> HealthSummary {
    let mut reasons = Vec::new();
    let age = input.heartbeat.map(|h| (now_ms - h.received_at_ms).max(0));
    let mut offline = false;
    if !input.connected {
        offline = true;
        if input.presence.is_none() && input.heartbeat.is_none() {
            reasons.push(HealthReason::NeverSeen);
        } else {
            reasons.push(HealthReason::Disconnected {
                reason: input
                    .presence
                    .filter(|p| !p.connected)
                    .and_then(|p| p.reason.clone()),
            });
        }
    }
    match age {
        Some(age_ms) if age_ms >= ms(settings.offline_after) => {
            offline = true;
            reasons.push(HealthReason::StaleHeartbeat { age_ms });
        }
        Some(age_ms) if age_ms >= ms(settings.degraded_after) => {
            reasons.push(HealthReason::StaleHeartbeat { age_ms });
        }
        Some(_) => {}
        None if input.connected => {
            // No heartbeat yet: count from when the session started.
            let since = input
                .presence
                .filter(|p| p.connected)
                .map(|p| now_ms - p.changed_at_ms);
            if since.is_none_or(|since| since >= ms(settings.degraded_after)) {
                reasons.push(HealthReason::NoHeartbeat);
            }
        }
        None => {}
    }
    if let Some(hb) = input.heartbeat {
        if let Some(pct) = hb.battery_pct.and_then(|p| u8::try_from(p).ok())
            && pct <= settings.low_battery_pct
            && !hb.charging
        {
            reasons.push(HealthReason::LowBattery { pct });
        }
        if let Some(dbm) = hb.signal_dbm.and_then(|d| i16::try_from(d).ok())
            && dbm <= settings.weak_signal_dbm
        {
            reasons.push(HealthReason::WeakSignal { dbm });
        }
    }
    if input.config_drift {
        reasons.push(HealthReason::ConfigDrift);
    }
    if matches!(
        input.config_push,
        Some(ConfigPushStatus::Failed | ConfigPushStatus::Rejected)
    ) {
        reasons.push(HealthReason::ConfigPushFailed);
    }
    if input.failed_deliveries > 0 {
        reasons.push(HealthReason::FailedDeliveries {
            count: input.failed_deliveries,
        });
    }
    let status = if offline {
        HealthStatus::Offline
    } else if reasons.is_empty() {
        HealthStatus::Online
    } else {
        HealthStatus::Degraded
    };
    let score = if offline {
        0
    } else {
        reasons
            .iter()
            .fold(100u8, |score, r| score.saturating_sub(r.penalty()))
    };
    HealthSummary {
        status,
        score,
        connected: input.connected,
        last_heartbeat_at_ms: input.heartbeat.map(|h| h.received_at_ms),
        heartbeat_age_ms: age,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(at_ms: i64, battery: Option<i64>, charging: bool, dbm: i64) -> HeartbeatRecord {
        HeartbeatRecord {
            id: "hb_1".into(),
            device_id: "dev_1".into(),
            received_at_ms: at_ms,
            battery_pct: battery,
            charging,
            signal_dbm: Some(dbm),
            network: "4g".into(),
            firmware_version: "1.0".into(),
            audio_pack_version: "1".into(),
            uptime_s: 10,
            last_transaction_id: None,
            config_version: 0,
        }
    }

    fn input<'a>(connected: bool, hb: Option<&'a HeartbeatRecord>) -> HealthInput<'a> {
        HealthInput {
            connected,
            presence: None,
            heartbeat: hb,
            config_drift: false,
            config_push: None,
            failed_deliveries: 0,
        }
    }

    fn codes(s: &HealthSummary) -> Vec<&'static str> {
        s.reasons.iter().map(HealthReason::code).collect()
    }

    #[test]
    fn a_fresh_heartbeat_is_online_with_full_score() {
        let settings = HealthSettings::default();
        let hb = heartbeat(1_000, Some(90), false, -60);
        let s = summarize(input(true, Some(&hb)), &settings, 31_000);
        assert_eq!(s.status, HealthStatus::Online);
        assert_eq!(s.score, 100);
        assert_eq!(s.heartbeat_age_ms, Some(30_000));
        assert!(s.reasons.is_empty());
    }

    #[test]
    fn age_crosses_the_thresholds_exactly() {
        let settings = HealthSettings {
            degraded_after: Duration::from_secs(60),
            offline_after: Duration::from_secs(300),
            ..HealthSettings::default()
        };
        let hb = heartbeat(0, None, false, -60);
        let at = |now| summarize(input(true, Some(&hb)), &settings, now);
        assert_eq!(at(59_999).status, HealthStatus::Online);
        assert_eq!(at(60_000).status, HealthStatus::Degraded);
        assert_eq!(codes(&at(60_000)), vec!["stale_heartbeat"]);
        assert_eq!(at(60_000).score, 60);
        assert_eq!(at(299_999).status, HealthStatus::Degraded);
        assert_eq!(at(300_000).status, HealthStatus::Offline);
        assert_eq!(at(300_000).score, 0);
    }

    #[test]
    fn disconnected_is_offline_with_the_brokers_reason() {
        let settings = HealthSettings::default();
        let hb = heartbeat(0, None, false, -60);
        let presence = PresenceRecord {
            device_id: "dev_1".into(),
            connected: false,
            reason: Some("keep_alive_timeout".into()),
            changed_at_ms: 5,
        };
        let s = summarize(
            HealthInput {
                presence: Some(&presence),
                ..input(false, Some(&hb))
            },
            &settings,
            1_000,
        );
        assert_eq!(s.status, HealthStatus::Offline);
        assert_eq!(
            s.reasons,
            vec![HealthReason::Disconnected {
                reason: Some("keep_alive_timeout".into())
            }]
        );
        let never = summarize(input(false, None), &settings, 1_000);
        assert_eq!(codes(&never), vec!["never_seen"]);
    }

    #[test]
    fn battery_signal_and_config_degrade_with_reasons() {
        let settings = HealthSettings::default();
        let hb = heartbeat(0, Some(15), false, -105);
        let s = summarize(
            HealthInput {
                config_drift: true,
                config_push: Some(ConfigPushStatus::Failed),
                failed_deliveries: 2,
                ..input(true, Some(&hb))
            },
            &settings,
            1_000,
        );
        assert_eq!(s.status, HealthStatus::Degraded);
        assert_eq!(
            codes(&s),
            vec![
                "low_battery",
                "weak_signal",
                "config_drift",
                "config_push_failed",
                "failed_deliveries"
            ]
        );
        assert_eq!(s.score, 100 - 20 - 15 - 15 - 20 - 20);
        // Charging: a low battery is not a problem.
        let charging = heartbeat(0, Some(15), true, -60);
        let s = summarize(input(true, Some(&charging)), &settings, 1_000);
        assert_eq!(s.status, HealthStatus::Online);
    }

    #[test]
    fn connected_without_a_heartbeat_degrades_after_the_threshold() {
        let settings = HealthSettings::default();
        let presence = PresenceRecord {
            device_id: "dev_1".into(),
            connected: true,
            reason: None,
            changed_at_ms: 0,
        };
        let with = |now| {
            summarize(
                HealthInput {
                    presence: Some(&presence),
                    ..input(true, None)
                },
                &settings,
                now,
            )
        };
        assert_eq!(with(1_000).status, HealthStatus::Online);
        assert_eq!(codes(&with(180_000)), vec!["no_heartbeat"]);
    }
}
