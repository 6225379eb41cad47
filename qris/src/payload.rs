//! A whole QRIS payload: decoding with every check, typed accessors, encoding.

use std::fmt;
use std::str::FromStr;

use crate::crc::crc16_hex;
use crate::error::{QrisError, TagPath};
use crate::object::{DataObject, is_printable_ascii, is_template_tag, parse_objects};

/// Tag ids used by the accessors and the checks.
pub(crate) mod tag {
    pub const PAYLOAD_FORMAT: u8 = 0;
    pub const POINT_OF_INITIATION: u8 = 1;
    pub const NATIONAL_REPOSITORY: u8 = 51;
    pub const MCC: u8 = 52;
    pub const CURRENCY: u8 = 53;
    pub const AMOUNT: u8 = 54;
    pub const TIP_OR_FEE: u8 = 55;
    pub const FIXED_FEE: u8 = 56;
    pub const PERCENT_FEE: u8 = 57;
    pub const COUNTRY: u8 = 58;
    pub const MERCHANT_NAME: u8 = 59;
    pub const MERCHANT_CITY: u8 = 60;
    pub const POSTAL_CODE: u8 = 61;
    pub const ADDITIONAL_DATA: u8 = 62;
    pub const CRC: u8 = 63;

    /// Sub-objects of template 62.
    pub const BILL_NUMBER: u8 = 1;
    pub const REFERENCE_LABEL: u8 = 5;
    pub const TERMINAL_LABEL: u8 = 7;
    /// Sub-object 02 of template 51.
    pub const NMID: u8 = 2;
}

/// Longest amount (tags 54 and 56) EMVCo allows; also keeps every amount inside `i64`.
pub(crate) const MAX_AMOUNT_LEN: usize = 13;
/// Longest percentage (tag 57) EMVCo allows.
pub(crate) const MAX_PERCENT_LEN: usize = 5;

/// A decoded, validated QRIS payload.
///
/// Holds the data objects in their stored order, without the CRC object `63`: the CRC is
/// always recomputed by [`Qris::encode`]. A `Qris` can only be built through
/// [`Qris::decode`], [`Qris::from_objects`] or [`Qris::to_dynamic`], so every value passes the
/// checks described in the crate documentation and [`Qris::encode`] cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qris {
    objects: Vec<DataObject>,
}

/// Tag `01`: whether the code is printed once (static) or made for one payment (dynamic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointOfInitiation {
    /// `11`: the same code for every payment; the payer usually types the amount.
    Static,
    /// `12`: made for one transaction, normally with an amount.
    Dynamic,
}

/// Tags `55`–`57`: tip or convenience fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TipOrFee<'a> {
    /// `55` = `01`: the payer's app asks for a tip.
    PayerEntersTip,
    /// `55` = `02`: a fixed fee in whole rupiah (tag `56`).
    Fixed(i64),
    /// `55` = `03`: a percentage of the amount, as the decimal text of tag `57` (e.g. `2.5`).
    Percent(&'a str),
}

/// A merchant account template (tags `26`–`51`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MerchantAccount<'a> {
    object: &'a DataObject,
}

impl<'a> MerchantAccount<'a> {
    /// The template's tag, `26..=51`.
    #[must_use]
    pub fn tag(&self) -> u8 {
        self.object.id()
    }

    /// Sub `00`: reverse-domain id of the acquirer, e.g. `COM.GO-JEK.WWW` or `ID.CO.QRIS.WWW`.
    #[must_use]
    pub fn global_unique_id(&self) -> Option<&'a str> {
        self.object.get_text(0)
    }

    /// Sub `01`: the merchant PAN. Its check digit is not verified (issuers disagree on it).
    #[must_use]
    pub fn pan(&self) -> Option<&'a str> {
        self.object.get_text(1)
    }

    /// Sub `02`: the merchant id at this acquirer (the NMID in template `51`).
    #[must_use]
    pub fn merchant_id(&self) -> Option<&'a str> {
        self.object.get_text(2)
    }

    /// Sub `03`: merchant criteria (`UMI`, `UKE`, `UME`, `UBE`, `URE`).
    #[must_use]
    pub fn criteria(&self) -> Option<&'a str> {
        self.object.get_text(3)
    }

    /// The whole template.
    #[must_use]
    pub fn object(&self) -> &'a DataObject {
        self.object
    }
}

impl Qris {
    /// Decodes and validates a payload. See the crate documentation for every check.
    pub fn decode(payload: &str) -> Result<Self, QrisError> {
        Self::decode_bytes(payload.as_bytes())
    }

    /// [`Qris::decode`] for raw bytes, e.g. straight from a QR scanner.
    pub fn decode_bytes(payload: &[u8]) -> Result<Self, QrisError> {
        if payload.is_empty() {
            return Err(QrisError::Empty);
        }
        if let Some(position) = payload.iter().position(|&b| !is_printable_ascii(b)) {
            return Err(QrisError::InvalidCharacter {
                position,
                byte: payload[position],
            });
        }
        let text = std::str::from_utf8(payload).map_err(|e| QrisError::InvalidCharacter {
            position: e.valid_up_to(),
            byte: payload.get(e.valid_up_to()).copied().unwrap_or_default(),
        })?;

        // The CRC is checked before the structure when the payload ends like a CRC object, so
        // that a mistyped character anywhere is reported as what it is. Without such a tail the
        // structure is parsed first, which names the truncated or overrunning object instead.
        let crc_tail = check_crc_tail(text)?;
        let mut objects = parse_objects(text, 0, None)?;
        match (objects.last(), crc_tail) {
            (Some(last), Some(crc)) if last.id() == tag::CRC && last.as_text() == Some(crc) => {}
            _ => return Err(QrisError::MissingCrc),
        }
        objects.pop();
        validate(&objects)?;
        Ok(Self { objects })
    }

    /// Builds a payload from data objects (without the CRC object `63`, which is computed),
    /// applying the same checks as [`Qris::decode`].
    pub fn from_objects(objects: Vec<DataObject>) -> Result<Self, QrisError> {
        for object in &objects {
            let tag = TagPath::top(object.id());
            if object.id() == tag::CRC {
                return Err(QrisError::MisplacedObject {
                    tag,
                    reason: "the CRC is computed by the encoder",
                });
            }
            if is_template_tag(object.id()) != object.sub_objects().is_some() {
                return Err(QrisError::MisplacedObject {
                    tag,
                    reason: if is_template_tag(object.id()) {
                        "this tag is a template"
                    } else {
                        "this tag holds text, not a template"
                    },
                });
            }
        }
        for (i, object) in objects.iter().enumerate() {
            if objects[..i].iter().any(|o| o.id() == object.id()) {
                let position = objects[..i].iter().map(DataObject::encoded_len).sum();
                return Err(QrisError::DuplicateTag {
                    tag: TagPath::top(object.id()),
                    position,
                });
            }
        }
        validate(&objects)?;
        Ok(Self { objects })
    }

    /// Encodes the objects in their stored order and appends `6304` and the CRC.
    #[must_use]
    pub fn encode(&self) -> String {
        let length = self
            .objects
            .iter()
            .map(DataObject::encoded_len)
            .sum::<usize>()
            + 8;
        let mut out = String::with_capacity(length);
        for object in &self.objects {
            object.encode_into(&mut out);
        }
        out.push_str("6304");
        let crc = crc16_hex(out.as_bytes());
        out.push_str(&crc);
        out
    }

    /// The data objects in stored order, without the CRC object.
    #[must_use]
    pub fn objects(&self) -> &[DataObject] {
        &self.objects
    }

    /// Gives the data objects back, e.g. to edit them and call [`Qris::from_objects`].
    #[must_use]
    pub fn into_objects(self) -> Vec<DataObject> {
        self.objects
    }

    /// Top-level object `id`.
    #[must_use]
    pub fn get(&self, id: u8) -> Option<&DataObject> {
        self.objects.iter().find(|o| o.id() == id)
    }

    /// Text of top-level object `id` (`None` if absent or a template).
    #[must_use]
    pub fn get_text(&self, id: u8) -> Option<&str> {
        self.get(id)?.as_text()
    }

    /// Tag `01`. Do not infer whether an amount is present from it: real static codes with an
    /// amount exist; use [`Qris::amount`].
    #[must_use]
    pub fn point_of_initiation(&self) -> Option<PointOfInitiation> {
        match self.get_text(tag::POINT_OF_INITIATION)? {
            "11" => Some(PointOfInitiation::Static),
            "12" => Some(PointOfInitiation::Dynamic),
            _ => None,
        }
    }

    /// Merchant account templates `26`–`51` in stored order.
    pub fn merchant_accounts(&self) -> impl Iterator<Item = MerchantAccount<'_>> {
        self.objects
            .iter()
            .filter(|o| matches!(o.id(), 26..=51))
            .map(|object| MerchantAccount { object })
    }

    /// National Merchant ID: sub `02` of the national repository template `51`.
    #[must_use]
    pub fn nmid(&self) -> Option<&str> {
        self.get(tag::NATIONAL_REPOSITORY)?.get_text(tag::NMID)
    }

    /// Tag `52`: merchant category code, 4 digits.
    #[must_use]
    pub fn merchant_category_code(&self) -> Option<&str> {
        self.get_text(tag::MCC)
    }

    /// Tag `53`: ISO 4217 numeric currency; always `360` (IDR) when present.
    #[must_use]
    pub fn currency(&self) -> Option<&str> {
        self.get_text(tag::CURRENCY)
    }

    /// Tag `54` in whole rupiah; `None` when the payer enters the amount.
    #[must_use]
    pub fn amount(&self) -> Option<i64> {
        // Validated on construction, so parsing cannot fail here.
        parse_rupiah(self.get_text(tag::AMOUNT)?).ok()
    }

    /// Tags `55`–`57`.
    #[must_use]
    pub fn tip_or_fee(&self) -> Option<TipOrFee<'_>> {
        match self.get_text(tag::TIP_OR_FEE)? {
            "01" => Some(TipOrFee::PayerEntersTip),
            "02" => Some(TipOrFee::Fixed(
                parse_rupiah(self.get_text(tag::FIXED_FEE)?).ok()?,
            )),
            "03" => Some(TipOrFee::Percent(self.get_text(tag::PERCENT_FEE)?)),
            _ => None,
        }
    }

    /// Tag `58`: ISO 3166 country code, `ID`.
    #[must_use]
    pub fn country_code(&self) -> Option<&str> {
        self.get_text(tag::COUNTRY)
    }

    /// Tag `59`.
    #[must_use]
    pub fn merchant_name(&self) -> Option<&str> {
        self.get_text(tag::MERCHANT_NAME)
    }

    /// Tag `60`.
    #[must_use]
    pub fn merchant_city(&self) -> Option<&str> {
        self.get_text(tag::MERCHANT_CITY)
    }

    /// Tag `61`.
    #[must_use]
    pub fn postal_code(&self) -> Option<&str> {
        self.get_text(tag::POSTAL_CODE)
    }

    /// Template `62` (additional data) sub-objects.
    #[must_use]
    pub fn additional_data(&self) -> Option<&[DataObject]> {
        self.get(tag::ADDITIONAL_DATA)?.sub_objects()
    }

    /// `62.01`. `***` means the payer's app asks for it.
    #[must_use]
    pub fn bill_number(&self) -> Option<&str> {
        self.get(tag::ADDITIONAL_DATA)?.get_text(tag::BILL_NUMBER)
    }

    /// `62.05`. `***` means the payer's app asks for it.
    #[must_use]
    pub fn reference_label(&self) -> Option<&str> {
        self.get(tag::ADDITIONAL_DATA)?
            .get_text(tag::REFERENCE_LABEL)
    }

    /// `62.07`, often `A01`.
    #[must_use]
    pub fn terminal_label(&self) -> Option<&str> {
        self.get(tag::ADDITIONAL_DATA)?
            .get_text(tag::TERMINAL_LABEL)
    }
}

impl fmt::Display for Qris {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for Qris {
    type Err = QrisError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::decode(s)
    }
}

/// If `text` ends with `6304` and four characters, checks them and the CRC and returns the
/// four characters; `None` when the tail is not a CRC object (the caller reports it after
/// parsing, when a structural error would be more useful).
fn check_crc_tail(text: &str) -> Result<Option<&str>, QrisError> {
    let Some(split) = text.len().checked_sub(4) else {
        return Ok(None);
    };
    let (covered, found) = (text.get(..split), text.get(split..));
    let (Some(covered), Some(found)) = (covered, found) else {
        return Ok(None);
    };
    if !covered.ends_with("6304") {
        return Ok(None);
    }
    if !found
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
    {
        return Err(QrisError::InvalidCrcFormat {
            found: found.to_owned(),
        });
    }
    let computed = crc16_hex(covered.as_bytes());
    if computed != found {
        return Err(QrisError::CrcMismatch {
            found: found.to_owned(),
            computed,
        });
    }
    Ok(Some(found))
}

/// Semantic checks on the objects of a payload (without the CRC object).
fn validate(objects: &[DataObject]) -> Result<(), QrisError> {
    match objects.first() {
        Some(first) if first.id() == tag::PAYLOAD_FORMAT => {
            if first.as_text() != Some("01") {
                return Err(QrisError::InvalidPayloadFormat {
                    found: first.as_text().unwrap_or_default().to_owned(),
                });
            }
        }
        _ => return Err(QrisError::MissingPayloadFormat),
    }
    let text = |id: u8| {
        objects
            .iter()
            .find(|o| o.id() == id)
            .and_then(DataObject::as_text)
    };
    let invalid = |id: u8, found: &str, reason: &'static str| QrisError::InvalidValue {
        tag: TagPath::top(id),
        found: found.to_owned(),
        reason,
    };

    if let Some(value) = text(tag::POINT_OF_INITIATION)
        && !matches!(value, "11" | "12")
    {
        return Err(invalid(
            tag::POINT_OF_INITIATION,
            value,
            "the point of initiation must be 11 (static) or 12 (dynamic)",
        ));
    }
    if let Some(value) = text(tag::MCC)
        && (value.len() != 4 || !value.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid(tag::MCC, value, "the MCC must be 4 digits"));
    }
    if let Some(value) = text(tag::CURRENCY)
        && value != "360"
    {
        return Err(invalid(
            tag::CURRENCY,
            value,
            "the currency must be 360 (Indonesian rupiah)",
        ));
    }
    if let Some(value) = text(tag::AMOUNT) {
        parse_rupiah(value).map_err(|reason| invalid(tag::AMOUNT, value, reason))?;
    }
    if let Some(value) = text(tag::FIXED_FEE) {
        parse_rupiah(value).map_err(|reason| invalid(tag::FIXED_FEE, value, reason))?;
    }
    if let Some(value) = text(tag::PERCENT_FEE) {
        check_percent(value).map_err(|reason| invalid(tag::PERCENT_FEE, value, reason))?;
    }
    if let Some(value) = text(tag::TIP_OR_FEE) {
        match value {
            "01" => {}
            "02" if text(tag::FIXED_FEE).is_none() => {
                return Err(invalid(
                    tag::TIP_OR_FEE,
                    value,
                    "indicator 02 needs a fixed fee in tag 56",
                ));
            }
            "03" if text(tag::PERCENT_FEE).is_none() => {
                return Err(invalid(
                    tag::TIP_OR_FEE,
                    value,
                    "indicator 03 needs a percentage in tag 57",
                ));
            }
            "02" | "03" => {}
            _ => {
                return Err(invalid(
                    tag::TIP_OR_FEE,
                    value,
                    "the tip or fee indicator must be 01, 02 or 03",
                ));
            }
        }
    }
    Ok(())
}

/// Parses an amount (tags 54 and 56) into whole rupiah.
///
/// Digits, then optionally a `.` and at most two decimals (IDR's ISO 4217 minor unit), which
/// must be zeros: `1000`, `1000.` and `1000.00` are 1000; `1.000` (a thousands separator),
/// `1000,00`, `1 000`, `1000.50` and `0` are rejected. At most 13 characters, so the value
/// always fits in `i64`.
pub(crate) fn parse_rupiah(text: &str) -> Result<i64, &'static str> {
    if text.len() > MAX_AMOUNT_LEN {
        return Err("an amount has at most 13 characters");
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return Err("an amount is digits with an optional decimal point and decimals");
    }
    if fraction.len() > 2 {
        return Err("an amount has at most two decimals (a '.' is not a thousands separator)");
    }
    if fraction.bytes().any(|b| b != b'0') {
        return Err("rupiah amounts are whole numbers: the decimals must be zeros");
    }
    let value: i64 = whole
        .parse()
        .map_err(|_| "an amount is digits with an optional decimal point and decimals")?;
    if value == 0 {
        return Err("an amount must be greater than zero");
    }
    Ok(value)
}

/// Checks a percentage (tag 57): decimal text, at most 5 characters, above 0 and at most 100.
/// Compared as text and integers, never as a float.
pub(crate) fn check_percent(text: &str) -> Result<(), &'static str> {
    if text.len() > MAX_PERCENT_LEN {
        return Err("a percentage has at most 5 characters");
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return Err("a percentage is digits with an optional decimal point and decimals");
    }
    let whole: u32 = whole
        .parse()
        .map_err(|_| "a percentage is digits with an optional decimal point and decimals")?;
    let fraction_is_zero = fraction.bytes().all(|b| b == b'0');
    if whole == 0 && fraction_is_zero {
        return Err("a percentage must be greater than zero");
    }
    if whole > 100 || (whole == 100 && !fraction_is_zero) {
        return Err("a percentage is at most 100");
    }
    Ok(())
}
