//! Per-partition log configuration (Kafka's topic-level log configs).
//!
//! Owned by the log module; the broker builds a [`LogConfig`] from broker
//! defaults and topic overrides and hands it to `Log::open` /
//! `Log::update_config`.

use super::batch::TimestampType;

/// Kafka 4's floor for `segment.bytes` and `log.segment.bytes` (KIP-1030). Lives with the log so that the
/// broker config and the topic config table both depend on the log, not on each other.
pub const MIN_SEGMENT_BYTES: i64 = 1024 * 1024;

/// Configuration of one partition's log. `Default` gives Kafka 4's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this.
    /// Effective values are capped at `i32::MAX` because index positions are
    /// 32-bit.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment is this old.
    pub segment_ms: i64,
    /// `segment.index.bytes`: maximum size of each index file.
    pub segment_index_bytes: usize,
    /// `index.interval.bytes`: bytes of log between index entries.
    pub index_interval_bytes: usize,
    /// `retention.ms`: delete segments whose newest record is older; -1 keeps
    /// everything.
    pub retention_ms: i64,
    /// `retention.bytes`: delete old segments while the log is larger; -1
    /// means unlimited.
    pub retention_bytes: i64,
    /// `flush.messages`: fsync after this many unflushed messages.
    pub flush_messages: i64,
    /// `flush.ms`: fsync when the last flush is this old.
    pub flush_ms: i64,
    /// `max.message.bytes`: largest accepted batch.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime
    /// timestamp may be.
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime
    /// timestamp may be.
    pub message_timestamp_after_max_ms: i64,
    /// `cleanup.policy` includes `compact`: producers must key every record
    /// (compaction itself is not implemented yet, so the broker does not
    /// accept that policy today).
    pub compacted: bool,
    /// `producer.id.expiration.ms` (a broker setting): idempotent producers silent this long are forgotten.
    pub producer_id_expiration_ms: i64,
    /// Most producer ids remembered by the partition (see `producer_state`).
    pub max_producers: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            segment_index_bytes: 10_485_760,
            index_interval_bytes: 4096,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 3_600_000,
            compacted: false,
            producer_id_expiration_ms: 86_400_000,
            max_producers: super::producer_state::MAX_PRODUCERS_PER_PARTITION,
        }
    }
}
