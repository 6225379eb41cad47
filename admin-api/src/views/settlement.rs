//! Bank accounts, payout settings, settlement batches, adjustments, balances, the batch
//! reconciliation and the dashboard summary.

use gema_gateway::settlement as domain;
use gema_store as store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::timestamps::instant;

#[derive(Debug, Serialize, ToSchema)]
pub struct BankAccount {
    pub merchant_id: String,
    /// The bank's three-digit code (014 BCA, 008 Mandiri, 002 BRI, 009 BNI, …).
    pub bank_code: String,
    /// Whole for admin and finance (operators) and the merchant's owner and finance users;
    /// the last four digits for everyone else (`account_number_masked`).
    pub account_number: String,
    pub account_number_masked: bool,
    pub account_holder: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl BankAccount {
    pub fn new(a: store::BankAccount, unmasked: bool) -> Self {
        BankAccount {
            merchant_id: a.merchant_id,
            bank_code: a.bank_code,
            account_number: if unmasked {
                a.account_number
            } else {
                domain::mask_account_number(&a.account_number)
            },
            account_number_masked: !unmasked,
            account_holder: a.account_holder,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutBankAccount {
    /// Three digits.
    pub bank_code: String,
    /// 5 to 20 digits; spaces, dots and dashes are dropped.
    pub account_number: String,
    pub account_holder: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPayoutSettings {
    /// `manual`, `daily` or `weekly`.
    pub schedule: String,
    /// Whole rupiah, at least 1.
    pub minimum_amount: i64,
    /// `HH:MM`, Asia/Jakarta.
    pub cutoff_time: String,
    /// ISO weekday (1 = Monday) of a weekly schedule.
    pub weekly_day: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutSettings {
    pub merchant_id: String,
    pub schedule: String,
    pub minimum_amount: i64,
    pub cutoff_time: String,
    pub weekly_day: Option<i32>,
    /// True when the merchant has no settings of its own and the configured defaults apply.
    pub is_default: bool,
}

impl From<domain::EffectiveSettings> for PayoutSettings {
    fn from(s: domain::EffectiveSettings) -> Self {
        PayoutSettings {
            merchant_id: s.merchant_id,
            schedule: s.schedule.as_str().into(),
            minimum_amount: s.minimum_amount,
            cutoff_time: s.cutoff_time,
            weekly_day: s.weekly_day,
            is_default: s.is_default,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateBatches {
    /// Payables created up to this instant (RFC 3339; default now, never in the future).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub cutoff: Option<OffsetDateTime>,
    /// Only these merchants (default: every merchant with unbatched payables).
    pub merchant_ids: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Skipped {
    pub merchant_id: String,
    /// `no_bank_account`, `below_minimum` or `nothing_to_pay`.
    pub reason: String,
    /// What it is owed now (whole rupiah).
    pub amount: i64,
    pub minimum_amount: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Generated {
    pub generation_id: String,
    pub batches: Vec<Batch>,
    /// Merchants with unbatched payables that got no batch, and why.
    pub skipped: Vec<Skipped>,
}

impl Generated {
    pub fn new(g: store::GeneratedBatches, unmasked: bool) -> Self {
        Generated {
            generation_id: g.generation_id,
            batches: g
                .batches
                .into_iter()
                .map(|b| Batch::new(b, unmasked))
                .collect(),
            skipped: g
                .skipped
                .into_iter()
                .map(|s| Skipped {
                    merchant_id: s.merchant_id,
                    reason: s.reason.into(),
                    amount: s.amount,
                    minimum_amount: s.minimum_amount,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Batch {
    pub id: String,
    pub merchant_id: String,
    /// `pending`, `paid`, `failed` or `cancelled`.
    pub status: String,
    /// Payables created up to this instant were taken.
    #[serde(with = "time::serde::rfc3339")]
    pub cutoff: OffsetDateTime,
    /// Transaction payables (refunds netted), whole rupiah.
    pub payable_amount: i64,
    pub adjustment_amount: i64,
    /// What the batch pays: payables plus adjustments.
    pub net_amount: i64,
    pub item_count: i64,
    pub bank_code: String,
    /// Masked as in [`BankAccount`].
    pub account_number: String,
    pub account_holder: String,
    pub payout_reference: Option<String>,
    pub payout_note: Option<String>,
    pub paid_amount: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub paid_at: Option<OffsetDateTime>,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// Set once its entries were given back for the next generation.
    #[serde(with = "time::serde::rfc3339::option")]
    pub reprocessed_at: Option<OffsetDateTime>,
    pub generated_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Batch {
    pub fn new(b: store::SettlementBatch, unmasked: bool) -> Self {
        let net_amount = b.net_amount();
        Batch {
            id: b.id,
            merchant_id: b.merchant_id,
            status: b.status.as_str().into(),
            cutoff: instant(b.cutoff_ms),
            payable_amount: b.payable_amount,
            adjustment_amount: b.adjustment_amount,
            net_amount,
            item_count: b.item_count,
            bank_code: b.bank_code,
            account_number: if unmasked {
                b.account_number
            } else {
                domain::mask_account_number(&b.account_number)
            },
            account_holder: b.account_holder,
            payout_reference: b.payout_reference,
            payout_note: b.payout_note,
            paid_amount: b.paid_amount,
            paid_at: b.paid_at,
            reason: b.reason,
            reprocessed_at: b.reprocessed_at,
            generated_by: b.generated_by,
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchEvent {
    pub id: String,
    /// `generated`, `adjusted`, `paid`, `reference_changed`, `failed`, `cancelled` or
    /// `reprocessed`.
    pub event: String,
    pub from_status: Option<String>,
    pub to_status: String,
    /// JSON text: the reference, reason or adjustment of the change.
    pub detail: Option<String>,
    pub actor: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<store::BatchEvent> for BatchEvent {
    fn from(e: store::BatchEvent) -> Self {
        BatchEvent {
            id: e.id,
            event: e.event,
            from_status: e.from_status,
            to_status: e.to_status,
            detail: e.detail,
            actor: e.actor,
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchDetail {
    pub batch: Batch,
    /// Its history, oldest first.
    pub events: Vec<BatchEvent>,
    pub adjustments: Vec<Adjustment>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    pub ledger_entry_id: String,
    /// `merchant_payable` or `payable_adjustment`.
    pub entry_type: String,
    pub amount: i64,
    /// False once the batch was reprocessed (the entry went back to be batched again).
    pub live: bool,
    pub transaction_id: Option<String>,
    pub order_ref: Option<String>,
    pub adjustment_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<store::BatchItem> for BatchItem {
    fn from(i: store::BatchItem) -> Self {
        BatchItem {
            ledger_entry_id: i.ledger_entry_id,
            entry_type: i.entry_type.as_str().into(),
            amount: i.amount,
            live: i.live,
            transaction_id: i.transaction_id,
            order_ref: i.order_ref,
            adjustment_id: i.adjustment_id,
            created_at: i.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkPaid {
    /// The bank transfer's reference.
    pub payout_reference: String,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetReference {
    pub payout_reference: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdjustment {
    /// `hold` (negative), `release` (positive, at most what is held), `fee_correction`,
    /// `chargeback` (negative) or `manual`.
    pub adjustment_type: String,
    /// Signed whole rupiah: the change to the payout.
    pub amount: i64,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Adjustment {
    pub id: String,
    pub batch_id: String,
    pub merchant_id: String,
    pub adjustment_type: String,
    pub amount: i64,
    pub reason: String,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<store::SettlementAdjustment> for Adjustment {
    fn from(a: store::SettlementAdjustment) -> Self {
        Adjustment {
            id: a.id,
            batch_id: a.batch_id,
            merchant_id: a.merchant_id,
            adjustment_type: a.adjustment_type.as_str().into(),
            amount: a.amount,
            reason: a.reason,
            created_by: a.created_by,
            created_at: a.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdjustmentCreated {
    pub adjustment: Adjustment,
    pub batch: Batch,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchQuery {
    pub merchant_id: Option<String>,
    /// `pending`, `paid`, `failed` or `cancelled`.
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `standard` (default: one row per ledger entry) or `bank_generic` (one row per
    /// transfer).
    pub format: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdjustmentQuery {
    pub merchant_id: Option<String>,
    pub adjustment_type: Option<String>,
    /// Created at or after (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>)]
    pub from: Option<OffsetDateTime>,
    /// Created before (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>)]
    pub to: Option<OffsetDateTime>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MerchantQuery {
    /// Operators: one merchant (default all). Merchant users always get their own.
    pub merchant_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Balance {
    pub merchant_id: String,
    /// Sum of its payable and held ledger entries: `unbatched + in_batch + paid + held`.
    pub ledger_total: i64,
    pub unbatched: i64,
    pub in_batch: i64,
    pub paid: i64,
    pub held: i64,
}

impl From<store::Balance> for Balance {
    fn from(b: store::Balance) -> Self {
        Balance {
            merchant_id: b.merchant_id,
            ledger_total: b.ledger_total,
            unbatched: b.unbatched,
            in_batch: b.in_batch,
            paid: b.paid,
            held: b.held,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusCount {
    pub status: String,
    pub count: i64,
    /// Net amount of the batches in this status.
    pub amount: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementTotals {
    /// The merchant these are for; null for all merchants.
    pub merchant_id: Option<String>,
    pub unbatched: i64,
    pub pending_payout: i64,
    pub paid_payout: i64,
    pub held: i64,
    pub platform_fees: i64,
    pub batches_by_status: Vec<StatusCount>,
}

impl SettlementTotals {
    pub fn new(t: store::SettlementTotals, merchant_id: Option<String>) -> Self {
        SettlementTotals {
            merchant_id,
            unbatched: t.unbatched,
            pending_payout: t.pending_payout,
            paid_payout: t.paid_payout,
            held: t.held,
            platform_fees: t.platform_fees,
            batches_by_status: t
                .batches_by_status
                .into_iter()
                .map(|s| StatusCount {
                    status: s.status,
                    count: s.count,
                    amount: s.amount,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchReconciliation {
    pub batch_id: String,
    pub merchant_id: String,
    pub status: String,
    /// Sum of the ledger entries the batch holds (held, if reprocessed).
    pub expected_amount: i64,
    /// Its recorded payables plus adjustments.
    pub recorded_amount: i64,
    pub adjustment_amount: i64,
    pub paid_amount: Option<i64>,
    /// Empty when all agree: `ledger_differs_from_batch_total`, `entry_count_differs`,
    /// `paid_differs_from_ledger`.
    pub differences: Vec<String>,
}

impl From<domain::BatchReconciliation> for BatchReconciliation {
    fn from(r: domain::BatchReconciliation) -> Self {
        BatchReconciliation {
            batch_id: r.batch_id,
            merchant_id: r.merchant_id,
            status: r.status.as_str().into(),
            expected_amount: r.expected_amount,
            recorded_amount: r.recorded_amount,
            adjustment_amount: r.adjustment_amount,
            paid_amount: r.paid_amount,
            differences: r.differences.into_iter().map(String::from).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FleetCounts {
    pub online: i64,
    pub degraded: i64,
    pub offline: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaidToday {
    pub count: i64,
    /// Whole rupiah.
    pub amount: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardSummary {
    /// The merchant these are for; null for all merchants.
    pub merchant_id: Option<String>,
    /// The Asia/Jakarta day of `paid_today` (`YYYY-MM-DD`).
    pub today: String,
    pub paid_today: PaidToday,
    /// Null for callers who may not see settlement (merchant ops and viewers).
    pub settlement: Option<SettlementTotals>,
    pub latest_batches: Vec<Batch>,
    pub devices: FleetCounts,
    pub announcements_pending: i64,
}

impl DashboardSummary {
    pub fn new(
        d: domain::DashboardSummary,
        merchant_id: Option<String>,
        devices: FleetCounts,
        settlement: bool,
        unmasked: bool,
    ) -> Self {
        DashboardSummary {
            merchant_id: merchant_id.clone(),
            today: d.today,
            paid_today: PaidToday {
                count: d.paid_today.count,
                amount: d.paid_today.amount,
            },
            settlement: settlement.then(|| SettlementTotals::new(d.settlement, merchant_id)),
            latest_batches: if settlement {
                d.latest_batches
                    .into_iter()
                    .map(|b| Batch::new(b, unmasked))
                    .collect()
            } else {
                Vec::new()
            },
            devices,
            announcements_pending: d.announcements_pending,
        }
    }
}
