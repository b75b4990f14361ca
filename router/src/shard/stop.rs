//! Stopping a shard. [`Stop`] is the signal every shard hears, set once by whoever stops the
//! server, and says how ([`Ending`]) and how long the shards wait for their connections;
//! [`Stopping`] is one shard's side of it: the connections waiting for a request wait for it
//! too, so that a stopping shard can end every connection it serves.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use atomic_waker::AtomicWaker;

/// How the attachments of a stopping server end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The server stops (a WebSocket closes 1001, going away).
    Stop,
    /// The process drains before it exits, to be restarted: a WebSocket closes 1012 (service
    /// restart), an SSE stream tells its client when to come back (`retry:`, with jitter).
    Drain,
}

/// Shared by the server and its shards; one waker per shard.
#[derive(Debug)]
pub struct Stop {
    stopped: AtomicBool,
    draining: AtomicBool,
    /// How long a stopping shard waits for its connections to end.
    wait_ms: AtomicU64,
    wakers: Box<[AtomicWaker]>,
}

impl Stop {
    pub fn new(shard_count: usize) -> Stop {
        Stop {
            stopped: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            wait_ms: AtomicU64::new(0),
            wakers: (0..shard_count).map(|_| AtomicWaker::new()).collect(),
        }
    }

    /// Tells every shard to stop, waiting up to `wait_ms` for its connections. The first call
    /// decides. Idempotent.
    pub fn stop(&self, ending: Ending, wait_ms: u64) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        self.draining
            .store(ending == Ending::Drain, Ordering::Relaxed);
        self.wait_ms.store(wait_ms, Ordering::Relaxed);
        self.stopped.store(true, Ordering::Release);
        for waker in self.wakers.iter() {
            waker.wake();
        }
    }

    /// How the shards end their attachments, once stopped.
    pub fn ending(&self) -> Ending {
        if self.draining.load(Ordering::Relaxed) {
            Ending::Drain
        } else {
            Ending::Stop
        }
    }

    /// How long a stopping shard waits for its connections.
    pub fn wait_ms(&self) -> u64 {
        self.wait_ms.load(Ordering::Relaxed)
    }

    /// Resolves once the server is told to stop; awaited by shard `shard_id`'s main task.
    pub async fn stopped(&self, shard_id: usize) {
        poll_fn(|cx| {
            let Some(waker) = self.wakers.get(shard_id) else {
                debug_assert!(false, "shard {shard_id} has no stop waker");
                return Poll::Ready(());
            };
            waker.register(cx.waker());
            if self.stopped.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

/// One shard's stopping state: whether (and how) it stops, and the wakers of the connections
/// that wait for it.
#[derive(Debug, Default)]
pub struct Stopping {
    ending: Cell<Option<Ending>>,
    waiting: RefCell<Waiting>,
}

/// Wakers by key; a key is reused once its waiter is gone.
#[derive(Debug, Default)]
struct Waiting {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Stopping {
    pub fn is_stopping(&self) -> bool {
        self.ending.get().is_some()
    }

    /// How the shard ends its attachments; `None` while it serves.
    pub fn ending(&self) -> Option<Ending> {
        self.ending.get()
    }

    /// Marks the shard as stopping and wakes every waiter.
    pub fn begin(&self, ending: Ending) {
        self.ending.set(Some(ending));
        let wakers = std::mem::take(&mut self.waiting.borrow_mut().wakers);
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    /// Resolves once the shard is stopping.
    pub fn wait(&self) -> StoppingWait<'_> {
        StoppingWait {
            stopping: self,
            key: None,
        }
    }
}

/// The future of [`Stopping::wait`]; it holds a waker slot only while it is pending.
pub struct StoppingWait<'a> {
    stopping: &'a Stopping,
    key: Option<usize>,
}

impl Future for StoppingWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stopping.is_stopping() {
            return Poll::Ready(());
        }
        let mut waiting = self.stopping.waiting.borrow_mut();
        let waker = Some(cx.waker().clone());
        match self.key {
            Some(key) => {
                if let Some(slot) = waiting.wakers.get_mut(key) {
                    *slot = waker;
                }
            }
            None => {
                let key = match waiting.free.pop() {
                    Some(key) => key,
                    None => {
                        waiting.wakers.push(None);
                        waiting.wakers.len() - 1
                    }
                };
                if let Some(slot) = waiting.wakers.get_mut(key) {
                    *slot = waker;
                }
                drop(waiting);
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for StoppingWait<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut waiting = self.stopping.waiting.borrow_mut();
        // After `begin` the table is empty: nothing to give back.
        if let Some(slot) = waiting.wakers.get_mut(key) {
            *slot = None;
            waiting.free.push(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn waiters_wake_once_stopping_and_give_their_slot_back() {
        let stopping = Stopping::default();
        assert_eq!(stopping.ending(), None);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut first = Box::pin(stopping.wait());
        assert_eq!(first.as_mut().poll(&mut cx), Poll::Pending);
        {
            let mut second = Box::pin(stopping.wait());
            assert_eq!(second.as_mut().poll(&mut cx), Poll::Pending);
            assert_eq!(stopping.waiting.borrow().wakers.len(), 2);
        }
        // The second's slot is reused, not grown.
        let mut third = Box::pin(stopping.wait());
        assert_eq!(third.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(stopping.waiting.borrow().wakers.len(), 2);
        stopping.begin(Ending::Drain);
        assert_eq!(stopping.ending(), Some(Ending::Drain));
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(first.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(third.as_mut().poll(&mut cx), Poll::Ready(()));
        drop(first);
        drop(third);
        // A wait that starts after the stop is ready at once.
        assert_eq!(
            Box::pin(stopping.wait()).as_mut().poll(&mut cx),
            Poll::Ready(())
        );
    }
}
