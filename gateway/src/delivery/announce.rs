//! What is announcement-specific in delivery: the `announce` downlink made from an outbox
//! row, its language, and what a device's `ack` status means for an announcement.

use gema_firmware_protocol::message::{
    AckStatus, Announce, Currency, Downlink, DownlinkBody, Envelope, Language,
};
use gema_store::{AnnouncementDelivery, DeliveryResult};

use crate::clock::unix_ms;

/// The prefix of announcement ids, which are also their downlinks' message ids.
pub(crate) const ID_PREFIX: &str = "ann_";

/// The `announce` downlink for `a`, sent at `now_ms`; its message id is the announcement id.
pub(crate) fn downlink(
    a: &AnnouncementDelivery,
    default_language: Language,
    now_ms: i64,
) -> Downlink {
    Downlink {
        envelope: Envelope::new(a.id.clone(), now_ms),
        body: DownlinkBody::Announce(Announce {
            transaction_id: a.transaction_id.clone(),
            amount: a.amount,
            currency: Currency::Idr,
            provider: a.provider.clone().unwrap_or_else(|| "direct".into()),
            issuer: a.issuer.clone(),
            language: language(a.desired_config.as_deref(), default_language),
            paid_at: a.paid_at.map(unix_ms).unwrap_or(now_ms),
            expires_at: a.expires_at_ms,
            sequence: u64::try_from(a.sequence).unwrap_or(0),
        }),
    }
}

/// The result a device's `ack` settles an announcement with: `spoken` or `duplicate` (or
/// `processed`) → delivered, `expired` → expired, `rejected` → failed.
pub(crate) fn settled_by(status: AckStatus) -> DeliveryResult {
    match status {
        AckStatus::Spoken | AckStatus::Duplicate | AckStatus::Processed => {
            DeliveryResult::Delivered
        }
        AckStatus::Expired => DeliveryResult::Expired,
        AckStatus::Rejected => DeliveryResult::Failed {
            error: "the device rejected the announcement".into(),
        },
    }
}

/// The language of the device's desired config (JSON), or `default` when it has none (or
/// it cannot be read).
fn language(desired_config: Option<&str>, default: Language) -> Language {
    #[derive(serde::Deserialize)]
    struct LanguageOnly {
        language: Language,
    }
    desired_config
        .and_then(|json| serde_json::from_str::<LanguageOnly>(json).ok())
        .map_or(default, |c| c.language)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_follow_the_devices_desired_language() {
        let en = r#"{"volume":5,"language":"en","heartbeat_interval_s":60,"qr_timeout_s":300,"quiet_hours":null}"#;
        assert_eq!(language(Some(en), Language::Id), Language::En);
        assert_eq!(language(None, Language::Id), Language::Id);
        assert_eq!(language(Some("{oops"), Language::Id), Language::Id);
    }
}
