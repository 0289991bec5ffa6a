//! Value syntaxes shared by the settings: Kong booleans, nginx sizes and times, comma lists,
//! and the keyword enums (`role`, `database`, `log_level`, ...). Every parser returns a message
//! saying what was expected; the caller adds the key and where the value came from.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Kong booleans: `on`, `off`, `true`, `false` (any case).
pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("expected on, off, true or false, got '{v}'")),
    }
}

/// A whole number of type `T`.
pub fn parse_int<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("expected a whole number, got '{v}'"))
}

/// nginx sizes: bytes, or a number with a `k`, `m` or `g` suffix (any case): `512k`, `10m`.
pub fn parse_size(v: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "expected a size in bytes, optionally with a k, m or g suffix (e.g. 10m), got '{v}'"
        )
    };
    let t = v.trim();
    let (digits, shift) = match t.as_bytes().last().map(u8::to_ascii_lowercase) {
        Some(b'k') => (&t[..t.len() - 1], 10),
        Some(b'm') => (&t[..t.len() - 1], 20),
        Some(b'g') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// An nginx size that must fit in memory (`usize`).
pub fn parse_size_usize(v: &str) -> Result<usize, String> {
    let n = parse_size(v)?;
    usize::try_from(n).map_err(|_| format!("size '{v}' is too large"))
}

/// nginx times (`500ms`, `60s`, `1m30s`, `1h`, `2d`; units ms s m h d w M y) in milliseconds.
/// A bare number is in `bare_unit_ms` milliseconds: 1 for gangway's `*_ms` keys, 1000 for nginx
/// directives, whose bare unit is seconds.
pub fn parse_duration_ms(v: &str, bare_unit_ms: u64) -> Result<u64, String> {
    let bad = || {
        format!(
            "expected a duration: a whole number, or with units ms, s, m, h, d (e.g. 60s), got '{v}'"
        )
    };
    let t = v.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = t.parse().map_err(|_| bad())?;
        return n.checked_mul(bare_unit_ms).ok_or_else(bad);
    }
    let mut rest = t;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "M" => 30 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit_ms)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// A duration for gangway's own `*_ms` keys: bare numbers are milliseconds.
pub fn parse_ms(v: &str) -> Result<u64, String> {
    parse_duration_ms(v, 1)
}

/// A comma list; entries are trimmed and empty entries dropped, so `""` is the empty list.
pub fn parse_list(v: &str) -> Result<Vec<String>, String> {
    Ok(v.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect())
}

/// A string that may be unset: the empty string means unset (Kong's `NONE`).
pub fn parse_opt_string(v: &str) -> Result<Option<String>, String> {
    Ok((!v.is_empty()).then(|| v.to_owned()))
}

/// Kong's `trusted_ips`: a comma list of IPs and CIDR blocks, plus `unix:` for connections
/// over unix sockets. Returns the networks and whether `unix:` was listed.
pub fn parse_trusted_ips(v: &str) -> Result<(Vec<IpNet>, bool), String> {
    let mut nets = Vec::new();
    let mut unix = false;
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "unix:" {
            unix = true;
        } else if let Ok(net) = entry.parse::<IpNet>() {
            nets.push(net);
        } else if let Ok(ip) = entry.parse::<IpAddr>() {
            nets.push(IpNet::from(ip));
        } else {
            return Err(format!(
                "expected a comma list of IPv4 or IPv6 addresses or CIDR blocks or 'unix:', got '{entry}'"
            ));
        }
    }
    Ok((nets, unix))
}

/// Declares a keyword enum: its variants' strings, `parse` (case-insensitive) with an error
/// listing the accepted words, `as_str` and `Display`.
macro_rules! keyword_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The keyword as written in settings.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the keyword (any case).
            pub fn parse(v: &str) -> Result<$name, String> {
                let t = v.trim();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|k| k.as_str().eq_ignore_ascii_case(t))
                    .ok_or_else(|| {
                        let words: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                        format!("expected one of {}, got '{v}'", words.join(", "))
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum! {
    /// Kong's `role`. Default `traditional`.
    Role {
        /// A standalone node: serves traffic and its own Admin API (the default).
        #[default]
        Traditional = "traditional",
        /// Holds the config in Postgres and streams it to data planes; serves no traffic.
        ControlPlane = "control_plane",
        /// Serves traffic with config streamed from a control plane.
        DataPlane = "data_plane",
    }
}

keyword_enum! {
    /// Kong's `database`. Default `off` (Kong's default is `postgres`).
    Database {
        /// DB-less: config from a declarative file or `POST /config` (the default).
        #[default]
        Off = "off",
        /// Config in Postgres.
        Postgres = "postgres",
    }
}

keyword_enum! {
    /// Which socket I/O backend the workers use. Default `auto`.
    IoBackend {
        /// io_uring when the startup probe succeeds, epoll otherwise (the default).
        #[default]
        Auto = "auto",
        /// io_uring, failing startup if it is unavailable.
        IoUring = "io_uring",
        /// epoll through tokio.
        Epoll = "epoll",
    }
}

keyword_enum! {
    /// How workers reach Redis for rate limiting. Default `per_worker`.
    RedisConnections {
        /// One pipelined connection per worker and Redis, on the worker's own I/O backend
        /// (the default: measured faster, see benches/README.md).
        #[default]
        PerWorker = "per_worker",
        /// One multiplexed connection per Redis for the whole process, on a thread of its own.
        Shared = "shared",
    }
}

keyword_enum! {
    /// Kong's (nginx's) `log_level`. Default `notice`.
    LogLevel {
        /// debug
        Debug = "debug",
        /// info
        Info = "info",
        /// notice (the default)
        #[default]
        Notice = "notice",
        /// warn
        Warn = "warn",
        /// error
        Error = "error",
        /// crit
        Crit = "crit",
        /// alert
        Alert = "alert",
        /// emerg
        Emerg = "emerg",
    }
}

impl LogLevel {
    /// The most verbose `tracing` level this Kong level lets through. tracing has no notice,
    /// crit, alert or emerg: notice maps to INFO and the last three to ERROR.
    pub const fn tracing_level(self) -> tracing::Level {
        match self {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info | LogLevel::Notice => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error | LogLevel::Crit | LogLevel::Alert | LogLevel::Emerg => {
                tracing::Level::ERROR
            }
        }
    }

    /// [`LogLevel::tracing_level`] as a filter, for `tracing_subscriber`.
    pub const fn level_filter(self) -> tracing::level_filters::LevelFilter {
        tracing::level_filters::LevelFilter::from_level(self.tracing_level())
    }
}

keyword_enum! {
    /// Log line format. Default `text`.
    LogFormat {
        /// Human-readable lines (the default).
        #[default]
        Text = "text",
        /// One JSON object per line.
        Json = "json",
    }
}

keyword_enum! {
    /// Kong's `router_flavor`. Default `traditional_compatible`; `expressions` is not supported.
    RouterFlavor {
        /// Kong 3.x's default router (the default).
        #[default]
        TraditionalCompatible = "traditional_compatible",
        /// Kong 2.x's router; gangway matches it with the same engine.
        Traditional = "traditional",
    }
}

impl RouterFlavor {
    /// Parses `router_flavor`, naming `expressions` explicitly since Kong accepts it.
    pub fn parse_setting(v: &str) -> Result<RouterFlavor, String> {
        if v.trim().eq_ignore_ascii_case("expressions") {
            return Err(
                "the expressions router is not supported by gangway; expected traditional_compatible or traditional"
                    .to_owned(),
            );
        }
        RouterFlavor::parse(v)
    }
}

keyword_enum! {
    /// Kong's `ssl_cipher_suite`. Default `intermediate`.
    CipherSuite {
        /// Mozilla's modern profile: TLS 1.3 only, the client's cipher order.
        Modern = "modern",
        /// Mozilla's intermediate profile: TLS 1.2 and 1.3, forward-secret AEAD ciphers
        /// (the default).
        #[default]
        Intermediate = "intermediate",
        /// Mozilla's old profile: TLS 1.0 to 1.3 in Kong; gangway serves its TLS 1.2 and 1.3
        /// part (rustls has no TLS 1.0 or 1.1).
        Old = "old",
        /// Kong's FIPS profile: TLS 1.2, FIPS-approved ciphers, the server's order.
        Fips = "fips",
        /// `ssl_protocols`, `ssl_ciphers` and `ssl_prefer_server_ciphers`.
        Custom = "custom",
    }
}

impl CipherSuite {
    /// Parses `ssl_cipher_suite` with Kong's message for an unknown one.
    pub fn parse_setting(v: &str) -> Result<CipherSuite, String> {
        CipherSuite::parse(v).map_err(|_| format!("Undefined cipher suite {v}"))
    }
}

/// A TLS version as nginx's `ssl_protocols` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProtocol {
    /// `TLSv1`.
    Tls10,
    /// `TLSv1.1`.
    Tls11,
    /// `TLSv1.2`.
    Tls12,
    /// `TLSv1.3`.
    Tls13,
}

impl TlsProtocol {
    const NAMES: [(&str, TlsProtocol); 4] = [
        ("TLSv1", TlsProtocol::Tls10),
        ("TLSv1.1", TlsProtocol::Tls11),
        ("TLSv1.2", TlsProtocol::Tls12),
        ("TLSv1.3", TlsProtocol::Tls13),
    ];

    /// nginx's name.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("", |(name, _)| name)
    }
}

/// Kong's `ssl_protocols`: space-separated TLS versions. Default `TLSv1.2 TLSv1.3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsProtocols(pub Vec<TlsProtocol>);

impl Default for TlsProtocols {
    fn default() -> Self {
        TlsProtocols(vec![TlsProtocol::Tls12, TlsProtocol::Tls13])
    }
}

impl TlsProtocols {
    /// Parses nginx's list (`TLSv1.2 TLSv1.3`); each name once, at least one.
    pub fn parse(v: &str) -> Result<TlsProtocols, String> {
        let mut found = Vec::new();
        for word in v.split_whitespace() {
            let Some(&(_, p)) = TlsProtocol::NAMES.iter().find(|(name, _)| *name == word) else {
                return Err(format!(
                    "expected TLS versions among TLSv1, TLSv1.1, TLSv1.2 and TLSv1.3, got '{word}'"
                ));
            };
            if !found.contains(&p) {
                found.push(p);
            }
        }
        if found.is_empty() {
            return Err("expected at least one TLS version (e.g. TLSv1.2 TLSv1.3)".to_owned());
        }
        Ok(TlsProtocols(found))
    }
}

impl fmt::Display for TlsProtocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|p| p.as_str()).collect();
        f.write_str(&names.join(" "))
    }
}

keyword_enum! {
    /// Whether to load the eBPF programs. Default `auto`.
    EbpfMode {
        /// Load them when the kernel and privileges allow, else enforce in userspace (default).
        #[default]
        Auto = "auto",
        /// Never load them.
        Off = "off",
        /// Fail startup when they cannot be loaded.
        Required = "required",
    }
}

keyword_enum! {
    /// How the IP guard attaches to an interface. Default `auto`.
    XdpMode {
        /// Native (driver) mode where the driver supports it, else generic (skb) mode.
        #[default]
        Auto = "auto",
        /// Native mode only; an interface whose driver lacks it is not guarded.
        Native = "native",
        /// Generic (skb) mode, which every interface supports (`lo` has only this).
        Skb = "skb",
    }
}

keyword_enum! {
    /// Whether the log phase reads the kernel's counters of the client connection
    /// (`TCP_INFO`). Default `off`.
    LogKernelCounters {
        /// Not read: the log phase costs no system call (default).
        #[default]
        Off = "off",
        /// `kong.log.serialize()` gains a `kernel` object: the connection's counters and this
        /// request's bytes on the wire.
        On = "on",
        /// As `on`, and `request.size` and `response.size` (and what log plugins count) are
        /// the bytes on the wire, TLS records and handshake included.
        Sizes = "sizes",
    }
}

/// Where the proxy's access log goes (Kong's `proxy_access_log`). Default `/dev/stdout`, as
/// Kong's docker image sets it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AccessLog {
    /// `off`: no access log.
    Off,
    /// `/dev/stdout` (the default).
    #[default]
    Stdout,
    /// `/dev/stderr`.
    Stderr,
    /// A file, appended to; a relative path is under `prefix`.
    File(std::path::PathBuf),
}

impl AccessLog {
    /// Parses Kong's value: a path or `off`. A second word (nginx's log format name) is
    /// ignored: gangway writes Kong's `kong_log_format`.
    pub fn parse(v: &str) -> Result<AccessLog, String> {
        let path = v.split_whitespace().next().unwrap_or_default();
        Ok(match path {
            "" => return Err("expected a path or off".to_owned()),
            "off" => AccessLog::Off,
            "/dev/stdout" => AccessLog::Stdout,
            "/dev/stderr" => AccessLog::Stderr,
            other => AccessLog::File(other.into()),
        })
    }

    /// Parses Kong's `proxy_error_log`: a path (nginx's level after it is ignored: gangway
    /// uses `log_level`); unlike an access log, never `off`.
    pub fn parse_error_log(v: &str) -> Result<AccessLog, String> {
        match AccessLog::parse(v)? {
            AccessLog::Off => Err(
                "expected a path, /dev/stdout or /dev/stderr (the log cannot be off; \
                 log_level sets how much it says)"
                    .to_owned(),
            ),
            log => Ok(log),
        }
    }
}

impl fmt::Display for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessLog::Off => f.write_str("off"),
            AccessLog::Stdout => f.write_str("/dev/stdout"),
            AccessLog::Stderr => f.write_str("/dev/stderr"),
            AccessLog::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A comma list of IP addresses and CIDR blocks (an address is its /32 or /128).
pub fn parse_cidrs(v: &str) -> Result<Vec<IpNet>, String> {
    let mut nets = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if let Ok(net) = entry.parse::<IpNet>() {
            nets.push(net.trunc());
        } else if let Ok(ip) = entry.parse::<IpAddr>() {
            nets.push(IpNet::from(ip));
        } else {
            return Err(format!(
                "expected a comma list of IPv4 or IPv6 addresses or CIDR blocks, got '{entry}'"
            ));
        }
    }
    Ok(nets)
}

/// Kong's `error_default_type` values.
pub const ERROR_TYPES: [&str; 4] = [
    "text/plain",
    "text/html",
    "application/json",
    "application/xml",
];

/// Parses `error_default_type`: one of [`ERROR_TYPES`].
pub fn parse_error_type(v: &str) -> Result<String, String> {
    let t = v.trim();
    ERROR_TYPES
        .iter()
        .find(|m| m.eq_ignore_ascii_case(t))
        .map(|m| (*m).to_owned())
        .ok_or_else(|| format!("expected one of {}, got '{v}'", ERROR_TYPES.join(", ")))
}

/// Parses a worker count: a whole number, or `auto` (= 0, one per core), as nginx accepts.
pub fn parse_workers(v: &str) -> Result<usize, String> {
    if v.trim().eq_ignore_ascii_case("auto") {
        return Ok(0);
    }
    parse_int(v).map_err(|_| format!("expected a whole number or 'auto', got '{v}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kong_booleans() {
        for (v, b) in [
            ("on", true),
            ("true", true),
            ("OFF", false),
            ("false", false),
        ] {
            assert_eq!(parse_bool(v), Ok(b), "{v}");
        }
        let err = parse_bool("yes").expect_err("not a Kong boolean");
        assert!(err.contains("expected on, off, true or false"), "{err}");
    }

    #[test]
    fn nginx_sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("10m"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("10M"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        for bad in ["", "k", "10mb", "-1", "1.5m", "ten"] {
            let err = parse_size(bad).expect_err(bad);
            assert!(err.contains("expected a size in bytes"), "{bad}: {err}");
        }
        assert!(parse_size("99999999999999999999g").is_err());
    }

    #[test]
    fn nginx_times() {
        assert_eq!(parse_ms("60000"), Ok(60_000));
        assert_eq!(parse_ms("60s"), Ok(60_000));
        assert_eq!(parse_ms("250ms"), Ok(250));
        assert_eq!(parse_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_ms("1h 30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("75", 1000), Ok(75_000));
        assert_eq!(parse_duration_ms("10s", 1000), Ok(10_000));
        for bad in ["", "s", "10x", "1.5s", "-3"] {
            assert!(parse_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_ips_accept_ips_cidrs_and_unix() {
        let (nets, unix) = parse_trusted_ips("0.0.0.0/0, ::/0,10.1.2.3, unix:").expect("valid");
        assert!(unix);
        let shown: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["0.0.0.0/0", "::/0", "10.1.2.3/32"]);
        assert_eq!(parse_trusted_ips(""), Ok((Vec::new(), false)));
        let err = parse_trusted_ips("10.0.0.0/33").expect_err("bad prefix");
        assert!(err.contains("got '10.0.0.0/33'"), "{err}");
    }

    #[test]
    fn keyword_enums() {
        assert_eq!(Role::parse("control_plane"), Ok(Role::ControlPlane));
        assert_eq!(Role::default(), Role::Traditional);
        assert_eq!(Database::parse("POSTGRES"), Ok(Database::Postgres));
        let err = Database::parse("cassandra").expect_err("gone since Kong 3");
        assert_eq!(err, "expected one of off, postgres, got 'cassandra'");
        assert_eq!(IoBackend::parse("io_uring"), Ok(IoBackend::IoUring));
        assert_eq!(LogLevel::default(), LogLevel::Notice);
        assert_eq!(LogLevel::Notice.tracing_level(), tracing::Level::INFO);
        assert_eq!(LogLevel::Crit.tracing_level(), tracing::Level::ERROR);
        assert_eq!(LogLevel::Debug.tracing_level(), tracing::Level::DEBUG);
        let err = RouterFlavor::parse_setting("expressions").expect_err("unsupported");
        assert!(err.contains("not supported"), "{err}");
        assert_eq!(
            RouterFlavor::parse_setting("traditional"),
            Ok(RouterFlavor::Traditional)
        );
        assert_eq!(EbpfMode::parse("required"), Ok(EbpfMode::Required));
    }

    #[test]
    fn workers_and_error_types() {
        assert_eq!(parse_workers("auto"), Ok(0));
        assert_eq!(parse_workers("4"), Ok(4));
        assert!(parse_workers("four").is_err());
        assert_eq!(
            parse_error_type("application/JSON"),
            Ok("application/json".to_owned())
        );
        let err = parse_error_type("text/xml").expect_err("not Kong's");
        assert!(err.contains("text/plain, text/html"), "{err}");
    }
}
