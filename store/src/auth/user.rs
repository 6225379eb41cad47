//! Users: people who log in (admins and merchant staff), and their queries.

use super::revoke_user_sessions;
use crate::Db;
use crate::StoreError;
use crate::db::query_as;
use crate::{Page, PageRequest, StoreResult};

string_enum!(
    /// Admin users operate the whole gateway; merchant users belong to one merchant.
    UserKind {
        Admin = "admin",
        Merchant = "merchant",
    }
);

/// A user as the rest of Gema sees it: never with its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub kind: UserKind,
    /// The role name; its meaning belongs to the gateway's permission matrix.
    pub role: String,
    pub merchant_id: Option<String>,
    pub disabled_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub kind: UserKind,
    pub role: String,
    pub merchant_id: Option<String>,
    pub password_hash: String,
    pub now_ms: i64,
}

pub(crate) const USER_COLUMNS: &str =
    "id, email, name, kind, role, merchant_id, disabled_ms, created_ms, updated_ms";

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    email: String,
    name: String,
    kind: String,
    role: String,
    merchant_id: Option<String>,
    disabled_ms: Option<i64>,
    created_ms: i64,
    updated_ms: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        Ok(User {
            kind: UserKind::try_from(row.kind).map_err(StoreError::Corrupt)?,
            id: row.id,
            email: row.email,
            name: row.name,
            role: row.role,
            merchant_id: row.merchant_id,
            disabled_ms: row.disabled_ms,
            created_ms: row.created_ms,
            updated_ms: row.updated_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserLoginRow {
    #[sqlx(flatten)]
    pub(crate) user: UserRow,
    pub(crate) password_hash: String,
}

pub(crate) async fn create_user(db: &Db, new: NewUser) -> StoreResult<User> {
    let mut tx = db.begin_write().await?;
    let taken: Option<(String,)> = query_as("SELECT id FROM users WHERE email = $1")
        .bind(&new.email)
        .fetch_optional(&mut tx)
        .await?;
    if taken.is_some() {
        return Err(StoreError::conflict(
            "email_taken",
            Some("email"),
            "a user with this e-mail already exists",
        ));
    }
    if let Some(merchant_id) = &new.merchant_id {
        let found: Option<(String,)> = query_as("SELECT id FROM merchants WHERE id = $1")
            .bind(merchant_id)
            .fetch_optional(&mut tx)
            .await?;
        if found.is_none() {
            return Err(StoreError::not_found("merchant", merchant_id));
        }
    }
    let row = query_as::<crate::auth::user::UserRow>(&format!(
        "INSERT INTO users (id, email, name, kind, role, merchant_id, password_hash, \
         created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
         RETURNING {}",
        crate::auth::user::USER_COLUMNS
    ))
    .bind(crate::sql::new_id("usr"))
    .bind(&new.email)
    .bind(&new.name)
    .bind(new.kind.as_str())
    .bind(&new.role)
    .bind(new.merchant_id.as_deref())
    .bind(&new.password_hash)
    .bind(new.now_ms)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    row.try_into()
}

pub(crate) async fn get_user(db: &Db, id: &str) -> StoreResult<User> {
    query_as::<crate::auth::user::UserRow>(&format!(
        "SELECT {} FROM users WHERE id = $1",
        crate::auth::user::USER_COLUMNS
    ))
    .bind(id)
    .fetch_optional(db.read())
    .await?
    .ok_or_else(|| StoreError::not_found("user", id))?
    .try_into()
}

pub(crate) async fn user_for_login(db: &Db, email: &str) -> StoreResult<Option<(User, String)>> {
    let row = query_as::<crate::auth::user::UserLoginRow>(&format!(
        "SELECT {}, password_hash FROM users WHERE email = $1",
        crate::auth::user::USER_COLUMNS
    ))
    .bind(email)
    .fetch_optional(db.read())
    .await?;
    match row {
        None => Ok(None),
        Some(row) => Ok(Some((row.user.try_into()?, row.password_hash))),
    }
}

pub(crate) async fn list_users(db: &Db, page: &PageRequest) -> StoreResult<Page<User>> {
    let rows = query_as::<crate::auth::user::UserRow>(&format!(
        "SELECT {} FROM users WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
        crate::auth::user::USER_COLUMNS
    ))
    .bind(page.after.as_deref())
    .bind(crate::sql::fetch_limit(page.limit))
    .fetch_all(db.read())
    .await?;
    let users = rows
        .into_iter()
        .map(User::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::sql::paginate(users, page.limit, |u| &u.id))
}

pub(crate) async fn count_admin_users(db: &Db) -> StoreResult<i64> {
    let (count,): (i64,) = query_as(
        "SELECT COUNT(*) FROM users WHERE kind = 'admin' AND role = 'admin' \
         AND disabled_ms IS NULL",
    )
    .fetch_one(db.read())
    .await?;
    Ok(count)
}

pub(crate) async fn set_user_disabled(
    db: &Db,
    id: &str,
    disabled: bool,
    now_ms: i64,
) -> StoreResult<User> {
    let mut tx = db.begin_write().await?;
    let user: User = query_as::<crate::auth::user::UserRow>(&format!(
        "SELECT {} FROM users WHERE id = $1 {}",
        crate::auth::user::USER_COLUMNS,
        db.row_lock()
    ))
    .bind(id)
    .fetch_optional(&mut tx)
    .await?
    .ok_or_else(|| StoreError::not_found("user", id))?
    .try_into()?;
    if disabled
        && user.disabled_ms.is_none()
        && user.kind == UserKind::Admin
        && user.role == "admin"
    {
        // Lock every enabled admin row, so two nodes cannot each disable "another"
        // admin and leave none.
        let admins: Vec<(String,)> = query_as(
            [
                "SELECT id FROM users WHERE kind = 'admin' AND role = 'admin' \
             AND disabled_ms IS NULL ",
                db.row_lock(),
            ]
            .concat(),
        )
        .fetch_all(&mut tx)
        .await?;
        if admins.len() <= 1 {
            return Err(StoreError::conflict(
                "last_admin",
                None,
                "the last enabled admin cannot be disabled",
            ));
        }
    }
    let row = query_as::<crate::auth::user::UserRow>(&format!(
        "UPDATE users SET disabled_ms = $1, updated_ms = $2 WHERE id = $3 \
         RETURNING {}",
        crate::auth::user::USER_COLUMNS
    ))
    .bind(if disabled {
        Some(user.disabled_ms.unwrap_or(now_ms))
    } else {
        None
    })
    .bind(now_ms)
    .bind(id)
    .fetch_one(&mut tx)
    .await?;
    if disabled {
        revoke_user_sessions(&mut tx.exec(), id, now_ms).await?;
    }
    tx.commit().await?;
    row.try_into()
}

pub(crate) async fn set_user_password(
    db: &Db,
    id: &str,
    password_hash: &str,
    now_ms: i64,
) -> StoreResult<User> {
    let mut tx = db.begin_write().await?;
    let row = query_as::<crate::auth::user::UserRow>(&format!(
        "UPDATE users SET password_hash = $1, updated_ms = $2 WHERE id = $3 \
         RETURNING {}",
        crate::auth::user::USER_COLUMNS
    ))
    .bind(password_hash)
    .bind(now_ms)
    .bind(id)
    .fetch_optional(&mut tx)
    .await?
    .ok_or_else(|| StoreError::not_found("user", id))?;
    revoke_user_sessions(&mut tx.exec(), id, now_ms).await?;
    tx.commit().await?;
    row.try_into()
}
