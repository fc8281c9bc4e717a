//! Black-box compatibility tests: the real `vltava` binary on free loopback ports, driven by real clients
//! (rdkafka, kcat, the `vltava topic` CLI, raw kafka-protocol frames, and the Python and kafkajs scripts).
// Test code: data is small, and the harness sets resource limits on the broker between fork and exec.
#![allow(clippy::cast_possible_truncation, unsafe_code)]

mod common;

mod admin;
mod bad_input;
mod cli_config;
mod cli_group;
mod cli_txn;
mod compaction;
mod consumer_groups;
mod durability;
mod fetch_semantics;
mod group_admin;
mod group_behaviour;
mod groups;
mod hostile_connections;
mod hostile_requests;
mod hostile_storage;
mod hostile_validation;
mod idempotence;
mod metadata;
mod offsets_retention;
mod other_clients;
mod produce_consume;
mod transactions;
mod txn_offsets;
mod txn_raw;
mod versions;
