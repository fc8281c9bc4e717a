//! Group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//! ListGroups, DescribeGroups, DeleteGroups. Thin: decode, run the operation on the group's coordinator shard
//! ([`crate::coordinator`]), encode. No state lives here.

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;

use super::{s, RequestContext};
use crate::coordinator::group::classic::{JoinOutcome, JoinRequest, Reply, SyncOutcome};
use crate::coordinator::group::{validate_consumer_member, CommitItem};
use crate::coordinator::txn::TXN_STATE_TOPIC;
use crate::coordinator::{CoordinatorError, OFFSETS_TOPIC};

/// Longest string the `__consumer_offsets` records can hold (an `int16` length, as in Kafka); flexible
/// request versions could carry longer ones, which would not survive a replay.
pub(super) const MAX_STRING_BYTES: usize = i16::MAX as usize;

/// A group id must be non-empty and fit the records (INVALID_GROUP_ID otherwise).
pub(super) fn valid_group_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_STRING_BYTES
}

/// FindCoordinator v0–6 (batched keys from v4): groups (key type 0) and transactional ids (key type 1). The
/// first transactional lookup creates `__transaction_state` (in the background, as Kafka creates it on demand);
/// until its partition is hosted and loading here the answer is COORDINATOR_NOT_AVAILABLE, which clients retry.
pub async fn find_coordinator(
    ctx: &RequestContext,
    req: FindCoordinatorRequest,
) -> Option<FindCoordinatorResponse> {
    let keys: Vec<String> = if ctx.version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let broker = &ctx.broker;
    if req.key_type == 1 {
        broker.start_transactions();
    }
    let image = broker.image();
    let me = image.brokers.get(&broker.config.node_id).cloned();
    let unavailable = || {
        (
            E::CoordinatorNotAvailable.code(),
            None,
            -1,
            String::new(),
            -1,
        )
    };
    let answer = |key: &str| -> (i16, Option<String>, i32, String, i32) {
        let (topic, index, status) = match req.key_type {
            0 => (
                OFFSETS_TOPIC,
                broker.groups.partition_of(key),
                broker.groups.status(key),
            ),
            1 if key.is_empty() => {
                return (
                    E::InvalidRequest.code(),
                    Some("Transactional id must not be empty".into()),
                    -1,
                    String::new(),
                    -1,
                )
            }
            // The shard's lock may be held across a transaction's marker appends.
            1 => (
                TXN_STATE_TOPIC,
                broker.txn.runtime().partition_of(key),
                crate::coordinator::runtime::off_worker(|| broker.txn.runtime().status(key)),
            ),
            _ => {
                return (
                    E::InvalidRequest.code(),
                    Some(format!("Unknown coordinator type {}", req.key_type)),
                    -1,
                    String::new(),
                    -1,
                )
            }
        };
        let Some(topic) = image.topic(topic) else {
            return unavailable();
        };
        let hosted = super::hosted_partition(broker, topic, index, super::TopicRef::Name);
        // This broker coordinates the key once it leads the partition and has started loading it (requests
        // then get COORDINATOR_LOAD_IN_PROGRESS until the load is done).
        let coordinating = !matches!(status, Err(CoordinatorError::NotCoordinator));
        match (hosted, &me) {
            (Ok(_), Some(b)) if coordinating => (0, None, b.id, b.host.clone(), b.port),
            _ => unavailable(),
        }
    };
    let mut resp = FindCoordinatorResponse::default();
    if ctx.version >= 4 {
        for key in keys {
            let (error_code, msg, node, host, port) = answer(&key);
            resp.coordinators.push(
                Coordinator::default()
                    .with_key(s(key))
                    .with_node_id(BrokerId(node))
                    .with_host(s(host))
                    .with_port(port)
                    .with_error_code(error_code)
                    .with_error_message(msg.map(s)),
            );
        }
    } else {
        let (error_code, msg, node, host, port) = answer(&keys[0]);
        resp.error_code = error_code;
        if ctx.version >= 1 {
            resp.error_message = msg.map(s);
        }
        resp.node_id = BrokerId(node);
        resp.host = s(host);
        resp.port = port;
    }
    Some(resp)
}

fn join_response(version: i16, o: JoinOutcome) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default()
        .with_error_code(o.error)
        .with_generation_id(o.generation)
        .with_leader(s(o.leader))
        .with_member_id(s(o.member_id));
    if version >= 7 {
        r.protocol_type = o.protocol_type.map(s);
        r.protocol_name = o.protocol_name.map(s);
    } else {
        r.protocol_name = Some(s(o.protocol_name.unwrap_or_default()));
    }
    if version >= 9 {
        r.skip_assignment = o.skip_assignment;
    }
    r.members = o
        .members
        .into_iter()
        .map(|(id, inst, meta)| {
            join_group_response::JoinGroupResponseMember::default()
                .with_member_id(s(id))
                .with_group_instance_id(if version >= 5 { inst.map(s) } else { None })
                .with_metadata(meta)
        })
        .collect();
    r
}

/// The answer now, or when the group gets there. A shard that is unloaded drops its waiting senders and a
/// broker that shuts down stops waiting: both answer `gone` (NOT_COORDINATOR), so the client looks for the
/// coordinator again instead of holding the shutdown up for a rebalance timeout.
async fn wait<T>(ctx: &RequestContext, reply: Reply<T>, gone: T) -> T {
    match reply {
        Reply::Now(t) => t,
        Reply::Wait(rx) => tokio::select! {
            r = rx => r.unwrap_or(gone),
            _ = ctx.broker.shutdown.cancelled() => gone,
        },
    }
}

/// JoinGroup v0–9.
pub async fn join_group(ctx: &RequestContext, req: JoinGroupRequest) -> Option<JoinGroupResponse> {
    let v = ctx.version;
    let err = |code: i16| {
        Some(join_response(
            v,
            JoinOutcome {
                error: code,
                generation: -1,
                member_id: req.member_id.to_string(),
                ..Default::default()
            },
        ))
    };
    let cfg = &ctx.broker.config;
    if !valid_group_id(&req.group_id) {
        return err(E::InvalidGroupId.code());
    }
    if req.session_timeout_ms < cfg.group_min_session_timeout_ms
        || req.session_timeout_ms > cfg.group_max_session_timeout_ms
    {
        return err(E::InvalidSessionTimeout.code());
    }
    let too_long = |x: &str| x.len() > MAX_STRING_BYTES;
    if too_long(&req.protocol_type)
        || req.protocols.iter().any(|p| too_long(&p.name))
        || req.group_instance_id.as_deref().is_some_and(too_long)
    {
        return err(E::InvalidRequest.code());
    }
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: ctx.client_id().to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout: req.session_timeout_ms,
        rebalance_timeout: if v >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: v >= 4,
        supports_skip_assignment: v >= 9,
    };
    let group = req.group_id.to_string();
    let run = ctx
        .broker
        .groups
        .run(&group, |shard, now| shard.join(&group, join, now));
    match run {
        Err(e) => err(e.code()),
        Ok((reply, _)) => {
            let gone = JoinOutcome {
                error: E::NotCoordinator.code(),
                generation: -1,
                member_id: req.member_id.to_string(),
                ..Default::default()
            };
            Some(join_response(v, wait(ctx, reply, gone).await))
        }
    }
}

/// SyncGroup v0–5.
pub async fn sync_group(ctx: &RequestContext, req: SyncGroupRequest) -> Option<SyncGroupResponse> {
    let v = ctx.version;
    let respond = |o: SyncOutcome| {
        let mut r = SyncGroupResponse::default()
            .with_error_code(o.error)
            .with_assignment(o.assignment);
        if v >= 5 {
            r.protocol_type = o.protocol_type.map(s);
            r.protocol_name = o.protocol_name.map(s);
        }
        Some(r)
    };
    let err = |code: i16| SyncOutcome {
        error: code,
        ..Default::default()
    };
    if !valid_group_id(&req.group_id) {
        return respond(err(E::InvalidGroupId.code()));
    }
    let group = req.group_id.to_string();
    let member = req.member_id.to_string();
    let inst = req.group_instance_id.as_ref().map(|i| i.to_string());
    let (pt, pn) = (
        req.protocol_type.as_ref().map(|x| x.to_string()),
        req.protocol_name.as_ref().map(|x| x.to_string()),
    );
    let assignments: Vec<(String, Bytes)> = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let run = ctx.broker.groups.run(&group, |shard, now| {
        shard.sync(
            &group,
            &member,
            inst.as_deref(),
            req.generation_id,
            pt.as_deref(),
            pn.as_deref(),
            assignments,
            now,
        )
    });
    match run {
        Err(e) => respond(err(e.code())),
        Ok((reply, _)) => respond(wait(ctx, reply, err(E::NotCoordinator.code())).await),
    }
}

/// Heartbeat v0–4.
pub async fn heartbeat(ctx: &RequestContext, req: HeartbeatRequest) -> Option<HeartbeatResponse> {
    if !valid_group_id(&req.group_id) {
        return Some(HeartbeatResponse::default().with_error_code(E::InvalidGroupId.code()));
    }
    let group = req.group_id.to_string();
    let inst = req.group_instance_id.as_ref().map(|i| i.to_string());
    let code = match ctx.broker.groups.run(&group, |shard, now| {
        let e = shard.heartbeat(
            &group,
            &req.member_id,
            inst.as_deref(),
            req.generation_id,
            now,
        );
        (e, Vec::new())
    }) {
        Ok((e, _)) => e,
        // Like Kafka: while the group's partition loads, a heartbeat is answered without error so the
        // members do not rejoin; they learn of any rebalance on their next heartbeat.
        Err(CoordinatorError::Loading) => 0,
        Err(e) => e.code(),
    };
    Some(HeartbeatResponse::default().with_error_code(code))
}

/// LeaveGroup v0–5 (a batch of members from v3).
pub async fn leave_group(
    ctx: &RequestContext,
    req: LeaveGroupRequest,
) -> Option<LeaveGroupResponse> {
    let v = ctx.version;
    if !valid_group_id(&req.group_id) {
        return Some(LeaveGroupResponse::default().with_error_code(E::InvalidGroupId.code()));
    }
    let members: Vec<(String, Option<String>)> = if v >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let group = req.group_id.to_string();
    let run = ctx
        .broker
        .groups
        .run(&group, |shard, now| shard.leave(&group, &members, now));
    let mut resp = LeaveGroupResponse::default();
    match run {
        Err(e) => resp.error_code = e.code(),
        Ok((errors, _)) => {
            if v >= 3 {
                resp.members = members
                    .iter()
                    .zip(errors)
                    .map(|((id, inst), e)| {
                        MemberResponse::default()
                            .with_member_id(s(id.clone()))
                            .with_group_instance_id(inst.clone().map(s))
                            .with_error_code(e)
                    })
                    .collect();
            } else {
                resp.error_code = errors.first().copied().unwrap_or(0);
            }
        }
    }
    Some(resp)
}

/// OffsetCommit v2–9. A retention time (v2–4; -1 = the broker's) gives the offsets an expire timestamp of
/// their own, as in Kafka.
pub async fn offset_commit(
    ctx: &RequestContext,
    req: OffsetCommitRequest,
) -> Option<OffsetCommitResponse> {
    let image = ctx.broker.image();
    let max_meta = usize::try_from(ctx.broker.config.offset_metadata_max_bytes).unwrap_or(0);
    // Per partition: Ok(item) to write, or the error already decided.
    let mut plan: Vec<(String, Vec<PlannedCommit>)> = Vec::new();
    for t in &req.topics {
        let topic = image.topic(&t.name.0);
        let mut parts = Vec::new();
        for p in &t.partitions {
            let meta = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let exists = topic.is_some_and(|ti| {
                usize::try_from(p.partition_index).is_ok_and(|i| i < ti.partitions.len())
            });
            let r = if !exists {
                Err(E::UnknownTopicOrPartition.code())
            } else if meta.len() > max_meta.min(MAX_STRING_BYTES) {
                Err(E::OffsetMetadataTooLarge.code())
            } else {
                Ok(CommitItem {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: meta,
                    retention_ms: (ctx.version <= 4 && req.retention_time_ms != -1)
                        .then_some(req.retention_time_ms),
                })
            };
            parts.push((p.partition_index, r));
        }
        plan.push((t.name.to_string(), parts));
    }
    let group = req.group_id.to_string();
    let overall: Option<i16> = if !valid_group_id(&group) {
        Some(E::InvalidGroupId.code())
    } else {
        let items: Vec<CommitItem> = plan
            .iter()
            .flat_map(|(_, ps)| ps.iter().filter_map(|(_, r)| r.as_ref().ok().cloned()))
            .collect();
        let inst = req.group_instance_id.as_ref().map(|i| i.to_string());
        let run = ctx.broker.groups.run(&group, |shard, now| {
            match shard.commit(
                &group,
                &req.member_id,
                inst.as_deref(),
                req.generation_id_or_member_epoch,
                &items,
                ctx.version,
                now,
            ) {
                Ok(records) => (None, records),
                Err(e) => (Some(e), Vec::new()),
            }
        });
        match run {
            Err(e) => Some(e.code()),
            Ok((Some(e), _)) => Some(e),
            Ok((None, Some(CoordinatorError::TooLarge))) => Some(E::InvalidCommitOffsetSize.code()),
            Ok((None, Some(e))) => Some(e.code()),
            Ok((None, None)) => None,
        }
    };
    let mut resp = OffsetCommitResponse::default();
    for (name, parts) in plan {
        let mut tr = OffsetCommitResponseTopic::default().with_name(TopicName(s(name)));
        for (index, r) in parts {
            let code = match (r, overall) {
                (Err(e), _) => e,
                (Ok(_), Some(e)) => e,
                (Ok(_), None) => 0,
            };
            tr.partitions.push(
                OffsetCommitResponsePartition::default()
                    .with_partition_index(index)
                    .with_error_code(code),
            );
        }
        resp.topics.push(tr);
    }
    Some(resp)
}

/// One partition's committed offset: (partition, offset, leader epoch, metadata, error).
type FetchedPartition = (i32, i64, i32, String, i16);
/// One group's committed offsets by topic, or a group error.
type Fetched = Result<Vec<(String, Vec<FetchedPartition>)>, i16>;
/// A partition of an OffsetCommit: the item to write, or the error already decided.
type PlannedCommit = (i32, Result<CommitItem, i16>);

/// `member`: OffsetFetch v9's member id and epoch, checked against a consumer group (Kafka's
/// `ConsumerGroup.validateOffsetFetch`).
fn fetch_group(
    ctx: &RequestContext,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    member: Option<(&str, i32)>,
    require_stable: bool,
) -> Fetched {
    ctx.broker
        .groups
        .read(group, |shard| {
            if let (Some(g), Some((id, epoch))) = (shard.consumer_group(group), member) {
                validate_consumer_member(g, id, epoch, false)?;
            }
            // require_stable (v7+): a partition with a transactional offset pending answers
            // UNSTABLE_OFFSET_COMMIT, which clients retry (Kafka's `fetchOffsets`).
            let unstable = |t: &str, p: i32| {
                (require_stable && shard.offsets.has_pending(group, t, p))
                    .then(|| (p, -1, -1, String::new(), E::UnstableOffsetCommit.code()))
            };
            Ok(match topics {
                Some(topics) => topics
                    .into_iter()
                    .map(|(t, parts)| {
                        let ps = parts
                            .into_iter()
                            .map(
                                |p| match (unstable(&t, p), shard.offsets.get(group, &t, p)) {
                                    (Some(u), _) => u,
                                    (None, Some(c)) => {
                                        (p, c.offset, c.leader_epoch, c.metadata.clone(), 0)
                                    }
                                    (None, None) => (p, -1, -1, String::new(), 0),
                                },
                            )
                            .collect();
                        (t, ps)
                    })
                    .collect(),
                None => {
                    let mut out: Vec<(String, Vec<FetchedPartition>)> = Vec::new();
                    for (t, p, c) in shard.offsets.all(group) {
                        let entry = unstable(t, p).unwrap_or_else(|| {
                            (p, c.offset, c.leader_epoch, c.metadata.clone(), 0)
                        });
                        match out.last_mut() {
                            Some((name, ps)) if name == t => ps.push(entry),
                            _ => out.push((t.to_string(), vec![entry])),
                        }
                    }
                    out
                }
            })
        })
        .map_err(|e| e.code())
        .and_then(|r| r)
}

/// OffsetFetch v1–9 (several groups from v8). With `require_stable` (v7+) a partition whose offset a
/// transaction has pending answers UNSTABLE_OFFSET_COMMIT (per partition in every version, as Kafka 4's
/// group coordinator does); without it the last committed offset is returned.
pub async fn offset_fetch(
    ctx: &RequestContext,
    req: OffsetFetchRequest,
) -> Option<OffsetFetchResponse> {
    let v = ctx.version;
    let mut resp = OffsetFetchResponse::default();
    if v >= 8 {
        for g in &req.groups {
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let mut gr = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            let member = (v >= 9).then(|| (g.member_id.as_deref().unwrap_or(""), g.member_epoch));
            match fetch_group(ctx, &g.group_id, topics, member, req.require_stable) {
                Err(e) => gr.error_code = e,
                Ok(ts) => {
                    gr.topics = ts
                        .into_iter()
                        .map(|(t, ps)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(s(t)))
                                .with_partitions(
                                    ps.into_iter()
                                        .map(|(p, o, e, m, err)| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(o)
                                                .with_committed_leader_epoch(e)
                                                .with_metadata(Some(s(m)))
                                                .with_error_code(err)
                                        })
                                        .collect(),
                                )
                        })
                        .collect();
                }
            }
            resp.groups.push(gr);
        }
        return Some(resp);
    }
    let topics: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let requested = topics.clone();
    match fetch_group(
        ctx,
        &req.group_id,
        topics,
        None,
        v >= 7 && req.require_stable,
    ) {
        Err(e) => {
            if v >= 2 {
                resp.error_code = e;
            }
            // v1 has no top-level error: every requested partition carries it.
            for (t, ps) in requested.unwrap_or_default() {
                resp.topics.push(
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_committed_leader_epoch(-1)
                                        .with_metadata(Some(s("")))
                                        .with_error_code(e)
                                })
                                .collect(),
                        ),
                );
            }
        }
        Ok(ts) => {
            resp.topics = ts
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(
                            ps.into_iter()
                                .map(|(p, o, e, m, err)| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_committed_leader_epoch(e)
                                        .with_metadata(Some(s(m)))
                                        .with_error_code(err)
                                })
                                .collect(),
                        )
                })
                .collect();
        }
    }
    Some(resp)
}
