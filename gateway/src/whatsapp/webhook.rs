//! Meta's webhooks: the subscription handshake, the `X-Hub-Signature-256` check, the
//! decoding of status updates and inbound messages, opt-out keywords, and the rule that
//! statuses only move a message forward. Pure: the HTTP route that answers Meta lives
//! elsewhere and must check the signature over the raw bytes before calling
//! [`parse_webhook`].

use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const SIGNATURE_PREFIX: &str = "sha256=";

/// Checks `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(raw body, app secret)>` over the
/// exact bytes received, in constant time. A missing header, another prefix, bad hex or a
/// digest of the wrong length are all `false`. Hex digits may be upper or lower case.
pub fn verify_signature(app_secret: &[u8], header: Option<&str>, body: &[u8]) -> bool {
    let Some(hex) = header.and_then(|h| h.trim().strip_prefix(SIGNATURE_PREFIX)) else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    if tag.len() != 32 {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, app_secret);
    hmac::verify(&key, body, &tag).is_ok()
}

/// The header value a correct sender sends: `sha256=<lowercase hex>` (for tests, the fake
/// Cloud API and benchmarks).
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, app_secret);
    let tag = hmac::sign(&key, body);
    let mut out = String::with_capacity(SIGNATURE_PREFIX.len() + 64);
    out.push_str(SIGNATURE_PREFIX);
    for b in tag.as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

/// The GET handshake: `Some(challenge)` to answer with 200 when `hub.mode` is `subscribe`
/// and `hub.verify_token` equals `expected_token` (compared in constant time); `None` (403)
/// otherwise, and always when `expected_token` is empty (not configured).
pub fn verify_subscription(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&str>,
    expected_token: &str,
) -> Option<String> {
    if mode != Some("subscribe") || expected_token.is_empty() {
        return None;
    }
    let token = token?;
    let challenge = challenge?;
    // HMAC under a throwaway key turns the comparison into ring's constant-time tag check,
    // whatever the two lengths.
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"gema verify_token comparison");
    let expected = hmac::sign(&key, expected_token.as_bytes());
    hmac::verify(&key, token.as_bytes(), expected.as_ref()).ok()?;
    Some(challenge.to_owned())
}

/// A delivery status Meta reports for one sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryStatus {
    /// Meta's name: `sent`, `delivered`, `read`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// The status Meta's name stands for; `None` for the ones we skip (`deleted`,
    /// `warning`, …).
    pub fn from_name(name: &str) -> Option<DeliveryStatus> {
        match name {
            "sent" => Some(DeliveryStatus::Sent),
            "delivered" => Some(DeliveryStatus::Delivered),
            "read" => Some(DeliveryStatus::Read),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One `statuses[]` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// `metadata.phone_number_id` of the change it came in.
    pub phone_number_id: Option<String>,
    pub wamid: String,
    pub status: DeliveryStatus,
    /// Unix seconds.
    pub timestamp: i64,
    pub recipient: String,
    /// `errors[0].code`, on failed.
    pub error_code: Option<i64>,
    /// `errors[0].title` (else `errors[0].message`), on failed.
    pub error_title: Option<String>,
}

/// One `messages[]` element: a customer wrote to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub phone_number_id: String,
    pub from: String,
    pub wamid: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// `text.body`, a button's or interactive reply's text; `None` for media and others.
    pub text: Option<String>,
}

/// Everything one webhook delivery said, in payload order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookBatch {
    pub statuses: Vec<StatusUpdate>,
    pub inbound: Vec<Inbound>,
}

/// Why a webhook body was refused; field paths look like
/// `entry[0].changes[1].value.statuses[2].id`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook body is not JSON: {0}")]
    NotJson(String),
    #[error("not a WhatsApp Business Account webhook (`object` is {0})")]
    NotWhatsApp(String),
    #[error("{path}: expected {expected}")]
    Field {
        path: String,
        expected: &'static str,
    },
    #[error("{count} statuses and messages in one webhook; at most {max} are accepted")]
    TooMany { count: usize, max: usize },
}

/// The most statuses plus messages one webhook may carry.
pub const MAX_WEBHOOK_ITEMS: usize = 10_000;

/// Decodes a webhook body (after [`verify_signature`]).
///
/// Reads `entry[].changes[]` whose `field` is `messages`: their `value.statuses[]` and
/// `value.messages[]`. Timestamps are strings of digits in Meta's payloads; numbers are
/// accepted too. Statuses other than sent/delivered/read/failed and changes of other fields
/// are skipped. Missing `entry`, `changes`, `statuses` or `messages` arrays are empty. More
/// than [`MAX_WEBHOOK_ITEMS`] statuses and messages in all is an error.
pub fn parse_webhook(body: &[u8]) -> Result<WebhookBatch, WebhookError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    let root = as_object(&root, "(root)", "an object")?;
    match root.get("object") {
        Some(Value::String(s)) if s == "whatsapp_business_account" => {}
        Some(other) => return Err(WebhookError::NotWhatsApp(other.to_string())),
        None => return Err(WebhookError::NotWhatsApp("missing".to_owned())),
    }

    let mut changes = Vec::new();
    for (i, entry) in optional_array(root, "entry", "")?.iter().enumerate() {
        let path = format!("entry[{i}]");
        let entry = as_object(entry, &path, "an object")?;
        for (j, change) in optional_array(entry, "changes", &path)?.iter().enumerate() {
            let path = format!("{path}.changes[{j}]");
            let change = as_object(change, &path, "an object")?;
            if optional_str(change, "field", &path)? != Some("messages") {
                continue;
            }
            let value_path = format!("{path}.value");
            let value = match change.get("value") {
                Some(v) => as_object(v, &value_path, "an object")?,
                None => return Err(field(&value_path, "an object")),
            };
            changes.push((value_path, value));
        }
    }

    let mut count = 0usize;
    for (path, value) in &changes {
        count += optional_array(value, "statuses", path)?.len();
        count += optional_array(value, "messages", path)?.len();
    }
    if count > MAX_WEBHOOK_ITEMS {
        return Err(WebhookError::TooMany {
            count,
            max: MAX_WEBHOOK_ITEMS,
        });
    }

    let mut batch = WebhookBatch::default();
    for (path, value) in changes {
        let phone_number_id = match value.get("metadata") {
            None | Some(Value::Null) => None,
            Some(m) => {
                let meta_path = format!("{path}.metadata");
                let m = as_object(m, &meta_path, "an object")?;
                optional_str(m, "phone_number_id", &meta_path)?.map(str::to_owned)
            }
        };
        for (k, status) in optional_array(value, "statuses", &path)?.iter().enumerate() {
            let path = format!("{path}.statuses[{k}]");
            if let Some(update) = parse_status(status, &path, phone_number_id.as_ref())? {
                batch.statuses.push(update);
            }
        }
        let messages = optional_array(value, "messages", &path)?;
        if !messages.is_empty() && phone_number_id.is_none() {
            return Err(field(
                &format!("{path}.metadata.phone_number_id"),
                "a string",
            ));
        }
        for (k, message) in messages.iter().enumerate() {
            let path = format!("{path}.messages[{k}]");
            let phone_number_id = phone_number_id.clone().unwrap_or_default();
            batch
                .inbound
                .push(parse_message(message, &path, phone_number_id)?);
        }
    }
    Ok(batch)
}

fn parse_status(
    status: &Value,
    path: &str,
    phone_number_id: Option<&String>,
) -> Result<Option<StatusUpdate>, WebhookError> {
    let status = as_object(status, path, "an object")?;
    let Some(kind) = DeliveryStatus::from_name(required_str(status, "status", path)?) else {
        return Ok(None);
    };
    let (error_code, error_title) = match optional_array(status, "errors", path)?.first() {
        None => (None, None),
        Some(error) => {
            let error_path = format!("{path}.errors[0]");
            let error = as_object(error, &error_path, "an object")?;
            let code = match error.get("code") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => Some(
                    n.as_i64()
                        .ok_or_else(|| field(&format!("{error_path}.code"), "an integer"))?,
                ),
                Some(_) => return Err(field(&format!("{error_path}.code"), "an integer")),
            };
            let title = match optional_str(error, "title", &error_path)? {
                Some(t) => Some(t),
                None => optional_str(error, "message", &error_path)?,
            };
            (code, title.map(str::to_owned))
        }
    };
    Ok(Some(StatusUpdate {
        phone_number_id: phone_number_id.cloned(),
        wamid: required_str(status, "id", path)?.to_owned(),
        status: kind,
        timestamp: timestamp(status, path)?,
        recipient: required_str(status, "recipient_id", path)?.to_owned(),
        error_code,
        error_title,
    }))
}

fn parse_message(
    message: &Value,
    path: &str,
    phone_number_id: String,
) -> Result<Inbound, WebhookError> {
    let message = as_object(message, path, "an object")?;
    let text = match optional_str(message, "type", path)? {
        Some("text") => nested_str(message, &["text", "body"], path)?,
        Some("button") => nested_str(message, &["button", "text"], path)?,
        Some("interactive") => {
            match nested_str(message, &["interactive", "button_reply", "title"], path)? {
                Some(t) => Some(t),
                None => nested_str(message, &["interactive", "list_reply", "title"], path)?,
            }
        }
        _ => None,
    };
    Ok(Inbound {
        phone_number_id,
        from: required_str(message, "from", path)?.to_owned(),
        wamid: required_str(message, "id", path)?.to_owned(),
        timestamp: timestamp(message, path)?,
        text,
    })
}

fn field(path: &str, expected: &'static str) -> WebhookError {
    WebhookError::Field {
        path: path.to_owned(),
        expected,
    }
}

fn as_object<'v>(
    value: &'v Value,
    path: &str,
    expected: &'static str,
) -> Result<&'v Map<String, Value>, WebhookError> {
    value.as_object().ok_or_else(|| field(path, expected))
}

fn optional_array<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'v [Value], WebhookError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(field(&join(path, key), "an array")),
    }
}

fn optional_str<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'v str>, WebhookError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(field(&join(path, key), "a string")),
    }
}

fn required_str<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'v str, WebhookError> {
    optional_str(obj, key, path)?.ok_or_else(|| field(&join(path, key), "a string"))
}

/// The string at `keys` below `obj`; `None` when any step is missing, an error when a step
/// has the wrong type.
fn nested_str(
    obj: &Map<String, Value>,
    keys: &[&str],
    path: &str,
) -> Result<Option<String>, WebhookError> {
    let mut current = obj;
    let mut path = path.to_owned();
    let Some((last, parents)) = keys.split_last() else {
        return Ok(None);
    };
    for key in parents {
        path = join(&path, key);
        current = match current.get(*key) {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => as_object(v, &path, "an object")?,
        };
    }
    Ok(optional_str(current, last, &path)?.map(str::to_owned))
}

/// `timestamp`: a string of digits (as Meta sends it) or a non-negative integer.
fn timestamp(obj: &Map<String, Value>, path: &str) -> Result<i64, WebhookError> {
    const EXPECTED: &str = "unix seconds (a string of digits or an integer)";
    let bad = || field(&join(path, "timestamp"), EXPECTED);
    match obj.get("timestamp") {
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().map_err(|_| bad())
        }
        Some(Value::Number(n)) => n.as_i64().filter(|t| *t >= 0).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// `path.key`, or `key` at the root (an empty path).
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// An opt-out or opt-in request in an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// `STOP` or `BERHENTI`.
    OptOut,
    /// `MULAI` or `START`.
    OptIn,
}

/// The keyword the whole message is (trimmed, any case); `None` for any other text, so
/// "stop dulu ya" is not an opt-out.
pub fn keyword(text: &str) -> Option<Keyword> {
    let text = text.trim();
    let is = |word: &str| text.eq_ignore_ascii_case(word);
    if is("STOP") || is("BERHENTI") {
        Some(Keyword::OptOut)
    } else if is("MULAI") || is("START") {
        Some(Keyword::OptIn)
    } else {
        None
    }
}

/// A message's state in the outbox as far as statuses go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Progress {
    /// Pending, sending, uncertain or cancelled: not (known to be) accepted by Meta yet.
    Unsent,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl From<DeliveryStatus> for Progress {
    fn from(status: DeliveryStatus) -> Progress {
        match status {
            DeliveryStatus::Sent => Progress::Sent,
            DeliveryStatus::Delivered => Progress::Delivered,
            DeliveryStatus::Read => Progress::Read,
            DeliveryStatus::Failed => Progress::Failed,
        }
    }
}

/// Applies a status webhook: `Some(new)` when it moves the message forward, `None` when it
/// must be ignored.
///
/// Sent < delivered < read; duplicates and regressions are ignored. Failed is final except
/// that a later delivered or read for the same message (the user has several devices) moves
/// it on to delivered or read; failed never overrides delivered or read. Any status applies
/// to an [`Progress::Unsent`] message (the answer to the send was lost). Seen as one order,
/// unsent < sent < failed < delivered < read, and every `Some` moves up it.
pub fn advance(current: Progress, incoming: DeliveryStatus) -> Option<Progress> {
    let next = Progress::from(incoming);
    let forward = match (current, incoming) {
        (Progress::Unsent, _) => true,
        (Progress::Failed, DeliveryStatus::Delivered | DeliveryStatus::Read) => true,
        (Progress::Failed, _) => false,
        (Progress::Sent, DeliveryStatus::Failed) => true,
        (_, DeliveryStatus::Failed) => false,
        (Progress::Sent | Progress::Delivered | Progress::Read, _) => {
            status_rank(next) > status_rank(current)
        }
    };
    forward.then_some(next)
}

/// Rank among sent/delivered/read (failed and unsent are handled before it is asked).
fn status_rank(p: Progress) -> u8 {
    match p {
        Progress::Unsent | Progress::Failed => 0,
        Progress::Sent => 1,
        Progress::Delivered => 2,
        Progress::Read => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const SECRET: &[u8] = b"app-secret";

    #[test]
    fn a_correct_signature_verifies() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = sign(SECRET, body);
        assert!(header.starts_with("sha256="));
        assert_eq!(header.len(), 7 + 64);
        assert!(verify_signature(SECRET, Some(&header), body));
        assert!(verify_signature(
            SECRET,
            Some(
                &header
                    .to_ascii_uppercase()
                    .replacen("SHA256=", "sha256=", 1)
            ),
            body
        ));
    }

    #[test]
    fn the_signature_matches_a_known_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_flipped_byte_in_the_body_fails() {
        let body = b"{\"a\":1}".to_vec();
        let header = sign(SECRET, &body);
        for i in 0..body.len() {
            let mut tampered = body.clone();
            tampered[i] ^= 0x01;
            assert!(
                !verify_signature(SECRET, Some(&header), &tampered),
                "byte {i}"
            );
        }
    }

    #[test]
    fn the_wrong_secret_fails() {
        let header = sign(b"other secret", b"body");
        assert!(!verify_signature(SECRET, Some(&header), b"body"));
    }

    #[test]
    fn a_missing_or_garbled_header_fails() {
        let good = sign(SECRET, b"body");
        let hex = good.trim_start_matches("sha256=");
        let garbled = [
            None,
            Some(""),
            Some("sha256="),
            Some(hex),
            Some(&*format!("sha1={hex}")),
            Some(&*format!("sha256={}", &hex[..62])),
            Some(&*format!("sha256={hex}00")),
            Some(&*format!("sha256={}", &hex[..63])),
            Some(&*format!("sha256={}zz", &hex[..62])),
            Some(&*format!("sha256=ü{}", &hex[2..])),
        ];
        for header in garbled {
            assert!(!verify_signature(SECRET, header, b"body"), "{header:?}");
        }
    }

    #[test]
    fn the_subscription_handshake_answers_the_challenge_only_for_the_right_token() {
        let ok = verify_subscription(Some("subscribe"), Some("tok"), Some("1158201444"), "tok");
        assert_eq!(ok.as_deref(), Some("1158201444"));
        let refused = [
            (Some("unsubscribe"), Some("tok"), Some("c"), "tok"),
            (None, Some("tok"), Some("c"), "tok"),
            (Some("subscribe"), Some("tok2"), Some("c"), "tok"),
            (Some("subscribe"), Some("to"), Some("c"), "tok"),
            (Some("subscribe"), None, Some("c"), "tok"),
            (Some("subscribe"), Some("tok"), None, "tok"),
            (Some("subscribe"), Some(""), Some("c"), ""),
        ];
        for (mode, token, challenge, expected) in refused {
            assert_eq!(
                verify_subscription(mode, token, challenge, expected),
                None,
                "{mode:?} {token:?} {challenge:?} {expected:?}"
            );
        }
    }

    #[test]
    fn meta_s_example_payload_decodes() {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{
                "id": "102290129340398",
                "changes": [{
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                        "contacts": [{"profile": {"name": "Budi"}, "wa_id": "6281234"}],
                        "messages": [
                            {"from": "6281234", "id": "wamid.in1", "timestamp": "1700000000", "type": "text", "text": {"body": "STOP"}},
                            {"from": "6281234", "id": "wamid.in2", "timestamp": 1700000001, "type": "button", "button": {"payload": "p", "text": "Bayar"}},
                            {"from": "6281234", "id": "wamid.in3", "timestamp": "1700000002", "type": "interactive",
                             "interactive": {"type": "list_reply", "list_reply": {"id": "x", "title": "Paket 10 Mbps"}}},
                            {"from": "6281234", "id": "wamid.in4", "timestamp": "1700000003", "type": "image", "image": {"id": "m"}}
                        ],
                        "statuses": [
                            {"id": "wamid.out1", "status": "delivered", "timestamp": "1700000010", "recipient_id": "6281234"},
                            {"id": "wamid.out2", "status": "deleted", "timestamp": "1700000011", "recipient_id": "6281234"},
                            {"id": "wamid.out3", "status": "failed", "timestamp": "1700000012", "recipient_id": "6289999",
                             "errors": [{"code": 131026, "title": "Message undeliverable"}]}
                        ]
                    }
                }, {
                    "field": "message_template_status_update",
                    "value": {"event": "APPROVED", "statuses": "not even an array"}
                }]
            }]
        });
        let batch = parse_webhook(body.to_string().as_bytes()).expect("decodes");
        let pn = Some("106540352242922".to_owned());
        assert_eq!(
            batch.statuses,
            vec![
                StatusUpdate {
                    phone_number_id: pn.clone(),
                    wamid: "wamid.out1".into(),
                    status: DeliveryStatus::Delivered,
                    timestamp: 1_700_000_010,
                    recipient: "6281234".into(),
                    error_code: None,
                    error_title: None,
                },
                StatusUpdate {
                    phone_number_id: pn,
                    wamid: "wamid.out3".into(),
                    status: DeliveryStatus::Failed,
                    timestamp: 1_700_000_012,
                    recipient: "6289999".into(),
                    error_code: Some(131026),
                    error_title: Some("Message undeliverable".into()),
                },
            ]
        );
        let texts: Vec<_> = batch
            .inbound
            .iter()
            .map(|m| (m.wamid.as_str(), m.timestamp, m.text.as_deref()))
            .collect();
        assert_eq!(
            texts,
            [
                ("wamid.in1", 1_700_000_000, Some("STOP")),
                ("wamid.in2", 1_700_000_001, Some("Bayar")),
                ("wamid.in3", 1_700_000_002, Some("Paket 10 Mbps")),
                ("wamid.in4", 1_700_000_003, None),
            ]
        );
        assert!(
            batch
                .inbound
                .iter()
                .all(|m| m.phone_number_id == "106540352242922" && m.from == "6281234")
        );
    }

    fn expect_field_error(body: Value, want_path: &str) {
        match parse_webhook(body.to_string().as_bytes()) {
            Err(WebhookError::Field { path, .. }) => assert_eq!(path, want_path),
            other => panic!("expected an error at {want_path}, got {other:?}"),
        }
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named_by_its_path() {
        let status = |s: Value| {
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [
                {"field": "other"},
                {"field": "messages", "value": {"metadata": {"phone_number_id": "1"}, "statuses": [
                    {"id": "a", "status": "sent", "timestamp": "1", "recipient_id": "6"}, s]}}]}]})
        };
        expect_field_error(
            status(json!({"id": 5, "status": "sent", "timestamp": "1", "recipient_id": "6"})),
            "entry[0].changes[1].value.statuses[1].id",
        );
        expect_field_error(
            status(json!({"id": "b", "status": "sent", "timestamp": "-1", "recipient_id": "6"})),
            "entry[0].changes[1].value.statuses[1].timestamp",
        );
        expect_field_error(
            status(json!({"id": "b", "status": "sent", "timestamp": 1.5, "recipient_id": "6"})),
            "entry[0].changes[1].value.statuses[1].timestamp",
        );
        expect_field_error(
            status(
                json!({"id": "b", "status": "failed", "timestamp": "1", "recipient_id": "6",
                          "errors": [{"code": "x"}]}),
            ),
            "entry[0].changes[1].value.statuses[1].errors[0].code",
        );
        expect_field_error(
            status(json!({"id": "b", "status": 3, "timestamp": "1", "recipient_id": "6"})),
            "entry[0].changes[1].value.statuses[1].status",
        );
        expect_field_error(
            json!({"object": "whatsapp_business_account", "entry": {}}),
            "entry",
        );
        expect_field_error(
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [
                {"field": "messages", "value": {"messages": [{"from": "6", "id": "w", "timestamp": "1"}]}}]}]}),
            "entry[0].changes[0].value.metadata.phone_number_id",
        );
        expect_field_error(
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [
                {"field": "messages", "value": {"metadata": {"phone_number_id": "1"}, "messages": [
                    {"from": "6", "id": "w", "timestamp": "1", "type": "text", "text": {"body": 7}}]}}]}]}),
            "entry[0].changes[0].value.messages[0].text.body",
        );
    }

    #[test]
    fn a_body_that_is_not_a_whatsapp_webhook_is_refused() {
        assert!(matches!(
            parse_webhook(b"not json"),
            Err(WebhookError::NotJson(_))
        ));
        assert!(matches!(
            parse_webhook(b"[]"),
            Err(WebhookError::Field { .. })
        ));
        assert!(matches!(
            parse_webhook(br#"{"object":"page","entry":[]}"#),
            Err(WebhookError::NotWhatsApp(_))
        ));
        assert!(matches!(
            parse_webhook(br#"{"entry":[]}"#),
            Err(WebhookError::NotWhatsApp(_))
        ));
    }

    #[test]
    fn more_than_ten_thousand_items_are_refused() {
        let statuses: Vec<Value> = (0..6_000)
            .map(|i| json!({"id": format!("w{i}"), "status": "sent", "timestamp": "1", "recipient_id": "6"}))
            .collect();
        let change = json!({"field": "messages", "value": {"statuses": statuses}});
        let body = json!({"object": "whatsapp_business_account", "entry": [
            {"changes": [change.clone()]}, {"changes": [change]}]});
        assert_eq!(
            parse_webhook(body.to_string().as_bytes()),
            Err(WebhookError::TooMany {
                count: 12_000,
                max: MAX_WEBHOOK_ITEMS
            })
        );
    }

    #[test]
    fn keywords_are_the_whole_trimmed_text_in_any_case() {
        for text in ["STOP", "stop", " Stop\n", "BERHENTI", "berhenti"] {
            assert_eq!(keyword(text), Some(Keyword::OptOut), "{text:?}");
        }
        for text in ["MULAI", "mulai", "START", "\tstart "] {
            assert_eq!(keyword(text), Some(Keyword::OptIn), "{text:?}");
        }
        for text in [
            "",
            "stop dulu",
            "STOP!",
            "berhenti langganan",
            "mulai lagi",
            "halo",
        ] {
            assert_eq!(keyword(text), None, "{text:?}");
        }
    }

    #[test]
    fn delivery_status_names_are_meta_s() {
        for s in [
            DeliveryStatus::Sent,
            DeliveryStatus::Delivered,
            DeliveryStatus::Read,
            DeliveryStatus::Failed,
        ] {
            assert_eq!(serde_json::to_value(s).ok(), Some(json!(s.as_str())));
            assert_eq!(DeliveryStatus::from_name(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStatus::from_name("deleted"), None);
    }

    #[test]
    fn advance_moves_only_forward_for_every_pair() {
        use DeliveryStatus as S;
        use Progress as P;
        let table: &[(Progress, DeliveryStatus, Option<Progress>)] = &[
            (P::Unsent, S::Sent, Some(P::Sent)),
            (P::Unsent, S::Delivered, Some(P::Delivered)),
            (P::Unsent, S::Read, Some(P::Read)),
            (P::Unsent, S::Failed, Some(P::Failed)),
            (P::Sent, S::Sent, None),
            (P::Sent, S::Delivered, Some(P::Delivered)),
            (P::Sent, S::Read, Some(P::Read)),
            (P::Sent, S::Failed, Some(P::Failed)),
            (P::Delivered, S::Sent, None),
            (P::Delivered, S::Delivered, None),
            (P::Delivered, S::Read, Some(P::Read)),
            (P::Delivered, S::Failed, None),
            (P::Read, S::Sent, None),
            (P::Read, S::Delivered, None),
            (P::Read, S::Read, None),
            (P::Read, S::Failed, None),
            (P::Failed, S::Sent, None),
            (P::Failed, S::Delivered, Some(P::Delivered)),
            (P::Failed, S::Read, Some(P::Read)),
            (P::Failed, S::Failed, None),
        ];
        assert_eq!(table.len(), 5 * 4, "every pair once");
        for &(current, incoming, want) in table {
            assert_eq!(
                advance(current, incoming),
                want,
                "{current:?} + {incoming:?}"
            );
        }
    }

    /// The one order every move goes up: unsent < sent < failed < delivered < read.
    fn order(p: Progress) -> u8 {
        match p {
            Progress::Unsent => 0,
            Progress::Sent => 1,
            Progress::Failed => 2,
            Progress::Delivered => 3,
            Progress::Read => 4,
        }
    }

    fn any_status() -> impl Strategy<Value = DeliveryStatus> {
        prop_oneof![
            Just(DeliveryStatus::Sent),
            Just(DeliveryStatus::Delivered),
            Just(DeliveryStatus::Read),
            Just(DeliveryStatus::Failed),
        ]
    }

    proptest! {
        #[test]
        fn any_status_sequence_ends_at_its_maximum_and_never_goes_back(
            seq in proptest::collection::vec(any_status(), 0..12),
        ) {
            let mut state = Progress::Unsent;
            for &s in &seq {
                if let Some(next) = advance(state, s) {
                    prop_assert!(order(next) > order(state), "{:?} -> {:?}", state, next);
                    state = next;
                }
            }
            let best_seen = seq
                .iter()
                .filter(|s| matches!(s, DeliveryStatus::Delivered | DeliveryStatus::Read))
                .map(|&s| Progress::from(s))
                .max_by_key(|&p| order(p));
            let expected = match best_seen {
                Some(p) => p,
                None if seq.contains(&DeliveryStatus::Failed) => Progress::Failed,
                None if seq.contains(&DeliveryStatus::Sent) => Progress::Sent,
                None => Progress::Unsent,
            };
            prop_assert_eq!(state, expected);
        }

        #[test]
        fn parse_webhook_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_webhook(&body);
        }

        #[test]
        fn parse_webhook_never_panics_on_near_valid_json(
            value in json_value(),
            wrap in any::<bool>(),
        ) {
            let body = if wrap {
                json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": value}]}]})
            } else {
                value
            };
            let _ = parse_webhook(body.to_string().as_bytes());
        }

        #[test]
        fn a_generated_payload_round_trips(
            statuses in proptest::collection::vec(status_strategy(), 0..20),
            messages in proptest::collection::vec(message_strategy(), 0..20),
            numeric_timestamps in any::<bool>(),
        ) {
            let ts = |t: i64| if numeric_timestamps { json!(t) } else { json!(t.to_string()) };
            let mut status_json = Vec::new();
            for s in &statuses {
                let mut v = json!({"id": s.wamid, "status": s.status.as_str(),
                                   "timestamp": ts(s.timestamp), "recipient_id": s.recipient});
                if s.error_code.is_some() || s.error_title.is_some() {
                    v["errors"] = json!([{"code": s.error_code, "title": s.error_title}]);
                }
                status_json.push(v);
                // Statuses we do not know are skipped wherever they are.
                status_json.push(json!({"id": "x", "status": "deleted", "timestamp": "1", "recipient_id": "6"}));
            }
            let message_json: Vec<Value> = messages.iter().map(|m| match &m.text {
                Some(text) => json!({"from": m.from, "id": m.wamid, "timestamp": ts(m.timestamp),
                                     "type": "text", "text": {"body": text}}),
                None => json!({"from": m.from, "id": m.wamid, "timestamp": ts(m.timestamp),
                               "type": "audio", "audio": {"id": "media"}}),
            }).collect();
            let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
                {"field": "account_update", "value": {"messages": "skipped"}},
                {"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "62811", "phone_number_id": "PNID"},
                    "statuses": status_json, "messages": message_json}}]}]});
            let batch = parse_webhook(body.to_string().as_bytes());
            prop_assert_eq!(batch, Ok(WebhookBatch { statuses, inbound: messages }));
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z0-9_]{0,8}".prop_map(Value::from),
            prop_oneof![
                Just("messages"),
                Just("statuses"),
                Just("sent"),
                Just("failed"),
                Just("text"),
                Just("1700000000")
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("metadata".to_owned()),
                        Just("phone_number_id".to_owned()),
                        Just("statuses".to_owned()),
                        Just("messages".to_owned()),
                        Just("id".to_owned()),
                        Just("status".to_owned()),
                        Just("timestamp".to_owned()),
                        Just("recipient_id".to_owned()),
                        Just("errors".to_owned()),
                        Just("from".to_owned()),
                        Just("type".to_owned()),
                        Just("text".to_owned()),
                        Just("body".to_owned()),
                        Just("code".to_owned()),
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn status_strategy() -> impl Strategy<Value = StatusUpdate> {
        (
            "wamid\\.[A-Za-z0-9=]{1,20}",
            any_status(),
            0i64..=i64::MAX,
            "62[0-9]{8,12}",
            proptest::option::of(any::<i64>()),
            proptest::option::of(".{0,40}"),
        )
            .prop_map(
                |(wamid, status, timestamp, recipient, error_code, error_title)| StatusUpdate {
                    phone_number_id: Some("PNID".to_owned()),
                    wamid,
                    status,
                    timestamp,
                    recipient,
                    error_code,
                    error_title,
                },
            )
    }

    fn message_strategy() -> impl Strategy<Value = Inbound> {
        (
            "62[0-9]{8,12}",
            "wamid\\.[A-Za-z0-9=]{1,20}",
            0i64..=i64::MAX,
            proptest::option::of(".{0,80}"),
        )
            .prop_map(|(from, wamid, timestamp, text)| Inbound {
                phone_number_id: "PNID".to_owned(),
                from,
                wamid,
                timestamp,
                text,
            })
    }
}
