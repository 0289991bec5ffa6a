//! The log phase: what the proxy notes about a transaction while serving it, and the
//! `kong.log.serialize()` document built from that once the response is sent.
//!
//! Nothing here runs unless a plugin of the request's chain has a log handler. The request
//! half is captured before the exchange consumes the client's bytes; the response half
//! comes from the [`Recorded`] client stream.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::kernel_counters::KernelReading;
use super::log_json::{self, HeaderItem, Object};
use super::recorder::{Recorded, headers_of, status_of};
use super::session::{ClientConn, ConnBuffers};
use crate::Snapshot;
use gangway_pipeline::edits::QueryItem;
use gangway_pipeline::{Chain, LazyEntry, LogCtx, LogFacts};

/// The id of Kong's `default` workspace in DB-less mode (`DECLARATIVE_DEFAULT_WORKSPACE_ID`).
pub const DEFAULT_WORKSPACE_ID: &str = "0dc6f45b-8f8d-40d2-a504-473544ee190b";

/// Who produced the response, as `kong.response.get_source()` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// The upstream service answered.
    Service,
    /// A plugin answered (`kong.response.exit`).
    Exit,
    /// gateway answered with an error (no route, upstream failure, bad request).
    #[default]
    Error,
}

impl Source {
    /// The log entry's `source`, as Kong (3.6+) names it there (`RESPONSE_SOURCE.NAMES`):
    /// `upstream` for the service's answer, `kong` for a plugin's or gangway's own.
    fn name(self) -> &'static str {
        match self {
            Source::Service => "upstream",
            Source::Exit | Source::Error => "kong",
        }
    }
}

/// Which chain's plugins log the request.
#[derive(Debug, Clone, Copy, Default)]
pub enum ChainRef {
    /// The matched route's chain.
    Route(usize),
    /// The global chain (no route matched, or rewrite answered).
    #[default]
    Global,
}

impl ChainRef {
    /// The chain in `snapshot`.
    pub fn get(self, snapshot: &Snapshot) -> &Chain {
        match self {
            ChainRef::Route(i) => &snapshot.pipeline.routes[i],
            ChainRef::Global => &snapshot.pipeline.global,
        }
    }
}

/// What the proxy noted about the current request, for the log phase. Reused per
/// connection.
#[derive(Debug, Default)]
pub struct Transaction {
    /// A plugin will log this request: the other fields are being filled.
    pub active: bool,
    /// The chain whose plugins log it.
    pub chain: ChainRef,
    /// A log plugin reads the serialized entry: `request` is captured.
    reads_entry: bool,
    /// The `request` object's text up to its `headers` (its `size` and `tls` come when the
    /// entry is written), captured before the exchange consumed the client's bytes.
    request: Vec<u8>,
    /// `request.tls`: the protocol and cipher of a TLS client.
    request_tls: Option<(&'static str, &'static str)>,
    /// `request.size`: head and body bytes.
    request_size: u64,
    /// The client address after `real_ip` resolution.
    client_ip: Option<IpAddr>,
    /// Epoch milliseconds when the request head was complete.
    started_at: u64,
    received: Option<Instant>,
    /// The path and query sent upstream.
    pub upstream_uri: String,
    /// The upstream addresses tried, in order.
    tries: Vec<Try>,
    /// When the try under way began, and how long picking its address took.
    current_try: Option<(Instant, Duration)>,
    /// From the head's arrival until the upstream request was sent.
    pub proxy_latency: Option<Duration>,
    /// From sending the upstream request until its response head arrived, or, when no
    /// try got one, until the gateway gave up (Kong's `KONG_WAITING_TIME`).
    pub upstream_latency: Option<Duration>,
    /// When the first try began, for a request that went to the balancer.
    pub upstream_started: Option<std::time::Instant>,
    /// Who answered; set for every request, logged or not.
    pub source: Source,
}

/// One try of the upstream (Kong's `balancer_data.tries` entry).
#[derive(Debug)]
struct Try {
    addr: SocketAddr,
    /// The status nginx records for it (`$upstream_status`): the response's, or 502 or 504
    /// for a try that got none.
    status: u16,
    /// When its balancer step began.
    began: Instant,
    /// How long picking and resolving its address took (Kong's `balancer_latency`).
    balancer: Duration,
}

impl Transaction {
    /// A try of the upstream begins: its balancer step starts now.
    pub fn begin_try(&mut self) {
        if self.active {
            self.current_try = Some((Instant::now(), Duration::ZERO));
        }
    }

    /// The try under way has its address.
    pub fn try_balanced(&mut self) {
        if let Some((began, balancer)) = &mut self.current_try {
            *balancer = began.elapsed();
        }
    }

    /// The try under way to `addr` ended with `status` (nginx's `$upstream_status` entry).
    pub fn end_try(&mut self, addr: SocketAddr, status: u16) {
        if !self.active {
            return;
        }
        let (began, balancer) = self
            .current_try
            .take()
            .unwrap_or((self.received.unwrap_or_else(Instant::now), Duration::ZERO));
        self.tries.push(Try {
            addr,
            status,
            began,
            balancer,
        });
    }

    /// Sets `request.size` once a chunked body has been read whole: `bytes` is the head and
    /// the body as they came, framing included (nginx's `$request_length`).
    pub fn count_chunked_body(&mut self, bytes: u64) {
        self.request_size = bytes;
    }

    /// Frees the captured request text when a large head grew it past `above` bytes: a
    /// pooled buffer set would keep that memory otherwise.
    pub fn shrink(&mut self, above: usize) {
        if self.request.capacity() > above {
            self.request = Vec::new();
        }
    }
}

/// The request as the log phase describes it.
pub struct RequestInfo<'a> {
    /// The client connection.
    pub conn: &'a ClientConn,
    /// Length of the head in `bufs.input`.
    pub head_len: usize,
    /// The client address after `real_ip` resolution.
    pub client_ip: IpAddr,
    /// This request's id.
    pub request_id: &'a [u8; 32],
    /// When the head was complete.
    pub received: Instant,
}

/// Starts noting the request for `chain` when it has a log plugin: captures the request
/// half (with the plugins' edits applied, as Kong's `kong.request` reads them in log) and
/// asks the client stream to keep the response head.
pub fn begin<S>(
    client: &Recorded<S>,
    bufs: &mut ConnBuffers,
    snapshot: &Snapshot,
    chain: ChainRef,
    facts: &RequestInfo<'_>,
) {
    let txn = &mut bufs.txn;
    let steps = chain.get(snapshot);
    txn.active = steps.logs || (steps.exports_traces && bufs.plugins.trace.is_recording());
    if !txn.active {
        return;
    }
    txn.chain = chain;
    txn.reads_entry = chain.get(snapshot).log_entries;
    txn.client_ip = Some(facts.client_ip);
    txn.received = Some(facts.received);
    txn.upstream_uri.clear();
    txn.tries.clear();
    txn.current_try = None;
    txn.proxy_latency = None;
    txn.upstream_latency = None;
    txn.upstream_started = None;
    bufs.txn.request_size = request_size(bufs, facts);
    if bufs.txn.reads_entry {
        // Kong's `get_start_time()`: when the request arrived, not when the log began
        // (after the access plugins, which may have waited on Redis or a body).
        let waited = facts.received.elapsed().as_millis() as u64;
        bufs.txn.started_at = epoch_millis().saturating_sub(waited);
        let mut request = std::mem::take(&mut bufs.txn.request);
        request.clear();
        write_request_object(&mut request, bufs, facts);
        bufs.txn.request = request;
        bufs.txn.request_tls = facts.conn.tls_names;
        // The serialized entry carries the response headers.
        client.capture_head();
    }
    client.track_status();
}

fn epoch_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Kong's `request.size`: the head, and the body as read (or as announced).
fn request_size(bufs: &ConnBuffers, facts: &RequestInfo<'_>) -> u64 {
    let body_len = match (&bufs.plugins.body, bufs.head.framing()) {
        (Some(body), _) => body.len() as u64,
        (None, gangway_http::BodyFraming::Length(n)) => n,
        _ => 0,
    };
    facts.head_len as u64 + body_len
}

/// Writes the `request` object up to its `headers`, left open: Kong's `kong.request` as the
/// log phase reads it (with the plugins' edits applied).
fn write_request_object(out: &mut Vec<u8>, bufs: &ConnBuffers, facts: &RequestInfo<'_>) {
    let buf = &bufs.input[..facts.head_len];
    let head = &bufs.head;
    let mut headers: Vec<HeaderItem<'_>> = Vec::with_capacity(head.headers().len() + 2);
    for (name, value) in bufs.plugins.header_table(head, buf) {
        log_json::add_header(&mut headers, name, value);
    }
    let query: Vec<QueryItem<'_>> = bufs.plugins.query.args(head.query(buf)).collect();
    let target = head.target(buf);

    let mut request = Object::open(out);
    request.str("id", facts.request_id);
    let url = request.key("url");
    url.push(b'"');
    url.extend_from_slice(if facts.conn.tls {
        b"https://"
    } else {
        b"http://"
    });
    let host_at = url.len();
    log_json::push_fragment(
        url,
        crate::headers::host_without_port(head.host(buf).unwrap_or_default()),
    );
    url[host_at..].make_ascii_lowercase();
    url.push(b':');
    log_json::push_u64(url, u64::from(facts.conn.local_port));
    log_json::push_fragment(url, target);
    url.push(b'"');
    request.str("uri", target);
    log_json::push_query(request.key("querystring"), &query);
    match &bufs.plugins.method {
        Some(method) => request.str("method", method.as_bytes()),
        None => request.str("method", head.method(buf)),
    }
    log_json::push_headers(request.key("headers"), &headers);
}

/// Runs the log phase for the request just answered, when a plugin logs it; `kernel` is the
/// client connection's reading under `log_kernel_counters`.
pub fn finish<S>(
    client: &Recorded<S>,
    bufs: &mut ConnBuffers,
    snapshot: &Snapshot,
    kernel: Option<&KernelReading>,
) {
    if !bufs.txn.active {
        return;
    }
    bufs.txn.active = false;
    let txn = &bufs.txn;
    let latencies = Latencies::of(txn);
    let sizes = kernel.filter(|k| k.as_sizes);
    let route = match txn.chain {
        ChainRef::Route(i) => Some(i),
        ChainRef::Global => None,
    };
    let facts = LogFacts {
        status: match client.status() {
            0 => 499,
            s => s,
        },
        from_service: txn.source == Source::Service,
        request_ms: millis(latencies.total),
        upstream_ms: txn.upstream_latency.map(millis),
        kong_ms: millis(latencies.kong),
        request_size: sizes.map_or(txn.request_size, |k| k.request_bytes),
        response_size: sizes.map_or(client.sent(), |k| k.response_bytes),
        route: route.map(|i| &snapshot.config.routes[i]),
        service: route
            .and_then(|i| snapshot.route_service[i])
            .map(|s| &snapshot.config.services[s]),
        consumer: bufs
            .plugins
            .consumer
            .map(|c| snapshot.identities.consumer(c)),
        config_version: snapshot.version,
    };
    // The trace leaves the plugin state for the log phase: log spans are added to it while
    // the plugins read that state.
    let mut trace = std::mem::take(&mut bufs.plugins.trace);
    trace.finish_request(facts.status, facts.route.and_then(first_path));
    let trace_ids = std::mem::take(&mut trace.log_trace_ids);
    let make = || {
        serialize(
            client,
            bufs,
            snapshot,
            &latencies,
            &trace_ids,
            kernel,
            facts.response_size,
        )
    };
    let entry = LazyEntry::new(&make);
    let mut ctx = LogCtx {
        facts: &facts,
        entry: &entry,
        state: &bufs.plugins,
        step: 0,
    };
    gangway_pipeline::run_log(
        &snapshot.pipeline,
        txn.chain.get(snapshot),
        &mut ctx,
        &mut trace,
    );
    drop(entry);
    if trace.is_recording() && tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(
            trace.sampled = trace.sampled,
            spans = %trace.summary(),
            "collected request spans"
        );
    }
    trace.log_trace_ids = trace_ids;
    bufs.plugins.trace = trace;
}

/// Kong's `http.route` span attribute: the route's first path.
fn first_path(route: &gangway_config::model::Route) -> Option<&str> {
    route.paths.as_ref()?.first().map(String::as_str)
}

/// The log phase's latencies of the transaction.
struct Latencies {
    /// From the request head to now.
    total: Duration,
    /// gangway's own share.
    kong: Duration,
    /// From the upstream's response head to the end of its body (Kong's
    /// `KONG_RECEIVE_TIME`), for a proxied request.
    receive: Duration,
}

impl Latencies {
    fn of(txn: &Transaction) -> Latencies {
        let total = txn.received.map(|r| r.elapsed()).unwrap_or_default();
        let kong = match txn.source {
            Source::Service => txn.proxy_latency.unwrap_or_default(),
            // A plugin's answer: what it waited on its backend (a Lambda) is not Kong's time.
            Source::Exit => total.saturating_sub(txn.upstream_latency.unwrap_or_default()),
            // The upstream failed: Kong books the wait on it (`latencies.proxy`), and only
            // the time until the first try as its own.
            Source::Error => txn.proxy_latency.unwrap_or(total),
        };
        let receive = match (txn.source, txn.proxy_latency, txn.upstream_latency) {
            (Source::Service, Some(proxy), Some(waiting)) => {
                total.saturating_sub(proxy).saturating_sub(waiting)
            }
            _ => Duration::ZERO,
        };
        Latencies {
            total,
            kong,
            receive,
        }
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Kong's `kong.log.serialize()` for the transaction, as JSON text; `response_size` is the
/// log facts' (the bytes sent, or the kernel's count under `log_kernel_counters = sizes`).
fn serialize<S>(
    client: &Recorded<S>,
    bufs: &ConnBuffers,
    snapshot: &Snapshot,
    latencies: &Latencies,
    trace_ids: &[(&'static str, gangway_pipeline::trace::LogTraceId)],
    kernel: Option<&KernelReading>,
    response_size: u64,
) -> Vec<u8> {
    let txn = &bufs.txn;
    let head = client.head();
    let mut out = Vec::with_capacity(txn.request.len() + head.len() + 1024);
    let mut entry = Entry::new(&mut out, &bufs.plugins.log_values);
    if let Some(k) = kernel {
        entry.field("kernel", |out| json_into(out, &k.log_object()));
    }
    entry.field("request", |out| {
        let mut request = if txn.request.is_empty() {
            Object::open(out)
        } else {
            out.extend_from_slice(&txn.request);
            Object::resume(out)
        };
        let size = kernel
            .filter(|k| k.as_sizes)
            .map_or(txn.request_size, |k| k.request_bytes);
        request.u64("size", size);
        if let Some((version, cipher)) = txn.request_tls {
            // No client certificates are requested: nginx's `$ssl_client_verify` is NONE.
            let mut tls = Object::open(request.key("tls"));
            tls.str("version", version.as_bytes());
            tls.str("cipher", cipher.as_bytes());
            tls.str("client_verify", b"NONE");
            tls.close();
        }
        request.close();
    });
    entry.field("upstream_uri", |out| {
        log_json::push_str(out, txn.upstream_uri.as_bytes());
    });
    // nginx's `$upstream_status`: one status per try, `502, 200` after a retry.
    entry.field("upstream_status", |out| {
        out.push(b'"');
        for (i, t) in txn.tries.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            log_json::push_u64(out, u64::from(t.status));
        }
        out.push(b'"');
    });
    entry.field("response", |out| {
        let limit = usize::from(bufs.plugins.limits.resp_headers);
        let headers: Vec<HeaderItem<'_>> = headers_of(&head).take(limit).collect();
        let mut response = Object::open(out);
        // nginx's 499: the client went away before a response was written.
        response.u64(
            "status",
            match status_of(&head) {
                0 => 499,
                s => u64::from(s),
            },
        );
        log_json::push_headers(response.key("headers"), &headers);
        response.u64("size", response_size);
        response.close();
    });
    entry.field("latencies", |out| {
        let mut l = Object::open(out);
        l.u64("kong", millis(latencies.kong));
        match txn.upstream_latency {
            Some(d) => l.u64("proxy", millis(d)),
            None => l.key("proxy").extend_from_slice(b"-1"),
        }
        l.u64("request", millis(latencies.total));
        l.u64("receive", millis(latencies.receive));
        l.close();
    });
    if !txn.tries.is_empty() {
        entry.field("tries", |out| write_tries(out, txn));
    }
    let identities = &snapshot.identities;
    if let Some(c) = bufs.plugins.consumer {
        let consumer = identities.consumer(c);
        if let Some(cred) = bufs.plugins.credential {
            entry.field("authenticated_entity", |out| {
                let mut e = Object::open(out);
                json_into(e.key("id"), &identities.credential(cred).id);
                json_into(e.key("consumer_id"), &consumer.id);
                e.close();
            });
        }
        entry.field("consumer", |out| {
            out.extend_from_slice(&identities.consumer_log_row(c, crate::log_rows::consumer_row));
        });
    }
    entry.field("client_ip", |out| match txn.client_ip {
        Some(ip) => quoted(out, ip),
        None => out.extend_from_slice(b"\"\""),
    });
    entry.field("started_at", |out| log_json::push_u64(out, txn.started_at));
    entry.field("source", |out| {
        log_json::push_str(out, txn.source.name().as_bytes());
    });
    entry.field("workspace", |out| {
        log_json::push_str(out, DEFAULT_WORKSPACE_ID.as_bytes());
    });
    entry.field("workspace_name", |out| log_json::push_str(out, b"default"));
    if !trace_ids.is_empty() {
        entry.field("trace_id", |out| {
            let mut ids = Object::open(out);
            for (format, id) in trace_ids {
                quoted(ids.key(format), id);
            }
            ids.close();
        });
    }
    if let ChainRef::Route(i) = txn.chain {
        entry.field("route", |out| {
            out.extend_from_slice(&snapshot.log_rows.route(i, &snapshot.config.routes[i]));
        });
        if let Some(s) = snapshot.route_service[i] {
            entry.field("service", |out| {
                out.extend_from_slice(&snapshot.log_rows.service(s, &snapshot.config.services[s]));
            });
        }
    }
    entry.close();
    out
}

/// Kong's `balancer_data.tries`.
fn write_tries(out: &mut Vec<u8>, txn: &Transaction) {
    out.push(b'[');
    for (i, t) in txn.tries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Epoch times from the request's, plus how much later the try began.
        let since_request = txn
            .received
            .map_or(Duration::ZERO, |r| t.began.saturating_duration_since(r));
        let start_ns = u128::from(txn.started_at) * 1_000_000 + since_request.as_nanos();
        let mut attempt = Object::open(out);
        quoted(attempt.key("ip"), t.addr.ip());
        attempt.u64("port", u64::from(t.addr.port()));
        attempt.u64(
            "balancer_start",
            txn.started_at + since_request.as_millis() as u64,
        );
        attempt.u64("balancer_start_ns", start_ns as u64);
        attempt.u64("balancer_latency", t.balancer.as_millis() as u64);
        attempt.u64("balancer_latency_ns", t.balancer.as_nanos() as u64);
        // Kong notes why a try failed when it moves on to the next one.
        if i + 1 < txn.tries.len() {
            attempt.str("state", b"failed");
            attempt.u64("code", u64::from(t.status));
        }
        attempt.close();
    }
    out.push(b']');
}

/// `value`'s text as a JSON string (addresses and ids, which need no escaping).
fn quoted(out: &mut Vec<u8>, value: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "\"{value}\"");
}

/// A value serde writes (what stays a tree: the consumer, the kernel's counters).
fn json_into(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// The entry's top-level object. A value a plugin set for the log
/// (`kong.log.set_serialize_value`) stands in place of the field of that name, or after the
/// fields when none has it.
struct Entry<'a> {
    object: Object<'a>,
    values: &'a [(&'static str, String)],
    written: [&'static str; 20],
    count: usize,
}

impl<'a> Entry<'a> {
    fn new(out: &'a mut Vec<u8>, values: &'a [(&'static str, String)]) -> Self {
        Entry {
            object: Object::open(out),
            values,
            written: [""; 20],
            count: 0,
        }
    }

    fn set_value(&self, name: &str) -> Option<&'a str> {
        self.values
            .iter()
            .rfind(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn field(&mut self, name: &'static str, write: impl FnOnce(&mut Vec<u8>)) {
        if let Some(slot) = self.written.get_mut(self.count) {
            *slot = name;
            self.count += 1;
        }
        match self.set_value(name) {
            Some(value) => self.object.str(name, value.as_bytes()),
            None => write(self.object.key(name)),
        }
    }

    fn close(mut self) {
        for (i, (name, _)) in self.values.iter().enumerate() {
            let seen = self.written[..self.count].contains(name)
                || self.values[..i].iter().any(|(n, _)| n == name);
            if let (false, Some(value)) = (seen, self.set_value(name)) {
                self.object.str(name, value.as_bytes());
            }
        }
        self.object.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_request_text_is_freed_and_a_small_one_kept() {
        let mut txn = Transaction::default();
        txn.request.reserve(100_000);
        txn.shrink(16_384);
        assert_eq!(txn.request.capacity(), 0, "freed");
        txn.request.reserve(2_000);
        let kept = txn.request.capacity();
        txn.shrink(16_384);
        assert_eq!(txn.request.capacity(), kept, "a usual size is reused");
    }
}
