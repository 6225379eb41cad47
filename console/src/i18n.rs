//! The console's two languages: Bahasa Indonesia (the default) and English, chosen by the
//! `gema_lang` cookie (set from the language links, `/preferences?lang=en`). Every text a
//! page shows is a key in [`TEXTS`]; a key without a line shows itself, which the tests
//! catch (`every_key_used_by_a_template_has_a_text`).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Id,
    En,
}

impl Lang {
    pub fn parse(value: &str) -> Option<Lang> {
        match value {
            "id" => Some(Lang::Id),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Id => "id",
            Lang::En => "en",
        }
    }

    /// The text of `key` in this language.
    pub fn t(self, key: &str) -> &'static str {
        match TEXTS.iter().find(|(k, _, _)| *k == key) {
            Some((_, id, en)) => match self {
                Lang::Id => id,
                Lang::En => en,
            },
            None => {
                tracing::warn!(key, "console text missing");
                "?"
            }
        }
    }
}

/// Key, Indonesian, English.
#[rustfmt::skip]
pub const TEXTS: &[(&str, &str, &str)] = &[
    ("app.name", "Gema", "Gema"),
    ("app.tagline", "Konsol soundbox QRIS", "QRIS soundbox console"),
    ("nav.overview", "Ringkasan", "Overview"),
    ("nav.devices", "Perangkat", "Devices"),
    ("nav.menu", "Menu", "Menu"),
    ("nav.skip", "Lewati ke konten", "Skip to content"),
    ("nav.logout", "Keluar", "Log out"),
    ("nav.language", "Bahasa", "Language"),
    ("nav.theme", "Tema", "Theme"),
    ("theme.auto", "Otomatis", "Automatic"),
    ("theme.light", "Terang", "Light"),
    ("theme.dark", "Gelap", "Dark"),
    ("login.title", "Masuk", "Log in"),
    ("login.email", "Email", "E-mail"),
    ("login.password", "Kata sandi", "Password"),
    ("login.code", "Kode autentikator (jika aktif)", "Authenticator code (if enabled)"),
    ("login.submit", "Masuk", "Log in"),
    ("login.expired", "Sesi Anda berakhir. Silakan masuk lagi.", "Your session has ended. Please log in again."),
    ("login.code_needed", "Masukkan kode dari aplikasi autentikator Anda.", "Enter the code from your authenticator app."),
    ("login.code_wrong", "Kode salah atau sudah dipakai.", "Wrong or already used code."),
    ("login.failed", "Email atau kata sandi salah.", "Wrong e-mail or password."),
    ("login.locked", "Terlalu banyak percobaan gagal. Coba lagi nanti.", "Too many failed attempts. Try again later."),
    ("login.form_expired", "Formulir kedaluwarsa. Silakan coba lagi.", "The form expired. Please try again."),
    ("overview.title", "Ringkasan", "Overview"),
    ("overview.fleet", "Armada perangkat", "Device fleet"),
    ("overview.payments_today", "Pembayaran hari ini", "Payments today"),
    ("overview.pending_announcements", "Pengumuman tertunda", "Pending announcements"),
    ("overview.pending_payout", "Pembayaran merchant tertunda", "Pending payout"),
    ("overview.unbatched", "Belum masuk batch", "Not yet in a batch"),
    ("overview.whatsapp_queue", "Antrean WhatsApp", "WhatsApp queue"),
    ("overview.nodes", "Node gateway", "Gateway nodes"),
    ("overview.as_of", "Angka per", "Figures as of"),
    ("overview.node", "Node", "Node"),
    ("overview.heartbeat", "Detak terakhir", "Last heartbeat"),
    ("overview.version", "Versi", "Version"),
    ("overview.this_node", "node ini", "this node"),
    ("overview.transactions", "transaksi", "transactions"),
    ("health.online", "Daring", "Online"),
    ("health.degraded", "Terganggu", "Degraded"),
    ("health.offline", "Luring", "Offline"),
    ("health.all", "Semua", "All"),
    ("node.running", "Berjalan", "Running"),
    ("node.stopped", "Berhenti", "Stopped"),
    ("node.unresponsive", "Tidak merespons", "Unresponsive"),
    ("devices.title", "Registri perangkat", "Device registry"),
    ("devices.filter", "Saring", "Filter"),
    ("devices.status", "Kesehatan", "Health"),
    ("devices.serial", "Nomor seri", "Serial"),
    ("devices.model", "Model", "Model"),
    ("devices.firmware", "Firmware", "Firmware"),
    ("devices.terminal", "Terminal", "Terminal"),
    ("devices.reasons", "Catatan", "Notes"),
    ("devices.none", "Tidak ada perangkat.", "No devices."),
    ("devices.unbound", "belum terikat", "not bound"),
    ("nav.whatsapp", "WhatsApp", "WhatsApp"),
    ("whatsapp.title", "Antrean dan log WhatsApp", "WhatsApp queue and log"),
    ("whatsapp.message", "Pesan WhatsApp", "WhatsApp message"),
    ("whatsapp.status", "Status", "Status"),
    ("whatsapp.none", "Tidak ada pesan.", "No messages."),
    ("whatsapp.created", "Dibuat", "Created"),
    ("whatsapp.recipient", "Penerima", "Recipient"),
    ("whatsapp.kind", "Jenis", "Kind"),
    ("whatsapp.attempts", "Percobaan", "Attempts"),
    ("whatsapp.error", "Galat terakhir", "Last error"),
    ("whatsapp.text", "Isi pesan", "Text"),
    ("whatsapp.retry", "Kirim ulang", "Retry"),
    ("whatsapp.cancel", "Batalkan", "Cancel"),
    ("whatsapp.log", "Riwayat status", "Status log"),
    ("whatsapp.at", "Waktu", "Time"),
    ("whatsapp.detail", "Keterangan", "Detail"),
    ("page.next", "Berikutnya", "Next"),
    ("page.first", "Halaman pertama", "First page"),
    ("error.forbidden", "Akses ditolak", "Access denied"),
    ("error.forbidden_text", "Peran Anda tidak diizinkan membuka halaman ini.", "Your role may not open this page."),
    ("error.not_found", "Tidak ditemukan", "Not found"),
    ("error.not_found_text", "Halaman atau data ini tidak ada.", "This page or record does not exist."),
    ("error.csrf_text", "Formulir ini tidak membawa token keamanan yang sah. Muat ulang halaman lalu coba lagi.", "This form did not carry a valid security token. Reload the page and try again."),
    ("error.internal", "Terjadi kesalahan", "Something went wrong"),
    ("error.internal_text", "Kesalahan ini sudah dicatat. Coba lagi sebentar lagi.", "The error has been logged. Try again shortly."),
    ("error.invalid", "Permintaan tidak valid", "Invalid request"),
    ("error.back", "Kembali ke ringkasan", "Back to the overview"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_both_languages_are_filled() {
        for (i, (key, id, en)) in TEXTS.iter().enumerate() {
            assert!(!id.is_empty() && !en.is_empty(), "{key} has an empty text");
            assert!(
                TEXTS[i + 1..].iter().all(|(k, _, _)| k != key),
                "{key} twice"
            );
        }
    }

    #[test]
    fn every_key_used_by_a_template_or_page_has_a_text() {
        let dirs = [
            concat!(env!("CARGO_MANIFEST_DIR"), "/templates"),
            concat!(env!("CARGO_MANIFEST_DIR"), "/src/pages"),
        ];
        let mut checked = 0;
        for dir in dirs {
            for entry in std::fs::read_dir(dir).expect("source folder") {
                let path = entry.expect("entry").path();
                let text = std::fs::read_to_string(&path).expect("readable");
                for (at, _) in text.match_indices(".t(\"") {
                    let rest = &text[at + 4..];
                    let key = &rest[..rest.find('"').expect("closed key")];
                    assert!(
                        TEXTS.iter().any(|(k, _, _)| *k == key),
                        "{} uses {key}, which has no text",
                        path.display()
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            checked > 20,
            "only {checked} keys found: is the pattern still right?"
        );
    }
}
