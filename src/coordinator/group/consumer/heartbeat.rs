//! ConsumerGroupHeartbeat as an operation (Kafka's `GroupMetadataManager.consumerGroupHeartbeat`): validate,
//! leave, or join/heartbeat — update the member's subscription, move the group epoch when subscriptions or
//! the subscribed topics' metadata change, recompute the target assignment when the group epoch is ahead of
//! it, reconcile the member one step, and answer with its epoch and (when it changed or the request was full)
//! its assignment. Pure: reads the group, returns records; the shard replays them.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError as E;
use uuid::Uuid;

use super::reconcile::{reconcile, Step};
use super::{ConsumerGroup, ConsumerLimits, ConsumerMember, LEAVE_EPOCH, LEAVE_STATIC_EPOCH};
use crate::coordinator::group::assignor::{AssignmentSpec, Assignor, MemberSpec};
use crate::coordinator::group::records::{
    ConsumerGroupValue, ConsumerMemberValue, CurrentAssignmentValue, GroupRecord, RecordKey,
    RecordValue, TopicAssignment,
};

/// Largest compiled subscription regex (bytes of automaton), so a hostile pattern cannot take the memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Most bytes of one member's subscription (topic names, regex, ids) kept in the group and its record, so
/// one member cannot make the group's records outgrow a batch or the shard's memory.
const MAX_SUBSCRIPTION_BYTES: usize = 1 << 20;

/// One topic as the coordinator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicMeta {
    /// Topic id.
    pub id: Uuid,
    /// Partition count.
    pub partitions: i32,
    /// Internal topics never match a regex (Kafka's rule).
    pub internal: bool,
}

/// The topics that exist, by name (a snapshot of the metadata image taken by the handler).
pub type TopicsView = BTreeMap<String, TopicMeta>;

/// A decoded ConsumerGroupHeartbeat request.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    /// API version.
    pub version: i16,
    /// Member id (client-generated from v1).
    pub member_id: String,
    /// Member epoch (0 join, -1 leave, -2 static leave).
    pub member_epoch: i32,
    /// Instance id of a static member.
    pub instance_id: Option<String>,
    /// Rack id.
    pub rack_id: Option<String>,
    /// Rebalance timeout, -1 if unchanged.
    pub rebalance_timeout_ms: i32,
    /// Subscribed topic names, `None` if unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// Subscribed regex, `None` if unchanged.
    pub subscribed_topic_regex: Option<String>,
    /// Server assignor, `None` if unchanged.
    pub server_assignor: Option<String>,
    /// Partitions the member owns, `None` if unchanged.
    pub owned: Option<TopicAssignment>,
    /// Client id (request header).
    pub client_id: String,
    /// Client host.
    pub client_host: String,
}

/// The answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// Error code.
    pub error: i16,
    /// Error message.
    pub message: Option<String>,
    /// Member id.
    pub member_id: Option<String>,
    /// Member epoch.
    pub member_epoch: i32,
    /// Heartbeat interval.
    pub heartbeat_interval_ms: i32,
    /// Assignment, when it is sent.
    pub assignment: Option<TopicAssignment>,
}

fn error(e: E, message: impl Into<String>) -> HeartbeatResponse {
    HeartbeatResponse {
        error: e.code(),
        message: Some(message.into()),
        member_epoch: 0,
        ..Default::default()
    }
}

/// A subscription regex, anchored like Java's `Matcher.matches()`.
pub fn compile_regex(re: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid` plus the assignor and regex checks.
pub fn validate(req: &HeartbeatRequest, limits: &ConsumerLimits) -> Result<(), HeartbeatResponse> {
    let invalid = |m: &str| Err(error(E::InvalidRequest, m));
    if req.version >= 1 && req.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    if req.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if req.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    match req.member_epoch {
        0 => {
            if req.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if req.owned.as_ref().is_some_and(|o| !o.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        LEAVE_STATIC_EPOCH if req.instance_id.is_none() => {
            return invalid("InstanceId can't be null.")
        }
        e if e < LEAVE_STATIC_EPOCH => return invalid("MemberEpoch is invalid."),
        _ => {}
    }
    let subscription_bytes: usize = req
        .subscribed_topic_names
        .iter()
        .flatten()
        .map(|t| t.len() + 2)
        .sum::<usize>()
        + [
            &req.subscribed_topic_regex,
            &req.instance_id,
            &req.rack_id,
            &req.server_assignor,
        ]
        .iter()
        .map(|x| x.as_ref().map_or(0, String::len))
        .sum::<usize>()
        + req.client_id.len();
    if subscription_bytes > MAX_SUBSCRIPTION_BYTES {
        return invalid("The subscription is too large.");
    }
    if let Some(re) = req
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        if let Err(e) = compile_regex(re) {
            return Err(error(
                E::InvalidRegularExpression,
                format!("SubscribedTopicRegex `{re}` is not a valid regular expression: {e}"),
            ));
        }
    }
    if let Some(a) = req.server_assignor.as_deref() {
        let known = Assignor::from_name(a).is_some_and(|a| limits.assignors.contains(&a));
        if !known {
            return Err(error(
                E::UnsupportedAssignor,
                format!("ServerAssignor {a} is not supported."),
            ));
        }
    }
    Ok(())
}

/// Topic ids each distinct regex matched, so a group whose members share a pattern compiles it once per
/// heartbeat rather than once per member.
type RegexCache = BTreeMap<String, BTreeSet<Uuid>>;

/// The topic ids a member's subscription resolves to (names that exist, plus regex matches).
fn resolve(
    meta: &ConsumerMemberValue,
    topics: &TopicsView,
    cache: &mut RegexCache,
) -> BTreeSet<Uuid> {
    let mut out: BTreeSet<Uuid> = meta
        .subscribed_topic_names
        .iter()
        .filter_map(|n| topics.get(n).map(|t| t.id))
        .collect();
    if let Some(re) = meta
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        let matched = cache.entry(re.to_string()).or_insert_with(|| {
            // Validated when the member sent it; a pattern that no longer compiles matches nothing.
            compile_regex(re)
                .map(|re| {
                    topics
                        .iter()
                        .filter(|(n, t)| !t.internal && re.is_match(n))
                        .map(|(_, t)| t.id)
                        .collect()
                })
                .unwrap_or_default()
        });
        out.extend(matched.iter().copied());
    }
    out
}

/// Hash (FNV-1a) of the subscribed topics' id, name and partition count, so created, deleted and grown
/// topics move the group epoch (Kafka 4.1's metadata hash, KIP-1101; the value need not match Kafka's).
fn metadata_hash(ids: &BTreeSet<Uuid>, topics: &TopicsView) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (name, t) in topics.iter().filter(|(_, t)| ids.contains(&t.id)) {
        feed(t.id.as_bytes());
        feed(name.as_bytes());
        feed(&t.partitions.to_be_bytes());
    }
    i64::from_be_bytes(h.to_be_bytes())
}

/// The operation. `group` is the existing consumer group (none yet: a join creates it); `new_member_id`
/// makes an id for a v0 join without one.
pub fn heartbeat(
    group_id: &str,
    group: Option<&ConsumerGroup>,
    req: &HeartbeatRequest,
    topics: &TopicsView,
    limits: &ConsumerLimits,
    new_member_id: impl FnOnce() -> String,
) -> (HeartbeatResponse, Vec<GroupRecord>) {
    if let Err(r) = validate(req, limits) {
        return (r, Vec::new());
    }
    // Only a join (epoch 0) creates a group; anything else for a group that does not exist is
    // GROUP_ID_NOT_FOUND, as Kafka's getOrMaybeCreateConsumerGroup (and consumerGroupLeave) answer.
    if group.is_none() && req.member_epoch != 0 {
        return (
            error(
                E::GroupIdNotFound,
                format!("Consumer group {group_id} not found."),
            ),
            Vec::new(),
        );
    }
    let empty = ConsumerGroup::new(group_id);
    let g = group.unwrap_or(&empty);
    if req.member_epoch == LEAVE_EPOCH || req.member_epoch == LEAVE_STATIC_EPOCH {
        return leave(g, req);
    }
    let unknown = || {
        error(
            E::UnknownMemberId,
            format!(
                "Member {} is not a member of group {group_id}.",
                req.member_id
            ),
        )
    };
    let mut records = Vec::new();
    let member_id;
    let mut member: ConsumerMember;
    let mut is_new = false;
    let mut replaced: Option<&ConsumerMember> = None;
    if req.member_epoch == 0 {
        member_id = if req.member_id.is_empty() {
            new_member_id()
        } else {
            req.member_id.clone()
        };
        let old_static = req
            .instance_id
            .as_deref()
            .and_then(|i| g.static_member(i))
            .filter(|old| old.id != member_id);
        if let Some(old) = old_static {
            if old.epoch != LEAVE_STATIC_EPOCH {
                return (
                    error(
                        E::UnreleasedInstanceId,
                        format!(
                            "Static member {} with instance id {} is not released yet.",
                            old.id,
                            req.instance_id.as_deref().unwrap_or_default()
                        ),
                    ),
                    Vec::new(),
                );
            }
            // A static member back within its session timeout takes over its old identity's assignment
            // and epoch without a rebalance.
            let mut removal = g.removal_records(&old.id, g.metadata_hash);
            removal.truncate(3); // no epoch bump
            records.extend(removal);
            member = old.clone();
            member.id = member_id.clone();
            member.epoch = old.previous_epoch.max(0);
            if let Some(t) = g.target.get(&old.id) {
                records.push(GroupRecord {
                    key: RecordKey::ConsumerTargetMember {
                        group: group_id.to_string(),
                        member: member_id.clone(),
                    },
                    value: Some(RecordValue::ConsumerTargetMember(t.clone())),
                });
            }
            replaced = Some(old);
        } else if let Some(m) = g.members.get(&member_id) {
            member = m.clone();
        } else {
            if g.members.len() >= limits.max_size {
                return (
                    error(
                        E::GroupMaxSizeReached,
                        format!(
                            "The consumer group has reached its maximum capacity of {} members.",
                            limits.max_size
                        ),
                    ),
                    Vec::new(),
                );
            }
            is_new = true;
            member = ConsumerMember {
                id: member_id.clone(),
                ..Default::default()
            };
        }
    } else {
        let Some(m) = g.members.get(&req.member_id) else {
            return (unknown(), Vec::new());
        };
        if m.meta.instance_id != req.instance_id && req.instance_id.is_some() {
            return (
                error(
                    E::FencedInstanceId,
                    "The instance id belongs to another member.",
                ),
                Vec::new(),
            );
        }
        let owned_subset = req.owned.as_ref().is_some_and(|o| {
            o.iter()
                .all(|(t, ps)| m.assigned.get(t).is_some_and(|a| ps.is_subset(a)) || ps.is_empty())
        });
        let epoch_ok = req.member_epoch == m.epoch
            || (req.member_epoch < m.epoch && req.member_epoch == m.previous_epoch && owned_subset);
        if !epoch_ok {
            return (
                error(
                    E::FencedMemberEpoch,
                    format!(
                        "The consumer group member has a smaller member epoch ({}) than the one known by \
                         the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                        req.member_epoch, m.epoch
                    ),
                ),
                Vec::new(),
            );
        }
        member_id = m.id.clone();
        member = m.clone();
    }

    // The member's metadata as the request updates it.
    let mut meta = member.meta.clone();
    meta.client_id.clone_from(&req.client_id);
    meta.client_host.clone_from(&req.client_host);
    if req.instance_id.is_some() {
        meta.instance_id.clone_from(&req.instance_id);
    }
    if req.rack_id.is_some() {
        meta.rack_id.clone_from(&req.rack_id);
    }
    if req.rebalance_timeout_ms != -1 {
        meta.rebalance_timeout_ms = req.rebalance_timeout_ms;
    }
    if let Some(names) = &req.subscribed_topic_names {
        let mut names = names.clone();
        names.sort();
        names.dedup();
        meta.subscribed_topic_names = names;
    }
    if let Some(re) = &req.subscribed_topic_regex {
        meta.subscribed_topic_regex = (!re.is_empty()).then(|| re.clone());
    }
    if req.server_assignor.is_some() {
        meta.server_assignor.clone_from(&req.server_assignor);
    }
    let subscription_changed = is_new
        || meta.subscribed_topic_names != member.meta.subscribed_topic_names
        || meta.subscribed_topic_regex != member.meta.subscribed_topic_regex;
    if is_new || replaced.is_some() || meta != member.meta {
        records.push(GroupRecord {
            key: RecordKey::ConsumerMember {
                group: group_id.to_string(),
                member: member_id.clone(),
            },
            value: Some(RecordValue::ConsumerMember(meta.clone())),
        });
    }
    member.meta = meta;

    // Subscriptions of the group with this member's update; the group epoch moves when they or the
    // subscribed topics' metadata change.
    let mut subscriptions: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
    let mut cache = RegexCache::new();
    for (id, m) in &g.members {
        if Some(id) != replaced.map(|r| &r.id) && *id != member_id {
            subscriptions.insert(id.clone(), resolve(&m.meta, topics, &mut cache));
        }
    }
    subscriptions.insert(member_id.clone(), resolve(&member.meta, topics, &mut cache));
    let all: BTreeSet<Uuid> = subscriptions.values().flatten().copied().collect();
    let hash = metadata_hash(&all, topics);
    let mut group_epoch = g.epoch;
    if subscription_changed || hash != g.metadata_hash {
        group_epoch = g.epoch + 1;
        records.push(GroupRecord {
            key: RecordKey::ConsumerGroup {
                group: group_id.to_string(),
            },
            value: Some(RecordValue::ConsumerGroup(ConsumerGroupValue {
                epoch: group_epoch,
                metadata_hash: hash,
            })),
        });
    }

    // The target assignment, recomputed when the group epoch is ahead of it.
    let mut target = g.target.clone();
    if let Some(old) = replaced {
        if let Some(t) = target.remove(&old.id) {
            target.insert(member_id.clone(), t);
        }
    }
    let mut target_epoch = g.assignment_epoch;
    if group_epoch > g.assignment_epoch {
        let mut with_member = g.clone();
        with_member
            .members
            .insert(member_id.clone(), member.clone());
        let spec = AssignmentSpec {
            members: subscriptions
                .iter()
                .map(|(id, t)| {
                    (
                        id.clone(),
                        MemberSpec {
                            topics: t.clone(),
                            current: target.get(id).cloned().unwrap_or_default(),
                        },
                    )
                })
                .collect(),
            partitions: topics
                .values()
                .filter(|t| all.contains(&t.id))
                .map(|t| (t.id, t.partitions))
                .collect(),
        };
        let new_target = with_member.assignor(limits).assign(&spec);
        for (id, a) in &new_target {
            // A new member's empty target needs no record (no record means empty).
            if (target.contains_key(id) || !a.is_empty()) && target.get(id) != Some(a) {
                records.push(GroupRecord {
                    key: RecordKey::ConsumerTargetMember {
                        group: group_id.to_string(),
                        member: id.clone(),
                    },
                    value: Some(RecordValue::ConsumerTargetMember(a.clone())),
                });
            }
        }
        records.push(GroupRecord {
            key: RecordKey::ConsumerTargetEpoch {
                group: group_id.to_string(),
            },
            value: Some(RecordValue::ConsumerTargetEpoch(group_epoch)),
        });
        target = new_target;
        target_epoch = group_epoch;
    }

    // One reconciliation step for this member.
    let mut owners = g.owners(&member_id);
    if let Some(old) = replaced {
        owners.retain(|_, owner| *owner != old.id);
    }
    let empty_target = TopicAssignment::new();
    let my_target = target.get(&member_id).unwrap_or(&empty_target);
    let before = Step::unchanged(&member);
    let step = reconcile(
        &member,
        my_target,
        target_epoch,
        req.owned.as_ref(),
        &owners,
    );
    if step != before || is_new || replaced.is_some() {
        records.push(GroupRecord {
            key: RecordKey::ConsumerCurrentAssignment {
                group: group_id.to_string(),
                member: member_id.clone(),
            },
            value: Some(RecordValue::ConsumerCurrentAssignment(
                CurrentAssignmentValue {
                    member_epoch: step.epoch,
                    previous_member_epoch: step.previous_epoch,
                    state: step.state.code(),
                    assigned: step.assigned.clone(),
                    pending_revocation: step.pending_revocation.clone(),
                },
            )),
        });
    }
    let full = req.member_epoch == 0
        || (req.rebalance_timeout_ms != -1
            && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
            && req.owned.is_some());
    let assignment = (full || step.assigned != before.assigned).then(|| step.assigned.clone());
    (
        HeartbeatResponse {
            error: 0,
            message: None,
            member_id: Some(member_id),
            member_epoch: step.epoch,
            heartbeat_interval_ms: limits.heartbeat_interval_ms,
            assignment,
        },
        records,
    )
}

/// A member leaves (-1) or a static member leaves for now (-2).
fn leave(g: &ConsumerGroup, req: &HeartbeatRequest) -> (HeartbeatResponse, Vec<GroupRecord>) {
    let member = if req.member_epoch == LEAVE_STATIC_EPOCH {
        let inst = req.instance_id.as_deref().unwrap_or_default();
        match g.static_member(inst) {
            Some(m) if m.id != req.member_id => {
                return (
                    error(
                        E::FencedInstanceId,
                        format!("Instance id {inst} belongs to member {}.", m.id),
                    ),
                    Vec::new(),
                )
            }
            m => m,
        }
    } else {
        g.members.get(&req.member_id)
    };
    let Some(m) = member else {
        return (
            error(
                E::UnknownMemberId,
                format!(
                    "Member {} is not a member of group {}.",
                    req.member_id, g.id
                ),
            ),
            Vec::new(),
        );
    };
    let records = if req.member_epoch == LEAVE_STATIC_EPOCH {
        let mut v = m.current_value();
        v.member_epoch = LEAVE_STATIC_EPOCH;
        v.previous_member_epoch = m.epoch;
        vec![GroupRecord {
            key: RecordKey::ConsumerCurrentAssignment {
                group: g.id.clone(),
                member: m.id.clone(),
            },
            value: Some(RecordValue::ConsumerCurrentAssignment(v)),
        }]
    } else {
        g.removal_records(&m.id, g.metadata_hash)
    };
    (
        HeartbeatResponse {
            member_id: Some(m.id.clone()),
            member_epoch: req.member_epoch,
            ..Default::default()
        },
        records,
    )
}
