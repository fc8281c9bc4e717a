//! The classic group protocol (JoinGroup / SyncGroup / Heartbeat / LeaveGroup) as a state machine: Kafka's
//! `ClassicGroup` and the classic half of `GroupMetadataManager`.
//!
//! Ownership: a [`ClassicGroup`] lives in its shard ([`super::GroupShard`]) and is only touched under the
//! shard's lock. Nothing here reads the clock or does I/O: every operation takes `now` (ms), timers are the
//! [`ClassicGroup::tick`] event, and requests that must wait (a join until the rebalance completes, a sync until
//! the leader's assignment is written) leave a `oneshot::Sender` in the member, answered by a later operation.
//!
//! Durable facts leave as records: the leader's assignment becomes a `GroupMetadata` record, and only the replay
//! of that record ([`ClassicGroup::replay`]) makes the group Stable and hands out the assignments, so a member
//! never receives an assignment that is not in the log. The join phase (who is waiting, deadlines) is
//! transient, as in Kafka: after a restart members rejoin.
//!
//! States (Kafka's): Empty → PreparingRebalance → CompletingRebalance → Stable, back to PreparingRebalance when
//! membership or subscriptions change, to Empty when the last member is gone.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use tokio::sync::oneshot;

pub use super::member::*;
use super::records::{GroupRecord, GroupValue, MemberValue, RecordKey, RecordValue};

mod replay;
mod statics;

/// A classic group.
#[derive(Debug)]
pub struct ClassicGroup {
    /// Group id.
    pub id: String,
    /// State.
    pub state: GroupState,
    /// Generation.
    pub generation: i32,
    /// Protocol type of the members ("consumer").
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader.
    pub leader: Option<String>,
    /// Members by id, in join order of ids (ids start with the client id and a UUID).
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to rejoin.
    pending: HashMap<String, i64>,
    /// Static members: instance id → member id.
    statics: HashMap<String, String>,
    join_deadline: i64,
    initial_join_limit: Option<i64>,
    sync_deadline: i64,
    /// When the group entered its state (ms).
    pub state_timestamp: i64,
}

fn code(e: E) -> i16 {
    e.code()
}

impl ClassicGroup {
    /// A new, empty group.
    pub fn new(id: &str, now: i64) -> ClassicGroup {
        ClassicGroup {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            join_deadline: 0,
            initial_join_limit: None,
            sync_deadline: 0,
            state_timestamp: now,
        }
    }

    fn set_state(&mut self, s: GroupState, now: i64) {
        self.state = s;
        self.state_timestamp = now;
    }

    fn candidates(&self) -> Vec<String> {
        let mut it = self.members.values();
        let Some(first) = it.next() else {
            return Vec::new();
        };
        let mut names: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in it {
            names.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        names
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        let candidates = self.candidates();
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == n) {
                    v.1 += 1;
                }
            }
        }
        // Most votes; ties go to the candidate first in the members' common order.
        let best = votes.iter().map(|(_, v)| *v).max()?;
        votes.into_iter().find(|(_, v)| *v == best).map(|(c, _)| c)
    }

    /// Checks a request's member identity: UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(inst) = instance_id {
            match self.statics.get(inst) {
                Some(m) if m != member_id => return Err(code(E::FencedInstanceId)),
                // Kafka's `ClassicGroup.validateMember`: an instance id that names no static member.
                None => return Err(code(E::UnknownMemberId)),
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(code(E::UnknownMemberId));
        }
        Ok(())
    }

    /// JoinGroup. Records come back when the join completed a rebalance that left the group empty.
    pub fn join(
        &mut self,
        req: JoinRequest,
        limits: &GroupLimits,
        now: i64,
    ) -> (Reply<JoinOutcome>, Vec<GroupRecord>) {
        let protocol_bytes: usize = req.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
        if req.protocols.len() > MAX_PROTOCOLS_PER_MEMBER || protocol_bytes > MAX_MEMBER_BYTES {
            return (
                Reply::Now(JoinOutcome::error(code(E::InvalidRequest), &req.member_id)),
                Vec::new(),
            );
        }
        if req.member_id.is_empty() {
            self.join_unknown(req, limits, now)
        } else {
            self.join_known(req, limits, now)
        }
    }

    fn join_unknown(
        &mut self,
        req: JoinRequest,
        limits: &GroupLimits,
        now: i64,
    ) -> (Reply<JoinOutcome>, Vec<GroupRecord>) {
        if !self.supports(&req.protocol_type, &req.protocols) {
            return (
                Reply::Now(JoinOutcome::error(code(E::InconsistentGroupProtocol), "")),
                Vec::new(),
            );
        }
        // Kafka's member id is `clientId-UUID`; the client id part is cut to 1 KiB so the id always fits the
        // `int16`-length strings of the GroupMetadata record.
        let mut cut = req.client_id.len().min(1024);
        while !req.client_id.is_char_boundary(cut) {
            cut -= 1;
        }
        let new_id = format!("{}-{}", &req.client_id[..cut], uuid::Uuid::new_v4());
        if let Some(inst) = req.instance_id.clone() {
            if let Some(old) = self.statics.get(&inst).cloned() {
                return self.replace_static(old, new_id, req, limits, now);
            }
        }
        if self.members.len() >= limits.max_size {
            return (
                Reply::Now(JoinOutcome::error(code(E::GroupMaxSizeReached), "")),
                Vec::new(),
            );
        }
        if req.require_known_member_id && req.instance_id.is_none() {
            if self.pending.len() >= MAX_PENDING_MEMBERS {
                return (
                    Reply::Now(JoinOutcome::error(code(E::GroupMaxSizeReached), "")),
                    Vec::new(),
                );
            }
            self.pending
                .insert(new_id.clone(), now + i64::from(req.session_timeout));
            return (
                Reply::Now(JoinOutcome::error(code(E::MemberIdRequired), &new_id)),
                Vec::new(),
            );
        }
        self.add_member_and_rebalance(new_id, req, limits, now)
    }

    fn join_known(
        &mut self,
        req: JoinRequest,
        limits: &GroupLimits,
        now: i64,
    ) -> (Reply<JoinOutcome>, Vec<GroupRecord>) {
        let id = req.member_id.clone();
        if self.pending.remove(&id).is_some() {
            if !self.supports(&req.protocol_type, &req.protocols) {
                return (
                    Reply::Now(JoinOutcome::error(code(E::InconsistentGroupProtocol), &id)),
                    Vec::new(),
                );
            }
            if self.members.len() >= limits.max_size {
                return (
                    Reply::Now(JoinOutcome::error(code(E::GroupMaxSizeReached), &id)),
                    Vec::new(),
                );
            }
            return self.add_member_and_rebalance(id, req, limits, now);
        }
        if let Err(e) = self.check_member(&id, req.instance_id.as_deref()) {
            return (Reply::Now(JoinOutcome::error(e, &id)), Vec::new());
        }
        if !self.supports(&req.protocol_type, &req.protocols) {
            return (
                Reply::Now(JoinOutcome::error(code(E::InconsistentGroupProtocol), &id)),
                Vec::new(),
            );
        }
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        let changed = self
            .members
            .get(&id)
            .is_some_and(|m| m.protocols != req.protocols);
        match self.state {
            GroupState::PreparingRebalance => {
                let rx = self.update_member(&id, req, now);
                let recs = self.try_complete_join(limits, now);
                (Reply::Wait(rx), recs)
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if !(changed || is_leader && self.state == GroupState::Stable) =>
            {
                if let Some(m) = self.members.get_mut(&id) {
                    m.heartbeat_deadline = now + i64::from(m.session_timeout);
                }
                (Reply::Now(self.join_outcome(&id)), Vec::new())
            }
            _ => {
                let rx = self.update_member(&id, req, now);
                self.prepare_rebalance(limits, now);
                let recs = self.try_complete_join(limits, now);
                (Reply::Wait(rx), recs)
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        id: String,
        req: JoinRequest,
        limits: &GroupLimits,
        now: i64,
    ) -> (Reply<JoinOutcome>, Vec<GroupRecord>) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(inst) = &req.instance_id {
            self.statics.insert(inst.clone(), id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: req.instance_id.clone(),
                client_id: String::new(),
                client_host: String::new(),
                session_timeout: 0,
                rebalance_timeout: 0,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                awaiting_join: None,
                awaiting_sync: None,
                heartbeat_deadline: 0,
                static_rejoin: None,
            },
        );
        let rx = self.update_member(&id, req, now);
        match self.state {
            GroupState::PreparingRebalance => {
                // A new member during the initial delay extends it, up to the rebalance timeout.
                if let Some(limit) = self.initial_join_limit {
                    self.join_deadline = (now + limits.initial_rebalance_delay_ms).min(limit);
                }
            }
            _ => self.prepare_rebalance(limits, now),
        }
        let recs = self.try_complete_join(limits, now);
        (Reply::Wait(rx), recs)
    }

    fn update_member(
        &mut self,
        id: &str,
        req: JoinRequest,
        now: i64,
    ) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(id) {
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.session_timeout = req.session_timeout;
            m.rebalance_timeout = req.rebalance_timeout;
            m.protocols = req.protocols;
            m.heartbeat_deadline = now + i64::from(req.session_timeout);
            if let Some(old) = m.awaiting_join.replace(tx) {
                // A second join while the first waits: the first is superseded.
                let _ = old.send(JoinOutcome::error(code(E::UnknownMemberId), id));
            }
        }
        rx
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout))
            .max()
            .unwrap_or(0)
    }

    fn prepare_rebalance(&mut self, limits: &GroupLimits, now: i64) {
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncOutcome {
                    error: code(E::RebalanceInProgress),
                    ..Default::default()
                });
            }
        }
        if self.state == GroupState::Empty {
            self.join_deadline = now + limits.initial_rebalance_delay_ms;
            self.initial_join_limit = Some(
                now + self
                    .max_rebalance_timeout()
                    .max(limits.initial_rebalance_delay_ms),
            );
        } else {
            self.join_deadline = now + self.max_rebalance_timeout();
            self.initial_join_limit = None;
        }
        self.set_state(GroupState::PreparingRebalance, now);
    }

    fn try_complete_join(&mut self, _limits: &GroupLimits, now: i64) -> Vec<GroupRecord> {
        if self.state != GroupState::PreparingRebalance {
            return Vec::new();
        }
        let all_joined =
            self.members.values().all(|m| m.awaiting_join.is_some()) && self.pending.is_empty();
        let delayed = self.initial_join_limit.is_some();
        if (delayed || !all_joined) && now < self.join_deadline {
            return Vec::new();
        }
        self.complete_join(now)
    }

    fn complete_join(&mut self, now: i64) -> Vec<GroupRecord> {
        self.initial_join_limit = None;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.drop_member(&id);
        }
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now);
            return vec![self.metadata_record(now)];
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, now);
        self.sync_deadline = now + self.max_rebalance_timeout();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let outcome = self.join_outcome(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.heartbeat_deadline = now + i64::from(m.session_timeout);
                if let Some(tx) = m.awaiting_join.take() {
                    let _ = tx.send(outcome);
                }
            }
        }
        Vec::new()
    }

    fn join_outcome(&self, member_id: &str) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinOutcome {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| {
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.metadata_for(&protocol),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    /// Removes a member without changing the group's state; its waiting requests get UNKNOWN_MEMBER_ID.
    fn drop_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinOutcome::error(code(E::UnknownMemberId), id));
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncOutcome {
                    error: code(E::UnknownMemberId),
                    ..Default::default()
                });
            }
            if let Some(inst) = &m.instance_id {
                if self.statics.get(inst).map(String::as_str) == Some(id) {
                    self.statics.remove(inst);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// Removes a member and rebalances what is left.
    fn remove_member(&mut self, id: &str, limits: &GroupLimits, now: i64) -> Vec<GroupRecord> {
        self.drop_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(limits, now);
                self.try_complete_join(limits, now)
            }
            GroupState::PreparingRebalance => self.try_complete_join(limits, now),
            GroupState::Empty => Vec::new(),
        }
    }

    /// SyncGroup. A leader's sync in CompletingRebalance returns the `GroupMetadata` record to write; the
    /// answers go out when that record is replayed (or fail in [`ClassicGroup::write_failed`]).
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> (Reply<SyncOutcome>, Vec<GroupRecord>) {
        let err = |e: i16| {
            (
                Reply::Now(SyncOutcome {
                    error: e,
                    ..Default::default()
                }),
                Vec::new(),
            )
        };
        if let Err(e) = self.check_member(member_id, instance_id) {
            return err(e);
        }
        if generation != self.generation {
            return err(code(E::IllegalGeneration));
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return err(code(E::InconsistentGroupProtocol));
        }
        if assignments.iter().any(|(_, a)| a.len() > MAX_MEMBER_BYTES) {
            return err(code(E::InvalidRequest));
        }
        match self.state {
            GroupState::Empty => err(code(E::UnknownMemberId)),
            GroupState::PreparingRebalance => err(code(E::RebalanceInProgress)),
            GroupState::Stable => {
                let Some(m) = self.members.get_mut(member_id) else {
                    return err(code(E::UnknownMemberId));
                };
                m.heartbeat_deadline = now + i64::from(m.session_timeout);
                let out = SyncOutcome {
                    error: 0,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    assignment: m.assignment.clone(),
                };
                (Reply::Now(out), Vec::new())
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let Some(m) = self.members.get_mut(member_id) else {
                    return err(code(E::UnknownMemberId));
                };
                m.heartbeat_deadline = now + i64::from(m.session_timeout);
                m.awaiting_sync = Some(tx);
                let mut records = Vec::new();
                if self.leader.as_deref() == Some(member_id) {
                    // Members the leader did not mention get an empty assignment; assignments for ids that
                    // are not members (they left meanwhile) are dropped.
                    let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                    let mut value = self.metadata_value(now);
                    for mv in &mut value.members {
                        mv.assignment = by_member.remove(&mv.member_id).unwrap_or_default();
                    }
                    records.push(GroupRecord {
                        key: RecordKey::Group {
                            group: self.id.clone(),
                        },
                        value: Some(RecordValue::Group(value)),
                    });
                }
                (Reply::Wait(rx), records)
            }
        }
    }

    /// The leader's assignment could not be written: every waiting sync fails and the group rebalances.
    pub fn write_failed(&mut self, generation: i32, error: i16, limits: &GroupLimits, now: i64) {
        if self.state == GroupState::Stable && self.generation == generation {
            self.undo_static_rejoins(error, now);
            return;
        }
        if self.state != GroupState::CompletingRebalance || self.generation != generation {
            return;
        }
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncOutcome {
                    error,
                    ..Default::default()
                });
            }
        }
        self.prepare_rebalance(limits, now);
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> i16 {
        if let Err(e) = self.check_member(member_id, instance_id) {
            return e;
        }
        if generation != self.generation {
            return code(E::IllegalGeneration);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline = now + i64::from(m.session_timeout);
        }
        match self.state {
            GroupState::PreparingRebalance => code(E::RebalanceInProgress),
            GroupState::Empty => code(E::UnknownMemberId),
            _ => 0,
        }
    }

    /// LeaveGroup for one member (by id, or by instance id when the id is empty). Returns the error for that
    /// member and records to write.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        limits: &GroupLimits,
        now: i64,
    ) -> (i16, Vec<GroupRecord>) {
        let id = match instance_id {
            Some(inst) => match self.statics.get(inst) {
                Some(m) if member_id.is_empty() || m == member_id => m.clone(),
                Some(_) => return (code(E::FencedInstanceId), Vec::new()),
                None => return (code(E::UnknownMemberId), Vec::new()),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            let recs = self.try_complete_join(limits, now);
            return (0, recs);
        }
        if !self.members.contains_key(&id) {
            return (code(E::UnknownMemberId), Vec::new());
        }
        (0, self.remove_member(&id, limits, now))
    }

    /// Validates an OffsetCommit against the group (Kafka's `ClassicGroup.validateOffsetCommit`).
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        transactional: bool,
        now: i64,
    ) -> Result<(), i16> {
        if generation < 0 && self.state == GroupState::Empty {
            // assign() consumers and admin tools commit with generation -1 to a group without members.
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.check_member(member_id, instance_id)?;
            if generation != self.generation {
                return Err(code(E::IllegalGeneration));
            }
        } else if !transactional {
            // No member and no generation: only a group without members takes such commits. TxnOffsetCommit
            // before v3 carries neither, so transactional commits pass (Kafka's `validateOffsetCommit`).
            return Err(code(E::UnknownMemberId));
        }
        if !transactional && self.state == GroupState::CompletingRebalance {
            // The member knows the new generation from its JoinGroup answer but has no assignment yet.
            return Err(code(E::RebalanceInProgress));
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline = now + i64::from(m.session_timeout);
        }
        Ok(())
    }

    /// Timers: expired sessions, the end of the join phase, members that never synced. Returns records.
    pub fn tick(&mut self, limits: &GroupLimits, now: i64) -> Vec<GroupRecord> {
        let mut records = Vec::new();
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.heartbeat_deadline <= now
                    && m.awaiting_join.is_none()
                    && m.awaiting_sync.is_none()
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            records.extend(self.remove_member(&id, limits, now));
        }
        if self.state == GroupState::CompletingRebalance && now >= self.sync_deadline {
            let lazy: Vec<String> = self
                .members
                .values()
                .filter(|m| m.awaiting_sync.is_none())
                .map(|m| m.id.clone())
                .collect();
            for id in lazy {
                records.extend(self.remove_member(&id, limits, now));
            }
        }
        records.extend(self.try_complete_join(limits, now));
        records
    }

    /// True if nothing is left to keep in memory (no members, nothing pending).
    pub fn is_empty(&self) -> bool {
        self.state == GroupState::Empty && self.members.is_empty() && self.pending.is_empty()
    }
}
