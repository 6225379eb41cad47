//! The certificate revocation list held in memory: fingerprints of revoked and superseded
//! device certificates, shared by the certificate service, the registry (a revoked device's
//! certificates) and the broker's authenticator. Its own module so that `registry` and
//! `certificates` both use it without importing each other.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use gema_store::Store;

use crate::error::GatewayResult;

/// Each refresh looks back this much further than its last look (clock skew between nodes
/// and transactions that committed late).
const REFRESH_OVERLAP_MS: i64 = 60_000;

/// Fingerprints of revoked and superseded certificates, shared by every holder. Cheap to
/// clone.
#[derive(Debug, Clone, Default)]
pub struct RevocationList {
    inner: Arc<RwLock<Revoked>>,
}

#[derive(Debug, Default)]
struct Revoked {
    fingerprints: HashSet<String>,
    /// The newest change seen, Unix ms.
    newest_ms: i64,
}

impl RevocationList {
    pub fn contains(&self, fingerprint: &str) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .fingerprints
            .contains(fingerprint)
    }

    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .fingerprints
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn insert(&self, fingerprints: impl IntoIterator<Item = String>) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.fingerprints.extend(fingerprints);
    }

    /// Reads the revocations since the last look (all of them the first time).
    pub async fn refresh(&self, store: &dyn Store) -> GatewayResult<usize> {
        let since = {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if inner.newest_ms == 0 {
                0
            } else {
                inner.newest_ms.saturating_sub(REFRESH_OVERLAP_MS)
            }
        };
        let found = store.revoked_device_certificates(since).await?;
        let count = found.len();
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for revoked in found {
            inner.newest_ms = inner.newest_ms.max(revoked.changed_at_ms);
            inner.fingerprints.insert(revoked.fingerprint);
        }
        Ok(count)
    }
}
