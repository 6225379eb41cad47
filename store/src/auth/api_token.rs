//! API tokens with roles (stored as hashes), and their queries.

use crate::Db;
use crate::db::{Exec, query, query_as};
use crate::{Page, PageRequest, StoreError, StoreResult};

/// An API token for a machine: named, with a role. Only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: String,
    pub merchant_id: Option<String>,
    pub created_at: time::OffsetDateTime,
    pub last_used_at: Option<time::OffsetDateTime>,
    pub revoked_at: Option<time::OffsetDateTime>,
}

pub(crate) const API_TOKEN_COLUMNS: &str =
    "id, name, role, merchant_id, created_at, last_used_at, revoked_at";

pub(crate) async fn create_api_token(
    db: &Db,
    name: &str,
    role: &str,
    merchant_id: Option<&str>,
    token_hash: &str,
) -> StoreResult<ApiToken> {
    let mut tx = db.begin_write().await?;
    let taken: Option<(String,)> =
        query_as("SELECT id FROM admin_tokens WHERE name = $1 AND revoked_at IS NULL")
            .bind(name)
            .fetch_optional(&mut tx)
            .await?;
    if taken.is_some() {
        return Err(StoreError::conflict(
            "name_taken",
            Some("name"),
            "an active token has this name",
        ));
    }
    if let Some(merchant_id) = merchant_id {
        let found: Option<(String,)> = query_as("SELECT id FROM merchants WHERE id = $1")
            .bind(merchant_id)
            .fetch_optional(&mut tx)
            .await?;
        if found.is_none() {
            return Err(StoreError::not_found("merchant", merchant_id));
        }
    }
    let token = query_as::<ApiToken>(
        [
            "INSERT INTO admin_tokens (id, name, role, merchant_id, token_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
            crate::auth::api_token::API_TOKEN_COLUMNS,
        ]
        .concat(),
    )
    .bind(crate::sql::new_id("tok"))
    .bind(name)
    .bind(role)
    .bind(merchant_id)
    .bind(token_hash)
    .bind(crate::sql::now())
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(token)
}

pub(crate) async fn list_api_tokens(db: &Db, page: &PageRequest) -> StoreResult<Page<ApiToken>> {
    let rows = query_as::<ApiToken>(
        [
            "SELECT ",
            crate::auth::api_token::API_TOKEN_COLUMNS,
            " FROM admin_tokens WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
        ]
        .concat(),
    )
    .bind(page.after.as_deref())
    .bind(crate::sql::fetch_limit(page.limit))
    .fetch_all(db.read())
    .await?;
    Ok(crate::sql::paginate(rows, page.limit, |t| &t.id))
}

pub(crate) async fn use_api_token(db: &Db, token_hash: &str) -> StoreResult<Option<ApiToken>> {
    let token = query_as::<ApiToken>(
        [
            "SELECT ",
            crate::auth::api_token::API_TOKEN_COLUMNS,
            " FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        ]
        .concat(),
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

pub(crate) async fn revoke_api_token(db: &Db, id: &str) -> StoreResult<ApiToken> {
    let mut tx = db.begin_write().await?;
    query("UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(crate::sql::now())
        .bind(id)
        .execute(&mut tx)
        .await?;
    let token = query_as::<ApiToken>(
        [
            "SELECT ",
            crate::auth::api_token::API_TOKEN_COLUMNS,
            " FROM admin_tokens WHERE id = $1",
        ]
        .concat(),
    )
    .bind(id)
    .fetch_optional(&mut tx)
    .await?
    .ok_or_else(|| StoreError::not_found("api_token", id))?;
    tx.commit().await?;
    Ok(token)
}

/// Records a token's use at most once a minute (a write per request would make every
/// authenticated read an fsync); returns its last-used time.
async fn touch_token(
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
