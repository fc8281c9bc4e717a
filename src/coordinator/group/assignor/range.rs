//! The range assignor: for each topic, its subscribers sorted by member id get consecutive ranges of
//! partitions, the first `partitions % members` one more. Members subscribed to the same co-partitioned
//! topics (same partition count) get the same partition numbers of each, which joins across topics rely on.
//! Not sticky: with the server reconciling, a moved partition is revoked before it is reassigned, so the cost
//! of a shuffle is one revocation round, not duplicated processing.

use std::collections::BTreeMap;

use super::AssignmentSpec;
use crate::coordinator::group::records::TopicAssignment;

/// Computes the range assignment.
pub fn assign(spec: &AssignmentSpec) -> BTreeMap<String, TopicAssignment> {
    let mut out: BTreeMap<String, TopicAssignment> = spec
        .members
        .keys()
        .map(|m| (m.clone(), TopicAssignment::new()))
        .collect();
    for (topic, &count) in &spec.partitions {
        // BTreeMap keys: members already sorted by id.
        let subscribers: Vec<&String> = spec
            .members
            .iter()
            .filter(|(_, m)| m.topics.contains(topic))
            .map(|(id, _)| id)
            .collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let n = i32::try_from(subscribers.len()).unwrap_or(i32::MAX);
        let (quota, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subscribers.iter().enumerate() {
            let i = i32::try_from(i).unwrap_or(i32::MAX);
            let take = quota + i32::from(i < extra);
            if take > 0 {
                if let Some(a) = out.get_mut(*m) {
                    a.entry(*topic).or_default().extend(next..next + take);
                }
            }
            next += take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use uuid::Uuid;

    #[test]
    fn ranges_in_member_order() {
        let s = spec(&[("b", &[1]), ("a", &[1]), ("c", &[1])], &[(1, 7)]);
        let out = assign(&s);
        check_complete(&s, &out);
        let t = Uuid::from_u128(1);
        assert_eq!(out["a"][&t], [0, 1, 2].into());
        assert_eq!(out["b"][&t], [3, 4].into());
        assert_eq!(out["c"][&t], [5, 6].into());
    }

    #[test]
    fn co_partitioned_topics_line_up() {
        let s = spec(
            &[("m1", &[1, 2]), ("m2", &[1, 2]), ("m3", &[1, 2])],
            &[(1, 6), (2, 6)],
        );
        let out = assign(&s);
        check_complete(&s, &out);
        for a in out.values() {
            assert_eq!(a[&Uuid::from_u128(1)], a[&Uuid::from_u128(2)]);
            assert_eq!(count(a), 4);
        }
    }

    #[test]
    fn only_subscribers_get_a_topic_and_more_members_than_partitions() {
        let s = spec(
            &[("a", &[1]), ("b", &[1, 2]), ("c", &[2])],
            &[(1, 1), (2, 3)],
        );
        let out = assign(&s);
        check_complete(&s, &out);
        assert_eq!(count(&out["a"]), 1);
        assert_eq!(out["b"][&Uuid::from_u128(2)], [0, 1].into());
        assert!(!out["b"].contains_key(&Uuid::from_u128(1)));
        assert_eq!(count(&out["c"]), 1);
    }
}
