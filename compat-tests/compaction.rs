//! Log compaction end to end: a compacted topic with small segments, many updates of few keys (and
//! tombstones) from rdkafka, the cleaner running in the background, and a consumer from offset 0.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Message, Offset};

use crate::common::{bounded, Broker};
use crate::metadata::create_topic;
use crate::produce_consume::{assigned_consumer, producer, Acks};

/// (key, value; None for a tombstone) by offset, as acknowledged.
type Log = BTreeMap<i64, (String, Option<String>)>;

fn send(p: &ThreadedProducer<Acks>, topic: &str, key: &str, value: Option<&str>) {
    let mut r: BaseRecord<'_, str, str> = BaseRecord::to(topic).partition(0).key(key);
    if let Some(v) = value {
        r = r.payload(v);
    }
    p.send(r).map_err(|(e, _)| e).unwrap();
}

/// Produces `(key, value)` pairs and returns what was acknowledged, by offset.
fn produce(b: &Broker, topic: &str, records: &[(String, Option<String>)]) -> Log {
    // Batches smaller than the tiny test segments.
    let (p, acks) = producer(
        b,
        &[
            ("compression.codec", "lz4"),
            ("linger.ms", "20"),
            ("batch.size", "3000"),
        ],
    );
    for (k, v) in records {
        send(&p, topic, k, v.as_deref());
    }
    p.flush(Duration::from_secs(30)).unwrap();
    assert!(
        acks.1.lock().unwrap().is_empty(),
        "{:?}",
        acks.1.lock().unwrap()
    );
    let acked = acks.0.lock().unwrap();
    assert_eq!(acked.len(), records.len());
    // The ack map holds values; keys and tombstones come from what was sent, in offset order.
    let mut offsets: Vec<i64> = acked.keys().map(|(_, o)| *o).collect();
    offsets.sort_unstable();
    offsets.into_iter().zip(records.iter().cloned()).collect()
}

/// Everything from offset 0 up to `end` (exclusive), as (offset -> key, value).
fn read_all(b: &Broker, topic: &str, end: i64) -> Log {
    let c: BaseConsumer = assigned_consumer(b, topic, 1, Offset::Beginning, &[]);
    let mut out = Log::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.keys().next_back().is_none_or(|o| *o < end - 1) {
        assert!(
            Instant::now() < deadline,
            "read only up to {:?} of {end}",
            out.keys().next_back()
        );
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).to_string());
            out.insert(m.offset(), (s(m.key()).unwrap_or_default(), s(m.payload())));
        }
    }
    out
}

/// Base offset of the active (last) segment of partition 0.
fn active_base(dir: &Path) -> i64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().to_string();
            n.strip_suffix(".log").and_then(|s| s.parse::<i64>().ok())
        })
        .max()
        .unwrap()
}

/// Latest (offset, value) per key.
fn latest(log: &Log) -> HashMap<String, (i64, Option<String>)> {
    log.iter()
        .map(|(o, (k, v))| (k.clone(), (*o, v.clone())))
        .collect()
}

/// Checks `got` against what was acknowledged: every offset read holds what was acknowledged there (offsets
/// never change); below `clean_end` (the active segment, never cleaned) only the latest record of each key in
/// that part is left, and each of those is there (tombstones only if `tombstones_kept`); above it, everything.
fn check(acked: &Log, got: &Log, clean_end: i64, tombstones_kept: bool) -> Result<(), String> {
    let cleanable: Log = acked
        .range(..clean_end)
        .map(|(o, r)| (*o, r.clone()))
        .collect();
    let model = latest(&cleanable);
    for (o, rec) in got {
        if acked.get(o) != Some(rec) {
            return Err(format!(
                "offset {o}: read {rec:?}, acknowledged {:?}",
                acked.get(o)
            ));
        }
        if *o < clean_end && model.get(&rec.0).map(|l| l.0) != Some(*o) {
            return Err(format!(
                "offset {o} ({}) is not the latest of its key",
                rec.0
            ));
        }
    }
    for (k, (o, v)) in &model {
        let present = got.contains_key(o);
        let want = v.is_some() || tombstones_kept;
        if present != want {
            return Err(format!(
                "key {k}: latest offset {o} present={present}, expected {want}"
            ));
        }
    }
    for o in acked.range(clean_end..).map(|(o, _)| o) {
        if !got.contains_key(o) {
            return Err(format!("offset {o} in the active segment is missing"));
        }
    }
    Ok(())
}

/// Polls `f` every 300 ms until it returns Ok, for at most `secs`.
fn eventually(secs: u64, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("not within {secs} s: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

fn updates(keys: usize, rounds: usize, value_len: usize) -> Vec<(String, Option<String>)> {
    (0..rounds)
        .flat_map(|r| {
            (0..keys).map(move |k| {
                (
                    format!("key-{k}"),
                    Some(format!("{k}-{r}-{}", "x".repeat(value_len))),
                )
            })
        })
        .collect()
}

#[test]
fn latest_value_per_key_offsets_kept_tombstones_removed_after_the_horizon() {
    bounded(150, || {
        let b = Broker::start_with(&[("LOG_CLEANER_BACKOFF_MS", "200")]);
        let topic = "compacted";
        create_topic(
            &b,
            topic,
            1,
            &[
                ("cleanup.policy", "compact"),
                ("internal.segment.bytes", "4096"),
                ("delete.retention.ms", "8000"),
                ("retention.ms", "1"), // ignored: compact-only topics have no time retention
            ],
        );
        let mut records = updates(10, 150, 20);
        records.extend((0..3).map(|k| (format!("key-{k}"), None)));
        // More updates of one key push the tombstones out of the active segment.
        records.extend((0..200).map(|i| ("key-9".to_string(), Some(format!("tail-{i}")))));
        let acked = produce(&b, topic, &records);
        let end = *acked.keys().next_back().unwrap() + 1;
        let dir = b.partition_dir(topic, 0);

        // Cleaned, tombstones still there (delete.retention.ms not over yet).
        eventually(30, || {
            let got = read_all(&b, topic, end);
            check(&acked, &got, active_base(&dir), true)
        });
        let got = read_all(&b, topic, end);
        assert!(
            got.len() < acked.len() / 5,
            "{} of {}",
            got.len(),
            acked.len()
        );
        assert!(
            got.values().any(|(_, v)| v.is_none()),
            "tombstones are kept for a while"
        );
        // After the horizon the tombstones go too.
        eventually(40, || {
            let got = read_all(&b, topic, end);
            check(&acked, &got, active_base(&dir), false)
        });
        // New records after cleaning continue the offsets.
        let more = produce(
            &b,
            topic,
            &[("key-1".to_string(), Some("again".to_string()))],
        );
        assert_eq!(*more.keys().next().unwrap(), end);
    });
}

#[test]
fn kill9_during_cleaning_loses_nothing() {
    bounded(240, || {
        // Produced with the cleaner off, so the whole section is dirty when it starts.
        let mut b = Broker::start_with(&[
            ("LOG_CLEANER_BACKOFF_MS", "100"),
            ("LOG_CLEANER_ENABLE", "false"),
        ]);
        let topic = "crashy";
        create_topic(
            &b,
            topic,
            1,
            &[
                ("cleanup.policy", "compact"),
                ("internal.segment.bytes", "65536"),
            ],
        );
        // A large dirty section: ~8 MB in ~130 segments, 500 keys.
        let acked = produce(&b, topic, &updates(500, 80, 200));
        let end = *acked.keys().next_back().unwrap() + 1;
        b.set_env("LOG_CLEANER_ENABLE", "true");
        b.kill9_and_restart();
        // Each start cleans at once (the cleaner's first round has no pause): kill it at different points.
        let dir = b.partition_dir(topic, 0);
        let mut interrupted = 0;
        for delay_ms in [0u64, 20, 50, 100, 200, 400] {
            std::thread::sleep(Duration::from_millis(delay_ms));
            b.kill9();
            interrupted += std::fs::read_dir(&dir)
                .unwrap()
                .filter(|e| {
                    let n = e
                        .as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .to_string();
                    n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".cleanend")
                })
                .count();
            b.kill9_and_restart();
        }
        eprintln!("kill -9 left {interrupted} files of cleans in progress");
        eventually(60, || {
            let got = read_all(&b, topic, end);
            check(&acked, &got, active_base(&dir), true)
        });
        let leftovers: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".cleanend"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    });
}
