//! Login sessions as refresh-token families: each refresh rotates the session; reusing a
//! rotated refresh token revokes its whole family. And their queries.

use super::revoke_sessions_where;
use crate::Db;
use crate::User;
use crate::db::{Exec, query, query_as};
use crate::{AuthStore, StoreError, StoreResult};

/// One issued access/refresh token pair (hashes only).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuthSession {
    pub id: String,
    pub family_id: String,
    pub user_id: String,
    pub access_expires_ms: i64,
    pub refresh_expires_ms: i64,
    pub created_ms: i64,
    pub rotated_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    pub user_agent: Option<String>,
    pub source: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewAuthSession {
    pub user_id: String,
    pub access_hash: String,
    pub refresh_hash: String,
    pub access_expires_ms: i64,
    pub refresh_expires_ms: i64,
    pub user_agent: Option<String>,
    pub source: Option<String>,
    pub now_ms: i64,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The old pair is retired and this new one (same family) replaces it.
    Rotated {
        session: Box<AuthSession>,
        user: Box<User>,
    },
    /// The token was already rotated: someone replayed it. The whole family is now revoked.
    Reused { family_id: String, user_id: String },
    /// Unknown, expired or revoked.
    Invalid,
}

pub(crate) const SESSION_COLUMNS: &str = "id, family_id, user_id, access_expires_ms, refresh_expires_ms, created_ms, rotated_ms, \
 revoked_ms, user_agent, source";

/// Ends every live session of a refresh-token family (logout, or a reused token).
pub(crate) async fn revoke_session_family(
    conn: &mut Exec<'_>,
    family_id: &str,
    now_ms: i64,
) -> StoreResult<()> {
    revoke_sessions_where(conn, "family_id", family_id, now_ms).await
}

pub(crate) async fn insert_session(
    conn: &mut Exec<'_>,
    family_id: &str,
    new: &NewAuthSession,
) -> StoreResult<AuthSession> {
    Ok(query_as::<AuthSession>(
        [
            "INSERT INTO auth_sessions (id, family_id, user_id, access_hash, refresh_hash, \
         access_expires_ms, refresh_expires_ms, created_ms, user_agent, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ",
            crate::auth::session::SESSION_COLUMNS,
        ]
        .concat(),
    )
    .bind(crate::sql::new_id("ses"))
    .bind(family_id)
    .bind(&new.user_id)
    .bind(&new.access_hash)
    .bind(&new.refresh_hash)
    .bind(new.access_expires_ms)
    .bind(new.refresh_expires_ms)
    .bind(new.now_ms)
    .bind(new.user_agent.as_deref())
    .bind(new.source.as_deref())
    .fetch_one(conn)
    .await?)
}

pub(crate) async fn create_session(db: &Db, new: NewAuthSession) -> StoreResult<AuthSession> {
    let mut tx = db.begin_write().await?;
    let session = insert_session(&mut tx.exec(), &crate::sql::new_id("fam"), &new).await?;
    tx.commit().await?;
    Ok(session)
}

pub(crate) async fn session_by_access(
    db: &Db,
    access_hash: &str,
    now_ms: i64,
) -> StoreResult<Option<(AuthSession, User)>> {
    let session = query_as::<AuthSession>(
        [
            "SELECT ",
            crate::auth::session::SESSION_COLUMNS,
            " FROM auth_sessions WHERE access_hash = $1 AND revoked_ms IS NULL \
         AND rotated_ms IS NULL AND access_expires_ms > $2",
        ]
        .concat(),
    )
    .bind(access_hash)
    .bind(now_ms)
    .fetch_optional(db.read())
    .await?;
    let Some(session) = session else {
        return Ok(None);
    };
    let user = AuthStore::get_user(db, &session.user_id).await?;
    if user.disabled_ms.is_some() {
        return Ok(None);
    }
    Ok(Some((session, user)))
}

pub(crate) async fn refresh_session(
    db: &Db,
    refresh_hash: &str,
    next: NewAuthSession,
) -> StoreResult<RefreshOutcome> {
    let mut tx = db.begin_write().await?;
    let old = query_as::<AuthSession>(
        [
            "SELECT ",
            crate::auth::session::SESSION_COLUMNS,
            " FROM auth_sessions WHERE refresh_hash = $1 ",
            db.row_lock(),
        ]
        .concat(),
    )
    .bind(refresh_hash)
    .fetch_optional(&mut tx)
    .await?;
    let Some(old) = old else {
        return Ok(RefreshOutcome::Invalid);
    };
    if old.revoked_ms.is_some() {
        return Ok(RefreshOutcome::Invalid);
    }
    if old.rotated_ms.is_some() {
        revoke_session_family(&mut tx.exec(), &old.family_id, next.now_ms).await?;
        tx.commit().await?;
        return Ok(RefreshOutcome::Reused {
            family_id: old.family_id,
            user_id: old.user_id,
        });
    }
    if old.refresh_expires_ms <= next.now_ms {
        return Ok(RefreshOutcome::Invalid);
    }
    let user: User = query_as::<crate::auth::user::UserRow>(&format!(
        "SELECT {} FROM users WHERE id = $1",
        crate::auth::user::USER_COLUMNS
    ))
    .bind(&old.user_id)
    .fetch_one(&mut tx)
    .await?
    .try_into()?;
    if user.disabled_ms.is_some() {
        return Ok(RefreshOutcome::Invalid);
    }
    query("UPDATE auth_sessions SET rotated_ms = $1 WHERE id = $2")
        .bind(next.now_ms)
        .bind(&old.id)
        .execute(&mut tx)
        .await?;
    let next = NewAuthSession {
        user_id: old.user_id.clone(),
        ..next
    };
    let session = insert_session(&mut tx.exec(), &old.family_id, &next).await?;
    tx.commit().await?;
    Ok(RefreshOutcome::Rotated {
        session: Box::new(session),
        user: Box::new(user),
    })
}

pub(crate) async fn revoke_session(
    db: &Db,
    user_id: &str,
    session_id: &str,
    now_ms: i64,
) -> StoreResult<()> {
    // Revoking a session revokes its family: the pair it was rotated from is
    // already dead, and the pair it may yet be rotated into must not live.
    let mut tx = db.begin_write().await?;
    let family: Option<(String,)> =
        query_as("SELECT family_id FROM auth_sessions WHERE id = $1 AND user_id = $2")
            .bind(session_id)
            .bind(user_id)
            .fetch_optional(&mut tx)
            .await?;
    let Some((family,)) = family else {
        return Err(StoreError::not_found("session", session_id));
    };
    revoke_session_family(&mut tx.exec(), &family, now_ms).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn extend_session(
    db: &Db,
    session_id: &str,
    until_ms: i64,
    now_ms: i64,
) -> StoreResult<()> {
    query(
        "UPDATE auth_sessions SET access_expires_ms = \
         CASE WHEN $2 < refresh_expires_ms THEN $2 ELSE refresh_expires_ms END \
         WHERE id = $1 AND revoked_ms IS NULL AND rotated_ms IS NULL \
         AND access_expires_ms > $3 AND access_expires_ms < $4",
    )
    .bind(session_id)
    .bind(until_ms)
    .bind(now_ms)
    .bind(until_ms - 60_000)
    .execute(&mut db.write_conn().await?)
    .await?;
    Ok(())
}

pub(crate) async fn list_sessions(
    db: &Db,
    user_id: &str,
    now_ms: i64,
) -> StoreResult<Vec<AuthSession>> {
    Ok(query_as::<AuthSession>(
        [
            "SELECT ",
            crate::auth::session::SESSION_COLUMNS,
            " FROM auth_sessions WHERE user_id = $1 AND revoked_ms IS NULL \
         AND rotated_ms IS NULL AND refresh_expires_ms > $2 ORDER BY id",
        ]
        .concat(),
    )
    .bind(user_id)
    .bind(now_ms)
    .fetch_all(db.read())
    .await?)
}
