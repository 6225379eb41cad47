//! Decoding the real vectors, typed accessors and encoding.

use gema_qris::{
    PointOfInitiation, Qris, TipOrFee, Value, crc16, crc16_hex, decode, is_template_tag,
};

use crate::vectors::{ALL, V1, V2, V3, V4, V7, with_crc};

#[test]
fn crc_check_value() {
    assert_eq!(crc16(b"123456789"), 0x29B1);
    assert_eq!(crc16_hex(b"123456789"), "29B1");
}

#[test]
fn crc_hex_is_zero_padded_and_upper_case() {
    // Search a short input whose CRC has a leading zero nibble: a naive formatter drops it.
    let padded = (0u32..10_000)
        .map(|n| n.to_string())
        .find(|s| crc16(s.as_bytes()) < 0x1000)
        .expect("some input has a CRC below 0x1000");
    let hex = crc16_hex(padded.as_bytes());
    assert_eq!(hex.len(), 4);
    assert!(hex.starts_with('0'));
    assert_eq!(hex, hex.to_uppercase());
    assert_eq!(
        u16::from_str_radix(&hex, 16).ok(),
        Some(crc16(padded.as_bytes()))
    );
}

#[test]
fn every_vector_decodes_and_round_trips() {
    for vector in ALL {
        let qris = decode(vector).unwrap_or_else(|e| panic!("{vector}: {e}"));
        let tail = &vector[vector.len() - 4..];
        assert_eq!(crc16_hex(&vector.as_bytes()[..vector.len() - 4]), tail);
        assert_eq!(qris.encode(), vector);
        assert_eq!(qris.to_string(), vector);
        assert_eq!(vector.parse::<Qris>().as_ref(), Ok(&qris));
        assert_eq!(Qris::decode_bytes(vector.as_bytes()).as_ref(), Ok(&qris));
        assert!(qris.objects().iter().all(|o| o.id() != 63));
        // Templates are parsed into sub-objects, everything else is text.
        for object in qris.objects() {
            assert_eq!(
                matches!(object.value(), Value::Template(_)),
                is_template_tag(object.id()),
                "tag {:02} of {vector}",
                object.id()
            );
        }
    }
}

#[test]
fn accessors_on_static_doku() {
    let qris = decode(V1).expect("V1 decodes");
    assert_eq!(qris.point_of_initiation(), Some(PointOfInitiation::Static));
    assert_eq!(qris.merchant_name(), Some("GUREUM SHOP"));
    assert_eq!(qris.merchant_city(), Some("JAKARTA PUSAT"));
    assert_eq!(qris.postal_code(), Some("10640"));
    assert_eq!(qris.merchant_category_code(), Some("5399"));
    assert_eq!(qris.currency(), Some("360"));
    assert_eq!(qris.country_code(), Some("ID"));
    assert_eq!(qris.nmid(), Some("ID1020039293482"));
    assert_eq!(qris.amount(), None);
    assert_eq!(qris.tip_or_fee(), None);
    assert_eq!(qris.terminal_label(), Some("A01"));
    assert_eq!(qris.bill_number(), None);
    assert_eq!(qris.reference_label(), None);

    let accounts: Vec<_> = qris.merchant_accounts().collect();
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0].tag(), 26);
    assert_eq!(accounts[0].global_unique_id(), Some("COM.DOKU.WWW"));
    assert_eq!(accounts[0].pan(), Some("936008990000002475"));
    assert_eq!(accounts[0].merchant_id(), Some("2475"));
    assert_eq!(accounts[0].criteria(), Some("URE"));
    assert_eq!(accounts[1].tag(), 51);
    assert_eq!(accounts[1].global_unique_id(), Some("ID.CO.QRIS.WWW"));
    assert_eq!(accounts[1].merchant_id(), Some("ID1020039293482"));
    assert_eq!(accounts[1].object().id(), 51);
}

#[test]
fn accessors_on_dynamic_doku() {
    let qris = decode(V2).expect("V2 decodes");
    assert_eq!(qris.point_of_initiation(), Some(PointOfInitiation::Dynamic));
    assert_eq!(qris.amount(), Some(1000));
    assert_eq!(qris.tip_or_fee(), Some(TipOrFee::Fixed(500)));
}

#[test]
fn accessors_on_other_acquirers() {
    let dana = decode(V3).expect("V3 decodes");
    assert_eq!(dana.merchant_name(), Some("Warung Sayur Bu Sugeng"));
    assert_eq!(dana.merchant_city(), Some("Kab. Demak"));
    assert_eq!(dana.postal_code(), Some("59567"));
    assert_eq!(dana.nmid(), Some("ID1020017611473"));
    assert_eq!(dana.additional_data(), None);
    assert_eq!(dana.terminal_label(), None);

    let gojek = decode(V4).expect("V4 decodes");
    let first = gojek
        .merchant_accounts()
        .next()
        .expect("an acquirer template");
    assert_eq!(first.global_unique_id(), Some("COM.GO-JEK.WWW"));
    assert_eq!(first.merchant_id(), Some("G545600781"));
    assert_eq!(gojek.nmid(), Some("ID1019000002328"));

    let spin = decode(V7).expect("V7 decodes");
    assert_eq!(spin.bill_number(), Some("***"));
    assert_eq!(spin.terminal_label(), Some("A01"));
    assert_eq!(spin.merchant_category_code(), Some("8398"));
    let additional = spin.additional_data().expect("template 62");
    let ids: Vec<u8> = additional.iter().map(|o| o.id()).collect();
    assert_eq!(ids, [1, 7]);
}

#[test]
fn tags_between_00_and_63_may_come_in_any_order() {
    // V1's objects with 59/60/61 moved before the merchant account templates.
    let qris = decode(V1).expect("V1 decodes");
    let mut objects = qris.into_objects();
    let tail: Vec<_> = objects.drain(7..10).collect();
    assert_eq!(
        tail.iter().map(|o| o.id()).collect::<Vec<_>>(),
        [59, 60, 61]
    );
    let mut reordered = vec![objects[0].clone(), objects[1].clone()];
    reordered.extend(tail);
    reordered.extend(objects.drain(2..));
    let body: String = reordered.iter().map(|o| o.encode()).collect();
    let payload = with_crc(&body);

    let decoded = decode(&payload).expect("out-of-order tags decode");
    assert_eq!(decoded.merchant_name(), Some("GUREUM SHOP"));
    assert_eq!(decoded.nmid(), Some("ID1020039293482"));
    assert_eq!(decoded.encode(), payload);
    assert_eq!(decoded.objects()[2].id(), 59);
}

#[test]
fn amount_formats() {
    // Static DANA code with an amount inserted, in every accepted spelling.
    let body = &V3[..V3.len() - 8];
    let (before, after) = body.split_at(body.find("5802ID").expect("tag 58"));
    for (text, rupiah) in [
        ("1000", 1000),
        ("1000.", 1000),
        ("1000.00", 1000),
        ("1000.0", 1000),
        ("01000", 1000),
        ("9999999999999", 9_999_999_999_999),
    ] {
        let payload = with_crc(&format!("{before}54{:02}{text}{after}", text.len()));
        let qris = decode(&payload).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(qris.amount(), Some(rupiah), "{text}");
        assert_eq!(qris.encode(), payload, "{text} round-trips as written");
        // Real codes exist with tag 01 = 11 and an amount: both are reported as they are.
        assert_eq!(qris.point_of_initiation(), Some(PointOfInitiation::Static));
    }
}

#[test]
fn percentage_and_tip_indicators() {
    let body = &V3[..V3.len() - 8];
    let (before, after) = body.split_at(body.find("5802ID").expect("tag 58"));
    let percent = with_crc(&format!("{before}5404500055020357032.5{after}"));
    let qris = decode(&percent).expect("percentage fee decodes");
    assert_eq!(qris.amount(), Some(5000));
    assert_eq!(qris.tip_or_fee(), Some(TipOrFee::Percent("2.5")));

    let tip = with_crc(&format!("{before}550201{after}"));
    let qris = decode(&tip).expect("tip indicator decodes");
    assert_eq!(qris.tip_or_fee(), Some(TipOrFee::PayerEntersTip));
    assert_eq!(qris.amount(), None);
}
