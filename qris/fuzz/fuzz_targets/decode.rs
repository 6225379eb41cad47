//! Arbitrary bytes through the QRIS decoder. Anything accepted must re-encode to the same
//! bytes, and converting it to a dynamic code must either fail cleanly or give a code that
//! decodes to the requested amount.
#![no_main]

use gema_qris::{DynamicOptions, Fee, Qris, Reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(qris) = Qris::decode_bytes(data) else {
        return;
    };
    assert_eq!(qris.encode().as_bytes(), data);
    let amount = i64::try_from(data.len() % 1_000_000).unwrap_or(0) * 1000 + 1;
    let options = DynamicOptions {
        amount,
        fee: Some(Fee::Fixed(500)),
        reference: Some(Reference::Label("FUZZ-1".to_owned())),
        terminal_label: Some("A01".to_owned()),
    };
    if let Ok(dynamic) = qris.to_dynamic(options) {
        let again = Qris::decode(&dynamic.encode()).expect("a converted code decodes");
        assert_eq!(again.amount(), Some(amount));
        assert_eq!(again, dynamic);
    }
});
