//! Streaming decompression of one batch's records section, with bounded memory and CPU.
//!
//! Owns: the codec stream decoders (gzip, snappy in both framings, Kafka's LZ4 frame, zstd), the limits that
//! bound them, and [`StreamSource`], a record byte [`Source`] over a decoder with a small fixed buffer. Used by
//! produce-time validation (`batch.rs`, every compressed batch) and the admin-path record search
//! (`record.rs`, ListOffsets by time). Key, value and header bytes stream through the buffer and are dropped,
//! so memory per batch is the buffer plus the codec's own state — gzip's 32 KiB window, one LZ4 block
//! (at most 4 MiB), a zstd window of at most [`ZSTD_WINDOW_LOG_MAX`], one snappy block (at most
//! [`SNAPPY_MAX_EXPANSION`] times its compressed size) — never the decompressed size.
//!
//! Input is untrusted: every failure is a [`StreamFailure`], never a panic.

use std::io::{self, Read};

use super::batch::Compression;
use super::error::LogError;
use super::record::{RecordError, Source};

/// Most bytes one batch may decompress to. Decompression costs CPU in proportion to its output, and a small
/// compressed batch can claim a huge output (a "decompression bomb"), so this bounds the work one batch can
/// cause (about a quarter to one second of one core). Kafka's default `max.message.bytes` (1 MiB) of
/// realistic data decompresses to a few MiB, far below it.
pub(crate) const MAX_DECOMPRESSED_BATCH_BYTES: u64 = 256 * 1024 * 1024;

/// Largest zstd window accepted (2^24 = 16 MiB). The decoder allocates the window a frame declares, so this
/// bounds its memory. Producers at default levels use 2 MiB windows or less (the Java client's level 3
/// streams use 2^21; librdkafka and the Python clients size the window to the batch); only streaming zstd
/// at levels 20-22 declares more, and such batches are refused (Kafka allows up to 2^27).
pub(crate) const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Snappy's format bounds how much one compressed byte can expand: the longest copy (64 bytes) takes a
/// 3-byte tag, so output <= 64/3 x input. A block declaring more than this many times its compressed size
/// is corrupt; checking it first keeps the block buffer proportional to the bytes received.
pub(crate) const SNAPPY_MAX_EXPANSION: usize = 22;

/// The xerial framing (Java client) starts with this magic, then two 4-byte version fields.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Size of [`StreamSource`]'s read buffer.
const BUF_LEN: usize = 16 * 1024;

/// Why a compressed stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamFailure {
    /// The payload is not valid data for its codec, or ends early.
    Codec(String),
    /// Output passed [`MAX_DECOMPRESSED_BATCH_BYTES`].
    TooLarge,
}

impl std::fmt::Display for StreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamFailure::Codec(m) => f.write_str(m),
            StreamFailure::TooLarge => write!(
                f,
                "decompressed batch exceeds {MAX_DECOMPRESSED_BATCH_BYTES} bytes"
            ),
        }
    }
}

/// A codec's stream decoder over the compressed payload.
enum Decoder<'a> {
    // Java's GZIPInputStream reads concatenated members; so does this.
    Gzip(flate2::read::MultiGzDecoder<&'a [u8]>),
    // `Option` so `finish` can take it: only `lz4::Decoder::finish` tells a complete frame from a cut one.
    Lz4(Option<lz4::Decoder<&'a [u8]>>),
    Zstd(zstd::stream::read::Decoder<'static, &'a [u8]>),
    Snappy(SnappyBlocks<'a>),
}

impl Read for Decoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Lz4(Some(d)) => d.read(buf),
            Decoder::Lz4(None) => Ok(0),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Snappy(d) => d.read(buf),
        }
    }
}

/// Snappy in either framing, one block at a time: xerial (`\x82SNAPPY\0` header, then blocks of
/// `[u32 compressed length][raw snappy block]`) or a single raw block (librdkafka). A raw block cannot be
/// decoded in pieces (copies may reach back to its start), so its declared length is bounded by
/// [`SNAPPY_MAX_EXPANSION`] and the cap before its buffer is allocated.
struct SnappyBlocks<'a> {
    rest: &'a [u8],
    xerial: bool,
    block: Vec<u8>,
    pos: usize,
    decoder: snap::raw::Decoder,
}

impl<'a> SnappyBlocks<'a> {
    fn new(payload: &'a [u8]) -> io::Result<Self> {
        let xerial = payload.starts_with(XERIAL_MAGIC);
        let rest = if xerial {
            payload
                .get(XERIAL_HEADER_LEN..)
                .ok_or_else(|| corrupt("truncated xerial snappy header"))?
        } else {
            payload
        };
        Ok(SnappyBlocks {
            rest,
            xerial,
            block: Vec::new(),
            pos: 0,
            decoder: snap::raw::Decoder::new(),
        })
    }

    /// Decodes the next block into `self.block`; false when there are no more.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.rest.is_empty() {
            return Ok(false);
        }
        let src = if self.xerial {
            let (len, tail) = self
                .rest
                .split_first_chunk::<4>()
                .ok_or_else(|| corrupt("truncated snappy block length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            let block = tail
                .get(..len)
                .ok_or_else(|| corrupt("snappy block length exceeds the batch"))?;
            self.rest = tail.get(len..).unwrap_or_default();
            block
        } else {
            std::mem::take(&mut self.rest)
        };
        let len = snap::raw::decompress_len(src).map_err(|e| corrupt(&e.to_string()))?;
        if len > src.len().saturating_mul(SNAPPY_MAX_EXPANSION)
            || len as u64 > MAX_DECOMPRESSED_BATCH_BYTES
        {
            return Err(corrupt(&format!(
                "snappy block of {} bytes declares {len} bytes of output",
                src.len()
            )));
        }
        self.block.clear();
        self.block.resize(len, 0);
        let n = self
            .decoder
            .decompress(src, &mut self.block)
            .map_err(|e| corrupt(&e.to_string()))?;
        self.block.truncate(n);
        self.pos = 0;
        Ok(true)
    }
}

impl Read for SnappyBlocks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Empty blocks are legal: keep going until one has bytes or none are left.
        while self.pos >= self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let avail = self.block.get(self.pos..).unwrap_or_default();
        let n = avail.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), avail.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

fn corrupt(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Record bytes decompressed on demand through a fixed [`BUF_LEN`] buffer, counting output against
/// [`MAX_DECOMPRESSED_BATCH_BYTES`]. The first decoder failure is kept in [`StreamSource::failure`]; the
/// record parser only sees "no more bytes", and the caller asks which it was.
pub(crate) struct StreamSource<'a> {
    decoder: Decoder<'a>,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    total: u64,
    failure: Option<StreamFailure>,
    eof: bool,
}

impl<'a> StreamSource<'a> {
    /// Starts decompressing `payload` (a batch's bytes after its header) with `codec`, which must not be
    /// [`Compression::None`] (uncompressed batches are walked in place).
    pub(crate) fn open(codec: Compression, payload: &'a [u8]) -> Result<Self, StreamFailure> {
        let failed = |what: &str, e: io::Error| StreamFailure::Codec(format!("{what}: {e}"));
        let decoder = match codec {
            Compression::None => {
                return Err(StreamFailure::Codec(
                    "uncompressed batches are not streamed".into(),
                ))
            }
            Compression::Gzip => Decoder::Gzip(flate2::read::MultiGzDecoder::new(payload)),
            Compression::Snappy => {
                Decoder::Snappy(SnappyBlocks::new(payload).map_err(|e| failed("snappy", e))?)
            }
            Compression::Lz4 => Decoder::Lz4(Some(
                lz4::Decoder::new(payload).map_err(|e| failed("lz4", e))?,
            )),
            Compression::Zstd => {
                let mut d = zstd::stream::read::Decoder::with_buffer(payload)
                    .map_err(|e| failed("zstd", e))?;
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                    .map_err(|e| failed("zstd", e))?;
                Decoder::Zstd(d)
            }
        };
        Ok(StreamSource {
            decoder,
            buf: vec![0; BUF_LEN].into_boxed_slice(),
            pos: 0,
            end: 0,
            total: 0,
            failure: None,
            eof: false,
        })
    }

    /// The decoder failure that ended the stream, if any. At the end of the stream this also checks that
    /// the codec's data was complete: LZ4's decoder reports a cut frame only when asked.
    pub(crate) fn failure(&mut self) -> Option<StreamFailure> {
        if self.failure.is_none() && self.eof {
            if let Decoder::Lz4(d) = &mut self.decoder {
                if let Some(d) = d.take() {
                    if d.finish().1.is_err() {
                        self.failure = Some(StreamFailure::Codec("lz4 frame is truncated".into()));
                    }
                }
            }
        }
        self.failure.clone()
    }

    /// Decompressed bytes produced so far.
    #[cfg(test)]
    pub(crate) fn total_out(&self) -> u64 {
        self.total
    }

    /// Refills the buffer; false at the end of the stream or on failure.
    fn fill(&mut self) -> bool {
        if self.eof || self.failure.is_some() {
            return false;
        }
        loop {
            match self.decoder.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return false;
                }
                Ok(n) => {
                    self.total = self.total.saturating_add(n as u64);
                    if self.total > MAX_DECOMPRESSED_BATCH_BYTES {
                        self.failure = Some(StreamFailure::TooLarge);
                        return false;
                    }
                    self.pos = 0;
                    self.end = n;
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.failure = Some(StreamFailure::Codec(e.to_string()));
                    return false;
                }
            }
        }
    }

    /// Checks that the stream ended cleanly once the records are read: the decoder reached the end of its
    /// data (verifying the codec's own checksums on the way) and produced no byte beyond the records.
    /// `Ok(false)` means bytes are left over.
    pub(crate) fn finish(&mut self) -> Result<bool, StreamFailure> {
        let clean_end = self.at_end();
        match self.failure() {
            Some(f) => Err(f),
            None => Ok(clean_end),
        }
    }
}

/// Decompresses a whole records section into memory and runs `f` over it (the cleaner, which rewrites the records
/// and so needs them all); `Compression::None` runs `f` over `payload` itself. Bounded like the streaming path: at
/// most [`MAX_DECOMPRESSED_BATCH_BYTES`], the same decoders and window limits. A failure is a corrupt batch.
pub(crate) fn decompress_and<R>(
    codec: Compression,
    payload: &[u8],
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, LogError> {
    if codec == Compression::None {
        return Ok(f(payload));
    }
    let bad = |e: StreamFailure| {
        LogError::CorruptMessage(format!("cannot decompress {codec:?} batch: {e}"))
    };
    let mut src = StreamSource::open(codec, payload).map_err(bad)?;
    let mut out = Vec::new();
    loop {
        out.extend_from_slice(&src.buf[src.pos..src.end]);
        src.pos = src.end;
        if !src.fill() {
            break;
        }
    }
    match src.failure() {
        Some(e) => Err(bad(e)),
        None => Ok(f(&out)),
    }
}

impl Source for StreamSource<'_> {
    fn byte(&mut self) -> Result<u8, RecordError> {
        if self.pos >= self.end && !self.fill() {
            return Err(RecordError("decompressed records end early"));
        }
        let b = self
            .buf
            .get(self.pos)
            .copied()
            .ok_or(RecordError("decompressed records end early"))?;
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, mut n: usize, what: &'static str) -> Result<(), RecordError> {
        loop {
            let here = n.min(self.end.saturating_sub(self.pos));
            self.pos += here;
            n -= here;
            if n == 0 {
                return Ok(());
            }
            if !self.fill() {
                return Err(RecordError(what));
            }
        }
    }

    fn at_end(&mut self) -> bool {
        self.pos >= self.end && !self.fill()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    fn drain(codec: Compression, payload: &[u8]) -> Result<Vec<u8>, StreamFailure> {
        let mut s = StreamSource::open(codec, payload)?;
        let mut out = Vec::new();
        while let Ok(b) = s.byte() {
            out.push(b);
        }
        match s.finish() {
            Ok(true) => Ok(out),
            Ok(false) => unreachable!("drained"),
            Err(e) => Err(e),
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        e.write_all(data).unwrap();
        let (out, r) = e.finish();
        r.unwrap();
        out
    }

    fn xerial(data: &[u8]) -> Vec<u8> {
        let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for chunk in data.chunks(32 * 1024) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend((block.len() as u32).to_be_bytes());
            out.extend(block);
        }
        out
    }

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| format!("{{\"id\":{i},\"v\":\"x{}\"}}", i % 7).into_bytes())
            .collect()
    }

    #[test]
    fn every_codec_and_both_snappy_framings_round_trip() {
        let data = sample();
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let zstd = zstd::stream::encode_all(&data[..], 3).unwrap();
        for (codec, payload) in [
            (Compression::Gzip, gzip(&data)),
            (Compression::Lz4, lz4(&data)),
            (Compression::Zstd, zstd),
            (Compression::Snappy, xerial(&data)),
            (Compression::Snappy, raw_snappy),
        ] {
            assert_eq!(drain(codec, &payload).unwrap(), data, "{codec:?}");
        }
    }

    #[test]
    fn garbage_and_truncation_are_codec_failures() {
        let data = sample();
        let zstd = zstd::stream::encode_all(&data[..], 3).unwrap();
        for (codec, payload) in [
            (Compression::Gzip, gzip(&data)),
            (Compression::Lz4, lz4(&data)),
            (Compression::Zstd, zstd),
            (Compression::Snappy, xerial(&data)),
        ] {
            let cut = &payload[..payload.len() / 2];
            assert!(
                matches!(drain(codec, cut), Err(StreamFailure::Codec(_))),
                "{codec:?} truncated"
            );
            let garbage: Vec<u8> = (0..500u32).map(|i| (i * 7919 % 251) as u8).collect();
            assert!(
                matches!(drain(codec, &garbage), Err(StreamFailure::Codec(_))),
                "{codec:?} garbage"
            );
        }
    }

    #[test]
    fn output_is_capped() {
        // 300 MB of zeros compress to a few hundred KB; decompression must stop at the cap.
        let bomb = zstd::stream::encode_all(io::repeat(0).take(300 << 20), 1).unwrap();
        assert!(bomb.len() < 1 << 20);
        let mut s = StreamSource::open(Compression::Zstd, &bomb).unwrap();
        assert!(s.skip(usize::MAX, "skip").is_err());
        assert_eq!(s.failure(), Some(StreamFailure::TooLarge));
        assert!(s.total_out() <= MAX_DECOMPRESSED_BATCH_BYTES + BUF_LEN as u64);
    }

    #[test]
    fn snappy_declared_length_is_bounded_before_allocating() {
        // Raw snappy claiming 2^32-1 bytes from a 6-byte block.
        let r = drain(Compression::Snappy, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        assert!(matches!(r, Err(StreamFailure::Codec(m)) if m.contains("declares")));
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend([0, 0, 0, 0, 0, 0, 0, 1]);
        framed.extend(6u32.to_be_bytes());
        framed.extend([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        assert!(drain(Compression::Snappy, &framed).is_err());
        // A block length beyond the payload.
        let mut framed = xerial(b"hello");
        framed.extend(99u32.to_be_bytes());
        assert!(drain(Compression::Snappy, &framed).is_err());
    }

    #[test]
    fn zstd_window_is_bounded() {
        // A frame whose header declares a 128 MiB window is refused before the decoder allocates it.
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.window_log(27).unwrap();
        std::io::Write::write_all(&mut e, &sample()).unwrap();
        let frame = e.finish().unwrap();
        assert!(matches!(
            drain(Compression::Zstd, &frame),
            Err(StreamFailure::Codec(_))
        ));
    }
}
