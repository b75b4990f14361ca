//! A shard's clock: the milliseconds its deadlines (keepalives, long-poll ttls, the grace of
//! detached tunnels, event rate limits) are measured in. In production it is the monotonic
//! clock; a test may start a server on a [`ManualClock`] instead and move time itself, so that
//! a timeout is checked without being waited for.
//!
//! Timeouts about sockets stay on real time (`monoio::time`): a request's arrival and an idle
//! connection (`net::request`), the linger after a closing answer (`conn`), the wait for a
//! WebSocket client's close frame, a write finishing after its tunnel was taken over, the
//! accept back-off, the stop's wait and the port wait at start (`server`). They bound what a
//! peer or the kernel does, which a test clock cannot speed up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;

/// How long [`ManualClock::advance`] waits, in real time, for the shards' timer tasks to catch
/// up with the time it set. They do so in microseconds; only a stopped server, or a test
/// machine stalled for seconds, reaches this.
const CATCH_UP_WAIT_MS: u64 = 5000;
/// How often `advance` looks whether they have.
const CATCH_UP_POLL_US: u64 = 100;

/// One shard's clock.
pub enum Clock {
    /// Milliseconds since the shard started, from the OS's monotonic clock.
    Monotonic(Instant),
    /// The time of a clock that a test moves, shared by every shard of its server; `shard` is
    /// this shard's index in it.
    Manual {
        clock: Arc<ManualClock>,
        shard: usize,
    },
}

impl Clock {
    /// The monotonic clock, starting at 0 now.
    pub fn monotonic() -> Clock {
        Clock::Monotonic(Instant::now())
    }

    /// Milliseconds on this clock.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::Monotonic(started) => started.elapsed().as_millis() as u64,
            Clock::Manual { clock, .. } => clock.now_ms(),
        }
    }

    /// True for a manual clock: the shard's timer task then waits for the clock to move rather
    /// than sleeping for real.
    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual { .. })
    }

    /// For the timer task of a shard on a manual clock: ready once the clock reads past
    /// `seen_ms`, else `waker` is woken when a test moves it. Never ready on the monotonic
    /// clock, whose timer task sleeps instead.
    pub fn poll_moved(&self, seen_ms: u64, waker: &Waker) -> Poll<()> {
        let Clock::Manual { clock, shard } = self else {
            return Poll::Pending;
        };
        let Some(watch) = clock.shards.get(*shard) else {
            debug_assert!(false, "shard {shard} has no place on the manual clock");
            return Poll::Pending;
        };
        // Registered before the clock is read, so a move in between still wakes us.
        watch.waker.register(waker);
        if clock.now_ms() > seen_ms {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Tells a test that this shard's timer task has fired everything due at `now_ms`.
    pub fn caught_up(&self, now_ms: u64) {
        if let Clock::Manual { clock, shard } = self {
            if let Some(watch) = clock.shards.get(*shard) {
                watch.seen_ms.store(now_ms, Ordering::Release);
            }
        }
    }

    /// Counts an attachment deadline set (see [`ManualClock::deadlines_set`]).
    pub fn deadline_set(&self) {
        if let Clock::Manual { clock, .. } = self {
            clock.deadlines_set.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Drops the timer task's waker once the shard has stopped: it belongs to the shard's
    /// runtime, which is about to go.
    pub fn forget_waker(&self) {
        if let Clock::Manual { clock, shard } = self {
            if let Some(watch) = clock.shards.get(*shard) {
                drop(watch.waker.take());
            }
        }
    }
}

/// A clock that only moves when a test says so, shared by the test and every shard of the
/// server it started (`server::start_with_manual_clock`). It starts at 0.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicU64,
    shards: Box<[Watch]>,
    deadlines_set: AtomicU64,
}

/// One shard's side of a manual clock.
#[derive(Debug, Default)]
struct Watch {
    /// The shard's timer task, woken when the clock moves.
    waker: AtomicWaker,
    /// The time the timer task last fired deadlines at.
    seen_ms: AtomicU64,
}

impl ManualClock {
    /// A clock at 0 for a server of `shard_count` shards.
    pub fn new(shard_count: usize) -> ManualClock {
        ManualClock {
            now_ms: AtomicU64::new(0),
            shards: (0..shard_count).map(|_| Watch::default()).collect(),
            deadlines_set: AtomicU64::new(0),
        }
    }

    /// The clock's time in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Acquire)
    }

    /// Moves the clock `ms` forward, wakes every shard's timer task, and waits until each has
    /// fired what came due (keepalives, ttls, culls) at the new time. What those deadlines
    /// wake (a connection writing its keepalive) runs after that, on the shard's own schedule.
    /// False when a shard did not catch up within 5 s of real time (a stopped server).
    pub fn advance(&self, ms: u64) -> bool {
        self.advance_within(ms, CATCH_UP_WAIT_MS)
    }

    fn advance_within(&self, ms: u64, wait_ms: u64) -> bool {
        let now_ms = self.now_ms.fetch_add(ms, Ordering::AcqRel) + ms;
        for watch in self.shards.iter() {
            watch.waker.wake();
        }
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        loop {
            let behind = self
                .shards
                .iter()
                .any(|w| w.seen_ms.load(Ordering::Acquire) < now_ms);
            if !behind {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(CATCH_UP_POLL_US));
        }
    }

    /// How many attachment deadlines the shards have set so far: a keepalive armed (at attach,
    /// after each write, after each keepalive) or a long-poll parked. A connection reads the
    /// clock when it sets its deadline, after the write a test sees; a test that moves the
    /// clock right after reading that write first waits for this count to grow, or the
    /// deadline could be set from the moved time.
    pub fn deadlines_set(&self) -> u64 {
        self.deadlines_set.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn monotonic_clock_starts_at_zero_and_moves_by_itself() {
        let clock = Clock::monotonic();
        assert!(clock.now_ms() < 1000);
        assert!(!clock.is_manual());
        let waker = Waker::from(Arc::new(Counter(AtomicUsize::new(0))));
        assert!(clock.poll_moved(0, &waker).is_pending());
        std::thread::sleep(Duration::from_millis(3));
        assert!(clock.now_ms() >= 2);
    }

    #[test]
    fn advancing_wakes_each_shard_and_waits_for_it_to_catch_up() {
        let manual = Arc::new(ManualClock::new(2));
        let shards: Vec<Clock> = (0..2)
            .map(|shard| Clock::Manual {
                clock: manual.clone(),
                shard,
            })
            .collect();
        let woken = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        for clock in &shards {
            assert_eq!(clock.now_ms(), 0);
            assert!(clock.poll_moved(0, &waker).is_pending());
        }
        // The shards catch up on another thread, as their timer tasks would.
        let catching_up = std::thread::spawn(move || {
            while shards.iter().any(|c| c.poll_moved(0, &waker).is_pending()) {
                std::thread::yield_now();
            }
            for clock in &shards {
                clock.caught_up(clock.now_ms());
            }
        });
        assert!(manual.advance(60_000));
        assert_eq!(manual.now_ms(), 60_000);
        assert!(
            woken.0.load(Ordering::SeqCst) >= 2,
            "both shards were woken"
        );
        catching_up.join().expect("the shards caught up");
    }

    #[test]
    fn advancing_gives_up_when_a_shard_never_catches_up() {
        let manual = ManualClock::new(1);
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(!manual.advance_within(5, 20));
        assert!(Instant::now() >= deadline);
        assert_eq!(manual.now_ms(), 5, "the clock moved all the same");
    }

    #[test]
    fn deadlines_are_counted_on_a_manual_clock_only() {
        let manual = Arc::new(ManualClock::new(1));
        let clock = Clock::Manual {
            clock: manual.clone(),
            shard: 0,
        };
        clock.deadline_set();
        clock.deadline_set();
        Clock::monotonic().deadline_set();
        assert_eq!(manual.deadlines_set(), 2);
    }
}
