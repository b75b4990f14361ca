//! Tokens already verified, so that a client presenting the same token again (a re-attach, an
//! event, a subscription; a whole reconnect storm of them) costs a hash and a lookup rather than
//! a signature check (about 250 µs for ES256 here, results/benches/auth.txt). One cache per
//! shard, bounded, keyed by the token's SHA-256 (so a collision cannot pass a token that was
//! never verified), and never serving a grant past its token's expiry.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::{Auth, Grant, TokenError};

type Key = [u8; 32];

pub struct TokenCache {
    grants: HashMap<Key, Rc<Grant>>,
    /// Keys in the order they were added: the oldest goes first when the cache is full.
    order: VecDeque<Key>,
    entries_max: usize,
}

impl TokenCache {
    pub fn new(entries_max: usize) -> TokenCache {
        TokenCache {
            grants: HashMap::new(),
            order: VecDeque::new(),
            entries_max: entries_max.max(1),
        }
    }

    /// The grant of `token`: from the cache while the token is unexpired at `now_s` (Unix
    /// seconds, with the leeway `auth` allows), else verified by `auth` and cached.
    pub fn verify(
        &mut self,
        auth: &Auth,
        token: &str,
        now_s: u64,
    ) -> Result<Rc<Grant>, TokenError> {
        let key: Key = Sha256::digest(token.as_bytes()).into();
        if let Some(grant) = self.grants.get(&key) {
            if grant.exp_s.saturating_add(auth.leeway_s()) >= now_s {
                return Ok(grant.clone());
            }
            // Expired: verifying again says so (and the entry goes).
            self.grants.remove(&key);
        }
        let grant = Rc::new(auth.verify(token)?);
        if self.grants.len() >= self.entries_max {
            while let Some(oldest) = self.order.pop_front() {
                if self.grants.remove(&oldest).is_some() {
                    break;
                }
            }
        }
        if self.grants.insert(key, grant.clone()).is_none() {
            self.order.push_back(key);
        }
        // Keys of entries removed for expiry linger in `order` until they reach its front.
        if self.order.len() > 2 * self.entries_max {
            let grants = &self.grants;
            self.order.retain(|k| grants.contains_key(k));
        }
        Ok(grant)
    }

    /// Forgets every token.
    pub fn clear(&mut self) {
        self.grants.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.grants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }
}
