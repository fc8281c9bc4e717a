//! The transaction coordinator of this broker: the shared [`CoordinatorRuntime`] over `__transaction_state`
//! plus the [`MarkerWriter`] that completes transactions.
//!
//! Ownership and locking: each shard is behind its runtime slot's lock (see `coordinator/runtime.rs`). One
//! operation holds it for its whole sequence: the pure operation, the append and replay of its records and,
//! if a transaction reached PrepareCommit/PrepareAbort, the markers and the append and replay of
//! CompleteCommit/CompleteAbort. Markers are appended to other partitions under this lock (each partition's own
//! lock taken briefly, as any producer does); nothing on the produce/fetch path ever takes a coordinator lock,
//! so no lock order can invert.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::{EndAnswer, InitAnswer, MarkerWriter, TxnLimits, TxnRecord, TxnShard, TXN_STATE_TOPIC};
use crate::coordinator::runtime::{CoordinatorError, CoordinatorRuntime, Shard, ShardWriter};
use crate::partition::manager::ReplicaManager;

/// How often the transaction timers (timeouts, expiration, marker retries) run, in ms: Kafka checks timeouts
/// every 10 s (`transaction.abort.timed.out.transaction.cleanup.interval.ms`); once a second keeps a failed
/// marker write from being retried (and logged) 20 times a second.
pub const TXN_TICK_MS: i64 = 1000;

impl Shard for TxnShard {
    type Record = TxnRecord;
    const TOPIC: &'static str = TXN_STATE_TOPIC;
    fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<TxnRecord>, String> {
        TxnRecord::decode(key, value).map_err(|e| e.to_string())
    }
    fn encode(record: &TxnRecord) -> (Bytes, Option<Bytes>) {
        record.encode()
    }
    fn replay(&mut self, record: &TxnRecord, _now: i64) {
        TxnShard::replay(self, record);
    }
    fn tick(&mut self, now: i64) -> Vec<TxnRecord> {
        TxnShard::tick(self, now)
    }
    fn size(&self) -> usize {
        self.len()
    }
}

/// The transaction coordinator.
pub struct TxnCoordinator {
    runtime: Arc<CoordinatorRuntime<TxnShard>>,
    markers: Arc<dyn MarkerWriter>,
    last_tick: AtomicI64,
}

impl TxnCoordinator {
    /// A coordinator with no shard loaded; `partitions` is `transaction.state.log.num.partitions`.
    pub fn new(
        replicas: Arc<ReplicaManager>,
        partitions: i32,
        limits: TxnLimits,
        markers: Arc<dyn MarkerWriter>,
    ) -> TxnCoordinator {
        TxnCoordinator {
            runtime: Arc::new(CoordinatorRuntime::with_shards(
                replicas,
                partitions,
                move || TxnShard::new(limits),
            )),
            markers,
            last_tick: AtomicI64::new(i64::MIN),
        }
    }

    /// The runtime: load/unload, placement, reads.
    pub fn runtime(&self) -> &Arc<CoordinatorRuntime<TxnShard>> {
        &self.runtime
    }

    /// Writes the markers of every transaction in a prepare state, then completes it. Failures leave the
    /// transaction as it is, for the next tick.
    fn drive_markers(&self, w: &mut ShardWriter<'_, TxnShard>) {
        let epoch = w.coordinator_epoch();
        for job in w.shard().pending_markers() {
            if let Err(e) = self.markers.write_markers(&job, epoch) {
                tracing::warn!(
                    transactional_id = job.transactional_id.as_str(),
                    producer_id = job.producer_id,
                    "transaction markers not written, will retry: {e}"
                );
                continue;
            }
            let records = w.shard().complete(&job, w.now());
            if let Err(e) = w.write(records) {
                tracing::warn!(
                    transactional_id = job.transactional_id.as_str(),
                    "transaction completion not written, will retry: {e}"
                );
            }
        }
    }

    /// InitProducerId with a transactional id. [`InitAnswer::NeedProducerId`]: call again with a fresh id.
    pub fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        new_pid: Option<i64>,
    ) -> Result<InitAnswer, CoordinatorError> {
        self.runtime.run_with(id, |w| {
            let (answer, records) =
                w.shard()
                    .init_producer_id(id, timeout_ms, expected, new_pid, w.now());
            let answer = match w.write(records) {
                Ok(()) => answer,
                Err(e) => InitAnswer::Err(e.code()),
            };
            self.drive_markers(w);
            answer
        })
    }

    /// Whether InitProducerId for `id` needs a fresh producer id (ask before taking one from the controller).
    pub fn needs_producer_id(&self, id: &str) -> Result<bool, CoordinatorError> {
        self.runtime.read(id, |s| s.needs_producer_id(id))
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: `Err` is the Kafka error of every partition.
    pub fn add_partitions(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), i16> {
        self.runtime
            .run_with(id, |w| {
                let records = w
                    .shard()
                    .add_partitions(id, pid, epoch, partitions, w.now())?;
                w.write(records).map_err(CoordinatorError::code)
            })
            .map_err(CoordinatorError::code)?
    }

    /// AddPartitionsToTxn v4+ `verify_only`: the error per partition, or `Err` for all.
    pub fn verify_partitions(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        self.runtime
            .read(id, |s| s.verify_partitions(id, pid, epoch, partitions))
            .map_err(CoordinatorError::code)?
    }

    /// KIP-890: runs `write` (a transactional produce's append, or a transactional offset commit) only if
    /// `partition` is part of the producer's ongoing transaction: checked (transactions V1, Kafka's
    /// `verify_only`) or added first (`add`: V2, Produce v12+ / TxnOffsetCommit v5). `write` runs under the
    /// shard's lock, so no EndTxn or timeout can complete the transaction (write its markers) between the check
    /// and the write: Kafka's verification guard. `Err` is the coordinator's error for the partition.
    pub fn with_partition_in_txn<R>(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        partition: (String, i32),
        add: bool,
        write: impl FnOnce() -> R,
    ) -> Result<R, i16> {
        let parts = [partition];
        self.runtime
            .run_with(id, |w| {
                if add {
                    let records = w.shard().add_partitions(id, pid, epoch, &parts, w.now())?;
                    w.write(records).map_err(CoordinatorError::code)?;
                } else {
                    let codes = w.shard().verify_partitions(id, pid, epoch, &parts)?;
                    if let Some(&code) = codes.iter().find(|&&c| c != 0) {
                        return Err(code);
                    }
                }
                Ok(write())
            })
            .map_err(CoordinatorError::code)?
    }

    /// EndTxn (transaction version 1): answered once PrepareCommit/PrepareAbort is durable; the markers and
    /// the completion follow under the same lock (a failure there is retried by the timer, not the client's).
    pub fn end_txn(&self, id: &str, pid: i64, epoch: i16, commit: bool) -> Result<(), i16> {
        self.runtime
            .run_with(id, |w| {
                let records = w.shard().end_txn(id, pid, epoch, commit, w.now())?;
                w.write(records).map_err(CoordinatorError::code)?;
                self.drive_markers(w);
                Ok(())
            })
            .map_err(CoordinatorError::code)?
    }

    /// EndTxn v5+ (transaction version 2, KIP-890): every end bumps the epoch. [`EndAnswer::NeedProducerId`]:
    /// the epoch is used up, call again with a fresh producer id.
    pub fn end_txn_v2(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
        new_pid: Option<i64>,
    ) -> Result<EndAnswer, CoordinatorError> {
        self.runtime.run_with(id, |w| {
            let (answer, records) = w
                .shard()
                .end_txn_v2(id, pid, epoch, commit, new_pid, w.now());
            let answer = match w.write(records) {
                Ok(()) => answer,
                Err(e) => EndAnswer::Err(e.code()),
            };
            self.drive_markers(w);
            answer
        })
    }

    /// Timer: at most every [`TXN_TICK_MS`], aborts timed-out transactions, expires idle ids and retries
    /// markers, on every loaded shard.
    pub fn tick_all(&self, now: i64) {
        let last = self.last_tick.load(Ordering::Acquire);
        if now.saturating_sub(last) < TXN_TICK_MS {
            return;
        }
        self.last_tick.store(now, Ordering::Release);
        self.runtime.tick_all_with(now, |w| {
            let records = w.shard().tick(now);
            if let Err(e) = w.write(records) {
                tracing::warn!(
                    partition = w.index(),
                    "transaction timer records not written: {e}"
                );
            }
            self.drive_markers(w);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kafka_protocol::error::ResponseError as E;

    use super::*;
    use crate::broker::Broker;
    use crate::coordinator::txn::{MarkerJob, TxnState};

    /// Records the marker jobs it is given; fails while `fail` is set.
    #[derive(Default)]
    struct Markers {
        written: Mutex<Vec<(MarkerJob, i32)>>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl MarkerWriter for Markers {
        fn write_markers(&self, job: &MarkerJob, epoch: i32) -> Result<(), String> {
            if self.fail.load(Ordering::Acquire) {
                return Err("injected".into());
            }
            self.written.lock().unwrap().push((job.clone(), epoch));
            Ok(())
        }
    }

    async fn wait_loaded(c: &TxnCoordinator, id: &str) {
        for _ in 0..500 {
            if c.runtime().status(id).is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("shard not loaded");
    }

    /// Through the real runtime and a real `__transaction_state` partition: operations append and replay,
    /// markers run once PrepareCommit is durable, a failed marker write is retried by the timer, and a second
    /// coordinator loading the partition rebuilds the same state (replay == runtime).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runtime_writes_replays_drives_markers_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start_for_test(dir.path(), &[(TXN_STATE_TOPIC, 1)]).await;
        let markers = Arc::new(Markers::default());
        let c = TxnCoordinator::new(
            broker.replicas.clone(),
            1,
            TxnLimits::default(),
            markers.clone(),
        );
        assert_eq!(
            c.init_producer_id("tx", 1000, None, None),
            Err(CoordinatorError::NotCoordinator)
        );
        c.runtime().load(0);
        wait_loaded(&c, "tx").await;
        let (c, markers) = tokio::task::spawn_blocking(move || {
            assert_eq!(c.needs_producer_id("tx"), Ok(true));
            assert_eq!(
                c.init_producer_id("tx", 60_000, None, None),
                Ok(InitAnswer::NeedProducerId)
            );
            assert_eq!(
                c.init_producer_id("tx", 60_000, None, Some(42)),
                Ok(InitAnswer::Ok {
                    producer_id: 42,
                    epoch: 0
                })
            );
            let parts = vec![("a".to_string(), 0), ("b".to_string(), 2)];
            assert_eq!(c.add_partitions("tx", 42, 0, &parts), Ok(()));
            assert_eq!(c.verify_partitions("tx", 42, 0, &parts), Ok(vec![0, 0]));
            assert_eq!(c.end_txn("tx", 42, 0, true), Ok(()));
            {
                let w = markers.written.lock().unwrap();
                assert_eq!(w.len(), 1);
                assert!(w[0].0.commit);
                assert_eq!(w[0].0.partitions, parts);
            }
            let state = |c: &TxnCoordinator| {
                c.runtime()
                    .read("tx", |s| s.get("tx").cloned())
                    .unwrap()
                    .unwrap()
            };
            assert_eq!(state(&c).state, TxnState::CompleteCommit);
            // Markers that cannot be written: EndTxn is still answered (PrepareAbort is durable); the
            // transaction waits in PrepareAbort and the timer completes it once markers can be written.
            c.add_partitions("tx", 42, 0, &parts[..1]).unwrap();
            markers.fail.store(true, Ordering::Release);
            assert_eq!(c.end_txn("tx", 42, 0, false), Ok(()));
            assert_eq!(state(&c).state, TxnState::PrepareAbort);
            assert_eq!(
                c.add_partitions("tx", 42, 0, &parts),
                Err(E::ConcurrentTransactions.code())
            );
            let now = crate::partition::manager::now_ms();
            c.tick_all(now);
            assert_eq!(state(&c).state, TxnState::PrepareAbort);
            markers.fail.store(false, Ordering::Release);
            c.tick_all(now + 1); // within TXN_TICK_MS: skipped
            assert_eq!(state(&c).state, TxnState::PrepareAbort);
            c.tick_all(now + TXN_TICK_MS);
            assert_eq!(state(&c).state, TxnState::CompleteAbort);
            assert_eq!(markers.written.lock().unwrap().len(), 2);
            // A second transaction left running, then the coordinator moves: the new one loads the same state.
            c.add_partitions("tx", 42, 0, &parts).unwrap();
            c.init_producer_id("other", 5000, None, Some(43)).unwrap();
            (c, markers)
        })
        .await
        .unwrap();
        let live: Vec<_> = c
            .runtime()
            .read("tx", |s| {
                let mut v: Vec<_> = s.iter().map(|(k, m)| (k.clone(), m.clone())).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            })
            .unwrap();
        let c2 = TxnCoordinator::new(broker.replicas.clone(), 1, TxnLimits::default(), markers);
        c2.runtime().load(0);
        wait_loaded(&c2, "tx").await;
        let loaded: Vec<_> = c2
            .runtime()
            .read("tx", |s| {
                let mut v: Vec<_> = s.iter().map(|(k, m)| (k.clone(), m.clone())).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            })
            .unwrap();
        assert_eq!(loaded.len(), 2);
        for ((id, mut want), got) in live.into_iter().zip(loaded) {
            want.last_producer_epoch = crate::coordinator::txn::NO_PRODUCER_EPOCH;
            assert_eq!(got, (id, want));
        }
        assert_eq!(
            c2.runtime()
                .read("tx", |s| s.get("tx").map(|m| m.state))
                .unwrap(),
            Some(TxnState::Ongoing)
        );
    }

    /// The produce-side check (KIP-890): V1 refuses a partition never added and runs the write once it was;
    /// V2 adds the partition itself; a fenced epoch never runs the write; the write runs under the shard's
    /// lock (an EndTxn on another thread waits for it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_run_only_inside_the_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start_for_test(dir.path(), &[(TXN_STATE_TOPIC, 1)]).await;
        let markers = Arc::new(Markers::default());
        let c = Arc::new(TxnCoordinator::new(
            broker.replicas.clone(),
            1,
            TxnLimits::default(),
            markers.clone(),
        ));
        c.runtime().load(0);
        wait_loaded(&c, "tx").await;
        tokio::task::spawn_blocking(move || {
            c.init_producer_id("tx", 60_000, None, Some(7)).unwrap();
            let a = || ("a".to_string(), 0);
            let ran = std::sync::atomic::AtomicUsize::new(0);
            let write = || ran.fetch_add(1, Ordering::AcqRel);
            // V1: not added, refused without running the write.
            assert_eq!(
                c.with_partition_in_txn("tx", 7, 0, a(), false, write),
                Err(E::InvalidTxnState.code())
            );
            assert_eq!(ran.load(Ordering::Acquire), 0);
            c.add_partitions("tx", 7, 0, &[a()]).unwrap();
            assert_eq!(
                c.with_partition_in_txn("tx", 7, 0, a(), false, write),
                Ok(0)
            );
            // An old epoch is fenced; an unknown id is refused.
            assert_eq!(
                c.with_partition_in_txn("tx", 7, -1, a(), false, write),
                Err(E::ProducerFenced.code())
            );
            assert!(c
                .with_partition_in_txn("nope", 7, 0, a(), true, write)
                .is_err());
            assert_eq!(ran.load(Ordering::Acquire), 1);
            c.end_txn("tx", 7, 0, true).unwrap();
            // V2: the write adds the partition; EndTxn then writes its marker.
            let b = ("b".to_string(), 3);
            assert_eq!(
                c.with_partition_in_txn("tx", 7, 0, b.clone(), true, write),
                Ok(1)
            );
            let state = c
                .runtime()
                .read("tx", |s| s.get("tx").cloned())
                .unwrap()
                .unwrap();
            assert_eq!(state.state, TxnState::Ongoing);
            assert!(state.partitions.contains(&b));
            // The write holds the shard: an EndTxn started meanwhile completes only after it.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::scope(|scope| {
                c.with_partition_in_txn("tx", 7, 0, b.clone(), true, || {
                    let c = &c;
                    let ended = tx.clone();
                    scope.spawn(move || {
                        c.end_txn("tx", 7, 0, false).unwrap();
                        ended.send("ended").unwrap();
                    });
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    tx.send("written").unwrap();
                })
                .unwrap();
            });
            assert_eq!(rx.recv().unwrap(), "written");
            assert_eq!(rx.recv().unwrap(), "ended");
            let w = markers.written.lock().unwrap();
            assert_eq!(w.last().unwrap().0.partitions, vec![b]);
        })
        .await
        .unwrap();
    }
}
