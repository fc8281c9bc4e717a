//! The brokers `vltava group` and `vltava txn` talk to: the bootstrap broker for metadata, each group's or
//! transactional id's coordinator (found with FindCoordinator, as the Admin client does) and each partition's
//! leader for log offsets (ListOffsets). Connections are opened on first use and kept for the command's lifetime.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::*;

use super::super::client::{Client, ClientError};
use super::super::topic::{check, s};

/// ListOffsets timestamps with a special meaning.
pub const LATEST: i64 = -1;
/// The log start offset.
pub const EARLIEST: i64 = -2;

/// How often a coordinator still loading its partition is asked again, and how long to wait in between.
const COORDINATOR_RETRIES: u32 = 20;
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(250);

/// Connections to a cluster.
pub struct Cluster {
    bootstrap: Client,
    /// node id → "host:port", from Metadata.
    brokers: BTreeMap<i32, String>,
    clients: HashMap<String, Client>,
    /// The bootstrap broker's ApiVersions: api key → max version (asked once, when first needed).
    versions: Option<HashMap<i16, i16>>,
}

impl Cluster {
    /// Connects to the bootstrap broker and learns the brokers.
    pub fn connect(addr: &str) -> Result<Cluster, ClientError> {
        let mut bootstrap = Client::connect(addr)?;
        let mut req = MetadataRequest::default();
        req.topics = Some(Vec::new());
        let resp: MetadataResponse = bootstrap.call(ApiKey::Metadata, 12, &req)?;
        let brokers = resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", &*b.host, b.port)))
            .collect();
        Ok(Cluster {
            bootstrap,
            brokers,
            clients: HashMap::new(),
            versions: None,
        })
    }

    /// Whether the cluster speaks `api` (ApiVersions of the bootstrap broker, asked once).
    pub fn supports(&mut self, api: ApiKey) -> Result<bool, ClientError> {
        if self.versions.is_none() {
            let resp: ApiVersionsResponse =
                self.bootstrap
                    .call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
            check(resp.error_code, None, "ApiVersions")?;
            self.versions = Some(
                resp.api_keys
                    .iter()
                    .map(|k| (k.api_key, k.max_version))
                    .collect(),
            );
        }
        Ok(self
            .versions
            .as_ref()
            .is_some_and(|v| v.contains_key(&(api as i16))))
    }

    /// Every broker's address.
    pub fn broker_addrs(&self) -> Vec<String> {
        self.brokers.values().cloned().collect()
    }

    /// A connection to `addr`, opened once.
    pub fn client(&mut self, addr: &str) -> Result<&mut Client, ClientError> {
        if !self.clients.contains_key(addr) {
            let c = Client::connect(addr)?;
            self.clients.insert(addr.to_string(), c);
        }
        self.clients
            .get_mut(addr)
            .ok_or_else(|| ClientError::Protocol(format!("no connection to {addr}")))
    }

    /// Every broker: node id and address.
    pub fn broker_nodes(&self) -> Vec<(i32, String)> {
        self.brokers
            .iter()
            .map(|(id, a)| (*id, a.clone()))
            .collect()
    }

    /// FindCoordinator v4 for `key` of `key_type` (0: group, 1: transactional id), retried while the
    /// coordinator is not available or loads: its node id and address.
    pub fn find_coordinator(
        &mut self,
        key_type: i8,
        key: &str,
    ) -> Result<(i32, String), ClientError> {
        let kind = if key_type == 1 {
            "transactional id"
        } else {
            "group"
        };
        let mut attempt = 0;
        loop {
            let mut req = FindCoordinatorRequest::default();
            req.key_type = key_type;
            req.coordinator_keys = vec![s(key)];
            let resp: FindCoordinatorResponse =
                self.bootstrap.call(ApiKey::FindCoordinator, 4, &req)?;
            let c = resp
                .coordinators
                .first()
                .ok_or_else(|| ClientError::Protocol("FindCoordinator: no answer".into()))?;
            let retriable = c.error_code == E::CoordinatorNotAvailable.code()
                || c.error_code == E::CoordinatorLoadInProgress.code();
            if retriable && attempt < COORDINATOR_RETRIES {
                attempt += 1;
                std::thread::sleep(COORDINATOR_BACKOFF);
                continue;
            }
            check(
                c.error_code,
                c.error_message.as_ref(),
                &format!("find coordinator of {kind} {key}"),
            )?;
            return Ok((c.node_id.0, format!("{}:{}", &*c.host, c.port)));
        }
    }

    /// Calls the group's coordinator, asking again (after a new FindCoordinator) while it answers
    /// COORDINATOR_LOAD_IN_PROGRESS / NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE, as the Admin client does.
    pub fn call_coordinator<Req, Resp>(
        &mut self,
        group: &str,
        api: ApiKey,
        version: i16,
        req: &Req,
        error_of: impl Fn(&Resp) -> i16,
    ) -> Result<Resp, ClientError>
    where
        Req: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
        Resp: kafka_protocol::protocol::Decodable + kafka_protocol::protocol::HeaderVersion,
    {
        self.call_coordinator_of(0, group, api, version, req, error_of)
            .map(|(_, resp)| resp)
    }

    /// [`Self::call_coordinator`] for a key of any type (0: group, 1: transactional id); also returns the
    /// coordinator's node id.
    pub fn call_coordinator_of<Req, Resp>(
        &mut self,
        key_type: i8,
        key: &str,
        api: ApiKey,
        version: i16,
        req: &Req,
        error_of: impl Fn(&Resp) -> i16,
    ) -> Result<(i32, Resp), ClientError>
    where
        Req: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
        Resp: kafka_protocol::protocol::Decodable + kafka_protocol::protocol::HeaderVersion,
    {
        let mut attempt = 0;
        loop {
            let (node, addr) = self.find_coordinator(key_type, key)?;
            let resp: Resp = self.client(&addr)?.call(api, version, req)?;
            let e = error_of(&resp);
            let retriable = e == E::CoordinatorLoadInProgress.code()
                || e == E::NotCoordinator.code()
                || e == E::CoordinatorNotAvailable.code();
            if !retriable || attempt >= COORDINATOR_RETRIES {
                return Ok((node, resp));
            }
            attempt += 1;
            std::thread::sleep(COORDINATOR_BACKOFF);
        }
    }

    /// Partitions and leaders of `topics` (all topics when `None`): topic → partition → leader id.
    pub fn partitions(
        &mut self,
        topics: Option<&[String]>,
    ) -> Result<BTreeMap<String, BTreeMap<i32, i32>>, ClientError> {
        let mut req = MetadataRequest::default();
        req.allow_auto_topic_creation = false;
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    let mut mt = metadata_request::MetadataRequestTopic::default();
                    mt.name = Some(TopicName(s(t)));
                    mt
                })
                .collect()
        });
        let resp: MetadataResponse = self.bootstrap.call(ApiKey::Metadata, 12, &req)?;
        for b in &resp.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", &*b.host, b.port));
        }
        let mut out = BTreeMap::new();
        for t in resp.topics {
            let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code == E::UnknownTopicOrPartition.code() {
                continue; // the caller reports topics it asked for and did not get
            }
            check(t.error_code, None, &format!("metadata of topic {name}"))?;
            let parts = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            out.insert(name, parts);
        }
        Ok(out)
    }

    /// ListOffsets for `wanted` (topic, partition) at `timestamp` (LATEST, EARLIEST or a time in ms), asked
    /// of each partition's leader. A partition whose answer is an error is left out.
    pub fn list_offsets(
        &mut self,
        wanted: &[(String, i32)],
        timestamp: i64,
    ) -> Result<HashMap<(String, i32), i64>, ClientError> {
        let mut topics: Vec<String> = wanted.iter().map(|(t, _)| t.clone()).collect();
        topics.sort();
        topics.dedup();
        let layout = self.partitions(Some(&topics))?;
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        for (t, p) in wanted {
            if let Some(leader) = layout.get(t).and_then(|ps| ps.get(p)) {
                by_leader
                    .entry(*leader)
                    .or_default()
                    .entry(t.clone())
                    .or_default()
                    .push(*p);
            }
        }
        let mut out = HashMap::new();
        for (leader, topics) in by_leader {
            let Some(addr) = self.brokers.get(&leader).cloned() else {
                continue; // no leader (offline partition): no offsets to show
            };
            let mut req = ListOffsetsRequest::default();
            req.replica_id = BrokerId(-1);
            req.isolation_level = 0;
            req.timeout_ms = 30_000;
            for (t, ps) in topics {
                let mut lt = list_offsets_request::ListOffsetsTopic::default();
                lt.name = TopicName(s(&t));
                for p in ps {
                    let mut lp = list_offsets_request::ListOffsetsPartition::default();
                    lp.partition_index = p;
                    lp.current_leader_epoch = -1;
                    lp.timestamp = timestamp;
                    lt.partitions.push(lp);
                }
                req.topics.push(lt);
            }
            let resp: ListOffsetsResponse =
                self.client(&addr)?.call(ApiKey::ListOffsets, 7, &req)?;
            for t in resp.topics {
                for p in t.partitions {
                    if p.error_code == 0 {
                        out.insert((t.name.to_string(), p.partition_index), p.offset);
                    }
                }
            }
        }
        Ok(out)
    }
}
