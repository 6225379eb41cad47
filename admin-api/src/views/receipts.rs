//! The public receipt page (`/r/{token}`): server-rendered HTML, printable on A4 and on
//! 58 mm thermal paper, and the one "not found" page an unknown token and an unpaid
//! invoice share; and an unpaid invoice's pay page (`/p/{token}`, its QRIS as an inline SVG).
//!
//! Hand-written rather than a template crate: the page is one small fixed layout, and
//! every value goes through [`escape`] (text and attribute context alike: `&`, `<`, `>`,
//! `"`, `'`), so no value, a customer's name included, can open a tag or an attribute. No
//! script and no inline style: the strict CSP (`default-src 'none'`) allows only the
//! stylesheets and the logo served beside the page.

use gema_gateway::billing::UnpaidInvoice;

use super::html::escape;
use gema_gateway::billing::receipts::Receipt;

/// The page's Content-Security-Policy: nothing but our stylesheets and the logo.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The stylesheet of every receipt: screen and A4 print.
pub const RECEIPT_CSS: &str = r#"body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111;background:#f4f4f5;margin:0;padding:24px}
main{max-width:560px;margin:0 auto;background:#fff;border:1px solid #ddd;border-radius:8px;padding:24px}
header{text-align:center;border-bottom:1px dashed #999;padding-bottom:12px;margin-bottom:12px}
header img{max-width:160px;max-height:80px}
h1{font-size:1.3em;margin:8px 0 0}
h2{font-size:1em;font-weight:normal;margin:4px 0 0;color:#555}
dl{display:grid;grid-template-columns:auto 1fr;gap:6px 16px;margin:0}
dt{color:#555}
dd{margin:0;text-align:right;font-weight:600}
dd.total{font-size:1.2em}
footer{margin-top:16px;border-top:1px dashed #999;padding-top:12px;text-align:center;color:#555;font-size:.9em}
.qris{text-align:center;margin:16px 0 0}
.qris svg{width:100%;max-width:300px;height:auto;border:1px solid #ddd}
.qris p{margin:6px 0;color:#555}
.bank{margin-top:16px;white-space:pre-line}
.status{display:inline-block;margin-top:8px;padding:2px 10px;border:2px solid #15803d;color:#15803d;border-radius:4px;font-weight:700;letter-spacing:.1em}
@page{size:A4;margin:15mm}
@media print{body{background:#fff;padding:0}main{border:0;max-width:none}}
"#;

/// Added for `?format=thermal`: a 58 mm roll (about 48 mm printable), small type.
pub const THERMAL_CSS: &str = r#"body{padding:0;background:#fff;font-size:11px}
main{max-width:48mm;border:0;border-radius:0;padding:2mm}
header img{max-width:40mm;max-height:20mm}
dl{grid-template-columns:1fr;gap:0}
dd{text-align:left;margin-bottom:3px}
@page{size:58mm auto;margin:2mm 5mm}
"#;

fn head(title: &str, thermal: bool) -> String {
    let thermal = if thermal {
        "\n<link rel=\"stylesheet\" href=\"/r/thermal.css\">"
    } else {
        ""
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"id\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{}</title>\n\
         <link rel=\"stylesheet\" href=\"/r/receipt.css\">{thermal}\n</head>\n",
        escape(title)
    )
}

/// The receipt page. `token` is the path's token (already matched to this receipt), for
/// the logo's address.
pub fn receipt_page(receipt: &Receipt, token: &str, thermal: bool) -> String {
    let mut rows: Vec<(&str, String, bool)> = vec![("Nama", receipt.customer_name.clone(), false)];
    if let Some(nik) = &receipt.nik {
        rows.push(("NIK", nik.clone(), false));
    }
    if let Some(area) = &receipt.area {
        rows.push(("Area", area.clone(), false));
    }
    if let Some(package) = &receipt.package {
        rows.push(("Paket", package.clone(), false));
    }
    rows.push(("Periode", receipt.period.clone(), false));
    if let Some(discount) = &receipt.discount {
        rows.push(("Diskon", discount.clone(), false));
    }
    rows.push(("Total Bayar", receipt.total.clone(), true));
    if let Some(method) = &receipt.method {
        rows.push(("Metode", method.clone(), false));
    }
    rows.push(("Tanggal Bayar", receipt.paid_at.clone(), false));

    let mut html = head(
        &format!("Nota Pembayaran - {}", receipt.business_name),
        thermal,
    );
    html.push_str("<body>\n<main>\n<header>\n");
    if receipt.has_logo {
        html.push_str(&format!(
            "<img src=\"/r/{}/logo\" alt=\"{}\">\n",
            escape(token),
            escape(&receipt.business_name)
        ));
    }
    html.push_str(&format!(
        "<h1>{}</h1>\n<h2>Nota Pembayaran</h2>\n<div class=\"status\">LUNAS</div>\n</header>\n<dl>\n",
        escape(&receipt.business_name)
    ));
    for (label, value, total) in rows {
        let class = if total { " class=\"total\"" } else { "" };
        html.push_str(&format!(
            "<dt>{}</dt><dd{class}>{}</dd>\n",
            escape(label),
            escape(&value)
        ));
    }
    html.push_str(&format!(
        "</dl>\n<footer>No. {}<br>Terima kasih</footer>\n</main>\n</body>\n</html>\n",
        escape(&receipt.invoice_id)
    ));
    html
}

/// An unpaid invoice's pay page: the bill, its QRIS when the merchant takes QRIS, the
/// merchant's bank details when it set them.
pub fn pay_page(invoice: &UnpaidInvoice) -> String {
    let rows = [
        ("Nama", &invoice.customer_name, false),
        ("Paket", &invoice.package, false),
        ("Periode", &invoice.period, false),
        ("Jatuh Tempo", &invoice.due_date, false),
        ("Total Tagihan", &invoice.total, true),
    ];
    let mut html = head(&format!("Tagihan - {}", invoice.business_name), false);
    html.push_str(&format!(
        "<body>\n<main>\n<header>\n<h1>{}</h1>\n<h2>Tagihan</h2>\n</header>\n<dl>\n",
        escape(&invoice.business_name)
    ));
    for (label, value, total) in rows {
        let class = if total { " class=\"total\"" } else { "" };
        html.push_str(&format!(
            "<dt>{}</dt><dd{class}>{}</dd>\n",
            escape(label),
            escape(value)
        ));
    }
    html.push_str("</dl>\n");
    let code = invoice.qris.as_ref().and_then(|qris| {
        super::qr::svg(&qris.payload, &format!("QRIS {}", invoice.total)).map(|svg| (qris, svg))
    });
    match code {
        Some((qris, svg)) => html.push_str(&format!(
            "<section class=\"qris\">\n{svg}\n<p>Pindai dengan aplikasi bank atau dompet \
             digital yang mendukung QRIS. Nominal sudah terisi.</p>\n\
             <p>Berlaku sampai {}</p>\n</section>\n",
            escape(&qris.expires_at)
        )),
        None => html.push_str(&format!(
            "<p class=\"qris\">Pembayaran QRIS belum tersedia. Hubungi {}.</p>\n",
            escape(&invoice.business_name)
        )),
    }
    if let Some(bank) = &invoice.bank_details {
        html.push_str(&format!(
            "<p class=\"bank\">Transfer: {}</p>\n",
            escape(bank)
        ));
    }
    html.push_str(
        "<footer>Setelah pembayaran diterima, halaman ini menjadi nota pembayaran.</footer>\n\
         </main>\n</body>\n</html>\n",
    );
    html
}

/// The one page for an unknown token and an unpaid invoice alike.
pub fn not_found_page() -> String {
    let mut html = head("Nota tidak ditemukan", false);
    html.push_str(
        "<body>\n<main>\n<header><h1>Nota tidak ditemukan</h1></header>\n\
         <p>Nota pembayaran ini tidak ada. Periksa kembali tautan yang Anda terima.</p>\n\
         </main>\n</body>\n</html>\n",
    );
    html
}
