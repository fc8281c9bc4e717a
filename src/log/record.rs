//! Allocation-free walking of the records inside one v2 batch.
//!
//! Owns: the varint decoders and the record parser, generic over a byte
//! [`Source`] (a slice, or a decompressing stream from `decompress.rs`), shared
//! by produce-time validation (`batch.rs`, every batch) and the admin-path
//! record search (`segment.rs`: ListOffsets by timestamp / max timestamp).
//!
//! Everything here reads untrusted bytes (network or disk), so every read is
//! bounds-checked and returns an error instead of panicking, and nothing
//! allocates based on a length field.

use super::batch::{BatchHeader, Compression, TimestampType, BATCH_HEADER_LEN};
use super::decompress::StreamSource;
use super::error::LogError;

/// A record-level parse failure; the `&'static str` says what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordError(pub &'static str);

/// Where record bytes come from: a slice (uncompressed batches, stored batches) or a decompressing stream
/// (`decompress::StreamSource`). The record parser is generic over it, so both walk records with the same code.
pub(crate) trait Source {
    /// The next byte; `Err` once the input is exhausted (or failed).
    fn byte(&mut self) -> Result<u8, RecordError>;
    /// Consumes exactly `n` bytes without keeping them.
    fn skip(&mut self, n: usize, what: &'static str) -> Result<(), RecordError>;
    /// True if no byte is left (a stream source reads ahead to find out).
    fn at_end(&mut self) -> bool;
}

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
        let b = self
            .byte()
            .map_err(|_| RecordError("truncated record attributes"))?;
        Ok(i8::from_be_bytes([b]))
    }

    /// Reads a zigzag-encoded 32-bit varint.
    pub(crate) fn read_varint(&mut self) -> Result<i32, RecordError> {
        read_varint(self)
    }

    /// Reads a zigzag-encoded 64-bit varint.
    pub(crate) fn read_varlong(&mut self) -> Result<i64, RecordError> {
        read_varlong(self)
    }

    /// Consumes exactly `n` bytes and borrows them (the cleaner keeps keys and record bodies it copies).
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if n > self.buf.len() {
            return Err(RecordError(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
}

impl Source for Reader<'_> {
    fn byte(&mut self) -> Result<u8, RecordError> {
        let (b, rest) = self
            .buf
            .split_first()
            .ok_or(RecordError("truncated record"))?;
        self.buf = rest;
        Ok(*b)
    }

    fn skip(&mut self, n: usize, what: &'static str) -> Result<(), RecordError> {
        self.buf = self.buf.get(n..).ok_or(RecordError(what))?;
        Ok(())
    }

    fn at_end(&mut self) -> bool {
        self.buf.is_empty()
    }
}

/// A record body: a source limited to the record's declared length, so a field that runs past it is caught
/// without buffering the record.
struct Body<'s, S> {
    src: &'s mut S,
    left: usize,
}

impl<S: Source> Source for Body<'_, S> {
    fn byte(&mut self) -> Result<u8, RecordError> {
        self.left = self
            .left
            .checked_sub(1)
            .ok_or(RecordError("record fields run past its length"))?;
        self.src.byte()
    }

    fn skip(&mut self, n: usize, what: &'static str) -> Result<(), RecordError> {
        self.left = self.left.checked_sub(n).ok_or(RecordError(what))?;
        self.src.skip(n, what)
    }

    fn at_end(&mut self) -> bool {
        self.left == 0
    }
}

/// Reads a base-128 unsigned varint of at most `max_bytes` bytes.
fn read_unsigned(src: &mut impl Source, max_bytes: u32) -> Result<u64, RecordError> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let b = src.byte().map_err(|_| RecordError("truncated varint"))?;
        // i <= 9, so the shift is < 64; bits shifted out are dropped like Kafka's int/long arithmetic does.
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(RecordError("varint is too long"))
}

/// Reads a zigzag-encoded 32-bit varint (at most 5 bytes, like Kafka).
fn read_varint(src: &mut impl Source) -> Result<i32, RecordError> {
    // Truncation to 32 bits mirrors Kafka's int arithmetic.
    #[allow(clippy::cast_possible_truncation)]
    let raw = read_unsigned(src, 5)? as u32;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag-encoded 64-bit varint (at most 10 bytes).
fn read_varlong(src: &mut impl Source) -> Result<i64, RecordError> {
    let raw = read_unsigned(src, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Skips a nullable byte field whose varint length was already read (`-1` = null).
fn skip_nullable(src: &mut impl Source, len: i32, what: &'static str) -> Result<(), RecordError> {
    match len {
        -1 => Ok(()),
        n if n < 0 => Err(RecordError(what)),
        n => src.skip(n as usize, what),
    }
}

/// The fields of one record that the broker cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    /// Delta from the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Delta from the batch's base offset.
    pub offset_delta: i32,
    /// False for a null key (compacted topics refuse those).
    pub has_key: bool,
}

/// Reads one record (length-prefixed) and checks that its fields exactly fill the declared length. Key,
/// value and header bytes are skipped, never buffered, so a stream source needs no record-sized memory.
pub(crate) fn read_record(src: &mut impl Source) -> Result<RecordMeta, RecordError> {
    let len = read_varint(src)?;
    if len < 0 {
        return Err(RecordError("negative record length"));
    }
    let mut r = Body {
        src,
        left: len as usize,
    };
    let _attributes = r
        .byte()
        .map_err(|_| RecordError("truncated record attributes"))?;
    let timestamp_delta = read_varlong(&mut r)?;
    let offset_delta = read_varint(&mut r)?;
    let record_key_len = read_varint(&mut r)?;
    skip_nullable(&mut r, record_key_len, "bad record key length")?;
    let value_len = read_varint(&mut r)?;
    skip_nullable(&mut r, value_len, "bad record value length")?;
    let headers = read_varint(&mut r)?;
    if headers < 0 {
        return Err(RecordError("negative record header count"));
    }
    // Each header consumes at least two bytes of the declared length, so a huge count runs out of it
    // quickly; nothing is allocated per header.
    for _ in 0..headers {
        let key_len = read_varint(&mut r)?;
        if key_len < 0 {
            return Err(RecordError("null or negative header key length"));
        }
        r.skip(key_len as usize, "bad header key length")?;
        let value_len = read_varint(&mut r)?;
        skip_nullable(&mut r, value_len, "bad header value length")?;
    }
    if r.left != 0 {
        return Err(RecordError("record length does not match its fields"));
    }
    Ok(RecordMeta {
        timestamp_delta,
        offset_delta,
        has_key: record_key_len >= 0,
    })
}

/// Finds the first record of a batch for which `pred(offset, timestamp)`
/// holds and returns its `(offset, timestamp)`.
///
/// `batch` is the whole batch (header included) as stored. LogAppendTime
/// batches are answered from the header alone (every record carries the
/// batch's max timestamp); otherwise the records are walked, streaming them
/// through the codec if compressed (bounded as on produce, see
/// `decompress.rs`). This is an admin-path helper (ListOffsets).
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
    let corrupt = |msg: &dyn std::fmt::Display| {
        LogError::CorruptMessage(format!("batch at offset {}: {msg}", header.base_offset))
    };
    let payload = batch.get(BATCH_HEADER_LEN..).unwrap_or_default();
    let mut walk = |src: &mut dyn FnMut() -> Result<RecordMeta, RecordError>| {
        for _ in 0..count.max(0) {
            let rec = src().map_err(|e| corrupt(&e.0))?;
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
    match header.compression()? {
        Compression::None => {
            let mut reader = Reader::new(payload);
            walk(&mut || read_record(&mut reader))
        }
        codec => {
            let mut stream = StreamSource::open(codec, payload).map_err(|e| corrupt(&e))?;
            let found = walk(&mut || read_record(&mut stream));
            // A decoder failure explains a record error it caused. The walk stops at a match, before reading
            // further, so a record found ahead of damage is still answered.
            match stream.failure() {
                Some(f) => Err(corrupt(&f)),
                None => found,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

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
            assert_eq!(read_varint(&mut Reader::new(&bytes)).unwrap(), v);
            assert_eq!(
                read_varlong(&mut Reader::new(&bytes)).unwrap(),
                i64::from(v)
            );
        }
    }

    #[test]
    fn varint_errors() {
        assert!(read_varint(&mut Reader::new(&[])).is_err());
        assert!(read_varint(&mut Reader::new(&[0x80])).is_err());
        assert!(read_varint(&mut Reader::new(&[0xff; 6])).is_err());
        assert!(read_varlong(&mut Reader::new(&[0xff; 11])).is_err());
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
                offset_delta: 0,
                has_key: false,
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
    fn search_answers_with_a_record_found_before_a_stream_failure() {
        use crate::log::testutil::{self, Codec};
        // Three records of poorly compressible values; the gzip stream is cut after the first one.
        let mut rng = testutil::Rng(11);
        let values: Vec<Vec<u8>> = (0..3)
            .map(|_| (0..4000).map(|_| rng.next() as u8).collect())
            .collect();
        let section: Vec<u8> = values
            .iter()
            .enumerate()
            .flat_map(|(i, v)| testutil::record_bytes(i as i32, i as i64, Some(b"k"), v))
            .collect();
        let payload = testutil::compress(Codec::Gzip, &section);
        let buf = testutil::assemble(Codec::Gzip, &payload[..payload.len() / 2], 3, 2, 100, 102);
        let header = BatchHeader::parse(&buf).unwrap();
        assert_eq!(
            find_record(&buf, &header, |_, ts| ts >= 100).unwrap(),
            Some((0, 100))
        );
        assert!(matches!(
            find_record(&buf, &header, |_, ts| ts >= 102),
            Err(LogError::CorruptMessage(_))
        ));
    }
}
