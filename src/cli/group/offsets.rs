//! `vltava group reset-offsets` and `delete-offsets`. Planning a reset is pure ([`new_offset`], clamped to
//! [log start, log end] as Kafka's `ConsumerGroupCommand` does); executing it is one OffsetCommit with
//! generation -1 and no member id, which the coordinator accepts only from outside an active group.

use std::collections::BTreeMap;

use clap::Args;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::super::client::ClientError;
use super::super::topic::{check, s};
use super::cluster::{Cluster, EARLIEST, LATEST};
use super::{committed, describe_group, print_table, row};

/// `vltava group reset-offsets ...`
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("scenario").required(true).args(
    ["to_earliest", "to_latest", "to_datetime", "to_offset", "shift_by"])))]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["topics", "all_topics"])))]
pub struct ResetArgs {
    /// Group id.
    pub group: String,
    /// TOPIC or TOPIC:P,P,... (repeatable).
    #[arg(long = "topic", value_name = "TOPIC[:P,...]")]
    pub topics: Vec<String>,
    /// Every partition the group has committed offsets for.
    #[arg(long)]
    pub all_topics: bool,
    /// The log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// The log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// The first offset whose timestamp is at or after this time (RFC 3339, e.g. 2026-01-31T12:00:00Z, or
    /// epoch milliseconds); the log end where there is none.
    #[arg(long, value_name = "TIME")]
    pub to_datetime: Option<String>,
    /// This offset.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub to_offset: Option<i64>,
    /// The committed offset plus N (N may be negative).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Commit the new offsets (without it the plan is only printed).
    #[arg(long)]
    pub execute: bool,
    /// Only print the plan (the default).
    #[arg(long, conflicts_with = "execute")]
    pub dry_run: bool,
}

/// Where a reset goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Log start.
    Earliest,
    /// Log end.
    Latest,
    /// The offset ListOffsets found for a time (`None`: no record that late, i.e. the log end).
    Datetime,
    /// A given offset.
    Offset(i64),
    /// Committed + N.
    ShiftBy(i64),
}

/// One partition's offsets as the plan needs them.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionOffsets {
    /// Log start offset.
    pub start: i64,
    /// Log end offset.
    pub end: i64,
    /// Committed offset, if any.
    pub current: Option<i64>,
    /// ListOffsets by time (Datetime only).
    pub by_time: Option<i64>,
}

/// The new offset of one partition, clamped to [log start, log end] like Kafka's `checkOffsetRange`.
pub fn new_offset(scenario: Scenario, o: PartitionOffsets) -> Result<i64, String> {
    let target = match scenario {
        Scenario::Earliest => o.start,
        Scenario::Latest => o.end,
        Scenario::Datetime => o.by_time.unwrap_or(o.end),
        Scenario::Offset(n) => n,
        Scenario::ShiftBy(n) => match o.current {
            Some(c) => c.saturating_add(n),
            None => return Err("there is no committed offset to shift".into()),
        },
    };
    Ok(target.clamp(o.start, o.end.max(o.start)))
}

/// Parses TOPIC or TOPIC:P,P,...
pub fn parse_topic_spec(spec: &str) -> Result<(String, Option<Vec<i32>>), String> {
    let (topic, parts) = match spec.split_once(':') {
        None => (spec, None),
        Some((t, ps)) => {
            let parts = ps
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|p| *p >= 0)
                        .ok_or_else(|| format!("`{p}` in `{spec}` is not a partition number"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (t, Some(parts))
        }
    };
    if topic.is_empty() {
        return Err(format!("`{spec}` names no topic"));
    }
    Ok((topic.to_string(), parts))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Epoch milliseconds, or RFC 3339 / ISO 8601 `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]` (no zone = UTC).
pub fn parse_datetime(text: &str) -> Result<i64, String> {
    let bad =
        || format!("`{text}` is neither epoch milliseconds nor a time like 2026-01-31T12:00:00Z");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = text.get(from..from + len).ok_or_else(bad)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        // Milliseconds: the first three digits, padded.
        let digits = &text[start..i.min(start + 3)];
        millis = format!("{digits:0<3}").parse::<i64>().map_err(|_| bad())?;
    }
    let offset_min = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let m = num(i + 1, 2)? * 60 + num(i + 4, 2)?;
            if *sign == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(y, mo, d);
    Ok(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + sec * 1000 + millis)
}

fn refused(msg: String) -> ClientError {
    ClientError::Refused(msg)
}

/// Resolves topic specs to partitions: given ones, or every partition the topic has.
fn resolve(c: &mut Cluster, specs: &[String]) -> Result<Vec<(String, i32)>, ClientError> {
    let mut parsed = Vec::new();
    for spec in specs {
        parsed.push(parse_topic_spec(spec).map_err(refused)?);
    }
    let names: Vec<String> = parsed.iter().map(|(t, _)| t.clone()).collect();
    let layout = c.partitions(Some(&names))?;
    let mut out = Vec::new();
    for (topic, parts) in parsed {
        let Some(existing) = layout.get(&topic) else {
            return Err(refused(format!("topic {topic} does not exist")));
        };
        match parts {
            Some(ps) => {
                for p in ps {
                    if !existing.contains_key(&p) {
                        return Err(refused(format!("topic {topic} has no partition {p}")));
                    }
                    out.push((topic.clone(), p));
                }
            }
            None => out.extend(existing.keys().map(|p| (topic.clone(), *p))),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `reset-offsets`: refused unless the group is inactive (Empty or unknown), as Kafka refuses.
pub fn reset(c: &mut Cluster, a: &ResetArgs) -> Result<(), ClientError> {
    let group = a.group.as_str();
    if let Some(view) = describe_group(c, group)? {
        if view.state != "Empty" {
            return Err(refused(format!(
                "Assignments can only be reset if the group '{group}' is inactive, but the current state is {}.",
                view.state
            )));
        }
    }
    let current = committed(c, group)?;
    let partitions = if a.all_topics {
        current.keys().cloned().collect()
    } else {
        resolve(c, &a.topics)?
    };
    if partitions.is_empty() {
        return Err(refused(format!(
            "group '{group}' has no partitions to reset"
        )));
    }
    let scenario = if a.to_earliest {
        Scenario::Earliest
    } else if a.to_latest {
        Scenario::Latest
    } else if a.to_datetime.is_some() {
        Scenario::Datetime
    } else if let Some(n) = a.to_offset {
        Scenario::Offset(n)
    } else if let Some(n) = a.shift_by {
        Scenario::ShiftBy(n)
    } else {
        return Err(refused("no reset scenario given".into()));
    };
    let starts = c.list_offsets(&partitions, EARLIEST)?;
    let ends = c.list_offsets(&partitions, LATEST)?;
    let by_time = match &a.to_datetime {
        Some(t) => c.list_offsets(&partitions, parse_datetime(t).map_err(refused)?)?,
        None => Default::default(),
    };
    let mut plan: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut rows = vec![row(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "NEW-OFFSET",
    ])];
    for tp in &partitions {
        let (Some(start), Some(end)) = (starts.get(tp), ends.get(tp)) else {
            return Err(refused(format!(
                "no log offsets for {}-{} (is its leader available?)",
                tp.0, tp.1
            )));
        };
        let o = PartitionOffsets {
            start: *start,
            end: *end,
            current: current.get(tp).map(|x| x.0),
            // ListOffsets answers -1 when no record is that late.
            by_time: by_time.get(tp).copied().filter(|x| *x >= 0),
        };
        let new = new_offset(scenario, o)
            .map_err(|e| refused(format!("cannot reset {}-{}: {e}", tp.0, tp.1)))?;
        rows.push(vec![
            group.to_string(),
            tp.0.clone(),
            tp.1.to_string(),
            o.current.map_or_else(|| "-".into(), |x| x.to_string()),
            new.to_string(),
        ]);
        plan.insert(tp.clone(), new);
    }
    print_table(&rows);
    if !a.execute {
        println!("Dry run: nothing changed. Add --execute to commit these offsets.");
        return Ok(());
    }
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(s(group));
    req.generation_id_or_member_epoch = -1;
    req.member_id = s("");
    req.retention_time_ms = -1;
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for ((t, p), o) in &plan {
        by_topic.entry(t).or_default().push((*p, *o));
    }
    for (t, ps) in by_topic {
        let mut rt = offset_commit_request::OffsetCommitRequestTopic::default();
        rt.name = TopicName(s(t));
        for (p, o) in ps {
            let mut rp = offset_commit_request::OffsetCommitRequestPartition::default();
            rp.partition_index = p;
            rp.committed_offset = o;
            rp.committed_leader_epoch = -1;
            rp.committed_metadata = Some(s(""));
            rt.partitions.push(rp);
        }
        req.topics.push(rt);
    }
    let resp: OffsetCommitResponse = c.call_coordinator(
        group,
        ApiKey::OffsetCommit,
        9,
        &req,
        |r: &OffsetCommitResponse| {
            r.topics
                .first()
                .and_then(|t| t.partitions.first())
                .map_or(0, |p| p.error_code)
        },
    )?;
    for t in resp.topics {
        for p in t.partitions {
            check(
                p.error_code,
                None,
                &format!("commit offset of {}-{}", &*t.name, p.partition_index),
            )?;
        }
    }
    println!("Committed the new offsets of group '{group}'.");
    Ok(())
}

/// `delete-offsets`: OffsetDelete for the given partitions; a topic without partitions means every partition
/// it has (or, if it no longer exists, every partition the group committed for it).
pub fn delete_offsets(c: &mut Cluster, group: &str, specs: &[String]) -> Result<(), ClientError> {
    let mut parsed = Vec::new();
    for spec in specs {
        parsed.push(parse_topic_spec(spec).map_err(refused)?);
    }
    let names: Vec<String> = parsed.iter().map(|(t, _)| t.clone()).collect();
    let layout = c.partitions(Some(&names))?;
    let current = committed(c, group)?;
    let mut req = OffsetDeleteRequest::default();
    req.group_id = GroupId(s(group));
    for (topic, parts) in parsed {
        let parts = match parts {
            Some(ps) => ps,
            None => match layout.get(&topic) {
                Some(ps) => ps.keys().copied().collect(),
                None => current
                    .keys()
                    .filter(|(t, _)| *t == topic)
                    .map(|(_, p)| *p)
                    .collect(),
            },
        };
        if parts.is_empty() {
            return Err(refused(format!("topic {topic} does not exist")));
        }
        let mut rt = offset_delete_request::OffsetDeleteRequestTopic::default();
        rt.name = TopicName(s(&topic));
        for p in parts {
            let mut rp = offset_delete_request::OffsetDeleteRequestPartition::default();
            rp.partition_index = p;
            rt.partitions.push(rp);
        }
        req.topics.push(rt);
    }
    let resp: OffsetDeleteResponse = c.call_coordinator(
        group,
        ApiKey::OffsetDelete,
        0,
        &req,
        |r: &OffsetDeleteResponse| r.error_code,
    )?;
    check(
        resp.error_code,
        None,
        &format!("delete offsets of group {group}"),
    )?;
    let mut rows = vec![row(&["TOPIC", "PARTITION", "STATUS"])];
    let mut failed = 0;
    for t in &resp.topics {
        for p in &t.partitions {
            let status = if p.error_code == 0 {
                "Successful".to_string()
            } else {
                failed += 1;
                let name = ResponseError::try_from_code(p.error_code)
                    .map(|e| format!("{e:?}"))
                    .unwrap_or_default();
                format!("Error: {name} ({})", p.error_code)
            };
            rows.push(vec![
                t.name.to_string(),
                p.partition_index.to_string(),
                status,
            ]);
        }
    }
    print_table(&rows);
    if failed > 0 {
        return Err(refused(format!(
            "{failed} partition(s) of group '{group}' kept their offsets"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(start: i64, end: i64, current: Option<i64>) -> PartitionOffsets {
        PartitionOffsets {
            start,
            end,
            current,
            by_time: None,
        }
    }

    #[test]
    fn plans_clamp_to_the_log() {
        assert_eq!(new_offset(Scenario::Earliest, o(5, 20, Some(9))), Ok(5));
        assert_eq!(new_offset(Scenario::Latest, o(5, 20, Some(9))), Ok(20));
        assert_eq!(new_offset(Scenario::Offset(100), o(5, 20, None)), Ok(20));
        assert_eq!(new_offset(Scenario::Offset(0), o(5, 20, None)), Ok(5));
        assert_eq!(new_offset(Scenario::Offset(7), o(5, 20, None)), Ok(7));
        assert_eq!(new_offset(Scenario::ShiftBy(-3), o(5, 20, Some(9))), Ok(6));
        assert_eq!(new_offset(Scenario::ShiftBy(-30), o(5, 20, Some(9))), Ok(5));
        assert_eq!(new_offset(Scenario::ShiftBy(30), o(5, 20, Some(9))), Ok(20));
        assert_eq!(
            new_offset(Scenario::ShiftBy(i64::MAX), o(5, 20, Some(9))),
            Ok(20)
        );
        assert!(new_offset(Scenario::ShiftBy(1), o(5, 20, None)).is_err());
        let mut t = o(5, 20, None);
        assert_eq!(
            new_offset(Scenario::Datetime, t),
            Ok(20),
            "no record that late: log end"
        );
        t.by_time = Some(11);
        assert_eq!(new_offset(Scenario::Datetime, t), Ok(11));
        // An empty log: start == end.
        assert_eq!(new_offset(Scenario::Offset(3), o(0, 0, None)), Ok(0));
    }

    #[test]
    fn topic_specs() {
        assert_eq!(parse_topic_spec("t"), Ok(("t".into(), None)));
        assert_eq!(
            parse_topic_spec("t:0,2"),
            Ok(("t".into(), Some(vec![0, 2])))
        );
        assert!(parse_topic_spec("t:x").is_err());
        assert!(parse_topic_spec("t:-1").is_err());
        assert!(parse_topic_spec(":1").is_err());
        assert!(parse_topic_spec("t:").is_err());
    }

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("0"), Ok(0));
        assert_eq!(parse_datetime("1700000000123"), Ok(1_700_000_000_123));
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        // date -u -d 2023-11-14T22:13:20Z +%s → 1700000000
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.5Z"),
            Ok(1_700_000_000_500)
        );
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.123456Z"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_datetime("2023-11-15T00:13:20+02:00"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime("2023-11-14T21:13:20-01:00"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(parse_datetime("2023-11-14T22:13:20"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_datetime("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000)
        );
        for bad in [
            "",
            "yesterday",
            "2023-11-14",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20+0200",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20Zjunk",
            "-5",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }
}
