//! People: login and sessions, second factor, users and API tokens.

use gema_gateway::auth::{IssuedTokens, SecondFactor};
use gema_gateway::credentials::SecretString;
use gema_store as store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::timestamps::rfc3339_ms;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// The six-digit code, for an account with TOTP on.
    pub totp_code: Option<String>,
    /// Instead of `totp_code`: a one-time recovery code.
    #[schema(value_type = Option<String>)]
    pub recovery_code: Option<SecretString>,
}

impl Login {
    pub fn second_factor(&self) -> Option<SecondFactor> {
        second_factor(self.totp_code.clone(), self.recovery_code.clone())
    }
}

fn second_factor(code: Option<String>, recovery: Option<SecretString>) -> Option<SecondFactor> {
    match (code, recovery) {
        (Some(code), _) => Some(SecondFactor::Code(code)),
        (None, Some(recovery)) => Some(SecondFactor::Recovery(recovery)),
        (None, None) => None,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    pub code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorBody {
    pub totp_code: Option<String>,
    #[schema(value_type = Option<String>)]
    pub recovery_code: Option<SecretString>,
}

impl SecondFactorBody {
    /// `None` when the body carries neither a code nor a recovery code.
    pub fn second_factor(self) -> Option<SecondFactor> {
        second_factor(self.totp_code, self.recovery_code)
    }
}

/// Load `secret` (or `uri` as a QR code) into an authenticator app, then confirm with a
/// code. Shown only in this response.
#[derive(Serialize, ToSchema)]
pub struct TotpSetupView {
    pub secret: String,
    pub uri: String,
}

/// Neither the secret nor the URI that carries it.
impl std::fmt::Debug for TotpSetupView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpSetupView").finish_non_exhaustive()
    }
}

/// One-time recovery codes, each good for one login without the app. Shown only here.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// How many codes, never the codes.
impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryCodes")
            .field("count", &self.recovery_codes.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
}

/// A token pair, shown only in this response. Send the access token as
/// `Authorization: Bearer <access_token>`; trade the refresh token (once) for a new pair.
#[derive(Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// Seconds the refresh token lives.
    pub refresh_expires_in: u64,
    pub session_id: String,
    pub user: User,
}

/// The session and its user, never the tokens.
impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("session_id", &self.session_id)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl From<IssuedTokens> for TokenPair {
    fn from(t: IssuedTokens) -> Self {
        TokenPair {
            access_token: t.access_token.expose().to_owned(),
            refresh_token: t.refresh_token.expose().to_owned(),
            token_type: "Bearer",
            expires_in: t.access_expires_in.as_secs(),
            refresh_expires_in: t.refresh_expires_in.as_secs(),
            session_id: t.session.id,
            user: t.user.into(),
        }
    }
}

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// `user:<id>` or `token:<name>`.
    pub actor: String,
    /// `admin:<role>` or `merchant:<role>`.
    pub role: String,
    pub merchant_id: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
}

/// One login session (a token pair that can still be refreshed).
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub id: String,
    pub created_at: String,
    pub access_expires_at: String,
    pub refresh_expires_at: String,
    pub user_agent: Option<String>,
    pub source: Option<String>,
    /// Whether this is the session of the token making the request.
    pub current: bool,
}

impl Session {
    /// `current_session` is the session of the caller's token, if it has one.
    pub fn new(s: store::AuthSession, current_session: Option<&str>) -> Self {
        Session {
            current: current_session == Some(s.id.as_str()),
            id: s.id,
            created_at: rfc3339_ms(s.created_ms),
            access_expires_at: rfc3339_ms(s.access_expires_ms),
            refresh_expires_at: rfc3339_ms(s.refresh_expires_ms),
            user_agent: s.user_agent,
            source: s.source,
        }
    }
}

/// A user. The password (and its hash) never appears in any response.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    /// `admin` (an operator) or `merchant` (a merchant's staff).
    pub kind: String,
    /// Operators: admin, finance, ops, support, viewer. Merchant staff: owner, finance, ops,
    /// viewer.
    pub role: String,
    pub merchant_id: Option<String>,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<store::User> for User {
    fn from(u: store::User) -> Self {
        User {
            id: u.id,
            email: u.email,
            name: u.name,
            kind: u.kind.as_str().to_owned(),
            role: u.role,
            merchant_id: u.merchant_id,
            disabled: u.disabled_ms.is_some(),
            created_at: rfc3339_ms(u.created_ms),
            updated_at: rfc3339_ms(u.updated_ms),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    pub name: String,
    pub role: String,
    /// Makes a merchant user of this merchant; omit for an operator.
    pub merchant_id: Option<String>,
    /// At least 12 characters.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: String,
    /// Set for a merchant's token: it sees only that merchant's rows.
    pub merchant_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Recorded at most once a minute.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<gema_store::ApiToken> for ApiToken {
    fn from(t: gema_store::ApiToken) -> Self {
        ApiToken {
            id: t.id,
            name: t.name,
            role: t.role,
            merchant_id: t.merchant_id,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiToken {
    /// Unique among active tokens; letters, digits, `-`, `_`, `.`.
    pub name: String,
    pub role: String,
    pub merchant_id: Option<String>,
}

/// The new token: `token` is shown only in this response.
#[derive(Serialize, ToSchema)]
pub struct IssuedApiToken {
    pub token: String,
    #[serde(flatten)]
    pub api_token: ApiToken,
}

/// The token's row, never the token.
impl std::fmt::Debug for IssuedApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedApiToken")
            .field("api_token", &self.api_token)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_that_carry_a_secret_never_print_it_in_debug() {
        let user = User {
            id: "usr_1".into(),
            email: "ops@gema.test".into(),
            name: "ops".into(),
            kind: "admin".into(),
            role: "ops".into(),
            merchant_id: None,
            disabled: false,
            created_at: String::new(),
            updated_at: String::new(),
        };
        let pair = TokenPair {
            access_token: "gat_access-secret".into(),
            refresh_token: "grt_refresh-secret".into(),
            token_type: "Bearer",
            expires_in: 900,
            refresh_expires_in: 86_400,
            session_id: "ses_1".into(),
            user,
        };
        let setup = TotpSetupView {
            secret: "JBSWY3DPEHPK3PXP".into(),
            uri: "otpauth://totp/gema?secret=JBSWY3DPEHPK3PXP".into(),
        };
        let codes = RecoveryCodes {
            recovery_codes: vec!["recovery-one".into()],
        };
        let token = IssuedApiToken {
            token: "gema_api-token-secret".into(),
            api_token: ApiToken {
                id: "tok_1".into(),
                name: "backend".into(),
                role: "ops".into(),
                merchant_id: None,
                created_at: OffsetDateTime::UNIX_EPOCH,
                last_used_at: None,
                revoked_at: None,
            },
        };
        let shown = format!("{pair:?} {setup:?} {codes:?} {token:?}");
        for secret in [
            "access-secret",
            "refresh-secret",
            "JBSWY3DPEHPK3PXP",
            "recovery-one",
            "api-token-secret",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("ses_1") && shown.contains("tok_1"),
            "{shown}"
        );
    }
}
