//! Request dispatch: parse the header against [`crate::protocol::versions`], decode the body with
//! kafka-protocol, run the handler, encode the response. One module per API family; handlers hold no state.

pub mod admin;
pub mod api_versions;
pub mod configs;
pub mod consumer_group;
pub mod fetch;
pub mod group;
pub mod group_admin;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod producer;
pub mod splice;
pub mod txn;
pub mod txn_admin;
pub mod txn_offset_commit;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::broker::Broker;
use crate::controller::ControllerError;
use crate::log::LogError;
use crate::partition::AppendError;
use crate::protocol::versions::{self, Refusal};

pub use splice::{Chunk, Frame};

/// A finished response frame (with its size prefix), `None` when the request expects no response, or an error
/// that closes the connection.
pub type Reply = Result<Option<Frame>, String>;

/// A handler's answer, ready to become a response frame.
pub trait IntoFrame {
    /// Encodes `size | header | body`.
    fn into_frame(self, api: ApiKey, version: i16, correlation_id: i32) -> Result<Frame, String>;
}

impl<R: Encodable + HeaderVersion> IntoFrame for R {
    fn into_frame(self, api: ApiKey, version: i16, correlation_id: i32) -> Result<Frame, String> {
        encode_response(api, version, correlation_id, &self).map(|b| vec![Chunk::Bytes(b.freeze())])
    }
}

/// Everything a handler knows about a request besides its body: who sent it, on which listener, in which
/// version. Built once per request by [`dispatch`]; handlers take it instead of loose arguments so that
/// member ids, ACLs, quotas and logging all see the same facts.
pub struct RequestContext {
    /// The broker (state owners: controller, replica manager, config).
    pub broker: Arc<Broker>,
    /// The decoded request header (API key, version, correlation id, client id).
    pub header: RequestHeader,
    /// The negotiated API version of this request.
    pub version: i16,
    /// The client's address.
    pub peer: SocketAddr,
    /// Name of the listener the request arrived on (Kafka's `ListenerName`).
    pub listener: &'static str,
}

impl RequestContext {
    /// The client id from the header, or "" when absent (Kafka's `RequestContext.clientId`).
    pub fn client_id(&self) -> &str {
        self.header.client_id.as_deref().unwrap_or("")
    }
}

/// The one listener's name, as Kafka names a plaintext listener.
pub const PLAINTEXT_LISTENER: &str = "PLAINTEXT";

/// What the connection should do with one request frame.
pub enum Dispatch {
    /// Run this future concurrently with later requests; its output is the response, written in request
    /// order.
    Task(Pin<Box<dyn Future<Output = Reply> + Send + 'static>>),
    /// Run this future to completion before reading the next request: appends from one connection must
    /// reach the log in request order (Kafka processes a connection's requests one at a time).
    Inline(Pin<Box<dyn Future<Output = Reply> + Send + 'static>>),
    /// The response is already known.
    Immediate(Frame),
    /// Close the connection (malformed or unsupported request), with the reason for the log.
    Close(String),
}

/// A request frame after parsing, before handling.
pub enum Parsed {
    /// A request we implement, decoded.
    Request {
        /// The request header.
        header: RequestHeader,
        /// Negotiated API version.
        version: i16,
        /// The decoded body (boxed: request types differ a lot in size).
        body: Box<Request>,
    },
    /// ApiVersions in a version newer than ours (answered per KIP-511).
    ApiVersionsTooNew {
        /// To echo back.
        correlation_id: i32,
    },
}

/// Parses one request frame (without its size prefix): header, version check against the table, body decode.
/// Pure (no broker state), so it is also the fuzz target for request decoding. `Err` means: close the
/// connection, with this reason for the log.
pub fn parse(mut frame: Bytes) -> Result<Parsed, String> {
    if frame.len() < 8 {
        return Err(format!(
            "request frame of {} bytes is too short for a header",
            frame.len()
        ));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let range = match versions::check(key, version) {
        Ok(r) => r,
        Err(Refusal::UnsupportedVersion) if key == ApiKey::ApiVersions as i16 => {
            return Ok(Parsed::ApiVersionsTooNew { correlation_id });
        }
        Err(Refusal::UnsupportedVersion) => {
            return Err(format!("unsupported version {version} of API key {key}"))
        }
        Err(Refusal::UnknownApi) => {
            return Err(format!("unsupported API key {key} (version {version})"))
        }
    };
    let api = range.key;
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| format!("malformed request header for {api:?} v{version}: {e}"))?;
    let body = Request::decode(api, &mut frame, version)
        .map_err(|e| format!("malformed {api:?} v{version} request: {e}"))?;
    Ok(Parsed::Request {
        header,
        version,
        body: Box::new(body),
    })
}

/// Parses one request frame and prepares its handling.
pub fn dispatch(broker: &Arc<Broker>, frame: Bytes, peer: SocketAddr) -> Dispatch {
    match parse(frame) {
        Err(why) => Dispatch::Close(why),
        Ok(Parsed::ApiVersionsTooNew { correlation_id }) => {
            // KIP-511: tell the client our range in a v0 body so it can retry with a version we speak.
            tracing::debug!(%peer, "ApiVersions version unsupported; answering with v0 body");
            Dispatch::Immediate(vec![Chunk::Bytes(
                api_versions::unsupported_version_frame(correlation_id).freeze(),
            )])
        }
        Ok(Parsed::Request {
            header,
            version,
            body,
        }) => {
            let ctx = RequestContext {
                broker: broker.clone(),
                header,
                version,
                peer,
                listener: PLAINTEXT_LISTENER,
            };
            let ordered = matches!(*body, Request::Produce(_));
            let fut = Box::pin(async move { body.handle(&ctx).await });
            if ordered {
                Dispatch::Inline(fut)
            } else {
                Dispatch::Task(fut)
            }
        }
    }
}

macro_rules! requests {
    ($( $key:ident => $req:ty, $handler:path; )*) => {
        /// A decoded request body.
        pub enum Request {
            $( #[doc = stringify!($key)] $key($req), )*
        }

        impl Request {
            fn decode(api: ApiKey, buf: &mut Bytes, version: i16) -> Result<Request, String> {
                match api {
                    $( ApiKey::$key => <$req>::decode(buf, version).map(Request::$key).map_err(|e| e.to_string()), )*
                    other => Err(format!("{other:?} has no handler")),
                }
            }

            async fn handle(self, ctx: &RequestContext) -> Reply {
                match self {
                    $( Request::$key(req) => {
                        match $handler(ctx, req).await {
                            Some(resp) => resp.into_frame(ApiKey::$key, ctx.version, ctx.header.correlation_id).map(Some),
                            None => Ok(None),
                        }
                    } )*
                }
            }
        }
    };
}

requests! {
    Produce => ProduceRequest, produce::handle;
    Fetch => FetchRequest, fetch::handle;
    ListOffsets => ListOffsetsRequest, list_offsets::handle;
    Metadata => MetadataRequest, metadata::handle;
    ApiVersions => ApiVersionsRequest, api_versions::handle;
    CreateTopics => CreateTopicsRequest, admin::create_topics;
    DeleteTopics => DeleteTopicsRequest, admin::delete_topics;
    DeleteRecords => DeleteRecordsRequest, admin::delete_records;
    DescribeConfigs => DescribeConfigsRequest, configs::describe_configs;
    AlterConfigs => AlterConfigsRequest, configs::alter_configs;
    DescribeLogDirs => DescribeLogDirsRequest, admin::describe_log_dirs;
    CreatePartitions => CreatePartitionsRequest, admin::create_partitions;
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest, configs::incremental_alter_configs;
    DescribeCluster => DescribeClusterRequest, admin::describe_cluster;
    FindCoordinator => FindCoordinatorRequest, group::find_coordinator;
    JoinGroup => JoinGroupRequest, group::join_group;
    SyncGroup => SyncGroupRequest, group::sync_group;
    Heartbeat => HeartbeatRequest, group::heartbeat;
    LeaveGroup => LeaveGroupRequest, group::leave_group;
    OffsetCommit => OffsetCommitRequest, group::offset_commit;
    OffsetFetch => OffsetFetchRequest, group::offset_fetch;
    ListGroups => ListGroupsRequest, group_admin::list_groups;
    DescribeGroups => DescribeGroupsRequest, group_admin::describe_groups;
    DeleteGroups => DeleteGroupsRequest, group_admin::delete_groups;
    OffsetDelete => OffsetDeleteRequest, group_admin::offset_delete;
    ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest, consumer_group::consumer_group_heartbeat;
    ConsumerGroupDescribe => ConsumerGroupDescribeRequest, consumer_group::consumer_group_describe;
    InitProducerId => InitProducerIdRequest, producer::init_producer_id;
    DescribeProducers => DescribeProducersRequest, producer::describe_producers;
    AddPartitionsToTxn => AddPartitionsToTxnRequest, txn::handle_add_partitions;
    AddOffsetsToTxn => AddOffsetsToTxnRequest, txn::handle_add_offsets;
    EndTxn => EndTxnRequest, txn::handle_end_txn;
    DescribeTransactions => DescribeTransactionsRequest, txn_admin::handle_describe_transactions;
    ListTransactions => ListTransactionsRequest, txn_admin::handle_list_transactions;
    TxnOffsetCommit => TxnOffsetCommitRequest, txn_offset_commit::handle;
}

/// Encodes `size | response header | body` for `api` at `version`.
pub fn encode_response<R: Encodable + HeaderVersion>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<BytesMut, String> {
    let mut out = BytesMut::new();
    encode_into(&mut out, api, version, correlation_id, body)?;
    Ok(out)
}

/// Writes `size | response header | body` into any kafka-protocol output buffer.
pub fn encode_into<B: ByteBufMut, R: Encodable + HeaderVersion>(
    out: &mut B,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<(), String> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| body.compute_size(version).map(|b| h + b))
        .map_err(|e| format!("cannot size {api:?} v{version} response: {e}"))?;
    let size = i32::try_from(size)
        .map_err(|_| format!("{api:?} response of {size} bytes is too large"))?;
    out.put_i32(size);
    header
        .encode(out, header_version)
        .and_then(|_| body.encode(out, version))
        .map_err(|e| format!("cannot encode {api:?} v{version} response: {e}"))
}

/// Builds a `StrBytes` from an owned string.
pub fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// How a request names a topic: by name (older versions) or by topic ID (Fetch v13+, Produce v13+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRef {
    /// By name.
    Name,
    /// By this topic ID.
    Id(uuid::Uuid),
}

/// The hosted partition a produce/fetch/list-offsets/delete-records request reaches, or the Kafka error for it.
///
/// The one place that decides: an index outside the topic is UNKNOWN_TOPIC_OR_PARTITION; a partition this
/// broker should host whose log could not be opened is KAFKA_STORAGE_ERROR; one that is not hosted here is
/// NOT_LEADER_OR_FOLLOWER. A hosted partition that belongs to another incarnation of the topic (deleted and
/// re-created under the same name between the metadata lookup and this one) is UNKNOWN_TOPIC_ID for requests
/// by ID and NOT_LEADER_OR_FOLLOWER (refresh metadata) by name, so a request never lands in the wrong topic.
pub fn hosted_partition(
    broker: &Broker,
    topic: &crate::metadata::TopicInfo,
    index: i32,
    by: TopicRef,
) -> Result<Arc<crate::partition::Partition>, i16> {
    let in_range = usize::try_from(index).is_ok_and(|i| i < topic.partitions.len());
    if !in_range {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    }
    match broker.replicas.get(&topic.name, index) {
        Some(p) if p.topic_id == topic.id => Ok(p),
        Some(_) => Err(match by {
            TopicRef::Id(_) => ResponseError::UnknownTopicId.code(),
            TopicRef::Name => ResponseError::NotLeaderOrFollower.code(),
        }),
        None if broker.replicas.offline_reason(topic, index).is_some() => {
            Err(ResponseError::KafkaStorageError.code())
        }
        None => Err(ResponseError::NotLeaderOrFollower.code()),
    }
}

/// Kafka error code for a log engine error.
pub fn log_error_code(e: &LogError) -> i16 {
    match e {
        LogError::CorruptMessage(_) => ResponseError::CorruptMessage,
        LogError::InvalidRecord(_) | LogError::InvalidRecords { .. } => {
            ResponseError::InvalidRecord
        }
        LogError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::RecordListTooLarge { .. } => ResponseError::RecordListTooLarge,
        // Kafka: "Produce requests with version 3+ are only allowed to contain record batches with magic v2".
        LogError::UnsupportedMagic(_) => ResponseError::InvalidRecord,
        LogError::InvalidTimestamp(_) => ResponseError::InvalidTimestamp,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::Io(_) | LogError::Offline(_) => ResponseError::KafkaStorageError,
        LogError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        LogError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
        LogError::CoordinatorFenced(_) => ResponseError::TransactionCoordinatorFenced,
    }
    .code()
}

/// Kafka error code for a refused append.
pub fn append_error_code(e: &AppendError) -> i16 {
    match e {
        AppendError::Log(l) => log_error_code(l),
        AppendError::NotEnoughReplicas => ResponseError::NotEnoughReplicas.code(),
        AppendError::Deleted => ResponseError::UnknownTopicOrPartition.code(),
    }
}

/// Kafka error code for a refused controller command.
pub fn controller_error_code(e: &ControllerError) -> i16 {
    match e {
        ControllerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        ControllerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        ControllerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        ControllerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        ControllerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        ControllerError::InvalidConfig(_) => ResponseError::InvalidConfig,
        ControllerError::UnknownTopic => ResponseError::UnknownTopicOrPartition,
        ControllerError::UnknownTopicId => ResponseError::UnknownTopicId,
        ControllerError::DeletionDisabled => ResponseError::TopicDeletionDisabled,
        ControllerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        ControllerError::PolicyViolation(_) => ResponseError::PolicyViolation,
        ControllerError::Storage(_) => ResponseError::KafkaStorageError,
    }
    .code()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hosted_partition_checks_range_and_topic_id() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start_for_test(dir.path(), &[("t", 2)]).await;
        let image = broker.image();
        let topic = image.topic("t").unwrap();
        let id = topic.id;
        assert!(hosted_partition(&broker, topic, 1, TopicRef::Id(id)).is_ok());
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(
            hosted_partition(&broker, topic, 2, TopicRef::Name).err(),
            Some(unknown)
        );
        assert_eq!(
            hosted_partition(&broker, topic, -1, TopicRef::Name).err(),
            Some(unknown)
        );
        // A stale view of the topic: same name, another incarnation (deleted and re-created meanwhile). The
        // hosted partition belongs to `id`, so a request resolved to the other ID must not land in it.
        let mut stale = topic.clone();
        stale.id = uuid::Uuid::new_v4();
        assert_eq!(
            hosted_partition(&broker, &stale, 0, TopicRef::Id(stale.id)).err(),
            Some(ResponseError::UnknownTopicId.code())
        );
        assert_eq!(
            hosted_partition(&broker, &stale, 0, TopicRef::Name).err(),
            Some(ResponseError::NotLeaderOrFollower.code())
        );
    }
}
