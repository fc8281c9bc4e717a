//! Log compaction: the cleaner keeps the latest record per key in the inactive part of a compacted log
//! (Kafka's `LogCleaner` / `Cleaner` / `LogCleanerManager`).
//!
//! Who owns what:
//! - The broker's cleaner task (`broker.rs`) picks logs and runs [`clean`] for each on a blocking thread; one
//!   pass per log at a time, so nothing else ever writes the cleaner's files (`cleaner-offset-checkpoint`,
//!   `*.cleaned`, `*.swap`, `*.cleanend`) in a partition directory.
//! - A pass takes the partition's lock three times, each briefly: [`Log::cleaner_snapshot`] (read lock:
//!   segment handles and bounds), [`Log::install_cleaned`] (write lock: a few renames and opening the new
//!   segment's indexes) and nothing else. Reading the dirty section, building the offset map, filtering and
//!   writing and fsyncing the cleaned segments all happen with no lock held, on the shared `Arc<File>`s of
//!   inactive segments (which never change once rolled). Produce and fetch never wait for a pass.
//! - Readers hold `FileSlice`s (`Arc<File>`), so a fetch that found an old segment keeps reading it after the
//!   swap; the next fetch finds the cleaned one.
//!
//! What a pass does, like Kafka: only segments below the active segment, the high watermark and
//! `min.compaction.lag.ms` are cleanable. The dirty section starts at the cleaner checkpoint; a log is cleaned
//! when dirty bytes / cleanable bytes reach `min.cleanable.dirty.ratio`, when its oldest dirty data is older
//! than `max.compaction.lag.ms`, or when a tombstone's delete horizon has passed. The offset map (key -> latest
//! offset, bounded by `log_cleaner_dedupe_buffer_size`) is built over the dirty section; if it fills, the pass
//! ends there and the rest is cleaned next time. Then every cleanable segment below the map's end is rewritten
//! in groups (consecutive segments merged while they fit `segment.bytes` and 32-bit relative offsets), keeping
//! each retained record's offset. Crash safety is the swap protocol in `cleaner/swap.rs`.
//!
//! Transactions (Kafka's `firstUncleanableOffset` and `CleanedTransactionMetadata`): nothing at or past the
//! last stable offset is cleanable (the lower of the high watermark and the first offset of the oldest open
//! transaction), so a pass never sees an open transaction. The aborted transactions of the transaction indexes
//! (copied with the snapshot) tell which batches are aborted data: they are discarded and never enter the
//! offset map; committed data is compacted like any other. Markers stay while data of their transaction is
//! in the log, then get a delete horizon and go once it has passed (`cleaner/txn.rs`); the last batch of each
//! producer stays, emptied if need be. Each cleaned segment gets a `.txnindex` with the entries of the ABORT
//! markers it keeps, swapped in with the segment.

mod filter;
mod offset_map;
mod swap;
mod txn;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::info;

use super::batch::{BatchHeader, BATCH_HEADER_LEN, MIN_BATCH_LENGTH};
use super::error::LogError;
use super::log::{segment_config, Log};
use super::marker::parse_marker;
use super::segment::SegmentConfig;
use super::txn_index::AbortedTxn;
use filter::{filter_batch, map_batch, Filtered};
use offset_map::OffsetMap;
pub(crate) use swap::recover_interrupted_cleaning;
pub use txn::LastRecord;
use txn::{decide, CleanedTxns};

/// Per-partition file holding where the dirty section starts and the earliest pending tombstone horizon.
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// A compacted topic's cleaning settings (topic configs, with the broker's `log_cleaner_*` defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionConfig {
    /// `min.cleanable.dirty.ratio`.
    pub min_cleanable_ratio: f64,
    /// `delete.retention.ms`: how long tombstones stay after the clean that first kept them.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty data older than this forces a clean.
    pub max_compaction_lag_ms: i64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            min_cleanable_ratio: 0.5,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

/// What the cleaner remembers about a log between passes (persisted in [`CLEANER_CHECKPOINT_FILE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanerCheckpoint {
    /// Offsets below this have been cleaned.
    pub first_dirty: i64,
    /// Earliest delete horizon of a tombstone or discardable marker kept by the last clean (a clean is due
    /// once it passes).
    pub tombstone_horizon: Option<i64>,
}

impl CleanerCheckpoint {
    /// Reads the checkpoint; a missing or unreadable one means "nothing cleaned yet", which is always safe.
    pub fn read(dir: &Path) -> CleanerCheckpoint {
        let text = std::fs::read_to_string(dir.join(CLEANER_CHECKPOINT_FILE)).unwrap_or_default();
        let mut fields = text.split_whitespace().map(str::parse::<i64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(first_dirty)), Some(Ok(horizon))) => CleanerCheckpoint {
                first_dirty,
                tombstone_horizon: (horizon >= 0).then_some(horizon),
            },
            _ => CleanerCheckpoint::default(),
        }
    }

    fn write(&self, dir: &Path) -> Result<(), LogError> {
        let text = format!(
            "{} {}\n",
            self.first_dirty,
            self.tombstone_horizon.unwrap_or(-1)
        );
        super::checkpoint::write_file_durably(dir, CLEANER_CHECKPOINT_FILE, text.as_bytes())?;
        Ok(())
    }
}

/// An inactive segment as the cleaner sees it: immutable, read through its shared file.
#[derive(Debug, Clone)]
pub struct SegmentView {
    pub(crate) base: i64,
    pub(crate) next_offset: i64,
    pub(crate) size: u64,
    pub(crate) file: Arc<File>,
    pub(crate) first_timestamp: Option<i64>,
    pub(crate) largest_timestamp: i64,
}

/// What a pass needs from the log, taken under its read lock.
#[derive(Debug, Clone)]
pub struct CleanerSnapshot {
    pub(crate) dir: PathBuf,
    /// (device, inode) of the directory, so a pass never writes into a re-created topic's directory of the
    /// same name (the partition may be deleted while the pass runs).
    pub(crate) dir_id: Option<(u64, u64)>,
    pub(crate) generation: u64,
    pub(crate) segments: Vec<SegmentView>,
    pub(crate) active_base: i64,
    pub(crate) log_start_offset: i64,
    pub(crate) segment_config: SegmentConfig,
    pub(crate) max_segment_bytes: u64,
    /// First offset of the oldest open transaction: nothing from there on is cleanable.
    pub(crate) first_unstable_offset: Option<i64>,
    /// The transaction index entries that can overlap inactive segments (first offset below the active
    /// segment), a copy: a pass reads them without the lock.
    pub(crate) aborted: Vec<AbortedTxn>,
    /// Each producer's last write, by producer id (bounded by the producer state's own bound).
    pub(crate) last_records: HashMap<i64, LastRecord>,
}

impl Log {
    /// The inactive segments and bounds a cleaning pass works from (cheap: handles and numbers).
    pub fn cleaner_snapshot(&self) -> Result<CleanerSnapshot, LogError> {
        self.check_online()?;
        let mut segments = Vec::with_capacity(self.older.len());
        for seg in self.older.values() {
            segments.push(SegmentView {
                base: seg.base_offset(),
                next_offset: seg.next_offset(),
                size: seg.size(),
                file: seg.file(),
                first_timestamp: seg.first_batch_timestamp(),
                largest_timestamp: seg.largest_timestamp()?,
            });
        }
        let active_base = self.active.base_offset();
        let aborted = self
            .txn_indexes
            .values()
            .flat_map(|i| i.entries())
            .filter(|e| e.first_offset < active_base)
            .copied()
            .collect();
        let last_records = self
            .producers
            .entries()
            .into_iter()
            .map(|e| {
                let last = LastRecord {
                    last_data_offset: (e.last_offset() >= 0).then(|| e.last_offset()),
                    epoch: e.epoch,
                };
                (e.producer_id, last)
            })
            .collect();
        Ok(CleanerSnapshot {
            dir: self.dir.clone(),
            dir_id: dir_id(&self.dir),
            generation: self.generation,
            segments,
            active_base: self.active.base_offset(),
            log_start_offset: self.log_start_offset,
            segment_config: segment_config(&self.config),
            max_segment_bytes: self.config.segment_bytes.min(i32::MAX as u64),
            first_unstable_offset: self.producers.first_unstable_offset(),
            aborted,
            last_records,
        })
    }
}

/// (device, inode) of a directory, `None` if it is gone.
pub(crate) fn dir_id(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// The cleanable part of a log and whether it is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanPlan {
    /// Where the dirty section starts.
    pub first_dirty: i64,
    /// Segments with base offsets below this are cleanable (a segment boundary).
    pub cleanable_end: i64,
    /// Dirty bytes / cleanable bytes.
    pub dirty_ratio: f64,
    /// True if a pass should run now.
    pub due: bool,
}

/// Decides what is cleanable and whether cleaning is due (pure; Kafka's `LogCleanerManager` rules). Nothing
/// at or past the last stable offset (the high watermark, or the oldest open transaction's first offset if
/// lower) is cleanable, nor the active segment.
pub fn plan(
    snap: &CleanerSnapshot,
    checkpoint: CleanerCheckpoint,
    config: &CompactionConfig,
    high_watermark: i64,
    now_ms: i64,
) -> CleanPlan {
    let first_base = snap.segments.first().map_or(snap.active_base, |s| s.base);
    let mut first_dirty = checkpoint
        .first_dirty
        .max(snap.log_start_offset)
        .max(first_base);
    if first_dirty > snap.active_base {
        // Truncated below the checkpoint: start over.
        first_dirty = snap.log_start_offset.max(first_base);
    }
    let last_stable = snap
        .first_unstable_offset
        .map_or(high_watermark, |f| f.min(high_watermark));
    let mut cleanable_end = snap.active_base;
    for s in &snap.segments {
        let too_new = s.next_offset > last_stable
            || (s.next_offset > first_dirty
                && config.min_compaction_lag_ms > 0
                && s.largest_timestamp > now_ms.saturating_sub(config.min_compaction_lag_ms));
        if too_new {
            cleanable_end = s.base;
            break;
        }
    }
    let cleanable = snap.segments.iter().filter(|s| s.base < cleanable_end);
    let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
    let mut oldest_dirty: Option<i64> = None;
    for s in cleanable {
        if s.next_offset <= first_dirty {
            clean_bytes += s.size;
        } else {
            dirty_bytes += s.size;
            if oldest_dirty.is_none() {
                oldest_dirty = Some(s.first_timestamp.unwrap_or(s.largest_timestamp));
            }
        }
    }
    let total = clean_bytes + dirty_bytes;
    let dirty_ratio = if total == 0 {
        0.0
    } else {
        dirty_bytes as f64 / total as f64
    };
    let by_ratio = dirty_bytes > 0 && dirty_ratio >= config.min_cleanable_ratio;
    let by_lag = oldest_dirty
        .is_some_and(|ts| ts >= 0 && now_ms.saturating_sub(ts) > config.max_compaction_lag_ms);
    let by_horizon = total > 0 && checkpoint.tombstone_horizon.is_some_and(|h| now_ms >= h);
    CleanPlan {
        first_dirty,
        cleanable_end,
        dirty_ratio,
        due: by_ratio || by_lag || by_horizon,
    }
}

/// What a pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanStats {
    /// Segments read and replaced.
    pub segments_cleaned: usize,
    /// Segments written (after merging).
    pub segments_written: usize,
    /// Bytes before and after.
    pub bytes_before: u64,
    /// Bytes after cleaning.
    pub bytes_after: u64,
    /// Offset up to which the log is now clean.
    pub clean_up_to: i64,
    /// Keys in the offset map.
    pub keys: usize,
    /// Bytes the offset map counted against `log_cleaner_dedupe_buffer_size`.
    pub map_bytes: usize,
}

/// Reads the batch at `pos` of an inactive segment (framing checked against the segment's size).
pub(crate) fn read_batch_at(
    seg: &SegmentView,
    pos: u64,
) -> Result<(BatchHeader, Vec<u8>), LogError> {
    if pos + BATCH_HEADER_LEN as u64 > seg.size {
        return Err(LogError::CorruptMessage(format!(
            "segment {}: truncated batch header at {pos}",
            seg.base
        )));
    }
    let mut head = [0u8; BATCH_HEADER_LEN];
    seg.file.read_exact_at(&mut head, pos)?;
    let h = BatchHeader::parse(&head)?;
    if h.batch_length < MIN_BATCH_LENGTH || pos + h.total_size() as u64 > seg.size {
        return Err(LogError::CorruptMessage(format!(
            "segment {}: bad batch length {} at {pos}",
            seg.base, h.batch_length
        )));
    }
    let mut batch = vec![0u8; h.total_size()];
    seg.file.read_exact_at(&mut batch, pos)?;
    Ok((h, batch))
}

/// Calls `f` for each batch of `seg` in order; `f` returns false to stop.
pub(crate) fn for_each_batch(
    seg: &SegmentView,
    mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<bool, LogError>,
) -> Result<(), LogError> {
    let mut pos = 0u64;
    while pos < seg.size {
        let (h, batch) = read_batch_at(seg, pos)?;
        if !f(&h, &batch)? {
            break;
        }
        pos += batch.len() as u64;
    }
    Ok(())
}

/// Builds the offset map over `[first_dirty, cleanable_end)`, stopping early (at a batch boundary) when the map
/// is full. The map's end offset is where the cleaned section will end.
pub(crate) fn build_offset_map(
    snap: &CleanerSnapshot,
    plan: &CleanPlan,
    capacity: usize,
) -> Result<OffsetMap, LogError> {
    let mut map = OffsetMap::new(capacity);
    let mut txns = CleanedTxns::new(overlapping(
        &snap.aborted,
        plan.first_dirty,
        plan.cleanable_end,
    ));
    let mut first = true;
    let mut full = false;
    for seg in snap
        .segments
        .iter()
        .filter(|s| s.base < plan.cleanable_end && s.next_offset > plan.first_dirty)
    {
        for_each_batch(seg, |h, batch| {
            // Below the dirty section too, the transaction state must follow every batch.
            let aborted = if h.is_control() {
                txns.on_control(h, parse_marker(batch).map(|(commit, _)| commit));
                false
            } else {
                txns.on_batch(h)
            };
            if h.next_offset() <= plan.first_dirty {
                return Ok(true);
            }
            if !map_batch(batch, h, &mut map, first, aborted)? {
                full = true;
                return Ok(false);
            }
            first = false;
            Ok(true)
        })?;
        if full {
            break;
        }
    }
    Ok(map)
}

/// The entries of `aborted` overlapping `[from, to)`.
fn overlapping(aborted: &[AbortedTxn], from: i64, to: i64) -> Vec<AbortedTxn> {
    aborted
        .iter()
        .filter(|a| a.last_offset >= from && a.first_offset < to)
        .copied()
        .collect()
}

/// Splits segments into runs that are merged into one cleaned segment each: consecutive, at most
/// `max_bytes` of (uncleaned) data, and spanning less than 2^31 offsets so relative offsets fit the index
/// (Kafka's `groupSegmentsBySize`).
pub(crate) fn group_segments(segments: &[SegmentView], max_bytes: u64) -> Vec<Vec<SegmentView>> {
    let mut groups: Vec<Vec<SegmentView>> = Vec::new();
    for seg in segments {
        let fits = groups.last().is_some_and(|g| {
            let size: u64 = g.iter().map(|s| s.size).sum();
            let base = g.first().map_or(seg.base, |s| s.base);
            size + seg.size <= max_bytes && seg.next_offset - base <= i64::from(i32::MAX)
        });
        match groups.last_mut() {
            Some(g) if fits => g.push(seg.clone()),
            _ => groups.push(vec![seg.clone()]),
        }
    }
    groups
}

/// One cleaning pass over a log whose plan is due: builds the map, writes the cleaned groups and swaps each in
/// through `install` (which takes the partition's write lock). Returns what it did; the cleaner checkpoint is
/// written at the end.
pub fn clean(
    snap: &CleanerSnapshot,
    plan: &CleanPlan,
    config: &CompactionConfig,
    dedupe_buffer_bytes: usize,
    now_ms: i64,
    mut install: impl FnMut(&swap::CleanedGroup) -> Result<bool, LogError>,
) -> Result<CleanStats, LogError> {
    let map = build_offset_map(snap, plan, dedupe_buffer_bytes)?;
    let upto = map
        .end_offset()
        .unwrap_or(plan.first_dirty)
        .max(plan.first_dirty);
    // Every cleanable segment that starts below the mapped end: the clean part (older duplicates and expired
    // tombstones), and the dirty part the map covers. A segment the map covers only partly is rewritten too;
    // its records past the map's end stay, since no mapped offset is above them.
    let to_clean: Vec<SegmentView> = snap
        .segments
        .iter()
        .filter(|s| s.base < plan.cleanable_end && (s.base < upto || upto == plan.first_dirty))
        .cloned()
        .collect();
    let mut stats = CleanStats {
        clean_up_to: upto,
        keys: map.len(),
        map_bytes: map.used(),
        ..CleanStats::default()
    };
    let mut horizon: Option<i64> = None;
    let (from, to) = (
        to_clean.first().map_or(0, |s| s.base),
        to_clean.last().map_or(0, |s| s.next_offset),
    );
    let mut txns = CleanedTxns::new(overlapping(&snap.aborted, from, to));
    for group in group_segments(&to_clean, snap.max_segment_bytes) {
        let cleaned = swap::write_cleaned(
            snap,
            &group,
            |h, batch, index| {
                let kind = if h.is_control() {
                    parse_marker(batch).map(|(commit, _)| commit)
                } else {
                    None
                };
                let decision = decide(h, kind, &mut txns, &snap.last_records, now_ms);
                let out = filter_batch(
                    batch,
                    h,
                    &map,
                    now_ms,
                    config.delete_retention_ms,
                    &decision,
                )?;
                if let Some(entry) = decision.index_entry {
                    index.push(entry);
                }
                if let Some(t) = out.tombstone_horizon {
                    horizon = Some(horizon.map_or(t, |h: i64| h.min(t)));
                }
                Ok(out.result)
            },
            now_ms,
        )?;
        // An error here took the log offline with the swap half done: the files stay for the next open.
        let installed = install(&cleaned)?;
        if !installed {
            // The log changed under the pass (retention, truncation): give up this pass, try again later.
            cleaned.abandon();
            return Ok(stats);
        }
        cleaned.finish()?;
        stats.segments_cleaned += group.len();
        stats.segments_written += 1;
        stats.bytes_before += group.iter().map(|s| s.size).sum::<u64>();
        stats.bytes_after += cleaned.size;
    }
    CleanerCheckpoint {
        first_dirty: upto,
        tombstone_horizon: horizon,
    }
    .write(&snap.dir)?;
    info!(dir = %snap.dir.display(), segments = stats.segments_cleaned, written = stats.segments_written,
        before = stats.bytes_before, after = stats.bytes_after, clean_up_to = upto, keys = stats.keys, "cleaned log");
    Ok(stats)
}

pub use swap::CleanedGroup;

#[cfg(test)]
mod tests;

/// The three final file paths of a segment (for the crash tests).
#[cfg(test)]
fn swap_test_paths(dir: &Path, base: i64) -> [PathBuf; 3] {
    [
        super::segment::index_path(dir, base),
        super::segment::time_index_path(dir, base),
        super::segment::log_path(dir, base),
    ]
}
