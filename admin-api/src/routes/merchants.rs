//! Merchants and their review: create (pending), update, approve, reject, suspend.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gema_store::{MerchantFilter, MerchantPatch, NewMerchant};

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::registry::{
    CreateMerchant, Merchant, MerchantQuery, StatusReason, UpdateMerchant,
};
use crate::views::{Page, PageParams};

#[utoipa::path(post, path = "/merchants", tag = "merchants", request_body = CreateMerchant,
    responses(
        (status = 201, description = "Created, status pending", body = Merchant),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateMerchant>,
) -> ApiResult<(StatusCode, Json<Merchant>)> {
    let merchant = state
        .registry
        .create_merchant(NewMerchant {
            name: body.name,
            email: body.email,
            phone: body.phone,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(merchant.into())))
}

#[utoipa::path(get, path = "/merchants", tag = "merchants",
    params(PageParams, MerchantQuery),
    responses((status = 200, body = Page<Merchant>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> ApiResult<Json<Page<Merchant>>> {
    let filter = MerchantFilter {
        status: query.status.map(Into::into),
    };
    let merchants = state
        .registry
        .merchants(&filter, &page.to_request()?)
        .await?;
    Ok(Json(Page::from_store(merchants, Merchant::from)))
}

#[utoipa::path(get, path = "/merchants/{id}", tag = "merchants",
    params(("id" = String, Path)),
    responses((status = 200, body = Merchant), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Merchant>> {
    Ok(Json(state.registry.merchant(&id).await?.into()))
}

#[utoipa::path(patch, path = "/merchants/{id}", tag = "merchants",
    params(("id" = String, Path)), request_body = UpdateMerchant,
    responses((status = 200, body = Merchant), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateMerchant>,
) -> ApiResult<Json<Merchant>> {
    let patch = MerchantPatch {
        name: body.name,
        email: body.email,
        phone: body.phone,
    };
    Ok(Json(
        state.registry.update_merchant(&id, patch).await?.into(),
    ))
}

#[utoipa::path(post, path = "/merchants/{id}/approve", tag = "merchants",
    params(("id" = String, Path)),
    responses((status = 200, description = "Approved (from pending or suspended)", body = Merchant),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Merchant>> {
    Ok(Json(state.registry.approve_merchant(&id).await?.into()))
}

#[utoipa::path(post, path = "/merchants/{id}/reject", tag = "merchants",
    params(("id" = String, Path)), request_body = StatusReason,
    responses((status = 200, description = "Rejected (from pending)", body = Merchant),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn reject(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StatusReason>,
) -> ApiResult<Json<Merchant>> {
    Ok(Json(
        state
            .registry
            .reject_merchant(&id, &body.reason)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/merchants/{id}/suspend", tag = "merchants",
    params(("id" = String, Path)), request_body = StatusReason,
    responses((status = 200, description = "Suspended (from approved)", body = Merchant),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn suspend(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StatusReason>,
) -> ApiResult<Json<Merchant>> {
    Ok(Json(
        state
            .registry
            .suspend_merchant(&id, &body.reason)
            .await?
            .into(),
    ))
}
