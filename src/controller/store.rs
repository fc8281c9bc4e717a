//! The durable metadata log: one line per record, `<crc32c hex> <json>\n`, fsynced on every append.
//!
//! Metadata changes are rare, so simplicity and an fsync per commit beat batching. Replay stops at the first line
//! that is torn or fails its checksum (a crash mid-append) and truncates the file there, since that commit was
//! never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use super::MetadataRecord;

/// Owner of the metadata log file. Guarded by the controller's mutex.
pub struct MetadataStore {
    file: File,
}

impl MetadataStore {
    /// Opens the log in `dir`, returning the store and every intact record in order.
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
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            match parse_line(&line) {
                Some(r) => {
                    records.push(r);
                    good_len += n as u64;
                }
                None => {
                    tracing::warn!(path = %path.display(), offset = good_len, "truncating torn metadata log tail");
                    break;
                }
            }
        }
        if file.metadata()?.len() != good_len {
            file.set_len(good_len)?;
            file.sync_all()?;
        }
        Ok((MetadataStore { file }, records))
    }

    /// Appends records durably (fsync) before returning.
    pub fn append(&mut self, records: &[MetadataRecord]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            let json = serde_json::to_vec(r).map_err(std::io::Error::other)?;
            write!(buf, "{:08x} ", crc32c::crc32c(&json))?;
            buf.extend_from_slice(&json);
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }
}

fn parse_line(line: &[u8]) -> Option<MetadataRecord> {
    let line = line.strip_suffix(b"\n")?;
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc32c::crc32c(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn torn_tail_truncated() {
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
        f.write_all(b"0000dead {\"type\":\"Top").unwrap();
        drop(f);
        let (mut s, r) = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(r, vec![rec.clone(), rec.clone()]);
        s.append(std::slice::from_ref(&rec)).unwrap();
        drop(s);
        let (_, r) = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(r.len(), 3);
        // A flipped byte fails the checksum and drops that record and everything after it.
        let mut bytes = std::fs::read(&path).unwrap();
        let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 20;
        bytes[second] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let (_, r) = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(r.len(), 1);
    }
}
