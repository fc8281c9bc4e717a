//! Produce and consume with rdkafka: every codec, keys, headers, timestamps, per-partition order, fetch from the
//! middle of a batch, long-poll wake-up, ListOffsets by time, LogAppendTime.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, Timestamp, TopicPartitionList};

use crate::common::{bounded, Broker};

/// Records what the broker acknowledged: (partition, offset) -> payload.
#[derive(Clone, Default)]
pub struct Acks(pub Arc<Mutex<AckMap>>, pub Arc<Mutex<Vec<String>>>);

/// (partition, offset) -> payload of every acknowledged record.
pub type AckMap = BTreeMap<(i32, i64), Vec<u8>>;

/// One consumed record: offset, key, value, headers, timestamp.
pub type Consumed = (i64, Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>, i64);

impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => {
                self.0.lock().unwrap().insert(
                    (m.partition(), m.offset()),
                    m.payload().unwrap_or_default().to_vec(),
                );
            }
            Err((e, _)) => self.1.lock().unwrap().push(e.to_string()),
        }
    }
}

pub fn producer(b: &Broker, extra: &[(&str, &str)]) -> (ThreadedProducer<Acks>, Acks) {
    let acks = Acks::default();
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", b.bootstrap())
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    (
        cfg.create_with_context(acks.clone()).expect("producer"),
        acks,
    )
}

pub fn assigned_consumer(
    b: &Broker,
    topic: &str,
    partitions: i32,
    offset: Offset,
    extra: &[(&str, &str)],
) -> BaseConsumer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", b.bootstrap())
        .set("group.id", "assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    let c: BaseConsumer = cfg.create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, offset).unwrap();
    }
    c.assign(&tpl).unwrap();
    c
}

struct Seen {
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: i64,
}

/// Consumes until `count` records have arrived (bounded), returning them per partition in arrival order.
pub fn consume_n(c: &BaseConsumer, count: usize, secs: u64) -> HashMap<i32, Vec<Consumed>> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut out: HashMap<i32, Vec<Consumed>> = HashMap::new();
    let mut n = 0;
    while n < count {
        assert!(
            Instant::now() < deadline,
            "only {n} of {count} records consumed in {secs} s"
        );
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => panic!("consume error: {e}"),
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                let ts = match m.timestamp() {
                    Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
                    Timestamp::NotAvailable => -1,
                };
                out.entry(m.partition()).or_default().push((
                    m.offset(),
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().unwrap_or_default().to_vec(),
                    headers,
                    ts,
                ));
                n += 1;
            }
        }
    }
    out
}

fn roundtrip(codec: &'static str) {
    bounded(120, move || {
        let b = Broker::start_with(&[("NUM_PARTITIONS", "4")]);
        let topic = format!("codec-{codec}");
        let (p, acks) = producer(
            &b,
            &[
                ("compression.codec", codec),
                ("acks", "all"),
                ("batch.num.messages", "500"),
            ],
        );
        let n = 3000usize;
        let base_ts = 1_700_000_000_000i64;
        let mut sent: HashMap<Vec<u8>, Seen> = HashMap::new();
        for i in 0..n {
            let key = format!("key-{}", i % 97).into_bytes();
            let value = format!("value-{i}-{}", "x".repeat(i % 300)).into_bytes();
            let ts = base_ts + i as i64;
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "seq",
                    value: Some(&i.to_string()),
                })
                .insert(Header {
                    key: "codec",
                    value: Some(codec),
                });
            let rec = BaseRecord::to(&topic)
                .key(&key)
                .payload(&value)
                .timestamp(ts)
                .headers(headers);
            p.send(rec).map_err(|(e, _)| e).unwrap();
            sent.insert(
                value.clone(),
                Seen {
                    key,
                    value,
                    headers: vec![
                        ("seq".into(), i.to_string().into_bytes()),
                        ("codec".into(), codec.as_bytes().to_vec()),
                    ],
                    timestamp: ts,
                },
            );
        }
        p.flush(Duration::from_secs(60)).unwrap();
        assert!(
            acks.1.lock().unwrap().is_empty(),
            "delivery errors: {:?}",
            acks.1.lock().unwrap()
        );
        assert_eq!(acks.0.lock().unwrap().len(), n);

        let c = assigned_consumer(&b, &topic, 4, Offset::Beginning, &[]);
        let got = consume_n(&c, n, 60);
        let acked = acks.0.lock().unwrap().clone();
        let mut per_key_partition: HashMap<Vec<u8>, i32> = HashMap::new();
        let mut total = 0;
        for (partition, records) in &got {
            let mut last_offset = -1;
            let mut last_seq_per_key: HashMap<Vec<u8>, usize> = HashMap::new();
            for (offset, key, value, headers, ts) in records {
                assert!(
                    *offset > last_offset,
                    "offsets increase within partition {partition}"
                );
                last_offset = *offset;
                let s = sent.get(value).expect("consumed a record that was sent");
                assert_eq!(&s.key, key);
                assert_eq!(&s.value, value);
                assert_eq!(&s.headers, headers);
                assert_eq!(s.timestamp, *ts);
                assert_eq!(
                    acked.get(&(*partition, *offset)),
                    Some(value),
                    "record at the acknowledged offset"
                );
                // Same key always lands in the same partition, in send order.
                let pk = per_key_partition.entry(key.clone()).or_insert(*partition);
                assert_eq!(*pk, *partition);
                let seq: usize = String::from_utf8_lossy(&headers[0].1).parse().unwrap();
                if let Some(prev) = last_seq_per_key.insert(key.clone(), seq) {
                    assert!(seq > prev, "per-key order kept");
                }
                total += 1;
            }
        }
        assert_eq!(total, n);
        assert!(got.len() > 1, "keys spread over partitions");
        // Nothing more than what was sent.
        assert!(c.poll(Duration::from_millis(500)).is_none());
    });
}

#[test]
fn roundtrip_none() {
    roundtrip("none");
}
#[test]
fn roundtrip_gzip() {
    roundtrip("gzip");
}
#[test]
fn roundtrip_snappy() {
    roundtrip("snappy");
}
#[test]
fn roundtrip_lz4() {
    roundtrip("lz4");
}
#[test]
fn roundtrip_zstd() {
    roundtrip("zstd");
}

#[test]
fn fetch_from_middle_of_a_batch() {
    bounded(60, || {
        let b = Broker::start();
        // One compressed batch of 100 records: a fetch at offset 57 must return the whole batch and the client
        // skips to 57.
        let (p, acks) = producer(&b, &[("compression.codec", "lz4"), ("linger.ms", "200")]);
        for i in 0..100 {
            p.send(
                BaseRecord::to("mid")
                    .partition(0)
                    .key("k")
                    .payload(&format!("m{i}")),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        }
        p.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(acks.0.lock().unwrap().len(), 100);
        let c = assigned_consumer(&b, "mid", 1, Offset::Offset(57), &[]);
        let got = consume_n(&c, 43, 20);
        let recs = &got[&0];
        assert_eq!(recs[0].0, 57);
        assert_eq!(recs[0].2, b"m57");
        assert_eq!(recs.last().unwrap().0, 99);
    });
}

#[test]
fn long_poll_is_woken_by_new_data() {
    bounded(60, || {
        let b = Broker::start();
        let (p, _acks) = producer(&b, &[("linger.ms", "0")]);
        p.send(BaseRecord::to("lp").partition(0).key("k").payload("first"))
            .map_err(|(e, _)| e)
            .unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
        // The consumer's fetches wait up to 20 s for data; a record produced meanwhile must arrive long before.
        let c = assigned_consumer(
            &b,
            "lp",
            1,
            Offset::End,
            &[("fetch.wait.max.ms", "20000"), ("fetch.min.bytes", "1")],
        );
        // Let the consumer reach the end and park its long-poll.
        assert!(c.poll(Duration::from_secs(2)).is_none());
        let t0 = Instant::now();
        p.send(BaseRecord::to("lp").partition(0).key("k").payload("second"))
            .map_err(|(e, _)| e)
            .unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
        let got = consume_n(&c, 1, 15);
        assert_eq!(got[&0][0].2, b"second");
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "woken by the append, not by the 20 s timeout: {:?}",
            t0.elapsed()
        );
    });
}

#[test]
fn list_offsets_by_time_and_log_append_time() {
    bounded(60, || {
        let b = Broker::start();
        let (p, _) = producer(&b, &[("compression.codec", "gzip"), ("linger.ms", "50")]);
        let base = 1_700_000_000_000i64;
        for i in 0..50i64 {
            p.send(
                BaseRecord::to("times")
                    .partition(0)
                    .key("k")
                    .payload(&format!("{i}"))
                    .timestamp(base + i * 1000),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        }
        p.flush(Duration::from_secs(10)).unwrap();
        let c = assigned_consumer(&b, "times", 1, Offset::Beginning, &[]);
        let mut tpl = TopicPartitionList::new();
        // The first offset whose timestamp is >= the target, also inside a compressed batch.
        for (target, want) in [
            (base + 20_500, Offset::Offset(21)),
            (base, Offset::Offset(0)),
            (base + 49_000, Offset::Offset(49)),
            (base + 99_000, Offset::End),
        ] {
            tpl = TopicPartitionList::new();
            tpl.add_partition_offset("times", 0, Offset::Offset(target))
                .unwrap();
            let r = c
                .offsets_for_times(tpl.clone(), Duration::from_secs(10))
                .unwrap();
            let got = r.elements()[0].offset();
            if want == Offset::End {
                assert!(
                    matches!(got, Offset::End | Offset::Invalid | Offset::Offset(-1)),
                    "{target}: {got:?}"
                );
            } else {
                assert_eq!(got, want, "target {target}");
            }
        }
        drop(tpl);
        assert_eq!(
            c.fetch_watermarks("times", 0, Duration::from_secs(5))
                .unwrap(),
            (0, 50)
        );

        // LogAppendTime topics stamp the broker's clock.
        crate::metadata::create_topic(&b, "lat", 1, &[("message.timestamp.type", "LogAppendTime")]);
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        p.send(
            BaseRecord::to("lat")
                .partition(0)
                .key("k")
                .payload("x")
                .timestamp(5),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
        let c = assigned_consumer(&b, "lat", 1, Offset::Beginning, &[]);
        let m = loop {
            if let Some(m) = c.poll(Duration::from_secs(1)) {
                break m.unwrap().detach();
            }
        };
        match m.timestamp() {
            Timestamp::LogAppendTime(t) => assert!(t >= before - 1000, "{t} vs {before}"),
            other => panic!("expected LogAppendTime, got {other:?}"),
        }
    });
}
