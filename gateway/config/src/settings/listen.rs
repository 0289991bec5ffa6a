//! Kong's `*_listen` syntax: `off`, or a comma list of `<ip>:<port> [flag ...]` entries, e.g.
//! `0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384`.
//! The flags are nginx's `listen` parameters that Kong accepts for HTTP listeners.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use super::values::parse_duration_ms;

/// Kong's usage line for listen values, reused in every error so the fix is one read away.
const USAGE: &str = "expected 'off' or a comma list of <ip>:<port> [ssl] [http2] \
    [proxy_protocol] [deferred] [bind] [reuseport] [backlog=<n>] [ipv6only=on|off] \
    [so_keepalive=on|off|<idle>:<interval>:<count>]";

/// One listener from a `*_listen` setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// The address to bind. Hostnames are resolved once, at load (`localhost` is 127.0.0.1).
    pub addr: SocketAddr,
    /// `ssl`: terminate TLS on this listener. Default off.
    pub ssl: bool,
    /// `http2`: offer HTTP/2 (through ALPN on TLS listeners). Default off.
    pub http2: bool,
    /// `proxy_protocol`: expect a PROXY protocol header before the first byte. Default off.
    pub proxy_protocol: bool,
    /// `reuseport`: one SO_REUSEPORT socket per worker. Default off.
    pub reuseport: bool,
    /// `backlog=<n>`: the listen(2) backlog. Default none (the system's default).
    pub backlog: Option<u32>,
    /// `deferred`: TCP_DEFER_ACCEPT. Default off.
    pub deferred: bool,
    /// `bind`: bind this exact address even if a wildcard listener shares the port. Default off.
    pub bind: bool,
    /// `ipv6only=on|off`: IPV6_V6ONLY on an IPv6 listener. Default none (the system's default).
    pub ipv6only: Option<bool>,
    /// `so_keepalive=...`: TCP keepalive on accepted connections. Default none (system default).
    pub so_keepalive: Option<SoKeepalive>,
}

/// nginx's `so_keepalive` listen parameter. No default: absent means the system's behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoKeepalive {
    /// `so_keepalive=on`: SO_KEEPALIVE with the system's timers.
    On,
    /// `so_keepalive=off`: SO_KEEPALIVE off.
    Off,
    /// `so_keepalive=<idle>:<interval>:<count>`: keepalive on; empty parts keep system values.
    Custom {
        /// TCP_KEEPIDLE in seconds.
        idle_s: Option<u32>,
        /// TCP_KEEPINTVL in seconds.
        interval_s: Option<u32>,
        /// TCP_KEEPCNT.
        count: Option<u32>,
    },
}

impl ListenAddr {
    /// A listener on `addr` with every flag off.
    pub fn new(addr: SocketAddr) -> ListenAddr {
        ListenAddr {
            addr,
            ssl: false,
            http2: false,
            proxy_protocol: false,
            reuseport: false,
            backlog: None,
            deferred: false,
            bind: false,
            ipv6only: None,
            so_keepalive: None,
        }
    }

    /// Parses one entry, e.g. `0.0.0.0:8443 http2 ssl reuseport backlog=16384`.
    pub fn parse(entry: &str) -> Result<ListenAddr, String> {
        let mut words = entry.split_whitespace();
        let address = words
            .next()
            .ok_or_else(|| format!("empty entry; {USAGE}"))?;
        let mut listen = ListenAddr::new(parse_address(address)?);
        for flag in words {
            listen
                .apply_flag(flag)
                .map_err(|why| format!("invalid entry '{}': {why}; {USAGE}", entry.trim()))?;
        }
        Ok(listen)
    }

    fn apply_flag(&mut self, flag: &str) -> Result<(), String> {
        match flag {
            "ssl" => self.ssl = true,
            "http2" => self.http2 = true,
            "proxy_protocol" => self.proxy_protocol = true,
            "reuseport" => self.reuseport = true,
            "deferred" => self.deferred = true,
            "bind" => self.bind = true,
            "ipv6only=on" => self.ipv6only = Some(true),
            "ipv6only=off" => self.ipv6only = Some(false),
            "so_keepalive=on" => self.so_keepalive = Some(SoKeepalive::On),
            "so_keepalive=off" => self.so_keepalive = Some(SoKeepalive::Off),
            _ => {
                if let Some(n) = flag.strip_prefix("backlog=") {
                    let n = n
                        .parse::<u32>()
                        .map_err(|_| format!("backlog must be a whole number, got '{n}'"))?;
                    self.backlog = Some(n);
                } else if let Some(spec) = flag.strip_prefix("so_keepalive=") {
                    self.so_keepalive = Some(parse_keepalive(spec)?);
                } else {
                    return Err(format!("unknown flag '{flag}'"));
                }
            }
        }
        Ok(())
    }
}

/// Parses a whole `*_listen` value. `off` (as the first entry, as in Kong) yields no listeners.
pub fn parse_list(value: &str) -> Result<Vec<ListenAddr>, String> {
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    match entries.first() {
        None => Err(USAGE.to_owned()),
        Some(&"off") => Ok(Vec::new()),
        Some(_) => entries.into_iter().map(ListenAddr::parse).collect(),
    }
}

/// Renders listeners back into Kong's syntax, one string per entry; no listeners is `["off"]`.
pub fn to_strings(listeners: &[ListenAddr]) -> Vec<String> {
    if listeners.is_empty() {
        return vec!["off".to_owned()];
    }
    listeners.iter().map(ToString::to_string).collect()
}

fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = || format!("invalid address '{text}'; {USAGE}");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    // A bare IPv6 address without brackets is ambiguous (is the last group the port?).
    if host.is_empty() || host.contains(':') || host.starts_with('[') {
        return Err(bad());
    }
    match host {
        "*" => return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        // Resolving `localhost` through the resolver may yield ::1 first; Kong users mean the
        // IPv4 loopback, which is also what every Kong default listens on.
        "localhost" => return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        _ => {}
    }
    let resolved: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host '{host}' in '{text}': {e}"))?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| resolved.first())
        .copied()
        .ok_or_else(|| format!("host '{host}' in '{text}' resolved to no address"))
}

fn parse_keepalive(spec: &str) -> Result<SoKeepalive, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [idle, interval, count] = parts[..] else {
        return Err(format!(
            "so_keepalive must be on, off or <idle>:<interval>:<count>, got '{spec}'"
        ));
    };
    let seconds = |part: &str| -> Result<Option<u32>, String> {
        if part.is_empty() {
            return Ok(None);
        }
        // nginx reads keepidle/keepintvl as times whose bare unit is seconds.
        let ms = parse_duration_ms(part, 1000)?;
        u32::try_from(ms / 1000)
            .map(Some)
            .map_err(|_| format!("so_keepalive time '{part}' is too large"))
    };
    let count = if count.is_empty() {
        None
    } else {
        Some(
            count
                .parse::<u32>()
                .map_err(|_| format!("so_keepalive count must be a whole number, got '{count}'"))?,
        )
    };
    Ok(SoKeepalive::Custom {
        idle_s: seconds(idle)?,
        interval_s: seconds(interval)?,
        count,
    })
}

impl fmt::Display for ListenAddr {
    /// Kong's normalized listener form: the address, then flags in Kong's order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        for (on, name) in [
            (self.ssl, "ssl"),
            (self.http2, "http2"),
            (self.proxy_protocol, "proxy_protocol"),
            (self.deferred, "deferred"),
            (self.bind, "bind"),
            (self.reuseport, "reuseport"),
        ] {
            if on {
                write!(f, " {name}")?;
            }
        }
        if let Some(n) = self.backlog {
            write!(f, " backlog={n}")?;
        }
        if let Some(v6) = self.ipv6only {
            write!(f, " ipv6only={}", if v6 { "on" } else { "off" })?;
        }
        match self.so_keepalive {
            None => {}
            Some(SoKeepalive::On) => f.write_str(" so_keepalive=on")?,
            Some(SoKeepalive::Off) => f.write_str(" so_keepalive=off")?,
            Some(SoKeepalive::Custom {
                idle_s,
                interval_s,
                count,
            }) => {
                let part = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_default();
                write!(
                    f,
                    " so_keepalive={}:{}:{}",
                    part(idle_s),
                    part(interval_s),
                    part(count)
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(entry: &str) -> ListenAddr {
        ListenAddr::parse(entry).expect("valid entry")
    }

    #[test]
    fn kong_default_proxy_listen_parses() {
        let list = parse_list(
            "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384",
        )
        .expect("Kong's default parses");
        assert_eq!(list.len(), 2);
        let plain = &list[0];
        assert_eq!(plain.addr, "0.0.0.0:8000".parse().expect("literal"));
        assert!(plain.reuseport && !plain.ssl && !plain.http2);
        assert_eq!(plain.backlog, Some(16384));
        let tls = &list[1];
        assert_eq!(tls.addr.port(), 8443);
        assert!(tls.ssl && tls.http2 && tls.reuseport);
        assert_eq!(
            tls.to_string(),
            "0.0.0.0:8443 ssl http2 reuseport backlog=16384"
        );
    }

    #[test]
    fn every_flag_is_recognised() {
        let l = one(
            "127.0.0.1:80 ssl http2 proxy_protocol deferred bind reuseport backlog=5 \
             ipv6only=off so_keepalive=30m::10",
        );
        assert!(l.ssl && l.http2 && l.proxy_protocol && l.deferred && l.bind && l.reuseport);
        assert_eq!(l.backlog, Some(5));
        assert_eq!(l.ipv6only, Some(false));
        assert_eq!(
            l.so_keepalive,
            Some(SoKeepalive::Custom {
                idle_s: Some(1800),
                interval_s: None,
                count: Some(10)
            })
        );
        // Display round-trips through parse.
        assert_eq!(one(&l.to_string()), l);
        assert_eq!(
            one("1.2.3.4:1 so_keepalive=on").so_keepalive,
            Some(SoKeepalive::On)
        );
        assert_eq!(one("1.2.3.4:1 ipv6only=on").ipv6only, Some(true));
    }

    #[test]
    fn ipv6_wildcard_and_hostnames() {
        assert_eq!(one("[::]:8000").addr, "[::]:8000".parse().expect("literal"));
        assert_eq!(
            one("[::1]:8001 ssl").addr,
            "[::1]:8001".parse().expect("literal")
        );
        assert_eq!(
            one("localhost:8000").addr,
            "127.0.0.1:8000".parse().expect("literal")
        );
        assert_eq!(one("*:8000").addr, "0.0.0.0:8000".parse().expect("literal"));
    }

    #[test]
    fn off_means_no_listeners() {
        assert_eq!(parse_list("off"), Ok(Vec::new()));
        assert_eq!(parse_list("  off  "), Ok(Vec::new()));
        assert_eq!(to_strings(&[]), ["off"]);
    }

    #[test]
    fn bad_entries_are_rejected_with_usage() {
        for (value, needle) in [
            ("0.0.0.0:8000 quic", "unknown flag 'quic'"),
            (
                "0.0.0.0:8000 backlog=lots",
                "backlog must be a whole number",
            ),
            ("0.0.0.0", "invalid address '0.0.0.0'"),
            ("0.0.0.0:99999", "invalid address"),
            ("::1:8000", "invalid address"),
            (":8000", "invalid address"),
            ("", "expected 'off'"),
            ("1.2.3.4:1 so_keepalive=1:2", "so_keepalive must be"),
        ] {
            let err = parse_list(value).expect_err(value);
            assert!(err.contains(needle), "{value}: {err}");
        }
        let err = parse_list("0.0.0.0:8000 quic").expect_err("unknown flag");
        assert!(err.contains("[reuseport]"), "usage is included: {err}");
    }
}
