//! The accept loop. Owns the listening socket and the connection-count semaphore (`max.connections`).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::connection::Connection;
use crate::broker::Broker;

/// Accepts connections until shutdown, then waits (bounded) for the connection tasks to finish their in-flight
/// requests.
pub async fn run(listener: TcpListener, broker: Arc<Broker>) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections.max(0) as usize));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "refusing connection: max_connections reached");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let broker = broker.clone();
                tasks.spawn(async move {
                    let conn = Connection::new(stream, peer, broker);
                    conn.run().await;
                    drop(permit);
                });
                // Reap finished connection tasks so the set does not grow without bound.
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    let grace = Duration::from_millis(broker.config.controlled_shutdown_timeout_ms.max(0) as u64);
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("connections still busy after {grace:?}; closing them");
        tasks.abort_all();
    }
}
