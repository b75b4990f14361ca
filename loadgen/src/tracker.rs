//! Per-receiver sequence tracking: gaps (missing), duplicates and out-of-order deliveries, and,
//! for tunnels that re-attach, what was replayed and what was lost behind a gap marker.

use std::collections::BTreeSet;

/// Missing sequence numbers remembered individually, so that a late arrival
/// can be told apart from a duplicate. Past this, further missing numbers are
/// only counted (and a late arrival of one of them counts as a duplicate).
pub const MISSING_REMEMBERED_MAX: usize = 4096;

/// Counts of what a receiver saw, summable across receivers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SeqCounts {
    pub received: u64,
    /// Sequence numbers never received (so far).
    pub gaps: u64,
    pub duplicates: u64,
    /// Received after a higher sequence number (they filled a gap).
    pub out_of_order: u64,
}

impl SeqCounts {
    pub fn add(&mut self, other: &SeqCounts) {
        self.received += other.received;
        self.gaps += other.gaps;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
    }
}

/// Tracks the sequence numbers one receiver sees on one path; they are
/// expected to be 0, 1, 2, ... in order.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    /// The next sequence number expected in order.
    next: u64,
    missing: BTreeSet<u64>,
    /// Missing numbers not remembered because `missing` was full.
    missing_forgotten: u64,
    counts: SeqCounts,
    /// A gap marker arrived and no datagram since: the next hole is the router's announced
    /// loss, not a silent one.
    gap_pending: bool,
    /// Numbers skipped right after a gap marker.
    behind_gap: u64,
    /// Deliveries replayed after a re-attach.
    replayed: u64,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// The router sent a gap marker: what the next delivery skips was lost, and said so.
    pub fn gap_marker(&mut self) {
        self.gap_pending = true;
    }

    /// A delivery replayed after a re-attach (observed as well).
    pub fn replayed(&mut self) {
        self.replayed += 1;
    }

    pub fn observe(&mut self, seq: u64) {
        self.counts.received += 1;
        let behind_gap = std::mem::take(&mut self.gap_pending);
        if seq == self.next {
            self.next += 1;
        } else if seq > self.next && behind_gap {
            self.behind_gap += seq - self.next;
            self.next = seq + 1;
        } else if seq > self.next {
            for missed in self.next..seq {
                if self.missing.len() < MISSING_REMEMBERED_MAX {
                    self.missing.insert(missed);
                } else {
                    self.missing_forgotten += seq - missed;
                    break;
                }
            }
            self.next = seq + 1;
        } else if self.missing.remove(&seq) {
            self.counts.out_of_order += 1;
        } else {
            self.counts.duplicates += 1;
        }
    }

    /// The counts so far, given that `published` sequence numbers (0..published)
    /// were sent: the ones after the highest received count as gaps too.
    #[cfg(test)]
    pub fn counts(&self, published: u64) -> SeqCounts {
        let mut counts = self.counts;
        counts.gaps = self.missing.len() as u64
            + self.missing_forgotten
            + published.saturating_sub(self.next);
        counts
    }
}

/// The trackers of one path summed, compact enough to send between processes; the gaps
/// follow once the number of publishes is known.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PathTally {
    pub trackers: u64,
    /// Missing numbers below each tracker's highest, summed.
    pub missing: u64,
    /// Each tracker's next expected number, summed.
    pub next_sum: u64,
    pub received: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Numbers lost behind gap markers (not among `missing`).
    #[serde(default)]
    pub behind_gap: u64,
    #[serde(default)]
    pub replayed: u64,
}

impl PathTally {
    pub fn add_tracker(&mut self, tracker: &Tracker) {
        self.trackers += 1;
        self.behind_gap += tracker.behind_gap;
        self.replayed += tracker.replayed;
        self.missing += tracker.missing.len() as u64 + tracker.missing_forgotten;
        self.next_sum += tracker.next;
        self.received += tracker.counts.received;
        self.duplicates += tracker.counts.duplicates;
        self.out_of_order += tracker.counts.out_of_order;
    }

    pub fn add(&mut self, other: &PathTally) {
        self.trackers += other.trackers;
        self.missing += other.missing;
        self.next_sum += other.next_sum;
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.behind_gap += other.behind_gap;
        self.replayed += other.replayed;
    }

    /// The same counts as summing `Tracker::counts(published)` over the trackers.
    pub fn counts(&self, published: u64) -> SeqCounts {
        SeqCounts {
            received: self.received,
            gaps: self.missing + (self.trackers * published).saturating_sub(self.next_sum),
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_like_its_trackers() {
        let seen: [&[u64]; 3] = [&[0, 1, 2, 3], &[0, 2, 1, 1], &[3]];
        let mut tally = PathTally::default();
        let mut summed = SeqCounts::default();
        for seqs in seen {
            let mut tracker = Tracker::new();
            seqs.iter().for_each(|s| tracker.observe(*s));
            summed.add(&tracker.counts(5));
            let mut one = PathTally::default();
            one.add_tracker(&tracker);
            tally.add(&one);
        }
        assert_eq!(tally.trackers, 3);
        assert_eq!(tally.counts(5), summed);
        // 1 missing at the tail of the first, 2 of the second, 3 + 1 of the third.
        assert_eq!(summed.gaps, 1 + 2 + 4);
    }

    #[test]
    fn in_order_is_clean() {
        let mut tracker = Tracker::new();
        (0..100).for_each(|seq| tracker.observe(seq));
        let counts = tracker.counts(100);
        assert_eq!(
            counts,
            SeqCounts {
                received: 100,
                ..SeqCounts::default()
            }
        );
    }

    #[test]
    fn gaps_are_counted() {
        let mut tracker = Tracker::new();
        for seq in [0, 1, 4, 5, 9] {
            tracker.observe(seq);
        }
        // 2, 3, 6, 7, 8 missing; plus 10 and 11 at the tail.
        assert_eq!(tracker.counts(10).gaps, 5);
        assert_eq!(tracker.counts(12).gaps, 7);
        // A missing first datagram is a gap too.
        let mut late_start = Tracker::new();
        late_start.observe(1);
        assert_eq!(late_start.counts(2).gaps, 1);
    }

    #[test]
    fn duplicates_are_counted() {
        let mut tracker = Tracker::new();
        for seq in [0, 1, 1, 2, 0, 2] {
            tracker.observe(seq);
        }
        let counts = tracker.counts(3);
        assert_eq!(counts.duplicates, 3);
        assert_eq!(counts.gaps, 0);
        assert_eq!(counts.out_of_order, 0);
        assert_eq!(counts.received, 6);
    }

    #[test]
    fn out_of_order_fills_the_gap() {
        let mut tracker = Tracker::new();
        for seq in [0, 2, 1, 3, 1] {
            tracker.observe(seq);
        }
        let counts = tracker.counts(4);
        assert_eq!(counts.out_of_order, 1);
        assert_eq!(counts.gaps, 0);
        assert_eq!(counts.duplicates, 1, "the second 1 is a duplicate");
    }

    #[test]
    fn a_hole_behind_a_gap_marker_is_announced_loss_not_a_gap() {
        let mut tracker = Tracker::new();
        tracker.observe(0);
        tracker.gap_marker();
        tracker.observe(4);
        // A later hole without a marker is a gap again.
        tracker.observe(7);
        tracker.replayed();
        assert_eq!((tracker.behind_gap, tracker.replayed), (3, 1));
        assert_eq!(tracker.counts(8).gaps, 2);
        // A marker with nothing missing behind it costs nothing.
        tracker.gap_marker();
        tracker.observe(8);
        assert_eq!(tracker.behind_gap, 3);
        let mut tally = PathTally::default();
        tally.add_tracker(&tracker);
        assert_eq!((tally.behind_gap, tally.replayed), (3, 1));
        assert_eq!(tally.counts(9).gaps, 2);
    }

    #[test]
    fn missing_beyond_the_memory_bound_are_still_counted() {
        let mut tracker = Tracker::new();
        tracker.observe(10_000);
        assert_eq!(tracker.counts(10_001).gaps, 10_000);
    }
}
