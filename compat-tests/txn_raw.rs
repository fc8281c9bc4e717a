//! Transactions over the raw protocol against the real binary: Kafka's error for every kind of bad input
//! (unknown ids, wrong epochs, topics that do not exist, ends of transactions that never started, a second
//! producer on one id, transactional batches outside a transaction), the KIP-890 produce check for both
//! transaction versions, and the last stable offset moving with the markers.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::common::{bounded, build_produce, create_topic_raw, Broker, Raw};
use crate::idempotence::idem_batch;
use crate::versions::txn_init;

fn tid(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

/// AddPartitionsToTxn v3 (or v1): the error of each (topic, partition) in request order.
fn add_partitions(
    raw: &mut Raw,
    version: i16,
    id: &str,
    pid: i64,
    epoch: i16,
    parts: &[(&str, i32)],
) -> Vec<i16> {
    let mut req = AddPartitionsToTxnRequest::default();
    req.v3_and_below_transactional_id = tid(id);
    req.v3_and_below_producer_id = ProducerId(pid);
    req.v3_and_below_producer_epoch = epoch;
    for (topic, p) in parts {
        let mut t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.to_string()));
        t.partitions = vec![*p];
        req.v3_and_below_topics.push(t);
    }
    let r: AddPartitionsToTxnResponse = raw.call(ApiKey::AddPartitionsToTxn, version, &req);
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })
        .collect()
}

fn end_txn(
    raw: &mut Raw,
    version: i16,
    id: &str,
    pid: i64,
    epoch: i16,
    commit: bool,
) -> EndTxnResponse {
    let mut req = EndTxnRequest::default();
    req.transactional_id = tid(id);
    req.producer_id = ProducerId(pid);
    req.producer_epoch = epoch;
    req.committed = commit;
    raw.call(ApiKey::EndTxn, version, &req)
}

/// A transactional produce to `topic` partition 0 at `version`: (error code, base offset).
fn produce_txn(raw: &mut Raw, version: i16, id: &str, topic: &str, batch: Bytes) -> (i16, i64) {
    let mut req = build_produce(topic, -1, &[(0, batch)]);
    req.transactional_id = Some(tid(id));
    let r: ProduceResponse = raw.call(ApiKey::Produce, version, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// ListOffsets latest of partition 0: (high watermark, last stable offset).
fn latest(raw: &mut Raw, topic: &str) -> (i64, i64) {
    let mut at = |isolation: i8| {
        let mut p = list_offsets_request::ListOffsetsPartition::default();
        p.partition_index = 0;
        p.timestamp = -1;
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.to_string()));
        t.partitions.push(p);
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.isolation_level = isolation;
        req.topics.push(t);
        let r: ListOffsetsResponse = raw.call(ApiKey::ListOffsets, 7, &req);
        r.topics[0].partitions[0].offset
    };
    (at(0), at(1))
}

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const PRODUCER_FENCED: i16 = 90;

#[test]
fn bad_transactional_requests_get_kafkas_errors() {
    bounded(60, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "tr", 1);
        let (pid, epoch) = txn_init(&mut raw, "bad");
        assert_eq!(epoch, 0);

        // A timeout above transaction_max_timeout_ms.
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = Some(tid("bad-timeout"));
        req.transaction_timeout_ms = 900_001;
        req.producer_id = ProducerId(-1);
        req.producer_epoch = -1;
        let r: InitProducerIdResponse = raw.call(ApiKey::InitProducerId, 4, &req);
        assert_eq!(r.error_code, INVALID_TRANSACTION_TIMEOUT);

        // A topic that does not exist fails alone; the others are not attempted; nothing is added.
        assert_eq!(
            add_partitions(&mut raw, 3, "bad", pid, epoch, &[("tr", 0), ("nope", 0)]),
            vec![OPERATION_NOT_ATTEMPTED, UNKNOWN_TOPIC_OR_PARTITION]
        );
        // So the transaction has not started: ending it is INVALID_TXN_STATE.
        assert_eq!(
            end_txn(&mut raw, 3, "bad", pid, epoch, true).error_code,
            INVALID_TXN_STATE
        );
        // Another epoch: PRODUCER_FENCED, or INVALID_PRODUCER_EPOCH before the version that has it (KIP-588).
        assert_eq!(
            add_partitions(&mut raw, 3, "bad", pid, epoch + 1, &[("tr", 0)]),
            vec![PRODUCER_FENCED]
        );
        assert_eq!(
            add_partitions(&mut raw, 1, "bad", pid, epoch + 1, &[("tr", 0)]),
            vec![INVALID_PRODUCER_EPOCH]
        );
        // Another producer id, or an id nobody initialised (a non-transactional producer's).
        assert_eq!(
            add_partitions(&mut raw, 3, "bad", pid + 1, epoch, &[("tr", 0)]),
            vec![INVALID_PRODUCER_ID_MAPPING]
        );
        assert_eq!(
            add_partitions(&mut raw, 3, "never", pid, epoch, &[("tr", 0)]),
            vec![INVALID_PRODUCER_ID_MAPPING]
        );
        assert_eq!(
            end_txn(&mut raw, 3, "never", pid, epoch, false).error_code,
            INVALID_PRODUCER_ID_MAPPING
        );

        // Transactions V1: a transactional batch to a partition never added is refused and not written.
        assert_eq!(
            produce_txn(&mut raw, 9, "bad", "tr", idem_batch(pid, epoch, 0, 2, true)).0,
            INVALID_TXN_STATE
        );
        assert_eq!(latest(&mut raw, "tr"), (0, 0));
        assert_eq!(
            add_partitions(&mut raw, 3, "bad", pid, epoch, &[("tr", 0)]),
            vec![0]
        );
        assert_eq!(
            produce_txn(&mut raw, 9, "bad", "tr", idem_batch(pid, epoch, 0, 2, true)),
            (0, 0)
        );
        // The open transaction holds the last stable offset at its first offset.
        assert_eq!(latest(&mut raw, "tr"), (2, 0));

        // A second producer on the same id: the running transaction is aborted (CONCURRENT_TRANSACTIONS until
        // done), then the new producer gets a higher epoch and the old one is fenced everywhere.
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = Some(tid("bad"));
        req.transaction_timeout_ms = 60_000;
        req.producer_id = ProducerId(-1);
        req.producer_epoch = -1;
        let mut r: InitProducerIdResponse = raw.call(ApiKey::InitProducerId, 4, &req);
        for _ in 0..100 {
            if r.error_code != CONCURRENT_TRANSACTIONS {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            r = raw.call(ApiKey::InitProducerId, 4, &req);
        }
        assert_eq!(r.error_code, 0);
        assert_eq!(r.producer_id.0, pid);
        assert!(r.producer_epoch > epoch);
        // The abort marker released the LSO: 2 aborted records + the marker.
        assert_eq!(latest(&mut raw, "tr"), (3, 3));
        assert_eq!(
            end_txn(&mut raw, 3, "bad", pid, epoch, true).error_code,
            PRODUCER_FENCED
        );
        assert_eq!(
            end_txn(&mut raw, 1, "bad", pid, epoch, true).error_code,
            INVALID_PRODUCER_EPOCH
        );
        assert_eq!(
            produce_txn(&mut raw, 9, "bad", "tr", idem_batch(pid, epoch, 2, 1, true)).0,
            INVALID_PRODUCER_EPOCH
        );
        // A transactional batch without a transactional id in the request: the whole request is refused with
        // TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka does.
        let r: ProduceResponse = raw.call(
            ApiKey::Produce,
            9,
            &build_produce(
                "tr",
                -1,
                &[(0, idem_batch(pid, r.producer_epoch, 0, 1, true))],
            ),
        );
        assert_eq!(r.responses[0].partition_responses[0].error_code, 53);
        assert_eq!(latest(&mut raw, "tr"), (3, 3), "nothing was written");
    });
}

#[test]
fn transactions_v2_add_partitions_by_produce_and_fence_late_writes() {
    bounded(60, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "tv2", 1);
        let (pid, epoch) = txn_init(&mut raw, "v2");
        // Produce v12+ adds the partition itself (no AddPartitionsToTxn).
        assert_eq!(
            produce_txn(
                &mut raw,
                12,
                "v2",
                "tv2",
                idem_batch(pid, epoch, 0, 3, true)
            ),
            (0, 0)
        );
        assert_eq!(latest(&mut raw, "tv2"), (3, 0));
        // EndTxn v5 commits and bumps the epoch.
        let r = end_txn(&mut raw, 5, "v2", pid, epoch, true);
        assert_eq!(r.error_code, 0);
        assert_eq!((r.producer_id.0, r.producer_epoch), (pid, epoch + 1));
        assert_eq!(latest(&mut raw, "tv2"), (4, 4));
        // A late write of the finished transaction (old epoch) cannot start or join a transaction.
        assert_eq!(
            produce_txn(
                &mut raw,
                12,
                "v2",
                "tv2",
                idem_batch(pid, epoch, 3, 1, true)
            )
            .0,
            INVALID_PRODUCER_EPOCH
        );
        // A retried EndTxn of the old epoch is answered as a retry (Kafka 4.1: success, same new epoch),
        // never ending the next transaction.
        let again = end_txn(&mut raw, 5, "v2", pid, epoch, true);
        assert_eq!(again.error_code, 0);
        assert_eq!(again.producer_epoch, epoch + 1);
        // The next transaction uses the new epoch, sequences from 0; an abort hides it.
        let e1 = epoch + 1;
        assert_eq!(
            produce_txn(&mut raw, 12, "v2", "tv2", idem_batch(pid, e1, 0, 2, true)).0,
            0
        );
        let r = end_txn(&mut raw, 5, "v2", pid, e1, false);
        assert_eq!((r.error_code, r.producer_epoch), (0, e1 + 1));
        assert_eq!(latest(&mut raw, "tv2"), (7, 7));
        // A "retry" of that end with the other result: INVALID_TXN_STATE (it cannot commit what was
        // aborted); an epoch older than the previous one is fenced.
        assert_eq!(
            end_txn(&mut raw, 5, "v2", pid, e1, true).error_code,
            INVALID_TXN_STATE
        );
        assert_eq!(
            end_txn(&mut raw, 5, "v2", pid, epoch, false).error_code,
            PRODUCER_FENCED
        );
    });
}
