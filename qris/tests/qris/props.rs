//! Property tests: the decoder never panics, whatever it is given, and anything it accepts
//! re-encodes to the same bytes; conversion of valid static codes always yields a valid
//! dynamic code with the requested amount.

use gema_qris::{
    DynamicOptions, Fee, MAX_AMOUNT, PointOfInitiation, Qris, Reference, TipOrFee, decode,
};
use proptest::prelude::*;
use proptest::sample::select;

use crate::vectors::{ALL, with_crc};

/// Decodes without panicking; if accepted, the payload must re-encode byte for byte.
fn decode_round_trips_if_accepted(payload: &str) -> Result<(), TestCaseError> {
    if let Ok(qris) = decode(payload) {
        prop_assert_eq!(qris.encode(), payload);
        prop_assert_eq!(decode(&qris.encode()), Ok(qris));
    }
    Ok(())
}

fn text(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz0123456789 .-&'*".to_vec()),
        len,
    )
    .prop_map(|bytes| bytes.into_iter().map(char::from).collect())
}

fn object(id: u8, value: &str) -> String {
    format!("{id:02}{:02}{value}", value.len())
}

/// A valid static QRIS with random merchant data and the objects between 01 and 63 shuffled.
fn static_qris() -> impl Strategy<Value = String> {
    (
        select(vec![
            "COM.DOKU.WWW",
            "ID.DANA.WWW",
            "COM.GO-JEK.WWW",
            "ID.SPINPAY.WWW",
        ]),
        "[0-9]{18}",
        "[A-Z0-9]{4,15}",
        select(vec!["UMI", "UKE", "UME", "UBE", "URE"]),
        "ID[0-9]{13}",
        "[0-9]{4}",
        text(1..=25),
        text(1..=15),
        proptest::option::of("[0-9]{5}"),
        proptest::option::of((proptest::option::of(text(1..=20)), text(1..=10))),
    )
        .prop_flat_map(
            |(domain, pan, merchant_id, criteria, nmid, mcc, name, city, postal, additional)| {
                let account = [
                    object(0, domain),
                    object(1, &pan),
                    object(2, &merchant_id),
                    object(3, criteria),
                ]
                .concat();
                let repository = [
                    object(0, "ID.CO.QRIS.WWW"),
                    object(2, &nmid),
                    object(3, criteria),
                ]
                .concat();
                let mut middle = vec![
                    object(26, &account),
                    object(51, &repository),
                    object(52, &mcc),
                    object(53, "360"),
                    object(58, "ID"),
                    object(59, &name),
                    object(60, &city),
                ];
                if let Some(postal) = postal {
                    middle.push(object(61, &postal));
                }
                if let Some((bill, terminal)) = additional {
                    let mut subs = String::new();
                    if let Some(bill) = bill {
                        subs.push_str(&object(1, &bill));
                    }
                    subs.push_str(&object(7, &terminal));
                    middle.push(object(62, &subs));
                }
                Just(middle).prop_shuffle()
            },
        )
        .prop_map(|middle| with_crc(&format!("000201010211{}", middle.concat())))
}

fn fee() -> impl Strategy<Value = Option<Fee>> {
    prop_oneof![
        Just(None),
        (1..=MAX_AMOUNT).prop_map(|fee| Some(Fee::Fixed(fee))),
        select(vec!["1", "0.7", "2.5", "10", "99.99", "100", "100.0", "5."])
            .prop_map(|p| Some(Fee::Percent(p.to_owned()))),
    ]
}

fn reference() -> impl Strategy<Value = Option<Reference>> {
    prop_oneof![
        Just(None),
        text(1..=26).prop_map(|r| Some(Reference::Bill(r))),
        text(1..=26).prop_map(|r| Some(Reference::Label(r))),
    ]
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(payload in any::<String>()) {
        decode_round_trips_if_accepted(&payload)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(qris) = Qris::decode_bytes(&bytes) {
            let encoded = qris.encode();
            prop_assert_eq!(encoded.as_bytes(), bytes.as_slice());
        }
    }

    #[test]
    fn tlv_looking_strings_with_a_valid_crc_never_panic(body in "[0-9A-F. *]{0,160}") {
        decode_round_trips_if_accepted(&with_crc(&body))?;
        decode_round_trips_if_accepted(&format!("000201{}", with_crc(&body)))?;
    }

    #[test]
    fn mutated_vectors_never_panic(
        vector in select(ALL.to_vec()),
        position in 0usize..250,
        replacement in any::<char>(),
        edit in 0u8..3,
    ) {
        let mut payload = vector.to_owned();
        let position = position % payload.len();
        match edit {
            0 => payload.replace_range(position..=position, &replacement.to_string()),
            1 => payload.insert(position, replacement),
            _ => { payload.remove(position); }
        }
        decode_round_trips_if_accepted(&payload)?;
        // The same edit with the CRC recomputed reaches the structural checks.
        let body = payload.get(..payload.len().saturating_sub(4)).unwrap_or_default();
        let recrc = format!("{body}{}", gema_qris::crc16_hex(body.as_bytes()));
        decode_round_trips_if_accepted(&recrc)?;
    }

    #[test]
    fn generated_static_codes_decode_and_round_trip(payload in static_qris()) {
        let qris = decode(&payload).map_err(|e| TestCaseError::fail(format!("{payload}: {e}")))?;
        prop_assert_eq!(qris.encode(), payload);
        prop_assert_eq!(qris.point_of_initiation(), Some(PointOfInitiation::Static));
        prop_assert_eq!(qris.amount(), None);
    }

    #[test]
    fn to_dynamic_keeps_the_amount_and_a_valid_crc(
        payload in static_qris(),
        amount in 1..=MAX_AMOUNT,
        fee in fee(),
        reference in reference(),
        terminal_label in proptest::option::of(text(1..=10)),
    ) {
        let before = decode(&payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let options = DynamicOptions {
            amount,
            fee: fee.clone(),
            reference: reference.clone(),
            terminal_label: terminal_label.clone(),
        };
        let dynamic = gema_qris::to_dynamic(&payload, options)
            .map_err(|e| TestCaseError::fail(format!("{payload}: {e}")))?;
        // `decode` checks the CRC.
        let after = decode(&dynamic).map_err(|e| TestCaseError::fail(format!("{dynamic}: {e}")))?;
        prop_assert_eq!(after.encode(), dynamic.as_str());
        prop_assert_eq!(after.amount(), Some(amount));
        prop_assert_eq!(after.point_of_initiation(), Some(PointOfInitiation::Dynamic));
        match &fee {
            None => prop_assert_eq!(after.tip_or_fee(), None),
            Some(Fee::Fixed(fee)) => prop_assert_eq!(after.tip_or_fee(), Some(TipOrFee::Fixed(*fee))),
            Some(Fee::Percent(p)) => prop_assert_eq!(after.tip_or_fee(), Some(TipOrFee::Percent(p))),
        }
        match &reference {
            Some(Reference::Bill(bill)) => prop_assert_eq!(after.bill_number(), Some(bill.as_str())),
            Some(Reference::Label(label)) => {
                prop_assert_eq!(after.reference_label(), Some(label.as_str()));
                prop_assert_eq!(after.bill_number(), before.bill_number());
            }
            None => {
                prop_assert_eq!(after.bill_number(), before.bill_number());
                prop_assert_eq!(after.reference_label(), None);
            }
        }
        match &terminal_label {
            Some(label) => prop_assert_eq!(after.terminal_label(), Some(label.as_str())),
            None => prop_assert_eq!(after.terminal_label(), before.terminal_label()),
        }
        prop_assert_eq!(after.merchant_name(), before.merchant_name());
        prop_assert_eq!(after.merchant_city(), before.merchant_city());
        prop_assert_eq!(after.nmid(), before.nmid());
    }
}
