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

use kafka_protocol::messages::*;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::message::Message;

use crate::common::{bounded, Broker, Raw};
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
        let mut child = Command::new("kcat")
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
