//! Static → dynamic conversion.

use gema_qris::{
    DataObject, DynamicOptions, Fee, MAX_AMOUNT, PointOfInitiation, Qris, QrisError, Reference,
    TipOrFee, decode, to_dynamic,
};

use crate::vectors::{STATIC, V1, V2, V3, V7, with_crc};

fn amount(amount: i64) -> DynamicOptions {
    DynamicOptions {
        amount,
        ..DynamicOptions::default()
    }
}

#[test]
fn v1_with_amount_1000_and_fixed_fee_500_is_exactly_v2() {
    let options = DynamicOptions {
        amount: 1000,
        fee: Some(Fee::Fixed(500)),
        reference: None,
        terminal_label: None,
    };
    assert_eq!(to_dynamic(V1, options.clone()).as_deref(), Ok(V2));
    let qris = decode(V1).expect("V1 decodes");
    assert_eq!(
        qris.to_dynamic(options).map(|q| q.encode()).as_deref(),
        Ok(V2)
    );
}

#[test]
fn converting_a_dynamic_code_again_replaces_amount_and_fee() {
    let again = to_dynamic(V2, amount(25_000)).expect("converts");
    let qris = decode(&again).expect("decodes");
    assert_eq!(qris.amount(), Some(25_000));
    assert_eq!(qris.tip_or_fee(), None);
    assert!(qris.get(56).is_none());
    // Back to V2's amount and fee gives V2 again.
    let v2 = to_dynamic(
        &again,
        DynamicOptions {
            amount: 1000,
            fee: Some(Fee::Fixed(500)),
            ..DynamicOptions::default()
        },
    );
    assert_eq!(v2.as_deref(), Ok(V2));
}

#[test]
fn every_static_vector_converts() {
    for vector in STATIC {
        let payload = to_dynamic(vector, amount(15_000)).expect("converts");
        let before = decode(vector).expect("decodes");
        let after = decode(&payload).expect("the result decodes with a valid CRC");
        assert_eq!(
            after.point_of_initiation(),
            Some(PointOfInitiation::Dynamic)
        );
        assert_eq!(after.amount(), Some(15_000));
        assert_eq!(after.merchant_name(), before.merchant_name());
        assert_eq!(after.nmid(), before.nmid());
        assert_eq!(after.additional_data(), before.additional_data());
        // 54 sits right before 58, everything else keeps its order.
        let ids: Vec<u8> = after.objects().iter().map(|o| o.id()).collect();
        let at = ids.iter().position(|&id| id == 54).expect("tag 54");
        assert_eq!(ids[at + 1], 58);
        let mut without: Vec<u8> = ids.clone();
        without.remove(at);
        let original: Vec<u8> = before.objects().iter().map(|o| o.id()).collect();
        assert_eq!(without, original);
    }
}

#[test]
fn percentage_fee() {
    let payload = to_dynamic(
        V3,
        DynamicOptions {
            amount: 20_000,
            fee: Some(Fee::Percent("2.5".into())),
            ..DynamicOptions::default()
        },
    )
    .expect("converts");
    assert!(
        payload.contains("54052000055020357032.55802ID"),
        "{payload}"
    );
    let qris = decode(&payload).expect("decodes");
    assert_eq!(qris.tip_or_fee(), Some(TipOrFee::Percent("2.5")));
}

#[test]
fn reference_and_terminal_label_update_template_62() {
    // V1 has 62 = {07: A01}: the bill number goes before 07, the label is replaced.
    let payload = to_dynamic(
        V1,
        DynamicOptions {
            amount: 1000,
            fee: None,
            reference: Some(Reference::Bill("INV-0001".into())),
            terminal_label: Some("T-42".into()),
        },
    )
    .expect("converts");
    assert!(payload.contains("62200108INV-00010704T-42"), "{payload}");
    let qris = decode(&payload).expect("decodes");
    assert_eq!(qris.bill_number(), Some("INV-0001"));
    assert_eq!(qris.terminal_label(), Some("T-42"));
    assert_eq!(qris.reference_label(), None);

    // V7 has 62 = {01: ***, 07: A01}: a reference label keeps 01 and goes between.
    let payload = to_dynamic(
        V7,
        DynamicOptions {
            amount: 1000,
            reference: Some(Reference::Label("01JDQ8ZK3V6N0Y2W4R7T9B5C1X".into())),
            ..DynamicOptions::default()
        },
    )
    .expect("converts");
    let qris = decode(&payload).expect("decodes");
    let ids: Vec<u8> = qris
        .additional_data()
        .expect("template 62")
        .iter()
        .map(|o| o.id())
        .collect();
    assert_eq!(ids, [1, 5, 7]);
    assert_eq!(qris.bill_number(), Some("***"));
    assert_eq!(qris.reference_label(), Some("01JDQ8ZK3V6N0Y2W4R7T9B5C1X"));
    assert_eq!(qris.terminal_label(), Some("A01"));
}

#[test]
fn template_62_is_created_when_absent() {
    // V3 has no template 62: it is created after 61, before the CRC.
    let payload = to_dynamic(
        V3,
        DynamicOptions {
            amount: 1000,
            reference: Some(Reference::Label("ORDER-9".into())),
            terminal_label: Some("A01".into()),
            ..DynamicOptions::default()
        },
    )
    .expect("converts");
    assert!(
        payload.contains("61055956762180507ORDER-90703A016304"),
        "{payload}"
    );
    let qris = decode(&payload).expect("decodes");
    assert_eq!(qris.objects().last().map(DataObject::id), Some(62));
    assert_eq!(qris.reference_label(), Some("ORDER-9"));
}

#[test]
fn tag_01_is_set_even_inside_a_merchant_id_lookalike() {
    // A merchant id that contains `010211`: only tag 01 changes.
    let static_code = with_crc(
        "00020101021126300012COM.DOKU.WWW02100102119999520453995303360\
         5802ID5904SHOP6007JAKARTA",
    );
    let payload = to_dynamic(&static_code, amount(5000)).expect("converts");
    let qris = decode(&payload).expect("decodes");
    let account = qris.merchant_accounts().next().expect("template 26");
    assert_eq!(account.merchant_id(), Some("0102119999"));
    assert_eq!(qris.point_of_initiation(), Some(PointOfInitiation::Dynamic));
}

#[test]
fn tag_01_is_inserted_when_absent_and_54_goes_last_without_58() {
    let static_code = with_crc("0002015904SHOP");
    let payload = to_dynamic(&static_code, amount(7)).expect("converts");
    let qris = decode(&payload).expect("decodes");
    let ids: Vec<u8> = qris.objects().iter().map(|o| o.id()).collect();
    assert_eq!(ids, [0, 1, 59, 54]);
    assert_eq!(qris.amount(), Some(7));
}

#[test]
fn options_are_validated() {
    let invalid = |options: DynamicOptions| match to_dynamic(V1, options) {
        Err(QrisError::InvalidOption { field, .. }) => field,
        other => panic!("expected an invalid option, got {other:?}"),
    };
    assert_eq!(invalid(amount(0)), "amount");
    assert_eq!(invalid(amount(-5)), "amount");
    assert_eq!(invalid(amount(MAX_AMOUNT + 1)), "amount");
    assert_eq!(invalid(amount(i64::MAX)), "amount");
    let with =
        |fee: Option<Fee>, reference: Option<Reference>, label: Option<&str>| DynamicOptions {
            amount: 1000,
            fee,
            reference,
            terminal_label: label.map(str::to_owned),
        };
    assert_eq!(invalid(with(Some(Fee::Fixed(0)), None, None)), "fee");
    assert_eq!(invalid(with(Some(Fee::Fixed(-1)), None, None)), "fee");
    for percent in ["", "0", "2,5", "abc", "101", "100.01", "12.345", "1.5.0"] {
        assert_eq!(
            invalid(with(Some(Fee::Percent(percent.into())), None, None)),
            "fee",
            "{percent}"
        );
    }
    assert_eq!(
        invalid(with(None, Some(Reference::Bill(String::new())), None)),
        "reference"
    );
    assert_eq!(
        invalid(with(None, Some(Reference::Label("é".into())), None)),
        "reference"
    );
    assert_eq!(
        invalid(with(None, Some(Reference::Label("x".repeat(100))), None)),
        "reference"
    );
    assert_eq!(invalid(with(None, None, Some("A\n01"))), "terminal_label");
    assert_eq!(invalid(with(None, None, Some(""))), "terminal_label");

    assert_eq!(
        to_dynamic(V1, amount(MAX_AMOUNT)).map(|p| decode(&p).map(|q| q.amount())),
        Ok(Ok(Some(MAX_AMOUNT)))
    );
}

#[test]
fn template_62_too_long_is_an_error() {
    let options = DynamicOptions {
        amount: 1000,
        reference: Some(Reference::Label("R".repeat(60))),
        terminal_label: Some("T".repeat(40)),
        ..DynamicOptions::default()
    };
    assert!(matches!(
        to_dynamic(V1, options),
        Err(QrisError::ValueTooLong { tag, length: 108, max: 99 }) if tag.id() == 62
    ));
}

#[test]
fn invalid_input_payload_is_reported() {
    assert_eq!(to_dynamic("", amount(1000)), Err(QrisError::Empty));
    let bad = V1.replace("GUREUM", "GUREUN");
    assert!(matches!(
        to_dynamic(&bad, amount(1000)),
        Err(QrisError::CrcMismatch { .. })
    ));
}

#[test]
fn from_objects_applies_the_decoder_checks() {
    let objects = decode(V1).expect("decodes").into_objects();
    assert_eq!(
        Qris::from_objects(objects.clone())
            .map(|q| q.encode())
            .as_deref(),
        Ok(V1)
    );
    let mut without_00 = objects.clone();
    without_00.remove(0);
    assert_eq!(
        Qris::from_objects(without_00),
        Err(QrisError::MissingPayloadFormat)
    );
    let mut with_crc_object = objects.clone();
    with_crc_object.push(DataObject::text(63, "ABCD").expect("text"));
    assert!(matches!(
        Qris::from_objects(with_crc_object),
        Err(QrisError::MisplacedObject { .. })
    ));
    let mut text_template = objects.clone();
    text_template.push(DataObject::text(64, "X").expect("text"));
    assert!(matches!(
        Qris::from_objects(text_template),
        Err(QrisError::MisplacedObject { .. })
    ));
    let mut duplicate = objects;
    duplicate.push(DataObject::text(59, "AGAIN").expect("text"));
    assert!(matches!(
        Qris::from_objects(duplicate),
        Err(QrisError::DuplicateTag { .. })
    ));
    assert_eq!(
        DataObject::text(100, "X"),
        Err(QrisError::InvalidTag { id: 100 })
    );
    assert!(matches!(
        DataObject::text(59, "x".repeat(100)),
        Err(QrisError::ValueTooLong { length: 100, .. })
    ));
}
