//! `vltava producer describe TOPIC PARTITION`: the idempotent producers a partition remembers (DescribeProducers),
//! one line each.

use clap::{Args, Subcommand};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::client::{Client, ClientError};
use super::topic::check;

/// `vltava producer ...`
#[derive(Args, Debug)]
pub struct ProducerCommand {
    /// Broker to talk to.
    #[arg(
        long,
        short = 'b',
        default_value = "127.0.0.1:9092",
        global = true,
        value_name = "HOST:PORT"
    )]
    pub bootstrap: String,
    /// What to do.
    #[command(subcommand)]
    pub action: ProducerAction,
}

/// Producer state operations.
#[derive(Subcommand, Debug)]
pub enum ProducerAction {
    /// List the active producers of one partition: id, epoch, last sequence, last timestamp, coordinator epoch
    /// and the start offset of an open transaction (-1: none).
    Describe {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
}

/// Runs a producer command, printing results to stdout.
pub fn run(cmd: ProducerCommand) -> Result<(), ClientError> {
    let mut c = Client::connect(&cmd.bootstrap)?;
    match cmd.action {
        ProducerAction::Describe { topic, partition } => {
            let mut t = describe_producers_request::TopicRequest::default();
            t.name = TopicName(StrBytes::from_string(topic.clone()));
            t.partition_indexes = vec![partition];
            let mut req = DescribeProducersRequest::default();
            req.topics = vec![t];
            let resp: DescribeProducersResponse = c.call(ApiKey::DescribeProducers, 0, &req)?;
            let p = resp
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition_index == partition)
                .ok_or_else(|| ClientError::Protocol("partition missing from the answer".into()))?;
            check(
                p.error_code,
                p.error_message.as_ref(),
                &format!("{topic}-{partition}"),
            )?;
            println!(
                "{:<20} {:>6} {:>14} {:>15} {:>17} {:>24}",
                "PRODUCER_ID",
                "EPOCH",
                "LAST_SEQUENCE",
                "LAST_TIMESTAMP",
                "COORDINATOR_EPOCH",
                "CURRENT_TXN_START_OFFSET"
            );
            for ps in &p.active_producers {
                println!(
                    "{:<20} {:>6} {:>14} {:>15} {:>17} {:>24}",
                    ps.producer_id.0,
                    ps.producer_epoch,
                    ps.last_sequence,
                    ps.last_timestamp,
                    ps.coordinator_epoch,
                    ps.current_txn_start_offset
                );
            }
        }
    }
    Ok(())
}
