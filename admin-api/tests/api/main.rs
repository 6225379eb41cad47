//! Router tests: the real router over a real SQLite file, driven with `oneshot` (no sockets).

mod bad_input;
mod billing;
mod billing_finance;
mod billing_import;
mod billing_isolation;

mod certificates;
mod claims;
mod cluster;
mod device_ops;
mod dynamic_qr;
mod exports;
mod helpers;
mod idempotency;
mod payments;
mod people;
mod permissions;
mod ratelimit;
mod reconciliation;
mod registry;
mod settlement;
mod whatsapp;
