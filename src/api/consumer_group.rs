//! KIP-848 consumer group APIs: ConsumerGroupHeartbeat v0–1 and ConsumerGroupDescribe v0–1. Thin: decode,
//! run the operation on the group's coordinator shard ([`crate::coordinator::group::consumer`]), encode. The
//! handler hands the shard a snapshot of the topics (name → id, partition count) from the metadata image so
//! the operation stays pure. No state lives here.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions as DescribedTopic,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::*;

use super::{s, RequestContext};
use crate::coordinator::group::consumer::heartbeat::{HeartbeatRequest, TopicMeta, TopicsView};
use crate::coordinator::group::consumer::ConsumerGroup;
use crate::coordinator::group::records::TopicAssignment;
use crate::metadata::{is_internal_topic, MetadataImage};

/// Longest group or member id: the record keys hold `int16`-length strings, as in Kafka.
const MAX_ID_BYTES: usize = i16::MAX as usize;

fn topics_view(image: &MetadataImage) -> TopicsView {
    image
        .topics
        .values()
        .map(|t| {
            (
                t.name.clone(),
                TopicMeta {
                    id: t.id,
                    partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
                    internal: is_internal_topic(&t.name),
                },
            )
        })
        .collect()
}

/// ConsumerGroupHeartbeat v0–1.
pub async fn consumer_group_heartbeat(
    ctx: &RequestContext,
    req: ConsumerGroupHeartbeatRequest,
) -> Option<ConsumerGroupHeartbeatResponse> {
    let fail = |code: i16, msg: &str| {
        Some(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(Some(s(msg.to_string()))),
        )
    };
    let group_id = req.group_id.to_string();
    if group_id.is_empty() {
        return fail(E::InvalidRequest.code(), "GroupId can't be empty.");
    }
    if group_id.len() > MAX_ID_BYTES || req.member_id.len() > MAX_ID_BYTES {
        return fail(E::InvalidRequest.code(), "GroupId or MemberId too long.");
    }
    let owned = req.topic_partitions.as_ref().map(|tps| {
        let mut a = TopicAssignment::new();
        for tp in tps {
            a.entry(tp.topic_id)
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
        a
    });
    let hb = HeartbeatRequest {
        version: ctx.version,
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|x| x.to_string()),
        rack_id: req.rack_id.as_ref().map(|x| x.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.as_ref().map(|x| x.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|x| x.to_string()),
        owned,
        client_id: ctx.client_id().to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
    };
    let topics = topics_view(&ctx.broker.image());
    let run = ctx.broker.groups.run(&group_id, |shard, now| {
        shard.consumer_heartbeat(&group_id, &hb, &topics, now)
    });
    let resp = match run {
        Err(e) => return fail(e.code(), &e.to_string()),
        Ok((_, Some(e))) => return fail(e.code(), &e.to_string()),
        Ok((resp, None)) => resp,
    };
    if resp.error != 0 {
        tracing::debug!(group = %group_id, member = %hb.member_id, error = resp.error, "consumer group heartbeat refused: {:?}", resp.message);
    }
    let mut out = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(resp.error)
        .with_error_message(resp.message.map(s))
        .with_member_id(resp.member_id.map(s))
        .with_member_epoch(resp.member_epoch)
        .with_heartbeat_interval_ms(resp.heartbeat_interval_ms);
    out.assignment = resp.assignment.map(|a| {
        Assignment::default().with_topic_partitions(
            ConsumerGroup::topic_partitions(&a)
                .into_iter()
                .map(|(id, ps)| {
                    TopicPartitions::default()
                        .with_topic_id(id)
                        .with_partitions(ps)
                })
                .collect(),
        )
    });
    Some(out)
}

fn described(a: &TopicAssignment, image: &MetadataImage) -> DescribedAssignment {
    DescribedAssignment::default().with_topic_partitions(
        ConsumerGroup::topic_partitions(a)
            .into_iter()
            .map(|(id, ps)| {
                let name = image
                    .topic_by_id(&id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                DescribedTopic::default()
                    .with_topic_id(id)
                    .with_topic_name(TopicName(s(name)))
                    .with_partitions(ps)
            })
            .collect(),
    )
}

/// ConsumerGroupDescribe v0–1: a classic group or an unknown id gets GROUP_ID_NOT_FOUND, as in Kafka.
pub async fn consumer_group_describe(
    ctx: &RequestContext,
    req: ConsumerGroupDescribeRequest,
) -> Option<ConsumerGroupDescribeResponse> {
    let image = ctx.broker.image();
    let mut resp = ConsumerGroupDescribeResponse::default();
    let mut seen = std::collections::HashSet::new();
    for id in req.group_ids {
        if !seen.insert(id.clone()) {
            continue; // Kafka answers each group once
        }
        let mut d = DescribedGroup::default()
            .with_group_id(id.clone())
            .with_authorized_operations(if req.include_authorized_operations {
                // No ACLs: everything a group allows (READ, DESCRIBE, DELETE as Kafka's bit set).
                (1 << 3) | (1 << 8) | (1 << 6)
            } else {
                i32::MIN
            });
        let read = ctx.broker.groups.read(&id, |shard| {
            let Some(g) = shard.consumer_group(&id) else {
                let msg = if shard.group(&id).is_some() {
                    format!("Group {} is not a consumer group.", &*id)
                } else {
                    format!("Group {} not found.", &*id)
                };
                return Err(msg);
            };
            let limits = shard.consumer_limits();
            let members: Vec<Member> = g
                .members
                .values()
                .map(|m| {
                    let mut names = m.meta.subscribed_topic_names.clone();
                    names.sort();
                    Member::default()
                        .with_member_id(s(m.id.clone()))
                        .with_instance_id(m.meta.instance_id.clone().map(s))
                        .with_rack_id(m.meta.rack_id.clone().map(s))
                        .with_member_epoch(m.epoch)
                        .with_client_id(s(m.meta.client_id.clone()))
                        .with_client_host(s(m.meta.client_host.clone()))
                        .with_subscribed_topic_names(
                            names.into_iter().map(|n| TopicName(s(n))).collect(),
                        )
                        .with_subscribed_topic_regex(m.meta.subscribed_topic_regex.clone().map(s))
                        .with_assignment(described(&m.assigned, &image))
                        .with_target_assignment(described(
                            g.target.get(&m.id).unwrap_or(&TopicAssignment::new()),
                            &image,
                        ))
                        .with_member_type(if ctx.version >= 1 { 1 } else { -1 })
                })
                .collect();
            Ok((
                g.state().name(),
                g.epoch,
                g.assignment_epoch,
                g.assignor(&limits).name(),
                members,
            ))
        });
        match read {
            Err(e) => d.error_code = e.code(),
            Ok(Err(msg)) => {
                d.error_code = E::GroupIdNotFound.code();
                d.error_message = Some(s(msg));
                d.group_state = s("Dead");
            }
            Ok(Ok((state, epoch, assignment_epoch, assignor, members))) => {
                d.group_state = s(state);
                d.group_epoch = epoch;
                d.assignment_epoch = assignment_epoch;
                d.assignor_name = s(assignor);
                d.members = members;
            }
        }
        resp.groups.push(d);
    }
    Some(resp)
}

/// `ConsumerProtocolSubscription` v0 (`int16 version, [string topics], bytes userData`) of a consumer group
/// member, for DescribeGroups, which shows consumer groups in the classic format as Kafka 4.1 does.
pub fn classic_subscription(topics: &[String]) -> bytes::Bytes {
    use bytes::BufMut;
    let mut b = bytes::BytesMut::new();
    b.put_i16(0);
    b.put_i32(i32::try_from(topics.len()).unwrap_or(i32::MAX));
    for t in topics {
        put_short_str(&mut b, t);
    }
    b.put_i32(-1);
    b.freeze()
}

/// `ConsumerProtocolAssignment` v0 (`int16 version, [string topic, [int32 partitions]], bytes userData`).
pub fn classic_assignment(a: &TopicAssignment, image: &MetadataImage) -> bytes::Bytes {
    use bytes::BufMut;
    let topics: Vec<(String, Vec<i32>)> = ConsumerGroup::topic_partitions(a)
        .into_iter()
        .filter_map(|(id, ps)| image.topic_by_id(&id).map(|t| (t.name.clone(), ps)))
        .collect();
    let mut b = bytes::BytesMut::new();
    b.put_i16(0);
    b.put_i32(i32::try_from(topics.len()).unwrap_or(i32::MAX));
    for (t, ps) in topics {
        put_short_str(&mut b, &t);
        b.put_i32(i32::try_from(ps.len()).unwrap_or(i32::MAX));
        for p in ps {
            b.put_i32(p);
        }
    }
    b.put_i32(-1);
    b.freeze()
}

fn put_short_str(b: &mut bytes::BytesMut, s: &str) {
    use bytes::BufMut;
    // Topic names are at most 249 bytes.
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    b.put_i16(len);
    b.put_slice(&s.as_bytes()[..len.unsigned_abs() as usize]);
}
