//! [`Log`]: one partition's log, a directory of segments (Kafka's
//! `UnifiedLog` + `LocalLog`, without tiered storage). Idempotent producer
//! state lives in the `producers` field, checked in the append path; its
//! loading and snapshots are in `producer_log.rs`.
//!
//! Owns: the partition directory and everything in it except files other
//! components put there (only segment files, our checkpoints and Kafka-style
//! stray files are touched); segment lifecycle (roll, truncate, delete);
//! offset assignment for leader appends; the log start offset, recovery point
//! and clean-shutdown marker; reads, timestamp searches and flush policy.
//! Opening and crash recovery live in `loader.rs`, retention and DeleteRecords
//! in `retention.rs` (both `impl Log` blocks over the fields declared here).
//! Callers own synchronisation (`&mut self` for writes, `&self` for reads),
//! the high watermark, and mapping [`LogError`] to protocol errors.
use std::collections::BTreeMap;
use std::fs;
use std::iter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use super::batch::{
    assign_offsets, validate_follower_records, validate_producer_records, TimestampType,
    ValidatedBatch, ValidatedRecords, NO_TIMESTAMP,
};
use super::checkpoint::{self, Checkpoint, OffsetCheckpoints};
use super::config::LogConfig;
use super::error::LogError;
use super::flush::{LogHealth, RollFlush};
use super::producer_log::{aborted_entry, AppendOrigin, ProducerAppend};
use super::producer_state::{CompletedTxn, ProducerStateManager};
use super::segment::SegmentMark;
use super::segment::{LogSegment, SegmentConfig};
use super::txn_index::{delete_txn_index, txn_index_path, TxnIndex};

/// Marker written by [`Log::close`]; its presence at open means the files are
/// consistent and need no recovery.
pub const CLEAN_SHUTDOWN_FILE: &str = ".vltava_cleanshutdown";
/// Text file holding the recovery point: every offset below it is fsynced.
pub const RECOVERY_POINT_FILE: &str = "recovery-point";
/// Text file holding the log start offset (raised by DeleteRecords/retention).
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first appended record.
    pub first_offset: i64,
    /// Offset of the last appended record.
    pub last_offset: i64,
    /// Largest timestamp of the appended batches.
    pub max_timestamp: i64,
    /// Offset of the record with `max_timestamp` (batch-level for compressed
    /// batches).
    pub offset_of_max_timestamp: i64,
    /// The broker time stamped on the batches, or -1 unless the topic uses
    /// LogAppendTime (what Produce responses return).
    pub log_append_time: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
    /// Number of records appended.
    pub record_count: i64,
    /// Number of batches appended.
    pub batch_count: usize,
    /// Bytes appended.
    pub size_bytes: usize,
}

/// One partition's log.
#[derive(Debug)]
pub struct Log {
    pub(super) dir: PathBuf,
    pub(super) config: LogConfig,
    /// Inactive segments by base offset, all below `active`'s base.
    pub(super) older: BTreeMap<i64, LogSegment>,
    /// The segment appends go to. Kept outside the map so there is always one
    /// without an `Option`.
    pub(super) active: LogSegment,
    pub(super) log_start_offset: i64,
    /// Offsets below this are known to be fsynced.
    pub(super) recovery_point: i64,
    /// The background fsync that follows segment rolls; what it made durable is folded into `recovery_point`
    /// (and its checkpoint file) on the next flush check, under the caller's lock.
    pub(super) roll_flush: Arc<RollFlush>,
    /// The partition directory, held open so fsyncing it never needs a new file descriptor.
    pub(super) dir_file: Arc<fs::File>,
    pub(super) last_flush_ms: i64,
    /// Latest `now_ms` passed in by the caller; the clock for operations
    /// whose signature has no time (segment creation time on truncation).
    pub(super) last_seen_ms: i64,
    /// Offline once an I/O failure left the log unable to vouch for its files (see `flush.rs`).
    pub(super) health: Arc<LogHealth>,
    /// Bumped by every truncation, so a flush that raced with one does not move the recovery point.
    pub(super) generation: u64,
    /// Segment files created or removed so far, and how many of those changes a directory fsync covers.
    pub(super) dir_changes: u64,
    pub(super) dir_synced: u64,
    /// The recovery-point and log-start-offset files: memory moves under the caller's lock, the files are
    /// written after it by [`OffsetCheckpoints::sync`] (see `checkpoint.rs`).
    pub(super) checkpoints: Arc<OffsetCheckpoints>,
    /// Idempotent producers' last batches (see `producer_state.rs`; rebuilt at open by `producer_log.rs`).
    pub(super) producers: ProducerStateManager,
    /// Aborted transactions per segment base offset, only segments that have some (see `txn_index.rs`;
    /// loaded and re-completed with the producer state by `producer_log.rs`).
    pub(super) txn_indexes: BTreeMap<i64, TxnIndex>,
}

pub(super) fn segment_config(config: &LogConfig) -> SegmentConfig {
    SegmentConfig {
        index_interval_bytes: config.index_interval_bytes,
        max_index_bytes: config.segment_index_bytes,
    }
}

impl Log {
    /// Validates a Produce request's records for this partition and appends
    /// them with [`Log::append_validated`]. Validation decompresses, so the
    /// broker validates before taking its lock and calls `append_validated`.
    pub fn append_as_leader(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.check_online()?;
        let validated = validate_producer_records(
            records,
            self.config.max_message_bytes,
            self.config.compacted,
        )?;
        self.append_validated(records, &validated, leader_epoch, now_ms)
    }

    /// Appends records already checked by `validate_producer_records`:
    /// re-checks only what is cheap and may have changed (sizes, timestamp
    /// window), assigns offsets from the log end offset, stamps `leader_epoch`
    /// (and the append time under LogAppendTime) and appends. `records` is
    /// rewritten in place; nothing is decompressed.
    pub fn append_validated(
        &mut self,
        records: &mut [u8],
        validated: &ValidatedRecords,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.append_validated_from(
            records,
            validated,
            leader_epoch,
            now_ms,
            AppendOrigin::Client,
        )
    }

    /// [`Log::append_validated`] for an origin: a coordinator's own transactional batches skip the duplicate
    /// and sequence checks (Kafka's `AppendOrigin.COORDINATOR`), keeping the epoch check.
    pub fn append_validated_from(
        &mut self,
        records: &mut [u8],
        validated: &ValidatedRecords,
        leader_epoch: i32,
        now_ms: i64,
        origin: AppendOrigin,
    ) -> Result<AppendInfo, LogError> {
        self.check_online()?;
        if validated.total_bytes != records.len() {
            return Err(LogError::InvalidRecord(
                "records changed since validation".into(),
            ));
        }
        let max = self.config.max_message_bytes;
        if let Some(b) = validated
            .batches
            .iter()
            .find(|b| b.header.total_size() > max)
        {
            return Err(LogError::MessageTooLarge {
                size: b.header.total_size(),
                max,
            });
        }
        self.check_set_size(records.len())?;
        if self.config.message_timestamp_type == TimestampType::CreateTime {
            self.check_timestamps(validated, now_ms)?;
        }
        let producer = self.check_producer_append(validated, origin)?;
        if let ProducerAppend::Duplicate(d) = producer {
            // Kafka answers a retried batch with where it already is, and appends nothing.
            return Ok(AppendInfo {
                first_offset: d.first_offset(),
                last_offset: d.last_offset,
                max_timestamp: d.timestamp,
                offset_of_max_timestamp: d.last_offset,
                log_append_time: NO_TIMESTAMP,
                log_start_offset: self.log_start_offset,
                record_count: 0,
                batch_count: 0,
                size_bytes: 0,
            });
        }
        self.append_checked(records, validated, producer, leader_epoch, now_ms)
            .map(|(info, _)| info)
    }

    /// The append itself, after every check: assigns offsets from the log end, rolls if needed, writes the
    /// segment and records the producer's batch or marker.
    pub(super) fn append_checked(
        &mut self,
        records: &mut [u8],
        validated: &ValidatedRecords,
        producer: ProducerAppend,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<(AppendInfo, Option<CompletedTxn>), LogError> {
        let first_offset = self.log_end_offset();
        let last_offset = first_offset
            .checked_add(validated.offset_count - 1)
            .ok_or_else(|| LogError::InvalidRecord("offsets would overflow".into()))?;
        let log_append_time =
            (self.config.message_timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let max_ts_in_messages = log_append_time.unwrap_or(validated.max_timestamp);
        self.maybe_roll(
            records.len(),
            max_ts_in_messages,
            first_offset,
            last_offset,
            now_ms,
        )?;

        let assigned = assign_offsets(
            records,
            validated,
            first_offset,
            leader_epoch,
            log_append_time,
        );
        let mark = self.active.mark();
        if let Err(e) = self.active.append(
            assigned.first_offset,
            assigned.last_offset,
            assigned.max_timestamp,
            assigned.offset_of_max_timestamp,
            records,
        ) {
            return Err(self.undo_append(&mark, e));
        }
        let mut completed = None;
        match producer {
            ProducerAppend::Batch(pb) => {
                let mut pb = pb.at_offset(assigned.first_offset);
                pb.max_timestamp = assigned.max_timestamp;
                self.producers.update(&pb);
            }
            ProducerAppend::Marker(mut m) => {
                m.offset = assigned.first_offset;
                completed = self.producers.update_marker(&m);
                if let Some(c) = completed.filter(|c| c.aborted) {
                    let entry = aborted_entry(&self.producers, &c);
                    self.index_aborted(entry);
                }
            }
            ProducerAppend::Plain | ProducerAppend::Duplicate(_) => {}
        }
        let info = AppendInfo {
            first_offset: assigned.first_offset,
            last_offset: assigned.last_offset,
            max_timestamp: assigned.max_timestamp,
            offset_of_max_timestamp: assigned.offset_of_max_timestamp,
            log_append_time: log_append_time.unwrap_or(NO_TIMESTAMP),
            log_start_offset: self.log_start_offset,
            record_count: validated.record_count,
            batch_count: validated.batches.len(),
            size_bytes: records.len(),
        };
        Ok((info, completed))
    }

    /// Appends batches replicated from the leader, keeping their offsets and
    /// leader epochs. Only framing, magic and CRC are checked; the first
    /// batch must start at or after the log end offset and batches must be
    /// increasing (gaps, as left by compaction, are allowed). A fetch larger
    /// than a segment is split at batch boundaries across segments.
    pub fn append_as_follower(
        &mut self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.check_online()?;
        let validated = validate_follower_records(records)?;
        let (Some(first), Some(last)) = (validated.batches.first(), validated.batches.last())
        else {
            return Err(LogError::InvalidRecord(
                "record set contains no batches".into(),
            ));
        };
        let first_offset = first.header.base_offset;
        let last_offset = last.header.last_offset();
        let leo = self.log_end_offset();
        if first_offset < leo {
            return Err(LogError::InvalidRecord(format!(
                "follower append at offset {first_offset} is below the log end offset {leo}"
            )));
        }
        for b in &validated.batches {
            self.check_set_size(b.header.total_size())?;
        }
        let (mut max_ts, mut offset_of_max) = (NO_TIMESTAMP, first_offset);
        for b in &validated.batches {
            if b.header.max_timestamp > max_ts {
                max_ts = b.header.max_timestamp;
                offset_of_max = b.header.last_offset();
            }
        }

        // Group batches into chunks that each fit in one segment.
        let max_chunk = self.max_segment_bytes();
        let mut rest = validated.batches.as_slice();
        while !rest.is_empty() {
            let mut size = 0u64;
            let count = rest
                .iter()
                .take_while(|b| {
                    size += b.header.total_size() as u64;
                    size <= max_chunk
                })
                .count()
                .max(1);
            let (chunk, tail) = rest.split_at(count.min(rest.len()));
            self.append_follower_chunk(records, chunk, now_ms)?;
            rest = tail;
        }
        self.record_producer_batches(records, &validated);
        Ok(AppendInfo {
            first_offset,
            last_offset,
            max_timestamp: max_ts,
            offset_of_max_timestamp: offset_of_max,
            log_append_time: NO_TIMESTAMP,
            log_start_offset: self.log_start_offset,
            record_count: validated.record_count,
            batch_count: validated.batches.len(),
            size_bytes: records.len(),
        })
    }

    /// Appends consecutive validated batches of `records` that fit in one
    /// segment, rolling first if needed.
    fn append_follower_chunk(
        &mut self,
        records: &[u8],
        chunk: &[ValidatedBatch],
        now_ms: i64,
    ) -> Result<(), LogError> {
        let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
            return Ok(());
        };
        let first_offset = first.header.base_offset;
        let last_offset = last.header.last_offset();
        if last_offset - first_offset > i64::from(i32::MAX) {
            return Err(LogError::InvalidRecord(format!(
                "follower append spans offsets {first_offset}..={last_offset}, too many for one segment"
            )));
        }
        let (mut max_ts, mut offset_of_max) = (NO_TIMESTAMP, first_offset);
        for b in chunk {
            if b.header.max_timestamp > max_ts {
                max_ts = b.header.max_timestamp;
                offset_of_max = b.header.last_offset();
            }
        }
        let end = last.position + last.header.total_size();
        let bytes = records.get(first.position..end).unwrap_or_default();
        self.maybe_roll(bytes.len(), max_ts, first_offset, last_offset, now_ms)?;
        let mark = self.active.mark();
        self.active
            .append(first_offset, last_offset, max_ts, offset_of_max, bytes)
            .map_err(|e| self.undo_append(&mark, e))
    }

    /// After a failed append to the active segment: cuts its files and state back to `mark`, so no byte of the
    /// failed batch stays where a later append would make it readable (a retrying producer would otherwise
    /// write it twice). Returns the error to answer; if the rollback fails too, the log goes offline.
    fn undo_append(&mut self, mark: &SegmentMark, cause: LogError) -> LogError {
        match self.active.rollback(mark) {
            Ok(()) => {
                if matches!(cause, LogError::Io(_)) {
                    warn!(dir = %self.dir.display(), error = %cause, "append failed; segment rolled back");
                }
                cause
            }
            Err(e) => self.go_offline(format!(
                "append failed ({cause}) and rolling the segment back failed too ({e})"
            )),
        }
    }

    /// A record set larger than a segment could never be appended (Kafka's
    /// `RecordBatchTooLargeException`).
    fn check_set_size(&self, size: usize) -> Result<(), LogError> {
        let max = self.max_segment_bytes();
        if size as u64 > max {
            return Err(LogError::RecordListTooLarge {
                size,
                max: usize::try_from(max).unwrap_or(usize::MAX),
            });
        }
        Ok(())
    }

    /// `segment.bytes`, capped so file positions fit the 32-bit index format.
    fn max_segment_bytes(&self) -> u64 {
        self.config.segment_bytes.min(i32::MAX as u64)
    }

    /// CreateTime range check against `message.timestamp.{before,after}.max.ms`
    /// (KIP-937). Records without a timestamp (-1) are exempt, as in Kafka.
    fn check_timestamps(&self, validated: &ValidatedRecords, now_ms: i64) -> Result<(), LogError> {
        let before = self.config.message_timestamp_before_max_ms;
        let after = self.config.message_timestamp_after_max_ms;
        for b in &validated.batches {
            let Some((min, max)) = b.timestamp_bounds else {
                continue;
            };
            for ts in [min, max] {
                if now_ms.saturating_sub(ts) > before || ts.saturating_sub(now_ms) > after {
                    return Err(LogError::InvalidTimestamp(format!(
                        "timestamp {ts} in batch at position {} is out of range: it must be \
                         within [{}, {}]",
                        b.position,
                        now_ms.saturating_sub(before),
                        now_ms.saturating_add(after)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Rolls before an append of `size` bytes spanning `first..=last` if the
    /// active segment is full by bytes, old by `segment.ms`, has a full index,
    /// or cannot represent `last` as a 32-bit relative offset.
    fn maybe_roll(
        &mut self,
        size: usize,
        max_ts_in_messages: i64,
        first_offset: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        let seg = &self.active;
        let offset_overflow = last_offset - seg.base_offset() > i64::from(i32::MAX);
        let full = !seg.is_empty()
            && (seg.size() + size as u64 > self.max_segment_bytes()
                || seg.time_waited_for_roll(now_ms, max_ts_in_messages) > self.config.segment_ms
                || seg.offset_index().is_full()
                || seg.time_index().is_full());
        if offset_overflow || full {
            self.roll(first_offset, now_ms)?;
        }
        Ok(())
    }

    /// Makes a new active segment at `new_base` (>= the log end offset).
    pub(super) fn roll(&mut self, new_base: i64, now_ms: i64) -> Result<(), LogError> {
        let seg_cfg = segment_config(&self.config);
        if self.active.is_empty() {
            if self.active.base_offset() == new_base {
                return Ok(());
            }
            // An empty segment is useless once a later one exists.
            let fresh = LogSegment::create(&self.dir, new_base, seg_cfg, now_ms)?;
            self.dir_changes += 1;
            std::mem::replace(&mut self.active, fresh).delete()?;
            return Ok(());
        }
        // A roll happens inside an append, under the partition lock, so the closed segments are fsynced in the
        // background (like Kafka's asynchronous flush after roll; see `RollFlush`) rather than here, where a 1 GiB
        // fsync would stall producers and fetchers. Once they are durable, the next flush check moves the recovery
        // point to `new_base`, which keeps crash recovery to the active segment. A failed fsync there takes the log
        // offline, like any failed fsync. The directory is synced too so the new segment file survives a power loss.
        self.active.on_become_inactive()?;
        let fresh = LogSegment::create(&self.dir, new_base, seg_cfg, now_ms)?;
        self.dir_changes += 1;
        let old = std::mem::replace(&mut self.active, fresh);
        info!(dir = %self.dir.display(), old_base = old.base_offset(), new_base, "rolled segment");
        self.older.insert(old.base_offset(), old);
        // Kafka's snapshot at every roll: the state of all batches below `new_base`. Written (a small buffered
        // write) here, fsynced with the closed segments by the background roll fsync, so a restart replays at
        // most the segments after it. A torn file fails its CRC at load and an older snapshot is used.
        let snapshot = self.write_producer_snapshot(new_base);
        // Segments an earlier roll fsync already covered are left out: each closed segment is fsynced about once.
        let floor = self
            .roll_flush
            .durable(self.generation)
            .map_or(self.recovery_point, |d| d.max(self.recovery_point));
        let unsynced: Vec<Arc<fs::File>> = self
            .older
            .values()
            .filter(|s| s.next_offset() > floor)
            .flat_map(|s| s.files())
            .chain(snapshot)
            .collect();
        self.roll_flush.request(unsynced, new_base, self.generation);
        Ok(())
    }

    /// Moves the log start offset; its file is written by the next [`Log::sync_checkpoints`] (or the
    /// caller's [`OffsetCheckpoints::sync`] after releasing its lock). Retention writes it before deleting
    /// segments (see `retention.rs`).
    pub(super) fn set_log_start_offset(&mut self, offset: i64) {
        self.log_start_offset = offset;
        self.checkpoints.want(Checkpoint::LogStart, offset);
    }

    /// The log's checkpoint files, to sync after releasing the lock.
    pub fn checkpoints(&self) -> Arc<OffsetCheckpoints> {
        self.checkpoints.clone()
    }

    /// Writes the checkpoint files now (for callers that hold the log without a lock to release: close, tests).
    pub fn sync_checkpoints(&self) -> Result<(), LogError> {
        self.checkpoints.sync()
    }

    /// The checkpoint sync of a truncation. A lowered recovery point that cannot be written at all (unlike a raised
    /// one, which may lag) takes the log offline too: appends must not reuse the truncated offsets while the file
    /// still claims they were fsynced.
    fn sync_checkpoints_after_truncation(&self) -> Result<(), LogError> {
        match self.checkpoints.sync() {
            Err(LogError::Io(e)) => Err(self.go_offline(format!(
                "cannot write the checkpoints after a truncation: {e}"
            ))),
            other => other,
        }
    }

    /// All segments, oldest first.
    pub(super) fn segments(&self) -> impl Iterator<Item = &LogSegment> {
        self.older.values().chain(iter::once(&self.active))
    }

    /// Segments from the one that would contain `offset` onward.
    pub(super) fn segments_from(&self, offset: i64) -> impl Iterator<Item = &LogSegment> {
        let older = if offset >= self.active.base_offset() {
            // Skip every older segment.
            self.older.range(i64::MAX..)
        } else {
            let floor = self
                .older
                .range(..=offset)
                .next_back()
                .map_or(i64::MIN, |(b, _)| *b);
            self.older.range(floor..)
        };
        older.map(|(_, s)| s).chain(iter::once(&self.active))
    }

    pub(super) fn out_of_range(&self, offset: i64) -> LogError {
        LogError::OffsetOutOfRange {
            offset,
            log_start: self.log_start_offset,
            log_end: self.log_end_offset(),
        }
    }

    /// Removes all offsets `>= offset` (follower truncation). A batch is never
    /// split: if `offset` is mid-batch the whole batch goes and the log end
    /// offset becomes that batch's base. Below the first segment the log is
    /// emptied and restarted at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        self.check_online()?;
        if offset < 0 {
            return Err(self.out_of_range(offset));
        }
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        // A background roll fsync or a flush in flight must not later claim offsets that are about to disappear.
        self.generation += 1;
        self.roll_flush.truncated(self.generation, offset);
        let first_base = self
            .older
            .first_key_value()
            .map_or(self.active.base_offset(), |(b, _)| *b);
        if offset < first_base {
            return self.truncate_fully_and_start_at(offset);
        }
        if self.active.base_offset() > offset {
            // The new active segment is the older one containing `offset`;
            // everything after it goes.
            let newer: Vec<i64> = self.older.range(offset + 1..).map(|(b, _)| *b).collect();
            for base in newer {
                if let Some(seg) = self.older.remove(&base) {
                    seg.delete()?;
                }
            }
            if let Some((_, seg)) = self.older.pop_last() {
                std::mem::replace(&mut self.active, seg).delete()?;
            }
        }
        self.active.truncate_to(offset)?;
        let leo = self.log_end_offset();
        if self.log_start_offset > leo {
            self.set_log_start_offset(leo);
        }
        if self.recovery_point > leo {
            self.set_recovery_point(leo);
        }
        self.reload_producer_state_after_truncation()?;
        // Written here, under the lock, on purpose: a lowered recovery point must be on disk before any append
        // reuses the truncated offsets, or a crash could make the loader trust segments that were never fsynced.
        // Truncation is rare (followers only).
        self.sync_checkpoints_after_truncation()
    }

    /// Deletes every segment and restarts the log empty at `offset`, which
    /// becomes the log start offset.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        self.check_online()?;
        if offset < 0 {
            return Err(self.out_of_range(offset));
        }
        self.generation += 1;
        self.roll_flush.truncated(self.generation, offset);
        self.dir_changes += 1;
        while let Some((_, seg)) = self.older.pop_first() {
            seg.delete()?;
        }
        // Empty the active segment in place: if it already sits at `offset`
        // it is reused, otherwise it is replaced (its files have other names).
        self.active.truncate_to(self.active.base_offset())?;
        if self.active.base_offset() != offset {
            let fresh = LogSegment::create(
                &self.dir,
                offset,
                segment_config(&self.config),
                self.last_seen_ms,
            )?;
            std::mem::replace(&mut self.active, fresh).delete()?;
        }
        self.set_log_start_offset(offset);
        self.set_recovery_point(offset);
        self.producers.clear();
        self.txn_indexes.clear();
        // The active segment may have been emptied in place, keeping its name.
        delete_txn_index(&txn_index_path(&self.dir, self.active.base_offset()))?;
        super::producer_state::delete_snapshots(&self.dir, |_| true)?;
        // Under the lock for the same reason as in `truncate_to`.
        self.sync_checkpoints_after_truncation()
    }

    /// Replaces the configuration; new index settings apply to new segments
    /// (the index interval also to the active one).
    pub fn update_config(&mut self, config: LogConfig) {
        self.active
            .set_index_interval_bytes(config.index_interval_bytes);
        self.config = config;
    }

    /// Flushes everything and writes the clean-shutdown marker so the next
    /// open skips recovery.
    /// An offline log is not marked clean: its files may disagree with what it acknowledged, so the next open
    /// must recover them.
    pub fn close(mut self) -> Result<(), LogError> {
        self.check_online()?;
        self.active.on_become_inactive()?;
        // The producer state at the log end, so the next open replays nothing.
        self.write_final_producer_snapshot()?;
        self.flush()?;
        // The files must hold what memory says before the marker claims a clean shutdown.
        self.checkpoints.sync()?;
        checkpoint::write_marker(&self.dir, CLEAN_SHUTDOWN_FILE)
    }

    /// Closes the files and removes the whole partition directory.
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir)?;
        match dir.parent() {
            Some(parent) => checkpoint::sync_dir(parent),
            None => Ok(()),
        }
    }

    /// First offset that may be read.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.active.next_offset()
    }

    /// Offsets below this are durable on disk.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Total bytes of all segment log files.
    pub fn size_bytes(&self) -> u64 {
        self.segments().map(LogSegment::size).sum()
    }

    /// Number of segments (at least 1).
    pub fn num_segments(&self) -> usize {
        self.older.len() + 1
    }

    /// Base offsets of all segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments().map(LogSegment::base_offset).collect()
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use crate::log::batch::BatchHeader;
    use crate::log::segment::{index_path, log_path, time_index_path};
    use crate::log::testutil::{
        self, bases, cfg, filled, fix_crc, headers, produce, produce_at, read_all, small_segments,
        Codec, NOW,
    };

    #[test]
    fn assigns_offsets_across_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), cfg(), NOW).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
        let a = produce(&mut log, Codec::None, &[1, 3, 2]);
        assert_eq!((a.first_offset, a.last_offset), (0, 2));
        assert_eq!(
            (a.record_count, a.batch_count, a.log_append_time),
            (3, 1, -1)
        );
        assert_eq!((a.max_timestamp, a.offset_of_max_timestamp), (3, 1));
        let b = produce(&mut log, Codec::Gzip, &[4, 5]);
        assert_eq!((b.first_offset, b.last_offset), (3, 4));
        assert_eq!(log.log_end_offset(), 5);
        let records = testutil::decode(&read_all(&log));
        assert_eq!(
            records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        assert!(records.iter().all(|r| r.partition_leader_epoch == 5));
    }

    #[test]
    fn stores_compressed_batches_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), cfg(), NOW).unwrap();
        for codec in Codec::ALL {
            let original = testutil::batch(codec, &[10, 30, 20], 100);
            let mut buf = original.clone();
            let info = log.append_as_leader(&mut buf, 9, NOW).unwrap();
            let stored = log
                .read(info.first_offset, usize::MAX, i64::MAX, false)
                .unwrap();
            assert_eq!(stored.len(), original.len(), "{codec:?}");
            assert_eq!(&stored[..8], &info.first_offset.to_be_bytes());
            assert_eq!(&stored[8..12], &original[8..12]);
            assert_eq!(&stored[12..16], &9i32.to_be_bytes());
            assert_eq!(&stored[16..], &original[16..], "{codec:?}");
        }
    }

    #[test]
    fn reads_batches_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), small_segments());
        assert!(log.num_segments() >= 4, "{}", log.num_segments());
        assert_eq!(log.log_end_offset(), 40);
        let all = read_all(&log);
        assert_eq!(bases(&all), (0..40).step_by(2).collect::<Vec<_>>());
        assert_eq!(testutil::decode(&all).len(), 40);

        // Mid-batch start returns the containing batch.
        assert_eq!(
            bases(&log.read(3, usize::MAX, i64::MAX, false).unwrap())[0],
            2
        );
        // High watermark: no batch with base >= 10.
        assert_eq!(
            bases(&log.read(0, usize::MAX, 10, false).unwrap()),
            vec![0, 2, 4, 6, 8]
        );
        assert!(log.read(10, usize::MAX, 10, false).unwrap().is_empty());
        // max_bytes keeps whole batches; min_one_batch returns one oversize batch.
        let first = headers(&all)[0].total_size();
        assert_eq!(log.read(0, first, i64::MAX, false).unwrap().len(), first);
        assert!(log.read(0, first - 1, i64::MAX, false).unwrap().is_empty());
        assert_eq!(log.read(0, 1, i64::MAX, true).unwrap().len(), first);
        // Crossing a segment boundary.
        let second_base = log.segment_base_offsets()[1];
        let crossing = log
            .read(second_base - 1, usize::MAX, second_base + 4, false)
            .unwrap();
        assert_eq!(
            bases(&crossing),
            vec![second_base - 2, second_base, second_base + 2]
        );
        // Ends of the log.
        assert!(log.read(40, 100, i64::MAX, true).unwrap().is_empty());
        assert!(matches!(
            log.read(41, 100, i64::MAX, true),
            Err(LogError::OffsetOutOfRange {
                offset: 41,
                log_start: 0,
                log_end: 40
            })
        ));
        assert!(matches!(
            log.read(-1, 100, i64::MAX, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn rolls_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), small_segments());
        let b = log.segment_base_offsets();
        assert_eq!(b[0], 0);
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        for base in &b {
            assert!(log_path(dir.path(), *base).exists());
        }
        // Every closed segment stays within segment.bytes.
        for seg in log.older.values() {
            assert!(seg.size() <= 500);
        }
        // Rolling fsyncs the closed segments on a thread; the next flush check moves the recovery point to
        // the active segment's base (bounded wait for the thread).
        let mut log = log;
        let active = log.active.base_offset();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while log.recovery_point() < active {
            assert!(
                std::time::Instant::now() < deadline,
                "background fsync never landed"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
            log.maybe_flush_by_time(NOW).unwrap();
        }
        assert_eq!(log.recovery_point(), active);
        log.flush().unwrap();
        assert_eq!(log.recovery_point(), log.log_end_offset());
    }

    #[test]
    fn rolls_by_segment_ms() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_ms: 1_000,
            ..cfg()
        };
        let mut log = Log::open(dir.path(), config, NOW).unwrap();
        produce(&mut log, Codec::None, &[NOW]);
        produce(&mut log, Codec::None, &[NOW + 1_000]);
        assert_eq!(log.num_segments(), 1);
        // Kafka measures segment age in message time.
        produce(&mut log, Codec::None, &[NOW + 1_001]);
        assert_eq!(log.segment_base_offsets(), vec![0, 2]);

        // Without timestamps, wall-clock time since creation counts.
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), log.config().clone(), NOW).unwrap();
        produce_at(&mut log, Codec::None, &[-1], NOW + 500);
        produce_at(&mut log, Codec::None, &[-1], NOW + 1_000);
        assert_eq!(log.num_segments(), 1);
        produce_at(&mut log, Codec::None, &[-1], NOW + 1_001);
        assert_eq!(log.num_segments(), 2);
    }

    #[test]
    fn rolls_when_index_full_and_on_config_update() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            index_interval_bytes: 0,
            segment_index_bytes: 24,
            ..cfg()
        };
        let mut log = Log::open(dir.path(), config, NOW).unwrap();
        for i in 0..6 {
            produce(&mut log, Codec::None, &[i]);
        }
        assert!(log.num_segments() > 1);

        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), cfg(), NOW).unwrap();
        produce(&mut log, Codec::None, &[1]);
        produce(&mut log, Codec::None, &[1]);
        assert_eq!(log.num_segments(), 1);
        log.update_config(LogConfig {
            segment_bytes: 150,
            ..cfg()
        });
        produce(&mut log, Codec::None, &[1]);
        assert_eq!(log.num_segments(), 2);
    }

    #[test]
    fn finds_offsets_by_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        // Non-monotonic timestamps within and across batches and codecs.
        let batches: [&[i64]; 6] = [
            &[100, 300, 200],
            &[150, 250],
            &[400, 350, 380],
            &[390, 500],
            &[450, 460],
            &[600],
        ];
        for (i, ts) in batches.iter().enumerate() {
            produce(&mut log, Codec::ALL[i % 5], ts);
        }
        assert!(log.num_segments() > 1);
        let q = |log: &Log, ts| log.offset_for_timestamp(ts).unwrap().map(|r| (r.0, r.1));
        assert_eq!(q(&log, 0), Some((0, 100)));
        assert_eq!(q(&log, 101), Some((1, 300)));
        assert_eq!(q(&log, 301), Some((5, 400)));
        assert_eq!(q(&log, 390), Some((5, 400)));
        assert_eq!(q(&log, 401), Some((9, 500)));
        assert_eq!(q(&log, 501), Some((12, 600)));
        assert_eq!(q(&log, 601), None);
        // Only offsets at or above the log start offset count.
        log.delete_records_before(2).unwrap();
        assert_eq!(q(&log, 101), Some((2, 200)));
        log.delete_records_before(4).unwrap();
        assert_eq!(q(&log, 101), Some((4, 250)));
    }

    #[test]
    fn finds_max_timestamp_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.max_timestamp_offset().unwrap(), None);
        produce(&mut log, Codec::None, &[5, 6]);
        produce(&mut log, Codec::Zstd, &[10, 900, 20]); // 2..=4, max at 3
        for _ in 0..6 {
            produce(&mut log, Codec::Snappy, &[100, 900]);
        }
        assert!(log.num_segments() > 1);
        assert_eq!(log.max_timestamp_offset().unwrap(), Some((3, 900, 5)));
        produce(&mut log, Codec::Gzip, &[1, 901, 2]);
        let leo = log.log_end_offset();
        assert_eq!(log.max_timestamp_offset().unwrap(), Some((leo - 2, 901, 5)));
        log.close().unwrap();
        let log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.max_timestamp_offset().unwrap(), Some((leo - 2, 901, 5)));
    }

    #[test]
    fn log_append_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            message_timestamp_type: TimestampType::LogAppendTime,
            ..cfg()
        };
        let mut log = Log::open(dir.path(), config, NOW).unwrap();
        let a = produce_at(&mut log, Codec::None, &[1, 2], NOW);
        let b = produce_at(&mut log, Codec::Lz4, &[3, 4], NOW + 10);
        assert_eq!(a.log_append_time, NOW);
        assert_eq!(b.log_append_time, NOW + 10);
        let stored = headers(&read_all(&log));
        assert!(stored
            .iter()
            .all(|h| h.timestamp_type() == TimestampType::LogAppendTime));
        assert_eq!(stored[0].max_timestamp, NOW);
        assert_eq!(stored[1].max_timestamp, NOW + 10);
        assert_eq!(testutil::decode(&read_all(&log)).len(), 4);
        assert_eq!(
            log.offset_for_timestamp(NOW + 1).unwrap(),
            Some((2, NOW + 10, 5))
        );
        assert_eq!(log.max_timestamp_offset().unwrap(), Some((2, NOW + 10, 5)));
    }

    #[test]
    fn rejects_out_of_range_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            message_timestamp_before_max_ms: 1_000,
            ..cfg()
        };
        let mut log = Log::open(dir.path(), config, NOW).unwrap();
        for codec in [Codec::None, Codec::Gzip] {
            for ts in [NOW + 3_600_001, NOW - 1_001] {
                let mut buf = testutil::batch(codec, &[NOW, ts], 5);
                assert!(matches!(
                    log.append_as_leader(&mut buf, 0, NOW),
                    Err(LogError::InvalidTimestamp(_))
                ));
            }
            let mut ok = testutil::batch(codec, &[NOW + 3_600_000, NOW - 1_000, -1], 5);
            log.append_as_leader(&mut ok, 0, NOW).unwrap();
        }
        assert_eq!(log.log_end_offset(), 6);
    }

    #[test]
    fn rejects_bad_input_without_side_effects() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            max_message_bytes: 200,
            ..cfg()
        };
        let mut log = Log::open(dir.path(), config, NOW).unwrap();
        let mut big = testutil::batch(Codec::None, &[1, 2, 3], 100);
        assert!(matches!(
            log.append_as_leader(&mut big, 0, NOW),
            Err(LogError::MessageTooLarge { max: 200, .. })
        ));
        let mut rng = testutil::Rng(7);
        for len in 0..300 {
            let mut garbage: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            assert!(log.append_as_leader(&mut garbage, 0, NOW).is_err());
            assert!(log.append_as_follower(&garbage, NOW).is_err());
        }
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(log.size_bytes(), 0);
    }

    #[test]
    fn follower_appends_keep_offsets_and_epochs() {
        let leader_dir = tempfile::tempdir().unwrap();
        let leader = filled(leader_dir.path(), small_segments());
        let dir = tempfile::tempdir().unwrap();
        let mut follower = Log::open(dir.path(), small_segments(), NOW).unwrap();
        // Replicate in fetch-sized chunks.
        let mut offset = 0;
        while offset < leader.log_end_offset() {
            let chunk = leader.read(offset, 700, i64::MAX, true).unwrap();
            let info = follower.append_as_follower(&chunk, NOW).unwrap();
            assert_eq!(info.first_offset, offset);
            offset = info.last_offset + 1;
        }
        assert_eq!(follower.log_end_offset(), 40);
        assert_eq!(read_all(&follower), read_all(&leader));
        assert!(follower.num_segments() > 1);

        // Replaying old data is rejected.
        let old = leader.read(0, 100, i64::MAX, true).unwrap();
        assert!(matches!(
            follower.append_as_follower(&old, NOW),
            Err(LogError::InvalidRecord(_))
        ));
        // Gaps are allowed; control batches are replicated; epochs are kept.
        let mut gap = testutil::batch(Codec::None, &[1], 5);
        gap[0..8].copy_from_slice(&50i64.to_be_bytes());
        gap[12..16].copy_from_slice(&42i32.to_be_bytes());
        gap[22] |= 0x20;
        fix_crc(&mut gap);
        let info = follower.append_as_follower(&gap, NOW).unwrap();
        assert_eq!((info.first_offset, info.last_offset), (50, 50));
        assert_eq!(follower.log_end_offset(), 51);
        let h = BatchHeader::parse(&follower.read(45, 100, i64::MAX, true).unwrap()).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (50, 42));
        // A corrupt batch is refused.
        let mut bad = gap.clone();
        bad[0..8].copy_from_slice(&60i64.to_be_bytes());
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            follower.append_as_follower(&bad, NOW),
            Err(LogError::CorruptMessage(_))
        ));
    }

    #[test]
    fn flushes_by_messages_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush_messages: 3,
            flush_ms: 100,
            ..cfg()
        };
        let mut log = Log::open(dir.path(), config, NOW).unwrap();
        produce(&mut log, Codec::None, &[1, 2]);
        assert!(!log.flush_due_by_messages());
        produce(&mut log, Codec::None, &[1, 2]);
        // The partition runs the flush after releasing its lock.
        assert!(log.flush_due_by_messages());
        assert_eq!(log.recovery_point(), 0);
        log.flush().unwrap();
        assert_eq!(log.recovery_point(), 4);
        let rp_file = dir.path().join(RECOVERY_POINT_FILE);
        assert_eq!(fs::read_to_string(&rp_file).unwrap().trim(), "4");
        produce(&mut log, Codec::None, &[1]);
        assert!(!log.maybe_flush_by_time(NOW + 99).unwrap());
        assert!(log.maybe_flush_by_time(NOW + 100).unwrap());
        assert_eq!(log.recovery_point(), 5);
        assert!(
            !log.maybe_flush_by_time(NOW + 1_000).unwrap(),
            "nothing to flush"
        );
    }

    #[test]
    fn truncates_for_replication() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled(dir.path(), small_segments());
        let b = log.segment_base_offsets();
        // Batch boundary inside the second segment.
        log.truncate_to(b[1] + 2).unwrap();
        assert_eq!(log.log_end_offset(), b[1] + 2);
        assert_eq!(log.segment_base_offsets(), vec![b[0], b[1]]);
        assert!(!log_path(dir.path(), b[2]).exists());
        // Mid-batch: the whole batch goes.
        log.truncate_to(b[1] + 1).unwrap();
        assert_eq!(log.log_end_offset(), b[1]);
        assert_eq!(produce(&mut log, Codec::None, &[1]).first_offset, b[1]);
        log.truncate_to(1_000).unwrap();
        assert_eq!(log.log_end_offset(), b[1] + 1);
        // Below the first segment: start over.
        log.delete_records_before(b[1]).unwrap();
        assert_eq!(log.segment_base_offsets(), vec![b[1]]);
        log.truncate_to(3).unwrap();
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.num_segments()
            ),
            (3, 3, 1)
        );
        assert_eq!(produce(&mut log, Codec::None, &[1]).first_offset, 3);
        log.truncate_fully_and_start_at(3).unwrap();
        assert_eq!((log.log_end_offset(), log.size_bytes()), (3, 0));
        drop(log);
        let log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (3, 3));
    }

    #[test]
    fn log_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Log>();
    }

    #[test]
    fn garbage_compressed_payload_fails_search_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), cfg(), NOW).unwrap();
        let mut rng = testutil::Rng(5);
        // Stores `buf` as a replica would (records unchecked), so the search meets it.
        let store = |log: &mut Log, buf: &mut Vec<u8>| {
            buf[..8].copy_from_slice(&log.log_end_offset().to_be_bytes());
            let info = log.append_as_follower(buf, NOW).unwrap();
            log.delete_records_before(info.first_offset).unwrap();
        };
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            // A valid frame around a garbage payload: refused on produce, and a
            // clean error if it is on disk anyway.
            let mut buf = testutil::batch(codec, &[NOW, NOW], 5);
            for b in &mut buf[61..] {
                *b = rng.next() as u8;
            }
            fix_crc(&mut buf);
            assert!(
                matches!(
                    log.append_as_leader(&mut buf.clone(), 0, NOW),
                    Err(LogError::CorruptMessage(_))
                ),
                "{codec:?}"
            );
            store(&mut log, &mut buf);
            assert!(
                matches!(
                    log.offset_for_timestamp(NOW),
                    Err(LogError::CorruptMessage(_))
                ),
                "{codec:?}"
            );
        }
        // A raw snappy payload declaring a 4 GiB output is refused before
        // anything is allocated.
        let mut bomb = testutil::batch(Codec::Snappy, &[NOW + 1], 5);
        bomb.truncate(61);
        bomb.extend([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        let len = (bomb.len() - 12) as i32;
        bomb[8..12].copy_from_slice(&len.to_be_bytes());
        fix_crc(&mut bomb);
        store(&mut log, &mut bomb);
        assert!(matches!(
            log.offset_for_timestamp(NOW + 1),
            Err(LogError::CorruptMessage(m)) if m.contains("declares")
        ));
    }

    /// An append whose write or index update fails leaves neither memory nor the files holding any of it: the
    /// next append takes the same offsets, and after a crash the failed batch does not come back either.
    #[test]
    fn failed_append_is_rolled_back() {
        use crate::log::fault::{plan, Point};
        let every_append_indexed = LogConfig {
            index_interval_bytes: 0,
            ..cfg()
        };
        for (point, skip) in [
            (Point::SegmentWrite, 0),
            (Point::IndexWrite, 0),
            (Point::IndexWrite, 1),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut log = Log::open(dir.path(), every_append_indexed.clone(), NOW).unwrap();
            produce(&mut log, Codec::None, &[1, 2]);
            produce(&mut log, Codec::Gzip, &[3]);
            let size = log.size_bytes();
            let entries = (
                log.active.offset_index().len(),
                log.active.time_index().len(),
            );
            assert_eq!(entries, (1, 1), "every append after the first is indexed");
            plan::fail(point, skip, libc::ENOSPC, 1);
            let mut failed = testutil::batch(Codec::None, &[4, 5], 50);
            let err = log.append_as_leader(&mut failed, 5, NOW).unwrap_err();
            plan::clear();
            assert!(matches!(err, LogError::Io(_)), "{point:?}: {err}");
            assert_eq!(log.log_end_offset(), 3, "{point:?}");
            assert_eq!(log.size_bytes(), size, "{point:?}");
            assert_eq!(
                fs::metadata(log_path(dir.path(), 0)).unwrap().len(),
                size,
                "{point:?}"
            );
            // Both indexes are cut back too (with (IndexWrite, 1) the offset index entry was written and the
            // time index entry failed).
            assert_eq!(
                (
                    log.active.offset_index().len(),
                    log.active.time_index().len()
                ),
                entries,
                "{point:?}"
            );
            assert_eq!(
                fs::metadata(index_path(dir.path(), 0)).unwrap().len(),
                entries.0 as u64 * 8,
                "{point:?}"
            );
            assert_eq!(
                fs::metadata(time_index_path(dir.path(), 0)).unwrap().len(),
                entries.1 as u64 * 12,
                "{point:?}"
            );
            // The next append reuses the offsets; the failed batch is never readable.
            assert_eq!(produce(&mut log, Codec::Lz4, &[6]).first_offset, 3);
            let timestamps: Vec<i64> = testutil::decode(&read_all(&log))
                .iter()
                .map(|r| r.timestamp)
                .collect();
            assert_eq!(timestamps, vec![1, 2, 3, 6], "{point:?}");
            drop(log); // crash
            let log = Log::open(dir.path(), every_append_indexed.clone(), NOW).unwrap();
            assert_eq!(log.log_end_offset(), 4);
            for offset in 0..4 {
                let got = log.read(offset, 1, i64::MAX, true).unwrap();
                let h = BatchHeader::parse(&got).unwrap();
                assert!(h.base_offset <= offset && offset <= h.last_offset());
            }
        }
    }

    /// If even the rollback fails, the log goes offline instead of serving state its files disagree with.
    #[test]
    fn failed_rollback_takes_the_log_offline() {
        use crate::log::fault::{plan, Point};
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), cfg(), NOW).unwrap();
        produce(&mut log, Codec::None, &[1, 2]);
        plan::fail(Point::SegmentWrite, 0, libc::EIO, 1);
        plan::fail(Point::Truncate, 0, libc::EIO, 1);
        let mut failed = testutil::batch(Codec::None, &[4, 5], 50);
        let err = log.append_as_leader(&mut failed, 5, NOW).unwrap_err();
        plan::clear();
        assert!(matches!(err, LogError::Offline(_)), "{err}");
        assert!(log.health().is_offline());
        let mut next = testutil::batch(Codec::None, &[6], 50);
        assert!(matches!(
            log.append_as_leader(&mut next, 5, NOW),
            Err(LogError::Offline(_))
        ));
        assert!(matches!(
            log.read_slices(0, 100, i64::MAX, true),
            Err(LogError::Offline(_))
        ));
        assert!(matches!(
            log.apply_retention(NOW),
            Err(LogError::Offline(_))
        ));
        // Recovery at the next open drops the torn half batch.
        drop(log);
        let log = Log::open(dir.path(), cfg(), NOW).unwrap();
        assert_eq!(log.log_end_offset(), 2);
    }
}
