//! The records the group coordinator writes to `__consumer_offsets`, in Kafka's own formats, so a partition
//! written by Vltava reads like one written by Kafka (and the other way round).
//!
//! Every record key and value starts with an `int16` version, followed by the fields of Kafka's JSON schema
//! (`group-coordinator/src/main/resources/common/message/*.json`) in that version, non-flexible encoding
//! (big-endian ints, `int16`-length strings, `-1` for null, `int32`-length bytes and arrays):
//! - key version 0 or 1: `OffsetCommitKey` {group, topic, partition}; value `OffsetCommitValue` version 3
//!   {offset, leaderEpoch, metadata, commitTimestamp} (we also read 0–1, which add `expireTimestamp` in 1);
//! - key version 2: `GroupMetadataKey` {group}; value `GroupMetadataValue` version 3 {protocolType,
//!   generation, protocol?, leader?, currentStateTimestamp, members[{memberId, groupInstanceId?, clientId,
//!   clientHost, rebalanceTimeout, sessionTimeout, subscription, assignment}]} (we read 0–3).
//!
//! - key versions 3–8: the KIP-848 consumer group records (`ConsumerGroupMetadata`, `…PartitionMetadata`,
//!   `…MemberMetadata`, `…TargetAssignmentMetadata`, `…TargetAssignmentMember`, `…CurrentMemberAssignment`);
//!   keys are non-flexible like the others, values are flexible version 0 (compact strings and arrays, tagged
//!   fields), see [`consumer`]. PartitionMetadata (4) is deprecated by Kafka 4.1 (the group's metadata hash
//!   replaced it): we never write it and skip it when read.
//!
//! A record without a value (a tombstone) deletes the key's state. Decoding reads untrusted disk bytes: every
//! read is bounds-checked and nothing is allocated from a length field before the bytes are there.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub mod consumer;

pub use consumer::{
    ConsumerGroupValue, ConsumerMemberValue, CurrentAssignmentValue, TopicAssignment,
};

/// A malformed record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed __consumer_offsets record: {0}")]
pub struct RecordDecodeError(pub &'static str);

/// A record key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// A committed offset of (group, topic, partition).
    Offset {
        /// Group id.
        group: String,
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// A group's metadata.
    Group {
        /// Group id.
        group: String,
    },
    /// A consumer group's epoch (`ConsumerGroupMetadataKey`, 3).
    ConsumerGroup {
        /// Group id.
        group: String,
    },
    /// A consumer group member's subscription (`ConsumerGroupMemberMetadataKey`, 5).
    ConsumerMember {
        /// Group id.
        group: String,
        /// Member id.
        member: String,
    },
    /// A consumer group's target assignment epoch (`ConsumerGroupTargetAssignmentMetadataKey`, 6).
    ConsumerTargetEpoch {
        /// Group id.
        group: String,
    },
    /// A member's target assignment (`ConsumerGroupTargetAssignmentMemberKey`, 7).
    ConsumerTargetMember {
        /// Group id.
        group: String,
        /// Member id.
        member: String,
    },
    /// A member's current assignment and epoch (`ConsumerGroupCurrentMemberAssignmentKey`, 8).
    ConsumerCurrentAssignment {
        /// Group id.
        group: String,
        /// Member id.
        member: String,
    },
}

/// `OffsetCommitValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The committed offset.
    pub offset: i64,
    /// The leader epoch of the last consumed record, -1 if unknown (KIP-320).
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When the commit was written (ms).
    pub commit_timestamp: i64,
    /// When it expires regardless of the group (ms): set only by an OffsetCommit v2–4 with a retention time.
    pub expire_timestamp: Option<i64>,
}

/// One member in `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout (ms).
    pub rebalance_timeout: i32,
    /// Session timeout (ms).
    pub session_timeout: i32,
    /// The member's metadata for the chosen protocol.
    pub subscription: Bytes,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupValue {
    /// Protocol type ("consumer"); empty for a group that only commits offsets.
    pub protocol_type: String,
    /// Generation.
    pub generation: i32,
    /// Chosen protocol (assignor), if any.
    pub protocol: Option<String>,
    /// Leader member id, if any.
    pub leader: Option<String>,
    /// When the group entered its current state (ms).
    pub current_state_timestamp: i64,
    /// Members with their assignment.
    pub members: Vec<MemberValue>,
}

/// A record value; `None` in a [`GroupRecord`] is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    /// A committed offset.
    Offset(OffsetValue),
    /// Group metadata.
    Group(GroupValue),
    /// A consumer group's epoch and metadata hash.
    ConsumerGroup(ConsumerGroupValue),
    /// A consumer group member's subscription.
    ConsumerMember(ConsumerMemberValue),
    /// A consumer group's target assignment epoch.
    ConsumerTargetEpoch(i32),
    /// A member's target assignment.
    ConsumerTargetMember(TopicAssignment),
    /// A member's current assignment.
    ConsumerCurrentAssignment(CurrentAssignmentValue),
}

/// One record of `__consumer_offsets`: a key and a value or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// The key.
    pub key: RecordKey,
    /// The value; `None` deletes.
    pub value: Option<RecordValue>,
}

fn put_str(b: &mut BytesMut, s: &str) {
    // Strings reaching here are bounded well below i16::MAX by the request validation (group ids, topic
    // names, member ids); a longer one is cut rather than written with a wrong length.
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    let bytes = &s.as_bytes()[..len.unsigned_abs() as usize];
    b.put_i16(len);
    b.put_slice(bytes);
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    // Member metadata and assignments are capped at 1 MiB when they are received.
    let len = i32::try_from(v.len()).unwrap_or(i32::MAX);
    b.put_i32(len);
    b.put_slice(&v[..len.unsigned_abs() as usize]);
}

impl RecordKey {
    /// The group the key belongs to.
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. }
            | RecordKey::Group { group }
            | RecordKey::ConsumerGroup { group }
            | RecordKey::ConsumerMember { group, .. }
            | RecordKey::ConsumerTargetEpoch { group }
            | RecordKey::ConsumerTargetMember { group, .. }
            | RecordKey::ConsumerCurrentAssignment { group, .. } => group,
        }
    }

    /// Encodes the key (OffsetCommitKey version 1, GroupMetadataKey version 2).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                b.put_i16(1);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                b.put_i16(2);
                put_str(&mut b, group);
            }
            RecordKey::ConsumerGroup { group } => {
                b.put_i16(3);
                put_str(&mut b, group);
            }
            RecordKey::ConsumerMember { group, member } => {
                b.put_i16(5);
                put_str(&mut b, group);
                put_str(&mut b, member);
            }
            RecordKey::ConsumerTargetEpoch { group } => {
                b.put_i16(6);
                put_str(&mut b, group);
            }
            RecordKey::ConsumerTargetMember { group, member } => {
                b.put_i16(7);
                put_str(&mut b, group);
                put_str(&mut b, member);
            }
            RecordKey::ConsumerCurrentAssignment { group, member } => {
                b.put_i16(8);
                put_str(&mut b, group);
                put_str(&mut b, member);
            }
        }
        b.freeze()
    }

    /// Decodes a key. `Ok(None)` is a key of another record type (KIP-848 groups, share groups): skipped.
    pub fn decode(mut buf: &[u8]) -> Result<Option<RecordKey>, RecordDecodeError> {
        let r = &mut buf;
        let version = get_i16(r)?;
        match version {
            0 | 1 => Ok(Some(RecordKey::Offset {
                group: get_str(r)?,
                topic: get_str(r)?,
                partition: get_i32(r)?,
            })),
            2 => Ok(Some(RecordKey::Group { group: get_str(r)? })),
            3 => Ok(Some(RecordKey::ConsumerGroup { group: get_str(r)? })),
            5 => Ok(Some(RecordKey::ConsumerMember {
                group: get_str(r)?,
                member: get_str(r)?,
            })),
            6 => Ok(Some(RecordKey::ConsumerTargetEpoch { group: get_str(r)? })),
            7 => Ok(Some(RecordKey::ConsumerTargetMember {
                group: get_str(r)?,
                member: get_str(r)?,
            })),
            8 => Ok(Some(RecordKey::ConsumerCurrentAssignment {
                group: get_str(r)?,
                member: get_str(r)?,
            })),
            _ => Ok(None),
        }
    }
}

impl OffsetValue {
    /// Encodes as OffsetCommitValue version 3, or version 1 (which has no leader epoch) when the commit has its
    /// own expiry, as Kafka does.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self.expire_timestamp {
            Some(expire) => {
                b.put_i16(1);
                b.put_i64(self.offset);
                put_str(&mut b, &self.metadata);
                b.put_i64(self.commit_timestamp);
                b.put_i64(expire);
            }
            None => {
                b.put_i16(3);
                b.put_i64(self.offset);
                b.put_i32(self.leader_epoch);
                put_str(&mut b, &self.metadata);
                b.put_i64(self.commit_timestamp);
            }
        }
        b.freeze()
    }

    /// Decodes OffsetCommitValue versions 0–3 (version 4 is flexible; we never write it and refuse it).
    pub fn decode(mut buf: &[u8]) -> Result<OffsetValue, RecordDecodeError> {
        let r = &mut buf;
        let version = get_i16(r)?;
        if !(0..=3).contains(&version) {
            return Err(RecordDecodeError("unknown OffsetCommitValue version"));
        }
        let offset = get_i64(r)?;
        let leader_epoch = if version >= 3 { get_i32(r)? } else { -1 };
        let metadata = get_str(r)?;
        let commit_timestamp = get_i64(r)?;
        let expire_timestamp = if version == 1 {
            Some(get_i64(r)?)
        } else {
            None
        };
        Ok(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
            expire_timestamp,
        })
    }
}

impl GroupValue {
    /// Encodes as GroupMetadataValue version 3.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(3);
        put_str(&mut b, &self.protocol_type);
        b.put_i32(self.generation);
        put_nullable_str(&mut b, self.protocol.as_deref());
        put_nullable_str(&mut b, self.leader.as_deref());
        b.put_i64(self.current_state_timestamp);
        b.put_i32(i32::try_from(self.members.len()).unwrap_or(i32::MAX));
        for m in &self.members {
            put_str(&mut b, &m.member_id);
            put_nullable_str(&mut b, m.group_instance_id.as_deref());
            put_str(&mut b, &m.client_id);
            put_str(&mut b, &m.client_host);
            b.put_i32(m.rebalance_timeout);
            b.put_i32(m.session_timeout);
            put_bytes(&mut b, &m.subscription);
            put_bytes(&mut b, &m.assignment);
        }
        b.freeze()
    }

    /// Decodes GroupMetadataValue versions 0–3.
    pub fn decode(mut buf: &[u8]) -> Result<GroupValue, RecordDecodeError> {
        let r = &mut buf;
        let version = get_i16(r)?;
        if !(0..=3).contains(&version) {
            return Err(RecordDecodeError("unknown GroupMetadataValue version"));
        }
        let protocol_type = get_str(r)?;
        let generation = get_i32(r)?;
        let protocol = get_nullable_str(r)?;
        let leader = get_nullable_str(r)?;
        let current_state_timestamp = if version >= 2 { get_i64(r)? } else { -1 };
        let n = get_i32(r)?;
        if n < 0 {
            return Err(RecordDecodeError("negative member count"));
        }
        let mut members = Vec::new();
        for _ in 0..n {
            let member_id = get_str(r)?;
            let group_instance_id = if version >= 3 {
                get_nullable_str(r)?
            } else {
                None
            };
            let client_id = get_str(r)?;
            let client_host = get_str(r)?;
            let session_timeout_first = get_i32(r)?;
            let (rebalance_timeout, session_timeout) = if version >= 1 {
                (session_timeout_first, get_i32(r)?)
            } else {
                (session_timeout_first, session_timeout_first)
            };
            members.push(MemberValue {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout,
                session_timeout,
                subscription: get_bytes(r)?,
                assignment: get_bytes(r)?,
            });
        }
        Ok(GroupValue {
            protocol_type,
            generation,
            protocol,
            leader,
            current_state_timestamp,
            members,
        })
    }
}

impl GroupRecord {
    /// The encoded key and value (`None` for a tombstone).
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let value = self.value.as_ref().map(|v| match v {
            RecordValue::Offset(o) => o.encode(),
            RecordValue::Group(g) => g.encode(),
            RecordValue::ConsumerGroup(v) => v.encode(),
            RecordValue::ConsumerMember(v) => v.encode(),
            RecordValue::ConsumerTargetEpoch(e) => consumer::encode_target_epoch(*e),
            RecordValue::ConsumerTargetMember(v) => consumer::encode_target_member(v),
            RecordValue::ConsumerCurrentAssignment(v) => v.encode(),
        });
        (self.key.encode(), value)
    }

    /// Decodes one record; `Ok(None)` for record types this coordinator does not own.
    pub fn decode(
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Option<GroupRecord>, RecordDecodeError> {
        let Some(key) = RecordKey::decode(key)? else {
            return Ok(None);
        };
        let value = match (value, &key) {
            (None, _) => None,
            (Some(v), RecordKey::Offset { .. }) => {
                Some(RecordValue::Offset(OffsetValue::decode(v)?))
            }
            (Some(v), RecordKey::Group { .. }) => Some(RecordValue::Group(GroupValue::decode(v)?)),
            (Some(v), RecordKey::ConsumerGroup { .. }) => {
                Some(RecordValue::ConsumerGroup(ConsumerGroupValue::decode(v)?))
            }
            (Some(v), RecordKey::ConsumerMember { .. }) => {
                Some(RecordValue::ConsumerMember(ConsumerMemberValue::decode(v)?))
            }
            (Some(v), RecordKey::ConsumerTargetEpoch { .. }) => Some(
                RecordValue::ConsumerTargetEpoch(consumer::decode_target_epoch(v)?),
            ),
            (Some(v), RecordKey::ConsumerTargetMember { .. }) => Some(
                RecordValue::ConsumerTargetMember(consumer::decode_target_member(v)?),
            ),
            (Some(v), RecordKey::ConsumerCurrentAssignment { .. }) => Some(
                RecordValue::ConsumerCurrentAssignment(CurrentAssignmentValue::decode(v)?),
            ),
        };
        Ok(Some(GroupRecord { key, value }))
    }
}

fn need(r: &[u8], n: usize) -> Result<(), RecordDecodeError> {
    if r.len() < n {
        Err(RecordDecodeError("truncated"))
    } else {
        Ok(())
    }
}

fn get_i16(r: &mut &[u8]) -> Result<i16, RecordDecodeError> {
    need(r, 2)?;
    Ok(r.get_i16())
}

fn get_i32(r: &mut &[u8]) -> Result<i32, RecordDecodeError> {
    need(r, 4)?;
    Ok(r.get_i32())
}

fn get_i64(r: &mut &[u8]) -> Result<i64, RecordDecodeError> {
    need(r, 8)?;
    Ok(r.get_i64())
}

fn get_nullable_str(r: &mut &[u8]) -> Result<Option<String>, RecordDecodeError> {
    let len = get_i16(r)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    need(r, len)?;
    let s =
        String::from_utf8(r[..len].to_vec()).map_err(|_| RecordDecodeError("string not UTF-8"))?;
    r.advance(len);
    Ok(Some(s))
}

fn get_str(r: &mut &[u8]) -> Result<String, RecordDecodeError> {
    get_nullable_str(r)?.ok_or(RecordDecodeError("null string"))
}

fn get_bytes(r: &mut &[u8]) -> Result<Bytes, RecordDecodeError> {
    let len = get_i32(r)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    need(r, len)?;
    let b = Bytes::copy_from_slice(&r[..len]);
    r.advance(len);
    Ok(b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    /// Bytes written by hand from OffsetCommitKey.json (version 1) and OffsetCommitValue.json (version 3).
    #[test]
    fn offset_commit_bytes_match_kafka_schema() {
        let key = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(
            &key.encode()[..],
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3][..]
        );
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 7,
            metadata: "m".into(),
            commit_timestamp: 1000,
            expire_timestamp: None,
        };
        let mut want = vec![0, 3];
        want.extend_from_slice(&42i64.to_be_bytes());
        want.extend_from_slice(&7i32.to_be_bytes());
        want.extend_from_slice(&[0, 1, b'm']);
        want.extend_from_slice(&1000i64.to_be_bytes());
        assert_eq!(&v.encode()[..], &want[..]);
        assert_eq!(OffsetValue::decode(&want).unwrap(), v);
        // Version 1 (Kafka < 2.1 with a retention time): no leader epoch, an expire timestamp at the end.
        let mut v1 = vec![0, 1];
        v1.extend_from_slice(&42i64.to_be_bytes());
        v1.extend_from_slice(&[0, 0]);
        v1.extend_from_slice(&1000i64.to_be_bytes());
        v1.extend_from_slice(&5000i64.to_be_bytes());
        let d = OffsetValue::decode(&v1).unwrap();
        assert_eq!(
            (
                d.offset,
                d.leader_epoch,
                d.metadata.as_str(),
                d.expire_timestamp
            ),
            (42, -1, "", Some(5000))
        );
        // A commit with its own expiry is written as version 1, byte for byte.
        assert_eq!(&d.encode()[..], &v1[..]);
    }

    /// Bytes written by hand from GroupMetadataKey.json (version 2) and GroupMetadataValue.json (version 3).
    #[test]
    fn group_metadata_bytes_match_kafka_schema() {
        let key = RecordKey::Group { group: "g".into() };
        assert_eq!(&key.encode()[..], &[0, 2, 0, 1, b'g'][..]);
        let v = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: None,
            current_state_timestamp: 9,
            members: vec![MemberValue {
                member_id: "m".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/h".into(),
                rebalance_timeout: 300,
                session_timeout: 100,
                subscription: Bytes::from_static(b"S"),
                assignment: Bytes::new(),
            }],
        };
        let mut want = vec![0, 3, 0, 8];
        want.extend_from_slice(b"consumer");
        want.extend_from_slice(&5i32.to_be_bytes());
        want.extend_from_slice(&[0, 5]);
        want.extend_from_slice(b"range");
        want.extend_from_slice(&[0xff, 0xff]);
        want.extend_from_slice(&9i64.to_be_bytes());
        want.extend_from_slice(&1i32.to_be_bytes());
        want.extend_from_slice(&[0, 1, b'm', 0xff, 0xff, 0, 1, b'c', 0, 2, b'/', b'h']);
        want.extend_from_slice(&300i32.to_be_bytes());
        want.extend_from_slice(&100i32.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 1, b'S', 0, 0, 0, 0]);
        assert_eq!(&v.encode()[..], &want[..]);
        assert_eq!(GroupValue::decode(&want).unwrap(), v);
    }

    #[test]
    fn tombstones_and_foreign_keys() {
        let r = GroupRecord {
            key: RecordKey::Group { group: "g".into() },
            value: None,
        };
        let (k, v) = r.encode();
        assert!(v.is_none());
        assert_eq!(GroupRecord::decode(&k, None).unwrap(), Some(r));
        // A deprecated ConsumerGroupPartitionMetadata record (key version 4) or a share group's is skipped,
        // not an error.
        assert_eq!(
            GroupRecord::decode(&[0, 4, 0, 0], Some(&[0, 0])).unwrap(),
            None
        );
        assert_eq!(
            GroupRecord::decode(&[0, 10, 0, 0], Some(&[0, 0])).unwrap(),
            None
        );
    }

    #[test]
    fn truncated_and_hostile_bytes_are_errors() {
        let v = GroupValue {
            protocol_type: "consumer".into(),
            members: vec![MemberValue {
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "h".into(),
                rebalance_timeout: 1,
                session_timeout: 1,
                subscription: Bytes::from_static(b"abc"),
                assignment: Bytes::from_static(b"def"),
            }],
            ..Default::default()
        }
        .encode();
        for cut in 0..v.len() {
            assert!(GroupValue::decode(&v[..cut]).is_err(), "cut at {cut}");
        }
        // A member count of 2^31-1 with no bytes behind it fails without allocating.
        let mut huge = vec![0, 3, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        huge.extend_from_slice(&0i64.to_be_bytes());
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(GroupValue::decode(&huge).is_err());
    }
}
