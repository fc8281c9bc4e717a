//! Small text checkpoint files in a partition directory (`recovery-point`,
//! `log-start-offset`) and the clean-shutdown marker.
//!
//! Owned by `log.rs` and `loader.rs`, which decides what to persist and when; this file
//! only makes the writes crash-safe (write temp file, fsync, rename, fsync
//! directory) and the reads tolerant of garbage.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use tracing::warn;

use super::error::LogError;
use super::fault::{self, Point};

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

/// Atomically replaces `dir/name` with `value` in text.
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
}
