//! Committed and pending transactional offsets of the groups of one shard (Kafka's `OffsetMetadataManager`).
//!
//! Ownership: the [`Offsets`] table belongs to its shard and changes only through [`Offsets::replay`] of
//! `OffsetCommit` records (appended to `__consumer_offsets` first) and [`Offsets::replay_marker`] of the
//! COMMIT/ABORT markers ending transactions, so start-up loading and run time share one path. Reads
//! (OffsetFetch) see only committed offsets; `require_stable` asks [`Offsets::has_pending`].
//!
//! Transactional offsets (TxnOffsetCommit) are kept per producer id until their transaction's marker, as in
//! Kafka: a COMMIT makes each one committed unless a plain OffsetCommit written later in the log (a higher
//! record offset) already replaced it; an ABORT drops them. A tombstone of a partition (expiry, OffsetDelete,
//! DeleteGroups) also drops the pending offsets of that partition.
//!
//! Bounds (checked by the operation before it writes, never at replay, which must take what the log holds):
//! [`MAX_PENDING_PER_PRODUCER`] partitions per producer id, [`MAX_OPEN_PRODUCERS_PER_GROUP`] producers with
//! pending offsets per group, and [`MAX_PENDING_BYTES`] of pending offsets per shard (names and metadata;
//! metadata is itself capped by `offset.metadata.max.bytes`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::error::ResponseError as E;

use super::records::{GroupRecord, OffsetValue, RecordKey, RecordValue};

/// One committed offset.
pub type Committed = OffsetValue;

/// Partitions one producer may have pending (one transaction's offsets; Kafka Streams commits one per input
/// partition of a task).
pub const MAX_PENDING_PER_PRODUCER: usize = 10_000;
/// Producers with pending offsets in one group (Kafka Streams: one per stream thread of the application).
pub const MAX_OPEN_PRODUCERS_PER_GROUP: usize = 1_000;
/// Bytes of pending offsets in one shard, estimated as names + metadata + [`ENTRY_OVERHEAD`] each.
pub const MAX_PENDING_BYTES: usize = 64 << 20;
/// Estimated fixed cost of one pending offset (maps, offsets, timestamps).
const ENTRY_OVERHEAD: usize = 96;

/// An offset with the log offset of the record that wrote it (Kafka's `OffsetAndMetadata.recordOffset`): the
/// later record wins when a transaction commits.
#[derive(Debug, Clone)]
struct Stored {
    value: Committed,
    record_offset: i64,
}

/// One producer's pending offsets, by (group, topic, partition).
#[derive(Debug, Default)]
struct Pending {
    offsets: BTreeMap<(String, String, i32), Stored>,
    bytes: usize,
}

fn entry_bytes(group: &str, topic: &str, v: &Committed) -> usize {
    group.len() + topic.len() + v.metadata.len() + ENTRY_OVERHEAD
}

/// Offsets by group, then (topic, partition); pending transactional offsets by producer id.
#[derive(Debug, Default)]
pub struct Offsets {
    by_group: HashMap<String, BTreeMap<(String, i32), Stored>>,
    pending: HashMap<i64, Pending>,
    /// Producers with pending offsets, by group then (topic, partition) (Kafka's
    /// `openTransactionsByGroupTopicAndPartition`).
    open: HashMap<String, BTreeMap<(String, i32), BTreeSet<i64>>>,
    /// Pending offsets per producer, by group: the per-group producer bound in O(1).
    group_producers: HashMap<String, HashMap<i64, usize>>,
    pending_bytes: usize,
}

impl Offsets {
    /// The committed offset of a partition.
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&Committed> {
        self.by_group
            .get(group)
            .and_then(|g| g.get(&(topic.to_string(), partition)))
            .map(|s| &s.value)
    }

    /// Every committed offset of a group, by topic then partition.
    pub fn all(&self, group: &str) -> Vec<(&str, i32, &Committed)> {
        self.by_group
            .get(group)
            .map(|g| {
                g.iter()
                    .map(|((t, p), c)| (t.as_str(), *p, &c.value))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True if the group has committed offsets.
    pub fn has_group(&self, group: &str) -> bool {
        self.by_group.get(group).is_some_and(|g| !g.is_empty())
    }

    /// Groups with committed offsets.
    pub fn groups(&self) -> impl Iterator<Item = &String> {
        self.by_group.keys()
    }

    /// True if a transaction has an offset of this partition pending (OffsetFetch `require_stable` answers
    /// UNSTABLE_OFFSET_COMMIT; expiry keeps the committed one).
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.open
            .get(group)
            .is_some_and(|g| g.contains_key(&(topic.to_string(), partition)))
    }

    /// True if some transaction has offsets of the group pending (the group is not deleted meanwhile).
    pub fn has_open_transactions(&self, group: &str) -> bool {
        self.open.get(group).is_some_and(|g| !g.is_empty())
    }

    /// The partitions of a group with pending offsets.
    pub fn pending_partitions(&self, group: &str) -> Vec<(String, i32)> {
        self.open
            .get(group)
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The pending offset `producer_id` holds for a partition.
    pub fn pending_offset(
        &self,
        producer_id: i64,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Option<&Committed> {
        self.pending.get(&producer_id).and_then(|p| {
            p.offsets
                .get(&(group.to_string(), topic.to_string(), partition))
                .map(|s| &s.value)
        })
    }

    /// Bytes of pending offsets in this shard (estimated).
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Whether `producer_id` may add `items` (topic, partition, value) pending for `group` within the bounds;
    /// `Err` is the Kafka error for the whole request.
    pub fn check_pending_room(
        &self,
        producer_id: i64,
        group: &str,
        items: &[(&str, i32, &Committed)],
    ) -> Result<(), i16> {
        let mine = self.pending.get(&producer_id);
        let new: Vec<_> = items
            .iter()
            .filter(|(t, p, _)| {
                mine.is_none_or(|m| {
                    !m.offsets
                        .contains_key(&(group.to_string(), (*t).to_string(), *p))
                })
            })
            .collect();
        let count = mine.map_or(0, |m| m.offsets.len()) + new.len();
        let bytes: usize = items.iter().map(|(t, _, v)| entry_bytes(group, t, v)).sum();
        let producers = self.group_producers.get(group);
        let joins = !producers.is_some_and(|g| g.contains_key(&producer_id));
        let producers = producers.map_or(0, HashMap::len);
        if count > MAX_PENDING_PER_PRODUCER
            || self.pending_bytes.saturating_add(bytes) > MAX_PENDING_BYTES
            || (joins && producers >= MAX_OPEN_PRODUCERS_PER_GROUP)
        {
            return Err(E::InvalidCommitOffsetSize.code());
        }
        Ok(())
    }

    /// The record committing one offset.
    pub fn commit_record(
        group: &str,
        topic: &str,
        partition: i32,
        value: OffsetValue,
    ) -> GroupRecord {
        GroupRecord {
            key: RecordKey::Offset {
                group: group.to_string(),
                topic: topic.to_string(),
                partition,
            },
            value: Some(RecordValue::Offset(value)),
        }
    }

    /// Tombstones for every offset of a group, committed or pending (DeleteGroups; Kafka's
    /// `deleteAllOffsets`: one per partition).
    pub fn delete_records(&self, group: &str) -> Vec<GroupRecord> {
        let mut parts: BTreeSet<(String, i32)> = self
            .all(group)
            .into_iter()
            .map(|(t, p, _)| (t.to_string(), p))
            .collect();
        parts.extend(self.pending_partitions(group));
        parts
            .into_iter()
            .map(|(topic, partition)| GroupRecord {
                key: RecordKey::Offset {
                    group: group.to_string(),
                    topic,
                    partition,
                },
                value: None,
            })
            .collect()
    }

    /// Applies one offset record written at `record_offset`: a plain one commits, a transactional one
    /// (`producer_id`) is pending for that producer, a tombstone deletes the committed offset and every
    /// pending one of the partition.
    pub fn replay(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        value: Option<&OffsetValue>,
        record_offset: i64,
        producer_id: Option<i64>,
    ) {
        let stored = |v: &OffsetValue| Stored {
            value: v.clone(),
            record_offset,
        };
        match (value, producer_id) {
            (Some(v), None) => {
                self.by_group
                    .entry(group.to_string())
                    .or_default()
                    .insert((topic.to_string(), partition), stored(v));
            }
            (Some(v), Some(pid)) => {
                let p = self.pending.entry(pid).or_default();
                let add = entry_bytes(group, topic, v);
                let key = (group.to_string(), topic.to_string(), partition);
                if let Some(old) = p.offsets.insert(key, stored(v)) {
                    let sub = entry_bytes(group, topic, &old.value);
                    p.bytes = p.bytes.saturating_sub(sub);
                    self.pending_bytes = self.pending_bytes.saturating_sub(sub);
                } else {
                    *self
                        .group_producers
                        .entry(group.to_string())
                        .or_default()
                        .entry(pid)
                        .or_default() += 1;
                }
                p.bytes += add;
                self.pending_bytes += add;
                self.open
                    .entry(group.to_string())
                    .or_default()
                    .entry((topic.to_string(), partition))
                    .or_default()
                    .insert(pid);
            }
            (None, _) => {
                if let Some(g) = self.by_group.get_mut(group) {
                    g.remove(&(topic.to_string(), partition));
                    if g.is_empty() {
                        self.by_group.remove(group);
                    }
                }
                let part = (topic.to_string(), partition);
                let producers = self
                    .open
                    .get_mut(group)
                    .and_then(|g| g.remove(&part))
                    .unwrap_or_default();
                if self.open.get(group).is_some_and(BTreeMap::is_empty) {
                    self.open.remove(group);
                }
                let key = (group.to_string(), topic.to_string(), partition);
                for pid in producers {
                    if let Some(p) = self.pending.get_mut(&pid) {
                        if let Some(old) = p.offsets.remove(&key) {
                            let sub = entry_bytes(group, topic, &old.value);
                            p.bytes = p.bytes.saturating_sub(sub);
                            self.pending_bytes = self.pending_bytes.saturating_sub(sub);
                            forget_one(&mut self.group_producers, group, pid);
                        }
                    }
                }
            }
        }
    }

    /// Applies the marker ending `producer_id`'s transaction: on COMMIT its pending offsets become committed
    /// unless a later plain commit (higher record offset) is already there; on ABORT they are dropped.
    pub fn replay_marker(&mut self, producer_id: i64, commit: bool) {
        let Some(p) = self.pending.remove(&producer_id) else {
            return;
        };
        self.pending_bytes = self.pending_bytes.saturating_sub(p.bytes);
        for ((group, topic, partition), s) in p.offsets {
            forget_one(&mut self.group_producers, &group, producer_id);
            let part = (topic, partition);
            if let Some(g) = self.open.get_mut(&group) {
                if let Some(set) = g.get_mut(&part) {
                    set.remove(&producer_id);
                    if set.is_empty() {
                        g.remove(&part);
                    }
                }
                if g.is_empty() {
                    self.open.remove(&group);
                }
            }
            if !commit {
                continue;
            }
            let committed = self.by_group.entry(group).or_default();
            let newer = committed
                .get(&part)
                .is_none_or(|c| s.record_offset > c.record_offset);
            if newer {
                committed.insert(part, s);
            }
        }
    }
}

/// One pending offset of `pid` in `group` is gone.
fn forget_one(counts: &mut HashMap<String, HashMap<i64, usize>>, group: &str, pid: i64) {
    let Some(g) = counts.get_mut(group) else {
        return;
    };
    if let Some(n) = g.get_mut(&pid) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            g.remove(&pid);
        }
    }
    if g.is_empty() {
        counts.remove(group);
    }
}
