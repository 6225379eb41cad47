//! Registry routes under `/api/v1`. Each handler turns HTTP into one registry call and the
//! result back into a view; rules live in `gema-gateway`.

pub mod audit;
pub mod auth;
pub mod device_ops;
pub mod devices;
pub mod health;
pub mod merchants;
pub mod outlets;
pub mod payments;
pub mod terminals;
pub mod tokens;
pub mod transactions;
pub mod users;
