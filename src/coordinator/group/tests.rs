//! State machine tests with injected time: no sockets, no sleeps. `Harness::apply` plays the runtime's part
//! (records "appended" then replayed) and keeps every record written, so replay can be checked against it.

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use tokio::sync::oneshot::error::TryRecvError;

use super::classic::*;
use super::records::GroupRecord;
use super::*;

const DELAY: i64 = 100;

struct Harness {
    shard: GroupShard,
    log: Vec<GroupRecord>,
    now: i64,
}

fn limits(max_size: usize) -> GroupLimits {
    GroupLimits {
        initial_rebalance_delay_ms: DELAY,
        max_size,
    }
}

fn req(member: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member.to_string(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: 1000,
        rebalance_timeout: 2000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member_id: true,
        supports_skip_assignment: false,
    }
}

impl JoinRequest {
    fn clone_with_instance(&self, inst: &str) -> JoinRequest {
        let mut r = self.clone();
        r.instance_id = Some(inst.to_string());
        r
    }
}

fn now_or_panic<T: std::fmt::Debug>(r: Reply<T>) -> T {
    match r {
        Reply::Now(t) => t,
        Reply::Wait(_) => panic!("expected an immediate answer"),
    }
}

fn waiting<T>(r: Reply<T>) -> tokio::sync::oneshot::Receiver<T> {
    match r {
        Reply::Wait(rx) => rx,
        Reply::Now(_) => panic!("expected to wait"),
    }
}

impl Harness {
    fn new() -> Harness {
        Harness::with_limits(limits(usize::MAX))
    }

    fn with_limits(l: GroupLimits) -> Harness {
        Harness {
            shard: GroupShard::new(l),
            log: Vec::new(),
            now: 1_000_000,
        }
    }

    fn apply(&mut self, records: Vec<GroupRecord>) {
        for r in &records {
            self.shard.replay(r, self.now);
        }
        self.log.extend(records);
    }

    fn join(&mut self, r: JoinRequest) -> Reply<JoinOutcome> {
        let (reply, recs) = self.shard.join("g", r, self.now);
        self.apply(recs);
        reply
    }

    /// First join (MEMBER_ID_REQUIRED) then the join with the id; returns (id, receiver).
    fn join_new(
        &mut self,
        protocols: &[&str],
    ) -> (String, tokio::sync::oneshot::Receiver<JoinOutcome>) {
        let first = now_or_panic(self.join(req("", protocols)));
        assert_eq!(first.error, E::MemberIdRequired.code());
        let id = first.member_id.clone();
        (id.clone(), waiting(self.join(req(&id, protocols))))
    }

    fn sync(&mut self, id: &str, gen: i32, assignments: &[(&str, &str)]) -> Reply<SyncOutcome> {
        let a = assignments
            .iter()
            .map(|(m, x)| (m.to_string(), Bytes::from(x.to_string())))
            .collect();
        let (reply, recs) = self.shard.sync("g", id, None, gen, None, None, a, self.now);
        self.apply(recs);
        reply
    }

    fn tick(&mut self, advance: i64) {
        self.now += advance;
        let recs = self.shard.tick(self.now);
        self.apply(recs);
    }

    fn heartbeat(&mut self, id: &str, gen: i32) -> i16 {
        self.shard.heartbeat("g", id, None, gen, self.now)
    }

    fn group(&self) -> &ClassicGroup {
        self.shard.group("g").expect("group exists")
    }
}

fn got<T>(rx: &mut tokio::sync::oneshot::Receiver<T>) -> T {
    rx.try_recv().expect("answered")
}

/// Brings up a stable group of `n` members; returns their ids (leader first) and the generation.
fn stable(h: &mut Harness, n: usize) -> (Vec<String>, i32) {
    let mut joins: Vec<_> = (0..n).map(|_| h.join_new(&["range"])).collect();
    h.tick(DELAY);
    let outcomes: Vec<JoinOutcome> = joins.iter_mut().map(|(_, rx)| got(rx)).collect();
    let gen = outcomes[0].generation;
    let leader = outcomes[0].leader.clone();
    let mut ids: Vec<String> = joins.iter().map(|(id, _)| id.clone()).collect();
    ids.sort_by_key(|id| *id != leader);
    let assignments: Vec<(String, String)> = ids
        .iter()
        .map(|id| (id.clone(), format!("a-{id}")))
        .collect();
    let borrowed: Vec<(&str, &str)> = assignments
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut rxs: Vec<_> = ids[1..]
        .iter()
        .map(|id| waiting(h.sync(id, gen, &[])))
        .collect();
    let mut leader_rx = waiting(h.sync(&ids[0], gen, &borrowed));
    assert_eq!(
        got(&mut leader_rx).assignment,
        Bytes::from(format!("a-{}", ids[0]))
    );
    for (rx, id) in rxs.iter_mut().zip(&ids[1..]) {
        assert_eq!(got(rx).assignment, Bytes::from(format!("a-{id}")));
    }
    assert_eq!(h.group().state, GroupState::Stable);
    (ids, gen)
}

#[test]
fn member_id_required_then_initial_delay_then_generation_one() {
    let mut h = Harness::new();
    let (id, mut rx) = h.join_new(&["range"]);
    assert!(id.starts_with("c-"));
    h.tick(DELAY - 1);
    assert!(
        matches!(rx.try_recv(), Err(TryRecvError::Empty)),
        "the initial delay holds the join"
    );
    h.tick(1);
    let o = got(&mut rx);
    assert_eq!((o.error, o.generation), (0, 1));
    assert_eq!(o.leader, id);
    assert_eq!(o.protocol_name.as_deref(), Some("range"));
    assert_eq!(o.members.len(), 1);
    assert_eq!(h.group().state, GroupState::CompletingRebalance);
}

#[test]
fn leader_assignment_reaches_every_member_only_once_written() {
    let mut h = Harness::new();
    let (ids, gen) = stable(&mut h, 3);
    assert_eq!(gen, 1);
    // The assignment is in the written GroupMetadata record.
    let last = h.log.last().expect("a record");
    let Some(RecordValue::Group(v)) = &last.value else {
        panic!("{last:?}")
    };
    assert_eq!(v.members.len(), 3);
    assert!(v
        .members
        .iter()
        .all(|m| m.assignment == format!("a-{}", m.member_id)));
    // A sync in Stable answers at once with the member's assignment.
    let s = now_or_panic(h.sync(&ids[2], gen, &[]));
    assert_eq!(s.assignment, Bytes::from(format!("a-{}", ids[2])));
}

#[test]
fn empty_assignment_and_assignments_for_strangers() {
    let mut h = Harness::new();
    let (a, mut ra) = h.join_new(&["range"]);
    let (b, mut rb) = h.join_new(&["range"]);
    h.tick(DELAY);
    let (oa, ob) = (got(&mut ra), got(&mut rb));
    let leader = if oa.members.is_empty() {
        b.clone()
    } else {
        a.clone()
    };
    let other = if leader == a { b.clone() } else { a.clone() };
    assert_eq!(oa.leader, ob.leader);
    let mut r_other = waiting(h.sync(&other, 1, &[]));
    // The leader names only itself and a member that does not exist.
    let mut r_leader = waiting(h.sync(&leader, 1, &[(&leader, "x"), ("ghost", "y")]));
    assert_eq!(got(&mut r_leader).assignment, Bytes::from_static(b"x"));
    let o = got(&mut r_other);
    assert_eq!(
        (o.error, o.assignment.len()),
        (0, 0),
        "an empty assignment is valid"
    );
    let Some(RecordValue::Group(v)) = &h.log.last().unwrap().value else {
        panic!()
    };
    assert!(!v.members.iter().any(|m| m.member_id == "ghost"));
}

#[test]
fn heartbeat_answers() {
    let mut h = Harness::new();
    let (ids, gen) = stable(&mut h, 2);
    assert_eq!(h.heartbeat(&ids[0], gen), 0);
    assert_eq!(h.heartbeat(&ids[0], gen + 1), E::IllegalGeneration.code());
    assert_eq!(h.heartbeat("nobody", gen), E::UnknownMemberId.code());
    assert_eq!(
        h.shard.heartbeat("other-group", &ids[0], None, gen, h.now),
        E::UnknownMemberId.code()
    );
    // A new member starts a rebalance: the others learn it from their heartbeat.
    let (_c, _rc) = h.join_new(&["range"]);
    assert_eq!(h.group().state, GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&ids[1], gen), E::RebalanceInProgress.code());
}

#[test]
fn session_timeout_removes_a_silent_member_and_rebalances() {
    let mut h = Harness::new();
    let (ids, gen) = stable(&mut h, 2);
    // Only ids[0] heartbeats.
    for _ in 0..4 {
        h.tick(300);
        assert!(
            h.heartbeat(&ids[0], gen) == 0 || h.group().state == GroupState::PreparingRebalance
        );
    }
    assert!(!h.group().members.contains_key(&ids[1]), "expired");
    assert_eq!(h.group().state, GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&ids[0], gen), E::RebalanceInProgress.code());
    let mut rx = waiting(h.join(req(&ids[0], &["range"])));
    let o = got(&mut rx);
    assert_eq!(
        (o.generation, o.leader.as_str(), o.members.len()),
        (gen + 1, ids[0].as_str(), 1)
    );
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut h = Harness::new();
    let (ids, gen) = stable(&mut h, 2);
    let mut rx = waiting(h.join(req(&ids[0], &["range", "roundrobin"]))); // new subscription → rebalance
    assert_eq!(h.group().state, GroupState::PreparingRebalance);
    // ids[1] keeps heartbeating but never rejoins: after the rebalance timeout (2000) it is out.
    for _ in 0..7 {
        h.tick(300);
        let _ = h.heartbeat(&ids[1], gen);
        let _ = h.heartbeat(&ids[0], gen);
    }
    let o = got(&mut rx);
    assert_eq!((o.generation, o.members.len()), (gen + 1, 1));
    assert_eq!(h.heartbeat(&ids[1], gen), E::UnknownMemberId.code());
}

#[test]
fn leader_that_joins_and_never_syncs_is_removed() {
    let mut h = Harness::new();
    let (a, mut ra) = h.join_new(&["range"]);
    let (b, mut rb) = h.join_new(&["range"]);
    h.tick(DELAY);
    let (oa, _) = (got(&mut ra), got(&mut rb));
    let leader = oa.leader.clone();
    let follower = if leader == a { b.clone() } else { a.clone() };
    // The follower syncs and waits; the leader heartbeats (so its session never expires) but never syncs.
    let mut rf = waiting(h.sync(&follower, 1, &[]));
    for _ in 0..6 {
        h.tick(300);
        assert_eq!(
            h.heartbeat(&leader, 1),
            0,
            "heartbeats are fine while completing"
        );
    }
    assert_eq!(h.group().state, GroupState::CompletingRebalance);
    h.tick(300); // past the rebalance timeout (2000 ms) since the join completed
    assert!(
        !h.group().members.contains_key(&leader),
        "the leader that never synced is out"
    );
    assert_eq!(
        got(&mut rf).error,
        E::RebalanceInProgress.code(),
        "the waiting follower rejoins"
    );
    assert_eq!(h.group().state, GroupState::PreparingRebalance);
    let mut rj = waiting(h.join(req(&follower, &["range"])));
    let o = got(&mut rj);
    assert_eq!((o.generation, o.leader.as_str()), (2, follower.as_str()));
}

#[test]
fn leave_rebalances_and_the_last_leave_empties_the_group() {
    let mut h = Harness::new();
    let (ids, gen) = stable(&mut h, 2);
    let (errors, recs) = h.shard.leave(
        "g",
        &[(ids[1].clone(), None), ("ghost".into(), None)],
        h.now,
    );
    h.apply(recs);
    assert_eq!(errors, vec![0, E::UnknownMemberId.code()]);
    assert_eq!(h.group().state, GroupState::PreparingRebalance);
    let (errors, recs) = h.shard.leave("g", &[(ids[0].clone(), None)], h.now);
    h.apply(recs);
    assert_eq!(errors, vec![0]);
    assert_eq!(h.group().state, GroupState::Empty);
    assert_eq!(h.group().generation, gen + 1);
    let Some(RecordValue::Group(v)) = &h.log.last().unwrap().value else {
        panic!()
    };
    assert!(v.members.is_empty());
    assert_eq!(v.generation, gen + 1);
}

#[test]
fn stale_generation_sync_and_sync_during_rebalance() {
    let mut h = Harness::new();
    let (ids, gen) = stable(&mut h, 2);
    assert_eq!(
        now_or_panic(h.sync(&ids[0], gen - 1, &[])).error,
        E::IllegalGeneration.code()
    );
    let _rx = waiting(h.join(req(&ids[0], &["range", "x"])));
    assert_eq!(
        now_or_panic(h.sync(&ids[1], gen, &[])).error,
        E::RebalanceInProgress.code()
    );
    assert_eq!(
        now_or_panic(h.sync("ghost", gen, &[])).error,
        E::UnknownMemberId.code()
    );
}

#[test]
fn inconsistent_protocols_and_group_size() {
    let mut h = Harness::with_limits(limits(1));
    let (_ids, _) = stable(&mut h, 1);
    let o = now_or_panic(h.join(req("", &["roundrobin"])));
    assert_eq!(o.error, E::InconsistentGroupProtocol.code());
    let o = now_or_panic(h.join(req("", &["range"])));
    assert_eq!(o.error, E::GroupMaxSizeReached.code());
    let mut big = req("", &["range"]);
    big.protocols[0].1 = Bytes::from(vec![0u8; MAX_MEMBER_BYTES + 1]);
    assert_eq!(now_or_panic(h.join(big)).error, E::InvalidRequest.code());
}

#[test]
fn join_storm_is_bounded() {
    let mut h = Harness::new();
    for _ in 0..MAX_PENDING_MEMBERS {
        assert_eq!(
            now_or_panic(h.join(req("", &["range"]))).error,
            E::MemberIdRequired.code()
        );
    }
    assert_eq!(
        now_or_panic(h.join(req("", &["range"]))).error,
        E::GroupMaxSizeReached.code()
    );
    // Pending ids expire after their session timeout.
    h.tick(1001);
    assert!(h.shard.group("g").is_none(), "nothing left to keep");
}

/// A stable group of a static leader ("i-1", assignment "lead") and a static follower ("i-2", "follow").
fn static_pair(h: &mut Harness) -> (JoinRequest, JoinRequest, String, String, i32) {
    let mut r1 = req("", &["range"]);
    r1.instance_id = Some("i-1".into());
    let mut r2 = r1.clone();
    r2.instance_id = Some("i-2".into());
    // Static members skip MEMBER_ID_REQUIRED.
    let mut rx1 = waiting(h.join(r1.clone()));
    let mut rx2 = waiting(h.join(r2.clone()));
    h.tick(DELAY);
    let (o1, o2) = (got(&mut rx1), got(&mut rx2));
    let gen = o1.generation;
    let (leader, follower) = if o1.leader == o1.member_id {
        (o1.member_id, o2.member_id)
    } else {
        std::mem::swap(&mut r1, &mut r2);
        (o2.member_id, o1.member_id)
    };
    let mut sf = waiting(h.sync(&follower, gen, &[]));
    let mut sl = waiting(h.sync(&leader, gen, &[(&leader, "lead"), (&follower, "follow")]));
    assert_eq!(got(&mut sl).assignment, Bytes::from_static(b"lead"));
    assert_eq!(got(&mut sf).assignment, Bytes::from_static(b"follow"));
    (r1, r2, leader, follower, gen)
}

#[test]
fn static_member_restart_gets_its_assignment_without_rebalance() {
    let mut h = Harness::new();
    let (_, r2, leader, old, gen) = static_pair(&mut h);
    let written = h.log.len();
    // The follower restarts: a join without member id but with its instance id, and (as a restarted
    // cooperative member would) different metadata for the same protocol.
    let mut restart = r2.clone();
    restart.protocols[0].1 = Bytes::from_static(b"no owned partitions any more");
    let o2 = got(&mut waiting(h.join(restart)));
    assert_eq!((o2.error, o2.generation), (0, gen), "no rebalance");
    assert_ne!(o2.member_id, old);
    assert_eq!(o2.leader, leader);
    assert!(o2.members.is_empty() && !o2.skip_assignment);
    assert_eq!(h.group().state, GroupState::Stable);
    // The new member id is durable before the member hears of it (Kafka stores the group first).
    assert_eq!(h.log.len(), written + 1);
    let mut replayed = GroupShard::new(limits(usize::MAX));
    for r in &h.log {
        replayed.replay(r, h.now);
    }
    let g = replayed.group("g").expect("group");
    assert!(g.members.contains_key(&o2.member_id) && !g.members.contains_key(&old));
    let s2 = now_or_panic(h.sync(&o2.member_id, gen, &[]));
    assert_eq!(s2.assignment, Bytes::from_static(b"follow"));
    // The other member did not notice.
    assert_eq!(h.heartbeat(&leader, gen), 0);
    // The old incarnation is fenced.
    assert_eq!(
        h.shard.heartbeat("g", &old, Some("i-2"), gen, h.now),
        E::FencedInstanceId.code()
    );
    // An instance id that names no static member is UNKNOWN_MEMBER_ID, as Kafka's validateMember answers.
    assert_eq!(
        h.shard.heartbeat("g", &leader, Some("i-9"), gen, h.now),
        E::UnknownMemberId.code()
    );
}

#[test]
fn static_leader_restart_acts_as_follower_before_v9_and_skips_assignment_from_v9() {
    let mut h = Harness::new();
    let (r1, _, old_leader, follower, gen) = static_pair(&mut h);
    let o = got(&mut waiting(h.join(r1.clone())));
    assert_eq!((o.error, o.generation), (0, gen));
    // Before v9 the answer names the old leader id, so the restarted leader does not assign.
    assert_eq!(o.leader, old_leader);
    assert_ne!(o.member_id, old_leader);
    assert!(o.members.is_empty() && !o.skip_assignment);
    assert_eq!(h.group().leader.as_deref(), Some(o.member_id.as_str()));
    let s = now_or_panic(h.sync(&o.member_id, gen, &[]));
    assert_eq!(s.assignment, Bytes::from_static(b"lead"));
    // From v9 it is named leader, gets the members and is told to skip the assignment.
    let mut v9 = r1;
    v9.supports_skip_assignment = true;
    let o9 = got(&mut waiting(h.join(v9)));
    assert_eq!((o9.error, o9.generation), (0, gen));
    assert_eq!(o9.leader, o9.member_id);
    assert!(o9.skip_assignment);
    assert_eq!(o9.members.len(), 2);
    assert_eq!(h.heartbeat(&follower, gen), 0, "still stable");
}

#[test]
fn static_restart_rebalances_when_the_protocol_would_change_or_during_completing_rebalance() {
    let mut h = Harness::new();
    let (_, r2, leader, _, gen) = static_pair(&mut h);
    let mut other = r2.clone();
    other.protocols = vec![
        ("roundrobin".into(), Bytes::new()),
        ("range".into(), Bytes::new()),
    ];
    // Only "range" is common, so the selection stays: no rebalance.
    let o = got(&mut waiting(h.join(other)));
    assert_eq!(o.generation, gen);
    // CompletingRebalance: the leader may be assigning to the old id, so the group rebalances.
    let mut lrx = waiting(h.join(req(&leader, &["range"]).clone_with_instance("i-1")));
    let mut frx = waiting(h.join(req(&o.member_id, &["range"]).clone_with_instance("i-2")));
    let (lo, fo) = (got(&mut lrx), got(&mut frx));
    assert_eq!(lo.generation, gen + 1);
    assert_eq!(fo.generation, gen + 1);
    assert_eq!(h.group().state, GroupState::CompletingRebalance);
    let mut restarted = waiting(h.join(r2));
    assert_eq!(h.group().state, GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&leader, gen + 1), E::RebalanceInProgress.code());
    let mut lrx = waiting(h.join(req(&leader, &["range"]).clone_with_instance("i-1")));
    let (lo, ro) = (got(&mut lrx), got(&mut restarted));
    assert_eq!((lo.generation, ro.generation), (gen + 2, gen + 2));
}

#[test]
fn static_restart_whose_record_cannot_be_written_is_undone() {
    let mut h = Harness::new();
    let (_, r2, leader, old, gen) = static_pair(&mut h);
    let (reply, recs) = h.shard.join("g", r2, h.now);
    assert_eq!(recs.len(), 1);
    h.shard.write_failed(&recs, E::NotCoordinator.code(), h.now);
    let o = got(&mut waiting(reply));
    assert_eq!(o.error, E::NotCoordinator.code());
    assert!(o.member_id.is_empty());
    // The old incarnation is back as it is in the log.
    assert!(h.group().members.contains_key(&old));
    assert_eq!(h.group().members.len(), 2);
    assert_eq!(h.shard.heartbeat("g", &old, Some("i-2"), gen, h.now), 0);
    assert_eq!(h.heartbeat(&leader, gen), 0);
}

#[test]
fn static_member_leaves_by_instance_id() {
    let mut h = Harness::new();
    let (_, _, leader, follower, gen) = static_pair(&mut h);
    let (errors, recs) = h.shard.leave(
        "g",
        &[
            ("someone-else".to_string(), Some("i-2".to_string())),
            (String::new(), Some("i-9".to_string())),
            (String::new(), Some("i-2".to_string())),
        ],
        h.now,
    );
    h.apply(recs);
    assert_eq!(
        errors,
        vec![E::FencedInstanceId.code(), E::UnknownMemberId.code(), 0]
    );
    assert!(!h.group().members.contains_key(&follower));
    assert_eq!(h.heartbeat(&leader, gen), E::RebalanceInProgress.code());
}

#[test]
fn commits_are_validated_against_the_group() {
    let mut h = Harness::new();
    let item = CommitItem {
        topic: "t".into(),
        partition: 0,
        offset: 5,
        leader_epoch: 3,
        metadata: "m".into(),
        retention_ms: None,
    };
    // assign() consumer: generation -1, no group.
    let recs = h
        .shard
        .commit("solo", "", None, -1, std::slice::from_ref(&item), 9, h.now)
        .unwrap();
    h.apply(recs);
    let c = h.shard.offsets.get("solo", "t", 0).unwrap();
    assert_eq!((c.offset, c.leader_epoch, c.metadata.as_str()), (5, 3, "m"));
    let (ids, gen) = stable(&mut h, 1);
    assert!(h
        .shard
        .commit(
            "g",
            &ids[0],
            None,
            gen,
            std::slice::from_ref(&item),
            9,
            h.now
        )
        .is_ok());
    assert_eq!(
        h.shard.commit(
            "g",
            &ids[0],
            None,
            gen + 5,
            std::slice::from_ref(&item),
            9,
            h.now
        ),
        Err(E::IllegalGeneration.code())
    );
    assert_eq!(
        h.shard.commit(
            "g",
            "ghost",
            None,
            gen,
            std::slice::from_ref(&item),
            9,
            h.now
        ),
        Err(E::UnknownMemberId.code())
    );
    assert_eq!(
        h.shard.commit(
            "nogroup",
            "m",
            None,
            4,
            std::slice::from_ref(&item),
            8,
            h.now
        ),
        Err(E::IllegalGeneration.code())
    );
    assert_eq!(
        h.shard.commit(
            "nogroup",
            "m",
            None,
            4,
            std::slice::from_ref(&item),
            9,
            h.now
        ),
        Err(E::GroupIdNotFound.code()),
        "OffsetCommit v9+"
    );
    // No member id and no generation while the group has members.
    assert_eq!(
        h.shard
            .commit("g", "", None, -1, std::slice::from_ref(&item), 9, h.now),
        Err(E::UnknownMemberId.code())
    );
    assert_eq!(h.shard.delete_group("g"), Err(E::NonEmptyGroup.code()));
}

#[test]
fn replaying_the_written_records_rebuilds_the_same_state() {
    let mut h = Harness::new();
    let (ids, gen) = stable(&mut h, 3);
    for (i, p) in [(0, 1), (1, 2), (2, 3)] {
        let item = CommitItem {
            topic: "t".into(),
            partition: p,
            offset: 10 * i64::from(p),
            leader_epoch: p,
            metadata: format!("m{p}"),
            retention_ms: None,
        };
        let recs = h
            .shard
            .commit("g", &ids[i], None, gen, &[item], 9, h.now)
            .unwrap();
        h.apply(recs);
    }
    let recs = h
        .shard
        .commit(
            "solo",
            "",
            None,
            -1,
            &[CommitItem {
                topic: "u".into(),
                partition: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                retention_ms: None,
            }],
            9,
            h.now,
        )
        .unwrap();
    h.apply(recs);
    // Encode every record as it goes to disk, decode and replay into a fresh shard.
    let mut fresh = GroupShard::new(limits(usize::MAX));
    for r in &h.log {
        let (k, v) = r.encode();
        let back = GroupRecord::decode(&k, v.as_deref()).unwrap().unwrap();
        assert_eq!(&back, r);
        fresh.replay(&back, h.now);
    }
    let (a, b) = (h.group(), fresh.group("g").unwrap());
    assert_eq!(
        (a.generation, &a.leader, &a.protocol, &a.protocol_type),
        (b.generation, &b.leader, &b.protocol, &b.protocol_type)
    );
    assert_eq!(b.state, GroupState::Stable);
    let members = |g: &ClassicGroup| -> Vec<(String, Bytes, i32)> {
        g.members
            .values()
            .map(|m| (m.id.clone(), m.assignment.clone(), m.session_timeout))
            .collect()
    };
    assert_eq!(members(a), members(b));
    for g in ["g", "solo"] {
        assert_eq!(h.shard.offsets.all(g), fresh.offsets.all(g));
    }
    // After loading, members keep their assignment and may heartbeat at the loaded generation.
    assert_eq!(fresh.heartbeat("g", &ids[1], None, gen, h.now), 0);
    // Deleting an empty group writes tombstones; their replay forgets it.
    let (errs, recs) = h.shard.leave(
        "g",
        &ids.iter().map(|i| (i.clone(), None)).collect::<Vec<_>>(),
        h.now,
    );
    assert!(errs.iter().all(|e| *e == 0));
    h.apply(recs);
    let recs = h.shard.delete_group("g").unwrap();
    h.apply(recs);
    assert!(h.shard.group("g").is_none());
    assert!(h.shard.offsets.all("g").is_empty());
    assert_eq!(h.shard.delete_group("g"), Err(E::GroupIdNotFound.code()));
}

#[test]
fn offset_delete_refuses_topics_the_group_subscribes_to() {
    let mut h = Harness::new();
    // ConsumerProtocolSubscription v0: version, [topics], user data (null).
    let mut sub = vec![0, 0, 0, 0, 0, 1, 0, 1, b't'];
    sub.extend_from_slice(&(-1i32).to_be_bytes());
    let mut r = req("", &["range"]);
    r.protocols[0].1 = Bytes::from(sub);
    let id = now_or_panic(h.join(r.clone())).member_id;
    r.member_id = id.clone();
    let mut rx = waiting(h.join(r));
    h.tick(DELAY);
    let o = got(&mut rx);
    let mut rs = waiting(h.sync(&id, o.generation, &[]));
    assert_eq!(got(&mut rs).error, 0);
    for (topic, p) in [("t", 0), ("u", 0)] {
        let item = CommitItem {
            topic: topic.into(),
            partition: p,
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            retention_ms: None,
        };
        let recs = h
            .shard
            .commit("g", &id, None, o.generation, &[item], 9, h.now)
            .unwrap();
        h.apply(recs);
    }
    let (errors, recs) = h
        .shard
        .delete_offsets("g", &[("t".into(), 0), ("u".into(), 0)])
        .unwrap();
    assert_eq!(errors, vec![E::GroupSubscribedToTopic.code(), 0]);
    assert_eq!(recs.len(), 1, "one tombstone, for u-0");
    h.apply(recs);
    assert!(h.shard.offsets.get("g", "u", 0).is_none());
    assert!(h.shard.offsets.get("g", "t", 0).is_some());
    assert_eq!(
        h.shard.delete_offsets("nope", &[]).unwrap_err(),
        E::GroupIdNotFound.code()
    );
}
