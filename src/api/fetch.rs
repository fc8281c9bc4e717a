//! Fetch: whole record batches straight from the log, up to the high watermark, with long-poll.
//!
//! Reads start at the batch containing the fetch offset (the client skips records below it). The response holds
//! at most `max_bytes` overall and `partition_max_bytes` per partition, except that the first partition with
//! data always returns at least one whole batch (KIP-74) so a big batch cannot wedge a consumer. When fewer than
//! `min_bytes` are available the request waits, up to `max_wait_ms`, on the high-watermark watchers of the
//! partitions it asked for. Like Kafka's `DelayedFetch`, the wait is by position: each partition publishes its
//! high watermark with the bytes appended so far ([`HighWatermark`]); an append wakes the waiter, which adds
//! the new bytes to what its last read found ([`Estimate`], O(1) per append, no lock, no index lookup) and
//! reads the log again only once `min_bytes` may be there, or at the deadline. read_committed fetches
//! (`isolation_level` 1) read up to the last stable offset instead and re-read whenever it moves. The waiting state belongs to the
//! handler's task; it goes away when the connection aborts the task. Incremental fetch sessions (KIP-227) are
//! not offered: every response carries session id 0, which tells clients to send full fetch requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, ProducerId};
use tokio::sync::watch;

use super::log_error_code;
use super::splice::{encode_spliced, Frame, Placeholders};
use super::{hosted_partition, RequestContext, TopicRef};
use crate::partition::{HighWatermark, Partition};

/// One requested partition, resolved.
struct Wanted {
    topic_slot: usize,
    index: i32,
    offset: i64,
    max_bytes: usize,
    leader_epoch: i32,
    partition: Result<Arc<Partition>, i16>,
}

/// Handles Fetch.
pub async fn handle(ctx: &RequestContext, req: FetchRequest) -> Option<FetchReply> {
    let broker = &ctx.broker;
    let version = ctx.version;
    let mut resp = FetchResponse::default();
    resp.session_id = 0;
    if req.session_id != 0 || req.session_epoch > 0 {
        // We never hand out sessions, so any session the client names is unknown to us.
        resp.error_code = ResponseError::FetchSessionIdNotFound.code();
        return Some(FetchReply {
            response: resp,
            placeholders: Placeholders::default(),
        });
    }
    let image = broker.image();
    let read_committed = req.isolation_level == 1;
    let mut wanted = Vec::new();
    for topic in &req.topics {
        let found = if version >= 13 {
            image.topic_by_id(&topic.topic_id)
        } else {
            image.topic(&topic.topic.0)
        };
        let mut tr = FetchableTopicResponse::default();
        // The topic is named (v4-12) or identified (v13+), never both: kafka-protocol refuses to encode a field
        // the version lacks.
        if version >= 13 {
            tr.topic_id = topic.topic_id;
        } else {
            tr.topic = topic.topic.clone();
        }
        let slot = resp.responses.len();
        resp.responses.push(tr);
        for p in &topic.partitions {
            let partition = match found {
                None if version >= 13 => Err(ResponseError::UnknownTopicId.code()),
                None => Err(ResponseError::UnknownTopicOrPartition.code()),
                Some(t) => {
                    let by = if version >= 13 {
                        TopicRef::Id(topic.topic_id)
                    } else {
                        TopicRef::Name
                    };
                    hosted_partition(broker, t, p.partition, by)
                }
            };
            wanted.push(Wanted {
                topic_slot: slot,
                index: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                leader_epoch: p.current_leader_epoch,
                partition,
            });
        }
    }
    let max_bytes =
        (req.max_bytes.max(0) as usize).min(broker.config.fetch_max_bytes.max(0) as usize);
    // More than max_bytes can never be returned, so waiting for more would only burn wake-ups.
    let min_bytes = (req.min_bytes.max(0) as usize).min(max_bytes.max(1));
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    // Subscribe before the first read so an append between read and wait still wakes us.
    let mut changes = FuturesUnordered::new();
    for (i, w) in wanted.iter().enumerate() {
        if let Ok(p) = &w.partition {
            let mut rx = p.watch_hw();
            rx.borrow_and_update();
            changes.push(hw_changed(i, rx));
        }
    }
    loop {
        // Positions before the read: bytes published later are on top of what the read can find.
        let positions: Vec<HighWatermark> = wanted
            .iter()
            .map(|w| {
                w.partition
                    .as_ref()
                    .map_or(HighWatermark::default(), |p| p.published_high_watermark())
            })
            .collect();
        let mut placeholders = Placeholders::default();
        let ReadAll {
            parts,
            sizes,
            bytes,
            any_error,
        } = read_all(
            &wanted,
            max_bytes,
            read_committed,
            version,
            &mut placeholders,
        );
        let expired = tokio::time::Instant::now() >= deadline;
        if bytes >= min_bytes
            || any_error
            || expired
            || changes.is_empty()
            || broker.shutdown.is_cancelled()
        {
            for (slot, pd) in parts {
                resp.responses[slot].partitions.push(pd);
            }
            return Some(FetchReply {
                response: resp,
                placeholders,
            });
        }
        // Wait by position: appends cost this waiter O(1) each until enough bytes may be there.
        let mut estimate = Estimate::new(
            min_bytes,
            wanted
                .iter()
                .zip(sizes)
                .zip(positions.iter())
                .map(|((w, read), position)| (read, position.appended_bytes, w.max_bytes)),
        );
        loop {
            tokio::select! {
                Some((i, mut rx, alive)) = changes.next() => {
                    let hw = *rx.borrow_and_update();
                    // read_committed reads up to the LSO: bytes appended above it are no use, a moved LSO
                    // (a marker) may have made bytes appended earlier readable, so it always re-reads.
                    let lso_moved = read_committed
                        && positions.get(i).is_some_and(|p| p.last_stable != hw.last_stable);
                    let enough = !alive || estimate.update(i, hw) || lso_moved;
                    if alive {
                        changes.push(hw_changed(i, rx));
                    }
                    if enough {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break,
                _ = broker.shutdown.cancelled() => break,
            }
        }
    }
}

/// Resolves when partition `i`'s high watermark is published again (`false`: the partition is gone), handing
/// the receiver back so the waiter can look at the new position and wait again.
async fn hw_changed(
    i: usize,
    mut rx: watch::Receiver<HighWatermark>,
) -> (usize, watch::Receiver<HighWatermark>, bool) {
    let alive = rx.changed().await.is_ok();
    (i, rx, alive)
}

/// How many bytes a waiting fetch could return now, judged from published positions without reading: per
/// partition, what its last read found plus what was appended since, capped at the partition's `max_bytes`
/// (Kafka's `DelayedFetch.tryComplete` sums the same quantity from segment positions). It never counts less
/// than a read would find, so a fetch is never held past the moment it could be answered; it can count more
/// (appends racing the read), which only costs a read that finds too little and waits again.
struct Estimate {
    min_bytes: usize,
    /// Per requested partition: (bytes found by the read, appended bytes before it, max bytes, counted now).
    parts: Vec<(usize, u64, usize, usize)>,
    total: usize,
}

impl Estimate {
    fn new(min_bytes: usize, parts: impl Iterator<Item = (usize, u64, usize)>) -> Estimate {
        let parts: Vec<_> = parts
            .map(|(read, position, max)| (read, position, max, read.min(max)))
            .collect();
        let total = parts.iter().map(|p| p.3).sum();
        Estimate {
            min_bytes,
            parts,
            total,
        }
    }

    /// Takes partition `i`'s newly published position into account; true once `min_bytes` may be there.
    fn update(&mut self, i: usize, hw: HighWatermark) -> bool {
        if let Some((read, position, max, counted)) = self.parts.get_mut(i) {
            let grown =
                usize::try_from(hw.appended_bytes.saturating_sub(*position)).unwrap_or(usize::MAX);
            let now = read.saturating_add(grown).min(*max);
            self.total = self.total - *counted + now;
            *counted = now;
        }
        self.total >= self.min_bytes
    }
}

/// What one pass over the requested partitions found.
struct ReadAll {
    /// Response slot and partition data, in request order.
    parts: Vec<(usize, PartitionData)>,
    /// Record bytes per requested partition.
    sizes: Vec<usize>,
    /// Record bytes in all.
    bytes: usize,
    any_error: bool,
}

fn read_all(
    wanted: &[Wanted],
    max_bytes: usize,
    read_committed: bool,
    version: i16,
    placeholders: &mut Placeholders,
) -> ReadAll {
    let mut out = Vec::with_capacity(wanted.len());
    let mut sizes = Vec::with_capacity(wanted.len());
    let mut total = 0usize;
    let mut any_error = false;
    for w in wanted {
        let mut pd = PartitionData::default();
        pd.partition_index = w.index;
        pd.preferred_read_replica = BrokerId(-1);
        pd.aborted_transactions = if read_committed {
            Some(Vec::new())
        } else {
            None
        };
        pd.records = Some(Bytes::new());
        match &w.partition {
            Err(code) => {
                pd.error_code = *code;
                pd.high_watermark = -1;
                any_error = true;
            }
            Ok(p) => {
                let epoch = p.leader_epoch();
                if w.leader_epoch >= 0 && w.leader_epoch != epoch {
                    pd.error_code = if w.leader_epoch < epoch {
                        ResponseError::FencedLeaderEpoch.code()
                    } else {
                        ResponseError::UnknownLeaderEpoch.code()
                    };
                    any_error = true;
                } else {
                    let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
                    // KIP-74: the first partition with data returns at least one batch even over budget.
                    let min_one = total == 0;
                    match p.read(w.offset, budget, min_one, read_committed) {
                        Ok(r) => match placeholders.records(r.records) {
                            Ok(records) => {
                                total += records.len();
                                pd.high_watermark = r.high_watermark;
                                pd.last_stable_offset = r.last_stable_offset;
                                if read_committed {
                                    pd.aborted_transactions = Some(
                                        r.aborted
                                            .iter()
                                            .map(|a| {
                                                AbortedTransaction::default()
                                                    .with_producer_id(ProducerId(a.producer_id))
                                                    .with_first_offset(a.first_offset)
                                            })
                                            .collect(),
                                    );
                                }
                                if version >= 5 {
                                    pd.log_start_offset = r.log_start_offset;
                                }
                                pd.records = Some(records);
                            }
                            Err(e) => {
                                pd.error_code = ResponseError::KafkaStorageError.code();
                                tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "fetch read failed");
                                any_error = true;
                            }
                        },
                        Err(e) => {
                            pd.error_code = log_error_code(&e);
                            pd.high_watermark = p.high_watermark();
                            pd.last_stable_offset = pd.high_watermark;
                            if version >= 5 {
                                pd.log_start_offset = p.with_log(|l| l.log_start_offset());
                            }
                            any_error = true;
                        }
                    }
                }
            }
        }
        sizes.push(pd.records.as_ref().map_or(0, Bytes::len));
        out.push((w.topic_slot, pd));
    }
    ReadAll {
        parts: out,
        sizes,
        bytes: total,
        any_error,
    }
}

/// A Fetch response whose record sets are still file ranges (see [`super::splice`]).
pub struct FetchReply {
    /// The response, with placeholders in its `records` fields.
    pub response: FetchResponse,
    /// What the placeholders stand for.
    pub placeholders: Placeholders,
}

impl super::IntoFrame for FetchReply {
    fn into_frame(self, api: ApiKey, version: i16, correlation_id: i32) -> Result<Frame, String> {
        encode_spliced(
            api,
            version,
            correlation_id,
            &self.response,
            &self.placeholders,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    fn hw(appended_bytes: u64) -> HighWatermark {
        HighWatermark {
            last_stable: 0,
            offset: 0,
            appended_bytes,
        }
    }

    #[test]
    fn estimate_adds_appended_bytes_to_what_was_read() {
        // Two partitions: the first read 100 bytes at position 1000, the second nothing at position 50.
        let mut e = Estimate::new(1000, [(100, 1000, 10_000), (0, 50, 10_000)].into_iter());
        assert!(!e.update(0, hw(1300)), "400 bytes");
        assert!(!e.update(1, hw(250)), "600 bytes");
        // A repeated publish of the same position counts once.
        assert!(!e.update(1, hw(250)));
        assert!(e.update(1, hw(650)), "1000 bytes");
    }

    #[test]
    fn estimate_caps_each_partition_at_its_max_bytes() {
        // Kafka: bytes beyond a partition's max cannot be returned, so they do not count towards min_bytes.
        let mut e = Estimate::new(500, [(0, 0, 300), (0, 0, 300)].into_iter());
        assert!(!e.update(0, hw(1_000_000)));
        assert_eq!(e.total, 300);
        assert!(e.update(1, hw(200)));
        // A position behind the read's (cannot happen; a new partition object) counts nothing new.
        let mut e = Estimate::new(10, [(5, 100, 300)].into_iter());
        assert!(!e.update(0, hw(7)));
        assert_eq!(e.total, 5);
    }

    #[tokio::test]
    async fn a_waiter_wakes_per_publish_and_sees_the_latest_position() {
        let (tx, rx) = watch::channel(hw(0));
        let mut changes = FuturesUnordered::new();
        changes.push(hw_changed(3, rx));
        tx.send_modify(|h| h.appended_bytes += 10);
        tx.send_modify(|h| h.appended_bytes += 20);
        let (i, mut rx, alive) = changes.next().await.unwrap();
        assert_eq!(
            (i, alive, rx.borrow_and_update().appended_bytes),
            (3, true, 30)
        );
        changes.push(hw_changed(i, rx));
        drop(tx);
        let (_, _, alive) = changes.next().await.unwrap();
        assert!(!alive, "a dropped partition ends the wait");
    }
}
