//! [`crate::AuthStore`], implemented once on [`Db`] for both backends (see [`crate::sql`]
//! for the conventions).

use crate::db::{Db, Exec, query, query_as};

use crate::StoreError;
use crate::auth::{User, UserKind};

pub(crate) const USER_COLUMNS: &str =
    "id, email, name, kind, role, merchant_id, disabled_ms, created_ms, updated_ms";

pub(crate) const API_TOKEN_COLUMNS: &str =
    "id, name, role, merchant_id, created_at, last_used_at, revoked_at";

pub(crate) const SESSION_COLUMNS: &str = "id, family_id, user_id, access_expires_ms, refresh_expires_ms, created_ms, rotated_ms, \
 revoked_ms, user_agent, source";

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

#[async_trait::async_trait]
impl crate::AuthStore for Db {
    async fn create_user(&self, new: crate::NewUser) -> crate::StoreResult<crate::User> {
        let mut tx = self.begin_write().await?;
        let taken: Option<(String,)> = query_as("SELECT id FROM users WHERE email = $1")
            .bind(&new.email)
            .fetch_optional(&mut tx)
            .await?;
        if taken.is_some() {
            return Err(crate::StoreError::conflict(
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
                return Err(crate::StoreError::not_found("merchant", merchant_id));
            }
        }
        let row = query_as::<crate::sql_auth::UserRow>(&format!(
            "INSERT INTO users (id, email, name, kind, role, merchant_id, password_hash, \
             created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             RETURNING {}",
            crate::sql_auth::USER_COLUMNS
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

    async fn get_user(&self, id: &str) -> crate::StoreResult<crate::User> {
        query_as::<crate::sql_auth::UserRow>(&format!(
            "SELECT {} FROM users WHERE id = $1",
            crate::sql_auth::USER_COLUMNS
        ))
        .bind(id)
        .fetch_optional(self.read())
        .await?
        .ok_or_else(|| crate::StoreError::not_found("user", id))?
        .try_into()
    }

    async fn user_for_login(
        &self,
        email: &str,
    ) -> crate::StoreResult<Option<(crate::User, String)>> {
        let row = query_as::<crate::sql_auth::UserLoginRow>(&format!(
            "SELECT {}, password_hash FROM users WHERE email = $1",
            crate::sql_auth::USER_COLUMNS
        ))
        .bind(email)
        .fetch_optional(self.read())
        .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some((row.user.try_into()?, row.password_hash))),
        }
    }

    async fn list_users(
        &self,
        page: &crate::PageRequest,
    ) -> crate::StoreResult<crate::Page<crate::User>> {
        let rows = query_as::<crate::sql_auth::UserRow>(&format!(
            "SELECT {} FROM users WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
            crate::sql_auth::USER_COLUMNS
        ))
        .bind(page.after.as_deref())
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        let users = rows
            .into_iter()
            .map(crate::User::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::sql::paginate(users, page.limit, |u| &u.id))
    }

    async fn count_admin_users(&self) -> crate::StoreResult<i64> {
        let (count,): (i64,) = query_as(
            "SELECT COUNT(*) FROM users WHERE kind = 'admin' AND role = 'admin' \
             AND disabled_ms IS NULL",
        )
        .fetch_one(self.read())
        .await?;
        Ok(count)
    }

    async fn set_user_disabled(
        &self,
        id: &str,
        disabled: bool,
        now_ms: i64,
    ) -> crate::StoreResult<crate::User> {
        let mut tx = self.begin_write().await?;
        let user: crate::User = query_as::<crate::sql_auth::UserRow>(&format!(
            "SELECT {} FROM users WHERE id = $1 {}",
            crate::sql_auth::USER_COLUMNS,
            self.row_lock()
        ))
        .bind(id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| crate::StoreError::not_found("user", id))?
        .try_into()?;
        if disabled
            && user.disabled_ms.is_none()
            && user.kind == crate::UserKind::Admin
            && user.role == "admin"
        {
            // Lock every enabled admin row, so two nodes cannot each disable "another"
            // admin and leave none.
            let admins: Vec<(String,)> = query_as(
                [
                    "SELECT id FROM users WHERE kind = 'admin' AND role = 'admin' \
                 AND disabled_ms IS NULL ",
                    self.row_lock(),
                ]
                .concat(),
            )
            .fetch_all(&mut tx)
            .await?;
            if admins.len() <= 1 {
                return Err(crate::StoreError::conflict(
                    "last_admin",
                    None,
                    "the last enabled admin cannot be disabled",
                ));
            }
        }
        let row = query_as::<crate::sql_auth::UserRow>(&format!(
            "UPDATE users SET disabled_ms = $1, updated_ms = $2 WHERE id = $3 \
             RETURNING {}",
            crate::sql_auth::USER_COLUMNS
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

    async fn set_user_password(
        &self,
        id: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> crate::StoreResult<crate::User> {
        let mut tx = self.begin_write().await?;
        let row = query_as::<crate::sql_auth::UserRow>(&format!(
            "UPDATE users SET password_hash = $1, updated_ms = $2 WHERE id = $3 \
             RETURNING {}",
            crate::sql_auth::USER_COLUMNS
        ))
        .bind(password_hash)
        .bind(now_ms)
        .bind(id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| crate::StoreError::not_found("user", id))?;
        revoke_user_sessions(&mut tx.exec(), id, now_ms).await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn create_session(
        &self,
        new: crate::NewAuthSession,
    ) -> crate::StoreResult<crate::AuthSession> {
        let mut tx = self.begin_write().await?;
        let session = insert_session(&mut tx.exec(), &crate::sql::new_id("fam"), &new).await?;
        tx.commit().await?;
        Ok(session)
    }

    async fn session_by_access(
        &self,
        access_hash: &str,
        now_ms: i64,
    ) -> crate::StoreResult<Option<(crate::AuthSession, crate::User)>> {
        let session = query_as::<crate::AuthSession>(
            [
                "SELECT ",
                crate::sql_auth::SESSION_COLUMNS,
                " FROM auth_sessions WHERE access_hash = $1 AND revoked_ms IS NULL \
             AND rotated_ms IS NULL AND access_expires_ms > $2",
            ]
            .concat(),
        )
        .bind(access_hash)
        .bind(now_ms)
        .fetch_optional(self.read())
        .await?;
        let Some(session) = session else {
            return Ok(None);
        };
        let user = crate::AuthStore::get_user(self, &session.user_id).await?;
        if user.disabled_ms.is_some() {
            return Ok(None);
        }
        Ok(Some((session, user)))
    }

    async fn refresh_session(
        &self,
        refresh_hash: &str,
        next: crate::NewAuthSession,
    ) -> crate::StoreResult<crate::RefreshOutcome> {
        let mut tx = self.begin_write().await?;
        let old = query_as::<crate::AuthSession>(
            [
                "SELECT ",
                crate::sql_auth::SESSION_COLUMNS,
                " FROM auth_sessions WHERE refresh_hash = $1 ",
                self.row_lock(),
            ]
            .concat(),
        )
        .bind(refresh_hash)
        .fetch_optional(&mut tx)
        .await?;
        let Some(old) = old else {
            return Ok(crate::RefreshOutcome::Invalid);
        };
        if old.revoked_ms.is_some() {
            return Ok(crate::RefreshOutcome::Invalid);
        }
        if old.rotated_ms.is_some() {
            revoke_session_family(&mut tx.exec(), &old.family_id, next.now_ms).await?;
            tx.commit().await?;
            return Ok(crate::RefreshOutcome::Reused {
                family_id: old.family_id,
                user_id: old.user_id,
            });
        }
        if old.refresh_expires_ms <= next.now_ms {
            return Ok(crate::RefreshOutcome::Invalid);
        }
        let user: crate::User = query_as::<crate::sql_auth::UserRow>(&format!(
            "SELECT {} FROM users WHERE id = $1",
            crate::sql_auth::USER_COLUMNS
        ))
        .bind(&old.user_id)
        .fetch_one(&mut tx)
        .await?
        .try_into()?;
        if user.disabled_ms.is_some() {
            return Ok(crate::RefreshOutcome::Invalid);
        }
        query("UPDATE auth_sessions SET rotated_ms = $1 WHERE id = $2")
            .bind(next.now_ms)
            .bind(&old.id)
            .execute(&mut tx)
            .await?;
        let next = crate::NewAuthSession {
            user_id: old.user_id.clone(),
            ..next
        };
        let session = insert_session(&mut tx.exec(), &old.family_id, &next).await?;
        tx.commit().await?;
        Ok(crate::RefreshOutcome::Rotated {
            session: Box::new(session),
            user: Box::new(user),
        })
    }

    async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
        now_ms: i64,
    ) -> crate::StoreResult<()> {
        // Revoking a session revokes its family: the pair it was rotated from is
        // already dead, and the pair it may yet be rotated into must not live.
        let mut tx = self.begin_write().await?;
        let family: Option<(String,)> =
            query_as("SELECT family_id FROM auth_sessions WHERE id = $1 AND user_id = $2")
                .bind(session_id)
                .bind(user_id)
                .fetch_optional(&mut tx)
                .await?;
        let Some((family,)) = family else {
            return Err(crate::StoreError::not_found("session", session_id));
        };
        revoke_session_family(&mut tx.exec(), &family, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_sessions(
        &self,
        user_id: &str,
        now_ms: i64,
    ) -> crate::StoreResult<Vec<crate::AuthSession>> {
        Ok(query_as::<crate::AuthSession>(
            [
                "SELECT ",
                crate::sql_auth::SESSION_COLUMNS,
                " FROM auth_sessions WHERE user_id = $1 AND revoked_ms IS NULL \
             AND rotated_ms IS NULL AND refresh_expires_ms > $2 ORDER BY id",
            ]
            .concat(),
        )
        .bind(user_id)
        .bind(now_ms)
        .fetch_all(self.read())
        .await?)
    }

    async fn record_login_failure(
        &self,
        email: &str,
        source: &str,
        at_ms: i64,
        forget_before_ms: i64,
    ) -> crate::StoreResult<()> {
        let mut tx = self.begin_write().await?;
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

    async fn login_failures(
        &self,
        email: &str,
        source: &str,
        since_ms: i64,
    ) -> crate::StoreResult<crate::FailureCounts> {
        let (by_account, by_source): (i64, i64) = query_as(
            "SELECT \
             (SELECT COUNT(*) FROM login_failures WHERE email = $1 AND at_ms >= $3), \
             (SELECT COUNT(*) FROM login_failures WHERE source = $2 AND at_ms >= $3)",
        )
        .bind(email)
        .bind(source)
        .bind(since_ms)
        .fetch_one(self.read())
        .await?;
        Ok(crate::FailureCounts {
            by_account,
            by_source,
        })
    }

    async fn clear_login_failures(&self, email: &str) -> crate::StoreResult<()> {
        query("DELETE FROM login_failures WHERE email = $1")
            .bind(email)
            .execute(&mut self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn create_api_token(
        &self,
        name: &str,
        role: &str,
        merchant_id: Option<&str>,
        token_hash: &str,
    ) -> crate::StoreResult<crate::ApiToken> {
        let mut tx = self.begin_write().await?;
        let taken: Option<(String,)> =
            query_as("SELECT id FROM admin_tokens WHERE name = $1 AND revoked_at IS NULL")
                .bind(name)
                .fetch_optional(&mut tx)
                .await?;
        if taken.is_some() {
            return Err(crate::StoreError::conflict(
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
                return Err(crate::StoreError::not_found("merchant", merchant_id));
            }
        }
        let token = query_as::<crate::ApiToken>(
            [
                "INSERT INTO admin_tokens (id, name, role, merchant_id, token_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
                crate::sql_auth::API_TOKEN_COLUMNS,
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

    async fn list_api_tokens(
        &self,
        page: &crate::PageRequest,
    ) -> crate::StoreResult<crate::Page<crate::ApiToken>> {
        let rows = query_as::<crate::ApiToken>(
            [
                "SELECT ",
                crate::sql_auth::API_TOKEN_COLUMNS,
                " FROM admin_tokens WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
            ]
            .concat(),
        )
        .bind(page.after.as_deref())
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |t| &t.id))
    }

    async fn use_api_token(&self, token_hash: &str) -> crate::StoreResult<Option<crate::ApiToken>> {
        let token = query_as::<crate::ApiToken>(
            [
                "SELECT ",
                crate::sql_auth::API_TOKEN_COLUMNS,
                " FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            ]
            .concat(),
        )
        .bind(token_hash)
        .fetch_optional(self.read())
        .await?;
        let Some(mut token) = token else {
            return Ok(None);
        };
        token.last_used_at = touch_token(
            &mut self.write_conn().await?.exec(),
            &token.id,
            token.last_used_at,
        )
        .await?;
        Ok(Some(token))
    }

    async fn revoke_api_token(&self, id: &str) -> crate::StoreResult<crate::ApiToken> {
        let mut tx = self.begin_write().await?;
        query("UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(crate::sql::now())
            .bind(id)
            .execute(&mut tx)
            .await?;
        let token = query_as::<crate::ApiToken>(
            [
                "SELECT ",
                crate::sql_auth::API_TOKEN_COLUMNS,
                " FROM admin_tokens WHERE id = $1",
            ]
            .concat(),
        )
        .bind(id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| crate::StoreError::not_found("api_token", id))?;
        tx.commit().await?;
        Ok(token)
    }

    async fn totp_state(&self, user_id: &str) -> crate::StoreResult<Option<crate::TotpState>> {
        let row: Option<(Option<String>, Option<i64>, Option<i64>)> = query_as(
            "SELECT totp_secret, totp_enabled_ms, totp_last_step FROM users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.read())
        .await?;
        Ok(match row {
            Some((Some(secret), enabled_ms, last_step)) => Some(crate::TotpState {
                secret,
                enabled_ms,
                last_step,
            }),
            _ => None,
        })
    }

    async fn set_totp_secret(&self, user_id: &str, secret: &str) -> crate::StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let row: Option<(Option<i64>,)> = query_as(
            [
                "SELECT totp_enabled_ms FROM users WHERE id = $1 ",
                self.row_lock(),
            ]
            .concat(),
        )
        .bind(user_id)
        .fetch_optional(&mut tx)
        .await?;
        match row {
            None => return Err(crate::StoreError::not_found("user", user_id)),
            Some((Some(_),)) => {
                return Err(crate::StoreError::conflict(
                    "totp_enabled",
                    None,
                    "TOTP is already on; turn it off first",
                ));
            }
            Some((None,)) => {}
        }
        query("UPDATE users SET totp_secret = $1, totp_last_step = NULL WHERE id = $2")
            .bind(secret)
            .bind(user_id)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn enable_totp(
        &self,
        user_id: &str,
        step: i64,
        recovery_hashes: &[String],
        now_ms: i64,
    ) -> crate::StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = query(
            "UPDATE users SET totp_enabled_ms = $1, totp_last_step = $2 \
             WHERE id = $3 AND totp_secret IS NOT NULL AND totp_enabled_ms IS NULL",
        )
        .bind(now_ms)
        .bind(step)
        .bind(user_id)
        .execute(&mut tx)
        .await?;
        if done != 1 {
            return Err(crate::StoreError::conflict(
                "totp_not_pending",
                None,
                "no TOTP setup is waiting for confirmation",
            ));
        }
        query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut tx)
            .await?;
        for hash in recovery_hashes {
            query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user_id)
                .bind(hash)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> crate::StoreResult<bool> {
        let done = query(
            "UPDATE users SET totp_last_step = $1 WHERE id = $2 \
             AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(user_id)
        .execute(&mut self.write_conn().await?)
        .await?;
        Ok(done == 1)
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        code_hash: &str,
        now_ms: i64,
    ) -> crate::StoreResult<bool> {
        let done = query(
            "UPDATE recovery_codes SET used_ms = $1 \
             WHERE user_id = $2 AND code_hash = $3 AND used_ms IS NULL",
        )
        .bind(now_ms)
        .bind(user_id)
        .bind(code_hash)
        .execute(&mut self.write_conn().await?)
        .await?;
        Ok(done == 1)
    }

    async fn disable_totp(&self, user_id: &str) -> crate::StoreResult<()> {
        let mut tx = self.begin_write().await?;
        query(
            "UPDATE users SET totp_secret = NULL, totp_enabled_ms = NULL, \
             totp_last_step = NULL WHERE id = $1",
        )
        .bind(user_id)
        .execute(&mut tx)
        .await?;
        query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn begin_idempotency(
        &self,
        actor: &str,
        key: &str,
        request_hash: &str,
        now_ms: i64,
        expired_before_ms: i64,
    ) -> crate::StoreResult<crate::IdempotencyBegin> {
        let mut tx = self.begin_write().await?;
        query("DELETE FROM idempotency_keys WHERE created_ms < $1")
            .bind(expired_before_ms)
            .execute(&mut tx)
            .await?;
        let found: Option<(String, Option<i64>, Option<String>)> = query_as(
            [
                "SELECT request_hash, status, body FROM idempotency_keys \
             WHERE actor = $1 AND key = $2 ",
                self.row_lock(),
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
                    crate::IdempotencyBegin::Started
                } else {
                    crate::IdempotencyBegin::InProgress
                }
            }
            Some((hash, _, _)) if hash != request_hash => crate::IdempotencyBegin::Mismatch,
            Some((_, None, _)) => crate::IdempotencyBegin::InProgress,
            Some((_, Some(status), body)) => crate::IdempotencyBegin::Replay {
                status: u16::try_from(status).map_err(|_| {
                    crate::StoreError::Corrupt(format!("idempotency status {status}"))
                })?,
                body,
            },
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn finish_idempotency(
        &self,
        actor: &str,
        key: &str,
        status: u16,
        body: Option<&str>,
    ) -> crate::StoreResult<()> {
        query(
            "UPDATE idempotency_keys SET status = $1, body = $2 \
             WHERE actor = $3 AND key = $4",
        )
        .bind(i64::from(status))
        .bind(body)
        .bind(actor)
        .bind(key)
        .execute(&mut self.write_conn().await?)
        .await?;
        Ok(())
    }

    async fn abandon_idempotency(&self, actor: &str, key: &str) -> crate::StoreResult<()> {
        query("DELETE FROM idempotency_keys WHERE actor = $1 AND key = $2 AND status IS NULL")
            .bind(actor)
            .bind(key)
            .execute(&mut self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn append_audit(
        &self,
        entry: crate::NewAuditEntry,
    ) -> crate::StoreResult<crate::AuditEntry> {
        Ok(query_as::<crate::AuditEntry>(
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
        .fetch_one(&mut self.write_conn().await?)
        .await?)
    }

    async fn list_audit(
        &self,
        filter: &crate::AuditFilter,
        page: &crate::PageRequest,
    ) -> crate::StoreResult<crate::Page<crate::AuditEntry>> {
        let rows = query_as::<crate::AuditEntry>(
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
        .fetch_all(self.read())
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |e| &e.id))
    }
}

/// Ends every live session of a user (disabled, or a new password).
pub(crate) async fn revoke_user_sessions(
    conn: &mut Exec<'_>,
    user_id: &str,
    now_ms: i64,
) -> crate::StoreResult<()> {
    revoke_sessions_where(conn, "user_id", user_id, now_ms).await
}

/// Ends every live session of a refresh-token family (logout, or a reused token).
pub(crate) async fn revoke_session_family(
    conn: &mut Exec<'_>,
    family_id: &str,
    now_ms: i64,
) -> crate::StoreResult<()> {
    revoke_sessions_where(conn, "family_id", family_id, now_ms).await
}

pub(crate) async fn revoke_sessions_where(
    conn: &mut Exec<'_>,
    column: &'static str,
    key: &str,
    now_ms: i64,
) -> crate::StoreResult<()> {
    query(format!(
        "UPDATE auth_sessions SET revoked_ms = $1 \
         WHERE {column} = $2 AND revoked_ms IS NULL"
    ))
    .bind(now_ms)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records an admin or API token's use at most once a minute (a write per request
/// would make every authenticated read an fsync); returns its last-used time.
pub(crate) async fn touch_token(
    write: &mut Exec<'_>,
    id: &str,
    last_used_at: Option<time::OffsetDateTime>,
) -> crate::StoreResult<Option<time::OffsetDateTime>> {
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

pub(crate) async fn insert_session(
    conn: &mut Exec<'_>,
    family_id: &str,
    new: &crate::NewAuthSession,
) -> crate::StoreResult<crate::AuthSession> {
    Ok(query_as::<crate::AuthSession>(
        [
            "INSERT INTO auth_sessions (id, family_id, user_id, access_hash, refresh_hash, \
         access_expires_ms, refresh_expires_ms, created_ms, user_agent, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ",
            crate::sql_auth::SESSION_COLUMNS,
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
