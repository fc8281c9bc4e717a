//! Coordinators: replayable shards over internal partitions (see `ARCHITECTURE.md`).
//!
//! [`runtime`] owns one shard per `__consumer_offsets` partition this broker leads and runs operations on
//! them; [`group`] holds the shard's state machines (classic groups, committed offsets) and the records they
//! write. The API handlers in `api/group.rs` only decode, call the runtime and encode.

pub mod group;
pub mod producer_ids;
pub mod runtime;

pub use runtime::{partition_for, CoordinatorError, GroupCoordinator, OFFSETS_TOPIC};
