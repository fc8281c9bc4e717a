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
