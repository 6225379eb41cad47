//! Certificate renewal over MQTT: `up/cert_renew` → `down/cert_renew_result`.
//!
//! The device's CSR goes to [`crate::certificates::DeviceCertificates::renew`] (the API's
//! checks, the renewal interval, an audit row with the device as actor), and the answer is
//! published at once: the new certificate followed by the device CA's, or the refusal's
//! reason. Nothing is kept to send it again (the PEM is not stored): a device that missed
//! the answer asks again, with a new request id, after the renewal interval. The uplink is
//! settled once the certificate is recorded (or the refusal decided); a failure on Gema's
//! side leaves it unsettled, so the device sends it again after reconnecting. The CSR and
//! the certificate are never logged.

use gema_firmware_protocol::limits::MAX_CERT_CHAIN_PEM_LEN;
use gema_firmware_protocol::message::{
    CertRenew, CertRenewOutcome, CertRenewRefusal, CertRenewResult, Downlink, DownlinkBody,
    Envelope, RenewedCertificate,
};

use super::DeviceOps;
use crate::certificates::refusal_code;
use crate::error::GatewayResult;

/// Message ids of renewal answers: this prefix and the request id.
const RESULT_PREFIX: &str = "crt_";

impl DeviceOps {
    /// `up/cert_renew`: signs the device's CSR (or refuses) and answers on
    /// `down/cert_renew_result`. `Err` only when Gema failed (nothing was issued).
    pub(super) async fn cert_renew(
        &self,
        device_id: &str,
        request: CertRenew,
        now: i64,
    ) -> GatewayResult<()> {
        let outcome = match &self.inner.certificates {
            None => Err(CertRenewRefusal::Unavailable),
            Some(certificates) => {
                match certificates.renew(device_id, &request.csr_pem, now).await {
                    Ok(outcome) => outcome,
                    // Logged by the uplink's handler; unsettled, the device asks again.
                    Err(err) => return Err(err),
                }
            }
        };
        let outcome = match outcome {
            Ok(issued) => {
                let chain_pem = format!("{}{}", issued.certificate_pem, issued.chain_pem);
                if chain_pem.len() > MAX_CERT_CHAIN_PEM_LEN {
                    // Only an operator's CA with a very large certificate gets here; the
                    // certificate is recorded but never used, so it supersedes nothing.
                    tracing::error!(
                        device_id,
                        serial = %issued.record.serial,
                        len = chain_pem.len(),
                        max = MAX_CERT_CHAIN_PEM_LEN,
                        "a renewed certificate's chain is too large for a downlink"
                    );
                    CertRenewOutcome::Refused(CertRenewRefusal::Unavailable)
                } else {
                    CertRenewOutcome::Issued(RenewedCertificate {
                        serial: issued.record.serial.clone(),
                        not_after: unix_ms(issued.record.not_after),
                        chain_pem,
                    })
                }
            }
            Err(reason) => {
                tracing::warn!(device_id, request_id = %request.request_id, reason = refusal_code(reason), "certificate renewal refused");
                CertRenewOutcome::Refused(reason)
            }
        };
        let downlink = Downlink {
            envelope: Envelope::new(
                result_msg_id(&request.request_id),
                self.inner.clock.now_ms(),
            ),
            body: DownlinkBody::CertRenewResult(CertRenewResult {
                request_id: request.request_id,
                outcome,
            }),
        };
        let outcome = self.publish_downlink(device_id, &downlink).await;
        tracing::info!(device_id, ?outcome, "certificate renewal answered");
        Ok(())
    }
}

/// `crt_<request id>`, cut to the protocol's id length on a character boundary (request
/// ids are printable ASCII, so any byte is one).
fn result_msg_id(request_id: &str) -> String {
    let mut id = format!("{RESULT_PREFIX}{request_id}");
    id.truncate(gema_firmware_protocol::limits::MAX_ID_LEN);
    id
}

fn unix_ms(at: time::OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answers_message_id_is_a_valid_protocol_id() {
        assert_eq!(result_msg_id("r1"), "crt_r1");
        let long = "x".repeat(64);
        let id = result_msg_id(&long);
        assert_eq!(id.len(), 64);
        assert!(id.starts_with("crt_xxx"));
    }
}
