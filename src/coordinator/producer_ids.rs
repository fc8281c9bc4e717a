//! Producer id allocation for InitProducerId (Kafka's `RPCProducerIdManager` on the broker side).
//!
//! Ownership: the broker holds one [`ProducerIdManager`]. Ids are taken from a block the controller handed out
//! (a `ProducerIds` metadata record, durable before the block is used), so an id is never given twice, even
//! after a kill -9: a restart asks for a fresh block and the unused rest of the old one is simply skipped. The
//! current block sits behind a `std::sync::Mutex` held only to take one id; fetching the next block is
//! serialised by a `tokio::sync::Mutex` so concurrent InitProducerId requests ask the controller once.

use std::sync::Mutex;

use crate::controller::{Controller, ControllerError};

/// Hands out producer ids from controller-allocated blocks.
#[derive(Debug)]
pub struct ProducerIdManager {
    broker_id: i32,
    /// `(next, end)`: ids `next..end` are still free.
    block: Mutex<(i64, i64)>,
    fetching: tokio::sync::Mutex<()>,
}

impl ProducerIdManager {
    /// No block yet; the first request fetches one.
    pub fn new(broker_id: i32) -> Self {
        ProducerIdManager {
            broker_id,
            block: Mutex::new((0, 0)),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn take(&self) -> Option<i64> {
        // Two integers, consistent between statements: safe to use past a panic.
        let mut b = self.block.lock().unwrap_or_else(|p| p.into_inner());
        (b.0 < b.1).then(|| {
            b.0 += 1;
            b.0 - 1
        })
    }

    /// A producer id never handed out before; asks the controller for a new block when this one is used up.
    pub async fn generate(&self, controller: &Controller) -> Result<i64, ControllerError> {
        if let Some(id) = self.take() {
            return Ok(id);
        }
        let _one_fetch = self.fetching.lock().await;
        if let Some(id) = self.take() {
            return Ok(id);
        }
        let (first, end) = controller.allocate_producer_ids(self.broker_id).await?;
        tracing::info!(first, end, "got a producer id block");
        *self.block.lock().unwrap_or_else(|p| p.into_inner()) = (first, end);
        self.take()
            .ok_or_else(|| ControllerError::InvalidRequest("empty producer id block".into()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::controller::PRODUCER_ID_BLOCK_SIZE;

    fn controller(dir: &std::path::Path) -> Controller {
        let config = Arc::new(BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..Default::default()
        });
        Controller::open(config, dir, "c".into()).unwrap()
    }

    /// Ids are unique across blocks and across a reopen of the metadata log (what a restart, clean or not,
    /// does): the unused rest of a block is skipped, never reissued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ids_are_never_reused_across_blocks_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = HashSet::new();
        {
            let c = controller(dir.path());
            let m = ProducerIdManager::new(1);
            for _ in 0..PRODUCER_ID_BLOCK_SIZE + 5 {
                assert!(seen.insert(m.generate(&c).await.unwrap()));
            }
            assert_eq!(c.image().next_producer_id, 2 * PRODUCER_ID_BLOCK_SIZE);
        }
        let c = controller(dir.path());
        assert_eq!(c.image().next_producer_id, 2 * PRODUCER_ID_BLOCK_SIZE);
        let m = ProducerIdManager::new(1);
        let id = m.generate(&c).await.unwrap();
        assert_eq!(id, 2 * PRODUCER_ID_BLOCK_SIZE);
        assert!(seen.insert(id));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_fetch_one_block() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(controller(dir.path()));
        let m = Arc::new(ProducerIdManager::new(1));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (c, m) = (c.clone(), m.clone());
                tokio::spawn(async move { m.generate(&c).await.unwrap() })
            })
            .collect();
        let mut ids = HashSet::new();
        for t in tasks {
            assert!(ids.insert(t.await.unwrap()));
        }
        assert_eq!(c.image().next_producer_id, PRODUCER_ID_BLOCK_SIZE);
    }
}
