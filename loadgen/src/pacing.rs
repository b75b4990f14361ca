//! Open-loop pacing: the intended send instant of every publish, independent of how fast the target answers.

use std::time::{Duration, Instant};

/// An open-loop schedule of publishes at a fixed rate.
///
/// Publish `k` is intended at `start + k / rate_per_s`. Latency is always
/// measured from that intended instant, never from when the publish was
/// actually sent, so a stall in the target (or in the load generator) shows
/// up as latency instead of silently lowering the offered load (coordinated
/// omission).
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    rate_per_s: f64,
    /// Publishes handed out by [`Schedule::take_due`] so far.
    taken: u64,
}

impl Schedule {
    /// # Panics
    /// If `rate_per_s` is not finite and positive (the caller validates it).
    pub fn new(rate_per_s: f64, start: Instant) -> Schedule {
        assert!(
            rate_per_s.is_finite() && rate_per_s > 0.0,
            "rate must be positive"
        );
        Schedule {
            start,
            rate_per_s,
            taken: 0,
        }
    }

    /// The intended send instant of publish `k`.
    pub fn intended(&self, k: u64) -> Instant {
        self.start + self.offset(k)
    }

    /// The intended send time of publish `k`, relative to `start`.
    pub fn offset(&self, k: u64) -> Duration {
        // Computed from k each time rather than accumulated, so there is no drift.
        Duration::from_secs_f64(k as f64 / self.rate_per_s)
    }

    /// How many publishes are intended at or before `now` in total (including
    /// the ones already taken).
    pub fn due(&self, now: Instant) -> u64 {
        let Some(elapsed) = now.checked_duration_since(self.start) else {
            return 0;
        };
        // Publish k is due when k / rate <= elapsed, so k in 0..=floor(elapsed * rate).
        let mut count = (elapsed.as_secs_f64() * self.rate_per_s).floor() as u64 + 1;
        // Guard the float rounding at exact boundaries against the exact offset.
        while count > 0 && self.offset(count - 1) > elapsed {
            count -= 1;
        }
        while self.offset(count) <= elapsed {
            count += 1;
        }
        count
    }

    /// The range of publishes that became due since the last call. After a
    /// stall the whole backlog is returned: nothing is skipped.
    #[cfg_attr(not(test), allow(dead_code))] // the publisher uses take_due_within
    pub fn take_due(&mut self, now: Instant) -> std::ops::Range<u64> {
        self.take_due_within(now, u64::MAX)
    }

    /// Like [`Schedule::take_due`], but never past publish `total - 1`.
    pub fn take_due_within(&mut self, now: Instant, total: u64) -> std::ops::Range<u64> {
        let due = self.due(now).min(total).max(self.taken);
        let range = self.taken..due;
        self.taken = due;
        range
    }

    /// Publishes taken so far.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// The intended instant of the next publish not yet taken.
    pub fn next_intended(&self) -> Instant {
        self.intended(self.taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_exact() {
        let start = Instant::now();
        let schedule = Schedule::new(1000.0, start);
        assert_eq!(schedule.intended(0), start);
        assert_eq!(schedule.intended(1), start + Duration::from_millis(1));
        assert_eq!(schedule.intended(1500), start + Duration::from_millis(1500));
        let slow = Schedule::new(4.0, start);
        assert_eq!(slow.intended(3), start + Duration::from_millis(750));
    }

    #[test]
    fn due_counts_boundaries() {
        let start = Instant::now();
        let schedule = Schedule::new(1000.0, start);
        assert_eq!(schedule.due(start), 1, "publish 0 is due at start");
        assert_eq!(schedule.due(start + Duration::from_micros(999)), 1);
        assert_eq!(schedule.due(start + Duration::from_millis(1)), 2);
        assert_eq!(schedule.due(start + Duration::from_millis(10)), 11);
    }

    #[test]
    fn nothing_due_before_start() {
        let now = Instant::now();
        let schedule = Schedule::new(10.0, now + Duration::from_secs(1));
        assert_eq!(schedule.due(now), 0);
    }

    #[test]
    fn backlog_after_a_stall_is_due_not_skipped() {
        let start = Instant::now();
        let mut schedule = Schedule::new(100.0, start);
        assert_eq!(schedule.take_due(start), 0..1);
        assert_eq!(schedule.take_due(start + Duration::from_millis(10)), 1..2);
        // A 1 s stall: all 100 publishes intended meanwhile are due at once.
        let range = schedule.take_due(start + Duration::from_millis(1010));
        assert_eq!(range, 2..102);
        // Their intended times stay in the past, so latency includes the stall.
        assert_eq!(
            schedule.intended(range.start),
            start + Duration::from_millis(20)
        );
        assert_eq!(
            schedule.next_intended(),
            start + Duration::from_millis(1020)
        );
        assert_eq!(
            schedule.take_due(start + Duration::from_millis(1010)),
            102..102
        );
    }
}
