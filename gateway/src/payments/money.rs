//! Money as providers send it, parsed exactly into integer rupiah. No floats: `"100000.00"`
//! is read as a decimal string, and a fraction that is not zero is an error.

use std::fmt;

/// Why an amount is not a whole, positive number of rupiah.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountError(pub String);

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Largest amount accepted: far above any QRIS transaction (Bank Indonesia caps QRIS at
/// IDR 10,000,000 per transaction), far below `i64::MAX`, so sums of many never overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// Parses `"100000"`, `"100000."`, `"100000.00"` into whole rupiah. Rejects signs,
/// exponents, separators, empty parts, non-zero fractions, zero, and absurd sizes.
pub fn parse_rupiah(text: &str) -> Result<i64, AmountError> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AmountError(format!("{text:?} is not a decimal amount")));
    }
    if !fraction.bytes().all(|b| b == b'0') {
        return Err(AmountError(format!(
            "{text:?} has a fraction of a rupiah; amounts are whole rupiah"
        )));
    }
    let digits = whole.trim_start_matches('0');
    if digits.len() > 13 {
        return Err(AmountError(format!("{text:?} is too large")));
    }
    let value: i64 = if digits.is_empty() {
        0
    } else {
        digits
            .parse()
            .map_err(|_| AmountError(format!("{text:?} is not a decimal amount")))?
    };
    if value <= 0 {
        return Err(AmountError(format!("{text:?} is not a positive amount")));
    }
    if value > MAX_AMOUNT {
        return Err(AmountError(format!("{text:?} is too large")));
    }
    Ok(value)
}

/// A JSON number as whole rupiah, read from its exact text in the body (so `10000` and
/// `10000.0` both work; `10000.5`, `1e4` and `9999.99999999999999` do not), never through
/// floating point: a `serde_json::Number` holds a fraction as an `f64`, which rounds
/// `9999.99999999999999` to `10000.0`.
pub fn rupiah_from_json(raw: &serde_json::value::RawValue) -> Result<i64, AmountError> {
    let text = raw.get();
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(AmountError(format!("{text} is not a JSON number")));
    }
    parse_rupiah(text)
}

/// Platform fee in basis points, floored; the merchant payable is the rest, so
/// `fee + payable == gross` always.
pub fn split_fee(gross: i64, fee_bps: u32) -> (i64, i64) {
    let fee = i128::from(gross) * i128::from(fee_bps) / 10_000;
    let fee = i64::try_from(fee).unwrap_or(gross).clamp(0, gross);
    (fee, gross - fee)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_forms_providers_send() {
        assert_eq!(parse_rupiah("100000.00"), Ok(100_000));
        assert_eq!(parse_rupiah("100000."), Ok(100_000));
        assert_eq!(parse_rupiah("100000"), Ok(100_000));
        assert_eq!(parse_rupiah("0025000"), Ok(25_000));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            ".",
            ".00",
            "1.000,00",
            "1 000",
            "-5",
            "+5",
            "1e5",
            "100.50",
            "0",
            "0.00",
            "abc",
            "99999999999999999999",
            "١٠٠",
        ] {
            assert!(parse_rupiah(bad).is_err(), "{bad:?} was accepted");
        }
    }

    fn from_json(text: &str) -> Result<i64, AmountError> {
        let raw: Box<serde_json::value::RawValue> = serde_json::from_str(text).unwrap();
        rupiah_from_json(&raw)
    }

    #[test]
    fn json_numbers_go_through_their_text() {
        assert_eq!(from_json("10000"), Ok(10_000));
        assert_eq!(from_json("10000.0"), Ok(10_000));
        for bad in [
            "10000.5",
            "-1",
            "0",
            "1e3",
            "1E3",
            "\"10000\"",
            "null",
            "[1]",
            "{}",
        ] {
            assert!(from_json(bad).is_err(), "{bad} was accepted");
        }
    }

    /// As a `serde_json::Number` this was the `f64` 10000.0, so a fraction of a rupiah was
    /// accepted as 10,000; read from its text, it is a fraction.
    #[test]
    fn a_fraction_an_f64_rounds_away_is_still_a_fraction() {
        assert!(from_json("9999.99999999999999").is_err());
        assert!(from_json("10000.00000000000001").is_err());
        assert!(from_json("99999999999999999999").is_err());
    }

    #[test]
    fn fees_are_floored() {
        assert_eq!(split_fee(25_000, 70), (175, 24_825));
        assert_eq!(split_fee(999, 70), (6, 993));
        assert_eq!(split_fee(1, 70), (0, 1));
        assert_eq!(split_fee(10_000, 0), (0, 10_000));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in ".{0,40}") {
            let _ = parse_rupiah(&text);
        }

        /// Any JSON number's text: an error or the whole rupiah its text says.
        #[test]
        fn json_numbers_never_panic_and_are_exact(
            text in "-?[0-9]{1,22}(\\.[0-9]{0,20})?([eE][+-]?[0-9]{1,3})?",
        ) {
            if let Ok(raw) = serde_json::from_str::<Box<serde_json::value::RawValue>>(&text)
                && let Ok(amount) = rupiah_from_json(&raw)
            {
                prop_assert_eq!(Ok(amount), parse_rupiah(&text));
            }
        }

        #[test]
        fn whole_amounts_round_trip(amount in 1i64..=MAX_AMOUNT, zeros in 0usize..3) {
            let text = if zeros == 0 { amount.to_string() } else { format!("{amount}.{}", "0".repeat(zeros)) };
            prop_assert_eq!(parse_rupiah(&text), Ok(amount));
        }

        #[test]
        fn fee_and_payable_always_add_up(gross in 1i64..=MAX_AMOUNT, bps in 0u32..=10_000) {
            let (fee, payable) = split_fee(gross, bps);
            prop_assert_eq!(fee + payable, gross);
            prop_assert!(fee >= 0 && payable >= 0);
            prop_assert!(i128::from(fee) * 10_000 <= i128::from(gross) * i128::from(bps));
        }
    }
}
