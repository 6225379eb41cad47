//! What payment providers send, verified and normalised into one [`PaymentEvent`].
//!
//! Each provider function takes the exact bytes and headers of the request (signatures are
//! computed over exact bytes, never over re-serialised JSON) and either returns the event or
//! says why not: [`IngestError::Unauthorized`] (wrong or missing signature or token, stale
//! timestamp) or [`IngestError::Malformed`] (not the expected JSON). Parsing is lenient about
//! fields we do not use, since providers add fields over time, and strict about the ones we
//! do. Pure: no I/O, no clock except the `now` passed in.

use std::fmt;

use ring::{digest, hmac};
use serde::Deserialize;
use serde_json::value::RawValue;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::money::{AmountError, parse_rupiah, rupiah_from_json};
use crate::credentials::hex;

/// Who told us about a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Midtrans,
    Xendit,
    /// A backend of ours or a partner's, signing with HMAC-SHA256.
    Generic,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Midtrans => "midtrans",
            Provider::Xendit => "xendit",
            Provider::Generic => "generic",
        }
    }
}

/// What a provider says happened to a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStatus {
    Pending,
    Paid,
    /// Denied or cancelled: the payment did not happen.
    Failed,
    Expired,
    Refunded,
    /// A status this version does not know; recorded, never moves a transaction.
    Other(String),
}

impl EventStatus {
    pub fn as_str(&self) -> &str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Paid => "paid",
            EventStatus::Failed => "failed",
            EventStatus::Expired => "expired",
            EventStatus::Refunded => "refunded",
            EventStatus::Other(s) => s,
        }
    }
}

/// One provider event in our terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentEvent {
    pub provider: Provider,
    /// The provider's id for the payment; with `provider` and `status` it is the dedupe key.
    pub provider_transaction_id: String,
    /// Our order reference (or a terminal's static QR reference).
    pub order_ref: String,
    pub amount: i64,
    pub status: EventStatus,
    /// The provider's own status word, for the timeline.
    pub raw_status: String,
    /// The payer's app or bank (GoPay, DANA, …) when the provider says.
    pub issuer: Option<String>,
    pub paid_at: Option<OffsetDateTime>,
    /// A provider dashboard's test notification: answered 200 and recorded, nothing else.
    pub is_test: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestError {
    Unauthorized(String),
    Malformed {
        field: Option<String>,
        message: String,
    },
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IngestError::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            IngestError::Malformed {
                field: Some(field),
                message,
            } => write!(f, "malformed body at {field}: {message}"),
            IngestError::Malformed {
                field: None,
                message,
            } => {
                write!(f, "malformed body: {message}")
            }
        }
    }
}

fn malformed(field: &str, message: impl Into<String>) -> IngestError {
    IngestError::Malformed {
        field: Some(field.to_string()),
        message: message.into(),
    }
}

fn amount_error(field: &str) -> impl FnOnce(AmountError) -> IngestError + '_ {
    move |e| malformed(field, e.0)
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, IngestError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        IngestError::Malformed {
            field: (path != ".").then_some(path),
            message: e.inner().to_string(),
        }
    })?;
    de.end().map_err(|e| IngestError::Malformed {
        field: None,
        message: e.to_string(),
    })?;
    Ok(value)
}

fn required(field: &str, value: Option<String>) -> Result<String, IngestError> {
    match value {
        Some(v) if !v.trim().is_empty() && v.len() <= 200 => Ok(v),
        Some(v) if v.len() > 200 => Err(malformed(field, "longer than 200 characters")),
        _ => Err(malformed(field, "missing")),
    }
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---- Midtrans -------------------------------------------------------------------------

#[derive(Deserialize)]
struct MidtransNotification {
    order_id: Option<String>,
    status_code: Option<String>,
    gross_amount: Option<String>,
    signature_key: Option<String>,
    transaction_status: Option<String>,
    transaction_id: Option<String>,
    fraud_status: Option<String>,
    issuer: Option<String>,
    acquirer: Option<String>,
    settlement_time: Option<String>,
    transaction_time: Option<String>,
}

/// Midtrans' signature: `hex(SHA-512(order_id + status_code + gross_amount + server_key))`.
pub fn midtrans_signature(
    order_id: &str,
    status_code: &str,
    gross_amount: &str,
    server_key: &str,
) -> String {
    let mut ctx = digest::Context::new(&digest::SHA512);
    for part in [order_id, status_code, gross_amount, server_key] {
        ctx.update(part.as_bytes());
    }
    hex(ctx.finish().as_ref())
}

/// Midtrans times are `YYYY-MM-DD HH:MM:SS` in Jakarta time (UTC+7).
fn midtrans_time(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let wib = UtcOffset::from_hms(7, 0, 0).ok()?;
    PrimitiveDateTime::parse(text, format)
        .ok()
        .map(|t| t.assume_offset(wib).to_offset(UtcOffset::UTC))
}

/// Verifies and normalises a Midtrans HTTP notification.
pub fn midtrans(body: &[u8], server_key: &str) -> Result<PaymentEvent, IngestError> {
    let n: MidtransNotification = parse_json(body)?;
    let order_id = required("order_id", n.order_id)?;
    let status_code = required("status_code", n.status_code)?;
    let gross_amount = required("gross_amount", n.gross_amount)?;
    let signature = required("signature_key", n.signature_key)?;
    let expected = midtrans_signature(&order_id, &status_code, &gross_amount, server_key);
    if !constant_time_eq(
        signature.to_ascii_lowercase().as_bytes(),
        expected.as_bytes(),
    ) {
        return Err(IngestError::Unauthorized(
            "signature_key does not match this notification".into(),
        ));
    }
    let raw_status = required("transaction_status", n.transaction_status)?;
    let transaction_id = required("transaction_id", n.transaction_id)?;
    let amount = parse_rupiah(&gross_amount).map_err(amount_error("gross_amount"))?;
    let fraud_ok = matches!(n.fraud_status.as_deref(), None | Some("accept"));
    let status = match raw_status.as_str() {
        "settlement" => EventStatus::Paid,
        "capture" if fraud_ok => EventStatus::Paid,
        "capture" | "pending" | "authorize" => EventStatus::Pending,
        "deny" | "cancel" | "failure" => EventStatus::Failed,
        "expire" => EventStatus::Expired,
        "refund" | "partial_refund" => EventStatus::Refunded,
        other => EventStatus::Other(other.to_string()),
    };
    let paid_at = if status == EventStatus::Paid {
        n.settlement_time
            .as_deref()
            .or(n.transaction_time.as_deref())
            .and_then(midtrans_time)
    } else {
        None
    };
    Ok(PaymentEvent {
        provider: Provider::Midtrans,
        is_test: order_id.starts_with("payment_notif_test_"),
        provider_transaction_id: transaction_id,
        order_ref: order_id,
        amount,
        status,
        raw_status,
        issuer: n.issuer.or(n.acquirer),
        paid_at,
    })
}

// ---- Xendit ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct XenditCallback {
    event: Option<String>,
    data: Option<XenditData>,
    // Legacy flat shape.
    id: Option<String>,
    amount: Option<Box<RawValue>>,
    status: Option<String>,
    qr_code: Option<XenditQrCode>,
    created: Option<String>,
    source: Option<String>,
}

#[derive(Deserialize)]
struct XenditData {
    id: Option<String>,
    amount: Option<Box<RawValue>>,
    status: Option<String>,
    reference_id: Option<String>,
    channel_code: Option<String>,
    created: Option<String>,
    payment_detail: Option<XenditPaymentDetail>,
}

#[derive(Deserialize)]
struct XenditPaymentDetail {
    source: Option<String>,
}

#[derive(Deserialize)]
struct XenditQrCode {
    external_id: Option<String>,
}

fn rfc3339(text: Option<&str>) -> Option<OffsetDateTime> {
    text.and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .map(|t| t.to_offset(UtcOffset::UTC))
}

/// Verifies (static `x-callback-token`, constant time) and normalises a Xendit QR payment
/// callback, in the current (`data` object) or the legacy flat shape.
pub fn xendit(
    body: &[u8],
    callback_token: Option<&str>,
    expected_token: &str,
) -> Result<PaymentEvent, IngestError> {
    let presented = callback_token.unwrap_or_default();
    if presented.is_empty() || !constant_time_eq(presented.as_bytes(), expected_token.as_bytes()) {
        return Err(IngestError::Unauthorized(
            "x-callback-token is missing or wrong".into(),
        ));
    }
    let cb: XenditCallback = parse_json(body)?;
    let event = cb.event.unwrap_or_default();
    let (id, amount, raw_status, order_ref, issuer, created, prefix) = match cb.data {
        Some(d) => (
            d.id,
            d.amount,
            d.status,
            d.reference_id,
            d.payment_detail.and_then(|p| p.source).or(d.channel_code),
            d.created,
            "data.",
        ),
        None => (
            cb.id,
            cb.amount,
            cb.status,
            cb.qr_code.and_then(|q| q.external_id),
            cb.source,
            cb.created,
            "",
        ),
    };
    let field = |name: &str| format!("{prefix}{name}");
    let id = required(&field("id"), id)?;
    let order_ref = required(
        &if prefix.is_empty() {
            "qr_code.external_id".into()
        } else {
            field("reference_id")
        },
        order_ref,
    )?;
    let raw_status = required(&field("status"), raw_status)?;
    let amount = amount.ok_or_else(|| malformed(&field("amount"), "missing"))?;
    let amount = rupiah_from_json(&amount).map_err(|e| malformed(&field("amount"), e.0))?;
    let status = match raw_status.as_str() {
        "SUCCEEDED" | "COMPLETED" => EventStatus::Paid,
        "PENDING" => EventStatus::Pending,
        "FAILED" | "VOIDED" => EventStatus::Failed,
        "EXPIRED" => EventStatus::Expired,
        "REFUNDED" => EventStatus::Refunded,
        other => EventStatus::Other(other.to_string()),
    };
    let status = if event.contains("refund") && status == EventStatus::Paid {
        EventStatus::Refunded
    } else {
        status
    };
    Ok(PaymentEvent {
        provider: Provider::Xendit,
        provider_transaction_id: id,
        order_ref,
        amount,
        paid_at: if status == EventStatus::Paid {
            rfc3339(created.as_deref())
        } else {
            None
        },
        status,
        raw_status,
        issuer,
        is_test: false,
    })
}

// ---- generic signed callback ----------------------------------------------------------

/// Header carrying the Unix time (seconds) at which the sender signed the request.
pub const GENERIC_TIMESTAMP_HEADER: &str = "x-gema-timestamp";
/// Header carrying `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`.
pub const GENERIC_SIGNATURE_HEADER: &str = "x-gema-signature";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericCallback {
    transaction_id: String,
    order_ref: String,
    amount: Box<RawValue>,
    status: String,
    issuer: Option<String>,
    paid_at: Option<String>,
}

/// The signature a generic callback must carry.
pub fn generic_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex(ctx.sign().as_ref()))
}

/// Verifies and normalises a generic signed callback. The timestamp must be within
/// `tolerance_secs` of `now` (either way), which bounds how long a captured request can be
/// replayed; replays inside the window are harmless because events are deduplicated.
pub fn generic(
    body: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    secret: &str,
    tolerance_secs: i64,
    now: OffsetDateTime,
) -> Result<PaymentEvent, IngestError> {
    let timestamp = timestamp
        .filter(|t| !t.is_empty())
        .ok_or_else(|| IngestError::Unauthorized(format!("{GENERIC_TIMESTAMP_HEADER} missing")))?;
    let signature = signature
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IngestError::Unauthorized(format!("{GENERIC_SIGNATURE_HEADER} missing")))?;
    let expected = generic_signature(secret, timestamp, body);
    if !constant_time_eq(signature.as_bytes(), expected.as_bytes()) {
        return Err(IngestError::Unauthorized("signature does not match".into()));
    }
    let signed_at: i64 = timestamp.parse().map_err(|_| {
        IngestError::Unauthorized(format!("{GENERIC_TIMESTAMP_HEADER} is not Unix seconds"))
    })?;
    // `abs_diff`: the header is any i64 the sender signed, and `now - i64::MIN` overflows.
    let skew = now.unix_timestamp().abs_diff(signed_at);
    if i64::try_from(skew).map_or(true, |skew| skew > tolerance_secs) {
        return Err(IngestError::Unauthorized(format!(
            "{GENERIC_TIMESTAMP_HEADER} is outside the {tolerance_secs} s window"
        )));
    }
    let cb: GenericCallback = parse_json(body)?;
    let transaction_id = required("transaction_id", Some(cb.transaction_id))?;
    let order_ref = required("order_ref", Some(cb.order_ref))?;
    let amount = rupiah_from_json(&cb.amount).map_err(amount_error("amount"))?;
    let status = match cb.status.as_str() {
        "paid" => EventStatus::Paid,
        "pending" => EventStatus::Pending,
        "failed" => EventStatus::Failed,
        "expired" => EventStatus::Expired,
        "refunded" => EventStatus::Refunded,
        _ => {
            return Err(malformed(
                "status",
                "must be paid, pending, failed, expired or refunded",
            ));
        }
    };
    let paid_at = match cb.paid_at.as_deref() {
        None => None,
        Some(text) => {
            Some(rfc3339(Some(text)).ok_or_else(|| malformed("paid_at", "not an RFC 3339 time"))?)
        }
    };
    Ok(PaymentEvent {
        provider: Provider::Generic,
        provider_transaction_id: transaction_id,
        order_ref,
        amount,
        raw_status: cb.status,
        status,
        issuer: cb.issuer,
        paid_at,
        is_test: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const KEY: &str = "askvnoibnosifnboseofinbofinfgbiufglnbfg";

    #[test]
    fn the_documented_midtrans_vector_holds() {
        assert_eq!(
            midtrans_signature("1111", "200", "100000.00", KEY),
            "edc076b21793ebe3e17926350f5b8ae67d902fe657b3d0aa31b932d5c127e2375d308a2bc94f3265ac2d80a1f181a79b997ac178a236fcff35af263fc4d4c231"
        );
    }

    fn midtrans_body(order: &str, status: &str, fraud: Option<&str>, key: &str) -> Vec<u8> {
        let mut body = json!({
            "order_id": order, "status_code": "200", "gross_amount": "25000.00",
            "transaction_status": status, "transaction_id": "mt-123", "payment_type": "qris",
            "issuer": "gopay", "settlement_time": "2026-11-21 10:00:00",
            "signature_key": midtrans_signature(order, "200", "25000.00", key),
            "some_new_field": {"nested": true},
        });
        if let Some(fraud) = fraud {
            body["fraud_status"] = json!(fraud);
        }
        serde_json::to_vec(&body).unwrap()
    }

    #[test]
    fn midtrans_settlement_is_paid_in_whole_rupiah() {
        let event = midtrans(&midtrans_body("ORD-1", "settlement", None, KEY), KEY).unwrap();
        assert_eq!(event.status, EventStatus::Paid);
        assert_eq!(event.amount, 25_000);
        assert_eq!(event.order_ref, "ORD-1");
        assert_eq!(event.provider_transaction_id, "mt-123");
        assert_eq!(event.issuer.as_deref(), Some("gopay"));
        assert_eq!(
            event.paid_at.unwrap().unix_timestamp(),
            OffsetDateTime::parse(
                "2026-11-21T03:00:00Z",
                &time::format_description::well_known::Rfc3339
            )
            .unwrap()
            .unix_timestamp()
        );
        assert!(!event.is_test);
    }

    #[test]
    fn midtrans_statuses_map_as_documented() {
        let cases = [
            ("capture", Some("accept"), EventStatus::Paid),
            ("capture", Some("challenge"), EventStatus::Pending),
            ("pending", None, EventStatus::Pending),
            ("deny", None, EventStatus::Failed),
            ("cancel", None, EventStatus::Failed),
            ("expire", None, EventStatus::Expired),
            ("refund", None, EventStatus::Refunded),
            ("partial_refund", None, EventStatus::Refunded),
            (
                "something_new",
                None,
                EventStatus::Other("something_new".into()),
            ),
        ];
        for (raw, fraud, expected) in cases {
            let event = midtrans(&midtrans_body("ORD-1", raw, fraud, KEY), KEY).unwrap();
            assert_eq!(event.status, expected, "{raw}");
        }
    }

    #[test]
    fn midtrans_test_notifications_are_marked() {
        let event = midtrans(
            &midtrans_body("payment_notif_test_G123", "settlement", None, KEY),
            KEY,
        )
        .unwrap();
        assert!(event.is_test);
    }

    #[test]
    fn a_forged_midtrans_signature_is_unauthorized() {
        let body = midtrans_body("ORD-1", "settlement", None, "another-key");
        assert!(matches!(
            midtrans(&body, KEY),
            Err(IngestError::Unauthorized(_))
        ));
        // Changing the amount after signing breaks the signature.
        let tampered = String::from_utf8(midtrans_body("ORD-1", "settlement", None, KEY))
            .unwrap()
            .replace("25000.00", "95000.00");
        assert!(matches!(
            midtrans(tampered.as_bytes(), KEY),
            Err(IngestError::Unauthorized(_))
        ));
    }

    #[test]
    fn malformed_midtrans_bodies_name_the_field() {
        let err = midtrans(br#"{"order_id": 5}"#, KEY).unwrap_err();
        assert!(matches!(err, IngestError::Malformed { field: Some(f), .. } if f == "order_id"));
        let err = midtrans(br#"{"order_id": "x"}"#, KEY).unwrap_err();
        assert!(matches!(err, IngestError::Malformed { field: Some(f), .. } if f == "status_code"));
        assert!(matches!(
            midtrans(b"not json", KEY),
            Err(IngestError::Malformed { .. })
        ));
    }

    #[test]
    fn a_signed_fractional_amount_is_malformed_not_rounded() {
        let body = json!({
            "order_id": "O", "status_code": "200", "gross_amount": "25000.50",
            "transaction_status": "settlement", "transaction_id": "t",
            "signature_key": midtrans_signature("O", "200", "25000.50", KEY),
        });
        let err = midtrans(&serde_json::to_vec(&body).unwrap(), KEY).unwrap_err();
        assert!(
            matches!(err, IngestError::Malformed { field: Some(f), .. } if f == "gross_amount")
        );
    }

    #[test]
    fn xendit_accepts_both_shapes() {
        let current = json!({
            "event": "qr.payment", "api_version": "2022-07-31",
            "data": {"id": "qrpy_1", "amount": 10000, "currency": "IDR", "status": "SUCCEEDED",
                     "qr_id": "qr_1", "reference_id": "ORD-9", "channel_code": "ID_DANA",
                     "payment_detail": {"source": "GOPAY", "receipt_id": "r"}}
        });
        let event = xendit(&serde_json::to_vec(&current).unwrap(), Some("tok"), "tok").unwrap();
        assert_eq!(event.provider_transaction_id, "qrpy_1");
        assert_eq!(event.order_ref, "ORD-9");
        assert_eq!(event.amount, 10_000);
        assert_eq!(event.status, EventStatus::Paid);
        assert_eq!(event.issuer.as_deref(), Some("GOPAY"));

        let legacy = json!({
            "event": "qr.payment", "id": "qrpy_2", "amount": 15000, "status": "COMPLETED",
            "qr_code": {"id": "qr_2", "external_id": "ORD-10", "type": "DYNAMIC"}
        });
        let event = xendit(&serde_json::to_vec(&legacy).unwrap(), Some("tok"), "tok").unwrap();
        assert_eq!(event.provider_transaction_id, "qrpy_2");
        assert_eq!(event.order_ref, "ORD-10");
        assert_eq!(event.status, EventStatus::Paid);
    }

    /// `9999.99999999999999` is the `f64` 10000.0: read as a `serde_json::Number` it was
    /// accepted as 10,000 rupiah. Amounts are read from their text, so it is a fraction;
    /// `1e4` is not a decimal amount either.
    #[test]
    fn a_json_amount_is_read_from_its_text_not_rounded_through_an_f64() {
        for amount in ["9999.99999999999999", "1e4", "\"10000\"", "null"] {
            let body = format!(
                r#"{{"event":"qr.payment","data":{{"id":"q","amount":{amount},"status":"SUCCEEDED","reference_id":"o"}}}}"#
            );
            let err = xendit(body.as_bytes(), Some("tok"), "tok").unwrap_err();
            assert!(
                matches!(&err, IngestError::Malformed { field: Some(f), .. } if f == "data.amount"),
                "{amount}: {err:?}"
            );
        }
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        for amount in ["24999.999999999999999", "2.5e4", "\"25000\""] {
            let body = format!(
                r#"{{"transaction_id":"b-1","order_ref":"O","amount":{amount},"status":"paid"}}"#
            );
            let sig = generic_signature("s", "1800000000", body.as_bytes());
            let err = generic(
                body.as_bytes(),
                Some("1800000000"),
                Some(&sig),
                "s",
                300,
                now,
            )
            .unwrap_err();
            assert!(
                matches!(&err, IngestError::Malformed { field: Some(f), .. } if f == "amount"),
                "{amount}: {err:?}"
            );
        }
        let body = br#"{"event":"qr.payment","data":{"id":"q","amount":10000.00,"status":"SUCCEEDED","reference_id":"o"}}"#;
        assert_eq!(xendit(body, Some("tok"), "tok").unwrap().amount, 10_000);
    }

    #[test]
    fn xendit_needs_the_right_token() {
        let body = br#"{"event":"qr.payment","id":"q","amount":1,"status":"COMPLETED","qr_code":{"external_id":"o"}}"#;
        assert!(matches!(
            xendit(body, None, "tok"),
            Err(IngestError::Unauthorized(_))
        ));
        assert!(matches!(
            xendit(body, Some("tok2"), "tok"),
            Err(IngestError::Unauthorized(_))
        ));
        assert!(matches!(
            xendit(body, Some(""), ""),
            Err(IngestError::Unauthorized(_))
        ));
    }

    #[test]
    fn generic_callbacks_check_signature_and_window() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let body =
            br#"{"transaction_id":"b-1","order_ref":"ORD-1","amount":25000,"status":"paid"}"#;
        let ts = "1800000000";
        let sig = generic_signature("s3cret", ts, body);
        let event = generic(body, Some(ts), Some(&sig), "s3cret", 300, now).unwrap();
        assert_eq!(event.amount, 25_000);
        assert_eq!(event.status, EventStatus::Paid);

        // Wrong secret, tampered body, replay outside the window, missing headers.
        let bad = generic_signature("other", ts, body);
        assert!(matches!(
            generic(body, Some(ts), Some(&bad), "s3cret", 300, now),
            Err(IngestError::Unauthorized(_))
        ));
        let tampered =
            br#"{"transaction_id":"b-1","order_ref":"ORD-1","amount":95000,"status":"paid"}"#;
        assert!(matches!(
            generic(tampered, Some(ts), Some(&sig), "s3cret", 300, now),
            Err(IngestError::Unauthorized(_))
        ));
        let later = now + time::Duration::seconds(301);
        assert!(matches!(
            generic(body, Some(ts), Some(&sig), "s3cret", 300, later),
            Err(IngestError::Unauthorized(_))
        ));
        assert!(matches!(
            generic(body, None, Some(&sig), "s3cret", 300, now),
            Err(IngestError::Unauthorized(_))
        ));
        assert!(matches!(
            generic(body, Some(ts), None, "s3cret", 300, now),
            Err(IngestError::Unauthorized(_))
        ));
    }

    /// A correctly signed callback whose timestamp is `i64::MIN` (or near it): `now −
    /// timestamp` overflowed (a panic in a debug build); it is outside the window.
    #[test]
    fn a_signed_timestamp_far_in_the_past_is_outside_the_window_not_an_overflow() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let body =
            br#"{"transaction_id":"b-1","order_ref":"ORD-1","amount":25000,"status":"paid"}"#;
        for ts in [
            "-9223372036854775808",
            "-9223372036854775000",
            "9223372036854775807",
        ] {
            let sig = generic_signature("s3cret", ts, body);
            assert!(
                matches!(
                    generic(body, Some(ts), Some(&sig), "s3cret", 300, now),
                    Err(IngestError::Unauthorized(_))
                ),
                "{ts}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_signed_timestamp_is_checked_never_panics(
            ts in prop_oneof![Just(i64::MIN), Just(i64::MAX), any::<i64>()],
            tolerance in prop_oneof![Just(300i64), Just(i64::MAX), any::<i64>()],
        ) {
            let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
            let body = br#"{"transaction_id":"b-1","order_ref":"O","amount":1,"status":"paid"}"#;
            let ts = ts.to_string();
            let sig = generic_signature("s", &ts, body);
            let _ = generic(body, Some(&ts), Some(&sig), "s", tolerance, now);
        }

        #[test]
        fn no_provider_parser_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
            let _ = midtrans(&body, KEY);
            let _ = xendit(&body, Some("t"), "t");
            let sig = generic_signature("s", "1800000000", &body);
            let _ = generic(&body, Some("1800000000"), Some(&sig), "s", 300, now);
        }

        #[test]
        fn signed_json_shaped_garbage_never_panics(order in ".{0,30}", amount in ".{0,20}", status in "[a-z_]{0,15}") {
            let body = json!({
                "order_id": order, "status_code": "200", "gross_amount": amount,
                "transaction_status": status, "transaction_id": "t",
                "signature_key": midtrans_signature(&order, "200", &amount, KEY),
            });
            let _ = midtrans(&serde_json::to_vec(&body).unwrap(), KEY);
        }
    }
}
