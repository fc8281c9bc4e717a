//! The controller: owner of cluster metadata.
//!
//! Every change is a list of [`MetadataRecord`]s: validated against the current image, appended durably to the
//! metadata log ([`store::MetadataStore`]), then applied by the pure state machine ([`state::apply`]) to build
//! the next [`MetadataImage`], which is published whole. Replay of the log on start-up is the only other way
//! state is built, so what was acknowledged is exactly what comes back after a restart.
//!
//! Concurrency: one `tokio::sync::Mutex` serialises commands (they are rare and small); readers use the published
//! `Arc<MetadataImage>` and never take it. A command returns only after the listener (the broker's replica
//! manager) has applied its image, but the listener runs after the mutex is released: opening and recovering
//! logs for new partitions never happens under the controller's mutex. The metadata log's write and fsync run on
//! the blocking pool, holding the (owned) mutex guard, so commits stay in order without an async worker waiting
//! on the disk. In a single-node cluster the controller runs in-process and its log is
//! a local file; the multi-node cluster will put this same log behind Raft (openraft), which is why commands only
//! ever produce records instead of mutating state directly.

pub mod records;
pub mod state;
pub mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::metadata::{
    topic_config, validate_topic_name, BrokerInfo, MetadataImage, PartitionInfo,
};
pub use records::MetadataRecord;
use store::MetadataStore;

/// Why a controller command was refused. Mapped to Kafka error codes at the API edge.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// TOPIC_ALREADY_EXISTS
    #[error("{0}")]
    TopicAlreadyExists(String),
    /// INVALID_TOPIC_EXCEPTION
    #[error("{0}")]
    InvalidTopic(String),
    /// INVALID_PARTITIONS
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_REPLICATION_FACTOR
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// INVALID_REPLICA_ASSIGNMENT
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// INVALID_CONFIG
    #[error("{0}")]
    InvalidConfig(String),
    /// UNKNOWN_TOPIC_OR_PARTITION
    #[error("This server does not host this topic-partition.")]
    UnknownTopic,
    /// UNKNOWN_TOPIC_ID
    #[error("This server does not host this topic ID.")]
    UnknownTopicId,
    /// TOPIC_DELETION_DISABLED
    #[error("Topic deletion is disabled.")]
    DeletionDisabled,
    /// INVALID_REQUEST
    #[error("{0}")]
    InvalidRequest(String),
    /// POLICY_VIOLATION
    #[error("{0}")]
    PolicyViolation(String),
    /// KAFKA_STORAGE_ERROR: the metadata log could not be written.
    #[error("metadata log: {0}")]
    Storage(#[from] std::io::Error),
}

/// What a topic creation asks for.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// -1 means the broker default.
    pub num_partitions: i32,
    /// -1 means the broker default.
    pub replication_factor: i16,
    /// Explicit replica assignment by partition, if given.
    pub assignments: Vec<(i32, Vec<i32>)>,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
}

/// How an incremental config change applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOp {
    /// Set the value.
    Set,
    /// Remove the override (back to the default).
    Delete,
    /// Add to a list.
    Append,
    /// Remove from a list.
    Subtract,
}

/// Producer ids per block (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

type Listener = Box<dyn Fn(Arc<MetadataImage>) -> BoxFuture<'static, ()> + Send + Sync>;

/// The in-process controller.
pub struct Controller {
    config: Arc<BrokerConfig>,
    /// `Arc` so a commit can move its guard onto the blocking thread that writes the metadata log.
    inner: Arc<Mutex<Inner>>,
    published: Arc<RwLock<Arc<MetadataImage>>>,
    /// `Arc` so a commit's own task can announce its image after the caller has gone.
    listener: Arc<std::sync::OnceLock<Listener>>,
    /// Test hook: a commit waits twice on this barrier (of 2) once its image is published.
    #[cfg(test)]
    published_gate: std::sync::Mutex<Option<Arc<std::sync::Barrier>>>,
}

struct Inner {
    image: MetadataImage,
    store: MetadataStore,
}

impl Controller {
    /// Opens (or creates) the metadata log under `data_dir` and replays it.
    pub fn open(
        config: Arc<BrokerConfig>,
        data_dir: &Path,
        cluster_id: String,
    ) -> Result<Controller, ControllerError> {
        let (store, records) = MetadataStore::open(&data_dir.join("__cluster_metadata"))?;
        let mut image = MetadataImage {
            cluster_id,
            controller_id: config.node_id,
            ..Default::default()
        };
        for r in &records {
            state::apply(&mut image, r);
        }
        Ok(Controller {
            config,
            published: Arc::new(RwLock::new(Arc::new(image.clone()))),
            inner: Arc::new(Mutex::new(Inner { image, store })),
            listener: Arc::new(std::sync::OnceLock::new()),
            #[cfg(test)]
            published_gate: std::sync::Mutex::new(None),
        })
    }

    /// Registers the one function called with every new image (the broker's replica manager); commands wait for
    /// the future it returns, without holding the controller's mutex.
    pub fn set_listener(
        &self,
        f: impl Fn(Arc<MetadataImage>) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) {
        let _ = self.listener.set(Box::new(f));
    }

    /// The latest published image.
    pub fn image(&self) -> Arc<MetadataImage> {
        match self.published.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Appends `records` durably, applies and publishes them, releases the mutex and then announces the image.
    ///
    /// The write and its fsync run on the blocking pool, so an async worker never waits for the disk. The guard
    /// moves there too: commits stay serialised, and a caller that gives up (its connection closed) cannot leave
    /// a record on disk that the image lacks, because append, apply and publish finish together regardless.
    /// The whole commit, announcement included, runs in a task of its own: a caller aborted after the image
    /// was published but before it was announced would otherwise leave a topic in the image whose partitions
    /// the replica manager never opens (clients then see a leader that answers NOT_LEADER_OR_FOLLOWER until
    /// the next command, which is what an rdkafka producer closing its bootstrap connection during an
    /// auto-creation used to cause).
    async fn commit(
        &self,
        mut inner: OwnedMutexGuard<Inner>,
        records: Vec<MetadataRecord>,
    ) -> Result<(), ControllerError> {
        if records.is_empty() {
            return Ok(());
        }
        let published = self.published.clone();
        let listener = self.listener.clone();
        #[cfg(test)]
        let gate = self
            .published_gate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let task = tokio::spawn(async move {
            let image =
                tokio::task::spawn_blocking(move || -> std::io::Result<Arc<MetadataImage>> {
                    inner.store.append(&records)?;
                    for r in &records {
                        state::apply(&mut inner.image, r);
                    }
                    let image = Arc::new(inner.image.clone());
                    match published.write() {
                        Ok(mut g) => *g = image.clone(),
                        Err(p) => *p.into_inner() = image.clone(),
                    }
                    drop(inner);
                    #[cfg(test)]
                    if let Some(g) = gate {
                        g.wait();
                        g.wait();
                    }
                    Ok(image)
                })
                .await
                .map_err(|e| {
                    std::io::Error::other(format!("metadata commit did not finish: {e}"))
                })??;
            if let Some(l) = listener.get() {
                l(image).await;
            }
            Ok::<(), std::io::Error>(())
        });
        task.await
            .map_err(|e| std::io::Error::other(format!("metadata commit did not finish: {e}")))??;
        Ok(())
    }

    /// Hands the image to the listener in a task of its own, so a command whose request task is aborted (its
    /// connection closed) still gets its published image applied; dropping this future only stops waiting.
    async fn announce(&self, image: Arc<MetadataImage>) {
        if let Some(l) = self.listener.get() {
            if let Err(e) = tokio::spawn(l(image)).await {
                tracing::error!(error = %e, "applying a metadata image failed");
            }
        }
    }

    /// Re-announces the current image to the listener (used once at start-up).
    pub async fn republish(&self) {
        self.announce(self.image()).await;
    }

    /// Hands `broker_id` the next block of [`PRODUCER_ID_BLOCK_SIZE`] producer ids (Kafka's AllocateProducerIds),
    /// durable before it is returned: `(first, end)` with `end` exclusive.
    pub async fn allocate_producer_ids(
        &self,
        broker_id: i32,
    ) -> Result<(i64, i64), ControllerError> {
        let inner = self.inner.clone().lock_owned().await;
        let first = inner.image.next_producer_id;
        // Kafka refuses blocks past i64::MAX - block size; so do we (a cluster would need 9e18 producers).
        let end = first
            .checked_add(PRODUCER_ID_BLOCK_SIZE)
            .filter(|e| *e < i64::MAX)
            .ok_or_else(|| ControllerError::InvalidRequest("producer ids exhausted".into()))?;
        self.commit(
            inner,
            vec![MetadataRecord::ProducerIds {
                broker_id,
                next_producer_id: end,
            }],
        )
        .await?;
        Ok((first, end))
    }

    /// Registers (or updates) a broker's advertised address.
    pub async fn register_broker(&self, info: BrokerInfo) -> Result<(), ControllerError> {
        let inner = self.inner.clone().lock_owned().await;
        if inner.image.brokers.get(&info.id) == Some(&info) {
            return Ok(());
        }
        self.commit(inner, vec![MetadataRecord::RegisterBroker(info)])
            .await
    }

    /// Creates a topic (or only validates it). Returns the topic ID and the partition count.
    pub async fn create_topic(
        &self,
        t: NewTopic,
        validate_only: bool,
    ) -> Result<(Uuid, i32, i16), ControllerError> {
        let inner = self.inner.clone().lock_owned().await;
        validate_topic_name(&t.name).map_err(ControllerError::InvalidTopic)?;
        if inner.image.topics.contains_key(&t.name) {
            return Err(ControllerError::TopicAlreadyExists(format!(
                "Topic '{}' already exists.",
                t.name
            )));
        }
        if let Some(clash) = inner
            .image
            .topics
            .keys()
            .find(|n| n.replace('.', "_") == t.name.replace('.', "_"))
        {
            return Err(ControllerError::InvalidTopic(format!(
                "Topic '{}' collides with existing topic: {clash}",
                t.name
            )));
        }
        for (k, v) in &t.configs {
            topic_config::validate(k, v).map_err(ControllerError::InvalidConfig)?;
        }
        let brokers: Vec<i32> = inner.image.brokers.keys().copied().collect();
        let assignments = if !t.assignments.is_empty() {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                return Err(ControllerError::InvalidRequest(
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
                ));
            }
            if t.assignments.len() > MAX_PARTITIONS_PER_REQUEST as usize {
                return Err(too_many_partitions());
            }
            check_assignments(&t.assignments, 0, &brokers)?
        } else {
            let n = if t.num_partitions == -1 {
                self.config.num_partitions
            } else {
                t.num_partitions
            };
            let rf = if t.replication_factor == -1 {
                self.config.default_replication_factor
            } else {
                t.replication_factor
            };
            if n <= 0 {
                return Err(ControllerError::InvalidPartitions(
                    "Number of partitions was set to an invalid non-positive value.".into(),
                ));
            }
            if rf <= 0 {
                return Err(ControllerError::InvalidReplicationFactor(
                    "Replication factor must be larger than 0, or -1 to use the default value."
                        .into(),
                ));
            }
            if n > MAX_PARTITIONS_PER_REQUEST {
                return Err(too_many_partitions());
            }
            if rf as usize > brokers.len() {
                return Err(ControllerError::InvalidReplicationFactor(format!(
                    "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.",
                    brokers.len()
                )));
            }
            assign(0, n, rf as usize, &brokers)
        };
        let rf = assignments
            .first()
            .map_or(0, |a| i16::try_from(a.len()).unwrap_or(i16::MAX));
        let count = count_i32(assignments.len());
        if validate_only {
            return Ok((Uuid::nil(), count, rf));
        }
        let id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic {
            name: t.name.clone(),
            id,
        }];
        for (k, v) in t.configs {
            records.push(MetadataRecord::Config {
                topic_id: id,
                name: k,
                value: Some(v),
            });
        }
        for (i, replicas) in assignments.into_iter().enumerate() {
            records.push(MetadataRecord::Partition {
                topic_id: id,
                partition: new_partition(count_i32(i), replicas),
            });
        }
        self.commit(inner, records).await?;
        Ok((id, count, rf))
    }

    /// Deletes a topic by name or ID. Returns (name, id).
    pub async fn delete_topic(
        &self,
        name: Option<&str>,
        id: Option<Uuid>,
    ) -> Result<(String, Uuid), ControllerError> {
        if !self.config.delete_topic_enable {
            return Err(ControllerError::DeletionDisabled);
        }
        let inner = self.inner.clone().lock_owned().await;
        let topic = match (name, id) {
            (Some(n), _) if !n.is_empty() => {
                inner.image.topic(n).ok_or(ControllerError::UnknownTopic)?
            }
            (_, Some(id)) if !id.is_nil() => inner
                .image
                .topic_by_id(&id)
                .ok_or(ControllerError::UnknownTopicId)?,
            _ => {
                return Err(ControllerError::InvalidRequest(
                    "Neither topic name nor id were specified.".into(),
                ))
            }
        };
        let (name, id) = (topic.name.clone(), topic.id);
        self.commit(inner, vec![MetadataRecord::RemoveTopic { id }])
            .await?;
        Ok((name, id))
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        let inner = self.inner.clone().lock_owned().await;
        let topic = inner
            .image
            .topic(name)
            .ok_or(ControllerError::UnknownTopic)?;
        let current = count_i32(topic.partitions.len());
        if count < current {
            return Err(ControllerError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            )));
        }
        if count == current {
            return Err(ControllerError::InvalidPartitions(format!(
                "Topic already has {current} partitions."
            )));
        }
        if count - current > MAX_PARTITIONS_PER_REQUEST {
            return Err(too_many_partitions());
        }
        let rf = topic
            .partitions
            .first()
            .map(|p| p.replicas.len())
            .unwrap_or(1);
        let id = topic.id;
        let brokers: Vec<i32> = inner.image.brokers.keys().copied().collect();
        let new = match assignments {
            Some(a) => {
                if count_i32(a.len()) != count - current {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "Attempted to add {} additional partition(s), but only {} assignment(s) were specified.",
                        count - current,
                        a.len()
                    )));
                }
                let indexed: Vec<(i32, Vec<i32>)> = a
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (current + count_i32(i), r))
                    .collect();
                check_assignments(&indexed, current, &brokers)?
            }
            None => assign(current, count - current, rf, &brokers),
        };
        if validate_only {
            return Ok(());
        }
        let records = new
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| MetadataRecord::Partition {
                topic_id: id,
                partition: new_partition(current + count_i32(i), replicas),
            })
            .collect();
        self.commit(inner, records).await
    }

    /// Changes topic config overrides. `incremental=false` (AlterConfigs) replaces all overrides with `ops`' Sets.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        ops: Vec<(String, ConfigOp, Option<String>)>,
        incremental: bool,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        let inner = self.inner.clone().lock_owned().await;
        let topic = inner
            .image
            .topic(name)
            .ok_or(ControllerError::UnknownTopic)?;
        let mut next = if incremental {
            topic.configs.clone()
        } else {
            BTreeMap::new()
        };
        for (k, op, v) in ops {
            let def = topic_config::lookup(&k).ok_or_else(|| {
                ControllerError::InvalidConfig(format!("Unknown topic config name: {k}"))
            })?;
            match op {
                ConfigOp::Set => {
                    let v = v.ok_or_else(|| {
                        ControllerError::InvalidConfig(format!("Null value not supported for {k}"))
                    })?;
                    next.insert(k, v);
                }
                ConfigOp::Delete => {
                    next.remove(&k);
                }
                ConfigOp::Append | ConfigOp::Subtract => {
                    if def.kind != topic_config::ConfigType::List {
                        return Err(ControllerError::InvalidConfig(format!(
                            "Config value append/subtract is not allowed for config key {k} which is not a list"
                        )));
                    }
                    let current = next
                        .get(&k)
                        .cloned()
                        .unwrap_or_else(|| (def.default)(&self.config));
                    let mut items: Vec<String> = current
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                    for item in v
                        .unwrap_or_default()
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                    {
                        if op == ConfigOp::Append && !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        } else if op == ConfigOp::Subtract {
                            items.retain(|i| i != item);
                        }
                    }
                    next.insert(k, items.join(","));
                }
            }
        }
        for (k, v) in &next {
            topic_config::validate(k, v).map_err(ControllerError::InvalidConfig)?;
        }
        if validate_only {
            return Ok(());
        }
        let id = topic.id;
        let mut records = Vec::new();
        for k in topic.configs.keys() {
            if !next.contains_key(k) {
                records.push(MetadataRecord::Config {
                    topic_id: id,
                    name: k.clone(),
                    value: None,
                });
            }
        }
        for (k, v) in &next {
            if topic.configs.get(k) != Some(v) {
                records.push(MetadataRecord::Config {
                    topic_id: id,
                    name: k.clone(),
                    value: Some(v.clone()),
                });
            }
        }
        self.commit(inner, records).await
    }
}

/// Kafka's `MAX_PARTITIONS_PER_BATCH`: more partitions in one request is refused before any work is done.
pub const MAX_PARTITIONS_PER_REQUEST: i32 = 10_000;

/// Kafka's message when [`MAX_PARTITIONS_PER_REQUEST`] is exceeded.
pub const TOO_MANY_PARTITIONS: &str = "Excessively large number of partitions per request.";

/// A partition count or index as the protocol's i32. Counts here are bounded by [`MAX_PARTITIONS_PER_REQUEST`]
/// and the topic's existing partitions, so the saturation never happens in practice.
fn count_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn too_many_partitions() -> ControllerError {
    ControllerError::PolicyViolation(TOO_MANY_PARTITIONS.into())
}

fn new_partition(index: i32, replicas: Vec<i32>) -> PartitionInfo {
    PartitionInfo {
        index,
        leader: replicas.first().copied().unwrap_or(-1),
        leader_epoch: 0,
        partition_epoch: 0,
        isr: replicas.clone(),
        replicas,
    }
}

/// Round-robin placement starting at the partition index, like Kafka's simple assignor without racks.
fn assign(first: i32, count: i32, rf: usize, brokers: &[i32]) -> Vec<Vec<i32>> {
    (0..count)
        .map(|i| {
            let start = (first + i) as usize;
            (0..rf)
                .map(|r| brokers[(start + r) % brokers.len()])
                .collect()
        })
        .collect()
}

fn check_assignments(
    a: &[(i32, Vec<i32>)],
    first: i32,
    brokers: &[i32],
) -> Result<Vec<Vec<i32>>, ControllerError> {
    let mut sorted: Vec<&(i32, Vec<i32>)> = a.iter().collect();
    sorted.sort_by_key(|(i, _)| *i);
    let rf = sorted.first().map(|(_, r)| r.len()).unwrap_or(0);
    let mut out = Vec::new();
    for (n, (index, replicas)) in sorted.into_iter().enumerate() {
        if *index != first.saturating_add(count_i32(n)) {
            return Err(ControllerError::InvalidReplicaAssignment(
                "Partitions should be consecutive and start from the current partition count."
                    .into(),
            ));
        }
        if replicas.is_empty() {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "Partition {index} has an empty replica list."
            )));
        }
        if replicas.len() != rf {
            return Err(ControllerError::InvalidReplicaAssignment(
                "All partitions should have the same number of replicas.".into(),
            ));
        }
        let mut seen = replicas.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != replicas.len() {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "Duplicate brokers in assignment of partition {index}."
            )));
        }
        if let Some(b) = replicas.iter().find(|b| !brokers.contains(b)) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "Broker {b} in the assignment of partition {index} is not registered."
            )));
        }
        out.push(replicas.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    async fn controller(dir: &Path) -> Controller {
        let c = Controller::open(Arc::new(BrokerConfig::default()), dir, "cid".into()).unwrap();
        c.register_broker(BrokerInfo {
            id: 1,
            host: "h".into(),
            port: 1,
            rack: None,
        })
        .await
        .unwrap();
        c
    }

    fn topic(name: &str, n: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: n,
            replication_factor: -1,
            assignments: vec![],
            configs: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn create_replay_delete() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path()).await;
        let (id, n, rf) = c.create_topic(topic("a", 3), false).await.unwrap();
        assert_eq!((n, rf), (3, 1));
        assert!(matches!(
            c.create_topic(topic("a", 1), false).await,
            Err(ControllerError::TopicAlreadyExists(_))
        ));
        assert!(matches!(
            c.create_topic(topic("b", 0), false).await,
            Err(ControllerError::InvalidPartitions(_))
        ));
        let mut rf2 = topic("c", 1);
        rf2.replication_factor = 2;
        assert!(matches!(
            c.create_topic(rf2, false).await,
            Err(ControllerError::InvalidReplicationFactor(_))
        ));
        c.create_topic(topic("v", 1), true).await.unwrap();
        assert!(matches!(
            c.create_topic(topic("huge", i32::MAX), true).await,
            Err(ControllerError::PolicyViolation(_))
        ));
        assert!(matches!(
            c.create_partitions("a", i32::MAX, None, false).await,
            Err(ControllerError::PolicyViolation(_))
        ));
        assert!(
            c.image().topic("v").is_none(),
            "validate_only must not create"
        );
        c.create_partitions("a", 5, None, false).await.unwrap();
        assert!(matches!(
            c.create_partitions("a", 4, None, false).await,
            Err(ControllerError::InvalidPartitions(_))
        ));
        c.alter_topic_configs(
            "a",
            vec![("retention.ms".into(), ConfigOp::Set, Some("5".into()))],
            true,
            false,
        )
        .await
        .unwrap();
        drop(c);
        let c = controller(dir.path()).await;
        let t = c.image().topic("a").cloned().unwrap();
        assert_eq!(t.id, id, "topic id stable across restart");
        assert_eq!(t.partitions.len(), 5);
        assert_eq!(t.configs.get("retention.ms").map(String::as_str), Some("5"));
        c.delete_topic(Some("a"), None).await.unwrap();
        assert!(c.image().topic("a").is_none());
        assert!(c.image().topic_by_id(&id).is_none());
        drop(c);
        let c = controller(dir.path()).await;
        assert!(c.image().topics.is_empty());
    }

    /// The listener (which opens logs) runs after the controller's mutex is released, and the command returns
    /// only once it has finished.
    #[tokio::test]
    async fn listener_runs_outside_the_mutex_and_is_awaited() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(controller(dir.path()).await);
        let weak = Arc::downgrade(&c);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        c.set_listener(move |image| {
            let (weak, log) = (weak.clone(), log.clone());
            Box::pin(async move {
                tokio::task::yield_now().await;
                let free = weak.upgrade().is_some_and(|c| c.inner.try_lock().is_ok());
                log.lock().unwrap().push((image.topics.len(), free));
            })
        });
        c.create_topic(topic("a", 2), false).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![(1, true)]);
    }

    /// A command whose caller is aborted after its image is published still has that image announced: the
    /// replica manager must open the partitions of a topic the image shows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aborted_command_still_announces_its_published_image() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(controller(dir.path()).await);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        c.set_listener(move |image| {
            let log = log.clone();
            Box::pin(async move { log.lock().unwrap().push(image.topics.len()) })
        });
        let gate = Arc::new(std::sync::Barrier::new(2));
        *c.published_gate.lock().unwrap() = Some(gate.clone());
        let cc = c.clone();
        let command = tokio::spawn(async move { cc.create_topic(topic("a", 2), false).await });
        let g = gate.clone();
        tokio::task::spawn_blocking(move || g.wait()).await.unwrap();
        assert!(c.image().topic("a").is_some(), "published before the abort");
        command.abort();
        assert!(command.await.unwrap_err().is_cancelled());
        let g = gate.clone();
        tokio::task::spawn_blocking(move || g.wait()).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while seen.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(
            *seen.lock().unwrap(),
            vec![1],
            "the published image was announced"
        );
    }

    #[tokio::test]
    async fn assignments_checked() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path()).await;
        let mut t = topic("x", -1);
        t.assignments = vec![(0, vec![1]), (1, vec![2])];
        assert!(matches!(
            c.create_topic(t.clone(), false).await,
            Err(ControllerError::InvalidReplicaAssignment(_))
        ));
        t.assignments = vec![(0, vec![1]), (1, vec![1])];
        c.create_topic(t, false).await.unwrap();
        let mut bad = topic("y", 1);
        bad.configs.insert("retention.ms".into(), "x".into());
        assert!(matches!(
            c.create_topic(bad, false).await,
            Err(ControllerError::InvalidConfig(_))
        ));
        assert!(matches!(
            c.create_topic(topic("a b", 1), false).await,
            Err(ControllerError::InvalidTopic(_))
        ));
    }

    #[tokio::test]
    async fn incremental_list_ops() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path()).await;
        c.create_topic(topic("l", 1), false).await.unwrap();
        let op = |o, v: &str| {
            vec![(
                "leader.replication.throttled.replicas".to_string(),
                o,
                Some(v.to_string()),
            )]
        };
        c.alter_topic_configs("l", op(ConfigOp::Append, "0:1,1:1"), true, false)
            .await
            .unwrap();
        c.alter_topic_configs("l", op(ConfigOp::Subtract, "0:1"), true, false)
            .await
            .unwrap();
        let img = c.image();
        assert_eq!(
            img.topic("l").unwrap().configs["leader.replication.throttled.replicas"],
            "1:1"
        );
        assert!(c
            .alter_topic_configs("l", op(ConfigOp::Append, "1"), true, false)
            .await
            .is_ok());
        let not_list = vec![(
            "retention.ms".to_string(),
            ConfigOp::Append,
            Some("1".to_string()),
        )];
        assert!(c
            .alter_topic_configs("l", not_list, true, false)
            .await
            .is_err());
    }
}
