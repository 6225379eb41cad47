//! The two encodings of [`Downlink`] and [`Uplink`], and the decoder that every untrusted
//! payload goes through.
//!
//! **Why two serde shapes.** JSON should read well in stock MQTT tools: one flat object with a
//! `"type"` tag. That is serde's internally tagged representation, which needs a
//! self-describing format (`deserialize_any`) and therefore cannot be read by postcard. So the
//! serde impls of `Downlink` and `Uplink` look at `is_human_readable()`:
//!
//! - human-readable formats (JSON): `{"type": <kind>, "version", "msg_id", "sent_at",
//!   …body fields}`, through private internally tagged mirror enums with a flattened body;
//! - compact formats (postcard): the tuple `(envelope, body)` where the body is an externally
//!   tagged enum, i.e. `varint version, string msg_id, zigzag sent_at, varint variant index,
//!   body fields in declaration order`.
//!
//! The same split applies to [`CommandAction`]: adjacently tagged in JSON (`{"name", "args"}`),
//! externally tagged (variant index) in postcard. Every other body type is a plain struct or
//! unit enum that both formats handle alike.
//!
//! This module must never panic on input: every failure is a [`DecodeError`].

use alloc::string::String;
use alloc::vec::Vec;

use serde_nostd::de::DeserializeOwned;
use serde_nostd::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::MAX_MESSAGE_LEN;
use crate::message::*;
use crate::topic::{Direction, Encoding, MessageKind, Topic};
use crate::validate::ValidationError;

/// Why a payload was refused.
#[derive(Debug)]
pub enum DecodeError {
    /// Longer than [`MAX_MESSAGE_LEN`]; not looked at.
    TooLarge { len: usize },
    /// The `version` field is not [`PROTOCOL_VERSION`].
    UnsupportedVersion(u64),
    /// Not JSON, not UTF-8, wrong shape or types, unknown `"type"`, trailing characters.
    Json(serde_json_nostd::Error),
    /// Not a postcard encoding of a message (bad varint, bad UTF-8, unknown variant, …).
    Postcard(postcard::Error),
    /// Bytes left over after a complete postcard message.
    TrailingBytes { count: usize },
    /// The payload is a different kind from the one its topic names.
    KindMismatch {
        topic: MessageKind,
        payload: MessageKind,
    },
    /// The topic is not for this direction (e.g. decoding a downlink topic as an uplink).
    WrongDirection,
    /// Well-formed but breaks a rule of the protocol.
    Invalid(ValidationError),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::TooLarge { len } => {
                write!(f, "payload of {len} bytes exceeds {MAX_MESSAGE_LEN} bytes")
            }
            DecodeError::UnsupportedVersion(v) => write!(
                f,
                "unsupported protocol version {v} (this side speaks {PROTOCOL_VERSION})"
            ),
            DecodeError::Json(e) => write!(f, "malformed JSON message: {e}"),
            DecodeError::Postcard(e) => write!(f, "malformed postcard message: {e}"),
            DecodeError::TrailingBytes { count } => {
                write!(f, "{count} trailing bytes after the message")
            }
            DecodeError::KindMismatch { topic, payload } => write!(
                f,
                "topic is for `{topic}` but the payload is a `{payload}` message"
            ),
            DecodeError::WrongDirection => {
                f.write_str("topic direction does not match the message direction")
            }
            DecodeError::Invalid(e) => write!(f, "invalid message: {e}"),
        }
    }
}

impl core::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            DecodeError::Json(e) => Some(e),
            DecodeError::Postcard(e) => Some(e),
            DecodeError::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ValidationError> for DecodeError {
    fn from(e: ValidationError) -> Self {
        DecodeError::Invalid(e)
    }
}

/// A top-level message: [`Downlink`] or [`Uplink`].
pub trait Message: Serialize + DeserializeOwned + sealed::Sealed {
    const DIRECTION: Direction;
    fn envelope(&self) -> &Envelope;
    fn kind(&self) -> MessageKind;
    fn validate(&self) -> Result<(), ValidationError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::message::Downlink {}
    impl Sealed for crate::message::Uplink {}
}

impl Message for Downlink {
    const DIRECTION: Direction = Direction::Down;
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }
    fn kind(&self) -> MessageKind {
        self.body.kind()
    }
    fn validate(&self) -> Result<(), ValidationError> {
        Downlink::validate(self)
    }
}

impl Message for Uplink {
    const DIRECTION: Direction = Direction::Up;
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }
    fn kind(&self) -> MessageKind {
        self.body.kind()
    }
    fn validate(&self) -> Result<(), ValidationError> {
        Uplink::validate(self)
    }
}

impl Downlink {
    pub fn kind(&self) -> MessageKind {
        self.body.kind()
    }

    /// The topic this message is published on for `device_id` in `encoding`.
    pub fn topic(&self, device_id: &str, encoding: Encoding) -> String {
        crate::topic::topic(device_id, self.kind(), encoding)
    }
}

impl Uplink {
    pub fn kind(&self) -> MessageKind {
        self.body.kind()
    }

    /// The topic this message is published on for `device_id` in `encoding`.
    pub fn topic(&self, device_id: &str, encoding: Encoding) -> String {
        crate::topic::topic(device_id, self.kind(), encoding)
    }
}

impl DownlinkBody {
    pub fn kind(&self) -> MessageKind {
        match self {
            DownlinkBody::Announce(_) => MessageKind::Announce,
            DownlinkBody::DynamicQrShow(_) => MessageKind::DynamicQrShow,
            DownlinkBody::DynamicQrClear(_) => MessageKind::DynamicQrClear,
            DownlinkBody::ConfigPush(_) => MessageKind::ConfigPush,
            DownlinkBody::Command(_) => MessageKind::Command,
            DownlinkBody::CertRenewResult(_) => MessageKind::CertRenewResult,
        }
    }
}

impl UplinkBody {
    pub fn kind(&self) -> MessageKind {
        match self {
            UplinkBody::Ack(_) => MessageKind::Ack,
            UplinkBody::CommandResult(_) => MessageKind::CommandResult,
            UplinkBody::Heartbeat(_) => MessageKind::Heartbeat,
            UplinkBody::ReportedConfig(_) => MessageKind::ReportedConfig,
            UplinkBody::DynamicQrRequest(_) => MessageKind::DynamicQrRequest,
            UplinkBody::ButtonEvent(_) => MessageKind::ButtonEvent,
            UplinkBody::CertRenew(_) => MessageKind::CertRenew,
        }
    }
}

/// Encodes `msg`. Does not validate: call `msg.validate()` first when the values come from
/// outside (the decoder on the other side will).
pub fn encode<M: Message>(msg: &M, encoding: Encoding) -> Vec<u8> {
    match encoding {
        // Cannot fail: every map key is a string and every Serialize impl here is infallible.
        Encoding::Json => serde_json_nostd::to_vec(msg).expect("protocol messages encode as JSON"),
        // Cannot fail: the output is a growable Vec and every sequence has a known length.
        Encoding::Postcard => {
            postcard::to_allocvec(msg).expect("protocol messages encode as postcard")
        }
    }
}

/// Decodes and validates one message. Never panics. Checks, in order: size, syntax and shape
/// (no trailing bytes), protocol version, [`Message::validate`].
pub fn decode<M: Message>(bytes: &[u8], encoding: Encoding) -> Result<M, DecodeError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLarge { len: bytes.len() });
    }
    let msg: M = match encoding {
        Encoding::Json => serde_json_nostd::from_slice(bytes).map_err(|e| {
            // A message of another version may have another shape: report the version.
            json_version(bytes)
                .filter(|&v| v != u64::from(PROTOCOL_VERSION))
                .map_or(DecodeError::Json(e), DecodeError::UnsupportedVersion)
        })?,
        Encoding::Postcard => match postcard::take_from_bytes::<M>(bytes) {
            Ok((msg, [])) => msg,
            Ok((_, rest)) => return Err(DecodeError::TrailingBytes { count: rest.len() }),
            Err(e) => {
                return Err(postcard_version(bytes)
                    .filter(|&v| v != u64::from(PROTOCOL_VERSION))
                    .map_or(DecodeError::Postcard(e), DecodeError::UnsupportedVersion));
            }
        },
    };
    let version = msg.envelope().version;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion(u64::from(version)));
    }
    msg.validate()?;
    Ok(msg)
}

/// [`decode`] with the encoding taken from the topic, checking that the topic's direction and
/// kind match the payload's.
pub fn decode_on_topic<M: Message>(topic: &Topic<'_>, bytes: &[u8]) -> Result<M, DecodeError> {
    if topic.direction != M::DIRECTION {
        return Err(DecodeError::WrongDirection);
    }
    let msg: M = decode(bytes, topic.encoding)?;
    if msg.kind() != topic.kind {
        return Err(DecodeError::KindMismatch {
            topic: topic.kind,
            payload: msg.kind(),
        });
    }
    Ok(msg)
}

/// The `version` of a JSON object, when the payload is an object that has a numeric one.
fn json_version(bytes: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    #[serde(crate = "serde_nostd")]
    struct Probe {
        version: u64,
    }
    serde_json_nostd::from_slice::<Probe>(bytes)
        .ok()
        .map(|p| p.version)
}

/// The leading varint of a postcard message: its version in every protocol version.
fn postcard_version(bytes: &[u8]) -> Option<u64> {
    postcard::take_from_bytes::<u64>(bytes).ok().map(|(v, _)| v)
}

// ---- JSON form: flat, "type"-tagged, through mirror types ----

#[derive(Serialize)]
#[serde(crate = "serde_nostd")]
struct FlatRef<'a, B> {
    version: u16,
    msg_id: &'a str,
    sent_at: UnixMillis,
    #[serde(flatten)]
    body: &'a B,
}

#[derive(Deserialize)]
#[serde(crate = "serde_nostd")]
struct Flat<B> {
    version: u16,
    msg_id: String,
    sent_at: UnixMillis,
    #[serde(flatten)]
    body: B,
}

impl<'a, B> FlatRef<'a, B> {
    fn new(envelope: &'a Envelope, body: &'a B) -> Self {
        FlatRef {
            version: envelope.version,
            msg_id: &envelope.msg_id,
            sent_at: envelope.sent_at,
            body,
        }
    }
}

impl<B> Flat<B> {
    fn split(self) -> (Envelope, B) {
        let envelope = Envelope {
            version: self.version,
            msg_id: self.msg_id,
            sent_at: self.sent_at,
        };
        (envelope, self.body)
    }
}

/// Writes the JSON mirror enums and the serde impls of one top-level message type. Variant
/// renames must equal [`MessageKind::as_str`] (a test checks it).
macro_rules! wire_forms {
    ($msg:ident, $body:ident, $json_ref:ident, $json:ident:
        $($variant:ident($ty:ident) = $tag:literal),* $(,)?) => {
        #[derive(Serialize)]
        #[serde(crate = "serde_nostd", tag = "type")]
        enum $json_ref<'a> {
            $(#[serde(rename = $tag)] $variant(FlatRef<'a, $ty>),)*
        }

        #[derive(Deserialize)]
        #[serde(crate = "serde_nostd", tag = "type")]
        enum $json {
            $(#[serde(rename = $tag)] $variant(Flat<$ty>),)*
        }

        impl Serialize for $msg {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    let e = &self.envelope;
                    match &self.body {
                        $($body::$variant(b) => $json_ref::$variant(FlatRef::new(e, b)),)*
                    }
                    .serialize(serializer)
                } else {
                    (&self.envelope, &self.body).serialize(serializer)
                }
            }
        }

        impl<'de> Deserialize<'de> for $msg {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let (envelope, body) = match $json::deserialize(deserializer)? {
                        $($json::$variant(flat) => {
                            let (e, b) = flat.split();
                            (e, $body::$variant(b))
                        })*
                    };
                    Ok($msg { envelope, body })
                } else {
                    let (envelope, body) = <(Envelope, $body)>::deserialize(deserializer)?;
                    Ok($msg { envelope, body })
                }
            }
        }
    };
}

wire_forms!(Downlink, DownlinkBody, DownlinkJsonRef, DownlinkJson:
    Announce(Announce) = "announce",
    DynamicQrShow(DynamicQrShow) = "qr_show",
    DynamicQrClear(DynamicQrClear) = "qr_clear",
    ConfigPush(ConfigPush) = "config",
    Command(Command) = "command",
    CertRenewResult(CertRenewResult) = "cert_renew_result",
);

wire_forms!(Uplink, UplinkBody, UplinkJsonRef, UplinkJson:
    Ack(Ack) = "ack",
    CommandResult(CommandResult) = "command_result",
    Heartbeat(Heartbeat) = "heartbeat",
    ReportedConfig(ReportedConfig) = "reported_config",
    DynamicQrRequest(DynamicQrRequest) = "qr_request",
    ButtonEvent(ButtonEvent) = "button",
    CertRenew(CertRenew) = "cert_renew",
);

// ---- CommandAction: adjacently tagged in JSON, externally tagged in postcard ----

#[derive(Serialize, Deserialize)]
#[serde(
    crate = "serde_nostd",
    remote = "CommandAction",
    tag = "name",
    content = "args",
    rename_all = "snake_case"
)]
enum CommandActionJson {
    SetVolume { volume: u8 },
    Reboot,
    ReplayLast { count: u8 },
    AnnounceDailySummary,
    GetStatus,
    FwUpdate(ImageUpdate),
    AudioUpdate(ImageUpdate),
}

#[derive(Serialize, Deserialize)]
#[serde(
    crate = "serde_nostd",
    remote = "CommandAction",
    rename_all = "snake_case"
)]
enum CommandActionCompact {
    SetVolume { volume: u8 },
    Reboot,
    ReplayLast { count: u8 },
    AnnounceDailySummary,
    GetStatus,
    FwUpdate(ImageUpdate),
    AudioUpdate(ImageUpdate),
}

impl Serialize for CommandAction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            CommandActionJson::serialize(self, serializer)
        } else {
            CommandActionCompact::serialize(self, serializer)
        }
    }
}

impl<'de> Deserialize<'de> for CommandAction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            CommandActionJson::deserialize(deserializer)
        } else {
            CommandActionCompact::deserialize(deserializer)
        }
    }
}
