//! Opening a partition's log: listing the directory, deleting stray files,
//! CRC-scan recovery of the segments above the recovery point and index
//! rebuilds (Kafka's `LogLoader`).
//!
//! Owned by the log module: [`Log::open`] builds a [`Log`] from what is on
//! disk and hands it to the caller, who owns it (and its locking) from then
//! on. Runs before anything else can see the log, so it takes no locks.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use super::checkpoint::{self, OffsetCheckpoints, TMP_SUFFIX};
use super::config::LogConfig;
use super::error::LogError;
use super::flush::{LogHealth, RollFlush};
use super::log::{
    segment_config, Log, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE,
};
use super::producer_state::ProducerStateManager;
use super::segment::{LogSegment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};

/// Suffixes of files left by interrupted deletes/cleaning/swaps (Kafka's
/// conventions); removed at open.
const STRAY_SUFFIXES: [&str; 3] = [".deleted", ".cleaned", ".swap"];

/// Base offset encoded in a segment file name such as
/// `00000000000000000042.log`.
fn parse_base(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Lists segment base offsets in `dir` (sorted), deleting stray files and
/// index files that have no log file.
fn scan_dir(dir: &Path) -> Result<Vec<i64>, LogError> {
    // A swap of cleaned segments that a crash interrupted is finished or rolled back first; what it leaves
    // behind are strays.
    super::cleaner::recover_interrupted_cleaning(dir)?;
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    let our_tmp_files = [
        format!("{RECOVERY_POINT_FILE}{TMP_SUFFIX}"),
        format!("{LOG_START_OFFSET_FILE}{TMP_SUFFIX}"),
        format!("{}{TMP_SUFFIX}", super::cleaner::CLEANER_CHECKPOINT_FILE),
    ];
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !entry.file_type()?.is_file() {
            continue;
        }
        let path = entry.path();
        if STRAY_SUFFIXES.iter().any(|s| name.ends_with(s)) || our_tmp_files.contains(&name) {
            info!(path = %path.display(), "deleting stray file");
            fs::remove_file(&path)?;
        } else if let Some(base) = parse_base(&name, LOG_SUFFIX) {
            logs.push(base);
        } else if let Some(base) = parse_base(&name, INDEX_SUFFIX)
            .or_else(|| parse_base(&name, TIME_INDEX_SUFFIX))
            // A stale transaction index would otherwise be read by a later segment at the same base.
            .or_else(|| parse_base(&name, super::txn_index::TXN_INDEX_SUFFIX))
        {
            indexes.push((base, path));
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            info!(path = %path.display(), "deleting index without a log file");
            fs::remove_file(&path)?;
        }
    }
    Ok(logs)
}

impl Log {
    /// Opens (or creates) the log in `dir`.
    ///
    /// With the clean-shutdown marker present, segments are trusted (indexes
    /// are still sanity-checked and rebuilt if needed) and the marker is
    /// removed. Otherwise every segment from the one containing the persisted
    /// recovery point onward is recovered; the first one that had to be
    /// truncated ends the log (later segments are deleted).
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log, LogError> {
        fs::create_dir_all(dir)?;
        let clean = dir.join(CLEAN_SHUTDOWN_FILE).exists();
        let bases = scan_dir(dir)?;
        let persisted_rp_file = checkpoint::read_offset(&dir.join(RECOVERY_POINT_FILE))?;
        let persisted_rp = persisted_rp_file.unwrap_or(0);
        let seg_cfg = segment_config(&config);
        let config_max_producers = config.max_producers;

        let mut older = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            // A segment is trusted if the log was shut down cleanly, or if all
            // of it lies below the recovery point.
            let trusted = clean || next_base.is_some_and(|n| n <= persisted_rp);
            let (segment, truncated) = LogSegment::open(dir, base, seg_cfg, !trusted, now_ms)?;
            older.insert(base, segment);
            if !trusted && truncated > 0 {
                // Kafka's rule: data after a corrupt batch is not trusted.
                for &later in bases.get(i + 1..).unwrap_or_default() {
                    warn!(dir = %dir.display(), base = later,
                        "deleting segment after a corrupted one");
                    LogSegment::delete_files(dir, later)?;
                }
                break;
            }
        }

        let persisted_lso = checkpoint::read_offset(&dir.join(LOG_START_OFFSET_FILE))?;
        let active = match older.pop_last() {
            Some((_, segment)) => segment,
            None => LogSegment::create(dir, persisted_lso.unwrap_or(0).max(0), seg_cfg, now_ms)?,
        };
        let first_base = older
            .first_key_value()
            .map_or(active.base_offset(), |(base, _)| *base);
        let leo = active.next_offset();
        let log_start_offset = persisted_lso.unwrap_or(first_base).max(first_base).min(leo);
        let recovery_point = if clean { leo } else { persisted_rp.min(leo) };
        checkpoint::remove_marker(dir, CLEAN_SHUTDOWN_FILE)?;
        // Segment files created or deleted above must survive a power loss like the data in them.
        checkpoint::sync_dir(dir)?;
        let dir_file = Arc::new(fs::File::open(dir)?);
        let health = Arc::new(LogHealth::default());
        let roll_flush = Arc::new(RollFlush::new(
            dir,
            dir_file.clone(),
            health.clone(),
            recovery_point,
        ));
        let checkpoints = Arc::new(OffsetCheckpoints::new(
            dir,
            dir_file.clone(),
            [RECOVERY_POINT_FILE, LOG_START_OFFSET_FILE],
            health.clone(),
            [recovery_point, log_start_offset],
            [persisted_rp_file, persisted_lso],
        ));
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            older,
            active,
            log_start_offset,
            recovery_point,
            roll_flush,
            dir_file,
            last_flush_ms: now_ms,
            last_seen_ms: now_ms,
            health,
            generation: 0,
            dir_changes: 0,
            dir_synced: 0,
            checkpoints,
            producers: ProducerStateManager::new(config_max_producers),
            txn_indexes: BTreeMap::new(),
        };
        log.rebuild_producer_state(now_ms)?;
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use crate::log::batch::BatchHeader;
    use crate::log::segment::{index_path, log_path, time_index_path};
    use crate::log::testutil::{self, cfg, filled, produce, read_all, small_segments, Codec, NOW};

    #[test]
    fn reopens_after_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), small_segments());
        let before = read_all(&log);
        let segments = log.num_segments();
        log.close().unwrap();
        assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());

        let mut log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        assert_eq!(log.num_segments(), segments);
        assert_eq!(log.log_end_offset(), 40);
        assert_eq!(log.recovery_point(), 40);
        assert_eq!(read_all(&log), before);
        assert_eq!(
            log.offset_for_timestamp(1_011).unwrap(),
            Some((11, 1_011, 5))
        );
        assert_eq!(log.max_timestamp_offset().unwrap(), Some((39, 1_039, 5)));
        assert_eq!(produce(&mut log, Codec::Zstd, &[5]).first_offset, 40);
    }

    /// Appends `extra` to the active segment's log file behind the log's back.
    fn damage_tail(dir: &Path, base: i64, extra: &[u8]) {
        let path = log_path(dir, base);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(extra);
        fs::write(&path, bytes).unwrap();
    }

    #[test]
    fn recovers_from_torn_tail() {
        let mut half = testutil::batch(Codec::None, &[1, 2], 50);
        half.truncate(half.len() / 2);
        let mut rng = testutil::Rng(99);
        let garbage: Vec<u8> = (0..300).map(|_| rng.next() as u8).collect();
        for tail in [half, garbage, vec![0u8; 5]] {
            let dir = tempfile::tempdir().unwrap();
            let log = filled(dir.path(), small_segments());
            let expected = read_all(&log);
            let active = log.active.base_offset();
            drop(log); // crash: no close, no marker
            damage_tail(dir.path(), active, &tail);

            let mut log = Log::open(dir.path(), small_segments(), NOW).unwrap();
            assert_eq!(log.log_end_offset(), 40);
            assert_eq!(read_all(&log), expected);
            assert_eq!(produce(&mut log, Codec::Lz4, &[7, 8]).first_offset, 40);
            assert_eq!(testutil::decode(&read_all(&log)).len(), 42);
        }
    }

    #[test]
    fn recovery_drops_everything_after_a_bad_crc() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), small_segments());
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4);
        drop(log);
        // Crash before anything was flushed: recover everything.
        let _ = fs::remove_file(dir.path().join(RECOVERY_POINT_FILE));
        // Flip a payload byte of the second batch of the second segment.
        let path = log_path(dir.path(), bases[1]);
        let mut bytes = fs::read(&path).unwrap();
        let first_len = BatchHeader::parse(&bytes).unwrap().total_size();
        bytes[first_len + 70] ^= 0x55;
        fs::write(&path, bytes).unwrap();

        let mut log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.segment_base_offsets(), vec![bases[0], bases[1]]);
        assert_eq!(log.log_end_offset(), bases[1] + 2);
        for later in &bases[2..] {
            assert!(!log_path(dir.path(), *later).exists());
            assert!(!index_path(dir.path(), *later).exists());
        }
        assert_eq!(
            produce(&mut log, Codec::None, &[1]).first_offset,
            bases[1] + 2
        );
    }

    #[test]
    fn trusts_segments_below_recovery_point() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled(dir.path(), small_segments());
        log.flush().unwrap();
        let leo = log.log_end_offset();
        let active = log.active.base_offset();
        drop(log);
        // Torn tail in the active segment is still found: it contains the
        // recovery point, so it is recovered.
        damage_tail(dir.path(), active, &[1, 2, 3]);
        let log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(log.log_end_offset(), leo);
        assert_eq!(
            fs::metadata(log_path(dir.path(), active)).unwrap().len(),
            log.active.size()
        );
    }

    #[test]
    fn rebuilds_missing_or_corrupt_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), small_segments());
        let bases = log.segment_base_offsets();
        let expected = read_all(&log);
        log.close().unwrap();
        fs::remove_file(index_path(dir.path(), bases[0])).unwrap();
        fs::write(time_index_path(dir.path(), bases[1]), [0xabu8; 17]).unwrap();
        fs::write(index_path(dir.path(), bases[2]), [0xffu8; 16]).unwrap();

        let log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        assert_eq!(read_all(&log), expected);
        assert!(
            fs::metadata(index_path(dir.path(), bases[0]))
                .unwrap()
                .len()
                > 0
        );
        assert_eq!(
            fs::metadata(time_index_path(dir.path(), bases[1]))
                .unwrap()
                .len()
                % 12,
            0
        );
        for offset in 0..40 {
            let got = log.read(offset, 1, i64::MAX, true).unwrap();
            let h = BatchHeader::parse(&got).unwrap();
            assert!(h.base_offset <= offset && offset <= h.last_offset());
            assert_eq!(
                log.offset_for_timestamp(1_000 + offset).unwrap(),
                Some((offset, 1_000 + offset, 5))
            );
        }
    }

    #[test]
    fn open_cleans_stray_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), small_segments());
        log.close().unwrap();
        let p = |n: &str| dir.path().join(n);
        fs::write(p("00000000000000000000.log.deleted"), b"x").unwrap();
        fs::write(p("00000000000000000999.index"), b"x").unwrap();
        fs::write(p("00000000000000000999.timeindex"), b"x").unwrap();
        fs::write(p("00000000000000000999.log.swap"), b"x").unwrap();
        fs::write(p("recovery-point.tmp"), b"x").unwrap();
        fs::write(p("leader-epoch-checkpoint"), b"keep").unwrap();
        let log = Log::open(dir.path(), small_segments(), NOW).unwrap();
        for gone in [
            "00000000000000000000.log.deleted",
            "00000000000000000999.index",
            "00000000000000000999.timeindex",
            "00000000000000000999.log.swap",
            "recovery-point.tmp",
        ] {
            assert!(!p(gone).exists(), "{gone}");
        }
        assert!(p("leader-epoch-checkpoint").exists());
        assert_eq!(log.log_end_offset(), 40);
    }

    #[test]
    fn open_empty_dir_uses_persisted_log_start_and_delete_removes_dir() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("topic-0");
        fs::create_dir_all(&part).unwrap();
        checkpoint::write_offset(&part, LOG_START_OFFSET_FILE, 77).unwrap();
        let mut log = Log::open(&part, cfg(), NOW).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (77, 77));
        assert_eq!(produce(&mut log, Codec::None, &[1]).first_offset, 77);
        assert_eq!(log.dir(), part.as_path());
        log.delete().unwrap();
        assert!(!part.exists());
    }
}
