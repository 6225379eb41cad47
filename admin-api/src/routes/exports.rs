//! Export jobs: queue one, list and follow them, download the finished CSV.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gema_gateway::GatewayError;
use gema_gateway::auth::Action;
use gema_gateway::exports::file_extension;
use gema_store::{AdjustmentType, ReconciliationOutcome};
use gema_store::{ExportFilter, ExportJobFilter};

use crate::authz::{Caller, MerchantScope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::exports::{CreateExport, ExportJob, ExportQuery};
use crate::views::{Page, PageParams};

#[utoipa::path(post, path = "/exports", tag = "exports", request_body = CreateExport,
    responses(
        (status = 202, description = "Queued; follow it at /exports/{id}", body = ExportJob),
        (status = 400, description = "Unknown kind or filter, or one the kind does not take", body = ErrorBody),
        (status = 404, description = "A merchant user asked for another merchant", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    scope: MerchantScope,
    ApiJson(body): ApiJson<CreateExport>,
) -> ApiResult<(StatusCode, Json<ExportJob>)> {
    let kind: gema_store::ExportKind = body.kind.into();
    // The route's rule is `export.jobs`; a billing kind also needs billing finance.
    if kind.is_billing_invoices() && !caller.may(Action::BillingFinance) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("your role may not {}", Action::BillingFinance.name()),
        )
        .with_details(serde_json::json!({ "action": Action::BillingFinance.name() })));
    }
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
    let job = state.exports.create(kind, filter, &caller.actor).await?;
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
        (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ExportJob>> {
    Ok(Json(state.exports.job(&id).await?.into()))
}

#[utoipa::path(get, path = "/exports/{id}/download", tag = "exports", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The file, streamed: CSV, or XLSX for billing_invoices_xlsx", content_type = "text/csv", body = String),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not done yet (or failed)", body = ErrorBody),
        (status = 410, description = "Expired: the file was deleted", body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (job, path) = export_file(&state, &id).await?;
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
