//! Culling: the cull queues of detached tunnels, one per grace so that each stays sorted by
//! deadline, and the cull the timer task runs when the first deadline comes.

use std::collections::VecDeque;

use crate::metrics::Metrics;

use super::{Shard, State};

/// Which grace a detached tunnel waits, each with a cull queue of its own, so that every queue
/// stays sorted by deadline.
#[derive(Debug, Clone, Copy)]
pub(super) enum Grace {
    Tunnel,
    Session,
    None,
}

impl State {
    pub(super) fn cull_queue(&mut self, grace: Grace) -> &mut VecDeque<(u64, u32, u32)> {
        match grace {
            Grace::Tunnel => &mut self.detached,
            Grace::Session => &mut self.detached_sessions,
            Grace::None => &mut self.detached_for_good,
        }
    }

    /// Culls the tunnels of one queue whose grace ended by `now_ms`, adding their slots to
    /// `culled_slots`; returns when the queue's next grace ends.
    fn cull(&mut self, grace: Grace, now_ms: u64, culled_slots: &mut Vec<u32>) -> u64 {
        while let Some(&(deadline_ms, slot, epoch)) = self.cull_queue(grace).front() {
            if deadline_ms > now_ms {
                return deadline_ms;
            }
            self.cull_queue(grace).pop_front();
            let Some(entry) = self.tunnels.get_mut(slot as usize) else {
                continue;
            };
            let expired = matches!(entry, Some(t) if !t.is_attached() && t.detach_epoch == epoch);
            if !expired {
                continue;
            }
            if let Some(mut tunnel) = entry.take() {
                for pattern in tunnel.take_subscriptions() {
                    self.registry.remove(&pattern, slot);
                }
                self.free_slots.push(slot);
                self.tunnel_count -= 1;
                culled_slots.push(slot);
            }
        }
        u64::MAX
    }
}

impl Shard {
    /// How long a detached tunnel waits.
    pub(super) fn grace_ms(&self, grace: Grace) -> u64 {
        match grace {
            Grace::Tunnel => self.config().tunnel_grace_ms,
            Grace::Session => self.config().session_grace_ms,
            Grace::None => 0,
        }
    }

    /// Culls tunnels detached for longer than the grace period at `now_ms`; returns when the
    /// next cull candidate's grace ends.
    pub(super) fn cull_expired(&self, now_ms: u64) -> u64 {
        let mut culled_slots = Vec::new();
        let mut guard = self.state.borrow_mut();
        let next_ms = [Grace::Tunnel, Grace::Session, Grace::None]
            .into_iter()
            .map(|grace| guard.cull(grace, now_ms, &mut culled_slots))
            .min()
            .unwrap_or(u64::MAX);
        drop(guard);
        let culled = culled_slots.len();
        self.forget_grants(&culled_slots);
        self.forget_sessions(&culled_slots);
        if culled > 0 {
            Metrics::add(&self.metrics.tunnels_culled, culled as u64);
            Metrics::sub(&self.metrics.tunnels_open, culled as u64);
        }
        next_ms
    }
}
