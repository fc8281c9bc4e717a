//! KIP-848 consumer groups as real clients use them: rdkafka (librdkafka 2.12.1) with `group.protocol=consumer`
//! sharing a topic, a member in its own process (confluent-kafka) killed with SIGKILL and fenced at the
//! broker's session timeout, commits resuming after a consumer restart and a broker kill -9 (groups reloaded
//! from `__consumer_offsets`), a regex subscription that picks up a topic created later; raw
//! ConsumerGroupHeartbeat/ConsumerGroupDescribe checks of the revocation protocol and Kafka's error answers;
//! ListGroups/DescribeGroups/DeleteGroups/JoinGroup/OffsetCommit/OffsetFetch against a consumer group; the
//! Java client 4.1.1 with `group.protocol=consumer`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use uuid::Uuid;

use crate::common::{bounded, create_topic_raw, run_java, Broker, Raw};
use crate::groups::{produce, wait_until};
use crate::metadata::create_topic;

/// A 6 s session timeout (Kafka's minimum is 45 s, lowered here) and a 500 ms heartbeat interval.
const KIP848: &[(&str, &str)] = &[
    ("GROUP_CONSUMER_SESSION_TIMEOUT_MS", "6000"),
    ("GROUP_CONSUMER_MIN_SESSION_TIMEOUT_MS", "1000"),
    ("GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", "500"),
];

fn consumer_config(b: &Broker, group: &str) -> ClientConfig {
    // With group.protocol=consumer librdkafka refuses session.timeout.ms and heartbeat.interval.ms: the
    // broker decides them.
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", b.bootstrap())
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    cfg
}

/// One subscribed rdkafka consumer (consumer protocol) polling on its own thread.
struct Member {
    stop: Arc<AtomicBool>,
    assigned: Arc<Mutex<Vec<i32>>>,
    seen: Arc<Mutex<Vec<(i32, i64)>>>,
    handle: Option<JoinHandle<()>>,
}

impl Member {
    fn spawn(b: &Broker, group: &str, topic: &str) -> Member {
        let c: BaseConsumer = consumer_config(b, group).create().expect("consumer");
        c.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let assigned = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, a, n) = (stop.clone(), assigned.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match c.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => n.lock().unwrap().push((m.partition(), m.offset())),
                    Some(Err(e)) => eprintln!("consumer error: {e}"),
                    None => {}
                }
                if let Ok(tpl) = c.assignment() {
                    let mut parts: Vec<i32> =
                        tpl.elements().iter().map(|e| e.partition()).collect();
                    parts.sort();
                    *a.lock().unwrap() = parts;
                }
            }
            drop(c); // closes: a leave heartbeat (epoch -1)
        });
        Member {
            stop,
            assigned,
            seen,
            handle: Some(handle),
        }
    }

    fn assigned(&self) -> Vec<i32> {
        self.assigned.lock().unwrap().clone()
    }

    fn seen(&self) -> Vec<(i32, i64)> {
        self.seen.lock().unwrap().clone()
    }

    fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn consumer_protocol_three_members_share_six_partitions_and_read_each_record_once() {
    bounded(120, || {
        let b = Broker::start_with(KIP848);
        create_topic(&b, "shared848", 6, &[]);
        let members: Vec<Member> = (0..3)
            .map(|_| Member::spawn(&b, "g848", "shared848"))
            .collect();
        wait_until(40, "three members with two partitions each", || {
            members.iter().all(|m| m.assigned().len() == 2)
        });
        let mut union: Vec<i32> = members.iter().flat_map(|m| m.assigned()).collect();
        union.sort();
        assert_eq!(union, vec![0, 1, 2, 3, 4, 5]);
        produce(&b, "shared848", 6, 50);
        wait_until(30, "all 300 records consumed", || {
            members.iter().map(|m| m.seen().len()).sum::<usize>() >= 300
        });
        std::thread::sleep(Duration::from_millis(500));
        let mut count: HashMap<(i32, i64), usize> = HashMap::new();
        for m in &members {
            let mine = m.assigned();
            for k in m.seen() {
                assert!(mine.contains(&k.0), "read a partition it does not own");
                *count.entry(k).or_default() += 1;
            }
        }
        assert_eq!(count.len(), 300);
        assert!(count.values().all(|n| *n == 1), "a record was read twice");
        // The broker's view agrees: Stable, three members with two partitions each.
        let mut raw = Raw::connect(&b);
        let d = describe(&mut raw, "g848");
        assert_eq!(d.group_state.as_str(), "Stable");
        assert_eq!(d.members.len(), 3);
        for m in &d.members {
            assert_eq!(m.member_epoch, d.assignment_epoch);
            assert_eq!(m.assignment.topic_partitions[0].partitions.len(), 2);
            assert_eq!(
                m.assignment.topic_partitions[0].topic_name.as_str(),
                "shared848"
            );
        }
        for m in members {
            m.close();
        }
    });
}

/// A confluent-kafka member in its own process (so SIGKILL leaves no chance to leave the group).
fn python_member(b: &Broker, group: &str, topic: &str) -> (Child, Arc<Mutex<i32>>) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compat-tests/python/consumer848_member.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args([
            "--bootstrap",
            &b.bootstrap(),
            "--group",
            group,
            "--topic",
            topic,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with confluent-kafka");
    let assigned = Arc::new(Mutex::new(-1));
    let a = assigned.clone();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("assigned ") {
                *a.lock().unwrap() = n.parse().unwrap_or(-1);
            }
        }
    });
    (child, assigned)
}

#[test]
fn consumer_protocol_idle_seventh_member_takes_over_from_a_killed_member() {
    bounded(150, || {
        let b = Broker::start_with(KIP848);
        create_topic(&b, "seven848", 6, &[]);
        let (mut child, child_assigned) = python_member(&b, "g7848", "seven848");
        let mut members: Vec<Member> = (0..5)
            .map(|_| Member::spawn(&b, "g7848", "seven848"))
            .collect();
        wait_until(60, "six members with one partition each", || {
            *child_assigned.lock().unwrap() == 1 && members.iter().all(|m| m.assigned().len() == 1)
        });
        // The uniform assignor is sticky: a seventh member gets nothing while the six keep theirs.
        members.push(Member::spawn(&b, "g7848", "seven848"));
        let mut raw = Raw::connect(&b);
        wait_until(20, "seven members in the group", || {
            describe(&mut raw, "g7848").members.len() == 7
        });
        std::thread::sleep(Duration::from_millis(1500));
        assert!(members[5].assigned().is_empty(), "the seventh stays idle");
        assert_eq!(*child_assigned.lock().unwrap(), 1);
        // SIGKILL: no leave heartbeat; the broker fences the member when its 6 s session timeout expires.
        child.kill().unwrap();
        child.wait().unwrap();
        let took = wait_until(30, "every rdkafka member with one partition", || {
            members.iter().all(|m| m.assigned().len() == 1)
        });
        eprintln!("idle member took over {took:?} after the SIGKILL (session timeout 6 s)");
        assert!(took < Duration::from_secs(6 + 6), "takeover took {took:?}");
        assert!(
            took > Duration::from_secs(3),
            "fenced before the session timeout: {took:?}"
        );
        let mut union: Vec<i32> = members.iter().flat_map(|m| m.assigned()).collect();
        union.sort();
        assert_eq!(union, vec![0, 1, 2, 3, 4, 5]);
        for m in members {
            m.close();
        }
    });
}

/// Subscribes (consumer protocol), reads `n` records, commits synchronously, closes; returns what it read.
fn read_and_commit(b: &Broker, group: &str, topic: &str, n: usize) -> Vec<(i32, i64)> {
    let c: BaseConsumer = consumer_config(b, group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while got.len() < n {
        assert!(Instant::now() < deadline, "read only {} of {n}", got.len());
        if let Some(r) = c.poll(Duration::from_millis(100)) {
            let m = r.expect("consume");
            got.push((m.partition(), m.offset()));
        }
    }
    c.commit_consumer_state(CommitMode::Sync)
        .expect("commitSync with member id and epoch");
    got
}

#[test]
fn consumer_protocol_commits_resume_after_consumer_restart_and_broker_kill9() {
    bounded(150, || {
        let mut b = Broker::start_with(KIP848);
        create_topic(&b, "resume848", 1, &[]);
        produce(&b, "resume848", 1, 30);
        let first = read_and_commit(&b, "gr848", "resume848", 10);
        assert_eq!(first.first(), Some(&(0, 0)));
        let second = read_and_commit(&b, "gr848", "resume848", 10);
        assert_eq!(second.first(), Some(&(0, 10)), "resumed at {second:?}");
        // The consumer group itself (epochs, members, assignments) is reloaded from __consumer_offsets.
        let mut raw = Raw::connect(&b);
        let before = describe(&mut raw, "gr848");
        b.kill9_and_restart();
        let mut raw = Raw::connect(&b);
        let after = wait_describe(&mut raw, "gr848");
        assert_eq!(after.group_epoch, before.group_epoch);
        assert_eq!(after.assignment_epoch, before.assignment_epoch);
        let third = read_and_commit(&b, "gr848", "resume848", 5);
        assert_eq!(
            third.first(),
            Some(&(0, 20)),
            "after kill -9 resumed at {third:?}"
        );
    });
}

// --- raw protocol --------------------------------------------------------------------------------------------

fn sb(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn describe(raw: &mut Raw, group: &str) -> consumer_group_describe_response::DescribedGroup {
    let r: ConsumerGroupDescribeResponse = raw.call(
        ApiKey::ConsumerGroupDescribe,
        1,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(sb(group))]),
    );
    r.groups.into_iter().next().expect("one group")
}

/// Describes once the coordinator has loaded (after a restart).
fn wait_describe(raw: &mut Raw, group: &str) -> consumer_group_describe_response::DescribedGroup {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = describe(raw, group);
        if d.error_code == 0 {
            return d;
        }
        assert!(Instant::now() < deadline, "describe error {}", d.error_code);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hb(group: &str, member: &str, epoch: i32) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_member_id(sb(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
}

fn join(group: &str, member: &str, topic: &str) -> ConsumerGroupHeartbeatRequest {
    hb(group, member, 0)
        .with_rebalance_timeout_ms(30000)
        .with_subscribed_topic_names(Some(vec![TopicName(sb(topic))]))
        .with_topic_partitions(Some(vec![]))
}

fn call_hb(raw: &mut Raw, req: &ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r: ConsumerGroupHeartbeatResponse = raw.call(ApiKey::ConsumerGroupHeartbeat, 1, req);
        let loading = [
            E::CoordinatorLoadInProgress.code(),
            E::NotCoordinator.code(),
            E::CoordinatorNotAvailable.code(),
        ];
        if !loading.contains(&r.error_code) || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn owned(topic: Uuid, parts: &[i32]) -> Option<Vec<TopicPartitions>> {
    Some(vec![TopicPartitions::default()
        .with_topic_id(topic)
        .with_partitions(parts.to_vec())])
}

fn parts(r: &ConsumerGroupHeartbeatResponse) -> Option<Vec<i32>> {
    r.assignment.as_ref().map(|a| {
        let mut v: Vec<i32> = a
            .topic_partitions
            .iter()
            .flat_map(|t| t.partitions.clone())
            .collect();
        v.sort();
        v
    })
}

/// Two raw members walk the revocation protocol: B gets A's partitions only after A says it gave them up;
/// then Kafka's error answers, and the group through the other group APIs.
#[test]
fn raw_heartbeat_revocation_and_errors() {
    bounded(90, || {
        let b = Broker::start_with(KIP848);
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "raw848", 4);
        let a = call_hb(&mut raw, &join("rg", "member-a", "raw848"));
        assert_eq!(a.error_code, 0, "{:?}", a.error_message);
        assert_eq!(a.member_id.as_deref(), Some("member-a"));
        assert_eq!(a.member_epoch, 1);
        assert_eq!(a.heartbeat_interval_ms, 500);
        assert_eq!(parts(&a), Some(vec![0, 1, 2, 3]));
        let topic = a.assignment.as_ref().unwrap().topic_partitions[0].topic_id;

        // B joins: the group epoch moves to 2; B gets nothing yet (A still owns everything).
        let b1 = call_hb(&mut raw, &join("rg", "member-b", "raw848"));
        assert_eq!((b1.error_code, b1.member_epoch), (0, 2));
        assert_eq!(parts(&b1), Some(vec![]));
        // A heartbeats: it keeps two partitions, stays at epoch 1 until it revokes the other two.
        let a2 = call_hb(&mut raw, &hb("rg", "member-a", 1));
        assert_eq!((a2.error_code, a2.member_epoch), (0, 1));
        let kept = parts(&a2).expect("a new assignment for A");
        assert_eq!(kept.len(), 2);
        // B still gets nothing while A has not confirmed.
        let b2 = call_hb(&mut raw, &hb("rg", "member-b", 2));
        assert_eq!((b2.error_code, parts(&b2)), (0, None));
        assert_eq!(describe(&mut raw, "rg").group_state.as_str(), "Reconciling");
        // A confirms (owns only what it kept): epoch 2; then B gets the two released partitions.
        let a3 = call_hb(
            &mut raw,
            &hb("rg", "member-a", 1).with_topic_partitions(owned(topic, &kept)),
        );
        assert_eq!((a3.error_code, a3.member_epoch), (0, 2));
        let b3 = call_hb(&mut raw, &hb("rg", "member-b", 2));
        let given = parts(&b3).expect("B's partitions");
        assert_eq!(given.len(), 2);
        assert!(given.iter().all(|p| !kept.contains(p)));
        let d = describe(&mut raw, "rg");
        assert_eq!(d.group_state.as_str(), "Stable");
        assert_eq!((d.group_epoch, d.assignment_epoch), (2, 2));
        assert_eq!(d.assignor_name.as_str(), "uniform");

        // Errors as Kafka answers them.
        let e = |r: ConsumerGroupHeartbeatResponse| r.error_code;
        assert_eq!(
            e(call_hb(&mut raw, &hb("rg", "member-a", 7))),
            E::FencedMemberEpoch.code()
        );
        assert_eq!(
            e(call_hb(&mut raw, &hb("rg", "nobody", 2))),
            E::UnknownMemberId.code()
        );
        assert_eq!(
            e(call_hb(&mut raw, &hb("rg", "", 0))),
            E::InvalidRequest.code()
        );
        assert_eq!(
            e(call_hb(
                &mut raw,
                &join("rg", "c", "raw848").with_server_assignor(Some(sb("sticky")))
            )),
            E::UnsupportedAssignor.code()
        );
        assert_eq!(
            e(call_hb(
                &mut raw,
                &hb("rg", "c", 0)
                    .with_rebalance_timeout_ms(1000)
                    .with_subscribed_topic_regex(Some(sb("raw[")))
            )),
            E::InvalidRegularExpression.code()
        );

        // The other group APIs see a consumer group.
        let lg: ListGroupsResponse = raw.call(
            ApiKey::ListGroups,
            5,
            &ListGroupsRequest::default().with_types_filter(vec![sb("consumer")]),
        );
        let listed: Vec<(String, String, String)> = lg
            .groups
            .iter()
            .map(|g| {
                (
                    g.group_id.to_string(),
                    g.group_state.to_string(),
                    g.group_type.to_string(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            vec![("rg".into(), "Stable".into(), "consumer".into())]
        );
        let lg: ListGroupsResponse = raw.call(
            ApiKey::ListGroups,
            5,
            &ListGroupsRequest::default().with_types_filter(vec![sb("classic")]),
        );
        assert!(lg.groups.is_empty());
        let dg: DescribeGroupsResponse = raw.call(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(sb("rg"))]),
        );
        assert_eq!(dg.groups[0].protocol_type.as_str(), "consumer");
        assert_eq!(dg.groups[0].members.len(), 2);
        let jg: JoinGroupResponse = raw.call(
            ApiKey::JoinGroup,
            5,
            &JoinGroupRequest::default()
                .with_group_id(GroupId(sb("rg")))
                .with_session_timeout_ms(10000)
                .with_rebalance_timeout_ms(10000)
                .with_member_id(sb(""))
                .with_protocol_type(sb("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(sb("range"))
                .with_metadata(bytes::Bytes::from_static(b"meta"))]),
        );
        assert_eq!(jg.error_code, E::InconsistentGroupProtocol.code());

        // OffsetCommit checks the member epoch.
        let commit = |member: &str, epoch: i32| {
            OffsetCommitRequest::default()
                .with_group_id(GroupId(sb("rg")))
                .with_member_id(sb(member))
                .with_generation_id_or_member_epoch(epoch)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(sb("raw848")))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(5),
                        ]),
                ])
        };
        let code = |r: OffsetCommitResponse| r.topics[0].partitions[0].error_code;
        let oc: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 9, &commit("member-a", 2));
        assert_eq!(code(oc), 0);
        let oc: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 9, &commit("member-a", 1));
        assert_eq!(code(oc), E::StaleMemberEpoch.code());
        let oc: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 9, &commit("nobody", 2));
        assert_eq!(code(oc), E::UnknownMemberId.code());
        let oc: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 9, &commit("", -1));
        assert_eq!(
            code(oc),
            E::UnknownMemberId.code(),
            "admin commit to a non-empty group"
        );

        // OffsetFetch v9 checks the member id and epoch of a consumer group (an admin, no member id, may read).
        let fetch = |raw: &mut Raw, member: Option<&str>, epoch: i32| -> (i16, i64) {
            let r: OffsetFetchResponse = raw.call(
                ApiKey::OffsetFetch,
                9,
                &OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(sb("rg")))
                        .with_member_id(member.map(sb))
                        .with_member_epoch(epoch)
                        .with_topics(Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopics::default()
                                .with_name(TopicName(sb("raw848")))
                                .with_partition_indexes(vec![0]),
                        ])),
                ]),
            );
            let g = &r.groups[0];
            let offset = g
                .topics
                .first()
                .map_or(-1, |t| t.partitions[0].committed_offset);
            (g.error_code, offset)
        };
        assert_eq!(fetch(&mut raw, Some("member-a"), 2), (0, 5));
        assert_eq!(
            fetch(&mut raw, Some("member-a"), 1).0,
            E::StaleMemberEpoch.code()
        );
        assert_eq!(
            fetch(&mut raw, Some("nobody"), 2).0,
            E::UnknownMemberId.code()
        );
        assert_eq!(fetch(&mut raw, None, -1), (0, 5));

        // DeleteGroups refuses a group with members; both leave (epoch -1), then it is deleted.
        let del = |raw: &mut Raw| -> i16 {
            let r: DeleteGroupsResponse = raw.call(
                ApiKey::DeleteGroups,
                2,
                &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb("rg"))]),
            );
            r.results[0].error_code
        };
        assert_eq!(del(&mut raw), E::NonEmptyGroup.code());
        for m in ["member-a", "member-b"] {
            let r = call_hb(&mut raw, &hb("rg", m, -1));
            assert_eq!((r.error_code, r.member_epoch), (0, -1));
        }
        assert_eq!(describe(&mut raw, "rg").group_state.as_str(), "Empty");
        assert_eq!(del(&mut raw), 0);
        assert_eq!(
            describe(&mut raw, "rg").error_code,
            E::GroupIdNotFound.code()
        );
    });
}

#[test]
fn java_client_consumer_protocol_subscribe_commit_resume() {
    bounded(200, || {
        let b = Broker::start_with(KIP848);
        run_java("GroupCommit.java", &b, &["--protocol", "consumer"]);
    });
}

/// librdkafka subscribes by pattern (`^rx848-.*`): with the consumer protocol the broker resolves it
/// (SubscribedTopicRegex), and a topic created later that matches reaches the member without a resubscribe.
#[test]
fn consumer_protocol_regex_subscription_picks_up_new_topics() {
    bounded(120, || {
        let b = Broker::start_with(KIP848);
        create_topic(&b, "rx848-a", 2, &[]);
        create_topic(&b, "other848", 2, &[]);
        let c: BaseConsumer = consumer_config(&b, "grx848").create().expect("consumer");
        c.subscribe(&["^rx848-.*"]).expect("subscribe");
        let assigned = |c: &BaseConsumer| -> Vec<(String, i32)> {
            let mut v: Vec<(String, i32)> = c
                .assignment()
                .map(|t| {
                    t.elements()
                        .iter()
                        .map(|e| (e.topic().to_string(), e.partition()))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        let poll_until = |c: &BaseConsumer, want: usize, what: &str| {
            let deadline = Instant::now() + Duration::from_secs(40);
            while assigned(c).len() != want {
                assert!(Instant::now() < deadline, "{what}: {:?}", assigned(c));
                let _ = c.poll(Duration::from_millis(100));
            }
        };
        poll_until(&c, 2, "rx848-a's two partitions");
        assert!(assigned(&c).iter().all(|(t, _)| t == "rx848-a"));
        create_topic(&b, "rx848-b", 1, &[]);
        poll_until(&c, 3, "rx848-b added by the broker");
        let mut raw = Raw::connect(&b);
        let d = describe(&mut raw, "grx848");
        assert_eq!(
            d.members[0]
                .subscribed_topic_regex
                .as_deref()
                .map(|r| r.contains("rx848-")),
            Some(true)
        );
        drop(c);
    });
}
