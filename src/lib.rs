//! Vltava: a Kafka-wire-compatible broker.
//!
//! See `ARCHITECTURE.md` for the parts and who owns which state. Arrows point from the edge inward:
//! `server` -> `api` -> (`controller`, `partition`) -> `log`; `log` knows nothing of the wire.

pub mod api;
pub mod broker;
pub mod cli;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod log;
pub mod metadata;
pub mod partition;
pub mod protocol;
pub mod server;
