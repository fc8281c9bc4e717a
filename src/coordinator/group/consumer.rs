//! KIP-848 consumer groups (Kafka's `ConsumerGroup` and the consumer part of `GroupMetadataManager`): the
//! group epoch, the target assignment (computed by a server-side assignor at an assignment epoch) and each
//! member's current assignment, reconciled towards its target one heartbeat at a time.
//!
//! Ownership: a [`ConsumerGroup`] lives in its [`super::GroupShard`], under the shard's lock like the classic
//! groups. Everything durable (epochs, subscriptions, target and current assignments) changes only in
//! [`ConsumerGroup::replay`] of the records in [`super::records`]; operations ([`heartbeat`]) read the group and
//! return records. Timers are not durable, as in Kafka: session and revocation deadlines are kept in memory,
//! set by heartbeats and replays with the `now` the runtime passes, and checked by [`ConsumerGroup::expired`]
//! from the shard's tick.

pub mod heartbeat;
pub mod reconcile;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::assignor::Assignor;
use super::records::{
    ConsumerGroupValue, ConsumerMemberValue, CurrentAssignmentValue, GroupRecord, RecordKey,
    RecordValue, TopicAssignment,
};

/// Member epoch of a request that leaves the group.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member that leaves for now (it keeps its assignment for the session timeout).
pub const LEAVE_STATIC_EPOCH: i32 = -2;

/// The consumer group settings of the broker (`group.consumer.*`).
#[derive(Debug, Clone)]
pub struct ConsumerLimits {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub max_size: usize,
    /// `group.consumer.assignors`, the first being the default.
    pub assignors: Vec<Assignor>,
}

impl Default for ConsumerLimits {
    fn default() -> Self {
        ConsumerLimits {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: usize::MAX,
            assignors: vec![Assignor::Uniform, Assignor::Range],
        }
    }
}

/// Kafka's `MemberState` of the current assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberState {
    /// The member has its target (or all it can get).
    #[default]
    Stable,
    /// The member must give up partitions before it gets new ones.
    UnrevokedPartitions,
    /// The member waits for partitions other members still hold.
    UnreleasedPartitions,
    /// Unknown value read from a record.
    Unknown,
}

impl MemberState {
    /// The record's `int8`.
    pub fn code(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
            MemberState::Unknown => 127,
        }
    }

    fn from_code(c: i8) -> MemberState {
        match c {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Unknown,
        }
    }
}

/// One member of a consumer group.
#[derive(Debug, Clone, Default)]
pub struct ConsumerMember {
    /// Member id.
    pub id: String,
    /// Subscription and client details (the member metadata record).
    pub meta: ConsumerMemberValue,
    /// The epoch the member must send.
    pub epoch: i32,
    /// The epoch before the last bump.
    pub previous_epoch: i32,
    /// Reconciliation state.
    pub state: MemberState,
    /// Partitions it owns.
    pub assigned: TopicAssignment,
    /// Partitions it must revoke.
    pub pending_revocation: TopicAssignment,
    /// When the member is removed unless it heartbeats (ms).
    pub session_deadline: i64,
    /// When a member that has not revoked is fenced (ms), while it has partitions to revoke.
    pub revocation_deadline: Option<i64>,
}

impl ConsumerMember {
    /// The current assignment as a record value.
    pub fn current_value(&self) -> CurrentAssignmentValue {
        CurrentAssignmentValue {
            member_epoch: self.epoch,
            previous_member_epoch: self.previous_epoch,
            state: self.state.code(),
            assigned: self.assigned.clone(),
            pending_revocation: self.pending_revocation.clone(),
        }
    }
}

/// Kafka's consumer group states, as ListGroups and ConsumerGroupDescribe name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    /// No members.
    Empty,
    /// The group epoch is ahead of the target assignment.
    Assigning,
    /// Members are moving towards the target assignment.
    Reconciling,
    /// Every member has its target assignment.
    Stable,
}

impl ConsumerGroupState {
    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// A consumer group.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    /// Group id.
    pub id: String,
    /// The group epoch.
    pub epoch: i32,
    /// Hash of the subscribed topics' metadata when the epoch last moved.
    pub metadata_hash: i64,
    /// The epoch of the target assignment.
    pub assignment_epoch: i32,
    /// Members by id.
    pub members: BTreeMap<String, ConsumerMember>,
    /// Target assignment by member id.
    pub target: BTreeMap<String, TopicAssignment>,
}

impl ConsumerGroup {
    /// An empty group.
    pub fn new(id: &str) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            ..Default::default()
        }
    }

    /// The state.
    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// The member holding `instance_id`.
    pub fn static_member(&self, instance_id: &str) -> Option<&ConsumerMember> {
        self.members
            .values()
            .find(|m| m.meta.instance_id.as_deref() == Some(instance_id))
    }

    /// The assignor the group uses: the one most members ask for, else the configured default.
    pub fn assignor(&self, limits: &ConsumerLimits) -> Assignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.meta.server_assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .and_then(|(name, _)| Assignor::from_name(name))
            .or_else(|| limits.assignors.first().copied())
            .unwrap_or(Assignor::Uniform)
    }

    /// Which member (other than `except`) owns or still has to revoke each partition.
    pub fn owners(&self, except: &str) -> HashMap<(Uuid, i32), &str> {
        let mut out = HashMap::new();
        for m in self.members.values().filter(|m| m.id != except) {
            for a in [&m.assigned, &m.pending_revocation] {
                for (t, ps) in a {
                    for p in ps {
                        out.insert((*t, *p), m.id.as_str());
                    }
                }
            }
        }
        out
    }

    /// The records that remove `member` (Kafka's fencing): its current assignment, target and metadata
    /// tombstones, then the group epoch moves on so the target is recomputed without it.
    pub fn removal_records(&self, member: &str, metadata_hash: i64) -> Vec<GroupRecord> {
        let group = self.id.clone();
        let m = member.to_string();
        vec![
            GroupRecord {
                key: RecordKey::ConsumerCurrentAssignment {
                    group: group.clone(),
                    member: m.clone(),
                },
                value: None,
            },
            GroupRecord {
                key: RecordKey::ConsumerTargetMember {
                    group: group.clone(),
                    member: m.clone(),
                },
                value: None,
            },
            GroupRecord {
                key: RecordKey::ConsumerMember {
                    group: group.clone(),
                    member: m,
                },
                value: None,
            },
            GroupRecord {
                key: RecordKey::ConsumerGroup { group },
                value: Some(RecordValue::ConsumerGroup(ConsumerGroupValue {
                    epoch: self.epoch + 1,
                    metadata_hash,
                })),
            },
        ]
    }

    /// Members whose session or revocation deadline passed at `now`.
    pub fn expired(&self, now: i64) -> Vec<String> {
        self.members
            .values()
            .filter(|m| {
                m.session_deadline <= now || m.revocation_deadline.is_some_and(|d| d <= now)
            })
            .map(|m| m.id.clone())
            .collect()
    }

    /// Applies one consumer group record. Returns false when the group is gone (its metadata tombstone).
    pub fn replay(&mut self, record: &GroupRecord, limits: &ConsumerLimits, now: i64) -> bool {
        let session = i64::from(limits.session_timeout_ms);
        match (&record.key, &record.value) {
            (RecordKey::ConsumerGroup { .. }, Some(RecordValue::ConsumerGroup(v))) => {
                self.epoch = v.epoch;
                self.metadata_hash = v.metadata_hash;
            }
            (RecordKey::ConsumerGroup { .. }, None) => return false,
            (RecordKey::ConsumerMember { member, .. }, Some(RecordValue::ConsumerMember(v))) => {
                let m = self.member_entry(member, now + session);
                m.meta = v.clone();
            }
            (RecordKey::ConsumerMember { member, .. }, None) => {
                self.members.remove(member);
            }
            (RecordKey::ConsumerTargetEpoch { .. }, Some(RecordValue::ConsumerTargetEpoch(e))) => {
                self.assignment_epoch = *e;
            }
            (RecordKey::ConsumerTargetEpoch { .. }, None) => self.assignment_epoch = 0,
            (
                RecordKey::ConsumerTargetMember { member, .. },
                Some(RecordValue::ConsumerTargetMember(a)),
            ) => {
                self.target.insert(member.clone(), a.clone());
            }
            (RecordKey::ConsumerTargetMember { member, .. }, None) => {
                self.target.remove(member);
            }
            (
                RecordKey::ConsumerCurrentAssignment { member, .. },
                Some(RecordValue::ConsumerCurrentAssignment(v)),
            ) => {
                let m = self.member_entry(member, now + session);
                let state = MemberState::from_code(v.state);
                // A revocation gets the member's rebalance timeout from the moment it is asked for.
                m.revocation_deadline = match state {
                    MemberState::UnrevokedPartitions => Some(
                        m.revocation_deadline
                            .filter(|_| m.state == MemberState::UnrevokedPartitions)
                            .unwrap_or(now + i64::from(m.meta.rebalance_timeout_ms.max(0))),
                    ),
                    _ => None,
                };
                m.epoch = v.member_epoch;
                m.previous_epoch = v.previous_member_epoch;
                m.state = state;
                m.assigned = v.assigned.clone();
                m.pending_revocation = v.pending_revocation.clone();
            }
            (RecordKey::ConsumerCurrentAssignment { member, .. }, None) => {
                if let Some(m) = self.members.get_mut(member) {
                    m.assigned.clear();
                    m.pending_revocation.clear();
                    m.revocation_deadline = None;
                }
            }
            _ => {}
        }
        true
    }

    fn member_entry(&mut self, id: &str, session_deadline: i64) -> &mut ConsumerMember {
        self.members
            .entry(id.to_string())
            .or_insert_with(|| ConsumerMember {
                id: id.to_string(),
                session_deadline,
                ..Default::default()
            })
    }

    /// Partitions of `a` per topic id, sorted (for responses).
    pub fn topic_partitions(a: &TopicAssignment) -> Vec<(Uuid, Vec<i32>)> {
        a.iter()
            .filter(|(_, ps)| !ps.is_empty())
            .map(|(t, ps)| (*t, ps.iter().copied().collect()))
            .collect()
    }

    /// Every topic name any member subscribes to by name.
    pub fn subscribed_names(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.meta.subscribed_topic_names.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests;
