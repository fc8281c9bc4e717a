//! Static members (KIP-345) replacing their old incarnation: Kafka's `updateStaticMemberThenRebalanceOrCompleteJoin`
//! and its completion or undo once the record naming the new member id is written or fails. A child module of
//! `classic` so it shares the group's private state; same owner and lock (the shard's).

use super::*;

impl ClassicGroup {
    /// A static member rejoined without its member id: the new incarnation takes the old one's place (Kafka's
    /// `updateStaticMemberThenRebalanceOrCompleteJoin`). In a Stable group whose selected protocol stays the
    /// same there is no rebalance: the group is written with the new member id and the member gets the current
    /// generation once that record is replayed (its SyncGroup then returns its assignment). In
    /// CompletingRebalance the leader may already be assigning to the old id, so the group rebalances.
    pub(super) fn replace_static(
        &mut self,
        old: String,
        new_id: String,
        req: JoinRequest,
        limits: &GroupLimits,
        now: i64,
    ) -> (Reply<JoinOutcome>, Vec<GroupRecord>) {
        let Some(mut m) = self.members.remove(&old) else {
            self.statics
                .remove(req.instance_id.as_deref().unwrap_or_default());
            return self.add_member_and_rebalance(new_id, req, limits, now);
        };
        // The old incarnation is fenced: its pending requests fail, later ones get FENCED_INSTANCE_ID.
        if let Some(tx) = m.awaiting_join.take() {
            let _ = tx.send(JoinOutcome::error(code(E::FencedInstanceId), &old));
        }
        if let Some(tx) = m.awaiting_sync.take() {
            let _ = tx.send(SyncOutcome {
                error: code(E::FencedInstanceId),
                ..Default::default()
            });
        }
        let rejoin = StaticRejoin {
            old_id: old.clone(),
            old_leader: self.leader.clone(),
            old_protocols: m.protocols.clone(),
            old_session_timeout: m.session_timeout,
            old_rebalance_timeout: m.rebalance_timeout,
            supports_skip_assignment: req.supports_skip_assignment,
        };
        m.id = new_id.clone();
        if self.leader.as_deref() == Some(old.as_str()) {
            self.leader = Some(new_id.clone());
        }
        if let Some(inst) = &req.instance_id {
            self.statics.insert(inst.clone(), new_id.clone());
        }
        self.members.insert(new_id.clone(), m);
        let rx = self.update_member(&new_id, req, now);
        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol => {
                // KIP-345: no rebalance, whatever else changed in the member's metadata (a restarted
                // cooperative member no longer lists owned partitions); the leader keeps the assignment.
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.static_rejoin = Some(rejoin);
                }
                (Reply::Wait(rx), vec![self.metadata_record(now)])
            }
            GroupState::PreparingRebalance => {
                (Reply::Wait(rx), self.try_complete_join(limits, now))
            }
            _ => {
                self.prepare_rebalance(limits, now);
                let recs = self.try_complete_join(limits, now);
                (Reply::Wait(rx), recs)
            }
        }
    }

    /// The record naming rejoined static members' new ids was written: answer their joins with the current
    /// generation. Before JoinGroup v9 the answer names the leader as it was before the replacement, so a
    /// rejoining leader acts as a follower and does not assign (a Stable group would not hand its assignment
    /// out); from v9 it names the leader and sets `skip_assignment` (KIP-814).
    pub(super) fn answer_static_rejoins(&mut self) {
        let ids: Vec<String> = self
            .members
            .values()
            .filter(|m| m.static_rejoin.is_some())
            .map(|m| m.id.clone())
            .collect();
        for id in ids {
            let mut out = self.join_outcome(&id);
            let Some(m) = self.members.get_mut(&id) else {
                continue;
            };
            let Some(rejoin) = m.static_rejoin.take() else {
                continue;
            };
            if rejoin.supports_skip_assignment {
                out.skip_assignment = !out.members.is_empty();
            } else {
                out.members.clear();
                out.leader = rejoin.old_leader.unwrap_or_default();
            }
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(out);
            }
        }
    }

    /// The record naming rejoined static members' new ids could not be written: the old incarnations come
    /// back (memory never disagrees with the log) and the joins fail with the write's error.
    pub(super) fn undo_static_rejoins(&mut self, error: i16, now: i64) {
        let ids: Vec<String> = self
            .members
            .values()
            .filter(|m| m.static_rejoin.is_some())
            .map(|m| m.id.clone())
            .collect();
        for id in ids {
            let Some(mut m) = self.members.remove(&id) else {
                continue;
            };
            let Some(rejoin) = m.static_rejoin.take() else {
                continue;
            };
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinOutcome {
                    error,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    leader: rejoin.old_leader.clone().unwrap_or_default(),
                    ..Default::default()
                });
            }
            m.id = rejoin.old_id.clone();
            m.protocols = rejoin.old_protocols;
            m.session_timeout = rejoin.old_session_timeout;
            m.rebalance_timeout = rejoin.old_rebalance_timeout;
            m.heartbeat_deadline = now + i64::from(m.session_timeout);
            if let Some(inst) = &m.instance_id {
                self.statics.insert(inst.clone(), rejoin.old_id.clone());
            }
            self.leader = rejoin.old_leader;
            self.members.insert(rejoin.old_id, m);
        }
    }
}
