//! Where a store's Redis is and how to reach it: a standalone server or a Redis Cluster, over
//! TCP or TLS, with AUTH and a database index; and each worker's connection to it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gangway_net::tls::{RootSource, client_config};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::AsyncDNSResolver;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    Pipeline, RedisConnectionInfo, RedisFuture, TlsCertificates, Value,
};
use rustls_pki_types::ServerName;
use tokio::sync::OnceCell;

use gangway_config::settings::RedisConnections;
use gangway_pipeline::quota::{QuotaError, RedisConf, Window};

use super::pipe::{self, Endpoint, Pipe};
use super::stats::Stats;

/// How long a worker fails fast after a failed connect before it tries again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Where the redis crate connects (Redis Cluster, Sentinel, shared connections, and a
/// thread without a pipe); a worker's own counting on a standalone server takes a [`Pipe`].
#[derive(Clone)]
enum Server {
    Single(Client, AsyncConnectionConfig),
    Cluster(ClusterClient),
    /// The master the sentinels name, asked again at every (re)connect, so a failover is
    /// followed.
    Sentinel(
        Arc<tokio::sync::Mutex<SentinelClient>>,
        AsyncConnectionConfig,
    ),
}

impl Server {
    async fn open(&self) -> Result<Conn, (String, Instant)> {
        let opened = match self {
            Server::Single(client, config) => client
                .get_multiplexed_async_connection_with_config(config)
                .await
                .map(Conn::Single),
            Server::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
            Server::Sentinel(sentinel, config) => {
                let master = sentinel.lock().await.async_get_client().await;
                match master {
                    Ok(client) => client
                        .get_multiplexed_async_connection_with_config(config)
                        .await
                        .map(Conn::Single),
                    Err(e) => Err(e),
                }
            }
        };
        opened.map_err(|e| (e.to_string(), Instant::now()))
    }
}

/// A Redis deployment a store counts in.
pub struct Target {
    id: u64,
    sharing: RedisConnections,
    /// Round trips made (and failures, counted by the stores).
    pub stats: Arc<Stats>,
    server: Server,
    /// Bounds every call, connect included (the record's `timeout`).
    pub timeout: Duration,
    /// Redis Cluster: one request's keys are hash-tagged into one slot.
    pub cluster: bool,
    /// `host:port` (or the first cluster node), for log lines.
    pub describe: String,
    /// Whether the server takes `EXPIRE ... NX`, once asked ([`Target::expire_nx`]).
    expire_nx: AtomicU8,
    /// A standalone server with connections per worker: realtime counting takes a
    /// [`Pipe`] of the worker's own.
    endpoint: Option<Arc<Endpoint>>,
}

/// [`Target::expire_nx`] before the server was asked.
const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

impl Target {
    /// The deployment `conf` describes. `trusted_pem` verifies TLS servers when `ssl_verify`.
    pub fn new(
        conf: &RedisConf,
        trusted_pem: Option<&[u8]>,
        roots: &RootSource,
        stats: Arc<Stats>,
        sharing: RedisConnections,
    ) -> Result<Target, String> {
        let timeout = Duration::from_millis(conf.timeout.unwrap_or(2000).max(1));
        let port = conf.port.unwrap_or(6379);
        let mut settings = RedisConnectionInfo::default()
            .set_db(conf.database)
            .set_skip_set_lib_name();
        if let Some(password) = conf.password.as_deref().filter(|p| !p.is_empty()) {
            settings = settings.set_password(password);
            if let Some(username) = conf.username.as_deref().filter(|u| !u.is_empty()) {
                settings = settings.set_username(username);
            }
        }
        let certs = || TlsCertificates {
            client_tls: None,
            root_cert: trusted_pem.map(<[u8]>::to_vec),
        };
        let address = |host: &str, port: u16| -> Result<ConnectionInfo, String> {
            let addr = if conf.ssl {
                ConnectionAddr::TcpTls {
                    host: host.to_owned(),
                    port,
                    insecure: !conf.ssl_verify,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.to_owned(), port)
            };
            addr.into_connection_info()
                .map(|info| info.set_redis_settings(settings.clone()))
                .map_err(|e| e.to_string())
        };
        if let Some(nodes) = &conf.cluster_nodes {
            if conf.database != 0 {
                return Err("redis.database must be 0 with Redis Cluster".into());
            }
            let infos = nodes
                .iter()
                .map(|n| address(&n.ip, n.port))
                .collect::<Result<Vec<_>, _>>()?;
            let mut builder = ClusterClient::builder(infos)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(conf.cluster_max_redirections.unwrap_or(5));
            if let Some(password) = conf.password.as_deref().filter(|p| !p.is_empty()) {
                builder = builder.password(password);
                if let Some(username) = conf.username.as_deref().filter(|u| !u.is_empty()) {
                    builder = builder.username(username);
                }
            }
            if conf.ssl {
                builder = builder.tls(if conf.ssl_verify {
                    redis::TlsMode::Secure
                } else {
                    redis::TlsMode::Insecure
                });
                if conf.ssl_verify && trusted_pem.is_some() {
                    builder = builder.certs(certs());
                }
            }
            let client = builder.build().map_err(|e| e.to_string())?;
            return Ok(Target {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                expire_nx: AtomicU8::new(UNKNOWN),
                endpoint: None,
                sharing,
                stats,
                server: Server::Cluster(client),
                timeout,
                cluster: true,
                describe: nodes
                    .first()
                    .map(|n| format!("cluster {}:{}", n.ip, n.port))
                    .unwrap_or_default(),
            });
        }
        if let Some(nodes) = &conf.sentinel_nodes {
            return Target::sentinel(conf, nodes, trusted_pem, stats, sharing, timeout);
        }
        let host = conf
            .host
            .clone()
            .ok_or_else(|| "redis.host is required".to_string())?;
        // Each call is bounded by `run`'s own timeout; a second timer per command inside
        // the client would only cost time.
        let mut config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None);
        // The certificate is checked against `server_name` while the socket goes to `host`.
        let name = match conf.server_name.as_deref().filter(|_| conf.ssl) {
            Some(name) if name != host => {
                config = config.set_dns_resolver(Pinned {
                    name: name.to_owned(),
                    host: host.clone(),
                });
                name.to_owned()
            }
            _ => host.clone(),
        };
        let tls = match conf.ssl {
            true => {
                let mut config = (*client_config(conf.ssl_verify, None, roots, None)).clone();
                // Redis speaks no ALPN.
                config.alpn_protocols.clear();
                let sni = ServerName::try_from(name.clone())
                    .map_err(|e| format!("redis.server_name {name:?}: {e}"))?;
                Some((Arc::new(config), sni))
            }
            false => None,
        };
        let password = conf.password.clone().filter(|p| !p.is_empty());
        let endpoint = matches!(sharing, RedisConnections::PerWorker).then(|| {
            Arc::new(Endpoint {
                host: host.clone(),
                port,
                tls,
                username: conf
                    .username
                    .clone()
                    .filter(|u| !u.is_empty() && password.is_some()),
                password,
                database: conf.database,
                timeout,
            })
        });
        let info = address(&name, port)?;
        let client = if conf.ssl && conf.ssl_verify && trusted_pem.is_some() {
            Client::build_with_tls(info, certs())
        } else {
            Client::open(info)
        }
        .map_err(|e| e.to_string())?;
        Ok(Target {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            expire_nx: AtomicU8::new(UNKNOWN),
            endpoint,
            sharing,
            stats,
            server: Server::Single(client, config),
            timeout,
            cluster: false,
            describe: format!("{host}:{port}"),
        })
    }

    /// A master found through Redis Sentinel.
    fn sentinel(
        conf: &RedisConf,
        nodes: &[gangway_pipeline::quota::SentinelNode],
        trusted_pem: Option<&[u8]>,
        stats: Arc<Stats>,
        sharing: RedisConnections,
        timeout: Duration,
    ) -> Result<Target, String> {
        let master = conf
            .sentinel_master
            .clone()
            .ok_or_else(|| "redis.sentinel_master is required with sentinel_nodes".to_string())?;
        if conf.sentinel_role.as_deref() == Some("slave") {
            return Err(
                "rate limiting writes its counters: redis.sentinel_role must be master or any"
                    .into(),
            );
        }
        let addrs = nodes
            .iter()
            .map(|n| ConnectionAddr::Tcp(n.host.clone(), n.port));
        let mut builder = SentinelClientBuilder::new(addrs, &master, SentinelServerType::Master)
            .map_err(|e| e.to_string())?
            .set_client_to_redis_db(conf.database);
        if let Some(password) = conf.password.as_deref().filter(|p| !p.is_empty()) {
            builder = builder.set_client_to_redis_password(password);
            if let Some(username) = conf.username.as_deref().filter(|u| !u.is_empty()) {
                builder = builder.set_client_to_redis_username(username);
            }
        }
        if let Some(password) = conf.sentinel_password.as_deref().filter(|p| !p.is_empty()) {
            builder = builder.set_client_to_sentinel_password(password);
            if let Some(username) = conf.sentinel_username.as_deref().filter(|u| !u.is_empty()) {
                builder = builder.set_client_to_sentinel_username(username);
            }
        }
        if conf.ssl {
            builder = builder.set_client_to_redis_tls_mode(if conf.ssl_verify {
                redis::TlsMode::Secure
            } else {
                redis::TlsMode::Insecure
            });
            if let (true, Some(pem)) = (conf.ssl_verify, trusted_pem) {
                builder = builder.set_client_to_redis_certificates(TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                });
            }
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None);
        Ok(Target {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            expire_nx: AtomicU8::new(UNKNOWN),
            endpoint: None,
            sharing,
            stats,
            server: Server::Sentinel(Arc::new(tokio::sync::Mutex::new(client)), config),
            timeout,
            cluster: false,
            describe: format!("sentinel master {master}"),
        })
    }

    /// The key `window` is stored under: Kong's own, or in a cluster the same with its
    /// `route:service:identifier` part hash-tagged, so a request's periods share one slot.
    pub fn key(&self, window: &Window) -> String {
        if !self.cluster {
            return window.key();
        }
        let scope = window
            .scope
            .strip_prefix("ratelimit:")
            .unwrap_or(&window.scope);
        format!(
            "ratelimit:{{{scope}{}}}:{}:{}",
            window.identifier, window.start_ms, window.period
        )
    }

    /// Whether to count with pipelines of `EXPIRE` and `EXPIREAT` with `NX` (Redis 7.0 and
    /// later) where older servers need a script. The server is asked once (`INFO server`),
    /// on the caller's connection and so within the caller's call and its timeout. A server
    /// that answers `INFO` with an error (an ACL user without it) is taken as an older one.
    /// A cluster always gets the script: the redis crate sends a cluster pipeline without
    /// following `MOVED`, and a script is one command, which it follows.
    pub async fn expire_nx(&self, conn: &mut Conn) -> redis::RedisResult<bool> {
        if self.cluster {
            return Ok(false);
        }
        match self.expire_nx.load(Ordering::Relaxed) {
            YES => return Ok(true),
            NO => return Ok(false),
            _ => {}
        }
        self.stats.round_trip();
        let info = redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(conn)
            .await;
        let supported = match info {
            Ok(info) => pipe::supports_expire_nx(&info),
            Err(e) if e.code() == Some("NOPERM") => false,
            Err(e) => return Err(e),
        };
        self.expire_nx
            .store(if supported { YES } else { NO }, Ordering::Relaxed);
        Ok(supported)
    }

    /// Opens a connection: here, on this worker's runtime, or on the shared thread's.
    async fn open(&self) -> Result<Conn, (String, Instant)> {
        match self.sharing {
            RedisConnections::PerWorker => self.server.open().await,
            RedisConnections::Shared => {
                let server = self.server.clone();
                shared_runtime()
                    .spawn(async move { server.open().await })
                    .await
                    .map_err(|e| (e.to_string(), Instant::now()))?
            }
        }
    }

    /// The slot this caller's connection lives in: the worker's own, or the process's.
    fn with_slot<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> R {
        match self.sharing {
            RedisConnections::PerWorker => {
                CONNECTIONS.with(|all| f(all.borrow_mut().entry(self.id).or_default()))
            }
            RedisConnections::Shared => {
                let mut all = SHARED.lock().unwrap_or_else(|e| e.into_inner());
                f(all.entry(self.id).or_default())
            }
        }
    }

    /// This worker's connection (or the process's), opened on first use. After a failed
    /// connect, callers fail fast for [`RETRY_AFTER`], then one tries again.
    pub async fn connection(&self) -> Result<Conn, QuotaError> {
        match self.with_slot(|cell| reuse(cell, |_| true))? {
            Ok(conn) => Ok(conn),
            Err(cell) => open_in(cell, self.timeout, self.open()).await,
        }
    }

    /// Whether realtime counting takes a [`Pipe`] here: a standalone server with
    /// connections per worker, on a worker thread.
    pub fn pipes(&self) -> bool {
        self.endpoint.is_some() && pipe::installed()
    }

    /// This worker's pipe when it is open, without waiting.
    pub fn live_pipe(&self) -> Option<Rc<Pipe>> {
        PIPES.with(|all| match all.borrow().get(&self.id)?.get()? {
            Ok(pipe) if !pipe.is_closed() => Some(pipe.clone()),
            _ => None,
        })
    }

    /// This worker's pipe, opened on first use and again after it ended, failing fast
    /// for [`RETRY_AFTER`] after a failed connect as [`Target::connection`] does.
    pub async fn pipe(&self) -> Result<Rc<Pipe>, QuotaError> {
        let Some(endpoint) = &self.endpoint else {
            return Err(QuotaError::Store("no pipe for this Redis".into()));
        };
        let reused = PIPES.with(|all| {
            reuse(all.borrow_mut().entry(self.id).or_default(), |p| {
                !p.is_closed()
            })
        })?;
        match reused {
            Ok(pipe) => Ok(pipe),
            Err(cell) => {
                let opened = pipe::connect(endpoint.clone());
                open_in(cell, self.timeout, async {
                    opened.await.map_err(|e| (e, Instant::now()))
                })
                .await
            }
        }
    }

    /// Drops the connection after it broke, so the next call reconnects.
    pub fn forget(&self) {
        self.with_slot(|cell| {
            if matches!(cell.get(), Some(Ok(_))) {
                *cell = Slot::default();
            }
        });
    }

    /// Runs `call` on this worker's connection within the timeout; a broken or timed-out
    /// connection is forgotten.
    pub async fn run<T>(
        &self,
        call: impl AsyncFnOnce(&mut Conn) -> redis::RedisResult<T>,
    ) -> Result<T, QuotaError> {
        let attempt = async {
            let mut conn = self.connection().await?;
            self.stats.round_trip();
            let started = std::time::Instant::now();
            let answer = call(&mut conn).await;
            self.stats.observe(started.elapsed());
            answer.map_err(|e| {
                // READONLY: a failover made this server a replica; ask the sentinels again.
                let demoted = e.code() == Some("READONLY") || pipe::says_demoted(&e.to_string());
                if e.is_connection_dropped()
                    || e.is_io_error()
                    || e.is_unrecoverable_error()
                    || demoted
                {
                    self.forget();
                }
                QuotaError::Store(e.to_string())
            })
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                // As Kong's client closes a socket that timed out. A server gone without a
                // reset (powered off, partitioned) would otherwise keep this connection
                // until TCP gives up, about 15 minutes, and Sentinel would never be asked
                // for the new master.
                self.forget();
                Err(QuotaError::Timeout(self.timeout.as_millis() as u64))
            }
        }
    }
}

/// Counts one round trip to `target` now, and its latency once `replies` are in.
pub(crate) fn round_trip<F: Future>(
    target: &Arc<Target>,
    replies: F,
) -> impl Future<Output = F::Output> + use<F> {
    target.stats.round_trip();
    let started = Instant::now();
    let target = target.clone();
    async move {
        let replies = replies.await;
        target.stats.observe(started.elapsed());
        replies
    }
}

/// A connection, the failure of its last connect (and when), or nothing yet.
type Cell<C> = Arc<OnceCell<Result<C, (String, Instant)>>>;

type Slot = Cell<Conn>;

/// The live connection in `cell` (as `live` judges), or the cell to open one in: a fresh
/// one after the connection ended or a failure older than [`RETRY_AFTER`]. A younger
/// failure is returned as it is.
fn reuse<C: Clone>(
    cell: &mut Cell<C>,
    live: impl Fn(&C) -> bool,
) -> Result<Result<C, Cell<C>>, QuotaError> {
    match cell.get() {
        Some(Ok(conn)) if live(conn) => return Ok(Ok(conn.clone())),
        Some(Err((error, at))) if at.elapsed() < RETRY_AFTER => {
            return Err(QuotaError::Store(format!("cannot connect: {error}")));
        }
        Some(_) => *cell = Cell::default(),
        None => {}
    }
    Ok(Err(cell.clone()))
}

/// Opens a connection in `cell` (or waits for the caller already opening one), within
/// `timeout`.
async fn open_in<C: Clone>(
    cell: Cell<C>,
    timeout: Duration,
    open: impl Future<Output = Result<C, (String, Instant)>>,
) -> Result<C, QuotaError> {
    match tokio::time::timeout(timeout, cell.get_or_init(|| open)).await {
        Ok(Ok(conn)) => Ok(conn.clone()),
        Ok(Err((error, _))) => Err(QuotaError::Store(format!("cannot connect: {error}"))),
        Err(_) => {
            // Recorded like any failed connect, so the next requests fail fast for
            // RETRY_AFTER instead of each waiting the timeout on a server that drops SYNs.
            let why = format!("no answer in {} ms", timeout.as_millis());
            let _ = cell.set(Err((why, Instant::now())));
            Err(QuotaError::Timeout(timeout.as_millis() as u64))
        }
    }
}

thread_local! {
    /// Each worker's connection per target. Targets live as long as the process (the factory
    /// keeps them), so entries are never stale.
    static CONNECTIONS: RefCell<HashMap<u64, Slot>> = RefCell::new(HashMap::new());

    /// Each worker's pipe per target.
    static PIPES: RefCell<HashMap<u64, Cell<Rc<Pipe>>>> = RefCell::new(HashMap::new());
}

/// The process's connection per target, with [`RedisConnections::Shared`].
static SHARED: std::sync::LazyLock<std::sync::Mutex<HashMap<u64, Slot>>> =
    std::sync::LazyLock::new(Default::default);

/// The runtime that drives shared connections: one thread, started on first use, for the
/// life of the process.
fn shared_runtime() -> &'static tokio::runtime::Handle {
    static HANDLE: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("gangway-redis".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("invariant: a current-thread runtime builds");
                let _ = tx.send(runtime.handle().clone());
                runtime.block_on(std::future::pending::<()>());
            });
        spawned.expect("invariant: the Redis thread starts");
        rx.recv()
            .expect("invariant: the Redis thread sends its handle")
    })
}

/// A connection to a standalone server or to a cluster.
#[derive(Clone)]
pub enum Conn {
    /// One server, multiplexed.
    Single(MultiplexedConnection),
    /// A cluster: routes by slot, follows MOVED and ASK.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Resolves the TLS `server_name` to the configured host, so SNI and verification use the
/// name while the socket goes where `host` says.
struct Pinned {
    name: String,
    host: String,
}

impl AsyncDNSResolver for Pinned {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        host: &'b str,
        port: u16,
    ) -> RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        let target = if host == self.name {
            self.host.clone()
        } else {
            host.to_owned()
        };
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((target.as_str(), port))
                .await?
                .collect();
            Ok(Box::new(found.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expire_nx_is_used_from_redis_7() {
        assert!(pipe::supports_expire_nx(
            "# Server\r\nredis_version:7.0.15\r\n"
        ));
        assert!(pipe::supports_expire_nx("redis_version:8.2.1\n"));
        assert!(!pipe::supports_expire_nx("redis_version:6.2.14\n"));
        assert!(!pipe::supports_expire_nx("no version here"));
    }

    fn roots() -> RootSource {
        RootSource::trusted(false, &[]).expect("an empty trust store")
    }

    fn conf(cluster: bool) -> RedisConf {
        RedisConf {
            host: Some("127.0.0.1".into()),
            port: Some(6379),
            timeout: Some(100),
            username: None,
            password: None,
            database: 0,
            ssl: false,
            ssl_verify: false,
            server_name: None,
            cluster_nodes: cluster.then(|| {
                vec![gangway_pipeline::quota::ClusterNode {
                    ip: "127.0.0.1".into(),
                    port: 7000,
                }]
            }),
            cluster_max_redirections: None,
            sentinel_master: None,
            sentinel_role: None,
            sentinel_nodes: None,
            sentinel_username: None,
            sentinel_password: None,
        }
    }

    #[test]
    fn standalone_keys_are_kong_s_and_cluster_keys_share_one_slot_per_request() {
        let window = |period: &'static str, start_ms: i64| Window {
            scope: "ratelimit:r:s:".into(),
            identifier: "192.0.2.7".into(),
            period,
            start_ms,
            seconds: 60,
        };
        let minute = window("minute", 1_796_292_900_000);
        let standalone = Target::new(
            &conf(false),
            None,
            &roots(),
            Arc::default(),
            RedisConnections::PerWorker,
        )
        .expect("target");
        assert_eq!(
            standalone.key(&minute),
            "ratelimit:r:s:192.0.2.7:1796292900000:minute"
        );
        let cluster = Target::new(
            &conf(true),
            None,
            &roots(),
            Arc::default(),
            RedisConnections::PerWorker,
        )
        .expect("target");
        assert_eq!(
            cluster.key(&minute),
            "ratelimit:{r:s:192.0.2.7}:1796292900000:minute"
        );
        let hour = cluster.key(&window("hour", 1_796_292_000_000));
        // Redis hashes only the text inside the first {...}: equal tags, one slot.
        let tag = |k: &str| k[k.find('{').expect("{")..=k.find('}').expect("}")].to_owned();
        assert_eq!(tag(&cluster.key(&minute)), tag(&hour));
    }

    #[test]
    fn a_database_index_is_refused_with_a_cluster() {
        let mut c = conf(true);
        c.database = 3;
        let err = Target::new(
            &c,
            None,
            &roots(),
            Arc::default(),
            RedisConnections::PerWorker,
        )
        .err()
        .expect("refused");
        assert!(err.contains("database must be 0"), "{err}");
    }
}
