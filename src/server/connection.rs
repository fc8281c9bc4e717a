//! One client connection: framing, pipelining and in-order responses.
//!
//! Requests are read as size-prefixed frames (bounded by `socket.request.max.bytes`; the buffer grows only as
//! bytes actually arrive). Each request is handled in its own task so a long-poll fetch does not stall a produce
//! pipelined behind it, but responses are written strictly in request order (`FuturesOrdered`). At most
//! `queued.max.requests` requests are in flight per connection; beyond that the connection stops reading, which
//! pushes back on the client through TCP.
//!
//! Anything malformed at the framing or header level closes the connection with a log line, as Kafka does; it
//! never affects another connection.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use std::os::fd::AsRawFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use futures::future::{self, Either};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::task::JoinError;
use tokio_util::task::AbortOnDropHandle;

use crate::api;
use crate::broker::Broker;
use crate::log::FileSlice;

/// Largest read-ahead when a frame's remaining size is larger: memory follows what was received.
const READ_CHUNK: usize = 64 * 1024;

/// A request being handled: a spawned task, or an answer already known.
type InFlight = Either<AbortOnDropHandle<api::Reply>, future::Ready<Result<api::Reply, JoinError>>>;

/// A client connection and its in-flight requests.
pub struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    buf: BytesMut,
}

/// Why the connection is being closed.
enum Close {
    Eof,
    Error(String),
}

impl Connection {
    /// Wraps an accepted socket.
    pub fn new(stream: TcpStream, peer: SocketAddr, broker: Arc<Broker>) -> Connection {
        Connection {
            stream,
            peer,
            broker,
            buf: BytesMut::with_capacity(4096),
        }
    }

    /// Serves requests until the client closes, an error occurs, or shutdown completes the in-flight requests.
    pub async fn run(mut self) {
        let max_in_flight = self.broker.config.queued_max_requests.max(1) as usize;
        // Handler tasks are aborted if the connection goes away, so a parked long-poll cannot outlive it.
        let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
        let mut closing = false;
        let shutdown = self.broker.shutdown.clone();
        let result: Result<(), Close> = loop {
            if closing && in_flight.is_empty() {
                break Ok(());
            }
            // Frames already buffered are dispatched before reading more.
            if !closing && in_flight.len() < max_in_flight {
                match self.next_frame() {
                    Ok(Some(frame)) => {
                        match api::dispatch(&self.broker, frame, self.peer) {
                            api::Dispatch::Task(fut) => in_flight
                                .push_back(Either::Left(AbortOnDropHandle::new(tokio::spawn(fut)))),
                            api::Dispatch::Inline(fut) => {
                                let reply = fut.await;
                                // A produce that must close the connection (failed acks=0) stops further
                                // appends now; earlier responses are still written before the close.
                                closing |= reply.is_err();
                                in_flight.push_back(Either::Right(future::ready(Ok(reply))))
                            }
                            api::Dispatch::Immediate(resp) => in_flight
                                .push_back(Either::Right(future::ready(Ok(Ok(Some(resp)))))),
                            api::Dispatch::Close(why) => break Err(Close::Error(why)),
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(why) => break Err(Close::Error(why)),
                }
            }
            let can_read = !closing && in_flight.len() < max_in_flight;
            tokio::select! {
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    match done {
                        Ok(Ok(Some(frame))) => {
                            if let Err(e) = self.write_frame(frame).await {
                                break Err(Close::Error(format!("write failed: {e}")));
                            }
                        }
                        Ok(Ok(None)) => {} // acks=0 produce: no response
                        Ok(Err(why)) => break Err(Close::Error(why)),
                        Err(e) => break Err(Close::Error(format!("request handler failed: {e}"))),
                    }
                }
                read = self.read_more(), if can_read => {
                    match read {
                        Ok(0) => {
                            if self.buf.is_empty() {
                                // Let pipelined requests finish before closing, then stop.
                                closing = true;
                                if in_flight.is_empty() { break Err(Close::Eof); }
                            } else {
                                break Err(Close::Error("connection closed mid-frame".into()));
                            }
                        }
                        Ok(_) => {}
                        // A client that vanishes without a FIN is ordinary, not worth a warning.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break Err(Close::Eof),
                        Err(e) => break Err(Close::Error(format!("read failed: {e}"))),
                    }
                }
                _ = shutdown.cancelled(), if !closing => closing = true,
            }
        };
        match result {
            Ok(()) | Err(Close::Eof) => tracing::debug!(peer = %self.peer, "connection closed"),
            Err(Close::Error(why)) => {
                tracing::warn!(peer = %self.peer, "closing connection: {why}")
            }
        }
        let _ = self.stream.shutdown().await;
    }

    /// Writes a response: encoded parts with `write`, record sets straight from the segment file with
    /// `sendfile` (no copy through user space).
    async fn write_frame(&mut self, frame: api::Frame) -> std::io::Result<()> {
        for chunk in frame {
            match chunk {
                api::Chunk::Bytes(b) => self.stream.write_all(&b).await?,
                api::Chunk::File(slice) => send_file(&mut self.stream, &slice).await?,
            }
        }
        Ok(())
    }

    async fn read_more(&mut self) -> std::io::Result<usize> {
        let want = match self.frame_len() {
            Ok(Some(total)) => total.saturating_sub(self.buf.len()).clamp(1, READ_CHUNK),
            _ => READ_CHUNK,
        };
        self.buf.reserve(want);
        self.stream.read_buf(&mut self.buf).await
    }

    /// Total length (with the 4-byte prefix) of the frame at the head of the buffer, once the prefix is there.
    fn frame_len(&self) -> Result<Option<usize>, String> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let max = self.broker.config.socket_request_max_bytes;
        if size < 0 || size > max {
            return Err(describe_bad_size(size, &self.buf[..4], max));
        }
        Ok(Some(size as usize + 4))
    }

    fn next_frame(&mut self) -> Result<Option<Bytes>, String> {
        let Some(total) = self.frame_len()? else {
            return Ok(None);
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total).freeze();
        frame.advance(4);
        Ok(Some(frame))
    }
}

/// Sends a file range to the socket with `sendfile(2)`, waiting for writability as needed. Falls back to a
/// copy if the filesystem cannot splice (EINVAL/ENOSYS/EOPNOTSUPP before anything was sent).
#[cfg(target_os = "linux")]
async fn send_file(stream: &mut TcpStream, slice: &FileSlice) -> std::io::Result<()> {
    let socket = stream.as_raw_fd();
    let file = slice.file.as_raw_fd();
    let end = slice.position + slice.len as u64;
    let mut offset = libc::off_t::try_from(slice.position).map_err(std::io::Error::other)?;
    while (offset as u64) < end {
        stream.writable().await?;
        let remaining = (end - offset as u64) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the call (the socket is borrowed, the file
            // is held by the Arc in `slice`), and `offset` is a valid, exclusively borrowed off_t.
            let n = unsafe { libc::sendfile(socket, file, &mut offset, remaining) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            // The segment was truncated under us: the frame can no longer be completed, so the connection
            // must close (as Kafka does) rather than send a short response.
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file shrank during send",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e)
                if offset as u64 == slice.position
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                    ) =>
            {
                return stream.write_all(&slice.read_all()?).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Without `sendfile`, the range is copied through memory.
#[cfg(not(target_os = "linux"))]
async fn send_file(stream: &mut TcpStream, slice: &FileSlice) -> std::io::Result<()> {
    stream.write_all(&slice.read_all()?).await
}

/// Explains a frame size outside the allowed range, recognising common protocol mix-ups.
fn describe_bad_size(size: i32, prefix: &[u8], max: i32) -> String {
    let hint = match prefix {
        [0x16, 0x03, ..] => " (looks like a TLS handshake on the plaintext listener)",
        [b'G', b'E', b'T', b' ']
        | [b'P', b'O', b'S', b'T']
        | [b'H', b'E', b'A', b'D']
        | [b'P', b'U', b'T', b' '] => " (looks like HTTP on the Kafka listener)",
        _ => "",
    };
    format!("invalid request size {size} (socket_request_max_bytes is {max}){hint}")
}

#[cfg(test)]
mod tests {
    use super::describe_bad_size;

    #[test]
    fn recognises_tls_and_http() {
        assert!(describe_bad_size(0x16030100, &[0x16, 3, 1, 0], 100).contains("TLS"));
        assert!(describe_bad_size(0x47455420, b"GET ", 100).contains("HTTP"));
        assert!(describe_bad_size(-1, &[255; 4], 100).contains("-1"));
    }
}
