//! Zero-copy Fetch responses: record sets go from the segment file to the socket with `sendfile`, never
//! through user space.
//!
//! kafka-protocol encodes a response into one buffer, copying every record set into it. To avoid that, the
//! fetch handler puts a *placeholder* `Bytes` of the right length in each `records` field: a slice of a big,
//! never-touched zeroed region (calloc'd, so it costs address space, not memory), at an offset unique to that
//! record set. Encoding then goes through [`SpliceBuf`], whose `put_slice` recognises a placeholder by its
//! address and, instead of copying, cuts the frame there and inserts the file range. The connection writes
//! the resulting [`Chunk`]s in order: buffers with `write`, file ranges with `sendfile`.

// The one module with unsafe code (see Cargo.toml [lints]): the placeholder region is calloc'd so it costs
// address space, not memory, and reports failure instead of aborting; SpliceBuf implements the unsafe BufMut
// trait by delegating to BytesMut.
#![allow(unsafe_code)]

use std::ops::Range;
use std::sync::OnceLock;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Encodable, HeaderVersion};

use crate::log::FileSlice;

/// One piece of a response frame.
#[derive(Debug)]
pub enum Chunk {
    /// Encoded bytes.
    Bytes(Bytes),
    /// A range of a segment file, sent with `sendfile`.
    File(FileSlice),
}

/// A whole response frame (size prefix included), in order.
pub type Frame = Vec<Chunk>;

/// Size of the placeholder region: record sets larger than this (beyond any sane fetch) are copied instead.
const REGION_LEN: usize = 256 << 20;

/// The placeholder region, or `None` if the address space could not be had (then record sets are copied).
fn region() -> Option<&'static Bytes> {
    static REGION: OnceLock<Option<Bytes>> = OnceLock::new();
    REGION
        .get_or_init(|| {
            // alloc_zeroed is calloc: the kernel maps zero pages lazily and nothing ever reads or writes them,
            // so this costs address space, not memory. Unlike vec![0; n] it reports failure (strict overcommit,
            // RLIMIT_AS) instead of aborting.
            let layout = std::alloc::Layout::array::<u8>(REGION_LEN).ok()?;
            // SAFETY: the layout has a non-zero size.
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            if ptr.is_null() {
                tracing::warn!(
                    "no address space for zero-copy fetch placeholders; fetches will copy"
                );
                return None;
            }
            // SAFETY: allocated just above by the global allocator with this exact layout, fully initialised
            // (zeroed), and owned by nothing else.
            let v = unsafe { Vec::from_raw_parts(ptr, REGION_LEN, REGION_LEN) };
            Some(Bytes::from(v))
        })
        .as_ref()
}

/// The record sets of one response, keyed by their placeholder's offset in the region.
#[derive(Default)]
pub struct Placeholders {
    slots: Vec<Vec<FileSlice>>,
}

impl Placeholders {
    /// Returns the `records` value for these file ranges: a placeholder to be spliced, or (if it cannot be
    /// given a unique placeholder) the bytes themselves.
    pub fn records(&mut self, slices: Vec<FileSlice>) -> std::io::Result<Bytes> {
        let len: usize = slices.iter().map(|s| s.len).sum();
        if len == 0 {
            return Ok(Bytes::new());
        }
        let start = self.slots.len();
        if let Some(region) = region().filter(|_| start + len <= REGION_LEN) {
            self.slots.push(slices);
            return Ok(region.slice(start..start + len));
        }
        let mut out = BytesMut::with_capacity(len);
        for s in &slices {
            out.extend_from_slice(&s.read_all()?);
        }
        Ok(out.freeze())
    }

    /// The file ranges a placeholder stands for, if `src` is one.
    fn lookup(&self, src: &[u8]) -> Option<&[FileSlice]> {
        let base = region()?.as_ptr() as usize;
        let at = (src.as_ptr() as usize).checked_sub(base)?;
        let slices = self.slots.get(at)?;
        (slices.iter().map(|s| s.len).sum::<usize>() == src.len()).then_some(slices.as_slice())
    }
}

/// An encoding buffer that turns placeholders into file chunks.
struct SpliceBuf<'a> {
    buf: BytesMut,
    placeholders: &'a Placeholders,
    chunks: Frame,
    /// Bytes already moved into `chunks`.
    flushed: usize,
}

// SAFETY: every method delegates to the inner BytesMut, whose BufMut implementation upholds the contract;
// `put_slice` only adds bookkeeping around it.
unsafe impl BufMut for SpliceBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.buf.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded unchanged; the caller's guarantee is about the chunk returned by chunk_mut,
        // which is the inner buffer's.
        unsafe { self.buf.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.buf.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.placeholders.lookup(src) {
            Some(slices) => {
                self.flushed += self.buf.len() + src.len();
                self.chunks.push(Chunk::Bytes(self.buf.split().freeze()));
                self.chunks.extend(slices.iter().cloned().map(Chunk::File));
            }
            None => self.buf.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for SpliceBuf<'_> {
    fn offset(&self) -> usize {
        self.flushed + self.buf.len()
    }

    // Message encoders never seek (only record-batch encoding does); these stay correct within the part
    // not yet cut off and never panic outside it.
    fn seek(&mut self, offset: usize) {
        let local = offset.saturating_sub(self.flushed);
        self.buf.resize(local, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let len = self.buf.len();
        let a = r.start.saturating_sub(self.flushed).min(len);
        let b = r.end.saturating_sub(self.flushed).min(len).max(a);
        &mut self.buf[a..b]
    }
}

/// Encodes `size | header | body`, splicing in the file ranges behind `placeholders`.
pub fn encode_spliced<R: Encodable + HeaderVersion>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
    placeholders: &Placeholders,
) -> Result<Frame, String> {
    let mut out = SpliceBuf {
        buf: BytesMut::with_capacity(4096),
        placeholders,
        chunks: Vec::new(),
        flushed: 0,
    };
    super::encode_into(&mut out, api, version, correlation_id, body)?;
    let SpliceBuf {
        buf, mut chunks, ..
    } = out;
    if !buf.is_empty() {
        chunks.push(Chunk::Bytes(buf.freeze()));
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::Decodable;
    use std::io::Write;
    use std::sync::Arc;

    /// A spliced frame, with its file ranges read back, equals the ordinary encoding with the data inline.
    #[test]
    fn spliced_frame_equals_copied_frame() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"xxxxHELLOyyyyWORLD!").unwrap();
        let file = Arc::new(f);
        let slice = |position, len| FileSlice {
            file: file.clone(),
            position,
            len,
        };
        for version in [4i16, 12, 16] {
            let mut ph = Placeholders::default();
            let mut spliced = FetchResponse::default();
            let mut inline = FetchResponse::default();
            for (i, (ranges, data)) in [
                (vec![slice(4, 5)], &b"HELLO"[..]),
                (vec![], &b""[..]),
                (vec![slice(13, 6), slice(4, 5)], &b"WORLD!HELLO"[..]),
            ]
            .into_iter()
            .enumerate()
            {
                let mut pd = PartitionData::default();
                pd.partition_index = i as i32;
                pd.records = Some(ph.records(ranges).unwrap());
                let mut t = FetchableTopicResponse::default();
                t.partitions.push(pd.clone());
                spliced.responses.push(t.clone());
                t.partitions[0].records = Some(Bytes::copy_from_slice(data));
                inline.responses.push(t);
            }
            let frame = encode_spliced(ApiKey::Fetch, version, 7, &spliced, &ph).unwrap();
            let mut flat = Vec::new();
            let mut files = 0;
            for c in &frame {
                match c {
                    Chunk::Bytes(b) => flat.extend_from_slice(b),
                    Chunk::File(s) => {
                        files += 1;
                        flat.extend_from_slice(&s.read_all().unwrap());
                    }
                }
            }
            assert_eq!(files, 3);
            let expected = crate::api::encode_response(ApiKey::Fetch, version, 7, &inline).unwrap();
            assert_eq!(flat, expected.to_vec(), "version {version}");
            let mut b = Bytes::from(flat);
            let _ = bytes::Buf::get_i32(&mut b);
            ResponseHeader::decode(&mut b, ApiKey::Fetch.response_header_version(version)).unwrap();
            let back = FetchResponse::decode(&mut b, version).unwrap();
            assert_eq!(
                back.responses[2].partitions[0].records.as_deref(),
                Some(&b"WORLD!HELLO"[..])
            );
        }
    }
}
