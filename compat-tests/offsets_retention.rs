//! `offsets.retention.minutes`: committed offsets of a group that has been Empty for the retention period, and
//! offsets committed without a group, expire (OffsetFetch answers -1), the Empty group is deleted, and the
//! expiry survives a broker kill -9 (restarted with the default retention, so only the durable tombstones can
//! explain the -1).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::cli_group::group_cmd;
use crate::common::{bounded, Broker};
use crate::metadata::create_topic;
use crate::produce_consume::producer;

fn consumer(b: &Broker, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer")
}

fn committed(b: &Broker, group: &str, topic: &str) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = consumer(b, group)
        .committed_offsets(tpl, Duration::from_secs(20))
        .expect("committed");
    match got.find_partition(topic, 0).map(|e| e.offset()) {
        Some(Offset::Offset(n)) => Some(n),
        _ => None,
    }
}

#[test]
fn offsets_of_an_empty_group_expire_durably() {
    bounded(180, || {
        let mut b = Broker::start_with(&[
            ("GROUP_INITIAL_REBALANCE_DELAY_MS", "200"),
            ("OFFSETS_RETENTION_MINUTES", "1"),
            ("OFFSETS_RETENTION_CHECK_INTERVAL_MS", "500"),
        ]);
        let topic = "ret-t";
        create_topic(&b, topic, 1, &[]);
        let (p, _acks) = producer(&b, &[]);
        for i in 0..3 {
            p.send(
                BaseRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&format!("v{i}")),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
        }
        p.flush(Duration::from_secs(30)).expect("flush");

        // A subscribed member reads the three records, commits and leaves: the group is Empty from here.
        let c = consumer(&b, "ret-g");
        c.subscribe(&[topic]).unwrap();
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(40);
        while n < 3 {
            assert!(Instant::now() < deadline, "read {n} of 3");
            if let Some(r) = c.poll(Duration::from_millis(100)) {
                r.expect("consume");
                n += 1;
            }
        }
        c.commit_consumer_state(CommitMode::Sync).expect("commit");
        drop(c);
        // A simple (assign) consumer's commit, without a group.
        let s = consumer(&b, "ret-simple");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(2))
            .unwrap();
        s.commit(&tpl, CommitMode::Sync).expect("simple commit");
        drop(s);
        let empty_since = Instant::now();
        assert_eq!(committed(&b, "ret-g", topic), Some(3));
        assert_eq!(committed(&b, "ret-simple", topic), Some(2));
        let (ok, out) = group_cmd(&b, &["list"]);
        assert!(ok && out.contains("ret-g"), "{out}");

        while committed(&b, "ret-g", topic).is_some() {
            assert!(
                empty_since.elapsed() < Duration::from_secs(100),
                "offsets did not expire"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        let expired_after = empty_since.elapsed();
        // Retention is one minute from the later of commit and becoming Empty (~now): not much earlier.
        assert!(
            expired_after > Duration::from_secs(55),
            "expired after only {expired_after:?}"
        );
        assert_eq!(committed(&b, "ret-simple", topic), None);
        let (ok, out) = group_cmd(&b, &["list"]);
        assert!(
            ok && !out.contains("ret-g"),
            "the empty group is deleted: {out}"
        );

        b.set_env("OFFSETS_RETENTION_MINUTES", "10080");
        b.kill9_and_restart();
        assert_eq!(committed(&b, "ret-g", topic), None);
        assert_eq!(committed(&b, "ret-simple", topic), None);
        let (ok, out) = group_cmd(&b, &["describe", "ret-g"]);
        assert!(!ok && out.contains("does not exist"), "{out}");
    });
}

/// OffsetCommit v2–4's `retention_time_ms`: a groupless commit with 1.5 s of retention expires after it (the
/// broker-wide retention is 7 days), one with -1 (the broker's) does not, and the expiry survives a kill -9.
#[test]
fn a_commit_with_its_own_retention_time_expires_at_it() {
    use kafka_protocol::messages::{ApiKey, OffsetFetchResponse};

    use crate::common::Raw;
    use crate::groups::{commit_req, fetch_req, wait_coordinator};

    bounded(60, || {
        let mut b = Broker::start_with(&[("OFFSETS_RETENTION_CHECK_INTERVAL_MS", "200")]);
        create_topic(&b, "own-ret", 2, &[]);
        let mut raw = Raw::connect(&b);
        wait_coordinator(&mut raw, "own");
        let fetch = |raw: &mut Raw, p: i32| -> i64 {
            let r: OffsetFetchResponse =
                raw.call(ApiKey::OffsetFetch, 3, &fetch_req("own", "own-ret", p));
            r.topics[0].partitions[0].committed_offset
        };
        for (p, retention) in [(0, 1_500), (1, -1)] {
            let req = commit_req("own", "own-ret", p, 40 + i64::from(p))
                .with_retention_time_ms(retention);
            let r: kafka_protocol::messages::OffsetCommitResponse =
                raw.call(ApiKey::OffsetCommit, 2, &req);
            assert_eq!(r.topics[0].partitions[0].error_code, 0);
        }
        assert_eq!((fetch(&mut raw, 0), fetch(&mut raw, 1)), (40, 41));
        let start = Instant::now();
        while fetch(&mut raw, 0) != -1 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the offset never expired"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            start.elapsed() >= Duration::from_millis(1_000),
            "expired before its retention"
        );
        assert_eq!(
            fetch(&mut raw, 1),
            41,
            "-1 means the broker's retention (7 days)"
        );
        b.kill9_and_restart();
        let mut raw = Raw::connect(&b);
        wait_coordinator(&mut raw, "own");
        assert_eq!((fetch(&mut raw, 0), fetch(&mut raw, 1)), (-1, 41));
    });
}
