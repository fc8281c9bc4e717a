//! Fetch semantics on the wire: min_bytes waits up to max_wait_ms, max_bytes and partition_max_bytes bound the
//! answer except for the first batch (KIP-74), isolation levels shape aborted_transactions, and pipelined
//! requests are answered in order even when an earlier one is a parked long-poll.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::Compression;

use crate::common::{
    bounded, build_produce, create_topic_raw, encode_batch, encode_timed_batch, Broker, Raw,
    TimedRecord,
};

fn produce(raw: &mut Raw, topic: &str, partition: i32, records: Bytes) -> i64 {
    let req = build_produce(topic, -1, &[(partition, records)]);
    let r: ProduceResponse = raw.call(ApiKey::Produce, 11, &req);
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "{:?}", p.error_message);
    p.base_offset
}

fn fetch_req(
    topic: &str,
    partitions: &[(i32, i64, i32)],
    max_bytes: i32,
    min_bytes: i32,
    wait: i32,
) -> FetchRequest {
    let mut f = FetchRequest::default();
    f.max_bytes = max_bytes;
    f.min_bytes = min_bytes;
    f.max_wait_ms = wait;
    let mut ft = fetch_request::FetchTopic::default();
    ft.topic = TopicName(StrBytes::from_string(topic.to_string()));
    for &(p, offset, pmax) in partitions {
        let mut fp = fetch_request::FetchPartition::default();
        fp.partition = p;
        fp.fetch_offset = offset;
        fp.partition_max_bytes = pmax;
        ft.partitions.push(fp);
    }
    f.topics.push(ft);
    f
}

fn batches(records: &Option<Bytes>) -> usize {
    let mut b = records.clone().unwrap_or_default();
    kafka_protocol::records::RecordBatchDecoder::decode_all(&mut b)
        .unwrap()
        .len()
}

#[test]
fn min_bytes_max_bytes_and_kip74() {
    bounded(60, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "f", 2);
        let big = vec![b'x'; 3000];
        for _ in 0..5 {
            produce(
                &mut raw,
                "f",
                0,
                encode_batch(&[(None, &big)], Compression::None),
            );
        }
        produce(
            &mut raw,
            "f",
            1,
            encode_batch(&[(None, b"small")], Compression::None),
        );

        // min_bytes above what exists: the fetch waits the full max_wait_ms, then answers with what there is.
        let t0 = Instant::now();
        let r: FetchResponse = raw.call(
            ApiKey::Fetch,
            12,
            &fetch_req("f", &[(0, 0, 1 << 20)], 1 << 20, 1 << 20, 600),
        );
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(550),
            "waited only {waited:?}"
        );
        assert_eq!(batches(&r.responses[0].partitions[0].records), 5);

        // partition_max_bytes smaller than one batch: still exactly one whole batch (KIP-74).
        let r: FetchResponse = raw.call(
            ApiKey::Fetch,
            12,
            &fetch_req("f", &[(0, 0, 100)], 1 << 20, 1, 0),
        );
        assert_eq!(batches(&r.responses[0].partitions[0].records), 1);
        // partition_max_bytes of two and a half batches: two whole batches.
        let one = r.responses[0].partitions[0].records.as_ref().unwrap().len() as i32;
        let r: FetchResponse = raw.call(
            ApiKey::Fetch,
            12,
            &fetch_req("f", &[(0, 0, one * 5 / 2)], 1 << 20, 1, 0),
        );
        assert_eq!(batches(&r.responses[0].partitions[0].records), 2);
        // max_bytes spent by partition 0: partition 1 gets nothing, but the first partition got one batch.
        let r: FetchResponse = raw.call(
            ApiKey::Fetch,
            12,
            &fetch_req("f", &[(0, 0, 1 << 20), (1, 0, 1 << 20)], 10, 1, 0),
        );
        assert_eq!(batches(&r.responses[0].partitions[0].records), 1);
        assert_eq!(batches(&r.responses[0].partitions[1].records), 0);
        assert_eq!(r.responses[0].partitions[1].high_watermark, 1);

        // Mid-batch offsets return the containing batch; offset == HW returns nothing without error.
        let mid = produce(
            &mut raw,
            "f",
            1,
            encode_batch(
                &[(None, b"a"), (None, b"b"), (None, b"c")],
                Compression::Lz4,
            ),
        );
        let r: FetchResponse = raw.call(
            ApiKey::Fetch,
            12,
            &fetch_req("f", &[(1, mid + 2, 1 << 20)], 1 << 20, 1, 0),
        );
        let mut recs = r.responses[0].partitions[0].records.clone().unwrap();
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut recs).unwrap();
        assert_eq!(
            sets[0].records[0].offset, mid,
            "whole batch from its base offset"
        );
        let r: FetchResponse = raw.call(
            ApiKey::Fetch,
            12,
            &fetch_req("f", &[(1, mid + 3, 1 << 20)], 1 << 20, 0, 0),
        );
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
        assert_eq!(batches(&r.responses[0].partitions[0].records), 0);
    });
}

#[test]
fn isolation_levels_and_preferred_replica() {
    bounded(30, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "iso", 1);
        produce(
            &mut raw,
            "iso",
            0,
            encode_batch(&[(None, b"v")], Compression::None),
        );
        for (level, want) in [(0i8, None), (1, Some(0usize))] {
            let mut f = fetch_req("iso", &[(0, 0, 1 << 20)], 1 << 20, 1, 0);
            f.isolation_level = level;
            let r: FetchResponse = raw.call(ApiKey::Fetch, 12, &f);
            let p = &r.responses[0].partitions[0];
            assert_eq!(
                p.aborted_transactions.as_ref().map(|a| a.len()),
                want,
                "isolation {level}"
            );
            assert_eq!(p.preferred_read_replica.0, -1);
            assert_eq!(p.last_stable_offset, 1);
            assert_eq!(p.log_start_offset, 0);
        }
    });
}

#[test]
fn pipelined_requests_answer_in_order() {
    bounded(30, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "pipe", 1);
        // A long-poll fetch parked for 800 ms, then a metadata request behind it on the same connection.
        let fetch = raw.encode_request(
            ApiKey::Fetch,
            12,
            &fetch_req("pipe", &[(0, 0, 1 << 20)], 1 << 20, 1, 800),
        );
        let meta = raw.encode_request(ApiKey::Metadata, 12, &MetadataRequest::default());
        raw.send_frame(&fetch);
        raw.send_frame(&meta);
        let t0 = Instant::now();
        let mut first = raw.read_frame().unwrap();
        let mut second = raw.read_frame().unwrap();
        let h1 = ResponseHeader::decode(&mut first, 1).unwrap();
        let h2 = ResponseHeader::decode(&mut second, 1).unwrap();
        assert!(
            h1.correlation_id < h2.correlation_id,
            "responses in request order"
        );
        assert!(
            t0.elapsed() >= Duration::from_millis(700),
            "the fetch really waited"
        );
        let m = MetadataResponse::decode(&mut second, 12).unwrap();
        assert_eq!(m.brokers.len(), 1);
    });
}

#[test]
fn pipelined_produces_append_in_order() {
    bounded(60, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "order", 1);
        // 200 produce requests written back to back before reading any response (max.in.flight > 1).
        let n = 200;
        let mut frames = Vec::new();
        for i in 0..n {
            let mut pd = produce_request::PartitionProduceData::default();
            pd.records = Some(encode_batch(
                &[(None, format!("{i}").as_bytes())],
                Compression::None,
            ));
            let mut td = produce_request::TopicProduceData::default();
            td.name = TopicName(StrBytes::from_string("order".to_string()));
            td.partition_data.push(pd);
            let mut req = ProduceRequest::default();
            req.acks = 1;
            req.timeout_ms = 5000;
            req.topic_data.push(td);
            let body = raw.encode_request(ApiKey::Produce, 9, &req);
            frames.extend_from_slice(&(body.len() as i32).to_be_bytes());
            frames.extend_from_slice(&body);
        }
        std::io::Write::write_all(&mut raw.stream, &frames).unwrap();
        let mut last_corr = 0;
        for i in 0..n {
            let mut f = raw.read_frame().unwrap();
            let h = ResponseHeader::decode(&mut f, 1).unwrap();
            assert!(h.correlation_id > last_corr);
            last_corr = h.correlation_id;
            let r = ProduceResponse::decode(&mut f, 9).unwrap();
            assert_eq!(
                r.responses[0].partition_responses[0].base_offset, i as i64,
                "request {i} appended in order"
            );
        }
        let r: FetchResponse = raw.call(
            ApiKey::Fetch,
            12,
            &fetch_req("order", &[(0, 0, 1 << 20)], 1 << 20, 1, 0),
        );
        let mut recs = r.responses[0].partitions[0].records.clone().unwrap();
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut recs).unwrap();
        let values: Vec<String> = sets
            .iter()
            .flat_map(|s| {
                s.records
                    .iter()
                    .map(|r| String::from_utf8_lossy(r.value.as_ref().unwrap()).to_string())
            })
            .collect();
        let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        assert_eq!(values, want);
    });
}

#[test]
fn failed_acks0_produce_closes_the_connection() {
    bounded(30, || {
        let b = Broker::start_with(&[("AUTO_CREATE_TOPICS_ENABLE", "false")]);
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "a0", 1);
        let mut pd = produce_request::PartitionProduceData::default();
        pd.records = Some(encode_batch(&[(None, b"x")], Compression::None));
        let mut td = produce_request::TopicProduceData::default();
        td.name = TopicName(StrBytes::from_string("a0".to_string()));
        td.partition_data.push(pd);
        let mut req = ProduceRequest::default();
        req.acks = 0;
        req.topic_data.push(td);
        // A successful acks=0 produce gets no response and keeps the connection.
        let body = raw.encode_request(ApiKey::Produce, 9, &req);
        raw.send_frame(&body);
        let m: MetadataResponse = raw.call(ApiKey::Metadata, 12, &MetadataRequest::default());
        assert_eq!(m.brokers.len(), 1);
        // A failed one (unknown topic) closes it, as Kafka does, so the client refreshes metadata.
        req.topic_data[0].name = TopicName(StrBytes::from_string("missing".to_string()));
        let body = raw.encode_request(ApiKey::Produce, 9, &req);
        raw.send_frame(&body);
        assert!(raw.closed());
    });
}

#[test]
fn list_offsets_special_timestamps_and_bad_assignments() {
    bounded(30, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "lo", 1);
        // Three batches; the middle one carries the largest timestamp (record offset 3 within it).
        let ts_batch = |base_ts: i64, n: usize, spike: bool| {
            let timed: Vec<TimedRecord<'_>> = (0..n)
                .map(|i| {
                    (
                        None,
                        &b"v"[..],
                        base_ts + if spike && i == 1 { 50_000 } else { i as i64 },
                    )
                })
                .collect();
            encode_timed_batch(&timed, Compression::Gzip)
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 600_000;
        produce(&mut raw, "lo", 0, ts_batch(now, 2, false));
        produce(&mut raw, "lo", 0, ts_batch(now + 10, 3, true));
        produce(&mut raw, "lo", 0, ts_batch(now + 20, 2, false));
        // One request per timestamp: a partition named twice in one request is INVALID_REQUEST, as in Kafka.
        let got: Vec<(i16, i64, i64)> = [-1i64, -2, -3, -4, now + 10]
            .into_iter()
            .map(|ts| {
                let mut req = ListOffsetsRequest::default();
                let mut t = list_offsets_request::ListOffsetsTopic::default();
                t.name = TopicName(StrBytes::from_string("lo".to_string()));
                let mut p = list_offsets_request::ListOffsetsPartition::default();
                p.timestamp = ts;
                t.partitions.push(p);
                req.topics.push(t);
                let r: ListOffsetsResponse = raw.call(ApiKey::ListOffsets, 8, &req);
                let p = &r.topics[0].partitions[0];
                (p.error_code, p.offset, p.timestamp)
            })
            .collect();
        assert_eq!(got[0], (0, 7, -1), "latest");
        assert_eq!(got[1], (0, 0, -1), "earliest");
        assert_eq!(
            got[2],
            (0, 3, now + 10 + 50_000),
            "max timestamp: the exact record inside a compressed batch"
        );
        assert_eq!(got[3], (0, 0, -1), "earliest local");
        assert_eq!(
            got[4],
            (0, 2, now + 10),
            "first offset at or after the timestamp"
        );

        // CreateTopics with bad replica assignments: INVALID_REPLICA_ASSIGNMENT (39).
        for assignment in [
            vec![(0, vec![1]), (1, vec![2])],
            vec![(0, vec![1, 1])],
            vec![(1, vec![1])],
        ] {
            let mut ct = CreateTopicsRequest::default();
            let mut t = create_topics_request::CreatableTopic::default();
            t.name = TopicName(StrBytes::from_string("assigned".to_string()));
            t.num_partitions = -1;
            t.replication_factor = -1;
            for (p, brokers) in &assignment {
                let mut a = create_topics_request::CreatableReplicaAssignment::default();
                a.partition_index = *p;
                a.broker_ids = brokers.iter().map(|&b| BrokerId(b)).collect();
                t.assignments.push(a);
            }
            ct.topics.push(t);
            let r: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &ct);
            assert_eq!(r.topics[0].error_code, 39, "{assignment:?}");
        }
    });
}
