//! Requests that repeat an item or ask for too much at once: the response must not grow with the copies (a
//! fixed multiple of what the distinct items need), and the partition cap holds for the whole request.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::common::{bounded, build_produce, create_topic_raw, Broker, Raw};

fn metadata_for(names: &[&str]) -> MetadataRequest {
    let mut m = MetadataRequest::default();
    m.topics = Some(
        names
            .iter()
            .map(|n| {
                let mut t = metadata_request::MetadataRequestTopic::default();
                t.name = Some(TopicName(StrBytes::from_string(n.to_string())));
                t
            })
            .collect(),
    );
    m
}

#[test]
fn metadata_answers_a_repeated_topic_once() {
    bounded(60, || {
        let b = Broker::start_with(&[("AUTO_CREATE_TOPICS_ENABLE", "false")]);
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "many-parts", 50);
        let (once, r1): (usize, MetadataResponse) =
            raw.call_sized(ApiKey::Metadata, 12, &metadata_for(&["many-parts"]));
        assert_eq!(r1.topics.len(), 1);
        assert_eq!(r1.topics[0].partitions.len(), 50);
        // 100,000 copies: about 1.2 MB of request; answered per copy this would be ~170 MB.
        let names = vec!["many-parts"; 100_000];
        let (size, r): (usize, MetadataResponse) =
            raw.call_sized(ApiKey::Metadata, 12, &metadata_for(&names));
        assert_eq!(r.topics.len(), 1, "one answer per distinct topic");
        assert_eq!(size, once, "the copies add nothing to the response");
        // Distinct topics are still all answered, unknown ones with their error.
        let (_, r): (usize, MetadataResponse) = raw.call_sized(
            ApiKey::Metadata,
            12,
            &metadata_for(&["many-parts", "nope", "many-parts", "nope"]),
        );
        let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(codes, vec![0, 3]);
    });
}

#[test]
fn list_offsets_refuses_repeated_partitions() {
    bounded(60, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "lo", 2);
        let part = |i: i32| {
            let mut p = list_offsets_request::ListOffsetsPartition::default();
            p.partition_index = i;
            p.timestamp = -1;
            p
        };
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_static_str("lo"));
        t.partitions = vec![part(0), part(1), part(0)];
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.topics.push(t);
        let r: ListOffsetsResponse = raw.call(ApiKey::ListOffsets, 9, &req);
        let got: Vec<(i32, i16)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        // Kafka: every copy of a duplicated partition gets INVALID_REQUEST (42); the others are answered.
        assert_eq!(got, vec![(0, 42), (1, 0), (0, 42)]);
        assert_eq!(r.topics[0].partitions[1].offset, 0);
    });
}

#[test]
fn describe_configs_does_not_multiply_a_repeated_resource() {
    bounded(60, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "cfg", 1);
        let resource = |keys: Option<Vec<&str>>| {
            let mut r = describe_configs_request::DescribeConfigsResource::default();
            r.resource_type = 2;
            r.resource_name = StrBytes::from_static_str("cfg");
            r.configuration_keys = keys.map(|k| {
                k.into_iter()
                    .map(|x| StrBytes::from_string(x.into()))
                    .collect()
            });
            r
        };
        let request = |resources| {
            let mut req = DescribeConfigsRequest::default();
            req.resources = resources;
            req.include_synonyms = true;
            req.include_documentation = true;
            req
        };
        let (single, r1): (usize, DescribeConfigsResponse) =
            raw.call_sized(ApiKey::DescribeConfigs, 4, &request(vec![resource(None)]));
        assert!(
            r1.results[0].configs.len() > 20,
            "every topic config is described"
        );
        // 20,000 copies of a 6-byte resource: answered in full each, this is ~20,000 x `single`.
        let copies = 20_000;
        let (size, r): (usize, DescribeConfigsResponse) = raw.call_sized(
            ApiKey::DescribeConfigs,
            4,
            &request(vec![resource(None); copies]),
        );
        assert_eq!(r.results.len(), copies);
        assert!(r
            .results
            .iter()
            .all(|x| x.error_code == 42 && x.configs.is_empty()));
        assert!(
            size < copies * 64 + single,
            "response of {size} bytes for {copies} copies is not bounded by the request"
        );
        // A long key list is a set: each config is listed once.
        let mut keys = vec!["retention.ms"; 50_000];
        keys.push("segment.bytes");
        let (_, r): (usize, DescribeConfigsResponse) = raw.call_sized(
            ApiKey::DescribeConfigs,
            4,
            &request(vec![resource(Some(keys))]),
        );
        let names: Vec<String> = r.results[0]
            .configs
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        assert_eq!(names, vec!["retention.ms", "segment.bytes"]);
    });
}

#[test]
fn partition_cap_holds_for_the_whole_request() {
    bounded(60, || {
        let b = Broker::start();
        let mut raw = Raw::connect(&b);
        let topic = |name: &str, partitions: i32| {
            let mut t = create_topics_request::CreatableTopic::default();
            t.name = TopicName(StrBytes::from_string(name.to_string()));
            t.num_partitions = partitions;
            t.replication_factor = 1;
            t
        };
        // Each topic is under Kafka's 10,000 but together they are over it: Kafka refuses all of them.
        let mut req = CreateTopicsRequest::default();
        req.timeout_ms = 10_000;
        req.topics = vec![
            topic("big-a", 6000),
            topic("big-b", 6000),
            topic("small", 1),
        ];
        let r: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &req);
        for t in &r.topics {
            assert_eq!(t.error_code, 44, "{}: POLICY_VIOLATION", t.name.0);
        }
        // Explicit replica assignments count too.
        let mut assigned = topic("assigned", -1);
        assigned.replication_factor = -1;
        assigned.assignments = (0..10_001)
            .map(|i| {
                let mut a = create_topics_request::CreatableReplicaAssignment::default();
                a.partition_index = i;
                a.broker_ids = vec![BrokerId(1)];
                a
            })
            .collect();
        req.topics = vec![assigned];
        let r: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &req);
        assert_eq!(r.topics[0].error_code, 44);
        // CreatePartitions: the growth of all topics together.
        create_topic_raw(&mut raw, "grow-a", 1);
        create_topic_raw(&mut raw, "grow-b", 1);
        let grow = |name: &str| {
            let mut t = create_partitions_request::CreatePartitionsTopic::default();
            t.name = TopicName(StrBytes::from_string(name.to_string()));
            t.count = 6000;
            t
        };
        let mut cp = CreatePartitionsRequest::default();
        cp.timeout_ms = 10_000;
        cp.topics = vec![grow("grow-a"), grow("grow-b")];
        let r: CreatePartitionsResponse = raw.call(ApiKey::CreatePartitions, 3, &cp);
        for t in &r.results {
            assert_eq!(t.error_code, 44, "{}", t.name.0);
        }
        // Nothing was created.
        let mut all = MetadataRequest::default();
        all.topics = None;
        let m: MetadataResponse = raw.call(ApiKey::Metadata, 12, &all);
        let mut names: Vec<(String, usize)> = m
            .topics
            .iter()
            .filter(|t| !t.is_internal)
            .map(|t| (t.name.as_ref().unwrap().0.to_string(), t.partitions.len()))
            .collect();
        names.sort();
        assert_eq!(names, vec![("grow-a".into(), 1), ("grow-b".into(), 1)]);
    });
}

#[test]
fn creating_many_partitions_does_not_stall_other_partitions() {
    bounded(120, || {
        // On a tmpfs when one can be mounted: creating 500 partitions on a real disk is ~1500 fsyncs, which
        // would slow every other test's broker on the same disk.
        let fs = crate::common::Tmpfs::mount("256m");
        let b = match &fs {
            Some(fs) => Broker::start_in(
                fs.path().join("data"),
                &[],
                crate::common::Limits::default(),
            ),
            None => Broker::start(),
        };
        let mut raw = Raw::connect(&b);
        create_topic_raw(&mut raw, "busy", 1);
        // Produce to `busy` back to back on its own connection while a big topic is created.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let producer = {
            let stop = stop.clone();
            let mut raw = Raw::connect(&b);
            std::thread::spawn(move || {
                let mut worst = std::time::Duration::ZERO;
                let mut count = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = std::time::Instant::now();
                    let records = crate::common::encode_batch(
                        &[(Some(b"k"), b"v")],
                        kafka_protocol::records::Compression::None,
                    );
                    let req = build_produce("busy", 1, &[(0, records)]);
                    let r: ProduceResponse = raw.call(ApiKey::Produce, 9, &req);
                    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
                    worst = worst.max(started.elapsed());
                    count += 1;
                }
                (worst, count)
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        let started = std::time::Instant::now();
        create_topic_raw(&mut raw, "wide", 2000);
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (worst, count) = producer.join().unwrap();
        eprintln!(
            "creating 2000 partitions took {took:?}; {count} produces meanwhile, slowest {worst:?}"
        );
        // Opening 2000 logs (files, fsyncs) takes seconds; a produce to another partition must not wait for
        // it. Generous: a quarter of the creation time, and at most 2 s on a loaded machine.
        assert!(
            worst
                < (took / 4)
                    .min(std::time::Duration::from_secs(2))
                    .max(std::time::Duration::from_millis(100)),
            "a produce waited {worst:?} while a topic creation took {took:?}"
        );
    });
}
