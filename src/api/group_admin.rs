//! Group administration: ListGroups, DescribeGroups, DeleteGroups, OffsetDelete. Thin like `group.rs`: each
//! reads or runs an operation on the group's coordinator shard.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::*;

use super::{consumer_group, s, RequestContext};
use crate::coordinator::group::classic::GroupState;
use crate::coordinator::group::consumer::{ConsumerGroup, ConsumerLimits};
use crate::metadata::MetadataImage;

/// ListGroups v0–5: every group of every loaded shard, filtered by state (v4+) and type (v5+: "classic" for
/// classic groups and groups that only hold offsets, "consumer" for KIP-848 groups).
pub async fn list_groups(
    ctx: &RequestContext,
    req: ListGroupsRequest,
) -> Option<ListGroupsResponse> {
    let v = ctx.version;
    let states: Vec<String> = req.states_filter.iter().map(|x| x.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|x| x.to_lowercase()).collect();
    let want_type = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
    let want_state = |st: &str| states.is_empty() || states.contains(&st.to_lowercase());
    let mut resp = ListGroupsResponse::default();
    // (id, state, protocol type, group type)
    let mut groups: Vec<(String, &'static str, String, &'static str)> = Vec::new();
    let all_loaded = ctx.broker.groups.for_each_shard(|shard| {
        if want_type("classic") {
            for (id, state, protocol_type) in shard.list() {
                if want_state(state.name()) {
                    groups.push((id, state.name(), protocol_type, "classic"));
                }
            }
        }
        if want_type("consumer") {
            for (id, state) in shard.list_consumer() {
                if want_state(state) {
                    groups.push((id, state, "consumer".to_string(), "consumer"));
                }
            }
        }
    });
    if !all_loaded {
        resp.error_code = E::CoordinatorLoadInProgress.code();
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, state, protocol_type, group_type) in groups {
        let mut g = ListedGroup::default()
            .with_group_id(GroupId(s(id)))
            .with_protocol_type(s(protocol_type));
        if v >= 4 {
            g.group_state = s(state);
        }
        if v >= 5 {
            g.group_type = s(group_type);
        }
        resp.groups.push(g);
    }
    Some(resp)
}

/// DescribeGroups v0–6. Metadata and assignments of members are shown while the group is Stable, as in
/// Kafka. An unknown group is "Dead" (with GROUP_ID_NOT_FOUND from v6, KIP-1043).
pub async fn describe_groups(
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
) -> Option<DescribeGroupsResponse> {
    let v = ctx.version;
    let image = ctx.broker.image();
    let mut resp = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut d = DescribedGroup::default().with_group_id(id.clone());
        if v >= 3 {
            d.authorized_operations = i32::MIN;
        }
        let described = ctx.broker.groups.read(&id, |shard| {
            if let Some(g) = shard.consumer_group(&id) {
                return Some(consumer_as_classic(g, &shard.consumer_limits(), &image, v));
            }
            let Some(g) = shard.group(&id) else {
                return if shard.offsets.has_group(&id) {
                    Some((
                        GroupState::Empty.name().to_string(),
                        String::new(),
                        String::new(),
                        Vec::new(),
                    ))
                } else {
                    None
                };
            };
            let stable = g.state == GroupState::Stable;
            let protocol = g.protocol.clone().unwrap_or_default();
            let members = g
                .members
                .values()
                .map(|m| {
                    let meta = m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, x)| x.clone())
                        .unwrap_or_default();
                    DescribedGroupMember::default()
                        .with_member_id(s(m.id.clone()))
                        .with_group_instance_id(if v >= 4 {
                            m.instance_id.clone().map(s)
                        } else {
                            None
                        })
                        .with_client_id(s(m.client_id.clone()))
                        .with_client_host(s(m.client_host.clone()))
                        .with_member_metadata(if stable { meta } else { Default::default() })
                        .with_member_assignment(if stable {
                            m.assignment.clone()
                        } else {
                            Default::default()
                        })
                })
                .collect();
            Some((
                g.state.name().to_string(),
                g.protocol_type.clone().unwrap_or_default(),
                if stable { protocol } else { String::new() },
                members,
            ))
        });
        match described {
            Err(e) => d.error_code = e.code(),
            Ok(None) => {
                d.group_state = s("Dead");
                if v >= 6 {
                    d.error_code = E::GroupIdNotFound.code();
                    d.error_message = Some(s(format!("Group {} not found.", id.as_str())));
                }
            }
            Ok(Some((state, protocol_type, protocol_data, members))) => {
                d.group_state = s(state);
                d.protocol_type = s(protocol_type);
                d.protocol_data = s(protocol_data);
                d.members = members;
            }
        }
        resp.groups.push(d);
    }
    Some(resp)
}

/// A consumer group in DescribeGroups' classic format, as Kafka 4.1 answers: protocol type "consumer", the
/// assignor as protocol, each member's subscription and current assignment in the consumer protocol's
/// encoding.
fn consumer_as_classic(
    g: &ConsumerGroup,
    limits: &ConsumerLimits,
    image: &MetadataImage,
    v: i16,
) -> (String, String, String, Vec<DescribedGroupMember>) {
    let members = g
        .members
        .values()
        .map(|m| {
            DescribedGroupMember::default()
                .with_member_id(s(m.id.clone()))
                .with_group_instance_id(if v >= 4 {
                    m.meta.instance_id.clone().map(s)
                } else {
                    None
                })
                .with_client_id(s(m.meta.client_id.clone()))
                .with_client_host(s(m.meta.client_host.clone()))
                .with_member_metadata(consumer_group::classic_subscription(
                    &m.meta.subscribed_topic_names,
                ))
                .with_member_assignment(consumer_group::classic_assignment(&m.assigned, image))
        })
        .collect();
    (
        g.state().name().to_string(),
        "consumer".to_string(),
        g.assignor(limits).name().to_string(),
        members,
    )
}

/// DeleteGroups v0–2: NON_EMPTY_GROUP while a group has members; its offsets and metadata are tombstoned.
pub async fn delete_groups(
    ctx: &RequestContext,
    req: DeleteGroupsRequest,
) -> Option<DeleteGroupsResponse> {
    let mut resp = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let code = match ctx
            .broker
            .groups
            .run(&id, |shard, _now| match shard.delete_group(&id) {
                Ok(records) => (0, records),
                Err(e) => (e, Vec::new()),
            }) {
            Err(e) => e.code(),
            Ok((_, Some(e))) => e.code(),
            Ok((code, None)) => code,
        };
        resp.results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    Some(resp)
}

/// OffsetDelete v0: deletes committed offsets of partitions no member is subscribed to.
pub async fn offset_delete(
    ctx: &RequestContext,
    req: OffsetDeleteRequest,
) -> Option<OffsetDeleteResponse> {
    let wanted: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let run = ctx.broker.groups.run(&req.group_id, |shard, _now| {
        match shard.delete_offsets(&req.group_id, &wanted) {
            Ok((errors, records)) => (Ok(errors), records),
            Err(e) => (Err(e), Vec::new()),
        }
    });
    let mut resp = OffsetDeleteResponse::default();
    let errors = match run {
        Err(e) => Err(e.code()),
        Ok((_, Some(e))) => Err(e.code()),
        Ok((r, None)) => r,
    };
    match errors {
        Err(e) => resp.error_code = e,
        Ok(errors) => {
            let mut it = errors.into_iter();
            for t in &req.topics {
                let mut tr = OffsetDeleteResponseTopic::default().with_name(t.name.clone());
                for p in &t.partitions {
                    tr.partitions.push(
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(it.next().unwrap_or(0)),
                    );
                }
                resp.topics.push(tr);
            }
        }
    }
    Some(resp)
}
