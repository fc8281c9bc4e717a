//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), earliest pending upload (-5),
//! and by timestamp (first offset whose timestamp is at or after the target). A partition named more than once
//! gets INVALID_REQUEST for every copy, as in Kafka (`ListOffsetsRequest.duplicatePartitions`).

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::RequestContext;
use super::{hosted_partition, log_error_code, TopicRef};
use crate::log::{Log, LogError};
use crate::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const EARLIEST_PENDING_UPLOAD: i64 = -5;

/// Handles ListOffsets.
pub async fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> Option<ListOffsetsResponse> {
    let broker = &ctx.broker;
    let version = ctx.version;
    let image = broker.image();
    let mut resp = ListOffsetsResponse::default();
    let duplicates = duplicate_partitions(&req);
    for topic in &req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = topic.name.clone();
        let t = image.topic(&topic.name.0);
        for p in &topic.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            // leader_epoch exists from v4; kafka-protocol refuses to encode a non-default value below that.
            if duplicates.contains(&(topic.name.0.as_str(), p.partition_index)) {
                // Kafka answers every copy of a repeated partition with INVALID_REQUEST.
                pr.error_code = ResponseError::InvalidRequest.code();
                tr.partitions.push(pr);
                continue;
            }
            let part = match t {
                None => Err(ResponseError::UnknownTopicOrPartition.code()),
                Some(t) => hosted_partition(broker, t, p.partition_index, TopicRef::Name),
            };
            match part {
                Err(code) => pr.error_code = code,
                Ok(part) if part.is_offline() => {
                    pr.error_code = ResponseError::KafkaStorageError.code();
                }
                Ok(part) => {
                    let epoch = part.leader_epoch();
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch != epoch {
                        pr.error_code = if p.current_leader_epoch < epoch {
                            ResponseError::FencedLeaderEpoch.code()
                        } else {
                            ResponseError::UnknownLeaderEpoch.code()
                        };
                    } else {
                        // read_committed sees up to the last stable offset (Kafka's lastFetchableOffset).
                        let hw = if req.isolation_level == 1 {
                            part.last_stable_offset()
                        } else {
                            part.high_watermark()
                        };
                        let result = match p.timestamp {
                            LATEST => Ok(Some((hw, -1, epoch))),
                            EARLIEST | EARLIEST_LOCAL => Ok(Some((
                                part.with_log(|log| log.log_start_offset()),
                                -1,
                                epoch,
                            ))),
                            EARLIEST_PENDING_UPLOAD => Ok(None),
                            // Searches read (and may decompress) batches from disk: blocking work, kept off
                            // the async workers.
                            MAX_TIMESTAMP => search(part, |log| log.max_timestamp_offset()).await,
                            ts if ts >= 0 => {
                                search(part, move |log| log.offset_for_timestamp(ts)).await
                            }
                            _ => Ok(None),
                        };
                        match result {
                            Ok(Some((offset, ts, leader_epoch))) if offset <= hw => {
                                pr.offset = offset;
                                pr.timestamp = ts;
                                if version >= 4 {
                                    pr.leader_epoch = leader_epoch;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => pr.error_code = log_error_code(&e),
                        }
                    }
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    Some(resp)
}

/// The (topic, partition) pairs that occur more than once in the request.
fn duplicate_partitions(req: &ListOffsetsRequest) -> HashSet<(&str, i32)> {
    let mut seen = HashSet::new();
    let mut dups = HashSet::new();
    for t in &req.topics {
        for p in &t.partitions {
            let key = (t.name.0.as_str(), p.partition_index);
            if !seen.insert(key) {
                dups.insert(key);
            }
        }
    }
    dups
}

type Found = Option<(i64, i64, i32)>;

/// Runs a record search on the blocking pool.
async fn search(
    part: Arc<Partition>,
    f: impl FnOnce(&Log) -> Result<Found, LogError> + Send + 'static,
) -> Result<Found, LogError> {
    tokio::task::spawn_blocking(move || part.with_log(f))
        .await
        .unwrap_or_else(|e| Err(LogError::Io(std::io::Error::other(e))))
}
