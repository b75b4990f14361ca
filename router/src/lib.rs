//! A thread-per-core real-time event router: browsers open tunnels and receive datagrams routed
//! by hierarchical paths, over SSE, NUL- or newline-delimited streams, a forever-iframe or
//! long-polling (JSON and JSONP).
//!
//! # Layout
//! Modules follow the data flow of a request:
//! - [`config`]: the one validated configuration (TOML file + command-line overrides).
//! - [`limits`]: the built-in bounds (buffer sizes, batches, intervals) that are not
//!   configuration, each with why it has its value.
//! - [`server`]: bootstrap and stop (a thread, runtime and SO_REUSEPORT listener per shard;
//!   the shard's mesh, cull and timer tasks), the connection loop ([`server::conn`]: pipelining
//!   and corked answers, handoff to the owner shard, linger on close), the route table and the
//!   API's handlers with the one publish admission ([`server::api`]), tunnel attachment: open
//!   and re-attach, streams and keepalive timing ([`server::attach`]), long-polls
//!   ([`server::longpoll`]) and WebSocket ([`server::websocket`]).
//! - [`net`]: a connection's I/O: reading one request with its bounds and timeouts
//!   ([`net::request`]), writing answers ([`net::reply`]), non-blocking sends and receives
//!   ([`net::sock`]).
//! - [`refusal`]: why a request or message is refused, and the one mapping of each reason to
//!   its status, text, close code, metrics label and blame.
//! - [`shard`]: one core's tunnels, subscriptions, publish path, deadlines and culling;
//!   [`shard::mesh`] wires the bounded SPSC rings between shards and carries handoffs;
//!   [`shard::stop`] is the stop signal.
//! - [`tunnel`]: a tunnel's state: replay buffer (which is also its send queue), cursor,
//!   attachment, event rate limit.
//! - [`pubsub`]: path validation, patterns, and the subscription registry.
//! - [`wire`]: sans-IO codecs: HTTP/1.1, query strings, JSON, datagrams, formats, templates.
//! - [`metrics`]: per-shard counters.
//! - [`os`]: process settings applied at start-up (the open-files limit).

pub mod config;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod os;
pub mod pubsub;
pub mod refusal;
pub mod server;
pub mod shard;
pub mod tunnel;
pub mod wire;
