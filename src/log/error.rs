//! The storage engine's error type.
//!
//! Owned by the log module. Every fallible operation in `crate::log` returns
//! [`LogError`]; the broker's API layer (`crate::api::log_error_code`) maps it to a Kafka error code.

use thiserror::Error;

/// Most bad records named in one [`LogError::InvalidRecords`], so a batch of
/// millions of keyless records cannot make the error itself huge.
pub const MAX_RECORD_ERRORS: usize = 1000;

/// One invalid record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Index of the record within its batch (0-based).
    pub batch_index: i32,
    /// What is wrong with it.
    pub message: String,
}

/// Errors returned by the storage engine.
#[derive(Debug, Error)]
pub enum LogError {
    /// Bytes are damaged: CRC mismatch, or a length field disagrees with the
    /// bytes actually present. Kafka `CORRUPT_MESSAGE` (2).
    #[error("corrupt message: {0}")]
    CorruptMessage(String),
    /// Structurally intact but semantically wrong records: bad record count or
    /// offset deltas, a control batch from a producer, an empty request.
    /// Kafka `INVALID_RECORD` (87).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// Records of a batch that are individually invalid (malformed, out of
    /// sequence, keyless on a compacted topic): Kafka `INVALID_RECORD` (87)
    /// naming each by its index in the batch, which Produce v8+ returns as
    /// `record_errors` (KIP-467).
    #[error("invalid record: {message}")]
    InvalidRecords {
        /// What was wrong, for the response's `error_message`.
        message: String,
        /// The bad records (at most [`MAX_RECORD_ERRORS`]).
        records: Vec<BadRecord>,
    },
    /// A batch (or record set) is larger than the configured limit.
    /// Kafka `MESSAGE_TOO_LARGE` (10).
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// Size of the offending batch in bytes.
        size: usize,
        /// The configured limit in bytes.
        max: usize,
    },
    /// Record batch magic other than 2. Kafka 4 only accepts the v2 format.
    #[error("unsupported record batch magic {0}: only magic 2 is supported")]
    UnsupportedMagic(i8),
    /// A CreateTime timestamp outside the configured window, or a producer
    /// that set LogAppendTime itself. Kafka `INVALID_TIMESTAMP` (32).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// A fetch/delete offset outside `[log_start, log_end]`.
    /// Kafka `OFFSET_OUT_OF_RANGE` (1).
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// The log start offset at the time of the request.
        log_start: i64,
        /// The log end offset at the time of the request.
        log_end: i64,
    },
    /// The record set is larger than a whole segment (`segment.bytes`) and can never be appended
    /// (Kafka's `RecordBatchTooLargeException`).
    #[error("record set of {size} bytes is larger than the segment size {max}")]
    RecordListTooLarge {
        /// Size of the record set.
        size: usize,
        /// `segment.bytes`.
        max: usize,
    },
    /// The log went offline after an I/O failure it could not undo (a failed fsync, or a failed append whose
    /// rollback failed too); it stays offline until restart. Kafka `KAFKA_STORAGE_ERROR` (56).
    #[error("log is offline: {0}")]
    Offline(String),
    /// An idempotent producer's batch does not follow its last one (a gap, or a new epoch not starting at 0).
    /// Kafka `OUT_OF_ORDER_SEQUENCE_NUMBER` (45).
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// A producer epoch older than the last one seen for the producer id. Kafka `INVALID_PRODUCER_EPOCH` (47).
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// A plain batch inside an open transaction, or a transactional batch without a producer id. Kafka `INVALID_TXN_STATE` (48).
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// A transaction marker from a coordinator older than the one that wrote the producer's last marker.
    /// Kafka `TRANSACTION_COORDINATOR_FENCED` (52).
    #[error("transaction coordinator fenced: {0}")]
    CoordinatorFenced(String),
    /// Disk I/O failed. Kafka `KAFKA_STORAGE_ERROR` (56).
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}
