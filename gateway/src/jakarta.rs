//! Asia/Jakarta time and rupiah as people read them: the offset, ISO dates, Indonesian
//! month names, `Rp 25.000`. Imports nothing of the crate, so every area (billing,
//! settlement, WhatsApp) can use it without importing another.

use time::{Date, UtcOffset};

/// Asia/Jakarta: UTC+7 all year.
pub const JAKARTA: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

/// `YYYY-MM-DD`.
pub fn iso_date(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

const MONTHS: [&str; 12] = [
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
];

/// Integer rupiah with dots between thousands: `Rp 25.000`, `-Rp 1.500`.
pub fn rupiah(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(c);
    }
    if amount < 0 {
        format!("-Rp {grouped}")
    } else {
        format!("Rp {grouped}")
    }
}

/// `2026-12` → `Desember 2026`; anything else as it is.
pub fn period_label(period: &str) -> String {
    let month = period
        .split_once('-')
        .and_then(|(year, month)| Some((year, month.parse::<usize>().ok()?)))
        .filter(|(_, m)| (1..=12).contains(m));
    match month {
        Some((year, month)) => format!("{} {year}", MONTHS[month - 1]),
        None => period.to_owned(),
    }
}

/// `5 Desember 2026`: a calendar date.
pub fn date_label(date: time::Date) -> String {
    format!(
        "{} {} {}",
        date.day(),
        MONTHS[usize::from(u8::from(date.month())) - 1],
        date.year()
    )
}

/// `3 Desember 2026 14:05 WIB`: an instant in Asia/Jakarta.
pub fn jakarta_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(JAKARTA);
    format!(
        "{} {} {} {:02}:{:02} WIB",
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute()
    )
}
