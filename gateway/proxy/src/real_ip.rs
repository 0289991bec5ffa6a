//! The client's real address, with nginx's realip semantics as Kong configures them:
//! `trusted_ips` (nginx `set_real_ip_from`), `real_ip_header` and `real_ip_recursive`.
//!
//! Only a trusted peer may replace its own address. The replacement comes from the PROXY
//! protocol header (`real_ip_header = proxy_protocol`) or from a request header read as a list
//! from the right: the last address, or with `real_ip_recursive` the rightmost one that is not
//! trusted (the leftmost when all are). A header that does not parse keeps the peer address
//! (or, when recursing, the last trusted address reached). Nothing here allocates per request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use gangway_config::settings::Settings;
use gangway_net::ip_set::IpSet;

/// Where a trusted peer's replacement address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealIpSource {
    /// A request header. Default `X-Real-IP`.
    Header {
        /// The header name, lowercase.
        name: String,
        /// Every line of the header counts, last line first (`X-Forwarded-For`, which nginx
        /// links across lines); for other headers only the first line does, as in nginx.
        all_lines: bool,
    },
    /// The source address of the connection's PROXY protocol header.
    ProxyProtocol,
}

/// Compiled realip settings, built once from [`Settings`].
#[derive(Debug, Clone)]
pub struct RealIpConfig {
    trusted: IpSet,
    source: RealIpSource,
    recursive: bool,
}

impl RealIpConfig {
    /// Builds the config from `trusted_ips` (default empty: trust no one), `real_ip_header`
    /// (default `X-Real-IP`; `proxy_protocol` selects the PROXY header) and
    /// `real_ip_recursive` (default off).
    pub fn from_settings(s: &Settings) -> Self {
        Self::new(
            s.trusted_ips.clone(),
            &s.real_ip_header,
            s.real_ip_recursive,
        )
    }

    /// Builds the config from its parts; `header` as in `real_ip_header`.
    pub fn new(trusted: Vec<IpNet>, header: &str, recursive: bool) -> Self {
        let source = if header.eq_ignore_ascii_case("proxy_protocol") {
            RealIpSource::ProxyProtocol
        } else {
            let name = header.to_ascii_lowercase();
            let all_lines = name == "x-forwarded-for";
            RealIpSource::Header { name, all_lines }
        };
        RealIpConfig {
            trusted: IpSet::from(trusted),
            source,
            recursive,
        }
    }

    /// Where the replacement address comes from.
    pub fn source(&self) -> &RealIpSource {
        &self.source
    }

    /// The lowercase request header whose values go to [`resolve`](Self::resolve); `None`
    /// when the source is the PROXY protocol (pass an empty iterator then).
    pub fn header_name(&self) -> Option<&str> {
        match &self.source {
            RealIpSource::Header { name, .. } => Some(name),
            RealIpSource::ProxyProtocol => None,
        }
    }

    /// True when `ip` is in `trusted_ips`, at a few hash lookups however long the list (a
    /// CDN's published ranges run to hundreds). IPv4-mapped IPv6 addresses match IPv4
    /// entries, as in nginx.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.contains(ip)
    }

    /// The client address for a request: `peer` is the TCP peer, `proxy_source` the source
    /// of the connection's PROXY header (if any), and `header_values` the values of every line
    /// of [`header_name`](Self::header_name) in request order (ignored for the PROXY source).
    pub fn resolve<'a>(
        &self,
        peer: IpAddr,
        proxy_source: Option<IpAddr>,
        header_values: impl Iterator<Item = &'a [u8]>,
    ) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let all_lines = match &self.source {
            RealIpSource::ProxyProtocol => return proxy_source.unwrap_or(peer),
            RealIpSource::Header { all_lines, .. } => *all_lines,
        };
        let lines = header_values.take(if all_lines { usize::MAX } else { 1 });
        if !self.recursive {
            // Only the last entry counts: parse nothing else.
            let last = lines.flat_map(entries).last().flatten();
            return last.and_then(parse_addr_port).unwrap_or(peer);
        }
        // nginx walks the entries from the right; one pass from the left finds the same
        // entry without collecting them. `found` is the answer if the list ended at the
        // current entry: an unparsable entry makes it the peer; a parsable one replaces it
        // unless the walk from the right would go past it, that is, unless it is trusted and
        // its left neighbour parses.
        let mut found: Option<IpAddr> = None;
        let mut left_parses = false;
        for line in lines {
            for entry in entries(line) {
                match entry.and_then(parse_addr_port) {
                    None => {
                        found = None;
                        left_parses = false;
                    }
                    Some(ip) => {
                        if !left_parses || !self.is_trusted(ip) {
                            found = Some(ip);
                        }
                        left_parses = true;
                    }
                }
            }
        }
        found.unwrap_or(peer)
    }
}

/// The entries of one header line, left to right; `None` stands for an entry nginx cannot
/// parse however it is written. nginx never tests a line's first byte as a separator, so a
/// line that starts with one yields an unparsable leftmost entry: the first token itself when
/// a single separator precedes it (it absorbs it), else an empty entry before it. A blank line
/// is one unparsable entry.
fn entries(line: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    let lead = line.iter().take_while(|&&b| is_separator(b)).count();
    let gap = (lead > 0 || line.is_empty()).then_some(None);
    let tokens = line
        .split(|&b| is_separator(b))
        .filter(|t| !t.is_empty())
        .skip(usize::from(lead == 1))
        .map(Some);
    gap.into_iter().chain(tokens)
}

/// Entries of an address list are separated by commas and/or spaces, as nginx splits them.
fn is_separator(b: u8) -> bool {
    b == b' ' || b == b','
}

/// One list entry as nginx reads it: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]` or `[::1]:80`
/// (a port, when present, is 1 to 65535 and is dropped).
pub fn parse_addr_port(text: &[u8]) -> Option<IpAddr> {
    if let Some(ip) = parse_addr(text) {
        return Some(ip);
    }
    let (addr, port) = if let Some(inner) = text.strip_prefix(b"[") {
        let close = inner.iter().position(|&b| b == b']')?;
        let (addr, after) = (&inner[..close], &inner[close + 1..]);
        if after.is_empty() {
            return parse_addr(addr);
        }
        (addr, after.strip_prefix(b":")?)
    } else {
        let colon = text.iter().position(|&b| b == b':')?;
        (&text[..colon], &text[colon + 1..])
    };
    if !valid_port(port) {
        return None;
    }
    parse_addr(addr)
}

/// A port as nginx's `ngx_atoi` reads it: digits only, 1 to 65535.
fn valid_port(text: &[u8]) -> bool {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut n: u32 = 0;
    for &b in text {
        n = n * 10 + u32::from(b - b'0');
        if n > 65535 {
            return false;
        }
    }
    n >= 1
}

/// An IPv4 address (four decimal octets; heading zeroes read as decimal, as nginx does) or an
/// IPv6 address without brackets.
fn parse_addr(text: &[u8]) -> Option<IpAddr> {
    if let Some(v4) = parse_ipv4(text) {
        return Some(IpAddr::V4(v4));
    }
    let s = std::str::from_utf8(text).ok()?;
    s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

fn parse_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u16, |n, &b| n * 10 + u16::from(b - b'0'));
        *octet = u8::try_from(n).ok()?;
    }
    match parts.next() {
        Some(_) => None,
        None => Some(Ipv4Addr::from(octets)),
    }
}

#[cfg(test)]
#[path = "real_ip_tests.rs"]
mod tests;
