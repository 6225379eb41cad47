//! Arbitrary bytes through every decoder: topics, and both message directions in both
//! encodings (every kind, including the PEM-carrying `cert_renew` and `cert_renew_result`).
//! Anything accepted must re-encode and decode to the same value.
#![no_main]

use gema_firmware_protocol::{Downlink, Encoding, Uplink, decode, encode, parse_topic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(topic) = core::str::from_utf8(data) {
        let _ = parse_topic(topic);
    }
    for encoding in [Encoding::Json, Encoding::Postcard] {
        if let Ok(msg) = decode::<Downlink>(data, encoding) {
            let again: Downlink = decode(&encode(&msg, encoding), encoding).expect("re-decodes");
            assert_eq!(again, msg);
        }
        if let Ok(msg) = decode::<Uplink>(data, encoding) {
            let again: Uplink = decode(&encode(&msg, encoding), encoding).expect("re-decodes");
            assert_eq!(again, msg);
        }
    }
});
