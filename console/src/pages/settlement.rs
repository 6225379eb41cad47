//! Settlement batches: the list (by status, a page at a time), generating batches, a batch's
//! detail (its items, events and adjustments), the lifecycle buttons its status allows
//! (mark paid, mark failed, cancel, add an adjustment while pending; reprocess once failed or
//! cancelled, after a confirm page), and its payout report as a CSV download; and every
//! adjustment (`/settlement/adjustments`, by type, a page at a time). Merchant users (owner, finance)
//! see their own merchant's batches, read-only; another merchant's batch is the 404 page.
//!
//! Account numbers are shown whole only to the roles the gateway's `sees_account_numbers`
//! names, as in the API; the bank upload format (whole numbers) is offered only to them.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_admin_api::authz::{Scope, owns};
use gema_gateway::GatewayError;
use gema_gateway::auth::Action;
use gema_gateway::settlement::{
    AdjustmentInput, AdjustmentQuery, GenerateInput, ReportFormat, mask_account_number,
    sees_account_numbers,
};
use gema_store::{BatchStatus, PageRequest, SettlementBatch};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::format::parse_signed_rupiah;
use crate::frame::{Chrome, ErrorPage, Problem, html};
use crate::session::{Posted, Session, see_other};

/// Rows per page (batches, and a batch's items).
pub const PAGE_SIZE: u32 = 50;

/// The status filter's choices: value and text key.
pub const STATUSES: [(&str, &str); 5] = [
    ("", "health.all"),
    ("pending", "settlement.status.pending"),
    ("paid", "settlement.status.paid"),
    ("failed", "settlement.status.failed"),
    ("cancelled", "settlement.status.cancelled"),
];

/// A batch status as a badge: class and text key.
pub fn status_badge(status: BatchStatus) -> (&'static str, &'static str) {
    match status {
        BatchStatus::Pending => ("warn", "settlement.status.pending"),
        BatchStatus::Paid => ("ok", "settlement.status.paid"),
        BatchStatus::Failed => ("bad", "settlement.status.failed"),
        BatchStatus::Cancelled => ("neutral", "settlement.status.cancelled"),
    }
}

#[derive(Debug)]
pub struct BatchRow {
    pub id: String,
    pub merchant_id: String,
    /// `pending`, `paid`, `failed`, `cancelled`: the row's `data-status`.
    pub status: &'static str,
    pub badge: &'static str,
    pub status_text: &'static str,
    pub cutoff_ms: i64,
    pub item_count: i64,
    pub net_amount: i64,
    pub created_at: OffsetDateTime,
}

impl BatchRow {
    fn new(b: &SettlementBatch, chrome: &Chrome) -> BatchRow {
        let (badge, key) = status_badge(b.status);
        BatchRow {
            id: b.id.clone(),
            merchant_id: b.merchant_id.clone(),
            status: b.status.as_str(),
            badge,
            status_text: chrome.t(key),
            cutoff_ms: b.cutoff_ms,
            item_count: b.item_count,
            net_amount: b.net_amount(),
            created_at: b.created_at,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    after: Option<String>,
    /// Set by the redirect after generating: how many batches were made and skipped.
    #[serde(default)]
    generated: Option<u32>,
    #[serde(default)]
    skipped: Option<u32>,
}

#[derive(Template)]
#[template(path = "settlement.html")]
struct ListView {
    chrome: Chrome,
    csrf: String,
    rows: Vec<BatchRow>,
    statuses: Vec<(&'static str, &'static str, bool)>,
    status: String,
    next: Option<String>,
    first_page: bool,
    may_write: bool,
    /// Operators see the merchant column (and may link to the merchant).
    operator: bool,
    may_merchants: bool,
    generated: Option<(u32, u32)>,
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::SettlementRead)?;
    let status = q.status.clone().unwrap_or_default();
    let after = q.after.clone().filter(|a| !a.is_empty());
    let page = state
        .settlement
        .batches(
            session.merchant().map(str::to_owned),
            Some(status.as_str()).filter(|s| !s.is_empty()),
            &PageRequest {
                after: after.clone(),
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    let chrome = session.chrome();
    let rows = page
        .items
        .iter()
        .map(|b| BatchRow::new(b, &chrome))
        .collect();
    let next = page.next_after.map(|after| {
        let mut link = format!("/settlement?after={after}");
        if !status.is_empty() {
            link.push_str(&format!("&status={status}"));
        }
        link
    });
    Ok(html(
        StatusCode::OK,
        &ListView {
            statuses: STATUSES
                .iter()
                .map(|(value, key)| (*value, chrome.t(key), *value == status))
                .collect(),
            rows,
            status,
            next,
            first_page: after.is_none(),
            may_write: session.may(Action::SettlementWrite),
            operator: session.merchant().is_none(),
            may_merchants: session.may(Action::MerchantList),
            generated: q.generated.map(|g| (g, q.skipped.unwrap_or(0))),
            csrf: session.csrf.clone(),
            chrome,
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct GenerateForm {
    /// `YYYY-MM-DDTHH:MM` (a `datetime-local` input), Asia/Jakarta; empty for now.
    #[serde(default)]
    cutoff: String,
    /// Merchant ids separated by commas, spaces or lines; empty for every merchant.
    #[serde(default)]
    merchant_ids: String,
}

/// A `datetime-local` value read as Jakarta time.
fn jakarta_local(field: &'static str, value: &str) -> Result<Option<OffsetDateTime>, GatewayError> {
    crate::format::parse_jakarta_local(value)
        .map_err(|_| GatewayError::invalid(field, "is a date and time, YYYY-MM-DDTHH:MM (WIB)"))
}

pub async fn generate(
    State(state): State<AppState>,
    Posted(session, form): Posted<GenerateForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::SettlementWrite)?;
    let cutoff = jakarta_local("cutoff", &form.cutoff).map_err(|e| session.failed(e))?;
    let ids: Vec<String> = form
        .merchant_ids
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let input = GenerateInput {
        cutoff,
        merchant_ids: (!ids.is_empty()).then_some(ids),
    };
    let done = session
        .audited(
            &state,
            Action::SettlementWrite,
            "settlement_batch:generate".to_owned(),
            state.settlement.generate(input, &session.principal.actor),
            |g| {
                serde_json::json!({
                    "generation_id": g.generation_id,
                    "batches": g.batches.iter().map(|b| &b.id).collect::<Vec<_>>(),
                    "skipped": g.skipped,
                })
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!(
        "/settlement?generated={}&skipped={}",
        done.batches.len(),
        done.skipped.len()
    )))
}

#[derive(Debug)]
pub struct ItemRow {
    pub ledger_entry_id: String,
    pub entry_type: &'static str,
    pub amount: i64,
    pub live: bool,
    pub transaction_id: Option<String>,
    pub order_ref: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug)]
pub struct EventRow {
    pub event: String,
    pub from_status: String,
    pub to_status: String,
    pub detail: String,
    pub actor: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug)]
pub struct AdjustmentRow {
    pub id: String,
    pub kind: &'static str,
    pub amount: i64,
    pub reason: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
}

#[derive(Template)]
#[template(path = "settlement_batch.html")]
struct DetailView {
    chrome: Chrome,
    csrf: String,
    batch: BatchRow,
    payable_amount: i64,
    adjustment_amount: i64,
    bank_code: String,
    account_number: String,
    account_holder: String,
    payout_reference: String,
    payout_note: String,
    /// The amount paid, formatted, once paid.
    paid: Option<String>,
    paid_at: Option<String>,
    reason: String,
    reprocessed_at: Option<String>,
    generated_by: String,
    items: Vec<ItemRow>,
    items_next: Option<String>,
    items_first_page: bool,
    events: Vec<EventRow>,
    adjustments: Vec<AdjustmentRow>,
    /// Which buttons the batch's status (and the user's role) allow.
    may_close: bool,
    may_reprocess: bool,
    /// The adjustment form's type choices: value and text.
    adjustment_types: Vec<(&'static str, &'static str)>,
    bank_format: bool,
    notice: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    #[serde(default)]
    after: Option<String>,
    /// Set by the redirect after a button: which one.
    #[serde(default)]
    done: Option<String>,
}

/// The batch, if this user may see it: another merchant's is not found.
async fn visible_batch(
    state: &AppState,
    session: &Session,
    id: &str,
) -> Result<SettlementBatch, ErrorPage> {
    owns(state, &session.principal, Scope::SettlementBatch, id)
        .await
        .map_err(|e| session.failed(e))?;
    state
        .settlement
        .batch(id)
        .await
        .map_err(|e| session.failed(e))
}

pub async fn detail(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::SettlementRead)?;
    let b = visible_batch(&state, &session, &id).await?;
    let fail = |e| session.failed(e);
    let after = q.after.clone().filter(|a| !a.is_empty());
    let items = state
        .settlement
        .items(
            &id,
            &PageRequest {
                after: after.clone(),
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(fail)?;
    let events = state.settlement.events(&id).await.map_err(fail)?;
    let adjustments = state.settlement.adjustments_of(&id).await.map_err(fail)?;
    let chrome = session.chrome();
    let lang = chrome.lang;
    let whole = sees_account_numbers(session.principal.role);
    let may_write = session.may(Action::SettlementWrite);
    let notice = match q.done.as_deref() {
        Some("paid") => Some("settlement.done.paid"),
        Some("failed") => Some("settlement.done.failed"),
        Some("cancelled") => Some("settlement.done.cancelled"),
        Some("reprocessed") => Some("settlement.done.reprocessed"),
        Some("adjusted") => Some("adjust.done"),
        _ => None,
    };
    let view = DetailView {
        batch: BatchRow::new(&b, &chrome),
        payable_amount: b.payable_amount,
        adjustment_amount: b.adjustment_amount,
        account_number: if whole {
            b.account_number.clone()
        } else {
            mask_account_number(&b.account_number)
        },
        bank_code: b.bank_code.clone(),
        account_holder: b.account_holder.clone(),
        payout_reference: b.payout_reference.clone().unwrap_or_default(),
        payout_note: b.payout_note.clone().unwrap_or_default(),
        paid: b.paid_amount.map(crate::format::rupiah),
        paid_at: b.paid_at.map(|at| crate::format::jakarta(at, lang)),
        reason: b.reason.clone().unwrap_or_default(),
        reprocessed_at: b.reprocessed_at.map(|at| crate::format::jakarta(at, lang)),
        generated_by: b.generated_by.clone(),
        items: items
            .items
            .into_iter()
            .map(|i| ItemRow {
                ledger_entry_id: i.ledger_entry_id,
                entry_type: i.entry_type.as_str(),
                amount: i.amount,
                live: i.live,
                transaction_id: i.transaction_id,
                order_ref: i.order_ref.unwrap_or_default(),
                created_at: i.created_at,
            })
            .collect(),
        items_next: items
            .next_after
            .map(|after| format!("/settlement/{id}?after={after}")),
        items_first_page: after.is_none(),
        events: events
            .into_iter()
            .map(|e| EventRow {
                event: e.event,
                from_status: e.from_status.unwrap_or_default(),
                to_status: e.to_status,
                detail: e.detail.unwrap_or_default(),
                actor: e.actor,
                created_at: e.created_at,
            })
            .collect(),
        adjustments: adjustments
            .into_iter()
            .map(|a| AdjustmentRow {
                id: a.id,
                kind: a.adjustment_type.as_str(),
                amount: a.amount,
                reason: a.reason,
                created_by: a.created_by,
                created_at: a.created_at,
            })
            .collect(),
        may_close: may_write && b.status == BatchStatus::Pending,
        may_reprocess: may_write
            && matches!(b.status, BatchStatus::Failed | BatchStatus::Cancelled)
            && b.reprocessed_at.is_none(),
        adjustment_types: ADJUSTMENT_TYPES[1..]
            .iter()
            .map(|(value, key)| (*value, chrome.t(key)))
            .collect(),
        bank_format: whole,
        notice,
        csrf: session.csrf.clone(),
        chrome,
    };
    Ok(html(StatusCode::OK, &view))
}

#[derive(Debug, Deserialize)]
pub struct MarkPaidForm {
    #[serde(default)]
    payout_reference: String,
    #[serde(default)]
    note: String,
}

#[derive(Debug, Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    reason: String,
}

/// The audit row's `after` of a batch a button changed.
fn batch_after(b: &SettlementBatch) -> serde_json::Value {
    serde_json::json!({
        "id": b.id,
        "status": b.status.as_str(),
        "payout_reference": b.payout_reference,
        "reason": b.reason,
        "reprocessed": b.reprocessed_at.is_some(),
    })
}

pub async fn mark_paid(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<MarkPaidForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::SettlementWrite)?;
    visible_batch(&state, &session, &id).await?;
    let note = Some(form.note.trim()).filter(|n| !n.is_empty());
    session
        .audited(
            &state,
            Action::SettlementWrite,
            format!("settlement_batch:{id}"),
            state
                .settlement
                .mark_paid(&id, &form.payout_reference, note, &session.principal.actor),
            batch_after,
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/settlement/{id}?done=paid")))
}

async fn close(
    state: AppState,
    id: String,
    session: Session,
    form: ReasonForm,
    to: BatchStatus,
) -> Result<Response, ErrorPage> {
    session.require(Action::SettlementWrite)?;
    visible_batch(&state, &session, &id).await?;
    session
        .audited(
            &state,
            Action::SettlementWrite,
            format!("settlement_batch:{id}"),
            state
                .settlement
                .close(&id, to, &form.reason, &session.principal.actor),
            batch_after,
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/settlement/{id}?done={}", to.as_str())))
}

pub async fn mark_failed(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<ReasonForm>,
) -> Result<Response, ErrorPage> {
    close(state, id, session, form, BatchStatus::Failed).await
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<ReasonForm>,
) -> Result<Response, ErrorPage> {
    close(state, id, session, form, BatchStatus::Cancelled).await
}

#[derive(Template)]
#[template(path = "settlement_reprocess.html")]
struct ReprocessView {
    chrome: Chrome,
    csrf: String,
    batch: BatchRow,
}

/// The confirm page of a reprocess: it cannot be undone, and it happens once per batch.
pub async fn reprocess_confirm(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, ErrorPage> {
    session.require(Action::SettlementWrite)?;
    let b = visible_batch(&state, &session, &id).await?;
    let chrome = session.chrome();
    Ok(html(
        StatusCode::OK,
        &ReprocessView {
            batch: BatchRow::new(&b, &chrome),
            csrf: session.csrf.clone(),
            chrome,
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

pub async fn reprocess(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, _): Posted<Empty>,
) -> Result<Response, ErrorPage> {
    session.require(Action::SettlementWrite)?;
    visible_batch(&state, &session, &id).await?;
    session
        .audited(
            &state,
            Action::SettlementWrite,
            format!("settlement_batch:{id}"),
            state.settlement.reprocess(&id, &session.principal.actor),
            batch_after,
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/settlement/{id}?done=reprocessed")))
}

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
}

/// The batch's payout report, streamed as a CSV attachment (the API's `export.csv`):
/// `standard` (one row per entry) for whoever may read the batch, `bank_generic` (whole
/// account numbers) only for the roles that see them.
pub async fn export(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::SettlementRead)?;
    visible_batch(&state, &session, &id).await?;
    let format = ReportFormat::parse(q.format.as_deref()).map_err(|e| session.failed(e))?;
    if format == ReportFormat::BankGeneric && !sees_account_numbers(session.principal.role) {
        return Err(session.problem(Problem::Forbidden));
    }
    let report = state
        .settlement
        .report(&id, format)
        .await
        .map_err(|e| session.failed(e))?;
    Ok(gema_admin_api::routes::settlement::payout_report_response(
        &id, format, report,
    ))
}

/// The adjustment types: value and text key (the first is the list filter's "all").
pub const ADJUSTMENT_TYPES: [(&str, &str); 6] = [
    ("", "health.all"),
    ("hold", "adjust.type.hold"),
    ("release", "adjust.type.release"),
    ("fee_correction", "adjust.type.fee_correction"),
    ("chargeback", "adjust.type.chargeback"),
    ("manual", "adjust.type.manual"),
];

/// A signed whole number of rupiah as a form gives it: `-25000`, `+25000`, `25.000` (dots
/// between thousands, as Indonesians write it); never a fraction.
pub fn parse_rupiah_input(text: &str) -> Result<i64, GatewayError> {
    parse_signed_rupiah("amount", text).map_err(|_| {
        GatewayError::invalid(
            "amount",
            "is a whole number of rupiah, negative to take money out of the payout",
        )
    })
}

#[derive(Debug, Deserialize)]
pub struct AdjustForm {
    #[serde(default)]
    adjustment_type: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
}

/// `POST /settlement/{id}/adjustments`: an adjustment to a pending batch (the gateway
/// checks the sign its type takes, and that the batch is pending), audited.
pub async fn adjust(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<AdjustForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::SettlementWrite)?;
    visible_batch(&state, &session, &id).await?;
    let amount = parse_rupiah_input(&form.amount).map_err(|e| session.failed(e))?;
    session
        .audited(
            &state,
            Action::SettlementWrite,
            format!("settlement_batch:{id}"),
            state.settlement.adjust(
                &id,
                AdjustmentInput {
                    adjustment_type: form.adjustment_type.trim().to_owned(),
                    amount,
                    reason: form.reason,
                },
                &session.principal.actor,
            ),
            |(a, b)| {
                serde_json::json!({
                    "adjustment": {
                        "id": a.id,
                        "adjustment_type": a.adjustment_type.as_str(),
                        "amount": a.amount,
                        "reason": a.reason,
                    },
                    "batch": batch_after(b),
                })
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/settlement/{id}?done=adjusted")))
}

#[derive(Debug)]
pub struct AdjustmentListRow {
    pub id: String,
    pub batch_id: String,
    pub merchant_id: String,
    pub kind: &'static str,
    pub kind_text: &'static str,
    pub amount: i64,
    pub reason: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Deserialize)]
pub struct AdjustmentsQuery {
    #[serde(default)]
    adjustment_type: Option<String>,
    /// Operators only; a merchant user's list is their own merchant's.
    #[serde(default)]
    merchant_id: Option<String>,
    /// `datetime-local` values, Asia/Jakarta: created at or after `from`, before `to`.
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "settlement_adjustments.html")]
struct AdjustmentsView {
    chrome: Chrome,
    rows: Vec<AdjustmentListRow>,
    types: Vec<(&'static str, &'static str, bool)>,
    merchant_id: String,
    from: String,
    to: String,
    /// The first page's link with the filters shown.
    first: String,
    next: Option<String>,
    first_page: bool,
    operator: bool,
}

/// `/settlement/adjustments` with these filters (empty ones left out) and `extra` pairs.
fn adjustments_link(filters: &[(&str, &str)], extra: &[(&str, &str)]) -> String {
    let pairs: Vec<(&str, &str)> = filters
        .iter()
        .chain(extra)
        .filter(|(_, v)| !v.is_empty())
        .copied()
        .collect();
    match serde_urlencoded::to_string(&pairs) {
        Ok(query) if !query.is_empty() => format!("/settlement/adjustments?{query}"),
        _ => "/settlement/adjustments".to_owned(),
    }
}

/// `GET /settlement/adjustments`: every adjustment, oldest first, a page at a time, by
/// type, merchant and creation time as the API's list takes them (a merchant user's own
/// merchant's only).
pub async fn adjustments(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AdjustmentsQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::SettlementRead)?;
    let kind = q.adjustment_type.unwrap_or_default();
    session.filter(
        "adjustment_type",
        &kind,
        gema_store::AdjustmentType::parse,
        "hold, release, fee_correction, chargeback, manual",
    )?;
    let merchant_text = q.merchant_id.unwrap_or_default().trim().to_owned();
    let merchant_id = match session.merchant() {
        Some(mine) => Some(mine.to_owned()),
        None => Some(merchant_text.clone()).filter(|m| !m.is_empty()),
    };
    let from_text = q.from.unwrap_or_default();
    let to_text = q.to.unwrap_or_default();
    let from = jakarta_local("from", &from_text).map_err(|e| session.failed(e))?;
    let to = jakarta_local("to", &to_text).map_err(|e| session.failed(e))?;
    let after = q.after.filter(|a| !a.is_empty());
    let page = state
        .settlement
        .adjustments(
            AdjustmentQuery {
                merchant_id,
                adjustment_type: Some(kind.clone()).filter(|k| !k.is_empty()),
                from,
                to,
            },
            &PageRequest {
                after: after.clone(),
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    let chrome = session.chrome();
    let text_of = |value: &str| {
        ADJUSTMENT_TYPES
            .iter()
            .find(|(v, _)| *v == value)
            .map_or("?", |(_, key)| chrome.t(key))
    };
    let rows = page
        .items
        .into_iter()
        .map(|a| AdjustmentListRow {
            kind: a.adjustment_type.as_str(),
            kind_text: text_of(a.adjustment_type.as_str()),
            id: a.id,
            batch_id: a.batch_id,
            merchant_id: a.merchant_id,
            amount: a.amount,
            reason: a.reason,
            created_by: a.created_by,
            created_at: a.created_at,
        })
        .collect();
    let operator = session.merchant().is_none();
    let merchant_shown = if operator {
        merchant_text
    } else {
        String::new()
    };
    let filters = [
        ("adjustment_type", kind.as_str()),
        ("merchant_id", merchant_shown.as_str()),
        ("from", from_text.as_str()),
        ("to", to_text.as_str()),
    ];
    let next = page
        .next_after
        .map(|after| adjustments_link(&filters, &[("after", after.as_str())]));
    let first = adjustments_link(&filters, &[]);
    Ok(html(
        StatusCode::OK,
        &AdjustmentsView {
            rows,
            types: ADJUSTMENT_TYPES
                .iter()
                .map(|(value, key)| (*value, chrome.t(key), *value == kind))
                .collect(),
            merchant_id: merchant_shown,
            from: from_text,
            to: to_text,
            first,
            next,
            first_page: after.is_none(),
            operator,
            chrome,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adjustments_pages_keep_their_filters() {
        let filters = [
            ("adjustment_type", "hold"),
            ("merchant_id", ""),
            ("from", "2026-12-05T07:00"),
        ];
        assert_eq!(
            adjustments_link(&filters, &[("after", "sad_01")]),
            "/settlement/adjustments?adjustment_type=hold&from=2026-12-05T07%3A00&after=sad_01"
        );
        assert_eq!(
            adjustments_link(&[("to", "")], &[]),
            "/settlement/adjustments"
        );
    }

    #[test]
    fn an_adjustment_amount_is_signed_whole_rupiah() {
        assert_eq!(parse_rupiah_input("-25000").unwrap(), -25_000);
        assert_eq!(parse_rupiah_input(" +1.500 ").unwrap(), 1_500);
        assert_eq!(parse_rupiah_input("-1.250.000").unwrap(), -1_250_000);
        assert_eq!(parse_rupiah_input("7").unwrap(), 7);
        for bad in [
            "",
            "-",
            "25000.50",
            "25,000",
            "1.25",
            "1..000",
            "--5",
            "9223372036854775808",
        ] {
            match parse_rupiah_input(bad) {
                Err(GatewayError::Invalid { field, .. }) => assert_eq!(field, "amount", "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_cutoff_is_read_as_jakarta_time() {
        let at = jakarta_local("cutoff", "2026-12-05T07:30").expect("valid");
        assert_eq!(at, Some(time::macros::datetime!(2026-12-05 00:30 UTC)));
        assert_eq!(jakarta_local("cutoff", " ").expect("empty"), None);
        assert!(jakarta_local("cutoff", "yesterday").is_err());
    }
}
