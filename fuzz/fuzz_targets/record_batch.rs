//! Fuzzes produce-path batch validation and offset assignment: arbitrary bytes must be accepted or refused,
//! never panic; accepted input must survive offset assignment and re-validate.
//!
//! Random bytes almost never carry a valid CRC-32C, which would stop exploration at the checksum. So each
//! input is tried three ways: as given; with the first batch's CRC fixed up to match its (possibly garbage)
//! content, which lets the fuzzer reach header, count and record-walking checks; and as a compressed batch
//! (codec picked by the first byte) built around the rest of the input, with a valid CRC, so inputs reach the
//! decompressors: either the input itself as the codec payload (garbage for the decoder) or the input
//! compressed with the codec (records for the record walker behind a real decoder).
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use vltava::log::batch;

fn check(data: &[u8]) {
    for compacted in [false, true] {
        let Ok(v) = batch::validate_producer_records(data, 1 << 20, compacted) else {
            continue;
        };
        // Offsets and epoch are outside the CRC: the batch stays a valid producer batch.
        let mut copy = data.to_vec();
        batch::assign_offsets(&mut copy, &v, 1000, 3, None);
        assert!(
            batch::validate_producer_records(&copy, 1 << 20, compacted).is_ok(),
            "assigned batch must stay valid"
        );
        // LogAppendTime rewrites attributes and max timestamp and recomputes the CRC: what is stored must
        // pass the checks a replica (or recovery) applies. (A producer may not send the LogAppendTime bit,
        // so producer validation would rightly refuse it.)
        let mut copy = data.to_vec();
        batch::assign_offsets(&mut copy, &v, 1000, 3, Some(1_700_000_000_000));
        assert!(batch::validate_follower_records(&copy).is_ok(), "LogAppendTime batch must stay valid");
    }
}

/// `data` compressed with codec `id` (1 gzip, 2 snappy: xerial or raw, 3 lz4, 4 zstd).
fn compress(id: u8, raw_snappy: bool, data: &[u8]) -> Vec<u8> {
    match id {
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = e.write_all(data);
            e.finish().unwrap_or_default()
        }
        2 if raw_snappy => snap::raw::Encoder::new().compress_vec(data).unwrap_or_default(),
        2 => {
            let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            for chunk in data.chunks(32 * 1024) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap_or_default();
                out.extend((block.len() as u32).to_be_bytes());
                out.extend(block);
            }
            out
        }
        3 => {
            let Ok(mut e) = lz4::EncoderBuilder::new().build(Vec::new()) else {
                return Vec::new();
            };
            let _ = e.write_all(data);
            e.finish().0
        }
        _ => zstd::stream::encode_all(data, 1).unwrap_or_default(),
    }
}

/// A v2 batch with codec `id` around `payload`, claiming `count` records, with a valid CRC.
fn compressed_batch(id: u8, count: i32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(61 + payload.len());
    b.extend(0i64.to_be_bytes());
    b.extend(((49 + payload.len()) as i32).to_be_bytes());
    b.extend(0i32.to_be_bytes());
    b.push(2);
    b.extend(0u32.to_be_bytes());
    b.extend(i16::from(id).to_be_bytes());
    b.extend((count - 1).to_be_bytes());
    b.extend(1_000i64.to_be_bytes());
    b.extend(1_000i64.to_be_bytes());
    b.extend((-1i64).to_be_bytes());
    b.extend((-1i16).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.extend(count.to_be_bytes());
    b.extend(payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 61 {
        let mut fixed = data.to_vec();
        let declared = i32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
        let end = usize::try_from(declared).ok().map(|l| l.saturating_add(12)).unwrap_or(0).min(fixed.len());
        if end > 21 {
            let crc = crc32c::crc32c(&fixed[21..end]);
            fixed[17..21].copy_from_slice(&crc.to_be_bytes());
            check(&fixed);
        }
    }
    // First byte: codec (bits 0-1, +1), payload as-is or compressed (bit 2), raw snappy (bit 3); second
    // byte: claimed record count (1-256).
    if let [mode, count, rest @ ..] = data {
        let id = (mode & 3) + 1;
        let payload = if mode & 4 != 0 { compress(id, mode & 8 != 0, rest) } else { rest.to_vec() };
        check(&compressed_batch(id, i32::from(*count) + 1, &payload));
    }
});
