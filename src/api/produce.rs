//! Produce: route each partition's record batches to the hosting [`crate::partition::Partition`], which validates
//! every record (decompressing compressed batches, never recompressing), assigns offsets and appends. `acks=0`
//! gets no response; `acks=1` and `acks=-1` are answered once the batches are in the log (and, for `-1`,
//! replicated to the in-sync replicas: with one replica that is the same moment).
//!
//! Validation (decompression) and the append (maybe an fsync) are blocking CPU and I/O work, so a request's
//! appends run on tokio's blocking pool, at most [`append_slots`] requests at a time, never on an async worker:
//! a heavy compressed produce cannot delay other connections' requests. The connection awaits the handler
//! before reading the next Produce, so appends keep request order.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};

use super::{append_error_code, hosted_partition, s, RequestContext, TopicRef};
use crate::broker::Broker;
use crate::log::{AppendOrigin, BatchHeader, LogError};
use crate::metadata::is_internal_topic;
use crate::partition::manager::now_ms;
use crate::partition::{AppendError, Partition};

/// Limits how many Produce requests append at once: one per core, since validation is CPU-bound. Process-wide
/// (one broker per process), so it needs no place in the broker's state.
fn append_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS
        .get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

/// Handles Produce: the appends run on the blocking pool (see the module doc).
pub async fn handle(ctx: &RequestContext, req: ProduceRequest) -> Option<ProduceReply> {
    let version = ctx.version;
    // The semaphore is never closed, so acquiring only waits.
    let permit = append_slots().acquire().await.ok();
    let broker = ctx.broker.clone();
    let client_id = ctx.header.client_id.clone();
    let done = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        append_all(&broker, req, client_id, version)
    })
    .await;
    // Only a panic in the append fails the join; closing the connection is all that is left to do.
    done.unwrap_or_else(|e| Some(ProduceReply::Close(format!("produce failed: {e}"))))
}

/// Appends every partition's records of one request and builds the response. Blocking.
fn append_all(
    broker: &Arc<Broker>,
    req: ProduceRequest,
    client_id: Option<kafka_protocol::protocol::StrBytes>,
    version: i16,
) -> Option<ProduceReply> {
    let acks = req.acks;
    let txn_id = req
        .transactional_id
        .as_ref()
        .map(|t| t.0.to_string())
        .filter(|t| !t.is_empty());
    // Kafka refuses a request with transactional records but no transactional id as a whole.
    let refuse_all = txn_id.is_none()
        && req.topic_data.iter().any(|t| {
            t.partition_data
                .iter()
                .any(|p| p.records.as_deref().and_then(transactional).is_some())
        });
    let image = broker.image();
    let mut resp = ProduceResponse::default();
    for topic in req.topic_data {
        let mut tr = TopicProduceResponse::default();
        let found = if version >= 13 {
            image.topic_by_id(&topic.topic_id)
        } else {
            image.topic(&topic.name.0)
        };
        tr.name = topic.name.clone();
        tr.topic_id = topic.topic_id;
        if let Some(t) = found {
            if version < 13 {
                tr.name = TopicName(s(t.name.clone()));
            }
        }
        for pd in topic.partition_data {
            let mut pr = PartitionProduceResponse::default();
            pr.index = pd.index;
            pr.base_offset = -1;
            pr.log_append_time_ms = -1;
            let result = if refuse_all {
                Err((
                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                    Some("transactional records need a transactional id".to_string()),
                    Vec::new(),
                ))
            } else if !(-1..=1).contains(&acks) {
                Err((ResponseError::InvalidRequiredAcks.code(), None, Vec::new()))
            } else if found.is_some_and(|t| is_internal_topic(&t.name)) {
                // Kafka: "Cannot append to internal topic"; only the coordinators write there.
                Err((
                    ResponseError::InvalidTopicException.code(),
                    Some("Cannot append to internal topic".to_string()),
                    Vec::new(),
                ))
            } else if let Some(t) = found {
                let by = if version >= 13 {
                    TopicRef::Id(topic.topic_id)
                } else {
                    TopicRef::Name
                };
                match hosted_partition(broker, t, pd.index, by) {
                    Ok(p) => match pd.records {
                        Some(records) if !records.is_empty() => append_checked(broker, &p, txn_id.as_deref(), records, acks == -1, version).map_err(|refusal| {
                            let e = match refusal {
                                Refused::Append(e) => e,
                                Refused::Txn(code, msg) => {
                                    tracing::debug!(client = ?client_id, topic = %t.name, partition = pd.index, "transactional produce refused: {msg}");
                                    return (code, Some(msg), Vec::new());
                                }
                            };
                            let msg = e.to_string();
                            if !matches!(e, AppendError::NotEnoughReplicas) {
                                tracing::debug!(client = ?client_id, topic = %t.name, partition = pd.index, "produce refused: {msg}");
                            }
                            let code = match (&e, by) {
                                // Deleted while in flight: by ID, that ID is gone.
                                (AppendError::Deleted, TopicRef::Id(_)) => ResponseError::UnknownTopicId.code(),
                                _ => append_error_code(&e),
                            };
                            (code, Some(msg), record_errors(&e))
                        }),
                        _ => Err((ResponseError::InvalidRecord.code(), Some("Produce request has no records".into()), Vec::new())),
                    },
                    Err(code) => Err((code, None, Vec::new())),
                }
            } else if version >= 13 {
                Err((ResponseError::UnknownTopicId.code(), None, Vec::new()))
            } else {
                Err((
                    ResponseError::UnknownTopicOrPartition.code(),
                    None,
                    Vec::new(),
                ))
            };
            match result {
                Ok(info) => {
                    pr.base_offset = info.first_offset;
                    pr.log_append_time_ms = info.log_append_time;
                    if version >= 5 {
                        pr.log_start_offset = info.log_start_offset;
                    }
                }
                Err((code, msg, errors)) => {
                    pr.error_code = code;
                    if version >= 8 {
                        pr.error_message = msg.map(s);
                        pr.record_errors = errors;
                    }
                }
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    if acks == 0 {
        // No response, but a failed acks=0 produce closes the connection (as Kafka does) so the client
        // notices and refreshes its metadata.
        let failed = resp
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.error_code != 0);
        return failed.map(|p| {
            ProduceReply::Close(format!(
                "acks=0 produce failed with error code {}",
                p.error_code
            ))
        });
    }
    Some(ProduceReply::Respond(resp))
}

/// Appends one partition's batch. A transactional batch of a producer with no transaction open on this
/// partition is first checked with the transaction coordinator (KIP-890): transactions V1 (Produce up to v11)
/// must have added the partition with AddPartitionsToTxn; V2 (Produce v12+) adds it here. The append then runs
/// under the coordinator's lock ([`crate::coordinator::txn::TxnCoordinator::with_partition_in_txn`]), so a
/// late or stray transactional write can never open a transaction the coordinator will not end.
fn append_checked(
    broker: &Broker,
    p: &Partition,
    txn_id: Option<&str>,
    records: bytes::Bytes,
    acks_all: bool,
    version: i16,
) -> Result<crate::log::AppendInfo, Refused> {
    let Some((pid, epoch)) = transactional(&records) else {
        return p
            .append(records, acks_all, now_ms())
            .map_err(Refused::Append);
    };
    if p.has_ongoing_txn(pid, epoch) {
        // The log checks again under its write lock: if the transaction ended meanwhile (its marker written
        // while this batch was validated), the batch is refused there and checked with the coordinator below,
        // which then answers for the ended transaction.
        match p.append_from(
            records.clone(),
            acks_all,
            now_ms(),
            AppendOrigin::ClientInOpenTxn,
        ) {
            Err(AppendError::Log(LogError::InvalidTxnState(_))) => {}
            other => return other.map_err(Refused::Append),
        }
    }
    // A request with transactional records always names its transactional id (checked by `append_all`).
    let id = txn_id.unwrap_or_default();
    let partition = (p.topic.clone(), p.index);
    match broker
        .txn
        .with_partition_in_txn(id, pid, epoch, partition, version >= 12, || {
            p.append(records, acks_all, now_ms())
        }) {
        Ok(result) => result.map_err(Refused::Append),
        Err(code) => Err(Refused::Txn(
            verification_error(code, version),
            format!("the partition is not part of transaction {id}"),
        )),
    }
}

/// The producer id and epoch of a transactional v2 batch.
fn transactional(records: &[u8]) -> Option<(i64, i16)> {
    BatchHeader::parse(records)
        .ok()
        .filter(|h| h.magic == 2 && h.is_transactional())
        .map(|h| (h.producer_id, h.producer_epoch))
}

/// Why one partition's append was refused.
enum Refused {
    /// By the partition.
    Append(AppendError),
    /// By the transaction check: the Kafka error and a message.
    Txn(i16, String),
}

/// The produce error for a failed transaction check, as Kafka maps it: retriable coordinator errors become
/// NOT_ENOUGH_REPLICAS (older clients retry it without refreshing metadata), a fenced producer
/// INVALID_PRODUCER_EPOCH, and TRANSACTION_ABORTABLE INVALID_TXN_STATE for clients before Produce v12.
fn verification_error(code: i16, version: i16) -> i16 {
    use ResponseError as E;
    match ResponseError::try_from_code(code) {
        Some(
            E::ConcurrentTransactions
            | E::NetworkException
            | E::CoordinatorLoadInProgress
            | E::CoordinatorNotAvailable
            | E::NotCoordinator,
        ) => E::NotEnoughReplicas.code(),
        Some(E::ProducerFenced) => E::InvalidProducerEpoch.code(),
        Some(E::TransactionAbortable) if version < 12 => E::InvalidTxnState.code(),
        _ => code,
    }
}

/// Produce v8+ `record_errors`: the index in its batch of each record that made the batch fail (KIP-467).
fn record_errors(e: &AppendError) -> Vec<BatchIndexAndErrorMessage> {
    let AppendError::Log(LogError::InvalidRecords { records, .. }) = e else {
        return Vec::new();
    };
    records
        .iter()
        .map(|r| {
            let mut out = BatchIndexAndErrorMessage::default();
            out.batch_index = r.batch_index;
            out.batch_index_error_message = Some(s(r.message.clone()));
            out
        })
        .collect()
}

/// What a Produce request gets back.
pub enum ProduceReply {
    /// The response.
    Respond(ProduceResponse),
    /// No response; close the connection (a failed acks=0 produce), with the reason for the log.
    Close(String),
}

impl super::IntoFrame for ProduceReply {
    fn into_frame(
        self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<super::Frame, String> {
        match self {
            ProduceReply::Respond(r) => r.into_frame(api, version, correlation_id),
            ProduceReply::Close(why) => Err(why),
        }
    }
}
