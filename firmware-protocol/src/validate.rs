//! Explicit checks run after deserialising, so that a well-formed but unacceptable message
//! (a zero amount, a 10 KB id, an announcement that expires before it was sent) is refused
//! with the name of the field at fault. Serde only checks shape; this checks meaning.

use crate::limits::*;
use crate::message::*;

/// Which rule a field broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Empty,
    TooLong {
        max: usize,
    },
    /// Ids: only printable ASCII without spaces; text: no control characters; hashes: only
    /// lower-case hex.
    BadCharacter,
    NotPositive,
    Negative,
    OutOfRange,
    /// `expires_at` not after `sent_at`.
    ExpiresBeforeSent,
    /// Neither of two alternative ids is present.
    Missing,
    /// A URL that is not `https://` or `http://`.
    BadScheme,
    TooManyEntries {
        max: usize,
    },
    /// Text that should be PEM does not begin with the expected `-----BEGIN …-----` line.
    NotPem,
}

/// A decoded message that breaks a rule of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationError {
    /// The field, as named on the wire (`amount`, `config.volume`, …).
    pub field: &'static str,
    pub problem: Problem,
}

impl core::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "field `{}` ", self.field)?;
        match self.problem {
            Problem::Empty => f.write_str("is empty"),
            Problem::TooLong { max } => write!(f, "is longer than {max} bytes"),
            Problem::BadCharacter => f.write_str("contains a character that is not allowed"),
            Problem::NotPositive => f.write_str("must be greater than zero"),
            Problem::Negative => f.write_str("must not be negative"),
            Problem::OutOfRange => f.write_str("is out of range"),
            Problem::ExpiresBeforeSent => f.write_str("is not after `sent_at`"),
            Problem::Missing => f.write_str("is missing"),
            Problem::BadScheme => f.write_str("must start with https:// or http://"),
            Problem::TooManyEntries { max } => write!(f, "has more than {max} entries"),
            Problem::NotPem => f.write_str("is not PEM of the expected kind"),
        }
    }
}

impl core::error::Error for ValidationError {}

type Checked = Result<(), ValidationError>;

fn fail(field: &'static str, problem: Problem) -> Checked {
    Err(ValidationError { field, problem })
}

fn id(field: &'static str, value: &str) -> Checked {
    if value.is_empty() {
        return fail(field, Problem::Empty);
    }
    if value.len() > MAX_ID_LEN {
        return fail(field, Problem::TooLong { max: MAX_ID_LEN });
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return fail(field, Problem::BadCharacter);
    }
    Ok(())
}

fn opt_id(field: &'static str, value: Option<&str>) -> Checked {
    value.map_or(Ok(()), |v| id(field, v))
}

fn text_max(field: &'static str, value: &str, max: usize) -> Checked {
    if value.len() > max {
        return fail(field, Problem::TooLong { max });
    }
    if value.chars().any(char::is_control) {
        return fail(field, Problem::BadCharacter);
    }
    Ok(())
}

fn text(field: &'static str, value: &str) -> Checked {
    text_max(field, value, MAX_TEXT_LEN)
}

fn non_empty_text(field: &'static str, value: &str) -> Checked {
    if value.is_empty() {
        return fail(field, Problem::Empty);
    }
    text(field, value)
}

fn amount(field: &'static str, value: i64) -> Checked {
    if value <= 0 {
        return fail(field, Problem::NotPositive);
    }
    if value > MAX_AMOUNT {
        return fail(field, Problem::OutOfRange);
    }
    Ok(())
}

fn timestamp(field: &'static str, value: UnixMillis) -> Checked {
    if value < 0 {
        return fail(field, Problem::Negative);
    }
    Ok(())
}

fn expiry(envelope: &Envelope, expires_at: UnixMillis) -> Checked {
    if expires_at <= envelope.sent_at {
        return fail("expires_at", Problem::ExpiresBeforeSent);
    }
    Ok(())
}

/// PEM text: non-empty, at most `max` bytes, printable ASCII with spaces and line breaks
/// only, and starting with the `-----BEGIN <label>-----` line. What is inside is for the
/// reader of the PEM to check (Gema parses and verifies a CSR before signing it).
fn pem(field: &'static str, value: &str, label: &str, max: usize) -> Checked {
    if value.is_empty() {
        return fail(field, Problem::Empty);
    }
    if value.len() > max {
        return fail(field, Problem::TooLong { max });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n'))
    {
        return fail(field, Problem::BadCharacter);
    }
    let begins = value
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.strip_prefix(label))
        .is_some_and(|rest| rest.starts_with("-----"));
    if !begins {
        return fail(field, Problem::NotPem);
    }
    Ok(())
}

fn within(field: &'static str, ok: bool) -> Checked {
    if ok {
        Ok(())
    } else {
        fail(field, Problem::OutOfRange)
    }
}

fn volume(field: &'static str, value: u8) -> Checked {
    within(field, value <= MAX_VOLUME)
}

impl Envelope {
    /// Checks the fields every message shares. The version is checked by the decoder before
    /// this (it reports `UnsupportedVersion`), and again here for hand-built messages.
    pub fn validate(&self) -> Checked {
        if self.version != PROTOCOL_VERSION {
            return fail("version", Problem::OutOfRange);
        }
        id("msg_id", &self.msg_id)?;
        timestamp("sent_at", self.sent_at)
    }
}

impl Downlink {
    /// Every rule of the protocol for this message; the decoder runs it on every message.
    pub fn validate(&self) -> Checked {
        let envelope = &self.envelope;
        envelope.validate()?;
        match &self.body {
            DownlinkBody::Announce(a) => {
                id("transaction_id", &a.transaction_id)?;
                amount("amount", a.amount)?;
                non_empty_text("provider", &a.provider)?;
                if let Some(issuer) = &a.issuer {
                    non_empty_text("issuer", issuer)?;
                }
                timestamp("paid_at", a.paid_at)?;
                expiry(envelope, a.expires_at)
            }
            DownlinkBody::DynamicQrShow(q) => {
                id("transaction_id", &q.transaction_id)?;
                opt_id("request_id", q.request_id.as_deref())?;
                if q.payload.is_empty() {
                    return fail("payload", Problem::Empty);
                }
                if q.payload.len() > MAX_QR_PAYLOAD_LEN {
                    return fail(
                        "payload",
                        Problem::TooLong {
                            max: MAX_QR_PAYLOAD_LEN,
                        },
                    );
                }
                if !q.payload.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                    return fail("payload", Problem::BadCharacter);
                }
                amount("amount", q.amount)?;
                expiry(envelope, q.expires_at)
            }
            DownlinkBody::DynamicQrClear(c) => {
                if c.transaction_id.is_none() && c.request_id.is_none() {
                    return fail("transaction_id", Problem::Missing);
                }
                opt_id("transaction_id", c.transaction_id.as_deref())?;
                opt_id("request_id", c.request_id.as_deref())
            }
            DownlinkBody::ConfigPush(c) => c.config.validate(),
            DownlinkBody::Command(c) => {
                id("command_id", &c.command_id)?;
                expiry(envelope, c.expires_at)?;
                c.action.validate()
            }
            DownlinkBody::CertRenewResult(r) => {
                id("request_id", &r.request_id)?;
                match &r.outcome {
                    CertRenewOutcome::Issued(cert) => {
                        id("outcome.issued.serial", &cert.serial)?;
                        timestamp("outcome.issued.not_after", cert.not_after)?;
                        pem(
                            "outcome.issued.chain_pem",
                            &cert.chain_pem,
                            "CERTIFICATE",
                            MAX_CERT_CHAIN_PEM_LEN,
                        )
                    }
                    CertRenewOutcome::Refused(_) => Ok(()),
                }
            }
        }
    }
}

impl DeviceConfig {
    /// The ranges an operator may set and a device may report.
    pub fn validate(&self) -> Checked {
        volume("config.volume", self.volume)?;
        let hb = self.heartbeat_interval_s;
        within(
            "config.heartbeat_interval_s",
            HEARTBEAT_INTERVAL_S.contains(&hb),
        )?;
        let qr = self.qr_timeout_s;
        within("config.qr_timeout_s", QR_TIMEOUT_S.contains(&qr))?;
        if let Some(q) = &self.quiet_hours {
            let s = q.start_minute;
            within("config.quiet_hours.start_minute", s < MINUTES_PER_DAY)?;
            let e = q.end_minute;
            within(
                "config.quiet_hours.end_minute",
                e < MINUTES_PER_DAY && e != s,
            )?;
            let o = q.utc_offset_minutes;
            within(
                "config.quiet_hours.utc_offset_minutes",
                UTC_OFFSET_MINUTES.contains(&o),
            )?;
            volume("config.quiet_hours.volume", q.volume)?;
        }
        Ok(())
    }
}

impl CommandAction {
    pub fn validate(&self) -> Checked {
        match self {
            CommandAction::SetVolume { volume: v } => volume("action.args.volume", *v),
            CommandAction::ReplayLast { count } => {
                within("action.args.count", (1..=MAX_REPLAY).contains(count))
            }
            CommandAction::Reboot
            | CommandAction::AnnounceDailySummary
            | CommandAction::GetStatus => Ok(()),
            CommandAction::FwUpdate(image) | CommandAction::AudioUpdate(image) => image.validate(),
        }
    }
}

impl ImageUpdate {
    pub fn validate(&self) -> Checked {
        let url = self.url.as_str();
        if url.len() > MAX_URL_LEN {
            return fail("action.args.url", Problem::TooLong { max: MAX_URL_LEN });
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return fail("action.args.url", Problem::BadScheme);
        }
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return fail("action.args.url", Problem::BadCharacter);
        }
        if self.sha256.len() != 64 {
            return fail("action.args.sha256", Problem::OutOfRange);
        }
        if !self
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return fail("action.args.sha256", Problem::BadCharacter);
        }
        non_empty_text("action.args.version", &self.version)?;
        if self.size == 0 {
            return fail("action.args.size", Problem::NotPositive);
        }
        Ok(())
    }
}

impl Uplink {
    /// Every rule of the protocol for this message; the decoder runs it on every message.
    pub fn validate(&self) -> Checked {
        self.envelope.validate()?;
        match &self.body {
            UplinkBody::Ack(a) => {
                id("acked_msg_id", &a.acked_msg_id)?;
                opt_id("transaction_id", a.transaction_id.as_deref())
            }
            UplinkBody::CommandResult(r) => {
                id("command_id", &r.command_id)?;
                if r.result.len() > MAX_RESULT_ENTRIES {
                    return fail(
                        "result",
                        Problem::TooManyEntries {
                            max: MAX_RESULT_ENTRIES,
                        },
                    );
                }
                for (key, value) in &r.result {
                    if key.is_empty() {
                        return fail("result", Problem::Empty);
                    }
                    text_max("result", key, MAX_RESULT_KEY_LEN)?;
                    text("result", value)?;
                }
                if let Some(message) = &r.message {
                    text("message", message)?;
                }
                Ok(())
            }
            UplinkBody::Heartbeat(h) => {
                if let Some(pct) = h.battery_pct {
                    within("battery_pct", pct <= 100)?;
                }
                if let Some(dbm) = h.signal_dbm {
                    within("signal_dbm", SIGNAL_DBM.contains(&dbm))?;
                }
                text("firmware_version", &h.firmware_version)?;
                text("audio_pack_version", &h.audio_pack_version)?;
                opt_id("last_transaction_id", h.last_transaction_id.as_deref())
            }
            UplinkBody::ReportedConfig(r) => r.config.validate(),
            UplinkBody::DynamicQrRequest(q) => {
                id("request_id", &q.request_id)?;
                amount("amount", q.amount)
            }
            UplinkBody::ButtonEvent(_) => Ok(()),
            UplinkBody::CertRenew(r) => {
                id("request_id", &r.request_id)?;
                pem(
                    "csr_pem",
                    &r.csr_pem,
                    "CERTIFICATE REQUEST",
                    MAX_CSR_PEM_LEN,
                )
            }
        }
    }
}
