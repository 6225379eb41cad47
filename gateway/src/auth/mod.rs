//! People: users and roles, login with lockout, access and refresh tokens with rotation and
//! reuse detection, API-token callers, and the audit log.
//!
//! Tokens are 256-bit random values shown once; the store keeps their SHA-256 only. An
//! access token lives [`AuthSettings::access_token_ttl`] (15 min by default); its refresh
//! token lives longer and is single-use: refreshing retires the pair and issues a new one in
//! the same *family*. A retired refresh token presented again means it was copied, so the
//! whole family is revoked (the thief's pair and the owner's).
//!
//! The bootstrap admin token works until the first operator with the `admin` role exists
//! (creating a viewer first cannot lock the installation out); then it is refused and each
//! refusal is logged.
//!
//! Time comes from a [`Clock`], so tests move lockout windows and expiries without sleeping.

pub mod idempotency;
pub mod password;
pub mod ratelimit;
pub mod roles;
pub mod totp;

use std::sync::Arc;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gema_store::{
    ApiToken, AuditEntry, AuditFilter, AuthSession, NewAuditEntry, NewAuthSession, NewUser, Page,
    PageRequest, RefreshOutcome, Store, User, UserKind,
};

pub use roles::{Action, AdminRole, MerchantRole, Role, permits};

use crate::credentials::{self, SecretString};
use crate::error::{GatewayError, GatewayResult};
use crate::validate;

pub use crate::clock::{Clock, ManualClock, SystemClock};

/// Login and token policy (the daemon fills this from the `[auth]` config section).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Failed logins of one account within `lockout_window` that lock it.
    pub lockout_max_failures: u32,
    /// Failed logins from one source address within `lockout_window` that lock it out.
    pub lockout_max_failures_per_source: u32,
    pub lockout_window: Duration,
    pub password_iterations: u32,
    /// How long an `Idempotency-Key` and its response are kept.
    pub idempotency_ttl: Duration,
    /// How long a retry waits for the first request with its key to finish before `409`.
    pub idempotency_wait: Duration,
    pub rate_limits: ratelimit::RateLimits,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            lockout_max_failures: 5,
            lockout_max_failures_per_source: 5,
            lockout_window: Duration::from_secs(15 * 60),
            password_iterations: password::PASSWORD_PBKDF2_ITERATIONS,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            idempotency_wait: Duration::from_secs(10),
            rate_limits: ratelimit::RateLimits::default(),
        }
    }
}

/// Who is calling, as decided from the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// For audit rows: `user:<id>` or `token:<name>`.
    pub actor: String,
    /// Whom a person would recognise: a user's name (their email when it is empty), a
    /// token's name.
    pub name: String,
    pub role: Role,
    /// Set exactly for merchant users: the only merchant whose rows they see.
    pub merchant_id: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
}

impl Principal {
    pub fn may(&self, action: Action) -> bool {
        permits(self.role, action)
    }
}

/// Where a request came from, for lockout and audit.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub source: String,
    pub request_id: Option<String>,
    pub user_agent: Option<String>,
}

/// A new user as the caller describes it.
#[derive(Debug, Clone)]
pub struct UserInput {
    pub email: String,
    pub name: String,
    pub role: String,
    /// Set for a merchant user; absent for an operator.
    pub merchant_id: Option<String>,
    pub password: SecretString,
}

/// The second factor presented at login.
#[derive(Debug, Clone)]
pub enum SecondFactor {
    /// A six-digit TOTP code.
    Code(String),
    /// A one-time recovery code.
    Recovery(SecretString),
}

/// A TOTP secret to load into an authenticator app, shown once.
#[derive(Debug)]
pub struct TotpSetup {
    /// Base32.
    pub secret: SecretString,
    /// `otpauth://totp/…`, for a QR code.
    pub uri: SecretString,
}

/// A token pair, shown once.
#[derive(Debug)]
pub struct IssuedTokens {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub access_expires_in: Duration,
    pub refresh_expires_in: Duration,
    pub session: AuthSession,
    pub user: User,
}

#[derive(Debug, Clone)]
pub struct Auth {
    store: Arc<dyn Store>,
    settings: Arc<AuthSettings>,
    clock: Arc<dyn Clock>,
    /// A hash no password matches, at the configured work factor, verified against for
    /// unknown e-mails.
    dummy: Arc<std::sync::OnceLock<String>>,
    limiter: Arc<ratelimit::RateLimiter>,
}

const ACCESS_PREFIX: &str = "gat_";
const REFRESH_PREFIX: &str = "grt_";
const BOOTSTRAP: &str = "bootstrap";
const WRONG_LOGIN: &str = "wrong e-mail or password";

fn new_token(prefix: &str) -> SecretString {
    SecretString::new(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(credentials::random_bytes::<32>())
    ))
}

impl Auth {
    pub fn new(store: Arc<dyn Store>, settings: AuthSettings) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Self {
            store,
            limiter: Arc::new(ratelimit::RateLimiter::new(
                &settings.rate_limits,
                clock.clone(),
            )),
            settings: Arc::new(settings),
            clock,
            dummy: Arc::default(),
        }
    }

    async fn dummy_hash(&self) -> GatewayResult<String> {
        if let Some(hash) = self.dummy.get() {
            return Ok(hash.clone());
        }
        let unguessable =
            SecretString::new(URL_SAFE_NO_PAD.encode(credentials::random_bytes::<32>()));
        let hash = password::hash_password(unguessable, self.settings.password_iterations).await?;
        Ok(self.dummy.get_or_init(|| hash).clone())
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.limiter = Arc::new(ratelimit::RateLimiter::new(
            &self.settings.rate_limits,
            clock.clone(),
        ));
        self.clock = clock;
        self
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    // ---- users -------------------------------------------------------------------

    pub async fn create_user(&self, input: UserInput) -> GatewayResult<User> {
        let email = normalize_email(&input.email)?;
        let name = validate::text("name", &input.name, 100)?;
        let kind = match &input.merchant_id {
            None => {
                if AdminRole::parse(&input.role).is_none() {
                    return Err(GatewayError::invalid(
                        "role",
                        "an operator's role is one of admin, finance, ops, support, viewer",
                    ));
                }
                UserKind::Admin
            }
            Some(_) => {
                if MerchantRole::parse(&input.role).is_none() {
                    return Err(GatewayError::invalid(
                        "role",
                        "a merchant user's role is one of owner, finance, ops, viewer",
                    ));
                }
                UserKind::Merchant
            }
        };
        password::check_password_rules(&input.password)?;
        let password_hash =
            password::hash_password(input.password, self.settings.password_iterations).await?;
        let first_admin = kind == UserKind::Admin
            && input.role == AdminRole::Admin.as_str()
            && self.store.count_admin_users().await? == 0;
        let user = self
            .store
            .create_user(NewUser {
                email,
                name,
                kind,
                role: input.role,
                merchant_id: input.merchant_id,
                password_hash,
                now_ms: self.now_ms(),
            })
            .await?;
        if first_admin {
            tracing::warn!(
                user_id = %user.id,
                "first admin user created: the bootstrap admin token is disabled from now on"
            );
        }
        Ok(user)
    }

    /// Whether an enabled operator with the `admin` role exists (then the bootstrap token is
    /// refused).
    pub async fn admin_users_exist(&self) -> GatewayResult<bool> {
        Ok(self.store.count_admin_users().await? > 0)
    }

    /// Disables or re-enables a user. Disabling ends its sessions; the last enabled admin
    /// cannot be disabled (that would re-open the bootstrap token).
    pub async fn set_user_disabled(&self, id: &str, disabled: bool) -> GatewayResult<User> {
        Ok(self
            .store
            .set_user_disabled(id, disabled, self.now_ms())
            .await?)
    }

    pub async fn user(&self, id: &str) -> GatewayResult<User> {
        Ok(self.store.get_user(id).await?)
    }

    pub async fn users(&self, page: &PageRequest) -> GatewayResult<Page<User>> {
        Ok(self.store.list_users(page).await?)
    }

    /// Sets a new password (operator recovery); every session of the user ends.
    pub async fn reset_password(&self, email: &str, password: SecretString) -> GatewayResult<User> {
        let email = normalize_email(email)?;
        password::check_password_rules(&password)?;
        let Some((user, _)) = self.store.user_for_login(&email).await? else {
            return Err(GatewayError::NotFound {
                entity: "user",
                id: email,
            });
        };
        let hash = password::hash_password(password, self.settings.password_iterations).await?;
        let user = self
            .store
            .set_user_password(&user.id, &hash, self.now_ms())
            .await?;
        self.store.clear_login_failures(&user.email).await?;
        Ok(user)
    }

    // ---- login and tokens ------------------------------------------------------------

    /// Checks a password, with lockout per account and per source address. Every attempt,
    /// whatever its outcome, leaves an audit row.
    pub async fn login(
        &self,
        email: &str,
        password: SecretString,
        second: Option<SecondFactor>,
        meta: &RequestMeta,
    ) -> GatewayResult<IssuedTokens> {
        let email = email.trim().to_lowercase();
        let now = self.now_ms();
        let window_ms = self.settings.lockout_window.as_millis() as i64;
        let counts = self
            .store
            .login_failures(&email, &meta.source, now - window_ms)
            .await?;
        let account_locked = counts.by_account >= i64::from(self.settings.lockout_max_failures);
        let source_locked =
            counts.by_source >= i64::from(self.settings.lockout_max_failures_per_source);
        if account_locked || source_locked {
            let scope = if account_locked { "account" } else { "source" };
            self.audit_login(&email, None, "locked", Some(scope), meta)
                .await?;
            tracing::warn!(scope, source = %meta.source, "login refused: locked out");
            return Err(GatewayError::TooManyRequests {
                code: "login_locked",
                message: format!(
                    "too many failed logins; try again in {} minutes",
                    self.settings.lockout_window.as_secs().div_ceil(60)
                ),
                retry_after_secs: self.settings.lockout_window.as_secs(),
            });
        }

        let found = self.store.user_for_login(&email).await?;
        let (user, ok) = match found {
            Some((user, hash)) => {
                let ok = password::verify_password(password, hash).await?;
                (Some(user), ok)
            }
            None => {
                // Spend the same time as for a real account, so timing does not reveal
                // which e-mails exist.
                let dummy = self.dummy_hash().await?;
                let _ = password::verify_password(password, dummy).await?;
                (None, false)
            }
        };
        let user = match user {
            Some(user) if ok && user.disabled_ms.is_none() => user,
            user => {
                self.store
                    .record_login_failure(&email, &meta.source, now, now - window_ms)
                    .await?;
                let reason = if user.is_some_and(|u| u.disabled_ms.is_some()) {
                    "disabled"
                } else {
                    "wrong_credentials"
                };
                self.audit_login(&email, None, "failed", Some(reason), meta)
                    .await?;
                return Err(GatewayError::Unauthorized(WRONG_LOGIN.into()));
            }
        };
        if let Some(state) = self.store.totp_state(&user.id).await?
            && state.enabled_ms.is_some()
        {
            let Some(second) = second else {
                self.audit_login(&email, None, "totp_required", None, meta)
                    .await?;
                return Err(GatewayError::Unauthorized(
                    "this account needs its TOTP code (totp_code) or a recovery code \
                     (recovery_code)"
                        .into(),
                ));
            };
            if !self.check_second_factor(&user.id, &state, &second).await? {
                self.store
                    .record_login_failure(&email, &meta.source, now, now - window_ms)
                    .await?;
                self.audit_login(&email, None, "failed", Some("wrong_second_factor"), meta)
                    .await?;
                return Err(GatewayError::Unauthorized(
                    "wrong or already used TOTP or recovery code".into(),
                ));
            }
        }
        self.store.clear_login_failures(&email).await?;
        let issued = self.issue(user, meta).await?;
        self.audit_login(&email, Some(&issued.user.id), "ok", None, meta)
            .await?;
        Ok(issued)
    }

    /// A fresh pair of tokens and the session row that will hold their hashes. `user_id` is
    /// ignored by the store on refresh (the old pair's user keeps the session).
    fn new_pair(
        &self,
        user_id: &str,
        meta: &RequestMeta,
    ) -> (SecretString, SecretString, NewAuthSession) {
        let now = self.now_ms();
        let access_token = new_token(ACCESS_PREFIX);
        let refresh_token = new_token(REFRESH_PREFIX);
        let new = NewAuthSession {
            user_id: user_id.to_owned(),
            access_hash: credentials::hash_admin_token(access_token.expose()),
            refresh_hash: credentials::hash_admin_token(refresh_token.expose()),
            access_expires_ms: now + self.settings.access_token_ttl.as_millis() as i64,
            refresh_expires_ms: now + self.settings.refresh_token_ttl.as_millis() as i64,
            user_agent: meta.user_agent.clone(),
            source: Some(meta.source.clone()),
            now_ms: now,
        };
        (access_token, refresh_token, new)
    }

    fn issued(
        &self,
        access_token: SecretString,
        refresh_token: SecretString,
        session: AuthSession,
        user: User,
    ) -> IssuedTokens {
        IssuedTokens {
            access_token,
            refresh_token,
            access_expires_in: self.settings.access_token_ttl,
            refresh_expires_in: self.settings.refresh_token_ttl,
            session,
            user,
        }
    }

    /// A new session (a new family) for a user who just proved who they are.
    async fn issue(&self, user: User, meta: &RequestMeta) -> GatewayResult<IssuedTokens> {
        let (access, refresh, new) = self.new_pair(&user.id, meta);
        let session = self.store.create_session(new).await?;
        Ok(self.issued(access, refresh, session, user))
    }

    /// Trades a refresh token for a new pair (rotation); see the module docs for reuse.
    pub async fn refresh(
        &self,
        refresh_token: &SecretString,
        meta: &RequestMeta,
    ) -> GatewayResult<IssuedTokens> {
        if !refresh_token.expose().starts_with(REFRESH_PREFIX) {
            return Err(GatewayError::Unauthorized("not a refresh token".into()));
        }
        let hash = credentials::hash_admin_token(refresh_token.expose());
        let (access, refresh, new) = self.new_pair("", meta);
        match self.store.refresh_session(&hash, new).await? {
            RefreshOutcome::Rotated { session, user } => {
                Ok(self.issued(access, refresh, *session, *user))
            }
            RefreshOutcome::Reused { family_id, user_id } => {
                tracing::warn!(%user_id, %family_id,
                    "a used refresh token was presented again: the session family is revoked");
                self.audit(NewAuditEntry {
                    actor: format!("user:{user_id}"),
                    action: "auth.refresh".into(),
                    target: Some(format!("session_family:{family_id}")),
                    outcome: "reused".into(),
                    ..self.entry(meta)
                })
                .await?;
                Err(GatewayError::Unauthorized(
                    "refresh token already used; the session is revoked, log in again".into(),
                ))
            }
            RefreshOutcome::Invalid => Err(GatewayError::Unauthorized(
                "refresh token unknown, expired or revoked".into(),
            )),
        }
    }

    /// Who a bearer token belongs to, or `None` if it is not a live token.
    pub async fn authenticate(&self, token: &str) -> GatewayResult<Option<Principal>> {
        let hash = credentials::hash_admin_token(token);
        if token.starts_with(ACCESS_PREFIX) {
            let Some((session, user)) = self.store.session_by_access(&hash, self.now_ms()).await?
            else {
                return Ok(None);
            };
            let role = user_role(&user)?;
            let name = if user.name.trim().is_empty() {
                user.email.clone()
            } else {
                user.name.clone()
            };
            return Ok(Some(Principal {
                actor: format!("user:{}", user.id),
                name,
                role,
                merchant_id: user.merchant_id,
                user_id: Some(user.id),
                session_id: Some(session.id),
            }));
        }
        let Some(token) = self.store.use_api_token(&hash).await? else {
            return Ok(None);
        };
        if token.name == BOOTSTRAP && self.store.count_admin_users().await? > 0 {
            tracing::warn!(
                "bootstrap admin token refused: an admin user exists, so the bootstrap token \
                 is disabled; log in as a user instead"
            );
            return Ok(None);
        }
        let role = match &token.merchant_id {
            None => AdminRole::parse(&token.role).map(Role::Admin),
            Some(_) => MerchantRole::parse(&token.role).map(Role::Merchant),
        }
        .ok_or_else(|| GatewayError::Internal(format!("token {} has unknown role", token.id)))?;
        Ok(Some(Principal {
            actor: format!("token:{}", token.name),
            name: token.name,
            role,
            merchant_id: token.merchant_id,
            user_id: None,
            session_id: None,
        }))
    }

    /// Keeps a console session alive while it is used: its access token's expiry slides to
    /// one access lifetime from now (never past the refresh expiry), so the access lifetime
    /// is the console's idle timeout. The row is written at most once a minute per session.
    /// API tokens are not sessions and stay as they are.
    pub async fn extend(&self, principal: &Principal) -> GatewayResult<()> {
        let Some(session_id) = &principal.session_id else {
            return Ok(());
        };
        let now = self.now_ms();
        let until = now + self.settings.access_token_ttl.as_millis() as i64;
        Ok(self.store.extend_session(session_id, until, now).await?)
    }

    /// Ends the caller's own session (its whole family).
    pub async fn logout(&self, principal: &Principal) -> GatewayResult<()> {
        let (Some(user_id), Some(session_id)) = (&principal.user_id, &principal.session_id) else {
            return Err(GatewayError::invalid(
                "authorization",
                "only a user session can log out; API tokens are revoked instead",
            ));
        };
        Ok(self
            .store
            .revoke_session(user_id, session_id, self.now_ms())
            .await?)
    }

    /// The caller's live sessions.
    pub async fn sessions(&self, principal: &Principal) -> GatewayResult<Vec<AuthSession>> {
        let Some(user_id) = &principal.user_id else {
            return Ok(Vec::new());
        };
        Ok(self.store.list_sessions(user_id, self.now_ms()).await?)
    }

    /// Revokes one of the caller's own sessions; anyone else's is `NotFound`.
    pub async fn revoke_session(
        &self,
        principal: &Principal,
        session_id: &str,
    ) -> GatewayResult<()> {
        let Some(user_id) = &principal.user_id else {
            return Err(GatewayError::NotFound {
                entity: "session",
                id: session_id.into(),
            });
        };
        Ok(self
            .store
            .revoke_session(user_id, session_id, self.now_ms())
            .await?)
    }

    /// Counts a request against its rate limit (see [`ratelimit`]).
    pub fn check_rate(&self, class: ratelimit::LimitClass, key: &str) -> GatewayResult<()> {
        self.limiter.check(class, key)
    }

    // ---- TOTP ------------------------------------------------------------------------

    fn own_user<'a>(&self, principal: &'a Principal) -> GatewayResult<&'a str> {
        principal.user_id.as_deref().ok_or_else(|| {
            GatewayError::invalid("authorization", "only a user has a second factor")
        })
    }

    /// Starts TOTP setup: a new secret, shown once, to confirm with [`Auth::totp_enable`].
    pub async fn totp_setup(&self, principal: &Principal) -> GatewayResult<TotpSetup> {
        let user_id = self.own_user(principal)?;
        let user = self.store.get_user(user_id).await?;
        let secret = totp::base32_encode(&credentials::random_bytes::<{ totp::SECRET_BYTES }>());
        self.store.set_totp_secret(user_id, &secret).await?;
        Ok(TotpSetup {
            uri: SecretString::new(totp::otpauth_uri("Gema", &user.email, &secret)),
            secret: SecretString::new(secret),
        })
    }

    /// Confirms setup with a current code; returns ten one-time recovery codes, shown once.
    pub async fn totp_enable(
        &self,
        principal: &Principal,
        code: &str,
    ) -> GatewayResult<Vec<SecretString>> {
        let user_id = self.own_user(principal)?;
        let state = self.store.totp_state(user_id).await?;
        let Some(state) = state.filter(|s| s.enabled_ms.is_none()) else {
            return Err(GatewayError::Conflict {
                code: "totp_not_pending",
                message: "start with POST /api/v1/auth/totp/setup".into(),
                field: None,
            });
        };
        let secret = totp::base32_decode(&state.secret)
            .ok_or_else(|| GatewayError::Internal("stored TOTP secret is not base32".into()))?;
        let Some(step) = totp::verify(&secret, code, self.now_ms().div_euclid(1000)) else {
            return Err(GatewayError::invalid(
                "code",
                "is not the current TOTP code",
            ));
        };
        let codes: Vec<SecretString> = (0..10)
            .map(|_| {
                let raw = totp::base32_encode(&credentials::random_bytes::<5>()).to_lowercase();
                SecretString::new(format!("{}-{}", &raw[..4], &raw[4..]))
            })
            .collect();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| credentials::hash_admin_token(c.expose()))
            .collect();
        self.store
            .enable_totp(user_id, step, &hashes, self.now_ms())
            .await?;
        Ok(codes)
    }

    /// Turns TOTP off; needs a current code or a recovery code.
    pub async fn totp_disable(
        &self,
        principal: &Principal,
        second: SecondFactor,
    ) -> GatewayResult<()> {
        let user_id = self.own_user(principal)?;
        let Some(state) = self.store.totp_state(user_id).await? else {
            return Ok(());
        };
        if state.enabled_ms.is_some() && !self.check_second_factor(user_id, &state, &second).await?
        {
            return Err(GatewayError::Unauthorized(
                "wrong or already used TOTP or recovery code".into(),
            ));
        }
        Ok(self.store.disable_totp(user_id).await?)
    }

    async fn check_second_factor(
        &self,
        user_id: &str,
        state: &gema_store::TotpState,
        second: &SecondFactor,
    ) -> GatewayResult<bool> {
        match second {
            SecondFactor::Code(code) => {
                let secret = totp::base32_decode(&state.secret).ok_or_else(|| {
                    GatewayError::Internal("stored TOTP secret is not base32".into())
                })?;
                match totp::verify(&secret, code, self.now_ms().div_euclid(1000)) {
                    Some(step) => Ok(self.store.use_totp_step(user_id, step).await?),
                    None => Ok(false),
                }
            }
            SecondFactor::Recovery(code) => {
                let normalized = code.expose().trim().to_lowercase();
                let hash = credentials::hash_admin_token(&normalized);
                Ok(self
                    .store
                    .use_recovery_code(user_id, &hash, self.now_ms())
                    .await?)
            }
        }
    }

    // ---- API tokens ------------------------------------------------------------------

    /// A named token with a role (a merchant role when `merchant_id` is set), shown once.
    pub async fn create_api_token(
        &self,
        name: &str,
        role: &str,
        merchant_id: Option<&str>,
    ) -> GatewayResult<(ApiToken, SecretString)> {
        let name = validate::code("name", name, 64)?;
        if name == BOOTSTRAP {
            return Err(GatewayError::invalid("name", "`bootstrap` is reserved"));
        }
        let known = match merchant_id {
            None => AdminRole::parse(role).is_some(),
            Some(_) => MerchantRole::parse(role).is_some(),
        };
        if !known {
            return Err(GatewayError::invalid(
                "role",
                "an operator token's role is one of admin, finance, ops, support, viewer; \
                 a merchant token's one of owner, finance, ops, viewer",
            ));
        }
        let secret = credentials::generate_admin_token();
        let token = self
            .store
            .create_api_token(
                &name,
                role,
                merchant_id,
                &credentials::hash_admin_token(secret.expose()),
            )
            .await?;
        Ok((token, secret))
    }

    pub async fn api_tokens(&self, page: &PageRequest) -> GatewayResult<Page<ApiToken>> {
        Ok(self.store.list_api_tokens(page).await?)
    }

    pub async fn revoke_api_token(&self, id: &str) -> GatewayResult<ApiToken> {
        Ok(self.store.revoke_api_token(id).await?)
    }

    // ---- audit -------------------------------------------------------------------

    /// A blank entry stamped with now and the request's origin.
    pub fn entry(&self, meta: &RequestMeta) -> NewAuditEntry {
        NewAuditEntry {
            at_ms: self.now_ms(),
            request_id: meta.request_id.clone(),
            source: Some(meta.source.clone()),
            ..Default::default()
        }
    }

    pub async fn audit(&self, entry: NewAuditEntry) -> GatewayResult<AuditEntry> {
        Ok(self.store.append_audit(entry).await?)
    }

    /// Sets the final outcome and `after` of the row a write's transaction carried
    /// (`gema_store::audit_scope`); `false` if the row is not there.
    pub async fn finish_audit(
        &self,
        id: &str,
        outcome: &str,
        after_json: Option<&str>,
    ) -> GatewayResult<bool> {
        Ok(self.store.finish_audit(id, outcome, after_json).await?)
    }

    pub async fn audit_log(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> GatewayResult<Page<AuditEntry>> {
        Ok(self.store.list_audit(filter, page).await?)
    }

    async fn audit_login(
        &self,
        email: &str,
        user_id: Option<&str>,
        outcome: &str,
        reason: Option<&str>,
        meta: &RequestMeta,
    ) -> GatewayResult<()> {
        metrics::counter!("gema_logins_total", "outcome" => outcome.to_owned()).increment(1);
        self.audit(NewAuditEntry {
            actor: user_id.map_or_else(|| format!("email:{email}"), |id| format!("user:{id}")),
            action: "auth.login".into(),
            target: Some(format!("email:{email}")),
            outcome: outcome.into(),
            after_json: reason.map(|r| serde_json::json!({ "reason": r }).to_string()),
            ..self.entry(meta)
        })
        .await?;
        Ok(())
    }
}

fn normalize_email(value: &str) -> GatewayResult<String> {
    match validate::email(Some(value))? {
        Some(email) => Ok(email.to_lowercase()),
        None => Err(GatewayError::invalid("email", "is required")),
    }
}

fn user_role(user: &User) -> GatewayResult<Role> {
    let role = match user.kind {
        UserKind::Admin => AdminRole::parse(&user.role).map(Role::Admin),
        UserKind::Merchant => MerchantRole::parse(&user.role).map(Role::Merchant),
    };
    role.ok_or_else(|| GatewayError::Internal(format!("user {} has unknown role", user.id)))
}
