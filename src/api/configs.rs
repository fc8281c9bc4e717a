//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.
//!
//! Topic configs come from the one table in [`crate::metadata::topic_config`]: every entry is described, with
//! its value, its source (set on the topic, from the broker's static config, or Kafka's default) and synonyms.
//! Broker configs are described read-only; changing them at runtime (dynamic broker configs) is not supported.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::*;

use super::RequestContext;
use super::{controller_error_code, s};
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::controller::ConfigOp;
use crate::metadata::topic_config::{config_source, default_source, ConfigType, TOPIC_CONFIGS};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;

const DUPLICATE_RESOURCE: &str = "Duplicate resource in request";

/// The (type, name) resources named more than once in a request. Every copy of such a resource is answered
/// with INVALID_REQUEST, as Kafka does for repeated topics in CreateTopics and partitions in ListOffsets.
fn duplicate_resources<'a>(
    resources: impl Iterator<Item = (i8, &'a str)>,
) -> HashSet<(i8, String)> {
    let mut seen = HashSet::new();
    let mut dups = HashSet::new();
    for (kind, name) in resources {
        if !seen.insert((kind, name)) {
            dups.insert((kind, name.to_string()));
        }
    }
    dups
}

/// Handles DescribeConfigs.
pub async fn describe_configs(
    ctx: &RequestContext,
    req: DescribeConfigsRequest,
) -> Option<DescribeConfigsResponse> {
    let broker = &ctx.broker;
    let version = ctx.version;
    let image = broker.image();
    let mut resp = DescribeConfigsResponse::default();
    let duplicates = duplicate_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        if duplicates.contains(&(res.resource_type, res.resource_name.to_string())) {
            // Each copy would repeat the whole config list: a small request must not multiply the response.
            r.error_code = ResponseError::InvalidRequest.code();
            r.error_message = Some(s(DUPLICATE_RESOURCE));
            resp.results.push(r);
            continue;
        }
        // A set, so that a long key list costs one lookup per config rather than a scan.
        let keys: Option<HashSet<String>> = res
            .configuration_keys
            .map(|k| k.iter().map(|x| x.to_string()).collect());
        let wanted = |name: &str| keys.as_ref().map(|k| k.contains(name)).unwrap_or(true);
        match res.resource_type {
            TOPIC => match image.topic(&res.resource_name) {
                None => {
                    r.error_code = ResponseError::UnknownTopicOrPartition.code();
                    r.error_message =
                        Some(s(format!("Topic {} does not exist", &*res.resource_name)));
                }
                Some(t) => {
                    for d in TOPIC_CONFIGS.iter().filter(|d| wanted(d.name)) {
                        let broker_value = (d.default)(&broker.config);
                        let default_source = default_source(d, &broker.config);
                        let set = t.configs.get(d.name);
                        let mut e = DescribeConfigsResourceResult::default();
                        e.name = s(d.name);
                        e.value = Some(s(set.cloned().unwrap_or_else(|| broker_value.clone())));
                        e.config_source = if set.is_some() {
                            config_source::DYNAMIC_TOPIC
                        } else {
                            default_source
                        };
                        if version >= 3 {
                            e.config_type = d.kind as i8;
                        }
                        if req.include_documentation && version >= 3 {
                            e.documentation = Some(s(d.doc));
                        }
                        if req.include_synonyms {
                            if let Some(v) = set {
                                e.synonyms
                                    .push(synonym(d.name, v, config_source::DYNAMIC_TOPIC));
                            }
                            if let Some(b) = d.broker_synonym {
                                e.synonyms.push(synonym(b, &broker_value, default_source));
                            }
                        }
                        r.configs.push(e);
                    }
                }
            },
            BROKER => {
                let name = res.resource_name.to_string();
                if !name.is_empty() && name != broker.config.node_id.to_string() {
                    r.error_code = ResponseError::InvalidRequest.code();
                    r.error_message = Some(s(format!(
                        "Unexpected broker id, expected {} or empty string, but received {name}",
                        broker.config.node_id
                    )));
                } else {
                    for (k, v, is_default, kind) in broker_entries(&broker.config) {
                        if !wanted(&k) {
                            continue;
                        }
                        let mut e = DescribeConfigsResourceResult::default();
                        e.name = s(k.clone());
                        e.value = v.clone().map(s);
                        e.read_only = true;
                        e.config_source = if is_default {
                            config_source::DEFAULT
                        } else {
                            config_source::STATIC_BROKER
                        };
                        if version >= 3 {
                            e.config_type = kind as i8;
                        }
                        if req.include_synonyms {
                            e.synonyms.push(synonym(
                                &k,
                                v.as_deref().unwrap_or(""),
                                e.config_source,
                            ));
                        }
                        r.configs.push(e);
                    }
                }
            }
            BROKER_LOGGER => {}
            other => {
                r.error_code = ResponseError::InvalidRequest.code();
                r.error_message = Some(s(format!("Unsupported resource type {other}")));
            }
        }
        resp.results.push(r);
    }
    Some(resp)
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    let mut syn = DescribeConfigsSynonym::default();
    syn.name = s(name);
    syn.value = Some(s(value));
    syn.source = source;
    syn
}

/// Every broker setting as (Kafka name, value, equal-to-default, type).
fn broker_entries(config: &BrokerConfig) -> Vec<(String, Option<String>, bool, ConfigType)> {
    let current = serde_json::to_value(config).unwrap_or_default();
    let defaults = serde_json::to_value(BrokerConfig::default()).unwrap_or_default();
    let (Some(current), Some(defaults)) = (current.as_object(), defaults.as_object()) else {
        return Vec::new();
    };
    let mut out: Vec<_> = current
        .iter()
        .map(|(k, v)| {
            let (value, kind) = match v {
                serde_json::Value::Null => (None, ConfigType::String),
                serde_json::Value::Bool(b) => (Some(b.to_string()), ConfigType::Boolean),
                serde_json::Value::Number(n) => (
                    Some(n.to_string()),
                    if n.as_i64()
                        .map(|x| i32::try_from(x).is_ok())
                        .unwrap_or(false)
                    {
                        ConfigType::Int
                    } else {
                        ConfigType::Long
                    },
                ),
                serde_json::Value::String(x) => (Some(x.clone()), ConfigType::String),
                other => (Some(other.to_string()), ConfigType::String),
            };
            (k.replace('_', "."), value, defaults.get(k) == Some(v), kind)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Handles AlterConfigs (replaces all of a topic's overrides).
pub async fn alter_configs(
    ctx: &RequestContext,
    req: AlterConfigsRequest,
) -> Option<AlterConfigsResponse> {
    let broker = &ctx.broker;
    let mut resp = AlterConfigsResponse::default();
    let duplicates = duplicate_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    for res in req.resources {
        if duplicates.contains(&(res.resource_type, res.resource_name.to_string())) {
            let mut r = alter_configs_response::AlterConfigsResourceResponse::default();
            r.resource_type = res.resource_type;
            r.resource_name = res.resource_name;
            r.error_code = ResponseError::InvalidRequest.code();
            r.error_message = Some(s(DUPLICATE_RESOURCE));
            resp.responses.push(r);
            continue;
        }
        let ops = res
            .configs
            .into_iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    ConfigOp::Set,
                    c.value.map(|v| v.to_string()),
                )
            })
            .collect();
        let (code, msg) = alter(
            broker,
            res.resource_type,
            &res.resource_name,
            ops,
            false,
            req.validate_only,
        )
        .await;
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name;
        r.error_code = code;
        r.error_message = msg.map(s);
        resp.responses.push(r);
    }
    Some(resp)
}

/// Handles IncrementalAlterConfigs (SET=0, DELETE=1, APPEND=2, SUBTRACT=3).
pub async fn incremental_alter_configs(
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> Option<IncrementalAlterConfigsResponse> {
    let broker = &ctx.broker;
    let mut resp = IncrementalAlterConfigsResponse::default();
    let duplicates = duplicate_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    for res in req.resources {
        let mut ops = Vec::new();
        let mut bad = duplicates
            .contains(&(res.resource_type, res.resource_name.to_string()))
            .then(|| DUPLICATE_RESOURCE.to_string());
        let configs = if bad.is_none() {
            res.configs
        } else {
            Vec::new()
        };
        for c in configs {
            let op = match c.config_operation {
                0 => ConfigOp::Set,
                1 => ConfigOp::Delete,
                2 => ConfigOp::Append,
                3 => ConfigOp::Subtract,
                other => {
                    bad = Some(format!("Unknown config operation {other}"));
                    break;
                }
            };
            ops.push((c.name.to_string(), op, c.value.map(|v| v.to_string())));
        }
        let (code, msg) = match bad {
            Some(m) => (ResponseError::InvalidRequest.code(), Some(m)),
            None => {
                alter(
                    broker,
                    res.resource_type,
                    &res.resource_name,
                    ops,
                    true,
                    req.validate_only,
                )
                .await
            }
        };
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name;
        r.error_code = code;
        r.error_message = msg.map(s);
        resp.responses.push(r);
    }
    Some(resp)
}

async fn alter(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    ops: Vec<(String, ConfigOp, Option<String>)>,
    incremental: bool,
    validate_only: bool,
) -> (i16, Option<String>) {
    match resource_type {
        TOPIC => match broker.controller.alter_topic_configs(name, ops, incremental, validate_only).await {
            Ok(()) => (0, None),
            Err(e) => (controller_error_code(&e), Some(e.to_string())),
        },
        BROKER | BROKER_LOGGER => (
            ResponseError::InvalidRequest.code(),
            Some("Dynamic broker configs are not supported; set them in the config file or environment".into()),
        ),
        other => (ResponseError::InvalidRequest.code(), Some(format!("Unsupported resource type {other}"))),
    }
}
