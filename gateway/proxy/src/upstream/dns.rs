//! A per-worker DNS cache over an asynchronous stub resolver (hickory), as Kong resolves
//! upstream hosts: `/etc/hosts` first, then the nameservers of `dns_resolver` (or
//! `/etc/resolv.conf`), answers kept for their record TTL (or `dns_valid_ttl`). An expired
//! answer is still served for up to `dns_stale_ttl` while a background task refreshes it, so
//! a slow or dead nameserver never holds up requests for names already known.
//!
//! The cache is synchronous so a worker can keep it in a `RefCell` without holding a borrow
//! across the lookup's `.await`; [`resolve`] does the I/O.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use tracing::warn;

/// An answer held no shorter than this, so a TTL of 0 does not mean a lookup per request.
const MIN_TTL: Duration = Duration::from_secs(1);

/// After a failed background refresh, how long before the next one (Kong's
/// `dns_error_ttl` default).
const RETRY_AFTER: Duration = Duration::from_secs(1);

struct Entry {
    addrs: Vec<IpAddr>,
    valid_until: Instant,
    next: usize,
    /// No background refresh starts before this (one is running, or one just failed).
    refresh_after: Instant,
}

/// What the cache holds for a name.
enum Cached {
    Fresh(IpAddr),
    /// Expired but within the stale window; `true` when a refresh should start now.
    Stale(IpAddr, bool),
    Missing,
}

/// How names are resolved.
#[derive(Debug, Clone, Default)]
pub struct DnsSettings {
    /// Nameservers to ask (`dns_resolver`); empty means those of `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// Overrides every record's TTL (`dns_valid_ttl`); `None` keeps the records' own.
    pub valid_ttl: Option<Duration>,
    /// How long an expired answer may be used when the resolver fails (`dns_stale_ttl`).
    pub stale_ttl: Duration,
    /// How long a `getaddrinfo` answer (no TTL) is kept, when no resolver configuration
    /// is usable (`dns_cache_ttl_s`).
    pub system_ttl: Duration,
}

enum Lookup {
    /// Not built yet: the resolver needs the worker's runtime.
    Unbuilt,
    Hickory(Box<TokioResolver>),
    /// No usable resolver configuration: the system's `getaddrinfo`, with answers kept for
    /// `valid_ttl`, else `system_ttl`.
    System,
}

/// A name's last lookup, as any worker made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Addresses(Vec<IpAddr>),
    /// The lookup failed or found no address.
    Failed,
}

/// The last answer for every name the process looked up, shared by its workers: what
/// `/metrics` reports as a target's addresses (Kong's `address` label), or that the name
/// did not resolve (`dns_error`). Written once per lookup, not per request.
#[derive(Debug, Default)]
pub struct Answers(Mutex<HashMap<String, Answer>>);

impl Answers {
    fn record(&self, host: &str, answer: Answer) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(host) != Some(&answer) {
            map.insert(host.to_owned(), answer);
        }
    }

    /// `host`'s last answer; `None` before any lookup of it.
    pub fn get(&self, host: &str) -> Option<Answer> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(host).cloned()
    }
}

/// Cached name resolution for one worker.
pub struct DnsCache {
    entries: HashMap<String, Entry>,
    settings: DnsSettings,
    lookup: Lookup,
    shared: Option<Arc<Answers>>,
}

impl DnsCache {
    /// An empty cache; the resolver is built on first use.
    pub fn new(settings: DnsSettings) -> Self {
        DnsCache {
            entries: HashMap::new(),
            settings,
            lookup: Lookup::Unbuilt,
            shared: None,
        }
    }

    /// Records every lookup's outcome in `answers` too.
    pub fn sharing_answers(mut self, answers: Arc<Answers>) -> Self {
        self.shared = Some(answers);
        self
    }

    /// A fresh answer's next address (rotating over the answer's addresses).
    fn pick(&mut self, host: &str, now: Instant, grace: Duration) -> Option<IpAddr> {
        let entry = self.entries.get_mut(host)?;
        if now >= entry.valid_until + grace {
            return None;
        }
        let ip = entry.addrs[entry.next % entry.addrs.len()];
        entry.next = entry.next.wrapping_add(1);
        Some(ip)
    }

    fn lookup_cached(&mut self, host: &str, now: Instant) -> Cached {
        if let Some(ip) = self.pick(host, now, Duration::ZERO) {
            return Cached::Fresh(ip);
        }
        let stale = self.settings.stale_ttl;
        match self.pick(host, now, stale) {
            Some(ip) => {
                let entry = self.entries.get_mut(host).expect("invariant: just picked");
                let refresh = now >= entry.refresh_after;
                if refresh {
                    // Held off until the refresh reports; a hung one gives way after this.
                    entry.refresh_after = now + Duration::from_secs(30);
                }
                Cached::Stale(ip, refresh)
            }
            None => Cached::Missing,
        }
    }

    fn refresh_failed(&mut self, host: &str) {
        if let Some(entry) = self.entries.get_mut(host) {
            entry.refresh_after = Instant::now() + RETRY_AFTER;
        }
    }

    fn store(&mut self, host: &str, addrs: Vec<IpAddr>, valid_until: Instant) {
        let floor = Instant::now() + MIN_TTL;
        let valid_until = match self.settings.valid_ttl {
            Some(ttl) => Instant::now() + ttl,
            None => valid_until,
        };
        self.entries.insert(
            host.to_string(),
            Entry {
                addrs,
                valid_until: valid_until.max(floor),
                next: 0,
                refresh_after: Instant::now(),
            },
        );
    }

    fn resolver(&mut self) -> Option<TokioResolver> {
        if matches!(self.lookup, Lookup::Unbuilt) {
            self.lookup = match build_resolver(&self.settings.nameservers) {
                Ok(r) => Lookup::Hickory(Box::new(r)),
                Err(e) => {
                    warn!(error = %e, "dns: no resolver configuration; using the system resolver");
                    Lookup::System
                }
            };
        }
        match &self.lookup {
            Lookup::Hickory(r) => Some(TokioResolver::clone(r)),
            _ => None,
        }
    }
}

fn build_resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| e.to_string())?
    } else {
        let mut config = ResolverConfig::new();
        for &addr in nameservers {
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    // Answers are cached here (per name, with the stale window); the resolver's own cache
    // would only hold them twice.
    builder.options_mut().cache_size = 0;
    Ok(builder.build())
}

/// Resolves `host:port`, rotating over a name's addresses. IP literals never touch the cache.
/// An expired answer within the stale window is returned at once and refreshed in the
/// background (on the worker's `LocalSet`).
pub async fn resolve(
    cache: &Rc<RefCell<DnsCache>>,
    host: &str,
    port: u16,
) -> io::Result<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let cached = cache.borrow_mut().lookup_cached(host, Instant::now());
    match cached {
        Cached::Fresh(ip) => Ok(SocketAddr::new(ip, port)),
        Cached::Stale(ip, refresh) => {
            if refresh {
                let (cache, host) = (cache.clone(), host.to_string());
                tokio::task::spawn_local(async move {
                    if let Err(e) = fetch(&cache, &host, port).await {
                        warn!(%host, error = %e, "dns: refresh failed; serving the stale answer");
                        cache.borrow_mut().refresh_failed(&host);
                    }
                });
            }
            Ok(SocketAddr::new(ip, port))
        }
        Cached::Missing => fetch(cache, host, port)
            .await
            .map(|ip| SocketAddr::new(ip, port)),
    }
}

/// Resolves `host:port` as [`resolve`] does, skipping addresses `healthy` refuses: `None`
/// when every address of the answer is refused.
pub async fn resolve_healthy(
    cache: &Rc<RefCell<DnsCache>>,
    host: &str,
    port: u16,
    healthy: impl Fn(IpAddr) -> bool,
) -> io::Result<Option<SocketAddr>> {
    let first = resolve(cache, host, port).await?;
    if healthy(first.ip()) {
        return Ok(Some(first));
    }
    let answer_len = cache
        .borrow()
        .entries
        .get(host)
        .map_or(1, |e| e.addrs.len());
    for _ in 1..answer_len {
        let next = resolve(cache, host, port).await?;
        if healthy(next.ip()) {
            return Ok(Some(next));
        }
    }
    Ok(None)
}

/// Every address `host` resolves to (the cached answer while it holds, as [`resolve`]
/// serves it); an IP literal is its own answer.
pub async fn resolve_all(
    cache: &Rc<RefCell<DnsCache>>,
    host: &str,
    port: u16,
) -> io::Result<Vec<IpAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let first = resolve(cache, host, port).await?;
    Ok(cache
        .borrow()
        .entries
        .get(host)
        .map_or_else(|| vec![first.ip()], |e| e.addrs.clone()))
}

/// Asks the resolver and stores the answer; returns its first address.
async fn fetch(cache: &RefCell<DnsCache>, host: &str, port: u16) -> io::Result<IpAddr> {
    let looked_up = look_up(cache, host, port).await;
    let shared = cache.borrow().shared.clone();
    let (addrs, valid_until) = match looked_up {
        Ok(found) => found,
        Err(e) => {
            if let Some(shared) = shared {
                shared.record(host, Answer::Failed);
            }
            return Err(e);
        }
    };
    if let Some(shared) = shared {
        shared.record(host, Answer::Addresses(addrs.clone()));
    }
    let ip = addrs[0];
    cache.borrow_mut().store(host, addrs, valid_until);
    Ok(ip)
}

/// One lookup of `host`: its addresses (at least one) and until when they hold.
async fn look_up(
    cache: &RefCell<DnsCache>,
    host: &str,
    port: u16,
) -> io::Result<(Vec<IpAddr>, Instant)> {
    let resolver = cache.borrow_mut().resolver();
    let (mut addrs, valid_until) = match resolver {
        Some(r) => r
            .lookup_ip(host)
            .await
            .map(|found| (found.iter().collect::<Vec<_>>(), found.valid_until()))
            .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("{host}: {e}")))?,
        None => {
            let found = tokio::net::lookup_host((host, port)).await?;
            let settings = &cache.borrow().settings;
            let ttl = settings.valid_ttl.unwrap_or(settings.system_ttl);
            (found.map(|a| a.ip()).collect(), Instant::now() + ttl)
        }
    };
    addrs.dedup();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host}: no addresses"),
        ));
    }
    Ok((addrs, valid_until))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Rc<RefCell<DnsCache>> {
        Rc::new(RefCell::new(DnsCache::new(DnsSettings {
            stale_ttl: Duration::from_secs(60),
            ..DnsSettings::default()
        })))
    }

    #[test]
    fn ip_literals_and_hosts_file_names_resolve() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let cache = cache();
        rt.block_on(async {
            let a = resolve(&cache, "127.0.0.1", 80).await.expect("literal");
            assert_eq!(a, SocketAddr::from(([127, 0, 0, 1], 80)));
            let b = resolve(&cache, "localhost", 81).await.expect("localhost");
            assert!(b.ip().is_loopback());
            assert_eq!(b.port(), 81);
            assert!(cache.borrow().entries.contains_key("localhost"));
        });
    }

    #[test]
    fn answers_expire_and_stale_ones_serve_only_within_the_grace() {
        let cache = cache();
        let mut c = cache.borrow_mut();
        let now = Instant::now();
        c.store("a.test", vec![IpAddr::from([10, 0, 0, 1])], now);
        // Held at least MIN_TTL even when the record said 0.
        assert!(c.pick("a.test", now, Duration::ZERO).is_some());
        let later = now + MIN_TTL + Duration::from_millis(10);
        assert_eq!(c.pick("a.test", later, Duration::ZERO), None);
        // Stale: served, and one refresh starts; the next request does not start another.
        assert!(matches!(
            c.lookup_cached("a.test", later),
            Cached::Stale(_, true)
        ));
        assert!(matches!(
            c.lookup_cached("a.test", later),
            Cached::Stale(_, false)
        ));
        c.refresh_failed("a.test");
        let retry = later + RETRY_AFTER + Duration::from_millis(10);
        assert!(matches!(
            c.lookup_cached("a.test", retry),
            Cached::Stale(_, true)
        ));
        let gone = now + MIN_TTL + Duration::from_secs(61);
        assert!(matches!(c.lookup_cached("a.test", gone), Cached::Missing));
    }

    #[test]
    fn valid_ttl_overrides_the_records() {
        let cache = RefCell::new(DnsCache::new(DnsSettings {
            valid_ttl: Some(Duration::from_secs(300)),
            ..DnsSettings::default()
        }));
        let mut c = cache.borrow_mut();
        let now = Instant::now();
        c.store("b.test", vec![IpAddr::from([10, 0, 0, 2])], now);
        assert!(
            c.pick("b.test", now + Duration::from_secs(200), Duration::ZERO)
                .is_some()
        );
    }
}
