//! The transaction state machine, driven with injected time and replay only (no sockets, no sleeps).
#![allow(clippy::cast_possible_truncation)] // test data is small

use kafka_protocol::error::ResponseError as E;

use super::*;

const T: i32 = 60_000;

/// A shard plus the log its records went to; every change goes through `replay`, as in the runtime.
struct H {
    shard: TxnShard,
    log: Vec<TxnRecord>,
}

impl H {
    fn new() -> H {
        H::with(TxnLimits::default())
    }

    fn with(limits: TxnLimits) -> H {
        H {
            shard: TxnShard::new(limits),
            log: Vec::new(),
        }
    }

    fn apply(&mut self, records: Vec<TxnRecord>) -> usize {
        let n = records.len();
        for r in records {
            self.shard.replay(&r);
            self.log.push(r);
        }
        n
    }

    fn init(
        &mut self,
        id: &str,
        expected: Option<(i64, i16)>,
        pid: Option<i64>,
        now: i64,
    ) -> InitAnswer {
        let (a, r) = self.shard.init_producer_id(id, T, expected, pid, now);
        self.apply(r);
        a
    }

    /// A new id: producer id `pid`, epoch 0.
    fn fresh(&mut self, id: &str, pid: i64, now: i64) {
        assert_eq!(self.init(id, None, None, now), InitAnswer::NeedProducerId);
        assert_eq!(
            self.init(id, None, Some(pid), now),
            InitAnswer::Ok {
                producer_id: pid,
                epoch: 0
            }
        );
    }

    fn add(
        &mut self,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: &[(&str, i32)],
        now: i64,
    ) -> Result<usize, i16> {
        let parts: Vec<(String, i32)> = parts.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        let r = self.shard.add_partitions(id, pid, epoch, &parts, now)?;
        Ok(self.apply(r))
    }

    fn end(
        &mut self,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
        now: i64,
    ) -> Result<usize, i16> {
        let r = self.shard.end_txn(id, pid, epoch, commit, now)?;
        Ok(self.apply(r))
    }

    /// Writes every pending marker (what the runtime does once a prepare state is durable).
    fn markers(&mut self, now: i64) -> Vec<MarkerJob> {
        let jobs = self.shard.pending_markers();
        for j in &jobs {
            let r = self.shard.complete(j, now);
            assert_eq!(self.apply(r), 1);
        }
        jobs
    }

    fn tick(&mut self, now: i64) -> usize {
        let r = self.shard.tick(now);
        self.apply(r)
    }

    /// A copy: the same records replayed into a new harness.
    fn clone_shard_log(&self) -> H {
        let mut h = H::new();
        h.apply(self.log.clone());
        h
    }

    fn m(&self, id: &str) -> &TxnMetadata {
        self.shard.get(id).expect("metadata")
    }

    /// The shard a load would rebuild: every record encoded, decoded and replayed into a fresh shard.
    fn reloaded(&self) -> TxnShard {
        let mut s = TxnShard::new(TxnLimits::default());
        for r in &self.log {
            let (k, v) = r.encode();
            s.replay(&TxnRecord::decode(&k, v.as_deref()).unwrap().unwrap());
        }
        s
    }

    /// Replay of the log rebuilds exactly the live state, but for the in-memory last epoch (as Kafka's).
    fn assert_replay_matches(&self) {
        let re = self.reloaded();
        assert_eq!(re.len(), self.shard.len());
        for (id, m) in self.shard.iter() {
            let mut want = m.clone();
            want.last_producer_epoch = NO_PRODUCER_EPOCH;
            assert_eq!(re.get(id), Some(&want), "{id}");
        }
    }
}

fn code(e: E) -> i16 {
    e.code()
}

#[test]
fn new_id_gets_a_fresh_producer_id_and_epoch_0_then_bumps() {
    let mut h = H::new();
    h.fresh("tx", 100, 1);
    let m = h.m("tx");
    assert_eq!(
        (m.state, m.producer_epoch, m.timeout_ms),
        (TxnState::Empty, 0, T)
    );
    assert!(!h.shard.needs_producer_id("tx"));
    assert!(h.shard.needs_producer_id("other"));
    // A second producer with the same id: epoch 1, the first is fenced on its next request.
    assert_eq!(
        h.init("tx", None, None, 2),
        InitAnswer::Ok {
            producer_id: 100,
            epoch: 1
        }
    );
    assert_eq!(h.m("tx").last_producer_epoch, NO_PRODUCER_EPOCH);
    assert_eq!(
        h.add("tx", 100, 0, &[("a", 0)], 3),
        Err(code(E::ProducerFenced))
    );
    h.assert_replay_matches();
}

#[test]
fn timeouts_outside_the_allowed_range_are_refused() {
    let h = H::new();
    for t in [0, -5, 900_001] {
        let (a, r) = h.shard.init_producer_id("tx", t, None, Some(1), 0);
        assert_eq!(
            a,
            InitAnswer::Err(code(E::InvalidTransactionTimeout)),
            "{t}"
        );
        assert!(r.is_empty());
    }
    let (a, _) = h.shard.init_producer_id("", T, None, Some(1), 0);
    assert_eq!(a, InitAnswer::Err(code(E::InvalidRequest)));
    let (a, _) = h.shard.init_producer_id("tx", 900_000, None, Some(1), 0);
    assert_eq!(
        a,
        InitAnswer::Ok {
            producer_id: 1,
            epoch: 0
        }
    );
}

#[test]
fn add_partitions_starts_and_extends_the_transaction() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    assert_eq!(h.add("tx", 7, 0, &[("a", 0), ("a", 1)], 10), Ok(1));
    let m = h.m("tx");
    assert_eq!(
        (m.state, m.start_ms, m.last_update_ms),
        (TxnState::Ongoing, 10, 10)
    );
    // Nothing new: no write.
    assert_eq!(h.add("tx", 7, 0, &[("a", 1)], 20), Ok(0));
    // A new partition: written, start time kept.
    assert_eq!(h.add("tx", 7, 0, &[("b", 3)], 30), Ok(1));
    let m = h.m("tx");
    assert_eq!(m.start_ms, 10);
    assert_eq!(m.partitions.len(), 3);
    h.assert_replay_matches();
}

#[test]
fn add_partitions_checks_the_producer() {
    let mut h = H::new();
    assert_eq!(
        h.add("tx", 7, 0, &[("a", 0)], 0),
        Err(code(E::InvalidProducerIdMapping))
    );
    h.fresh("tx", 7, 0);
    assert_eq!(
        h.add("tx", 8, 0, &[("a", 0)], 0),
        Err(code(E::InvalidProducerIdMapping))
    );
    assert_eq!(
        h.add("tx", 7, 1, &[("a", 0)], 0),
        Err(code(E::ProducerFenced))
    );
    assert_eq!(
        h.add("", 7, 0, &[("a", 0)], 0),
        Err(code(E::InvalidRequest))
    );
    assert!(h.log.len() == 1, "only the InitProducerId record");
}

#[test]
fn commit_prepares_writes_markers_then_completes() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    h.add("tx", 7, 0, &[("a", 0), ("b", 1)], 10).unwrap();
    assert_eq!(h.end("tx", 7, 0, true, 20), Ok(1));
    assert_eq!(h.m("tx").state, TxnState::PrepareCommit);
    // While markers are pending: the same end waits, the other is refused, partitions wait, a new producer waits.
    assert_eq!(
        h.end("tx", 7, 0, true, 21),
        Err(code(E::ConcurrentTransactions))
    );
    assert_eq!(h.end("tx", 7, 0, false, 21), Err(code(E::InvalidTxnState)));
    assert_eq!(
        h.add("tx", 7, 0, &[("c", 0)], 21),
        Err(code(E::ConcurrentTransactions))
    );
    assert_eq!(
        h.init("tx", None, None, 21),
        InitAnswer::Err(code(E::ConcurrentTransactions))
    );
    let jobs = h.markers(30);
    assert_eq!(
        jobs,
        vec![MarkerJob {
            transactional_id: "tx".into(),
            producer_id: 7,
            producer_epoch: 0,
            commit: true,
            partitions: vec![("a".into(), 0), ("b".into(), 1)],
        }]
    );
    let m = h.m("tx");
    assert_eq!(m.state, TxnState::CompleteCommit);
    assert!(m.partitions.is_empty());
    // A retried commit succeeds without a write; an abort now is refused.
    assert_eq!(h.end("tx", 7, 0, true, 40), Ok(0));
    assert_eq!(h.end("tx", 7, 0, false, 40), Err(code(E::InvalidTxnState)));
    // The next transaction starts from CompleteCommit.
    assert_eq!(h.add("tx", 7, 0, &[("a", 0)], 50), Ok(1));
    assert_eq!(h.m("tx").start_ms, 50);
    h.assert_replay_matches();
}

#[test]
fn abort_completes_and_retries_are_answered() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    assert_eq!(
        h.end("tx", 7, 0, false, 1),
        Err(code(E::InvalidTxnState)),
        "nothing to end"
    );
    h.add("tx", 7, 0, &[("a", 0)], 2).unwrap();
    h.end("tx", 7, 0, false, 3).unwrap();
    assert_eq!(
        h.end("tx", 7, 0, false, 4),
        Err(code(E::ConcurrentTransactions))
    );
    assert_eq!(h.end("tx", 7, 0, true, 4), Err(code(E::InvalidTxnState)));
    assert!(!h.markers(5)[0].commit);
    assert_eq!(h.m("tx").state, TxnState::CompleteAbort);
    assert_eq!(h.end("tx", 7, 0, false, 6), Ok(0));
    assert_eq!(h.end("tx", 7, 0, true, 6), Err(code(E::InvalidTxnState)));
    assert_eq!(
        h.end("tx", 8, 0, true, 6),
        Err(code(E::InvalidProducerIdMapping))
    );
    assert_eq!(
        h.end("nope", 7, 0, true, 6),
        Err(code(E::InvalidProducerIdMapping))
    );
    h.assert_replay_matches();
}

/// A new producer with the id of a running transaction: the transaction is aborted with a bumped epoch (the old
/// producer is fenced), the new one waits (CONCURRENT_TRANSACTIONS) and then gets the epoch after that.
#[test]
fn init_fences_an_ongoing_transaction() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    h.add("tx", 7, 0, &[("a", 0)], 1).unwrap();
    assert_eq!(
        h.init("tx", None, None, 2),
        InitAnswer::Err(code(E::ConcurrentTransactions))
    );
    let m = h.m("tx");
    assert_eq!((m.state, m.producer_epoch), (TxnState::PrepareAbort, 1));
    // The old producer is fenced everywhere.
    assert_eq!(h.end("tx", 7, 0, true, 3), Err(code(E::ProducerFenced)));
    assert_eq!(
        h.add("tx", 7, 0, &[("b", 0)], 3),
        Err(code(E::ProducerFenced))
    );
    // Still waiting while the abort markers are pending.
    assert_eq!(
        h.init("tx", None, None, 3),
        InitAnswer::Err(code(E::ConcurrentTransactions))
    );
    let jobs = h.markers(4);
    assert_eq!(
        (jobs[0].commit, jobs[0].producer_epoch),
        (false, 1),
        "markers carry the fencing epoch"
    );
    assert_eq!(
        h.init("tx", None, None, 5),
        InitAnswer::Ok {
            producer_id: 7,
            epoch: 2
        }
    );
    h.assert_replay_matches();
}

/// KIP-360: a producer recovering from an error names its (producer id, epoch).
#[test]
fn kip_360_bump_retry_and_fence() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    assert_eq!(
        h.init("tx", Some((7, 0)), None, 1),
        InitAnswer::Ok {
            producer_id: 7,
            epoch: 1
        }
    );
    assert_eq!(h.m("tx").last_producer_epoch, 0);
    // The same request again (its answer was lost): the same epoch, no second bump.
    assert_eq!(
        h.init("tx", Some((7, 0)), None, 2),
        InitAnswer::Ok {
            producer_id: 7,
            epoch: 1
        }
    );
    // An older epoch, or another producer id: fenced.
    h.init("tx", Some((7, 1)), None, 3); // epoch 2, last 1
    assert_eq!(
        h.init("tx", Some((7, 0)), None, 4),
        InitAnswer::Err(code(E::ProducerFenced))
    );
    assert_eq!(
        h.init("tx", Some((9, 2)), None, 4),
        InitAnswer::Err(code(E::ProducerFenced))
    );
    // After a load the last epoch is gone (as in Kafka after a coordinator move): a retry is fenced there.
    h.assert_replay_matches();
}

#[test]
fn exhausted_epochs_rotate_the_producer_id() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    let mut m = h.m("tx").clone();
    m.producer_epoch = i16::MAX - 1;
    h.apply(vec![TxnRecord {
        transactional_id: "tx".into(),
        value: Some(m),
    }]);
    assert!(h.shard.needs_producer_id("tx"));
    let before = h.clone_shard_log();
    assert_eq!(h.init("tx", None, None, 1), InitAnswer::NeedProducerId);
    assert_eq!(
        h.init("tx", None, Some(500), 1),
        InitAnswer::Ok {
            producer_id: 500,
            epoch: 0
        }
    );
    let m = h.m("tx");
    assert_eq!(
        (m.prev_producer_id, m.last_producer_epoch),
        (7, NO_PRODUCER_EPOCH)
    );
    h.assert_replay_matches();
    // The same rotation asked by a KIP-360 producer records its last epoch, so a retry of it (naming the old
    // producer id and its exhausted epoch) gets the same answer instead of PRODUCER_FENCED.
    let mut h = before;
    let exp = Some((7, i16::MAX - 1));
    assert_eq!(h.init("tx", exp, None, 1), InitAnswer::NeedProducerId);
    assert_eq!(
        h.init("tx", exp, Some(500), 1),
        InitAnswer::Ok {
            producer_id: 500,
            epoch: 0
        }
    );
    assert_eq!(h.m("tx").last_producer_epoch, i16::MAX - 1);
    assert_eq!(
        h.init("tx", exp, None, 2),
        InitAnswer::Ok {
            producer_id: 500,
            epoch: 0
        }
    );
    // Another old epoch of the old producer is fenced.
    assert_eq!(
        h.init("tx", Some((7, 3)), None, 2),
        InitAnswer::Err(code(E::ProducerFenced))
    );
}

#[test]
fn timed_out_transactions_are_aborted_with_a_bumped_epoch() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    h.add("tx", 7, 0, &[("a", 0)], 1000).unwrap();
    assert_eq!(h.tick(1000 + i64::from(T)), 0, "not yet");
    assert_eq!(h.tick(1001 + i64::from(T)), 1);
    let m = h.m("tx");
    assert_eq!((m.state, m.producer_epoch), (TxnState::PrepareAbort, 1));
    assert_eq!(
        h.end("tx", 7, 0, true, 70_000),
        Err(code(E::ProducerFenced))
    );
    assert_eq!(
        h.tick(80_000),
        0,
        "a prepare state neither times out nor expires"
    );
    h.markers(80_000);
    assert_eq!(h.m("tx").state, TxnState::CompleteAbort);
    h.assert_replay_matches();
}

#[test]
fn idle_ids_expire_but_running_transactions_do_not() {
    let limits = TxnLimits {
        id_expiration_ms: 10_000,
        max_timeout_ms: 900_000,
        ..TxnLimits::default()
    };
    let mut h = H::with(limits);
    h.fresh("idle", 1, 0);
    h.fresh("busy", 2, 0);
    let (_, r) = h.shard.init_producer_id("long", 900_000, None, Some(3), 0);
    h.apply(r);
    h.add("long", 3, 0, &[("a", 0)], 5_000).unwrap();
    assert_eq!(h.tick(9_999), 0);
    h.add("busy", 2, 0, &[("a", 0)], 9_999).unwrap();
    assert_eq!(h.tick(10_000), 1);
    assert!(h.shard.get("idle").is_none());
    assert!(h.shard.get("long").is_some(), "Ongoing never expires");
    assert_eq!(h.log.last().unwrap().value, None, "a tombstone");
    h.assert_replay_matches();
}

#[test]
fn bounds_on_ids_and_partitions() {
    let mut h = H::with(TxnLimits {
        max_transactional_ids: 2,
        ..TxnLimits::default()
    });
    h.fresh("a", 1, 0);
    h.fresh("b", 2, 0);
    let (a, r) = h.shard.init_producer_id("c", T, None, Some(3), 0);
    assert_eq!(a, InitAnswer::Err(code(E::CoordinatorNotAvailable)));
    assert!(r.is_empty());
    // Known ids still work when the shard is full.
    assert!(matches!(
        h.init("a", None, None, 1),
        InitAnswer::Ok { epoch: 1, .. }
    ));
    let many: Vec<(String, i32)> = (0..=MAX_PARTITIONS_PER_TXN as i32)
        .map(|p| ("t".to_string(), p))
        .collect();
    assert_eq!(
        h.shard.add_partitions("b", 2, 0, &many, 1),
        Err(code(E::InvalidRequest))
    );
    assert_eq!(
        h.shard
            .add_partitions("b", 2, 0, &many[..MAX_PARTITIONS_PER_TXN], 1)
            .map(|r| r.len()),
        Ok(1)
    );
}

#[test]
fn verify_only_reports_membership_per_partition() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    let parts = vec![("a".to_string(), 0), ("a".to_string(), 1)];
    assert_eq!(
        h.shard.verify_partitions("tx", 7, 0, &parts),
        Ok(vec![code(E::InvalidTxnState), code(E::InvalidTxnState)])
    );
    h.add("tx", 7, 0, &[("a", 0)], 1).unwrap();
    assert_eq!(
        h.shard.verify_partitions("tx", 7, 0, &parts),
        Ok(vec![0, code(E::InvalidTxnState)])
    );
    assert_eq!(
        h.shard.verify_partitions("tx", 7, 1, &parts),
        Err(code(E::ProducerFenced))
    );
    assert_eq!(
        h.shard.verify_partitions("x", 7, 0, &parts),
        Err(code(E::InvalidProducerIdMapping))
    );
    h.end("tx", 7, 0, true, 2).unwrap();
    assert_eq!(
        h.shard.verify_partitions("tx", 7, 0, &parts),
        Err(code(E::ConcurrentTransactions))
    );
}

/// A completion for a transaction that moved on (another producer, another result) writes nothing.
#[test]
fn stale_completions_are_ignored() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    h.add("tx", 7, 0, &[("a", 0)], 1).unwrap();
    h.end("tx", 7, 0, true, 2).unwrap();
    let mut job = h.shard.pending_markers().remove(0);
    job.producer_epoch = 5;
    assert!(h.shard.complete(&job, 3).is_empty());
    job.producer_epoch = 0;
    job.commit = false;
    assert!(h.shard.complete(&job, 3).is_empty());
    job.transactional_id = "gone".into();
    assert!(h.shard.complete(&job, 3).is_empty());
}

/// Operations never produce an illegal move: every record written by a long random-ish run of requests is a
/// legal step from the state before it.
#[test]
fn every_written_record_is_a_legal_transition() {
    let mut h = H::new();
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut now = 0;
    let mut pid = 100;
    for _ in 0..5000 {
        now += i64::try_from(next() % 5000).unwrap();
        let id = ["x", "y"][usize::try_from(next() % 2).unwrap()];
        let before = h.shard.get(id).cloned();
        let (p, e) = before
            .as_ref()
            .map_or((0, 0), |m| (m.producer_id, m.producer_epoch));
        let records = match next() % 6 {
            0 => {
                pid += 1;
                h.shard.init_producer_id(id, 10_000, None, Some(pid), now).1
            }
            1 | 2 => h
                .shard
                .add_partitions(
                    id,
                    p,
                    e,
                    &[("t".into(), i32::try_from(next() % 3).unwrap())],
                    now,
                )
                .unwrap_or_default(),
            3 => h
                .shard
                .end_txn(id, p, e, next() % 2 == 0, now)
                .unwrap_or_default(),
            4 => h
                .shard
                .pending_markers()
                .iter()
                .flat_map(|j| h.shard.complete(j, now))
                .collect(),
            _ => h.shard.tick(now),
        };
        for r in &records {
            let prev = h.shard.get(&r.transactional_id).cloned();
            if let (Some(prev), Some(next)) = (prev, &r.value) {
                assert!(
                    prev.state.may_become(next.state),
                    "{:?} -> {:?}",
                    prev.state,
                    next.state
                );
            }
            if let Some(v) = &r.value {
                assert!(
                    v.partitions.is_empty() || v.state == TxnState::Ongoing || v.state.is_prepare()
                );
            }
        }
        h.apply(records);
    }
    h.assert_replay_matches();
}

impl H {
    fn end2(
        &mut self,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
        new_pid: Option<i64>,
        now: i64,
    ) -> EndAnswer {
        let (a, r) = self.shard.end_txn_v2(id, pid, epoch, commit, new_pid, now);
        self.apply(r);
        a
    }
}

/// KIP-890: every end bumps the epoch, markers carry the bumped epoch, retries name the epoch before it.
#[test]
fn v2_end_bumps_the_epoch_and_answers_retries() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    h.add("tx", 7, 0, &[("a", 0)], 1).unwrap();
    assert_eq!(
        h.end2("tx", 7, 0, true, None, 2),
        EndAnswer::Ok {
            producer_id: 7,
            epoch: 1
        }
    );
    let m = h.m("tx");
    assert_eq!(
        (
            m.state,
            m.producer_epoch,
            m.last_producer_epoch,
            m.client_txn_version
        ),
        (TxnState::PrepareCommit, 1, 0, 2)
    );
    assert_eq!(
        h.end2("tx", 7, 0, true, None, 3),
        EndAnswer::Err(code(E::ConcurrentTransactions)),
        "a retry waits"
    );
    assert_eq!(
        h.end2("tx", 7, 0, false, None, 3),
        EndAnswer::Err(code(E::InvalidTxnState))
    );
    assert_eq!(
        h.end2("tx", 7, 1, true, None, 3),
        EndAnswer::Err(code(E::ProducerFenced)),
        "not a retry"
    );
    assert_eq!(h.markers(4)[0].producer_epoch, 1);
    assert_eq!(
        h.end2("tx", 7, 0, true, None, 5),
        EndAnswer::Ok {
            producer_id: 7,
            epoch: 1
        },
        "retry after completion"
    );
    assert_eq!(
        h.log.len(),
        4,
        "init, add, prepare, complete: a retry writes nothing"
    );
    // The client goes on with epoch 1.
    assert_eq!(h.add("tx", 7, 1, &[("b", 0)], 6), Ok(1));
    assert_eq!(
        h.end2("tx", 7, 5, true, None, 7),
        EndAnswer::Err(code(E::ProducerFenced))
    );
    assert_eq!(
        h.end2("tx", 8, 1, true, None, 7),
        EndAnswer::Err(code(E::InvalidProducerIdMapping))
    );
    assert_eq!(
        h.end2("tx", 7, 1, false, None, 7),
        EndAnswer::Ok {
            producer_id: 7,
            epoch: 2
        }
    );
    h.assert_replay_matches();
}

/// A v2 client unsure of the state aborts: from Empty or a completed transaction this is a new, empty abort.
#[test]
fn v2_abort_without_a_transaction() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    assert_eq!(
        h.end2("tx", 7, 0, true, None, 1),
        EndAnswer::Err(code(E::InvalidTxnState))
    );
    assert_eq!(
        h.end2("tx", 7, 0, false, None, 2),
        EndAnswer::Ok {
            producer_id: 7,
            epoch: 1
        }
    );
    let m = h.m("tx");
    assert_eq!((m.state, m.start_ms), (TxnState::PrepareAbort, 2));
    let jobs = h.markers(3);
    assert!(jobs[0].partitions.is_empty());
    assert_eq!(h.m("tx").state, TxnState::CompleteAbort);
    // The same epoch again is the next end, not a retry: another abort with a bump.
    assert_eq!(
        h.end2("tx", 7, 1, false, None, 4),
        EndAnswer::Ok {
            producer_id: 7,
            epoch: 2
        }
    );
    h.markers(5);
    assert_eq!(
        h.end2("tx", 7, 2, true, None, 6),
        EndAnswer::Err(code(E::InvalidTxnState))
    );
    h.assert_replay_matches();
}

/// The last epoch: the end hands out a fresh producer id with epoch 0, the completion rotates to it, and a retry
/// naming the old producer id and its last epoch is answered with the new one.
#[test]
fn v2_epoch_overflow_rotates_the_producer_id() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    h.add("tx", 7, 0, &[("a", 0)], 1).unwrap();
    let mut m = h.m("tx").clone();
    m.producer_epoch = i16::MAX - 1;
    h.apply(vec![TxnRecord {
        transactional_id: "tx".into(),
        value: Some(m),
    }]);
    let last = i16::MAX - 1;
    assert_eq!(
        h.end2("tx", 7, last, true, None, 2),
        EndAnswer::NeedProducerId
    );
    assert_eq!(
        h.end2("tx", 7, last, true, Some(900), 2),
        EndAnswer::Ok {
            producer_id: 900,
            epoch: 0
        }
    );
    let m = h.m("tx");
    assert_eq!((m.producer_epoch, m.next_producer_id), (i16::MAX, 900));
    assert_eq!(
        h.markers(3)[0].producer_epoch,
        i16::MAX,
        "markers fence every epoch of the old id"
    );
    let m = h.m("tx");
    assert_eq!(
        (
            m.producer_id,
            m.producer_epoch,
            m.prev_producer_id,
            m.next_producer_id
        ),
        (900, 0, 7, NO_PRODUCER_ID)
    );
    assert_eq!(
        h.end2("tx", 7, last, true, None, 4),
        EndAnswer::Ok {
            producer_id: 900,
            epoch: 0
        }
    );
    assert_eq!(h.add("tx", 900, 0, &[("a", 0)], 5), Ok(1));
    h.assert_replay_matches();
}

/// 4,000 topics of 249 bytes fit the partition cap but not a batch: refused before the write.
#[test]
fn records_stay_below_a_batch() {
    let mut h = H::new();
    h.fresh("tx", 7, 0);
    let long: Vec<(String, i32)> = (0..4000).map(|i| (format!("{i:0>249}"), 0)).collect();
    assert_eq!(
        h.shard.add_partitions("tx", 7, 0, &long, 1),
        Err(code(E::InvalidRequest))
    );
    assert_eq!(
        h.shard
            .add_partitions("tx", 7, 0, &long[..3000], 1)
            .map(|r| r.len()),
        Ok(1)
    );
}
