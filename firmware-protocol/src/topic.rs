//! Topic scheme: every device lives under `devices/<device id>/`, with `down/…` for what Gema
//! sends to the device and `up/…` for what the device sends to Gema.

use alloc::format;
use alloc::string::String;

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
}
