//! Device secrets and admin tokens: generation, hashing, verification.
//!
//! Device secrets are 160-bit random strings, shown once and stored only as a salted
//! PBKDF2-HMAC-SHA256 hash (`ring`), in the self-describing form
//! `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>` so the work factor can be raised later
//! without invalidating issued secrets.
//!
//! Why [`DEVICE_SECRET_PBKDF2_ITERATIONS`] is 10,000 and not a password-grade 600,000: the
//! secret is 160 random bits, so no work factor is what protects it from guessing; the hash
//! only has to make a stolen database useless, which any salted one-way hash of such a value
//! does. Meanwhile every device connect pays for one verification, and a cell-tower restart
//! reconnects thousands of devices in the same minute on a 2-core machine. 10,000 rounds cost
//! about 3 ms on one core here (see the closing note of the foundation issue).
//!
//! Admin API tokens are 256-bit random values; they are stored as a plain SHA-256, because
//! they are looked up by hash on every request and have the same entropy argument.

use std::fmt;
use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, pbkdf2};

mod verifier;
pub use verifier::{SecretVerifier, Verified};

pub const DEVICE_SECRET_PBKDF2_ITERATIONS: u32 = 10_000;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
const SECRET_BYTES: usize = 20;
const SCHEME: &str = "pbkdf2-sha256";

/// A secret value that is never printed by `Debug` or `Display`. Read it with
/// [`SecretString::expose`] at the one place it must leave the process.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source failed");
    bytes
}

/// A new device secret: 160 random bits as 32 lower-case base32 characters (`a`–`z`,
/// `2`–`7`), easy to type into a device's setup screen and safe in any MQTT client.
pub fn generate_device_secret() -> SecretString {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bytes = random_bytes::<SECRET_BYTES>();
    let mut out = String::with_capacity(32);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    SecretString(out)
}

/// Hashes a device secret with a fresh salt.
pub fn hash_device_secret(secret: &SecretString) -> String {
    hash_with(
        secret.expose(),
        DEVICE_SECRET_PBKDF2_ITERATIONS,
        &random_bytes::<SALT_LEN>(),
    )
}

pub(crate) fn hash_with(secret: &str, iterations: u32, salt: &[u8]) -> String {
    let mut hash = [0u8; HASH_LEN];
    let rounds = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        secret.as_bytes(),
        &mut hash,
    );
    format!(
        "{SCHEME}${iterations}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(hash)
    )
}

/// Checks a presented secret against a stored hash, in constant time. A stored value that
/// is not in the expected form never verifies.
pub fn verify_device_secret(presented: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(iterations), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(hash)) = (
        iterations.parse::<NonZeroU32>(),
        STANDARD_NO_PAD.decode(salt),
        STANDARD_NO_PAD.decode(hash),
    ) else {
        return false;
    };
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        presented.as_bytes(),
        &hash,
    )
    .is_ok()
}

/// A new admin API token: `gema_` and 256 random bits, base64url.
pub fn generate_admin_token() -> SecretString {
    SecretString(format!(
        "gema_{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    ))
}

/// The stored form of an admin token: hex SHA-256.
pub fn hash_admin_token(token: &str) -> String {
    hex(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// Lower-case hex, as provider signatures and stored token hashes are written.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn device_secrets_are_32_base32_characters_and_differ() {
        let a = generate_device_secret();
        let b = generate_device_secret();
        assert_eq!(a.expose().len(), 32);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c))
        );
        assert_ne!(a, b);
    }

    #[test]
    fn a_hash_verifies_its_secret_only() {
        let secret = generate_device_secret();
        let stored = hash_device_secret(&secret);
        assert!(stored.starts_with("pbkdf2-sha256$10000$"));
        assert!(!stored.contains(secret.expose()));
        assert!(verify_device_secret(secret.expose(), &stored));
        assert!(!verify_device_secret("wrong", &stored));
        assert!(!verify_device_secret(
            generate_device_secret().expose(),
            &stored
        ));
    }

    #[test]
    fn the_same_secret_hashes_differently_each_time() {
        let secret = generate_device_secret();
        assert_ne!(hash_device_secret(&secret), hash_device_secret(&secret));
    }

    #[test]
    fn a_known_vector_verifies() {
        // The published PBKDF2-HMAC-SHA256 vector: "password", salt "salt", 1 round, 32 bytes.
        let stored = format!(
            "pbkdf2-sha256$1${}${}",
            STANDARD_NO_PAD.encode(b"salt"),
            STANDARD_NO_PAD.encode(hex_literal(
                "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
            ))
        );
        assert!(verify_device_secret("password", &stored));
        assert_eq!(hash_with("password", 1, b"salt"), stored);
    }

    fn hex_literal(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let secret = generate_device_secret();
        assert!(!format!("{secret:?}").contains(secret.expose()));
    }

    #[test]
    fn admin_tokens_hash_to_hex_sha256() {
        let token = generate_admin_token();
        assert!(token.expose().starts_with("gema_"));
        assert_eq!(
            hash_admin_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    proptest! {
        #[test]
        fn malformed_stored_hashes_never_verify_or_panic(stored in ".{0,120}", presented in ".{0,40}") {
            prop_assume!(!stored.starts_with("pbkdf2-sha256$"));
            prop_assert!(!verify_device_secret(&presented, &stored));
        }

        #[test]
        fn mangled_hash_fields_never_verify(iterations in "[0-9a-z]{0,6}", salt in "[A-Za-z0-9+/=]{0,30}", hash in "[A-Za-z0-9+/=]{0,50}") {
            let stored = format!("pbkdf2-sha256${iterations}${salt}${hash}");
            prop_assert!(!verify_device_secret("secret", &stored));
        }
    }
}
