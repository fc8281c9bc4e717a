//! TxnOffsetCommit v0–5: a transactional producer commits a consumer group's offsets inside its transaction
//! (Kafka's `KafkaApis.handleTxnOffsetCommitRequest` and `GroupCoordinatorService.commitTransactionalOffsets`).
//! Thin: decode, check partitions, verify the transaction with the transaction coordinator, run the group
//! shard's `txn_commit` and write its records as the producer's transactional batch, encode.
//!
//! The transaction check comes first and without any group lock (the transaction coordinator's lock is taken
//! and released inside the call): v0–4 verify that the group's `__consumer_offsets` partition was added by
//! AddOffsetsToTxn (KIP-890 part 1), v5 (transaction version 2) adds it implicitly. The offsets stay pending
//! until the transaction's marker, which the transaction coordinator writes through the group coordinator.

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
    Some(txn_offset_commit(&cx, &req, ctx.version))
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

/// TxnOffsetCommit: the error of each partition.
pub fn txn_offset_commit(
    cx: &TxnOffsetContext<'_>,
    req: &TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    // Per partition: the item to write, or the error already decided.
    let mut plan: Vec<(String, Vec<(i32, Result<CommitItem, i16>)>)> = Vec::new();
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
    let part = [(OFFSETS_TOPIC.to_string(), cx.groups.partition_of(group))];
    if version >= 5 {
        cx.txn
            .add_partitions(txn_id, pid, epoch, &part)
            .map_err(verification_error)?;
    } else {
        let errors = cx
            .txn
            .verify_partitions(txn_id, pid, epoch, &part)
            .map_err(verification_error)?;
        if let Some(&e) = errors.iter().find(|&&e| e != 0) {
            return Err(verification_error(e));
        }
    }
    let member = TxnMember {
        member_id: req.member_id.as_str(),
        instance_id: req.group_instance_id.as_deref(),
        generation: req.generation_id,
    };
    cx.groups
        .run_with(group, |w| {
            let now = w.now();
            let records = w.shard_mut().txn_commit(group, member, pid, items, now)?;
            w.write_transactional(records, pid, epoch)
                .map_err(write_error)
        })
        .map_err(CoordinatorError::code)?
}

/// A failed write as TxnOffsetCommit answers it (as OffsetCommit does: a batch too large is
/// INVALID_COMMIT_OFFSET_SIZE).
fn write_error(e: CoordinatorError) -> i16 {
    match e {
        CoordinatorError::TooLarge => E::InvalidCommitOffsetSize.code(),
        e => e.code(),
    }
}
