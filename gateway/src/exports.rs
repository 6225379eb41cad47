//! Export jobs: a finance user asks for a CSV of ledger entries or transactions (an
//! operator with billing management, of billing customers); a worker writes it to a file
//! and the API hands it out until it expires.
//!
//! A job is a row first ([`Exports::create`]), then run by the worker ([`Exports::run`])
//! of whichever node claims it (`ExportStore::claim_export`: one conditional update, so
//! exactly one node runs a job). The worker reads the rows in keyset pages by id (never the
//! table at once; the next page is read while the last one is written), writes them as
//! CSV to `<dir>/<id>.csv.part`, renames that to `<id>.csv` when complete, and records its
//! progress every `progress_every_rows` rows, which also renews its claim. A job that was
//! running when its node stopped is never left "running": the node puts its own jobs back
//! in the queue when it starts, and any node takes a job over whose claim ran out; both
//! start it from scratch, and after `max_attempts` starts it is marked failed. The expiry
//! sweep ([`Exports::expire_due`], once per cluster on the lease holder) deletes files
//! older than the retention and marks their jobs expired.
//!
//! CSV: amounts are integer rupiah, times Asia/Jakarta with the offset
//! (`2026-12-03T07:00:00+07:00`), quoting by the `csv` crate. With several nodes the
//! directory must be shared (the file is written by the node that ran the job, and
//! downloaded from any).
//!
//! Billing invoice exports end with three summary rows (`TOTAL`, `PAID`, `UNPAID`: count
//! and amount), and `billing_invoices_xlsx` writes an XLSX workbook instead of CSV
//! (`<id>.xlsx`; `billing::finance::XlsxSheet`).
//!
//! Adding a kind: a variant and its rows in `gema_store::exports`, and here its columns
//! ([`header`]) and one record per row (`write_rows`), plus which filters it takes
//! (`check_filter`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gema_store::{
    ExportFilter, ExportJob, ExportJobFilter, ExportKind, ExportRows, ExportStatus, NewExport,
    Page, PageRequest, Store,
};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::{GatewayError, GatewayResult};

/// Where files go and how the worker paces itself.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// The directory of the CSV files (the binary's default: `<data_dir>/exports`).
    pub dir: PathBuf,
    /// How long a finished file is kept.
    pub retention: Duration,
    /// Rows read per page.
    pub page_rows: u32,
    /// Progress is recorded (and the claim renewed) after at least this many rows.
    pub progress_every_rows: i64,
    /// How often an idle worker looks for queued jobs (a job created on this node wakes it
    /// at once).
    pub poll_interval: Duration,
    /// How long a claim lasts without progress before another node may take the job.
    pub claim_ttl: Duration,
    /// Starts after which an interrupted job is marked failed.
    pub max_attempts: i64,
    /// How often the expiry sweep runs.
    pub sweep_interval: Duration,
}

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings {
            dir: PathBuf::from("exports"),
            retention: Duration::from_secs(24 * 3600),
            page_rows: 1_000,
            progress_every_rows: 20_000,
            poll_interval: Duration::from_secs(1),
            claim_ttl: Duration::from_secs(60),
            max_attempts: 3,
            sweep_interval: Duration::from_secs(60),
        }
    }
}

/// Export jobs: create, follow, find the file; the worker and the expiry sweep.
#[derive(Debug, Clone)]
pub struct Exports {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: ExportSettings,
    /// This node's id: the claim's holder.
    node: String,
    wake: Notify,
}

/// Why a run stopped before its end.
enum Stop {
    /// Another node holds the job now (this one's claim ran out).
    ClaimLost,
    Failed(String),
}

impl From<gema_store::StoreError> for Stop {
    fn from(err: gema_store::StoreError) -> Self {
        Stop::Failed(format!("reading the rows: {err}"))
    }
}

impl Exports {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: ExportSettings,
        node: String,
    ) -> Exports {
        Exports {
            inner: Arc::new(Inner {
                store,
                clock,
                settings,
                node,
                wake: Notify::new(),
            }),
        }
    }

    pub fn settings(&self) -> &ExportSettings {
        &self.inner.settings
    }

    /// Queues a job (the caller's audit scope records it) and wakes this node's worker.
    #[tracing::instrument(skip_all, fields(kind = kind.as_str(), created_by))]
    pub async fn create(
        &self,
        kind: ExportKind,
        filter: ExportFilter,
        created_by: &str,
    ) -> GatewayResult<ExportJob> {
        check_filter(kind, &filter)?;
        let job = self
            .inner
            .store
            .create_export(NewExport {
                kind,
                filter,
                created_by: created_by.to_owned(),
            })
            .await?;
        self.inner.wake.notify_one();
        Ok(job)
    }

    pub async fn job(&self, id: &str) -> GatewayResult<ExportJob> {
        Ok(self.inner.store.get_export(id).await?)
    }

    pub async fn jobs(
        &self,
        filter: &ExportJobFilter,
        page: &PageRequest,
    ) -> GatewayResult<Page<ExportJob>> {
        Ok(self.inner.store.list_exports(filter, page).await?)
    }

    /// The finished file of a done job. `Conflict` (`export_not_done`) while it is not
    /// done; `Conflict` (`export_expired`) once it has expired; `Internal` if a done job's
    /// file is missing here (a directory not shared between nodes).
    pub async fn file(&self, id: &str) -> GatewayResult<(ExportJob, PathBuf)> {
        let job = self.job(id).await?;
        match job.status {
            ExportStatus::Done => {}
            ExportStatus::Expired => {
                return Err(GatewayError::Conflict {
                    code: "export_expired",
                    message: format!("export {id} expired; its file was deleted"),
                    field: None,
                });
            }
            other => {
                return Err(GatewayError::Conflict {
                    code: "export_not_done",
                    message: format!("export {id} is {}; download it once done", other.as_str()),
                    field: None,
                });
            }
        }
        let path = self.path(id, job.kind, false);
        if tokio::fs::metadata(&path).await.is_err() {
            return Err(GatewayError::Internal(format!(
                "export {id} is done but {} is missing on this node (ran on {:?})",
                path.display(),
                job.claimed_by
            )));
        }
        Ok((job, path))
    }

    fn path(&self, id: &str, kind: ExportKind, part: bool) -> PathBuf {
        let extension = file_extension(kind);
        let name = if part {
            format!("{id}.{extension}.part")
        } else {
            format!("{id}.{extension}")
        };
        self.inner.settings.dir.join(name)
    }

    /// The worker: until `stop`, claims queued jobs (or ones whose claim ran out) one at a
    /// time and runs them. First puts back in the queue what this node was running when it
    /// last stopped; a stop in the middle of a job abandons it and queues it again.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        self.requeue_own().await;
        tokio::pin!(stop);
        'work: loop {
            loop {
                tokio::select! {
                    next = self.run_next() => match next {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(err) => {
                            tracing::error!(error = %err, "claiming an export failed");
                            break;
                        }
                    },
                    _ = &mut stop => break 'work,
                }
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(self.inner.settings.poll_interval) => {}
                _ = &mut stop => break,
            }
        }
        self.requeue_own().await;
    }

    async fn requeue_own(&self) {
        match self.inner.store.requeue_exports_of(&self.inner.node).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(jobs = n, "exports this node had not finished: queued again"),
            Err(err) => tracing::error!(error = %err, "requeueing this node's exports failed"),
        }
    }

    /// Claims and runs one job; `false` if there was none.
    pub async fn run_next(&self) -> GatewayResult<bool> {
        let now_ms = self.inner.clock.now_ms();
        let Some(job) = self
            .inner
            .store
            .claim_export(
                &self.inner.node,
                now_ms,
                now_ms + self.claim_ms(),
                self.inner.settings.max_attempts,
            )
            .await?
        else {
            return Ok(false);
        };
        self.run_job(job).await;
        Ok(true)
    }

    fn claim_ms(&self) -> i64 {
        i64::try_from(self.inner.settings.claim_ttl.as_millis()).unwrap_or(i64::MAX / 2)
    }

    #[tracing::instrument(skip_all, fields(export_id = %job.id, kind = job.kind.as_str(), attempt = job.attempts))]
    async fn run_job(&self, job: ExportJob) {
        let part = self.path(&job.id, job.kind, true);
        let store = &self.inner.store;
        let node = &self.inner.node;
        match self.write_file(&job, &part).await {
            Ok((rows, bytes)) => {
                let target = self.path(&job.id, job.kind, false);
                if let Err(err) = tokio::fs::rename(&part, &target).await {
                    self.fail(&job, &part, format!("renaming the file: {err}"))
                        .await;
                    return;
                }
                let now_ms = self.inner.clock.now_ms();
                let retention = i64::try_from(self.inner.settings.retention.as_millis())
                    .unwrap_or(i64::MAX / 2);
                match store
                    .finish_export(
                        &job.id,
                        node,
                        rows,
                        bytes,
                        now_ms,
                        now_ms.saturating_add(retention),
                    )
                    .await
                {
                    Ok(true) => {
                        metrics::counter!("gema_exports_total", "kind" => job.kind.as_str(), "outcome" => "done")
                            .increment(1);
                        metrics::counter!("gema_export_rows_total", "kind" => job.kind.as_str())
                            .increment(u64::try_from(rows).unwrap_or(0));
                        tracing::info!(rows, bytes, "export done");
                    }
                    Ok(false) => tracing::warn!("export finished after another node took it over"),
                    Err(err) => tracing::error!(error = %err, "recording a finished export failed"),
                }
            }
            Err(Stop::ClaimLost) => {
                tracing::warn!("export taken over by another node; stopped here");
                let _ = tokio::fs::remove_file(&part).await;
            }
            Err(Stop::Failed(message)) => self.fail(&job, &part, message).await,
        }
    }

    async fn fail(&self, job: &ExportJob, part: &Path, message: String) {
        tracing::error!(error = %message, "export failed");
        metrics::counter!("gema_exports_total", "kind" => job.kind.as_str(), "outcome" => "failed")
            .increment(1);
        let _ = tokio::fs::remove_file(part).await;
        if let Err(err) = self
            .inner
            .store
            .fail_export(
                &job.id,
                &self.inner.node,
                &message,
                self.inner.clock.now_ms(),
            )
            .await
        {
            tracing::error!(error = %err, "recording a failed export failed");
        }
    }

    /// Writes the job's CSV to `part`; returns (rows, bytes).
    async fn write_file(&self, job: &ExportJob, part: &Path) -> Result<(i64, i64), Stop> {
        let settings = &self.inner.settings;
        let store = &self.inner.store;
        let filter = job.filter().map_err(|err| Stop::Failed(err.to_string()))?;
        let total = store.count_export_rows(job.kind, &filter).await?;
        self.progress(job, 0, Some(total)).await?;
        let io =
            |what: &'static str| move |err: std::io::Error| Stop::Failed(format!("{what}: {err}"));
        tokio::fs::create_dir_all(&settings.dir)
            .await
            .map_err(io("creating the exports directory"))?;
        if job.kind == ExportKind::BillingInvoicesXlsx {
            return self.write_xlsx(job, &filter, part).await;
        }
        let mut file = tokio::fs::File::create(part)
            .await
            .map_err(io("creating the file"))?;
        let mut encoder = Encoder::new();
        let head = encoder
            .header(job.kind)
            .map_err(|e| Stop::Failed(e.to_string()))?;
        file.write_all(&head)
            .await
            .map_err(io("writing the file"))?;
        let mut bytes = head.len() as i64;
        let mut done: i64 = 0;
        let mut reported: i64 = 0;
        let mut rows = store
            .export_rows(job.kind, &filter, None, settings.page_rows)
            .await?;
        while !rows.is_empty() {
            let last_page = rows.len() < settings.page_rows as usize;
            let after = rows.last_id();
            // The next page is read while this one is encoded and written.
            let next = async {
                if last_page {
                    Ok(None)
                } else {
                    store
                        .export_rows(job.kind, &filter, after.as_deref(), settings.page_rows)
                        .await
                        .map(Some)
                }
            };
            let write = async {
                let chunk = encoder
                    .rows(&rows)
                    .map_err(|e| Stop::Failed(e.to_string()))?;
                file.write_all(&chunk)
                    .await
                    .map_err(io("writing the file"))?;
                Ok::<_, Stop>(chunk.len() as i64)
            };
            let (next, written) = tokio::join!(next, write);
            bytes += written?;
            done += rows.len() as i64;
            if done - reported >= settings.progress_every_rows {
                self.progress(job, done, None).await?;
                reported = done;
            }
            match next? {
                Some(page) => rows = page,
                None => break,
            }
        }
        if job.kind.is_billing_invoices() {
            let summary = encoder
                .billing_summary()
                .map_err(|e| Stop::Failed(e.to_string()))?;
            file.write_all(&summary)
                .await
                .map_err(io("writing the file"))?;
            bytes += summary.len() as i64;
        }
        file.flush().await.map_err(io("writing the file"))?;
        file.sync_all().await.map_err(io("syncing the file"))?;
        Ok((done, bytes))
    }

    /// A billing invoice export as an XLSX workbook: one sheet, [`header`]'s columns, the
    /// pages' rows, then the summary rows. The worksheet runs in constant-memory mode (each
    /// row goes to a temporary file in the exports directory as it is written), so like a
    /// CSV export it never holds all its rows.
    async fn write_xlsx(
        &self,
        job: &ExportJob,
        filter: &ExportFilter,
        part: &Path,
    ) -> Result<(i64, i64), Stop> {
        let settings = &self.inner.settings;
        let store = &self.inner.store;
        let xlsx =
            |err: rust_xlsxwriter::XlsxError| Stop::Failed(format!("writing the XLSX: {err}"));
        let mut sheet = XlsxSheet::new(&settings.dir, header(job.kind)).map_err(xlsx)?;
        let mut totals = BillingTotals::default();
        let mut done: i64 = 0;
        let mut reported: i64 = 0;
        let mut after: Option<String> = None;
        loop {
            let rows = store
                .export_rows(job.kind, filter, after.as_deref(), settings.page_rows)
                .await?;
            let ExportRows::BillingInvoices(invoices) = &rows else {
                return Err(Stop::Failed(format!(
                    "{} rows of another kind",
                    job.kind.as_str()
                )));
            };
            for invoice in invoices {
                totals.add(invoice);
                sheet
                    .invoice(invoice, |t| format_time(Some(t)))
                    .map_err(xlsx)?;
            }
            done += rows.len() as i64;
            if done - reported >= settings.progress_every_rows {
                self.progress(job, done, None).await?;
                reported = done;
            }
            if rows.len() < settings.page_rows as usize {
                break;
            }
            after = rows.last_id();
        }
        for line in totals.lines() {
            sheet.summary(&line).map_err(xlsx)?;
        }
        let path = part.to_owned();
        let bytes = tokio::task::spawn_blocking(move || sheet.save(&path))
            .await
            .map_err(|err| Stop::Failed(format!("writing the XLSX: {err}")))?
            .map_err(xlsx)?;
        Ok((done, bytes))
    }

    async fn progress(&self, job: &ExportJob, done: i64, total: Option<i64>) -> Result<(), Stop> {
        let until = self.inner.clock.now_ms() + self.claim_ms();
        match self
            .inner
            .store
            .export_progress(&job.id, &self.inner.node, done, total, until)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Stop::ClaimLost),
            Err(err) => Err(Stop::Failed(format!("recording progress: {err}"))),
        }
    }

    /// Deletes the files of done jobs past their retention and marks the jobs expired.
    /// Returns their ids.
    pub async fn expire_due(&self) -> GatewayResult<Vec<String>> {
        let now_ms = self.inner.clock.now_ms();
        let due = self.inner.store.exports_due_to_expire(now_ms, 500).await?;
        let mut expired = Vec::with_capacity(due.len());
        for job in due {
            match tokio::fs::remove_file(self.path(&job.id, job.kind, false)).await {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::error!(export_id = %job.id, error = %err, "deleting an expired export failed");
                    continue;
                }
            }
            if self.inner.store.mark_export_expired(&job.id).await? {
                expired.push(job.id);
            }
        }
        Ok(expired)
    }
}

/// Refuses a filter the kind does not take, naming it.
fn check_filter(kind: ExportKind, filter: &ExportFilter) -> GatewayResult<()> {
    let refuse = |field: &'static str| {
        Err(GatewayError::invalid(
            field,
            format!("a {} export takes no {field} filter", kind.as_str()),
        ))
    };
    match kind {
        ExportKind::LedgerEntries | ExportKind::SettlementAdjustments
            if filter.status.is_some() =>
        {
            return refuse("status");
        }
        ExportKind::Transactions | ExportKind::SettlementAdjustments
            if filter.entry_type.is_some() =>
        {
            return refuse("entry_type");
        }
        ExportKind::LedgerEntries | ExportKind::Transactions
            if filter.adjustment_type.is_some() =>
        {
            return refuse("adjustment_type");
        }
        ExportKind::ReconciliationRows => {
            if filter.run_id.is_none() {
                return Err(GatewayError::invalid(
                    "run_id",
                    "a reconciliation_rows export is of one run: give its run_id",
                ));
            }
            for (field, given) in [
                ("merchant_id", filter.merchant_id.is_some()),
                ("from", filter.from.is_some()),
                ("to", filter.to.is_some()),
                ("status", filter.status.is_some()),
                ("entry_type", filter.entry_type.is_some()),
                ("adjustment_type", filter.adjustment_type.is_some()),
            ] {
                if given {
                    return refuse(field);
                }
            }
        }
        ExportKind::BillingInvoices
        | ExportKind::BillingInvoicesXlsx
        | ExportKind::BillingCustomers => {
            for (field, given) in [
                ("from", filter.from.is_some()),
                ("to", filter.to.is_some()),
                ("status", filter.status.is_some()),
                ("entry_type", filter.entry_type.is_some()),
                ("adjustment_type", filter.adjustment_type.is_some()),
                ("run_id", filter.run_id.is_some()),
                ("outcome", filter.outcome.is_some()),
            ] {
                if given {
                    return refuse(field);
                }
            }
            if kind == ExportKind::BillingCustomers {
                if filter.period_from.is_some() {
                    return refuse("period_from");
                }
                if filter.period_to.is_some() {
                    return refuse("period_to");
                }
            } else {
                crate::billing::finance::check_export_periods(
                    filter.period_from.as_deref(),
                    filter.period_to.as_deref(),
                )?;
            }
        }
        _ if filter.period_from.is_some() => return refuse("period_from"),
        _ if filter.period_to.is_some() => return refuse("period_to"),
        _ if filter.run_id.is_some() => return refuse("run_id"),
        _ if filter.outcome.is_some() => return refuse("outcome"),
        _ => {}
    }
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from >= to
    {
        return Err(GatewayError::invalid("to", "must be after from"));
    }
    Ok(())
}

use crate::csv_out::defuse;
use crate::settlement::JAKARTA;
use gema_store::billing::customer_total;
const JAKARTA_TIME: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+07:00");

/// CSV encoding with buffers reused from page to page.
struct Encoder {
    number: String,
    time: Vec<u8>,
    /// A billing export's running totals, for its summary rows.
    billing: BillingTotals,
}

/// The file name's extension of a kind's export.
pub fn file_extension(kind: ExportKind) -> &'static str {
    match kind {
        ExportKind::BillingInvoicesXlsx => "xlsx",
        _ => "csv",
    }
}

/// A time as the export files write it: Asia/Jakarta with the offset, no fraction.
fn format_time(value: Option<OffsetDateTime>) -> String {
    value
        .and_then(|t| t.to_offset(JAKARTA).format(JAKARTA_TIME).ok())
        .unwrap_or_default()
}

/// What a billing export's rows add up to: its summary rows (total, paid, unpaid).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BillingTotals {
    invoices: i64,
    billed: i64,
    paid_invoices: i64,
    paid: i64,
}

/// One summary row: its label (in the first column), how many invoices, their amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SummaryLine {
    pub label: &'static str,
    pub invoices: i64,
    pub amount: i64,
}

impl BillingTotals {
    pub(crate) fn add(&mut self, invoice: &gema_store::FinanceInvoice) {
        self.invoices += 1;
        self.billed = self.billed.saturating_add(invoice.total_amount);
        if invoice.status == gema_store::billing::InvoiceStatus::Paid {
            self.paid_invoices += 1;
            self.paid = self.paid.saturating_add(invoice.total_amount);
        }
    }

    /// `TOTAL`, `PAID` and `UNPAID`, after the rows.
    pub(crate) fn lines(&self) -> [SummaryLine; 3] {
        [
            SummaryLine {
                label: "TOTAL",
                invoices: self.invoices,
                amount: self.billed,
            },
            SummaryLine {
                label: "PAID",
                invoices: self.paid_invoices,
                amount: self.paid,
            },
            SummaryLine {
                label: "UNPAID",
                invoices: self.invoices - self.paid_invoices,
                amount: self.billed - self.paid,
            },
        ]
    }
}

/// Where a billing row's summary values go: the label in the first column, the count in
/// the customer column, the amount in the amount column.
pub(crate) const SUMMARY_COUNT_COLUMN: usize = 2;
pub(crate) const SUMMARY_AMOUNT_COLUMN: usize = 6;

impl Encoder {
    fn new() -> Self {
        Encoder {
            number: String::new(),
            time: Vec::new(),
            billing: BillingTotals::default(),
        }
    }

    /// The summary rows of a billing export.
    fn billing_summary(&mut self) -> csv::Result<Vec<u8>> {
        let mut out = csv::Writer::from_writer(Vec::new());
        let width = header(ExportKind::BillingInvoices).len();
        for line in self.billing.lines() {
            let mut record = vec![String::new(); width];
            record[0] = line.label.to_owned();
            record[SUMMARY_COUNT_COLUMN] = format!("{} invoices", line.invoices);
            record[SUMMARY_AMOUNT_COLUMN] = line.amount.to_string();
            out.write_record(&record)?;
        }
        out.into_inner().map_err(|e| e.into_error().into())
    }

    fn header(&mut self, kind: ExportKind) -> csv::Result<Vec<u8>> {
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record(header(kind))?;
        out.into_inner().map_err(|e| e.into_error().into())
    }

    fn rows(&mut self, rows: &ExportRows) -> csv::Result<Vec<u8>> {
        let mut out = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 160));
        write_rows(&mut out, self, rows)?;
        out.into_inner().map_err(|e| e.into_error().into())
    }

    fn int(&mut self, value: i64) -> &str {
        use std::fmt::Write;
        self.number.clear();
        let _ = write!(self.number, "{value}");
        &self.number
    }

    fn time(&mut self, value: Option<OffsetDateTime>) -> &[u8] {
        self.time.clear();
        if let Some(t) = value {
            let _ = t
                .to_offset(JAKARTA)
                .format_into(&mut self.time, JAKARTA_TIME);
        }
        &self.time
    }
}

/// A billing export's workbook, written row by row in constant-memory mode.
struct XlsxSheet {
    workbook: rust_xlsxwriter::Workbook,
    row: u32,
}

impl XlsxSheet {
    fn new(dir: &Path, columns: &[&str]) -> Result<Self, rust_xlsxwriter::XlsxError> {
        let mut workbook = rust_xlsxwriter::Workbook::new();
        workbook.set_tempdir(dir)?;
        let sheet = workbook.add_worksheet_with_constant_memory()?;
        for (col, name) in (0u16..).zip(columns) {
            sheet.write_string(0, col, *name)?;
        }
        Ok(XlsxSheet { workbook, row: 1 })
    }

    fn sheet(&mut self) -> Result<&mut rust_xlsxwriter::Worksheet, rust_xlsxwriter::XlsxError> {
        self.workbook.worksheet_from_index(0)
    }

    /// Text, defused as in the CSV files (a spreadsheet never runs it as a formula).
    fn text(&mut self, col: u16, value: &str) -> Result<(), rust_xlsxwriter::XlsxError> {
        let row = self.row;
        if !value.is_empty() {
            self.sheet()?
                .write_string(row, col, defuse(value).as_ref())?;
        }
        Ok(())
    }

    /// Integer rupiah as a number cell. A cell's number is an f64, exact for every amount
    /// below 2^53 rupiah; nothing is computed with it.
    fn amount(&mut self, col: u16, value: i64) -> Result<(), rust_xlsxwriter::XlsxError> {
        let row = self.row;
        self.sheet()?.write_number(row, col, value as f64)?;
        Ok(())
    }

    fn invoice(
        &mut self,
        r: &gema_store::FinanceInvoice,
        time: impl Fn(OffsetDateTime) -> String,
    ) -> Result<(), rust_xlsxwriter::XlsxError> {
        self.text(0, &r.id)?;
        self.text(1, &r.merchant_id)?;
        self.text(2, &r.customer_name)?;
        self.text(3, &r.period)?;
        self.text(4, &r.due_date)?;
        self.text(5, &r.package_name)?;
        self.amount(6, r.total_amount)?;
        self.text(7, r.status.as_str())?;
        self.text(8, &r.paid_at.map(time).unwrap_or_default())?;
        self.text(9, r.paid_by.as_deref().unwrap_or(""))?;
        self.text(10, r.payment_method.as_deref().unwrap_or(""))?;
        self.row += 1;
        Ok(())
    }

    fn summary(&mut self, line: &SummaryLine) -> Result<(), rust_xlsxwriter::XlsxError> {
        self.text(0, line.label)?;
        self.text(
            SUMMARY_COUNT_COLUMN as u16,
            &format!("{} invoices", line.invoices),
        )?;
        self.amount(SUMMARY_AMOUNT_COLUMN as u16, line.amount)?;
        self.row += 1;
        Ok(())
    }

    /// Writes the file; returns its size.
    fn save(mut self, path: &Path) -> Result<i64, rust_xlsxwriter::XlsxError> {
        self.workbook.save(path)?;
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(i64::try_from(bytes).unwrap_or(i64::MAX))
    }
}

/// The columns of a kind's file.
pub fn header(kind: ExportKind) -> &'static [&'static str] {
    match kind {
        ExportKind::LedgerEntries => &[
            "id",
            "created_at",
            "merchant_id",
            "transaction_id",
            "entry_type",
            "amount",
            "external_id",
            "reverses_id",
            "adjustment_id",
        ],
        ExportKind::Transactions => &[
            "id",
            "created_at",
            "merchant_id",
            "terminal_id",
            "order_ref",
            "amount",
            "status",
            "source",
            "provider",
            "provider_transaction_id",
            "issuer",
            "paid_at",
            "paid_after_expiry",
        ],
        ExportKind::ReconciliationRows => &[
            "run_id",
            "seq",
            "line",
            "outcome",
            "order_id",
            "provider_transaction_id",
            "report_amount",
            "gema_amount",
            "report_status",
            "gema_status",
            "report_paid_at",
            "transaction_id",
            "reason",
        ],
        ExportKind::SettlementAdjustments => &[
            "id",
            "created_at",
            "merchant_id",
            "batch_id",
            "adjustment_type",
            "amount",
            "reason",
            "created_by",
        ],
        ExportKind::BillingInvoices | ExportKind::BillingInvoicesXlsx => &[
            "invoice_id",
            "merchant_id",
            "customer_name",
            "period",
            "due_date",
            "package",
            "total_amount",
            "status",
            "paid_at",
            "paid_by",
            "payment_method",
        ],
        ExportKind::BillingCustomers => crate::billing::import::EXPORT_COLUMNS,
    }
}

/// One record per row, in [`header`]'s order; text that a spreadsheet would run as a
/// formula is defused ([`defuse`]).
fn write_rows(
    out: &mut csv::Writer<Vec<u8>>,
    enc: &mut Encoder,
    rows: &ExportRows,
) -> csv::Result<()> {
    match rows {
        ExportRows::LedgerEntries(rows) => {
            for r in rows {
                out.write_field(defuse(&r.id).as_bytes())?;
                out.write_field(enc.time(Some(r.created_at)))?;
                out.write_field(defuse(&r.merchant_id).as_bytes())?;
                out.write_field(defuse(r.transaction_id.as_deref().unwrap_or("")).as_bytes())?;
                out.write_field(r.entry_type.as_str())?;
                out.write_field(enc.int(r.amount))?;
                out.write_field(defuse(&r.external_id).as_bytes())?;
                out.write_field(defuse(r.reverses_id.as_deref().unwrap_or("")).as_bytes())?;
                out.write_field(defuse(r.adjustment_id.as_deref().unwrap_or("")).as_bytes())?;
                out.write_record(None::<&[u8]>)?;
            }
        }
        ExportRows::Transactions(rows) => {
            for r in rows {
                out.write_field(defuse(&r.id).as_bytes())?;
                out.write_field(enc.time(Some(r.created_at)))?;
                out.write_field(defuse(&r.merchant_id).as_bytes())?;
                out.write_field(defuse(&r.terminal_id).as_bytes())?;
                out.write_field(defuse(&r.order_ref).as_bytes())?;
                out.write_field(enc.int(r.amount))?;
                out.write_field(r.status.as_str())?;
                out.write_field(r.source.as_str())?;
                out.write_field(defuse(r.provider.as_deref().unwrap_or("")).as_bytes())?;
                out.write_field(
                    defuse(r.provider_transaction_id.as_deref().unwrap_or("")).as_bytes(),
                )?;
                out.write_field(defuse(r.issuer.as_deref().unwrap_or("")).as_bytes())?;
                out.write_field(enc.time(r.paid_at))?;
                out.write_field(if r.paid_after_expiry { "true" } else { "false" })?;
                out.write_record(None::<&[u8]>)?;
            }
        }
        ExportRows::ReconciliationRows(rows) => {
            for r in rows {
                let opt_int = |enc: &mut Encoder, v: Option<i64>| match v {
                    Some(v) => enc.int(v).to_owned(),
                    None => String::new(),
                };
                out.write_field(defuse(&r.run_id).as_bytes())?;
                out.write_field(enc.int(r.seq))?;
                out.write_field(opt_int(enc, r.line))?;
                out.write_field(r.outcome.as_str())?;
                out.write_field(defuse(r.order_id.as_deref().unwrap_or("")).as_bytes())?;
                out.write_field(
                    defuse(r.provider_transaction_id.as_deref().unwrap_or("")).as_bytes(),
                )?;
                out.write_field(opt_int(enc, r.report_amount))?;
                out.write_field(opt_int(enc, r.gema_amount))?;
                out.write_field(defuse(r.report_status.as_deref().unwrap_or("")).as_bytes())?;
                out.write_field(defuse(r.gema_status.as_deref().unwrap_or("")).as_bytes())?;
                out.write_field(enc.time(r.report_paid_at))?;
                out.write_field(defuse(r.transaction_id.as_deref().unwrap_or("")).as_bytes())?;
                out.write_field(defuse(r.reason.as_deref().unwrap_or("")).as_bytes())?;
                out.write_record(None::<&[u8]>)?;
            }
        }
        ExportRows::BillingInvoices(rows) => {
            for r in rows {
                enc.billing.add(r);
                out.write_field(defuse(&r.id).as_bytes())?;
                out.write_field(defuse(&r.merchant_id).as_bytes())?;
                out.write_field(defuse(&r.customer_name).as_bytes())?;
                out.write_field(defuse(&r.period).as_bytes())?;
                out.write_field(defuse(&r.due_date).as_bytes())?;
                out.write_field(defuse(&r.package_name).as_bytes())?;
                out.write_field(enc.int(r.total_amount))?;
                out.write_field(r.status.as_str())?;
                out.write_field(enc.time(r.paid_at))?;
                out.write_field(defuse(r.paid_by.as_deref().unwrap_or("")).as_bytes())?;
                out.write_field(defuse(r.payment_method.as_deref().unwrap_or("")).as_bytes())?;
                out.write_record(None::<&[u8]>)?;
            }
        }
        ExportRows::SettlementAdjustments(rows) => {
            for r in rows {
                out.write_field(defuse(&r.id).as_bytes())?;
                out.write_field(enc.time(Some(r.created_at)))?;
                out.write_field(defuse(&r.merchant_id).as_bytes())?;
                out.write_field(defuse(&r.batch_id).as_bytes())?;
                out.write_field(r.adjustment_type.as_str())?;
                out.write_field(enc.int(r.amount))?;
                out.write_field(defuse(&r.reason).as_bytes())?;
                out.write_field(defuse(&r.created_by).as_bytes())?;
                out.write_record(None::<&[u8]>)?;
            }
        }
        ExportRows::BillingCustomers(rows) => {
            for r in rows {
                let c = &r.customer;
                out.write_field(defuse(&c.name).as_bytes())?;
                out.write_field(defuse(&c.phone).as_bytes())?;
                out.write_field(enc.int(c.discount))?;
                out.write_field(enc.int(c.billing_day))?;
                out.write_field(defuse(&r.area).as_bytes())?;
                out.write_field(defuse(&r.package_name).as_bytes())?;
                out.write_field(enc.int(r.package_price))?;
                out.write_field(enc.int(customer_total(r.package_price, c.discount)))?;
                out.write_field(defuse(c.nik.as_deref().unwrap_or("")).as_bytes())?;
                out.write_field(defuse(&c.register_date).as_bytes())?;
                out.write_field(defuse(&c.id).as_bytes())?;
                out.write_field(defuse(&c.merchant_id).as_bytes())?;
                out.write_field(defuse(&c.package_id).as_bytes())?;
                out.write_field(c.status.as_str())?;
                out.write_field(defuse(c.address.as_deref().unwrap_or("")).as_bytes())?;
                out.write_field(defuse(c.notes.as_deref().unwrap_or("")).as_bytes())?;
                out.write_field(enc.time(Some(c.created_at)))?;
                out.write_record(None::<&[u8]>)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_jakarta_with_the_offset_and_no_fraction() {
        let mut enc = Encoder::new();
        let t = time::macros::datetime!(2026-12-03 00:00:00.123456 UTC);
        assert_eq!(enc.time(Some(t)), b"2026-12-03T07:00:00+07:00");
        assert_eq!(enc.time(None), b"");
    }

    #[test]
    fn a_filter_the_kind_does_not_take_is_named() {
        let filter = ExportFilter {
            status: Some(gema_store::TransactionStatus::Paid),
            ..Default::default()
        };
        match check_filter(ExportKind::LedgerEntries, &filter) {
            Err(GatewayError::Invalid { field, .. }) => assert_eq!(field, "status"),
            other => panic!("expected Invalid(status), got {other:?}"),
        }
        assert!(check_filter(ExportKind::Transactions, &filter).is_ok());
    }
}
