//! Per-device MQTT topic authorization for Gema's broker.
//!
//! The broker asks this crate before anything else sees a SUBSCRIBE, a PUBLISH or a Last
//! Will. A device may subscribe only inside `devices/<its id>/down/…` and publish only inside
//! `devices/<its id>/up/…`; service principals from configuration get explicit Mosquitto-style
//! rules whose patterns may contain `%u` (username) and `%c` (client id). `$share/…` is
//! refused for everyone (the broker has no shared subscriptions), `$SYS/…` for devices.
//!
//! Architecture Invariant: this crate is pure. It does no I/O, holds no state, and depends on
//! no other workspace crate, so every decision can be tested exhaustively without a socket.

pub mod topic;

use topic::{covers, matches, validate_filter, validate_topic_name};

/// First level of every device topic (mirrors `gema-firmware-protocol`'s `topic::ROOT`, which
/// this crate must not depend on; the broker tests that the two agree).
pub const DEVICE_ROOT: &str = "devices";
/// Level below a device's id that the device may subscribe inside.
pub const DOWN_LEVEL: &str = "down";
/// Level below a device's id that the device may publish inside.
pub const UP_LEVEL: &str = "up";

/// What a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Subscribe (and so receive).
    Read,
    /// Publish.
    Write,
    ReadWrite,
}

impl Access {
    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }
    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// One Mosquitto-style ACL line for a service principal: `read devices/+/up/#`,
/// `write devices/%u/cmd`, `readwrite monitor/%c/#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub access: Access,
    /// A topic filter; `%u` and `%c` stand for a whole level holding the username or the
    /// client id.
    pub pattern: String,
}

/// Why a rule line cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleParseError(pub String);

impl core::fmt::Display for RuleParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "invalid ACL rule: {}", self.0)
    }
}

impl std::error::Error for RuleParseError {}

impl Rule {
    pub fn new(access: Access, pattern: impl Into<String>) -> Self {
        Self {
            access,
            pattern: pattern.into(),
        }
    }

    /// Parses `"<read|write|readwrite> <pattern>"`. The pattern must be a valid filter once
    /// `%u`/`%c` are replaced by a plain level.
    pub fn parse(line: &str) -> Result<Self, RuleParseError> {
        let line = line.trim();
        let (access, pattern) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| RuleParseError(format!("{line:?}: expected \"<access> <pattern>\"")))?;
        let access = match access {
            "read" => Access::Read,
            "write" => Access::Write,
            "readwrite" => Access::ReadWrite,
            other => {
                return Err(RuleParseError(format!(
                    "{other:?}: access must be read, write or readwrite"
                )));
            }
        };
        let pattern = pattern.trim();
        let probe = pattern.replace("%u", "u").replace("%c", "c");
        validate_filter(&probe).map_err(|e| RuleParseError(format!("{pattern:?}: {e}")))?;
        if probe.starts_with("$share/") {
            return Err(RuleParseError(format!(
                "{pattern:?}: shared subscriptions are not supported"
            )));
        }
        Ok(Self::new(access, pattern))
    }

    /// The pattern with `%u`/`%c` substituted, or `None` when a value could not stand as one
    /// plain topic level (empty, or holding `/`, `+`, `#`, NUL): such a rule then grants
    /// nothing rather than something wider than intended.
    fn expand(&self, username: &str, client_id: &str) -> Option<String> {
        let uses_u = self.pattern.contains("%u");
        let uses_c = self.pattern.contains("%c");
        if (uses_u && !is_plain_level(username)) || (uses_c && !is_plain_level(client_id)) {
            return None;
        }
        Some(
            self.pattern
                .replace("%u", username)
                .replace("%c", client_id),
        )
    }
}

/// Non-empty, one level, no wildcard, not a `$` topic.
fn is_plain_level(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('$') && !s.contains(['/', '+', '#', '\0'])
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub enum Principal<'a> {
    /// A soundbox, authenticated as `id`.
    Device { id: &'a str },
    /// A configured service principal with its own rules.
    Service {
        username: &'a str,
        client_id: &'a str,
        rules: &'a [Rule],
    },
}

/// Why an operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The topic or filter is not valid MQTT.
    Invalid(topic::TopicError),
    /// `$share/…`: not supported by the broker.
    SharedSubscription,
    /// `$…` topics (such as `$SYS/…`) are not for devices.
    SystemTopic,
    /// Outside the device's own namespace (another id, its own other direction, or a
    /// wildcard that could reach outside).
    OutsideNamespace,
    /// The device id itself could not stand as one plain topic level.
    InvalidIdentity,
    /// No service rule grants this.
    NoRule,
}

impl core::fmt::Display for Denied {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Denied::Invalid(e) => write!(f, "invalid topic: {e}"),
            Denied::SharedSubscription => f.write_str("shared subscriptions are not supported"),
            Denied::SystemTopic => f.write_str("$ topics are not allowed"),
            Denied::OutsideNamespace => f.write_str("outside the device's namespace"),
            Denied::InvalidIdentity => f.write_str("identity cannot be used in a topic"),
            Denied::NoRule => f.write_str("no ACL rule allows this"),
        }
    }
}

impl std::error::Error for Denied {}

impl Denied {
    /// Short stable name, for metric labels.
    pub fn as_label(&self) -> &'static str {
        match self {
            Denied::Invalid(_) => "invalid",
            Denied::SharedSubscription => "shared",
            Denied::SystemTopic => "system",
            Denied::OutsideNamespace => "namespace",
            Denied::InvalidIdentity => "identity",
            Denied::NoRule => "no_rule",
        }
    }
}

/// Whether `principal` may subscribe to `filter`.
pub fn check_subscribe(principal: Principal<'_>, filter: &str) -> Result<(), Denied> {
    validate_filter(filter).map_err(Denied::Invalid)?;
    if filter.starts_with("$share/") || filter == "$share" {
        return Err(Denied::SharedSubscription);
    }
    match principal {
        Principal::Device { id } => {
            device_namespace_check(id, filter, DOWN_LEVEL, |rest| validate_filter(rest).is_ok())
        }
        Principal::Service {
            username,
            client_id,
            rules,
        } => {
            let allowed = rules.iter().filter(|r| r.access.reads()).any(|r| {
                r.expand(username, client_id)
                    .is_some_and(|p| covers(&p, filter))
            });
            if allowed { Ok(()) } else { Err(Denied::NoRule) }
        }
    }
}

/// Whether `principal` may publish to `topic` (also used for a Last Will at CONNECT).
pub fn check_publish(principal: Principal<'_>, topic: &str) -> Result<(), Denied> {
    validate_topic_name(topic).map_err(Denied::Invalid)?;
    match principal {
        Principal::Device { id } => device_namespace_check(id, topic, UP_LEVEL, |_| true),
        Principal::Service {
            username,
            client_id,
            rules,
        } => {
            if topic.starts_with("$share/") {
                return Err(Denied::SharedSubscription);
            }
            let allowed = rules.iter().filter(|r| r.access.writes()).any(|r| {
                r.expand(username, client_id)
                    .is_some_and(|p| matches(&p, topic))
            });
            if allowed { Ok(()) } else { Err(Denied::NoRule) }
        }
    }
}

/// `s` must be `devices/<id>/<direction>/<rest>` with the first three levels literal and a
/// non-empty `rest` accepted by `rest_ok`.
fn device_namespace_check(
    id: &str,
    s: &str,
    direction: &str,
    rest_ok: impl Fn(&str) -> bool,
) -> Result<(), Denied> {
    if !is_plain_level(id) {
        return Err(Denied::InvalidIdentity);
    }
    if s.starts_with('$') {
        return Err(Denied::SystemTopic);
    }
    let mut parts = s.splitn(4, '/');
    let (Some(root), Some(sid), Some(dir), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Denied::OutsideNamespace);
    };
    if root != DEVICE_ROOT || sid != id || dir != direction || rest.is_empty() || !rest_ok(rest) {
        return Err(Denied::OutsideNamespace);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Principal<'static> = Principal::Device { id: "a" };

    #[test]
    fn device_subscribes_only_inside_its_down_namespace() {
        for ok in [
            "devices/a/down/#",
            "devices/a/down/+",
            "devices/a/down/announce",
            "devices/a/down/+/x",
        ] {
            assert_eq!(check_subscribe(A, ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("devices/b/down/#", Denied::OutsideNamespace),
            ("devices/+/down/#", Denied::OutsideNamespace),
            ("devices/a/#", Denied::OutsideNamespace),
            ("devices/a/+/x", Denied::OutsideNamespace),
            ("devices/a/up/#", Denied::OutsideNamespace),
            ("devices/a/down", Denied::OutsideNamespace),
            ("devices/a/down/", Denied::OutsideNamespace),
            ("#", Denied::OutsideNamespace),
            ("+/a/down/#", Denied::OutsideNamespace),
            ("$SYS/#", Denied::SystemTopic),
            ("$share/g/devices/a/down/#", Denied::SharedSubscription),
            ("$share/g/devices/b/#", Denied::SharedSubscription),
        ] {
            assert_eq!(check_subscribe(A, bad), Err(why), "{bad}");
        }
        assert!(matches!(
            check_subscribe(A, "devices/a/down/#/x"),
            Err(Denied::Invalid(_))
        ));
    }

    #[test]
    fn device_publishes_only_inside_its_up_namespace() {
        assert_eq!(check_publish(A, "devices/a/up/event"), Ok(()));
        assert_eq!(check_publish(A, "devices/a/up/x/y"), Ok(()));
        for bad in [
            "devices/b/up/event",
            "devices/a/down/announce",
            "devices/a/up",
            "devices/a/up/",
            "devices/a",
            "other",
        ] {
            assert_eq!(
                check_publish(A, bad),
                Err(Denied::OutsideNamespace),
                "{bad}"
            );
        }
        assert_eq!(check_publish(A, "$SYS/x"), Err(Denied::SystemTopic));
        assert!(matches!(
            check_publish(A, "devices/a/up/+"),
            Err(Denied::Invalid(_))
        ));
    }

    #[test]
    fn a_device_id_that_is_not_one_level_gets_nothing() {
        for id in ["", "+", "#", "a/b", "$x"] {
            let p = Principal::Device { id };
            assert_eq!(
                check_subscribe(p, "devices/x/down/#"),
                Err(Denied::InvalidIdentity)
            );
        }
    }

    #[test]
    fn service_rules_use_mosquitto_substitutions() {
        let rules = [
            Rule::parse("read devices/+/up/#").unwrap(),
            Rule::parse("write devices/%u/cmd").unwrap(),
            Rule::parse("readwrite svc/%c/#").unwrap(),
        ];
        let p = Principal::Service {
            username: "monitor",
            client_id: "m1",
            rules: &rules,
        };
        assert_eq!(check_subscribe(p, "devices/+/up/#"), Ok(()));
        assert_eq!(check_subscribe(p, "devices/a/up/event"), Ok(()));
        assert_eq!(check_subscribe(p, "devices/+/down/#"), Err(Denied::NoRule));
        assert_eq!(check_subscribe(p, "#"), Err(Denied::NoRule));
        assert_eq!(check_subscribe(p, "$SYS/#"), Err(Denied::NoRule));
        assert_eq!(check_publish(p, "devices/monitor/cmd"), Ok(()));
        assert_eq!(check_publish(p, "devices/a/up/x"), Err(Denied::NoRule));
        assert_eq!(check_subscribe(p, "svc/m1/x"), Ok(()));
        assert_eq!(check_publish(p, "svc/m1/x"), Ok(()));
        assert_eq!(check_publish(p, "svc/m2/x"), Err(Denied::NoRule));
        assert_eq!(
            check_subscribe(p, "$share/g/devices/+/up/#"),
            Err(Denied::SharedSubscription)
        );

        // A username that would widen the pattern grants nothing.
        let wide = Principal::Service {
            username: "+",
            client_id: "#",
            rules: &rules,
        };
        assert_eq!(check_publish(wide, "devices/x/cmd"), Err(Denied::NoRule));
        assert_eq!(check_subscribe(wide, "svc/x/y"), Err(Denied::NoRule));
    }

    #[test]
    fn rule_lines_are_parsed_strictly() {
        assert_eq!(
            Rule::parse("  readwrite  a/%u/#  ").unwrap(),
            Rule::new(Access::ReadWrite, "a/%u/#")
        );
        assert!(Rule::parse("read").is_err());
        assert!(Rule::parse("delete a/b").is_err());
        assert!(Rule::parse("read a/#/b").is_err());
        assert!(Rule::parse("read $share/g/a").is_err());
    }
}
