//! The replica manager: which partitions this broker hosts, kept in step with the metadata image.
//!
//! Ownership: a `RwLock<HashMap>` from topic name to that topic's partitions, taken for reading on every
//! produce/fetch lookup (a few hundred nanoseconds, never held across I/O) and for writing only when the
//! metadata image changes (topics created, grown or deleted). Each partition's own state is behind the
//! partition's lock, not this one.
//!
//! On disk every partition lives in `<data_dir>/<topic>-<partition>/`, with a `partition.metadata` file naming the
//! topic ID like Kafka's, so a directory left by a deleted topic of the same name is recognised and removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use super::Partition;
use crate::config::BrokerConfig;
use crate::log::Log;
use crate::metadata::{topic_config, MetadataImage, TopicInfo};

/// Hosts this broker's partitions.
pub struct ReplicaManager {
    config: Arc<BrokerConfig>,
    data_dir: PathBuf,
    topics: RwLock<HashMap<String, HashMap<i32, Arc<Partition>>>>,
}

/// Current time in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl ReplicaManager {
    /// An empty manager; partitions appear through [`ReplicaManager::apply`].
    pub fn new(config: Arc<BrokerConfig>, data_dir: PathBuf) -> ReplicaManager {
        ReplicaManager {
            config,
            data_dir,
            topics: RwLock::new(HashMap::new()),
        }
    }

    /// One hosted partition.
    pub fn get(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.get(topic).and_then(|t| t.get(&index)).cloned()
    }

    /// Every hosted partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.values().flat_map(|t| t.values().cloned()).collect()
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{index}"))
    }

    /// Brings hosted partitions in line with `image`: opens logs for new partitions led here, applies config
    /// changes, and closes and deletes the logs of deleted topics.
    pub fn apply(&self, image: &MetadataImage) {
        let node = self.config.node_id;
        // Deleted (or deleted and re-created) topics leave the map first, under the lock...
        let removed: Vec<(String, i32, Arc<Partition>)> = {
            let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<String> = topics
                .iter()
                .filter(|(name, parts)| {
                    let id = parts.values().next().map(|p| p.topic_id);
                    image.topic(name).map(|t| Some(t.id) != id).unwrap_or(true)
                })
                .map(|(n, _)| n.clone())
                .collect();
            gone.into_iter()
                .filter_map(|name| topics.remove(&name).map(|parts| (name, parts)))
                .flat_map(|(name, parts)| parts.into_iter().map(move |(i, p)| (name.clone(), i, p)))
                .collect()
        };
        // ...then, without holding it (fencing waits for the partition's own lock, which a flush may hold),
        // each is fenced and its directory moved aside before any re-created topic of the same name opens.
        for (name, index, p) in removed {
            self.remove_partition(&name, index, &p);
        }
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        for topic in image.topics.values() {
            let log_config = topic_config::log_config(&self.config, &topic.configs);
            let min_insync =
                topic_config::effective(&self.config, &topic.configs, "min.insync.replicas")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
            let entry = topics.entry(topic.name.clone()).or_default();
            for p in &topic.partitions {
                if p.leader != node && !p.replicas.contains(&node) {
                    continue;
                }
                if let Some(existing) = entry.get(&p.index) {
                    existing.update_config(log_config.clone(), min_insync, p.leader_epoch);
                    continue;
                }
                match self.open_partition(topic, p.index, log_config.clone()) {
                    Ok(log) => {
                        let part = Partition::new(
                            topic.name.clone(),
                            p.index,
                            topic.id,
                            log,
                            p.leader_epoch,
                            min_insync,
                        );
                        entry.insert(p.index, Arc::new(part));
                    }
                    Err(e) => {
                        tracing::error!(topic = %topic.name, partition = p.index, error = %e, "cannot open partition log")
                    }
                }
            }
            if entry.is_empty() {
                topics.remove(&topic.name);
            }
        }
    }

    /// Fences a deleted partition and removes its directory: renamed now (like Kafka's `-delete`), so the
    /// name is free at once; the files (maybe gigabytes) are removed on a thread, off every lock.
    fn remove_partition(&self, name: &str, index: i32, p: &Partition) {
        p.mark_deleted();
        let dir = self.partition_dir(name, index);
        let doomed = self
            .data_dir
            .join(format!("{name}-{index}.{}-delete", p.topic_id.simple()));
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => {
                let spawned = std::thread::Builder::new().name("vltava-delete".into()).spawn(move || {
                    match std::fs::remove_dir_all(&doomed) {
                        Ok(()) => tracing::info!(dir = %doomed.display(), "deleted partition log"),
                        Err(e) => tracing::warn!(dir = %doomed.display(), error = %e, "could not remove deleted partition"),
                    }
                });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot start deletion thread; the -delete directory is removed at next start");
                }
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not move deleted partition aside")
            }
        }
    }

    fn open_partition(
        &self,
        topic: &TopicInfo,
        index: i32,
        config: crate::log::LogConfig,
    ) -> std::io::Result<Log> {
        let dir = self.partition_dir(&topic.name, index);
        let meta = dir.join("partition.metadata");
        match read_topic_id(&meta) {
            Some(id) if id != topic.id => {
                tracing::warn!(dir = %dir.display(), "removing log of an earlier topic with the same name");
                std::fs::remove_dir_all(&dir)?;
            }
            _ => {}
        }
        std::fs::create_dir_all(&dir)?;
        if !meta.exists() {
            let tmp = dir.join("partition.metadata.tmp");
            std::fs::write(&tmp, format!("version: 0\ntopic_id: {}\n", topic.id))?;
            std::fs::rename(&tmp, &meta)?;
        }
        Log::open(&dir, config, now_ms()).map_err(std::io::Error::other)
    }

    /// Moves aside partition directories whose topic no longer exists (left by a crash between a delete and
    /// the directory removal). Renamed to `<dir>.<topic id>-stray` rather than deleted, like Kafka, so a damaged
    /// metadata log can never make the broker destroy data.
    pub fn remove_stray_dirs(&self, image: &MetadataImage) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with("-delete") {
                // Renamed by an acknowledged delete that crashed before the removal finished.
                if let Err(err) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(dir = %path.display(), error = %err, "could not remove deleted partition");
                }
                continue;
            }
            if name.ends_with("-stray") {
                continue;
            }
            let Some(id) = read_topic_id(&path.join("partition.metadata")) else {
                continue;
            };
            if image.topic_by_id(&id).is_none() {
                let aside = self.data_dir.join(format!("{name}.{}-stray", id.simple()));
                tracing::warn!(dir = %path.display(), to = %aside.display(), "moving aside log of an unknown topic");
                if let Err(err) = std::fs::rename(&path, &aside) {
                    tracing::warn!(dir = %path.display(), error = %err, "could not move aside");
                }
            }
        }
    }

    /// Runs retention on every partition; returns the number of segments deleted.
    pub fn apply_retention(&self) -> usize {
        let now = super::manager::now_ms();
        let mut deleted = 0;
        for p in self.all() {
            match p
                .with_log_mut(|log| log.apply_retention(now))
                .unwrap_or(Ok(0))
            {
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "retention failed")
                }
            }
        }
        deleted
    }

    /// Flushes logs whose `flush.ms` has elapsed.
    pub fn flush_by_time(&self) {
        let now = now_ms();
        for p in self.all() {
            if let Some(Err(e)) = p.with_log_mut(|log| log.maybe_flush_by_time(now)) {
                tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "flush failed");
            }
        }
    }

    /// Flushes and closes every log cleanly (writes the clean-shutdown marker).
    pub fn shutdown(&self) {
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        for (_, parts) in topics.drain() {
            for (_, p) in parts {
                let (topic, index) = (p.topic.clone(), p.index);
                match Arc::try_unwrap(p) {
                    Ok(part) => {
                        if let Err(e) = part.into_log().close() {
                            tracing::warn!(%topic, partition = index, error = %e, "unclean close");
                        }
                    }
                    Err(p) => {
                        // Still referenced by a request that outlived shutdown: flush at least.
                        if let Some(Err(e)) = p.with_log_mut(|l| l.flush()) {
                            tracing::warn!(%topic, partition = index, error = %e, "flush on shutdown failed");
                        }
                    }
                }
            }
        }
    }
}

fn read_topic_id(path: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id: "))
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
}
