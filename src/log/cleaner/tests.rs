//! Unit tests of the cleaner: planning, grouping, cleaning plain and compressed batches, tombstones, bounded
//! maps and the swap protocol at each crash point. Time is passed in; nothing sleeps.
#![allow(clippy::cast_possible_truncation)] // test data is small

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType as KpTimestampType,
};

use super::*;
use crate::log::testutil::{self, Codec, NOW};
use crate::log::LogConfig;

/// (key, value; None = tombstone)
type Kv<'a> = (&'a str, Option<&'a str>);

fn keyed_batch(codec: Codec, records: &[Kv<'_>], ts: i64) -> Vec<u8> {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: KpTimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: ts + i as i64,
            key: Some(Bytes::from(k.to_string())),
            value: v.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let kp = match codec {
        Codec::None => kafka_protocol::records::Compression::None,
        Codec::Gzip => kafka_protocol::records::Compression::Gzip,
        Codec::Snappy => kafka_protocol::records::Compression::Snappy,
        Codec::Lz4 => kafka_protocol::records::Compression::Lz4,
        Codec::Zstd => kafka_protocol::records::Compression::Zstd,
    };
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: kp,
        },
    )
    .unwrap();
    buf.to_vec()
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn produce(log: &mut Log, codec: Codec, records: &[Kv<'_>]) {
    let mut b = keyed_batch(codec, records, NOW);
    log.append_as_leader(&mut b, 3, NOW).unwrap();
}

/// (offset, key, value) of every record, read from the log start.
fn contents(log: &Log) -> Vec<(i64, String, Option<String>)> {
    testutil::decode(&testutil::read_all(log))
        .into_iter()
        .map(|r| {
            let s = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
            (r.offset, r.key.map(s).unwrap_or_default(), r.value.map(s))
        })
        .collect()
}

/// Runs planning and, if due, one pass, the way the broker's cleaner task does.
fn run_pass(log: &mut Log, cc: &CompactionConfig, buffer: usize, now: i64) -> Option<CleanStats> {
    let snap = log.cleaner_snapshot().unwrap();
    let checkpoint = CleanerCheckpoint::read(log.dir());
    let p = plan(&snap, checkpoint, cc, log.log_end_offset(), now);
    if !p.due {
        return None;
    }
    Some(clean(&snap, &p, cc, buffer, now, |g| log.install_cleaned(g)).unwrap())
}

/// Latest value per key, by the model of what compaction must keep.
fn latest(all: &[(i64, String, Option<String>)]) -> BTreeMap<String, (i64, Option<String>)> {
    let mut m = BTreeMap::new();
    for (o, k, v) in all {
        m.insert(k.clone(), (*o, v.clone()));
    }
    m
}

/// 60 updates of 6 keys in every codec, then tombstones for two keys.
fn fill(log: &mut Log) {
    for round in 0..10 {
        for (i, codec) in Codec::ALL.iter().enumerate() {
            let v1 = format!("v{round}-{i}-a");
            let v2 = format!("v{round}-{i}-b");
            let k1 = format!("k{}", i % 3);
            let k2 = format!("k{}", 3 + i % 3);
            produce(log, *codec, &[(&k1, Some(&v1)), (&k2, Some(&v2))]);
        }
    }
    produce(log, Codec::Gzip, &[("k1", None), ("k4", None)]);
    produce(log, Codec::Zstd, &[("k0", Some("last"))]);
    // Roll so the tombstones are in an inactive segment; the active one holds one more record.
    log.roll(log.log_end_offset(), NOW).unwrap();
    produce(log, Codec::None, &[("k9", Some("active"))]);
    // Larger segments from now on, so the cleaner may merge the small ones.
    log.update_config(LogConfig {
        segment_bytes: 100_000,
        ..config()
    });
}

#[test]
fn keeps_the_latest_value_per_key_with_offsets_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), NOW).unwrap();
    fill(&mut log);
    let before = contents(&log);
    let segments_before = log.num_segments();
    let cc = CompactionConfig::default();
    let stats = run_pass(&mut log, &cc, 1 << 20, NOW).expect("a fresh log is all dirty");
    assert!(
        stats.segments_written < stats.segments_cleaned,
        "small segments are merged"
    );
    assert!(log.num_segments() < segments_before);
    let after = contents(&log);
    // Every record left is the latest of its key (offsets as assigned), tombstones still there.
    let want: Vec<(i64, String, Option<String>)> = latest(&before)
        .into_iter()
        .map(|(k, (o, v))| (o, k, v))
        .collect();
    let mut got = after.clone();
    got.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got, want_sorted);
    assert!(after.iter().any(|(_, k, v)| k == "k1" && v.is_none()));
    // Rewritten batches keep their codec: the latest values sit in batches of all five.
    let codecs: std::collections::HashSet<i16> = testutil::headers(&testutil::read_all(&log))
        .iter()
        .map(|h| h.attributes & 7)
        .collect();
    assert_eq!(codecs.len(), 5, "{codecs:?}");
    // Reading a removed offset returns the next batch that is left.
    let first_left = after[0].0;
    let got = log.read(0, 1, i64::MAX, true).unwrap();
    assert!(testutil::headers(&got)[0].last_offset() >= first_left);
    // The log end offset and the active segment are untouched; a second pass is not due.
    assert_eq!(after.last().unwrap().1, "k9");
    assert!(run_pass(&mut log, &cc, 1 << 20, NOW).is_none());
    // Reopening (clean and unclean) reads the same.
    drop(log);
    let log = Log::open(dir.path(), config(), NOW).unwrap();
    assert_eq!(contents(&log), after);
}

#[test]
fn tombstones_stay_until_the_delete_horizon_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), NOW).unwrap();
    fill(&mut log);
    let cc = CompactionConfig {
        delete_retention_ms: 1_000,
        ..CompactionConfig::default()
    };
    run_pass(&mut log, &cc, 1 << 20, NOW).unwrap();
    let tombstones = |log: &Log| contents(log).iter().filter(|(_, _, v)| v.is_none()).count();
    assert_eq!(tombstones(&log), 2);
    let cp = CleanerCheckpoint::read(log.dir());
    assert_eq!(cp.tombstone_horizon, Some(NOW + 1_000));
    // The kept tombstones' batch carries the horizon (KIP-534 bit 6 and base timestamp).
    let hs = testutil::headers(&testutil::read_all(&log));
    assert!(hs
        .iter()
        .any(|h| h.has_delete_horizon() && h.base_timestamp == NOW + 1_000));
    // Record timestamps survive the new base timestamp.
    assert!(testutil::decode(&testutil::read_all(&log))
        .iter()
        .all(|r| (NOW..NOW + 10).contains(&r.timestamp)));
    assert!(
        run_pass(&mut log, &cc, 1 << 20, NOW + 999).is_none(),
        "not yet due"
    );
    run_pass(&mut log, &cc, 1 << 20, NOW + 1_000).expect("due once the horizon passed");
    assert_eq!(tombstones(&log), 0);
    assert!(!contents(&log)
        .iter()
        .any(|(_, k, _)| k == "k1" || k == "k4"));
    assert_eq!(CleanerCheckpoint::read(log.dir()).tombstone_horizon, None);
}

#[test]
fn a_small_offset_map_cleans_in_several_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), NOW).unwrap();
    fill(&mut log);
    let model = latest(&contents(&log));
    let cc = CompactionConfig {
        min_cleanable_ratio: 0.01,
        ..CompactionConfig::default()
    };
    // Room for about two keys: every pass maps a few batches only.
    let buffer = 2 * offset_map::OffsetMap::cost(b"k0");
    let mut passes = 0;
    while let Some(stats) = run_pass(&mut log, &cc, buffer, NOW) {
        passes += 1;
        assert!(stats.keys <= 3);
        assert!(passes < 100);
    }
    assert!(passes > 2, "{passes}");
    let got = latest(&contents(&log));
    assert_eq!(got, model);
    assert_eq!(contents(&log).len(), model.len());
}

#[test]
fn plan_follows_ratio_lags_and_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), NOW).unwrap();
    fill(&mut log);
    let snap = log.cleaner_snapshot().unwrap();
    let cc = CompactionConfig::default();
    let cp = CleanerCheckpoint::default();
    let leo = log.log_end_offset();
    let p = plan(&snap, cp, &cc, leo, NOW);
    assert!(p.due);
    assert_eq!((p.first_dirty, p.cleanable_end), (0, snap.active_base));
    assert!((p.dirty_ratio - 1.0).abs() < 1e-9);
    // The high watermark inside the third segment: cleanable only below it.
    let third = &snap.segments[2];
    let p = plan(&snap, cp, &cc, third.base + 1, NOW);
    assert_eq!(p.cleanable_end, third.base);
    // min.compaction.lag.ms: records of NOW are too young until the lag has passed.
    let lag = CompactionConfig {
        min_compaction_lag_ms: 10_000,
        ..cc.clone()
    };
    assert!(!plan(&snap, cp, &lag, leo, NOW).due);
    assert!(plan(&snap, cp, &lag, leo, NOW + 10_100).due);
    // Mostly clean: below the ratio, unless max.compaction.lag.ms forces it.
    let last = snap.segments.last().unwrap();
    let mostly = CleanerCheckpoint {
        first_dirty: last.base,
        tombstone_horizon: None,
    };
    let p = plan(&snap, mostly, &cc, leo, NOW);
    assert!(p.dirty_ratio < 0.5 && !p.due);
    let forced = CompactionConfig {
        max_compaction_lag_ms: 1_000,
        ..cc.clone()
    };
    assert!(!plan(&snap, mostly, &forced, leo, NOW + 500).due);
    assert!(plan(&snap, mostly, &forced, leo, NOW + 5_000).due);
    // Nothing dirty, but a tombstone horizon passed.
    let all_clean = CleanerCheckpoint {
        first_dirty: snap.active_base,
        tombstone_horizon: Some(NOW + 10),
    };
    assert!(!plan(&snap, all_clean, &cc, leo, NOW).due);
    assert!(plan(&snap, all_clean, &cc, leo, NOW + 10).due);
}

#[test]
fn groups_respect_the_segment_size() {
    let file = std::sync::Arc::new(tempfile::tempfile().unwrap());
    let seg = |base: i64, next: i64, size: u64| SegmentView {
        base,
        next_offset: next,
        size,
        file: file.clone(),
        first_timestamp: None,
        largest_timestamp: 0,
    };
    let segs = vec![
        seg(0, 10, 100),
        seg(10, 20, 300),
        seg(20, 30, 200),
        seg(30, 40, 500),
        seg(40, 50, 10),
        seg(50, 50 + i64::from(i32::MAX), 10),
    ];
    let bases: Vec<Vec<i64>> = group_segments(&segs, 500)
        .iter()
        .map(|g| g.iter().map(|s| s.base).collect())
        .collect();
    assert_eq!(
        bases,
        vec![vec![0, 10], vec![20], vec![30], vec![40], vec![50]]
    );
}

/// A pass whose install declines (the log changed): the staged group is abandoned.
fn abandoned_pass(dir: &Path) -> Vec<(i64, String, Option<String>)> {
    let mut log = Log::open(dir, config(), NOW).unwrap();
    fill(&mut log);
    let before = contents(&log);
    let cc = CompactionConfig::default();
    let snap = log.cleaner_snapshot().unwrap();
    let p = plan(
        &snap,
        CleanerCheckpoint::default(),
        &cc,
        log.log_end_offset(),
        NOW,
    );
    let stats = clean(&snap, &p, &cc, 1 << 20, NOW, |_| Ok(false)).unwrap();
    assert_eq!(stats.segments_written, 0);
    before
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn crash_before_the_swap_rolls_back_or_forward() {
    // An abandoned group leaves nothing behind.
    let dir = tempfile::tempdir().unwrap();
    let before = abandoned_pass(dir.path());
    assert!(!names(dir.path())
        .iter()
        .any(|n| n.ends_with(".swap") || n.ends_with(".cleanend")));
    let log = Log::open(dir.path(), config(), NOW).unwrap();
    assert_eq!(contents(&log), before);
    drop(log);

    // Crash with the cleaned files staged as `.swap` and the marker written: rolled forward at open.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), NOW).unwrap();
    fill(&mut log);
    let before = contents(&log);
    let cc = CompactionConfig::default();
    let snap = log.cleaner_snapshot().unwrap();
    let p = plan(
        &snap,
        CleanerCheckpoint::default(),
        &cc,
        log.log_end_offset(),
        NOW,
    );
    let mut staged = None;
    // A closure that "crashes": it remembers the group and makes the pass stop without abandoning.
    let r = clean(&snap, &p, &cc, 1 << 20, NOW, |g| {
        staged = Some((g.base, g.old.clone()));
        Err(LogError::Offline("simulated crash".into()))
    });
    assert!(r.is_err());
    let (base, old) = staged.unwrap();
    drop(log);
    let n = names(dir.path());
    assert!(
        n.contains(&format!(
            "{}.log.swap",
            crate::log::segment::file_stem(base)
        )),
        "{n:?}"
    );
    assert!(n.iter().any(|n| n.ends_with(".cleanend")));
    let log = Log::open(dir.path(), config(), NOW).unwrap();
    let n = names(dir.path());
    assert!(
        !n.iter()
            .any(|n| n.ends_with(".swap") || n.ends_with(".cleanend") || n.ends_with(".cleaned")),
        "{n:?}"
    );
    for (b, _, _) in old.iter().skip(1) {
        assert!(
            !crate::log::segment::log_path(dir.path(), *b).exists(),
            "old segment {b} removed"
        );
    }
    let after = contents(&log);
    assert!(after.len() < before.len());
    // The rolled-forward group holds the latest values of what it covered; the rest is untouched.
    let model = latest(&before);
    for (o, k, v) in &after {
        if let Some((lo, lv)) = model.get(k) {
            assert!(*o <= *lo);
            if o == lo {
                assert_eq!(v, lv);
            }
        }
    }
    assert_eq!(latest(&after), model, "no key lost its latest value");
    drop(log);

    // The same staged state, but the log file was still `.cleaned` (the crash hit step 3): rolled back.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), NOW).unwrap();
    fill(&mut log);
    let before = contents(&log);
    let snap = log.cleaner_snapshot().unwrap();
    let mut base = 0;
    let _ = clean(&snap, &p, &cc, 1 << 20, NOW, |g| {
        base = g.base;
        Err(LogError::Offline("simulated crash".into()))
    });
    drop(log);
    let swap = format!("{}.log.swap", crate::log::segment::file_stem(base));
    fs::rename(
        dir.path().join(&swap),
        dir.path().join(swap.replace(".swap", ".cleaned")),
    )
    .unwrap();
    let log = Log::open(dir.path(), config(), NOW).unwrap();
    assert_eq!(contents(&log), before);
    let n = names(dir.path());
    assert!(
        !n.iter()
            .any(|n| n.contains(".swap") || n.contains(".clean")),
        "{n:?}"
    );
}

#[test]
fn crash_after_the_swap_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), NOW).unwrap();
    fill(&mut log);
    let cc = CompactionConfig::default();
    let snap = log.cleaner_snapshot().unwrap();
    let p = plan(
        &snap,
        CleanerCheckpoint::default(),
        &cc,
        log.log_end_offset(),
        NOW,
    );
    let mut group = None;
    // Install the first group, then "crash" before step 5 (marker and `.deleted` files still there).
    let _ = clean(&snap, &p, &cc, 1 << 20, NOW, |g| {
        assert!(log.install_cleaned(g)?);
        group = Some((g.base, g.old.clone()));
        Err(LogError::Offline("simulated crash after install".into()))
    });
    let expected = contents(&log);
    let (base, old) = group.unwrap();
    drop(log);
    assert!(old.len() > 1);
    // A reordered rename: one old segment's files came back under their final names.
    let second = old[1].0;
    for f in super::swap_test_paths(dir.path(), second) {
        fs::rename(format!("{}.deleted", f.display()), &f).unwrap();
    }
    let n = names(dir.path());
    assert!(n.iter().any(|n| n.ends_with(".cleanend")), "{n:?}");
    let log = Log::open(dir.path(), config(), NOW).unwrap();
    assert_eq!(contents(&log), expected);
    assert!(!crate::log::segment::log_path(dir.path(), second).exists());
    assert!(crate::log::segment::log_path(dir.path(), base).exists());
    let n = names(dir.path());
    assert!(
        !n.iter()
            .any(|n| n.contains(".deleted") || n.contains(".clean")),
        "{n:?}"
    );
}

#[test]
fn a_changed_log_is_not_swapped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), NOW).unwrap();
    fill(&mut log);
    let before = contents(&log);
    let cc = CompactionConfig::default();
    let snap = log.cleaner_snapshot().unwrap();
    let p = plan(
        &snap,
        CleanerCheckpoint::default(),
        &cc,
        log.log_end_offset(),
        NOW,
    );
    // Retention removes the first segment while the pass runs.
    let second = snap.segments[1].base;
    log.delete_records_before(second).unwrap();
    let stats = clean(&snap, &p, &cc, 1 << 20, NOW, |g| log.install_cleaned(g)).unwrap();
    assert_eq!(stats.segments_written, 0);
    assert_eq!(
        contents(&log),
        before
            .into_iter()
            .filter(|r| r.0 >= second)
            .collect::<Vec<_>>()
    );
    let n = names(dir.path());
    assert!(
        !n.iter()
            .any(|n| n.contains(".swap") || n.contains(".clean")),
        "{n:?}"
    );
}

#[test]
fn a_fetch_in_flight_keeps_reading_the_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), NOW).unwrap();
    fill(&mut log);
    let slices = log.read_slices(0, usize::MAX, i64::MAX, true).unwrap();
    let before: Vec<u8> = slices.iter().flat_map(|s| s.read_all().unwrap()).collect();
    run_pass(&mut log, &CompactionConfig::default(), 1 << 20, NOW).unwrap();
    // The old files are renamed and removed, but the handles the fetch took still read them whole.
    let after: Vec<u8> = slices.iter().flat_map(|s| s.read_all().unwrap()).collect();
    assert_eq!(after, before);
    assert!(testutil::read_all(&log).len() < before.len());
}

#[test]
fn a_pass_never_writes_into_a_recreated_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("t-0");
    let mut log = Log::open(&dir, config(), NOW).unwrap();
    fill(&mut log);
    let cc = CompactionConfig::default();
    let snap = log.cleaner_snapshot().unwrap();
    let p = plan(
        &snap,
        CleanerCheckpoint::default(),
        &cc,
        log.log_end_offset(),
        NOW,
    );
    // The topic is deleted (directory moved aside) and re-created under the same name while the pass runs.
    fs::rename(&dir, parent.path().join("t-0.x-delete")).unwrap();
    fs::create_dir(&dir).unwrap();
    assert!(clean(&snap, &p, &cc, 1 << 20, NOW, |_| Ok(true)).is_err());
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
}

mod txn;
