//! Merchant payouts: bank accounts, payout settings, balances, settlement batches and their
//! lifecycle, adjustments, payout reports, the batch reconciliation and the dashboard.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gema_gateway::auth::Action;
use gema_gateway::settlement::{
    AdjustmentInput, AdjustmentQuery as DomainAdjustmentQuery, BankAccountInput, GenerateInput,
    PayoutSettingsInput, ReportFormat, sees_account_numbers,
};
use gema_store::BatchStatus;

use crate::authz::{Caller, MerchantScope};

/// Answers to writes mask account numbers whatever the caller's role: the answer becomes the
/// audit row's `after`, which support staff read. Reads show them to finance and admin.
const WRITE_MASKED: bool = false;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::settlement::{
    Adjustment, AdjustmentCreated, AdjustmentQuery, Balance, BankAccount, Batch, BatchDetail,
    BatchEvent, BatchItem, BatchQuery, BatchReconciliation, CreateAdjustment, DashboardSummary,
    FleetCounts, GenerateBatches, Generated, MarkPaid, MerchantQuery, PayoutSettings,
    PutBankAccount, PutPayoutSettings, Reason, ReportQuery, SetReference, SettlementTotals,
};
use crate::views::{Page, PageParams};

#[utoipa::path(get, path = "/merchants/{id}/bank-account", tag = "settlement",
    params(("id" = String, Path)),
    responses((status = 200, body = BankAccount), (status = 404, body = ErrorBody)))]
pub async fn bank_account(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<BankAccount>> {
    let account = state.settlement.bank_account(&id).await?;
    Ok(Json(BankAccount::new(
        account,
        sees_account_numbers(caller.role),
    )))
}

#[utoipa::path(put, path = "/merchants/{id}/bank-account", tag = "settlement",
    params(("id" = String, Path)), request_body = PutBankAccount,
    responses((status = 200, body = BankAccount), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_bank_account(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PutBankAccount>,
) -> ApiResult<Json<BankAccount>> {
    let account = state
        .settlement
        .put_bank_account(
            &id,
            BankAccountInput {
                bank_code: body.bank_code,
                account_number: body.account_number,
                account_holder: body.account_holder,
            },
        )
        .await?;
    Ok(Json(BankAccount::new(account, WRITE_MASKED)))
}

#[utoipa::path(get, path = "/merchants/{id}/payout-settings", tag = "settlement",
    params(("id" = String, Path)),
    responses((status = 200, body = PayoutSettings), (status = 404, body = ErrorBody)))]
pub async fn payout_settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PayoutSettings>> {
    Ok(Json(state.settlement.payout_settings(&id).await?.into()))
}

#[utoipa::path(put, path = "/merchants/{id}/payout-settings", tag = "settlement",
    params(("id" = String, Path)), request_body = PutPayoutSettings,
    responses((status = 200, body = PayoutSettings), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_payout_settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PutPayoutSettings>,
) -> ApiResult<Json<PayoutSettings>> {
    let settings = state
        .settlement
        .put_payout_settings(
            &id,
            PayoutSettingsInput {
                schedule: body.schedule,
                minimum_amount: body.minimum_amount,
                cutoff_time: body.cutoff_time,
                weekly_day: body.weekly_day,
            },
        )
        .await?;
    Ok(Json(settings.into()))
}

#[utoipa::path(get, path = "/merchants/{id}/balance", tag = "settlement",
    params(("id" = String, Path)),
    responses((status = 200, body = Balance), (status = 404, body = ErrorBody)))]
pub async fn balance(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Balance>> {
    Ok(Json(state.settlement.balance(&id).await?.into()))
}

#[utoipa::path(post, path = "/settlement-batches", tag = "settlement",
    request_body = GenerateBatches,
    responses(
        (status = 201, description = "Batches made (possibly none), and the merchants skipped", body = Generated),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn generate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<GenerateBatches>,
) -> ApiResult<(StatusCode, Json<Generated>)> {
    let done = state
        .settlement
        .generate(
            GenerateInput {
                cutoff: body.cutoff,
                merchant_ids: body.merchant_ids,
            },
            &caller.actor,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Generated::new(done, WRITE_MASKED)),
    ))
}

#[utoipa::path(get, path = "/settlement-batches", tag = "settlement",
    params(PageParams, BatchQuery),
    responses((status = 200, body = Page<Batch>), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    scope: MerchantScope,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<BatchQuery>,
) -> ApiResult<Json<Page<Batch>>> {
    let merchant = scope.apply(query.merchant_id)?;
    let batches = state
        .settlement
        .batches(merchant, query.status.as_deref(), &page.to_request()?)
        .await?;
    let unmasked = sees_account_numbers(caller.role);
    Ok(Json(Page::from_store(batches, |b| Batch::new(b, unmasked))))
}

#[utoipa::path(get, path = "/settlement-batches/{id}", tag = "settlement",
    params(("id" = String, Path)),
    responses((status = 200, body = BatchDetail), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<BatchDetail>> {
    let batch = state.settlement.batch(&id).await?;
    let events = state.settlement.events(&id).await?;
    let adjustments = state.settlement.adjustments_of(&id).await?;
    Ok(Json(BatchDetail {
        batch: Batch::new(batch, sees_account_numbers(caller.role)),
        events: events.into_iter().map(BatchEvent::from).collect(),
        adjustments: adjustments.into_iter().map(Adjustment::from).collect(),
    }))
}

#[utoipa::path(get, path = "/settlement-batches/{id}/items", tag = "settlement",
    params(("id" = String, Path), PageParams),
    responses((status = 200, body = Page<BatchItem>), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody)))]
pub async fn items(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<BatchItem>>> {
    let items = state.settlement.items(&id, &page.to_request()?).await?;
    Ok(Json(Page::from_store(items, BatchItem::from)))
}

#[utoipa::path(get, path = "/settlement-batches/{id}/export.csv", tag = "settlement",
    params(("id" = String, Path), ReportQuery),
    responses(
        (status = 200, description = "The payout report (text/csv), streamed", content_type = "text/csv", body = String),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> ApiResult<Response> {
    let format = ReportFormat::parse(query.format.as_deref())?;
    if format == ReportFormat::BankGeneric && !sees_account_numbers(caller.role) {
        // A bank file without whole account numbers pays no one.
        return Err(gema_gateway::GatewayError::invalid(
            "format",
            "bank_generic carries whole account numbers: finance and admin only",
        )
        .into());
    }
    let report = state.settlement.report(&id, format).await?;
    Ok(payout_report_response(&id, format, report))
}

/// A batch's payout report as a streamed CSV download (`<id>.csv`, `<id>-bank.csv`), a page
/// of rows at a time; the console's download answers the same.
pub fn payout_report_response(
    id: &str,
    format: ReportFormat,
    report: gema_gateway::settlement::BatchReport,
) -> Response {
    let name = match format {
        ReportFormat::Standard => format!("{id}.csv"),
        ReportFormat::BankGeneric => format!("{id}-bank.csv"),
    };
    let stream = futures_util::stream::try_unfold(report, |mut report| async move {
        match report.next_chunk().await {
            Ok(Some(chunk)) => Ok(Some((chunk, report))),
            Ok(None) => Ok(None),
            Err(err) => {
                tracing::error!(error = %err, "payout report failed mid-stream");
                Err(std::io::Error::other(err.to_string()))
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[utoipa::path(post, path = "/settlement-batches/{id}/mark-paid", tag = "settlement",
    params(("id" = String, Path)), request_body = MarkPaid,
    responses((status = 200, description = "Paid (again with the same reference: unchanged)", body = Batch),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn mark_paid(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MarkPaid>,
) -> ApiResult<Json<Batch>> {
    let batch = state
        .settlement
        .mark_paid(
            &id,
            &body.payout_reference,
            body.note.as_deref(),
            &caller.actor,
        )
        .await?;
    Ok(Json(Batch::new(batch, WRITE_MASKED)))
}

#[utoipa::path(patch, path = "/settlement-batches/{id}/reference", tag = "settlement",
    params(("id" = String, Path)), request_body = SetReference,
    responses((status = 200, body = Batch), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn set_reference(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SetReference>,
) -> ApiResult<Json<Batch>> {
    let batch = state
        .settlement
        .set_reference(&id, &body.payout_reference, &caller.actor)
        .await?;
    Ok(Json(Batch::new(batch, WRITE_MASKED)))
}

#[utoipa::path(post, path = "/settlement-batches/{id}/mark-failed", tag = "settlement",
    params(("id" = String, Path)), request_body = Reason,
    responses((status = 200, body = Batch), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn mark_failed(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Reason>,
) -> ApiResult<Json<Batch>> {
    let batch = state
        .settlement
        .close(&id, BatchStatus::Failed, &body.reason, &caller.actor)
        .await?;
    Ok(Json(Batch::new(batch, WRITE_MASKED)))
}

#[utoipa::path(post, path = "/settlement-batches/{id}/cancel", tag = "settlement",
    params(("id" = String, Path)), request_body = Reason,
    responses((status = 200, body = Batch), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Reason>,
) -> ApiResult<Json<Batch>> {
    let batch = state
        .settlement
        .close(&id, BatchStatus::Cancelled, &body.reason, &caller.actor)
        .await?;
    Ok(Json(Batch::new(batch, WRITE_MASKED)))
}

#[utoipa::path(post, path = "/settlement-batches/{id}/reprocess", tag = "settlement",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "Its entries are batchable again (once per batch)", body = Batch),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reprocess(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Batch>> {
    let batch = state.settlement.reprocess(&id, &caller.actor).await?;
    Ok(Json(Batch::new(batch, WRITE_MASKED)))
}

#[utoipa::path(post, path = "/settlement-batches/{id}/adjustments", tag = "settlement",
    params(("id" = String, Path)), request_body = CreateAdjustment,
    responses((status = 201, body = AdjustmentCreated), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn adjust(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateAdjustment>,
) -> ApiResult<(StatusCode, Json<AdjustmentCreated>)> {
    let (adjustment, batch) = state
        .settlement
        .adjust(
            &id,
            AdjustmentInput {
                adjustment_type: body.adjustment_type,
                amount: body.amount,
                reason: body.reason,
            },
            &caller.actor,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(AdjustmentCreated {
            adjustment: adjustment.into(),
            batch: Batch::new(batch, WRITE_MASKED),
        }),
    ))
}

#[utoipa::path(get, path = "/settlement-adjustments", tag = "settlement",
    params(PageParams, AdjustmentQuery),
    responses((status = 200, body = Page<Adjustment>), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn adjustments(
    State(state): State<AppState>,
    scope: MerchantScope,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<AdjustmentQuery>,
) -> ApiResult<Json<Page<Adjustment>>> {
    let merchant_id = scope.apply(query.merchant_id)?;
    let found = state
        .settlement
        .adjustments(
            DomainAdjustmentQuery {
                merchant_id,
                adjustment_type: query.adjustment_type,
                from: query.from,
                to: query.to,
            },
            &page.to_request()?,
        )
        .await?;
    Ok(Json(Page::from_store(found, Adjustment::from)))
}

#[utoipa::path(get, path = "/settlement-summary", tag = "settlement",
    params(MerchantQuery),
    responses((status = 200, body = SettlementTotals), (status = 400, body = ErrorBody)))]
pub async fn summary(
    State(state): State<AppState>,
    scope: MerchantScope,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> ApiResult<Json<SettlementTotals>> {
    let merchant_id = scope.apply(query.merchant_id)?;
    let totals = state.settlement.totals(merchant_id.as_deref()).await?;
    Ok(Json(SettlementTotals::new(totals, merchant_id)))
}

#[utoipa::path(get, path = "/reconciliation/settlement-batches", tag = "settlement",
    params(PageParams, MerchantQuery),
    responses((status = 200, body = Page<BatchReconciliation>), (status = 400, body = ErrorBody)))]
pub async fn reconcile_batches(
    State(state): State<AppState>,
    scope: MerchantScope,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> ApiResult<Json<Page<BatchReconciliation>>> {
    let merchant_id = scope.apply(query.merchant_id)?;
    let found = state
        .settlement
        .reconcile_batches(merchant_id, &page.to_request()?)
        .await?;
    Ok(Json(Page::from_store(found, BatchReconciliation::from)))
}

#[utoipa::path(get, path = "/dashboard/summary", tag = "settlement",
    params(MerchantQuery),
    responses((status = 200, body = DashboardSummary), (status = 400, body = ErrorBody)))]
pub async fn dashboard(
    State(state): State<AppState>,
    Caller(caller): Caller,
    scope: MerchantScope,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> ApiResult<Json<DashboardSummary>> {
    let merchant_id = scope.apply(query.merchant_id)?;
    let summary = state.settlement.dashboard(merchant_id.as_deref()).await?;
    let [online, degraded, offline] = state.device_ops.fleet_counts(merchant_id.clone()).await?;
    Ok(Json(DashboardSummary::new(
        summary,
        merchant_id,
        FleetCounts {
            online,
            degraded,
            offline,
        },
        caller.may(Action::SettlementRead),
        sees_account_numbers(caller.role),
    )))
}
