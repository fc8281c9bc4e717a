//! Coordinators: replayable shards over internal partitions (see `ARCHITECTURE.md`).
//!
//! [`runtime`] owns one shard per internal partition this broker leads (`__consumer_offsets`,
//! `__transaction_state`) and runs operations on them; [`group`] holds the group shard's state machines
//! (classic groups, committed offsets) and the records they write; [`txn`] the transaction coordinator's
//! (transactional ids, their state machine, markers to write). The API handlers in `api/group.rs` only
//! decode, call the runtime and encode.

pub mod group;
pub mod producer_ids;
pub mod runtime;
pub mod txn;

pub use runtime::{
    partition_for, CoordinatorError, CoordinatorRuntime, GroupCoordinator, Shard, OFFSETS_TOPIC,
};
