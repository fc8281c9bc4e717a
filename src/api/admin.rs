//! Topic administration and cluster description: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords,
//! DescribeLogDirs, DescribeCluster. Each decodes, asks the controller or the replica manager, and encodes.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::*;

use super::RequestContext;
use super::{controller_error_code, hosted_partition, log_error_code, s, TopicRef};
use crate::broker::Broker;
use crate::controller::{NewTopic, MAX_PARTITIONS_PER_REQUEST, TOO_MANY_PARTITIONS};
use crate::metadata::topic_config::{self, config_source, TOPIC_CONFIGS};

/// Handles CreateTopics.
pub async fn create_topics(
    ctx: &RequestContext,
    req: CreateTopicsRequest,
) -> Option<CreateTopicsResponse> {
    let broker = &ctx.broker;
    let version = ctx.version;
    let mut resp = CreateTopicsResponse::default();
    let mut seen = std::collections::HashSet::new();
    let duplicates: std::collections::HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    // Kafka's cap on partitions per request holds for the whole request (its
    // `validateTotalNumberOfPartitions`), explicit assignments included, and refuses every topic in it.
    let total: i64 = req
        .topics
        .iter()
        .map(|t| match (t.assignments.is_empty(), t.num_partitions) {
            (false, _) => t.assignments.len() as i64,
            (true, -1) => i64::from(broker.config.num_partitions),
            (true, n) => i64::from(n.max(0)),
        })
        .sum();
    let over_cap = total > i64::from(MAX_PARTITIONS_PER_REQUEST);
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        if over_cap {
            r.error_code = ResponseError::PolicyViolation.code();
            r.error_message = Some(s(TOO_MANY_PARTITIONS));
            resp.topics.push(r);
            continue;
        }
        if duplicates.contains(&name) {
            r.error_code = ResponseError::InvalidRequest.code();
            r.error_message = Some(s(format!(
                "Create topics request from client contains multiple entries for topic {name}"
            )));
            resp.topics.push(r);
            continue;
        }
        let mut configs = BTreeMap::new();
        for c in &t.configs {
            if let Some(v) = &c.value {
                configs.insert(c.name.to_string(), v.to_string());
            }
        }
        let new = NewTopic {
            name: name.clone(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect(),
            configs: configs.clone(),
        };
        match broker.controller.create_topic(new, req.validate_only).await {
            Ok((id, n, rf)) => {
                if version >= 7 {
                    r.topic_id = id;
                }
                if version >= 5 {
                    r.num_partitions = n;
                    r.replication_factor = rf;
                }
                if version >= 5 {
                    r.configs = Some(
                        TOPIC_CONFIGS
                            .iter()
                            .map(|d| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = s(d.name);
                                let set = configs.get(d.name);
                                c.value = Some(s(set
                                    .cloned()
                                    .unwrap_or_else(|| (d.default)(&broker.config))));
                                c.config_source = if set.is_some() {
                                    config_source::DYNAMIC_TOPIC
                                } else {
                                    topic_config::default_source(d, &broker.config)
                                };
                                c
                            })
                            .collect(),
                    );
                }
                if !req.validate_only {
                    tracing::info!(topic = %name, partitions = n, "created topic");
                    warn_offline_after_create(broker, &name, id, 0..n);
                }
            }
            Err(e) => {
                r.error_code = controller_error_code(&e);
                r.error_message = Some(s(e.to_string()));
            }
        }
        resp.topics.push(r);
    }
    Some(resp)
}

/// Logs the just-created partitions (`created`) whose log could not be opened here. The creation itself succeeded
/// and is answered so, as Kafka does (a retry would get TOPIC_ALREADY_EXISTS); Metadata, Produce and Fetch report
/// those partitions offline.
fn warn_offline_after_create(
    broker: &Broker,
    topic: &str,
    topic_id: uuid::Uuid,
    created: std::ops::Range<i32>,
) {
    let failed: Vec<(i32, String)> = broker
        .replicas
        .failed_opens(topic_id)
        .into_iter()
        .filter(|(i, _)| created.contains(i))
        .collect();
    if let Some((_, first)) = failed.first() {
        let indexes: Vec<String> = failed.iter().map(|(i, _)| i.to_string()).collect();
        tracing::warn!(%topic, partitions = %indexes.join(","), reason = %first,
            "created, but these partitions' logs could not be opened here: offline until a retry opens them");
    }
}

/// Handles DeleteTopics (by name, or by ID from v6).
pub async fn delete_topics(
    ctx: &RequestContext,
    req: DeleteTopicsRequest,
) -> Option<DeleteTopicsResponse> {
    let broker = &ctx.broker;
    let version = ctx.version;
    let mut resp = DeleteTopicsResponse::default();
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
        r.name = name.clone().map(|n| TopicName(s(n)));
        if version >= 6 {
            r.topic_id = id;
        }
        match broker
            .controller
            .delete_topic(name.as_deref(), Some(id))
            .await
        {
            Ok((n, id)) => {
                tracing::info!(topic = %n, "deleted topic");
                r.name = Some(TopicName(s(n)));
                if version >= 6 {
                    r.topic_id = id;
                }
            }
            Err(e) => {
                r.error_code = controller_error_code(&e);
                if version >= 5 {
                    r.error_message = Some(s(e.to_string()));
                }
            }
        }
        resp.responses.push(r);
    }
    Some(resp)
}

/// Handles CreatePartitions (partition counts only grow).
pub async fn create_partitions(
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> Option<CreatePartitionsResponse> {
    let broker = &ctx.broker;
    let mut resp = CreatePartitionsResponse::default();
    // The partitions this request would add, over all topics (as for CreateTopics).
    let image = broker.image();
    let total: i64 = req
        .topics
        .iter()
        .map(|t| {
            let current = image
                .topic(&t.name.0)
                .map_or(0, |x| x.partitions.len() as i64);
            let by_count = (i64::from(t.count) - current).max(0);
            by_count.max(t.assignments.as_ref().map_or(0, |a| a.len() as i64))
        })
        .sum();
    let over_cap = total > i64::from(MAX_PARTITIONS_PER_REQUEST);
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        if over_cap {
            r.error_code = ResponseError::PolicyViolation.code();
            r.error_message = Some(s(TOO_MANY_PARTITIONS));
            resp.results.push(r);
            continue;
        }
        let current = image
            .topic(&t.name.0)
            .map_or(0, |x| i32::try_from(x.partitions.len()).unwrap_or(i32::MAX));
        let assignments = t.assignments.map(|a| {
            a.into_iter()
                .map(|x| x.broker_ids.into_iter().map(|b| b.0).collect())
                .collect()
        });
        match broker
            .controller
            .create_partitions(&t.name.0, t.count, assignments, req.validate_only)
            .await
        {
            Err(e) => {
                r.error_code = controller_error_code(&e);
                r.error_message = Some(s(e.to_string()));
            }
            Ok(()) if !req.validate_only => {
                if let Some(id) = broker.image().topic(&t.name.0).map(|t| t.id) {
                    warn_offline_after_create(broker, &t.name.0, id, current..t.count);
                }
            }
            Ok(()) => {}
        }
        resp.results.push(r);
    }
    Some(resp)
}

/// Handles DeleteRecords: raises each partition's log start offset (-1 means up to the high watermark).
pub async fn delete_records(
    ctx: &RequestContext,
    req: DeleteRecordsRequest,
) -> Option<DeleteRecordsResponse> {
    let broker = &ctx.broker;
    let image = broker.image();
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            let part = match image.topic(&t.name.0) {
                None => Err(ResponseError::UnknownTopicOrPartition.code()),
                Some(topic) => hosted_partition(broker, topic, p.partition_index, TopicRef::Name),
            };
            match part {
                Ok(part) => match part.delete_records_before(p.offset) {
                    Ok(low) => pr.low_watermark = low,
                    Err(e) => pr.error_code = log_error_code(&e),
                },
                Err(code) => pr.error_code = code,
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    Some(resp)
}

/// Handles DescribeLogDirs: one log dir (the data dir) with every hosted partition's size. Partitions whose log
/// failed are left out and the dir carries KAFKA_STORAGE_ERROR, as Kafka reports an offline log dir.
pub async fn describe_log_dirs(
    ctx: &RequestContext,
    req: DescribeLogDirsRequest,
) -> Option<DescribeLogDirsResponse> {
    let broker = &ctx.broker;
    let version = ctx.version;
    let mut dir = DescribeLogDirsResult::default();
    dir.log_dir = s(std::fs::canonicalize(&broker.config.data_dir)
        .unwrap_or(broker.config.data_dir.clone())
        .display()
        .to_string());
    let (total, usable) = disk_space(&broker.config.data_dir);
    if version >= 4 {
        dir.total_bytes = total;
        dir.usable_bytes = usable;
    }
    if broker.replicas.has_failed_opens() {
        dir.error_code = ResponseError::KafkaStorageError.code();
    }
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    // A set, so the work is one lookup per hosted partition however long (or repetitive) the request is.
    let asked: Option<std::collections::HashSet<(&str, i32)>> = req.topics.as_ref().map(|list| {
        list.iter()
            .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.0.as_str(), p)))
            .collect()
    });
    let wanted = |topic: &str, index: i32| {
        asked
            .as_ref()
            .is_none_or(|set| set.contains(&(topic, index)))
    };
    for p in broker.replicas.all() {
        if !wanted(&p.topic, p.index) {
            continue;
        }
        // Kafka lists no partitions of an offline log dir and flags the dir itself.
        if p.is_offline() {
            dir.error_code = ResponseError::KafkaStorageError.code();
            continue;
        }
        let mut dp = DescribeLogDirsPartition::default();
        dp.partition_index = p.index;
        dp.partition_size = p.with_log(|l| l.size_bytes() as i64);
        dp.offset_lag = 0;
        by_topic.entry(p.topic.clone()).or_default().push(dp);
    }
    dir.topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            let mut t = DescribeLogDirsTopic::default();
            t.name = TopicName(s(name));
            t.partitions = partitions;
            t
        })
        .collect();
    let mut resp = DescribeLogDirsResponse::default();
    resp.results.push(dir);
    Some(resp)
}

fn disk_space(path: &std::path::Path) -> (i64, i64) {
    match rustix::fs::statvfs(path) {
        Ok(st) => {
            let bytes =
                |blocks: u64| i64::try_from(blocks.saturating_mul(st.f_frsize)).unwrap_or(i64::MAX);
            (bytes(st.f_blocks), bytes(st.f_bavail))
        }
        Err(_) => (-1, -1),
    }
}

/// Handles DescribeCluster.
pub async fn describe_cluster(
    ctx: &RequestContext,
    req: DescribeClusterRequest,
) -> Option<DescribeClusterResponse> {
    let broker = &ctx.broker;
    let image = broker.image();
    let mut resp = DescribeClusterResponse::default();
    // Endpoint type 1 = brokers (the only one served on this listener); 2 = controllers.
    if req.endpoint_type != 1 {
        resp.error_code = ResponseError::UnsupportedEndpointType.code();
        resp.error_message = Some(s(
            "The target endpoint type is not supported by this listener.",
        ));
        resp.endpoint_type = req.endpoint_type;
        return Some(resp);
    }
    resp.endpoint_type = 1;
    resp.cluster_id = s(image.cluster_id.clone());
    resp.controller_id = BrokerId(image.controller_id);
    resp.brokers = image
        .brokers
        .values()
        .map(|b| {
            let mut db = DescribeClusterBroker::default();
            db.broker_id = BrokerId(b.id);
            db.host = s(b.host.clone());
            db.port = b.port;
            db.rack = b.rack.clone().map(s);
            db
        })
        .collect();
    Some(resp)
}
