//! Receipts and merchants' billing settings: the public receipt page's data, logos, receipt fields.
