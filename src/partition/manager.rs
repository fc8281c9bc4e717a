//! The replica manager: which partitions this broker hosts, kept in step with the metadata image.
//!
//! Ownership: a `RwLock<HashMap>` from topic name to that topic's partitions, taken for reading on every
//! produce/fetch lookup (a few hundred nanoseconds, never held across I/O) and for writing only to insert or
//! remove partitions that are already open or closed. Each partition's own state is behind the partition's lock,
//! not this one. Images are applied one at a time (an async mutex, [`ReplicaManager::apply`]) on a blocking
//! thread: opening and recovering logs, creating directories and fsyncs never run on an async worker, under the
//! controller's mutex or under the map lock, so creating many partitions never stalls produce and fetch on the
//! others.
//!
//! Offline partitions (this manager answers for them): a partition whose log failed (its `LogHealth` is offline)
//! or whose log could not be opened (kept in `failed`, retried by [`ReplicaManager::retry_failed`]) is reported by
//! [`ReplicaManager::offline_reason`], which Metadata turns into "no leader, this broker offline" like Kafka
//! does for a replica whose log directory is offline.
//!
//! On disk every partition lives in `<data_dir>/<topic>-<partition>/`, with a `partition.metadata` file naming the
//! topic ID like Kafka's, so a directory left by a deleted topic of the same name is recognised and removed. Both
//! are created durably (file and directory fsynced). A deleted partition's directory is renamed to
//! `<topic>-<partition>.<id>-delete` (the topic part shortened so the name fits 255 bytes, like Kafka) and removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use super::Partition;
use crate::config::BrokerConfig;
use crate::log::{write_file_durably, Log, LogConfig};
use crate::metadata::{topic_config, MetadataImage, TopicInfo};

/// Longest file name Linux file systems accept.
const MAX_FILE_NAME: usize = 255;

/// Hosts this broker's partitions.
pub struct ReplicaManager {
    config: Arc<BrokerConfig>,
    data_dir: PathBuf,
    topics: RwLock<HashMap<String, HashMap<i32, Arc<Partition>>>>,
    /// Partitions this broker should host whose log could not be opened, by (topic id, partition), with the
    /// reason. Written only by the apply in progress.
    failed: RwLock<HashMap<(Uuid, i32), FailedOpen>>,
    /// Serialises applies and remembers the last image applied (a newer one makes older ones moot). Held (owned)
    /// by the blocking apply itself, so the lock lasts exactly as long as the apply runs.
    applying: Arc<tokio::sync::Mutex<Option<Arc<MetadataImage>>>>,
    #[cfg(test)]
    test_hook: test_hook::Hook,
}

/// Current time in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A partition whose log could not be opened.
struct FailedOpen {
    topic: String,
    reason: String,
}

/// A partition to open: topic, index, settings.
struct ToOpen {
    topic: TopicInfo,
    index: i32,
    config: LogConfig,
    min_insync: i32,
    leader_epoch: i32,
}

impl ReplicaManager {
    /// An empty manager; partitions appear through [`ReplicaManager::apply`].
    pub fn new(config: Arc<BrokerConfig>, data_dir: PathBuf) -> ReplicaManager {
        ReplicaManager {
            config,
            data_dir,
            topics: RwLock::new(HashMap::new()),
            failed: RwLock::new(HashMap::new()),
            applying: Arc::new(tokio::sync::Mutex::new(None)),
            #[cfg(test)]
            test_hook: Default::default(),
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

    /// Why this broker cannot serve a partition it should host (its log failed or could not be opened), or
    /// `None` if it can (or does not host it).
    pub fn offline_reason(&self, topic: &TopicInfo, index: i32) -> Option<String> {
        if let Some(p) = self.get(&topic.name, index) {
            if p.topic_id == topic.id {
                return p.offline_reason();
            }
        }
        let failed = self.failed.read().unwrap_or_else(|p| p.into_inner());
        failed.get(&(topic.id, index)).map(|f| f.reason.clone())
    }

    /// True if some partition this broker should host could not be opened.
    pub fn has_failed_opens(&self) -> bool {
        !self
            .failed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Partitions of the topic whose log could not be opened, with the reasons, by index.
    pub fn failed_opens(&self, topic_id: Uuid) -> Vec<(i32, String)> {
        let failed = self.failed.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(i32, String)> = failed
            .iter()
            .filter(|((id, _), _)| *id == topic_id)
            .map(|((_, index), f)| (*index, f.reason.clone()))
            .collect();
        out.sort();
        out
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{index}"))
    }

    /// Brings hosted partitions in line with `image` (opens logs for new partitions hosted here, applies config
    /// changes, closes and deletes the logs of deleted topics) and returns once that is done. The work runs on
    /// a blocking thread; applies are serialised, and an image older than one already applied is skipped (the
    /// newer one already contains its changes).
    ///
    /// The apply does not depend on the caller's task: admin requests run in tasks that are aborted when their
    /// connection closes. Cut short at an await, an apply would either leave its blocking half running without
    /// the lock (the next apply then opens the same logs a second time, and one `Log` replaces the other) or
    /// never apply an image the controller already published. So the apply runs in a task of its own, holding
    /// the lock inside the blocking closure; dropping this future only stops waiting for it.
    pub async fn apply(self: &Arc<Self>, image: Arc<MetadataImage>) {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut last = this.applying.clone().lock_owned().await;
            if last.as_ref().is_some_and(|l| l.offset > image.offset) {
                return;
            }
            *last = Some(image.clone());
            let worker = this.clone();
            let applied = tokio::task::spawn_blocking(move || {
                let _applying = last;
                worker.apply_blocking(&image)
            })
            .await;
            if let Err(e) = applied {
                tracing::error!(error = %e, "applying metadata to the hosted partitions failed");
            }
        });
        if let Err(e) = task.await {
            tracing::error!(error = %e, "applying metadata to the hosted partitions failed");
        }
    }

    /// Tries again to open the logs that could not be opened (say, the broker was out of file descriptors).
    pub async fn retry_failed(self: &Arc<Self>) {
        let any = self.has_failed_opens();
        let image = self.applying.lock().await.clone();
        if let (true, Some(image)) = (any, image) {
            self.apply(image).await;
        }
    }

    fn apply_blocking(&self, image: &MetadataImage) {
        #[cfg(test)]
        let _running = self.test_hook.enter();
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
        // ...then, without holding it (fencing waits for the partition's own lock), each is fenced and its
        // directory moved aside before any re-created topic of the same name opens.
        for (name, index, p) in removed {
            self.remove_partition(&name, index, &p);
        }
        // A deleted topic's partitions that never opened may still have left a directory behind.
        let forgotten: Vec<((Uuid, i32), FailedOpen)> = {
            let mut failed = self.failed.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<(Uuid, i32)> = failed
                .keys()
                .filter(|(id, _)| image.topic_by_id(id).is_none())
                .copied()
                .collect();
            gone.into_iter()
                .filter_map(|k| failed.remove(&k).map(|f| (k, f)))
                .collect()
        };
        for ((id, index), f) in forgotten {
            let dir = self.partition_dir(&f.topic, index);
            if read_topic_id(&dir.join("partition.metadata")) == Some(id) {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => self.sync_data_dir(),
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "could not remove deleted partition")
                    }
                }
            }
        }
        // Which partitions exist and which need opening, under the read lock; the work happens after it.
        let mut updates = Vec::new();
        let mut to_open = Vec::new();
        {
            let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
            for topic in image.topics.values() {
                let log_config = topic_config::log_config(&self.config, &topic.configs);
                let min_insync =
                    topic_config::effective(&self.config, &topic.configs, "min.insync.replicas")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1);
                for p in &topic.partitions {
                    if p.leader != node && !p.replicas.contains(&node) {
                        continue;
                    }
                    match topics.get(&topic.name).and_then(|t| t.get(&p.index)) {
                        Some(existing) => updates.push((
                            existing.clone(),
                            log_config.clone(),
                            min_insync,
                            p.leader_epoch,
                        )),
                        None => to_open.push(ToOpen {
                            topic: topic.clone(),
                            index: p.index,
                            config: log_config.clone(),
                            min_insync,
                            leader_epoch: p.leader_epoch,
                        }),
                    }
                }
            }
        }
        #[cfg(test)]
        self.test_hook.pause();
        for (p, config, min_insync, epoch) in updates {
            p.update_config(config, min_insync, epoch);
        }
        for o in to_open {
            let key = (o.topic.id, o.index);
            match self.open_partition(&o.topic, o.index, o.config) {
                Ok(log) => {
                    let part = Arc::new(Partition::new(
                        o.topic.name.clone(),
                        o.index,
                        o.topic.id,
                        log,
                        o.leader_epoch,
                        o.min_insync,
                    ));
                    self.topics
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(o.topic.name.clone())
                        .or_default()
                        .insert(o.index, part);
                    if self
                        .failed
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key)
                        .is_some()
                    {
                        tracing::info!(topic = %o.topic.name, partition = o.index, "partition log opened on retry; partition online");
                    }
                }
                Err(e) => {
                    let reason = format!("cannot open the partition log: {e}");
                    let mut failed = self.failed.write().unwrap_or_else(|p| p.into_inner());
                    if failed.get(&key).map(|f| &f.reason) != Some(&reason) {
                        tracing::error!(topic = %o.topic.name, partition = o.index, error = %e,
                            "cannot open partition log; the partition is OFFLINE (retried every few seconds)");
                    }
                    failed.insert(
                        key,
                        FailedOpen {
                            topic: o.topic.name.clone(),
                            reason,
                        },
                    );
                }
            }
        }
    }

    /// Fences a deleted partition and removes its directory: renamed now (like Kafka's `-delete`), so the name is
    /// free at once; the files (maybe gigabytes) are removed on a thread, off every lock. If the rename fails the
    /// directory is removed in place, so a deleted topic's files never stay behind.
    fn remove_partition(&self, name: &str, index: i32, p: &Partition) {
        p.mark_deleted();
        let dir = self.partition_dir(name, index);
        let doomed =
            self.data_dir
                .join(aside_name(name, &index.to_string(), p.topic_id, "-delete"));
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => {
                self.sync_data_dir();
                let data_dir = self.data_dir.clone();
                let spawned = std::thread::Builder::new().name("vltava-delete".into()).spawn(move || {
                    match std::fs::remove_dir_all(&doomed).and_then(|()| sync_dir(&data_dir)) {
                        Ok(()) => tracing::info!(dir = %doomed.display(), "deleted partition log"),
                        Err(e) => tracing::warn!(dir = %doomed.display(), error = %e, "could not remove deleted partition; retried at next start"),
                    }
                });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot start deletion thread; the -delete directory is removed at next start");
                }
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not move deleted partition aside; removing it in place");
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => self.sync_data_dir(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::error!(dir = %dir.display(), error = %e, "could not remove deleted partition")
                    }
                }
            }
        }
    }

    fn sync_data_dir(&self) {
        if let Err(e) = sync_dir(&self.data_dir) {
            tracing::warn!(dir = %self.data_dir.display(), error = %e, "cannot fsync the data directory");
        }
    }

    /// Opens (creating if needed) a partition's log. The directory and `partition.metadata` are made durable
    /// before the log is used, so a power loss cannot leave a log without its topic ID or lose the directory.
    fn open_partition(
        &self,
        topic: &TopicInfo,
        index: i32,
        config: LogConfig,
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
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            sync_dir(&self.data_dir)?;
        }
        if !meta.exists() {
            write_file_durably(
                &dir,
                "partition.metadata",
                format!("version: 0\ntopic_id: {}\n", topic.id).as_bytes(),
            )?;
        }
        Log::open(&dir, config, now_ms()).map_err(std::io::Error::other)
    }

    /// Moves aside partition directories whose topic no longer exists (left by a crash between a delete and
    /// the directory removal). Renamed to `<dir>.<topic id>-stray` rather than deleted, like Kafka, so a damaged
    /// metadata log can never make the broker destroy data. Blocking: call it off the async workers.
    pub fn remove_stray_dirs(&self, image: &MetadataImage) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        let mut changed = false;
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with("-delete") {
                // Renamed by an acknowledged delete that crashed before the removal finished.
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => changed = true,
                    Err(err) => {
                        tracing::warn!(dir = %path.display(), error = %err, "could not remove deleted partition")
                    }
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
                let (topic, index) = name.rsplit_once('-').unwrap_or((name.as_str(), ""));
                let aside = self.data_dir.join(aside_name(topic, index, id, "-stray"));
                tracing::warn!(dir = %path.display(), to = %aside.display(), "moving aside log of an unknown topic");
                match std::fs::rename(&path, &aside) {
                    Ok(()) => changed = true,
                    Err(err) => {
                        tracing::warn!(dir = %path.display(), error = %err, "could not move aside")
                    }
                }
            }
        }
        if changed {
            self.sync_data_dir();
        }
    }

    /// One cleaner round over the hosted partitions of compacted topics, `log_cleaner_threads` at a time, each
    /// with its share of `log_cleaner_dedupe_buffer_size`. Blocking; stops starting passes once `stop` says so.
    /// Returns the number of partitions cleaned.
    pub fn clean_compacted(
        &self,
        image: &MetadataImage,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> usize {
        let mut work = Vec::new();
        for p in self.all().into_iter().filter(|p| !p.is_offline()) {
            let Some(topic) = image.topic(&p.topic).filter(|t| t.id == p.topic_id) else {
                continue;
            };
            if let Some(cc) = topic_config::compaction_config(&self.config, &topic.configs) {
                work.push((p, cc));
            }
        }
        let threads = usize::try_from(self.config.log_cleaner_threads.max(1)).unwrap_or(1);
        let buffer = usize::try_from(self.config.log_cleaner_dedupe_buffer_size)
            .unwrap_or(usize::MAX)
            / threads;
        let queue = std::sync::Mutex::new(work);
        let cleaned = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    if stop() {
                        break;
                    }
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some((p, cc)) = next else { break };
                    match p.clean(&cc, buffer, now_ms()) {
                        // Only a pass that swapped something in counts; one the log changed under retries later.
                        Ok(Some(stats)) if stats.segments_written > 0 => {
                            cleaned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "cleaning failed")
                        }
                    }
                });
            }
        });
        cleaned.into_inner()
    }

    /// Runs retention on every partition; returns the number of segments deleted.
    pub fn apply_retention(&self) -> usize {
        let now = super::manager::now_ms();
        let mut deleted = 0;
        // An offline partition already said why, loudly, once.
        for p in self.all().into_iter().filter(|p| !p.is_offline()) {
            match p
                .with_log_mut(|log| log.apply_retention(now))
                .unwrap_or(Ok(0))
                .and_then(|n| p.sync_checkpoints().map(|()| n))
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
        for p in self.all().into_iter().filter(|p| !p.is_offline()) {
            if let Err(e) = p.flush_if_due(now) {
                tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "flush failed");
            }
        }
    }

    /// Flushes and closes every log cleanly (writes the clean-shutdown marker; an offline log is left for
    /// recovery at the next start).
    pub fn shutdown(&self) {
        // Closing flushes: the map lock is released first.
        let drained: Vec<_> = self
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (_, parts) in drained {
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

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// `<topic>-<partition>.<id><suffix>` with the topic part shortened so the whole name fits in 255 bytes (Kafka's
/// `LocalLog.logDirNameWithSuffixCappedLength`): a 249-character topic plus a partition, a 32-digit ID and
/// `-delete` would not fit.
fn aside_name(topic: &str, partition: &str, id: Uuid, suffix: &str) -> String {
    let tail = format!("-{partition}.{}{suffix}", id.simple());
    let mut keep = topic.len().min(MAX_FILE_NAME.saturating_sub(tail.len()));
    while !topic.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{tail}", &topic[..keep])
}

/// Test hooks: pause an apply between planning and opening logs, and count applies (running, most at once,
/// finished).
#[cfg(test)]
mod test_hook {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier, Mutex};

    #[derive(Default)]
    pub(super) struct Hook {
        pause: Mutex<Option<Arc<Barrier>>>,
        running: AtomicUsize,
        pub(super) most_at_once: AtomicUsize,
        pub(super) finished: AtomicUsize,
    }

    pub(super) struct Running<'a>(&'a Hook);

    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.running.fetch_sub(1, Ordering::SeqCst);
            self.0.finished.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Hook {
        pub(super) fn enter(&self) -> Running<'_> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now, Ordering::SeqCst);
            Running(self)
        }

        /// The next apply waits twice on the returned barrier (of 2): once when it reaches the pause, once to
        /// go on.
        pub(super) fn pause_next(&self) -> Arc<Barrier> {
            let b = Arc::new(Barrier::new(2));
            *self.pause.lock().unwrap() = Some(b.clone());
            b
        }

        pub(super) fn pause(&self) {
            let b = self.pause.lock().unwrap().take();
            if let Some(b) = b {
                b.wait();
                b.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    fn image_with(name: &str, id: Uuid, partitions: i32) -> Arc<MetadataImage> {
        use crate::metadata::PartitionInfo;
        let mut image = MetadataImage {
            offset: 1,
            ..Default::default()
        };
        let parts = (0..partitions)
            .map(|index| PartitionInfo {
                index,
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
                replicas: vec![1],
                isr: vec![1],
            })
            .collect();
        image.topics.insert(
            name.to_string(),
            TopicInfo {
                name: name.to_string(),
                id,
                partitions: parts,
                configs: Default::default(),
            },
        );
        image.topic_ids.insert(id, name.to_string());
        Arc::new(image)
    }

    /// A log that cannot be opened leaves its partition offline with the reason (not silently missing), the
    /// others open, and a retry once the cause is gone brings it online.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unopenable_log_is_offline_until_a_retry_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(BrokerConfig::default());
        let rm = Arc::new(ReplicaManager::new(config, dir.path().to_path_buf()));
        // A plain file where partition 1's directory should be.
        let blocker = dir.path().join("t-1");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let id = Uuid::new_v4();
        let image = image_with("t", id, 3);
        let topic = image.topic("t").unwrap().clone();
        rm.apply(image.clone()).await;
        assert!(rm.get("t", 0).is_some() && rm.get("t", 2).is_some());
        assert!(rm.get("t", 1).is_none());
        assert!(rm.offline_reason(&topic, 1).is_some());
        assert_eq!(rm.offline_reason(&topic, 0), None);
        assert_eq!(rm.failed_opens(id).len(), 1);
        // A log whose directory and partition.metadata were made but which failed to open (here: its first
        // segment's name is taken by a directory) is removed with its topic.
        let half = dir.path().join("u-0");
        std::fs::create_dir_all(half.join("00000000000000000000.log")).unwrap();
        let uid = Uuid::new_v4();
        let with_u = image_with("u", uid, 1);
        let mut both = (*image).clone();
        both.offset = 2;
        both.topics
            .insert("u".into(), with_u.topic("u").unwrap().clone());
        both.topic_ids.insert(uid, "u".into());
        rm.apply(Arc::new(both)).await;
        assert_eq!(rm.failed_opens(uid).len(), 1);
        assert!(half.join("partition.metadata").exists());
        let mut without_u = (*image).clone();
        without_u.offset = 3;
        rm.apply(Arc::new(without_u)).await;
        assert!(
            !half.exists(),
            "a deleted topic's half-opened partition directory remains"
        );
        std::fs::remove_file(&blocker).unwrap();
        rm.retry_failed().await;
        assert!(rm.get("t", 1).is_some());
        assert_eq!(rm.offline_reason(&topic, 1), None);
        assert!(rm.failed_opens(id).is_empty());
        // A log that fails later is reported the same way.
        let p0 = rm.get("t", 0).unwrap();
        p0.with_log(|l| l.health())
            .set_offline(dir.path(), "injected failure");
        assert_eq!(
            rm.offline_reason(&topic, 0).as_deref(),
            Some("injected failure")
        );
        drop(p0);
        // Deleting the topic removes the directories and forgets the topic.
        rm.apply(Arc::new(MetadataImage {
            offset: 4,
            ..Default::default()
        }))
        .await;
        assert!(rm.all().is_empty());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_dir(dir.path()).unwrap().next().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "deleted partition directories remain"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    async fn wait_on(b: &Arc<std::sync::Barrier>) {
        let b = b.clone();
        tokio::task::spawn_blocking(move || {
            b.wait();
        })
        .await
        .unwrap();
    }

    async fn eventually(what: &str, f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Admin commands run in tasks aborted when their connection closes. Aborting one while its image is being
    /// applied must not let the next apply run alongside it (two `Log`s for one partition), and aborting one while
    /// it waits for the apply lock must not leave its published image unapplied.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aborted_commands_leave_one_apply_at_a_time_and_every_image_applied() {
        use crate::controller::{Controller, NewTopic};
        use crate::metadata::BrokerInfo;
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(BrokerConfig::default());
        let rm = Arc::new(ReplicaManager::new(
            config.clone(),
            dir.path().to_path_buf(),
        ));
        let controller = Arc::new(Controller::open(config, dir.path(), "cid".into()).unwrap());
        {
            let rm = rm.clone();
            controller.set_listener(move |image| {
                let rm = rm.clone();
                Box::pin(async move { rm.apply(image).await })
            });
        }
        controller
            .register_broker(BrokerInfo {
                id: 1,
                host: "h".into(),
                port: 1,
                rack: None,
            })
            .await
            .unwrap();
        let new_topic = |name: &str, n: i32| NewTopic {
            name: name.into(),
            num_partitions: n,
            replication_factor: -1,
            assignments: vec![],
            configs: Default::default(),
        };
        let hook = &rm.test_hook;
        let finished = hook.finished.load(Ordering::SeqCst);

        // 1. A command aborted while its apply runs.
        let gate = hook.pause_next();
        let c = controller.clone();
        let (a, b) = (new_topic("a", 4), new_topic("b", 1));
        let first = tokio::spawn(async move { c.create_topic(a, false).await });
        wait_on(&gate).await; // the apply planned to open a-0..a-3 and paused
        first.abort();
        let _ = first.await;
        let c = controller.clone();
        let second = tokio::spawn(async move { c.create_topic(b, false).await });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let early = rm.get("a", 0);
        wait_on(&gate).await; // let the first apply go on
        second.await.unwrap().unwrap();
        eventually("both applies finish", || {
            hook.finished.load(Ordering::SeqCst) >= finished + 2
        })
        .await;
        assert_eq!(
            hook.most_at_once.load(Ordering::SeqCst),
            1,
            "two applies ran at once"
        );
        let late = rm.get("a", 0).expect("a-0 hosted");
        if let Some(early) = early {
            assert!(Arc::ptr_eq(&early, &late), "a-0 was opened twice");
        }
        assert!(rm.get("b", 0).is_some());

        // 2. A command aborted while it waits for the apply lock: its image is published, so it is applied.
        let gate = hook.pause_next();
        let c = controller.clone();
        let busy = tokio::spawn(async move { c.create_partitions("b", 2, None, false).await });
        wait_on(&gate).await;
        let c = controller.clone();
        let cn = new_topic("c", 1);
        let waiting = tokio::spawn(async move { c.create_topic(cn, false).await });
        eventually("c is published", || controller.image().topic("c").is_some()).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waiting.abort();
        let _ = waiting.await;
        wait_on(&gate).await;
        busy.await.unwrap().unwrap();
        eventually("the published image is applied", || {
            rm.get("c", 0).is_some()
        })
        .await;
        assert_eq!(hook.most_at_once.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn aside_names_fit_a_file_name() {
        let id = Uuid::new_v4();
        let long = "t".repeat(249);
        for suffix in ["-delete", "-stray"] {
            let name = aside_name(&long, "2147483647", id, suffix);
            assert_eq!(name.len(), MAX_FILE_NAME, "{name}");
            assert!(name.ends_with(&format!("-2147483647.{}{suffix}", id.simple())));
        }
        assert_eq!(
            aside_name("short", "3", id, "-delete"),
            format!("short-3.{}-delete", id.simple())
        );
    }
}
