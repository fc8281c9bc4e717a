//! One transaction coordinator shard: the transactional ids that hash to one `__transaction_state` partition
//! (Kafka's `TransactionCoordinator` with its `TransactionStateManager`).
//!
//! Ownership: a [`TxnShard`] is owned by its slot in the coordinator runtime and only touched under that slot's
//! lock, one operation at a time. Operations are pure: `(&shard, request, now) -> (answer, records)`. The runtime
//! appends the records to the partition, then calls [`TxnShard::replay`]; replay is the only way metadata
//! changes, and loading a partition is the same replay.
//!
//! Completing a transaction takes two writes with markers between them: EndTxn (or a timeout, or a fence)
//! writes PrepareCommit/PrepareAbort; once that is durable the runtime asks its [`MarkerWriter`] to write the
//! COMMIT/ABORT control batches to every partition of the transaction ([`TxnShard::pending_markers`]), and
//! when they are written appends [`TxnShard::complete`]'s CompleteCommit/CompleteAbort. A failed marker write
//! leaves the transaction in its prepare state; the next timer tick (and the load after a restart) tries again,
//! so markers are written at least once, as in Kafka.
//!
//! Bounds: at most [`TxnLimits::max_transactional_ids`] ids per shard (a new id beyond it is answered
//! COORDINATOR_NOT_AVAILABLE, retriable, until idle ids expire) and [`MAX_PARTITIONS_PER_TXN`] partitions per
//! transaction, and [`MAX_VALUE_BYTES`] per transaction record (INVALID_REQUEST beyond). The timer scan is
//! O(ids in the shard).

pub mod admin;
pub mod coordinator;
pub mod local_markers;
/// The marker batch lives with the log, which writes and replays it.
pub use crate::log::marker as markers;
pub mod records;
pub mod state;

use std::collections::{BTreeSet, HashMap};

use kafka_protocol::error::ResponseError as E;

pub use coordinator::{TxnCoordinator, TXN_TICK_MS};
pub use local_markers::LocalMarkerWriter;
pub use records::TxnRecord;
pub use state::{TxnMetadata, TxnState, NO_PRODUCER_EPOCH, NO_PRODUCER_ID};

/// Partitions one transaction may hold: keeps one `TransactionLogValue` well under a batch (each partition
/// costs 4 bytes, each topic its name) and bounds the marker fan-out.
pub const MAX_PARTITIONS_PER_TXN: usize = 10_000;

/// The largest `TransactionLogValue` written: below the default `max.message.bytes` (1 MiB) of
/// `__transaction_state`, so a transaction's record always fits a batch there.
pub const MAX_VALUE_BYTES: usize = 900 * 1024;

/// The internal topic holding transaction metadata.
pub const TXN_STATE_TOPIC: &str = "__transaction_state";

/// Settings of the transaction coordinator (Kafka's names in the comments).
#[derive(Debug, Clone, Copy)]
pub struct TxnLimits {
    /// `transaction.max.timeout.ms`: larger producer timeouts get INVALID_TRANSACTION_TIMEOUT.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: idle ids (Empty, CompleteCommit, CompleteAbort) are removed after it.
    pub id_expiration_ms: i64,
    /// Transactional ids one shard keeps.
    pub max_transactional_ids: usize,
}

impl Default for TxnLimits {
    fn default() -> Self {
        TxnLimits {
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            max_transactional_ids: 100_000,
        }
    }
}

/// The answer of InitProducerId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitAnswer {
    /// The producer id and epoch to use.
    Ok {
        /// Producer id.
        producer_id: i64,
        /// Epoch.
        epoch: i16,
    },
    /// A Kafka error code.
    Err(i16),
    /// The operation needs a fresh producer id: the caller gets one (asynchronously, from the controller) and
    /// runs the operation again with it.
    NeedProducerId,
}

/// The answer of EndTxn with transaction version 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndAnswer {
    /// The producer id and epoch the client goes on with.
    Ok {
        /// Producer id.
        producer_id: i64,
        /// Epoch.
        epoch: i16,
    },
    /// A Kafka error code.
    Err(i16),
    /// The epoch is used up: call again with a fresh producer id.
    NeedProducerId,
}

/// The COMMIT/ABORT markers one transaction still needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    /// The transactional id (to complete it afterwards).
    pub transactional_id: String,
    /// The producer id the markers carry.
    pub producer_id: i64,
    /// The epoch the markers carry (bumped by a fence, so the fenced producer can no longer write).
    pub producer_epoch: i16,
    /// COMMIT (true) or ABORT (false).
    pub commit: bool,
    /// The partitions, in order.
    pub partitions: Vec<(String, i32)>,
}

/// Writes transaction markers (Kafka's `TransactionMarkerChannelManager`; on a single broker, control batches
/// appended to local partitions).
///
/// For a `__consumer_offsets` partition the marker also makes the group coordinator's pending transactional
/// offsets of this producer visible (commit) or drops them (abort): the writer must call the group side's
/// `complete_transactional_offsets` hook there once it exists (the group coordinator has no transactional
/// offsets yet).
pub trait MarkerWriter: Send + Sync {
    /// Writes the markers of `job` to every partition; `Err` names why (retried later, all partitions again:
    /// a duplicate marker closes nothing twice on the partition side).
    fn write_markers(&self, job: &MarkerJob, coordinator_epoch: i32) -> Result<(), String>;
}

/// The transactional ids of one `__transaction_state` partition.
#[derive(Debug)]
pub struct TxnShard {
    txns: HashMap<String, TxnMetadata>,
    limits: TxnLimits,
}

fn record(id: &str, m: TxnMetadata) -> TxnRecord {
    TxnRecord {
        transactional_id: id.to_string(),
        value: Some(m),
    }
}

impl TxnShard {
    /// An empty shard.
    pub fn new(limits: TxnLimits) -> TxnShard {
        TxnShard {
            txns: HashMap::new(),
            limits,
        }
    }

    /// One id's metadata.
    pub fn get(&self, id: &str) -> Option<&TxnMetadata> {
        self.txns.get(id)
    }

    /// How many ids the shard holds.
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    /// Whether the shard holds no id.
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Every id with its metadata (ListTransactions, DescribeTransactions, tests).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &TxnMetadata)> {
        self.txns.iter()
    }

    /// Whether InitProducerId for `id` will need a fresh producer id (unknown id, or its epochs are used up),
    /// so the caller can fetch one before taking the shard's lock.
    pub fn needs_producer_id(&self, id: &str) -> bool {
        self.txns
            .get(id)
            .is_none_or(|m| TxnMetadata::epoch_exhausted(m.producer_epoch))
    }

    /// InitProducerId with a transactional id (Kafka's `handleInitProducerId` + `prepareInitProducerIdTransit`).
    /// `expected` is the KIP-360 (producer id, epoch) of a producer recovering from an error; `new_pid` a
    /// producer id never handed out, if the caller has one.
    pub fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        new_pid: Option<i64>,
        now: i64,
    ) -> (InitAnswer, Vec<TxnRecord>) {
        let err = |e: E| (InitAnswer::Err(e.code()), Vec::new());
        if id.is_empty() {
            return err(E::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > self.limits.max_timeout_ms {
            return err(E::InvalidTransactionTimeout);
        }
        let fresh;
        let m = match self.txns.get(id) {
            Some(m) => m,
            None => {
                if self.txns.len() >= self.limits.max_transactional_ids {
                    tracing::warn!(
                        transactional_id = id,
                        cap = self.limits.max_transactional_ids,
                        "transaction coordinator shard full; refusing a new transactional id"
                    );
                    return err(E::CoordinatorNotAvailable);
                }
                let Some(pid) = new_pid else {
                    return (InitAnswer::NeedProducerId, Vec::new());
                };
                fresh = TxnMetadata::new(pid, timeout_ms, now);
                &fresh
            }
        };
        if let Some(exp) = expected {
            if !valid_expected_producer(m, exp) {
                return err(E::ProducerFenced);
            }
        }
        match m.state {
            TxnState::PrepareCommit
            | TxnState::PrepareAbort
            | TxnState::Dead
            | TxnState::PrepareEpochFence => err(E::ConcurrentTransactions),
            TxnState::Ongoing => {
                // Fence the producer of the running transaction: abort it with a bumped epoch (its batches and
                // EndTxn then fail), and let the new producer retry once the abort is complete.
                let mut fence = m.clone();
                fence.state = TxnState::PrepareEpochFence;
                fence.producer_epoch = m.fenced_epoch();
                fence.last_producer_epoch = NO_PRODUCER_EPOCH;
                let mut abort = fence.clone();
                abort.state = TxnState::PrepareAbort;
                abort.last_update_ms = now;
                if m.check_transition(&fence).is_err() || fence.check_transition(&abort).is_err() {
                    return err(E::ConcurrentTransactions);
                }
                (
                    InitAnswer::Err(E::ConcurrentTransactions.code()),
                    vec![record(id, abort)],
                )
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut next = m.clone();
                let rotate = TxnMetadata::epoch_exhausted(m.producer_epoch)
                    && expected.is_none_or(|(_, e)| e == m.producer_epoch);
                if rotate {
                    let Some(pid) = new_pid else {
                        return (InitAnswer::NeedProducerId, Vec::new());
                    };
                    next.prev_producer_id = m.producer_id;
                    next.producer_id = pid;
                    next.producer_epoch = 0;
                    next.last_producer_epoch = if expected.is_some() {
                        m.producer_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                } else {
                    let bumped = m.producer_epoch.saturating_add(1);
                    match expected.map(|(_, e)| e) {
                        None => {
                            next.producer_epoch = bumped;
                            next.last_producer_epoch = NO_PRODUCER_EPOCH;
                        }
                        Some(e)
                            if m.producer_epoch == NO_PRODUCER_EPOCH || e == m.producer_epoch =>
                        {
                            next.producer_epoch = bumped;
                            next.last_producer_epoch = m.producer_epoch;
                        }
                        // A retry of a bump that succeeded: answer the current epoch again.
                        Some(e) if e == m.last_producer_epoch => {}
                        Some(_) => return err(E::ProducerFenced),
                    }
                }
                next.state = TxnState::Empty;
                next.timeout_ms = timeout_ms;
                next.partitions = BTreeSet::new();
                next.start_ms = -1;
                next.last_update_ms = now;
                if let Err(e) = m.check_transition(&next) {
                    tracing::error!(transactional_id = id, "{e}");
                    return err(E::ConcurrentTransactions);
                }
                let answer = InitAnswer::Ok {
                    producer_id: next.producer_id,
                    epoch: next.producer_epoch,
                };
                (answer, vec![record(id, next)])
            }
        }
    }

    /// Checks the producer of a request against the id's metadata: INVALID_PRODUCER_ID_MAPPING for an unknown
    /// id or another producer id, PRODUCER_FENCED for another epoch (Kafka 4.1, transaction version 1).
    fn check_producer(&self, id: &str, pid: i64, epoch: i16) -> Result<&TxnMetadata, i16> {
        if id.is_empty() {
            return Err(E::InvalidRequest.code());
        }
        let m = self
            .txns
            .get(id)
            .ok_or(E::InvalidProducerIdMapping.code())?;
        if m.producer_id != pid {
            return Err(E::InvalidProducerIdMapping.code());
        }
        if m.producer_epoch != epoch {
            return Err(E::ProducerFenced.code());
        }
        Ok(m)
    }

    /// AddPartitionsToTxn (client form, v0–3 and v4+ non-verify) and AddOffsetsToTxn (the group's
    /// `__consumer_offsets` partition): `Err` is the error of every partition.
    pub fn add_partitions(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now: i64,
    ) -> Result<Vec<TxnRecord>, i16> {
        let m = self.check_producer(id, pid, epoch)?;
        if m.state.is_prepare() {
            return Err(E::ConcurrentTransactions.code());
        }
        if !matches!(
            m.state,
            TxnState::Empty
                | TxnState::Ongoing
                | TxnState::CompleteCommit
                | TxnState::CompleteAbort
        ) {
            return Err(E::InvalidTxnState.code());
        }
        if m.state == TxnState::Ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
            return Ok(Vec::new()); // nothing new: no write
        }
        let mut next = m.clone();
        next.partitions.extend(partitions.iter().cloned());
        if next.partitions.len() > MAX_PARTITIONS_PER_TXN {
            tracing::warn!(
                transactional_id = id,
                cap = MAX_PARTITIONS_PER_TXN,
                "refusing partitions beyond the per-transaction cap"
            );
            return Err(E::InvalidRequest.code());
        }
        if m.state != TxnState::Ongoing {
            next.start_ms = now;
        }
        next.state = TxnState::Ongoing;
        next.last_update_ms = now;
        m.check_transition(&next)
            .map_err(|_| E::InvalidTxnState.code())?;
        let rec = record(id, next);
        // Long topic names can make the value outgrow a batch before the partition count does.
        if rec.encode().1.map_or(0, |v| v.len()) > MAX_VALUE_BYTES {
            tracing::warn!(
                transactional_id = id,
                "refusing partitions: the transaction's record would exceed {MAX_VALUE_BYTES} bytes"
            );
            return Err(E::InvalidRequest.code());
        }
        Ok(vec![rec])
    }

    /// AddPartitionsToTxn v4+ with `verify_only` (a broker asking whether a partition is in the transaction):
    /// the error per partition, or `Err` for all.
    pub fn verify_partitions(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        let m = self.check_producer(id, pid, epoch)?;
        if m.state.is_prepare() {
            return Err(E::ConcurrentTransactions.code());
        }
        Ok(partitions
            .iter()
            .map(|p| {
                if m.state == TxnState::Ongoing && m.partitions.contains(p) {
                    0
                } else {
                    E::InvalidTxnState.code()
                }
            })
            .collect())
    }

    /// EndTxn, transaction version 1 (EndTxn v0–4): Ongoing moves to PrepareCommit/PrepareAbort; a retry of a
    /// finished or finishing end with the same result succeeds or is told to wait.
    pub fn end_txn(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
        now: i64,
    ) -> Result<Vec<TxnRecord>, i16> {
        let m = self.check_producer(id, pid, epoch)?;
        let ok_if = |same: bool, wait: bool| {
            if !same {
                Err(E::InvalidTxnState.code())
            } else if wait {
                Err(E::ConcurrentTransactions.code())
            } else {
                Ok(Vec::new())
            }
        };
        match m.state {
            TxnState::Ongoing => {
                let mut next = m.clone();
                next.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                next.last_update_ms = now;
                m.check_transition(&next)
                    .map_err(|_| E::InvalidTxnState.code())?;
                Ok(vec![record(id, next)])
            }
            TxnState::CompleteCommit => ok_if(commit, false),
            TxnState::CompleteAbort => ok_if(!commit, false),
            TxnState::PrepareCommit => ok_if(commit, true),
            TxnState::PrepareAbort => ok_if(!commit, true),
            TxnState::Empty | TxnState::Dead | TxnState::PrepareEpochFence => {
                Err(E::InvalidTxnState.code())
            }
        }
    }

    /// EndTxn, transaction version 2 (EndTxn v5+, KIP-890): every end bumps the epoch (the prepare record
    /// carries it, so do the markers); an abort is also allowed with no transaction running (Empty or complete,
    /// the client was unsure); a retry names the epoch before the bump. When the bumped epoch is the last one,
    /// the answer carries a fresh producer id with epoch 0 (`new_pid`; [`EndAnswer::NeedProducerId`] asks
    /// for one) and the completion rotates to it.
    pub fn end_txn_v2(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
        new_pid: Option<i64>,
        now: i64,
    ) -> (EndAnswer, Vec<TxnRecord>) {
        let err = |e: E| (EndAnswer::Err(e.code()), Vec::new());
        if id.is_empty() {
            return err(E::InvalidRequest);
        }
        let Some(m) = self.txns.get(id) else {
            return err(E::InvalidProducerIdMapping);
        };
        // Retries carry the epoch before the bump, or, after a rotation, the old producer id with its last
        // epoch (Kafka's `retryOnEpochBump` / `retryOnOverflow`): both survive a load, unlike the last epoch.
        let retry_on_overflow =
            m.prev_producer_id == pid && epoch == i16::MAX - 1 && m.producer_epoch == 0;
        let retry_on_bump = m.producer_id == pid && epoch.checked_add(1) == Some(m.producer_epoch);
        let retry = retry_on_bump || retry_on_overflow;
        if m.producer_id != pid && !retry_on_overflow {
            return err(E::InvalidProducerIdMapping);
        }
        // With every end bumping the epoch, the same epoch in a prepare state is the *next* end, not a retry.
        let valid_epoch = match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                retry || epoch == m.producer_epoch
            }
            _ => epoch == m.producer_epoch,
        };
        let current = EndAnswer::Ok {
            producer_id: m.producer_id,
            epoch: m.producer_epoch,
        };
        let prepare = |m: &TxnMetadata, commit: bool| -> (EndAnswer, Vec<TxnRecord>) {
            let mut next = m.clone();
            let exhausted = TxnMetadata::epoch_exhausted(m.producer_epoch);
            let answer = if exhausted {
                let Some(p) = new_pid else {
                    return (EndAnswer::NeedProducerId, Vec::new());
                };
                next.next_producer_id = p;
                EndAnswer::Ok {
                    producer_id: p,
                    epoch: 0,
                }
            } else {
                EndAnswer::Ok {
                    producer_id: m.producer_id,
                    epoch: m.producer_epoch + 1,
                }
            };
            next.producer_epoch = m.fenced_epoch();
            next.last_producer_epoch = m.producer_epoch;
            next.state = if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            };
            if m.state != TxnState::Ongoing {
                next.start_ms = now; // an abort with no partition added
            }
            next.last_update_ms = now;
            next.client_txn_version = 2;
            if m.check_transition(&next).is_err() {
                return (EndAnswer::Err(E::InvalidTxnState.code()), Vec::new());
            }
            (answer, vec![record(id, next)])
        };
        if !valid_epoch {
            return err(E::ProducerFenced);
        }
        match (m.state, commit) {
            (TxnState::Ongoing, _) => prepare(m, commit),
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if retry => {
                (current, Vec::new())
            }
            // An abort while unsure (TV2 clients abort when they do not know the state): a new, empty abort.
            (TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Empty, false)
                if !retry =>
            {
                prepare(m, false)
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                err(E::ConcurrentTransactions)
            }
            _ => err(E::InvalidTxnState),
        }
    }

    /// The transactions whose markers are still to be written (in a prepare state), in id order.
    pub fn pending_markers(&self) -> Vec<MarkerJob> {
        let mut out: Vec<MarkerJob> = self
            .txns
            .iter()
            .filter(|(_, m)| m.state.is_prepare())
            .map(|(id, m)| MarkerJob {
                transactional_id: id.clone(),
                producer_id: m.producer_id,
                producer_epoch: m.producer_epoch,
                commit: m.state == TxnState::PrepareCommit,
                partitions: m.partitions.iter().cloned().collect(),
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }

    /// The markers of `job` are written: CompleteCommit/CompleteAbort, if the id is still in that prepare
    /// state with that producer.
    pub fn complete(&self, job: &MarkerJob, now: i64) -> Vec<TxnRecord> {
        let Some(m) = self.txns.get(&job.transactional_id) else {
            return Vec::new();
        };
        let want = if job.commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        if m.state != want
            || m.producer_id != job.producer_id
            || m.producer_epoch != job.producer_epoch
        {
            return Vec::new();
        }
        let mut next = m.clone();
        next.state = if job.commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        if m.next_producer_id != NO_PRODUCER_ID {
            // KIP-890 epoch overflow: the client was already given the next producer id with epoch 0.
            next.prev_producer_id = m.producer_id;
            next.producer_id = m.next_producer_id;
            next.producer_epoch = 0;
        }
        next.partitions = BTreeSet::new();
        next.next_producer_id = NO_PRODUCER_ID;
        next.last_update_ms = now;
        if m.check_transition(&next).is_err() {
            return Vec::new();
        }
        vec![record(&job.transactional_id, next)]
    }

    /// Timers: aborts transactions past their timeout (bumping the epoch, so their producer is fenced, as
    /// Kafka's `abortTimedOutTransactions` does) and removes ids idle past `transactional.id.expiration.ms`
    /// (a tombstone; Kafka's `Dead` is the step before it).
    pub fn tick(&self, now: i64) -> Vec<TxnRecord> {
        let mut out = Vec::new();
        let mut ids: Vec<&String> = self.txns.keys().collect();
        ids.sort();
        for id in ids {
            let m = &self.txns[id];
            if m.timed_out(now) {
                let mut abort = m.clone();
                abort.producer_epoch = m.fenced_epoch();
                abort.last_producer_epoch = NO_PRODUCER_EPOCH;
                abort.state = TxnState::PrepareAbort;
                abort.last_update_ms = now;
                tracing::info!(
                    transactional_id = id.as_str(),
                    producer_id = m.producer_id,
                    "aborting a transaction past its timeout of {} ms",
                    m.timeout_ms
                );
                out.push(record(id, abort));
            } else if m.state.expiration_allowed()
                && m.last_update_ms
                    .saturating_add(self.limits.id_expiration_ms)
                    <= now
            {
                out.push(TxnRecord {
                    transactional_id: id.clone(),
                    value: None,
                });
            }
        }
        out
    }

    /// Applies one written (or loaded) record: the only way the shard changes.
    pub fn replay(&mut self, r: &TxnRecord) {
        match &r.value {
            Some(m) if m.state != TxnState::Dead => {
                self.txns.insert(r.transactional_id.clone(), m.clone());
            }
            _ => {
                self.txns.remove(&r.transactional_id);
            }
        }
    }
}

/// Kafka's `isValidProducerId` for a KIP-360 InitProducerId: the expected producer may go on if the id was just
/// created, if it names the current producer id (its epoch is checked by the bump), or if it names the previous
/// one with an exhausted epoch (a retry of a rotation whose answer was lost).
fn valid_expected_producer(m: &TxnMetadata, (pid, epoch): (i64, i16)) -> bool {
    m.producer_epoch == NO_PRODUCER_EPOCH
        || pid == m.producer_id
        || (pid == m.prev_producer_id && TxnMetadata::epoch_exhausted(epoch))
}

#[cfg(test)]
mod tests;
