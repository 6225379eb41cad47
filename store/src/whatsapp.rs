//! WhatsApp notifications: merchants' own senders, the message outbox (a row first, then
//! sent by the cluster's one worker) and its log, contacts (the 24-hour window, opt-outs,
//! per-recipient pauses), inbound messages, the webhook inbox, merchants' notification texts
//! and choices, and device alert incidents.
//!
//! Instants the worker compares are Unix milliseconds from the gateway's clock; phone
//! numbers are E.164 digits (`62…`). The store never decides how a status webhook moves a
//! message: the gateway reads the message, decides, and writes with a compare-and-set on
//! the status it read ([`WhatsAppStore::advance_wa_message`]).

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::db::{Exec, query, query_as};
use crate::sql::{fetch_limit, new_id, now, paginate};
use crate::{Db, Page, PageRequest, StoreError, StoreResult};

string_enum!(
    /// Where a message is: `pending` (queued, or waiting for its retry), `sending` (claimed,
    /// the request in flight), `sent` / `delivered` / `read` (Meta's statuses), `failed`
    /// (final, or until someone retries it), `uncertain` (the process stopped while its
    /// request was in flight: it may or may not have gone; never re-sent by itself),
    /// `cancelled`.
    MessageStatus {
        Pending = "pending",
        Sending = "sending",
        Sent = "sent",
        Delivered = "delivered",
        Read = "read",
        Failed = "failed",
        Uncertain = "uncertain",
        Cancelled = "cancelled",
    }
);

string_enum!(
    /// How a sender reaches WhatsApp.
    SenderKind {
        /// Meta's WhatsApp Business Cloud API.
        Cloud = "cloud",
        /// An HTTP gateway the operator or merchant runs.
        Gateway = "gateway",
    }
);

/// The sender id of the operator's own number (from the configuration).
pub const OPERATOR_SENDER: &str = "operator";

/// One message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct WaMessage {
    pub id: String,
    pub merchant_id: Option<String>,
    pub sender_id: String,
    pub recipient: String,
    pub kind: String,
    pub bulk: bool,
    pub body: String,
    /// A JSON array of the template's values.
    pub template_params: Option<String>,
    pub via_template: bool,
    pub dedupe_key: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: MessageStatus,
    pub wamid: Option<String>,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub error_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub sent_at_ms: Option<i64>,
    pub delivered_at_ms: Option<i64>,
    pub read_at_ms: Option<i64>,
    pub updated_at: OffsetDateTime,
}

const MESSAGE_COLUMNS: &str = "id, merchant_id, sender_id, recipient, kind, bulk, body, \
     template_params, via_template, dedupe_key, status, wamid, attempts, next_attempt_ms, \
     error_code, last_error, created_by, created_at, sent_at_ms, delivered_at_ms, read_at_ms, \
     updated_at";

/// A message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWaMessage {
    pub merchant_id: Option<String>,
    pub sender_id: String,
    pub recipient: String,
    pub kind: String,
    pub bulk: bool,
    pub body: String,
    pub template_params: Option<String>,
    /// Queued at most once per key: a second message with the key is not inserted.
    pub dedupe_key: Option<String>,
    /// Not sent before this instant.
    pub not_before_ms: i64,
    pub created_by: String,
}

/// A line of a message's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct WaMessageEvent {
    pub id: String,
    pub message_id: String,
    pub status: String,
    pub detail: Option<String>,
    pub at_ms: i64,
}

/// Which messages a list shows; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaMessageFilter {
    pub merchant_id: Option<String>,
    pub status: Option<MessageStatus>,
    pub kind: Option<String>,
    pub recipient: Option<String>,
}

/// How a claimed send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaSendOutcome {
    /// Accepted by WhatsApp with this message id.
    Sent { wamid: String, at_ms: i64 },
    /// Back to `pending` until `next_attempt_ms` (a rate limit, a pause, a fall-back to the
    /// template: `via_template`).
    Retry {
        next_attempt_ms: i64,
        error_code: Option<i64>,
        error: String,
        via_template: bool,
        /// A retry that does not count as an attempt (a pause the message did not cause).
        refund_attempt: bool,
    },
    /// Final.
    Failed {
        error_code: Option<i64>,
        error: String,
    },
    /// The request may have reached WhatsApp; nobody knows.
    Uncertain { error: String },
}

/// A merchant's own WhatsApp number. `access_token` and `gateway_headers` are secrets:
/// `Debug` leaves them out and the API never answers them.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WaSender {
    pub merchant_id: String,
    #[sqlx(try_from = "String")]
    pub kind: SenderKind,
    pub phone_number_id: Option<String>,
    pub access_token: Option<String>,
    pub gateway_url: Option<String>,
    /// A JSON object of header names to values.
    pub gateway_headers: Option<String>,
    pub gateway_body: Option<String>,
    pub rate_per_sec: Option<i64>,
    pub daily_recipients: Option<i64>,
    pub active: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for WaSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaSender")
            .field("merchant_id", &self.merchant_id)
            .field("kind", &self.kind)
            .field("phone_number_id", &self.phone_number_id)
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<secret>"),
            )
            .field("gateway_url", &self.gateway_url)
            .field(
                "gateway_headers",
                &self.gateway_headers.as_ref().map(|_| "<secret>"),
            )
            .field("rate_per_sec", &self.rate_per_sec)
            .field("daily_recipients", &self.daily_recipients)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// What a merchant's sender is set to (the whole row is replaced).
#[derive(Clone, PartialEq, Eq)]
pub struct NewWaSender {
    pub kind: SenderKind,
    pub phone_number_id: Option<String>,
    pub access_token: Option<String>,
    pub gateway_url: Option<String>,
    pub gateway_headers: Option<String>,
    pub gateway_body: Option<String>,
    pub rate_per_sec: Option<i64>,
    pub daily_recipients: Option<i64>,
    pub active: bool,
}

impl std::fmt::Debug for NewWaSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewWaSender")
            .field("kind", &self.kind)
            .field("phone_number_id", &self.phone_number_id)
            .field("gateway_url", &self.gateway_url)
            .finish_non_exhaustive()
    }
}

/// What a number said to a sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct WaContact {
    pub sender_id: String,
    pub phone: String,
    pub last_inbound_ms: Option<i64>,
    pub opted_out_ms: Option<i64>,
    pub paused_until_ms: Option<i64>,
}

/// A message that was sent (for the worker's pacing after a restart or a lease move).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WaRecentSend {
    pub sender_id: String,
    pub recipient: String,
    pub bulk: bool,
    pub sent_at_ms: i64,
}

/// A webhook delivery as received.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WaWebhook {
    pub id: String,
    pub body: String,
    pub received_ms: i64,
}

/// A merchant's notification choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct WaMerchantSettings {
    pub merchant_id: String,
    pub contact_phone: Option<String>,
    pub daily_summary: bool,
    pub device_alerts: bool,
    pub open_minute: i64,
    pub close_minute: i64,
}

/// A merchant's own text for a notification kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct WaText {
    pub merchant_id: String,
    pub kind: String,
    pub body: String,
    pub updated_by: String,
    pub updated_at: OffsetDateTime,
}

/// A device the alert sweep looks at: its merchant, its last presence and battery.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertableDevice {
    pub device_id: String,
    pub serial: String,
    pub merchant_id: String,
    pub merchant_name: String,
    pub connected: Option<bool>,
    pub presence_changed_ms: Option<i64>,
    pub battery_pct: Option<i64>,
    pub charging: Option<bool>,
}

/// An alert incident of a device (`offline` or `battery`): open until `closed_ms`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WaIncident {
    pub id: String,
    pub device_id: String,
    pub kind: String,
    pub opened_ms: i64,
    pub closed_ms: Option<i64>,
}

/// A merchant's payments on one Jakarta day, for the daily summary.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DailyTakings {
    pub merchant_id: String,
    pub merchant_name: String,
    pub count: i64,
    pub total: i64,
}

#[async_trait]
pub trait WhatsAppStore: Send + Sync {
    /// Queues messages in one transaction, each with a `queued` log line; a message whose
    /// `dedupe_key` was queued before is skipped. Returns the inserted ones.
    async fn enqueue_wa_messages(&self, new: Vec<NewWaMessage>) -> StoreResult<Vec<WaMessage>>;
    async fn get_wa_message(&self, id: &str) -> StoreResult<WaMessage>;
    async fn wa_message_by_wamid(&self, wamid: &str) -> StoreResult<Option<WaMessage>>;
    async fn list_wa_messages(
        &self,
        filter: &WaMessageFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<WaMessage>>;
    async fn wa_message_events(&self, id: &str) -> StoreResult<Vec<WaMessageEvent>>;
    /// Counts by status (for the queue's summary), for one merchant or all.
    async fn wa_status_counts(&self, merchant_id: Option<&str>) -> StoreResult<Vec<(String, i64)>>;

    /// Pending messages due by `until_ms`, oldest due first.
    async fn due_wa_messages(&self, until_ms: i64, limit: i64) -> StoreResult<Vec<WaMessage>>;
    /// Claims several messages in one transaction (one commit for a whole pass of the
    /// worker): those still pending, as [`WhatsAppStore::claim_wa_message`] does each.
    async fn claim_wa_messages(
        &self,
        ids: &[String],
        node: &str,
        now_ms: i64,
        claim_until_ms: i64,
    ) -> StoreResult<Vec<WaMessage>>;
    /// `pending → sending` for `node` until `claim_until_ms`, counting an attempt, with a
    /// `sending` log line. `None` when it is no longer pending (cancelled, claimed).
    async fn claim_wa_message(
        &self,
        id: &str,
        node: &str,
        now_ms: i64,
        claim_until_ms: i64,
    ) -> StoreResult<Option<WaMessage>>;
    /// Records how a claimed send ended (only while it is still `sending`), with a log line.
    async fn finish_wa_message(
        &self,
        id: &str,
        outcome: WaSendOutcome,
        at_ms: i64,
    ) -> StoreResult<()>;
    /// Messages left `sending` past their claim (the process stopped mid-send) become
    /// `uncertain`; returns their ids.
    async fn mark_stale_wa_sends(&self, now_ms: i64) -> StoreResult<Vec<String>>;
    /// Moves a message from `from` to `to` (a status webhook), recording the instant of
    /// `sent`/`delivered`/`read` and the error of `failed`; `false` when it was no longer
    /// `from` (the caller reads again).
    async fn advance_wa_message(
        &self,
        id: &str,
        from: MessageStatus,
        to: MessageStatus,
        at_ms: i64,
        error: Option<(Option<i64>, String)>,
        wamid: Option<&str>,
    ) -> StoreResult<bool>;
    /// `failed` or `uncertain` → `pending` (due at `now_ms`), by a person.
    async fn retry_wa_message(&self, id: &str, actor: &str, now_ms: i64) -> StoreResult<WaMessage>;
    /// `pending` → `cancelled`, by a person.
    async fn cancel_wa_message(&self, id: &str, actor: &str, now_ms: i64)
    -> StoreResult<WaMessage>;
    /// Sends since `since_ms` (pacing state after a restart or a lease move).
    async fn recent_wa_sends(&self, since_ms: i64) -> StoreResult<Vec<WaRecentSend>>;

    async fn put_wa_sender(&self, merchant_id: &str, new: NewWaSender) -> StoreResult<WaSender>;
    async fn get_wa_sender(&self, merchant_id: &str) -> StoreResult<Option<WaSender>>;
    async fn delete_wa_sender(&self, merchant_id: &str) -> StoreResult<()>;
    async fn list_wa_senders(&self) -> StoreResult<Vec<WaSender>>;
    async fn wa_sender_by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> StoreResult<Option<WaSender>>;
    /// Stops a sender until `until_ms` (extends, never shortens, a pause).
    async fn pause_wa_sender(
        &self,
        sender_id: &str,
        until_ms: i64,
        reason: &str,
    ) -> StoreResult<()>;
    /// Senders paused past `now_ms`: (sender, until, reason).
    async fn wa_sender_pauses(&self, now_ms: i64) -> StoreResult<Vec<(String, i64, String)>>;

    async fn get_wa_contact(&self, sender_id: &str, phone: &str) -> StoreResult<Option<WaContact>>;
    /// Records an inbound message (opening the window); `false` if its id was seen before.
    async fn record_wa_inbound(
        &self,
        sender_id: &str,
        phone: &str,
        wamid: &str,
        text: Option<&str>,
        at_ms: i64,
    ) -> StoreResult<bool>;
    /// Opts a number out (`Some(at)`) or back in (`None`).
    async fn set_wa_opt_out(
        &self,
        sender_id: &str,
        phone: &str,
        at_ms: Option<i64>,
    ) -> StoreResult<()>;
    async fn pause_wa_contact(
        &self,
        sender_id: &str,
        phone: &str,
        until_ms: i64,
    ) -> StoreResult<()>;
    /// Inbound messages per sender received after `since_ms`.
    async fn wa_inbound_since(&self, since_ms: i64) -> StoreResult<Vec<(String, i64)>>;

    async fn record_wa_webhook(&self, body: &str, received_ms: i64) -> StoreResult<String>;
    async fn unprocessed_wa_webhooks(&self, limit: i64) -> StoreResult<Vec<WaWebhook>>;
    async fn finish_wa_webhook(&self, id: &str, at_ms: i64, error: Option<&str>)
    -> StoreResult<()>;

    async fn wa_texts(&self, merchant_id: &str) -> StoreResult<Vec<WaText>>;
    async fn put_wa_text(
        &self,
        merchant_id: &str,
        kind: &str,
        body: &str,
        actor: &str,
    ) -> StoreResult<WaText>;
    async fn delete_wa_text(&self, merchant_id: &str, kind: &str) -> StoreResult<()>;

    async fn wa_merchant_settings(
        &self,
        merchant_id: &str,
    ) -> StoreResult<Option<WaMerchantSettings>>;
    async fn put_wa_merchant_settings(
        &self,
        settings: WaMerchantSettings,
    ) -> StoreResult<WaMerchantSettings>;
    /// Merchants that want the daily summary.
    async fn wa_summary_merchants(&self) -> StoreResult<Vec<WaMerchantSettings>>;
    /// Paid payments per merchant between two instants (for the daily summary).
    async fn takings_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<Vec<DailyTakings>>;

    /// Devices bound to a terminal of a merchant that wants device alerts.
    async fn alertable_devices(&self) -> StoreResult<Vec<AlertableDevice>>;
    /// Every open incident (the alert sweep writes only when one opens or closes).
    async fn open_wa_incidents(&self) -> StoreResult<Vec<WaIncident>>;
    /// Opens an incident and returns its id; `None` if one of the kind is open for the
    /// device already (an alert is sent once per incident, keyed by this id).
    async fn open_wa_incident(
        &self,
        device_id: &str,
        kind: &str,
        at_ms: i64,
    ) -> StoreResult<Option<String>>;
    /// Closes the open incident and returns it; `None` if none was open.
    async fn close_wa_incident(
        &self,
        device_id: &str,
        kind: &str,
        at_ms: i64,
    ) -> StoreResult<Option<WaIncident>>;
}

async fn log_event(
    exec: Exec<'_>,
    message_id: &str,
    status: &str,
    detail: Option<&str>,
    at_ms: i64,
) -> StoreResult<()> {
    query(
        "INSERT INTO wa_message_events (id, message_id, status, detail, at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(new_id("wme"))
    .bind(message_id)
    .bind(status)
    .bind(detail)
    .bind(at_ms)
    .execute(exec)
    .await?;
    Ok(())
}

/// `pending → sending` with its log line, inside the caller's transaction.
async fn claim_in(
    mut exec: Exec<'_>,
    id: &str,
    node: &str,
    now_ms: i64,
    claim_until_ms: i64,
) -> StoreResult<Option<WaMessage>> {
    let claimed = query_as::<WaMessage>(format!(
        "UPDATE wa_messages SET status = 'sending', claimed_by = $2, claim_until_ms = $3, \
         attempts = attempts + 1, updated_at = $4 WHERE id = $1 AND status = 'pending' \
         RETURNING {MESSAGE_COLUMNS}"
    ))
    .bind(id)
    .bind(node)
    .bind(claim_until_ms)
    .bind(now())
    .fetch_optional(Exec::from(&mut exec))
    .await?;
    if let Some(message) = &claimed {
        let detail = format!(
            "attempt {} by {node}{}",
            message.attempts,
            if message.via_template {
                " (template)"
            } else {
                ""
            }
        );
        log_event(exec, id, "sending", Some(&detail), now_ms).await?;
    }
    Ok(claimed)
}

/// Sets one of a contact's instants (`opted_out_ms`, `paused_until_ms`), making the contact
/// if it is new.
async fn set_contact(
    db: &Db,
    column: &'static str,
    sender_id: &str,
    phone: &str,
    value: Option<i64>,
) -> StoreResult<()> {
    let mut conn = db.write_conn().await?;
    query(format!(
        "INSERT INTO wa_contacts (sender_id, phone, {column}, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (sender_id, phone) DO UPDATE SET \
         {column} = $3, updated_at = $4"
    ))
    .bind(sender_id)
    .bind(phone)
    .bind(value)
    .bind(now())
    .execute(conn.exec())
    .await?;
    Ok(())
}

fn wrong_state(id: &str, action: &str, status: MessageStatus) -> StoreError {
    StoreError::conflict(
        "wrong_status",
        None,
        format!("message {id} is {} and cannot be {action}", status.as_str()),
    )
}

#[async_trait]
impl WhatsAppStore for Db {
    async fn enqueue_wa_messages(&self, new: Vec<NewWaMessage>) -> StoreResult<Vec<WaMessage>> {
        let mut tx = self.begin_write().await?;
        let at = now();
        let mut inserted = Vec::with_capacity(new.len());
        for message in new {
            let id = new_id("wam");
            let row = query_as::<WaMessage>(format!(
                "INSERT INTO wa_messages (id, merchant_id, sender_id, recipient, kind, bulk, body, \
                 template_params, via_template, dedupe_key, status, attempts, next_attempt_ms, \
                 created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9, 'pending', 0, $10, $11, $12, $12) \
                 ON CONFLICT (dedupe_key) DO NOTHING RETURNING {MESSAGE_COLUMNS}"
            ))
            .bind(&id)
            .bind(message.merchant_id.as_deref())
            .bind(&message.sender_id)
            .bind(&message.recipient)
            .bind(&message.kind)
            .bind(message.bulk)
            .bind(&message.body)
            .bind(message.template_params.as_deref())
            .bind(message.dedupe_key.as_deref())
            .bind(message.not_before_ms)
            .bind(&message.created_by)
            .bind(at)
            .fetch_optional(tx.exec())
            .await?;
            if let Some(row) = row {
                log_event(
                    tx.exec(),
                    &row.id,
                    "queued",
                    Some(&format!("by {}", message.created_by)),
                    message.not_before_ms,
                )
                .await?;
                inserted.push(row);
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn get_wa_message(&self, id: &str) -> StoreResult<WaMessage> {
        query_as::<WaMessage>(format!(
            "SELECT {MESSAGE_COLUMNS} FROM wa_messages WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.read())
        .await?
        .ok_or_else(|| StoreError::not_found("message", id))
    }

    async fn wa_message_by_wamid(&self, wamid: &str) -> StoreResult<Option<WaMessage>> {
        Ok(query_as::<WaMessage>(format!(
            "SELECT {MESSAGE_COLUMNS} FROM wa_messages WHERE wamid = $1"
        ))
        .bind(wamid)
        .fetch_optional(self.read())
        .await?)
    }

    async fn list_wa_messages(
        &self,
        filter: &WaMessageFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<WaMessage>> {
        let rows = query_as::<WaMessage>(format!(
            "SELECT {MESSAGE_COLUMNS} FROM wa_messages WHERE ($1 IS NULL OR id < $1) \
             AND ($2 IS NULL OR merchant_id = $2) AND ($3 IS NULL OR status = $3) \
             AND ($4 IS NULL OR kind = $4) AND ($5 IS NULL OR recipient = $5) \
             ORDER BY id DESC LIMIT $6"
        ))
        .bind(page.after.as_deref())
        .bind(filter.merchant_id.as_deref())
        .bind(filter.status.map(MessageStatus::as_str))
        .bind(filter.kind.as_deref())
        .bind(filter.recipient.as_deref())
        .bind(fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(paginate(rows, page.limit, |m| &m.id))
    }

    async fn wa_message_events(&self, id: &str) -> StoreResult<Vec<WaMessageEvent>> {
        Ok(query_as::<WaMessageEvent>(
            "SELECT id, message_id, status, detail, at_ms FROM wa_message_events \
             WHERE message_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.read())
        .await?)
    }

    async fn wa_status_counts(&self, merchant_id: Option<&str>) -> StoreResult<Vec<(String, i64)>> {
        Ok(query_as::<(String, i64)>(
            "SELECT status, COUNT(*) FROM wa_messages WHERE ($1 IS NULL OR merchant_id = $1) \
             GROUP BY status ORDER BY status",
        )
        .bind(merchant_id)
        .fetch_all(self.read())
        .await?)
    }

    async fn due_wa_messages(&self, until_ms: i64, limit: i64) -> StoreResult<Vec<WaMessage>> {
        Ok(query_as::<WaMessage>(format!(
            "SELECT {MESSAGE_COLUMNS} FROM wa_messages WHERE status = 'pending' \
             AND next_attempt_ms <= $1 ORDER BY next_attempt_ms, id LIMIT $2"
        ))
        .bind(until_ms)
        .bind(limit)
        .fetch_all(self.read())
        .await?)
    }

    async fn claim_wa_messages(
        &self,
        ids: &[String],
        node: &str,
        now_ms: i64,
        claim_until_ms: i64,
    ) -> StoreResult<Vec<WaMessage>> {
        let mut tx = self.begin_write().await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(message) = claim_in(tx.exec(), id, node, now_ms, claim_until_ms).await? {
                claimed.push(message);
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn claim_wa_message(
        &self,
        id: &str,
        node: &str,
        now_ms: i64,
        claim_until_ms: i64,
    ) -> StoreResult<Option<WaMessage>> {
        let mut tx = self.begin_write().await?;
        let claimed = claim_in(tx.exec(), id, node, now_ms, claim_until_ms).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish_wa_message(
        &self,
        id: &str,
        outcome: WaSendOutcome,
        at_ms: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let at = now();
        let (status, detail, done) = match &outcome {
            WaSendOutcome::Sent { wamid, at_ms } => {
                let done = query(
                    "UPDATE wa_messages SET status = 'sent', wamid = $2, sent_at_ms = $3, \
                     claimed_by = NULL, claim_until_ms = NULL, error_code = NULL, \
                     last_error = NULL, updated_at = $4 WHERE id = $1 AND status = 'sending'",
                )
                .bind(id)
                .bind(wamid)
                .bind(*at_ms)
                .bind(at)
                .execute(tx.exec())
                .await?;
                ("sent", wamid.clone(), done)
            }
            WaSendOutcome::Retry {
                next_attempt_ms,
                error_code,
                error,
                via_template,
                refund_attempt,
            } => {
                let done = query(
                    "UPDATE wa_messages SET status = 'pending', next_attempt_ms = $2, \
                     error_code = $3, last_error = $4, via_template = $5, \
                     attempts = attempts - $6, claimed_by = NULL, claim_until_ms = NULL, \
                     updated_at = $7 WHERE id = $1 AND status = 'sending'",
                )
                .bind(id)
                .bind(*next_attempt_ms)
                .bind(*error_code)
                .bind(error)
                .bind(*via_template)
                .bind(i64::from(*refund_attempt))
                .bind(at)
                .execute(tx.exec())
                .await?;
                ("retry", error.clone(), done)
            }
            WaSendOutcome::Failed { error_code, error } => {
                let done = query(
                    "UPDATE wa_messages SET status = 'failed', error_code = $2, last_error = $3, \
                     claimed_by = NULL, claim_until_ms = NULL, updated_at = $4 \
                     WHERE id = $1 AND status = 'sending'",
                )
                .bind(id)
                .bind(*error_code)
                .bind(error)
                .bind(at)
                .execute(tx.exec())
                .await?;
                ("failed", error.clone(), done)
            }
            WaSendOutcome::Uncertain { error } => {
                let done = query(
                    "UPDATE wa_messages SET status = 'uncertain', last_error = $2, \
                     claimed_by = NULL, claim_until_ms = NULL, updated_at = $3 \
                     WHERE id = $1 AND status = 'sending'",
                )
                .bind(id)
                .bind(error)
                .bind(at)
                .execute(tx.exec())
                .await?;
                ("uncertain", error.clone(), done)
            }
        };
        if done == 1 {
            log_event(tx.exec(), id, status, Some(&detail), at_ms).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn mark_stale_wa_sends(&self, now_ms: i64) -> StoreResult<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let stale: Vec<(String,)> = query_as(
            "UPDATE wa_messages SET status = 'uncertain', \
             last_error = 'the process stopped while the request was in flight', \
             claimed_by = NULL, claim_until_ms = NULL, updated_at = $2 \
             WHERE status = 'sending' AND claim_until_ms < $1 RETURNING id",
        )
        .bind(now_ms)
        .bind(now())
        .fetch_all(tx.exec())
        .await?;
        for (id,) in &stale {
            log_event(
                tx.exec(),
                id,
                "uncertain",
                Some("the send was in flight when its worker stopped; not re-sent"),
                now_ms,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(stale.into_iter().map(|(id,)| id).collect())
    }

    async fn advance_wa_message(
        &self,
        id: &str,
        from: MessageStatus,
        to: MessageStatus,
        at_ms: i64,
        error: Option<(Option<i64>, String)>,
        wamid: Option<&str>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let column = match to {
            MessageStatus::Sent => Some("sent_at_ms"),
            MessageStatus::Delivered => Some("delivered_at_ms"),
            MessageStatus::Read => Some("read_at_ms"),
            _ => None,
        };
        let stamp = column
            .map(|c| format!(", {c} = COALESCE({c}, $4)"))
            .unwrap_or_default();
        let (code, text) = match &error {
            Some((code, text)) => (*code, Some(text.as_str())),
            None => (None, None),
        };
        let done = query(format!(
            "UPDATE wa_messages SET status = $3, updated_at = $5, \
             error_code = COALESCE($6, error_code), last_error = COALESCE($7, last_error), \
             wamid = COALESCE(wamid, $8) {stamp} WHERE id = $1 AND status = $2"
        ))
        .bind(id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(at_ms)
        .bind(now())
        .bind(code)
        .bind(text)
        .bind(wamid)
        .execute(tx.exec())
        .await?;
        if done == 1 {
            log_event(tx.exec(), id, to.as_str(), text, at_ms).await?;
        }
        tx.commit().await?;
        Ok(done == 1)
    }

    async fn retry_wa_message(&self, id: &str, actor: &str, now_ms: i64) -> StoreResult<WaMessage> {
        let mut tx = self.begin_write().await?;
        let row = query_as::<WaMessage>(format!(
            "UPDATE wa_messages SET status = 'pending', next_attempt_ms = $2, updated_at = $3 \
             WHERE id = $1 AND status IN ('failed', 'uncertain') RETURNING {MESSAGE_COLUMNS}"
        ))
        .bind(id)
        .bind(now_ms)
        .bind(now())
        .fetch_optional(tx.exec())
        .await?;
        let Some(row) = row else {
            let current = self.get_wa_message(id).await?;
            return Err(wrong_state(id, "retried", current.status));
        };
        log_event(tx.exec(), id, "retry", Some(&format!("by {actor}")), now_ms).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn cancel_wa_message(
        &self,
        id: &str,
        actor: &str,
        now_ms: i64,
    ) -> StoreResult<WaMessage> {
        let mut tx = self.begin_write().await?;
        let row = query_as::<WaMessage>(format!(
            "UPDATE wa_messages SET status = 'cancelled', updated_at = $2 \
             WHERE id = $1 AND status = 'pending' RETURNING {MESSAGE_COLUMNS}"
        ))
        .bind(id)
        .bind(now())
        .fetch_optional(tx.exec())
        .await?;
        let Some(row) = row else {
            let current = self.get_wa_message(id).await?;
            return Err(wrong_state(id, "cancelled", current.status));
        };
        log_event(
            tx.exec(),
            id,
            "cancelled",
            Some(&format!("by {actor}")),
            now_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn recent_wa_sends(&self, since_ms: i64) -> StoreResult<Vec<WaRecentSend>> {
        Ok(query_as::<WaRecentSend>(
            "SELECT sender_id, recipient, bulk, sent_at_ms FROM wa_messages \
             WHERE sent_at_ms >= $1 ORDER BY sent_at_ms",
        )
        .bind(since_ms)
        .fetch_all(self.read())
        .await?)
    }

    async fn put_wa_sender(&self, merchant_id: &str, new: NewWaSender) -> StoreResult<WaSender> {
        let mut tx = self.begin_write().await?;
        let at = now();
        let row = query_as::<WaSender>(
            "INSERT INTO wa_senders (merchant_id, kind, phone_number_id, access_token, \
             gateway_url, gateway_headers, gateway_body, rate_per_sec, daily_recipients, active, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
             ON CONFLICT (merchant_id) DO UPDATE SET kind = $2, phone_number_id = $3, \
             access_token = $4, gateway_url = $5, gateway_headers = $6, gateway_body = $7, \
             rate_per_sec = $8, daily_recipients = $9, active = $10, updated_at = $11 \
             RETURNING *",
        )
        .bind(merchant_id)
        .bind(new.kind.as_str())
        .bind(new.phone_number_id.as_deref())
        .bind(new.access_token.as_deref())
        .bind(new.gateway_url.as_deref())
        .bind(new.gateway_headers.as_deref())
        .bind(new.gateway_body.as_deref())
        .bind(new.rate_per_sec)
        .bind(new.daily_recipients)
        .bind(new.active)
        .bind(at)
        .fetch_one(tx.exec())
        .await
        .map_err(|err| match StoreError::from(err) {
            StoreError::Conflict {
                code: "already_exists",
                ..
            } => StoreError::conflict(
                "phone_number_id_taken",
                Some("phone_number_id"),
                "another merchant's sender has this phone number id",
            ),
            other => other,
        })?;
        tx.commit().await?;
        Ok(row)
    }

    async fn get_wa_sender(&self, merchant_id: &str) -> StoreResult<Option<WaSender>> {
        Ok(
            query_as::<WaSender>("SELECT * FROM wa_senders WHERE merchant_id = $1")
                .bind(merchant_id)
                .fetch_optional(self.read())
                .await?,
        )
    }

    // A person's write (the admin API audits it): a transaction, so it carries the audit
    // scope's row; `write_conn` would not.
    async fn delete_wa_sender(&self, merchant_id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = query("DELETE FROM wa_senders WHERE merchant_id = $1")
            .bind(merchant_id)
            .execute(tx.exec())
            .await?;
        if done == 0 {
            return Err(StoreError::not_found("whatsapp sender", merchant_id));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_wa_senders(&self) -> StoreResult<Vec<WaSender>> {
        Ok(
            query_as::<WaSender>("SELECT * FROM wa_senders ORDER BY merchant_id")
                .fetch_all(self.read())
                .await?,
        )
    }

    async fn wa_sender_by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> StoreResult<Option<WaSender>> {
        Ok(
            query_as::<WaSender>("SELECT * FROM wa_senders WHERE phone_number_id = $1")
                .bind(phone_number_id)
                .fetch_optional(self.read())
                .await?,
        )
    }

    async fn pause_wa_sender(
        &self,
        sender_id: &str,
        until_ms: i64,
        reason: &str,
    ) -> StoreResult<()> {
        let mut conn = self.write_conn().await?;
        query(
            "INSERT INTO wa_sender_pauses (sender_id, paused_until_ms, reason, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (sender_id) DO UPDATE SET \
             paused_until_ms = CASE WHEN wa_sender_pauses.paused_until_ms > $2 \
             THEN wa_sender_pauses.paused_until_ms ELSE $2 END, reason = $3, updated_at = $4",
        )
        .bind(sender_id)
        .bind(until_ms)
        .bind(reason)
        .bind(now())
        .execute(conn.exec())
        .await?;
        Ok(())
    }

    async fn wa_sender_pauses(&self, now_ms: i64) -> StoreResult<Vec<(String, i64, String)>> {
        Ok(query_as::<(String, i64, String)>(
            "SELECT sender_id, paused_until_ms, reason FROM wa_sender_pauses \
             WHERE paused_until_ms > $1 ORDER BY sender_id",
        )
        .bind(now_ms)
        .fetch_all(self.read())
        .await?)
    }

    async fn get_wa_contact(&self, sender_id: &str, phone: &str) -> StoreResult<Option<WaContact>> {
        Ok(query_as::<WaContact>(
            "SELECT sender_id, phone, last_inbound_ms, opted_out_ms, paused_until_ms \
             FROM wa_contacts WHERE sender_id = $1 AND phone = $2",
        )
        .bind(sender_id)
        .bind(phone)
        .fetch_optional(self.read())
        .await?)
    }

    async fn record_wa_inbound(
        &self,
        sender_id: &str,
        phone: &str,
        wamid: &str,
        text: Option<&str>,
        at_ms: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let new = query(
            "INSERT INTO wa_inbound (wamid, sender_id, phone, text, received_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (wamid) DO NOTHING",
        )
        .bind(wamid)
        .bind(sender_id)
        .bind(phone)
        .bind(text)
        .bind(at_ms)
        .execute(tx.exec())
        .await?;
        if new == 1 {
            query(
                "INSERT INTO wa_contacts (sender_id, phone, last_inbound_ms, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (sender_id, phone) DO UPDATE SET \
                 last_inbound_ms = CASE WHEN wa_contacts.last_inbound_ms > $3 \
                 THEN wa_contacts.last_inbound_ms ELSE $3 END, updated_at = $4",
            )
            .bind(sender_id)
            .bind(phone)
            .bind(at_ms)
            .bind(now())
            .execute(tx.exec())
            .await?;
        }
        tx.commit().await?;
        Ok(new == 1)
    }

    async fn set_wa_opt_out(
        &self,
        sender_id: &str,
        phone: &str,
        at_ms: Option<i64>,
    ) -> StoreResult<()> {
        set_contact(self, "opted_out_ms", sender_id, phone, at_ms).await
    }

    async fn pause_wa_contact(
        &self,
        sender_id: &str,
        phone: &str,
        until_ms: i64,
    ) -> StoreResult<()> {
        set_contact(self, "paused_until_ms", sender_id, phone, Some(until_ms)).await
    }

    async fn wa_inbound_since(&self, since_ms: i64) -> StoreResult<Vec<(String, i64)>> {
        Ok(query_as::<(String, i64)>(
            "SELECT sender_id, COUNT(*) FROM wa_inbound WHERE received_ms > $1 \
             GROUP BY sender_id",
        )
        .bind(since_ms)
        .fetch_all(self.read())
        .await?)
    }

    async fn record_wa_webhook(&self, body: &str, received_ms: i64) -> StoreResult<String> {
        let id = new_id("wwh");
        let mut conn = self.write_conn().await?;
        query("INSERT INTO wa_webhook_inbox (id, body, received_ms) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(body)
            .bind(received_ms)
            .execute(conn.exec())
            .await?;
        Ok(id)
    }

    async fn unprocessed_wa_webhooks(&self, limit: i64) -> StoreResult<Vec<WaWebhook>> {
        Ok(query_as::<WaWebhook>(
            "SELECT id, body, received_ms FROM wa_webhook_inbox WHERE processed_ms IS NULL \
             ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.read())
        .await?)
    }

    async fn finish_wa_webhook(
        &self,
        id: &str,
        at_ms: i64,
        error: Option<&str>,
    ) -> StoreResult<()> {
        let mut conn = self.write_conn().await?;
        query("UPDATE wa_webhook_inbox SET processed_ms = $2, error = $3 WHERE id = $1")
            .bind(id)
            .bind(at_ms)
            .bind(error)
            .execute(conn.exec())
            .await?;
        Ok(())
    }

    async fn wa_texts(&self, merchant_id: &str) -> StoreResult<Vec<WaText>> {
        Ok(
            query_as::<WaText>("SELECT * FROM wa_texts WHERE merchant_id = $1 ORDER BY kind")
                .bind(merchant_id)
                .fetch_all(self.read())
                .await?,
        )
    }

    async fn put_wa_text(
        &self,
        merchant_id: &str,
        kind: &str,
        body: &str,
        actor: &str,
    ) -> StoreResult<WaText> {
        let mut tx = self.begin_write().await?;
        let row = query_as::<WaText>(
            "INSERT INTO wa_texts (merchant_id, kind, body, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (merchant_id, kind) DO UPDATE SET \
             body = $3, updated_by = $4, updated_at = $5 RETURNING *",
        )
        .bind(merchant_id)
        .bind(kind)
        .bind(body)
        .bind(actor)
        .bind(now())
        .fetch_one(tx.exec())
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    // A person's write, audited: a transaction (see `delete_wa_sender`).
    async fn delete_wa_text(&self, merchant_id: &str, kind: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        query("DELETE FROM wa_texts WHERE merchant_id = $1 AND kind = $2")
            .bind(merchant_id)
            .bind(kind)
            .execute(tx.exec())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn wa_merchant_settings(
        &self,
        merchant_id: &str,
    ) -> StoreResult<Option<WaMerchantSettings>> {
        Ok(query_as::<WaMerchantSettings>(
            "SELECT merchant_id, contact_phone, daily_summary, device_alerts, open_minute, \
             close_minute FROM wa_merchant_settings WHERE merchant_id = $1",
        )
        .bind(merchant_id)
        .fetch_optional(self.read())
        .await?)
    }

    async fn put_wa_merchant_settings(
        &self,
        settings: WaMerchantSettings,
    ) -> StoreResult<WaMerchantSettings> {
        let mut tx = self.begin_write().await?;
        let row = query_as::<WaMerchantSettings>(
            "INSERT INTO wa_merchant_settings (merchant_id, contact_phone, daily_summary, \
             device_alerts, open_minute, close_minute, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (merchant_id) DO UPDATE SET \
             contact_phone = $2, daily_summary = $3, device_alerts = $4, open_minute = $5, \
             close_minute = $6, updated_at = $7 RETURNING merchant_id, contact_phone, \
             daily_summary, device_alerts, open_minute, close_minute",
        )
        .bind(&settings.merchant_id)
        .bind(settings.contact_phone.as_deref())
        .bind(settings.daily_summary)
        .bind(settings.device_alerts)
        .bind(settings.open_minute)
        .bind(settings.close_minute)
        .bind(now())
        .fetch_one(tx.exec())
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn wa_summary_merchants(&self) -> StoreResult<Vec<WaMerchantSettings>> {
        Ok(query_as::<WaMerchantSettings>(
            "SELECT merchant_id, contact_phone, daily_summary, device_alerts, open_minute, \
             close_minute FROM wa_merchant_settings WHERE daily_summary ORDER BY merchant_id",
        )
        .fetch_all(self.read())
        .await?)
    }

    async fn takings_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<Vec<DailyTakings>> {
        Ok(query_as::<DailyTakings>(
            "SELECT m.id AS merchant_id, m.name AS merchant_name, COUNT(t.id) AS count, \
             CAST(COALESCE(SUM(t.amount), 0) AS BIGINT) AS total FROM transactions t \
             JOIN merchants m ON m.id = t.merchant_id \
             WHERE t.status = 'paid' AND t.paid_at >= $1 AND t.paid_at < $2 \
             GROUP BY m.id, m.name ORDER BY m.id",
        )
        // SQLite compares the stored text: both ends in UTC, as every instant is stored.
        .bind(from.to_offset(time::UtcOffset::UTC))
        .bind(to.to_offset(time::UtcOffset::UTC))
        .fetch_all(self.read())
        .await?)
    }

    async fn alertable_devices(&self) -> StoreResult<Vec<AlertableDevice>> {
        Ok(query_as::<AlertableDevice>(
            "SELECT d.id AS device_id, d.serial, m.id AS merchant_id, m.name AS merchant_name, \
             p.connected, p.changed_at_ms AS presence_changed_ms, \
             (SELECT h.battery_pct FROM device_heartbeats h WHERE h.device_id = d.id \
              ORDER BY h.id DESC LIMIT 1) AS battery_pct, \
             (SELECT h.charging FROM device_heartbeats h WHERE h.device_id = d.id \
              ORDER BY h.id DESC LIMIT 1) AS charging \
             FROM devices d JOIN terminals t ON t.id = d.terminal_id \
             JOIN outlets o ON o.id = t.outlet_id JOIN merchants m ON m.id = o.merchant_id \
             JOIN wa_merchant_settings s ON s.merchant_id = m.id AND s.device_alerts \
             LEFT JOIN device_presence p ON p.device_id = d.id ORDER BY d.id",
        )
        .fetch_all(self.read())
        .await?)
    }

    async fn open_wa_incidents(&self) -> StoreResult<Vec<WaIncident>> {
        Ok(query_as::<WaIncident>(
            "SELECT id, device_id, kind, opened_ms, closed_ms FROM wa_device_incidents \
             WHERE closed_ms IS NULL ORDER BY id",
        )
        .fetch_all(self.read())
        .await?)
    }

    async fn open_wa_incident(
        &self,
        device_id: &str,
        kind: &str,
        at_ms: i64,
    ) -> StoreResult<Option<String>> {
        let mut conn = self.write_conn().await?;
        let id = new_id("wai");
        let done = query(
            "INSERT INTO wa_device_incidents (id, device_id, kind, opened_ms) \
             SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM wa_device_incidents \
             WHERE device_id = $2 AND kind = $3 AND closed_ms IS NULL)",
        )
        .bind(&id)
        .bind(device_id)
        .bind(kind)
        .bind(at_ms)
        .execute(conn.exec())
        .await?;
        Ok((done == 1).then_some(id))
    }

    async fn close_wa_incident(
        &self,
        device_id: &str,
        kind: &str,
        at_ms: i64,
    ) -> StoreResult<Option<WaIncident>> {
        let mut conn = self.write_conn().await?;
        Ok(query_as::<WaIncident>(
            "UPDATE wa_device_incidents SET closed_ms = $3 WHERE device_id = $1 AND kind = $2 \
             AND closed_ms IS NULL RETURNING id, device_id, kind, opened_ms, closed_ms",
        )
        .bind(device_id)
        .bind(kind)
        .bind(at_ms)
        .fetch_optional(conn.exec())
        .await?)
    }
}
