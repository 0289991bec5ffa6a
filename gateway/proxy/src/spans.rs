//! What the proxy adds to a request's trace: the request span's attributes, taken when the
//! head is read (the input buffer moves on once a body is read).

use std::fmt::Write as _;

use super::log::RequestInfo;
use super::session::{ClientConn, ConnBuffers};
use gangway_pipeline::trace::Tracer;

/// Starts the request's trace and, when spans are recorded, notes Kong's request-span
/// attributes.
pub(super) fn begin(tracer: &Tracer, bufs: &mut ConnBuffers, facts: &RequestInfo<'_>) {
    let trace = &mut bufs.plugins.trace;
    trace.begin(tracer, facts.received);
    if !trace.is_recording() {
        return;
    }
    let conn: &ClientConn = facts.conn;
    let buf = &bufs.input[..facts.head_len];
    let head = &bufs.head;
    let attrs = &mut trace.request;
    let host_port = head.host(buf).unwrap_or_default();
    let host = String::from_utf8_lossy(host_without_port(host_port));
    attrs.scheme = if conn.tls { "https" } else { "http" };
    attrs.flavor = match head.version() {
        gangway_http::Version::Http10 => "1.0",
        gangway_http::Version::Http11 => "1.1",
    };
    attrs.method.clear();
    attrs
        .method
        .push_str(&String::from_utf8_lossy(head.method(buf)));
    attrs.host.clear();
    attrs.host.push_str(&host.to_ascii_lowercase());
    attrs.url.clear();
    let _ = write!(
        attrs.url,
        "{}://{}{}",
        attrs.scheme,
        attrs.host,
        String::from_utf8_lossy(head.target(buf))
    );
    attrs.client_ip = Some(facts.client_ip);
    attrs.peer_ip = Some(conn.peer.ip());
    attrs.request_id = *facts.request_id;
}

/// `host` without `:port` (nginx's `$host`); an IPv6 literal keeps its brackets.
fn host_without_port(host: &[u8]) -> &[u8] {
    if host.starts_with(b"[") {
        return host
            .iter()
            .position(|&b| b == b']')
            .map_or(host, |end| &host[..=end]);
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::host_without_port;

    #[test]
    fn ports_leave_the_host() {
        assert_eq!(host_without_port(b"example.com:8000"), b"example.com");
        assert_eq!(host_without_port(b"example.com"), b"example.com");
        assert_eq!(host_without_port(b"[::1]:8000"), b"[::1]");
    }
}
