//! The store's tests apply events with `gema_store::testing::ReferenceRules`, the payment
//! rules written down once for them; these tests hold the gateway's `StandardRules` (what
//! the daemon runs) to the same answers, so the two cannot drift apart.

use gema_gateway::payments::StandardRules;
use gema_store::testing::{EVENT_STATUSES, ReferenceRules};
use gema_store::{PaymentRules, TransactionStatus};
use proptest::prelude::*;

/// The daemon's defaults: 70 bps (QRIS's MDR) and five-minute announcements.
fn standard() -> StandardRules {
    StandardRules {
        fee_bps: 70,
        announcement_ttl_ms: 300_000,
        handover_lease_ms: 2_000,
    }
}

#[test]
fn the_standard_rules_move_every_status_as_the_reference_rules_do() {
    for &current in TransactionStatus::ALL {
        for &event in EVENT_STATUSES.iter().chain(&["", "settlement", "PAID"]) {
            assert_eq!(
                standard().transition(current, event),
                ReferenceRules.transition(current, event),
                "{current:?} + {event:?}"
            );
        }
    }
    assert_eq!(
        standard().announcement_ttl_ms(),
        ReferenceRules.announcement_ttl_ms()
    );
}

proptest! {
    #[test]
    fn the_standard_fee_split_is_the_reference_split(gross in 0i64..=10_000_000_000) {
        prop_assert_eq!(standard().split_fee(gross), ReferenceRules.split_fee(gross));
    }
}
