//! Topic-level configuration: the one table of topic configs, their types, broker synonyms and defaults.
//!
//! A topic stores only its overrides (in the metadata image); everything else is derived here from the
//! broker config, so `DescribeConfigs`, `CreateTopics` validation and the log engine's [`LogConfig`] all read
//! the same definitions.

use std::collections::BTreeMap;

use crate::config::BrokerConfig;
use crate::log::cleaner::CompactionConfig;
use crate::log::{LogConfig, TimestampType, MIN_SEGMENT_BYTES};

/// Kafka's `ConfigSource` codes.
pub mod config_source {
    /// Set on the topic.
    pub const DYNAMIC_TOPIC: i8 = 1;
    /// From the broker's static configuration.
    pub const STATIC_BROKER: i8 = 4;
    /// Built-in default.
    pub const DEFAULT: i8 = 5;
}

/// Where a topic config's value comes from when the topic does not set it: the broker's own config if that
/// differs from Kafka's default, else the default.
pub fn default_source(def: &TopicConfigDef, broker: &BrokerConfig) -> i8 {
    if (def.default)(broker) != (def.default)(&BrokerConfig::default()) {
        config_source::STATIC_BROKER
    } else {
        config_source::DEFAULT
    }
}

/// Kafka's `ConfigType` codes used by DescribeConfigs v3+.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    /// true/false
    Boolean = 1,
    /// free text
    String = 2,
    /// 32-bit integer
    Int = 3,
    /// 64-bit integer
    Long = 5,
    /// floating point
    Double = 6,
    /// comma-separated list
    List = 7,
}

/// One topic config definition.
pub struct TopicConfigDef {
    /// Kafka name, e.g. `retention.ms`.
    pub name: &'static str,
    /// Value type.
    pub kind: ConfigType,
    /// Broker config it falls back to, Kafka spelling (e.g. `log.retention.ms`), if any.
    pub broker_synonym: Option<&'static str>,
    /// Default value, from the broker config.
    pub default: fn(&BrokerConfig) -> String,
    /// Extra check beyond the type; returns why a value is rejected.
    pub check: fn(&str) -> Result<(), String>,
    /// One-line documentation.
    pub doc: &'static str,
}

fn any(_: &str) -> Result<(), String> {
    Ok(())
}
fn non_negative(v: &str) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(()),
        _ => Err("must be >= 0".into()),
    }
}
fn at_least_minus_one(v: &str) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(n) if n >= -1 => Ok(()),
        _ => Err("must be >= -1".into()),
    }
}
fn at_least_minus_two(v: &str) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(n) if n >= -2 => Ok(()),
        _ => Err("must be >= -2".into()),
    }
}
fn at_least_one(v: &str) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(n) if n >= 1 => Ok(()),
        _ => Err("must be >= 1".into()),
    }
}

fn segment_bytes(v: &str) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(n) if n >= MIN_SEGMENT_BYTES => Ok(()),
        _ => Err(format!("must be >= {MIN_SEGMENT_BYTES}")),
    }
}
fn internal_segment_bytes(v: &str) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(n) if n >= 14 => Ok(()),
        _ => Err("must be >= 14".into()),
    }
}
fn index_bytes(v: &str) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(n) if n >= 8 => Ok(()),
        _ => Err("must be >= 8".into()),
    }
}
fn cleanup_policy(v: &str) -> Result<(), String> {
    if !v.trim().is_empty()
        && v.split(',')
            .map(str::trim)
            .all(|p| p == "delete" || p == "compact")
    {
        Ok(())
    } else {
        Err("must be `delete`, `compact` or `compact,delete`".into())
    }
}

/// The policies named by a `cleanup.policy` value: (compact, delete).
pub fn cleanup_policies(v: &str) -> (bool, bool) {
    let has = |name: &str| v.split(',').map(str::trim).any(|p| p == name);
    (has("compact"), has("delete"))
}
fn compression(v: &str) -> Result<(), String> {
    if v == "producer" {
        Ok(())
    } else {
        Err("only `producer` is supported: Vltava stores batches exactly as the producer compressed them".into())
    }
}
fn timestamp_type(v: &str) -> Result<(), String> {
    match v {
        "CreateTime" | "LogAppendTime" => Ok(()),
        _ => Err("must be CreateTime or LogAppendTime".into()),
    }
}
fn ratio(v: &str) -> Result<(), String> {
    match v.parse::<f64>() {
        Ok(n) if (0.0..=1.0).contains(&n) => Ok(()),
        _ => Err("must be between 0 and 1".into()),
    }
}
fn unsupported_true(v: &str) -> Result<(), String> {
    if v == "false" {
        Ok(())
    } else {
        Err("only `false` is supported".into())
    }
}

macro_rules! def {
    ($name:expr, $kind:ident, $syn:expr, $default:expr, $check:expr, $doc:expr) => {
        TopicConfigDef {
            name: $name,
            kind: ConfigType::$kind,
            broker_synonym: $syn,
            default: $default,
            check: $check,
            doc: $doc,
        }
    };
}

/// Every topic config, sorted by name (DescribeConfigs returns them in this order).
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def!(
        "cleanup.policy",
        List,
        Some("log.cleanup.policy"),
        |b| b.log_cleanup_policy.clone(),
        cleanup_policy,
        "delete (retention), compact (keep the latest record per key) or both."
    ),
    def!(
        "compression.gzip.level",
        Int,
        Some("compression.gzip.level"),
        |_| "-1".into(),
        any,
        "Unused: batches are never recompressed."
    ),
    def!(
        "compression.lz4.level",
        Int,
        Some("compression.lz4.level"),
        |_| "9".into(),
        any,
        "Unused: batches are never recompressed."
    ),
    def!(
        "compression.type",
        String,
        Some("compression.type"),
        |b| b.compression_type.clone(),
        compression,
        "Final compression: `producer` keeps the producer's codec."
    ),
    def!(
        "compression.zstd.level",
        Int,
        Some("compression.zstd.level"),
        |_| "3".into(),
        any,
        "Unused: batches are never recompressed."
    ),
    def!(
        "delete.retention.ms",
        Long,
        Some("log.cleaner.delete.retention.ms"),
        |b| b.log_cleaner_delete_retention_ms.to_string(),
        non_negative,
        "Tombstone retention for compacted topics."
    ),
    def!(
        "file.delete.delay.ms",
        Long,
        Some("log.segment.delete.delay.ms"),
        |_| "60000".into(),
        non_negative,
        "Delay before a deleted segment's file is removed."
    ),
    def!(
        "flush.messages",
        Long,
        Some("log.flush.interval.messages"),
        |b| b.log_flush_interval_messages.to_string(),
        at_least_one,
        "Fsync after this many messages."
    ),
    def!(
        "flush.ms",
        Long,
        Some("log.flush.interval.ms"),
        |b| b.flush_ms().to_string(),
        non_negative,
        "Fsync when data has waited this long."
    ),
    def!(
        "follower.replication.throttled.replicas",
        List,
        Some("follower.replication.throttled.replicas"),
        |_| String::new(),
        any,
        "Throttled follower replicas."
    ),
    def!(
        "index.interval.bytes",
        Int,
        Some("log.index.interval.bytes"),
        |b| b.log_index_interval_bytes.to_string(),
        non_negative,
        "Bytes between offset index entries."
    ),
    def!(
        "leader.replication.throttled.replicas",
        List,
        Some("leader.replication.throttled.replicas"),
        |_| String::new(),
        any,
        "Throttled leader replicas."
    ),
    def!(
        "local.retention.bytes",
        Long,
        Some("log.local.retention.bytes"),
        |_| "-2".into(),
        at_least_minus_two,
        "Tiered storage local retention (unused)."
    ),
    def!(
        "local.retention.ms",
        Long,
        Some("log.local.retention.ms"),
        |_| "-2".into(),
        at_least_minus_two,
        "Tiered storage local retention (unused)."
    ),
    def!(
        "max.compaction.lag.ms",
        Long,
        Some("log.cleaner.max.compaction.lag.ms"),
        |b| b.log_cleaner_max_compaction_lag_ms.to_string(),
        at_least_one,
        "Dirty data older than this is compacted even below the dirty ratio."
    ),
    def!(
        "max.message.bytes",
        Int,
        Some("message.max.bytes"),
        |b| b.message_max_bytes.to_string(),
        non_negative,
        "Largest record batch accepted."
    ),
    def!(
        "message.timestamp.after.max.ms",
        Long,
        Some("log.message.timestamp.after.max.ms"),
        |b| b.log_message_timestamp_after_max_ms.to_string(),
        non_negative,
        "Largest lead of a CreateTime timestamp over the broker clock."
    ),
    def!(
        "message.timestamp.before.max.ms",
        Long,
        Some("log.message.timestamp.before.max.ms"),
        |b| b.log_message_timestamp_before_max_ms.to_string(),
        non_negative,
        "Largest age of a CreateTime timestamp."
    ),
    def!(
        "message.timestamp.type",
        String,
        Some("log.message.timestamp.type"),
        |b| b.log_message_timestamp_type.clone(),
        timestamp_type,
        "CreateTime or LogAppendTime."
    ),
    def!(
        "min.cleanable.dirty.ratio",
        Double,
        Some("log.cleaner.min.cleanable.ratio"),
        |b| b.log_cleaner_min_cleanable_ratio.to_string(),
        ratio,
        "Compact when dirty bytes / cleanable bytes reach this."
    ),
    def!(
        "min.compaction.lag.ms",
        Long,
        Some("log.cleaner.min.compaction.lag.ms"),
        |b| b.log_cleaner_min_compaction_lag_ms.to_string(),
        non_negative,
        "Records younger than this are not compacted."
    ),
    def!(
        "min.insync.replicas",
        Int,
        Some("min.insync.replicas"),
        |b| b.min_insync_replicas.to_string(),
        at_least_one,
        "In-sync replicas required for acks=all."
    ),
    def!(
        "preallocate",
        Boolean,
        Some("log.preallocate"),
        |_| "false".into(),
        unsupported_true,
        "Preallocate segment files (not supported)."
    ),
    def!(
        "remote.storage.enable",
        Boolean,
        None,
        |_| "false".into(),
        unsupported_true,
        "Tiered storage (not supported)."
    ),
    def!(
        "retention.bytes",
        Long,
        Some("log.retention.bytes"),
        |b| b.log_retention_bytes.to_string(),
        at_least_minus_one,
        "Partition size above which old segments are deleted; -1 = no limit."
    ),
    def!(
        "retention.ms",
        Long,
        Some("log.retention.ms"),
        |b| b.retention_ms().to_string(),
        at_least_minus_one,
        "Age after which segments are deleted; -1 = forever."
    ),
    def!(
        "segment.bytes",
        Int,
        Some("log.segment.bytes"),
        |b| b.log_segment_bytes.to_string(),
        segment_bytes,
        "Segment size at which a new one is rolled."
    ),
    def!(
        "segment.index.bytes",
        Int,
        Some("log.index.size.max.bytes"),
        |b| b.log_index_size_max_bytes.to_string(),
        index_bytes,
        "Largest index file size."
    ),
    def!(
        "segment.jitter.ms",
        Long,
        Some("log.roll.jitter.ms"),
        |_| "0".into(),
        non_negative,
        "Random jitter on segment.ms (unused)."
    ),
    def!(
        "segment.ms",
        Long,
        Some("log.roll.ms"),
        |b| b.roll_ms().to_string(),
        at_least_one,
        "Segment age at which a new one is rolled."
    ),
    def!(
        "unclean.leader.election.enable",
        Boolean,
        Some("unclean.leader.election.enable"),
        |_| "false".into(),
        any,
        "Allow out-of-sync leaders (meaningful with replication)."
    ),
];

/// Settable but internal topic configs: not described, like Kafka's. `internal.segment.bytes` (Kafka 4.1,
/// KAFKA-19080) overrides `segment.bytes` below its 1 MiB floor, for tests that need many small segments.
pub static INTERNAL_TOPIC_CONFIGS: &[TopicConfigDef] = &[def!(
    "internal.segment.bytes",
    Int,
    None,
    |_| String::new(),
    internal_segment_bytes,
    "Testing only: segment size below the segment.bytes floor."
)];

/// Finds a definition by Kafka name.
pub fn lookup(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS
        .iter()
        .chain(INTERNAL_TOPIC_CONFIGS)
        .find(|d| d.name == name)
}

/// Validates one `name=value` override; the error text goes back to the client.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let def = lookup(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    let typed = match def.kind {
        ConfigType::Boolean => matches!(value, "true" | "false"),
        ConfigType::Int => value.parse::<i32>().is_ok(),
        ConfigType::Long => value.parse::<i64>().is_ok(),
        ConfigType::Double => value.parse::<f64>().is_ok(),
        ConfigType::String | ConfigType::List => true,
    };
    if !typed {
        return Err(format!(
            "Invalid value {value} for configuration {name}: not a {:?}",
            def.kind
        ));
    }
    (def.check)(value)
        .map_err(|why| format!("Invalid value {value} for configuration {name}: {why}"))
}

/// The effective value of a config for a topic with these overrides.
pub fn effective(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    name: &str,
) -> Option<String> {
    let def = lookup(name)?;
    Some(
        overrides
            .get(name)
            .cloned()
            .unwrap_or_else(|| (def.default)(broker)),
    )
}

/// Builds the log engine's configuration for a topic.
pub fn log_config(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
    let get = |name: &str| effective(broker, overrides, name).unwrap_or_default();
    let int = |name: &str, fallback: i64| get(name).parse::<i64>().unwrap_or(fallback);
    // Sizes as usize; values were validated as ints, so saturation never happens on 64-bit targets.
    let size = |v: i64| usize::try_from(v.max(0)).unwrap_or(usize::MAX);
    let defaults = LogConfig::default();
    let (compacts, deletes) = cleanup_policies(&get("cleanup.policy"));
    LogConfig {
        segment_bytes: overrides
            .get("internal.segment.bytes")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| int("segment.bytes", defaults.segment_bytes as i64))
            .max(14) as u64,
        segment_ms: int("segment.ms", defaults.segment_ms),
        segment_index_bytes: size(
            int("segment.index.bytes", defaults.segment_index_bytes as i64).max(8),
        ),
        index_interval_bytes: size(int(
            "index.interval.bytes",
            defaults.index_interval_bytes as i64,
        )),
        // Retention deletes segments only under the `delete` policy; a `compact`-only topic keeps them.
        retention_ms: if deletes {
            int("retention.ms", defaults.retention_ms)
        } else {
            -1
        },
        retention_bytes: if deletes {
            int("retention.bytes", defaults.retention_bytes)
        } else {
            -1
        },
        flush_messages: int("flush.messages", defaults.flush_messages),
        flush_ms: int("flush.ms", defaults.flush_ms),
        max_message_bytes: size(int("max.message.bytes", defaults.max_message_bytes as i64)),
        message_timestamp_type: if get("message.timestamp.type") == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        message_timestamp_before_max_ms: int(
            "message.timestamp.before.max.ms",
            defaults.message_timestamp_before_max_ms,
        ),
        message_timestamp_after_max_ms: int(
            "message.timestamp.after.max.ms",
            defaults.message_timestamp_after_max_ms,
        ),
        // The same test as `compaction_config`'s: a log the cleaner compacts refuses keyless records.
        compacted: compacts,
        producer_id_expiration_ms: broker.producer_id_expiration_ms,
        max_producers: usize::try_from(broker.producer_state_max_producers).unwrap_or(1),
    }
}

/// The cleaner's settings for a topic, or `None` unless its `cleanup.policy` includes `compact`.
pub fn compaction_config(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Option<CompactionConfig> {
    let get = |name: &str| effective(broker, overrides, name).unwrap_or_default();
    let (compacts, _) = cleanup_policies(&get("cleanup.policy"));
    if !compacts {
        return None;
    }
    let d = CompactionConfig::default();
    let long = |name: &str, fallback: i64| get(name).parse::<i64>().unwrap_or(fallback);
    Some(CompactionConfig {
        min_cleanable_ratio: get("min.cleanable.dirty.ratio")
            .parse::<f64>()
            .unwrap_or(d.min_cleanable_ratio),
        delete_retention_ms: long("delete.retention.ms", d.delete_retention_ms),
        min_compaction_lag_ms: long("min.compaction.lag.ms", d.min_compaction_lag_ms),
        max_compaction_lag_ms: long("max.compaction.lag.ms", d.max_compaction_lag_ms),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    #[test]
    fn table_sorted_and_defaults_valid() {
        let b = BrokerConfig::default();
        for w in TOPIC_CONFIGS.windows(2) {
            assert!(
                w[0].name < w[1].name,
                "{} not before {}",
                w[0].name,
                w[1].name
            );
        }
        for d in TOPIC_CONFIGS {
            validate(d.name, &(d.default)(&b))
                .unwrap_or_else(|e| panic!("default of {}: {e}", d.name));
        }
    }

    #[test]
    fn overrides_reach_the_log_config() {
        let b = BrokerConfig::default();
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        o.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let c = log_config(&b, &o);
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.message_timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(c.segment_bytes, 1_073_741_824);
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("segment.bytes", "10").is_err());
        assert!(
            validate("segment.bytes", "1048575").is_err(),
            "Kafka 4's 1 MiB floor"
        );
        o.insert("internal.segment.bytes".to_string(), "4096".to_string());
        assert!(validate("internal.segment.bytes", "4096").is_ok());
        assert_eq!(log_config(&b, &o).segment_bytes, 4096);
        assert!(validate("no.such", "1").is_err());
        for ok in ["compact", "delete", "compact,delete", "delete, compact"] {
            assert!(validate("cleanup.policy", ok).is_ok(), "{ok}");
        }
        for bad in ["", "compacted", "delete,nope"] {
            assert!(validate("cleanup.policy", bad).is_err(), "{bad}");
        }
        assert!(compaction_config(&b, &o).is_none());
        // compact only: no retention; compact,delete: both.
        o.insert("cleanup.policy".to_string(), "compact".to_string());
        o.insert("delete.retention.ms".to_string(), "5".to_string());
        let c = log_config(&b, &o);
        assert_eq!((c.retention_ms, c.retention_bytes), (-1, -1));
        let cc = compaction_config(&b, &o).unwrap();
        assert_eq!(cc.delete_retention_ms, 5);
        assert_eq!(cc.min_cleanable_ratio, 0.5);
        o.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        assert_eq!(log_config(&b, &o).retention_ms, 1000);
        assert!(compaction_config(&b, &o).is_some());
        // One source of truth: the log refuses keyless records exactly when the cleaner compacts it.
        for policy in [
            "delete",
            "compact",
            "compact,delete",
            "delete, compact",
            " compact ",
        ] {
            o.insert("cleanup.policy".to_string(), policy.to_string());
            assert_eq!(
                log_config(&b, &o).compacted,
                compaction_config(&b, &o).is_some(),
                "{policy}"
            );
        }
        assert!(log_config(&b, &o).compacted);
        o.remove("cleanup.policy");
        assert!(!log_config(&b, &o).compacted);
    }
}
