//! The one table of API keys and version ranges this broker implements.
//!
//! The maxima match Apache Kafka 4.1 (kafka-python 3.x infers the broker release from them: Produce 13 means
//! 4.1), which is also what the kafka-protocol crate was generated from.
//!
//! ApiVersions answers from [`SUPPORTED`]; the connection rejects anything outside it before a handler runs.
//! Two numbers can differ for an API: what we *advertise* and what we *accept*. Kafka 4 advertises Produce from
//! v0 although it only accepts v3+, because librdkafka before 2.x disables compression when Produce v0 is not
//! advertised (see KAFKA-PITFALLS.md). The accepted minimum is also the oldest version kafka-protocol decodes.

use kafka_protocol::messages::ApiKey;

/// One supported API: advertised range and the lowest version actually accepted.
#[derive(Debug, Clone, Copy)]
pub struct ApiRange {
    /// The API.
    pub key: ApiKey,
    /// Lowest version advertised in ApiVersions.
    pub advertised_min: i16,
    /// Lowest version a request may use.
    pub accepted_min: i16,
    /// Highest version advertised and accepted.
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange {
        key,
        advertised_min: min,
        accepted_min: min,
        max,
    }
}

/// Every API the broker implements, in API key order.
pub const SUPPORTED: &[ApiRange] = &[
    // Advertised from v0 like Kafka 4; v0-2 requests are refused (see module doc).
    ApiRange {
        key: ApiKey::Produce,
        advertised_min: 0,
        accepted_min: 3,
        max: 13,
    },
    api(ApiKey::Fetch, 4, 18),
    api(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 0, 13),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::AddPartitionsToTxn, 0, 5),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 5),
    api(ApiKey::TxnOffsetCommit, 0, 5),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 2),
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// A feature flag advertised in ApiVersions v3+ (KIP-584), finalized at its highest level.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    /// Kafka's feature name.
    pub name: &'static str,
    /// Lowest supported level.
    pub min: i16,
    /// Highest supported level, which is also the finalized one.
    pub max: i16,
}

/// Features clients look at. `transaction.version` 2 (KIP-890): Kafka 4 clients then use transactions V2
/// (EndTxn v5 bumping the epoch at every end, partitions added by Produce v12+ and TxnOffsetCommit v5).
pub const FEATURES: &[Feature] = &[Feature {
    name: "transaction.version",
    min: 0,
    max: 2,
}];

/// Looks up an API key; `None` means not implemented.
pub fn lookup(key: i16) -> Option<&'static ApiRange> {
    SUPPORTED.iter().find(|r| r.key as i16 == key)
}

/// Why a request's (key, version) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an API this broker implements (or not a Kafka API key at all).
    UnknownApi,
    /// Implemented, but not in this version.
    UnsupportedVersion,
}

/// Checks a request's key and version against the table.
pub fn check(key: i16, version: i16) -> Result<&'static ApiRange, Refusal> {
    let r = lookup(key).ok_or(Refusal::UnknownApi)?;
    if version < r.accepted_min || version > r.max {
        return Err(Refusal::UnsupportedVersion);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    /// The table must never promise a version kafka-protocol cannot decode or encode.
    #[test]
    fn table_within_codec_ranges() {
        fn range<M: Message>() -> (i16, i16) {
            (M::VERSIONS.min, M::VERSIONS.max)
        }
        for r in SUPPORTED {
            let (min, max) = match r.key {
                ApiKey::Produce => range::<ProduceRequest>(),
                ApiKey::Fetch => range::<FetchRequest>(),
                ApiKey::ListOffsets => range::<ListOffsetsRequest>(),
                ApiKey::Metadata => range::<MetadataRequest>(),
                ApiKey::ApiVersions => range::<ApiVersionsRequest>(),
                ApiKey::CreateTopics => range::<CreateTopicsRequest>(),
                ApiKey::DeleteTopics => range::<DeleteTopicsRequest>(),
                ApiKey::DeleteRecords => range::<DeleteRecordsRequest>(),
                ApiKey::DescribeConfigs => range::<DescribeConfigsRequest>(),
                ApiKey::AlterConfigs => range::<AlterConfigsRequest>(),
                ApiKey::DescribeLogDirs => range::<DescribeLogDirsRequest>(),
                ApiKey::CreatePartitions => range::<CreatePartitionsRequest>(),
                ApiKey::IncrementalAlterConfigs => range::<IncrementalAlterConfigsRequest>(),
                ApiKey::DescribeCluster => range::<DescribeClusterRequest>(),
                ApiKey::OffsetCommit => range::<OffsetCommitRequest>(),
                ApiKey::OffsetFetch => range::<OffsetFetchRequest>(),
                ApiKey::FindCoordinator => range::<FindCoordinatorRequest>(),
                ApiKey::JoinGroup => range::<JoinGroupRequest>(),
                ApiKey::Heartbeat => range::<HeartbeatRequest>(),
                ApiKey::LeaveGroup => range::<LeaveGroupRequest>(),
                ApiKey::SyncGroup => range::<SyncGroupRequest>(),
                ApiKey::DescribeGroups => range::<DescribeGroupsRequest>(),
                ApiKey::ListGroups => range::<ListGroupsRequest>(),
                ApiKey::DeleteGroups => range::<DeleteGroupsRequest>(),
                ApiKey::OffsetDelete => range::<OffsetDeleteRequest>(),
                ApiKey::ConsumerGroupHeartbeat => range::<ConsumerGroupHeartbeatRequest>(),
                ApiKey::ConsumerGroupDescribe => range::<ConsumerGroupDescribeRequest>(),
                ApiKey::InitProducerId => range::<InitProducerIdRequest>(),
                ApiKey::DescribeProducers => range::<DescribeProducersRequest>(),
                ApiKey::AddPartitionsToTxn => range::<AddPartitionsToTxnRequest>(),
                ApiKey::AddOffsetsToTxn => range::<AddOffsetsToTxnRequest>(),
                ApiKey::EndTxn => range::<EndTxnRequest>(),
                ApiKey::DescribeTransactions => range::<DescribeTransactionsRequest>(),
                ApiKey::ListTransactions => range::<ListTransactionsRequest>(),
                ApiKey::TxnOffsetCommit => range::<TxnOffsetCommitRequest>(),
                other => panic!("{other:?} in table but not checked here"),
            };
            assert!(
                r.accepted_min >= min && r.max <= max,
                "{:?} outside codec range {min}-{max}",
                r.key
            );
            assert!(r.advertised_min <= r.accepted_min);
        }
    }

    #[test]
    fn check_refuses_outside() {
        assert_eq!(check(0, 2).unwrap_err(), Refusal::UnsupportedVersion);
        assert!(check(0, 3).is_ok());
        assert_eq!(check(23, 0).unwrap_err(), Refusal::UnknownApi); // OffsetForLeaderEpoch
        assert_eq!(check(-1, 0).unwrap_err(), Refusal::UnknownApi);
        assert_eq!(check(18, 5).unwrap_err(), Refusal::UnsupportedVersion);
    }
}
