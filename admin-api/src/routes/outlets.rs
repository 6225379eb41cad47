//! Outlets: a merchant's places of business.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gema_store::{NewOutlet, OutletFilter, OutletPatch};

use crate::authz::MerchantScope;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::registry::{CreateOutlet, Outlet, OutletQuery, UpdateOutlet};
use crate::views::{Page, PageParams};

#[utoipa::path(post, path = "/outlets", tag = "outlets", request_body = CreateOutlet,
    responses((status = 201, body = Outlet), (status = 400, body = ErrorBody),
        (status = 404, description = "Unknown merchant", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateOutlet>,
) -> ApiResult<(StatusCode, Json<Outlet>)> {
    let outlet = state
        .registry
        .create_outlet(NewOutlet {
            merchant_id: body.merchant_id,
            name: body.name,
            address: body.address,
            city: body.city,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(outlet.into())))
}

#[utoipa::path(get, path = "/outlets", tag = "outlets", params(PageParams, OutletQuery),
    responses((status = 200, body = Page<Outlet>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<OutletQuery>,
    scope: MerchantScope,
) -> ApiResult<Json<Page<Outlet>>> {
    let filter = OutletFilter {
        merchant_id: scope.apply(query.merchant_id)?,
    };
    let outlets = state.registry.outlets(&filter, &page.to_request()?).await?;
    Ok(Json(Page::from_store(outlets, Outlet::from)))
}

#[utoipa::path(get, path = "/outlets/{id}", tag = "outlets", params(("id" = String, Path)),
    responses((status = 200, body = Outlet), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Outlet>> {
    Ok(Json(state.registry.outlet(&id).await?.into()))
}

#[utoipa::path(patch, path = "/outlets/{id}", tag = "outlets", params(("id" = String, Path)),
    request_body = UpdateOutlet,
    responses((status = 200, body = Outlet), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateOutlet>,
) -> ApiResult<Json<Outlet>> {
    let patch = OutletPatch {
        name: body.name,
        address: body.address,
        city: body.city,
    };
    Ok(Json(state.registry.update_outlet(&id, patch).await?.into()))
}
