//! One client connection: framing, pipelining, in-order responses, and the limits on what one client may make
//! the broker hold.
//!
//! Owned by one task (the connection's), with no lock: the read buffer, the running handlers and the
//! [`Responses`] queue. Requests are read as size-prefixed frames (bounded by `socket.request.max.bytes`; the
//! buffer grows only as bytes actually arrive). Each request is handled in its own task so a long-poll fetch
//! does not stall a produce pipelined behind it, but responses are written strictly in request order.
//!
//! The connection stops reading while `queued.max.requests` requests are unanswered or while the finished but
//! unsent responses exceed `queued_max_response_bytes` (a client that never reads); that pushes back on the
//! client through TCP. While not reading it still watches the socket for the peer's close (EPOLLRDHUP), so a
//! client that goes away is noticed at once, not when its work is done. A closed peer, a read error or a
//! malformed frame ends the connection at once: handler tasks are aborted (a parked long-poll included) and the
//! socket is closed. A connection that neither reads nor writes a byte for `connections.max.idle.ms` while none
//! of its requests is being handled (for instance one that stalled in the middle of a frame) is closed too.
//!
//! Anything malformed at the framing or header level closes the connection with a log line, as Kafka does; it
//! never affects another connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::responses::Responses;
use crate::api;
use crate::broker::Broker;

/// Largest read-ahead when a frame's remaining size is larger: memory follows what was received.
const READ_CHUNK: usize = 64 * 1024;

/// A running request handler: its request's sequence number and its answer. Dropping it aborts the task.
type Handler = Pin<Box<dyn Future<Output = (u64, api::Reply)> + Send>>;

/// A client connection and its in-flight requests.
pub struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    buf: BytesMut,
}

/// Why the connection is being closed.
enum Close {
    /// The peer closed or reset the connection.
    Eof,
    /// Nothing happened for `connections_max_idle_ms`.
    Idle(Duration),
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

    /// Serves requests until the client closes, an error occurs, the connection idles out, or shutdown
    /// completes the in-flight requests.
    pub async fn run(mut self) {
        let config = self.broker.config.clone();
        let max_in_flight = config.queued_max_requests.max(1) as usize;
        let max_unsent = usize::try_from(config.queued_max_response_bytes)
            .unwrap_or(usize::MAX)
            .max(1);
        // Negative means never, as in Kafka.
        let max_idle = u64::try_from(config.connections_max_idle_ms)
            .ok()
            .map(|ms| Duration::from_millis(ms).min(FAR));
        let mut handlers: FuturesUnordered<Handler> = FuturesUnordered::new();
        let mut responses = Responses::default();
        let mut closing = false;
        // Set when read readiness was dropped unread (see `peer_closed`); the next read must then try the socket
        // before waiting, since tokio no longer knows data is there.
        let readiness_dropped = AtomicBool::new(false);
        let mut last_activity = Instant::now();
        let idle_timer = tokio::time::sleep(max_idle.unwrap_or(FAR));
        tokio::pin!(idle_timer);
        let shutdown = self.broker.shutdown.clone();
        let result: Result<(), Close> = loop {
            if let Err(why) = responses.advance() {
                break Err(Close::Error(why));
            }
            if closing && responses.is_empty() {
                break Ok(());
            }
            let may_read = !closing
                && responses.len() < max_in_flight
                && responses.unsent_bytes() < max_unsent;
            // Frames already buffered are dispatched before reading more.
            if may_read {
                match self.next_frame() {
                    Ok(Some(frame)) => {
                        if frame.len() >= 8 {
                            tracing::trace!(peer = %self.peer, api = i16::from_be_bytes([frame[0], frame[1]]), version = i16::from_be_bytes([frame[2], frame[3]]), corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]), len = frame.len(), "request");
                        }
                        match api::dispatch(&self.broker, frame, self.peer) {
                            api::Dispatch::Task(fut) => {
                                // Most handlers finish on their first poll: run it here, so the response
                                // counts against queued_max_response_bytes before the next request is
                                // dispatched (otherwise a burst of pipelined requests would all be answered
                                // into memory at once). Only handlers that wait (long-poll fetch, controller
                                // commands) get a task of their own. A handler that panics closes only
                                // this connection, with a log line, wherever it runs.
                                let mut fut =
                                    Box::pin(AssertUnwindSafe(fut).catch_unwind().map(|r| {
                                        r.unwrap_or_else(|_| {
                                            Err("request handler panicked".to_string())
                                        })
                                    }));
                                if let Poll::Ready(reply) = futures::poll!(fut.as_mut()) {
                                    responses.push_done(reply);
                                    continue;
                                }
                                let seq = responses.reserve();
                                let task = AbortOnDropHandle::new(tokio::spawn(fut));
                                handlers.push(Box::pin(async move {
                                    let reply = task.await.unwrap_or_else(|e| {
                                        Err(format!("request handler failed: {e}"))
                                    });
                                    (seq, reply)
                                }));
                            }
                            api::Dispatch::Inline(fut) => {
                                let reply = fut.await;
                                // A produce that must close the connection (failed acks=0) stops further
                                // appends now; earlier responses are still written before the close.
                                closing |= reply.is_err();
                                responses.push_done(reply);
                            }
                            api::Dispatch::Immediate(resp) => responses.push_done(Ok(Some(resp))),
                            api::Dispatch::Close(why) => break Err(Close::Error(why)),
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(why) => break Err(Close::Error(why)),
                }
            }
            let want = match self.frame_len() {
                Ok(Some(total)) => total.saturating_sub(self.buf.len()).clamp(1, READ_CHUNK),
                _ => READ_CHUNK,
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !closing => closing = true,
                Some((seq, reply)) = handlers.next() => {
                    responses.complete(seq, reply);
                    // The idle clock starts when the broker has nothing left to do but wait for the client.
                    last_activity = Instant::now();
                }
                written = responses.write_some(&self.stream) => match written {
                    Ok(_) => last_activity = Instant::now(),
                    Err(e) if is_disconnect(&e) => break Err(Close::Eof),
                    Err(e) => break Err(Close::Error(format!("write failed: {e}"))),
                },
                read = read_some(&self.stream, &mut self.buf, want, &readiness_dropped), if may_read => {
                    match read {
                        Ok(0) if self.buf.is_empty() => break Err(Close::Eof),
                        Ok(0) => break Err(Close::Error("connection closed mid-frame".into())),
                        Ok(_) => last_activity = Instant::now(),
                        // A client that vanishes without a FIN is ordinary, not worth a warning.
                        Err(e) if is_disconnect(&e) => break Err(Close::Eof),
                        Err(e) => break Err(Close::Error(format!("read failed: {e}"))),
                    }
                }
                closed = peer_closed(&self.stream, &readiness_dropped), if !may_read => match closed {
                    Ok(()) => break Err(Close::Eof),
                    Err(e) => break Err(Close::Error(format!("socket failed: {e}"))),
                },
                () = &mut idle_timer, if max_idle.is_some() && handlers.is_empty() => {
                    let limit = max_idle.unwrap_or(FAR);
                    if last_activity.elapsed() >= limit {
                        break Err(Close::Idle(limit));
                    }
                    idle_timer.as_mut().reset(last_activity + limit);
                }
            }
        };
        // Dropping the handlers aborts their tasks: nothing keeps working for a connection that is gone.
        drop(handlers);
        match result {
            Ok(()) | Err(Close::Eof) => tracing::debug!(peer = %self.peer, "connection closed"),
            Err(Close::Idle(limit)) if self.buf.is_empty() => {
                tracing::debug!(peer = %self.peer, "closing connection idle for {limit:?}")
            }
            Err(Close::Idle(limit)) => tracing::warn!(
                peer = %self.peer,
                "closing connection idle for {limit:?} in the middle of a request ({} bytes received)",
                self.buf.len()
            ),
            Err(Close::Error(why)) => {
                tracing::warn!(peer = %self.peer, "closing connection: {why}")
            }
        }
        let _ = self.stream.shutdown().await;
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

/// A timer deadline far enough away to mean "never" without overflowing `Instant`.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Reads up to `want` bytes into `buf`. Cancel-safe: bytes are only taken from the socket inside one
/// synchronous call.
async fn read_some(
    stream: &TcpStream,
    buf: &mut BytesMut,
    want: usize,
    readiness_dropped: &AtomicBool,
) -> io::Result<usize> {
    if readiness_dropped.swap(false, Ordering::Relaxed) {
        // Data may have arrived while we were not reading, and tokio was told to forget it: ask the socket.
        match recv_into(stream, buf, want) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
    }
    loop {
        stream.readable().await?;
        // try_io clears the readiness on WouldBlock, so the next wait sleeps until new data.
        match stream.try_io(Interest::READABLE, || recv_into(stream, buf, want)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// One non-blocking `recv(2)` of at most `want` bytes, appended to `buf`. The new region is zeroed first (a
/// memset of at most one read chunk), which keeps this free of unsafe code.
fn recv_into(stream: &TcpStream, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + want, 0);
    let result = rustix::net::recv(stream, &mut buf[start..], rustix::net::RecvFlags::empty());
    let n = match result {
        Ok((n, _)) => n,
        Err(e) => {
            buf.truncate(start);
            return Err(e.into());
        }
    };
    buf.truncate(start + n);
    Ok(n)
}

/// Resolves when the peer has closed (FIN or reset) while we are not reading, without reading or buffering
/// anything. Data that arrives meanwhile stays in the kernel (TCP pushes back on the client); its readiness is
/// dropped so that this waits for the next socket event instead of spinning, and `readiness_dropped` tells the
/// next read to look at the socket itself.
async fn peer_closed(stream: &TcpStream, readiness_dropped: &AtomicBool) -> io::Result<()> {
    loop {
        let ready = stream.ready(Interest::READABLE).await?;
        // tokio keeps READ_CLOSED (EPOLLRDHUP/EPOLLHUP) once seen, even when readiness is cleared.
        if ready.is_read_closed() {
            return Ok(());
        }
        let _ = stream.try_io(Interest::READABLE, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
        readiness_dropped.store(true, Ordering::Relaxed);
    }
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
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    const SHORT: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn a_close_is_seen_without_reading_and_unread_data_is_not_lost() {
        let (mut client, server) = pair().await;
        let dropped = AtomicBool::new(false);
        client.write_all(b"pending request").await.unwrap();
        // Data waiting is not a close: the watch keeps waiting (having dropped the readiness).
        assert!(tokio::time::timeout(SHORT, peer_closed(&server, &dropped))
            .await
            .is_err());
        assert!(dropped.load(Ordering::Relaxed));
        // Reading again finds the data although tokio was told to forget it.
        let mut buf = BytesMut::new();
        let n = tokio::time::timeout(SHORT, read_some(&server, &mut buf, 1024, &dropped))
            .await
            .expect("read must not wait for an event that already happened")
            .unwrap();
        assert_eq!(&buf[..n], b"pending request");
        // More data, then the client closes: the close is seen even with that data unread.
        client.write_all(b"more").await.unwrap();
        assert!(tokio::time::timeout(SHORT, peer_closed(&server, &dropped))
            .await
            .is_err());
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), peer_closed(&server, &dropped))
            .await
            .expect("close noticed")
            .unwrap();
    }

    #[tokio::test]
    async fn read_some_is_bounded_by_want() {
        let (mut client, server) = pair().await;
        client.write_all(&[1u8; 100]).await.unwrap();
        let dropped = AtomicBool::new(false);
        let mut buf = BytesMut::new();
        assert_eq!(
            read_some(&server, &mut buf, 10, &dropped).await.unwrap(),
            10
        );
        assert_eq!(
            read_some(&server, &mut buf, 1000, &dropped).await.unwrap(),
            90
        );
    }

    #[test]
    fn recognises_tls_and_http() {
        assert!(describe_bad_size(0x16030100, &[0x16, 3, 1, 0], 100).contains("TLS"));
        assert!(describe_bad_size(0x47455420, b"GET ", 100).contains("HTTP"));
        assert!(describe_bad_size(-1, &[255; 4], 100).contains("-1"));
    }
}
