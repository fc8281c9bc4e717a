//! The log's side of idempotent producer state (Kafka's producer-state parts of `UnifiedLog` and `LogLoader`):
//! the check of a leader append, the rebuild at open (newest snapshot at or below the log end, then a replay of
//! the batch headers after it), snapshots at segment roll and on close, and keeping snapshots in step with
//! truncation and segment deletion.
//!
//! An `impl Log` block over the fields declared in `log.rs`; the caller holds the partition's write lock for
//! every `&mut` method, as for any other change to the log. The [`ProducerStateManager`] itself is pure; all
//! file work is here.

use std::fs;
use std::sync::Arc;

use tracing::{info, warn};

use super::batch::ValidatedRecords;
use super::error::LogError;
use super::log::Log;
use super::producer_state::{
    delete_snapshots, read_latest_snapshot, write_snapshot, BatchMetadata, CheckOutcome,
    ProducerBatch, ProducerStateEntry, ProducerStateManager,
};

/// What the producer check decided for a leader append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProducerAppend {
    /// No batch carries a producer id.
    Plain,
    /// An idempotent producer's batch: append it, then record it.
    Batch(ProducerBatch),
    /// A retry of a batch already in the log.
    Duplicate(BatchMetadata),
}

impl Log {
    /// Checks a leader append's batches against the producer state (cheap, no I/O, no change).
    ///
    /// Transactional batches are refused with INVALID_TXN_STATE until there is a transaction coordinator (what
    /// Kafka answers a transactional produce for a partition not in a verified transaction). A batch with a
    /// producer id must come alone, as Produce v3+ sends it; the check is per batch.
    pub(super) fn check_producer_append(
        &self,
        validated: &ValidatedRecords,
    ) -> Result<ProducerAppend, LogError> {
        let mut found = None;
        for b in &validated.batches {
            if b.header.is_transactional() {
                return Err(LogError::InvalidTxnState(
                    "transactional produce is not supported yet: no transaction coordinator".into(),
                ));
            }
            if let Some(pb) = ProducerBatch::from_header(&b.header) {
                if validated.batches.len() > 1 {
                    return Err(LogError::InvalidRecord(
                        "a batch with a producer id must be the only batch of its append".into(),
                    ));
                }
                found = Some(pb);
            }
        }
        let Some(pb) = found else {
            return Ok(ProducerAppend::Plain);
        };
        Ok(match self.producers.check(&pb)? {
            CheckOutcome::Append => ProducerAppend::Batch(pb),
            CheckOutcome::Duplicate(d) => ProducerAppend::Duplicate(d),
        })
    }

    /// Records batches now in the log without checks (follower appends and replay: the leader checked them).
    pub(super) fn record_producer_batches(&mut self, validated: &ValidatedRecords) {
        for b in &validated.batches {
            if let Some(pb) = ProducerBatch::from_header(&b.header) {
                self.producers.update(&pb);
            }
        }
    }

    /// Active producers of this partition, by producer id (DescribeProducers).
    pub fn producer_entries(&self) -> Vec<ProducerStateEntry> {
        self.producers.entries()
    }

    /// Forgets producers silent for `producer.id.expiration.ms`, at most every check interval.
    pub fn expire_producers(&mut self, now_ms: i64) {
        let n = self
            .producers
            .maybe_remove_expired(now_ms, self.config.producer_id_expiration_ms);
        if n > 0 {
            info!(dir = %self.dir.display(), expired = n, "expired idempotent producers");
        }
    }

    /// Rebuilds the producer state from the files: snapshots above the log end are stale (a crash or a
    /// truncation cut the log below them) and deleted; the newest readable one at or below the log end is
    /// loaded (damaged ones are deleted and older ones tried) and the batch headers from its offset to the log
    /// end replayed. Without any, the whole log is replayed.
    pub(super) fn rebuild_producer_state(&mut self, now_ms: i64) -> Result<(), LogError> {
        let leo = self.log_end_offset();
        let expiration = self.config.producer_id_expiration_ms;
        delete_snapshots(&self.dir, |o| o > leo)?;
        let mut producers = ProducerStateManager::new(self.config.max_producers);
        let from = match read_latest_snapshot(&self.dir, leo)? {
            Some((offset, entries)) => {
                producers.load_entries(entries, now_ms, expiration);
                offset
            }
            None => self.log_start_offset,
        };
        let mut replayed = 0u64;
        let segments = self
            .older
            .values()
            .chain(std::iter::once(&self.active))
            .filter(|s| s.next_offset() > from);
        for seg in segments {
            seg.for_each_header_from(from, |h| {
                if let Some(pb) = ProducerBatch::from_header(h) {
                    producers.update(&pb);
                    replayed += 1;
                }
            })?;
        }
        producers.remove_expired(now_ms, expiration);
        if replayed > 0 || !producers.is_empty() {
            info!(dir = %self.dir.display(), from, replayed, producers = producers.len(),
                "loaded producer state");
        }
        self.producers = producers;
        Ok(())
    }

    /// Writes the snapshot at `offset` (the state must reflect exactly the batches below it) without fsyncing;
    /// returns the file for the caller's fsync. A failure only costs replay time at the next open, so it is
    /// logged, not answered.
    pub(super) fn write_producer_snapshot(&mut self, offset: i64) -> Option<Arc<fs::File>> {
        match write_snapshot(&self.dir, offset, &self.producers.snapshot_bytes()) {
            Ok(f) => {
                self.dir_changes += 1;
                Some(f)
            }
            Err(e) => {
                warn!(dir = %self.dir.display(), offset, error = %e, "cannot write producer snapshot");
                None
            }
        }
    }

    /// The snapshot of a clean close, fsynced before the clean-shutdown marker is written.
    pub(super) fn write_final_producer_snapshot(&mut self) -> Result<(), LogError> {
        let leo = self.log_end_offset();
        if let Some(f) = self.write_producer_snapshot(leo) {
            f.sync_all()?;
        }
        Ok(())
    }

    /// After a truncation to the current log end: stale snapshots go and the state is rebuilt from what is left.
    pub(super) fn reload_producer_state_after_truncation(&mut self) -> Result<(), LogError> {
        let now = self.last_seen_ms;
        self.rebuild_producer_state(now)
    }

    /// After segments were deleted: snapshots below the first remaining segment are of no use any more.
    pub(super) fn delete_snapshots_below_first_segment(&mut self) {
        let first = self
            .older
            .first_key_value()
            .map_or(self.active.base_offset(), |(b, _)| *b);
        if let Err(e) = delete_snapshots(&self.dir, |o| o < first) {
            warn!(dir = %self.dir.display(), error = %e, "cannot delete old producer snapshots");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use crate::log::producer_state::{list_snapshots, snapshot_path};
    use crate::log::testutil::{self, small_segments, Codec, NOW};

    const PID: i64 = 1000;

    /// A one-record idempotent batch of `PID` at `seq`.
    fn idem(epoch: i16, seq: i32) -> Vec<u8> {
        testutil::producer_batch(PID, epoch, seq, &[NOW])
    }

    fn append(log: &mut Log, batch: Vec<u8>) -> Result<i64, LogError> {
        let mut b = batch;
        log.append_as_leader(&mut b, 0, NOW).map(|i| i.first_offset)
    }

    #[test]
    fn duplicates_answer_the_original_offset_and_append_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), testutil::cfg(), NOW).unwrap();
        for seq in 0..3 {
            assert_eq!(append(&mut log, idem(0, seq)).unwrap(), i64::from(seq));
        }
        assert_eq!(append(&mut log, idem(0, 1)).unwrap(), 1);
        assert_eq!(log.log_end_offset(), 3);
        assert!(matches!(
            append(&mut log, idem(0, 5)),
            Err(LogError::OutOfOrderSequence(_))
        ));
        assert!(matches!(
            append(&mut log, testutil::producer_batch(PID, -1, 3, &[NOW])),
            Err(LogError::InvalidProducerEpoch(_))
        ));
        assert_eq!(log.log_end_offset(), 3);
    }

    #[test]
    fn transactional_batches_are_refused_for_now() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), testutil::cfg(), NOW).unwrap();
        let mut b = idem(0, 0);
        testutil::set_transactional(&mut b);
        assert!(matches!(
            append(&mut log, b),
            Err(LogError::InvalidTxnState(_))
        ));
        assert_eq!(log.log_end_offset(), 0);
    }

    /// Fills small segments with idempotent batches so rolls write snapshots.
    fn filled(dir: &std::path::Path) -> Log {
        let mut log = Log::open(dir, small_segments(), NOW).unwrap();
        for seq in 0..40 {
            append(&mut log, testutil::producer_batch(PID, 0, seq, &[NOW; 1])).unwrap();
        }
        assert!(log.num_segments() > 2, "the test needs rolls");
        log
    }

    #[test]
    fn rolls_write_snapshots_and_a_clean_close_writes_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path());
        let bases = log.segment_base_offsets();
        let snaps = list_snapshots(dir.path()).unwrap();
        assert_eq!(snaps, bases[1..].to_vec(), "one snapshot per roll");
        log.close().unwrap();
        assert_eq!(*list_snapshots(dir.path()).unwrap().last().unwrap(), 40);
        let mut log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        let e = &log.producer_entries()[0];
        assert_eq!((e.producer_id, e.last_seq(), e.batches.len()), (PID, 39, 5));
        // All five remembered batches dedupe after the restart.
        for seq in 35..40 {
            assert_eq!(append(&mut log, idem(0, seq)).unwrap(), i64::from(seq));
        }
        assert_eq!(log.log_end_offset(), 40);
        assert_eq!(append(&mut log, idem(0, 40)).unwrap(), 40);
    }

    #[test]
    fn an_unclean_open_replays_from_the_newest_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path());
        let expect = log.producer_entries();
        drop(log); // no close: like kill -9
        let log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.producer_entries(), expect);
    }

    #[test]
    fn a_corrupt_snapshot_falls_back_to_an_older_one_or_a_full_replay() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path());
        let expect = log.producer_entries();
        drop(log);
        let snaps = list_snapshots(dir.path()).unwrap();
        fs::write(
            snapshot_path(dir.path(), *snaps.last().unwrap()),
            b"\x00\x01junk",
        )
        .unwrap();
        let log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.producer_entries(), expect);
        drop(log);
        for o in list_snapshots(dir.path()).unwrap() {
            let p = snapshot_path(dir.path(), o);
            let mut b = fs::read(&p).unwrap();
            let last = b.len() - 1;
            b[last] ^= 1;
            fs::write(&p, b).unwrap();
        }
        let log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.producer_entries(), expect, "full replay");
        assert!(list_snapshots(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_snapshot_past_the_log_end_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path());
        let expect = log.producer_entries();
        drop(log);
        // A snapshot claiming a state at an offset the log does not reach (a crash lost the tail).
        let mut other = ProducerStateManager::default();
        other.update(&ProducerBatch {
            producer_id: 5,
            epoch: 0,
            first_seq: 0,
            last_seq: 0,
            first_offset: 100,
            last_offset: 100,
            max_timestamp: NOW,
            transactional: false,
        });
        write_snapshot(dir.path(), 1000, &other.snapshot_bytes()).unwrap();
        let log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.producer_entries(), expect);
        assert!(!list_snapshots(dir.path()).unwrap().contains(&1000));
    }

    #[test]
    fn truncation_rebuilds_the_state_below_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled(dir.path());
        log.truncate_to(20).unwrap();
        assert!(list_snapshots(dir.path()).unwrap().iter().all(|&o| o <= 20));
        assert_eq!(log.producer_entries()[0].last_seq(), 19);
        // The producer continues from the cut, and a retry of a cut batch is no duplicate.
        assert_eq!(append(&mut log, idem(0, 20)).unwrap(), 20);
        log.truncate_fully_and_start_at(50).unwrap();
        assert!(log.producer_entries().is_empty());
        assert!(list_snapshots(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn retention_deletes_snapshots_below_the_first_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled(dir.path());
        let bases = log.segment_base_offsets();
        log.delete_records_before(bases[2]).unwrap();
        let first = log.segment_base_offsets()[0];
        assert!(list_snapshots(dir.path())
            .unwrap()
            .iter()
            .all(|&o| o >= first));
        // The state itself stays (producers expire by time, not with their segments).
        assert_eq!(log.producer_entries()[0].last_seq(), 39);
    }

    #[test]
    fn replay_ignores_plain_batches_and_expires_old_producers() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), testutil::cfg(), NOW).unwrap();
        testutil::produce(&mut log, Codec::None, &[NOW]);
        append(&mut log, idem(0, 0)).unwrap();
        drop(log);
        let log = Log::open(dir.path(), testutil::cfg(), NOW).unwrap();
        assert_eq!(log.producer_entries().len(), 1);
        drop(log);
        let later = NOW + testutil::cfg().producer_id_expiration_ms;
        let log = Log::open(dir.path(), testutil::cfg(), later).unwrap();
        assert!(log.producer_entries().is_empty());
    }
}
