//! Sparse per-segment indexes: [`OffsetIndex`] (offset -> file position) and
//! [`TimeIndex`] (timestamp -> offset), in Kafka's on-disk formats.
//!
//! Owns: the `.index` / `.timeindex` files of one segment, their in-memory
//! copy, lookups, and load-time sanity checks. The owning `LogSegment` decides
//! when to add entries (every `index.interval.bytes`), and rebuilds an index
//! from the log when [`OffsetIndex::sanity_check`] / [`TimeIndex::sanity_check`]
//! fail. Entries live in a `Vec` (lookups never touch the disk) and are
//! appended to the file with positional writes; files are not preallocated.
//!
//! Formats (big-endian): offset index entry = relative offset u32 + position
//! u32 (8 bytes); time index entry = timestamp i64 + relative offset u32
//! (12 bytes). Relative offsets are relative to the segment's base offset.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::NO_TIMESTAMP;
use super::error::LogError;
use super::fault::{self, Point};

/// Bytes per offset index entry.
pub const OFFSET_ENTRY_SIZE: usize = 8;
/// Bytes per time index entry.
pub const TIME_ENTRY_SIZE: usize = 12;

/// An offset index lookup result: a batch boundary at or before the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    /// Absolute offset of the entry (or the segment base offset).
    pub offset: i64,
    /// Byte position in the segment's log file to start scanning from.
    pub position: u32,
}

/// A time index lookup result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// Largest timestamp seen in the segment up to `offset`.
    pub timestamp: i64,
    /// Absolute offset from which to start scanning.
    pub offset: i64,
}

fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

fn corrupt(path: &Path, msg: impl std::fmt::Display) -> LogError {
    LogError::CorruptMessage(format!("index {}: {msg}", path.display()))
}

/// One fixed-size index entry and its on-disk encoding.
trait Entry: Copy {
    /// Bytes per entry on disk.
    const SIZE: usize;
    /// Decodes one entry from exactly `SIZE` bytes.
    fn decode(bytes: &[u8]) -> Option<Self>;
    /// Encodes into exactly `SIZE` bytes.
    fn encode(&self, out: &mut [u8]);
    /// The entry's offset relative to the segment base.
    fn relative_offset(&self) -> u32;
}

/// (relative offset, position)
impl Entry for (u32, u32) {
    const SIZE: usize = OFFSET_ENTRY_SIZE;
    fn decode(b: &[u8]) -> Option<Self> {
        let (rel, pos) = b.split_first_chunk::<4>()?;
        let pos: [u8; 4] = pos.try_into().ok()?;
        Some((u32::from_be_bytes(*rel), u32::from_be_bytes(pos)))
    }
    fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.0.to_be_bytes());
        out[4..].copy_from_slice(&self.1.to_be_bytes());
    }
    fn relative_offset(&self) -> u32 {
        self.0
    }
}

/// (timestamp, relative offset)
impl Entry for (i64, u32) {
    const SIZE: usize = TIME_ENTRY_SIZE;
    fn decode(b: &[u8]) -> Option<Self> {
        let (ts, rel) = b.split_first_chunk::<8>()?;
        let rel: [u8; 4] = rel.try_into().ok()?;
        Some((i64::from_be_bytes(*ts), u32::from_be_bytes(rel)))
    }
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.0.to_be_bytes());
        out[8..].copy_from_slice(&self.1.to_be_bytes());
    }
    fn relative_offset(&self) -> u32 {
        self.1
    }
}

/// The storage both indexes share: the file, its entries in memory, and load-time problems.
#[derive(Debug)]
struct IndexFile<E> {
    path: PathBuf,
    /// Shared so a flush can fsync it without holding the partition lock.
    file: Arc<File>,
    base_offset: i64,
    entries: Vec<E>,
    max_entries: usize,
    /// Set at load when the file was not a whole number of entries (or too big to read).
    load_error: Option<String>,
}

impl<E: Entry> IndexFile<E> {
    /// Opens (creating if missing) an index file and reads all of it. The allocation is bounded by the
    /// file's real length, and a file larger than the configured maximum is not read at all (reported as a
    /// load error so the caller rebuilds it). Never fails on bad content.
    fn open(path: &Path, base_offset: i64, max_bytes: usize) -> Result<Self, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut load_error = None;
        let mut entries = Vec::new();
        match usize::try_from(file.metadata()?.len()) {
            Ok(len) if len <= max_bytes => {
                let mut data = vec![0u8; len];
                file.read_exact_at(&mut data, 0)?;
                if data.len() % E::SIZE != 0 {
                    load_error = Some(format!(
                        "length {} is not a multiple of {}",
                        data.len(),
                        E::SIZE
                    ));
                }
                entries = data.chunks_exact(E::SIZE).filter_map(E::decode).collect();
            }
            _ => load_error = Some(format!("larger than {max_bytes} bytes")),
        }
        Ok(IndexFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            base_offset,
            entries,
            max_entries: max_bytes / E::SIZE,
            load_error,
        })
    }

    fn absolute(&self, rel: u32) -> i64 {
        self.base_offset.saturating_add(i64::from(rel))
    }

    /// `offset` relative to the base, if it fits the 32-bit entry format.
    fn relative(&self, offset: i64) -> Option<u32> {
        offset
            .checked_sub(self.base_offset)
            .and_then(|r| u32::try_from(r).ok())
    }

    fn loaded_ok(&self) -> Result<(), LogError> {
        match &self.load_error {
            Some(e) => Err(corrupt(&self.path, e)),
            None => Ok(()),
        }
    }

    fn push(&mut self, entry: E) -> Result<(), LogError> {
        let mut bytes = vec![0u8; E::SIZE];
        entry.encode(&mut bytes);
        let at = (self.entries.len() * E::SIZE) as u64;
        if let Err(e) =
            fault::check(Point::IndexWrite).and_then(|()| self.file.write_all_at(&bytes, at))
        {
            // A torn entry must not stay in the file: the next open would read it. If even the truncation
            // fails the caller's error handling takes the log offline.
            fault::check(Point::Truncate).and_then(|()| self.file.set_len(at))?;
            return Err(e.into());
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Removes every entry with offset `>= offset`.
    fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        let keep = self
            .entries
            .partition_point(|e| self.absolute(e.relative_offset()) < offset);
        self.truncate_entries(keep)
    }

    fn truncate_entries(&mut self, keep: usize) -> Result<(), LogError> {
        fault::check(Point::Truncate)?;
        self.file.set_len((keep * E::SIZE) as u64)?;
        self.entries.truncate(keep);
        Ok(())
    }

    fn reset(&mut self) -> Result<(), LogError> {
        self.load_error = None;
        self.truncate_entries(0)
    }

    fn flush(&self) -> Result<(), LogError> {
        fault::check(Point::Fsync)?;
        self.file.sync_data()?;
        Ok(())
    }
}

/// Sparse map from offsets to byte positions in a segment's log file.
///
/// Each entry `(offset, position)` promises that scanning the log from
/// `position` reaches every batch containing offsets `>= offset`.
#[derive(Debug)]
pub struct OffsetIndex {
    /// (relative offset, position), strictly increasing in both.
    index: IndexFile<(u32, u32)>,
}

impl OffsetIndex {
    /// Opens or creates the index at `path`. Never fails on bad content:
    /// problems are reported by [`OffsetIndex::sanity_check`].
    pub fn open(path: &Path, base_offset: i64, max_index_bytes: usize) -> Result<Self, LogError> {
        Ok(OffsetIndex {
            index: IndexFile::open(path, base_offset, max_index_bytes)?,
        })
    }

    /// Checks what was loaded: whole entries, offsets and positions strictly
    /// increasing, positions inside a log of `log_size` bytes.
    pub fn sanity_check(&self, log_size: u64) -> Result<(), LogError> {
        self.index.loaded_ok()?;
        let path = &self.index.path;
        let mut prev: Option<(u32, u32)> = None;
        for &(rel, pos) in &self.index.entries {
            if prev.is_some_and(|(r, p)| rel <= r || pos <= p) {
                return Err(corrupt(path, "entries are not increasing"));
            }
            if u64::from(pos) >= log_size {
                return Err(corrupt(
                    path,
                    format!("position {pos} beyond log size {log_size}"),
                ));
            }
            prev = Some((rel, pos));
        }
        Ok(())
    }

    /// Appends an entry. Entries must advance in both offset and position;
    /// anything else (or a full index) is skipped, because a sparse index
    /// stays correct with fewer entries. Only I/O errors are reported.
    pub fn append(&mut self, offset: i64, position: u32) -> Result<(), LogError> {
        let Some(rel) = self.index.relative(offset) else {
            return Ok(());
        };
        if self.is_full()
            || self
                .index
                .entries
                .last()
                .is_some_and(|&(r, p)| rel <= r || position <= p)
        {
            return Ok(());
        }
        self.index.push((rel, position))
    }

    /// The largest entry with offset `<= offset`, or `(base_offset, 0)`.
    pub fn lookup(&self, offset: i64) -> OffsetPosition {
        let ix = &self.index;
        let idx = ix
            .entries
            .partition_point(|&(rel, _)| ix.absolute(rel) <= offset);
        match idx.checked_sub(1).and_then(|i| ix.entries.get(i)) {
            Some(&(rel, position)) => OffsetPosition {
                offset: ix.absolute(rel),
                position,
            },
            None => OffsetPosition {
                offset: ix.base_offset,
                position: 0,
            },
        }
    }

    /// The last entry, or `(base_offset, 0)` if empty.
    pub fn last_entry(&self) -> OffsetPosition {
        self.lookup(i64::MAX)
    }

    /// Removes every entry with offset `>= offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        self.index.truncate_to(offset)
    }

    /// Drops all entries (before a rebuild).
    pub fn reset(&mut self) -> Result<(), LogError> {
        self.index.reset()
    }

    /// No room for another entry: the segment should roll.
    pub fn is_full(&self) -> bool {
        self.index.entries.len() >= self.index.max_entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.entries.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.index.entries.is_empty()
    }

    /// fsyncs the index file.
    pub fn flush(&self) -> Result<(), LogError> {
        self.index.flush()
    }

    /// The index file (shared), for an fsync outside the partition lock.
    pub fn file(&self) -> Arc<File> {
        self.index.file.clone()
    }

    /// Keeps only the first `keep` entries (rollback of a failed append).
    pub fn truncate_entries(&mut self, keep: usize) -> Result<(), LogError> {
        self.index.truncate_entries(keep)
    }

    /// Removes the file.
    pub fn delete(self) -> Result<(), LogError> {
        remove_if_exists(&self.index.path)
    }
}

/// Sparse map from timestamps to offsets, monotonic in both.
///
/// Entry `(ts, offset)` means: `ts` is the largest timestamp in the segment up
/// to (and first reached at) `offset`, so no record before `offset`'s batch has
/// a timestamp `>= ts`.
#[derive(Debug)]
pub struct TimeIndex {
    /// (timestamp, relative offset), strictly increasing timestamps.
    index: IndexFile<(i64, u32)>,
}

impl TimeIndex {
    /// Opens or creates the time index at `path`. Never fails on bad content:
    /// problems are reported by [`TimeIndex::sanity_check`].
    pub fn open(path: &Path, base_offset: i64, max_index_bytes: usize) -> Result<Self, LogError> {
        Ok(TimeIndex {
            index: IndexFile::open(path, base_offset, max_index_bytes)?,
        })
    }

    /// Checks what was loaded: whole entries, timestamps strictly increasing,
    /// offsets non-decreasing and below `next_offset` (the segment's end).
    pub fn sanity_check(&self, next_offset: i64) -> Result<(), LogError> {
        self.index.loaded_ok()?;
        let ix = &self.index;
        let mut prev: Option<(i64, u32)> = None;
        for &(ts, rel) in &ix.entries {
            if prev.is_some_and(|(t, r)| ts <= t || rel < r) {
                return Err(corrupt(&ix.path, "entries are not monotonic"));
            }
            if ix.absolute(rel) >= next_offset {
                return Err(corrupt(
                    &ix.path,
                    format!(
                        "offset {} beyond segment end {next_offset}",
                        ix.absolute(rel)
                    ),
                ));
            }
            prev = Some((ts, rel));
        }
        Ok(())
    }

    /// Appends `(timestamp, offset)` if `timestamp` is larger than the last
    /// entry's (the index only grows when the max timestamp grows) and the
    /// offset does not go backwards. The last slot is reserved for the entry
    /// written when the segment becomes inactive, which passes
    /// `skip_full_check`. Returns whether an entry was written.
    pub fn maybe_append(
        &mut self,
        timestamp: i64,
        offset: i64,
        skip_full_check: bool,
    ) -> Result<bool, LogError> {
        let Some(rel) = self.index.relative(offset) else {
            return Ok(false);
        };
        let last = self.last_entry();
        if timestamp <= last.timestamp || offset < last.offset {
            return Ok(false);
        }
        if self.index.entries.len() >= self.index.max_entries
            || (!skip_full_check && self.is_full())
        {
            return Ok(false);
        }
        self.index.push((timestamp, rel))?;
        Ok(true)
    }

    /// The largest entry with timestamp `<= timestamp`, or
    /// `(NO_TIMESTAMP, base_offset)`: where to start scanning for the first
    /// record with a timestamp `>= timestamp`.
    pub fn lookup(&self, timestamp: i64) -> TimestampOffset {
        let idx = self
            .index
            .entries
            .partition_point(|&(ts, _)| ts <= timestamp);
        self.entry_at(idx.checked_sub(1))
    }

    /// The last entry, or `(NO_TIMESTAMP, base_offset)` if empty.
    pub fn last_entry(&self) -> TimestampOffset {
        self.entry_at(self.index.entries.len().checked_sub(1))
    }

    fn entry_at(&self, i: Option<usize>) -> TimestampOffset {
        match i.and_then(|i| self.index.entries.get(i)) {
            Some(&(ts, rel)) => TimestampOffset {
                timestamp: ts,
                offset: self.index.absolute(rel),
            },
            None => TimestampOffset {
                timestamp: NO_TIMESTAMP,
                offset: self.index.base_offset,
            },
        }
    }

    /// Removes every entry with offset `>= offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        self.index.truncate_to(offset)
    }

    /// Drops all entries (before a rebuild).
    pub fn reset(&mut self) -> Result<(), LogError> {
        self.index.reset()
    }

    /// Full for regular appends; one slot stays free for the final entry
    /// (like Kafka's `TimeIndex.isFull`).
    pub fn is_full(&self) -> bool {
        self.index.entries.len() >= self.index.max_entries.saturating_sub(1)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.entries.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.index.entries.is_empty()
    }

    /// fsyncs the index file.
    pub fn flush(&self) -> Result<(), LogError> {
        self.index.flush()
    }

    /// The index file (shared), for an fsync outside the partition lock.
    pub fn file(&self) -> Arc<File> {
        self.index.file.clone()
    }

    /// Keeps only the first `keep` entries (rollback of a failed append).
    pub fn truncate_entries(&mut self, keep: usize) -> Result<(), LogError> {
        self.index.truncate_entries(keep)
    }

    /// Removes the file.
    pub fn delete(self) -> Result<(), LogError> {
        remove_if_exists(&self.index.path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    #[test]
    fn offset_index_append_lookup_truncate_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::open(&path, 100, 1024).unwrap();
        assert_eq!(
            idx.lookup(150),
            OffsetPosition {
                offset: 100,
                position: 0
            }
        );
        idx.append(110, 100).unwrap();
        idx.append(120, 200).unwrap();
        idx.append(130, 300).unwrap();
        // Non-increasing entries are ignored.
        idx.append(125, 400).unwrap();
        idx.append(140, 300).unwrap();
        assert_eq!(idx.len(), 3);
        assert_eq!(
            idx.lookup(99),
            OffsetPosition {
                offset: 100,
                position: 0
            }
        );
        assert_eq!(
            idx.lookup(109),
            OffsetPosition {
                offset: 100,
                position: 0
            }
        );
        assert_eq!(
            idx.lookup(110),
            OffsetPosition {
                offset: 110,
                position: 100
            }
        );
        assert_eq!(
            idx.lookup(129),
            OffsetPosition {
                offset: 120,
                position: 200
            }
        );
        assert_eq!(
            idx.lookup(1_000),
            OffsetPosition {
                offset: 130,
                position: 300
            }
        );
        drop(idx);

        let mut idx = OffsetIndex::open(&path, 100, 1024).unwrap();
        idx.sanity_check(1_000).unwrap();
        assert_eq!(idx.len(), 3);
        assert!(idx.sanity_check(300).is_err(), "position beyond the log");
        idx.truncate_to(120).unwrap();
        assert_eq!(
            idx.last_entry(),
            OffsetPosition {
                offset: 110,
                position: 100
            }
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
        idx.flush().unwrap();
        idx.delete().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn offset_index_insane_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.index");
        std::fs::write(&path, [0u8; 13]).unwrap();
        let mut idx = OffsetIndex::open(&path, 0, 1024).unwrap();
        assert!(idx.sanity_check(1_000).is_err());
        idx.reset().unwrap();
        idx.sanity_check(1_000).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

        // Decreasing entries.
        let mut bytes = Vec::new();
        for (rel, pos) in [(5u32, 50u32), (3, 60)] {
            bytes.extend(rel.to_be_bytes());
            bytes.extend(pos.to_be_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        assert!(OffsetIndex::open(&path, 0, 1024)
            .unwrap()
            .sanity_check(1_000)
            .is_err());
        // Larger than allowed.
        assert!(OffsetIndex::open(&path, 0, 8)
            .unwrap()
            .sanity_check(1_000)
            .is_err());
    }

    #[test]
    fn offset_index_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::open(&dir.path().join("x.index"), 0, 16).unwrap();
        idx.append(1, 10).unwrap();
        assert!(!idx.is_full());
        idx.append(2, 20).unwrap();
        assert!(idx.is_full());
        idx.append(3, 30).unwrap();
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn time_index_monotonic_lookup_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000010.timeindex");
        let mut idx = TimeIndex::open(&path, 10, 1200).unwrap();
        assert_eq!(
            idx.lookup(5),
            TimestampOffset {
                timestamp: -1,
                offset: 10
            }
        );
        assert!(idx.maybe_append(100, 12, false).unwrap());
        assert!(!idx.maybe_append(100, 14, false).unwrap(), "same timestamp");
        assert!(!idx.maybe_append(90, 15, false).unwrap(), "older timestamp");
        assert!(idx.maybe_append(200, 20, false).unwrap());
        assert!(
            !idx.maybe_append(300, 19, false).unwrap(),
            "offset went back"
        );
        assert_eq!(idx.len(), 2);
        assert_eq!(
            idx.lookup(99),
            TimestampOffset {
                timestamp: -1,
                offset: 10
            }
        );
        assert_eq!(
            idx.lookup(150),
            TimestampOffset {
                timestamp: 100,
                offset: 12
            }
        );
        assert_eq!(
            idx.lookup(200),
            TimestampOffset {
                timestamp: 200,
                offset: 20
            }
        );
        drop(idx);

        let mut idx = TimeIndex::open(&path, 10, 1200).unwrap();
        idx.sanity_check(21).unwrap();
        assert!(idx.sanity_check(20).is_err(), "offset beyond segment end");
        idx.truncate_to(20).unwrap();
        assert_eq!(
            idx.last_entry(),
            TimestampOffset {
                timestamp: 100,
                offset: 12
            }
        );
        idx.reset().unwrap();
        assert!(idx.is_empty());
    }

    #[test]
    fn time_index_insane_and_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.timeindex");
        let mut bytes = Vec::new();
        for (ts, rel) in [(50i64, 1u32), (40, 2)] {
            bytes.extend(ts.to_be_bytes());
            bytes.extend(rel.to_be_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        assert!(TimeIndex::open(&path, 0, 1200)
            .unwrap()
            .sanity_check(10)
            .is_err());
        std::fs::write(&path, [1u8; 5]).unwrap();
        assert!(TimeIndex::open(&path, 0, 1200)
            .unwrap()
            .sanity_check(10)
            .is_err());

        std::fs::write(&path, []).unwrap();
        let mut idx = TimeIndex::open(&path, 0, 36).unwrap();
        assert!(idx.maybe_append(1, 1, false).unwrap());
        assert!(idx.maybe_append(2, 2, false).unwrap());
        assert!(idx.is_full(), "last slot is reserved");
        assert!(!idx.maybe_append(3, 3, false).unwrap());
        assert!(idx.maybe_append(3, 3, true).unwrap());
        assert!(!idx.maybe_append(4, 4, true).unwrap(), "no room at all");
    }
}
