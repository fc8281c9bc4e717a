//! Transaction APIs over [`TxnCoordinator`]: InitProducerId with a transactional id, AddPartitionsToTxn
//! (client v0–3 and batched v4+, including `verify_only`), AddOffsetsToTxn and EndTxn (v0–4 transaction
//! version 1, v5+ transaction version 2). Thin handlers: decode, call the coordinator, encode.
//!
//!
//! The coordinator's operations are synchronous: each runs under its shard's lock from start to end (records
//! appended and replayed, markers written), so a request dropped with its connection never leaves one half
//! done; only the producer id allocation before them awaits the controller.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, ProducerId,
};

use crate::controller::Controller;
use crate::coordinator::producer_ids::ProducerIdManager;
use crate::coordinator::runtime::off_worker;
use crate::coordinator::txn::{EndAnswer, InitAnswer, TxnCoordinator, TXN_STATE_TOPIC};
use crate::coordinator::{CoordinatorError, GroupCoordinator, OFFSETS_TOPIC};
use crate::metadata::MetadataImage;

use super::RequestContext;

/// Where a handler finds what it needs (the broker's parts, once wired).
pub struct TxnContext<'a> {
    /// The transaction coordinator.
    pub coordinator: &'a TxnCoordinator,
    /// Producer ids for new transactional ids and rotations.
    pub producer_ids: &'a ProducerIdManager,
    /// The controller the producer id blocks come from.
    pub controller: &'a Controller,
    /// The group coordinator: the `__consumer_offsets` partition of a group (AddOffsetsToTxn).
    pub groups: &'a GroupCoordinator,
}

impl<'a> TxnContext<'a> {
    /// The broker's parts.
    fn of(broker: &'a crate::broker::Broker) -> TxnContext<'a> {
        TxnContext {
            coordinator: &broker.txn,
            producer_ids: &broker.producer_ids,
            controller: &broker.controller,
            groups: &broker.groups,
        }
    }
}

/// KIP-588: clients before the version that introduced PRODUCER_FENCED (`since`) get INVALID_PRODUCER_EPOCH,
/// which they handle the same way.
pub fn fenced_for(version: i16, since: i16, code: i16) -> i16 {
    if version < since && code == E::ProducerFenced.code() {
        E::InvalidProducerEpoch.code()
    } else {
        code
    }
}

/// AddPartitionsToTxn v0–5 as dispatched.
pub async fn handle_add_partitions(
    ctx: &RequestContext,
    req: AddPartitionsToTxnRequest,
) -> Option<AddPartitionsToTxnResponse> {
    let image = ctx.broker.image();
    let cx = TxnContext::of(&ctx.broker);
    let mut resp = off_worker(|| add_partitions_to_txn(&cx, &image, &req, ctx.version));
    for t in &mut resp.results_by_topic_v3_and_below {
        for p in &mut t.results_by_partition {
            p.partition_error_code = fenced_for(ctx.version, 2, p.partition_error_code);
        }
    }
    Some(resp)
}

/// AddOffsetsToTxn v0–4 as dispatched.
pub async fn handle_add_offsets(
    ctx: &RequestContext,
    req: AddOffsetsToTxnRequest,
) -> Option<AddOffsetsToTxnResponse> {
    let mut resp = off_worker(|| add_offsets_to_txn(&TxnContext::of(&ctx.broker), &req));
    resp.error_code = fenced_for(ctx.version, 2, resp.error_code);
    Some(resp)
}

/// EndTxn v0–5 as dispatched.
pub async fn handle_end_txn(ctx: &RequestContext, req: EndTxnRequest) -> Option<EndTxnResponse> {
    let mut resp = end_txn(&TxnContext::of(&ctx.broker), &req, ctx.version).await;
    resp.error_code = fenced_for(ctx.version, 2, resp.error_code);
    Some(resp)
}

/// InitProducerId with a transactional id as dispatched: `(producer id, epoch, error)`. Starts the
/// coordinator (creating `__transaction_state`) if this is the first transactional request.
pub async fn handle_init_producer_id(
    ctx: &RequestContext,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> (i64, i16, i16) {
    ctx.broker.start_transactions();
    let cx = TxnContext::of(&ctx.broker);
    let (pid, epoch, code) = init_producer_id(&cx, transactional_id, timeout_ms, expected).await;
    (pid, epoch, fenced_for(ctx.version, 4, code))
}

/// A producer id for an operation that asked for one; the error code Kafka answers while none can be had.
async fn fresh_pid(cx: &TxnContext<'_>) -> Result<i64, i16> {
    cx.producer_ids.generate(cx.controller).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot allocate a producer id");
        E::CoordinatorLoadInProgress.code()
    })
}

/// InitProducerId with a transactional id: `(producer id, epoch, error)`. `expected` is the KIP-360 producer
/// (id, epoch) of the request (v3+), `None` when it sends -1.
pub async fn init_producer_id(
    cx: &TxnContext<'_>,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> (i64, i16, i16) {
    let failed = |code: i16| (-1, -1, code);
    let mut new_pid = None;
    // At most twice: a second NeedProducerId can only follow a concurrent change of the id's metadata.
    for _ in 0..2 {
        if new_pid.is_none() && cx.coordinator.needs_producer_id(transactional_id) == Ok(true) {
            match fresh_pid(cx).await {
                Ok(p) => new_pid = Some(p),
                Err(code) => return failed(code),
            }
        }
        match off_worker(|| {
            cx.coordinator
                .init_producer_id(transactional_id, timeout_ms, expected, new_pid)
        }) {
            Ok(InitAnswer::Ok { producer_id, epoch }) => return (producer_id, epoch, 0),
            Ok(InitAnswer::Err(code)) => return failed(code),
            Ok(InitAnswer::NeedProducerId) => match fresh_pid(cx).await {
                Ok(p) => new_pid = Some(p),
                Err(code) => return failed(code),
            },
            Err(e) => return failed(e.code()),
        }
    }
    failed(E::ConcurrentTransactions.code())
}

/// The partitions of a request that exist, or the error of each partition (Kafka answers
/// UNKNOWN_TOPIC_OR_PARTITION for the missing ones and OPERATION_NOT_ATTEMPTED for the others, without
/// touching the transaction). `__transaction_state` itself can never be part of a transaction.
#[allow(clippy::type_complexity)]
fn resolve(
    image: &MetadataImage,
    topics: &[AddPartitionsToTxnTopic],
) -> Result<Vec<(String, i32)>, Vec<((String, i32), i16)>> {
    let mut ok = Vec::new();
    let mut bad = false;
    let mut all = Vec::new();
    for t in topics {
        let name = t.name.0.to_string();
        let info = image.topic(&name).filter(|_| name != TXN_STATE_TOPIC);
        for &p in &t.partitions {
            let exists = info.is_some_and(|i| {
                p >= 0 && usize::try_from(p).is_ok_and(|p| p < i.partitions.len())
            });
            bad |= !exists;
            all.push(((name.clone(), p), exists));
            if exists {
                ok.push((name.clone(), p));
            }
        }
    }
    if !bad {
        return Ok(ok);
    }
    Err(all
        .into_iter()
        .map(|(tp, exists)| {
            let code = if exists {
                E::OperationNotAttempted.code()
            } else {
                E::UnknownTopicOrPartition.code()
            };
            (tp, code)
        })
        .collect())
}

/// The per-topic results of one transaction, in request order.
fn topic_results(
    results: impl IntoIterator<Item = ((String, i32), i16)>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), code) in results {
        let mut r = AddPartitionsToTxnPartitionResult::default();
        r.partition_index = partition;
        r.partition_error_code = code;
        match out.last_mut() {
            Some(last) if last.name.0.as_str() == topic => last.results_by_partition.push(r),
            _ => {
                let mut t = AddPartitionsToTxnTopicResult::default();
                t.name = super::s(topic).into();
                t.results_by_partition.push(r);
                out.push(t);
            }
        }
    }
    out
}

/// One transaction of AddPartitionsToTxn: the error of every partition.
fn add_one(
    cx: &TxnContext<'_>,
    image: &MetadataImage,
    id: &str,
    pid: i64,
    epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let parts = match resolve(image, topics) {
        Ok(p) => p,
        Err(errors) => return topic_results(errors),
    };
    let codes: Vec<i16> = if verify_only {
        match cx.coordinator.verify_partitions(id, pid, epoch, &parts) {
            Ok(c) => c,
            Err(code) => vec![code; parts.len()],
        }
    } else {
        let code = cx
            .coordinator
            .add_partitions(id, pid, epoch, &parts)
            .err()
            .unwrap_or(0);
        vec![code; parts.len()]
    };
    topic_results(parts.into_iter().zip(codes))
}

/// AddPartitionsToTxn v0–5: one transaction in v0–3, a batch from v4.
pub fn add_partitions_to_txn(
    cx: &TxnContext<'_>,
    image: &MetadataImage,
    req: &AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let mut resp = AddPartitionsToTxnResponse::default();
    if version <= 3 {
        resp.results_by_topic_v3_and_below = add_one(
            cx,
            image,
            req.v3_and_below_transactional_id.0.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            false,
            &req.v3_and_below_topics,
        );
        return resp;
    }
    for t in &req.transactions {
        let mut r = AddPartitionsToTxnResult::default();
        r.transactional_id = t.transactional_id.clone();
        r.topic_results = add_one(
            cx,
            image,
            t.transactional_id.0.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            t.verify_only,
            &t.topics,
        );
        resp.results_by_transaction.push(r);
    }
    resp
}

/// AddOffsetsToTxn v0–4: adds the group's `__consumer_offsets` partition to the transaction.
pub fn add_offsets_to_txn(
    cx: &TxnContext<'_>,
    req: &AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let mut resp = AddOffsetsToTxnResponse::default();
    let group = req.group_id.0.as_str();
    if group.is_empty() {
        resp.error_code = E::InvalidRequest.code();
        return resp;
    }
    let part = (OFFSETS_TOPIC.to_string(), cx.groups.partition_of(group));
    resp.error_code = cx
        .coordinator
        .add_partitions(
            req.transactional_id.0.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            &[part],
        )
        .err()
        .unwrap_or(0);
    resp
}

/// EndTxn v0–5: transaction version 1 up to v4, version 2 (epoch bump at every end) from v5.
pub async fn end_txn(cx: &TxnContext<'_>, req: &EndTxnRequest, version: i16) -> EndTxnResponse {
    let mut resp = EndTxnResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    let id = req.transactional_id.0.as_str();
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    if version < 5 {
        resp.error_code = off_worker(|| cx.coordinator.end_txn(id, pid, epoch, req.committed))
            .err()
            .unwrap_or(0);
        return resp;
    }
    let mut new_pid = None;
    for _ in 0..2 {
        match off_worker(|| {
            cx.coordinator
                .end_txn_v2(id, pid, epoch, req.committed, new_pid)
        }) {
            Ok(EndAnswer::Ok { producer_id, epoch }) => {
                resp.producer_id = ProducerId(producer_id);
                resp.producer_epoch = epoch;
                return resp;
            }
            Ok(EndAnswer::Err(code)) => {
                resp.error_code = code;
                return resp;
            }
            Ok(EndAnswer::NeedProducerId) => match fresh_pid(cx).await {
                Ok(p) => new_pid = Some(p),
                Err(code) => {
                    resp.error_code = code;
                    return resp;
                }
            },
            Err(e) => {
                resp.error_code = CoordinatorError::code(e);
                return resp;
            }
        }
    }
    resp.error_code = E::ConcurrentTransactions.code();
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTransaction;
    use kafka_protocol::messages::{GroupId, TopicName, TransactionalId};

    use super::*;
    use crate::broker::Broker;
    use crate::coordinator::partition_for;
    use crate::coordinator::txn::{MarkerJob, MarkerWriter, TxnLimits, TxnState};

    #[derive(Default)]
    struct Markers(Mutex<Vec<MarkerJob>>);

    impl MarkerWriter for Markers {
        fn write_markers(&self, job: &MarkerJob, _epoch: i32) -> Result<(), String> {
            self.0.lock().unwrap().push(job.clone());
            Ok(())
        }
    }

    fn topics(parts: &[(&str, &[i32])]) -> Vec<AddPartitionsToTxnTopic> {
        parts
            .iter()
            .map(|(t, ps)| {
                let mut x = AddPartitionsToTxnTopic::default();
                x.name = TopicName(super::super::s(*t));
                x.partitions = ps.to_vec();
                x
            })
            .collect()
    }

    fn codes(r: &[AddPartitionsToTxnTopicResult]) -> Vec<(String, i32, i16)> {
        r.iter()
            .flat_map(|t| {
                t.results_by_partition.iter().map(|p| {
                    (
                        t.name.0.to_string(),
                        p.partition_index,
                        p.partition_error_code,
                    )
                })
            })
            .collect()
    }

    /// A whole transaction through the handlers: init (fresh id from the controller), add partitions (unknown
    /// ones refused without touching the transaction), add offsets, verify, commit with v4 and with v5.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handlers_run_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start_for_test(dir.path(), &[(TXN_STATE_TOPIC, 1), ("t", 2)]).await;
        let markers = Arc::new(Markers::default());
        let coord = TxnCoordinator::new(
            broker.replicas.clone(),
            1,
            TxnLimits::default(),
            markers.clone(),
        );
        coord.runtime().load(0);
        for _ in 0..500 {
            if coord.runtime().status("tx").is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let cx = TxnContext {
            coordinator: &coord,
            producer_ids: &broker.producer_ids,
            controller: &broker.controller,
            groups: &broker.groups,
        };
        let (pid, epoch, err) = init_producer_id(&cx, "tx", 60_000, None).await;
        assert_eq!((epoch, err), (0, 0));
        assert!(pid >= 0);
        assert_eq!(
            init_producer_id(&cx, "tx", 0, None).await.2,
            E::InvalidTransactionTimeout.code()
        );

        let image = broker.image();
        let mut req = AddPartitionsToTxnRequest::default();
        req.v3_and_below_transactional_id = TransactionalId(super::super::s("tx"));
        req.v3_and_below_producer_id = ProducerId(pid);
        req.v3_and_below_producer_epoch = 0;
        req.v3_and_below_topics = topics(&[("t", &[0, 5]), ("nope", &[0])]);
        let r = add_partitions_to_txn(&cx, &image, &req, 3);
        assert_eq!(
            codes(&r.results_by_topic_v3_and_below),
            vec![
                ("t".into(), 0, E::OperationNotAttempted.code()),
                ("t".into(), 5, E::UnknownTopicOrPartition.code()),
                ("nope".into(), 0, E::UnknownTopicOrPartition.code()),
            ]
        );
        req.v3_and_below_topics = topics(&[("t", &[0, 1])]);
        let r = add_partitions_to_txn(&cx, &image, &req, 3);
        assert_eq!(
            codes(&r.results_by_topic_v3_and_below),
            vec![("t".into(), 0, 0), ("t".into(), 1, 0)]
        );

        let mut off = AddOffsetsToTxnRequest::default();
        off.transactional_id = TransactionalId(super::super::s("tx"));
        off.producer_id = ProducerId(pid);
        off.producer_epoch = 0;
        off.group_id = GroupId(super::super::s("g"));
        assert_eq!(add_offsets_to_txn(&cx, &off).error_code, 0);

        // v4 verify-only, as a partition leader asks.
        let mut v4 = AddPartitionsToTxnRequest::default();
        let mut t = AddPartitionsToTxnTransaction::default();
        t.transactional_id = TransactionalId(super::super::s("tx"));
        t.producer_id = ProducerId(pid);
        t.producer_epoch = 0;
        t.verify_only = true;
        t.topics = topics(&[("t", &[1])]);
        v4.transactions.push(t);
        let r = add_partitions_to_txn(&cx, &image, &v4, 4);
        assert_eq!(
            codes(&r.results_by_transaction[0].topic_results),
            vec![("t".into(), 1, 0)]
        );

        let mut end = EndTxnRequest::default();
        end.transactional_id = TransactionalId(super::super::s("tx"));
        end.producer_id = ProducerId(pid);
        end.producer_epoch = 0;
        end.committed = true;
        assert_eq!(end_txn(&cx, &end, 4).await.error_code, 0);
        {
            let m = markers.0.lock().unwrap();
            assert_eq!(
                m[0].partitions,
                vec![
                    (OFFSETS_TOPIC.to_string(), partition_for("g", 50)),
                    ("t".to_string(), 0),
                    ("t".to_string(), 1)
                ]
            );
        }
        // Transaction version 2: a fresh transaction ended with v5 answers the bumped epoch.
        req.v3_and_below_topics = topics(&[("t", &[0])]);
        add_partitions_to_txn(&cx, &image, &req, 3);
        let r = end_txn(&cx, &end, 5).await;
        assert_eq!(
            (r.error_code, r.producer_id.0, r.producer_epoch),
            (0, pid, 1)
        );
        let state = coord
            .runtime()
            .read("tx", |s| s.get("tx").map(|m| m.state))
            .unwrap();
        assert_eq!(state, Some(TxnState::CompleteCommit));
        // The old epoch is now a retry of that end; the stale producer of epoch 0 cannot add partitions.
        assert_eq!(end_txn(&cx, &end, 5).await.producer_epoch, 1);
        let r = add_partitions_to_txn(&cx, &image, &req, 3);
        assert_eq!(
            codes(&r.results_by_topic_v3_and_below),
            vec![("t".into(), 0, E::ProducerFenced.code())]
        );
    }
}
