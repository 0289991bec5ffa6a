//! Active health checks: a thread of its own probes the targets of upstreams whose
//! `healthchecks.active` has an interval, as Kong's healthchecker does. Healthy targets are
//! probed every `healthy.interval` seconds, unhealthy ones every `unhealthy.interval`; the
//! results move the shared [`super::health::TargetHealth`] that the workers' balancers read.
//!
//! The probes use the same sockets, TLS and DNS code as the proxy (on the epoll backend, in a
//! current-thread runtime), so a probe sees what a proxied request would.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tracing::{info, warn};

use super::dns::{self, DnsCache, DnsSettings};
use super::health::{ActivePolicy, Observation, ProbeKind};
use crate::gateway::Gateway;
use gangway_net::epoll::Epoll;
use gangway_net::{Backend, Stream, tls};

/// How often the checker looks for probes that are due.
const TICK: Duration = Duration::from_millis(100);

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
        .sharing_answers(gateway.health.answers.clone()),
    ));
    // Probe TLS trusts what upstream TLS trusts (`lua_ssl_trusted_certificate`).
    let tls_configs =
        [false, true].map(|verify| tls::client_config(verify, None, &gateway.roots, None));
    // When each (upstream, target) was last probed.
    let mut last: HashMap<(String, String, u16), Instant> = HashMap::new();
    let mut published = gateway.published();
    while !gateway.is_draining() {
        let snapshot = gateway.snapshot();
        if snapshot.balancers.iter().all(|b| b.active.is_none()) {
            // Nothing to probe until a config with active checks is published: sleep until
            // then rather than waking every tick for nothing.
            drop(snapshot);
            if published.changed().await.is_err() {
                return;
            }
            continue;
        }
        for balancer in &snapshot.balancers {
            let Some(policy) = &balancer.active else {
                continue;
            };
            let now = Instant::now();
            let due: Vec<usize> = (0..balancer.targets.len())
                .filter(|&i| {
                    let t = &balancer.targets[i];
                    let every = if t.health.is_healthy() {
                        policy.healthy_interval
                    } else {
                        policy.unhealthy_interval
                    };
                    let key = (balancer.name.clone(), t.host.clone(), t.port);
                    every.is_some_and(|every| last.get(&key).is_none_or(|at| now >= *at + every))
                })
                .collect();
            for chunk in due.chunks(policy.concurrency) {
                // Each probe is a task of this thread's LocalSet, so a chunk runs at once.
                let tasks: Vec<_> = chunk
                    .iter()
                    .map(|&i| {
                        let t = &balancer.targets[i];
                        let (dns, policy, host, port) =
                            (dns.clone(), policy.clone(), t.host.clone(), t.port);
                        let tls = tls_configs[usize::from(policy.verify_certificate)].clone();
                        tokio::task::spawn_local(async move {
                            probe(&dns, &policy, &tls, &host, port).await
                        })
                    })
                    .collect();
                let mut results = Vec::with_capacity(tasks.len());
                for task in tasks {
                    results.push(task.await.unwrap_or(Observation::TcpFailure));
                }
                for (&i, what) in chunk.iter().zip(results) {
                    let t = &balancer.targets[i];
                    last.insert((balancer.name.clone(), t.host.clone(), t.port), now);
                    let target = format!("{}:{}", t.host, t.port);
                    match t.health.observe_active(policy, what) {
                        Some(true) => {
                            info!(upstream = %balancer.name, %target, "active check: target healthy")
                        }
                        Some(false) => {
                            warn!(upstream = %balancer.name, %target, result = ?what, "active check: target unhealthy")
                        }
                        None => {}
                    }
                }
            }
        }
        drop(snapshot);
        tokio::time::sleep(TICK).await;
    }
}

/// One probe of `host:port`, bounded by the policy's timeout.
async fn probe(
    dns: &Rc<RefCell<DnsCache>>,
    policy: &ActivePolicy,
    tls: &Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
) -> Observation {
    match tokio::time::timeout(policy.timeout, probe_once(dns, policy, tls, host, port)).await {
        Ok(Ok(status)) => Observation::Status(status),
        Ok(Err(_)) => Observation::TcpFailure,
        Err(_) => Observation::Timeout,
    }
}

/// Connects and, for HTTP probes, sends `GET http_path` and reads the status line. A TCP
/// probe that connects reports status 0.
async fn probe_once(
    dns: &Rc<RefCell<DnsCache>>,
    policy: &ActivePolicy,
    tls_config: &Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
) -> std::io::Result<u16> {
    let addr = dns::resolve(dns, host, port).await?;
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
