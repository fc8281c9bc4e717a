//! Consumer group figures: failover (a member's SIGKILL to its partitions being consumed by another member),
//! rebalance time (10 members joining a 100-partition topic until every member has a stable assignment),
//! OffsetCommit rates (sync commits from one consumer, batched, and a raw pipelined client), and a subscribed
//! consumer's throughput next to the assign() consumer's.
//!
//! Every group figure takes a [`Protocol`]: the classic protocol, or KIP-848's consumer protocol, whose session
//! timeout and heartbeat interval are the broker's (`group_consumer_session_timeout_ms`,
//! `group_consumer_heartbeat_interval_ms`) rather than the client's, so a figure's session setting is a broker
//! setting ([`broker_env`]) as well as a client one.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::{create_topic, Count, MB};

/// The group protocol a figure is measured with.
#[derive(Clone, Copy, Debug)]
pub enum Protocol {
    /// JoinGroup/SyncGroup/Heartbeat with client-side assignment.
    Classic,
    /// KIP-848 (`group.protocol=consumer`): ConsumerGroupHeartbeat with broker-side assignment.
    Consumer,
}

impl Protocol {
    /// Every protocol the figures are measured with.
    pub const ALL: &'static [Protocol] = &[Protocol::Classic, Protocol::Consumer];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Classic => "classic",
            Protocol::Consumer => "consumer",
        }
    }

    /// librdkafka settings for a member with this protocol and session timeout.
    fn configure(self, cfg: &mut ClientConfig, session_ms: u32) {
        cfg.set("group.protocol", self.name());
        match self {
            Protocol::Classic => {
                cfg.set("session.timeout.ms", session_ms.to_string()).set(
                    "heartbeat.interval.ms",
                    heartbeat_ms(session_ms).to_string(),
                );
            }
            // librdkafka refuses both settings with this protocol: the broker's (see `broker_env`) apply.
            Protocol::Consumer => {}
        }
    }
}

/// The heartbeat interval the figures pair with a session timeout, for both protocols: a sixth of it (at least
/// 100 ms), so a member misses several heartbeats before its session ends.
pub fn heartbeat_ms(session_ms: u32) -> u32 {
    (session_ms / 6).max(100)
}

/// The broker settings the group figures run with: no initial rebalance delay (Kafka's default 3 s would be
/// most of every rebalance figure; it is a knob, not protocol cost) and 1 s minimum session timeouts (classic
/// and consumer protocol; Kafka's consumer-protocol minimum is 45 s) so the failover figure can use a short one.
pub const BROKER_ENV: &[(&str, &str)] = &[
    ("VLTAVA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
    ("VLTAVA_GROUP_MIN_SESSION_TIMEOUT_MS", "1000"),
    ("VLTAVA_GROUP_CONSUMER_MIN_SESSION_TIMEOUT_MS", "1000"),
];

/// [`BROKER_ENV`] plus the consumer protocol's session timeout `session_ms` and heartbeat interval
/// [`heartbeat_ms`]: the broker-side twin of what [`Protocol::configure`] sets on a classic client.
pub fn broker_env(session_ms: u32) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = BROKER_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push((
        "VLTAVA_GROUP_CONSUMER_SESSION_TIMEOUT_MS".into(),
        session_ms.to_string(),
    ));
    env.push((
        "VLTAVA_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS".into(),
        heartbeat_ms(session_ms).to_string(),
    ));
    env
}

/// A subscribed rdkafka consumer polling on its own thread.
struct Member {
    stop: Arc<AtomicBool>,
    assigned: Arc<Mutex<Vec<i32>>>,
    seen: Arc<Mutex<Vec<(i32, Instant)>>>,
    handle: Option<JoinHandle<()>>,
}

impl Member {
    fn spawn(bootstrap: &str, group: &str, topic: &str, p: Protocol, session_ms: u32) -> Member {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        p.configure(&mut cfg, session_ms);
        let c: BaseConsumer = cfg.create().expect("consumer");
        c.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let assigned = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, a, n) = (stop.clone(), assigned.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(20)) {
                    n.lock().unwrap().push((m.partition(), Instant::now()));
                }
                if let Ok(tpl) = c.assignment() {
                    let mut parts: Vec<i32> =
                        tpl.elements().iter().map(|e| e.partition()).collect();
                    parts.sort();
                    *a.lock().unwrap() = parts;
                }
            }
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
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !check() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    t0.elapsed()
}

/// A member in its own process, so SIGKILL leaves it no chance to leave the group: kcat for the classic
/// protocol; for the consumer protocol confluent-kafka's (compat-tests/python/consumer848_member.py), as
/// Debian's kcat (librdkafka 2.0) predates KIP-848. Returns once the member owns partitions (consumer) or
/// after 300 ms (kcat says nothing), so it joins before the rdkafka member.
fn killable_member(
    bootstrap: &str,
    group: &str,
    topic: &str,
    p: Protocol,
    session_ms: u32,
) -> Child {
    match p {
        Protocol::Classic => {
            let child = Command::new("kcat")
                .args(["-b", bootstrap, "-G", group, topic, "-q", "-o", "end"])
                .args(["-X", "group.protocol=classic"])
                .args(["-X", &format!("session.timeout.ms={session_ms}")])
                .args([
                    "-X",
                    &format!("heartbeat.interval.ms={}", heartbeat_ms(session_ms)),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("kcat installed");
            std::thread::sleep(Duration::from_millis(300));
            child
        }
        Protocol::Consumer => {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("compat-tests/python/consumer848_member.py");
            let mut child = Command::new("python3")
                .arg(script)
                .args(["--bootstrap", bootstrap, "--group", group, "--topic", topic])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 with confluent-kafka");
            let (tx, rx) = std::sync::mpsc::channel();
            let out = child.stdout.take().expect("piped stdout");
            // Drains its stdout until it dies; says when it owns partitions.
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if line.starts_with("assigned ") && line != "assigned 0" {
                        let _ = tx.send(());
                    }
                }
            });
            if rx.recv_timeout(Duration::from_secs(60)).is_err() {
                let _ = child.kill();
                panic!("the confluent-kafka member got no assignment within 60 s");
            }
            child
        }
    }
}

/// (a) Failover: a member in its own process ([`killable_member`]) and an rdkafka member share 2 partitions;
/// the former is killed with SIGKILL while a producer writes to its partition every 5 ms; the figure is the
/// time from the kill to the first record of that partition reaching the surviving member. With the consumer
/// protocol the broker must have been started with [`broker_env`]`(session_ms)`. Returns one figure per run.
pub fn failover(bootstrap: &str, p: Protocol, session_ms: u32, runs: usize) -> Vec<Duration> {
    let topic = format!("bench-failover-{}", p.name());
    create_topic(bootstrap, &topic, 2);
    let producer: ThreadedProducer<Count> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create_with_context(Count::default())
        .expect("producer");
    let mut out = Vec::new();
    for run in 0..runs {
        let group = format!("failover-{}-{run}", p.name());
        let mut victim = killable_member(bootstrap, &group, &topic, p, session_ms);
        let m = Member::spawn(bootstrap, &group, &topic, p, session_ms);
        wait_for(60, "two members with one partition each", || {
            m.assigned().len() == 1
        });
        std::thread::sleep(Duration::from_millis(500));
        let mine = m.assigned()[0];
        let theirs = 1 - mine;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (tp, pr) = (topic.clone(), &producer);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let _ = pr.send(BaseRecord::<(), _>::to(&tp).partition(theirs).payload("x"));
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            std::thread::sleep(Duration::from_millis(200));
            let killed = Instant::now();
            let _ = victim.kill();
            let _ = victim.wait();
            wait_for(
                60,
                "the survivor consumes the dead member's partition",
                || {
                    m.seen
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|(part, at)| *part == theirs && *at > killed)
                },
            );
            let first = m
                .seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(part, at)| *part == theirs && *at > killed)
                .map(|(_, at)| *at)
                .min()
                .expect("seen");
            out.push(first - killed);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let _ = producer.flush(Duration::from_secs(10));
    out
}

/// (b) Rebalance time: `members` consumers subscribe at once to a topic of `partitions` partitions; the figure
/// is the time from their creation until every member has a non-empty assignment, the assignments are disjoint
/// and cover every partition, and that has held for 500 ms (reported without those 500 ms). With the consumer
/// protocol the broker must have been started with [`broker_env`]`(session_ms)`.
pub fn rebalance(
    bootstrap: &str,
    p: Protocol,
    session_ms: u32,
    members: usize,
    partitions: i32,
    run: usize,
) -> Duration {
    let topic = format!("bench-rebalance-{}-{session_ms}-{run}", p.name());
    create_topic(bootstrap, &topic, partitions);
    let group = format!("rebalance-{}-{session_ms}-{run}", p.name());
    let t0 = Instant::now();
    let ms: Vec<Member> = (0..members)
        .map(|_| Member::spawn(bootstrap, &group, &topic, p, session_ms))
        .collect();
    let settled = |ms: &[Member]| {
        let all: Vec<Vec<i32>> = ms.iter().map(Member::assigned).collect();
        let union: BTreeSet<i32> = all.iter().flatten().copied().collect();
        all.iter().all(|a| !a.is_empty())
            && all.iter().map(Vec::len).sum::<usize>() == partitions as usize
            && union.len() == partitions as usize
    };
    loop {
        wait_for(120, "a complete assignment", || settled(&ms));
        let at = t0.elapsed();
        let held = Instant::now();
        while held.elapsed() < Duration::from_millis(500) && settled(&ms) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if settled(&ms) {
            return at;
        }
    }
}

/// (c) Commit rates: (sync commits of one partition per second from a subscribed rdkafka consumer, partitions
/// per second when each sync commit carries all `partitions`).
pub fn commits(bootstrap: &str, p: Protocol, partitions: i32, secs: f64) -> (f64, f64) {
    let topic = format!("bench-commit-{}", p.name());
    create_topic(bootstrap, &topic, partitions);
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", format!("commit-{}", p.name()))
        .set("enable.auto.commit", "false");
    p.configure(&mut cfg, 10_000);
    let c: BaseConsumer = cfg.create().expect("consumer");
    c.subscribe(&[&topic]).expect("subscribe");
    let t0 = Instant::now();
    while c.assignment().map(|a| a.count()).unwrap_or(0) < partitions as usize {
        let _ = c.poll(Duration::from_millis(20));
        assert!(t0.elapsed() < Duration::from_secs(60), "no assignment");
    }
    let rate = |batch: i32| {
        let t0 = Instant::now();
        let mut n = 0u64;
        while t0.elapsed().as_secs_f64() < secs {
            let mut tpl = TopicPartitionList::new();
            for part in 0..batch {
                tpl.add_partition_offset(&topic, part, Offset::Offset(n as i64))
                    .unwrap();
            }
            c.commit(&tpl, CommitMode::Sync).expect("commit");
            n += 1;
        }
        n as f64 * f64::from(batch) / t0.elapsed().as_secs_f64()
    };
    let single = rate(1);
    let batched = rate(partitions);
    (single, batched)
}

/// Raw pipelined OffsetCommit v8 requests per second (one partition of `topic`, generation -1, a group without
/// members, so no group protocol is involved) with 32 in flight on one connection.
pub fn raw_commits(bootstrap: &str, topic: &str, secs: f64) -> f64 {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    const IN_FLIGHT: u64 = 32;
    let s = |x: &str| StrBytes::from_string(x.to_string());
    let frame = |i: u64| {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("raw-commit")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(i as i64),
                    ]),
            ]);
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(ApiKey::OffsetCommit as i16)
            .with_request_api_version(8)
            .with_correlation_id(i as i32)
            .encode(&mut body, 2)
            .unwrap();
        req.encode(&mut body, 8).unwrap();
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&body);
        f
    };
    let mut conn = TcpStream::connect(bootstrap).unwrap();
    conn.set_nodelay(true).unwrap();
    let read = |conn: &mut TcpStream| {
        let mut size = [0u8; 4];
        conn.read_exact(&mut size).unwrap();
        let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
        conn.read_exact(&mut buf).unwrap();
        let mut buf = Bytes::from(buf);
        ResponseHeader::decode(&mut buf, 1).unwrap();
        let r = OffsetCommitResponse::decode(&mut buf, 8).unwrap();
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    };
    let t0 = Instant::now();
    let (mut sent, mut answered) = (0u64, 0u64);
    while t0.elapsed().as_secs_f64() < secs || answered < sent {
        while sent - answered < IN_FLIGHT && t0.elapsed().as_secs_f64() < secs {
            conn.write_all(&frame(sent)).unwrap();
            sent += 1;
        }
        read(&mut conn);
        answered += 1;
    }
    answered as f64 / t0.elapsed().as_secs_f64()
}

/// (d) A subscribed consumer reading `n` records of a topic already on disk: (MB/s from subscribe to the last
/// record, MB/s from its first record to its last, the time from subscribe to the first record).
pub fn subscribed_consume(
    bootstrap: &str,
    topic: &str,
    n: usize,
    p: Protocol,
) -> (f64, f64, Duration) {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-subscribed-{}", p.name()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760");
    p.configure(&mut cfg, 10_000);
    let c: BaseConsumer = cfg.create().unwrap();
    c.subscribe(&[topic]).unwrap();
    let t_sub = Instant::now();
    let mut first = None;
    let (mut got, mut bytes) = (0usize, 0usize);
    while got < n {
        if let Some(m) = c.poll(Duration::from_secs(5)) {
            let m = m.unwrap();
            first.get_or_insert_with(Instant::now);
            bytes += m.payload().map(|p| p.len()).unwrap_or(0);
            got += 1;
        }
        assert!(
            t_sub.elapsed() < Duration::from_secs(300),
            "stalled at {got}"
        );
    }
    let first = first.expect("records");
    let mb = bytes as f64 / MB;
    (
        mb / t_sub.elapsed().as_secs_f64(),
        mb / first.elapsed().as_secs_f64(),
        first - t_sub,
    )
}
