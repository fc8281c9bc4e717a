//! The uniform assignor: every partition of the subscribed topics goes to one of its subscribers, partition
//! counts per member differ by at most one where the subscriptions allow it, and partitions stay where they
//! were (the member's current target) as far as balance allows, so a rebalance moves only what it must.
//!
//! How: every member keeps the partitions of its current target that it still subscribes to; unassigned
//! partitions go one by one to the least loaded subscriber; then partitions move from the most loaded member
//! to a subscriber holding at least two fewer, until no such move exists (each move lowers the sum of squared
//! counts, so this ends). Moves are capped at `MAX_MOVES` so a pathological heterogeneous group cannot hold
//! the shard's lock for long; in the homogeneous case the cap is never reached (at most one move per
//! partition).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::AssignmentSpec;
use crate::coordinator::group::records::TopicAssignment;

/// Most balancing moves of one assignment.
const MAX_MOVES: usize = 100_000;

/// Computes the uniform assignment.
pub fn assign(spec: &AssignmentSpec) -> BTreeMap<String, TopicAssignment> {
    let ids: Vec<&String> = spec.members.keys().collect();
    let mut owned: Vec<BTreeSet<(Uuid, i32)>> = vec![BTreeSet::new(); ids.len()];
    // Subscribers (member indexes) of each existing topic.
    let mut subscribers: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
    for (i, m) in spec.members.values().enumerate() {
        for t in &m.topics {
            if spec.partitions.contains_key(t) {
                subscribers.entry(*t).or_default().push(i);
            }
        }
    }
    // 1. Stickiness: keep current partitions still subscribed to and still existing.
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for (i, m) in spec.members.values().enumerate() {
        for (t, ps) in &m.current {
            let Some(&n) = spec.partitions.get(t) else {
                continue;
            };
            if !m.topics.contains(t) {
                continue;
            }
            for &p in ps {
                if (0..n).contains(&p) && taken.insert((*t, p)) {
                    owned[i].insert((*t, p));
                }
            }
        }
    }
    // 2. Unassigned partitions to the least loaded subscriber (ties: member id order).
    for (t, subs) in &subscribers {
        let n = spec.partitions.get(t).copied().unwrap_or(0);
        for p in 0..n {
            if taken.contains(&(*t, p)) {
                continue;
            }
            if let Some(&best) = subs.iter().min_by_key(|&&i| (owned[i].len(), i)) {
                owned[best].insert((*t, p));
                taken.insert((*t, p));
            }
        }
    }
    // 3. Balance: move from heavy to light subscribers while the gap is two or more.
    let mut moves = 0;
    'outer: while moves < MAX_MOVES {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(owned[i].len()), i));
        for &a in &order {
            let load = owned[a].len();
            // Give away the highest partitions first so the low ones stay put.
            let candidate = owned[a].iter().rev().find_map(|&(t, p)| {
                let subs = subscribers.get(&t)?;
                let &b = subs
                    .iter()
                    .filter(|&&b| b != a)
                    .min_by_key(|&&b| (owned[b].len(), b))?;
                (owned[b].len() + 1 < load).then_some(((t, p), b))
            });
            if let Some((tp, b)) = candidate {
                owned[a].remove(&tp);
                owned[b].insert(tp);
                moves += 1;
                continue 'outer;
            }
        }
        break;
    }
    ids.into_iter()
        .zip(owned)
        .map(|(id, tps)| {
            let mut a = TopicAssignment::new();
            for (t, p) in tps {
                a.entry(t).or_default().insert(p);
            }
            (id.clone(), a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn counts(out: &BTreeMap<String, TopicAssignment>) -> Vec<usize> {
        out.values().map(count).collect()
    }

    #[test]
    fn balanced_over_topics() {
        let s = spec(
            &[("a", &[1, 2]), ("b", &[1, 2]), ("c", &[1, 2])],
            &[(1, 6), (2, 1)],
        );
        let out = assign(&s);
        check_complete(&s, &out);
        let c = counts(&out);
        assert_eq!(c.iter().sum::<usize>(), 7);
        assert!(
            c.iter().max().unwrap() - c.iter().min().unwrap() <= 1,
            "{c:?}"
        );
    }

    /// A joining member takes only what balance needs; everyone else keeps what they had.
    #[test]
    fn sticky_when_a_member_joins_and_leaves() {
        let mut s = spec(&[("a", &[1]), ("b", &[1])], &[(1, 6)]);
        let first = assign(&s);
        check_complete(&s, &first);
        assert_eq!(counts(&first), vec![3, 3]);
        for (m, a) in &first {
            s.members.get_mut(m).unwrap().current = a.clone();
        }
        s.members.insert(
            "c".into(),
            crate::coordinator::group::assignor::MemberSpec {
                topics: [Uuid::from_u128(1)].into(),
                current: TopicAssignment::new(),
            },
        );
        let second = assign(&s);
        check_complete(&s, &second);
        assert_eq!(counts(&second), vec![2, 2, 2]);
        let t = Uuid::from_u128(1);
        for m in ["a", "b"] {
            assert!(
                second[m][&t].is_subset(&first[m][&t]),
                "{m} lost a kept partition"
            );
        }
        // "b" leaves: "a" and "c" keep theirs and share b's.
        for (m, a) in &second {
            s.members.get_mut(m).unwrap().current = a.clone();
        }
        s.members.remove("b");
        let third = assign(&s);
        check_complete(&s, &third);
        assert_eq!(counts(&third), vec![3, 3]);
        for m in ["a", "c"] {
            assert!(second[m][&t].is_subset(&third[m][&t]));
        }
    }

    /// Heterogeneous subscriptions: a topic only one member wants stays with it; the shared topic balances
    /// the totals as far as possible.
    #[test]
    fn heterogeneous_subscriptions() {
        let s = spec(&[("a", &[1, 2]), ("b", &[1])], &[(1, 4), (2, 2)]);
        let out = assign(&s);
        check_complete(&s, &out);
        assert_eq!(counts(&out), vec![3, 3]);
        assert_eq!(out["a"][&Uuid::from_u128(2)].len(), 2);
    }

    #[test]
    fn unsubscribed_and_deleted_topics_are_dropped_from_current() {
        let mut s = spec(&[("a", &[1])], &[(1, 2)]);
        s.members.get_mut("a").unwrap().current = [
            (Uuid::from_u128(1), [0, 1, 5].into()),
            (Uuid::from_u128(9), [0].into()),
        ]
        .into();
        let out = assign(&s);
        check_complete(&s, &out);
        assert_eq!(out["a"], [(Uuid::from_u128(1), [0, 1].into())].into());
    }
}
