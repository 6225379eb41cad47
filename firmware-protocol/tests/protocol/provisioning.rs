//! The provisioning string: what is written parses back to the same values and the same
//! text, hostile text is refused with the field at fault, and nothing panics.

use gema_firmware_protocol::provisioning::Field;
use gema_firmware_protocol::{ProvisioningError, ProvisioningString};
use proptest::prelude::*;

const CA_HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn with(host: &str, port: &str, id: &str, secret: &str, ca: &str) -> String {
    format!("GEMA1:host={host};port={port};id={id};secret={secret};ca={ca}")
}

fn good() -> String {
    with(
        "gema.example",
        "8883",
        "dev_01jd8x",
        "abcdefghijklmnopqrstuvwxyz234567",
        CA_HEX,
    )
}

#[test]
fn the_base_string_is_accepted() {
    let text = good();
    let p = ProvisioningString::parse(&text).unwrap();
    assert_eq!(
        (p.host(), p.port(), p.device_id()),
        ("gema.example", 8883, "dev_01jd8x")
    );
}

#[test]
fn ip_addresses_are_hosts() {
    for host in ["192.0.2.10", "2001:db8::1", "localhost"] {
        let text = with(host, "1", "d", "s", CA_HEX);
        assert_eq!(ProvisioningString::parse(&text).unwrap().host(), host);
    }
}

#[test]
fn other_prefixes_and_versions_are_refused() {
    let body = good();
    let body = body.strip_prefix("GEMA1:").unwrap();
    for (prefix, err) in [
        ("GEMA2:", ProvisioningError::UnsupportedVersion),
        ("GEMA10:", ProvisioningError::UnsupportedVersion),
        ("GEMA:", ProvisioningError::NotProvisioning),
        ("GEMA1;", ProvisioningError::NotProvisioning),
        ("gema1:", ProvisioningError::NotProvisioning),
        ("WIFI:", ProvisioningError::NotProvisioning),
        ("", ProvisioningError::NotProvisioning),
    ] {
        assert_eq!(
            ProvisioningString::parse(&format!("{prefix}{body}")),
            Err(err),
            "{prefix}"
        );
    }
}

#[test]
fn fields_come_once_in_their_order() {
    let ca = format!("ca={CA_HEX}");
    let swapped = format!("GEMA1:port=8883;host=h;id=d;secret=s;{ca}");
    assert_eq!(
        ProvisioningString::parse(&swapped),
        Err(ProvisioningError::ExpectedField(Field::Host))
    );
    let missing = format!("GEMA1:host=h;port=8883;secret=s;{ca}");
    assert_eq!(
        ProvisioningString::parse(&missing),
        Err(ProvisioningError::ExpectedField(Field::DeviceId))
    );
    let short = "GEMA1:host=h;port=8883;id=d;secret=s";
    assert_eq!(
        ProvisioningString::parse(short),
        Err(ProvisioningError::ExpectedField(Field::CaFingerprint))
    );
    let no_equals = format!("GEMA1:host;port=8883;id=d;secret=s;{ca}");
    assert_eq!(
        ProvisioningString::parse(&no_equals),
        Err(ProvisioningError::ExpectedField(Field::Host))
    );
    for tail in [";", ";x=1", "\n", ";ca=00"] {
        let text = format!("{}{tail}", good());
        let err = ProvisioningString::parse(&text).unwrap_err();
        assert!(
            matches!(
                err,
                ProvisioningError::TrailingInput
                    | ProvisioningError::InvalidField(Field::CaFingerprint)
            ),
            "{tail:?}: {err}"
        );
    }
}

#[test]
fn each_value_breaking_its_rule_names_its_field() {
    let cases: [(String, Field); 14] = [
        (with("", "1", "d", "s", CA_HEX), Field::Host),
        (with("a b", "1", "d", "s", CA_HEX), Field::Host),
        (with("a=b", "1", "d", "s", CA_HEX), Field::Host),
        (with(&"h".repeat(254), "1", "d", "s", CA_HEX), Field::Host),
        (with("h", "0", "d", "s", CA_HEX), Field::Port),
        (with("h", "08883", "d", "s", CA_HEX), Field::Port),
        (with("h", "65536", "d", "s", CA_HEX), Field::Port),
        (with("h", "+1", "d", "s", CA_HEX), Field::Port),
        (with("h", "1", "Dev", "s", CA_HEX), Field::DeviceId),
        (with("h", "1", "d", "", CA_HEX), Field::Secret),
        (with("h", "1", "d", "a%3Bb", CA_HEX), Field::Secret),
        (
            with("h", "1", "d", "s", &CA_HEX.to_uppercase()),
            Field::CaFingerprint,
        ),
        (
            with("h", "1", "d", "s", &CA_HEX[..62]),
            Field::CaFingerprint,
        ),
        (
            with("h", "1", "d", "s", &format!("{}g", &CA_HEX[..63])),
            Field::CaFingerprint,
        ),
    ];
    for (text, field) in cases {
        assert_eq!(
            ProvisioningString::parse(&text),
            Err(ProvisioningError::InvalidField(field)),
            "{text}"
        );
    }
}

#[test]
fn values_that_would_need_escaping_cannot_be_written() {
    let ca = [0u8; 32];
    for (host, id, secret, field) in [
        ("h;port=1", "d", "s", Field::Host),
        ("h", "d;x", "s", Field::DeviceId),
        ("h", "d", "s;ca=00", Field::Secret),
        ("h", "d", "s=", Field::Secret),
        ("h", "d", "s\n", Field::Secret),
    ] {
        assert_eq!(
            ProvisioningString::new(host, 1, id, secret, ca),
            Err(ProvisioningError::InvalidField(field))
        );
    }
    assert_eq!(
        ProvisioningString::new("h", 0, "d", "s", ca),
        Err(ProvisioningError::InvalidField(Field::Port))
    );
}

#[test]
fn every_error_has_a_message_naming_its_field() {
    for field in Field::ALL {
        for err in [
            ProvisioningError::ExpectedField(field),
            ProvisioningError::InvalidField(field),
        ] {
            assert!(err.to_string().contains(field.key()), "{err}");
        }
    }
}

fn host() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,253}"
}

fn device_id() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,64}"
}

fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~-]{1,128}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn what_is_written_parses_back_to_the_same_values(
        host in host(),
        port in 1..=u16::MAX,
        id in device_id(),
        secret in secret(),
        ca in any::<[u8; 32]>(),
    ) {
        let built = ProvisioningString::new(&host, port, &id, &secret, ca)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let text = built.to_string();
        prop_assert!(text.len() <= ProvisioningString::MAX_LEN);
        let parsed = ProvisioningString::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(parsed, built);
        prop_assert_eq!((parsed.host(), parsed.device_id(), parsed.secret()),
            (host.as_str(), id.as_str(), secret.as_str()));
    }

    /// Whatever is accepted is canonical: it writes back byte for byte.
    #[test]
    fn arbitrary_text_never_panics_and_what_parses_writes_back_the_same(text in ".{0,600}") {
        check(&text)?;
    }

    /// Text close to the format, so parsing gets past the prefix into the fields.
    #[test]
    fn near_miss_strings_never_panic(
        text in "GEMA[0-9]{0,2}:(host|port|id|secret|ca|x)?=?[a-z0-9.:;=_~ -]{0,80}(;(port|id|secret|ca)=[0-9a-fA-F_;=.-]{0,70}){0,6}",
    ) {
        check(&text)?;
    }

    /// One byte of a valid string changed: refused, or still canonical.
    #[test]
    fn a_valid_string_with_one_byte_changed_never_panics(
        index in 0usize..200,
        byte in 0x20u8..0x7f,
    ) {
        let mut bytes = good().into_bytes();
        let index = index % bytes.len();
        bytes[index] = byte;
        let text = String::from_utf8(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check(&text)?;
    }
}

fn check(text: &str) -> Result<(), TestCaseError> {
    match ProvisioningString::parse(text) {
        Ok(parsed) => prop_assert_eq!(parsed.to_string(), text),
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}
