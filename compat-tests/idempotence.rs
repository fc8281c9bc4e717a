//! Idempotent producers: InitProducerId, duplicates answered with their original offsets, sequence gaps and old
//! epochs refused (raw frames), DescribeProducers and its CLI, and rdkafka's idempotent producer writing every
//! record exactly once and in order through connections a proxy keeps cutting and across a broker kill -9.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::Offset;

use crate::common::{binary, bounded, build_produce, create_topic_raw, Broker, Raw};
use crate::metadata::create_topic;
use crate::produce_consume::{assigned_consumer, consume_n, Acks};

/// One uncompressed batch of `count` records from producer `pid`/`epoch` starting at sequence `seq`.
pub(crate) fn idem_batch(pid: i64, epoch: i16, seq: i32, count: i32, transactional: bool) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let recs: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional,
            control: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: seq + i,
            timestamp: now,
            key: Some(Bytes::from(format!("k{}", seq + i))),
            value: Some(Bytes::from(format!("v{}", seq + i))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn init_producer_id(raw: &mut Raw, version: i16, txn: Option<&str>) -> InitProducerIdResponse {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = txn.map(|t| TransactionalId(StrBytes::from_string(t.into())));
    req.transaction_timeout_ms = 60_000;
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    raw.call(ApiKey::InitProducerId, version, &req)
}

/// Produces one batch to partition 0 and returns (error code, base offset).
fn produce(raw: &mut Raw, topic: &str, batch: Bytes) -> (i16, i64) {
    let r: ProduceResponse = raw.call(ApiKey::Produce, 9, &build_produce(topic, -1, &[(0, batch)]));
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn describe_producers(
    raw: &mut Raw,
    topic: &str,
) -> Vec<describe_producers_response::ProducerState> {
    let mut t = describe_producers_request::TopicRequest::default();
    t.name = TopicName(StrBytes::from_string(topic.into()));
    t.partition_indexes = vec![0, 0];
    let mut req = DescribeProducersRequest::default();
    req.topics = vec![t.clone(), t];
    let r: DescribeProducersResponse = raw.call(ApiKey::DescribeProducers, 0, &req);
    assert_eq!(r.topics.len(), 1, "repeated topics are answered once");
    assert_eq!(r.topics[0].partitions.len(), 1, "and repeated partitions");
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.active_producers.clone()
}

#[test]
fn raw_duplicates_gaps_and_epochs() {
    bounded(60, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "idem", 1);
        // Every version hands out fresh ids with epoch 0.
        let mut ids = Vec::new();
        for v in 0..=5 {
            let r = init_producer_id(&mut raw, v, None);
            assert_eq!((r.error_code, r.producer_epoch), (0, 0), "v{v}");
            ids.push(r.producer_id.0);
        }
        ids.dedup();
        assert_eq!(ids.len(), 6, "ids are unique: {ids:?}");
        // A transactional id: answered by the transaction coordinator once `__transaction_state` exists
        // (created by this first request; NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE / LOAD_IN_PROGRESS
        // until then, with no producer id).
        let mut r = init_producer_id(&mut raw, 4, Some("txn"));
        for _ in 0..200 {
            if !matches!(r.error_code, 14..=16) {
                break;
            }
            assert_eq!(r.producer_id.0, -1);
            std::thread::sleep(std::time::Duration::from_millis(50));
            r = init_producer_id(&mut raw, 4, Some("txn"));
        }
        assert_eq!((r.error_code, r.producer_epoch), (0, 0));
        assert!(!ids.contains(&r.producer_id.0), "a fresh producer id");
        let r = init_producer_id(&mut raw, 4, Some(""));
        assert_eq!(
            r.error_code, 42,
            "an empty transactional id is INVALID_REQUEST, as in Kafka"
        );

        let pid = ids[0];
        assert_eq!(
            produce(&mut raw, "idem", idem_batch(pid, 0, 0, 2, false)),
            (0, 0)
        );
        assert_eq!(
            produce(&mut raw, "idem", idem_batch(pid, 0, 2, 3, false)),
            (0, 2)
        );
        // Retries of either batch: the original offsets, nothing appended.
        assert_eq!(
            produce(&mut raw, "idem", idem_batch(pid, 0, 0, 2, false)),
            (0, 0)
        );
        assert_eq!(
            produce(&mut raw, "idem", idem_batch(pid, 0, 2, 3, false)),
            (0, 2)
        );
        // A gap.
        let (code, _) = produce(&mut raw, "idem", idem_batch(pid, 0, 9, 1, false));
        assert_eq!(code, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
        // The next batch lands right after: the duplicates took no offsets.
        assert_eq!(
            produce(&mut raw, "idem", idem_batch(pid, 0, 5, 1, false)),
            (0, 5)
        );
        // A new epoch must start at 0; then the old epoch is fenced.
        let (code, _) = produce(&mut raw, "idem", idem_batch(pid, 1, 6, 1, false));
        assert_eq!(code, 45, "a new epoch not at sequence 0");
        assert_eq!(
            produce(&mut raw, "idem", idem_batch(pid, 1, 0, 1, false)),
            (0, 6)
        );
        let (code, _) = produce(&mut raw, "idem", idem_batch(pid, 0, 6, 1, false));
        assert_eq!(code, 47, "INVALID_PRODUCER_EPOCH");
        // Transactional records in a request without a transactional id: refused as a whole, as Kafka does.
        let (code, _) = produce(&mut raw, "idem", idem_batch(ids[1], 0, 0, 1, true));
        assert_eq!(code, 53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED");

        let producers = describe_producers(&mut raw, "idem");
        assert_eq!(producers.len(), 1);
        let p = &producers[0];
        assert_eq!(
            (p.producer_id.0, p.producer_epoch, p.last_sequence),
            (pid, 1, 0)
        );
        assert_eq!((p.coordinator_epoch, p.current_txn_start_offset), (-1, -1));
        assert!(p.last_timestamp > 0);

        // The CLI prints the same.
        let out = std::process::Command::new(binary())
            .args(["producer", "describe", "idem", "0", "-b", &b.bootstrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with(&pid.to_string()))
            .unwrap_or_else(|| panic!("no line for {pid} in {text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[..3], &[pid.to_string().as_str(), "1", "0"]);
        assert_eq!(&cols[4..], &["-1", "-1"]);
        let out = std::process::Command::new(binary())
            .args(["producer", "describe", "nope", "0", "-b", &b.bootstrap()])
            .output()
            .unwrap();
        assert!(!out.status.success());
    });
}

/// Producer ids are never reused after a kill -9, and the dedupe window survives it (snapshot + replay).
#[test]
fn raw_state_and_ids_survive_kill9() {
    bounded(60, || {
        let mut b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "idem", 1);
        let pid = init_producer_id(&mut raw, 4, None).producer_id.0;
        for seq in 0..6 {
            assert_eq!(
                produce(&mut raw, "idem", idem_batch(pid, 0, seq, 1, false)),
                (0, i64::from(seq))
            );
        }
        b.kill9_and_restart();
        let mut raw = Raw::connect(&b);
        let next = init_producer_id(&mut raw, 4, None).producer_id.0;
        assert!(next > pid, "id {next} after {pid}: never reused");
        // Each of the last five batches is still a duplicate, the sixth-last is out of window.
        for seq in 1..6 {
            assert_eq!(
                produce(&mut raw, "idem", idem_batch(pid, 0, seq, 1, false)),
                (0, i64::from(seq))
            );
        }
        assert_eq!(
            produce(&mut raw, "idem", idem_batch(pid, 0, 0, 1, false)).0,
            45
        );
        assert_eq!(
            produce(&mut raw, "idem", idem_batch(pid, 0, 6, 1, false)),
            (0, 6)
        );
        // And after a clean restart (the state comes from the shutdown snapshot).
        b.restart();
        let mut raw = Raw::connect(&b);
        assert_eq!(
            produce(&mut raw, "idem", idem_batch(pid, 0, 6, 1, false)),
            (0, 6)
        );
        assert_eq!(
            produce(&mut raw, "idem", idem_batch(pid, 0, 7, 1, false)),
            (0, 7)
        );
    });
}

/// A TCP proxy that forwards to `target` and, while `chaos` is on, cuts each connection after a budget of
/// bytes (either direction) between `every / 2` and `every * 3 / 2`, partway through a chunk: requests and
/// responses are lost mid-frame, so the client retries batches the broker may already have appended.
struct Proxy {
    port: u16,
    chaos: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(target: String, every: i64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let chaos = Arc::new(AtomicBool::new(true));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (c2, k2) = (chaos.clone(), cuts.clone());
        std::thread::spawn(move || {
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let budget = Arc::new(AtomicI64::new(every / 2 + (seed % every as u64) as i64));
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (from, to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    let ends = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let (budget, chaos, cuts) = (budget.clone(), c2.clone(), k2.clone());
                    std::thread::spawn(move || pipe(from, to, ends, &budget, &chaos, &cuts));
                }
            }
        });
        Proxy { port, chaos, cuts }
    }
}

fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    ends: (TcpStream, TcpStream),
    budget: &AtomicI64,
    chaos: &AtomicBool,
    cuts: &AtomicUsize,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if chaos.load(Ordering::Relaxed) && budget.fetch_sub(n as i64, Ordering::AcqRel) < n as i64
        {
            let _ = to.write_all(&buf[..n / 2]);
            cuts.fetch_add(1, Ordering::Relaxed);
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = ends.0.shutdown(Shutdown::Both);
    let _ = ends.1.shutdown(Shutdown::Both);
}

fn idempotent_producer(bootstrap: &str) -> (ThreadedProducer<Acks>, Acks) {
    let acks = Acks::default();
    let p = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("batch.num.messages", "40")
        .set("message.timeout.ms", "120000")
        .set("retry.backoff.ms", "20")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create_with_context(acks.clone())
        .expect("producer");
    (p, acks)
}

/// Sends `n` keyed records numbered 0..n (keys spread over the partitions) and waits for all of them.
fn send_all(p: &ThreadedProducer<Acks>, topic: &str, n: usize) {
    for i in 0..n {
        let value = format!("{i:08}-{}", "x".repeat(100));
        let key = format!("k{}", i % 17);
        let mut rec = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// Reads the whole topic and checks every record 0..n is there exactly once and each partition holds its
/// records in send order.
fn check_exactly_once(b: &Broker, topic: &str, partitions: i32, n: usize) {
    let c = assigned_consumer(b, topic, partitions, Offset::Beginning, &[]);
    let mut total = 0;
    for part in 0..partitions {
        let (_, high) = c
            .fetch_watermarks(topic, part, Duration::from_secs(10))
            .unwrap();
        total += high as usize;
    }
    assert_eq!(
        total, n,
        "the log holds {total} records for {n} sent: duplicates or losses"
    );
    let got = consume_n(&c, n, 60);
    let mut seen = BTreeMap::new();
    for (part, recs) in got {
        let mut last = -1i64;
        for (offset, _, value, _, _) in recs {
            let i: i64 = std::str::from_utf8(&value[..8]).unwrap().parse().unwrap();
            assert!(
                i > last,
                "partition {part}: record {i} after {last} (offset {offset})"
            );
            last = i;
            assert!(seen.insert(i, offset).is_none(), "record {i} twice");
        }
    }
    assert_eq!(seen.len(), n);
    assert_eq!(*seen.keys().next_back().unwrap(), n as i64 - 1);
}

#[test]
fn rdkafka_exactly_once_through_dropped_connections() {
    bounded(240, || {
        let mut b = Broker::start();
        let proxy = Proxy::start(b.bootstrap(), 48 * 1024);
        // The broker advertises the proxy, so every connection of the client goes through it.
        b.set_env("ADVERTISE", &format!("127.0.0.1:{}", proxy.port));
        b.restart();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "chaos", 3);
        let n = 6000;
        let (p, acks) = idempotent_producer(&format!("127.0.0.1:{}", proxy.port));
        send_all(&p, "chaos", n);
        p.flush(Duration::from_secs(180)).unwrap();
        drop(p);
        let errors = acks.1.lock().unwrap().clone();
        assert!(errors.is_empty(), "delivery failures: {errors:?}");
        assert_eq!(acks.0.lock().unwrap().len(), n);
        let cuts = proxy.cuts.load(Ordering::Relaxed);
        assert!(
            cuts >= 5,
            "only {cuts} connections were cut: the test proves nothing"
        );
        proxy.chaos.store(false, Ordering::Relaxed);
        check_exactly_once(&b, "chaos", 3, n);
    });
}

#[test]
fn rdkafka_exactly_once_across_kill9() {
    bounded(240, || {
        let mut b = Broker::start();
        // Small segments, so producer snapshots are written at rolls and the restart replays from one.
        create_topic(&b, "crash-idem", 3, &[("internal.segment.bytes", "65536")]);
        let n = 30_000;
        let (p, acks) = idempotent_producer(&b.bootstrap());
        let p = Arc::new(p);
        let sender = {
            let p = p.clone();
            std::thread::spawn(move || send_all(&p, "crash-idem", n))
        };
        let start = Instant::now();
        while acks.0.lock().unwrap().len() < n / 5 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no progress before the kill"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        b.kill9_and_restart();
        sender.join().unwrap();
        p.flush(Duration::from_secs(180)).unwrap();
        let errors = acks.1.lock().unwrap().clone();
        assert!(errors.is_empty(), "delivery failures: {errors:?}");
        assert_eq!(acks.0.lock().unwrap().len(), n);
        let dir = b.partition_dir("crash-idem", 0);
        let snapshots = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".snapshot"))
            .count();
        assert!(snapshots > 0, "no producer snapshot in {}", dir.display());
        check_exactly_once(&b, "crash-idem", 3, n);
    });
}
