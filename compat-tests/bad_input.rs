//! Untrusted input: malformed frames, hostile sizes and counts, wrong protocols, corrupt batches. Each gets the
//! Kafka error or a closed connection, and the broker keeps serving everyone else with its data intact.

use std::io::Write;
use std::net::TcpStream;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;

use crate::common::{bounded, build_produce, encode_batch, Broker, Raw};

fn produce_req(topic: &str, records: Bytes) -> ProduceRequest {
    build_produce(topic, 1, &[(0, records)])
}

fn produce(raw: &mut Raw, topic: &str, records: Bytes) -> (i16, i64) {
    let r: ProduceResponse = raw.call(ApiKey::Produce, 9, &produce_req(topic, records));
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn metadata_ok(b: &Broker) {
    let mut raw = Raw::connect(b);
    let r: MetadataResponse = raw.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert_eq!(r.brokers.len(), 1, "broker still serving");
}

#[test]
fn hostile_frames_close_only_their_connection() {
    bounded(90, || {
        let b = Broker::start_with(&[("SOCKET_REQUEST_MAX_BYTES", "100000")]);
        // A healthy connection that stays open through all of this.
        let mut healthy = Raw::connect(&b);
        let (code, _) = produce(
            &mut healthy,
            "victim",
            encode_batch(&[(Some(b"k"), b"before")], Compression::None),
        );
        assert_eq!(
            code, 3,
            "auto-create is via Metadata only; produce to an unknown topic is refused"
        );
        let _: MetadataResponse = healthy.call(ApiKey::Metadata, 12, &{
            let mut m = MetadataRequest::default();
            let mut t = metadata_request::MetadataRequestTopic::default();
            t.name = Some(TopicName("victim".to_string().into()));
            m.topics = Some(vec![t]);
            m.allow_auto_topic_creation = true;
            m
        });
        assert_eq!(
            produce(
                &mut healthy,
                "victim",
                encode_batch(&[(Some(b"k"), b"before")], Compression::None)
            ),
            (0, 0)
        );

        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "size over socket_request_max_bytes",
                200_000i32.to_be_bytes().to_vec(),
            ),
            ("negative size", (-5i32).to_be_bytes().to_vec()),
            (
                "TLS ClientHello",
                vec![
                    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
                ],
            ),
            (
                "HTTP request",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ),
            (
                "frame too short for a header",
                [&3i32.to_be_bytes()[..], &[0, 3, 0]].concat(),
            ),
            (
                "unknown api key",
                frame(&[
                    &999i16.to_be_bytes(),
                    &0i16.to_be_bytes(),
                    &1i32.to_be_bytes(),
                    &(-1i16).to_be_bytes(),
                ]),
            ),
            (
                "produce v2 (removed in Kafka 4)",
                frame(&[
                    &0i16.to_be_bytes(),
                    &2i16.to_be_bytes(),
                    &1i32.to_be_bytes(),
                    &(-1i16).to_be_bytes(),
                    &[0; 20],
                ]),
            ),
            (
                "group API not implemented",
                frame(&[
                    &11i16.to_be_bytes(),
                    &5i16.to_be_bytes(),
                    &1i32.to_be_bytes(),
                    &(-1i16).to_be_bytes(),
                ]),
            ),
            // Metadata v1 whose topic array claims 2^31-1 entries in a 14-byte frame: must not allocate for them.
            (
                "huge array count",
                frame(&[
                    &3i16.to_be_bytes(),
                    &1i16.to_be_bytes(),
                    &1i32.to_be_bytes(),
                    &(-1i16).to_be_bytes(),
                    &i32::MAX.to_be_bytes(),
                ]),
            ),
            (
                "negative array count",
                frame(&[
                    &3i16.to_be_bytes(),
                    &1i16.to_be_bytes(),
                    &1i32.to_be_bytes(),
                    &(-1i16).to_be_bytes(),
                    &(-7i32).to_be_bytes(),
                ]),
            ),
            // Produce v9 with a compact string claiming a huge length.
            (
                "string longer than frame",
                frame(&[
                    &0i16.to_be_bytes(),
                    &9i16.to_be_bytes(),
                    &1i32.to_be_bytes(),
                    &(-1i16).to_be_bytes(),
                    &[0],
                    &[0xff, 0xff, 0xff, 0xff, 0x07],
                ]),
            ),
            (
                "truncated body",
                frame(&[
                    &19i16.to_be_bytes(),
                    &7i16.to_be_bytes(),
                    &1i32.to_be_bytes(),
                    &(-1i16).to_be_bytes(),
                    &[0],
                    &[5],
                ]),
            ),
        ];
        for (name, bytes) in cases {
            let mut s = TcpStream::connect(b.bootstrap()).unwrap();
            s.write_all(&bytes).unwrap();
            let mut raw = Raw::from_stream(s);
            assert!(raw.closed(), "{name}: connection should be closed");
            metadata_ok(&b);
        }
        // A size prefix promising more than is ever sent: the broker waits without allocating, the client leaves.
        let mut s = TcpStream::connect(b.bootstrap()).unwrap();
        s.write_all(&99_999i32.to_be_bytes()).unwrap();
        s.write_all(&[1, 2, 3]).unwrap();
        drop(s);
        // Random garbage of many shapes.
        let mut seed = 0x2545F4914F6CDD1Du64;
        for _ in 0..300 {
            let mut s = TcpStream::connect(b.bootstrap()).unwrap();
            let len = (next(&mut seed) % 64) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next(&mut seed) as u8).collect();
            if next(&mut seed).is_multiple_of(2) && body.len() >= 4 {
                // Plausible header: a real API key and version.
                body[0] = 0;
                body[1] = (next(&mut seed) % 61) as u8;
                body[2] = 0;
                body[3] = (next(&mut seed) % 14) as u8;
            }
            let _ = s.write_all(&frame(&[&body]));
        }
        // The healthy connection and its data are untouched.
        assert_eq!(
            produce(
                &mut healthy,
                "victim",
                encode_batch(&[(Some(b"k"), b"after")], Compression::None)
            ),
            (0, 1)
        );
        let mut f = FetchRequest::default();
        f.max_wait_ms = 0;
        f.max_bytes = 1 << 20;
        let mut ft = fetch_request::FetchTopic::default();
        ft.topic = TopicName("victim".to_string().into());
        let mut fp = fetch_request::FetchPartition::default();
        fp.partition = 0;
        fp.partition_max_bytes = 1 << 20;
        ft.partitions.push(fp);
        f.topics.push(ft);
        let r: FetchResponse = healthy.call(ApiKey::Fetch, 12, &f);
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.high_watermark, 2);
        let mut recs = p.records.clone().unwrap();
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut recs).unwrap();
        let values: Vec<Bytes> = sets
            .iter()
            .flat_map(|s| s.records.iter().map(|r| r.value.clone().unwrap()))
            .collect();
        assert_eq!(
            values,
            vec![Bytes::from_static(b"before"), Bytes::from_static(b"after")]
        );
    });
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn frame(parts: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = parts.concat();
    [&(body.len() as i32).to_be_bytes()[..], &body].concat()
}

#[test]
fn corrupt_and_oversized_batches_get_kafka_errors() {
    bounded(60, || {
        let b = Broker::start_with(&[
            ("MESSAGE_MAX_BYTES", "2000"),
            ("AUTO_CREATE_TOPICS_ENABLE", "false"),
        ]);
        let mut raw = Raw::connect(&b);
        let mut ct = CreateTopicsRequest::default();
        let mut t = create_topics_request::CreatableTopic::default();
        t.name = TopicName("t".to_string().into());
        t.num_partitions = 1;
        t.replication_factor = 1;
        ct.topics.push(t);
        let r: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &ct);
        assert_eq!(r.topics[0].error_code, 0);

        let good = encode_batch(&[(Some(b"k"), b"v")], Compression::None);
        // CRC mismatch -> CORRUPT_MESSAGE (2).
        let mut bad = BytesMut::from(&good[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(produce(&mut raw, "t", bad.freeze()).0, 2);
        // Length field larger than the bytes -> CORRUPT_MESSAGE.
        let mut long = BytesMut::from(&good[..]);
        long[8..12].copy_from_slice(&10_000i32.to_be_bytes());
        assert_eq!(produce(&mut raw, "t", long.freeze()).0, 2);
        // Magic 1 -> INVALID_RECORD (87), as Kafka 4 answers Produce v3+ with an old format.
        let mut magic = BytesMut::from(&good[..]);
        magic[16] = 1;
        assert_eq!(produce(&mut raw, "t", magic.freeze()).0, 87);
        // Truncated batch -> CORRUPT_MESSAGE.
        assert_eq!(produce(&mut raw, "t", good.slice(..30)).0, 2);
        // Over message_max_bytes -> MESSAGE_TOO_LARGE (10), also when compressed below the frame limit.
        let big = vec![b'x'; 5000];
        assert_eq!(
            produce(
                &mut raw,
                "t",
                encode_batch(&[(None, &big)], Compression::None)
            )
            .0,
            10
        );
        let mut seed = 0x9E3779B97F4A7C15u64;
        let noisy: Vec<u8> = (0..20000).map(|_| next(&mut seed) as u8).collect();
        assert_eq!(
            produce(
                &mut raw,
                "t",
                encode_batch(&[(None, &noisy)], Compression::Gzip)
            )
            .0,
            10
        );
        // Unknown topic with auto-create off -> UNKNOWN_TOPIC_OR_PARTITION (3), in Produce and Metadata.
        assert_eq!(produce(&mut raw, "nope", good.clone()).0, 3);
        let mut m = MetadataRequest::default();
        let mut mt = metadata_request::MetadataRequestTopic::default();
        mt.name = Some(TopicName("nope".to_string().into()));
        m.topics = Some(vec![mt]);
        m.allow_auto_topic_creation = true;
        let r: MetadataResponse = raw.call(ApiKey::Metadata, 12, &m);
        assert_eq!(r.topics[0].error_code, 3);
        // Invalid topic names -> INVALID_TOPIC_EXCEPTION (17) in Metadata and CreateTopics.
        let mut m = MetadataRequest::default();
        let mut mt = metadata_request::MetadataRequestTopic::default();
        mt.name = Some(TopicName("bad/name".to_string().into()));
        m.topics = Some(vec![mt]);
        let r: MetadataResponse = raw.call(ApiKey::Metadata, 12, &m);
        assert_eq!(r.topics[0].error_code, 17);
        let mut ct = CreateTopicsRequest::default();
        let mut t = create_topics_request::CreatableTopic::default();
        t.name = TopicName("..".to_string().into());
        t.num_partitions = 1;
        t.replication_factor = 1;
        ct.topics.push(t);
        let r: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &ct);
        assert_eq!(r.topics[0].error_code, 17);
        // Unknown partition -> UNKNOWN_TOPIC_OR_PARTITION; bad acks -> INVALID_REQUIRED_ACKS (21).
        let mut req = produce_req("t", good.clone());
        req.topic_data[0].partition_data[0].index = 7;
        let r: ProduceResponse = raw.call(ApiKey::Produce, 9, &req);
        assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
        let mut req = produce_req("t", good.clone());
        req.acks = 2;
        let r: ProduceResponse = raw.call(ApiKey::Produce, 9, &req);
        assert_eq!(r.responses[0].partition_responses[0].error_code, 21);
        // Fetch out of range -> OFFSET_OUT_OF_RANGE (1) with the log bounds.
        let mut f = FetchRequest::default();
        f.max_bytes = 1 << 20;
        let mut ft = fetch_request::FetchTopic::default();
        ft.topic = TopicName("t".to_string().into());
        let mut fp = fetch_request::FetchPartition::default();
        fp.fetch_offset = 50;
        fp.partition_max_bytes = 1 << 20;
        ft.partitions.push(fp);
        f.topics.push(ft);
        let r: FetchResponse = raw.call(ApiKey::Fetch, 12, &f);
        assert_eq!(r.responses[0].partitions[0].error_code, 1);
        // Nothing bad was stored: the one good batch goes in at offset 0.
        assert_eq!(produce(&mut raw, "t", good), (0, 0));
    });
}
