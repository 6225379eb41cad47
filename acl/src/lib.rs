//! Per-device MQTT topic authorization for Gema's broker.
//!
//! The broker asks this crate before anything else sees a SUBSCRIBE, a PUBLISH or a Last
//! Will. A device may subscribe only inside `devices/<its id>/down/…` and publish only inside
//! `devices/<its id>/up/…`; service principals from configuration get explicit Mosquitto-style
//! rules whose patterns may contain `%u` (username) and `%c` (client id). `$share/…` is
//! refused for everyone (the broker has no shared subscriptions), `$SYS/…` for devices.
//! A **provisioning** session (a factory-fresh device connected with its batch's claim
//! credential, client id = its serial) may subscribe to exactly `provisioning/<serial>/down`
//! and publish to exactly `provisioning/<serial>/up`: no wildcard, nothing else.
//!
//! A service's rules are read in order and the first rule that matches decides, as in
//! Mosquitto's `topic deny …`: `deny <filter>` refuses both directions, a `read` rule decides
//! only subscriptions and a `write` rule only publishes (a rule of the other direction is
//! passed over). A subscription is a set of topics: it is refused when an earlier `deny` rule
//! covers the whole filter (SUBACK 0x80) and granted by the first `read` rule that covers the
//! whole filter. A granted wildcard may still match a denied topic (`test/+` beside
//! `deny test/nosubscribe`), so for a principal with `deny` rules the broker asks
//! [`check_receive`] for each message before it is queued, as Mosquitto checks its read ACL at
//! delivery. Without `deny` rules the subscription check alone is exact. A `deny` placed after
//! an allow rule that already decides every topic it names would never apply;
//! [`check_rule_order`] refuses such a list.
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
/// First level of the provisioning topics (mirrors `gema-firmware-protocol`'s
/// `claim::ROOT`).
pub const PROVISIONING_ROOT: &str = "provisioning";

/// What a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Subscribe (and so receive).
    Read,
    /// Publish.
    Write,
    ReadWrite,
    /// Neither: a topic this rule matches is refused in both directions, whatever later rules
    /// say.
    Deny,
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
/// `write devices/%u/cmd`, `readwrite monitor/%c/#`, `deny devices/+/up/secret`.
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

    /// Parses `"<read|write|readwrite|deny> <pattern>"`. The pattern must be a valid filter
    /// once `%u`/`%c` are replaced by a plain level. Never panics; anything else is an error.
    pub fn parse(line: &str) -> Result<Self, RuleParseError> {
        let line = line.trim();
        let (access, pattern) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| RuleParseError(format!("{line:?}: expected \"<access> <pattern>\"")))?;
        let access = match access {
            "read" => Access::Read,
            "write" => Access::Write,
            "readwrite" => Access::ReadWrite,
            "deny" => Access::Deny,
            other => {
                return Err(RuleParseError(format!(
                    "{other:?}: access must be read, write, readwrite or deny"
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

    /// What a `deny` rule refuses for this principal. A value that cannot stand as one plain
    /// level is replaced by `+` (any level), so a deny rule never refuses less than intended
    /// because of an odd user name or client id.
    fn expand_deny(&self, username: &str, client_id: &str) -> String {
        let value = |v: &str| {
            if is_plain_level(v) {
                v.to_owned()
            } else {
                "+".to_owned()
            }
        };
        self.pattern
            .replace("%u", &value(username))
            .replace("%c", &value(client_id))
    }

    /// Parses every line and checks their order with [`check_rule_order`].
    pub fn parse_list<S: AsRef<str>>(lines: &[S]) -> Result<Vec<Rule>, RuleParseError> {
        let rules = lines
            .iter()
            .map(|l| Rule::parse(l.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        check_rule_order(&rules)?;
        Ok(rules)
    }
}

impl core::fmt::Display for Rule {
    /// The rule as it is written in configuration.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let access = match self.access {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "readwrite",
            Access::Deny => "deny",
        };
        write!(f, "{access} {}", self.pattern)
    }
}

/// Refuses a rule list in which a `deny` rule can never apply, because earlier allow rules
/// already decide every topic it matches in both directions (`readwrite #` before
/// `deny secret/#`): first match wins, so such a list would grant what it seems to deny. A
/// reader expects the `deny` to hold; this makes the list an error instead of a silent grant.
pub fn check_rule_order(rules: &[Rule]) -> Result<(), RuleParseError> {
    for (i, deny) in rules.iter().enumerate() {
        if deny.access != Access::Deny {
            continue;
        }
        let earlier = &rules[..i];
        let decided_by = |direction: fn(Access) -> bool| {
            earlier
                .iter()
                .find(|r| direction(r.access) && covers(&r.pattern, &deny.pattern))
        };
        if let (Some(read), Some(write)) = (decided_by(Access::reads), decided_by(Access::writes)) {
            let by = if read == write {
                format!("{:?}", read.to_string())
            } else {
                format!("{:?} and {:?}", read.to_string(), write.to_string())
            };
            return Err(RuleParseError(format!(
                "{:?} is never applied: {by} comes first and decides every topic it names \
                 (the first matching rule wins; put deny rules before broader allow rules)",
                deny.to_string()
            )));
        }
    }
    Ok(())
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
    /// A claim session: a device not yet provisioned, known only by its serial (its client
    /// id), confined to `provisioning/<serial>/down` (subscribe) and
    /// `provisioning/<serial>/up` (publish).
    Provisioning { serial: &'a str },
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
    /// A service's `deny` rule refuses this.
    DenyRule,
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
            Denied::DenyRule => f.write_str("an ACL deny rule refuses this"),
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
            Denied::DenyRule => "deny_rule",
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
        Principal::Provisioning { serial } => provisioning_check(serial, filter, DOWN_LEVEL),
        Principal::Service {
            username,
            client_id,
            rules,
        } => first_match(rules, username, client_id, Access::reads, |p| {
            covers(p, filter)
        }),
    }
}

/// Whether `principal` may receive a message on `topic`, which one of its granted
/// subscriptions matched: the first rule that matches the topic and decides reading (a
/// `deny`, or a `read`/`readwrite` rule) wins. Only a principal whose rules include `deny`
/// can be refused here ([`has_deny_rules`]); the broker asks only for those.
pub fn check_receive(principal: Principal<'_>, topic: &str) -> Result<(), Denied> {
    validate_topic_name(topic).map_err(Denied::Invalid)?;
    match principal {
        Principal::Device { id } => device_namespace_check(id, topic, DOWN_LEVEL, |_| true),
        Principal::Provisioning { serial } => provisioning_check(serial, topic, DOWN_LEVEL),
        Principal::Service {
            username,
            client_id,
            rules,
        } => first_match(rules, username, client_id, Access::reads, |p| {
            matches(p, topic)
        }),
    }
}

/// Whether any rule is a `deny` (so what a granted subscription delivers must be checked per
/// message with [`check_receive`]).
pub fn has_deny_rules(rules: &[Rule]) -> bool {
    rules.iter().any(|r| r.access == Access::Deny)
}

/// Whether `principal` may publish to `topic` (also used for a Last Will at CONNECT).
pub fn check_publish(principal: Principal<'_>, topic: &str) -> Result<(), Denied> {
    validate_topic_name(topic).map_err(Denied::Invalid)?;
    match principal {
        Principal::Device { id } => device_namespace_check(id, topic, UP_LEVEL, |_| true),
        Principal::Provisioning { serial } => provisioning_check(serial, topic, UP_LEVEL),
        Principal::Service {
            username,
            client_id,
            rules,
        } => {
            if topic.starts_with("$share/") {
                return Err(Denied::SharedSubscription);
            }
            first_match(rules, username, client_id, Access::writes, |p| {
                matches(p, topic)
            })
        }
    }
}

/// A service's rules in order: the first that applies decides. A `deny` rule applies when
/// `hits` its pattern (with `%u`/`%c` that cannot be substituted standing for any level, so
/// a deny refuses more, never less); another rule when it grants the direction (`grants`)
/// and `hits` its expanded pattern.
fn first_match(
    rules: &[Rule],
    username: &str,
    client_id: &str,
    grants: fn(Access) -> bool,
    hits: impl Fn(&str) -> bool,
) -> Result<(), Denied> {
    for rule in rules {
        if rule.access == Access::Deny {
            if hits(&rule.expand_deny(username, client_id)) {
                return Err(Denied::DenyRule);
            }
        } else if grants(rule.access) && rule.expand(username, client_id).is_some_and(|p| hits(&p))
        {
            return Ok(());
        }
    }
    Err(Denied::NoRule)
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

/// `s` must be exactly `provisioning/<serial>/<direction>`: one literal topic, so a
/// wildcard (which is not a literal level) never passes.
fn provisioning_check(serial: &str, s: &str, direction: &str) -> Result<(), Denied> {
    if !is_plain_level(serial) {
        return Err(Denied::InvalidIdentity);
    }
    if s.starts_with('$') {
        return Err(Denied::SystemTopic);
    }
    let mut parts = s.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(PROVISIONING_ROOT), Some(sid), Some(dir), None)
            if sid == serial && dir == direction =>
        {
            Ok(())
        }
        _ => Err(Denied::OutsideNamespace),
    }
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
        assert_eq!(
            Rule::parse("deny test/nosubscribe").unwrap(),
            Rule::new(Access::Deny, "test/nosubscribe")
        );
        assert!(Rule::parse("deny").is_err());
        assert!(Rule::parse("deny a/#/b").is_err());
        for line in ["read a/+", "write %u/x", "readwrite #", "deny $SYS/#"] {
            assert_eq!(Rule::parse(line).unwrap().to_string(), line);
        }
    }

    fn service<'a>(rules: &'a [Rule]) -> Principal<'a> {
        Principal::Service {
            username: "svc",
            client_id: "c1",
            rules,
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_deny_refuses_both_directions() {
        let rules =
            Rule::parse_list(&["deny test/nosubscribe", "deny secret/#", "readwrite #"]).unwrap();
        let p = service(&rules);
        assert_eq!(check_publish(p, "test/x"), Ok(()));
        assert_eq!(check_publish(p, "test/nosubscribe"), Err(Denied::DenyRule));
        assert_eq!(check_publish(p, "secret"), Err(Denied::DenyRule));
        assert_eq!(check_publish(p, "secret/a/b"), Err(Denied::DenyRule));
        assert_eq!(check_subscribe(p, "test/x"), Ok(()));
        assert_eq!(
            check_subscribe(p, "test/nosubscribe"),
            Err(Denied::DenyRule)
        );
        assert_eq!(check_subscribe(p, "secret/+/x"), Err(Denied::DenyRule));
        assert_eq!(check_subscribe(p, "secret/#"), Err(Denied::DenyRule));
        // A wildcard that also matches a denied topic is granted; that topic is withheld
        // per message.
        assert_eq!(check_subscribe(p, "test/+"), Ok(()));
        assert_eq!(check_subscribe(p, "#"), Ok(()));
        assert_eq!(check_receive(p, "test/x"), Ok(()));
        assert_eq!(check_receive(p, "test/nosubscribe"), Err(Denied::DenyRule));
        assert_eq!(check_receive(p, "secret/a"), Err(Denied::DenyRule));
        assert!(has_deny_rules(&rules));
        // `$` topics are matched by neither `#` nor a deny rule's leading wildcard.
        assert_eq!(check_publish(p, "$TopicA/B"), Err(Denied::NoRule));

        // A rule of the other direction is passed over, not taken as a decision.
        let rules = Rule::parse_list(&["read a/#", "deny a/b", "write a/#"]).unwrap();
        let p = service(&rules);
        assert_eq!(check_subscribe(p, "a/b"), Ok(()));
        assert_eq!(check_receive(p, "a/b"), Ok(()));
        assert_eq!(check_publish(p, "a/b"), Err(Denied::DenyRule));
        assert_eq!(check_publish(p, "a/c"), Ok(()));
    }

    #[test]
    fn a_deny_rule_with_an_unusable_substitution_refuses_more_not_less() {
        let rules = Rule::parse_list(&["deny private/%u/#", "readwrite private/#"]).unwrap();
        let odd = Principal::Service {
            username: "+",
            client_id: "c",
            rules: &rules,
        };
        assert_eq!(check_publish(odd, "private/x/y"), Err(Denied::DenyRule));
        let plain = service(&rules);
        assert_eq!(check_publish(plain, "private/svc/y"), Err(Denied::DenyRule));
        assert_eq!(check_publish(plain, "private/other/y"), Ok(()));
    }

    #[test]
    fn a_deny_rule_that_could_never_apply_is_an_error() {
        let err = Rule::parse_list(&["readwrite #", "deny secret/#"]).unwrap_err();
        assert!(
            err.0.contains("\"deny secret/#\" is never applied"),
            "{err}"
        );
        assert!(err.0.contains("\"readwrite #\""), "{err}");
        assert!(Rule::parse_list(&["read #", "write secret/#", "deny secret/x"]).is_err());
        // Still applies to one direction, or to `$` topics `#` does not match: accepted.
        assert!(Rule::parse_list(&["read #", "deny secret/#"]).is_ok());
        assert!(Rule::parse_list(&["readwrite #", "deny $SYS/#"]).is_ok());
        assert!(Rule::parse_list(&["deny secret/#", "readwrite #"]).is_ok());
        assert!(Rule::parse_list(&["readwrite #", "bogus x"]).is_err());
    }
}
