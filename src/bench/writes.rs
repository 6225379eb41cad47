//! What a payments run wrote, for the bench's report: the commit loops' batches (from the
//! daemon's own histograms, in this process's Prometheus recorder) and, on PostgreSQL, the
//! write-ahead log. Latency at a given rate is mostly how long a batch takes and how many
//! wait for it; WAL bytes per callback is the write amplification of the schema (rows,
//! row versions, index entries), a figure that does not depend on the machine.

use gema_store::WalCounters;

/// The commit histograms' totals: so far ([`CommitSample::now`]), or between two samples
/// ([`CommitSample::since`]).
#[derive(Debug, Clone, Default)]
pub(super) struct CommitSample {
    batches: f64,
    events: f64,
    seconds: f64,
    /// `(upper bound in seconds, batches at most that long)`, ascending.
    buckets: Vec<(f64, f64)>,
    /// `(stage, seconds, laps)` of the batches' stages (PostgreSQL's only), in [`STAGES`]'
    /// order.
    stages: Vec<(String, f64, f64)>,
}

const BATCH_SIZE: &str = "gema_payment_commit_batch_size";
const DURATION: &str = "gema_payment_commit_duration_seconds";
const STAGE: &str = "gema_payment_commit_stage_seconds";
/// The order a batch goes through its stages (the store's `Stages`); one the bench does not
/// know is shown after them.
const STAGES: [&str; 7] = [
    "begin", "lock", "keys", "devices", "stage", "write", "commit",
];

impl CommitSample {
    /// Reads the process's recorder now (every node of the bench runs in this process, so
    /// the figures are their sum).
    pub fn now() -> Self {
        Self::parse(&crate::telemetry::prometheus().render())
    }

    /// The totals in a Prometheus text exposition (series of one name summed over labels).
    fn parse(text: &str) -> Self {
        let mut sample = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            match name.strip_prefix(DURATION) {
                Some("_count") => sample.batches += value,
                Some("_sum") => sample.seconds += value,
                Some("_bucket") => {
                    if let Some(le) = le_bound(labels) {
                        sample.add_bucket(le, value);
                    }
                }
                _ if name.strip_prefix(BATCH_SIZE) == Some("_sum") => sample.events += value,
                _ => match (name.strip_prefix(STAGE), label(labels, "stage")) {
                    (Some("_sum"), Some(stage)) => sample.stage(stage).1 += value,
                    (Some("_count"), Some(stage)) => sample.stage(stage).2 += value,
                    _ => {}
                },
            }
        }
        sample.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let rank = |stage: &str| {
            STAGES
                .iter()
                .position(|s| *s == stage)
                .unwrap_or(STAGES.len())
        };
        sample.stages.sort_by_key(|(stage, ..)| rank(stage));
        sample
    }

    /// The totals of `stage`, added if new.
    fn stage(&mut self, stage: &str) -> &mut (String, f64, f64) {
        let at = match self.stages.iter().position(|(s, ..)| s == stage) {
            Some(at) => at,
            None => {
                self.stages.push((stage.to_owned(), 0.0, 0.0));
                self.stages.len() - 1
            }
        };
        &mut self.stages[at]
    }

    /// Adds `count` to the bucket of upper bound `le` (series differing in other labels).
    fn add_bucket(&mut self, le: f64, count: f64) {
        match self.buckets.iter_mut().find(|(bound, _)| *bound == le) {
            Some((_, total)) => *total += count,
            None => self.buckets.push((le, count)),
        }
    }

    /// What happened between `earlier` and this sample.
    pub fn since(&self, earlier: &CommitSample) -> CommitSample {
        let before = |bound: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0.0, |(_, count)| *count)
        };
        CommitSample {
            batches: self.batches - earlier.batches,
            events: self.events - earlier.events,
            seconds: self.seconds - earlier.seconds,
            buckets: self
                .buckets
                .iter()
                .map(|(bound, count)| (*bound, count - before(*bound)))
                .collect(),
            stages: self
                .stages
                .iter()
                .map(|(stage, seconds, laps)| {
                    let (_, seconds_before, laps_before) = earlier
                        .stages
                        .iter()
                        .find(|(s, ..)| s == stage)
                        .cloned()
                        .unwrap_or_default();
                    (stage.clone(), seconds - seconds_before, laps - laps_before)
                })
                .collect(),
        }
    }

    /// The smallest bucket bound at or under which `p` percent of the batches took.
    fn at_most(&self, p: f64) -> Option<f64> {
        let wanted = self.batches * p / 100.0;
        self.buckets
            .iter()
            .find(|(_, count)| *count >= wanted)
            .map(|(bound, _)| *bound)
    }

    /// `commit batches …` for the report; `None` when there were none.
    pub fn line(&self) -> Option<String> {
        if self.batches < 1.0 {
            return None;
        }
        let bound = |p| match self.at_most(p) {
            Some(b) if b.is_finite() => format!("≤ {} ms", b * 1000.0),
            _ => "over the last bucket".into(),
        };
        Some(format!(
            "commit batches    {:.0}, {:.1} events each, {:.2} ms mean, p50 {}, p99 {}",
            self.batches,
            self.events / self.batches,
            self.seconds * 1000.0 / self.batches,
            bound(50.0),
            bound(99.0),
        ))
    }

    /// `commit stages …` for the report: each stage's mean wall time per batch that went
    /// through it; `None` when no batch recorded stages (SQLite).
    pub fn stages_line(&self) -> Option<String> {
        let stages: Vec<String> = self
            .stages
            .iter()
            .filter(|(_, _, laps)| *laps >= 1.0)
            .map(|(stage, seconds, laps)| format!("{stage} {:.0}", seconds * 1e6 / laps))
            .collect();
        (!stages.is_empty()).then(|| format!("commit stages     µs a batch: {}", stages.join(", ")))
    }
}

/// A label's value (`stage="write"` → `write`) from a series' labels.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels
        .trim_end_matches('}')
        .split(',')
        .find_map(|l| l.strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"'))
}

/// A bucket's upper bound from its labels (`le="0.005"`, `le="+Inf"`).
fn le_bound(labels: &str) -> Option<f64> {
    label(labels, "le").and_then(|l| l.parse().ok())
}

/// `WAL …` for the report: the WAL written between two samples, per callback.
pub(super) fn wal_line(before: WalCounters, after: WalCounters, callbacks: usize) -> String {
    let callbacks = callbacks.max(1) as f64;
    let bytes = (after.bytes - before.bytes) as f64;
    let flushes = (after.flushes - before.flushes) as f64;
    format!(
        "WAL               {:.1} kB per callback ({:.1} MB), {:.2} flushes per callback",
        bytes / callbacks / 1000.0,
        bytes / 1e6,
        flushes / callbacks,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE gema_payment_commit_duration_seconds histogram
gema_payment_commit_duration_seconds_bucket{le=\"0.001\"} 1
gema_payment_commit_duration_seconds_bucket{le=\"0.005\"} 2
gema_payment_commit_duration_seconds_bucket{le=\"+Inf\"} 2
gema_payment_commit_duration_seconds_sum 0.004
gema_payment_commit_duration_seconds_count 2
gema_payment_commit_batch_size_sum 3
gema_payment_commit_batch_size_count 2
gema_payment_commit_stage_seconds_sum{stage=\"write\"} 0.002
gema_payment_commit_stage_seconds_count{stage=\"write\"} 2
gema_payment_commit_stage_seconds_sum{stage=\"begin\"} 0.001
gema_payment_commit_stage_seconds_count{stage=\"begin\"} 2
";

    const AFTER: &str = "\
gema_payment_commit_duration_seconds_bucket{le=\"0.001\"} 3
gema_payment_commit_duration_seconds_bucket{le=\"0.005\"} 10
gema_payment_commit_duration_seconds_bucket{le=\"+Inf\"} 12
gema_payment_commit_duration_seconds_sum 0.064
gema_payment_commit_duration_seconds_count 12
gema_payment_commit_batch_size_bucket{le=\"1\"} 5
gema_payment_commit_batch_size_sum 43
gema_payment_commit_batch_size_count 12
gema_payment_commit_stage_seconds_bucket{stage=\"write\",le=\"0.005\"} 12
gema_payment_commit_stage_seconds_sum{stage=\"write\"} 0.042
gema_payment_commit_stage_seconds_count{stage=\"write\"} 12
gema_payment_commit_stage_seconds_sum{stage=\"begin\"} 0.006
gema_payment_commit_stage_seconds_count{stage=\"begin\"} 12
gema_payment_commit_stage_seconds_sum{stage=\"lock\"} 0.0025
gema_payment_commit_stage_seconds_count{stage=\"lock\"} 5
gema_payment_commit_stage_seconds_sum{stage=\"later\"} 0.001
gema_payment_commit_stage_seconds_count{stage=\"later\"} 1
";

    #[test]
    fn the_run_s_batches_are_the_difference_of_two_samples() {
        let used = CommitSample::parse(AFTER).since(&CommitSample::parse(BEFORE));
        assert_eq!(
            used.line().as_deref(),
            Some(
                "commit batches    10, 4.0 events each, 6.00 ms mean, p50 ≤ 5 ms, p99 over the last bucket"
            )
        );
    }

    #[test]
    fn stages_are_means_a_batch_in_the_order_a_batch_takes_them() {
        let used = CommitSample::parse(AFTER).since(&CommitSample::parse(BEFORE));
        assert_eq!(
            used.stages_line().as_deref(),
            Some("commit stages     µs a batch: begin 500, lock 500, write 4000, later 1000")
        );
    }

    #[test]
    fn no_batches_no_line() {
        let sample = CommitSample::parse(BEFORE);
        assert_eq!(sample.since(&sample).line(), None);
        assert_eq!(sample.since(&sample).stages_line(), None);
    }

    #[test]
    fn wal_is_per_callback() {
        let before = WalCounters {
            bytes: 1_000_000,
            flushes: 10,
        };
        let after = WalCounters {
            bytes: 8_000_000,
            flushes: 260,
        };
        assert_eq!(
            wal_line(before, after, 1000),
            "WAL               7.0 kB per callback (7.0 MB), 0.25 flushes per callback"
        );
    }
}
