//! Provisioning by claim: the request and response decoders never panic on arbitrary bytes,
//! what they accept is valid and encodes back to itself, and the JSON shapes are as
//! documented.

use gema_firmware_protocol::claim::*;
use proptest::prelude::*;

fn serial() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}"
}

fn request() -> impl Strategy<Value = ProvisionRequest> {
    (
        "[A-Z0-9]{1,64}",
        serial(),
        "[a-zA-Z0-9 -]{1,128}",
        proptest::option::of("[0-9.]{1,20}"),
        proptest::option::of("-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]{1,200}"),
    )
        .prop_map(|(msg_id, serial, model, firmware_version, csr_pem)| {
            let mut r = ProvisionRequest::new(msg_id, serial, model);
            r.firmware_version = firmware_version;
            r.csr_pem = csr_pem;
            r
        })
}

fn response() -> impl Strategy<Value = ProvisionResponse> {
    let reason = proptest::sample::select(RefusalReason::ALL.to_vec());
    prop_oneof![
        (
            "[A-Z0-9]{1,64}",
            "[a-z0-9_-]{1,64}",
            "[a-z2-7]{32}",
            proptest::option::of("-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]{1,300}"),
        )
            .prop_map(|(request_msg_id, device_id, secret, certificate_pem)| {
                ProvisionResponse::Provisioned {
                    version: 1,
                    request_msg_id,
                    device_id,
                    secret,
                    certificate_pem,
                }
            }),
        ("[A-Z0-9]{0,64}", reason).prop_map(|(id, reason)| ProvisionResponse::refused(id, reason)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(r) = decode_request(&bytes) {
            prop_assert_eq!(r.validate(), Ok(()));
            prop_assert_eq!(decode_request(&r.encode()), Ok(r));
        }
        if let Ok(r) = decode_response(&bytes) {
            prop_assert_eq!(r.validate(), Ok(()));
            prop_assert_eq!(decode_response(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn json_shaped_garbage_never_panics(
        ty in prop_oneof![Just("provision"), Just("provisioned"), Just("refused"), Just("x")],
        version in any::<u16>(),
        field in "[ -~]{0,80}",
        n in any::<i64>(),
    ) {
        for text in [
            format!(r#"{{"type":"{ty}","version":{version},"msg_id":"{field}","serial":"{field}","model":{n}}}"#),
            format!(r#"{{"type":"{ty}","version":{version},"request_msg_id":"{field}","reason":"{field}"}}"#),
            format!(r#"{{"type":"{ty}","version":1,"request_msg_id":"a","device_id":"{field}","secret":"{field}"}}"#),
        ] {
            let _ = decode_request(text.as_bytes());
            let _ = decode_response(text.as_bytes());
        }
    }

    #[test]
    fn requests_round_trip(r in request()) {
        prop_assert_eq!(decode_request(&r.encode()), Ok(r));
    }

    #[test]
    fn responses_round_trip(r in response()) {
        prop_assert_eq!(decode_response(&r.encode()), Ok(r));
    }
}

#[test]
fn the_json_shapes_are_the_documented_ones() {
    let mut r = ProvisionRequest::new("m1", "SB24A-000123", "SB-1");
    r.firmware_version = Some("1.4.2".into());
    assert_eq!(
        String::from_utf8(r.encode()).unwrap(),
        r#"{"type":"provision","version":1,"msg_id":"m1","serial":"SB24A-000123","model":"SB-1","firmware_version":"1.4.2","csr_pem":null}"#
    );
    let ok = ProvisionResponse::Provisioned {
        version: 1,
        request_msg_id: "m1".into(),
        device_id: "dev_1".into(),
        secret: "s3cret".into(),
        certificate_pem: None,
    };
    assert_eq!(
        String::from_utf8(ok.encode()).unwrap(),
        r#"{"type":"provisioned","version":1,"request_msg_id":"m1","device_id":"dev_1","secret":"s3cret","certificate_pem":null}"#
    );
    assert!(
        !format!("{ok:?}").contains("s3cret"),
        "Debug hides the secret"
    );
    assert_eq!(
        String::from_utf8(ProvisionResponse::refused("m1", RefusalReason::ClaimExhausted).encode())
            .unwrap(),
        r#"{"type":"refused","version":1,"request_msg_id":"m1","reason":"claim_exhausted"}"#
    );
    for reason in RefusalReason::ALL {
        let json = serde_json_nostd::to_string(&reason).unwrap();
        assert_eq!(json, format!("\"{}\"", reason.as_str()));
    }
}

#[test]
fn requests_out_of_bounds_are_refused_naming_the_field() {
    let base = ProvisionRequest::new("m1", "SB-1", "SB-1");
    let cases: Vec<(ProvisionRequest, &str)> = vec![
        (
            ProvisionRequest {
                serial: "a/b".into(),
                ..base.clone()
            },
            "serial",
        ),
        (
            ProvisionRequest {
                serial: "+".into(),
                ..base.clone()
            },
            "serial",
        ),
        (
            ProvisionRequest {
                msg_id: String::new(),
                ..base.clone()
            },
            "msg_id",
        ),
        (
            ProvisionRequest {
                model: String::new(),
                ..base.clone()
            },
            "model",
        ),
        (
            ProvisionRequest {
                csr_pem: Some("x".repeat(3000)),
                ..base.clone()
            },
            "csr_pem",
        ),
    ];
    for (bad, field) in cases {
        match decode_request(&bad.encode()) {
            Err(ClaimDecodeError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let v2 = ProvisionRequest { version: 2, ..base };
    assert_eq!(
        decode_request(&v2.encode()),
        Err(ClaimDecodeError::UnsupportedVersion(2))
    );
    assert!(matches!(
        decode_request(&vec![b' '; 5000]),
        Err(ClaimDecodeError::TooLong { .. })
    ));
}
