//! One member's step towards its target assignment (Kafka's `CurrentAssignmentBuilder`). Partitions the
//! member must give up are revoked first, at its current epoch; only after it confirms (a heartbeat whose
//! owned partitions no longer include them) does it move to the target epoch. A partition another member
//! still owns or still has to revoke is held back ("unreleased") until that member lets it go, so no
//! partition ever has two owners.

use std::collections::HashMap;

use uuid::Uuid;

use super::{ConsumerMember, MemberState};
use crate::coordinator::group::records::TopicAssignment;

/// The member's next current assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Member epoch.
    pub epoch: i32,
    /// Previous member epoch.
    pub previous_epoch: i32,
    /// State.
    pub state: MemberState,
    /// Assigned (owned) partitions.
    pub assigned: TopicAssignment,
    /// Partitions to revoke.
    pub pending_revocation: TopicAssignment,
}

impl Step {
    /// The member as it is.
    pub fn unchanged(m: &ConsumerMember) -> Step {
        Step {
            epoch: m.epoch,
            previous_epoch: m.previous_epoch,
            state: m.state,
            assigned: m.assigned.clone(),
            pending_revocation: m.pending_revocation.clone(),
        }
    }
}

fn contains(a: &TopicAssignment, t: &Uuid, p: i32) -> bool {
    a.get(t).is_some_and(|ps| ps.contains(&p))
}

fn insert(a: &mut TopicAssignment, t: Uuid, p: i32) {
    a.entry(t).or_default().insert(p);
}

/// Computes the member's next step. `owned` is what the request says the member owns (`None` when it did not
/// say); `owners` maps the partitions other members own or must revoke.
pub fn reconcile(
    m: &ConsumerMember,
    target: &TopicAssignment,
    target_epoch: i32,
    owned: Option<&TopicAssignment>,
    owners: &HashMap<(Uuid, i32), &str>,
) -> Step {
    match m.state {
        MemberState::Stable if m.epoch == target_epoch => Step::unchanged(m),
        MemberState::UnrevokedPartitions => {
            let revoked = owned.is_some_and(|o| {
                !m.pending_revocation
                    .iter()
                    .any(|(t, ps)| ps.iter().any(|p| contains(o, t, *p)))
            });
            if revoked {
                next(m, target, target_epoch, owned, owners)
            } else {
                Step::unchanged(m)
            }
        }
        _ => next(m, target, target_epoch, owned, owners),
    }
}

fn next(
    m: &ConsumerMember,
    target: &TopicAssignment,
    target_epoch: i32,
    owned: Option<&TopicAssignment>,
    owners: &HashMap<(Uuid, i32), &str>,
) -> Step {
    let mut kept = TopicAssignment::new();
    let mut revoke = TopicAssignment::new();
    for (t, ps) in &m.assigned {
        for &p in ps {
            if contains(target, t, p) {
                insert(&mut kept, *t, p);
            } else {
                insert(&mut revoke, *t, p);
            }
        }
    }
    let mut unreleased = false;
    let mut assigned = kept.clone();
    for (t, ps) in target {
        for &p in ps {
            if contains(&m.assigned, t, p) {
                continue;
            }
            if owners.contains_key(&(*t, p)) {
                unreleased = true;
            } else {
                insert(&mut assigned, *t, p);
            }
        }
    }
    // The member still holds a partition it must give up (or did not say what it holds): revoke first.
    let still_owns = |a: &TopicAssignment| match owned {
        None => !a.is_empty(),
        Some(o) => a
            .iter()
            .any(|(t, ps)| ps.iter().any(|p| contains(o, t, *p))),
    };
    if still_owns(&revoke) {
        return Step {
            epoch: m.epoch,
            previous_epoch: m.epoch,
            state: MemberState::UnrevokedPartitions,
            assigned: kept,
            pending_revocation: revoke,
        };
    }
    Step {
        epoch: target_epoch,
        previous_epoch: m.epoch,
        state: if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        },
        assigned,
        pending_revocation: TopicAssignment::new(),
    }
}
