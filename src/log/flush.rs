//! Flushing (fsync) and the log's health.
//!
//! fsync runs outside the partition lock, as Kafka's `UnifiedLog.flush` syncs segments outside its log lock: under
//! the lock [`Log::flush_job`] captures the files that may hold unflushed data (shared `Arc<File>`s) and the offset
//! they reach; the caller releases the lock and runs [`FlushJob::run`]; under the lock again
//! [`Log::complete_flush`] moves the recovery point, only if the fsync succeeded and nothing was truncated
//! meanwhile. A failed fsync takes the log offline: Linux may have dropped the dirty pages and cleared the error,
//! so a retry could "succeed" without the data being on disk.
//!
//! [`LogHealth`] is shared (`Arc`) by the log, its partition (which reads it without the log lock) and the
//! background fsync after a roll. Once offline a log stays offline: every operation answers
//! [`LogError::Offline`] (Kafka's `KAFKA_STORAGE_ERROR`) until a restart recovers it from disk.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing::error;

use super::checkpoint::Checkpoint;
use super::error::LogError;
use super::fault::{self, Point};
use super::log::Log;

/// Whether a log still matches its files. Written once (online -> offline), read lock-free.
#[derive(Debug, Default)]
pub struct LogHealth {
    offline: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl LogHealth {
    /// True once the log has failed and must not be used.
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    /// Why the log went offline.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Ok while online, else the error every operation answers.
    pub fn check(&self) -> Result<(), LogError> {
        if self.is_offline() {
            return Err(LogError::Offline(
                self.reason().unwrap_or_else(|| "log is offline".into()),
            ));
        }
        Ok(())
    }

    /// Takes the log offline (the first reason wins) and says so loudly, once.
    pub fn set_offline(&self, dir: &Path, reason: &str) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason.to_string());
            error!(dir = %dir.display(), %reason,
                "log is OFFLINE after a storage failure: produce, fetch and list-offsets answer KAFKA_STORAGE_ERROR until restart");
        }
        self.offline.store(true, Ordering::Release);
    }
}

/// Files to fsync and the offset that becomes durable when they are; see [`Log::flush_job`].
#[derive(Debug)]
pub struct FlushJob {
    files: Vec<Arc<File>>,
    /// The partition directory, when segment files were created or removed since its last fsync.
    dir: Option<PathBuf>,
    target: i64,
    generation: u64,
    dir_changes: u64,
}

impl FlushJob {
    /// fsyncs the files (and the directory if needed). Blocking: run it off the partition lock and off the async
    /// workers where the caller can.
    pub fn run(&self) -> Result<(), LogError> {
        for f in &self.files {
            fault::check(Point::Fsync)?;
            f.sync_data()?;
        }
        if let Some(dir) = &self.dir {
            fault::check(Point::Fsync)?;
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// The offset below which everything is durable once [`FlushJob::run`] succeeded.
    pub fn target(&self) -> i64 {
        self.target
    }
}

impl Log {
    /// The shared health flag (for the partition, which checks it without the log lock).
    pub fn health(&self) -> Arc<LogHealth> {
        self.health.clone()
    }

    /// Ok while the log is usable.
    pub(super) fn check_online(&self) -> Result<(), LogError> {
        self.health.check()
    }

    /// Takes the log offline and returns the error to answer.
    pub(super) fn go_offline(&self, reason: String) -> LogError {
        self.health.set_offline(&self.dir, &reason);
        LogError::Offline(reason)
    }

    /// True when `flush.messages` unflushed messages have accumulated (checked after each append).
    pub fn flush_due_by_messages(&self) -> bool {
        self.log_end_offset().saturating_sub(self.recovery_point) >= self.config.flush_messages
    }

    /// What to fsync to make everything up to the log end offset durable, or `None` if it already is.
    pub fn flush_job(&self) -> Option<FlushJob> {
        let target = self.log_end_offset();
        let dir_dirty = self.dir_changes > self.dir_synced;
        if target <= self.recovery_point && !dir_dirty {
            return None;
        }
        let mut files = Vec::new();
        for seg in self.older.values() {
            if seg.next_offset() > self.recovery_point {
                files.extend(seg.files());
            }
        }
        files.extend(self.active.files());
        Some(FlushJob {
            files,
            dir: dir_dirty.then(|| self.dir.clone()),
            target,
            generation: self.generation,
            dir_changes: self.dir_changes,
        })
    }

    /// Folds in what the background fsync after a roll made durable, then returns a flush job if there is
    /// unflushed data and the last flush is at least `flush.ms` old.
    pub fn flush_job_if_due(&mut self, now_ms: i64) -> Result<Option<FlushJob>, LogError> {
        self.check_online()?;
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        let durable = self.durable.load(Ordering::Acquire);
        if durable > self.recovery_point && durable <= self.log_end_offset() {
            self.set_recovery_point(durable);
        }
        if self.log_end_offset() > self.recovery_point
            && now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_ms
        {
            return Ok(self.flush_job());
        }
        Ok(None)
    }

    /// Records the outcome of a [`FlushJob`]: on success the recovery point moves to the job's target (unless the
    /// log was truncated meanwhile, which may have removed offsets the job covered); on failure the log goes
    /// offline and the recovery point never moves.
    pub fn complete_flush(
        &mut self,
        job: &FlushJob,
        result: Result<(), LogError>,
        now_ms: i64,
    ) -> Result<(), LogError> {
        if let Err(e) = result {
            return Err(self.go_offline(format!("fsync failed: {e}")));
        }
        self.check_online()?;
        self.last_flush_ms = self.last_flush_ms.max(now_ms);
        if job.generation != self.generation {
            return Ok(());
        }
        self.dir_synced = self.dir_synced.max(job.dir_changes);
        if job.target > self.recovery_point && job.target <= self.log_end_offset() {
            self.set_recovery_point(job.target);
        }
        Ok(())
    }

    /// fsyncs every segment that may hold unflushed data and advances (and persists) the recovery point to the
    /// log end offset, all under the caller's `&mut` (close, tests). The broker uses the three steps instead.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.check_online()?;
        if let Some(job) = self.flush_job() {
            let result = job.run();
            let now = self.last_seen_ms;
            self.complete_flush(&job, result, now)?;
        }
        self.checkpoints.sync()
    }

    /// [`Log::flush_job_if_due`] and the flush, in one call. Returns whether it flushed.
    pub fn maybe_flush_by_time(&mut self, now_ms: i64) -> Result<bool, LogError> {
        match self.flush_job_if_due(now_ms)? {
            Some(job) => {
                let result = job.run();
                self.complete_flush(&job, result, now_ms)?;
                self.checkpoints.sync()?;
                Ok(true)
            }
            None => self.checkpoints.sync().map(|()| false),
        }
    }

    /// Moves the recovery point in memory (what is durable: the fsync already happened) and asks for its file to
    /// be rewritten; the file is written after the lock by [`super::checkpoint::OffsetCheckpoints::sync`], whose
    /// failure takes the log offline (the directory is failing).
    pub(super) fn set_recovery_point(&mut self, offset: i64) {
        self.recovery_point = offset;
        self.checkpoints.want(Checkpoint::RecoveryPoint, offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::config::LogConfig;
    use crate::log::fault::plan;
    use crate::log::testutil::{cfg, produce, read_all, Codec, NOW};

    #[test]
    fn failed_fsync_takes_the_log_offline_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), cfg(), NOW).unwrap();
        produce(&mut log, Codec::None, &[1, 2]);
        plan::fail(Point::Fsync, 0, libc::EIO, 1);
        assert!(matches!(log.flush(), Err(LogError::Offline(_))));
        plan::clear();
        assert_eq!(log.recovery_point(), 0);
        // Linux may have dropped the dirty pages and cleared the error: a second fsync "succeeding" proves
        // nothing, so the recovery point must never move again.
        assert!(matches!(log.flush(), Err(LogError::Offline(_))));
        assert_eq!(log.recovery_point(), 0);
        assert!(log.health().is_offline());
        let mut buf = crate::log::testutil::batch(Codec::None, &[3], 5);
        assert!(matches!(
            log.append_as_leader(&mut buf, 0, NOW),
            Err(LogError::Offline(_))
        ));
        assert!(matches!(
            log.read(0, 100, i64::MAX, true),
            Err(LogError::Offline(_))
        ));
        // Not closed cleanly: the next open recovers from the files.
        assert!(log.close().is_err());
        assert!(!dir.path().join(super::super::CLEAN_SHUTDOWN_FILE).exists());
        let log = Log::open(dir.path(), cfg(), NOW).unwrap();
        assert_eq!(log.log_end_offset(), 2);
    }

    #[test]
    fn flush_racing_a_truncation_does_not_move_the_recovery_point() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), cfg(), NOW).unwrap();
        produce(&mut log, Codec::None, &[1, 2]);
        produce(&mut log, Codec::None, &[3, 4]);
        let job = log.flush_job().unwrap();
        assert_eq!(job.target(), 4);
        // While the fsync runs without the lock, the log is truncated and grows again past the job's target.
        log.truncate_to(2).unwrap();
        produce(&mut log, Codec::None, &[5, 6]);
        produce(&mut log, Codec::None, &[7, 8]);
        let result = job.run();
        log.complete_flush(&job, result, NOW).unwrap();
        assert!(
            log.recovery_point() <= 2,
            "offsets 2..4 were rewritten after the job was taken: {}",
            log.recovery_point()
        );
        log.flush().unwrap();
        assert_eq!(log.recovery_point(), 6);
        assert_eq!(crate::log::testutil::decode(&read_all(&log)).len(), 6);
    }

    #[test]
    fn flush_job_covers_only_unflushed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 500,
            flush_messages: 4,
            ..cfg()
        };
        let mut log = Log::open(dir.path(), config, NOW).unwrap();
        assert!(log.flush_job().is_none(), "nothing to flush");
        produce(&mut log, Codec::None, &[1, 2]);
        assert!(!log.flush_due_by_messages());
        produce(&mut log, Codec::None, &[1, 2]);
        assert!(log.flush_due_by_messages());
        log.flush().unwrap();
        assert_eq!(log.recovery_point(), 4);
        assert!(log.flush_job().is_none());
    }
}
