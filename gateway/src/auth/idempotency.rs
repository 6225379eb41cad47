//! `Idempotency-Key`: a write's first response is kept with a hash of its request and
//! replayed for retries with the same key (per caller) for [`super::AuthSettings::idempotency_ttl`].

use std::time::Duration;

use gema_store::IdempotencyBegin;
use ring::digest;

use super::Auth;
use crate::credentials::hex;
use crate::error::GatewayResult;

/// Longest accepted key.
pub const KEY_MAX: usize = 255;

/// The hash that identifies "the same request": method, path with query, and body.
pub fn request_hash(method: &str, path_and_query: &str, body: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [
        method.as_bytes(),
        b"\n",
        path_and_query.as_bytes(),
        b"\n",
        body,
    ] {
        ctx.update(part);
    }
    hex(ctx.finish().as_ref())
}

/// Whether a client-chosen key is acceptable: 1–255 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= KEY_MAX && key.bytes().all(|b| b.is_ascii_graphic())
}

impl Auth {
    /// Claims the key, or says what to answer instead. While the first request with the key
    /// is running, waits up to `idempotency_wait` for its response before answering
    /// `InProgress`, so concurrent retries get the same answer as the first.
    pub async fn begin_idempotency(
        &self,
        actor: &str,
        key: &str,
        request_hash: &str,
    ) -> GatewayResult<IdempotencyBegin> {
        let deadline = tokio::time::Instant::now() + self.settings.idempotency_wait;
        loop {
            let now = self.now_ms();
            let ttl = self.settings.idempotency_ttl.as_millis() as i64;
            let outcome = self
                .store
                .begin_idempotency(actor, key, request_hash, now, now - ttl)
                .await?;
            if outcome != IdempotencyBegin::InProgress || tokio::time::Instant::now() >= deadline {
                return Ok(outcome);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn finish_idempotency(
        &self,
        actor: &str,
        key: &str,
        status: u16,
        body: Option<&str>,
    ) -> GatewayResult<()> {
        Ok(self
            .store
            .finish_idempotency(actor, key, status, body)
            .await?)
    }

    pub async fn abandon_idempotency(&self, actor: &str, key: &str) -> GatewayResult<()> {
        Ok(self.store.abandon_idempotency(actor, key).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_hash_covers_method_path_and_body() {
        let base = request_hash("POST", "/api/v1/transactions", b"{}");
        assert_eq!(base, request_hash("POST", "/api/v1/transactions", b"{}"));
        assert_ne!(base, request_hash("PATCH", "/api/v1/transactions", b"{}"));
        assert_ne!(
            base,
            request_hash("POST", "/api/v1/transactions?x=1", b"{}")
        );
        assert_ne!(base, request_hash("POST", "/api/v1/transactions", b"{ }"));
    }

    proptest! {
        #[test]
        fn any_key_is_judged_without_panicking(key in ".{0,300}") {
            let ok = valid_key(&key);
            prop_assert_eq!(
                ok,
                !key.is_empty() && key.len() <= KEY_MAX && key.bytes().all(|b| b.is_ascii_graphic())
            );
        }
    }
}
