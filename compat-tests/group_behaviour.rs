//! Classic-group behaviour with real clients: static membership (KIP-345) with a kcat member killed by SIGKILL
//! and restarted, fenced and removed by instance id; incremental cooperative rebalancing (rdkafka's
//! cooperative-sticky) checked through its rebalance callbacks; a group of four different client libraries;
//! and raw bad input (join storms, members that never sync, oversized metadata, assignments naming strangers).

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::message::Message;

use crate::common::{bounded, run_java, Broker, Raw};
use crate::groups::{produce, sbytes, wait_coordinator, wait_until};
use crate::metadata::create_topic;

const FAST: &[(&str, &str)] = &[("GROUP_INITIAL_REBALANCE_DELAY_MS", "200")];

/// One rebalance callback: revoked (false) or assigned (true), the partitions, the protocol in use.
#[derive(Debug, Clone)]
struct Event {
    assign: bool,
    partitions: Vec<i32>,
    /// rdkafka's rebalance protocol was Cooperative.
    cooperative: bool,
}

/// Records every rebalance callback (rust-rdkafka's pre_rebalance; the default handler then calls
/// incremental_assign/incremental_unassign for the cooperative protocol, assign for the eager one).
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Event>>>);

impl ClientContext for Events {}

impl ConsumerContext for Events {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let (assign, tpl) = match r {
            Rebalance::Assign(t) => (true, t),
            Rebalance::Revoke(t) => (false, t),
            Rebalance::Error(e) => {
                eprintln!("rebalance error: {e}");
                return;
            }
        };
        let mut partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        partitions.sort();
        self.0.lock().unwrap().push(Event {
            assign,
            partitions,
            cooperative: matches!(c.rebalance_protocol(), RebalanceProtocol::Cooperative),
        });
    }
}

/// A subscribed rdkafka consumer on its own thread, with its rebalance events, records and errors.
struct Tracked {
    stop: Arc<AtomicBool>,
    events: Events,
    assigned: Arc<Mutex<Vec<i32>>>,
    seen: Arc<Mutex<Vec<(i32, i64)>>>,
    errors: Arc<Mutex<Vec<String>>>,
    handle: Option<JoinHandle<()>>,
}

impl Tracked {
    fn spawn(b: &Broker, group: &str, topic: &str, extra: &[(&str, &str)]) -> Tracked {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", b.bootstrap())
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("auto.commit.interval.ms", "100")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "300");
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        let events = Events::default();
        let c: BaseConsumer<Events> = cfg.create_with_context(events.clone()).expect("consumer");
        c.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let assigned = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (s, a, n, e) = (stop.clone(), assigned.clone(), seen.clone(), errors.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match c.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => n.lock().unwrap().push((m.partition(), m.offset())),
                    Some(Err(err)) => e.lock().unwrap().push(err.to_string()),
                    None => {}
                }
                if let Ok(tpl) = c.assignment() {
                    let mut parts: Vec<i32> =
                        tpl.elements().iter().map(|e| e.partition()).collect();
                    parts.sort();
                    *a.lock().unwrap() = parts;
                }
            }
            drop(c);
        });
        Tracked {
            stop,
            events,
            assigned,
            seen,
            errors,
            handle: Some(handle),
        }
    }

    fn assigned(&self) -> Vec<i32> {
        self.assigned.lock().unwrap().clone()
    }

    fn seen(&self) -> Vec<(i32, i64)> {
        self.seen.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<Event> {
        self.events.0.lock().unwrap().clone()
    }

    fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// --- static membership ---------------------------------------------------------------------------------------

/// A kcat balanced consumer in its own process with a `group.instance.id`; stdout lines are "partition offset".
struct KcatStatic {
    child: Child,
    lines: Arc<Mutex<Vec<(i32, i64)>>>,
    stderr: Arc<Mutex<String>>,
}

impl KcatStatic {
    fn start(b: &Broker, group: &str, topic: &str, instance: &str) -> KcatStatic {
        KcatStatic::start_with(b, group, topic, instance, &[])
    }

    /// With extra `-X key=value` settings.
    fn start_with(
        b: &Broker,
        group: &str,
        topic: &str,
        instance: &str,
        extra: &[&str],
    ) -> KcatStatic {
        let mut cmd = Command::new("kcat");
        for x in extra {
            cmd.args(["-X", x]);
        }
        let mut child = cmd
            .args(["-b", &b.bootstrap(), "-G", group, topic, "-q"])
            .args(["-f", "%p %o\\n", "-u"])
            .args(["-X", &format!("group.instance.id={instance}")])
            .args([
                "-X",
                "session.timeout.ms=20000",
                "-X",
                "heartbeat.interval.ms=300",
            ])
            .args([
                "-X",
                "auto.offset.reset=earliest",
                "-X",
                "auto.commit.interval.ms=100",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kcat installed");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut it = line.split_whitespace().map(str::parse::<i64>);
                if let (Some(Ok(p)), Some(Ok(o))) = (it.next(), it.next()) {
                    l.lock().unwrap().push((p as i32, o));
                }
            }
        });
        let e = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = e.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        KcatStatic {
            child,
            lines,
            stderr,
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL: no LeaveGroup, no commit
        let _ = self.child.wait();
    }
}

impl Drop for KcatStatic {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The group's members as DescribeGroups (v5) names them: (member id, instance id).
fn describe_members(raw: &mut Raw, group: &str) -> (String, Vec<(String, Option<String>)>) {
    let r: DescribeGroupsResponse = raw.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(sbytes(group))]),
    );
    let g = &r.groups[0];
    let mut members: Vec<(String, Option<String>)> = g
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|i| i.to_string()),
            )
        })
        .collect();
    members.sort();
    (g.group_state.to_string(), members)
}

#[test]
fn static_member_killed_and_restarted_keeps_its_partitions_without_a_rebalance() {
    bounded(120, || {
        let b = Broker::start_with(FAST);
        create_topic(&b, "st", 4, &[]);
        let mut raw = Raw::connect(&b);
        wait_coordinator(&mut raw, "gs");
        let a = Tracked::spawn(
            &b,
            "gs",
            "st",
            &[("group.instance.id", "a"), ("session.timeout.ms", "20000")],
        );
        let mut k = KcatStatic::start(&b, "gs", "st", "b");
        wait_until(30, "two static members with two partitions each", || {
            a.assigned().len() == 2 && describe_members(&mut raw, "gs").1.len() == 2
        });
        std::thread::sleep(Duration::from_millis(500));
        let mine = a.assigned();
        let events_before = a.events().len();
        let (_, before) = describe_members(&mut raw, "gs");
        let old_b = before
            .iter()
            .find(|m| m.1.as_deref() == Some("b"))
            .unwrap()
            .0
            .clone();

        // SIGKILL and restart within the 20 s session timeout, with the same instance id.
        k.kill9();
        let mut k2 = KcatStatic::start(&b, "gs", "st", "b");
        wait_until(20, "the restarted member replaces the old one", || {
            let (state, m) = describe_members(&mut raw, "gs");
            state == "Stable" && m.len() == 2 && !m.iter().any(|(id, _)| *id == old_b)
        });
        // The restarted member consumes its old partitions; the other member saw no rebalance at all.
        produce(&b, "st", 4, 10);
        wait_until(20, "every record read", || {
            a.seen().len() + k2.lines.lock().unwrap().len() >= 40
        });
        std::thread::sleep(Duration::from_millis(300));
        let theirs: BTreeSet<i32> = k2.lines.lock().unwrap().iter().map(|(p, _)| *p).collect();
        let expect: BTreeSet<i32> = (0..4).filter(|p| !mine.contains(p)).collect();
        assert_eq!(
            theirs, expect,
            "the restarted member got its old partitions back"
        );
        assert_eq!(a.assigned(), mine);
        assert_eq!(a.seen().len(), 20);
        assert!(a.seen().iter().all(|(p, _)| mine.contains(p)));
        assert_eq!(
            k2.lines.lock().unwrap().len(),
            20,
            "{}",
            k2.stderr.lock().unwrap()
        );
        assert_eq!(
            a.events().len(),
            events_before,
            "the other member was not rebalanced: {:?}",
            a.events()
        );

        // A second live process with the same instance id fences the first.
        let k3 = KcatStatic::start(&b, "gs", "st", "b");
        wait_until(20, "the older process to be fenced", || {
            let err = k2.stderr.lock().unwrap().to_lowercase();
            err.contains("fenced") || k2.child.try_wait().ok().flatten().is_some()
        });
        let err = k2.stderr.lock().unwrap().clone();
        assert!(err.to_lowercase().contains("fenced"), "kcat said: {err}");
        drop(k2);
        produce(&b, "st", 4, 5);
        wait_until(20, "the newest process consumes", || {
            k3.lines.lock().unwrap().len() >= 10
        });
        assert_eq!(
            a.events().len(),
            events_before,
            "still no rebalance for the other member"
        );

        // LeaveGroup naming only the instance id removes the static member at once (not after 20 s).
        drop(k3);
        let leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(sbytes("gs")))
            .with_members(vec![leave_group_request::MemberIdentity::default()
                .with_member_id(sbytes(""))
                .with_group_instance_id(Some(sbytes("b")))]);
        let l: LeaveGroupResponse = raw.call(ApiKey::LeaveGroup, 4, &leave);
        assert_eq!((l.error_code, l.members[0].error_code), (0, 0));
        let took = wait_until(
            15,
            "the remaining member to own all four partitions",
            || a.assigned().len() == 4,
        );
        assert!(took < Duration::from_secs(10), "{took:?}");
        let l: LeaveGroupResponse = raw.call(ApiKey::LeaveGroup, 4, &leave);
        assert_eq!(l.members[0].error_code, 25, "UNKNOWN_MEMBER_ID once gone");
        a.close();
    });
}

#[test]
fn static_cooperative_member_restart_does_not_rebalance_although_its_metadata_changed() {
    bounded(90, || {
        // A restarted cooperative-sticky member no longer lists owned partitions in its subscription metadata;
        // Kafka rebalances a Stable group for a static rejoin only if the selected protocol would change.
        let b = Broker::start_with(FAST);
        create_topic(&b, "stc", 4, &[]);
        let mut raw = Raw::connect(&b);
        wait_coordinator(&mut raw, "gsc");
        let coop = "partition.assignment.strategy=cooperative-sticky";
        let a = Tracked::spawn(
            &b,
            "gsc",
            "stc",
            &[
                ("group.instance.id", "a"),
                ("session.timeout.ms", "20000"),
                ("partition.assignment.strategy", "cooperative-sticky"),
            ],
        );
        let mut k = KcatStatic::start_with(&b, "gsc", "stc", "b", &[coop]);
        wait_until(30, "two static members with two partitions each", || {
            a.assigned().len() == 2 && describe_members(&mut raw, "gsc").1.len() == 2
        });
        // A third member comes and goes, so the kcat member rejoins while it owns partitions: its subscription
        // metadata now lists them, and after its restart it will not.
        let c = Tracked::spawn(
            &b,
            "gsc",
            "stc",
            &[("partition.assignment.strategy", "cooperative-sticky")],
        );
        wait_until(30, "three members", || {
            c.assigned().len() == 1 || c.assigned().len() == 2
        });
        c.close();
        wait_until(30, "two members with two partitions each again", || {
            a.assigned().len() == 2 && describe_members(&mut raw, "gsc").1.len() == 2
        });
        std::thread::sleep(Duration::from_millis(1500));
        let mine = a.assigned();
        let events_before = a.events();
        let old_b = describe_members(&mut raw, "gsc")
            .1
            .into_iter()
            .find(|m| m.1.as_deref() == Some("b"))
            .unwrap()
            .0;
        k.kill9();
        let k2 = KcatStatic::start_with(&b, "gsc", "stc", "b", &[coop]);
        wait_until(20, "the restarted member replaces the old one", || {
            let (state, m) = describe_members(&mut raw, "gsc");
            state == "Stable" && m.len() == 2 && !m.iter().any(|(id, _)| *id == old_b)
        });
        produce(&b, "stc", 4, 10);
        wait_until(20, "every record read", || {
            a.seen().len() + k2.lines.lock().unwrap().len() >= 40
        });
        std::thread::sleep(Duration::from_millis(1000));
        let theirs: BTreeSet<i32> = k2.lines.lock().unwrap().iter().map(|(p, _)| *p).collect();
        assert_eq!(
            theirs,
            (0..4)
                .filter(|p| !mine.contains(p))
                .collect::<BTreeSet<i32>>()
        );
        assert_eq!(a.assigned(), mine);
        assert_eq!(
            a.events().len(),
            events_before.len(),
            "no rebalance round reached the other member: {:?}",
            a.events()
        );
        a.close();
    });
}

// --- cooperative-sticky ---------------------------------------------------------------------------------------

/// Partitions revoked from a member in `events`.
fn revoked(events: &[Event]) -> BTreeSet<i32> {
    events
        .iter()
        .filter(|e| !e.assign)
        .flat_map(|e| e.partitions.clone())
        .collect()
}

#[test]
fn cooperative_sticky_moves_only_the_partitions_that_change_owner() {
    bounded(150, || {
        let b = Broker::start_with(FAST);
        create_topic(&b, "coop", 6, &[]);
        let coop = [("partition.assignment.strategy", "cooperative-sticky")];
        let mut members: Vec<Tracked> = Vec::new();
        let mut produced = 0usize;
        let total_seen = |ms: &[Tracked]| ms.iter().map(|m| m.seen().len()).sum::<usize>();
        let mut closed_seen: Vec<(i32, i64)> = Vec::new();
        for step in 0..4 {
            // Before the step: who owns what, and where each member's event list stands.
            let owned: Vec<BTreeSet<i32>> = members
                .iter()
                .map(|m| m.assigned().into_iter().collect())
                .collect();
            let marks: Vec<usize> = members.iter().map(|m| m.events().len()).collect();
            if step < 3 {
                members.push(Tracked::spawn(&b, "gc", "coop", &coop));
            } else {
                let last = members.pop().unwrap();
                closed_seen.extend(last.seen());
                last.close();
            }
            let n = members.len();
            wait_until(
                40,
                &format!("step {step}: {n} members share 6 partitions"),
                || {
                    let mut all: Vec<i32> = members.iter().flat_map(|m| m.assigned()).collect();
                    all.sort();
                    all == vec![0, 1, 2, 3, 4, 5]
                        && members.iter().all(|m| m.assigned().len() == 6 / n)
                },
            );
            std::thread::sleep(Duration::from_millis(1500));
            // Still settled after the extra cooperative round.
            let mut all: Vec<i32> = members.iter().flat_map(|m| m.assigned()).collect();
            all.sort();
            assert_eq!(all, vec![0, 1, 2, 3, 4, 5], "step {step}");
            for (i, m) in members.iter().enumerate().take(owned.len()) {
                let now: BTreeSet<i32> = m.assigned().into_iter().collect();
                let ev = m.events();
                let gone: BTreeSet<i32> = owned[i].difference(&now).copied().collect();
                let rev = revoked(&ev[marks[i]..]);
                assert!(
                    rev.is_subset(&gone),
                    "step {step}: member {i} had {:?} revoked but only {gone:?} moved away: {:?}",
                    rev,
                    &ev[marks[i]..]
                );
                assert!(ev.iter().all(|e| e.cooperative), "{ev:?}");
            }
            // Records produced now are read once, by the partition's current owner.
            produce(&b, "coop", 6, 10);
            produced += 60;
            wait_until(30, &format!("step {step}: {produced} records read"), || {
                total_seen(&members) + closed_seen.len() >= produced
            });
            // Let auto-commit store the positions before ownership changes again.
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut count: HashMap<(i32, i64), usize> = HashMap::new();
        for k in members.iter().flat_map(|m| m.seen()).chain(closed_seen) {
            *count.entry(k).or_default() += 1;
        }
        assert_eq!(count.len(), produced);
        assert!(count.values().all(|c| *c == 1), "a record was read twice");
        for m in &members {
            let ev = m.events();
            assert!(ev.iter().any(|e| e.assign), "{ev:?}");
            assert!(
                m.errors.lock().unwrap().is_empty(),
                "{:?}",
                m.errors.lock().unwrap()
            );
        }
        for m in members {
            m.close();
        }
    });
}

// --- bad input (raw) -----------------------------------------------------------------------------------------

/// Sends every request on one connection without waiting (pipelined), then reads the answers in order.
fn pipeline<Req, Resp>(raw: &mut Raw, api: ApiKey, version: i16, reqs: &[Req]) -> Vec<Resp>
where
    Req: Encodable + HeaderVersion,
    Resp: Decodable + HeaderVersion,
{
    let mut frames = Vec::new();
    for r in reqs {
        let body = raw.encode_request(api, version, r);
        frames.extend_from_slice(&(body.len() as i32).to_be_bytes());
        frames.extend_from_slice(&body);
    }
    std::io::Write::write_all(&mut raw.stream, &frames).expect("write");
    (0..reqs.len())
        .map(|_| {
            let mut f = raw.read_frame().expect("response");
            kafka_protocol::messages::ResponseHeader::decode(
                &mut f,
                api.response_header_version(version),
            )
            .expect("header");
            Resp::decode(&mut f, version).expect("decode")
        })
        .collect()
}

fn join(group: &str, member: &str, rebalance_ms: i32, metadata: Bytes) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(sbytes(group)))
        .with_session_timeout_ms(6000)
        .with_rebalance_timeout_ms(rebalance_ms)
        .with_member_id(sbytes(member))
        .with_protocol_type(sbytes("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(sbytes("range"))
        .with_metadata(metadata)])
}

fn sync(group: &str, member: &str, gen: i32, assignments: &[(&str, Bytes)]) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(sbytes(group)))
        .with_generation_id(gen)
        .with_member_id(sbytes(member))
        .with_protocol_type(Some(sbytes("consumer")))
        .with_protocol_name(Some(sbytes("range")))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(sbytes(m))
                        .with_assignment(a.clone())
                })
                .collect(),
        )
}

/// A member id for `group` (the MEMBER_ID_REQUIRED round trip).
fn new_id(raw: &mut Raw, group: &str) -> String {
    let r: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 9, &join(group, "", 2000, Bytes::new()));
    assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED");
    r.member_id.to_string()
}

/// Joins with the given ids concurrently (one connection each) and returns their answers, in id order.
fn join_all(b: &Broker, group: &str, ids: &[String], rebalance_ms: i32) -> Vec<JoinGroupResponse> {
    let handles: Vec<_> = ids
        .iter()
        .map(|id| {
            let (mut raw, group, id) = (Raw::connect(b), group.to_string(), id.clone());
            std::thread::spawn(move || -> JoinGroupResponse {
                raw.call(
                    ApiKey::JoinGroup,
                    9,
                    &join(&group, &id, rebalance_ms, Bytes::new()),
                )
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn join_storm_is_refused_past_the_pending_bound_and_group_max_size() {
    bounded(90, || {
        let b = Broker::start_with(&[
            ("GROUP_INITIAL_REBALANCE_DELAY_MS", "500"),
            ("GROUP_MAX_SIZE", "50"),
        ]);
        let mut raw = Raw::connect(&b);
        wait_coordinator(&mut raw, "storm");
        let rss_before = b.rss_bytes();
        // 10,050 first joins, pipelined: 10,000 member ids are handed out (MEMBER_ID_REQUIRED), then the
        // group's bound on ids not yet used answers GROUP_MAX_SIZE_REACHED.
        let mut ids = Vec::new();
        let mut refused = 0;
        for _ in 0..(10_050 / 450 + 1) {
            let reqs = vec![join("storm", "", 2000, Bytes::from_static(b"m")); 450];
            for r in pipeline::<_, JoinGroupResponse>(&mut raw, ApiKey::JoinGroup, 9, &reqs) {
                match r.error_code {
                    79 => ids.push(r.member_id.to_string()),
                    81 => refused += 1,
                    e => panic!("unexpected error {e}"),
                }
            }
        }
        assert_eq!(ids.len(), 10_000);
        assert_eq!(refused, 10_350 - 10_000);
        // Rejoining with 200 of the ids: group.max.size (50) admit the first ones, the rest are refused.
        let reqs: Vec<JoinGroupRequest> = ids[..200]
            .iter()
            .map(|id| join("storm", id, 2000, Bytes::from_static(b"m")))
            .collect();
        let answers: Vec<JoinGroupResponse> = pipeline(&mut raw, ApiKey::JoinGroup, 9, &reqs);
        let admitted: Vec<&JoinGroupResponse> =
            answers.iter().filter(|r| r.error_code == 0).collect();
        assert_eq!(admitted.len(), 50);
        assert_eq!(answers.iter().filter(|r| r.error_code == 81).count(), 150);
        // The admitted ones formed generation 1 once the rebalance timeout gave up on the unused ids.
        assert!(admitted.iter().all(|r| r.generation_id == 1));
        let leader = admitted
            .iter()
            .find(|r| r.leader == r.member_id)
            .expect("a leader");
        assert_eq!(leader.members.len(), 50);
        let grew = b.rss_bytes().saturating_sub(rss_before);
        assert!(grew < 64 << 20, "RSS grew by {grew} bytes");
        // The group still works: the leader's sync makes it Stable.
        let s: SyncGroupResponse = raw.call(
            ApiKey::SyncGroup,
            5,
            &sync("storm", &leader.member_id, 1, &[]),
        );
        assert_eq!(s.error_code, 0);
        let (state, members) = describe_members(&mut raw, "storm");
        assert_eq!((state.as_str(), members.len()), ("Stable", 50));
    });
}

#[test]
fn leader_that_never_syncs_is_removed_and_the_group_recovers() {
    bounded(60, || {
        let b = Broker::start_with(&[("GROUP_INITIAL_REBALANCE_DELAY_MS", "300")]);
        let mut raw = Raw::connect(&b);
        wait_coordinator(&mut raw, "ns");
        let ids = vec![new_id(&mut raw, "ns"), new_id(&mut raw, "ns")];
        let answers = join_all(&b, "ns", &ids, 1500);
        assert!(answers
            .iter()
            .all(|r| r.error_code == 0 && r.generation_id == 1));
        let leader = answers[0].leader.to_string();
        let follower = ids.iter().find(|id| **id != leader).unwrap().clone();
        // The follower syncs and waits for the leader's assignment, which never comes.
        let start = std::time::Instant::now();
        let s: SyncGroupResponse = raw.call(ApiKey::SyncGroup, 5, &sync("ns", &follower, 1, &[]));
        assert_eq!(
            s.error_code, 27,
            "REBALANCE_IN_PROGRESS once the leader is dropped"
        );
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(1200) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        // The follower rejoins alone and leads generation 2; the silent leader is gone.
        let r: JoinGroupResponse = raw.call(
            ApiKey::JoinGroup,
            9,
            &join("ns", &follower, 1500, Bytes::new()),
        );
        assert_eq!((r.error_code, r.generation_id), (0, 2));
        assert_eq!(r.leader.as_str(), follower);
        assert_eq!(r.members.len(), 1);
        let s: SyncGroupResponse = raw.call(
            ApiKey::SyncGroup,
            5,
            &sync(
                "ns",
                &follower,
                2,
                &[(&follower, Bytes::from_static(b"all"))],
            ),
        );
        assert_eq!((s.error_code, &s.assignment[..]), (0, &b"all"[..]));
        let h: HeartbeatResponse = raw.call(
            ApiKey::Heartbeat,
            4,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(sbytes("ns")))
                .with_generation_id(1)
                .with_member_id(sbytes(&leader)),
        );
        assert_eq!(h.error_code, 25, "UNKNOWN_MEMBER_ID for the removed leader");
    });
}

#[test]
fn assignment_naming_strangers_and_oversized_metadata() {
    bounded(60, || {
        let b = Broker::start_with(&[("GROUP_INITIAL_REBALANCE_DELAY_MS", "300")]);
        let mut raw = Raw::connect(&b);
        wait_coordinator(&mut raw, "big");
        // Metadata over the 1 MiB per-member bound is refused at once.
        let r: JoinGroupResponse = raw.call(
            ApiKey::JoinGroup,
            9,
            &join("big", "", 2000, Bytes::from(vec![1u8; (1 << 20) + 1])),
        );
        assert_eq!(r.error_code, 42, "INVALID_REQUEST");
        let ids = vec![new_id(&mut raw, "big"), new_id(&mut raw, "big")];
        let answers = join_all(&b, "big", &ids, 5000);
        let leader = answers[0].leader.to_string();
        let follower = ids.iter().find(|id| **id != leader).unwrap().clone();
        // An assignment over 1 MiB is refused and changes nothing.
        let s: SyncGroupResponse = raw.call(
            ApiKey::SyncGroup,
            5,
            &sync(
                "big",
                &leader,
                1,
                &[(&leader, Bytes::from(vec![0u8; (1 << 20) + 1]))],
            ),
        );
        assert_eq!(s.error_code, 42, "INVALID_REQUEST");
        // The leader names members that are not (or no longer) in the group: ignored, as Kafka does; the
        // follower it did not mention gets a valid empty assignment.
        let mut fraw = Raw::connect(&b);
        let f = follower.clone();
        let fsync = std::thread::spawn(move || -> SyncGroupResponse {
            fraw.call(ApiKey::SyncGroup, 5, &sync("big", &f, 1, &[]))
        });
        std::thread::sleep(Duration::from_millis(200));
        let s: SyncGroupResponse = raw.call(
            ApiKey::SyncGroup,
            5,
            &sync(
                "big",
                &leader,
                1,
                &[
                    (&leader, Bytes::from_static(b"mine")),
                    ("left-long-ago", Bytes::from_static(b"x")),
                    ("never-joined", Bytes::from(vec![9u8; 1000])),
                ],
            ),
        );
        assert_eq!((s.error_code, &s.assignment[..]), (0, &b"mine"[..]));
        let fs = fsync.join().unwrap();
        assert_eq!(fs.error_code, 0);
        assert!(fs.assignment.is_empty());
        let (state, members) = describe_members(&mut raw, "big");
        assert_eq!((state.as_str(), members.len()), ("Stable", 2));
    });
}

#[test]
fn commits_to_partitions_that_do_not_exist_fail_per_partition() {
    bounded(60, || {
        let b = Broker::start();
        create_topic(&b, "cx", 2, &[]);
        let mut raw = Raw::connect(&b);
        wait_coordinator(&mut raw, "gx");
        let part = |p: i32, o: i64| {
            offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(o)
        };
        let topic = |t: &str, ps: Vec<offset_commit_request::OffsetCommitRequestPartition>| {
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(sbytes(t)))
                .with_partitions(ps)
        };
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(sbytes("gx")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                topic("cx", vec![part(0, 5), part(2, 5), part(-1, 5), part(1, 6)]),
                topic("no-such-topic", vec![part(0, 1)]),
            ]);
        let r: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 8, &req);
        let codes: Vec<Vec<(i32, i16)>> = r
            .topics
            .iter()
            .map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.error_code))
                    .collect()
            })
            .collect();
        assert_eq!(
            codes,
            vec![vec![(0, 0), (2, 3), (-1, 3), (1, 0)], vec![(0, 3)]]
        );
        // Only the valid ones are stored.
        let f: OffsetFetchResponse = raw.call(
            ApiKey::OffsetFetch,
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(sbytes("gx")))
                .with_topics(None),
        );
        let mut stored: Vec<(String, i32, i64)> = f
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.to_string(), p.partition_index, p.committed_offset))
            })
            .collect();
        stored.sort();
        assert_eq!(stored, vec![("cx".into(), 0, 5), ("cx".into(), 1, 6)]);
    });
}

// --- four client libraries in one group ----------------------------------------------------------------------

/// A group member run by a client script (python/group_member.py, js/group_member_kafkajs.js): its latest
/// "assigned" line, its "record" lines, whether it printed "closed".
struct ScriptMember {
    name: &'static str,
    child: Child,
    assigned: Arc<Mutex<Vec<i32>>>,
    records: Arc<Mutex<Vec<(i32, i64)>>>,
    closed: Arc<AtomicBool>,
}

impl ScriptMember {
    fn start(name: &'static str, b: &Broker, topic: &str, group: &str) -> ScriptMember {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("compat-tests");
        let mut cmd = if name == "kafkajs" {
            let mut c = Command::new("node");
            c.arg(root.join("js/group_member_kafkajs.js"));
            c
        } else {
            let mut c = Command::new("python3");
            c.arg(root.join("python/group_member.py"))
                .args(["--client", name]);
            c
        };
        let mut child = cmd
            .args([
                "--bootstrap",
                &b.bootstrap(),
                "--topic",
                topic,
                "--group",
                group,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("client script");
        let assigned = Arc::new(Mutex::new(Vec::new()));
        let records = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let (a, r, c) = (assigned.clone(), records.clone(), closed.clone());
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut words = line.split_whitespace();
                match words.next() {
                    Some("assigned") => {
                        *a.lock().unwrap() = words
                            .next()
                            .unwrap_or("")
                            .split(',')
                            .filter_map(|p| p.parse().ok())
                            .collect();
                    }
                    Some("record") => {
                        let p = words.next().and_then(|p| p.parse().ok());
                        let o = words.next().and_then(|o| o.parse().ok());
                        if let (Some(p), Some(o)) = (p, o) {
                            r.lock().unwrap().push((p, o));
                        }
                    }
                    Some("closed") => c.store(true, Ordering::Relaxed),
                    _ => eprintln!("member: {line}"),
                }
            }
        });
        ScriptMember {
            name,
            child,
            assigned,
            records,
            closed,
        }
    }

    fn assigned(&self) -> Vec<i32> {
        self.assigned.lock().unwrap().clone()
    }

    fn records(&self) -> Vec<(i32, i64)> {
        self.records.lock().unwrap().clone()
    }

    /// SIGTERM: the script closes its consumer cleanly (commit, LeaveGroup) and prints "closed".
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for ScriptMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every partition of 0..n owned by exactly one of `members`, each owning at least one.
fn spread(members: &[&ScriptMember], n: i32) -> bool {
    let all: Vec<Vec<i32>> = members.iter().map(|m| m.assigned()).collect();
    let mut flat: Vec<i32> = all.iter().flatten().copied().collect();
    flat.sort();
    all.iter().all(|a| !a.is_empty()) && flat == (0..n).collect::<Vec<_>>()
}

#[test]
fn kafka_python_aiokafka_kafkajs_and_confluent_share_one_group() {
    bounded(150, || {
        let b = Broker::start_with(FAST);
        create_topic(&b, "mixed", 8, &[]);
        let mut members: Vec<ScriptMember> = ["kafka-python", "aiokafka", "kafkajs", "confluent"]
            .into_iter()
            .map(|name| ScriptMember::start(name, &b, "mixed", "gmix"))
            .collect();
        let describe = |ms: &[&ScriptMember]| -> String {
            ms.iter()
                .map(|m| format!("{}: {:?}", m.name, m.assigned()))
                .collect::<Vec<_>>()
                .join("; ")
        };
        {
            let all: Vec<&ScriptMember> = members.iter().collect();
            wait_until(60, "four libraries sharing 8 partitions", || {
                spread(&all, 8)
            });
            std::thread::sleep(Duration::from_millis(1000));
            assert!(spread(&all, 8), "{}", describe(&all));
            eprintln!("assignments: {}", describe(&all));
            // The protocol every member offered.
            let mut raw = Raw::connect(&b);
            let r: DescribeGroupsResponse = raw.call(
                ApiKey::DescribeGroups,
                5,
                &DescribeGroupsRequest::default().with_groups(vec![GroupId(sbytes("gmix"))]),
            );
            let g = &r.groups[0];
            assert_eq!(
                (g.protocol_data.as_str(), g.members.len()),
                ("roundrobin", 4)
            );
            let mut clients: Vec<String> =
                g.members.iter().map(|m| m.client_id.to_string()).collect();
            clients.sort();
            assert_eq!(
                clients,
                ["aiokafka", "confluent", "kafka-python", "kafkajs"]
            );
        }
        let check_once = |ms: &[&ScriptMember], expected: usize| {
            let mut count: HashMap<(i32, i64), usize> = HashMap::new();
            for m in ms {
                for r in m.records() {
                    *count.entry(r).or_default() += 1;
                }
            }
            assert_eq!(count.len(), expected, "{}", describe(ms));
            assert!(count.values().all(|n| *n == 1), "a record was read twice");
        };
        produce(&b, "mixed", 8, 20);
        {
            let all: Vec<&ScriptMember> = members.iter().collect();
            wait_until(30, "160 records read", || {
                all.iter().map(|m| m.records().len()).sum::<usize>() >= 160
            });
            std::thread::sleep(Duration::from_millis(500));
            check_once(&all, 160);
            for m in &all {
                let mine = m.assigned();
                assert!(
                    m.records().iter().all(|(p, _)| mine.contains(p)),
                    "{} read a partition it does not own",
                    m.name
                );
            }
        }
        // Let auto-commit store every position, then stop one member cleanly: its partitions move.
        std::thread::sleep(Duration::from_millis(1500));
        let mut gone = members.remove(0);
        let gone_parts = gone.assigned();
        gone.terminate();
        wait_until(30, "the stopped member to close", || {
            gone.closed.load(Ordering::Relaxed)
        });
        let rest: Vec<&ScriptMember> = members.iter().collect();
        wait_until(40, "three libraries sharing 8 partitions", || {
            spread(&rest, 8)
        });
        std::thread::sleep(Duration::from_millis(1000));
        assert!(spread(&rest, 8), "{}", describe(&rest));
        produce(&b, "mixed", 8, 20);
        let mut all = rest.clone();
        all.push(&gone);
        wait_until(30, "320 records read", || {
            all.iter().map(|m| m.records().len()).sum::<usize>() >= 320
        });
        std::thread::sleep(Duration::from_millis(500));
        check_once(&all, 320);
        // The stopped member's partitions were read on by the others.
        let later: BTreeSet<i32> = rest
            .iter()
            .flat_map(|m| m.records())
            .map(|(p, _)| p)
            .filter(|p| gone_parts.contains(p))
            .collect();
        assert_eq!(later, gone_parts.iter().copied().collect::<BTreeSet<i32>>());
    });
}

#[test]
fn java_client_cooperative_sticky_moves_only_the_partitions_that_change_owner() {
    bounded(200, || {
        let b = Broker::start_with(FAST);
        let text = run_java("CooperativeGroup.java", &b, &[]);
        assert!(text.contains("CooperativeGroup: ok"), "{text}");
    });
}
