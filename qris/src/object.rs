//! Data objects (`ID LEN VALUE`) and the tokenizer that splits text into them.
//!
//! This layer knows the wire grammar only: two-digit ids, two-digit lengths, which top-level
//! tags are templates. What a value means is checked in `payload`.

use crate::error::{QrisError, TagPath};

/// The largest value a two-digit length can announce.
pub const MAX_VALUE_LEN: usize = 99;

/// Whether a top-level tag is a template whose value is itself a list of data objects:
/// merchant account information `26`–`51`, additional data `62`, merchant information in an
/// alternate language `64`.
#[must_use]
pub const fn is_template_tag(id: u8) -> bool {
    matches!(id, 26..=51 | 62 | 64)
}

/// One data object: a two-digit id and either a text value or, for templates, sub-objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataObject {
    id: u8,
    value: Value,
}

/// The value of a [`DataObject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Plain text (printable ASCII, 1 to 99 characters).
    Text(String),
    /// A template: sub-objects in their stored order, ids unique, no nested templates.
    Template(Vec<DataObject>),
}

impl DataObject {
    /// A text data object. The value must be 1 to 99 printable ASCII characters.
    pub fn text(id: u8, value: impl Into<String>) -> Result<Self, QrisError> {
        check_id(id)?;
        let value = value.into();
        let tag = TagPath::top(id);
        check_text(tag, &value)?;
        Ok(Self {
            id,
            value: Value::Text(value),
        })
    }

    /// A template data object. The sub-objects must be text objects with distinct ids, and
    /// their encoding must fit in 1 to 99 characters.
    pub fn template(id: u8, objects: Vec<DataObject>) -> Result<Self, QrisError> {
        check_id(id)?;
        for (i, object) in objects.iter().enumerate() {
            let tag = TagPath::sub(id, object.id);
            if object.sub_objects().is_some() {
                return Err(QrisError::MisplacedObject {
                    tag,
                    reason: "templates cannot be nested",
                });
            }
            if objects[..i].iter().any(|o| o.id == object.id) {
                return Err(QrisError::DuplicateTag { tag, position: 0 });
            }
        }
        let object = Self {
            id,
            value: Value::Template(objects),
        };
        let length = object.value_len();
        if length == 0 {
            return Err(QrisError::EmptyValue {
                tag: TagPath::top(id),
                position: 0,
            });
        }
        if length > MAX_VALUE_LEN {
            return Err(QrisError::ValueTooLong {
                tag: TagPath::top(id),
                length,
                max: MAX_VALUE_LEN,
            });
        }
        Ok(object)
    }

    /// The two-digit id, `0..=99`.
    #[must_use]
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The value.
    #[must_use]
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The text value, `None` for a template.
    #[must_use]
    pub fn as_text(&self) -> Option<&str> {
        match &self.value {
            Value::Text(text) => Some(text),
            Value::Template(_) => None,
        }
    }

    /// The sub-objects, `None` for a text object.
    #[must_use]
    pub fn sub_objects(&self) -> Option<&[DataObject]> {
        match &self.value {
            Value::Text(_) => None,
            Value::Template(objects) => Some(objects),
        }
    }

    /// Sub-object `id` of a template.
    #[must_use]
    pub fn get(&self, id: u8) -> Option<&DataObject> {
        self.sub_objects()?.iter().find(|o| o.id == id)
    }

    /// Text of sub-object `id` of a template.
    #[must_use]
    pub fn get_text(&self, id: u8) -> Option<&str> {
        self.get(id)?.as_text()
    }

    /// Length of the encoded value (what the two length digits say).
    #[must_use]
    pub fn value_len(&self) -> usize {
        match &self.value {
            Value::Text(text) => text.len(),
            Value::Template(objects) => objects.iter().map(DataObject::encoded_len).sum(),
        }
    }

    /// Length of the whole encoded object: id, length and value.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        4 + self.value_len()
    }

    /// The object as it appears in a payload: `ID LEN VALUE`.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    pub(crate) fn encode_into(&self, out: &mut String) {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = write!(out, "{:02}{:02}", self.id, self.value_len());
        match &self.value {
            Value::Text(text) => out.push_str(text),
            Value::Template(objects) => {
                for object in objects {
                    object.encode_into(out);
                }
            }
        }
    }
}

fn check_id(id: u8) -> Result<(), QrisError> {
    if id > 99 {
        return Err(QrisError::InvalidTag { id });
    }
    Ok(())
}

/// Checks that `value` can be the text of a data object.
pub(crate) fn check_text(tag: TagPath, value: &str) -> Result<(), QrisError> {
    if let Some(position) = value.bytes().position(|b| !is_printable_ascii(b)) {
        return Err(QrisError::InvalidValue {
            tag,
            found: value.to_owned(),
            reason: match value.as_bytes().get(position) {
                Some(b) if b.is_ascii() => "control characters are not allowed",
                _ => "QRIS text must be ASCII",
            },
        });
    }
    if value.is_empty() {
        return Err(QrisError::EmptyValue { tag, position: 0 });
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(QrisError::ValueTooLong {
            tag,
            length: value.len(),
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

pub(crate) const fn is_printable_ascii(byte: u8) -> bool {
    matches!(byte, 0x20..=0x7E)
}

fn two_digits(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => Some((a - b'0') * 10 + (b - b'0')),
        _ => None,
    }
}

/// Splits `text` into data objects. `base` is the position of `text` in the whole payload (for
/// error positions) and `parent` the enclosing template, `None` at the top level. Top-level
/// template tags are parsed one level deep.
///
/// The caller guarantees that `text` is ASCII, so every byte index is a character boundary.
pub(crate) fn parse_objects(
    text: &str,
    base: usize,
    parent: Option<u8>,
) -> Result<Vec<DataObject>, QrisError> {
    let bytes = text.as_bytes();
    let slice = |from: usize, to: usize| text.get(from..to).unwrap_or_default().to_owned();
    let mut objects: Vec<DataObject> = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let position = base + pos;
        let remaining = bytes.len() - pos;
        if remaining < 4 {
            return Err(QrisError::TruncatedObject {
                position,
                remaining,
            });
        }
        let id = two_digits(&bytes[pos..pos + 2]).ok_or_else(|| QrisError::InvalidId {
            position,
            found: slice(pos, pos + 2),
        })?;
        let tag = TagPath::new(parent, id);
        let length =
            two_digits(&bytes[pos + 2..pos + 4]).ok_or_else(|| QrisError::InvalidLength {
                tag,
                position,
                found: slice(pos + 2, pos + 4),
            })?;
        let length = usize::from(length);
        if length == 0 {
            return Err(QrisError::EmptyValue { tag, position });
        }
        let start = pos + 4;
        let available = bytes.len() - start;
        if length > available {
            return Err(QrisError::LengthOverrun {
                tag,
                position,
                length,
                available,
            });
        }
        if objects.iter().any(|o| o.id == id) {
            return Err(QrisError::DuplicateTag { tag, position });
        }
        let raw = text.get(start..start + length).unwrap_or_default();
        let value = if parent.is_none() && is_template_tag(id) {
            Value::Template(parse_objects(raw, base + start, Some(id))?)
        } else {
            Value::Text(raw.to_owned())
        };
        objects.push(DataObject { id, value });
        pos = start + length;
    }
    Ok(objects)
}
