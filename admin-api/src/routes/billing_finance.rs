//! Billing settings (with the logo) and billing finance: the summary, revenue, customer
//! growth, the detail table, and the billing exports merchant users may queue and fetch.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gema_gateway::GatewayError;
use gema_gateway::billing::finance::FinancePeriod;
use gema_store::ExportFilter;

use crate::authz::{Caller, MerchantScope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::PageParams;
use crate::views::billing_finance::{
    BillingSettings, CreateBillingExport, CustomerGrowth, FinanceInvoices, FinanceQuery,
    FinanceSummary, MonthsQuery, PutBillingSettings, Revenue,
};
use crate::views::exports::ExportJob;

#[utoipa::path(get, path = "/merchants/{id}/billing-settings", tag = "billing",
    params(("id" = String, Path)),
    responses((status = 200, description = "The defaults when none were set", body = BillingSettings),
        (status = 404, body = ErrorBody)))]
pub async fn settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<BillingSettings>> {
    Ok(Json(state.billing.merchant_settings(&id).await?.into()))
}

#[utoipa::path(put, path = "/merchants/{id}/billing-settings", tag = "billing",
    params(("id" = String, Path)), request_body = PutBillingSettings,
    responses((status = 200, body = BillingSettings), (status = 422, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn put_settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PutBillingSettings>,
) -> ApiResult<Json<BillingSettings>> {
    let settings = state
        .billing
        .put_merchant_settings(&id, body.into())
        .await?;
    Ok(Json(settings.into()))
}

#[utoipa::path(get, path = "/merchants/{id}/billing-logo", tag = "billing",
    params(("id" = String, Path)),
    responses((status = 200, description = "The logo", content_type = "image/png", body = Vec<u8>),
        (status = 404, body = ErrorBody)))]
pub async fn logo(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let logo = state.billing.logo(&id).await?;
    Ok(image_response(logo, "private, no-store"))
}

/// A stored logo as an image answer; `nosniff`, so a browser never reads it as anything
/// but its (checked) image type.
pub(crate) fn image_response(logo: gema_store::BillingLogo, cache: &'static str) -> Response {
    let mut response = logo.bytes.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = header::HeaderValue::from_str(&logo.content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(cache),
    );
    response
}

#[utoipa::path(put, path = "/merchants/{id}/billing-logo", tag = "billing",
    params(("id" = String, Path)),
    request_body(content = Vec<u8>, content_type = "image/png",
        description = "The image's bytes, as image/png or image/jpeg"),
    responses((status = 200, body = BillingSettings),
        (status = 422, description = "Not the PNG or JPEG its content type names, or its dimensions are out of range (field `logo`)", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, description = "Larger than the logo limit (field `logo`)", body = ErrorBody)))]
pub async fn put_logo(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<BillingSettings>> {
    let limit = state.billing.settings().logo_max_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the logo exceeds {limit} bytes"),
        )
        .with_details(serde_json::json!({ "field": "logo" }))
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let settings = state
        .billing
        .put_logo(&id, content_type, bytes.to_vec())
        .await?;
    Ok(Json(settings.into()))
}

#[utoipa::path(delete, path = "/merchants/{id}/billing-logo", tag = "billing",
    params(("id" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody)))]
pub async fn delete_logo(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.billing.delete_logo(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn period(query: &FinanceQuery) -> Result<Option<FinancePeriod>, GatewayError> {
    FinancePeriod::parse(
        query.month.as_deref(),
        query.year.as_deref(),
        query.date.as_deref(),
    )
}

#[utoipa::path(get, path = "/billing/finance/summary", tag = "billing", params(FinanceQuery),
    responses((status = 200, body = FinanceSummary), (status = 422, body = ErrorBody),
        (status = 404, description = "A merchant user asked for another merchant", body = ErrorBody)))]
pub async fn summary(
    State(state): State<AppState>,
    scope: MerchantScope,
    ApiQuery(query): ApiQuery<FinanceQuery>,
) -> ApiResult<Json<FinanceSummary>> {
    let merchant = scope.apply(query.merchant_id.clone())?;
    let summary = state
        .billing
        .finance_summary(merchant.as_deref(), period(&query)?)
        .await?;
    Ok(Json(summary.into()))
}

#[utoipa::path(get, path = "/billing/finance/revenue", tag = "billing", params(MonthsQuery),
    responses((status = 200, body = Revenue), (status = 422, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn revenue(
    State(state): State<AppState>,
    scope: MerchantScope,
    ApiQuery(query): ApiQuery<MonthsQuery>,
) -> ApiResult<Json<Revenue>> {
    let merchant = scope.apply(query.merchant_id)?;
    let months = state
        .billing
        .finance_revenue(merchant.as_deref(), query.months.unwrap_or(12))
        .await?;
    Ok(Json(Revenue::new(merchant, months)))
}

#[utoipa::path(get, path = "/billing/finance/customer-growth", tag = "billing",
    params(MonthsQuery),
    responses((status = 200, body = CustomerGrowth), (status = 422, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn customer_growth(
    State(state): State<AppState>,
    scope: MerchantScope,
    ApiQuery(query): ApiQuery<MonthsQuery>,
) -> ApiResult<Json<CustomerGrowth>> {
    let merchant = scope.apply(query.merchant_id)?;
    let months = state
        .billing
        .finance_customer_growth(merchant.as_deref(), query.months.unwrap_or(12))
        .await?;
    Ok(Json(CustomerGrowth::new(merchant, months)))
}

#[utoipa::path(get, path = "/billing/finance/invoices", tag = "billing",
    params(PageParams, FinanceQuery),
    responses((status = 200, body = FinanceInvoices), (status = 422, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn invoices(
    State(state): State<AppState>,
    scope: MerchantScope,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<FinanceQuery>,
) -> ApiResult<Json<FinanceInvoices>> {
    let merchant = scope.apply(query.merchant_id.clone())?;
    let found = state
        .billing
        .finance_invoices(
            merchant.clone(),
            period(&query)?,
            query.status.as_deref(),
            &page.to_request()?,
        )
        .await?;
    Ok(Json(FinanceInvoices {
        merchant_id: merchant,
        items: found.items.into_iter().map(Into::into).collect(),
        next_cursor: found.next_after,
    }))
}

#[utoipa::path(post, path = "/billing/finance/exports", tag = "billing",
    request_body = CreateBillingExport,
    responses((status = 202, description = "Queued; follow it at /billing/finance/exports/{id}", body = ExportJob),
        (status = 422, body = ErrorBody),
        (status = 404, description = "A merchant user asked for another merchant", body = ErrorBody)))]
pub async fn create_export(
    State(state): State<AppState>,
    Caller(caller): Caller,
    scope: MerchantScope,
    ApiJson(body): ApiJson<CreateBillingExport>,
) -> ApiResult<(StatusCode, Json<ExportJob>)> {
    let filter = ExportFilter {
        merchant_id: scope.apply(body.merchant_id)?,
        period_from: body.period_from,
        period_to: body.period_to,
        ..ExportFilter::default()
    };
    let job = state
        .exports
        .create(body.kind.into(), filter, &caller.actor)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

/// A billing export job the caller may see: a billing kind, and for a merchant user one of
/// its merchant; anything else is 404, as a missing job.
async fn billing_job(
    state: &AppState,
    scope: &MerchantScope,
    id: &str,
) -> ApiResult<gema_store::ExportJob> {
    let job = state.exports.job(id).await?;
    let merchant = job.filter().ok().and_then(|f| f.merchant_id);
    let visible = job.kind.is_billing_invoices()
        && scope
            .0
            .as_ref()
            .is_none_or(|mine| merchant.as_ref() == Some(mine));
    if visible {
        Ok(job)
    } else {
        Err(GatewayError::NotFound {
            entity: "export",
            id: id.to_owned(),
        }
        .into())
    }
}

#[utoipa::path(get, path = "/billing/finance/exports/{id}", tag = "billing",
    params(("id" = String, Path)),
    responses((status = 200, body = ExportJob), (status = 404, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    scope: MerchantScope,
    Path(id): Path<String>,
) -> ApiResult<Json<ExportJob>> {
    Ok(Json(billing_job(&state, &scope, &id).await?.into()))
}

#[utoipa::path(get, path = "/billing/finance/exports/{id}/download", tag = "billing",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "The CSV or XLSX file, streamed", content_type = "text/csv", body = String),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not done yet (or failed)", body = ErrorBody),
        (status = 410, description = "Expired: the file was deleted", body = ErrorBody)))]
pub async fn download_export(
    State(state): State<AppState>,
    scope: MerchantScope,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    billing_job(&state, &scope, &id).await?;
    let (job, path) = super::exports::export_file(&state, &id).await?;
    super::exports::file_response(&job, &path).await
}
