//! The group coordinator's side of the shared [`CoordinatorRuntime`]: how a [`GroupShard`] is a [`Shard`] of
//! `__consumer_offsets`, how the group coordinator is built from the broker's settings (classic and consumer
//! group limits, used for every shard it loads), and the offsets retention event.
//!
//! Ownership: nothing here holds state; every operation runs on a shard under its slot's lock through the
//! runtime's [`ShardWriter`], so expiry writes and replays like any other operation.

use std::sync::Arc;

use bytes::Bytes;

use super::classic::GroupLimits;
use super::consumer::ConsumerLimits;
use super::records::GroupRecord;
use super::GroupShard;
use crate::config::BrokerConfig;
use crate::coordinator::runtime::{
    CoordinatorRuntime, GroupCoordinator, Shard, ShardWriter, OFFSETS_TOPIC,
};
use crate::partition::manager::ReplicaManager;

impl Shard for GroupShard {
    type Record = GroupRecord;
    const TOPIC: &'static str = OFFSETS_TOPIC;
    fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<GroupRecord>, String> {
        GroupRecord::decode(key, value).map_err(|e| e.to_string())
    }
    fn encode(record: &GroupRecord) -> (Bytes, Option<Bytes>) {
        record.encode()
    }
    fn replay(&mut self, record: &GroupRecord, now: i64) {
        GroupShard::replay(self, record, now);
    }
    fn replay_at(&mut self, record: &GroupRecord, offset: i64, producer_id: Option<i64>, now: i64) {
        GroupShard::replay_at(self, record, offset, producer_id, now);
    }
    fn replay_marker(&mut self, producer_id: i64, commit: bool, _now: i64) {
        self.offsets.replay_marker(producer_id, commit);
    }
    fn write_failed(&mut self, records: &[GroupRecord], code: i16, now: i64) {
        GroupShard::write_failed(self, records, code, now);
    }
    fn tick(&mut self, now: i64) -> Vec<GroupRecord> {
        GroupShard::tick(self, now)
    }
    fn size(&self) -> usize {
        self.list().len()
    }
}

impl CoordinatorRuntime<GroupShard> {
    /// The group coordinator, with no shards loaded; every shard it loads gets the broker's classic
    /// (`group.*`) and consumer (`group.consumer.*`) group limits.
    pub fn new(config: Arc<BrokerConfig>, replicas: Arc<ReplicaManager>) -> GroupCoordinator {
        let limits = GroupLimits {
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            max_size: usize::try_from(config.group_max_size).unwrap_or(usize::MAX),
        };
        let consumer = ConsumerLimits {
            session_timeout_ms: config.group_consumer_session_timeout_ms,
            heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
            max_size: usize::try_from(config.group_consumer_max_size).unwrap_or(usize::MAX),
            assignors: config.consumer_assignors(),
        };
        CoordinatorRuntime::with_shards(replicas, config.offsets_topic_num_partitions, move || {
            GroupShard::with_consumer_limits(limits, consumer.clone())
        })
    }

    /// The offsets retention event (`offsets.retention.minutes` as `retention_ms`): expires offsets of every
    /// loaded shard (and deletes Empty groups left without offsets) by writing tombstones through the normal
    /// append-and-replay path.
    pub fn expire_all(&self, now: i64, retention_ms: i64) {
        self.tick_all_with(now, |w| expire_shard(w, now, retention_ms));
    }
}

/// Expires one shard's offsets under its lock.
fn expire_shard(w: &mut ShardWriter<'_, GroupShard>, now: i64, retention_ms: i64) {
    let records = w.shard().expire_offsets(now, retention_ms);
    // Many offsets may expire at once: write them in batches that fit `message_max_bytes`, in order (a group's
    // tombstone after its offsets'); a failed batch leaves the rest to the next check, which decides afresh.
    let mut written = 0;
    for batch in expiry_batches(records) {
        let n = batch.len();
        if let Err(e) = w.write(batch) {
            tracing::warn!(partition = w.index(), "offset expiry not written: {e}");
            break;
        }
        written += n;
    }
    if written > 0 {
        tracing::info!(
            partition = w.index(),
            tombstones = written,
            "expired offsets and emptied groups removed"
        );
    }
}

/// Bytes of keys in one batch of expiry tombstones (tombstones are all key; far below the 1 MiB default
/// `message_max_bytes`).
const EXPIRY_BATCH_BYTES: usize = 256 * 1024;

/// Splits tombstones into batches of at most [`EXPIRY_BATCH_BYTES`] of keys (at least one record each), in order.
fn expiry_batches(records: Vec<GroupRecord>) -> Vec<Vec<GroupRecord>> {
    let mut out: Vec<Vec<GroupRecord>> = Vec::new();
    let mut bytes = 0;
    for r in records {
        let size = r.key.encode().len() + 16;
        if out.is_empty() || bytes + size > EXPIRY_BATCH_BYTES {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(last) = out.last_mut() {
            last.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::group::records::RecordKey;

    #[test]
    fn expiry_tombstones_are_written_in_bounded_batches_in_order() {
        let tomb = |p: i32| GroupRecord {
            key: RecordKey::Offset {
                group: "g".repeat(1000),
                topic: "t".into(),
                partition: p,
            },
            value: None,
        };
        let records: Vec<GroupRecord> = (0..1000).map(tomb).collect();
        let batches = expiry_batches(records);
        assert!(batches.len() > 1);
        let mut next = 0;
        for b in &batches {
            let bytes: usize = b.iter().map(|r| r.key.encode().len() + 16).sum();
            assert!(bytes <= EXPIRY_BATCH_BYTES && !b.is_empty());
            for r in b {
                assert!(
                    matches!(&r.key, RecordKey::Offset { partition, .. } if *partition == next)
                );
                next += 1;
            }
        }
        assert_eq!(next, 1000);
        assert!(expiry_batches(Vec::new()).is_empty());
    }
}
