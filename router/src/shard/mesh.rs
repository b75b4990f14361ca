//! The cross-shard mesh: one bounded lock-free SPSC ring per ordered shard pair, wired before
//! serving starts, with one waker per shard so producers wake a consumer once per batch.

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use rtrb::{Consumer, Producer, RingBuffer};
use std::sync::Arc;

use crate::tunnel::TunnelId;
use crate::wire::datagram::Datagram;
use crate::wire::http1::Request;

/// What one shard sends another.
pub enum ShardMsg {
    /// Deliver to the receiver's local subscribers.
    Publish(Datagram),
    /// Deliver to one tunnel the receiver owns (its private path), and say whether it exists.
    Private {
        tunnel: TunnelId,
        datagram: Datagram,
        delivered: futures_channel::oneshot::Sender<bool>,
    },
    /// A connection whose request concerns a tunnel the receiver owns.
    Handoff(Box<Handoff>),
    /// To a user's home shard: count one more tunnel of `sub` unless it holds `max`; the answer
    /// says whether it was counted.
    UserReserve {
        sub: Box<str>,
        max: u32,
        reply: futures_channel::oneshot::Sender<bool>,
    },
    /// To a user's home shard: one tunnel of this user is gone.
    UserRelease(Box<str>),
}

/// Where a tunnel id points.
pub enum Owner {
    Local(TunnelId),
    /// The shard that owns it: requests about it move there.
    Remote(usize),
    /// Malformed, or naming a shard that does not exist.
    Nowhere,
}

impl super::Shard {
    /// Which shard owns the tunnel `text` names (the shard is part of the id).
    pub fn owner(&self, text: &str) -> Owner {
        match TunnelId::parse(text) {
            Some(id) if id.shard == self.id => Owner::Local(id),
            Some(id) if (id.shard as usize) < self.shard_count() => {
                Owner::Remote(id.shard as usize)
            }
            _ => Owner::Nowhere,
        }
    }
}

/// What a connection keeps of its peer's address, and carries when it moves: whether it is on
/// loopback (the publish API is open to loopback peers only). One byte rather than a
/// `SocketAddr`'s 32, since it lives as long as the connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub loopback: bool,
}

impl Peer {
    pub fn of(addr: std::net::SocketAddr) -> Peer {
        Peer {
            loopback: addr.ip().to_canonical().is_loopback(),
        }
    }
}

/// A connection moving to the shard that owns its tunnel, with the request it carried and any
/// bytes read past it (a pipelined request).
pub struct Handoff {
    pub stream: std::net::TcpStream,
    pub peer: Peer,
    pub request: Box<Request>,
    pub rest: Bytes,
}

/// One shard's ends of the mesh.
pub struct MeshEnd {
    /// `outgoing[j]` rings to shard `j` (`None` for ourselves).
    pub outgoing: Vec<Option<Producer<ShardMsg>>>,
    /// Rings from every other shard.
    pub incoming: Vec<Consumer<ShardMsg>>,
    /// `wakers[j]` wakes shard `j`'s mesh task.
    pub wakers: Arc<[AtomicWaker]>,
}

/// Builds the full mesh for `shard_count` shards with `slots` entries per ring.
pub fn build(shard_count: usize, slots: usize) -> Vec<MeshEnd> {
    let wakers: Arc<[AtomicWaker]> = (0..shard_count).map(|_| AtomicWaker::new()).collect();
    let mut ends: Vec<MeshEnd> = (0..shard_count)
        .map(|_| MeshEnd {
            outgoing: (0..shard_count).map(|_| None).collect(),
            incoming: Vec::with_capacity(shard_count.saturating_sub(1)),
            wakers: wakers.clone(),
        })
        .collect();
    for from in 0..shard_count {
        for to in 0..shard_count {
            if from == to {
                continue;
            }
            let (producer, consumer) = RingBuffer::new(slots);
            if let Some(slot) = ends.get_mut(from).and_then(|e| e.outgoing.get_mut(to)) {
                *slot = Some(producer);
            }
            if let Some(end) = ends.get_mut(to) {
                end.incoming.push(consumer);
            }
        }
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::datagram::DatagramId;

    #[test]
    fn mesh_is_wired_pairwise_and_bounded() {
        let mut ends = build(3, 2);
        // Each ring preallocates `shard_ring_slots` of these (docs/limits.md counts 80 bytes).
        assert!(
            std::mem::size_of::<ShardMsg>() <= 80,
            "ring slots stay small"
        );
        assert!(ends.iter().all(|e| e.incoming.len() == 2));
        assert!(ends[1].outgoing[1].is_none());
        let dg = Datagram::encode(DatagramId { shard: 0, seq: 1 }, "/a", b"1", 0);
        let p = ends[0].outgoing[2].as_mut().unwrap();
        assert!(p.push(ShardMsg::Publish(dg.clone())).is_ok());
        assert!(p.push(ShardMsg::Publish(dg.clone())).is_ok());
        assert!(
            p.push(ShardMsg::Publish(dg)).is_err(),
            "a full ring refuses"
        );
        // Shard 2 receives from 0 and 1, in that order.
        let received = ends[2].incoming[0].pop();
        assert!(matches!(received, Ok(ShardMsg::Publish(d)) if d.id() == b"0-1"));
    }
}
