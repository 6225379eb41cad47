//! Well-formed payloads that the protocol refuses, each with its own error.

use gema_firmware_protocol::limits::*;
use gema_firmware_protocol::topic::topic;
use gema_firmware_protocol::*;

fn announce_json(fields: &str) -> String {
    format!(
        r#"{{"type":"announce","version":1,"msg_id":"m1","sent_at":1000,"transaction_id":"t1",
        "currency":"IDR","provider":"midtrans","issuer":null,"language":"id","paid_at":900,
        "sequence":1,{fields}}}"#
    )
}

fn invalid(err: DecodeError) -> Option<ValidationError> {
    match err {
        DecodeError::Invalid(e) => Some(e),
        _ => None,
    }
}

#[test]
fn the_base_announcement_is_accepted() {
    let json = announce_json(r#""amount":25000,"expires_at":2000"#);
    let msg: Downlink = decode(json.as_bytes(), Encoding::Json).unwrap();
    assert_eq!(msg.kind(), MessageKind::Announce);
}

#[test]
fn amounts_must_be_positive_and_bounded() {
    for amount in ["0", "-5"] {
        let json = announce_json(&format!(r#""amount":{amount},"expires_at":2000"#));
        let err = decode::<Downlink>(json.as_bytes(), Encoding::Json).unwrap_err();
        assert_eq!(
            invalid(err),
            Some(ValidationError {
                field: "amount",
                problem: Problem::NotPositive
            })
        );
    }
    let json = announce_json(&format!(r#""amount":{},"expires_at":2000"#, MAX_AMOUNT + 1));
    let err = decode::<Downlink>(json.as_bytes(), Encoding::Json).unwrap_err();
    assert_eq!(invalid(err).map(|e| e.problem), Some(Problem::OutOfRange));

    let request = Uplink::new(
        Envelope::new("m", 1),
        DynamicQrRequest {
            request_id: "r".into(),
            amount: 0,
        },
    );
    let err =
        decode::<Uplink>(&encode(&request, Encoding::Postcard), Encoding::Postcard).unwrap_err();
    assert_eq!(
        invalid(err),
        Some(ValidationError {
            field: "amount",
            problem: Problem::NotPositive
        })
    );
}

#[test]
fn fractional_amounts_are_not_numbers_we_accept() {
    let json = announce_json(r#""amount":25000.5,"expires_at":2000"#);
    let err = decode::<Downlink>(json.as_bytes(), Encoding::Json).unwrap_err();
    assert!(matches!(err, DecodeError::Json(_)), "{err}");
}

#[test]
fn an_announcement_that_expires_before_it_was_sent_is_refused() {
    let json = announce_json(r#""amount":1,"expires_at":1000"#);
    let err = decode::<Downlink>(json.as_bytes(), Encoding::Json).unwrap_err();
    assert_eq!(
        invalid(err).map(|e| e.problem),
        Some(Problem::ExpiresBeforeSent)
    );
}

#[test]
fn other_versions_are_refused_in_both_encodings() {
    let json = announce_json(r#""amount":1,"expires_at":2000"#)
        .replace(r#""version":1"#, r#""version":2"#);
    let err = decode::<Downlink>(json.as_bytes(), Encoding::Json).unwrap_err();
    assert!(matches!(err, DecodeError::UnsupportedVersion(2)), "{err}");

    // A future version whose shape we cannot parse still reports its version.
    let future = br#"{"type":"announce","version":7,"everything":"different"}"#;
    let err = decode::<Downlink>(future, Encoding::Json).unwrap_err();
    assert!(matches!(err, DecodeError::UnsupportedVersion(7)), "{err}");

    let mut msg = Uplink::new(
        Envelope::new("m", 1),
        ButtonEvent {
            button: Button::Replay,
            press: Press::Short,
        },
    );
    msg.envelope.version = 300;
    let err = decode::<Uplink>(&encode(&msg, Encoding::Postcard), Encoding::Postcard).unwrap_err();
    assert!(matches!(err, DecodeError::UnsupportedVersion(300)), "{err}");
    // Unparseable postcard after a foreign version: the version is what gets reported.
    let err = decode::<Uplink>(&[9, 0xff, 0xff], Encoding::Postcard).unwrap_err();
    assert!(matches!(err, DecodeError::UnsupportedVersion(9)), "{err}");
}

#[test]
fn long_strings_are_refused() {
    let long_id = "t".repeat(MAX_ID_LEN + 1);
    let json = announce_json(r#""amount":1,"expires_at":2000"#).replace(
        r#""transaction_id":"t1""#,
        &format!(r#""transaction_id":"{long_id}""#),
    );
    let err = decode::<Downlink>(json.as_bytes(), Encoding::Json).unwrap_err();
    assert_eq!(
        invalid(err),
        Some(ValidationError {
            field: "transaction_id",
            problem: Problem::TooLong { max: MAX_ID_LEN }
        })
    );

    let qr = Downlink::new(
        Envelope::new("m", 1),
        DynamicQrShow {
            transaction_id: "t".into(),
            request_id: None,
            payload: "0".repeat(MAX_QR_PAYLOAD_LEN + 1),
            amount: 10_000,
            expires_at: 2,
        },
    );
    let err = decode::<Downlink>(&encode(&qr, Encoding::Postcard), Encoding::Postcard).unwrap_err();
    assert_eq!(
        invalid(err),
        Some(ValidationError {
            field: "payload",
            problem: Problem::TooLong {
                max: MAX_QR_PAYLOAD_LEN
            }
        })
    );

    let huge = vec![b' '; MAX_MESSAGE_LEN + 1];
    let err = decode::<Uplink>(&huge, Encoding::Json).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
}

#[test]
fn ids_with_spaces_or_controls_are_refused() {
    let json = announce_json(r#""amount":1,"expires_at":2000"#)
        .replace(r#""msg_id":"m1""#, r#""msg_id":"m 1""#);
    let err = decode::<Downlink>(json.as_bytes(), Encoding::Json).unwrap_err();
    assert_eq!(
        invalid(err),
        Some(ValidationError {
            field: "msg_id",
            problem: Problem::BadCharacter
        })
    );
}

fn button_postcard() -> Vec<u8> {
    let msg = Uplink::new(
        Envelope::new("m", 1),
        ButtonEvent {
            button: Button::Power,
            press: Press::Long,
        },
    );
    encode(&msg, Encoding::Postcard)
}

#[test]
fn non_utf8_strings_are_refused() {
    // msg_id "m" → 0xff in postcard.
    let mut bytes = button_postcard();
    assert_eq!(&bytes[..3], &[1, 1, b'm']);
    bytes[2] = 0xff;
    let err = decode::<Uplink>(&bytes, Encoding::Postcard).unwrap_err();
    assert!(matches!(err, DecodeError::Postcard(_)), "{err}");

    let mut json = br#"{"type":"button","version":1,"msg_id":"mX","sent_at":1,"button":"power","press":"long"}"#.to_vec();
    let at = json.iter().position(|&b| b == b'X').unwrap();
    json[at] = 0xff;
    let err = decode::<Uplink>(&json, Encoding::Json).unwrap_err();
    assert!(matches!(err, DecodeError::Json(_)), "{err}");
}

#[test]
fn trailing_garbage_is_refused() {
    let mut bytes = button_postcard();
    assert!(decode::<Uplink>(&bytes, Encoding::Postcard).is_ok());
    bytes.push(0);
    let err = decode::<Uplink>(&bytes, Encoding::Postcard).unwrap_err();
    assert!(
        matches!(err, DecodeError::TrailingBytes { count: 1 }),
        "{err}"
    );

    let json = br#"{"type":"button","version":1,"msg_id":"m","sent_at":1,"button":"power","press":"long"} x"#;
    let err = decode::<Uplink>(json, Encoding::Json).unwrap_err();
    assert!(matches!(err, DecodeError::Json(_)), "{err}");
}

#[test]
fn a_payload_must_match_its_topic() {
    let bytes = button_postcard();
    let heartbeat_topic = topic("sb-1", MessageKind::Heartbeat, Encoding::Postcard);
    let parsed = parse_topic(&heartbeat_topic).unwrap();
    let err = decode_on_topic::<Uplink>(&parsed, &bytes).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::KindMismatch {
                topic: MessageKind::Heartbeat,
                payload: MessageKind::ButtonEvent
            }
        ),
        "{err}"
    );
    let err = decode_on_topic::<Downlink>(&parsed, &bytes).unwrap_err();
    assert!(matches!(err, DecodeError::WrongDirection), "{err}");
    // The same bytes on the JSON topic are not JSON.
    let json_topic = topic("sb-1", MessageKind::ButtonEvent, Encoding::Json);
    let err = decode_on_topic::<Uplink>(&parse_topic(&json_topic).unwrap(), &bytes).unwrap_err();
    assert!(matches!(err, DecodeError::Json(_)), "{err}");
}

#[test]
fn config_ranges_are_enforced() {
    let config = DeviceConfig {
        volume: MAX_VOLUME + 1,
        language: Language::En,
        heartbeat_interval_s: 60,
        qr_timeout_s: 120,
        quiet_hours: None,
    };
    let push = Downlink::new(
        Envelope::new("m", 1),
        ConfigPush {
            config_version: 3,
            config,
        },
    );
    let err = decode::<Downlink>(&encode(&push, Encoding::Json), Encoding::Json).unwrap_err();
    assert_eq!(
        invalid(err),
        Some(ValidationError {
            field: "config.volume",
            problem: Problem::OutOfRange
        })
    );
}

#[test]
fn errors_explain_themselves() {
    let e = DecodeError::Invalid(ValidationError {
        field: "amount",
        problem: Problem::NotPositive,
    });
    assert_eq!(
        e.to_string(),
        "invalid message: field `amount` must be greater than zero"
    );
    assert_eq!(
        DecodeError::UnsupportedVersion(2).to_string(),
        "unsupported protocol version 2 (this side speaks 1)"
    );
}

fn cert_renew(csr_pem: &str) -> Uplink {
    Uplink::new(
        Envelope::new("m1", 1_000),
        CertRenew {
            request_id: "r1".into(),
            csr_pem: csr_pem.into(),
        },
    )
}

#[test]
fn a_certificate_request_must_be_pem_of_a_csr_within_bounds() {
    let good = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
    for encoding in [Encoding::Json, Encoding::Postcard] {
        let bytes = encode(&cert_renew(good), encoding);
        assert_eq!(
            decode::<Uplink>(&bytes, encoding).unwrap(),
            cert_renew(good)
        );
    }
    let long = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n",
        "A".repeat(limits::MAX_CSR_PEM_LEN)
    );
    let cases = [
        ("", Problem::Empty),
        ("MIIB", Problem::NotPem),
        ("-----BEGIN CERTIFICATE-----\nMIIB\n", Problem::NotPem),
        ("-----BEGIN CERTIFICATE REQUEST\n", Problem::NotPem),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\n\u{0}",
            Problem::BadCharacter,
        ),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\nä",
            Problem::BadCharacter,
        ),
        (
            long.as_str(),
            Problem::TooLong {
                max: limits::MAX_CSR_PEM_LEN,
            },
        ),
    ];
    for (csr, problem) in cases {
        let bytes = encode(&cert_renew(csr), Encoding::Json);
        let err = decode::<Uplink>(&bytes, Encoding::Json).unwrap_err();
        assert_eq!(
            invalid(err),
            Some(ValidationError {
                field: "csr_pem",
                problem
            }),
            "{csr:?}"
        );
    }
}

#[test]
fn an_issued_certificate_must_be_a_pem_chain_within_bounds() {
    let answer = |chain_pem: String| {
        Downlink::new(
            Envelope::new("m1", 1_000),
            CertRenewResult {
                request_id: "r1".into(),
                outcome: CertRenewOutcome::Issued(RenewedCertificate {
                    serial: "0a".into(),
                    not_after: 2_000,
                    chain_pem,
                }),
            },
        )
    };
    let long = format!(
        "-----BEGIN CERTIFICATE-----\n{}",
        "A".repeat(limits::MAX_CERT_CHAIN_PEM_LEN)
    );
    for (chain, problem) in [
        (
            long,
            Problem::TooLong {
                max: limits::MAX_CERT_CHAIN_PEM_LEN,
            },
        ),
        ("-----BEGIN PRIVATE KEY-----\n".to_owned(), Problem::NotPem),
    ] {
        let bytes = encode(&answer(chain), Encoding::Postcard);
        let err = decode::<Downlink>(&bytes, Encoding::Postcard).unwrap_err();
        assert_eq!(
            invalid(err),
            Some(ValidationError {
                field: "outcome.issued.chain_pem",
                problem
            })
        );
    }
    // The largest chain allowed (in PEM's 64-character lines) still fits in a message, in
    // JSON with its escaped line breaks.
    let line = format!("{}\n", "A".repeat(64));
    let largest = answer(format!(
        "-----BEGIN CERTIFICATE-----\n{}",
        line.repeat((limits::MAX_CERT_CHAIN_PEM_LEN - 28) / line.len())
    ));
    let bytes = encode(&largest, Encoding::Json);
    assert!(bytes.len() <= limits::MAX_MESSAGE_LEN, "{}", bytes.len());
    assert_eq!(decode::<Downlink>(&bytes, Encoding::Json).unwrap(), largest);
}
