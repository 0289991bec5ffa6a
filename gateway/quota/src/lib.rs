//! Rate-limit counters in Redis for the rate-limiting plugin's `redis` policy: Kong's keys and
//! realtime script, batched counting for `sync_rate`, TLS with rustls, AUTH and ACL users, a
//! database index, and Redis Cluster (ElastiCache cluster mode and Serverless).
//!
//! [`Redis`] is the factory the binary hands to the core (`gangway_pipeline::quota`). It keeps
//! one store per distinct `redis` record and mode, for the life of the process, so a config
//! reload reuses connections and batched counts.
//!
//! Connections belong to the worker that uses them (one multiplexed connection per worker and
//! store, opened on first use), so a request never crosses threads. Counting on a standalone
//! server takes a pipe of the worker's own on its I/O backend ([`install`]). Each call is bounded by
//! the record's `timeout`, connect included; after a failed connect a worker fails fast for
//! a second instead of trying again on every request.

mod batched;
mod connect;
mod pipe;
mod realtime;
mod resp;
mod slot_table;
mod stats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gangway_config::settings::RedisConnections;
use gangway_net::tls::RootSource;
use gangway_pipeline::quota::{QuotaStore, RedisConf, RedisCounters, RedisMode, RedisQuotas};

pub use pipe::install;
use stats::Stats;

/// The Redis stores of a process (empty by default).
pub struct Redis {
    sharing: RedisConnections,
    /// Trust anchors for the worker's own TLS connections (`ssl_verify`).
    roots: RootSource,
    /// PEM CAs that verify servers when `ssl_verify` is on (Kong's
    /// `lua_ssl_trusted_certificate`); `None` uses the system's roots.
    trusted_pem: Option<Vec<u8>>,
    stores: Mutex<HashMap<(RedisConf, ModeKey), Arc<dyn QuotaStore>>>,
    stats: Arc<Stats>,
    /// The most windows of one length a `sync_rate` store keeps on the node (0: no bound).
    max_windows: usize,
}

/// [`RedisMode`] as a map key (`sync_rate` by its bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ModeKey {
    Realtime,
    Batched(u64),
}

impl Redis {
    /// A factory whose TLS connections verify against `trusted_pem` (when `ssl_verify`),
    /// with connections per worker or shared, whose `sync_rate` stores keep at most
    /// `max_windows` windows of one length (0: no bound; `rate_limiting_local_max_keys`).
    pub fn new(
        trusted_pem: Option<Vec<u8>>,
        roots: RootSource,
        sharing: RedisConnections,
        max_windows: usize,
    ) -> Redis {
        Redis {
            sharing,
            roots,
            trusted_pem,
            stores: Mutex::new(HashMap::new()),
            stats: Arc::new(Stats::default()),
            max_windows,
        }
    }
}

impl RedisQuotas for Redis {
    fn store(&self, conf: &RedisConf, mode: RedisMode) -> Result<Arc<dyn QuotaStore>, String> {
        let key = match mode {
            RedisMode::Realtime => ModeKey::Realtime,
            RedisMode::Batched(rate) => ModeKey::Batched(rate.to_bits()),
        };
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = stores.get(&(conf.clone(), key)) {
            return Ok(store.clone());
        }
        let target = Arc::new(connect::Target::new(
            conf,
            self.trusted_pem.as_deref(),
            &self.roots,
            self.stats.clone(),
            self.sharing,
        )?);
        let store: Arc<dyn QuotaStore> = match mode {
            RedisMode::Realtime => Arc::new(realtime::Realtime::new(target)),
            RedisMode::Batched(rate) => batched::Batched::start(target, rate, self.max_windows),
        };
        stores.insert((conf.clone(), key), store.clone());
        Ok(store)
    }

    fn counters(&self) -> RedisCounters {
        RedisCounters {
            round_trips: self.stats.round_trips(),
            failures: self.stats.total(),
            past_max_keys: self.stats.past_max_keys(),
        }
    }
}
