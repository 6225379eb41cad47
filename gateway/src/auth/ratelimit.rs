//! Request rate limits, in memory, **per node**: each `gema serve` counts only the requests it
//! receives. Keys are a source address (`source:<ip>`) or a caller (`user:<id>`,
//! `token:<name>`), so one noisy client slows down itself, not everyone. A limit of 0 turns
//! a class off.
//!
//! The limiter is `governor`'s GCRA (a leaky bucket without a timer): a key may send its
//! whole per-minute limit at once (the burst), after which one more request is allowed
//! every `60 s / limit`. Unlike a fixed one-minute window, a client cannot get twice its
//! limit by sending one burst just before a window ends and another just after.
//! Time comes from the gateway's injected [`Clock`], so tests move it by hand.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Gcra};

use crate::clock::{Clock, SystemClock};
use crate::error::{GatewayError, GatewayResult};

/// Above this many tracked keys, keys whose bucket is full again (indistinguishable from a
/// key never seen) are dropped.
const PRUNE_ABOVE: usize = 50_000;

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitClass {
    /// Login and token refresh, per source address.
    Login,
    /// POST/PATCH/PUT/DELETE, per caller and per source address.
    Write,
    /// Payment-provider callbacks, per source address.
    Callback,
}

/// Requests per minute per key for each class (also the burst); 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub login_per_minute: u32,
    pub writes_per_minute: u32,
    pub callbacks_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login_per_minute: 30,
            writes_per_minute: 600,
            // Providers send from few addresses, in bursts; refusing a callback delays a
            // payment, so this is off unless the operator sets a value above the peak.
            callbacks_per_minute: 0,
        }
    }
}

impl RateLimits {
    fn limit(&self, class: LimitClass) -> u32 {
        match class {
            LimitClass::Login => self.login_per_minute,
            LimitClass::Write => self.writes_per_minute,
            LimitClass::Callback => self.callbacks_per_minute,
        }
    }
}

/// The gateway's [`Clock`] as governor's: nanoseconds since the Unix epoch. A wall clock
/// that steps back only makes a key wait longer; it never grants more.
#[derive(Debug, Clone)]
struct GatewayClock(Arc<dyn Clock>);

impl governor::clock::Clock for GatewayClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let ms = u64::try_from(self.0.now_ms()).unwrap_or(0);
        Nanos::new(ms.saturating_mul(1_000_000))
    }
}

type KeyedLimiter = Gcra<
    String,
    DefaultKeyedStateStore<String>,
    GatewayClock,
    governor::middleware::NoOpMiddleware<Nanos>,
>;

/// One class's limiter and when to prune it next.
#[derive(Debug)]
struct ClassLimiter {
    limiter: KeyedLimiter,
    /// Prune when the map grows past this; raised after a prune that kept most keys, so a
    /// flood of fresh keys does not make every request walk the whole map.
    prune_above: AtomicUsize,
}

#[derive(Debug)]
pub struct RateLimiter {
    clock: GatewayClock,
    login: Option<ClassLimiter>,
    write: Option<ClassLimiter>,
    callback: Option<ClassLimiter>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(&RateLimits::default(), Arc::new(SystemClock))
    }
}

impl RateLimiter {
    pub fn new(limits: &RateLimits, clock: Arc<dyn Clock>) -> Self {
        let clock = GatewayClock(clock);
        let class = |class: LimitClass| {
            NonZeroU32::new(limits.limit(class)).map(|per_minute| ClassLimiter {
                limiter: Gcra::new(
                    Quota::per_minute(per_minute),
                    DefaultKeyedStateStore::default(),
                    clock.clone(),
                ),
                prune_above: AtomicUsize::new(PRUNE_ABOVE),
            })
        };
        Self {
            login: class(LimitClass::Login),
            write: class(LimitClass::Write),
            callback: class(LimitClass::Callback),
            clock,
        }
    }

    /// Counts a request; `TooManyRequests` with the whole seconds until the key may send
    /// again (at least 1) when it is over its limit.
    pub fn check(&self, class: LimitClass, key: &str) -> GatewayResult<()> {
        let limiter = match class {
            LimitClass::Login => &self.login,
            LimitClass::Write => &self.write,
            LimitClass::Callback => &self.callback,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter.prune_if_large();
        match limiter.limiter.check_key(&key.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(&self.clock));
                let wait_secs = wait
                    .as_secs()
                    .saturating_add(u64::from(wait.subsec_nanos() > 0))
                    .max(1);
                metrics::counter!("gema_rate_limited_total", "class" => format!("{class:?}"))
                    .increment(1);
                Err(GatewayError::TooManyRequests {
                    code: "rate_limited",
                    message: format!("too many requests; retry in {wait_secs} s"),
                    retry_after_secs: wait_secs,
                })
            }
        }
    }

    /// Keys tracked by `class` (tests check memory stays bounded).
    pub fn tracked_keys(&self, class: LimitClass) -> usize {
        match class {
            LimitClass::Login => &self.login,
            LimitClass::Write => &self.write,
            LimitClass::Callback => &self.callback,
        }
        .as_ref()
        .map_or(0, |l| l.limiter.len())
    }
}

impl ClassLimiter {
    fn prune_if_large(&self) {
        let threshold = self.prune_above.load(Ordering::Relaxed);
        if self.limiter.len() <= threshold {
            return;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let kept = self.limiter.len();
        self.prune_above
            .store(PRUNE_ABOVE.max(kept.saturating_mul(2)), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn limiter(login: u32, writes: u32, callbacks: u32) -> (RateLimiter, ManualClock) {
        let clock = ManualClock::new(1_000_000);
        let limits = RateLimits {
            login_per_minute: login,
            writes_per_minute: writes,
            callbacks_per_minute: callbacks,
        };
        (RateLimiter::new(&limits, Arc::new(clock.clone())), clock)
    }

    fn retry_after(result: GatewayResult<()>) -> u64 {
        match result {
            Err(GatewayError::TooManyRequests {
                retry_after_secs, ..
            }) => retry_after_secs,
            other => panic!("expected 429, got {other:?}"),
        }
    }

    #[test]
    fn a_key_gets_its_burst_then_one_request_per_share_of_the_minute() {
        let (limiter, clock) = limiter(3, 0, 1);
        for _ in 0..3 {
            limiter.check(LimitClass::Login, "source:a").unwrap();
        }
        clock.advance(std::time::Duration::from_secs(15));
        // 3 per minute: one request comes back every 20 s, the first at 20 s.
        assert_eq!(retry_after(limiter.check(LimitClass::Login, "source:a")), 5);
        limiter.check(LimitClass::Login, "source:b").unwrap();
        limiter.check(LimitClass::Callback, "source:a").unwrap();
        for _ in 0..1_000 {
            limiter.check(LimitClass::Write, "source:a").unwrap();
        }
        clock.advance(std::time::Duration::from_secs(5));
        limiter.check(LimitClass::Login, "source:a").unwrap();
        assert_eq!(
            retry_after(limiter.check(LimitClass::Login, "source:a")),
            20
        );
    }

    #[test]
    fn a_client_at_a_window_boundary_cannot_get_twice_its_limit() {
        let (limiter, clock) = limiter(3, 0, 0);
        // One request opens what a fixed window would call a minute …
        limiter.check(LimitClass::Login, "source:a").unwrap();
        // … then a burst just before it ends and another just after.
        clock.advance(std::time::Duration::from_millis(59_900));
        let mut allowed = 0;
        for _ in 0..10 {
            allowed += usize::from(limiter.check(LimitClass::Login, "source:a").is_ok());
        }
        clock.advance(std::time::Duration::from_millis(200));
        for _ in 0..10 {
            allowed += usize::from(limiter.check(LimitClass::Login, "source:a").is_ok());
        }
        assert_eq!(allowed, 3, "within 200 ms a key gets at most its limit");
    }

    #[test]
    fn the_wait_is_rounded_up_to_whole_seconds_and_at_least_one() {
        let (limiter, clock) = limiter(0, 7, 0);
        for _ in 0..7 {
            limiter.check(LimitClass::Write, "user:u").unwrap();
        }
        // 60 s / 7 = 8.57 s until the next request.
        assert_eq!(retry_after(limiter.check(LimitClass::Write, "user:u")), 9);
        clock.advance(std::time::Duration::from_millis(8_500));
        assert_eq!(retry_after(limiter.check(LimitClass::Write, "user:u")), 1);
    }

    #[test]
    fn keys_whose_bucket_refilled_are_forgotten_past_the_bound() {
        let (limiter, clock) = limiter(0, 0, 10);
        for i in 0..=PRUNE_ABOVE {
            limiter
                .check(LimitClass::Callback, &format!("source:{i}"))
                .unwrap();
        }
        assert_eq!(limiter.tracked_keys(LimitClass::Callback), PRUNE_ABOVE + 1);
        clock.advance(std::time::Duration::from_secs(61));
        limiter.check(LimitClass::Callback, "source:new").unwrap();
        assert!(
            limiter.tracked_keys(LimitClass::Callback) <= 1,
            "{} keys kept",
            limiter.tracked_keys(LimitClass::Callback)
        );
    }
}
