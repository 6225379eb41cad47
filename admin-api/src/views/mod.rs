//! The API's JSON shapes: every request body, response body and query string the OpenAPI
//! document describes, one file per area. These are the contract with API users, kept apart
//! from storage records so that a schema change does not silently change the API. The one
//! exception is the error envelope, [`ErrorBody`](crate::error::ErrorBody), which lives with
//! the error type it renders.
//!
//! Route handlers (`crate::routes`) turn HTTP into one gateway call and its result into one
//! of these; the conversions from storage and gateway types live here, next to the shapes.
//! A view never imports a route, the state or the guard. Schema names in the OpenAPI
//! document are the type names, so renaming a type here changes the document.

pub mod audit;
pub mod billing;
pub mod billing_finance;
pub mod billing_import;
pub mod cluster;
pub mod device_ops;
pub mod exports;
pub mod health;
pub mod html;
pub mod payments;
pub mod people;
pub mod qr;
pub mod receipts;
pub mod reconciliation;
pub mod registry;
pub mod settlement;
mod timestamps;
pub mod whatsapp;

use gema_store as store;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One page of a list; pass `next_cursor` as `cursor` to get the next page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> Page<T> {
    pub fn from_store<S>(page: store::Page<S>, view: impl Fn(S) -> T) -> Self {
        Page {
            items: page.items.into_iter().map(view).collect(),
            next_cursor: page.next_after,
        }
    }
}

/// Paging parameters shared by every list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 200, default 50.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn to_request(&self) -> Result<store::PageRequest, crate::error::ApiError> {
        let limit = self.limit.unwrap_or(store::PageRequest::DEFAULT_LIMIT);
        if !(1..=store::PageRequest::MAX_LIMIT).contains(&limit) {
            return Err(crate::error::ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_query",
                format!(
                    "limit must be between 1 and {}",
                    store::PageRequest::MAX_LIMIT
                ),
            )
            .with_details(serde_json::json!({ "field": "limit" })));
        }
        Ok(store::PageRequest {
            after: self.cursor.clone(),
            limit,
        })
    }
}
