//! QRIS codec: Indonesia's profile of the EMVCo Merchant-Presented Mode (MPM) QR code.
//!
//! A QRIS payload is a flat ASCII string of data objects, each `ID LEN VALUE`: a two-digit
//! id, a two-digit decimal length counting characters, and the value. The merchant account
//! templates (`26`–`51`), the additional data template (`62`) and the alternate-language
//! template (`64`) hold further data objects. Tag `00` (payload format, always `01`) comes first; tag `63` comes last
//! and carries a CRC-16/CCITT-FALSE over every byte up to and including `6304`, as four
//! upper-case hex digits. Between them the tags may come in any order.
//!
//! ```
//! use gema_qris::{DynamicOptions, Fee, Qris, to_dynamic};
//!
//! let static_code = "00020101021126530012COM.DOKU.WWW0118936008990000002475020424750303URE51440014ID.CO.QRIS.WWW0215ID10200392934820303URE5204539953033605802ID5911GUREUM SHOP6013JAKARTA PUSAT61051064062070703A016304455C";
//! let qris = Qris::decode(static_code)?;
//! assert_eq!(qris.merchant_name(), Some("GUREUM SHOP"));
//! assert_eq!(qris.amount(), None);
//! assert_eq!(qris.encode(), static_code);
//!
//! let options = DynamicOptions { amount: 1000, fee: Some(Fee::Fixed(500)), ..Default::default() };
//! let dynamic = Qris::decode(&to_dynamic(static_code, options)?)?;
//! assert_eq!(dynamic.amount(), Some(1000));
//! # Ok::<(), gema_qris::QrisError>(())
//! ```
//!
//! # What the crate guarantees
//! - Pure: no I/O, no async, no global state. It never panics, whatever the input
//!   (property-tested, and fuzzed by `qris/fuzz`).
//! - [`Qris::decode`] accepts a payload only if: it is printable ASCII; every object has a
//!   two-digit id and a two-digit, non-zero length that stays inside the payload or its
//!   template; no top-level tag (nor sub-object tag within a template) appears twice; `00` is
//!   first and is `01`; `63` is last, four upper-case hex digits, and matches; `01` is `11` or
//!   `12`; `52` is four digits; `53` is `360`; `54` and `56` are whole-rupiah amounts
//!   (`1000`, `1000.`, `1000.00`; not `1.000`, `1000,00`, `1 000`, `1000.50`, `0`), at most
//!   13 characters; `55` is `01`, `02` (with `56`) or `03` (with `57`); `57` is a decimal
//!   percentage above 0 and at most 100. Anything else is a [`QrisError`] naming the tag and
//!   position. When the payload ends like a CRC object the CRC is checked first, so a
//!   mistyped character anywhere is reported as [`QrisError::CrcMismatch`].
//! - Nothing else is judged: merchant name and city lengths, the mPAN check digit (issuers
//!   disagree on it) and unknown tags are kept as they are.
//! - [`Qris::encode`] writes the objects in their stored order and recomputes the CRC, so for
//!   every accepted payload `decode(p)?.encode() == p`, byte for byte.
//! - [`Qris::to_dynamic`] edits data objects, never text, and its result always decodes.
//! - Money is integer rupiah (`i64`); amounts and percentages are handled as decimal text,
//!   never as floating point.

mod crc;
mod dynamic;
mod error;
mod object;
mod payload;

pub use crate::crc::{crc16, crc16_hex};
pub use crate::dynamic::{DynamicOptions, Fee, MAX_AMOUNT, Reference, to_dynamic};
pub use crate::error::{QrisError, TagPath};
pub use crate::object::{DataObject, MAX_VALUE_LEN, Value, is_template_tag};
pub use crate::payload::{MerchantAccount, PointOfInitiation, Qris, TipOrFee};

/// Decodes and validates a payload; shorthand for [`Qris::decode`].
pub fn decode(payload: &str) -> Result<Qris, QrisError> {
    Qris::decode(payload)
}
