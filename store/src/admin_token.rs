//! Admin tokens by name: the bootstrap token's issue, rotation and count. A bearer token
//! is looked up (and its use recorded) in one place only, `auth::api_token`, whatever
//! issued it.

use time::OffsetDateTime;

use crate::Db;
use crate::StoreResult;
use crate::db::{query, query_as};

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
