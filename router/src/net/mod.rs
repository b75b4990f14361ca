//! The connection's I/O floor: reading one request off a socket (with its bounds and timeouts),
//! writing answers (JSON, JSONP, errors, corked bursts), and the non-blocking `send`/`recv` that
//! attached connections use. Nothing here knows about routes, tunnels' transports or shards'
//! threads; it uses only the shard's configuration and read-buffer pool.

pub mod answer;
pub mod reply;
pub mod request;
pub mod sock;
