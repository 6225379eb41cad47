//! How the console writes money and time: integer rupiah as `Rp 25.000` (dots between
//! thousands, as Indonesians write it, in both languages), instants in Asia/Jakarta (WIB,
//! UTC+7, no daylight saving).

use gema_gateway::GatewayError;
use time::OffsetDateTime;

use crate::i18n::Lang;

pub use gema_gateway::jakarta::{JAKARTA, rupiah};

const MONTHS_ID: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des",
];
const MONTHS_EN: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `4 Des 2026 21:10 WIB`.
pub fn jakarta(at: OffsetDateTime, lang: Lang) -> String {
    let at = at.to_offset(JAKARTA);
    let months = match lang {
        Lang::Id => MONTHS_ID,
        Lang::En => MONTHS_EN,
    };
    format!(
        "{} {} {} {:02}:{:02} WIB",
        at.day(),
        months[usize::from(u8::from(at.month())) - 1],
        at.year(),
        at.hour(),
        at.minute()
    )
}

/// [`jakarta`] of a Unix time in milliseconds; an out-of-range value is shown as it is.
pub fn jakarta_ms(ms: i64, lang: Lang) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(at) => jakarta(at, lang),
        Err(_) => ms.to_string(),
    }
}

/// A `datetime-local` input's value (`YYYY-MM-DDTHH:MM`, seconds optional) read as
/// Jakarta time; `Ok(None)` when empty.
pub fn parse_jakarta_local(value: &str) -> Result<Option<OffsetDateTime>, time::error::Parse> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let minutes = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(value, minutes)
        .or_else(|_| time::PrimitiveDateTime::parse(value, seconds))
        .map(|at| Some(at.assume_offset(JAKARTA)))
}

/// `at` in Jakarta as a `datetime-local` input's value.
pub fn jakarta_local(at: OffsetDateTime) -> String {
    let at = at.to_offset(JAKARTA);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// Whole rupiah from a form field: digits, with `.` or a space between thousands and an
/// optional `Rp` before them (`25000`, `25.000`, `Rp 1.250.000`). No fractions and no comma:
/// money is integer rupiah, and in Indonesian writing a comma starts the fraction, so
/// `25,000` and `25.000,50` are refused rather than read as something else.
pub fn parse_rupiah(field: &'static str, text: &str) -> Result<i64, GatewayError> {
    let bad = || GatewayError::invalid(field, "is whole rupiah, digits only (25000)");
    let text = text.trim();
    let text = text
        .strip_prefix("Rp")
        .or_else(|| text.strip_prefix("rp"))
        .unwrap_or(text)
        .trim();
    let groups: Vec<&str> = text.split(['.', ' ']).collect();
    let digits = |g: &str| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit());
    let grouped = match groups.as_slice() {
        [one] => digits(one),
        [first, rest @ ..] => {
            digits(first) && first.len() <= 3 && rest.iter().all(|g| g.len() == 3 && digits(g))
        }
        [] => false,
    };
    if !grouped {
        return Err(bad());
    }
    groups.concat().parse::<i64>().map_err(|_| bad())
}

/// A form's optional text: trimmed, and empty is none.
pub fn optional(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// [`parse_rupiah`] with a sign in front (`-25.000`, `+1.500`): an adjustment.
pub fn parse_signed_rupiah(field: &'static str, text: &str) -> Result<i64, GatewayError> {
    let text = text.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = parse_rupiah(field, rest)?;
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rupiah_groups_thousands_with_dots() {
        assert_eq!(rupiah(0), "Rp 0");
        assert_eq!(rupiah(999), "Rp 999");
        assert_eq!(rupiah(25_000), "Rp 25.000");
        assert_eq!(rupiah(1_250_000), "Rp 1.250.000");
        assert_eq!(rupiah(-1_500), "-Rp 1.500");
        assert_eq!(rupiah(i64::MIN), "-Rp 9.223.372.036.854.775.808");
    }

    #[test]
    fn times_are_shown_in_jakarta() {
        let at = time::macros::datetime!(2026-12-04 23:59 UTC);
        assert_eq!(jakarta(at, Lang::Id), "5 Des 2026 06:59 WIB");
        assert_eq!(jakarta(at, Lang::En), "5 Dec 2026 06:59 WIB");
    }

    #[test]
    fn a_datetime_local_value_is_jakarta_time_both_ways() {
        let at = time::macros::datetime!(2026-12-04 23:59 UTC);
        assert_eq!(jakarta_local(at), "2026-12-05T06:59");
        assert_eq!(parse_jakarta_local("2026-12-05T06:59").unwrap(), Some(at));
        assert_eq!(
            parse_jakarta_local("2026-12-05T06:59:30").unwrap(),
            Some(at + time::Duration::seconds(30))
        );
        assert_eq!(parse_jakarta_local("  ").unwrap(), None);
        assert!(parse_jakarta_local("5 Des 2026").is_err());
    }

    proptest::proptest! {
        /// A form's money and time fields are whatever the browser posts: an error or a
        /// value, never a panic.
        #[test]
        fn form_fields_never_panic(text in proptest::prop_oneof!["[0-9Rrp .,+-]{0,30}", "\\PC{0,30}"]) {
            let _ = parse_rupiah("amount", &text);
            let _ = parse_signed_rupiah("amount", &text);
            let _ = parse_jakarta_local(&text);
        }

        /// What the console writes (`Rp 1.250.000`, `-Rp 1.500`) reads back, for every i64
        /// but `i64::MIN`, whose size has no positive i64: that one is an error.
        #[test]
        fn written_amounts_read_back(amount in proptest::prelude::any::<i64>()) {
            let read = parse_signed_rupiah("amount", &rupiah(amount));
            if amount == i64::MIN {
                proptest::prop_assert!(read.is_err());
            } else {
                proptest::prop_assert_eq!(read.ok(), Some(amount));
                proptest::prop_assert_eq!(parse_rupiah("amount", &amount.unsigned_abs().to_string()).ok(), Some(amount.abs()));
            }
        }

        #[test]
        fn datetime_local_values_read_back(seconds in -2_000_000_000i64..=250_000_000_000) {
            let at = OffsetDateTime::from_unix_timestamp(seconds - seconds.rem_euclid(60)).unwrap();
            proptest::prop_assert_eq!(parse_jakarta_local(&jakarta_local(at)).ok(), Some(Some(at)));
        }
    }
}
