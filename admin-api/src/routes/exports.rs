//! Export jobs: queue one, list and follow them, download the finished CSV; and the
//! customer-data export, an export job of kind `billing_customers` that operators with
//! billing management queue, follow and download under `/billing/customer-exports`.
//!
//! The permission is per kind: the `/exports` routes need export jobs' permission (finance),
//! and a `billing_customers` job there needs billing management's as well (so, of the
//! operator roles, admin only); `/billing/customer-exports` needs billing management's and
//! shows only `billing_customers` jobs.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gema_gateway::GatewayError;
use gema_gateway::auth::{Action, Principal};
use gema_gateway::exports::file_extension;
use gema_store::{AdjustmentType, ReconciliationOutcome};
use gema_store::{ExportFilter, ExportJobFilter, ExportKind};

use crate::authz::{Caller, MerchantScope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::billing_import::CreateCustomerExport;
use crate::views::exports::{CreateExport, ExportJob, ExportQuery};
use crate::views::{Page, PageParams};

/// Refuses a job of a kind the caller's role may not export: `billing_customers` is
/// customer data, for billing management only; billing invoices need billing finance.
fn may_export(caller: &Principal, kind: ExportKind) -> ApiResult<()> {
    if kind.is_billing_invoices() && !caller.may(Action::BillingFinance) {
        let action = Action::BillingFinance.name();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("your role may not {action}"),
        )
        .with_details(serde_json::json!({ "action": action })));
    }
    if kind == ExportKind::BillingCustomers && !caller.may(Action::BillingManage) {
        let action = Action::BillingManage.name();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("your role may not {action}: a billing_customers export is customer data"),
        )
        .with_details(serde_json::json!({ "action": action })));
    }
    Ok(())
}

#[utoipa::path(post, path = "/exports", tag = "exports", request_body = CreateExport,
    responses(
        (status = 202, description = "Queued; follow it at /exports/{id}", body = ExportJob),
        (status = 400, description = "Unknown kind or filter, or one the kind does not take", body = ErrorBody),
        (status = 403, description = "A `billing_customers` export needs billing management \
            as well (operators: admin; ops use /billing/customer-exports)", body = ErrorBody),
        (status = 404, description = "A merchant user asked for another merchant", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    scope: MerchantScope,
    ApiJson(body): ApiJson<CreateExport>,
) -> ApiResult<(StatusCode, Json<ExportJob>)> {
    let adjustment_type = match body.adjustment_type.as_deref() {
        None => None,
        Some(t) => Some(AdjustmentType::parse(t).ok_or_else(|| {
            GatewayError::invalid(
                "adjustment_type",
                "is one of hold, release, fee_correction, chargeback, manual",
            )
        })?),
    };
    let outcome = match body.outcome.as_deref() {
        None => None,
        Some(o) => Some(ReconciliationOutcome::parse(o).ok_or_else(|| {
            GatewayError::invalid(
                "outcome",
                "is one of matched, amount_mismatch, status_mismatch, missing_in_gema, \
                 missing_in_report, malformed",
            )
        })?),
    };
    may_export(&caller, body.kind.into())?;
    let filter = ExportFilter {
        merchant_id: scope.apply(body.merchant_id)?,
        from: body.from,
        to: body.to,
        status: body.status.map(Into::into),
        entry_type: body.entry_type.map(Into::into),
        adjustment_type,
        run_id: body.run_id,
        outcome,
        period_from: body.period_from,
        period_to: body.period_to,
    };
    let job = state
        .exports
        .create(body.kind.into(), filter, &caller.actor)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

#[utoipa::path(get, path = "/exports", tag = "exports", params(PageParams, ExportQuery),
    responses((status = 200, body = Page<ExportJob>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ApiResult<Json<Page<ExportJob>>> {
    let filter = ExportJobFilter {
        status: query.status.map(Into::into),
        created_by: None,
    };
    let page = state.exports.jobs(&filter, &page.to_request()?).await?;
    Ok(Json(Page::from_store(page, ExportJob::from)))
}

#[utoipa::path(get, path = "/exports/{id}", tag = "exports", params(("id" = String, Path)),
    responses((status = 200, description = "Status and progress", body = ExportJob),
        (status = 403, description = "A `billing_customers` job needs billing management as well", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ExportJob>> {
    let job = state.exports.job(&id).await?;
    may_export(&caller, job.kind)?;
    Ok(Json(job.into()))
}

#[utoipa::path(get, path = "/exports/{id}/download", tag = "exports", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The file, streamed: CSV, or XLSX for billing_invoices_xlsx", content_type = "text/csv", body = String),
        (status = 403, description = "A `billing_customers` file needs billing management as well", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not done yet (or failed)", body = ErrorBody),
        (status = 410, description = "Expired: the file was deleted", body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    may_export(&caller, state.exports.job(&id).await?.kind)?;
    stream_file(&state, &id).await
}

/// A done job's file, streamed.
async fn stream_file(state: &AppState, id: &str) -> ApiResult<Response> {
    let (job, path) = export_file(state, id).await?;
    file_response(&job, &path).await
}

/// A done job's file, `410` once expired.
pub(crate) async fn export_file(
    state: &AppState,
    id: &str,
) -> ApiResult<(gema_store::ExportJob, std::path::PathBuf)> {
    match state.exports.file(id).await {
        Ok(found) => Ok(found),
        Err(GatewayError::Conflict {
            code: code @ "export_expired",
            message,
            ..
        }) => Err(ApiError::new(StatusCode::GONE, code, message)),
        Err(err) => Err(err.into()),
    }
}

/// Streams a job's file with its content type and name.
pub(crate) async fn file_response(
    job: &gema_store::ExportJob,
    path: &std::path::Path,
) -> ApiResult<Response> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|err| ApiError::internal(format!("opening {}: {err}", path.display())))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    let (content_type, extension) = match file_extension(job.kind) {
        "xlsx" => (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
        ),
        _ => ("text/csv; charset=utf-8", "csv"),
    };
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    if let Ok(value) = format!("attachment; filename=\"{}.{extension}\"", job.id).parse() {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Some(bytes) = job.file_bytes
        && let Ok(value) = bytes.to_string().parse()
    {
        headers.insert(header::CONTENT_LENGTH, value);
    }
    Ok(response)
}

/// A `billing_customers` job by id: any other kind is not found here.
async fn customer_export(state: &AppState, id: &str) -> ApiResult<gema_store::ExportJob> {
    let job = state.exports.job(id).await?;
    if job.kind != ExportKind::BillingCustomers {
        return Err(GatewayError::NotFound {
            entity: "customer export",
            id: id.to_owned(),
        }
        .into());
    }
    Ok(job)
}

#[utoipa::path(post, path = "/billing/customer-exports", tag = "billing",
    request_body = CreateCustomerExport,
    responses(
        (status = 202, description = "Queued: an export job of kind `billing_customers` (the \
            import's ten columns, then id, merchant_id, package_id, status, address, notes, \
            created_at); follow it at /billing/customer-exports/{id}", body = ExportJob),
        (status = 403, description = "Only operators with billing management (admin, ops)", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_customer_export(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateCustomerExport>,
) -> ApiResult<(StatusCode, Json<ExportJob>)> {
    let filter = ExportFilter {
        merchant_id: body.merchant_id,
        ..Default::default()
    };
    let job = state
        .exports
        .create(ExportKind::BillingCustomers, filter, &caller.actor)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

#[utoipa::path(get, path = "/billing/customer-exports/{id}", tag = "billing",
    params(("id" = String, Path)),
    responses((status = 200, description = "Status and progress", body = ExportJob),
        (status = 404, description = "No customer export has this id", body = ErrorBody)))]
pub async fn get_customer_export(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ExportJob>> {
    Ok(Json(customer_export(&state, &id).await?.into()))
}

#[utoipa::path(get, path = "/billing/customer-exports/{id}/download", tag = "billing",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "The CSV file, streamed", content_type = "text/csv", body = String),
        (status = 404, description = "No customer export has this id", body = ErrorBody),
        (status = 409, description = "Not done yet (or failed)", body = ErrorBody),
        (status = 410, description = "Expired: the file was deleted", body = ErrorBody)))]
pub async fn download_customer_export(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    customer_export(&state, &id).await?;
    stream_file(&state, &id).await
}
