//! The log's read side: batches for fetches (as bytes or as file ranges for `sendfile`) and the searches
//! behind ListOffsets (by timestamp, largest timestamp). An `impl Log` block over the fields declared in
//! `log.rs`; readers hold the partition's read lock, so reads never change the log.

use bytes::{Bytes, BytesMut};

use super::batch::NO_TIMESTAMP;
use super::error::LogError;
use super::log::Log;
use super::segment::{FileSlice, LogSegment};

impl Log {
    /// Reads whole batches from the one containing `start_offset` (even if
    /// it starts earlier), never including a batch whose base offset is
    /// `>= max_offset_exclusive` (the high watermark for consumers), crossing
    /// segment boundaries, up to `max_bytes`; with `min_one_batch` a first
    /// batch larger than `max_bytes` is returned whole (KIP-74).
    /// `start_offset == log end offset` gives empty bytes; outside
    /// `[log start, log end]` is `OffsetOutOfRange`.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one_batch: bool,
    ) -> Result<Bytes, LogError> {
        let slices =
            self.read_slices(start_offset, max_bytes, max_offset_exclusive, min_one_batch)?;
        // The common case is a single segment: hand its buffer over as is.
        if slices.len() == 1 {
            return Ok(Bytes::from(slices[0].read_all()?));
        }
        let total = slices.iter().map(|s| s.len).sum();
        let mut out = BytesMut::with_capacity(total);
        for slice in &slices {
            out.extend_from_slice(&slice.read_all()?);
        }
        Ok(out.freeze())
    }

    /// Like [`Log::read`], but returns the file ranges holding the batches instead of copying them, so a
    /// fetch can `sendfile` them. Empty ranges are left out; an empty vector means no data.
    pub fn read_slices(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one_batch: bool,
    ) -> Result<Vec<FileSlice>, LogError> {
        self.read_slices_to(start_offset, max_bytes, max_offset_exclusive, min_one_batch)
            .map(|(parts, _)| parts)
    }

    /// [`Log::read_slices`], also returning the offset after the last batch read (`start_offset` if none): the
    /// upper bound of a read_committed fetch's aborted transactions.
    pub fn read_slices_to(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one_batch: bool,
    ) -> Result<(Vec<FileSlice>, i64), LogError> {
        self.check_online()?;
        let leo = self.log_end_offset();
        if start_offset < self.log_start_offset || start_offset > leo {
            return Err(self.out_of_range(start_offset));
        }
        let mut parts = Vec::new();
        if start_offset == leo || start_offset >= max_offset_exclusive {
            return Ok((parts, start_offset));
        }
        let mut total = 0usize;
        let mut offset = start_offset;
        for seg in self.segments_from(start_offset) {
            let Some(r) = seg.read_slice(
                offset.max(seg.base_offset()),
                max_bytes.saturating_sub(total),
                max_offset_exclusive,
                min_one_batch && total == 0,
            )?
            else {
                continue;
            };
            total += r.file.len;
            offset = r.next_offset;
            if r.file.len > 0 {
                parts.push(r.file);
            }
            if !r.reached_end {
                break;
            }
        }
        Ok((parts, offset))
    }

    /// First offset `>= log start offset` whose record timestamp is
    /// `>= timestamp` (ListOffsets by timestamp), as
    /// `(offset, timestamp, leader_epoch)`; `None` if there is none.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64, i32)>, LogError> {
        self.check_online()?;
        for seg in self.segments() {
            if seg.max_timestamp() < timestamp || seg.next_offset() <= self.log_start_offset {
                continue;
            }
            if let Some(found) = seg.find_offset_by_timestamp(timestamp, self.log_start_offset)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (ListOffsets `MAX_TIMESTAMP`),
    /// first one on ties, as `(offset, timestamp, leader_epoch)`; `None` if
    /// no record has a timestamp. Like Kafka, this is not limited to offsets
    /// above the log start offset.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64, i32)>, LogError> {
        self.check_online()?;
        let mut best: Option<&LogSegment> = None;
        for seg in self.segments() {
            if seg.max_timestamp() != NO_TIMESTAMP
                && best.is_none_or(|b| seg.max_timestamp() > b.max_timestamp())
            {
                best = Some(seg);
            }
        }
        match best {
            Some(seg) => seg.max_timestamp_record(),
            None => Ok(None),
        }
    }
}
