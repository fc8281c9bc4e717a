//! Wire-level protocol facts that are ours rather than kafka-protocol's: the supported versions table.

pub mod versions;
