//! Failed logins, counted per email in a window (for lockout), and their queries.

use crate::Db;
use crate::StoreResult;
use crate::db::{query, query_as};

/// Failed logins in a window, counted two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCounts {
    pub by_account: i64,
    pub by_source: i64,
}

pub(crate) async fn record_login_failure(
    db: &Db,
    email: &str,
    source: &str,
    at_ms: i64,
    forget_before_ms: i64,
) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    query("DELETE FROM login_failures WHERE at_ms < $1")
        .bind(forget_before_ms)
        .execute(&mut tx)
        .await?;
    query("INSERT INTO login_failures (id, email, source, at_ms) VALUES ($1, $2, $3, $4)")
        .bind(crate::sql::new_id("lf"))
        .bind(email)
        .bind(source)
        .bind(at_ms)
        .execute(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn login_failures(
    db: &Db,
    email: &str,
    source: &str,
    since_ms: i64,
) -> StoreResult<FailureCounts> {
    let (by_account, by_source): (i64, i64) = query_as(
        "SELECT \
         (SELECT COUNT(*) FROM login_failures WHERE email = $1 AND at_ms >= $3), \
         (SELECT COUNT(*) FROM login_failures WHERE source = $2 AND at_ms >= $3)",
    )
    .bind(email)
    .bind(source)
    .bind(since_ms)
    .fetch_one(db.read())
    .await?;
    Ok(FailureCounts {
        by_account,
        by_source,
    })
}

pub(crate) async fn clear_login_failures(db: &Db, email: &str) -> StoreResult<()> {
    query("DELETE FROM login_failures WHERE email = $1")
        .bind(email)
        .execute(&mut db.write_conn().await?)
        .await?;
    Ok(())
}
