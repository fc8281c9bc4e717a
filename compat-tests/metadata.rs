//! Metadata, ApiVersions and DescribeCluster as clients see them.

use std::time::Duration;

use kafka_protocol::messages::*;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::common::{bounded, Broker, Raw};

pub fn consumer(b: &Broker) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", "unused")
        .set("enable.auto.commit", "false")
        // librdkafka consumers do not auto-create by default; Kafka's Java consumer does.
        .set("allow.auto.create.topics", "true")
        .create()
        .expect("consumer")
}

/// Creates a topic through rdkafka's AdminClient with the given topic configs, failing the test on error.
pub fn create_topic(b: &Broker, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut t =
        rdkafka::admin::NewTopic::new(name, partitions, rdkafka::admin::TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let r = futures::executor::block_on(
        admin(b).create_topics(&[t], &rdkafka::admin::AdminOptions::new()),
    );
    if let Err(e) = &r.expect("CreateTopics")[0] {
        panic!("creating {name}: {e:?}");
    }
}

pub fn admin(b: &Broker) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .create()
        .expect("admin")
}

#[test]
fn rdkafka_sees_one_broker_and_auto_creates() {
    bounded(60, || {
        let b = Broker::start_with(&[("NUM_PARTITIONS", "3")]);
        let c = consumer(&b);
        let md = c
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata");
        assert_eq!(md.brokers().len(), 1);
        assert_eq!(md.brokers()[0].id(), 1);
        assert_eq!(md.brokers()[0].port() as u16, b.port);
        // Asking for an unknown topic auto-creates it with num_partitions partitions, led by us.
        let md = c
            .fetch_metadata(Some("auto.created"), Duration::from_secs(10))
            .expect("metadata");
        let t = &md.topics()[0];
        assert_eq!(t.name(), "auto.created");
        assert!(t.error().is_none(), "{:?}", t.error());
        assert_eq!(t.partitions().len(), 3);
        for p in t.partitions() {
            assert_eq!(p.leader(), 1);
            assert_eq!(p.replicas(), &[1]);
            assert_eq!(p.isr(), &[1]);
        }
    });
}

#[test]
fn kcat_lists_broker_and_topics() {
    bounded(60, || {
        let b = Broker::start();
        let created = std::process::Command::new(crate::common::binary())
            .args([
                "topic",
                "-b",
                &b.bootstrap(),
                "create",
                "kcat-topic",
                "-p",
                "2",
            ])
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stderr)
        );
        let out = std::process::Command::new("kcat")
            .args(["-b", &b.bootstrap(), "-L", "-m", "10"])
            .output()
            .expect("kcat installed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kcat failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("1 brokers:"), "{text}");
        assert!(
            text.contains(&format!("broker 1 at 127.0.0.1:{}", b.port)),
            "{text}"
        );
        assert!(
            text.contains("topic \"kcat-topic\" with 2 partitions"),
            "{text}"
        );
        assert!(
            text.contains("partition 1, leader 1, replicas: 1, isrs: 1"),
            "{text}"
        );
    });
}

#[test]
fn topic_ids_and_cluster_id_are_stable_across_restart() {
    bounded(90, || {
        let mut b = Broker::start();
        let mut raw = Raw::connect(&b);
        let mut req = MetadataRequest::default();
        let mut t = metadata_request::MetadataRequestTopic::default();
        t.name = Some(TopicName("ids".to_string().into()));
        req.topics = Some(vec![t]);
        req.allow_auto_topic_creation = true;
        let first: MetadataResponse = raw.call(ApiKey::Metadata, 12, &req);
        let id = first.topics[0].topic_id;
        assert!(!id.is_nil());
        let cluster = first.cluster_id.clone().unwrap();
        assert_eq!(cluster.len(), 22);
        b.restart();
        let mut raw = Raw::connect(&b);
        let second: MetadataResponse = raw.call(ApiKey::Metadata, 12, &req);
        assert_eq!(second.topics[0].topic_id, id);
        assert_eq!(second.cluster_id.unwrap(), cluster);
        // v13 (Kafka 4.1) has a top-level error code; v0 lists all topics for an empty list.
        let v13: MetadataResponse = raw.call(ApiKey::Metadata, 13, &req);
        assert_eq!(v13.error_code, 0);
        let mut all = MetadataRequest::default();
        all.topics = Some(vec![]);
        let v0: MetadataResponse = raw.call(ApiKey::Metadata, 0, &all);
        assert!(v0.topics.iter().any(|t| t
            .name
            .as_ref()
            .map(|n| n.as_str() == "ids")
            .unwrap_or(false)));
        // Metadata by topic ID (v10+).
        let mut by_id = MetadataRequest::default();
        let mut t = metadata_request::MetadataRequestTopic::default();
        t.topic_id = id;
        by_id.topics = Some(vec![t]);
        let r: MetadataResponse = raw.call(ApiKey::Metadata, 12, &by_id);
        assert_eq!(r.topics[0].name.as_ref().unwrap().as_str(), "ids");
    });
}

#[test]
fn api_versions_table_and_kip511() {
    bounded(30, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        let resp: ApiVersionsResponse =
            raw.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert_eq!(resp.error_code, 0);
        let get = |k: ApiKey| {
            resp.api_keys
                .iter()
                .find(|a| a.api_key == k as i16)
                .map(|a| (a.min_version, a.max_version))
        };
        assert_eq!(
            get(ApiKey::Produce),
            Some((0, 13)),
            "Produce advertised from v0 like Kafka 4"
        );
        assert_eq!(get(ApiKey::Fetch), Some((4, 18)));
        assert_eq!(get(ApiKey::Metadata), Some((0, 13)));
        assert_eq!(get(ApiKey::ApiVersions), Some((0, 4)));
        // Classic groups, Kafka 4.1's ranges.
        assert_eq!(get(ApiKey::FindCoordinator), Some((0, 6)));
        assert_eq!(get(ApiKey::JoinGroup), Some((0, 9)));
        assert_eq!(get(ApiKey::SyncGroup), Some((0, 5)));
        assert_eq!(get(ApiKey::Heartbeat), Some((0, 4)));
        assert_eq!(get(ApiKey::LeaveGroup), Some((0, 5)));
        assert_eq!(get(ApiKey::OffsetCommit), Some((2, 9)));
        assert_eq!(get(ApiKey::OffsetFetch), Some((1, 9)));
        assert_eq!(get(ApiKey::ListGroups), Some((0, 5)));
        assert_eq!(get(ApiKey::DescribeGroups), Some((0, 6)));
        assert_eq!(get(ApiKey::DeleteGroups), Some((0, 2)));
        assert_eq!(get(ApiKey::OffsetDelete), Some((0, 0)));
        // Idempotent producers (Kafka 4.1's ranges within the codec's).
        assert_eq!(get(ApiKey::InitProducerId), Some((0, 5)));
        assert_eq!(get(ApiKey::DescribeProducers), Some((0, 0)));
        // Transactions (Kafka 4.1's ranges) and the transaction.version feature at 2 (KIP-890).
        assert_eq!(get(ApiKey::AddPartitionsToTxn), Some((0, 5)));
        assert_eq!(get(ApiKey::AddOffsetsToTxn), Some((0, 4)));
        assert_eq!(get(ApiKey::EndTxn), Some((0, 5)));
        let tv = resp
            .finalized_features
            .iter()
            .find(|f| f.name.as_str() == "transaction.version")
            .map(|f| (f.min_version_level, f.max_version_level));
        assert_eq!(tv, Some((2, 2)), "transaction.version finalized at 2");
        assert!(resp.finalized_features_epoch >= 0);
        let sup = resp
            .supported_features
            .iter()
            .find(|f| f.name.as_str() == "transaction.version")
            .map(|f| (f.min_version, f.max_version));
        assert_eq!(sup, Some((0, 2)));
        // KIP-511: a newer ApiVersions gets UNSUPPORTED_VERSION with a v0 body listing our ranges.
        let mut frame = Vec::new();
        frame.extend_from_slice(&18i16.to_be_bytes());
        frame.extend_from_slice(&99i16.to_be_bytes());
        frame.extend_from_slice(&7i32.to_be_bytes());
        frame.extend_from_slice(&(-1i16).to_be_bytes());
        raw.send_frame(&frame);
        let mut resp = raw.read_frame().expect("answer");
        let corr = i32::from_be_bytes(resp[..4].try_into().unwrap());
        assert_eq!(corr, 7);
        let _ = bytes::Buf::get_i32(&mut resp);
        let body =
            <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut resp, 0)
                .unwrap();
        assert_eq!(body.error_code, 35);
        assert!(body
            .api_keys
            .iter()
            .any(|a| a.api_key == 18 && a.max_version == 4));
    });
}

#[test]
fn describe_cluster() {
    bounded(30, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        let mut req = DescribeClusterRequest::default();
        req.endpoint_type = 1;
        let r: DescribeClusterResponse = raw.call(ApiKey::DescribeCluster, 1, &req);
        assert_eq!(r.error_code, 0);
        assert_eq!(r.brokers.len(), 1);
        assert_eq!(r.brokers[0].port, b.port as i32);
        assert_eq!(r.controller_id.0, 1);
        assert_eq!(r.cluster_id.len(), 22);
    });
}
