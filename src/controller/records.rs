//! Metadata records: the only way cluster metadata changes. Serialized as JSON in the metadata log.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::metadata::{BrokerInfo, PartitionInfo};

/// One change to cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker registered or changed its advertised address.
    RegisterBroker(BrokerInfo),
    /// A topic was created.
    Topic {
        /// Name.
        name: String,
        /// Stable ID.
        id: Uuid,
    },
    /// A partition was created or changed (leader, ISR, replicas).
    Partition {
        /// Owning topic.
        topic_id: Uuid,
        /// New state of the partition.
        partition: PartitionInfo,
    },
    /// A topic config override was set (`Some`) or removed (`None`).
    Config {
        /// Owning topic.
        topic_id: Uuid,
        /// Config name.
        name: String,
        /// New value.
        value: Option<String>,
    },
    /// A topic was deleted.
    RemoveTopic {
        /// Deleted topic.
        id: Uuid,
    },
    /// A block of producer ids was handed to a broker (Kafka's `ProducerIdsRecord`): ids below
    /// `next_producer_id` are taken, so no later block (even after a restart) reuses one.
    ProducerIds {
        /// The broker that got the block.
        broker_id: i32,
        /// First id of the next block.
        next_producer_id: i64,
    },
}
