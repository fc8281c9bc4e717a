//! Restarts, kill -9 during heavy produce, torn tails, and retention.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Offset;

use crate::common::{bounded, segment_files, Broker};
use crate::metadata::create_topic;
use crate::produce_consume::{assigned_consumer, consume_n, producer};

#[test]
fn restart_keeps_everything() {
    bounded(90, || {
        let mut b = Broker::start_with(&[("NUM_PARTITIONS", "2")]);
        let (p, acks) = producer(&b, &[("compression.codec", "snappy")]);
        for i in 0..1000 {
            p.send(
                BaseRecord::to("keep")
                    .key(&format!("k{i}"))
                    .payload(&format!("v{i}")),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        }
        p.flush(Duration::from_secs(30)).unwrap();
        drop(p);
        let acked = acks.0.lock().unwrap().clone();
        assert_eq!(acked.len(), 1000);
        b.restart();
        assert!(
            !b.dir.join("keep-0").join(".vltava_cleanshutdown").exists(),
            "marker consumed on open"
        );
        let c = assigned_consumer(&b, "keep", 2, Offset::Beginning, &[]);
        let got = consume_n(&c, 1000, 30);
        for (partition, recs) in got {
            for (offset, _, value, _, _) in recs {
                assert_eq!(acked.get(&(partition, offset)), Some(&value));
            }
        }
        // Appends continue at the right offsets after the restart.
        let (p, acks) = producer(&b, &[]);
        p.send(
            BaseRecord::to("keep")
                .partition(0)
                .key("k")
                .payload("after"),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
        let next = acks.0.lock().unwrap().keys().next().copied().unwrap();
        let max_before = acked
            .keys()
            .filter(|(p, _)| *p == 0)
            .map(|(_, o)| *o)
            .max()
            .unwrap();
        assert_eq!(next, (0, max_before + 1));
    });
}

#[test]
fn kill9_during_heavy_produce_loses_no_acknowledged_record() {
    bounded(180, || {
        let mut b = Broker::start();
        // Small segments (Kafka 4.1's internal.segment.bytes; segment.bytes has a 1 MiB floor) so the kill
        // also lands near segment rolls.
        create_topic(&b, "crash", 3, &[("internal.segment.bytes", "262144")]);
        let (p, acks) = producer(
            &b,
            &[
                ("acks", "all"),
                ("compression.codec", "lz4"),
                ("message.timeout.ms", "5000"),
                ("retries", "0"),
            ],
        );
        let payload = "p".repeat(200);
        let start = Instant::now();
        let mut i = 0u64;
        // Produce continuously; kill -9 after ~1.5 s while batches are in flight.
        while start.elapsed() < Duration::from_millis(1500) {
            let value = format!("{i}-{payload}");
            match p.send(
                BaseRecord::to("crash")
                    .key(&format!("k{}", i % 50))
                    .payload(&value),
            ) {
                Ok(()) => i += 1,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        b.kill9();
        // Delivery reports for what was in flight come back as errors; acknowledged ones are final.
        let _ = p.flush(Duration::from_secs(10));
        drop(p);
        let acked = acks.0.lock().unwrap().clone();
        assert!(
            acked.len() > 1000,
            "heavy produce acknowledged only {} records",
            acked.len()
        );
        b.kill9_and_restart();
        let c = assigned_consumer(&b, "crash", 3, Offset::Beginning, &[]);
        let mut hw_total = 0;
        for part in 0..3 {
            let (_, high) = c
                .fetch_watermarks("crash", part, Duration::from_secs(10))
                .unwrap();
            hw_total += high as usize;
        }
        assert!(
            hw_total >= acked.len(),
            "log has {hw_total} records but {} were acknowledged",
            acked.len()
        );
        let got = consume_n(&c, hw_total, 60);
        let mut found = 0;
        for (partition, recs) in got {
            for (offset, _, value, _, _) in recs {
                if let Some(v) = acked.get(&(partition, offset)) {
                    assert_eq!(
                        v, &value,
                        "acknowledged record at {partition}/{offset} intact"
                    );
                    found += 1;
                }
            }
        }
        assert_eq!(
            found,
            acked.len(),
            "every acknowledged record is there after kill -9"
        );
        // And the recovered log accepts new writes.
        let (p, acks) = producer(&b, &[("acks", "all")]);
        p.send(
            BaseRecord::to("crash")
                .partition(0)
                .key("k")
                .payload("post-crash"),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(acks.0.lock().unwrap().len(), 1);
    });
}

#[test]
fn torn_tail_is_truncated_on_restart() {
    bounded(90, || {
        let mut b = Broker::start();
        let (p, acks) = producer(&b, &[]);
        for i in 0..200 {
            p.send(
                BaseRecord::to("torn")
                    .partition(0)
                    .key("k")
                    .payload(&format!("v{i}")),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        }
        p.flush(Duration::from_secs(10)).unwrap();
        drop(p);
        assert_eq!(acks.0.lock().unwrap().len(), 200);
        b.kill9();
        // Simulate a torn write: half a batch header plus garbage at the end of the active segment.
        let dir = b.partition_dir("torn", 0);
        let seg = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().map(|x| x == "log").unwrap_or(false))
            .max()
            .unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes.extend_from_slice(&[
            0, 0, 0, 0, 0, 0, 0, 200, 0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 2, 9, 9,
        ]);
        std::fs::write(&seg, &bytes).unwrap();
        // And a corrupt offset index: it must be rebuilt, not trusted.
        let idx = seg.with_extension("index");
        std::fs::write(&idx, [0xffu8; 24]).unwrap();
        b.kill9_and_restart();
        let c = assigned_consumer(&b, "torn", 1, Offset::Beginning, &[]);
        assert_eq!(
            c.fetch_watermarks("torn", 0, Duration::from_secs(5))
                .unwrap(),
            (0, 200)
        );
        let got = consume_n(&c, 200, 20);
        assert_eq!(got[&0].len(), 200);
        let (p, acks) = producer(&b, &[]);
        p.send(BaseRecord::to("torn").partition(0).key("k").payload("next"))
            .map_err(|(e, _)| e)
            .unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(acks.0.lock().unwrap().keys().next(), Some(&(0, 200)));
    });
}

#[test]
fn retention_deletes_old_segments() {
    bounded(90, || {
        let b = Broker::start_with(&[("LOG_RETENTION_CHECK_INTERVAL_MS", "200")]);
        create_topic(
            &b,
            "ret",
            1,
            &[
                ("internal.segment.bytes", "4096"),
                ("retention.bytes", "20000"),
            ],
        );
        let a = crate::metadata::admin(&b);
        // Batches must fit a 4 KiB segment (bigger ones get MESSAGE_TOO_LARGE, as in Kafka).
        let (p, acks) = producer(&b, &[("linger.ms", "0"), ("batch.size", "3000")]);
        for i in 0..400 {
            p.send(
                BaseRecord::to("ret")
                    .partition(0)
                    .key("k")
                    .payload(&format!("{i}-{}", "r".repeat(200))),
            )
            .map_err(|(e, _)| e)
            .unwrap();
            if i % 20 == 0 {
                p.flush(Duration::from_secs(10)).unwrap();
            }
        }
        p.flush(Duration::from_secs(10)).unwrap();
        assert!(
            acks.1.lock().unwrap().is_empty(),
            "{:?}",
            acks.1.lock().unwrap()
        );
        assert_eq!(acks.0.lock().unwrap().len(), 400);
        let dir = b.partition_dir("ret", 0);
        let c = assigned_consumer(&b, "ret", 1, Offset::Beginning, &[]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (low, high) = c
                .fetch_watermarks("ret", 0, Duration::from_secs(5))
                .unwrap();
            let bytes: u64 = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .filter(|e| e.path().extension().map(|x| x == "log").unwrap_or(false))
                .map(|e| e.metadata().unwrap().len())
                .sum();
            if low > 0 && bytes <= 20000 + 4096 {
                assert_eq!(high, 400);
                assert!(segment_files(&dir) >= 1);
                // A consumer whose position fell below the log start gets OFFSET_OUT_OF_RANGE and resets to
                // the earliest offset still there (retention may have moved on meanwhile).
                let fresh = assigned_consumer(
                    &b,
                    "ret",
                    1,
                    Offset::Offset(0),
                    &[("auto.offset.reset", "earliest")],
                );
                let got = consume_n(&fresh, 1, 20);
                assert!(
                    got[&0][0].0 >= low && got[&0][0].0 < high,
                    "{} not in [{low}, {high})",
                    got[&0][0].0
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "retention did not run: low={low} bytes={bytes}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // retention.ms: everything older than 1 s goes, including the active segment's contents.
        let alter =
            rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic("ret"))
                .set("internal.segment.bytes", "4096")
                .set("retention.ms", "1000");
        futures::executor::block_on(
            a.alter_configs(&[alter], &rdkafka::admin::AdminOptions::new()),
        )
        .unwrap()[0]
            .as_ref()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (low, high) = c
                .fetch_watermarks("ret", 0, Duration::from_secs(5))
                .unwrap();
            if low == high {
                assert_eq!(high, 400);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "time retention did not run: low={low} high={high}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

#[test]
fn flush_messages_moves_the_recovery_point() {
    bounded(60, || {
        let mut b = Broker::start();
        create_topic(&b, "synced", 1, &[("flush.messages", "1")]);
        create_topic(&b, "lazy", 1, &[]);
        let (p, acks) = producer(&b, &[("linger.ms", "0")]);
        for topic in ["synced", "lazy"] {
            for i in 0..20 {
                p.send(
                    BaseRecord::to(topic)
                        .partition(0)
                        .key("k")
                        .payload(&format!("{i}")),
                )
                .map_err(|(e, _)| e)
                .unwrap();
                p.flush(Duration::from_secs(10)).unwrap();
            }
        }
        assert!(
            acks.1.lock().unwrap().is_empty(),
            "{:?}",
            acks.1.lock().unwrap()
        );
        // (partition, offset) keys: both topics acknowledged offsets 0..20 of partition 0.
        assert_eq!(acks.0.lock().unwrap().len(), 20);
        b.kill9();
        // flush.messages=1: every append was fsynced and the recovery point follows the log end.
        let rp = |topic: &str| {
            std::fs::read_to_string(b.partition_dir(topic, 0).join("recovery-point")).ok()
        };
        assert_eq!(rp("synced").as_deref().map(str::trim), Some("20"));
        // Default (OS decides): nothing forced, so no recovery point beyond the start.
        assert!(
            matches!(rp("lazy").as_deref().map(str::trim), None | Some("0")),
            "{:?}",
            rp("lazy")
        );
    });
}
