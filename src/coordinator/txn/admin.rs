//! The read side of the transaction admin APIs: ListTransactions' filters over every loaded shard (Kafka 4.1's
//! `TransactionStateManager.listTransactionStates`) and one id's metadata for DescribeTransactions
//! (`TransactionCoordinator.handleDescribeTransactions`).
//!
//! Ownership: nothing is kept here. A listing takes each shard's lock in turn (through the runtime's
//! `for_each_shard`, for one pass over that shard's ids), a describe the one shard's lock; neither writes.
//! Bounds: the filters are as large as the request (already bounded by `socket.request.max.bytes`), the
//! pattern is capped at [`MAX_PATTERN_BYTES`] and its automaton at [`PATTERN_SIZE_LIMIT`], and a listing is at
//! most the ids the shards hold (each shard is capped by `TxnLimits::max_transactional_ids`).

use std::collections::HashSet;

use super::{TxnCoordinator, TxnMetadata, TxnShard, TxnState};
use crate::coordinator::runtime::CoordinatorError;

/// Longest `transactional_id_pattern` accepted (KIP-1152): far beyond any useful pattern, and keeps parsing
/// a hostile one cheap. Longer ones are answered INVALID_REGULAR_EXPRESSION.
pub const MAX_PATTERN_BYTES: usize = 32 * 1024;

/// Largest compiled pattern (bytes of automaton), so a pattern cannot take the broker's memory.
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// The filters of one ListTransactions request, checked once. Kafka ANDs them; an empty one keeps everything.
#[derive(Debug)]
pub struct ListFilter {
    /// Whether the request named any state (known or not): then only the known ones are listed, so a request
    /// naming only unknown states lists nothing, as in Kafka.
    filter_states: bool,
    states: HashSet<TxnState>,
    /// State names the coordinator does not know, each once, in request order (`unknown_state_filters`).
    unknown_states: Vec<String>,
    producer_ids: HashSet<i64>,
    /// Only transactions running longer than this (ms; v1+, KIP-994); negative: no filter.
    duration_ms: i64,
    /// Only ids the whole of which this matches (v2+, KIP-1152).
    pattern: Option<regex::Regex>,
}

/// The pattern of a ListTransactions request cannot be compiled (INVALID_REGULAR_EXPRESSION).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("transactional id pattern `{pattern}` is not a valid regular expression: {reason}")]
pub struct InvalidPattern {
    /// The pattern, cut to 200 bytes for the log line.
    pub pattern: String,
    /// The reason.
    pub reason: String,
}

/// One listed transaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    /// The transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Its state.
    pub state: TxnState,
}

impl TxnState {
    /// The state of a name DescribeTransactions shows (Kafka's `TransactionState.fromName`: exact, case
    /// sensitive).
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Compiles a transactional id pattern the way Kafka uses RE2/J's: the whole id must match
/// (`matcher(id).matches()`). The pattern is checked alone first, so one that is invalid on its own (an
/// unbalanced parenthesis) cannot become valid inside the anchoring group.
fn compile_pattern(pattern: &str) -> Result<regex::Regex, InvalidPattern> {
    let invalid = |reason: String| InvalidPattern {
        pattern: cut(pattern, 200).to_string(),
        reason,
    };
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(invalid(format!("longer than {MAX_PATTERN_BYTES} bytes")));
    }
    let build = |p: &str| {
        regex::RegexBuilder::new(p)
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map_err(|e| invalid(e.to_string()))
    };
    build(pattern)?;
    build(&format!(r"\A(?:{pattern})\z"))
}

impl ListFilter {
    /// The filters of a request: state names, producer ids, the duration (-1: none) and the pattern (`None`
    /// or empty: none).
    pub fn new(
        state_names: &[&str],
        producer_ids: &[i64],
        duration_ms: i64,
        pattern: Option<&str>,
    ) -> Result<ListFilter, InvalidPattern> {
        let pattern = match pattern {
            Some(p) if !p.is_empty() => Some(compile_pattern(p)?),
            _ => None,
        };
        let mut states = HashSet::new();
        let mut unknown_states = Vec::new();
        let mut seen = HashSet::new();
        for &name in state_names {
            match TxnState::from_name(name) {
                Some(s) => {
                    states.insert(s);
                }
                None => {
                    if seen.insert(name) {
                        unknown_states.push(name.to_string());
                    }
                }
            }
        }
        Ok(ListFilter {
            filter_states: !state_names.is_empty(),
            states,
            unknown_states,
            producer_ids: producer_ids.iter().copied().collect(),
            duration_ms,
            pattern,
        })
    }

    /// The state names the coordinator does not know.
    pub fn unknown_states(&self) -> &[String] {
        &self.unknown_states
    }

    /// Whether one id is listed at `now`. `Dead` never is (an id on its way out). The duration compares
    /// `now - start` even when the transaction has no start time (-1), exactly as Kafka does, so an idle id
    /// passes any duration filter smaller than the clock.
    pub fn matches(&self, id: &str, m: &TxnMetadata, now: i64) -> bool {
        if m.state == TxnState::Dead {
            return false;
        }
        if !self.producer_ids.is_empty() && !self.producer_ids.contains(&m.producer_id) {
            return false;
        }
        if self.filter_states && !self.states.contains(&m.state) {
            return false;
        }
        if self.duration_ms >= 0 && now.saturating_sub(m.start_ms) <= self.duration_ms {
            return false;
        }
        self.pattern.as_ref().is_none_or(|p| p.is_match(id))
    }
}

impl TxnShard {
    /// The ids of this shard that pass `filter` at `now`, appended to `out`.
    pub fn list_into(&self, filter: &ListFilter, now: i64, out: &mut Vec<Listed>) {
        out.extend(
            self.iter()
                .filter(|(id, m)| filter.matches(id, m, now))
                .map(|(id, m)| Listed {
                    transactional_id: id.clone(),
                    producer_id: m.producer_id,
                    state: m.state,
                }),
        );
    }
}

/// What DescribeTransactions shows of one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The state.
    pub state: TxnState,
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub timeout_ms: i32,
    /// When the transaction started (-1: none).
    pub start_ms: i64,
    /// The partitions of the running transaction, by topic, each in order.
    pub topics: Vec<(String, Vec<i32>)>,
}

impl TxnCoordinator {
    /// ListTransactions over every loaded shard, sorted by id. `Err(Loading)` while any shard loads (Kafka
    /// answers COORDINATOR_LOAD_IN_PROGRESS and nothing else then).
    pub fn list_transactions(
        &self,
        filter: &ListFilter,
        now: i64,
    ) -> Result<Vec<Listed>, CoordinatorError> {
        let mut out = Vec::new();
        let all_loaded = self
            .runtime()
            .for_each_shard(|shard| shard.list_into(filter, now, &mut out));
        if !all_loaded {
            return Err(CoordinatorError::Loading);
        }
        out.sort();
        Ok(out)
    }

    /// DescribeTransactions of one id: `Ok(None)` for an id this coordinator does not know (or one being
    /// expired), `Err` when it is not this broker's or its shard is loading.
    pub fn describe_transaction(&self, id: &str) -> Result<Option<Described>, CoordinatorError> {
        self.runtime().read(id, |shard| {
            let m = shard.get(id).filter(|m| m.state != TxnState::Dead)?;
            let mut topics: Vec<(String, Vec<i32>)> = Vec::new();
            for (topic, p) in &m.partitions {
                match topics.last_mut() {
                    Some((t, ps)) if t == topic => ps.push(*p),
                    _ => topics.push((topic.clone(), vec![*p])),
                }
            }
            Some(Described {
                state: m.state,
                producer_id: m.producer_id,
                producer_epoch: m.producer_epoch,
                timeout_ms: m.timeout_ms,
                start_ms: m.start_ms,
                topics,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::txn::{TxnLimits, TxnRecord};

    fn meta(pid: i64, state: TxnState, start_ms: i64) -> TxnMetadata {
        let mut m = TxnMetadata::new(pid, 60_000, 0);
        m.producer_epoch = 0;
        m.state = state;
        m.start_ms = start_ms;
        m
    }

    /// A shard holding `txns`, built by replay like the runtime builds it.
    fn shard(txns: &[(&str, TxnMetadata)]) -> TxnShard {
        let mut s = TxnShard::new(TxnLimits::default());
        for (id, m) in txns {
            s.replay(&TxnRecord {
                transactional_id: id.to_string(),
                value: Some(m.clone()),
            });
        }
        s
    }

    fn ids(s: &TxnShard, f: &ListFilter, now: i64) -> Vec<String> {
        let mut out = Vec::new();
        s.list_into(f, now, &mut out);
        let mut v: Vec<String> = out.into_iter().map(|l| l.transactional_id).collect();
        v.sort();
        v
    }

    fn filter(states: &[&str], pids: &[i64], duration: i64, pattern: Option<&str>) -> ListFilter {
        ListFilter::new(states, pids, duration, pattern).unwrap()
    }

    fn sample() -> TxnShard {
        shard(&[
            ("a-1", meta(1, TxnState::Ongoing, 1_000)),
            ("a-2", meta(2, TxnState::Empty, -1)),
            ("b-3", meta(3, TxnState::CompleteCommit, 5_000)),
            ("b-4", meta(4, TxnState::PrepareAbort, 9_000)),
        ])
    }

    #[test]
    fn no_filter_lists_everything() {
        let s = sample();
        assert_eq!(
            ids(&s, &filter(&[], &[], -1, None), 10_000),
            ["a-1", "a-2", "b-3", "b-4"]
        );
        // An empty pattern is no filter (v2 clients send "" or null).
        assert_eq!(ids(&s, &filter(&[], &[], -1, Some("")), 10_000).len(), 4);
    }

    #[test]
    fn state_filter_is_exact_and_unknown_names_list_nothing() {
        let s = sample();
        assert_eq!(
            ids(
                &s,
                &filter(&["Ongoing", "CompleteCommit"], &[], -1, None),
                0
            ),
            ["a-1", "b-3"]
        );
        // Kafka's names are case sensitive: "ongoing" is an unknown state.
        let f = filter(&["ongoing", "Bogus", "ongoing"], &[], -1, None);
        assert_eq!(f.unknown_states(), ["ongoing", "Bogus"]);
        assert!(ids(&s, &f, 0).is_empty(), "only unknown states: nothing");
        let f = filter(&["Bogus", "Empty"], &[], -1, None);
        assert_eq!(f.unknown_states(), ["Bogus"]);
        assert_eq!(ids(&s, &f, 0), ["a-2"]);
    }

    #[test]
    fn producer_id_filter() {
        let s = sample();
        assert_eq!(
            ids(&s, &filter(&[], &[2, 4, 99], -1, None), 0),
            ["a-2", "b-4"]
        );
        assert!(ids(&s, &filter(&[], &[99], -1, None), 0).is_empty());
    }

    /// KIP-994: only transactions running *longer* than the duration; an id with no start time (-1) counts
    /// from -1, as in Kafka.
    #[test]
    fn duration_filter_is_strictly_older_than() {
        let s = sample();
        let now = 10_000;
        // a-1 runs 9000 ms, b-3 started 5000 ms ago, b-4 1000 ms ago, a-2 has no start (now + 1).
        assert_eq!(
            ids(&s, &filter(&[], &[], 9_000, None), now),
            ["a-2"],
            "exactly 9000 ms is not longer than 9000"
        );
        assert_eq!(ids(&s, &filter(&[], &[], 8_999, None), now), ["a-1", "a-2"]);
        assert_eq!(
            ids(&s, &filter(&["Ongoing"], &[], 0, None), now),
            ["a-1"],
            "ANDed with the state filter"
        );
        assert_eq!(ids(&s, &filter(&[], &[], 0, None), now).len(), 4);
        assert_eq!(ids(&s, &filter(&[], &[], i64::MAX, None), now).len(), 0);
    }

    #[test]
    fn pattern_must_match_the_whole_id() {
        let s = sample();
        assert_eq!(
            ids(&s, &filter(&[], &[], -1, Some("a-.*")), 0),
            ["a-1", "a-2"]
        );
        assert!(
            ids(&s, &filter(&[], &[], -1, Some("a")), 0).is_empty(),
            "matches(), not find()"
        );
        assert_eq!(
            ids(&s, &filter(&[], &[], -1, Some("a-1|b-4")), 0),
            ["a-1", "b-4"]
        );
        assert_eq!(
            ids(&s, &filter(&["Ongoing"], &[], -1, Some(".*")), 0),
            ["a-1"]
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["(", "a)|(b", "[z-a]", "x{2,1}"] {
            assert!(
                ListFilter::new(&[], &[], -1, Some(bad)).is_err(),
                "{bad} must be refused"
            );
        }
        let long = "a".repeat(MAX_PATTERN_BYTES + 1);
        assert!(ListFilter::new(&[], &[], -1, Some(&long)).is_err());
        // An automaton beyond the size limit is refused instead of built.
        assert!(ListFilter::new(&[], &[], -1, Some(r"(\w{500}){500}")).is_err());
    }

    #[test]
    fn dead_is_never_listed() {
        let s = shard(&[("d", meta(5, TxnState::Ongoing, 0))]);
        let mut m = meta(5, TxnState::Dead, 0);
        let f = filter(&["Dead"], &[], -1, None);
        assert!(f.unknown_states().is_empty(), "Dead is a known state");
        assert!(!f.matches("d", &m, 0));
        m.state = TxnState::Ongoing;
        assert!(!f.matches("d", &m, 0), "not in the filter");
        assert!(ids(&s, &f, 0).is_empty());
    }

    #[test]
    fn state_names_round_trip() {
        for st in TxnState::ALL {
            assert_eq!(TxnState::from_name(st.name()), Some(st));
        }
        assert_eq!(TxnState::from_name("ONGOING"), None);
        assert_eq!(TxnState::from_name(""), None);
    }
}
