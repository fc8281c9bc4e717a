//! Server-side assignors of KIP-848 consumer groups (Kafka's `UniformAssignor` and `RangeAssignor`): pure
//! functions from the members' subscriptions, the topics' partition counts and the current target assignment
//! to the new target assignment. The group coordinator ([`super::consumer`]) calls them whenever the group
//! epoch moves past the target assignment epoch; revocation before reassignment is not their concern (the
//! member reconciliation handles it).

pub mod range;
pub mod uniform;

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::records::TopicAssignment;

/// The assignors this broker implements, by Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// `uniform`: balanced and sticky.
    Uniform,
    /// `range`: per-topic ranges in member order, so co-partitioned topics line up.
    Range,
}

impl Assignor {
    /// By name (`group.consumer.assignors` entries and the request's ServerAssignor).
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "uniform" => Some(Assignor::Uniform),
            "range" => Some(Assignor::Range),
            _ => None,
        }
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    /// Computes the target assignment.
    pub fn assign(self, spec: &AssignmentSpec) -> BTreeMap<String, TopicAssignment> {
        match self {
            Assignor::Uniform => uniform::assign(spec),
            Assignor::Range => range::assign(spec),
        }
    }
}

/// One member as the assignor sees it.
#[derive(Debug, Clone, Default)]
pub struct MemberSpec {
    /// Topic ids the member subscribes to (that exist).
    pub topics: BTreeSet<Uuid>,
    /// Its current target assignment (for stickiness).
    pub current: TopicAssignment,
}

/// The assignor's input.
#[derive(Debug, Clone, Default)]
pub struct AssignmentSpec {
    /// Members by id.
    pub members: BTreeMap<String, MemberSpec>,
    /// Partition count per topic id (the subscribed topics that exist).
    pub partitions: BTreeMap<Uuid, i32>,
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    pub fn spec(members: &[(&str, &[u128])], topics: &[(u128, i32)]) -> AssignmentSpec {
        AssignmentSpec {
            members: members
                .iter()
                .map(|(m, t)| {
                    (
                        m.to_string(),
                        MemberSpec {
                            topics: t.iter().map(|x| Uuid::from_u128(*x)).collect(),
                            current: TopicAssignment::new(),
                        },
                    )
                })
                .collect(),
            partitions: topics
                .iter()
                .map(|(t, n)| (Uuid::from_u128(*t), *n))
                .collect(),
        }
    }

    pub fn count(a: &TopicAssignment) -> usize {
        a.values().map(|p| p.len()).sum()
    }

    /// Every partition of every subscribed topic is assigned exactly once, to a subscriber.
    pub fn check_complete(spec: &AssignmentSpec, out: &BTreeMap<String, TopicAssignment>) {
        let mut seen = BTreeSet::new();
        for (m, a) in out {
            for (t, ps) in a {
                assert!(
                    spec.members[m].topics.contains(t),
                    "{m} not subscribed to {t}"
                );
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{t}-{p} assigned twice");
                }
            }
        }
        for (t, n) in &spec.partitions {
            if spec.members.values().any(|m| m.topics.contains(t)) {
                for p in 0..*n {
                    assert!(seen.contains(&(*t, p)), "{t}-{p} unassigned");
                }
            }
        }
    }
}
