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
    events: f64,
    /// The batches' durations.
    batches: Histogram,
    /// The batches' stages (PostgreSQL's only), in [`STAGES`]' order.
    stages: Vec<(String, Histogram)>,
}

/// One histogram's series summed over its other labels.
#[derive(Debug, Clone, Default)]
struct Histogram {
    count: f64,
    sum: f64,
    /// `(upper bound, observations at most that)`, ascending ([`Histogram::add`] keeps
    /// them so).
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// Adds a `_count`, `_sum` or `_bucket` series (`suffix`) of value `value`.
    fn add(&mut self, suffix: &str, labels: &str, value: f64) {
        match suffix {
            "_count" => self.count += value,
            "_sum" => self.sum += value,
            "_bucket" => {
                let Some(le) = label(labels, "le").and_then(|l| l.parse::<f64>().ok()) else {
                    return;
                };
                let at = self.buckets.partition_point(|(bound, _)| *bound < le);
                match self.buckets.get_mut(at) {
                    Some((bound, total)) if *bound == le => *total += value,
                    _ => self.buckets.insert(at, (le, value)),
                }
            }
            _ => {}
        }
    }

    /// What was observed after `earlier`.
    fn since(&self, earlier: &Histogram) -> Histogram {
        let before = |bound: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0.0, |(_, count)| *count)
        };
        Histogram {
            count: self.count - earlier.count,
            sum: self.sum - earlier.sum,
            buckets: self
                .buckets
                .iter()
                .map(|(bound, count)| (*bound, count - before(*bound)))
                .collect(),
        }
    }

    /// The mean in milliseconds.
    fn mean_ms(&self) -> f64 {
        self.sum * 1000.0 / self.count
    }

    /// `≤ <bound> ms`: the smallest bucket bound at or under which `p` percent fall.
    fn at_most(&self, p: f64) -> String {
        let wanted = self.count * p / 100.0;
        match self.buckets.iter().find(|(_, count)| *count >= wanted) {
            Some((bound, _)) if bound.is_finite() => format!("≤ {} ms", bound * 1000.0),
            _ => "over the last bucket".into(),
        }
    }
}

const BATCH_SIZE: &str = "gema_payment_commit_batch_size";
const DURATION: &str = "gema_payment_commit_duration_seconds";
const STAGE: &str = "gema_payment_commit_stage_seconds";
/// The order a batch goes through its stages (the store's `Stages`); one the bench does not
/// know is shown after them.
const STAGES: [&str; 3] = ["read", "stage", "write"];

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
            if let Some(suffix) = name.strip_prefix(DURATION) {
                sample.batches.add(suffix, labels, value);
            } else if name.strip_prefix(BATCH_SIZE) == Some("_sum") {
                sample.events += value;
            } else if let (Some(suffix), Some(stage)) =
                (name.strip_prefix(STAGE), label(labels, "stage"))
            {
                sample.stage(stage).add(suffix, labels, value);
            }
        }
        let rank = |stage: &str| {
            STAGES
                .iter()
                .position(|s| *s == stage)
                .unwrap_or(STAGES.len())
        };
        sample.stages.sort_by_key(|(stage, _)| rank(stage));
        sample
    }

    /// The histogram of `stage`, added if new.
    fn stage(&mut self, stage: &str) -> &mut Histogram {
        let at = match self.stages.iter().position(|(s, _)| s == stage) {
            Some(at) => at,
            None => {
                self.stages.push((stage.to_owned(), Histogram::default()));
                self.stages.len() - 1
            }
        };
        &mut self.stages[at].1
    }

    /// What happened between `earlier` and this sample.
    pub fn since(&self, earlier: &CommitSample) -> CommitSample {
        let none = Histogram::default();
        CommitSample {
            events: self.events - earlier.events,
            batches: self.batches.since(&earlier.batches),
            stages: self
                .stages
                .iter()
                .map(|(stage, histogram)| {
                    let before = earlier
                        .stages
                        .iter()
                        .find(|(s, _)| s == stage)
                        .map_or(&none, |(_, h)| h);
                    (stage.clone(), histogram.since(before))
                })
                .collect(),
        }
    }

    /// `commit batches …` for the report; `None` when there were none.
    pub fn line(&self) -> Option<String> {
        let batches = &self.batches;
        if batches.count < 1.0 {
            return None;
        }
        Some(format!(
            "commit batches    {:.0}, {:.1} events each, {:.2} ms mean, p50 {}, p99 {}",
            batches.count,
            self.events / batches.count,
            batches.mean_ms(),
            batches.at_most(50.0),
            batches.at_most(99.0),
        ))
    }

    /// `commit stages …` for the report: each stage's mean wall time per batch that went
    /// through it, and its p99's bucket bound (which stage a slow batch was slow in);
    /// `None` when no batch recorded stages (SQLite).
    pub fn stages_line(&self) -> Option<String> {
        let stages: Vec<String> = self
            .stages
            .iter()
            .filter(|(_, histogram)| histogram.count >= 1.0)
            .map(|(stage, histogram)| {
                format!(
                    "{stage} {:.0} (p99 {})",
                    histogram.mean_ms() * 1000.0,
                    histogram.at_most(99.0)
                )
            })
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
gema_payment_commit_stage_seconds_sum{stage=\"read\"} 0.001
gema_payment_commit_stage_seconds_count{stage=\"read\"} 2
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
gema_payment_commit_stage_seconds_bucket{stage=\"write\",le=\"0.001\"} 2
gema_payment_commit_stage_seconds_bucket{stage=\"write\",le=\"0.005\"} 12
gema_payment_commit_stage_seconds_sum{stage=\"write\"} 0.042
gema_payment_commit_stage_seconds_count{stage=\"write\"} 12
gema_payment_commit_stage_seconds_sum{stage=\"read\"} 0.006
gema_payment_commit_stage_seconds_count{stage=\"read\"} 12
gema_payment_commit_stage_seconds_sum{stage=\"stage\"} 0.0025
gema_payment_commit_stage_seconds_count{stage=\"stage\"} 5
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
            Some(
                "commit stages     µs a batch: read 500 (p99 over the last bucket), stage 500 (p99 over the last bucket), write 4000 (p99 ≤ 5 ms), later 1000 (p99 over the last bucket)"
            )
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
