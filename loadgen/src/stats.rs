//! Latency statistics: HdrHistograms per worker, their merge, percentiles and the per-second interval log.

use std::io;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, LogIteratorError,
};
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
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

/// Serializes a histogram as one base64 string (V2 deflate encoding, standard
/// alphabet with padding), e.g. to pass it between processes inside JSON.
pub fn to_base64(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail; the serializer only refuses counts above
    // i64::MAX, which no run can reach (that many samples would take centuries).
    if let Err(err) = V2DeflateSerializer::new().serialize(h, &mut bytes) {
        unreachable!("serializing a histogram into memory: {err}");
    }
    BASE64.encode(bytes)
}

/// Parses a histogram written by [`to_base64`] (or any V2 / V2 deflate encoding
/// in standard base64). The result has the bounds of [`new_histogram`], so it
/// can be added to the others.
///
/// # Errors
/// Bad base64, an encoding the deserializer rejects, or a value beyond 60 s.
pub fn from_base64(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = BASE64
        .decode(s.trim())
        .map_err(|err| format!("bad base64: {err}"))?;
    decode_histogram(&bytes)
}

/// Deserializes one encoded histogram into one with the bounds of [`new_histogram`].
///
/// The deserializer trusts the payload lengths in the encoding and allocates
/// them up front. The outer length (both encodings start with a 4-byte cookie
/// and a 4-byte big-endian length) is checked against the bytes present; the
/// length inside a deflate stream cannot be seen without inflating, so a corrupt
/// stream can still cost a large, short-lived allocation before it fails.
fn decode_histogram(bytes: &[u8]) -> Result<Histogram<u64>, String> {
    let Some(&[a, b, c, d]) = bytes.get(4..8) else {
        return Err(format!(
            "histogram encoding too short ({} bytes)",
            bytes.len()
        ));
    };
    let declared = u32::from_be_bytes([a, b, c, d]) as usize;
    let present = bytes.len() - 8;
    if declared > present {
        return Err(format!(
            "truncated histogram encoding: declares {declared} bytes, has {present}"
        ));
    }
    // hdrhistogram 7 can overflow an integer (a panic in debug builds) on some
    // corrupt encodings; a panic here becomes an error like any other.
    let decoded =
        std::panic::catch_unwind(|| Deserializer::new().deserialize::<u64, _>(&mut &bytes[..]))
            .map_err(|_| "corrupt histogram encoding".to_owned())?
            .map_err(|err| format!("cannot deserialize histogram: {err:?}"))?;
    let mut histogram = new_histogram();
    histogram.add(&decoded).map_err(|err| {
        format!(
            "histogram does not fit 1 µs..60 s (max {} µs): {err:?}",
            decoded.max()
        )
    })?;
    Ok(histogram)
}

/// Reads an HdrHistogram interval log (as written by [`write_interval_log`]):
/// returns the merge of all intervals and the intervals in file order.
/// Comments, the legend and StartTime/BaseTime lines are skipped; tags are
/// ignored (every interval counts).
///
/// # Errors
/// A line that does not parse (with its byte offset), or an interval whose
/// histogram does not decode (with its 1-based number among the intervals).
pub fn read_interval_log(bytes: &[u8]) -> Result<(Histogram<u64>, Vec<Histogram<u64>>), String> {
    let mut total = new_histogram();
    let mut intervals = Vec::new();
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|err| match err {
            LogIteratorError::ParseError { offset } => {
                format!("not an interval log: cannot parse the line at byte {offset}")
            }
        })?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let number = intervals.len() + 1;
        let histogram = BASE64
            .decode(interval.encoded_histogram())
            .map_err(|err| format!("bad base64: {err}"))
            .and_then(|bytes| decode_histogram(&bytes))
            .map_err(|err| format!("interval {number}: {err}"))?;
        total
            .add(&histogram)
            .map_err(|err| format!("interval {number}: cannot merge: {err:?}"))?;
        intervals.push(histogram);
    }
    Ok((total, intervals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::V2Serializer;

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

    /// A spread of values over several decades, as a run would produce.
    fn sample_histogram() -> Histogram<u64> {
        let mut h = new_histogram();
        for i in 0..20_000u64 {
            h.record((i * 7919) % 200_000 + 1).expect("in range");
        }
        h.record(LATENCY_US_MAX).expect("in range");
        h
    }

    #[test]
    fn base64_round_trip() {
        // Both encodings decode: the deflate one written here and plain V2.
        let mut plain = Vec::new();
        V2Serializer::new()
            .serialize(&sample_histogram(), &mut plain)
            .expect("serializes");
        assert_eq!(from_base64(&BASE64.encode(plain)), Ok(sample_histogram()));

        let h = sample_histogram();
        let text = to_base64(&h);
        assert!(text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)));
        let back = from_base64(&text).expect("decodes");
        assert_eq!(back, h);
        assert_eq!(percentiles(&back), percentiles(&h));
        // Still addable to the others: same bounds.
        let mut sum = new_histogram();
        sum.add(&back).expect("same bounds");
        assert_eq!(sum.len(), h.len());
        // An empty histogram round-trips too.
        assert_eq!(
            from_base64(&to_base64(&new_histogram())),
            Ok(new_histogram())
        );
    }

    #[test]
    fn bad_base64_and_garbage_are_errors() {
        let err = from_base64("not base64!").expect_err("bad alphabet");
        assert!(err.contains("base64"), "{err}");
        assert!(from_base64("").is_err());
        // Valid base64 of bytes that are not a histogram.
        assert!(from_base64(&BASE64.encode(b"hello, world")).is_err());
        // A truncated encoding.
        let text = to_base64(&sample_histogram());
        let bytes = BASE64.decode(&text).expect("valid");
        assert!(decode_histogram(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn corrupted_encodings_never_panic() {
        // A few values, so the encodings stay short and the loops quick.
        let mut small = new_histogram();
        for value in [1, 2, 3, 250, 1_000, 47_000, LATENCY_US_MAX] {
            small.record(value).expect("in range");
        }
        // Plain V2: flip each byte in turn; Ok or Err, never a panic.
        let mut plain = Vec::new();
        V2Serializer::new()
            .serialize(&small, &mut plain)
            .expect("serializes");
        for i in 0..plain.len() {
            let mut corrupt = plain.clone();
            corrupt[i] ^= 0x5a;
            let _ = decode_histogram(&corrupt);
        }
        // A count that decodes to i64::MIN overflows inside hdrhistogram (a
        // panic in debug builds): still an error here.
        let mut crafted = plain[..40].to_vec();
        crafted[4..8].copy_from_slice(&9u32.to_be_bytes());
        crafted.extend_from_slice(&[0xff; 9]);
        assert!(decode_histogram(&crafted).is_err());
        // V2 deflate: its outer header, and every truncation. (Flips inside the
        // deflate stream are left out: see `decode_histogram` on allocation.)
        let deflated = BASE64.decode(to_base64(&small)).expect("valid");
        for i in 0..8 {
            let mut corrupt = deflated.clone();
            corrupt[i] ^= 0x5a;
            let _ = decode_histogram(&corrupt);
        }
        for len in 0..deflated.len() {
            assert!(decode_histogram(&deflated[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn histogram_beyond_60_s_is_an_error() {
        let mut wide = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).expect("bounds");
        wide.record(500_000_000).expect("in range");
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&wide, &mut bytes)
            .expect("serializes");
        let err = from_base64(&BASE64.encode(bytes)).expect_err("out of range");
        assert!(err.contains("60 s"), "{err}");
    }

    #[test]
    fn interval_log_round_trip_gives_the_same_total() {
        let mut latencies = Latencies::new();
        for i in 0..30_000u64 {
            let latency_us = (i * 104_729) % 2_000_000 + 1;
            latencies.record(latency_us, Duration::from_millis(i / 7));
        }
        assert!(latencies.intervals.len() > 3);
        let mut out = Vec::new();
        write_interval_log(&mut out, &latencies.intervals, SystemTime::now(), "rt")
            .expect("writes to a Vec");
        let (total, intervals) = read_interval_log(&out).expect("reads back");
        assert_eq!(total, latencies.total);
        assert_eq!(intervals, latencies.intervals);
    }

    #[test]
    fn interval_log_errors_are_reported() {
        // Empty input: no intervals, not an error.
        let (total, intervals) = read_interval_log(b"").expect("empty log");
        assert!(total.is_empty() && intervals.is_empty());
        let err = read_interval_log(b"{\"json\": true}\n").expect_err("not a log");
        assert!(err.contains("byte 0"), "{err}");
        let err = read_interval_log(b"0.000,1.000,1.0,AAAAAAAA\n").expect_err("bad histogram");
        assert!(err.contains("interval 1"), "{err}");
    }
}
