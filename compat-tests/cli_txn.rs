//! `vltava txn list|describe` and the Java Admin's `listTransactions`/`describeTransactions` against a real
//! broker with a real transactional producer: rdkafka (or the Java producer) begins a transaction, produces to
//! two partitions and leaves it open; the tools show it Ongoing with its partitions and producer, the filters
//! (state, producer id, duration, pattern) keep or drop it as Kafka's do; after the commit it is
//! CompleteCommit with no partitions.

use std::process::Command;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::common::{binary, bounded, run_java, Broker};
use crate::metadata::create_topic;

fn txn_cmd(b: &Broker, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary())
        .args(["txn", "--bootstrap", &b.bootstrap()])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The table a command printed: header cells, then each row's cells (columns are separated by two or more
/// spaces; the last, TopicPartitions, may be empty).
fn table(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let split = |l: &str| -> Vec<String> {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    let header = lines.next().map(split).unwrap_or_default();
    (header, lines.map(split).collect())
}

/// The row of `id` in `vltava txn list` with these extra arguments, if listed.
fn listed(b: &Broker, id: &str, extra: &[&str]) -> Option<Vec<String>> {
    let mut args = vec!["list"];
    args.extend_from_slice(extra);
    let (ok, out, err) = txn_cmd(b, &args);
    assert!(ok, "txn list {extra:?} failed: {out}{err}");
    let (header, rows) = table(&out);
    assert_eq!(
        header,
        [
            "TransactionalId",
            "Coordinator",
            "ProducerId",
            "TransactionState"
        ],
        "{out}"
    );
    rows.into_iter().find(|r| r[0] == id)
}

#[test]
fn txn_cli_shows_an_open_then_committed_rdkafka_transaction() {
    bounded(120, || {
        let b = Broker::start();
        let topic = "cli-txn-t";
        let id = "cli-txn-1";
        create_topic(&b, topic, 2, &[]);
        let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", b.bootstrap())
            .set("transactional.id", id)
            .set("transaction.timeout.ms", "60000")
            .set("linger.ms", "0")
            .create()
            .expect("transactional producer");
        p.init_transactions(Duration::from_secs(30))
            .expect("init_transactions");
        p.begin_transaction().expect("begin_transaction");
        for part in [0, 1] {
            p.send(BaseRecord::to(topic).partition(part).key("k").payload("v"))
                .map_err(|(e, _)| e)
                .expect("send");
        }
        p.flush(Duration::from_secs(30)).expect("flush");

        // describe: Ongoing, both partitions, a producer id, the producer's timeout, a start time.
        let (ok, out, err) = txn_cmd(&b, &["describe", id]);
        assert!(ok, "{out}{err}");
        let (header, rows) = table(&out);
        assert_eq!(
            header,
            [
                "CoordinatorId",
                "TransactionalId",
                "ProducerId",
                "ProducerEpoch",
                "TransactionState",
                "TransactionTimeoutMs",
                "CurrentTransactionStartTimeMs",
                "TransactionDurationMs",
                "TopicPartitions"
            ]
        );
        assert_eq!(rows.len(), 1, "{out}");
        let r = &rows[0];
        assert_eq!(r[0], "1", "node 1 coordinates: {out}");
        assert_eq!(r[1], id);
        let pid: i64 = r[2].parse().expect("producer id");
        assert!(pid >= 0, "{out}");
        assert!(r[3].parse::<i16>().expect("epoch") >= 0, "{out}");
        assert_eq!(r[4], "Ongoing", "{out}");
        assert_eq!(r[5], "60000", "{out}");
        assert!(r[6].parse::<i64>().expect("start time") > 0, "{out}");
        assert!(r[7].parse::<i64>().expect("duration") >= 0, "{out}");
        assert_eq!(r[8], format!("{topic}-0,{topic}-1"), "{out}");

        // list and its filters.
        let pid_s = pid.to_string();
        let row = listed(&b, id, &[]).expect("listed");
        assert_eq!(row, [id, "1", pid_s.as_str(), "Ongoing"]);
        assert!(listed(&b, id, &["--state", "Ongoing"]).is_some());
        assert!(listed(&b, id, &["--state", "CompleteCommit,Empty"]).is_none());
        assert!(listed(&b, id, &["--producer-id", &pid_s]).is_some());
        assert!(listed(&b, id, &["--producer-id", &(pid + 1000).to_string()]).is_none());
        assert!(
            listed(&b, id, &["--duration-ms", "3600000"]).is_none(),
            "younger than an hour"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert!(listed(&b, id, &["--duration-ms", "1"]).is_some());
        assert!(listed(&b, id, &["--transactional-id-pattern", "cli-txn-.*"]).is_some());
        assert!(
            listed(&b, id, &["--transactional-id-pattern", "cli-txn"]).is_none(),
            "the pattern matches whole ids"
        );
        let (ok, out, err) = txn_cmd(&b, &["list", "--state", "Sleeping"]);
        assert!(ok, "{out}{err}");
        assert!(
            table(&out).1.is_empty(),
            "only unknown states: nothing listed\n{out}"
        );
        assert!(
            err.contains("Sleeping"),
            "the unknown state is reported: {err}"
        );
        let (ok, out, err) = txn_cmd(&b, &["list", "--transactional-id-pattern", "(x"]);
        assert!(!ok, "a bad pattern fails: {out}");
        assert!(err.contains("InvalidRegularExpression"), "{err}");

        // An unknown id fails the command (after describing the others).
        let (ok, out, err) = txn_cmd(&b, &["describe", id, "cli-txn-nobody"]);
        assert!(!ok, "{out}");
        assert_eq!(table(&out).1.len(), 1, "the known id is still shown: {out}");
        assert!(err.contains("TransactionalIdNotFound"), "{err}");

        // After the commit: CompleteCommit, no partitions.
        p.commit_transaction(Duration::from_secs(30))
            .expect("commit_transaction");
        let (ok, out, err) = txn_cmd(&b, &["describe", id]);
        assert!(ok, "{out}{err}");
        let r = &table(&out).1[0];
        assert_eq!(r[4], "CompleteCommit", "{out}");
        assert_eq!(r.len(), 8, "no partitions after the commit: {out}");
        let row = listed(&b, id, &["--state", "CompleteCommit"]).expect("listed");
        assert_eq!(row[3], "CompleteCommit");
    });
}

/// The Java Admin client (kafka-clients 4.1, as `kafka-transactions.sh` uses it) lists and describes a Java
/// producer's transaction, open and then committed; see compat-tests/java/TxnAdmin.java.
#[test]
fn java_admin_lists_and_describes_transactions() {
    bounded(120, || {
        let b = Broker::start();
        let text = run_java("TxnAdmin.java", &b, &[]);
        assert!(text.contains("TxnAdmin: OK"), "{text}");
    });
}
