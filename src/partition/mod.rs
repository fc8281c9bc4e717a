//! Per-partition replica state: the log, the high watermark, the leader epoch and the waiters woken when the
//! high watermark moves.
//!
//! Ownership: each [`Partition`] owns its [`Log`] behind its own `RwLock` (appends take it for writing only for
//! the append itself, fetches for reading), so partitions never contend with each other. The high watermark is
//! an atomic published through a `watch` channel that long-poll fetches and `acks=all` produces await. The
//! high watermark is kept apart from the log end offset: with one replica it follows the log end offset right
//! after each append; with followers it will be the minimum over the ISR.
//!
//! Storage failures: the log's shared [`LogHealth`] is read here without the log lock; once it is offline every
//! append, read and DeleteRecords answers [`LogError::Offline`] (KAFKA_STORAGE_ERROR), and the replica manager
//! reports the partition offline in Metadata. fsync never runs under the log lock: an append that reaches
//! `flush.messages` and the periodic `flush.ms` check take a [`FlushJob`] under the lock, run it after releasing
//! it, and re-take the lock only to record the result. The recovery-point and log-start-offset files are written
//! after the lock is released too (`OffsetCheckpoints::sync`), except by truncation (see `Log::truncate_to`).

pub mod manager;

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use uuid::Uuid;

use crate::log::cleaner::{self, CleanStats, CompactionConfig};
use crate::log::{
    AppendInfo, BatchHeader, FileSlice, FlushJob, Log, LogConfig, LogError, LogHealth,
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
    /// Last stable offset (equal to the high watermark until transactions exist).
    pub last_stable_offset: i64,
    /// Log start offset.
    pub log_start_offset: i64,
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
    hw_tx: watch::Sender<i64>,
    deleted: AtomicBool,
    /// The log's health flag, shared with the log (readable without its lock).
    health: Arc<LogHealth>,
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
        let health = log.health();
        let (hw_tx, _) = watch::channel(hw);
        Partition {
            topic,
            index,
            topic_id,
            log: RwLock::new(log),
            leader_epoch: AtomicI32::new(leader_epoch),
            min_insync_replicas: AtomicI32::new(min_insync),
            isr_size: AtomicI32::new(1),
            high_watermark: AtomicI64::new(hw),
            hw_tx,
            deleted: AtomicBool::new(false),
            health,
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
        checkpoints.sync()
    }

    /// Flushes if `flush.ms` has passed since the last flush (the background flush loop).
    pub fn flush_if_due(&self, now_ms: i64) -> Result<(), LogError> {
        let (job, checkpoints) = match self.write() {
            Some(mut log) => (log.flush_job_if_due(now_ms)?, log.checkpoints()),
            None => return Ok(()),
        };
        match job {
            Some(job) => self.run_flush(job, now_ms),
            // The recovery point may have moved after a background roll fsync.
            None => checkpoints.sync(),
        }
    }

    /// Writes the log's checkpoint files if memory moved past them (after retention, under no lock).
    pub fn sync_checkpoints(&self) -> Result<(), LogError> {
        let checkpoints = self.read_log().checkpoints();
        checkpoints.sync()
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
    pub fn append(
        &self,
        records: Bytes,
        acks_all: bool,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        if acks_all
            && self.isr_size.load(Ordering::Acquire)
                < self.min_insync_replicas.load(Ordering::Acquire)
        {
            return Err(AppendError::NotEnoughReplicas);
        }
        // Kafka: "Produce requests with version 3+ are only allowed to contain exactly one record batch per
        // partition". Only decided here when the first header is sound; otherwise the log names the defect.
        if let Ok(first) = BatchHeader::parse(&records) {
            if first.magic == 2 && first.batch_length > 0 && first.total_size() < records.len() {
                return Err(AppendError::Log(LogError::InvalidRecord(
                    "Produce requests are only allowed to contain exactly one record batch per partition".into(),
                )));
            }
        }
        self.health.check()?;
        // The request frame is shared; offsets and epochs are stamped into our own copy.
        let mut buf = BytesMut::from(&records[..]);
        let (info, flush) = {
            let Some(mut log) = self.write() else {
                return Err(AppendError::Deleted);
            };
            let info =
                log.append_as_leader(&mut buf, self.leader_epoch.load(Ordering::Acquire), now_ms)?;
            // Single in-sync replica: everything appended is replicated to the whole ISR.
            self.high_watermark
                .store(log.log_end_offset(), Ordering::Release);
            let flush = log
                .flush_due_by_messages()
                .then(|| log.flush_job())
                .flatten();
            (info, flush)
        };
        self.hw_tx.send_replace(self.high_watermark());
        // flush.messages: the produce is answered once the fsync is done; a failed fsync answers
        // KAFKA_STORAGE_ERROR and leaves the partition offline.
        if let Some(job) = flush {
            self.run_flush(job, now_ms)?;
        }
        Ok(info)
    }

    /// Reads whole batches from `offset`, at most up to the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, LogError> {
        self.health.check()?;
        let log = self.read_log();
        let hw = self.high_watermark();
        let records = log.read_slices(offset, max_bytes, hw, min_one_batch)?;
        Ok(ReadResult {
            records,
            high_watermark: hw,
            last_stable_offset: hw,
            log_start_offset: log.log_start_offset(),
        })
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
    pub fn watch_hw(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
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
