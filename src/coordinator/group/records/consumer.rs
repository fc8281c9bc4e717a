//! Values of the KIP-848 consumer group records (Kafka's `ConsumerGroup*Value.json`, version 0, flexible):
//! an `int16` version, then the fields with compact strings (`uvarint len+1`, 0 = null), compact arrays
//! (`uvarint n+1`), 16-byte UUIDs and a tagged-field section at the end of every struct. Unknown tagged fields
//! are skipped on read (a newer Kafka may add some); we write only `MetadataHash` (tag 0 of
//! `ConsumerGroupMetadataValue`). Every length is checked against the bytes left before anything is allocated.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::{get_i16, get_i32, get_i64, need, RecordDecodeError};

/// Partitions per topic id (a member's assigned, pending or target partitions).
pub type TopicAssignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// `ConsumerGroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerGroupValue {
    /// The group epoch.
    pub epoch: i32,
    /// Hash of the subscribed topics' metadata (KIP-1101; tagged field 0).
    pub metadata_hash: i64,
}

/// `ConsumerGroupMemberMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerMemberValue {
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Rack.
    pub rack_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Subscribed topic names.
    pub subscribed_topic_names: Vec<String>,
    /// Subscribed topic regular expression.
    pub subscribed_topic_regex: Option<String>,
    /// Rebalance timeout (ms).
    pub rebalance_timeout_ms: i32,
    /// The server assignor the member asked for.
    pub server_assignor: Option<String>,
}

/// `ConsumerGroupCurrentMemberAssignmentValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentAssignmentValue {
    /// The epoch the member must send.
    pub member_epoch: i32,
    /// The epoch before the last bump (a member that lost the response retries with it).
    pub previous_member_epoch: i32,
    /// `MemberState`: 0 stable, 1 unrevoked partitions, 2 unreleased partitions, 3 unknown.
    pub state: i8,
    /// Partitions assigned to (owned by) the member.
    pub assigned: TopicAssignment,
    /// Partitions the member must give up.
    pub pending_revocation: TopicAssignment,
}

#[allow(clippy::cast_possible_truncation)] // masked to 7 bits before the cast
fn put_uvarint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8(((v & 0x7f) as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8((v & 0x7f) as u8);
}

fn get_uvarint(r: &mut &[u8]) -> Result<u64, RecordDecodeError> {
    let mut v: u64 = 0;
    for shift in (0..35).step_by(7) {
        need(r, 1)?;
        let byte = r.get_u8();
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(RecordDecodeError("varint too long"))
}

fn put_compact_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        None => put_uvarint(b, 0),
        Some(s) => {
            put_uvarint(b, s.len() as u64 + 1);
            b.put_slice(s.as_bytes());
        }
    }
}

fn get_compact_nullable_str(r: &mut &[u8]) -> Result<Option<String>, RecordDecodeError> {
    let n = get_uvarint(r)?;
    if n == 0 {
        return Ok(None);
    }
    let len = usize::try_from(n - 1).map_err(|_| RecordDecodeError("string too long"))?;
    need(r, len)?;
    let s =
        String::from_utf8(r[..len].to_vec()).map_err(|_| RecordDecodeError("string not UTF-8"))?;
    r.advance(len);
    Ok(Some(s))
}

fn get_compact_str(r: &mut &[u8]) -> Result<String, RecordDecodeError> {
    get_compact_nullable_str(r)?.ok_or(RecordDecodeError("null string"))
}

/// A compact array's length; each element takes at least `min_elem` bytes, so a count larger than the bytes
/// left is refused before anything is allocated.
fn get_compact_len(r: &mut &[u8], min_elem: usize) -> Result<usize, RecordDecodeError> {
    let n = get_uvarint(r)?;
    if n == 0 {
        return Ok(0); // null array: read as empty
    }
    let len = usize::try_from(n - 1).map_err(|_| RecordDecodeError("array too long"))?;
    if len.saturating_mul(min_elem.max(1)) > r.len() {
        return Err(RecordDecodeError("array longer than the record"));
    }
    Ok(len)
}

fn put_empty_tags(b: &mut BytesMut) {
    put_uvarint(b, 0);
}

/// Reads a tagged-field section; `on_tag(tag, bytes)` sees each field.
fn get_tags(
    r: &mut &[u8],
    mut on_tag: impl FnMut(u64, &[u8]) -> Result<(), RecordDecodeError>,
) -> Result<(), RecordDecodeError> {
    let n = get_uvarint(r)?;
    for _ in 0..n {
        let tag = get_uvarint(r)?;
        let size = usize::try_from(get_uvarint(r)?).map_err(|_| RecordDecodeError("tag size"))?;
        need(r, size)?;
        on_tag(tag, &r[..size])?;
        r.advance(size);
    }
    Ok(())
}

fn put_assignment(b: &mut BytesMut, a: &TopicAssignment) {
    put_uvarint(b, a.len() as u64 + 1);
    for (topic, parts) in a {
        b.put_slice(topic.as_bytes());
        put_uvarint(b, parts.len() as u64 + 1);
        for p in parts {
            b.put_i32(*p);
        }
        put_empty_tags(b);
    }
}

fn get_assignment(r: &mut &[u8]) -> Result<TopicAssignment, RecordDecodeError> {
    let n = get_compact_len(r, 18)?;
    let mut out = TopicAssignment::new();
    for _ in 0..n {
        need(r, 16)?;
        let mut id = [0u8; 16];
        r.copy_to_slice(&mut id);
        let count = get_compact_len(r, 4)?;
        let mut parts = BTreeSet::new();
        for _ in 0..count {
            parts.insert(get_i32(r)?);
        }
        // AssignmentEpochs (tag 0, KIP-1251) and later tags are not used here.
        get_tags(r, |_, _| Ok(()))?;
        out.entry(Uuid::from_bytes(id)).or_default().extend(parts);
    }
    Ok(out)
}

fn version0(r: &mut &[u8], what: &'static str) -> Result<(), RecordDecodeError> {
    if get_i16(r)? != 0 {
        return Err(RecordDecodeError(what));
    }
    Ok(())
}

impl ConsumerGroupValue {
    /// Encodes as `ConsumerGroupMetadataValue` version 0 with the metadata hash in tag 0.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(self.epoch);
        put_uvarint(&mut b, 1);
        put_uvarint(&mut b, 0);
        put_uvarint(&mut b, 8);
        b.put_i64(self.metadata_hash);
        b.freeze()
    }

    /// Decodes `ConsumerGroupMetadataValue` version 0.
    pub fn decode(mut buf: &[u8]) -> Result<ConsumerGroupValue, RecordDecodeError> {
        let r = &mut buf;
        version0(r, "unknown ConsumerGroupMetadataValue version")?;
        let epoch = get_i32(r)?;
        let mut metadata_hash = 0;
        get_tags(r, |tag, mut data| {
            if tag == 0 {
                metadata_hash = get_i64(&mut data)?;
            }
            Ok(())
        })?;
        Ok(ConsumerGroupValue {
            epoch,
            metadata_hash,
        })
    }
}

impl ConsumerMemberValue {
    /// Encodes as `ConsumerGroupMemberMetadataValue` version 0.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(0);
        put_compact_str(&mut b, self.instance_id.as_deref());
        put_compact_str(&mut b, self.rack_id.as_deref());
        put_compact_str(&mut b, Some(&self.client_id));
        put_compact_str(&mut b, Some(&self.client_host));
        put_uvarint(&mut b, self.subscribed_topic_names.len() as u64 + 1);
        for t in &self.subscribed_topic_names {
            put_compact_str(&mut b, Some(t));
        }
        put_compact_str(&mut b, self.subscribed_topic_regex.as_deref());
        b.put_i32(self.rebalance_timeout_ms);
        put_compact_str(&mut b, self.server_assignor.as_deref());
        put_empty_tags(&mut b);
        b.freeze()
    }

    /// Decodes `ConsumerGroupMemberMetadataValue` version 0 (a classic member's metadata, tag 0, is skipped).
    pub fn decode(mut buf: &[u8]) -> Result<ConsumerMemberValue, RecordDecodeError> {
        let r = &mut buf;
        version0(r, "unknown ConsumerGroupMemberMetadataValue version")?;
        let instance_id = get_compact_nullable_str(r)?;
        let rack_id = get_compact_nullable_str(r)?;
        let client_id = get_compact_str(r)?;
        let client_host = get_compact_str(r)?;
        let n = get_compact_len(r, 1)?;
        let mut subscribed_topic_names = Vec::with_capacity(n);
        for _ in 0..n {
            subscribed_topic_names.push(get_compact_str(r)?);
        }
        let subscribed_topic_regex = get_compact_nullable_str(r)?;
        let rebalance_timeout_ms = get_i32(r)?;
        let server_assignor = get_compact_nullable_str(r)?;
        get_tags(r, |_, _| Ok(()))?;
        Ok(ConsumerMemberValue {
            instance_id,
            rack_id,
            client_id,
            client_host,
            subscribed_topic_names,
            subscribed_topic_regex,
            rebalance_timeout_ms,
            server_assignor,
        })
    }
}

impl CurrentAssignmentValue {
    /// Encodes as `ConsumerGroupCurrentMemberAssignmentValue` version 0.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(self.member_epoch);
        b.put_i32(self.previous_member_epoch);
        b.put_i8(self.state);
        put_assignment(&mut b, &self.assigned);
        put_assignment(&mut b, &self.pending_revocation);
        put_empty_tags(&mut b);
        b.freeze()
    }

    /// Decodes `ConsumerGroupCurrentMemberAssignmentValue` version 0.
    pub fn decode(mut buf: &[u8]) -> Result<CurrentAssignmentValue, RecordDecodeError> {
        let r = &mut buf;
        version0(
            r,
            "unknown ConsumerGroupCurrentMemberAssignmentValue version",
        )?;
        let member_epoch = get_i32(r)?;
        let previous_member_epoch = get_i32(r)?;
        need(r, 1)?;
        let state = r.get_i8();
        let assigned = get_assignment(r)?;
        let pending_revocation = get_assignment(r)?;
        get_tags(r, |_, _| Ok(()))?;
        Ok(CurrentAssignmentValue {
            member_epoch,
            previous_member_epoch,
            state,
            assigned,
            pending_revocation,
        })
    }
}

/// `ConsumerGroupTargetAssignmentMetadataValue` version 0: the assignment epoch.
pub fn encode_target_epoch(epoch: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(epoch);
    put_empty_tags(&mut b);
    b.freeze()
}

/// Decodes `ConsumerGroupTargetAssignmentMetadataValue` version 0.
pub fn decode_target_epoch(mut buf: &[u8]) -> Result<i32, RecordDecodeError> {
    let r = &mut buf;
    version0(
        r,
        "unknown ConsumerGroupTargetAssignmentMetadataValue version",
    )?;
    let epoch = get_i32(r)?;
    get_tags(r, |_, _| Ok(()))?;
    Ok(epoch)
}

/// `ConsumerGroupTargetAssignmentMemberValue` version 0: the member's target partitions.
pub fn encode_target_member(a: &TopicAssignment) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    put_assignment(&mut b, a);
    put_empty_tags(&mut b);
    b.freeze()
}

/// Decodes `ConsumerGroupTargetAssignmentMemberValue` version 0.
pub fn decode_target_member(mut buf: &[u8]) -> Result<TopicAssignment, RecordDecodeError> {
    let r = &mut buf;
    version0(
        r,
        "unknown ConsumerGroupTargetAssignmentMemberValue version",
    )?;
    let a = get_assignment(r)?;
    get_tags(r, |_, _| Ok(()))?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::super::{GroupRecord, RecordKey, RecordValue};
    use super::*;

    /// Bytes written by hand from ConsumerGroupMetadataKey/Value.json: key version 3, value version 0 with
    /// the epoch and one tagged field (tag 0, 8 bytes: MetadataHash).
    #[test]
    fn group_metadata_bytes_match_kafka_schema() {
        let r = GroupRecord {
            key: RecordKey::ConsumerGroup { group: "g".into() },
            value: Some(RecordValue::ConsumerGroup(ConsumerGroupValue {
                epoch: 7,
                metadata_hash: 9,
            })),
        };
        let (k, v) = r.encode();
        assert_eq!(&k[..], &[0, 3, 0, 1, b'g'][..]);
        let mut want = vec![0, 0, 0, 0, 0, 7, 1, 0, 8];
        want.extend_from_slice(&9i64.to_be_bytes());
        assert_eq!(&v.clone().unwrap()[..], &want[..]);
        assert_eq!(GroupRecord::decode(&k, v.as_deref()).unwrap(), Some(r));
    }

    /// ConsumerGroupCurrentMemberAssignmentValue: epochs, state, two compact arrays of (uuid, [int32], tags).
    #[test]
    fn current_assignment_bytes_match_kafka_schema() {
        let id = Uuid::from_u128(1);
        let v = CurrentAssignmentValue {
            member_epoch: 5,
            previous_member_epoch: 4,
            state: 1,
            assigned: [(id, [0, 2].into())].into(),
            pending_revocation: [(id, [1].into())].into(),
        };
        let mut want = vec![0, 0, 0, 0, 0, 5, 0, 0, 0, 4, 1];
        want.push(2);
        want.extend_from_slice(id.as_bytes());
        want.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 2, 0]);
        want.push(2);
        want.extend_from_slice(id.as_bytes());
        want.extend_from_slice(&[2, 0, 0, 0, 1, 0]);
        want.push(0);
        assert_eq!(&v.encode()[..], &want[..]);
        assert_eq!(CurrentAssignmentValue::decode(&want).unwrap(), v);
        for cut in 0..want.len() {
            assert!(
                CurrentAssignmentValue::decode(&want[..cut]).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn member_and_target_round_trip_and_hostile_lengths() {
        let m = ConsumerMemberValue {
            instance_id: Some("i".into()),
            rack_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            subscribed_topic_names: vec!["a".into(), "b".into()],
            subscribed_topic_regex: Some("x.*".into()),
            rebalance_timeout_ms: 300000,
            server_assignor: Some("uniform".into()),
        };
        let e = m.encode();
        // instance id "i": compact length 2; rack null: 0.
        assert_eq!(&e[..5], &[0, 0, 2, b'i', 0]);
        assert_eq!(ConsumerMemberValue::decode(&e).unwrap(), m);
        for cut in 0..e.len() {
            assert!(ConsumerMemberValue::decode(&e[..cut]).is_err());
        }
        let t: TopicAssignment = [(Uuid::from_u128(3), [0, 1, 2].into())].into();
        assert_eq!(decode_target_member(&encode_target_member(&t)).unwrap(), t);
        assert_eq!(decode_target_epoch(&encode_target_epoch(12)).unwrap(), 12);
        // An array count of 2^28 with nothing behind it is refused without allocating.
        let huge = [0, 0, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(decode_target_member(&huge).is_err());
    }
}
