//! The long-poll transport: a parked poll is answered when datagrams arrive, with a keepalive
//! when its ttl passes or another connection takes the tunnel, and closes when its peer goes.

use bytes::BytesMut;
use monoio::net::TcpStream;

use super::{count_kick, take_gap, written, Binding, Event, Next, Step};
use crate::net::reply::with_cors;
use crate::net::sock::send_all;
use crate::shard::Shard;
use crate::tunnel::{Attention, Kick};
use crate::wire::datagram::{Datagram, GAP, KEEPALIVE, TOKEN_EXPIRED};
use crate::wire::format::put_poll_answer;
use crate::wire::http1::write_full;

/// A long-poll attachment's own state.
pub struct Poll {
    /// Answers are JSONP (with the binding's callback) rather than JSON.
    pub(super) jsonp: bool,
}

impl Poll {
    /// A parked long-poll: answers when datagrams arrive, with a keepalive when the ttl passes or
    /// another connection takes the tunnel; closes when the peer goes away (a poll reads
    /// nothing more from its peer while parked).
    pub(super) async fn step(
        &mut self,
        binding: &Binding,
        shard: &Shard,
        stream: &TcpStream,
        event: Event,
    ) -> Step {
        let Event::Tunnel(wait) = event else {
            return Step::End(Next::Close);
        };
        shard.detach(&binding.id, binding.token);
        let next = match wait {
            Ok(Attention::Data) => self.answer(binding, shard, stream, &[]).await,
            Ok(Attention::Deadline) | Ok(Attention::Idle) => {
                self.answer(binding, shard, stream, &[KEEPALIVE]).await
            }
            Err(Kick::TokenExpired) => {
                count_kick(shard, Kick::TokenExpired);
                // Only the news: what is queued waits for a poll with a fresh token.
                self.answer_only(binding, shard, stream, TOKEN_EXPIRED)
                    .await
            }
            Err(kick) => {
                count_kick(shard, kick);
                self.answer(binding, shard, stream, &[KEEPALIVE]).await
            }
        };
        Step::End(next)
    }

    /// Answers a poll with `head` control datagrams followed by queued datagrams (up to the batch
    /// limit).
    pub(super) async fn answer(
        &self,
        binding: &Binding,
        shard: &Shard,
        stream: &TcpStream,
        head: &[&[u8]],
    ) -> Next {
        let batch_max = shard.config().longpoll_batch_max;
        let mut queued: Vec<Datagram> = Vec::new();
        let now_ns = crate::metrics::monotonic_ns();
        let gap = shard.with_tunnel(&binding.id, |t| {
            let gap = take_gap(shard, t);
            t.drain_unsent(batch_max, |d| {
                written(shard, d, now_ns);
                queued.push(d.clone());
                true
            });
            gap
        });
        // A gap the caller already reports is not repeated.
        let gap = gap == Some(true) && !head.contains(&GAP);
        let messages = head
            .iter()
            .copied()
            .chain(gap.then_some(GAP))
            .chain(queued.iter().map(|d| d.json()));
        self.send_answer(binding, shard, stream, messages).await
    }

    /// Answers a poll with one control datagram and nothing of the queue.
    async fn answer_only(
        &self,
        binding: &Binding,
        shard: &Shard,
        stream: &TcpStream,
        control: &[u8],
    ) -> Next {
        self.send_answer(binding, shard, stream, std::iter::once(control))
            .await
    }

    async fn send_answer<'m>(
        &self,
        binding: &Binding,
        shard: &Shard,
        stream: &TcpStream,
        messages: impl Iterator<Item = &'m [u8]>,
    ) -> Next {
        let jsonp = self.jsonp.then_some(binding.cb.as_str());
        let mut body = BytesMut::new();
        put_poll_answer(&mut body, jsonp, binding.id.text().as_str(), messages);
        let (content_type, headers) = binding.persist.json_headers(jsonp.is_some());
        let auth = shard.auth();
        let headers = with_cors(headers, binding.persist.cors, auth.origins_allowed());
        let mut out = BytesMut::with_capacity(body.len() + 256);
        write_full(
            &mut out,
            200,
            content_type,
            &body,
            binding.persist.keep_alive,
            &headers,
        );
        match send_all(stream, out).await {
            true if binding.persist.keep_alive => Next::KeepAlive,
            _ => Next::Close,
        }
    }
}
