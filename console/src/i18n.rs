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
    ("nav.users", "Pengguna", "Users"),
    ("nav.tokens", "Token API", "API tokens"),
    ("users.title", "Pengguna dan peran", "Users and roles"),
    ("users.create_hint", "Pengguna baru dibuat lewat CLI (gema admin create-user) atau API.", "New users are made with the CLI (gema admin create-user) or the API."),
    ("users.name", "Nama", "Name"),
    ("users.role", "Peran", "Role"),
    ("users.merchant", "Merchant", "Merchant"),
    ("users.state", "Keadaan", "State"),
    ("users.created", "Dibuat", "Created"),
    ("users.actions", "Tindakan", "Actions"),
    ("users.active", "Aktif", "Active"),
    ("users.disabled", "Dinonaktifkan", "Disabled"),
    ("users.disable", "Nonaktifkan", "Disable"),
    ("users.enable", "Aktifkan", "Enable"),
    ("tokens.title", "Token API", "API tokens"),
    ("tokens.create_hint", "Token baru dibuat lewat API; rahasianya ditampilkan sekali.", "New tokens are made through the API; the secret is shown once."),
    ("tokens.last_used", "Terakhir dipakai", "Last used"),
    ("tokens.revoked", "Dicabut", "Revoked"),
    ("tokens.revoke", "Cabut", "Revoke"),
    ("nav.receipt", "Pengaturan struk", "Receipt settings"),
    ("receipt.title", "Pengaturan struk dan tagihan", "Receipt and billing settings"),
    ("receipt.saved", "Pengaturan tersimpan.", "Settings saved."),
    ("receipt.business_name", "Nama usaha", "Business name"),
    ("receipt.bank_details", "Rekening untuk transfer (tampil di pengingat)", "Bank details for transfers (shown on reminders)"),
    ("receipt.fields", "Yang tampil di struk", "What a receipt shows"),
    ("receipt.nik", "NIK pelanggan", "Customer's NIK"),
    ("receipt.area", "Area", "Area"),
    ("receipt.package", "Paket", "Package"),
    ("receipt.discount", "Diskon", "Discount"),
    ("receipt.method", "Metode pembayaran", "Payment method"),
    ("receipt.isolate_days", "Isolir otomatis setelah jatuh tempo (hari; kosong: tidak pernah)", "Isolate automatically after the due date (days; empty: never)"),
    ("receipt.webhook", "URL webhook isolir", "Isolation webhook URL"),
    ("receipt.save", "Simpan", "Save"),
    ("receipt.logo", "Logo", "Logo"),
    ("receipt.no_logo", "Belum ada logo.", "No logo yet."),
    ("receipt.logo_file", "Berkas logo (PNG atau JPEG)", "Logo file (PNG or JPEG)"),
    ("receipt.upload", "Unggah logo", "Upload the logo"),
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
    ("nav.settlement", "Pencairan", "Payouts"),
    ("settlement.title", "Batch pencairan", "Settlement batches"),
    ("settlement.status", "Status", "Status"),
    ("settlement.status.pending", "Menunggu", "Pending"),
    ("settlement.status.paid", "Dibayar", "Paid"),
    ("settlement.status.failed", "Gagal", "Failed"),
    ("settlement.status.cancelled", "Dibatalkan", "Cancelled"),
    ("settlement.none", "Tidak ada batch.", "No batches."),
    ("settlement.batch", "Batch", "Batch"),
    ("settlement.back", "Kembali ke daftar batch", "Back to the batches"),
    ("settlement.merchant", "Merchant", "Merchant"),
    ("settlement.cutoff", "Batas waktu", "Cut-off"),
    ("settlement.items", "Item", "Items"),
    ("settlement.net", "Jumlah dibayarkan", "Payout"),
    ("settlement.payable", "Hak merchant", "Payables"),
    ("settlement.adjustments", "Penyesuaian", "Adjustments"),
    ("settlement.created", "Dibuat", "Created"),
    ("settlement.generate", "Buat batch", "Generate batches"),
    ("settlement.generate_help", "Mengumpulkan hak merchant yang belum masuk batch sampai batas waktu. Merchant tanpa rekening bank atau di bawah minimum dilewati.", "Collects payables not yet in a batch up to the cut-off. Merchants without a bank account or below their minimum are skipped."),
    ("settlement.cutoff_input", "Batas waktu (WIB; kosong = sekarang)", "Cut-off (WIB; empty = now)"),
    ("settlement.merchant_ids", "ID merchant, dipisah koma (kosong = semua)", "Merchant ids, separated by commas (empty = all)"),
    ("settlement.generate_submit", "Buat batch", "Generate"),
    ("settlement.generated", "Batch dibuat", "Batches made"),
    ("settlement.skipped", "merchant dilewati", "merchants skipped"),
    ("settlement.account", "Rekening tujuan", "Payee account"),
    ("settlement.bank", "Bank", "Bank"),
    ("settlement.reference", "Referensi transfer", "Transfer reference"),
    ("settlement.note", "Catatan", "Note"),
    ("settlement.note_optional", "Catatan (opsional)", "Note (optional)"),
    ("settlement.paid_amount", "Dibayar", "Paid"),
    ("settlement.reason", "Alasan", "Reason"),
    ("settlement.reprocessed", "Diproses ulang", "Reprocessed"),
    ("settlement.csv", "Unduh CSV", "Download CSV"),
    ("settlement.bank_csv", "Unduh file transfer bank", "Download bank transfer file"),
    ("settlement.mark_paid", "Tandai dibayar", "Mark paid"),
    ("settlement.mark_failed", "Tandai gagal", "Mark failed"),
    ("settlement.cancel", "Batalkan batch", "Cancel batch"),
    ("settlement.reprocess", "Proses ulang", "Reprocess"),
    ("settlement.reprocess_text", "Item batch ini akan bisa masuk batch baru lagi. Ini hanya bisa dilakukan sekali dan tidak dapat dibatalkan.", "This batch's items become batchable again. It can be done once and cannot be undone."),
    ("settlement.reprocess_confirm", "Ya, proses ulang", "Yes, reprocess"),
    ("settlement.no_items", "Batch ini tidak punya item.", "This batch has no items."),
    ("settlement.entry", "Entri buku besar", "Ledger entry"),
    ("settlement.entry_type", "Jenis", "Type"),
    ("settlement.transaction", "Transaksi", "Transaction"),
    ("settlement.amount", "Jumlah", "Amount"),
    ("settlement.by", "Oleh", "By"),
    ("settlement.history", "Riwayat", "History"),
    ("settlement.event", "Peristiwa", "Event"),
    ("settlement.detail", "Keterangan", "Detail"),
    ("settlement.done.paid", "Batch ditandai dibayar.", "The batch is marked paid."),
    ("settlement.done.failed", "Batch ditandai gagal.", "The batch is marked failed."),
    ("settlement.done.cancelled", "Batch dibatalkan.", "The batch is cancelled."),
    ("settlement.done.reprocessed", "Item batch bisa masuk batch baru lagi.", "The batch's items are batchable again."),
    ("action.cancel_back", "Kembali", "Go back"),
    ("nav.merchants", "Merchant", "Merchants"),
    ("merchants.title", "Merchant", "Merchants"),
    ("merchants.status", "Status", "Status"),
    ("merchants.status.pending", "Menunggu tinjauan", "Pending review"),
    ("merchants.status.approved", "Disetujui", "Approved"),
    ("merchants.status.rejected", "Ditolak", "Rejected"),
    ("merchants.status.suspended", "Ditangguhkan", "Suspended"),
    ("merchants.none", "Tidak ada merchant.", "No merchants."),
    ("merchants.name", "Nama", "Name"),
    ("merchants.contact", "Kontak", "Contact"),
    ("merchants.email", "Email", "E-mail"),
    ("merchants.phone", "Telepon", "Phone"),
    ("merchants.payouts", "Lihat batch pencairan", "See the payout batches"),
    ("merchants.approve", "Setujui merchant", "Approve merchant"),
    ("merchants.approve_text", "Merchant yang disetujui dapat menerima pembayaran QRIS.", "An approved merchant can take QRIS payments."),
    ("merchants.reject", "Tolak merchant", "Reject merchant"),
    ("merchants.suspend", "Tangguhkan merchant", "Suspend merchant"),
    ("merchants.outlets", "Outlet", "Outlets"),
    ("merchants.outlet", "Outlet", "Outlet"),
    ("merchants.no_outlets", "Belum ada outlet.", "No outlets yet."),
    ("merchants.address", "Alamat", "Address"),
    ("merchants.city", "Kota", "City"),
    ("merchants.terminals", "Terminal", "Terminals"),
    ("merchants.terminal", "Terminal", "Terminal"),
    ("merchants.no_terminals", "Belum ada terminal.", "No terminals yet."),
    ("merchants.payment_ref", "Referensi QR statis", "Static QR reference"),
    ("merchants.done.approved", "Merchant disetujui.", "The merchant is approved."),
    ("merchants.done.rejected", "Merchant ditolak.", "The merchant is rejected."),
    ("merchants.done.suspended", "Merchant ditangguhkan.", "The merchant is suspended."),
    ("nav.billing", "Tagihan", "Billing"),
    ("billing.customers", "Pelanggan", "Customers"),
    ("billing.search", "Cari nama atau telepon", "Search name or phone"),
    ("billing.status", "Status", "Status"),
    ("billing.status.active", "Aktif", "Active"),
    ("billing.status.isolated", "Terisolir", "Isolated"),
    ("billing.status.stopped", "Berhenti", "Stopped"),
    ("billing.none", "Tidak ada pelanggan.", "No customers."),
    ("billing.package", "Paket", "Package"),
    ("billing.billing_day", "Tanggal tagih", "Billing day"),
    ("billing.discount", "Diskon", "Discount"),
    ("billing.registered", "Terdaftar", "Registered"),
    ("billing.back", "Kembali ke pelanggan", "Back to the customers"),
    ("import.title", "Impor pelanggan dari CSV", "Import customers from CSV"),
    ("import.step1", "Langkah 1: periksa file", "Step 1: check the file"),
    ("import.another", "Periksa file lain", "Check another file"),
    ("import.help", "File CSV dengan baris judul; urutan kolom bebas, pemisah koma atau titik koma. Uji coba tidak menyimpan apa pun.", "A CSV file with a header line; columns in any order, separated by commas or semicolons. The dry run saves nothing."),
    ("import.file", "File CSV pelanggan", "Customer CSV file"),
    ("import.max", "maks.", "max."),
    ("import.all_or_nothing", "Semua atau tidak sama sekali: jangan impor apa pun jika ada baris yang salah", "All or nothing: import nothing if any row is invalid"),
    ("import.dry_run", "Uji coba", "Dry run"),
    ("import.dry_run_result", "Hasil uji coba", "Dry run result"),
    ("import.rows", "Baris", "Rows"),
    ("import.line", "Baris ke", "Line"),
    ("import.total", "Total per bulan", "Monthly total"),
    ("import.problems", "Masalah", "Problems"),
    ("import.status.valid", "Valid", "Valid"),
    ("import.status.invalid", "Tidak valid", "Invalid"),
    ("import.status.imported", "Diimpor", "Imported"),
    ("import.status.skipped", "Dilewati", "Skipped"),
    ("import.truncated", "Tabel hanya menampilkan 1.000 baris pertama; jumlah di atas mencakup seluruh file.", "The table shows the first 1,000 rows; the counts above cover the whole file."),
    ("import.confirm_valid", "Langkah 2: impor baris yang valid dari file yang sama. Baris yang tidak valid dilewati.", "Step 2: import the valid rows of the same file. Invalid rows are left out."),
    ("import.confirm_all", "Langkah 2: impor file yang sama. Jika ada baris yang tidak valid, tidak ada yang diimpor.", "Step 2: import the same file. If any row is invalid, nothing is imported."),
    ("import.submit", "Impor", "Import"),
    ("import.done", "Pelanggan diimpor", "Customers imported"),
    ("import.not_imported", "tidak diimpor", "not imported"),
    ("nav.audit", "Log audit", "Audit log"),
    ("audit.title", "Log audit", "Audit log"),
    ("audit.order", "Urut dari yang terlama. Kosongkan \"dari\" untuk melihat seluruh log.", "Oldest first. Clear \"from\" to see the whole log."),
    ("audit.from", "Dari (WIB)", "From (WIB)"),
    ("audit.to", "Sampai (WIB)", "Until (WIB)"),
    ("audit.actor", "Pelaku", "Actor"),
    ("audit.action", "Tindakan", "Action"),
    ("audit.target", "Sasaran", "Target"),
    ("audit.outcome", "Hasil", "Outcome"),
    ("audit.at", "Waktu", "Time"),
    ("audit.after", "Sesudah", "After"),
    ("audit.source", "Sumber", "Source"),
    ("audit.none", "Tidak ada entri.", "No entries."),
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
