//! People: users, login sessions, login failures and the audit log ([`AuthStore`]).
//!
//! Every instant here is Unix milliseconds chosen by the caller, so the gateway's clock (a
//! test clock in tests) decides expiry and lockout windows, and comparisons happen in SQL.

use async_trait::async_trait;
use serde::Serialize;

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

/// One audit-log row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: String,
    pub at_ms: i64,
    /// `user:<id>`, `token:<name>`, `bootstrap` or, for failed logins, `email:<address>`.
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    /// `ok`, `denied`, `failed`, or the HTTP status of a write.
    pub outcome: String,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
    pub request_id: Option<String>,
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
    pub request_id: Option<String>,
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Inclusive lower bound.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound.
    pub to_ms: Option<i64>,
}

/// Failed logins in a window, counted two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCounts {
    pub by_account: i64,
    pub by_source: i64,
}

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

/// A user's second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpState {
    /// Base32.
    pub secret: String,
    /// `None` while set up but not confirmed.
    pub enabled_ms: Option<i64>,
    pub last_step: Option<i64>,
}

/// What a write with an `Idempotency-Key` should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use of the key: run the request, then [`AuthStore::finish_idempotency`].
    Started,
    /// Done before: answer with this.
    Replay { status: u16, body: Option<String> },
    /// The first request with this key is still running.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

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
    /// Oldest first, keyset-paginated by id.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<AuditEntry>>;
}
