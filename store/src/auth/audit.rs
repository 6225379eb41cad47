//! The audit log: who did what, filtered and paged; and its queries.

use crate::Db;
use crate::db::query_as;
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
    .fetch_one(&mut db.write_conn().await?)
    .await?)
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
