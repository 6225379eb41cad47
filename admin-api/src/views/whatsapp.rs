//! WhatsApp's JSON shapes: the outbox and each message's log, the counts, staff messages,
//! a merchant's sender, texts and notification settings, and Meta's webhook answer.
//!
//! A sender's access token and its gateway headers' values are write-only: a request may
//! carry them (its `Debug` does not show them), an answer only says whether a token is set
//! and names the headers.

use std::collections::BTreeMap;

use gema_gateway::whatsapp as domain;
use gema_store as store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::timestamps::instant;

/// One message of the outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub id: String,
    /// The merchant it concerns (`null`: the operator's own notices).
    pub merchant_id: Option<String>,
    /// The merchant whose own number sends it, or `operator`.
    pub sender_id: String,
    /// E.164 digits (`62…`).
    pub recipient: String,
    /// `reminder`, `isolation`, `receipt`, `payout`, `device_offline`, `device_online`,
    /// `battery_low`, `battery_ok`, `daily_summary`, `manual`, `bulk`.
    pub kind: String,
    /// Paced as bulk (spread out).
    pub bulk: bool,
    pub body: String,
    /// Sent as the kind's registered template (outside the 24-hour window).
    pub via_template: bool,
    /// `pending`, `sending`, `sent`, `delivered`, `read`, `failed`, `uncertain` (the process
    /// stopped mid-send: it may have gone; never re-sent unless retried), `cancelled`.
    pub status: String,
    /// WhatsApp's message id, once accepted.
    pub wamid: Option<String>,
    pub attempts: i64,
    /// When a pending message is due.
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    /// Meta's error code of the last failure.
    pub error_code: Option<i64>,
    pub last_error: Option<String>,
    /// Who queued it: a user, an API token, or the gateway itself.
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub read_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<store::WaMessage> for Message {
    fn from(m: store::WaMessage) -> Self {
        Message {
            id: m.id,
            merchant_id: m.merchant_id,
            sender_id: m.sender_id,
            recipient: m.recipient,
            kind: m.kind,
            bulk: m.bulk,
            body: m.body,
            via_template: m.via_template,
            status: m.status.as_str().to_owned(),
            wamid: m.wamid,
            attempts: m.attempts,
            next_attempt_at: instant(m.next_attempt_ms),
            error_code: m.error_code,
            last_error: m.last_error,
            created_by: m.created_by,
            created_at: m.created_at,
            sent_at: m.sent_at_ms.map(instant),
            delivered_at: m.delivered_at_ms.map(instant),
            read_at: m.read_at_ms.map(instant),
            updated_at: m.updated_at,
        }
    }
}

/// A line of a message's log: queued, sending, sent, a retry, delivered, read, failed, …
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageEvent {
    pub status: String,
    pub detail: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A message and its log, oldest line first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDetail {
    pub message: Message,
    pub events: Vec<MessageEvent>,
}

impl From<domain::MessageDetail> for MessageDetail {
    fn from(d: domain::MessageDetail) -> Self {
        MessageDetail {
            message: d.message.into(),
            events: d
                .events
                .into_iter()
                .map(|e| MessageEvent {
                    status: e.status,
                    detail: e.detail,
                    at: instant(e.at_ms),
                })
                .collect(),
        }
    }
}

/// Which messages a list shows, newest first.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// A status (see `Message.status`).
    pub status: Option<String>,
    /// A kind (see `Message.kind`).
    pub kind: Option<String>,
    /// Operators: one merchant's messages; merchant users always see only their own.
    pub merchant_id: Option<String>,
    /// A number (`08…`, `+62…` or `62…`).
    pub recipient: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// Operators: one merchant's counts (all merchants' by default); merchant users always
    /// get their own.
    pub merchant_id: Option<String>,
}

/// How many messages are in each status.
#[derive(Debug, Serialize, ToSchema)]
pub struct Summary {
    /// `null`: every merchant's and the operator's messages.
    pub merchant_id: Option<String>,
    /// Every status, with 0 for none.
    pub counts: BTreeMap<String, i64>,
}

/// A message a merchant's staff writes to one number.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// `08…`, `+62…` or `62…`.
    pub to: String,
    /// 1 to 4,096 characters.
    pub text: String,
}

/// A message to many numbers: either `to` (a list) or `customers: "active"` (every active
/// billing customer of the merchant).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBulk {
    pub text: String,
    /// Up to 10,000 numbers; duplicates are sent once.
    pub to: Option<Vec<String>>,
    /// `active`: the merchant's active billing customers.
    pub customers: Option<String>,
}

/// What a bulk send queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkQueued {
    pub queued: usize,
    /// Numbers not queued: repeated, opted out (STOP), or (customers) not a WhatsApp number.
    pub skipped: usize,
}

/// `cloud` (Meta's Cloud API) or `gateway` (an HTTP gateway).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SenderKind {
    Cloud,
    Gateway,
}

impl From<SenderKind> for store::SenderKind {
    fn from(kind: SenderKind) -> Self {
        match kind {
            SenderKind::Cloud => store::SenderKind::Cloud,
            SenderKind::Gateway => store::SenderKind::Gateway,
        }
    }
}

/// A merchant's own WhatsApp number. Never its access token or its headers' values.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sender {
    pub merchant_id: String,
    /// `cloud` or `gateway`.
    pub kind: String,
    pub phone_number_id: Option<String>,
    pub has_access_token: bool,
    pub gateway_url: Option<String>,
    /// The names of the headers sent to the gateway (their values are not shown).
    pub gateway_header_names: Vec<String>,
    pub gateway_body: Option<String>,
    pub rate_per_sec: Option<i64>,
    pub daily_recipients: Option<i64>,
    pub active: bool,
}

impl From<domain::SenderView> for Sender {
    fn from(s: domain::SenderView) -> Self {
        Sender {
            merchant_id: s.merchant_id,
            kind: s.kind.as_str().to_owned(),
            phone_number_id: s.phone_number_id,
            has_access_token: s.has_access_token,
            gateway_url: s.gateway_url,
            gateway_header_names: s.gateway_header_names,
            gateway_body: s.gateway_body,
            rate_per_sec: s.rate_per_sec,
            daily_recipients: s.daily_recipients,
            active: s.active,
        }
    }
}

/// A merchant's own number. A `cloud` sender needs `phone_number_id` and `access_token`; a
/// `gateway` sender `gateway_url` and `gateway_body` (a JSON template whose strings may hold
/// `{to}`, `{text}` and `{sender}`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSender {
    pub kind: SenderKind,
    pub phone_number_id: Option<String>,
    /// Write-only.
    pub access_token: Option<String>,
    pub gateway_url: Option<String>,
    /// Header name → value; the values are write-only.
    #[serde(default)]
    pub gateway_headers: BTreeMap<String, String>,
    pub gateway_body: Option<String>,
    /// Messages a second (1 to 1,000; default: `[whatsapp]`'s pacing).
    pub rate_per_sec: Option<i64>,
    /// Distinct recipients a day (default: `[whatsapp]`'s pacing).
    pub daily_recipients: Option<i64>,
    /// Default true.
    pub active: Option<bool>,
}

impl std::fmt::Debug for PutSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSender")
            .field("kind", &self.kind)
            .field("phone_number_id", &self.phone_number_id)
            .field("gateway_url", &self.gateway_url)
            .field("gateway_headers", &self.gateway_headers.keys())
            .finish_non_exhaustive()
    }
}

impl From<PutSender> for domain::SenderInput {
    fn from(b: PutSender) -> Self {
        domain::SenderInput {
            kind: b.kind.into(),
            phone_number_id: b.phone_number_id,
            access_token: b.access_token,
            gateway_url: b.gateway_url,
            gateway_headers: b.gateway_headers,
            gateway_body: b.gateway_body,
            rate_per_sec: b.rate_per_sec,
            daily_recipients: b.daily_recipients,
            active: b.active.unwrap_or(true),
        }
    }
}

/// A kind's text for a merchant.
#[derive(Debug, Serialize, ToSchema)]
pub struct Text {
    pub kind: String,
    pub body: String,
    /// The merchant's own text (else the built-in one).
    pub custom: bool,
    /// The `{placeholders}` the kind fills in; a text may use only these.
    pub placeholders: Vec<String>,
    /// The registered template sent outside the 24-hour window, if any.
    pub template: Option<String>,
}

impl From<domain::TextView> for Text {
    fn from(t: domain::TextView) -> Self {
        Text {
            kind: t.kind.as_str().to_owned(),
            body: t.body,
            custom: t.custom,
            placeholders: t.placeholders.into_iter().map(str::to_owned).collect(),
            template: t.template,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutText {
    /// May use only the kind's placeholders, as `{name}`.
    pub body: String,
}

/// A merchant's notification settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct Settings {
    pub merchant_id: String,
    /// Where the merchant's own notices go (payouts, device alerts, the daily summary).
    pub contact_phone: Option<String>,
    pub daily_summary: bool,
    pub device_alerts: bool,
    /// Opening hours, `HH:MM` Asia/Jakarta: device alerts only while open.
    pub open: String,
    pub close: String,
}

impl From<store::WaMerchantSettings> for Settings {
    fn from(s: store::WaMerchantSettings) -> Self {
        Settings {
            merchant_id: s.merchant_id,
            contact_phone: s.contact_phone,
            daily_summary: s.daily_summary,
            device_alerts: s.device_alerts,
            open: hh_mm(s.open_minute),
            close: hh_mm(s.close_minute),
        }
    }
}

/// Minutes after midnight as `HH:MM` (1440 is `24:00`).
fn hh_mm(minute: i64) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSettings {
    /// `08…`, `+62…` or `62…`; `null`: none.
    pub contact_phone: Option<String>,
    #[serde(default)]
    pub daily_summary: bool,
    #[serde(default)]
    pub device_alerts: bool,
    /// `HH:MM`, Asia/Jakarta (default 08:00).
    pub open: Option<String>,
    /// `HH:MM` after `open`, up to `24:00` (default 21:00).
    pub close: Option<String>,
}

/// Meta's webhook verification (`GET`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WebhookVerification {
    /// `subscribe`.
    #[serde(rename = "hub.mode")]
    pub mode: Option<String>,
    /// Must equal `whatsapp.verify_token`.
    #[serde(rename = "hub.verify_token")]
    pub verify_token: Option<String>,
    /// Answered back as the body.
    #[serde(rename = "hub.challenge")]
    pub challenge: Option<String>,
}

/// The answer to a webhook delivery: recorded, applied shortly after.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    /// `ok`.
    pub status: String,
}
