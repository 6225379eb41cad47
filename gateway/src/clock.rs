//! "Now", as a trait: the system clock in the daemon, a hand-moved clock in tests, so
//! time-dependent rules (heartbeat staleness, expiries, retry times, lockouts) are tested
//! without sleeping. Every service of the gateway reads time from the one [`Clock`] it was
//! built with (see [`crate::Gateway::build`]); none calls `OffsetDateTime::now_utc()` itself.
//!
//! Only instants the gateway decides use it. The store stamps its own rows (`created_at`,
//! an announcement's `expires_at_ms`) with the database host's time, and tokio's timers
//! (how long to sleep) are monotonic, not wall clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// The same instant as a date-time (UTC). The system clock gives the full precision;
    /// other clocks their milliseconds.
    fn now_utc(&self) -> OffsetDateTime {
        from_unix_ms(self.now_ms())
    }
}

/// Milliseconds since the Unix epoch of `t`.
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    t.unix_timestamp() * 1000 + i64::from(t.millisecond())
}

/// The instant `ms` milliseconds after the Unix epoch (the epoch itself if out of range).
pub fn from_unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        unix_ms(OffsetDateTime::now_utc())
    }

    fn now_utc(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start_ms)))
    }

    pub fn set_ms(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, by: std::time::Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 2);
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_and_date_times_agree() {
        let clock = ManualClock::new(1_763_700_000_123);
        assert_eq!(unix_ms(clock.now_utc()), 1_763_700_000_123);
        assert_eq!(from_unix_ms(0), OffsetDateTime::UNIX_EPOCH);
    }
}
