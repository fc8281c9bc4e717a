//! Per-partition replica state: the log, the high watermark, the leader epoch and the waiters woken when the
//! high watermark moves.
//!
//! Ownership: each [`Partition`] owns its [`Log`] behind its own `RwLock` (appends take it for writing only for
//! the append itself, fetches for reading), so partitions never contend with each other. The high watermark is
//! an atomic published, with the bytes appended so far ([`HighWatermark`]), through a `watch` channel that
//! long-poll fetches await (they compare positions and re-read only once enough bytes arrived). The
//! high watermark is kept apart from the log end offset: with one replica it follows the log end offset right
//! after each append; with followers it will be the minimum over the ISR.
//!
//! Transactions: the last stable offset (LSO) is the lower of the high watermark and the first offset of the
//! oldest open transaction (`Log::first_unstable_offset`); it is recomputed under the log's write lock whenever
//! the high watermark may move and published with it, so read_committed waiters wake when it moves.
//! A transactional batch reaches [`Partition::append`] only after the produce handler checked it with the
//! transaction coordinator (KIP-890: the partition is part of the producer's transaction, so the coordinator
//! will end it and the LSO cannot hang; see `api/produce.rs`). Markers come only through
//! [`Partition::append_marker`]. [`Partition::has_ongoing_txn`] tells the handler when no check is needed.
//!
//! Storage failures: the log's shared [`LogHealth`] is read here without the log lock; once it is offline every
//! append, read and DeleteRecords answers [`LogError::Offline`] (KAFKA_STORAGE_ERROR), and the replica manager
//! reports the partition offline in Metadata. fsync never runs under the log lock: an append that reaches
//! `flush.messages` and the periodic `flush.ms` check take a [`FlushJob`] under the lock, run it after releasing
//! it, and re-take the lock only to record the result. An append that needs a `flush.messages` fsync moves the
//! high watermark only once that fsync succeeded (Kafka flushes inside the append, before the high watermark
//! moves), so no consumer ever reads a batch whose produce then fails with KAFKA_STORAGE_ERROR. The
//! recovery-point and log-start-offset files are written after the lock is released too
//! (`OffsetCheckpoints::sync`), except by truncation (see `Log::truncate_to`) and by a segment deletion, which
//! writes the new log start offset first (see `log/retention.rs`).

pub mod manager;

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use uuid::Uuid;

use crate::log::cleaner::{self, CleanStats, CompactionConfig};
use crate::log::producer_state::CompletedTxn;
use crate::log::txn_index::AbortedTxn;
use crate::log::{
    validate_producer_records, AppendInfo, AppendOrigin, BatchHeader, FileSlice, FlushJob, Log,
    LogConfig, LogError, LogHealth,
};

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The log refused the batch.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The partition was deleted while the request was in flight.
    #[error("This server does not host this topic-partition.")]
    Deleted,
    /// `acks=all` with fewer in-sync replicas than `min.insync.replicas`.
    #[error("Messages are rejected since there are fewer in-sync replicas than required.")]
    NotEnoughReplicas,
}

/// What a fetch read from one partition.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole record batches, as file ranges (sent with `sendfile`).
    pub records: Vec<FileSlice>,
    /// High watermark at the time of the read.
    pub high_watermark: i64,
    /// Last stable offset: the high watermark, or the first offset of the oldest open transaction if lower.
    pub last_stable_offset: i64,
    /// The offset the read stopped at: the LSO for read_committed, else the high watermark.
    pub read_limit: i64,
    /// read_committed only: the aborted transactions overlapping the records returned.
    pub aborted: Vec<AbortedTxn>,
    /// Log start offset.
    pub log_start_offset: i64,
}

/// The high watermark as published to waiting fetches: the offset, and the bytes appended to this partition
/// since it was opened. Like Kafka's `LogOffsetMetadata` (offset, segment, position), it lets a waiter tell how
/// many bytes arrived since it last read without reading the log: the difference of two `appended_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HighWatermark {
    /// The high watermark offset.
    pub offset: i64,
    /// Bytes appended since the partition was opened (monotonic; only differences mean anything).
    pub appended_bytes: u64,
    /// The last stable offset (read_committed waiters re-read when it moves).
    pub last_stable: i64,
}

/// One partition replica hosted by this broker.
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub index: i32,
    /// Topic ID.
    pub topic_id: Uuid,
    log: RwLock<Log>,
    leader_epoch: AtomicI32,
    min_insync_replicas: AtomicI32,
    isr_size: AtomicI32,
    high_watermark: AtomicI64,
    /// The last stable offset, recomputed with the high watermark under the log's write lock.
    last_stable: AtomicI64,
    hw_tx: watch::Sender<HighWatermark>,
    deleted: AtomicBool,
    /// The log's health flag, shared with the log (readable without its lock).
    health: Arc<LogHealth>,
    /// First offsets of appends whose `flush.messages` fsync is still running: the high watermark stays below
    /// the lowest. Changed only under the log's write lock.
    unflushed: Mutex<Vec<i64>>,
}

impl Partition {
    /// Wraps an opened log.
    pub fn new(
        topic: String,
        index: i32,
        topic_id: Uuid,
        log: Log,
        leader_epoch: i32,
        min_insync: i32,
    ) -> Partition {
        let hw = log.log_end_offset();
        let lso = log.first_unstable_offset().map_or(hw, |f| f.min(hw));
        let health = log.health();
        let (hw_tx, _) = watch::channel(HighWatermark {
            offset: hw,
            appended_bytes: 0,
            last_stable: lso,
        });
        Partition {
            topic,
            index,
            topic_id,
            log: RwLock::new(log),
            leader_epoch: AtomicI32::new(leader_epoch),
            min_insync_replicas: AtomicI32::new(min_insync),
            isr_size: AtomicI32::new(1),
            high_watermark: AtomicI64::new(hw),
            last_stable: AtomicI64::new(lso),
            hw_tx,
            deleted: AtomicBool::new(false),
            health,
            unflushed: Mutex::new(Vec::new()),
        }
    }

    /// True once the log failed and the partition answers KAFKA_STORAGE_ERROR.
    pub fn is_offline(&self) -> bool {
        self.health.is_offline()
    }

    /// Why the partition is offline, if it is.
    pub fn offline_reason(&self) -> Option<String> {
        self.is_offline().then(|| self.health.reason()).flatten()
    }

    /// Runs a flush job with the log lock released, records its outcome under the lock, then writes the
    /// recovery-point file with the lock released again.
    fn run_flush(&self, job: FlushJob, now_ms: i64) -> Result<(), LogError> {
        let result = job.run();
        let checkpoints = match self.write() {
            Some(mut log) => {
                log.complete_flush(&job, result, now_ms)?;
                log.checkpoints()
            }
            // Deleted meanwhile: nothing left to record.
            None => return Ok(()),
        };
        checkpoints.sync_or_retry_later()
    }

    /// Moves the high watermark up to the log end offset, but not past an append whose `flush.messages` fsync is
    /// still running. `done` is the first offset of an append whose fsync just succeeded, `pending` that of one
    /// whose fsync is about to run. Call under the log's write lock; publish with [`Partition::publish_hw`]
    /// after releasing it.
    fn advance_hw(&self, log: &Log, done: Option<i64>, pending: Option<i64>) {
        // Plain data, consistent between statements: safe to use past a panic.
        let mut unflushed = self.unflushed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pos) = done.and_then(|d| unflushed.iter().position(|&o| o == d)) {
            unflushed.swap_remove(pos);
        }
        unflushed.extend(pending);
        let ceiling = unflushed.iter().copied().min().unwrap_or(i64::MAX);
        // Single in-sync replica: everything appended is replicated to the whole ISR.
        let hw = log.log_end_offset().min(ceiling);
        let hw = self.high_watermark.fetch_max(hw, Ordering::AcqRel).max(hw);
        let lso = log.first_unstable_offset().map_or(hw, |f| f.min(hw));
        self.last_stable.store(lso, Ordering::Release);
    }

    /// Counts `appended` more bytes and wakes the waiters on the high watermark (long-poll fetches) if it moved.
    /// Bytes appended while the high watermark is held back (a `flush.messages` fsync running) are counted now
    /// and seen by waiters when it moves. Concurrent appends may publish out of order; each adds its own bytes
    /// and takes the latest offset, so the last publish is exact.
    fn publish_hw(&self, appended: usize) {
        let offset = self.high_watermark();
        let last_stable = self.last_stable_offset();
        self.hw_tx.send_if_modified(|hw| {
            hw.appended_bytes += appended as u64;
            let moved = hw.offset != offset || hw.last_stable != last_stable;
            hw.offset = offset;
            hw.last_stable = last_stable;
            moved
        });
    }

    /// Runs an append's `flush.messages` fsync with the log lock released; only its success lets the high
    /// watermark pass the append (starting at `first_offset`).
    fn run_append_flush(
        &self,
        job: FlushJob,
        first_offset: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let result = job.run();
        let (outcome, checkpoints) = match self.write() {
            Some(mut log) => {
                let outcome = log.complete_flush(&job, result, now_ms);
                if outcome.is_ok() {
                    self.advance_hw(&log, Some(first_offset), None);
                }
                (outcome, Some(log.checkpoints()))
            }
            // Deleted meanwhile: nothing left to record.
            None => (Ok(()), None),
        };
        self.publish_hw(0);
        outcome?;
        // The recovery-point file, with the lock released (the data is durable: a file that cannot be created
        // waits for the next sync).
        match checkpoints {
            Some(c) => c.sync_or_retry_later(),
            None => Ok(()),
        }
    }

    /// Flushes if `flush.ms` has passed since the last flush (the background flush loop).
    pub fn flush_if_due(&self, now_ms: i64) -> Result<(), LogError> {
        let (job, checkpoints) = match self.write() {
            Some(mut log) => {
                // The periodic producer expiry rides on this loop (it checks at most every 10 minutes).
                log.expire_producers(now_ms);
                (log.flush_job_if_due(now_ms)?, log.checkpoints())
            }
            None => return Ok(()),
        };
        match job {
            Some(job) => self.run_flush(job, now_ms),
            // The recovery point may have moved after a background roll fsync.
            None => checkpoints.sync_or_retry_later(),
        }
    }

    /// Writes the log's checkpoint files if memory moved past them (after retention, under no lock; retention
    /// already wrote the log start offset before deleting any segment).
    pub fn sync_checkpoints(&self) -> Result<(), LogError> {
        let checkpoints = self.read_log().checkpoints();
        checkpoints.sync_or_retry_later()
    }

    /// The log for writing, or `None` once the partition was deleted (its directory may by then belong to a
    /// re-created topic of the same name, so nothing may be written through this handle any more).
    fn write(&self) -> Option<RwLockWriteGuard<'_, Log>> {
        // A panic while holding the lock cannot leave the log half-written in memory in a way a reader could
        // misinterpret (file state is recovered by CRC scan), so continuing past poison is safe.
        let guard = self.log.write().unwrap_or_else(|p| p.into_inner());
        (!self.deleted.load(Ordering::Acquire)).then_some(guard)
    }

    /// Marks the partition deleted. Taken under the log lock, so an append either completed before (into the
    /// directory about to be removed) or sees the mark and fails.
    pub fn mark_deleted(&self) {
        let _guard = self.log.write().unwrap_or_else(|p| p.into_inner());
        self.deleted.store(true, Ordering::Release);
    }

    fn read_log(&self) -> RwLockReadGuard<'_, Log> {
        self.log.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Validates and appends a producer's record batches as leader. `acks_all` checks min.insync.replicas first.
    ///
    /// Blocking: validation walks every record and decompresses compressed batches, and the append may fsync,
    /// so callers run this off the async workers (`api::produce` uses a bounded blocking pool). Validation runs
    /// before the log's write lock is taken, so fetches and other appends to this partition are not held up
    /// by it; only offset assignment and the write happen under the lock.
    pub fn append(
        &self,
        records: Bytes,
        acks_all: bool,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        self.append_from(records, acks_all, now_ms, AppendOrigin::Client)
    }

    /// [`Partition::append`] for an origin (see [`AppendOrigin`]): a coordinator's transactional batches
    /// (TxnOffsetCommit) skip the sequence checks; `ClientInOpenTxn` refuses a transactional batch whose
    /// transaction is no longer open.
    pub fn append_from(
        &self,
        records: Bytes,
        acks_all: bool,
        now_ms: i64,
        origin: AppendOrigin,
    ) -> Result<AppendInfo, AppendError> {
        if acks_all
            && self.isr_size.load(Ordering::Acquire)
                < self.min_insync_replicas.load(Ordering::Acquire)
        {
            return Err(AppendError::NotEnoughReplicas);
        }
        // Kafka: "Produce requests with version 3+ are only allowed to contain exactly one record batch per
        // partition". Only decided here when the first header is sound; otherwise validation names the defect.
        if let Ok(first) = BatchHeader::parse(&records) {
            if first.magic == 2 && first.batch_length > 0 && first.total_size() < records.len() {
                return Err(AppendError::Log(LogError::InvalidRecord(
                    "Produce requests are only allowed to contain exactly one record batch per partition".into(),
                )));
            }
        }
        self.health.check()?;
        // The config may change before the lock is taken; the log re-checks the cheap parts (sizes, timestamps).
        let (max_bytes, compacted) = self.with_log(|log| {
            let c = log.config();
            (c.max_message_bytes, c.compacted)
        });
        let validated = validate_producer_records(&records, max_bytes, compacted)?;
        // The request frame is shared; offsets and epochs are stamped into our own copy.
        let mut buf = BytesMut::from(&records[..]);
        let (info, flush) = {
            let Some(mut log) = self.write() else {
                return Err(AppendError::Deleted);
            };
            let info = log.append_validated_from(
                &mut buf,
                &validated,
                self.leader_epoch.load(Ordering::Acquire),
                now_ms,
                origin,
            )?;
            let flush = log
                .flush_due_by_messages()
                .then(|| log.flush_job())
                .flatten();
            let pending = flush.as_ref().map(|_| info.first_offset);
            self.advance_hw(&log, None, pending);
            (info, flush)
        };
        self.publish_hw(info.size_bytes);
        // flush.messages: the produce is answered (and its batch readable) once the fsync is done; a failed fsync
        // answers KAFKA_STORAGE_ERROR and leaves the partition offline with the high watermark below the batch.
        if let Some(job) = flush {
            self.run_append_flush(job, info.first_offset, now_ms)?;
        }
        Ok(info)
    }

    /// Reads whole batches from `offset`, up to the high watermark, or for `read_committed` up to the last
    /// stable offset.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        read_committed: bool,
    ) -> Result<ReadResult, LogError> {
        self.health.check()?;
        let log = self.read_log();
        let hw = self.high_watermark();
        // Under the read lock the LSO cannot move; computed from the log so it is never above this `hw`.
        let lso = log.first_unstable_offset().map_or(hw, |f| f.min(hw));
        let limit = if read_committed { lso } else { hw };
        let (records, next) = log.read_slices_to(offset, max_bytes, limit, min_one_batch)?;
        let aborted = if read_committed && next > offset {
            log.aborted_transactions(offset, next)
        } else {
            Vec::new()
        };
        Ok(ReadResult {
            aborted,
            records,
            high_watermark: hw,
            last_stable_offset: lso,
            read_limit: limit,
            log_start_offset: log.log_start_offset(),
        })
    }

    /// Appends a transaction marker for `producer_id` (the transaction coordinator's marker writer; Kafka's
    /// `appendAsLeader` with origin COORDINATOR), moving the high watermark and the LSO. Returns the marker's
    /// offset and the transaction it closed, if one was open. Blocking (it may fsync for `flush.messages`).
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        now_ms: i64,
    ) -> Result<(i64, Option<CompletedTxn>), AppendError> {
        self.health.check()?;
        let (info, completed, flush) = {
            let Some(mut log) = self.write() else {
                return Err(AppendError::Deleted);
            };
            let (info, completed) = log.append_marker(
                producer_id,
                producer_epoch,
                coordinator_epoch,
                commit,
                self.leader_epoch.load(Ordering::Acquire),
                now_ms,
            )?;
            let flush = log
                .flush_due_by_messages()
                .then(|| log.flush_job())
                .flatten();
            let pending = flush.as_ref().map(|_| info.first_offset);
            self.advance_hw(&log, None, pending);
            (info, completed, flush)
        };
        self.publish_hw(info.size_bytes);
        if let Some(job) = flush {
            self.run_append_flush(job, info.first_offset, now_ms)?;
        }
        Ok((info.first_offset, completed))
    }

    /// Whether `producer_id` has a transaction open on this partition in `epoch`.
    pub fn has_ongoing_txn(&self, producer_id: i64, epoch: i16) -> bool {
        self.read_log().has_ongoing_txn(producer_id, epoch)
    }

    /// The last stable offset: the high watermark, or the first offset of the oldest open transaction if lower.
    pub fn last_stable_offset(&self) -> i64 {
        self.last_stable.load(Ordering::Acquire)
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Subscribes to high watermark changes (long-poll fetch).
    pub fn watch_hw(&self) -> watch::Receiver<HighWatermark> {
        self.hw_tx.subscribe()
    }

    /// The high watermark as last published, with its byte position.
    pub fn published_high_watermark(&self) -> HighWatermark {
        *self.hw_tx.borrow()
    }

    /// Runs `f` with shared access to the log (offset lookups, sizes).
    pub fn with_log<R>(&self, f: impl FnOnce(&Log) -> R) -> R {
        f(&self.read_log())
    }

    /// Runs `f` with exclusive access to the log (retention, delete records, flush, config).
    pub fn with_log_mut<R>(&self, f: impl FnOnce(&mut Log) -> R) -> Option<R> {
        self.write().map(|mut log| f(&mut log))
    }

    /// Applies new topic settings.
    pub fn update_config(&self, config: LogConfig, min_insync: i32, leader_epoch: i32) {
        self.min_insync_replicas
            .store(min_insync, Ordering::Release);
        self.leader_epoch.store(leader_epoch, Ordering::Release);
        if let Some(mut log) = self.write() {
            log.update_config(config);
        }
    }

    /// One compaction pass if one is due (see `log::cleaner`): the plan and the rewrite run without the log
    /// lock; the lock is taken briefly to snapshot the segments and to swap cleaned ones in. Blocking.
    pub fn clean(
        &self,
        config: &CompactionConfig,
        dedupe_buffer_bytes: usize,
        now_ms: i64,
    ) -> Result<Option<CleanStats>, LogError> {
        self.health.check()?;
        let snap = self.read_log().cleaner_snapshot()?;
        let checkpoint = cleaner::CleanerCheckpoint::read(&snap.dir);
        let plan = cleaner::plan(&snap, checkpoint, config, self.high_watermark(), now_ms);
        if !plan.due {
            return Ok(None);
        }
        let stats = cleaner::clean(&snap, &plan, config, dedupe_buffer_bytes, now_ms, |group| {
            match self.write() {
                Some(mut log) => log.install_cleaned(group),
                // Deleted meanwhile: the cleaned files are abandoned.
                None => Ok(false),
            }
        })?;
        Ok(Some(stats))
    }

    /// Raises the log start offset (DeleteRecords). The offset must not exceed the high watermark.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        self.health.check()?;
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        let Some(mut log) = self.write() else {
            return Err(LogError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "partition deleted",
            )));
        };
        if target < 0 || target > hw {
            return Err(LogError::OffsetOutOfRange {
                offset: target,
                log_start: log.log_start_offset(),
                log_end: hw,
            });
        }
        let start = log.delete_records_before(target)?;
        let checkpoints = log.checkpoints();
        drop(log);
        // Answered only once the new log start offset is on disk, written without the partition lock.
        checkpoints.sync()?;
        Ok(start)
    }
}

impl Partition {
    /// Gives up the log (for a clean close at shutdown).
    pub fn into_log(self) -> Log {
        self.log.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use crate::log::fault::{plan, Point};
    use crate::log::testutil::{self, Codec};

    const NOW: i64 = 1_700_000_000_000;

    fn partition(dir: &std::path::Path, config: LogConfig) -> Partition {
        let log = Log::open(dir, config, NOW).unwrap();
        Partition::new("t".into(), 0, Uuid::nil(), log, 0, 1)
    }

    #[test]
    fn compressed_lies_are_refused_before_the_log_moves() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), LogConfig::default());
        let section = testutil::record_bytes(0, 0, Some(b"k"), b"v");
        let lie = testutil::assemble(
            Codec::Gzip,
            &testutil::compress(Codec::Gzip, &section),
            1_000_000_000,
            999_999_999,
            NOW,
            NOW,
        );
        assert!(matches!(
            p.append(Bytes::from(lie), false, NOW),
            Err(AppendError::Log(LogError::InvalidRecord(_)))
        ));
        assert_eq!(p.with_log(|l| l.log_end_offset()), 0);
        assert_eq!(p.high_watermark(), 0);
        let ok = testutil::assemble(
            Codec::Gzip,
            &testutil::compress(Codec::Gzip, &section),
            1,
            0,
            NOW,
            NOW,
        );
        let info = p.append(Bytes::from(ok), false, NOW).unwrap();
        assert_eq!((info.first_offset, p.high_watermark()), (0, 1));
    }

    #[test]
    fn record_timestamps_inside_compressed_batches_meet_the_window() {
        // The header says NOW..NOW; the second record is two hours in the future (after.max.ms is 1 h).
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), LogConfig::default());
        let mut section = testutil::record_bytes(0, 0, Some(b"k"), b"v");
        section.extend(testutil::record_bytes(1, 7_200_000, Some(b"k"), b"v"));
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let buf =
                testutil::assemble(codec, &testutil::compress(codec, &section), 2, 1, NOW, NOW);
            assert!(
                matches!(
                    p.append(Bytes::from(buf), false, NOW),
                    Err(AppendError::Log(LogError::InvalidTimestamp(_)))
                ),
                "{codec:?}"
            );
        }
        assert_eq!(p.with_log(|l| l.log_end_offset()), 0);
    }

    fn flushing(dir: &std::path::Path, flush_messages: i64) -> Partition {
        partition(
            dir,
            LogConfig {
                flush_messages,
                ..testutil::cfg()
            },
        )
    }

    fn batch(ts: i64) -> Bytes {
        Bytes::from(testutil::batch(Codec::None, &[ts], 10))
    }

    /// flush.messages: the high watermark moves only after the fsync; a failed fsync leaves it (and every
    /// waiter) where it was, so no consumer ever saw the batch whose produce failed.
    #[test]
    fn high_watermark_waits_for_the_flush_messages_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let p = flushing(dir.path(), 1);
        let mut hw = p.watch_hw();
        p.append(batch(1), false, NOW).unwrap();
        assert_eq!(p.high_watermark(), 1);
        assert!(hw.has_changed().unwrap());
        hw.borrow_and_update();
        plan::fail(Point::Fsync, 0, libc::EIO, 1);
        let err = p.append(batch(2), false, NOW).unwrap_err();
        plan::clear();
        assert!(
            matches!(err, AppendError::Log(LogError::Offline(_))),
            "{err}"
        );
        assert_eq!(p.high_watermark(), 1, "the failed batch was exposed");
        assert!(!hw.has_changed().unwrap(), "a long-poll fetch was woken");
        assert_eq!(p.with_log(|l| l.log_end_offset()), 2);
        assert!(matches!(
            p.read(1, 1000, true, false),
            Err(LogError::Offline(_))
        ));
    }

    /// While one append's fsync runs, a later append that needs none does not expose the earlier batch.
    #[test]
    fn high_watermark_stays_below_an_append_being_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let p = flushing(dir.path(), i64::MAX);
        p.append(batch(1), false, NOW).unwrap();
        // An append at offset 1 whose fsync is running (as `append` leaves it before `run_append_flush`).
        p.append(batch(2), false, NOW).unwrap();
        {
            let log = p.write().unwrap();
            p.unflushed.lock().unwrap().clear();
            p.high_watermark.store(1, Ordering::Release);
            p.advance_hw(&log, None, Some(1));
        }
        p.append(batch(3), false, NOW).unwrap();
        assert_eq!(p.high_watermark(), 1);
        {
            let log = p.write().unwrap();
            p.advance_hw(&log, Some(1), None);
        }
        assert_eq!(p.high_watermark(), 3);
    }

    fn txn_batch(seq: i32) -> Bytes {
        let mut b = testutil::producer_batch(1000, 0, seq, &[NOW]);
        testutil::set_transactional(&mut b);
        Bytes::from(b)
    }

    /// A batch the produce handler saw inside an open transaction, appended after that transaction's marker,
    /// is refused under the lock instead of opening a transaction the coordinator does not know.
    #[test]
    fn a_batch_for_a_transaction_that_ended_meanwhile_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), testutil::cfg());
        p.append(txn_batch(0), false, NOW).unwrap(); // opens the transaction
        assert!(p.has_ongoing_txn(1000, 0));
        p.append_from(txn_batch(1), false, NOW, AppendOrigin::ClientInOpenTxn)
            .unwrap();
        p.append_marker(1000, 0, 0, false, NOW).unwrap(); // 2: abort
        assert!(!p.has_ongoing_txn(1000, 0));
        assert!(matches!(
            p.append_from(txn_batch(2), false, NOW, AppendOrigin::ClientInOpenTxn),
            Err(AppendError::Log(LogError::InvalidTxnState(_)))
        ));
        assert_eq!(p.with_log(|l| l.log_end_offset()), 3);
        assert_eq!(p.last_stable_offset(), 3);
    }

    #[test]
    fn read_committed_stops_at_the_last_stable_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), testutil::cfg());
        let mut rx = p.watch_hw();
        rx.borrow_and_update();
        p.append(batch(NOW), false, NOW).unwrap(); // offset 0
        p.append(txn_batch(0), false, NOW).unwrap(); // offset 1, opens the transaction
        p.append(batch(NOW), false, NOW).unwrap(); // offset 2, a plain producer
        assert_eq!((p.high_watermark(), p.last_stable_offset()), (3, 1));
        assert_eq!(rx.borrow_and_update().last_stable, 1);
        let committed = p.read(0, 1 << 20, true, true).unwrap();
        let size: usize = committed.records.iter().map(|s| s.len).sum();
        assert_eq!((committed.read_limit, committed.last_stable_offset), (1, 1));
        let one = p.read(0, 1 << 20, true, false).unwrap();
        assert_eq!((one.read_limit, one.high_watermark), (3, 3));
        assert!(one.records.iter().map(|s| s.len).sum::<usize>() > size);
        assert!(p.read(1, 1 << 20, true, true).unwrap().records.is_empty());
        // The marker moves the LSO to the high watermark and wakes waiters.
        let (offset, done) = p.append_marker(1000, 0, 0, true, NOW).unwrap();
        assert_eq!((offset, done.map(|t| t.first_offset)), (3, Some(1)));
        assert!(rx.has_changed().unwrap());
        let hw = *rx.borrow_and_update();
        assert_eq!((hw.offset, hw.last_stable), (4, 4));
        assert_eq!(p.read(1, 1 << 20, true, true).unwrap().read_limit, 4);
        // A fenced marker changes nothing.
        assert!(matches!(
            p.append_marker(1000, 0, -5, true, NOW),
            Err(AppendError::Log(LogError::CoordinatorFenced(_)))
        ));
        assert_eq!(p.high_watermark(), 4);
    }

    #[test]
    fn the_last_stable_offset_is_rebuilt_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), testutil::cfg());
        p.append(batch(NOW), false, NOW).unwrap();
        p.append(txn_batch(0), false, NOW).unwrap();
        p.append(batch(NOW), false, NOW).unwrap();
        drop(p.into_log()); // no close: like kill -9
        let p = partition(dir.path(), testutil::cfg());
        assert_eq!((p.high_watermark(), p.last_stable_offset()), (3, 1));
        assert_eq!(p.published_high_watermark().last_stable, 1);
    }

    #[test]
    fn read_committed_names_the_aborted_transactions_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), testutil::cfg());
        p.append(txn_batch(0), false, NOW).unwrap(); // 0
        p.append(txn_batch(1), false, NOW).unwrap(); // 1
        p.append_marker(1000, 0, 0, false, NOW).unwrap(); // 2: abort
        p.append(batch(NOW), false, NOW).unwrap(); // 3
        let r = p.read(0, 1 << 20, true, true).unwrap();
        assert_eq!(r.read_limit, 4);
        assert_eq!(
            r.aborted,
            vec![AbortedTxn {
                producer_id: 1000,
                first_offset: 0,
                last_offset: 2,
                last_stable_offset: 3
            }]
        );
        assert!(p.read(0, 1 << 20, true, false).unwrap().aborted.is_empty());
        // A read past the aborted transaction names none.
        assert!(p.read(3, 1 << 20, true, true).unwrap().aborted.is_empty());
        // One returning only the first batch still names it.
        let first = p.read(0, 1, true, true).unwrap();
        assert_eq!(first.aborted.len(), 1);
    }

    /// A one-record batch with key `key`: plain (`pid` < 0) or transactional of `pid` at `seq`.
    fn keyed(pid: i64, seq: i32, key: &[u8]) -> Bytes {
        let section = testutil::record_bytes(0, 0, Some(key), b"v");
        let mut b = testutil::assemble(Codec::None, &section, 1, 0, NOW, NOW);
        if pid >= 0 {
            b[43..51].copy_from_slice(&pid.to_be_bytes());
            b[51..53].copy_from_slice(&0i16.to_be_bytes());
            b[53..57].copy_from_slice(&seq.to_be_bytes());
            testutil::set_transactional(&mut b);
        }
        Bytes::from(b)
    }

    #[test]
    fn read_committed_after_cleaning_hides_aborted_data_and_names_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 200,
            ..testutil::cfg()
        };
        let p = partition(dir.path(), config.clone());
        p.append(keyed(-1, 0, b"k"), false, NOW).unwrap(); // 0
        p.append(keyed(1000, 0, b"k"), false, NOW).unwrap(); // 1: aborted, must not hide 0
        p.append(keyed(1000, 1, b"j"), false, NOW).unwrap(); // 2: aborted, 1000's last batch
        p.append_marker(1000, 0, 0, false, NOW).unwrap(); // 3
        p.append(keyed(-1, 0, b"j"), false, NOW).unwrap(); // 4
        p.append(keyed(2000, 0, b"x"), false, NOW).unwrap(); // 5: stays open
        for _ in 0..4 {
            p.append(keyed(-1, 0, b"k"), false, NOW).unwrap();
        }
        assert_eq!(p.last_stable_offset(), 5);
        let cc = CompactionConfig {
            min_cleanable_ratio: 0.0,
            ..CompactionConfig::default()
        };
        let stats = p.clean(&cc, 1 << 20, NOW).unwrap().expect("due");
        assert!(stats.clean_up_to <= 5, "never past the last stable offset");
        let visible = |p: &Partition| {
            let r = p.read(0, 1 << 20, true, true).unwrap();
            let bytes: Vec<u8> = r
                .records
                .iter()
                .flat_map(|s| s.read_all().unwrap())
                .collect();
            let mut keys = Vec::new();
            let mut pos = 0;
            while pos < bytes.len() {
                let h = BatchHeader::parse(&bytes[pos..]).unwrap();
                let batch = &bytes[pos..pos + h.total_size()];
                pos += h.total_size();
                let aborted = r.aborted.iter().any(|a| {
                    a.producer_id == h.producer_id
                        && (a.first_offset..a.last_offset).contains(&h.base_offset)
                });
                if aborted {
                    assert_eq!(h.records_count, 0, "aborted data left: {h:?}");
                } else if !h.is_control() {
                    for rec in testutil::decode(batch) {
                        keys.push((rec.offset, rec.key.unwrap().to_vec()));
                    }
                }
            }
            (r.read_limit, r.aborted, keys)
        };
        let (limit, aborted, keys) = visible(&p);
        assert_eq!(limit, 5);
        assert_eq!(
            aborted,
            vec![AbortedTxn {
                producer_id: 1000,
                first_offset: 1,
                last_offset: 3,
                last_stable_offset: 4
            }],
            "the marker stays: the producer's last batch (emptied) is still in its range"
        );
        assert_eq!(keys, vec![(0, b"k".to_vec()), (4, b"j".to_vec())]);
        // The same after a kill -9: the cleaned segment's transaction index was swapped in with it.
        drop(p.into_log());
        let p = partition(dir.path(), config);
        assert_eq!(visible(&p), (limit, aborted, keys));
        assert_eq!(p.last_stable_offset(), 5);
    }
}
