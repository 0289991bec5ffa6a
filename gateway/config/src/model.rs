//! Kong's entities, with Kong's field names and defaults (kong-reference.md section 2).
//!
//! These are *validated* values: the declarative loader (and later the Admin API) checks input
//! and fills defaults before building them, so nothing downstream re-validates. Serialization
//! produces Kong's output shape: foreign keys as `{"id": "<uuid>"}`, absent fields as `null`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Entity ids are UUIDs; missing ids in a declarative file are derived with uuid5.
pub type Id = Uuid;

/// A reference to another entity, rendered as `{"id": "<uuid>"}` like Kong does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ForeignKey {
    /// The referenced entity's id.
    pub id: Id,
}

impl From<Id> for ForeignKey {
    fn from(id: Id) -> Self {
        Self { id }
    }
}

/// Kong's protocol names (`constants.PROTOCOLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// gRPC over cleartext HTTP/2.
    Grpc,
    /// gRPC over TLS.
    Grpcs,
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
    /// Stream TCP.
    Tcp,
    /// Stream TLS (terminated).
    Tls,
    /// Stream TLS passed through by SNI.
    TlsPassthrough,
    /// Stream UDP.
    Udp,
}

impl Protocol {
    /// Every protocol, in Kong's sorted order (used in `expected one of:` messages).
    pub const ALL: [Protocol; 8] = [
        Protocol::Grpc,
        Protocol::Grpcs,
        Protocol::Http,
        Protocol::Https,
        Protocol::Tcp,
        Protocol::Tls,
        Protocol::TlsPassthrough,
        Protocol::Udp,
    ];

    /// Kong's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Grpcs => "grpcs",
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::TlsPassthrough => "tls_passthrough",
            Protocol::Udp => "udp",
        }
    }

    /// Parses Kong's spelling.
    pub fn parse(s: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// True for protocols carried over TLS.
    pub fn is_tls(self) -> bool {
        matches!(
            self,
            Protocol::Https | Protocol::Grpcs | Protocol::Tls | Protocol::TlsPassthrough
        )
    }
}

/// A service: where matched requests go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// Primary key.
    pub id: Id,
    /// Unique name (utf8_name); default null.
    pub name: Option<String>,
    /// Upstream protocol; default `http`.
    pub protocol: Protocol,
    /// Hostname, IP, or the name of an [`Upstream`]; required.
    pub host: String,
    /// Upstream port; default 80.
    pub port: u16,
    /// Base path prepended to upstream requests; default null.
    pub path: Option<String>,
    /// Connection-failure retries; default 5.
    pub retries: u16,
    /// Milliseconds; default 60000.
    pub connect_timeout: u32,
    /// Milliseconds; default 60000.
    pub write_timeout: u32,
    /// Milliseconds; default 60000.
    pub read_timeout: u32,
    /// Client certificate presented to https upstreams; default null.
    pub client_certificate: Option<ForeignKey>,
    /// Verify the upstream certificate; null means the `proxy_ssl_verify` setting.
    pub tls_verify: Option<bool>,
    /// Maximum verification chain depth; default null.
    pub tls_verify_depth: Option<u8>,
    /// CA certificates trusted for this upstream; default null.
    pub ca_certificates: Option<Vec<Id>>,
    /// Disabled services are not routed to; default true.
    pub enabled: bool,
    /// Tags; default null.
    pub tags: Option<Vec<String>>,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
}

/// Which URI-building algorithm a route uses (`v0` default; `v1` only under `traditional`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PathHandling {
    /// Kong's default.
    #[default]
    V0,
    /// Deprecated; honoured only by the legacy `traditional` router flavor.
    V1,
}

/// A stream route source or destination: `{ip, port}`, at least one set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrPort {
    /// IP or CIDR.
    pub ip: Option<String>,
    /// Port.
    pub port: Option<u16>,
}

/// A route: which requests match and to which service they go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// Primary key.
    pub id: Id,
    /// Unique name; default null.
    pub name: Option<String>,
    /// Default `["http", "https"]`.
    pub protocols: Vec<Protocol>,
    /// Upper-case method names; default null.
    pub methods: Option<Vec<String>>,
    /// Hosts, optionally with `:port`, one `*` at either end; default null.
    pub hosts: Option<Vec<String>>,
    /// Prefix paths or `~` regexes; default null.
    pub paths: Option<Vec<String>>,
    /// Header name (lower-cased) to accepted values (`~*` regex allowed); default null.
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// SNIs (wildcards allowed); default null.
    pub snis: Option<Vec<String>>,
    /// Stream sources; default null.
    pub sources: Option<Vec<CidrPort>>,
    /// Stream destinations; default null.
    pub destinations: Option<Vec<CidrPort>>,
    /// Remove the matched prefix from the upstream path; default true.
    pub strip_path: bool,
    /// Send the client's Host upstream; default false.
    pub preserve_host: bool,
    /// Tie-breaker among regex routes; default 0.
    pub regex_priority: i64,
    /// Default `v0`.
    pub path_handling: PathHandling,
    /// Status for http requests to https-only routes; default 426.
    pub https_redirect_status_code: u16,
    /// Default true.
    pub request_buffering: bool,
    /// Default true.
    pub response_buffering: bool,
    /// The target service; default null (then 503 unless a plugin answers).
    pub service: Option<ForeignKey>,
    /// Tags; default null.
    pub tags: Option<Vec<String>>,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
}

/// Tags of the entity kinds that run into millions (consumers, their credentials and ACLs).
/// Tags are rare there, so the field is a single pointer (8 bytes, against 24 for
/// `Option<Vec<String>>`); it serializes as Kong's list or `null`.
pub type CompactTags = Option<Box<Box<[Box<str>]>>>;

/// A consumer: an API client identity.
///
/// Consumers run into millions, so strings are `Box<str>` (no spare capacity) and the struct
/// stays at 72 bytes; it serializes exactly as Kong's entity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Consumer {
    /// Primary key.
    pub id: Id,
    /// Unique; at least one of username and custom_id is set.
    pub username: Option<Box<str>>,
    /// Unique; at least one of username and custom_id is set.
    pub custom_id: Option<Box<str>>,
    /// Tags; default null.
    pub tags: CompactTags,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
}

/// A plugin instance. Its `config` is validated by the plugin's schema when plugins exist;
/// until then it is stored as given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plugin {
    /// Primary key.
    pub id: Id,
    /// Plugin name such as `key-auth`; required.
    pub name: String,
    /// Unique instance name; default null.
    pub instance_name: Option<String>,
    /// Plugin configuration, defaults filled in. Shared: instances with equal configs (a
    /// portal's per-consumer plans) hold one copy.
    #[serde(serialize_with = "shared_config::serialize")]
    pub config: std::sync::Arc<serde_json::Value>,
    /// Scope: service; null means any.
    pub service: Option<ForeignKey>,
    /// Scope: route; null means any.
    pub route: Option<ForeignKey>,
    /// Scope: consumer; null means any.
    pub consumer: Option<ForeignKey>,
    /// Default `["grpc", "grpcs", "http", "https"]`. Shared: instances with the default
    /// (nearly all of a portal's per-consumer plans) hold one copy.
    pub protocols: std::sync::Arc<[Protocol]>,
    /// Default true.
    pub enabled: bool,
    /// Dynamic ordering (`{before: {access: [..]}, after: {access: [..]}}`); default null.
    pub ordering: Option<serde_json::Value>,
    /// Tags; default null.
    pub tags: Option<Vec<String>>,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
}

/// A key-auth credential (one or more per consumer, so as compact as [`Consumer`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyauthCredential {
    /// Primary key.
    pub id: Id,
    /// Owning consumer; required.
    pub consumer: ForeignKey,
    /// The API key; unique.
    pub key: Box<str>,
    /// Absolute expiry in epoch seconds, from the input `ttl` (load time + ttl, so never
    /// zero: the niche keeps the field at 8 bytes); default null (never).
    #[serde(skip)]
    pub expires_at: Option<std::num::NonZeroI64>,
    /// Tags; default null.
    pub tags: CompactTags,
    /// Epoch seconds.
    pub created_at: i64,
}

fn shared_str<S: serde::Serializer>(s: &std::sync::Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

/// An ACL group membership (compact like [`Consumer`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Acl {
    /// Primary key.
    pub id: Id,
    /// Owning consumer; required.
    pub consumer: ForeignKey,
    /// Group name; required. Shared (one allocation per distinct name in a load): a million
    /// memberships name a handful of groups.
    #[serde(serialize_with = "shared_str")]
    pub group: std::sync::Arc<str>,
    /// Tags; default null.
    pub tags: CompactTags,
    /// Epoch seconds.
    pub created_at: i64,
}

/// Load-balancing algorithm of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Weighted round robin (default).
    #[default]
    RoundRobin,
    /// Consistent hashing on `hash_on`.
    ConsistentHashing,
    /// Fewest active connections.
    LeastConnections,
    /// Lowest observed latency.
    Latency,
}

/// What consistent hashing hashes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    /// No hashing (default).
    #[default]
    None,
    /// The authenticated consumer id.
    Consumer,
    /// The client IP.
    Ip,
    /// A request header (`hash_on_header`).
    Header,
    /// A cookie (`hash_on_cookie`).
    Cookie,
    /// The request path.
    Path,
    /// A query argument.
    QueryArg,
    /// A regex capture of the route path.
    UriCapture,
}

/// Thresholds that mark a target healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthyThresholds {
    /// Active probe interval in seconds (0 = off); passive checks ignore it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
    /// Statuses counted as success.
    pub http_statuses: Vec<u16>,
    /// Successes needed to turn healthy (0 = off).
    pub successes: u32,
}

/// Thresholds that mark a target unhealthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnhealthyThresholds {
    /// Active probe interval in seconds (0 = off); passive checks ignore it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
    /// Statuses counted as failure.
    pub http_statuses: Vec<u16>,
    /// TCP failures to turn unhealthy (0 = off).
    pub tcp_failures: u32,
    /// Timeouts to turn unhealthy (0 = off).
    pub timeouts: u32,
    /// HTTP failures to turn unhealthy (0 = off).
    pub http_failures: u32,
}

/// Active health checks (probes). Stored with Kong's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveHealthcheck {
    /// `tcp`, `http`, `https`, `grpc` or `grpcs`; default `http`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Seconds; default 1.
    pub timeout: f64,
    /// Default 10.
    pub concurrency: u32,
    /// Default `/`.
    pub http_path: String,
    /// Default true.
    pub https_verify_certificate: bool,
    /// Default null.
    pub https_sni: Option<String>,
    /// Default null.
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// Healthy thresholds.
    pub healthy: HealthyThresholds,
    /// Unhealthy thresholds.
    pub unhealthy: UnhealthyThresholds,
}

/// Passive health checks (observing proxied traffic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveHealthcheck {
    /// Default `http`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Healthy thresholds.
    pub healthy: HealthyThresholds,
    /// Unhealthy thresholds.
    pub unhealthy: UnhealthyThresholds,
}

/// An upstream's health checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Healthchecks {
    /// Active probes.
    pub active: ActiveHealthcheck,
    /// Passive observation.
    pub passive: PassiveHealthcheck,
    /// Minimum healthy weight percentage for the upstream to be healthy; default 0.
    pub threshold: f64,
}

impl Healthchecks {
    /// True when no check is on (no active interval, no passive threshold): Kong then
    /// reports the targets as `HEALTHCHECKS_OFF`.
    pub fn all_off(&self) -> bool {
        let (active, passive) = (&self.active, &self.passive);
        active.healthy.interval.unwrap_or(0) == 0
            && active.unhealthy.interval.unwrap_or(0) == 0
            && passive.healthy.successes == 0
            && passive.unhealthy.tcp_failures == 0
            && passive.unhealthy.timeouts == 0
            && passive.unhealthy.http_failures == 0
    }
}

impl Default for Healthchecks {
    fn default() -> Self {
        let passive_ok: Vec<u16> = (200..=208).chain([226]).chain(300..=308).collect();
        Healthchecks {
            active: ActiveHealthcheck {
                kind: "http".into(),
                timeout: 1.0,
                concurrency: 10,
                http_path: "/".into(),
                https_verify_certificate: true,
                https_sni: None,
                headers: None,
                healthy: HealthyThresholds {
                    interval: Some(0),
                    http_statuses: vec![200, 302],
                    successes: 0,
                },
                unhealthy: UnhealthyThresholds {
                    interval: Some(0),
                    http_statuses: vec![429, 404, 500, 501, 502, 503, 504, 505],
                    tcp_failures: 0,
                    timeouts: 0,
                    http_failures: 0,
                },
            },
            passive: PassiveHealthcheck {
                kind: "http".into(),
                healthy: HealthyThresholds {
                    interval: None,
                    http_statuses: passive_ok,
                    successes: 0,
                },
                unhealthy: UnhealthyThresholds {
                    interval: None,
                    http_statuses: vec![429, 500, 503],
                    tcp_failures: 0,
                    timeouts: 0,
                    http_failures: 0,
                },
            },
            threshold: 0.0,
        }
    }
}

/// A virtual hostname balanced over targets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upstream {
    /// Primary key.
    pub id: Id,
    /// Unique hostname matched against `service.host`; required.
    pub name: String,
    /// Default `round-robin`.
    pub algorithm: Algorithm,
    /// Default `none`.
    pub hash_on: HashOn,
    /// Default `none`.
    pub hash_fallback: HashOn,
    /// Required when `hash_on = header`.
    pub hash_on_header: Option<String>,
    /// Required when `hash_fallback = header`.
    pub hash_fallback_header: Option<String>,
    /// Required when hashing on a cookie.
    pub hash_on_cookie: Option<String>,
    /// Default `/`.
    pub hash_on_cookie_path: String,
    /// Required when `hash_on = query_arg`.
    pub hash_on_query_arg: Option<String>,
    /// Required when `hash_fallback = query_arg`.
    pub hash_fallback_query_arg: Option<String>,
    /// Required when `hash_on = uri_capture`.
    pub hash_on_uri_capture: Option<String>,
    /// Required when `hash_fallback = uri_capture`.
    pub hash_fallback_uri_capture: Option<String>,
    /// Ring slots; default 10000 (10..65536).
    pub slots: u32,
    /// Health checks with Kong's defaults.
    pub healthchecks: Healthchecks,
    /// Host header sent upstream instead of the target's; default null.
    pub host_header: Option<String>,
    /// Client certificate for https targets; default null.
    pub client_certificate: Option<ForeignKey>,
    /// Default false.
    pub use_srv_name: bool,
    /// Tags; default null.
    pub tags: Option<Vec<String>>,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
}

/// One backend address of an upstream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// Primary key.
    pub id: Id,
    /// Owning upstream; required.
    pub upstream: ForeignKey,
    /// `host:port`, the port normalized to 8000 when omitted.
    pub target: String,
    /// Default 100 (0..65535; 0 disables).
    pub weight: u32,
    /// Tags; default null.
    pub tags: Option<Vec<String>>,
    /// Epoch seconds with millisecond precision.
    pub created_at: f64,
    /// Epoch seconds with millisecond precision.
    pub updated_at: f64,
}

/// A TLS certificate and key (PEM).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Certificate {
    /// Primary key.
    pub id: Id,
    /// PEM chain; required.
    pub cert: String,
    /// PEM private key matching `cert`; required.
    pub key: String,
    /// Alternate chain of the other key type; default null.
    pub cert_alt: Option<String>,
    /// Key for `cert_alt`; default null.
    pub key_alt: Option<String>,
    /// Tags; default null.
    pub tags: Option<Vec<String>>,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
}

/// A server name bound to a certificate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sni {
    /// Primary key.
    pub id: Id,
    /// Host name, wildcard allowed; unique.
    pub name: String,
    /// The certificate served for this name; required.
    pub certificate: ForeignKey,
    /// Tags; default null.
    pub tags: Option<Vec<String>>,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
}

/// A trusted CA certificate for upstream verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaCertificate {
    /// Primary key.
    pub id: Id,
    /// Exactly one PEM certificate with the CA constraint; required.
    pub cert: String,
    /// sha256 hex of the certificate; auto-filled, unique.
    pub cert_digest: String,
    /// Tags; default null.
    pub tags: Option<Vec<String>>,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
}

/// A whole validated configuration, every foreign key resolved to an id that exists.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Config {
    /// Services.
    pub services: Vec<Service>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Consumers.
    pub consumers: Vec<Consumer>,
    /// Plugin instances.
    pub plugins: Vec<Plugin>,
    /// key-auth credentials.
    pub keyauth_credentials: Vec<KeyauthCredential>,
    /// ACL memberships.
    pub acls: Vec<Acl>,
    /// Upstreams.
    pub upstreams: Vec<Upstream>,
    /// Targets.
    pub targets: Vec<Target>,
    /// Certificates.
    pub certificates: Vec<Certificate>,
    /// SNIs.
    pub snis: Vec<Sni>,
    /// CA certificates.
    pub ca_certificates: Vec<CaCertificate>,
    /// Where each route and plugin was declared, for error messages; not part of the
    /// config's identity (or its hash).
    #[serde(skip)]
    pub origins: Origins,
    /// Kong's configuration hash of a declarative config: the md5 of the text it was read
    /// from, as Kong hashes a file or a posted text, or of its serialized entities when it
    /// was posted as parsed JSON; `None` for a config read from a database.
    #[serde(skip)]
    pub source_md5: Option<String>,
}

/// The declared entity path of each route and plugin (`services[0].routes[1]`), by
/// position in [`Config::routes`] and [`Config::plugins`]. Empty when the config was not
/// loaded from a file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origins {
    /// One path per route.
    pub routes: PackedStrs,
    /// One path per plugin.
    pub plugins: PackedStrs,
}

/// Strings kept end to end in one buffer: a few bytes each instead of an allocation each
/// (a path for each of 100,000 plugins, the names entities refer to).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackedStrs {
    text: String,
    ends: Vec<u32>,
}

impl PackedStrs {
    /// Appends `s`.
    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len() as u32);
    }

    /// Appends the string made of `parts` end to end.
    pub fn push_parts(&mut self, parts: &[&str]) {
        for part in parts {
            self.text.push_str(part);
        }
        self.ends.push(self.text.len() as u32);
    }

    /// String `i`; panics past the end, as indexing does.
    pub fn get(&self, i: usize) -> &str {
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p] as usize);
        &self.text[start..self.ends[i] as usize]
    }

    /// How many strings there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The strings in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl<S: AsRef<str>> FromIterator<S> for PackedStrs {
    fn from_iter<I: IntoIterator<Item = S>>(items: I) -> Self {
        let mut packed = PackedStrs::default();
        for s in items {
            packed.push(s.as_ref());
        }
        packed
    }
}

impl Origins {
    /// Rewrites a flat entity path (`routes[3].paths[0]`, `plugins[2].config`) into the
    /// declared one (`services[1].routes[0].paths[0]`); other paths are returned as they are.
    pub fn locate(&self, path: &str) -> String {
        for (prefix, list) in [("routes[", &self.routes), ("plugins[", &self.plugins)] {
            let Some(rest) = path.strip_prefix(prefix) else {
                continue;
            };
            let Some((index, tail)) = rest.split_once(']') else {
                continue;
            };
            if let Some(i) = index.parse::<usize>().ok().filter(|i| *i < list.len()) {
                return format!("{}{tail}", list.get(i));
            }
        }
        path.to_string()
    }
}

/// Splits `host[:port]` (port defaults to 8000, as Kong normalizes targets).
pub fn split_target(target: &str) -> Option<(String, u16)> {
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 8000,
        };
        return Some((host.to_string(), port));
    }
    match target.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((target.to_string(), 8000)),
    }
}

#[cfg(test)]
mod tests {
    use super::split_target;

    #[test]
    fn targets_default_to_port_8000() {
        assert_eq!(
            split_target("example.com"),
            Some(("example.com".into(), 8000))
        );
        assert_eq!(split_target("10.0.0.1:81"), Some(("10.0.0.1".into(), 81)));
        assert_eq!(split_target("[::1]:82"), Some(("::1".into(), 82)));
        assert_eq!(split_target("[::1]"), Some(("::1".into(), 8000)));
    }
}

/// Serializing plugin configs that instances share, for the config hash.
pub mod shared_config {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Arc;

    use serde::{Serialize, Serializer};
    use serde_json::Value;

    thread_local! {
        /// While [`compact`] runs: each shared config seen so far, by address, and its
        /// position among the configs written.
        static WRITTEN: RefCell<Option<HashMap<usize, usize>>> = const { RefCell::new(None) };
    }

    /// Runs `f` (a serialization) so that a config shared by many plugins is written in full
    /// the first time and then as a reference to that first time (`{"$same_as": n}`). A
    /// hundred thousand instances of one plan then cost one config's worth of bytes. The
    /// output stays a function of the config: the same document always shares the same way.
    pub fn compact<R>(f: impl FnOnce() -> R) -> R {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                WRITTEN.with(|w| w.borrow_mut().take());
            }
        }
        WRITTEN.with(|w| *w.borrow_mut() = Some(HashMap::new()));
        let _reset = Reset;
        f()
    }

    /// The `serialize_with` of [`super::Plugin::config`].
    pub fn serialize<S: Serializer>(config: &Arc<Value>, s: S) -> Result<S::Ok, S::Error> {
        let seen = WRITTEN.with(|w| {
            let mut w = w.borrow_mut();
            let written = w.as_mut()?;
            let next = written.len();
            match written.entry(Arc::as_ptr(config) as usize) {
                std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(next);
                    None
                }
            }
        });
        match seen {
            Some(first) => serde_json::json!({ "$same_as": first }).serialize(s),
            None => config.serialize(s),
        }
    }
}

/// `same_but_times(&self, other)`: equality but for `created_at` and `updated_at`, which a
/// load sets to its own time when a file gives none. A reload compares entities this way to
/// keep what did not change; every other field is named, so a new one must be listed here.
macro_rules! same_but_times {
    ($($entity:ident { $($field:ident),* $(,)? })*) => {$(
        impl $entity {
            /// Equal but perhaps for `created_at` and `updated_at`.
            pub fn same_but_times(&self, other: &Self) -> bool {
                let $entity { $($field,)* created_at: _, updated_at: _ } = self;
                true $(&& *$field == other.$field)*
            }
        }
    )*};
}

same_but_times! {
    Route {
        id, name, protocols, methods, hosts, paths, headers, snis, sources, destinations,
        strip_path, preserve_host, regex_priority, path_handling, https_redirect_status_code,
        request_buffering, response_buffering, service, tags,
    }
    Plugin {
        id, name, instance_name, config, service, route, consumer, protocols, enabled,
        ordering, tags,
    }
    Upstream {
        id, name, algorithm, hash_on, hash_fallback, hash_on_header, hash_fallback_header,
        hash_on_cookie, hash_on_cookie_path, hash_on_query_arg, hash_fallback_query_arg,
        hash_on_uri_capture, hash_fallback_uri_capture, slots, healthchecks, host_header,
        client_certificate, use_srv_name, tags,
    }
    Target { id, upstream, target, weight, tags }
    Certificate { id, cert, key, cert_alt, key_alt, tags }
    Sni { id, name, certificate, tags }
}

/// Two lists of entities equal but perhaps for their timestamps, element by element.
pub fn same_lists_but_times<T>(a: &[T], b: &[T], same: impl Fn(&T, &T) -> bool) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}
