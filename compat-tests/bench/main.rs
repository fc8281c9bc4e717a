//! Vltava benchmark: run with `cargo bench --bench broker`.
//!
//! Measures in one run, against the real release binary on loopback:
//! - this machine's limits: raw loopback TCP throughput and sequential disk write throughput (fsync at the end);
//! - produce throughput, 1 KiB records, acks=1 and acks=all, linger 5 ms, 1 and 8 partitions (rdkafka);
//! - the same with idempotence off and on (acks=all, 1 and 8 partitions; goal: on costs under 10 %), and
//!   with a transactional producer committing every 100 records;
//! - produce throughput with each codec (gzip, snappy, lz4, zstd) against uncompressed, 1 KiB records of
//!   compressible JSON-like text, acks=1, 1 partition: the broker decompresses and checks every record of every
//!   compressed batch, and this shows what that costs (goal: lz4 and zstd at least 0.7 of uncompressed rec/s);
//! - consume throughput of data already on disk (rdkafka consumer from the beginning, and a raw Fetch client that
//!   only walks batch headers, to separate the broker's serving rate from client-side record decoding);
//! - produce-to-consume latency p50/p99 at a fixed 10 MB/s;
//! - time from process start to ready, and idle and loaded RSS;
//! - consumer groups (`groups.rs`), classic and KIP-848 consumer protocol: a subscribed consumer's throughput
//!   next to the assign() consumer's, failover time after a member's SIGKILL, rebalance time of 10 members on
//!   100 partitions, commit rates.
//!
//! Every throughput is also printed as a fraction of the smaller machine limit. Figures, not assertions: the
//! goals (see README) are judged by reading them.
// Benchmark code: figures and counts are small; it reads /proc and sets nothing unsafe beyond that.
#![allow(clippy::cast_possible_truncation, unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

mod groups;

const MB: f64 = 1_000_000.0;
const RECORD: usize = 1024;

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let volume: usize = if quick { 50_000 } else { 300_000 };
    // BENCH_ONLY=groups runs the consumer group figures alone.
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "groups") {
        group_figures(quick, volume);
        return;
    }
    println!(
        "# Vltava benchmark ({} records of {RECORD} B per produce run)",
        volume
    );

    let tcp = loopback_tcp_mb_s();
    let disk = disk_write_mb_s();
    let limit = tcp.min(disk);
    println!("machine: loopback TCP {tcp:.0} MB/s, sequential disk write {disk:.0} MB/s -> limit {limit:.0} MB/s");

    let dir = tempfile::tempdir().expect("tempdir");
    let (mut broker, ready_ms, port) = start_broker(dir.path(), &[]);
    let bootstrap = format!("127.0.0.1:{port}");
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss = rss_kb(broker.id());
    println!(
        "startup: process start to ready {ready_ms:.1} ms; idle RSS {:.1} MB",
        idle_rss as f64 / 1024.0
    );

    let mut peak_rss = idle_rss;
    let filler = vec![vec![b'v'; RECORD]];
    // BENCH_ONLY=idempotence (or the older BENCH_ONLY_IDEMPOTENCE=1) runs the idempotence and transaction
    // figures alone.
    let only_idempotence = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "idempotence")
        || std::env::var("BENCH_ONLY_IDEMPOTENCE").is_ok();
    let plain_runs: &[(&str, i32)] = if only_idempotence {
        &[]
    } else {
        &[("1", 1), ("all", 1), ("1", 8), ("all", 8)]
    };
    for &(acks, partitions) in plain_runs {
        let topic = format!("bench-{acks}-{partitions}");
        create_topic(&bootstrap, &topic, partitions);
        let run = Run {
            acks,
            compression: "none",
            payloads: &filler,
            idempotence: false,
            max_in_flight: None,
            warm_up: false,
        };
        let (mb_s, rec_s) = produce(&bootstrap, &topic, &run, volume, &mut peak_rss, broker.id());
        println!(
            "produce acks={acks:<3} partitions={partitions}: {mb_s:7.1} MB/s {rec_s:9.0} rec/s  ({:.2} of limit)",
            mb_s / limit
        );
    }
    // Idempotence off and on, otherwise the same settings (acks=all, which idempotence needs); two rounds each,
    // alternating, best of each, so drift in the machine's speed hits both alike; each producer warms up first (see
    // `Run::warm_up`), so this compares steady states. librdkafka caps an idempotent
    // producer at 5 requests in flight per connection, so "off" also runs with that cap, to tell the cost of
    // the cap (client side) from the cost of the broker's sequence checks. Last, a transactional producer
    // committing every 100 records (its idempotence is on), in the same rounds.
    let modes: [(&str, bool, Option<&str>); 4] = [
        ("off", false, None),
        ("off, 5 in flight", false, Some("5")),
        ("on", true, None),
        ("txn, 100 per txn", true, None),
    ];
    const TXN_MODE: usize = 3;
    for partitions in [1, 8] {
        let mut best = [0.0f64; 4];
        let mut cpu_us = [f64::MAX; 4];
        for round in 0..2 {
            for (k, (_, idempotence, max_in_flight)) in modes.iter().enumerate() {
                let topic = format!("bench-idem-{k}-{partitions}-{round}");
                create_topic(&bootstrap, &topic, partitions);
                let run = Run {
                    acks: "all",
                    compression: "none",
                    payloads: &filler,
                    idempotence: *idempotence,
                    max_in_flight: *max_in_flight,
                    warm_up: true,
                };
                let cpu0 = cpu_secs(broker.id());
                let rec_s = if k == TXN_MODE {
                    produce_transactional(&bootstrap, &topic, &run, volume, 100)
                } else {
                    produce(&bootstrap, &topic, &run, volume, &mut peak_rss, broker.id()).1
                };
                best[k] = best[k].max(rec_s);
                cpu_us[k] = cpu_us[k].min((cpu_secs(broker.id()) - cpu0) * 1e6 / volume as f64);
            }
        }
        for (k, (name, _, _)) in modes.iter().enumerate() {
            println!(
                "produce acks=all partitions={partitions} idempotence {name:<16}: {:9.0} rec/s ({:.2} of off, {:.2} of off with 5 in flight; broker CPU {:.2} us per record)",
                best[k],
                best[k] / best[0],
                best[k] / best[1],
                cpu_us[k]
            );
        }
    }
    if only_idempotence {
        let _ = broker.kill();
        let _ = broker.wait();
        return;
    }
    // Compressed produce. rdkafka measures client and broker together (librdkafka compresses on the same two
    // cores, and turns lz4 off against a broker without FindCoordinator, so its lz4 run sends uncompressed
    // batches); the raw client sends pre-compressed batches, so it measures the broker's cost alone:
    // decompressing and checking every record.
    let json = json_records(4096);
    let mut uncompressed_rec_s = 0.0;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("bench-codec-{codec}");
        create_topic(&bootstrap, &topic, 1);
        let run = Run {
            acks: "1",
            compression: codec,
            payloads: &json,
            idempotence: false,
            max_in_flight: None,
            warm_up: false,
        };
        let cpu0 = cpu_secs(broker.id());
        let (mb_s, rec_s) = produce(&bootstrap, &topic, &run, volume, &mut peak_rss, broker.id());
        let cpu = cpu_secs(broker.id()) - cpu0;
        if codec == "none" {
            uncompressed_rec_s = rec_s;
        }
        println!(
            "produce JSON-like records, rdkafka compression={codec:<6} acks=1 partitions=1: {mb_s:7.1} MB/s \
             {rec_s:9.0} rec/s  ({:.2} of uncompressed rec/s; {:.1} MB on disk; broker CPU {cpu:.2} s)",
            rec_s / uncompressed_rec_s,
            dir_mb(&dir.path().join(format!("{topic}-0")))
        );
    }
    // The raw client is cheap, so it sends 4x the records for a run long enough to time.
    let raw_volume = volume * 4;
    let mut uncompressed_rec_s = 0.0;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("bench-raw-{codec}");
        create_topic(&bootstrap, &topic, 1);
        let cpu0 = cpu_secs(broker.id());
        let rec_s = raw_produce(&bootstrap, &topic, codec, &json, raw_volume);
        let cpu = cpu_secs(broker.id()) - cpu0;
        peak_rss = peak_rss.max(rss_kb(broker.id()));
        if codec == "none" {
            uncompressed_rec_s = rec_s;
        }
        println!(
            "produce pre-compressed JSON-like batches, raw client, compression={codec:<6}: {:7.1} MB/s {rec_s:9.0} rec/s  \
             ({:.2} of uncompressed rec/s; broker CPU {cpu:.2} s, {:.1} us per record)",
            rec_s * RECORD as f64 / MB,
            rec_s / uncompressed_rec_s,
            cpu * 1e6 / raw_volume as f64
        );
    }
    let (mb_s, rec_s) = consume(
        &bootstrap,
        "bench-1-8",
        8,
        volume,
        &mut peak_rss,
        broker.id(),
    );
    println!(
        "consume from disk, 8 partitions: {mb_s:7.1} MB/s {rec_s:9.0} rec/s  ({:.2} of limit)",
        mb_s / limit
    );
    let (mb_s, batches) = raw_fetch(&bootstrap, "bench-1-8", 8, &mut peak_rss, broker.id());
    println!(
        "fetch from disk, raw protocol client (whole batches, no record decoding), 8 partitions: {mb_s:7.1} MB/s \
         ({batches} batches, {:.2} of limit)",
        mb_s / limit
    );
    let (p50, p99, max) = latency(&bootstrap, if quick { 5 } else { 15 });
    println!("end-to-end latency at 10 MB/s (acks=1, linger 0): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");
    println!(
        "memory: idle RSS {:.1} MB, loaded peak RSS {:.1} MB",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    let _ = broker.kill();
    let _ = broker.wait();
    group_figures(quick, volume);
}

/// The consumer group figures, on brokers of their own (no initial rebalance delay, 1 s minimum session
/// timeouts, the consumer protocol's session timeout and heartbeat interval set to what the classic members
/// use: see `groups::broker_env`): one with 10 s sessions (throughput, rebalance, commits), one with 2 s
/// (failover, and the rebalance again, to show what the heartbeat interval does to it).
fn group_figures(quick: bool, volume: usize) {
    const SLOW: u32 = 10_000;
    const FAST: u32 = 2_000;
    let start = |dir: &std::path::Path, session_ms: u32| {
        let env = groups::broker_env(session_ms);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (broker, _, port) = start_broker(dir, &env);
        (broker, format!("127.0.0.1:{port}"))
    };
    let (dir_slow, dir_fast) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (mut broker, bootstrap) = start(dir_slow.path(), SLOW);
    let (mut fast_broker, fast_bootstrap) = start(dir_fast.path(), FAST);
    std::thread::sleep(Duration::from_millis(300));
    // Subscribed consumers next to assign() consumers on the same data (page cache warm for all: the assign()
    // consumer runs before and after them).
    let mut peak = 0;
    create_topic(&bootstrap, "bench-group-8", 8);
    let filler = vec![vec![b'v'; RECORD]];
    let run = Run {
        acks: "1",
        compression: "none",
        payloads: &filler,
        idempotence: false,
        max_in_flight: None,
        warm_up: false,
    };
    produce(
        &bootstrap,
        "bench-group-8",
        &run,
        volume,
        &mut peak,
        broker.id(),
    );
    let (a1, _) = consume(
        &bootstrap,
        "bench-group-8",
        8,
        volume,
        &mut peak,
        broker.id(),
    );
    let subscribed: Vec<String> = groups::Protocol::ALL
        .iter()
        .map(|&p| {
            let (total, reading, join) =
                groups::subscribed_consume(&bootstrap, "bench-group-8", volume, p);
            format!(
                "subscribed ({} protocol) consumer {total:.1} MB/s from subscribe ({:.0} ms of it to join and get \
                 the first record; {reading:.1} MB/s from the first record)",
                p.name(),
                join.as_secs_f64() * 1000.0
            )
        })
        .collect();
    let (a2, _) = consume(
        &bootstrap,
        "bench-group-8",
        8,
        volume,
        &mut peak,
        broker.id(),
    );
    println!(
        "consume {volume} records from 8 partitions (page cache warm): {}; assign() consumer, from assign(), \
         {a1:.1} MB/s before them and {a2:.1} MB/s after them",
        subscribed.join("; ")
    );
    let secs = if quick { 2.0 } else { 5.0 };
    for &p in groups::Protocol::ALL {
        let runs = groups::failover(&fast_bootstrap, p, FAST, if quick { 3 } else { 5 });
        let ms: Vec<String> = runs
            .iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
            .collect();
        let mut sorted = runs.clone();
        sorted.sort();
        println!(
            "group failover ({}): SIGKILLed member's partition consumed by another member after {:.0} ms median \
             (runs: {} ms), {}",
            p.name(),
            sorted[sorted.len() / 2].as_secs_f64() * 1000.0,
            ms.join(", "),
            session_settings(p, FAST)
        );
        for (b, session_ms) in [(&bootstrap, SLOW), (&fast_bootstrap, FAST)] {
            let runs: Vec<String> = (0..3)
                .map(|run| {
                    let took = groups::rebalance(b, p, session_ms, 10, 100, run);
                    format!("{:.0}", took.as_secs_f64() * 1000.0)
                })
                .collect();
            println!(
                "group rebalance ({}): 10 members subscribing at once to 100 partitions, stable assignment after {} \
                 ms (initial rebalance delay 0, {})",
                p.name(),
                runs.join(", "),
                session_settings(p, session_ms)
            );
        }
        let (single, batched) = groups::commits(&bootstrap, p, 8, secs);
        println!(
            "offset commits ({}): {single:.0} sync commits/s (1 partition each, rdkafka); {batched:.0} partitions/s \
             in sync commits of 8",
            p.name()
        );
    }
    let raw = groups::raw_commits(&bootstrap, "bench-commit-classic", secs);
    println!("offset commits: raw client, 32 pipelined OffsetCommits (no group member): {raw:.0} commits/s");
    for b in [&mut broker, &mut fast_broker] {
        let _ = b.kill();
        let _ = b.wait();
    }
}

/// Who sets a figure's session timeout and heartbeat interval, and to what.
fn session_settings(p: groups::Protocol, session_ms: u32) -> String {
    let heartbeat = groups::heartbeat_ms(session_ms);
    match p {
        groups::Protocol::Classic => {
            format!("client's session.timeout.ms={session_ms}, heartbeat.interval.ms={heartbeat}")
        }
        groups::Protocol::Consumer => format!(
            "broker's group_consumer_session_timeout_ms={session_ms}, \
             group_consumer_heartbeat_interval_ms={heartbeat}"
        ),
    }
}

/// The broker under test: `BROKER_BIN` if set, else the one cargo built. Worktrees sharing a target directory
/// overwrite each other's `target/release/vltava`; `BROKER_BIN` pins a copy. (Not `VLTAVA_*`: the broker
/// reads those as its settings.)
fn broker_binary() -> String {
    std::env::var("BROKER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_vltava").to_string())
}

fn start_broker(dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, f64, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t0 = Instant::now();
    let mut child = Command::new(broker_binary())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn broker");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("vltava ready"),
        "broker did not start (see its stderr above)"
    );
    let outside = t0.elapsed().as_secs_f64() * 1000.0;
    // The broker reports its own process-start-to-ready time; the outside view includes fork/exec.
    let inside: f64 = line
        .split("ready in ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(outside);
    println!("startup: {}", line.trim());
    println!("startup: spawn to ready line, seen from outside: {outside:.1} ms");
    (child, inside, port)
}

/// User + system CPU seconds a process has used (from `/proc/<pid>/stat`, 100 ticks per second).
fn cpu_secs(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

/// Sends `n` records as pre-built batches of 200 (compressed with `codec` by kafka-protocol, as the Java client
/// would: snappy in xerial framing) over one connection with 8 Produce requests in flight; returns records/s.
fn raw_produce(bootstrap: &str, topic: &str, codec: &str, payloads: &[Vec<u8>], n: usize) -> f64 {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::{
        produce_request, ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
        TopicName,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    const PER_BATCH: usize = 200;
    const IN_FLIGHT: usize = 8;
    let compression = match codec {
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => Compression::None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // 16 distinct batches, sent in turn.
    let frames: Vec<Vec<u8>> = (0..16)
        .map(|b| {
            let records: Vec<Record> = (0..PER_BATCH)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    sequence: i as i32 - 1,
                    timestamp: now,
                    key: Some(Bytes::from((i % 1000).to_string())),
                    value: Some(Bytes::copy_from_slice(
                        &payloads[(b * PER_BATCH + i) % payloads.len()],
                    )),
                    headers: Default::default(),
                    delete_horizon: false,
                })
                .collect();
            let mut batch = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut batch,
                &records,
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )
            .unwrap();
            let mut pd = produce_request::PartitionProduceData::default();
            pd.records = Some(batch.freeze());
            let mut td = produce_request::TopicProduceData::default();
            td.name = TopicName(StrBytes::from_string(topic.to_string()));
            td.partition_data.push(pd);
            let mut req = ProduceRequest::default();
            req.acks = 1;
            req.timeout_ms = 30_000;
            req.topic_data.push(td);
            let mut body = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(ApiKey::Produce as i16)
                .with_request_api_version(9)
                .with_correlation_id(b as i32)
                .encode(&mut body, 2)
                .unwrap();
            req.encode(&mut body, 9).unwrap();
            let mut frame = (body.len() as i32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            frame
        })
        .collect();
    let mut s = TcpStream::connect(bootstrap).unwrap();
    s.set_nodelay(true).unwrap();
    let requests = n / PER_BATCH;
    let read_response = |s: &mut TcpStream| {
        let mut size = [0u8; 4];
        s.read_exact(&mut size).unwrap();
        let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
        s.read_exact(&mut buf).unwrap();
        let mut buf = Bytes::from(buf);
        ResponseHeader::decode(&mut buf, 1).unwrap();
        let r = ProduceResponse::decode(&mut buf, 9).unwrap();
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "{codec}: {:?}", p.error_message);
    };
    let t0 = Instant::now();
    let (mut sent, mut answered) = (0, 0);
    while answered < requests {
        while sent < requests && sent - answered < IN_FLIGHT {
            s.write_all(&frames[sent % frames.len()]).unwrap();
            sent += 1;
        }
        read_response(&mut s);
        answered += 1;
    }
    (requests * PER_BATCH) as f64 / t0.elapsed().as_secs_f64()
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn loopback_tcp_mb_s() -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let total: usize = 2_000_000_000;
    let reader = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        while n < total {
            let r = s.read(&mut buf).unwrap();
            if r == 0 {
                break;
            }
            n += r;
        }
    });
    let mut s = TcpStream::connect(addr).unwrap();
    let buf = vec![7u8; 1 << 20];
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < total {
        s.write_all(&buf).unwrap();
        sent += buf.len();
    }
    drop(s);
    reader.join().unwrap();
    sent as f64 / MB / t0.elapsed().as_secs_f64()
}

fn disk_write_mb_s() -> f64 {
    let dir = tempfile::tempdir_in(".").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let path = dir.path().join("disk-test");
    let mut f = std::fs::File::create(&path).unwrap();
    let buf = vec![42u8; 1 << 20];
    let total = 1024usize; // MiB
    let t0 = Instant::now();
    for _ in 0..total {
        f.write_all(&buf).unwrap();
    }
    f.sync_all().unwrap();
    (total * (1 << 20)) as f64 / MB / t0.elapsed().as_secs_f64()
}

fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let out = Command::new(broker_binary())
        .args([
            "topic",
            "-b",
            bootstrap,
            "create",
            topic,
            "-p",
            &partitions.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Clone, Default)]
struct Count(Arc<AtomicU64>, Arc<AtomicU64>);
impl ClientContext for Count {}
impl ProducerContext for Count {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.0.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.1.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// One produce run's settings: acks, librdkafka `compression.type`, and the record values sent in turn.
struct Run<'a> {
    acks: &'a str,
    compression: &'a str,
    payloads: &'a [Vec<u8>],
    /// librdkafka `enable.idempotence`.
    idempotence: bool,
    /// librdkafka `max.in.flight.requests.per.connection` (default: librdkafka's, 1000000; idempotence caps it at 5).
    max_in_flight: Option<&'a str>,
    /// Send and flush one record before the clock starts, so the figure leaves out the client's start-up
    /// (connecting, metadata and, for an idempotent producer, InitProducerId, which librdkafka retries on a
    /// 500 ms timer when no connection is up yet: a fixed cost that dominates a sub-second quick run).
    warm_up: bool,
}

/// `n` distinct 1 KiB JSON-like event records: varying ids, numbers and words from a small vocabulary, so they
/// compress like real application data (about 3-5x), not like a run of one byte.
fn json_records(n: usize) -> Vec<Vec<u8>> {
    const WORDS: [&str; 24] = [
        "order", "created", "shipped", "cart", "checkout", "payment", "accepted", "declined",
        "user", "guest", "mobile", "desktop", "berlin", "prague", "vienna", "express", "standard",
        "coupon", "refund", "review", "stars", "session", "search", "banner",
    ];
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..n)
        .map(|i| {
            let mut s = format!(
                "{{\"event_id\":\"{:016x}\",\"ts\":{},\"user\":\"user-{}\",\"type\":\"{}\",\"amount\":{}.{:02},\
                 \"path\":\"/shop/{}/{}?page={}\",\"tags\":[\"{}\",\"{}\"],\"note\":\"",
                next(),
                1_700_000_000_000u64 + i as u64 * 37,
                next() % 50_000,
                WORDS[(next() % 24) as usize],
                next() % 1000,
                next() % 100,
                WORDS[(next() % 24) as usize],
                next() % 10_000,
                next() % 20,
                WORDS[(next() % 24) as usize],
                WORDS[(next() % 24) as usize],
            );
            while s.len() < RECORD - 2 {
                s.push_str(WORDS[(next() % 24) as usize]);
                s.push(' ');
            }
            s.truncate(RECORD - 2);
            s.push_str("\"}");
            s.into_bytes()
        })
        .collect()
}

/// Size of a directory's files in MB.
fn dir_mb(dir: &std::path::Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .unwrap_or(0) as f64
        / MB
}

fn produce(
    bootstrap: &str,
    topic: &str,
    run: &Run<'_>,
    n: usize,
    peak: &mut u64,
    pid: u32,
) -> (f64, f64) {
    let count = Count::default();
    let mut cfg = ClientConfig::new();
    if let Some(n) = run.max_in_flight {
        cfg.set("max.in.flight.requests.per.connection", n);
    }
    let p: ThreadedProducer<Count> = cfg
        .set("bootstrap.servers", bootstrap)
        .set("acks", run.acks)
        .set("compression.type", run.compression)
        .set(
            "enable.idempotence",
            if run.idempotence { "true" } else { "false" },
        )
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(count.clone())
        .unwrap();
    if run.warm_up {
        p.send(
            BaseRecord::to(topic)
                .key("warm-up")
                .payload(&run.payloads[0]),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        p.flush(Duration::from_secs(30)).unwrap();
        count.0.fetch_sub(1, Ordering::Relaxed);
    }
    let t0 = Instant::now();
    for i in 0..n {
        let key = (i % 1000).to_string();
        let payload = &run.payloads[i % run.payloads.len()];
        loop {
            match p.send(BaseRecord::to(topic).key(&key).payload(payload)) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        if i.is_multiple_of(50_000) {
            *peak = (*peak).max(rss_kb(pid));
        }
    }
    p.flush(Duration::from_secs(120)).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    *peak = (*peak).max(rss_kb(pid));
    assert_eq!(count.1.load(Ordering::Relaxed), 0, "delivery errors");
    assert_eq!(count.0.load(Ordering::Relaxed) as usize, n);
    ((n * RECORD) as f64 / MB / secs, n as f64 / secs)
}

/// Produces `n` records with an rdkafka transactional producer, `per_txn` records per transaction
/// (begin, send, commit: the records are delivered, then EndTxn and the markers); returns rec/s. Keys spread
/// the records over every partition, so each transaction adds all of them.
///
/// rust-rdkafka's `commit_transaction` first calls its `flush`, which polls in steps of 100 ms that run to
/// their end whatever arrives (rdkafka 0.39 `BaseProducer::poll`), so every commit with a record still in
/// flight took 100 ms: 10 transactions a second, a client artefact. So this polls the delivery reports itself
/// until nothing is in flight, then commits (its flush then returns at once). And linger.ms is 0: a commit
/// sends what is queued at once in librdkafka's own flush and the Java client's, not after a linger.
fn produce_transactional(
    bootstrap: &str,
    topic: &str,
    run: &Run<'_>,
    n: usize,
    per_txn: usize,
) -> f64 {
    let count = Count::default();
    let p: BaseProducer<Count> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", format!("bench-{topic}"))
        .set("acks", run.acks)
        .set("compression.type", run.compression)
        .set("linger.ms", "0")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(count.clone())
        .unwrap();
    let t = Duration::from_secs(30);
    p.init_transactions(t).unwrap();
    let send_all = |from: usize, to: usize| {
        p.begin_transaction().unwrap();
        for i in from..to {
            let key = (i % 1000).to_string();
            let payload = &run.payloads[i % run.payloads.len()];
            while p
                .send(BaseRecord::to(topic).key(&key).payload(payload))
                .is_err()
            {
                p.poll(Duration::from_millis(1));
            }
        }
        // Delivery reports first (see above): poll without waiting, nap 0.1 ms, until nothing is in flight.
        loop {
            p.poll(Duration::ZERO);
            if p.in_flight_count() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        p.commit_transaction(t).unwrap();
    };
    if run.warm_up {
        send_all(0, 1);
        count.0.fetch_sub(1, Ordering::Relaxed);
    }
    let t0 = Instant::now();
    for from in (0..n).step_by(per_txn) {
        send_all(from, (from + per_txn).min(n));
    }
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(count.1.load(Ordering::Relaxed), 0, "delivery errors");
    assert_eq!(count.0.load(Ordering::Relaxed) as usize, n);
    n as f64 / secs
}

fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    peak: &mut u64,
    pid: u32,
) -> (f64, f64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let t0 = Instant::now();
    let mut got = 0usize;
    let mut bytes = 0usize;
    while got < n {
        if let Some(m) = c.poll(Duration::from_secs(5)) {
            let m = m.unwrap();
            bytes += m.payload().map(|p| p.len()).unwrap_or(0);
            got += 1;
            if got.is_multiple_of(50_000) {
                *peak = (*peak).max(rss_kb(pid));
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "consume stalled at {got}"
        );
    }
    let secs = t0.elapsed().as_secs_f64();
    (bytes as f64 / MB / secs, got as f64 / secs)
}

/// Reads a whole topic with plain Fetch requests, walking batch headers only: the broker's serving rate without
/// the client-side cost of decoding every record.
fn raw_fetch(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    peak: &mut u64,
    pid: u32,
) -> (f64, usize) {
    use bytes::{Buf, BufMut, BytesMut};
    use kafka_protocol::messages::{
        fetch_request, ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
        TopicName,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    let mut s = TcpStream::connect(bootstrap).unwrap();
    s.set_nodelay(true).unwrap();
    let mut offsets = vec![0i64; partitions as usize];
    let mut total = 0usize;
    let mut batches = 0usize;
    let t0 = Instant::now();
    loop {
        let mut req = FetchRequest::default();
        req.max_bytes = 52_428_800;
        req.max_wait_ms = 0;
        let mut ft = fetch_request::FetchTopic::default();
        ft.topic = TopicName(StrBytes::from_string(topic.to_string()));
        for (p, off) in offsets.iter().enumerate() {
            let mut fp = fetch_request::FetchPartition::default();
            fp.partition = p as i32;
            fp.fetch_offset = *off;
            fp.partition_max_bytes = 10_485_760;
            ft.partitions.push(fp);
        }
        req.topics.push(ft);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(12)
            .with_correlation_id(1);
        let mut body = BytesMut::new();
        header.encode(&mut body, 2).unwrap();
        req.encode(&mut body, 12).unwrap();
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        s.write_all(&frame).unwrap();
        let mut size = [0u8; 4];
        s.read_exact(&mut size).unwrap();
        let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
        s.read_exact(&mut buf).unwrap();
        let mut buf = bytes::Bytes::from(buf);
        ResponseHeader::decode(&mut buf, 1).unwrap();
        let resp = FetchResponse::decode(&mut buf, 12).unwrap();
        let mut got = 0usize;
        for p in &resp.responses[0].partitions {
            let mut recs = p.records.clone().unwrap_or_default();
            got += recs.len();
            while recs.remaining() >= 61 {
                let base = i64::from_be_bytes(recs[..8].try_into().unwrap());
                let len = i32::from_be_bytes(recs[8..12].try_into().unwrap()) as usize + 12;
                let last_delta = i32::from_be_bytes(recs[23..27].try_into().unwrap()) as i64;
                if len > recs.remaining() {
                    break;
                }
                offsets[p.partition_index as usize] = base + last_delta + 1;
                batches += 1;
                recs.advance(len);
            }
        }
        *peak = (*peak).max(rss_kb(pid));
        if got == 0 {
            break;
        }
        total += got;
    }
    (total as f64 / MB / t0.elapsed().as_secs_f64(), batches)
}

/// Produces 1 KiB records at 10 MB/s (paced), each carrying its send time; a consumer records arrival times.
fn latency(bootstrap: &str, secs: u64) -> (f64, f64, f64) {
    create_topic(bootstrap, "bench-latency", 1);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.min.bytes", "1")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("bench-latency", 0, Offset::End)
        .unwrap();
    c.assign(&tpl).unwrap();
    let _ = c.poll(Duration::from_millis(500));
    let base = Instant::now();
    let bootstrap = bootstrap.to_string();
    let rate = 10_000_000 / RECORD; // records per second
    let total = rate * secs as usize;
    let producer = std::thread::spawn(move || {
        let p: ThreadedProducer<Count> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", "1")
            .set("linger.ms", "0")
            .create_with_context(Count::default())
            .unwrap();
        let mut payload = vec![b'l'; RECORD];
        for i in 0..total {
            // Pace in 1 ms steps.
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            let now = base.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
            let sent = base.elapsed().as_nanos() as u64;
            payload[..8].copy_from_slice(&sent.to_be_bytes());
            while p
                .send(BaseRecord::<(), _>::to("bench-latency").payload(&payload))
                .is_err()
            {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        p.flush(Duration::from_secs(30)).unwrap();
    });
    let mut lat = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(secs + 30);
    while lat.len() < total && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let now = base.elapsed().as_nanos() as u64;
            let p = m.payload().unwrap();
            let sent = u64::from_be_bytes(p[..8].try_into().unwrap());
            lat.push((now - sent) as f64 / 1e6);
        }
    }
    producer.join().unwrap();
    assert_eq!(lat.len(), total, "latency run lost records");
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    (pct(0.50), pct(0.99), *lat.last().unwrap())
}
