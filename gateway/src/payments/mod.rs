//! Payments: provider events in, transactions, ledger and announcements out.

pub mod money;
pub mod providers;
mod service;

pub use service::{PaymentSettings, Payments, RawRequest, StandardRules, TransactionInput};
