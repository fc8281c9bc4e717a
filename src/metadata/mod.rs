//! The cluster metadata image: brokers, topics with their IDs, partitions, leaders and topic configs.
//!
//! Owned by the controller ([`crate::controller`]), which builds a new image for every committed change and
//! publishes it as a whole (`Arc<MetadataImage>`); readers take a cheap snapshot and never lock the controller.

pub mod topic_config;

use std::collections::{BTreeMap, HashMap};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// `node.id`
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if any.
    pub rack: Option<String>,
}

/// One partition's placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Partition index.
    pub index: i32,
    /// Leader broker id (-1 when none).
    pub leader: i32,
    /// Bumped on every leader change; stamped into batches.
    pub leader_epoch: i32,
    /// Bumped on every change to this partition.
    pub partition_epoch: i32,
    /// Assigned replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Stable topic ID (persisted in the metadata log).
    pub id: Uuid,
    /// Partitions, indexed by partition index.
    pub partitions: Vec<PartitionInfo>,
    /// Config overrides (only values set on the topic).
    pub configs: BTreeMap<String, String>,
}

/// An immutable snapshot of cluster metadata.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    /// Cluster id (from `meta.properties`).
    pub cluster_id: String,
    /// Controller broker id.
    pub controller_id: i32,
    /// Registered brokers by id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by name, in creation order.
    pub topics: IndexMap<String, TopicInfo>,
    /// Topic name by ID.
    pub topic_ids: HashMap<Uuid, String>,
    /// Offset of the last metadata record applied.
    pub offset: u64,
    /// First producer id not yet handed out in a block (see `MetadataRecord::ProducerIds`).
    pub next_producer_id: i64,
}

impl MetadataImage {
    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// A topic by ID.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicInfo> {
        self.topic_ids.get(id).and_then(|n| self.topics.get(n))
    }

    /// One partition.
    pub fn partition(&self, topic: &str, index: i32) -> Option<&PartitionInfo> {
        let t = self.topics.get(topic)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| t.partitions.get(i))
    }
}

/// Kafka's internal topics (`Topic.isInternal`): flagged internal in Metadata, written only by coordinators.
pub fn is_internal_topic(name: &str) -> bool {
    matches!(
        name,
        "__consumer_offsets" | "__transaction_state" | "__share_group_state"
    )
}

/// Kafka's topic name rules: 1-249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
    {
        return Err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name("ü").is_err());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
