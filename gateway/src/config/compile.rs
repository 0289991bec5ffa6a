//! Compiles a validated [`Config`] into a [`Snapshot`]: builds the router, resolves each
//! route's service, and precomputes per-service upstream facts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};

use super::ConfigErrors;
use super::model::{Config, Protocol};
use super::snapshot::{ServiceTarget, Snapshot};
use crate::net::tls::{CertPair, CertStore, server_config};
use crate::router::{Router, RouterFlavor};
use crate::settings::Settings;

/// What compiling needs besides the config: process-wide state that outlives snapshots.
pub struct CompileShared<'a> {
    /// Settings.
    pub settings: &'a Settings,
    /// Target health, kept across reloads.
    pub health: &'a HealthRegistry,
    /// The certificate served when no SNI matches (from `ssl_cert`, or generated at start).
    pub default_cert: &'a CertPair,
}
use crate::upstream::balancer::{Balancer, HealthRegistry};

/// Kong's configuration hash: the md5 of the config, as 32 hex characters.
pub fn config_hash(config: &Config) -> String {
    let json = serde_json::to_vec(config).expect("invariant: the config model serializes");
    let digest = Md5::digest(&json);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Host header for `host:port`: the port is left out when it is the scheme's default.
pub fn host_header(host: &str, port: u16, tls: bool) -> String {
    let default_port = if tls { 443 } else { 80 };
    if port == default_port {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

/// Builds a snapshot; every problem is reported with its entity path.
pub fn compile(
    config: Config,
    shared: &CompileShared<'_>,
    version: u64,
) -> Result<Snapshot, ConfigErrors> {
    let health = shared.health;
    let mut errors = ConfigErrors::default();
    let tls = match CertStore::build(
        &config.certificates,
        &config.snis,
        shared.default_cert.clone(),
    ) {
        Ok(store) => Some(server_config(Arc::new(store))),
        Err(e) => {
            errors.0.extend(e.0);
            None
        }
    };
    let router = match Router::build(&config.routes, RouterFlavor::TraditionalCompatible) {
        Ok(r) => Some(r),
        Err(e) => {
            errors.0.extend(e.0);
            None
        }
    };
    let mut balancers = Vec::with_capacity(config.upstreams.len());
    for (i, u) in config.upstreams.iter().enumerate() {
        let targets: Vec<_> = config
            .targets
            .iter()
            .filter(|t| t.upstream.id == u.id)
            .collect();
        match Balancer::build(u, &targets, health, &format!("upstreams[{i}]")) {
            Ok(b) => balancers.push(b),
            Err(e) => errors.0.extend(e.0),
        }
    }
    let by_name: HashMap<&str, usize> = balancers
        .iter()
        .enumerate()
        .map(|(i, b)| (b.name.as_str(), i))
        .collect();
    let services: Vec<ServiceTarget> = config
        .services
        .iter()
        .map(|s| {
            let tls = matches!(
                s.protocol,
                Protocol::Https | Protocol::Grpcs | Protocol::Tls
            );
            ServiceTarget {
                id: s.id,
                name: s.name.clone(),
                tls,
                host: s.host.clone(),
                port: s.port,
                host_header: host_header(&s.host, s.port, tls),
                path: s.path.clone(),
                connect_timeout: Duration::from_millis(u64::from(s.connect_timeout)),
                read_timeout: Duration::from_millis(u64::from(s.read_timeout)),
                write_timeout: Duration::from_millis(u64::from(s.write_timeout)),
                retries: s.retries,
                enabled: s.enabled,
                balancer: by_name.get(s.host.as_str()).copied(),
            }
        })
        .collect();
    let by_id: HashMap<_, _> = config
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id, i))
        .collect();
    let route_service = config
        .routes
        .iter()
        .map(|r| r.service.and_then(|fk| by_id.get(&fk.id).copied()))
        .collect();
    let (Some(router), Some(tls)) = (router, tls) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Snapshot {
        version,
        hash: config_hash(&config),
        config,
        router,
        route_service,
        services,
        balancers,
        tls,
    })
}
