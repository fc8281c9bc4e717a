//! The broker's [`MarkerWriter`]: appends COMMIT/ABORT markers to the partitions of a transaction that this
//! broker hosts (Kafka's `TransactionMarkerChannelManager` sending WriteTxnMarkers, reduced to one broker: the
//! request becomes a direct [`Partition::append_marker`](crate::partition::Partition::append_marker)).
//!
//! Ownership: stateless; it holds the replica manager to find partitions. Called by the transaction coordinator
//! under its shard lock, in a blocking context (each append takes its partition's lock briefly and may fsync).
//!
//! A partition no longer hosted (its topic deleted) needs no marker and is skipped, as Kafka drops markers for
//! unknown partitions. Any other failure fails the job, which the coordinator retries on its next tick for all
//! partitions; partitions already marked then get a second marker that closes nothing.
//! A `__consumer_offsets` partition's marker goes through the group coordinator
//! ([`CoordinatorRuntime::complete_transaction`](crate::coordinator::runtime::CoordinatorRuntime::complete_transaction)),
//! which appends it under the group shard's lock and replays it, so the transaction's pending offsets
//! (TxnOffsetCommit) become committed or vanish with the marker. Lock order: transaction shard, then group
//! shard, then partition; nothing takes them the other way round.

use std::sync::Arc;

use super::{MarkerJob, MarkerWriter};
use crate::coordinator::runtime::{GroupCoordinator, OFFSETS_TOPIC};
use crate::partition::manager::{now_ms, ReplicaManager};

/// Writes markers to local partitions.
pub struct LocalMarkerWriter {
    replicas: Arc<ReplicaManager>,
    groups: Arc<GroupCoordinator>,
}

impl LocalMarkerWriter {
    /// A writer over this broker's partitions; `groups` completes transactions in `__consumer_offsets`.
    pub fn new(replicas: Arc<ReplicaManager>, groups: Arc<GroupCoordinator>) -> LocalMarkerWriter {
        LocalMarkerWriter { replicas, groups }
    }
}

impl MarkerWriter for LocalMarkerWriter {
    fn write_markers(&self, job: &MarkerJob, coordinator_epoch: i32) -> Result<(), String> {
        let now = now_ms();
        for (topic, index) in &job.partitions {
            if topic == OFFSETS_TOPIC {
                let hosted = self
                    .groups
                    .complete_transaction(
                        *index,
                        job.producer_id,
                        job.producer_epoch,
                        coordinator_epoch,
                        job.commit,
                    )
                    .map_err(|e| format!("{topic}-{index}: {e}"))?;
                if !hosted {
                    tracing::info!(
                        partition = index,
                        producer_id = job.producer_id,
                        "skipping the transaction marker of a {OFFSETS_TOPIC} partition not hosted"
                    );
                }
                continue;
            }
            let Some(p) = self.replicas.get(topic, *index) else {
                tracing::info!(
                    topic = topic.as_str(),
                    partition = index,
                    producer_id = job.producer_id,
                    "skipping the transaction marker of a partition no longer hosted"
                );
                continue;
            };
            p.append_marker(
                job.producer_id,
                job.producer_epoch,
                coordinator_epoch,
                job.commit,
                now,
            )
            .map_err(|e| format!("{topic}-{index}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use bytes::Bytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    use super::*;
    use crate::broker::Broker;

    fn txn_batch(producer_id: i64, seq: i32) -> Bytes {
        let record = Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: seq,
            timestamp: now_ms(),
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &[record],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn markers_close_transactions_on_local_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start_for_test(dir.path(), &[("t", 2)]).await;
        let replicas = broker.replicas.clone();
        let groups = broker.groups.clone();
        tokio::task::spawn_blocking(move || {
            let mut parts = Vec::new();
            for i in 0..2 {
                for _ in 0..200 {
                    if replicas.get("t", i).is_some() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                let p = replicas.get("t", i).expect("partition opened");
                p.append(txn_batch(7, 0), true, now_ms()).unwrap();
                assert_eq!((p.last_stable_offset(), p.high_watermark()), (0, 1));
                parts.push(p);
            }
            let writer = LocalMarkerWriter::new(replicas, groups);
            let job = MarkerJob {
                transactional_id: "tx".into(),
                producer_id: 7,
                producer_epoch: 0,
                commit: false,
                partitions: vec![("t".into(), 0), ("gone".into(), 0), ("t".into(), 1)],
            };
            writer.write_markers(&job, 3).unwrap();
            for p in &parts {
                assert_eq!((p.last_stable_offset(), p.high_watermark()), (2, 2));
                let r = p.read(0, 1 << 20, true, true).unwrap();
                assert_eq!(r.aborted.len(), 1);
            }
            // A retry writes again and closes nothing; an older coordinator is fenced.
            writer.write_markers(&job, 3).unwrap();
            let err = writer.write_markers(&job, 2).unwrap_err();
            assert!(err.contains("fenced"), "{err}");
        })
        .await
        .unwrap();
    }
}
