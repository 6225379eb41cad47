use gema_firmware_protocol::topic::topic;
use gema_firmware_protocol::*;
use proptest::prelude::*;

use crate::strategies::{downlink, uplink};

const ENCODINGS: [Encoding; 2] = [Encoding::Json, Encoding::Postcard];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn downlinks_round_trip_in_both_encodings(msg in downlink()) {
        prop_assert_eq!(msg.validate(), Ok(()));
        for encoding in ENCODINGS {
            let bytes = encode(&msg, encoding);
            let back: Downlink = decode(&bytes, encoding)
                .map_err(|e| TestCaseError::fail(format!("{encoding:?}: {e}")))?;
            prop_assert_eq!(&back, &msg);
        }
    }

    #[test]
    fn uplinks_round_trip_in_both_encodings(msg in uplink()) {
        prop_assert_eq!(msg.validate(), Ok(()));
        for encoding in ENCODINGS {
            let bytes = encode(&msg, encoding);
            let back: Uplink = decode(&bytes, encoding)
                .map_err(|e| TestCaseError::fail(format!("{encoding:?}: {e}")))?;
            prop_assert_eq!(&back, &msg);
        }
    }

    /// The topic a message is published on decodes it, and names its kind.
    #[test]
    fn messages_decode_on_their_own_topic(down in downlink(), up in uplink()) {
        for encoding in ENCODINGS {
            let t = topic("sb-1", down.kind(), encoding);
            let parsed = parse_topic(&t).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            let back: Downlink = decode_on_topic(&parsed, &encode(&down, encoding))
                .map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(&back, &down);

            let t = topic("sb-1", up.kind(), encoding);
            let parsed = parse_topic(&t).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            let back: Uplink = decode_on_topic(&parsed, &encode(&up, encoding))
                .map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(&back, &up);
        }
    }

    /// JSON's `"type"` is the topic kind, so a message trace can be read without the topic.
    #[test]
    fn json_type_tag_is_the_topic_kind(down in downlink(), up in uplink()) {
        let tag = |bytes: Vec<u8>| -> Option<String> {
            let value: serde_json_nostd::Value = serde_json_nostd::from_slice(&bytes).ok()?;
            Some(value.get("type")?.as_str()?.to_owned())
        };
        prop_assert_eq!(tag(encode(&down, Encoding::Json)), Some(down.kind().as_str().to_owned()));
        prop_assert_eq!(tag(encode(&up, Encoding::Json)), Some(up.kind().as_str().to_owned()));
    }

    /// Postcard is the compact one: never larger than the JSON of the same message.
    #[test]
    fn postcard_is_smaller_than_json(down in downlink(), up in uplink()) {
        prop_assert!(encode(&down, Encoding::Postcard).len() < encode(&down, Encoding::Json).len());
        prop_assert!(encode(&up, Encoding::Postcard).len() < encode(&up, Encoding::Json).len());
    }
}
