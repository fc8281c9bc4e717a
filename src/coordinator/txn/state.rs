//! A transactional id's metadata and the legal moves of its state machine (Kafka 4.1's `TransactionState`
//! and `TransactionMetadata`).
//!
//! Ownership: values of [`TxnMetadata`] live in their [`super::TxnShard`]; operations build the *next* value
//! and check it with [`TxnMetadata::check_transition`], and only replaying the record that carries it replaces
//! the current one.

use std::collections::BTreeSet;

/// No producer id (Kafka's `RecordBatch.NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;
/// No producer epoch (Kafka's `RecordBatch.NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// The state of a transactional id, with Kafka's ids (written as `TransactionStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    /// No transaction is running.
    Empty,
    /// Partitions were added; the transaction runs.
    Ongoing,
    /// EndTxn(commit) accepted; markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fence; markers are being written.
    PrepareAbort,
    /// Commit markers written.
    CompleteCommit,
    /// Abort markers written.
    CompleteAbort,
    /// The id expired; only ever a step before its tombstone.
    Dead,
    /// A new producer fences an ongoing transaction: never written, the step from Ongoing to PrepareAbort
    /// with a bumped epoch.
    PrepareEpochFence,
}

impl TxnState {
    /// Every state, for tests and tables.
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// Kafka's state id.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// The state of a Kafka state id.
    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name DescribeTransactions and ListTransactions show.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The states this one may follow (Kafka 4.1's `validPreviousStates`; PrepareAbort may follow Empty and
    /// the complete states for transaction version 2, whose clients abort when unsure).
    pub fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[
                Ongoing,
                PrepareEpochFence,
                Empty,
                CompleteCommit,
                CompleteAbort,
            ],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// Whether `self -> next` is a legal move.
    pub fn may_become(self, next: TxnState) -> bool {
        next.valid_previous().contains(&self)
    }

    /// Whether an idle id in this state may expire (`transactional.id.expiration.ms`).
    pub fn expiration_allowed(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }

    /// Whether markers are being written (the transaction is neither running nor done).
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// An illegal state move: a bug in an operation, answered as the request's error rather than applied.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("illegal transaction state move {from:?} -> {to:?}")]
pub struct IllegalTransition {
    /// The current state.
    pub from: TxnState,
    /// The refused state.
    pub to: TxnState,
}

/// One transactional id's metadata: what a `TransactionLogValue` holds, plus the last epoch kept in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    /// The producer id in use.
    pub producer_id: i64,
    /// The producer id of the last committed transaction before a rotation (KIP-360), or -1.
    pub prev_producer_id: i64,
    /// The producer id handed to the client for after this transaction (transaction version 2), or -1.
    pub next_producer_id: i64,
    /// The current epoch (-1 for a new id before its first InitProducerId completes).
    pub producer_epoch: i16,
    /// The epoch before the last bump by the same producer (KIP-360 retries). Not in Kafka's record, so -1
    /// after a load, exactly as in Kafka after a coordinator move.
    pub last_producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub timeout_ms: i32,
    /// The state.
    pub state: TxnState,
    /// Partitions in the transaction, ordered (deterministic records).
    pub partitions: BTreeSet<(String, i32)>,
    /// When the first partition was added (-1 when none).
    pub start_ms: i64,
    /// When this metadata last changed (drives expiration).
    pub last_update_ms: i64,
    /// The client's transaction version (0/1: EndTxn up to v4; 2: KIP-890).
    pub client_txn_version: i16,
}

impl TxnMetadata {
    /// A new id: no epoch yet, Empty.
    pub fn new(producer_id: i64, timeout_ms: i32, now: i64) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            prev_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now,
            client_txn_version: 0,
        }
    }

    /// Checks `self -> next` against the state table.
    pub fn check_transition(&self, next: &TxnMetadata) -> Result<(), IllegalTransition> {
        if self.state.may_become(next.state) {
            Ok(())
        } else {
            Err(IllegalTransition {
                from: self.state,
                to: next.state,
            })
        }
    }

    /// Whether no epoch is left for this producer id: `Short.MAX_VALUE - 1` is the last one a client may use
    /// (the last value is kept for the fencing bump).
    pub fn epoch_exhausted(epoch: i16) -> bool {
        epoch >= i16::MAX - 1
    }

    /// The epoch a fence moves to: one more, never past `i16::MAX`.
    pub fn fenced_epoch(&self) -> i16 {
        if self.producer_epoch == i16::MAX {
            self.producer_epoch
        } else {
            self.producer_epoch + 1
        }
    }

    /// Whether the transaction ran past its timeout at `now`.
    pub fn timed_out(&self, now: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.start_ms >= 0
            && self.start_ms.saturating_add(i64::from(self.timeout_ms)) < now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair of states against Kafka 4.1's table, written out as the list of legal moves.
    #[test]
    fn transition_table_matches_kafka() {
        use TxnState::*;
        let legal: &[(TxnState, TxnState)] = &[
            (Empty, Empty),
            (CompleteCommit, Empty),
            (CompleteAbort, Empty),
            (Ongoing, Ongoing),
            (Empty, Ongoing),
            (CompleteCommit, Ongoing),
            (CompleteAbort, Ongoing),
            (Ongoing, PrepareCommit),
            (Ongoing, PrepareAbort),
            (PrepareEpochFence, PrepareAbort),
            (Empty, PrepareAbort),
            (CompleteCommit, PrepareAbort),
            (CompleteAbort, PrepareAbort),
            (PrepareCommit, CompleteCommit),
            (PrepareAbort, CompleteAbort),
            (Empty, Dead),
            (CompleteAbort, Dead),
            (CompleteCommit, Dead),
            (Ongoing, PrepareEpochFence),
        ];
        for from in TxnState::ALL {
            for to in TxnState::ALL {
                assert_eq!(
                    from.may_become(to),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn ids_round_trip_and_unknown_ids_are_refused() {
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_id(s.id()), Some(s));
        }
        assert_eq!(TxnState::from_id(8), None);
        assert_eq!(TxnState::from_id(-1), None);
        assert_eq!(TxnState::PrepareEpochFence.id(), 7);
        assert_eq!(TxnState::CompleteAbort.name(), "CompleteAbort");
    }

    #[test]
    fn epochs_exhaust_and_fence_without_overflow() {
        assert!(!TxnMetadata::epoch_exhausted(i16::MAX - 2));
        assert!(TxnMetadata::epoch_exhausted(i16::MAX - 1));
        let mut m = TxnMetadata::new(7, 1000, 0);
        m.producer_epoch = i16::MAX;
        assert_eq!(m.fenced_epoch(), i16::MAX);
        m.producer_epoch = 4;
        assert_eq!(m.fenced_epoch(), 5);
    }

    #[test]
    fn timeout_counts_from_the_first_partition() {
        let mut m = TxnMetadata::new(7, 1000, 0);
        assert!(!m.timed_out(10_000), "Empty never times out");
        m.state = TxnState::Ongoing;
        m.start_ms = 100;
        assert!(!m.timed_out(1100));
        assert!(m.timed_out(1101));
    }
}
