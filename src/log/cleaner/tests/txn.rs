//! Cleaning transactional data: the last stable offset bounds a pass, aborted data goes, markers stay while their
//! data does and go after their delete horizon, each producer's last batch stays, the cleaned segments'
//! transaction indexes are swapped in (and survive crashes), and a read_committed reader sees the same
//! committed state before and after any pass. Time is passed in; nothing sleeps.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::log::txn_index::txn_index_path;

/// (key, value; None = tombstone)
type Kv<'a> = (&'a str, Option<&'a str>);

/// A batch of `records` from producer `pid` (epoch 0, base sequence `seq`; -1/-1 for a plain batch).
fn producer_batch(codec: Codec, records: &[Kv<'_>], pid: i64, seq: i32, txn: bool) -> Vec<u8> {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: txn,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: if pid < 0 { -1 } else { 0 },
            timestamp_type: KpTimestampType::Creation,
            offset: i as i64,
            sequence: if pid < 0 { -1 } else { seq + i as i32 },
            timestamp: NOW + i as i64,
            key: Some(Bytes::from(k.to_string())),
            value: v.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: codec.ours().into_kp(),
        },
    )
    .unwrap();
    buf.to_vec()
}

trait IntoKp {
    fn into_kp(self) -> kafka_protocol::records::Compression;
}

impl IntoKp for crate::log::batch::Compression {
    fn into_kp(self) -> kafka_protocol::records::Compression {
        use crate::log::batch::Compression as C;
        use kafka_protocol::records::Compression as K;
        match self {
            C::None => K::None,
            C::Gzip => K::Gzip,
            C::Snappy => K::Snappy,
            C::Lz4 => K::Lz4,
            C::Zstd => K::Zstd,
        }
    }
}

/// Writes of a test, with the sequences of each producer and the model of what was committed.
struct Writer {
    seqs: HashMap<i64, i32>,
    /// Every data record written: (offset, key, value, producer id if transactional).
    written: Vec<(i64, String, Option<String>, Option<i64>)>,
    /// Per transactional producer, the offsets of its open transaction's records.
    open: HashMap<i64, Vec<usize>>,
    /// Indexes into `written` of aborted records.
    aborted: Vec<usize>,
}

impl Writer {
    fn new() -> Self {
        Writer {
            seqs: HashMap::new(),
            written: Vec::new(),
            open: HashMap::new(),
            aborted: Vec::new(),
        }
    }

    /// Appends a batch: plain (`pid` < 0), idempotent or transactional.
    fn write(&mut self, log: &mut Log, codec: Codec, records: &[Kv<'_>], pid: i64, txn: bool) {
        let seq = self.seqs.get(&pid).copied().unwrap_or(0);
        let mut b = producer_batch(codec, records, pid, seq, txn);
        let first = log.append_as_leader(&mut b, 3, NOW).unwrap().first_offset;
        if pid >= 0 {
            self.seqs.insert(pid, seq + records.len() as i32);
        }
        for (i, (k, v)) in records.iter().enumerate() {
            let idx = self.written.len();
            self.written.push((
                first + i as i64,
                k.to_string(),
                v.map(str::to_string),
                txn.then_some(pid),
            ));
            if txn {
                self.open.entry(pid).or_default().push(idx);
            }
        }
    }

    fn end(&mut self, log: &mut Log, pid: i64, commit: bool) {
        log.append_marker(pid, 0, 0, commit, 3, NOW).unwrap();
        let records = self.open.remove(&pid).unwrap_or_default();
        if !commit {
            self.aborted.extend(records);
        }
    }

    /// What a read_committed consumer must see below `lso`: latest value per key of plain and committed records.
    fn committed(&self, lso: i64) -> BTreeMap<String, Option<String>> {
        let open: Vec<usize> = self.open.values().flatten().copied().collect();
        let mut m = BTreeMap::new();
        for (i, (o, k, v, _)) in self.written.iter().enumerate() {
            if *o < lso && !self.aborted.contains(&i) && !open.contains(&i) {
                m.insert(k.clone(), v.clone());
            }
        }
        m.retain(|_, v| v.is_some());
        m
    }
}

/// What a read_committed consumer reads from the log start up to the last stable offset: batches of the
/// aborted transactions the log reports are skipped, as Kafka's consumer does; latest value per key.
fn read_committed(log: &Log) -> BTreeMap<String, Option<String>> {
    let lso = log
        .first_unstable_offset()
        .map_or(log.log_end_offset(), |f| f.min(log.log_end_offset()));
    let bytes = testutil::read_all(log);
    let aborted = log.aborted_transactions(log.log_start_offset(), lso);
    let mut m = BTreeMap::new();
    let mut pos = 0;
    for h in testutil::headers(&bytes) {
        let batch = &bytes[pos..pos + h.total_size()];
        pos += h.total_size();
        if h.base_offset >= lso || h.is_control() {
            continue;
        }
        let skip = h.is_transactional()
            && aborted.iter().any(|a| {
                a.producer_id == h.producer_id
                    && a.first_offset <= h.base_offset
                    && h.base_offset < a.last_offset
            });
        if skip {
            continue;
        }
        for r in testutil::decode(batch) {
            let s = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
            m.insert(r.key.map(s).unwrap(), r.value.map(s));
        }
    }
    m.retain(|_, v| v.is_some());
    m
}

/// Counts of (data records, control batches, empty batches) in the log.
fn shape(log: &Log) -> (usize, usize, usize) {
    let bytes = testutil::read_all(log);
    let hs = testutil::headers(&bytes);
    let records = hs
        .iter()
        .filter(|h| !h.is_control())
        .map(|h| h.records_count as usize)
        .sum();
    let controls = hs.iter().filter(|h| h.is_control()).count();
    let empty = hs.iter().filter(|h| h.records_count == 0).count();
    (records, controls, empty)
}

/// A pass now, due or not (the tests check what a pass does, not when one is due).
fn force_pass(log: &mut Log, cc: &CompactionConfig, now: i64) -> CleanStats {
    let snap = log.cleaner_snapshot().unwrap();
    let checkpoint = CleanerCheckpoint::read(log.dir());
    let mut p = plan(&snap, checkpoint, cc, log.log_end_offset(), now);
    p.due = true;
    clean(&snap, &p, cc, 1 << 20, now, |g| log.install_cleaned(g)).unwrap()
}

fn roll(log: &mut Log) {
    log.roll(log.log_end_offset(), NOW).unwrap();
}

fn big_segments(log: &mut Log) {
    log.update_config(LogConfig {
        segment_bytes: 100_000,
        ..config()
    });
}

/// Producer state that must survive a rebuild from the log: (epoch, last sequence, last offset, open txn).
fn producer_view(log: &Log) -> BTreeMap<i64, (i16, i32, i64, Option<i64>)> {
    log.producer_entries()
        .into_iter()
        .map(|e| {
            let v = (
                e.epoch,
                e.last_seq(),
                e.last_offset(),
                e.current_txn_first_offset,
            );
            (e.producer_id, v)
        })
        .collect()
}

/// Drops the log without a clean close and without snapshots, so the reopen replays every batch header.
fn reopen_replaying_everything(log: Log, dir: &Path) -> Log {
    drop(log);
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snapshot") {
            fs::remove_file(p).unwrap();
        }
    }
    Log::open(dir, config(), NOW).unwrap()
}

const P1: i64 = 101;
const P2: i64 = 102;

#[test]
fn aborted_data_goes_and_markers_go_after_their_data_and_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), NOW).unwrap();
    let mut w = Writer::new();
    w.write(
        &mut log,
        Codec::Gzip,
        &[("k1", Some("c1")), ("k2", Some("c2"))],
        P1,
        true,
    );
    w.end(&mut log, P1, true);
    w.write(
        &mut log,
        Codec::Lz4,
        &[("k1", Some("a1")), ("k3", Some("a3"))],
        P2,
        true,
    );
    w.end(&mut log, P2, false);
    w.write(&mut log, Codec::None, &[("k2", Some("p2"))], -1, false);
    w.write(&mut log, Codec::None, &[("k5", Some("x"))], P1, true);
    w.end(&mut log, P1, true);
    w.write(&mut log, Codec::Zstd, &[("k6", Some("y"))], P2, true);
    w.end(&mut log, P2, true);
    roll(&mut log);
    w.write(&mut log, Codec::None, &[("k9", Some("active"))], -1, false);
    big_segments(&mut log);
    let abort = log.aborted_transactions(0, log.log_end_offset());
    assert_eq!(abort.len(), 1);
    let committed = w.committed(log.log_end_offset());
    assert_eq!(read_committed(&log), committed);
    assert_eq!(committed.get("k1"), Some(&Some("c1".to_string())));
    let cc = CompactionConfig {
        delete_retention_ms: 1_000,
        ..CompactionConfig::default()
    };

    // Pass 1: the aborted batch goes (its "k1" did not shadow the committed one); every marker stays, since a
    // batch of each transaction was read; the cleaned segment keeps the abort's index entry.
    force_pass(&mut log, &cc, NOW);
    assert_eq!(read_committed(&log), committed);
    assert_eq!(shape(&log), (5, 4, 0), "k1=c1 k2=p2 k5 k6 k9; four markers");
    assert_eq!(log.aborted_transactions(0, log.log_end_offset()), abort);
    assert!(txn_index_path(dir.path(), 0).exists());
    assert_eq!(CleanerCheckpoint::read(log.dir()).tombstone_horizon, None);

    // Pass 2: the abort marker has no data left: it gets a delete horizon, and its index entry is not kept.
    force_pass(&mut log, &cc, NOW);
    assert!(log.aborted_transactions(0, log.log_end_offset()).is_empty());
    assert!(!txn_index_path(dir.path(), 0).exists());
    assert_eq!(
        CleanerCheckpoint::read(log.dir()).tombstone_horizon,
        Some(NOW + 1_000)
    );
    let marked = testutil::headers(&testutil::read_all(&log))
        .into_iter()
        .filter(|h| h.is_control() && h.has_delete_horizon())
        .count();
    assert_eq!(marked, 1);
    assert!(
        run_pass(&mut log, &cc, 1 << 20, NOW + 999).is_none(),
        "not yet due"
    );
    run_pass(&mut log, &cc, 1 << 20, NOW + 1_000).expect("due at the horizon");
    assert_eq!(shape(&log), (5, 3, 0), "the abort marker is gone");
    assert_eq!(read_committed(&log), committed);

    // The first commit's last record is overwritten: its batch goes, then its marker in two more passes.
    w.write(&mut log, Codec::None, &[("k1", Some("z"))], -1, false);
    roll(&mut log);
    let committed = w.committed(log.log_end_offset());
    force_pass(&mut log, &cc, NOW + 2_000);
    assert_eq!(
        shape(&log).1,
        3,
        "the commit marker outlives its data by a pass"
    );
    force_pass(&mut log, &cc, NOW + 2_000);
    force_pass(&mut log, &cc, NOW + 3_000);
    assert_eq!(shape(&log), (5, 2, 0));
    assert_eq!(read_committed(&log), committed);

    // A rebuild of the producer state from the log alone agrees with the live one; no transaction is open.
    let producers = producer_view(&log);
    let log = reopen_replaying_everything(log, dir.path());
    assert_eq!(producer_view(&log), producers);
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(read_committed(&log), committed);
}

#[test]
fn an_open_transaction_stops_cleaning() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), NOW).unwrap();
    let mut w = Writer::new();
    for i in 0..6 {
        w.write(&mut log, Codec::None, &[("k", Some("old"))], -1, false);
        if i == 2 {
            roll(&mut log);
            // Opens a transaction in the segment after the first roll.
            w.write(&mut log, Codec::None, &[("k", Some("open"))], P1, true);
        }
    }
    roll(&mut log);
    w.write(&mut log, Codec::None, &[("k", Some("new"))], -1, false);
    let first_unstable = log.first_unstable_offset().unwrap();
    let snap = log.cleaner_snapshot().unwrap();
    let cc = CompactionConfig::default();
    let p = plan(
        &snap,
        CleanerCheckpoint::default(),
        &cc,
        log.log_end_offset(),
        NOW,
    );
    assert!(p.cleanable_end <= first_unstable, "{p:?}");
    assert_eq!(p.cleanable_end, snap.segments[1].base);
    force_pass(&mut log, &cc, NOW);
    // The open transaction's record and everything after it are untouched.
    assert_eq!(
        shape(&log).0,
        1 + 4 + 1,
        "one of the three before, then all"
    );
    // Once committed (the marker in the active segment), the rest becomes cleanable.
    w.end(&mut log, P1, true);
    let snap = log.cleaner_snapshot().unwrap();
    let p = plan(
        &snap,
        CleanerCheckpoint::default(),
        &cc,
        log.log_end_offset(),
        NOW,
    );
    assert_eq!(p.cleanable_end, snap.active_base);
    force_pass(&mut log, &cc, NOW);
    assert_eq!(read_committed(&log), w.committed(log.log_end_offset()));
    // Left: the last "old" (the latest below the active segment), "new"; the committed batch was P1's last, so
    // it stays, emptied, and its marker (in the active segment) too.
    assert_eq!(shape(&log), (2, 1, 1));
}

#[test]
fn each_producers_last_batch_stays_empty_and_its_state_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), NOW).unwrap();
    let mut w = Writer::new();
    const IDEM: i64 = 300;
    for codec in Codec::ALL {
        w.write(
            &mut log,
            codec,
            &[("a", Some("1")), ("b", Some("2"))],
            IDEM,
            false,
        );
    }
    w.write(
        &mut log,
        Codec::None,
        &[("a", Some("3")), ("b", Some("4"))],
        -1,
        false,
    );
    roll(&mut log);
    w.write(&mut log, Codec::None, &[("c", Some("5"))], -1, false);
    big_segments(&mut log);
    let producers = producer_view(&log);
    force_pass(&mut log, &CompactionConfig::default(), NOW);
    let hs = testutil::headers(&testutil::read_all(&log));
    let kept: Vec<_> = hs.iter().filter(|h| h.producer_id == IDEM).collect();
    assert_eq!(kept.len(), 1, "only the producer's last batch");
    let last = kept[0];
    assert_eq!(
        (last.records_count, last.base_sequence, last.producer_epoch),
        (0, 8, 0)
    );
    assert_eq!(
        last.attributes & 7,
        0,
        "an empty batch is written uncompressed"
    );
    assert_eq!(
        last.last_offset(),
        producers[&IDEM].2,
        "it still ends where it did"
    );
    let log = reopen_replaying_everything(log, dir.path());
    assert_eq!(producer_view(&log), producers);
    // The next sequence continues the old ones.
    let mut log = log;
    w.write(&mut log, Codec::None, &[("a", Some("6"))], IDEM, false);
    assert_eq!(read_committed(&log), w.committed(log.log_end_offset()));
}

/// A log whose first segments hold an aborted transaction with data left (the producer's last batch) after a
/// clean, and a staged clean of it that "crashes" at `install`.
fn staged_with_txn_index(
    dir: &Path,
    install: bool,
) -> (i64, Vec<crate::log::txn_index::AbortedTxn>) {
    let mut log = Log::open(dir, config(), NOW).unwrap();
    let mut w = Writer::new();
    for i in 0..4 {
        w.write(&mut log, Codec::None, &[("k", Some("v"))], -1, false);
        w.write(&mut log, Codec::None, &[("t", Some("x"))], P1 + i, true);
        w.end(&mut log, P1 + i, false);
    }
    roll(&mut log);
    w.write(&mut log, Codec::None, &[("k", Some("end"))], -1, false);
    big_segments(&mut log);
    let aborted = log.aborted_transactions(0, log.log_end_offset());
    assert_eq!(aborted.len(), 4);
    assert!(log.num_segments() > 2);
    let cc = CompactionConfig::default();
    let snap = log.cleaner_snapshot().unwrap();
    let p = plan(
        &snap,
        CleanerCheckpoint::default(),
        &cc,
        log.log_end_offset(),
        NOW,
    );
    let mut base = None;
    let r = clean(&snap, &p, &cc, 1 << 20, NOW, |g| {
        base = Some(g.base);
        if install {
            assert!(log.install_cleaned(g)?);
        }
        Err(LogError::Offline("simulated crash".into()))
    });
    assert!(r.is_err());
    if install {
        // Installed in memory: the entries (each producer's emptied last batch is still there) moved to the
        // merged segment's index.
        assert_eq!(log.aborted_transactions(0, log.log_end_offset()), aborted);
    }
    (base.unwrap(), aborted)
}

fn txn_index_files(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.contains(".txnindex"))
        .collect()
}

#[test]
fn the_transaction_index_is_swapped_with_its_segment_across_crashes() {
    // Staged as `.swap`, not installed: rolled forward at open, the old segments' indexes replaced.
    let dir = tempfile::tempdir().unwrap();
    let (base, aborted) = staged_with_txn_index(dir.path(), false);
    let staged = txn_index_files(dir.path());
    assert!(
        staged.contains(&format!(
            "{}.txnindex.swap",
            crate::log::segment::file_stem(base)
        )),
        "{staged:?}"
    );
    let log = Log::open(dir.path(), config(), NOW).unwrap();
    assert_eq!(log.aborted_transactions(0, log.log_end_offset()), aborted);
    assert_eq!(
        txn_index_files(dir.path()),
        vec![format!("{}.txnindex", crate::log::segment::file_stem(base))]
    );
    drop(log);

    // Installed, then a crash before the new index was renamed (it is renamed after the log): the marker's
    // recovery renames it.
    let dir = tempfile::tempdir().unwrap();
    let (base, aborted) = staged_with_txn_index(dir.path(), true);
    let path = txn_index_path(dir.path(), base);
    fs::rename(&path, format!("{}.swap", path.display())).unwrap();
    let log = Log::open(dir.path(), config(), NOW).unwrap();
    assert_eq!(log.aborted_transactions(0, log.log_end_offset()), aborted);
    assert_eq!(
        txn_index_files(dir.path()),
        vec![format!("{}.txnindex", crate::log::segment::file_stem(base))]
    );
    drop(log);

    // An index left without its segment is removed at open, so a later segment at that base never reads it.
    let stale = txn_index_path(dir.path(), 1_000_000);
    fs::copy(&path, &stale).unwrap();
    let _log = Log::open(dir.path(), config(), NOW).unwrap();
    assert!(!stale.exists());
}

#[test]
fn read_committed_sees_the_same_committed_state_through_any_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            segment_bytes: 700,
            ..config()
        },
        NOW,
    )
    .unwrap();
    let mut w = Writer::new();
    let cc = CompactionConfig {
        min_cleanable_ratio: 0.0,
        delete_retention_ms: 500,
        ..CompactionConfig::default()
    };
    let mut rng = testutil::Rng(0x5eed_cafe);
    let mut now = NOW;
    let mut passes = 0;
    let key = |rng: &mut testutil::Rng| format!("k{}", rng.next() % 8);
    let (mut markers_written, mut aborted_written) = (0, 0);
    for step in 0..400 {
        let r = rng.next() % 10;
        let codec = Codec::ALL[(rng.next() % 5) as usize];
        let (k1, k2) = (key(&mut rng), key(&mut rng));
        let tomb = rng.next().is_multiple_of(10);
        let records: Vec<Kv<'_>> =
            vec![(&k1, Some("a")), (&k2, if tomb { None } else { Some("b") })];
        match r {
            0..=2 => w.write(&mut log, codec, &records, -1, false),
            3..=6 => {
                let pid = P1 + (rng.next() % 3) as i64;
                w.write(&mut log, codec, &records, pid, true);
            }
            7 | 8 => {
                let open: Vec<i64> = w.open.keys().copied().collect();
                if let Some(&pid) = open.get(rng.next() as usize % open.len().max(1)) {
                    let commit = rng.next() % 10 < 6;
                    aborted_written += usize::from(!commit);
                    w.end(&mut log, pid, commit);
                    markers_written += 1;
                }
            }
            _ => w.write(&mut log, codec, &records, 300, false),
        }
        if step % 20 == 19 {
            now += 300;
            force_pass(&mut log, &cc, now);
            passes += 1;
            let lso = log
                .first_unstable_offset()
                .map_or(log.log_end_offset(), |f| f.min(log.log_end_offset()));
            assert_eq!(
                read_committed(&log),
                w.committed(lso),
                "after pass {passes}"
            );
        }
    }
    assert!(
        aborted_written > 5 && markers_written > 20,
        "{aborted_written} {markers_written}"
    );
    // End every transaction, roll, and clean until nothing is due: what is left is the committed state, and
    // markers of transactions with no data left are gone.
    let open: Vec<i64> = w.open.keys().copied().collect();
    for pid in open {
        w.end(&mut log, pid, false);
    }
    roll(&mut log);
    w.write(&mut log, Codec::None, &[("tail", Some("t"))], -1, false);
    let committed = w.committed(log.log_end_offset());
    for _ in 0..10 {
        now += 600;
        force_pass(&mut log, &cc, now);
    }
    assert_eq!(read_committed(&log), committed);
    let (records, controls, _) = shape(&log);
    assert!(
        records <= committed.len() + 8,
        "{records} records for {} keys",
        committed.len()
    );
    assert!(
        controls <= 4,
        "{controls} markers left: at most each producer's last write's"
    );
    // No aborted record is left anywhere.
    let bytes = testutil::read_all(&log);
    let aborted = log.aborted_transactions(0, log.log_end_offset());
    for h in testutil::headers(&bytes) {
        let in_aborted = aborted.iter().any(|a| {
            a.producer_id == h.producer_id
                && a.first_offset <= h.base_offset
                && h.base_offset < a.last_offset
        });
        assert!(!in_aborted || h.records_count == 0, "{h:?}");
    }
    // The files alone give the same: producer state rebuilt from headers, indexes, committed view.
    let producers = producer_view(&log);
    let aborted = log.aborted_transactions(0, log.log_end_offset());
    let log = reopen_replaying_everything(log, dir.path());
    assert_eq!(producer_view(&log), producers);
    assert_eq!(log.aborted_transactions(0, log.log_end_offset()), aborted);
    assert_eq!(read_committed(&log), committed);
}
