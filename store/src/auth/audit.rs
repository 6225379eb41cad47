//! The audit log: who did what, filtered and paged; its queries; and the audit scope that
//! writes a write's row in the write's own transaction.
//!
//! # The audit scope
//!
//! A write and the audit row that records it must commit together: a write without its
//! row is the thing an audit log exists to rule out. [`audit_scope`] runs a future (an HTTP
//! handler, a CLI command) with an entry in a task-local; the first write transaction that
//! commits inside it (`Tx::commit` on a write transaction) inserts that entry, outcome
//! [`SCOPED_OUTCOME`], in the same transaction before `COMMIT`. If the insert fails the
//! transaction rolls back and the write fails with [`StoreError::Audit`]. Later
//! transactions of the same scope carry no row of their own: one row per request. The
//! caller then finalises the row ([`finish_audit`]: the real outcome and the `after`), or,
//! if nothing was committed, appends a row for the attempt.
//!
//! What it does not do by itself: follow work to another task. A task-local does not cross
//! `tokio::spawn` or a channel, so a write that another task commits on the scope's behalf
//! must be handed the scope ([`CarriedAuditScope::current`], sent along with the work, and
//! [`CarriedAuditScope::enter`] there). And a statement outside a transaction (`Db::write_conn`)
//! cannot carry the row; inside a scope with no row yet, that is a bug (asserted in debug
//! builds).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use crate::db::{Exec, query, query_as};
use crate::{Db, StoreError};
use crate::{Page, PageRequest, StoreResult};
use serde::Serialize;

/// One audit-log row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: String,
    pub at_ms: i64,
    /// `user:<id>`, `token:<name>`, `bootstrap` or, for failed logins, `email:<address>`.
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    /// `ok`, `denied`, `failed`, or the HTTP status of a write.
    pub outcome: String,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
    pub request_id: Option<String>,
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
    pub request_id: Option<String>,
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Inclusive lower bound.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound.
    pub to_ms: Option<i64>,
}

pub(crate) async fn append_audit(db: &Db, entry: NewAuditEntry) -> StoreResult<AuditEntry> {
    insert_audit(&mut db.write_conn().await?.exec(), &entry).await
}

async fn insert_audit(exec: &mut Exec<'_>, entry: &NewAuditEntry) -> StoreResult<AuditEntry> {
    Ok(query_as::<AuditEntry>(
        "INSERT INTO audit_logs (id, at_ms, actor, action, target, outcome, \
         before_json, after_json, request_id, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
    )
    .bind(crate::sql::new_id("aud"))
    .bind(entry.at_ms)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(entry.target.as_deref())
    .bind(&entry.outcome)
    .bind(entry.before_json.as_deref())
    .bind(entry.after_json.as_deref())
    .bind(entry.request_id.as_deref())
    .bind(entry.source.as_deref())
    .fetch_one(exec)
    .await?)
}

/// The outcome of a scoped audit row between its transaction's commit and
/// `AuthStore::finish_audit`; a row left with it means the write committed and the finalising
/// update did not happen.
pub const SCOPED_OUTCOME: &str = "committed";

/// One audit scope: the entry its first write transaction inserts, and that row's id once
/// the transaction has committed.
#[derive(Debug)]
struct AuditScope {
    entry: NewAuditEntry,
    written: Mutex<Option<String>>,
}

impl AuditScope {
    fn written(&self) -> Option<String> {
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

tokio::task_local! {
    static AUDIT_SCOPE: Arc<AuditScope>;
}

/// Runs `work` in an audit scope whose row is `entry` (its `outcome` is replaced by
/// [`SCOPED_OUTCOME`]): the first write transaction `work` commits, on this task, carries
/// the row. Returns `work`'s output and the id of the row, if one was committed.
pub async fn audit_scope<F: Future>(entry: NewAuditEntry, work: F) -> (F::Output, Option<String>) {
    let scope = Arc::new(AuditScope {
        entry: NewAuditEntry {
            outcome: SCOPED_OUTCOME.to_owned(),
            ..entry
        },
        written: Mutex::new(None),
    });
    let output = AUDIT_SCOPE.scope(scope.clone(), work).await;
    (output, scope.written())
}

/// The current task's audit scope, for a task that commits a write on its behalf (a
/// worker behind a channel): the row and its id are shared, so the scope's owner learns
/// of a row the other task committed.
#[derive(Debug, Clone)]
pub struct CarriedAuditScope(Arc<AuditScope>);

impl CarriedAuditScope {
    /// This task's audit scope, if it is in one.
    pub fn current() -> Option<Self> {
        AUDIT_SCOPE.try_with(|scope| Self(scope.clone())).ok()
    }

    /// Runs `work` in the carried scope: its first write transaction carries the row
    /// (unless one is already written).
    pub async fn enter<F: Future>(self, work: F) -> F::Output {
        AUDIT_SCOPE.scope(self.0, work).await
    }
}

/// A scoped row inserted in a transaction not yet committed; [`ScopedRow::committed`]
/// records it in the scope once the transaction has.
#[derive(Debug)]
pub(crate) struct ScopedRow {
    scope: Arc<AuditScope>,
    id: String,
}

impl ScopedRow {
    pub(crate) fn committed(self) {
        *self
            .scope
            .written
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(self.id);
    }
}

/// Inserts the current scope's row in the write transaction `exec` is about to commit,
/// unless there is no scope or its row is already written. A failed insert is
/// [`StoreError::Audit`] (never `Conflict`: the caller's request was fine), and the caller
/// must not commit.
pub(crate) async fn insert_scoped(exec: &mut Exec<'_>) -> StoreResult<Option<ScopedRow>> {
    let Ok(scope) = AUDIT_SCOPE.try_with(Arc::clone) else {
        return Ok(None);
    };
    if scope.written().is_some() {
        return Ok(None);
    }
    let row = insert_audit(exec, &scope.entry)
        .await
        .map_err(|err| StoreError::Audit(err.to_string()))?;
    Ok(Some(ScopedRow { scope, id: row.id }))
}

/// Whether this task is in an audit scope whose row is not written yet: a write now would
/// have no row unless it runs in a write transaction.
pub(crate) fn scope_awaits_row() -> bool {
    AUDIT_SCOPE
        .try_with(|scope| scope.written().is_none())
        .unwrap_or(false)
}

/// Sets the final outcome and `after` of a scoped row; `false` if there is no such row.
pub(crate) async fn finish_audit(
    db: &Db,
    id: &str,
    outcome: &str,
    after_json: Option<&str>,
) -> StoreResult<bool> {
    let changed = query("UPDATE audit_logs SET outcome = $1, after_json = $2 WHERE id = $3")
        .bind(outcome)
        .bind(after_json)
        .bind(id)
        .execute(&mut db.write_conn().await?)
        .await?;
    Ok(changed == 1)
}

pub(crate) async fn list_audit(
    db: &Db,
    filter: &AuditFilter,
    page: &PageRequest,
) -> StoreResult<Page<AuditEntry>> {
    let rows = query_as::<AuditEntry>(
        "SELECT * FROM audit_logs WHERE ($1 IS NULL OR id > $1) \
         AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR action = $3) \
         AND ($4 IS NULL OR target = $4) AND ($5 IS NULL OR at_ms >= $5) \
         AND ($6 IS NULL OR at_ms < $6) ORDER BY id LIMIT $7",
    )
    .bind(page.after.as_deref())
    .bind(filter.actor.as_deref())
    .bind(filter.action.as_deref())
    .bind(filter.target.as_deref())
    .bind(filter.from_ms)
    .bind(filter.to_ms)
    .bind(crate::sql::fetch_limit(page.limit))
    .fetch_all(db.read())
    .await?;
    Ok(crate::sql::paginate(rows, page.limit, |e| &e.id))
}
