//! gangway's settings, read once at startup.
//!
//! Sources, weakest first: built-in defaults ([`Settings::default`]), a TOML file
//! (`gangway start -c gangway.toml`; none by default), Kong's `KONG_<KEY>` environment variables
//! for the keys gangway shares with Kong, then `GANGWAY_<KEY>` variables. Every key, its Kong
//! aliases and its parser sit in one table (`registry`); `config/gangway.toml` documents each
//! key with its default. [`load`] reports every problem it finds, not just the first.

mod env;
mod file;
pub mod headers;
pub mod listen;
mod registry;
pub mod tracing;
pub mod values;

use std::fmt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::{Map, Value, json};

pub use headers::{HeaderSet, HeaderToken};
pub use listen::{ListenAddr, SoKeepalive};
pub use tracing::{Instrumentations, SamplingRate};
pub use values::{
    AccessLog, CipherSuite, Database, EbpfMode, IoBackend, LogFormat, LogKernelCounters, LogLevel,
    RedisConnections, Role, RouterFlavor, TlsProtocol, TlsProtocols, XdpMode,
};

/// Default `max_connections` (per worker); also what Kong's `worker_connections auto` maps to.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16384;

/// Kong's default `proxy_listen`.
const DEFAULT_PROXY_LISTEN: &str =
    "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384";
/// Kong's default `admin_listen`.
const DEFAULT_ADMIN_LISTEN: &str =
    "127.0.0.1:8001 reuseport backlog=16384, 127.0.0.1:8444 http2 ssl reuseport backlog=16384";
/// Kong's default `admin_gui_listen`.
const DEFAULT_ADMIN_GUI_LISTEN: &str = "0.0.0.0:8002, 0.0.0.0:8445 ssl";
/// Kong's default `status_listen` (3.6+).
const DEFAULT_STATUS_LISTEN: &str = "127.0.0.1:8007 reuseport backlog=16384";
/// Kong's default `cluster_listen`.
const DEFAULT_CLUSTER_LISTEN: &str = "0.0.0.0:8005";

/// What Kong shows instead of a secret's value.
const REDACTED: &str = "******";

/// `mem_cache_size`'s default, Kong's (128 MiB): the size of proxy-cache's default store.
pub const DEFAULT_MEM_CACHE_SIZE: u64 = 128 * 1024 * 1024;

/// `rate_limiting_local_max_keys`'s default (the local counters' own default too).
pub const DEFAULT_RATE_LIMITING_LOCAL_MAX_KEYS: usize = 2_000_000;

/// Every gangway setting. Field names are the TOML keys (Kong's names where Kong has the
/// setting); `GANGWAY_<NAME>` sets one from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Working directory for runtime files (the data plane's config cache, pid file).
    /// Default `gangway-data`, relative to the working directory, so that a non-root user can
    /// start gangway anywhere (Kong's `/usr/local/kong` needs root). Kong: `KONG_PREFIX`.
    pub prefix: PathBuf,
    /// `traditional`, `control_plane` or `data_plane`. Default `traditional`.
    pub role: Role,
    /// `off` (DB-less) or `postgres`. Default `off` (Kong defaults to `postgres`).
    pub database: Database,
    /// Proxy listeners. Default Kong's:
    /// `0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384`.
    pub proxy_listen: Vec<ListenAddr>,
    /// Admin API listeners. Default Kong's:
    /// `127.0.0.1:8001 reuseport backlog=16384, 127.0.0.1:8444 http2 ssl reuseport backlog=16384`.
    pub admin_listen: Vec<ListenAddr>,
    /// Status API listeners. Default `127.0.0.1:8007 reuseport backlog=16384`.
    pub status_listen: Vec<ListenAddr>,
    /// The control plane's listeners for data planes; read only when `role =
    /// control_plane`. Default Kong's `0.0.0.0:8005`.
    pub cluster_listen: Vec<ListenAddr>,
    /// PEM certificates for the Admin API's `ssl` listeners, paired with
    /// `admin_ssl_cert_key` by position. Default empty: a generated self-signed certificate.
    pub admin_ssl_cert: Vec<PathBuf>,
    /// PEM keys matching `admin_ssl_cert`. Default empty.
    pub admin_ssl_cert_key: Vec<PathBuf>,
    /// PEM certificates for Kong Manager's `ssl` listeners, as `admin_ssl_cert`. Default
    /// empty: a generated self-signed certificate.
    pub admin_gui_ssl_cert: Vec<PathBuf>,
    /// PEM keys matching `admin_gui_ssl_cert`. Default empty.
    pub admin_gui_ssl_cert_key: Vec<PathBuf>,
    /// PEM certificates for the Status API's `ssl` listeners, as `admin_ssl_cert`. Default
    /// empty: a generated self-signed certificate.
    pub status_ssl_cert: Vec<PathBuf>,
    /// PEM keys matching `status_ssl_cert`. Default empty.
    pub status_ssl_cert_key: Vec<PathBuf>,
    /// Origins allowed to call the Admin API from a browser (Kong Manager's); the first is
    /// sent when a request comes from another one. Default empty: the request's `Origin`, or
    /// `*`.
    pub admin_gui_origin: Vec<String>,
    /// Kong Manager's listeners, used only when `admin_gui_dir` names a build to serve.
    /// Default Kong's: `0.0.0.0:8002, 0.0.0.0:8445 ssl`.
    pub admin_gui_listen: Vec<ListenAddr>,
    /// A Kong Manager build to serve (Kong's image ships one in `/usr/local/kong/gui`).
    /// Default none: no Kong Manager.
    pub admin_gui_dir: Option<PathBuf>,
    /// The path Kong Manager is served under. Default `/`.
    pub admin_gui_path: String,
    /// The Admin API URL Kong Manager calls (`kconfig.js`'s `ADMIN_API_URL`); default none:
    /// Kong Manager then uses its own host and the Admin API's port.
    pub admin_gui_api_url: Option<String>,
    /// The declarative `kong.yml` to load in DB-less mode. Default none: the embedded
    /// `config/kong.yml`.
    pub declarative_config: Option<PathBuf>,
    /// A declarative config given inline (YAML or JSON); used only when `declarative_config`
    /// is unset, as in Kong. Default none.
    pub declarative_config_string: Option<String>,
    /// Reload `declarative_config` when the file changes. Default true.
    pub config_watch: bool,
    /// Worker threads; 0 means one per core. Default 0. Kong: `KONG_NGINX_WORKER_PROCESSES`
    /// (`auto` = 0).
    pub workers: usize,
    /// Socket backend: `auto`, `io_uring` or `epoll`. Default `auto`.
    pub io_backend: IoBackend,
    /// Redis connections for rate limiting: `per_worker` or `shared`. Default `per_worker`.
    pub redis_connections: RedisConnections,
    /// The most keys `policy: local` counts at once per window length (second, minute, ...):
    /// past it, requests with a key not yet counted in the current window pass uncounted,
    /// with a warning. It bounds the memory a flood of distinct keys (`limit_by: header`,
    /// rotating IPv6 sources) can take, at 32 to 64 bytes a key. Default 2,000,000. It
    /// bounds the windows of each length a `sync_rate` store keeps too (about 220 bytes
    /// each); past it, new windows are counted in Redis on every request.
    pub rate_limiting_local_max_keys: usize,
    /// Kong's `mem_cache_size`: the size of the `kong_db_cache` and `kong_core_db_cache`
    /// dictionaries (proxy-cache's default store). Default 128 MiB.
    pub mem_cache_size: u64,
    /// Dictionaries beyond Kong's own, each with its size: what Kong's injected
    /// `nginx_http_lua_shared_dict` directive declares (`KONG_NGINX_HTTP_LUA_SHARED_DICT="name
    /// 64m"`). proxy-cache's `memory.dictionary_name` must name one of them or one of Kong's.
    /// Default none.
    pub lua_shared_dicts: Vec<(String, u64)>,
    /// eBPF programs: `auto`, `off` or `required`. Default `auto`.
    pub ebpf: EbpfMode,
    /// Interfaces the IP guard attaches to. Default empty: the interfaces that carry the
    /// proxy and admin listeners, and a control plane's cluster listeners (every interface
    /// that is up for a wildcard address).
    pub ebpf_interfaces: Vec<String>,
    /// XDP attach mode: `auto`, `native` or `skb`. Default `auto`.
    pub ebpf_xdp_mode: XdpMode,
    /// Live connections one source address may hold to one proxy listener port; the next
    /// SYN is dropped (in the kernel, or closed at accept without eBPF). Default 0: no cap.
    pub max_connections_per_ip: u32,
    /// Sources allowed to connect to the Admin API listeners; others are dropped before
    /// accept. Default empty: every source.
    pub admin_allow_cidrs: Vec<IpNet>,
    /// Sources allowed to connect to the `cluster_listen` ports of a control plane; others
    /// are dropped before accept. Default empty: every source.
    pub cluster_allow_cidrs: Vec<IpNet>,
    /// The proxy's access log in Kong's `kong_log_format`. Default `/dev/stdout`.
    pub proxy_access_log: AccessLog,
    /// Where the Admin API's access log goes (Kong's `admin_access_log`), one line per
    /// request in nginx's `combined` format: `/dev/stdout`, `/dev/stderr`, a file (under
    /// `prefix` when relative; SIGUSR1 opens it again) or `off`. Default `/dev/stdout`, as
    /// Kong's docker image sets it.
    pub admin_access_log: AccessLog,
    /// Kong Manager's access log, as `admin_access_log`. Default `/dev/stdout`.
    pub admin_gui_access_log: AccessLog,
    /// This node's id (Kong's `node_id`), as `GET /`, the metrics and traces report it.
    /// Default unset: a random UUID chosen at start.
    pub node_id: Option<uuid::Uuid>,
    /// The Status API's access log, as `admin_access_log`. Default `off`, as Kong's.
    pub status_access_log: AccessLog,
    /// Where gangway's own log goes (Kong's `proxy_error_log`): `/dev/stdout`, `/dev/stderr`,
    /// or a file appended to (a relative path is under `prefix`; SIGUSR1 opens it again).
    /// Default `/dev/stdout`.
    pub proxy_error_log: AccessLog,
    /// Kong's `admin_error_log`: gangway writes one log, so this is accepted when it names
    /// the place `proxy_error_log` does, and warned about otherwise. Default unset.
    pub admin_error_log: Option<AccessLog>,
    /// Kong's `status_error_log`, as `admin_error_log`. Default unset.
    pub status_error_log: Option<AccessLog>,
    /// Whether the log phase reads the client connection's kernel counters: `off`, `on`
    /// (a `kernel` object in the serialized log) or `sizes` (and request and response
    /// sizes from the kernel). Default `off`.
    pub log_kernel_counters: LogKernelCounters,
    /// Plugins to load: names, `bundled` for all built-in ones; `off` = none. Default
    /// `["bundled"]`.
    pub plugins: Vec<String>,
    /// `traditional_compatible` or `traditional`. Default `traditional_compatible`.
    pub router_flavor: RouterFlavor,
    /// Kong's log levels, debug to emerg. Default `notice`.
    pub log_level: LogLevel,
    /// `text` or `json`. Default `text`.
    pub log_format: LogFormat,
    /// Write a process-log line as each request span closes (the `tracing` spans of
    /// recorded requests, target `kong`, at debug). Default off.
    pub log_spans: bool,
    /// Which request spans are recorded (Kong's `tracing_instrumentations`). Default `off`.
    pub tracing_instrumentations: Instrumentations,
    /// The share of traces sampled when no plugin sets its own rate (Kong's
    /// `tracing_sampling_rate`). Default 0.01.
    pub tracing_sampling_rate: SamplingRate,
    /// Peers whose `real_ip_header` is believed. Default empty (trust no one).
    pub trusted_ips: Vec<IpNet>,
    /// Kong's `port_maps`: `host:kong` pairs telling which port clients reach each
    /// listener port through (a container's or load balancer's port mapping), for
    /// `X-Forwarded-Port`, route hosts with a port, and the log entry's URL. Default none.
    pub port_maps: Vec<(u16, u16)>,
    /// Whether unix-socket peers are trusted (`unix:` in `trusted_ips`). Default false. Set
    /// through `trusted_ips`; not a key of its own.
    pub trust_unix: bool,
    /// Header carrying the client address from a trusted peer, or `proxy_protocol` for the
    /// PROXY protocol source address. Default `X-Real-IP`.
    pub real_ip_header: String,
    /// Take the rightmost untrusted address of `real_ip_header` (the leftmost when all are
    /// trusted) rather than the last one. Default false.
    pub real_ip_recursive: bool,
    /// Headers added to responses. Default `server_tokens, latency_tokens, X-Kong-Request-Id`.
    pub headers: HeaderSet,
    /// Headers added to proxied requests. Default `X-Kong-Request-Id`.
    pub headers_upstream: HeaderSet,
    /// Honour the `Kong-Debug` request header. Default false.
    pub allow_debug_header: bool,
    /// Content type of gateway-generated errors when `Accept` does not choose one:
    /// `text/plain`, `text/html`, `application/json` or `application/xml`. Default `text/plain`.
    pub error_default_type: String,
    /// Kong's `error_template_html`: a file whose text replaces Kong's HTML error body, the
    /// message at its first `%s` and the request id at its second (`%%` for a percent sign),
    /// read at startup. Default unset: Kong's template.
    pub error_template_html: Option<PathBuf>,
    /// Kong's `error_template_json`, as `error_template_html` for JSON. Default unset.
    pub error_template_json: Option<PathBuf>,
    /// Kong's `error_template_xml`, as `error_template_html` for XML. Default unset.
    pub error_template_xml: Option<PathBuf>,
    /// Kong's `error_template_plain`, as `error_template_html` for plain text. Default unset.
    pub error_template_plain: Option<PathBuf>,
    /// How many query arguments plugins read (Kong's `lua_max_uri_args`, 1 to 1000):
    /// key-auth's key, request-transformer's templates and rewrites, proxy-cache's key, the
    /// log entry's `querystring`, the Lambda event. The upstream gets the whole query unless
    /// request-transformer rewrites it. Default 100.
    pub lua_max_uri_args: u16,
    /// How many request headers plugins read as a table (Kong's `lua_max_req_headers`, 1 to
    /// 1000), counted in the request's order after earlier plugins' edits: route matching by
    /// header, key-auth's key, request-transformer's `$(headers.*)`, proxy-cache's
    /// `vary_headers`, request-termination's echo, the log entry's `request.headers`, the
    /// Lambda event. The upstream gets every header. Default 100.
    pub lua_max_req_headers: u16,
    /// How many response headers plugins read as a table (Kong's `lua_max_resp_headers`, 1
    /// to 1000): response-transformer's presence checks, the log entry's `response.headers`.
    /// The client gets every header. Default 100.
    pub lua_max_resp_headers: u16,
    /// How many arguments of a form body (`application/x-www-form-urlencoded`) plugins read
    /// (Kong's `lua_max_post_args`, 1 to 1000): key-auth's key in the body,
    /// request-termination's echo, the Lambda event. Default 100.
    pub lua_max_post_args: u16,
    /// Largest request body in bytes; 0 = unlimited. Default 0. Kong:
    /// `KONG_NGINX_HTTP_CLIENT_MAX_BODY_SIZE` (nginx sizes: `10m`, `512k`).
    pub client_max_body_size: u64,
    /// Request bodies up to this size are buffered in memory. Default 8192 (`8k`).
    pub client_body_buffer_size: usize,
    /// Largest request body read into memory for a plugin that needs it whole (key-auth's
    /// `key_in_body`, request-transformer, aws-lambda, ...); a longer one is refused with
    /// 413. Kong spills such bodies to a file; gangway keeps them in memory, and this bounds
    /// what one request can take even with `client_max_body_size = 0`; 0 = no bound.
    /// Default 16 MiB.
    pub buffered_body_max_size: u64,
    /// Largest request head (request line plus headers) in bytes. Default 32768 (nginx's
    /// `large_client_header_buffers 4 8k`).
    pub client_header_max_bytes: usize,
    /// Largest request line or single header line in bytes. Default 8192.
    pub client_header_line_max_bytes: usize,
    /// Time allowed to receive the request head, in ms. Default 60000.
    pub client_header_timeout_ms: u64,
    /// Time allowed between two reads of the request body, in ms. Default 60000.
    pub client_body_timeout_ms: u64,
    /// Time allowed for each write to the client to make progress, in ms; a client that
    /// stops reading is dropped after it (nginx's `send_timeout`). Default 60000.
    pub send_timeout_ms: u64,
    /// Idle time before a client keep-alive connection is closed, in ms. Default 75000
    /// (nginx's `keepalive_timeout`, which Kong leaves as it is).
    pub keepalive_timeout_ms: u64,
    /// Requests served on one client connection before it is closed. Default 10000.
    pub keepalive_requests: u64,
    /// Open client connections per worker. Default 16384.
    pub max_connections: usize,
    /// The process's open-file limit (nginx's `worker_rlimit_nofile`): `None` (`auto`, the
    /// default) raises the soft limit to the hard one, as a container's 1024:4096 default
    /// would otherwise refuse connections past about a thousand; a number sets it.
    pub worker_rlimit_nofile: Option<u64>,
    /// Time in-flight requests get to finish on shutdown, in ms. Default 10000.
    pub shutdown_grace_period_ms: u64,
    /// Idle upstream connections kept per worker. Default 512.
    pub upstream_keepalive_pool_size: usize,
    /// Requests sent on one upstream connection before it is closed. Default 10000.
    pub upstream_keepalive_max_requests: u64,
    /// Idle upstream connections are closed after this many seconds. Default 60.
    pub upstream_keepalive_idle_timeout: u64,
    /// Verify upstream certificates when a service's `tls_verify` is null. Default false, as
    /// Kong.
    pub upstream_tls_verify: bool,
    /// Kong's `client_ssl`: present `client_ssl_cert` to upstreams over TLS (mutual TLS)
    /// when a service (and its upstream entity) names no `client_certificate`. Default off.
    pub client_ssl: bool,
    /// Kong's `client_ssl_cert`: the certificate as a file path, PEM text or base64 of the
    /// PEM text. Default unset.
    pub client_ssl_cert: Option<String>,
    /// Kong's `client_ssl_cert_key`: the key, in the same forms. Default unset.
    pub client_ssl_cert_key: Option<String>,
    /// PEM certificate files for the TLS proxy listeners. Default empty: a self-signed
    /// certificate is generated.
    pub ssl_cert: Vec<PathBuf>,
    /// PEM private keys matching `ssl_cert`, one per certificate. Default empty.
    pub ssl_cert_key: Vec<PathBuf>,
    /// Kong's `ssl_cipher_suite`: the TLS versions and TLS 1.2 ciphers the proxy, Admin API
    /// and Kong Manager listeners serve, as Mozilla's `modern` (TLS 1.3 only), `intermediate`
    /// (TLS 1.2 and 1.3), `old` or `fips` profiles, or `custom` to take them from
    /// `ssl_protocols`, `ssl_ciphers` and `ssl_prefer_server_ciphers`. Default `intermediate`.
    pub ssl_cipher_suite: CipherSuite,
    /// Kong's `ssl_ciphers`, read with `ssl_cipher_suite = custom`: OpenSSL names of TLS 1.2
    /// ciphers, `:`-separated (TLS 1.3 ciphers are always on, as in nginx). Default unset:
    /// every TLS 1.2 cipher gangway has.
    pub ssl_ciphers: Option<String>,
    /// Kong's `ssl_protocols`, read with `ssl_cipher_suite = custom`. Default
    /// `TLSv1.2 TLSv1.3`.
    pub ssl_protocols: TlsProtocols,
    /// Kong's `ssl_prefer_server_ciphers`, read with `ssl_cipher_suite = custom`: the
    /// order of `ssl_ciphers` wins over the client's. Default on.
    pub ssl_prefer_server_ciphers: bool,
    /// Kong's `ssl_session_tickets`: resume TLS sessions with tickets (off: with the session
    /// cache only). Default on.
    pub ssl_session_tickets: bool,
    /// Kong's `ssl_session_cache_size`: how much the TLS session cache holds, at nginx's
    /// 4,000 sessions a megabyte. Default `10m`.
    pub ssl_session_cache_size: u64,
    /// CA bundles trusted for upstream and cluster TLS; `system` = the OS store. Default
    /// `["system"]`.
    pub lua_ssl_trusted_certificate: Vec<String>,
    /// Nameservers (`ip[:port]`, port 53 by default) asked for upstream hosts, after
    /// `/etc/hosts`. Default empty: those of `/etc/resolv.conf`.
    pub dns_resolver: Vec<std::net::SocketAddr>,
    /// Seconds every DNS answer is kept, overriding the records' TTLs. Default `None`: the
    /// records' own TTLs (at least 1 s).
    pub dns_valid_ttl: Option<u64>,
    /// Cache time in seconds for answers of the system resolver (`getaddrinfo`, used only
    /// when no resolver configuration is usable), which carry no TTL. Default 30.
    pub dns_cache_ttl_s: u64,
    /// Seconds an expired DNS record may still be served while it is refreshed. Default 3600.
    pub dns_stale_ttl: u64,
    /// Postgres host. Default `127.0.0.1`.
    pub pg_host: String,
    /// Postgres port. Default 5432.
    pub pg_port: u16,
    /// Postgres user. Default `kong`.
    pub pg_user: String,
    /// Postgres password. Default none.
    pub pg_password: Option<String>,
    /// Postgres database. Default `kong`.
    pub pg_database: String,
    /// Postgres schema. Default none (the server's search_path).
    pub pg_schema: Option<String>,
    /// Postgres connect and query timeout, in ms. Default 5000.
    pub pg_timeout: u64,
    /// Connect to Postgres over TLS. Default false.
    pub pg_ssl: bool,
    /// Verify the Postgres server certificate. Default false.
    pub pg_ssl_verify: bool,
    /// A read replica for the Admin API's reads (Kong's `pg_ro_*`); each unset `pg_ro_*` key
    /// takes its `pg_*` value. Default none: reads go to `pg_host`.
    pub pg_ro_host: Option<String>,
    /// Read replica port. Default: `pg_port`.
    pub pg_ro_port: Option<u16>,
    /// Read replica user. Default: `pg_user`.
    pub pg_ro_user: Option<String>,
    /// Read replica password. Default: `pg_password`.
    pub pg_ro_password: Option<String>,
    /// Read replica database. Default: `pg_database`.
    pub pg_ro_database: Option<String>,
    /// Read replica over TLS. Default: `pg_ssl`.
    pub pg_ro_ssl: Option<bool>,
    /// Verify the read replica's certificate. Default: `pg_ssl_verify`.
    pub pg_ro_ssl_verify: Option<bool>,
    /// Postgres connections a node opens for queries; 0 means gangway's default (16).
    /// Default 0.
    pub pg_max_concurrent_queries: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        let listen = |spec: &str| {
            listen::parse_list(spec).expect("invariant: the built-in listen defaults parse")
        };
        Settings {
            prefix: PathBuf::from("gangway-data"),
            role: Role::Traditional,
            database: Database::Off,
            proxy_listen: listen(DEFAULT_PROXY_LISTEN),
            admin_listen: listen(DEFAULT_ADMIN_LISTEN),
            cluster_listen: listen(DEFAULT_CLUSTER_LISTEN),
            admin_ssl_cert: Vec::new(),
            admin_ssl_cert_key: Vec::new(),
            admin_gui_ssl_cert: Vec::new(),
            admin_gui_ssl_cert_key: Vec::new(),
            status_ssl_cert: Vec::new(),
            status_ssl_cert_key: Vec::new(),
            admin_gui_origin: Vec::new(),
            admin_gui_listen: listen(DEFAULT_ADMIN_GUI_LISTEN),
            admin_gui_dir: None,
            admin_gui_path: "/".to_owned(),
            admin_gui_api_url: None,
            status_listen: listen(DEFAULT_STATUS_LISTEN),
            declarative_config: None,
            declarative_config_string: None,
            config_watch: true,
            workers: 0,
            io_backend: IoBackend::Auto,
            redis_connections: RedisConnections::PerWorker,
            rate_limiting_local_max_keys: DEFAULT_RATE_LIMITING_LOCAL_MAX_KEYS,
            mem_cache_size: DEFAULT_MEM_CACHE_SIZE,
            lua_shared_dicts: Vec::new(),
            ebpf: EbpfMode::Auto,
            ebpf_interfaces: Vec::new(),
            ebpf_xdp_mode: XdpMode::Auto,
            max_connections_per_ip: 0,
            admin_allow_cidrs: Vec::new(),
            cluster_allow_cidrs: Vec::new(),
            proxy_access_log: AccessLog::Stdout,
            admin_access_log: AccessLog::Stdout,
            admin_gui_access_log: AccessLog::Stdout,
            node_id: None,
            status_access_log: AccessLog::Off,
            proxy_error_log: AccessLog::Stdout,
            admin_error_log: None,
            status_error_log: None,
            log_kernel_counters: LogKernelCounters::Off,
            plugins: vec!["bundled".to_owned()],
            router_flavor: RouterFlavor::TraditionalCompatible,
            log_level: LogLevel::Notice,
            log_format: LogFormat::Text,
            log_spans: false,
            tracing_instrumentations: Instrumentations::default(),
            tracing_sampling_rate: SamplingRate::default(),
            trusted_ips: Vec::new(),
            trust_unix: false,
            real_ip_header: "X-Real-IP".to_owned(),
            real_ip_recursive: false,
            headers: HeaderSet::DEFAULT_DOWNSTREAM,
            headers_upstream: HeaderSet::DEFAULT_UPSTREAM,
            allow_debug_header: false,
            error_default_type: "text/plain".to_owned(),
            error_template_html: None,
            error_template_json: None,
            error_template_xml: None,
            error_template_plain: None,
            lua_max_uri_args: 100,
            lua_max_req_headers: 100,
            lua_max_resp_headers: 100,
            lua_max_post_args: 100,
            client_max_body_size: 0,
            client_body_buffer_size: 8 * 1024,
            buffered_body_max_size: 16 << 20,
            client_header_max_bytes: 32 * 1024,
            client_header_line_max_bytes: 8 * 1024,
            client_header_timeout_ms: 60_000,
            client_body_timeout_ms: 60_000,
            send_timeout_ms: 60_000,
            keepalive_timeout_ms: 75_000,
            keepalive_requests: 10_000,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            worker_rlimit_nofile: None,
            shutdown_grace_period_ms: 10_000,
            upstream_keepalive_pool_size: 512,
            upstream_keepalive_max_requests: 10_000,
            upstream_keepalive_idle_timeout: 60,
            upstream_tls_verify: false,
            client_ssl: false,
            port_maps: Vec::new(),
            client_ssl_cert: None,
            client_ssl_cert_key: None,
            ssl_cert: Vec::new(),
            ssl_cert_key: Vec::new(),
            ssl_cipher_suite: CipherSuite::Intermediate,
            ssl_ciphers: None,
            ssl_protocols: TlsProtocols::default(),
            ssl_prefer_server_ciphers: true,
            ssl_session_tickets: true,
            ssl_session_cache_size: 10 << 20,
            lua_ssl_trusted_certificate: vec!["system".to_owned()],
            dns_resolver: Vec::new(),
            dns_valid_ttl: None,
            dns_cache_ttl_s: 30,
            dns_stale_ttl: 3600,
            pg_host: "127.0.0.1".to_owned(),
            pg_port: 5432,
            pg_user: "kong".to_owned(),
            pg_password: None,
            pg_database: "kong".to_owned(),
            pg_schema: None,
            pg_timeout: 5000,
            pg_ssl: false,
            pg_ssl_verify: false,
            pg_max_concurrent_queries: 0,
            pg_ro_host: None,
            pg_ro_port: None,
            pg_ro_user: None,
            pg_ro_password: None,
            pg_ro_database: None,
            pg_ro_ssl: None,
            pg_ro_ssl_verify: None,
        }
    }
}

/// Loads settings from the defaults, then `file` (if any), then `env` (pass
/// [`process_env()`]). Returns the settings and warnings worth logging (ignored `KONG_*`
/// variables), or every problem found.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Settings, Vec<String>), SettingsError> {
    let mut settings = Settings::default();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if let Some(path) = file {
        file::apply(path, &mut settings, &mut problems);
    }
    env::apply(env, &mut settings, &mut problems, &mut warnings);
    // Cross-key rules only make sense once every value parsed.
    if problems.is_empty() {
        problems.extend(
            settings
                .inconsistencies()
                .into_iter()
                .map(Problem::Inconsistent),
        );
    }
    if problems.is_empty() {
        warnings.extend(settings.unused());
        Ok((settings, warnings))
    } else {
        Err(SettingsError { problems })
    }
}

/// The process environment's `KONG_*` and `GANGWAY_*` variables, for [`load`]. Unlike
/// `std::env::vars()` it does not panic on a non-UTF-8 variable elsewhere in the environment;
/// a non-UTF-8 value of ours is passed on lossily and then fails to parse with a message.
pub fn process_env() -> Vec<(String, String)> {
    our_vars(std::env::vars_os())
}

fn our_vars(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(String, String)> {
    vars.into_iter()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            (name.starts_with("KONG_") || name.starts_with("GANGWAY_"))
                .then(|| (name, value.to_string_lossy().into_owned()))
        })
        .collect()
}

impl Settings {
    /// The PEM files of `lua_ssl_trusted_certificate` (every entry but `system`).
    pub fn trusted_certificate_files(&self) -> Vec<std::path::PathBuf> {
        self.lua_ssl_trusted_certificate
            .iter()
            .filter(|t| t.as_str() != "system")
            .map(Into::into)
            .collect()
    }

    /// True when `lua_ssl_trusted_certificate` includes the platform's roots (`system`).
    pub fn trusts_system_roots(&self) -> bool {
        self.lua_ssl_trusted_certificate
            .iter()
            .any(|t| t == "system")
    }

    /// The number of worker threads to start: `workers`, or one per core when it is 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    /// The settings to reach the read replica with (`pg_ro_*` over `pg_*`), when
    /// `pg_ro_host` names one.
    pub fn read_replica(&self) -> Option<Settings> {
        let host = self.pg_ro_host.clone()?;
        let mut replica = self.clone();
        replica.pg_host = host;
        replica.pg_port = self.pg_ro_port.unwrap_or(self.pg_port);
        if let Some(user) = &self.pg_ro_user {
            replica.pg_user = user.clone();
        }
        if self.pg_ro_password.is_some() {
            replica.pg_password = self.pg_ro_password.clone();
        }
        if let Some(db) = &self.pg_ro_database {
            replica.pg_database = db.clone();
        }
        replica.pg_ssl = self.pg_ro_ssl.unwrap_or(self.pg_ssl);
        replica.pg_ssl_verify = self.pg_ro_ssl_verify.unwrap_or(self.pg_ssl_verify);
        Some(replica)
    }

    /// Where DB-less mode keeps a config posted to the Admin API's `/config`, so that a
    /// restart without `declarative_config` comes back with it (Kong keeps it in LMDB).
    pub fn posted_config_path(&self) -> PathBuf {
        self.prefix.join("dbless-config.json")
    }

    /// Kong's `GET /` `configuration` object: every key with its value, unset keys omitted
    /// and secrets (`pg_password`, `ssl_cert_key`, `declarative_config_string`) shown as
    /// `******`. Also carries Kong's parsed `*_listeners` lists, which clients such as Kong
    /// Manager read.
    pub fn kong_configuration_json(&self) -> Value {
        let mut out = Map::new();
        for key in registry::KEYS {
            if let Some(value) = (key.show)(self) {
                let value = if key.sensitive {
                    Value::String(REDACTED.to_owned())
                } else {
                    value
                };
                out.insert(key.name.to_owned(), value);
            }
        }
        for (name, list) in [
            ("proxy_listeners", &self.proxy_listen),
            ("admin_listeners", &self.admin_listen),
            ("status_listeners", &self.status_listen),
            ("admin_gui_listeners", &self.admin_gui_listen),
            ("cluster_listeners", &self.cluster_listen),
        ] {
            let parsed: Vec<Value> = list.iter().map(kong_listener).collect();
            out.insert(name.to_owned(), Value::Array(parsed));
        }
        Value::Object(out)
    }

    /// The `cluster_listen` listeners this node has: a control plane's, none elsewhere.
    pub fn cluster_listeners(&self) -> &[ListenAddr] {
        match self.role {
            Role::ControlPlane => &self.cluster_listen,
            Role::Traditional | Role::DataPlane => &[],
        }
    }

    /// Settings given that the rest of the settings leave without effect.
    fn unused(&self) -> Vec<String> {
        let mut unused = Vec::new();
        if !self.cluster_allow_cidrs.is_empty() && self.role != Role::ControlPlane {
            unused.push(format!(
                "cluster_allow_cidrs is set, but role = \"{}\": only a control plane has \
                 cluster_listen ports to guard",
                self.role
            ));
        }
        for (key, log) in [
            ("admin_error_log", &self.admin_error_log),
            ("status_error_log", &self.status_error_log),
        ] {
            if let Some(log) = log.as_ref().filter(|l| **l != self.proxy_error_log) {
                unused.push(format!(
                    "{key} = {log} is not used: gangway writes one log, to proxy_error_log \
                     ({})",
                    self.proxy_error_log
                ));
            }
        }
        unused
    }

    /// Ports an allow list (`admin_allow_cidrs`, `cluster_allow_cidrs`) would guard that
    /// another kind of listener uses too: the IP guard judges by port, so the list would
    /// fall on that listener's clients as well.
    fn shared_guarded_ports(&self) -> Vec<String> {
        let mut guarded = Vec::new();
        if !self.admin_allow_cidrs.is_empty() {
            guarded.push(("admin_listen", "admin_allow_cidrs", &self.admin_listen[..]));
        }
        if !self.cluster_allow_cidrs.is_empty() {
            guarded.push((
                "cluster_listen",
                "cluster_allow_cidrs",
                self.cluster_listeners(),
            ));
        }
        let all = [
            ("proxy_listen", &self.proxy_listen),
            ("admin_listen", &self.admin_listen),
        ];
        let mut found = Vec::new();
        for (name, list_name, listeners) in guarded {
            for listener in listeners {
                let port = listener.addr.port();
                let shared = all.iter().find(|(other, list)| {
                    *other != name && list.iter().any(|l| l.addr.port() == port)
                });
                if let Some((other, _)) = shared {
                    found.push(format!(
                        "{name} port {port} is also in {other}: {list_name} guards ports, so \
                         {name} needs a port of its own"
                    ));
                }
            }
        }
        found
    }

    /// Cross-key checks: Kong's, with Kong's messages, and gangway's own.
    /// The port clients reach listener port `port` through (`port_maps`), else `port`.
    pub fn host_port(&self, port: u16) -> u16 {
        self.port_maps
            .iter()
            .find(|&&(_, kong)| kong == port)
            .map_or(port, |&(host, _)| host)
    }

    fn inconsistencies(&self) -> Vec<String> {
        let mut found = Vec::new();
        match self.role {
            Role::ControlPlane => {
                if self.admin_listen.is_empty() {
                    found.push(
                        "admin_listen must be specified when role = \"control_plane\"".into(),
                    );
                }
                if self.database == Database::Off {
                    found.push(
                        "in-memory storage can not be used when role = \"control_plane\"".into(),
                    );
                }
                if self.cluster_listen.is_empty() {
                    found.push(
                        "cluster_listen must be specified when role = \"control_plane\"".into(),
                    );
                }
            }
            Role::DataPlane => {
                if self.proxy_listen.is_empty() {
                    found.push("proxy_listen must be specified when role = \"data_plane\"".into());
                }
                if self.database != Database::Off {
                    found.push(
                        "only in-memory storage can be used when role = \"data_plane\" \
                         (set database = off)"
                            .into(),
                    );
                }
            }
            Role::Traditional => {}
        }
        found.extend(self.shared_guarded_ports());
        if self.client_ssl {
            match (&self.client_ssl_cert, &self.client_ssl_cert_key) {
                (Some(_), None) => found.push("client_ssl_cert_key must be specified".into()),
                (None, Some(_)) => found.push("client_ssl_cert must be specified".into()),
                _ => {}
            }
        }
        // Kong checks certificate pairs only when a proxy listener terminates TLS.
        if self.proxy_listen.iter().any(|l| l.ssl) {
            let (certs, keys) = (self.ssl_cert.len(), self.ssl_cert_key.len());
            if certs > 0 && keys == 0 {
                found.push("ssl_cert_key must be specified".into());
            } else if keys > 0 && certs == 0 {
                found.push("ssl_cert must be specified".into());
            } else if certs != keys {
                found.push(format!(
                    "ssl_cert was specified {certs} times while ssl_cert_key was specified {keys} times"
                ));
            }
        }
        found
    }
}

/// One entry of Kong's `*_listeners`: ip, port, the normalized listener string and a boolean
/// per flag (`backlog=<n>` appears as its own `true` key, as Kong's parser leaves it).
fn kong_listener(l: &ListenAddr) -> Value {
    let ip = match l.addr.ip() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let mut entry = json!({
        "ip": ip,
        "port": l.addr.port(),
        "listener": l.to_string(),
        "ssl": l.ssl,
        "http2": l.http2,
        "proxy_protocol": l.proxy_protocol,
        "deferred": l.deferred,
        "bind": l.bind,
        "reuseport": l.reuseport,
    });
    if let (Some(n), Some(map)) = (l.backlog, entry.as_object_mut()) {
        map.insert(format!("backlog={n}"), Value::Bool(true));
    }
    entry
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The settings file, with the line of the value when known.
    File {
        /// The file as given on the command line.
        path: PathBuf,
        /// 1-based line.
        line: Option<usize>,
    },
    /// An environment variable.
    Env {
        /// The variable's name, e.g. `KONG_PROXY_LISTEN`.
        var: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{} line {line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Env { var } => write!(f, "environment variable {var}"),
        }
    }
}

/// One thing wrong with the settings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The settings file could not be read.
    #[error("cannot read settings file {}: {reason}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The settings file is not valid TOML.
    #[error("{}{}: invalid TOML: {reason}", .path.display(), line_suffix(*.line))]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error, when known.
        line: Option<usize>,
        /// The parser's message.
        reason: String,
    },
    /// The settings file names a key gangway does not have.
    #[error("{origin}: unknown key '{key}'")]
    UnknownKey {
        /// Where.
        origin: Origin,
        /// The key as written.
        key: String,
    },
    /// A `GANGWAY_*` variable names no setting.
    #[error("unknown environment variable {var}: gangway has no setting '{key}'")]
    UnknownEnv {
        /// The variable.
        var: String,
        /// The key it would set.
        key: String,
    },
    /// A value does not parse.
    #[error("{origin}: invalid value for {key}: {reason}")]
    Invalid {
        /// Where the value came from.
        origin: Origin,
        /// The key it sets.
        key: String,
        /// What was expected, and what was found.
        reason: String,
    },
    /// Values that parse but do not go together (Kong's cross-key checks).
    #[error("{0}")]
    Inconsistent(String),
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

/// Every problem [`load`] found, one per line in `Display`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid settings:\n  {}", list(.problems))]
pub struct SettingsError {
    /// The problems, file first, then environment, then cross-key checks.
    pub problems: Vec<Problem>,
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

#[cfg(test)]
mod tests;
