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
    ("nav.transactions", "Transaksi", "Transactions"),
    ("device.title", "Perangkat", "Device"),
    ("device.back", "← Registri perangkat", "← Device registry"),
    ("device.identity", "Identitas", "Identity"),
    ("device.status", "Status", "Status"),
    ("device.active", "Aktif", "Active"),
    ("device.disabled", "Dinonaktifkan", "Disabled"),
    ("device.credential", "Kredensial", "Credential"),
    ("device.credential_active", "Aktif", "Active"),
    ("device.revoked", "Dicabut", "Revoked"),
    ("device.issued", "diterbitkan", "issued"),
    ("device.last_auth", "Autentikasi terakhir", "Last authentication"),
    ("device.never", "belum pernah", "never"),
    ("device.registered", "Terdaftar", "Registered"),
    ("device.health", "Kesehatan dan kehadiran", "Health and presence"),
    ("device.score", "Skor", "Score"),
    ("device.connection", "Koneksi", "Connection"),
    ("device.connected", "Tersambung", "Connected"),
    ("device.disconnected", "Terputus", "Disconnected"),
    ("device.battery", "Baterai", "Battery"),
    ("device.charging", "mengisi daya", "charging"),
    ("device.signal", "Sinyal", "Signal"),
    ("device.network", "Jaringan", "Network"),
    ("device.heartbeats", "Riwayat detak", "Heartbeat history"),
    ("device.no_heartbeats", "Belum ada detak.", "No heartbeats yet."),
    ("device.chart_title", "Baterai dan sinyal per detak", "Battery and signal per heartbeat"),
    ("device.heartbeat_table", "Tampilkan sebagai tabel", "Show as a table"),
    ("device.time", "Waktu", "Time"),
    ("device.config", "Konfigurasi: diinginkan dan dilaporkan", "Config: desired and reported"),
    ("device.version", "Versi", "Version"),
    ("device.push", "Pengiriman", "Push"),
    ("device.setting", "Pengaturan", "Setting"),
    ("device.desired", "Diinginkan", "Desired"),
    ("device.reported", "Dilaporkan perangkat", "Reported by the device"),
    ("device.reported_at", "Dilaporkan", "Reported"),
    ("device.volume", "Volume", "Volume"),
    ("device.language", "Bahasa", "Language"),
    ("device.heartbeat_interval", "Interval detak", "Heartbeat interval"),
    ("device.qr_timeout", "Batas waktu QR", "QR timeout"),
    ("device.quiet_hours", "Jam tenang", "Quiet hours"),
    ("device.none", "tidak ada", "none"),
    ("device.push_again", "Kirim ulang konfigurasi", "Push the config again"),
    ("device.pushed", "Konfigurasi dikirim ulang.", "The config was pushed again."),
    ("device.commands", "Perintah (terlama dulu)", "Commands (oldest first)"),
    ("device.no_commands", "Belum ada perintah.", "No commands yet."),
    ("device.command", "Perintah", "Command"),
    ("device.attempts", "Percobaan", "Attempts"),
    ("device.completed", "Selesai", "Completed"),
    ("device.message", "Pesan", "Message"),
    ("device.trace", "Jejak pesan MQTT", "MQTT message trace"),
    ("device.trace_note", "Pesan terakhir perangkat ini di node ini, terbaru dulu (hilang saat restart).", "This device's last messages on this node, newest first (lost on restart)."),
    ("device.no_trace", "Belum ada pesan di node ini.", "No messages on this node yet."),
    ("device.direction", "Arah", "Direction"),
    ("device.topic", "Topik", "Topic"),
    ("device.bytes", "Bita", "Bytes"),
    ("device.outcome", "Hasil", "Outcome"),
    ("device.binding", "Pengikatan terminal", "Terminal binding"),
    ("device.bound_to", "Terikat ke terminal", "Bound to terminal"),
    ("device.kick", "Putuskan juga sesi MQTT perangkat", "Also end the device's MQTT session"),
    ("device.unbind", "Lepas ikatan", "Unbind"),
    ("device.terminal_id", "ID terminal", "Terminal id"),
    ("device.bind", "Ikat", "Bind"),
    ("device.bound", "Perangkat diikat ke terminal.", "The device is bound to the terminal."),
    ("device.unbound_done", "Ikatan perangkat dilepas.", "The device was unbound."),
    ("device.credentials", "Kredensial MQTT", "MQTT credentials"),
    ("device.rotate_note", "Rahasia baru hanya ditampilkan sekali; rahasia lama langsung tidak berlaku.", "The new secret is shown once only; the old one stops working at once."),
    ("device.rotate", "Putar rahasia", "Rotate the secret"),
    ("device.revoke", "Cabut rahasia", "Revoke the secret"),
    ("device.revoked_done", "Rahasia dicabut. Perangkat tidak dapat tersambung sampai rahasia baru diterbitkan.", "The secret was revoked. The device cannot connect until a new one is issued."),
    ("secret.title", "Rahasia perangkat baru", "New device secret"),
    ("secret.once", "Rahasia ini hanya ditampilkan sekali. Simpan atau pindai sekarang; halaman ini tidak dapat dibuka lagi.", "This secret is shown once only. Save or scan it now; this page cannot be opened again."),
    ("secret.username", "Nama pengguna MQTT", "MQTT username"),
    ("secret.secret", "Rahasia", "Secret"),
    ("secret.broker", "Broker", "Broker"),
    ("secret.scan", "Pindai dengan aplikasi teknisi untuk memasang kredensial ke perangkat.", "Scan with the technician app to load the credentials onto the device."),
    ("secret.qr_label", "Kode QR provisioning perangkat", "Device provisioning QR code"),
    ("secret.provisioning", "String provisioning", "Provisioning string"),
    ("secret.no_qr", "Tidak ada kode QR: sertifikat CA broker tidak terbaca.", "No QR code: the broker's CA certificate could not be read."),
    ("secret.done", "Selesai, kembali ke perangkat", "Done, back to the device"),
    ("revoke.title", "Cabut rahasia perangkat?", "Revoke the device's secret?"),
    ("revoke.text", "Perangkat akan terputus dan tidak dapat tersambung lagi sampai rahasianya diputar. Perangkat:", "The device is disconnected and cannot connect again until its secret is rotated. Device:"),
    ("revoke.confirm", "Ya, cabut rahasia", "Yes, revoke the secret"),
    ("revoke.cancel", "Batal", "Cancel"),
    ("sync.in_sync", "Sesuai", "In sync"),
    ("sync.pending", "Menunggu perangkat", "Waiting for the device"),
    ("sync.drift", "Berbeda", "Drift"),
    ("sync.unknown", "Belum diketahui", "Unknown"),
    ("command.queued", "Antre", "Queued"),
    ("command.sent", "Terkirim", "Sent"),
    ("command.acknowledged", "Diterima perangkat", "Acknowledged"),
    ("command.succeeded", "Berhasil", "Succeeded"),
    ("command.failed", "Gagal", "Failed"),
    ("command.timed_out", "Habis waktu", "Timed out"),
    ("command.expired", "Kedaluwarsa", "Expired"),
    ("txn.title", "Transaksi", "Transactions"),
    ("txn.one", "Transaksi", "Transaction"),
    ("txn.back", "← Semua transaksi", "← All transactions"),
    ("txn.status", "Status", "Status"),
    ("txn.created", "Dibuat", "Created"),
    ("txn.order_ref", "Referensi", "Reference"),
    ("txn.amount", "Jumlah", "Amount"),
    ("txn.paid_at", "Dibayar", "Paid"),
    ("txn.issuer", "Penerbit", "Issuer"),
    ("txn.merchant", "Merchant", "Merchant"),
    ("txn.source", "Sumber", "Source"),
    ("txn.expires", "Kedaluwarsa", "Expires"),
    ("txn.provider", "Penyedia", "Provider"),
    ("txn.updated", "Diperbarui", "Updated"),
    ("txn.none", "Tidak ada transaksi.", "No transactions."),
    ("txn.live_note", "Pembayaran baru muncul di atas tanpa memuat ulang.", "New payments appear at the top without a reload."),
    ("txn.pending", "Menunggu", "Pending"),
    ("txn.paid", "Dibayar", "Paid"),
    ("txn.refunded", "Dikembalikan", "Refunded"),
    ("txn.expired", "Kedaluwarsa", "Expired"),
    ("txn.failed", "Gagal", "Failed"),
    ("txn.paid_after_expiry", "dibayar setelah kedaluwarsa", "paid after expiry"),
    ("txn.timeline", "Linimasa kejadian", "Event timeline"),
    ("txn.no_events", "Belum ada kejadian.", "No events yet."),
    ("txn.announcements", "Pengumuman ke perangkat", "Announcements to the device"),
    ("txn.no_announcements", "Belum ada pengumuman.", "No announcements yet."),
    ("txn.delivered", "Tersampaikan", "Delivered"),
    ("txn.error", "Kesalahan", "Error"),
    ("txn.retry", "Ulangi notifikasi", "Retry the notification"),
    ("txn.retried", "Pengumuman baru diantrekan.", "A new announcement is queued."),
    ("announcement.pending", "Menunggu", "Pending"),
    ("announcement.delivered", "Tersampaikan", "Delivered"),
    ("announcement.failed", "Gagal", "Failed"),
    ("announcement.expired", "Kedaluwarsa", "Expired"),
    ("announcement.no_device", "Tanpa perangkat", "No device"),
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
