//! The durable metadata log: one line per commit, `<crc32c hex> <json array of records>\n`, fsynced before the
//! commit is acknowledged.
//!
//! A commit (say, a topic and all its partitions) is one line with one checksum, so it is applied whole or not
//! at all. Metadata changes are rare, so simplicity and an fsync per commit beat batching. Replay drops a torn
//! *last* line (a crash mid-append: never acknowledged); a damaged line with intact commits after it means the
//! file was corrupted, not torn, and start-up stops rather than silently forgetting acknowledged commits.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use super::MetadataRecord;

/// Owner of the metadata log file. Guarded by the controller's mutex.
pub struct MetadataStore {
    file: File,
    len: u64,
}

impl MetadataStore {
    /// Opens the log in `dir`, returning the store and every committed record in order.
    pub fn open(dir: &Path) -> std::io::Result<(MetadataStore, Vec<MetadataRecord>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("metadata.log");
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut records = Vec::new();
        let mut good_len: u64 = 0;
        let mut reader = BufReader::new(File::open(&path)?);
        let mut line = Vec::new();
        let mut torn = false;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if torn {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: damaged commit at byte {good_len} is followed by more commits; refusing to start \
                         (restore the file or remove the damaged line by hand)",
                        path.display()
                    ),
                ));
            }
            match parse_line(&line) {
                Some(commit) => {
                    records.extend(commit);
                    good_len += n as u64;
                }
                // Only a line without its final newline can be a torn append; a complete line that fails
                // its checksum was acknowledged and is now damaged.
                None if !line.ends_with(b"\n") => torn = true,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{}: damaged commit at byte {good_len}; refusing to start \
                             (restore the file or remove the damaged line by hand)",
                            path.display()
                        ),
                    ))
                }
            }
        }
        if torn {
            tracing::warn!(path = %path.display(), offset = good_len, "dropping torn metadata log tail");
            file.set_len(good_len)?;
            file.sync_all()?;
        }
        Ok((
            MetadataStore {
                file,
                len: good_len,
            },
            records,
        ))
    }

    /// Appends one commit durably (fsync) before returning. On failure the file is cut back, so a partial
    /// line can never sit in front of later commits.
    pub fn append(&mut self, records: &[MetadataRecord]) -> std::io::Result<()> {
        let json = serde_json::to_vec(records).map_err(std::io::Error::other)?;
        let mut buf = Vec::with_capacity(json.len() + 10);
        write!(buf, "{:08x} ", crc32c::crc32c(&json))?;
        buf.extend_from_slice(&json);
        buf.push(b'\n');
        let result = self
            .file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }
}

fn parse_line(line: &[u8]) -> Option<Vec<MetadataRecord>> {
    let line = line.strip_suffix(b"\n")?;
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc32c::crc32c(json) != crc {
        return None;
    }
    match serde_json::from_slice(json).ok()? {
        Commit::Many(records) => Some(records),
        Commit::One(record) => Some(vec![record]),
    }
}

/// A line's payload: a commit, or a single record as written before commits were one line each.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Commit {
    Many(Vec<MetadataRecord>),
    One(MetadataRecord),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use uuid::Uuid;

    #[test]
    fn torn_tail_dropped_damage_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, r) = MetadataStore::open(dir.path()).unwrap();
        assert!(r.is_empty());
        let rec = MetadataRecord::Topic {
            name: "t".into(),
            id: Uuid::new_v4(),
        };
        s.append(&[rec.clone(), rec.clone()]).unwrap();
        drop(s);
        let path = dir.path().join("metadata.log");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"0000dead [{\"type\":\"Top").unwrap(); // no newline: a torn append
        drop(f);
        // A torn last commit is dropped; the file is cut back so new commits follow the good ones.
        let (mut s, r) = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(r, vec![rec.clone(), rec.clone()]);
        s.append(std::slice::from_ref(&rec)).unwrap();
        drop(s);
        let (_, r) = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(r.len(), 3);
        // A flipped byte in the first commit, with a good commit after it, is damage: refuse to start.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = MetadataStore::open(dir.path()).err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn damaged_last_commit_refused_and_old_format_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.log");
        let rec = MetadataRecord::Topic {
            name: "t".into(),
            id: Uuid::new_v4(),
        };
        // The earlier one-record-per-line format still replays.
        let json = serde_json::to_vec(&rec).unwrap();
        let mut line = format!("{:08x} ", crc32c::crc32c(&json)).into_bytes();
        line.extend_from_slice(&json);
        line.push(b'\n');
        std::fs::write(&path, &line).unwrap();
        let (_, r) = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(r, vec![rec]);
        // A complete last line with a bad checksum is damage, not a torn write.
        let last = line.len() - 3;
        line[last] ^= 1;
        std::fs::write(&path, &line).unwrap();
        assert!(MetadataStore::open(dir.path()).is_err());
    }

    #[test]
    fn commit_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = MetadataStore::open(dir.path()).unwrap();
        let rec = MetadataRecord::Topic {
            name: "t".into(),
            id: Uuid::new_v4(),
        };
        s.append(&[rec.clone(), rec.clone(), rec]).unwrap();
        let text = std::fs::read_to_string(dir.path().join("metadata.log")).unwrap();
        assert_eq!(text.lines().count(), 1);
    }
}
