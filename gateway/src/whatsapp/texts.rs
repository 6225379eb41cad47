//! The notifications Gema sends and their built-in texts in Bahasa Indonesia. A merchant may
//! replace a kind's text with its own; a text may use only the placeholders its kind fills
//! in ([`Kind::placeholders`]), checked when it is saved.

use serde::Serialize;

/// Declares a text-backed enum with `as_str`, `parse` and `ALL`.
macro_rules! string_kind {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

string_kind!(
    /// What a message is for.
    Kind {
        /// A bill reminder, the day before the due date (bulk pacing).
        Reminder = "reminder",
        /// A customer was isolated for not paying.
        Isolation = "isolation",
        /// An invoice was paid; sent even to numbers that opted out.
        Receipt = "receipt",
        /// A settlement batch was paid out to the merchant.
        Payout = "payout",
        /// A soundbox has been offline for too long during opening hours.
        DeviceOffline = "device_offline",
        /// It is back.
        DeviceOnline = "device_online",
        BatteryLow = "battery_low",
        BatteryOk = "battery_ok",
        /// The day's payments, to the merchant.
        DailySummary = "daily_summary",
        /// A message a merchant's staff wrote to one customer.
        Manual = "manual",
        /// A message a merchant's staff wrote to many customers (bulk pacing).
        Bulk = "bulk",
    }
);

impl Kind {
    /// The placeholders the kind fills in, in the order a registered template's parameters
    /// take them by default.
    pub fn placeholders(self) -> &'static [&'static str] {
        match self {
            Kind::Reminder => &[
                "customer",
                "business",
                "package",
                "period",
                "amount",
                "due_date",
                "bank_details",
                "payment_link",
            ],
            Kind::Isolation => &["customer", "business", "package", "amount", "period"],
            Kind::Receipt => &[
                "customer",
                "business",
                "period",
                "amount",
                "paid_at",
                "receipt_url",
            ],
            Kind::Payout => &[
                "merchant",
                "batch",
                "amount",
                "period",
                "paid_at",
                "reference",
            ],
            Kind::DeviceOffline => &["merchant", "device", "since"],
            Kind::DeviceOnline => &["merchant", "device", "downtime"],
            Kind::BatteryLow | Kind::BatteryOk => &["merchant", "device", "battery"],
            Kind::DailySummary => &["merchant", "date", "count", "total"],
            Kind::Manual | Kind::Bulk => &["text"],
        }
    }

    /// Sent with the bulk spreading.
    pub fn is_bulk(self) -> bool {
        matches!(self, Kind::Reminder | Kind::Bulk)
    }

    /// Sent even to a number that opted out (the customer paid; the receipt is theirs).
    pub fn ignores_opt_out(self) -> bool {
        matches!(self, Kind::Receipt)
    }

    /// The built-in text.
    pub fn default_text(self) -> &'static str {
        match self {
            Kind::Reminder => {
                "Halo {customer},\n\nIni pengingat tagihan {business}: paket {package} periode \
                 {period} sebesar {amount}, jatuh tempo {due_date}.\n\nPembayaran: \
                 {bank_details}\n{payment_link}\n\nTerima kasih."
            }
            Kind::Isolation => {
                "Halo {customer},\n\nLayanan {package} Anda di {business} kami isolir karena \
                 tagihan periode {period} sebesar {amount} belum dibayar. Layanan aktif kembali \
                 setelah pembayaran diterima."
            }
            Kind::Receipt => {
                "Terima kasih {customer}, pembayaran {business} periode {period} sebesar \
                 {amount} telah kami terima pada {paid_at}.\nBukti pembayaran: {receipt_url}"
            }
            Kind::Payout => {
                "Halo {merchant}, dana settlement {batch} sebesar {amount} (periode {period}) \
                 telah ditransfer pada {paid_at}. Referensi: {reference}."
            }
            Kind::DeviceOffline => {
                "Halo {merchant}, soundbox {device} offline sejak {since}. Periksa daya dan \
                 koneksinya agar pembayaran tetap terdengar."
            }
            Kind::DeviceOnline => {
                "Halo {merchant}, soundbox {device} sudah online kembali (offline {downtime})."
            }
            Kind::BatteryLow => {
                "Halo {merchant}, baterai soundbox {device} tinggal {battery}. Mohon segera \
                 diisi daya."
            }
            Kind::BatteryOk => "Halo {merchant}, baterai soundbox {device} sudah {battery}.",
            Kind::DailySummary => {
                "Halo {merchant}, ringkasan {date}: {count} pembayaran QRIS diterima, total \
                 {total}."
            }
            Kind::Manual | Kind::Bulk => "{text}",
        }
    }
}
