//! The accept loop and the connection limits, as Kafka's acceptor and `ConnectionQuotas` apply them.
//!
//! Owned by the accept task: the listening socket, the `max.connections` semaphore (at the limit the loop
//! waits for a slot before accepting, so the excess waits in the kernel's backlog) and the accept back-off.
//! [`IpQuotas`] (`max.connections.per.ip` and its overrides; a connection over the limit is closed right after
//! accept) is shared with the connection tasks, which give their slot back when they end; its counts sit
//! behind one `std::sync::Mutex`, taken only at accept and close, never on the request path.
//!
//! When accept fails (typically EMFILE: out of file descriptors) the connection stays in the backlog and the
//! next accept would fail at once, so the loop backs off exponentially (10 ms up to 1 s) and logs at most once
//! every 10 s. At start [`raise_fd_limit`] lifts the soft descriptor limit to the hard one.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::connection::Connection;
use crate::broker::Broker;

/// Accepts connections until shutdown, then waits (bounded) for the connection tasks to finish their in-flight
/// requests.
pub async fn run(listener: TcpListener, broker: Arc<Broker>) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections.max(0) as usize));
    // Validated at start-up; an unparsable value cannot reach here, but default to no overrides anyway.
    let quotas = Arc::new(IpQuotas::new(
        broker.config.max_connections_per_ip,
        broker.config.connection_overrides().unwrap_or_default(),
    ));
    let mut backoff = AcceptBackoff::default();
    let mut full_logged: Option<Instant> = None;
    let mut tasks = JoinSet::new();
    loop {
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if full_logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    tracing::warn!(
                        max_connections = broker.config.max_connections,
                        "max_connections reached; not accepting until a connection closes"
                    );
                    full_logged = Some(Instant::now());
                }
                tokio::select! {
                    _ = broker.shutdown.cancelled() => break,
                    p = limit.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            _ = broker.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(s) => {
                backoff.succeeded();
                s
            }
            Err(e) => {
                let (delay, log) = backoff.failed(Instant::now());
                if let Some(suppressed) = log {
                    tracing::warn!(
                        error = %e,
                        suppressed,
                        retry_in = ?delay,
                        open_files_limit = fd_limit().unwrap_or(0),
                        "accept failed; backing off"
                    );
                }
                tokio::select! {
                    _ = broker.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        let Some(slot) = quotas.try_acquire(peer.ip()) else {
            tracing::info!(%peer, "closing connection: max_connections_per_ip reached for this address");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        tasks.spawn(async move {
            let conn = Connection::new(stream, peer, broker);
            conn.run().await;
            drop(slot);
            drop(permit);
        });
        // Reap finished connection tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
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

/// Least time between two log lines about the same accept-side trouble.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Connection counts per client address, against `max_connections_per_ip` and its overrides.
pub struct IpQuotas {
    default: i32,
    overrides: HashMap<IpAddr, i32>,
    counts: Mutex<HashMap<IpAddr, i32>>,
}

/// One counted connection; dropping it gives the slot back.
pub struct IpSlot {
    quotas: Arc<IpQuotas>,
    ip: IpAddr,
}

impl IpQuotas {
    /// Limits: `default` for every address, except those in `overrides`.
    pub fn new(default: i32, overrides: HashMap<IpAddr, i32>) -> IpQuotas {
        IpQuotas {
            default,
            overrides,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection from `ip`, or `None` if that address is at its limit.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let limit = self.overrides.get(&ip).copied().unwrap_or(self.default);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                counts.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(IpSlot {
            quotas: self.clone(),
            ip,
        })
    }

    /// Connections counted for `ip`.
    pub fn count(&self, ip: IpAddr) -> i32 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.quotas.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            // Forget addresses without connections, so the map is as large as the live connections.
            if *n <= 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Exponential back-off after failed accepts, with rate-limited logging. Time is passed in.
#[derive(Default)]
struct AcceptBackoff {
    delay: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// Records a failure: how long to wait, and `Some(failures not logged since the last line)` when this one
    /// should be logged.
    fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        self.delay = (self.delay * 2).clamp(Self::FIRST, Self::MAX);
        let log = match self.last_log {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last_log = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        };
        (self.delay, log)
    }

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }
}

/// Raises the soft limit on open file descriptors to the hard limit (each connection and each segment file
/// needs one) and returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    // `None` means unlimited.
    if lim.current.is_some() && lim.current != lim.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        )?;
    }
    fd_limit()
}

/// The current soft limit on open file descriptors (`u64::MAX` when unlimited).
pub fn fd_limit() -> io::Result<u64> {
    Ok(
        rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    #[test]
    fn per_ip_limits_with_overrides() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let q = Arc::new(IpQuotas::new(2, HashMap::from([(b, 3), (c, 0)])));
        let a1 = q.try_acquire(a).unwrap();
        let _a2 = q.try_acquire(a).unwrap();
        assert!(q.try_acquire(a).is_none());
        drop(a1);
        let _a3 = q.try_acquire(a).unwrap();
        let bs: Vec<_> = (0..3).map(|_| q.try_acquire(b).unwrap()).collect();
        assert!(q.try_acquire(b).is_none());
        assert!(q.try_acquire(c).is_none());
        assert_eq!(q.count(c), 0);
        drop(bs);
        assert_eq!(q.count(b), 0);
        assert!(q.counts.lock().unwrap().get(&b).is_none(), "forgotten");
    }

    #[test]
    fn accept_backoff_grows_and_logs_rarely() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        assert_eq!(b.failed(t0), (Duration::from_millis(10), Some(0)));
        assert_eq!(b.failed(t0), (Duration::from_millis(20), None));
        for _ in 0..20 {
            b.failed(t0 + Duration::from_secs(1));
        }
        let (delay, log) = b.failed(t0 + Duration::from_secs(2));
        assert_eq!((delay, log), (Duration::from_secs(1), None));
        assert_eq!(b.failed(t0 + LOG_EVERY).1, Some(22));
        b.succeeded();
        assert_eq!(b.failed(t0 + LOG_EVERY).0, Duration::from_millis(10));
    }

    #[test]
    fn fd_limit_is_raised_to_hard() {
        let got = raise_fd_limit().unwrap();
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        assert_eq!(got, hard.unwrap_or(u64::MAX));
    }
}
