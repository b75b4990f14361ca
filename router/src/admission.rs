//! What a publish must pass before the shard takes it, whoever publishes it (`/events`,
//! `/publish`, WebSocket messages): one place, so that no entry point admits more than another.

use crate::pubsub::path;
use crate::refusal::Refusal;
use crate::shard::Shard;

/// A valid path and data within `datagram_data_bytes_max`.
pub fn publish(shard: &Shard, path: &str, data: &[u8]) -> Result<(), Refusal> {
    path::validate(path)?;
    if data.len() > shard.config().datagram_data_bytes_max {
        return Err(Refusal::DataTooLarge);
    }
    Ok(())
}
