//! Latency statistics: HdrHistograms per worker, their merge, percentiles and the per-second interval log.

use std::io;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

/// Lowest and highest trackable latency, in microseconds (1 µs .. 60 s).
pub const LATENCY_US_MIN: u64 = 1;
pub const LATENCY_US_MAX: u64 = 60_000_000;
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Intervals kept, one per second of run time; later samples go to the last one.
pub const INTERVALS_MAX: usize = 3600;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LATENCY_US_MIN, LATENCY_US_MAX, SIGNIFICANT_DIGITS)
        .expect("constant bounds are valid")
}

/// Latencies recorded by one worker: the whole run and one histogram per second.
#[derive(Debug, Clone)]
pub struct Latencies {
    pub total: Histogram<u64>,
    /// `intervals[s]` holds the samples received during second `s` of the run.
    pub intervals: Vec<Histogram<u64>>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies {
            total: new_histogram(),
            intervals: Vec::new(),
        }
    }

    /// Records one latency in µs, received `since_start` after the run started.
    /// Values outside 1 µs..60 s are clamped (a negative latency, from clock
    /// granularity, is recorded as 1 µs).
    pub fn record(&mut self, latency_us: u64, since_start: Duration) {
        let value = latency_us.clamp(LATENCY_US_MIN, LATENCY_US_MAX);
        self.total.saturating_record(value);
        let second = usize::try_from(since_start.as_secs())
            .unwrap_or(usize::MAX)
            .min(INTERVALS_MAX - 1);
        while self.intervals.len() <= second {
            self.intervals.push(new_histogram());
        }
        if let Some(interval) = self.intervals.get_mut(second) {
            interval.saturating_record(value);
        }
    }

    /// Adds another worker's latencies, interval by interval.
    pub fn merge(&mut self, other: &Latencies) {
        self.total
            .add(&other.total)
            .expect("histograms share bounds");
        while self.intervals.len() < other.intervals.len() {
            self.intervals.push(new_histogram());
        }
        for (mine, theirs) in self.intervals.iter_mut().zip(&other.intervals) {
            mine.add(theirs).expect("histograms share bounds");
        }
    }
}

/// The figures reported for a latency distribution, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub max_us: u64,
}

pub fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    Percentiles {
        count: histogram.len(),
        p50_us: histogram.value_at_quantile(0.5),
        p90_us: histogram.value_at_quantile(0.9),
        p99_us: histogram.value_at_quantile(0.99),
        p99_9_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
    }
}

/// Writes the per-second histograms as an HdrHistogram interval log
/// (readable by HistogramLogAnalyzer and `hdrhistogram`'s log iterator).
///
/// # Errors
/// An I/O error from `out`, or a serialization error (reported as I/O `Other`).
pub fn write_interval_log<W: io::Write>(
    out: &mut W,
    intervals: &[Histogram<u64>],
    start: SystemTime,
    comment: &str,
) -> io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment(comment)
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1.0)
        .begin_log_with(out, &mut serializer)?;
    for (second, histogram) in intervals.iter().enumerate() {
        writer
            .write_histogram(
                histogram,
                Duration::from_secs(second as u64),
                Duration::from_secs(1),
                None,
            )
            .map_err(|err| io::Error::other(format!("{err:?}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut all = Latencies::new();
        let mut a = Latencies::new();
        let mut b = Latencies::new();
        for i in 0..10_000u64 {
            let latency_us = (i * 7919) % 50_000 + 1;
            let at = Duration::from_millis(i % 3000);
            all.record(latency_us, at);
            if i % 2 == 0 {
                a.record(latency_us, at);
            } else {
                b.record(latency_us, at);
            }
        }
        a.merge(&b);
        assert_eq!(a.total, all.total);
        assert_eq!(a.intervals, all.intervals);
        assert_eq!(percentiles(&a.total), percentiles(&all.total));
        assert_eq!(a.intervals.len(), 3);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut latencies = Latencies::new();
        // 1..=1000 µs, once each.
        for latency_us in 1..=1000 {
            latencies.record(latency_us, Duration::ZERO);
        }
        let p = percentiles(&latencies.total);
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50_us, 500);
        assert_eq!(p.p90_us, 900);
        assert_eq!(p.p99_us, 990);
        assert_eq!(p.p99_9_us, 999);
        assert_eq!(p.max_us, 1000);
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        let mut latencies = Latencies::new();
        latencies.record(0, Duration::ZERO);
        latencies.record(u64::MAX, Duration::from_secs(5));
        assert_eq!(latencies.total.len(), 2);
        assert_eq!(latencies.intervals.len(), 6);
        assert!(latencies.total.max() >= LATENCY_US_MAX);
    }

    #[test]
    fn interval_log_has_one_histogram_per_second() {
        let mut latencies = Latencies::new();
        for second in 0..3u64 {
            for i in 0..=second {
                latencies.record(100 + i, Duration::from_secs(second));
            }
        }
        let mut out = Vec::new();
        write_interval_log(
            &mut out,
            &latencies.intervals,
            SystemTime::now(),
            "test run",
        )
        .expect("writes to a Vec");
        let text = String::from_utf8(out.clone()).expect("the log is text");
        assert!(text.starts_with("#test run\n"));
        let starts: Vec<Duration> = IntervalLogIterator::new(&out)
            .filter_map(|entry| match entry {
                Ok(LogEntry::Interval(h)) => Some(h.start_timestamp()),
                _ => None,
            })
            .collect();
        assert_eq!(
            starts,
            vec![
                Duration::from_secs(0),
                Duration::from_secs(1),
                Duration::from_secs(2)
            ]
        );
    }
}
