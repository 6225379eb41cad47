//! Reconciliation runs: a provider's report matched against Gema's transactions, kept as a
//! run (its period and counts) and its rows; and the reads the matching needs
//! (transactions by order reference, by the provider's id, and a period's paid ones).
//!
//! Which row matches which transaction, and what an outcome is, is the gateway's rule
//! (`gema_gateway::reconciliation`); this module stores what it decided, in one
//! transaction: the run and every row, or nothing. A run is never updated; a re-run is a
//! new run that names the one it repeats (`rerun_of`).
//!
//! Rows go in as multi-row INSERTs of fixed sizes (256, 16, 1 rows), so a 100,000-row
//! report is a few hundred statements of three shapes. On SQLite the placeholders are
//! anonymous `?`: sqlx finds each `$N` by its name, and SQLite looks a name up by walking
//! a list, which made a statement with thousands of parameters bind in quadratic time.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::db::{Param, query, query_as};
use crate::sql::{in_list, placeholders};
use crate::{Db, Page, PageRequest, StoreError, StoreResult, TransactionStatus};

string_enum!(
    /// What a reconciliation row came to.
    ReconciliationOutcome {
        /// In both, same amount and status.
        Matched = "matched",
        /// In both; the amounts differ.
        AmountMismatch = "amount_mismatch",
        /// In both, same amount; the statuses differ.
        StatusMismatch = "status_mismatch",
        /// In the report, not in Gema.
        MissingInGema = "missing_in_gema",
        /// Paid in Gema within the run's period, not in the report.
        MissingInReport = "missing_in_report",
        /// A report line that could not be read (its `reason` says why).
        Malformed = "malformed",
    }
);

/// A run: how the report was read, its period, and how many rows came to each outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ReconciliationRun {
    pub id: String,
    /// `midtrans`, `xendit` or `generic`.
    pub format: String,
    /// The provider whose transactions the report was compared with; `None`: all.
    pub provider: Option<String>,
    /// The generic format's column mapping (JSON).
    pub mapping: Option<String>,
    pub period_from: Option<OffsetDateTime>,
    pub period_to: Option<OffsetDateTime>,
    pub rerun_of: Option<String>,
    /// Data lines read from the report (malformed ones included).
    pub report_rows: i64,
    pub matched: i64,
    pub amount_mismatch: i64,
    pub status_mismatch: i64,
    pub missing_in_gema: i64,
    pub missing_in_report: i64,
    pub malformed: i64,
    pub created_by: String,
    pub created_at: OffsetDateTime,
}

/// A run to store; its counts are counted from its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReconciliationRun {
    pub format: String,
    pub provider: Option<String>,
    pub mapping: Option<String>,
    pub period_from: Option<OffsetDateTime>,
    pub period_to: Option<OffsetDateTime>,
    pub rerun_of: Option<String>,
    pub created_by: String,
}

/// One row of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ReconciliationRow {
    pub run_id: String,
    pub seq: i64,
    /// The report's line number (header = 1); `None` for `missing_in_report`.
    pub line: Option<i64>,
    pub order_id: Option<String>,
    pub provider_transaction_id: Option<String>,
    /// Whole rupiah.
    pub report_amount: Option<i64>,
    /// As the report wrote it.
    pub report_status: Option<String>,
    pub report_paid_at: Option<OffsetDateTime>,
    pub gema_amount: Option<i64>,
    pub gema_status: Option<String>,
    pub transaction_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub outcome: ReconciliationOutcome,
    pub reason: Option<String>,
}

/// A row to store; rows are numbered in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReconciliationRow {
    pub line: Option<i64>,
    pub order_id: Option<String>,
    pub provider_transaction_id: Option<String>,
    pub report_amount: Option<i64>,
    pub report_status: Option<String>,
    pub report_paid_at: Option<OffsetDateTime>,
    pub gema_amount: Option<i64>,
    pub gema_status: Option<String>,
    pub transaction_id: Option<String>,
    pub outcome: ReconciliationOutcome,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconciliationRowFilter {
    pub outcome: Option<ReconciliationOutcome>,
}

/// What matching needs to know of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReconcilableTransaction {
    pub id: String,
    pub order_ref: String,
    pub provider: Option<String>,
    pub provider_transaction_id: Option<String>,
    pub amount: i64,
    #[sqlx(try_from = "String")]
    pub status: TransactionStatus,
    pub paid_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

/// Reconciliation runs, their rows, and the transaction reads matching needs.
#[async_trait]
pub trait ReconciliationStore: Send + Sync {
    /// Stores a run and all its rows in one transaction (so, in an audit scope, with its
    /// audit row); the counts are counted from `rows`. A `rerun_of` that does not exist is
    /// `NotFound`.
    async fn create_reconciliation_run(
        &self,
        new: NewReconciliationRun,
        rows: Vec<NewReconciliationRow>,
    ) -> StoreResult<ReconciliationRun>;
    async fn get_reconciliation_run(&self, id: &str) -> StoreResult<ReconciliationRun>;
    /// Runs, oldest first (keyset on the id).
    async fn list_reconciliation_runs(
        &self,
        page: &PageRequest,
    ) -> StoreResult<Page<ReconciliationRun>>;
    /// Runs, newest first (keyset on the id, descending): the console's list, where the run
    /// just made is the one looked for.
    async fn list_reconciliation_runs_newest_first(
        &self,
        page: &PageRequest,
    ) -> StoreResult<Page<ReconciliationRun>>;
    /// A run's rows in order, filtered; the cursor is the last row's `seq`. `NotFound` for
    /// an unknown run.
    async fn list_reconciliation_rows(
        &self,
        run_id: &str,
        filter: &ReconciliationRowFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<ReconciliationRow>>;
    /// Up to `limit` (at most [`ROW_CHUNK_MAX`]) rows of a run after `after_seq`, in order:
    /// for reading a whole run a piece at a time (the CSV export, a re-run). Rows are never
    /// changed, so the pieces agree with each other.
    async fn reconciliation_row_chunk(
        &self,
        run_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<ReconciliationRow>>;
    /// The transactions with these order references (unknown ones are left out).
    async fn transactions_by_order_ref(
        &self,
        order_refs: &[String],
    ) -> StoreResult<Vec<ReconcilableTransaction>>;
    /// The transactions with these provider transaction ids.
    async fn transactions_by_provider_id(
        &self,
        provider_ids: &[String],
    ) -> StoreResult<Vec<ReconcilableTransaction>>;
    /// Paid or refunded transactions (of `provider`, or any) created in
    /// `[created_from, created_to]`; the caller narrows them by their paid time.
    async fn paid_transactions_created_between(
        &self,
        provider: Option<&str>,
        created_from: OffsetDateTime,
        created_to: OffsetDateTime,
    ) -> StoreResult<Vec<ReconcilableTransaction>>;
}

/// The largest piece [`ReconciliationStore::reconciliation_row_chunk`] returns.
pub const ROW_CHUNK_MAX: u32 = 5_000;

/// Multi-row INSERT sizes, largest first.
const CHUNKS: [usize; 3] = [256, 16, 1];
/// Keys per `IN (…)` lookup.
const LOOKUP_CHUNK: usize = 500;
const ROW_COLUMNS: &str = "run_id, seq, line, order_id, provider_transaction_id, report_amount, \
     report_status, report_paid_at, gema_amount, gema_status, transaction_id, outcome, reason";
const ROW_WIDTH: usize = 13;
const TRANSACTION_COLUMNS: &str =
    "id, order_ref, provider, provider_transaction_id, amount, status, paid_at, created_at";

#[async_trait]
impl ReconciliationStore for Db {
    async fn create_reconciliation_run(
        &self,
        new: NewReconciliationRun,
        rows: Vec<NewReconciliationRow>,
    ) -> StoreResult<ReconciliationRun> {
        create_run(self, new, rows).await
    }

    async fn get_reconciliation_run(&self, id: &str) -> StoreResult<ReconciliationRun> {
        query_as::<ReconciliationRun>("SELECT * FROM reconciliation_runs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.read())
            .await?
            .ok_or_else(|| StoreError::not_found("reconciliation run", id))
    }

    async fn list_reconciliation_runs(
        &self,
        page: &PageRequest,
    ) -> StoreResult<Page<ReconciliationRun>> {
        let rows = query_as::<ReconciliationRun>(
            "SELECT * FROM reconciliation_runs WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .bind(page.after.as_deref())
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |r| &r.id))
    }

    async fn list_reconciliation_runs_newest_first(
        &self,
        page: &PageRequest,
    ) -> StoreResult<Page<ReconciliationRun>> {
        let rows = query_as::<ReconciliationRun>(
            "SELECT * FROM reconciliation_runs WHERE ($1 IS NULL OR id < $1) \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(page.after.as_deref())
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |r| &r.id))
    }

    async fn list_reconciliation_rows(
        &self,
        run_id: &str,
        filter: &ReconciliationRowFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<ReconciliationRow>> {
        self.get_reconciliation_run(run_id).await?;
        let after = match page.after.as_deref() {
            None => -1,
            Some(cursor) => cursor.parse::<i64>().map_err(|_| {
                StoreError::conflict(
                    "invalid_cursor",
                    Some("cursor"),
                    format!("{cursor:?} is not a cursor of this list"),
                )
            })?,
        };
        let mut rows = query_as::<ReconciliationRow>(
            "SELECT * FROM reconciliation_rows WHERE run_id = $1 AND seq > $2 \
             AND ($3 IS NULL OR outcome = $3) ORDER BY seq LIMIT $4",
        )
        .bind(run_id)
        .bind(after)
        .bind(filter.outcome.map(|o| o.as_str()))
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT) as usize;
        let next_after = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| r.seq.to_string())
        } else {
            None
        };
        Ok(Page {
            items: rows,
            next_after,
        })
    }

    async fn reconciliation_row_chunk(
        &self,
        run_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<ReconciliationRow>> {
        Ok(query_as::<ReconciliationRow>(
            "SELECT * FROM reconciliation_rows WHERE run_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after_seq)
        .bind(i64::from(limit.clamp(1, ROW_CHUNK_MAX)))
        .fetch_all(self.read())
        .await?)
    }

    async fn transactions_by_order_ref(
        &self,
        order_refs: &[String],
    ) -> StoreResult<Vec<ReconcilableTransaction>> {
        transactions_where_in(self, "order_ref", order_refs).await
    }

    async fn transactions_by_provider_id(
        &self,
        provider_ids: &[String],
    ) -> StoreResult<Vec<ReconcilableTransaction>> {
        transactions_where_in(self, "provider_transaction_id", provider_ids).await
    }

    async fn paid_transactions_created_between(
        &self,
        provider: Option<&str>,
        created_from: OffsetDateTime,
        created_to: OffsetDateTime,
    ) -> StoreResult<Vec<ReconcilableTransaction>> {
        Ok(query_as::<ReconcilableTransaction>(format!(
            "SELECT {TRANSACTION_COLUMNS} FROM transactions \
             WHERE created_at >= $1 AND created_at <= $2 AND status IN ('paid', 'refunded') \
             AND ($3 IS NULL OR provider = $3) ORDER BY id"
        ))
        // SQLite compares the stored text: both ends in UTC, as every instant is stored
        // (a provider's report gives Jakarta times).
        .bind(created_from.to_offset(time::UtcOffset::UTC))
        .bind(created_to.to_offset(time::UtcOffset::UTC))
        .bind(provider)
        .fetch_all(self.read())
        .await?)
    }
}

/// One read per [`LOOKUP_CHUNK`] keys, all on one snapshot.
async fn transactions_where_in(
    db: &Db,
    column: &str,
    keys: &[String],
) -> StoreResult<Vec<ReconcilableTransaction>> {
    let mut found = Vec::new();
    if keys.is_empty() {
        return Ok(found);
    }
    let mut tx = db.begin_read().await?;
    for chunk in keys.chunks(LOOKUP_CHUNK) {
        let sql = format!(
            "SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE {column} IN ({})",
            in_list(db, chunk.len())
        );
        let mut statement = query_as::<ReconcilableTransaction>(sql);
        for key in chunk {
            statement = statement.bind(key.as_str());
        }
        found.extend(statement.fetch_all(&mut tx).await?);
    }
    tx.commit().await?;
    Ok(found)
}

async fn create_run(
    db: &Db,
    new: NewReconciliationRun,
    rows: Vec<NewReconciliationRow>,
) -> StoreResult<ReconciliationRun> {
    let count = |outcome: ReconciliationOutcome| {
        i64::try_from(rows.iter().filter(|r| r.outcome == outcome).count()).unwrap_or(i64::MAX)
    };
    let report_rows =
        i64::try_from(rows.iter().filter(|r| r.line.is_some()).count()).unwrap_or(i64::MAX);
    let id = crate::sql::new_id("rec");
    let now = crate::sql::now();
    let mut tx = db.begin_write().await?;
    if let Some(earlier) = &new.rerun_of {
        let exists: Option<(String,)> =
            query_as("SELECT id FROM reconciliation_runs WHERE id = $1")
                .bind(earlier.as_str())
                .fetch_optional(&mut tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::not_found("reconciliation run", earlier.clone()));
        }
    }
    let run = query_as::<ReconciliationRun>(
        "INSERT INTO reconciliation_runs (id, format, provider, mapping, period_from, \
         period_to, rerun_of, report_rows, matched, amount_mismatch, status_mismatch, \
         missing_in_gema, missing_in_report, malformed, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         RETURNING *",
    )
    .bind(id.as_str())
    .bind(new.format)
    .bind(new.provider)
    .bind(new.mapping)
    .bind(new.period_from)
    .bind(new.period_to)
    .bind(new.rerun_of)
    .bind(report_rows)
    .bind(count(ReconciliationOutcome::Matched))
    .bind(count(ReconciliationOutcome::AmountMismatch))
    .bind(count(ReconciliationOutcome::StatusMismatch))
    .bind(count(ReconciliationOutcome::MissingInGema))
    .bind(count(ReconciliationOutcome::MissingInReport))
    .bind(count(ReconciliationOutcome::Malformed))
    .bind(new.created_by)
    .bind(now)
    .fetch_one(&mut tx)
    .await?;

    let mut remaining = rows.len();
    let mut rows = rows.into_iter().enumerate();
    while remaining > 0 {
        let size = CHUNKS
            .into_iter()
            .find(|size| *size <= remaining)
            .unwrap_or(1);
        let sql = format!(
            "INSERT INTO reconciliation_rows ({ROW_COLUMNS}) VALUES {}",
            placeholders(db, size, ROW_WIDTH)
        );
        let mut params: Vec<Param<'_>> = Vec::with_capacity(size * ROW_WIDTH);
        for (seq, row) in rows.by_ref().take(size) {
            params.extend([
                Param::Text(Some(id.as_str())),
                Param::Int(Some(i64::try_from(seq).unwrap_or(i64::MAX))),
                Param::Int(row.line),
                Param::OwnedText(row.order_id),
                Param::OwnedText(row.provider_transaction_id),
                Param::Int(row.report_amount),
                Param::OwnedText(row.report_status),
                Param::Time(row.report_paid_at),
                Param::Int(row.gema_amount),
                Param::OwnedText(row.gema_status),
                Param::OwnedText(row.transaction_id),
                Param::Text(Some(row.outcome.as_str())),
                Param::OwnedText(row.reason),
            ]);
        }
        query(sql).bind_all(params).execute(&mut tx).await?;
        remaining -= size;
    }
    tx.commit().await?;
    Ok(run)
}
