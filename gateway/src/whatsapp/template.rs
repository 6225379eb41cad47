//! Operators' message texts (Bahasa Indonesia, `{name}` placeholders, `{{` and `}}` for
//! literal braces) and the request body of an external WhatsApp gateway. Checked when the
//! operator saves them, rendered for every message. Pure; never panics on any text.

use std::collections::BTreeMap;

use serde_json::Value;

/// The longest message text, in characters (WhatsApp's limit for a text body).
pub const MAX_TEMPLATE_CHARS: usize = 4096;

/// Why a message text or gateway body template is refused. Positions count characters
/// from 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` with no `}` after it, or a `}` that closes nothing (write `{{` / `}}` for a
    /// literal brace).
    #[error("unbalanced brace at character {at} (write {{{{ or }}}} for a literal brace)")]
    Unclosed { at: usize },
    /// A placeholder that is not offered here, has no value, or is not a name
    /// (`[a-z_][a-z0-9_]*`).
    #[error("unknown placeholder {{{0}}}")]
    UnknownPlaceholder(String),
    #[error("the text is empty")]
    Empty,
    #[error("the text is longer than {max} characters")]
    TooLong { max: usize },
    #[error("the gateway body template is not JSON: {0}")]
    BadJson(String),
}

enum Piece<'t> {
    Literal(&'t str),
    Placeholder(&'t str),
}

/// Splits a template into literal runs and placeholders. `{{`/`}}` become one-character
/// literals.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut literal_start = 0;
    let mut chars = template.char_indices().enumerate().peekable();
    while let Some((pos, (i, c))) = chars.next() {
        match c {
            '{' | '}' if chars.peek().map(|&(_, (_, next))| next) == Some(c) => {
                out.push(Piece::Literal(&template[literal_start..i]));
                out.push(Piece::Literal(&template[i..i + 1]));
                chars.next();
                literal_start = i + 2;
            }
            '}' => return Err(TemplateError::Unclosed { at: pos }),
            '{' => {
                out.push(Piece::Literal(&template[literal_start..i]));
                let name_start = i + 1;
                let close = loop {
                    match chars.next() {
                        Some((_, (j, '}'))) => break j,
                        Some(_) => {}
                        None => return Err(TemplateError::Unclosed { at: pos }),
                    }
                };
                let name = &template[name_start..close];
                if !is_name(name) {
                    return Err(TemplateError::UnknownPlaceholder(name.to_owned()));
                }
                out.push(Piece::Placeholder(name));
                literal_start = close + 1;
            }
            _ => {}
        }
    }
    out.push(Piece::Literal(&template[literal_start..]));
    Ok(out)
}

fn is_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// The placeholder names in order of first appearance, each once. Errors on unbalanced
/// braces and on names that are not `[a-z_][a-z0-9_]*`.
pub fn placeholders(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut names: Vec<String> = Vec::new();
    for piece in pieces(template)? {
        if let Piece::Placeholder(name) = piece
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Checks a message text against the names a notification offers (`allowed`): not blank,
/// at most [`MAX_TEMPLATE_CHARS`] characters, balanced braces, every placeholder allowed.
pub fn check(template: &str, allowed: &[&str]) -> Result<(), TemplateError> {
    if template.trim().is_empty() {
        return Err(TemplateError::Empty);
    }
    if template.chars().count() > MAX_TEMPLATE_CHARS {
        return Err(TemplateError::TooLong {
            max: MAX_TEMPLATE_CHARS,
        });
    }
    match placeholders(template)?
        .into_iter()
        .find(|name| !allowed.contains(&name.as_str()))
    {
        Some(name) => Err(TemplateError::UnknownPlaceholder(name)),
        None => Ok(()),
    }
}

/// Fills in the placeholders from `values`; a placeholder without a value is
/// [`TemplateError::UnknownPlaceholder`]. Values are inserted as they are (braces in a value
/// stay literal). The result's length is not checked.
pub fn render(template: &str, values: &BTreeMap<&str, String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template)? {
        match piece {
            Piece::Literal(s) => out.push_str(s),
            Piece::Placeholder(name) => match values.get(name) {
                Some(value) => out.push_str(value),
                None => return Err(TemplateError::UnknownPlaceholder(name.to_owned())),
            },
        }
    }
    Ok(out)
}

/// The external gateway's request body from the operator's JSON template: inside every JSON
/// string value (keys are left alone), `{to}`, `{text}` and `{sender}` are replaced by the
/// values, in one pass (a value that itself contains `{to}` is not replaced again). The
/// result is serialised by `serde_json`, so every value is escaped correctly. E.g.
/// `{"number":"{to}","message":"{text}"}`.
pub fn gateway_body(
    template: &str,
    to: &str,
    text: &str,
    sender: &str,
) -> Result<String, TemplateError> {
    let mut value: Value =
        serde_json::from_str(template).map_err(|e| TemplateError::BadJson(e.to_string()))?;
    let vars = [("{to}", to), ("{text}", text), ("{sender}", sender)];
    substitute(&mut value, &vars);
    serde_json::to_string(&value).map_err(|e| TemplateError::BadJson(e.to_string()))
}

fn substitute(value: &mut Value, vars: &[(&str, &str)]) {
    match value {
        Value::String(s) => {
            if s.contains('{') {
                *s = replace_once(s, vars);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, vars)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, vars)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn replace_once(s: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        match vars.iter().find(|(key, _)| tail.starts_with(key)) {
            Some((key, value)) => {
                out.push_str(value);
                rest = &tail[key.len()..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|&(k, v)| (k, v.to_owned())).collect()
    }

    #[test]
    fn placeholders_come_in_order_of_first_appearance_once_each() {
        let t = "Halo {nama}, tagihan {periode} sebesar {jumlah}. Terima kasih {nama}!";
        assert_eq!(
            placeholders(t),
            Ok(vec!["nama".into(), "periode".into(), "jumlah".into()])
        );
        assert_eq!(placeholders("tanpa placeholder"), Ok(vec![]));
        assert_eq!(placeholders("{_a1}"), Ok(vec!["_a1".into()]));
    }

    #[test]
    fn doubled_braces_are_literal() {
        assert_eq!(placeholders("{{nama}} {{ }}"), Ok(vec![]));
        assert_eq!(
            render("{{{nama}}}", &values(&[("nama", "Budi")])),
            Ok("{Budi}".into())
        );
        assert_eq!(render("a}}b{{c", &values(&[])), Ok("a}b{c".into()));
    }

    #[test]
    fn unbalanced_braces_name_their_position_in_characters() {
        assert_eq!(
            placeholders("Halo {nama"),
            Err(TemplateError::Unclosed { at: 5 })
        );
        assert_eq!(
            placeholders("ü } x"),
            Err(TemplateError::Unclosed { at: 2 })
        );
        assert_eq!(placeholders("{"), Err(TemplateError::Unclosed { at: 0 }));
        assert_eq!(placeholders("{a}}"), Err(TemplateError::Unclosed { at: 3 }));
    }

    #[test]
    fn names_must_be_lowercase_identifiers() {
        for bad in ["{Nama}", "{}", "{1a}", "{na ma}", "{a-b}", "{a{b}", "{é}"] {
            assert!(
                matches!(placeholders(bad), Err(TemplateError::UnknownPlaceholder(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn check_accepts_only_offered_names_and_sane_lengths() {
        let allowed = ["nama", "jumlah"];
        assert_eq!(check("Halo {nama}, {jumlah}", &allowed), Ok(()));
        assert_eq!(
            check("Halo {nama}, {alamat}", &allowed),
            Err(TemplateError::UnknownPlaceholder("alamat".into()))
        );
        assert_eq!(check("  \n\t", &allowed), Err(TemplateError::Empty));
        assert_eq!(check("", &allowed), Err(TemplateError::Empty));
        assert_eq!(check(&"é".repeat(MAX_TEMPLATE_CHARS), &allowed), Ok(()));
        assert_eq!(
            check(&"a".repeat(MAX_TEMPLATE_CHARS + 1), &allowed),
            Err(TemplateError::TooLong {
                max: MAX_TEMPLATE_CHARS
            })
        );
        assert_eq!(
            check("Halo {nama", &allowed),
            Err(TemplateError::Unclosed { at: 5 })
        );
    }

    #[test]
    fn render_fills_every_placeholder_and_refuses_a_missing_value() {
        let v = values(&[("nama", "Budi"), ("jumlah", "Rp 150.000")]);
        assert_eq!(
            render("Halo {nama}, tagihan Anda {jumlah}.", &v),
            Ok("Halo Budi, tagihan Anda Rp 150.000.".into())
        );
        assert_eq!(
            render("Halo {nama} {periode}", &v),
            Err(TemplateError::UnknownPlaceholder("periode".into()))
        );
        let braces = values(&[("nama", "{jumlah}")]);
        assert_eq!(render("{nama}", &braces), Ok("{jumlah}".into()));
    }

    #[test]
    fn gateway_body_substitutes_inside_strings_and_escapes() {
        let body = gateway_body(
            r#"{"number":"{to}","message":"{text}","meta":{"from":"sender {sender}","n":[1,"{to}"]},"{to}":true}"#,
            "6281234",
            "Baris \"satu\"\nbaris dua {to}",
            "kasir",
        );
        let parsed: Value = serde_json::from_str(&body.expect("renders")).expect("JSON");
        assert_eq!(
            parsed,
            serde_json::json!({"number":"6281234","message":"Baris \"satu\"\nbaris dua {to}",
                "meta":{"from":"sender kasir","n":[1,"6281234"]},"{to}":true})
        );
    }

    #[test]
    fn gateway_body_refuses_a_template_that_is_not_json() {
        assert!(matches!(
            gateway_body(r#"{"number":{to}}"#, "1", "t", "s"),
            Err(TemplateError::BadJson(_))
        ));
        assert!(matches!(
            gateway_body("", "1", "t", "s"),
            Err(TemplateError::BadJson(_))
        ));
    }

    proptest! {
        #[test]
        fn render_never_panics(template in ".{0,200}", brace_heavy in "[{}a-z_ ]{0,40}") {
            let v = values(&[("nama", "Budi"), ("a", "x")]);
            for t in [&template, &brace_heavy] {
                // render succeeds exactly when the text parses and every name has a value.
                let names = placeholders(t);
                let fillable = names
                    .as_ref()
                    .is_ok_and(|n| n.iter().all(|name| v.contains_key(name.as_str())));
                prop_assert_eq!(render(t, &v).is_ok(), fillable);
                if let Err(e) = names {
                    prop_assert_eq!(render(t, &v), Err(e));
                }
            }
        }

        #[test]
        fn gateway_body_always_carries_the_exact_text(
            text in any::<String>(),
            to in "[0-9+]{0,15}",
            sender in ".{0,20}",
        ) {
            let body = gateway_body(
                r#"{"number":"{to}","message":"{text}","note":"dari {sender}: {text}"}"#,
                &to, &text, &sender,
            );
            let body = match body {
                Ok(b) => b,
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            };
            let parsed: Value = match serde_json::from_str(&body) {
                Ok(v) => v,
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            };
            prop_assert_eq!(parsed["message"].as_str(), Some(text.as_str()));
            prop_assert_eq!(parsed["number"].as_str(), Some(to.as_str()));
            let note = format!("dari {sender}: {text}");
            prop_assert_eq!(parsed["note"].as_str(), Some(note.as_str()));
        }
    }
}
