//! The log's side of idempotent producer state (Kafka's producer-state parts of `UnifiedLog` and `LogLoader`):
//! the check of a leader append, the rebuild at open (newest snapshot at or below the log end, then a replay of
//! the batch headers after it), snapshots at segment roll and on close, and keeping snapshots in step with
//! truncation and segment deletion. Transactions: markers appended by the coordinator ([`Log::append_marker`])
//! or replayed (follower appends, load) close them; ABORT markers add to the segment's transaction index
//! (`txn_index.rs`, loaded, cut to the log end and re-completed by the same replay), which
//! [`Log::aborted_transactions`] searches for read_committed fetches.
//!
//! An `impl Log` block over the fields declared in `log.rs`; the caller holds the partition's write lock for
//! every `&mut` method, as for any other change to the log. The [`ProducerStateManager`] itself is pure; all
//! file work is here.

use std::fs;
use std::sync::Arc;

use tracing::{info, warn};

use super::batch::validate_follower_records;
use super::batch::BatchHeader;
use super::batch::ValidatedRecords;
use super::error::LogError;
use super::log::AppendInfo;
use super::log::Log;
use super::marker::{control_batch, parse_marker};
use super::producer_state::{
    delete_snapshots, read_latest_snapshot, write_snapshot, BatchMetadata, CheckOutcome,
    CompletedTxn, MarkerInfo, ProducerBatch, ProducerStateEntry, ProducerStateManager,
};
use super::txn_index::{AbortedTxn, TxnIndex};
use std::collections::BTreeMap;

/// The transaction index entry of an aborted transaction just closed: the last stable offset after the
/// abort is the oldest other open transaction's first offset, else the offset after the marker (Kafka's
/// `ProducerStateManager.lastStableOffset(completedTxn)`).
pub(super) fn aborted_entry(producers: &ProducerStateManager, c: &CompletedTxn) -> AbortedTxn {
    AbortedTxn {
        producer_id: c.producer_id,
        first_offset: c.first_offset,
        last_offset: c.last_offset,
        last_stable_offset: producers
            .first_unstable_offset()
            .unwrap_or(c.last_offset + 1),
    }
}

/// Applies one stored batch to the producer state without checks (replay and follower appends): a data
/// batch records its producer's batch, a control batch (`bytes` is the whole batch) closes a transaction.
/// Returns the index entry of a transaction an ABORT marker closed.
fn replay_batch(
    producers: &mut ProducerStateManager,
    h: &BatchHeader,
    bytes: &[u8],
) -> Option<AbortedTxn> {
    if let Some(pb) = ProducerBatch::from_header(h) {
        producers.update(&pb);
        return None;
    }
    // An empty control batch is a marker the cleaner emptied: its transaction is gone from the log, so it
    // closes nothing (Kafka's `ProducerAppendInfo.append` skips it too).
    if !h.is_control() || h.producer_id < 0 || h.records_count == 0 {
        return None;
    }
    let Some((commit, coordinator_epoch)) = parse_marker(bytes) else {
        warn!(
            offset = h.base_offset,
            "skipping an unreadable control batch"
        );
        return None;
    };
    let completed = producers.update_marker(&MarkerInfo {
        producer_id: h.producer_id,
        epoch: h.producer_epoch,
        coordinator_epoch,
        commit,
        offset: h.base_offset,
        timestamp: h.max_timestamp,
    })?;
    completed
        .aborted
        .then(|| aborted_entry(producers, &completed))
}

/// Who appends a batch as leader (Kafka's `AppendOrigin`): a client's batches get every producer check; a
/// coordinator's own transactional batches (written with sequence 0 each time, as Kafka's coordinator runtime
/// writes them) skip the duplicate and sequence checks but not the epoch check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer's Produce request; a transactional batch may open a transaction (the produce handler
    /// appends those under the transaction coordinator's lock, after its check).
    Client,
    /// A producer's transactional batch for a transaction the produce handler saw open here: refused with
    /// INVALID_TXN_STATE, under the write lock, if it is no longer open in the batch's epoch (its marker was
    /// written while the batch was validated; Kafka's `UnifiedLog` checks the same), so a late batch cannot
    /// open a transaction the coordinator does not know.
    ClientInOpenTxn,
    /// A coordinator writing to its internal topic.
    Coordinator,
}

/// What the producer check decided for a leader append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProducerAppend {
    /// No batch carries a producer id.
    Plain,
    /// An idempotent producer's batch: append it, then record it.
    Batch(ProducerBatch),
    /// A retry of a batch already in the log.
    Duplicate(BatchMetadata),
    /// A transaction marker from the coordinator (checked): append it, then close the transaction.
    Marker(MarkerInfo),
}

impl Log {
    /// Appends a COMMIT/ABORT marker for `producer_id`'s transaction as the leader (Kafka's `appendAsLeader`
    /// with origin COORDINATOR): checked against the producer state (an older producer epoch is
    /// INVALID_PRODUCER_EPOCH, an older coordinator epoch TRANSACTION_COORDINATOR_FENCED), then appended like
    /// any batch; the transaction it closes is returned in [`AppendInfo`]'s terms plus the completed one.
    /// A marker with no open transaction (a retry) is appended too and closes nothing, as in Kafka.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<(AppendInfo, Option<CompletedTxn>), LogError> {
        self.check_online()?;
        let mut info = MarkerInfo {
            producer_id,
            epoch: producer_epoch,
            coordinator_epoch,
            commit,
            offset: self.log_end_offset(),
            timestamp: now_ms,
        };
        self.producers.check_marker(&info)?;
        let mut records = control_batch(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            now_ms,
        )
        .ok_or_else(|| LogError::InvalidRecord("cannot encode a marker".into()))?
        .to_vec();
        let validated = validate_follower_records(&records)?;
        info.offset = self.log_end_offset();
        self.append_checked(
            &mut records,
            &validated,
            ProducerAppend::Marker(info),
            leader_epoch,
            now_ms,
        )
    }

    /// Checks a leader append's batches against the producer state (cheap, no I/O, no change).
    ///
    /// A batch with a producer id must come alone, as Produce v3+ sends it; the check is per batch. A
    /// transactional batch needs a producer id (Kafka's `LogValidator` refuses it otherwise). Control batches
    /// never get here: producer validation refuses them, markers come through [`Log::append_marker`].
    pub(super) fn check_producer_append(
        &self,
        validated: &ValidatedRecords,
        origin: AppendOrigin,
    ) -> Result<ProducerAppend, LogError> {
        let mut found = None;
        for b in &validated.batches {
            if b.header.is_transactional() && b.header.producer_id < 0 {
                return Err(LogError::InvalidRecord(
                    "transactional batch without a producer id".into(),
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
        if origin == AppendOrigin::Coordinator {
            self.producers.check_epoch(&pb)?;
            return Ok(ProducerAppend::Batch(pb));
        }
        if origin == AppendOrigin::ClientInOpenTxn
            && pb.transactional
            && !self.has_ongoing_txn(pb.producer_id, pb.epoch)
        {
            return Err(LogError::InvalidTxnState(format!(
                "producer {} has no transaction open on this partition in epoch {}",
                pb.producer_id, pb.epoch
            )));
        }
        Ok(match self.producers.check(&pb)? {
            CheckOutcome::Append => ProducerAppend::Batch(pb),
            CheckOutcome::Duplicate(d) => ProducerAppend::Duplicate(d),
        })
    }

    /// Records batches now in the log without checks (follower appends: the leader checked them), indexing
    /// the transactions ABORT markers closed.
    pub(super) fn record_producer_batches(&mut self, records: &[u8], validated: &ValidatedRecords) {
        for b in &validated.batches {
            let bytes = records
                .get(b.position..b.position + b.header.total_size())
                .unwrap_or_default();
            if let Some(entry) = replay_batch(&mut self.producers, &b.header, bytes) {
                self.index_aborted(entry);
            }
        }
    }

    /// Adds an aborted transaction to the index of the segment holding its marker. A failed write is logged, not
    /// answered: the marker is already in the log, and the replay at the next load re-adds the entry if it
    /// follows the newest snapshot.
    pub(super) fn index_aborted(&mut self, entry: AbortedTxn) {
        let base = self.segment_base_for(entry.last_offset);
        let index = match self.txn_indexes.entry(base) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                match TxnIndex::open(&self.dir, base) {
                    Ok(i) => v.insert(i),
                    Err(e) => {
                        warn!(dir = %self.dir.display(), base, error = %e, "cannot open transaction index");
                        return;
                    }
                }
            }
        };
        if let Err(e) = index.append(entry) {
            warn!(dir = %self.dir.display(), base, error = %e, "cannot write transaction index");
        }
    }

    /// Base offset of the segment holding `offset` (`i64::MIN` below the first segment).
    fn segment_base_for(&self, offset: i64) -> i64 {
        if offset >= self.active.base_offset() {
            return self.active.base_offset();
        }
        self.older
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b)
    }

    /// The aborted transactions overlapping `[from, upper)` (a read_committed fetch's range; Kafka's
    /// `collectAbortedTransactions`): the indexes from the segment holding `from` on, until one shows no later
    /// segment can add any.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let start = self.segment_base_for(from);
        let mut out = Vec::new();
        for index in self.txn_indexes.range(start..).map(|(_, i)| i) {
            if index.collect(from, upper, &mut out) {
                break;
            }
        }
        out
    }

    /// The first offset of the oldest open transaction, if any (the last stable offset is the lower of this
    /// and the high watermark).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers.first_unstable_offset()
    }

    /// Whether `producer_id` has a transaction open here in `epoch` (Kafka's `hasOngoingTransaction`): a
    /// transactional batch of such a producer needs no check with the transaction coordinator.
    pub fn has_ongoing_txn(&self, producer_id: i64, epoch: i16) -> bool {
        self.producers
            .entry(producer_id)
            .is_some_and(|e| e.epoch == epoch && e.current_txn_first_offset.is_some())
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
        // Transaction indexes: what the files hold up to the log end (a truncation may have cut markers), then
        // what the replay finds (entries a crash lost; duplicates are skipped by the index).
        let mut indexes = BTreeMap::new();
        let bases: Vec<i64> = self
            .older
            .keys()
            .copied()
            .chain(std::iter::once(self.active.base_offset()))
            .collect();
        for base in bases {
            let mut index = TxnIndex::open(&self.dir, base)?;
            index.truncate_to(leo)?;
            if !index.entries().is_empty() {
                indexes.insert(base, index);
            }
        }
        self.txn_indexes = indexes;
        let mut aborted = Vec::new();
        let mut replayed = 0u64;
        let segments = self
            .older
            .values()
            .chain(std::iter::once(&self.active))
            .filter(|s| s.next_offset() > from);
        for seg in segments {
            seg.for_each_header_from(from, |h, control| {
                if h.producer_id >= 0 {
                    aborted.extend(replay_batch(&mut producers, h, control.unwrap_or_default()));
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
        for entry in aborted {
            self.index_aborted(entry);
        }
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
        // Their transaction index files went with them.
        self.txn_indexes = self.txn_indexes.split_off(&first);
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

    fn txn(epoch: i16, seq: i32) -> Vec<u8> {
        let mut b = idem(epoch, seq);
        testutil::set_transactional(&mut b);
        b
    }

    #[test]
    fn transactions_open_on_the_first_batch_and_close_with_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), testutil::cfg(), NOW).unwrap();
        testutil::produce(&mut log, Codec::None, &[NOW]);
        assert_eq!(append(&mut log, txn(0, 0)).unwrap(), 1);
        assert_eq!(append(&mut log, txn(0, 1)).unwrap(), 2);
        assert_eq!(log.first_unstable_offset(), Some(1));
        let (info, done) = log.append_marker(PID, 0, 3, false, 0, NOW).unwrap();
        assert_eq!((info.first_offset, info.last_offset), (3, 3));
        assert_eq!(
            done,
            Some(CompletedTxn {
                producer_id: PID,
                first_offset: 1,
                last_offset: 3,
                aborted: true
            })
        );
        assert_eq!(log.first_unstable_offset(), None);
        assert_eq!(log.log_end_offset(), 4);
        // The stored batch is a marker the replay can read.
        let bytes = log.read(3, 1 << 20, i64::MAX, true).unwrap();
        assert_eq!(crate::log::marker::parse_marker(&bytes), Some((false, 3)));
        // Fenced markers append nothing.
        assert!(matches!(
            log.append_marker(PID, 0, 2, true, 0, NOW),
            Err(LogError::CoordinatorFenced(_))
        ));
        assert_eq!(log.log_end_offset(), 4);
        // A transactional batch without a producer id is refused.
        let mut plain = testutil::batch(Codec::None, &[NOW], 10);
        testutil::set_transactional(&mut plain);
        assert!(matches!(
            append(&mut log, plain),
            Err(LogError::InvalidRecord(_))
        ));
    }

    #[test]
    fn open_transactions_survive_an_unclean_open_and_a_clean_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        for seq in 0..30 {
            append(&mut log, txn(0, seq)).unwrap();
            if seq % 7 == 6 {
                log.append_marker(PID, 0, 1, seq % 2 == 0, 0, NOW).unwrap();
            }
        }
        assert!(log.num_segments() > 2, "the test needs rolls");
        let expect = log.producer_entries();
        let first = log.first_unstable_offset();
        assert!(first.is_some());
        drop(log); // kill -9: the last snapshot is older than the open transaction's markers
        let mut log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.producer_entries(), expect);
        assert_eq!(log.first_unstable_offset(), first);
        // The coordinator epoch came back from a replayed marker: an older coordinator is fenced.
        assert!(matches!(
            log.append_marker(PID, 0, 0, true, 0, NOW),
            Err(LogError::CoordinatorFenced(_))
        ));
        log.close().unwrap();
        let mut log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.first_unstable_offset(), first);
        let (_, done) = log.append_marker(PID, 0, 1, true, 0, NOW).unwrap();
        assert_eq!(done.map(|t| t.first_offset), first);
        assert_eq!(log.first_unstable_offset(), None);
    }

    #[test]
    fn truncation_reopens_a_transaction_whose_marker_was_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), testutil::cfg(), NOW).unwrap();
        append(&mut log, txn(0, 0)).unwrap();
        log.append_marker(PID, 0, 0, true, 0, NOW).unwrap();
        assert_eq!(log.first_unstable_offset(), None);
        log.truncate_to(1).unwrap();
        assert_eq!(log.first_unstable_offset(), Some(0));
    }

    #[test]
    fn follower_appends_close_transactions_too() {
        let leader_dir = tempfile::tempdir().unwrap();
        let mut leader = Log::open(leader_dir.path(), testutil::cfg(), NOW).unwrap();
        append(&mut leader, txn(0, 0)).unwrap();
        let data = leader.read(0, 1 << 20, i64::MAX, true).unwrap();
        leader.append_marker(PID, 0, 0, false, 0, NOW).unwrap();
        let all = leader.read(0, 1 << 20, i64::MAX, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut f = Log::open(dir.path(), testutil::cfg(), NOW).unwrap();
        f.append_as_follower(&data, NOW).unwrap();
        assert_eq!(f.first_unstable_offset(), Some(0));
        f.append_as_follower(&all[data.len()..], NOW).unwrap();
        assert_eq!(f.first_unstable_offset(), None);
        assert_eq!(f.producer_entries(), leader.producer_entries());
        assert_eq!(
            f.aborted_transactions(0, 2),
            leader.aborted_transactions(0, 2)
        );
        assert_eq!(f.aborted_transactions(0, 2).len(), 1);
    }

    #[test]
    fn abort_markers_fill_the_transaction_index_and_commits_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), testutil::cfg(), NOW).unwrap();
        append(&mut log, txn(0, 0)).unwrap(); // 0
        let mut other = testutil::producer_batch(2000, 0, 0, &[NOW]);
        testutil::set_transactional(&mut other);
        append(&mut log, other).unwrap(); // 1: producer 2000 opens a transaction
        log.append_marker(PID, 0, 0, false, 0, NOW).unwrap(); // 2: abort
        log.append_marker(2000, 0, 0, true, 0, NOW).unwrap(); // 3: commit
        let entry = AbortedTxn {
            producer_id: PID,
            first_offset: 0,
            last_offset: 2,
            last_stable_offset: 1, // producer 2000's transaction was still open
        };
        assert_eq!(log.aborted_transactions(0, 4), vec![entry]);
        assert_eq!(log.aborted_transactions(1, 2), vec![entry]);
        assert!(log.aborted_transactions(3, 4).is_empty());
        assert!(log.aborted_transactions(0, 0).is_empty());
        drop(log);
        let log = Log::open(dir.path(), testutil::cfg(), NOW).unwrap();
        assert_eq!(log.aborted_transactions(0, 4), vec![entry]);
    }

    /// Transactions of `PID` in small segments, every third aborted; returns the log and the aborted ones.
    fn aborting(dir: &std::path::Path) -> (Log, Vec<AbortedTxn>) {
        let mut log = Log::open(dir, small_segments(), NOW).unwrap();
        let mut aborted = Vec::new();
        for t in 0..13 {
            let first = append(&mut log, txn(0, t * 2)).unwrap();
            append(&mut log, txn(0, t * 2 + 1)).unwrap();
            let abort = t % 3 == 0;
            let (info, _) = log.append_marker(PID, 0, 0, !abort, 0, NOW).unwrap();
            if abort {
                aborted.push(AbortedTxn {
                    producer_id: PID,
                    first_offset: first,
                    last_offset: info.first_offset,
                    last_stable_offset: info.first_offset + 1,
                });
            }
        }
        assert!(log.num_segments() > 3, "the test needs rolls");
        (log, aborted)
    }

    #[test]
    fn the_index_spans_segments_and_survives_a_lost_file() {
        let dir = tempfile::tempdir().unwrap();
        let (log, aborted) = aborting(dir.path());
        assert_eq!(log.aborted_transactions(0, log.log_end_offset()), aborted);
        let last = *aborted.last().unwrap();
        assert_eq!(
            log.aborted_transactions(last.first_offset + 1, last.last_offset),
            vec![last]
        );
        drop(log); // kill -9, and the index file of the active segment is lost
        let active_base = *Log::open(dir.path(), small_segments(), NOW)
            .unwrap()
            .segment_base_offsets()
            .last()
            .unwrap();
        let path = crate::log::txn_index::txn_index_path(dir.path(), active_base);
        fs::remove_file(&path).expect("the last abort is in the active segment");
        let log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.aborted_transactions(0, log.log_end_offset()), aborted);
    }

    #[test]
    fn truncation_and_retention_drop_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, aborted) = aborting(dir.path());
        let cut = aborted[2].last_offset;
        log.truncate_to(cut).unwrap();
        assert_eq!(log.aborted_transactions(0, i64::MAX), aborted[..2].to_vec());
        let bases = log.segment_base_offsets();
        log.delete_records_before(bases[bases.len() - 1]).unwrap();
        let first = log.segment_base_offsets()[0];
        let left: Vec<_> = aborted[..2]
            .iter()
            .copied()
            .filter(|a| a.last_offset >= first)
            .collect();
        assert_eq!(log.aborted_transactions(0, i64::MAX), left);
        log.truncate_fully_and_start_at(1000).unwrap();
        assert!(log.aborted_transactions(0, i64::MAX).is_empty());
        let indexes = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".txnindex")
            })
            .count();
        assert_eq!(indexes, 0);
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
