//! `vltava topic create|list|describe|delete|alter`: topic administration over the Kafka protocol, so a user
//! needs no other tool.

use clap::{Args, Subcommand};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::client::{Client, ClientError};

/// `vltava topic ...`
#[derive(Args, Debug)]
pub struct TopicCommand {
    /// Broker to talk to.
    #[arg(
        long,
        short = 'b',
        default_value = "127.0.0.1:9092",
        global = true,
        value_name = "HOST:PORT"
    )]
    pub bootstrap: String,
    /// What to do.
    #[command(subcommand)]
    pub action: TopicAction,
}

/// Topic operations.
#[derive(Subcommand, Debug)]
pub enum TopicAction {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Partition count (broker default when omitted).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replication factor (broker default when omitted).
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// Topic config override NAME=VALUE (repeatable), e.g. retention.ms=60000.
        #[arg(long = "config", short = 'c', value_name = "NAME=VALUE")]
        configs: Vec<String>,
    },
    /// List topic names.
    List,
    /// Show partitions, leaders and non-default configs.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Grow partitions and/or change configs.
    Alter {
        /// Topic name.
        name: String,
        /// New partition count (can only grow).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Set a config NAME=VALUE (repeatable).
        #[arg(long = "config", short = 'c', value_name = "NAME=VALUE")]
        configs: Vec<String>,
        /// Remove a config override (repeatable).
        #[arg(long = "delete-config", value_name = "NAME")]
        delete_configs: Vec<String>,
    },
}

pub(crate) fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

pub(crate) fn check(code: i16, message: Option<&StrBytes>, what: &str) -> Result<(), ClientError> {
    if code == 0 {
        return Ok(());
    }
    let name = ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_default();
    let detail = message.map(|m| m.to_string()).unwrap_or_default();
    Err(ClientError::Refused(
        format!("{what}: {name} ({code}) {detail}")
            .trim_end()
            .to_string(),
    ))
}

fn parse_kv(items: &[String]) -> Result<Vec<(String, String)>, ClientError> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| ClientError::Refused(format!("config `{kv}` is not NAME=VALUE")))
        })
        .collect()
}

/// Runs a topic command, printing results to stdout.
pub fn run(cmd: TopicCommand) -> Result<(), ClientError> {
    let mut c = Client::connect(&cmd.bootstrap)?;
    match cmd.action {
        TopicAction::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut t = create_topics_request::CreatableTopic::default();
            t.name = TopicName(s(&name));
            t.num_partitions = partitions.unwrap_or(-1);
            t.replication_factor = replication_factor.unwrap_or(-1);
            for (k, v) in parse_kv(&configs)? {
                let mut cfg = create_topics_request::CreatableTopicConfig::default();
                cfg.name = s(&k);
                cfg.value = Some(s(&v));
                t.configs.push(cfg);
            }
            let mut req = CreateTopicsRequest::default();
            req.topics.push(t);
            req.timeout_ms = 30_000;
            let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req)?;
            for r in resp.topics {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("create {name}"),
                )?;
                println!(
                    "created topic {} with {} partition(s), id {}",
                    &*r.name.0, r.num_partitions, r.topic_id
                );
            }
        }
        TopicAction::List => {
            let mut req = MetadataRequest::default();
            req.topics = None;
            let resp: MetadataResponse = c.call(ApiKey::Metadata, 12, &req)?;
            let mut names: Vec<String> = resp
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect();
            names.sort();
            for n in names {
                println!("{n}");
            }
        }
        TopicAction::Describe { name } => {
            let mut req = MetadataRequest::default();
            let mut mt = metadata_request::MetadataRequestTopic::default();
            mt.name = Some(TopicName(s(&name)));
            req.topics = Some(vec![mt]);
            req.allow_auto_topic_creation = false;
            let resp: MetadataResponse = c.call(ApiKey::Metadata, 12, &req)?;
            for t in resp.topics {
                check(t.error_code, None, &format!("describe {name}"))?;
                println!(
                    "Topic: {}\tTopicId: {}\tPartitionCount: {}",
                    name,
                    t.topic_id,
                    t.partitions.len()
                );
                let mut dreq = DescribeConfigsRequest::default();
                let mut res = describe_configs_request::DescribeConfigsResource::default();
                res.resource_type = 2;
                res.resource_name = s(&name);
                // null = every config (an empty list would ask for none)
                res.configuration_keys = None;
                dreq.resources.push(res);
                let dresp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &dreq)?;
                for r in dresp.results {
                    check(r.error_code, r.error_message.as_ref(), "describe configs")?;
                    let set: Vec<String> = r
                        .configs
                        .iter()
                        .filter(|e| e.config_source == 1)
                        .map(|e| format!("{}={}", &*e.name, e.value.as_deref().unwrap_or("")))
                        .collect();
                    println!("\tConfigs: {}", set.join(","));
                }
                for p in t.partitions {
                    let ids = |v: &[BrokerId]| {
                        v.iter()
                            .map(|b| b.0.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    println!(
                        "\tPartition: {}\tLeader: {}\tLeaderEpoch: {}\tReplicas: {}\tIsr: {}",
                        p.partition_index,
                        p.leader_id.0,
                        p.leader_epoch,
                        ids(&p.replica_nodes),
                        ids(&p.isr_nodes)
                    );
                }
            }
        }
        TopicAction::Delete { name } => {
            let mut req = DeleteTopicsRequest::default();
            let mut st = delete_topics_request::DeleteTopicState::default();
            st.name = Some(TopicName(s(&name)));
            req.topics.push(st);
            req.timeout_ms = 30_000;
            let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 6, &req)?;
            for r in resp.responses {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("delete {name}"),
                )?;
                println!("deleted topic {name}");
            }
        }
        TopicAction::Alter {
            name,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                return Err(ClientError::Refused(
                    "nothing to alter: give --partitions, --config or --delete-config".into(),
                ));
            }
            if let Some(count) = partitions {
                let mut req = CreatePartitionsRequest::default();
                let mut t = create_partitions_request::CreatePartitionsTopic::default();
                t.name = TopicName(s(&name));
                t.count = count;
                t.assignments = None;
                req.topics.push(t);
                req.timeout_ms = 30_000;
                let resp: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, 3, &req)?;
                for r in resp.results {
                    check(
                        r.error_code,
                        r.error_message.as_ref(),
                        &format!("alter {name} partitions"),
                    )?;
                    println!("topic {name} now has {count} partitions");
                }
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                let mut res = incremental_alter_configs_request::AlterConfigsResource::default();
                res.resource_type = 2;
                res.resource_name = s(&name);
                for (k, v) in parse_kv(&configs)? {
                    let mut a = incremental_alter_configs_request::AlterableConfig::default();
                    a.name = s(&k);
                    a.config_operation = 0;
                    a.value = Some(s(&v));
                    res.configs.push(a);
                }
                for k in &delete_configs {
                    let mut a = incremental_alter_configs_request::AlterableConfig::default();
                    a.name = s(k);
                    a.config_operation = 1;
                    a.value = None;
                    res.configs.push(a);
                }
                let mut req = IncrementalAlterConfigsRequest::default();
                req.resources.push(res);
                let resp: IncrementalAlterConfigsResponse =
                    c.call(ApiKey::IncrementalAlterConfigs, 1, &req)?;
                for r in resp.responses {
                    check(
                        r.error_code,
                        r.error_message.as_ref(),
                        &format!("alter {name} configs"),
                    )?;
                    println!("topic {name} configs updated");
                }
            }
        }
    }
    Ok(())
}
