//! `vltava group list|describe|delete|reset-offsets|delete-offsets`: consumer group administration over the
//! Kafka protocol, as `kafka-consumer-groups.sh` does it (FindCoordinator, then the group's coordinator; log
//! offsets from each partition's leader). Holds no state beyond one command's connections.

pub(crate) mod cluster;
mod offsets;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Buf;
use clap::{Args, Subcommand};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use super::client::ClientError;
use super::topic::{check, s};
use cluster::{Cluster, LATEST};

/// `vltava group ...`
#[derive(Args, Debug)]
pub struct GroupCommand {
    /// Broker to talk to.
    #[arg(
        long,
        short = 'b',
        default_value = "127.0.0.1:9092",
        global = true,
        value_name = "HOST:PORT"
    )]
    pub bootstrap: String,
    /// What to do.
    #[command(subcommand)]
    pub action: GroupAction,
}

/// Group operations.
#[derive(Subcommand, Debug)]
pub enum GroupAction {
    /// List groups with their type and state.
    List {
        /// Only groups in these states (Empty, Stable, PreparingRebalance, CompletingRebalance, Dead, ...;
        /// repeatable or comma-separated, case-insensitive).
        #[arg(long = "state", value_delimiter = ',')]
        states: Vec<String>,
        /// Only groups of these types (classic, consumer; repeatable or comma-separated).
        #[arg(long = "type", value_delimiter = ',')]
        types: Vec<String>,
    },
    /// Show a group's state, members with their assignments, and per partition the committed offset, log end
    /// offset and lag.
    Describe {
        /// Group id.
        group: String,
        /// Only the members.
        #[arg(long, conflicts_with = "offsets")]
        members: bool,
        /// Only the partitions' offsets and lag.
        #[arg(long)]
        offsets: bool,
        /// Only the group's state line (type, state, assignment strategy, member count).
        #[arg(long, conflicts_with_all = ["members", "offsets"])]
        state: bool,
    },
    /// Delete groups without members (their committed offsets go too).
    Delete {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Plan (default) or --execute a reset of a group's committed offsets; the group must have no members.
    ResetOffsets(offsets::ResetArgs),
    /// Delete committed offsets of topics (or some of their partitions) no member is subscribed to.
    DeleteOffsets {
        /// Group id.
        group: String,
        /// TOPIC or TOPIC:P,P,... (repeatable).
        #[arg(long = "topic", required = true, value_name = "TOPIC[:P,...]")]
        topics: Vec<String>,
    },
}

/// Runs a group command, printing results to stdout; `Err` (a non-zero exit) if anything failed.
pub fn run(cmd: GroupCommand) -> Result<(), ClientError> {
    let mut c = Cluster::connect(&cmd.bootstrap)?;
    match cmd.action {
        GroupAction::List { states, types } => list(&mut c, &states, &types),
        GroupAction::Describe {
            group,
            members,
            offsets,
            state,
        } => describe(&mut c, &group, !offsets && !state, !members && !state),
        GroupAction::Delete { groups } => delete(&mut c, &groups),
        GroupAction::ResetOffsets(args) => offsets::reset(&mut c, &args),
        GroupAction::DeleteOffsets { group, topics } => {
            offsets::delete_offsets(&mut c, &group, &topics)
        }
    }
}

/// Prints rows as left-aligned columns separated by two spaces.
pub(crate) fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|x| x.to_string()).collect()
}

fn list(c: &mut Cluster, states: &[String], types: &[String]) -> Result<(), ClientError> {
    let mut req = ListGroupsRequest::default();
    req.states_filter = states.iter().map(|x| s(x)).collect();
    req.types_filter = types.iter().map(|x| s(x)).collect();
    // Every broker coordinates some groups: ask each one, as the Admin client does.
    let mut groups = BTreeMap::new();
    for addr in c.broker_addrs() {
        let resp: ListGroupsResponse = c.client(&addr)?.call(ApiKey::ListGroups, 5, &req)?;
        check(resp.error_code, None, &format!("list groups on {addr}"))?;
        for g in resp.groups {
            let kind = if g.group_type.is_empty() {
                "classic".to_string()
            } else {
                g.group_type.to_string()
            };
            groups.insert(g.group_id.to_string(), (kind, g.group_state.to_string()));
        }
    }
    let mut rows = vec![row(&["GROUP", "TYPE", "STATE"])];
    for (id, (kind, state)) in groups {
        rows.push(vec![id, kind, state]);
    }
    print_table(&rows);
    Ok(())
}

/// One member as DescribeGroups shows it, with its assignment decoded.
pub(crate) struct MemberView {
    id: String,
    instance: Option<String>,
    client: String,
    host: String,
    assigned: Vec<(String, i32)>,
}

/// A group as DescribeGroups or ConsumerGroupDescribe shows it.
pub(crate) struct GroupView {
    /// "classic" or "consumer" (KIP-848).
    kind: &'static str,
    pub state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberView>,
}

/// Decodes a `ConsumerProtocolAssignment` (int16 version, then the versioned body); empty if it is not one.
fn decode_assignment(mut b: bytes::Bytes) -> Vec<(String, i32)> {
    if b.len() < 2 {
        return Vec::new();
    }
    let version = b.get_i16().clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut b, version) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.to_string(), *p)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Describes one group as the Admin client does: DescribeGroups, and for a group that is not a classic group
/// (DescribeGroups answers Dead) ConsumerGroupDescribe where the cluster has it; `Ok(None)` if it does not exist.
pub(crate) fn describe_group(
    c: &mut Cluster,
    group: &str,
) -> Result<Option<GroupView>, ClientError> {
    if let Some(view) = describe_classic(c, group)? {
        return Ok(Some(view));
    }
    if !c.supports(ApiKey::ConsumerGroupDescribe)? {
        return Ok(None);
    }
    let mut req = ConsumerGroupDescribeRequest::default();
    req.group_ids = vec![GroupId(s(group))];
    let resp: ConsumerGroupDescribeResponse = c.call_coordinator(
        group,
        ApiKey::ConsumerGroupDescribe,
        0,
        &req,
        |r: &ConsumerGroupDescribeResponse| r.groups.first().map_or(0, |g| g.error_code),
    )?;
    let g = resp.groups.into_iter().next().ok_or_else(|| {
        ClientError::Protocol("ConsumerGroupDescribe: no group in the answer".into())
    })?;
    consumer_group_view(g, group)
}

/// A ConsumerGroupDescribe answer as a view; GROUP_ID_NOT_FOUND (also the answer for a classic group) is none.
fn consumer_group_view(
    g: consumer_group_describe_response::DescribedGroup,
    group: &str,
) -> Result<Option<GroupView>, ClientError> {
    if g.error_code == kafka_protocol::error::ResponseError::GroupIdNotFound.code() {
        return Ok(None);
    }
    check(
        g.error_code,
        g.error_message.as_ref(),
        &format!("describe group {group}"),
    )?;
    if &*g.group_state == "Dead" {
        return Ok(None);
    }
    let members = g
        .members
        .into_iter()
        .map(|m| MemberView {
            id: m.member_id.to_string(),
            instance: m.instance_id.map(|x| x.to_string()),
            client: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assigned: m
                .assignment
                .topic_partitions
                .iter()
                .flat_map(|tp| {
                    tp.partitions
                        .iter()
                        .map(|p| (tp.topic_name.to_string(), *p))
                })
                .collect(),
        })
        .collect();
    Ok(Some(GroupView {
        kind: "consumer",
        state: g.group_state.to_string(),
        protocol_type: "consumer".into(),
        protocol: g.assignor_name.to_string(),
        members,
    }))
}

/// DescribeGroups (classic groups); `Ok(None)` if there is no classic group of that id.
fn describe_classic(c: &mut Cluster, group: &str) -> Result<Option<GroupView>, ClientError> {
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![GroupId(s(group))];
    let resp: DescribeGroupsResponse = c.call_coordinator(
        group,
        ApiKey::DescribeGroups,
        5,
        &req,
        |r: &DescribeGroupsResponse| r.groups.first().map_or(0, |g| g.error_code),
    )?;
    let g =
        resp.groups.into_iter().next().ok_or_else(|| {
            ClientError::Protocol("DescribeGroups: no group in the answer".into())
        })?;
    check(
        g.error_code,
        g.error_message.as_ref(),
        &format!("describe group {group}"),
    )?;
    if &*g.group_state == "Dead" {
        return Ok(None);
    }
    let consumer = &*g.protocol_type == "consumer" || g.protocol_type.is_empty();
    let members = g
        .members
        .into_iter()
        .map(|m| MemberView {
            id: m.member_id.to_string(),
            instance: m.group_instance_id.map(|x| x.to_string()),
            client: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assigned: if consumer {
                decode_assignment(m.member_assignment)
            } else {
                Vec::new()
            },
        })
        .collect();
    Ok(Some(GroupView {
        kind: "classic",
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        members,
    }))
}

/// A committed offset: offset, leader epoch, metadata.
pub(crate) type Committed = (i64, i32, String);

/// Every committed offset of a group (OffsetFetch v8, all topics).
pub(crate) fn committed(
    c: &mut Cluster,
    group: &str,
) -> Result<BTreeMap<(String, i32), Committed>, ClientError> {
    let mut req = OffsetFetchRequest::default();
    let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
    g.group_id = GroupId(s(group));
    g.member_epoch = -1;
    g.topics = None;
    req.groups = vec![g];
    let resp: OffsetFetchResponse = c.call_coordinator(
        group,
        ApiKey::OffsetFetch,
        8,
        &req,
        |r: &OffsetFetchResponse| r.groups.first().map_or(r.error_code, |g| g.error_code),
    )?;
    let mut out = BTreeMap::new();
    for g in resp.groups {
        check(
            g.error_code,
            None,
            &format!("fetch offsets of group {group}"),
        )?;
        for t in g.topics {
            for p in t.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    out.insert(
                        (t.name.to_string(), p.partition_index),
                        (
                            p.committed_offset,
                            p.committed_leader_epoch,
                            p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                        ),
                    );
                }
            }
        }
    }
    Ok(out)
}

fn describe(
    c: &mut Cluster,
    group: &str,
    show_members: bool,
    show_offsets: bool,
) -> Result<(), ClientError> {
    let Some(view) = describe_group(c, group)? else {
        return Err(ClientError::Refused(format!(
            "consumer group '{group}' does not exist"
        )));
    };
    println!(
        "GROUP {group}  TYPE {}  STATE {}  PROTOCOL-TYPE {}  ASSIGNMENT-STRATEGY {}  MEMBERS {}",
        view.kind,
        view.state,
        if view.protocol_type.is_empty() {
            "-"
        } else {
            &view.protocol_type
        },
        if view.protocol.is_empty() {
            "-"
        } else {
            &view.protocol
        },
        view.members.len()
    );
    if view.members.is_empty() {
        println!("Consumer group '{group}' has no active members.");
    }
    if show_members && !view.members.is_empty() {
        println!();
        let mut rows = vec![row(&[
            "CONSUMER-ID",
            "INSTANCE-ID",
            "CLIENT-ID",
            "HOST",
            "#PARTITIONS",
            "ASSIGNMENT",
        ])];
        for m in &view.members {
            rows.push(vec![
                m.id.clone(),
                m.instance.clone().unwrap_or_else(|| "-".into()),
                m.client.clone(),
                m.host.clone(),
                m.assigned.len().to_string(),
                format_assignment(&m.assigned),
            ]);
        }
        print_table(&rows);
    }
    if show_offsets {
        let committed = committed(c, group)?;
        let mut owner: BTreeMap<(String, i32), &MemberView> = BTreeMap::new();
        for m in &view.members {
            for tp in &m.assigned {
                owner.insert(tp.clone(), m);
            }
        }
        let partitions: BTreeSet<(String, i32)> =
            committed.keys().chain(owner.keys()).cloned().collect();
        let wanted: Vec<(String, i32)> = partitions.iter().cloned().collect();
        let ends = if wanted.is_empty() {
            Default::default()
        } else {
            c.list_offsets(&wanted, LATEST)?
        };
        println!();
        let mut rows = vec![row(&[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ])];
        let dash = || "-".to_string();
        for tp in &partitions {
            let current = committed.get(tp).map(|x| x.0);
            let end = ends.get(tp).copied();
            let lag = match (current, end) {
                (Some(c), Some(e)) => (e - c).max(0).to_string(),
                _ => dash(),
            };
            let m = owner.get(tp);
            rows.push(vec![
                group.to_string(),
                tp.0.clone(),
                tp.1.to_string(),
                current.map_or_else(dash, |x| x.to_string()),
                end.map_or_else(dash, |x| x.to_string()),
                lag,
                m.map_or_else(dash, |m| m.id.clone()),
                m.map_or_else(dash, |m| m.host.clone()),
                m.map_or_else(dash, |m| m.client.clone()),
            ]);
        }
        print_table(&rows);
    }
    Ok(())
}

/// `topic:0,1;other:2` style, sorted.
fn format_assignment(assigned: &[(String, i32)]) -> String {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in assigned {
        by_topic.entry(t).or_default().push(*p);
    }
    if by_topic.is_empty() {
        return "-".into();
    }
    by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{t}:{}", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn delete(c: &mut Cluster, groups: &[String]) -> Result<(), ClientError> {
    let mut failed = Vec::new();
    for group in groups {
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = vec![GroupId(s(group))];
        let resp: DeleteGroupsResponse = c.call_coordinator(
            group,
            ApiKey::DeleteGroups,
            2,
            &req,
            |r: &DeleteGroupsResponse| r.results.first().map_or(0, |x| x.error_code),
        )?;
        let code = resp.results.first().map_or(0, |r| r.error_code);
        match check(code, None, &format!("delete group {group}")) {
            Ok(()) => println!("Deletion of consumer group '{group}' was successful."),
            Err(e) => {
                println!("Error: {e}");
                failed.push(group.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ClientError::Refused(format!(
            "could not delete group(s): {}",
            failed.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn assignment_round_trip_and_garbage() {
        let mut a = ConsumerProtocolAssignment::default();
        let mut tp = consumer_protocol_assignment::TopicPartition::default();
        tp.topic = TopicName(s("t"));
        tp.partitions = vec![2, 0];
        a.assigned_partitions.push(tp);
        let mut buf = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut buf, 1);
        a.encode(&mut buf, 1).unwrap();
        let got = decode_assignment(buf.freeze());
        assert_eq!(got, vec![("t".to_string(), 2), ("t".to_string(), 0)]);
        assert_eq!(format_assignment(&got), "t:0,2");
        assert!(decode_assignment(bytes::Bytes::from_static(&[0, 1, 0xff])).is_empty());
        assert!(decode_assignment(bytes::Bytes::new()).is_empty());
        assert_eq!(format_assignment(&[]), "-");
    }

    #[test]
    fn consumer_group_describe_answers() {
        use consumer_group_describe_response::{DescribedGroup, Member, TopicPartitions};
        let mut g = DescribedGroup::default();
        g.group_state = s("Reconciling");
        g.assignor_name = s("uniform");
        let mut m = Member::default();
        m.member_id = s("m1");
        m.client_id = s("cl");
        m.client_host = s("/10.0.0.1");
        m.instance_id = Some(s("i1"));
        let mut tp = TopicPartitions::default();
        tp.topic_name = TopicName(s("t"));
        tp.partitions = vec![1, 3];
        m.assignment.topic_partitions.push(tp);
        g.members.push(m);
        let v = consumer_group_view(g, "g").unwrap().expect("a group");
        assert_eq!(
            (v.kind, v.state.as_str(), v.protocol.as_str()),
            ("consumer", "Reconciling", "uniform")
        );
        let m = &v.members[0];
        assert_eq!(
            (
                m.id.as_str(),
                m.instance.as_deref(),
                m.client.as_str(),
                m.host.as_str()
            ),
            ("m1", Some("i1"), "cl", "/10.0.0.1")
        );
        assert_eq!(m.assigned, vec![("t".to_string(), 1), ("t".to_string(), 3)]);
        // A classic group (or none) is GROUP_ID_NOT_FOUND to ConsumerGroupDescribe; other errors are errors.
        let nf = DescribedGroup::default().with_error_code(69);
        assert!(consumer_group_view(nf, "g").unwrap().is_none());
        let dead = DescribedGroup::default().with_group_state(s("Dead"));
        assert!(consumer_group_view(dead, "g").unwrap().is_none());
        let err = DescribedGroup::default().with_error_code(16);
        assert!(consumer_group_view(err, "g").is_err());
    }
}
