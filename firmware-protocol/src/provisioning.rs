//! The provisioning string: everything a soundbox needs to reach Gema, in one line of text
//! that a technician scans from a QR code (`gema device add --qr`) instead of typing a
//! 32-character secret.
//!
//! ```text
//! GEMA1:host=mqtt.gema.example;port=8883;id=dev_01jd8x3k7q9v2m4n6p8r0t2w4y;secret=k3…q7;ca=9f86…0a08
//! ```
//!
//! - `GEMA1:` is the prefix: the letters `GEMA` and the format version, today
//!   [`ProvisioningString::VERSION`] = 1, then `:`. A reader refuses any other version
//!   ([`ProvisioningError::UnsupportedVersion`]): a new or changed field means a new version.
//! - Then exactly five `key=value` fields, separated by `;`, **in this order**:
//!   `host` (the broker's host name or IP address: 1–253 bytes of ASCII letters, digits, `.`,
//!   `-`, `_` and `:`), `port` (MQTT over TLS; 1–65535 in decimal without leading zeros),
//!   `id` (the device id, which is also the MQTT username and client id; the rule of
//!   [`crate::topic::validate_device_id`]), `secret` (the MQTT password: 1–128 bytes of ASCII
//!   letters, digits, `-`, `.`, `_` and `~`) and `ca` (the SHA-256 of the DER of the CA
//!   certificate the broker's certificate chains to, 64 lower-case hex digits).
//! - No escaping: every value's alphabet excludes `;`, `=` and whitespace, so the string
//!   splits one way only, and a value that would need escaping cannot be written.
//!   Nothing follows the `ca` field (no `;`, no line end: a scanner that appends one must
//!   strip it before parsing).
//!
//! Every value has one spelling, so the string is canonical: whatever
//! [`ProvisioningString::parse`] accepts, [`Display`](core::fmt::Display) writes back byte
//! for byte. At most [`ProvisioningString::MAX_LEN`] bytes; a typical one is 170–200, a QR
//! code of version 9 or 10 at error correction level M.
//!
//! The CA certificate itself is not in the string (a PEM is ~600 bytes): the device gets it
//! with its firmware or from the credentials' `ca_certificate_pem`, and checks it against
//! `ca` before trusting it.
//!
//! Parsing borrows from the input and allocates nothing; it never panics.

use core::fmt;

/// A parsed or built provisioning string. Its fields are valid by construction: build one
/// with [`ProvisioningString::new`] or [`ProvisioningString::parse`]. `Debug` hides the
/// secret; `Display` writes the whole string, secret included.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ProvisioningString<'a> {
    host: &'a str,
    port: u16,
    device_id: &'a str,
    secret: &'a str,
    ca_sha256: [u8; 32],
}

/// A field of the provisioning string, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Host,
    Port,
    DeviceId,
    Secret,
    CaFingerprint,
}

impl Field {
    /// Every field, in the order of the string.
    pub const ALL: [Field; 5] = [
        Field::Host,
        Field::Port,
        Field::DeviceId,
        Field::Secret,
        Field::CaFingerprint,
    ];

    /// The field's key in the string.
    pub const fn key(self) -> &'static str {
        match self {
            Field::Host => "host",
            Field::Port => "port",
            Field::DeviceId => "id",
            Field::Secret => "secret",
            Field::CaFingerprint => "ca",
        }
    }
}

/// Why a text is not a provisioning string (or values cannot make one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisioningError {
    /// Longer than [`ProvisioningString::MAX_LEN`] bytes.
    TooLong,
    /// Does not start with `GEMA<version>:`.
    NotProvisioning,
    /// A `GEMA<n>:` string of a version this reader does not know.
    UnsupportedVersion,
    /// The next field is missing or has another key (fields come in a fixed order).
    ExpectedField(Field),
    /// The field's value breaks its rule.
    InvalidField(Field),
    /// Something follows the last field.
    TrailingInput,
}

impl fmt::Display for ProvisioningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProvisioningError::TooLong => write!(
                f,
                "provisioning string is longer than {} bytes",
                ProvisioningString::MAX_LEN
            ),
            ProvisioningError::NotProvisioning => {
                f.write_str("not a Gema provisioning string (no `GEMA<version>:` prefix)")
            }
            ProvisioningError::UnsupportedVersion => write!(
                f,
                "unsupported provisioning string version (this reader knows GEMA{})",
                ProvisioningString::VERSION
            ),
            ProvisioningError::ExpectedField(field) => {
                write!(f, "expected the `{}=` field here", field.key())
            }
            ProvisioningError::InvalidField(field) => {
                write!(f, "invalid `{}` value", field.key())
            }
            ProvisioningError::TrailingInput => {
                f.write_str("unexpected input after the last (`ca`) field")
            }
        }
    }
}

impl core::error::Error for ProvisioningError {}

const PREFIX: &str = "GEMA";
const MAX_HOST_LEN: usize = 253;
const MAX_PORT_DIGITS: usize = 5;
const MAX_SECRET_LEN: usize = 128;
const FINGERPRINT_HEX_LEN: usize = 64;

impl<'a> ProvisioningString<'a> {
    /// The format version this crate writes and reads.
    pub const VERSION: u8 = 1;

    /// The longest valid string, in bytes: every field at its longest.
    pub const MAX_LEN: usize = "GEMA1:".len()
        + "host=".len()
        + MAX_HOST_LEN
        + ";port=".len()
        + MAX_PORT_DIGITS
        + ";id=".len()
        + crate::topic::MAX_DEVICE_ID_LEN
        + ";secret=".len()
        + MAX_SECRET_LEN
        + ";ca=".len()
        + FINGERPRINT_HEX_LEN;

    /// Checks the values against the format's rules (see the module docs). Port 0 is refused.
    pub fn new(
        host: &'a str,
        port: u16,
        device_id: &'a str,
        secret: &'a str,
        ca_sha256: [u8; 32],
    ) -> Result<Self, ProvisioningError> {
        if !valid_host(host) {
            return Err(ProvisioningError::InvalidField(Field::Host));
        }
        if port == 0 {
            return Err(ProvisioningError::InvalidField(Field::Port));
        }
        if crate::topic::validate_device_id(device_id).is_err() {
            return Err(ProvisioningError::InvalidField(Field::DeviceId));
        }
        if !valid_secret(secret) {
            return Err(ProvisioningError::InvalidField(Field::Secret));
        }
        Ok(Self {
            host,
            port,
            device_id,
            secret,
            ca_sha256,
        })
    }

    /// Reads a provisioning string, borrowing its values from `text`. Never panics.
    pub fn parse(text: &'a str) -> Result<Self, ProvisioningError> {
        if text.len() > Self::MAX_LEN {
            return Err(ProvisioningError::TooLong);
        }
        let after_prefix = text
            .strip_prefix(PREFIX)
            .ok_or(ProvisioningError::NotProvisioning)?;
        let (version, body) = after_prefix
            .split_once(':')
            .ok_or(ProvisioningError::NotProvisioning)?;
        if version.is_empty() || version.len() > 3 || !version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProvisioningError::NotProvisioning);
        }
        if version != "1" {
            return Err(ProvisioningError::UnsupportedVersion);
        }

        let mut parts = body.split(';');
        let mut value = |field: Field| -> Result<&'a str, ProvisioningError> {
            parts
                .next()
                .and_then(|part| part.strip_prefix(field.key()))
                .and_then(|rest| rest.strip_prefix('='))
                .ok_or(ProvisioningError::ExpectedField(field))
        };
        let host = value(Field::Host)?;
        let port = parse_port(value(Field::Port)?)?;
        let device_id = value(Field::DeviceId)?;
        let secret = value(Field::Secret)?;
        let ca_sha256 = parse_fingerprint(value(Field::CaFingerprint)?)?;
        if parts.next().is_some() {
            return Err(ProvisioningError::TrailingInput);
        }
        Self::new(host, port, device_id, secret, ca_sha256)
    }

    pub fn host(&self) -> &'a str {
        self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The device id: MQTT username and client id.
    pub fn device_id(&self) -> &'a str {
        self.device_id
    }

    /// The MQTT password.
    pub fn secret(&self) -> &'a str {
        self.secret
    }

    /// SHA-256 of the DER of the CA certificate the device must trust.
    pub fn ca_sha256(&self) -> [u8; 32] {
        self.ca_sha256
    }
}

/// The whole string, secret included: `GEMA1:host=…;port=…;id=…;secret=…;ca=…`.
impl fmt::Display for ProvisioningString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}:host={};port={};id={};secret={};ca=",
            Self::VERSION,
            self.host,
            self.port,
            self.device_id,
            self.secret
        )?;
        for byte in self.ca_sha256 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ProvisioningString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisioningString")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("device_id", &self.device_id)
            .field("secret", &"<redacted>")
            .field("ca_sha256", &self.ca_sha256)
            .finish()
    }
}

fn valid_host(host: &str) -> bool {
    (1..=MAX_HOST_LEN).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

fn valid_secret(secret: &str) -> bool {
    (1..=MAX_SECRET_LEN).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Decimal 1–65535, no sign, no leading zero: one spelling per port.
fn parse_port(text: &str) -> Result<u16, ProvisioningError> {
    let invalid = ProvisioningError::InvalidField(Field::Port);
    if text.is_empty()
        || text.len() > MAX_PORT_DIGITS
        || text.starts_with('0')
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid);
    }
    text.parse::<u16>().map_err(|_| invalid)
}

/// Exactly 64 lower-case hex digits.
fn parse_fingerprint(text: &str) -> Result<[u8; 32], ProvisioningError> {
    let invalid = ProvisioningError::InvalidField(Field::CaFingerprint);
    let digits = text.as_bytes();
    if digits.len() != FINGERPRINT_HEX_LEN {
        return Err(invalid);
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        _ => Err(invalid),
    };
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const CA: [u8; 32] = [
        0x9f, 0x86, 0xd0, 0x81, 0x88, 0x4c, 0x7d, 0x65, 0x9a, 0x2f, 0xea, 0xa0, 0xc5, 0x5a, 0xd0,
        0x15, 0xa3, 0xbf, 0x4f, 0x1b, 0x2b, 0x0b, 0x82, 0x2c, 0xd1, 0x5d, 0x6c, 0x15, 0xb0, 0xf0,
        0x0a, 0x08,
    ];
    const TEXT: &str = "GEMA1:host=mqtt.gema.example;port=8883;id=dev_01jd8x3k7q9v2m4n6p8r0t2w4y;\
        secret=k3abcdefghijklmnopqrstuvwxyz2345;\
        ca=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_documented_string_parses_into_its_fields_and_writes_back_the_same() {
        let p = ProvisioningString::parse(TEXT).unwrap();
        assert_eq!(p.host(), "mqtt.gema.example");
        assert_eq!(p.port(), 8883);
        assert_eq!(p.device_id(), "dev_01jd8x3k7q9v2m4n6p8r0t2w4y");
        assert_eq!(p.secret(), "k3abcdefghijklmnopqrstuvwxyz2345");
        assert_eq!(p.ca_sha256(), CA);
        assert_eq!(p.to_string(), TEXT);
    }

    #[test]
    fn debug_hides_the_secret() {
        let p = ProvisioningString::parse(TEXT).unwrap();
        let debug = alloc::format!("{p:?}");
        assert!(!debug.contains(p.secret()), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn the_longest_string_is_exactly_max_len() {
        let host = "h".repeat(MAX_HOST_LEN);
        let id = "d".repeat(crate::topic::MAX_DEVICE_ID_LEN);
        let secret = "s".repeat(MAX_SECRET_LEN);
        let text = ProvisioningString::new(&host, 65535, &id, &secret, CA)
            .unwrap()
            .to_string();
        assert_eq!(text.len(), ProvisioningString::MAX_LEN);
        assert!(ProvisioningString::parse(&text).is_ok());
        let longer = alloc::format!("{text}0");
        assert_eq!(
            ProvisioningString::parse(&longer),
            Err(ProvisioningError::TooLong)
        );
    }
}
