//! The immutable snapshot the data plane reads: everything a request needs, precompiled.

use std::time::Duration;

use gangway_config::model::{Config, Id};
use gangway_pipeline::Pipeline;
use gangway_pipeline::identity::Identities;
use gangway_router::Router;

use crate::upstream::balancer::Balancer;

/// Where a service's traffic goes.
#[derive(Debug, Clone)]
pub struct ServiceTarget {
    /// The service's id.
    pub id: Id,
    /// The service's name, if any.
    pub name: Option<String>,
    /// True for https upstreams.
    pub tls: bool,
    /// Upstream hostname or IP (or the name of an upstream entity).
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// The Host header sent upstream unless `preserve_host`: host, plus `:port` unless it is
    /// the scheme's default.
    pub host_header: String,
    /// Base path (`service.path`).
    pub path: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout (between bytes of the upstream response).
    pub read_timeout: Duration,
    /// Write timeout.
    pub write_timeout: Duration,
    /// Retries after connection failures.
    pub retries: u16,
    /// Disabled services answer as if the route had none.
    pub enabled: bool,
    /// Index into [`Snapshot::balancers`] when `host` names an upstream entity.
    pub balancer: Option<usize>,
    /// TLS client settings for https services.
    pub tls_client: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// The compiled, immutable configuration. Routes, services and plugin chains live in
/// [`Compiled`] (reached through `Deref`), shared between snapshots that differ only in
/// their consumers and keys: a write to one key builds a new snapshot in microseconds.
pub struct Snapshot {
    /// Increments with every successful load; 0 means no config loaded yet.
    pub version: u64,
    /// Kong's `configuration_hash` (32 hex characters): the config's
    /// [`Config::source_md5`](gangway_config::Config::source_md5). Empty for a config read
    /// from a database, for which Kong reports no hash and hashing 100,000 entities on every
    /// change would be wasted.
    pub hash: String,
    /// Routes, services, upstreams, TLS and plugin chains.
    pub compiled: std::sync::Arc<Compiled>,
    /// Consumers, credentials and ACL groups, indexed (moved out of `config`).
    pub identities: std::sync::Arc<Identities>,
}

/// Everything in a snapshot but the identities.
pub struct Compiled {
    /// The validated entities the snapshot was built from (consumers, credentials and ACLs
    /// live in `identities`).
    pub config: Config,
    /// The route matcher (shared with the next snapshot when the routes stay the same).
    pub router: std::sync::Arc<Router>,
    /// For each route (by index), the index of its service in `services`.
    pub route_service: Vec<Option<usize>>,
    /// Compiled services.
    pub services: Vec<ServiceTarget>,
    /// Compiled upstream entities (each shared with the next snapshot while it and its
    /// targets stay the same).
    pub balancers: Vec<std::sync::Arc<Balancer>>,
    /// TLS for `ssl` proxy listeners: the configured certificates by SNI, then the default.
    pub tls: std::sync::Arc<rustls::ServerConfig>,
    /// Compiled plugin instances and each route's chain (shared with the next snapshot while
    /// the plugins and routes stay the same).
    pub pipeline: std::sync::Arc<Pipeline>,
    /// Who may connect to which port ([`crate::conn_policy`]): checked at accept, and
    /// written to the kernel's IP guard when it runs.
    pub conn_policy: std::sync::Arc<gangway_net::conn_policy::ConnectionPolicy>,
    /// The route and service objects of log entries, serialized once per config.
    pub log_rows: crate::log_rows::LogRows,
}

impl std::ops::Deref for Snapshot {
    type Target = Compiled;

    fn deref(&self) -> &Compiled {
        &self.compiled
    }
}

impl Snapshot {
    /// A snapshot with `identities` in place of this one's, sharing everything else (what
    /// an Admin API write of a consumer, key or ACL group publishes). The version and hash
    /// are the config file's, so they stay.
    pub fn with_identities(&self, identities: Identities) -> Snapshot {
        Snapshot {
            version: self.version,
            hash: self.hash.clone(),
            compiled: self.compiled.clone(),
            identities: std::sync::Arc::new(identities),
        }
    }
}
