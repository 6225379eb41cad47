//! Export jobs: the `export_jobs` rows (asked for, claimed by one node, progressing, done,
//! failed, expired) and the paged reads of the rows each kind exports.
//!
//! A job is claimed with one conditional `UPDATE` (a queued job, or a running one whose
//! claim ran out), so exactly one node runs it; the claim is renewed with every progress
//! update, and a node that lost it (its claim ran out and another node took the job) learns
//! so from the update changing no row. A kind's rows are read in keyset pages by id, never
//! all at once; `from`/`to` select by the id's time (ids are ULIDs: their first ten
//! characters are the creation time in milliseconds), so a time range is a range of the
//! primary key on both backends.
//!
//! A new kind is one variant of [`ExportKind`] (and its id prefix), one of [`ExportRows`],
//! and one arm in `rows_query` (its table and own filter) and in `export_rows` here, and its CSV columns in the gateway's
//! `exports` module.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::db::{Param, query, query_as};
use crate::{
    AdjustmentType, BillingFinanceStore, Db, FinanceInvoice, FinanceInvoiceFilter,
    InvoiceSelection, LedgerEntry, LedgerEntryType, Page, PageRequest, ReconciliationOutcome,
    ReconciliationRow, SettlementAdjustment, StoreError, StoreResult, Transaction,
    TransactionStatus,
};

string_enum!(
    /// What an export job exports.
    ExportKind {
        LedgerEntries = "ledger_entries",
        Transactions = "transactions",
        SettlementAdjustments = "settlement_adjustments",
        /// One reconciliation run's rows (its `run_id` filter is required), in their order.
        ReconciliationRows = "reconciliation_rows",
        /// Billing invoices (the finance detail table) by period, with a summary row.
        BillingInvoices = "billing_invoices",
        /// The same as an XLSX workbook.
        BillingInvoicesXlsx = "billing_invoices_xlsx",
        /// Billing customers with their package and area (operators' customer data).
        BillingCustomers = "billing_customers",
    }
);

string_enum!(
    /// queued → running → done → expired; running → failed; running → queued again when
    /// its node restarts or its claim runs out.
    ExportStatus {
        Queued = "queued",
        Running = "running",
        Done = "done",
        Failed = "failed",
        Expired = "expired",
    }
);

impl ExportKind {
    /// The prefix of the exported table's ids (`led_…`), for the time range.
    fn id_prefix(self) -> &'static str {
        match self {
            ExportKind::LedgerEntries => "led",
            ExportKind::Transactions => "trx",
            ExportKind::SettlementAdjustments => "sadj",
            // Refused by the gateway: a run's rows have no time of their own.
            ExportKind::ReconciliationRows => "",
            ExportKind::BillingInvoices | ExportKind::BillingInvoicesXlsx => "binv",
            // Refused by the gateway: customers are exported whole.
            ExportKind::BillingCustomers => "",
        }
    }

    /// The billing invoice kinds: selected by period, not by id time.
    pub fn is_billing_invoices(self) -> bool {
        matches!(
            self,
            ExportKind::BillingInvoices | ExportKind::BillingInvoicesXlsx
        )
    }
}

/// What an export selects. Kept as JSON in the job row; each kind reads the fields it takes
/// and the gateway refuses the ones it does not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportFilter {
    pub merchant_id: Option<String>,
    /// Rows created at or after this instant.
    #[serde(with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    /// Rows created before this instant.
    #[serde(with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    /// Transactions: their status.
    pub status: Option<TransactionStatus>,
    /// Ledger entries: their type.
    pub entry_type: Option<LedgerEntryType>,
    /// Settlement adjustments: their type.
    pub adjustment_type: Option<AdjustmentType>,
    /// Reconciliation rows: the run (required).
    pub run_id: Option<String>,
    /// Reconciliation rows: their outcome.
    pub outcome: Option<ReconciliationOutcome>,
    /// Billing invoices: the first period (`YYYY-MM`) included.
    pub period_from: Option<String>,
    /// Billing invoices: the last period (`YYYY-MM`) included.
    pub period_to: Option<String>,
}

impl<'de> Deserialize<'de> for ReconciliationOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("outcome {text:?}")))
    }
}

impl<'de> Deserialize<'de> for AdjustmentType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("adjustment_type {text:?}")))
    }
}

impl<'de> Deserialize<'de> for TransactionStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("status {text:?}")))
    }
}

impl<'de> Deserialize<'de> for LedgerEntryType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("entry_type {text:?}")))
    }
}

impl ExportFilter {
    /// The id bounds of the time range: `[from, to)` as the smallest ids of those
    /// milliseconds.
    fn id_bounds(&self, kind: ExportKind) -> (Option<String>, Option<String>) {
        let bound = |t: &OffsetDateTime| {
            let ms = (t.unix_timestamp_nanos() / 1_000_000).clamp(0, i128::from(u64::MAX >> 16));
            let ulid = ulid::Ulid::from_parts(ms as u64, 0);
            format!("{}_{}", kind.id_prefix(), ulid.to_string().to_lowercase())
        };
        (self.from.as_ref().map(bound), self.to.as_ref().map(bound))
    }

    /// The billing kinds' selection: the merchant and the periods.
    fn billing_invoices(&self) -> FinanceInvoiceFilter {
        FinanceInvoiceFilter {
            merchant_id: self.merchant_id.clone(),
            selection: Some(InvoiceSelection::Periods {
                from: self.period_from.clone().unwrap_or_else(|| "0000-00".into()),
                to: self.period_to.clone().unwrap_or_else(|| "9999-99".into()),
            }),
            status: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ExportJob {
    pub id: String,
    #[sqlx(try_from = "String")]
    pub kind: ExportKind,
    /// [`ExportFilter`] as JSON.
    pub filters: String,
    #[sqlx(try_from = "String")]
    pub status: ExportStatus,
    pub created_by: String,
    pub rows_done: i64,
    pub rows_total: Option<i64>,
    pub file_bytes: Option<i64>,
    pub error: Option<String>,
    pub attempts: i64,
    pub claimed_by: Option<String>,
    pub claim_until_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl ExportJob {
    pub fn filter(&self) -> StoreResult<ExportFilter> {
        serde_json::from_str(&self.filters)
            .map_err(|err| StoreError::Corrupt(format!("export {} filters: {err}", self.id)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewExport {
    pub kind: ExportKind,
    pub filter: ExportFilter,
    pub created_by: String,
}

/// Which jobs a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportJobFilter {
    pub status: Option<ExportStatus>,
    pub created_by: Option<String>,
}

/// One page of a kind's rows, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportRows {
    LedgerEntries(Vec<LedgerEntry>),
    Transactions(Vec<Transaction>),
    SettlementAdjustments(Vec<SettlementAdjustment>),
    ReconciliationRows(Vec<ReconciliationRow>),
    BillingInvoices(Vec<FinanceInvoice>),
    BillingCustomers(Vec<crate::CustomerExportRow>),
}

impl ExportRows {
    pub fn len(&self) -> usize {
        match self {
            ExportRows::LedgerEntries(rows) => rows.len(),
            ExportRows::Transactions(rows) => rows.len(),
            ExportRows::SettlementAdjustments(rows) => rows.len(),
            ExportRows::ReconciliationRows(rows) => rows.len(),
            ExportRows::BillingInvoices(rows) => rows.len(),
            ExportRows::BillingCustomers(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id to read the next page after (a reconciliation row's: its position).
    pub fn last_id(&self) -> Option<String> {
        match self {
            ExportRows::LedgerEntries(rows) => rows.last().map(|r| r.id.clone()),
            ExportRows::Transactions(rows) => rows.last().map(|r| r.id.clone()),
            ExportRows::SettlementAdjustments(rows) => rows.last().map(|r| r.id.clone()),
            ExportRows::ReconciliationRows(rows) => rows.last().map(|r| r.seq.to_string()),
            ExportRows::BillingInvoices(rows) => rows.last().map(|r| r.id.clone()),
            ExportRows::BillingCustomers(rows) => rows.last().map(|r| r.customer.id.clone()),
        }
    }
}

/// Export jobs and the rows they export.
#[async_trait]
pub trait ExportStore: Send + Sync {
    /// A queued job (an audited write).
    async fn create_export(&self, new: NewExport) -> StoreResult<ExportJob>;
    async fn get_export(&self, id: &str) -> StoreResult<ExportJob>;
    /// Oldest first, by id, like every list (keyset pages).
    async fn list_exports(
        &self,
        filter: &ExportJobFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<ExportJob>>;
    /// Claims the oldest job that is queued, or running with a claim that ran out at
    /// `now_ms`, for `node` until `claim_until_ms`: it becomes running from scratch
    /// (progress zero, one more attempt). A job whose claim ran out after `max_attempts`
    /// starts is marked failed instead. `None` when there is nothing to run.
    async fn claim_export(
        &self,
        node: &str,
        now_ms: i64,
        claim_until_ms: i64,
        max_attempts: i64,
    ) -> StoreResult<Option<ExportJob>>;
    /// Records progress and renews the claim. `false` if `node` no longer holds the job.
    async fn export_progress(
        &self,
        id: &str,
        node: &str,
        rows_done: i64,
        rows_total: Option<i64>,
        claim_until_ms: i64,
    ) -> StoreResult<bool>;
    /// Marks the job done. `false` if `node` no longer holds it.
    async fn finish_export(
        &self,
        id: &str,
        node: &str,
        rows_done: i64,
        file_bytes: i64,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> StoreResult<bool>;
    /// Marks the job failed with `error`. `false` if `node` no longer holds it.
    async fn fail_export(
        &self,
        id: &str,
        node: &str,
        error: &str,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Puts the jobs `node` was running back in the queue (the node restarted: whatever it
    /// was doing died with its process). Returns how many. One put back after its
    /// `max_attempts`-th start is failed by the next claim instead of started again.
    async fn requeue_exports_of(&self, node: &str) -> StoreResult<u64>;
    /// Done jobs whose files are due for deletion at `now_ms`, oldest first.
    async fn exports_due_to_expire(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<ExportJob>>;
    /// Marks a done job expired (its file is gone). `false` if it was not done.
    async fn mark_export_expired(&self, id: &str) -> StoreResult<bool>;
    /// A page of `kind`'s rows selected by `filter`, after the id `after`.
    async fn export_rows(
        &self,
        kind: ExportKind,
        filter: &ExportFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<ExportRows>;
    /// How many rows `kind` and `filter` select.
    async fn count_export_rows(&self, kind: ExportKind, filter: &ExportFilter) -> StoreResult<i64>;
    /// For `gema bench export` only: `rows` ledger entries of `transaction_id` (of
    /// `merchant_id`) written straight into the table by one `INSERT … SELECT` over a
    /// generated series, with ids of this millisecond and external ids `bench:<n>`. They
    /// follow no payment; never call it on a database that matters.
    async fn seed_ledger_entries_for_bench(
        &self,
        merchant_id: &str,
        transaction_id: &str,
        rows: i64,
    ) -> StoreResult<()>;
}

/// The statement reading a kind's rows: its table and only the conditions that apply, so
/// each is a range of an index (`id > after`, the time range as an id range, and with a
/// merchant the `(merchant_id, id)` index); `$1 IS NULL OR …` would make both databases
/// scan from the start for every page. `select` is the column list, `tail` what follows
/// the `WHERE` (order and limit, bound last).
fn rows_query<'a>(
    kind: ExportKind,
    filter: &'a ExportFilter,
    after: Option<&'a str>,
    select: &str,
    tail: &str,
) -> (String, Vec<Param<'a>>) {
    if kind == ExportKind::ReconciliationRows {
        return run_rows_query(filter, after, select, tail);
    }
    if kind == ExportKind::BillingCustomers {
        return customer_rows_query(filter, after, select, tail);
    }
    let (table, own_column, own) = match kind {
        ExportKind::LedgerEntries => (
            "ledger_entries",
            "entry_type",
            filter.entry_type.map(LedgerEntryType::as_str),
        ),
        ExportKind::Transactions => (
            "transactions",
            "status",
            filter.status.map(TransactionStatus::as_str),
        ),
        ExportKind::SettlementAdjustments => (
            "settlement_adjustments",
            "adjustment_type",
            filter.adjustment_type.map(AdjustmentType::as_str),
        ),
        ExportKind::ReconciliationRows => unreachable!("read by run_rows_query"),
        // Read by `billing_finance::finance_invoices_page`; a plain table read if not.
        ExportKind::BillingInvoices | ExportKind::BillingInvoicesXlsx => {
            ("billing_invoices", "status", None)
        }
        ExportKind::BillingCustomers => unreachable!("read by customer_rows_query"),
    };
    let (from, to) = filter.id_bounds(kind);
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    let mut add = |condition: &str, param: Param<'a>| {
        params.push(param);
        conditions.push(format!("{condition} ${}", params.len()));
    };
    if let Some(after) = after {
        add("id >", Param::Text(Some(after)));
    }
    if let Some(from) = from {
        add("id >=", Param::OwnedText(Some(from)));
    }
    if let Some(to) = to {
        add("id <", Param::OwnedText(Some(to)));
    }
    if let Some(merchant) = filter.merchant_id.as_deref() {
        add("merchant_id =", Param::Text(Some(merchant)));
    }
    if let Some(own) = own {
        add(&format!("{own_column} ="), Param::Text(Some(own)));
    }
    let conditions = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let tail = tail.replace("$LIMIT", &format!("${}", params.len() + 1));
    (
        format!("SELECT {select} FROM {table}{conditions}{tail}"),
        params,
    )
}

/// A reconciliation run's rows, in their order: keyed by `(run_id, seq)`, so `after` is a
/// position. Without a run (the gateway refuses that), no row.
fn run_rows_query<'a>(
    filter: &'a ExportFilter,
    after: Option<&'a str>,
    select: &str,
    tail: &str,
) -> (String, Vec<Param<'a>>) {
    let mut params = vec![Param::Text(Some(filter.run_id.as_deref().unwrap_or("")))];
    let mut sql = format!("SELECT {select} FROM reconciliation_rows WHERE run_id = $1");
    if let Some(after) = after {
        params.push(Param::Int(Some(after.parse().unwrap_or(i64::MAX))));
        sql.push_str(&format!(" AND seq > ${}", params.len()));
    }
    if let Some(outcome) = filter.outcome {
        params.push(Param::Text(Some(outcome.as_str())));
        sql.push_str(&format!(" AND outcome = ${}", params.len()));
    }
    let tail = tail
        .replace("ORDER BY id", "ORDER BY seq")
        .replace("$LIMIT", &format!("${}", params.len() + 1));
    (format!("{sql}{tail}"), params)
}

/// The columns of [`crate::CustomerExportRow`]: the customer, its area (the merchant's
/// billing business name, else its name) and its package.
const CUSTOMER_EXPORT_COLUMNS: &str = "c.*, \
     COALESCE(NULLIF(TRIM(s.business_name), ''), m.name) AS area, \
     p.name AS package_name, p.price AS package_price";

/// The customer-data export's statement (`rows_query`'s part for `billing_customers`):
/// customers in id order, of one merchant if the filter names one. `select` is `*` (the
/// export's columns) or an aggregate; `tail` as there.
fn customer_rows_query<'a>(
    filter: &'a ExportFilter,
    after: Option<&'a str>,
    select: &str,
    tail: &str,
) -> (String, Vec<Param<'a>>) {
    let select = if select == "*" {
        CUSTOMER_EXPORT_COLUMNS
    } else {
        select
    };
    let mut sql = format!(
        "SELECT {select} FROM billing_customers c \
         JOIN billing_packages p ON p.id = c.package_id \
         JOIN merchants m ON m.id = c.merchant_id \
         LEFT JOIN billing_merchant_settings s ON s.merchant_id = c.merchant_id"
    );
    let mut params = Vec::new();
    let mut conditions = Vec::new();
    if let Some(after) = after {
        params.push(Param::Text(Some(after)));
        conditions.push(format!("c.id > ${}", params.len()));
    }
    if let Some(merchant) = filter.merchant_id.as_deref() {
        params.push(Param::Text(Some(merchant)));
        conditions.push(format!("c.merchant_id = ${}", params.len()));
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    let tail = tail
        .replace("ORDER BY id", "ORDER BY c.id")
        .replace("$LIMIT", &format!("${}", params.len() + 1));
    (format!("{sql}{tail}"), params)
}

pub(crate) async fn export_rows(
    db: &Db,
    kind: ExportKind,
    filter: &ExportFilter,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<ExportRows> {
    if kind.is_billing_invoices() {
        let rows = crate::billing_finance::finance_invoices_page(
            db,
            &filter.billing_invoices(),
            after,
            i64::from(limit.max(1)),
        )
        .await?;
        return Ok(ExportRows::BillingInvoices(rows));
    }
    let (sql, params) = rows_query(kind, filter, after, "*", " ORDER BY id LIMIT $LIMIT");
    let limit = Param::Int(Some(i64::from(limit.max(1))));
    let params = params.into_iter().chain([limit]);
    Ok(match kind {
        ExportKind::LedgerEntries => {
            ExportRows::LedgerEntries(query_as(sql).bind_all(params).fetch_all(db.read()).await?)
        }
        ExportKind::Transactions => {
            ExportRows::Transactions(query_as(sql).bind_all(params).fetch_all(db.read()).await?)
        }
        ExportKind::SettlementAdjustments => ExportRows::SettlementAdjustments(
            query_as(sql).bind_all(params).fetch_all(db.read()).await?,
        ),
        ExportKind::ReconciliationRows => ExportRows::ReconciliationRows(
            query_as(sql).bind_all(params).fetch_all(db.read()).await?,
        ),
        // Read above, joined with the customers.
        ExportKind::BillingInvoices | ExportKind::BillingInvoicesXlsx => {
            ExportRows::BillingInvoices(Vec::new())
        }
        ExportKind::BillingCustomers => {
            ExportRows::BillingCustomers(query_as(sql).bind_all(params).fetch_all(db.read()).await?)
        }
    })
}

pub(crate) async fn count_export_rows(
    db: &Db,
    kind: ExportKind,
    filter: &ExportFilter,
) -> StoreResult<i64> {
    if kind.is_billing_invoices() {
        let totals = db
            .billing_period_totals(
                filter.merchant_id.as_deref(),
                &filter
                    .billing_invoices()
                    .selection
                    .unwrap_or(InvoiceSelection::DueDate(String::new())),
            )
            .await?;
        return Ok(totals.iter().map(|t| t.invoices).sum());
    }
    let (sql, params) = rows_query(kind, filter, None, "COUNT(*)", "");
    let (count,): (i64,) = query_as(sql).bind_all(params).fetch_one(db.read()).await?;
    Ok(count)
}

#[async_trait]
impl ExportStore for Db {
    async fn create_export(&self, new: NewExport) -> StoreResult<ExportJob> {
        let filters = serde_json::to_string(&new.filter)
            .map_err(|err| StoreError::Corrupt(format!("export filters: {err}")))?;
        let now = crate::sql::now();
        let mut tx = self.begin_write().await?;
        let job = query_as::<ExportJob>(
            "INSERT INTO export_jobs (id, kind, filters, status, created_by, created_at, \
             updated_at) VALUES ($1, $2, $3, 'queued', $4, $5, $5) RETURNING *",
        )
        .bind(crate::sql::new_id("exp"))
        .bind(new.kind.as_str())
        .bind(filters)
        .bind(new.created_by)
        .bind(now)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn get_export(&self, id: &str) -> StoreResult<ExportJob> {
        query_as::<ExportJob>("SELECT * FROM export_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.read())
            .await?
            .ok_or_else(|| StoreError::not_found("export", id))
    }

    async fn list_exports(
        &self,
        filter: &ExportJobFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<ExportJob>> {
        let rows = query_as::<ExportJob>(
            "SELECT * FROM export_jobs WHERE ($1 IS NULL OR id > $1) \
             AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR created_by = $3) \
             ORDER BY id LIMIT $4",
        )
        .bind(page.after.as_deref())
        .bind(filter.status.map(ExportStatus::as_str))
        .bind(filter.created_by.as_deref())
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |j| &j.id))
    }

    async fn claim_export(
        &self,
        node: &str,
        now_ms: i64,
        claim_until_ms: i64,
        max_attempts: i64,
    ) -> StoreResult<Option<ExportJob>> {
        // Idle workers ask every second on every node: a read first, so an empty queue
        // never takes the write turn (on SQLite, shared with the payment writer).
        let candidate: Option<(String,)> = query_as(
            "SELECT id FROM export_jobs WHERE status = 'queued' \
             OR (status = 'running' AND claim_until_ms <= $1) LIMIT 1",
        )
        .bind(now_ms)
        .fetch_optional(self.read())
        .await?;
        if candidate.is_none() {
            return Ok(None);
        }
        let now = crate::sql::now();
        let mut conn = self.write_conn().await?;
        // Interrupted too often: failed, not started again. Whether a node's claim ran out
        // or the node queued its own job again when it restarted (so a job that kills its
        // node is not started once per restart).
        query(
            "UPDATE export_jobs SET status = 'failed', claimed_by = NULL, claim_until_ms = NULL, \
             finished_at_ms = $1, updated_at = $2, \
             error = 'interrupted ' || CAST(attempts AS TEXT) || ' times (the node running it stopped)' \
             WHERE (status = 'queued' OR (status = 'running' AND claim_until_ms <= $1)) \
             AND attempts >= $3",
        )
        .bind(now_ms)
        .bind(now)
        .bind(max_attempts)
        .execute(&mut conn.exec())
        .await?;
        // The condition is repeated outside the subquery: on PostgreSQL two nodes may pick
        // the same row, and the second's UPDATE re-checks it after the first commits.
        let claimable = "(status = 'queued' OR (status = 'running' AND claim_until_ms <= $3))";
        let job = query_as::<ExportJob>(format!(
            "UPDATE export_jobs SET status = 'running', claimed_by = $1, claim_until_ms = $2, \
             rows_done = 0, rows_total = NULL, file_bytes = NULL, error = NULL, \
             attempts = attempts + 1, updated_at = $4 \
             WHERE id = (SELECT id FROM export_jobs WHERE {claimable} ORDER BY id LIMIT 1) \
             AND {claimable} RETURNING *"
        ))
        .bind(node)
        .bind(claim_until_ms)
        .bind(now_ms)
        .bind(now)
        .fetch_optional(&mut conn.exec())
        .await?;
        Ok(job)
    }

    async fn export_progress(
        &self,
        id: &str,
        node: &str,
        rows_done: i64,
        rows_total: Option<i64>,
        claim_until_ms: i64,
    ) -> StoreResult<bool> {
        let mut conn = self.write_conn().await?;
        let changed = query(
            "UPDATE export_jobs SET rows_done = $3, rows_total = COALESCE($4, rows_total), \
             claim_until_ms = $5, updated_at = $6 \
             WHERE id = $1 AND claimed_by = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(node)
        .bind(rows_done)
        .bind(rows_total)
        .bind(claim_until_ms)
        .bind(crate::sql::now())
        .execute(&mut conn.exec())
        .await?;
        Ok(changed == 1)
    }

    async fn finish_export(
        &self,
        id: &str,
        node: &str,
        rows_done: i64,
        file_bytes: i64,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> StoreResult<bool> {
        let mut conn = self.write_conn().await?;
        let changed = query(
            "UPDATE export_jobs SET status = 'done', rows_done = $3, rows_total = $3, \
             file_bytes = $4, finished_at_ms = $5, expires_at_ms = $6, claim_until_ms = NULL, \
             updated_at = $7 WHERE id = $1 AND claimed_by = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(node)
        .bind(rows_done)
        .bind(file_bytes)
        .bind(now_ms)
        .bind(expires_at_ms)
        .bind(crate::sql::now())
        .execute(&mut conn.exec())
        .await?;
        Ok(changed == 1)
    }

    async fn fail_export(
        &self,
        id: &str,
        node: &str,
        error: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let mut conn = self.write_conn().await?;
        let changed = query(
            "UPDATE export_jobs SET status = 'failed', error = $3, finished_at_ms = $4, \
             claim_until_ms = NULL, updated_at = $5 \
             WHERE id = $1 AND claimed_by = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(node)
        .bind(error)
        .bind(now_ms)
        .bind(crate::sql::now())
        .execute(&mut conn.exec())
        .await?;
        Ok(changed == 1)
    }

    async fn requeue_exports_of(&self, node: &str) -> StoreResult<u64> {
        let mut conn = self.write_conn().await?;
        Ok(query(
            "UPDATE export_jobs SET status = 'queued', claimed_by = NULL, claim_until_ms = NULL, \
             rows_done = 0, updated_at = $2 WHERE claimed_by = $1 AND status = 'running'",
        )
        .bind(node)
        .bind(crate::sql::now())
        .execute(&mut conn.exec())
        .await?)
    }

    async fn exports_due_to_expire(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<ExportJob>> {
        Ok(query_as::<ExportJob>(
            "SELECT * FROM export_jobs WHERE status = 'done' AND expires_at_ms <= $1 \
             ORDER BY id LIMIT $2",
        )
        .bind(now_ms)
        .bind(i64::from(limit.max(1)))
        .fetch_all(self.read())
        .await?)
    }

    async fn mark_export_expired(&self, id: &str) -> StoreResult<bool> {
        let mut conn = self.write_conn().await?;
        let changed = query(
            "UPDATE export_jobs SET status = 'expired', updated_at = $2 \
             WHERE id = $1 AND status = 'done'",
        )
        .bind(id)
        .bind(crate::sql::now())
        .execute(&mut conn.exec())
        .await?;
        Ok(changed == 1)
    }

    async fn export_rows(
        &self,
        kind: ExportKind,
        filter: &ExportFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<ExportRows> {
        export_rows(self, kind, filter, after, limit).await
    }

    async fn count_export_rows(&self, kind: ExportKind, filter: &ExportFilter) -> StoreResult<i64> {
        count_export_rows(self, kind, filter).await
    }

    async fn seed_ledger_entries_for_bench(
        &self,
        merchant_id: &str,
        transaction_id: &str,
        rows: i64,
    ) -> StoreResult<()> {
        let now = crate::sql::now();
        let ms = (now.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
        // A ULID's time part, then a 16-digit counter for its random part: digits are
        // Crockford characters, so the ids sort in series order after every earlier id.
        let time_part = ulid::Ulid::from_parts(ms, 0).to_string()[..10].to_lowercase();
        let (series, id, external) = match self {
            Db::Sqlite(_) => (
                "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < $1)",
                "'led_' || $2 || printf('%016d', i)",
                "'bench:' || $2 || ':' || i",
            ),
            Db::Postgres(_) => (
                "WITH s(i) AS (SELECT generate_series(0::bigint, $1 - 1))",
                "'led_' || $2 || lpad(i::text, 16, '0')",
                "'bench:' || $2 || ':' || i",
            ),
        };
        let mut tx = self.begin_write().await?;
        query(format!(
            "INSERT INTO ledger_entries (id, transaction_id, merchant_id, entry_type, amount, \
             external_id, created_at) {series} SELECT {id}, $3, $4, \
             CASE i % 3 WHEN 0 THEN 'gross_income' WHEN 1 THEN 'platform_fee' \
             ELSE 'merchant_payable' END, 1000 + i % 9000, {external}, $5 FROM s"
        ))
        .bind(rows)
        .bind(time_part)
        .bind(transaction_id)
        .bind(merchant_id)
        .bind(now)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
