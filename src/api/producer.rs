//! Idempotent producer APIs: InitProducerId (ids from [`crate::coordinator::producer_ids`]) and DescribeProducers
//! (the partitions' producer state, owned by each log; see `log/producer_state.rs`). Thin handlers: decode, ask
//! the owner, encode.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, TopicName,
};

use super::{hosted_partition, s, RequestContext, TopicRef};

/// InitProducerId v0–5.
///
/// Without a transactional id Kafka always hands out a fresh producer id with epoch 0, also when the request
/// names its current id and epoch (KIP-360: an idempotent producer bumps its epoch itself and asks for a new id
/// only when that would overflow), so the new id fences nothing and needs no state here. With a transactional
/// id the transaction coordinator answers (`api/txn.rs`).
pub async fn init_producer_id(
    ctx: &RequestContext,
    req: InitProducerIdRequest,
) -> Option<InitProducerIdResponse> {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    // Kafka: the producer id and epoch are both -1 or both set.
    if (req.producer_id.0 == -1) != (req.producer_epoch == -1) {
        resp.error_code = ResponseError::InvalidRequest.code();
        return Some(resp);
    }
    match req.transactional_id.as_ref().map(|t| t.0.as_str()) {
        Some("") => resp.error_code = ResponseError::InvalidRequest.code(),
        Some(id) => {
            // v3+ (KIP-360): the producer's current id and epoch, -1 when it has none.
            let expected =
                (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
            let (pid, epoch, code) =
                super::txn::handle_init_producer_id(ctx, id, req.transaction_timeout_ms, expected)
                    .await;
            resp.producer_id = ProducerId(pid);
            resp.producer_epoch = epoch;
            resp.error_code = code;
        }
        None => match ctx
            .broker
            .producer_ids
            .generate(&ctx.broker.controller)
            .await
        {
            Ok(id) => {
                resp.producer_id = ProducerId(id);
                resp.producer_epoch = 0;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot allocate a producer id");
                // Kafka's broker answers this while it has no block (retriable).
                resp.error_code = ResponseError::CoordinatorLoadInProgress.code();
            }
        },
    }
    Some(resp)
}

/// DescribeProducers v0: the active producers of each named partition. Repeated topics and partitions are
/// answered once (Kafka collapses them into a set).
pub async fn describe_producers(
    ctx: &RequestContext,
    req: DescribeProducersRequest,
) -> Option<DescribeProducersResponse> {
    let broker = &ctx.broker;
    let image = broker.image();
    let mut wanted: BTreeMap<String, std::collections::BTreeSet<i32>> = BTreeMap::new();
    for t in req.topics {
        wanted
            .entry(t.name.0.to_string())
            .or_default()
            .extend(t.partition_indexes);
    }
    let mut resp = DescribeProducersResponse::default();
    for (name, partitions) in wanted {
        let mut tr = TopicResponse::default();
        tr.name = TopicName(s(name.clone()));
        let topic = image.topic(&name);
        for index in partitions {
            let mut pr = PartitionResponse::default();
            pr.partition_index = index;
            let found = match topic {
                Some(t) => hosted_partition(broker, t, index, TopicRef::Name),
                None => Err(ResponseError::UnknownTopicOrPartition.code()),
            };
            match found {
                Ok(p) if p.is_offline() => pr.error_code = ResponseError::KafkaStorageError.code(),
                Ok(p) => {
                    pr.active_producers = p
                        .with_log(|l| l.producer_entries())
                        .into_iter()
                        .map(|e| {
                            let mut ps = ProducerState::default();
                            ps.producer_id = ProducerId(e.producer_id);
                            ps.producer_epoch = i32::from(e.epoch);
                            ps.last_sequence = e.last_seq();
                            ps.last_timestamp = e.last_timestamp;
                            ps.coordinator_epoch = e.coordinator_epoch;
                            ps.current_txn_start_offset = e.current_txn_first_offset.unwrap_or(-1);
                            ps
                        })
                        .collect();
                }
                Err(code) => pr.error_code = code,
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    Some(resp)
}
