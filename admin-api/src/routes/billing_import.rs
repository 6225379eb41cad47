//! The customer CSV import: upload a file (the CSV is the body) as a dry run or an import.
//! The customer-data export is an export job (`routes/exports.rs`).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gema_gateway::billing::import::ImportMode;

use crate::authz::{AuditAfter, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, is_csv};
use crate::state::AppState;
use crate::views::billing_import::{CustomerImport, ImportQuery};

#[utoipa::path(post, path = "/billing/customer-imports", tag = "billing",
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv",
        description = "The customer list, header first: `nama,telepon,diskon,tanggal,area,\
            paket_nama,paket_tarif,total_bayar,nik,tanggal_register` (any order, names \
            case-insensitive; `,` or `;`; a UTF-8 BOM and CRLF are fine). At most \
            `billing.import_max_bytes` (default 5 MiB, about 50,000 rows)."),
    responses(
        (status = 200, description = "Every row checked: a dry run lists every row, valid or \
            invalid with its problems; an import writes the valid rows in one transaction (none \
            if `all_or_nothing` and any row is invalid or skipped) and lists the rows it did \
            not import", body = CustomerImport),
        (status = 403, description = "Only operators with billing management (admin, ops)", body = ErrorBody),
        (status = 413, description = "The file is over `billing.import_max_bytes` (`details.field`: `file`)", body = ErrorBody),
        (status = 415, description = "The body must be text/csv", body = ErrorBody),
        (status = 422, description = "No `mode`, an empty file, or a header without one of \
            the columns (`details.field` names it)", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ImportQuery>,
    request: Request,
) -> ApiResult<Response> {
    if !is_csv(request.headers()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be the customer CSV, with Content-Type: text/csv",
        ));
    }
    let mode = match query.mode.as_deref() {
        Some(mode) => ImportMode::parse(mode)
            .ok_or_else(|| ApiError::invalid_field("mode", "mode must be dry_run or import"))?,
        None => {
            return Err(ApiError::invalid_field(
                "mode",
                "say mode=dry_run to check the file, or mode=import to write it",
            ));
        }
    };
    let limit = state.billing.settings().import_max_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the file is over {limit} bytes (billing.import_max_bytes)"),
        )
        .with_details(serde_json::json!({ "field": "file", "limit_bytes": limit }))
    };
    let body = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| too_large())?;
    let report = state
        .billing
        .import_customers(
            &body,
            mode,
            query.all_or_nothing.unwrap_or(false),
            &caller.actor,
        )
        .await?;
    let view = CustomerImport::from(report);
    let summary = view.audit_summary(body.len());
    let mut response = (StatusCode::OK, Json(view)).into_response();
    response.extensions_mut().insert(AuditAfter(summary));
    Ok(response)
}
