//! Bounds every decoded message is checked against. They keep firmware buffers small and
//! make an oversized or hostile payload a clear error instead of an allocation.

use core::ops::RangeInclusive;

/// Largest payload a decoder looks at, in bytes (either encoding). A valid message is
/// smaller: the biggest, a renewed certificate's chain, is at most
/// [`MAX_CERT_CHAIN_PEM_LEN`] bytes of PEM and a few hundred of JSON around it.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Ids (`msg_id`, `transaction_id`, `command_id`, `request_id`): 1..=64 bytes of printable
/// ASCII without spaces.
pub const MAX_ID_LEN: usize = 64;
/// Free text (provider, issuer, versions, messages): at most this many bytes of UTF-8, no
/// control characters.
pub const MAX_TEXT_LEN: usize = 128;
/// A QRIS string is at most 512 characters.
pub const MAX_QR_PAYLOAD_LEN: usize = 512;
/// Firmware and audio-pack download URLs.
pub const MAX_URL_LEN: usize = 512;
/// Largest amount in whole rupiah: 13 digits, the most a QRIS amount field (tag 54) holds.
pub const MAX_AMOUNT: i64 = 9_999_999_999_999;
/// Volume steps: 0 is mute.
pub const MAX_VOLUME: u8 = 10;
/// Allowed heartbeat interval, seconds.
pub const HEARTBEAT_INTERVAL_S: RangeInclusive<u32> = 10..=3600;
/// Allowed dynamic-QR timeout, seconds.
pub const QR_TIMEOUT_S: RangeInclusive<u32> = 30..=3600;
/// Allowed UTC offsets in minutes (UTC-12:00 ..= UTC+14:00).
pub const UTC_OFFSET_MINUTES: RangeInclusive<i16> = -720..=840;
/// Minutes in a day: quiet-hour bounds are below this.
pub const MINUTES_PER_DAY: u16 = 1440;
/// Most announcements `replay_last` may ask for.
pub const MAX_REPLAY: u8 = 10;
/// Most entries in a command result map; keys at most [`MAX_RESULT_KEY_LEN`] bytes, values at
/// most [`MAX_TEXT_LEN`].
pub const MAX_RESULT_ENTRIES: usize = 16;
pub const MAX_RESULT_KEY_LEN: usize = 32;
/// Signal strength bounds, dBm.
pub const SIGNAL_DBM: RangeInclusive<i16> = -150..=0;
/// A certificate signing request in PEM (`cert_renew`): a P-256 or Ed25519 request is
/// under 600 bytes.
pub const MAX_CSR_PEM_LEN: usize = 2048;
/// A renewed certificate and the device CA's certificate in PEM (`cert_renew_result`): two
/// P-256 certificates are about 1,300 bytes, and an operator's RSA-4096 CA fits too.
pub const MAX_CERT_CHAIN_PEM_LEN: usize = 3072;
