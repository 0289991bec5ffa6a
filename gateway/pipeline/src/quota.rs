//! Rate-limit counters: what the rate-limiting plugin asks of a counter store, and the stores
//! a process offers it ([`Quotas`]).
//!
//! The in-memory store ([`local::LocalCounters`]) lives here because it is part of the core.
//! The Redis store (`gangway-quota`) and the Postgres one (`gangway-store`) are edge crates:
//! the binary hands them over as trait objects, so the core never links a client. The stores
//! outlive config reloads (they hang off the [`crate::Catalog`]), so a reload never resets a
//! count, as Kong's shared dictionary survives `kong reload`.

pub mod calendar;
mod counts;
pub mod local;
pub mod zeroed;

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Arc;

/// One fixed window of a request's limit. Its Kong key is built only by the stores that
/// send it somewhere ([`Window::key`]); the local store hashes the parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// `ratelimit:<route_id>:<service_id>:`, the instance's part of Kong's key.
    pub scope: Arc<str>,
    /// What is counted: a consumer or credential id, a client IP, a header value or a path.
    pub identifier: Arc<str>,
    /// Kong's period name (`minute`).
    pub period: &'static str,
    /// The window's start, epoch milliseconds (Kong's `period_date`).
    pub start_ms: i64,
    /// The window's length in seconds (Kong's EXPIRATION: a month counts 2,592,000).
    pub seconds: u64,
}

impl Window {
    /// When the window ends, epoch milliseconds: the next calendar month or year for those
    /// (a month is 28 to 31 days, where `seconds` is Kong's fixed 30), else `seconds` on.
    pub fn end_ms(&self) -> i64 {
        let days = self.start_ms.div_euclid(86_400_000);
        let (year, month, _) = calendar::civil_from_days(days);
        let next = match self.period {
            "month" if month == 12 => calendar::days_from_civil(year + 1, 1, 1),
            "month" => calendar::days_from_civil(year, month + 1, 1),
            "year" => calendar::days_from_civil(year + 1, 1, 1),
            _ => return self.start_ms + self.seconds as i64 * 1000,
        };
        next * 86_400_000
    }

    /// Kong's counter key: `ratelimit:<route_id>:<service_id>:<identifier>:<period_date_ms>:<period>`.
    pub fn key(&self) -> String {
        let mut start = itoa::Buffer::new();
        self.key_parts(&mut start)
            .iter()
            .map(|part| String::from_utf8_lossy(part))
            .collect()
    }

    /// [`Window::key`] in the pieces it is joined from, for a store that writes them
    /// straight to the wire; `start` holds the formatted start.
    pub fn key_parts<'a>(&'a self, start: &'a mut itoa::Buffer) -> [&'a [u8]; 6] {
        [
            self.scope.as_bytes(),
            self.identifier.as_bytes(),
            b":",
            start.format(self.start_ms).as_bytes(),
            b":",
            self.period.as_bytes(),
        ]
    }

    /// Feeds what [`Window::key`] is made of to `state`, without building it: equal keys
    /// hash equal.
    pub fn hash_key<H: std::hash::Hasher>(&self, state: &mut H) {
        self.hash_owner(state);
        self.hash_period(state);
    }

    /// The first part of [`Window::hash_key`]: whose count it is. A request's windows share
    /// it, so a store can hash it once and go on from a copy of `state` for each window.
    pub fn hash_owner<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.scope.as_bytes());
        state.write(self.identifier.as_bytes());
        state.write_u8(0xff);
    }

    /// The rest of [`Window::hash_key`], after [`Window::hash_owner`].
    pub fn hash_period<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_i64(self.start_ms);
        state.write(self.period.as_bytes());
    }

    /// True when `self` and `other` have the same owner because they share its text (the
    /// windows of one request do), without comparing it.
    pub fn same_owner(&self, other: &Window) -> bool {
        Arc::ptr_eq(&self.scope, &other.scope) && Arc::ptr_eq(&self.identifier, &other.identifier)
    }
}

/// A 64-bit hash of Kong's key of each of `windows` under `hasher`, equal to what
/// [`Window::hash_key`] feeds it. A request's windows share their owner, which is hashed
/// once (it is most of the key's bytes).
pub fn window_keys<'w, S: BuildHasher>(
    hasher: &'w S,
    windows: &'w [Window],
) -> impl Iterator<Item = (&'w Window, u64)> + 'w
where
    S::Hasher: Clone,
{
    let mut owner: Option<(&Window, S::Hasher)> = None;
    windows.iter().map(move |window| {
        let mut state = match &owner {
            Some((first, state)) if first.same_owner(window) => state.clone(),
            _ => {
                let mut state = hasher.build_hasher();
                window.hash_owner(&mut state);
                owner = Some((window, state.clone()));
                state
            }
        };
        window.hash_period(&mut state);
        (window, state.finish())
    })
}

/// Why a store could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QuotaError {
    /// The store did not answer within its timeout.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The store answered with an error, or could not be reached.
    #[error("{0}")]
    Store(String),
}

/// What a store answered: each window's count before this request, in the order asked.
pub type UsageResult = Result<Vec<u64>, QuotaError>;

/// A usage that needs a round trip; it runs on the worker that asked.
pub type UsageFuture = Pin<Box<dyn Future<Output = UsageResult>>>;

/// A usage known at once, or one that needs I/O.
pub enum Usage {
    /// Known without I/O (the local store, a cached batched count).
    Ready(UsageResult),
    /// Needs a round trip.
    Pending(UsageFuture),
}

/// A counter store, shared by every worker of the node.
pub trait QuotaStore: Send + Sync {
    /// Each window's count before this request. A store may count the request in the same
    /// step (Kong's redis realtime mode, where refused requests are counted too; the local
    /// store, which takes a refused request back with [`QuotaStore::refund`]).
    fn usage(&self, windows: &[Window]) -> Usage;

    /// Counts an allowed request in every window, in stores whose `usage` did not.
    fn increment(&self, windows: &[Window]);

    /// Takes back a refused request that `usage` counted, in stores whose counts must
    /// exclude refused requests. Default: nothing.
    fn refund(&self, _windows: &[Window]) {}
}

/// Kong's `redis` record of the rate-limiting config, the deprecated flat `redis_*` fields
/// folded in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
pub struct RedisConf {
    /// Server host; required for the redis policy (none in cluster and sentinel modes).
    pub host: Option<String>,
    /// Server port; default 6379.
    pub port: Option<u16>,
    /// Connect and command timeout in milliseconds; default 2000.
    pub timeout: Option<u64>,
    /// ACL user; default none (`AUTH password` only).
    pub username: Option<String>,
    /// Password; default none (no AUTH).
    pub password: Option<String>,
    /// Database index; default 0 (no SELECT). Not allowed with Redis Cluster.
    #[serde(default)]
    pub database: i64,
    /// TLS; default false.
    #[serde(default)]
    pub ssl: bool,
    /// Verify the server certificate (against the system roots and `lua_ssl_trusted_certificate`);
    /// default false.
    #[serde(default)]
    pub ssl_verify: bool,
    /// SNI and verified name; default the host.
    pub server_name: Option<String>,
    /// Redis Cluster seed nodes (Kong Enterprise's field); default none.
    #[serde(default)]
    pub cluster_nodes: Option<Vec<ClusterNode>>,
    /// MOVED/ASK redirections followed per command; default 5.
    #[serde(default)]
    pub cluster_max_redirections: Option<u32>,
    /// Sentinel master name (Kong Enterprise's field); default none.
    pub sentinel_master: Option<String>,
    /// Which sentinel-managed node to use: `master` (default), `slave` or `any`.
    pub sentinel_role: Option<String>,
    /// Sentinel nodes; default none.
    #[serde(default)]
    pub sentinel_nodes: Option<Vec<SentinelNode>>,
    /// Sentinel ACL user; default none.
    pub sentinel_username: Option<String>,
    /// Sentinel password; default none.
    pub sentinel_password: Option<String>,
}

/// A Redis Cluster seed node (`{ip, port}` as Kong Enterprise spells it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
pub struct ClusterNode {
    /// Address or host name; default `127.0.0.1`.
    pub ip: String,
    /// Port; default 6379.
    pub port: u16,
}

/// A Redis Sentinel node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
pub struct SentinelNode {
    /// Host; default `127.0.0.1`.
    pub host: String,
    /// Port; default 26379.
    pub port: u16,
}

/// How a redis-policy instance counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RedisMode {
    /// `sync_rate = -1`: one atomic round trip per request, for all of its windows.
    Realtime,
    /// `sync_rate > 0`: counted on the node, flushed to Redis in one pipeline every this many
    /// seconds.
    Batched(f64),
}

/// Makes Redis stores; the `gangway-quota` edge crate implements it.
pub trait RedisQuotas: Send + Sync {
    /// A store on the server `conf` describes. Instances with equal settings share one store
    /// (and its connections).
    fn store(&self, conf: &RedisConf, mode: RedisMode) -> Result<Arc<dyn QuotaStore>, String>;

    /// Round trips and failed calls since the process started.
    fn counters(&self) -> RedisCounters;
}

/// What a process's Redis stores have done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisCounters {
    /// Round trips to Redis (a pipeline counts once).
    pub round_trips: u64,
    /// Calls that failed (connects, counts and syncs).
    pub failures: u64,
    /// Requests counted in Redis at once because their `sync_rate` window was past
    /// `rate_limiting_local_max_keys`.
    pub past_max_keys: u64,
}

/// The counter stores a process offers the rate-limiting plugin.
#[derive(Clone)]
pub struct Quotas {
    /// The node's own counters (`policy: local`).
    pub local: Arc<local::LocalCounters>,
    /// Redis (`policy: redis`); `None` in a build without the quota edge crate.
    pub redis: Option<Arc<dyn RedisQuotas>>,
    /// The database (`policy: cluster`); `None` without a database, where Kong refuses it.
    pub cluster: Option<Arc<dyn QuotaStore>>,
    /// The node has a database (where Kong offers `policy: cluster`); default false.
    pub database: bool,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            local: Arc::new(local::LocalCounters::default()),
            redis: None,
            cluster: None,
            database: false,
        }
    }
}
