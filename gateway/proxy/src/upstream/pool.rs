//! A per-worker keep-alive pool of idle upstream connections, keyed by address (and TLS
//! server name). Owned by one worker thread, so it needs no lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What identifies interchangeable upstream connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Peer address.
    pub addr: SocketAddr,
    /// TLS server name, for https upstreams.
    pub tls_name: Option<String>,
    /// The TLS client settings the connection was made with, for https upstreams.
    pub tls_config: Option<TlsSettings>,
}

/// A TLS client config, compared by identity: services with the same verification settings
/// (`tls_verify`, depth, CA certificates, client certificate) share one config, and a
/// connection made without verification must never serve a service that verifies, as
/// Kong's pool name carries those settings. The key holds the config, so its address
/// cannot be reused by another while connections made with it are pooled.
#[derive(Clone)]
pub struct TlsSettings(pub std::sync::Arc<rustls::ClientConfig>);

impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TlsSettings {}

impl std::hash::Hash for TlsSettings {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::sync::Arc::as_ptr(&self.0).hash(state);
    }
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsSettings({:p})", std::sync::Arc::as_ptr(&self.0))
    }
}

struct Idle<S> {
    stream: S,
    since: Instant,
    requests: u64,
}

/// Idle connections waiting for reuse. Keyed with foldhash, not SipHash: the keys are the
/// configured upstreams' addresses, which clients cannot choose, and every request looks one up.
pub struct Pool<S> {
    idle: HashMap<PoolKey, Vec<Idle<S>>, foldhash::fast::RandomState>,
    total: usize,
    /// Most idle connections kept per worker (`upstream_keepalive_pool_size`, default 512).
    pub max_idle: usize,
    /// Idle connections older than this are closed (`upstream_keepalive_idle_timeout`, 60 s).
    pub idle_timeout: Duration,
    /// Requests after which a connection is retired (`upstream_keepalive_max_requests`, 10000).
    pub max_requests: u64,
}

/// A connection taken from the pool, with the requests it has already carried.
pub struct Reused<S> {
    /// The stream.
    pub stream: S,
    /// Requests served on it before.
    pub requests: u64,
}

impl<S> Pool<S> {
    /// An empty pool.
    pub fn new(max_idle: usize, idle_timeout: Duration, max_requests: u64) -> Self {
        Pool {
            idle: HashMap::default(),
            total: 0,
            max_idle,
            idle_timeout,
            max_requests,
        }
    }

    /// Takes the most recently used idle connection for `key` that has not timed out.
    pub fn take(&mut self, key: &PoolKey) -> Option<Reused<S>> {
        let list = self.idle.get_mut(key)?;
        let now = Instant::now();
        while let Some(idle) = list.pop() {
            self.total -= 1;
            // Kong: an idle timeout of 0 keeps idle connections indefinitely.
            if self.idle_timeout.is_zero() || now.duration_since(idle.since) < self.idle_timeout {
                return Some(Reused {
                    stream: idle.stream,
                    requests: idle.requests,
                });
            }
        }
        None
    }

    /// Returns a connection that finished a response cleanly. It is dropped (closed) when the
    /// pool is full or the connection has served `max_requests` (0: no limit, as Kong's).
    pub fn put(&mut self, key: PoolKey, stream: S, requests: u64) {
        if self.max_idle == 0 || (self.max_requests > 0 && requests >= self.max_requests) {
            return;
        }
        if self.total >= self.max_idle {
            self.evict_oldest();
        }
        self.total += 1;
        self.idle.entry(key).or_default().push(Idle {
            stream,
            since: Instant::now(),
            requests,
        });
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .idle
            .iter()
            .filter_map(|(k, v)| v.first().map(|i| (k.clone(), i.since)))
            .min_by_key(|(_, since)| *since)
            .map(|(k, _)| k);
        if let Some(k) = oldest {
            if let Some(list) = self.idle.get_mut(&k) {
                list.remove(0);
                self.total -= 1;
            }
        }
    }

    /// Idle connections currently held.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True when no connection is idle.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> PoolKey {
        PoolKey {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            tls_name: None,
            tls_config: None,
        }
    }

    #[test]
    fn reuses_most_recent_and_respects_limits() {
        let mut pool = Pool::new(2, Duration::from_secs(60), 10);
        pool.put(key(1), "a", 1);
        pool.put(key(1), "b", 1);
        pool.put(key(2), "c", 1); // evicts the oldest, "a"
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.take(&key(1)).map(|r| r.stream), Some("b"));
        assert!(pool.take(&key(1)).is_none());
        pool.put(key(3), "retired", 10);
        assert!(
            pool.take(&key(3)).is_none(),
            "max_requests retires a connection"
        );
    }

    #[test]
    fn idle_timeout_expires_connections() {
        let mut pool = Pool::new(8, Duration::from_millis(1), 10);
        pool.put(key(1), "a", 1);
        std::thread::sleep(Duration::from_millis(5));
        assert!(pool.take(&key(1)).is_none());
        assert!(pool.is_empty());
    }

    /// Kong's `upstream_keepalive_idle_timeout = 0` and `upstream_keepalive_max_requests = 0`
    /// lift the limit; they used to turn pooling off.
    #[test]
    fn zero_idle_timeout_and_zero_max_requests_mean_no_limit() {
        let mut pool = Pool::new(8, Duration::ZERO, 0);
        pool.put(key(1), "a", 1_000_000);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(pool.take(&key(1)).map(|r| r.stream), Some("a"));
    }
}
