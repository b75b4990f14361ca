//! A shard: one core's tunnels, subscriptions and counters, and its ends of the cross-shard mesh.
//! Everything here is `!Send` and touched only by the shard's own thread.

pub mod clock;
mod cull;
pub mod mesh;
mod publish;
pub mod sessions;
pub mod settings;
pub mod stop;
mod users;

pub use publish::{PublishError, Published};
pub use users::NotAdmitted;

use crate::limits::{ENTROPY_POOL_BYTES, READ_BUFFERS_POOLED_MAX, READ_BUFFER_BYTES};
use bytes::BytesMut;
use rtrb::Producer;
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use crate::auth::Auth;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pubsub::{Pattern, Registry};
use crate::tunnel::{Attention, Kick, Subscribed, Tunnel, TunnelId, TunnelLimits};
use crate::wire::format::Formats;
use clock::Clock;
use cull::Grace;
use mesh::ShardMsg;

/// Why a tunnel request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelError {
    Unknown,
    ShardFull,
    SubscriptionLimit,
    RateLimited,
    PrivatePath,
    /// The user holds `tunnels_max` tunnels on the node already.
    UserLimit,
    /// The ring to the user's home shard is full (or that shard stopped).
    RingFull,
}

/// What every shard reads: the counters, and the newest settings (which a reload replaces;
/// a shard reads its own copy, [`Shard::config`]).
pub struct Shared {
    pub settings: settings::Latest,
    pub metrics: Vec<Arc<Metrics>>,
}

impl Shared {
    /// For `shard_count` shards, starting with `settings`.
    pub fn new(shard_count: usize, settings: settings::Settings) -> Shared {
        Shared {
            settings: settings::Latest::new(shard_count, settings),
            metrics: (0..shard_count).map(|_| Arc::default()).collect(),
        }
    }
}

struct State {
    tunnels: Vec<Option<Tunnel>>,
    free_slots: Vec<u32>,
    tunnel_count: usize,
    registry: Registry,
    /// Cull candidates in deadline order (the grace period is the same for all).
    detached: VecDeque<(u64, u32, u32)>,
    /// The same for sessions, whose grace is `session_grace_ms`.
    detached_sessions: VecDeque<(u64, u32, u32)>,
    /// The same for tunnels nobody can re-attach to, culled as soon as they are detached.
    detached_for_good: VecDeque<(u64, u32, u32)>,
    delivery_epoch: u64,
}

/// One shard's state.
pub struct Shard {
    pub id: u16,
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub tunnel_limits: TunnelLimits,
    /// The shard's copy of the newest settings, swapped by a reload; see [`Shard::config`].
    config: RefCell<Rc<Config>>,
    formats: RefCell<Rc<Formats>>,
    /// The `[auth]` checks, behind an `Rc` of the shard's own so that reading them never
    /// touches the reference count other shards share.
    #[allow(
        clippy::redundant_allocation,
        reason = "the Rc keeps every request's clone on this shard's own counter"
    )]
    auth: RefCell<Rc<Arc<Auth>>>,
    /// The TLS listener's configuration (its certificate), as of now.
    tls: RefCell<Option<Arc<rustls::ServerConfig>>>,
    state: RefCell<State>,
    outgoing: RefCell<Vec<Option<Producer<ShardMsg>>>>,
    wakers: Arc<[atomic_waker::AtomicWaker]>,
    /// What every deadline of the shard is measured on.
    clock: Clock,
    datagram_seq: Cell<u64>,
    token_seq: Cell<u64>,
    entropy: RefCell<(Vec<u8>, usize)>,
    timers: RefCell<Timers>,
    read_buffers: RefCell<Vec<BytesMut>>,
    users: RefCell<users::Users>,
    /// The programs of push/pull sessions (read at start-up: a restart key).
    programs: Arc<sessions::Programs>,
    /// The program of each tunnel that is a session, by slot. Empty without sessions, so an
    /// ordinary tunnel pays nothing for it.
    sessions: RefCell<std::collections::HashMap<u32, Arc<sessions::Program>>>,
    /// Set when the server stops; connections between requests wait for it.
    pub stopping: stop::Stopping,
}

/// Attachment deadlines (keepalives, long-poll ttls), fired by one timer task per shard instead
/// of a timer per connection. The same task culls detached tunnels.
struct Timers {
    /// `(due_ms, slot, token)`, earliest first. Entries of attachments that are gone, or whose
    /// deadline moved, are dropped or re-queued when they come due.
    heap: BinaryHeap<Reverse<(u64, u32, u64)>>,
    /// When the timer task will next look; an earlier deadline (or cull) pokes it.
    target_ms: u64,
    poked: bool,
    waker: Option<Waker>,
}

impl Timers {
    /// Makes the timer task look again if `due_ms` comes before it planned to.
    fn due_at(&mut self, due_ms: u64) {
        if due_ms < self.target_ms {
            self.poked = true;
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }
}

impl Shard {
    /// A shard on the monotonic clock.
    pub fn new(
        id: u16,
        shared: Arc<Shared>,
        outgoing: Vec<Option<Producer<ShardMsg>>>,
        wakers: Arc<[atomic_waker::AtomicWaker]>,
    ) -> Rc<Shard> {
        Shard::with_clock(id, shared, outgoing, wakers, Clock::monotonic())
    }

    /// A shard whose deadlines are measured on `clock`.
    pub fn with_clock(
        id: u16,
        shared: Arc<Shared>,
        outgoing: Vec<Option<Producer<ShardMsg>>>,
        wakers: Arc<[atomic_waker::AtomicWaker]>,
        clock: Clock,
    ) -> Rc<Shard> {
        let (_, settings) = shared.settings.get();
        let c = &settings.config;
        let tunnel_limits = TunnelLimits {
            replay_datagrams_max: c.replay_datagrams_max,
            replay_bytes_max: c.replay_bytes_max,
            send_queue_bytes_max: c.send_queue_bytes_max,
            subscriptions_max: c.subscriptions_per_tunnel_max,
            events_per_s: c.events_per_s,
            events_burst: c.events_burst,
        };
        let metrics = shared.metrics.get(id as usize).cloned().unwrap_or_default();
        Rc::new(Shard {
            id,
            metrics,
            tunnel_limits,
            config: RefCell::new(Rc::new(settings.config.clone())),
            formats: RefCell::new(Rc::new(settings.formats.clone())),
            auth: RefCell::new(Rc::new(settings.auth.clone())),
            tls: RefCell::new(settings.tls.clone()),
            shared,
            state: RefCell::new(State {
                tunnels: Vec::new(),
                free_slots: Vec::new(),
                tunnel_count: 0,
                registry: Registry::default(),
                detached: VecDeque::new(),
                detached_sessions: VecDeque::new(),
                detached_for_good: VecDeque::new(),
                delivery_epoch: 0,
            }),
            outgoing: RefCell::new(outgoing),
            wakers,
            clock,
            datagram_seq: Cell::new(0),
            token_seq: Cell::new(0),
            entropy: RefCell::new((Vec::new(), 0)),
            read_buffers: RefCell::new(Vec::new()),
            users: RefCell::new(users::Users::new()),
            programs: settings.programs.clone(),
            sessions: RefCell::new(std::collections::HashMap::new()),
            stopping: stop::Stopping::default(),
            timers: RefCell::new(Timers {
                heap: BinaryHeap::new(),
                target_ms: u64::MAX,
                poked: false,
                waker: None,
            }),
        })
    }

    /// The configuration as of now. A reload swaps it: what reads it again (the next request,
    /// connection, tunnel or keepalive) sees the new values, while a holder of this one keeps
    /// it. The keys that need a restart never change here.
    pub fn config(&self) -> Rc<Config> {
        self.config.borrow().clone()
    }

    /// The formats a tunnel may ask for, as of now (like [`Shard::config`]).
    pub fn formats(&self) -> Rc<Formats> {
        self.formats.borrow().clone()
    }

    /// The `[auth]` checks as of now (like [`Shard::config`]).
    #[allow(
        clippy::redundant_allocation,
        reason = "the Rc keeps every request's clone on this shard's own counter"
    )]
    pub fn auth(&self) -> Rc<Arc<Auth>> {
        self.auth.borrow().clone()
    }

    /// The TLS listener's configuration as of now: a handshake takes it once, so a reloaded
    /// certificate serves the connections that come after.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.borrow().clone()
    }

    /// Serves with `settings` from now on (a reload reached this shard). New keys forget the
    /// tokens verified with the old ones: a token of a key taken out is refused from now on.
    pub fn apply_settings(&self, settings: &settings::Settings) {
        *self.config.borrow_mut() = Rc::new(settings.config.clone());
        *self.formats.borrow_mut() = Rc::new(settings.formats.clone());
        *self.tls.borrow_mut() = settings.tls.clone();
        let mut auth = self.auth.borrow_mut();
        if !Arc::ptr_eq(&auth, &settings.auth) {
            *auth = Rc::new(settings.auth.clone());
            self.forget_verified_tokens();
        }
    }

    pub fn shard_count(&self) -> usize {
        self.wakers.len()
    }

    /// Milliseconds on the shard's clock (since the shard started, on the monotonic clock).
    /// Every deadline the shard keeps is measured on it.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// A read buffer from the shard's pool: connections hold one only while bytes of a request
    /// or a WebSocket message are arriving, and give it back when idle.
    pub fn take_read_buffer(&self) -> BytesMut {
        self.read_buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(READ_BUFFER_BYTES))
    }

    /// Gives a read buffer back. Buffers that grew for a large body or message, or that share
    /// their memory with bytes handed out, are dropped instead.
    pub fn give_read_buffer(&self, mut buf: BytesMut) {
        let mut pool = self.read_buffers.borrow_mut();
        if buf.capacity() == READ_BUFFER_BYTES && pool.len() < READ_BUFFERS_POOLED_MAX {
            buf.clear();
            pool.push(buf);
        }
    }

    /// Starts stopping: every attached connection is kicked (it ends its stream, answers its
    /// poll or closes its WebSocket), and every connection waiting for a request is woken to
    /// close. The connections then end by themselves.
    pub fn begin_stop(&self, ending: stop::Ending) {
        self.stopping.begin(ending);
        let mut state = self.state.borrow_mut();
        for tunnel in state.tunnels.iter_mut().flatten() {
            tunnel.kick_for_stop();
        }
    }

    /// Drops every tunnel and subscription, and the timer's waker, once the shard has stopped:
    /// the wakers they hold would otherwise keep tasks alive past the shard's runtime.
    pub fn clear(&self) {
        let mut state = self.state.borrow_mut();
        let dropped = state.tunnel_count;
        state.tunnels.clear();
        state.free_slots.clear();
        state.detached.clear();
        state.registry = Registry::default();
        state.tunnel_count = 0;
        Metrics::sub(&self.metrics.tunnels_open, dropped as u64);
        let mut timers = self.timers.borrow_mut();
        timers.heap.clear();
        timers.waker = None;
        self.clock.forget_waker();
    }

    /// A token identifying one attachment (one connection's claim on a tunnel).
    pub fn next_token(&self) -> u64 {
        let t = self.token_seq.get() + 1;
        self.token_seq.set(t);
        t
    }

    /// 64 random bits from the OS, drawn in blocks to spare syscalls.
    pub fn random_u64(&self) -> u64 {
        let mut entropy = self.entropy.borrow_mut();
        let (pool, used) = &mut *entropy;
        if *used + 8 > pool.len() {
            pool.resize(ENTROPY_POOL_BYTES, 0);
            if getrandom::getrandom(pool).is_err() {
                // Without OS randomness, fall back to something unique but guessable; say so.
                tracing::error!("getrandom failed; tunnel ids are not secret");
                let seed = crate::metrics::monotonic_ns() ^ u64::from(self.id);
                for (i, b) in pool.iter_mut().enumerate() {
                    *b = (seed.rotate_left(i as u32) >> (i % 8)) as u8;
                }
            }
            *used = 0;
        }
        let mut bytes = [0u8; 8];
        if let Some(src) = pool.get(*used..*used + 8) {
            bytes.copy_from_slice(src);
        }
        *used += 8;
        u64::from_le_bytes(bytes)
    }

    /// Opens a tunnel, detached (and so subject to culling until something attaches).
    pub fn create_tunnel(&self) -> Result<TunnelId, TunnelError> {
        self.create_tunnel_in(false)
    }

    /// Opens a tunnel, a session's when `session` (its grace is then `session_grace_ms`).
    fn create_tunnel_in(&self, session: bool) -> Result<TunnelId, TunnelError> {
        let secret = self.random_u64();
        let now_ms = self.now_ms();
        let grace = if session {
            Grace::Session
        } else {
            Grace::Tunnel
        };
        let grace_ms = self.grace_ms(grace);
        let mut st = self.state.borrow_mut();
        if st.tunnel_count >= self.config().tunnels_per_shard_max {
            return Err(TunnelError::ShardFull);
        }
        let slot = match st.free_slots.pop() {
            Some(s) => s,
            None => {
                st.tunnels.push(None);
                (st.tunnels.len() - 1) as u32
            }
        };
        let id = TunnelId {
            shard: self.id,
            slot,
            secret,
        };
        let tunnel = Tunnel::new(id, &self.tunnel_limits, now_ms);
        if let Some(entry) = st.tunnels.get_mut(slot as usize) {
            *entry = Some(tunnel);
        }
        st.tunnel_count += 1;
        st.cull_queue(grace).push_back((now_ms + grace_ms, slot, 0));
        drop(st);
        self.timers.borrow_mut().due_at(now_ms + grace_ms);
        Metrics::add(&self.metrics.tunnels_created, 1);
        Metrics::add(&self.metrics.tunnels_open, 1);
        Ok(id)
    }

    /// Runs `f` on the tunnel `id` if this shard holds it.
    pub fn with_tunnel<R>(&self, id: &TunnelId, f: impl FnOnce(&mut Tunnel) -> R) -> Option<R> {
        let mut st = self.state.borrow_mut();
        tunnel_mut(&mut st.tunnels, id).map(f)
    }

    pub fn tunnel_exists(&self, id: &TunnelId) -> bool {
        self.with_tunnel(id, |_| ()).is_some()
    }

    /// Subscribes tunnel `id` to `pattern`.
    pub fn subscribe(&self, id: &TunnelId, pattern: &Pattern) -> Result<(), TunnelError> {
        if pattern.touches_private() {
            return Err(TunnelError::PrivatePath);
        }
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let tunnel = tunnel_mut(&mut st.tunnels, id).ok_or(TunnelError::Unknown)?;
        match tunnel.subscribe(pattern, &self.tunnel_limits) {
            Subscribed::Added => {
                st.registry.insert(pattern, id.slot);
                Ok(())
            }
            Subscribed::AlreadyThere => Ok(()),
            Subscribed::LimitReached => Err(TunnelError::SubscriptionLimit),
        }
    }

    /// Unsubscribes; unsubscribing from something never subscribed is not an error.
    pub fn unsubscribe(&self, id: &TunnelId, pattern: &Pattern) -> Result<(), TunnelError> {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let tunnel = tunnel_mut(&mut st.tunnels, id).ok_or(TunnelError::Unknown)?;
        if tunnel.unsubscribe(pattern) {
            st.registry.remove(pattern, id.slot);
        }
        Ok(())
    }

    /// Takes one event token of tunnel `id`.
    pub fn charge_event(&self, id: &TunnelId) -> Result<(), TunnelError> {
        let now_ms = self.now_ms();
        let limits = self.tunnel_limits;
        match self.with_tunnel(id, |t| t.take_event_token(now_ms, &limits)) {
            None => Err(TunnelError::Unknown),
            Some(false) => Err(TunnelError::RateLimited),
            Some(true) => Ok(()),
        }
    }

    /// Attaches connection `token` to tunnel `id`.
    pub fn attach(&self, id: &TunnelId, token: u64) -> bool {
        self.with_tunnel(id, |t| t.attach(token)).is_some()
    }

    /// Detaches connection `token`; the tunnel is culled if nothing re-attaches within the grace.
    pub fn detach(&self, id: &TunnelId, token: u64) {
        let session = self.is_session_slot(id.slot);
        let grace = if session {
            Grace::Session
        } else {
            Grace::Tunnel
        };
        self.detach_with(id, token, grace);
    }

    /// Detaches connection `token` from a tunnel whose client has no id to re-attach with (a
    /// Talk pull): it is culled at once rather than fill its replay buffer for the grace.
    pub fn detach_for_good(&self, id: &TunnelId, token: u64) {
        self.detach_with(id, token, Grace::None);
    }

    fn detach_with(&self, id: &TunnelId, token: u64, grace: Grace) {
        let deadline_ms = self.now_ms() + self.grace_ms(grace);
        let mut st = self.state.borrow_mut();
        let Some(tunnel) = tunnel_mut(&mut st.tunnels, id) else {
            return;
        };
        if !tunnel.detach(token) {
            return;
        }
        let epoch = tunnel.detach_epoch;
        st.cull_queue(grace)
            .push_back((deadline_ms, id.slot, epoch));
        drop(st);
        self.timers.borrow_mut().due_at(deadline_ms);
    }

    /// For attachment `token` of tunnel `id`: see [`Tunnel::poll_attachment`].
    pub fn poll_attachment(
        &self,
        id: &TunnelId,
        token: u64,
        waker: &Waker,
    ) -> Result<Attention, Kick> {
        self.with_tunnel(id, |t| t.poll_attachment(token, waker))
            .unwrap_or(Err(Kick::Replaced))
    }

    /// `Some(kick)` when attachment `token` must go; otherwise registers `waker` for when it must.
    pub fn poll_kick(&self, id: &TunnelId, token: u64, waker: &Waker) -> Option<Kick> {
        self.with_tunnel(id, |t| t.poll_kick(token, waker))
            .unwrap_or(Some(Kick::Replaced))
    }

    /// Sets the deadline of attachment `token` (a keepalive due, a long-poll ttl); the shard's
    /// timer task fires it. Moving it later (a stream wrote) is cheap: the queued entry re-queues
    /// itself when it comes due.
    pub fn set_deadline(&self, id: &TunnelId, token: u64, due_ms: u64) {
        self.clock.deadline_set();
        if self.with_tunnel(id, |t| t.set_deadline(token, due_ms)) != Some(Some(true)) {
            return;
        }
        let mut timers = self.timers.borrow_mut();
        timers.heap.push(Reverse((due_ms, id.slot, token)));
        timers.due_at(due_ms);
    }

    /// For the timer task: fires every attachment deadline that has passed and culls every
    /// tunnel whose grace has, at one reading of the clock. Returns that reading and when the
    /// next deadline or cull is due (`u64::MAX` if none is queued).
    pub fn run_timers(&self) -> (u64, u64) {
        let now_ms = self.now_ms();
        let next_ms = self.fire_deadlines(now_ms).min(self.cull_expired(now_ms));
        self.clock.caught_up(now_ms);
        (now_ms, next_ms)
    }

    /// Fires every deadline due at `now_ms`; returns when the next one is due.
    fn fire_deadlines(&self, now_ms: u64) -> u64 {
        let mut st = self.state.borrow_mut();
        let mut timers = self.timers.borrow_mut();
        while let Some(&Reverse((due_ms, slot, token))) = timers.heap.peek() {
            if due_ms > now_ms {
                return due_ms;
            }
            timers.heap.pop();
            if let Some(Some(t)) = st.tunnels.get_mut(slot as usize) {
                if let Some(later_ms) = t.check_deadline(token, now_ms) {
                    timers.heap.push(Reverse((later_ms, slot, token)));
                }
            }
        }
        u64::MAX
    }

    /// For the timer task: records when it will next look, and registers its waker for an
    /// earlier deadline. Ready when poked.
    pub fn poll_timer_poke(&self, target_ms: u64, waker: &Waker) -> bool {
        let mut timers = self.timers.borrow_mut();
        timers.target_ms = target_ms;
        if std::mem::take(&mut timers.poked) {
            return true;
        }
        timers.waker = Some(waker.clone());
        false
    }
}

fn tunnel_mut<'a>(tunnels: &'a mut [Option<Tunnel>], id: &TunnelId) -> Option<&'a mut Tunnel> {
    match tunnels.get_mut(id.slot as usize) {
        Some(Some(t)) if t.id == *id => Some(t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn shard() -> Rc<Shard> {
        let shared = Arc::new(Shared::new(
            1,
            settings::Settings {
                config: Config::default(),
                formats: Formats::default(),
                auth: Arc::new(Auth::open()),
                tls: None,
                programs: Default::default(),
            },
        ));
        Shard::new(0, shared, vec![None], Arc::from(vec![Default::default()]))
    }

    #[test]
    fn applied_settings_reach_new_readers_and_spare_old_holders() {
        let shard = shard();
        let before = shard.config();
        assert!(shard.formats().get("mine").is_none());
        let config = Config {
            keepalive_ms: 500,
            ..Config::default()
        };
        let template = |text: &str| crate::wire::template::Template::parse(text).unwrap();
        let formats = Formats::new([crate::wire::format::CustomFormat {
            name: "mine".to_owned(),
            content_type: "text/plain".to_owned(),
            header: template(""),
            envelope: template("{json}"),
            keepalive: template(""),
            footer: template(""),
            html_escape: false,
        }]);
        shard.apply_settings(&settings::Settings {
            config,
            formats,
            auth: Arc::new(Auth::open()),
            tls: None,
            programs: Default::default(),
        });
        assert_eq!(shard.config().keepalive_ms, 500);
        assert!(shard.formats().get("mine").is_some());
        assert_eq!(before.keepalive_ms, Config::default().keepalive_ms);
    }

    #[test]
    fn timers_cull_when_the_grace_ends_and_say_when_to_look_next() {
        let manual = Arc::new(clock::ManualClock::new(1));
        let shared = Arc::new(Shared::new(
            1,
            settings::Settings {
                config: Config::default(),
                formats: Formats::default(),
                auth: Arc::new(Auth::open()),
                tls: None,
                programs: Default::default(),
            },
        ));
        let wakers = Arc::from(vec![Default::default()]);
        let clock = Clock::Manual {
            clock: manual.clone(),
            shard: 0,
        };
        let shard = Shard::with_clock(0, shared, vec![None], wakers, clock);
        let grace_ms = shard.config().tunnel_grace_ms;
        assert_eq!(shard.run_timers(), (0, u64::MAX), "nothing is due");
        let id = shard.create_tunnel().expect("room for a tunnel");
        assert_eq!(shard.run_timers(), (0, grace_ms), "the new tunnel's grace");
        // No timer task runs here: `advance` waits on another thread until `run_timers` has
        // run at the new time, as a shard's timer task would.
        let moved = std::thread::spawn(move || manual.advance(grace_ms));
        while shard.now_ms() < grace_ms {
            std::thread::yield_now();
        }
        assert_eq!(shard.run_timers(), (grace_ms, u64::MAX));
        assert!(
            moved.join().expect("advance returns"),
            "run_timers caught up"
        );
        assert!(!shard.tunnel_exists(&id), "culled");
        assert_eq!(shard.metrics.tunnels_culled.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn read_buffers_are_reused_and_only_whole_ones_kept() {
        let shard = shard();
        let mut buf = shard.take_read_buffer();
        assert_eq!(buf.capacity(), READ_BUFFER_BYTES);
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let ptr = buf.as_ptr();
        shard.give_read_buffer(buf);
        let again = shard.take_read_buffer();
        assert_eq!(again.as_ptr(), ptr, "the same memory comes back");
        assert!(again.is_empty());
        // A buffer that handed bytes out, or grew, is not pooled.
        let mut split = again;
        split.extend_from_slice(b"abc");
        let _handed_out = split.split_to(3).freeze();
        shard.give_read_buffer(split);
        let mut grown = BytesMut::with_capacity(READ_BUFFER_BYTES * 4);
        grown.extend_from_slice(b"x");
        shard.give_read_buffer(grown);
        assert!(shard.read_buffers.borrow().is_empty());
    }
}
