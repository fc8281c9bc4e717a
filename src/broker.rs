//! The broker: ties the configuration, the controller, the replica manager and the shutdown token together.
//!
//! `Broker` is shared as `Arc<Broker>` by every connection task. It owns no mutable state itself: metadata
//! belongs to the [`Controller`], partitions to the [`ReplicaManager`], groups to the [`GroupCoordinator`] and
//! transactions to the [`TxnCoordinator`]. `__transaction_state` is created at the first FindCoordinator or
//! InitProducerId for a transactional id, as Kafka does, by one task of its own ([`Broker::start_transactions`]),
//! which then loads its partitions.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::controller::{ConfigOp, Controller, ControllerError, NewTopic};
use crate::coordinator::txn::{LocalMarkerWriter, TxnCoordinator, TxnLimits, TXN_STATE_TOPIC};
use crate::coordinator::{GroupCoordinator, OFFSETS_TOPIC};
use crate::metadata::{BrokerInfo, MetadataImage};
use crate::partition::manager::ReplicaManager;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or `meta.properties` could not be used.
    #[error("data dir {dir}: {reason}")]
    DataDir {
        /// Directory.
        dir: String,
        /// What went wrong.
        reason: String,
    },
    /// The metadata log could not be opened or written.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// A running broker's shared state.
pub struct Broker {
    /// Immutable configuration.
    pub config: Arc<BrokerConfig>,
    /// Cluster metadata owner.
    pub controller: Arc<Controller>,
    /// Hosted partitions.
    pub replicas: Arc<ReplicaManager>,
    /// The group coordinator (shards over the `__consumer_offsets` partitions led here).
    pub groups: Arc<GroupCoordinator>,
    /// The transaction coordinator (shards over the `__transaction_state` partitions led here).
    pub txn: Arc<TxnCoordinator>,
    /// Producer ids for InitProducerId, from controller-allocated blocks.
    pub producer_ids: crate::coordinator::producer_ids::ProducerIdManager,
    /// Cancelled once to stop everything.
    pub shutdown: CancellationToken,
    /// Set once the task creating and loading `__transaction_state` has been started.
    txn_started: AtomicBool,
}

impl Broker {
    /// Opens the data directory, replays metadata, opens (and recovers) every hosted log and registers this broker.
    pub async fn start(config: Arc<BrokerConfig>) -> Result<Arc<Broker>, StartError> {
        let dir = config.data_dir.clone();
        let bad = |reason: String| StartError::DataDir {
            dir: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(&dir).map_err(|e| bad(e.to_string()))?;
        let cluster_id = load_or_create_meta(&dir, config.node_id).map_err(bad)?;
        let controller = Arc::new(Controller::open(config.clone(), &dir, cluster_id)?);
        let replicas = Arc::new(ReplicaManager::new(config.clone(), dir.clone()));
        {
            let replicas = replicas.clone();
            controller.set_listener(move |image| {
                let replicas = replicas.clone();
                Box::pin(async move { replicas.apply(image).await })
            });
        }
        // Directory scans, renames and log recovery are blocking: off the async workers.
        {
            let (replicas, image) = (replicas.clone(), controller.image());
            let _ = tokio::task::spawn_blocking(move || replicas.remove_stray_dirs(&image)).await;
        }
        controller.republish().await;
        let (host, port) = config.advertised_addr()?;
        controller
            .register_broker(BrokerInfo {
                id: config.node_id,
                host,
                port,
                rack: None,
            })
            .await?;
        let groups = Arc::new(GroupCoordinator::new(config.clone(), replicas.clone()));
        let limits = TxnLimits {
            max_timeout_ms: config.transaction_max_timeout_ms,
            id_expiration_ms: config.transactional_id_expiration_ms,
            ..TxnLimits::default()
        };
        let txn = Arc::new(TxnCoordinator::new(
            replicas.clone(),
            config.transaction_state_log_num_partitions,
            limits,
            // Markers for __consumer_offsets go through the group coordinator (pending transactional offsets).
            Arc::new(LocalMarkerWriter::new(replicas.clone(), groups.clone())),
        ));
        let producer_ids = crate::coordinator::producer_ids::ProducerIdManager::new(config.node_id);
        Ok(Arc::new(Broker {
            config,
            controller,
            replicas,
            groups,
            txn,
            producer_ids,
            shutdown: CancellationToken::new(),
            txn_started: AtomicBool::new(false),
        }))
    }

    /// Starts, once, the task that creates `__transaction_state` if needed and loads the partitions of it led
    /// here; until they are loaded the transaction coordinator answers COORDINATOR_NOT_AVAILABLE /
    /// COORDINATOR_LOAD_IN_PROGRESS, which clients retry. Its own task: the request that triggers it may be
    /// dropped with its connection at any await (see ARCHITECTURE.md, "Work that outlives its request").
    pub fn start_transactions(self: &Arc<Self>) {
        if self.txn_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let b = self.clone();
        tokio::spawn(async move {
            if let Err(e) = create_txn_state_topic(&b.config, &b.controller).await {
                tracing::error!(
                    "cannot create {TXN_STATE_TOPIC}: {e}; transactions are unavailable"
                );
                // Let a later request try again.
                b.txn_started.store(false, Ordering::Release);
                return;
            }
            let Some(t) = b.image().topic(TXN_STATE_TOPIC).cloned() else {
                b.txn_started.store(false, Ordering::Release);
                return;
            };
            b.txn
                .runtime()
                .set_partition_count(i32::try_from(t.partitions.len()).unwrap_or(i32::MAX));
            // One broker leads every partition; with replication, leadership changes will load/unload.
            for p in b.replicas.all() {
                if p.topic == TXN_STATE_TOPIC {
                    b.txn.runtime().load(p.index);
                }
            }
        });
    }

    /// The current metadata snapshot.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    /// Starts the group coordinator (creates `__consumer_offsets` if needed, loads its partitions) and the
    /// retention, cleaner, flush and group timer loops; they stop with the shutdown token.
    pub fn spawn_background(self: &Arc<Self>) {
        if self.image().topic(TXN_STATE_TOPIC).is_some() {
            self.start_transactions();
        }
        let b = self.clone();
        tokio::spawn(async move {
            let every = u64::try_from(crate::coordinator::txn::TXN_TICK_MS).unwrap_or(1000);
            let mut tick = tokio::time::interval(Duration::from_millis(every));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = b.shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        // Timeouts, expiration and marker retries append (maybe fsync): blocking pool.
                        let txn = b.txn.clone();
                        let now = crate::partition::manager::now_ms();
                        let _ = tokio::task::spawn_blocking(move || txn.tick_all(now)).await;
                    }
                }
            }
        });
        let b = self.clone();
        tokio::spawn(async move {
            // Off the start-up path: the first start creates 50 partitions (a few hundred ms of fsyncs), and
            // until then FindCoordinator answers COORDINATOR_NOT_AVAILABLE, which clients retry.
            if let Err(e) = create_offsets_topic(&b.config, &b.controller).await {
                tracing::error!(
                    "cannot create {OFFSETS_TOPIC}: {e}; consumer groups are unavailable"
                );
                return;
            }
            if let Some(t) = b.image().topic(OFFSETS_TOPIC) {
                b.groups
                    .set_partition_count(i32::try_from(t.partitions.len()).unwrap_or(i32::MAX));
            }
            // Every hosted __consumer_offsets partition is led here (one broker): load them all. With
            // replication, leadership changes will call `load`/`unload` per partition.
            for p in b.replicas.all() {
                if p.topic == OFFSETS_TOPIC {
                    b.groups.load(p.index);
                }
            }
            let mut tick =
                tokio::time::interval(Duration::from_millis(crate::coordinator::runtime::TICK_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut expire = tokio::time::interval(Duration::from_millis(
                u64::try_from(b.config.offsets_retention_check_interval_ms.max(1))
                    .unwrap_or(u64::MAX),
            ));
            expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            expire.tick().await;
            loop {
                tokio::select! {
                    _ = b.shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        let groups = b.groups.clone();
                        let now = crate::partition::manager::now_ms();
                        let _ = tokio::task::spawn_blocking(move || groups.tick_all(now)).await;
                    }
                    _ = expire.tick() => {
                        let groups = b.groups.clone();
                        let now = crate::partition::manager::now_ms();
                        let retention_ms =
                            i64::from(b.config.offsets_retention_minutes).saturating_mul(60_000);
                        let _ = tokio::task::spawn_blocking(move || groups.expire_all(now, retention_ms))
                            .await;
                    }
                }
            }
        });
        let b = self.clone();
        tokio::spawn(async move {
            let every =
                Duration::from_millis(b.config.log_retention_check_interval_ms.max(1) as u64);
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = b.shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        let replicas = b.replicas.clone();
                        let n = tokio::task::spawn_blocking(move || replicas.apply_retention()).await.unwrap_or(0);
                        if n > 0 {
                            tracing::info!(segments = n, "retention deleted old segments");
                        }
                    }
                }
            }
        });
        if self.config.log_cleaner_enable {
            let b = self.clone();
            tokio::spawn(async move {
                let backoff = Duration::from_millis(b.config.log_cleaner_backoff_ms.max(1) as u64);
                loop {
                    let (replicas, image, stop) =
                        (b.replicas.clone(), b.image(), b.shutdown.clone());
                    let cleaned = tokio::task::spawn_blocking(move || {
                        replicas.clean_compacted(&image, &|| stop.is_cancelled())
                    })
                    .await
                    .unwrap_or(0);
                    // Like Kafka's cleaner threads: straight on while logs were due, else back off.
                    let pause = if cleaned > 0 { Duration::ZERO } else { backoff };
                    tokio::select! {
                        _ = b.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            });
        }
        let b = self.clone();
        tokio::spawn(async move {
            // Check often enough for the smallest sensible flush.ms; the log decides whether it is due.
            let mut tick = tokio::time::interval(Duration::from_millis(1000));
            loop {
                tokio::select! {
                    _ = b.shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        let replicas = b.replicas.clone();
                        let _ = tokio::task::spawn_blocking(move || replicas.flush_by_time()).await;
                    }
                }
            }
        });
        // Logs that could not be opened (say, out of file descriptors) are retried now and then, in a loop of their
        // own: a retry waits for any apply in progress, which must not hold up the flush loop.
        let b = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(OPEN_RETRY_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = b.shutdown.cancelled() => break,
                    _ = tick.tick() => b.replicas.retry_failed().await,
                }
            }
        });
    }
}

/// Creates `__consumer_offsets` on first start (Kafka creates it on the first FindCoordinator; creating it up
/// front keeps FindCoordinator free of controller round trips).
///
/// As in Kafka it is compacted (`cleanup.policy=compact`): the cleaner keeps the latest record per group and
/// per committed partition and drops tombstones after `delete.retention.ms`, so replaying it rebuilds the same
/// state. A topic created by an earlier build without the policy gets it set here.
async fn create_offsets_topic(
    config: &BrokerConfig,
    controller: &Controller,
) -> Result<(), ControllerError> {
    if let Some(existing) = controller.image().topic(OFFSETS_TOPIC) {
        if existing.configs.get("cleanup.policy").map(String::as_str) != Some("compact") {
            let ops = vec![
                (
                    "cleanup.policy".to_string(),
                    ConfigOp::Set,
                    Some("compact".to_string()),
                ),
                ("retention.ms".to_string(), ConfigOp::Delete, None),
            ];
            controller
                .alter_topic_configs(OFFSETS_TOPIC, ops, true, false)
                .await?;
        }
        return Ok(());
    }
    let mut configs = std::collections::BTreeMap::new();
    configs.insert(
        "segment.bytes".to_string(),
        config.offsets_topic_segment_bytes.to_string(),
    );
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    let topic = NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        num_partitions: config.offsets_topic_num_partitions,
        replication_factor: config.offsets_topic_replication_factor,
        assignments: Vec::new(),
        configs,
    };
    match controller.create_topic(topic, false).await {
        Ok(_) | Err(ControllerError::TopicAlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `__transaction_state` (Kafka: `cleanup.policy=compact`, `transaction.state.log.segment.bytes`),
/// unless it exists.
async fn create_txn_state_topic(
    config: &BrokerConfig,
    controller: &Controller,
) -> Result<(), ControllerError> {
    if controller.image().topic(TXN_STATE_TOPIC).is_some() {
        return Ok(());
    }
    let mut configs = std::collections::BTreeMap::new();
    configs.insert(
        "segment.bytes".to_string(),
        config.transaction_state_log_segment_bytes.to_string(),
    );
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    let topic = NewTopic {
        name: TXN_STATE_TOPIC.to_string(),
        num_partitions: config.transaction_state_log_num_partitions,
        replication_factor: config.transaction_state_log_replication_factor,
        assignments: Vec::new(),
        configs,
    };
    match controller.create_topic(topic, false).await {
        Ok(_) | Err(ControllerError::TopicAlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Time between attempts to open partition logs that failed to open.
const OPEN_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Reads `meta.properties` (Kafka's format) or writes a new one with a fresh cluster id.
fn load_or_create_meta(dir: &Path, node_id: i32) -> Result<String, String> {
    let path = dir.join("meta.properties");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let get = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_string())
            };
            let cluster_id = get("cluster.id=").ok_or("meta.properties has no cluster.id")?;
            if let Some(stored) = get("node.id=") {
                if stored != node_id.to_string() {
                    return Err(format!(
                        "meta.properties belongs to node.id={stored}, but this broker is node_id={node_id}"
                    ));
                }
            }
            Ok(cluster_id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cluster_id = new_cluster_id();
            // fsynced (file and directory): a power loss must not lose the cluster id the metadata log
            // and clients were given.
            crate::log::write_file_durably(
                dir,
                "meta.properties",
                format!("version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n").as_bytes(),
            )
            .map_err(|e| e.to_string())?;
            Ok(cluster_id)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = String::with_capacity(22);
    for b in bytes {
        bits = (bits << 8) | u32::from(b);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
impl Broker {
    /// A broker over `dir` with default settings and these topics created (name, partitions), for in-crate
    /// tests; internal topics (`__…`) are compacted as the broker creates them.
    pub async fn start_for_test(dir: &Path, topics: &[(&str, i32)]) -> Arc<Broker> {
        let config = BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..BrokerConfig::default()
        };
        let broker = Broker::start(Arc::new(config))
            .await
            .expect("broker starts");
        for (name, partitions) in topics {
            let mut configs = std::collections::BTreeMap::new();
            if name.starts_with("__") {
                configs.insert("cleanup.policy".to_string(), "compact".to_string());
            }
            let topic = NewTopic {
                name: (*name).to_string(),
                num_partitions: *partitions,
                replication_factor: 1,
                assignments: Vec::new(),
                configs,
            };
            broker
                .controller
                .create_topic(topic, false)
                .await
                .expect("topic created");
        }
        broker
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    #[test]
    fn cluster_id_shape_and_persistence() {
        assert_eq!(new_cluster_id().len(), 22);
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_meta(dir.path(), 1).unwrap();
        assert_eq!(load_or_create_meta(dir.path(), 1).unwrap(), a);
        assert!(load_or_create_meta(dir.path(), 2)
            .unwrap_err()
            .contains("node.id=1"));
    }
}
