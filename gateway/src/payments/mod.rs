//! Payments: provider events in, transactions, ledger and announcements out.

pub mod money;
pub mod providers;
mod relay;
mod service;

pub use relay::{AnnouncementRelay, RelaySettings, RelayWake};
pub use service::{PaymentSettings, Payments, RawRequest, StandardRules, TransactionInput};
