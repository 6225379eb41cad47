//! Arbitrary bytes through the provisioning-string parser (what a device reads from a scanned
//! QR code). Anything accepted must be canonical: it writes back byte for byte.
#![no_main]

use gema_firmware_protocol::ProvisioningString;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data)
        && let Ok(parsed) = ProvisioningString::parse(text)
    {
        assert_eq!(parsed.to_string(), text);
    }
});
