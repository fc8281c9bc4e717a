//! The network edge: the accept loop ([`listener`]) and one task per client connection ([`connection`]) with
//! its response queue ([`responses`]).
//!
//! Shape after tokio's mini-redis: a small accept loop bounded by connection limits, a framed connection
//! type, and one [`tokio_util::sync::CancellationToken`] that every task watches for graceful shutdown.

pub mod connection;
pub mod listener;
pub mod responses;
