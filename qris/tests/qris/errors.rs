//! Rejected payloads: each gives the error that names what is wrong.

use gema_qris::{QrisError, TagPath, decode};

use crate::vectors::{ALL, V1, V3, with_crc};

/// V3 without its CRC object, split right before tag 58 so that a tag can be inserted there.
fn v3_around_58() -> (&'static str, &'static str) {
    let body = &V3[..V3.len() - 8];
    body.split_at(body.find("5802ID").expect("tag 58"))
}

#[test]
fn changed_character_with_kept_crc_is_a_crc_mismatch() {
    // Every position of every vector before the `6304` tail, a few replacement characters.
    for vector in ALL {
        let crc = &vector[vector.len() - 4..];
        for position in 0..vector.len() - 8 {
            for replacement in ['0', '9', 'A', 'z', ' ', '*'] {
                let mut bad = vector.to_owned();
                if bad.as_bytes()[position] == replacement as u8 {
                    continue;
                }
                bad.replace_range(position..=position, &replacement.to_string());
                match decode(&bad) {
                    Err(QrisError::CrcMismatch { found, computed }) => {
                        assert_eq!(found, crc);
                        assert_ne!(computed, crc);
                    }
                    other => panic!("{bad}: expected a CRC mismatch, got {other:?}"),
                }
            }
        }
    }
}

#[test]
fn merchant_name_edit_is_a_crc_mismatch() {
    let bad = V1.replace("GUREUM SHOP", "GUREUM SHOQ");
    let error = decode(&bad).expect_err("edited code");
    assert_eq!(
        error,
        QrisError::CrcMismatch {
            found: "455C".into(),
            computed: gema_qris::crc16_hex(&bad.as_bytes()[..bad.len() - 4]),
        }
    );
    assert!(error.to_string().contains("CRC mismatch"));
}

#[test]
fn crc_format_is_checked() {
    let lower = format!("{}{}", &V1[..V1.len() - 4], "455c");
    assert_eq!(
        decode(&lower),
        Err(QrisError::InvalidCrcFormat {
            found: "455c".into()
        })
    );
    let not_hex = format!("{}{}", &V1[..V1.len() - 4], "45G5");
    assert_eq!(
        decode(&not_hex),
        Err(QrisError::InvalidCrcFormat {
            found: "45G5".into()
        })
    );
}

#[test]
fn empty_and_non_ascii_payloads() {
    assert_eq!(decode(""), Err(QrisError::Empty));
    let accented = V3.replace("Warung", "Warüng");
    assert_eq!(
        decode(&accented),
        Err(QrisError::InvalidCharacter {
            position: V3.find("Warung").expect("name") + 3,
            byte: 0xC3
        })
    );
    let newline = format!("{V1}\n");
    assert_eq!(
        decode(&newline),
        Err(QrisError::InvalidCharacter {
            position: V1.len(),
            byte: b'\n'
        })
    );
    assert!(matches!(
        gema_qris::Qris::decode_bytes(&[0x30, 0x30, 0xFF]),
        Err(QrisError::InvalidCharacter {
            position: 2,
            byte: 0xFF
        })
    ));
}

#[test]
fn truncated_payloads_name_the_object() {
    // Cut in the middle of the merchant name value (tag 59).
    let name = V1.find("5911GUREUM").expect("tag 59");
    let cut = &V1[..name + 8];
    assert_eq!(
        decode(cut),
        Err(QrisError::LengthOverrun {
            tag: TagPath::top(59),
            position: name,
            length: 11,
            available: 4,
        })
    );
    // Cut inside an object header.
    let cut = &V1[..name + 3];
    assert_eq!(
        decode(cut),
        Err(QrisError::TruncatedObject {
            position: name,
            remaining: 3,
        })
    );
    // Cut right after a complete object: well formed but without a CRC.
    assert_eq!(decode(&V1[..name]), Err(QrisError::MissingCrc));
    // Every prefix of every vector is rejected without a panic.
    for vector in ALL {
        for end in 0..vector.len() {
            assert!(decode(&vector[..end]).is_err(), "{}", &vector[..end]);
        }
    }
}

#[test]
fn truncated_object_with_a_valid_crc() {
    // `5909AB` swallows `6304` and three CRC digits, leaving one character.
    let payload = with_crc("0002015909AB");
    assert_eq!(
        decode(&payload),
        Err(QrisError::TruncatedObject {
            position: payload.len() - 1,
            remaining: 1,
        })
    );
}

#[test]
fn non_digit_ids_and_lengths() {
    assert_eq!(
        decode(&with_crc("000201A10212")),
        Err(QrisError::InvalidId {
            position: 6,
            found: "A1".into()
        })
    );
    assert_eq!(
        decode(&with_crc("0002010A0212")),
        Err(QrisError::InvalidId {
            position: 6,
            found: "0A".into()
        })
    );
    assert_eq!(
        decode(&with_crc("00020101X212")),
        Err(QrisError::InvalidLength {
            tag: TagPath::top(1),
            position: 6,
            found: "X2".into()
        })
    );
    assert_eq!(
        decode(&with_crc("000201010 12")),
        Err(QrisError::InvalidLength {
            tag: TagPath::top(1),
            position: 6,
            found: "0 ".into()
        })
    );
    // Inside a template: the error names the sub-object and its absolute position.
    assert_eq!(
        decode(&with_crc("0002016208070XA01")),
        Err(QrisError::InvalidLength {
            tag: TagPath::sub(62, 7),
            position: 10,
            found: "0X".into()
        })
    );
}

#[test]
fn lengths_running_past_the_end() {
    assert_eq!(
        decode(&with_crc("0002015999ABC")),
        Err(QrisError::LengthOverrun {
            tag: TagPath::top(59),
            position: 6,
            length: 99,
            available: 11,
        })
    );
    // A sub-object running past the end of its template, not of the payload.
    assert_eq!(
        decode(&with_crc("00020162070710A01")),
        Err(QrisError::LengthOverrun {
            tag: TagPath::sub(62, 7),
            position: 10,
            length: 10,
            available: 3,
        })
    );
    assert_eq!(
        decode(&with_crc("0002015900")),
        Err(QrisError::EmptyValue {
            tag: TagPath::top(59),
            position: 6
        })
    );
}

#[test]
fn payload_format_must_come_first() {
    assert_eq!(
        decode(&with_crc("010211000201")),
        Err(QrisError::MissingPayloadFormat)
    );
    assert_eq!(
        decode(&with_crc("000202010211")),
        Err(QrisError::InvalidPayloadFormat { found: "02".into() })
    );
}

#[test]
fn crc_must_come_last() {
    // A CRC object in the middle and none at the end.
    let crc_first = with_crc("000201");
    let payload = format!("{crc_first}5802ID");
    assert_eq!(decode(&payload), Err(QrisError::MissingCrc));
    // The tail looks like a CRC but is inside the value of tag 59.
    let covered = "0002015912AB6304";
    let inner = format!("{covered}{}", gema_qris::crc16_hex(covered.as_bytes()));
    assert_eq!(
        decode(&inner),
        Err(QrisError::LengthOverrun {
            tag: TagPath::top(59),
            position: 6,
            length: 12,
            available: 10,
        })
    );
}

#[test]
fn a_value_may_contain_6304() {
    let payload = with_crc("0002015912AB6304000000");
    let qris = decode(&payload).expect("6304 inside a name is only text");
    assert_eq!(qris.merchant_name(), Some("AB6304000000"));
    assert_eq!(qris.encode(), payload);
}

#[test]
fn duplicate_top_level_tags() {
    let (before, after) = v3_around_58();
    let payload = with_crc(&format!("{before}5303360{after}"));
    assert_eq!(
        decode(&payload),
        Err(QrisError::DuplicateTag {
            tag: TagPath::top(53),
            position: before.len(),
        })
    );
    let twice_crc = with_crc(&with_crc("000201"));
    assert_eq!(
        decode(&twice_crc),
        Err(QrisError::DuplicateTag {
            tag: TagPath::top(63),
            position: 14,
        })
    );
}

#[test]
fn invalid_amounts() {
    let (before, after) = v3_around_58();
    for text in [
        "1.000",
        "1000,00",
        "1 000",
        "0",
        "0.00",
        ".50",
        "1000.50",
        "1000.001",
        "-1000",
        "+1000",
        "1e3",
        "10.00.0",
        "12345678901234",
    ] {
        let payload = with_crc(&format!("{before}54{:02}{text}{after}", text.len()));
        match decode(&payload) {
            Err(QrisError::InvalidValue { tag, found, .. }) => {
                assert_eq!(tag, TagPath::top(54), "{text}");
                assert_eq!(found, text);
            }
            other => panic!("{text}: expected an invalid amount, got {other:?}"),
        }
    }
}

#[test]
fn currency_must_be_rupiah() {
    let body = V3[..V3.len() - 8].replace("5303360", "5303840");
    assert_eq!(
        decode(&with_crc(&body)),
        Err(QrisError::InvalidValue {
            tag: TagPath::top(53),
            found: "840".into(),
            reason: "the currency must be 360 (Indonesian rupiah)",
        })
    );
    // Absent is accepted.
    let body = V3[..V3.len() - 8].replace("5303360", "");
    assert_eq!(
        decode(&with_crc(&body)).map(|q| q.currency().is_none()),
        Ok(true)
    );
}

#[test]
fn other_checked_values() {
    let (before, after) = v3_around_58();
    for (inserted, tag) in [
        ("550204", 55),          // indicator out of range
        ("550202", 55),          // fixed fee indicator without tag 56
        ("550203", 55),          // percentage indicator without tag 57
        ("550202560412.5", 56),  // fractional fixed fee
        ("550203570550.0x", 57), // not a number
    ] {
        let payload = with_crc(&format!("{before}{inserted}{after}"));
        match decode(&payload) {
            Err(QrisError::InvalidValue { tag: found, .. }) => {
                assert_eq!(found, TagPath::top(tag), "{inserted}")
            }
            other => panic!("{inserted}: expected an invalid value, got {other:?}"),
        }
    }
    for percent in ["0", "0.00", "100.5", "101", "2,5", "123456"] {
        let payload = with_crc(&format!(
            "{before}55020357{:02}{percent}{after}",
            percent.len()
        ));
        assert!(
            matches!(decode(&payload), Err(QrisError::InvalidValue { tag, .. }) if tag == TagPath::top(57)),
            "{percent}"
        );
    }
    let poi = with_crc(&V3[..V3.len() - 8].replacen("010211", "010213", 1));
    assert!(matches!(
        decode(&poi),
        Err(QrisError::InvalidValue { tag, .. }) if tag == TagPath::top(1)
    ));
    let mcc = with_crc(&V3[..V3.len() - 8].replace("52045812", "5203581"));
    assert!(matches!(
        decode(&mcc),
        Err(QrisError::InvalidValue { tag, .. }) if tag == TagPath::top(52)
    ));
}

#[test]
fn errors_name_the_tag_in_their_message() {
    let error = decode(&with_crc("00020162070710A01")).expect_err("overrun");
    let message = error.to_string();
    assert!(message.contains("62.07"), "{message}");
    assert!(message.contains("position 10"), "{message}");
}
