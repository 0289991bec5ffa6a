//! The log phase: what the proxy notes about a transaction while serving it, and the
//! `kong.log.serialize()` document built from that once the response is sent.
//!
//! Nothing here runs unless a plugin of the request's chain has a log handler. The request
//! half is captured before the exchange consumes the client's bytes; the response half
//! comes from the [`Recorded`] client stream.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::kernel_counters::KernelReading;
use super::recorder::{Recorded, headers_of, status_of};
use super::session::{ClientConn, ConnBuffers};
use crate::Snapshot;
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
    /// The `request` object, captured before the exchange consumed the client's bytes.
    request: std::cell::RefCell<Map<String, Value>>,
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
        if self.reads_entry {
            self.request
                .get_mut()
                .insert("size".into(), Value::from(bytes));
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
        let request = request_object(bufs, facts);
        *bufs.txn.request.get_mut() = request;
        // The serialized entry carries the response headers.
        client.capture_head();
    }
    client.track_status();
}

/// An entity as Kong's log entry copies it from its DAO row: unset fields are absent, not
/// null (routes and services also carry their workspace, [`crate::log_rows`]).
pub(crate) fn without_nulls(mut value: Value) -> Value {
    if let Value::Object(fields) = &mut value {
        fields.retain(|_, v| !v.is_null());
    }
    value
}

fn epoch_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Adds `value` under `key`, turning repeated keys into arrays (Kong's header and query
/// tables).
fn insert_multi(map: &mut Map<String, Value>, key: String, value: Value) {
    match map.get_mut(&key) {
        Some(Value::Array(values)) => values.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            map.insert(key, value);
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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

fn request_object(bufs: &ConnBuffers, facts: &RequestInfo<'_>) -> Map<String, Value> {
    let buf = &bufs.input[..facts.head_len];
    let head = &bufs.head;
    let edits = &bufs.plugins.headers;
    let mut headers = Map::new();
    for field in head.headers() {
        let name = field.name.get(buf);
        if !edits.removes_original(name) {
            insert_multi(
                &mut headers,
                text(name).to_ascii_lowercase(),
                Value::String(text(field.value.get(buf))),
            );
        }
    }
    for (name, value) in edits.added() {
        insert_multi(
            &mut headers,
            text(name).to_ascii_lowercase(),
            Value::String(text(value)),
        );
    }
    for secret in ["authorization", "proxy-authorization"] {
        if let Some(v) = headers.get_mut(secret) {
            *v = Value::String("REDACTED".into());
        }
    }

    let mut query = Map::new();
    let mut add_arg = |k: &str, v: Option<&str>| {
        let value = v.map_or(Value::Bool(true), |v| Value::String(v.to_string()));
        insert_multi(&mut query, k.to_string(), value);
    };
    match bufs.plugins.query.pairs() {
        Some(pairs) => pairs.iter().for_each(|(k, v)| add_arg(k, Some(v))),
        None => {
            for part in head.query(buf).unwrap_or_default().split(|&b| b == b'&') {
                if part.is_empty() {
                    continue;
                }
                // `flag` without `=` is `true`, as ngx.req.get_uri_args reads it.
                let has_value = part.contains(&b'=');
                if let Some((k, v)) = url::form_urlencoded::parse(part).next() {
                    add_arg(&k, has_value.then_some(&*v));
                }
            }
        }
    }

    let uri = text(head.target(buf));
    let host = text(crate::headers::host_without_port(
        head.host(buf).unwrap_or_default(),
    ))
    .to_ascii_lowercase();
    let scheme = if facts.conn.tls { "https" } else { "http" };
    let method = match &bufs.plugins.method {
        Some(m) => m.clone(),
        None => text(head.method(buf)),
    };

    let mut request = Map::new();
    request.insert(
        "id".into(),
        Value::String(text(facts.request_id.as_slice())),
    );
    request.insert(
        "url".into(),
        Value::String(format!("{scheme}://{host}:{}{uri}", facts.conn.local_port)),
    );
    request.insert("uri".into(), Value::String(uri));
    request.insert("querystring".into(), Value::Object(query));
    request.insert("method".into(), Value::String(method));
    request.insert("headers".into(), Value::Object(headers));
    request.insert("size".into(), Value::from(bufs.txn.request_size));
    if let Some((version, cipher)) = facts.conn.tls_names {
        // No client certificates are requested: nginx's `$ssl_client_verify` is NONE.
        request.insert(
            "tls".into(),
            json!({"version": version, "cipher": cipher, "client_verify": "NONE"}),
        );
    }
    request
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
        let response_size = facts.response_size;
        let entry = serialize(
            client,
            bufs,
            snapshot,
            &latencies,
            &trace_ids,
            kernel,
            response_size,
        );
        let mut json = serde_json::to_vec(&entry).unwrap_or_default();
        append_route_and_service(&mut json, &entry, snapshot, txn.chain);
        json
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

/// Adds the `route` and `service` objects to the entry's text (`{...}`), from the rows the
/// config keeps serialized ([`crate::log_rows`]). A log value a plugin set under either name
/// stands instead.
fn append_route_and_service(
    json: &mut Vec<u8>,
    entry: &Value,
    snapshot: &Snapshot,
    chain: ChainRef,
) {
    let ChainRef::Route(i) = chain else {
        return;
    };
    if json.last() != Some(&b'}') {
        return;
    }
    let rows = [
        (
            "route",
            Some(snapshot.log_rows.route(i, &snapshot.config.routes[i])),
        ),
        (
            "service",
            snapshot.route_service[i]
                .map(|s| snapshot.log_rows.service(s, &snapshot.config.services[s])),
        ),
    ];
    json.pop();
    for (name, row) in rows {
        if let Some(row) = row.filter(|_| entry.get(name).is_none()) {
            json.extend_from_slice(b",\"");
            json.extend_from_slice(name.as_bytes());
            json.extend_from_slice(b"\":");
            json.extend_from_slice(&row);
        }
    }
    json.push(b'}');
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

/// Kong's `kong.log.serialize()` for the transaction; `response_size` is the log facts' (the
/// bytes sent, or the kernel's count under `log_kernel_counters = sizes`).
fn serialize<S>(
    client: &Recorded<S>,
    bufs: &ConnBuffers,
    snapshot: &Snapshot,
    latencies: &Latencies,
    trace_ids: &[(&'static str, gangway_pipeline::trace::LogTraceId)],
    kernel: Option<&KernelReading>,
    response_size: u64,
) -> Value {
    let txn = &bufs.txn;
    let head = client.head();
    let mut response_headers = Map::new();
    for (name, value) in headers_of(&head) {
        insert_multi(
            &mut response_headers,
            text(name).to_ascii_lowercase(),
            Value::String(text(value)),
        );
    }
    let (total, kong_latency) = (latencies.total, latencies.kong);
    let mut entry = Map::new();
    let mut request = txn.request.take();
    if let Some(k) = kernel {
        if k.as_sizes {
            request.insert("size".into(), Value::from(k.request_bytes));
        }
        entry.insert("kernel".into(), k.log_object());
    }
    entry.insert("request".into(), Value::Object(request));
    entry.insert(
        "upstream_uri".into(),
        Value::String(txn.upstream_uri.clone()),
    );
    // nginx's `$upstream_status`: one status per try, `502, 200` after a retry.
    let upstream_status: Vec<String> = txn.tries.iter().map(|t| t.status.to_string()).collect();
    entry.insert(
        "upstream_status".into(),
        Value::String(upstream_status.join(", ")),
    );
    entry.insert(
        "response".into(),
        json!({
            // nginx's 499: the client went away before a response was written.
            "status": match status_of(&head) { 0 => 499, s => s },
            "headers": response_headers,
            "size": response_size,
        }),
    );
    entry.insert(
        "latencies".into(),
        json!({
            "kong": millis(kong_latency),
            "proxy": txn.upstream_latency.map_or(-1, |d| millis(d) as i64),
            "request": millis(total),
            "receive": millis(latencies.receive),
        }),
    );
    if !txn.tries.is_empty() {
        let tries: Vec<Value> = txn
            .tries
            .iter()
            .enumerate()
            .map(|(i, t)| {
                // Epoch times from the request's, plus how much later the try began.
                let since_request = txn
                    .received
                    .map_or(Duration::ZERO, |r| t.began.saturating_duration_since(r));
                let start_ns = u128::from(txn.started_at) * 1_000_000 + since_request.as_nanos();
                let mut attempt = json!({
                    "ip": t.addr.ip().to_string(),
                    "port": t.addr.port(),
                    "balancer_start": txn.started_at + since_request.as_millis() as u64,
                    "balancer_start_ns": start_ns as u64,
                    "balancer_latency": t.balancer.as_millis() as u64,
                    "balancer_latency_ns": t.balancer.as_nanos() as u64,
                });
                // Kong notes why a try failed when it moves on to the next one.
                if i + 1 < txn.tries.len() {
                    attempt["state"] = json!("failed");
                    attempt["code"] = json!(t.status);
                }
                attempt
            })
            .collect();
        entry.insert("tries".into(), Value::Array(tries));
    }
    let identities = &snapshot.identities;
    if let Some(c) = bufs.plugins.consumer {
        let consumer = identities.consumer(c);
        if let Some(cred) = bufs.plugins.credential {
            entry.insert(
                "authenticated_entity".into(),
                json!({
                    "id": identities.credential(cred).id,
                    "consumer_id": consumer.id,
                }),
            );
        }
        let consumer = serde_json::to_value(consumer).unwrap_or(Value::Null);
        entry.insert("consumer".into(), without_nulls(consumer));
    }
    entry.insert(
        "client_ip".into(),
        Value::String(txn.client_ip.map(|ip| ip.to_string()).unwrap_or_default()),
    );
    entry.insert("started_at".into(), Value::from(txn.started_at));
    entry.insert("source".into(), Value::String(txn.source.name().into()));
    entry.insert(
        "workspace".into(),
        Value::String(DEFAULT_WORKSPACE_ID.into()),
    );
    entry.insert("workspace_name".into(), Value::String("default".into()));
    if !trace_ids.is_empty() {
        let ids: Map<String, Value> = trace_ids
            .iter()
            .map(|(format, id)| ((*format).to_owned(), Value::String(id.to_string())))
            .collect();
        entry.insert("trace_id".into(), Value::Object(ids));
    }
    for (name, value) in &bufs.plugins.log_values {
        entry.insert((*name).into(), Value::String(value.clone()));
    }
    Value::Object(entry)
}
