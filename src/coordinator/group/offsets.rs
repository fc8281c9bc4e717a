//! Committed offsets of the groups of one shard (Kafka's `OffsetMetadataManager`).
//!
//! Ownership: the [`Offsets`] table belongs to its shard and changes only through [`Offsets::replay`] of
//! `OffsetCommit` records (appended to `__consumer_offsets` first), so start-up loading and run time share one
//! path. Reads (OffsetFetch) see only replayed, i.e. written, commits.

use std::collections::{BTreeMap, HashMap};

use super::records::{GroupRecord, OffsetValue, RecordKey, RecordValue};

/// One committed offset.
pub type Committed = OffsetValue;

/// Offsets by group, then (topic, partition).
#[derive(Debug, Default)]
pub struct Offsets {
    by_group: HashMap<String, BTreeMap<(String, i32), Committed>>,
}

impl Offsets {
    /// The committed offset of a partition.
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&Committed> {
        self.by_group
            .get(group)
            .and_then(|g| g.get(&(topic.to_string(), partition)))
    }

    /// Every committed offset of a group, by topic then partition.
    pub fn all(&self, group: &str) -> Vec<(&str, i32, &Committed)> {
        self.by_group
            .get(group)
            .map(|g| g.iter().map(|((t, p), c)| (t.as_str(), *p, c)).collect())
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

    /// Tombstones for every offset of a group (DeleteGroups).
    pub fn delete_records(&self, group: &str) -> Vec<GroupRecord> {
        self.all(group)
            .into_iter()
            .map(|(t, p, _)| GroupRecord {
                key: RecordKey::Offset {
                    group: group.to_string(),
                    topic: t.to_string(),
                    partition: p,
                },
                value: None,
            })
            .collect()
    }

    /// Applies one offset record (a tombstone deletes).
    pub fn replay(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        value: Option<&OffsetValue>,
    ) {
        match value {
            Some(v) => {
                self.by_group
                    .entry(group.to_string())
                    .or_default()
                    .insert((topic.to_string(), partition), v.clone());
            }
            None => {
                if let Some(g) = self.by_group.get_mut(group) {
                    g.remove(&(topic.to_string(), partition));
                    if g.is_empty() {
                        self.by_group.remove(group);
                    }
                }
            }
        }
    }
}
