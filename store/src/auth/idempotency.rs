//! Idempotency keys: a request claimed once, its response replayed, the key expiring;
//! and their queries.

use crate::Db;
use crate::db::{query, query_as};
use crate::{StoreError, StoreResult};

/// What a write with an `Idempotency-Key` should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use of the key: run the request, then [`crate::AuthStore::finish_idempotency`].
    Started,
    /// Done before: answer with this.
    Replay { status: u16, body: Option<String> },
    /// The first request with this key is still running.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

pub(crate) async fn begin_idempotency(
    db: &Db,
    actor: &str,
    key: &str,
    request_hash: &str,
    now_ms: i64,
    expired_before_ms: i64,
) -> StoreResult<IdempotencyBegin> {
    let mut tx = db.begin_write().await?;
    query("DELETE FROM idempotency_keys WHERE created_ms < $1")
        .bind(expired_before_ms)
        .execute(&mut tx)
        .await?;
    let found: Option<(String, Option<i64>, Option<String>)> = query_as(
        [
            "SELECT request_hash, status, body FROM idempotency_keys \
         WHERE actor = $1 AND key = $2 ",
            db.row_lock(),
        ]
        .concat(),
    )
    .bind(actor)
    .bind(key)
    .fetch_optional(&mut tx)
    .await?;
    let outcome = match found {
        None => {
            // Two PostgreSQL nodes may race here: the primary key lets one win,
            // and the loser reports the key as in progress.
            let inserted = query(
                "INSERT INTO idempotency_keys (actor, key, request_hash, created_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(actor)
            .bind(key)
            .bind(request_hash)
            .bind(now_ms)
            .execute(&mut tx)
            .await?;
            if inserted == 1 {
                IdempotencyBegin::Started
            } else {
                IdempotencyBegin::InProgress
            }
        }
        Some((hash, _, _)) if hash != request_hash => IdempotencyBegin::Mismatch,
        Some((_, None, _)) => IdempotencyBegin::InProgress,
        Some((_, Some(status), body)) => IdempotencyBegin::Replay {
            status: u16::try_from(status)
                .map_err(|_| StoreError::Corrupt(format!("idempotency status {status}")))?,
            body,
        },
    };
    tx.commit().await?;
    Ok(outcome)
}

pub(crate) async fn finish_idempotency(
    db: &Db,
    actor: &str,
    key: &str,
    status: u16,
    body: Option<&str>,
) -> StoreResult<()> {
    query(
        "UPDATE idempotency_keys SET status = $1, body = $2 \
         WHERE actor = $3 AND key = $4",
    )
    .bind(i64::from(status))
    .bind(body)
    .bind(actor)
    .bind(key)
    .execute(&mut db.write_conn().await?)
    .await?;
    Ok(())
}

pub(crate) async fn abandon_idempotency(db: &Db, actor: &str, key: &str) -> StoreResult<()> {
    query("DELETE FROM idempotency_keys WHERE actor = $1 AND key = $2 AND status IS NULL")
        .bind(actor)
        .bind(key)
        .execute(&mut db.write_conn().await?)
        .await?;
    Ok(())
}
