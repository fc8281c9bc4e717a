//! Compressed batches that lie, sent as raw Produce frames built with the real codecs: the broker decompresses
//! and checks every record (as Kafka's LogValidator does), refuses the lie with the Kafka error, stores nothing,
//! keeps serving, and does it in bounded time and memory without stalling other connections.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use crate::common::{bounded, create_topic_raw, encode_batch, Broker, Raw};

/// Peak broker RSS these tests allow: generous (the broker idles near 6 MB), but far below what buffering a
/// decompressed bomb (256 MB and more) would take.
const MAX_PEAK_RSS_KB: u64 = 160 * 1024;

fn produce_req(topic: &str, batches: &[Bytes]) -> ProduceRequest {
    let mut td = produce_request::TopicProduceData::default();
    td.name = TopicName(StrBytes::from_string(topic.to_string()));
    for (i, b) in batches.iter().enumerate() {
        let mut pd = produce_request::PartitionProduceData::default();
        pd.index = i as i32;
        pd.records = Some(b.clone());
        td.partition_data.push(pd);
    }
    let mut req = ProduceRequest::default();
    req.acks = 1;
    req.timeout_ms = 30_000;
    req.topic_data.push(td);
    req
}

/// Produce v9 (has record_errors and error_message) to partition 0.
fn produce(raw: &mut Raw, topic: &str, batch: Bytes) -> produce_response::PartitionProduceResponse {
    let r: ProduceResponse = raw.call(ApiKey::Produce, 9, &produce_req(topic, &[batch]));
    r.responses[0].partition_responses[0].clone()
}

fn log_end_offset(raw: &mut Raw, topic: &str) -> i64 {
    let mut req = ListOffsetsRequest::default();
    let mut t = list_offsets_request::ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    let mut p = list_offsets_request::ListOffsetsPartition::default();
    p.timestamp = -1;
    t.partitions.push(p);
    req.topics.push(t);
    let r: ListOffsetsResponse = raw.call(ApiKey::ListOffsets, 8, &req);
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// Values of all records from offset 0, decoded by kafka-protocol like a consumer would.
fn consume(raw: &mut Raw, topic: &str) -> Vec<Bytes> {
    let mut f = FetchRequest::default();
    f.max_bytes = 1 << 20;
    let mut ft = fetch_request::FetchTopic::default();
    ft.topic = TopicName(StrBytes::from_string(topic.to_string()));
    let mut fp = fetch_request::FetchPartition::default();
    fp.partition_max_bytes = 1 << 20;
    ft.partitions.push(fp);
    f.topics.push(ft);
    let r: FetchResponse = raw.call(ApiKey::Fetch, 12, &f);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let mut records = p.records.clone().unwrap_or_default();
    RecordBatchDecoder::decode_all(&mut records)
        .expect("stored batches decode")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| r.value.unwrap_or_default())
        .collect()
}

fn varint(v: i64) -> Vec<u8> {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    while raw >= 0x80 {
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
    out
}

/// The start of a record (length prefix through the value length) whose value of `value_len` bytes follows,
/// then one byte (zero headers) ends it.
fn record_head(offset_delta: i32, value_len: i64) -> Vec<u8> {
    let mut head = vec![0u8]; // attributes
    head.extend(varint(0)); // timestamp delta
    head.extend(varint(i64::from(offset_delta)));
    head.extend(varint(1));
    head.push(b'k');
    head.extend(varint(value_len));
    let mut out = varint(head.len() as i64 + value_len + 1);
    out.extend(head);
    out
}

fn record(offset_delta: i32, value: &[u8]) -> Vec<u8> {
    let mut r = record_head(offset_delta, value.len() as i64);
    r.extend(value);
    r.push(0);
    r
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A v2 batch around `payload` with the given codec and header claims; the CRC is valid, so only the contents
/// can give the lie away.
fn batch(codec: Compression, payload: &[u8], records_count: i32, last_offset_delta: i32) -> Bytes {
    let codec_id: i16 = match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    };
    let now = now_ms();
    let mut b = Vec::with_capacity(61 + payload.len());
    b.extend(0i64.to_be_bytes());
    b.extend(((49 + payload.len()) as i32).to_be_bytes());
    b.extend(0i32.to_be_bytes());
    b.push(2);
    b.extend(0u32.to_be_bytes());
    b.extend(codec_id.to_be_bytes());
    b.extend(last_offset_delta.to_be_bytes());
    b.extend(now.to_be_bytes());
    b.extend(now.to_be_bytes());
    b.extend((-1i64).to_be_bytes());
    b.extend((-1i16).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.extend(records_count.to_be_bytes());
    b.extend(payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

fn gzip(data: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzEncoder::new(data, flate2::Compression::default())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// A gzip payload of one valid record whose value is `value_len` zero bytes: tiny on the wire, as much
/// decompression work as wanted.
fn gzip_of_zero_value(value_len: i64) -> Vec<u8> {
    let head = record_head(0, value_len);
    gzip(
        (&head[..])
            .chain(std::io::repeat(0).take(value_len as u64))
            .chain(&[0u8][..]),
    )
}

fn assert_peak_rss(b: &Broker) {
    let peak = b.memory_kb("VmHWM");
    assert!(peak > 0, "broker memory is readable");
    assert!(
        peak < MAX_PEAK_RSS_KB,
        "broker peak RSS {peak} KiB exceeds {MAX_PEAK_RSS_KB} KiB"
    );
}

#[test]
fn compressed_batch_lies_are_refused_and_nothing_is_stored() {
    bounded(60, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "lies", 1);

        // A gzip batch that claims 10^9 records (lastOffsetDelta agrees) but holds one: INVALID_RECORD, and
        // the log end offset does not move by a billion.
        let one = gzip(&record(0, b"only one")[..]);
        let r = produce(
            &mut raw,
            "lies",
            batch(Compression::Gzip, &one, 1_000_000_000, 999_999_999),
        );
        assert_eq!(r.error_code, 87, "{:?}", r.error_message);
        assert!(r.error_message.is_some());
        assert_eq!(log_end_offset(&mut raw, "lies"), 0);

        // A "gzip" batch whose payload is not gzip: CORRUPT_MESSAGE instead of a batch no consumer can read.
        let text = b"plain text pretending to be gzip".repeat(10);
        let r = produce(&mut raw, "lies", batch(Compression::Gzip, &text, 1, 0));
        assert_eq!(r.error_code, 2, "{:?}", r.error_message);
        // The same for the other codecs, and a cut gzip stream.
        for codec in [Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let r = produce(&mut raw, "lies", batch(codec, &text, 1, 0));
            assert_eq!(r.error_code, 2, "{codec:?}: {:?}", r.error_message);
        }
        let many: Vec<u8> = (0..100)
            .flat_map(|i| record(i, b"some value bytes"))
            .collect();
        let full = gzip(&many[..]);
        let r = produce(
            &mut raw,
            "lies",
            batch(Compression::Gzip, &full[..full.len() / 2], 100, 99),
        );
        assert_eq!(r.error_code, 2, "{:?}", r.error_message);

        // Offset deltas 0, 2: INVALID_RECORD naming record 1 in record_errors (Produce v8+).
        let mut skewed = record(0, b"a");
        skewed.extend(record(2, b"b"));
        let r = produce(
            &mut raw,
            "lies",
            batch(Compression::Gzip, &gzip(&skewed[..]), 2, 1),
        );
        assert_eq!(r.error_code, 87, "{:?}", r.error_message);
        let indexes: Vec<i32> = r.record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(indexes, vec![1]);

        // A raw snappy block declaring 4 GiB of output is refused before anything is allocated.
        let r = produce(
            &mut raw,
            "lies",
            batch(
                Compression::Snappy,
                &[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00],
                1,
                0,
            ),
        );
        assert_eq!(r.error_code, 2, "{:?}", r.error_message);
        assert_eq!(log_end_offset(&mut raw, "lies"), 0);

        // The partition is intact: a real client batch is stored at offset 0 and reads back.
        let good = encode_batch(&[(Some(b"k"), b"after the lies")], Compression::Gzip);
        let r = produce(&mut raw, "lies", good);
        assert_eq!(
            (r.error_code, r.base_offset),
            (0, 0),
            "{:?}",
            r.error_message
        );
        assert_eq!(log_end_offset(&mut raw, "lies"), 1);
        assert_eq!(
            consume(&mut raw, "lies"),
            vec![Bytes::from_static(b"after the lies")]
        );
        assert_peak_rss(&b);
    });
}

#[test]
fn decompression_bombs_cost_bounded_time_and_memory() {
    bounded(120, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "bomb", 1);
        let rss_before = b.memory_kb("VmRSS");

        // One record claiming a 2 GiB - 1 value of zeros: zstd makes it ~64 KB; gzip does 300 MB in ~300 KB.
        let value_len = i64::from(i32::MAX) - 64;
        let head = record_head(0, value_len);
        let section = (&head[..])
            .chain(std::io::repeat(0).take(value_len as u64))
            .chain(&[0u8][..]);
        let zstd_bomb = zstd::stream::encode_all(section, 1).unwrap();
        let gzip_bomb = gzip_of_zero_value(300 << 20);
        for (codec, payload) in [
            (Compression::Zstd, zstd_bomb),
            (Compression::Gzip, gzip_bomb),
        ] {
            assert!(
                payload.len() < 1 << 20,
                "{codec:?} bomb is {} bytes",
                payload.len()
            );
            let t0 = Instant::now();
            let r = produce(&mut raw, "bomb", batch(codec, &payload, 1, 0));
            let took = t0.elapsed();
            eprintln!(
                "{codec:?} bomb of {} bytes refused in {took:?}",
                payload.len()
            );
            assert_eq!(r.error_code, 2, "{codec:?}: {:?}", r.error_message);
            assert!(
                r.error_message
                    .as_deref()
                    .unwrap_or_default()
                    .contains("exceeds"),
                "{:?}",
                r.error_message
            );
            // 256 MiB of output is well under 10 s even on a loaded 2-core machine.
            assert!(
                took < Duration::from_secs(10),
                "{codec:?} bomb took {took:?}"
            );
        }
        assert_eq!(log_end_offset(&mut raw, "bomb"), 0);
        let rss_after = b.memory_kb("VmRSS");
        eprintln!(
            "bomb: broker RSS {rss_before} KiB before, {rss_after} KiB after, peak {} KiB",
            b.memory_kb("VmHWM")
        );
        assert_peak_rss(&b);
    });
}

#[test]
fn other_connections_are_served_while_heavy_produces_validate() {
    const PARTITIONS: usize = 32;
    const PIPELINED: usize = 8;
    bounded(120, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "heavy", PARTITIONS as i32);
        // A request of 32 partitions, each a valid zstd batch whose one record decompresses to 250 MB (just
        // under the cap): 8 GB to decompress for a quarter MB on the wire. Three connections pipeline 8 such
        // requests each, so a connection whose appends ran on an async worker would hold it for seconds.
        let value_len: i64 = 250_000_000;
        let head = record_head(0, value_len);
        let section = (&head[..])
            .chain(std::io::repeat(0).take(value_len as u64))
            .chain(&[0u8][..]);
        let heavy = batch(
            Compression::Zstd,
            &zstd::stream::encode_all(section, 1).unwrap(),
            1,
            0,
        );
        let req = produce_req("heavy", &vec![heavy; PARTITIONS]);
        let done = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..3)
            .map(|_| {
                let mut conn = Raw::connect(&b);
                conn.stream
                    .set_read_timeout(Some(Duration::from_secs(100)))
                    .unwrap();
                let req = req.clone();
                std::thread::spawn(move || {
                    for _ in 0..PIPELINED {
                        let body = conn.encode_request(ApiKey::Produce, 9, &req);
                        conn.send_frame(&body);
                    }
                    let mut codes = Vec::new();
                    for _ in 0..PIPELINED {
                        let mut frame = conn.read_frame().expect("produce response");
                        let version = ApiKey::Produce.response_header_version(9);
                        ResponseHeader::decode(&mut frame, version).unwrap();
                        let r = ProduceResponse::decode(&mut frame, 9).unwrap();
                        codes.extend(
                            r.responses[0]
                                .partition_responses
                                .iter()
                                .map(|p| p.error_code),
                        );
                    }
                    codes
                })
            })
            .collect();
        let watcher = {
            let done = done.clone();
            std::thread::spawn(move || {
                // Joined without unwrapping, so a failed producer still ends the probing loop.
                let codes: Vec<_> = producers.into_iter().map(|h| h.join()).collect();
                done.store(true, Ordering::Release);
                codes
            })
        };
        // Time ApiVersions on another connection until the produces finish.
        std::thread::sleep(Duration::from_millis(50));
        let mut probe = Raw::connect(&b);
        let mut worst = Duration::ZERO;
        let mut probes = 0;
        let started = Instant::now();
        while !done.load(Ordering::Acquire) {
            let t0 = Instant::now();
            let r: ApiVersionsResponse =
                probe.call(ApiKey::ApiVersions, 2, &ApiVersionsRequest::default());
            assert_eq!(r.error_code, 0);
            worst = worst.max(t0.elapsed());
            probes += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        let codes: Vec<i16> = watcher
            .join()
            .unwrap()
            .into_iter()
            .flat_map(|r| r.expect("producer thread"))
            .collect();
        assert_eq!(codes.len(), 3 * PIPELINED * PARTITIONS);
        assert!(codes.iter().all(|c| *c == 0), "{codes:?}");
        eprintln!(
            "heavy produces: {:?} of validation, {probes} ApiVersions probes, slowest {worst:?}",
            started.elapsed()
        );
        assert!(
            probes >= 5,
            "the produces finished too soon to measure ({probes} probes)"
        );
        // Validation runs on the blocking pool, so an ApiVersions waits for no decompression; the bound is
        // generous for a loaded machine, and far below the seconds a connection's requests take to validate.
        assert!(
            worst < Duration::from_millis(750),
            "ApiVersions took {worst:?}"
        );
        assert_peak_rss(&b);
    });
}

/// Log end offset of partition `p`.
fn partition_end(raw: &mut Raw, topic: &str, p: i32) -> i64 {
    let mut req = ListOffsetsRequest::default();
    let mut t = list_offsets_request::ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    let mut lp = list_offsets_request::ListOffsetsPartition::default();
    lp.partition_index = p;
    lp.timestamp = -1;
    t.partitions.push(lp);
    req.topics.push(t);
    let r: ListOffsetsResponse = raw.call(ApiKey::ListOffsets, 8, &req);
    let lp = &r.topics[0].partitions[0];
    assert_eq!(lp.error_code, 0);
    lp.offset
}

/// A compacted topic (`cleanup.policy=compact`) refuses a batch holding a record without a key, as Kafka does:
/// INVALID_RECORD with `record_errors` naming the record's index (Produce v8+), nothing of the batch stored;
/// the keyed batch for another partition of the same request is stored. The same batch is accepted on a
/// `delete` topic.
#[test]
fn keyless_record_refused_on_a_compacted_topic() {
    let b = Broker::start();
    bounded(60, move || {
        let mut raw = Raw::connect(&b);
        for (topic, policy) in [("compacted", "compact"), ("deleting", "delete")] {
            let mut t = create_topics_request::CreatableTopic::default();
            t.name = TopicName(StrBytes::from_string(topic.to_string()));
            t.num_partitions = 2;
            t.replication_factor = 1;
            let mut c = create_topics_request::CreatableTopicConfig::default();
            c.name = StrBytes::from_static_str("cleanup.policy");
            c.value = Some(StrBytes::from_string(policy.to_string()));
            t.configs.push(c);
            let mut ct = CreateTopicsRequest::default();
            ct.topics.push(t);
            ct.timeout_ms = 30_000;
            let r: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &ct);
            assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
        }
        let mixed: &[(Option<&[u8]>, &[u8])] = &[
            (Some(b"k0"), b"v0"),
            (None, b"no key"),
            (Some(b"k2"), b"v2"),
        ];
        let keyed: &[(Option<&[u8]>, &[u8])] = &[(Some(b"a"), b"1"), (Some(b"b"), b"2")];
        for codec in [Compression::None, Compression::Zstd] {
            let batches = [encode_batch(mixed, codec), encode_batch(keyed, codec)];
            let r: ProduceResponse =
                raw.call(ApiKey::Produce, 9, &produce_req("compacted", &batches));
            let parts = &r.responses[0].partition_responses;
            let p0 = parts.iter().find(|p| p.index == 0).unwrap();
            let p1 = parts.iter().find(|p| p.index == 1).unwrap();
            assert_eq!(p0.error_code, 87, "{codec:?}: {:?}", p0.error_message);
            let indexes: Vec<i32> = p0.record_errors.iter().map(|e| e.batch_index).collect();
            assert_eq!(indexes, vec![1], "{codec:?}");
            assert!(
                p0.error_message.is_some()
                    || p0.record_errors[0].batch_index_error_message.is_some(),
                "{codec:?}"
            );
            assert_eq!(p1.error_code, 0, "{codec:?}: {:?}", p1.error_message);
        }
        assert_eq!(partition_end(&mut raw, "compacted", 0), 0, "nothing stored");
        assert_eq!(partition_end(&mut raw, "compacted", 1), 4);
        // The same request to a `delete` topic is stored whole.
        let batches = [
            encode_batch(mixed, Compression::None),
            encode_batch(keyed, Compression::None),
        ];
        let r: ProduceResponse = raw.call(ApiKey::Produce, 9, &produce_req("deleting", &batches));
        for p in &r.responses[0].partition_responses {
            assert_eq!(p.error_code, 0, "{:?}", p.error_message);
        }
        assert_eq!(partition_end(&mut raw, "deleting", 0), 3);
    });
}
