//! Small text checkpoint files in a partition directory (`recovery-point`,
//! `log-start-offset`) and the clean-shutdown marker.
//!
//! Owned by `log.rs` and `loader.rs`, which decides what to persist and when; this file
//! only makes the writes crash-safe (write temp file, fsync, rename, fsync
//! directory) and the reads tolerant of garbage.
//!
//! [`OffsetCheckpoints`] keeps those writes out of the partition lock: under the lock the log only records the
//! value it wants a file to hold (an atomic); whoever released the lock then calls [`OffsetCheckpoints::sync`],
//! which writes the *latest* wanted values under its own small mutex (one per log). Because a writer always
//! reads the newest wanted value while holding that mutex, a slow writer can never put back an older value
//! over a newer one. A file may lag memory for a moment: a lagging recovery point only means more recovery, and
//! a lagging log start offset is raised again at open to the first segment's base; DeleteRecords answers only
//! after its value is on disk.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::warn;

use super::error::LogError;
use super::fault::{self, Point};
use super::flush::LogHealth;

/// Suffix of temporary files being written; leftovers are deleted on open.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Longest checkpoint file we read; an i64 in text is at most 20 bytes.
const MAX_CHECKPOINT_BYTES: u64 = 64;

/// Reads an offset written by [`write_offset`]. Missing file -> `None`;
/// unparseable content is logged and also `None`, so callers fall back to the
/// safe default (e.g. recover everything).
pub(crate) fn read_offset(path: &Path) -> Result<Option<i64>, LogError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut text = String::new();
    if file
        .take(MAX_CHECKPOINT_BYTES)
        .read_to_string(&mut text)
        .is_err()
    {
        warn!(path = %path.display(), "checkpoint file is not text, ignoring it");
        return Ok(None);
    }
    match text.trim().parse::<i64>() {
        Ok(v) => Ok(Some(v)),
        Err(_) => {
            warn!(path = %path.display(), "checkpoint file does not hold an offset, ignoring it");
            Ok(None)
        }
    }
}

/// Atomically replaces `dir/name` with `value` in text (tests; the log uses [`write_offset_in`]).
#[cfg(test)]
pub(crate) fn write_offset(dir: &Path, name: &str, value: i64) -> Result<(), LogError> {
    write_file_durably(dir, name, format!("{value}\n").as_bytes())?;
    Ok(())
}

/// A failed [`write_offset_in`], by what it means. Only a failed fsync may have lost data the caller relied on
/// (Linux may drop the dirty pages and clear the error, so a retry proves nothing): the log goes offline. Any
/// failure before it (creating the temporary file, EMFILE or ENOENT; writing it) left the old file in place and
/// is simply retried later.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// An fsync failed.
    #[error("fsync failed: {0}")]
    Sync(io::Error),
    /// Nothing changed on disk, or only in the temporary file.
    #[error("{0}")]
    NotWritten(io::Error),
}

/// Like [`write_offset`], for a log that holds its directory open (`dir_file`): no file is opened after the
/// temporary one is created, so only the fsyncs and the rename can fail once anything changed.
pub(crate) fn write_offset_in(
    dir: &Path,
    dir_file: &File,
    name: &str,
    value: i64,
) -> Result<(), WriteError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut f = fault::check(Point::Open)
        .and_then(|()| File::create(&tmp))
        .map_err(WriteError::NotWritten)?;
    f.write_all(format!("{value}\n").as_bytes())
        .map_err(WriteError::NotWritten)?;
    fault::check(Point::Fsync)
        .and_then(|()| f.sync_all())
        .map_err(WriteError::Sync)?;
    drop(f);
    fs::rename(&tmp, dir.join(name)).map_err(WriteError::NotWritten)?;
    fault::check(Point::Fsync)
        .and_then(|()| dir_file.sync_all())
        .map_err(WriteError::Sync)
}

/// Atomically and durably replaces `dir/name` with `contents`: write a temporary file, fsync it, rename it over
/// the old one, fsync the directory. After a power loss the file holds the old or the new contents, never less.
pub fn write_file_durably(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Which offset checkpoint file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Checkpoint {
    /// The recovery point.
    RecoveryPoint = 0,
    /// The log start offset.
    LogStart = 1,
}

/// The wanted and written values of one log's offset checkpoint files; shared (`Arc`) by the log and whoever
/// syncs them after releasing the log's lock.
#[derive(Debug)]
pub struct OffsetCheckpoints {
    dir: PathBuf,
    /// The partition directory, held open by the log (see [`write_offset_in`]).
    dir_file: Arc<File>,
    names: [&'static str; 2],
    health: Arc<LogHealth>,
    wanted: [AtomicI64; 2],
    /// What each file holds (`None`: unknown or missing). The mutex serialises writers.
    written: Mutex<[Option<i64>; 2]>,
}

impl OffsetCheckpoints {
    pub(crate) fn new(
        dir: &Path,
        dir_file: Arc<File>,
        names: [&'static str; 2],
        health: Arc<LogHealth>,
        wanted: [i64; 2],
        written: [Option<i64>; 2],
    ) -> Self {
        OffsetCheckpoints {
            dir: dir.to_path_buf(),
            dir_file,
            names,
            health,
            wanted: wanted.map(AtomicI64::new),
            written: Mutex::new(written),
        }
    }

    /// Records the value a file should hold; cheap, meant to be called under the log's lock.
    pub(crate) fn want(&self, which: Checkpoint, value: i64) {
        self.wanted[which as usize].store(value, Ordering::Release);
    }

    /// Writes (temp file, fsync, rename, directory fsync) every file whose wanted value is not yet on disk.
    /// Blocking: call it without the log's lock where the caller can. Only a failed fsync takes the log offline
    /// ([`LogError::Offline`]: the data may be lost and the recovery point must never be trusted again); a file
    /// that could not even be written (say, EMFILE creating the temporary file) changed nothing on disk and is an
    /// I/O error: the wanted value stays wanted and the next sync writes it.
    pub fn sync(&self) -> Result<(), LogError> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        // Through the directory the log holds open, not its name: this runs after the partition lock is released,
        // and the partition may have been deleted meanwhile (its directory moved aside) and re-created under the
        // same name; the new log's files must not get this one's values. A removed directory fails the create
        // (an I/O error, nothing written).
        let dir = open_dir_path(&self.dir_file).unwrap_or_else(|| self.dir.clone());
        for i in 0..2 {
            let value = self.wanted[i].load(Ordering::Acquire);
            if written[i] == Some(value) {
                continue;
            }
            let name = self.names[i];
            match write_offset_in(&dir, &self.dir_file, name, value) {
                Ok(()) => written[i] = Some(value),
                Err(WriteError::Sync(e)) => {
                    let reason = format!("cannot fsync {name}: {e}");
                    self.health.set_offline(&self.dir, &reason);
                    return Err(LogError::Offline(reason));
                }
                // The old file is still in place: retried by the next sync.
                Err(WriteError::NotWritten(e)) => return Err(LogError::Io(e)),
            }
        }
        Ok(())
    }

    /// [`OffsetCheckpoints::sync`] for callers whose data is already durable (flushes, retention after its
    /// segments are gone): a file that could not be written is logged and retried by the next sync; only a failed
    /// fsync (the log went offline) is an error.
    pub fn sync_or_retry_later(&self) -> Result<(), LogError> {
        match self.sync() {
            Err(LogError::Io(e)) => {
                warn!(dir = %self.dir.display(), error = %e,
                    "cannot write a checkpoint file; retried at the next flush");
                Ok(())
            }
            other => other,
        }
    }
}

/// A path that names the directory `dir` is open on, wherever it was moved (Linux's `/proc/self/fd`), if there is
/// one.
fn open_dir_path(dir: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    path.is_dir().then_some(path)
}

/// Creates an empty marker file durably.
pub(crate) fn write_marker(dir: &Path, name: &str) -> Result<(), LogError> {
    File::create(dir.join(name))?.sync_all()?;
    sync_dir(dir)
}

/// Removes a marker file durably (a no-op if it is missing).
pub(crate) fn remove_marker(dir: &Path, name: &str) -> Result<(), LogError> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// fsyncs a directory so renames/creates/deletes in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recovery-point");
        assert_eq!(read_offset(&path).unwrap(), None);
        write_offset(dir.path(), "recovery-point", 1234).unwrap();
        assert_eq!(read_offset(&path).unwrap(), Some(1234));
        fs::write(&path, b"12ab").unwrap();
        assert_eq!(read_offset(&path).unwrap(), None);
        fs::write(&path, [0xffu8; 1000]).unwrap();
        assert_eq!(read_offset(&path).unwrap(), None);
        write_marker(dir.path(), "m").unwrap();
        assert!(dir.path().join("m").exists());
        remove_marker(dir.path(), "m").unwrap();
        remove_marker(dir.path(), "m").unwrap();
        assert!(!dir.path().join("m").exists());
    }

    /// A sync after the partition's directory was moved aside (a deleted topic) and a new one made under its name
    /// writes into the moved directory, never the new one.
    #[test]
    fn offset_checkpoints_follow_the_open_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("t-0");
        fs::create_dir(&dir).unwrap();
        let dir_file = Arc::new(File::open(&dir).unwrap());
        let ck = OffsetCheckpoints::new(
            &dir,
            dir_file,
            ["a", "b"],
            Arc::new(LogHealth::default()),
            [0, 0],
            [None, None],
        );
        let moved = root.path().join("t-0.x-delete");
        fs::rename(&dir, &moved).unwrap();
        fs::create_dir(&dir).unwrap();
        ck.want(Checkpoint::LogStart, 5);
        ck.sync().unwrap();
        assert_eq!(read_offset(&moved.join("b")).unwrap(), Some(5));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "the new directory");
        // Removed altogether: nothing is written, and the log is not taken offline for it.
        fs::remove_dir_all(&moved).unwrap();
        ck.want(Checkpoint::LogStart, 6);
        assert!(matches!(ck.sync(), Err(LogError::Io(_))));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "the new directory");
    }

    /// The files follow the newest wanted value, whoever syncs; only a failed fsync takes the log offline.
    #[test]
    fn offset_checkpoints_write_the_latest_value() {
        let dir = tempfile::tempdir().unwrap();
        let health = Arc::new(LogHealth::default());
        let dir_file = Arc::new(File::open(dir.path()).unwrap());
        let ck = OffsetCheckpoints::new(
            dir.path(),
            dir_file,
            ["a", "b"],
            health.clone(),
            [0, 0],
            [None, None],
        );
        let read = |n: &str| read_offset(&dir.path().join(n)).unwrap();
        ck.want(Checkpoint::RecoveryPoint, 10);
        assert_eq!(
            read("a"),
            None,
            "nothing is written under the caller's lock"
        );
        ck.want(Checkpoint::RecoveryPoint, 20);
        ck.sync().unwrap();
        assert_eq!((read("a"), read("b")), (Some(20), Some(0)));
        // A writer that was slow to start still writes the newest value, never the one it was called for.
        ck.want(Checkpoint::LogStart, 7);
        ck.want(Checkpoint::LogStart, 9);
        ck.sync().unwrap();
        ck.sync().unwrap();
        assert_eq!(read("b"), Some(9));
        // A file that cannot even be created (EMFILE) is not fatal: the value stays wanted and the next sync
        // writes it.
        fault::plan::fail(Point::Open, 0, libc::EMFILE, 1);
        ck.want(Checkpoint::RecoveryPoint, 30);
        assert!(matches!(ck.sync(), Err(LogError::Io(_))));
        fault::plan::clear();
        assert!(!health.is_offline());
        assert_eq!(read("a"), Some(20));
        fault::plan::fail(Point::Open, 0, libc::EMFILE, 1);
        ck.sync_or_retry_later().unwrap();
        fault::plan::clear();
        assert_eq!(read("a"), Some(20));
        ck.sync().unwrap();
        assert_eq!(read("a"), Some(30));
        // A failed fsync takes the log offline.
        fault::plan::fail(Point::Fsync, 0, libc::EIO, 1);
        ck.want(Checkpoint::RecoveryPoint, 40);
        assert!(matches!(
            ck.sync_or_retry_later(),
            Err(LogError::Offline(_))
        ));
        fault::plan::clear();
        assert!(health.is_offline());
        assert_eq!(read("a"), Some(30));
    }
}
