//! The records the transaction coordinator writes to `__transaction_state`, in Kafka's formats
//! (`transaction-coordinator/src/main/resources/common/message/TransactionLog{Key,Value}.json`), so a
//! partition written by Vltava reads like one written by Kafka and the other way round.
//!
//! kafka-protocol does not ship these coordinator record types and keeps its primitive encoders private, so
//! they are encoded here with `bytes`, as `group/records.rs` does. Every key and value starts with an `int16`
//! version:
//! - key version 0: `TransactionLogKey` {transactionalId: string};
//! - value version 0 (non-flexible) and 1 (flexible, written): `TransactionLogValue` {producerId: int64,
//!   producerEpoch: int16, transactionTimeoutMs: int32, transactionStatus: int8, transactionPartitions:
//!   nullable [{topic: string, partitionIds: [int32]}], transactionLastUpdateTimestampMs: int64,
//!   transactionStartTimestampMs: int64}, and in version 1 the tagged fields previousProducerId (tag 0,
//!   default -1), nextProducerId (tag 1, default -1), clientTransactionVersion (tag 2, default 0).
//!
//! A record without a value (a tombstone) removes the transactional id. Decoding reads untrusted disk bytes:
//! every read is bounds-checked and nothing is allocated from a length field before the bytes are there.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMetadata, TxnState, NO_PRODUCER_EPOCH, NO_PRODUCER_ID};

/// The value version written (flexible, so previous/next producer ids survive a load).
pub const VALUE_VERSION: i16 = 1;

/// A malformed record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed __transaction_state record: {0}")]
pub struct TxnRecordError(pub &'static str);

/// One record of `__transaction_state`: a transactional id and its metadata, or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// The transactional id.
    pub transactional_id: String,
    /// The metadata; `None` removes the id.
    pub value: Option<TxnMetadata>,
}

impl TxnRecord {
    /// Encodes key and value (`None` for a tombstone).
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut k = BytesMut::new();
        k.put_i16(0);
        put_str(&mut k, &self.transactional_id, false);
        (k.freeze(), self.value.as_ref().map(encode_value))
    }

    /// Decodes a record. `Ok(None)` is a key of a version we do not know (skipped, as Kafka skips them).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<TxnRecord>, TxnRecordError> {
        let mut k = key;
        let version = get_i16(&mut k)?;
        if version != 0 {
            return Ok(None);
        }
        let transactional_id = get_str(&mut k, false)?;
        let value = match value {
            Some(v) => Some(decode_value(v)?),
            None => None,
        };
        Ok(Some(TxnRecord {
            transactional_id,
            value,
        }))
    }
}

fn encode_value(m: &TxnMetadata) -> Bytes {
    let flexible = VALUE_VERSION >= 1;
    let mut b = BytesMut::new();
    b.put_i16(VALUE_VERSION);
    b.put_i64(m.producer_id);
    b.put_i16(m.producer_epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.state.id());
    // Group the (ordered) partitions by topic.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &m.partitions {
        match topics.last_mut() {
            Some((last, ps)) if *last == t.as_str() => ps.push(*p),
            _ => topics.push((t.as_str(), vec![*p])),
        }
    }
    put_len(&mut b, topics.len(), flexible);
    for (t, ps) in &topics {
        put_str(&mut b, t, flexible);
        put_len(&mut b, ps.len(), flexible);
        for p in ps {
            b.put_i32(*p);
        }
        if flexible {
            put_varint(&mut b, 0); // no tagged fields in the partition struct
        }
    }
    b.put_i64(m.last_update_ms);
    b.put_i64(m.start_ms);
    if flexible {
        // Tagged fields, in tag order, only when not the default (as Kafka's generated code writes them).
        let mut tags: Vec<(u32, Vec<u8>)> = Vec::new();
        if m.prev_producer_id != NO_PRODUCER_ID {
            tags.push((0, m.prev_producer_id.to_be_bytes().to_vec()));
        }
        if m.next_producer_id != NO_PRODUCER_ID {
            tags.push((1, m.next_producer_id.to_be_bytes().to_vec()));
        }
        if m.client_txn_version != 0 {
            tags.push((2, m.client_txn_version.to_be_bytes().to_vec()));
        }
        put_varint(&mut b, 3u32.min(u32::try_from(tags.len()).unwrap_or(3)));
        for (tag, data) in tags {
            put_varint(&mut b, tag);
            put_varint(&mut b, u32::try_from(data.len()).unwrap_or(8)); // 2 or 8 bytes
            b.put_slice(&data);
        }
    }
    b.freeze()
}

fn decode_value(mut buf: &[u8]) -> Result<TxnMetadata, TxnRecordError> {
    let r = &mut buf;
    let version = get_i16(r)?;
    if !(0..=1).contains(&version) {
        return Err(TxnRecordError("unknown TransactionLogValue version"));
    }
    let flexible = version >= 1;
    let producer_id = get_i64(r)?;
    let producer_epoch = get_i16(r)?;
    let timeout_ms = get_i32(r)?;
    let state = TxnState::from_id(get_i8(r)?).ok_or(TxnRecordError("unknown state"))?;
    let mut partitions = BTreeSet::new();
    if let Some(topics) = get_len(r, flexible)? {
        for _ in 0..topics {
            let topic = get_str(r, flexible)?;
            let n = get_len(r, flexible)?.ok_or(TxnRecordError("null partition list"))?;
            for _ in 0..n {
                partitions.insert((topic.clone(), get_i32(r)?));
            }
            if flexible {
                skip_tagged(r)?;
            }
        }
    }
    let last_update_ms = get_i64(r)?;
    let start_ms = get_i64(r)?;
    let mut m = TxnMetadata {
        producer_id,
        prev_producer_id: NO_PRODUCER_ID,
        next_producer_id: NO_PRODUCER_ID,
        producer_epoch,
        last_producer_epoch: NO_PRODUCER_EPOCH,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
        client_txn_version: 0,
    };
    if flexible {
        let n = get_varint(r)?;
        for _ in 0..n {
            let tag = get_varint(r)?;
            let size = get_varint(r)? as usize;
            if r.remaining() < size {
                return Err(TxnRecordError("truncated tagged field"));
            }
            let (data, rest) = r.split_at(size);
            *r = rest;
            let mut d = data;
            match tag {
                0 => m.prev_producer_id = get_i64(&mut d)?,
                1 => m.next_producer_id = get_i64(&mut d)?,
                2 => m.client_txn_version = get_i16(&mut d)?,
                _ => {} // unknown tags are skipped, as Kafka's generated readers do
            }
        }
    }
    Ok(m)
}

fn put_varint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    b.put_u8(v.to_le_bytes()[0]);
}

fn put_len(b: &mut BytesMut, len: usize, flexible: bool) {
    // Lengths here are bounded by MAX_PARTITIONS_PER_TXN and topic-name limits, far below u32/i32 range.
    let len = u32::try_from(len).unwrap_or(u32::MAX - 1);
    if flexible {
        put_varint(b, len + 1);
    } else {
        b.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
    }
}

fn put_str(b: &mut BytesMut, s: &str, flexible: bool) {
    // Transactional ids and topic names are bounded when received (topic names 249 bytes; transactional
    // ids by the request size and checked against i16::MAX by the handler); a longer one is cut.
    let len = s.len().min(i16::MAX as usize);
    if flexible {
        put_len(b, len, true);
    } else {
        b.put_i16(i16::try_from(len).unwrap_or(i16::MAX)); // len <= i16::MAX above
    }
    b.put_slice(&s.as_bytes()[..len]);
}

fn get_varint(r: &mut &[u8]) -> Result<u32, TxnRecordError> {
    let mut v: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = r
            .try_get_u8()
            .map_err(|_| TxnRecordError("truncated varint"))?;
        v |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(TxnRecordError("varint too long"))
}

fn get_i8(r: &mut &[u8]) -> Result<i8, TxnRecordError> {
    r.try_get_i8().map_err(|_| TxnRecordError("truncated int8"))
}
fn get_i16(r: &mut &[u8]) -> Result<i16, TxnRecordError> {
    r.try_get_i16()
        .map_err(|_| TxnRecordError("truncated int16"))
}
fn get_i32(r: &mut &[u8]) -> Result<i32, TxnRecordError> {
    r.try_get_i32()
        .map_err(|_| TxnRecordError("truncated int32"))
}
fn get_i64(r: &mut &[u8]) -> Result<i64, TxnRecordError> {
    r.try_get_i64()
        .map_err(|_| TxnRecordError("truncated int64"))
}

/// An array length; `None` is a null array.
fn get_len(r: &mut &[u8], flexible: bool) -> Result<Option<usize>, TxnRecordError> {
    let n = if flexible {
        match get_varint(r)? {
            0 => return Ok(None),
            n => i64::from(n) - 1,
        }
    } else {
        i64::from(get_i32(r)?)
    };
    if n < 0 {
        return Ok(None);
    }
    // Each element takes at least 4 bytes: a length beyond what is left is a lie, refused before looping.
    let n = usize::try_from(n).map_err(|_| TxnRecordError("bad length"))?;
    if n > r.remaining() / 4 + 1 {
        return Err(TxnRecordError("array longer than the record"));
    }
    Ok(Some(n))
}

fn get_str(r: &mut &[u8], flexible: bool) -> Result<String, TxnRecordError> {
    let len = if flexible {
        match get_varint(r)? {
            0 => return Err(TxnRecordError("null string")),
            n => (n - 1) as usize,
        }
    } else {
        usize::try_from(get_i16(r)?).map_err(|_| TxnRecordError("null string"))?
    };
    if r.remaining() < len {
        return Err(TxnRecordError("truncated string"));
    }
    let (s, rest) = r.split_at(len);
    *r = rest;
    String::from_utf8(s.to_vec()).map_err(|_| TxnRecordError("string is not UTF-8"))
}

fn skip_tagged(r: &mut &[u8]) -> Result<(), TxnRecordError> {
    let n = get_varint(r)?;
    for _ in 0..n {
        let _tag = get_varint(r)?;
        let size = get_varint(r)? as usize;
        if r.remaining() < size {
            return Err(TxnRecordError("truncated tagged field"));
        }
        r.advance(size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TxnMetadata {
        let mut m = TxnMetadata::new(4242, 60_000, 1_700_000_000_000);
        m.producer_epoch = 3;
        m.state = TxnState::Ongoing;
        m.partitions = [
            ("a".to_string(), 0),
            ("a".to_string(), 2),
            ("b".to_string(), 1),
        ]
        .into_iter()
        .collect();
        m.start_ms = 1_700_000_000_001;
        m.prev_producer_id = 17;
        m.next_producer_id = 99;
        m.client_txn_version = 2;
        m
    }

    #[test]
    fn round_trip_keeps_everything_but_the_last_epoch() {
        let mut m = sample();
        m.last_producer_epoch = 2;
        let rec = TxnRecord {
            transactional_id: "tx-1".into(),
            value: Some(m.clone()),
        };
        let (k, v) = rec.encode();
        let back = TxnRecord::decode(&k, v.as_deref()).unwrap().unwrap();
        m.last_producer_epoch = NO_PRODUCER_EPOCH; // not in Kafka's schema
        assert_eq!(back.value, Some(m));
        assert_eq!(back.transactional_id, "tx-1");
        let tomb = TxnRecord {
            transactional_id: "tx-1".into(),
            value: None,
        };
        let (k, v) = tomb.encode();
        assert_eq!(TxnRecord::decode(&k, v.as_deref()).unwrap(), Some(tomb));
    }

    /// The exact bytes of Kafka's schema: key `00 00 | 00 04 "tx-1"`; value version 1 with compact
    /// strings/arrays and the three tagged fields.
    #[test]
    fn bytes_follow_kafkas_schema() {
        let (k, v) = TxnRecord {
            transactional_id: "tx-1".into(),
            value: Some(sample()),
        }
        .encode();
        assert_eq!(&k[..], b"\x00\x00\x00\x04tx-1");
        let mut want = Vec::new();
        want.extend(1i16.to_be_bytes());
        want.extend(4242i64.to_be_bytes());
        want.extend(3i16.to_be_bytes());
        want.extend(60_000i32.to_be_bytes());
        want.push(1); // Ongoing
        want.push(3); // two topics, compact
        want.extend([2, b'a', 3]); // "a", two partitions
        want.extend(0i32.to_be_bytes());
        want.extend(2i32.to_be_bytes());
        want.push(0); // no tags
        want.extend([2, b'b', 2]);
        want.extend(1i32.to_be_bytes());
        want.push(0);
        want.extend(1_700_000_000_000i64.to_be_bytes());
        want.extend(1_700_000_000_001i64.to_be_bytes());
        want.push(3); // three tagged fields
        want.extend([0, 8]);
        want.extend(17i64.to_be_bytes());
        want.extend([1, 8]);
        want.extend(99i64.to_be_bytes());
        want.extend([2, 2]);
        want.extend(2i16.to_be_bytes());
        assert_eq!(v.unwrap().to_vec(), want);
    }

    /// Version 0 (what Kafka writes for transaction version < 2): non-flexible, no tagged fields.
    #[test]
    fn reads_version_0() {
        let mut v = Vec::new();
        v.extend(0i16.to_be_bytes());
        v.extend(5i64.to_be_bytes());
        v.extend(1i16.to_be_bytes());
        v.extend(1000i32.to_be_bytes());
        v.push(4); // CompleteCommit
        v.extend((-1i32).to_be_bytes()); // null partitions
        v.extend(10i64.to_be_bytes());
        v.extend(9i64.to_be_bytes());
        let r = TxnRecord::decode(b"\x00\x00\x00\x01x", Some(&v))
            .unwrap()
            .unwrap();
        let m = r.value.unwrap();
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.timeout_ms),
            (5, 1, 1000)
        );
        assert_eq!(m.state, TxnState::CompleteCommit);
        assert!(m.partitions.is_empty());
        assert_eq!((m.last_update_ms, m.start_ms), (10, 9));
        assert_eq!(m.prev_producer_id, NO_PRODUCER_ID);
    }

    /// Every truncation of a valid value is an error, never a panic; lying lengths are refused.
    #[test]
    fn damaged_values_are_errors() {
        let (k, v) = TxnRecord {
            transactional_id: "tx-1".into(),
            value: Some(sample()),
        }
        .encode();
        let v = v.unwrap();
        for cut in 0..v.len() {
            assert!(TxnRecord::decode(&k, Some(&v[..cut])).is_err(), "cut {cut}");
        }
        for cut in 0..k.len() {
            assert!(TxnRecord::decode(&k[..cut], None).is_err(), "key cut {cut}");
        }
        let mut lying = v.to_vec();
        lying[17] = 0xff; // the topic count varint, now "very long"
        lying.insert(18, 0x7f);
        assert!(TxnRecord::decode(&k, Some(&lying)).is_err());
        // Unknown key versions are skipped.
        assert_eq!(TxnRecord::decode(b"\x00\x05\x00\x00", None), Ok(None));
        // Unknown state ids are refused.
        let mut bad = v.to_vec();
        bad[16] = 9;
        assert!(TxnRecord::decode(&k, Some(&bad)).is_err());
    }
}
