//! A thread-per-core real-time event router: browsers open tunnels and receive datagrams routed
//! by hierarchical paths, over SSE, NUL- or newline-delimited streams, a forever-iframe or
//! long-polling (JSON and JSONP).
//!
//! # Layout
//! Modules follow the data flow of a request, top to bottom; each imports only the ones below
//! it (docs/architecture.md, "Layers"; `tests/layers.rs` checks it):
//! - [`server`]: bootstrap and stop, the only place that starts threads and runtimes (a thread,
//!   runtime and SO_REUSEPORT listener per shard; the shard's mesh, timer and settings tasks);
//!   [`server::service`]: signals, the drain, the reload (SIGHUP), and readiness told to systemd;
//!   [`server::tls`]: the TLS listener (handshakes, and the pump to the connection loop).
//! - [`conn`]: the connection loop: pipelining and corked answers, handoff to the owner shard,
//!   linger on close, and the attachment's wait.
//! - [`api`]: the route table, preflights, metrics and the demo page; [`api::publish`]:
//!   `/events`, `/publish/...` and subscriptions; protocol adapters over the same tunnels:
//!   [`api::talk`] (`/push`, `/pull`), [`api::session`] (push/pull sessions: `/<n>/<prog>`,
//!   `/push/<id>`, `/pull/<id>`).
//! - [`attachment`]: tunnels served by a connection: open and re-attach
//!   ([`attachment::open`]), then one type per transport: streams ([`attachment::stream`]),
//!   long-polls ([`attachment::longpoll`]), WebSocket ([`attachment::websocket`]), with keepalive
//!   timing and the slow-consumer kick shared.
//! - [`net`]: a connection's I/O: reading one request with its bounds and timeouts
//!   ([`net::request`]), answering it ([`net::answer`]: corking, HEAD, JSONP, refusals, what
//!   comes next), writing answers ([`net::reply`]), non-blocking sends and receives
//!   ([`net::sock`]).
//! - [`admission`]: the checks every publish passes, whoever publishes.
//! - [`refusal`]: why a request or message is refused, and the one mapping of each reason to
//!   its status, text, close code, metrics label and blame.
//! - [`shard`]: one core's tunnels, subscriptions, publish path, deadlines and culling;
//!   [`shard::mesh`] wires the bounded SPSC rings between shards, finds a tunnel's owner shard
//!   and carries handoffs; [`shard::stop`] is the stop signal; [`shard::settings`] holds the
//!   settings a reload replaces, of which each shard reads its own copy; [`shard::clock`] is
//!   the clock every deadline is measured on (monotonic, or a manual one that tests move);
//!   [`shard::sessions`] the programs and sessions of push/pull sessions.
//! - [`tunnel`]: a tunnel's state: replay buffer (which is also its send queue), cursor,
//!   attachment, event rate limit.
//! - [`limits`]: the built-in bounds (buffer sizes, batches, intervals) that are not
//!   configuration, each with why it has its value.
//! - [`auth`]: tokens (JWT) and the grant each carries, the Origin allow-list, publisher keys.
//! - [`metrics`]: per-shard counters.
//! - [`os`]: process settings applied at start-up (the open-files limit).
//! - [`config`]: the one validated configuration (TOML file + command-line overrides), and which
//!   of its keys a reload changes.
//! - [`pubsub`]: path validation, patterns, and the subscription registry.
//! - [`wire`]: sans-IO codecs: HTTP/1.1, query strings, JSON, datagrams, formats, templates.

pub mod admission;
pub mod api;
pub mod attachment;
pub mod auth;
pub mod config;
pub mod conn;
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
