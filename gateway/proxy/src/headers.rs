//! The heads gangway writes: the request to the upstream and the response to the client.
//!
//! Written straight into the connection's output buffer: no header map, no per-request
//! allocation. Hop-by-hop headers are dropped both ways; Kong's forwarding and latency headers
//! are added.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use gangway_http::{BodyFraming, RequestHead, ResponseHead, Version};
use gangway_pipeline::edits::{HeaderEdits, StaticName};

/// The `Server` value on responses gangway generates, and the product in `Via`.
pub const PRODUCT: &str = concat!("gangway/", env!("CARGO_PKG_VERSION"));

/// What the upstream request head needs beyond the client's head.
pub struct UpstreamHead<'a> {
    /// The method to send (the client's, unless a plugin changed it).
    pub method: &'a [u8],
    /// Plugin changes to the headers.
    pub edits: &'a HeaderEdits,
    /// The upstream path (already built by the router's path handling), without query.
    pub path: &'a [u8],
    /// The raw query including its leading `?`, if the request had one.
    pub query: Option<&'a [u8]>,
    /// The Host header value to send.
    pub host: &'a [u8],
    /// The TCP peer's address (appended to `X-Forwarded-For`).
    pub client: SocketAddr,
    /// The client address after `real_ip` resolution (`X-Real-IP`).
    pub real_ip: IpAddr,
    /// Whether the client is a trusted proxy (its X-Forwarded-* values are kept).
    pub trusted: bool,
    /// `https` or `http`: the scheme the client used.
    pub scheme: &'a str,
    /// The port the request arrived on.
    pub local_port: u16,
    /// The prefix stripped from the path (for `X-Forwarded-Prefix`), if any.
    pub stripped_prefix: Option<&'a [u8]>,
    /// The request id, if `headers_upstream` includes it.
    pub request_id: Option<&'a [u8]>,
    /// Body framing to announce.
    pub framing: BodyFraming,
    /// Whether this is an upgrade (WebSocket) request.
    pub upgrade: bool,
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Writes `ip` as its `Display` does; IPv4, every request's case, without the formatter.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_number(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

// Names of the headers gangway writes itself, asked of the plugins' edits.
const SET_COOKIE: StaticName = StaticName::new("set-cookie");
const VIA: StaticName = StaticName::new("via");
const X_FORWARDED_FOR: StaticName = StaticName::new("x-forwarded-for");
const X_FORWARDED_HOST: StaticName = StaticName::new("x-forwarded-host");
const X_FORWARDED_PATH: StaticName = StaticName::new("x-forwarded-path");
const X_FORWARDED_PORT: StaticName = StaticName::new("x-forwarded-port");
const X_FORWARDED_PREFIX: StaticName = StaticName::new("x-forwarded-prefix");
const X_FORWARDED_PROTO: StaticName = StaticName::new("x-forwarded-proto");
const X_KONG_PROXY_LATENCY: StaticName = StaticName::new("x-kong-proxy-latency");
const X_KONG_REQUEST_ID: StaticName = StaticName::new("x-kong-request-id");
const X_KONG_UPSTREAM_LATENCY: StaticName = StaticName::new("x-kong-upstream-latency");
const X_KONG_UPSTREAM_STATUS: StaticName = StaticName::new("x-kong-upstream-status");
const X_REAL_IP: StaticName = StaticName::new("x-real-ip");

/// Request headers gangway computes for the upstream (a plugin's edit still wins).
const FORWARDED: [&[u8]; 8] = [
    b"via",
    b"x-real-ip",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-forwarded-path",
    b"x-forwarded-prefix",
];

/// Writes the upstream request head into `out`. Returns where the Host value sits in `out`,
/// so a retry on another target can replace it.
pub fn write_upstream_request(
    out: &mut Vec<u8>,
    head: &RequestHead,
    buf: &[u8],
    up: &UpstreamHead<'_>,
) -> std::ops::Range<usize> {
    out.extend_from_slice(up.method);
    out.push(b' ');
    out.extend_from_slice(up.path);
    if let Some(q) = up.query {
        out.extend_from_slice(q);
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    // A plugin may replace the Host header (request-transformer `replace.headers`).
    let host = up
        .edits
        .values("host", std::iter::empty())
        .next()
        .unwrap_or(up.host);
    let host_at = out.len()..out.len() + host.len();
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n");
    for field in head.headers() {
        let (name, value) = (field.name.get(buf), field.value.get(buf));
        if head.is_hop_by_hop(buf, name)
            || up.edits.removes_original(name)
            || name.eq_ignore_ascii_case(b"host")
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"expect")
            || FORWARDED.iter().any(|f| name.eq_ignore_ascii_case(f))
            // Kong sets its own, replacing the client's.
            || (up.request_id.is_some() && name.eq_ignore_ascii_case(b"x-kong-request-id"))
        {
            continue;
        }
        push_header(out, name, value);
    }
    for (name, value) in up.edits.added() {
        if !managed_request_header(name) {
            push_header(out, name, value);
        }
    }
    // As Kong sets them: X-Real-IP is the realip result; X-Forwarded-For extends the client's
    // list with the TCP peer, or starts with the realip result. A plugin that set or removed
    // one of these headers has the last word (a key in the URL must not leak through
    // X-Forwarded-Path, say).
    match plugin_override(up.edits, X_REAL_IP) {
        Some(v) => push_optional(out, b"X-Real-IP", v),
        None => {
            out.extend_from_slice(b"X-Real-IP: ");
            push_ip(out, up.real_ip);
            out.extend_from_slice(b"\r\n");
        }
    }
    match plugin_override(up.edits, X_FORWARDED_FOR) {
        Some(v) => push_optional(out, b"X-Forwarded-For", v),
        None => {
            out.extend_from_slice(b"X-Forwarded-For: ");
            let mut prior = head.header_values(buf, "x-forwarded-for").peekable();
            if prior.peek().is_some() {
                for v in prior {
                    out.extend_from_slice(v);
                    out.extend_from_slice(b", ");
                }
                push_ip(out, up.client.ip());
            } else {
                push_ip(out, up.real_ip);
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    let kept = |name: &str| {
        if up.trusted {
            head.header(buf, name)
        } else {
            None
        }
    };
    match plugin_override(up.edits, X_FORWARDED_PROTO) {
        Some(v) => push_optional(out, b"X-Forwarded-Proto", v),
        None => push_header(
            out,
            b"X-Forwarded-Proto",
            kept("x-forwarded-proto").unwrap_or(up.scheme.as_bytes()),
        ),
    }
    match plugin_override(up.edits, X_FORWARDED_HOST) {
        Some(v) => push_optional(out, b"X-Forwarded-Host", v),
        None => {
            let host_only = host_without_port(head.host(buf).unwrap_or(b""));
            push_header(
                out,
                b"X-Forwarded-Host",
                kept("x-forwarded-host").unwrap_or(host_only),
            );
        }
    }
    match (
        plugin_override(up.edits, X_FORWARDED_PORT),
        kept("x-forwarded-port"),
    ) {
        (Some(v), _) => push_optional(out, b"X-Forwarded-Port", v),
        (None, Some(p)) => push_header(out, b"X-Forwarded-Port", p),
        (None, None) => {
            out.extend_from_slice(b"X-Forwarded-Port: ");
            push_number(out, u64::from(up.local_port));
            out.extend_from_slice(b"\r\n");
        }
    }
    match plugin_override(up.edits, X_FORWARDED_PATH) {
        Some(v) => push_optional(out, b"X-Forwarded-Path", v),
        None => push_header(
            out,
            b"X-Forwarded-Path",
            kept("x-forwarded-path").unwrap_or(head.path(buf)),
        ),
    }
    match plugin_override(up.edits, X_FORWARDED_PREFIX) {
        Some(v) => push_optional(out, b"X-Forwarded-Prefix", v),
        None => {
            if let Some(prefix) = kept("x-forwarded-prefix").or(up.stripped_prefix) {
                push_header(out, b"X-Forwarded-Prefix", prefix);
            }
        }
    }
    // As Kong: the client's Via, extended with this hop (the client's HTTP version).
    match plugin_override(up.edits, VIA) {
        Some(v) => push_optional(out, b"Via", v),
        None => {
            out.extend_from_slice(b"Via: ");
            for v in head.header_values(buf, "via") {
                out.extend_from_slice(v);
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(match head.version() {
                Version::Http10 => b"1.0 ",
                _ => b"1.1 ",
            });
            out.extend_from_slice(PRODUCT.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if let Some(id) = up.request_id {
        push_header(out, b"X-Kong-Request-Id", id);
    }
    match up.framing {
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_number(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    if up.upgrade {
        if let Some(proto) = head.header(buf, "upgrade") {
            push_header(out, b"Upgrade", proto);
        }
        out.extend_from_slice(b"Connection: upgrade\r\n\r\n");
    } else {
        out.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
    }
    host_at
}

/// A plugin's say on a header gangway computes: `None` when no plugin touched it, else what
/// the plugin left (`Some(None)` after a removal).
fn plugin_override(edits: &HeaderEdits, name: StaticName) -> Option<Option<&[u8]>> {
    if !edits.removes_original(name) {
        return None;
    }
    Some(edits.values(name, std::iter::empty()).next())
}

fn push_optional(out: &mut Vec<u8>, name: &[u8], value: Option<&[u8]>) {
    if let Some(v) = value {
        push_header(out, name, v);
    }
}

/// Headers gangway itself writes on upstream requests; plugin edits cannot add copies.
fn managed_request_header(name: &[u8]) -> bool {
    [
        &b"host"[..],
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"upgrade",
        b"te",
        b"keep-alive",
        b"expect",
    ]
    .iter()
    .chain(FORWARDED.iter())
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// `example.com:8000` → `example.com`; `[::1]:80` → `[::1]`.
pub fn host_without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(i) => &host[..i],
        None => host,
    }
}

/// What the client response head needs beyond the upstream's head.
pub struct ClientHead<'a> {
    /// Add `Via` (server_tokens).
    pub via: bool,
    /// `X-Kong-Upstream-Latency`, when enabled.
    pub upstream_latency: Option<Duration>,
    /// `X-Kong-Proxy-Latency`, when enabled.
    pub proxy_latency: Option<Duration>,
    /// Add `X-Kong-Upstream-Status`.
    pub upstream_status: bool,
    /// The request id, when enabled.
    pub request_id: Option<&'a [u8]>,
    /// Close the client connection after this response.
    pub close: bool,
    /// The client spoke HTTP/1.0 and asked for keep-alive.
    pub http10_keep_alive: bool,
    /// The chunked body is decoded for an HTTP/1.0 client (no Transfer-Encoding header).
    pub dechunked: bool,
    /// The body was buffered and rewritten by plugins: send this `Content-Length` instead of
    /// the upstream's framing. `None` (the default) keeps the upstream's framing.
    pub body_length: Option<u64>,
    /// A hash cookie made up for the client (`name=value; Path=...`): it replaces an
    /// upstream `Set-Cookie` of that name.
    pub hash_cookie: Option<&'a str>,
    /// `Kong-Route-*` / `Kong-Service-*` values when `allow_debug_header` is on and the client
    /// sent `kong-debug: 1`.
    pub debug: Option<DebugIds<'a>>,
}

/// Ids and names for Kong's debug headers.
pub struct DebugIds<'a> {
    /// The matched route's id.
    pub route_id: &'a gangway_config::model::Id,
    /// Its name.
    pub route_name: Option<&'a str>,
    /// The service's id.
    pub service_id: &'a gangway_config::model::Id,
    /// Its name.
    pub service_name: Option<&'a str>,
}

/// Writes the response head for the client into `out`.
pub fn write_client_response(
    out: &mut Vec<u8>,
    resp: &ResponseHead,
    buf: &[u8],
    extra: &ClientHead<'_>,
    edits: &HeaderEdits,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_number(out, u64::from(resp.status()));
    out.push(b' ');
    out.extend_from_slice(resp.reason(buf));
    out.extend_from_slice(b"\r\n");
    let switching = resp.status() == 101;
    // Kong replaces the first upstream cookie of the hash cookie's name.
    let mut replaced_cookie = extra
        .hash_cookie
        .and_then(|c| c.split_once('='))
        .map(|(name, _)| name.as_bytes());
    for field in resp.headers() {
        let (name, value) = (field.name.get(buf), field.value.get(buf));
        let keep_for_upgrade = switching
            && (name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"connection"));
        // Content-Length is framing: neither a plugin removing it (response-transformer)
        // nor an upstream naming it in `Connection` may leave the client without one (it
        // would read the body as the next response); a rewritten body gets `body_length`.
        let framing = name.eq_ignore_ascii_case(b"content-length");
        if !keep_for_upgrade && !framing && resp.is_hop_by_hop(buf, name)
            || (!framing && edits.removes_original(name))
        {
            continue;
        }
        if extra.via && name.eq_ignore_ascii_case(b"via") {
            continue;
        }
        if let Some(cookie) = replaced_cookie
            && name.eq_ignore_ascii_case(b"set-cookie")
            && value
                .strip_prefix(cookie)
                .is_some_and(|v| v.first() == Some(&b'='))
        {
            replaced_cookie = None;
            continue;
        }
        if framing && extra.body_length.is_some() {
            continue;
        }
        push_header(out, name, value);
    }
    for (name, value) in edits.added() {
        let framing = [&b"content-length"[..], b"transfer-encoding", b"connection"];
        if !framing.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            push_header(out, name, value);
        }
    }
    if let Some(len) = extra.body_length {
        out.extend_from_slice(b"Content-Length: ");
        push_number(out, len);
        out.extend_from_slice(b"\r\n");
    } else if matches!(resp.framing(), BodyFraming::Chunked) && !extra.dechunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    // Kong sets its own headers before the plugins' header_filter, so a plugin may remove
    // them (response-transformer `remove.headers: [Via]`).
    let removed = |name: StaticName| edits.removes_original(name);
    if extra.via && !removed(VIA) {
        // The upstream's Via, extended with this hop, as Kong does.
        out.extend_from_slice(b"Via: ");
        for v in resp.header_values(buf, "via") {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(b"1.1 ");
        out.extend_from_slice(PRODUCT.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(upstream) = extra
        .upstream_latency
        .filter(|_| !removed(X_KONG_UPSTREAM_LATENCY))
    {
        out.extend_from_slice(b"X-Kong-Upstream-Latency: ");
        push_number(out, upstream.as_millis() as u64);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(proxy) = extra
        .proxy_latency
        .filter(|_| !removed(X_KONG_PROXY_LATENCY))
    {
        out.extend_from_slice(b"X-Kong-Proxy-Latency: ");
        push_number(out, proxy.as_millis() as u64);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(cookie) = extra.hash_cookie.filter(|_| !removed(SET_COOKIE)) {
        push_header(out, b"Set-Cookie", cookie.as_bytes());
    }
    if extra.upstream_status && !removed(X_KONG_UPSTREAM_STATUS) {
        out.extend_from_slice(b"X-Kong-Upstream-Status: ");
        push_number(out, u64::from(resp.status()));
        out.extend_from_slice(b"\r\n");
    }
    if let Some(id) = extra.request_id.filter(|_| !removed(X_KONG_REQUEST_ID)) {
        push_header(out, b"X-Kong-Request-Id", id);
    }
    if let Some(d) = &extra.debug {
        let mut uuid = uuid::Uuid::encode_buffer();
        push_header(
            out,
            b"Kong-Route-Id",
            d.route_id.hyphenated().encode_lower(&mut uuid).as_bytes(),
        );
        if let Some(name) = d.route_name {
            push_header(out, b"Kong-Route-Name", name.as_bytes());
        }
        push_header(
            out,
            b"Kong-Service-Id",
            d.service_id.hyphenated().encode_lower(&mut uuid).as_bytes(),
        );
        if let Some(name) = d.service_name {
            push_header(out, b"Kong-Service-Name", name.as_bytes());
        }
    }
    if !switching {
        if extra.close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if extra.http10_keep_alive {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_cannot_strip_content_length_by_naming_it_in_connection() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: content-length, x-up\r\nX-Up: 1\r\n\r\nhello";
        let mut resp = ResponseHead::default();
        gangway_http::parse_response(buf, &gangway_http::Limits::default(), false, &mut resp)
            .expect("a response")
            .expect("complete");
        let extra = ClientHead {
            via: false,
            upstream_latency: None,
            proxy_latency: None,
            upstream_status: false,
            request_id: None,
            close: false,
            dechunked: false,
            http10_keep_alive: false,
            body_length: None,
            hash_cookie: None,
            debug: None,
        };
        let mut out = Vec::new();
        write_client_response(&mut out, &resp, buf, &extra, &HeaderEdits::default());
        let head = String::from_utf8(out).expect("text").to_ascii_lowercase();
        assert!(head.contains("content-length: 5\r\n"), "{head}");
        assert!(
            !head.contains("x-up"),
            "a header it names still goes: {head}"
        );
    }

    #[test]
    fn strips_ports_from_hosts() {
        assert_eq!(host_without_port(b"example.com:8000"), b"example.com");
        assert_eq!(host_without_port(b"example.com"), b"example.com");
        assert_eq!(host_without_port(b"[::1]:80"), b"[::1]");
    }

    #[test]
    fn numbers_render_without_allocation_helpers() {
        let mut out = Vec::new();
        push_number(&mut out, 0);
        out.push(b',');
        push_number(&mut out, 18446744073709551615);
        assert_eq!(out, b"0,18446744073709551615");
    }

    #[test]
    fn addresses_render_as_their_display_does() {
        for ip in [
            "0.0.0.0",
            "10.0.0.255",
            "127.0.0.1",
            "192.168.100.9",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.1.2.3",
        ] {
            let ip: IpAddr = ip.parse().expect("an address");
            let mut out = b"x".to_vec();
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x{ip}").into_bytes(), "{ip}");
        }
    }
}
