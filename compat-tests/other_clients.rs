//! Other real clients: kcat, confluent-kafka-python, kafka-python, aiokafka, kafkajs and the Java client. The scripts
//! live in compat-tests/python and compat-tests/js; `.ci/install-deps` installs the clients.

use std::path::Path;
use std::process::Command;

use crate::common::{bounded, run_java, Broker};

/// Runs `program args... --bootstrap HOST:PORT` against a fresh broker; the client program checks everything
/// itself and exits 0 only if all records came back intact.
fn run_client(program: &str, args: Vec<String>) {
    let program = program.to_string();
    bounded(240, move || {
        let b = Broker::start();
        let out = Command::new(&program)
            .args(&args)
            .args(["--bootstrap", &b.bootstrap()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} (run .ci/install-deps): {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
        println!("{text}");
    });
}

fn run_script(program: &str, script: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compat-tests")
        .join(script);
    run_client(program, vec![script.display().to_string()]);
}

#[test]
fn confluent_kafka_python() {
    run_script("python3", "python/roundtrip_confluent.py");
}

#[test]
fn kafka_python() {
    run_script("python3", "python/roundtrip_kafka_python.py");
}

#[test]
fn aiokafka() {
    run_script("python3", "python/roundtrip_aiokafka.py");
}

#[test]
fn kafkajs() {
    run_script("node", "js/roundtrip_kafkajs.js");
}

#[test]
fn java_kafka_clients() {
    // The official Java client (kafka-clients 4.1.1 from Maven Central), run as a single-file source program.
    bounded(240, || {
        let b = Broker::start();
        println!("{}", run_java("RoundTrip.java", &b, &[]));
    });
}

#[test]
fn kcat_produce_and_consume() {
    bounded(60, || {
        let b = Broker::start();
        let mut child = Command::new("kcat")
            .args([
                "-b",
                &b.bootstrap(),
                "-P",
                "-t",
                "kc",
                "-K",
                ":",
                "-z",
                "snappy",
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("kcat installed");
        let input: String = (0..500)
            .map(|i| format!("k{}:value-{i}\n", i % 7))
            .collect();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        let out = Command::new("kcat")
            .args([
                "-b",
                &b.bootstrap(),
                "-C",
                "-t",
                "kc",
                "-o",
                "beginning",
                "-e",
                "-f",
                "%k:%s\n",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        let mut want: Vec<String> = input.lines().map(String::from).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    });
}
