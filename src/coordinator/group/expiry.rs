//! Expiry of committed offsets (`offsets.retention.minutes`) and removal of empty groups left with no offsets:
//! Kafka's `OffsetMetadataManager.cleanupExpiredOffsets` and `GroupMetadataManager.cleanupGroupMetadata`, run as
//! a timer event every `offsets.retention.check.interval.ms`.
//!
//! Ownership: a child of the shard module, run under the shard's lock like every operation. It only decides:
//! it returns tombstones (offset and group), which the runtime appends and replays like any other records, so
//! an expiry is durable and compaction later removes the expired records.
//!
//! When an offset expires (Kafka 4.x's `ClassicGroup.offsetExpirationCondition`):
//! - a group with members: never, except, in a Stable `consumer` group, offsets of topics no member
//!   subscribes to, counted from their commit;
//! - an Empty group: once it has been Empty for the retention period, counted from the later of the commit
//!   and the moment it became Empty;
//! - offsets without a group (simple `assign()` consumers and admin tools): counted from the commit.
//!
//! Where one of these rules applies, an offset committed by OffsetCommit v2–4 with a retention time expires
//! at its own expire timestamp instead (Kafka's `OffsetExpirationConditionImpl.isOffsetExpired`).
//!
//! An offset with a transactional offset pending for its partition never expires, and a group with pending
//! transactional offsets is never deleted (Kafka's `cleanupExpiredOffsets`).

use super::classic::GroupState;
use super::offsets::Committed;
use super::records::{GroupRecord, RecordKey};
use super::{subscribed_topics, GroupShard};

impl GroupShard {
    /// The tombstones that expire offsets older than `retention_ms` at `now`, then delete Empty groups that
    /// are left without offsets.
    pub fn expire_offsets(&self, now: i64, retention_ms: i64) -> Vec<GroupRecord> {
        let mut records = Vec::new();
        let mut emptied = Vec::new();
        for group in self.offsets.groups() {
            // None: this group's offsets do not expire now.
            let base: Box<dyn Fn(i64) -> Option<i64>> = match self.groups.get(group) {
                None => Box::new(Some),
                Some(g) if g.members.is_empty() => {
                    let empty_since = g.state_timestamp;
                    Box::new(move |commit| Some(commit.max(empty_since)))
                }
                Some(g)
                    if g.state == GroupState::Stable
                        && g.protocol_type.as_deref() == Some("consumer") =>
                {
                    // Unreadable subscriptions count as subscribed to everything: nothing expires.
                    let Some(subscribed) = subscribed_topics(g) else {
                        continue;
                    };
                    let all = self.offsets.all(group);
                    for (topic, partition, c) in all {
                        if !subscribed.contains(topic)
                            && !self.offsets.has_pending(group, topic, partition)
                            && is_expired(c, c.commit_timestamp, now, retention_ms)
                        {
                            records.push(offset_tombstone(group, topic, partition));
                        }
                    }
                    continue;
                }
                Some(_) => continue,
            };
            let all = self.offsets.all(group);
            let total = all.len();
            let mut expired = 0;
            for (topic, partition, c) in all {
                if base(c.commit_timestamp).is_some_and(|b| is_expired(c, b, now, retention_ms))
                    && !self.offsets.has_pending(group, topic, partition)
                {
                    records.push(offset_tombstone(group, topic, partition));
                    expired += 1;
                }
            }
            if expired == total && !self.offsets.has_open_transactions(group) {
                emptied.push(group.clone());
            }
        }
        // Empty groups with no offsets left (now, or never had any) go, as Kafka's `maybeDeleteGroup` does.
        for (id, g) in &self.groups {
            let no_offsets = (!self.offsets.has_group(id) || emptied.contains(id))
                && !self.offsets.has_open_transactions(id);
            if g.is_empty() && g.generation > 0 && no_offsets {
                records.push(GroupRecord {
                    key: RecordKey::Group { group: id.clone() },
                    value: None,
                });
            }
        }
        records
    }
}

/// An offset's own expire timestamp, if it has one, else `retention_ms` after `base`.
fn is_expired(c: &Committed, base: i64, now: i64, retention_ms: i64) -> bool {
    match c.expire_timestamp {
        Some(at) => now >= at,
        None => now.saturating_sub(base) >= retention_ms,
    }
}

fn offset_tombstone(group: &str, topic: &str, partition: i32) -> GroupRecord {
    GroupRecord {
        key: RecordKey::Offset {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
        },
        value: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use bytes::{BufMut, Bytes, BytesMut};

    use super::super::classic::GroupLimits;
    use super::super::offsets::Offsets;
    use super::super::records::{GroupValue, MemberValue, OffsetValue, RecordValue};
    use super::*;

    const R: i64 = 60_000;

    fn shard() -> GroupShard {
        GroupShard::new(GroupLimits {
            initial_rebalance_delay_ms: 0,
            max_size: 10,
        })
    }

    fn commit(s: &mut GroupShard, group: &str, topic: &str, p: i32, at: i64) {
        let r = Offsets::commit_record(
            group,
            topic,
            p,
            OffsetValue {
                offset: 5,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: at,
                expire_timestamp: None,
            },
        );
        s.replay(&r, at);
    }

    /// A consumer subscription (`ConsumerProtocolSubscription` v0) to `topics`.
    fn subscription(topics: &[&str]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(topics.len() as i32);
        for t in topics {
            b.put_i16(t.len() as i16);
            b.put_slice(t.as_bytes());
        }
        b.put_i32(-1);
        b.freeze()
    }

    fn metadata(group: &str, generation: i32, members: &[&[&str]], at: i64) -> GroupRecord {
        GroupRecord {
            key: RecordKey::Group {
                group: group.into(),
            },
            value: Some(RecordValue::Group(GroupValue {
                protocol_type: "consumer".into(),
                generation,
                protocol: Some("range".into()),
                leader: None,
                current_state_timestamp: at,
                members: members
                    .iter()
                    .enumerate()
                    .map(|(i, topics)| MemberValue {
                        member_id: format!("m{i}"),
                        group_instance_id: None,
                        client_id: "c".into(),
                        client_host: "/h".into(),
                        rebalance_timeout: 1000,
                        session_timeout: 1000,
                        subscription: subscription(topics),
                        assignment: Bytes::new(),
                    })
                    .collect(),
            })),
        }
    }

    /// Runs the expiry at `now` and replays its tombstones, as the runtime does.
    fn expire(s: &mut GroupShard, now: i64) -> Vec<GroupRecord> {
        let recs = s.expire_offsets(now, R);
        for r in &recs {
            s.replay(r, now);
        }
        recs
    }

    #[test]
    fn offsets_without_a_group_expire_from_their_commit() {
        let mut s = shard();
        commit(&mut s, "simple", "t", 0, 1_000);
        commit(&mut s, "simple", "t", 1, 5_000);
        assert!(expire(&mut s, 1_000 + R - 1).is_empty());
        let recs = expire(&mut s, 1_000 + R);
        assert_eq!(recs.len(), 1);
        assert!(recs[0].value.is_none());
        assert!(s.offsets.get("simple", "t", 0).is_none());
        assert!(s.offsets.get("simple", "t", 1).is_some());
        expire(&mut s, 5_000 + R);
        assert!(!s.offsets.has_group("simple"));
        assert!(s.list().is_empty());
    }

    /// OffsetCommit v2–4's retention time: the offset's own expiry wins where expiry applies (earlier or later
    /// than `offsets.retention.minutes` would give), survives replay of its version-1 record, and never expires
    /// an offset of a group with members.
    #[test]
    fn a_commit_with_its_own_retention_expires_at_its_expire_timestamp() {
        let mut s = shard();
        let own = |s: &mut GroupShard, group: &str, p: i32, at: i64, expire: i64| {
            let r = Offsets::commit_record(
                group,
                "t",
                p,
                OffsetValue {
                    offset: 9,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp: at,
                    expire_timestamp: Some(expire),
                },
            );
            // Through the record's bytes, as a load would see it.
            let decoded = match &r.value {
                Some(RecordValue::Offset(v)) => OffsetValue::decode(&v.encode()).unwrap(),
                _ => unreachable!(),
            };
            assert_eq!(decoded.expire_timestamp, Some(expire));
            s.replay(&Offsets::commit_record(group, "t", p, decoded), at);
        };
        own(&mut s, "simple", 0, 1_000, 2_000); // shorter than R
        own(&mut s, "simple", 1, 1_000, 1_000 + 3 * R); // longer than R
        assert!(expire(&mut s, 1_999).is_empty());
        assert_eq!(expire(&mut s, 2_000).len(), 1);
        assert!(s.offsets.get("simple", "t", 1).is_some());
        assert!(
            expire(&mut s, 1_000 + 3 * R - 1).is_empty(),
            "R alone would have expired it"
        );
        assert_eq!(expire(&mut s, 1_000 + 3 * R).len(), 1);
        // A group with members keeps even an offset whose own expiry has passed.
        s.replay(&metadata("g", 1, &[&["t"]], 0), 0);
        own(&mut s, "g", 0, 1_000, 2_000);
        assert!(expire(&mut s, 10 * R).is_empty());
    }

    #[test]
    fn an_empty_group_expires_from_the_later_of_commit_and_becoming_empty_then_goes() {
        let mut s = shard();
        s.replay(&metadata("g", 1, &[&["t"]], 0), 0);
        commit(&mut s, "g", "t", 0, 1_000);
        // Members active for long past the retention: nothing expires.
        assert!(expire(&mut s, 1_000 + 10 * R).is_empty());
        // The group becomes Empty at 20R.
        let empty_at = 20 * R;
        s.replay(&metadata("g", 2, &[], empty_at), empty_at);
        assert!(expire(&mut s, empty_at + R - 1).is_empty());
        let recs = expire(&mut s, empty_at + R);
        // The offset tombstone and the group tombstone.
        assert_eq!(recs.len(), 2, "{recs:?}");
        assert!(matches!(recs[1].key, RecordKey::Group { .. }) && recs[1].value.is_none());
        assert!(s.group("g").is_none());
        assert!(s.list().is_empty());
    }

    #[test]
    fn a_commit_after_the_group_became_empty_counts_from_the_commit() {
        let mut s = shard();
        s.replay(&metadata("g", 3, &[], 1_000), 1_000);
        commit(&mut s, "g", "t", 0, 2 * R);
        assert!(expire(&mut s, 1_000 + R).is_empty());
        assert!(expire(&mut s, 3 * R - 1).is_empty());
        assert_eq!(expire(&mut s, 3 * R).len(), 2);
    }

    #[test]
    fn a_stable_group_keeps_subscribed_topics_and_expires_the_others() {
        let mut s = shard();
        s.replay(&metadata("g", 1, &[&["a"], &["a"]], 0), 0);
        commit(&mut s, "g", "a", 0, 1_000);
        commit(&mut s, "g", "b", 0, 1_000);
        let recs = expire(&mut s, 1_000 + R);
        assert_eq!(recs.len(), 1);
        assert!(s.offsets.get("g", "a", 0).is_some());
        assert!(s.offsets.get("g", "b", 0).is_none());
        assert!(
            s.group("g").is_some(),
            "a group with members is never deleted"
        );
    }

    #[test]
    fn an_empty_group_without_offsets_is_deleted_at_the_next_check() {
        let mut s = shard();
        s.replay(&metadata("g", 4, &[], 1_000), 1_000);
        assert!(s.group("g").is_some());
        let recs = expire(&mut s, 1_001);
        assert_eq!(recs.len(), 1);
        assert!(s.group("g").is_none());
    }

    #[test]
    fn a_reload_keeps_the_moment_the_group_became_empty() {
        // Loading at 50R the record written when the group emptied at R: the clock is not restarted.
        let mut s = shard();
        commit(&mut s, "g", "t", 0, 500);
        s.replay(&metadata("g", 2, &[], R), 50 * R);
        assert_eq!(s.group("g").map(|g| g.state_timestamp), Some(R));
        assert_eq!(expire(&mut s, 50 * R).len(), 2);
        // A timestamp from the future (clock went back) counts as now.
        let mut s = shard();
        s.replay(&metadata("g", 2, &[], 99 * R), 50 * R);
        assert_eq!(s.group("g").map(|g| g.state_timestamp), Some(50 * R));
    }
}
