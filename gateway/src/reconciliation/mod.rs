//! Provider reconciliation: a provider's report (Midtrans, Xendit, or any CSV with a
//! column mapping) matched against Gema's transactions, kept as a run with its counts and
//! rows.
//!
//! [`Reconciliation::import`] reads the report ([`report`], over the untrusted-input
//! reader [`crate::csv_in`]), looks up the transactions its rows name and those paid within its
//! period, matches them ([`matching`], pure), and stores the run and its rows in one
//! transaction. A header without a needed column refuses the report (`Invalid`, naming
//! `columns` or the mapping field); a line that cannot be read is a `malformed` row with its
//! line number and reason and never stops the others. Nothing is stored for a refused
//! report.
//!
//! [`Reconciliation::rerun`] matches a run's stored report rows again against the
//! transactions as they are now and stores the result as a **new** run that names the
//! earlier one (`rerun_of`). A run is a record of what was found when: the earlier run's
//! rows stay what finance saw and exported, and both runs carry their own audit row.
//!
//! The period: `from` and `to` as given, or else the earliest and latest paid time among
//! the report's rows; a report without paid times and no period given has none, and then
//! nothing is looked for as `missing_in_report`. Transactions paid in the period are looked
//! for among those created from [`CREATED_BEFORE_PAID`] before it to its end (paid time
//! is not a column the databases compare the same way; creation time is).
//!
//! This module decides; it never speaks HTTP (that is `admin-api`) and holds no SQL.

pub mod matching;
pub mod report;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use gema_store::{
    NewReconciliationRun, Page, PageRequest, ReconcilableTransaction, ReconciliationOutcome,
    ReconciliationRow, ReconciliationRowFilter, ReconciliationRun, Store,
};
use time::OffsetDateTime;

use crate::error::{GatewayError, GatewayResult};

pub use report::{ColumnMapping, ReportFormat, ReportRow, ReportStatus};

/// How long before being paid a transaction may have been created, at most, and still be
/// looked for as `missing_in_report`: orders expire in minutes; a payment that arrives a
/// week after its order was made is not looked for.
pub const CREATED_BEFORE_PAID: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the caller says about a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    pub format: ReportFormat,
    /// The provider whose Gema transactions are compared (`midtrans` for the Midtrans
    /// format, `xendit` for Xendit's, by default; any for the generic format).
    pub provider: Option<String>,
    /// The generic format's columns.
    pub mapping: Option<ColumnMapping>,
    /// The period, given; both or neither.
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

/// Reconciliation runs: import, re-run, read.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    store: Arc<dyn Store>,
}

impl Reconciliation {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Reads `csv`, matches it and stores the run (see the module docs).
    #[tracing::instrument(skip_all, fields(format = request.format.as_str(), bytes = csv.len()))]
    pub async fn import(
        &self,
        request: ImportRequest,
        csv: &[u8],
        created_by: &str,
    ) -> GatewayResult<ReconciliationRun> {
        let given = match (request.from, request.to) {
            (Some(from), Some(to)) if from <= to => Some((from, to)),
            (Some(_), Some(_)) => return Err(GatewayError::invalid("to", "to is before from")),
            (Some(_), None) => return Err(GatewayError::invalid("to", "give both from and to")),
            (None, Some(_)) => return Err(GatewayError::invalid("from", "give both from and to")),
            (None, None) => None,
        };
        if request.format != ReportFormat::Generic && request.mapping.is_some() {
            return Err(GatewayError::invalid(
                "format",
                "a column mapping is for the generic format only",
            ));
        }
        let provider = request.provider.clone().or(match request.format {
            ReportFormat::Midtrans => Some("midtrans".to_string()),
            ReportFormat::Xendit => Some("xendit".to_string()),
            ReportFormat::Generic => None,
        });
        let rows = report::read_report(request.format, request.mapping.as_ref(), csv)?;
        let period = given.or_else(|| {
            let times = rows.iter().filter(|r| r.malformed.is_none());
            let from = times.clone().filter_map(|r| r.paid_at).min()?;
            let to = times.filter_map(|r| r.paid_at).max()?;
            Some((from, to))
        });
        let mapping = match &request.mapping {
            Some(mapping) => Some(
                serde_json::to_string(mapping)
                    .map_err(|err| GatewayError::Internal(err.to_string()))?,
            ),
            None => None,
        };
        let new = NewReconciliationRun {
            format: request.format.as_str().to_string(),
            provider,
            mapping,
            period_from: period.map(|p| p.0),
            period_to: period.map(|p| p.1),
            rerun_of: None,
            created_by: created_by.to_string(),
        };
        self.match_and_store(new, &rows).await
    }

    /// Matches `run_id`'s report rows again, as a new run (see the module docs).
    #[tracing::instrument(skip_all, fields(run_id = run_id))]
    pub async fn rerun(&self, run_id: &str, created_by: &str) -> GatewayResult<ReconciliationRun> {
        let earlier = self.store.get_reconciliation_run(run_id).await?;
        let format = ReportFormat::parse(&earlier.format).ok_or_else(|| {
            GatewayError::Internal(format!("run {run_id} has format {:?}", earlier.format))
        })?;
        let mut rows = Vec::new();
        let mut after = -1;
        loop {
            let chunk = self
                .store
                .reconciliation_row_chunk(run_id, after, gema_store::reconciliation::ROW_CHUNK_MAX)
                .await?;
            let Some(last) = chunk.last() else { break };
            after = last.seq;
            rows.extend(
                chunk
                    .into_iter()
                    .filter_map(|row| stored_report_row(format, row)),
            );
        }
        let new = NewReconciliationRun {
            format: earlier.format,
            provider: earlier.provider,
            mapping: earlier.mapping,
            period_from: earlier.period_from,
            period_to: earlier.period_to,
            rerun_of: Some(earlier.id),
            created_by: created_by.to_string(),
        };
        self.match_and_store(new, &rows).await
    }

    async fn match_and_store(
        &self,
        new: NewReconciliationRun,
        rows: &[ReportRow],
    ) -> GatewayResult<ReconciliationRun> {
        let good = || rows.iter().filter(|r| r.malformed.is_none());
        let order_refs = distinct(good().filter_map(|r| r.order_id.as_deref()));
        let mut known = self.store.transactions_by_order_ref(&order_refs).await?;
        let found: HashSet<String> = known.iter().map(|t| t.order_ref.clone()).collect();
        // Provider ids only for rows their order reference did not find.
        let unresolved = distinct(
            good()
                .filter(|r| r.order_id.as_ref().is_none_or(|o| !found.contains(o)))
                .filter_map(|r| r.provider_id.as_deref()),
        );
        if !unresolved.is_empty() {
            let by_id = self.store.transactions_by_provider_id(&unresolved).await?;
            let mut ids: HashSet<String> = known.iter().map(|t| t.id.clone()).collect();
            known.extend(by_id.into_iter().filter(|t| ids.insert(t.id.clone())));
        }
        let period = new.period_from.zip(new.period_to);
        let paid_in_period: Vec<ReconcilableTransaction> = match period {
            Some((from, to)) => {
                self.store
                    .paid_transactions_created_between(
                        new.provider.as_deref(),
                        from.checked_sub(CREATED_BEFORE_PAID.try_into().unwrap_or_default())
                            .unwrap_or(from),
                        to,
                    )
                    .await?
            }
            None => Vec::new(),
        };
        let matched = matching::reconcile(rows, &known, &paid_in_period, period);
        Ok(self.store.create_reconciliation_run(new, matched).await?)
    }

    pub async fn run(&self, id: &str) -> GatewayResult<ReconciliationRun> {
        Ok(self.store.get_reconciliation_run(id).await?)
    }

    pub async fn runs(&self, page: &PageRequest) -> GatewayResult<Page<ReconciliationRun>> {
        Ok(self.store.list_reconciliation_runs(page).await?)
    }

    /// Runs, newest first (the console's list).
    pub async fn runs_newest_first(
        &self,
        page: &PageRequest,
    ) -> GatewayResult<Page<ReconciliationRun>> {
        Ok(self
            .store
            .list_reconciliation_runs_newest_first(page)
            .await?)
    }

    pub async fn rows(
        &self,
        run_id: &str,
        filter: &ReconciliationRowFilter,
        page: &PageRequest,
    ) -> GatewayResult<Page<ReconciliationRow>> {
        if page
            .after
            .as_deref()
            .is_some_and(|c| c.parse::<i64>().is_err())
        {
            return Err(GatewayError::invalid(
                "cursor",
                "not a cursor of this list: pass next_cursor as it came",
            ));
        }
        Ok(self
            .store
            .list_reconciliation_rows(run_id, filter, page)
            .await?)
    }

    /// A piece of a run's rows after `after_seq`, in order (for an export that streams).
    pub async fn row_chunk(
        &self,
        run_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> GatewayResult<Vec<ReconciliationRow>> {
        Ok(self
            .store
            .reconciliation_row_chunk(run_id, after_seq, limit)
            .await?)
    }
}

fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    values
        .filter(|v| seen.insert(*v))
        .map(str::to_string)
        .collect()
}

/// A stored row that came from the report, read back as it was read (malformed ones keep
/// their reason; a duplicate is matched afresh, since what it duplicates may have moved).
fn stored_report_row(format: ReportFormat, row: ReconciliationRow) -> Option<ReportRow> {
    let line = row.line?;
    let duplicate = row
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with("duplicate of line"));
    let malformed = (row.outcome == ReconciliationOutcome::Malformed && !duplicate)
        .then(|| row.reason.unwrap_or_else(|| "malformed".to_string()));
    Some(ReportRow {
        line,
        status: row
            .report_status
            .as_deref()
            .and_then(|s| report::normalise_status(format, s)),
        order_id: row.order_id,
        provider_id: row.provider_transaction_id,
        amount: row.report_amount,
        raw_status: row.report_status,
        paid_at: row.report_paid_at,
        malformed,
    })
}
