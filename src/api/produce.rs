//! Produce: route each partition's record batches to the hosting [`crate::partition::Partition`], which validates
//! them without decompressing, assigns offsets and appends. `acks=0` gets no response; `acks=1` and `acks=-1`
//! are answered once the batches are in the log (and, for `-1`, replicated to the in-sync replicas: with one
//! replica that is the same moment).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};

use super::RequestContext;
use super::{append_error_code, s};
use crate::partition::manager::now_ms;
use crate::partition::AppendError;

/// Handles Produce.
pub async fn handle(ctx: &RequestContext, req: ProduceRequest) -> Option<ProduceReply> {
    let broker = &ctx.broker;
    let header = &ctx.header;
    let version = ctx.version;
    let acks = req.acks;
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
            let result = if !(-1..=1).contains(&acks) {
                Err((ResponseError::InvalidRequiredAcks.code(), None))
            } else if let Some(t) = found {
                match broker.replicas.get(&t.name, pd.index) {
                    Some(p) => match pd.records {
                        Some(records) if !records.is_empty() => p.append(records, acks == -1, now_ms()).map_err(|e| {
                            let msg = e.to_string();
                            if !matches!(e, AppendError::NotEnoughReplicas) {
                                tracing::debug!(client = ?header.client_id, topic = %t.name, partition = pd.index, "produce refused: {msg}");
                            }
                            (append_error_code(&e), Some(msg))
                        }),
                        _ => Err((ResponseError::InvalidRecord.code(), Some("Produce request has no records".into()))),
                    },
                    None if usize::try_from(pd.index).map(|i| i < t.partitions.len()).unwrap_or(false) => {
                        Err((ResponseError::NotLeaderOrFollower.code(), None))
                    }
                    None => Err((ResponseError::UnknownTopicOrPartition.code(), None)),
                }
            } else if version >= 13 {
                Err((ResponseError::UnknownTopicId.code(), None))
            } else {
                Err((ResponseError::UnknownTopicOrPartition.code(), None))
            };
            match result {
                Ok(info) => {
                    pr.base_offset = info.first_offset;
                    pr.log_append_time_ms = info.log_append_time;
                    if version >= 5 {
                        pr.log_start_offset = info.log_start_offset;
                    }
                }
                Err((code, msg)) => {
                    pr.error_code = code;
                    if version >= 8 {
                        pr.error_message = msg.map(s);
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
