//! The command line: `vltava topic ...`, configuration layering, bad settings, startup line, SIGTERM.

use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::Consumer;

use crate::common::{binary, bounded, free_port, Broker};
use crate::metadata::consumer;

fn topic_cmd(b: &Broker, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary())
        .args(["topic", "--bootstrap", &b.bootstrap()])
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

#[test]
fn topic_subcommands() {
    bounded(60, || {
        let b = Broker::start();
        let (ok, out) = topic_cmd(
            &b,
            &[
                "create",
                "cli-t",
                "--partitions",
                "2",
                "--config",
                "retention.ms=123456",
            ],
        );
        assert!(ok, "{out}");
        assert!(
            out.contains("created topic cli-t with 2 partition(s)"),
            "{out}"
        );
        let (ok, out) = topic_cmd(&b, &["create", "cli-t"]);
        assert!(!ok && out.contains("TopicAlreadyExists"), "{out}");
        let (ok, out) = topic_cmd(&b, &["list"]);
        assert!(ok && out.lines().any(|l| l == "cli-t"), "{out}");
        let (ok, out) = topic_cmd(&b, &["describe", "cli-t"]);
        assert!(ok, "{out}");
        assert!(out.contains("PartitionCount: 2"), "{out}");
        assert!(out.contains("retention.ms=123456"), "{out}");
        assert!(out.contains("Partition: 1\tLeader: 1"), "{out}");
        let (ok, out) = topic_cmd(
            &b,
            &[
                "alter",
                "cli-t",
                "--partitions",
                "5",
                "--config",
                "segment.ms=100000",
                "--delete-config",
                "retention.ms",
            ],
        );
        assert!(ok, "{out}");
        let (ok, out) = topic_cmd(&b, &["describe", "cli-t"]);
        assert!(
            ok && out.contains("PartitionCount: 5")
                && out.contains("segment.ms=100000")
                && !out.contains("retention.ms"),
            "{out}"
        );
        let (ok, out) = topic_cmd(&b, &["alter", "cli-t", "--partitions", "3"]);
        assert!(
            !ok && out.contains("InvalidPartitions"),
            "partitions only grow: {out}"
        );
        let (ok, out) = topic_cmd(&b, &["delete", "cli-t"]);
        assert!(ok, "{out}");
        let (ok, out) = topic_cmd(&b, &["describe", "cli-t"]);
        assert!(!ok && out.contains("UnknownTopicOrPartition"), "{out}");
    });
}

#[test]
fn config_layers_file_env_flags() {
    bounded(60, || {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.toml");
        let port = free_port();
        std::fs::write(
            &file,
            "num_partitions = 2\nlisten = \"127.0.0.1:1\"\nauto_create_topics_enable = true\n",
        )
        .unwrap();
        let data = dir.path().join("data");
        let mut child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&file)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data)
            .env("VLTAVA_NUM_PARTITIONS", "5")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(
            line.starts_with("vltava ready: listening on 127.0.0.1:"),
            "flag beats file: {line}"
        );
        assert!(
            line.contains(&port.to_string()) && line.contains("ready in"),
            "{line}"
        );
        let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{port}"))
            .set("allow.auto.create.topics", "true")
            .create()
            .unwrap();
        let md = c
            .fetch_metadata(Some("layered"), Duration::from_secs(10))
            .unwrap();
        assert_eq!(md.topics()[0].partitions().len(), 5, "env beats file");
        let _ = child.kill();
        let _ = child.wait();
    });
}

#[test]
fn bad_settings_stop_startup_naming_the_setting() {
    bounded(60, || {
        let dir = tempfile::tempdir().unwrap();
        for (env, value, name) in [
            ("VLTAVA_NUM_PARTITIONS", "0", "num_partitions"),
            ("VLTAVA_MESSAGE_MAX_BYTES", "lots", "message_max_bytes"),
            (
                "VLTAVA_LOG_CLEANUP_POLICY",
                "compacted",
                "log_cleanup_policy",
            ),
            ("VLTAVA_LOG_CLEANER_THREADS", "0", "log_cleaner_threads"),
            (
                "VLTAVA_LOG_CLEANER_MIN_CLEANABLE_RATIO",
                "1.5",
                "log_cleaner_min_cleanable_ratio",
            ),
            ("VLTAVA_LOG_SEGMENT_BYTES", "262144", "log_segment_bytes"),
            ("VLTAVA_NO_SUCH_SETTING", "1", "no_such_setting"),
        ] {
            let out = Command::new(binary())
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path())
                .env(env, value)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{env}={value} must stop startup");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(name),
                "{env}={value}: message names the setting: {err}"
            );
        }
        let out = Command::new(binary())
            .args(["serve", "--listen", "nonsense"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));
    });
}

#[test]
fn sigterm_exits_zero_after_clean_close() {
    bounded(60, || {
        let mut b = Broker::start();
        let c = consumer(&b);
        c.fetch_metadata(Some("shut"), Duration::from_secs(10))
            .unwrap();
        assert_eq!(b.sigterm(), Some(0));
        assert!(
            b.partition_dir("shut", 0)
                .join(".vltava_cleanshutdown")
                .exists(),
            "clean-shutdown marker written"
        );
    });
}
