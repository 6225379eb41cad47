//! Subscription billing that merchants run for their own customers (the billing seed's
//! packages, customers and prepaid monthly invoices) and that operators run across
//! merchants: invoices made the day before the billing day, paid by hand or by QRIS at the
//! merchant's soundbox, isolation of non-payers with a signed webhook to the merchant's
//! network, the CSV import, receipts and billing finance.

use std::sync::Arc;
use std::time::Duration;

use gema_store::Store;

use crate::clock::Clock;
use crate::payments::Payments;

pub mod finance;
pub mod import;
pub mod receipts;

/// Billing's settings (`[billing]`).
#[derive(Debug, Clone)]
pub struct BillingSettings {
    /// When the daily invoice run happens, Asia/Jakarta (`HH:MM`, default 06:00).
    pub generate_time: (u8, u8),
    /// How often a node checks whether the daily run is due (it runs once per cluster).
    pub schedule_check_interval: Duration,
    /// How often the isolation webhook outbox is swept.
    pub webhook_interval: Duration,
    /// The first retry's delay; doubling up to an hour, given up after `webhook_attempts`.
    pub webhook_retry_base: Duration,
    pub webhook_attempts: u32,
    /// The largest customer CSV the import takes.
    pub import_max_bytes: usize,
    /// The largest logo a merchant may upload.
    pub logo_max_bytes: usize,
    /// How long an invoice's QRIS stays payable.
    pub qris_ttl_secs: u64,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            generate_time: (6, 0),
            schedule_check_interval: Duration::from_secs(60),
            webhook_interval: Duration::from_secs(5),
            webhook_retry_base: Duration::from_secs(10),
            webhook_attempts: 12,
            import_max_bytes: 5 * 1024 * 1024,
            logo_max_bytes: 256 * 1024,
            qris_ttl_secs: 24 * 3600,
        }
    }
}

/// The billing service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Billing {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Arc<BillingSettings>,
    payments: Payments,
}

impl Billing {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: BillingSettings,
        payments: Payments,
    ) -> Self {
        Billing {
            store,
            clock,
            settings: Arc::new(settings),
            payments,
        }
    }

    pub fn settings(&self) -> &BillingSettings {
        &self.settings
    }
}
