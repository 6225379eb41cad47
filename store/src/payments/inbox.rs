//! The payment inbox: every provider request as received, with what became of it.

use crate::Db;
use crate::StoreResult;
use crate::db::{Exec, query};
use time::OffsetDateTime;

/// A provider request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub provider: String,
    pub received_at: OffsetDateTime,
    /// The request headers as a JSON object (secrets such as tokens removed by the caller).
    pub headers: String,
    pub body: Vec<u8>,
}

/// Keeps a provider request exactly as received; returns its id.
pub(crate) async fn insert_inbox(
    conn: &mut Exec<'_>,
    entry: &InboxEntry,
    outcome: &str,
    detail: Option<&str>,
) -> StoreResult<String> {
    let id = crate::sql::new_id("inb");
    query(
        "INSERT INTO payment_inbox \
         (id, provider, received_at, headers, body, outcome, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&entry.provider)
    .bind(entry.received_at)
    .bind(&entry.headers)
    .bind(&entry.body)
    .bind(outcome)
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

pub(crate) async fn record_inbox(
    db: &Db,
    entry: InboxEntry,
    outcome: &str,
    detail: Option<&str>,
) -> StoreResult<String> {
    let mut conn = db.write_conn().await?;
    insert_inbox(&mut conn.exec(), &entry, outcome, detail).await
}
