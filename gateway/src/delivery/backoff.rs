//! When to try again: exponential backoff with a ceiling and an attempt budget for a
//! device that is connected but did not acknowledge, and a cheap recheck for one that is
//! offline. Pure arithmetic on milliseconds; "now" is the caller's (its clock).

use std::time::Duration;

/// What to do after an attempt that did not settle a downlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this instant (Unix milliseconds).
    RetryAt(i64),
    /// The attempt budget is spent; this was attempt number `attempt`.
    GiveUp { attempt: i64 },
}

/// Exponential backoff: `initial`, doubled per attempt made, at most `max`; after
/// `max_attempts` sends, give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub max_attempts: i64,
}

impl Backoff {
    /// After a failed send, when `attempts` sends had been made before it.
    pub fn after_failure(&self, attempts: i64, now_ms: i64) -> AfterFailure {
        let attempt = attempts + 1;
        if attempt >= self.max_attempts {
            return AfterFailure::GiveUp { attempt };
        }
        let shift = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
        let backoff = self.initial.saturating_mul(1u32 << shift).min(self.max);
        AfterFailure::RetryAt(now_ms + millis(backoff))
    }
}

/// When to look at an offline device's downlink again: on reconnect (a presence event
/// replays it), and also every `recheck`, because presence events can be lost when their
/// channel lags behind a reconnect storm; never after the downlink expires. A recheck costs
/// a lookup, not an attempt.
pub fn offline_recheck_at(now_ms: i64, recheck: Duration, expires_at_ms: i64) -> i64 {
    expires_at_ms.min(now_ms + millis(recheck))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_then_gives_up() {
        let backoff = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            max_attempts: 8,
        };
        let waits: Vec<_> = (0..7)
            .map(|attempts| match backoff.after_failure(attempts, 0) {
                AfterFailure::RetryAt(at) => at,
                AfterFailure::GiveUp { .. } => -1,
            })
            .collect();
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(
            backoff.after_failure(7, 0),
            AfterFailure::GiveUp { attempt: 8 }
        );
    }

    #[test]
    fn an_offline_recheck_never_passes_the_expiry() {
        let recheck = Duration::from_secs(30);
        assert_eq!(offline_recheck_at(1_000, recheck, 100_000), 31_000);
        assert_eq!(offline_recheck_at(1_000, recheck, 5_000), 5_000);
    }
}
