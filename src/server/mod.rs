//! The network edge: the accept loop ([`listener`]) and one task per client connection ([`connection`]).
//!
//! Shape after tokio's mini-redis: a small accept loop bounded by a connection semaphore, a framed connection
//! type, and one [`tokio_util::sync::CancellationToken`] that every task watches for graceful shutdown.

pub mod connection;
pub mod listener;
