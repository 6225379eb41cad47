//! Writing CSV that people open in spreadsheets: the one rule for every file Gema writes
//! (payout reports, reconciliation rows, export jobs).
//!
//! Values come from outside (an order reference from a merchant's backend, an issuer name
//! from a provider's callback, a reason typed by a user), and a spreadsheet runs a cell that
//! starts with `=`, `+`, `-` or `@` as a formula (OWASP "CSV injection"). Such text is
//! prefixed with `'`, which spreadsheets show but do not run; a number (`-5000`) is left as
//! it is.

use std::borrow::Cow;

/// `value`, with `'` in front if a spreadsheet would run it as a formula.
pub fn defuse(value: &str) -> Cow<'_, str> {
    match value.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@') if value.parse::<i64>().is_err() => {
            Cow::Owned(format!("'{value}"))
        }
        _ => Cow::Borrowed(value),
    }
}

/// One CSV field: [`defuse`]d, then quoted when it holds a comma, quote or line break, with
/// quotes doubled (RFC 4180).
pub fn field(value: &str) -> String {
    let value = defuse(value);
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(
            field("=HYPERLINK(\"x\",\"y\")"),
            "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
        );
        assert_eq!(field("@cmd"), "'@cmd");
        assert_eq!(field("-5000"), "-5000");
        assert_eq!(defuse("+62812"), "+62812", "a number stays a number");
        assert_eq!(defuse("+1+cmd"), "'+1+cmd");
    }
}
