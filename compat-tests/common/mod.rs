//! Test harness: starts the real `vltava` binary on a free loopback port with its own data directory, and
//! offers raw-protocol and rdkafka helpers. Every wait is bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    create_topics_request, produce_request, ApiKey, CreateTopicsRequest, CreateTopicsResponse,
    ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// A running broker process.
pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    env: Vec<(String, String)>,
    pub ready_line: String,
    limits: Limits,
}

/// Resource limits for the broker process (set between fork and exec).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// RLIMIT_NOFILE (soft, hard): open file descriptors. The broker raises its soft limit to the hard one
    /// at start, so a test that wants few descriptors sets both.
    pub nofile: Option<(u64, u64)>,
    /// RLIMIT_FSIZE (largest file the broker may write, bytes); SIGXFSZ is ignored so writes fail with EFBIG.
    pub fsize: Option<u64>,
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

/// The broker under test: `BROKER_BIN` if set, else the one cargo built. Worktrees sharing a target directory
/// overwrite each other's `target/release/vltava`; `BROKER_BIN` pins a copy. (Not `VLTAVA_*`: the broker
/// reads those as its settings.)
pub fn binary() -> String {
    std::env::var("BROKER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_vltava").to_string())
}

impl Broker {
    /// Starts a broker with default settings.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Starts a broker with extra `VLTAVA_*` settings, e.g. `("NUM_PARTITIONS", "3")`.
    pub fn start_with(env: &[(&str, &str)]) -> Broker {
        Broker::start_limited(env, None)
    }

    /// Like [`Broker::start_with`], with the broker's RLIMIT_NOFILE set to (soft, hard) before it runs.
    pub fn start_limited(env: &[(&str, &str)], nofile: Option<(u64, u64)>) -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let limits = Limits {
            nofile,
            ..Limits::default()
        };
        let mut b = Broker::start_in(tmp.path().to_path_buf(), env, limits);
        b._tmp = Some(tmp);
        b
    }

    /// Starts a broker with default settings and resource limits.
    pub fn start_with_limits(limits: Limits) -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut b = Broker::start_in(tmp.path().to_path_buf(), &[], limits);
        b._tmp = Some(tmp);
        b
    }

    /// Starts a broker on `dir` (which the caller owns, e.g. a small tmpfs) with resource limits.
    pub fn start_in(dir: PathBuf, env: &[(&str, &str)], limits: Limits) -> Broker {
        let mut b = Broker {
            port: free_port(),
            dir,
            _tmp: None,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (format!("VLTAVA_{k}"), v.to_string()))
                .collect(),
            ready_line: String::new(),
            limits,
        };
        b.spawn();
        b
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--listen")
            .arg(self.bootstrap())
            .arg("--data-dir")
            .arg(&self.dir)
            .env(
                "RUST_LOG",
                std::env::var("BROKER_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped());
        // BROKER_LOG_DIR=<dir>: each broker's log goes to <dir>/<port>.log (appended across restarts), so
        // parallel tests' logs do not interleave.
        match std::env::var_os("BROKER_LOG_DIR").and_then(|d| {
            let path = std::path::Path::new(&d).join(format!("{}.log", self.port));
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        }) {
            Some(f) => cmd.stderr(Stdio::from(f)),
            None => cmd.stderr(Stdio::inherit()),
        };
        // One __consumer_offsets partition unless a test asks for more: creating Kafka's 50 at start costs ~150
        // fsyncs, and with several brokers of parallel tests fsyncing on one disk that can hold up a test's
        // first topic creation for tens of seconds (commands apply images one at a time).
        cmd.env("VLTAVA_OFFSETS_TOPIC_NUM_PARTITIONS", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let limits = self.limits;
        if limits.nofile.is_some() || limits.fsize.is_some() {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if let Some((soft, hard)) = limits.nofile {
                        let r = libc::rlimit {
                            rlim_cur: soft,
                            rlim_max: hard,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    if let Some(n) = limits.fsize {
                        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                        let r = libc::rlimit {
                            rlim_cur: n,
                            rlim_max: n,
                        };
                        if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn vltava");
        live_brokers().push((std::thread::current().id(), child.id()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if line.starts_with("vltava ready") {
                    let _ = tx.send(line.clone());
                }
                line.clear();
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => self.ready_line = line,
            Err(_) => {
                let _ = child.kill();
                panic!("broker did not become ready in 30 s");
            }
        }
        self.child = Some(child);
        self.wait_for_startup_work();
    }

    /// Waits (bounded) until the broker finished the work it starts right after its ready line (creating and
    /// loading `__consumer_offsets`), so that a test's first topic creation does not race it: an rdkafka
    /// producer's first produce to an auto-created topic was seen to time out when it did (under
    /// investigation). FindCoordinator answers without error once the coordinator is loaded.
    fn wait_for_startup_work(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(stream) = TcpStream::connect(self.bootstrap()) {
                let mut raw = Raw::from_stream(stream);
                let mut req = kafka_protocol::messages::FindCoordinatorRequest::default();
                req.key = StrBytes::from_static_str("startup-probe");
                let r: kafka_protocol::messages::FindCoordinatorResponse =
                    raw.call(ApiKey::FindCoordinator, 3, &req);
                if r.error_code == 0 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9, then start again on the same port and data dir.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Sets a `VLTAVA_*` setting for the next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let key = format!("VLTAVA_{key}");
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.to_string()));
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            live_brokers().retain(|(_, pid)| *pid != c.id());
        }
    }

    /// SIGTERM; returns the exit status code.
    pub fn sigterm(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) on our own child process; no memory is involved.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                live_brokers().retain(|(_, pid)| *pid != c.id());
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("broker did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        assert_eq!(self.sigterm(), Some(0), "clean shutdown exits 0");
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker running").id()
    }

    /// The broker's resident memory in bytes (VmRSS).
    pub fn rss_bytes(&self) -> u64 {
        self.memory_kb("VmRSS") * 1024
    }

    /// Open file descriptors of the broker.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// CPU time the broker has used so far (user + system).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th of the line.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    pub fn partition_dir(&self, topic: &str, p: i32) -> PathBuf {
        self.dir.join(format!("{topic}-{p}"))
    }

    /// A memory figure of the broker process in KiB from `/proc/<pid>/status`: `VmRSS` (now) or `VmHWM`
    /// (peak resident set since start). 0 if unavailable.
    pub fn memory_kb(&self, field: &str) -> u64 {
        let Some(c) = &self.child else { return 0 };
        std::fs::read_to_string(format!("/proc/{}/status", c.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Brokers started and not yet reaped, with the thread that started them: a test that exceeds its bound
/// (see [`bounded`]) never drops its brokers, so `bounded` kills them; otherwise they would outlive the test
/// run and keep its output pipe open.
fn live_brokers() -> std::sync::MutexGuard<'static, Vec<(std::thread::ThreadId, u32)>> {
    static LIVE: std::sync::Mutex<Vec<(std::thread::ThreadId, u32)>> =
        std::sync::Mutex::new(Vec::new());
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// SIGKILLs the brokers a (stuck) test thread started.
fn kill_brokers_of(thread: std::thread::ThreadId) {
    let mut live = live_brokers();
    for (_, pid) in live.iter().filter(|(t, _)| *t == thread) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    live.retain(|(t, _)| *t != thread);
}

/// A raw protocol connection for tests that need exact control of the bytes.
pub struct Raw {
    pub stream: TcpStream,
    correlation: i32,
}

impl Raw {
    pub fn connect(b: &Broker) -> Raw {
        let stream = TcpStream::connect(b.bootstrap()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            stream,
            correlation: 0,
        }
    }

    pub fn from_stream(stream: TcpStream) -> Raw {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            stream,
            correlation: 0,
        }
    }

    pub fn send_frame(&mut self, body: &[u8]) {
        let mut f = Vec::with_capacity(body.len() + 4);
        f.extend_from_slice(&(body.len() as i32).to_be_bytes());
        f.extend_from_slice(body);
        self.stream.write_all(&f).expect("write");
    }

    /// Reads one response frame; None if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let size = i32::from_be_bytes(size);
        assert!((0..=64 << 20).contains(&size), "response size {size}");
        let mut buf = vec![0u8; size as usize];
        self.stream.read_exact(&mut buf).ok()?;
        Some(Bytes::from(buf))
    }

    /// True if the broker closes the connection (EOF or reset) within the read timeout.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }

    pub fn encode_request<Req: Encodable + HeaderVersion>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> BytesMut {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("compat-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api.request_header_version(version))
            .unwrap();
        req.encode(&mut body, version).unwrap();
        body
    }

    pub fn call<Req, Resp>(&mut self, api: ApiKey, version: i16, req: &Req) -> Resp
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        self.call_sized(api, version, req).1
    }

    /// Like [`Raw::call`], also returning the response's size in bytes.
    pub fn call_sized<Req, Resp>(&mut self, api: ApiKey, version: i16, req: &Req) -> (usize, Resp)
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let body = self.encode_request(api, version, req);
        self.send_frame(&body);
        let mut frame = self.read_frame().expect("response");
        let size = frame.len();
        let h = ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
        assert_eq!(h.correlation_id, self.correlation);
        (
            size,
            Resp::decode(&mut frame, version).expect("decode response"),
        )
    }
}

/// CreateTopics v7 for one topic with `partitions` partitions (replication factor 1); asserts success.
pub fn create_topic_raw(raw: &mut Raw, topic: &str, partitions: i32) {
    let mut ct = CreateTopicsRequest::default();
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.num_partitions = partitions;
    t.replication_factor = 1;
    ct.topics.push(t);
    ct.timeout_ms = 30_000;
    let r: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &ct);
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

/// A Produce request with one record set per listed partition of `topic`.
pub fn build_produce(topic: &str, acks: i16, parts: &[(i32, Bytes)]) -> ProduceRequest {
    let mut td = produce_request::TopicProduceData::default();
    td.name = TopicName(StrBytes::from_string(topic.to_string()));
    for (index, records) in parts {
        let mut pd = produce_request::PartitionProduceData::default();
        pd.index = *index;
        pd.records = Some(records.clone());
        td.partition_data.push(pd);
    }
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 30_000;
    req.topic_data.push(td);
    req
}

/// Runs `f` on a thread and fails the test if it takes longer than `secs`.
pub fn bounded<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => {
            let _ = h.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => panic!("test body ended without a result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            kill_brokers_of(h.thread().id());
            panic!("test exceeded its {secs} s bound")
        }
    }
}

/// Counts `.log` segment files in a partition directory.
pub fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().map(|x| x == "log").unwrap_or(false))
                .count()
        })
        .unwrap_or(0)
}

/// Builds one v2 record batch with kafka-protocol's encoder (for raw produce tests).
pub fn encode_batch(
    records: &[(Option<&[u8]>, &[u8])],
    compression: kafka_protocol::records::Compression,
) -> Bytes {
    let now = 1_700_000_000_000i64;
    let timed: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| (*k, *v, now + i as i64))
        .collect();
    encode_timed_batch(&timed, compression)
}

/// A record for [`encode_timed_batch`]: key, value, timestamp.
pub type TimedRecord<'a> = (Option<&'a [u8]>, &'a [u8], i64);

/// Like [`encode_batch`], with an explicit timestamp per record.
pub fn encode_timed_batch(
    records: &[TimedRecord<'_>],
    compression: kafka_protocol::records::Compression,
) -> Bytes {
    use kafka_protocol::records::*;
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v, ts))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol batches records whose offset - sequence agree; the first keeps base sequence -1.
            sequence: i as i32 - 1,
            timestamp: *ts,
            key: k.map(Bytes::copy_from_slice),
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

pub fn put_i32(b: &mut BytesMut, v: i32) {
    b.put_i32(v)
}

/// A tmpfs of a given size mounted on a fresh temporary directory, unmounted on drop. Needs root (or
/// CAP_SYS_ADMIN); `None` when mounting is not permitted.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `dir` completely with a file `dir/filler` (returns its path).
pub fn fill_disk(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create filler");
    let chunk = vec![0x5au8; 4096];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    // A partial last chunk may have left a partial page; tmpfs allocates whole pages, so it is full now.
    path
}

/// `java -cp <kafka-clients jars> compat-tests/java/<program> --bootstrap <b> args...`, not yet run.
pub fn java_command(program: &str, b: &Broker, args: &[&str]) -> Command {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("compat-tests/java");
    let classpath = Command::new("bash")
        .arg(root.join("classpath.sh"))
        .output()
        .expect("bash");
    assert!(
        classpath.status.success(),
        "java client jars missing (run .ci/install-deps): {}",
        String::from_utf8_lossy(&classpath.stderr)
    );
    let cp = String::from_utf8_lossy(&classpath.stdout)
        .trim()
        .to_string();
    let mut cmd = Command::new("java");
    cmd.args(["-cp", &cp])
        .arg(root.join(program))
        .args(["--bootstrap", &b.bootstrap()])
        .args(args);
    cmd
}

/// `python3 compat-tests/python/<script> args... --bootstrap <b>`, not yet run.
pub fn python_command(script: &str, b: &Broker, args: &[&str]) -> Command {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compat-tests/python")
        .join(script);
    let mut cmd = Command::new("python3");
    cmd.arg(path)
        .args(args)
        .args(["--bootstrap", &b.bootstrap()]);
    cmd
}

/// Runs the single-file Java program `compat-tests/java/<program>` (kafka-clients from `classpath.sh`) with
/// `--bootstrap` pointing at `b` and `args`, asserts it exited 0 and returns what it printed (stdout then
/// stderr).
pub fn run_java(program: &str, b: &Broker, args: &[&str]) -> String {
    run_client(java_command(program, b, args))
}

/// Runs a client program to its end, asserts it exited 0 and returns what it printed (stdout then stderr).
pub fn run_client(mut cmd: Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (run .ci/install-deps): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// A client program running in its own process, so a test can kill -9 it mid-work. Its stdout and stderr
/// lines arrive on a channel; dropping it kills the process.
pub struct Spawned {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far (stdout and stderr interleaved as they arrived).
    pub output: Vec<String>,
}

impl Spawned {
    pub fn start(mut cmd: Command) -> Spawned {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?} (run .ci/install-deps): {e}"));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Spawned {
            child,
            lines,
            output: Vec::new(),
        }
    }

    /// Waits (at most `secs`) for a line starting with `prefix` and returns it; fails the test with the
    /// output so far if the program ends or the time runs out first.
    pub fn wait_line(&mut self, prefix: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.output.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line '{prefix}...' ({}); output:\n{}",
                    match e {
                        mpsc::RecvTimeoutError::Timeout => format!("not within {secs} s"),
                        mpsc::RecvTimeoutError::Disconnected => "the program ended".into(),
                    },
                    self.output.join("\n")
                ),
            }
        }
    }

    /// Waits (at most `secs`) for the program to end, asserts it exited 0 and returns all its output.
    pub fn wait_success(&mut self, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // The reader threads end at EOF; collect what they still hold.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
                    self.output.push(line);
                }
                let text = self.output.join("\n");
                assert!(status.success(), "client exited with {status}:\n{text}");
                return text;
            }
            while let Ok(line) = self.lines.try_recv() {
                self.output.push(line);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "client still running after {secs} s; output:\n{}",
                    self.output.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill9();
    }
}
