//! Reading keys out of a stored batch and rewriting a batch without the records the cleaner removes (Kafka's
//! `MemoryRecords.filterTo` as the cleaner uses it).
//!
//! Pure functions over bytes, called by the cleaning pass on its blocking thread. A rewritten batch keeps what
//! Kafka keeps: base offset, last offset delta (so the batch still ends where it did, as Kafka's
//! `overrideLastOffset` does), leader epoch, producer id/epoch/base sequence, codec (compressed batches are
//! decompressed and recompressed with the same codec) and timestamp type. A batch that keeps a tombstone gets a
//! delete horizon (KIP-534: attribute bit 6, the horizon stored as the base timestamp, record timestamp deltas
//! taken from it); once the horizon has passed, the next clean removes the tombstone.
//!
//! Transactions (see `txn.rs`): the caller's [`BatchDecision`] says whether a batch's records all go (aborted
//! data, a marker past its delete horizon), whether the batch stays even when emptied (its producer's last
//! batch: written as an uncompressed batch of no records, header identity intact, as Kafka's
//! `writeEmptyHeader`), and whether a marker nothing refers to any more needs a delete horizon. Otherwise a
//! control batch is copied whole, and a data batch left without records is dropped.

use bytes::{BufMut, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use super::offset_map::OffsetMap;
use super::txn::BatchDecision;
use crate::log::batch::{BatchHeader, Compression, TimestampType, BATCH_HEADER_LEN};
use crate::log::decompress::decompress_and;
use crate::log::error::LogError;
use crate::log::record::{Reader, RecordError};

/// Attribute bit saying the base timestamp holds the delete horizon (KIP-534).
const DELETE_HORIZON_FLAG: i16 = 0x40;
/// Attribute bits of the codec.
const CODEC_MASK: i16 = 0x07;

/// One record of a batch, borrowed from the (decompressed) records section.
struct RecordView<'a> {
    attributes: i8,
    /// Absolute offset and timestamp.
    offset: i64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    tombstone: bool,
    /// The record body from the offset delta on, copied unchanged when the record is kept.
    tail: &'a [u8],
}

fn corrupt(h: &BatchHeader, e: RecordError) -> LogError {
    LogError::CorruptMessage(format!("batch at offset {}: {}", h.base_offset, e.0))
}

fn read_nullable<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
) -> Result<Option<&'a [u8]>, RecordError> {
    let len = r.read_varint()?;
    if len < 0 {
        return Ok(None);
    }
    r.take(len as usize, what).map(Some)
}

/// Parses every record of an uncompressed records section.
fn parse_records<'a>(
    payload: &'a [u8],
    h: &BatchHeader,
) -> Result<Vec<RecordView<'a>>, RecordError> {
    let mut reader = Reader::new(payload);
    let mut out = Vec::new();
    for _ in 0..h.records_count.max(0) {
        let len = reader.read_varint()?;
        if len < 0 {
            return Err(RecordError("negative record length"));
        }
        let body = reader.take(len as usize, "record length exceeds the batch")?;
        let mut r = Reader::new(body);
        let attributes = r.read_i8()?;
        let timestamp_delta = r.read_varlong()?;
        let tail = &body[body.len() - r.remaining()..];
        let offset_delta = r.read_varint()?;
        let key = read_nullable(&mut r, "bad record key length")?;
        let value = read_nullable(&mut r, "bad record value length")?;
        out.push(RecordView {
            attributes,
            offset: h.base_offset.saturating_add(i64::from(offset_delta)),
            timestamp: h.base_timestamp.saturating_add(timestamp_delta),
            key,
            tombstone: value.is_none(),
            tail,
        });
    }
    Ok(out)
}

/// Runs `f` over the records of a stored batch (decompressing it, bounded, if needed).
fn with_records<R>(
    batch: &[u8],
    h: &BatchHeader,
    f: impl FnOnce(&[RecordView<'_>]) -> R,
) -> Result<R, LogError> {
    let codec = h.compression()?;
    let payload = batch.get(BATCH_HEADER_LEN..).unwrap_or_default();
    decompress_and(codec, payload, |data| {
        parse_records(data, h).map(|records| f(&records))
    })?
    .map_err(|e| corrupt(h, e))
}

/// Puts every keyed record of `batch` (unless it belongs to an aborted transaction) into the map, unless the map is full: then nothing of the batch is put and
/// `false` comes back (the pass ends before this batch). A batch is always taken whole so the mapped section ends
/// at a batch boundary; the first batch of a pass is taken even if it overfills the map, so a pass always
/// makes progress.
pub(crate) fn map_batch(
    batch: &[u8],
    h: &BatchHeader,
    map: &mut OffsetMap,
    first: bool,
    aborted: bool,
) -> Result<bool, LogError> {
    // Aborted records never count: they must not shadow an older committed value of their key.
    if h.is_control() || aborted {
        map.extend_to(h.next_offset());
        return Ok(true);
    }
    with_records(batch, h, |records| {
        let extra: usize = records
            .iter()
            .filter_map(|r| r.key)
            .filter(|k| map.get(k).is_none())
            .map(OffsetMap::cost)
            .sum();
        if !first && !map.fits(extra) {
            return false;
        }
        for r in records {
            if let Some(key) = r.key {
                map.put(key, r.offset);
            }
        }
        map.extend_to(h.next_offset());
        true
    })
}

/// What cleaning does to one batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filtered {
    /// Copied as it is.
    Unchanged,
    /// Nothing of it stays.
    Dropped,
    /// Replaced by these bytes (a whole batch, CRC included).
    Rewritten(Vec<u8>),
}

/// The outcome for one batch, and the delete horizon of the tombstones it keeps (the next clean removes them
/// once it has passed).
#[derive(Debug)]
pub(crate) struct FilterOutcome {
    pub(crate) result: Filtered,
    pub(crate) tombstone_horizon: Option<i64>,
}

/// Decides which records of `batch` stay: a keyed record stays if no later record in the mapped section has
/// its key; a tombstone stays until its batch's delete horizon has passed; keyless records go (Kafka's cleaner
/// drops them too: a compacted topic cannot hold them). `decision` applies the transaction rules (module doc).
pub(crate) fn filter_batch(
    batch: &[u8],
    h: &BatchHeader,
    map: &OffsetMap,
    now_ms: i64,
    delete_retention_ms: i64,
    decision: &BatchDecision,
) -> Result<FilterOutcome, LogError> {
    let old_horizon = h.has_delete_horizon().then_some(h.base_timestamp);
    let new_horizon = || now_ms.saturating_add(delete_retention_ms.max(0));
    if decision.discard_records || h.records_count == 0 {
        // An already emptied batch is kept only as its producer's last, like a batch emptied now.
        let result = if decision.retain_empty && h.records_count > 0 {
            Filtered::Rewritten(rewrite(h, Compression::None, &[], None)?)
        } else if decision.retain_empty {
            Filtered::Unchanged
        } else {
            Filtered::Dropped
        };
        return Ok(FilterOutcome {
            result,
            tombstone_horizon: None,
        });
    }
    if h.is_control() {
        // Kept with its record; a marker that may go later gets (or keeps) its delete horizon.
        let (result, horizon) = match (decision.marker_horizon, old_horizon) {
            (false, _) => (Filtered::Unchanged, None),
            (true, Some(hz)) => (Filtered::Unchanged, Some(hz)),
            (true, None) => {
                let hz = new_horizon();
                let codec = h.compression()?;
                let bytes = with_records(batch, h, |records| {
                    let all: Vec<&RecordView<'_>> = records.iter().collect();
                    rewrite(h, codec, &all, Some(hz))
                })??;
                (Filtered::Rewritten(bytes), Some(hz))
            }
        };
        return Ok(FilterOutcome {
            result,
            tombstone_horizon: horizon,
        });
    }
    let codec = h.compression()?;
    with_records(batch, h, |records| {
        let keep: Vec<&RecordView<'_>> = records
            .iter()
            .filter(|r| {
                let Some(key) = r.key else { return false };
                let latest = map.get(key).is_none_or(|o| r.offset >= o);
                let expired = r.tombstone && old_horizon.is_some_and(|hz| now_ms >= hz);
                latest && !expired
            })
            .collect();
        let keeps_tombstones = keep.iter().any(|r| r.tombstone);
        let horizon = match old_horizon {
            Some(hz) => Some(hz),
            None if keeps_tombstones => Some(new_horizon()),
            None => None,
        };
        let tombstone_horizon = if keeps_tombstones { horizon } else { None };
        let result = if keep.is_empty() && !decision.retain_empty {
            Filtered::Dropped
        } else if keep.len() == records.len() && horizon == old_horizon {
            Filtered::Unchanged
        } else if keep.is_empty() {
            Filtered::Rewritten(rewrite(h, Compression::None, &[], None)?)
        } else {
            Filtered::Rewritten(rewrite(h, codec, &keep, horizon)?)
        };
        Ok(FilterOutcome {
            result,
            tombstone_horizon,
        })
    })?
}

/// The attribute bits of `codec`.
fn codec_id(codec: Compression) -> i16 {
    match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

/// Zigzag varint encoding, as in the record format.
fn put_varlong(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z.to_le_bytes()[0] & 0x7f) | 0x80);
        z >>= 7;
    }
    buf.push(z.to_le_bytes()[0]);
}

/// Builds a batch holding `keep` with `h`'s identity (see the module doc). An empty one is written
/// uncompressed, without a delete horizon and with the old max timestamp as its base timestamp.
fn rewrite(
    h: &BatchHeader,
    codec: Compression,
    keep: &[&RecordView<'_>],
    horizon: Option<i64>,
) -> Result<Vec<u8>, LogError> {
    let base_timestamp = match horizon {
        Some(hz) => hz,
        None if keep.is_empty() => h.max_timestamp,
        None => h.base_timestamp,
    };
    let mut records = Vec::new();
    let mut body = Vec::new();
    for r in keep {
        body.clear();
        body.push(r.attributes as u8);
        put_varlong(&mut body, r.timestamp.saturating_sub(base_timestamp));
        body.extend_from_slice(r.tail);
        put_varlong(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let max_timestamp = match h.timestamp_type() {
        TimestampType::LogAppendTime => h.max_timestamp,
        TimestampType::CreateTime => keep
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(h.max_timestamp),
    };
    let payload = compress(codec, &records)
        .map_err(|e| LogError::CorruptMessage(format!("cannot recompress {codec:?} batch: {e}")))?;
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + payload.len());
    // The rewritten batch holds a subset of a stored batch's records with the same codec; one that no longer
    // fits a batch's length field cannot be written.
    let batch_length = i32::try_from(BATCH_HEADER_LEN - 12 + payload.len())
        .map_err(|_| LogError::CorruptMessage("cleaned batch is too large".into()))?;
    // The codec bits say what this payload is; the horizon bit is set again below if there is one.
    let mut attributes = (h.attributes & !(DELETE_HORIZON_FLAG | CODEC_MASK)) | codec_id(codec);
    if horizon.is_some() {
        attributes |= DELETE_HORIZON_FLAG;
    }
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&h.producer_id.to_be_bytes());
    out.extend_from_slice(&h.producer_epoch.to_be_bytes());
    out.extend_from_slice(&h.base_sequence.to_be_bytes());
    let count = i32::try_from(keep.len())
        .map_err(|_| LogError::CorruptMessage("cleaned batch has too many records".into()))?;
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Compresses a records section with `codec` (snappy in the xerial framing Kafka's Java client writes).
fn compress(codec: Compression, records: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = BytesMut::new();
    let done = match codec {
        Compression::None => return Ok(records.to_vec()),
        Compression::Gzip => Gzip::compress(&mut out, |b: &mut BytesMut| {
            b.put_slice(records);
            Ok(())
        }),
        Compression::Snappy => Snappy::compress(&mut out, |b: &mut BytesMut| {
            b.put_slice(records);
            Ok(())
        }),
        Compression::Lz4 => Lz4::compress(&mut out, |b: &mut BytesMut| {
            b.put_slice(records);
            Ok(())
        }),
        Compression::Zstd => Zstd::compress(&mut out, |b: &mut BytesMut| {
            b.put_slice(records);
            Ok(())
        }),
    };
    done.map_err(|e| e.to_string())?;
    Ok(out.to_vec())
}
