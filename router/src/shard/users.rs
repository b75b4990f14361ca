//! Users on a shard, when tokens are required: the grant each tunnel holds, the tunnel count of
//! every user whose home is this shard, and the admission of new tunnels.
//!
//! A user's tunnels may live on any shard, yet `tunnels_max` holds for the whole node without a
//! lock: every user has one home shard (a hash of `sub`), which alone keeps that user's count.
//! A shard opening a tunnel for a user homed elsewhere asks the home through the mesh ring and
//! waits for its answer; a culled tunnel's count is given back the same way.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use crate::auth::{Grant, TokenCache, TokenError};
use crate::limits::TOKEN_CACHE_ENTRIES_MAX;
use crate::tunnel::TunnelId;
use crate::wire::http1::RequestHead;
use crate::wire::query::Params;

use super::mesh::ShardMsg;
use super::{Shard, TunnelError};

/// Micro-tokens per token of the admission bucket: integer refills at any rate per shard.
const ADMISSION_MICRO: u64 = 1_000_000;

pub(super) struct Users {
    /// Tokens verified on this shard, for the next time they are presented.
    tokens: TokenCache,
    /// The grant of each tunnel opened with a token, by slot. Empty when tokens are off, so an
    /// open router pays nothing per tunnel for it.
    grants: HashMap<u32, Rc<Grant>>,
    /// Tunnels held on the node by each user homed on this shard.
    counts: HashMap<Box<str>, u32>,
    /// When each grant's token expires (`exp` + leeway, Unix seconds), with the tunnel's slot and
    /// secret; an entry whose grant was since renewed, or whose tunnel is gone, is skipped.
    expiries: BinaryHeap<Reverse<(u64, u32, u64)>>,
    /// Releases owed to other home shards whose ring was full; retried by the cull task.
    releases_pending: Vec<(usize, Box<str>)>,
    /// New-tunnel bucket: micro-tokens, and when it was last refilled.
    admission_micro: u64,
    admission_refilled_ms: u64,
}

impl Users {
    pub(super) fn new() -> Users {
        Users {
            tokens: TokenCache::new(TOKEN_CACHE_ENTRIES_MAX),
            grants: HashMap::new(),
            counts: HashMap::new(),
            expiries: BinaryHeap::new(),
            releases_pending: Vec::new(),
            admission_micro: 0,
            admission_refilled_ms: 0,
        }
    }
}

/// Why a new tunnel was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAdmitted;

impl Shard {
    /// The grant of the request's token when tokens are required (`Ok(None)` when they are
    /// not): verified once, then served from the shard's cache while it is unexpired.
    pub fn check_token(
        &self,
        head: &RequestHead,
        params: &Params<'_>,
    ) -> Result<Option<Rc<Grant>>, TokenError> {
        let auth = self.auth();
        let Some(token) = auth.request_token(head, params)? else {
            return Ok(None);
        };
        let now_s = crate::auth::unix_now_s();
        let mut users = self.users.borrow_mut();
        users.tokens.verify(&auth, token, now_s).map(Some)
    }

    /// Forgets every verified token (the keys changed).
    pub(super) fn forget_verified_tokens(&self) {
        self.users.borrow_mut().tokens.clear();
    }

    /// The shard that counts `sub`'s tunnels.
    pub fn home_of(&self, sub: &str) -> usize {
        // SipHash with fixed keys: the same home on every shard, and across restarts.
        let mut h = std::hash::DefaultHasher::new();
        sub.hash(&mut h);
        (h.finish() % self.shard_count().max(1) as u64) as usize
    }

    /// Counts one more tunnel for `grant`'s user, at its home shard: refused past
    /// `tunnels_max`. Must be undone with [`Shard::release_user`] if the tunnel is not opened.
    pub async fn reserve_user(&self, grant: &Grant) -> Result<(), TunnelError> {
        let home = self.home_of(&grant.sub);
        if home == self.id as usize {
            return match self.user_reserve_here(&grant.sub, grant.tunnels_max) {
                true => Ok(()),
                false => Err(TunnelError::UserLimit),
            };
        }
        let (reply, answer) = futures_channel::oneshot::channel();
        let msg = ShardMsg::UserReserve {
            sub: grant.sub.clone(),
            max: grant.tunnels_max,
            reply,
        };
        if self.send(home, msg).is_err() {
            return Err(TunnelError::RingFull);
        }
        match answer.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(TunnelError::UserLimit),
            // The home shard stopped before answering: nothing was counted.
            Err(_) => Err(TunnelError::RingFull),
        }
    }

    /// At the home shard: counts a tunnel of `sub` if it has fewer than `max`.
    pub fn user_reserve_here(&self, sub: &str, max: u32) -> bool {
        let mut users = self.users.borrow_mut();
        match users.counts.get_mut(sub) {
            Some(n) if *n >= max => false,
            Some(n) => {
                *n += 1;
                true
            }
            None => {
                users.counts.insert(sub.into(), 1);
                true
            }
        }
    }

    /// At the home shard: one tunnel of `sub` fewer.
    pub fn user_release_here(&self, sub: &str) {
        let mut users = self.users.borrow_mut();
        if let Some(n) = users.counts.get_mut(sub) {
            *n -= 1;
            if *n == 0 {
                users.counts.remove(sub);
            }
        }
    }

    /// Gives back one tunnel of `sub` to its home shard (later, if that ring is full).
    pub fn release_user(&self, sub: Box<str>) {
        let home = self.home_of(&sub);
        if home == self.id as usize {
            self.user_release_here(&sub);
            return;
        }
        if let Err(ShardMsg::UserRelease(sub)) = self.send(home, ShardMsg::UserRelease(sub)) {
            self.users.borrow_mut().releases_pending.push((home, sub));
        }
    }

    /// Retries the releases a full ring held back.
    pub fn flush_user_releases(&self) {
        let pending = std::mem::take(&mut self.users.borrow_mut().releases_pending);
        for (home, sub) in pending {
            if let Err(ShardMsg::UserRelease(sub)) = self.send(home, ShardMsg::UserRelease(sub)) {
                self.users.borrow_mut().releases_pending.push((home, sub));
            }
        }
    }

    /// Tunnels counted for `sub` at this (its home) shard.
    pub fn user_tunnels_here(&self, sub: &str) -> u32 {
        self.users.borrow().counts.get(sub).copied().unwrap_or(0)
    }

    /// Records the grant tunnel `id` was opened or re-attached with (or renewed by
    /// `POST /tunnel/<id>/token`).
    pub fn set_grant(&self, id: &TunnelId, grant: Rc<Grant>) {
        let expires_s = grant.exp_s.saturating_add(self.config().auth.leeway_s);
        let mut users = self.users.borrow_mut();
        // A re-attach with the same token (every long-poll does it) queues no second expiry:
        // the queue holds one entry per tunnel and token, not one per request.
        let queued = users
            .grants
            .get(&id.slot)
            .is_some_and(|held| held.exp_s == grant.exp_s);
        if !queued {
            users
                .expiries
                .push(Reverse((expires_s, id.slot, id.secret)));
        }
        users.grants.insert(id.slot, grant);
    }

    /// Expiries queued on this shard.
    pub fn expiries_queued(&self) -> usize {
        self.users.borrow().expiries.len()
    }

    /// Tells the connection attached to every tunnel whose token expired by `now_s` (Unix
    /// seconds) and was not renewed that it must go (`Kick::TokenExpired`). The tunnel stays, for
    /// a re-attach with a fresh token. Returns how many were told.
    pub fn expire_grants(&self, now_s: u64) -> usize {
        let mut told = 0;
        loop {
            let due = {
                let mut users = self.users.borrow_mut();
                match users.expiries.peek() {
                    // Past `exp` + leeway, as the verification counts it: a token is still
                    // valid in its last second, so a poll in it is not refused either.
                    Some(&Reverse(entry)) if entry.0 < now_s => {
                        users.expiries.pop();
                        entry
                    }
                    _ => break,
                }
            };
            let (expires_s, slot, secret) = due;
            let id = TunnelId {
                shard: self.id,
                slot,
                secret,
            };
            let leeway_s = self.config().auth.leeway_s;
            let current = self
                .grant_of(&id)
                .is_some_and(|g| g.exp_s.saturating_add(leeway_s) == expires_s);
            if current && self.with_tunnel(&id, |t| t.kick_for_expiry()).is_some() {
                told += 1;
            }
        }
        told
    }

    /// The grant tunnel `id` holds, when it was opened with a token.
    pub fn grant_of(&self, id: &TunnelId) -> Option<Rc<Grant>> {
        if !self.tunnel_exists(id) {
            return None;
        }
        self.users.borrow().grants.get(&id.slot).cloned()
    }

    /// Forgets the grants of culled tunnels and gives their users' counts back.
    pub(super) fn forget_grants(&self, slots: &[u32]) {
        for slot in slots {
            let grant = self.users.borrow_mut().grants.remove(slot);
            if let Some(grant) = grant {
                self.release_user(grant.sub.clone());
            }
        }
    }

    /// Takes one token of the new-tunnel bucket (`tunnels_new_per_s`, spread evenly over
    /// the shards; a burst of one second's worth, at least one tunnel). Re-attaches never ask.
    pub fn admit_new_tunnel(&self) -> Result<(), NotAdmitted> {
        let per_s = u64::from(self.config().tunnels_new_per_s);
        if per_s == 0 {
            return Ok(());
        }
        let shards = self.shard_count().max(1) as u64;
        // Micro-tokens gained per millisecond on this shard, and the bucket's size.
        let gain_per_ms = per_s * ADMISSION_MICRO / 1000 / shards;
        let burst = (per_s * ADMISSION_MICRO / shards).max(ADMISSION_MICRO);
        let now_ms = self.now_ms();
        let mut users = self.users.borrow_mut();
        if users.admission_refilled_ms == 0 {
            // The first ask finds the bucket full.
            users.admission_micro = burst;
        } else {
            let elapsed_ms = now_ms.saturating_sub(users.admission_refilled_ms);
            users.admission_micro = (users.admission_micro + elapsed_ms * gain_per_ms).min(burst);
        }
        users.admission_refilled_ms = now_ms.max(1);
        if users.admission_micro < ADMISSION_MICRO {
            return Err(NotAdmitted);
        }
        users.admission_micro -= ADMISSION_MICRO;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::shard::settings::Settings;
    use crate::shard::Shared;
    use crate::wire::format::Formats;

    fn shard(shards: usize) -> Rc<Shard> {
        let shared = Arc::new(Shared::new(
            shards,
            Settings {
                config: Config::default(),
                formats: Formats::default(),
                auth: Arc::new(crate::auth::Auth::open()),
                tls: None,
                programs: Default::default(),
            },
        ));
        let wakers = Arc::from((0..shards).map(|_| Default::default()).collect::<Vec<_>>());
        Shard::new(0, shared, (0..shards).map(|_| None).collect(), wakers)
    }

    fn grant(sub: &str, exp_s: u64, tunnels_max: u32) -> Rc<Grant> {
        Rc::new(Grant {
            sub: sub.into(),
            subscribe: Vec::new(),
            publish: Vec::new(),
            tunnels_max,
            exp_s,
        })
    }

    #[test]
    fn a_reattach_with_the_same_token_queues_no_second_expiry() {
        let shard = shard(1);
        let id = shard.create_tunnel().unwrap();
        let g = grant("a", 100, 4);
        for _ in 0..1000 {
            shard.set_grant(&id, g.clone());
        }
        assert_eq!(shard.expiries_queued(), 1);
        shard.set_grant(&id, grant("a", 200, 4));
        assert_eq!(shard.expiries_queued(), 2, "a renewed token is queued");
        // Only the renewed expiry (exp + the default 5 s leeway) tells the connection: the
        // old entry is stale.
        assert_eq!(shard.expire_grants(150), 0);
        assert_eq!(
            shard.expire_grants(205),
            0,
            "still valid in its last second"
        );
        assert_eq!(shard.expire_grants(206), 1);
        assert_eq!(shard.expiries_queued(), 0);
    }

    #[test]
    fn a_user_at_home_holds_at_most_its_allowance_and_gets_it_back() {
        let shard = shard(1);
        assert_eq!(shard.home_of("anyone"), 0);
        assert!(shard.user_reserve_here("u", 2));
        assert!(shard.user_reserve_here("u", 2));
        assert!(!shard.user_reserve_here("u", 2));
        assert!(shard.user_reserve_here("v", 2), "users are counted apart");
        shard.user_release_here("u");
        assert_eq!(shard.user_tunnels_here("u"), 1);
        assert!(shard.user_reserve_here("u", 2));
        shard.user_release_here("v");
        assert_eq!(shard.user_tunnels_here("v"), 0);
    }

    #[test]
    fn homes_spread_over_the_shards_and_agree_everywhere() {
        let shard = shard(4);
        let mut seen = [0usize; 4];
        for i in 0..400 {
            let home = shard.home_of(&format!("user-{i}"));
            seen[home] += 1;
            assert_eq!(home, shard.home_of(&format!("user-{i}")));
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn admission_paces_new_tunnels_at_the_rate() {
        let shard = shard(1);
        assert!(shard.admit_new_tunnel().is_ok(), "unlimited by default");
        let config = Config {
            tunnels_new_per_s: 3,
            ..Config::default()
        };
        shard.apply_settings(&Settings {
            config,
            formats: Formats::default(),
            auth: Arc::new(crate::auth::Auth::open()),
            tls: None,
            programs: Default::default(),
        });
        // A full bucket: one second's worth, then nothing until the clock moves.
        let admitted = (0..10).filter(|_| shard.admit_new_tunnel().is_ok()).count();
        assert_eq!(admitted, 3);
    }
}
