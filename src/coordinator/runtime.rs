//! The coordinator runtime: one shard per partition of an internal topic this broker leads (Kafka's
//! `CoordinatorRuntime`), shared by the group coordinator ([`GroupShard`] over `__consumer_offsets`) and the
//! transaction coordinator (`TxnShard` over `__transaction_state`) through the small [`Shard`] trait: how a
//! record is encoded and decoded, how it is replayed, and what a failed write tells the shard. The group side
//! (its `Shard` impl, building the group coordinator from the broker's settings, the offsets retention event)
//! is in `coordinator/group/runtime_ext.rs`; the transaction side in `coordinator/txn/coordinator.rs`.
//!
//! Ownership and locking: `shards` maps a partition index to its slot; the map's `RwLock` is taken only to find
//! or insert/remove a slot. Each slot's `std::sync::Mutex` owns the shard and is held for exactly one operation:
//! run the pure operation, append its records to the partition (a normal v2 batch, uncompressed, stamped with
//! the partition's leader epoch by the usual leader append), replay them, release. So the shard's state never
//! runs ahead of its log, an answer is given only after its records are in the log (the group's "acks=all"),
//! and no coordinator lock is ever taken on the produce/fetch path (produce and fetch only take the partition's
//! own log lock, which the coordinator takes briefly through [`Partition::append`] like any producer).
//!
//! Lifecycle: [`CoordinatorRuntime::load`] marks a partition Loading (requests get
//! COORDINATOR_LOAD_IN_PROGRESS), replays the whole partition on a blocking thread and then activates the
//! shard; [`CoordinatorRuntime::unload`] drops it (waiting requests then answer NOT_COORDINATOR). Start-up
//! calls `load` for every hosted partition; leadership changes will call the same two functions. Timers run as
//! shard tick events from [`CoordinatorRuntime::tick_all`], called by a background loop.
//!
//! An operation that needs more than one write under one lock (the transaction coordinator's prepare, markers,
//! complete) uses [`CoordinatorRuntime::run_with`], whose [`ShardWriter`] appends and replays each step.
//!
//! Transactions (Kafka's `scheduleTransactionalWriteOperation` and `completeTransaction`):
//! [`ShardWriter::write_transactional`] writes a shard's records as one transactional batch of a producer
//! (base sequence 0, as Kafka's runtime writes it; the log skips sequence checks for the coordinator origin
//! and keeps the epoch check), replayed through [`Shard::replay_at`] with the producer id, so the shard keeps
//! them pending; [`CoordinatorRuntime::complete_transaction`] appends the COMMIT/ABORT marker under the slot's
//! lock and replays it through [`Shard::replay_marker`]. Loading replays control batches the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::group::GroupShard;
use crate::log::AppendOrigin;
use crate::partition::manager::ReplicaManager;
use crate::partition::{AppendError, Partition};

/// A coordinator shard: state rebuilt by replaying the records of one internal partition.
pub trait Shard: Send + 'static {
    /// One record of the internal topic.
    type Record: Send;
    /// The internal topic.
    const TOPIC: &'static str;
    /// Decodes a record; `Ok(None)` is a record type this shard skips.
    fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<Self::Record>, String>;
    /// Encodes a record: key, and value (`None` for a tombstone).
    fn encode(record: &Self::Record) -> (Bytes, Option<Bytes>);
    /// Applies a written or loaded record: the only way the shard's state changes.
    fn replay(&mut self, record: &Self::Record, now: i64);
    /// Applies a record at its log `offset`; `producer_id` is set when the record is part of that producer's
    /// transaction (pending until the transaction's marker, Kafka's `replay(offset, producerId, ...)`). The
    /// default forgets both: a shard that never writes transactionally.
    fn replay_at(
        &mut self,
        record: &Self::Record,
        offset: i64,
        producer_id: Option<i64>,
        now: i64,
    ) {
        let _ = (offset, producer_id);
        self.replay(record, now);
    }
    /// A COMMIT (`commit`) or ABORT marker of `producer_id`'s transaction in this partition (Kafka's
    /// `replayEndTransactionMarker`). The default: nothing is ever pending.
    fn replay_marker(&mut self, _producer_id: i64, _commit: bool, _now: i64) {}
    /// Records could not be written (`code` is the Kafka error); waiting requests may need an answer.
    fn write_failed(&mut self, _records: &[Self::Record], _code: i16, _now: i64) {}
    /// Timer event: the records it produces.
    fn tick(&mut self, now: i64) -> Vec<Self::Record>;
    /// How many entities (groups, transactional ids) the shard holds, for the load log line.
    fn size(&self) -> usize;
}

/// Runs a coordinator operation from async code: it may wait for a shard lock held across appends (and
/// `flush.messages` fsyncs) or append itself, so on a multi-thread runtime it runs through tokio's
/// `block_in_place`, which hands this worker's other tasks to another thread first; elsewhere (a blocking
/// thread, a current-thread test runtime) it just runs.
pub fn off_worker<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often group timers (session, rebalance and sync timeouts, initial delay) are checked, in ms.
pub const TICK_MS: u64 = 50;

/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

/// Why an operation could not run or its records could not be written; the Kafka error code for the edge.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorError {
    /// This broker does not lead the key's partition.
    #[error("this broker is not the coordinator of the group or transactional id")]
    NotCoordinator,
    /// The partition is being loaded.
    #[error("the coordinator is loading the partition")]
    Loading,
    /// The records could not be appended (storage error, partition offline).
    #[error("the coordinator could not write its records")]
    Unavailable,
    /// The records do not fit one batch.
    #[error("the coordinator's records are larger than a batch may be")]
    TooLarge,
}

impl CoordinatorError {
    /// The Kafka error code.
    pub fn code(self) -> i16 {
        match self {
            CoordinatorError::NotCoordinator => E::NotCoordinator.code(),
            CoordinatorError::Loading => E::CoordinatorLoadInProgress.code(),
            CoordinatorError::Unavailable => E::CoordinatorNotAvailable.code(),
            CoordinatorError::TooLarge => E::UnknownServerError.code(),
        }
    }
}

enum Slot<S> {
    Loading,
    Active(Box<S>),
}

/// The coordinator runtime of one internal topic on this broker.
pub struct CoordinatorRuntime<S: Shard> {
    replicas: Arc<ReplicaManager>,
    make: Box<dyn Fn() -> S + Send + Sync>,
    shards: RwLock<HashMap<i32, Arc<Mutex<Slot<S>>>>>,
    /// Partitions of the internal topic as it exists (the configured count until it does): placement follows
    /// the real topic, as Kafka's does.
    partitions: AtomicI32,
}

/// The group coordinator of this broker.
pub type GroupCoordinator = CoordinatorRuntime<GroupShard>;

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`: Java's `String.hashCode` over UTF-16 code units, so a
/// group (or transactional id) lands on the same partition as in Kafka.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// One operation's access to its shard under the shard's lock: read or change it only through [`Self::write`].
pub struct ShardWriter<'a, S: Shard> {
    runtime: &'a CoordinatorRuntime<S>,
    index: i32,
    shard: &'a mut S,
    now: i64,
}

impl<S: Shard> ShardWriter<'_, S> {
    /// The shard.
    pub fn shard(&self) -> &S {
        self.shard
    }

    /// The operation's time.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// The partition index of the shard.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// The leader epoch of the shard's partition (Kafka's coordinator epoch), -1 if it is gone.
    pub fn coordinator_epoch(&self) -> i32 {
        self.runtime
            .replicas
            .get(S::TOPIC, self.index)
            .map_or(-1, |p| p.leader_epoch())
    }

    /// Appends records to the partition and replays them; on failure the shard hears of it.
    pub fn write(&mut self, records: Vec<S::Record>) -> Result<(), CoordinatorError> {
        self.runtime
            .write(self.index, self.shard, records, self.now, None)
    }

    /// Appends records as one transactional batch of `producer_id` at `producer_epoch` and replays them as
    /// that producer's pending records (TxnOffsetCommit); its transaction's marker settles them.
    pub fn write_transactional(
        &mut self,
        records: Vec<S::Record>,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<(), CoordinatorError> {
        self.runtime.write(
            self.index,
            self.shard,
            records,
            self.now,
            Some((producer_id, producer_epoch)),
        )
    }

    /// The shard, for operations that keep runtime-only bookkeeping in it (the classic group protocol's
    /// waiting requests); coordinator state still changes only by [`Self::write`].
    pub fn shard_mut(&mut self) -> &mut S {
        self.shard
    }
}

impl<S: Shard> CoordinatorRuntime<S> {
    /// A runtime with no shards loaded; `make` builds an empty shard.
    pub fn with_shards(
        replicas: Arc<ReplicaManager>,
        partitions: i32,
        make: impl Fn() -> S + Send + Sync + 'static,
    ) -> Self {
        CoordinatorRuntime {
            replicas,
            make: Box::new(make),
            shards: RwLock::new(HashMap::new()),
            partitions: AtomicI32::new(partitions),
        }
    }

    /// The partition of a key (group id, transactional id).
    pub fn partition_of(&self, key: &str) -> i32 {
        partition_for(key, self.partitions.load(Ordering::Acquire))
    }

    /// Records how many partitions the internal topic has.
    pub fn set_partition_count(&self, n: i32) {
        self.partitions.store(n.max(1), Ordering::Release);
    }

    /// Whether this broker coordinates the key: `Ok` when its shard is loaded.
    pub fn status(&self, key: &str) -> Result<(), CoordinatorError> {
        let slot = self.slot(self.partition_of(key))?;
        let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        match &*guard {
            Slot::Loading => Err(CoordinatorError::Loading),
            Slot::Active(_) => Ok(()),
        }
    }

    fn slot(&self, index: i32) -> Result<Arc<Mutex<Slot<S>>>, CoordinatorError> {
        let shards = self.shards.read().unwrap_or_else(|p| p.into_inner());
        shards
            .get(&index)
            .cloned()
            .ok_or(CoordinatorError::NotCoordinator)
    }

    /// Starts loading partition `index` (which this broker leads): requests get COORDINATOR_LOAD_IN_PROGRESS
    /// until the replay on a blocking thread is done.
    pub fn load(self: &Arc<Self>, index: i32) {
        let slot = Arc::new(Mutex::new(Slot::Loading));
        {
            let mut shards = self.shards.write().unwrap_or_else(|p| p.into_inner());
            shards.insert(index, slot.clone());
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let (mut shard, next) = me.replay_partition(index);
            // Markers for this partition may have been appended while it loaded (they take the slot lock, as
            // `complete_transaction` does, but do not wait for the load): catch up under the lock, so none is
            // missed and none replayed twice.
            let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = me.replicas.get(S::TOPIC, index) {
                replay_range(&mut shard, &p, index, next);
            }
            let size = shard.size();
            *guard = Slot::Active(Box::new(shard));
            tracing::debug!(topic = S::TOPIC, partition = index, size, elapsed = ?started.elapsed(), "loaded coordinator shard");
        });
    }

    /// Marks partition `index` as loading without loading it, so tests can see what requests get meanwhile.
    #[cfg(test)]
    pub(crate) fn mark_loading(&self, index: i32) {
        let mut shards = self.shards.write().unwrap_or_else(|p| p.into_inner());
        shards.insert(index, Arc::new(Mutex::new(Slot::Loading)));
    }

    /// Drops the shard of partition `index` (leadership moved away or the broker stops).
    pub fn unload(&self, index: i32) {
        let mut shards = self.shards.write().unwrap_or_else(|p| p.into_inner());
        shards.remove(&index);
    }

    /// Replays every record of the partition into a fresh shard; also returns the offset it stopped at.
    fn replay_partition(&self, index: i32) -> (S, i64) {
        let mut shard = (self.make)();
        let Some(p) = self.replicas.get(S::TOPIC, index) else {
            return (shard, 0);
        };
        let start = p.with_log(|l| l.log_start_offset());
        let next = replay_range(&mut shard, &p, index, start);
        (shard, next)
    }

    /// Ends `producer_id`'s transaction in partition `index` of the internal topic (the marker writer's call
    /// for `__consumer_offsets`, Kafka's `GroupCoordinatorService.completeTransaction`): under the shard's
    /// lock, appends the COMMIT/ABORT marker and replays it, so pending transactional records become
    /// committed or vanish exactly when the marker is in the log. A partition being loaded gets the marker
    /// and its load replays it; one this broker does not coordinate gets the marker only. `Ok(false)`: the
    /// partition is not hosted here (its marker is not needed).
    pub fn complete_transaction(
        &self,
        index: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Result<bool, AppendError> {
        let Some(p) = self.replicas.get(S::TOPIC, index) else {
            return Ok(false);
        };
        let now = crate::partition::manager::now_ms();
        let slot = {
            let shards = self.shards.read().unwrap_or_else(|p| p.into_inner());
            match shards.get(&index) {
                Some(slot) => slot.clone(),
                None => {
                    // Not coordinated here: append under the map's read lock, so a `load` starting now (it
                    // takes the write lock to add its slot) replays this marker rather than missing it.
                    p.append_marker(producer_id, producer_epoch, coordinator_epoch, commit, now)?;
                    return Ok(true);
                }
            }
        };
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        p.append_marker(producer_id, producer_epoch, coordinator_epoch, commit, now)?;
        if let Slot::Active(shard) = &mut *guard {
            shard.replay_marker(producer_id, commit, now);
        }
        Ok(true)
    }

    /// Runs one operation on the key's shard: `op` returns an answer and records; the records are appended
    /// and replayed before this returns. If the append fails, the shard hears of it and the error comes back
    /// with the answer.
    pub fn run<R>(
        &self,
        key: &str,
        op: impl FnOnce(&mut S, i64) -> (R, Vec<S::Record>),
    ) -> Result<(R, Option<CoordinatorError>), CoordinatorError> {
        self.run_with(key, |w| {
            let now = w.now;
            let (answer, records) = op(w.shard, now);
            let failed = w.write(records).err();
            (answer, failed)
        })
    }

    /// Runs `f` with the key's shard under its lock; `f` writes through the [`ShardWriter`], as often as it
    /// needs.
    pub fn run_with<R>(
        &self,
        key: &str,
        f: impl FnOnce(&mut ShardWriter<'_, S>) -> R,
    ) -> Result<R, CoordinatorError> {
        let index = self.partition_of(key);
        let slot = self.slot(index)?;
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        let Slot::Active(shard) = &mut *guard else {
            return Err(CoordinatorError::Loading);
        };
        let mut w = ShardWriter {
            runtime: self,
            index,
            shard,
            now: crate::partition::manager::now_ms(),
        };
        Ok(f(&mut w))
    }

    /// Reads a shard without writing.
    pub fn read<R>(&self, key: &str, f: impl FnOnce(&S) -> R) -> Result<R, CoordinatorError> {
        let slot = self.slot(self.partition_of(key))?;
        let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        match &*guard {
            Slot::Loading => Err(CoordinatorError::Loading),
            Slot::Active(shard) => Ok(f(shard)),
        }
    }

    /// Runs `f` on every loaded shard (ListGroups).
    pub fn for_each_shard(&self, mut f: impl FnMut(&S)) -> bool {
        let slots: Vec<_> = {
            let shards = self.shards.read().unwrap_or_else(|p| p.into_inner());
            shards.values().cloned().collect()
        };
        let mut all_loaded = true;
        for slot in slots {
            let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            match &*guard {
                Slot::Active(shard) => f(shard),
                Slot::Loading => all_loaded = false,
            }
        }
        all_loaded
    }

    /// Feeds the timer event to every loaded shard and writes what it produced.
    pub fn tick_all(&self, now: i64) {
        self.tick_all_with(now, |w| {
            let records = w.shard.tick(now);
            if let Err(e) = w.write(records) {
                tracing::warn!(
                    topic = S::TOPIC,
                    partition = w.index,
                    "timer records not written: {e}"
                );
            }
        });
    }

    /// Runs `f` on every loaded shard, under its lock, at time `now`.
    pub fn tick_all_with(&self, now: i64, mut f: impl FnMut(&mut ShardWriter<'_, S>)) {
        let slots: Vec<(i32, Arc<Mutex<Slot<S>>>)> = {
            let shards = self.shards.read().unwrap_or_else(|p| p.into_inner());
            shards.iter().map(|(i, s)| (*i, s.clone())).collect()
        };
        for (index, slot) in slots {
            let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Slot::Active(shard) = &mut *guard {
                let mut w = ShardWriter {
                    runtime: self,
                    index,
                    shard,
                    now,
                };
                f(&mut w);
            }
        }
    }

    /// Appends records to the shard's partition and replays them; on failure the shard hears of it.
    fn write(
        &self,
        index: i32,
        shard: &mut S,
        records: Vec<S::Record>,
        now: i64,
        txn: Option<(i64, i16)>,
    ) -> Result<(), CoordinatorError> {
        if records.is_empty() {
            return Ok(());
        }
        let result = match self.replicas.get(S::TOPIC, index) {
            Some(p) => append::<S>(&p, &records, now, txn),
            None => Err(CoordinatorError::NotCoordinator),
        };
        match result {
            Ok(first) => {
                let producer_id = txn.map(|(pid, _)| pid);
                for (offset, r) in (first..).zip(&records) {
                    shard.replay_at(r, offset, producer_id, now);
                }
                Ok(())
            }
            Err(e) => {
                shard.write_failed(&records, e.code(), now);
                Err(e)
            }
        }
    }
}

/// The offset after the batch at the start of `buf` (its header's last offset + 1), if a header is there.
fn batch_next_offset(buf: &[u8]) -> Option<i64> {
    crate::log::BatchHeader::parse(buf)
        .ok()
        .map(|h| h.next_offset())
}

/// Replays the records of `p` from `offset` up to its high watermark into `shard`: data records with their
/// offsets (transactional ones with their producer id), COMMIT/ABORT control records as markers. Returns the
/// offset after the last record read.
fn replay_range<S: Shard>(shard: &mut S, p: &Partition, index: i32, mut offset: i64) -> i64 {
    let topic = S::TOPIC;
    let now = crate::partition::manager::now_ms();
    let end = p.high_watermark();
    while offset < end {
        let read = p.with_log(|l| l.read(offset, LOAD_READ_BYTES, end, true));
        let mut buf: Bytes = match read {
            Ok(b) if !b.is_empty() => b,
            Ok(_) => break,
            Err(e) => {
                tracing::error!(
                    partition = index,
                    offset,
                    "cannot read {topic} while loading: {e}"
                );
                break;
            }
        };
        let before = offset;
        while !buf.is_empty() {
            // Progress by the batch's header too, not only its records: a compacted partition holds batches
            // the cleaner emptied (a producer's last batch, markers) and batches whose last records are gone.
            let batch_end = batch_next_offset(&buf);
            let set = match RecordBatchDecoder::decode(&mut buf) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(
                        partition = index,
                        offset,
                        "undecodable batch in {topic}: {e}"
                    );
                    return end;
                }
            };
            for r in &set.records {
                if r.offset < offset {
                    continue; // a batch read again from its start: its earlier records are replayed
                }
                offset = r.offset + 1;
                if r.control {
                    // Control record key: version (int16), type (int16: 0 ABORT, 1 COMMIT).
                    match r.key.as_deref() {
                        Some([_, _, 0, t]) if *t <= 1 => {
                            shard.replay_marker(r.producer_id, *t == 1, now);
                        }
                        _ => tracing::warn!(
                            topic,
                            partition = index,
                            offset = r.offset,
                            "skipping an unknown control record"
                        ),
                    }
                    continue;
                }
                let Some(key) = &r.key else { continue };
                let producer_id = r.transactional.then_some(r.producer_id);
                match S::decode(key, r.value.as_deref()) {
                    Ok(Some(rec)) => shard.replay_at(&rec, r.offset, producer_id, now),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        topic,
                        partition = index,
                        offset = r.offset,
                        "skipping record: {e}"
                    ),
                }
            }
            if let Some(next) = batch_end {
                offset = offset.max(next);
            }
        }
        if offset == before {
            break; // no progress (should not happen): stop rather than spin
        }
    }
    offset
}

/// Appends records as one uncompressed v2 batch through the leader append path; returns the first offset.
/// `txn`: a transactional batch of that producer id and epoch, with base sequence 0 as Kafka's coordinator
/// runtime writes it (the log skips sequence checks for the coordinator's own batches, keeps the epoch check).
fn append<S: Shard>(
    p: &Partition,
    records: &[S::Record],
    now: i64,
    txn: Option<(i64, i16)>,
) -> Result<i64, CoordinatorError> {
    let (producer_id, producer_epoch) = txn.unwrap_or((-1, -1));
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (key, value) = S::encode(r);
            let i32_index = i32::try_from(i).unwrap_or(i32::MAX);
            Record {
                transactional: txn.is_some(),
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // kafka-protocol keeps records in one batch while offset - sequence stays the same; the
                // batch's base sequence is the first record's: -1 without a producer id, else 0.
                sequence: if txn.is_some() {
                    i32_index
                } else {
                    i32_index - 1
                },
                timestamp: now,
                key: Some(key),
                value,
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|_| CoordinatorError::TooLarge)?;
    match p.append_from(buf.freeze(), true, now, AppendOrigin::Coordinator) {
        Ok(info) => Ok(info.first_offset),
        Err(AppendError::Log(crate::log::LogError::MessageTooLarge { .. }))
        | Err(AppendError::Log(crate::log::LogError::RecordListTooLarge { .. })) => {
            Err(CoordinatorError::TooLarge)
        }
        Err(AppendError::Deleted) => Err(CoordinatorError::NotCoordinator),
        Err(e) => {
            tracing::warn!(
                topic = S::TOPIC,
                partition = p.index,
                "coordinator records not written: {e}"
            );
            Err(CoordinatorError::Unavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    #[test]
    fn loading_moves_past_batches_without_records() {
        // A batch the cleaner emptied (offsets 5..=7, no records) still moves the load past offset 7.
        let mut empty =
            crate::log::testutil::assemble(crate::log::testutil::Codec::None, &[], 0, 2, 0, 0);
        empty[..8].copy_from_slice(&5i64.to_be_bytes());
        let mut buf = Bytes::from(empty);
        assert_eq!(batch_next_offset(&buf), Some(8));
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        assert!(
            set.records.is_empty(),
            "record offsets alone would not move it"
        );
        assert_eq!(batch_next_offset(&[0u8; 10]), None);
    }

    /// Values from Java: `Utils.abs("my-group".hashCode()) % 50` and friends.
    #[test]
    fn placement_matches_java_string_hashcode() {
        // "a".hashCode() = 97; "ab" = 97*31+98 = 3105.
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("ab", 50), 3105 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE; Kafka's Utils.abs maps it to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Negative hash: "my-group".hashCode() is negative; computed with wrapping i32 arithmetic like Java.
        let mut h: i32 = 0;
        for c in "my-group".chars() {
            h = h.wrapping_mul(31).wrapping_add(c as i32);
        }
        assert!(h < 0);
        assert_eq!(partition_for("my-group", 50), h.abs() % 50);
        assert_eq!(partition_for("my-group", 50), 12); // -1906497762, from Java semantics computed apart
        assert_eq!(partition_for("console-consumer-1234", 50), 9);
        // Non-BMP characters count as two UTF-16 units: U+1F600 is D83D DE00.
        let want = ((0xD83Di32).wrapping_mul(31).wrapping_add(0xDE00)) % 50;
        assert_eq!(partition_for("\u{1F600}", 50), want);
    }
}
