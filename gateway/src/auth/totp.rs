//! TOTP (RFC 6238) over HOTP (RFC 4226) with HMAC-SHA1 from `ring`: 30-second steps, six
//! digits, one step of clock skew either way, and base32 (RFC 4648) secrets as
//! authenticator apps expect them.

use ring::hmac;

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;
/// 160-bit secrets, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// HOTP: the `digits`-digit code of `counter`.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &counter.to_be_bytes());
    let mac = mac.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = (u32::from(mac[offset]) & 0x7f) << 24
        | u32::from(mac[offset + 1]) << 16
        | u32::from(mac[offset + 2]) << 8
        | u32::from(mac[offset + 3]);
    binary % 10u32.pow(digits)
}

/// The step a Unix time falls in.
pub fn step_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// TOTP at a Unix time.
pub fn totp(secret: &[u8], unix_secs: i64, digits: u32) -> u32 {
    hotp(secret, step_of(unix_secs).max(0) as u64, digits)
}

/// Checks a code typed by a person: exactly six ASCII digits (spaces ignored), matching the
/// current step or one step either side. Returns the matching step, so the caller can refuse
/// a code whose step was already used. Anything malformed is `None`, never a panic.
pub fn verify(secret: &[u8], code: &str, unix_secs: i64) -> Option<i64> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let presented: u32 = crate::validate::fixed_digits(&digits, DIGITS as usize)?;
    let now = step_of(unix_secs);
    let mut matched = None;
    // Compare every candidate, so timing does not tell which step matched.
    for step in [now - 1, now, now + 1] {
        if step >= 0 && hotp(secret, step as u64, DIGITS) == presented {
            matched = Some(step);
        }
    }
    matched
}

/// RFC 4648 base32 without padding.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// RFC 4648 base32, case-insensitive, padding and spaces ignored; `None` for any other
/// character.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=' && *c != b' ') {
        let value = BASE32.iter().position(|&a| a == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The `otpauth://` URI authenticator apps scan.
pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'@') {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 6238 appendix B, the SHA-1 rows (8 digits, secret "12345678901234567890").
    #[test]
    fn rfc6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, 94_287_082),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ] {
            assert_eq!(totp(secret, time, 8), code, "T = {time}");
        }
    }

    /// RFC 4226 appendix D.
    #[test]
    fn rfc4226_hotp_vectors() {
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, code) in expected.into_iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", counter as u64, 6), code);
        }
    }

    #[test]
    fn codes_verify_within_one_step_only() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111;
        let code = format!("{:06}", totp(secret, now, 6));
        assert_eq!(verify(secret, &code, now), Some(step_of(now)));
        assert_eq!(verify(secret, &code, now + 30), Some(step_of(now)));
        assert_eq!(verify(secret, &code, now - 30), Some(step_of(now)));
        assert_eq!(verify(secret, &code, now + 90), None);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(verify(secret, &spaced, now), Some(step_of(now)));
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(verify(secret, bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw6ytboi").unwrap(), b"foobar");
        assert_eq!(base32_decode("MZXW1"), None);
    }

    proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(base32_decode(&base32_encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn verify_and_decode_never_panic(code in ".{0,40}", t in any::<i64>()) {
            let _ = verify(b"12345678901234567890", &code, t / 2);
            let _ = base32_decode(&code);
        }
    }
}
