//! Terminals (one till of an outlet, with its static QRIS) and the dynamic QR a terminal
//! issues for an amount.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gema_store::{NewTerminal, TerminalFilter, TerminalPatch};

use crate::authz::MerchantScope;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::payments::{CreateDynamicQr, DynamicQr};
use crate::views::registry::{CreateTerminal, Terminal, TerminalQuery, UpdateTerminal};
use crate::views::{Page, PageParams};

#[utoipa::path(post, path = "/terminals", tag = "terminals", request_body = CreateTerminal,
    responses((status = 201, body = Terminal), (status = 400, body = ErrorBody),
        (status = 404, description = "Unknown outlet", body = ErrorBody),
        (status = 409, description = "Label taken in this outlet", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateTerminal>,
) -> ApiResult<(StatusCode, Json<Terminal>)> {
    let terminal = state
        .registry
        .create_terminal(NewTerminal {
            outlet_id: body.outlet_id,
            label: body.label,
            name: body.name,
            payment_ref: body.payment_ref,
            static_qris: body.static_qris,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(terminal.into())))
}

#[utoipa::path(get, path = "/terminals", tag = "terminals", params(PageParams, TerminalQuery),
    responses((status = 200, body = Page<Terminal>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<TerminalQuery>,
    scope: MerchantScope,
) -> ApiResult<Json<Page<Terminal>>> {
    let filter = TerminalFilter {
        outlet_id: query.outlet_id,
        merchant_id: scope.apply(None)?,
    };
    let terminals = state
        .registry
        .terminals(&filter, &page.to_request()?)
        .await?;
    Ok(Json(Page::from_store(terminals, Terminal::from)))
}

#[utoipa::path(get, path = "/terminals/{id}", tag = "terminals", params(("id" = String, Path)),
    responses((status = 200, body = Terminal), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Terminal>> {
    Ok(Json(state.registry.terminal(&id).await?.into()))
}

#[utoipa::path(patch, path = "/terminals/{id}", tag = "terminals", params(("id" = String, Path)),
    request_body = UpdateTerminal,
    responses((status = 200, body = Terminal), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateTerminal>,
) -> ApiResult<Json<Terminal>> {
    let patch = TerminalPatch {
        label: body.label,
        name: body.name,
        payment_ref: body.payment_ref,
        static_qris: body.static_qris,
    };
    Ok(Json(
        state.registry.update_terminal(&id, patch).await?.into(),
    ))
}

#[utoipa::path(post, path = "/terminals/{id}/dynamic-qr", tag = "terminals",
    params(("id" = String, Path)), request_body = CreateDynamicQr,
    responses(
        (status = 201, description = "A pending transaction and the QR that pays it", body = DynamicQr),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No static QRIS on the terminal, or its merchant is not approved", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn dynamic_qr(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateDynamicQr>,
) -> ApiResult<(StatusCode, Json<DynamicQr>)> {
    let (transaction, payload) = state
        .payments
        .dynamic_qr(&id, body.amount, body.expires_in_secs)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(DynamicQr {
            payload,
            transaction: transaction.into(),
        }),
    ))
}
