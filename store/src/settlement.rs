//! Settlement: merchants' bank accounts and payout settings, settlement batches (which
//! payable ledger entries each pays, and its lifecycle), adjustments, and the balances the
//! ledger gives every merchant.
//!
//! The ledger stays the single source of truth. A batch does not copy money: its items
//! name the payable entries (`merchant_payable`, `payable_adjustment`) it pays, and an
//! entry has at most one *live* item (a partial unique index), so no entry is ever in two
//! batches at once, whatever runs concurrently. A reprocess of a failed or cancelled batch
//! clears its items' `live`, which makes their entries batchable again; the rows stay as
//! history. An adjustment is a new ledger entry (and, for a hold or a release, a
//! `merchant_held` entry; for a fee correction, a `platform_fee` one), never an edit.
//!
//! Every merchant's balances follow from the ledger and the items alone:
//! `sum(payable and held entries) = unbatched + in batch + paid + held` ([`Balance`]).
//!
//! Cut-offs compare ledger ids: an id is a ULID whose first 48 bits are its creation time
//! in Unix milliseconds, so "created up to `cutoff_ms`" is `id < led_<ulid(cutoff_ms + 1,
//! 0)>`, one range both backends compare the same way (bytewise, `COLLATE "C"` on
//! PostgreSQL) and no column on the payment path.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::db::{query, query_as};
use crate::{Db, Page, PageRequest, StoreError, StoreResult};

string_enum!(
    /// When a merchant is paid out.
    PayoutSchedule {
        Manual = "manual",
        Daily = "daily",
        Weekly = "weekly",
    }
);

string_enum!(
    /// A settlement batch's state: `pending` until paid, failed or cancelled.
    BatchStatus {
        Pending = "pending",
        Paid = "paid",
        Failed = "failed",
        Cancelled = "cancelled",
    }
);

string_enum!(
    /// What an adjustment corrects.
    AdjustmentType {
        /// Withholds money from this payout (negative); it is held until released.
        Hold = "hold",
        /// Returns held money into this payout (positive, at most what is held).
        Release = "release",
        /// Corrects the platform fee taken (the platform's fee moves the other way).
        FeeCorrection = "fee_correction",
        /// A payment reversed by the customer's bank (negative).
        Chargeback = "chargeback",
        /// Anything else, with its reason.
        Manual = "manual",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BankAccount {
    pub merchant_id: String,
    pub bank_code: String,
    pub account_number: String,
    pub account_holder: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBankAccount {
    pub bank_code: String,
    pub account_number: String,
    pub account_holder: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PayoutSettings {
    pub merchant_id: String,
    #[sqlx(try_from = "String")]
    pub schedule: PayoutSchedule,
    pub minimum_amount: i64,
    /// `HH:MM`, Asia/Jakarta.
    pub cutoff_time: String,
    /// ISO weekday (1 = Monday) of a weekly schedule.
    pub weekly_day: Option<i32>,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayoutSettings {
    pub schedule: PayoutSchedule,
    pub minimum_amount: i64,
    pub cutoff_time: String,
    pub weekly_day: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SettlementBatch {
    pub id: String,
    pub merchant_id: String,
    #[sqlx(try_from = "String")]
    pub status: BatchStatus,
    pub cutoff_ms: i64,
    /// Sum of the transaction payables (refunds included) it took at generation.
    pub payable_amount: i64,
    pub item_count: i64,
    /// Sum of its adjustments.
    pub adjustment_amount: i64,
    pub bank_code: String,
    pub account_number: String,
    pub account_holder: String,
    pub payout_reference: Option<String>,
    pub payout_note: Option<String>,
    pub paid_amount: Option<i64>,
    pub paid_at: Option<OffsetDateTime>,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    pub reprocessed_at: Option<OffsetDateTime>,
    pub generated_by: String,
    pub generation_id: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl SettlementBatch {
    /// What the batch pays: payables plus adjustments.
    pub fn net_amount(&self) -> i64 {
        self.payable_amount + self.adjustment_amount
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BatchEvent {
    pub id: String,
    pub batch_id: String,
    pub event: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub detail: Option<String>,
    pub actor: String,
    pub created_at: OffsetDateTime,
}

/// One payable entry of a batch, with its transaction's order reference if it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BatchItem {
    pub ledger_entry_id: String,
    #[sqlx(try_from = "String")]
    pub entry_type: crate::LedgerEntryType,
    pub amount: i64,
    pub live: bool,
    pub transaction_id: Option<String>,
    pub order_ref: Option<String>,
    pub adjustment_id: Option<String>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SettlementAdjustment {
    pub id: String,
    pub batch_id: String,
    pub merchant_id: String,
    #[sqlx(try_from = "String")]
    pub adjustment_type: AdjustmentType,
    /// Signed whole rupiah: its effect on the payout.
    pub amount: i64,
    pub reason: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdjustment {
    pub adjustment_type: AdjustmentType,
    pub amount: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchFilter {
    pub merchant_id: Option<String>,
    pub status: Option<BatchStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdjustmentFilter {
    pub merchant_id: Option<String>,
    /// One batch's adjustments.
    pub batch_id: Option<String>,
    pub adjustment_type: Option<AdjustmentType>,
    /// Created at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Created before (Unix ms).
    pub to_ms: Option<i64>,
}

/// What to generate batches from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateBatches {
    /// Payable entries created up to this instant (Unix ms) are taken; `None` for every
    /// entry so far (the cut-off recorded is then the database's now).
    pub cutoff_ms: Option<i64>,
    /// Only these merchants (all merchants with unbatched payables when `None`).
    pub merchant_ids: Option<Vec<String>>,
    /// Never these merchants (a scheduled run's merchants of other groups).
    pub exclude_merchant_ids: Vec<String>,
    /// Only merchants on this schedule (by their settings, or the default schedule for
    /// merchants without settings); `None` for any.
    pub schedule: Option<PayoutSchedule>,
    /// The schedule and minimum of a merchant without payout settings.
    pub default_schedule: PayoutSchedule,
    pub default_minimum: i64,
    /// Who asked (`api:<principal>` or `schedule`).
    pub generated_by: String,
}

/// Why a merchant with unbatched payables got no batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedMerchant {
    pub merchant_id: String,
    /// `no_bank_account`, `below_minimum` or `nothing_to_pay` (refunds exceed payments).
    pub reason: &'static str,
    pub amount: i64,
    pub minimum_amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GeneratedBatches {
    pub generation_id: String,
    pub batches: Vec<SettlementBatch>,
    pub skipped: Vec<SkippedMerchant>,
}

/// A merchant's money as the ledger says: `ledger_total = unbatched + in_batch + paid +
/// held`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Balance {
    pub merchant_id: String,
    /// Sum of its payable and held entries.
    pub ledger_total: i64,
    /// Payable entries in no live batch.
    pub unbatched: i64,
    /// In a live batch not paid (pending, or failed or cancelled and not reprocessed).
    pub in_batch: i64,
    /// In a paid batch.
    pub paid: i64,
    /// Withheld by holds and not released.
    pub held: i64,
}

/// Totals for the dashboard and the merchant's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SettlementTotals {
    /// Payables in no batch yet.
    pub unbatched: i64,
    /// Net of pending batches.
    pub pending_payout: i64,
    /// Paid out.
    pub paid_payout: i64,
    pub held: i64,
    /// Platform fees earned (net of refunds and fee corrections).
    pub platform_fees: i64,
    pub batches_by_status: Vec<StatusCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct StatusCount {
    pub status: String,
    pub count: i64,
    pub amount: i64,
}

/// Paid payments in a time range, from the ledger's gross income entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PaidTotals {
    pub count: i64,
    pub amount: i64,
}

/// Merchant bank accounts, payout settings, batches, adjustments and balances.
#[async_trait]
pub trait SettlementStore: Send + Sync {
    /// Sets a merchant's bank account (`NotFound` for an unknown merchant).
    async fn put_bank_account(
        &self,
        merchant_id: &str,
        account: NewBankAccount,
    ) -> StoreResult<BankAccount>;
    async fn bank_account(&self, merchant_id: &str) -> StoreResult<Option<BankAccount>>;
    async fn put_payout_settings(
        &self,
        merchant_id: &str,
        settings: NewPayoutSettings,
    ) -> StoreResult<PayoutSettings>;
    async fn payout_settings(&self, merchant_id: &str) -> StoreResult<Option<PayoutSettings>>;
    /// Every merchant's own payout settings (merchants without use the defaults).
    async fn all_payout_settings(&self) -> StoreResult<Vec<PayoutSettings>>;

    /// One batch per merchant from its unbatched payable entries up to the cut-off, in one
    /// transaction; merchants below their minimum, without a bank account or owed nothing
    /// are reported in `skipped`. Concurrent calls never put one entry in two batches.
    async fn generate_settlement_batches(
        &self,
        request: GenerateBatches,
    ) -> StoreResult<GeneratedBatches>;
    async fn get_settlement_batch(&self, id: &str) -> StoreResult<SettlementBatch>;
    async fn list_settlement_batches(
        &self,
        filter: &BatchFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<SettlementBatch>>;
    /// The batch's history, oldest first.
    async fn settlement_batch_events(&self, id: &str) -> StoreResult<Vec<BatchEvent>>;
    /// A page of the batch's entries, by ledger entry id.
    async fn settlement_batch_items(
        &self,
        id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<BatchItem>>;
    /// `pending → paid`. Marking a paid batch paid again with the same reference returns
    /// it unchanged; another reference is a `Conflict` (`already_paid`).
    async fn mark_settlement_batch_paid(
        &self,
        id: &str,
        reference: &str,
        note: Option<&str>,
        actor: &str,
    ) -> StoreResult<SettlementBatch>;
    /// Corrects the payout reference of a paid batch.
    async fn set_settlement_batch_reference(
        &self,
        id: &str,
        reference: &str,
        actor: &str,
    ) -> StoreResult<SettlementBatch>;
    /// `pending → failed` or `pending → cancelled`, with the reason.
    async fn close_settlement_batch(
        &self,
        id: &str,
        to: BatchStatus,
        reason: &str,
        actor: &str,
    ) -> StoreResult<SettlementBatch>;
    /// Gives a failed or cancelled batch's entries back, so the next generation takes
    /// them. Once per batch.
    async fn reprocess_settlement_batch(
        &self,
        id: &str,
        actor: &str,
    ) -> StoreResult<SettlementBatch>;
    /// Adds an adjustment to a pending batch: its ledger entries, its item, the batch's
    /// total. A release beyond what is held, or an adjustment that would make the batch
    /// pay less than nothing, is a `Conflict` naming `amount`.
    async fn add_settlement_adjustment(
        &self,
        batch_id: &str,
        adjustment: NewAdjustment,
        actor: &str,
    ) -> StoreResult<(SettlementAdjustment, SettlementBatch)>;
    async fn list_settlement_adjustments(
        &self,
        filter: &AdjustmentFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<SettlementAdjustment>>;
    /// A merchant's balances, each summed on its own from the ledger and the items.
    async fn merchant_balance(&self, merchant_id: &str) -> StoreResult<Balance>;
    /// Settlement totals, for one merchant or all.
    async fn settlement_totals(&self, merchant_id: Option<&str>) -> StoreResult<SettlementTotals>;
    /// Paid payments whose ledger entries were created in `[from_ms, to_ms)`.
    async fn paid_totals(
        &self,
        merchant_id: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<PaidTotals>;
    /// Announcements not yet delivered, failed or expired (for one merchant or all).
    async fn count_pending_announcements(&self, merchant_id: Option<&str>) -> StoreResult<i64>;
    /// Records a scheduled run; `false` if a run with this key was recorded before.
    async fn record_schedule_run(&self, run_key: &str, batches: i64) -> StoreResult<bool>;
}

/// The smallest ledger id created after `ms` (Unix ms): ids below it were created at or
/// before `ms`.
pub(crate) fn ledger_id_bound(ms: i64) -> String {
    id_bound("led", ms)
}

const PAYABLE: &str = "('merchant_payable', 'payable_adjustment')";

/// `NotFound` unless the merchant exists (inside the caller's transaction).
pub(crate) async fn merchant_exists(tx: &mut crate::Tx, id: &str) -> StoreResult<()> {
    let found: Option<(String,)> = query_as("SELECT id FROM merchants WHERE id = $1")
        .bind(id)
        .fetch_optional(tx)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::not_found("merchant", id)),
    }
}

#[async_trait]
impl SettlementStore for Db {
    async fn put_bank_account(
        &self,
        merchant_id: &str,
        account: NewBankAccount,
    ) -> StoreResult<BankAccount> {
        let mut tx = self.begin_write().await?;
        merchant_exists(&mut tx, merchant_id).await?;
        let now = crate::sql::now();
        let row = query_as::<BankAccount>(
            "INSERT INTO merchant_bank_accounts \
             (merchant_id, bank_code, account_number, account_holder, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (merchant_id) DO UPDATE SET bank_code = excluded.bank_code, \
             account_number = excluded.account_number, \
             account_holder = excluded.account_holder, updated_at = excluded.updated_at \
             RETURNING *",
        )
        .bind(merchant_id)
        .bind(account.bank_code)
        .bind(account.account_number)
        .bind(account.account_holder)
        .bind(now)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn bank_account(&self, merchant_id: &str) -> StoreResult<Option<BankAccount>> {
        Ok(
            query_as::<BankAccount>("SELECT * FROM merchant_bank_accounts WHERE merchant_id = $1")
                .bind(merchant_id)
                .fetch_optional(self.read())
                .await?,
        )
    }

    async fn put_payout_settings(
        &self,
        merchant_id: &str,
        settings: NewPayoutSettings,
    ) -> StoreResult<PayoutSettings> {
        let mut tx = self.begin_write().await?;
        merchant_exists(&mut tx, merchant_id).await?;
        let row = query_as::<PayoutSettings>(
            "INSERT INTO merchant_payout_settings \
             (merchant_id, schedule, minimum_amount, cutoff_time, weekly_day, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (merchant_id) DO UPDATE SET schedule = excluded.schedule, \
             minimum_amount = excluded.minimum_amount, cutoff_time = excluded.cutoff_time, \
             weekly_day = excluded.weekly_day, updated_at = excluded.updated_at \
             RETURNING *",
        )
        .bind(merchant_id)
        .bind(settings.schedule.as_str())
        .bind(settings.minimum_amount)
        .bind(settings.cutoff_time)
        .bind(settings.weekly_day.map(i64::from))
        .bind(crate::sql::now())
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn payout_settings(&self, merchant_id: &str) -> StoreResult<Option<PayoutSettings>> {
        Ok(query_as::<PayoutSettings>(
            "SELECT * FROM merchant_payout_settings WHERE merchant_id = $1",
        )
        .bind(merchant_id)
        .fetch_optional(self.read())
        .await?)
    }

    async fn all_payout_settings(&self) -> StoreResult<Vec<PayoutSettings>> {
        Ok(query_as::<PayoutSettings>(
            "SELECT * FROM merchant_payout_settings ORDER BY merchant_id",
        )
        .fetch_all(self.read())
        .await?)
    }

    async fn generate_settlement_batches(
        &self,
        request: GenerateBatches,
    ) -> StoreResult<GeneratedBatches> {
        generate(self, request).await
    }

    async fn get_settlement_batch(&self, id: &str) -> StoreResult<SettlementBatch> {
        query_as::<SettlementBatch>("SELECT * FROM settlement_batches WHERE id = $1")
            .bind(id)
            .fetch_optional(self.read())
            .await?
            .ok_or_else(|| StoreError::not_found("settlement batch", id))
    }

    async fn list_settlement_batches(
        &self,
        filter: &BatchFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<SettlementBatch>> {
        let rows = query_as::<SettlementBatch>(
            "SELECT * FROM settlement_batches WHERE ($1 IS NULL OR id < $1) \
             AND ($2 IS NULL OR merchant_id = $2) AND ($3 IS NULL OR status = $3) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(page.after.as_deref())
        .bind(filter.merchant_id.as_deref())
        .bind(filter.status.map(BatchStatus::as_str))
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |b| &b.id))
    }

    async fn settlement_batch_events(&self, id: &str) -> StoreResult<Vec<BatchEvent>> {
        Ok(query_as::<BatchEvent>(
            "SELECT * FROM settlement_batch_events WHERE batch_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.read())
        .await?)
    }

    async fn settlement_batch_items(
        &self,
        id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<BatchItem>> {
        let rows = query_as::<BatchItem>(
            "SELECT i.ledger_entry_id, l.entry_type, i.amount, i.live, l.transaction_id, \
             t.order_ref, l.adjustment_id, l.created_at \
             FROM settlement_items i JOIN ledger_entries l ON l.id = i.ledger_entry_id \
             LEFT JOIN transactions t ON t.id = l.transaction_id \
             WHERE i.batch_id = $1 AND ($2 IS NULL OR i.ledger_entry_id > $2) \
             ORDER BY i.ledger_entry_id LIMIT $3",
        )
        .bind(id)
        .bind(page.after.as_deref())
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |i| {
            &i.ledger_entry_id
        }))
    }

    async fn mark_settlement_batch_paid(
        &self,
        id: &str,
        reference: &str,
        note: Option<&str>,
        actor: &str,
    ) -> StoreResult<SettlementBatch> {
        let mut tx = self.begin_write().await?;
        let batch = lock_batch(self, &mut tx, id).await?;
        if batch.status == BatchStatus::Paid {
            if batch.payout_reference.as_deref() == Some(reference) {
                return Ok(batch);
            }
            return Err(StoreError::conflict(
                "already_paid",
                Some("payout_reference"),
                format!(
                    "batch {id} was marked paid with another payout reference; \
                     correct it with PATCH …/reference"
                ),
            ));
        }
        expect_status(&batch, &[BatchStatus::Pending], "mark paid")?;
        let now = crate::sql::now();
        let updated = query_as::<SettlementBatch>(
            "UPDATE settlement_batches SET status = 'paid', payout_reference = $2, \
             payout_note = $3, paid_amount = payable_amount + adjustment_amount, paid_at = $4, \
             updated_at = $4 WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(reference)
        .bind(note)
        .bind(now)
        .fetch_one(&mut tx)
        .await?;
        let detail = serde_json::json!({
            "payout_reference": reference, "note": note, "paid_amount": updated.paid_amount,
        });
        batch_event(
            &mut tx,
            id,
            "paid",
            Some(batch.status),
            BatchStatus::Paid,
            Some(detail),
            actor,
        )
        .await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn set_settlement_batch_reference(
        &self,
        id: &str,
        reference: &str,
        actor: &str,
    ) -> StoreResult<SettlementBatch> {
        let mut tx = self.begin_write().await?;
        let batch = lock_batch(self, &mut tx, id).await?;
        expect_status(
            &batch,
            &[BatchStatus::Paid],
            "correct the payout reference of",
        )?;
        let updated = query_as::<SettlementBatch>(
            "UPDATE settlement_batches SET payout_reference = $2, updated_at = $3 \
             WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(reference)
        .bind(crate::sql::now())
        .fetch_one(&mut tx)
        .await?;
        let detail = serde_json::json!({
            "from": batch.payout_reference, "to": reference,
        });
        batch_event(
            &mut tx,
            id,
            "reference_changed",
            Some(batch.status),
            batch.status,
            Some(detail),
            actor,
        )
        .await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn close_settlement_batch(
        &self,
        id: &str,
        to: BatchStatus,
        reason: &str,
        actor: &str,
    ) -> StoreResult<SettlementBatch> {
        let event = match to {
            BatchStatus::Failed => "failed",
            BatchStatus::Cancelled => "cancelled",
            other => {
                return Err(StoreError::Corrupt(format!(
                    "a batch is not closed as {}",
                    other.as_str()
                )));
            }
        };
        let mut tx = self.begin_write().await?;
        let batch = lock_batch(self, &mut tx, id).await?;
        expect_status(&batch, &[BatchStatus::Pending], event)?;
        let updated = query_as::<SettlementBatch>(
            "UPDATE settlement_batches SET status = $2, reason = $3, updated_at = $4 \
             WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(to.as_str())
        .bind(reason)
        .bind(crate::sql::now())
        .fetch_one(&mut tx)
        .await?;
        let detail = serde_json::json!({ "reason": reason });
        batch_event(
            &mut tx,
            id,
            event,
            Some(batch.status),
            to,
            Some(detail),
            actor,
        )
        .await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn reprocess_settlement_batch(
        &self,
        id: &str,
        actor: &str,
    ) -> StoreResult<SettlementBatch> {
        let mut tx = self.begin_write().await?;
        let batch = lock_batch(self, &mut tx, id).await?;
        expect_status(
            &batch,
            &[BatchStatus::Failed, BatchStatus::Cancelled],
            "reprocess",
        )?;
        if batch.reprocessed_at.is_some() {
            return Err(StoreError::conflict(
                "already_reprocessed",
                Some("status"),
                format!("batch {id} was reprocessed already; its entries are batchable again"),
            ));
        }
        let released =
            query("UPDATE settlement_items SET live = FALSE WHERE batch_id = $1 AND live")
                .bind(id)
                .execute(&mut tx)
                .await?;
        let updated = query_as::<SettlementBatch>(
            "UPDATE settlement_batches SET reprocessed_at = $2, updated_at = $2 \
             WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(crate::sql::now())
        .fetch_one(&mut tx)
        .await?;
        let detail = serde_json::json!({ "entries_released": released });
        batch_event(
            &mut tx,
            id,
            "reprocessed",
            Some(batch.status),
            batch.status,
            Some(detail),
            actor,
        )
        .await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn add_settlement_adjustment(
        &self,
        batch_id: &str,
        adjustment: NewAdjustment,
        actor: &str,
    ) -> StoreResult<(SettlementAdjustment, SettlementBatch)> {
        add_adjustment(self, batch_id, adjustment, actor).await
    }

    async fn list_settlement_adjustments(
        &self,
        filter: &AdjustmentFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<SettlementAdjustment>> {
        let rows = query_as::<SettlementAdjustment>(format!(
            "SELECT * FROM settlement_adjustments WHERE ($1 IS NULL OR id > $1) \
             AND ($2 IS NULL OR merchant_id = $2) AND ($3 IS NULL OR adjustment_type = $3) \
             AND ($4 IS NULL OR id{c} >= $4) AND ($5 IS NULL OR id{c} < $5) \
             AND ($6 IS NULL OR batch_id = $6) ORDER BY id LIMIT $7",
            c = bytewise(self)
        ))
        .bind(page.after.as_deref())
        .bind(filter.merchant_id.as_deref())
        .bind(filter.adjustment_type.map(AdjustmentType::as_str))
        .bind(filter.from_ms.map(|ms| id_bound("sadj", ms - 1)))
        .bind(filter.to_ms.map(|ms| id_bound("sadj", ms - 1)))
        .bind(filter.batch_id.as_deref())
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |a| &a.id))
    }

    async fn merchant_balance(&self, merchant_id: &str) -> StoreResult<Balance> {
        balance(self, merchant_id).await
    }

    async fn settlement_totals(&self, merchant_id: Option<&str>) -> StoreResult<SettlementTotals> {
        totals(self, merchant_id).await
    }

    async fn paid_totals(
        &self,
        merchant_id: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<PaidTotals> {
        let (count, amount): (i64, Option<i64>) = query_as(format!(
            "SELECT COUNT(*), CAST(SUM(amount) AS BIGINT) FROM ledger_entries \
             WHERE entry_type = 'gross_income' AND reverses_id IS NULL \
             AND id{c} >= $1 AND id{c} < $2 AND ($3 IS NULL OR merchant_id = $3)",
            c = bytewise(self)
        ))
        .bind(ledger_id_bound(from_ms - 1))
        .bind(ledger_id_bound(to_ms - 1))
        .bind(merchant_id)
        .fetch_one(self.read())
        .await?;
        Ok(PaidTotals {
            count,
            amount: amount.unwrap_or(0),
        })
    }

    async fn count_pending_announcements(&self, merchant_id: Option<&str>) -> StoreResult<i64> {
        let (count,): (i64,) = query_as(
            "SELECT COUNT(*) FROM announcements a WHERE a.status = 'pending' AND ($1 IS NULL \
             OR EXISTS (SELECT 1 FROM transactions t WHERE t.id = a.transaction_id \
             AND t.merchant_id = $1))",
        )
        .bind(merchant_id)
        .fetch_one(self.read())
        .await?;
        Ok(count)
    }

    async fn record_schedule_run(&self, run_key: &str, batches: i64) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = query(
            "INSERT INTO settlement_schedule_runs (run_key, batches, created_at) \
             VALUES ($1, $2, $3) ON CONFLICT (run_key) DO NOTHING",
        )
        .bind(run_key)
        .bind(batches)
        .bind(crate::sql::now())
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(done == 1)
    }
}

/// The collation that compares ids bytewise, as their ULIDs' times order them.
fn bytewise(db: &Db) -> &'static str {
    match db {
        Db::Postgres(_) => " COLLATE \"C\"",
        Db::Sqlite(_) => "",
    }
}

/// `<prefix>_<ulid(ms + 1, 0)>`: ids with this prefix below it were made at or before `ms`.
fn id_bound(prefix: &str, ms: i64) -> String {
    let ms = u64::try_from(ms.saturating_add(1)).unwrap_or(0);
    let ulid = ulid::Ulid::from_parts(ms.min((1 << 48) - 1), 0);
    format!("{prefix}_{}", ulid.to_string().to_lowercase())
}

async fn lock_batch(db: &Db, tx: &mut crate::Tx, id: &str) -> StoreResult<SettlementBatch> {
    query_as::<SettlementBatch>(
        [
            "SELECT * FROM settlement_batches WHERE id = $1 ",
            db.row_lock(),
        ]
        .concat(),
    )
    .bind(id)
    .fetch_optional(tx)
    .await?
    .ok_or_else(|| StoreError::not_found("settlement batch", id))
}

fn expect_status(batch: &SettlementBatch, from: &[BatchStatus], what: &str) -> StoreResult<()> {
    if from.contains(&batch.status) {
        return Ok(());
    }
    let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    Err(StoreError::conflict(
        "invalid_transition",
        Some("status"),
        format!(
            "cannot {what} batch {} in status {}: only a {} batch",
            batch.id,
            batch.status.as_str(),
            allowed.join(" or ")
        ),
    ))
}

async fn batch_event(
    tx: &mut crate::Tx,
    batch_id: &str,
    event: &str,
    from: Option<BatchStatus>,
    to: BatchStatus,
    detail: Option<serde_json::Value>,
    actor: &str,
) -> StoreResult<()> {
    query(
        "INSERT INTO settlement_batch_events \
         (id, batch_id, event, from_status, to_status, detail, actor, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(crate::sql::new_id("sbe"))
    .bind(batch_id)
    .bind(event)
    .bind(from.map(BatchStatus::as_str))
    .bind(to.as_str())
    .bind(detail.map(|d| d.to_string()))
    .bind(actor)
    .bind(crate::sql::now())
    .execute(tx)
    .await?;
    Ok(())
}

/// A merchant's unbatched payables up to the cut-off, with what its batch needs.
#[derive(Debug, sqlx::FromRow)]
struct Candidate {
    merchant_id: String,
    total: i64,
    payable: i64,
    entries: i64,
    bank_code: Option<String>,
    account_number: Option<String>,
    account_holder: Option<String>,
    schedule: Option<String>,
    minimum_amount: Option<i64>,
}

async fn generate(db: &Db, request: GenerateBatches) -> StoreResult<GeneratedBatches> {
    let now = crate::sql::now();
    let cutoff_ms = request.cutoff_ms.unwrap_or_else(|| {
        i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    });
    // Without a cut-off, every entry so far.
    let bound = request.cutoff_ms.map(ledger_id_bound);
    let mut tx = db.begin_write().await?;
    if let Db::Postgres(_) = db {
        // One generation at a time across the cluster; the partial unique index on the
        // live items is the backstop, this makes the second caller wait and find the
        // entries taken instead of failing.
        query("SELECT pg_advisory_xact_lock(7260110009)")
            .execute(&mut tx)
            .await?;
    }
    let collate = bytewise(db);
    let merchants: Vec<Option<String>> = match &request.merchant_ids {
        None => vec![None],
        Some(ids) => ids.iter().cloned().map(Some).collect(),
    };
    let mut candidates = Vec::new();
    let sql = format!(
        "SELECT c.merchant_id, c.total, c.payable, c.entries, a.bank_code, a.account_number, \
         a.account_holder, s.schedule, s.minimum_amount FROM ( \
           SELECT l.merchant_id, CAST(SUM(l.amount) AS BIGINT) AS total, \
           CAST(SUM(CASE WHEN l.entry_type = 'merchant_payable' THEN l.amount ELSE 0 END) AS BIGINT) AS payable, \
           COUNT(*) AS entries FROM ledger_entries l \
           WHERE l.entry_type IN {PAYABLE} AND ($1 IS NULL OR l.id{collate} < $1) \
           AND ($2 IS NULL OR l.merchant_id = $2) \
           AND NOT EXISTS (SELECT 1 FROM settlement_items i \
                           WHERE i.ledger_entry_id = l.id AND i.live) \
           GROUP BY l.merchant_id) c \
         LEFT JOIN merchant_bank_accounts a ON a.merchant_id = c.merchant_id \
         LEFT JOIN merchant_payout_settings s ON s.merchant_id = c.merchant_id \
         ORDER BY c.merchant_id"
    );
    for merchant in &merchants {
        if let Some(id) = merchant {
            merchant_exists(&mut tx, id).await?;
        }
        let rows = query_as::<Candidate>(sql.as_str())
            .bind(bound.as_deref())
            .bind(merchant.as_deref())
            .fetch_all(&mut tx)
            .await?;
        candidates.extend(rows);
    }

    let generation_id = crate::sql::new_id("sgen");
    let mut skipped = Vec::new();
    let mut eligible = Vec::new();
    for c in candidates {
        let schedule = c
            .schedule
            .as_deref()
            .and_then(PayoutSchedule::parse)
            .unwrap_or(request.default_schedule);
        if request.schedule.is_some_and(|wanted| wanted != schedule)
            || request.exclude_merchant_ids.contains(&c.merchant_id)
        {
            continue;
        }
        let minimum = c.minimum_amount.unwrap_or(request.default_minimum);
        let reason = if c.total <= 0 {
            Some("nothing_to_pay")
        } else if c.bank_code.is_none() {
            Some("no_bank_account")
        } else if c.total < minimum {
            Some("below_minimum")
        } else {
            None
        };
        match reason {
            Some(reason) => skipped.push(SkippedMerchant {
                merchant_id: c.merchant_id,
                reason,
                amount: c.total,
                minimum_amount: minimum,
            }),
            None => eligible.push(c),
        }
    }

    let mut batches = Vec::with_capacity(eligible.len());
    let mut expected_items = 0i64;
    for c in eligible {
        expected_items += c.entries;
        batches.push(SettlementBatch {
            id: crate::sql::new_id("stb"),
            merchant_id: c.merchant_id,
            status: BatchStatus::Pending,
            cutoff_ms,
            payable_amount: c.payable,
            item_count: c.entries,
            adjustment_amount: c.total - c.payable,
            bank_code: c.bank_code.unwrap_or_default(),
            account_number: c.account_number.unwrap_or_default(),
            account_holder: c.account_holder.unwrap_or_default(),
            payout_reference: None,
            payout_note: None,
            paid_amount: None,
            paid_at: None,
            reason: None,
            reprocessed_at: None,
            generated_by: request.generated_by.clone(),
            generation_id: generation_id.clone(),
            created_at: now,
            updated_at: now,
        });
    }
    const CHUNK: usize = 100;
    for chunk in batches.chunks(CHUNK) {
        let mut sql = String::from(
            "INSERT INTO settlement_batches (id, merchant_id, status, cutoff_ms, payable_amount, \
             item_count, adjustment_amount, bank_code, account_number, account_holder, \
             generated_by, generation_id, created_at, updated_at) VALUES ",
        );
        let mut params = Vec::with_capacity(chunk.len() * 13);
        for (i, b) in chunk.iter().enumerate() {
            let n = i * 13;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, 'pending', ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8,
                n + 9,
                n + 10,
                n + 11,
                n + 12,
                n + 13
            ));
            params.push(crate::db::Param::from(b.id.as_str()));
            params.push(b.merchant_id.as_str().into());
            params.push(b.cutoff_ms.into());
            params.push(b.payable_amount.into());
            params.push(b.item_count.into());
            params.push(b.adjustment_amount.into());
            params.push(b.bank_code.as_str().into());
            params.push(b.account_number.as_str().into());
            params.push(b.account_holder.as_str().into());
            params.push(b.generated_by.as_str().into());
            params.push(b.generation_id.as_str().into());
            params.push(now.into());
            params.push(now.into());
        }
        query(sql).bind_all(params).execute(&mut tx).await?;
    }
    if !batches.is_empty() {
        let inserted = query(format!(
            "INSERT INTO settlement_items (batch_id, ledger_entry_id, amount, live) \
             SELECT b.id, l.id, l.amount, TRUE FROM settlement_batches b \
             JOIN ledger_entries l ON l.merchant_id = b.merchant_id \
             WHERE b.generation_id = $1 AND l.entry_type IN {PAYABLE} \
             AND ($2 IS NULL OR l.id{collate} < $2) \
             AND NOT EXISTS (SELECT 1 FROM settlement_items i \
                             WHERE i.ledger_entry_id = l.id AND i.live)"
        ))
        .bind(generation_id.as_str())
        .bind(bound.as_deref())
        .execute(&mut tx)
        .await?;
        if i64::try_from(inserted).unwrap_or(i64::MAX) != expected_items {
            return Err(StoreError::Corrupt(format!(
                "generation {generation_id} counted {expected_items} entries but took {inserted}"
            )));
        }
        let sql = String::from(
            "INSERT INTO settlement_batch_events \
             (id, batch_id, event, from_status, to_status, detail, actor, created_at) \
             SELECT 'sbe_' || substr(id, 5), id, 'generated', NULL, 'pending', NULL, $2, $3 \
             FROM settlement_batches WHERE generation_id = $1",
        );
        query(sql)
            .bind(generation_id.as_str())
            .bind(request.generated_by.as_str())
            .bind(now)
            .execute(&mut tx)
            .await?;
    }
    tx.commit().await?;
    Ok(GeneratedBatches {
        generation_id,
        batches,
        skipped,
    })
}

#[derive(Debug, sqlx::FromRow)]
struct HeldRow {
    held: Option<i64>,
}

async fn add_adjustment(
    db: &Db,
    batch_id: &str,
    adjustment: NewAdjustment,
    actor: &str,
) -> StoreResult<(SettlementAdjustment, SettlementBatch)> {
    let mut tx = db.begin_write().await?;
    let batch = lock_batch(db, &mut tx, batch_id).await?;
    expect_status(&batch, &[BatchStatus::Pending], "adjust")?;
    let amount = adjustment.amount;
    if batch.net_amount() + amount < 0 {
        return Err(StoreError::conflict(
            "negative_payout",
            Some("amount"),
            format!(
                "the batch would pay {} rupiah: an adjustment cannot take it below nothing",
                batch.net_amount() + amount
            ),
        ));
    }
    if adjustment.adjustment_type == AdjustmentType::Release {
        let held = query_as::<HeldRow>(
            "SELECT CAST(SUM(amount) AS BIGINT) AS held FROM ledger_entries \
             WHERE merchant_id = $1 AND entry_type = 'merchant_held'",
        )
        .bind(&batch.merchant_id)
        .fetch_one(&mut tx)
        .await?
        .held
        .unwrap_or(0);
        if amount > held {
            return Err(StoreError::conflict(
                "exceeds_held",
                Some("amount"),
                format!("a release of {amount} rupiah exceeds the {held} rupiah held"),
            ));
        }
    }
    let now = crate::sql::now();
    let id = crate::sql::new_id("sadj");
    let row = query_as::<SettlementAdjustment>(
        "INSERT INTO settlement_adjustments \
         (id, batch_id, merchant_id, adjustment_type, amount, reason, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
    )
    .bind(id.as_str())
    .bind(batch_id)
    .bind(batch.merchant_id.as_str())
    .bind(adjustment.adjustment_type.as_str())
    .bind(amount)
    .bind(adjustment.reason.as_str())
    .bind(actor)
    .bind(now)
    .fetch_one(&mut tx)
    .await?;
    let mut entries = vec![("payable_adjustment", amount)];
    match adjustment.adjustment_type {
        AdjustmentType::Hold | AdjustmentType::Release => entries.push(("merchant_held", -amount)),
        AdjustmentType::FeeCorrection => entries.push(("platform_fee", -amount)),
        AdjustmentType::Chargeback | AdjustmentType::Manual => {}
    }
    let mut payable_entry = String::new();
    for (entry_type, entry_amount) in entries {
        let entry_id = crate::sql::new_id("led");
        query(
            "INSERT INTO ledger_entries \
             (id, transaction_id, merchant_id, entry_type, amount, external_id, reverses_id, \
              created_at, adjustment_id) VALUES ($1, NULL, $2, $3, $4, $5, NULL, $6, $7)",
        )
        .bind(entry_id.as_str())
        .bind(batch.merchant_id.as_str())
        .bind(entry_type)
        .bind(entry_amount)
        .bind(format!("{id}:{entry_type}"))
        .bind(now)
        .bind(id.as_str())
        .execute(&mut tx)
        .await?;
        if entry_type == "payable_adjustment" {
            payable_entry = entry_id;
        }
    }
    query(
        "INSERT INTO settlement_items (batch_id, ledger_entry_id, amount, live) \
         VALUES ($1, $2, $3, TRUE)",
    )
    .bind(batch_id)
    .bind(payable_entry.as_str())
    .bind(amount)
    .execute(&mut tx)
    .await?;
    let updated = query_as::<SettlementBatch>(
        "UPDATE settlement_batches SET adjustment_amount = adjustment_amount + $2, \
         item_count = item_count + 1, updated_at = $3 WHERE id = $1 RETURNING *",
    )
    .bind(batch_id)
    .bind(amount)
    .bind(now)
    .fetch_one(&mut tx)
    .await?;
    let detail = serde_json::json!({
        "adjustment_id": id, "type": adjustment.adjustment_type.as_str(), "amount": amount,
        "reason": adjustment.reason,
    });
    batch_event(
        &mut tx,
        batch_id,
        "adjusted",
        Some(batch.status),
        batch.status,
        Some(detail),
        actor,
    )
    .await?;
    tx.commit().await?;
    Ok((row, updated))
}

#[derive(Debug, sqlx::FromRow)]
struct Sum {
    total: Option<i64>,
}

async fn sum(tx: &mut crate::Tx, sql: &str, merchant_id: &str) -> StoreResult<i64> {
    Ok(query_as::<Sum>(sql)
        .bind(merchant_id)
        .fetch_one(tx)
        .await?
        .total
        .unwrap_or(0))
}

async fn balance(db: &Db, merchant_id: &str) -> StoreResult<Balance> {
    let mut tx = db.begin_read().await?;
    let ledger_total = sum(
        &mut tx,
        "SELECT CAST(SUM(amount) AS BIGINT) AS total FROM ledger_entries WHERE merchant_id = $1 \
         AND entry_type IN ('merchant_payable', 'payable_adjustment', 'merchant_held')",
        merchant_id,
    )
    .await?;
    let unbatched = sum(
        &mut tx,
        &format!(
            "SELECT CAST(SUM(l.amount) AS BIGINT) AS total FROM ledger_entries l WHERE l.merchant_id = $1 \
             AND l.entry_type IN {PAYABLE} AND NOT EXISTS (SELECT 1 FROM settlement_items i \
             WHERE i.ledger_entry_id = l.id AND i.live)"
        ),
        merchant_id,
    )
    .await?;
    let in_batch = sum(
        &mut tx,
        "SELECT CAST(SUM(i.amount) AS BIGINT) AS total FROM settlement_items i \
         JOIN settlement_batches b ON b.id = i.batch_id \
         WHERE b.merchant_id = $1 AND i.live AND b.status <> 'paid'",
        merchant_id,
    )
    .await?;
    let paid = sum(
        &mut tx,
        "SELECT CAST(SUM(i.amount) AS BIGINT) AS total FROM settlement_items i \
         JOIN settlement_batches b ON b.id = i.batch_id \
         WHERE b.merchant_id = $1 AND i.live AND b.status = 'paid'",
        merchant_id,
    )
    .await?;
    let held = sum(
        &mut tx,
        "SELECT CAST(SUM(amount) AS BIGINT) AS total FROM ledger_entries \
         WHERE merchant_id = $1 AND entry_type = 'merchant_held'",
        merchant_id,
    )
    .await?;
    tx.commit().await?;
    Ok(Balance {
        merchant_id: merchant_id.to_owned(),
        ledger_total,
        unbatched,
        in_batch,
        paid,
        held,
    })
}

async fn totals(db: &Db, merchant_id: Option<&str>) -> StoreResult<SettlementTotals> {
    let mut tx = db.begin_read().await?;
    let by_status = query_as::<StatusCount>(
        "SELECT status, COUNT(*) AS count, \
         CAST(COALESCE(SUM(payable_amount + adjustment_amount), 0) AS BIGINT) AS amount \
         FROM settlement_batches WHERE ($1 IS NULL OR merchant_id = $1) \
         GROUP BY status ORDER BY status",
    )
    .bind(merchant_id)
    .fetch_all(&mut tx)
    .await?;
    let (unbatched, held, fees): (Option<i64>, Option<i64>, Option<i64>) = query_as(format!(
        "SELECT \
         CAST(SUM(CASE WHEN l.entry_type IN {PAYABLE} AND NOT EXISTS (SELECT 1 \
             FROM settlement_items i WHERE i.ledger_entry_id = l.id AND i.live) \
             THEN l.amount ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN l.entry_type = 'merchant_held' THEN l.amount ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN l.entry_type = 'platform_fee' THEN l.amount ELSE 0 END) AS BIGINT) \
         FROM ledger_entries l WHERE ($1 IS NULL OR l.merchant_id = $1)"
    ))
    .bind(merchant_id)
    .fetch_one(&mut tx)
    .await?;
    let paid: (Option<i64>,) = query_as(
        "SELECT CAST(SUM(paid_amount) AS BIGINT) FROM settlement_batches \
         WHERE status = 'paid' AND ($1 IS NULL OR merchant_id = $1)",
    )
    .bind(merchant_id)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    let pending_payout = by_status
        .iter()
        .filter(|s| s.status == BatchStatus::Pending.as_str())
        .map(|s| s.amount)
        .sum();
    Ok(SettlementTotals {
        unbatched: unbatched.unwrap_or(0),
        pending_payout,
        paid_payout: paid.0.unwrap_or(0),
        held: held.unwrap_or(0),
        platform_fees: fees.unwrap_or(0),
        batches_by_status: by_status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_bound_splits_ids_at_the_millisecond() {
        let at = 1_764_806_400_000i64;
        let made_then = format!(
            "led_{}",
            ulid::Ulid::from_parts(at as u64, u128::MAX >> 48)
                .to_string()
                .to_lowercase()
        );
        let made_after = format!(
            "led_{}",
            ulid::Ulid::from_parts(at as u64 + 1, 0)
                .to_string()
                .to_lowercase()
        );
        assert!(made_then < ledger_id_bound(at));
        assert!(made_after >= ledger_id_bound(at));
        assert!(made_then >= ledger_id_bound(at - 1));
    }
}
