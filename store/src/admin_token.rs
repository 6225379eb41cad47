//! Admin tokens: the operator's bearer tokens (stored as hashes), and their queries.

use time::OffsetDateTime;

use crate::Db;
use crate::StoreResult;
use crate::db::{Exec, query, query_as};

/// An API token for the admin API. Only the hash of the token is stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AdminToken {
    pub id: String,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

pub(crate) async fn count_active_admin_tokens(db: &Db) -> StoreResult<i64> {
    let (count,): (i64,) = query_as("SELECT COUNT(*) FROM admin_tokens WHERE revoked_at IS NULL")
        .fetch_one(db.read())
        .await?;
    Ok(count)
}

pub(crate) async fn create_admin_token(
    db: &Db,
    name: &str,
    token_hash: &str,
) -> StoreResult<AdminToken> {
    let mut tx = db.begin_write().await?;
    let token = query_as::<AdminToken>(
        "INSERT INTO admin_tokens (id, name, token_hash, created_at) \
         VALUES ($1, $2, $3, $4) \
         RETURNING id, name, created_at, last_used_at, revoked_at",
    )
    .bind(crate::sql::new_id("tok"))
    .bind(name)
    .bind(token_hash)
    .bind(crate::sql::now())
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(token)
}

pub(crate) async fn use_admin_token(db: &Db, token_hash: &str) -> StoreResult<Option<AdminToken>> {
    let token = query_as::<AdminToken>(
        "SELECT id, name, created_at, last_used_at, revoked_at FROM admin_tokens \
         WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(db.read())
    .await?;
    let Some(mut token) = token else {
        return Ok(None);
    };
    token.last_used_at = touch_token(
        &mut db.write_conn().await?.exec(),
        &token.id,
        token.last_used_at,
    )
    .await?;
    Ok(Some(token))
}

pub(crate) async fn revoke_admin_tokens_named(db: &Db, name: &str) -> StoreResult<u64> {
    let mut tx = db.begin_write().await?;
    let done = query(
        "UPDATE admin_tokens SET revoked_at = $1 \
         WHERE name = $2 AND revoked_at IS NULL",
    )
    .bind(crate::sql::now())
    .bind(name)
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(done)
}

/// Records an admin or API token's use at most once a minute (a write per request
/// would make every authenticated read an fsync); returns its last-used time.
pub(crate) async fn touch_token(
    write: &mut Exec<'_>,
    id: &str,
    last_used_at: Option<time::OffsetDateTime>,
) -> StoreResult<Option<time::OffsetDateTime>> {
    let now = crate::sql::now();
    if last_used_at.is_some_and(|t| now - t <= time::Duration::minutes(1)) {
        return Ok(last_used_at);
    }
    query("UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(write)
        .await?;
    Ok(Some(now))
}
