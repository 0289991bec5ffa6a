//! What the proxy adds to a request's trace: the request span's attributes, taken when the
//! head is read (the input buffer moves on once a body is read).

use super::headers::host_without_port;
use super::log::RequestInfo;
use super::session::{ClientConn, ConnBuffers};
use gangway_pipeline::TraceExporters;
use gangway_pipeline::trace::{Tracer, is_trace_header};

/// Starts the request's trace and, when spans are recorded, notes Kong's request-span
/// attributes.
pub(super) fn begin(
    tracer: &Tracer,
    exporters: TraceExporters,
    bufs: &mut ConnBuffers,
    facts: &RequestInfo<'_>,
) {
    let (head, buf) = (&bufs.head, &bufs.input[..facts.head_len]);
    let traced = || {
        head.headers()
            .iter()
            .any(|f| is_trace_header(f.name.get(buf)))
    };
    let trace = &mut bufs.plugins.trace;
    trace.begin(tracer, exporters, traced);
    if !trace.is_recording() {
        return;
    }
    let conn: &ClientConn = facts.conn;
    let buf = &bufs.input[..facts.head_len];
    let head = &bufs.head;
    let attrs = &mut trace.request;
    attrs.scheme = if conn.tls { "https" } else { "http" };
    attrs.flavor = match head.version() {
        gangway_http::Version::Http10 => "1.0",
        gangway_http::Version::Http11 => "1.1",
    };
    // Copied into buffers the connection keeps: no allocation once they have grown.
    attrs.method.clear();
    push_text(&mut attrs.method, head.method(buf));
    attrs.host.clear();
    push_text(
        &mut attrs.host,
        host_without_port(head.host(buf).unwrap_or_default()),
    );
    attrs.host.make_ascii_lowercase();
    attrs.url.clear();
    attrs.url.push_str(attrs.scheme);
    attrs.url.push_str("://");
    attrs.url.push_str(&attrs.host);
    push_text(&mut attrs.url, head.target(buf));
    attrs.client_ip = Some(facts.client_ip);
    attrs.peer_ip = Some(conn.peer.ip());
    attrs.request_id = *facts.request_id;
}

/// Appends `bytes` as text (a parsed head is ASCII; anything else is replaced).
fn push_text(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}
