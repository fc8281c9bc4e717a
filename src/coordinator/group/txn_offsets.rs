//! TxnOffsetCommit on a group shard (Kafka's `OffsetMetadataManager.commitTransactionalOffset`): validates
//! the group and member as Kafka does for a transactional commit and returns the offset records, which the
//! runtime writes as one transactional batch of the producer and replays as that producer's pending offsets
//! (see `offsets.rs`); the transaction's COMMIT/ABORT marker settles them.
//!
//! Ownership: an `impl GroupShard` block, run under the shard's lock like every operation.

use kafka_protocol::error::ResponseError as E;

use super::offsets::Offsets;
use super::records::{GroupRecord, OffsetValue};
use super::{CommitItem, GroupShard};

/// Who commits: TxnOffsetCommit v3+'s member fields (v0–2: generation -1, empty member id, no instance).
#[derive(Debug, Clone, Copy)]
pub struct TxnMember<'a> {
    /// Member id ("" when not given).
    pub member_id: &'a str,
    /// Group instance id of a static member.
    pub instance_id: Option<&'a str>,
    /// Generation (classic) or member epoch (consumer group); -1 when not given.
    pub generation: i32,
}

impl GroupShard {
    /// TxnOffsetCommit: `Err` is the error for every partition; otherwise the records for `items` to write
    /// transactionally as `producer_id`.
    pub fn txn_commit(
        &mut self,
        group_id: &str,
        member: TxnMember<'_>,
        producer_id: i64,
        items: &[CommitItem],
        now: i64,
    ) -> Result<Vec<GroupRecord>, i16> {
        self.validate_txn_member(group_id, member, now)?;
        let values: Vec<(&CommitItem, OffsetValue)> = items
            .iter()
            .map(|i| {
                (
                    i,
                    OffsetValue {
                        offset: i.offset,
                        leader_epoch: i.leader_epoch,
                        metadata: i.metadata.clone(),
                        commit_timestamp: now,
                        expire_timestamp: None,
                    },
                )
            })
            .collect();
        let room: Vec<(&str, i32, &OffsetValue)> = values
            .iter()
            .map(|(i, v)| (i.topic.as_str(), i.partition, v))
            .collect();
        self.offsets
            .check_pending_room(producer_id, group_id, &room)?;
        Ok(values
            .into_iter()
            .map(|(i, v)| Offsets::commit_record(group_id, &i.topic, i.partition, v))
            .collect())
    }

    /// Kafka's `validateTransactionalOffsetCommit`: an unknown group takes commits without a generation
    /// (ILLEGAL_GENERATION with one); a known one checks the member fields only if some are given, and a
    /// stale consumer-group member epoch is ILLEGAL_GENERATION.
    fn validate_txn_member(
        &mut self,
        group_id: &str,
        m: TxnMember<'_>,
        now: i64,
    ) -> Result<(), i16> {
        if let Some(g) = self.consumer_groups.get(group_id) {
            let none_given =
                m.generation == -1 && m.member_id.is_empty() && m.instance_id.is_none();
            if (m.generation < 0 && g.members.is_empty()) || none_given {
                return Ok(());
            }
            let Some(member) = g.members.get(m.member_id) else {
                return Err(E::UnknownMemberId.code());
            };
            if member.epoch != m.generation {
                return Err(E::IllegalGeneration.code());
            }
            return Ok(());
        }
        match self.groups.get_mut(group_id) {
            Some(g) => g.validate_commit(m.member_id, m.instance_id, m.generation, true, now),
            None if m.generation < 0 => Ok(()),
            None => Err(E::IllegalGeneration.code()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // small test constants
    use bytes::Bytes;
    use kafka_protocol::error::ResponseError as E;

    use super::super::classic::GroupLimits;
    use super::super::offsets::{MAX_OPEN_PRODUCERS_PER_GROUP, MAX_PENDING_PER_PRODUCER};
    use super::super::records::{GroupValue, MemberValue, RecordKey, RecordValue};
    use super::*;

    const NO_MEMBER: TxnMember<'static> = TxnMember {
        member_id: "",
        instance_id: None,
        generation: -1,
    };

    fn shard() -> GroupShard {
        GroupShard::new(GroupLimits {
            initial_rebalance_delay_ms: 0,
            max_size: 10,
        })
    }

    fn item(topic: &str, partition: i32, offset: i64) -> CommitItem {
        CommitItem {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: format!("m{offset}"),
            retention_ms: None,
        }
    }

    /// The runtime's part: records at consecutive log offsets from `at`, transactional when `pid` is set.
    fn write(s: &mut GroupShard, records: &[GroupRecord], at: i64, pid: Option<i64>) {
        for (i, r) in (at..).zip(records) {
            s.replay_at(r, i, pid, 0);
        }
    }

    fn txn(s: &mut GroupShard, pid: i64, items: &[CommitItem], at: i64) {
        let records = s.txn_commit("g", NO_MEMBER, pid, items, 0).unwrap();
        write(s, &records, at, Some(pid));
    }

    fn plain(s: &mut GroupShard, items: &[CommitItem], at: i64) {
        let records = s.commit("g", "", None, -1, items, 8, 0).unwrap();
        write(s, &records, at, None);
    }

    fn offset(s: &GroupShard, topic: &str, p: i32) -> Option<i64> {
        s.offsets.get("g", topic, p).map(|c| c.offset)
    }

    #[test]
    fn pending_offsets_commit_or_vanish_with_the_marker() {
        let mut s = shard();
        txn(&mut s, 7, &[item("t", 0, 10), item("t", 1, 11)], 0);
        assert_eq!(offset(&s, "t", 0), None, "invisible while pending");
        assert!(s.offsets.has_pending("g", "t", 0) && s.offsets.has_open_transactions("g"));
        assert!(s.offsets.pending_bytes() > 0);
        s.offsets.replay_marker(7, true);
        assert_eq!(
            (offset(&s, "t", 0), offset(&s, "t", 1)),
            (Some(10), Some(11))
        );
        assert_eq!(s.offsets.get("g", "t", 0).unwrap().metadata, "m10");
        assert!(!s.offsets.has_pending("g", "t", 0) && !s.offsets.has_open_transactions("g"));
        assert_eq!(s.offsets.pending_bytes(), 0);

        txn(&mut s, 7, &[item("t", 0, 20)], 5);
        txn(&mut s, 8, &[item("t", 0, 30)], 6);
        s.offsets.replay_marker(7, false);
        assert_eq!(
            offset(&s, "t", 0),
            Some(10),
            "an abort leaves the committed offset"
        );
        assert!(
            s.offsets.has_pending("g", "t", 0),
            "producer 8 still has one pending"
        );
        s.offsets.replay_marker(8, true);
        assert_eq!(offset(&s, "t", 0), Some(30));
        // A marker with nothing pending (a retry) changes nothing.
        s.offsets.replay_marker(8, false);
        assert_eq!(offset(&s, "t", 0), Some(30));
    }

    #[test]
    fn the_later_record_wins_between_plain_and_transactional_commits() {
        let mut s = shard();
        // Transactional at offset 0, plain at 1: the plain commit is later and stays at COMMIT.
        txn(&mut s, 7, &[item("t", 0, 10)], 0);
        plain(&mut s, &[item("t", 0, 99)], 1);
        assert_eq!(offset(&s, "t", 0), Some(99));
        s.offsets.replay_marker(7, true);
        assert_eq!(offset(&s, "t", 0), Some(99));
        // Plain at 2, transactional at 3: the transaction's is later and replaces it at COMMIT.
        plain(&mut s, &[item("t", 1, 5)], 2);
        txn(&mut s, 7, &[item("t", 1, 6)], 3);
        s.offsets.replay_marker(7, true);
        assert_eq!(offset(&s, "t", 1), Some(6));
    }

    #[test]
    fn tombstones_expiry_and_deletion_respect_pending_offsets() {
        let mut s = shard();
        plain(&mut s, &[item("t", 0, 1), item("t", 1, 1)], 0);
        txn(&mut s, 7, &[item("t", 0, 2), item("u", 0, 3)], 2);
        // Expiry keeps the offset whose partition has a pending one, expires the other, and does not delete the
        // group while a transaction is open.
        let tombs = s.expire_offsets(i64::MAX / 2, 1);
        let parts: Vec<_> = tombs
            .iter()
            .map(|r| match &r.key {
                RecordKey::Offset {
                    topic, partition, ..
                } => (topic.clone(), *partition),
                k => panic!("unexpected {k:?}"),
            })
            .collect();
        assert_eq!(parts, vec![("t".to_string(), 1)]);
        // DeleteGroups: one tombstone per partition, pending-only ones included.
        let del = s.delete_group("g").unwrap();
        let n = del
            .iter()
            .filter(|r| matches!(r.key, RecordKey::Offset { .. }))
            .count();
        assert_eq!(n, 3, "{del:?}");
        write(&mut s, &del, 10, None);
        assert!(!s.offsets.has_open_transactions("g") && !s.offsets.has_group("g"));
        // The transaction's COMMIT after the deletion brings nothing back.
        s.offsets.replay_marker(7, true);
        assert_eq!(offset(&s, "t", 0), None);
        assert_eq!(offset(&s, "u", 0), None);
        // OffsetDelete of a partition that only has a pending offset writes its tombstone.
        txn(&mut s, 9, &[item("v", 0, 1)], 20);
        let (errors, recs) = s.delete_offsets("g", &[("v".into(), 0)]).unwrap();
        assert_eq!((errors, recs.len()), (vec![0], 1));
        write(&mut s, &recs, 21, None);
        assert!(!s.offsets.has_pending("g", "v", 0));
    }

    #[test]
    fn pending_offsets_are_bounded_per_producer_and_per_group() {
        let mut s = shard();
        let many: Vec<CommitItem> = (0..MAX_PENDING_PER_PRODUCER as i32)
            .map(|p| item("t", p, 1))
            .collect();
        txn(&mut s, 7, &many, 0);
        // Re-committing the same partitions is fine; one more is not.
        assert!(s.txn_commit("g", NO_MEMBER, 7, &many[..10], 0).is_ok());
        assert_eq!(
            s.txn_commit("g", NO_MEMBER, 7, &[item("u", 0, 1)], 0),
            Err(E::InvalidCommitOffsetSize.code())
        );
        s.offsets.replay_marker(7, false);
        for pid in 0..MAX_OPEN_PRODUCERS_PER_GROUP as i64 {
            txn(&mut s, 100 + pid, &[item("t", 0, 1)], 1_000_000 + pid);
        }
        assert_eq!(
            s.txn_commit("g", NO_MEMBER, 5, &[item("t", 0, 1)], 0),
            Err(E::InvalidCommitOffsetSize.code())
        );
        assert!(s
            .txn_commit("g", NO_MEMBER, 100, &[item("t", 1, 1)], 0)
            .is_ok());
        assert!(s
            .txn_commit("other", NO_MEMBER, 5, &[item("t", 0, 1)], 0)
            .is_ok());
    }

    fn group_with_member(s: &mut GroupShard, generation: i32) {
        let r = GroupRecord {
            key: RecordKey::Group { group: "g".into() },
            value: Some(RecordValue::Group(GroupValue {
                protocol_type: "consumer".into(),
                generation,
                protocol: Some("range".into()),
                leader: Some("m0".into()),
                current_state_timestamp: 0,
                members: vec![MemberValue {
                    member_id: "m0".into(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "/h".into(),
                    rebalance_timeout: 1000,
                    session_timeout: 1000,
                    subscription: Bytes::new(),
                    assignment: Bytes::new(),
                }],
            })),
        };
        s.replay(&r, 0);
    }

    #[test]
    fn members_are_checked_only_when_given() {
        let mut s = shard();
        // An unknown group: no generation is fine, a generation is ILLEGAL_GENERATION.
        let gen3 = TxnMember {
            member_id: "m0",
            instance_id: None,
            generation: 3,
        };
        assert_eq!(
            s.txn_commit("g", gen3, 1, &[item("t", 0, 1)], 0),
            Err(E::IllegalGeneration.code())
        );
        group_with_member(&mut s, 3);
        // v0–2 send no member: accepted even though the group has members (unlike OffsetCommit).
        assert!(s
            .txn_commit("g", NO_MEMBER, 1, &[item("t", 0, 1)], 0)
            .is_ok());
        assert!(s.txn_commit("g", gen3, 1, &[item("t", 0, 1)], 0).is_ok());
        let stale = TxnMember {
            generation: 2,
            ..gen3
        };
        assert_eq!(
            s.txn_commit("g", stale, 1, &[item("t", 0, 1)], 0),
            Err(E::IllegalGeneration.code())
        );
        let stranger = TxnMember {
            member_id: "zz",
            ..gen3
        };
        assert_eq!(
            s.txn_commit("g", stranger, 1, &[item("t", 0, 1)], 0),
            Err(E::UnknownMemberId.code())
        );
    }
}
