//! Broker configuration: one struct, Kafka's names with dots turned into underscores.
//!
//! Layers, lowest first: the defaults below (Kafka 4.x's), the TOML file given by `--config`, `VLTAVA_<NAME>`
//! environment variables, command-line flags. [`BrokerConfig::load`] builds the layers and validates the result;
//! the config is immutable afterwards and shared as `Arc<BrokerConfig>`. Per-topic settings derive their defaults
//! from here through [`crate::metadata::topic_config`], so each default lives in exactly one place.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors that stop the broker from starting. Each names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read or parsed.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A setting has a value outside its valid range.
    #[error("invalid value for setting `{name}`: {reason}")]
    Invalid {
        /// Setting name (underscore form).
        name: &'static str,
        /// Why the value was rejected.
        reason: String,
    },
}

/// Every broker setting. Field names are Kafka broker config names with `.` replaced by `_`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Address the plaintext Kafka listener binds (`--listen`).
    pub listen: String,
    /// Address advertised to clients in Metadata; empty means the same as `listen` (`--advertise`).
    pub advertise: String,
    /// Directory holding all partition logs and the cluster metadata (`--data-dir`; Kafka's `log.dirs`).
    pub data_dir: PathBuf,
    /// This broker's id (`node.id`).
    pub node_id: i32,
    /// Default partition count for auto-created topics and CreateTopics without a count.
    pub num_partitions: i32,
    /// Default replication factor; a single broker only supports 1.
    pub default_replication_factor: i16,
    /// Create a topic when Metadata or Produce names an unknown one.
    pub auto_create_topics_enable: bool,
    /// Allow DeleteTopics.
    pub delete_topic_enable: bool,
    /// Largest record batch accepted (after compression), in bytes.
    pub message_max_bytes: i32,
    /// Largest request frame accepted; bigger frames close the connection.
    pub socket_request_max_bytes: i32,
    /// Most simultaneous client connections; at the limit the broker stops accepting until one closes (as
    /// Kafka's acceptor waits for a slot).
    pub max_connections: i32,
    /// Most simultaneous connections from one IP address; a connection over the limit is closed right after
    /// accept (Kafka's `max.connections.per.ip`).
    pub max_connections_per_ip: i32,
    /// Per-IP exceptions to `max_connections_per_ip`, Kafka's format `ip:count,ip:count` (IP literals only).
    pub max_connections_per_ip_overrides: String,
    /// Close a connection after this many ms without reading or writing a byte while no request of it is being
    /// handled; a stalled half-sent frame counts as idle. Negative: never (Kafka's `connections.max.idle.ms`).
    pub connections_max_idle_ms: i64,
    /// Requests one connection may have in flight before the broker stops reading from it.
    pub queued_max_requests: i32,
    /// Vltava's own (Kafka answers one request per connection at a time, so it needs none): bytes of finished
    /// responses one connection may have waiting to be sent, counting record sets sent from files, before the
    /// broker stops reading its requests. At least one response is always allowed, whatever its size.
    pub queued_max_response_bytes: i64,
    /// Segment size at which a new segment is rolled.
    pub log_segment_bytes: i32,
    /// Segment age at which a new segment is rolled, in hours (used when `log_roll_ms` is unset).
    pub log_roll_hours: i32,
    /// Segment age at which a new segment is rolled, in ms.
    pub log_roll_ms: Option<i64>,
    /// Retention time in hours (used when neither minutes nor ms are set).
    pub log_retention_hours: i32,
    /// Retention time in minutes (used when ms is unset).
    pub log_retention_minutes: Option<i32>,
    /// Retention time in ms; -1 keeps forever.
    pub log_retention_ms: Option<i64>,
    /// Size above which old segments of a partition are deleted; -1 means no limit.
    pub log_retention_bytes: i64,
    /// How often the retention check runs.
    pub log_retention_check_interval_ms: i64,
    /// Largest size of one offset or time index file.
    pub log_index_size_max_bytes: i32,
    /// Bytes of log between two entries of the sparse offset index.
    pub log_index_interval_bytes: i32,
    /// Fsync after this many messages; the default never forces an fsync by count.
    pub log_flush_interval_messages: i64,
    /// Fsync when data has waited this long; unset means the OS decides (Kafka's default).
    pub log_flush_interval_ms: Option<i64>,
    /// How often the flusher checks `log_flush_interval_ms`.
    pub log_flush_scheduler_interval_ms: i64,
    /// `CreateTime` or `LogAppendTime`.
    pub log_message_timestamp_type: String,
    /// Largest allowed age of a CreateTime timestamp.
    pub log_message_timestamp_before_max_ms: i64,
    /// Largest allowed lead of a CreateTime timestamp over the broker clock.
    pub log_message_timestamp_after_max_ms: i64,
    /// Default `cleanup.policy`: `delete`, `compact` or `compact,delete`.
    pub log_cleanup_policy: String,
    /// Run the log cleaner (compaction of `compact` topics).
    pub log_cleaner_enable: bool,
    /// Partitions cleaned at the same time.
    pub log_cleaner_threads: i32,
    /// Pause between cleaner rounds when nothing was due, in ms.
    pub log_cleaner_backoff_ms: i64,
    /// Bound in bytes of the cleaner's key -> offset map, across threads (each gets its share).
    pub log_cleaner_dedupe_buffer_size: i64,
    /// Default `min.cleanable.dirty.ratio`.
    pub log_cleaner_min_cleanable_ratio: f64,
    /// Default `delete.retention.ms`: how long tombstones stay after a clean.
    pub log_cleaner_delete_retention_ms: i64,
    /// Default `min.compaction.lag.ms`.
    pub log_cleaner_min_compaction_lag_ms: i64,
    /// Default `max.compaction.lag.ms`.
    pub log_cleaner_max_compaction_lag_ms: i64,
    /// Minimum in-sync replicas for `acks=all`.
    pub min_insync_replicas: i32,
    /// Upper bound of a Fetch response, across partitions.
    pub fetch_max_bytes: i32,
    /// Default `compression.type` of topics; only `producer` is supported (batches are stored as sent).
    pub compression_type: String,
    /// Time allowed for in-flight requests to finish on shutdown, in ms.
    pub controlled_shutdown_timeout_ms: i64,
    /// Partitions of the internal `__consumer_offsets` topic, created at first start (fixed afterwards: group
    /// placement depends on it).
    pub offsets_topic_num_partitions: i32,
    /// Replication factor of `__consumer_offsets`; a single broker supports only 1.
    pub offsets_topic_replication_factor: i16,
    /// Segment size of `__consumer_offsets` (Kafka's `offsets.topic.segment.bytes`).
    pub offsets_topic_segment_bytes: i32,
    /// Largest metadata string of one committed offset; longer ones get OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: i32,
    /// How long committed offsets of an Empty group (or offsets committed without a group) are kept, in
    /// minutes, counted from the later of the commit and the moment the group became Empty.
    pub offsets_retention_minutes: i32,
    /// How often expired offsets (and Empty groups left without offsets) are removed, in ms.
    pub offsets_retention_check_interval_ms: i64,
    /// How long the first rebalance of an empty group waits for more members to join, in ms.
    pub group_initial_rebalance_delay_ms: i64,
    /// Smallest session timeout a member may ask for, in ms.
    pub group_min_session_timeout_ms: i32,
    /// Largest session timeout a member may ask for, in ms.
    pub group_max_session_timeout_ms: i32,
    /// Most members one classic group may have; more get GROUP_MAX_SIZE_REACHED.
    pub group_max_size: i32,
    /// Session timeout of consumer (KIP-848) group members, in ms: the broker decides it, not the client.
    pub group_consumer_session_timeout_ms: i32,
    /// Smallest allowed `group_consumer_session_timeout_ms`.
    pub group_consumer_min_session_timeout_ms: i32,
    /// Largest allowed `group_consumer_session_timeout_ms`.
    pub group_consumer_max_session_timeout_ms: i32,
    /// Heartbeat interval told to consumer group members, in ms.
    pub group_consumer_heartbeat_interval_ms: i32,
    /// Most members one consumer group may have; more get GROUP_MAX_SIZE_REACHED.
    pub group_consumer_max_size: i32,
    /// Server-side assignors of consumer groups, comma-separated (`uniform`, `range`); the first is the
    /// default.
    pub group_consumer_assignors: String,
    /// How long a partition remembers an idempotent producer after its last write, in ms
    /// (`producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
    /// Most producer ids one partition remembers; a new one beyond evicts the least recently written.
    pub producer_state_max_producers: i32,
    /// Partitions of the internal `__transaction_state` topic, created at the first transactional request
    /// (fixed afterwards: a transactional id's coordinator depends on it).
    pub transaction_state_log_num_partitions: i32,
    /// Replication factor of `__transaction_state`; a single broker supports only 1.
    pub transaction_state_log_replication_factor: i16,
    /// Segment size of `__transaction_state` (`transaction.state.log.segment.bytes`).
    pub transaction_state_log_segment_bytes: i32,
    /// Largest `transaction.timeout.ms` a producer may ask for; more gets INVALID_TRANSACTION_TIMEOUT.
    pub transaction_max_timeout_ms: i32,
    /// A transactional id whose last transaction ended this long ago (and that has none open) is forgotten,
    /// in ms (`transactional.id.expiration.ms`).
    pub transactional_id_expiration_ms: i64,
}

impl BrokerConfig {
    /// `group_consumer_assignors` parsed; empty if any name is unknown (refused by validation).
    pub fn consumer_assignors(&self) -> Vec<crate::coordinator::group::assignor::Assignor> {
        use crate::coordinator::group::assignor::Assignor;
        let names: Vec<&str> = self
            .group_consumer_assignors
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        let parsed: Vec<Assignor> = names
            .iter()
            .filter_map(|n| Assignor::from_name(n))
            .collect();
        if parsed.len() == names.len() {
            parsed
        } else {
            Vec::new()
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: "127.0.0.1:9092".into(),
            advertise: String::new(),
            data_dir: PathBuf::from("./data"),
            node_id: 1,
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            delete_topic_enable: true,
            message_max_bytes: 1_048_588,
            socket_request_max_bytes: 104_857_600,
            max_connections: i32::MAX,
            max_connections_per_ip: i32::MAX,
            max_connections_per_ip_overrides: String::new(),
            connections_max_idle_ms: 600_000,
            queued_max_requests: 500,
            queued_max_response_bytes: 1_048_576,
            log_segment_bytes: 1_073_741_824,
            log_roll_hours: 168,
            log_roll_ms: None,
            log_retention_hours: 168,
            log_retention_minutes: None,
            log_retention_ms: None,
            log_retention_bytes: -1,
            log_retention_check_interval_ms: 300_000,
            log_index_size_max_bytes: 10_485_760,
            log_index_interval_bytes: 4096,
            log_flush_interval_messages: i64::MAX,
            log_flush_interval_ms: None,
            log_flush_scheduler_interval_ms: i64::MAX,
            log_message_timestamp_type: "CreateTime".into(),
            log_message_timestamp_before_max_ms: i64::MAX,
            log_message_timestamp_after_max_ms: 3_600_000,
            log_cleanup_policy: "delete".into(),
            log_cleaner_enable: true,
            log_cleaner_threads: 1,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_dedupe_buffer_size: 134_217_728,
            log_cleaner_min_cleanable_ratio: 0.5,
            log_cleaner_delete_retention_ms: 86_400_000,
            log_cleaner_min_compaction_lag_ms: 0,
            log_cleaner_max_compaction_lag_ms: i64::MAX,
            min_insync_replicas: 1,
            fetch_max_bytes: 57_671_680,
            compression_type: "producer".into(),
            controlled_shutdown_timeout_ms: 30_000,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 1,
            offsets_topic_segment_bytes: 104_857_600,
            offset_metadata_max_bytes: 4096,
            offsets_retention_minutes: 10080,
            offsets_retention_check_interval_ms: 600_000,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: i32::MAX,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_min_session_timeout_ms: 45_000,
            group_consumer_max_session_timeout_ms: 60_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_max_size: i32::MAX,
            group_consumer_assignors: "uniform,range".into(),
            producer_id_expiration_ms: 86_400_000,
            producer_state_max_producers: 10_000,
            transaction_state_log_num_partitions: 50,
            transaction_state_log_replication_factor: 1,
            transaction_state_log_segment_bytes: 104_857_600,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers in charge.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--advertise`
    pub advertise: Option<String>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--node-id`
    pub node_id: Option<i32>,
}

impl BrokerConfig {
    /// Builds the layered configuration: defaults < file < `VLTAVA_*` env < flags, then validates it.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<BrokerConfig, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix("VLTAVA")
                .prefix_separator("_")
                .try_parsing(true),
        );
        if let Some(v) = &flags.listen {
            builder = builder.set_override("listen", v.clone())?;
        }
        if let Some(v) = &flags.advertise {
            builder = builder.set_override("advertise", v.clone())?;
        }
        if let Some(v) = &flags.data_dir {
            builder = builder.set_override("data_dir", v.to_string_lossy().to_string())?;
        }
        if let Some(v) = flags.node_id {
            builder = builder.set_override("node_id", i64::from(v))?;
        }
        let cfg: BrokerConfig = builder.build()?.try_deserialize()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges and formats; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(name: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                name,
                reason: reason.into(),
            }
        }
        self.listen_addr()?;
        self.advertised_addr()?;
        if self.node_id < 0 {
            return Err(bad("node_id", "must be >= 0"));
        }
        if self.num_partitions < 1 {
            return Err(bad("num_partitions", "must be >= 1"));
        }
        if self.default_replication_factor != 1 {
            return Err(bad(
                "default_replication_factor",
                "a single broker supports only 1",
            ));
        }
        if self.message_max_bytes < 0 {
            return Err(bad("message_max_bytes", "must be >= 0"));
        }
        if self.socket_request_max_bytes < 1 {
            return Err(bad("socket_request_max_bytes", "must be >= 1"));
        }
        if self.max_connections < 0 {
            return Err(bad("max_connections", "must be >= 0"));
        }
        if self.max_connections_per_ip < 0 {
            return Err(bad("max_connections_per_ip", "must be >= 0"));
        }
        let overrides = self
            .connection_overrides()
            .map_err(|reason| bad("max_connections_per_ip_overrides", reason))?;
        // Kafka's rule: 0 only makes sense when some addresses are let in by an override.
        if self.max_connections_per_ip == 0 && overrides.is_empty() {
            return Err(bad(
                "max_connections_per_ip",
                "can be 0 only if max_connections_per_ip_overrides is set",
            ));
        }
        if self.queued_max_requests < 1 {
            return Err(bad("queued_max_requests", "must be >= 1"));
        }
        if self.queued_max_response_bytes < 1 {
            return Err(bad("queued_max_response_bytes", "must be >= 1"));
        }
        if i64::from(self.log_segment_bytes) < crate::log::MIN_SEGMENT_BYTES {
            return Err(bad(
                "log_segment_bytes",
                "must be >= 1048576 (Kafka 4's floor, KIP-1030)",
            ));
        }
        if self.log_roll_hours < 1 {
            return Err(bad("log_roll_hours", "must be >= 1"));
        }
        if matches!(self.log_roll_ms, Some(v) if v < 1) {
            return Err(bad("log_roll_ms", "must be >= 1"));
        }
        if self.log_retention_check_interval_ms < 1 {
            return Err(bad("log_retention_check_interval_ms", "must be >= 1"));
        }
        if self.log_index_size_max_bytes < 4 {
            return Err(bad("log_index_size_max_bytes", "must be >= 4"));
        }
        if self.log_index_interval_bytes < 0 {
            return Err(bad("log_index_interval_bytes", "must be >= 0"));
        }
        if self.log_flush_interval_messages < 1 {
            return Err(bad("log_flush_interval_messages", "must be >= 1"));
        }
        if matches!(self.log_flush_interval_ms, Some(v) if v < 0) {
            return Err(bad("log_flush_interval_ms", "must be >= 0"));
        }
        if self.log_flush_scheduler_interval_ms < 1 {
            return Err(bad("log_flush_scheduler_interval_ms", "must be >= 1"));
        }
        if !matches!(
            self.log_message_timestamp_type.as_str(),
            "CreateTime" | "LogAppendTime"
        ) {
            return Err(bad(
                "log_message_timestamp_type",
                "must be CreateTime or LogAppendTime",
            ));
        }
        if self.log_message_timestamp_before_max_ms < 0
            || self.log_message_timestamp_after_max_ms < 0
        {
            return Err(bad("log_message_timestamp_before_max_ms", "must be >= 0"));
        }
        if let Err(e) =
            crate::metadata::topic_config::validate("cleanup.policy", &self.log_cleanup_policy)
        {
            return Err(bad("log_cleanup_policy", e));
        }
        if self.log_cleaner_threads < 1 {
            return Err(bad("log_cleaner_threads", "must be >= 1"));
        }
        if self.log_cleaner_backoff_ms < 1 {
            return Err(bad("log_cleaner_backoff_ms", "must be >= 1"));
        }
        if self.log_cleaner_dedupe_buffer_size < 1024 {
            return Err(bad("log_cleaner_dedupe_buffer_size", "must be >= 1024"));
        }
        if !(0.0..=1.0).contains(&self.log_cleaner_min_cleanable_ratio) {
            return Err(bad(
                "log_cleaner_min_cleanable_ratio",
                "must be between 0 and 1",
            ));
        }
        if self.log_cleaner_delete_retention_ms < 0 || self.log_cleaner_min_compaction_lag_ms < 0 {
            return Err(bad("log_cleaner_delete_retention_ms", "must be >= 0"));
        }
        if self.log_cleaner_max_compaction_lag_ms < 1 {
            return Err(bad("log_cleaner_max_compaction_lag_ms", "must be >= 1"));
        }
        if self.min_insync_replicas < 1 {
            return Err(bad("min_insync_replicas", "must be >= 1"));
        }
        if self.fetch_max_bytes < 0 {
            return Err(bad("fetch_max_bytes", "must be >= 0"));
        }
        if self.offsets_topic_num_partitions < 1 {
            return Err(bad("offsets_topic_num_partitions", "must be >= 1"));
        }
        if self.offsets_topic_replication_factor != 1 {
            return Err(bad(
                "offsets_topic_replication_factor",
                "a single broker supports only 1",
            ));
        }
        if i64::from(self.offsets_topic_segment_bytes) < crate::log::MIN_SEGMENT_BYTES {
            return Err(bad("offsets_topic_segment_bytes", "must be >= 1048576"));
        }
        if self.offset_metadata_max_bytes < 0 {
            return Err(bad("offset_metadata_max_bytes", "must be >= 0"));
        }
        if self.offsets_retention_minutes < 1 {
            return Err(bad("offsets_retention_minutes", "must be >= 1"));
        }
        if self.offsets_retention_check_interval_ms < 1 {
            return Err(bad("offsets_retention_check_interval_ms", "must be >= 1"));
        }
        if self.group_initial_rebalance_delay_ms < 0 {
            return Err(bad("group_initial_rebalance_delay_ms", "must be >= 0"));
        }
        if self.group_min_session_timeout_ms < 0
            || self.group_max_session_timeout_ms < self.group_min_session_timeout_ms
        {
            return Err(bad(
                "group_max_session_timeout_ms",
                "must be >= group_min_session_timeout_ms >= 0",
            ));
        }
        if self.producer_id_expiration_ms < 1 {
            return Err(bad("producer_id_expiration_ms", "must be >= 1"));
        }
        if self.producer_state_max_producers < 1 {
            return Err(bad("producer_state_max_producers", "must be >= 1"));
        }
        if self.transaction_state_log_num_partitions < 1 {
            return Err(bad("transaction_state_log_num_partitions", "must be >= 1"));
        }
        if self.transaction_state_log_replication_factor != 1 {
            return Err(bad(
                "transaction_state_log_replication_factor",
                "a single broker supports only 1",
            ));
        }
        if i64::from(self.transaction_state_log_segment_bytes) < crate::log::MIN_SEGMENT_BYTES {
            return Err(bad(
                "transaction_state_log_segment_bytes",
                "must be >= 1048576",
            ));
        }
        if self.transaction_max_timeout_ms < 1 {
            return Err(bad("transaction_max_timeout_ms", "must be >= 1"));
        }
        if self.transactional_id_expiration_ms < 1 {
            return Err(bad("transactional_id_expiration_ms", "must be >= 1"));
        }
        if self.group_max_size < 1 {
            return Err(bad("group_max_size", "must be >= 1"));
        }
        if self.group_consumer_min_session_timeout_ms < 1
            || self.group_consumer_session_timeout_ms < self.group_consumer_min_session_timeout_ms
            || self.group_consumer_session_timeout_ms > self.group_consumer_max_session_timeout_ms
        {
            return Err(bad(
                "group_consumer_session_timeout_ms",
                "must be within group_consumer_min_session_timeout_ms (>= 1) and \
                 group_consumer_max_session_timeout_ms",
            ));
        }
        if self.group_consumer_heartbeat_interval_ms < 1
            || self.group_consumer_heartbeat_interval_ms >= self.group_consumer_session_timeout_ms
        {
            return Err(bad(
                "group_consumer_heartbeat_interval_ms",
                "must be >= 1 and below group_consumer_session_timeout_ms",
            ));
        }
        if self.group_consumer_max_size < 1 {
            return Err(bad("group_consumer_max_size", "must be >= 1"));
        }
        if self.consumer_assignors().is_empty() {
            return Err(bad(
                "group_consumer_assignors",
                "must name at least one of `uniform`, `range` (and nothing else)",
            ));
        }
        if self.compression_type != "producer" {
            return Err(bad(
                "compression_type",
                "only `producer` is supported: batches are stored as the producer sent them",
            ));
        }
        Ok(())
    }

    /// `max_connections_per_ip_overrides` parsed: `ip:count` pairs separated by commas (an IPv6 address is
    /// split at its last colon). Host names are not resolved; the error says so.
    pub fn connection_overrides(&self) -> Result<HashMap<IpAddr, i32>, String> {
        let mut out = HashMap::new();
        for item in self.max_connections_per_ip_overrides.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (host, count) = item
                .rsplit_once(':')
                .ok_or_else(|| format!("`{item}` is not ip:count"))?;
            let host = host.trim().trim_start_matches('[').trim_end_matches(']');
            let ip: IpAddr = host.parse().map_err(|_| {
                format!("`{host}` is not an IP address (host names are not resolved)")
            })?;
            let count: i32 = count
                .trim()
                .parse()
                .ok()
                .filter(|c| *c >= 0)
                .ok_or_else(|| format!("`{count}` in `{item}` is not a count >= 0"))?;
            out.insert(ip, count);
        }
        Ok(out)
    }

    /// The socket address to bind.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|e| ConfigError::Invalid {
            name: "listen",
            reason: format!(
                "`{}` is not HOST:PORT with a numeric host: {e}",
                self.listen
            ),
        })
    }

    /// The host and port given to clients.
    pub fn advertised_addr(&self) -> Result<(String, i32), ConfigError> {
        let s = if self.advertise.is_empty() {
            &self.listen
        } else {
            &self.advertise
        };
        let bad = |reason: String| ConfigError::Invalid {
            name: "advertise",
            reason,
        };
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("`{s}` is not HOST:PORT")))?;
        let port: u16 = port
            .parse()
            .map_err(|e| bad(format!("bad port in `{s}`: {e}")))?;
        if host.is_empty() {
            return Err(bad(format!("empty host in `{s}`")));
        }
        Ok((
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            i32::from(port),
        ))
    }

    /// Effective retention in ms, applying Kafka's ms > minutes > hours precedence.
    pub fn retention_ms(&self) -> i64 {
        match (self.log_retention_ms, self.log_retention_minutes) {
            (Some(ms), _) => ms,
            (None, Some(min)) => i64::from(min) * 60_000,
            (None, None) => i64::from(self.log_retention_hours) * 3_600_000,
        }
    }

    /// Effective segment roll time in ms.
    pub fn roll_ms(&self) -> i64 {
        self.log_roll_ms
            .unwrap_or(i64::from(self.log_roll_hours) * 3_600_000)
    }

    /// Effective flush interval in ms (`i64::MAX` when unset: leave it to the OS).
    pub fn flush_ms(&self) -> i64 {
        self.log_flush_interval_ms
            .unwrap_or(self.log_flush_scheduler_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    #[test]
    fn defaults_are_valid_and_kafkas() {
        let c = BrokerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.num_partitions, 1);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.retention_ms(), 168 * 3_600_000);
        assert_eq!(
            c.advertised_addr().unwrap(),
            ("127.0.0.1".to_string(), 9092)
        );
    }

    #[test]
    fn layers_file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.toml");
        std::fs::write(&f, "num_partitions = 3\nlisten = \"127.0.0.1:1234\"\n").unwrap();
        let c = BrokerConfig::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.listen, "127.0.0.1:1234");
        let flags = Overrides {
            listen: Some("127.0.0.1:999".into()),
            ..Default::default()
        };
        let c = BrokerConfig::load(Some(&f), &flags).unwrap();
        assert_eq!(c.listen, "127.0.0.1:999");
    }

    /// The shipped, documented config file states exactly the built-in defaults, so it cannot drift.
    #[test]
    fn shipped_config_file_is_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/vltava.toml");
        let file: BrokerConfig = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        let as_json = |c: &BrokerConfig| serde_json::to_value(c).unwrap();
        assert_eq!(as_json(&file), as_json(&BrokerConfig::default()));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.toml");
        std::fs::write(&f, "num_partitions = 0\n").unwrap();
        let e = BrokerConfig::load(Some(&f), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_partitions"), "{e}");
        std::fs::write(&f, "no_such_setting = 1\n").unwrap();
        let e = BrokerConfig::load(Some(&f), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no_such_setting"), "{e}");
        for bad in [
            "offsets_retention_minutes = 0\n",
            "offsets_retention_check_interval_ms = 0\n",
        ] {
            std::fs::write(&f, bad).unwrap();
            let e = BrokerConfig::load(Some(&f), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(bad.split(' ').next().unwrap()), "{e}");
        }
        std::fs::write(&f, "listen = \"nonsense\"\n").unwrap();
        let e = BrokerConfig::load(Some(&f), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn per_ip_overrides_parse_like_kafka() {
        let mut c = BrokerConfig {
            max_connections_per_ip_overrides: "127.0.0.1:5, ::1:7 ,[fe80::1]:0".into(),
            ..BrokerConfig::default()
        };
        let o = c.connection_overrides().unwrap();
        assert_eq!(o[&"127.0.0.1".parse::<IpAddr>().unwrap()], 5);
        assert_eq!(o[&"::1".parse::<IpAddr>().unwrap()], 7);
        assert_eq!(o[&"fe80::1".parse::<IpAddr>().unwrap()], 0);
        c.validate().unwrap();
        c.max_connections_per_ip_overrides = "localhost:5".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("max_connections_per_ip_overrides"), "{e}");
        c.max_connections_per_ip_overrides = "127.0.0.1:-1".into();
        assert!(c.validate().is_err());
        c.max_connections_per_ip_overrides = String::new();
        c.max_connections_per_ip = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("overrides"), "{e}");
    }
}
