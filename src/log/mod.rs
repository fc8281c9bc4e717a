//! Vltava's storage engine: Kafka-compatible partition logs on local disk.
//!
//! Ownership: [`batch`] parses/validates/rewrites v2 record batch headers and
//! checks every record of a producer's batch (`record` parses records,
//! `decompress` streams compressed batches through their codec with bounded
//! memory), [`index`] owns the sparse offset and time indexes, [`segment`] owns one
//! segment's files, and [`Log`] (in `log_impl`) owns a partition directory and
//! all policy (offset assignment, rolling, recovery, retention, flushing).
//! The broker owns locking, the high watermark, replication and mapping
//! [`LogError`] to protocol error codes.
//!
//! Behaviour follows Apache Kafka's storage layer (`LogSegment`,
//! `OffsetIndex`, `TimeIndex`, `LocalLog`, `LogValidator`); the on-disk
//! format (segment, index and time index files) is Kafka's.

#![warn(missing_docs)]

pub mod batch;
mod checkpoint;
mod config;
mod decompress;
mod error;
pub mod index;
mod log_impl;
mod record;
pub mod segment;
#[cfg(test)]
pub(crate) mod testutil;

pub use batch::{
    assign_offsets, validate_follower_records, validate_producer_records, AssignResult,
    BatchHeader, Compression, TimestampType, ValidatedBatch, ValidatedRecords, BATCH_HEADER_LEN,
};
pub use config::LogConfig;
pub use error::{BadRecord, LogError, MAX_RECORD_ERRORS};
pub use log_impl::{
    AppendInfo, Log, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE,
};
pub use segment::FileSlice;
