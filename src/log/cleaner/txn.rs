//! What cleaning does with transactions (Kafka's `CleanedTransactionMetadata` and the batch retention part of
//! `Cleaner.cleanInto`): which batches belong to aborted transactions, when a COMMIT/ABORT marker may go, and
//! which batch of each producer must stay so its state survives.
//!
//! Owned by one cleaning pass on its blocking thread, never shared. A [`CleanedTxns`] is fed the batches of the
//! section it covers in offset order, with the aborted transactions (from the transaction indexes) that overlap
//! it; nothing here reads files or the clock.
//!
//! The rules, as Kafka's:
//! - A data batch of a producer inside one of its aborted transactions (the transaction's first offset at or
//!   below the batch, its ABORT marker after it) is discarded whole; it never enters the offset map, so it
//!   cannot shadow an older committed value.
//! - An ABORT marker stays while some batch of its transaction was seen in this pass (the batch may go in this
//!   very pass; the marker goes at the earliest in a later one), and then keeps its transaction index entry in
//!   the cleaned segment. A COMMIT marker stays while a batch of its transaction was seen. A marker no batch
//!   refers to any more is "discardable": it gets a delete horizon (`delete.retention.ms` from now, KIP-534,
//!   as tombstones do) and is removed by the first clean after the horizon, so a consumer that read the data
//!   had that long to read the marker too.
//! - The last batch of each producer still in the producer state (its last data batch, or, if it has none, a
//!   marker of its current epoch) is kept, emptied of records if cleaning removes them all, so the producer's
//!   epoch and sequence survive a rebuild of the producer state from the log (`producer_log.rs` replays headers;
//!   an empty marker closes nothing, as in Kafka).

use std::collections::{HashMap, HashSet};

use crate::log::batch::BatchHeader;
use crate::log::txn_index::AbortedTxn;

/// The last write of a producer as the producer state knows it when the pass starts (Kafka's `LastRecord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRecord {
    /// Last offset of its last data batch, `None` if it has none since its last epoch change.
    pub last_data_offset: Option<i64>,
    /// Its current epoch.
    pub epoch: i16,
}

/// Aborted transactions seen so far in one pass, in offset order.
#[derive(Debug, Default)]
pub(crate) struct CleanedTxns {
    /// Not yet reached, sorted by first offset descending (popped from the end).
    pending: Vec<AbortedTxn>,
    /// Aborted transactions whose first offset was reached and whose marker was not, by producer id, with
    /// whether a batch of theirs was seen.
    ongoing_aborted: HashMap<i64, (AbortedTxn, bool)>,
    /// Producers of which a batch of a (not aborted) transaction was seen since their last marker.
    ongoing_committed: HashSet<i64>,
}

impl CleanedTxns {
    /// Tracks `aborted` (entries overlapping the section the pass reads; order does not matter).
    pub(crate) fn new(mut aborted: Vec<AbortedTxn>) -> Self {
        aborted.sort_by_key(|a| std::cmp::Reverse((a.first_offset, a.last_offset)));
        CleanedTxns {
            pending: aborted,
            ..CleanedTxns::default()
        }
    }

    fn consume_up_to(&mut self, offset: i64) {
        while self
            .pending
            .last()
            .is_some_and(|a| a.first_offset <= offset)
        {
            if let Some(a) = self.pending.pop() {
                // A producer's transactions do not overlap: an entry already there whose marker was never read
                // (outside the section) is older and done.
                let slot = self
                    .ongoing_aborted
                    .entry(a.producer_id)
                    .or_insert((a, false));
                if slot.0.last_offset < a.first_offset {
                    *slot = (a, false);
                }
            }
        }
    }

    /// A data batch was read: true if it belongs to an aborted transaction (Kafka's `onBatchRead`).
    pub(crate) fn on_batch(&mut self, h: &BatchHeader) -> bool {
        let last = h.last_offset();
        self.consume_up_to(last);
        if !h.is_transactional() || h.producer_id < 0 {
            return false;
        }
        if let Some((a, seen)) = self.ongoing_aborted.get_mut(&h.producer_id) {
            if last < a.last_offset {
                *seen = true;
                return true;
            }
            // The entry's marker is behind this batch but was never read (it is not in the section): the
            // entry is done, and this batch belongs to a later transaction.
            self.ongoing_aborted.remove(&h.producer_id);
        }
        self.ongoing_committed.insert(h.producer_id);
        false
    }

    /// A control batch was read; `kind` is what its record says (`Some(true)` COMMIT, `Some(false)` ABORT,
    /// `None` for an empty or unreadable one). Returns whether the marker may be discarded, and the index entry
    /// the cleaned segment must keep if it is a retained ABORT marker (Kafka's `onControlBatchRead`).
    pub(crate) fn on_control(
        &mut self,
        h: &BatchHeader,
        kind: Option<bool>,
    ) -> (bool, Option<AbortedTxn>) {
        self.consume_up_to(h.last_offset());
        let pid = h.producer_id;
        match kind {
            Some(false) => match self.ongoing_aborted.remove(&pid) {
                Some((a, true)) => (false, Some(a)),
                _ => (true, None),
            },
            Some(true) => (!self.ongoing_committed.remove(&pid), None),
            // An empty control batch is a marker already cleaned; an unknown control type is kept, as Kafka
            // keeps it.
            None => (h.records_count == 0, None),
        }
    }
}

/// What the pass does with one batch (Kafka's `BatchRetentionResult` and `discardBatchRecords`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BatchDecision {
    /// No record of it stays (aborted data, or a marker past its delete horizon).
    pub(crate) discard_records: bool,
    /// The batch stays even without records (its producer's last batch).
    pub(crate) retain_empty: bool,
    /// A marker nothing refers to any more: it needs a delete horizon if it has none.
    pub(crate) marker_horizon: bool,
    /// The transaction index entry the cleaned segment keeps for this ABORT marker.
    pub(crate) index_entry: Option<AbortedTxn>,
}

/// True if `h` is the last batch `last` knows for its producer (Kafka's `isBatchLastRecordOfProducer`).
pub(crate) fn is_last_of_producer(h: &BatchHeader, last: &HashMap<i64, LastRecord>) -> bool {
    if h.producer_id < 0 {
        return false;
    }
    match last.get(&h.producer_id) {
        Some(LastRecord {
            last_data_offset: Some(o),
            ..
        }) => h.last_offset() == *o,
        Some(LastRecord {
            last_data_offset: None,
            epoch,
        }) => h.is_control() && h.producer_epoch == *epoch,
        None => false,
    }
}

/// Decides the fate of one batch of a segment being cleaned, advancing `txns`; `kind` is the marker type of a
/// control batch (see [`CleanedTxns::on_control`]).
pub(crate) fn decide(
    h: &BatchHeader,
    kind: Option<bool>,
    txns: &mut CleanedTxns,
    last: &HashMap<i64, LastRecord>,
    now_ms: i64,
) -> BatchDecision {
    let (discardable, index_entry, discard_records) = if h.is_control() {
        let (discardable, entry) = txns.on_control(h, kind);
        let horizon_passed = h.has_delete_horizon() && h.base_timestamp <= now_ms;
        (discardable, entry, discardable && horizon_passed)
    } else {
        let aborted = txns.on_batch(h);
        (aborted, None, aborted)
    };
    BatchDecision {
        discard_records,
        retain_empty: is_last_of_producer(h, last),
        marker_horizon: discardable && h.is_control(),
        index_entry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header of `records` records at `[base, base + records)` of producer `pid`.
    fn header(
        base: i64,
        records: i32,
        pid: i64,
        transactional: bool,
        control: bool,
    ) -> BatchHeader {
        let mut attributes = 0i16;
        if transactional {
            attributes |= 0x10;
        }
        if control {
            attributes |= 0x20;
        }
        BatchHeader {
            base_offset: base,
            batch_length: 61,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes,
            last_offset_delta: (records - 1).max(0),
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: 0,
            records_count: records,
        }
    }

    fn aborted(pid: i64, first: i64, marker: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: marker,
            last_stable_offset: marker + 1,
        }
    }

    #[test]
    fn aborted_batches_are_discarded_and_their_marker_kept_while_they_were_seen() {
        // pid 1: aborted [0, 4) marker at 4; pid 2: committed 1..3, marker at 5; pid 1 again at 6 (next txn).
        let mut t = CleanedTxns::new(vec![aborted(1, 0, 4)]);
        assert!(t.on_batch(&header(0, 1, 1, true, false)));
        assert!(!t.on_batch(&header(1, 2, 2, true, false)));
        assert!(t.on_batch(&header(3, 1, 1, true, false)));
        let (discard, entry) = t.on_control(&header(4, 1, 1, true, true), Some(false));
        assert!(!discard, "its batches were read in this pass");
        assert_eq!(entry, Some(aborted(1, 0, 4)));
        assert_eq!(
            t.on_control(&header(5, 1, 2, true, true), Some(true)),
            (false, None),
            "the commit's data was read"
        );
        assert!(
            !t.on_batch(&header(6, 1, 1, true, false)),
            "a later transaction"
        );
        // Non-transactional batches are never aborted, whatever the index says.
        let mut t = CleanedTxns::new(vec![aborted(1, 0, 4)]);
        assert!(!t.on_batch(&header(0, 1, 1, false, false)));
    }

    #[test]
    fn markers_of_transactions_without_data_are_discardable() {
        let mut t = CleanedTxns::new(vec![aborted(1, 0, 4)]);
        // The aborted data is gone (cleaned before); nothing of pid 3's committed data either.
        assert_eq!(
            t.on_control(&header(4, 1, 1, true, true), Some(false)),
            (true, None)
        );
        assert_eq!(
            t.on_control(&header(5, 1, 3, true, true), Some(true)),
            (true, None)
        );
        // An already emptied marker goes; an unknown control type stays.
        assert_eq!(
            t.on_control(&header(6, 0, 3, true, true), None),
            (true, None)
        );
        assert_eq!(
            t.on_control(&header(7, 1, 3, true, true), None),
            (false, None)
        );
        // An ABORT marker without an index entry (none overlapped): discardable, as in Kafka.
        let mut t = CleanedTxns::new(Vec::new());
        assert!(!t.on_batch(&header(0, 1, 9, true, false)));
        assert_eq!(
            t.on_control(&header(1, 1, 9, true, true), Some(false)),
            (true, None)
        );
    }

    #[test]
    fn a_stale_entry_does_not_abort_a_later_transaction() {
        // The entry's marker (at 2) lies outside what the pass reads: pid 1's batch at 5 is a new transaction.
        let mut t = CleanedTxns::new(vec![aborted(1, 0, 2)]);
        assert!(!t.on_batch(&header(5, 1, 1, true, false)));
        assert_eq!(
            t.on_control(&header(6, 1, 1, true, true), Some(true)),
            (false, None)
        );
        // Two entries of one producer, the first one's marker unread: the second still aborts its batches.
        let mut t = CleanedTxns::new(vec![aborted(1, 0, 2), aborted(1, 5, 8)]);
        assert!(t.on_batch(&header(6, 1, 1, true, false)));
        assert!(!t.on_batch(&header(9, 1, 1, true, false)));
    }

    #[test]
    fn decisions_follow_the_delete_horizon_and_the_last_batch_of_each_producer() {
        let now = 1_000;
        let last: HashMap<i64, LastRecord> = [
            (
                1,
                LastRecord {
                    last_data_offset: Some(3),
                    epoch: 0,
                },
            ),
            (
                2,
                LastRecord {
                    last_data_offset: None,
                    epoch: 0,
                },
            ),
        ]
        .into_iter()
        .collect();
        // Aborted data of pid 1: discarded, but its last batch (ending at 3) stays empty.
        let mut t = CleanedTxns::new(vec![aborted(1, 0, 4)]);
        let d = decide(&header(0, 1, 1, true, false), None, &mut t, &last, now);
        assert!(d.discard_records && !d.retain_empty && !d.marker_horizon);
        let d = decide(&header(3, 1, 1, true, false), None, &mut t, &last, now);
        assert!(d.discard_records && d.retain_empty);
        let d = decide(
            &header(4, 1, 1, true, true),
            Some(false),
            &mut t,
            &last,
            now,
        );
        assert!(!d.discard_records && !d.marker_horizon);
        assert!(d.index_entry.is_some());
        // A discardable marker: first a horizon, then (past it) its record goes; pid 2's marker is its last
        // write, so it stays as an empty batch.
        let mut t = CleanedTxns::new(Vec::new());
        let mut m = header(5, 1, 2, true, true);
        let d = decide(&m, Some(true), &mut t, &last, now);
        assert!(d.marker_horizon && !d.discard_records && d.retain_empty);
        m.attributes |= 0x40;
        m.base_timestamp = now + 1;
        assert!(!decide(&m, Some(true), &mut t, &last, now).discard_records);
        m.base_timestamp = now;
        let d = decide(&m, Some(true), &mut t, &last, now);
        assert!(d.discard_records && d.retain_empty);
        m.producer_id = 7;
        let d = decide(&m, Some(true), &mut t, &last, now);
        assert!(d.discard_records && !d.retain_empty);
    }
}
