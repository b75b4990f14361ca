//! The settings shards read while serving (the configuration and its custom formats), and how a
//! reload reaches them: [`Latest`] holds the newest settings and wakes every shard; each shard
//! then swaps in its own copy, which its data path reads without a lock or a shared counter.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use atomic_waker::AtomicWaker;

use crate::auth::Auth;
use crate::config::Config;
use crate::wire::format::Formats;

use super::sessions::Programs;

/// A configuration, its custom formats parsed, its `[auth]` keys and programs loaded.
pub struct Settings {
    pub config: Config,
    pub formats: Formats,
    /// Shared by every shard (its keys are read once per reload, not once per shard).
    pub auth: Arc<Auth>,
    /// The TLS listener's certificate, read once per reload; `None` without `[tls]`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The programs of push/pull sessions; a restart key, so a reload passes the running ones.
    pub programs: Arc<Programs>,
}

/// The newest settings, shared by the server and its shards. The lock is taken when settings
/// are published and once per shard when it picks them up: never on the data path.
pub struct Latest {
    /// The settings and their generation (0 for those the server started with).
    current: Mutex<(u64, Arc<Settings>)>,
    /// The generation each shard has applied.
    applied: Box<[AtomicU64]>,
    wakers: Box<[AtomicWaker]>,
}

impl Latest {
    pub fn new(shard_count: usize, settings: Settings) -> Latest {
        Latest {
            current: Mutex::new((0, Arc::new(settings))),
            applied: (0..shard_count).map(|_| AtomicU64::new(0)).collect(),
            wakers: (0..shard_count).map(|_| AtomicWaker::new()).collect(),
        }
    }

    /// The newest settings and their generation.
    pub fn get(&self) -> (u64, Arc<Settings>) {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        (current.0, current.1.clone())
    }

    /// Makes `settings` the newest and wakes every shard to pick them up. Returns their
    /// generation.
    pub fn publish(&self, settings: Settings) -> u64 {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = current.0 + 1;
        *current = (generation, Arc::new(settings));
        drop(current);
        for waker in self.wakers.iter() {
            waker.wake();
        }
        generation
    }

    /// How many shards have applied generation `generation` (or a later one).
    pub fn applied_by(&self, generation: u64) -> usize {
        self.applied
            .iter()
            .filter(|a| a.load(Ordering::Acquire) >= generation)
            .count()
    }

    /// Records that shard `shard_id` serves with generation `generation` from now on.
    pub fn applied(&self, shard_id: usize, generation: u64) {
        if let Some(a) = self.applied.get(shard_id) {
            a.store(generation, Ordering::Release);
        }
    }

    /// Resolves with the newest settings once they are newer than generation `seen`; awaited
    /// by shard `shard_id`'s settings task.
    pub async fn newer(&self, shard_id: usize, seen: u64) -> (u64, Arc<Settings>) {
        poll_fn(|cx| {
            let Some(waker) = self.wakers.get(shard_id) else {
                debug_assert!(false, "shard {shard_id} has no settings waker");
                return Poll::Pending;
            };
            waker.register(cx.waker());
            let newest = self.get();
            if newest.0 > seen {
                Poll::Ready(newest)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Drops shard `shard_id`'s waker once its runtime is gone, so that a later publish wakes
    /// nothing of it.
    pub fn forget(&self, shard_id: usize) {
        if let Some(waker) = self.wakers.get(shard_id) {
            drop(waker.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context, Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn settings(keepalive_ms: u64) -> Settings {
        Settings {
            config: Config {
                keepalive_ms,
                ..Config::default()
            },
            formats: Formats::default(),
            auth: Arc::new(crate::auth::Auth::open()),
            tls: None,
            programs: Default::default(),
        }
    }

    #[test]
    fn a_publish_wakes_each_shard_which_then_records_what_it_applied() {
        let latest = Latest::new(2, settings(1000));
        assert_eq!(latest.get().0, 0);
        assert_eq!(
            latest.applied_by(0),
            2,
            "every shard starts with generation 0"
        );
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut waits: Vec<_> = (0..2).map(|i| Box::pin(latest.newer(i, 0))).collect();
        for wait in &mut waits {
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(latest.publish(settings(2000)), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "both shards woken");
        assert_eq!(latest.applied_by(1), 0);
        for (i, wait) in waits.iter_mut().enumerate() {
            let Poll::Ready((generation, newest)) = wait.as_mut().poll(&mut cx) else {
                panic!("shard {i} sees the new settings");
            };
            assert_eq!((generation, newest.config.keepalive_ms), (1, 2000));
            latest.applied(i, generation);
            assert_eq!(latest.applied_by(1), i + 1);
        }
        // Nothing newer: a shard waits again.
        assert!(Box::pin(latest.newer(0, 1))
            .as_mut()
            .poll(&mut cx)
            .is_pending());
        latest.forget(0);
        latest.forget(1);
        latest.publish(settings(3000));
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            2,
            "forgotten wakers stay asleep"
        );
    }
}
