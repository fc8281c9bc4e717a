//! The cleaner's offset map: key -> offset of the latest record with that key in the dirty section (Kafka's
//! `SkimpyOffsetMap`), bounded in bytes by `log_cleaner_dedupe_buffer_size`.
//!
//! Owned by one cleaning pass on one blocking thread; never shared. Kafka stores 16-byte MD5 digests of keys and
//! accepts the (tiny) chance that two keys collide and one record is wrongly removed; this map keeps whole keys,
//! so it is exact, and counts each entry's key bytes plus a fixed overhead against the bound. When the map is
//! full the pass stops at a batch boundary and cleans only up to there; the rest waits for the next pass.

use std::collections::HashMap;

/// Bytes counted per entry besides the key: the offset, the `Box` and the hash table's own slot.
const ENTRY_OVERHEAD: usize = 48;

/// Latest offset per key, bounded in bytes.
#[derive(Debug)]
pub(crate) struct OffsetMap {
    map: HashMap<Box<[u8]>, i64>,
    used: usize,
    capacity: usize,
    /// Offset after the last record put in (the end of the section the map covers).
    end_offset: Option<i64>,
}

impl OffsetMap {
    /// An empty map that holds at most `capacity` bytes of keys and overhead.
    pub(crate) fn new(capacity: usize) -> Self {
        OffsetMap {
            map: HashMap::new(),
            used: 0,
            capacity,
            end_offset: None,
        }
    }

    /// Bytes a new entry for `key` would take.
    pub(crate) fn cost(key: &[u8]) -> usize {
        key.len() + ENTRY_OVERHEAD
    }

    /// True if `extra` more bytes of entries would still fit.
    pub(crate) fn fits(&self, extra: usize) -> bool {
        self.used.saturating_add(extra) <= self.capacity
    }

    /// Records that `key` was seen at `offset` (offsets are put in increasing order). Returns the bytes this
    /// added (0 for a key already present).
    pub(crate) fn put(&mut self, key: &[u8], offset: i64) -> usize {
        self.end_offset = Some(self.end_offset.map_or(offset + 1, |e| e.max(offset + 1)));
        if let Some(slot) = self.map.get_mut(key) {
            *slot = (*slot).max(offset);
            return 0;
        }
        let cost = Self::cost(key);
        self.map.insert(key.into(), offset);
        self.used += cost;
        cost
    }

    /// The latest offset of `key` in the mapped section, if it appears there.
    pub(crate) fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(key).copied()
    }

    /// Marks the mapped section as reaching `offset` (exclusive) even without records there (a batch of
    /// keyless or control records still counts as scanned).
    pub(crate) fn extend_to(&mut self, offset: i64) {
        self.end_offset = Some(self.end_offset.map_or(offset, |e| e.max(offset)));
    }

    /// Offset after the last record scanned into the map, if any.
    pub(crate) fn end_offset(&self) -> Option<i64> {
        self.end_offset
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes counted against the capacity.
    pub(crate) fn used(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    #[test]
    fn keeps_the_latest_offset_within_its_bound() {
        let mut m = OffsetMap::new(3 * OffsetMap::cost(b"k1"));
        assert_eq!(m.end_offset(), None);
        assert!(m.put(b"k1", 5) > 0);
        assert_eq!(m.put(b"k1", 9), 0, "an update costs nothing");
        m.put(b"k2", 10);
        assert_eq!(
            (m.get(b"k1"), m.get(b"k2"), m.get(b"k3")),
            (Some(9), Some(10), None)
        );
        assert_eq!(m.end_offset(), Some(11));
        assert!(m.fits(OffsetMap::cost(b"k3")));
        m.put(b"k3", 11);
        assert!(!m.fits(OffsetMap::cost(b"k4")), "full after three keys");
        assert_eq!((m.len(), m.used()), (3, 3 * OffsetMap::cost(b"k1")));
        m.extend_to(20);
        assert_eq!(m.end_offset(), Some(20));
        // Keys are compared whole: no digest collisions.
        let mut big = OffsetMap::new(usize::MAX);
        for i in 0..10_000u32 {
            big.put(&i.to_be_bytes(), i64::from(i));
        }
        assert!((0..10_000u32).all(|i| big.get(&i.to_be_bytes()) == Some(i64::from(i))));
    }
}
