//! Retention and DeleteRecords: deleting whole old segments by time
//! (`retention.ms`), by size (`retention.bytes`) and below the log start
//! offset, never at or above the high watermark (Kafka's `UnifiedLog`
//! retention methods).
//!
//! An `impl Log` block over the fields declared in `log.rs`; the caller holds
//! the partition's write lock, as for any other `&mut Log` operation.

use tracing::info;

use super::error::LogError;
use super::fault::{self, Point};
use super::log::Log;
use super::segment::LogSegment;

impl Log {
    /// DeleteRecords: raises the log start offset to `offset` (the caller
    /// ensures it is not above the high watermark), persists it and deletes
    /// segments entirely below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        self.check_online()?;
        if offset < 0 || offset > self.log_end_offset() {
            return Err(self.out_of_range(offset));
        }
        if offset > self.log_start_offset {
            self.set_log_start_offset(offset);
        }
        self.delete_segments_below_log_start()?;
        Ok(self.log_start_offset)
    }

    /// [`Log::apply_retention_below`] with the log end offset as the high
    /// watermark (a single-replica partition).
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        self.apply_retention_below(now_ms, self.log_end_offset())
    }

    /// Applies `retention.ms`, then `retention.bytes`, then deletes segments
    /// wholly below the log start offset, never deleting data at or above
    /// `high_watermark`. Returns the number of segments deleted and raises
    /// (and persists) the log start offset to the new first segment.
    pub fn apply_retention_below(
        &mut self,
        now_ms: i64,
        high_watermark: i64,
    ) -> Result<usize, LogError> {
        self.check_online()?;
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        let mut deleted = self.delete_retention_ms_breached(now_ms, high_watermark)?;
        deleted += self.delete_retention_bytes_breached(high_watermark)?;
        deleted += self.delete_segments_below_log_start()?;
        Ok(deleted)
    }

    /// Number of leading older segments for which `pred(segment, next_base)`
    /// holds, stopping at the first that fails or reaches `high_watermark`.
    fn deletable_prefix(
        &self,
        high_watermark: i64,
        mut pred: impl FnMut(&LogSegment, i64) -> Result<bool, LogError>,
    ) -> Result<usize, LogError> {
        let mut count = 0;
        let mut iter = self.older.values().peekable();
        while let Some(seg) = iter.next() {
            let next_base = iter
                .peek()
                .map_or(self.active.base_offset(), |s| s.base_offset());
            if next_base > high_watermark || !pred(seg, next_base)? {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    fn delete_retention_ms_breached(
        &mut self,
        now_ms: i64,
        high_watermark: i64,
    ) -> Result<usize, LogError> {
        let retention_ms = self.config.retention_ms;
        if retention_ms < 0 {
            return Ok(0);
        }
        let expired = |seg: &LogSegment| -> Result<bool, LogError> {
            Ok(now_ms.saturating_sub(seg.largest_timestamp()?) > retention_ms)
        };
        let mut count = self.deletable_prefix(high_watermark, |seg, _| expired(seg))?;
        // Like Kafka, an expired non-empty active segment goes too: roll a new
        // empty one first so the log always has an active segment.
        if count == self.older.len()
            && !self.active.is_empty()
            && self.log_end_offset() <= high_watermark
            && expired(&self.active)?
        {
            self.roll(self.log_end_offset(), now_ms)?;
            count += 1;
        }
        self.delete_oldest(count)
    }

    fn delete_retention_bytes_breached(&mut self, high_watermark: i64) -> Result<usize, LogError> {
        let Ok(retention) = u64::try_from(self.config.retention_bytes) else {
            return Ok(0);
        };
        let mut excess = self.size_bytes().saturating_sub(retention);
        let count = self.deletable_prefix(high_watermark, |seg, _| {
            if seg.size() <= excess {
                excess -= seg.size();
                Ok(true)
            } else {
                Ok(false)
            }
        })?;
        self.delete_oldest(count)
    }

    fn delete_segments_below_log_start(&mut self) -> Result<usize, LogError> {
        let lso = self.log_start_offset;
        let count = self.deletable_prefix(i64::MAX, |_, next_base| Ok(next_base <= lso))?;
        self.delete_oldest(count)
    }

    /// Deletes the `count` oldest (inactive) segments and raises the log start offset to the new first segment's
    /// base. The new log start offset is persisted first (as in Kafka): if a delete then fails, neither this
    /// process nor a restart serves the segments meant to go. A delete that fails takes the log offline, since
    /// memory no longer has the segment its files still hold.
    fn delete_oldest(&mut self, count: usize) -> Result<usize, LogError> {
        if count == 0 {
            return Ok(0);
        }
        let first_base = self
            .older
            .keys()
            .nth(count)
            .copied()
            .unwrap_or(self.active.base_offset());
        if first_base > self.log_start_offset {
            self.set_log_start_offset(first_base);
        }
        // Here, under the lock, unlike other checkpoint writes (which wait for the lock to be released): the file
        // must hold the new start before any segment below it goes. One that cannot be written deletes nothing
        // (an I/O error; the next retention pass or DeleteRecords writes it and deletes).
        self.checkpoints.sync()?;
        for _ in 0..count {
            if let Some((base, seg)) = self.older.pop_first() {
                info!(dir = %self.dir.display(), base, "deleting segment");
                self.dir_changes += 1;
                let deleted = fault::check(Point::Delete)
                    .map_err(LogError::from)
                    .and_then(|()| seg.delete());
                if let Err(e) = deleted {
                    return Err(self.go_offline(format!("cannot delete segment {base}: {e}")));
                }
            }
        }
        self.delete_snapshots_below_first_segment();
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use crate::log::config::LogConfig;
    use crate::log::testutil::{bases, filled, produce, small_segments, Codec, NOW};

    #[test]
    fn retention_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_ms: 1_000,
            ..small_segments()
        };
        let mut log = Log::open(dir.path(), config, NOW).unwrap();
        for _ in 0..10 {
            produce(&mut log, Codec::None, &[NOW - 5_000, NOW - 5_000]);
        }
        let old_segments = log.num_segments();
        log.roll(log.log_end_offset(), NOW).unwrap();
        for _ in 0..6 {
            produce(&mut log, Codec::None, &[NOW, NOW]);
        }
        let before = log.num_segments();
        assert_eq!(log.apply_retention(NOW).unwrap(), old_segments);
        assert_eq!(log.num_segments(), before - old_segments);
        assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
        assert!(log.log_start_offset() > 0);
        let lso_after_first_pass = log.log_start_offset();
        assert!(matches!(
            log.read(0, 100, i64::MAX, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));

        // Everything expired, including the active segment: it is rolled away.
        assert!(log.apply_retention(NOW + 10_000).unwrap() >= 1);
        assert_eq!(log.num_segments(), 1);
        assert_eq!(log.size_bytes(), 0);
        assert_eq!(log.log_start_offset(), 32);
        assert_eq!(log.log_end_offset(), 32);
        assert!(log.read(32, 100, i64::MAX, true).unwrap().is_empty());
        assert!(lso_after_first_pass < 32);
        assert_eq!(produce(&mut log, Codec::None, &[NOW]).first_offset, 32);
    }

    #[test]
    fn retention_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_bytes: 1_500,
            retention_ms: -1,
            ..small_segments()
        };
        let mut log = filled(dir.path(), config);
        let before = log.num_segments();
        let deleted = log.apply_retention(NOW).unwrap();
        assert!(deleted > 0);
        assert_eq!(log.num_segments(), before - deleted);
        assert!(log.size_bytes() >= 1_500);
        let first = log.older.values().next().unwrap().size();
        assert!(log.size_bytes() - first < 1_500);
        assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
        // Never the active segment.
        log.update_config(LogConfig {
            retention_bytes: 0,
            ..log.config().clone()
        });
        log.apply_retention(NOW).unwrap();
        assert_eq!(log.num_segments(), 1);
        assert_eq!(log.log_end_offset(), 40);
    }

    #[test]
    fn delete_records_before_persists_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled(dir.path(), small_segments());
        let second = log.segment_base_offsets()[1];
        let file = dir.path().join(crate::log::LOG_START_OFFSET_FILE);
        // A start that deletes no segment: the file is written after the partition lock is released (here: by
        // hand).
        assert_eq!(log.delete_records_before(1).unwrap(), 1);
        assert!(!file.exists());
        log.sync_checkpoints().unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "1");
        // One that deletes segments writes the file first.
        assert_eq!(log.delete_records_before(second + 1).unwrap(), second + 1);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap().trim(),
            (second + 1).to_string()
        );
        assert_eq!(log.segment_base_offsets()[0], second);
        assert!(matches!(
            log.read(second, 100, i64::MAX, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        // Reading at the new start returns the batch containing it.
        assert_eq!(
            bases(&log.read(second + 1, 1, i64::MAX, true).unwrap()),
            vec![second]
        );
        assert_eq!(log.delete_records_before(1).unwrap(), second + 1);
        assert!(matches!(
            log.delete_records_before(41),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        drop(log); // unclean
        let log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.log_start_offset(), second + 1);
        log.close().unwrap();
        let mut log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.log_start_offset(), second + 1);
        // Up to the log end offset: the active segment stays.
        assert_eq!(log.delete_records_before(40).unwrap(), 40);
        assert_eq!(log.num_segments(), 1);
        assert!(log.read(40, 100, i64::MAX, true).unwrap().is_empty());
    }

    /// A segment that cannot be deleted takes the log offline, and the raised log start offset is already on disk:
    /// the segment meant to go is not served again, before or after a restart.
    #[test]
    fn failed_segment_delete_takes_the_log_offline_after_raising_the_start() {
        use crate::log::fault::plan;
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_bytes: 1_500,
            retention_ms: -1,
            ..small_segments()
        };
        let mut log = filled(dir.path(), config.clone());
        let first = log.segment_base_offsets()[0];
        plan::fail(Point::Delete, 0, libc::EIO, 1);
        let err = log.apply_retention(NOW).unwrap_err();
        plan::clear();
        assert!(matches!(err, LogError::Offline(_)), "{err}");
        assert!(log.health().is_offline());
        let lso = log.log_start_offset();
        assert!(lso > first);
        drop(log); // not closed cleanly
        let log = Log::open(dir.path(), config, NOW).unwrap();
        assert_eq!(
            log.segment_base_offsets()[0],
            first,
            "the segment is still there"
        );
        assert_eq!(log.log_start_offset(), lso);
        assert!(matches!(
            log.read(first, 100, i64::MAX, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
    }

    /// The log-start-offset file is handled like the recovery point's: one that cannot be created deletes no
    /// segment (an I/O error, retried by the caller), a failed fsync of it takes the log offline; either way no
    /// segment goes before the file holds the new start.
    #[test]
    fn log_start_offset_checkpoint_failures() {
        use crate::log::checkpoint::read_offset;
        use crate::log::fault::plan;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(crate::log::LOG_START_OFFSET_FILE);
        let mut log = filled(dir.path(), small_segments());
        let bases = log.segment_base_offsets();
        plan::fail(Point::Open, 0, libc::EMFILE, 1);
        let err = log.delete_records_before(bases[1] + 1).unwrap_err();
        plan::clear();
        assert!(matches!(err, LogError::Io(_)), "{err}");
        assert!(!log.health().is_offline());
        assert_eq!(read_offset(&file).unwrap(), None);
        assert_eq!(log.segment_base_offsets(), bases);
        plan::fail(Point::Fsync, 0, libc::EIO, 1);
        let err = log.delete_records_before(bases[1] + 1).unwrap_err();
        plan::clear();
        assert!(matches!(err, LogError::Offline(_)), "{err}");
        assert!(log.health().is_offline());
        assert_eq!(log.segment_base_offsets(), bases);
        drop(log);
        let log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.segment_base_offsets(), bases);
    }
}
