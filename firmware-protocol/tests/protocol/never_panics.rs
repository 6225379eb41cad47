//! Decoding untrusted bytes returns an error, never a panic, whatever the bytes; and whatever
//! is accepted is a valid message that encodes back to itself.

use gema_firmware_protocol::*;
use proptest::prelude::*;

use crate::strategies::{downlink, uplink};

fn check_one<M: Message + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    encoding: Encoding,
) -> Result<(), TestCaseError> {
    match decode::<M>(bytes, encoding) {
        Ok(msg) => {
            prop_assert_eq!(msg.validate(), Ok(()));
            let again: M = decode(&encode(&msg, encoding), encoding)
                .map_err(|e| TestCaseError::fail(format!("re-decode: {e}")))?;
            prop_assert_eq!(again, msg);
        }
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

/// Every decoder on the same bytes; also as a topic string.
fn check_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    for encoding in [Encoding::Json, Encoding::Postcard] {
        check_one::<Downlink>(bytes, encoding)?;
        check_one::<Uplink>(bytes, encoding)?;
    }
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(topic) = parse_topic(text)
    {
        prop_assert_eq!(topic.direction, topic.kind.direction());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_all(&bytes)?;
    }

    /// Postcard-looking input: a valid version byte first, so decoding gets past the envelope.
    #[test]
    fn arbitrary_postcard_after_a_valid_version_never_panics(
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = vec![1u8];
        bytes.extend(rest);
        check_all(&bytes)?;
    }

    #[test]
    fn arbitrary_json_like_text_never_panics(text in "[{}\\[\\]\":,0-9a-z_ .-]{0,300}") {
        check_all(text.as_bytes())?;
    }

    /// Mutations of valid messages (flipped bytes, truncation) are the realistic hostile input.
    #[test]
    fn mutated_messages_never_panic(
        down in downlink(),
        up in uplink(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        for encoding in [Encoding::Json, Encoding::Postcard] {
            for mut bytes in [encode(&down, encoding), encode(&up, encoding)] {
                check_all(&bytes[..cut.index(bytes.len())])?;
                for (at, value) in &flips {
                    let i = at.index(bytes.len());
                    bytes[i] ^= value | 1;
                }
                check_all(&bytes)?;
            }
        }
    }
}
