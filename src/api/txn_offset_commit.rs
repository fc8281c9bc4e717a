//! TxnOffsetCommit v0–5: a transactional producer commits a consumer group's offsets inside its transaction
//! (Kafka's `KafkaApis.handleTxnOffsetCommitRequest` and `GroupCoordinatorService.commitTransactionalOffsets`).
//! Thin: decode, check partitions, verify the transaction with the transaction coordinator, run the group
//! shard's `txn_commit` and write its records as the producer's transactional batch, encode.
//!
//! The transaction check comes first, without any group lock: v0–4 verify that the group's
//! `__consumer_offsets` partition was added by AddOffsetsToTxn (KIP-890 part 1), v5 (transaction version 2)
//! adds it implicitly; the group write then runs under the transaction shard's lock
//! ([`TxnCoordinator::with_partition_in_txn`], Kafka's verification guard; lock order transaction shard →
//! group shard → partition, as for markers). The offsets stay pending until the transaction's marker, which
//! the transaction coordinator writes through the group coordinator.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::group::{valid_group_id, MAX_STRING_BYTES};
use super::RequestContext;
use crate::coordinator::group::txn_offsets::TxnMember;
use crate::coordinator::group::CommitItem;
use crate::coordinator::txn::TxnCoordinator;
use crate::coordinator::{CoordinatorError, GroupCoordinator, OFFSETS_TOPIC};
use crate::metadata::MetadataImage;

/// What the handler needs from the broker.
pub struct TxnOffsetContext<'a> {
    /// The transaction coordinator (verification, implicit add).
    pub txn: &'a TxnCoordinator,
    /// The group coordinator.
    pub groups: &'a GroupCoordinator,
    /// Topics that exist.
    pub image: &'a MetadataImage,
    /// `offset.metadata.max.bytes`.
    pub max_metadata_bytes: usize,
}

/// The dispatch entry.
pub async fn handle(
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
) -> Option<TxnOffsetCommitResponse> {
    let image = ctx.broker.image();
    let cx = TxnOffsetContext {
        txn: &ctx.broker.txn,
        groups: &ctx.broker.groups,
        image: &image,
        max_metadata_bytes: usize::try_from(ctx.broker.config.offset_metadata_max_bytes)
            .unwrap_or(0),
    };
    // Under the transaction and group shard locks, which may be held across appends: off the async worker.
    Some(crate::coordinator::runtime::off_worker(|| {
        txn_offset_commit(&cx, &req, ctx.version)
    }))
}

/// A transaction coordinator's answer as the group coordinator gives it (Kafka's `AddPartitionsToTxnManager`
/// and `handleOperationException`): a fenced producer is INVALID_PRODUCER_EPOCH, a transaction coordinator that
/// cannot answer now is COORDINATOR_NOT_AVAILABLE (retriable), the rest as is.
fn verification_error(code: i16) -> i16 {
    if code == E::ProducerFenced.code() {
        E::InvalidProducerEpoch.code()
    } else if code == E::NotCoordinator.code()
        || code == E::CoordinatorLoadInProgress.code()
        || code == E::CoordinatorNotAvailable.code()
        || code == E::ConcurrentTransactions.code()
    {
        E::CoordinatorNotAvailable.code()
    } else {
        code
    }
}

/// A partition of the request: the item to write, or the error already decided.
type PlannedPartition = (i32, Result<CommitItem, i16>);

/// TxnOffsetCommit: the error of each partition.
pub fn txn_offset_commit(
    cx: &TxnOffsetContext<'_>,
    req: &TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    // Per partition: the item to write, or the error already decided.
    let mut plan: Vec<(String, Vec<PlannedPartition>)> = Vec::new();
    for t in &req.topics {
        let topic = cx.image.topic(&t.name.0);
        let mut parts = Vec::new();
        for p in &t.partitions {
            let meta = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let exists = topic.is_some_and(|ti| {
                usize::try_from(p.partition_index).is_ok_and(|i| i < ti.partitions.len())
            });
            let r = if !exists {
                Err(E::UnknownTopicOrPartition.code())
            } else if meta.len() > cx.max_metadata_bytes.min(MAX_STRING_BYTES) {
                Err(E::OffsetMetadataTooLarge.code())
            } else {
                Ok(CommitItem {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: meta,
                    retention_ms: None,
                })
            };
            parts.push((p.partition_index, r));
        }
        plan.push((t.name.to_string(), parts));
    }
    let items: Vec<CommitItem> = plan
        .iter()
        .flat_map(|(_, ps)| ps.iter().filter_map(|(_, r)| r.as_ref().ok().cloned()))
        .collect();
    let overall = if items.is_empty() {
        None
    } else {
        commit(cx, req, version, &items).err()
    };
    let mut resp = TxnOffsetCommitResponse::default();
    for (name, parts) in plan {
        let mut tr = TxnOffsetCommitResponseTopic::default()
            .with_name(kafka_protocol::protocol::StrBytes::from_string(name).into());
        for (index, r) in parts {
            let code = match r {
                Err(e) => e,
                Ok(_) => overall.unwrap_or(0),
            };
            tr.partitions.push(
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(index)
                    .with_error_code(code),
            );
        }
        resp.topics.push(tr);
    }
    resp
}

/// Verifies the transaction, then writes the offsets as pending; `Err` is every partition's error.
fn commit(
    cx: &TxnOffsetContext<'_>,
    req: &TxnOffsetCommitRequest,
    version: i16,
    items: &[CommitItem],
) -> Result<(), i16> {
    let group = req.group_id.0.as_str();
    if !valid_group_id(group) {
        return Err(E::InvalidGroupId.code());
    }
    let txn_id = req.transactional_id.0.as_str();
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    let part = (OFFSETS_TOPIC.to_string(), cx.groups.partition_of(group));
    let member = TxnMember {
        member_id: req.member_id.as_str(),
        instance_id: req.group_instance_id.as_deref(),
        generation: req.generation_id,
    };
    // The group write runs under the transaction shard's lock (Kafka's verification guard): no EndTxn or
    // timeout can write the transaction's markers between the check and the write, which would leave these
    // offsets pending for the producer's next transaction. Lock order: transaction shard, then group shard.
    let written = cx
        .txn
        .with_partition_in_txn(txn_id, pid, epoch, part, version >= 5, || {
            cx.groups
                .run_with(group, |w| {
                    let now = w.now();
                    let records = w.shard_mut().txn_commit(group, member, pid, items, now)?;
                    w.write_transactional(records, pid, epoch)
                        .map_err(write_error)
                })
                .map_err(CoordinatorError::code)?
        })
        .map_err(verification_error)?;
    written
}

/// A failed write as TxnOffsetCommit answers it (as OffsetCommit does: a batch too large is
/// INVALID_COMMIT_OFFSET_SIZE).
fn write_error(e: CoordinatorError) -> i16 {
    match e {
        CoordinatorError::TooLarge => E::InvalidCommitOffsetSize.code(),
        e => e.code(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        GroupId, OffsetFetchRequest, ProducerId, RequestHeader, TopicName, TransactionalId,
    };
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::api::txn::{init_producer_id, TxnContext};
    use crate::broker::Broker;
    use crate::coordinator::txn::TXN_STATE_TOPIC;

    fn s(x: &str) -> StrBytes {
        StrBytes::from_string(x.to_string())
    }

    async fn loaded(status: impl Fn() -> bool) {
        for _ in 0..500 {
            if status() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("shard not loaded");
    }

    fn request(pid: i64, epoch: i16, parts: &[(&str, i32, i64, usize)]) -> TxnOffsetCommitRequest {
        let mut req = TxnOffsetCommitRequest::default();
        req.transactional_id = TransactionalId(s("tx"));
        req.group_id = GroupId(s("g"));
        req.producer_id = ProducerId(pid);
        req.producer_epoch = epoch;
        req.generation_id = -1;
        for (t, p, o, meta) in parts {
            let mut part = TxnOffsetCommitRequestPartition::default();
            part.partition_index = *p;
            part.committed_offset = *o;
            part.committed_leader_epoch = -1;
            part.committed_metadata = Some(s(&"x".repeat(*meta)));
            let mut topic = TxnOffsetCommitRequestTopic::default();
            topic.name = TopicName(s(t));
            topic.partitions.push(part);
            req.topics.push(topic);
        }
        req
    }

    fn codes(r: &TxnOffsetCommitResponse) -> Vec<i16> {
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }

    /// Committed offsets of group "g" and the partitions with pending ones.
    #[allow(clippy::type_complexity)]
    fn state(groups: &GroupCoordinator) -> (Vec<(String, i32, i64)>, Vec<(String, i32)>) {
        groups
            .read("g", |sh| {
                let committed = sh
                    .offsets
                    .all("g")
                    .into_iter()
                    .map(|(t, p, c)| (t.to_string(), p, c.offset))
                    .collect();
                (committed, sh.offsets.pending_partitions("g"))
            })
            .unwrap()
    }

    /// Whole transactions through the handler and the transaction coordinator: verification, pending offsets,
    /// OffsetFetch require_stable, COMMIT and ABORT markers written through the group coordinator, a plain
    /// commit written later winning, and a reload of `__consumer_offsets` that rebuilds the same state.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transactional_offsets_through_markers_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let topics = [(OFFSETS_TOPIC, 1), (TXN_STATE_TOPIC, 1), ("t", 2)];
        let broker = Broker::start_for_test(dir.path(), &topics).await;
        broker.groups.set_partition_count(1);
        broker.groups.load(0);
        broker.txn.runtime().set_partition_count(1);
        broker.txn.runtime().load(0);
        loaded(|| broker.groups.status("g").is_ok() && broker.txn.runtime().status("tx").is_ok())
            .await;
        let tcx = TxnContext {
            coordinator: &broker.txn,
            producer_ids: &broker.producer_ids,
            controller: &broker.controller,
            groups: &broker.groups,
        };
        let (pid, epoch, err) = init_producer_id(&tcx, "tx", 60_000, None).await;
        assert_eq!(err, 0);
        let image = broker.image();
        let cx = TxnOffsetContext {
            txn: &broker.txn,
            groups: &broker.groups,
            image: &image,
            max_metadata_bytes: 4096,
        };
        let add = |cx: &TxnOffsetContext<'_>| {
            cx.txn
                .add_partitions("tx", pid, epoch, &[(OFFSETS_TOPIC.into(), 0)])
                .unwrap();
        };

        // v0–4 need AddOffsetsToTxn first.
        let r = txn_offset_commit(&cx, &request(pid, epoch, &[("t", 0, 10, 1)]), 3);
        assert_eq!(codes(&r), vec![E::InvalidTxnState.code()]);
        add(&cx);
        let req = request(
            pid,
            epoch,
            &[
                ("t", 0, 10, 1),
                ("t", 1, 20, 1),
                ("t", 7, 1, 1),
                ("nope", 0, 1, 1),
                ("t", 0, 1, 5000),
            ],
        );
        let r = txn_offset_commit(&cx, &req, 3);
        let bad = [
            E::UnknownTopicOrPartition.code(),
            E::OffsetMetadataTooLarge.code(),
        ];
        assert_eq!(codes(&r), vec![0, 0, bad[0], bad[0], bad[1]]);
        // A wrong epoch is fenced by the transaction coordinator.
        let r = txn_offset_commit(&cx, &request(pid, epoch - 1, &[("t", 0, 1, 1)]), 3);
        assert_ne!(codes(&r), vec![0]);
        assert_eq!(
            state(&broker.groups),
            (vec![], vec![("t".into(), 0), ("t".into(), 1)])
        );

        // OffsetFetch: require_stable answers UNSTABLE_OFFSET_COMMIT for pending partitions only.
        let ctx = RequestContext {
            broker: broker.clone(),
            header: RequestHeader::default(),
            version: 7,
            peer: "127.0.0.1:1".parse().unwrap(),
            listener: "PLAINTEXT",
        };
        let fetch = |stable: bool| {
            let mut f = OffsetFetchRequest::default();
            f.group_id = GroupId(s("g"));
            f.require_stable = stable;
            let mut t = OffsetFetchRequestTopic::default();
            t.name = TopicName(s("t"));
            t.partition_indexes = vec![0, 1];
            f.topics = Some(vec![t]);
            f
        };
        let got = crate::api::group::offset_fetch(&ctx, fetch(true))
            .await
            .unwrap();
        let unstable = E::UnstableOffsetCommit.code();
        let errs: Vec<i16> = got.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(errs, vec![unstable, unstable]);
        let got = crate::api::group::offset_fetch(&ctx, fetch(false))
            .await
            .unwrap();
        let offs: Vec<(i64, i16)> = got.topics[0]
            .partitions
            .iter()
            .map(|p| (p.committed_offset, p.error_code))
            .collect();
        assert_eq!(offs, vec![(-1, 0), (-1, 0)]);

        // A plain commit of t-1 written after the transactional one wins at COMMIT.
        broker
            .groups
            .run("g", |sh, now| {
                let item = CommitItem {
                    topic: "t".into(),
                    partition: 1,
                    offset: 99,
                    leader_epoch: -1,
                    metadata: String::new(),
                    retention_ms: None,
                };
                ((), sh.commit("g", "", None, -1, &[item], 8, now).unwrap())
            })
            .unwrap();
        broker.txn.end_txn("tx", pid, epoch, true).unwrap();
        let committed = vec![("t".to_string(), 0, 10), ("t".to_string(), 1, 99)];
        assert_eq!(state(&broker.groups), (committed.clone(), vec![]));
        let got = crate::api::group::offset_fetch(&ctx, fetch(true))
            .await
            .unwrap();
        let offs: Vec<(i64, i16)> = got.topics[0]
            .partitions
            .iter()
            .map(|p| (p.committed_offset, p.error_code))
            .collect();
        assert_eq!(offs, vec![(10, 0), (99, 0)]);

        // An aborted transaction leaves nothing (same epoch, so the coordinator's batch repeats sequence 0).
        add(&cx);
        let r = txn_offset_commit(&cx, &request(pid, epoch, &[("t", 0, 50, 1)]), 4);
        assert_eq!(codes(&r), vec![0]);
        broker.txn.end_txn("tx", pid, epoch, false).unwrap();
        assert_eq!(state(&broker.groups), (committed.clone(), vec![]));

        // v5 adds the partition implicitly; this transaction stays open.
        let r = txn_offset_commit(&cx, &request(pid, epoch, &[("t", 0, 70, 1)]), 5);
        assert_eq!(codes(&r), vec![0]);
        let open = (committed.clone(), vec![("t".to_string(), 0)]);
        assert_eq!(state(&broker.groups), open);

        // A reload from the log (markers included) rebuilds the same state, the open transaction pending.
        let again = Arc::new(GroupCoordinator::new(
            broker.config.clone(),
            broker.replicas.clone(),
        ));
        again.set_partition_count(1);
        again.load(0);
        loaded(|| again.status("g").is_ok()).await;
        assert_eq!(state(&again), open);
        let pending = again
            .read("g", |sh| {
                sh.offsets
                    .pending_offset(pid, "g", "t", 0)
                    .map(|c| c.offset)
            })
            .unwrap();
        assert_eq!(pending, Some(70));

        // A marker for a partition whose shard is not loaded here is still appended; the load replays it.
        let cold = Arc::new(GroupCoordinator::new(
            broker.config.clone(),
            broker.replicas.clone(),
        ));
        cold.set_partition_count(1);
        let coordinator_epoch = broker
            .replicas
            .get(TXN_STATE_TOPIC, 0)
            .unwrap()
            .leader_epoch();
        assert!(cold
            .complete_transaction(0, pid, epoch, coordinator_epoch, false)
            .unwrap());
        cold.load(0);
        loaded(|| cold.status("g").is_ok()).await;
        assert_eq!(state(&cold), (committed, vec![]));
    }
}
