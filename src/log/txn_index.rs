//! The transaction index of one segment (Kafka's `TransactionIndex`, the `.txnindex` file): one entry per
//! aborted transaction whose ABORT marker is in the segment, so a read_committed Fetch can name the aborted
//! transactions overlapping what it returns (`aborted_transactions`) and the consumer can drop their records.
//!
//! Ownership: the [`Log`](super::Log) holds one [`TxnIndex`] per segment that has entries, changed under the
//! partition's write lock: an entry is appended when an ABORT marker is (leader append, follower append, and the
//! producer state replay at load, which re-adds entries a crash lost; entries are kept in marker order, so an
//! entry at or below the last one is a replayed duplicate and skipped). Truncation drops the entries of cut
//! markers; the file goes with its segment. The cleaner writes a cleaned segment's index whole
//! ([`write_txn_index`]) and swaps it in with the segment (`cleaner/swap.rs`).
//!
//! File format (Kafka's `AbortedTxn`), 34 bytes per entry, big-endian: `version: i16 (0) | producer_id: i64 |
//! first_offset: i64 | last_offset: i64 | last_stable_offset: i64`. A torn last entry (a crash mid-write) is
//! cut at load; an entry with an unknown version ends the readable part (the rest is dropped, logged).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::error::LogError;

/// Suffix of transaction index files.
pub const TXN_INDEX_SUFFIX: &str = ".txnindex";
const ENTRY_LEN: usize = 34;
const VERSION: i16 = 0;

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// Producer id of the transaction.
    pub producer_id: i64,
    /// Offset of its first batch in this partition.
    pub first_offset: i64,
    /// Offset of its ABORT marker.
    pub last_offset: i64,
    /// The last stable offset once it was aborted: the oldest other open transaction's first offset, else the
    /// offset after the marker. A fetch whose range ends at or below it needs no later index.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0..2].copy_from_slice(&VERSION.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
        };
        let version = i16::from_be_bytes(b.get(0..2)?.try_into().ok()?);
        (version == VERSION).then_some(())?;
        Some(AbortedTxn {
            producer_id: i64_at(2)?,
            first_offset: i64_at(10)?,
            last_offset: i64_at(18)?,
            last_stable_offset: i64_at(26)?,
        })
    }
}

/// Path of the transaction index of the segment at `base_offset`.
pub fn txn_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!(
        "{}{TXN_INDEX_SUFFIX}",
        super::segment::file_stem(base_offset)
    ))
}

/// The aborted transactions of one segment, in memory and in its file.
#[derive(Debug)]
pub struct TxnIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// Loads the index of the segment at `base_offset` (empty if there is no file). A torn or unreadable tail
    /// is cut from the file.
    pub fn open(dir: &Path, base_offset: i64) -> Result<TxnIndex, LogError> {
        let path = txn_index_path(dir, base_offset);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut entries = Vec::with_capacity(bytes.len() / ENTRY_LEN);
        for chunk in bytes.chunks_exact(ENTRY_LEN) {
            match AbortedTxn::decode(chunk) {
                Some(e)
                    if entries
                        .last()
                        .is_none_or(|l: &AbortedTxn| e.last_offset > l.last_offset) =>
                {
                    entries.push(e);
                }
                _ => break,
            }
        }
        let index = TxnIndex { path, entries };
        if index.entries.len() * ENTRY_LEN != bytes.len() {
            warn!(path = %index.path.display(), kept = index.entries.len(), "cutting a damaged transaction index");
            index.rewrite()?;
        }
        Ok(index)
    }

    /// The entries, in marker order.
    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    /// Appends an entry (written to the file at once, fsynced with the segment by the flush). An entry whose
    /// marker is not after the last one is a replayed duplicate: skipped, `false`.
    pub fn append(&mut self, entry: AbortedTxn) -> Result<bool, LogError> {
        if self
            .entries
            .last()
            .is_some_and(|l| entry.last_offset <= l.last_offset)
        {
            return Ok(false);
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&entry.encode())?;
        self.entries.push(entry);
        Ok(true)
    }

    /// Drops the entries whose marker is at or after `offset` (log truncation).
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        let keep = self.entries.partition_point(|e| e.last_offset < offset);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.rewrite()?;
        }
        Ok(())
    }

    /// Adds the entries overlapping `[from, upper)` to `out` (Kafka's `collectAbortedTxns`); true if the search
    /// is complete: an entry's last stable offset reaches `upper`, so no later segment can hold one that
    /// overlaps.
    pub fn collect(&self, from: i64, upper: i64, out: &mut Vec<AbortedTxn>) -> bool {
        for e in &self.entries {
            if e.last_offset >= from && e.first_offset < upper {
                out.push(*e);
            }
            if e.last_stable_offset >= upper {
                return true;
            }
        }
        false
    }

    /// Deletes the file.
    pub fn delete(&self) -> Result<(), LogError> {
        delete_txn_index(&self.path)
    }

    fn rewrite(&self) -> Result<(), LogError> {
        if self.entries.is_empty() {
            return delete_txn_index(&self.path);
        }
        let bytes: Vec<u8> = self.entries.iter().flat_map(AbortedTxn::encode).collect();
        fs::write(&self.path, bytes)?;
        Ok(())
    }
}

/// Writes a whole new index file at `path` (the cleaner's `.cleaned` one) and fsyncs it.
pub fn write_txn_index(path: &Path, entries: &[AbortedTxn]) -> Result<(), LogError> {
    let bytes: Vec<u8> = entries.iter().flat_map(AbortedTxn::encode).collect();
    let mut f = fs::File::create(path)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Removes a transaction index file if it exists.
pub fn delete_txn_index(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aborted(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn entries_are_written_read_back_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TxnIndex::open(dir.path(), 100).unwrap();
        assert!(idx.entries().is_empty());
        assert!(!txn_index_path(dir.path(), 100).exists());
        assert!(idx.append(aborted(1, 100, 105, 106)).unwrap());
        assert!(idx.append(aborted(2, 101, 110, 111)).unwrap());
        assert!(!idx.append(aborted(1, 100, 105, 106)).unwrap(), "replayed");
        let len = fs::metadata(txn_index_path(dir.path(), 100)).unwrap().len();
        assert_eq!(len, 2 * ENTRY_LEN as u64);
        let again = TxnIndex::open(dir.path(), 100).unwrap();
        assert_eq!(again.entries(), idx.entries());
        assert_eq!(
            &fs::read(txn_index_path(dir.path(), 100)).unwrap()[..10],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
    }

    #[test]
    fn a_torn_or_damaged_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TxnIndex::open(dir.path(), 0).unwrap();
        idx.append(aborted(1, 0, 5, 6)).unwrap();
        idx.append(aborted(2, 3, 9, 10)).unwrap();
        let path = txn_index_path(dir.path(), 0);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend([0u8; 7]);
        fs::write(&path, &bytes).unwrap();
        assert_eq!(TxnIndex::open(dir.path(), 0).unwrap().entries().len(), 2);
        assert_eq!(fs::read(&path).unwrap().len(), 2 * ENTRY_LEN, "cut");
        // An unknown version in the second entry drops it and what follows.
        let mut bytes = fs::read(&path).unwrap();
        bytes[ENTRY_LEN + 1] = 9;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(
            TxnIndex::open(dir.path(), 0).unwrap().entries(),
            &[aborted(1, 0, 5, 6)]
        );
    }

    #[test]
    fn truncation_drops_cut_markers_and_an_empty_index_has_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TxnIndex::open(dir.path(), 0).unwrap();
        idx.append(aborted(1, 0, 5, 6)).unwrap();
        idx.append(aborted(2, 3, 9, 10)).unwrap();
        idx.truncate_to(9).unwrap();
        assert_eq!(
            TxnIndex::open(dir.path(), 0).unwrap().entries(),
            &[aborted(1, 0, 5, 6)]
        );
        idx.truncate_to(0).unwrap();
        assert!(!txn_index_path(dir.path(), 0).exists());
        idx.delete().unwrap();
    }

    #[test]
    fn collect_finds_overlapping_entries_and_knows_when_it_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TxnIndex::open(dir.path(), 0).unwrap();
        idx.append(aborted(1, 0, 5, 3)).unwrap(); // another transaction from 3 was still open
        idx.append(aborted(2, 3, 9, 10)).unwrap();
        idx.append(aborted(3, 12, 15, 16)).unwrap();
        let mut out = Vec::new();
        assert!(idx.collect(6, 10, &mut out));
        assert_eq!(out, vec![aborted(2, 3, 9, 10)]);
        let mut out = Vec::new();
        assert!(
            !idx.collect(0, 100, &mut out),
            "a later segment may hold more"
        );
        assert_eq!(out.len(), 3);
        let mut out = Vec::new();
        assert!(idx.collect(10, 12, &mut out));
        assert!(out.is_empty());
    }
}
