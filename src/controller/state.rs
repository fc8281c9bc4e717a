//! The controller state machine: applies one metadata record to an image. Pure and deterministic, so replaying
//! the metadata log (or, later, the Raft log) always rebuilds the same image.

use std::collections::BTreeMap;

use super::MetadataRecord;
use crate::metadata::{MetadataImage, TopicInfo};

/// Applies `record` to `image`. Records referring to unknown topics are ignored (they can only follow a delete).
pub fn apply(image: &mut MetadataImage, record: &MetadataRecord) {
    image.offset += 1;
    match record {
        MetadataRecord::RegisterBroker(b) => {
            image.brokers.insert(b.id, b.clone());
        }
        MetadataRecord::Topic { name, id } => {
            image.topic_ids.insert(*id, name.clone());
            image.topics.insert(
                name.clone(),
                TopicInfo {
                    name: name.clone(),
                    id: *id,
                    partitions: Vec::new(),
                    configs: BTreeMap::new(),
                },
            );
        }
        MetadataRecord::Partition {
            topic_id,
            partition,
        } => {
            let Some(name) = image.topic_ids.get(topic_id) else {
                return;
            };
            let Some(topic) = image.topics.get_mut(name) else {
                return;
            };
            let Ok(idx) = usize::try_from(partition.index) else {
                return;
            };
            if idx < topic.partitions.len() {
                topic.partitions[idx] = partition.clone();
            } else if idx == topic.partitions.len() {
                topic.partitions.push(partition.clone());
            }
        }
        MetadataRecord::Config {
            topic_id,
            name,
            value,
        } => {
            let Some(tname) = image.topic_ids.get(topic_id) else {
                return;
            };
            let Some(topic) = image.topics.get_mut(tname) else {
                return;
            };
            match value {
                Some(v) => topic.configs.insert(name.clone(), v.clone()),
                None => topic.configs.remove(name),
            };
        }
        MetadataRecord::ProducerIds {
            next_producer_id, ..
        } => {
            // Never moves back, whatever a record says.
            image.next_producer_id = image.next_producer_id.max(*next_producer_id);
        }
        MetadataRecord::RemoveTopic { id } => {
            if let Some(name) = image.topic_ids.remove(id) {
                image.topics.shift_remove(&name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;
    use crate::metadata::PartitionInfo;
    use uuid::Uuid;

    fn part(i: i32) -> PartitionInfo {
        PartitionInfo {
            index: i,
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
        }
    }

    #[test]
    fn apply_sequence() {
        let mut img = MetadataImage::default();
        let id = Uuid::new_v4();
        apply(
            &mut img,
            &MetadataRecord::Topic {
                name: "t".into(),
                id,
            },
        );
        apply(
            &mut img,
            &MetadataRecord::Partition {
                topic_id: id,
                partition: part(0),
            },
        );
        apply(
            &mut img,
            &MetadataRecord::Partition {
                topic_id: id,
                partition: part(1),
            },
        );
        // A gap is ignored rather than creating a hole.
        apply(
            &mut img,
            &MetadataRecord::Partition {
                topic_id: id,
                partition: part(5),
            },
        );
        apply(
            &mut img,
            &MetadataRecord::Config {
                topic_id: id,
                name: "retention.ms".into(),
                value: Some("1".into()),
            },
        );
        assert_eq!(img.topic("t").unwrap().partitions.len(), 2);
        assert_eq!(img.topic_by_id(&id).unwrap().configs["retention.ms"], "1");
        apply(
            &mut img,
            &MetadataRecord::Config {
                topic_id: id,
                name: "retention.ms".into(),
                value: None,
            },
        );
        assert!(img.topic("t").unwrap().configs.is_empty());
        apply(&mut img, &MetadataRecord::RemoveTopic { id });
        assert!(img.topics.is_empty() && img.topic_ids.is_empty());
        // Records for a deleted topic are ignored.
        apply(
            &mut img,
            &MetadataRecord::Partition {
                topic_id: id,
                partition: part(0),
            },
        );
        assert!(img.topics.is_empty());
        assert_eq!(img.offset, 8, "every record counts, applied or ignored");
    }
}
