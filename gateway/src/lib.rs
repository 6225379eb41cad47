//! Gema's domain flows, and the one place they are put together.
//!
//! - [`registry`]: merchants → outlets → terminals → devices, input validation
//!   ([`validate`], each failure names its field), device secrets and admin tokens
//!   ([`credentials`]); checks MQTT passwords and ends live sessions when a credential
//!   stops being valid.
//! - [`auth`]: people: users, roles and the permission matrix, logins, tokens, audit,
//!   idempotency keys, rate limits, TOTP.
//! - [`payments`]: provider callbacks in, transactions, the ledger and announcements out,
//!   through one commit loop (group commit).
//! - [`delivery`]: the outbox relay that gets announcements to devices, at least once, in
//!   order per device; built so other downlink kinds can use it.
//! - [`reconciliation`]: providers' reports matched against Gema's transactions, kept as
//!   runs with their rows.
//! - [`device_ops`]: every uplink and presence change enters here first: heartbeats and
//!   health, desired/reported config and its push, commands, device dynamic QR, the
//!   message trace.
//! - [`exports`]: export jobs: CSV files of the ledger or transactions, written by a
//!   worker that claims each job on one node, expired after a retention.
//! - [`whatsapp`]: WhatsApp notifications: the outbox and its paced sender worker, the
//!   Cloud API wire format, webhooks and message texts.
//!
//! [`Gateway::build`] makes them all from a store, a [`transport::DeviceTransport`], a
//! [`clock::Clock`] and the settings, in dependency order, and [`Gateway::run`] runs their
//! tasks. Imports between the modules point one way: `device_ops` → `payments` →
//! `delivery`; nothing imports `gateway.rs`, which imports them all.
//!
//! This crate holds rules, not I/O: storage goes through `gema_store::Store` (the gateway
//! does not know which database backend it is), devices are reached only through the
//! [`transport::DeviceTransport`] trait (never the broker crate), HTTP lives in
//! `admin-api`, configuration in the binary. "Now" comes from the injected
//! [`clock::Clock`]. Every public service method carries a `tracing` span with the ids
//! that matter (`device_id`, `transaction_id`, …) and no secret.
//!
//! Tests of this and other crates use `testing` (feature `testing`): one recording
//! transport, a temporary-SQLite gateway built by the same constructor, fixtures, and the
//! `eventually` poller.

pub mod auth;
pub mod billing;
pub mod certificates;
pub mod claims;
pub mod clock;
pub mod cluster;
pub mod credentials;
pub mod csv_in;
pub mod csv_out;
pub mod delivery;
pub mod device_ops;
mod error;
pub mod exports;
mod gateway;
pub mod jakarta;
pub mod payments;
pub mod reconciliation;
pub mod registry;
pub mod revocations;
pub mod sampler;
pub mod settlement;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transport;
pub mod validate;
pub mod whatsapp;

pub use error::{GatewayError, GatewayResult};
pub use gateway::{Gateway, GatewayDeps, GatewaySettings};
pub use registry::{IssuedCredential, Registry, SecretCheck};

/// A mutex's guard, also after a panic elsewhere poisoned it: every mutex here guards plain
/// maps and flags that a panic cannot leave half-changed.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
