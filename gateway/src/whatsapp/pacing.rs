//! Per-sender pacing, in memory on the node that sends: a token bucket (inbound messages
//! take tokens too), a minimum gap to the same recipient, a budget of unique recipients per
//! rolling 24 hours (Meta's messaging tier), and for bulk messages the spreading (a random
//! delay between messages, a pause after each batch, an hourly and a daily cap).
//!
//! Pure arithmetic on Unix milliseconds, integers only: the bucket holds milli-tokens and
//! refills `rate_per_sec` of them per millisecond. [`SenderPace::ready_at`] says when a
//! message may go; [`SenderPace::record`] books a send. After a restart or a lease move the
//! worker replays the last 24 hours of sends into a fresh pace, so the gaps, the budget and
//! the caps hold across it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

const DAY_MS: i64 = 24 * 3600 * 1000;
const HOUR_MS: i64 = 3600 * 1000;
const TOKEN: i64 = 1000;

/// The spreading of bulk messages (reminders, bulk sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkSettings {
    /// A random delay in this range between two bulk messages of one sender.
    pub delay_min: Duration,
    pub delay_max: Duration,
    /// After this many bulk messages, a pause (0: no batches).
    pub batch_size: u32,
    pub batch_pause: Duration,
    /// At most this many bulk messages per rolling hour / day (0: no cap).
    pub hourly_cap: u32,
    pub daily_cap: u32,
}

impl BulkSettings {
    /// For the Cloud API: Meta's own limits pace it; a small spread keeps bulk from
    /// crowding out receipts.
    pub fn cloud() -> Self {
        BulkSettings {
            delay_min: Duration::from_millis(200),
            delay_max: Duration::from_millis(600),
            batch_size: 0,
            batch_pause: Duration::ZERO,
            hourly_cap: 0,
            daily_cap: 0,
        }
    }

    /// For an external gateway (often an unofficial client): the billing seed's anti-ban
    /// spreading, 8–15 s apart, 20 then a 5-minute pause, 50 an hour, 300 a day.
    pub fn gateway() -> Self {
        BulkSettings {
            delay_min: Duration::from_secs(8),
            delay_max: Duration::from_secs(15),
            batch_size: 20,
            batch_pause: Duration::from_secs(300),
            hourly_cap: 50,
            daily_cap: 300,
        }
    }
}

/// One sender's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaceLimits {
    /// Messages per second, inbound included (Meta allows 80 per number by default).
    pub rate_per_sec: u32,
    /// How many may go at once after a quiet spell.
    pub burst: u32,
    /// The least time between two messages to one recipient (131056 above about one per 6 s).
    pub recipient_gap: Duration,
    /// Unique recipients per rolling 24 hours (Meta's tier: 250, 2,000, 10,000, 100,000).
    pub daily_recipients: u32,
    pub bulk: BulkSettings,
}

impl Default for PaceLimits {
    fn default() -> Self {
        PaceLimits {
            rate_per_sec: 20,
            burst: 5,
            recipient_gap: Duration::from_secs(6),
            daily_recipients: 250,
            bulk: BulkSettings::cloud(),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A small deterministic generator for the bulk delay's randomness (splitmix64); seeded
/// from the system's randomness by the worker, fixed in tests.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Jitter(seed)
    }

    /// Seeded from the operating system's randomness.
    pub fn from_entropy() -> Self {
        let mut seed = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        Jitter(u64::from_le_bytes(seed))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `low..=high` (milliseconds).
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        if high <= low {
            return low;
        }
        let span = u64::try_from(high - low).unwrap_or(0).saturating_add(1);
        low + i64::try_from(self.next() % span).unwrap_or(0)
    }
}

/// One sender's pacing state.
#[derive(Debug, Clone)]
pub struct SenderPace {
    limits: PaceLimits,
    tokens: i64,
    refilled_ms: i64,
    /// Recipient → last send, kept for 24 hours (the gap and the unique-recipient budget).
    recipients: HashMap<String, i64>,
    /// Bulk sends of the last 24 hours, oldest first.
    bulk_sends: VecDeque<i64>,
    in_batch: u32,
    next_bulk_ms: i64,
    paused_until_ms: i64,
}

impl SenderPace {
    /// A sender with a full bucket at `now_ms`.
    pub fn new(limits: PaceLimits, now_ms: i64) -> Self {
        let tokens = i64::from(limits.burst.max(1)) * TOKEN;
        SenderPace {
            limits,
            tokens,
            refilled_ms: now_ms,
            recipients: HashMap::new(),
            bulk_sends: VecDeque::new(),
            in_batch: 0,
            next_bulk_ms: 0,
            paused_until_ms: 0,
        }
    }

    pub fn limits(&self) -> &PaceLimits {
        &self.limits
    }

    /// New limits (the sender's settings changed); the state is kept.
    pub fn set_limits(&mut self, limits: PaceLimits) {
        self.limits = limits;
    }

    fn refill(&mut self, now_ms: i64) {
        let elapsed = now_ms.saturating_sub(self.refilled_ms).max(0);
        let cap = i64::from(self.limits.burst.max(1)) * TOKEN;
        let rate = i64::from(self.limits.rate_per_sec.max(1));
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(cap);
        self.refilled_ms = self.refilled_ms.max(now_ms);
    }

    fn forget_before(&mut self, now_ms: i64) {
        let horizon = now_ms - DAY_MS;
        if self.recipients.len() > 1024 || self.recipients.values().any(|&t| t <= horizon) {
            self.recipients.retain(|_, t| *t > horizon);
        }
        while self.bulk_sends.front().is_some_and(|&t| t <= horizon) {
            self.bulk_sends.pop_front();
        }
    }

    /// Stops the sender until `until_ms` (a back-off, a restriction for the day).
    pub fn pause_until(&mut self, until_ms: i64) {
        self.paused_until_ms = self.paused_until_ms.max(until_ms);
    }

    pub fn paused_until(&self) -> i64 {
        self.paused_until_ms
    }

    /// Inbound messages take throughput too.
    pub fn inbound(&mut self, now_ms: i64, count: i64) {
        self.refill(now_ms);
        let floor = -i64::from(self.limits.burst.max(1)) * TOKEN;
        self.tokens = self
            .tokens
            .saturating_sub(count.saturating_mul(TOKEN))
            .max(floor);
    }

    /// The earliest instant a message to `recipient` may go (`<= now_ms`: now).
    pub fn ready_at(&mut self, now_ms: i64, recipient: &str, bulk: bool) -> i64 {
        self.refill(now_ms);
        self.forget_before(now_ms);
        let mut at = now_ms.max(self.paused_until_ms);
        if self.tokens < TOKEN {
            let rate = i64::from(self.limits.rate_per_sec.max(1));
            let missing = TOKEN - self.tokens;
            at = at.max(now_ms + (missing + rate - 1) / rate);
        }
        match self.recipients.get(recipient) {
            Some(&last) => at = at.max(last + ms(self.limits.recipient_gap)),
            None => {
                let budget = usize::try_from(self.limits.daily_recipients).unwrap_or(usize::MAX);
                if self.recipients.len() >= budget {
                    // The oldest recipient's 24 hours must pass before a new one.
                    let mut times: Vec<i64> = self.recipients.values().copied().collect();
                    times.sort_unstable();
                    let over = self.recipients.len() - budget;
                    if let Some(&oldest) = times.get(over) {
                        at = at.max(oldest + DAY_MS);
                    }
                }
            }
        }
        if bulk {
            let bulk = &self.limits.bulk;
            at = at.max(self.next_bulk_ms);
            for (cap, window) in [(bulk.hourly_cap, HOUR_MS), (bulk.daily_cap, DAY_MS)] {
                let cap = usize::try_from(cap).unwrap_or(usize::MAX);
                if cap == 0 {
                    continue;
                }
                let recent: Vec<i64> = self
                    .bulk_sends
                    .iter()
                    .copied()
                    .filter(|&t| t > now_ms - window)
                    .collect();
                if recent.len() >= cap {
                    at = at.max(recent[recent.len() - cap] + window);
                }
            }
        }
        at
    }

    /// Books a send at `at_ms`.
    pub fn record(&mut self, at_ms: i64, recipient: &str, bulk: bool, jitter: &mut Jitter) {
        self.refill(at_ms);
        self.tokens -= TOKEN;
        self.recipients.insert(recipient.to_owned(), at_ms);
        if bulk {
            self.bulk_sends.push_back(at_ms);
            let settings = &self.limits.bulk;
            // A send a little late (the worker's wake-up) keeps the schedule, so the rate
            // does not drift below the configured one; one much later (an idle queue, a
            // pause) starts it afresh.
            let tolerance = ms(settings.delay_min) / 10;
            let base = if self.next_bulk_ms > 0
                && at_ms >= self.next_bulk_ms
                && at_ms - self.next_bulk_ms <= tolerance
            {
                self.next_bulk_ms
            } else {
                at_ms
            };
            let mut next = base + jitter.between(ms(settings.delay_min), ms(settings.delay_max));
            self.in_batch += 1;
            if settings.batch_size > 0 && self.in_batch >= settings.batch_size {
                self.in_batch = 0;
                next += ms(settings.batch_pause);
            }
            self.next_bulk_ms = self.next_bulk_ms.max(next);
        }
    }

    /// Replays a past send (after a restart): the gap, the budget and the caps, not the bucket.
    pub fn replay(&mut self, at_ms: i64, recipient: &str, bulk: bool) {
        let entry = self.recipients.entry(recipient.to_owned()).or_insert(at_ms);
        *entry = (*entry).max(at_ms);
        if bulk {
            self.bulk_sends.push_back(at_ms);
            self.next_bulk_ms = self
                .next_bulk_ms
                .max(at_ms + ms(self.limits.bulk.delay_min));
        }
    }

    /// Holds one recipient back (131056: too many messages to it) until `until_ms`.
    pub fn hold_recipient(&mut self, recipient: &str, until_ms: i64) {
        let last = until_ms - ms(self.limits.recipient_gap);
        let entry = self.recipients.entry(recipient.to_owned()).or_insert(last);
        *entry = (*entry).max(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PaceLimits {
        PaceLimits {
            rate_per_sec: 10,
            burst: 2,
            recipient_gap: Duration::from_secs(6),
            daily_recipients: 3,
            bulk: BulkSettings {
                delay_min: Duration::from_millis(1000),
                delay_max: Duration::from_millis(1000),
                batch_size: 2,
                batch_pause: Duration::from_secs(60),
                hourly_cap: 3,
                daily_cap: 0,
            },
        }
    }

    #[test]
    fn the_bucket_allows_the_burst_then_the_rate() {
        let mut pace = SenderPace::new(limits(), 0);
        let mut jitter = Jitter::new(1);
        assert_eq!(pace.ready_at(0, "a", false), 0);
        pace.record(0, "a", false, &mut jitter);
        assert_eq!(pace.ready_at(0, "b", false), 0);
        pace.record(0, "b", false, &mut jitter);
        // Empty: one token takes 100 ms at 10 a second.
        assert_eq!(pace.ready_at(0, "c", false), 100);
        // Inbound messages take tokens too.
        let mut pace = SenderPace::new(limits(), 0);
        pace.inbound(0, 2);
        assert_eq!(pace.ready_at(0, "a", false), 100);
    }

    #[test]
    fn one_recipient_waits_the_gap() {
        let mut pace = SenderPace::new(limits(), 0);
        let mut jitter = Jitter::new(1);
        pace.record(1_000, "a", false, &mut jitter);
        assert_eq!(pace.ready_at(2_000, "a", false), 7_000);
        pace.hold_recipient("b", 50_000);
        assert_eq!(pace.ready_at(2_000, "b", false), 50_000);
    }

    #[test]
    fn new_recipients_wait_for_the_daily_budget() {
        let mut pace = SenderPace::new(limits(), 0);
        let mut jitter = Jitter::new(1);
        for (i, who) in ["a", "b", "c"].iter().enumerate() {
            let at = i64::try_from(i).unwrap_or(0) * 10_000;
            pace.record(at, who, false, &mut jitter);
        }
        // A fourth recipient waits until the first one's 24 hours pass; a known one not.
        assert_eq!(pace.ready_at(40_000, "d", false), DAY_MS);
        assert_eq!(pace.ready_at(40_000, "a", false), 40_000);
        assert_eq!(pace.ready_at(DAY_MS + 1, "d", false), DAY_MS + 1);
    }

    #[test]
    fn bulk_is_spread_batched_and_capped() {
        let mut pace = SenderPace::new(limits(), 0);
        let mut jitter = Jitter::new(7);
        pace.record(0, "a", true, &mut jitter);
        assert_eq!(pace.ready_at(0, "b", true), 1_000);
        // Non-bulk messages do not wait for the spreading.
        assert_eq!(pace.ready_at(0, "x", false), 0);
        pace.record(1_000, "b", true, &mut jitter);
        // A batch of two: the pause follows.
        assert_eq!(pace.ready_at(1_000, "c", true), 62_000);
        pace.record(62_000, "c", true, &mut jitter);
        // Three an hour: the fourth waits for the first to leave the hour.
        let next = pace.ready_at(63_000, "a", true);
        assert_eq!(next, HOUR_MS);
    }

    #[test]
    fn a_little_lateness_does_not_slow_bulk_down() {
        let mut pace = SenderPace::new(limits(), 0);
        let mut jitter = Jitter::new(3);
        pace.record(0, "a", true, &mut jitter);
        // Sent 50 ms late (within a tenth of the delay): the next is due 1 s after the
        // scheduled instant, not after the late one.
        pace.record(1_050, "b", true, &mut jitter);
        assert_eq!(pace.ready_at(1_050, "c", true), 62_000);
        let mut pace = SenderPace::new(limits(), 0);
        pace.record(0, "a", true, &mut jitter);
        // Much later: the schedule starts afresh.
        pace.record(5_000, "b", true, &mut jitter);
        assert_eq!(pace.ready_at(5_000, "c", true), 66_000);
    }

    #[test]
    fn pauses_and_replays_hold() {
        let mut pace = SenderPace::new(limits(), 0);
        pace.pause_until(5_000);
        assert_eq!(pace.ready_at(0, "a", false), 5_000);
        let mut fresh = SenderPace::new(limits(), 10_000);
        fresh.replay(9_000, "a", false);
        assert_eq!(fresh.ready_at(10_000, "a", false), 15_000);
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut jitter = Jitter::new(42);
        for _ in 0..1000 {
            let v = jitter.between(8_000, 15_000);
            assert!((8_000..=15_000).contains(&v));
        }
        assert_eq!(jitter.between(5, 5), 5);
    }
}
