//! Every advertised version of every API answers a realistic request (kafka-protocol refuses to encode fields
//! a version lacks, so each handler must gate them; this catches any that do not).

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use uuid::Uuid;
use vltava::protocol::versions::SUPPORTED;

use crate::common::{bounded, encode_batch, Broker, Raw};

fn name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_string()))
}

#[test]
fn every_advertised_version_answers() {
    bounded(120, || {
        let b = Broker::start_with(&[("GROUP_INITIAL_REBALANCE_DELAY_MS", "0")]);
        let mut raw = Raw::connect(&b);
        // A topic with data for the read paths.
        let mut ct = CreateTopicsRequest::default();
        let mut t = create_topics_request::CreatableTopic::default();
        t.name = name("v");
        t.num_partitions = 1;
        t.replication_factor = 1;
        ct.topics.push(t);
        let r: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &ct);
        let id = r.topics[0].topic_id;
        let batch = encode_batch(&[(Some(b"k"), b"v")], Compression::None);
        let mut answered = 0;
        for api in SUPPORTED {
            for v in api.accepted_min..=api.max {
                check(&mut raw, api.key, v, id, &batch);
                answered += 1;
            }
        }
        assert!(answered > 80, "{answered}");
    });
}

fn check(raw: &mut Raw, api: ApiKey, v: i16, id: Uuid, batch: &Bytes) {
    let ctx = format!("{api:?} v{v}");
    match api {
        ApiKey::Produce => {
            let mut pd = produce_request::PartitionProduceData::default();
            pd.records = Some(batch.clone());
            let mut td = produce_request::TopicProduceData::default();
            if v >= 13 {
                td.topic_id = id;
            } else {
                td.name = name("v");
            }
            td.partition_data.push(pd);
            let mut req = ProduceRequest::default();
            req.acks = -1;
            req.topic_data.push(td);
            let r: ProduceResponse = raw.call(api, v, &req);
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "{ctx}");
        }
        ApiKey::Fetch => {
            let mut fp = fetch_request::FetchPartition::default();
            fp.partition_max_bytes = 1 << 20;
            let mut ft = fetch_request::FetchTopic::default();
            if v >= 13 {
                ft.topic_id = id;
            } else {
                ft.topic = name("v");
            }
            ft.partitions.push(fp);
            let mut req = FetchRequest::default();
            req.max_bytes = 1 << 20;
            req.topics.push(ft);
            let r: FetchResponse = raw.call(api, v, &req);
            let p = &r.responses[0].partitions[0];
            assert_eq!(p.error_code, 0, "{ctx}");
            assert!(!p.records.as_ref().unwrap().is_empty(), "{ctx}");
        }
        ApiKey::ListOffsets => {
            // One partition per request: a repeated partition is INVALID_REQUEST, as in Kafka.
            for ts in [-1, -2, 0] {
                let mut req = ListOffsetsRequest::default();
                let mut t = list_offsets_request::ListOffsetsTopic::default();
                t.name = name("v");
                let mut p = list_offsets_request::ListOffsetsPartition::default();
                p.timestamp = ts;
                t.partitions.push(p);
                req.topics.push(t);
                let r: ListOffsetsResponse = raw.call(api, v, &req);
                assert_eq!(r.topics[0].partitions[0].error_code, 0, "{ctx} ts {ts}");
            }
        }
        ApiKey::Metadata => {
            let mut req = MetadataRequest::default();
            let mut t = metadata_request::MetadataRequestTopic::default();
            t.name = Some(name("v"));
            req.topics = Some(vec![t]);
            let r: MetadataResponse = raw.call(api, v, &req);
            assert_eq!(r.topics[0].error_code, 0, "{ctx}");
            assert_eq!(r.topics[0].partitions.len(), 1, "{ctx}");
        }
        ApiKey::ApiVersions => {
            let r: ApiVersionsResponse = raw.call(api, v, &ApiVersionsRequest::default());
            assert_eq!(r.error_code, 0, "{ctx}");
        }
        ApiKey::CreateTopics => {
            let mut req = CreateTopicsRequest::default();
            let mut t = create_topics_request::CreatableTopic::default();
            t.name = name(&format!("ct{v}"));
            t.num_partitions = 1;
            t.replication_factor = 1;
            req.topics.push(t);
            let r: CreateTopicsResponse = raw.call(api, v, &req);
            assert_eq!(r.topics[0].error_code, 0, "{ctx}");
            let r: CreateTopicsResponse = raw.call(api, v, &req);
            assert_eq!(r.topics[0].error_code, 36, "{ctx}");
        }
        ApiKey::DeleteTopics => {
            let mut req = DeleteTopicsRequest::default();
            let topic = format!("ct{}", 2 + (v % 6));
            if v >= 6 {
                let mut st = delete_topics_request::DeleteTopicState::default();
                st.name = Some(name("missing"));
                req.topics.push(st);
            } else {
                req.topic_names.push(name(&topic));
                req.topic_names.push(name("missing"));
            }
            let r: DeleteTopicsResponse = raw.call(api, v, &req);
            assert_eq!(r.responses.last().unwrap().error_code, 3, "{ctx}");
        }
        ApiKey::DeleteRecords => {
            let mut req = DeleteRecordsRequest::default();
            let mut t = delete_records_request::DeleteRecordsTopic::default();
            t.name = name("v");
            let mut p = delete_records_request::DeleteRecordsPartition::default();
            p.offset = 0;
            t.partitions.push(p);
            req.topics.push(t);
            let r: DeleteRecordsResponse = raw.call(api, v, &req);
            assert_eq!(r.topics[0].partitions[0].error_code, 0, "{ctx}");
        }
        ApiKey::DescribeConfigs => {
            let mut req = DescribeConfigsRequest::default();
            for (ty, n) in [(2i8, "v"), (4, "1")] {
                let mut res = describe_configs_request::DescribeConfigsResource::default();
                res.resource_type = ty;
                res.resource_name = StrBytes::from_string(n.to_string());
                res.configuration_keys = None;
                req.resources.push(res);
            }
            req.include_synonyms = v >= 1;
            req.include_documentation = v >= 3;
            let r: DescribeConfigsResponse = raw.call(api, v, &req);
            assert!(
                r.results
                    .iter()
                    .all(|x| x.error_code == 0 && !x.configs.is_empty()),
                "{ctx}: {:?}",
                r.results
                    .iter()
                    .map(|x| (x.error_code, &x.error_message, x.configs.len()))
                    .collect::<Vec<_>>()
            );
        }
        ApiKey::AlterConfigs => {
            let mut req = AlterConfigsRequest::default();
            let mut res = alter_configs_request::AlterConfigsResource::default();
            res.resource_type = 2;
            res.resource_name = StrBytes::from_string("v".to_string());
            req.resources.push(res);
            let r: AlterConfigsResponse = raw.call(api, v, &req);
            assert_eq!(r.responses[0].error_code, 0, "{ctx}");
        }
        ApiKey::DescribeLogDirs => {
            let r: DescribeLogDirsResponse = raw.call(api, v, &DescribeLogDirsRequest::default());
            assert_eq!(r.results.len(), 1, "{ctx}");
        }
        ApiKey::CreatePartitions => {
            let mut req = CreatePartitionsRequest::default();
            let mut t = create_partitions_request::CreatePartitionsTopic::default();
            t.name = name("v");
            t.count = 2 + v as i32;
            t.assignments = None;
            req.topics.push(t);
            let r: CreatePartitionsResponse = raw.call(api, v, &req);
            assert_eq!(r.results[0].error_code, 0, "{ctx}");
        }
        ApiKey::IncrementalAlterConfigs => {
            let mut req = IncrementalAlterConfigsRequest::default();
            let mut res = incremental_alter_configs_request::AlterConfigsResource::default();
            res.resource_type = 2;
            res.resource_name = StrBytes::from_string("v".to_string());
            let mut c = incremental_alter_configs_request::AlterableConfig::default();
            c.name = StrBytes::from_string("retention.ms".to_string());
            c.value = Some(StrBytes::from_string("86400000".to_string()));
            res.configs.push(c);
            req.resources.push(res);
            let r: IncrementalAlterConfigsResponse = raw.call(api, v, &req);
            assert_eq!(r.responses[0].error_code, 0, "{ctx}");
        }
        ApiKey::DescribeCluster => {
            let r: DescribeClusterResponse = raw.call(api, v, &DescribeClusterRequest::default());
            assert_eq!(r.error_code, 0, "{ctx}");
            assert_eq!(r.brokers.len(), 1, "{ctx}");
        }
        ApiKey::FindCoordinator => {
            let key = StrBytes::from_string(format!("fc-{v}"));
            let mut req = FindCoordinatorRequest::default();
            if v >= 4 {
                req.coordinator_keys = vec![key];
            } else {
                req.key = key;
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let r: FindCoordinatorResponse = raw.call(api, v, &req);
                let (code, node) = if v >= 4 {
                    (r.coordinators[0].error_code, r.coordinators[0].node_id.0)
                } else {
                    (r.error_code, r.node_id.0)
                };
                if code == 0 {
                    assert_eq!(node, 1, "{ctx}");
                    break;
                }
                // The offsets topic is created (and its shards loaded) in the background after start.
                assert_eq!(code, 15, "{ctx}");
                assert!(std::time::Instant::now() < deadline, "{ctx}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        ApiKey::JoinGroup => {
            let group = format!("jg-{v}");
            group_ready(raw, &group);
            let r: JoinGroupResponse = raw.call(api, v, &join(&group, ""));
            let r = if v >= 4 {
                assert_eq!(r.error_code, 79, "{ctx}: MEMBER_ID_REQUIRED");
                let id = r.member_id.to_string();
                raw.call(api, v, &join(&group, &id))
            } else {
                r
            };
            assert_eq!((r.error_code, r.generation_id), (0, 1), "{ctx}");
            assert_eq!(r.members.len(), 1, "{ctx}");
        }
        ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => {
            let group = format!("{api:?}-{v}");
            let (id, gen) = joined(raw, &group);
            let gid = GroupId(StrBytes::from_string(group.clone()));
            let mid = StrBytes::from_string(id.clone());
            match api {
                ApiKey::SyncGroup => {
                    let mut req = SyncGroupRequest::default()
                        .with_group_id(gid)
                        .with_generation_id(gen)
                        .with_member_id(mid.clone());
                    if v >= 5 {
                        req.protocol_type = Some(StrBytes::from_static_str("consumer"));
                        req.protocol_name = Some(StrBytes::from_static_str("range"));
                    }
                    req.assignments =
                        vec![sync_group_request::SyncGroupRequestAssignment::default()
                            .with_member_id(mid)
                            .with_assignment(Bytes::from_static(b"A"))];
                    let r: SyncGroupResponse = raw.call(api, v, &req);
                    assert_eq!((r.error_code, &r.assignment[..]), (0, &b"A"[..]), "{ctx}");
                }
                ApiKey::Heartbeat => {
                    let req = HeartbeatRequest::default()
                        .with_group_id(gid)
                        .with_generation_id(gen)
                        .with_member_id(mid);
                    let r: HeartbeatResponse = raw.call(api, v, &req);
                    // Completing the rebalance (no sync yet): heartbeats are fine.
                    assert_eq!(r.error_code, 0, "{ctx}");
                }
                _ => {
                    let mut req = LeaveGroupRequest::default().with_group_id(gid);
                    if v >= 3 {
                        req.members = vec![
                            leave_group_request::MemberIdentity::default().with_member_id(mid)
                        ];
                    } else {
                        req.member_id = mid;
                    }
                    let r: LeaveGroupResponse = raw.call(api, v, &req);
                    assert_eq!(r.error_code, 0, "{ctx}");
                    if v >= 3 {
                        assert_eq!(r.members[0].error_code, 0, "{ctx}");
                    }
                }
            }
        }
        ApiKey::OffsetCommit => {
            group_ready(raw, "oc");
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("oc")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name("v"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(i64::from(v))
                                .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                        ]),
                ]);
            let r: OffsetCommitResponse = raw.call(api, v, &req);
            assert_eq!(r.topics[0].partitions[0].error_code, 0, "{ctx}");
        }
        ApiKey::OffsetFetch => {
            group_ready(raw, "oc");
            let r: OffsetFetchResponse = if v >= 8 {
                let req = OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("oc")))
                        .with_member_epoch(-1)
                        .with_topics(None),
                ]);
                raw.call(api, v, &req)
            } else {
                let req = OffsetFetchRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("oc")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(name("v"))
                            .with_partition_indexes(vec![0]),
                    ]));
                raw.call(api, v, &req)
            };
            let p = if v >= 8 {
                let p = &r.groups[0].topics[0].partitions[0];
                (p.error_code, p.committed_offset)
            } else {
                let p = &r.topics[0].partitions[0];
                (p.error_code, p.committed_offset)
            };
            // OffsetCommit (table order: before OffsetFetch) left v9's commit.
            assert_eq!(p, (0, 9), "{ctx}");
        }
        ApiKey::DescribeGroups => {
            let (id, _) = joined(raw, &format!("dg-{v}"));
            let mut req = DescribeGroupsRequest::default().with_groups(vec![
                GroupId(StrBytes::from_string(format!("dg-{v}"))),
                GroupId(StrBytes::from_static_str("no-such-group")),
            ]);
            req.include_authorized_operations = v >= 3;
            let r: DescribeGroupsResponse = raw.call(api, v, &req);
            let g = &r.groups[0];
            assert_eq!(g.error_code, 0, "{ctx}");
            assert_eq!(g.group_state.as_str(), "CompletingRebalance", "{ctx}");
            assert_eq!(g.members.len(), 1, "{ctx}");
            assert_eq!(g.members[0].member_id.as_str(), id, "{ctx}");
            let dead = &r.groups[1];
            assert_eq!(dead.group_state.as_str(), "Dead", "{ctx}");
            assert_eq!(dead.error_code, if v >= 6 { 69 } else { 0 }, "{ctx}");
        }
        ApiKey::ListGroups => {
            let mut req = ListGroupsRequest::default();
            if v >= 4 {
                req.states_filter = vec![StrBytes::from_static_str("CompletingRebalance")];
            }
            if v >= 5 {
                req.types_filter = vec![StrBytes::from_static_str("classic")];
            }
            let r: ListGroupsResponse = raw.call(api, v, &req);
            assert_eq!(r.error_code, 0, "{ctx}");
            // DescribeGroups left dg-0..dg-6 completing their rebalance.
            assert!(
                r.groups.iter().any(|g| g.group_id.as_str() == "dg-0"),
                "{ctx}"
            );
            if v >= 4 {
                assert!(
                    r.groups
                        .iter()
                        .all(|g| g.group_state.as_str() == "CompletingRebalance"),
                    "{ctx}"
                );
            }
        }
        ApiKey::DeleteGroups => {
            let group = format!("del-{v}");
            commit(raw, &group);
            let req = DeleteGroupsRequest::default().with_groups_names(vec![
                GroupId(StrBytes::from_string(group)),
                GroupId(StrBytes::from_static_str("dg-0")),
            ]);
            let r: DeleteGroupsResponse = raw.call(api, v, &req);
            assert_eq!(r.results[0].error_code, 0, "{ctx}");
            assert_eq!(r.results[1].error_code, 68, "{ctx}: NON_EMPTY_GROUP");
        }
        ApiKey::OffsetDelete => {
            commit(raw, "od");
            let req = OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("od")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(name("v"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]);
            let r: OffsetDeleteResponse = raw.call(api, v, &req);
            assert_eq!(
                (r.error_code, r.topics[0].partitions[0].error_code),
                (0, 0),
                "{ctx}"
            );
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let group = format!("cgh-{v}");
            group_ready(raw, &group);
            // v0: the coordinator picks the member id; v1: the client does (KIP-1082).
            let member = if v == 0 {
                String::new()
            } else {
                format!("m-{v}")
            };
            let req = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group)))
                .with_member_id(StrBytes::from_string(member))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30000)
                .with_subscribed_topic_names(Some(vec![name("v")]))
                .with_topic_partitions(Some(vec![]));
            let r: ConsumerGroupHeartbeatResponse = raw.call(api, v, &req);
            assert_eq!(r.error_code, 0, "{ctx}: {:?}", r.error_message);
            assert_eq!(r.member_epoch, 1, "{ctx}");
            assert!(r.member_id.is_some_and(|m| !m.is_empty()), "{ctx}");
            let a = r.assignment.expect("assignment");
            assert_eq!(a.topic_partitions[0].topic_id, id, "{ctx}");
        }
        ApiKey::ConsumerGroupDescribe => {
            // ConsumerGroupHeartbeat (table order: before this) left cgh-0 and cgh-1 with one member.
            let req = ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![
                    GroupId(StrBytes::from_static_str("cgh-1")),
                    GroupId(StrBytes::from_static_str("no-such-group")),
                ])
                .with_include_authorized_operations(true);
            let r: ConsumerGroupDescribeResponse = raw.call(api, v, &req);
            let g = &r.groups[0];
            assert_eq!(g.error_code, 0, "{ctx}");
            assert_eq!(g.group_state.as_str(), "Stable", "{ctx}");
            assert_eq!((g.group_epoch, g.assignment_epoch), (1, 1), "{ctx}");
            assert_eq!(g.members.len(), 1, "{ctx}");
            assert_eq!(g.members[0].member_id.as_str(), "m-1", "{ctx}");
            assert_eq!(
                g.members[0].assignment.topic_partitions[0]
                    .topic_name
                    .as_str(),
                "v",
                "{ctx}"
            );
            assert_eq!(r.groups[1].error_code, 69, "{ctx}: GROUP_ID_NOT_FOUND");
        }
        ApiKey::InitProducerId => {
            let mut req = InitProducerIdRequest::default();
            // Null, as clients send it (an empty id is INVALID_REQUEST, as in Kafka).
            req.transactional_id = None;
            req.transaction_timeout_ms = 60_000;
            req.producer_id = ProducerId(-1);
            req.producer_epoch = -1;
            let r: InitProducerIdResponse = raw.call(api, v, &req);
            assert_eq!((r.error_code, r.producer_epoch), (0, 0), "{ctx}");
            assert!(r.producer_id.0 >= 0, "{ctx}");
        }
        ApiKey::DescribeProducers => {
            let req = DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(name("v"))
                    .with_partition_indexes(vec![0]),
            ]);
            let r: DescribeProducersResponse = raw.call(api, v, &req);
            assert_eq!(r.topics[0].partitions[0].error_code, 0, "{ctx}");
        }
        ApiKey::AddPartitionsToTxn => {
            let (pid, epoch) = txn_init(raw, &format!("apt-v{v}"));
            let mut t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
            t.name = name("v");
            t.partitions = vec![0];
            let mut req = AddPartitionsToTxnRequest::default();
            if v <= 3 {
                req.v3_and_below_transactional_id = TransactionalId(format!("apt-v{v}").into());
                req.v3_and_below_producer_id = ProducerId(pid);
                req.v3_and_below_producer_epoch = epoch;
                req.v3_and_below_topics = vec![t];
                let r: AddPartitionsToTxnResponse = raw.call(api, v, &req);
                let p = &r.results_by_topic_v3_and_below[0].results_by_partition[0];
                assert_eq!(p.partition_error_code, 0, "{ctx}");
            } else {
                let mut tx =
                    add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default();
                tx.transactional_id = TransactionalId(format!("apt-v{v}").into());
                tx.producer_id = ProducerId(pid);
                tx.producer_epoch = epoch;
                tx.verify_only = false;
                tx.topics = vec![t];
                req.transactions = vec![tx];
                let r: AddPartitionsToTxnResponse = raw.call(api, v, &req);
                let p = &r.results_by_transaction[0].topic_results[0].results_by_partition[0];
                assert_eq!(p.partition_error_code, 0, "{ctx}");
            }
        }
        ApiKey::AddOffsetsToTxn => {
            let id = format!("aot-v{v}");
            let (pid, epoch) = txn_init(raw, &id);
            let mut req = AddOffsetsToTxnRequest::default();
            req.transactional_id = TransactionalId(id.into());
            req.producer_id = ProducerId(pid);
            req.producer_epoch = epoch;
            req.group_id = GroupId("g".into());
            let r: AddOffsetsToTxnResponse = raw.call(api, v, &req);
            assert_eq!(r.error_code, 0, "{ctx}");
        }
        ApiKey::EndTxn => {
            let id = format!("end-v{v}");
            let (pid, epoch) = txn_init(raw, &id);
            let mut req = AddOffsetsToTxnRequest::default();
            req.transactional_id = TransactionalId(id.clone().into());
            req.producer_id = ProducerId(pid);
            req.producer_epoch = epoch;
            req.group_id = GroupId("g".into());
            let r: AddOffsetsToTxnResponse = raw.call(ApiKey::AddOffsetsToTxn, 3, &req);
            assert_eq!(r.error_code, 0, "{ctx}");
            let mut req = EndTxnRequest::default();
            req.transactional_id = TransactionalId(id.into());
            req.producer_id = ProducerId(pid);
            req.producer_epoch = epoch;
            req.committed = false;
            let r: EndTxnResponse = raw.call(api, v, &req);
            assert_eq!(r.error_code, 0, "{ctx}");
            if v >= 5 {
                // Transactions V2: every end bumps the epoch.
                assert_eq!(
                    (r.producer_id.0, r.producer_epoch),
                    (pid, epoch + 1),
                    "{ctx}"
                );
            }
        }
        ApiKey::DescribeTransactions => {
            let (pid, epoch) = txn_init(raw, "dt-v0");
            let req = DescribeTransactionsRequest::default().with_transactional_ids(
                ["dt-v0", "dt-nobody", ""]
                    .iter()
                    .map(|x| TransactionalId(StrBytes::from_static_str(x)))
                    .collect(),
            );
            let r: DescribeTransactionsResponse = raw.call(api, v, &req);
            let t = &r.transaction_states;
            assert_eq!(t.len(), 3, "{ctx}");
            assert_eq!(t[0].error_code, 0, "{ctx}");
            assert_eq!(t[0].transaction_state.as_str(), "Empty", "{ctx}");
            assert_eq!(
                (t[0].producer_id.0, t[0].producer_epoch),
                (pid, epoch),
                "{ctx}"
            );
            assert_eq!(t[0].transaction_timeout_ms, 60_000, "{ctx}");
            assert_eq!(t[0].transaction_start_time_ms, -1, "{ctx}");
            assert_eq!(t[1].error_code, 105, "{ctx}: TRANSACTIONAL_ID_NOT_FOUND");
            assert_eq!(t[2].error_code, 42, "{ctx}: INVALID_REQUEST");
        }
        ApiKey::ListTransactions => {
            let id = format!("lt-v{v}");
            let (pid, _) = txn_init(raw, &id);
            let mut req = ListTransactionsRequest::default()
                .with_state_filters(vec![
                    StrBytes::from_static_str("Empty"),
                    StrBytes::from_static_str("Bogus"),
                ])
                .with_producer_id_filters(vec![ProducerId(pid)]);
            if v >= 1 {
                // An id with no transaction has start time -1, which passes any duration filter in Kafka.
                req.duration_filter = 0;
            }
            if v >= 2 {
                req.transactional_id_pattern = Some(StrBytes::from_string(id.clone()));
            }
            let r: ListTransactionsResponse = raw.call(api, v, &req);
            assert_eq!(r.error_code, 0, "{ctx}");
            assert_eq!(
                r.unknown_state_filters,
                [StrBytes::from_static_str("Bogus")],
                "{ctx}"
            );
            assert_eq!(r.transaction_states.len(), 1, "{ctx}");
            let t = &r.transaction_states[0];
            assert_eq!(t.transactional_id.as_str(), id, "{ctx}");
            assert_eq!(t.producer_id.0, pid, "{ctx}");
            assert_eq!(t.transaction_state.as_str(), "Empty", "{ctx}");
        }
        ApiKey::TxnOffsetCommit => {
            let part = |p: i32| {
                txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(1)
                    .with_committed_metadata(Some(StrBytes::from_static_str("m")))
            };
            let topic = |t: &str| {
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(name(t))
                    .with_partitions(vec![part(0)])
            };
            let mut req = TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("no-txn")))
                .with_group_id(GroupId(StrBytes::from_static_str("")))
                .with_producer_id(ProducerId(123_456))
                .with_producer_epoch(0)
                .with_topics(vec![topic("v"), topic("no-such-topic")]);
            if v >= 3 {
                req.generation_id = -1;
            }
            let r: TxnOffsetCommitResponse = raw.call(api, v, &req);
            let codes: Vec<i16> = r
                .topics
                .iter()
                .map(|t| t.partitions[0].error_code)
                .collect();
            assert_eq!(
                codes,
                vec![24, 3],
                "{ctx}: INVALID_GROUP_ID, UNKNOWN_TOPIC_OR_PARTITION"
            );
            // A producer the transaction coordinator does not know is refused, whatever the group.
            req.group_id = GroupId(StrBytes::from_static_str("txn-g"));
            let r: TxnOffsetCommitResponse = raw.call(api, v, &req);
            assert_ne!(r.topics[0].partitions[0].error_code, 0, "{ctx}");
        }
        other => panic!("{other:?} is in the table but not covered here"),
    }
}

/// InitProducerId for a transactional id, retried while `__transaction_state` is created and loaded.
pub(crate) fn txn_init(raw: &mut Raw, id: &str) -> (i64, i16) {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = Some(TransactionalId(id.to_string().into()));
    req.transaction_timeout_ms = 60_000;
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    for _ in 0..200 {
        let r: InitProducerIdResponse = raw.call(ApiKey::InitProducerId, 4, &req);
        // COORDINATOR_LOAD_IN_PROGRESS / _NOT_AVAILABLE / NOT_COORDINATOR while the topic is created and loaded.
        if matches!(r.error_code, 14..=16) {
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        assert_eq!(r.error_code, 0, "InitProducerId {id}");
        return (r.producer_id.0, r.producer_epoch);
    }
    panic!("the transaction coordinator never became available");
}

fn join(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_session_timeout_ms(60_000)
        .with_rebalance_timeout_ms(60_000)
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(Bytes::from_static(b"m"))])
}

/// Waits until the group's coordinator shard answers (created and loaded in the background after start).
fn group_ready(raw: &mut Raw, group: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r: OffsetFetchResponse = raw.call(
            ApiKey::OffsetFetch,
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string()))),
        );
        if r.error_code == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{group}: {}",
            r.error_code
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Joins a new group (JoinGroup v9, member id required first); returns (member id, generation).
fn joined(raw: &mut Raw, group: &str) -> (String, i32) {
    group_ready(raw, group);
    let r: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 9, &join(group, ""));
    let id = r.member_id.to_string();
    let r: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 9, &join(group, &id));
    assert_eq!(r.error_code, 0);
    (id, r.generation_id)
}

/// Commits offset 1 of v-0 for a group with generation -1 (a group without members).
fn commit(raw: &mut Raw, group: &str) {
    group_ready(raw, group);
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("v"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1),
                ]),
        ]);
    let r: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 9, &req);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
}
