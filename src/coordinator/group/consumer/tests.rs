//! Unit tests of consumer groups: the heartbeat state machine through the shard, every record encoded,
//! decoded and replayed as the runtime does, with injected time.
#![allow(clippy::cast_possible_truncation)] // test data is small

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError as E;
use uuid::Uuid;

use super::heartbeat::{HeartbeatRequest, HeartbeatResponse, TopicMeta, TopicsView};
use super::{ConsumerGroupState, ConsumerLimits, MemberState};
use crate::coordinator::group::assignor::Assignor;
use crate::coordinator::group::classic::GroupLimits;
use crate::coordinator::group::records::{GroupRecord, TopicAssignment};
use crate::coordinator::group::GroupShard;

const SESSION: i64 = 45_000;

struct H {
    shard: GroupShard,
    now: i64,
    topics: TopicsView,
    log: Vec<GroupRecord>,
}

fn limits() -> GroupLimits {
    GroupLimits {
        initial_rebalance_delay_ms: 0,
        max_size: 100,
    }
}

fn consumer_limits(max_size: usize) -> ConsumerLimits {
    ConsumerLimits {
        session_timeout_ms: SESSION as i32,
        heartbeat_interval_ms: 5000,
        max_size,
        assignors: vec![Assignor::Uniform, Assignor::Range],
    }
}

fn tid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

impl H {
    fn new() -> H {
        H::with_max(usize::MAX)
    }

    fn with_max(max: usize) -> H {
        let mut h = H {
            shard: GroupShard::with_consumer_limits(limits(), consumer_limits(max)),
            now: 1_000_000,
            topics: TopicsView::new(),
            log: Vec::new(),
        };
        h.topic("t", 1, 4);
        h
    }

    fn topic(&mut self, name: &str, id: u128, partitions: i32) {
        self.topics.insert(
            name.into(),
            TopicMeta {
                id: tid(id),
                partitions,
                internal: name.starts_with("__"),
            },
        );
    }

    fn apply(&mut self, records: Vec<GroupRecord>) {
        for r in records {
            // Through the bytes, as written to and loaded from __consumer_offsets.
            let (k, v) = r.encode();
            let back = GroupRecord::decode(&k, v.as_deref())
                .unwrap()
                .expect("a record we own");
            assert_eq!(back, r);
            self.shard.replay(&back, self.now);
            self.log.push(back);
        }
        self.check_single_owner();
    }

    fn hb(&mut self, req: HeartbeatRequest) -> HeartbeatResponse {
        let (resp, records) = self
            .shard
            .consumer_heartbeat("g", &req, &self.topics, self.now);
        if resp.error != 0 {
            assert!(records.is_empty(), "an error writes nothing");
        }
        self.apply(records);
        resp
    }

    fn tick(&mut self, ms: i64) {
        self.now += ms;
        let records = self.shard.tick(self.now);
        self.apply(records);
    }

    /// No partition is ever owned (assigned or pending revocation) by two members.
    fn check_single_owner(&self) {
        let Some(g) = self.shard.consumer_group("g") else {
            return;
        };
        let mut seen = BTreeSet::new();
        for m in g.members.values() {
            for a in [&m.assigned, &m.pending_revocation] {
                for (t, ps) in a {
                    for p in ps {
                        assert!(seen.insert((*t, *p)), "{t}-{p} owned twice");
                    }
                }
            }
        }
    }

    /// `rounds` times: 5 s pass, then `member` heartbeats with the epoch it was last given. Its final epoch.
    fn keep_alive(&mut self, member: &str, mut epoch: i32, rounds: usize) -> i32 {
        for _ in 0..rounds {
            self.tick(5_000);
            let r = self.hb(beat(member, epoch));
            assert_eq!(r.error, 0, "{:?}", r.message);
            epoch = r.member_epoch;
        }
        epoch
    }

    fn state(&self) -> ConsumerGroupState {
        self.shard.consumer_group("g").unwrap().state()
    }

    fn epoch(&self) -> i32 {
        self.shard.consumer_group("g").unwrap().epoch
    }
}

fn join(member: &str, topics: &[&str]) -> HeartbeatRequest {
    HeartbeatRequest {
        version: 1,
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        owned: Some(TopicAssignment::new()),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..Default::default()
    }
}

fn beat(member: &str, epoch: i32) -> HeartbeatRequest {
    HeartbeatRequest {
        version: 1,
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..Default::default()
    }
}

fn owning(mut req: HeartbeatRequest, a: &TopicAssignment) -> HeartbeatRequest {
    req.owned = Some(a.clone());
    req
}

fn parts(a: &TopicAssignment) -> Vec<i32> {
    a.values().flatten().copied().collect()
}

fn t1(ps: &[i32]) -> TopicAssignment {
    [(tid(1), ps.iter().copied().collect())].into()
}

#[test]
fn first_join_creates_the_group_and_assigns_everything() {
    let mut h = H::new();
    let r = h.hb(join("a", &["t"]));
    assert_eq!(r.error, 0);
    assert_eq!((r.member_id.as_deref(), r.member_epoch), (Some("a"), 1));
    assert_eq!(r.heartbeat_interval_ms, 5000);
    assert_eq!(parts(r.assignment.as_ref().unwrap()), vec![0, 1, 2, 3]);
    assert_eq!(h.state(), ConsumerGroupState::Stable);
    // A plain heartbeat changes nothing, writes nothing, sends no assignment.
    let before = h.log.len();
    let r = h.hb(beat("a", 1));
    assert_eq!((r.error, r.member_epoch, r.assignment), (0, 1, None));
    assert_eq!(h.log.len(), before);
}

/// v0 lets the coordinator pick the member id.
#[test]
fn v0_join_without_member_id_gets_one() {
    let mut h = H::new();
    let mut req = join("", &["t"]);
    req.version = 0;
    let r = h.hb(req);
    assert_eq!(r.error, 0);
    assert!(!r.member_id.unwrap().is_empty());
}

/// A partition moves to a new owner only after its previous owner confirmed it gave the partition up.
#[test]
fn revocation_before_reassignment() {
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    let b = h.hb(join("b", &["t"]));
    assert_eq!(
        (b.member_epoch, parts(b.assignment.as_ref().unwrap())),
        (2, vec![])
    );
    assert_eq!(
        h.shard.consumer_group("g").unwrap().members["b"].state,
        MemberState::UnreleasedPartitions
    );
    // A learns it keeps half; it stays at epoch 1 with the rest pending revocation.
    let a = h.hb(beat("a", 1));
    assert_eq!(a.member_epoch, 1);
    let kept = a.assignment.clone().unwrap();
    assert_eq!(parts(&kept).len(), 2);
    let ga = &h.shard.consumer_group("g").unwrap().members["a"];
    assert_eq!(ga.state, MemberState::UnrevokedPartitions);
    assert_eq!(parts(&ga.pending_revocation).len(), 2);
    assert_eq!(h.state(), ConsumerGroupState::Reconciling);
    // Still owning everything (it says so): nothing changes for A or B.
    let a = h.hb(owning(beat("a", 1), &t1(&[0, 1, 2, 3])));
    assert_eq!((a.member_epoch, a.assignment), (1, None));
    assert_eq!(h.hb(beat("b", 2)).assignment, None);
    // A confirms: epoch 2; then B gets the released partitions.
    let a = h.hb(owning(beat("a", 1), &kept));
    assert_eq!(a.member_epoch, 2);
    let b = h.hb(beat("b", 2));
    let given = b.assignment.unwrap();
    assert_eq!(parts(&given).len(), 2);
    assert!(parts(&given).iter().all(|p| !parts(&kept).contains(p)));
    assert_eq!(h.state(), ConsumerGroupState::Stable);
}

#[test]
fn epochs_are_fenced_as_kafka_does() {
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    h.hb(join("b", &["t"]));
    let kept = h.hb(beat("a", 1)).assignment.unwrap();
    h.hb(owning(beat("a", 1), &kept)); // a at epoch 2, previous 1
    assert_eq!(h.hb(beat("a", 3)).error, E::FencedMemberEpoch.code());
    assert_eq!(
        h.hb(beat("a", 0)).error,
        E::InvalidRequest.code(),
        "a join needs a subscription"
    );
    // The previous epoch is accepted when the owned partitions are a subset (a lost response)...
    let r = h.hb(owning(beat("a", 1), &kept));
    assert_eq!((r.error, r.member_epoch), (0, 2));
    // ...not without them, nor older ones.
    assert_eq!(h.hb(beat("a", 1)).error, E::FencedMemberEpoch.code());
    assert_eq!(h.hb(beat("zz", 2)).error, E::UnknownMemberId.code());
    // A heartbeat (or leave) other than a join, to a group that does not exist: GROUP_ID_NOT_FOUND, as Kafka.
    let mut other = H::new();
    assert_eq!(other.hb(beat("a", 5)).error, E::GroupIdNotFound.code());
    assert_eq!(other.hb(beat("a", -1)).error, E::GroupIdNotFound.code());
}

#[test]
fn request_validation() {
    let mut h = H::new();
    let code = |h: &mut H, r: HeartbeatRequest| h.hb(r).error;
    assert_eq!(code(&mut h, join("", &["t"])), E::InvalidRequest.code());
    let mut r = join("a", &["t"]);
    r.rebalance_timeout_ms = -1;
    assert_eq!(code(&mut h, r), E::InvalidRequest.code());
    let r = owning(join("a", &["t"]), &t1(&[0]));
    assert_eq!(code(&mut h, r), E::InvalidRequest.code());
    let mut r = join("a", &[]);
    r.subscribed_topic_names = None;
    assert_eq!(code(&mut h, r), E::InvalidRequest.code());
    let mut r = join("a", &["t"]);
    r.instance_id = Some(String::new());
    assert_eq!(code(&mut h, r), E::InvalidRequest.code());
    assert_eq!(code(&mut h, beat("a", -2)), E::InvalidRequest.code());
    assert_eq!(code(&mut h, beat("a", -3)), E::InvalidRequest.code());
    let mut r = join("a", &["t"]);
    r.server_assignor = Some("cooperative-sticky".into());
    assert_eq!(code(&mut h, r), E::UnsupportedAssignor.code());
    let mut r = join("a", &[]);
    r.subscribed_topic_regex = Some("(unclosed".into());
    assert_eq!(code(&mut h, r), E::InvalidRegularExpression.code());
    assert!(
        h.shard.consumer_group("g").is_none(),
        "refused joins create nothing"
    );
}

#[test]
fn session_timeout_fences_and_the_partitions_move() {
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    h.hb(join("b", &["t"]));
    let kept = h.hb(beat("a", 1)).assignment.unwrap();
    h.hb(owning(beat("a", 1), &kept));
    h.hb(beat("b", 2));
    assert_eq!(h.state(), ConsumerGroupState::Stable);
    // Only a heartbeats; b's session runs out.
    let ea = h.keep_alive("a", 2, 10);
    let g = h.shard.consumer_group("g").unwrap();
    assert!(!g.members.contains_key("b"), "b fenced");
    assert_eq!(h.epoch(), 3);
    assert_eq!(ea, 3);
    assert_eq!(parts(&g.members["a"].assigned), vec![0, 1, 2, 3]);
    // The fenced member is told so.
    assert_eq!(h.hb(beat("b", 2)).error, E::UnknownMemberId.code());
    // All gone: the group is Empty, not deleted.
    h.tick(SESSION + 1);
    assert_eq!(h.state(), ConsumerGroupState::Empty);
}

#[test]
fn a_member_that_does_not_revoke_within_its_rebalance_timeout_is_fenced() {
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    h.hb(join("b", &["t"]));
    h.hb(beat("a", 1)); // a must revoke two partitions within 30 s
    h.tick(20_000);
    h.hb(owning(beat("a", 1), &t1(&[0, 1, 2, 3]))); // still holding them
    h.hb(beat("b", 2));
    h.tick(11_000);
    assert!(!h
        .shard
        .consumer_group("g")
        .unwrap()
        .members
        .contains_key("a"));
    let r = h.hb(beat("b", 2));
    assert_eq!(parts(r.assignment.as_ref().unwrap()), vec![0, 1, 2, 3]);
}

#[test]
fn leave_rebalances_at_once() {
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    h.hb(join("b", &["t"]));
    let r = h.hb(beat("b", -1));
    assert_eq!((r.error, r.member_epoch), (0, -1));
    assert_eq!(h.epoch(), 3);
    assert_eq!(h.hb(beat("b", -1)).error, E::UnknownMemberId.code());
    // a never gave anything up: it moves straight to epoch 3 with all four (no new assignment to send).
    let r = h.hb(beat("a", 1));
    assert_eq!((r.member_epoch, r.assignment), (3, None));
    let a = &h.shard.consumer_group("g").unwrap().members["a"];
    assert_eq!(parts(&a.assigned), vec![0, 1, 2, 3]);
}

fn static_join(member: &str, instance: &str) -> HeartbeatRequest {
    let mut r = join(member, &["t"]);
    r.instance_id = Some(instance.into());
    r
}

#[test]
fn static_member_keeps_its_assignment_across_a_restart() {
    let mut h = H::new();
    h.hb(static_join("a1", "inst-a"));
    h.hb(join("b", &["t"]));
    let kept = h.hb(beat("a1", 1)).assignment.unwrap();
    h.hb(owning(beat("a1", 1), &kept));
    h.hb(beat("b", 2));
    let epoch = h.epoch();
    // Another process with the same instance id while a1 is active: refused.
    assert_eq!(
        h.hb(static_join("a2", "inst-a")).error,
        E::UnreleasedInstanceId.code()
    );
    // Static leave (-2): the member stays with its partitions.
    let mut leave = beat("a1", -2);
    leave.instance_id = Some("inst-a".into());
    assert_eq!(h.hb(leave).member_epoch, -2);
    assert_eq!(h.epoch(), epoch, "no rebalance");
    let b = h.hb(beat("b", 2));
    assert_eq!(b.assignment, None, "b does not get a1's partitions");
    // The restarted process (new member id, same instance id) gets them back, at the same epoch.
    let r = h.hb(static_join("a2", "inst-a"));
    assert_eq!(r.error, 0);
    assert_eq!(r.member_epoch, 2);
    assert_eq!(r.assignment.unwrap(), kept);
    assert_eq!(h.epoch(), epoch, "no rebalance");
    let g = h.shard.consumer_group("g").unwrap();
    assert!(!g.members.contains_key("a1"));
    assert_eq!(g.target["a2"], kept);
    // A static member that left and does not come back is removed at its session timeout.
    let mut leave = beat("a2", -2);
    leave.instance_id = Some("inst-a".into());
    h.hb(leave);
    h.keep_alive("b", 2, 10);
    let g = h.shard.consumer_group("g").unwrap();
    assert!(!g.members.contains_key("a2"));
    assert_eq!(parts(&g.members["b"].assigned), vec![0, 1, 2, 3]);
}

#[test]
fn group_max_size() {
    let mut h = H::with_max(2);
    h.hb(join("a", &["t"]));
    h.hb(join("b", &["t"]));
    assert_eq!(h.hb(join("c", &["t"])).error, E::GroupMaxSizeReached.code());
    // Members already in keep heartbeating.
    assert_eq!(h.hb(beat("b", 2)).error, 0);
}

#[test]
fn metadata_changes_move_the_group_epoch() {
    let mut h = H::new();
    h.hb(join("a", &["t", "later"]));
    assert_eq!(h.epoch(), 1);
    h.topic("t", 1, 6); // partitions added
    let r = h.hb(beat("a", 1));
    assert_eq!(h.epoch(), 2);
    assert_eq!(
        parts(r.assignment.as_ref().unwrap()),
        vec![0, 1, 2, 3, 4, 5]
    );
    h.topic("later", 2, 2); // a subscribed topic is created
    let r = h.hb(beat("a", 2));
    assert_eq!(h.epoch(), 3);
    assert_eq!(r.assignment.unwrap()[&tid(2)], [0, 1].into());
    // An unrelated topic changes nothing.
    h.topic("other", 3, 3);
    h.hb(beat("a", 3));
    assert_eq!(h.epoch(), 3);
}

#[test]
fn regex_subscriptions() {
    let mut h = H::new();
    h.topic("orders-eu", 2, 1);
    h.topic("orders-us", 3, 1);
    h.topic("__orders-internal", 4, 1);
    let mut r = join("a", &[]);
    r.subscribed_topic_names = None;
    r.subscribed_topic_regex = Some("orders-.*".into());
    let resp = h.hb(r);
    let got: BTreeSet<Uuid> = resp.assignment.unwrap().keys().copied().collect();
    assert_eq!(
        got,
        [tid(2), tid(3)].into(),
        "full match only, no internal topics"
    );
    // A new matching topic is picked up by the next heartbeat.
    h.topic("orders-jp", 5, 2);
    let resp = h.hb(beat("a", 1));
    assert_eq!(resp.member_epoch, 2);
    assert!(resp.assignment.unwrap().contains_key(&tid(5)));
}

#[test]
fn range_assignor_when_members_ask_for_it() {
    let mut h = H::new();
    h.topic("u", 2, 4);
    let mut r = join("a", &["t", "u"]);
    r.server_assignor = Some("range".into());
    h.hb(r);
    let mut r = join("b", &["t", "u"]);
    r.server_assignor = Some("range".into());
    h.hb(r);
    let g = h.shard.consumer_group("g").unwrap();
    assert_eq!(g.assignor(&consumer_limits(9)), Assignor::Range);
    // Co-partitioned: the same partition numbers of both topics.
    for m in ["a", "b"] {
        let t = &g.target[m];
        assert_eq!(t[&tid(1)], t[&tid(2)]);
        assert_eq!(t[&tid(1)].len(), 2);
    }
}

/// The group rebuilt from its records (a restart's load) equals the group the operations built.
#[test]
fn replay_equals_runtime() {
    let mut h = H::new();
    h.topic("u", 2, 3);
    h.hb(static_join("a", "inst"));
    h.hb(join("b", &["t", "u"]));
    h.hb(join("c", &["u"]));
    let kept = h.hb(beat("a", 1)).assignment.unwrap();
    h.hb(owning(beat("a", 1), &kept));
    h.hb(beat("b", 3));
    h.hb(beat("c", 3));
    h.hb(beat("c", -1));
    h.hb(beat("b", 3));
    let mut loaded = GroupShard::with_consumer_limits(limits(), consumer_limits(usize::MAX));
    for r in &h.log {
        loaded.replay(r, h.now);
    }
    let (x, y) = (
        h.shard.consumer_group("g").unwrap(),
        loaded.consumer_group("g").unwrap(),
    );
    assert_eq!(
        (x.epoch, x.assignment_epoch, x.metadata_hash, &x.target),
        (y.epoch, y.assignment_epoch, y.metadata_hash, &y.target)
    );
    let view = |g: &super::ConsumerGroup| -> BTreeMap<String, _> {
        g.members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    (
                        m.meta.clone(),
                        m.epoch,
                        m.previous_epoch,
                        m.state,
                        m.assigned.clone(),
                        m.pending_revocation.clone(),
                    ),
                )
            })
            .collect()
    };
    assert_eq!(view(x), view(y));
    assert_eq!(x.members.len(), 2);
}

#[test]
fn shared_namespace_with_classic_groups_and_offsets() {
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    // OffsetCommit from a member checks its epoch; an admin commit needs an empty group.
    let item = crate::coordinator::group::CommitItem {
        topic: "t".into(),
        partition: 0,
        offset: 5,
        leader_epoch: -1,
        metadata: String::new(),
        retention_ms: None,
    };
    let items = std::slice::from_ref(&item);
    assert!(h.shard.commit("g", "a", None, 1, items, 9, h.now).is_ok());
    assert_eq!(
        h.shard
            .commit("g", "a", None, 0, items, 9, h.now)
            .unwrap_err(),
        E::StaleMemberEpoch.code()
    );
    assert_eq!(
        h.shard
            .commit("g", "x", None, 1, items, 9, h.now)
            .unwrap_err(),
        E::UnknownMemberId.code()
    );
    assert_eq!(
        h.shard
            .commit("g", "", None, -1, items, 9, h.now)
            .unwrap_err(),
        E::UnknownMemberId.code()
    );
    assert_eq!(
        h.shard
            .commit("g", "a", None, 1, items, 8, h.now)
            .unwrap_err(),
        E::UnsupportedVersion.code(),
        "consumer protocol members commit with v9+"
    );
    // DeleteGroups refuses it while a is in; after a leaves, it and its offsets go.
    assert_eq!(
        h.shard.delete_group("g").unwrap_err(),
        E::NonEmptyGroup.code()
    );
    h.hb(beat("a", -1));
    assert!(h.shard.commit("g", "", None, -1, items, 9, h.now).is_ok());
    let records = h.shard.delete_group("g").unwrap();
    h.apply(records);
    assert!(h.shard.consumer_group("g").is_none());
    assert!(h.shard.list_consumer().is_empty());
}

fn classic_join(member: &str) -> crate::coordinator::group::classic::JoinRequest {
    crate::coordinator::group::classic::JoinRequest {
        member_id: member.to_string(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: 10_000,
        rebalance_timeout: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), bytes::Bytes::from_static(b"meta"))],
        require_known_member_id: false,
        supports_skip_assignment: false,
    }
}

/// One group id, one kind at a time: a non-empty group of the other kind refuses, an empty one converts.
#[test]
fn classic_and_consumer_groups_share_the_namespace() {
    use crate::coordinator::group::classic::Reply;
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    let (reply, records) = h.shard.join("g", classic_join(""), h.now);
    assert!(records.is_empty());
    match reply {
        Reply::Now(o) => assert_eq!(o.error, E::InconsistentGroupProtocol.code()),
        Reply::Wait(_) => panic!("refused at once"),
    }
    // Empty: a classic join converts the group (the consumer group's tombstones come first).
    h.hb(beat("a", -1));
    let (_, records) = h.shard.join("g", classic_join(""), h.now);
    h.apply(records);
    assert!(h.shard.consumer_group("g").is_none());
    h.tick(100); // the initial delay (0 here) completes the join
    let g = h.shard.group("g").expect("a classic group");
    assert_eq!(g.members.len(), 1);
    // Now a consumer protocol join is refused: the classic group has a member.
    let r = h.hb(join("b", &["t"]));
    assert_eq!(r.error, E::GroupIdNotFound.code());
    assert!(h.shard.consumer_group("g").is_none());
}
