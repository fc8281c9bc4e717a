//! One group coordinator shard: the classic and consumer (KIP-848) groups and committed offsets whose group ids hash to one
//! `__consumer_offsets` partition (Kafka's `GroupCoordinatorShard` with its `GroupMetadataManager` and
//! `OffsetMetadataManager`).
//!
//! Ownership: a [`GroupShard`] is owned by its slot in [`crate::coordinator::runtime`] and only touched under
//! that slot's lock, one operation at a time. Operations are pure functions of the shard, the request and `now`:
//! they return the records to write plus the answer (or a receiver for a later answer). The runtime appends the
//! records to the partition and then calls [`GroupShard::replay`]; replay is the only way offsets and group
//! metadata change, and loading a partition at start-up is the same replay.
//!
//! Classic and consumer groups share one namespace: a group id is either a [`ClassicGroup`] or a
//! [`ConsumerGroup`]. An empty group of one kind is converted (tombstoned) when a member of the other kind
//! joins; a non-empty one refuses it, as Kafka 4.1 does when classic members cannot join a consumer group.

pub mod assignor;
pub mod classic;
pub mod consumer;
mod expiry;
pub mod member;
pub mod offsets;
pub mod records;
mod runtime_ext;
pub mod txn_offsets;

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;

use classic::{
    ClassicGroup, GroupLimits, GroupState, JoinOutcome, JoinRequest, Reply, SyncOutcome,
};
use consumer::heartbeat::{HeartbeatRequest, HeartbeatResponse, TopicsView};
use consumer::{ConsumerGroup, ConsumerLimits};
use offsets::Offsets;
use records::{ConsumerGroupValue, GroupRecord, OffsetValue, RecordKey, RecordValue};

/// One partition to commit: topic, partition, offset, leader epoch, metadata.
#[derive(Debug, Clone)]
pub struct CommitItem {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Committed leader epoch (-1 = unknown).
    pub leader_epoch: i32,
    /// Metadata string.
    pub metadata: String,
    /// OffsetCommit v2–4's retention time: the offset expires this long after the commit whatever the group
    /// does (None: `offsets.retention.minutes` from the group's state, as for later versions).
    pub retention_ms: Option<i64>,
}

/// The groups and offsets of one `__consumer_offsets` partition.
#[derive(Debug)]
pub struct GroupShard {
    groups: HashMap<String, ClassicGroup>,
    consumer_groups: HashMap<String, ConsumerGroup>,
    /// Committed offsets.
    pub offsets: Offsets,
    limits: GroupLimits,
    consumer_limits: ConsumerLimits,
    /// Log offset of the last record replayed (records replayed without one, in tests, follow it).
    last_offset: i64,
}

impl GroupShard {
    /// An empty shard.
    pub fn new(limits: GroupLimits) -> GroupShard {
        GroupShard {
            groups: HashMap::new(),
            consumer_groups: HashMap::new(),
            offsets: Offsets::default(),
            limits,
            consumer_limits: ConsumerLimits::default(),
            last_offset: -1,
        }
    }

    /// An empty shard with consumer group settings.
    pub fn with_consumer_limits(limits: GroupLimits, consumer: ConsumerLimits) -> GroupShard {
        let mut s = GroupShard::new(limits);
        s.consumer_limits = consumer;
        s
    }

    /// The consumer group settings.
    pub fn consumer_limits(&self) -> ConsumerLimits {
        self.consumer_limits.clone()
    }

    /// A consumer group, if it exists.
    pub fn consumer_group(&self, id: &str) -> Option<&ConsumerGroup> {
        self.consumer_groups.get(id)
    }

    /// Every consumer group with its state name.
    pub fn list_consumer(&self) -> Vec<(String, &'static str)> {
        self.consumer_groups
            .values()
            .map(|g| (g.id.clone(), g.state().name()))
            .collect()
    }

    /// ConsumerGroupHeartbeat. A classic group with members of the same id refuses it (GROUP_ID_NOT_FOUND,
    /// "not a consumer group"); an empty one is converted on a join.
    pub fn consumer_heartbeat(
        &mut self,
        group_id: &str,
        req: &HeartbeatRequest,
        topics: &TopicsView,
        now: i64,
    ) -> (HeartbeatResponse, Vec<GroupRecord>) {
        let mut records = Vec::new();
        if let Some(classic) = self.groups.get(group_id) {
            if !classic.members.is_empty() || req.member_epoch != 0 {
                let e = if classic.members.is_empty() {
                    E::UnknownMemberId
                } else {
                    E::GroupIdNotFound
                };
                return (
                    HeartbeatResponse {
                        error: e.code(),
                        message: Some(format!("Group {group_id} is not a consumer group.")),
                        ..Default::default()
                    },
                    Vec::new(),
                );
            }
            records.push(GroupRecord {
                key: RecordKey::Group {
                    group: group_id.to_string(),
                },
                value: None,
            });
        }
        let (resp, more) = consumer::heartbeat::heartbeat(
            group_id,
            self.consumer_groups.get(group_id),
            req,
            topics,
            &self.consumer_limits,
            || uuid::Uuid::new_v4().to_string(),
        );
        if resp.error != 0 {
            return (resp, Vec::new());
        }
        records.extend(more);
        // Heartbeats are not records: the session deadline moves in memory (a new member gets its deadline
        // when its record is replayed).
        let session = i64::from(self.consumer_limits.session_timeout_ms);
        if let (Some(g), Some(id)) = (
            self.consumer_groups.get_mut(group_id),
            resp.member_id.as_deref(),
        ) {
            if let Some(m) = g.members.get_mut(id) {
                m.session_deadline = now + session;
            }
        }
        (resp, records)
    }

    /// Tombstones that delete an empty consumer group (its target epoch and metadata).
    fn consumer_group_tombstones(group_id: &str) -> [GroupRecord; 2] {
        [
            GroupRecord {
                key: RecordKey::ConsumerTargetEpoch {
                    group: group_id.to_string(),
                },
                value: None,
            },
            GroupRecord {
                key: RecordKey::ConsumerGroup {
                    group: group_id.to_string(),
                },
                value: None,
            },
        ]
    }

    /// A group, if it exists in memory.
    pub fn group(&self, id: &str) -> Option<&ClassicGroup> {
        self.groups.get(id)
    }

    /// Every group id known to this shard (with members or committed offsets), with its state and type.
    pub fn list(&self) -> Vec<(String, GroupState, String)> {
        let mut out: Vec<(String, GroupState, String)> = self
            .groups
            .values()
            .map(|g| {
                (
                    g.id.clone(),
                    g.state,
                    g.protocol_type.clone().unwrap_or_default(),
                )
            })
            .collect();
        for id in self.offsets.groups() {
            if !self.groups.contains_key(id) && !self.consumer_groups.contains_key(id) {
                out.push((id.clone(), GroupState::Empty, String::new()));
            }
        }
        out
    }

    /// JoinGroup.
    pub fn join(
        &mut self,
        group_id: &str,
        req: JoinRequest,
        now: i64,
    ) -> (Reply<JoinOutcome>, Vec<GroupRecord>) {
        if self
            .consumer_groups
            .get(group_id)
            .is_some_and(|cg| !cg.members.is_empty())
        {
            // Classic members cannot join a consumer group here (Kafka's upgrade path is not built).
            return (
                Reply::Now(JoinOutcome {
                    error: E::InconsistentGroupProtocol.code(),
                    generation: -1,
                    member_id: req.member_id,
                    ..Default::default()
                }),
                Vec::new(),
            );
        }
        if !req.member_id.is_empty() && !self.groups.contains_key(group_id) {
            // A member id for a group that does not exist (it expired, or the coordinator moved).
            return (
                Reply::Now(JoinOutcome {
                    error: E::UnknownMemberId.code(),
                    generation: -1,
                    member_id: req.member_id,
                    ..Default::default()
                }),
                Vec::new(),
            );
        }
        let mut converted = Vec::new();
        if self.consumer_groups.contains_key(group_id) {
            // An empty consumer group becomes a classic group, as in Kafka.
            converted.extend(Self::consumer_group_tombstones(group_id));
        }
        let limits = self.limits;
        let g = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| ClassicGroup::new(group_id, now));
        let (reply, records) = g.join(req, &limits, now);
        self.forget_if_unused(group_id);
        converted.extend(records);
        (reply, converted)
    }

    /// SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> (Reply<SyncOutcome>, Vec<GroupRecord>) {
        match self.groups.get_mut(group_id) {
            Some(g) => g.sync(
                member_id,
                instance_id,
                generation,
                protocol_type,
                protocol_name,
                assignments,
                now,
            ),
            None => (
                Reply::Now(SyncOutcome {
                    error: E::UnknownMemberId.code(),
                    ..Default::default()
                }),
                Vec::new(),
            ),
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> i16 {
        match self.groups.get_mut(group_id) {
            Some(g) => g.heartbeat(member_id, instance_id, generation, now),
            None => E::UnknownMemberId.code(),
        }
    }

    /// LeaveGroup: the error per (member id, instance id), and records to write.
    pub fn leave(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: i64,
    ) -> (Vec<i16>, Vec<GroupRecord>) {
        let limits = self.limits;
        let Some(g) = self.groups.get_mut(group_id) else {
            return (vec![E::UnknownMemberId.code(); members.len()], Vec::new());
        };
        let mut errors = Vec::with_capacity(members.len());
        let mut records = Vec::new();
        for (id, inst) in members {
            let (e, r) = g.leave(id, inst.as_deref(), &limits, now);
            errors.push(e);
            records.extend(r);
        }
        (errors, records)
    }

    /// OffsetCommit: validates the group and member, then returns the records for `items` (partitions that
    /// exist; the caller answered the others). `Err` is the error for every partition.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        items: &[CommitItem],
        api_version: i16,
        now: i64,
    ) -> Result<Vec<GroupRecord>, i16> {
        if let Some(g) = self.consumer_groups.get(group_id) {
            validate_consumer_member(g, member_id, generation, true)?;
            // A member of the consumer protocol commits with v9+ (member epochs), as Kafka requires.
            if api_version < 9 && g.members.contains_key(member_id) {
                return Err(E::UnsupportedVersion.code());
            }
        } else {
            match self.groups.get_mut(group_id) {
                Some(g) => g.validate_commit(member_id, instance_id, generation, false, now)?,
                None if generation < 0 => {}
                // A generation for a group that does not exist: GROUP_ID_NOT_FOUND from OffsetCommit v9,
                // ILLEGAL_GENERATION before (Kafka's OffsetMetadataManager).
                None if api_version >= 9 => return Err(E::GroupIdNotFound.code()),
                None => return Err(E::IllegalGeneration.code()),
            }
        }
        Ok(items
            .iter()
            .map(|i| {
                Offsets::commit_record(
                    group_id,
                    &i.topic,
                    i.partition,
                    OffsetValue {
                        offset: i.offset,
                        leader_epoch: i.leader_epoch,
                        metadata: i.metadata.clone(),
                        commit_timestamp: now,
                        expire_timestamp: i.retention_ms.map(|r| now.saturating_add(r)),
                    },
                )
            })
            .collect())
    }

    /// DeleteGroups for one group: NON_EMPTY_GROUP while it has members, GROUP_ID_NOT_FOUND if unknown.
    pub fn delete_group(&mut self, group_id: &str) -> Result<Vec<GroupRecord>, i16> {
        if let Some(g) = self.consumer_groups.get(group_id) {
            if !g.members.is_empty() {
                return Err(E::NonEmptyGroup.code());
            }
            let mut records = self.offsets.delete_records(group_id);
            records.extend(Self::consumer_group_tombstones(group_id));
            return Ok(records);
        }
        let known = self.groups.contains_key(group_id)
            || self.offsets.has_group(group_id)
            || self.offsets.has_open_transactions(group_id);
        if !known {
            return Err(E::GroupIdNotFound.code());
        }
        if self
            .groups
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
        {
            return Err(E::NonEmptyGroup.code());
        }
        let mut records = self.offsets.delete_records(group_id);
        records.push(GroupRecord {
            key: RecordKey::Group {
                group: group_id.to_string(),
            },
            value: None,
        });
        Ok(records)
    }

    /// OffsetDelete: `Err` is the group's error (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP); otherwise the error per
    /// requested (topic, partition) — GROUP_SUBSCRIBED_TO_TOPIC while a member is subscribed to the topic —
    /// and the tombstones to write.
    #[allow(clippy::type_complexity)]
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<(Vec<i16>, Vec<GroupRecord>), i16> {
        let group = self.groups.get(group_id);
        let consumer = self.consumer_groups.get(group_id);
        if group.is_none()
            && consumer.is_none()
            && !self.offsets.has_group(group_id)
            && !self.offsets.has_open_transactions(group_id)
        {
            return Err(E::GroupIdNotFound.code());
        }
        let subscribed = match group {
            _ if consumer.is_some_and(|c| !c.members.is_empty()) => {
                consumer.map(consumer_subscribed_topics)
            }
            Some(g) if !g.members.is_empty() => {
                if g.protocol_type.as_deref() != Some("consumer") {
                    return Err(E::NonEmptyGroup.code());
                }
                Some(subscribed_topics(g))
            }
            _ => None,
        };
        let mut errors = Vec::with_capacity(partitions.len());
        let mut records = Vec::new();
        for (topic, partition) in partitions {
            // Subscriptions that cannot be read count as subscribed to everything: never delete in doubt.
            let busy = subscribed
                .as_ref()
                .is_some_and(|s| s.as_ref().is_none_or(|t| t.contains(topic)));
            if busy {
                errors.push(E::GroupSubscribedToTopic.code());
                continue;
            }
            errors.push(0);
            // A tombstone also drops the partition's pending transactional offsets (Kafka's replay of it).
            if self.offsets.get(group_id, topic, *partition).is_some()
                || self.offsets.has_pending(group_id, topic, *partition)
            {
                records.push(GroupRecord {
                    key: RecordKey::Offset {
                        group: group_id.to_string(),
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    value: None,
                });
            }
        }
        Ok((errors, records))
    }

    /// Applies one written (or loaded) record, placed after the last one replayed.
    pub fn replay(&mut self, record: &GroupRecord, now: i64) {
        self.replay_at(record, self.last_offset + 1, None, now);
    }

    /// Applies one written (or loaded) record at its log offset; `producer_id`: a transactional offset
    /// commit of that producer, pending until its transaction's marker ([`GroupShard::replay_marker`]).
    pub fn replay_at(
        &mut self,
        record: &GroupRecord,
        offset: i64,
        producer_id: Option<i64>,
        now: i64,
    ) {
        self.last_offset = self.last_offset.max(offset);
        match (&record.key, &record.value) {
            (
                RecordKey::Offset {
                    group,
                    topic,
                    partition,
                },
                v,
            ) => {
                let v = match v {
                    Some(RecordValue::Offset(o)) => Some(o),
                    _ => None,
                };
                self.offsets
                    .replay(group, topic, *partition, v, offset, producer_id);
            }
            (RecordKey::Group { group }, Some(RecordValue::Group(v))) => {
                self.groups
                    .entry(group.clone())
                    .or_insert_with(|| ClassicGroup::new(group, now))
                    .replay(v, now);
                self.forget_if_unused(group);
            }
            (RecordKey::Group { group }, _) => {
                if self.groups.get(group).is_some_and(|g| g.members.is_empty()) {
                    self.groups.remove(group);
                }
            }
            (key, value) => {
                let group = key.group();
                if value.is_none() && !self.consumer_groups.contains_key(group) {
                    return; // a tombstone of a group already gone
                }
                let limits = &self.consumer_limits;
                let g = self
                    .consumer_groups
                    .entry(group.to_string())
                    .or_insert_with(|| ConsumerGroup::new(group));
                if !g.replay(record, limits, now) {
                    self.consumer_groups.remove(group);
                }
            }
        }
    }

    /// Records could not be written: a leader's sync fails for everyone waiting and the group rebalances.
    pub fn write_failed(&mut self, records: &[GroupRecord], error: i16, now: i64) {
        let limits = self.limits;
        for r in records {
            if let (RecordKey::Group { group }, Some(RecordValue::Group(v))) = (&r.key, &r.value) {
                if let Some(g) = self.groups.get_mut(group) {
                    g.write_failed(v.generation, error, &limits, now);
                }
            }
        }
    }

    /// Timers of every group.
    pub fn tick(&mut self, now: i64) -> Vec<GroupRecord> {
        let limits = self.limits;
        let mut records = Vec::new();
        for g in self.groups.values_mut() {
            records.extend(g.tick(&limits, now));
        }
        for g in self.consumer_groups.values() {
            let expired = g.expired(now);
            if expired.is_empty() {
                continue;
            }
            for id in &expired {
                tracing::info!(group = %g.id, member = %id, "consumer group member fenced: session or revocation timeout");
                let mut r = g.removal_records(id, g.metadata_hash);
                r.truncate(3);
                records.extend(r);
            }
            records.push(GroupRecord {
                key: RecordKey::ConsumerGroup {
                    group: g.id.clone(),
                },
                value: Some(RecordValue::ConsumerGroup(ConsumerGroupValue {
                    epoch: g.epoch + 1,
                    metadata_hash: g.metadata_hash,
                })),
            });
        }
        let unused: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.is_empty() && g.generation == 0)
            .map(|(id, _)| id.clone())
            .collect();
        for id in unused {
            self.groups.remove(&id);
        }
        records
    }

    /// Drops an in-memory group that never had a generation and holds nothing (a refused first join).
    fn forget_if_unused(&mut self, group_id: &str) {
        if self
            .groups
            .get(group_id)
            .is_some_and(|g| g.is_empty() && g.generation == 0)
        {
            self.groups.remove(group_id);
        }
    }
}

/// Kafka's member checks of OffsetCommit (`commit`) and OffsetFetch v9+ for a consumer group: a request without
/// a member (epoch < 0) is an admin's, allowed for commits only while the group is empty (fetches always); a
/// member must exist (UNKNOWN_MEMBER_ID) and send its current epoch (STALE_MEMBER_EPOCH).
pub fn validate_consumer_member(
    g: &ConsumerGroup,
    member_id: &str,
    epoch: i32,
    commit: bool,
) -> Result<(), i16> {
    let admin = if commit {
        epoch < 0 && g.members.is_empty()
    } else {
        epoch < 0 && member_id.is_empty()
    };
    if admin {
        return Ok(());
    }
    let Some(m) = g.members.get(member_id) else {
        return Err(E::UnknownMemberId.code());
    };
    if epoch != m.epoch {
        return Err(E::StaleMemberEpoch.code());
    }
    Ok(())
}

/// The topic names a consumer group's members subscribe to by name; a regex subscriber makes it `None`
/// (everything counts as subscribed: never delete offsets in doubt).
fn consumer_subscribed_topics(g: &ConsumerGroup) -> Option<std::collections::HashSet<String>> {
    if g.members
        .values()
        .any(|m| m.meta.subscribed_topic_regex.is_some())
    {
        return None;
    }
    Some(g.subscribed_names().into_iter().collect())
}

/// The topics a consumer group's members subscribe to, read from their `ConsumerProtocolSubscription`
/// metadata (every version starts with `int16 version, [string topics]`); `None` if one cannot be read.
fn subscribed_topics(g: &ClassicGroup) -> Option<std::collections::HashSet<String>> {
    let protocol = g.protocol.as_deref().unwrap_or_default();
    let mut out = std::collections::HashSet::new();
    for m in g.members.values() {
        let meta = m.metadata_for(protocol);
        let mut r: &[u8] = &meta;
        let take = |r: &mut &[u8], n: usize| -> Option<Vec<u8>> {
            (r.len() >= n).then(|| {
                let (a, b) = r.split_at(n);
                *r = b;
                a.to_vec()
            })
        };
        take(&mut r, 2)?;
        let n = i32::from_be_bytes(take(&mut r, 4)?.try_into().ok()?);
        for _ in 0..n.max(0) {
            let len = i16::from_be_bytes(take(&mut r, 2)?.try_into().ok()?);
            let name = take(&mut r, usize::try_from(len).ok()?)?;
            out.insert(String::from_utf8(name).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
