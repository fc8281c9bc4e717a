//! Transactional offset commits (TxnOffsetCommit) with a real client: rdkafka's
//! `send_offsets_to_transaction` in committed and aborted transactions. OffsetFetch sees the offsets only
//! after the commit and never after an abort; while a transaction is open, `require_stable` answers
//! UNSTABLE_OFFSET_COMMIT and a plain fetch the last committed offset. An open transaction's offsets survive a
//! kill -9 (rebuilt from `__consumer_offsets`, still pending) and vanish when the transaction times out.

use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::common::{bounded, Broker, Raw};
use crate::metadata::create_topic;

const GROUP: &str = "txn-offsets-g";
const INPUT: &str = "txn-offsets-in";
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

/// OffsetFetch v7 of the input partition: (offset, error), or (-1, the group's error).
fn fetch(raw: &mut Raw, require_stable: bool) -> (i64, i16) {
    let mut t = OffsetFetchRequestTopic::default();
    t.name = TopicName(StrBytes::from_static_str(INPUT));
    t.partition_indexes = vec![0];
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_static_str(GROUP));
    req.topics = Some(vec![t]);
    req.require_stable = require_stable;
    let r: OffsetFetchResponse = raw.call(ApiKey::OffsetFetch, 7, &req);
    if r.error_code != 0 {
        return (-1, r.error_code);
    }
    let p = &r.topics[0].partitions[0];
    (p.committed_offset, p.error_code)
}

fn producer(b: &Broker, timeout_ms: &str) -> ThreadedProducer<DefaultProducerContext> {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("transactional.id", "txn-offsets-1")
        .set("transaction.timeout.ms", timeout_ms)
        .set("linger.ms", "0")
        .create()
        .expect("transactional producer");
    p.init_transactions(Duration::from_secs(30))
        .expect("init_transactions");
    p
}

/// One transaction: a record to the output topic and the input offset, left open (`end` None), committed
/// or aborted.
fn transaction(
    p: &ThreadedProducer<DefaultProducerContext>,
    c: &BaseConsumer,
    offset: i64,
    end: Option<bool>,
) {
    p.begin_transaction().expect("begin_transaction");
    p.send(BaseRecord::to("txn-offsets-out").key("k").payload("v"))
        .map_err(|(e, _)| e)
        .expect("send");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(INPUT, 0, Offset::Offset(offset))
        .expect("offset");
    let meta = c.group_metadata().expect("group metadata");
    p.send_offsets_to_transaction(&tpl, &meta, Duration::from_secs(30))
        .expect("send_offsets_to_transaction");
    match end {
        Some(true) => p
            .commit_transaction(Duration::from_secs(30))
            .expect("commit"),
        Some(false) => p.abort_transaction(Duration::from_secs(30)).expect("abort"),
        None => p.flush(Duration::from_secs(30)).expect("flush"),
    }
}

#[test]
fn rdkafka_send_offsets_to_transaction_commit_abort_and_kill9() {
    bounded(180, || {
        let mut b = Broker::start();
        create_topic(&b, INPUT, 1, &[]);
        create_topic(&b, "txn-offsets-out", 1, &[]);
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", b.bootstrap())
            .set("group.id", GROUP)
            .create()
            .expect("consumer");
        let p = producer(&b, "60000");
        let mut raw = Raw::connect(&b);

        transaction(&p, &c, 5, Some(true));
        assert_eq!(fetch(&mut raw, true), (5, 0), "committed");
        transaction(&p, &c, 9, Some(false));
        assert_eq!(
            fetch(&mut raw, true),
            (5, 0),
            "an abort leaves the last commit"
        );

        // Open: require_stable is told to wait, a plain fetch sees the last committed offset.
        transaction(&p, &c, 12, None);
        assert_eq!(fetch(&mut raw, true), (-1, UNSTABLE_OFFSET_COMMIT));
        assert_eq!(fetch(&mut raw, false), (5, 0));
        p.commit_transaction(Duration::from_secs(30))
            .expect("commit");
        assert_eq!(fetch(&mut raw, true), (12, 0));
        drop(p);

        // An open transaction with a short timeout, then kill -9: still pending after the reload, then
        // aborted by its timeout, leaving the committed offset.
        let p = producer(&b, "4000");
        transaction(&p, &c, 20, None);
        assert_eq!(fetch(&mut raw, true), (-1, UNSTABLE_OFFSET_COMMIT));
        drop(p);
        b.kill9_and_restart();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen_pending = false;
        let last = loop {
            // A group error (the shard still loading) is retried like the pending answer.
            let got = fetch(&mut Raw::connect(&b), true);
            seen_pending |= got.1 == UNSTABLE_OFFSET_COMMIT;
            if got == (12, 0) || Instant::now() > deadline {
                break got;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            last,
            (12, 0),
            "the timed-out transaction's offset never lands"
        );
        assert!(
            seen_pending,
            "the open transaction's offset was pending after the reload"
        );
    });
}

/// The Java producer (kafka-clients 4.1, transactions V2: TxnOffsetCommit v5 adds the offsets partition
/// implicitly) commits, aborts and holds open transactions with offsets; see compat-tests/java/TxnOffsets.java.
#[test]
fn java_send_offsets_to_transaction() {
    bounded(120, || {
        let b = Broker::start();
        let text = crate::common::run_java("TxnOffsets.java", &b, &[]);
        assert!(text.contains("TxnOffsets: OK"), "{text}");
    });
}
