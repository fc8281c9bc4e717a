//! The coordinator runtime: one [`GroupShard`] per `__consumer_offsets` partition this broker leads (Kafka's
//! `CoordinatorRuntime`).
//!
//! Ownership and locking: `shards` maps a partition index to its slot; the map's `RwLock` is taken only to find
//! or insert/remove a slot. Each slot's `std::sync::Mutex` owns the shard and is held for exactly one operation:
//! run the pure operation, append its records to the partition (a normal v2 batch, uncompressed, stamped with
//! the partition's leader epoch by the usual leader append), replay them, release. So the shard's state never
//! runs ahead of its log, an answer is given only after its records are in the log (the group's "acks=all"),
//! and no coordinator lock is ever taken on the produce/fetch path (produce and fetch only take the partition's
//! own log lock, which the coordinator takes briefly through [`Partition::append`] like any producer).
//!
//! Lifecycle: [`GroupCoordinator::load`] marks a partition Loading (group requests get
//! COORDINATOR_LOAD_IN_PROGRESS), replays the whole partition on a blocking thread and then activates the
//! shard; [`GroupCoordinator::unload`] drops it (waiting requests then answer NOT_COORDINATOR). Start-up
//! calls `load` for every hosted partition; leadership changes will call the same two functions. Timers run as
//! [`GroupShard::tick`] events from [`GroupCoordinator::tick_all`], called by a background loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::group::classic::GroupLimits;
use super::group::consumer::ConsumerLimits;
use super::group::records::GroupRecord;
use super::group::GroupShard;
use crate::config::BrokerConfig;
use crate::partition::manager::ReplicaManager;
use crate::partition::{AppendError, Partition};

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often group timers (session, rebalance and sync timeouts, initial delay) are checked, in ms.
pub const TICK_MS: u64 = 50;

/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

/// Why an operation could not run or its records could not be written; the Kafka error code for the edge.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorError {
    /// This broker does not lead the group's partition.
    #[error("this broker is not the coordinator of the group")]
    NotCoordinator,
    /// The partition is being loaded.
    #[error("the coordinator is loading the group's partition")]
    Loading,
    /// The records could not be appended (storage error, partition offline).
    #[error("the coordinator could not write the group's records")]
    Unavailable,
    /// The records do not fit one batch.
    #[error("the group's records are larger than a batch may be")]
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

enum Slot {
    Loading,
    Active(Box<GroupShard>),
}

/// The group coordinator of this broker.
pub struct GroupCoordinator {
    config: Arc<BrokerConfig>,
    replicas: Arc<ReplicaManager>,
    shards: RwLock<HashMap<i32, Arc<Mutex<Slot>>>>,
    /// Partitions of `__consumer_offsets` as it exists (the configured count until it does): placement
    /// follows the real topic, as Kafka's does.
    partitions: AtomicI32,
}

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`: Java's `String.hashCode` over UTF-16 code units, so a
/// group lands on the same partition as in Kafka.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

impl GroupCoordinator {
    /// A coordinator with no shards loaded.
    pub fn new(config: Arc<BrokerConfig>, replicas: Arc<ReplicaManager>) -> GroupCoordinator {
        let partitions = AtomicI32::new(config.offsets_topic_num_partitions);
        GroupCoordinator {
            config,
            replicas,
            shards: RwLock::new(HashMap::new()),
            partitions,
        }
    }

    fn limits(&self) -> GroupLimits {
        GroupLimits {
            initial_rebalance_delay_ms: self.config.group_initial_rebalance_delay_ms,
            max_size: usize::try_from(self.config.group_max_size).unwrap_or(usize::MAX),
        }
    }

    fn consumer_limits(&self) -> ConsumerLimits {
        let c = &self.config;
        ConsumerLimits {
            session_timeout_ms: c.group_consumer_session_timeout_ms,
            heartbeat_interval_ms: c.group_consumer_heartbeat_interval_ms,
            max_size: usize::try_from(c.group_consumer_max_size).unwrap_or(usize::MAX),
            assignors: c.consumer_assignors(),
        }
    }

    /// The `__consumer_offsets` partition of a group.
    pub fn partition_of(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.partitions.load(Ordering::Acquire))
    }

    /// Records how many partitions `__consumer_offsets` has.
    pub fn set_partition_count(&self, n: i32) {
        self.partitions.store(n.max(1), Ordering::Release);
    }

    /// Whether this broker coordinates the group: `Ok` when its shard is loaded.
    pub fn status(&self, group_id: &str) -> Result<(), CoordinatorError> {
        let slot = self.slot(self.partition_of(group_id))?;
        let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        match &*guard {
            Slot::Loading => Err(CoordinatorError::Loading),
            Slot::Active(_) => Ok(()),
        }
    }

    fn slot(&self, index: i32) -> Result<Arc<Mutex<Slot>>, CoordinatorError> {
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
            let shard = me.replay_partition(index);
            let groups = shard.list().len();
            let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            *guard = Slot::Active(Box::new(shard));
            tracing::debug!(partition = index, groups, elapsed = ?started.elapsed(), "loaded group coordinator shard");
        });
    }

    /// Drops the shard of partition `index` (leadership moved away or the broker stops).
    pub fn unload(&self, index: i32) {
        let mut shards = self.shards.write().unwrap_or_else(|p| p.into_inner());
        shards.remove(&index);
    }

    /// Replays every record of the partition into a fresh shard.
    fn replay_partition(&self, index: i32) -> GroupShard {
        let mut shard = GroupShard::with_consumer_limits(self.limits(), self.consumer_limits());
        let Some(p) = self.replicas.get(OFFSETS_TOPIC, index) else {
            return shard;
        };
        let now = crate::partition::manager::now_ms();
        let end = p.high_watermark();
        let mut offset = p.with_log(|l| l.log_start_offset());
        while offset < end {
            let read = p.with_log(|l| l.read(offset, LOAD_READ_BYTES, end, true));
            let mut buf: Bytes = match read {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(
                        partition = index,
                        offset,
                        "cannot read {OFFSETS_TOPIC} while loading: {e}"
                    );
                    break;
                }
            };
            let before = offset;
            while !buf.is_empty() {
                let set = match RecordBatchDecoder::decode(&mut buf) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(
                            partition = index,
                            offset,
                            "undecodable batch in {OFFSETS_TOPIC}: {e}"
                        );
                        return shard;
                    }
                };
                for r in &set.records {
                    offset = offset.max(r.offset + 1);
                    if r.control {
                        continue;
                    }
                    let Some(key) = &r.key else { continue };
                    match GroupRecord::decode(key, r.value.as_deref()) {
                        Ok(Some(rec)) => shard.replay(&rec, now),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(
                            partition = index,
                            offset = r.offset,
                            "skipping record: {e}"
                        ),
                    }
                }
            }
            if offset == before {
                break; // no progress (should not happen): stop rather than spin
            }
        }
        shard
    }

    /// Runs one operation on the group's shard: `op` returns an answer and records; the records are appended
    /// and replayed before this returns. If the append fails, `on_fail` runs on the shard and the error comes
    /// back with the answer.
    pub fn run<R>(
        &self,
        group_id: &str,
        op: impl FnOnce(&mut GroupShard, i64) -> (R, Vec<GroupRecord>),
    ) -> Result<(R, Option<CoordinatorError>), CoordinatorError> {
        let index = self.partition_of(group_id);
        let slot = self.slot(index)?;
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        let Slot::Active(shard) = &mut *guard else {
            return Err(CoordinatorError::Loading);
        };
        let now = crate::partition::manager::now_ms();
        let (answer, records) = op(shard, now);
        let failed = self.write(index, shard, records, now).err();
        Ok((answer, failed))
    }

    /// Reads a shard without writing.
    pub fn read<R>(
        &self,
        group_id: &str,
        f: impl FnOnce(&GroupShard) -> R,
    ) -> Result<R, CoordinatorError> {
        let slot = self.slot(self.partition_of(group_id))?;
        let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        match &*guard {
            Slot::Loading => Err(CoordinatorError::Loading),
            Slot::Active(shard) => Ok(f(shard)),
        }
    }

    /// Runs `f` on every loaded shard (ListGroups).
    pub fn for_each_shard(&self, mut f: impl FnMut(&GroupShard)) -> bool {
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
        let slots: Vec<(i32, Arc<Mutex<Slot>>)> = {
            let shards = self.shards.read().unwrap_or_else(|p| p.into_inner());
            shards.iter().map(|(i, s)| (*i, s.clone())).collect()
        };
        for (index, slot) in slots {
            let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Slot::Active(shard) = &mut *guard {
                let records = shard.tick(now);
                if let Err(e) = self.write(index, shard, records, now) {
                    tracing::warn!(partition = index, "group timer records not written: {e}");
                }
            }
        }
    }

    /// The offsets retention event: expires offsets of every loaded shard (and deletes Empty groups left
    /// without offsets) by writing tombstones through the normal append-and-replay path.
    pub fn expire_all(&self, now: i64) {
        let retention_ms = i64::from(self.config.offsets_retention_minutes).saturating_mul(60_000);
        let slots: Vec<(i32, Arc<Mutex<Slot>>)> = {
            let shards = self.shards.read().unwrap_or_else(|p| p.into_inner());
            shards.iter().map(|(i, s)| (*i, s.clone())).collect()
        };
        for (index, slot) in slots {
            let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Slot::Active(shard) = &mut *guard {
                let records = shard.expire_offsets(now, retention_ms);
                // Many offsets may expire at once: write them in batches that fit `message_max_bytes`, in
                // order (a group's tombstone after its offsets'); a failed batch leaves the rest to the next
                // check, which decides afresh.
                let mut written = 0;
                for batch in expiry_batches(records) {
                    let n = batch.len();
                    if let Err(e) = self.write(index, shard, batch, now) {
                        tracing::warn!(partition = index, "offset expiry not written: {e}");
                        break;
                    }
                    written += n;
                }
                if written > 0 {
                    tracing::info!(
                        partition = index,
                        tombstones = written,
                        "expired offsets and emptied groups removed"
                    );
                }
            }
        }
    }

    /// Appends records to the shard's partition and replays them; on failure the shard hears of it.
    fn write(
        &self,
        index: i32,
        shard: &mut GroupShard,
        records: Vec<GroupRecord>,
        now: i64,
    ) -> Result<(), CoordinatorError> {
        if records.is_empty() {
            return Ok(());
        }
        let result = match self.replicas.get(OFFSETS_TOPIC, index) {
            Some(p) => append(&p, &records, now),
            None => Err(CoordinatorError::NotCoordinator),
        };
        match result {
            Ok(()) => {
                for r in &records {
                    shard.replay(r, now);
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

/// Bytes of keys in one batch of expiry tombstones (tombstones are all key; far below the 1 MiB default
/// `message_max_bytes`).
const EXPIRY_BATCH_BYTES: usize = 256 * 1024;

/// Splits tombstones into batches of at most [`EXPIRY_BATCH_BYTES`] of keys (at least one record each), in order.
fn expiry_batches(records: Vec<GroupRecord>) -> Vec<Vec<GroupRecord>> {
    let mut out: Vec<Vec<GroupRecord>> = Vec::new();
    let mut bytes = 0;
    for r in records {
        let size = r.key.encode().len() + 16;
        if out.is_empty() || bytes + size > EXPIRY_BATCH_BYTES {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(last) = out.last_mut() {
            last.push(r);
        }
    }
    out
}

/// Appends records as one uncompressed v2 batch through the leader append path.
fn append(p: &Partition, records: &[GroupRecord], now: i64) -> Result<(), CoordinatorError> {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (key, value) = r.encode();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // kafka-protocol keeps records in one batch while offset - sequence stays the same; the
                // batch's base sequence is the first record's, -1 (no producer id).
                sequence: i32::try_from(i).unwrap_or(i32::MAX) - 1,
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
    match p.append(buf.freeze(), true, now) {
        Ok(_) => Ok(()),
        Err(AppendError::Log(crate::log::LogError::MessageTooLarge { .. }))
        | Err(AppendError::Log(crate::log::LogError::RecordListTooLarge { .. })) => {
            Err(CoordinatorError::TooLarge)
        }
        Err(AppendError::Deleted) => Err(CoordinatorError::NotCoordinator),
        Err(e) => {
            tracing::warn!(
                topic = OFFSETS_TOPIC,
                partition = p.index,
                "group records not written: {e}"
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
    fn expiry_tombstones_are_written_in_bounded_batches_in_order() {
        use crate::coordinator::group::records::RecordKey;
        let tomb = |p: i32| GroupRecord {
            key: RecordKey::Offset {
                group: "g".repeat(1000),
                topic: "t".into(),
                partition: p,
            },
            value: None,
        };
        let records: Vec<GroupRecord> = (0..1000).map(tomb).collect();
        let batches = expiry_batches(records);
        assert!(batches.len() > 1);
        let mut next = 0;
        for b in &batches {
            let bytes: usize = b.iter().map(|r| r.key.encode().len() + 16).sum();
            assert!(bytes <= EXPIRY_BATCH_BYTES && !b.is_empty());
            for r in b {
                assert!(
                    matches!(&r.key, RecordKey::Offset { partition, .. } if *partition == next)
                );
                next += 1;
            }
        }
        assert_eq!(next, 1000);
        assert!(expiry_batches(Vec::new()).is_empty());
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
