//! Device certificates: signing devices' CSRs with the device CA, the certificates' record,
//! revocation, and the decision whether a certificate presented at CONNECT may be used.
//!
//! The revocation list is held in memory ([`RevocationList`]): loaded at start, updated at
//! once on this node when a certificate is revoked or superseded, and refreshed from the
//! database every [`REVOCATION_REFRESH`] so other nodes learn of revocations made here
//! (the same "data in tables, periodic recheck" rule as every cross-node change). The list
//! is the first gate at CONNECT; the certificate's row is read too, so a node whose list is
//! a few seconds behind still refuses a revoked certificate.
//!
//! Renewal: a device may hold several active certificates (a new one issued while it still
//! connects with the old). The old one keeps working until the device connects with a
//! newer one; from then on every older certificate is `superseded` and refused. Until then
//! it works until it expires.
//!
//! Renewal over MQTT ([`DeviceCertificates::renew`], a device's `cert_renew` uplink) is the
//! same issuance as the API's, with the device as the actor of its audit row: the CSR must
//! name the device, the device must be active, and a device gets at most one certificate
//! over MQTT per [`DeviceCertSettings::renew_interval`] (a device in a loop would otherwise
//! fill the table). Its refusals are reasons the device is told
//! ([`CertRenewRefusal`]), not errors; only a failure on Gema's side is an error, so the
//! uplink goes unacknowledged and the device asks again.
//!
//! Certificates' validity is wall-clock time (TLS checks it against the system clock), not
//! the injected `Clock`.
//!
//! Never logs a CSR, a certificate or a key; a CSR's faults are told back to the caller
//! naming the `csr` field.

use std::sync::Arc;
use std::time::Duration;

use gema_certs::{CsrError, DeviceCa, DeviceCsr};
use gema_firmware_protocol::CertRenewRefusal;
use gema_store::{
    AuthMethod, CertificateStatus, CredentialStatus, DeviceCertificate, DeviceStatus,
    NewAuditEntry, NewDeviceCertificate, Store, StoreError,
};

use crate::error::{GatewayError, GatewayResult};
use crate::registry::SecretCheck;
pub use crate::revocations::RevocationList;
use crate::transport::DeviceTransport;

/// How often each node re-reads the revocations made anywhere in the cluster.
pub const REVOCATION_REFRESH: Duration = Duration::from_secs(3);
/// A certificate's `not_before` is set this far back, for devices whose clock runs behind.
const BACKDATE: time::Duration = time::Duration::minutes(5);

/// The device CA and the rules for what it issues.
#[derive(Debug, Clone)]
pub struct DeviceCertSettings {
    /// `None`: the daemon can verify certificates (an operator's CA without its key) but
    /// not issue them.
    pub ca: Option<Arc<DeviceCa>>,
    /// How long an issued certificate is valid.
    pub validity: time::Duration,
    /// The revocation list; the binary hands the same one to the broker's authenticator.
    pub revocations: RevocationList,
    /// A device asking over MQTT within this long of its last certificate issued over MQTT
    /// is refused (`too_soon`).
    pub renew_interval: time::Duration,
}

impl Default for DeviceCertSettings {
    fn default() -> Self {
        Self {
            ca: None,
            validity: time::Duration::days(365),
            revocations: RevocationList::default(),
            renew_interval: time::Duration::minutes(1),
        }
    }
}

/// The audit action of issuing a certificate, the API's permission name for it.
const ISSUE_ACTION: &str = "device.credentials";

/// How a certificate was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuedVia {
    /// `POST /api/v1/devices/{id}/certificates`.
    Api,
    /// A `cert_renew` uplink.
    Mqtt,
}

impl IssuedVia {
    fn as_str(self) -> &'static str {
        match self {
            IssuedVia::Api => "api",
            IssuedVia::Mqtt => "mqtt",
        }
    }
}

/// A certificate just issued: its record and the PEM the device installs.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub record: DeviceCertificate,
    pub certificate_pem: String,
    /// The device CA's certificate.
    pub chain_pem: String,
}

/// The device certificate service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeviceCertificates {
    store: Arc<dyn Store>,
    /// Where live sessions are ended on revocation; `None` for the broker's authenticator,
    /// which only decides.
    transport: Option<Arc<dyn DeviceTransport>>,
    settings: DeviceCertSettings,
}

impl DeviceCertificates {
    pub fn new(
        store: Arc<dyn Store>,
        transport: Option<Arc<dyn DeviceTransport>>,
        settings: DeviceCertSettings,
    ) -> Self {
        Self {
            store,
            transport,
            settings,
        }
    }

    pub fn revocations(&self) -> &RevocationList {
        &self.settings.revocations
    }

    /// Whether this daemon can issue certificates (it holds a device CA's key).
    pub fn can_issue(&self) -> bool {
        self.settings.ca.is_some()
    }

    /// Signs `csr_pem` for the device (an audited write when called from the API).
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn issue(
        &self,
        device_id: &str,
        csr_pem: &str,
        via: IssuedVia,
    ) -> GatewayResult<IssuedCertificate> {
        let ca = self.ca()?;
        self.check_standing(device_id).await?;
        let csr = checked_csr(device_id, csr_pem)
            .map_err(|e| GatewayError::invalid("csr", e.to_string()))?;
        self.sign(&ca, device_id, &csr, via).await
    }

    /// A device's `cert_renew`: the same checks and signing as [`Self::issue`], plus the
    /// [`DeviceCertSettings::renew_interval`] limit, in an audit scope whose actor is
    /// `device:<id>` (source `mqtt`), so the certificate commits with its audit row; a
    /// refusal leaves a row of the attempt (`denied`, with the reason). `Ok(Err(reason))`
    /// is a refusal to tell the device; `Err` a failure on Gema's side (nothing issued).
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn renew(
        &self,
        device_id: &str,
        csr_pem: &str,
        now_ms: i64,
    ) -> GatewayResult<Result<IssuedCertificate, CertRenewRefusal>> {
        let entry = NewAuditEntry {
            at_ms: now_ms,
            actor: format!("device:{device_id}"),
            action: ISSUE_ACTION.to_owned(),
            target: Some(format!("/api/v1/devices/{device_id}/certificates")),
            source: Some("mqtt".to_owned()),
            ..NewAuditEntry::default()
        };
        let (result, written) =
            gema_store::audit_scope(entry.clone(), self.renew_checked(device_id, csr_pem)).await;
        let (outcome, after) = match &result {
            Ok(Ok(issued)) => (
                "ok",
                serde_json::json!({
                    "serial": issued.record.serial,
                    "fingerprint": issued.record.fingerprint,
                    "not_after": issued.record.not_after.unix_timestamp(),
                    "issued_via": issued.record.issued_via,
                }),
            ),
            Ok(Err(reason)) => (
                "denied",
                serde_json::json!({ "refused": refusal_code(*reason) }),
            ),
            Err(err) => ("failed", serde_json::json!({ "error": err.to_string() })),
        };
        let closing = NewAuditEntry {
            outcome: outcome.to_owned(),
            after_json: Some(after.to_string()),
            ..entry
        };
        if let Err(err) = self.store.close_audit(written.as_deref(), closing).await {
            // The certificate (if any) committed with its row; only the outcome is missing.
            tracing::error!(device_id, error = %err, "recording a renewal's audit outcome failed");
        }
        let label = match &result {
            Ok(Ok(_)) => "issued",
            Ok(Err(reason)) => refusal_code(*reason),
            Err(_) => "failed",
        };
        metrics::counter!("gema_device_certificate_renewals_total", "outcome" => label)
            .increment(1);
        result
    }

    async fn renew_checked(
        &self,
        device_id: &str,
        csr_pem: &str,
    ) -> GatewayResult<Result<IssuedCertificate, CertRenewRefusal>> {
        let ca = match self.ca() {
            Ok(ca) => ca,
            Err(_) => return Ok(Err(CertRenewRefusal::Unavailable)),
        };
        match self.check_standing(device_id).await {
            Ok(()) => {}
            Err(GatewayError::Conflict { .. } | GatewayError::NotFound { .. }) => {
                return Ok(Err(CertRenewRefusal::NotPermitted));
            }
            Err(other) => return Err(other),
        }
        let csr = match checked_csr(device_id, csr_pem) {
            Ok(csr) => csr,
            Err(CsrError::WrongName(_)) => return Ok(Err(CertRenewRefusal::WrongName)),
            Err(_) => return Ok(Err(CertRenewRefusal::InvalidCsr)),
        };
        let since = time::OffsetDateTime::now_utc() - self.settings.renew_interval;
        let recent = self
            .store
            .device_certificates(device_id)
            .await?
            .iter()
            .any(|c| c.issued_via == IssuedVia::Mqtt.as_str() && c.issued_at > since);
        if recent {
            return Ok(Err(CertRenewRefusal::TooSoon));
        }
        self.sign(&ca, device_id, &csr, IssuedVia::Mqtt)
            .await
            .map(Ok)
    }

    fn ca(&self) -> GatewayResult<Arc<DeviceCa>> {
        self.settings
            .ca
            .clone()
            .ok_or_else(|| GatewayError::Conflict {
                code: "device_ca_unavailable",
                message: "this daemon has no device CA key to sign with; set [mqtt] \
                      device_ca_key or leave device_ca unset to use the generated one"
                    .into(),
                field: None,
            })
    }

    /// The device exists, is active, and its credential is not revoked.
    async fn check_standing(&self, device_id: &str) -> GatewayResult<()> {
        let device = self.store.get_device(device_id).await?;
        if device.status != DeviceStatus::Active {
            return Err(GatewayError::Conflict {
                code: "device_disabled",
                message: format!("device {device_id} is disabled"),
                field: None,
            });
        }
        if device.credential.status == CredentialStatus::Revoked {
            return Err(GatewayError::Conflict {
                code: "device_revoked",
                message: format!(
                    "device {device_id}'s credential is revoked; rotate it before issuing certificates"
                ),
                field: None,
            });
        }
        Ok(())
    }

    /// Signs a checked CSR and records the certificate (the write an audit scope's row
    /// goes with).
    async fn sign(
        &self,
        ca: &DeviceCa,
        device_id: &str,
        csr: &DeviceCsr,
        via: IssuedVia,
    ) -> GatewayResult<IssuedCertificate> {
        let now = time::OffsetDateTime::now_utc();
        let not_before = now - BACKDATE;
        let not_after = now + self.settings.validity;
        let id = device_id.to_owned();
        let key_type = csr.key_type().as_str().to_owned();
        // Signing is a few tens of microseconds of CPU: done in place.
        let issued = ca
            .issue(csr, &id, not_before, not_after)
            .map_err(|e| GatewayError::Internal(format!("signing a device certificate: {e}")))?;
        let record = self
            .store
            .insert_device_certificate(NewDeviceCertificate {
                serial: issued.serial.clone(),
                device_id: id,
                fingerprint: issued.fingerprint.clone(),
                key_type,
                not_before: issued.not_before,
                not_after: issued.not_after,
                issued_via: via.as_str().to_owned(),
            })
            .await?;
        metrics::counter!("gema_device_certificates_issued_total", "via" => via.as_str())
            .increment(1);
        tracing::info!(device_id, serial = %record.serial, via = via.as_str(), "device certificate issued");
        Ok(IssuedCertificate {
            record,
            certificate_pem: issued.certificate_pem,
            chain_pem: issued.chain_pem,
        })
    }

    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn list(&self, device_id: &str) -> GatewayResult<Vec<DeviceCertificate>> {
        Ok(self.store.device_certificates(device_id).await?)
    }

    /// Revokes one certificate: it goes on the revocation list at once and the device's
    /// live session ends (on whichever node holds it); reconnecting with that certificate
    /// is refused at CONNECT.
    #[tracing::instrument(skip_all, fields(device_id = device_id, serial = serial))]
    pub async fn revoke(&self, device_id: &str, serial: &str) -> GatewayResult<DeviceCertificate> {
        let serial = serial.trim().to_ascii_lowercase();
        let revoked = self
            .store
            .revoke_device_certificate(device_id, &serial)
            .await?;
        self.settings
            .revocations
            .insert([revoked.fingerprint.clone()]);
        tracing::info!(device_id, serial = %revoked.serial, "device certificate revoked");
        if let Some(transport) = &self.transport
            && transport.disconnect(device_id)
        {
            tracing::info!(device_id, "live device session ended: certificate revoked");
        }
        Ok(revoked)
    }

    /// Re-reads the revocations made on any node (every [`REVOCATION_REFRESH`]).
    pub async fn refresh_revocations(&self) -> GatewayResult<usize> {
        self.settings.revocations.refresh(&*self.store).await
    }

    /// May `device_id` connect with the certificate `fingerprint` (serial `serial`),
    /// which the broker verified against the device CA? Refused: a revoked or superseded
    /// certificate, one recorded for another device, an unknown or disabled device, a
    /// revoked credential. A certificate this daemon did not issue (an operator's CA that
    /// signs elsewhere) is accepted on the device's standing alone. Using a certificate
    /// supersedes the device's older ones and records `last_auth = certificate`.
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn authorize(
        &self,
        device_id: &str,
        serial: &str,
        fingerprint: &str,
    ) -> GatewayResult<SecretCheck> {
        if self.settings.revocations.contains(fingerprint) {
            return Ok(SecretCheck::Revoked);
        }
        let device = match self.store.get_device(device_id).await {
            Ok(device) => device,
            Err(StoreError::NotFound { .. }) => return Ok(SecretCheck::UnknownDevice),
            Err(other) => return Err(other.into()),
        };
        if device.status != DeviceStatus::Active {
            return Ok(SecretCheck::Disabled);
        }
        if device.credential.status == CredentialStatus::Revoked {
            return Ok(SecretCheck::Revoked);
        }
        let certificates = self.store.device_certificates(device_id).await?;
        let Some(this) = certificates.iter().find(|c| c.fingerprint == fingerprint) else {
            if self
                .store
                .device_certificate_by_fingerprint(fingerprint)
                .await?
                .is_some()
            {
                // Issued to another device: never.
                return Ok(SecretCheck::Revoked);
            }
            if device.last_auth != Some(AuthMethod::Certificate) {
                self.store
                    .set_device_last_auth(device_id, AuthMethod::Certificate)
                    .await?;
            }
            return Ok(SecretCheck::Valid);
        };
        if this.status != CertificateStatus::Active || this.serial != serial {
            self.settings.revocations.insert([this.fingerprint.clone()]);
            return Ok(SecretCheck::Revoked);
        }
        let older_active = certificates.iter().any(|c| {
            c.status == CertificateStatus::Active
                && c.serial != this.serial
                && c.issued_at <= this.issued_at
        });
        if older_active || device.last_auth != Some(AuthMethod::Certificate) {
            let superseded = self
                .store
                .use_device_certificate(device_id, &this.serial)
                .await?;
            if !superseded.is_empty() {
                tracing::info!(
                    device_id,
                    superseded = superseded.len(),
                    "the device connected with a newer certificate; older ones superseded"
                );
            }
            self.settings
                .revocations
                .insert(superseded.into_iter().map(|c| c.fingerprint));
        }
        Ok(SecretCheck::Valid)
    }

    /// Checks a CSR sent with a provisioning request before the device exists: it must
    /// parse, have an accepted key, and name only the device's serial (its id is not known
    /// yet; the certificate will name the id). Errors are for the log, not the device.
    pub fn check_claim_csr(&self, csr_pem: &str, serial: &str) -> Result<(), String> {
        if self.settings.ca.is_none() {
            return Err("this daemon has no device CA key to sign with".into());
        }
        let csr = DeviceCsr::from_pem(csr_pem).map_err(|e| e.to_string())?;
        csr.check_names(serial).map_err(|e| e.to_string())
    }

    /// Signs the CSR of a device just provisioned by claim ([`Self::check_claim_csr`] passed):
    /// the certificate names `device_id`. Recorded as issued via MQTT.
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn issue_by_claim(
        &self,
        device_id: &str,
        csr_pem: &str,
    ) -> GatewayResult<IssuedCertificate> {
        let Some(ca) = self.settings.ca.clone() else {
            return Err(GatewayError::Internal("no device CA key".into()));
        };
        let csr = DeviceCsr::from_pem(csr_pem)
            .map_err(|e| GatewayError::invalid("csr", e.to_string()))?;
        let now = time::OffsetDateTime::now_utc();
        let issued = ca
            .issue(
                &csr,
                device_id,
                now - BACKDATE,
                now + self.settings.validity,
            )
            .map_err(|e| GatewayError::Internal(format!("signing a device certificate: {e}")))?;
        let record = self
            .store
            .insert_device_certificate(NewDeviceCertificate {
                serial: issued.serial.clone(),
                device_id: device_id.to_owned(),
                fingerprint: issued.fingerprint.clone(),
                key_type: csr.key_type().as_str().to_owned(),
                not_before: issued.not_before,
                not_after: issued.not_after,
                issued_via: IssuedVia::Mqtt.as_str().to_owned(),
            })
            .await?;
        metrics::counter!("gema_device_certificates_issued_total", "via" => "claim").increment(1);
        tracing::info!(device_id, serial = %record.serial, "device certificate issued at provisioning");
        Ok(IssuedCertificate {
            record,
            certificate_pem: issued.certificate_pem,
            chain_pem: issued.chain_pem,
        })
    }
}

/// A CSR that parses, verifies and names `device_id`.
fn checked_csr(device_id: &str, csr_pem: &str) -> Result<DeviceCsr, CsrError> {
    let csr = DeviceCsr::from_pem(csr_pem)?;
    csr.check_names(device_id)?;
    Ok(csr)
}

/// A refusal's wire name (`too_soon`, …), for audit rows and metrics.
pub fn refusal_code(reason: CertRenewRefusal) -> &'static str {
    match reason {
        CertRenewRefusal::InvalidCsr => "invalid_csr",
        CertRenewRefusal::WrongName => "wrong_name",
        CertRenewRefusal::TooSoon => "too_soon",
        CertRenewRefusal::NotPermitted => "not_permitted",
        CertRenewRefusal::Unavailable => "unavailable",
    }
}
