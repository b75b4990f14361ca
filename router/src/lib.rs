//! A thread-per-core real-time event router: browsers open tunnels and receive datagrams routed
//! by hierarchical paths, over SSE, NUL- or newline-delimited streams, a forever-iframe or
//! long-polling (JSON and JSONP).
//!
//! # Layout
//! Modules follow the data flow of a request:
//! - [`config`]: the one validated configuration (TOML file + command-line overrides).
//! - [`limits`]: the built-in bounds (buffer sizes, batches, intervals) that are not
//!   configuration, each with why it has its value.
//! - [`server`]: bootstrap (a thread, runtime and SO_REUSEPORT listener per shard), the
//!   connection loop and routing ([`server::conn`]), reading requests ([`server::request`]),
//!   tunnel attachment as stream or long-poll ([`server::attach`]).
//! - [`shard`]: one core's tunnels, subscriptions and publish path; [`shard::mesh`] wires the
//!   bounded SPSC rings between shards.
//! - [`tunnel`]: a tunnel's state: replay buffer (which is also its send queue), cursor,
//!   attachment, event rate limit.
//! - [`pubsub`]: path validation, patterns, and the subscription registry.
//! - [`wire`]: sans-IO codecs: HTTP/1.1, query strings, JSON, datagrams, formats, templates.
//! - [`metrics`]: per-shard counters.
//! - [`os`]: process settings applied at start-up (the open-files limit).

pub mod config;
pub mod limits;
pub mod metrics;
pub mod os;
pub mod pubsub;
pub mod server;
pub mod shard;
pub mod tunnel;
pub mod wire;
