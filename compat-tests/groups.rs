//! Consumer groups and committed offsets as real clients use them: rdkafka `subscribe` consumers sharing a
//! topic, a member dying without leaving (kcat killed with SIGKILL), a clean leave, commits surviving a consumer
//! restart and a broker kill -9; raw protocol checks of the classic protocol's error answers; the Python
//! client's subscribe + commit.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::common::{bounded, run_java, Broker, Raw};
use crate::metadata::create_topic;
use crate::produce_consume::producer;

/// Settings that make group tests fast: a short initial rebalance delay.
const FAST: &[(&str, &str)] = &[("GROUP_INITIAL_REBALANCE_DELAY_MS", "200")];

/// One subscribed rdkafka consumer polling on its own thread.
struct Member {
    stop: Arc<AtomicBool>,
    assigned: Arc<Mutex<Vec<i32>>>,
    seen: Arc<Mutex<Vec<(i32, i64)>>>,
    handle: Option<JoinHandle<()>>,
}

impl Member {
    fn spawn(b: &Broker, group: &str, topic: &str, extra: &[(&str, &str)]) -> Member {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", b.bootstrap())
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "300");
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        let c: BaseConsumer = cfg.create().expect("consumer");
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
            // Dropping the consumer closes it: rdkafka sends LeaveGroup.
            drop(c);
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

    /// Closes the consumer (LeaveGroup) and waits for its thread.
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

/// Waits until `check` holds, polling every 100 ms; panics with `what` after `secs`.
pub(crate) fn wait_until(secs: u64, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// Produces `per_partition` records to each of `partitions` partitions.
pub(crate) fn produce(b: &Broker, topic: &str, partitions: i32, per_partition: usize) {
    let (p, acks) = producer(b, &[]);
    for part in 0..partitions {
        for i in 0..per_partition {
            let payload = format!("p{part}-{i}");
            p.send(
                BaseRecord::<(), _>::to(topic)
                    .partition(part)
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    assert!(
        acks.1.lock().unwrap().is_empty(),
        "produce errors: {:?}",
        acks.1.lock().unwrap()
    );
    assert_eq!(
        acks.0.lock().unwrap().len(),
        partitions as usize * per_partition
    );
}

fn sorted_assignments(members: &[Member]) -> Vec<Vec<i32>> {
    let mut all: Vec<Vec<i32>> = members.iter().map(|m| m.assigned()).collect();
    all.sort();
    all
}

#[test]
fn three_subscribers_share_six_partitions_and_read_each_record_once() {
    bounded(120, || {
        let b = Broker::start_with(FAST);
        create_topic(&b, "shared", 6, &[]);
        let members: Vec<Member> = (0..3)
            .map(|_| Member::spawn(&b, "g3", "shared", &[]))
            .collect();
        wait_until(30, "three members with two partitions each", || {
            members.iter().all(|m| m.assigned().len() == 2)
        });
        let mut union: Vec<i32> = members.iter().flat_map(|m| m.assigned()).collect();
        union.sort();
        assert_eq!(
            union,
            vec![0, 1, 2, 3, 4, 5],
            "{:?}",
            sorted_assignments(&members)
        );
        produce(&b, "shared", 6, 50);
        wait_until(30, "all 300 records consumed", || {
            members.iter().map(|m| m.seen().len()).sum::<usize>() >= 300
        });
        std::thread::sleep(Duration::from_millis(500));
        let mut count: HashMap<(i32, i64), usize> = HashMap::new();
        for m in &members {
            for k in m.seen() {
                *count.entry(k).or_default() += 1;
            }
            // Each member read only its own partitions.
            let mine = m.assigned();
            assert!(m.seen().iter().all(|(p, _)| mine.contains(p)));
        }
        assert_eq!(count.len(), 300);
        assert!(count.values().all(|n| *n == 1), "a record was read twice");
        for m in members {
            m.close();
        }
    });
}

/// kcat as a balanced consumer in its own process, so it can die without leaving the group.
fn kcat_member(b: &Broker, group: &str, topic: &str, client_id: &str) -> Child {
    Command::new("kcat")
        .args(["-b", &b.bootstrap(), "-G", group, topic, "-q", "-o", "end"])
        .args(["-X", &format!("client.id={client_id}")])
        .args([
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "heartbeat.interval.ms=300",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat installed")
}

#[test]
fn idle_seventh_member_takes_over_from_a_member_that_died() {
    bounded(150, || {
        let b = Broker::start_with(FAST);
        create_topic(&b, "seven", 6, &[]);
        // kcat's member id sorts first ("aaa-..."), so the range assignor gives it a partition and leaves one
        // of the six "zzz-..." rdkafka members idle.
        let mut kcat = kcat_member(&b, "g7", "seven", "aaa");
        std::thread::sleep(Duration::from_millis(500));
        let members: Vec<Member> = (0..6)
            .map(|_| Member::spawn(&b, "g7", "seven", &[("client.id", "zzz")]))
            .collect();
        wait_until(40, "five members with one partition and one idle", || {
            sorted_assignments(&members)
                .iter()
                .filter(|a| a.len() == 1)
                .count()
                == 5
                && members.iter().filter(|m| m.assigned().is_empty()).count() == 1
        });
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(
            members.iter().filter(|m| m.assigned().is_empty()).count(),
            1,
            "stays idle while stable"
        );
        // SIGKILL: no LeaveGroup; the coordinator notices when the session timeout (6 s) expires.
        kcat.kill().unwrap();
        kcat.wait().unwrap();
        let took = wait_until(30, "every member with one partition", || {
            members.iter().all(|m| m.assigned().len() == 1)
        });
        assert!(took < Duration::from_secs(6 + 8), "takeover took {took:?}");
        let mut union: Vec<i32> = members.iter().flat_map(|m| m.assigned()).collect();
        union.sort();
        assert_eq!(union, vec![0, 1, 2, 3, 4, 5]);
        for m in members {
            m.close();
        }
    });
}

#[test]
fn clean_leave_rebalances_at_once() {
    bounded(90, || {
        let b = Broker::start_with(FAST);
        create_topic(&b, "leave", 6, &[]);
        let slow = [("session.timeout.ms", "60000")];
        let a = Member::spawn(&b, "gl", "leave", &slow);
        let c = Member::spawn(&b, "gl", "leave", &slow);
        wait_until(30, "two members with three partitions each", || {
            a.assigned().len() == 3 && c.assigned().len() == 3
        });
        c.close();
        // Far sooner than the 60 s session timeout: the LeaveGroup rebalanced the group.
        let took = wait_until(15, "the remaining member to own all six partitions", || {
            a.assigned().len() == 6
        });
        assert!(took < Duration::from_secs(15));
        a.close();
    });
}

fn commit_consumer(b: &Broker, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer")
}

/// Subscribes, reads `n` records, commits synchronously after the last one and closes; returns what it read.
fn read_and_commit(b: &Broker, group: &str, topic: &str, n: usize) -> Vec<(i32, i64)> {
    let c = commit_consumer(b, group);
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
        .expect("commitSync");
    got
}

#[test]
fn committed_offsets_survive_consumer_restart_and_broker_kill9() {
    bounded(150, || {
        let mut b = Broker::start_with(FAST);
        create_topic(&b, "resume", 1, &[]);
        produce(&b, "resume", 1, 30);
        let first = read_and_commit(&b, "gr", "resume", 10);
        assert_eq!(first.first(), Some(&(0, 0)));
        // A new consumer of the group resumes after what was committed.
        let second = read_and_commit(&b, "gr", "resume", 10);
        assert_eq!(second.first(), Some(&(0, 10)), "resumed at {second:?}");
        b.kill9_and_restart();
        let third = read_and_commit(&b, "gr", "resume", 5);
        assert_eq!(
            third.first(),
            Some(&(0, 20)),
            "after kill -9 resumed at {third:?}"
        );
        b.restart();
        let c = commit_consumer(&b, "gr");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("resume", 0);
        let committed = c
            .committed_offsets(tpl, Duration::from_secs(20))
            .expect("committed");
        assert_eq!(committed.elements()[0].offset(), Offset::Offset(25));
    });
}

// --- raw protocol --------------------------------------------------------------------------------------------

pub(crate) fn sbytes(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn join_req(member: &str, protocol: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(sbytes("raw")))
        .with_session_timeout_ms(6000)
        .with_rebalance_timeout_ms(5000)
        .with_member_id(sbytes(member))
        .with_protocol_type(sbytes("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(sbytes(protocol))
        .with_metadata(Bytes::from_static(b"meta"))])
}

pub(crate) fn wait_coordinator(raw: &mut Raw, group: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r: FindCoordinatorResponse = raw.call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(sbytes(group)),
        );
        // Found, and the shard is loaded (not NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS).
        if r.error_code == 0 {
            let f: OffsetFetchResponse = raw.call(
                ApiKey::OffsetFetch,
                7,
                &OffsetFetchRequest::default().with_group_id(GroupId(sbytes(group))),
            );
            if f.error_code == 0 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no coordinator: {}",
            r.error_code
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn raw_join_sync_heartbeat_errors() {
    bounded(60, || {
        let b = Broker::start_with(&[("GROUP_INITIAL_REBALANCE_DELAY_MS", "0")]);
        let mut raw = Raw::connect(&b);
        wait_coordinator(&mut raw, "raw");
        // v4+: a first join gets MEMBER_ID_REQUIRED with the id to use.
        let r: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 9, &join_req("", "range"));
        assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED");
        let id = r.member_id.to_string();
        assert!(id.starts_with("compat-test-"), "{id}");
        // An unknown member id is refused.
        let r: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 9, &join_req("nobody", "range"));
        assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID");
        let r: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 9, &join_req(&id, "range"));
        assert_eq!(r.error_code, 0);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.leader.as_str(), id);
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.members.len(), 1);
        assert_eq!(&r.members[0].metadata[..], b"meta");
        // A second member offering only another protocol cannot join.
        let r2: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 5, &join_req("", "roundrobin"));
        assert_eq!(r2.error_code, 23, "INCONSISTENT_GROUP_PROTOCOL");
        // Session timeout outside the broker's bounds.
        let r3: JoinGroupResponse = raw.call(
            ApiKey::JoinGroup,
            9,
            &join_req("", "range").with_session_timeout_ms(1000),
        );
        assert_eq!(r3.error_code, 26, "INVALID_SESSION_TIMEOUT");
        // A group id longer than the records' int16-length strings (possible in flexible versions).
        let long: JoinGroupResponse = raw.call(
            ApiKey::JoinGroup,
            9,
            &join_req("", "range").with_group_id(GroupId(sbytes(&"g".repeat(40_000)))),
        );
        assert_eq!(long.error_code, 24, "INVALID_GROUP_ID");
        // Sync with a stale generation, then properly: an empty assignment is valid bytes.
        let sync = |gen: i32| {
            SyncGroupRequest::default()
                .with_group_id(GroupId(sbytes("raw")))
                .with_generation_id(gen)
                .with_member_id(sbytes(&id))
                .with_protocol_type(Some(sbytes("consumer")))
                .with_protocol_name(Some(sbytes("range")))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(sbytes(&id))
                        .with_assignment(Bytes::new()),
                ])
        };
        let s: SyncGroupResponse = raw.call(ApiKey::SyncGroup, 5, &sync(7));
        assert_eq!(s.error_code, 22, "ILLEGAL_GENERATION");
        let s: SyncGroupResponse = raw.call(ApiKey::SyncGroup, 5, &sync(1));
        assert_eq!(s.error_code, 0);
        assert!(s.assignment.is_empty());
        assert_eq!(s.protocol_name.as_deref(), Some("range"));
        let hb = |gen: i32, member: &str| {
            HeartbeatRequest::default()
                .with_group_id(GroupId(sbytes("raw")))
                .with_generation_id(gen)
                .with_member_id(sbytes(member))
        };
        let h: HeartbeatResponse = raw.call(ApiKey::Heartbeat, 4, &hb(1, &id));
        assert_eq!(h.error_code, 0);
        let h: HeartbeatResponse = raw.call(ApiKey::Heartbeat, 4, &hb(0, &id));
        assert_eq!(h.error_code, 22, "ILLEGAL_GENERATION");
        let h: HeartbeatResponse = raw.call(ApiKey::Heartbeat, 0, &hb(1, "ghost"));
        assert_eq!(h.error_code, 25, "UNKNOWN_MEMBER_ID");
        // Batched leave: one known, one unknown member.
        let leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(sbytes("raw")))
            .with_members(vec![
                leave_group_request::MemberIdentity::default().with_member_id(sbytes(&id)),
                leave_group_request::MemberIdentity::default().with_member_id(sbytes("ghost")),
            ]);
        let l: LeaveGroupResponse = raw.call(ApiKey::LeaveGroup, 5, &leave);
        assert_eq!(l.error_code, 0);
        assert_eq!(
            l.members.iter().map(|m| m.error_code).collect::<Vec<_>>(),
            vec![0, 25]
        );
        let h: HeartbeatResponse = raw.call(ApiKey::Heartbeat, 4, &hb(1, &id));
        assert_eq!(h.error_code, 25, "gone after leaving");
    });
}

pub(crate) fn commit_req(
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(sbytes(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(sbytes(topic)))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(7)
                        .with_committed_metadata(Some(sbytes("täglich \u{1F600}"))),
                ]),
        ])
}

pub(crate) fn fetch_req(group: &str, topic: &str, partition: i32) -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(GroupId(sbytes(group)))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(sbytes(topic)))
                .with_partition_indexes(vec![partition]),
        ]))
}

#[test]
fn raw_commit_and_fetch_round_trip_every_version() {
    bounded(60, || {
        let mut b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic(&b, "ct", 2, &[]);
        wait_coordinator(&mut raw, "gc");
        for v in 2..=9i16 {
            let r: OffsetCommitResponse = raw.call(
                ApiKey::OffsetCommit,
                v,
                &commit_req("gc", "ct", 1, 100 + i64::from(v)),
            );
            assert_eq!(r.topics[0].partitions[0].error_code, 0, "v{v}");
        }
        // A partition that does not exist, and a topic that does not exist.
        let r: OffsetCommitResponse =
            raw.call(ApiKey::OffsetCommit, 9, &commit_req("gc", "ct", 2, 1));
        assert_eq!(
            r.topics[0].partitions[0].error_code, 3,
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        let r: OffsetCommitResponse =
            raw.call(ApiKey::OffsetCommit, 9, &commit_req("gc", "nope", 0, 1));
        assert_eq!(r.topics[0].partitions[0].error_code, 3);
        // A generation for a group that has none.
        let r: OffsetCommitResponse = raw.call(
            ApiKey::OffsetCommit,
            9,
            &commit_req("gc", "ct", 0, 1)
                .with_generation_id_or_member_epoch(3)
                .with_member_id(sbytes("m")),
        );
        assert_eq!(
            r.topics[0].partitions[0].error_code, 69,
            "GROUP_ID_NOT_FOUND from v9"
        );
        let r: OffsetCommitResponse = raw.call(
            ApiKey::OffsetCommit,
            8,
            &commit_req("gc", "ct", 0, 1)
                .with_generation_id_or_member_epoch(3)
                .with_member_id(sbytes("m")),
        );
        assert_eq!(
            r.topics[0].partitions[0].error_code, 22,
            "ILLEGAL_GENERATION before v9"
        );
        let check = |raw: &mut Raw| {
            for v in 1..=7i16 {
                let r: OffsetFetchResponse =
                    raw.call(ApiKey::OffsetFetch, v, &fetch_req("gc", "ct", 1));
                let p = &r.topics[0].partitions[0];
                assert_eq!((p.error_code, p.committed_offset), (0, 109), "v{v}");
                assert_eq!(p.metadata.as_deref(), Some("täglich \u{1F600}"), "v{v}");
                if v >= 5 {
                    assert_eq!(p.committed_leader_epoch, 7, "v{v}");
                }
            }
            // v8+: several groups in one request, an unknown group answers -1 without error.
            let group = |g: &str| {
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(sbytes(g)))
                    .with_member_epoch(-1)
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(TopicName(sbytes("ct")))
                            .with_partition_indexes(vec![0, 1]),
                    ]))
            };
            let req = OffsetFetchRequest::default()
                .with_groups(vec![group("gc"), group("unknown-group")])
                .with_require_stable(true);
            for v in 8..=9i16 {
                let r: OffsetFetchResponse = raw.call(ApiKey::OffsetFetch, v, &req);
                let ps = &r.groups[0].topics[0].partitions;
                assert_eq!(
                    ps.iter().map(|p| p.committed_offset).collect::<Vec<_>>(),
                    vec![-1, 109]
                );
                assert_eq!(ps[1].committed_leader_epoch, 7);
                assert_eq!(ps[1].metadata.as_deref(), Some("täglich \u{1F600}"));
                let unknown = &r.groups[1].topics[0].partitions;
                assert_eq!(
                    (r.groups[1].error_code, unknown[1].committed_offset),
                    (0, -1)
                );
            }
            // All topics (null list).
            let r: OffsetFetchResponse = raw.call(
                ApiKey::OffsetFetch,
                7,
                &OffsetFetchRequest::default()
                    .with_group_id(GroupId(sbytes("gc")))
                    .with_topics(None),
            );
            assert_eq!(r.topics.len(), 1);
            assert_eq!(r.topics[0].partitions.len(), 1);
        };
        check(&mut raw);
        b.kill9_and_restart();
        let mut raw = Raw::connect(&b);
        wait_coordinator(&mut raw, "gc");
        // Right after start the shard may still be loading; retry on COORDINATOR_LOAD_IN_PROGRESS.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r: OffsetFetchResponse =
                raw.call(ApiKey::OffsetFetch, 7, &fetch_req("gc", "ct", 1));
            if r.error_code != 14 {
                break;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(50));
        }
        check(&mut raw);
    });
}

#[test]
fn find_coordinator_batched_and_transaction_keys() {
    bounded(30, || {
        let b = Broker::start_with(&[("OFFSETS_TOPIC_NUM_PARTITIONS", "50")]);
        let mut raw = Raw::connect(&b);
        for key in ["a", "b"] {
            wait_coordinator(&mut raw, key);
        }
        let r: FindCoordinatorResponse = raw.call(
            ApiKey::FindCoordinator,
            6,
            &FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![sbytes("a"), sbytes("b")]),
        );
        assert_eq!(r.coordinators.len(), 2);
        for c in &r.coordinators {
            assert_eq!(
                (c.error_code, c.node_id.0, c.port),
                (0, 1, i32::from(b.port))
            );
        }
        // Transactions: the first lookup creates __transaction_state (COORDINATOR_NOT_AVAILABLE meanwhile).
        let find_txn = |raw: &mut Raw| -> FindCoordinatorResponse {
            raw.call(
                ApiKey::FindCoordinator,
                6,
                &FindCoordinatorRequest::default()
                    .with_key_type(1)
                    .with_coordinator_keys(vec![sbytes("t")]),
            )
        };
        let mut r = find_txn(&mut raw);
        for _ in 0..200 {
            if r.coordinators[0].error_code == 0 {
                break;
            }
            assert_eq!(
                r.coordinators[0].error_code, 15,
                "COORDINATOR_NOT_AVAILABLE"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
            r = find_txn(&mut raw);
        }
        assert_eq!(
            (r.coordinators[0].error_code, r.coordinators[0].node_id.0),
            (0, 1)
        );
        assert!(b.dir.join("__transaction_state-49").is_dir());
        // __consumer_offsets exists, with Kafka's default partition count, compacted as in Kafka.
        assert!(b.dir.join("__consumer_offsets-49").is_dir());
        let mut res = describe_configs_request::DescribeConfigsResource::default();
        res.resource_type = 2;
        res.resource_name = sbytes("__consumer_offsets");
        res.configuration_keys = Some(vec![sbytes("cleanup.policy")]);
        let mut req = DescribeConfigsRequest::default();
        req.resources.push(res);
        let r: DescribeConfigsResponse = raw.call(ApiKey::DescribeConfigs, 4, &req);
        let policy = r.results[0].configs[0]
            .value
            .as_ref()
            .map(|v| v.to_string());
        assert_eq!(policy.as_deref(), Some("compact"));
        // Only the coordinator writes it: a client's produce is INVALID_TOPIC_EXCEPTION (17), as in Kafka.
        let records = crate::common::encode_batch(
            &[(Some(b"k"), b"v")],
            kafka_protocol::records::Compression::None,
        );
        let req = crate::common::build_produce("__consumer_offsets", 1, &[(0, records)]);
        let r: ProduceResponse = raw.call(ApiKey::Produce, 9, &req);
        assert_eq!(r.responses[0].partition_responses[0].error_code, 17);
    });
}

#[test]
fn confluent_kafka_python_subscribe_and_commit() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compat-tests/python/group_confluent.py");
    bounded(120, move || {
        let b = Broker::start_with(FAST);
        let out = Command::new("python3")
            .arg(&script)
            .args(["--bootstrap", &b.bootstrap()])
            .output()
            .expect("python3");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "group_confluent.py failed:\n{text}");
    });
}

#[test]
fn java_client_subscribe_and_commit_sync() {
    bounded(200, || {
        let b = Broker::start_with(FAST);
        run_java("GroupCommit.java", &b, &["--protocol", "classic"]);
    });
}

#[test]
fn shutdown_answers_a_waiting_join_at_once() {
    bounded(60, || {
        // The default 3 s initial delay holds the first join of a new group.
        let mut b = Broker::start();
        let mut raw = Raw::connect(&b);
        wait_coordinator(&mut raw, "raw");
        let waiting = std::thread::spawn(move || {
            let r: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 3, &join_req("", "range"));
            r.error_code
        });
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        assert_eq!(b.sigterm(), Some(0));
        assert!(
            start.elapsed() < Duration::from_millis(2500),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            waiting.join().unwrap(),
            16,
            "NOT_COORDINATOR: look for the coordinator again"
        );
    });
}

#[test]
fn kafkajs_subscribe_and_commit() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("compat-tests/js/group_kafkajs.js");
    bounded(120, move || {
        let b = Broker::start_with(FAST);
        let out = Command::new("node")
            .arg(&script)
            .args(["--bootstrap", &b.bootstrap()])
            .output()
            .expect("node");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "group_kafkajs.js failed:\n{text}");
    });
}
