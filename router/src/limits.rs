//! The router's built-in bounds: sizes, batches and intervals that are not configuration, each
//! with its unit in its name and a sentence on why that value. The configurable limits are in
//! [`crate::config`]; both are listed in `docs/limits.md`. The relations the code relies on
//! are asserted at compile time at the end.

// ----- Reading and writing sockets ---------------------------------------------------------

/// Bytes of a pooled read buffer: a request head of a typical browser (1-2 KB) fits in one, and
/// an idle connection holds none.
pub const READ_BUFFER_BYTES: usize = 4096;
/// Read buffers a shard keeps for reuse; more are freed. 4 MiB per shard at most.
pub const READ_BUFFERS_POOLED_MAX: usize = 1024;
/// Bytes asked of the kernel per read while a request is arriving: one pooled buffer.
pub const READ_CHUNK_BYTES: usize = READ_BUFFER_BYTES;
/// Most bytes asked per read once reads keep filling the buffer: a publisher's pipelined burst
/// is then read, answered and delivered in fewer and larger batches. The buffer grows only
/// while the burst lasts; an idle connection gives it up.
pub const READ_BURST_BYTES_MAX: usize = 64 * 1024;
/// Bytes asked per `recv(2)` on an attached connection (WebSocket frames, a stream's peer).
pub const RECV_CHUNK_BYTES: usize = READ_BUFFER_BYTES;
/// Bytes of framed datagrams a stream or WebSocket writes with one `send(2)`: large enough for
/// a burst to go out in a few calls, small enough that one tunnel does not hold the shard long.
pub const STREAM_BATCH_BYTES: usize = 64 * 1024;

// ----- Pipelined answers ("corking") ---------------------------------------------------------

/// Answers held back at most while more pipelined requests are already read, before they are
/// written anyway.
pub const CORKED_BYTES_MAX: usize = 64 * 1024;
/// Deliveries the shard makes at most while answers are corked. The connection yields only
/// when it writes, so this bounds the time other connections on the shard wait for a burst of
/// publishes to paths with many subscribers (a few milliseconds).
pub const CORKED_DELIVERIES_MAX: u64 = 16 * 1024;

// ----- Closing ---------------------------------------------------------------------------------

/// Bytes a client may still send after an answer that closes its connection before we stop
/// reading them. Closing with unread input makes the kernel send a reset, which can destroy
/// the answer before the client reads it (RFC 9112 §9.6).
pub const LINGER_BYTES_MAX: usize = 64 * 1024;
/// And for how long.
pub const LINGER_MS: u64 = 1000;
/// How long, and for how many bytes, a WebSocket close waits for the client's close frame.
pub const CLOSE_WAIT_MS: u64 = 1000;
pub const CLOSE_WAIT_BYTES_MAX: usize = 64 * 1024;
/// WebSocket pings a client may leave unanswered (one per `keepalive_ms`) before it is dropped
/// with 1001: two missed intervals tell a dead peer from a slow one.
pub const PINGS_UNANSWERED_MAX: u8 = 2;

// ----- Listening ---------------------------------------------------------------------------

/// Pending connections per shard's listener. The kernel's default of 128 overflows during a
/// reconnect storm; the kernel caps it further at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: i32 = 4096;
/// Pause after a failed accept (out of file descriptors, most likely) instead of spinning.
pub const ACCEPT_RETRY_MS: u64 = 50;
/// How long start-up waits for a port that is still held, and how often it retries. A router
/// that has just exited can hold its port for a few milliseconds more: the kernel releases the
/// files an io_uring ring still references (the listener, under a pending accept) in a work
/// queue after the process is gone (up to ~13 ms measured). Half a second covers that with a
/// wide margin and keeps a real conflict's error quick.
pub const PORT_WAIT_MS: u64 = 500;
pub const PORT_RETRY_MS: u64 = 20;

// ----- Stopping ----------------------------------------------------------------------------

/// How long a stopping shard waits for its connections to end (streams finishing their last
/// write, polls answering) before it drops what is left with its runtime.
pub const STOP_WAIT_MS: u64 = 2000;
/// How often it looks whether they have.
pub const STOP_POLL_MS: u64 = 5;
/// The least `retry:` a draining SSE stream tells its client to wait before it reconnects: a
/// restarted router is listening again within about a second.
pub const DRAIN_RETRY_MS_MIN: u64 = 1000;
/// The spread of that hint: each stream adds a random part below it, so that the clients of a
/// drained router come back over these seconds rather than all in the same one.
pub const DRAIN_RETRY_SPREAD_MS: u64 = 4000;

// ----- Reload ------------------------------------------------------------------------------

/// How long a reload waits for every shard to pick the new settings up before it logs how
/// many have: a shard takes them between two of its tasks, within microseconds unless it is
/// stuck, and a stuck shard must not hold the signal loop (and so a stop) for long.
pub const RELOAD_WAIT_MS: u64 = 1000;
/// How often it looks whether they have.
pub const RELOAD_POLL_MS: u64 = 1;

// ----- Shard tasks -----------------------------------------------------------------------------

/// Most messages a shard takes from its rings before letting its connections run.
pub const MESH_BATCH_MAX: usize = 1024;
/// The timer task sleeps until the earliest deadline (a keepalive, a long-poll ttl, the end of
/// a detached tunnel's grace), but at most this long, so a clock that jumps cannot hold
/// keepalives back for long. On a test's manual clock it waits for the clock to move instead.
pub const TIMER_SLEEP_MS_MAX: u64 = 1000;
/// Bytes of OS randomness a shard draws at once for tunnel secrets (64 secrets per draw).
pub const ENTROPY_POOL_BYTES: usize = 512;
/// Each direction of a TLS connection's pump reads this much at a time, and holds the buffer
/// while it waits: small, since every idle TLS tunnel holds two (a TLS record of up to 16 KiB
/// is simply read in several turns).
pub const TLS_PUMP_BUFFER_BYTES: usize = 4096;
/// With tokens, each shard looks this often for connections whose token expired (and retries
/// the per-user releases a full ring held back): a token outlives its `exp` (and leeway) by at
/// most this much, and a quiet shard wakes once a second for it.
pub const USERS_PERIOD_MS: u64 = 1000;
/// Tokens a shard remembers as verified (about 100 B of grant plus the patterns, and a 32-byte
/// key each): enough for the returning clients of a reconnect storm on one shard to skip the
/// signature check, small enough that a flood of distinct tokens costs at most a few MiB.
pub const TOKEN_CACHE_ENTRIES_MAX: usize = 16_384;
/// A new tunnel refused by admission control (`tunnels_new_per_s`) is told to come back
/// after a whole number of seconds drawn from this range: spread, so that a storm of refused
/// clients returns over several seconds rather than all at once.
pub const ADMISSION_RETRY_S_MIN: u64 = 1;
pub const ADMISSION_RETRY_S_MAX: u64 = 5;

// ----- Relations the code relies on ------------------------------------------------------------

const _: () = {
    // A read grows the buffer by one chunk when less than half a chunk is spare; a pooled
    // buffer holds a whole chunk.
    assert!(READ_CHUNK_BYTES <= READ_BUFFER_BYTES);
    assert!(READ_BURST_BYTES_MAX >= 2 * READ_CHUNK_BYTES);
    assert!(RECV_CHUNK_BYTES <= READ_BUFFER_BYTES);
    // Corked answers go out before they outgrow what one read of a burst brings in.
    assert!(CORKED_BYTES_MAX <= READ_BURST_BYTES_MAX);
    assert!(PORT_RETRY_MS < PORT_WAIT_MS);
    assert!(ENTROPY_POOL_BYTES.is_multiple_of(8) && ENTROPY_POOL_BYTES >= 8);
    assert!(PINGS_UNANSWERED_MAX >= 1);
    // A WebSocket close waits for its client within the stop's wait.
    assert!(STOP_POLL_MS < STOP_WAIT_MS && CLOSE_WAIT_MS < STOP_WAIT_MS);
    assert!(DRAIN_RETRY_SPREAD_MS > 0);
    assert!(ADMISSION_RETRY_S_MIN >= 1 && ADMISSION_RETRY_S_MIN < ADMISSION_RETRY_S_MAX);
    assert!(RELOAD_POLL_MS < RELOAD_WAIT_MS);
};
