//! Publish/subscribe: paths, patterns and the shard-local subscription registry.

pub mod path;
pub mod registry;

pub use path::{PathError, Pattern};
pub use registry::Registry;
