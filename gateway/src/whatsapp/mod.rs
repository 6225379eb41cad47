//! WhatsApp notifications: bill reminders, isolation notices, receipts, payout notices,
//! device alerts and daily summaries, and the messages merchants' staff write, sent through
//! Meta's WhatsApp Business Cloud API or an external HTTP gateway the operator runs.
//!
//! Every message is a row first ([`WhatsApp::queue`] writes it to the outbox) and is then
//! sent by one worker in the cluster (the node holding the `whatsapp-sender` lease,
//! [`WhatsApp::run`]), paced per sender ([`pacing`]). The worker marks a row `sending`
//! (committed) before its request goes out; a row left `sending` by a process that stopped
//! is `uncertain` afterwards and is never re-sent by itself: the Cloud API has no
//! idempotency key, so a second request could be a second message on the customer's phone.
//! A person looks and retries it.
//!
//! The sender of a message is the merchant's own number when it has one, else the
//! operator's. Inside the recipient's 24-hour window (they wrote to that number in the last
//! 24 hours) a message goes as text; outside it, as the kind's registered template
//! (`[whatsapp.templates.<kind>]`); a text refused with 131047 (window closed) is re-sent
//! as the template. Status webhooks move messages forward only ([`webhook::advance`]).

pub mod notices;
pub mod pacing;
pub mod template;
pub mod texts;
mod transport;
pub mod webhook;
pub mod wire;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use gema_store::{
    MessageStatus, NewWaMessage, NewWaSender, OPERATOR_SENDER, Page, PageRequest, SenderKind,
    Store, WaMerchantSettings, WaMessage, WaMessageEvent, WaMessageFilter, WaSender,
};
use serde::Serialize;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::error::{GatewayError, GatewayResult};
use crate::validate;

pub use pacing::{BulkSettings, PaceLimits};
pub use texts::Kind;
pub use transport::{HttpTransport, SendAttempt, SenderTarget, WaTransport};

/// Meta's Cloud API for one number.
#[derive(Clone, PartialEq, Eq)]
pub struct CloudNumber {
    pub phone_number_id: String,
    pub access_token: String,
}

impl std::fmt::Debug for CloudNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudNumber")
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

/// An external gateway: `POST url` with `headers` and the JSON `body` template, whose
/// strings may hold `{to}`, `{text}` and `{sender}`.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayEndpoint {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl std::fmt::Debug for GatewayEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayEndpoint")
            .field("url", &self.url)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// How one sender reaches WhatsApp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Cloud(CloudNumber),
    Gateway(GatewayEndpoint),
}

/// A template registered with Meta for a kind: its name, language, category, and which of
/// the kind's values fill its body parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredTemplate {
    pub name: String,
    pub language: String,
    pub category: String,
    pub params: Vec<String>,
}

/// WhatsApp's settings (`[whatsapp]`). Secrets are left out of `Debug`.
#[derive(Clone)]
pub struct WhatsAppSettings {
    /// The operator's own number (every merchant without one of its own sends from it);
    /// `None`: WhatsApp is off unless a merchant has a sender.
    pub operator: Option<Route>,
    /// The Cloud API's base URL and version.
    pub api_base_url: String,
    pub api_version: String,
    /// Signs Meta's webhooks (`X-Hub-Signature-256`).
    pub app_secret: Option<String>,
    /// Answers Meta's webhook verification.
    pub verify_token: Option<String>,
    pub templates: BTreeMap<Kind, RegisteredTemplate>,
    /// Pacing of Cloud API senders.
    pub pacing: PaceLimits,
    /// Bulk spreading of external-gateway senders.
    pub gateway_bulk: BulkSettings,
    /// One send's time limit.
    pub request_timeout: Duration,
    /// A claimed send not finished by then is `uncertain` (longer than the request timeout).
    pub claim_timeout: Duration,
    /// Temporary failures are retried this many times, from `retry_base` doubling.
    pub max_attempts: u32,
    pub retry_base: Duration,
    /// 130429: the sender backs off from this, doubling per consecutive throttle, jittered.
    pub throttle_base: Duration,
    /// How often the worker looks for due messages it was not woken for.
    pub poll_interval: Duration,
    /// Where customers open receipts (`{public_url}/r/<token>`).
    pub public_url: String,
    /// Bill reminders and daily summaries, Asia/Jakarta `HH:MM`.
    pub reminder_time: (u8, u8),
    pub summary_time: (u8, u8),
    /// A device offline longer than this during opening hours is alerted.
    pub offline_alert_after: Duration,
    /// Battery alert below, recovery at or above.
    pub low_battery_pct: i64,
    pub battery_ok_pct: i64,
}

impl std::fmt::Debug for WhatsAppSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppSettings")
            .field("operator", &self.operator)
            .field("api_base_url", &self.api_base_url)
            .field("api_version", &self.api_version)
            .field("app_secret", &self.app_secret.as_ref().map(|_| "<secret>"))
            .field(
                "verify_token",
                &self.verify_token.as_ref().map(|_| "<secret>"),
            )
            .field("templates", &self.templates)
            .field("pacing", &self.pacing)
            .finish_non_exhaustive()
    }
}

impl Default for WhatsAppSettings {
    fn default() -> Self {
        WhatsAppSettings {
            operator: None,
            api_base_url: "https://graph.facebook.com".into(),
            api_version: "v21.0".into(),
            app_secret: None,
            verify_token: None,
            templates: BTreeMap::new(),
            pacing: PaceLimits::default(),
            gateway_bulk: BulkSettings::gateway(),
            request_timeout: Duration::from_secs(15),
            claim_timeout: Duration::from_secs(60),
            max_attempts: 5,
            retry_base: Duration::from_secs(30),
            throttle_base: Duration::from_secs(2),
            poll_interval: Duration::from_secs(1),
            public_url: "http://127.0.0.1:8080".into(),
            reminder_time: (9, 0),
            summary_time: (21, 0),
            offline_alert_after: Duration::from_secs(15 * 60),
            low_battery_pct: 15,
            battery_ok_pct: 30,
        }
    }
}

/// A notification to queue: who, what kind, the values its text is filled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The merchant it concerns: its sender and its texts are used.
    pub merchant_id: Option<String>,
    /// E.164 digits (see [`validate::wa_phone`]).
    pub recipient: String,
    pub kind: Kind,
    pub values: BTreeMap<&'static str, String>,
    /// At most one message per key, ever.
    pub dedupe_key: Option<String>,
    /// Not before this instant (default: now).
    pub not_before_ms: Option<i64>,
    pub created_by: String,
}

/// A message and its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageDetail {
    pub message: WaMessage,
    pub events: Vec<WaMessageEvent>,
}

/// A merchant's sender as the API shows it: never the token or the headers' values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SenderView {
    pub merchant_id: String,
    pub kind: SenderKind,
    pub phone_number_id: Option<String>,
    pub has_access_token: bool,
    pub gateway_url: Option<String>,
    pub gateway_header_names: Vec<String>,
    pub gateway_body: Option<String>,
    pub rate_per_sec: Option<i64>,
    pub daily_recipients: Option<i64>,
    pub active: bool,
}

impl From<&WaSender> for SenderView {
    fn from(sender: &WaSender) -> Self {
        let header_names = sender
            .gateway_headers
            .as_deref()
            .and_then(|h| serde_json::from_str::<BTreeMap<String, String>>(h).ok())
            .map(|h| h.into_keys().collect())
            .unwrap_or_default();
        SenderView {
            merchant_id: sender.merchant_id.clone(),
            kind: sender.kind,
            phone_number_id: sender.phone_number_id.clone(),
            has_access_token: sender.access_token.is_some(),
            gateway_url: sender.gateway_url.clone(),
            gateway_header_names: header_names,
            gateway_body: sender.gateway_body.clone(),
            rate_per_sec: sender.rate_per_sec,
            daily_recipients: sender.daily_recipients,
            active: sender.active,
        }
    }
}

/// A merchant's sender as set through the API.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderInput {
    pub kind: SenderKind,
    pub phone_number_id: Option<String>,
    pub access_token: Option<String>,
    pub gateway_url: Option<String>,
    pub gateway_headers: BTreeMap<String, String>,
    pub gateway_body: Option<String>,
    pub rate_per_sec: Option<i64>,
    pub daily_recipients: Option<i64>,
    pub active: bool,
}

impl std::fmt::Debug for SenderInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderInput")
            .field("kind", &self.kind)
            .field("phone_number_id", &self.phone_number_id)
            .field("gateway_url", &self.gateway_url)
            .finish_non_exhaustive()
    }
}

/// A kind's text for a merchant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextView {
    pub kind: Kind,
    pub body: String,
    /// The merchant's own (else the built-in one).
    pub custom: bool,
    pub placeholders: Vec<&'static str>,
    /// The registered template used outside the 24-hour window, if any.
    pub template: Option<String>,
}

/// The WhatsApp service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WhatsApp {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Arc<WhatsAppSettings>,
    transport: Arc<dyn WaTransport>,
    node_id: Arc<str>,
    /// Wakes the worker (a message queued on this node) and the webhook processor.
    wake: Arc<Notify>,
    webhooks: Arc<Notify>,
    /// Today's daily summaries queued by this node.
    summaries: Arc<notices::SummaryMemo>,
}

/// A bulk send's largest recipient list.
pub const MAX_BULK_RECIPIENTS: usize = 10_000;
/// A written message's longest text (WhatsApp's own limit is 4,096).
pub const MAX_TEXT_CHARS: usize = 4096;

impl WhatsApp {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: WhatsAppSettings,
        node_id: String,
    ) -> Self {
        let transport = Arc::new(HttpTransport::new(&settings));
        Self::with_transport(store, clock, settings, node_id, transport)
    }

    /// With another transport (tests that record what was sent).
    pub fn with_transport(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: WhatsAppSettings,
        node_id: String,
        transport: Arc<dyn WaTransport>,
    ) -> Self {
        WhatsApp {
            store,
            clock,
            settings: Arc::new(settings),
            transport,
            node_id: node_id.into(),
            wake: Arc::new(Notify::new()),
            webhooks: Arc::new(Notify::new()),
            summaries: Arc::new(notices::SummaryMemo::default()),
        }
    }

    pub fn settings(&self) -> &WhatsAppSettings {
        &self.settings
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Whether any sender exists (the operator's, or a merchant's active one). Without one
    /// nothing is queued, so the worker and the notice sweep stay idle: no lease, no writes.
    pub async fn configured(&self) -> GatewayResult<bool> {
        if self.settings.operator.is_some() {
            return Ok(true);
        }
        Ok(self.store.list_wa_senders().await?.iter().any(|s| s.active))
    }

    /// The sender a merchant's messages go from: its own active number, else the
    /// operator's; `None` when neither exists.
    async fn sender_for(&self, merchant_id: Option<&str>) -> GatewayResult<Option<String>> {
        if let Some(merchant) = merchant_id
            && let Some(sender) = self.store.get_wa_sender(merchant).await?
            && sender.active
        {
            return Ok(Some(sender.merchant_id));
        }
        Ok(self
            .settings
            .operator
            .as_ref()
            .map(|_| OPERATOR_SENDER.to_owned()))
    }

    /// The text of `kind` for a merchant: its own, else the built-in one.
    async fn text_for(&self, merchant_id: Option<&str>, kind: Kind) -> GatewayResult<String> {
        if let Some(merchant) = merchant_id {
            let texts = self.store.wa_texts(merchant).await?;
            if let Some(text) = texts.into_iter().find(|t| t.kind == kind.as_str()) {
                return Ok(text.body);
            }
        }
        Ok(kind.default_text().to_owned())
    }

    /// Queues notices: renders each text, picks the sender, skips numbers that opted out
    /// (but for receipts) and keys queued before. Returns the queued messages. With no
    /// sender at all (WhatsApp not configured), nothing is queued.
    pub async fn queue(&self, notices: Vec<Notice>) -> GatewayResult<Vec<WaMessage>> {
        let now = self.now_ms();
        let mut senders: HashMap<Option<String>, Option<String>> = HashMap::new();
        let mut texts: HashMap<(Option<String>, Kind), String> = HashMap::new();
        let mut rows = Vec::with_capacity(notices.len());
        for notice in notices {
            let sender = match senders.get(&notice.merchant_id) {
                Some(sender) => sender.clone(),
                None => {
                    let sender = self.sender_for(notice.merchant_id.as_deref()).await?;
                    senders.insert(notice.merchant_id.clone(), sender.clone());
                    sender
                }
            };
            let Some(sender) = sender else {
                tracing::debug!(
                    kind = notice.kind.as_str(),
                    "no WhatsApp sender: not queued"
                );
                continue;
            };
            if !notice.kind.ignores_opt_out()
                && let Some(contact) = self
                    .store
                    .get_wa_contact(&sender, &notice.recipient)
                    .await?
                && contact.opted_out_ms.is_some()
            {
                metrics::counter!("gema_whatsapp_skipped_total", "reason" => "opted_out")
                    .increment(1);
                continue;
            }
            let key = (notice.merchant_id.clone(), notice.kind);
            let text = match texts.get(&key) {
                Some(text) => text.clone(),
                None => {
                    let text = self
                        .text_for(notice.merchant_id.as_deref(), notice.kind)
                        .await?;
                    texts.insert(key, text.clone());
                    text
                }
            };
            let body = template::render(&text, &notice.values)
                .or_else(|_| template::render(notice.kind.default_text(), &notice.values))
                .map_err(|err| {
                    GatewayError::Internal(format!(
                        "the {} text cannot be filled in: {err}",
                        notice.kind.as_str()
                    ))
                })?;
            let template_params = self.settings.templates.get(&notice.kind).map(|t| {
                let values: Vec<String> = t
                    .params
                    .iter()
                    .map(|p| {
                        wire::template_param(
                            notice.values.get(p.as_str()).map_or("", String::as_str),
                        )
                    })
                    .collect();
                serde_json::to_string(&values).unwrap_or_else(|_| "[]".into())
            });
            rows.push(NewWaMessage {
                merchant_id: notice.merchant_id,
                sender_id: sender,
                recipient: notice.recipient,
                kind: notice.kind.as_str().to_owned(),
                bulk: notice.kind.is_bulk(),
                body,
                template_params,
                dedupe_key: notice.dedupe_key,
                not_before_ms: notice.not_before_ms.unwrap_or(now),
                created_by: notice.created_by,
            });
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let queued = self.store.enqueue_wa_messages(rows).await?;
        for message in &queued {
            metrics::counter!("gema_whatsapp_queued_total", "kind" => message.kind.clone())
                .increment(1);
        }
        if !queued.is_empty() {
            self.wake.notify_one();
        }
        Ok(queued)
    }

    /// A message one of a merchant's staff writes to one number.
    pub async fn send_manual(
        &self,
        merchant_id: &str,
        to: &str,
        text: &str,
        actor: &str,
    ) -> GatewayResult<WaMessage> {
        let recipient = validate::wa_phone("to", to)?;
        let text = message_text(text)?;
        self.require_sender(Some(merchant_id)).await?;
        let queued = self
            .queue(vec![Notice {
                merchant_id: Some(merchant_id.to_owned()),
                recipient: recipient.clone(),
                kind: Kind::Manual,
                values: BTreeMap::from([("text", text)]),
                dedupe_key: None,
                not_before_ms: None,
                created_by: actor.to_owned(),
            }])
            .await?;
        queued
            .into_iter()
            .next()
            .ok_or_else(|| GatewayError::Conflict {
                code: "opted_out",
                message: format!(
                    "{recipient} opted out of messages (STOP); they can opt back in with MULAI"
                ),
                field: Some("to"),
            })
    }

    /// A message one of a merchant's staff writes to many numbers, paced as bulk. Numbers
    /// that opted out are skipped; returns the queued messages.
    pub async fn send_bulk(
        &self,
        merchant_id: &str,
        to: &[String],
        text: &str,
        actor: &str,
    ) -> GatewayResult<Vec<WaMessage>> {
        if to.is_empty() {
            return Err(GatewayError::invalid("to", "name at least one recipient"));
        }
        if to.len() > MAX_BULK_RECIPIENTS {
            return Err(GatewayError::invalid(
                "to",
                format!("at most {MAX_BULK_RECIPIENTS} recipients per bulk message"),
            ));
        }
        let text = message_text(text)?;
        let mut recipients = Vec::with_capacity(to.len());
        for number in to {
            let number = validate::wa_phone("to", number)?;
            if !recipients.contains(&number) {
                recipients.push(number);
            }
        }
        self.require_sender(Some(merchant_id)).await?;
        let notices = recipients
            .into_iter()
            .map(|recipient| Notice {
                merchant_id: Some(merchant_id.to_owned()),
                recipient,
                kind: Kind::Bulk,
                values: BTreeMap::from([("text", text.clone())]),
                dedupe_key: None,
                not_before_ms: None,
                created_by: actor.to_owned(),
            })
            .collect();
        self.queue(notices).await
    }

    async fn require_sender(&self, merchant_id: Option<&str>) -> GatewayResult<String> {
        self.sender_for(merchant_id)
            .await?
            .ok_or_else(|| GatewayError::Conflict {
                code: "whatsapp_not_configured",
                message: "no WhatsApp sender: configure [whatsapp] or the merchant's own sender"
                    .into(),
                field: None,
            })
    }

    // The queue and the log.

    pub async fn messages(
        &self,
        filter: &WaMessageFilter,
        page: &PageRequest,
    ) -> GatewayResult<Page<WaMessage>> {
        Ok(self.store.list_wa_messages(filter, page).await?)
    }

    pub async fn message(&self, id: &str) -> GatewayResult<MessageDetail> {
        let message = self.store.get_wa_message(id).await?;
        let events = self.store.wa_message_events(id).await?;
        Ok(MessageDetail { message, events })
    }

    /// Counts by status, for one merchant or all.
    pub async fn counts(&self, merchant_id: Option<&str>) -> GatewayResult<BTreeMap<String, i64>> {
        let mut counts: BTreeMap<String, i64> = MessageStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        for (status, count) in self.store.wa_status_counts(merchant_id).await? {
            counts.insert(status, count);
        }
        Ok(counts)
    }

    /// A failed or uncertain message sent again, by a person's decision.
    pub async fn retry(&self, id: &str, actor: &str) -> GatewayResult<WaMessage> {
        let message = self
            .store
            .retry_wa_message(id, actor, self.now_ms())
            .await?;
        self.wake.notify_one();
        Ok(message)
    }

    /// A pending message that will not be sent.
    pub async fn cancel(&self, id: &str, actor: &str) -> GatewayResult<WaMessage> {
        Ok(self
            .store
            .cancel_wa_message(id, actor, self.now_ms())
            .await?)
    }

    // Senders.

    pub async fn sender(&self, merchant_id: &str) -> GatewayResult<Option<SenderView>> {
        Ok(self
            .store
            .get_wa_sender(merchant_id)
            .await?
            .as_ref()
            .map(SenderView::from))
    }

    /// Sets a merchant's own number. A Cloud API sender needs its phone number id and
    /// access token; a gateway sender a URL and a body template that is JSON.
    pub async fn put_sender(
        &self,
        merchant_id: &str,
        input: SenderInput,
    ) -> GatewayResult<SenderView> {
        self.store.get_merchant(merchant_id).await?;
        if let Some(rate) = input.rate_per_sec
            && !(1..=1000).contains(&rate)
        {
            return Err(GatewayError::invalid("rate_per_sec", "must be 1 to 1000"));
        }
        if let Some(limit) = input.daily_recipients
            && limit < 1
        {
            return Err(GatewayError::invalid(
                "daily_recipients",
                "must be at least 1",
            ));
        }
        let new = match input.kind {
            SenderKind::Cloud => {
                let id = input
                    .phone_number_id
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| {
                        GatewayError::invalid("phone_number_id", "required for a cloud sender")
                    })?;
                if !id.bytes().all(|b| b.is_ascii_digit()) || id.len() > 32 {
                    return Err(GatewayError::invalid(
                        "phone_number_id",
                        "must be the number's id in Meta's API: up to 32 digits",
                    ));
                }
                let token = input
                    .access_token
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| {
                        GatewayError::invalid("access_token", "required for a cloud sender")
                    })?;
                NewWaSender {
                    kind: SenderKind::Cloud,
                    phone_number_id: Some(id),
                    access_token: Some(token),
                    gateway_url: None,
                    gateway_headers: None,
                    gateway_body: None,
                    rate_per_sec: input.rate_per_sec,
                    daily_recipients: input.daily_recipients,
                    active: input.active,
                }
            }
            SenderKind::Gateway => {
                let url = input
                    .gateway_url
                    .filter(|v| v.starts_with("http://") || v.starts_with("https://"))
                    .ok_or_else(|| {
                        GatewayError::invalid("gateway_url", "required: an http(s) URL")
                    })?;
                let body = input.gateway_body.ok_or_else(|| {
                    GatewayError::invalid("gateway_body", "required: a JSON body template")
                })?;
                template::gateway_body(&body, "6281234567890", "tes", "sender")
                    .map_err(|err| GatewayError::invalid("gateway_body", err.to_string()))?;
                NewWaSender {
                    kind: SenderKind::Gateway,
                    phone_number_id: None,
                    access_token: None,
                    gateway_url: Some(url),
                    gateway_headers: Some(
                        serde_json::to_string(&input.gateway_headers)
                            .map_err(|e| GatewayError::Internal(e.to_string()))?,
                    ),
                    gateway_body: Some(body),
                    rate_per_sec: input.rate_per_sec,
                    daily_recipients: input.daily_recipients,
                    active: input.active,
                }
            }
        };
        let sender = self.store.put_wa_sender(merchant_id, new).await?;
        self.wake.notify_one();
        Ok(SenderView::from(&sender))
    }

    /// Removes a merchant's own number: its queued messages go from the operator's.
    pub async fn delete_sender(&self, merchant_id: &str) -> GatewayResult<()> {
        Ok(self.store.delete_wa_sender(merchant_id).await?)
    }

    // Texts and settings.

    /// Every kind's text for a merchant.
    pub async fn texts(&self, merchant_id: &str) -> GatewayResult<Vec<TextView>> {
        self.store.get_merchant(merchant_id).await?;
        let custom = self.store.wa_texts(merchant_id).await?;
        Ok(Kind::ALL
            .iter()
            .map(|&kind| {
                let own = custom.iter().find(|t| t.kind == kind.as_str());
                TextView {
                    kind,
                    body: own.map_or_else(|| kind.default_text().to_owned(), |t| t.body.clone()),
                    custom: own.is_some(),
                    placeholders: kind.placeholders().to_vec(),
                    template: self.settings.templates.get(&kind).map(|t| t.name.clone()),
                }
            })
            .collect())
    }

    /// A merchant's own text for a kind, checked against the kind's placeholders.
    pub async fn put_text(
        &self,
        merchant_id: &str,
        kind: &str,
        body: &str,
        actor: &str,
    ) -> GatewayResult<TextView> {
        let kind = parse_kind(kind)?;
        self.store.get_merchant(merchant_id).await?;
        template::check(body, kind.placeholders())
            .map_err(|err| GatewayError::invalid("body", err.to_string()))?;
        let text = self
            .store
            .put_wa_text(merchant_id, kind.as_str(), body, actor)
            .await?;
        Ok(TextView {
            kind,
            body: text.body,
            custom: true,
            placeholders: kind.placeholders().to_vec(),
            template: self.settings.templates.get(&kind).map(|t| t.name.clone()),
        })
    }

    /// Back to the built-in text.
    pub async fn reset_text(&self, merchant_id: &str, kind: &str) -> GatewayResult<()> {
        let kind = parse_kind(kind)?;
        Ok(self
            .store
            .delete_wa_text(merchant_id, kind.as_str())
            .await?)
    }

    pub async fn merchant_settings(&self, merchant_id: &str) -> GatewayResult<WaMerchantSettings> {
        self.store.get_merchant(merchant_id).await?;
        Ok(self
            .store
            .wa_merchant_settings(merchant_id)
            .await?
            .unwrap_or(WaMerchantSettings {
                merchant_id: merchant_id.to_owned(),
                contact_phone: None,
                daily_summary: false,
                device_alerts: false,
                open_minute: 8 * 60,
                close_minute: 21 * 60,
            }))
    }

    pub async fn put_merchant_settings(
        &self,
        mut settings: WaMerchantSettings,
    ) -> GatewayResult<WaMerchantSettings> {
        self.store.get_merchant(&settings.merchant_id).await?;
        settings.contact_phone = settings
            .contact_phone
            .as_deref()
            .map(|p| validate::wa_phone("contact_phone", p))
            .transpose()?;
        if !(0..=1439).contains(&settings.open_minute) {
            return Err(GatewayError::invalid("open", "must be 00:00 to 23:59"));
        }
        if !(1..=1440).contains(&settings.close_minute)
            || settings.close_minute <= settings.open_minute
        {
            return Err(GatewayError::invalid(
                "close",
                "must be after the opening time",
            ));
        }
        Ok(self.store.put_wa_merchant_settings(settings).await?)
    }
}

fn parse_kind(kind: &str) -> GatewayResult<Kind> {
    Kind::parse(kind).ok_or_else(|| {
        GatewayError::invalid(
            "kind",
            format!(
                "must be one of {}",
                Kind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

fn message_text(text: &str) -> GatewayResult<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(GatewayError::invalid("text", "must not be empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(GatewayError::invalid(
            "text",
            format!("at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(text.to_owned())
}
