//! People: users, login sessions, login failures and the audit log ([`AuthStore`]).
//!
//! Every instant here is Unix milliseconds chosen by the caller, so the gateway's clock (a
//! test clock in tests) decides expiry and lockout windows, and comparisons happen in SQL.

use async_trait::async_trait;

use crate::Db;
use crate::db::{Exec, query};

use crate::{Page, PageRequest, StoreResult};

pub(crate) mod api_token;
pub(crate) mod audit;
pub(crate) mod idempotency;
pub(crate) mod login_failure;
pub(crate) mod session;
pub(crate) mod totp;
pub(crate) mod user;

pub use api_token::ApiToken;
pub use audit::{
    AuditEntry, AuditFilter, CarriedAuditScope, NewAuditEntry, SCOPED_OUTCOME, audit_scope,
};
pub use idempotency::IdempotencyBegin;
pub use login_failure::FailureCounts;
pub use session::{AuthSession, NewAuthSession, RefreshOutcome};
pub use totp::TotpState;
pub use user::{NewUser, User, UserKind};

#[async_trait]
pub trait AuthStore: Send + Sync {
    /// `Conflict` (`email_taken`) if the e-mail is in use; `Conflict` (`reference_missing`)
    /// for an unknown merchant.
    async fn create_user(&self, new: NewUser) -> StoreResult<User>;
    async fn get_user(&self, id: &str) -> StoreResult<User>;
    /// The user and its password hash, for login.
    async fn user_for_login(&self, email: &str) -> StoreResult<Option<(User, String)>>;
    async fn list_users(&self, page: &PageRequest) -> StoreResult<Page<User>>;
    /// How many enabled operators with the `admin` role exist.
    async fn count_admin_users(&self) -> StoreResult<i64>;
    /// Disables (ending every session) or re-enables a user, in one transaction.
    /// `Conflict` (`last_admin`) when disabling the last enabled operator with role `admin`.
    async fn set_user_disabled(&self, id: &str, disabled: bool, now_ms: i64) -> StoreResult<User>;
    /// Replaces the password hash and revokes every session of the user, in one transaction.
    async fn set_user_password(
        &self,
        id: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> StoreResult<User>;

    /// A new session in a new family.
    async fn create_session(&self, new: NewAuthSession) -> StoreResult<AuthSession>;
    /// The live session (not revoked, not rotated, access token unexpired) and its enabled
    /// user.
    async fn session_by_access(
        &self,
        access_hash: &str,
        now_ms: i64,
    ) -> StoreResult<Option<(AuthSession, User)>>;
    /// Rotates a refresh token, in one transaction (see [`RefreshOutcome`]). `next.user_id`
    /// is ignored: the new pair belongs to the old pair's user.
    async fn refresh_session(
        &self,
        refresh_hash: &str,
        next: NewAuthSession,
    ) -> StoreResult<RefreshOutcome>;
    /// Revokes one session of a user (a session of someone else is `NotFound`).
    async fn revoke_session(&self, user_id: &str, session_id: &str, now_ms: i64)
    -> StoreResult<()>;
    /// Slides a live session's access expiry to `until_ms`, never past its refresh expiry
    /// (a console session's idle timeout). Writes nothing unless the expiry moves by more
    /// than a minute, or when the session is no longer live.
    async fn extend_session(&self, session_id: &str, until_ms: i64, now_ms: i64)
    -> StoreResult<()>;
    /// Sessions whose refresh token still works, oldest first.
    async fn list_sessions(&self, user_id: &str, now_ms: i64) -> StoreResult<Vec<AuthSession>>;

    /// Records a failed login; failures before `forget_before_ms` (outside any window) are
    /// deleted in the same transaction, so the table stays small.
    async fn record_login_failure(
        &self,
        email: &str,
        source: &str,
        at_ms: i64,
        forget_before_ms: i64,
    ) -> StoreResult<()>;
    /// Failures at or after `since_ms` for this account and for this source address.
    async fn login_failures(
        &self,
        email: &str,
        source: &str,
        since_ms: i64,
    ) -> StoreResult<FailureCounts>;
    /// Forgets the account's failures (after a successful login).
    async fn clear_login_failures(&self, email: &str) -> StoreResult<()>;

    /// A new API token; `Conflict` (`name_taken`) if an active token has the name.
    async fn create_api_token(
        &self,
        name: &str,
        role: &str,
        merchant_id: Option<&str>,
        token_hash: &str,
    ) -> StoreResult<ApiToken>;
    /// Active and revoked tokens, oldest first.
    async fn list_api_tokens(&self, page: &PageRequest) -> StoreResult<Page<ApiToken>>;
    /// Finds an active token by hash and records its use (at most once a minute).
    async fn use_api_token(&self, token_hash: &str) -> StoreResult<Option<ApiToken>>;
    /// Revokes a token; revoking a revoked one changes nothing. `NotFound` if unknown.
    async fn revoke_api_token(&self, id: &str) -> StoreResult<ApiToken>;

    /// The user's TOTP state, if a secret was set up.
    async fn totp_state(&self, user_id: &str) -> StoreResult<Option<TotpState>>;
    /// Stores a new, not yet enabled secret (replacing any earlier setup); `Conflict`
    /// (`totp_enabled`) if TOTP is already on.
    async fn set_totp_secret(&self, user_id: &str, secret: &str) -> StoreResult<()>;
    /// Turns TOTP on, records the confirming code's step, and replaces the recovery codes.
    async fn enable_totp(
        &self,
        user_id: &str,
        step: i64,
        recovery_hashes: &[String],
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Records a used step; `false` if that step (or a later one) was already used.
    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool>;
    /// Spends a recovery code; `false` if unknown or already used.
    async fn use_recovery_code(
        &self,
        user_id: &str,
        code_hash: &str,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Turns TOTP off and deletes the secret and recovery codes.
    async fn disable_totp(&self, user_id: &str) -> StoreResult<()>;

    /// Claims `(actor, key)` for a request with this hash, in one transaction. Keys created
    /// before `expired_before_ms` are forgotten first.
    async fn begin_idempotency(
        &self,
        actor: &str,
        key: &str,
        request_hash: &str,
        now_ms: i64,
        expired_before_ms: i64,
    ) -> StoreResult<IdempotencyBegin>;
    /// Stores the response of a claimed key (`body` `None`: not replayable).
    async fn finish_idempotency(
        &self,
        actor: &str,
        key: &str,
        status: u16,
        body: Option<&str>,
    ) -> StoreResult<()>;
    /// Releases a claimed key whose request failed, so a retry runs again.
    async fn abandon_idempotency(&self, actor: &str, key: &str) -> StoreResult<()>;

    async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<AuditEntry>;
    /// Sets the final outcome and `after` of the row an [`audit_scope`] wrote with its
    /// first transaction; `false` if there is no row with that id.
    async fn finish_audit(
        &self,
        id: &str,
        outcome: &str,
        after_json: Option<&str>,
    ) -> StoreResult<bool>;
    /// Closes an [`audit_scope`]: the row it `written` (its first transaction's) gets
    /// `entry`'s outcome and `after`; if it wrote none (nothing committed), `entry` is
    /// appended as the attempt's row.
    async fn close_audit(&self, written: Option<&str>, entry: NewAuditEntry) -> StoreResult<()>;
    /// Oldest first, keyset-paginated by id.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<AuditEntry>>;
}

/// The one implementation, for both backends: each method is its entity module's function.
#[async_trait::async_trait]
impl AuthStore for Db {
    async fn create_user(&self, new: NewUser) -> StoreResult<User> {
        user::create_user(self, new).await
    }

    async fn get_user(&self, id: &str) -> StoreResult<User> {
        user::get_user(self, id).await
    }

    async fn user_for_login(&self, email: &str) -> StoreResult<Option<(User, String)>> {
        user::user_for_login(self, email).await
    }

    async fn list_users(&self, page: &PageRequest) -> StoreResult<Page<User>> {
        user::list_users(self, page).await
    }

    async fn count_admin_users(&self) -> StoreResult<i64> {
        user::count_admin_users(self).await
    }

    async fn set_user_disabled(&self, id: &str, disabled: bool, now_ms: i64) -> StoreResult<User> {
        user::set_user_disabled(self, id, disabled, now_ms).await
    }

    async fn set_user_password(
        &self,
        id: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> StoreResult<User> {
        user::set_user_password(self, id, password_hash, now_ms).await
    }

    async fn create_session(&self, new: NewAuthSession) -> StoreResult<AuthSession> {
        session::create_session(self, new).await
    }

    async fn session_by_access(
        &self,
        access_hash: &str,
        now_ms: i64,
    ) -> StoreResult<Option<(AuthSession, User)>> {
        session::session_by_access(self, access_hash, now_ms).await
    }

    async fn refresh_session(
        &self,
        refresh_hash: &str,
        next: NewAuthSession,
    ) -> StoreResult<RefreshOutcome> {
        session::refresh_session(self, refresh_hash, next).await
    }

    async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        session::revoke_session(self, user_id, session_id, now_ms).await
    }

    async fn extend_session(
        &self,
        session_id: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        session::extend_session(self, session_id, until_ms, now_ms).await
    }

    async fn list_sessions(&self, user_id: &str, now_ms: i64) -> StoreResult<Vec<AuthSession>> {
        session::list_sessions(self, user_id, now_ms).await
    }

    async fn record_login_failure(
        &self,
        email: &str,
        source: &str,
        at_ms: i64,
        forget_before_ms: i64,
    ) -> StoreResult<()> {
        login_failure::record_login_failure(self, email, source, at_ms, forget_before_ms).await
    }

    async fn login_failures(
        &self,
        email: &str,
        source: &str,
        since_ms: i64,
    ) -> StoreResult<FailureCounts> {
        login_failure::login_failures(self, email, source, since_ms).await
    }

    async fn clear_login_failures(&self, email: &str) -> StoreResult<()> {
        login_failure::clear_login_failures(self, email).await
    }

    async fn create_api_token(
        &self,
        name: &str,
        role: &str,
        merchant_id: Option<&str>,
        token_hash: &str,
    ) -> StoreResult<ApiToken> {
        api_token::create_api_token(self, name, role, merchant_id, token_hash).await
    }

    async fn list_api_tokens(&self, page: &PageRequest) -> StoreResult<Page<ApiToken>> {
        api_token::list_api_tokens(self, page).await
    }

    async fn use_api_token(&self, token_hash: &str) -> StoreResult<Option<ApiToken>> {
        api_token::use_api_token(self, token_hash).await
    }

    async fn revoke_api_token(&self, id: &str) -> StoreResult<ApiToken> {
        api_token::revoke_api_token(self, id).await
    }

    async fn totp_state(&self, user_id: &str) -> StoreResult<Option<TotpState>> {
        totp::totp_state(self, user_id).await
    }

    async fn set_totp_secret(&self, user_id: &str, secret: &str) -> StoreResult<()> {
        totp::set_totp_secret(self, user_id, secret).await
    }

    async fn enable_totp(
        &self,
        user_id: &str,
        step: i64,
        recovery_hashes: &[String],
        now_ms: i64,
    ) -> StoreResult<()> {
        totp::enable_totp(self, user_id, step, recovery_hashes, now_ms).await
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        totp::use_totp_step(self, user_id, step).await
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        code_hash: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        totp::use_recovery_code(self, user_id, code_hash, now_ms).await
    }

    async fn disable_totp(&self, user_id: &str) -> StoreResult<()> {
        totp::disable_totp(self, user_id).await
    }

    async fn begin_idempotency(
        &self,
        actor: &str,
        key: &str,
        request_hash: &str,
        now_ms: i64,
        expired_before_ms: i64,
    ) -> StoreResult<IdempotencyBegin> {
        idempotency::begin_idempotency(self, actor, key, request_hash, now_ms, expired_before_ms)
            .await
    }

    async fn finish_idempotency(
        &self,
        actor: &str,
        key: &str,
        status: u16,
        body: Option<&str>,
    ) -> StoreResult<()> {
        idempotency::finish_idempotency(self, actor, key, status, body).await
    }

    async fn abandon_idempotency(&self, actor: &str, key: &str) -> StoreResult<()> {
        idempotency::abandon_idempotency(self, actor, key).await
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<AuditEntry> {
        audit::append_audit(self, entry).await
    }

    async fn finish_audit(
        &self,
        id: &str,
        outcome: &str,
        after_json: Option<&str>,
    ) -> StoreResult<bool> {
        audit::finish_audit(self, id, outcome, after_json).await
    }

    async fn close_audit(&self, written: Option<&str>, entry: NewAuditEntry) -> StoreResult<()> {
        match written {
            Some(id) => {
                audit::finish_audit(self, id, &entry.outcome, entry.after_json.as_deref()).await?;
            }
            None => {
                audit::append_audit(self, entry).await?;
            }
        }
        Ok(())
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<AuditEntry>> {
        audit::list_audit(self, filter, page).await
    }
}

// Session revocation, shared by `user` (disable, new password) and `session` (logout,
// reuse): it lives here so neither child imports the other.

/// Ends every live session of a user (disabled, or a new password).
pub(crate) async fn revoke_user_sessions(
    conn: &mut Exec<'_>,
    user_id: &str,
    now_ms: i64,
) -> StoreResult<()> {
    revoke_sessions_where(conn, "user_id", user_id, now_ms).await
}

pub(crate) async fn revoke_sessions_where(
    conn: &mut Exec<'_>,
    column: &'static str,
    key: &str,
    now_ms: i64,
) -> StoreResult<()> {
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
