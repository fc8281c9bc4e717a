//! Transaction administration: DescribeTransactions v0 and ListTransactions v0–2 over the transaction
//! coordinator's shards (`coordinator/txn/admin.rs` does the reading and filtering). Thin handlers: decode,
//! ask the coordinator, encode. No state here.

use std::collections::HashSet;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::describe_transactions_response::{self as dt, TopicData};
use kafka_protocol::messages::list_transactions_response as lt;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};

use super::{s, RequestContext};
use crate::coordinator::txn::admin::ListFilter;
use crate::coordinator::txn::TxnCoordinator;

/// DescribeTransactions from a client. On the blocking pool: a shard's lock may be held while its markers and
/// completion are appended (and fsynced).
pub async fn handle_describe_transactions(
    ctx: &RequestContext,
    req: DescribeTransactionsRequest,
) -> Option<DescribeTransactionsResponse> {
    let txn = ctx.broker.txn.clone();
    let ids = req.transactional_ids.clone();
    match tokio::task::spawn_blocking(move || describe_transactions(&txn, req)).await {
        Ok(resp) => Some(resp),
        Err(e) => {
            tracing::error!("DescribeTransactions failed: {e}");
            let mut resp = DescribeTransactionsResponse::default();
            resp.transaction_states = ids
                .into_iter()
                .map(|id| {
                    dt::TransactionState::default()
                        .with_transactional_id(id)
                        .with_error_code(E::UnknownServerError.code())
                })
                .collect();
            Some(resp)
        }
    }
}

/// ListTransactions from a client; on the blocking pool like DescribeTransactions (it takes every shard's lock
/// in turn).
pub async fn handle_list_transactions(
    ctx: &RequestContext,
    req: ListTransactionsRequest,
) -> Option<ListTransactionsResponse> {
    let txn = ctx.broker.txn.clone();
    let version = ctx.version;
    let now = crate::partition::manager::now_ms();
    match tokio::task::spawn_blocking(move || list_transactions(&txn, version, &req, now)).await {
        Ok(resp) => Some(resp),
        Err(e) => {
            tracing::error!("ListTransactions failed: {e}");
            Some(ListTransactionsResponse::default().with_error_code(E::UnknownServerError.code()))
        }
    }
}

/// DescribeTransactions v0 (Kafka's `handleDescribeTransactions`): per id its state, producer, timeout, start
/// time (-1: none) and partitions; INVALID_REQUEST for an empty id, NOT_COORDINATOR /
/// COORDINATOR_LOAD_IN_PROGRESS when its shard is not loaded here, TRANSACTIONAL_ID_NOT_FOUND for an id the
/// coordinator does not know. A repeated id is answered once (the Admin client asks for a set; answering every
/// copy of a transaction with 10,000 partitions would multiply the response).
pub fn describe_transactions(
    txn: &TxnCoordinator,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut resp = DescribeTransactionsResponse::default();
    let mut seen = HashSet::new();
    for id in req.transactional_ids {
        if !seen.insert(id.0.clone()) {
            continue;
        }
        let mut st = dt::TransactionState::default().with_transactional_id(id.clone());
        if id.is_empty() {
            st.error_code = E::InvalidRequest.code();
            resp.transaction_states.push(st);
            continue;
        }
        match txn.describe_transaction(&id) {
            Err(e) => st.error_code = e.code(),
            Ok(None) => st.error_code = E::TransactionalIdNotFound.code(),
            Ok(Some(d)) => {
                st.transaction_state = s(d.state.name());
                st.producer_id = ProducerId(d.producer_id);
                st.producer_epoch = d.producer_epoch;
                st.transaction_timeout_ms = d.timeout_ms;
                st.transaction_start_time_ms = d.start_ms;
                st.topics = d
                    .topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TopicData::default()
                            .with_topic(TopicName(s(topic)))
                            .with_partitions(partitions)
                    })
                    .collect();
            }
        }
        resp.transaction_states.push(st);
    }
    resp
}

/// ListTransactions v0–2 (Kafka's `listTransactionStates`): the transactions of every shard this broker
/// coordinates, filtered by state (v0+), producer id (v0+), duration (v1+, KIP-994) and a pattern over the
/// whole transactional id (v2+, KIP-1152); state names the coordinator does not know come back in
/// `unknown_state_filters`. COORDINATOR_LOAD_IN_PROGRESS with nothing listed while a shard loads,
/// INVALID_REGULAR_EXPRESSION for a pattern that does not compile.
pub fn list_transactions(
    txn: &TxnCoordinator,
    version: i16,
    req: &ListTransactionsRequest,
    now: i64,
) -> ListTransactionsResponse {
    let mut resp = ListTransactionsResponse::default();
    let states: Vec<&str> = req.state_filters.iter().map(|x| x.as_str()).collect();
    let pids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    // kafka-protocol leaves fields a version lacks at their defaults; gate anyway so a version never reads
    // more than it carries.
    let duration = if version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    let pattern = if version >= 2 {
        req.transactional_id_pattern.as_deref()
    } else {
        None
    };
    let filter = match ListFilter::new(&states, &pids, duration, pattern) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!("ListTransactions refused: {e}");
            resp.error_code = E::InvalidRegularExpression.code();
            return resp;
        }
    };
    match txn.list_transactions(&filter, now) {
        Err(e) => resp.error_code = e.code(),
        Ok(listed) => {
            resp.unknown_state_filters = filter.unknown_states().iter().map(s).collect();
            resp.transaction_states = listed
                .into_iter()
                .map(|l| {
                    lt::TransactionState::default()
                        .with_transactional_id(TransactionalId(s(l.transactional_id)))
                        .with_producer_id(ProducerId(l.producer_id))
                        .with_transaction_state(s(l.state.name()))
                })
                .collect();
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::broker::Broker;
    use crate::coordinator::txn::{
        InitAnswer, MarkerJob, MarkerWriter, TxnLimits, TxnState, TXN_STATE_TOPIC,
    };

    struct NoMarkers;
    impl MarkerWriter for NoMarkers {
        fn write_markers(&self, _job: &MarkerJob, _epoch: i32) -> Result<(), String> {
            Ok(())
        }
    }

    fn tid(x: &str) -> TransactionalId {
        TransactionalId(s(x))
    }

    fn list(
        c: &TxnCoordinator,
        version: i16,
        states: &[&str],
        pids: &[i64],
        duration: i64,
        pattern: Option<&str>,
        now: i64,
    ) -> ListTransactionsResponse {
        let req = ListTransactionsRequest::default()
            .with_state_filters(states.iter().map(|x| s(*x)).collect())
            .with_producer_id_filters(pids.iter().map(|p| ProducerId(*p)).collect())
            .with_duration_filter(duration)
            .with_transactional_id_pattern(pattern.map(s));
        list_transactions(c, version, &req, now)
    }

    fn listed(r: &ListTransactionsResponse) -> Vec<(String, i64, String)> {
        r.transaction_states
            .iter()
            .map(|t| {
                (
                    t.transactional_id.to_string(),
                    t.producer_id.0,
                    t.transaction_state.to_string(),
                )
            })
            .collect()
    }

    /// Both APIs through a real coordinator over a real `__transaction_state` with two partitions: before the
    /// shards load (NOT_COORDINATOR, then COORDINATOR_LOAD_IN_PROGRESS), then with one transaction running and
    /// one committed, every filter and every per-id error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn describe_and_list_over_a_running_coordinator() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start_for_test(dir.path(), &[(TXN_STATE_TOPIC, 2)]).await;
        let c = Arc::new(TxnCoordinator::new(
            broker.replicas.clone(),
            2,
            TxnLimits::default(),
            Arc::new(NoMarkers),
        ));
        // "run" and "done" must land on different shards for the loading case below to mean something.
        let (p_run, p_done) = (
            c.runtime().partition_of("run"),
            c.runtime().partition_of("done"),
        );
        assert_ne!(p_run, p_done);

        let describe = |c: &TxnCoordinator, ids: &[&str]| {
            let req = DescribeTransactionsRequest::default()
                .with_transactional_ids(ids.iter().map(|x| tid(x)).collect());
            describe_transactions(c, req).transaction_states
        };
        let d = describe(&c, &["run"]);
        assert_eq!(d[0].error_code, E::NotCoordinator.code());
        assert_eq!(listed(&list(&c, 1, &[], &[], -1, None, 0)), vec![]);

        c.runtime().load(p_run);
        c.runtime().load(p_done);
        for _ in 0..500 {
            if c.runtime().status("run").is_ok() && c.runtime().status("done").is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let c2 = c.clone();
        let start = tokio::task::spawn_blocking(move || {
            let c = c2;
            let init = |id: &str, pid: i64| {
                assert_eq!(
                    c.init_producer_id(id, 30_000, None, Some(pid)),
                    Ok(InitAnswer::Ok {
                        producer_id: pid,
                        epoch: 0
                    })
                );
            };
            init("run", 10);
            init("done", 11);
            init("idle", 12);
            let before = crate::partition::manager::now_ms();
            let parts = vec![
                ("b".to_string(), 1),
                ("a".to_string(), 2),
                ("a".to_string(), 0),
            ];
            c.add_partitions("run", 10, 0, &parts).unwrap();
            c.add_partitions("done", 11, 0, &parts[..1]).unwrap();
            c.end_txn("done", 11, 0, true).unwrap();
            before
        })
        .await
        .unwrap();

        let d = describe(&c, &["run", "done", "idle", "nope", "", "run"]);
        assert_eq!(d.len(), 5, "the repeated id is answered once");
        let run = &d[0];
        assert_eq!(run.transactional_id.as_str(), "run");
        assert_eq!(run.error_code, 0);
        assert_eq!(run.transaction_state.as_str(), "Ongoing");
        assert_eq!((run.producer_id.0, run.producer_epoch), (10, 0));
        assert_eq!(run.transaction_timeout_ms, 30_000);
        assert!(run.transaction_start_time_ms >= start);
        let topics: Vec<(String, Vec<i32>)> = run
            .topics
            .iter()
            .map(|t| (t.topic.to_string(), t.partitions.clone()))
            .collect();
        assert_eq!(
            topics,
            vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])]
        );
        let done = &d[1];
        assert_eq!(done.transaction_state.as_str(), "CompleteCommit");
        assert!(
            done.topics.is_empty(),
            "a complete transaction has no partitions"
        );
        assert!(
            done.transaction_start_time_ms >= start,
            "the start of the last transaction is kept, as in Kafka"
        );
        let idle = &d[2];
        assert_eq!(idle.transaction_state.as_str(), "Empty");
        assert_eq!(idle.transaction_start_time_ms, -1);
        assert_eq!(d[3].error_code, E::TransactionalIdNotFound.code());
        assert_eq!(d[4].error_code, E::InvalidRequest.code());

        let now = crate::partition::manager::now_ms();
        let all = list(&c, 0, &[], &[], -1, None, now);
        assert_eq!(all.error_code, 0);
        assert_eq!(
            listed(&all),
            vec![
                ("done".to_string(), 11, "CompleteCommit".to_string()),
                ("idle".to_string(), 12, "Empty".to_string()),
                ("run".to_string(), 10, "Ongoing".to_string()),
            ]
        );
        let r = list(&c, 0, &["Ongoing", "Unheard"], &[], -1, None, now);
        assert_eq!(listed(&r).len(), 1);
        assert_eq!(r.unknown_state_filters, vec![s("Unheard")]);
        let r = list(&c, 0, &["Unheard"], &[], -1, None, now);
        assert!(r.transaction_states.is_empty());
        assert_eq!(r.error_code, 0);
        assert_eq!(listed(&list(&c, 0, &[], &[11, 12], -1, None, now)).len(), 2);
        // v0 carries no duration, v1 does: an hour-long filter drops the running transactions (an idle id
        // with no start time passes, as in Kafka).
        assert_eq!(
            listed(&list(&c, 0, &[], &[], 3_600_000, None, now)).len(),
            3
        );
        let r = list(&c, 1, &[], &[], 3_600_000, None, now);
        assert_eq!(
            listed(&r),
            vec![("idle".to_string(), 12, "Empty".to_string())]
        );
        // The pattern only from v2, and over the whole id.
        assert_eq!(
            listed(&list(&c, 1, &[], &[], -1, Some("r.*"), now)).len(),
            3
        );
        let r = list(&c, 2, &[], &[], -1, Some("r.*"), now);
        assert_eq!(
            listed(&r),
            vec![("run".to_string(), 10, "Ongoing".to_string())]
        );
        assert!(list(&c, 2, &[], &[], -1, Some("ru"), now)
            .transaction_states
            .is_empty());
        let r = list(&c, 2, &["Bogus"], &[], -1, Some("(ru"), now);
        assert_eq!(r.error_code, E::InvalidRegularExpression.code());
        assert!(r.transaction_states.is_empty());

        // A shard loading again: ListTransactions answers only the error; a describe of an id on the other,
        // loaded shard still works.
        c.runtime().unload(p_done);
        assert_eq!(
            describe(&c, &["done"])[0].error_code,
            E::NotCoordinator.code()
        );
        assert_eq!(
            describe(&c, &["run"])[0].transaction_state.as_str(),
            TxnState::Ongoing.name()
        );
        c.runtime().mark_loading(p_done);
        assert_eq!(
            describe(&c, &["done"])[0].error_code,
            E::CoordinatorLoadInProgress.code()
        );
        let r = list(&c, 1, &["Unheard"], &[], -1, None, now);
        assert_eq!(r.error_code, E::CoordinatorLoadInProgress.code());
        assert!(r.transaction_states.is_empty() && r.unknown_state_filters.is_empty());
        c.runtime().load(p_done);
        for _ in 0..500 {
            if c.runtime().status("done").is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(listed(&list(&c, 1, &[], &[], -1, None, now)).len(), 3);
    }
}
