//! Checking device secrets at the rate a connect storm asks for them.
//!
//! Each CONNECT costs one PBKDF2 verification (about 3 ms of one core). When a cell tower
//! comes back, thousands of soundboxes connect in the same seconds; measured on 2 cores with
//! 9,000 of them, verifying every CONNECT at once on the blocking pool put hundreds of
//! threads on two cores, the database's own threads starved, registry reads timed out, the
//! broker refused logins as "unavailable", the clients retried every 500 ms and each retry
//! paid the hash again: the fleet never came up.
//!
//! Two things stop that spiral:
//! - **At most one slow hash per core at a time.** The others wait their turn (within the
//!   broker's connect timeout) instead of taking CPU from everything else.
//! - **A secret verified once is recognised again without the slow hash** while the stored
//!   hash it was verified against is unchanged. What is remembered per device is that stored
//!   hash and an HMAC of the presented secret under a key that exists only in this process's
//!   memory. The stored hash is still read from the database on every login, so rotating
//!   (new salt, so a new stored hash), revoking (no hash) and disabling take effect at once,
//!   on every node, with nothing to invalidate. A wrong secret is never remembered and always
//!   pays the full hash, as does an unknown device (against a dummy hash).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ring::hmac;
use tokio::sync::Semaphore;

use super::{random_bytes, verify_device_secret};

/// Devices remembered at most; past it, one arbitrary entry is forgotten per new one. 200,000
/// entries are a few tens of MB.
const MAX_REMEMBERED: usize = 200_000;

/// Verifies device secrets with bounded concurrency and a memory of recent successes.
pub struct SecretVerifier {
    permits: Arc<Semaphore>,
    key: hmac::Key,
    remembered: Arc<Mutex<HashMap<String, Remembered>>>,
}

struct Remembered {
    /// The stored hash the secret was verified against.
    stored: String,
    /// HMAC of `device id ‖ 0 ‖ secret` under this process's key.
    tag: hmac::Tag,
}

impl std::fmt::Debug for SecretVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretVerifier")
            .field("permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Default for SecretVerifier {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::new(cores)
    }
}

/// Where an answer came from, for the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The presented secret matched the one verified earlier against the same stored hash.
    Remembered(bool),
    /// The slow hash was computed.
    Hashed(bool),
}

impl Verified {
    pub fn matches(self) -> bool {
        match self {
            Self::Remembered(m) | Self::Hashed(m) => m,
        }
    }
}

impl SecretVerifier {
    /// At most `concurrent_hashes` slow hashes run at once.
    pub fn new(concurrent_hashes: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrent_hashes.max(1))),
            key: hmac::Key::new(hmac::HMAC_SHA256, &random_bytes::<32>()),
            remembered: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Whether `presented` is the secret behind `stored` (the device's current stored hash).
    /// `stored` is `None` for an unknown device or a revoked credential: the dummy hash is
    /// verified instead, so the answer takes as long as for a wrong secret.
    ///
    /// A hash once started finishes, and a match is remembered, even if the caller stops
    /// waiting (the broker drops the login of a client that gave up): the client's next
    /// attempt then costs no hash. Its turn (the permit) is held until the hash ends.
    pub async fn verify(
        &self,
        device_id: &str,
        presented: &str,
        stored: Option<&str>,
        dummy: impl FnOnce() -> String,
    ) -> Result<Verified, tokio::task::JoinError> {
        let message = tagged_message(device_id, presented);
        if let Some(stored) = stored
            && recognises(&self.remembered, &self.key, device_id, stored, &message)
        {
            return Ok(Verified::Remembered(true));
        }
        let hash = stored.map_or_else(dummy, str::to_owned);
        let presented = presented.to_owned();
        // Never closed: the semaphore lives as long as `self`.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let remember = stored.is_some().then(|| {
            (
                self.remembered.clone(),
                self.key.clone(),
                device_id.to_owned(),
                message,
            )
        });
        let matches = tokio::task::spawn_blocking(move || {
            let matches = verify_device_secret(&presented, &hash);
            if matches && let Some((remembered, key, device_id, message)) = remember {
                remember_match(&remembered, &key, device_id, hash, &message);
            }
            drop(permit);
            matches
        })
        .await?;
        Ok(Verified::Hashed(matches))
    }
}

fn recognises(
    remembered: &Mutex<HashMap<String, Remembered>>,
    key: &hmac::Key,
    device_id: &str,
    stored: &str,
    message: &[u8],
) -> bool {
    crate::lock(remembered)
        .get(device_id)
        .is_some_and(|r| r.stored == stored && hmac::verify(key, message, r.tag.as_ref()).is_ok())
}

fn remember_match(
    remembered: &Mutex<HashMap<String, Remembered>>,
    key: &hmac::Key,
    device_id: String,
    stored: String,
    message: &[u8],
) {
    let tag = hmac::sign(key, message);
    let mut remembered = crate::lock(remembered);
    if remembered.len() >= MAX_REMEMBERED
        && !remembered.contains_key(&device_id)
        && let Some(victim) = remembered.keys().next().cloned()
    {
        remembered.remove(&victim);
    }
    remembered.insert(device_id, Remembered { stored, tag });
}

fn tagged_message(device_id: &str, presented: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(device_id.len() + 1 + presented.len());
    message.extend_from_slice(device_id.as_bytes());
    message.push(0);
    message.extend_from_slice(presented.as_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{generate_device_secret, hash_device_secret};

    fn dummy() -> String {
        hash_device_secret(&generate_device_secret())
    }

    #[tokio::test]
    async fn a_verified_secret_is_recognised_until_its_stored_hash_changes() {
        let verifier = SecretVerifier::new(1);
        let secret = generate_device_secret();
        let stored = hash_device_secret(&secret);
        let s = secret.expose();
        assert_eq!(
            verifier
                .verify("d1", s, Some(&stored), dummy)
                .await
                .unwrap(),
            Verified::Hashed(true)
        );
        assert_eq!(
            verifier
                .verify("d1", s, Some(&stored), dummy)
                .await
                .unwrap(),
            Verified::Remembered(true)
        );
        // A wrong secret is not taken from memory; it pays the hash and fails.
        assert_eq!(
            verifier
                .verify("d1", "wrong", Some(&stored), dummy)
                .await
                .unwrap(),
            Verified::Hashed(false)
        );
        // The same secret under another device id is not recognised.
        assert_eq!(
            verifier
                .verify("d2", s, Some(&stored), dummy)
                .await
                .unwrap(),
            Verified::Hashed(true)
        );
        // Rotated: the old secret against the new stored hash is hashed and refused.
        let rotated = generate_device_secret();
        let new_stored = hash_device_secret(&rotated);
        assert_eq!(
            verifier
                .verify("d1", s, Some(&new_stored), dummy)
                .await
                .unwrap(),
            Verified::Hashed(false)
        );
        // Revoked (no stored hash): refused, even though the secret was remembered.
        assert_eq!(
            verifier.verify("d1", s, None, dummy).await.unwrap(),
            Verified::Hashed(false)
        );
    }

    #[tokio::test]
    async fn memory_is_bounded() {
        let verifier = SecretVerifier::new(1);
        let stored = "pbkdf2-sha256$1$c2FsdA$aGFzaA";
        for i in 0..(MAX_REMEMBERED + 10) {
            remember_match(
                &verifier.remembered,
                &verifier.key,
                format!("d{i}"),
                stored.to_owned(),
                b"m",
            );
        }
        assert_eq!(crate::lock(&verifier.remembered).len(), MAX_REMEMBERED);
    }
}
