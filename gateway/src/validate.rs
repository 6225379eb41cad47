//! Input rules for registry fields. Each check names the field it rejects, so the API can
//! tell the caller exactly what to fix.

use crate::error::{GatewayError, GatewayResult};

/// A fixed-width field of ASCII digits (a date's `2026` or `07`): its number, or `None` for
/// anything else. `str::parse` alone takes a sign, so `+026` would be the year 26.
pub fn fixed_digits<T: std::str::FromStr>(text: &str, width: usize) -> Option<T> {
    if text.len() != width || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Trims surrounding white space and requires 1..=`max` characters without control
/// characters.
pub fn text(field: &'static str, value: &str, max: usize) -> GatewayResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(GatewayError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(GatewayError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(GatewayError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_string())
}

/// Like [`text`] for an optional field; an empty string counts as absent.
pub fn optional_text(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> GatewayResult<Option<String>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => text(field, v, max).map(Some),
    }
}

/// An identifier-like value: 1..=`max` of ASCII letters, digits, `-`, `_`, `.`.
pub fn code(field: &'static str, value: &str, max: usize) -> GatewayResult<String> {
    let value = value.trim();
    if value.is_empty() || value.len() > max {
        return Err(GatewayError::invalid(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(GatewayError::invalid(
            field,
            "may contain only ASCII letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(value.to_string())
}

/// A terminal label as QRIS carries it in tag 62.07: 1..=25 ASCII letters and digits (plus
/// `-` and `_`), since it ends up inside every dynamic QR of the terminal.
pub fn terminal_label(value: &str) -> GatewayResult<String> {
    let value = value.trim();
    if value.is_empty() || value.len() > 25 {
        return Err(GatewayError::invalid("label", "must be 1 to 25 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err(GatewayError::invalid(
            "label",
            "may contain only ASCII letters, digits, '-' and '_'",
        ));
    }
    Ok(value.to_string())
}

/// A terminal's static QRIS: it must decode (CRC, structure, values) and be static
/// (tag 01 = `11`), since dynamic codes are made from it per order. Stored as re-encoded.
pub fn static_qris(value: &str) -> GatewayResult<String> {
    let qris = gema_qris::decode(value.trim())
        .map_err(|e| GatewayError::invalid("static_qris", e.to_string()))?;
    if qris.point_of_initiation() == Some(gema_qris::PointOfInitiation::Dynamic) {
        return Err(GatewayError::invalid(
            "static_qris",
            "is a dynamic QRIS (tag 01 = 12); give the terminal's static code",
        ));
    }
    Ok(qris.encode())
}

/// A plausible e-mail address: one `@`, something on each side, a dot in the domain.
pub fn email(value: Option<&str>) -> GatewayResult<Option<String>> {
    let Some(value) = optional_text("email", value, 254)? else {
        return Ok(None);
    };
    let valid = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !value.contains(char::is_whitespace)
        }
        None => false,
    };
    if !valid {
        return Err(GatewayError::invalid("email", "is not an e-mail address"));
    }
    Ok(Some(value))
}

/// A phone number: an optional leading `+`, then 6..=15 digits (E.164 length), spaces and
/// dashes ignored. Stored without the separators.
pub fn phone(value: Option<&str>) -> GatewayResult<Option<String>> {
    let Some(value) = optional_text("phone", value, 32)? else {
        return Ok(None);
    };
    let (plus, rest) = match value.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", value.as_str()),
    };
    let digits: String = rest.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if !(6..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GatewayError::invalid(
            "phone",
            "must be 6 to 15 digits, optionally starting with +",
        ));
    }
    Ok(Some(format!("{plus}{digits}")))
}

/// An Indonesian WhatsApp number as E.164 digits: `08…`, `+62…` and `62…` are accepted
/// (spaces, dashes, dots and parentheses ignored) and stored as `62…`, 10 to 15 digits.
/// `field` names the input in the error (`phone`, `telepon`).
pub fn wa_phone(field: &'static str, value: &str) -> GatewayResult<String> {
    let compact: String = value
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = if let Some(rest) = compact.strip_prefix('+') {
        rest.to_owned()
    } else if let Some(rest) = compact.strip_prefix('0') {
        format!("62{rest}")
    } else {
        compact
    };
    if !digits.bytes().all(|b| b.is_ascii_digit())
        || !digits.starts_with("62")
        || !(10..=15).contains(&digits.len())
    {
        return Err(GatewayError::invalid(
            field,
            "must be a WhatsApp number: 10 to 15 digits starting with 62 (08… and +62… are accepted)",
        ));
    }
    Ok(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: GatewayResult<impl std::fmt::Debug>) -> &'static str {
        match result {
            Err(GatewayError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn text_trims_and_bounds() {
        assert_eq!(text("name", "  Warung  ", 10).unwrap(), "Warung");
        assert_eq!(field_of(text("name", "   ", 10)), "name");
        assert_eq!(field_of(text("name", "abcdefghijk", 10)), "name");
        assert_eq!(field_of(text("name", "a\u{0}b", 10)), "name");
        assert_eq!(optional_text("city", Some(""), 10).unwrap(), None);
    }

    #[test]
    fn labels_fit_qris() {
        assert_eq!(terminal_label("A01").unwrap(), "A01");
        assert_eq!(field_of(terminal_label("A 01")), "label");
        assert_eq!(field_of(terminal_label(&"A".repeat(26))), "label");
    }

    #[test]
    fn emails_and_phones() {
        assert_eq!(
            email(Some("owner@warung.id")).unwrap().as_deref(),
            Some("owner@warung.id")
        );
        for bad in ["owner", "@x.id", "a@b", "a@.id", "a b@c.id"] {
            assert_eq!(field_of(email(Some(bad))), "email", "{bad}");
        }
        assert_eq!(
            phone(Some("+62 812-3456-7890")).unwrap().as_deref(),
            Some("+6281234567890")
        );
        assert_eq!(field_of(phone(Some("12ab56"))), "phone");
        assert_eq!(field_of(phone(Some("123"))), "phone");
    }

    #[test]
    fn whatsapp_numbers_become_62_digits() {
        for (input, want) in [
            ("081234567890", "6281234567890"),
            ("+62 812-3456-7890", "6281234567890"),
            ("6281234567890", "6281234567890"),
            (" (0812) 345.678 ", "62812345678"),
        ] {
            assert_eq!(wa_phone("phone", input).unwrap(), want, "{input}");
        }
        for bad in [
            "",
            "0812",
            "+1 415 555 0100",
            "62812345678901234",
            "62812abc4567",
            "+",
        ] {
            assert_eq!(field_of(wa_phone("telepon", bad)), "telepon", "{bad}");
        }
    }

    #[test]
    fn codes_refuse_spaces_and_slashes() {
        assert_eq!(code("serial", "SB-100.2", 64).unwrap(), "SB-100.2");
        assert_eq!(field_of(code("serial", "a/b", 64)), "serial");
        assert_eq!(field_of(code("serial", "", 64)), "serial");
    }
}
