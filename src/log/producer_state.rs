//! Idempotent producer state of one partition (Kafka's `ProducerStateManager`, `ProducerStateEntry`,
//! `BatchMetadata` and the checks of `ProducerAppendInfo`).
//!
//! Ownership: each [`Log`](super::Log) owns one [`ProducerStateManager`] and changes it only under the caller's
//! lock on the log (the partition's write lock), in the append path: [`ProducerStateManager::check`] runs before
//! offsets are assigned (pure, no I/O), [`ProducerStateManager::update`] after the batch is in the segment. On
//! open the loader rebuilds the state from the newest snapshot and a replay of the batch headers after it (the
//! same `update`, without checks, that a follower will use). Snapshots (`<offset>.snapshot`, see
//! [`encode_snapshot`]) are written at every segment roll and on a clean close.
//!
//! Bounds: at most [`BATCHES_TO_RETAIN`] batches per producer, and at most `max_producers` producers per
//! partition ([`MAX_PRODUCERS_PER_PARTITION`] by default). When the map is full a new producer evicts the one
//! that wrote least recently (Kafka has no such cap; it only expires producers after `producer.id.expiration.ms`);
//! a producer with an open transaction is never evicted (the map may then exceed the cap by open transactions).
//! An evicted producer is unknown again, so its next batch is accepted with any sequence (Kafka's rule for
//! unknown producers) and only retries of batches it sent before the eviction could be duplicated.
//!
//! Transactions: a producer's first transactional batch opens its transaction (`current_txn_first_offset`,
//! and the `ongoing` index by first offset, whose minimum bounds the last stable offset); a COMMIT/ABORT
//! marker ([`MarkerInfo`], written only by the coordinator's marker path, never by a producer) closes it after
//! the epoch and coordinator epoch checks of Kafka's `ProducerAppendInfo.appendEndTxnMarker`, and reports the
//! [`CompletedTxn`]. Producers with an open transaction are neither expired nor evicted while others can be.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::BatchHeader;
use super::error::LogError;

/// Batches remembered per producer for duplicate detection (Kafka's `NUM_BATCHES_TO_RETAIN`, equal to the most
/// in-flight requests an idempotent producer may have).
pub const BATCHES_TO_RETAIN: usize = 5;
/// Default hard cap on producer ids remembered per partition (about 350 bytes each with five batches).
pub const MAX_PRODUCERS_PER_PARTITION: usize = 10_000;
/// How often expired producers are removed (Kafka's `producer.id.expiration.check.interval.ms` default).
pub const EXPIRATION_CHECK_INTERVAL_MS: i64 = 600_000;
/// Suffix of producer state snapshot files.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";

const NO_PRODUCER_EPOCH: i16 = -1;
const SNAPSHOT_VERSION: i16 = 1;
const SNAPSHOT_HEADER_LEN: usize = 2 + 4 + 4; // version, crc, entry count
const ENTRY_FIXED_LEN: usize = 8 + 2 + 4 + 8 + 8 + 1; // id, epoch, coordinator epoch, txn first, ts, batches
const BATCH_LEN: usize = 4 + 4 + 8 + 4 + 8;

/// One appended batch of a producer (Kafka's `BatchMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record.
    pub last_seq: i32,
    /// Offset of the last record.
    pub last_offset: i64,
    /// `last_offset - first_offset`.
    pub offset_delta: i32,
    /// The batch's max timestamp.
    pub timestamp: i64,
}

impl BatchMetadata {
    /// Offset of the first record.
    pub fn first_offset(&self) -> i64 {
        self.last_offset - i64::from(self.offset_delta)
    }
}

/// What the partition remembers of one producer (Kafka's `ProducerStateEntry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateEntry {
    /// The producer id.
    pub producer_id: i64,
    /// Its current epoch (-1 before the first batch).
    pub epoch: i16,
    /// Its last batches, oldest first, all of `epoch`.
    pub batches: VecDeque<BatchMetadata>,
    /// Max timestamp of its last batch (or marker): drives expiry.
    pub last_timestamp: i64,
    /// Epoch of the transaction coordinator that wrote its last marker (-1: none; transactions only).
    pub coordinator_epoch: i32,
    /// First offset of its ongoing transaction, if one is open.
    pub current_txn_first_offset: Option<i64>,
}

impl ProducerStateEntry {
    fn empty(producer_id: i64) -> Self {
        ProducerStateEntry {
            producer_id,
            epoch: NO_PRODUCER_EPOCH,
            batches: VecDeque::new(),
            last_timestamp: -1,
            coordinator_epoch: -1,
            current_txn_first_offset: None,
        }
    }

    /// Sequence of the last record of the last batch, or -1.
    pub fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }

    /// Offset of the last batch's last record, or -1.
    pub fn last_offset(&self) -> i64 {
        self.batches.back().map_or(-1, |b| b.last_offset)
    }

    /// The retained batch with exactly this epoch and sequence range (Kafka's `findDuplicateBatch`).
    fn find_duplicate(&self, batch: &ProducerBatch) -> Option<BatchMetadata> {
        if batch.epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == batch.first_seq && b.last_seq == batch.last_seq)
            .copied()
    }

    /// Remembers a batch; a new epoch forgets the batches of the old one (Kafka's `addBatch`).
    fn add_batch(&mut self, batch: &ProducerBatch) {
        if batch.epoch != self.epoch {
            self.batches.clear();
            self.epoch = batch.epoch;
        }
        if self.batches.len() == BATCHES_TO_RETAIN {
            self.batches.pop_front();
        }
        let offset_delta =
            i32::try_from(batch.last_offset - batch.first_offset).unwrap_or(i32::MAX);
        self.batches.push_back(BatchMetadata {
            first_seq: batch.first_seq,
            last_seq: batch.last_seq,
            last_offset: batch.last_offset,
            offset_delta,
            timestamp: batch.max_timestamp,
        });
        self.last_timestamp = batch.max_timestamp;
    }
}

/// The producer fields of one data batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    /// Producer id (>= 0).
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record (wrapping past `i32::MAX` to 0, as Kafka).
    pub last_seq: i32,
    /// Offset of the first record (the base offset once assigned).
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The batch's max timestamp.
    pub max_timestamp: i64,
    /// The transactional attribute.
    pub transactional: bool,
}

impl ProducerBatch {
    /// The producer fields of a batch header; `None` for batches without a producer id and for control batches
    /// (markers belong to transactions).
    pub fn from_header(h: &BatchHeader) -> Option<ProducerBatch> {
        if h.producer_id < 0 || h.is_control() {
            return None;
        }
        Some(ProducerBatch {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_seq: h.base_sequence,
            last_seq: increment_sequence(h.base_sequence, h.last_offset_delta),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
            transactional: h.is_transactional(),
        })
    }

    /// The same batch at the offsets it was given.
    pub fn at_offset(mut self, first_offset: i64) -> ProducerBatch {
        let delta = self.last_offset - self.first_offset;
        self.first_offset = first_offset;
        self.last_offset = first_offset + delta;
        self
    }
}

/// `seq + delta`, wrapping past `i32::MAX` to 0 (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(seq: i32, delta: i32) -> i32 {
    let delta = delta.max(0);
    if seq > i32::MAX - delta {
        delta - (i32::MAX - seq) - 1
    } else {
        seq + delta
    }
}

/// Kafka's `inSequence`: `next` directly follows `last`, wrapping after `i32::MAX`.
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// A COMMIT/ABORT marker for one producer (Kafka's `EndTransactionMarker` with its batch's producer fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerInfo {
    /// Producer id of the transaction.
    pub producer_id: i64,
    /// Producer epoch the coordinator wrote the marker with.
    pub epoch: i16,
    /// Epoch of the coordinator that wrote it.
    pub coordinator_epoch: i32,
    /// COMMIT (true) or ABORT.
    pub commit: bool,
    /// Offset of the marker.
    pub offset: i64,
    /// Timestamp of the marker batch.
    pub timestamp: i64,
}

/// A transaction a marker closed (Kafka's `CompletedTxn`): the aborted ones go into the transaction index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    /// Producer id.
    pub producer_id: i64,
    /// Offset of its first batch in this partition.
    pub first_offset: i64,
    /// Offset of the marker.
    pub last_offset: i64,
    /// True if it was aborted.
    pub aborted: bool,
}

/// What a producer batch's check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Append it.
    Append,
    /// A retry of a batch already in the log: answer its offsets, append nothing.
    Duplicate(BatchMetadata),
}

/// The producer state of one partition.
#[derive(Debug, Clone)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerStateEntry>,
    /// Open transactions: first offset -> producer id (the minimum is the first unstable offset).
    ongoing: BTreeMap<i64, i64>,
    max_producers: usize,
    last_expiry_check_ms: i64,
}

impl Default for ProducerStateManager {
    fn default() -> Self {
        ProducerStateManager::new(MAX_PRODUCERS_PER_PARTITION)
    }
}

impl ProducerStateManager {
    /// Empty state remembering at most `max_producers` producers (at least 1).
    pub fn new(max_producers: usize) -> Self {
        ProducerStateManager {
            producers: HashMap::new(),
            ongoing: BTreeMap::new(),
            max_producers: max_producers.max(1),
            last_expiry_check_ms: i64::MIN,
        }
    }

    /// Number of producers remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True if no producer is remembered.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// A producer's entry.
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerStateEntry> {
        self.producers.get(&producer_id)
    }

    /// Every entry, in producer id order (DescribeProducers).
    pub fn entries(&self) -> Vec<ProducerStateEntry> {
        let mut v: Vec<_> = self.producers.values().cloned().collect();
        v.sort_by_key(|e| e.producer_id);
        v
    }

    /// Checks a client's batch before it is appended (Kafka's duplicate check in
    /// `UnifiedLog.analyzeAndValidateProducerState`, then `ProducerAppendInfo.checkProducerEpoch` and
    /// `checkSequence` for origin CLIENT). Cheap and pure: no I/O, no change.
    pub fn check(&self, batch: &ProducerBatch) -> Result<CheckOutcome, LogError> {
        let pid = batch.producer_id;
        let Some(entry) = self.producers.get(&pid) else {
            // Unknown (never seen, expired, or its batches all deleted): Kafka 4 accepts any sequence.
            return Ok(CheckOutcome::Append);
        };
        if let Some(dup) = entry.find_duplicate(batch) {
            return Ok(CheckOutcome::Duplicate(dup));
        }
        if batch.epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch(format!(
                "epoch {} of producer {pid} is older than the last seen epoch {}",
                batch.epoch, entry.epoch
            )));
        }
        if batch.epoch != entry.epoch {
            // A new epoch starts its sequences at 0, unless the entry never had an epoch (a marker-only entry).
            if batch.first_seq != 0 && entry.epoch != NO_PRODUCER_EPOCH {
                return Err(LogError::OutOfOrderSequence(format!(
                    "invalid sequence number for new epoch {} of producer {pid}: {} (expected 0), current epoch {}",
                    batch.epoch, batch.first_seq, entry.epoch
                )));
            }
        } else if entry.epoch != NO_PRODUCER_EPOCH
            && !entry.batches.is_empty()
            && !in_sequence(entry.last_seq(), batch.first_seq)
        {
            return Err(LogError::OutOfOrderSequence(format!(
                "out of order sequence number for producer {pid}: {} (incoming), {} (current end sequence)",
                batch.first_seq,
                entry.last_seq()
            )));
        }
        if entry.current_txn_first_offset.is_some() && !batch.transactional {
            return Err(LogError::InvalidTxnState(format!(
                "expected a transactional write from producer {pid}"
            )));
        }
        Ok(CheckOutcome::Append)
    }

    /// The only check of a coordinator's own batch (Kafka's `checkProducerEpoch` for origin COORDINATOR): an
    /// epoch older than the producer's last is fenced. Pure.
    pub fn check_epoch(&self, batch: &ProducerBatch) -> Result<(), LogError> {
        match self.producers.get(&batch.producer_id) {
            Some(entry) if batch.epoch < entry.epoch => {
                Err(LogError::InvalidProducerEpoch(format!(
                    "epoch {} of producer {} is older than the last seen epoch {}",
                    batch.epoch, batch.producer_id, entry.epoch
                )))
            }
            _ => Ok(()),
        }
    }

    /// Records a batch that is now in the log (leader append, or replay at load). Evicts the least recently
    /// written producer if a new one would exceed the cap.
    pub fn update(&mut self, batch: &ProducerBatch) {
        let pid = batch.producer_id;
        self.make_room_for(pid);
        let entry = self
            .producers
            .entry(pid)
            .or_insert_with(|| ProducerStateEntry::empty(pid));
        entry.add_batch(batch);
        if batch.transactional && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(batch.first_offset);
            self.ongoing.insert(batch.first_offset, pid);
        }
    }

    /// Evicts the least recently written producer if `pid` is new and the map is full. A producer with an open
    /// transaction is never evicted: forgetting it would move the last stable offset past its records and
    /// make its later ABORT close nothing, so read_committed consumers would see aborted data. If every
    /// producer has one, the map grows past the cap; open transactions are bounded by the coordinator (its
    /// transactional ids, each with one transaction) and end at their timeout.
    fn make_room_for(&mut self, pid: i64) {
        if self.producers.contains_key(&pid) || self.producers.len() < self.max_producers {
            return;
        }
        let oldest = self
            .producers
            .values()
            .filter(|e| e.current_txn_first_offset.is_none())
            .min_by_key(|e| (e.last_timestamp, e.last_offset()))
            .map(|e| e.producer_id);
        match oldest {
            Some(old) => {
                tracing::warn!(
                    evicted = old,
                    cap = self.max_producers,
                    "producer state full; forgetting the least recently written producer"
                );
                self.producers.remove(&old);
            }
            None => tracing::warn!(
                cap = self.max_producers,
                "producer state full of open transactions; keeping them all"
            ),
        }
    }

    /// Checks a marker the coordinator asks to append (Kafka's `appendEndTxnMarker` checks for a leader
    /// append): an epoch older than the producer's is fenced, and so is a coordinator epoch older than the
    /// one of the producer's last marker. Pure.
    pub fn check_marker(&self, m: &MarkerInfo) -> Result<(), LogError> {
        let Some(entry) = self.producers.get(&m.producer_id) else {
            return Ok(());
        };
        if m.epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch(format!(
                "marker epoch {} of producer {} is older than the last seen epoch {}",
                m.epoch, m.producer_id, entry.epoch
            )));
        }
        if m.coordinator_epoch < entry.coordinator_epoch {
            return Err(LogError::CoordinatorFenced(format!(
                "marker of producer {} from coordinator epoch {}, older than {}",
                m.producer_id, m.coordinator_epoch, entry.coordinator_epoch
            )));
        }
        Ok(())
    }

    /// Records a marker now in the log (leader append or replay): closes the producer's transaction, adopts the
    /// marker's epoch (a new epoch forgets the old epoch's batches, so sequences restart at 0) and coordinator
    /// epoch. Returns the closed transaction, `None` if none was open (a retried marker).
    pub fn update_marker(&mut self, m: &MarkerInfo) -> Option<CompletedTxn> {
        let pid = m.producer_id;
        self.make_room_for(pid);
        let entry = self
            .producers
            .entry(pid)
            .or_insert_with(|| ProducerStateEntry::empty(pid));
        if m.epoch != entry.epoch {
            entry.batches.clear();
            entry.epoch = m.epoch;
        }
        entry.coordinator_epoch = m.coordinator_epoch;
        entry.last_timestamp = m.timestamp;
        let first_offset = entry.current_txn_first_offset.take()?;
        self.ongoing.remove(&first_offset);
        Some(CompletedTxn {
            producer_id: pid,
            first_offset,
            last_offset: m.offset,
            aborted: !m.commit,
        })
    }

    /// First offset of the oldest open transaction (the last stable offset is this or the high watermark,
    /// whichever is lower).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Number of open transactions.
    pub fn ongoing_txns(&self) -> usize {
        self.ongoing.len()
    }

    /// Forgets producers whose last write is older than `expiration_ms` and that have no ongoing transaction
    /// (Kafka's `removeExpiredProducers`). Returns how many went.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// [`ProducerStateManager::remove_expired`] at most every [`EXPIRATION_CHECK_INTERVAL_MS`].
    pub fn maybe_remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        if now_ms.saturating_sub(self.last_expiry_check_ms) < EXPIRATION_CHECK_INTERVAL_MS {
            return 0;
        }
        self.last_expiry_check_ms = now_ms;
        self.remove_expired(now_ms, expiration_ms)
    }

    /// Forgets everything (truncation of the whole log).
    pub fn clear(&mut self) {
        self.producers.clear();
        self.ongoing.clear();
    }

    /// The state as snapshot bytes (see [`encode_snapshot`]).
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        encode_snapshot(&self.entries())
    }

    /// Replaces the state with a snapshot's entries, leaving out those expired at `now_ms`.
    pub fn load_entries(
        &mut self,
        entries: Vec<ProducerStateEntry>,
        now_ms: i64,
        expiration_ms: i64,
    ) {
        self.producers.clear();
        self.ongoing.clear();
        for e in entries {
            if now_ms.saturating_sub(e.last_timestamp) < expiration_ms
                || e.current_txn_first_offset.is_some()
            {
                self.producers.insert(e.producer_id, e);
            }
        }
        while self.producers.len() > self.max_producers {
            let Some(oldest) = self
                .producers
                .values()
                .filter(|e| e.current_txn_first_offset.is_none())
                .min_by_key(|e| e.last_timestamp)
                .map(|e| e.producer_id)
            else {
                break; // only open transactions left: kept (see `make_room_for`)
            };
            self.producers.remove(&oldest);
        }
        self.ongoing = self
            .producers
            .values()
            .filter_map(|e| e.current_txn_first_offset.map(|o| (o, e.producer_id)))
            .collect();
    }
}

/// Encodes entries as a snapshot. Vltava's own format (Kafka's keeps only the last batch of each producer; this
/// one keeps all retained batches, so duplicates of any of them are still found after a restart), big-endian:
///
/// ```text
/// version: i16 (1) | crc: u32 (CRC-32C of everything after it) | count: i32
/// count x { producer_id: i64 | epoch: i16 | coordinator_epoch: i32 | current_txn_first_offset: i64 (-1 none)
///           | last_timestamp: i64 | batches: u8 (<= 5)
///           | batches x { first_seq: i32 | last_seq: i32 | last_offset: i64 | offset_delta: i32 | timestamp: i64 } }
/// ```
pub fn encode_snapshot(entries: &[ProducerStateEntry]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + entries.len() * (ENTRY_FIXED_LEN + 2 * BATCH_LEN));
    body.extend_from_slice(
        &i32::try_from(entries.len())
            .unwrap_or(i32::MAX)
            .to_be_bytes(),
    );
    for e in entries
        .iter()
        .take(usize::try_from(i32::MAX).unwrap_or(usize::MAX))
    {
        body.extend_from_slice(&e.producer_id.to_be_bytes());
        body.extend_from_slice(&e.epoch.to_be_bytes());
        body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        body.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
        body.extend_from_slice(&e.last_timestamp.to_be_bytes());
        let n = e.batches.len().min(BATCHES_TO_RETAIN);
        body.push(u8::try_from(n).unwrap_or(0));
        for b in e.batches.iter().skip(e.batches.len() - n) {
            body.extend_from_slice(&b.first_seq.to_be_bytes());
            body.extend_from_slice(&b.last_seq.to_be_bytes());
            body.extend_from_slice(&b.last_offset.to_be_bytes());
            body.extend_from_slice(&b.offset_delta.to_be_bytes());
            body.extend_from_slice(&b.timestamp.to_be_bytes());
        }
    }
    let mut out = Vec::with_capacity(6 + body.len());
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Splits big-endian fields off a snapshot.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], LogError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| LogError::CorruptMessage("truncated producer snapshot".into()))?;
        self.0 = rest;
        Ok(*head)
    }
}

/// Decodes a snapshot; any damage (length, CRC, version, counts that disagree with the bytes) is an error, so
/// the caller falls back to an older snapshot or a full replay.
pub fn decode_snapshot(buf: &[u8]) -> Result<Vec<ProducerStateEntry>, LogError> {
    let corrupt = |m: &str| LogError::CorruptMessage(format!("producer snapshot: {m}"));
    if buf.len() < SNAPSHOT_HEADER_LEN {
        return Err(corrupt("too short"));
    }
    let mut r = Reader(buf);
    let version = i16::from_be_bytes(r.take()?);
    if version != SNAPSHOT_VERSION {
        return Err(corrupt(&format!("unknown version {version}")));
    }
    let crc = u32::from_be_bytes(r.take()?);
    if crc32c::crc32c(r.0) != crc {
        return Err(corrupt("CRC mismatch"));
    }
    let count = i32::from_be_bytes(r.take()?);
    let count = usize::try_from(count).map_err(|_| corrupt("negative entry count"))?;
    // Every entry takes at least ENTRY_FIXED_LEN bytes: the allocation is bounded by the file.
    if count > r.0.len() / ENTRY_FIXED_LEN {
        return Err(corrupt("entry count larger than the file"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let producer_id = i64::from_be_bytes(r.take()?);
        let epoch = i16::from_be_bytes(r.take()?);
        let coordinator_epoch = i32::from_be_bytes(r.take()?);
        let txn_first = i64::from_be_bytes(r.take()?);
        let last_timestamp = i64::from_be_bytes(r.take()?);
        let [n] = r.take::<1>()?;
        if usize::from(n) > BATCHES_TO_RETAIN {
            return Err(corrupt("too many batches"));
        }
        let mut batches = VecDeque::with_capacity(usize::from(n));
        for _ in 0..n {
            batches.push_back(BatchMetadata {
                first_seq: i32::from_be_bytes(r.take()?),
                last_seq: i32::from_be_bytes(r.take()?),
                last_offset: i64::from_be_bytes(r.take()?),
                offset_delta: i32::from_be_bytes(r.take()?),
                timestamp: i64::from_be_bytes(r.take()?),
            });
        }
        entries.push(ProducerStateEntry {
            producer_id,
            epoch,
            batches,
            last_timestamp,
            coordinator_epoch,
            current_txn_first_offset: (txn_first >= 0).then_some(txn_first),
        });
    }
    if !r.0.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(entries)
}

/// Path of the snapshot at `offset` (`00000000000000000042.snapshot`, Kafka's naming).
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!(
        "{}{SNAPSHOT_SUFFIX}",
        super::segment::file_stem(offset)
    ))
}

/// Offsets of the snapshot files in `dir`, ascending.
pub fn list_snapshots(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(SNAPSHOT_SUFFIX) else {
            continue;
        };
        if !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(o) = stem.parse::<i64>() {
                out.push(o);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Writes a snapshot file without fsyncing it; returns the open file for the caller to fsync later (the roll's
/// background fsync, or at once on close). A torn file from a crash fails its CRC at load and is skipped.
pub fn write_snapshot(dir: &Path, offset: i64, bytes: &[u8]) -> Result<Arc<fs::File>, LogError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(snapshot_path(dir, offset))?;
    f.write_all(bytes)?;
    Ok(Arc::new(f))
}

/// Deletes snapshots for which `pred(offset)` holds. Returns how many went.
pub fn delete_snapshots(dir: &Path, pred: impl Fn(i64) -> bool) -> Result<usize, LogError> {
    let mut n = 0;
    for o in list_snapshots(dir)? {
        if pred(o) {
            match fs::remove_file(snapshot_path(dir, o)) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(n)
}

/// Reads the newest valid snapshot at or below `max_offset`; damaged ones are deleted (logged) and older ones
/// tried. `None`: no usable snapshot, replay the whole log.
pub fn read_latest_snapshot(
    dir: &Path,
    max_offset: i64,
) -> Result<Option<(i64, Vec<ProducerStateEntry>)>, LogError> {
    for o in list_snapshots(dir)?.into_iter().rev() {
        if o > max_offset {
            continue;
        }
        let path = snapshot_path(dir, o);
        let decoded = fs::read(&path)
            .map_err(LogError::from)
            .and_then(|b| decode_snapshot(&b));
        match decoded {
            Ok(entries) => return Ok(Some((o, entries))),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "deleting unreadable producer snapshot");
                let _ = fs::remove_file(&path);
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    const PID: i64 = 7;

    fn batch(epoch: i16, first_seq: i32, count: i32, first_offset: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id: PID,
            epoch,
            first_seq,
            last_seq: increment_sequence(first_seq, count - 1),
            first_offset,
            last_offset: first_offset + i64::from(count) - 1,
            max_timestamp: 1000 + first_offset,
            transactional: false,
        }
    }

    /// Checks then updates, as the append path does; returns the offset the client is answered.
    fn append(s: &mut ProducerStateManager, b: ProducerBatch) -> Result<i64, LogError> {
        match s.check(&b)? {
            CheckOutcome::Duplicate(d) => Ok(d.first_offset()),
            CheckOutcome::Append => {
                s.update(&b);
                Ok(b.first_offset)
            }
        }
    }

    /// Six batches of 2 records: sequences 0..12 at offsets 0..12.
    fn six() -> ProducerStateManager {
        let mut s = ProducerStateManager::default();
        for i in 0..6 {
            append(&mut s, batch(0, i * 2, 2, i64::from(i) * 2)).unwrap();
        }
        s
    }

    #[test]
    fn duplicate_of_each_of_the_last_five_batches_answers_its_offset() {
        let s = six();
        for i in 1..6 {
            let b = batch(0, i * 2, 2, 100);
            assert_eq!(
                s.check(&b).unwrap(),
                CheckOutcome::Duplicate(BatchMetadata {
                    first_seq: i * 2,
                    last_seq: i * 2 + 1,
                    last_offset: i64::from(i) * 2 + 1,
                    offset_delta: 1,
                    timestamp: 1000 + i64::from(i) * 2,
                }),
                "batch {i}"
            );
        }
        // The sixth-last batch is forgotten: a retry of it is out of order, not a duplicate.
        assert!(matches!(
            s.check(&batch(0, 0, 2, 100)),
            Err(LogError::OutOfOrderSequence(_))
        ));
        assert_eq!(s.entry(PID).unwrap().batches.len(), BATCHES_TO_RETAIN);
    }

    #[test]
    fn a_partial_overlap_is_not_a_duplicate() {
        let s = six();
        // Same first sequence, different last: out of order.
        assert!(matches!(
            s.check(&batch(0, 10, 3, 100)),
            Err(LogError::OutOfOrderSequence(_))
        ));
    }

    #[test]
    fn next_sequence_is_accepted_and_a_gap_is_out_of_order() {
        let mut s = six();
        assert!(matches!(
            s.check(&batch(0, 13, 1, 12)),
            Err(LogError::OutOfOrderSequence(_))
        ));
        assert_eq!(append(&mut s, batch(0, 12, 1, 12)).unwrap(), 12);
        assert_eq!(s.entry(PID).unwrap().last_seq(), 12);
    }

    #[test]
    fn an_older_epoch_is_fenced() {
        let mut s = ProducerStateManager::default();
        append(&mut s, batch(3, 0, 1, 0)).unwrap();
        assert!(matches!(
            s.check(&batch(2, 1, 1, 1)),
            Err(LogError::InvalidProducerEpoch(_))
        ));
        // Even a batch that would be a duplicate under the old epoch.
        assert!(matches!(
            s.check(&batch(2, 0, 1, 1)),
            Err(LogError::InvalidProducerEpoch(_))
        ));
    }

    #[test]
    fn a_new_epoch_starts_at_sequence_zero() {
        let mut s = six();
        assert!(matches!(
            s.check(&batch(1, 12, 1, 12)),
            Err(LogError::OutOfOrderSequence(_))
        ));
        assert_eq!(append(&mut s, batch(1, 0, 1, 12)).unwrap(), 12);
        let e = s.entry(PID).unwrap();
        assert_eq!((e.epoch, e.batches.len(), e.last_seq()), (1, 1, 0));
        // A retry of an old-epoch batch is now fenced.
        assert!(matches!(
            s.check(&batch(0, 10, 2, 100)),
            Err(LogError::InvalidProducerEpoch(_))
        ));
    }

    #[test]
    fn an_unknown_producer_may_start_at_any_sequence() {
        // Kafka 4: no state (new, expired or its batches deleted) means any sequence is accepted.
        let mut s = ProducerStateManager::default();
        assert_eq!(append(&mut s, batch(0, 42, 1, 0)).unwrap(), 0);
        assert!(matches!(
            s.check(&batch(0, 44, 1, 1)),
            Err(LogError::OutOfOrderSequence(_))
        ));
        assert_eq!(append(&mut s, batch(0, 43, 1, 1)).unwrap(), 1);
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        let mut s = ProducerStateManager::default();
        append(&mut s, batch(0, i32::MAX - 1, 2, 0)).unwrap();
        assert_eq!(s.entry(PID).unwrap().last_seq(), i32::MAX);
        let wrapped = batch(0, 0, 3, 2);
        assert_eq!(append(&mut s, wrapped).unwrap(), 2);
        // A batch spanning the wrap.
        let mut s = ProducerStateManager::default();
        append(&mut s, batch(0, i32::MAX - 1, 4, 0)).unwrap();
        assert_eq!(s.entry(PID).unwrap().last_seq(), 1);
        assert_eq!(append(&mut s, batch(0, 2, 1, 4)).unwrap(), 4);
        assert_eq!(
            s.check(&batch(0, i32::MAX - 1, 4, 9)).unwrap(),
            CheckOutcome::Duplicate(BatchMetadata {
                first_seq: i32::MAX - 1,
                last_seq: 1,
                last_offset: 3,
                offset_delta: 3,
                timestamp: 1000,
            })
        );
    }

    #[test]
    fn producers_expire_after_the_expiration_time() {
        let mut s = ProducerStateManager::default();
        append(&mut s, batch(0, 0, 1, 0)).unwrap(); // last timestamp 1000
        let mut other = batch(0, 0, 1, 1);
        other.producer_id = 8;
        other.max_timestamp = 5000;
        append(&mut s, other).unwrap();
        assert_eq!(s.remove_expired(1999, 1000), 0);
        assert_eq!(s.remove_expired(2000, 1000), 1);
        assert!(s.entry(PID).is_none() && s.entry(8).is_some());
        // The periodic check runs at most every interval.
        assert_eq!(s.maybe_remove_expired(10_000, 1000), 1);
        assert!(s.is_empty());
        append(&mut s, batch(0, 0, 1, 2)).unwrap();
        assert_eq!(s.maybe_remove_expired(20_000, 1000), 0, "checked too soon");
        assert_eq!(
            s.maybe_remove_expired(10_000 + EXPIRATION_CHECK_INTERVAL_MS, 1000),
            1
        );
        // An expired producer is unknown again: any sequence is accepted.
        assert_eq!(append(&mut s, batch(0, 77, 1, 3)).unwrap(), 3);
    }

    #[test]
    fn the_cap_evicts_the_least_recently_written_producer() {
        let mut s = ProducerStateManager::new(3);
        for pid in 0..3 {
            let mut b = batch(0, 0, 1, pid);
            b.producer_id = pid;
            b.max_timestamp = 100 - pid; // producer 2 wrote least recently
            s.update(&b);
        }
        let mut b = batch(0, 0, 1, 10);
        b.producer_id = 10;
        s.update(&b);
        assert_eq!(s.len(), 3);
        assert!(s.entry(2).is_none() && s.entry(10).is_some());
    }

    fn txn(epoch: i16, first_seq: i32, count: i32, first_offset: i64) -> ProducerBatch {
        ProducerBatch {
            transactional: true,
            ..batch(epoch, first_seq, count, first_offset)
        }
    }

    fn marker(epoch: i16, coordinator_epoch: i32, commit: bool, offset: i64) -> MarkerInfo {
        MarkerInfo {
            producer_id: PID,
            epoch,
            coordinator_epoch,
            commit,
            offset,
            timestamp: 5000 + offset,
        }
    }

    #[test]
    fn the_first_transactional_batch_opens_a_transaction() {
        let mut s = ProducerStateManager::default();
        append(&mut s, txn(0, 0, 2, 5)).unwrap();
        append(&mut s, txn(0, 2, 1, 9)).unwrap();
        assert_eq!(s.entry(PID).unwrap().current_txn_first_offset, Some(5));
        assert_eq!(s.first_unstable_offset(), Some(5));
        // A plain write while a transaction is open is refused, as in Kafka.
        assert!(matches!(
            s.check(&batch(0, 3, 1, 10)),
            Err(LogError::InvalidTxnState(_))
        ));
        // Ongoing transactions never expire.
        assert_eq!(s.remove_expired(i64::MAX, 1), 0);
    }

    #[test]
    fn markers_close_the_transaction_and_report_it() {
        let mut s = ProducerStateManager::default();
        append(&mut s, txn(0, 0, 2, 5)).unwrap();
        let mut other = txn(0, 0, 1, 3);
        other.producer_id = 8;
        append(&mut s, other).unwrap();
        assert_eq!(s.first_unstable_offset(), Some(3));
        s.check_marker(&marker(0, 0, false, 10)).unwrap();
        assert_eq!(
            s.update_marker(&marker(0, 0, false, 10)),
            Some(CompletedTxn {
                producer_id: PID,
                first_offset: 5,
                last_offset: 10,
                aborted: true
            })
        );
        assert_eq!(s.first_unstable_offset(), Some(3));
        assert_eq!(s.ongoing_txns(), 1);
        let e = s.entry(PID).unwrap();
        assert_eq!((e.current_txn_first_offset, e.coordinator_epoch), (None, 0));
        // A retried marker closes nothing.
        assert_eq!(s.update_marker(&marker(0, 0, false, 11)), None);
        // The next transaction continues the sequence within the epoch.
        append(&mut s, txn(0, 2, 1, 12)).unwrap();
        let commit = s.update_marker(&marker(0, 0, true, 13)).unwrap();
        assert!(!commit.aborted && commit.first_offset == 12);
        let mut m = marker(0, 0, true, 14);
        m.producer_id = 8;
        s.update_marker(&m);
        assert_eq!(s.first_unstable_offset(), None);
        // Expiry applies again once the transaction is closed.
        assert_eq!(s.remove_expired(i64::MAX, 1), 2);
    }

    #[test]
    fn a_marker_with_a_new_epoch_restarts_sequences() {
        // Transaction version 2: every end bumps the epoch, the marker carries the new one.
        let mut s = ProducerStateManager::default();
        append(&mut s, txn(0, 0, 3, 0)).unwrap();
        s.update_marker(&marker(1, 0, true, 3));
        let e = s.entry(PID).unwrap();
        assert_eq!((e.epoch, e.batches.len()), (1, 0));
        assert_eq!(append(&mut s, txn(1, 0, 1, 4)).unwrap(), 4);
        // A late batch of the old epoch is fenced.
        assert!(matches!(
            s.check(&txn(0, 3, 1, 5)),
            Err(LogError::InvalidProducerEpoch(_))
        ));
    }

    #[test]
    fn markers_from_older_epochs_are_fenced() {
        let mut s = ProducerStateManager::default();
        append(&mut s, txn(2, 0, 1, 0)).unwrap();
        s.update_marker(&marker(2, 5, true, 1));
        assert!(matches!(
            s.check_marker(&marker(1, 5, true, 2)),
            Err(LogError::InvalidProducerEpoch(_))
        ));
        assert!(matches!(
            s.check_marker(&marker(2, 4, true, 2)),
            Err(LogError::CoordinatorFenced(_))
        ));
        s.check_marker(&marker(2, 5, false, 2)).unwrap();
        s.check_marker(&marker(3, 6, false, 2)).unwrap();
        // A marker for a producer never seen is accepted (its entry appears).
        let mut m = marker(0, 0, true, 3);
        m.producer_id = 99;
        s.check_marker(&m).unwrap();
        assert_eq!(s.update_marker(&m), None);
        assert_eq!(s.entry(99).unwrap().coordinator_epoch, 0);
    }

    #[test]
    fn the_cap_spares_producers_with_open_transactions() {
        let mut s = ProducerStateManager::new(2);
        let mut a = txn(0, 0, 1, 0);
        a.max_timestamp = 1; // least recently written, but in a transaction
        s.update(&a);
        let mut b = batch(0, 0, 1, 1);
        b.producer_id = 8;
        s.update(&b);
        let mut c = batch(0, 0, 1, 2);
        c.producer_id = 9;
        s.update(&c);
        assert!(s.entry(PID).is_some() && s.entry(8).is_none());
        assert_eq!(s.first_unstable_offset(), Some(0));
        // Only open transactions left: a new producer is added beyond the cap, none is forgotten, and each
        // transaction's ABORT still closes it.
        let mut d = txn(0, 0, 1, 3);
        d.producer_id = 9;
        s.update(&d);
        let mut e = batch(0, 0, 1, 4);
        e.producer_id = 10;
        s.update(&e);
        assert_eq!(s.len(), 3);
        assert!(s.entry(PID).is_some() && s.entry(9).is_some() && s.entry(10).is_some());
        assert_eq!(s.first_unstable_offset(), Some(0));
        let closed = s.update_marker(&marker(0, 0, false, 5)).unwrap();
        assert!(closed.aborted && closed.first_offset == 0);
        assert_eq!(s.first_unstable_offset(), Some(3));
    }

    #[test]
    fn snapshots_keep_open_transactions() {
        let mut s = ProducerStateManager::default();
        append(&mut s, txn(0, 0, 2, 5)).unwrap();
        let mut t = ProducerStateManager::default();
        t.load_entries(decode_snapshot(&s.snapshot_bytes()).unwrap(), i64::MAX, 1);
        assert_eq!(t.first_unstable_offset(), Some(5), "kept though expired");
        assert_eq!(
            t.update_marker(&marker(0, 0, true, 7))
                .unwrap()
                .first_offset,
            5
        );
    }

    #[test]
    fn snapshot_round_trips() {
        let mut s = six();
        let mut b = batch(2, 0, 3, 20);
        b.producer_id = 9;
        s.update(&b);
        let bytes = s.snapshot_bytes();
        let entries = decode_snapshot(&bytes).unwrap();
        assert_eq!(entries, s.entries());
        let mut t = ProducerStateManager::default();
        t.load_entries(entries, 1100, 86_400_000);
        assert_eq!(t.entries(), s.entries());
        // Dedupe works from the loaded state.
        assert!(matches!(
            t.check(&batch(0, 4, 2, 100)).unwrap(),
            CheckOutcome::Duplicate(d) if d.first_offset() == 4
        ));
        // Expired entries are not loaded.
        t.load_entries(decode_snapshot(&bytes).unwrap(), 1_000_000, 1000);
        assert!(t.is_empty());
    }

    #[test]
    fn damaged_snapshots_are_refused() {
        let bytes = six().snapshot_bytes();
        for cut in [0, 5, 9, bytes.len() - 1] {
            assert!(decode_snapshot(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode_snapshot(&bad).is_err(), "flip at {i}");
        }
        // A count that claims more entries than the file holds, with a matching CRC.
        let mut lie = bytes.clone();
        lie[6..10].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&lie[6..]);
        lie[2..6].copy_from_slice(&crc.to_be_bytes());
        assert!(decode_snapshot(&lie).is_err());
    }

    #[test]
    fn snapshot_files_latest_valid_at_or_below() {
        let dir = tempfile::tempdir().unwrap();
        let s = six();
        write_snapshot(dir.path(), 5, &s.snapshot_bytes()).unwrap();
        write_snapshot(dir.path(), 12, &s.snapshot_bytes()).unwrap();
        write_snapshot(dir.path(), 20, b"garbage").unwrap();
        fs::write(dir.path().join("x.snapshot"), b"").unwrap();
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![5, 12, 20]);
        let (o, _) = read_latest_snapshot(dir.path(), 11).unwrap().unwrap();
        assert_eq!(o, 5);
        // The corrupt one is deleted and the next older used.
        let (o, e) = read_latest_snapshot(dir.path(), 100).unwrap().unwrap();
        assert_eq!((o, e), (12, s.entries()));
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![5, 12]);
        assert_eq!(delete_snapshots(dir.path(), |o| o > 5).unwrap(), 1);
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![5]);
        assert!(read_latest_snapshot(dir.path(), 4).unwrap().is_none());
    }
}
