//! The durable side of a [`ClassicGroup`]: its `GroupMetadata` record, and the replay of such a record, which
//! is the only way a rebalance completes and the way loading rebuilds a group. A child module of `classic` so
//! it shares the group's private state; same owner and lock (the shard's).

use super::*;

impl ClassicGroup {
    pub(super) fn metadata_value(&self, now: i64) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: now,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: m.rebalance_timeout,
                    session_timeout: m.session_timeout,
                    subscription: m.metadata_for(self.protocol.as_deref().unwrap_or_default()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// The group's current metadata as a record.
    pub fn metadata_record(&self, now: i64) -> GroupRecord {
        GroupRecord {
            key: RecordKey::Group {
                group: self.id.clone(),
            },
            value: Some(RecordValue::Group(self.metadata_value(now))),
        }
    }

    /// Replays a `GroupMetadata` record. At run time the record of the current generation completes the
    /// rebalance (assignments stored, waiting syncs answered); during loading it rebuilds the group, whose
    /// members then have a full session timeout to heartbeat.
    pub fn replay(&mut self, v: &GroupValue, now: i64) {
        if self.state == GroupState::CompletingRebalance && self.generation == v.generation {
            for mv in &v.members {
                if let Some(m) = self.members.get_mut(&mv.member_id) {
                    m.assignment = mv.assignment.clone();
                }
            }
            self.set_state(GroupState::Stable, now);
            let (pt, pn) = (self.protocol_type.clone(), self.protocol.clone());
            for m in self.members.values_mut() {
                if let Some(tx) = m.awaiting_sync.take() {
                    let _ = tx.send(SyncOutcome {
                        error: 0,
                        protocol_type: pt.clone(),
                        protocol_name: pn.clone(),
                        assignment: m.assignment.clone(),
                    });
                }
            }
            return;
        }
        let same_members = self.members.len() == v.members.len()
            && v.members
                .iter()
                .all(|m| self.members.contains_key(&m.member_id));
        if !self.members.is_empty() && self.generation == v.generation && same_members {
            // Our own record, already reflected: a static member's new id in a Stable group (answered now
            // that it is written). During loading a record of the same generation with other member ids (a
            // static member replaced) is rebuilt below.
            if self.state == GroupState::Stable {
                self.answer_static_rejoins();
            }
            return;
        }
        for id in self.members.keys().cloned().collect::<Vec<_>>() {
            self.drop_member(&id);
        }
        self.generation = v.generation;
        self.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
        self.protocol = v.protocol.clone();
        self.leader = v.leader.clone();
        self.statics.clear();
        for mv in &v.members {
            if let Some(inst) = &mv.group_instance_id {
                self.statics.insert(inst.clone(), mv.member_id.clone());
            }
            self.members.insert(
                mv.member_id.clone(),
                Member {
                    id: mv.member_id.clone(),
                    instance_id: mv.group_instance_id.clone(),
                    client_id: mv.client_id.clone(),
                    client_host: mv.client_host.clone(),
                    session_timeout: mv.session_timeout,
                    rebalance_timeout: mv.rebalance_timeout,
                    protocols: vec![(
                        v.protocol.clone().unwrap_or_default(),
                        mv.subscription.clone(),
                    )],
                    assignment: mv.assignment.clone(),
                    awaiting_join: None,
                    awaiting_sync: None,
                    heartbeat_deadline: now + i64::from(mv.session_timeout),
                    static_rejoin: None,
                },
            );
        }
        if self.members.is_empty() {
            // Offsets expire counting from when the group became Empty: keep that moment across a reload
            // rather than restarting the clock at every load.
            let since = v.current_state_timestamp;
            self.set_state(
                GroupState::Empty,
                if since > 0 { since.min(now) } else { now },
            );
        } else {
            self.set_state(GroupState::Stable, now);
        }
    }
}
