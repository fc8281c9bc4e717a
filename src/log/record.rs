//! Allocation-free walking of the records inside one v2 batch.
//!
//! Owns: the varint reader and the record walker shared by produce-time
//! validation (`batch.rs`, uncompressed batches only) and the admin-path record
//! searches (`segment.rs`: ListOffsets by timestamp / max timestamp), plus the
//! one place that decompresses a batch (admin path only, never on produce).
//!
//! Everything here reads untrusted bytes (network or disk), so every read is
//! bounds-checked and returns an error instead of panicking, and nothing
//! allocates based on a length field.

use bytes::Bytes;
use kafka_protocol::compression::{Decompressor, Snappy};

use super::batch::{BatchHeader, Compression, TimestampType, BATCH_HEADER_LEN};
use super::error::LogError;

/// Upper bound on how large a decompressed batch may claim to be. Only codecs
/// whose decoder pre-allocates from a size field in the data (snappy) can be
/// checked before decompressing; see [`decompress_and`].
const MAX_DECOMPRESSED_BATCH_BYTES: u64 = 256 * 1024 * 1024;

/// A record-level parse failure; the `&'static str` says what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordError(pub &'static str);

/// Cursor over a byte slice with Kafka's primitive decoders.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Reads one signed byte.
    pub(crate) fn read_i8(&mut self) -> Result<i8, RecordError> {
        let (b, rest) = self
            .buf
            .split_first()
            .ok_or(RecordError("truncated record attributes"))?;
        self.buf = rest;
        Ok(i8::from_be_bytes([*b]))
    }

    /// Reads a base-128 unsigned varint of at most `max_bytes` bytes.
    fn read_unsigned(&mut self, max_bytes: u32) -> Result<u64, RecordError> {
        let mut value: u64 = 0;
        for i in 0..max_bytes {
            let (b, rest) = self
                .buf
                .split_first()
                .ok_or(RecordError("truncated varint"))?;
            self.buf = rest;
            // i <= 9, so the shift is < 64; bits shifted out are dropped like
            // Kafka's int/long arithmetic does.
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError("varint is too long"))
    }

    /// Reads a zigzag-encoded 32-bit varint (at most 5 bytes, like Kafka).
    pub(crate) fn read_varint(&mut self) -> Result<i32, RecordError> {
        // Truncation to 32 bits mirrors Kafka's int arithmetic.
        let raw = self.read_unsigned(5)? as u32;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// Reads a zigzag-encoded 64-bit varint (at most 10 bytes).
    pub(crate) fn read_varlong(&mut self) -> Result<i64, RecordError> {
        let raw = self.read_unsigned(10)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Consumes exactly `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if n > self.buf.len() {
            return Err(RecordError(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// Skips a nullable byte field whose varint length was already read
    /// (`-1` = null).
    fn skip_nullable(&mut self, len: i32, what: &'static str) -> Result<(), RecordError> {
        match len {
            -1 => Ok(()),
            n if n < 0 => Err(RecordError(what)),
            n => self.take(n as usize, what).map(|_| ()),
        }
    }
}

/// The fields of one record that the broker cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    /// Delta from the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Delta from the batch's base offset.
    pub offset_delta: i32,
}

/// Reads one record (length-prefixed) and checks that its fields exactly fill
/// the declared length.
pub(crate) fn read_record(reader: &mut Reader<'_>) -> Result<RecordMeta, RecordError> {
    let len = reader.read_varint()?;
    if len < 0 {
        return Err(RecordError("negative record length"));
    }
    let body = reader.take(len as usize, "record length exceeds the batch")?;
    let mut r = Reader::new(body);
    let _attributes = r.read_i8()?;
    let timestamp_delta = r.read_varlong()?;
    let offset_delta = r.read_varint()?;
    let key_len = r.read_varint()?;
    r.skip_nullable(key_len, "bad record key length")?;
    let value_len = r.read_varint()?;
    r.skip_nullable(value_len, "bad record value length")?;
    let headers = r.read_varint()?;
    if headers < 0 {
        return Err(RecordError("negative record header count"));
    }
    // Each header consumes at least two bytes, so a huge count just runs out
    // of input quickly; nothing is allocated per header.
    for _ in 0..headers {
        let key_len = r.read_varint()?;
        if key_len < 0 {
            return Err(RecordError("null or negative header key length"));
        }
        r.take(key_len as usize, "bad header key length")?;
        let value_len = r.read_varint()?;
        r.skip_nullable(value_len, "bad header value length")?;
    }
    if r.remaining() != 0 {
        return Err(RecordError("record length does not match its fields"));
    }
    Ok(RecordMeta {
        timestamp_delta,
        offset_delta,
    })
}

/// Iterator over at most `count` records of an uncompressed records section.
/// Stops after the first error.
pub(crate) struct Records<'a> {
    reader: Reader<'a>,
    left: u32,
    failed: bool,
}

impl<'a> Records<'a> {
    /// Walks `count` records in `payload` (the bytes after the batch header,
    /// already decompressed).
    pub(crate) fn new(payload: &'a [u8], count: i32) -> Self {
        Records {
            reader: Reader::new(payload),
            left: u32::try_from(count).unwrap_or(0),
            failed: false,
        }
    }

    /// Bytes left after the records consumed so far.
    pub(crate) fn remaining_bytes(&self) -> usize {
        self.reader.remaining()
    }
}

impl Iterator for Records<'_> {
    type Item = Result<RecordMeta, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.left == 0 {
            return None;
        }
        self.left -= 1;
        let res = read_record(&mut self.reader);
        self.failed = res.is_err();
        Some(res)
    }
}

/// Finds the first record of a batch for which `pred(offset, timestamp)`
/// holds and returns its `(offset, timestamp)`.
///
/// `batch` is the whole batch (header included) as stored. LogAppendTime
/// batches are answered from the header alone (every record carries the
/// batch's max timestamp); otherwise the records are walked, decompressing
/// first if needed. This is an admin-path helper (ListOffsets).
pub(crate) fn find_record(
    batch: &[u8],
    header: &BatchHeader,
    mut pred: impl FnMut(i64, i64) -> bool,
) -> Result<Option<(i64, i64)>, LogError> {
    let count = header.records_count;
    if header.timestamp_type() == TimestampType::LogAppendTime {
        let ts = header.max_timestamp;
        for delta in 0..i64::from(count.max(0)) {
            let offset = header.base_offset.saturating_add(delta);
            if pred(offset, ts) {
                return Ok(Some((offset, ts)));
            }
        }
        return Ok(None);
    }
    let payload = batch.get(BATCH_HEADER_LEN..).unwrap_or_default();
    let walk = |records: &[u8]| -> Result<Option<(i64, i64)>, LogError> {
        for rec in Records::new(records, count) {
            let rec = rec.map_err(|e| {
                LogError::CorruptMessage(format!("batch at offset {}: {}", header.base_offset, e.0))
            })?;
            let offset = header
                .base_offset
                .saturating_add(i64::from(rec.offset_delta));
            let ts = header.base_timestamp.saturating_add(rec.timestamp_delta);
            if pred(offset, ts) {
                return Ok(Some((offset, ts)));
            }
        }
        Ok(None)
    };
    decompress_and(header.compression()?, payload, walk)?
}

/// Runs `f` over the decompressed records section of a batch.
///
/// Only the admin path (ListOffsets by time / max timestamp) decompresses. Output is capped at
/// [`MAX_DECOMPRESSED_BATCH_BYTES`] so a small "decompression bomb" stored by a producer cannot exhaust memory:
/// gzip, lz4 and zstd are streamed through `Read::take`; snappy's declared lengths are checked first because
/// its decoder sizes its buffer from them.
pub(crate) fn decompress_and<R>(
    codec: Compression,
    payload: &[u8],
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, LogError> {
    let bad = |e: &dyn std::fmt::Display| {
        LogError::CorruptMessage(format!("cannot decompress {codec:?} batch: {e}"))
    };
    let out = match codec {
        Compression::None => return Ok(f(payload)),
        Compression::Snappy => {
            check_snappy_size(payload)?;
            let mut src = payload;
            return Snappy::decompress(&mut src, |b: &mut Bytes| Ok(f(b))).map_err(|e| bad(&e));
        }
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(payload)),
        Compression::Lz4 => lz4::Decoder::new(payload).and_then(read_bounded),
        Compression::Zstd => zstd::stream::read::Decoder::new(payload).and_then(read_bounded),
    };
    match out {
        Ok(data) => Ok(f(&data)),
        Err(e) => Err(bad(&e)),
    }
}

/// Reads a decoder to the end, failing once the output passes [`MAX_DECOMPRESSED_BATCH_BYTES`].
fn read_bounded(decoder: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    decoder
        .take(MAX_DECOMPRESSED_BATCH_BYTES + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_DECOMPRESSED_BATCH_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "decompressed batch is too large",
        ));
    }
    Ok(out)
}

/// Xerial framing header that Kafka's Java snappy stream writes.
const XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// Sums the uncompressed lengths declared by a (possibly xerial-framed) snappy
/// payload and rejects it if too large or unparseable.
fn check_snappy_size(payload: &[u8]) -> Result<(), LogError> {
    let bad = |msg: &str| LogError::CorruptMessage(format!("snappy batch: {msg}"));
    let mut total: u64 = 0;
    if let Some(mut rest) = payload.strip_prefix(&XERIAL_MAGIC[..]) {
        while !rest.is_empty() {
            let (len, tail) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| bad("truncated block length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            if len > tail.len() {
                return Err(bad("block length exceeds the batch"));
            }
            let (block, tail) = tail.split_at(len);
            total = total
                .saturating_add(snappy_block_len(block).ok_or_else(|| bad("bad block header"))?);
            rest = tail;
        }
    } else {
        total = snappy_block_len(payload).ok_or_else(|| bad("bad header"))?;
    }
    if total > MAX_DECOMPRESSED_BATCH_BYTES {
        return Err(bad("declared uncompressed size is too large"));
    }
    Ok(())
}

/// The uncompressed length a raw snappy block declares (an unsigned varint).
fn snappy_block_len(block: &[u8]) -> Option<u64> {
    Reader::new(block).read_unsigned(5).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decompression_is_bounded() {
        // 300 MB of zeros compress to a few KB; decompressing must stop at the cap, not allocate it all.
        use std::io::Read;
        let bomb = zstd::stream::encode_all(std::io::repeat(0).take(300 << 20), 3).unwrap();
        assert!(bomb.len() < 1 << 20);
        let r = decompress_and(Compression::Zstd, &bomb, |b| b.len());
        assert!(matches!(r, Err(LogError::CorruptMessage(_))), "{r:?}");
        let small = zstd::stream::encode_all(&b"hello"[..], 3).unwrap();
        assert_eq!(
            decompress_and(Compression::Zstd, &small, |b| b.to_vec()).unwrap(),
            b"hello"
        );
    }

    fn zigzag32(v: i32) -> Vec<u8> {
        let mut raw = ((v << 1) ^ (v >> 31)) as u32;
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

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, -1, 63, -64, 64, 300, i32::MAX, i32::MIN] {
            let bytes = zigzag32(v);
            assert_eq!(Reader::new(&bytes).read_varint().unwrap(), v);
            assert_eq!(Reader::new(&bytes).read_varlong().unwrap(), i64::from(v));
        }
    }

    #[test]
    fn varint_errors() {
        assert!(Reader::new(&[]).read_varint().is_err());
        assert!(Reader::new(&[0x80]).read_varint().is_err());
        assert!(Reader::new(&[0xff; 6]).read_varint().is_err());
        assert!(Reader::new(&[0xff; 11]).read_varlong().is_err());
    }

    #[test]
    fn record_walk_checks_lengths() {
        // length 7: attrs 0, ts delta 0, offset delta 0, key null, value "a", 0 headers
        let mut rec = zigzag32(7);
        rec.extend([0, 0, 0]);
        rec.extend(zigzag32(-1));
        rec.extend(zigzag32(1));
        rec.push(b'a');
        rec.extend(zigzag32(0));
        assert_eq!(
            read_record(&mut Reader::new(&rec)).unwrap(),
            RecordMeta {
                timestamp_delta: 0,
                offset_delta: 0
            }
        );
        // Declared length too long for the input.
        let mut long = rec.clone();
        long[0] = 20;
        assert!(read_record(&mut Reader::new(&long)).is_err());
        // Declared length longer than the fields: trailing bytes inside the record.
        let mut padded = zigzag32(8);
        padded.extend(&rec[1..]);
        padded.push(0);
        assert!(read_record(&mut Reader::new(&padded)).is_err());
    }

    #[test]
    fn snappy_size_check() {
        // raw snappy claiming 2^32-1 bytes
        assert!(check_snappy_size(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend(2u32.to_be_bytes());
        framed.extend([0x05, 0x00]);
        assert!(check_snappy_size(&framed).is_ok());
        framed.extend(9u32.to_be_bytes());
        assert!(check_snappy_size(&framed).is_err());
    }
}
