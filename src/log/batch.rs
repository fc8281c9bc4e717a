//! The v2 `RecordBatch` header: parsing, produce-time validation and the
//! in-place rewrites the broker performs.
//!
//! Owns: the 61-byte header layout, [`validate_producer_records`] (what a
//! Produce request may contain: every record is walked, compressed batches
//! streamed through their codec by `decompress.rs`, like Kafka's
//! `LogValidator`), [`validate_follower_records`] (what a replica fetch may
//! contain) and [`assign_offsets`] (stamping offsets, leader epoch, LogAppendTime
//! and the true max timestamp). Compressed batches are never recompressed: they
//! are stored as the producer sent them apart from broker-owned header fields.
//! Does not own: file I/O (`segment.rs`), decompression (`decompress.rs`) or the
//! timestamp window (`log.rs`).
//!
//! Layout (all big-endian): baseOffset i64 @0, batchLength i32 @8,
//! partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17 (CRC-32C over
//! @21..end), attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64
//! @27, maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51,
//! baseSequence i32 @53, recordsCount i32 @57, then the records.

use super::decompress::StreamSource;
use super::error::{BadRecord, LogError, MAX_RECORD_ERRORS};
use super::record::{read_record, Reader, RecordMeta, Source};

/// Size of the fixed v2 batch header.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before the part counted by `batchLength` (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal `batchLength`: the header minus [`LOG_OVERHEAD`].
#[allow(clippy::cast_possible_truncation)] // 49, a constant
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
/// The only supported batch format version.
pub const CURRENT_MAGIC: i8 = 2;
/// Timestamp value meaning "no timestamp".
pub const NO_TIMESTAMP: i64 = -1;

const BASE_OFFSET_AT: usize = 0;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
const DELETE_HORIZON_BIT: i16 = 0x40;

/// Compression codec of a batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing).
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Maps the 3 attribute bits to a codec; `None` for ids 5-7.
    pub fn from_id(id: i16) -> Option<Self> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Meaning of record timestamps (attribute bit 3, and the topic config
/// `message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Timestamps were set by the producer.
    #[default]
    CreateTime,
    /// The broker stamped the batch's max timestamp when appending; every
    /// record's timestamp reads as that value.
    LogAppendTime,
}

/// Decoded fixed header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes following the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch stamped by the broker that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version; only 2 is supported.
    pub magic: i8,
    /// CRC-32C of the bytes from the attributes to the end of the batch.
    pub crc: u32,
    /// Compression, timestamp type, transactional/control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the append time for LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

/// Splits fixed-size big-endian fields off the front of a slice.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], LogError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| LogError::CorruptMessage("truncated batch header".into()))?;
        self.0 = rest;
        Ok(*head)
    }
}

impl BatchHeader {
    /// Parses the header at the start of `buf` (which must hold at least
    /// [`BATCH_HEADER_LEN`] bytes). Only decodes; checks nothing else.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, LogError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(LogError::CorruptMessage(format!(
                "batch header needs {BATCH_HEADER_LEN} bytes, only {} available",
                buf.len()
            )));
        }
        let mut f = Fields(buf);
        Ok(BatchHeader {
            base_offset: i64::from_be_bytes(f.take()?),
            batch_length: i32::from_be_bytes(f.take()?),
            partition_leader_epoch: i32::from_be_bytes(f.take()?),
            magic: i8::from_be_bytes(f.take()?),
            crc: u32::from_be_bytes(f.take()?),
            attributes: i16::from_be_bytes(f.take()?),
            last_offset_delta: i32::from_be_bytes(f.take()?),
            base_timestamp: i64::from_be_bytes(f.take()?),
            max_timestamp: i64::from_be_bytes(f.take()?),
            producer_id: i64::from_be_bytes(f.take()?),
            producer_epoch: i16::from_be_bytes(f.take()?),
            base_sequence: i32::from_be_bytes(f.take()?),
            records_count: i32::from_be_bytes(f.take()?),
        })
    }

    /// Offset of the last record (saturating, so garbage headers cannot
    /// overflow).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset following this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Whole batch size on the wire/disk: `batch_length + 12`. A negative
    /// `batch_length` counts as 0 (such headers are rejected by validation).
    pub fn total_size(&self) -> usize {
        usize::try_from(self.batch_length).unwrap_or(0) + LOG_OVERHEAD
    }

    /// The batch's codec; unknown ids are a corrupt batch.
    pub fn compression(&self) -> Result<Compression, LogError> {
        Compression::from_id(self.attributes & COMPRESSION_MASK).ok_or_else(|| {
            LogError::CorruptMessage(format!(
                "unknown compression codec id {}",
                self.attributes & COMPRESSION_MASK
            ))
        })
    }

    /// CreateTime or LogAppendTime, from attribute bit 3.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Part of a transaction (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Holds control records such as transaction markers (attribute bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Has the delete-horizon flag set by the log cleaner (attribute bit 6).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_BIT != 0
    }
}

/// One batch of a validated record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedBatch {
    /// Byte position of the batch within the validated buffer.
    pub position: usize,
    /// Its header as received.
    pub header: BatchHeader,
    /// Producer batches: the largest record timestamp, found by walking the
    /// records, and the offset delta to index it under: the first record
    /// carrying it for uncompressed batches, the last offset for compressed
    /// ones (Kafka's shallow offset). `None` for follower batches (not walked).
    pub record_max_timestamp: Option<(i64, i32)>,
    /// Smallest and largest record timestamps to range-check against
    /// `message.timestamp.{before,after}.max.ms`, ignoring `NO_TIMESTAMP`.
    /// `None` if no record has a timestamp (or for follower batches).
    pub timestamp_bounds: Option<(i64, i64)>,
}

impl ValidatedBatch {
    /// The max timestamp the stored batch will carry under CreateTime (the
    /// walked one for producer batches, the header's for follower batches), and
    /// the offset delta (within this batch) to index it under.
    pub fn effective_max_timestamp(&self) -> (i64, i32) {
        self.record_max_timestamp
            .unwrap_or((self.header.max_timestamp, self.header.last_offset_delta))
    }
}

/// Result of [`validate_producer_records`] / [`validate_follower_records`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedRecords {
    /// The batches in order.
    pub batches: Vec<ValidatedBatch>,
    /// Sum of `records_count` over all batches.
    pub record_count: i64,
    /// Offsets the set spans once assigned: sum of `last_offset_delta + 1`.
    pub offset_count: i64,
    /// Size of the whole set in bytes (= the buffer length).
    pub total_bytes: usize,
    /// Largest (effective) batch max timestamp, `NO_TIMESTAMP` if none.
    pub max_timestamp: i64,
    /// Offset of the record with `max_timestamp`, relative to the first
    /// offset of the set.
    pub offset_delta_of_max_timestamp: i64,
}

/// Validates the records of one partition in a Produce request, walking every
/// record (compressed batches through their codec, with bounded memory).
///
/// Per batch: header present; `batchLength >= 49` and the batch fits in the
/// buffer (else `CorruptMessage`); magic 2 (`UnsupportedMagic`); size
/// `<= max_batch_bytes` (`MessageTooLarge`); CRC-32C (`CorruptMessage`); a
/// known codec; `recordsCount > 0` and `lastOffsetDelta == recordsCount - 1`,
/// not a control batch, a valid sequence when a producer id is set
/// (`InvalidRecord`); LogAppendTime not set by the producer
/// (`InvalidTimestamp`). Then the records: a compressed payload that its codec
/// cannot decode, or that decompresses to more than
/// `decompress::MAX_DECOMPRESSED_BATCH_BYTES`, is `CorruptMessage`; fewer or
/// more records than `recordsCount`, or bytes after the last one, are
/// `InvalidRecord`; a malformed record, offset deltas other than 0, 1, 2, ...,
/// and (with `compacted`) a record without a key are `InvalidRecords` naming
/// the records by index. Trailing partial batches are `CorruptMessage`; an
/// empty buffer is `InvalidRecord`.
pub fn validate_producer_records(
    buf: &[u8],
    max_batch_bytes: usize,
    compacted: bool,
) -> Result<ValidatedRecords, LogError> {
    validate(buf, max_batch_bytes, Some(compacted))
}

/// Validates batches fetched from a leader for a follower append: framing,
/// magic, CRC, codec and offsets strictly increasing across batches. Records
/// are not walked and control batches are allowed; offsets are kept as sent.
pub fn validate_follower_records(buf: &[u8]) -> Result<ValidatedRecords, LogError> {
    validate(buf, usize::MAX, None)
}

/// `producer`: `Some(compacted)` for a producer's records, `None` for a
/// follower's.
fn validate(
    buf: &[u8],
    max_batch_bytes: usize,
    producer: Option<bool>,
) -> Result<ValidatedRecords, LogError> {
    let mut out = ValidatedRecords {
        batches: Vec::new(),
        record_count: 0,
        offset_count: 0,
        total_bytes: buf.len(),
        max_timestamp: NO_TIMESTAMP,
        offset_delta_of_max_timestamp: 0,
    };
    let mut position = 0usize;
    let mut prev_last_offset: Option<i64> = None;
    while position < buf.len() {
        let rest = buf.get(position..).unwrap_or_default();
        let header = check_framing(rest, position, max_batch_bytes)?;
        let batch = rest.get(..header.total_size()).unwrap_or_default();
        let validated = match producer {
            Some(compacted) => check_producer_batch(batch, &header, position, compacted)?,
            None => check_follower_batch(&header, position, prev_last_offset)?,
        };
        prev_last_offset = Some(header.last_offset());

        let (max_ts, max_ts_delta) = validated.effective_max_timestamp();
        // The set's offset span so far, i.e. this batch's offset relative to
        // the first assigned offset once the broker renumbers the set.
        let batch_delta = out.offset_count;
        if out.batches.is_empty() || max_ts > out.max_timestamp {
            out.max_timestamp = max_ts;
            out.offset_delta_of_max_timestamp = batch_delta.saturating_add(i64::from(max_ts_delta));
        }
        out.record_count = out
            .record_count
            .saturating_add(i64::from(header.records_count));
        out.offset_count = out
            .offset_count
            .saturating_add(i64::from(header.last_offset_delta))
            .saturating_add(1);
        out.batches.push(validated);
        position += header.total_size();
    }
    if out.batches.is_empty() {
        return Err(LogError::InvalidRecord(
            "record set contains no batches".into(),
        ));
    }
    Ok(out)
}

/// Checks that a whole, well-framed v2 batch with a valid CRC starts at
/// `rest[0]`.
fn check_framing(
    rest: &[u8],
    position: usize,
    max_batch_bytes: usize,
) -> Result<BatchHeader, LogError> {
    let header = BatchHeader::parse(rest).map_err(|_| {
        LogError::CorruptMessage(format!(
            "{} trailing bytes at position {position} are not a whole batch",
            rest.len()
        ))
    })?;
    if header.batch_length < MIN_BATCH_LENGTH {
        return Err(LogError::CorruptMessage(format!(
            "batch at position {position} has batchLength {} < {MIN_BATCH_LENGTH}",
            header.batch_length
        )));
    }
    let size = header.total_size();
    if size > rest.len() {
        return Err(LogError::CorruptMessage(format!(
            "batch at position {position} declares {size} bytes but only {} remain",
            rest.len()
        )));
    }
    if header.magic != CURRENT_MAGIC {
        return Err(LogError::UnsupportedMagic(header.magic));
    }
    if size > max_batch_bytes {
        return Err(LogError::MessageTooLarge {
            size,
            max: max_batch_bytes,
        });
    }
    let crc = crc32c::crc32c(rest.get(ATTRIBUTES_AT..size).unwrap_or_default());
    if crc != header.crc {
        return Err(LogError::CorruptMessage(format!(
            "batch at position {position}: CRC-32C is {crc:#010x}, header says {:#010x}",
            header.crc
        )));
    }
    header.compression()?;
    Ok(header)
}

fn check_producer_batch(
    batch: &[u8],
    header: &BatchHeader,
    position: usize,
    compacted: bool,
) -> Result<ValidatedBatch, LogError> {
    let invalid =
        |msg: String| LogError::InvalidRecord(format!("batch at position {position}: {msg}"));
    if header.records_count <= 0 {
        return Err(invalid(format!("record count {}", header.records_count)));
    }
    if i64::from(header.last_offset_delta) != i64::from(header.records_count) - 1 {
        return Err(invalid(format!(
            "lastOffsetDelta {} does not match record count {}",
            header.last_offset_delta, header.records_count
        )));
    }
    if header.is_control() {
        return Err(invalid("producers may not write control batches".into()));
    }
    if header.producer_id >= 0 && header.base_sequence < 0 {
        return Err(invalid(format!(
            "producer id {} with invalid base sequence {}",
            header.producer_id, header.base_sequence
        )));
    }
    if header.timestamp_type() == TimestampType::LogAppendTime {
        return Err(LogError::InvalidTimestamp(format!(
            "batch at position {position}: producers may not set the LogAppendTime timestamp type"
        )));
    }

    let payload = batch.get(BATCH_HEADER_LEN..).unwrap_or_default();
    let mut checks = RecordChecks::new(header, position, compacted);
    let codec = header.compression()?;
    if codec == Compression::None {
        // The fast path: walked in place, nothing copied.
        walk_records(&mut Reader::new(payload), &mut checks)?;
    } else {
        let corrupt = |e: &dyn std::fmt::Display| {
            LogError::CorruptMessage(format!(
                "batch at position {position}: {codec:?} payload: {e}"
            ))
        };
        let mut stream = StreamSource::open(codec, payload).map_err(|e| corrupt(&e))?;
        let walked = walk_records(&mut stream, &mut checks);
        // A decoder failure explains whatever record error it caused.
        if let Some(f) = stream.failure() {
            return Err(corrupt(&f));
        }
        walked?;
        if !stream.finish().map_err(|e| corrupt(&e))? {
            return Err(checks.invalid("bytes follow its last record".into()));
        }
    }
    checks.finish()
}

/// Walks exactly `recordsCount` records from `src` through `checks`, then
/// requires the source to be exhausted.
fn walk_records(src: &mut impl Source, checks: &mut RecordChecks<'_>) -> Result<(), LogError> {
    let count = checks.header.records_count;
    for index in 0..count {
        if src.at_end() {
            return Err(checks.invalid(format!("holds {index} records, its header says {count}")));
        }
        let rec = read_record(src).map_err(|e| checks.bad_record(index, e.0.into()))?;
        checks.record(index, rec)?;
    }
    if !src.at_end() {
        return Err(checks.invalid(format!("bytes follow its last record (record {count})")));
    }
    Ok(())
}

/// Per-record checks of a producer batch and what they learn about it
/// (Kafka's `LogValidator.validateRecord`).
struct RecordChecks<'h> {
    header: &'h BatchHeader,
    position: usize,
    compacted: bool,
    /// Largest timestamp and the offset delta of its first record.
    max: Option<(i64, i32)>,
    bounds: Option<(i64, i64)>,
    /// Keyless records of a compacted topic: reported together, like Kafka.
    keyless: Vec<BadRecord>,
    keyless_count: usize,
}

impl<'h> RecordChecks<'h> {
    fn new(header: &'h BatchHeader, position: usize, compacted: bool) -> Self {
        RecordChecks {
            header,
            position,
            compacted,
            max: None,
            bounds: None,
            keyless: Vec::new(),
            keyless_count: 0,
        }
    }

    fn invalid(&self, msg: String) -> LogError {
        LogError::InvalidRecord(format!("batch at position {}: {msg}", self.position))
    }

    /// One bad record: `InvalidRecords` naming it.
    fn bad_record(&self, index: i32, msg: String) -> LogError {
        LogError::InvalidRecords {
            message: format!("batch at position {}: record {index}: {msg}", self.position),
            records: vec![BadRecord {
                batch_index: index,
                message: msg,
            }],
        }
    }

    fn record(&mut self, index: i32, rec: RecordMeta) -> Result<(), LogError> {
        if rec.offset_delta != index {
            return Err(self.bad_record(index, format!("offset delta {}", rec.offset_delta)));
        }
        let ts = self
            .header
            .base_timestamp
            .saturating_add(rec.timestamp_delta);
        if self.max.is_none_or(|(m, _)| ts > m) {
            self.max = Some((ts, rec.offset_delta));
        }
        if ts != NO_TIMESTAMP {
            self.bounds = Some(match self.bounds {
                None => (ts, ts),
                Some((lo, hi)) => (lo.min(ts), hi.max(ts)),
            });
        }
        if self.compacted && !rec.has_key {
            self.keyless_count += 1;
            if self.keyless.len() < MAX_RECORD_ERRORS {
                self.keyless.push(BadRecord {
                    batch_index: index,
                    message: "Compacted topic cannot accept message without key".into(),
                });
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<ValidatedBatch, LogError> {
        if !self.keyless.is_empty() {
            return Err(LogError::InvalidRecords {
                message: format!(
                    "batch at position {}: {} records without a key on a compacted topic",
                    self.position, self.keyless_count
                ),
                records: self.keyless,
            });
        }
        let compressed = self.header.compression().ok() != Some(Compression::None);
        let max = self.max.map(|(ts, delta)| {
            // Compressed batches are indexed by their last offset, like Kafka's shallow offset.
            (
                ts,
                if compressed {
                    self.header.last_offset_delta
                } else {
                    delta
                },
            )
        });
        Ok(ValidatedBatch {
            position: self.position,
            header: *self.header,
            record_max_timestamp: max,
            timestamp_bounds: self.bounds,
        })
    }
}

fn check_follower_batch(
    header: &BatchHeader,
    position: usize,
    prev_last_offset: Option<i64>,
) -> Result<ValidatedBatch, LogError> {
    if header.last_offset_delta < 0 || header.records_count < 0 {
        return Err(LogError::InvalidRecord(format!(
            "batch at position {position}: lastOffsetDelta {} / record count {}",
            header.last_offset_delta, header.records_count
        )));
    }
    if header.base_offset < 0 || prev_last_offset.is_some_and(|prev| header.base_offset <= prev) {
        return Err(LogError::InvalidRecord(format!(
            "batch at position {position}: base offset {} does not follow the previous batch",
            header.base_offset
        )));
    }
    Ok(ValidatedBatch {
        position,
        header: *header,
        record_max_timestamp: None,
        timestamp_bounds: None,
    })
}

/// Outcome of [`assign_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignResult {
    /// First offset assigned (= the `base_offset` argument).
    pub first_offset: i64,
    /// Last offset assigned.
    pub last_offset: i64,
    /// Largest max timestamp of the stored batches.
    pub max_timestamp: i64,
    /// Offset of the record with `max_timestamp` (batch-level for compressed
    /// batches, the first offset for LogAppendTime).
    pub offset_of_max_timestamp: i64,
}

/// Rewrites the broker-owned header fields of a set validated by
/// [`validate_producer_records`], in place.
///
/// `buf` must be the buffer that was validated. Sets each batch's baseOffset
/// (consecutive from `base_offset`) and partitionLeaderEpoch, which lie
/// outside the CRC. With `log_append_time = Some(ts)` every batch gets the
/// LogAppendTime attribute and maxTimestamp `ts` (baseTimestamp untouched,
/// like Kafka's `DefaultRecordBatch.setMaxTimestamp`); otherwise an
/// uncompressed batch whose header maxTimestamp disagrees with its records is
/// corrected, as Kafka's LogValidator does. Either rewrite recomputes the CRC,
/// which costs one pass over the bytes but no decompression.
pub fn assign_offsets(
    buf: &mut [u8],
    validated: &ValidatedRecords,
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) -> AssignResult {
    let mut next = base_offset;
    let mut result = AssignResult {
        first_offset: base_offset,
        last_offset: base_offset,
        max_timestamp: NO_TIMESTAMP,
        offset_of_max_timestamp: base_offset,
    };
    for (i, vb) in validated.batches.iter().enumerate() {
        let h = &vb.header;
        let pos = vb.position;
        put(buf, pos + BASE_OFFSET_AT, &next.to_be_bytes());
        put(
            buf,
            pos + PARTITION_LEADER_EPOCH_AT,
            &leader_epoch.to_be_bytes(),
        );

        let (max_ts, max_ts_delta) = match log_append_time {
            Some(ts) => {
                let attributes = h.attributes | TIMESTAMP_TYPE_BIT;
                if attributes != h.attributes || ts != h.max_timestamp {
                    put(buf, pos + ATTRIBUTES_AT, &attributes.to_be_bytes());
                    put(buf, pos + MAX_TIMESTAMP_AT, &ts.to_be_bytes());
                    rewrite_crc(buf, pos, h.total_size());
                }
                (ts, 0)
            }
            None => {
                let (ts, delta) = vb.effective_max_timestamp();
                if ts != h.max_timestamp {
                    put(buf, pos + MAX_TIMESTAMP_AT, &ts.to_be_bytes());
                    rewrite_crc(buf, pos, h.total_size());
                }
                (ts, delta)
            }
        };
        if i == 0 || max_ts > result.max_timestamp {
            result.max_timestamp = max_ts;
            result.offset_of_max_timestamp = next.saturating_add(i64::from(max_ts_delta));
        }
        result.last_offset = next.saturating_add(i64::from(h.last_offset_delta));
        next = result.last_offset.saturating_add(1);
    }
    result
}

/// Writes `bytes` at `at` if in bounds; `assign_offsets` is only ever called
/// on the buffer it validated, so out-of-bounds means misuse and is ignored
/// rather than panicking.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    let end = at.saturating_add(bytes.len());
    if let Some(dst) = buf.get_mut(at..end) {
        dst.copy_from_slice(bytes);
    }
}

fn rewrite_crc(buf: &mut [u8], pos: usize, size: usize) {
    let end = pos.saturating_add(size);
    if let Some(covered) = buf.get(pos + ATTRIBUTES_AT..end) {
        let crc = crc32c::crc32c(covered);
        put(buf, pos + CRC_AT, &crc.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use crate::log::testutil::{self, fix_crc, Codec};

    fn single(codec: Codec, n: usize) -> Vec<u8> {
        testutil::batch(codec, &vec![1_000; n], 10)
    }

    #[test]
    fn parses_header_fields() {
        let buf = testutil::batch(Codec::None, &[5, 9, 7], 4);
        let h = BatchHeader::parse(&buf).unwrap();
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.magic, 2);
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.last_offset(), 2);
        assert_eq!(h.total_size(), buf.len());
        assert_eq!(h.base_timestamp, 5);
        assert_eq!(h.max_timestamp, 9);
        assert_eq!(h.compression().unwrap(), Compression::None);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(!h.is_transactional());
        assert!(!h.is_control());
        assert!(BatchHeader::parse(&buf[..60]).is_err());
    }

    #[test]
    fn validates_every_codec() {
        for codec in Codec::ALL {
            let buf = single(codec, 5);
            let v = validate_producer_records(&buf, 1 << 20, false).unwrap();
            assert_eq!(v.batches.len(), 1, "{codec:?}");
            assert_eq!(v.record_count, 5);
            assert_eq!(v.offset_count, 5);
            assert_eq!(v.total_bytes, buf.len());
            assert_eq!(v.max_timestamp, 1_000);
            let h = &v.batches[0].header;
            assert_eq!(h.compression().unwrap(), codec.ours());
            // Every producer batch is walked, compressed ones through their codec.
            let indexed_at = if codec == Codec::None { 0 } else { 4 };
            assert_eq!(v.batches[0].record_max_timestamp, Some((1_000, indexed_at)));
            assert_eq!(v.batches[0].timestamp_bounds, Some((1_000, 1_000)));
        }
    }

    #[test]
    fn uncompressed_max_timestamp_found_by_walk() {
        let buf = testutil::batch(Codec::None, &[10, 50, 20, 50], 3);
        let v = validate_producer_records(&buf, 1 << 20, false).unwrap();
        assert_eq!(v.batches[0].record_max_timestamp, Some((50, 1)));
        assert_eq!(v.batches[0].timestamp_bounds, Some((10, 50)));
        assert_eq!(v.offset_delta_of_max_timestamp, 1);
    }

    #[test]
    fn crc_mismatch_is_corrupt() {
        for codec in Codec::ALL {
            let mut buf = single(codec, 3);
            let last = buf.len() - 1;
            buf[last] ^= 0xff;
            assert!(matches!(
                validate_producer_records(&buf, 1 << 20, false),
                Err(LogError::CorruptMessage(_))
            ));
        }
    }

    #[test]
    fn truncated_and_oversized_lengths_are_corrupt() {
        let buf = single(Codec::None, 3);
        for cut in [1, 12, 60, 61, buf.len() - 1] {
            assert!(
                matches!(
                    validate_producer_records(&buf[..cut], 1 << 20, false),
                    Err(LogError::CorruptMessage(_))
                ),
                "cut {cut}"
            );
        }
        let mut big = buf.clone();
        big[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            validate_producer_records(&big, 1 << 20, false),
            Err(LogError::CorruptMessage(_))
        ));
        let mut small = buf.clone();
        small[8..12].copy_from_slice(&48i32.to_be_bytes());
        assert!(matches!(
            validate_producer_records(&small, 1 << 20, false),
            Err(LogError::CorruptMessage(_))
        ));
        let mut negative = buf;
        negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate_producer_records(&negative, 1 << 20, false),
            Err(LogError::CorruptMessage(_))
        ));
    }

    #[test]
    fn too_large_batch() {
        let buf = single(Codec::None, 3);
        assert!(matches!(
            validate_producer_records(&buf, buf.len() - 1, false),
            Err(LogError::MessageTooLarge { size, max }) if size == buf.len() && max == buf.len() - 1
        ));
        assert!(validate_producer_records(&buf, buf.len(), false).is_ok());
    }

    #[test]
    fn old_magic_rejected() {
        let mut buf = single(Codec::None, 3);
        buf[16] = 1;
        assert!(matches!(
            validate_producer_records(&buf, 1 << 20, false),
            Err(LogError::UnsupportedMagic(1))
        ));
    }

    #[test]
    fn record_count_mismatch() {
        let mut buf = single(Codec::None, 3);
        buf[57..61].copy_from_slice(&4i32.to_be_bytes());
        fix_crc(&mut buf);
        assert!(matches!(
            validate_producer_records(&buf, 1 << 20, false),
            Err(LogError::InvalidRecord(_))
        ));
        // Header consistent (count 2, delta 1) but three records in the body.
        let mut buf = single(Codec::None, 3);
        buf[57..61].copy_from_slice(&2i32.to_be_bytes());
        buf[23..27].copy_from_slice(&1i32.to_be_bytes());
        fix_crc(&mut buf);
        assert!(matches!(
            validate_producer_records(&buf, 1 << 20, false),
            Err(LogError::InvalidRecord(_))
        ));
        // Zero records.
        let mut buf = single(Codec::None, 1);
        buf[57..61].copy_from_slice(&0i32.to_be_bytes());
        buf[23..27].copy_from_slice(&(-1i32).to_be_bytes());
        fix_crc(&mut buf);
        assert!(matches!(
            validate_producer_records(&buf, 1 << 20, false),
            Err(LogError::InvalidRecord(_))
        ));
    }

    #[test]
    fn wrong_record_offset_delta() {
        // Records with offsets [1, 0]: header is consistent, records are not.
        let buf = testutil::batch_with_offsets(&[1, 0]);
        assert!(matches!(
            validate_producer_records(&buf, 1 << 20, false),
            Err(LogError::InvalidRecords { message, records })
                if message.contains("offset delta") && records[0].batch_index == 0
        ));
    }

    #[test]
    fn control_batch_rejected() {
        let mut buf = single(Codec::None, 1);
        let attrs = i16::from_be_bytes([buf[21], buf[22]]) | CONTROL_BIT;
        buf[21..23].copy_from_slice(&attrs.to_be_bytes());
        fix_crc(&mut buf);
        assert!(matches!(
            validate_producer_records(&buf, 1 << 20, false),
            Err(LogError::InvalidRecord(_))
        ));
        // But followers replicate control batches.
        assert!(validate_follower_records(&buf).is_ok());
    }

    #[test]
    fn producer_log_append_time_and_unknown_codec_rejected() {
        let mut buf = single(Codec::None, 1);
        buf[22] |= 0x08;
        fix_crc(&mut buf);
        assert!(matches!(
            validate_producer_records(&buf, 1 << 20, false),
            Err(LogError::InvalidTimestamp(_))
        ));
        let mut buf = single(Codec::None, 1);
        buf[22] |= 0x07;
        fix_crc(&mut buf);
        assert!(matches!(
            validate_producer_records(&buf, 1 << 20, false),
            Err(LogError::CorruptMessage(_))
        ));
    }

    #[test]
    fn multiple_batches_and_trailing_bytes() {
        let mut buf = single(Codec::None, 2);
        buf.extend(single(Codec::Gzip, 3));
        buf.extend(single(Codec::Zstd, 1));
        let v = validate_producer_records(&buf, 1 << 20, false).unwrap();
        assert_eq!(v.batches.len(), 3);
        assert_eq!(v.record_count, 6);
        assert_eq!(v.offset_count, 6);
        assert_eq!(v.batches[1].position, single(Codec::None, 2).len());

        buf.extend([0u8; 20]);
        assert!(matches!(
            validate_producer_records(&buf, 1 << 20, false),
            Err(LogError::CorruptMessage(_))
        ));
        assert!(matches!(
            validate_producer_records(&[], 1 << 20, false),
            Err(LogError::InvalidRecord(_))
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = testutil::Rng(0x1234_5678_9abc_def0);
        for len in 0..400 {
            let buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = validate_producer_records(&buf, 1 << 20, false);
            let _ = validate_follower_records(&buf);
        }
        // Every truncation, and every single-byte change with the CRC fixed up
        // so the record walker sees the damage.
        let good = testutil::batch(Codec::None, &[1, 2, 3, 4], 7);
        for cut in 0..good.len() {
            let _ = validate_producer_records(&good[..cut], 1 << 20, false);
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xff, rng.next() as u8] {
                let mut buf = good.clone();
                buf[i] = v;
                if i >= 21 {
                    fix_crc(&mut buf);
                }
                let _ = validate_producer_records(&buf, 1 << 20, false);
            }
        }
        // Random record sections behind a plausible header.
        for _ in 0..2000 {
            let mut buf = good[..61].to_vec();
            let extra = (rng.next() % 40) as usize;
            buf.extend((0..extra).map(|_| rng.next() as u8));
            let len = (buf.len() - 12) as i32;
            buf[8..12].copy_from_slice(&len.to_be_bytes());
            fix_crc(&mut buf);
            let _ = validate_producer_records(&buf, 1 << 20, false);
        }
    }

    #[test]
    fn assigns_offsets_and_epoch_across_batches() {
        let mut buf = single(Codec::None, 2);
        buf.extend(single(Codec::Lz4, 3));
        let original = buf.clone();
        let v = validate_producer_records(&buf, 1 << 20, false).unwrap();
        let r = assign_offsets(&mut buf, &v, 100, 7, None);
        assert_eq!(r.first_offset, 100);
        assert_eq!(r.last_offset, 104);
        let second = v.batches[1].position;
        let h0 = BatchHeader::parse(&buf).unwrap();
        let h1 = BatchHeader::parse(&buf[second..]).unwrap();
        assert_eq!((h0.base_offset, h0.partition_leader_epoch), (100, 7));
        assert_eq!((h1.base_offset, h1.partition_leader_epoch), (102, 7));
        // Only the two broker-owned fields changed; CRC still valid.
        for (i, (a, b)) in buf.iter().zip(&original).enumerate() {
            let rel = if i >= second { i - second } else { i };
            if a != b {
                assert!(rel < 8 || (12..16).contains(&rel), "byte {i} changed");
            }
        }
        validate_producer_records(&buf, 1 << 20, false).unwrap();
        let decoded = testutil::decode(&buf);
        let offsets: Vec<i64> = decoded.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![100, 101, 102, 103, 104]);
    }

    #[test]
    fn log_append_time_rewrite_keeps_valid_crc() {
        for codec in Codec::ALL {
            let mut buf = testutil::batch(codec, &[3, 8, 5], 5);
            let v = validate_producer_records(&buf, 1 << 20, false).unwrap();
            let r = assign_offsets(&mut buf, &v, 10, 1, Some(777));
            assert_eq!(r.max_timestamp, 777);
            assert_eq!(r.offset_of_max_timestamp, 10);
            let h = BatchHeader::parse(&buf).unwrap();
            assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
            assert_eq!(h.max_timestamp, 777);
            assert_eq!(h.base_timestamp, 3);
            assert!(validate_follower_records(&buf).is_ok(), "{codec:?}");
            for rec in testutil::decode(&buf) {
                assert_eq!(
                    rec.timestamp_type,
                    kafka_protocol::records::TimestampType::LogAppend
                );
            }
        }
    }

    #[test]
    fn wrong_uncompressed_max_timestamp_is_corrected() {
        let mut buf = testutil::batch(Codec::None, &[3, 8, 5], 5);
        buf[35..43].copy_from_slice(&1i64.to_be_bytes());
        fix_crc(&mut buf);
        let v = validate_producer_records(&buf, 1 << 20, false).unwrap();
        let r = assign_offsets(&mut buf, &v, 0, 0, None);
        assert_eq!((r.max_timestamp, r.offset_of_max_timestamp), (8, 1));
        assert_eq!(BatchHeader::parse(&buf).unwrap().max_timestamp, 8);
        validate_producer_records(&buf, 1 << 20, false).unwrap();
    }

    #[test]
    fn follower_validation_requires_increasing_offsets() {
        let mut a = single(Codec::None, 2);
        let b = single(Codec::None, 2); // also based at 0
        a.extend(&b);
        assert!(matches!(
            validate_follower_records(&a),
            Err(LogError::InvalidRecord(_))
        ));
    }

    const COMPRESSED: [Codec; 4] = [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];

    /// `n` keyed records with offset deltas 0..n and timestamps base + i.
    fn records(n: i32) -> Vec<u8> {
        (0..n)
            .flat_map(|i| testutil::record_bytes(i, i64::from(i), Some(b"k"), b"value"))
            .collect()
    }

    fn validate(buf: &[u8]) -> Result<ValidatedRecords, LogError> {
        validate_producer_records(buf, 1 << 20, false)
    }

    #[test]
    fn hand_built_batches_validate_with_every_codec_and_both_snappy_framings() {
        let section = records(3);
        let mut payloads: Vec<(Codec, Vec<u8>)> = Codec::ALL
            .iter()
            .map(|c| (*c, testutil::compress(*c, &section)))
            .collect();
        payloads.push((Codec::Snappy, testutil::raw_snappy(&section)));
        for (codec, payload) in payloads {
            let buf = testutil::assemble(codec, &payload, 3, 2, 100, 102);
            let v = validate(&buf).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(v.record_count, 3);
            assert_eq!(v.batches[0].timestamp_bounds, Some((100, 102)));
        }
    }

    #[test]
    fn compressed_count_lie_is_invalid() {
        // The header claims 10^9 records (consistently with lastOffsetDelta); the payload holds one.
        for codec in COMPRESSED {
            let payload = testutil::compress(codec, &records(1));
            let buf = testutil::assemble(codec, &payload, 1_000_000_000, 999_999_999, 0, 0);
            let r = validate(&buf);
            assert!(
                matches!(&r, Err(LogError::InvalidRecord(m)) if m.contains("holds 1 records")),
                "{codec:?}: {r:?}"
            );
        }
        // Fewer claimed than present: the extra record is trailing bytes.
        let payload = testutil::compress(Codec::Gzip, &records(3));
        let buf = testutil::assemble(Codec::Gzip, &payload, 2, 1, 0, 1);
        assert!(matches!(validate(&buf), Err(LogError::InvalidRecord(m)) if m.contains("follow")));
    }

    #[test]
    fn payload_not_in_its_codec_is_corrupt() {
        for codec in COMPRESSED {
            let buf = testutil::assemble(codec, b"this is not compressed at all", 1, 0, 0, 0);
            let r = validate(&buf);
            assert!(
                matches!(&r, Err(LogError::CorruptMessage(_))),
                "{codec:?}: {r:?}"
            );
        }
    }

    #[test]
    fn truncated_compressed_stream_is_corrupt() {
        let section = records(50);
        for codec in COMPRESSED {
            let payload = testutil::compress(codec, &section);
            let cut = &payload[..payload.len() * 2 / 3];
            let buf = testutil::assemble(codec, cut, 50, 49, 0, 49);
            let r = validate(&buf);
            assert!(
                matches!(&r, Err(LogError::CorruptMessage(_))),
                "{codec:?}: {r:?}"
            );
        }
        // Cut right after the header of a raw snappy block.
        let payload = testutil::raw_snappy(&section);
        let buf = testutil::assemble(Codec::Snappy, &payload[..payload.len() / 2], 50, 49, 0, 49);
        assert!(matches!(validate(&buf), Err(LogError::CorruptMessage(_))));
    }

    #[test]
    fn compressed_offset_deltas_must_run_from_zero() {
        let mut section = testutil::record_bytes(0, 0, Some(b"k"), b"v");
        section.extend(testutil::record_bytes(2, 0, Some(b"k"), b"v"));
        for codec in COMPRESSED {
            let buf = testutil::assemble(codec, &testutil::compress(codec, &section), 2, 1, 0, 0);
            let r = validate(&buf);
            assert!(
                matches!(&r, Err(LogError::InvalidRecords { records, .. })
                    if records.len() == 1 && records[0].batch_index == 1),
                "{codec:?}: {r:?}"
            );
        }
    }

    #[test]
    fn compressed_last_offset_delta_must_match_count() {
        for codec in COMPRESSED {
            let buf =
                testutil::assemble(codec, &testutil::compress(codec, &records(2)), 2, 5, 0, 1);
            assert!(
                matches!(validate(&buf), Err(LogError::InvalidRecord(m)) if m.contains("lastOffsetDelta"))
            );
        }
    }

    #[test]
    fn bytes_after_the_last_record_are_invalid() {
        let mut section = records(2);
        section.extend([0u8; 3]);
        for codec in Codec::ALL {
            let buf = testutil::assemble(codec, &testutil::compress(codec, &section), 2, 1, 0, 1);
            let r = validate(&buf);
            assert!(
                matches!(&r, Err(LogError::InvalidRecord(m)) if m.contains("follow")),
                "{codec:?}: {r:?}"
            );
        }
    }

    #[test]
    fn malformed_records_are_named_by_index() {
        // Record 1: a timestamp-delta varint of 11 bytes inside a record of declared length 14.
        let mut bad = testutil::varint(14);
        bad.push(0);
        bad.extend([0xff; 11]);
        bad.extend([0, 0]);
        // Record 1: declared length larger than its fields.
        let mut padded = testutil::record_bytes(1, 0, Some(b"k"), b"v");
        padded[0] += 2;
        padded.push(0);
        // Record 1: negative key length other than -1.
        let mut neg_key = testutil::record_bytes(1, 0, None, b"v");
        neg_key[4] = 0x03; // zigzag(-2)
        for second in [bad, padded, neg_key] {
            let mut section = testutil::record_bytes(0, 0, Some(b"k"), b"v");
            section.extend(&second);
            for codec in Codec::ALL {
                let buf =
                    testutil::assemble(codec, &testutil::compress(codec, &section), 2, 1, 0, 0);
                let r = validate(&buf);
                assert!(
                    matches!(&r, Err(LogError::InvalidRecords { records, .. })
                        if records.len() == 1 && records[0].batch_index == 1),
                    "{codec:?}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn compressed_timestamps_are_exact_and_the_header_max_is_corrected() {
        // True timestamps 100, 500, 300; the header claims max 200 (too low) or 900 (too high).
        let mut section = testutil::record_bytes(0, 0, Some(b"k"), b"v");
        section.extend(testutil::record_bytes(1, 400, Some(b"k"), b"v"));
        section.extend(testutil::record_bytes(2, 200, Some(b"k"), b"v"));
        for codec in COMPRESSED {
            let payload = testutil::compress(codec, &section);
            for claimed in [200, 900] {
                let mut buf = testutil::assemble(codec, &payload, 3, 2, 100, claimed);
                let v = validate(&buf).unwrap();
                assert_eq!(v.batches[0].timestamp_bounds, Some((100, 500)));
                assert_eq!(v.max_timestamp, 500);
                let r = assign_offsets(&mut buf, &v, 10, 0, None);
                // Indexed at the batch's last offset, like Kafka's shallow offset.
                assert_eq!((r.max_timestamp, r.offset_of_max_timestamp), (500, 12));
                assert_eq!(BatchHeader::parse(&buf).unwrap().max_timestamp, 500);
                // New CRC, payload untouched.
                validate(&buf).unwrap();
                assert_eq!(&buf[61..], &payload[..], "{codec:?}");
            }
        }
    }

    #[test]
    fn compacted_topics_refuse_keyless_records() {
        let mut section = testutil::record_bytes(0, 0, Some(b"k"), b"v");
        section.extend(testutil::record_bytes(1, 0, None, b"v"));
        section.extend(testutil::record_bytes(2, 0, Some(b"k"), b"v"));
        section.extend(testutil::record_bytes(3, 0, None, b"v"));
        for codec in Codec::ALL {
            let buf = testutil::assemble(codec, &testutil::compress(codec, &section), 4, 3, 0, 0);
            assert!(validate_producer_records(&buf, 1 << 20, false).is_ok());
            let r = validate_producer_records(&buf, 1 << 20, true);
            match r {
                Err(LogError::InvalidRecords { records, .. }) => assert_eq!(
                    records.iter().map(|r| r.batch_index).collect::<Vec<_>>(),
                    vec![1, 3],
                    "{codec:?}"
                ),
                other => panic!("{codec:?}: {other:?}"),
            }
            let keyed =
                testutil::assemble(codec, &testutil::compress(codec, &records(3)), 3, 2, 0, 2);
            assert!(validate_producer_records(&keyed, 1 << 20, true).is_ok());
        }
    }

    #[test]
    fn decompression_bomb_is_refused_without_buffering_it() {
        // One record whose 300 MB value of zeros compresses to a few hundred KB.
        use std::io::Read;
        let value_len: i64 = 300 << 20;
        let mut head = vec![0u8];
        head.extend(testutil::varint(0));
        head.extend(testutil::varint(0));
        head.extend(testutil::varint(-1));
        head.extend(testutil::varint(value_len));
        let body_len = head.len() as i64 + value_len + 1;
        let mut section = testutil::varint(body_len);
        section.extend(head);
        let stream = section
            .chain(std::io::repeat(0).take(value_len as u64))
            .chain(&[0u8][..]);
        let payload = zstd::stream::encode_all(stream, 1).unwrap();
        assert!(payload.len() < 1 << 20);
        let buf = testutil::assemble(Codec::Zstd, &payload, 1, 0, 0, 0);
        let r = validate(&buf);
        assert!(
            matches!(&r, Err(LogError::CorruptMessage(m)) if m.contains("exceeds")),
            "{r:?}"
        );
    }
}
