//! Vltava's storage engine: Kafka-compatible partition logs on local disk.
//!
//! Ownership: [`batch`] parses/validates/rewrites v2 record batch headers and
//! checks every record of a producer's batch (`record` parses records,
//! `decompress` streams compressed batches through their codec with bounded
//! memory), [`index`] owns the sparse offset and time indexes, [`segment`] owns one
//! segment's files, and [`Log`] (in `log`, with opening and recovery in `loader` and retention in
//! `retention`) owns a partition directory and all policy (offset assignment,
//! rolling, recovery, retention, flushing).
//! [`producer_state`] holds idempotent producers' last batches and their checks (with `producer_log`
//! loading it and writing its snapshots),
//! [`txn_index`] holds each segment's aborted transactions (read_committed fetches),
//! `flush` runs fsync in steps so it can happen outside the caller's lock,
//! and owns [`LogHealth`], the shared online/offline flag of a log.
//! The broker owns locking, the high watermark, replication and mapping
//! [`LogError`] to protocol error codes.
//!
//! Behaviour follows Apache Kafka's storage layer (`LogSegment`,
//! `OffsetIndex`, `TimeIndex`, `LocalLog`, `LogValidator`); the on-disk
//! format (segment, index and time index files) is Kafka's.

#![warn(missing_docs)]

pub mod batch;
mod checkpoint;
pub mod cleaner;
mod config;
mod decompress;
mod error;
pub(crate) mod fault;
mod flush;
pub mod index;
mod loader;
#[allow(clippy::module_inception)] // `log::log` holds the `Log` type, like Kafka's UnifiedLog file
mod log;
pub mod marker;
mod producer_log;
pub mod producer_state;
mod read;
mod record;
mod retention;
pub mod segment;
#[cfg(test)]
pub(crate) mod testutil;
pub mod txn_index;

pub use batch::{
    assign_offsets, validate_follower_records, validate_producer_records, AssignResult,
    BatchHeader, Compression, TimestampType, ValidatedBatch, ValidatedRecords, BATCH_HEADER_LEN,
};
pub use checkpoint::{write_file_durably, OffsetCheckpoints};
pub use config::{LogConfig, MIN_SEGMENT_BYTES};
pub use error::{BadRecord, LogError, MAX_RECORD_ERRORS};
pub use flush::{FlushJob, LogHealth};
pub use log::{AppendInfo, Log, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE};
pub use producer_log::AppendOrigin;
pub use segment::FileSlice;

/// A file size or position as `usize`. Segments are at most 4 GiB (32-bit index positions), so on the 64-bit
/// targets the broker runs on this never saturates; it exists so that no cast can silently truncate.
pub(crate) fn usize_from(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}
