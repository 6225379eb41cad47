//! The handlers, one module per area. Each handler turns HTTP into one gateway call and the
//! result into a view from [`crate::views`]; rules live in `gema-gateway`, permissions in
//! [`crate::authz`]. A route module holds handlers (and private helpers) only: no JSON
//! shape, and no import of another route module or of the crate root. [`crate::router`]
//! registers each handler; its `#[utoipa::path]` annotation is its OpenAPI entry.

pub mod audit;
pub mod auth;
pub mod billing;
pub mod billing_finance;
pub mod billing_import;
pub mod claims;
pub mod device_ops;
pub mod devices;
pub mod exports;
pub mod health;
pub mod merchants;
pub mod nodes;
pub mod outlets;
pub mod payments;
pub mod receipts;
pub mod reconciliation;
pub mod settlement;
pub mod terminals;
pub mod tokens;
pub mod transactions;
pub mod users;
pub mod whatsapp;
