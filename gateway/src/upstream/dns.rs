//! A per-worker DNS cache. Answers are kept for `ttl`; when the resolver then fails, a stale
//! answer is still used for up to `stale_ttl`, as Kong does with `dns_stale_ttl`.
//!
//! The cache is synchronous so a worker can keep it in a `RefCell` without holding a borrow
//! across the lookup's `.await`; [`resolve`] does the I/O.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

struct Entry {
    addrs: Vec<IpAddr>,
    fetched: Instant,
    next: usize,
}

/// Cached name resolution for one worker.
pub struct DnsCache {
    entries: HashMap<String, Entry>,
    /// How long an answer is fresh (default 30 s).
    pub ttl: Duration,
    /// How long a stale answer may be used when the resolver fails (default 3600 s).
    pub stale_ttl: Duration,
}

impl DnsCache {
    /// An empty cache.
    pub fn new(ttl: Duration, stale_ttl: Duration) -> Self {
        DnsCache {
            entries: HashMap::new(),
            ttl,
            stale_ttl,
        }
    }

    fn pick(&mut self, host: &str, max_age: Duration) -> Option<IpAddr> {
        let entry = self.entries.get_mut(host)?;
        if entry.fetched.elapsed() >= max_age {
            return None;
        }
        let ip = entry.addrs[entry.next % entry.addrs.len()];
        entry.next = entry.next.wrapping_add(1);
        Some(ip)
    }

    fn store(&mut self, host: &str, addrs: Vec<IpAddr>) {
        self.entries.insert(
            host.to_string(),
            Entry {
                addrs,
                fetched: Instant::now(),
                next: 0,
            },
        );
    }
}

/// Resolves `host:port`, rotating over a name's addresses. IP literals never touch the cache.
pub async fn resolve(cache: &RefCell<DnsCache>, host: &str, port: u16) -> io::Result<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let ttl = cache.borrow().ttl;
    if let Some(ip) = cache.borrow_mut().pick(host, ttl) {
        return Ok(SocketAddr::new(ip, port));
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(found) => {
            let mut addrs: Vec<IpAddr> = found.map(|a| a.ip()).collect();
            addrs.dedup();
            if addrs.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host}: no addresses"),
                ));
            }
            let ip = addrs[0];
            cache.borrow_mut().store(host, addrs);
            Ok(SocketAddr::new(ip, port))
        }
        Err(e) => {
            let stale = {
                let c = cache.borrow();
                c.ttl + c.stale_ttl
            };
            cache
                .borrow_mut()
                .pick(host, stale)
                .map(|ip| SocketAddr::new(ip, port))
                .ok_or(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_and_localhost_resolve() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let cache = RefCell::new(DnsCache::new(
            Duration::from_secs(30),
            Duration::from_secs(60),
        ));
        rt.block_on(async {
            let a = resolve(&cache, "127.0.0.1", 80).await.expect("literal");
            assert_eq!(a, SocketAddr::from(([127, 0, 0, 1], 80)));
            let b = resolve(&cache, "localhost", 81).await.expect("localhost");
            assert!(b.ip().is_loopback());
            assert_eq!(b.port(), 81);
            assert!(cache.borrow().entries.contains_key("localhost"));
        });
    }
}
