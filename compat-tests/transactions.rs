//! Transactions with real clients against the real binary: committed records visible and aborted ones
//! invisible to read_committed consumers of rdkafka, confluent-kafka-python, kafka-python and the Java client
//! (and visible to read_uncommitted), the last stable offset holding back records after an open transaction,
//! consume-transform-produce with `send_offsets_to_transaction` across a kill -9 of the application (Java and
//! confluent-kafka-python), zombie fencing, a hanging transaction aborted by its timeout, and transaction and
//! producer state across a broker kill -9.
//!
//! The client programs are `python/txn_client.py` and `java/Transactions.java` (see CLIENT-SCRIPTS.md); they
//! check what they read themselves and exit 0 only if everything matched.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::common::{
    bounded, java_command, python_command, run_client, run_java, Broker, Raw, Spawned,
};
use crate::metadata::create_topic;
use crate::produce_consume::{assigned_consumer, producer, Acks};

const READ_UNCOMMITTED: i8 = 0;
const READ_COMMITTED: i8 = 1;

/// A broker for transaction tests: one `__transaction_state` partition, created at the first transactional
/// request (Kafka's 50 cost ~150 fsyncs; `java_read_committed` runs with them).
fn txn_broker() -> Broker {
    Broker::start_with(&[("TRANSACTION_STATE_LOG_NUM_PARTITIONS", "1")])
}

/// An rdkafka transactional producer with `transactional.id` = `id`, initialised (InitProducerId through the
/// transaction coordinator).
fn txn_producer(b: &Broker, id: &str, extra: &[(&str, &str)]) -> (ThreadedProducer<Acks>, Acks) {
    let mut cfg = vec![("transactional.id", id)];
    cfg.extend_from_slice(extra);
    let (p, acks) = producer(b, &cfg);
    p.init_transactions(Duration::from_secs(20))
        .expect("init_transactions");
    (p, acks)
}

fn send(p: &ThreadedProducer<Acks>, topic: &str, partition: i32, value: &str) {
    p.send(
        BaseRecord::to(topic)
            .partition(partition)
            .key(value)
            .payload(value),
    )
    .map_err(|(e, _)| e)
    .expect("send");
}

/// Begins a transaction on `p` and sends `n` records to `topic`, record `i` as `to(i)` = (partition, value).
fn begin_and_send(
    p: &ThreadedProducer<Acks>,
    topic: &str,
    n: i32,
    to: impl Fn(i32) -> (i32, String),
) {
    p.begin_transaction().unwrap();
    for i in 0..n {
        let (partition, value) = to(i);
        send(p, topic, partition, &value);
    }
}

/// Value -> (partition, offset) of every record the producer was told was written.
fn acked(acks: &Acks) -> BTreeMap<String, (i32, i64)> {
    let errors = acks.1.lock().unwrap().clone();
    assert!(errors.is_empty(), "delivery failures: {errors:?}");
    acks.0
        .lock()
        .unwrap()
        .iter()
        .map(|(at, v)| (String::from_utf8_lossy(v).into_owned(), *at))
        .collect()
}

/// The latest offset of a partition by ListOffsets v7 at an isolation level: the high watermark for
/// read_uncommitted, the last stable offset for read_committed.
fn latest(b: &Broker, topic: &str, partition: i32, isolation: i8) -> i64 {
    let mut raw = Raw::connect(b);
    let mut p = list_offsets_request::ListOffsetsPartition::default();
    p.partition_index = partition;
    p.timestamp = -1;
    let mut t = list_offsets_request::ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.into()));
    t.partitions.push(p);
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.isolation_level = isolation;
    req.topics.push(t);
    let r: ListOffsetsResponse = raw.call(ApiKey::ListOffsets, 7, &req);
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "ListOffsets {topic}/{partition}");
    p.offset
}

/// DescribeProducers for one partition: (producer id, epoch, current transaction start offset) of each.
fn producers(b: &Broker, topic: &str, partition: i32) -> Vec<(i64, i32, i64)> {
    let mut raw = Raw::connect(b);
    let mut t = describe_producers_request::TopicRequest::default();
    t.name = TopicName(StrBytes::from_string(topic.into()));
    t.partition_indexes = vec![partition];
    let mut req = DescribeProducersRequest::default();
    req.topics = vec![t];
    let r: DescribeProducersResponse = raw.call(ApiKey::DescribeProducers, 0, &req);
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.active_producers
        .iter()
        .map(|s| {
            (
                s.producer_id.0,
                s.producer_epoch,
                s.current_txn_start_offset,
            )
        })
        .collect()
}

fn consumer(b: &Broker, topic: &str, partitions: i32, isolation: &str) -> BaseConsumer {
    assigned_consumer(
        b,
        topic,
        partitions,
        Offset::Beginning,
        &[("isolation.level", isolation)],
    )
}

/// Polls until every record of `want` (value -> (partition, offset)) arrived into `got`, then `quiet` more;
/// asserts `got` then holds exactly `want`'s records at their offsets, each once, in offset order per
/// partition.
fn read_exactly(
    c: &BaseConsumer,
    want: &BTreeMap<String, (i32, i64)>,
    got: &mut Vec<(i32, i64, String)>,
    quiet: Duration,
    label: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let poll = |got: &mut Vec<(i32, i64, String)>| match c.poll(Duration::from_millis(100)) {
        None => {}
        Some(Err(e)) => panic!("{label}: consume error {e}"),
        Some(Ok(m)) => got.push((
            m.partition(),
            m.offset(),
            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        )),
    };
    while !want.keys().all(|v| got.iter().any(|(_, _, g)| g == v)) {
        assert!(
            Instant::now() < deadline,
            "{label}: got {} of {} records in 15 s: {got:?}",
            got.len(),
            want.len()
        );
        poll(got);
    }
    let until = Instant::now() + quiet;
    while Instant::now() < until {
        poll(got);
    }
    let mut values = BTreeSet::new();
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o, v) in got.iter() {
        let Some(at) = want.get(v) else {
            panic!("{label}: {v} at {p}/{o} must stay invisible")
        };
        assert_eq!(
            *at,
            (*p, *o),
            "{label}: {v} at {p}/{o}, producer told {at:?}"
        );
        assert!(values.insert(v.clone()), "{label}: {v} read twice");
        if let Some(prev) = last.insert(*p, *o) {
            assert!(prev < *o, "{label}: partition {p}: offset {o} after {prev}");
        }
    }
}

/// rdkafka's transactional producer: committed visible, aborted invisible to a read_committed consumer and
/// visible to a read_uncommitted one; an open transaction holds back everything after its first record
/// (ListOffsets read_committed = its first offset, the consumer's watermark too) until it commits; every
/// control batch takes one offset.
#[test]
fn rdkafka_committed_visible_aborted_invisible() {
    bounded(60, || {
        let b = txn_broker();
        let topic = "txn-vis";
        create_topic(&b, topic, 2, &[]);
        let (txn, txn_acks) = txn_producer(&b, "rd-txn", &[]);
        let (plain, plain_acks) = producer(&b, &[("acks", "all")]);
        let t = Duration::from_secs(20);
        // Partition 0 gets every even record: c 0..4, commit marker 5, n 6..7, a 8..12, abort marker 13,
        // o 14..16, late 17: HW 18 and LSO 14 while the last transaction is open.
        begin_and_send(&txn, topic, 10, |i| (i % 2, format!("c{i}")));
        txn.commit_transaction(t).expect("commit");
        for i in 0..4 {
            send(&plain, topic, i % 2, &format!("n{i}"));
        }
        plain.flush(t).unwrap();
        begin_and_send(&txn, topic, 10, |i| (i % 2, format!("a{i}")));
        // Flushed first, so the aborted records are in the log (read_uncommitted must see them).
        txn.flush(t).unwrap();
        txn.abort_transaction(t).expect("abort");
        begin_and_send(&txn, topic, 6, |i| (i % 2, format!("o{i}")));
        txn.flush(t).unwrap();
        for i in 0..2 {
            send(&plain, topic, i, &format!("late{i}"));
        }
        plain.flush(t).unwrap();
        let mut all = acked(&txn_acks);
        all.extend(acked(&plain_acks));
        assert_eq!(all.len(), 32);
        assert_eq!(all["c8"], (0, 4));
        assert_eq!(all["n0"], (0, 6), "one offset for the commit marker");
        assert_eq!(all["a0"], (0, 8));
        assert_eq!(all["o0"], (0, 14), "one offset for the abort marker");
        assert_eq!(all["late0"], (0, 17));
        for p in 0..2 {
            assert_eq!(latest(&b, topic, p, READ_UNCOMMITTED), 18, "HW of {p}");
            assert_eq!(
                latest(&b, topic, p, READ_COMMITTED),
                14,
                "LSO of {p} with a transaction open from 14"
            );
        }
        let committed = |v: &String| v.starts_with('c') || v.starts_with('n');
        let mut want: BTreeMap<String, (i32, i64)> = all
            .iter()
            .filter(|(v, _)| committed(v))
            .map(|(v, at)| (v.clone(), *at))
            .collect();
        let rc = consumer(&b, topic, 2, "read_committed");
        let mut got = Vec::new();
        read_exactly(
            &rc,
            &want,
            &mut got,
            Duration::from_millis(1500),
            "read_committed, transaction open",
        );
        let (_, high) = rc.fetch_watermarks(topic, 0, t).unwrap();
        assert_eq!(
            high, 14,
            "a read_committed consumer's high watermark is the LSO"
        );
        txn.commit_transaction(t).expect("commit");
        want.extend(
            all.iter()
                .filter(|(v, _)| v.starts_with('o') || v.starts_with("late"))
                .map(|(v, at)| (v.clone(), *at)),
        );
        read_exactly(
            &rc,
            &want,
            &mut got,
            Duration::from_millis(1000),
            "read_committed, committed",
        );
        for p in 0..2 {
            assert_eq!(latest(&b, topic, p, READ_UNCOMMITTED), 19, "HW of {p}");
            assert_eq!(latest(&b, topic, p, READ_COMMITTED), 19, "LSO of {p}");
            let (_, high) = rc.fetch_watermarks(topic, p, t).unwrap();
            assert_eq!(high, 19);
        }
        // The consumer's position is past the last record it got (offset 17 on each partition) and past the
        // commit marker after it (librdkafka moves it over control batches).
        let pos = rc.position().unwrap();
        for p in 0..2 {
            let at = pos.find_partition(topic, p).unwrap().offset();
            assert!(at == Offset::Offset(19), "position of {p}: {at:?}");
        }
        let ru = consumer(&b, topic, 2, "read_uncommitted");
        read_exactly(
            &ru,
            &all,
            &mut Vec::new(),
            Duration::from_millis(1000),
            "read_uncommitted",
        );
    });
}

fn run_txn_script(client: &str) {
    let client = client.to_string();
    bounded(90, move || {
        let b = txn_broker();
        create_topic(&b, "txn-py", 2, &[]);
        let out = run_client(python_command(
            "txn_client.py",
            &b,
            &[
                "read-committed",
                "--client",
                &client,
                "--topic",
                "txn-py",
                "--timeout",
                "75",
            ],
        ));
        println!("{out}");
    });
}

#[test]
fn confluent_python_read_committed() {
    run_txn_script("confluent");
}

#[test]
fn kafka_python_read_committed() {
    run_txn_script("kafka-python");
}

#[test]
fn java_read_committed() {
    bounded(90, || {
        let b = Broker::start();
        create_topic(&b, "txn-java", 2, &[]);
        println!(
            "{}",
            run_java(
                "Transactions.java",
                &b,
                &["--mode", "read-committed", "--topic", "txn-java"]
            )
        );
    });
}

/// Zombie fencing with rdkafka: a second producer with the same transactional.id aborts the first one's open
/// transaction; the first one's commit then fails with a fatal fencing error, and read_committed sees only the
/// second one's records.
#[test]
fn rdkafka_zombie_is_fenced() {
    bounded(60, || {
        let b = txn_broker();
        let topic = "zombie";
        create_topic(&b, topic, 1, &[]);
        let t = Duration::from_secs(20);
        let (old, old_acks) = txn_producer(&b, "zombie-id", &[]);
        begin_and_send(&old, topic, 4, |i| (0, format!("old{i}")));
        old.flush(t).unwrap();
        assert_eq!(acked(&old_acks).len(), 4);
        let (young, young_acks) = txn_producer(&b, "zombie-id", &[]);
        begin_and_send(&young, topic, 4, |i| (0, format!("young{i}")));
        young
            .commit_transaction(t)
            .expect("the new producer commits");
        let err = old
            .commit_transaction(t)
            .expect_err("the fenced producer committed");
        let KafkaError::Transaction(e) = &err else {
            panic!("not a transaction error: {err:?}")
        };
        assert!(e.is_fatal(), "fencing is fatal: {e:?}");
        assert!(
            matches!(
                e.code(),
                RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced
            ),
            "fenced: {e:?}"
        );
        let young_acks = acked(&young_acks);
        // old0..3 at 0..3, their abort marker at 4 (written when the new producer initialised), young 5..8.
        assert_eq!(young_acks["young0"], (0, 5));
        let rc = consumer(&b, topic, 1, "read_committed");
        read_exactly(
            &rc,
            &young_acks,
            &mut Vec::new(),
            Duration::from_millis(1000),
            "read_committed",
        );
        assert_eq!(latest(&b, topic, 0, READ_COMMITTED), 10);
    });
}

#[test]
fn java_zombie_is_fenced() {
    bounded(90, || {
        let b = txn_broker();
        create_topic(&b, "zombie-java", 1, &[]);
        println!(
            "{}",
            run_java(
                "Transactions.java",
                &b,
                &["--mode", "fence", "--topic", "zombie-java"]
            )
        );
    });
}

/// Starts `txn_client.py hang`: a confluent-kafka producer that opens a transaction with `records` records
/// on partition 0 of `topic` and never ends it; returns once it wrote them, with the time it did.
fn hanging_producer(
    b: &Broker,
    topic: &str,
    txn_id: &str,
    timeout_ms: u32,
    records: u32,
) -> (Spawned, Instant) {
    let mut hanger = Spawned::start(python_command(
        "txn_client.py",
        b,
        &[
            "hang",
            "--topic",
            topic,
            "--txn-id",
            txn_id,
            "--timeout-ms",
            &timeout_ms.to_string(),
            "--records",
            &records.to_string(),
        ],
    ));
    hanger.wait_line("produced", 30);
    (hanger, Instant::now())
}

/// A transaction whose producer is killed (kill -9) after writing is aborted by the coordinator once its
/// `transaction.timeout.ms` passes: records written after it become visible to read_committed (the LSO moves
/// on), its own never do.
#[test]
fn hanging_transaction_is_aborted_by_its_timeout() {
    bounded(60, || {
        let b = txn_broker();
        let topic = "hang";
        create_topic(&b, topic, 1, &[]);
        let (mut hanger, produced) = hanging_producer(&b, topic, "hanger", 3000, 5);
        hanger.kill9();
        let (plain, plain_acks) = producer(&b, &[("acks", "all")]);
        for i in 0..3 {
            send(&plain, topic, 0, &format!("after{i}"));
        }
        plain.flush(Duration::from_secs(20)).unwrap();
        let after = acked(&plain_acks);
        assert_eq!(after["after0"], (0, 5));
        let early = produced.elapsed() < Duration::from_millis(2500);
        if early {
            assert_eq!(
                latest(&b, topic, 0, READ_COMMITTED),
                0,
                "LSO at the open transaction"
            );
            let open: Vec<_> = producers(&b, topic, 0)
                .into_iter()
                .filter(|p| p.2 >= 0)
                .collect();
            assert_eq!(open.len(), 1, "one open transaction: {open:?}");
            assert_eq!(open[0].2, 0, "its first offset");
            assert_eq!(latest(&b, topic, 0, READ_UNCOMMITTED), 8);
        } else {
            println!(
                "slow machine: the open-transaction checks skipped, the timeout may have passed"
            );
        }
        let rc = consumer(&b, topic, 1, "read_committed");
        let mut got = Vec::new();
        read_exactly(
            &rc,
            &after,
            &mut got,
            Duration::from_millis(1000),
            "read_committed",
        );
        let waited = produced.elapsed();
        assert!(
            waited < Duration::from_millis(3000 + 6000),
            "the LSO moved on only {waited:?} after the transaction began (timeout 3 s)"
        );
        assert_eq!(latest(&b, topic, 0, READ_COMMITTED), 9, "abort marker at 8");
        assert_eq!(latest(&b, topic, 0, READ_UNCOMMITTED), 9);
        assert!(
            producers(&b, topic, 0).iter().all(|p| p.2 == -1),
            "no open transaction: {:?}",
            producers(&b, topic, 0)
        );
        // A new producer with the transactional id starts cleanly.
        let (again, _) = txn_producer(&b, "hanger", &[]);
        again.begin_transaction().unwrap();
        send(&again, topic, 0, "again");
        again.commit_transaction(Duration::from_secs(20)).unwrap();
        assert_eq!(latest(&b, topic, 0, READ_COMMITTED), 11);
    });
}

/// Transaction and producer state survive a broker kill -9: an aborted transaction stays aborted, a committed
/// one committed; a transaction open at the kill is completed by its (still running) rdkafka producer after
/// the restart, whose next transaction then works too (its sequence state survived); another, whose producer
/// died, is aborted by its timeout after the restart. All of it again after a second kill -9.
#[test]
fn transactions_survive_broker_kill9() {
    bounded(90, || {
        let mut b = txn_broker();
        let topic = "txn-crash";
        create_topic(&b, topic, 1, &[]);
        let t = Duration::from_secs(30);
        let (p, acks) = txn_producer(&b, "survivor", &[("transaction.timeout.ms", "60000")]);
        begin_and_send(&p, topic, 5, |i| (0, format!("c{i}")));
        p.commit_transaction(t).unwrap();
        begin_and_send(&p, topic, 5, |i| (0, format!("a{i}")));
        p.flush(t).unwrap();
        p.abort_transaction(t).unwrap();
        begin_and_send(&p, topic, 5, |i| (0, format!("o{i}")));
        p.flush(t).unwrap();
        // c 0..4, marker 5, a 6..10, marker 11, o 12..16, then the dead producer's 17..19.
        let (mut hanger, produced) = hanging_producer(&b, topic, "dead", 8000, 3);
        hanger.kill9();
        b.kill9_and_restart();
        let restarted = produced.elapsed();
        let open: BTreeSet<i64> = producers(&b, topic, 0)
            .into_iter()
            .map(|p| p.2)
            .filter(|o| *o >= 0)
            .collect();
        if restarted < Duration::from_secs(7) {
            assert_eq!(open, BTreeSet::from([12, 17]), "both open transactions");
            assert_eq!(latest(&b, topic, 0, READ_UNCOMMITTED), 20);
        } else {
            println!("slow restart: the open-transaction checks skipped, the dead one may have timed out");
        }
        assert_eq!(latest(&b, topic, 0, READ_COMMITTED), 12);
        // The surviving producer commits its open transaction through the restarted coordinator.
        let mut tries = 0;
        while let Err(e) = p.commit_transaction(t) {
            match &e {
                KafkaError::Transaction(te) if te.is_retriable() && tries < 5 => tries += 1,
                _ => panic!("commit after the restart: {e:?}"),
            }
        }
        let (plain, plain_acks) = producer(&b, &[("acks", "all")]);
        send(&plain, topic, 0, "late");
        plain.flush(t).unwrap();
        // Its next transaction works: its producer state (epoch, sequence) came back.
        begin_and_send(&p, topic, 3, |i| (0, format!("t{i}")));
        p.commit_transaction(t).unwrap();
        let mut all = acked(&acks);
        all.extend(acked(&plain_acks));
        let visible: BTreeMap<String, (i32, i64)> = all
            .iter()
            .filter(|(v, _)| !v.starts_with('a'))
            .map(|(v, at)| (v.clone(), *at))
            .collect();
        assert_eq!(visible.len(), 5 + 5 + 1 + 3);
        let rc = consumer(&b, topic, 1, "read_committed");
        // Once the dead producer's transaction times out (8 s after it began), everything committed is visible.
        read_exactly(
            &rc,
            &visible,
            &mut Vec::new(),
            Duration::from_millis(500),
            "read_committed after the restart",
        );
        assert!(
            producers(&b, topic, 0).iter().all(|p| p.2 == -1),
            "open transactions left: {:?}",
            producers(&b, topic, 0)
        );
        let end = latest(&b, topic, 0, READ_UNCOMMITTED);
        assert_eq!(latest(&b, topic, 0, READ_COMMITTED), end);
        drop(rc);
        b.kill9_and_restart();
        assert_eq!(latest(&b, topic, 0, READ_COMMITTED), end);
        let rc = consumer(&b, topic, 1, "read_committed");
        read_exactly(
            &rc,
            &visible,
            &mut Vec::new(),
            Duration::from_millis(1000),
            "read_committed after a second restart",
        );
    });
}

/// The Java client (transactions V2: the epoch bumps at every commit) across a broker kill -9: its open
/// transaction commits through the restarted broker, its next one works, the aborted one stays aborted.
#[test]
fn java_transaction_across_broker_kill9() {
    bounded(90, || {
        let mut b = txn_broker();
        let topic = "txn-crash-java";
        create_topic(&b, topic, 1, &[]);
        let mut app = Spawned::start(java_command(
            "Transactions.java",
            &b,
            &["--mode", "crash", "--topic", topic, "--wait-ms", "3000"],
        ));
        app.wait_line("open", 60);
        assert_eq!(latest(&b, topic, 0, READ_COMMITTED), 12, "LSO at o0");
        b.kill9_and_restart();
        assert_eq!(
            latest(&b, topic, 0, READ_COMMITTED),
            12,
            "LSO at o0 after the restart"
        );
        let out = app.wait_success(60);
        assert!(out.contains("Transactions: crash ok"), "{out}");
        let rc = consumer(&b, topic, 1, "read_committed");
        let got: BTreeSet<String> = drain(&rc, 13, "read_committed")
            .into_iter()
            .map(|(_, _, v)| v)
            .collect();
        let want: BTreeSet<String> = ["c", "o"]
            .iter()
            .flat_map(|p| (0..5).map(move |i| format!("{p}{i}")))
            .chain((0..3).map(|i| format!("t{i}")))
            .collect();
        assert_eq!(got, want);
    });
}

/// Aborted transactions interleaved with non-transactional records across many small segments: a
/// read_committed consumer needs the aborted-transaction list of each fetched range (the transaction index),
/// including transactions that began before the offset it starts from; from the beginning and from the middle
/// of an aborted transaction, before and after a broker kill -9.
#[test]
fn aborted_transactions_across_segments_and_kill9() {
    bounded(90, || {
        let mut b = txn_broker();
        let topic = "txn-segments";
        create_topic(&b, topic, 1, &[("internal.segment.bytes", "24576")]);
        let t = Duration::from_secs(20);
        let (txn, txn_acks) = txn_producer(&b, "seg-txn", &[]);
        let (plain, plain_acks) = producer(&b, &[("acks", "all")]);
        let pad = "x".repeat(500);
        for r in 0..10 {
            begin_and_send(&txn, topic, 10, |i| (0, format!("c{r}-{i}-{pad}")));
            txn.commit_transaction(t).unwrap();
            // Records are ~1 KB (key and value), so a round fills about a segment. An aborted transaction with
            // non-transactional records in the middle of it.
            begin_and_send(&txn, topic, 5, |i| (0, format!("a{r}-{i}-{pad}")));
            txn.flush(t).unwrap();
            for i in 0..2 {
                send(&plain, topic, 0, &format!("n{r}-{i}-{pad}"));
            }
            plain.flush(t).unwrap();
            for i in 5..10 {
                send(&txn, topic, 0, &format!("a{r}-{i}-{pad}"));
            }
            txn.flush(t).unwrap();
            txn.abort_transaction(t).unwrap();
        }
        let mut all = acked(&txn_acks);
        all.extend(acked(&plain_acks));
        assert_eq!(all.len(), 10 * 22);
        let segments = crate::common::segment_files(&b.partition_dir(topic, 0));
        assert!(segments >= 5, "only {segments} segments");
        let visible: BTreeMap<String, (i32, i64)> = all
            .iter()
            .filter(|(v, _)| !v.starts_with('a'))
            .map(|(v, at)| (v.clone(), *at))
            .collect();
        // From the middle of round 6's aborted transaction, past its non-transactional records.
        let from = all[&format!("a6-7-{pad}")].1;
        let tail: BTreeMap<String, (i32, i64)> = visible
            .iter()
            .filter(|(_, at)| at.1 >= from)
            .map(|(v, at)| (v.clone(), *at))
            .collect();
        assert_eq!(tail.len(), 3 * 12);
        for round in 0..2 {
            let rc = consumer(&b, topic, 1, "read_committed");
            read_exactly(
                &rc,
                &visible,
                &mut Vec::new(),
                Duration::from_millis(500),
                &format!("read_committed from the beginning, run {round}"),
            );
            let rc = assigned_consumer(
                &b,
                topic,
                1,
                Offset::Offset(from),
                &[("isolation.level", "read_committed")],
            );
            read_exactly(
                &rc,
                &tail,
                &mut Vec::new(),
                Duration::from_millis(500),
                &format!("read_committed from {from}, run {round}"),
            );
            b.kill9_and_restart();
        }
    });
}

/// Consume-transform-produce across a kill -9 of the application (`app` builds its command: the Java
/// program or the confluent-kafka-python script, `stall` = `Some(k)` to stall in the k+1-th transaction):
/// the first instance is killed in a transaction whose records and offsets were sent but not committed; a
/// second with the same transactional.id fences it and finishes. The output read read_committed holds each
/// input once; read_uncommitted also holds the killed transaction's aborted records; the group's committed
/// offsets are the input's end.
fn transform_after_kill9(app: fn(&Broker, Option<u32>) -> std::process::Command) {
    let b = txn_broker();
    create_topic(&b, "ctp-in", 2, &[]);
    create_topic(&b, "ctp-out", 2, &[]);
    let n = 200;
    let (plain, plain_acks) = producer(&b, &[("acks", "all")]);
    for i in 0..n {
        send(&plain, "ctp-in", i % 2, &format!("in-{i:04}"));
    }
    plain.flush(Duration::from_secs(20)).unwrap();
    assert_eq!(acked(&plain_acks).len(), n as usize);
    let mut first = Spawned::start(app(&b, Some(3)));
    first.wait_line("stalled", 60);
    first.kill9();
    let mut second = Spawned::start(app(&b, None));
    let out = second.wait_success(60);
    println!(
        "first instance:\n{}\nsecond:\n{out}",
        first.output.join("\n")
    );
    // The second instance resumes after what the first committed: the stalled transaction's offsets were
    // dropped with it.
    let committed_by_first: u32 = first
        .output
        .iter()
        .filter_map(|l| l.strip_prefix("committed "))
        .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
        .max()
        .unwrap_or(0);
    assert!(
        committed_by_first > 0,
        "the first instance committed nothing"
    );
    let done: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("done ")?.parse().ok())
        .unwrap_or_else(|| panic!("second instance did not finish:\n{out}"));
    assert_eq!(
        done,
        n as u32 - committed_by_first,
        "the second instance processed {done} after the first committed {committed_by_first}"
    );

    let rc = consumer(&b, "ctp-out", 2, "read_committed");
    let got = drain(&rc, n as usize, "read_committed output");
    let mut values = BTreeSet::new();
    for (_, _, v) in &got {
        assert!(
            values.insert(v.clone()),
            "{v} twice in the committed output"
        );
    }
    let want: BTreeSet<String> = (0..n).map(|i| format!("out-in-{i:04}")).collect();
    assert_eq!(values, want, "each input exactly once");
    // The killed instance's transaction reached the log and was aborted: read_uncommitted sees its records
    // too (else the kill came at no interesting moment and the test proves nothing).
    let ru = consumer(&b, "ctp-out", 2, "read_uncommitted");
    let every = drain(&ru, n as usize + 1, "read_uncommitted output");
    assert!(
        every.iter().all(|(_, _, v)| want.contains(v)),
        "only transformed inputs in the output"
    );
    // The group's committed offsets are the input's end (OffsetFetch, require_stable from rdkafka).
    let c = assigned_consumer(&b, "ctp-in", 2, Offset::Beginning, &[("group.id", "ctp")]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition("ctp-in", p);
    }
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(20))
        .expect("committed offsets");
    for p in 0..2 {
        let end = latest(&b, "ctp-in", p, READ_UNCOMMITTED);
        assert_eq!(
            committed.find_partition("ctp-in", p).unwrap().offset(),
            Offset::Offset(end),
            "group offset of ctp-in/{p}"
        );
    }
}

/// Reads until at least `at_least` records arrived and then nothing for a second (bounded: 20 s).
fn drain(c: &BaseConsumer, at_least: usize, label: &str) -> Vec<(i32, i64, String)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Instant::now();
    while got.len() < at_least || last.elapsed() < Duration::from_secs(1) {
        assert!(
            Instant::now() < deadline,
            "{label}: {} records, want at least {at_least}",
            got.len()
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                got.push((
                    m.partition(),
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                ));
            }
            Some(Err(e)) => panic!("{label}: {e}"),
            None => {}
        }
    }
    got
}

fn java_transform(b: &Broker, stall: Option<u32>) -> std::process::Command {
    let stall = stall.map_or("-1".to_string(), |k| k.to_string());
    java_command(
        "Transactions.java",
        b,
        &[
            "--mode",
            "transform",
            "--txn-id",
            "ctp-app",
            "--group",
            "ctp",
            "--input",
            "ctp-in",
            "--output",
            "ctp-out",
            "--stall-after",
            &stall,
        ],
    )
}

fn python_transform(b: &Broker, stall: Option<u32>) -> std::process::Command {
    let mut args = vec![
        "transform",
        "--txn-id",
        "ctp-app",
        "--group",
        "ctp",
        "--input",
        "ctp-in",
        "--output",
        "ctp-out",
    ];
    let stall = stall.map(|k| k.to_string());
    if let Some(k) = &stall {
        args.extend(["--stall-after", k]);
    }
    python_command("txn_client.py", b, &args)
}

/// Needs TxnOffsetCommit.
#[test]
fn java_consume_transform_produce_across_kill9() {
    bounded(120, || transform_after_kill9(java_transform));
}

/// Needs TxnOffsetCommit.
#[test]
fn confluent_python_consume_transform_produce_across_kill9() {
    bounded(120, || transform_after_kill9(python_transform));
}
