//! Billing finance: collected and outstanding per merchant and period, revenue, the detail table and its exports.
