//! Password hashing for people: PBKDF2-HMAC-SHA256 (`ring`), 16-byte random salt, 32-byte
//! output, stored as `pbkdf2-sha256$<iterations>$<salt>$<hash>` (the device-secret form, so
//! the work factor travels with each hash and can be raised later). People choose guessable
//! passwords, so the iteration count is password-grade: 600,000 by default (OWASP's 2023
//! figure for PBKDF2-HMAC-SHA256). Hashing runs on tokio's blocking pool so a login never
//! stalls the async workers.

use crate::credentials::{self, SecretString};
use crate::error::{GatewayError, GatewayResult};

/// The default work factor.
pub const PASSWORD_PBKDF2_ITERATIONS: u32 = 600_000;
/// Shortest accepted password, in characters.
pub const PASSWORD_MIN_CHARS: usize = 12;
const PASSWORD_MAX_BYTES: usize = 1024;

/// Rejects passwords too short to resist guessing, or absurdly long ones.
pub fn check_password_rules(password: &SecretString) -> GatewayResult<()> {
    let value = password.expose();
    if value.chars().count() < PASSWORD_MIN_CHARS {
        return Err(GatewayError::invalid(
            "password",
            format!("must be at least {PASSWORD_MIN_CHARS} characters"),
        ));
    }
    if value.len() > PASSWORD_MAX_BYTES {
        return Err(GatewayError::invalid(
            "password",
            format!("must be at most {PASSWORD_MAX_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Hashes on the blocking pool.
pub async fn hash_password(password: SecretString, iterations: u32) -> GatewayResult<String> {
    tokio::task::spawn_blocking(move || {
        credentials::hash_with(
            password.expose(),
            iterations,
            &credentials::random_bytes::<16>(),
        )
    })
    .await
    .map_err(|e| GatewayError::Internal(format!("password hashing task: {e}")))
}

/// Verifies on the blocking pool, in constant time for a given stored hash.
pub async fn verify_password(password: SecretString, stored: String) -> GatewayResult<bool> {
    tokio::task::spawn_blocking(move || {
        credentials::verify_device_secret(password.expose(), &stored)
    })
    .await
    .map_err(|e| GatewayError::Internal(format!("password verification task: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_hash_verifies_only_its_password_and_states_its_work_factor() {
        let password = SecretString::new("correct horse battery".into());
        let stored = hash_password(password.clone(), 1_000).await.unwrap();
        assert!(stored.starts_with("pbkdf2-sha256$1000$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        assert!(verify_password(password, stored.clone()).await.unwrap());
        assert!(
            !verify_password(SecretString::new("correct horse battery!".into()), stored)
                .await
                .unwrap()
        );
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_password_rules(&SecretString::new("short".into())).is_err());
        assert!(check_password_rules(&SecretString::new("long enough pass".into())).is_ok());
    }
}
