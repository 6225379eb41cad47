//! Provisioning by claim: an operator creates a claim for a production batch (a secret, the
//! serials it may provision, a use limit, an expiry); a factory-fresh device connects with
//! it (MQTT user name `claim:<claim id>`, client id = its serial), asks on
//! `provisioning/<serial>/up` and gets its own device id and secret (and a certificate if it
//! sent a CSR) on `provisioning/<serial>/down`; then it reconnects as itself. The wire
//! contract is `gema_firmware_protocol::claim`.
//!
//! This service decides; it does no I/O of its own: the binary carries a claim session's
//! request here ([`Claims::handle_request`]) and publishes the bytes it returns. Each serial
//! is provisioned once and a claim's use limit and expiry hold under concurrency because the
//! store does the whole provisioning in one transaction with a conditional update
//! (`gema_store::claim`). Every provisioning is audited (actor `claim:<claim id>`, action
//! `device.provision_by_claim`, in the provisioning's own transaction), and so is every
//! refusal; a second attempt for a serial is logged at warn and counted
//! (`gema_claim_provisionings_total{outcome="serial_taken"}`), the alert an operator watches.
//! Provisioned devices start unbound: a technician binds them.
//!
//! The claim secret exists in clear only in the response that creates the claim; the store
//! keeps its hash (the device secrets' PBKDF2). A device secret issued here exists in clear
//! only in the answer published to the claim session. Neither is ever logged.

use std::sync::Arc;

use gema_firmware_protocol::claim::{
    self as wire, ProvisionRequest, ProvisionResponse, RefusalReason,
};
use gema_store::{
    Claim, ClaimProvisioning, ClaimRefusal, ClaimSerials, ClaimStatus, NewAuditEntry, NewClaim,
    Page, PageRequest, ProvisionByClaim, Store, StoreError,
};
use time::OffsetDateTime;

use crate::certificates::DeviceCertificates;
use crate::clock::Clock;
use crate::credentials::{self, SecretString, SecretVerifier};
use crate::error::{GatewayError, GatewayResult};

const NAME_MAX: usize = 100;
/// Most serials in a claim's list.
pub const MAX_LISTED_SERIALS: usize = 10_000;
/// Largest use limit.
pub const MAX_USES: i64 = 1_000_000;
/// Furthest expiry from now.
pub const MAX_LIFETIME: time::Duration = time::Duration::days(5 * 366);
/// The audit action of a provisioning.
pub const AUDIT_ACTION: &str = "device.provision_by_claim";

/// A claim as the operator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimInput {
    pub name: String,
    /// A glob over the serial (`*` any run, `?` one character). Exactly one of this and
    /// `serials`.
    pub serial_pattern: Option<String>,
    pub serials: Option<Vec<String>>,
    pub max_uses: i64,
    pub expires_at: OffsetDateTime,
}

/// A claim just created, with its secret: shown to the caller exactly once.
#[derive(Debug, Clone)]
pub struct IssuedClaim {
    pub claim: Claim,
    /// The MQTT user name devices use with it: `claim:<id>`.
    pub username: String,
    pub secret: SecretString,
}

/// The result of checking a claim session's password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimCheck {
    Valid,
    Wrong,
    Unknown,
    Revoked,
    Expired,
    /// Every use is taken (a device that got its identity reconnects as itself).
    Exhausted,
}

/// The claim service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Claims {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    certificates: DeviceCertificates,
    /// Checks claim secrets: one batch's devices present the same secret, so after the
    /// first the slow hash is skipped.
    verifier: Arc<SecretVerifier>,
}

impl Claims {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        certificates: DeviceCertificates,
    ) -> Self {
        Self {
            store,
            clock,
            certificates,
            verifier: Arc::default(),
        }
    }

    /// Creates a claim and its secret (an audited write when called from the API).
    #[tracing::instrument(skip_all)]
    pub async fn create(&self, input: ClaimInput) -> GatewayResult<IssuedClaim> {
        let name = input.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > NAME_MAX {
            return Err(GatewayError::invalid("name", "must be 1-100 characters"));
        }
        let serials = match (input.serial_pattern, input.serials) {
            (Some(pattern), None) => {
                validate_pattern(&pattern)?;
                ClaimSerials::Pattern(pattern)
            }
            (None, Some(list)) => {
                if list.is_empty() || list.len() > MAX_LISTED_SERIALS {
                    return Err(GatewayError::invalid(
                        "serials",
                        format!("must list 1-{MAX_LISTED_SERIALS} serials"),
                    ));
                }
                let mut seen = std::collections::BTreeSet::new();
                for serial in &list {
                    wire::validate_serial(serial).map_err(|e| {
                        GatewayError::invalid("serials", format!("{serial:?}: {e}"))
                    })?;
                    if !seen.insert(serial.as_str()) {
                        return Err(GatewayError::invalid(
                            "serials",
                            format!("{serial:?} is listed twice"),
                        ));
                    }
                }
                ClaimSerials::List(list)
            }
            (Some(_), Some(_)) => {
                return Err(GatewayError::invalid(
                    "serial_pattern",
                    "give either serial_pattern or serials, not both",
                ));
            }
            (None, None) => {
                return Err(GatewayError::invalid(
                    "serial_pattern",
                    "give serial_pattern (a glob such as SB24A-*) or serials (a list)",
                ));
            }
        };
        if !(1..=MAX_USES).contains(&input.max_uses) {
            return Err(GatewayError::invalid(
                "max_uses",
                format!("must be 1-{MAX_USES}"),
            ));
        }
        let now = self.clock.now_utc();
        if input.expires_at <= now || input.expires_at > now + MAX_LIFETIME {
            return Err(GatewayError::invalid(
                "expires_at",
                "must be in the future and at most five years away",
            ));
        }
        let secret = credentials::generate_device_secret();
        let secret_hash = hash_off_thread(&secret).await?;
        let claim = self
            .store
            .create_claim(NewClaim {
                name,
                secret_hash,
                serials,
                max_uses: input.max_uses,
                expires_at_ms: crate::clock::unix_ms(input.expires_at),
            })
            .await?;
        tracing::info!(claim_id = %claim.id, max_uses = claim.max_uses, "claim created");
        Ok(IssuedClaim {
            username: wire::claim_username(&claim.id),
            claim,
            secret,
        })
    }

    pub async fn claim(&self, id: &str) -> GatewayResult<Claim> {
        Ok(self.store.get_claim(id).await?)
    }

    pub async fn list(&self, page: &PageRequest) -> GatewayResult<Page<Claim>> {
        Ok(self.store.list_claims(page).await?)
    }

    /// Revokes the claim: no device connects with it any more. Devices it provisioned keep
    /// their own credentials.
    #[tracing::instrument(skip_all, fields(claim_id = id))]
    pub async fn revoke(&self, id: &str) -> GatewayResult<Claim> {
        let claim = self.store.revoke_claim(id).await?;
        tracing::info!(claim_id = id, "claim revoked");
        Ok(claim)
    }

    pub async fn provisionings(&self, id: &str) -> GatewayResult<Vec<ClaimProvisioning>> {
        Ok(self.store.claim_provisionings(id).await?)
    }

    /// Lets a serial be provisioned by claim once more (a device reset to factory): its
    /// device keeps its id and gets a new secret.
    #[tracing::instrument(skip_all, fields(serial = serial))]
    pub async fn allow_reprovision(&self, serial: &str) -> GatewayResult<ClaimProvisioning> {
        let allowed = self.store.allow_reprovision(serial).await?;
        tracing::info!(serial, device_id = %allowed.device_id, "serial may be provisioned again");
        Ok(allowed)
    }

    /// Checks a claim session's password: the secret, and that the claim can still
    /// provision (active, unexpired, uses left). A wrong secret and an unknown claim cost
    /// the same hash.
    #[tracing::instrument(skip_all, fields(claim_id = claim_id))]
    pub async fn check_secret(&self, claim_id: &str, secret: &str) -> GatewayResult<ClaimCheck> {
        let claim = match self.store.get_claim(claim_id).await {
            Ok(claim) => Some(claim),
            Err(StoreError::NotFound { .. }) => None,
            Err(other) => return Err(other.into()),
        };
        let stored = match &claim {
            Some(_) => Some(self.store.claim_secret_hash(claim_id).await?),
            None => None,
        };
        let key = wire::claim_username(claim_id);
        let verified = self
            .verifier
            .verify(&key, secret, stored.as_deref(), || {
                credentials::hash_device_secret(&credentials::generate_device_secret())
            })
            .await
            .map_err(|e| GatewayError::Internal(format!("claim secret check task: {e}")))?;
        let Some(claim) = claim else {
            return Ok(ClaimCheck::Unknown);
        };
        Ok(if !verified.matches() {
            ClaimCheck::Wrong
        } else if claim.status == ClaimStatus::Revoked {
            ClaimCheck::Revoked
        } else if crate::clock::unix_ms(claim.expires_at) <= self.clock.now_ms() {
            ClaimCheck::Expired
        } else if claim.uses >= claim.max_uses {
            ClaimCheck::Exhausted
        } else {
            ClaimCheck::Valid
        })
    }

    /// Answers one request a claim session published: the bytes to publish back on
    /// `provisioning/<serial>/down`. `session_serial` is the session's client id; a request
    /// naming another serial is refused.
    #[tracing::instrument(skip_all, fields(claim_id = claim_id, serial = session_serial))]
    pub async fn handle_request(
        &self,
        claim_id: &str,
        session_serial: &str,
        payload: &[u8],
    ) -> ProvisionResponse {
        let request = match wire::decode_request(payload) {
            Ok(request) => request,
            Err(e) => {
                tracing::info!(error = %e, "provisioning request refused: malformed");
                return self
                    .refuse(claim_id, session_serial, "", RefusalReason::InvalidRequest)
                    .await;
            }
        };
        if request.serial != session_serial {
            tracing::info!("provisioning request refused: it names another serial");
            return self
                .refuse(
                    claim_id,
                    session_serial,
                    &request.msg_id,
                    RefusalReason::InvalidRequest,
                )
                .await;
        }
        match self.provision(claim_id, &request).await {
            Ok(response) => response,
            Err(reason) => {
                self.refuse(claim_id, session_serial, &request.msg_id, reason)
                    .await
            }
        }
    }

    async fn provision(
        &self,
        claim_id: &str,
        request: &ProvisionRequest,
    ) -> Result<ProvisionResponse, RefusalReason> {
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "provisioning by claim failed");
            RefusalReason::Unavailable
        };
        let claim = match self.store.get_claim(claim_id).await {
            Ok(claim) => claim,
            Err(StoreError::NotFound { .. }) => return Err(RefusalReason::ClaimRevoked),
            Err(e) => return Err(unavailable(&e)),
        };
        if !serial_allowed(&claim.serials, &request.serial) {
            return Err(RefusalReason::SerialNotAllowed);
        }
        if let Some(csr) = &request.csr_pem
            && let Err(e) = self.certificates.check_claim_csr(csr, &request.serial)
        {
            tracing::info!(error = %e, "provisioning request refused: CSR");
            return Err(RefusalReason::InvalidCsr);
        }
        let secret = credentials::generate_device_secret();
        let secret_hash = hash_off_thread(&secret)
            .await
            .map_err(|e| unavailable(&e))?;
        let entry = NewAuditEntry {
            at_ms: self.clock.now_ms(),
            actor: wire::claim_username(claim_id),
            action: AUDIT_ACTION.into(),
            target: Some(request.serial.clone()),
            outcome: String::new(),
            source: Some("mqtt".into()),
            ..Default::default()
        };
        let attempt = ProvisionByClaim {
            claim_id: claim_id.to_owned(),
            serial: request.serial.clone(),
            model: request.model.clone(),
            firmware_version: request.firmware_version.clone(),
            secret_hash,
            now_ms: self.clock.now_ms(),
        };
        let (result, audit_id) =
            gema_store::audit_scope(entry, self.store.provision_by_claim(attempt)).await;
        let provisioned = match result {
            Ok(Ok(provisioned)) => provisioned,
            Ok(Err(refusal)) => return Err(reason_of(refusal)),
            Err(e) => return Err(unavailable(&e)),
        };
        let device_id = provisioned.device.id.clone();
        let certificate_pem = match &request.csr_pem {
            None => None,
            Some(csr) => match self.certificates.issue_by_claim(&device_id, csr).await {
                Ok(issued) => Some(format!("{}{}", issued.certificate_pem, issued.chain_pem)),
                Err(e) => {
                    // The device has its secret; it can ask for a certificate later.
                    tracing::warn!(device_id, error = %e, "provisioned without the certificate asked for");
                    None
                }
            },
        };
        let outcome = if provisioned.reprovisioned {
            "reprovisioned"
        } else {
            "provisioned"
        };
        if let Some(audit_id) = audit_id {
            let after = serde_json::json!({
                "device_id": device_id,
                "claim_id": claim_id,
                "reprovisioned": provisioned.reprovisioned,
                "claim_uses": provisioned.uses,
                "certificate": certificate_pem.is_some(),
            })
            .to_string();
            if let Err(e) = self.store.finish_audit(&audit_id, "ok", Some(&after)).await {
                tracing::error!(error = %e, "finishing a provisioning's audit row");
            }
        }
        metrics::counter!("gema_claim_provisionings_total", "outcome" => outcome).increment(1);
        tracing::info!(
            device_id,
            reprovisioned = provisioned.reprovisioned,
            uses = provisioned.uses,
            "device provisioned by claim"
        );
        Ok(ProvisionResponse::Provisioned {
            version: gema_firmware_protocol::PROTOCOL_VERSION,
            request_msg_id: request.msg_id.clone(),
            device_id,
            secret: secret.expose().to_owned(),
            certificate_pem,
        })
    }

    /// Records and counts a refusal; the answer to publish.
    async fn refuse(
        &self,
        claim_id: &str,
        serial: &str,
        request_msg_id: &str,
        reason: RefusalReason,
    ) -> ProvisionResponse {
        metrics::counter!("gema_claim_provisionings_total", "outcome" => reason.as_str())
            .increment(1);
        if reason == RefusalReason::SerialTaken {
            tracing::warn!(
                claim_id,
                serial,
                "a serial already provisioned asked again and was refused (a cloned or reset \
                 device?); allow it with `POST /api/v1/claims/provisionings/{{serial}}/allow-reprovision`"
            );
        } else {
            tracing::info!(
                claim_id,
                serial,
                reason = reason.as_str(),
                "provisioning refused"
            );
        }
        let entry = NewAuditEntry {
            at_ms: self.clock.now_ms(),
            actor: wire::claim_username(claim_id),
            action: AUDIT_ACTION.into(),
            target: Some(serial.to_owned()),
            outcome: format!("refused:{}", reason.as_str()),
            source: Some("mqtt".into()),
            ..Default::default()
        };
        if let Err(e) = self.store.append_audit(entry).await {
            tracing::error!(error = %e, "recording a refused provisioning");
        }
        ProvisionResponse::refused(request_msg_id, reason)
    }
}

fn reason_of(refusal: ClaimRefusal) -> RefusalReason {
    match refusal {
        ClaimRefusal::UnknownClaim | ClaimRefusal::Revoked => RefusalReason::ClaimRevoked,
        ClaimRefusal::Expired => RefusalReason::ClaimExpired,
        ClaimRefusal::Exhausted => RefusalReason::ClaimExhausted,
        ClaimRefusal::SerialTaken => RefusalReason::SerialTaken,
    }
}

/// PBKDF2 is milliseconds of CPU: never on the async threads.
async fn hash_off_thread(secret: &SecretString) -> GatewayResult<String> {
    let secret = secret.clone();
    tokio::task::spawn_blocking(move || credentials::hash_device_secret(&secret))
        .await
        .map_err(|e| GatewayError::Internal(format!("hashing a secret: {e}")))
}

fn validate_pattern(pattern: &str) -> GatewayResult<()> {
    let literal: String = pattern
        .chars()
        .filter(|c| !matches!(c, '*' | '?'))
        .collect();
    let alphabet_ok = pattern
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*' | b'?'));
    if pattern.is_empty() || pattern.len() > wire::MAX_SERIAL_LEN || !alphabet_ok {
        return Err(GatewayError::invalid(
            "serial_pattern",
            "must be 1-64 characters of ASCII letters, digits, '-', '_', '.', and the \
             wildcards '*' and '?'",
        ));
    }
    if literal.is_empty() {
        return Err(GatewayError::invalid(
            "serial_pattern",
            "must hold some literal characters (a pattern of wildcards alone admits any serial)",
        ));
    }
    Ok(())
}

/// Whether the claim may provision `serial`.
pub fn serial_allowed(serials: &ClaimSerials, serial: &str) -> bool {
    match serials {
        ClaimSerials::Pattern(pattern) => glob_matches(pattern.as_bytes(), serial.as_bytes()),
        ClaimSerials::List(list) => list.iter().any(|s| s == serial),
    }
}

/// `*` matches any run of bytes (also none), `?` exactly one; everything else itself.
/// Iterative with one backtrack point, so linear-ish and never recursive.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The glob's meaning, written the obvious (exponential) way.
    fn reference_glob(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|i| reference_glob(rest, &text[i..])),
            Some((&c, rest)) => text
                .split_first()
                .is_some_and(|(&t, tail)| (c == b'?' || c == t) && reference_glob(rest, tail)),
        }
    }

    proptest::proptest! {
        /// A claim's pattern (an operator's) against a serial (a device's CONNECT): the
        /// iterative matcher answers as the reference does, and never panics.
        #[test]
        fn the_glob_matches_as_its_reference_does(
            pattern in "[ab*?]{0,8}",
            serial in "[ab]{0,10}",
        ) {
            proptest::prop_assert_eq!(
                glob_matches(pattern.as_bytes(), serial.as_bytes()),
                reference_glob(pattern.as_bytes(), serial.as_bytes())
            );
        }

        #[test]
        fn the_glob_never_panics(pattern in "\\PC{0,12}", serial in "\\PC{0,16}") {
            let _ = glob_matches(pattern.as_bytes(), serial.as_bytes());
        }
    }

    #[test]
    fn globs_match_serials() {
        let yes = |p: &str, s: &str| glob_matches(p.as_bytes(), s.as_bytes());
        assert!(yes("SB24A-*", "SB24A-000123"));
        assert!(yes("SB24A-*", "SB24A-"));
        assert!(!yes("SB24A-*", "SB24B-000123"));
        assert!(yes("SB??-1", "SBxy-1"));
        assert!(!yes("SB??-1", "SBx-1"));
        assert!(yes("*-00*", "SB-0012"));
        assert!(!yes("SB", "SB1"));
        assert!(yes("a*b*c", "aXXbYYc"));
        assert!(!yes("a*b*c", "aXXbYY"));
    }

    #[test]
    fn listed_serials_match_exactly() {
        let list = ClaimSerials::List(vec!["A-1".into(), "A-2".into()]);
        assert!(serial_allowed(&list, "A-1"));
        assert!(!serial_allowed(&list, "A-3"));
        assert!(!serial_allowed(&list, "A-"));
    }

    #[test]
    fn patterns_need_literal_characters() {
        assert!(validate_pattern("SB24A-*").is_ok());
        assert!(validate_pattern("*").is_err());
        assert!(validate_pattern("**?").is_err());
        assert!(validate_pattern("a/b*").is_err());
        assert!(validate_pattern("").is_err());
    }
}
