//! Topic scheme: every device lives under `devices/<device id>/`, with `down/…` for what Gema
//! sends to the device and `up/…` for what the device sends to Gema. One message kind per
//! topic: `devices/<id>/<down|up>/<kind>` carries JSON, `devices/<id>/<down|up>/<kind>/bin`
//! carries postcard. Parsing a topic never panics: anything else is a [`TopicError`].

use alloc::format;
use alloc::string::String;

/// How a payload is encoded; carried by the topic (`…/<kind>` or `…/<kind>/bin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// UTF-8 JSON object with a `"type"` tag. The default.
    #[default]
    Json,
    /// postcard (varints, length-prefixed strings, no field names). Opt-in for constrained
    /// firmware; topic suffix `/bin`.
    Postcard,
}

/// First topic level of every device topic.
pub const ROOT: &str = "devices";

/// Longest device id we accept. MQTT allows long client ids, but a device id is typed by
/// field technicians and sent in every topic, so keep it short.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// Why a string cannot be a device id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceIdError {
    Empty,
    TooLong,
    /// Only ASCII lower-case letters, digits, `_` and `-` are allowed, so an id is always one
    /// topic level and can never be an MQTT wildcard (`+`, `#`), a separator (`/`) or `$…`.
    InvalidCharacter,
}

impl core::fmt::Display for DeviceIdError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DeviceIdError::Empty => f.write_str("device id is empty"),
            DeviceIdError::TooLong => {
                write!(f, "device id is longer than {MAX_DEVICE_ID_LEN} characters")
            }
            DeviceIdError::InvalidCharacter => f.write_str(
                "device id may contain only lower-case ASCII letters, digits, '_' and '-'",
            ),
        }
    }
}

impl core::error::Error for DeviceIdError {}

/// Checks that `id` can be used as an MQTT username and as a single topic level.
pub fn validate_device_id(id: &str) -> Result<(), DeviceIdError> {
    if id.is_empty() {
        return Err(DeviceIdError::Empty);
    }
    if id.len() > MAX_DEVICE_ID_LEN {
        return Err(DeviceIdError::TooLong);
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(DeviceIdError::InvalidCharacter);
    }
    Ok(())
}

/// `devices/<id>/`: the prefix under which every topic of this device lives.
pub fn device_prefix(device_id: &str) -> String {
    format!("{ROOT}/{device_id}/")
}

/// `devices/<id>/down/`: topics Gema publishes to and the device subscribes to.
pub fn downlink_prefix(device_id: &str) -> String {
    format!("{ROOT}/{device_id}/down/")
}

/// `devices/<id>/up/`: topics the device publishes to.
pub fn uplink_prefix(device_id: &str) -> String {
    format!("{ROOT}/{device_id}/up/")
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Gema → device (`down`).
    Down,
    /// Device → Gema (`up`).
    Up,
}

impl Direction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Down => "down",
            Direction::Up => "up",
        }
    }
}

/// The kind of message a topic carries; the last topic level before the optional `bin`, and
/// the JSON `"type"` of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    // Downlinks.
    Announce,
    DynamicQrShow,
    DynamicQrClear,
    ConfigPush,
    Command,
    CertRenewResult,
    // Uplinks.
    Ack,
    CommandResult,
    Heartbeat,
    ReportedConfig,
    DynamicQrRequest,
    ButtonEvent,
    CertRenew,
}

impl MessageKind {
    pub const ALL: [MessageKind; 13] = [
        MessageKind::Announce,
        MessageKind::DynamicQrShow,
        MessageKind::DynamicQrClear,
        MessageKind::ConfigPush,
        MessageKind::Command,
        MessageKind::CertRenewResult,
        MessageKind::Ack,
        MessageKind::CommandResult,
        MessageKind::Heartbeat,
        MessageKind::ReportedConfig,
        MessageKind::DynamicQrRequest,
        MessageKind::ButtonEvent,
        MessageKind::CertRenew,
    ];

    /// The topic level and JSON `"type"` of this kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageKind::Announce => "announce",
            MessageKind::DynamicQrShow => "qr_show",
            MessageKind::DynamicQrClear => "qr_clear",
            MessageKind::ConfigPush => "config",
            MessageKind::Command => "command",
            MessageKind::CertRenewResult => "cert_renew_result",
            MessageKind::Ack => "ack",
            MessageKind::CommandResult => "command_result",
            MessageKind::Heartbeat => "heartbeat",
            MessageKind::ReportedConfig => "reported_config",
            MessageKind::DynamicQrRequest => "qr_request",
            MessageKind::ButtonEvent => "button",
            MessageKind::CertRenew => "cert_renew",
        }
    }

    pub const fn direction(self) -> Direction {
        match self {
            MessageKind::Announce
            | MessageKind::DynamicQrShow
            | MessageKind::DynamicQrClear
            | MessageKind::ConfigPush
            | MessageKind::Command
            | MessageKind::CertRenewResult => Direction::Down,
            MessageKind::Ack
            | MessageKind::CommandResult
            | MessageKind::Heartbeat
            | MessageKind::ReportedConfig
            | MessageKind::DynamicQrRequest
            | MessageKind::ButtonEvent
            | MessageKind::CertRenew => Direction::Up,
        }
    }

    /// The kind whose topic level (and JSON `"type"`) is `level`.
    pub fn from_level(level: &str) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|k| k.as_str() == level)
    }
}

impl core::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Last topic level marking a postcard payload.
pub const BINARY_SUFFIX: &str = "bin";

/// `devices/<id>/<down|up>/<kind>` for JSON, `…/<kind>/bin` for postcard. The device id is
/// not checked here: ids come from the registry, where [`validate_device_id`] already ran.
pub fn topic(device_id: &str, kind: MessageKind, encoding: Encoding) -> String {
    let direction = kind.direction().as_str();
    let kind = kind.as_str();
    match encoding {
        Encoding::Json => format!("{ROOT}/{device_id}/{direction}/{kind}"),
        Encoding::Postcard => format!("{ROOT}/{device_id}/{direction}/{kind}/{BINARY_SUFFIX}"),
    }
}

/// What a device subscribes to: `devices/<id>/down/#` (every downlink, both encodings).
pub fn downlink_filter(device_id: &str) -> String {
    format!("{ROOT}/{device_id}/down/#")
}

/// What Gema subscribes to (or routes) for every device's uplinks: `devices/+/up/#`.
pub const UPLINK_FILTER: &str = "devices/+/up/#";

/// A topic taken apart by [`parse_topic`]. `direction` always equals `kind.direction()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic<'a> {
    pub device_id: &'a str,
    pub direction: Direction,
    pub kind: MessageKind,
    pub encoding: Encoding,
}

/// Why a topic is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    /// Does not start with `devices/`.
    NotDeviceTopic,
    InvalidDeviceId(DeviceIdError),
    /// The level after the device id is neither `down` nor `up`.
    UnknownDirection,
    /// No message kind, or one this protocol does not define.
    UnknownKind,
    /// A known kind under the wrong direction (e.g. `down/ack`).
    WrongDirection,
    /// Something after the kind other than a single `bin` level.
    UnexpectedLevels,
}

impl core::fmt::Display for TopicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TopicError::NotDeviceTopic => write!(f, "topic does not start with `{ROOT}/`"),
            TopicError::InvalidDeviceId(e) => write!(f, "topic has an invalid device id: {e}"),
            TopicError::UnknownDirection => {
                f.write_str("topic direction is neither `down` nor `up`")
            }
            TopicError::UnknownKind => f.write_str("topic names no known message kind"),
            TopicError::WrongDirection => {
                f.write_str("topic names a message kind under the wrong direction")
            }
            TopicError::UnexpectedLevels => {
                write!(
                    f,
                    "topic has levels after the kind other than `/{BINARY_SUFFIX}`"
                )
            }
        }
    }
}

impl core::error::Error for TopicError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            TopicError::InvalidDeviceId(e) => Some(e),
            _ => None,
        }
    }
}

/// Takes apart `devices/<id>/<down|up>/<kind>[/bin]`. Never panics; wildcards and anything
/// else are errors.
pub fn parse_topic(topic: &str) -> Result<Topic<'_>, TopicError> {
    let mut levels = topic.split('/');
    if levels.next() != Some(ROOT) {
        return Err(TopicError::NotDeviceTopic);
    }
    let device_id = levels.next().unwrap_or("");
    validate_device_id(device_id).map_err(TopicError::InvalidDeviceId)?;
    let direction = match levels.next() {
        Some("down") => Direction::Down,
        Some("up") => Direction::Up,
        _ => return Err(TopicError::UnknownDirection),
    };
    let kind = levels
        .next()
        .and_then(MessageKind::from_level)
        .ok_or(TopicError::UnknownKind)?;
    if kind.direction() != direction {
        return Err(TopicError::WrongDirection);
    }
    let encoding = match (levels.next(), levels.next()) {
        (None, _) => Encoding::Json,
        (Some(BINARY_SUFFIX), None) => Encoding::Postcard,
        _ => return Err(TopicError::UnexpectedLevels),
    };
    Ok(Topic {
        device_id,
        direction,
        kind,
        encoding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_generated_and_serial_like_ids() {
        assert_eq!(validate_device_id("dev_01jd8x3k7q"), Ok(()));
        assert_eq!(validate_device_id("sb-2024-0001"), Ok(()));
    }

    #[test]
    fn refuses_ids_that_would_escape_one_topic_level() {
        for bad in ["a/b", "+", "#", "$sys", "Dev", "a b", "é"] {
            assert_eq!(
                validate_device_id(bad),
                Err(DeviceIdError::InvalidCharacter),
                "{bad}"
            );
        }
        assert_eq!(validate_device_id(""), Err(DeviceIdError::Empty));
        let long = "a".repeat(MAX_DEVICE_ID_LEN + 1);
        assert_eq!(validate_device_id(&long), Err(DeviceIdError::TooLong));
    }

    #[test]
    fn prefixes_follow_the_scheme() {
        assert_eq!(device_prefix("d1"), "devices/d1/");
        assert_eq!(downlink_prefix("d1"), "devices/d1/down/");
        assert_eq!(uplink_prefix("d1"), "devices/d1/up/");
    }

    #[test]
    fn every_kind_round_trips_through_its_topic() {
        for kind in MessageKind::ALL {
            for encoding in [Encoding::Json, Encoding::Postcard] {
                let t = topic("sb-1", kind, encoding);
                assert_eq!(
                    parse_topic(&t),
                    Ok(Topic {
                        device_id: "sb-1",
                        direction: kind.direction(),
                        kind,
                        encoding
                    }),
                    "{t}"
                );
            }
        }
    }

    #[test]
    fn topics_are_spelled_as_documented() {
        assert_eq!(
            topic("d1", MessageKind::Announce, Encoding::Json),
            "devices/d1/down/announce"
        );
        assert_eq!(
            topic("d1", MessageKind::Announce, Encoding::Postcard),
            "devices/d1/down/announce/bin"
        );
        assert_eq!(
            topic("d1", MessageKind::Ack, Encoding::Json),
            "devices/d1/up/ack"
        );
        assert_eq!(
            topic("d1", MessageKind::DynamicQrRequest, Encoding::Json),
            "devices/d1/up/qr_request"
        );
        assert_eq!(downlink_filter("d1"), "devices/d1/down/#");
    }

    #[test]
    fn refuses_topics_outside_the_scheme() {
        let cases = [
            ("", TopicError::NotDeviceTopic),
            ("device/d1/up/ack", TopicError::NotDeviceTopic),
            ("devices", TopicError::InvalidDeviceId(DeviceIdError::Empty)),
            (
                "devices//up/ack",
                TopicError::InvalidDeviceId(DeviceIdError::Empty),
            ),
            (
                "devices/+/up/ack",
                TopicError::InvalidDeviceId(DeviceIdError::InvalidCharacter),
            ),
            ("devices/d1", TopicError::UnknownDirection),
            ("devices/d1/sideways/ack", TopicError::UnknownDirection),
            ("devices/d1/up", TopicError::UnknownKind),
            ("devices/d1/up/", TopicError::UnknownKind),
            ("devices/d1/up/#", TopicError::UnknownKind),
            ("devices/d1/up/Ack", TopicError::UnknownKind),
            ("devices/d1/down/ack", TopicError::WrongDirection),
            ("devices/d1/up/announce", TopicError::WrongDirection),
            ("devices/d1/up/ack/", TopicError::UnexpectedLevels),
            ("devices/d1/up/ack/json", TopicError::UnexpectedLevels),
            ("devices/d1/up/ack/bin/x", TopicError::UnexpectedLevels),
        ];
        for (t, err) in cases {
            assert_eq!(parse_topic(t), Err(err), "{t}");
        }
    }
}
