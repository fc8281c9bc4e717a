//! Test-only helpers: building real batches with kafka-protocol's encoder,
//! decoding them back, and hand-corrupting bytes. Owned by the log tests.
#![allow(clippy::cast_possible_truncation)] // test data is small

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression as KpCompression, Record, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KpTimestampType,
};

use std::path::Path;

use super::batch::{BatchHeader, Compression};
use super::{AppendInfo, Log, LogConfig};

/// Codecs under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    fn kp(self) -> KpCompression {
        match self {
            Codec::None => KpCompression::None,
            Codec::Gzip => KpCompression::Gzip,
            Codec::Snappy => KpCompression::Snappy,
            Codec::Lz4 => KpCompression::Lz4,
            Codec::Zstd => KpCompression::Zstd,
        }
    }

    pub fn ours(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

fn record(offset: i64, timestamp: i64, value_len: usize) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: KpTimestampType::Creation,
        offset,
        // The encoder splits batches unless offset - sequence is constant.
        sequence: offset as i32,
        timestamp,
        key: Some(Bytes::from(format!("key-{offset}"))),
        value: Some(Bytes::from(vec![b'v'; value_len])),
        headers: Default::default(),
    }
}

fn encode(records: &[Record], codec: Codec) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression: codec.kp(),
        },
    )
    .unwrap();
    buf.to_vec()
}

/// One batch, base offset 0, one record per timestamp.
pub fn batch(codec: Codec, timestamps: &[i64], value_len: usize) -> Vec<u8> {
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, ts)| record(i as i64, *ts, value_len))
        .collect();
    encode(&records, codec)
}

/// An uncompressed batch whose records carry the given offsets (in order).
pub fn batch_with_offsets(offsets: &[i64]) -> Vec<u8> {
    let records: Vec<Record> = offsets.iter().map(|o| record(*o, 1, 1)).collect();
    encode(&records, Codec::None)
}

/// Recomputes the CRC of the single batch at the start of `buf`.
pub fn fix_crc(buf: &mut [u8]) {
    let len = i32::from_be_bytes(buf[8..12].try_into().unwrap()) as usize + 12;
    let end = len.min(buf.len());
    let crc = crc32c::crc32c(&buf[21..end]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Decodes all records in `buf` with kafka-protocol.
pub fn decode(buf: &[u8]) -> Vec<Record> {
    let mut bytes = Bytes::copy_from_slice(buf);
    RecordBatchDecoder::decode_all(&mut bytes)
        .unwrap()
        .into_iter()
        .flat_map(|set| set.records)
        .collect()
}

/// Tiny deterministic xorshift PRNG for garbage inputs.
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

// Log-level helpers shared by the tests of log.rs, loader.rs and retention.rs.

/// The clock the log tests run at.
pub const NOW: i64 = 10_000_000;

pub fn cfg() -> LogConfig {
    LogConfig {
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

/// Small segments: a two-record batch with 50-byte values is ~190 bytes
/// uncompressed, ~100 compressed.
pub fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 500,
        ..cfg()
    }
}

pub fn produce_at(log: &mut Log, codec: Codec, timestamps: &[i64], now: i64) -> AppendInfo {
    let mut buf = batch(codec, timestamps, 50);
    log.append_as_leader(&mut buf, 5, now).unwrap()
}

pub fn produce(log: &mut Log, codec: Codec, timestamps: &[i64]) -> AppendInfo {
    produce_at(log, codec, timestamps, NOW)
}

/// 20 two-record batches, offsets 0..40, timestamps 1000 + offset.
pub fn filled(dir: &Path, config: LogConfig) -> Log {
    let mut log = Log::open(dir, config, NOW).unwrap();
    for i in 0..20i64 {
        let codec = Codec::ALL[(i % 5) as usize];
        produce(&mut log, codec, &[1_000 + 2 * i, 1_001 + 2 * i]);
    }
    log
}

pub fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..]).unwrap();
        pos += h.total_size();
        out.push(h);
    }
    assert_eq!(pos, bytes.len(), "whole batches only");
    out
}

pub fn bases(bytes: &[u8]) -> Vec<i64> {
    headers(bytes).iter().map(|h| h.base_offset).collect()
}

pub fn read_all(log: &Log) -> Bytes {
    log.read(log.log_start_offset(), usize::MAX, i64::MAX, true)
        .unwrap()
}

/// Zigzag varint encoding of a record field.
pub fn varint(v: i64) -> Vec<u8> {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        if raw < 0x80 {
            out.push(raw as u8);
            return out;
        }
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
}

/// One record's bytes (length prefix included), no headers.
pub fn record_bytes(offset_delta: i32, ts_delta: i64, key: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    body.extend(varint(ts_delta));
    body.extend(varint(i64::from(offset_delta)));
    match key {
        Some(k) => {
            body.extend(varint(k.len() as i64));
            body.extend(k);
        }
        None => body.extend(varint(-1)),
    }
    body.extend(varint(value.len() as i64));
    body.extend(value);
    body.extend(varint(0));
    let mut out = varint(body.len() as i64);
    out.extend(body);
    out
}

/// `data` compressed the way Kafka clients do (snappy: the Java client's xerial framing).
pub fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match codec {
        Codec::None => data.to_vec(),
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Codec::Snappy => {
            let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            for chunk in data.chunks(32 * 1024) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                out.extend((block.len() as u32).to_be_bytes());
                out.extend(block);
            }
            out
        }
        Codec::Lz4 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            e.write_all(data).unwrap();
            let (out, r) = e.finish();
            r.unwrap();
            out
        }
        Codec::Zstd => zstd::stream::encode_all(data, 3).unwrap(),
    }
}

/// librdkafka's snappy: one raw block, no framing.
pub fn raw_snappy(data: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(data).unwrap()
}

/// A batch around an arbitrary payload, header fields as given, CRC valid.
pub fn assemble(
    codec: Codec,
    payload: &[u8],
    records_count: i32,
    last_offset_delta: i32,
    base_ts: i64,
    max_ts: i64,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(61 + payload.len());
    b.extend(0i64.to_be_bytes());
    b.extend(((49 + payload.len()) as i32).to_be_bytes());
    b.extend(0i32.to_be_bytes()); // leader epoch
    b.push(2);
    b.extend(0u32.to_be_bytes()); // crc, fixed below
    b.extend((codec.ours() as i16).to_be_bytes());
    b.extend(last_offset_delta.to_be_bytes());
    b.extend(base_ts.to_be_bytes());
    b.extend(max_ts.to_be_bytes());
    b.extend((-1i64).to_be_bytes());
    b.extend((-1i16).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.extend(records_count.to_be_bytes());
    b.extend(payload);
    fix_crc(&mut b);
    b
}

/// An uncompressed batch of an idempotent producer: `producer_id`, `epoch`, base sequence `seq`.
pub fn producer_batch(producer_id: i64, epoch: i16, seq: i32, timestamps: &[i64]) -> Vec<u8> {
    let mut b = batch(Codec::None, timestamps, 10);
    b[43..51].copy_from_slice(&producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    fix_crc(&mut b);
    b
}

/// Sets the transactional attribute of the batch at the start of `buf`.
pub fn set_transactional(buf: &mut [u8]) {
    buf[22] |= 0x10;
    fix_crc(buf);
}
