//! Provisioning by claim: how a factory-fresh soundbox obtains its own identity on first
//! boot, with the credential of its production batch (a **claim**) instead of a secret typed
//! in by a technician.
//!
//! # The exchange
//!
//! 1. The device connects over TLS with MQTT user name `claim:<claim id>`
//!    ([`claim_username`]), the claim secret as password, and its **serial number as client
//!    id** ([`validate_serial`]: 1–64 characters of ASCII letters, digits, `-`, `_`, `.`).
//! 2. It subscribes to `provisioning/<serial>/down` ([`down_topic`]) and publishes one
//!    [`ProvisionRequest`] to `provisioning/<serial>/up` ([`up_topic`]), QoS 1. It may
//!    publish to and subscribe to nothing else: no wildcard, no other serial's topics, no
//!    device topics, no `$SYS`.
//! 3. Gema answers on the down topic with a [`ProvisionResponse`]: either
//!    [`ProvisionResponse::Provisioned`] (its device id, a fresh device secret, and, if the
//!    request carried a CSR, the signed certificate chain) or
//!    [`ProvisionResponse::Refused`] with a [`RefusalReason`].
//! 4. The device stores its credential, disconnects, and reconnects as itself (user name and
//!    client id = its device id). The claim session is of no further use to it.
//!
//! A serial is provisioned once: asking again is refused (`serial_taken`) unless an operator
//! allowed the serial to be provisioned again (a device reset to factory), in which case the
//! same device id gets a new secret.
//!
//! Both messages are JSON only (one flat, `"type"`-tagged object): provisioning happens once
//! per device and the answer carries PEM text anyway. Decoding ([`decode_request`],
//! [`decode_response`]) never panics, refuses a request over
//! [`crate::limits::MAX_MESSAGE_LEN`] bytes and a response (which may carry a certificate
//! chain) over [`MAX_RESPONSE_LEN`], and validates every field.
//!
//! ```json
//! {"type":"provision","version":1,"msg_id":"01JD8X3K7Q9V2M4N6P8R0T2W4Y","serial":"SB24A-000123",
//!  "model":"SB-1","firmware_version":"1.4.2","csr_pem":null}
//! ```
//! ```json
//! {"type":"provisioned","version":1,"request_msg_id":"01JD8X3K7Q9V2M4N6P8R0T2W4Y",
//!  "device_id":"dev_01jd8x3m00aaaabbbbccccdddd","secret":"k3…q7","certificate_pem":null}
//! {"type":"refused","version":1,"request_msg_id":"01JD8X3K7Q9V2M4N6P8R0T2W4Y","reason":"claim_exhausted"}
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde_nostd::{Deserialize, Serialize};

use crate::limits::{MAX_ID_LEN, MAX_MESSAGE_LEN, MAX_TEXT_LEN};
use crate::message::PROTOCOL_VERSION;

/// First level of every provisioning topic.
pub const ROOT: &str = "provisioning";
/// The prefix of a claim session's MQTT user name: `claim:<claim id>`.
pub const USERNAME_PREFIX: &str = "claim:";
/// Longest serial number.
pub const MAX_SERIAL_LEN: usize = 64;
/// Longest CSR in PEM form a request may carry.
pub const MAX_CSR_LEN: usize = 2048;
/// Largest response a decoder looks at (a certificate chain in PEM is 1–3 KiB).
pub const MAX_RESPONSE_LEN: usize = 16 * 1024;

/// Why a serial number cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialError {
    Empty,
    TooLong,
    /// Only ASCII letters, digits, `-`, `_` and `.` (so it is one plain MQTT topic level and
    /// a valid client id).
    InvalidCharacter,
}

impl core::fmt::Display for SerialError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SerialError::Empty => "serial is empty",
            SerialError::TooLong => "serial is longer than 64 characters",
            SerialError::InvalidCharacter => {
                "serial may hold only ASCII letters, digits, '-', '_' and '.'"
            }
        })
    }
}

/// A serial number as it appears in a client id and a topic: 1–64 characters of ASCII
/// letters, digits, `-`, `_` and `.`.
pub fn validate_serial(serial: &str) -> Result<(), SerialError> {
    if serial.is_empty() {
        return Err(SerialError::Empty);
    }
    if serial.len() > MAX_SERIAL_LEN {
        return Err(SerialError::TooLong);
    }
    if !serial
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(SerialError::InvalidCharacter);
    }
    Ok(())
}

/// `claim:<claim id>`: the MQTT user name of a claim session.
pub fn claim_username(claim_id: &str) -> String {
    format!("{USERNAME_PREFIX}{claim_id}")
}

/// The claim id in a user name of the form `claim:<claim id>`, if it is one.
pub fn claim_id_of(username: &str) -> Option<&str> {
    username
        .strip_prefix(USERNAME_PREFIX)
        .filter(|id| !id.is_empty())
}

/// `provisioning/<serial>/up`: where the device publishes its request.
pub fn up_topic(serial: &str) -> String {
    format!("{ROOT}/{serial}/up")
}

/// `provisioning/<serial>/down`: where Gema answers, and what the device subscribes to.
pub fn down_topic(serial: &str) -> String {
    format!("{ROOT}/{serial}/down")
}

/// A device's request for its identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", tag = "type", rename = "provision")]
pub struct ProvisionRequest {
    pub version: u16,
    /// Made by the device; the answer names it in `request_msg_id`.
    pub msg_id: String,
    /// Must equal the client id of the claim session.
    pub serial: String,
    pub model: String,
    #[serde(default)]
    pub firmware_version: Option<String>,
    /// A PKCS#10 CSR in PEM (ECDSA P-256 or Ed25519) whose common name is left to Gema: the
    /// certificate names the device id Gema assigns.
    #[serde(default)]
    pub csr_pem: Option<String>,
}

/// Why Gema did not provision the device. Stable snake_case codes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", rename_all = "snake_case")]
pub enum RefusalReason {
    /// The request did not decode, or its serial is not the session's.
    InvalidRequest,
    /// The serial is not in the claim's list or pattern.
    SerialNotAllowed,
    /// The serial was provisioned already (and no operator allowed it again).
    SerialTaken,
    /// The claim's use limit is reached.
    ClaimExhausted,
    /// The claim expired.
    ClaimExpired,
    /// The claim was revoked.
    ClaimRevoked,
    /// The CSR was refused (malformed, weak key).
    InvalidCsr,
    /// Gema could not do it now; try again later.
    Unavailable,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 8] = [
        RefusalReason::InvalidRequest,
        RefusalReason::SerialNotAllowed,
        RefusalReason::SerialTaken,
        RefusalReason::ClaimExhausted,
        RefusalReason::ClaimExpired,
        RefusalReason::ClaimRevoked,
        RefusalReason::InvalidCsr,
        RefusalReason::Unavailable,
    ];

    /// The wire code, also a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::InvalidRequest => "invalid_request",
            RefusalReason::SerialNotAllowed => "serial_not_allowed",
            RefusalReason::SerialTaken => "serial_taken",
            RefusalReason::ClaimExhausted => "claim_exhausted",
            RefusalReason::ClaimExpired => "claim_expired",
            RefusalReason::ClaimRevoked => "claim_revoked",
            RefusalReason::InvalidCsr => "invalid_csr",
            RefusalReason::Unavailable => "unavailable",
        }
    }
}

/// Gema's answer on `provisioning/<serial>/down`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", tag = "type", rename_all = "snake_case")]
pub enum ProvisionResponse {
    Provisioned {
        version: u16,
        request_msg_id: String,
        /// The device's id: from now on its MQTT user name and client id.
        device_id: String,
        /// Its MQTT password. Shown once; Gema keeps only a hash.
        secret: String,
        /// The certificate chain in PEM, if the request carried a CSR.
        #[serde(default)]
        certificate_pem: Option<String>,
    },
    Refused {
        version: u16,
        request_msg_id: String,
        reason: RefusalReason,
    },
}

impl core::fmt::Debug for ProvisionResponse {
    /// Hides the secret.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProvisionResponse::Provisioned {
                request_msg_id,
                device_id,
                certificate_pem,
                ..
            } => f
                .debug_struct("Provisioned")
                .field("request_msg_id", request_msg_id)
                .field("device_id", device_id)
                .field("secret", &"<redacted>")
                .field("certificate", &certificate_pem.is_some())
                .finish(),
            ProvisionResponse::Refused {
                request_msg_id,
                reason,
                ..
            } => f
                .debug_struct("Refused")
                .field("request_msg_id", request_msg_id)
                .field("reason", reason)
                .finish(),
        }
    }
}

/// Why a provisioning payload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecodeError {
    TooLong {
        len: usize,
        max: usize,
    },
    /// Not the expected JSON object (the parser's message).
    Json(String),
    UnsupportedVersion(u16),
    /// A field is out of its bounds.
    Invalid {
        field: &'static str,
        problem: String,
    },
}

impl core::fmt::Display for ClaimDecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClaimDecodeError::TooLong { len, max } => {
                write!(f, "payload of {len} bytes is over the {max}-byte limit")
            }
            ClaimDecodeError::Json(e) => write!(f, "malformed JSON: {e}"),
            ClaimDecodeError::UnsupportedVersion(v) => {
                write!(f, "protocol version {v} is not supported")
            }
            ClaimDecodeError::Invalid { field, problem } => write!(f, "{field}: {problem}"),
        }
    }
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ClaimDecodeError {
    ClaimDecodeError::Invalid {
        field,
        problem: problem.into(),
    }
}

fn check_id(field: &'static str, id: &str) -> Result<(), ClaimDecodeError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            field,
            "must be 1-64 bytes of printable ASCII without spaces",
        ));
    }
    Ok(())
}

fn check_text(field: &'static str, text: &str, min: usize) -> Result<(), ClaimDecodeError> {
    if text.len() < min || text.len() > MAX_TEXT_LEN || text.chars().any(char::is_control) {
        return Err(invalid(
            field,
            "must be at most 128 bytes without control characters",
        ));
    }
    Ok(())
}

impl ProvisionRequest {
    pub fn new(
        msg_id: impl Into<String>,
        serial: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        ProvisionRequest {
            version: PROTOCOL_VERSION,
            msg_id: msg_id.into(),
            serial: serial.into(),
            model: model.into(),
            firmware_version: None,
            csr_pem: None,
        }
    }

    /// The field bounds a decoded request is held to.
    pub fn validate(&self) -> Result<(), ClaimDecodeError> {
        if self.version != PROTOCOL_VERSION {
            return Err(ClaimDecodeError::UnsupportedVersion(self.version));
        }
        check_id("msg_id", &self.msg_id)?;
        validate_serial(&self.serial).map_err(|e| invalid("serial", format!("{e}")))?;
        check_text("model", &self.model, 1)?;
        if let Some(v) = &self.firmware_version {
            check_text("firmware_version", v, 1)?;
        }
        if let Some(csr) = &self.csr_pem
            && (csr.is_empty() || csr.len() > MAX_CSR_LEN || !csr.is_ascii())
        {
            return Err(invalid("csr_pem", "must be 1-2048 bytes of ASCII (PEM)"));
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json_nostd::to_vec(self).unwrap_or_default()
    }
}

impl ProvisionResponse {
    pub fn refused(request_msg_id: impl Into<String>, reason: RefusalReason) -> Self {
        ProvisionResponse::Refused {
            version: PROTOCOL_VERSION,
            request_msg_id: request_msg_id.into(),
            reason,
        }
    }

    /// The field bounds a decoded response is held to.
    pub fn validate(&self) -> Result<(), ClaimDecodeError> {
        match self {
            ProvisionResponse::Provisioned {
                version,
                request_msg_id,
                device_id,
                secret,
                certificate_pem,
            } => {
                if *version != PROTOCOL_VERSION {
                    return Err(ClaimDecodeError::UnsupportedVersion(*version));
                }
                check_id("request_msg_id", request_msg_id)?;
                crate::topic::validate_device_id(device_id)
                    .map_err(|e| invalid("device_id", format!("{e}")))?;
                if secret.is_empty()
                    || secret.len() > 128
                    || !secret.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(invalid("secret", "must be 1-128 bytes of printable ASCII"));
                }
                if let Some(pem) = certificate_pem
                    && (pem.is_empty() || !pem.is_ascii())
                {
                    return Err(invalid("certificate_pem", "must be ASCII (PEM)"));
                }
                Ok(())
            }
            ProvisionResponse::Refused {
                version,
                request_msg_id,
                ..
            } => {
                if *version != PROTOCOL_VERSION {
                    return Err(ClaimDecodeError::UnsupportedVersion(*version));
                }
                // A request that did not decode is answered with an empty id.
                if !request_msg_id.is_empty() {
                    check_id("request_msg_id", request_msg_id)?;
                }
                Ok(())
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json_nostd::to_vec(self).unwrap_or_default()
    }
}

/// Decodes and validates a request from untrusted bytes. Never panics.
pub fn decode_request(bytes: &[u8]) -> Result<ProvisionRequest, ClaimDecodeError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(ClaimDecodeError::TooLong {
            len: bytes.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    let request: ProvisionRequest =
        serde_json_nostd::from_slice(bytes).map_err(|e| ClaimDecodeError::Json(format!("{e}")))?;
    request.validate()?;
    Ok(request)
}

/// Decodes and validates a response from untrusted bytes (on the device). Never panics.
pub fn decode_response(bytes: &[u8]) -> Result<ProvisionResponse, ClaimDecodeError> {
    if bytes.len() > MAX_RESPONSE_LEN {
        return Err(ClaimDecodeError::TooLong {
            len: bytes.len(),
            max: MAX_RESPONSE_LEN,
        });
    }
    let response: ProvisionResponse =
        serde_json_nostd::from_slice(bytes).map_err(|e| ClaimDecodeError::Json(format!("{e}")))?;
    response.validate()?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_one_plain_topic_level() {
        for ok in ["SB24A-000123", "a", "x.y_z-1"] {
            assert_eq!(validate_serial(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_serial(""), Err(SerialError::Empty));
        for bad in ["a/b", "+", "#", "$SYS", "a b", "é"] {
            assert_eq!(
                validate_serial(bad),
                Err(SerialError::InvalidCharacter),
                "{bad}"
            );
        }
        assert_eq!(validate_serial(&"a".repeat(65)), Err(SerialError::TooLong));
    }

    #[test]
    fn usernames_name_the_claim() {
        assert_eq!(claim_username("clm_1"), "claim:clm_1");
        assert_eq!(claim_id_of("claim:clm_1"), Some("clm_1"));
        assert_eq!(claim_id_of("claim:"), None);
        assert_eq!(claim_id_of("dev_1"), None);
    }
}
