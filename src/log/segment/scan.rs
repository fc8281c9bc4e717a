//! Reading a segment's batches without loading them: header scanning through a small window, the full CRC check
//! recovery runs on each stored batch, and the searches by offset (fetch) and by timestamp (ListOffsets).
//!
//! A child module of `segment` (an `impl LogSegment` block over its private fields); it only reads, through the
//! shared log file, so it needs nothing beyond the `&self` the caller already holds.

use std::os::unix::fs::FileExt;

use super::{FileSlice, LogSegment, SegmentSlice, CRC_CHUNK};
use crate::log::batch::{
    BatchHeader, TimestampType, BATCH_HEADER_LEN, CURRENT_MAGIC, MIN_BATCH_LENGTH, NO_TIMESTAMP,
};
use crate::log::error::LogError;
use crate::log::marker::MAX_MARKER_BATCH_BYTES;
use crate::log::record::find_record;

/// Iterator over the headers of consecutive batches from a position; yields
/// one error and stops if the framing is broken.
///
/// Headers are read through a small window of the file, so scanning many small batches costs one `pread` per
/// window rather than one per batch.
pub(super) struct BatchScan<'a> {
    segment: &'a LogSegment,
    position: u64,
    done: bool,
    window: Vec<u8>,
    window_start: u64,
}

/// Bytes read at once while scanning headers.
const SCAN_WINDOW: usize = 64 * 1024;

impl BatchScan<'_> {
    /// The raw header bytes at `pos`, from the window (refilled if needed).
    fn header_bytes(&mut self, pos: u64) -> Result<[u8; BATCH_HEADER_LEN], LogError> {
        let end = pos.saturating_add(BATCH_HEADER_LEN as u64);
        let window_end = self.window_start + self.window.len() as u64;
        if pos < self.window_start || end > window_end {
            // After a batch bigger than the window the next header is far away anyway: read just it rather
            // than a window that would mostly be record data. The bounds check before this call guarantees
            // `end <= size`.
            let big_batches = pos.saturating_sub(self.window_start) > SCAN_WINDOW as u64;
            let want = if big_batches {
                BATCH_HEADER_LEN
            } else {
                SCAN_WINDOW
            };
            let len = crate::log::usize_from((self.segment.size - pos).min(want as u64));
            self.window.resize(len, 0);
            self.segment.log.read_exact_at(&mut self.window, pos)?;
            self.window_start = pos;
        }
        let at = crate::log::usize_from(pos - self.window_start);
        let mut raw = [0u8; BATCH_HEADER_LEN];
        raw.copy_from_slice(&self.window[at..at + BATCH_HEADER_LEN]);
        Ok(raw)
    }
}

impl Iterator for BatchScan<'_> {
    type Item = Result<(u64, BatchHeader), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.position >= self.segment.size {
            return None;
        }
        let pos = self.position;
        let header = self
            .segment
            .check_header_bounds(pos)
            .and_then(|()| self.header_bytes(pos))
            .and_then(|raw| self.segment.check_header(pos, &raw));
        match header {
            Ok(h) => {
                let at = self.position;
                self.position += h.total_size() as u64;
                Some(Ok((at, h)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl LogSegment {
    /// Full check of the stored batch at `pos` for recovery. The outer error
    /// is I/O; the inner one describes corruption.
    pub(super) fn check_stored_batch(
        &self,
        pos: u64,
    ) -> Result<Result<BatchHeader, String>, LogError> {
        let remaining = self.size - pos;
        if remaining < BATCH_HEADER_LEN as u64 {
            return Ok(Err(format!("torn batch header ({remaining} bytes)")));
        }
        let mut buf = [0u8; BATCH_HEADER_LEN];
        self.log.read_exact_at(&mut buf, pos)?;
        let h = match BatchHeader::parse(&buf) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if h.magic != CURRENT_MAGIC {
            return Ok(Err(format!("magic {}", h.magic)));
        }
        if h.batch_length < MIN_BATCH_LENGTH {
            return Ok(Err(format!("batch length {}", h.batch_length)));
        }
        let total = h.total_size() as u64;
        if total > remaining {
            return Ok(Err(format!(
                "torn batch: {total} bytes declared, {remaining} present"
            )));
        }
        if h.base_offset < self.next_offset || h.last_offset_delta < 0 {
            return Ok(Err(format!(
                "offsets {}..={} do not follow {}",
                h.base_offset,
                h.last_offset(),
                self.next_offset
            )));
        }
        if h.last_offset() - self.base_offset > i64::from(i32::MAX) {
            return Ok(Err(format!(
                "offset {} outside the segment",
                h.last_offset()
            )));
        }
        if h.compression().is_err() {
            return Ok(Err("unknown compression codec".into()));
        }
        // Stream the CRC so a large batch is never held in memory.
        let mut crc = 0u32;
        let mut at = pos + 21;
        let end = pos + total;
        let mut chunk = vec![0u8; CRC_CHUNK.min(crate::log::usize_from(total))];
        while at < end {
            let n = CRC_CHUNK.min(crate::log::usize_from(end - at));
            let part = chunk.get_mut(..n).unwrap_or_default();
            self.log.read_exact_at(part, at)?;
            crc = crc32c::crc32c_append(crc, part);
            at += n as u64;
        }
        if crc != h.crc {
            return Ok(Err(format!(
                "CRC mismatch ({crc:#010x} != {:#010x})",
                h.crc
            )));
        }
        Ok(Ok(h))
    }

    /// Header of the batch at `pos`, checked to be framed inside the file.
    pub(super) fn read_header_at(&self, pos: u64) -> Result<BatchHeader, LogError> {
        self.check_header_bounds(pos)?;
        let mut buf = [0u8; BATCH_HEADER_LEN];
        self.log.read_exact_at(&mut buf, pos)?;
        self.check_header(pos, &buf)
    }

    fn corrupt_at(&self, pos: u64, msg: String) -> LogError {
        LogError::CorruptMessage(format!(
            "{} at position {pos}: {msg}",
            self.log_path.display()
        ))
    }

    /// A whole header fits between `pos` and the end of the valid data.
    fn check_header_bounds(&self, pos: u64) -> Result<(), LogError> {
        if pos.saturating_add(BATCH_HEADER_LEN as u64) > self.size {
            return Err(self.corrupt_at(pos, "truncated batch header".into()));
        }
        Ok(())
    }

    /// Parses a header read at `pos` and checks its length against the segment.
    fn check_header(
        &self,
        pos: u64,
        raw: &[u8; BATCH_HEADER_LEN],
    ) -> Result<BatchHeader, LogError> {
        let h = BatchHeader::parse(raw)?;
        if h.batch_length < MIN_BATCH_LENGTH || pos + h.total_size() as u64 > self.size {
            return Err(self.corrupt_at(pos, format!("bad batch length {}", h.batch_length)));
        }
        Ok(h)
    }

    pub(super) fn scan_from(&self, position: u64) -> BatchScan<'_> {
        BatchScan {
            segment: self,
            position,
            done: false,
            window: Vec::new(),
            window_start: 0,
        }
    }

    /// Reads a whole batch whose header was obtained by scanning (so it is
    /// known to lie inside the file: the allocation is bounded by real data).
    pub(super) fn read_batch(&self, pos: u64, h: &BatchHeader) -> Result<Vec<u8>, LogError> {
        let mut buf = vec![0u8; h.total_size()];
        self.log.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }

    /// Calls `f` with the header of every batch whose last offset is `>= offset`, in order (the producer state
    /// replay at load: headers read through the scan window), plus the whole batch for control batches of at
    /// most [`MAX_MARKER_BATCH_BYTES`] (transaction markers, whose record says COMMIT or ABORT).
    pub fn for_each_header_from(
        &self,
        offset: i64,
        mut f: impl FnMut(&BatchHeader, Option<&[u8]>),
    ) -> Result<(), LogError> {
        let Some((pos, _)) = self.find_batch_position(offset)? else {
            return Ok(());
        };
        for item in self.scan_from(pos) {
            let (pos, h) = item?;
            if h.is_control() && h.total_size() <= MAX_MARKER_BATCH_BYTES {
                let bytes = self.read_batch(pos, &h)?;
                f(&h, Some(&bytes));
            } else {
                f(&h, None);
            }
        }
        Ok(())
    }

    /// Position and header of the first batch whose last offset is
    /// `>= offset` (the batch containing `offset`, or the next one after a
    /// gap). `None` if the segment has no such batch.
    pub fn find_batch_position(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let start = self.offset_index.lookup(offset).position;
        for item in self.scan_from(u64::from(start)) {
            let (pos, h) = item?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
        }
        Ok(None)
    }

    /// Reads whole batches starting with the one containing `start_offset`,
    /// stopping before a batch whose base offset is `>= max_offset_exclusive`
    /// or that would exceed `max_bytes` (unless it is the first batch and
    /// `min_one_batch` is set, KIP-74). `None` if no batch has offsets
    /// `>= start_offset`.
    /// Locates whole batches from the one containing `start_offset`, stopping before a batch whose base offset
    /// is `>= max_offset_exclusive` or that would exceed `max_bytes` (unless it is the first and
    /// `min_one_batch`). Returns the file range without reading it, so the caller can send it with
    /// `sendfile`; `None` if `start_offset` is past this segment.
    pub fn read_slice(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one_batch: bool,
    ) -> Result<Option<SegmentSlice>, LogError> {
        let Some((start, _)) = self.find_batch_position(start_offset)? else {
            return Ok(None);
        };
        let mut end = start;
        let mut next_offset = start_offset;
        let mut reached_end = true;
        for item in self.scan_from(start) {
            let (pos, h) = item?;
            let size = h.total_size() as u64;
            let taken = end - start;
            if h.base_offset >= max_offset_exclusive
                || (taken + size > max_bytes as u64 && !(taken == 0 && min_one_batch))
            {
                reached_end = false;
                break;
            }
            end = pos + size;
            next_offset = h.next_offset();
        }
        Ok(Some(SegmentSlice {
            file: FileSlice {
                file: self.log.clone(),
                position: start,
                len: crate::log::usize_from(end - start),
            },
            next_offset,
            reached_end,
        }))
    }

    /// First record with timestamp `>= timestamp` and offset
    /// `>= starting_offset`, as `(offset, timestamp, leader_epoch)`. The time
    /// index gives the starting batch; batches are then skipped by header max
    /// timestamp and the matching batch's records are walked (decompressing
    /// if needed; LogAppendTime batches are answered from the header).
    pub fn find_offset_by_timestamp(
        &self,
        timestamp: i64,
        starting_offset: i64,
    ) -> Result<Option<(i64, i64, i32)>, LogError> {
        let entry = self.time_index.lookup(timestamp);
        let start = self
            .offset_index
            .lookup(entry.offset.max(starting_offset))
            .position;
        for item in self.scan_from(u64::from(start)) {
            let (pos, h) = item?;
            if h.last_offset() < starting_offset || h.max_timestamp < timestamp {
                continue;
            }
            let batch = self.batch_for_search(pos, &h)?;
            if let Some((offset, ts)) =
                find_record(&batch, &h, |o, t| t >= timestamp && o >= starting_offset)?
            {
                return Ok(Some((offset, ts, h.partition_leader_epoch)));
            }
        }
        Ok(None)
    }

    /// The first record carrying this segment's max timestamp, as
    /// `(offset, timestamp, leader_epoch)` (ListOffsets MAX_TIMESTAMP).
    pub fn max_timestamp_record(&self) -> Result<Option<(i64, i64, i32)>, LogError> {
        if self.size == 0 || self.max_timestamp == NO_TIMESTAMP {
            return Ok(None);
        }
        let target = self.max_timestamp;
        let start = self
            .offset_index
            .lookup(self.offset_of_max_timestamp)
            .position;
        for item in self.scan_from(u64::from(start)) {
            let (pos, h) = item?;
            if h.max_timestamp != target {
                continue;
            }
            let batch = self.batch_for_search(pos, &h)?;
            // A compressed header could claim a max no record has; then the
            // batch itself is the best answer.
            let offset =
                find_record(&batch, &h, |_, t| t == target)?.map_or(h.base_offset, |(o, _)| o);
            return Ok(Some((offset, target, h.partition_leader_epoch)));
        }
        Ok(None)
    }

    /// LogAppendTime batches are answered from the header alone, so their
    /// bytes are not read.
    fn batch_for_search(&self, pos: u64, h: &BatchHeader) -> Result<Vec<u8>, LogError> {
        if h.timestamp_type() == TimestampType::LogAppendTime {
            Ok(Vec::new())
        } else {
            self.read_batch(pos, h)
        }
    }
}
