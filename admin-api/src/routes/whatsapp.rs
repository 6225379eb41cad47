//! WhatsApp: Meta's webhook (public: the verification handshake, and deliveries checked by
//! their `X-Hub-Signature-256` over the exact bytes), the outbox and each message's log,
//! retrying and cancelling, staff messages to one or many numbers, and a merchant's sender,
//! texts and notification settings.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gema_gateway::whatsapp::MAX_BULK_RECIPIENTS;
use gema_gateway::{GatewayError, validate};
use gema_store::billing::{CustomerFilter, CustomerStatus};
use gema_store::{MessageStatus, PageRequest, WaMerchantSettings, WaMessageFilter};

use crate::authz::{Caller, MerchantScope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::whatsapp::{
    BulkQueued, Message, MessageDetail, MessageQuery, PutSender, PutSettings, PutText, SendBulk,
    SendMessage, Sender, Settings, Summary, SummaryQuery, Text, WebhookAck, WebhookVerification,
};
use crate::views::{Page, PageParams};

// ---- Meta's webhook (public) --------------------------------------------------------------

#[utoipa::path(get, path = "/whatsapp/webhook", tag = "whatsapp webhook", security(()),
    params(WebhookVerification),
    responses(
        (status = 200, description = "The challenge, as plain text", content_type = "text/plain", body = String),
        (status = 403, description = "Not `subscribe`, or the verify token does not match (or none is configured)", body = ErrorBody)))]
pub async fn verify(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<WebhookVerification>,
) -> ApiResult<Response> {
    match state.whatsapp.verify_subscription(
        query.mode.as_deref(),
        query.verify_token.as_deref(),
        query.challenge.as_deref(),
    ) {
        Some(challenge) => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            challenge,
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the webhook verification does not match",
        )),
    }
}

#[utoipa::path(post, path = "/whatsapp/webhook", tag = "whatsapp webhook", security(()),
    request_body(content = Object, description = "Meta's webhook (statuses, inbound messages), \
        signed: X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>"),
    responses(
        (status = 200, description = "Recorded; applied shortly after", body = WebhookAck),
        (status = 400, description = "Not UTF-8", body = ErrorBody),
        (status = 401, description = "Signature missing or wrong, or no app secret configured; nothing recorded", body = ErrorBody)))]
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookAck>> {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    state.whatsapp.ingest_webhook(&body, signature).await?;
    Ok(Json(WebhookAck {
        status: "ok".into(),
    }))
}

// ---- the outbox ---------------------------------------------------------------------------

#[utoipa::path(get, path = "/whatsapp/messages", tag = "whatsapp", params(PageParams, MessageQuery),
    responses((status = 200, body = Page<Message>), (status = 404, description = "Another merchant's (merchant users)", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn messages(
    State(state): State<AppState>,
    scope: MerchantScope,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<MessageQuery>,
) -> ApiResult<Json<Page<Message>>> {
    let status = query
        .status
        .as_deref()
        .map(|s| {
            MessageStatus::parse(s).ok_or_else(|| {
                let all: Vec<_> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::invalid_field("status", format!("is one of {}", all.join(", ")))
            })
        })
        .transpose()?;
    let kind = query
        .kind
        .as_deref()
        .map(|k| {
            gema_gateway::whatsapp::Kind::parse(k).ok_or_else(|| {
                let all: Vec<_> = gema_gateway::whatsapp::Kind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect();
                ApiError::invalid_field("kind", format!("is one of {}", all.join(", ")))
            })
        })
        .transpose()?;
    let recipient = query
        .recipient
        .as_deref()
        .map(|r| validate::wa_phone("recipient", r))
        .transpose()?;
    let filter = WaMessageFilter {
        merchant_id: scope.apply(query.merchant_id)?,
        status,
        kind: kind.map(|k| k.as_str().to_owned()),
        recipient,
    };
    let page = state
        .whatsapp
        .messages(&filter, &page.to_request()?)
        .await?;
    Ok(Json(Page::from_store(page, Message::from)))
}

#[utoipa::path(get, path = "/whatsapp/messages/{id}", tag = "whatsapp", params(("id" = String, Path)),
    responses((status = 200, body = MessageDetail), (status = 404, body = ErrorBody)))]
pub async fn message(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageDetail>> {
    Ok(Json(state.whatsapp.message(&id).await?.into()))
}

#[utoipa::path(get, path = "/whatsapp/summary", tag = "whatsapp", params(SummaryQuery),
    responses((status = 200, body = Summary), (status = 404, description = "Another merchant's (merchant users)", body = ErrorBody)))]
pub async fn summary(
    State(state): State<AppState>,
    scope: MerchantScope,
    ApiQuery(query): ApiQuery<SummaryQuery>,
) -> ApiResult<Json<Summary>> {
    let merchant_id = scope.apply(query.merchant_id)?;
    let counts = state.whatsapp.counts(merchant_id.as_deref()).await?;
    Ok(Json(Summary {
        merchant_id,
        counts,
    }))
}

#[utoipa::path(post, path = "/whatsapp/messages/{id}/retry", tag = "whatsapp", params(("id" = String, Path)),
    responses((status = 200, description = "Pending again, due now", body = Message), (status = 404, body = ErrorBody),
        (status = 409, description = "Not failed or uncertain (`wrong_status`)", body = ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Message>> {
    Ok(Json(state.whatsapp.retry(&id, &caller.actor).await?.into()))
}

#[utoipa::path(post, path = "/whatsapp/messages/{id}/cancel", tag = "whatsapp", params(("id" = String, Path)),
    responses((status = 200, body = Message), (status = 404, body = ErrorBody),
        (status = 409, description = "Not pending (`wrong_status`)", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Message>> {
    Ok(Json(
        state.whatsapp.cancel(&id, &caller.actor).await?.into(),
    ))
}

// ---- staff messages -----------------------------------------------------------------------

#[utoipa::path(post, path = "/merchants/{id}/whatsapp/messages", tag = "whatsapp",
    params(("id" = String, Path)), request_body = SendMessage,
    responses((status = 202, description = "Queued", body = Message), (status = 404, body = ErrorBody),
        (status = 409, description = "The number opted out (`opted_out`), or no sender is configured (`whatsapp_not_configured`)", body = ErrorBody),
        (status = 422, description = "`to` or `text`", body = ErrorBody)))]
pub async fn send(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SendMessage>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    state.registry.merchant(&id).await?;
    let message = state
        .whatsapp
        .send_manual(&id, &body.to, &body.text, &caller.actor)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(message.into())))
}

#[utoipa::path(post, path = "/merchants/{id}/whatsapp/bulk", tag = "whatsapp",
    params(("id" = String, Path)), request_body = SendBulk,
    responses((status = 202, description = "Queued, paced as bulk", body = BulkQueued), (status = 404, body = ErrorBody),
        (status = 409, description = "No sender is configured (`whatsapp_not_configured`)", body = ErrorBody),
        (status = 422, description = "`to`, `customers` or `text`", body = ErrorBody)))]
pub async fn bulk(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SendBulk>,
) -> ApiResult<(StatusCode, Json<BulkQueued>)> {
    state.registry.merchant(&id).await?;
    let (to, unusable) = match (body.to, body.customers.as_deref()) {
        (Some(to), None) => (to, 0),
        (None, Some("active")) => active_customer_numbers(&state, &id).await?,
        (None, Some(_)) => {
            return Err(ApiError::invalid_field("customers", "is `active`"));
        }
        _ => {
            return Err(ApiError::invalid_field(
                "to",
                "name either the numbers (`to`) or the merchant's `customers`",
            ));
        }
    };
    let asked = to.len() + unusable;
    let queued = state
        .whatsapp
        .send_bulk(&id, &to, &body.text, &caller.actor)
        .await?
        .len();
    Ok((
        StatusCode::ACCEPTED,
        Json(BulkQueued {
            queued,
            skipped: asked - queued,
        }),
    ))
}

/// The phone numbers of a merchant's active billing customers that are WhatsApp numbers,
/// and how many are not.
async fn active_customer_numbers(
    state: &AppState,
    merchant: &str,
) -> ApiResult<(Vec<String>, usize)> {
    let filter = CustomerFilter {
        merchant_id: Some(merchant.to_owned()),
        status: Some(CustomerStatus::Active),
        ..Default::default()
    };
    let mut numbers = Vec::new();
    let mut unusable = 0;
    let mut after = None;
    loop {
        let page = state
            .billing
            .customers(
                filter.clone(),
                &PageRequest {
                    after,
                    limit: PageRequest::MAX_LIMIT,
                },
            )
            .await?;
        for customer in page.items {
            match validate::wa_phone("customers", &customer.phone) {
                Ok(number) => numbers.push(number),
                Err(_) => unusable += 1,
            }
        }
        if numbers.len() > MAX_BULK_RECIPIENTS {
            return Err(ApiError::invalid_field(
                "customers",
                format!("more than {MAX_BULK_RECIPIENTS} active customers; send to lists of `to`"),
            ));
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if numbers.is_empty() {
        return Err(ApiError::invalid_field(
            "customers",
            "the merchant has no active customer with a WhatsApp number",
        ));
    }
    Ok((numbers, unusable))
}

// ---- a merchant's sender, texts and settings --------------------------------------------

#[utoipa::path(get, path = "/merchants/{id}/whatsapp/sender", tag = "whatsapp",
    params(("id" = String, Path)),
    responses((status = 200, description = "`null` when the merchant sends from the operator's number", body = Option<Sender>),
        (status = 404, body = ErrorBody)))]
pub async fn sender(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Option<Sender>>> {
    state.registry.merchant(&id).await?;
    Ok(Json(state.whatsapp.sender(&id).await?.map(Sender::from)))
}

#[utoipa::path(put, path = "/merchants/{id}/whatsapp/sender", tag = "whatsapp",
    params(("id" = String, Path)), request_body = PutSender,
    responses((status = 200, body = Sender), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_sender(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PutSender>,
) -> ApiResult<Json<Sender>> {
    Ok(Json(
        state.whatsapp.put_sender(&id, body.into()).await?.into(),
    ))
}

#[utoipa::path(delete, path = "/merchants/{id}/whatsapp/sender", tag = "whatsapp",
    params(("id" = String, Path)),
    responses((status = 204, description = "Removed: the merchant's messages go from the operator's number"),
        (status = 404, description = "No such merchant, or it has no sender", body = ErrorBody)))]
pub async fn delete_sender(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.whatsapp.delete_sender(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/merchants/{id}/whatsapp/texts", tag = "whatsapp",
    params(("id" = String, Path)),
    responses((status = 200, description = "Every kind's text", body = Vec<Text>), (status = 404, body = ErrorBody)))]
pub async fn texts(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Text>>> {
    let texts = state.whatsapp.texts(&id).await?;
    Ok(Json(texts.into_iter().map(Text::from).collect()))
}

#[utoipa::path(put, path = "/merchants/{id}/whatsapp/texts/{kind}", tag = "whatsapp",
    params(("id" = String, Path), ("kind" = String, Path)), request_body = PutText,
    responses((status = 200, body = Text), (status = 404, body = ErrorBody),
        (status = 422, description = "An unknown `kind`, or a `body` with a placeholder the kind does not fill in", body = ErrorBody)))]
pub async fn put_text(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, kind)): Path<(String, String)>,
    ApiJson(body): ApiJson<PutText>,
) -> ApiResult<Json<Text>> {
    let text = state
        .whatsapp
        .put_text(&id, &kind, &body.body, &caller.actor)
        .await?;
    Ok(Json(text.into()))
}

#[utoipa::path(delete, path = "/merchants/{id}/whatsapp/texts/{kind}", tag = "whatsapp",
    params(("id" = String, Path), ("kind" = String, Path)),
    responses((status = 204, description = "Back to the built-in text"), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn reset_text(
    State(state): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.registry.merchant(&id).await?;
    state.whatsapp.reset_text(&id, &kind).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/merchants/{id}/whatsapp/settings", tag = "whatsapp",
    params(("id" = String, Path)),
    responses((status = 200, description = "The defaults when none were set", body = Settings),
        (status = 404, body = ErrorBody)))]
pub async fn settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Settings>> {
    Ok(Json(state.whatsapp.merchant_settings(&id).await?.into()))
}

#[utoipa::path(put, path = "/merchants/{id}/whatsapp/settings", tag = "whatsapp",
    params(("id" = String, Path)), request_body = PutSettings,
    responses((status = 200, body = Settings), (status = 404, body = ErrorBody),
        (status = 422, description = "`contact_phone`, `open` or `close`", body = ErrorBody)))]
pub async fn put_settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PutSettings>,
) -> ApiResult<Json<Settings>> {
    let open = minute_of_day("open", body.open.as_deref().unwrap_or("08:00"))?;
    let close = minute_of_day("close", body.close.as_deref().unwrap_or("21:00"))?;
    let settings = state
        .whatsapp
        .put_merchant_settings(WaMerchantSettings {
            merchant_id: id,
            contact_phone: body.contact_phone.filter(|p| !p.trim().is_empty()),
            daily_summary: body.daily_summary,
            device_alerts: body.device_alerts,
            open_minute: open,
            close_minute: close,
        })
        .await?;
    Ok(Json(settings.into()))
}

/// `HH:MM` (Asia/Jakarta) as minutes after midnight; `24:00` is the end of the day.
fn minute_of_day(field: &'static str, value: &str) -> Result<i64, GatewayError> {
    if value.trim() == "24:00" {
        return Ok(24 * 60);
    }
    let (hour, minute) = gema_gateway::settlement::parse_cutoff_time(field, value)?;
    Ok(i64::from(hour) * 60 + i64::from(minute))
}
