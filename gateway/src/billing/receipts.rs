//! Receipts and merchants' billing settings: the public receipt page's data, logos, receipt fields.
//!
//! The settings' isolation webhook secret is write-only: nothing here returns it, and its
//! `Debug` is redacted (`SecretChange`). A logo is accepted only when its bytes are the
//! image its content type names: a PNG signature and a sane IHDR, or a JPEG SOI and a
//! frame header (SOF) with its dimensions, within `logo_max_bytes` and
//! [`LOGO_MAX_SIDE`] pixels a side. [`logo_dimensions`] reads untrusted bytes and never
//! panics (a property test feeds it arbitrary bytes).
//!
//! A receipt is shown only for a paid invoice, found by its token through the unique index;
//! an unknown token and an unpaid invoice are the same `None`. Its texts are made here
//! (Indonesian month names, `Rp 25.000`, the paid time in Asia/Jakarta); escaping them is
//! the page's business.

use gema_store::{
    BillingLogo, BillingMerchantSettings, NewBillingSettings, ReceiptRecord, SecretChange,
};

use super::Billing;
pub use crate::jakarta::{date_label, jakarta_time, period_label, rupiah};
use crate::{GatewayError, GatewayResult};

/// The largest width or height of a logo, in pixels.
pub const LOGO_MAX_SIDE: u32 = 4096;

/// An accepted logo image type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoFormat {
    Png,
    Jpeg,
}

impl LogoFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            LogoFormat::Png => "image/png",
            LogoFormat::Jpeg => "image/jpeg",
        }
    }

    fn from_content_type(content_type: &str) -> Option<LogoFormat> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "image/png" => Some(LogoFormat::Png),
            "image/jpeg" => Some(LogoFormat::Jpeg),
            _ => None,
        }
    }
}

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// The format and dimensions of a PNG or JPEG image, read from its header; `Err` says why
/// the bytes are not one. Reads untrusted bytes: never panics, never loops past the end.
pub fn logo_dimensions(bytes: &[u8]) -> Result<(LogoFormat, u32, u32), &'static str> {
    if bytes.starts_with(PNG_SIGNATURE) {
        png_dimensions(bytes).map(|(w, h)| (LogoFormat::Png, w, h))
    } else if bytes.starts_with(&[0xFF, 0xD8]) {
        jpeg_dimensions(bytes).map(|(w, h)| (LogoFormat::Jpeg, w, h))
    } else {
        Err("is neither a PNG nor a JPEG image")
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// The signature, then the first chunk: IHDR, 13 bytes (width, height, bit depth, colour
/// type, compression, filter, interlace), with valid values.
fn png_dimensions(bytes: &[u8]) -> Result<(u32, u32), &'static str> {
    const BAD: &str = "is not a valid PNG image (no valid IHDR header)";
    let length = be_u32(bytes, 8).ok_or(BAD)?;
    if length != 13 || bytes.get(12..16) != Some(b"IHDR") {
        return Err(BAD);
    }
    let width = be_u32(bytes, 16).ok_or(BAD)?;
    let height = be_u32(bytes, 20).ok_or(BAD)?;
    let header = bytes.get(24..29).ok_or(BAD)?;
    let (depth, colour) = (header[0], header[1]);
    let depth_ok = match colour {
        0 => matches!(depth, 1 | 2 | 4 | 8 | 16),
        3 => matches!(depth, 1 | 2 | 4 | 8),
        2 | 4 | 6 => matches!(depth, 8 | 16),
        _ => false,
    };
    if !depth_ok || header[2] != 0 || header[3] != 0 || header[4] > 1 {
        return Err(BAD);
    }
    // The IHDR's CRC must follow it.
    be_u32(bytes, 29).ok_or(BAD)?;
    Ok((width, height))
}

/// Walks the marker segments after SOI to the first start-of-frame (SOF0–SOF15 but DHT,
/// JPG and DAC), whose header holds the height and width.
fn jpeg_dimensions(bytes: &[u8]) -> Result<(u32, u32), &'static str> {
    const BAD: &str = "is not a valid JPEG image (no frame header)";
    let mut at = 2usize;
    loop {
        // Fill bytes (0xFF) may precede a marker.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if bytes.get(at) != Some(&0xFF) {
            return Err(BAD);
        }
        let marker = *bytes.get(at + 1).ok_or(BAD)?;
        at += 2;
        match marker {
            // Markers without a length: TEM, RSTn.
            0x01 | 0xD0..=0xD7 => continue,
            // Start of scan or end of image before any frame header.
            0xDA | 0xD9 => return Err(BAD),
            _ => {}
        }
        let length = usize::from(be_u16(bytes, at).ok_or(BAD)?);
        if length < 2 {
            return Err(BAD);
        }
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            // Length, precision, height, width, components.
            if length < 8 {
                return Err(BAD);
            }
            let height = be_u16(bytes, at + 3).ok_or(BAD)?;
            let width = be_u16(bytes, at + 5).ok_or(BAD)?;
            return Ok((u32::from(width), u32::from(height)));
        }
        at = at.checked_add(length).ok_or(BAD)?;
    }
}

/// Checks a logo upload: its size, that its bytes are the image its content type says,
/// and that its dimensions are sane. Every refusal names `logo`.
pub fn check_logo(content_type: &str, bytes: &[u8], max_bytes: usize) -> GatewayResult<LogoFormat> {
    let declared = LogoFormat::from_content_type(content_type)
        .ok_or_else(|| GatewayError::invalid("logo", "send it as image/png or image/jpeg"))?;
    if bytes.is_empty() {
        return Err(GatewayError::invalid("logo", "is empty"));
    }
    if bytes.len() > max_bytes {
        return Err(GatewayError::invalid(
            "logo",
            format!("is {} bytes; the limit is {max_bytes}", bytes.len()),
        ));
    }
    let (format, width, height) =
        logo_dimensions(bytes).map_err(|why| GatewayError::invalid("logo", why))?;
    if format != declared {
        return Err(GatewayError::invalid(
            "logo",
            format!(
                "is a {} image sent as {}",
                format.content_type(),
                declared.content_type()
            ),
        ));
    }
    if width == 0 || height == 0 || width > LOGO_MAX_SIDE || height > LOGO_MAX_SIDE {
        return Err(GatewayError::invalid(
            "logo",
            format!("is {width}×{height} pixels; each side must be 1 to {LOGO_MAX_SIDE}"),
        ));
    }
    Ok(format)
}

/// Whether `url` may receive isolation webhooks: `https://`, or `http://` to a loopback or
/// private address (a test server, the merchant's own network). No credentials, no spaces.
pub fn check_webhook_url(url: &str) -> GatewayResult<()> {
    let bad = |why: &str| Err(GatewayError::invalid("isolation_webhook_url", why));
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("is not a URL (too long, or spaces or control characters)");
    }
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return bad("must start with https:// (or http:// to a private address)");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return bad("must not carry credentials; the webhook is signed with the secret");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => return bad("has an unclosed [IPv6] host"),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
    {
        return bad("has no valid host");
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return bad("has an invalid port");
    }
    if !https && !private_host(host) {
        return bad("http:// is only for loopback or private addresses; use https://");
    }
    Ok(())
}

fn private_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private(),
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00,
        Err(_) => false,
    }
}

fn check_text(field: &'static str, value: &Option<String>, max: usize) -> GatewayResult<()> {
    if let Some(value) = value {
        if value.chars().count() > max {
            return Err(GatewayError::invalid(
                field,
                format!("is at most {max} characters"),
            ));
        }
        if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r')
        {
            return Err(GatewayError::invalid(field, "has control characters"));
        }
    }
    Ok(())
}

/// Checks a settings write; blank texts become unset.
pub fn check_settings(mut settings: NewBillingSettings) -> GatewayResult<NewBillingSettings> {
    let blank_to_none =
        |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    settings.business_name = blank_to_none(settings.business_name);
    settings.bank_details = blank_to_none(settings.bank_details);
    settings.isolation_webhook_url = blank_to_none(settings.isolation_webhook_url);
    check_text("business_name", &settings.business_name, 120)?;
    check_text("bank_details", &settings.bank_details, 500)?;
    if let Some(days) = settings.auto_isolate_days
        && !(1..=365).contains(&days)
    {
        return Err(GatewayError::invalid(
            "auto_isolate_days",
            "is 1 to 365 days, or null for never",
        ));
    }
    if let Some(url) = &settings.isolation_webhook_url {
        check_webhook_url(url)?;
    }
    if let SecretChange::Set(secret) = &settings.isolation_webhook_secret
        && !(16..=256).contains(&secret.len())
    {
        return Err(GatewayError::invalid(
            "isolation_webhook_secret",
            "is 16 to 256 bytes",
        ));
    }
    Ok(settings)
}

/// A receipt as shown: every text made, the hidden fields `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub invoice_id: String,
    /// The merchant's business name (its registry name when it set none).
    pub business_name: String,
    pub has_logo: bool,
    pub customer_name: String,
    pub nik: Option<String>,
    /// The seed's "area": the merchant's business name.
    pub area: Option<String>,
    pub package: Option<String>,
    /// `Rp 5.000`.
    pub discount: Option<String>,
    /// `Tunai`, `Transfer`, `QRIS`.
    pub method: Option<String>,
    /// `Desember 2026 (pra-bayar)`.
    pub period: String,
    /// `Rp 25.000`.
    pub total: String,
    /// `3 Desember 2026 14:05 WIB`.
    pub paid_at: String,
}

fn method_label(method: &str) -> String {
    match method {
        "cash" => "Tunai".into(),
        "transfer" => "Transfer".into(),
        "qris" => "QRIS".into(),
        other => other.to_owned(),
    }
}

impl From<ReceiptRecord> for Receipt {
    fn from(r: ReceiptRecord) -> Self {
        let business_name = r.business_name.unwrap_or(r.merchant_name);
        Receipt {
            invoice_id: r.invoice_id,
            has_logo: r.has_logo,
            customer_name: r.customer_name,
            nik: r.nik.filter(|_| r.show_nik),
            area: r.show_area.then(|| business_name.clone()),
            package: r.show_package.then_some(r.package_name),
            discount: r.show_discount.then(|| rupiah(r.discount)),
            method: r
                .payment_method
                .filter(|_| r.show_method)
                .map(|m| method_label(&m)),
            period: format!("{} (pra-bayar)", period_label(&r.period)),
            total: rupiah(r.total_amount),
            paid_at: r.paid_at.map(jakarta_time).unwrap_or_default(),
            business_name,
        }
    }
}

impl Billing {
    /// A merchant's billing settings (the defaults when it set none).
    pub async fn merchant_settings(
        &self,
        merchant_id: &str,
    ) -> GatewayResult<BillingMerchantSettings> {
        Ok(self.store.billing_settings(merchant_id).await?)
    }

    #[tracing::instrument(skip_all, fields(merchant_id = %merchant_id))]
    pub async fn put_merchant_settings(
        &self,
        merchant_id: &str,
        settings: NewBillingSettings,
    ) -> GatewayResult<BillingMerchantSettings> {
        let settings = check_settings(settings)?;
        Ok(self
            .store
            .put_billing_settings(merchant_id, settings)
            .await?)
    }

    #[tracing::instrument(skip_all, fields(merchant_id = %merchant_id, bytes = bytes.len()))]
    pub async fn put_logo(
        &self,
        merchant_id: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> GatewayResult<BillingMerchantSettings> {
        let format = check_logo(content_type, &bytes, self.settings.logo_max_bytes)?;
        let logo = BillingLogo {
            content_type: format.content_type().to_owned(),
            bytes,
        };
        Ok(self.store.put_billing_logo(merchant_id, logo).await?)
    }

    /// `NotFound` (`logo`) when the merchant has none.
    pub async fn delete_logo(&self, merchant_id: &str) -> GatewayResult<()> {
        if self.store.delete_billing_logo(merchant_id).await? {
            Ok(())
        } else {
            Err(GatewayError::NotFound {
                entity: "logo",
                id: merchant_id.to_owned(),
            })
        }
    }

    pub async fn logo(&self, merchant_id: &str) -> GatewayResult<BillingLogo> {
        self.store
            .billing_logo(merchant_id)
            .await?
            .ok_or_else(|| GatewayError::NotFound {
                entity: "logo",
                id: merchant_id.to_owned(),
            })
    }

    /// The receipt of a paid invoice; `None` for an unknown token and an unpaid invoice
    /// alike.
    pub async fn receipt(&self, token: &str) -> GatewayResult<Option<Receipt>> {
        if !plausible_token(token) {
            return Ok(None);
        }
        Ok(self.store.receipt(token).await?.map(Receipt::from))
    }

    /// The logo on a paid invoice's receipt.
    pub async fn receipt_logo(&self, token: &str) -> GatewayResult<Option<BillingLogo>> {
        if !plausible_token(token) {
            return Ok(None);
        }
        Ok(self.store.receipt_logo(token).await?)
    }
}

/// A token worth a lookup: short and URL-safe (every real one is); anything else is
/// answered like an unknown one without touching the database.
pub(super) fn plausible_token(token: &str) -> bool {
    (1..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A PNG's signature and IHDR (width × height, 8-bit RGBA), with a fake CRC.
    pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = PNG_SIGNATURE.to_vec();
        bytes.extend_from_slice(&13u32.to_be_bytes());
        bytes.extend_from_slice(b"IHDR");
        bytes.extend_from_slice(&width.to_be_bytes());
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&[8, 6, 0, 0, 0]);
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes
    }

    /// SOI, an APP0 segment, then SOF0 with the dimensions.
    fn jpeg(width: u16, height: u16) -> Vec<u8> {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46];
        bytes.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 0x08]);
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&width.to_be_bytes());
        bytes.extend_from_slice(&[0x01, 0x01, 0x11, 0x00]);
        bytes
    }

    #[test]
    fn png_and_jpeg_headers_give_their_dimensions() {
        assert_eq!(
            logo_dimensions(&png(120, 40)),
            Ok((LogoFormat::Png, 120, 40))
        );
        assert_eq!(
            logo_dimensions(&jpeg(300, 100)),
            Ok((LogoFormat::Jpeg, 300, 100))
        );
        assert!(logo_dimensions(b"GIF89a\x01\x00\x01\x00").is_err());
        assert!(logo_dimensions(&PNG_SIGNATURE[..]).is_err());
        assert!(logo_dimensions(&[0xFF, 0xD8, 0xFF, 0xD9]).is_err());
    }

    #[test]
    fn a_logo_must_be_what_its_content_type_says_and_sane() {
        let max = 1024;
        assert_eq!(
            check_logo("image/png", &png(10, 10), max).ok(),
            Some(LogoFormat::Png)
        );
        assert_eq!(
            check_logo("image/jpeg", &jpeg(10, 10), max).ok(),
            Some(LogoFormat::Jpeg)
        );
        for (content_type, bytes) in [
            ("image/jpeg", png(10, 10)),
            ("image/gif", png(10, 10)),
            ("image/png", png(0, 10)),
            ("image/png", png(10, 100_000)),
            ("image/png", vec![0; 2048]),
            ("image/png", Vec::new()),
        ] {
            match check_logo(content_type, &bytes, max) {
                Err(GatewayError::Invalid { field, .. }) => assert_eq!(field, "logo"),
                other => panic!("{content_type}: expected Invalid(logo), got {other:?}"),
            }
        }
    }

    #[test]
    fn rupiah_uses_dots_between_thousands() {
        assert_eq!(rupiah(0), "Rp 0");
        assert_eq!(rupiah(999), "Rp 999");
        assert_eq!(rupiah(25_000), "Rp 25.000");
        assert_eq!(rupiah(1_234_567), "Rp 1.234.567");
        assert_eq!(rupiah(-1_500), "-Rp 1.500");
        assert_eq!(rupiah(i64::MIN), "-Rp 9.223.372.036.854.775.808");
    }

    #[test]
    fn periods_are_indonesian_month_names() {
        assert_eq!(period_label("2026-12"), "Desember 2026");
        assert_eq!(period_label("2027-01"), "Januari 2027");
        assert_eq!(period_label("2027-13"), "2027-13");
    }

    #[test]
    fn webhook_urls_are_https_or_private_http() {
        for ok in [
            "https://isp.example/isolate",
            "http://127.0.0.1:8080/hook",
            "http://10.0.0.5/x",
            "http://[::1]:9000/",
            "http://localhost/hook",
        ] {
            assert!(check_webhook_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/hook",
            "ftp://10.0.0.1/",
            "https://user:pw@example.com/",
            "https:///nohost",
            "https://exa mple.com/",
            "https://example.com:99999/",
            "javascript:alert(1)",
        ] {
            assert!(check_webhook_url(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn the_logo_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = logo_dimensions(&bytes);
        }

        #[test]
        fn the_logo_decoder_never_panics_on_mangled_headers(
            tail in proptest::collection::vec(any::<u8>(), 0..256),
            jpeg_start in any::<bool>(),
        ) {
            let mut bytes = if jpeg_start { vec![0xFF, 0xD8] } else { PNG_SIGNATURE.to_vec() };
            bytes.extend_from_slice(&tail);
            let _ = logo_dimensions(&bytes);
        }
    }
}
