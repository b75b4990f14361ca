//! The publish path of a shard: a datagram delivered to this shard's subscribers and queued
//! once to every other shard (all or nothing), private deliveries to one tunnel, and the
//! shard's ends of the mesh rings.

use crate::metrics::Metrics;
use crate::pubsub::path;
use crate::tunnel::TunnelId;
use crate::wire::datagram::{Datagram, DatagramId};
use std::task::Waker;

use super::mesh::ShardMsg;
use super::Shard;

/// A publish that was accepted.
pub enum Published {
    /// Delivered to this shard's subscribers and queued to every other shard.
    Done(DatagramId),
    /// Sent to the shard owning a private path's tunnel; it answers whether the tunnel exists.
    Remote(DatagramId, futures_channel::oneshot::Receiver<bool>),
}

/// Why a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// A ring to another shard is full: nothing was delivered anywhere.
    RingFull,
    /// The private path names a tunnel that does not exist.
    UnknownTunnel,
}

impl Shard {
    /// Publishes `data_json` on `path`: delivers to local subscribers and queues one message per
    /// other shard. All or nothing: if any ring is full nothing is delivered.
    pub fn publish(&self, path: &str, data_json: &[u8]) -> Result<Published, PublishError> {
        self.publish_with(path, |id, now_ns| {
            Datagram::encode(id, path, data_json, now_ns)
        })
    }

    /// Publishes raw bytes on `path` (see [`Datagram::encode_binary`]).
    pub fn publish_binary(&self, path: &str, raw: &[u8]) -> Result<Published, PublishError> {
        self.publish_with(path, |id, now_ns| {
            Datagram::encode_binary(id, path, raw, now_ns)
        })
    }

    fn publish_with(
        &self,
        path: &str,
        encode: impl FnOnce(DatagramId, u64) -> Datagram,
    ) -> Result<Published, PublishError> {
        if path == "/tunnel" {
            // The parent of every private path names no tunnel.
            return Err(PublishError::UnknownTunnel);
        }
        let private = match path.strip_prefix(path::PRIVATE_PREFIX) {
            Some(id_text) => Some(TunnelId::parse(id_text).ok_or(PublishError::UnknownTunnel)?),
            None => None,
        };
        let mut outgoing = self.outgoing.borrow_mut();
        if let Some(target) = private {
            if target.shard as usize >= self.shard_count() {
                return Err(PublishError::UnknownTunnel);
            }
            if target.shard == self.id && !self.tunnel_exists(&target) {
                return Err(PublishError::UnknownTunnel);
            }
        }
        let targets_full = outgoing.iter().enumerate().any(|(to, p)| match p {
            Some(p) if private.is_none_or(|t| t.shard as usize == to) => p.is_full(),
            _ => false,
        });
        if targets_full {
            Metrics::add(&self.metrics.ring_full, 1);
            return Err(PublishError::RingFull);
        }
        let seq = self.datagram_seq.get() + 1;
        self.datagram_seq.set(seq);
        let id = DatagramId {
            shard: self.id,
            seq,
        };
        // Stamped with the publish time, which the shard that writes it measures latency from.
        let datagram = encode(id, crate::metrics::monotonic_ns());
        Metrics::add(&self.metrics.publishes, 1);
        match private {
            Some(target) if target.shard == self.id => {
                self.deliver_private(&target, datagram);
            }
            Some(target) => {
                let to = target.shard as usize;
                let (delivered, answer) = futures_channel::oneshot::channel();
                if let Some(Some(p)) = outgoing.get_mut(to) {
                    let pushed = p.push(ShardMsg::Private {
                        tunnel: target,
                        datagram,
                        delivered,
                    });
                    debug_assert!(
                        pushed.is_ok(),
                        "room was checked above and this shard is the ring's only producer"
                    );
                    self.wake_shard(to);
                }
                return Ok(Published::Remote(id, answer));
            }
            None => {
                for (to, p) in outgoing.iter_mut().enumerate() {
                    if let Some(p) = p {
                        let _ = p.push(ShardMsg::Publish(datagram.clone()));
                        self.wake_shard(to);
                    }
                }
                drop(outgoing);
                self.deliver(&datagram);
            }
        }
        Ok(Published::Done(id))
    }

    /// Sends a message to shard `to`; hands it back if that ring is full.
    pub fn send(&self, to: usize, msg: ShardMsg) -> Result<(), ShardMsg> {
        let mut outgoing = self.outgoing.borrow_mut();
        let Some(Some(p)) = outgoing.get_mut(to) else {
            return Err(msg);
        };
        match p.push(msg) {
            Ok(()) => {
                self.wake_shard(to);
                Ok(())
            }
            Err(rtrb::PushError::Full(msg)) => {
                Metrics::add(&self.metrics.ring_full, 1);
                Err(msg)
            }
        }
    }

    /// True when the ring to shard `to` can take a message. We are its only producer, so the
    /// answer holds until we push.
    pub fn has_room(&self, to: usize) -> bool {
        matches!(self.outgoing.borrow().get(to), Some(Some(p)) if !p.is_full())
    }

    fn wake_shard(&self, to: usize) {
        if let Some(w) = self.wakers.get(to) {
            w.wake();
        }
    }

    /// Registers the mesh task's waker.
    pub fn register_mesh_waker(&self, waker: &Waker) {
        if let Some(w) = self.wakers.get(self.id as usize) {
            w.register(waker);
        }
    }

    /// Queues `datagram` to every local tunnel subscribed to its path, once per tunnel.
    pub fn deliver(&self, datagram: &Datagram) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        st.delivery_epoch += 1;
        let epoch = st.delivery_epoch;
        let limits = &self.tunnel_limits;
        let tunnels = &mut st.tunnels;
        let mut delivered = 0u64;
        st.registry.for_each_match(datagram.path(), |slot| {
            if let Some(Some(t)) = tunnels.get_mut(slot as usize) {
                if t.delivery_epoch_last != epoch {
                    t.delivery_epoch_last = epoch;
                    t.push(datagram.clone(), limits);
                    delivered += 1;
                }
            }
        });
        Metrics::add(&self.metrics.deliveries, delivered);
    }

    /// Queues `datagram` to the tunnel `id` alone (its private path); false if there is none.
    pub fn deliver_private(&self, id: &TunnelId, datagram: Datagram) -> bool {
        let limits = self.tunnel_limits;
        let delivered = self
            .with_tunnel(id, |t| t.push(datagram, &limits))
            .is_some();
        if delivered {
            Metrics::add(&self.metrics.deliveries, 1);
        }
        delivered
    }
}
