//! The one error type of the codec. Every variant names the tag and, for decoding errors, the
//! byte position in the payload where the problem starts, so that a support engineer can point
//! at the character that is wrong.

use std::fmt;

/// Where a data object sits: a top-level tag such as `54`, or a sub-object inside a template
/// such as `62.05`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagPath {
    parent: Option<u8>,
    id: u8,
}

impl TagPath {
    /// A top-level tag.
    #[must_use]
    pub const fn top(id: u8) -> Self {
        Self { parent: None, id }
    }

    /// Sub-object `id` of the template `parent`.
    #[must_use]
    pub const fn sub(parent: u8, id: u8) -> Self {
        Self {
            parent: Some(parent),
            id,
        }
    }

    pub(crate) const fn new(parent: Option<u8>, id: u8) -> Self {
        Self { parent, id }
    }

    /// The template this object belongs to, `None` at the top level.
    #[must_use]
    pub const fn parent(&self) -> Option<u8> {
        self.parent
    }

    /// The object's own id.
    #[must_use]
    pub const fn id(&self) -> u8 {
        self.id
    }
}

impl fmt::Display for TagPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parent {
            Some(parent) => write!(f, "{parent:02}.{:02}", self.id),
            None => write!(f, "{:02}", self.id),
        }
    }
}

/// Why a payload, a data object or a dynamic-QR option was rejected.
///
/// Positions are byte offsets from the start of the payload (QRIS text is ASCII, so they are
/// also character offsets) and point at the first character of the offending data object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QrisError {
    /// The payload is empty.
    #[error("the QRIS payload is empty")]
    Empty,

    /// A byte outside printable ASCII (0x20..=0x7E): UTF-8 text, a control character or a
    /// trailing newline.
    #[error("byte {byte:#04x} at position {position} is not printable ASCII")]
    InvalidCharacter { position: usize, byte: u8 },

    /// Fewer than the four characters of an id and a length are left.
    #[error(
        "data object at position {position} is truncated: {remaining} character(s) left, an id and a length need 4"
    )]
    TruncatedObject { position: usize, remaining: usize },

    /// The id is not two decimal digits.
    #[error("data object id {found:?} at position {position} is not two decimal digits")]
    InvalidId { position: usize, found: String },

    /// The length is not two decimal digits.
    #[error("length {found:?} of tag {tag} at position {position} is not two decimal digits")]
    InvalidLength {
        tag: TagPath,
        position: usize,
        found: String,
    },

    /// The length is `00`.
    #[error("tag {tag} at position {position} has an empty value")]
    EmptyValue { tag: TagPath, position: usize },

    /// The length runs past the end of the payload (or of the enclosing template).
    #[error(
        "tag {tag} at position {position} declares {length} characters but only {available} remain"
    )]
    LengthOverrun {
        tag: TagPath,
        position: usize,
        length: usize,
        available: usize,
    },

    /// A tag appears twice at the same level.
    #[error("tag {tag} appears more than once (again at position {position})")]
    DuplicateTag { tag: TagPath, position: usize },

    /// The first data object is not tag `00`.
    #[error("the payload must start with tag 00 (payload format indicator)")]
    MissingPayloadFormat,

    /// Tag `00` is not `01`.
    #[error("the payload format indicator (tag 00) must be \"01\", found {found:?}")]
    InvalidPayloadFormat { found: String },

    /// The payload does not end with the CRC object (`6304` and four characters).
    #[error("the payload must end with the CRC data object: 6304 followed by 4 hex digits")]
    MissingCrc,

    /// The CRC value is not four upper-case hex digits.
    #[error("the CRC (tag 63) must be 4 upper-case hex digits, found {found:?}")]
    InvalidCrcFormat { found: String },

    /// The CRC does not match the payload: the code was mistyped, cut or edited.
    #[error("CRC mismatch: the payload carries {found}, its content gives {computed}")]
    CrcMismatch { found: String, computed: String },

    /// A value is malformed for its tag (amount, currency, MCC, indicators, …).
    #[error("invalid value {found:?} for tag {tag}: {reason}")]
    InvalidValue {
        tag: TagPath,
        found: String,
        reason: &'static str,
    },

    /// A value does not fit the two-digit length (or the tag's own maximum).
    #[error("tag {tag} would be {length} characters long, the maximum is {max}")]
    ValueTooLong {
        tag: TagPath,
        length: usize,
        max: usize,
    },

    /// A data object was built with an id above 99.
    #[error("data object id {id} is not in 00..=99")]
    InvalidTag { id: u8 },

    /// A data object was built as a template where the format has text, or the other way
    /// round, or the CRC object was supplied (the codec computes it).
    #[error("tag {tag} cannot be used here: {reason}")]
    MisplacedObject { tag: TagPath, reason: &'static str },

    /// A [`DynamicOptions`](crate::DynamicOptions) field is out of range.
    #[error("invalid dynamic QRIS option `{field}`: {reason}")]
    InvalidOption {
        field: &'static str,
        reason: &'static str,
    },
}
