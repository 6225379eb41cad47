//! The Cloud API's send request and its answer: the URL, the exact JSON body of a text or
//! template message, the reading of Meta's reply, and what an error code means for the
//! outbox. Pure: `serde_json` only; the HTTP call itself lives with the outbox.

use serde_json::{Value, json};

/// What one message says: free text inside the 24-hour window, or a registered template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing<'a> {
    /// Free text; only deliverable within 24 hours of the customer's last message.
    Text { body: &'a str },
    /// An approved template, its body parameters in order.
    Template {
        name: &'a str,
        language: &'a str,
        params: &'a [String],
    },
}

/// `{base}/{version}/{phone_number_id}/messages`; a trailing slash on `base_url` is dropped.
pub fn messages_url(base_url: &str, version: &str, phone_number_id: &str) -> String {
    format!(
        "{}/{version}/{phone_number_id}/messages",
        base_url.trim_end_matches('/')
    )
}

/// The exact JSON body of a send.
///
/// Text: `{"messaging_product":"whatsapp","recipient_type":"individual","to":..,"type":"text",
/// "text":{"body":..}}`, with `"preview_url":true` in `text` only when the body holds an
/// `http://` or `https://` link (Meta then renders a preview of the first one).
///
/// Template: `{"messaging_product":"whatsapp","to":..,"type":"template","template":{"name":..,
/// "language":{"code":..},"components":[{"type":"body","parameters":[{"type":"text",
/// "text":p},..]}]}}`; `components` is left out when there are no parameters.
pub fn message_body(to: &str, msg: &Outgoing<'_>) -> Value {
    match *msg {
        Outgoing::Text { body } => {
            let text = if body.contains("https://") || body.contains("http://") {
                json!({ "preview_url": true, "body": body })
            } else {
                json!({ "body": body })
            };
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": "text",
                "text": text,
            })
        }
        Outgoing::Template {
            name,
            language,
            params,
        } => {
            let mut template = json!({ "name": name, "language": { "code": language } });
            if !params.is_empty() {
                let parameters: Vec<Value> = params
                    .iter()
                    .map(|p| json!({ "type": "text", "text": p }))
                    .collect();
                template["components"] = json!([{ "type": "body", "parameters": parameters }]);
            }
            json!({
                "messaging_product": "whatsapp",
                "to": to,
                "type": "template",
                "template": template,
            })
        }
    }
}

/// Meta's answer to one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// Meta took the message; statuses for `wamid` follow by webhook.
    Accepted { wamid: String },
    /// Meta refused it (or the answer was not one we understand). `code` is the error
    /// object's `code` when there was one; `message` is at most [`MAX_ERROR_MESSAGE`]
    /// characters, fit for logs and the operator's view.
    Rejected {
        code: Option<i64>,
        message: String,
        http_status: u16,
    },
}

/// The longest [`SendResult::Rejected`] message kept, in characters.
pub const MAX_ERROR_MESSAGE: usize = 300;

/// Reads the Cloud API's answer.
///
/// A 2xx with a non-empty `messages[0].id` is [`SendResult::Accepted`]. Anything else is
/// [`SendResult::Rejected`]: `code` from `error.code` (a number, or a string of digits),
/// the text from `error.message` (else `error.title`, else the start of the body), with
/// `error.error_data.details` appended when Meta gave one. A 2xx without a message id is
/// rejected with no code. Never panics, whatever the bytes.
pub fn parse_send_response(http_status: u16, body: &[u8]) -> SendResult {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&http_status) {
        let wamid = parsed
            .as_ref()
            .and_then(|v| v.get("messages"))
            .and_then(|m| m.get(0))
            .and_then(|m| m.get("id"))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        if let Some(wamid) = wamid {
            return SendResult::Accepted {
                wamid: wamid.to_owned(),
            };
        }
    }
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let code = error.and_then(|e| e.get("code")).and_then(|c| match c {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    });
    let text = error
        .and_then(|e| {
            let main = e
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| e.get("title").and_then(Value::as_str))?;
            let details = e
                .get("error_data")
                .and_then(|d| d.get("details"))
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty());
            Some(match details {
                Some(details) => format!("{main}: {details}"),
                None => main.to_owned(),
            })
        })
        .unwrap_or_else(|| {
            if (200..300).contains(&http_status) {
                "answer without a message id".to_owned()
            } else if body.is_empty() {
                format!("HTTP {http_status} with an empty body")
            } else {
                format!("HTTP {http_status}: {}", String::from_utf8_lossy(body))
            }
        });
    SendResult::Rejected {
        code,
        message: truncate_chars(&text, MAX_ERROR_MESSAGE),
        http_status,
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => s[..end].to_owned(),
        None => s.to_owned(),
    }
}

/// How the outbox reacts to a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// 130429 (throughput), 80007 and 4 (rate limits), or HTTP 429 with no known code: back
    /// off the whole sender, with jitter.
    Throttled,
    /// 131056: too many messages to this recipient (about one per 6 s): delay only this
    /// recipient.
    PairRateLimit,
    /// 131047: outside the 24-hour window: fall back to the template.
    WindowClosed,
    /// 131048 (spam rate limit), 368 (temporarily blocked), 131031 (account locked): stop
    /// the sender for the day and alert.
    SenderRestricted,
    /// 131049: Meta chose not to deliver (per-user marketing limit): stop this recipient for
    /// the day.
    RecipientLimited,
    /// 131026: undeliverable (not on WhatsApp, old app, …): final failure, never retried.
    Undeliverable,
    /// 131057 (maintenance), 131000/131016 (something went wrong, service unavailable),
    /// 1 and 2 (API unknown/service), or HTTP 5xx with no known code: retry later.
    Temporary,
    /// Anything else (bad token 190, invalid parameter 100, 132xxx template errors, other
    /// 4xx): final failure.
    Permanent,
}

impl ErrorClass {
    /// A stable lowercase name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Throttled => "throttled",
            ErrorClass::PairRateLimit => "pair_rate_limit",
            ErrorClass::WindowClosed => "window_closed",
            ErrorClass::SenderRestricted => "sender_restricted",
            ErrorClass::RecipientLimited => "recipient_limited",
            ErrorClass::Undeliverable => "undeliverable",
            ErrorClass::Temporary => "temporary",
            ErrorClass::Permanent => "permanent",
        }
    }

    /// Whether the message is done for good (no retry of this message ever).
    /// [`ErrorClass::WindowClosed`] is not final: the template fallback follows.
    pub fn is_final(self) -> bool {
        matches!(self, ErrorClass::Undeliverable | ErrorClass::Permanent)
    }
}

/// What a rejection means. A known `code` decides; otherwise the HTTP status does (429 →
/// [`ErrorClass::Throttled`], 5xx → [`ErrorClass::Temporary`]); everything else is
/// [`ErrorClass::Permanent`].
pub fn classify(code: Option<i64>, http_status: u16) -> ErrorClass {
    match code {
        Some(130429 | 80007 | 4) => ErrorClass::Throttled,
        Some(131056) => ErrorClass::PairRateLimit,
        Some(131047) => ErrorClass::WindowClosed,
        Some(131048 | 368 | 131031) => ErrorClass::SenderRestricted,
        Some(131049) => ErrorClass::RecipientLimited,
        Some(131026) => ErrorClass::Undeliverable,
        Some(131057 | 131000 | 131016 | 1 | 2) => ErrorClass::Temporary,
        _ if http_status == 429 => ErrorClass::Throttled,
        _ if (500..600).contains(&http_status) => ErrorClass::Temporary,
        _ => ErrorClass::Permanent,
    }
}

/// A value as a template body parameter Meta accepts: never empty (`-` instead), no line
/// breaks or tabs (lines joined with ` · `), no run of spaces (Meta refuses a parameter with
/// a new line, a tab or more than four spaces in a row, error 132018, and an empty one).
pub fn template_param(value: &str) -> String {
    let lines: Vec<String> = value
        .split(['\n', '\r', '\t'])
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect();
    if lines.is_empty() {
        "-".into()
    } else {
        lines.join(" · ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_url_joins_base_version_and_number_with_or_without_a_trailing_slash() {
        let want = "https://graph.facebook.com/v21.0/1234/messages";
        assert_eq!(
            messages_url("https://graph.facebook.com", "v21.0", "1234"),
            want
        );
        assert_eq!(
            messages_url("https://graph.facebook.com/", "v21.0", "1234"),
            want
        );
    }

    #[test]
    fn a_text_body_is_meta_s_exact_shape() {
        let body = message_body(
            "6281234",
            &Outgoing::Text {
                body: "Pembayaran diterima",
            },
        );
        assert_eq!(
            body,
            json!({"messaging_product":"whatsapp","recipient_type":"individual","to":"6281234",
                   "type":"text","text":{"body":"Pembayaran diterima"}})
        );
    }

    #[test]
    fn a_text_with_a_link_asks_for_a_preview() {
        let body = message_body(
            "6281234",
            &Outgoing::Text {
                body: "Struk: https://x.example/r/abc",
            },
        );
        assert_eq!(body["text"]["preview_url"], json!(true));
        assert_eq!(
            body["text"]["body"],
            json!("Struk: https://x.example/r/abc")
        );
    }

    #[test]
    fn a_template_body_carries_its_parameters_in_order() {
        let params = vec!["Budi".to_owned(), "Rp 150.000".to_owned()];
        let body = message_body(
            "6281234",
            &Outgoing::Template {
                name: "tagihan",
                language: "id",
                params: &params,
            },
        );
        assert_eq!(
            body,
            json!({"messaging_product":"whatsapp","to":"6281234","type":"template",
                   "template":{"name":"tagihan","language":{"code":"id"},
                   "components":[{"type":"body","parameters":[
                       {"type":"text","text":"Budi"},{"type":"text","text":"Rp 150.000"}]}]}})
        );
    }

    #[test]
    fn a_template_without_parameters_has_no_components() {
        let body = message_body(
            "6281234",
            &Outgoing::Template {
                name: "halo",
                language: "id",
                params: &[],
            },
        );
        assert_eq!(
            body,
            json!({"messaging_product":"whatsapp","to":"6281234","type":"template",
                   "template":{"name":"halo","language":{"code":"id"}}})
        );
    }

    #[test]
    fn a_2xx_with_a_message_id_is_accepted() {
        let body = br#"{"messaging_product":"whatsapp","contacts":[{"input":"628","wa_id":"628"}],
                        "messages":[{"id":"wamid.HBgL123"}]}"#;
        assert_eq!(
            parse_send_response(200, body),
            SendResult::Accepted {
                wamid: "wamid.HBgL123".to_owned()
            }
        );
    }

    #[test]
    fn a_2xx_without_a_message_id_is_rejected_without_a_code() {
        for body in [
            &br#"{"messages":[]}"#[..],
            br#"{"messages":[{"id":""}]}"#,
            b"",
            b"ok",
        ] {
            let SendResult::Rejected {
                code, http_status, ..
            } = parse_send_response(200, body)
            else {
                panic!("accepted {body:?}");
            };
            assert_eq!((code, http_status), (None, 200));
        }
    }

    #[test]
    fn an_error_object_gives_its_code_message_and_details() {
        let body =
            br#"{"error":{"message":"(#131047) Re-engagement message","type":"OAuthException",
            "code":131047,"error_data":{"messaging_product":"whatsapp",
            "details":"Message failed to send because more than 24 hours have passed"},
            "fbtrace_id":"Az8or2yhqkZfEZ-_4Qn_Bam"}}"#;
        assert_eq!(
            parse_send_response(400, body),
            SendResult::Rejected {
                code: Some(131047),
                message: "(#131047) Re-engagement message: Message failed to send because more \
                          than 24 hours have passed"
                    .to_owned(),
                http_status: 400,
            }
        );
    }

    #[test]
    fn an_error_with_only_a_title_and_a_string_code_is_read() {
        let body = br#"{"error":{"title":"Rate limit hit","code":"130429"}}"#;
        assert_eq!(
            parse_send_response(429, body),
            SendResult::Rejected {
                code: Some(130429),
                message: "Rate limit hit".to_owned(),
                http_status: 429,
            }
        );
    }

    #[test]
    fn an_error_body_that_is_not_json_is_quoted_and_cut_to_300_characters() {
        let body = "ü".repeat(1000);
        let SendResult::Rejected {
            code,
            message,
            http_status,
        } = parse_send_response(502, body.as_bytes())
        else {
            panic!("accepted");
        };
        assert_eq!((code, http_status), (None, 502));
        assert_eq!(message.chars().count(), MAX_ERROR_MESSAGE);
        assert!(message.starts_with("HTTP 502: üü"), "{message}");
    }

    #[test]
    fn a_message_id_in_a_non_2xx_answer_is_not_an_acceptance() {
        let body = br#"{"messages":[{"id":"wamid.x"}]}"#;
        assert!(matches!(
            parse_send_response(500, body),
            SendResult::Rejected { code: None, .. }
        ));
    }

    #[test]
    fn each_documented_code_has_its_class() {
        use ErrorClass::*;
        let table: &[(Option<i64>, u16, ErrorClass)] = &[
            (Some(130429), 400, Throttled),
            (Some(130429), 429, Throttled),
            (Some(80007), 400, Throttled),
            (Some(4), 400, Throttled),
            (None, 429, Throttled),
            (Some(131056), 400, PairRateLimit),
            (Some(131047), 400, WindowClosed),
            (Some(131048), 400, SenderRestricted),
            (Some(368), 400, SenderRestricted),
            (Some(131031), 400, SenderRestricted),
            (Some(131049), 400, RecipientLimited),
            (Some(131026), 400, Undeliverable),
            (Some(131057), 400, Temporary),
            (Some(131000), 500, Temporary),
            (Some(131016), 503, Temporary),
            (Some(1), 400, Temporary),
            (Some(2), 503, Temporary),
            (None, 500, Temporary),
            (None, 503, Temporary),
            (Some(190), 401, Permanent),
            (Some(100), 400, Permanent),
            (Some(132000), 400, Permanent),
            (Some(132001), 400, Permanent),
            (Some(132012), 400, Permanent),
            (None, 400, Permanent),
            (None, 404, Permanent),
            (None, 200, Permanent),
        ];
        for &(code, status, want) in table {
            assert_eq!(classify(code, status), want, "code {code:?}, HTTP {status}");
        }
    }

    #[test]
    fn a_known_code_decides_over_the_http_status() {
        assert_eq!(classify(Some(131026), 500), ErrorClass::Undeliverable);
        assert_eq!(classify(Some(131047), 429), ErrorClass::WindowClosed);
    }

    #[test]
    fn only_undeliverable_and_permanent_are_final() {
        use ErrorClass::*;
        let all = [
            Throttled,
            PairRateLimit,
            WindowClosed,
            SenderRestricted,
            RecipientLimited,
            Undeliverable,
            Temporary,
            Permanent,
        ];
        let finals: Vec<_> = all.into_iter().filter(|c| c.is_final()).collect();
        assert_eq!(finals, [Undeliverable, Permanent]);
        let names: std::collections::HashSet<_> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), all.len());
    }

    proptest! {
        #[test]
        fn parse_send_response_never_panics(status in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
            match parse_send_response(status, &body) {
                SendResult::Accepted { wamid } => {
                    prop_assert!((200..300).contains(&status));
                    prop_assert!(!wamid.is_empty());
                }
                SendResult::Rejected { message, http_status, .. } => {
                    prop_assert_eq!(http_status, status);
                    prop_assert!(message.chars().count() <= MAX_ERROR_MESSAGE);
                }
            }
        }

        #[test]
        fn parse_send_response_reads_any_error_code(status in 400u16..600, code in any::<i64>(), text in ".{0,400}") {
            let body = json!({"error": {"message": text, "code": code}}).to_string();
            let SendResult::Rejected { code: got, message, .. } = parse_send_response(status, body.as_bytes()) else {
                return Err(TestCaseError::fail("accepted an error"));
            };
            prop_assert_eq!(got, Some(code));
            prop_assert!(text.starts_with(&message));
        }
    }

    #[test]
    fn template_params_have_no_line_breaks_runs_of_spaces_or_emptiness() {
        assert_eq!(template_param(""), "-");
        assert_eq!(template_param(" \n\t "), "-");
        assert_eq!(
            template_param("BCA 123\r\na.n.     Budi\n\nQRIS: https://x/p/1"),
            "BCA 123 · a.n. Budi · QRIS: https://x/p/1"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_value_makes_a_parameter_meta_accepts(value in "\\PC*|[ \n\t\ra-z]*") {
            let param = template_param(&value);
            proptest::prop_assert!(!param.is_empty());
            proptest::prop_assert!(!param.contains(['\n', '\r', '\t']));
            proptest::prop_assert!(!param.contains("     "));
        }
    }
}
