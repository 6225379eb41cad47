//! Payments: provider events in; transactions, ledger postings and announcements out.
//!
//! - `providers.rs`: Midtrans, Xendit and the generic HMAC callback: verify a request from
//!   its exact bytes (signature or token, constant time) and normalise it into one
//!   [`providers::PaymentEvent`]. Pure.
//! - `money.rs`: decimal text to whole rupiah, the platform fee (floored).
//! - `service.rs`: [`Payments`]: ingest, the commit loop, transactions, dynamic QR, expiry;
//!   [`StandardRules`], the state rules the store applies inside its transaction.
//!
//! A provider request, end to end: [`Payments::ingest`] keeps the raw request, verifies it
//! and queues the event for the **commit loop**, a task that applies everything that
//! arrived while the previous commit ran in **one database transaction** (inbox row, dedupe
//! key, state change, three ledger postings, an announcement row for the device bound to
//! the terminal) and answers each caller only after that commit. It then hands the
//! committed announcements to [`crate::delivery`] in memory
//! ([`crate::delivery::Handover::hand_over`]). There may be several commit loops side by
//! side ([`PaymentSettings::commit_loops`]; the binary allows four on PostgreSQL, one on
//! SQLite): the first takes every order until its queue backs up, then the others join;
//! an order's events in flight stay on one loop, so they keep their order. The
//! first commit loop is also the one writer of delivery's results (they come back through
//! the results channel): they ride in its next payment batch's transaction, or go alone
//! after [`PaymentSettings::delivery_results_gather`].
//!
//! Payments depends on delivery (it hands announcements over and writes results), never
//! the other way; it does not know which database backend the store runs on.

pub mod money;
pub mod providers;
mod service;

pub use service::{
    INVOICE_ORDER_PREFIX, PaymentSettings, Payments, RawRequest, StandardRules, TransactionInput,
};
