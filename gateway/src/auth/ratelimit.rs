//! Request rate limits: a fixed one-minute window per (class, key), in memory, per node.
//! Keys are a source address (`source:<ip>`) or a caller (`user:<id>`, `token:<name>`), so
//! one noisy client slows down itself, not everyone. A limit of 0 turns a class off.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{GatewayError, GatewayResult};

const WINDOW_MS: i64 = 60_000;
/// Above this many tracked keys, finished windows are dropped.
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

/// Requests per minute per key for each class; 0 = unlimited.
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

#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<(LimitClass, String), (i64, u32)>>,
}

impl RateLimiter {
    /// Counts a request; `TooManyRequests` with the seconds until the window ends when the
    /// key is over its limit.
    pub fn check(
        &self,
        limits: &RateLimits,
        class: LimitClass,
        key: &str,
        now_ms: i64,
    ) -> GatewayResult<()> {
        let limit = limits.limit(class);
        if limit == 0 {
            return Ok(());
        }
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, (start, _)| now_ms < *start + WINDOW_MS);
        }
        let (start, count) = windows
            .entry((class, key.to_owned()))
            .or_insert((now_ms, 0));
        if now_ms >= *start + WINDOW_MS || now_ms < *start {
            *start = now_ms;
            *count = 0;
        }
        if *count >= limit {
            let wait_ms = (*start + WINDOW_MS - now_ms).max(1);
            metrics::counter!("gema_rate_limited_total", "class" => format!("{class:?}"))
                .increment(1);
            return Err(GatewayError::TooManyRequests {
                code: "rate_limited",
                message: format!("too many requests; retry in {} s", (wait_ms + 999) / 1000),
                retry_after_secs: ((wait_ms + 999) / 1000) as u64,
            });
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_limit_per_window_and_others_are_unaffected() {
        let limiter = RateLimiter::default();
        let limits = RateLimits {
            login_per_minute: 3,
            writes_per_minute: 0,
            callbacks_per_minute: 1,
        };
        for _ in 0..3 {
            limiter
                .check(&limits, LimitClass::Login, "source:a", 0)
                .unwrap();
        }
        let Err(GatewayError::TooManyRequests {
            retry_after_secs, ..
        }) = limiter.check(&limits, LimitClass::Login, "source:a", 15_000)
        else {
            panic!("the fourth request in the window is refused");
        };
        assert_eq!(retry_after_secs, 45);
        limiter
            .check(&limits, LimitClass::Login, "source:b", 15_000)
            .unwrap();
        limiter
            .check(&limits, LimitClass::Callback, "source:a", 15_000)
            .unwrap();
        for _ in 0..1_000 {
            limiter
                .check(&limits, LimitClass::Write, "source:a", 15_000)
                .unwrap();
        }
        limiter
            .check(&limits, LimitClass::Login, "source:a", 60_000)
            .unwrap();
    }
}
