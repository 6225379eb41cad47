//! Transactions created through the API, their event timeline and announcements, the
//! notification retry, the expiry sweep, and the ledger.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gema_gateway::payments::TransactionInput;
use gema_store::{LedgerFilter, TransactionFilter};

use crate::authz::MerchantScope;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::payments::{
    Announcement, CreateTransaction, ExpiredTransactions, LedgerEntry, LedgerQuery, Transaction,
    TransactionEvent, TransactionQuery,
};
use crate::views::{Page, PageParams};

#[utoipa::path(post, path = "/transactions", tag = "transactions", request_body = CreateTransaction,
    responses(
        (status = 201, description = "Pending until a provider says it is paid", body = Transaction),
        (status = 400, body = ErrorBody), (status = 404, description = "Unknown terminal", body = ErrorBody),
        (status = 409, description = "order_ref taken, or the merchant is not approved", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateTransaction>,
) -> ApiResult<(StatusCode, Json<Transaction>)> {
    let transaction = state
        .payments
        .create_transaction(TransactionInput {
            terminal_id: body.terminal_id,
            order_ref: body.order_ref,
            amount: body.amount,
            expires_in_secs: body.expires_in_secs,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(transaction.into())))
}

#[utoipa::path(get, path = "/transactions", tag = "transactions", params(PageParams, TransactionQuery),
    responses((status = 200, body = Page<Transaction>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<TransactionQuery>,
    scope: MerchantScope,
) -> ApiResult<Json<Page<Transaction>>> {
    let filter = TransactionFilter {
        status: query.status.map(Into::into),
        terminal_id: query.terminal_id,
        merchant_id: scope.apply(query.merchant_id)?,
        newest_first: false,
    };
    let page = state
        .payments
        .transactions(&filter, &page.to_request()?)
        .await?;
    Ok(Json(Page::from_store(page, Transaction::from)))
}

#[utoipa::path(get, path = "/transactions/{id}", tag = "transactions", params(("id" = String, Path)),
    responses((status = 200, body = Transaction), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Transaction>> {
    Ok(Json(state.payments.transaction(&id).await?.into()))
}

#[utoipa::path(get, path = "/transactions/{id}/events", tag = "transactions", params(("id" = String, Path)),
    responses((status = 200, description = "Every event that touched the transaction, oldest first",
        body = Vec<TransactionEvent>), (status = 404, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<TransactionEvent>>> {
    let events = state.payments.timeline(&id).await?;
    Ok(Json(events.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/transactions/{id}/announcements", tag = "transactions",
    params(("id" = String, Path)),
    responses((status = 200, description = "Announcements to the device, with delivery state",
        body = Vec<Announcement>), (status = 404, body = ErrorBody)))]
pub async fn announcements(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Announcement>>> {
    let list = state.payments.announcements(&id).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/transactions/{id}/retry-notification", tag = "transactions",
    params(("id" = String, Path)),
    responses((status = 202, description = "A new announcement is queued", body = Announcement),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Only paid transactions are announced", body = ErrorBody)))]
pub async fn retry_notification(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Announcement>)> {
    let announcement = state.payments.retry_notification(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(announcement.into())))
}

#[utoipa::path(post, path = "/transactions/expire-due", tag = "transactions",
    responses((status = 200, description = "Pending transactions past their expiry, now expired",
        body = ExpiredTransactions)))]
pub async fn expire_due(State(state): State<AppState>) -> ApiResult<Json<ExpiredTransactions>> {
    let expired = state.payments.expire_due().await?;
    Ok(Json(ExpiredTransactions {
        count: expired.len(),
        transaction_ids: expired,
    }))
}

#[utoipa::path(get, path = "/ledger-entries", tag = "ledger", params(PageParams, LedgerQuery),
    responses((status = 200, body = Page<LedgerEntry>), (status = 400, body = ErrorBody)))]
pub async fn ledger(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<LedgerQuery>,
    scope: MerchantScope,
) -> ApiResult<Json<Page<LedgerEntry>>> {
    let filter = LedgerFilter {
        merchant_id: scope.apply(query.merchant_id)?,
        transaction_id: query.transaction_id,
    };
    let page = state.payments.ledger(&filter, &page.to_request()?).await?;
    Ok(Json(Page::from_store(page, LedgerEntry::from)))
}
