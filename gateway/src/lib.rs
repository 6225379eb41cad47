//! Gema's domain flows.
//!
//! Today: the registry (merchants → outlets → terminals → devices), with input validation and
//! device credentials ([`credentials`]), and admin-token checks. Payments, announcements and
//! device operations come with later issues, and will reach devices only through a transport
//! trait, never through the broker crate directly.
//!
//! This crate holds rules, not I/O: storage goes through `gema_store::Store`, HTTP lives in
//! `admin-api`, configuration and wiring in the binary.

pub mod auth;
pub mod credentials;
mod error;
pub mod payments;
pub mod registry;
pub mod transport;
pub mod validate;

pub use error::{GatewayError, GatewayResult};
pub use registry::{IssuedCredential, Registry, SecretCheck};
