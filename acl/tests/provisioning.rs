//! A claim session (a device provisioning itself with its batch's claim credential) may use
//! exactly two topics: subscribe `provisioning/<its serial>/down`, publish
//! `provisioning/<its serial>/up`. Nothing else: no device topics, no wildcard, no other
//! serial's namespace, no `$SYS`, no shared subscription.

use gema_acl::{Denied, Principal, check_publish, check_receive, check_subscribe};
use proptest::prelude::*;

const SB1: Principal<'static> = Principal::Provisioning { serial: "SB-1" };

#[test]
fn a_claim_session_uses_exactly_its_own_two_topics() {
    assert_eq!(check_subscribe(SB1, "provisioning/SB-1/down"), Ok(()));
    assert_eq!(check_receive(SB1, "provisioning/SB-1/down"), Ok(()));
    assert_eq!(check_publish(SB1, "provisioning/SB-1/up"), Ok(()));
    // Not the other direction of its own namespace.
    assert_eq!(
        check_subscribe(SB1, "provisioning/SB-1/up"),
        Err(Denied::OutsideNamespace)
    );
    assert_eq!(
        check_publish(SB1, "provisioning/SB-1/down"),
        Err(Denied::OutsideNamespace)
    );
}

#[test]
fn a_claim_session_cannot_touch_device_topics() {
    for topic in [
        "devices/SB-1/up/heartbeat",
        "devices/dev_1/up/ack",
        "devices/dev_1/down/announce",
    ] {
        assert_eq!(
            check_publish(SB1, topic),
            Err(Denied::OutsideNamespace),
            "{topic}"
        );
        assert_eq!(
            check_subscribe(SB1, topic),
            Err(Denied::OutsideNamespace),
            "{topic}"
        );
    }
    for filter in ["devices/#", "devices/+/down/#", "devices/SB-1/down/#"] {
        assert_eq!(
            check_subscribe(SB1, filter),
            Err(Denied::OutsideNamespace),
            "{filter}"
        );
    }
}

#[test]
fn a_claim_session_gets_no_wildcard() {
    for filter in [
        "#",
        "+",
        "provisioning/#",
        "provisioning/+/down",
        "provisioning/SB-1/#",
        "provisioning/SB-1/+",
        "+/SB-1/down",
        "provisioning/SB-1/down/#",
    ] {
        assert_eq!(
            check_subscribe(SB1, filter),
            Err(Denied::OutsideNamespace),
            "{filter}"
        );
    }
}

#[test]
fn a_claim_session_cannot_reach_another_serials_answers() {
    for filter in [
        "provisioning/SB-2/down",
        "provisioning/SB-10/down",
        "provisioning/sb-1/down",
        "provisioning/SB-1x/down",
    ] {
        assert_eq!(
            check_subscribe(SB1, filter),
            Err(Denied::OutsideNamespace),
            "{filter}"
        );
        assert_eq!(
            check_receive(SB1, filter),
            Err(Denied::OutsideNamespace),
            "{filter}"
        );
    }
    assert_eq!(
        check_publish(SB1, "provisioning/SB-2/up"),
        Err(Denied::OutsideNamespace)
    );
}

#[test]
fn a_claim_session_gets_no_system_or_shared_topics() {
    assert_eq!(check_subscribe(SB1, "$SYS/#"), Err(Denied::SystemTopic));
    assert_eq!(
        check_subscribe(SB1, "$SYS/broker/uptime"),
        Err(Denied::SystemTopic)
    );
    assert_eq!(check_publish(SB1, "$SYS/x"), Err(Denied::SystemTopic));
    assert_eq!(
        check_subscribe(SB1, "$share/g/provisioning/SB-1/down"),
        Err(Denied::SharedSubscription)
    );
}

#[test]
fn a_serial_that_is_not_one_level_gets_nothing() {
    for serial in ["", "+", "#", "a/b", "$x"] {
        let p = Principal::Provisioning { serial };
        assert_eq!(
            check_subscribe(p, "provisioning/x/down"),
            Err(Denied::InvalidIdentity),
            "{serial}"
        );
        assert_eq!(
            check_publish(p, "provisioning/x/up"),
            Err(Denied::InvalidIdentity)
        );
    }
}

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("provisioning".to_owned()),
        Just("devices".to_owned()),
        Just("SB-1".to_owned()),
        Just("SB-2".to_owned()),
        Just("up".to_owned()),
        Just("down".to_owned()),
        Just("$SYS".to_owned()),
        Just("+".to_owned()),
        Just("#".to_owned()),
        Just(String::new()),
        "[a-zA-Z0-9$-]{1,4}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Whatever a claim session asks for, what is allowed is one of its two literal topics.
    #[test]
    fn only_the_two_literal_topics_are_ever_allowed(levels in prop::collection::vec(level(), 1..6)) {
        let s = levels.join("/");
        if check_subscribe(SB1, &s).is_ok() || check_receive(SB1, &s).is_ok() {
            prop_assert_eq!(s.as_str(), "provisioning/SB-1/down");
        }
        if check_publish(SB1, &s).is_ok() {
            prop_assert_eq!(s.as_str(), "provisioning/SB-1/up");
        }
    }
}
