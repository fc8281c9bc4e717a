//! Metadata: brokers, cluster id, controller, and topics with partitions, leaders and topic IDs. Unknown topics
//! are auto-created when `auto.create.topics.enable` is on and the request allows it. Repeated topics are
//! answered once, as Kafka does.
//!
//! A partition led here whose log is offline (failed or could not be opened) is answered as Kafka answers for a
//! partition whose only replica's log directory is offline: no leader (-1), LEADER_NOT_AVAILABLE, and this
//! broker among the offline replicas, so clients stop sending it produce and fetch requests.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::s;
use super::RequestContext;
use crate::broker::Broker;
use crate::controller::{ControllerError, NewTopic};
use crate::metadata::{is_internal_topic, validate_topic_name, MetadataImage, TopicInfo};
use crate::partition::manager::ReplicaManager;

/// Answers Metadata.
pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> Option<MetadataResponse> {
    let broker = &ctx.broker;
    let version = ctx.version;
    // v0 has no null topics: an empty list means all topics. From v1 an empty list means none.
    let wanted: Option<Vec<(Option<String>, Uuid)>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                // A topic asked for by ID may carry an empty rather than a null name.
                .map(|t| {
                    let name = t
                        .name
                        .map(|n| n.0.to_string())
                        .filter(|n| !n.is_empty() || t.topic_id.is_nil());
                    (name, t.topic_id)
                })
                // Kafka collects the names into a set: a topic named 100,000 times is answered once, so a
                // small request cannot multiply the response.
                .collect::<indexmap::IndexSet<_>>()
                .into_iter()
                .collect(),
        ),
    };
    // Auto-create first, so the answer already has the leaders.
    let allow_create =
        broker.config.auto_create_topics_enable && (version < 4 || req.allow_auto_topic_creation);
    if let (Some(list), true) = (&wanted, allow_create) {
        let image = broker.image();
        for (name, _) in list {
            if let Some(name) = name {
                if image.topic(name).is_none() && validate_topic_name(name).is_ok() {
                    auto_create(broker, name).await;
                }
            }
        }
    }
    let image = broker.image();
    let mut resp = MetadataResponse::default();
    resp.brokers = image
        .brokers
        .values()
        .map(|b| {
            let mut mb = MetadataResponseBroker::default();
            mb.node_id = BrokerId(b.id);
            mb.host = s(b.host.clone());
            mb.port = b.port;
            mb.rack = b.rack.clone().map(s);
            mb
        })
        .collect();
    // Fields are version-gated: kafka-protocol refuses to encode a non-default value its version lacks.
    if version >= 2 {
        resp.cluster_id = Some(s(image.cluster_id.clone()));
    }
    if version >= 1 {
        resp.controller_id = BrokerId(image.controller_id);
    }
    let here = Here {
        node: broker.config.node_id,
        replicas: &broker.replicas,
    };
    resp.topics = match wanted {
        None => image
            .topics
            .values()
            .map(|t| topic_response(t, version, &here))
            .collect(),
        Some(list) => list
            .into_iter()
            .map(|(name, id)| lookup(&image, name, id, version, &here))
            .collect(),
    };
    Some(resp)
}

/// Creates a topic with broker defaults for auto-creation; a concurrent creation of the same topic is fine.
pub async fn auto_create(broker: &Arc<Broker>, name: &str) -> bool {
    let t = NewTopic {
        name: name.to_string(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: vec![],
        configs: BTreeMap::new(),
    };
    match broker.controller.create_topic(t, false).await {
        Ok(_) => {
            tracing::info!(topic = name, "auto-created topic");
            true
        }
        Err(ControllerError::TopicAlreadyExists(_)) => true,
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creation failed");
            false
        }
    }
}

/// This broker and its partitions, to report the ones it leads but cannot serve.
struct Here<'a> {
    node: i32,
    replicas: &'a ReplicaManager,
}

fn lookup(
    image: &MetadataImage,
    name: Option<String>,
    id: Uuid,
    version: i16,
    here: &Here<'_>,
) -> MetadataResponseTopic {
    let found = match &name {
        Some(n) => image.topic(n),
        None => image.topic_by_id(&id),
    };
    match found {
        Some(t) => topic_response(t, version, here),
        None => {
            let mut r = MetadataResponseTopic::default();
            r.error_code = match &name {
                Some(n) if validate_topic_name(n).is_err() => {
                    ResponseError::InvalidTopicException.code()
                }
                Some(_) => ResponseError::UnknownTopicOrPartition.code(),
                None => ResponseError::UnknownTopicId.code(),
            };
            r.name = name.map(|n| TopicName(s(n)));
            if version >= 10 {
                r.topic_id = id;
            }
            r
        }
    }
}

fn topic_response(t: &TopicInfo, version: i16, here: &Here<'_>) -> MetadataResponseTopic {
    let mut r = MetadataResponseTopic::default();
    r.name = Some(TopicName(s(t.name.clone())));
    if version >= 10 {
        r.topic_id = t.id;
    }
    if version >= 1 {
        r.is_internal = is_internal_topic(&t.name);
    }
    r.partitions = t
        .partitions
        .iter()
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p.index;
            mp.leader_id = BrokerId(p.leader);
            if version >= 7 {
                mp.leader_epoch = p.leader_epoch;
            }
            mp.replica_nodes = p.replicas.iter().map(|&b| BrokerId(b)).collect();
            mp.isr_nodes = p.isr.iter().map(|&b| BrokerId(b)).collect();
            if p.leader < 0 {
                mp.error_code = ResponseError::LeaderNotAvailable.code();
            }
            if p.leader == here.node && here.replicas.offline_reason(t, p.index).is_some() {
                mp.leader_id = BrokerId(-1);
                mp.error_code = ResponseError::LeaderNotAvailable.code();
                if version >= 5 {
                    mp.offline_replicas = vec![BrokerId(here.node)];
                }
            }
            mp
        })
        .collect();
    r
}
