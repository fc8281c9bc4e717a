//! Unit tests of consumer groups: the heartbeat state machine through the shard (records replayed as the
//! runtime does), with injected time.
