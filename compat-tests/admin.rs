//! Topic administration through rdkafka's AdminClient and raw requests.

use std::time::Duration;

use futures::executor::block_on;
use kafka_protocol::messages::*;
use rdkafka::admin::{
    AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

use crate::common::{bounded, Broker, Raw};
use crate::metadata::{admin, consumer};

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

#[test]
fn create_describe_alter_delete_topics() {
    bounded(90, || {
        let b = Broker::start();
        let a = admin(&b);
        let t =
            NewTopic::new("orders", 4, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
        let res = block_on(a.create_topics(&[t], &opts())).unwrap();
        assert!(res[0].is_ok(), "{res:?}");
        // Errors: exists, bad name, bad partitions, bad replication factor, bad config.
        let again = block_on(a.create_topics(
            &[NewTopic::new("orders", 1, TopicReplication::Fixed(1))],
            &opts(),
        ))
        .unwrap();
        assert_eq!(
            again[0].as_ref().unwrap_err().1,
            RDKafkaErrorCode::TopicAlreadyExists
        );
        let bad = block_on(a.create_topics(
            &[NewTopic::new("bad name!", 1, TopicReplication::Fixed(1))],
            &opts(),
        ))
        .unwrap();
        assert_eq!(
            bad[0].as_ref().unwrap_err().1,
            RDKafkaErrorCode::InvalidTopic
        );
        let rf = block_on(a.create_topics(
            &[NewTopic::new("rf3", 1, TopicReplication::Fixed(3))],
            &opts(),
        ))
        .unwrap();
        assert_eq!(
            rf[0].as_ref().unwrap_err().1,
            RDKafkaErrorCode::InvalidReplicationFactor
        );
        let cfg = block_on(a.create_topics(
            &[NewTopic::new("cfg", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon")],
            &opts(),
        ))
        .unwrap();
        assert_eq!(
            cfg[0].as_ref().unwrap_err().1,
            RDKafkaErrorCode::InvalidConfig
        );
        // validate_only creates nothing.
        let v = block_on(a.create_topics(
            &[NewTopic::new("dry", 1, TopicReplication::Fixed(1))],
            &opts().validate_only(true),
        ))
        .unwrap();
        assert!(v[0].is_ok());
        let md = consumer(&b)
            .fetch_metadata(None, Duration::from_secs(5))
            .unwrap();
        assert!(!md.topics().iter().any(|t| t.name() == "dry"));

        // DescribeConfigs returns every entry with value and source.
        let d =
            block_on(a.describe_configs(&[ResourceSpecifier::Topic("orders")], &opts())).unwrap();
        let c = d[0].as_ref().unwrap();
        assert!(
            c.entries.len() >= 25,
            "all topic configs described, got {}",
            c.entries.len()
        );
        let get = |name: &str| c.get(name).unwrap_or_else(|| panic!("{name} described"));
        assert_eq!(get("retention.ms").value.as_deref(), Some("3600000"));
        assert!(!get("retention.ms").is_default);
        assert_eq!(get("segment.bytes").value.as_deref(), Some("1073741824"));
        assert!(get("segment.bytes").is_default);
        assert_eq!(get("max.message.bytes").value.as_deref(), Some("1048588"));
        assert_eq!(get("cleanup.policy").value.as_deref(), Some("delete"));

        // AlterConfigs replaces the overrides.
        let alter =
            AlterConfig::new(ResourceSpecifier::Topic("orders")).set("retention.bytes", "1000000");
        let r = block_on(a.alter_configs(&[alter], &opts())).unwrap();
        assert!(r[0].is_ok(), "{r:?}");
        let d =
            block_on(a.describe_configs(&[ResourceSpecifier::Topic("orders")], &opts())).unwrap();
        let c = d[0].as_ref().unwrap();
        assert_eq!(
            c.get("retention.bytes").unwrap().value.as_deref(),
            Some("1000000")
        );
        assert_eq!(
            c.get("retention.ms").unwrap().value.as_deref(),
            Some("604800000"),
            "non-incremental alter resets others"
        );
        // rust-rdkafka reports Ok for a refused AlterConfigs resource (confluent-kafka-python sees the
        // INVALID_CONFIG), so check the refusal on the wire.
        let mut raw = Raw::connect(&b);
        let mut req = AlterConfigsRequest::default();
        let mut res = alter_configs_request::AlterConfigsResource::default();
        res.resource_type = 2;
        res.resource_name = "orders".to_string().into();
        let mut c = alter_configs_request::AlterableConfig::default();
        c.name = "segment.bytes".to_string().into();
        c.value = Some("-5".to_string().into());
        res.configs.push(c);
        req.resources.push(res);
        let r: AlterConfigsResponse = raw.call(ApiKey::AlterConfigs, 2, &req);
        assert_eq!(r.responses[0].error_code, 40, "INVALID_CONFIG");
        assert!(r.responses[0]
            .error_message
            .as_deref()
            .unwrap_or("")
            .contains("segment.bytes"));
        req.resources[0].resource_name = "nope".to_string().into();
        req.resources[0].configs[0].value = Some("100000".to_string().into());
        let r: AlterConfigsResponse = raw.call(ApiKey::AlterConfigs, 2, &req);
        assert_eq!(r.responses[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");

        // Partitions only grow.
        let r = block_on(a.create_partitions(&[NewPartitions::new("orders", 6)], &opts())).unwrap();
        assert!(r[0].is_ok(), "{r:?}");
        let r = block_on(a.create_partitions(&[NewPartitions::new("orders", 2)], &opts())).unwrap();
        assert_eq!(
            r[0].as_ref().unwrap_err().1,
            RDKafkaErrorCode::InvalidPartitions
        );
        let md = consumer(&b)
            .fetch_metadata(Some("orders"), Duration::from_secs(5))
            .unwrap();
        assert_eq!(md.topics()[0].partitions().len(), 6);
        // The new partitions accept writes.
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", b.bootstrap())
            .create()
            .unwrap();
        p.send(BaseRecord::to("orders").partition(5).key("k").payload("v"))
            .unwrap();
        assert!(p.flush(Duration::from_secs(10)).is_ok());

        // Delete, then the name is free again and the old data is gone.
        let r = block_on(a.delete_topics(&["orders"], &opts())).unwrap();
        assert!(r[0].is_ok(), "{r:?}");
        assert!(
            !b.partition_dir("orders", 5).exists(),
            "partition directory removed"
        );
        let r = block_on(a.delete_topics(&["orders"], &opts())).unwrap();
        assert_eq!(
            r[0].as_ref().unwrap_err().1,
            RDKafkaErrorCode::UnknownTopicOrPartition
        );
        let r = block_on(a.create_topics(
            &[NewTopic::new("orders", 1, TopicReplication::Fixed(1))],
            &opts(),
        ))
        .unwrap();
        assert!(r[0].is_ok());
        let c = consumer(&b);
        let (low, high) = c
            .fetch_watermarks("orders", 0, Duration::from_secs(5))
            .unwrap();
        assert_eq!((low, high), (0, 0), "re-created topic starts empty");
    });
}

#[test]
fn incremental_alter_and_broker_configs() {
    bounded(60, || {
        let b = Broker::start_with(&[("LOG_RETENTION_HOURS", "24")]);
        let mut raw = Raw::connect(&b);
        let mut ct = CreateTopicsRequest::default();
        let mut t = create_topics_request::CreatableTopic::default();
        t.name = TopicName("inc".to_string().into());
        t.num_partitions = 1;
        t.replication_factor = 1;
        ct.topics.push(t);
        let r: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &ct);
        assert_eq!(r.topics[0].error_code, 0);
        assert!(!r.topics[0].topic_id.is_nil());
        let configs = r.topics[0].configs.as_ref().unwrap();
        let retention = configs
            .iter()
            .find(|c| c.name.as_str() == "retention.ms")
            .unwrap();
        assert_eq!(
            retention.value.as_deref(),
            Some("86400000"),
            "broker setting is the topic default"
        );

        let mut req = IncrementalAlterConfigsRequest::default();
        let mut res = incremental_alter_configs_request::AlterConfigsResource::default();
        res.resource_type = 2;
        res.resource_name = "inc".to_string().into();
        let mut set = incremental_alter_configs_request::AlterableConfig::default();
        set.name = "segment.ms".to_string().into();
        set.config_operation = 0;
        set.value = Some("60000".to_string().into());
        res.configs.push(set);
        req.resources.push(res.clone());
        let r: IncrementalAlterConfigsResponse = raw.call(ApiKey::IncrementalAlterConfigs, 1, &req);
        assert_eq!(r.responses[0].error_code, 0);

        let mut d = DescribeConfigsRequest::default();
        let mut dr = describe_configs_request::DescribeConfigsResource::default();
        dr.resource_type = 2;
        dr.resource_name = "inc".to_string().into();
        dr.configuration_keys = None; // null = all
        d.resources.push(dr);
        d.include_synonyms = true;
        let r: DescribeConfigsResponse = raw.call(ApiKey::DescribeConfigs, 4, &d);
        let entries = &r.results[0].configs;
        let seg = entries
            .iter()
            .find(|c| c.name.as_str() == "segment.ms")
            .unwrap();
        assert_eq!(seg.value.as_deref(), Some("60000"));
        assert_eq!(seg.config_source, 1, "DYNAMIC_TOPIC_CONFIG");
        assert_eq!(seg.config_type, 5, "LONG");
        let ret = entries
            .iter()
            .find(|c| c.name.as_str() == "retention.ms")
            .unwrap();
        assert_eq!(ret.config_source, 4, "STATIC_BROKER_CONFIG");
        assert_eq!(ret.synonyms[0].name.as_str(), "log.retention.ms");
        let idx = entries
            .iter()
            .find(|c| c.name.as_str() == "index.interval.bytes")
            .unwrap();
        assert_eq!(idx.config_source, 5, "DEFAULT_CONFIG");

        // DELETE restores the default.
        let mut req = IncrementalAlterConfigsRequest::default();
        res.configs[0].config_operation = 1;
        res.configs[0].value = None;
        req.resources.push(res);
        let r: IncrementalAlterConfigsResponse = raw.call(ApiKey::IncrementalAlterConfigs, 1, &req);
        assert_eq!(r.responses[0].error_code, 0);
        let r: DescribeConfigsResponse = raw.call(ApiKey::DescribeConfigs, 4, &d);
        let seg = r.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == "segment.ms")
            .unwrap();
        assert_eq!(seg.value.as_deref(), Some("604800000"));

        // Broker resource: every setting, read-only, with sources.
        let mut d = DescribeConfigsRequest::default();
        let mut dr = describe_configs_request::DescribeConfigsResource::default();
        dr.resource_type = 4;
        dr.resource_name = "1".to_string().into();
        dr.configuration_keys = None;
        d.resources.push(dr);
        let r: DescribeConfigsResponse = raw.call(ApiKey::DescribeConfigs, 4, &d);
        assert_eq!(r.results[0].error_code, 0);
        let np = r.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == "num.partitions")
            .unwrap();
        assert_eq!(np.value.as_deref(), Some("1"));
        assert_eq!(np.config_source, 5);
        let rh = r.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == "log.retention.hours")
            .unwrap();
        assert_eq!(rh.value.as_deref(), Some("24"));
        assert_eq!(rh.config_source, 4);
    });
}

#[test]
fn delete_records_and_log_dirs() {
    bounded(60, || {
        let b = Broker::start();
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", b.bootstrap())
            .create()
            .unwrap();
        for i in 0..100 {
            p.send(
                BaseRecord::to("dr")
                    .partition(0)
                    .key(&format!("k{i}"))
                    .payload("v"),
            )
            .unwrap();
            if i % 10 == 9 {
                p.flush(Duration::from_secs(10)).unwrap();
            }
        }
        p.flush(Duration::from_secs(10)).unwrap();
        let a = admin(&b);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("dr", 0, rdkafka::Offset::Offset(42))
            .unwrap();
        let r = block_on(a.delete_records(&tpl, &opts())).unwrap();
        let e = r.elements();
        assert!(e[0].error().is_ok(), "{:?}", e[0].error());
        assert_eq!(e[0].offset(), rdkafka::Offset::Offset(42));
        let c = consumer(&b);
        assert_eq!(
            c.fetch_watermarks("dr", 0, Duration::from_secs(5)).unwrap(),
            (42, 100)
        );
        // Beyond the high watermark is out of range.
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("dr", 0, rdkafka::Offset::Offset(1000))
            .unwrap();
        let r = block_on(a.delete_records(&tpl, &opts())).unwrap();
        assert!(r.elements()[0].error().is_err());
        // The new log start offset survives a restart.
        let mut b = b;
        b.restart();
        let c = consumer(&b);
        assert_eq!(
            c.fetch_watermarks("dr", 0, Duration::from_secs(5)).unwrap(),
            (42, 100)
        );

        let mut raw = Raw::connect(&b);
        // Fetch below the log start offset: OFFSET_OUT_OF_RANGE with the bounds; at it: data.
        for (offset, code) in [(41i64, 1i16), (42, 0), (100, 0), (101, 1)] {
            let mut f = FetchRequest::default();
            f.max_bytes = 1 << 20;
            let mut ft = fetch_request::FetchTopic::default();
            ft.topic = TopicName("dr".to_string().into());
            let mut fp = fetch_request::FetchPartition::default();
            fp.fetch_offset = offset;
            fp.partition_max_bytes = 1 << 20;
            ft.partitions.push(fp);
            f.topics.push(ft);
            let r: FetchResponse = raw.call(ApiKey::Fetch, 12, &f);
            let p = &r.responses[0].partitions[0];
            assert_eq!(p.error_code, code, "fetch at {offset}");
            assert_eq!(
                (p.log_start_offset, p.high_watermark),
                (42, 100),
                "fetch at {offset}"
            );
        }
        let r: DescribeLogDirsResponse = raw.call(ApiKey::DescribeLogDirs, 4, &{
            let mut all = DescribeLogDirsRequest::default();
            all.topics = None; // null = every partition
            all
        });
        assert_eq!(r.results.len(), 1);
        let dir = &r.results[0];
        assert!(dir.total_bytes > 0 && dir.usable_bytes > 0);
        let t = dir.topics.iter().find(|t| t.name.as_str() == "dr").unwrap();
        assert!(t.partitions[0].partition_size > 0);
    });
}
