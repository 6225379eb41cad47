//! Gema's domain flows.
//!
//! The registry (merchants → outlets → terminals → devices), with input validation and
//! device credentials ([`credentials`]), and admin-token checks; [`payments`] (ingest, the
//! commit loop, the announcement relay); [`device_ops`] (heartbeats and health, config push,
//! commands, device dynamic QR, the message trace). Devices are reached only through the
//! [`transport::DeviceTransport`] trait, never through the broker crate directly; "now" for
//! time-dependent rules comes from [`clock::Clock`].
//!
//! This crate holds rules, not I/O: storage goes through `gema_store::Store`, HTTP lives in
//! `admin-api`, configuration and wiring in the binary.

pub mod auth;
pub mod clock;
pub mod credentials;
pub mod device_ops;
mod error;
pub mod payments;
pub mod registry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transport;
pub mod validate;

pub use error::{GatewayError, GatewayResult};
pub use registry::{IssuedCredential, Registry, SecretCheck};
