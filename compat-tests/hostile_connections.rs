//! Hostile and careless clients on the connection side: each costs the broker memory, descriptors and CPU in
//! proportion to what it sends, and nothing once it is gone. Measured from outside: the broker's RSS, its open
//! descriptors and its CPU time, read from /proc. Bounds are generous but finite.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use crate::common::{bounded, build_produce, create_topic_raw, encode_batch, Broker, Raw};

const MB: u64 = 1 << 20;

fn produce(raw: &mut Raw, topic: &str, records: Bytes) {
    let req = build_produce(topic, 1, &[(0, records)]);
    let r: ProduceResponse = raw.call(ApiKey::Produce, 9, &req);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

/// A Fetch v12 request frame body for partition 0 of `topic`.
fn fetch_body(raw: &mut Raw, topic: &str, offset: i64, min_bytes: i32, wait_ms: i32) -> BytesMut {
    let mut f = FetchRequest::default();
    f.max_bytes = 50 << 20;
    f.min_bytes = min_bytes;
    f.max_wait_ms = wait_ms;
    let mut ft = fetch_request::FetchTopic::default();
    ft.topic = TopicName(StrBytes::from_string(topic.to_string()));
    let mut fp = fetch_request::FetchPartition::default();
    fp.fetch_offset = offset;
    fp.partition_max_bytes = 1 << 20;
    ft.partitions.push(fp);
    f.topics.push(ft);
    raw.encode_request(ApiKey::Fetch, 12, &f)
}

/// True if the broker closes `s` (EOF or reset) within `within`; false if it is still open then.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // a response; keep waiting for the close
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// True if nothing arrives on `s` for `wait` (the request is parked).
fn silent_for(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// A new connection that the broker accepts and answers, trying until `within` has passed.
fn connect_served(b: &Broker, within: Duration) -> Option<Raw> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(s) = TcpStream::connect(b.bootstrap()) {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut raw = Raw::from_stream(s);
            raw.stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let body = raw.encode_request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
            raw.send_frame(&body);
            if raw.read_frame().is_some() {
                raw.stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                return Some(raw);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Waits (bounded) until the broker holds at most `n` descriptors; returns the last count seen.
fn fds_settle_to(b: &Broker, n: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let now = b.fd_count();
        if now <= n || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bullet 1: a client that goes away takes its work with it at once, long-polls included, whether or not the
/// broker was reading from it. Observable: with `max_connections_per_ip` slots held by parked 30 s long-polls,
/// a new connection is served right after their clients close, and the broker's descriptors are back.
#[test]
fn hostile_zombie_long_polls_end_with_their_connection() {
    bounded(60, || {
        let b = Broker::start_with(&[
            ("MAX_CONNECTIONS_PER_IP", "4"),
            ("QUEUED_MAX_REQUESTS", "2"),
        ]);
        let mut admin = Raw::connect(&b);
        create_topic_raw(&mut admin, "t", 1);
        // The partition's files are open now; the admin connection is one descriptor more than at rest.
        let base_fds = b.fd_count() - 1;
        drop(admin);

        // Four long-polls (30 s, nothing to read) fill this address's slots.
        let mut zombies = Vec::new();
        for _ in 0..4 {
            let mut raw = connect_served(&b, Duration::from_secs(5)).expect("slot free");
            let body = fetch_body(&mut raw, "t", 0, 1, 30_000);
            raw.send_frame(&body);
            zombies.push(raw);
        }
        for z in &mut zombies {
            assert!(
                silent_for(&mut z.stream, Duration::from_millis(200)),
                "long-poll parked"
            );
        }
        // A fifth connection from the same address is closed right after accept.
        let mut fifth = TcpStream::connect(b.bootstrap()).unwrap();
        assert!(
            closed_within(&mut fifth, Duration::from_secs(5)),
            "over max_connections_per_ip"
        );

        drop(zombies);
        let t = Instant::now();
        let mut raw = connect_served(&b, Duration::from_secs(3))
            .expect("the closed clients' long-polls must not hold their slots for 30 s");
        eprintln!(
            "slot free {:?} after the long-polls' clients closed",
            t.elapsed()
        );
        let fds = fds_settle_to(&b, base_fds + 1, Duration::from_secs(2));
        assert!(
            fds <= base_fds + 1,
            "broker descriptors {fds}, at start {base_fds}"
        );

        // Not being read: with queued_max_requests = 2, five pipelined long-polls stop the broker reading each
        // of these connections; their close must still be noticed at once.
        let body = fetch_body(&mut raw, "t", 0, 1, 30_000);
        let mut blocked = vec![raw];
        for _ in 0..3 {
            blocked.push(connect_served(&b, Duration::from_secs(3)).expect("slot free"));
        }
        for raw in &mut blocked {
            let pipelined: Vec<u8> = (0..5)
                .flat_map(|_| [&(body.len() as i32).to_be_bytes()[..], &body].concat())
                .collect();
            raw.stream.write_all(&pipelined).unwrap();
            assert!(
                silent_for(&mut raw.stream, Duration::from_millis(200)),
                "parked"
            );
        }
        drop(blocked);
        let t = Instant::now();
        let _raw = connect_served(&b, Duration::from_secs(3))
            .expect("a client that closed while not being read must not hold its slot");
        eprintln!(
            "slot free {:?} after the unread clients closed",
            t.elapsed()
        );
        let fds = fds_settle_to(&b, base_fds + 1, Duration::from_secs(2));
        assert!(
            fds <= base_fds + 1,
            "broker descriptors {fds}, at start {base_fds}"
        );
        let rss = b.rss_bytes();
        eprintln!("broker RSS {} KiB", rss / 1024);
        assert!(rss < 100 * MB, "RSS {rss}");
    });
}

/// Bullet 2: idle long-polls cost O(1) per append, not a re-read of their partitions. 100 fetches wait at
/// offset 0 for more bytes than the appends bring; without position-based wake-ups each append makes each of
/// them re-read the log so far (index lookup and header scan). Appends are spaced 2 ms apart, as a steady
/// producer's would be, so that those re-reads cannot merge into one per burst.
#[test]
fn hostile_idle_long_polls_cost_nothing_per_append() {
    bounded(150, || {
        let b = Broker::start();
        let mut producer = Raw::connect(&b);
        create_topic_raw(&mut producer, "t", 1);
        let min_bytes = 300_000;
        let mut waiters = Vec::new();
        for _ in 0..100 {
            let mut raw = Raw::connect(&b);
            let body = fetch_body(&mut raw, "t", 0, min_bytes, 60_000);
            raw.send_frame(&body);
            waiters.push(raw);
        }
        assert!(silent_for(
            &mut waiters[99].stream,
            Duration::from_millis(300)
        ));
        let value = vec![b'v'; 100];
        let batch = encode_batch(&[(Some(b"k"), &value)], Compression::None);
        let appends = 1500;
        assert!(
            batch.len() * appends < min_bytes as usize,
            "all below min_bytes"
        );
        let cpu0 = b.cpu_time();
        let t = Instant::now();
        for _ in 0..appends {
            produce(&mut producer, "t", batch.clone());
            std::thread::sleep(Duration::from_millis(2));
        }
        let cpu = b.cpu_time() - cpu0;
        eprintln!(
            "{appends} appends of {} bytes with 100 waiting fetches: broker CPU {cpu:?}, wall {:?}",
            batch.len(),
            t.elapsed()
        );
        // Measured: about 0.1 s with position-based wake-ups, seconds when every append re-reads.
        assert!(cpu < Duration::from_secs(1), "broker CPU {cpu:?}");
        // Crossing min_bytes answers every waiter with the data.
        let big = vec![b'x'; 200_000];
        produce(
            &mut producer,
            "t",
            encode_batch(&[(None, &big)], Compression::None),
        );
        for w in &mut waiters {
            w.stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let frame = w
                .read_frame()
                .expect("fetch answered once min_bytes is there");
            assert!(frame.len() > min_bytes as usize, "{} bytes", frame.len());
        }
        let rss = b.rss_bytes();
        eprintln!("broker RSS {} KiB", rss / 1024);
        assert!(rss < 200 * MB, "RSS {rss}");
    });
}

/// Bullet 3: a client that pipelines requests and never reads cannot make the broker hold its responses:
/// past `queued_max_response_bytes` of unsent responses the broker stops reading from it.
#[test]
fn hostile_client_that_never_reads() {
    bounded(120, || {
        let b = Broker::start();
        let mut admin = Raw::connect(&b);
        let topics: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
        for t in &topics {
            create_topic_raw(&mut admin, t, 1);
        }
        // DescribeConfigs of every topic with synonyms and documentation: a small request, a large response.
        let mut req = DescribeConfigsRequest::default();
        req.include_synonyms = true;
        req.include_documentation = true;
        for t in &topics {
            let mut r = describe_configs_request::DescribeConfigsResource::default();
            r.resource_type = 2;
            r.resource_name = StrBytes::from_string(t.clone());
            r.configuration_keys = None; // all
            req.resources.push(r);
        }
        let body = admin.encode_request(ApiKey::DescribeConfigs, 4, &req);
        admin.send_frame(&body);
        let response_len = admin.read_frame().unwrap().len();
        let correlation = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
        let frame = [&(body.len() as i32).to_be_bytes()[..], &body].concat();
        let rss0 = b.rss_bytes();
        let per_conn = 500; // queued_max_requests
        let mut hogs = Vec::new();
        for _ in 0..20 {
            let s = TcpStream::connect(b.bootstrap()).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            hogs.push(s);
        }
        for s in &mut hogs {
            let all: Vec<u8> = (0..per_conn).flat_map(|_| frame.iter().copied()).collect();
            s.write_all(&all).unwrap();
        }
        // Let the broker do what it will with them, then measure.
        let mut rss = b.rss_bytes();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(200));
            let now = b.rss_bytes();
            if now == rss {
                break;
            }
            rss = now;
        }
        let grown = rss.saturating_sub(rss0);
        let asked = 20 * per_conn as u64 * response_len as u64;
        eprintln!(
            "20 clients asked for {} MiB of responses without reading ({response_len} bytes each): RSS grew {} KiB to {} KiB",
            asked / MB,
            grown / 1024,
            rss / 1024
        );
        // Per connection: about queued_max_response_bytes (1 MiB) plus one response, and the request buffer. The
        // kernel's socket buffers (a few MiB, not in RSS) take part of the rest; without the bound the broker
        // holds the other ~9 MiB of each client's 13 MiB.
        assert!(grown < 60 * MB, "RSS grew {grown} bytes");
        // Others are served meanwhile.
        let _ok = connect_served(&b, Duration::from_secs(3)).expect("broker serves others");
        // When a hog finally reads, every response arrives, in order.
        let mut raw = Raw::from_stream(hogs.pop().unwrap());
        for i in 0..per_conn {
            let f = raw.read_frame().unwrap_or_else(|| panic!("response {i}"));
            assert_eq!(f.len(), response_len);
            let id = i32::from_be_bytes([f[0], f[1], f[2], f[3]]);
            assert_eq!(id, correlation, "the request's correlation id");
        }
    });
}

/// Bullet 4: `connections_max_idle_ms` closes connections that stalled, including in the middle of a frame,
/// and the memory their partial requests took goes with them; a long-poll longer than the idle time is not
/// cut short.
#[test]
fn hostile_stalled_half_frames_are_closed_when_idle() {
    bounded(60, || {
        let b = Broker::start_with(&[("CONNECTIONS_MAX_IDLE_MS", "1000")]);
        let mut admin = Raw::connect(&b);
        create_topic_raw(&mut admin, "t", 1);
        let base_fds = b.fd_count() - 1;
        drop(admin);
        let rss0 = b.rss_bytes();
        // A long-poll of 2.5 s: its connection is busy, not idle.
        let mut poller = Raw::connect(&b);
        let body = fetch_body(&mut poller, "t", 0, 1, 2500);
        poller.send_frame(&body);
        // 100 clients announce a 50 MB request, send 64 KiB of it and stall; one sends nothing at all.
        let start = Instant::now();
        let mut stalled = Vec::new();
        for _ in 0..100 {
            let mut s = TcpStream::connect(b.bootstrap()).unwrap();
            s.write_all(&50_000_000i32.to_be_bytes()).unwrap();
            s.write_all(&vec![0u8; 64 << 10]).unwrap();
            stalled.push(s);
        }
        stalled.push(TcpStream::connect(b.bootstrap()).unwrap());
        std::thread::sleep(Duration::from_millis(300));
        let rss_held = b.rss_bytes();
        eprintln!(
            "101 stalled connections: RSS {} KiB (grew {} KiB)",
            rss_held / 1024,
            rss_held.saturating_sub(rss0) / 1024
        );
        assert!(rss_held.saturating_sub(rss0) < 64 * MB);
        for s in &mut stalled {
            assert!(
                closed_within(s, Duration::from_secs(5)),
                "a stalled connection must be closed after connections_max_idle_ms"
            );
        }
        let took = start.elapsed();
        eprintln!("stalled connections closed after {took:?}");
        assert!(
            took >= Duration::from_millis(900),
            "not before the idle time: {took:?}"
        );
        let f = poller
            .read_frame()
            .expect("the long-poll is answered, not cut");
        assert!(start.elapsed() >= Duration::from_millis(2000));
        assert!(!f.is_empty());
        let fds = fds_settle_to(&b, base_fds + 1, Duration::from_secs(2));
        assert!(
            fds <= base_fds + 1,
            "broker descriptors {fds}, before {base_fds}"
        );
    });
}

/// Bullet 4: the soft descriptor limit is raised to the hard one at start; beyond it, failed accepts back off
/// instead of spinning, and the broker serves again once descriptors are free.
#[test]
fn hostile_descriptor_exhaustion() {
    bounded(90, || {
        // One partition of __consumer_offsets instead of 50 (150 descriptors of the 200).
        let b = Broker::start_limited(&[("OFFSETS_TOPIC_NUM_PARTITIONS", "1")], Some((64, 200)));
        assert!(
            b.ready_line.contains("open files limit 200"),
            "{}",
            b.ready_line
        );
        // More connections than the soft limit allowed: all served.
        let mut conns: Vec<Raw> = (0..120)
            .map(|i| {
                connect_served(&b, Duration::from_secs(2))
                    .unwrap_or_else(|| panic!("connection {i} not served"))
            })
            .collect();
        // More than the hard limit: the rest wait in the backlog while accept fails with EMFILE.
        let mut extra: Vec<TcpStream> = (0..150)
            .filter_map(|_| TcpStream::connect(b.bootstrap()).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let cpu0 = b.cpu_time();
        std::thread::sleep(Duration::from_secs(1));
        let cpu = b.cpu_time() - cpu0;
        eprintln!("out of descriptors: broker CPU {cpu:?} in 1 s");
        assert!(cpu < Duration::from_millis(300), "spinning: {cpu:?}");
        conns.clear();
        extra.clear();
        let _raw = connect_served(&b, Duration::from_secs(5)).expect("served again");
        let rss = b.rss_bytes();
        eprintln!("broker RSS {} KiB", rss / 1024);
        assert!(rss < 100 * MB);
    });
}

/// `max_connections` as in Kafka: at the limit the broker stops accepting (the kernel's backlog holds the
/// newcomer) instead of accepting and dropping, and takes the waiting connection as soon as a slot frees.
#[test]
fn hostile_max_connections_waits_for_a_slot() {
    bounded(30, || {
        let b = Broker::start_with(&[("MAX_CONNECTIONS", "2")]);
        let first = connect_served(&b, Duration::from_secs(3)).expect("first");
        let _second = connect_served(&b, Duration::from_secs(3)).expect("second");
        let mut third = Raw::from_stream(TcpStream::connect(b.bootstrap()).unwrap());
        let body = third.encode_request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        third.send_frame(&body);
        assert!(
            silent_for(&mut third.stream, Duration::from_millis(500)),
            "the third connection waits in the backlog, neither served nor closed"
        );
        drop(first);
        third
            .stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        assert!(third.read_frame().is_some(), "served once a slot is free");
    });
}
