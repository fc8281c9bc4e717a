//! `vltava txn list|describe`: transactions as `kafka-transactions.sh list` and `describe` show them, with
//! Kafka's column names. `list` asks every broker (each lists the transactional ids it coordinates, as the
//! Admin client does); `describe` asks each id's coordinator (FindCoordinator with the transaction key type).
//! Holds no state beyond one command's connections.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use kafka_protocol::messages::*;

use super::client::ClientError;
use super::group::cluster::Cluster;
use super::group::print_table;
use super::topic::{check, s};

/// `vltava txn ...`
#[derive(Args, Debug)]
pub struct TxnCommand {
    /// Broker to talk to.
    #[arg(
        long,
        short = 'b',
        default_value = "127.0.0.1:9092",
        global = true,
        value_name = "HOST:PORT"
    )]
    pub bootstrap: String,
    /// What to do.
    #[command(subcommand)]
    pub action: TxnAction,
}

/// Transaction operations.
#[derive(Subcommand, Debug)]
pub enum TxnAction {
    /// List transactional ids with their coordinator, producer id and state.
    List {
        /// Only transactions in these states (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
        /// CompleteAbort, PrepareEpochFence; exact names, repeatable or comma-separated).
        #[arg(long = "state", value_delimiter = ',')]
        states: Vec<String>,
        /// Only these producer ids (repeatable or comma-separated).
        #[arg(long = "producer-id", value_delimiter = ',')]
        producer_ids: Vec<i64>,
        /// Only transactions running longer than this many milliseconds (ListTransactions v1, KIP-994).
        #[arg(long = "duration-ms", value_name = "MS")]
        duration_ms: Option<i64>,
        /// Only transactional ids this regular expression matches whole (ListTransactions v2, KIP-1152).
        #[arg(long = "transactional-id-pattern", value_name = "REGEX")]
        pattern: Option<String>,
    },
    /// Show each transactional id's coordinator, producer, state, timeout, start time, duration and the
    /// partitions of its running transaction.
    Describe {
        /// Transactional ids.
        #[arg(required = true)]
        transactional_ids: Vec<String>,
    },
}

/// Runs a transaction command, printing results to stdout; `Err` (a non-zero exit) if anything failed.
pub fn run(cmd: TxnCommand) -> Result<(), ClientError> {
    let mut c = Cluster::connect(&cmd.bootstrap)?;
    match cmd.action {
        TxnAction::List {
            states,
            producer_ids,
            duration_ms,
            pattern,
        } => list(&mut c, &states, &producer_ids, duration_ms, pattern),
        TxnAction::Describe { transactional_ids } => describe(&mut c, &transactional_ids),
    }
}

/// The oldest ListTransactions version that carries the filters asked for.
fn list_version(duration_ms: Option<i64>, pattern: Option<&str>) -> i16 {
    if pattern.is_some_and(|p| !p.is_empty()) {
        2
    } else if duration_ms.is_some() {
        1
    } else {
        0
    }
}

fn list(
    c: &mut Cluster,
    states: &[String],
    producer_ids: &[i64],
    duration_ms: Option<i64>,
    pattern: Option<String>,
) -> Result<(), ClientError> {
    let version = list_version(duration_ms, pattern.as_deref());
    let mut req = ListTransactionsRequest::default();
    req.state_filters = states.iter().map(|x| s(x)).collect();
    req.producer_id_filters = producer_ids.iter().map(|p| ProducerId(*p)).collect();
    req.duration_filter = duration_ms.unwrap_or(-1);
    req.transactional_id_pattern = pattern.map(|p| s(&p));
    // Every broker coordinates some transactional ids: ask each one.
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unknown: Vec<String> = Vec::new();
    for (node, addr) in c.broker_nodes() {
        let resp: ListTransactionsResponse =
            c.client(&addr)?
                .call(ApiKey::ListTransactions, version, &req)?;
        check(
            resp.error_code,
            None,
            &format!("list transactions on {addr}"),
        )?;
        for u in resp.unknown_state_filters {
            if !unknown.contains(&u.to_string()) {
                unknown.push(u.to_string());
            }
        }
        for t in resp.transaction_states {
            let id = t.transactional_id.to_string();
            rows.insert(
                id.clone(),
                vec![
                    id,
                    node.to_string(),
                    t.producer_id.0.to_string(),
                    t.transaction_state.to_string(),
                ],
            );
        }
    }
    if !unknown.is_empty() {
        eprintln!("unknown transaction state(s): {}", unknown.join(", "));
    }
    let mut table = vec![cells(&[
        "TransactionalId",
        "Coordinator",
        "ProducerId",
        "TransactionState",
    ])];
    table.extend(rows.into_values());
    print_table(&table);
    Ok(())
}

fn cells(x: &[&str]) -> Vec<String> {
    x.iter().map(|c| c.to_string()).collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One described transaction as a row of Kafka's `describe` table: start time and duration are "None" when
/// the transactional id has no transaction start (-1), partitions are `topic-partition` joined by commas.
fn describe_row(
    coordinator: i32,
    t: &describe_transactions_response::TransactionState,
    now: i64,
) -> Vec<String> {
    let (start, duration) = if t.transaction_start_time_ms >= 0 {
        (
            t.transaction_start_time_ms.to_string(),
            now.saturating_sub(t.transaction_start_time_ms).to_string(),
        )
    } else {
        ("None".to_string(), "None".to_string())
    };
    let partitions: Vec<String> = t
        .topics
        .iter()
        .flat_map(|td| {
            td.partitions
                .iter()
                .map(move |p| format!("{}-{p}", &*td.topic))
        })
        .collect();
    vec![
        coordinator.to_string(),
        t.transactional_id.to_string(),
        t.producer_id.0.to_string(),
        t.producer_epoch.to_string(),
        t.transaction_state.to_string(),
        t.transaction_timeout_ms.to_string(),
        start,
        duration,
        partitions.join(","),
    ]
}

fn describe(c: &mut Cluster, ids: &[String]) -> Result<(), ClientError> {
    let mut table = vec![cells(&[
        "CoordinatorId",
        "TransactionalId",
        "ProducerId",
        "ProducerEpoch",
        "TransactionState",
        "TransactionTimeoutMs",
        "CurrentTransactionStartTimeMs",
        "TransactionDurationMs",
        "TopicPartitions",
    ])];
    let mut failed = Vec::new();
    for id in ids {
        let mut req = DescribeTransactionsRequest::default();
        req.transactional_ids = vec![TransactionalId(s(id))];
        let answer = c.call_coordinator_of(
            1,
            id,
            ApiKey::DescribeTransactions,
            0,
            &req,
            |r: &DescribeTransactionsResponse| {
                r.transaction_states.first().map_or(0, |t| t.error_code)
            },
        );
        let result = answer.and_then(|(node, resp)| {
            let t = resp
                .transaction_states
                .into_iter()
                .find(|t| t.transactional_id.as_str() == id.as_str())
                .ok_or_else(|| {
                    ClientError::Protocol(format!("DescribeTransactions: no answer for {id}"))
                })?;
            check(
                t.error_code,
                None,
                &format!("describe transactional id {id}"),
            )?;
            Ok(describe_row(node, &t, now_ms()))
        });
        match result {
            Ok(row) => table.push(row),
            Err(e) => {
                eprintln!("Error: {e}");
                failed.push(id.clone());
            }
        }
    }
    if table.len() > 1 {
        print_table(&table);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ClientError::Refused(format!(
            "could not describe transactional id(s): {}",
            failed.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_follows_the_filters() {
        assert_eq!(list_version(None, None), 0);
        assert_eq!(list_version(None, Some("")), 0);
        assert_eq!(list_version(Some(0), None), 1);
        assert_eq!(list_version(Some(5), Some("a.*")), 2);
    }

    #[test]
    fn describe_rows_like_kafka_transactions_sh() {
        let mut t = describe_transactions_response::TransactionState::default();
        t.transactional_id = TransactionalId(s("tx"));
        t.producer_id = ProducerId(7);
        t.producer_epoch = 2;
        t.transaction_state = s("Ongoing");
        t.transaction_timeout_ms = 60_000;
        t.transaction_start_time_ms = 1_000;
        t.topics = vec![
            describe_transactions_response::TopicData::default()
                .with_topic(TopicName(s("a")))
                .with_partitions(vec![0, 2]),
            describe_transactions_response::TopicData::default()
                .with_topic(TopicName(s("b-c")))
                .with_partitions(vec![1]),
        ];
        assert_eq!(
            describe_row(3, &t, 1_500),
            [
                "3",
                "tx",
                "7",
                "2",
                "Ongoing",
                "60000",
                "1000",
                "500",
                "a-0,a-2,b-c-1"
            ]
        );
        t.transaction_start_time_ms = -1;
        t.topics.clear();
        t.transaction_state = s("Empty");
        let row = describe_row(3, &t, 1_500);
        assert_eq!(&row[6..], ["None", "None", ""]);
    }
}
