//! Writing cleaned segments and swapping them in, crash-safely (Kafka's `.cleaned` / `.swap` protocol,
//! `UnifiedLog.replaceSegments` and `LogLoader`'s swap recovery).
//!
//! A group of old segments `[base, end)` is replaced by one cleaned segment named after `base`:
//! 1. `<base>.log.cleaned` (+ `.index.cleaned`, `.timeindex.cleaned`, and `.txnindex.cleaned` if the cleaned
//!    segment keeps ABORT markers) are written and fsynced — no lock.
//! 2. The marker `<base>.cleanend` (holding `base end`) is written durably (this also makes step 1's files
//!    durable in the directory).
//! 3. The index files, then the log file, are renamed `.cleaned` -> `.swap`; the directory is fsynced.
//! 4. Under the partition's write lock ([`Log::install_cleaned`]): the old segments' files (transaction indexes
//!    too) are renamed to `.deleted`, the `.swap` files to their final names (the transaction index last, after
//!    the log), the new segment is opened and replaces the old ones in memory, with its transaction index.
//! 5. With the lock released: directory fsync, marker removed, `.deleted` files removed.
//!
//! On open ([`recover_interrupted_cleaning`], before anything else looks at the directory), a marker means a
//! swap was in progress: with `<base>.log.cleaned` still there, steps 1–3 did not finish and the cleaned files
//! are dropped (roll back: the old segments are intact); with `<base>.log.swap` there, the cleaned segment is
//! complete and durable, so every old segment file in `[base, end)` is removed and the `.swap` files renamed
//! (roll forward; a missing `.swap` index is rebuilt from the log at open); with neither, step 4 ran, and any old
//! segment in `(base, end)` that a reordered rename left behind is removed, and a `<base>.txnindex.swap` left
//! behind is renamed (the transaction index cannot be rebuilt from the log the way the others can, so it is
//! never removed under its final name while it may be the new one). Without a marker, `.cleaned`,
//! `.swap` and `.deleted` files are strays and the loader deletes them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::{dir_id, for_each_batch, CleanerSnapshot, Filtered, SegmentView};
use crate::log::batch::BatchHeader;
use crate::log::checkpoint::{sync_dir, write_file_durably};
use crate::log::error::LogError;
use crate::log::log::{segment_config, Log};
use crate::log::segment::{
    file_stem, index_path, log_path, time_index_path, LogSegment, INDEX_SUFFIX, LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
};
use crate::log::txn_index::{
    txn_index_path, write_txn_index, AbortedTxn, TxnIndex, TXN_INDEX_SUFFIX,
};

const CLEANED: &str = ".cleaned";
const SWAP: &str = ".swap";
const DELETED: &str = ".deleted";
/// Suffix of the marker of a swap in progress.
pub(crate) const MARKER_SUFFIX: &str = ".cleanend";

fn with_suffix(p: PathBuf, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", p.display()))
}

/// The files of the segment at `base`, under their final names, in the order they are staged (the log last;
/// the transaction index, first, may not exist).
fn segment_files(dir: &Path, base: i64) -> [PathBuf; 4] {
    [
        txn_index_path(dir, base),
        index_path(dir, base),
        time_index_path(dir, base),
        log_path(dir, base),
    ]
}

/// Renames `from` to `to`; a missing `from` is fine only for a transaction index (a segment without one).
fn rename_staged(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                && to
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(TXN_INDEX_SUFFIX)) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn marker_name(base: i64) -> String {
    format!("{}{MARKER_SUFFIX}", file_stem(base))
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A cleaned segment written to disk (as `.swap` files) and waiting to be installed.
#[derive(Debug)]
pub struct CleanedGroup {
    pub(crate) dir: PathBuf,
    pub(crate) dir_id: Option<(u64, u64)>,
    pub(crate) base: i64,
    /// The old segments' (base, size, next offset), checked again under the lock.
    pub(crate) old: Vec<(i64, u64, i64)>,
    /// The log's truncation generation when the pass started.
    pub(crate) generation: u64,
    /// Bytes of the cleaned segment.
    pub(crate) size: u64,
}

/// Steps 1–3: writes the batches `filter` keeps from `group` into `<base>.*.cleaned`, fsyncs them, writes the
/// marker and renames the files to `.swap`. `filter` adds the transaction index entries of ABORT markers it
/// keeps to its third argument.
pub(crate) fn write_cleaned(
    snap: &CleanerSnapshot,
    group: &[SegmentView],
    mut filter: impl FnMut(&BatchHeader, &[u8], &mut Vec<AbortedTxn>) -> Result<Filtered, LogError>,
    now_ms: i64,
) -> Result<CleanedGroup, LogError> {
    let (Some(first), Some(last)) = (group.first(), group.last()) else {
        return Err(LogError::InvalidRecord("empty cleaning group".into()));
    };
    let dir = &snap.dir;
    let moved = || {
        LogError::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} was removed or replaced during cleaning", dir.display()),
        ))
    };
    if snap.dir_id.is_none() || dir_id(dir) != snap.dir_id {
        return Err(moved());
    }
    let base = first.base;
    let end = last.next_offset.max(last.base + 1);
    let written = (|| -> Result<u64, LogError> {
        let mut seg =
            LogSegment::create_with_suffix(dir, base, snap.segment_config, now_ms, CLEANED)?;
        let mut aborted = Vec::new();
        for old in group {
            for_each_batch(old, |h, batch| {
                let bytes = match filter(h, batch, &mut aborted)? {
                    Filtered::Dropped => return Ok(true),
                    Filtered::Unchanged => batch.to_vec(),
                    Filtered::Rewritten(b) => b,
                };
                let nh = BatchHeader::parse(&bytes)?;
                seg.append(
                    nh.base_offset,
                    nh.last_offset(),
                    nh.max_timestamp,
                    nh.last_offset(),
                    &bytes,
                )?;
                Ok(true)
            })?;
        }
        seg.on_become_inactive()?;
        seg.flush()?;
        if !aborted.is_empty() {
            write_txn_index(&with_suffix(txn_index_path(dir, base), CLEANED), &aborted)?;
        }
        Ok(seg.size())
    })();
    let cleaned = CleanedGroup {
        dir: dir.clone(),
        dir_id: snap.dir_id,
        base,
        old: group
            .iter()
            .map(|s| (s.base, s.size, s.next_offset))
            .collect(),
        generation: snap.generation,
        size: 0,
    };
    let size = match written {
        Ok(size) => size,
        Err(e) => {
            cleaned.abandon();
            return Err(e);
        }
    };
    if dir_id(dir) != snap.dir_id {
        // The partition was deleted (and maybe re-created) meanwhile: a marker here could make another log's
        // loader act on our offsets. Our files went with the old directory.
        return Err(moved());
    }
    let staged = (|| -> io::Result<()> {
        write_file_durably(
            dir,
            &marker_name(base),
            format!("{base} {end}\n").as_bytes(),
        )?;
        // The log file last: once `<base>.log.swap` exists, its indexes are renamed too (or rebuilt).
        for f in segment_files(dir, base) {
            rename_staged(&with_suffix(f.clone(), CLEANED), &with_suffix(f, SWAP))?;
        }
        sync_dir(dir).map_err(io::Error::other)
    })();
    if let Err(e) = staged {
        cleaned.abandon();
        return Err(e.into());
    }
    Ok(CleanedGroup { size, ..cleaned })
}

impl CleanedGroup {
    /// Drops a cleaned segment that was not installed. The marker goes first (durably): a marker whose
    /// `.cleaned` and `.swap` files are gone would read as "installed" at the next open.
    pub(crate) fn abandon(&self) {
        if dir_id(&self.dir) != self.dir_id {
            return; // the directory was deleted or replaced; nothing of ours is in the new one
        }
        let marker = self.dir.join(marker_name(self.base));
        if let Err(e) =
            remove_if_exists(&marker).and_then(|()| sync_dir(&self.dir).map_err(io::Error::other))
        {
            // The files stay too, so the next open rolls the clean back.
            warn!(dir = %self.dir.display(), error = %e, "cannot remove a cleaning marker");
            return;
        }
        for f in segment_files(&self.dir, self.base) {
            for suffix in [CLEANED, SWAP] {
                if let Err(e) = remove_if_exists(&with_suffix(f.clone(), suffix)) {
                    warn!(path = %f.display(), error = %e, "cannot remove an abandoned cleaned segment file");
                }
            }
        }
    }

    /// Step 5: makes the swap durable, then removes the marker and the old files.
    pub(crate) fn finish(&self) -> Result<(), LogError> {
        if dir_id(&self.dir) != self.dir_id {
            return Ok(()); // deleted right after the swap: nothing left to tidy here
        }
        sync_dir(&self.dir)?;
        fs::remove_file(self.dir.join(marker_name(self.base)))?;
        sync_dir(&self.dir)?;
        for (base, _, _) in &self.old {
            for f in segment_files(&self.dir, *base) {
                remove_if_exists(&with_suffix(f, DELETED))?;
            }
        }
        Ok(())
    }
}

impl Log {
    /// Step 4, under the caller's write lock: replaces the group's old segments with the cleaned one. Returns
    /// false (and changes nothing) if the log changed since the pass started (retention deleted a segment,
    /// truncation, DeleteRecords emptied it); the caller then abandons the cleaned files. A failed rename leaves
    /// names the in-memory segments no longer match, so the log goes offline; the next open finishes the swap.
    pub fn install_cleaned(&mut self, group: &CleanedGroup) -> Result<bool, LogError> {
        self.check_online()?;
        let unchanged = group.generation == self.generation
            && group.old.iter().all(|(base, size, next)| {
                self.older
                    .get(base)
                    .is_some_and(|s| s.size() == *size && s.next_offset() == *next)
            });
        if !unchanged {
            return Ok(false);
        }
        let renamed = (|| -> io::Result<()> {
            for (base, _, _) in &group.old {
                for f in segment_files(&self.dir, *base) {
                    match fs::rename(&f, with_suffix(f.clone(), DELETED)) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                }
            }
            // The transaction index after the log: see the module doc (recovery).
            let [txn, files @ ..] = segment_files(&self.dir, group.base);
            for f in files.into_iter().chain([txn]) {
                rename_staged(&with_suffix(f.clone(), SWAP), &f)?;
            }
            Ok(())
        })();
        if let Err(e) = renamed {
            return Err(self.go_offline(format!(
                "swapping in cleaned segment {} failed: {e}",
                group.base
            )));
        }
        let seg_cfg = segment_config(&self.config);
        let fresh = match LogSegment::open(&self.dir, group.base, seg_cfg, false, self.last_seen_ms)
        {
            Ok((seg, _)) => seg,
            Err(e) => {
                return Err(self.go_offline(format!(
                    "opening cleaned segment {} failed: {e}",
                    group.base
                )))
            }
        };
        let index = match TxnIndex::open(&self.dir, group.base) {
            Ok(i) => i,
            Err(e) => {
                return Err(self.go_offline(format!(
                    "opening the transaction index of cleaned segment {} failed: {e}",
                    group.base
                )))
            }
        };
        for (base, _, _) in &group.old {
            // Dropped, not deleted: its files were renamed away above; readers holding its file keep reading.
            self.older.remove(base);
            self.txn_indexes.remove(base);
        }
        self.older.insert(group.base, fresh);
        if !index.entries().is_empty() {
            self.txn_indexes.insert(group.base, index);
        }
        self.dir_changes += 1;
        Ok(true)
    }
}

/// Finishes or rolls back a swap that a crash interrupted (see the module doc). Runs at open, before the
/// directory is listed.
pub(crate) fn recover_interrupted_cleaning(dir: &Path) -> Result<(), LogError> {
    let mut markers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if name.ends_with(&format!("{MARKER_SUFFIX}.tmp")) {
            remove_if_exists(&dir.join(&name))?;
        } else if let Some(stem) = name.strip_suffix(MARKER_SUFFIX) {
            markers.push(stem.to_string());
        }
    }
    if markers.is_empty() {
        return Ok(());
    }
    for stem in markers {
        let path = dir.join(format!("{stem}{MARKER_SUFFIX}"));
        let text = fs::read_to_string(&path)?;
        let mut it = text.split_whitespace().map(str::parse::<i64>);
        let (Some(Ok(base)), Some(Ok(end))) = (it.next(), it.next()) else {
            return Err(LogError::CorruptMessage(format!(
                "{}: unreadable cleaning marker",
                path.display()
            )));
        };
        let log = log_path(dir, base);
        if with_suffix(log.clone(), CLEANED).exists() {
            info!(dir = %dir.display(), base, "rolling back an interrupted clean");
            for f in segment_files(dir, base) {
                remove_if_exists(&with_suffix(f.clone(), CLEANED))?;
                remove_if_exists(&with_suffix(f, SWAP))?;
            }
        } else if with_suffix(log.clone(), SWAP).exists() {
            info!(dir = %dir.display(), base, end, "completing an interrupted swap of a cleaned segment");
            remove_old_segments(dir, base, end, true)?;
            for f in segment_files(dir, base) {
                let swap = with_suffix(f.clone(), SWAP);
                if swap.exists() {
                    fs::rename(swap, f)?;
                }
            }
        } else {
            remove_old_segments(dir, base, end, false)?;
            let txn = txn_index_path(dir, base);
            let swap = with_suffix(txn.clone(), SWAP);
            if swap.exists() {
                fs::rename(swap, txn)?;
            }
        }
        sync_dir(dir)?;
        fs::remove_file(&path)?;
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes the files of segments with base offsets in `[base, end)` (`(base, end)` unless `including_base`),
/// under their final names and as `.deleted`.
fn remove_old_segments(
    dir: &Path,
    base: i64,
    end: i64,
    including_base: bool,
) -> Result<(), LogError> {
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().to_string();
        let plain = name.strip_suffix(DELETED).unwrap_or(&name);
        let seg_base = [
            LOG_SUFFIX,
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            TXN_INDEX_SUFFIX,
        ]
        .iter()
        .find_map(|s| plain.strip_suffix(s))
        .filter(|stem| !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|stem| stem.parse::<i64>().ok());
        if let Some(b) = seg_base {
            if (b > base || (including_base && b == base)) && b < end {
                remove_if_exists(&dir.join(&name))?;
            }
        }
    }
    Ok(())
}
