//! One connection's responses: kept in request order, counted in bytes until sent, and written without
//! blocking the connection task.
//!
//! Owned by the connection task alone (no lock). A request gets a slot when it is dispatched; the slot fills
//! when its handler finishes, and only the head slot is ever written, so responses leave in request order
//! however their handlers finish. [`Responses::unsent_bytes`] counts every finished response not yet written,
//! record sets sent from files included, which is what the connection compares with
//! `queued_max_response_bytes` before reading another request (Kafka mutes a channel until its response is
//! sent; we allow pipelining up to that many bytes).
//!
//! Writing is a sequence of non-blocking attempts ([`write_some`]) whose progress lives here, not in a
//! future, so the connection can stop waiting for writability at any moment (to read, to notice a closed
//! peer) without losing its place in a half-written frame.

use std::collections::VecDeque;
use std::fs::File;
use std::io;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::api::{Chunk, Frame, Reply};

/// Responses of one connection, in request order.
#[derive(Default)]
pub struct Responses {
    /// `None` while the handler runs; the front slot is the oldest request not yet being written.
    slots: VecDeque<Option<Reply>>,
    /// Sequence number of `slots[0]`.
    first_seq: u64,
    /// The response being written now.
    current: Option<Outgoing>,
    unsent_bytes: usize,
}

impl Responses {
    /// Takes a slot for a request whose handler is still running; returns its sequence number.
    pub fn reserve(&mut self) -> u64 {
        self.slots.push_back(None);
        self.first_seq + self.slots.len() as u64 - 1
    }

    /// Appends an answer that is already known.
    pub fn push_done(&mut self, reply: Reply) {
        let seq = self.reserve();
        self.complete(seq, reply);
    }

    /// Fills the slot of request `seq` with its answer.
    pub fn complete(&mut self, seq: u64, reply: Reply) {
        let Some(slot) = seq
            .checked_sub(self.first_seq)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.slots.get_mut(i))
        else {
            return;
        };
        if let Ok(Some(frame)) = &reply {
            self.unsent_bytes += frame_len(frame);
        }
        *slot = Some(reply);
    }

    /// Moves finished responses at the head into writing. `Err` means a request asked for the connection to be
    /// closed (all earlier responses have been written by then).
    pub fn advance(&mut self) -> Result<(), String> {
        while self.current.is_none() {
            match self.slots.front() {
                Some(Some(_)) => {}
                _ => return Ok(()),
            }
            let Some(Some(reply)) = self.slots.pop_front() else {
                return Ok(());
            };
            self.first_seq += 1;
            match reply {
                Ok(Some(frame)) => self.current = Some(Outgoing::new(frame)),
                Ok(None) => {} // acks=0 produce: no response
                Err(why) => return Err(why),
            }
        }
        Ok(())
    }

    /// Requests dispatched and not yet fully answered.
    pub fn len(&self) -> usize {
        self.slots.len() + usize::from(self.current.is_some())
    }

    /// True when every request has been answered completely.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of finished responses not yet written.
    pub fn unsent_bytes(&self) -> usize {
        self.unsent_bytes
    }

    /// Writes what the socket takes now of the current response, waiting for writability first; pending for
    /// ever when there is nothing to write. Returns the bytes written. Cancel-safe: progress is kept in `self`.
    pub async fn write_some(&mut self, stream: &TcpStream) -> io::Result<usize> {
        let Some(out) = self.current.as_mut() else {
            return std::future::pending().await;
        };
        let written = loop {
            stream.writable().await?;
            match out.try_write(stream) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        self.unsent_bytes = self.unsent_bytes.saturating_sub(written);
        if out.chunks.is_empty() {
            self.current = None;
        }
        Ok(written)
    }
}

/// Bytes a frame puts on the wire.
fn frame_len(frame: &Frame) -> usize {
    frame
        .iter()
        .map(|c| match c {
            Chunk::Bytes(b) => b.len(),
            Chunk::File(f) => f.len,
        })
        .sum()
}

/// A response being written: what is left of it.
struct Outgoing {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    sent: usize,
}

impl Outgoing {
    fn new(frame: Frame) -> Outgoing {
        Outgoing {
            chunks: frame.into(),
            sent: 0,
        }
    }

    /// Writes until the socket would block or the frame is done. Returns the bytes written, or `WouldBlock` if
    /// none could be (tokio then forgets the writability, so the next wait sleeps until the socket drains).
    fn try_write(&mut self, stream: &TcpStream) -> io::Result<usize> {
        let mut total = 0;
        while let Some(chunk) = self.chunks.front_mut() {
            let result = match chunk {
                Chunk::Bytes(b) => stream.try_write(&b[self.sent..]),
                Chunk::File(slice) => {
                    let file = &slice.file;
                    let position = slice.position + self.sent as u64;
                    let remaining = slice.len - self.sent;
                    match stream.try_io(Interest::WRITABLE, || {
                        send_file(stream, file, position, remaining)
                    }) {
                        // The filesystem cannot splice: send this range through memory instead.
                        Err(e) if self.sent == 0 && cannot_splice(&e) => {
                            let data = slice.read_all()?;
                            *chunk = Chunk::Bytes(Bytes::from(data));
                            continue;
                        }
                        other => other,
                    }
                }
            };
            match result {
                Ok(n) => {
                    total += n;
                    self.sent += n;
                    let len = match &*chunk {
                        Chunk::Bytes(b) => b.len(),
                        Chunk::File(f) => f.len,
                    };
                    if self.sent >= len {
                        self.chunks.pop_front();
                        self.sent = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && total > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

fn cannot_splice(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// One `sendfile(2)` call from `file` at `position` to the socket.
#[cfg(target_os = "linux")]
fn send_file(stream: &TcpStream, file: &File, position: u64, len: usize) -> io::Result<usize> {
    let mut offset = position;
    let n = rustix::fs::sendfile(stream, file, Some(&mut offset), len)?;
    match n {
        // The segment was truncated under us: the frame can no longer be completed, so the connection must
        // close (as Kafka does) rather than send a short response.
        0 if len > 0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "segment file shrank during send",
        )),
        n => Ok(n),
    }
}

/// Without `sendfile`, every range goes through memory.
#[cfg(not(target_os = "linux"))]
fn send_file(_: &TcpStream, _: &File, _: u64, _: usize) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use crate::log::FileSlice;

    fn frame(n: usize, byte: u8) -> Reply {
        Ok(Some(vec![Chunk::Bytes(Bytes::from(vec![byte; n]))]))
    }

    #[test]
    fn answers_leave_in_request_order_and_are_counted_until_sent() {
        let mut r = Responses::default();
        let a = r.reserve();
        let b = r.reserve();
        r.push_done(frame(5, 1));
        assert_eq!(r.len(), 3);
        // The second finishes first: counted, but not written before the first.
        r.complete(b, frame(100, 2));
        assert_eq!(r.unsent_bytes(), 105);
        r.advance().unwrap();
        assert!(r.current.is_none(), "head still running");
        r.complete(a, Ok(None)); // acks=0: nothing to send
        r.advance().unwrap();
        assert!(
            matches!(&r.current, Some(o) if matches!(&o.chunks[0], Chunk::Bytes(x) if x[0] == 2))
        );
        assert_eq!(r.len(), 2);
        // A stale or unknown sequence number is ignored.
        r.complete(a, frame(1_000, 3));
        r.complete(99, frame(1_000, 3));
        assert_eq!(r.unsent_bytes(), 105);
    }

    #[test]
    fn a_closing_answer_stops_after_earlier_ones() {
        let mut r = Responses::default();
        r.push_done(Ok(None));
        r.push_done(Err("bad produce".into()));
        r.push_done(frame(3, 1));
        assert_eq!(r.advance().unwrap_err(), "bad produce");
    }

    #[tokio::test]
    async fn writes_resume_where_they_stopped() {
        use std::io::Write;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![9u8; 3 << 20]).unwrap();
        let file = std::sync::Arc::new(file);
        let mut r = Responses::default();
        let big = 8 << 20; // more than the socket buffers hold
        r.push_done(frame(big, 7));
        r.push_done(Ok(Some(vec![
            Chunk::Bytes(Bytes::from_static(b"ab")),
            Chunk::File(FileSlice {
                file,
                position: 1,
                len: 2 << 20,
            }),
        ])));
        let size = big + 2 + (2 << 20);
        r.advance().unwrap();
        let mut written = 0;
        // Without a reader the socket fills up and write_some stops returning; it is cancelled here, as the
        // connection's select does, and must not lose or repeat bytes.
        while let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), r.write_some(&server)).await
        {
            written += n;
        }
        assert!(written < big, "socket buffers held {written} bytes");
        assert_eq!(r.unsent_bytes(), size - written);
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut c = client;
            let mut all = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            while all.len() < size {
                let n = c.read(&mut buf).await.unwrap();
                assert!(n > 0);
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        while !r.is_empty() {
            r.write_some(&server).await.unwrap();
            r.advance().unwrap();
        }
        let all = reader.await.unwrap();
        assert_eq!(all.len(), size);
        assert!(all[..big].iter().all(|b| *b == 7));
        assert_eq!(&all[big..big + 2], b"ab");
        assert!(all[big + 2..].iter().all(|b| *b == 9));
        assert_eq!(r.unsent_bytes(), 0);
    }
}
