//! The COMMIT/ABORT control batch the transaction coordinator's `MarkerWriter` appends to each partition of a transaction
//! (Kafka's `EndTransactionMarker` in a `MemoryRecords.withEndTransactionMarker` batch).
//!
//! One v2 batch, uncompressed, with the transactional and control attributes, the producer id and epoch of the
//! transaction, no sequence, and one record: key `int16 version (0), int16 type (0 = ABORT, 1 = COMMIT)`,
//! value `int16 version (0), int32 coordinator epoch`. The partition's leader append stamps offsets and the
//! leader epoch, as for any batch. [`parse_marker`] reads one back (follower appends, replay at load).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Largest control batch [`parse_marker`] decodes: a marker is about 80 bytes, so anything much bigger is not
/// one (and decoding it would cost memory for nothing).
pub const MAX_MARKER_BATCH_BYTES: usize = 1024;

/// The control record type of an ABORT marker.
pub const ABORT: i16 = 0;
/// The control record type of a COMMIT marker.
pub const COMMIT: i16 = 1;

/// Encodes the marker batch; `None` only if the encoder refuses (it cannot for one small record).
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    now: i64,
) -> Option<Bytes> {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(if commit { COMMIT } else { ABORT });
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(coordinator_epoch);
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .ok()?;
    Some(buf.freeze())
}

/// Reads a control record's key: `Some(true)` for COMMIT, `Some(false)` for ABORT, `None` for anything else
/// (an unknown control type or version, which Kafka's consumers skip too).
pub fn marker_kind(key: &[u8]) -> Option<bool> {
    match key {
        [0, 0, 0, 1, ..] => Some(true),
        [0, 0, 0, 0, ..] => Some(false),
        _ => None,
    }
}

/// What a stored marker says: `(commit, coordinator_epoch)`. `None` for a batch that is not a readable marker
/// (too big, undecodable, an unknown control type or version): such a batch closes nothing.
pub fn parse_marker(batch: &[u8]) -> Option<(bool, i32)> {
    if batch.len() > MAX_MARKER_BATCH_BYTES {
        return None;
    }
    let mut buf = Bytes::copy_from_slice(batch);
    let set = RecordBatchDecoder::decode(&mut buf).ok()?;
    let r = set.records.first()?;
    if !r.control {
        return None;
    }
    let commit = marker_kind(r.key.as_deref()?)?;
    let coordinator_epoch = match r.value.as_deref() {
        Some([0, 0, a, b, c, d, ..]) => i32::from_be_bytes([*a, *b, *c, *d]),
        _ => return None,
    };
    Some((commit, coordinator_epoch))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::RecordBatchDecoder;

    use super::*;
    use crate::log::batch::BatchHeader;

    #[test]
    fn marker_batch_is_a_transactional_control_batch() {
        let bytes = control_batch(42, 3, true, 7, 1_000).unwrap();
        let h = BatchHeader::parse(&bytes).unwrap();
        assert!(h.is_control() && h.is_transactional());
        assert_eq!((h.producer_id, h.producer_epoch), (42, 3));
        let mut buf = bytes.clone();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        assert_eq!(set.records.len(), 1);
        let r = &set.records[0];
        assert!(r.control && r.transactional);
        assert_eq!(r.sequence, -1);
        assert_eq!(r.key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
        assert_eq!(r.value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 7][..]));
        assert_eq!(marker_kind(r.key.as_deref().unwrap()), Some(true));
        let abort = control_batch(42, 3, false, 7, 1_000).unwrap();
        let set = RecordBatchDecoder::decode(&mut abort.clone()).unwrap();
        assert_eq!(
            marker_kind(set.records[0].key.as_deref().unwrap()),
            Some(false)
        );
        assert_eq!(parse_marker(&bytes), Some((true, 7)));
        assert_eq!(parse_marker(&abort), Some((false, 7)));
        assert_eq!(parse_marker(&bytes[..bytes.len() - 1]), None);
        assert_eq!(parse_marker(b"garbage"), None);
        assert_eq!(marker_kind(&[0, 1, 0, 0]), None);
        assert_eq!(marker_kind(&[0]), None);
    }
}
