//! Static → dynamic conversion: the same merchant, with an amount (and optionally a fee, an
//! order reference and a terminal label) for one payment.
//!
//! Works on data objects, never on the text: a string replacement of `010211` could hit a
//! merchant id, and the CRC has to be recomputed over the new bytes anyway.

use crate::error::QrisError;
use crate::object::{DataObject, MAX_VALUE_LEN, Value, is_printable_ascii};
use crate::payload::{Qris, check_percent, tag};

/// Largest amount or fixed fee that fits the 13 characters of tags 54 and 56.
pub const MAX_AMOUNT: i64 = 9_999_999_999_999;

/// What to put into a dynamic QRIS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DynamicOptions {
    /// Amount in whole rupiah, `1..=MAX_AMOUNT` (tag 54).
    pub amount: i64,
    /// Convenience fee charged on top (tags 55–57).
    pub fee: Option<Fee>,
    /// The gateway's order reference, so the acquirer's callback can be tied back to it.
    pub reference: Option<Reference>,
    /// Terminal label (`62.07`), so the callback can be tied back to the terminal.
    pub terminal_label: Option<String>,
}

/// Convenience fee of a dynamic QRIS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fee {
    /// Fixed fee in whole rupiah, `1..=MAX_AMOUNT`: tag 55 = `02`, tag 56.
    Fixed(i64),
    /// Percentage as decimal text (`"2.5"`, at most 5 characters, above 0 and at most 100):
    /// tag 55 = `03`, tag 57.
    Percent(String),
}

/// Where the order reference goes in template 62.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `62.01`, bill number.
    Bill(String),
    /// `62.05`, reference label.
    Label(String),
}

impl Qris {
    /// Makes a dynamic QRIS from this one (normally a static code).
    ///
    /// Sets `01` to `12`; drops `54`–`57`; inserts `54` (and `55` with `56` or `57` for a fee)
    /// right before `58` (at the end when `58` is absent); writes the reference into `62.01`
    /// or `62.05` and the terminal label into `62.07`, updating template `62` in place and
    /// keeping its other sub-objects (or creating it before the first tag above 62). Every
    /// other object keeps its place. The result passes every check of [`Qris::decode`].
    pub fn to_dynamic(&self, options: DynamicOptions) -> Result<Qris, QrisError> {
        let DynamicOptions {
            amount,
            fee,
            reference,
            terminal_label,
        } = options;
        check_amount("amount", amount)?;

        let mut objects: Vec<DataObject> = self
            .objects()
            .iter()
            .filter(|o| !matches!(o.id(), tag::AMOUNT..=tag::PERCENT_FEE))
            .cloned()
            .collect();

        let dynamic = DataObject::text(tag::POINT_OF_INITIATION, "12")?;
        match objects
            .iter()
            .position(|o| o.id() == tag::POINT_OF_INITIATION)
        {
            Some(i) => objects[i] = dynamic,
            // Right after tag 00, which is always first.
            None => objects.insert(1.min(objects.len()), dynamic),
        }

        let mut inserted = vec![DataObject::text(tag::AMOUNT, amount.to_string())?];
        match fee {
            None => {}
            Some(Fee::Fixed(fee)) => {
                check_amount("fee", fee)?;
                inserted.push(DataObject::text(tag::TIP_OR_FEE, "02")?);
                inserted.push(DataObject::text(tag::FIXED_FEE, fee.to_string())?);
            }
            Some(Fee::Percent(percent)) => {
                check_percent(&percent).map_err(|_| QrisError::InvalidOption {
                    field: "fee",
                    reason: "a percentage is decimal text of at most 5 characters, above 0 and at most 100",
                })?;
                inserted.push(DataObject::text(tag::TIP_OR_FEE, "03")?);
                inserted.push(DataObject::text(tag::PERCENT_FEE, percent)?);
            }
        }
        let at = objects
            .iter()
            .position(|o| o.id() == tag::COUNTRY)
            .unwrap_or(objects.len());
        objects.splice(at..at, inserted);

        let mut additional: Vec<(u8, String)> = Vec::new();
        match reference {
            None => {}
            Some(Reference::Bill(bill)) => {
                check_option_text("reference", &bill)?;
                additional.push((tag::BILL_NUMBER, bill));
            }
            Some(Reference::Label(label)) => {
                check_option_text("reference", &label)?;
                additional.push((tag::REFERENCE_LABEL, label));
            }
        }
        if let Some(label) = terminal_label {
            check_option_text("terminal_label", &label)?;
            additional.push((tag::TERMINAL_LABEL, label));
        }
        if !additional.is_empty() {
            set_additional_data(&mut objects, additional)?;
        }

        Qris::from_objects(objects)
    }
}

/// Decodes `payload`, converts it with [`Qris::to_dynamic`] and encodes the result.
pub fn to_dynamic(payload: &str, options: DynamicOptions) -> Result<String, QrisError> {
    Ok(Qris::decode(payload)?.to_dynamic(options)?.encode())
}

fn check_amount(field: &'static str, amount: i64) -> Result<(), QrisError> {
    if amount <= 0 {
        return Err(QrisError::InvalidOption {
            field,
            reason: "must be greater than zero",
        });
    }
    if amount > MAX_AMOUNT {
        return Err(QrisError::InvalidOption {
            field,
            reason: "must fit in 13 digits",
        });
    }
    Ok(())
}

fn check_option_text(field: &'static str, value: &str) -> Result<(), QrisError> {
    let reason = if value.is_empty() {
        "must not be empty"
    } else if value.len() > MAX_VALUE_LEN {
        "must be at most 99 characters"
    } else if !value.bytes().all(is_printable_ascii) {
        "must be printable ASCII"
    } else {
        return Ok(());
    };
    Err(QrisError::InvalidOption { field, reason })
}

/// Sets sub-objects of template 62, creating the template if needed. Existing sub-objects keep
/// their place; new ones go before the first sub-object with a higher id.
fn set_additional_data(
    objects: &mut Vec<DataObject>,
    values: Vec<(u8, String)>,
) -> Result<(), QrisError> {
    let existing = objects.iter().position(|o| o.id() == tag::ADDITIONAL_DATA);
    let mut subs: Vec<DataObject> = match existing.map(|i| objects[i].value()) {
        Some(Value::Template(subs)) => subs.clone(),
        _ => Vec::new(),
    };
    for (id, value) in values {
        // Checked by `check_option_text`; only the tag in a residual error would differ.
        let object = DataObject::text(id, value).map_err(|_| QrisError::InvalidOption {
            field: "additional data",
            reason: "must be 1 to 99 printable ASCII characters",
        })?;
        match subs.iter().position(|o| o.id() == id) {
            Some(i) => subs[i] = object,
            None => {
                let at = subs.iter().position(|o| o.id() > id).unwrap_or(subs.len());
                subs.insert(at, object);
            }
        }
    }
    let template = DataObject::template(tag::ADDITIONAL_DATA, subs)?;
    match existing {
        Some(i) => objects[i] = template,
        None => {
            let at = objects
                .iter()
                .position(|o| o.id() > tag::ADDITIONAL_DATA)
                .unwrap_or(objects.len());
            objects.insert(at, template);
        }
    }
    Ok(())
}
