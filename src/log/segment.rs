//! One log segment: a `.log` file of whole v2 batches plus its two sparse
//! indexes, named after the segment's base offset like Kafka's
//! (`00000000000000000042.log`, `.index`, `.timeindex`).
//!
//! Owns: the three files of one segment, appends at the end of the log file
//! (positional writes), positional reads (`&self`, so readers share the
//! segment), index maintenance, per-segment recovery (scan, CRC check,
//! truncate a torn tail, rebuild indexes), rollback of a failed append to a
//! [`SegmentMark`], and per-segment searches by offset and timestamp (header scanning, the recovery CRC check
//! and the searches are in `segment/scan.rs`). Does not own: offset assignment, validation of producer
//! data, rolling decisions or retention (all in `log.rs`, `retention.rs`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use tracing::warn;

use super::batch::{CURRENT_MAGIC, NO_TIMESTAMP};
use super::error::LogError;
use super::fault::{self, Point};
use super::index::{OffsetIndex, TimeIndex};

mod scan;

/// Suffix of segment log files.
pub const LOG_SUFFIX: &str = ".log";
/// Suffix of offset index files.
pub const INDEX_SUFFIX: &str = ".index";
/// Suffix of time index files.
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// Chunk size for streaming CRC checks during recovery, so a large batch is
/// never read into memory whole.
const CRC_CHUNK: usize = 64 * 1024;

/// File name stem of a segment: the base offset, zero-padded to 20 digits.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// Path of the log file of the segment at `base_offset` in `dir`.
pub fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}{LOG_SUFFIX}", file_stem(base_offset)))
}

/// Path of the offset index of the segment at `base_offset` in `dir`.
pub fn index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}{INDEX_SUFFIX}", file_stem(base_offset)))
}

/// Path of the time index of the segment at `base_offset` in `dir`.
pub fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}{TIME_INDEX_SUFFIX}", file_stem(base_offset)))
}

/// Per-segment settings taken from the log config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentConfig {
    /// Add an index entry after at least this many bytes of log.
    pub index_interval_bytes: usize,
    /// Maximum size of each index file.
    pub max_index_bytes: usize,
}

/// A range of a segment file holding whole batches.
#[derive(Debug, Clone)]
pub struct FileSlice {
    /// The segment file.
    pub file: Arc<File>,
    /// Start of the range.
    pub position: u64,
    /// Length of the range.
    pub len: usize,
}

impl FileSlice {
    /// Copies the range into memory.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        // `len` covers batches already checked to lie inside the file.
        let mut data = vec![0u8; self.len];
        self.file.read_exact_at(&mut data, self.position)?;
        Ok(data)
    }
}

/// Result of [`LogSegment::read_slice`].
#[derive(Debug, Clone)]
pub struct SegmentSlice {
    /// Whole batches, as a file range.
    pub file: FileSlice,
    /// Offset following the last batch in the range (the start offset if none).
    pub next_offset: i64,
    /// True if the range stopped because the segment ended, false if it was cut short by `max_bytes` or
    /// `max_offset_exclusive`.
    pub reached_end: bool,
}

/// The in-memory state of a segment before an append, to roll back to if the append fails half-way (see
/// [`LogSegment::mark`]).
#[derive(Debug, Clone, Copy)]
pub struct SegmentMark {
    size: u64,
    next_offset: i64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    rolling_base_timestamp: Option<i64>,
    bytes_since_last_index_entry: u64,
    offset_entries: usize,
    time_entries: usize,
}

/// A segment of a partition's log.
#[derive(Debug)]
pub struct LogSegment {
    base_offset: i64,
    log_path: PathBuf,
    /// Shared so a fetch can send a range of it after the log lock is released (the file stays readable
    /// even if the segment is deleted meanwhile).
    log: Arc<File>,
    /// Bytes of valid data; the file is never longer once opened.
    size: u64,
    /// Offset after the last batch (= base offset when empty).
    next_offset: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    /// Largest batch max timestamp so far and the offset it was first seen at.
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch; segment.ms rolling is measured from
    /// it (Kafka's `rollingBasedTimestamp`).
    rolling_base_timestamp: Option<i64>,
    /// Wall-clock time the segment was created or loaded.
    created_ms: i64,
    bytes_since_last_index_entry: u64,
    config: SegmentConfig,
}

impl LogSegment {
    /// Creates a new, empty segment. Fails if a non-empty log file already
    /// exists at that base offset; stale index files are reset.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        config: SegmentConfig,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        Self::create_with_suffix(dir, base_offset, config, now_ms, "")
    }

    /// [`LogSegment::create`] with `suffix` after each file name (the cleaner writes `.cleaned` segments, which
    /// it renames itself; such a segment is only ever appended to and flushed).
    pub fn create_with_suffix(
        dir: &Path,
        base_offset: i64,
        config: SegmentConfig,
        now_ms: i64,
        suffix: &str,
    ) -> Result<Self, LogError> {
        let with = |p: PathBuf| PathBuf::from(format!("{}{suffix}", p.display()));
        if base_offset < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("negative segment base offset {base_offset}"),
            )
            .into());
        }
        let log_path = with(log_path(dir, base_offset));
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)?;
        if log.metadata()?.len() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("segment {} already has data", log_path.display()),
            )
            .into());
        }
        let mut offset_index = OffsetIndex::open(
            &with(index_path(dir, base_offset)),
            base_offset,
            config.max_index_bytes,
        )?;
        offset_index.reset()?;
        let mut time_index = TimeIndex::open(
            &with(time_index_path(dir, base_offset)),
            base_offset,
            config.max_index_bytes,
        )?;
        time_index.reset()?;
        Ok(LogSegment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size: 0,
            next_offset: base_offset,
            offset_index,
            time_index,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
            rolling_base_timestamp: None,
            created_ms: now_ms,
            bytes_since_last_index_entry: 0,
            config,
        })
    }

    /// Opens an existing segment and returns it with the number of bytes that
    /// recovery truncated (0 if none ran or nothing was wrong).
    ///
    /// With `recover = false` the log is trusted: indexes are loaded and
    /// sanity-checked, and only the tail after the last index entry is scanned
    /// to find the end offset and max timestamp. If an index is missing or
    /// insane, or the tail does not parse, full recovery runs anyway. With
    /// `recover = true`, [`LogSegment::recover`] always runs.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        config: SegmentConfig,
        recover: bool,
        now_ms: i64,
    ) -> Result<(Self, u64), LogError> {
        let log_path = log_path(dir, base_offset);
        let log = OpenOptions::new().read(true).write(true).open(&log_path)?;
        let size = log.metadata()?.len();
        let idx_path = index_path(dir, base_offset);
        let tidx_path = time_index_path(dir, base_offset);
        let indexes_existed = idx_path.exists() && tidx_path.exists();
        let offset_index = OffsetIndex::open(&idx_path, base_offset, config.max_index_bytes)?;
        let time_index = TimeIndex::open(&tidx_path, base_offset, config.max_index_bytes)?;
        let mut segment = LogSegment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size,
            next_offset: base_offset,
            offset_index,
            time_index,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
            rolling_base_timestamp: None,
            created_ms: now_ms,
            bytes_since_last_index_entry: 0,
            config,
        };
        let mut must_recover = recover || (!indexes_existed && size > 0);
        if !must_recover {
            if let Err(e) = segment.load_trusted() {
                warn!(segment = %segment.log_path.display(), error = %e,
                    "segment failed its load check, rebuilding from the log");
                must_recover = true;
            }
        }
        let truncated = if must_recover { segment.recover()? } else { 0 };
        Ok((segment, truncated))
    }

    /// Loads state of a segment whose data is trusted (clean shutdown, or
    /// below the recovery point).
    fn load_trusted(&mut self) -> Result<(), LogError> {
        self.offset_index.sanity_check(self.size)?;
        let (next_offset, max_ts, offset_of_max) = self.scan_tail()?;
        if !self.offset_index.is_empty() && next_offset <= self.offset_index.last_entry().offset {
            return Err(LogError::CorruptMessage(format!(
                "offset index of {} points past the end of the log",
                self.log_path.display()
            )));
        }
        self.time_index.sanity_check(next_offset)?;
        self.next_offset = next_offset;
        self.max_timestamp = max_ts;
        self.offset_of_max_timestamp = offset_of_max;
        self.rolling_base_timestamp = if self.size > 0 {
            Some(self.read_header_at(0)?.max_timestamp)
        } else {
            None
        };
        Ok(())
    }

    /// Scans the batches after the last time index entry (which lies at or
    /// before the last offset index entry) to find the segment's end offset
    /// and its true max timestamp, like Kafka's `loadLargestTimestamp` and
    /// `readNextOffset`. Offsets must increase and magic must be 2.
    fn scan_tail(&self) -> Result<(i64, i64, i64), LogError> {
        let last = self.time_index.last_entry();
        let (mut max_ts, mut offset_of_max) = (last.timestamp, last.offset);
        let start = self.offset_index.lookup(last.offset).position;
        let mut next = self.base_offset;
        for item in self.scan_from(u64::from(start)) {
            let (pos, h) = item?;
            if h.magic != CURRENT_MAGIC || h.base_offset < next || h.last_offset_delta < 0 {
                return Err(LogError::CorruptMessage(format!(
                    "{}: unexpected batch at position {pos}",
                    self.log_path.display()
                )));
            }
            next = h.next_offset();
            if h.max_timestamp > max_ts {
                max_ts = h.max_timestamp;
                offset_of_max = h.last_offset();
            }
        }
        Ok((next, max_ts, offset_of_max))
    }

    /// Validates every batch from position 0 (framing, magic, offsets
    /// increasing and within the segment, CRC-32C), truncates the file at the
    /// first bad or torn batch, and rebuilds both indexes. Returns the number
    /// of bytes truncated. I/O errors are returned, never mistaken for
    /// corruption.
    pub fn recover(&mut self) -> Result<u64, LogError> {
        self.offset_index.reset()?;
        self.time_index.reset()?;
        self.next_offset = self.base_offset;
        self.max_timestamp = NO_TIMESTAMP;
        self.offset_of_max_timestamp = self.base_offset;
        self.rolling_base_timestamp = None;
        self.bytes_since_last_index_entry = 0;
        let mut pos = 0u64;
        while pos < self.size {
            match self.check_stored_batch(pos)? {
                Ok(h) => {
                    let total = h.total_size() as u64;
                    if pos == 0 {
                        self.rolling_base_timestamp = Some(h.max_timestamp);
                    }
                    self.next_offset = h.next_offset();
                    self.after_append(
                        h.last_offset(),
                        h.max_timestamp,
                        h.last_offset(),
                        pos,
                        total,
                    )?;
                    pos += total;
                }
                Err(reason) => {
                    warn!(segment = %self.log_path.display(), position = pos, %reason,
                        "truncating segment at invalid batch");
                    break;
                }
            }
        }
        let truncated = self.size - pos;
        if truncated > 0 {
            self.log.set_len(pos)?;
            self.log.sync_all()?;
            self.size = pos;
        }
        Ok(truncated)
    }

    /// Appends already validated batches holding offsets
    /// `first_offset..=last_offset`. `max_timestamp` / `offset_of_max_timestamp`
    /// describe the whole set. Adds one index entry (pointing at the start of
    /// the set, keyed by its last offset) once `index.interval.bytes` have
    /// accumulated, like Kafka.
    pub fn append(
        &mut self,
        first_offset: i64,
        last_offset: i64,
        max_timestamp: i64,
        offset_of_max_timestamp: i64,
        records: &[u8],
    ) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        if first_offset < self.next_offset || last_offset < first_offset {
            return Err(LogError::InvalidRecord(format!(
                "append of offsets {first_offset}..={last_offset} at segment end {}",
                self.next_offset
            )));
        }
        if last_offset - self.base_offset > i64::from(i32::MAX) {
            return Err(LogError::InvalidRecord(format!(
                "offset {last_offset} does not fit in segment {}",
                self.base_offset
            )));
        }
        let position = self.size;
        let len = records.len() as u64;
        // Index positions are u32.
        if position + len > u64::from(u32::MAX) {
            return Err(LogError::MessageTooLarge {
                size: records.len(),
                max: crate::log::usize_from(u64::from(u32::MAX) - position),
            });
        }
        // On failure nothing in memory has changed yet; the caller rolls the file back to its mark (a partial
        // write may have extended it) or takes the log offline.
        if let Err(e) = fault::check(Point::SegmentWrite) {
            // Like a real ENOSPC, the injected one leaves part of the batch in the file.
            let _ = self
                .log
                .write_all_at(&records[..records.len() / 2], position);
            return Err(e.into());
        }
        self.log.write_all_at(records, position)?;
        self.size += len;
        self.next_offset = last_offset + 1;
        if position == 0 {
            self.rolling_base_timestamp = Some(max_timestamp);
        }
        self.after_append(
            last_offset,
            max_timestamp,
            offset_of_max_timestamp,
            position,
            len,
        )
    }

    /// Bookkeeping shared by append and recovery.
    fn after_append(
        &mut self,
        last_offset: i64,
        max_timestamp: i64,
        offset_of_max_timestamp: i64,
        position: u64,
        len: u64,
    ) -> Result<(), LogError> {
        if max_timestamp > self.max_timestamp {
            self.max_timestamp = max_timestamp;
            self.offset_of_max_timestamp = offset_of_max_timestamp;
        }
        if self.bytes_since_last_index_entry > self.config.index_interval_bytes as u64 {
            if let Ok(pos) = u32::try_from(position) {
                self.offset_index.append(last_offset, pos)?;
                self.time_index.maybe_append(
                    self.max_timestamp,
                    self.offset_of_max_timestamp,
                    false,
                )?;
            }
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += len;
        Ok(())
    }

    /// Removes every batch with offsets `>= offset`, plus the whole batch
    /// containing `offset` if it is mid-batch (a batch is never split), and
    /// the matching index entries. Returns the bytes removed. The new end
    /// offset is `min(offset, base of the first removed batch)`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<u64, LogError> {
        let Some((pos, h)) = self.find_batch_position(offset)? else {
            return Ok(0);
        };
        let new_next = offset.min(h.base_offset).max(self.base_offset);
        self.log.set_len(pos)?;
        let truncated = self.size - pos;
        self.size = pos;
        self.offset_index.truncate_to(new_next)?;
        self.time_index.truncate_to(new_next)?;
        self.next_offset = if pos == 0 { self.base_offset } else { new_next };
        self.bytes_since_last_index_entry = 0;
        if pos == 0 {
            self.rolling_base_timestamp = None;
        }
        let (_, max_ts, offset_of_max) = self.scan_tail()?;
        self.max_timestamp = max_ts;
        self.offset_of_max_timestamp = offset_of_max;
        Ok(truncated)
    }

    /// The segment's log file (shared), e.g. for a background fsync after a roll.
    pub fn file(&self) -> Arc<File> {
        self.log.clone()
    }

    /// The log file and both index files (shared), for an fsync outside the partition lock.
    pub fn files(&self) -> [Arc<File>; 3] {
        [
            self.log.clone(),
            self.offset_index.file(),
            self.time_index.file(),
        ]
    }

    /// Captures the state to return to if the next append fails.
    pub fn mark(&self) -> SegmentMark {
        SegmentMark {
            size: self.size,
            next_offset: self.next_offset,
            max_timestamp: self.max_timestamp,
            offset_of_max_timestamp: self.offset_of_max_timestamp,
            rolling_base_timestamp: self.rolling_base_timestamp,
            bytes_since_last_index_entry: self.bytes_since_last_index_entry,
            offset_entries: self.offset_index.len(),
            time_entries: self.time_index.len(),
        }
    }

    /// Undoes everything appended since `mark`: the log and index files are cut back to their sizes then and
    /// the in-memory state restored, so neither the files nor memory hold a batch whose append failed. An error
    /// means the files may still hold part of it; the caller must then stop using the segment.
    pub fn rollback(&mut self, mark: &SegmentMark) -> Result<(), LogError> {
        fault::check(Point::Truncate)?;
        self.log.set_len(mark.size)?;
        self.offset_index.truncate_entries(mark.offset_entries)?;
        self.time_index.truncate_entries(mark.time_entries)?;
        self.size = mark.size;
        self.next_offset = mark.next_offset;
        self.max_timestamp = mark.max_timestamp;
        self.offset_of_max_timestamp = mark.offset_of_max_timestamp;
        self.rolling_base_timestamp = mark.rolling_base_timestamp;
        self.bytes_since_last_index_entry = mark.bytes_since_last_index_entry;
        Ok(())
    }

    /// Called when the segment stops being the active one (roll) or the log
    /// closes: records the final max timestamp in the time index (using the
    /// reserved slot). Durability is the caller's business (`flush`).
    pub fn on_become_inactive(&mut self) -> Result<(), LogError> {
        self.time_index
            .maybe_append(self.max_timestamp, self.offset_of_max_timestamp, true)?;
        Ok(())
    }

    /// fsyncs the log file and both indexes.
    pub fn flush(&self) -> Result<(), LogError> {
        fault::check(Point::Fsync)?;
        self.log.sync_data()?;
        self.offset_index.flush()?;
        self.time_index.flush()
    }

    /// Deletes the segment's files (log, indexes, transaction index).
    pub fn delete(self) -> Result<(), LogError> {
        let LogSegment {
            log_path,
            log,
            offset_index,
            time_index,
            ..
        } = self;
        drop(log);
        remove_if_exists(&log_path)?;
        remove_if_exists(&log_path.with_extension("txnindex"))?;
        offset_index.delete()?;
        time_index.delete()
    }

    /// Deletes the files of a segment that was never opened.
    pub fn delete_files(dir: &Path, base_offset: i64) -> Result<(), LogError> {
        remove_if_exists(&log_path(dir, base_offset))?;
        remove_if_exists(&crate::log::txn_index::txn_index_path(dir, base_offset))?;
        remove_if_exists(&index_path(dir, base_offset))?;
        remove_if_exists(&time_index_path(dir, base_offset))
    }

    /// Milliseconds since the epoch of the log file's last modification.
    pub fn last_modified_ms(&self) -> Result<i64, LogError> {
        let modified = self.log.metadata()?.modified()?;
        Ok(modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// The max timestamp of the segment, or its modification time if no
    /// batch had a timestamp (Kafka's `largestTimestamp`; used by retention).
    pub fn largest_timestamp(&self) -> Result<i64, LogError> {
        if self.max_timestamp >= 0 {
            Ok(self.max_timestamp)
        } else {
            self.last_modified_ms()
        }
    }

    /// How long the segment has been open for segment.ms purposes: message
    /// time since the first batch if it had a timestamp (Kafka measures roll
    /// time in message time), else wall-clock time since creation.
    pub fn time_waited_for_roll(&self, now_ms: i64, max_timestamp_in_messages: i64) -> i64 {
        match self.rolling_base_timestamp {
            Some(ts) if ts >= 0 => max_timestamp_in_messages.saturating_sub(ts),
            _ => now_ms.saturating_sub(self.created_ms),
        }
    }

    /// Changes the index interval for future appends.
    pub fn set_index_interval_bytes(&mut self, bytes: usize) {
        self.config.index_interval_bytes = bytes;
    }

    /// First offset this segment may hold.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset following the last batch.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Bytes in the log file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True if the segment holds no batches.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Max timestamp of the first batch, if the segment has one (the cleaner's `max.compaction.lag.ms` clock).
    pub fn first_batch_timestamp(&self) -> Option<i64> {
        self.rolling_base_timestamp
    }

    /// Largest batch max timestamp so far (`NO_TIMESTAMP` if none).
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Offset at which [`LogSegment::max_timestamp`] was first seen.
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }

    /// The offset index.
    pub fn offset_index(&self) -> &OffsetIndex {
        &self.offset_index
    }

    /// The time index.
    pub fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use crate::log::batch::{assign_offsets, validate_producer_records, BatchHeader};
    use crate::log::testutil::{self, Codec};

    const CFG: SegmentConfig = SegmentConfig {
        index_interval_bytes: 100,
        max_index_bytes: 1024,
    };

    /// Appends a batch with the given timestamps at the segment's end.
    fn append(seg: &mut LogSegment, codec: Codec, timestamps: &[i64]) -> (i64, i64) {
        let mut buf = testutil::batch(codec, timestamps, 20);
        let v = validate_producer_records(&buf, 1 << 20, false).unwrap();
        let r = assign_offsets(&mut buf, &v, seg.next_offset(), 3, None);
        seg.append(
            r.first_offset,
            r.last_offset,
            r.max_timestamp,
            r.offset_of_max_timestamp,
            &buf,
        )
        .unwrap();
        (r.first_offset, r.last_offset)
    }

    fn filled(dir: &Path) -> LogSegment {
        let mut seg = LogSegment::create(dir, 50, CFG, 0).unwrap();
        for i in 0..20 {
            append(&mut seg, Codec::None, &[i * 10, i * 10 + 5]);
        }
        seg
    }

    #[test]
    fn file_names_follow_kafka() {
        let dir = Path::new("/x");
        assert_eq!(log_path(dir, 42), Path::new("/x/00000000000000000042.log"));
        assert_eq!(
            index_path(dir, 0),
            Path::new("/x/00000000000000000000.index")
        );
        assert_eq!(
            time_index_path(dir, 7),
            Path::new("/x/00000000000000000007.timeindex")
        );
    }

    #[test]
    fn append_and_find_positions() {
        let dir = tempfile::tempdir().unwrap();
        let seg = filled(dir.path());
        assert_eq!(seg.next_offset(), 90);
        assert!(seg.offset_index().len() > 3, "interval of 100 bytes");
        assert!(seg.time_index().len() > 3);
        for offset in 50..90 {
            let (_, h) = seg.find_batch_position(offset).unwrap().unwrap();
            assert!(h.base_offset <= offset && offset <= h.last_offset());
        }
        assert!(seg.find_batch_position(90).unwrap().is_none());
        assert_eq!(seg.max_timestamp(), 195);
        assert_eq!(seg.offset_of_max_timestamp(), 89);
    }

    #[test]
    fn read_limits() {
        let dir = tempfile::tempdir().unwrap();
        let seg = filled(dir.path());
        let batch_len = seg.find_batch_position(52).unwrap().unwrap().1.total_size();
        let read = |start, max, until, min_one| {
            let r = seg.read_slice(start, max, until, min_one).unwrap().unwrap();
            (r.file.read_all().unwrap(), r.next_offset, r.reached_end)
        };
        // Mid-batch start returns the containing batch.
        let (data, next, end) = read(53, 10_000, i64::MAX, false);
        assert_eq!(BatchHeader::parse(&data).unwrap().base_offset, 52);
        assert!(end);
        assert_eq!(next, 90);
        // max_bytes cuts at batch boundaries.
        let (data, next, end) = read(50, batch_len * 2 + 1, i64::MAX, false);
        assert_eq!(data.len(), batch_len * 2);
        assert_eq!(next, 54);
        assert!(!end);
        // max_offset_exclusive.
        assert_eq!(read(50, 10_000, 56, false).1, 56);
        // min_one_batch.
        assert!(read(50, 1, i64::MAX, false).0.is_empty());
        assert_eq!(read(50, 1, i64::MAX, true).0.len(), batch_len);
        assert!(seg.read_slice(90, 100, i64::MAX, true).unwrap().is_none());
    }

    #[test]
    fn reopen_trusted_and_rebuild_missing_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = filled(dir.path());
        seg.on_become_inactive().unwrap();
        let entries = seg.offset_index().len();
        drop(seg);
        let (seg, truncated) = LogSegment::open(dir.path(), 50, CFG, false, 0).unwrap();
        assert_eq!(truncated, 0);
        assert_eq!(seg.next_offset(), 90);
        assert_eq!(seg.max_timestamp(), 195);
        assert_eq!(seg.offset_index().len(), entries);
        drop(seg);

        std::fs::remove_file(index_path(dir.path(), 50)).unwrap();
        let (seg, truncated) = LogSegment::open(dir.path(), 50, CFG, false, 0).unwrap();
        assert_eq!(truncated, 0);
        assert_eq!(seg.offset_index().len(), entries);
        assert_eq!(seg.next_offset(), 90);
        drop(seg);

        // Garbage index: sanity check fails, rebuilt.
        std::fs::write(index_path(dir.path(), 50), [0xffu8; 24]).unwrap();
        let (seg, _) = LogSegment::open(dir.path(), 50, CFG, false, 0).unwrap();
        assert_eq!(seg.offset_index().len(), entries);
        for offset in 50..90 {
            assert!(seg.find_batch_position(offset).unwrap().is_some());
        }
    }

    #[test]
    fn recover_truncates_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let seg = filled(dir.path());
        let good = seg.size();
        drop(seg);
        let mut half = testutil::batch(Codec::None, &[1, 2, 3], 20);
        half.truncate(half.len() / 2);
        let mut bytes = std::fs::read(log_path(dir.path(), 50)).unwrap();
        bytes.extend(&half);
        std::fs::write(log_path(dir.path(), 50), &bytes).unwrap();
        let (seg, truncated) = LogSegment::open(dir.path(), 50, CFG, true, 0).unwrap();
        assert_eq!(truncated, half.len() as u64);
        assert_eq!(seg.size(), good);
        assert_eq!(seg.next_offset(), 90);
    }

    #[test]
    fn truncate_to_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = filled(dir.path());
        // Mid-batch: the containing batch (70..=71) goes too.
        assert!(seg.truncate_to(71).unwrap() > 0);
        assert_eq!(seg.next_offset(), 70);
        assert_eq!(seg.max_timestamp(), 95);
        assert!(seg.find_batch_position(70).unwrap().is_none());
        assert_eq!(seg.truncate_to(80).unwrap(), 0);
        let (first, _) = append(&mut seg, Codec::Gzip, &[1]);
        assert_eq!(first, 70);
        seg.truncate_to(0).unwrap();
        assert!(seg.is_empty());
        assert_eq!(seg.next_offset(), 50);
        assert_eq!(seg.offset_index().len(), 0);
    }

    #[test]
    fn find_by_timestamp_in_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, CFG, 0).unwrap();
        append(&mut seg, Codec::None, &[100, 300, 200]); // 0..=2
        append(&mut seg, Codec::Snappy, &[250, 400, 350]); // 3..=5
        assert_eq!(
            seg.find_offset_by_timestamp(0, 0).unwrap(),
            Some((0, 100, 3))
        );
        assert_eq!(
            seg.find_offset_by_timestamp(150, 0).unwrap(),
            Some((1, 300, 3))
        );
        assert_eq!(
            seg.find_offset_by_timestamp(301, 0).unwrap(),
            Some((4, 400, 3))
        );
        assert_eq!(
            seg.find_offset_by_timestamp(360, 0).unwrap(),
            Some((4, 400, 3))
        );
        assert_eq!(
            seg.find_offset_by_timestamp(150, 2).unwrap(),
            Some((2, 200, 3))
        );
        assert_eq!(seg.find_offset_by_timestamp(401, 0).unwrap(), None);
        assert_eq!(seg.max_timestamp_record().unwrap(), Some((4, 400, 3)));
    }

    #[test]
    fn delete_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        let seg = LogSegment::create(dir.path(), 5, CFG, 0).unwrap();
        assert!(LogSegment::create(dir.path(), -1, CFG, 0).is_err());
        seg.delete().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
