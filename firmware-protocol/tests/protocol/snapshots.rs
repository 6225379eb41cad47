//! The exact JSON shapes firmware authors code against. A change here is a protocol change.

use std::collections::BTreeMap;

use gema_firmware_protocol::*;

fn announcement() -> Downlink {
    Downlink::new(
        Envelope::new("01JD8X3K7Q9V2M4N6P8R0T2W4Y", 1_732_170_000_000),
        Announce {
            transaction_id: "trx_01JD8X2Z".into(),
            amount: 25_000,
            currency: Currency::Idr,
            provider: "midtrans".into(),
            issuer: Some("GOPAY".into()),
            language: Language::Id,
            paid_at: 1_732_169_999_500,
            expires_at: 1_732_170_300_000,
            sequence: 42,
        },
    )
}

#[test]
fn announcement_json_shape() {
    let json = String::from_utf8(encode(&announcement(), Encoding::Json)).unwrap();
    assert_eq!(
        json,
        concat!(
            r#"{"type":"announce","version":1,"msg_id":"01JD8X3K7Q9V2M4N6P8R0T2W4Y","#,
            r#""sent_at":1732170000000,"transaction_id":"trx_01JD8X2Z","amount":25000,"#,
            r#""currency":"IDR","provider":"midtrans","issuer":"GOPAY","language":"id","#,
            r#""paid_at":1732169999500,"expires_at":1732170300000,"sequence":42}"#
        )
    );
}

#[test]
fn ack_json_shape() {
    let ack = Uplink::new(
        Envelope::new("01JD8X3M00AAAABBBBCCCCDDDD", 1_732_170_000_180),
        Ack {
            acked_msg_id: "01JD8X3K7Q9V2M4N6P8R0T2W4Y".into(),
            transaction_id: Some("trx_01JD8X2Z".into()),
            status: AckStatus::Spoken,
        },
    );
    let json = String::from_utf8(encode(&ack, Encoding::Json)).unwrap();
    assert_eq!(
        json,
        concat!(
            r#"{"type":"ack","version":1,"msg_id":"01JD8X3M00AAAABBBBCCCCDDDD","#,
            r#""sent_at":1732170000180,"acked_msg_id":"01JD8X3K7Q9V2M4N6P8R0T2W4Y","#,
            r#""transaction_id":"trx_01JD8X2Z","status":"spoken"}"#
        )
    );
}

#[test]
fn command_json_shape() {
    let set_volume = Downlink::new(
        Envelope::new("m1", 1_000),
        Command {
            command_id: "cmd_1".into(),
            expires_at: 61_000,
            action: CommandAction::SetVolume { volume: 7 },
        },
    );
    assert_eq!(
        String::from_utf8(encode(&set_volume, Encoding::Json)).unwrap(),
        concat!(
            r#"{"type":"command","version":1,"msg_id":"m1","sent_at":1000,"#,
            r#""command_id":"cmd_1","expires_at":61000,"#,
            r#""action":{"name":"set_volume","args":{"volume":7}}}"#
        )
    );
    let reboot = Downlink::new(
        Envelope::new("m2", 1_000),
        Command {
            command_id: "cmd_2".into(),
            expires_at: 61_000,
            action: CommandAction::Reboot,
        },
    );
    assert_eq!(
        String::from_utf8(encode(&reboot, Encoding::Json)).unwrap(),
        concat!(
            r#"{"type":"command","version":1,"msg_id":"m2","sent_at":1000,"#,
            r#""command_id":"cmd_2","expires_at":61000,"action":{"name":"reboot"}}"#
        )
    );
}

#[test]
fn command_result_json_shape() {
    let result = Uplink::new(
        Envelope::new("m3", 2_000),
        CommandResult {
            command_id: "cmd_1".into(),
            state: CommandState::Succeeded,
            result: BTreeMap::from([("volume".to_owned(), "7".to_owned())]),
            message: None,
        },
    );
    assert_eq!(
        String::from_utf8(encode(&result, Encoding::Json)).unwrap(),
        concat!(
            r#"{"type":"command_result","version":1,"msg_id":"m3","sent_at":2000,"#,
            r#""command_id":"cmd_1","state":"succeeded","result":{"volume":"7"},"message":null}"#
        )
    );
}

/// Firmware written in C may leave out optional fields and add fields of its own; both read.
#[test]
fn json_omitted_options_and_unknown_fields_are_accepted() {
    let json = br#"{"type":"ack","version":1,"msg_id":"m9","sent_at":5,
        "acked_msg_id":"m1","status":"duplicate","rssi_note":"extra"}"#;
    let ack: Uplink = decode(json, Encoding::Json).unwrap();
    assert_eq!(
        ack.body,
        UplinkBody::Ack(Ack {
            acked_msg_id: "m1".into(),
            transaction_id: None,
            status: AckStatus::Duplicate,
        })
    );
}

/// The postcard layout firmware authors implement by hand: envelope fields, variant index,
/// body fields, all varints (zigzag for signed) and length-prefixed UTF-8.
#[test]
fn postcard_layout_of_an_ack() {
    let ack = Uplink::new(
        Envelope::new("m", 3),
        Ack {
            acked_msg_id: "a".into(),
            transaction_id: None,
            status: AckStatus::Duplicate,
        },
    );
    assert_eq!(
        encode(&ack, Encoding::Postcard),
        [
            1, // version
            1, b'm', // msg_id
            6,    // sent_at 3, zigzag
            0,    // UplinkBody::Ack
            1, b'a', // acked_msg_id
            0,    // transaction_id: None
            2,    // AckStatus::Duplicate
        ]
    );
}

#[test]
fn expiry_is_checked_against_the_given_clock() {
    let a = announcement();
    assert_eq!(a.expires_at(), Some(1_732_170_300_000));
    assert!(!a.is_expired(1_732_170_299_999));
    assert!(a.is_expired(1_732_170_300_000));
}

#[test]
fn certificate_renewal_json_shapes() {
    let ask = Uplink::new(
        Envelope::new("m1", 1_000),
        CertRenew {
            request_id: "r1".into(),
            csr_pem:
                "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
                    .into(),
        },
    );
    assert_eq!(
        String::from_utf8(encode(&ask, Encoding::Json)).unwrap(),
        concat!(
            r#"{"type":"cert_renew","version":1,"msg_id":"m1","sent_at":1000,"request_id":"r1","#,
            r#""csr_pem":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"}"#
        )
    );
    let issued = Downlink::new(
        Envelope::new("crt_r1", 2_000),
        CertRenewResult {
            request_id: "r1".into(),
            outcome: CertRenewOutcome::Issued(RenewedCertificate {
                serial: "0a1b".into(),
                not_after: 31_536_002_000,
                chain_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            }),
        },
    );
    assert_eq!(
        String::from_utf8(encode(&issued, Encoding::Json)).unwrap(),
        concat!(
            r#"{"type":"cert_renew_result","version":1,"msg_id":"crt_r1","sent_at":2000,"#,
            r#""request_id":"r1","outcome":{"issued":{"serial":"0a1b","not_after":31536002000,"#,
            r#""chain_pem":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}}"#
        )
    );
    let refused = Downlink::new(
        Envelope::new("crt_r2", 2_000),
        CertRenewResult {
            request_id: "r2".into(),
            outcome: CertRenewOutcome::Refused(CertRenewRefusal::WrongName),
        },
    );
    assert_eq!(
        String::from_utf8(encode(&refused, Encoding::Json)).unwrap(),
        concat!(
            r#"{"type":"cert_renew_result","version":1,"msg_id":"crt_r2","sent_at":2000,"#,
            r#""request_id":"r2","outcome":{"refused":"wrong_name"}}"#
        )
    );
}
