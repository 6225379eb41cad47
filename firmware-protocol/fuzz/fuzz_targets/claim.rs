//! Arbitrary bytes through the provisioning-by-claim decoders (requests Gema reads from
//! claim sessions, responses a device reads). Anything accepted must re-encode and decode
//! to the same value.
#![no_main]

use gema_firmware_protocol::claim::{decode_request, decode_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_request(data) {
        assert_eq!(decode_request(&request.encode()), Ok(request));
    }
    if let Ok(response) = decode_response(data) {
        assert_eq!(decode_response(&response.encode()), Ok(response));
    }
});
