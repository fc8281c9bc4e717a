//! `vltava group ...` against a real broker with a real rdkafka group member: list and describe show the
//! member, its assignment, committed offsets and lag as produced and committed; reset-offsets and delete are
//! refused while the member is active; a dry run changes nothing, --execute changes what rdkafka's
//! `committed()` reads; delete-offsets; delete.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::common::{binary, bounded, Broker};
use crate::metadata::create_topic;
use crate::produce_consume::producer;

pub fn group_cmd(b: &Broker, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary())
        .args(["group", "--bootstrap", &b.bootstrap()])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The whitespace-separated cells of the output line that starts with `prefix` cells.
fn line_with(out: &str, prefix: &[&str]) -> Option<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|cells| cells.len() >= prefix.len() && prefix.iter().zip(cells).all(|(p, c)| p == c))
}

fn committed(b: &Broker, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(20))
        .expect("committed");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(n)) => Some(n),
            _ => None,
        })
        .collect()
}

fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn group_cli_against_a_live_rdkafka_member() {
    bounded(150, || {
        let b = Broker::start_with(&[("GROUP_INITIAL_REBALANCE_DELAY_MS", "200")]);
        let (topic, group) = ("cli-g-t", "cli-g");
        create_topic(&b, topic, 2, &[]);
        let (p, acks) = producer(&b, &[]);
        for (part, n) in [(0, 10), (1, 6)] {
            for i in 0..n {
                p.send(
                    BaseRecord::<(), _>::to(topic)
                        .partition(part)
                        .payload(&format!("v{i}")),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue");
            }
        }
        p.flush(Duration::from_secs(30)).expect("flush");
        assert!(acks.1.lock().unwrap().is_empty());

        // One subscribed member reads everything, commits p0=7 and p1=6, and keeps polling until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let bootstrap = b.bootstrap();
        let s = stop.clone();
        let member = std::thread::spawn(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "cli-g")
                .set("client.id", "cli-client")
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "300")
                .create()
                .expect("consumer");
            c.subscribe(&["cli-g-t"]).expect("subscribe");
            let mut seen = 0;
            let mut committed = false;
            while !s.load(Ordering::Relaxed) {
                if let Some(Ok(_)) = c.poll(Duration::from_millis(50)) {
                    seen += 1;
                }
                if seen == 16 && !committed {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset("cli-g-t", 0, Offset::Offset(7))
                        .unwrap();
                    tpl.add_partition_offset("cli-g-t", 1, Offset::Offset(6))
                        .unwrap();
                    c.commit(&tpl, CommitMode::Sync).expect("commit");
                    committed = true;
                    tx.send(()).unwrap();
                }
            }
            drop(c); // LeaveGroup
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("member read and committed");

        let (ok, out) = group_cmd(&b, &["list"]);
        assert!(ok, "{out}");
        assert_eq!(
            line_with(&out, &[group]),
            Some(vec![group.into(), "classic".into(), "Stable".into()]),
            "{out}"
        );
        let (ok, out) = group_cmd(&b, &["list", "--state", "empty,dead"]);
        assert!(ok && line_with(&out, &[group]).is_none(), "{out}");
        let (ok, out) = group_cmd(&b, &["list", "--type", "consumer"]);
        assert!(ok && line_with(&out, &[group]).is_none(), "{out}");
        let (ok, out) = group_cmd(&b, &["list", "--state", "Stable", "--type", "classic"]);
        assert!(ok && line_with(&out, &[group]).is_some(), "{out}");

        let (ok, out) = group_cmd(&b, &["describe", group]);
        assert!(ok, "{out}");
        assert!(
            out.contains("STATE Stable") && out.contains("MEMBERS 1"),
            "{out}"
        );
        let m = out
            .lines()
            .find(|l| l.starts_with("cli-client-"))
            .unwrap_or_else(|| panic!("member line: {out}"));
        let cells: Vec<&str> = m.split_whitespace().collect();
        let member_id = cells[0].to_string();
        assert_eq!(
            &cells[1..],
            &["-", "cli-client", cells[3], "2", "cli-g-t:0,1"],
            "{out}"
        );
        let row0 = line_with(&out, &[group, topic, "0"]).expect("partition 0 row");
        assert_eq!(&row0[3..7], &["7", "10", "3", member_id.as_str()], "{out}");
        let row1 = line_with(&out, &[group, topic, "1"]).expect("partition 1 row");
        assert_eq!(&row1[3..7], &["6", "6", "0", member_id.as_str()], "{out}");
        let (ok, out) = group_cmd(&b, &["describe", group, "--members"]);
        assert!(
            ok && out.contains(&member_id) && !out.contains("CURRENT-OFFSET"),
            "{out}"
        );
        let (ok, out) = group_cmd(&b, &["describe", group, "--state"]);
        assert!(
            ok && out.trim().lines().count() == 1
                && out.contains("TYPE classic  STATE Stable  PROTOCOL-TYPE consumer  ASSIGNMENT-STRATEGY range  MEMBERS 1"),
            "{out}"
        );
        let (ok, out) = group_cmd(&b, &["describe", group, "--offsets"]);
        assert!(
            ok && !out.contains("CLIENT-ID  HOST")
                && line_with(&out, &[group, topic, "1"]).is_some(),
            "{out}"
        );

        // Refused while the member is active.
        let (ok, out) = group_cmd(
            &b,
            &[
                "reset-offsets",
                group,
                "--topic",
                topic,
                "--to-earliest",
                "--execute",
            ],
        );
        assert!(
            !ok && out.contains("inactive") && out.contains("Stable"),
            "{out}"
        );
        let (ok, out) = group_cmd(&b, &["delete", group]);
        assert!(!ok && out.contains("NonEmptyGroup"), "{out}");
        let (ok, out) = group_cmd(&b, &["delete-offsets", group, "--topic", topic]);
        assert!(!ok && out.contains("GroupSubscribedToTopic"), "{out}");
        assert_eq!(committed(&b, group, topic, 2), vec![Some(7), Some(6)]);

        stop.store(true, Ordering::Relaxed);
        member.join().unwrap();
        wait_for(30, "the group to be empty", || {
            group_cmd(&b, &["describe", group])
                .1
                .contains("STATE Empty")
        });
        let (ok, out) = group_cmd(&b, &["describe", group]);
        assert!(ok && out.contains("has no active members"), "{out}");
        let row0 = line_with(&out, &[group, topic, "0"]).expect("partition 0 row");
        assert_eq!(&row0[3..], &["7", "10", "3", "-", "-", "-"], "{out}");

        // A dry run changes nothing.
        let (ok, out) = group_cmd(
            &b,
            &[
                "reset-offsets",
                group,
                "--topic",
                &format!("{topic}:0"),
                "--to-offset",
                "2",
            ],
        );
        assert!(ok && out.contains("Dry run"), "{out}");
        assert_eq!(
            line_with(&out, &[group, topic, "0"]).unwrap()[3..],
            ["7", "2"],
            "{out}"
        );
        assert_eq!(committed(&b, group, topic, 2), vec![Some(7), Some(6)]);
        // Shift below the log start: clamped to 0.
        let (ok, out) = group_cmd(
            &b,
            &[
                "reset-offsets",
                group,
                "--topic",
                topic,
                "--shift-by",
                "-100",
                "--execute",
            ],
        );
        assert!(ok, "{out}");
        assert_eq!(committed(&b, group, topic, 2), vec![Some(0), Some(0)]);
        let (ok, out) = group_cmd(
            &b,
            &[
                "reset-offsets",
                group,
                "--all-topics",
                "--to-latest",
                "--execute",
            ],
        );
        assert!(ok, "{out}");
        assert_eq!(committed(&b, group, topic, 2), vec![Some(10), Some(6)]);
        let (ok, out) = group_cmd(
            &b,
            &[
                "reset-offsets",
                group,
                "--topic",
                &format!("{topic}:1"),
                "--to-offset",
                "4",
                "--execute",
            ],
        );
        assert!(ok, "{out}");
        assert_eq!(committed(&b, group, topic, 2), vec![Some(10), Some(4)]);
        // A time before every record: the log start; an hour ahead (no record that late): the log end.
        let (ok, out) = group_cmd(
            &b,
            &[
                "reset-offsets",
                group,
                "--topic",
                topic,
                "--to-datetime",
                "2000-01-01T00:00:00Z",
                "--execute",
            ],
        );
        assert!(ok, "{out}");
        assert_eq!(committed(&b, group, topic, 2), vec![Some(0), Some(0)]);
        let later = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 3_600_000)
            .to_string();
        let (ok, out) = group_cmd(
            &b,
            &[
                "reset-offsets",
                group,
                "--topic",
                topic,
                "--to-datetime",
                &later,
                "--execute",
            ],
        );
        assert!(ok, "{out}");
        assert_eq!(committed(&b, group, topic, 2), vec![Some(10), Some(6)]);
        let (ok, out) = group_cmd(
            &b,
            &[
                "reset-offsets",
                group,
                "--topic",
                "no-such-topic",
                "--to-earliest",
            ],
        );
        assert!(!ok && out.contains("no-such-topic"), "{out}");

        let (ok, out) = group_cmd(
            &b,
            &["delete-offsets", group, "--topic", &format!("{topic}:1")],
        );
        assert!(
            ok && line_with(&out, &[topic, "1", "Successful"]).is_some(),
            "{out}"
        );
        assert_eq!(committed(&b, group, topic, 2), vec![Some(10), None]);

        // One of two groups cannot be deleted: the other is, and the exit code says something failed.
        let (ok, out) = group_cmd(&b, &["delete", "no-such-group", group]);
        assert!(
            !ok && out.contains("GroupIdNotFound") && out.contains("'cli-g' was successful"),
            "{out}"
        );
        assert_eq!(committed(&b, group, topic, 2), vec![None, None]);
        let (ok, out) = group_cmd(&b, &["list"]);
        assert!(ok && line_with(&out, &[group]).is_none(), "{out}");
        let (ok, out) = group_cmd(&b, &["describe", group]);
        assert!(!ok && out.contains("does not exist"), "{out}");
        let (ok, out) = group_cmd(&b, &["delete", group]);
        assert!(!ok && out.contains("GroupIdNotFound"), "{out}");
    });
}
