//! Fetch: whole record batches straight from the log, up to the high watermark, with long-poll.
//!
//! Reads start at the batch containing the fetch offset (the client skips records below it). The response holds
//! at most `max_bytes` overall and `partition_max_bytes` per partition, except that the first partition with
//! data always returns at least one whole batch (KIP-74) so a big batch cannot wedge a consumer. When fewer than
//! `min_bytes` are available the request waits, up to `max_wait_ms`, on the high-watermark watchers of the
//! partitions it asked for; an append to any of them wakes it. Incremental fetch sessions (KIP-227) are not
//! offered: every response carries session id 0, which tells clients to send full fetch requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse};
use tokio::sync::watch;

use super::log_error_code;
use super::splice::{encode_spliced, Frame, Placeholders};
use super::RequestContext;
use crate::partition::Partition;

/// One requested partition, resolved.
struct Wanted {
    topic_slot: usize,
    index: i32,
    offset: i64,
    max_bytes: usize,
    leader_epoch: i32,
    partition: Result<Arc<Partition>, i16>,
}

/// Handles Fetch.
pub async fn handle(ctx: &RequestContext, req: FetchRequest) -> Option<FetchReply> {
    let broker = &ctx.broker;
    let version = ctx.version;
    let mut resp = FetchResponse::default();
    resp.session_id = 0;
    if req.session_id != 0 || req.session_epoch > 0 {
        // We never hand out sessions, so any session the client names is unknown to us.
        resp.error_code = ResponseError::FetchSessionIdNotFound.code();
        return Some(FetchReply {
            response: resp,
            placeholders: Placeholders::default(),
        });
    }
    let image = broker.image();
    let read_committed = req.isolation_level == 1;
    let mut wanted = Vec::new();
    for topic in &req.topics {
        let found = if version >= 13 {
            image.topic_by_id(&topic.topic_id)
        } else {
            image.topic(&topic.topic.0)
        };
        let mut tr = FetchableTopicResponse::default();
        // The topic is named (v4-12) or identified (v13+), never both: kafka-protocol refuses to encode a field
        // the version lacks.
        if version >= 13 {
            tr.topic_id = topic.topic_id;
        } else {
            tr.topic = topic.topic.clone();
        }
        let slot = resp.responses.len();
        resp.responses.push(tr);
        for p in &topic.partitions {
            let partition = match found {
                None if version >= 13 => Err(ResponseError::UnknownTopicId.code()),
                None => Err(ResponseError::UnknownTopicOrPartition.code()),
                Some(t) => match broker.replicas.get(&t.name, p.partition) {
                    Some(part) => Ok(part),
                    None if usize::try_from(p.partition)
                        .map(|i| i < t.partitions.len())
                        .unwrap_or(false) =>
                    {
                        Err(ResponseError::NotLeaderOrFollower.code())
                    }
                    None => Err(ResponseError::UnknownTopicOrPartition.code()),
                },
            };
            wanted.push(Wanted {
                topic_slot: slot,
                index: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                leader_epoch: p.current_leader_epoch,
                partition,
            });
        }
    }
    let max_bytes =
        (req.max_bytes.max(0) as usize).min(broker.config.fetch_max_bytes.max(0) as usize);
    // More than max_bytes can never be returned, so waiting for more would only burn wake-ups.
    let min_bytes = (req.min_bytes.max(0) as usize).min(max_bytes.max(1));
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    // Subscribe before the first read so an append between read and wait still wakes us.
    let mut watchers: Vec<watch::Receiver<i64>> = wanted
        .iter()
        .filter_map(|w| w.partition.as_ref().ok().map(|p| p.watch_hw()))
        .collect();
    loop {
        for w in watchers.iter_mut() {
            w.borrow_and_update();
        }
        let mut placeholders = Placeholders::default();
        let (parts, bytes, any_error) = read_all(
            &wanted,
            max_bytes,
            read_committed,
            version,
            &mut placeholders,
        );
        let expired = tokio::time::Instant::now() >= deadline;
        if bytes >= min_bytes
            || any_error
            || expired
            || watchers.is_empty()
            || broker.shutdown.is_cancelled()
        {
            for (slot, pd) in parts {
                resp.responses[slot].partitions.push(pd);
            }
            return Some(FetchReply {
                response: resp,
                placeholders,
            });
        }
        let changed =
            futures::future::select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = broker.shutdown.cancelled() => {}
        }
    }
}

fn read_all(
    wanted: &[Wanted],
    max_bytes: usize,
    read_committed: bool,
    version: i16,
    placeholders: &mut Placeholders,
) -> (Vec<(usize, PartitionData)>, usize, bool) {
    let mut out = Vec::with_capacity(wanted.len());
    let mut total = 0usize;
    let mut any_error = false;
    for w in wanted {
        let mut pd = PartitionData::default();
        pd.partition_index = w.index;
        pd.preferred_read_replica = BrokerId(-1);
        pd.aborted_transactions = if read_committed {
            Some(Vec::new())
        } else {
            None
        };
        pd.records = Some(Bytes::new());
        match &w.partition {
            Err(code) => {
                pd.error_code = *code;
                pd.high_watermark = -1;
                any_error = true;
            }
            Ok(p) => {
                let epoch = p.leader_epoch();
                if w.leader_epoch >= 0 && w.leader_epoch != epoch {
                    pd.error_code = if w.leader_epoch < epoch {
                        ResponseError::FencedLeaderEpoch.code()
                    } else {
                        ResponseError::UnknownLeaderEpoch.code()
                    };
                    any_error = true;
                } else {
                    let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
                    // KIP-74: the first partition with data returns at least one batch even over budget.
                    let min_one = total == 0;
                    match p.read(w.offset, budget, min_one) {
                        Ok(r) => match placeholders.records(r.records) {
                            Ok(records) => {
                                total += records.len();
                                pd.high_watermark = r.high_watermark;
                                pd.last_stable_offset = r.last_stable_offset;
                                if version >= 5 {
                                    pd.log_start_offset = r.log_start_offset;
                                }
                                pd.records = Some(records);
                            }
                            Err(e) => {
                                pd.error_code = ResponseError::KafkaStorageError.code();
                                tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "fetch read failed");
                                any_error = true;
                            }
                        },
                        Err(e) => {
                            pd.error_code = log_error_code(&e);
                            pd.high_watermark = p.high_watermark();
                            pd.last_stable_offset = pd.high_watermark;
                            if version >= 5 {
                                pd.log_start_offset = p.with_log(|l| l.log_start_offset());
                            }
                            any_error = true;
                        }
                    }
                }
            }
        }
        out.push((w.topic_slot, pd));
    }
    (out, total, any_error)
}

/// A Fetch response whose record sets are still file ranges (see [`super::splice`]).
pub struct FetchReply {
    /// The response, with placeholders in its `records` fields.
    pub response: FetchResponse,
    /// What the placeholders stand for.
    pub placeholders: Placeholders,
}

impl super::IntoFrame for FetchReply {
    fn into_frame(self, api: ApiKey, version: i16, correlation_id: i32) -> Result<Frame, String> {
        encode_spliced(
            api,
            version,
            correlation_id,
            &self.response,
            &self.placeholders,
        )
    }
}
