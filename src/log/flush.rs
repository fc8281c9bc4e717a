//! Flushing (fsync) and the log's health.
//!
//! fsync runs outside the partition lock, as Kafka's `UnifiedLog.flush` syncs segments outside its log lock: under
//! the lock [`Log::flush_job`] captures the files that may hold unflushed data (shared `Arc<File>`s) and the offset
//! they reach; the caller releases the lock and runs [`FlushJob::run`]; under the lock again
//! [`Log::complete_flush`] moves the recovery point, only if the fsync succeeded and nothing was truncated
//! meanwhile. A failed fsync takes the log offline: Linux may have dropped the dirty pages and cleared the error,
//! so a retry could "succeed" without the data being on disk.
//!
//! Only a failed fsync takes the log offline. The log holds its directory open, so no file is opened on the way to
//! an fsync; a checkpoint file that cannot even be created (EMFILE) is left to the next sync (see
//! `checkpoint::OffsetCheckpoints`).
//!
//! [`LogHealth`] is shared (`Arc`) by the log, its partition (which reads it without the log lock) and the
//! background fsync after a roll ([`RollFlush`]). Once offline a log stays offline: every operation answers
//! [`LogError::Offline`] (Kafka's `KAFKA_STORAGE_ERROR`) until a restart recovers it from disk.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{error, warn};

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
    /// The partition directory (held open by the log), when segment files were created or removed since its last
    /// fsync.
    dir: Option<Arc<File>>,
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
            dir.sync_all()?;
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
            dir: dir_dirty.then(|| self.dir_file.clone()),
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
        if let Some(durable) = self.roll_flush.durable(self.generation) {
            if durable > self.recovery_point && durable <= self.log_end_offset() {
                self.set_recovery_point(durable);
            }
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

    /// fsyncs every segment that may hold unflushed data and advances (and persists, or leaves to the next sync if
    /// its file cannot be created) the recovery point to the log end offset, all under the caller's `&mut` (close, tests). The broker uses the three steps instead.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.check_online()?;
        if let Some(job) = self.flush_job() {
            let result = job.run();
            let now = self.last_seen_ms;
            self.complete_flush(&job, result, now)?;
        }
        self.checkpoints.sync_or_retry_later()
    }

    /// [`Log::flush_job_if_due`] and the flush, in one call. Returns whether it flushed.
    pub fn maybe_flush_by_time(&mut self, now_ms: i64) -> Result<bool, LogError> {
        match self.flush_job_if_due(now_ms)? {
            Some(job) => {
                let result = job.run();
                self.complete_flush(&job, result, now_ms)?;
                self.checkpoints.sync_or_retry_later()?;
                Ok(true)
            }
            None => self.checkpoints.sync_or_retry_later().map(|()| false),
        }
    }

    /// Moves the recovery point in memory (what is durable: the fsync already happened) and asks for its file to
    /// be rewritten; the file is written after the lock by [`super::checkpoint::OffsetCheckpoints::sync`]. Only a
    /// failed fsync of it takes the log offline; a file that cannot even be created (EMFILE) is retried by the
    /// next sync.
    pub(super) fn set_recovery_point(&mut self, offset: i64) {
        self.recovery_point = offset;
        self.checkpoints.want(Checkpoint::RecoveryPoint, offset);
    }
}

/// The background fsync that follows segment rolls: at most one worker thread per log, always working on the
/// newest roll.
///
/// A roll runs inside an append, under the partition lock, so it only hands over the closed segments' files; the
/// worker (started when there is work, gone when there is none) fsyncs them and the directory. Requests that
/// arrive while it runs replace each other, so a fast producer with small segments costs one thread and one pass
/// at a time, not a thread and a pass over every unflushed segment per roll. The result is tagged with the log's
/// truncation generation: a truncation after the roll lowers what is durable, and a late result of the older
/// generation must not raise it again over offsets that were rewritten and never fsynced.
#[derive(Debug)]
pub(super) struct RollFlush {
    dir: PathBuf,
    dir_file: Arc<File>,
    health: Arc<LogHealth>,
    state: Mutex<RollState>,
}

#[derive(Debug)]
struct RollState {
    /// The newest request the worker has not picked up yet.
    pending: Option<RollRequest>,
    /// A worker thread is running (and will pick up `pending`).
    running: bool,
    /// The generation `durable` belongs to.
    generation: u64,
    /// Offsets below this are durable (in `generation`).
    durable: i64,
    /// Worker threads started so far.
    workers: u64,
}

#[derive(Debug)]
struct RollRequest {
    files: Vec<Arc<File>>,
    target: i64,
    generation: u64,
}

impl RollFlush {
    pub(super) fn new(
        dir: &Path,
        dir_file: Arc<File>,
        health: Arc<LogHealth>,
        durable: i64,
    ) -> RollFlush {
        RollFlush {
            dir: dir.to_path_buf(),
            dir_file,
            health,
            state: Mutex::new(RollState {
                pending: None,
                running: false,
                generation: 0,
                durable,
                workers: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, RollState> {
        // Plain data, always consistent between statements: safe to use past a panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the roll fsyncs made durable, if it belongs to `generation` (the log's current one).
    pub(super) fn durable(&self, generation: u64) -> Option<i64> {
        let s = self.state();
        (s.generation == generation).then_some(s.durable)
    }

    /// A truncation to `offset` started `generation`: nothing at or above `offset` is durable any more, and a
    /// request or result of an older generation no longer counts.
    pub(super) fn truncated(&self, generation: u64, offset: i64) {
        let mut s = self.state();
        s.generation = generation;
        s.durable = s.durable.min(offset);
        if s.pending
            .as_ref()
            .is_some_and(|r| r.generation != generation)
        {
            s.pending = None;
        }
    }

    /// Asks for `files` (and the directory) to be fsynced, after which everything below `target` is durable.
    /// Replaces a request the worker has not picked up yet (the newer one covers it); starts a worker if none runs.
    pub(super) fn request(self: &Arc<Self>, files: Vec<Arc<File>>, target: i64, generation: u64) {
        {
            let mut s = self.state();
            s.pending = Some(RollRequest {
                files,
                target,
                generation,
            });
            if s.running {
                return;
            }
            s.running = true;
            s.workers += 1;
        }
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("vltava-roll-fsync".into())
            .spawn(move || this.work());
        if let Err(e) = spawned {
            let mut s = self.state();
            s.running = false;
            s.pending = None;
            warn!(dir = %self.dir.display(), error = %e,
                "cannot start the background fsync after a roll; the recovery point waits for the next flush");
        }
    }

    /// The worker: fsyncs the newest request until there is none.
    fn work(&self) {
        loop {
            let req = {
                let mut s = self.state();
                match s.pending.take() {
                    Some(r) => r,
                    None => {
                        s.running = false;
                        return;
                    }
                }
            };
            if self.health.is_offline() {
                continue;
            }
            let synced = req
                .files
                .iter()
                .try_for_each(|f| f.sync_data())
                .and_then(|()| self.dir_file.sync_all());
            match synced {
                Ok(()) => self.finish(req.generation, req.target),
                Err(e) => self
                    .health
                    .set_offline(&self.dir, &format!("fsync after segment roll failed: {e}")),
            }
        }
    }

    /// Records that everything below `target` was fsynced in `generation`.
    fn finish(&self, generation: u64, target: i64) {
        let mut s = self.state();
        if s.generation == generation {
            s.durable = s.durable.max(target);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use crate::log::config::LogConfig;
    use crate::log::fault::plan;
    use crate::log::log::RECOVERY_POINT_FILE;
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

    /// The job holds the files of exactly the segments that may hold unflushed data: none of a segment wholly
    /// below the recovery point.
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
        while log.num_segments() < 3 {
            produce(&mut log, Codec::None, &[1, 2]);
        }
        log.flush().unwrap();
        let rp = log.recovery_point();
        assert_eq!(rp, log.log_end_offset());
        assert!(log.flush_job().is_none());
        while log.num_segments() < 5 {
            produce(&mut log, Codec::None, &[1, 2]);
        }
        let job = log.flush_job().unwrap();
        assert_eq!(job.target(), log.log_end_offset());
        let flushed: Vec<&crate::log::segment::LogSegment> = log
            .older
            .values()
            .filter(|s| s.next_offset() <= rp)
            .collect();
        assert_eq!(
            flushed.len(),
            2,
            "the first two segments are wholly flushed"
        );
        let holds = |f: &Arc<File>| job.files.iter().any(|j| Arc::ptr_eq(j, f));
        for seg in &flushed {
            assert!(
                !seg.files().iter().any(holds),
                "flushed segment {}",
                seg.base_offset()
            );
        }
        let unflushed: Vec<&crate::log::segment::LogSegment> = log
            .older
            .values()
            .chain(std::iter::once(&log.active))
            .filter(|s| s.next_offset() > rp)
            .collect();
        assert_eq!(unflushed.len(), 3);
        for seg in &unflushed {
            assert!(
                seg.files().iter().all(holds),
                "unflushed segment {}",
                seg.base_offset()
            );
        }
        assert_eq!(job.files.len(), 3 * unflushed.len());
    }

    /// A roll fsync whose result arrives after a truncation must not raise what is durable over offsets that were
    /// removed and written again (never fsynced).
    #[test]
    fn late_roll_fsync_does_not_undo_a_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), cfg(), NOW).unwrap();
        for _ in 0..5 {
            produce(&mut log, Codec::None, &[1, 2]);
        }
        // A roll at 10 hands its fsync over; the fsync is slow...
        let rolled_in = log.generation;
        // ...meanwhile the log is truncated to 4 and grows past 10 again.
        log.truncate_to(4).unwrap();
        for _ in 0..5 {
            produce(&mut log, Codec::None, &[1, 2]);
        }
        log.roll_flush.finish(rolled_in, 10);
        assert!(log.flush_job_if_due(NOW).unwrap().is_none());
        assert_eq!(
            log.recovery_point(),
            0,
            "offsets 4..10 were rewritten after the roll"
        );
        // A roll fsync of the current generation still counts.
        log.roll_flush.finish(log.generation, 10);
        log.flush_job_if_due(NOW).unwrap();
        assert_eq!(log.recovery_point(), 10);
    }

    /// Rolls that arrive while a roll fsync runs start no thread: the newest replaces the pending one, and the
    /// worker's next pass covers it.
    #[test]
    fn roll_fsyncs_coalesce_into_one_worker() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), cfg(), NOW).unwrap();
        let rf = log.roll_flush.clone();
        rf.state().running = true; // a worker is busy with an earlier roll
        for target in 1..=100 {
            rf.request(vec![log.active.file()], target, 0);
        }
        {
            let s = rf.state();
            assert_eq!(s.workers, 0, "no thread while one runs");
            assert_eq!(s.pending.as_ref().map(|r| r.target), Some(100));
        }
        rf.work(); // the busy worker's next pass
        let s = rf.state();
        assert_eq!(
            (s.durable, s.running, s.pending.is_none()),
            (100, false, true)
        );
    }

    /// Real rolls: the closed segments become durable in the background and the recovery point follows.
    #[test]
    fn rolls_make_closed_segments_durable_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), crate::log::testutil::small_segments(), NOW).unwrap();
        while log.num_segments() < 4 {
            produce(&mut log, Codec::None, &[1, 2]);
        }
        let active_base = log.active.base_offset();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while log.recovery_point() < active_base {
            assert!(
                std::time::Instant::now() < deadline,
                "roll fsync never finished"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
            log.flush_job_if_due(NOW).unwrap();
        }
        assert_eq!(log.recovery_point(), active_base);
        assert!(log.roll_flush.state().workers <= 3);
    }

    /// The directory is held open: a roll fsync after the partition directory was renamed (a deleted topic's
    /// directory is moved aside before its files go) neither fails nor takes the log offline.
    #[test]
    fn roll_fsync_of_a_moved_directory_stays_online() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("t-0");
        let mut log = Log::open(&part, cfg(), NOW).unwrap();
        produce(&mut log, Codec::None, &[1, 2]);
        std::fs::rename(&part, dir.path().join("t-0.x-delete")).unwrap();
        let rf = log.roll_flush.clone();
        rf.state().running = true;
        rf.request(vec![log.active.file()], 2, log.generation);
        rf.work();
        assert!(!log.health().is_offline(), "{:?}", log.health().reason());
        assert_eq!(rf.durable(log.generation), Some(2));
    }

    /// A recovery-point file that cannot even be created (EMFILE) is not a failed fsync: the data was fsynced,
    /// the log stays online and the next flush writes the file. A failed fsync of it does take the log offline.
    #[test]
    fn checkpoint_that_cannot_be_created_is_retried_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let rp_file = dir.path().join(RECOVERY_POINT_FILE);
        let mut log = Log::open(dir.path(), cfg(), NOW).unwrap();
        produce(&mut log, Codec::None, &[1, 2]);
        plan::fail(Point::Open, 0, libc::EMFILE, 1);
        let flushed = log.flush();
        plan::clear();
        flushed.unwrap();
        assert!(!log.health().is_offline());
        // The data is durable (memory says so); the file lags and is written by the next sync.
        assert_eq!(log.recovery_point(), 2);
        assert!(!rp_file.exists());
        log.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&rp_file).unwrap().trim(), "2");
        // The job fsyncs the active segment's three files; the fourth fsync is the checkpoint's.
        produce(&mut log, Codec::None, &[3]);
        plan::fail(Point::Fsync, 3, libc::EIO, 1);
        let flushed = log.flush();
        plan::clear();
        assert!(matches!(flushed, Err(LogError::Offline(_))), "{flushed:?}");
        assert!(log.health().is_offline());
        assert_eq!(std::fs::read_to_string(&rp_file).unwrap().trim(), "2");
    }
}
