//! Active health checks: a thread of its own probes the targets of upstreams whose
//! `healthchecks.active` has an interval, as Kong's healthchecker does. Each address a
//! target's name resolves to is probed, every `healthy.interval` seconds while healthy and
//! every `unhealthy.interval` while not; the results move the shared
//! [`super::health::TargetHealth`] that the workers' balancers read. The same thread looks
//! up again the names whose every address is down, for passive checks too.
//!
//! The probes use the same sockets, TLS and DNS code as the proxy (on the epoll backend, in a
//! current-thread runtime), so a probe sees what a proxied request would.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tracing::{debug, info, warn};

use super::balancer::BalancedTarget;
use super::dns::{self, DnsCache, DnsSettings};
use super::health::{ActivePolicy, Observation, ProbeKind};
use crate::gateway::Gateway;
use gangway_net::epoll::Epoll;
use gangway_net::{Backend, Stream, tls};

/// How often the checker looks for probes that are due.
const TICK: Duration = Duration::from_millis(100);

/// How often names whose every address is down are looked up when nothing is probed (the
/// lookups themselves go out only as their answers' TTLs run out).
const LOOKUP_EVERY: Duration = Duration::from_secs(1);

/// Starts the checker thread; it stops once the gateway drains.
pub fn spawn(gateway: Arc<Gateway>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("gangway-health".into())
        .spawn(move || Epoll::block_on(run(gateway)))
        .map(|_| ())
}

async fn run(gateway: Arc<Gateway>) {
    let s = &gateway.settings;
    let dns = Rc::new(RefCell::new(
        DnsCache::new(DnsSettings {
            nameservers: s.dns_resolver.clone(),
            valid_ttl: s.dns_valid_ttl.map(Duration::from_secs),
            stale_ttl: Duration::from_secs(s.dns_stale_ttl),
            system_ttl: Duration::from_secs(s.dns_cache_ttl_s),
        })
        .sharing_answers(gateway.shared.health.answers.clone()),
    ));
    // Probe TLS trusts what upstream TLS trusts (`lua_ssl_trusted_certificate`).
    let tls_configs =
        [false, true].map(|verify| tls::client_config(verify, None, &gateway.shared.roots, None));
    // When each (upstream, target index, address) was last probed.
    let mut last: HashMap<(String, usize, IpAddr), Instant> = HashMap::new();
    let mut published = gateway.published();
    while !gateway.is_draining() {
        let snapshot = gateway.snapshot();
        let probing = snapshot.balancers.iter().any(|b| b.active.is_some());
        // Names whose every address is down, in upstreams without probes (the probes below
        // look up every target of theirs anyway).
        let stranded: Vec<&BalancedTarget> = snapshot
            .balancers
            .iter()
            .filter(|b| b.active.is_none())
            .flat_map(|b| &b.targets)
            .filter(|t| t.health.is_named() && !t.health.is_healthy())
            .collect();
        if !probing && stranded.is_empty() {
            // Nothing to probe or look up until a config with active checks is published or
            // a name loses its last healthy address: sleep until then rather than waking
            // every tick for nothing.
            drop(snapshot);
            tokio::select! {
                changed = published.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = gateway.shared.health.all_down.notified() => {}
            }
            continue;
        }
        // A name whose every address is down is no longer picked, so no request looks it up
        // again: look it up here (as Kong renews its targets' DNS), and an address it moved
        // to joins healthy.
        for t in stranded {
            if let Ok(addresses) = dns::resolve_all(&dns, &t.host, t.port).await {
                addresses
                    .into_iter()
                    .for_each(|ip| drop(t.health.address(ip)));
            }
        }
        let mut probed = HashSet::new();
        for balancer in &snapshot.balancers {
            let Some(policy) = &balancer.active else {
                continue;
            };
            let now = Instant::now();
            // Every address of every target, as its name resolves now: Kong probes each.
            let mut due = Vec::new();
            for (i, t) in balancer.targets.iter().enumerate() {
                let addresses = match dns::resolve_all(&dns, &t.host, t.port).await {
                    Ok(addresses) => addresses,
                    Err(e) => {
                        debug!(upstream = %balancer.name, host = %t.host, error = %e, "active check: name does not resolve");
                        continue;
                    }
                };
                for ip in addresses {
                    let every = if t.health.is_address_healthy(ip) {
                        policy.healthy_interval
                    } else {
                        policy.unhealthy_interval
                    };
                    let key = (balancer.name.clone(), i, ip);
                    if every.is_some_and(|every| last.get(&key).is_none_or(|at| now >= *at + every))
                    {
                        due.push((i, ip));
                    }
                    probed.insert(key);
                }
            }
            for chunk in due.chunks(policy.concurrency) {
                // Each probe is a task of this thread's LocalSet, so a chunk runs at once.
                let tasks: Vec<_> = chunk
                    .iter()
                    .map(|&(i, ip)| {
                        let t = &balancer.targets[i];
                        let (policy, host, addr) =
                            (policy.clone(), t.host.clone(), SocketAddr::new(ip, t.port));
                        let tls = tls_configs[usize::from(policy.verify_certificate)].clone();
                        tokio::task::spawn_local(
                            async move { probe(&policy, &tls, &host, addr).await },
                        )
                    })
                    .collect();
                let mut results = Vec::with_capacity(tasks.len());
                for task in tasks {
                    results.push(task.await.unwrap_or(Observation::TcpFailure));
                }
                for (&(i, ip), what) in chunk.iter().zip(results) {
                    let t = &balancer.targets[i];
                    last.insert((balancer.name.clone(), i, ip), now);
                    let target = format!("{}:{}", t.host, t.port);
                    match t.health.observe_active(ip, policy, what) {
                        Some(true) => {
                            info!(upstream = %balancer.name, %target, address = %ip, "active check: target address healthy")
                        }
                        Some(false) => {
                            warn!(upstream = %balancer.name, %target, address = %ip, result = ?what, "active check: target address unhealthy")
                        }
                        None => {}
                    }
                }
            }
        }
        // Addresses a name no longer resolves to, and targets gone from the config.
        last.retain(|key, _| probed.contains(key));
        drop(snapshot);
        tokio::time::sleep(if probing { TICK } else { LOOKUP_EVERY }).await;
    }
}

/// One probe of `host`'s address `addr`, bounded by the policy's timeout.
async fn probe(
    policy: &ActivePolicy,
    tls: &Arc<rustls::ClientConfig>,
    host: &str,
    addr: SocketAddr,
) -> Observation {
    match tokio::time::timeout(policy.timeout, probe_once(policy, tls, host, addr)).await {
        Ok(Ok(status)) => Observation::Status(status),
        Ok(Err(_)) => Observation::TcpFailure,
        Err(_) => Observation::Timeout,
    }
}

/// Connects and, for HTTP probes, sends `GET http_path` and reads the status line. A TCP
/// probe that connects reports status 0.
async fn probe_once(
    policy: &ActivePolicy,
    tls_config: &Arc<rustls::ClientConfig>,
    host: &str,
    addr: SocketAddr,
) -> std::io::Result<u16> {
    let port = addr.port();
    let stream = Epoll::connect(addr).await?;
    match policy.kind {
        ProbeKind::Tcp => Ok(0),
        ProbeKind::Http => http_status(&stream, policy, host, port).await,
        ProbeKind::Https => {
            let name = policy.sni.as_deref().unwrap_or(host).to_string();
            let server_name = ServerName::try_from(name)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = tls::connect(stream, tls_config.clone(), server_name).await?;
            http_status(&stream, policy, host, port).await
        }
    }
}

async fn http_status<S: Stream>(
    stream: &S,
    policy: &ActivePolicy,
    host: &str,
    port: u16,
) -> std::io::Result<u16> {
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {}\r\nConnection: close\r\n",
        policy.http_path,
        crate::headers::PRODUCT
    );
    for (name, value) in &policy.headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let bytes = request.into_bytes();
    let len = bytes.len();
    stream.write_all(bytes, 0..len).await.0?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let (n, b) = stream.read(buf).await;
        buf = b;
        if n? == 0 || buf.len() >= 12 {
            break;
        }
    }
    let line = buf.get(..12).unwrap_or_default();
    if !line.starts_with(b"HTTP/1.") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an HTTP response",
        ));
    }
    std::str::from_utf8(&line[9..12])
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad status line"))
}
