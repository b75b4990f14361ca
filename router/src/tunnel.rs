//! Tunnel state: identity, subscriptions, the replay buffer that doubles as the send queue, and
//! the attachment of at most one connection. Pure state, no I/O: the server drives it.

use std::collections::VecDeque;
use std::fmt;
use std::task::Waker;

use crate::pubsub::Pattern;
use crate::wire::datagram::Datagram;

/// A tunnel's public id, `<shard>-<slot>-<secret>`: the owner shard is part of the id so any shard
/// can route a request to it, and the 64-bit random secret makes ids unguessable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelId {
    pub shard: u16,
    pub slot: u32,
    pub secret: u64,
}

impl fmt::Display for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{:016x}", self.shard, self.slot, self.secret)
    }
}

/// Longest id text: a u16, a u32 and 16 hex digits, with two dashes.
const ID_TEXT_BYTES_MAX: usize = 5 + 1 + 10 + 1 + 16;

/// A tunnel id's text, built on the stack when needed rather than kept per connection.
pub struct IdText {
    bytes: [u8; ID_TEXT_BYTES_MAX],
    len: usize,
}

impl IdText {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, hex and dashes are ever written.
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl TunnelId {
    /// The id's text, as [`fmt::Display`] writes it.
    pub fn text(&self) -> IdText {
        use std::io::Write;
        let mut bytes = [0u8; ID_TEXT_BYTES_MAX];
        let mut cursor = std::io::Cursor::new(&mut bytes[..]);
        let written = write!(cursor, "{self}");
        debug_assert!(written.is_ok(), "the buffer fits the longest id");
        let len = cursor.position() as usize;
        IdText { bytes, len }
    }

    /// Parses an id in its one spelling, the one [`fmt::Display`] writes: decimal shard and
    /// slot without sign or leading zeros, then 16 lowercase hex digits. `None` for anything
    /// else (which the router treats as an unknown tunnel), so `01-…`, `+1-…` or an uppercase
    /// secret never name the same tunnel a second way.
    pub fn parse(text: &str) -> Option<TunnelId> {
        let mut parts = text.splitn(3, '-');
        let shard = canonical_decimal(parts.next()?)?;
        let slot = canonical_decimal(parts.next()?)?;
        let secret_hex = parts.next()?;
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if secret_hex.len() != 16 || !secret_hex.bytes().all(lower_hex) {
            return None;
        }
        let secret = u64::from_str_radix(secret_hex, 16).ok()?;
        Some(TunnelId {
            shard,
            slot,
            secret,
        })
    }
}

/// `0`, or digits not starting with `0`, that fit `T`.
fn canonical_decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    if !digits_only || leading_zero {
        return None;
    }
    text.parse().ok()
}

/// Bounds a tunnel enforces on itself.
#[derive(Debug, Clone, Copy)]
pub struct TunnelLimits {
    pub replay_datagrams_max: usize,
    pub replay_bytes_max: usize,
    pub send_queue_bytes_max: usize,
    pub subscriptions_max: usize,
    pub events_per_s: u32,
    pub events_burst: u32,
}

/// Why an attached connection was told to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// It fell further behind than the send queue allows (or unsent datagrams were evicted).
    SlowConsumer,
    /// Another connection attached to the same tunnel.
    Replaced,
    /// The server is stopping.
    Stopping,
    /// The token the tunnel was opened (or last re-attached) with has expired, and no fresh one
    /// came through `POST /tunnel/<id>/token`: the connection is told so and closed. The tunnel
    /// stays for a re-attach with a fresh token, so nothing is lost.
    TokenExpired,
}

/// What an attached connection should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    /// Nothing yet: its waker is registered.
    Idle,
    /// Datagrams wait to be sent.
    Data,
    /// Its deadline passed (keepalive due, long-poll ttl over).
    Deadline,
}

/// The one connection attached to a tunnel. Its deadline lives here rather than in a timer
/// future per connection: the shard's timer task fires it, which keeps an idle attachment small.
#[derive(Debug)]
struct Attachment {
    token: u64,
    waker: Option<Waker>,
    kick: Option<Kick>,
    deadline_ms: u64,
    deadline_fired: bool,
    /// True while the shard's timer holds an entry for this attachment.
    deadline_queued: bool,
}

/// Outcome of subscribing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    Added,
    AlreadyThere,
    LimitReached,
}

/// Token bucket for client events, in thousandths of an event so refills need no floats.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens_milli: u64,
    refilled_ms: u64,
}

/// One tunnel, owned by one shard.
#[derive(Debug)]
pub struct Tunnel {
    pub id: TunnelId,
    subscriptions: Vec<Pattern>,
    /// Datagrams routed here, oldest first; entry `i` has tunnel sequence `replay_seq_first + i`.
    replay: VecDeque<Datagram>,
    replay_seq_first: u64,
    replay_bytes: usize,
    /// Tunnel sequence of the next datagram the client has not been sent.
    cursor: u64,
    /// Bytes of datagrams at or after `cursor`.
    unsent_bytes: usize,
    attachment: Option<Attachment>,
    /// Bumped at every detach, so a stale cull entry for an earlier detach is ignored.
    pub detach_epoch: u32,
    /// Shard delivery epoch of the last datagram pushed, to deliver once per publish when several
    /// patterns match.
    pub delivery_epoch_last: u64,
    bucket: Bucket,
}

impl Tunnel {
    pub fn new(id: TunnelId, limits: &TunnelLimits, now_ms: u64) -> Tunnel {
        Tunnel {
            id,
            subscriptions: Vec::new(),
            replay: VecDeque::new(),
            replay_seq_first: 0,
            replay_bytes: 0,
            cursor: 0,
            unsent_bytes: 0,
            attachment: None,
            detach_epoch: 0,
            delivery_epoch_last: 0,
            bucket: Bucket {
                tokens_milli: u64::from(limits.events_burst) * 1000,
                refilled_ms: now_ms,
            },
        }
    }

    fn seq_end(&self) -> u64 {
        self.replay_seq_first + self.replay.len() as u64
    }

    pub fn subscriptions(&self) -> &[Pattern] {
        &self.subscriptions
    }

    /// Records a subscription (the caller indexes it in the registry when `Added`).
    pub fn subscribe(&mut self, pattern: &Pattern, limits: &TunnelLimits) -> Subscribed {
        if self.subscriptions.contains(pattern) {
            return Subscribed::AlreadyThere;
        }
        if self.subscriptions.len() >= limits.subscriptions_max {
            return Subscribed::LimitReached;
        }
        self.subscriptions.push(pattern.clone());
        Subscribed::Added
    }

    /// Forgets a subscription; false when it was not there.
    pub fn unsubscribe(&mut self, pattern: &Pattern) -> bool {
        match self.subscriptions.iter().position(|p| p == pattern) {
            Some(i) => {
                self.subscriptions.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Takes every subscription, for culling.
    pub fn take_subscriptions(&mut self) -> Vec<Pattern> {
        std::mem::take(&mut self.subscriptions)
    }

    /// Queues a datagram, evicting the oldest beyond the replay bounds. An attached connection
    /// that falls too far behind is kicked as a slow consumer; it is woken either way.
    pub fn push(&mut self, datagram: Datagram, limits: &TunnelLimits) {
        let len = datagram.len();
        self.replay.push_back(datagram);
        self.replay_bytes += len;
        self.unsent_bytes += len;
        while self.replay.len() > limits.replay_datagrams_max
            || (self.replay_bytes > limits.replay_bytes_max && self.replay.len() > 1)
        {
            let Some(evicted) = self.replay.pop_front() else {
                break;
            };
            self.replay_bytes -= evicted.len();
            if self.replay_seq_first >= self.cursor {
                // The client never got it: the cursor now points before the buffer, which
                // `seek` reports as a gap when the client re-attaches.
                self.unsent_bytes -= evicted.len();
                self.kick(Kick::SlowConsumer);
            }
            self.replay_seq_first += 1;
        }
        if self.unsent_bytes > limits.send_queue_bytes_max {
            self.kick(Kick::SlowConsumer);
        }
        self.wake();
    }

    /// Positions the cursor for a new attachment: just after `last` when the replay buffer still
    /// holds it; otherwise at the oldest datagram held, returning true (a gap) when something the
    /// client asked for is gone. Without `last`, resumes where the previous attachment stopped.
    pub fn seek(&mut self, last: Option<&[u8]>) -> bool {
        let gap = match last {
            Some(last) => match self.replay.iter().rposition(|d| d.id() == last) {
                Some(i) => {
                    self.cursor = self.replay_seq_first + i as u64 + 1;
                    false
                }
                None => {
                    self.cursor = self.replay_seq_first;
                    true
                }
            },
            None => {
                let behind = self.cursor < self.replay_seq_first;
                self.cursor = self.cursor.max(self.replay_seq_first);
                behind
            }
        };
        self.unsent_bytes = self.unsent().map(Datagram::len).sum();
        gap
    }

    /// Positions the cursor at the first datagram the tunnel ever held, for a client that has
    /// processed none yet (it sends its tunnel id as `last`): everything held is replayed.
    /// Returns true (a gap) when datagrams were evicted since the tunnel opened.
    pub fn seek_start(&mut self) -> bool {
        self.cursor = self.replay_seq_first;
        self.unsent_bytes = self.unsent().map(Datagram::len).sum();
        self.replay_seq_first > 0
    }

    fn unsent(&self) -> impl Iterator<Item = &Datagram> {
        let skip = self.cursor.saturating_sub(self.replay_seq_first) as usize;
        self.replay.iter().skip(skip)
    }

    /// True (once) when datagrams the client was never sent have been evicted: the caller
    /// sends a `gap` control datagram before the next ones, so the loss is never silent.
    pub fn take_gap(&mut self) -> bool {
        if self.cursor >= self.replay_seq_first {
            return false;
        }
        self.cursor = self.replay_seq_first;
        true
    }

    /// How many datagrams are waiting to be sent.
    pub fn unsent_count(&self) -> u64 {
        self.seq_end()
            .saturating_sub(self.cursor.max(self.replay_seq_first))
    }

    /// True when datagrams are waiting to be sent.
    pub fn has_unsent(&self) -> bool {
        self.cursor < self.seq_end()
    }

    /// Hands unsent datagrams to `take`, oldest first, until it returns false or
    /// `count_max` were taken; advances the cursor past each one taken. Returns the count.
    pub fn drain_unsent(
        &mut self,
        count_max: usize,
        mut take: impl FnMut(&Datagram) -> bool,
    ) -> usize {
        let mut taken = 0;
        self.cursor = self.cursor.max(self.replay_seq_first);
        while taken < count_max && self.has_unsent() {
            let index = (self.cursor - self.replay_seq_first) as usize;
            let Some(datagram) = self.replay.get(index) else {
                break;
            };
            if !take(datagram) {
                break;
            }
            self.unsent_bytes -= datagram.len();
            self.cursor += 1;
            taken += 1;
        }
        taken
    }

    pub fn is_attached(&self) -> bool {
        self.attachment.is_some()
    }

    /// Attaches the connection identified by `token`, kicking any earlier one.
    pub fn attach(&mut self, token: u64) {
        if let Some(old) = self.attachment.take() {
            if let Some(w) = old.waker {
                w.wake();
            }
        }
        self.attachment = Some(Attachment {
            token,
            waker: None,
            kick: None,
            deadline_ms: u64::MAX,
            deadline_fired: false,
            deadline_queued: false,
        });
    }

    /// Detaches `token` if it is still the attached connection; returns true when it was.
    pub fn detach(&mut self, token: u64) -> bool {
        match &self.attachment {
            Some(a) if a.token == token => {
                self.attachment = None;
                self.detach_epoch = self.detach_epoch.wrapping_add(1);
                true
            }
            _ => false,
        }
    }

    /// For the attached connection `token`: `Err(kick)` if it must go, otherwise what needs its
    /// attention; when nothing does, registers `waker`.
    pub fn poll_attachment(&mut self, token: u64, waker: &Waker) -> Result<Attention, Kick> {
        let unsent = self.has_unsent();
        match &mut self.attachment {
            Some(a) if a.token == token => {
                if let Some(kick) = a.kick {
                    return Err(kick);
                }
                if unsent {
                    return Ok(Attention::Data);
                }
                if std::mem::take(&mut a.deadline_fired) {
                    return Ok(Attention::Deadline);
                }
                match &a.waker {
                    Some(w) if w.will_wake(waker) => {}
                    _ => a.waker = Some(waker.clone()),
                }
                Ok(Attention::Idle)
            }
            // Detached or replaced by someone else.
            _ => Err(Kick::Replaced),
        }
    }

    /// `Some(kick)` when attachment `token` must go; otherwise registers `waker`, which any
    /// push or kick wakes. Used while a write is in flight.
    pub fn poll_kick(&mut self, token: u64, waker: &Waker) -> Option<Kick> {
        match &mut self.attachment {
            Some(a) if a.token == token => {
                if a.kick.is_some() {
                    return a.kick;
                }
                match &a.waker {
                    Some(w) if w.will_wake(waker) => {}
                    _ => a.waker = Some(waker.clone()),
                }
                None
            }
            _ => Some(Kick::Replaced),
        }
    }

    /// Sets the deadline of attachment `token`. Returns `Some(true)` when the shard's timer must
    /// queue an entry for it (none is queued, or the new deadline is earlier than the queued
    /// one), `Some(false)` when the queued entry will find the new deadline, `None` when
    /// `token` is not attached.
    pub fn set_deadline(&mut self, token: u64, deadline_ms: u64) -> Option<bool> {
        match &mut self.attachment {
            Some(a) if a.token == token => {
                let queue = !a.deadline_queued || deadline_ms < a.deadline_ms;
                a.deadline_ms = deadline_ms;
                a.deadline_fired = false;
                a.deadline_queued = true;
                Some(queue)
            }
            _ => None,
        }
    }

    /// Called by the shard's timer at `now_ms` for attachment `token`: fires the deadline if it
    /// has passed and returns `None`, or returns the later deadline to check again at (it moves
    /// when a stream writes). `None` as well when the attachment is gone.
    pub fn check_deadline(&mut self, token: u64, now_ms: u64) -> Option<u64> {
        let a = self.attachment.as_mut().filter(|a| a.token == token)?;
        if a.deadline_ms > now_ms {
            return Some(a.deadline_ms);
        }
        a.deadline_fired = true;
        a.deadline_queued = false;
        a.deadline_ms = u64::MAX;
        if let Some(w) = a.waker.take() {
            w.wake();
        }
        None
    }

    /// Tells the attached connection, if any, that the server is stopping.
    pub fn kick_for_stop(&mut self) {
        self.kick(Kick::Stopping);
    }

    /// Tells the attached connection, if any, that the tunnel's token expired.
    pub fn kick_for_expiry(&mut self) {
        self.kick(Kick::TokenExpired);
    }

    fn kick(&mut self, kick: Kick) {
        if let Some(a) = &mut self.attachment {
            a.kick.get_or_insert(kick);
            if let Some(w) = a.waker.take() {
                w.wake();
            }
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.attachment.as_mut().and_then(|a| a.waker.take()) {
            w.wake();
        }
    }

    /// Takes one event token; false when over the rate limit. `events_per_s == 0` is unlimited.
    pub fn take_event_token(&mut self, now_ms: u64, limits: &TunnelLimits) -> bool {
        if limits.events_per_s == 0 {
            return true;
        }
        let elapsed_ms = now_ms.saturating_sub(self.bucket.refilled_ms);
        let cap_milli = u64::from(limits.events_burst) * 1000;
        self.bucket.tokens_milli =
            (self.bucket.tokens_milli + elapsed_ms * u64::from(limits.events_per_s)).min(cap_milli);
        self.bucket.refilled_ms = now_ms;
        if self.bucket.tokens_milli >= 1000 {
            self.bucket.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::datagram::DatagramId;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    const LIMITS: TunnelLimits = TunnelLimits {
        replay_datagrams_max: 4,
        replay_bytes_max: 1 << 20,
        send_queue_bytes_max: 1 << 20,
        subscriptions_max: 2,
        events_per_s: 10,
        events_burst: 2,
    };

    fn dg(seq: u64) -> Datagram {
        Datagram::encode(DatagramId { shard: 0, seq }, "/p", b"0", 0)
    }

    fn tunnel() -> Tunnel {
        Tunnel::new(
            TunnelId {
                shard: 1,
                slot: 7,
                secret: 0xabc,
            },
            &LIMITS,
            0,
        )
    }

    fn drain(t: &mut Tunnel) -> Vec<String> {
        let mut ids = Vec::new();
        t.drain_unsent(usize::MAX, |d| {
            ids.push(String::from_utf8(d.id().to_vec()).unwrap());
            true
        });
        ids
    }

    struct CountWake(AtomicUsize);
    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn ids_round_trip() {
        let id = TunnelId {
            shard: 3,
            slot: 99,
            secret: 0x0123_4567_89ab_cdef,
        };
        assert_eq!(id.to_string(), "3-99-0123456789abcdef");
        assert_eq!(TunnelId::parse(&id.to_string()), Some(id));
        assert_eq!(TunnelId::parse("3-99-123"), None);
        assert_eq!(TunnelId::parse("x-99-0123456789abcdef"), None);
        assert_eq!(TunnelId::parse(""), None);
        assert_eq!(
            TunnelId::parse("0-0-0000000000000000").map(|i| i.slot),
            Some(0)
        );
        assert_eq!(
            TunnelId::parse("65535-4294967295-ffffffffffffffff").map(|i| i.to_string()),
            Some("65535-4294967295-ffffffffffffffff".to_owned())
        );
    }

    #[test]
    fn ids_have_one_spelling() {
        for other in [
            "03-99-0123456789abcdef",
            "3-099-0123456789abcdef",
            "+3-99-0123456789abcdef",
            "3-+99-0123456789abcdef",
            "3-99-0123456789ABCDEF",
            "3-99-0123456789abcdeF",
            "3-99-+123456789abcdef",
            "3-99-0123456789abcdef0",
            "3-99-0123456789abcde",
            " 3-99-0123456789abcdef",
            "3-99-0123456789abcdef ",
            "3--99-0123456789abcdef",
            "3-99--123456789abcdef",
            "65536-99-0123456789abcdef",
            "3-4294967296-0123456789abcdef",
            "٣-99-0123456789abcdef",
        ] {
            assert_eq!(TunnelId::parse(other), None, "{other}");
        }
    }

    #[test]
    fn replay_after_last_and_gap() {
        let mut t = tunnel();
        for seq in 1..=6 {
            t.push(dg(seq), &LIMITS);
        }
        // Only the newest four are held.
        assert!(!t.seek(Some(b"0-4")));
        assert_eq!(drain(&mut t), vec!["0-5", "0-6"]);
        assert!(t.seek(Some(b"0-1")), "0-1 was evicted: gap");
        assert_eq!(drain(&mut t), vec!["0-3", "0-4", "0-5", "0-6"]);
        assert!(!t.seek(None));
        assert!(drain(&mut t).is_empty());
    }

    #[test]
    fn replay_from_the_start() {
        let mut t = tunnel();
        for seq in 1..=3 {
            t.push(dg(seq), &LIMITS);
        }
        assert_eq!(drain(&mut t), vec!["0-1", "0-2", "0-3"]);
        assert!(!t.seek_start(), "nothing evicted yet");
        assert_eq!(drain(&mut t), vec!["0-1", "0-2", "0-3"]);
        for seq in 4..=6 {
            t.push(dg(seq), &LIMITS);
        }
        assert!(t.seek_start(), "0-1 and 0-2 were evicted: gap");
        assert_eq!(drain(&mut t), vec!["0-3", "0-4", "0-5", "0-6"]);
    }

    #[test]
    fn eviction_of_unsent_kicks_attached_consumer() {
        let mut t = tunnel();
        t.attach(1);
        let waker = Arc::new(CountWake(AtomicUsize::new(0))).into();
        assert_eq!(t.poll_attachment(1, &waker), Ok(Attention::Idle));
        for seq in 1..=4 {
            t.push(dg(seq), &LIMITS);
        }
        assert_eq!(t.poll_attachment(1, &waker), Ok(Attention::Data));
        t.push(dg(5), &LIMITS);
        assert_eq!(t.poll_attachment(1, &waker), Err(Kick::SlowConsumer));
        assert!(t.take_gap(), "the attached consumer learns of the loss");
        assert!(!t.take_gap(), "once");
        assert_eq!(drain(&mut t), vec!["0-2", "0-3", "0-4", "0-5"]);
        t.push(dg(6), &LIMITS);
        t.push(dg(7), &LIMITS);
        assert!(t.detach(1));
        // Re-attach without `last`: the evicted datagram is reported as a gap.
        assert!(!t.seek(None), "nothing unsent was evicted since");
        assert_eq!(drain(&mut t), vec!["0-6", "0-7"]);
    }

    #[test]
    fn send_queue_limit_kicks() {
        let limits = TunnelLimits {
            send_queue_bytes_max: dg(1).len() * 2,
            ..LIMITS
        };
        let mut t = tunnel();
        t.attach(9);
        t.push(dg(1), &limits);
        t.push(dg(2), &limits);
        let waker = Arc::new(CountWake(AtomicUsize::new(0))).into();
        assert_eq!(t.poll_attachment(9, &waker), Ok(Attention::Data));
        t.push(dg(3), &limits);
        assert_eq!(t.poll_attachment(9, &waker), Err(Kick::SlowConsumer));
    }

    #[test]
    fn attach_replaces_and_wakes() {
        let mut t = tunnel();
        let count = Arc::new(CountWake(AtomicUsize::new(0)));
        let waker = count.clone().into();
        t.attach(1);
        assert_eq!(t.poll_attachment(1, &waker), Ok(Attention::Idle));
        t.attach(2);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(t.poll_attachment(1, &waker), Err(Kick::Replaced));
        assert!(!t.detach(1));
        assert!(t.detach(2));
        assert!(!t.is_attached());
    }

    #[test]
    fn deadlines_fire_once_and_move() {
        let mut t = tunnel();
        let count = Arc::new(CountWake(AtomicUsize::new(0)));
        let waker = count.clone().into();
        t.attach(3);
        assert_eq!(t.set_deadline(3, 100), Some(true));
        assert_eq!(t.set_deadline(4, 100), None, "not attached");
        assert_eq!(t.poll_attachment(3, &waker), Ok(Attention::Idle));
        assert_eq!(t.check_deadline(3, 50), Some(100));
        assert_eq!(
            t.set_deadline(3, 150),
            Some(false),
            "the queued entry will see it"
        );
        assert_eq!(t.check_deadline(3, 100), Some(150), "moved by a write");
        assert_eq!(t.check_deadline(3, 150), None);
        // Fired: nothing is queued any more, so the next deadline needs an entry.
        assert_eq!(t.set_deadline(3, 300), Some(true));
        assert_eq!(
            t.set_deadline(3, 200),
            Some(true),
            "earlier than the queued entry"
        );
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(t.check_deadline(3, 150), Some(200));
        assert_eq!(t.check_deadline(3, 200), None);
        assert_eq!(t.poll_attachment(3, &waker), Ok(Attention::Deadline));
        assert_eq!(t.poll_attachment(3, &waker), Ok(Attention::Idle));
        assert_eq!(t.check_deadline(4, 200), None, "other tokens are ignored");
    }

    #[test]
    fn subscriptions_bounded() {
        let mut t = tunnel();
        let a = Pattern::parse("/a").unwrap();
        assert_eq!(t.subscribe(&a, &LIMITS), Subscribed::Added);
        assert_eq!(t.subscribe(&a, &LIMITS), Subscribed::AlreadyThere);
        assert_eq!(
            t.subscribe(&Pattern::parse("/b").unwrap(), &LIMITS),
            Subscribed::Added
        );
        assert_eq!(
            t.subscribe(&Pattern::parse("/c").unwrap(), &LIMITS),
            Subscribed::LimitReached
        );
        assert!(t.unsubscribe(&a));
        assert!(!t.unsubscribe(&a));
    }

    #[test]
    fn event_bucket() {
        let mut t = tunnel();
        assert!(t.take_event_token(0, &LIMITS));
        assert!(t.take_event_token(0, &LIMITS));
        assert!(!t.take_event_token(0, &LIMITS));
        // 10 per second: one token back after 100 ms.
        assert!(!t.take_event_token(99, &LIMITS));
        assert!(t.take_event_token(200, &LIMITS));
    }
}
