//! Merchant payouts: bank accounts, payout settings, settlement batches and their
//! lifecycle, adjustments, the payout reports (the standard CSV and the generic bank
//! upload), balances, the dashboard summary, and the scheduled generation.
//!
//! The rules of money live here and in the store's transaction: this module validates
//! what a caller asks (a bank code is three digits, a hold withholds, a reference is
//! given), the store decides atomically what may happen to a batch (`gema_store::settlement`
//! has the ledger model). Times are UTC inside; a cut-off time of day and the reports'
//! times are Asia/Jakarta (UTC+7, no daylight saving).

use std::sync::Arc;
use std::time::Duration;

use gema_store::{
    AdjustmentFilter, AdjustmentType, Balance, BankAccount, BatchEvent, BatchFilter, BatchItem,
    BatchStatus, GenerateBatches, GeneratedBatches, NewAdjustment, NewBankAccount,
    NewPayoutSettings, Page, PageRequest, PaidTotals, PayoutSchedule, PayoutSettings,
    SettlementAdjustment, SettlementBatch, SettlementTotals, Store,
};
use serde::Serialize;
use time::{OffsetDateTime, UtcOffset};

use crate::auth::{AdminRole, MerchantRole, Role};
use crate::clock::Clock;
use crate::csv_out::field as csv_field;
use crate::error::{GatewayError, GatewayResult};
use crate::payments::money::MAX_AMOUNT;
use crate::validate;
use crate::whatsapp::WhatsApp;

pub use crate::jakarta::JAKARTA;

/// The payout defaults of merchants without settings of their own (config `[settlement]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementSettings {
    pub schedule: PayoutSchedule,
    /// Whole rupiah; a merchant owed less is skipped (and told why).
    pub minimum_payout: i64,
    /// `HH:MM`, Asia/Jakarta: a scheduled run takes payables created up to this time.
    pub cutoff_time: String,
    /// ISO weekday of weekly payouts (1 = Monday).
    pub weekly_day: u8,
    /// How often the scheduler looks for a cut-off that passed.
    pub schedule_check_interval: Duration,
}

impl Default for SettlementSettings {
    fn default() -> Self {
        SettlementSettings {
            schedule: PayoutSchedule::Manual,
            minimum_payout: 50_000,
            cutoff_time: "23:59".into(),
            weekly_day: 1,
            schedule_check_interval: Duration::from_secs(60),
        }
    }
}

/// What a caller sends to set a bank account.
#[derive(Debug, Clone)]
pub struct BankAccountInput {
    pub bank_code: String,
    pub account_number: String,
    pub account_holder: String,
}

/// What a caller sends to set payout settings.
#[derive(Debug, Clone)]
pub struct PayoutSettingsInput {
    pub schedule: String,
    pub minimum_amount: i64,
    pub cutoff_time: String,
    pub weekly_day: Option<i64>,
}

/// A merchant's payout settings in effect.
#[derive(Debug, Clone, Serialize)]
pub struct EffectiveSettings {
    pub merchant_id: String,
    pub schedule: PayoutSchedule,
    pub minimum_amount: i64,
    pub cutoff_time: String,
    pub weekly_day: Option<i32>,
    /// True when the merchant has no settings of its own (the configured defaults apply).
    pub is_default: bool,
}

/// What a caller sends to generate batches.
#[derive(Debug, Clone, Default)]
pub struct GenerateInput {
    /// Defaults to now; never in the future.
    pub cutoff: Option<OffsetDateTime>,
    pub merchant_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct AdjustmentInput {
    pub adjustment_type: String,
    pub amount: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct AdjustmentQuery {
    pub merchant_id: Option<String>,
    pub adjustment_type: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

/// Which payout report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// One row per ledger entry the batch pays.
    Standard,
    /// One row per transfer, for a bank's bulk-transfer upload.
    BankGeneric,
}

impl ReportFormat {
    pub fn parse(value: Option<&str>) -> GatewayResult<Self> {
        match value {
            None | Some("standard") => Ok(ReportFormat::Standard),
            Some("bank_generic") => Ok(ReportFormat::BankGeneric),
            Some(_) => Err(GatewayError::invalid(
                "format",
                "is `standard` (the default) or `bank_generic`",
            )),
        }
    }
}

/// Per batch: what the ledger says it holds against what it recorded and paid.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReconciliation {
    pub batch_id: String,
    pub merchant_id: String,
    pub status: BatchStatus,
    /// Sum of the ledger entries the batch holds (or held, if reprocessed).
    pub expected_amount: i64,
    /// Its recorded payables plus adjustments.
    pub recorded_amount: i64,
    pub adjustment_amount: i64,
    pub paid_amount: Option<i64>,
    /// Empty when everything agrees.
    pub differences: Vec<&'static str>,
}

/// The dashboard's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct DashboardSummary {
    /// The Asia/Jakarta day the "today" figures are for (`YYYY-MM-DD`).
    pub today: String,
    pub paid_today: PaidTotals,
    pub settlement: SettlementTotals,
    pub latest_batches: Vec<SettlementBatch>,
    pub announcements_pending: i64,
}

/// The settlement service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Settlement {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Arc<SettlementSettings>,
    /// Payout notices.
    whatsapp: WhatsApp,
}

/// Whether a role sees whole bank account numbers (the others see the last four digits).
pub fn sees_account_numbers(role: Role) -> bool {
    matches!(
        role,
        Role::Admin(AdminRole::Admin | AdminRole::Finance)
            | Role::Merchant(MerchantRole::Owner | MerchantRole::Finance)
    )
}

/// `••••••7890`: the last four digits.
pub fn mask_account_number(number: &str) -> String {
    let digits = number.chars().count();
    let shown: String = number.chars().skip(digits.saturating_sub(4)).collect();
    format!("{}{shown}", "•".repeat(digits.saturating_sub(4)))
}

/// `HH:MM` (00:00–23:59) as hours and minutes.
pub fn parse_cutoff_time(field: &'static str, value: &str) -> GatewayResult<(u8, u8)> {
    let bad = || GatewayError::invalid(field, "is a time of day HH:MM (Asia/Jakarta)");
    let (h, m) = value.split_once(':').ok_or_else(bad)?;
    let h: u8 = validate::fixed_digits(h, 2).ok_or_else(bad)?;
    let m: u8 = validate::fixed_digits(m, 2).ok_or_else(bad)?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The newest instant at or before `now` that is `time` on a day of `schedule` in Jakarta,
/// or `None` for a manual schedule.
pub fn last_cutoff(
    now: OffsetDateTime,
    schedule: PayoutSchedule,
    (hour, minute): (u8, u8),
    weekly_day: u8,
) -> Option<OffsetDateTime> {
    if schedule == PayoutSchedule::Manual {
        return None;
    }
    let local = now.to_offset(JAKARTA);
    let time = time::Time::from_hms(hour, minute, 59).ok()?;
    let mut day = local.date();
    for _ in 0..8 {
        let candidate = day.with_time(time).assume_offset(JAKARTA);
        let weekday_ok =
            schedule == PayoutSchedule::Daily || day.weekday().number_from_monday() == weekly_day;
        if candidate <= local && weekday_ok {
            return Some(candidate.to_offset(UtcOffset::UTC));
        }
        day = day.previous_day()?;
    }
    None
}

/// An instant as Asia/Jakarta RFC 3339 (`2026-12-03T07:00:00+07:00`).
pub fn jakarta(at: OffsetDateTime) -> String {
    at.to_offset(JAKARTA)
        .replace_nanosecond(0)
        .unwrap_or(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Settlement {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: SettlementSettings,
        whatsapp: WhatsApp,
    ) -> Self {
        Settlement {
            store,
            clock,
            settings: Arc::new(settings),
            whatsapp,
        }
    }

    pub fn settings(&self) -> &SettlementSettings {
        &self.settings
    }

    // Bank accounts and payout settings.

    #[tracing::instrument(skip_all, fields(merchant_id = merchant_id))]
    pub async fn put_bank_account(
        &self,
        merchant_id: &str,
        input: BankAccountInput,
    ) -> GatewayResult<BankAccount> {
        let bank_code = input.bank_code.trim().to_string();
        if bank_code.len() != 3 || !bank_code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GatewayError::invalid(
                "bank_code",
                "is the bank's three-digit code (e.g. 014 for BCA, 008 for Mandiri)",
            ));
        }
        let account_number: String = input
            .account_number
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.'))
            .collect();
        if !(5..=20).contains(&account_number.len())
            || !account_number.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(GatewayError::invalid(
                "account_number",
                "is 5 to 20 digits (spaces, dots and dashes are ignored)",
            ));
        }
        let account_holder = validate::text("account_holder", &input.account_holder, 100)?;
        Ok(self
            .store
            .put_bank_account(
                merchant_id,
                NewBankAccount {
                    bank_code,
                    account_number,
                    account_holder,
                },
            )
            .await?)
    }

    pub async fn bank_account(&self, merchant_id: &str) -> GatewayResult<BankAccount> {
        self.store.get_merchant(merchant_id).await?;
        self.store
            .bank_account(merchant_id)
            .await?
            .ok_or_else(|| GatewayError::NotFound {
                entity: "bank account of merchant",
                id: merchant_id.to_string(),
            })
    }

    #[tracing::instrument(skip_all, fields(merchant_id = merchant_id))]
    pub async fn put_payout_settings(
        &self,
        merchant_id: &str,
        input: PayoutSettingsInput,
    ) -> GatewayResult<EffectiveSettings> {
        let schedule = PayoutSchedule::parse(&input.schedule)
            .ok_or_else(|| GatewayError::invalid("schedule", "is one of manual, daily, weekly"))?;
        if input.minimum_amount < 1 {
            return Err(GatewayError::invalid(
                "minimum_amount",
                "is a whole number of rupiah, at least 1",
            ));
        }
        parse_cutoff_time("cutoff_time", &input.cutoff_time)?;
        let weekly_day = match (schedule, input.weekly_day) {
            (PayoutSchedule::Weekly, Some(day @ 1..=7)) => Some(day as i32),
            (PayoutSchedule::Weekly, None) => Some(i32::from(self.settings.weekly_day)),
            (PayoutSchedule::Weekly, Some(_)) => {
                return Err(GatewayError::invalid(
                    "weekly_day",
                    "is an ISO weekday, 1 (Monday) to 7 (Sunday)",
                ));
            }
            (_, Some(_)) => {
                return Err(GatewayError::invalid(
                    "weekly_day",
                    "applies only to a weekly schedule",
                ));
            }
            (_, None) => None,
        };
        let saved = self
            .store
            .put_payout_settings(
                merchant_id,
                NewPayoutSettings {
                    schedule,
                    minimum_amount: input.minimum_amount,
                    cutoff_time: input.cutoff_time.trim().to_string(),
                    weekly_day,
                },
            )
            .await?;
        Ok(Self::effective(merchant_id, Some(saved), &self.settings))
    }

    pub async fn payout_settings(&self, merchant_id: &str) -> GatewayResult<EffectiveSettings> {
        self.store.get_merchant(merchant_id).await?;
        let own = self.store.payout_settings(merchant_id).await?;
        Ok(Self::effective(merchant_id, own, &self.settings))
    }

    fn effective(
        merchant_id: &str,
        own: Option<PayoutSettings>,
        defaults: &SettlementSettings,
    ) -> EffectiveSettings {
        match own {
            Some(s) => EffectiveSettings {
                merchant_id: merchant_id.to_string(),
                schedule: s.schedule,
                minimum_amount: s.minimum_amount,
                cutoff_time: s.cutoff_time,
                weekly_day: s.weekly_day,
                is_default: false,
            },
            None => EffectiveSettings {
                merchant_id: merchant_id.to_string(),
                schedule: defaults.schedule,
                minimum_amount: defaults.minimum_payout,
                cutoff_time: defaults.cutoff_time.clone(),
                weekly_day: (defaults.schedule == PayoutSchedule::Weekly)
                    .then_some(i32::from(defaults.weekly_day)),
                is_default: true,
            },
        }
    }

    // Batches.

    /// Generates batches by hand (`POST /settlement-batches`).
    #[tracing::instrument(skip_all)]
    pub async fn generate(
        &self,
        input: GenerateInput,
        actor: &str,
    ) -> GatewayResult<GeneratedBatches> {
        let now = self.clock.now_utc();
        if input.cutoff.is_some_and(|cutoff| cutoff > now) {
            return Err(GatewayError::invalid(
                "cutoff",
                "must not be in the future: payables not yet created cannot be batched",
            ));
        }
        let merchant_ids = match input.merchant_ids {
            None => None,
            Some(ids) if ids.is_empty() => {
                return Err(GatewayError::invalid(
                    "merchant_ids",
                    "must name at least one merchant, or be left out for all",
                ));
            }
            Some(ids) if ids.len() > 1_000 => {
                return Err(GatewayError::invalid(
                    "merchant_ids",
                    "names at most 1,000 merchants; leave it out for all",
                ));
            }
            Some(mut ids) => {
                ids.sort();
                ids.dedup();
                Some(ids)
            }
        };
        let done = self
            .store
            .generate_settlement_batches(GenerateBatches {
                cutoff_ms: input.cutoff.map(unix_ms),
                merchant_ids,
                exclude_merchant_ids: Vec::new(),
                schedule: None,
                default_schedule: self.settings.schedule,
                default_minimum: self.settings.minimum_payout,
                generated_by: actor.to_string(),
            })
            .await?;
        metrics::counter!("gema_settlement_batches_generated_total", "by" => "api")
            .increment(done.batches.len() as u64);
        Ok(done)
    }

    /// One scheduled pass: for each (schedule, cut-off time, weekday) in use, if its newest
    /// cut-off passed and was not run yet, generates batches for the merchants on it. Runs
    /// on the node holding the settlement lease; the run key makes a second pass (or node)
    /// a no-op.
    #[tracing::instrument(skip_all)]
    pub async fn run_schedule(&self) -> GatewayResult<usize> {
        let now = self.clock.now_utc();
        let own = self.store.all_payout_settings().await?;
        // The groups in use: the defaults, and every distinct own setting.
        let mut groups: Vec<(PayoutSchedule, String, u8)> = vec![(
            self.settings.schedule,
            self.settings.cutoff_time.clone(),
            self.settings.weekly_day,
        )];
        for s in &own {
            let day = s
                .weekly_day
                .and_then(|d| u8::try_from(d).ok())
                .unwrap_or(self.settings.weekly_day);
            let group = (s.schedule, s.cutoff_time.clone(), day);
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
        let mut made = 0;
        for (schedule, cutoff_time, weekly_day) in groups {
            let Ok(hm) = parse_cutoff_time("cutoff_time", &cutoff_time) else {
                tracing::warn!(
                    cutoff_time,
                    "a payout setting has an unreadable cut-off time"
                );
                continue;
            };
            let Some(cutoff) = last_cutoff(now, schedule, hm, weekly_day) else {
                continue;
            };
            // Merchants in this group: those with these own settings, plus (for the
            // defaults' group) every merchant without settings.
            let is_default_group = (schedule, cutoff_time.as_str(), weekly_day)
                == (
                    self.settings.schedule,
                    self.settings.cutoff_time.as_str(),
                    self.settings.weekly_day,
                );
            let members: Vec<String> = own
                .iter()
                .filter(|s| {
                    s.schedule == schedule
                        && s.cutoff_time == cutoff_time
                        && s.weekly_day
                            .and_then(|d| u8::try_from(d).ok())
                            .unwrap_or(self.settings.weekly_day)
                            == weekly_day
                })
                .map(|s| s.merchant_id.clone())
                .collect();
            let key = format!(
                "{}|{}|{}|{}",
                schedule.as_str(),
                cutoff_time,
                weekly_day,
                jakarta(cutoff)
            );
            let others: Vec<String> = own
                .iter()
                .filter(|s| !members.contains(&s.merchant_id))
                .map(|s| s.merchant_id.clone())
                .collect();
            let mut batches = 0;
            if is_default_group {
                // Everyone without own settings, and those whose own settings equal the
                // defaults; not the merchants of other groups.
                let done = self
                    .store
                    .generate_settlement_batches(GenerateBatches {
                        cutoff_ms: Some(unix_ms(cutoff)),
                        merchant_ids: None,
                        exclude_merchant_ids: others,
                        schedule: Some(schedule),
                        default_schedule: self.settings.schedule,
                        default_minimum: self.settings.minimum_payout,
                        generated_by: "schedule".into(),
                    })
                    .await?;
                batches += done.batches.len();
            } else if !members.is_empty() {
                let done = self
                    .store
                    .generate_settlement_batches(GenerateBatches {
                        cutoff_ms: Some(unix_ms(cutoff)),
                        merchant_ids: Some(members),
                        exclude_merchant_ids: Vec::new(),
                        schedule: Some(schedule),
                        default_schedule: self.settings.schedule,
                        default_minimum: self.settings.minimum_payout,
                        generated_by: "schedule".into(),
                    })
                    .await?;
                batches += done.batches.len();
            }
            if self.store.record_schedule_run(&key, batches as i64).await? {
                tracing::info!(run = key, batches, "scheduled settlement run");
            }
            metrics::counter!("gema_settlement_batches_generated_total", "by" => "schedule")
                .increment(batches as u64);
            made += batches;
        }
        Ok(made)
    }

    pub async fn batch(&self, id: &str) -> GatewayResult<SettlementBatch> {
        Ok(self.store.get_settlement_batch(id).await?)
    }

    pub async fn batches(
        &self,
        merchant_id: Option<String>,
        status: Option<&str>,
        page: &PageRequest,
    ) -> GatewayResult<Page<SettlementBatch>> {
        let status = match status {
            None => None,
            Some(s) => Some(BatchStatus::parse(s).ok_or_else(|| {
                GatewayError::invalid("status", "is one of pending, paid, failed, cancelled")
            })?),
        };
        Ok(self
            .store
            .list_settlement_batches(
                &BatchFilter {
                    merchant_id,
                    status,
                },
                page,
            )
            .await?)
    }

    pub async fn events(&self, id: &str) -> GatewayResult<Vec<BatchEvent>> {
        self.store.get_settlement_batch(id).await?;
        Ok(self.store.settlement_batch_events(id).await?)
    }

    pub async fn items(&self, id: &str, page: &PageRequest) -> GatewayResult<Page<BatchItem>> {
        self.store.get_settlement_batch(id).await?;
        Ok(self.store.settlement_batch_items(id, page).await?)
    }

    pub async fn adjustments_of(&self, id: &str) -> GatewayResult<Vec<SettlementAdjustment>> {
        let batch = self.store.get_settlement_batch(id).await?;
        let mut out = Vec::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let got = self
                .store
                .list_settlement_adjustments(
                    &AdjustmentFilter {
                        batch_id: Some(batch.id.clone()),
                        ..AdjustmentFilter::default()
                    },
                    &page,
                )
                .await?;
            out.extend(got.items);
            match got.next_after {
                Some(after) => page.after = Some(after),
                None => return Ok(out),
            }
        }
    }

    #[tracing::instrument(skip_all, fields(batch_id = id))]
    pub async fn mark_paid(
        &self,
        id: &str,
        reference: &str,
        note: Option<&str>,
        actor: &str,
    ) -> GatewayResult<SettlementBatch> {
        let reference = validate::text("payout_reference", reference, 100)?;
        let note = validate::optional_text("note", note, 500)?;
        let batch = self
            .store
            .mark_settlement_batch_paid(id, &reference, note.as_deref(), actor)
            .await?;
        // Marking it paid again with the same reference is a no-op; so is its notice
        // (`payout:<batch_id>`). A failure to queue is logged: the batch stays paid.
        if let Err(err) = self.whatsapp.notify_payout(&batch).await {
            tracing::error!(error = %err, batch_id = %batch.id, "payout notice not queued");
        }
        Ok(batch)
    }

    pub async fn set_reference(
        &self,
        id: &str,
        reference: &str,
        actor: &str,
    ) -> GatewayResult<SettlementBatch> {
        let reference = validate::text("payout_reference", reference, 100)?;
        Ok(self
            .store
            .set_settlement_batch_reference(id, &reference, actor)
            .await?)
    }

    /// `pending → failed` or `pending → cancelled`.
    pub async fn close(
        &self,
        id: &str,
        to: BatchStatus,
        reason: &str,
        actor: &str,
    ) -> GatewayResult<SettlementBatch> {
        let reason = validate::text("reason", reason, 500)?;
        Ok(self
            .store
            .close_settlement_batch(id, to, &reason, actor)
            .await?)
    }

    pub async fn reprocess(&self, id: &str, actor: &str) -> GatewayResult<SettlementBatch> {
        Ok(self.store.reprocess_settlement_batch(id, actor).await?)
    }

    #[tracing::instrument(skip_all, fields(batch_id = batch_id))]
    pub async fn adjust(
        &self,
        batch_id: &str,
        input: AdjustmentInput,
        actor: &str,
    ) -> GatewayResult<(SettlementAdjustment, SettlementBatch)> {
        let kind = AdjustmentType::parse(&input.adjustment_type).ok_or_else(|| {
            GatewayError::invalid(
                "adjustment_type",
                "is one of hold, release, fee_correction, chargeback, manual",
            )
        })?;
        let amount = input.amount;
        let sign_rule = match kind {
            AdjustmentType::Hold | AdjustmentType::Chargeback if amount >= 0 => {
                Some("a hold or a chargeback takes money out of the payout: a negative amount")
            }
            AdjustmentType::Release if amount <= 0 => {
                Some("a release puts held money back into the payout: a positive amount")
            }
            _ if amount == 0 => Some("must not be zero"),
            _ => None,
        };
        if let Some(rule) = sign_rule {
            return Err(GatewayError::invalid("amount", rule));
        }
        // The store adds it to the batch's net amount: an unbounded one overflows.
        if !(-MAX_AMOUNT..=MAX_AMOUNT).contains(&amount) {
            return Err(GatewayError::invalid(
                "amount",
                format!("is at most {MAX_AMOUNT} rupiah either way"),
            ));
        }
        let reason = validate::text("reason", &input.reason, 500)?;
        Ok(self
            .store
            .add_settlement_adjustment(
                batch_id,
                NewAdjustment {
                    adjustment_type: kind,
                    amount,
                    reason,
                },
                actor,
            )
            .await?)
    }

    pub async fn adjustments(
        &self,
        query: AdjustmentQuery,
        page: &PageRequest,
    ) -> GatewayResult<Page<SettlementAdjustment>> {
        let adjustment_type = match query.adjustment_type.as_deref() {
            None => None,
            Some(t) => Some(AdjustmentType::parse(t).ok_or_else(|| {
                GatewayError::invalid(
                    "adjustment_type",
                    "is one of hold, release, fee_correction, chargeback, manual",
                )
            })?),
        };
        if let (Some(from), Some(to)) = (query.from, query.to)
            && from > to
        {
            return Err(GatewayError::invalid("from", "must not be after `to`"));
        }
        Ok(self
            .store
            .list_settlement_adjustments(
                &AdjustmentFilter {
                    merchant_id: query.merchant_id,
                    batch_id: None,
                    adjustment_type,
                    from_ms: query.from.map(unix_ms),
                    to_ms: query.to.map(unix_ms),
                },
                page,
            )
            .await?)
    }

    pub async fn balance(&self, merchant_id: &str) -> GatewayResult<Balance> {
        self.store.get_merchant(merchant_id).await?;
        Ok(self.store.merchant_balance(merchant_id).await?)
    }

    pub async fn totals(&self, merchant_id: Option<&str>) -> GatewayResult<SettlementTotals> {
        Ok(self.store.settlement_totals(merchant_id).await?)
    }

    /// Per batch (newest first, a page): the ledger's sum of its entries against its
    /// recorded total and what was paid.
    pub async fn reconcile_batches(
        &self,
        merchant_id: Option<String>,
        page: &PageRequest,
    ) -> GatewayResult<Page<BatchReconciliation>> {
        let batches = self
            .store
            .list_settlement_batches(
                &BatchFilter {
                    merchant_id,
                    status: None,
                },
                page,
            )
            .await?;
        let mut items = Vec::with_capacity(batches.items.len());
        for batch in batches.items {
            let mut expected = 0i64;
            let mut entries = 0i64;
            let mut at = PageRequest::first(PageRequest::MAX_LIMIT);
            loop {
                let got = self.store.settlement_batch_items(&batch.id, &at).await?;
                expected += got.items.iter().map(|i| i.amount).sum::<i64>();
                entries += got.items.len() as i64;
                match got.next_after {
                    Some(after) => at.after = Some(after),
                    None => break,
                }
            }
            let mut differences = Vec::new();
            if expected != batch.net_amount() {
                differences.push("ledger_differs_from_batch_total");
            }
            if entries != batch.item_count {
                differences.push("entry_count_differs");
            }
            if batch.status == BatchStatus::Paid && batch.paid_amount != Some(expected) {
                differences.push("paid_differs_from_ledger");
            }
            items.push(BatchReconciliation {
                batch_id: batch.id.clone(),
                merchant_id: batch.merchant_id.clone(),
                status: batch.status,
                expected_amount: expected,
                recorded_amount: batch.net_amount(),
                adjustment_amount: batch.adjustment_amount,
                paid_amount: batch.paid_amount,
                differences,
            });
        }
        Ok(Page {
            items,
            next_after: batches.next_after,
        })
    }

    /// The dashboard's payment and settlement figures (fleet figures come from device
    /// operations).
    pub async fn dashboard(&self, merchant_id: Option<&str>) -> GatewayResult<DashboardSummary> {
        let now = self.clock.now_utc().to_offset(JAKARTA);
        let start = now.date().midnight().assume_offset(JAKARTA);
        let end = start + time::Duration::days(1);
        let paid_today = self
            .store
            .paid_totals(merchant_id, unix_ms(start), unix_ms(end))
            .await?;
        let settlement = self.store.settlement_totals(merchant_id).await?;
        let latest_batches = self
            .store
            .list_settlement_batches(
                &BatchFilter {
                    merchant_id: merchant_id.map(str::to_string),
                    status: None,
                },
                &PageRequest::first(5),
            )
            .await?
            .items;
        let announcements_pending = self.store.count_pending_announcements(merchant_id).await?;
        Ok(DashboardSummary {
            today: format!(
                "{:04}-{:02}-{:02}",
                now.year(),
                u8::from(now.month()),
                now.day()
            ),
            paid_today,
            settlement,
            latest_batches,
            announcements_pending,
        })
    }

    /// The payout report of a batch, read a page at a time (`next_chunk`), so a batch of a
    /// million entries is never in memory at once.
    pub async fn report(&self, id: &str, format: ReportFormat) -> GatewayResult<BatchReport> {
        let batch = self.store.get_settlement_batch(id).await?;
        Ok(BatchReport {
            store: self.store.clone(),
            batch,
            format,
            after: None,
            started: false,
            done: false,
        })
    }
}

/// A payout report being read (see [`Settlement::report`]).
#[derive(Debug)]
pub struct BatchReport {
    store: Arc<dyn Store>,
    batch: SettlementBatch,
    format: ReportFormat,
    after: Option<String>,
    started: bool,
    done: bool,
}

/// The standard report's columns.
pub const STANDARD_COLUMNS: &str = "batch_id,merchant_id,ledger_entry_id,entry_type,\
transaction_id,order_ref,adjustment_id,amount,created_at";
/// The generic bank upload's columns.
pub const BANK_GENERIC_COLUMNS: &str =
    "bank_code,account_number,account_holder,amount,currency,reference,description";

impl BatchReport {
    pub fn batch(&self) -> &SettlementBatch {
        &self.batch
    }

    /// The next piece of the CSV; `None` at the end.
    pub async fn next_chunk(&mut self) -> GatewayResult<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let b = &self.batch;
        if self.format == ReportFormat::BankGeneric {
            self.done = true;
            let mut out = String::from(BANK_GENERIC_COLUMNS);
            out.push_str("\r\n");
            let row = [
                csv_field(&b.bank_code),
                csv_field(&b.account_number),
                csv_field(&b.account_holder),
                b.net_amount().to_string(),
                "IDR".into(),
                csv_field(&b.id),
                csv_field(&format!("Gema payout {}", b.id)),
            ];
            out.push_str(&row.join(","));
            out.push_str("\r\n");
            return Ok(Some(out.into_bytes()));
        }
        let mut out = String::new();
        if !self.started {
            self.started = true;
            out.push_str(STANDARD_COLUMNS);
            out.push_str("\r\n");
        }
        let page = self
            .store
            .settlement_batch_items(
                &b.id,
                &PageRequest {
                    after: self.after.clone(),
                    limit: PageRequest::MAX_LIMIT,
                },
            )
            .await?;
        for item in &page.items {
            let row = [
                csv_field(&b.id),
                csv_field(&b.merchant_id),
                csv_field(&item.ledger_entry_id),
                item.entry_type.as_str().to_string(),
                csv_field(item.transaction_id.as_deref().unwrap_or("")),
                csv_field(item.order_ref.as_deref().unwrap_or("")),
                csv_field(item.adjustment_id.as_deref().unwrap_or("")),
                item.amount.to_string(),
                jakarta(item.created_at),
            ];
            out.push_str(&row.join(","));
            out.push_str("\r\n");
        }
        match page.next_after {
            Some(after) => self.after = Some(after),
            None => self.done = true,
        }
        Ok(Some(out.into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn cutoffs_are_jakarta_times() {
        // 2026-12-03 is a Thursday. 17:00 UTC is midnight in Jakarta.
        let now = datetime!(2026-12-03 16:30 UTC); // 23:30 WIB
        let daily = last_cutoff(now, PayoutSchedule::Daily, (23, 0), 1).unwrap();
        assert_eq!(daily, datetime!(2026-12-03 16:00:59 UTC));
        let earlier = last_cutoff(now, PayoutSchedule::Daily, (23, 45), 1).unwrap();
        assert_eq!(earlier, datetime!(2026-12-02 16:45:59 UTC));
        let weekly = last_cutoff(now, PayoutSchedule::Weekly, (18, 0), 1).unwrap();
        assert_eq!(weekly, datetime!(2026-11-30 11:00:59 UTC));
        assert_eq!(last_cutoff(now, PayoutSchedule::Manual, (18, 0), 1), None);
    }

    #[test]
    fn cutoff_times_are_checked() {
        assert_eq!(parse_cutoff_time("c", "07:05").unwrap(), (7, 5));
        for bad in [
            "7:05", "24:00", "23:60", "", "ab:cd", "12-00", "12:00:00", "+7:05", "07:+5",
        ] {
            assert!(parse_cutoff_time("c", bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// A payout setting's `cutoff_time` (API body or console form): an error or a time
        /// of day, never a panic.
        #[test]
        fn cutoff_time_inputs_never_panic(
            text in proptest::prop_oneof!["[0-9:+ -]{0,6}", "\\PC{0,8}"],
        ) {
            if let Ok((h, m)) = parse_cutoff_time("c", &text) {
                proptest::prop_assert!(h <= 23 && m <= 59);
                proptest::prop_assert_eq!(text.len(), 5);
            }
        }
    }

    #[test]
    fn account_numbers_are_masked_to_their_last_four_digits() {
        assert_eq!(mask_account_number("1234567890"), "••••••7890");
        assert_eq!(mask_account_number("123"), "123");
        assert!(sees_account_numbers(Role::Admin(AdminRole::Finance)));
        assert!(!sees_account_numbers(Role::Admin(AdminRole::Support)));
        assert!(!sees_account_numbers(Role::Merchant(MerchantRole::Viewer)));
    }

    #[test]
    fn jakarta_times_carry_their_offset() {
        assert_eq!(
            jakarta(datetime!(2026-12-03 00:00:00.5 UTC)),
            "2026-12-03T07:00:00+07:00"
        );
    }
}
