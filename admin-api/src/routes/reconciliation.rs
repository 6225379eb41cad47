//! Provider reconciliation: upload a report (the CSV is the body), list and read runs and
//! their rows, export a run's rows as CSV (streamed), re-run a run.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use gema_gateway::reconciliation::{ImportRequest, ReportFormat};
use gema_store::ReconciliationRowFilter;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::authz::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, is_csv};
use crate::state::AppState;
use crate::views::reconciliation::{
    CSV_HEADER, ImportQuery, ReconciliationRow, ReconciliationRun, RowQuery, csv_line,
};
use crate::views::{Page, PageParams};

/// Rows per read while the export streams.
const EXPORT_CHUNK: u32 = 2_000;

#[utoipa::path(post, path = "/reconciliation/runs", tag = "reconciliation",
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv",
        description = "The provider's report, header line first. Up to 32 MiB \
            (RECONCILIATION_BODY_LIMIT_BYTES): a 100,000-line report is about 7 MiB."),
    responses(
        (status = 201, description = "The run, with its counts per outcome", body = ReconciliationRun),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, description = "The body must be text/csv", body = ErrorBody),
        (status = 422, description = "The report lacks a needed column (`details.field`: \
            `columns`, or the mapping parameter), or a parameter breaks a rule", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ImportQuery>,
    request: Request,
) -> ApiResult<(StatusCode, Json<ReconciliationRun>)> {
    if !is_csv(request.headers()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be the report, with Content-Type: text/csv",
        ));
    }
    let mapping = query.mapping();
    let format = match (query.format.as_deref(), query.provider.as_deref()) {
        (Some(format), _) => ReportFormat::parse(format).ok_or_else(|| {
            ApiError::invalid_field("format", "format must be midtrans, xendit or generic")
        })?,
        (None, _) if mapping.is_some() => ReportFormat::Generic,
        (None, Some("midtrans")) => ReportFormat::Midtrans,
        (None, Some("xendit")) => ReportFormat::Xendit,
        (None, _) => ReportFormat::Generic,
    };
    let instant =
        |field: &'static str, text: &Option<String>| -> ApiResult<Option<OffsetDateTime>> {
            text.as_deref()
                .map(|t| {
                    OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
                        ApiError::invalid_field(field, format!("{t:?} is not an RFC 3339 time"))
                    })
                })
                .transpose()
        };
    let import = ImportRequest {
        format,
        provider: query.provider.clone(),
        mapping,
        from: instant("from", &query.from)?,
        to: instant("to", &query.to)?,
    };
    let body = Bytes::from_request(request, &state)
        .await
        .map_err(|rejection| {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "invalid_body"
            };
            ApiError::new(status, code, rejection.body_text())
        })?;
    let run = state
        .reconciliation
        .import(import, &body, &caller.actor)
        .await?;
    Ok((StatusCode::CREATED, Json(run.into())))
}

#[utoipa::path(get, path = "/reconciliation/runs", tag = "reconciliation", params(PageParams),
    responses((status = 200, description = "Runs, oldest first", body = Page<ReconciliationRun>),
        (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<ReconciliationRun>>> {
    let page = state.reconciliation.runs(&page.to_request()?).await?;
    Ok(Json(Page::from_store(page, ReconciliationRun::from)))
}

#[utoipa::path(get, path = "/reconciliation/runs/{id}", tag = "reconciliation",
    params(("id" = String, Path)),
    responses((status = 200, body = ReconciliationRun), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ReconciliationRun>> {
    Ok(Json(state.reconciliation.run(&id).await?.into()))
}

#[utoipa::path(get, path = "/reconciliation/runs/{id}/rows", tag = "reconciliation",
    params(("id" = String, Path), PageParams, RowQuery),
    responses((status = 200, description = "The run's rows in order: the report's lines, then \
        what is missing in the report", body = Page<ReconciliationRow>),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rows(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<RowQuery>,
) -> ApiResult<Json<Page<ReconciliationRow>>> {
    let filter = ReconciliationRowFilter {
        outcome: query.outcome.map(Into::into),
    };
    let page = state
        .reconciliation
        .rows(&id, &filter, &page.to_request()?)
        .await?;
    Ok(Json(Page::from_store(page, ReconciliationRow::from)))
}

#[utoipa::path(get, path = "/reconciliation/runs/{id}/rows.csv", tag = "reconciliation",
    params(("id" = String, Path)),
    responses((status = 200, description = "Every row as CSV (columns: line, order_id, \
        provider_transaction_id, report_amount, gema_amount, report_status, gema_status, \
        outcome, transaction_id, report_paid_at, reason; amounts in whole rupiah, times in \
        Asia/Jakarta with the offset), streamed", content_type = "text/csv", body = String),
        (status = 404, body = ErrorBody)))]
pub async fn export(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let run = state.reconciliation.run(&id).await?;
    Ok(rows_csv_response(state.reconciliation.clone(), run.id))
}

/// A run's rows as a streamed CSV download (`<run id>.csv`), `EXPORT_CHUNK` (2,000) rows per
/// read, never the whole run in memory; the console's download answers the same. The
/// caller has checked that the run exists.
pub fn rows_csv_response(
    reconciliation: gema_gateway::reconciliation::Reconciliation,
    run_id: String,
) -> Response {
    let name = format!("attachment; filename=\"{run_id}.csv\"");
    let rows = futures_util::stream::unfold(Some(-1_i64), move |after| {
        let reconciliation = reconciliation.clone();
        let run_id = run_id.clone();
        async move {
            let after = after?;
            match reconciliation.row_chunk(&run_id, after, EXPORT_CHUNK).await {
                Ok(rows) => {
                    let last = rows.last()?.seq;
                    let mut text = String::with_capacity(rows.len() * 96);
                    for row in &rows {
                        csv_line(row, &mut text);
                    }
                    let more = rows.len() == EXPORT_CHUNK as usize;
                    Some((Ok(Bytes::from(text)), more.then_some(last)))
                }
                Err(err) => {
                    tracing::error!(run_id = %run_id, error = %err, "the export stopped");
                    Some((Err(std::io::Error::other(err.to_string())), None))
                }
            }
        }
    });
    let body = futures_util::stream::once(async { Ok(Bytes::from_static(CSV_HEADER.as_bytes())) })
        .chain(rows);
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[utoipa::path(post, path = "/reconciliation/runs/{id}/rerun", tag = "reconciliation",
    params(("id" = String, Path)),
    responses((status = 201, description = "A new run: the same report rows matched against \
        the transactions as they are now (`rerun_of` names this run, which is kept as it was)",
        body = ReconciliationRun), (status = 404, body = ErrorBody)))]
pub async fn rerun(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<ReconciliationRun>)> {
    let run = state.reconciliation.rerun(&id, &caller.actor).await?;
    Ok((StatusCode::CREATED, Json(run.into())))
}
