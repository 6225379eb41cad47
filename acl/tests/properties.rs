//! Property tests: whatever filter or topic a device sends, an allowed one can only ever touch
//! the device's own namespace; rule coverage never grants a topic the rule does not match; a
//! service's rules decide as "first matching rule wins" would for every single topic; and the
//! rule parser never panics.

use gema_acl::topic::{covers, matches, validate_filter, validate_topic_name};
use gema_acl::{
    Access, Principal, Rule, check_publish, check_receive, check_subscribe, has_deny_rules,
};
use proptest::prelude::*;

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("devices".to_owned()),
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("down".to_owned()),
        Just("up".to_owned()),
        Just("$SYS".to_owned()),
        Just("$share".to_owned()),
        Just(String::new()),
        "[a-z$]{1,3}",
    ]
}

fn filter_like() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![level(), Just("+".to_owned()), Just("#".to_owned())],
        1..6,
    )
    .prop_map(|levels| {
        // `#` is only valid as the last level: cut after the first one.
        let end = levels
            .iter()
            .position(|l| l == "#")
            .map_or(levels.len(), |i| i + 1);
        levels[..end].join("/")
    })
}

/// Anything a hostile client might send, valid or not.
fn raw_filter() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![level(), "[a-z+#/$]{1,3}"], 1..6).prop_map(|l| l.join("/"))
}

fn topic_like() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..6).prop_map(|l| l.join("/"))
}

fn in_namespace(topic: &str, id: &str, dir: &str) -> bool {
    let base = format!("devices/{id}/{dir}");
    topic == base || topic.starts_with(&format!("{base}/"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn an_allowed_device_subscription_only_reaches_its_down_namespace(
        filter in prop_oneof![filter_like(), raw_filter()],
        topics in prop::collection::vec(topic_like(), 16),
    ) {
        if check_subscribe(Principal::Device { id: "a" }, &filter).is_ok() {
            prop_assert!(filter.starts_with("devices/a/down/"));
            for t in &topics {
                if matches(&filter, t) {
                    prop_assert!(in_namespace(t, "a", "down"), "{} matched {}", filter, t);
                }
            }
        }
    }

    #[test]
    fn an_allowed_device_publish_is_inside_its_up_namespace(topic in prop_oneof![topic_like(), raw_filter()]) {
        if check_publish(Principal::Device { id: "a" }, &topic).is_ok() {
            prop_assert!(topic.starts_with("devices/a/up/"));
            prop_assert!(validate_topic_name(&topic).is_ok());
        }
    }

    #[test]
    fn coverage_implies_matching(
        pattern in filter_like(),
        filter in filter_like(),
        topics in prop::collection::vec(topic_like(), 16),
    ) {
        prop_assume!(validate_filter(&pattern).is_ok() && validate_filter(&filter).is_ok());
        if covers(&pattern, &filter) {
            for t in &topics {
                if matches(&filter, t) {
                    prop_assert!(matches(&pattern, t), "{} covers {} but not {}", pattern, filter, t);
                }
            }
        }
    }

    #[test]
    fn a_filter_covers_itself(filter in filter_like()) {
        prop_assume!(validate_filter(&filter).is_ok());
        prop_assert!(covers(&filter, &filter));
    }

    #[test]
    fn arbitrary_strings_and_ids_never_widen_a_device(s in ".{0,64}", id in ".{0,8}") {
        let p = Principal::Device { id: &id };
        let down = format!("devices/{id}/down/");
        let up = format!("devices/{id}/up/");
        if check_subscribe(p, &s).is_ok() {
            prop_assert!(s.starts_with(&down));
            prop_assert!(!id.is_empty() && !id.contains(['/', '+', '#']));
        }
        if check_publish(p, &s).is_ok() {
            prop_assert!(s.starts_with(&up));
            prop_assert!(!s.contains(['+', '#']));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_rule_parser_is_total(line in ".{0,48}", words in prop::collection::vec(raw_filter(), 0..3)) {
        let access = ["read", "write", "readwrite", "deny", "Deny", ""];
        let candidates = [
            line.clone(),
            format!("{} {}", access[line.len() % access.len()], line),
            format!("{} {}", access[words.len() % access.len()], words.join(" ")),
        ];
        for c in &candidates {
            if let Ok(rule) = Rule::parse(c) {
                // What parses prints back to itself.
                prop_assert_eq!(Rule::parse(&rule.to_string()), Ok(rule));
            }
        }
        let _ = Rule::parse_list(&candidates);
    }

    #[test]
    fn service_decisions_follow_the_first_matching_rule(
        rules in prop::collection::vec((0..4usize, filter_like()), 1..5),
        filter in filter_like(),
        topics in prop::collection::vec(topic_like(), 16),
    ) {
        let accesses = [Access::Read, Access::Write, Access::ReadWrite, Access::Deny];
        let rules: Vec<Rule> = rules
            .into_iter()
            .filter(|(_, p)| validate_filter(p).is_ok() && !p.starts_with("$share"))
            .map(|(a, p)| Rule::new(accesses[a], p))
            .collect();
        let p = Principal::Service { username: "u", client_id: "c", rules: &rules };
        // The reference: per topic, the first rule that matches it and applies decides.
        let first_match = |topic: &str, reads: bool| {
            rules.iter().find_map(|r| {
                let applies = match r.access {
                    Access::Deny => true,
                    Access::Read => reads,
                    Access::Write => !reads,
                    Access::ReadWrite => true,
                };
                (applies && matches(&r.pattern, topic)).then_some(r.access != Access::Deny)
            }).unwrap_or(false)
        };
        for t in &topics {
            if validate_topic_name(t).is_ok() && !t.starts_with("$share/") {
                prop_assert_eq!(check_publish(p, t).is_ok(), first_match(t, false), "publish {}", t);
                prop_assert_eq!(check_receive(p, t).is_ok(), first_match(t, true), "receive {}", t);
            }
        }
        if validate_filter(&filter).is_ok() && check_subscribe(p, &filter).is_ok() {
            for t in &topics {
                // What a granted subscription matches is readable, except what a deny rule
                // withholds per message; without deny rules the grant alone is exact.
                if matches(&filter, t) && !first_match(t, true) {
                    prop_assert!(has_deny_rules(&rules), "{} granted but {} is not readable", filter, t);
                    prop_assert!(check_receive(p, t).is_err());
                }
            }
        }
    }
}
