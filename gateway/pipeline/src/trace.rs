//! A request's spans in Kong's shape: `kong` (the request), `kong.router`,
//! `kong.<phase>.plugin.<name>` and `kong.balancer` per upstream try, recorded when
//! `tracing_instrumentations` asks for them, for a plugin (opentelemetry) to export.
//!
//! A request is recorded only when the config has a trace exporter and the request could be
//! exported: the caller sent a trace header (its trace id and sampled flag decide later), or
//! its new trace id passes Kong's sampler at the highest rate in force. At 1% sampling, 99%
//! of requests pay one sampler check.
//!
//! Recording is plain data in a buffer the connection reuses: span ids and clock readings
//! (the TSC through `quanta` where the CPU has a stable one, a few nanoseconds each), no
//! allocation once warm, no subscriber and no lock. Whether a trace is exported is decided
//! late (the opentelemetry plugin may apply its own `sampling_rate` and the caller's sampled
//! flag in access, after the router and earlier plugins ran), so spans are recorded for every
//! request while instrumentation is on, and dropped at export when the trace is not sampled.
//! With instrumentation off (the default) every hook is one branch.
//!
//! Each recorded span is also a `tracing` span (target `kong`, level debug, the same name,
//! parent and extent), for the process's subscriber: `log_spans` writes a line as each
//! closes, and any `tracing` layer can follow requests through their phases. Below debug
//! (the default) a disabled callsite makes each of them one comparison.

use std::cell::Cell;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gangway_config::settings::{Instrumentations, Settings};

use super::chain::TraceExporters;

/// Request headers that carry a caller's trace context in one of Kong's propagation formats
/// (the headers whose presence makes an extractor run).
pub const TRACE_HEADERS: [&str; 17] = [
    "traceparent",
    "b3",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "uber-trace-id",
    "ot-tracer-sampled",
    "ot-tracer-traceid",
    "ot-tracer-spanid",
    "x-amzn-trace-id",
    "x-cloud-trace-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
];

/// Bit n set when some [`TRACE_HEADERS`] name is n bytes long: most of a request's headers
/// are ruled out by their length alone.
const TRACE_HEADER_LENGTHS: u32 = {
    let mut mask = 0u32;
    let mut i = 0;
    while i < TRACE_HEADERS.len() {
        mask |= 1 << TRACE_HEADERS[i].len();
        i += 1;
    }
    mask
};

/// True when a request header named `name` (any case) is one of [`TRACE_HEADERS`].
pub fn is_trace_header(name: &[u8]) -> bool {
    name.len() < 32
        && TRACE_HEADER_LENGTHS & (1 << name.len()) != 0
        && TRACE_HEADERS
            .iter()
            .any(|h| h.len() == name.len() && h.as_bytes().eq_ignore_ascii_case(name))
}

/// The process-wide tracing settings. Default: off, rate 0.01.
#[derive(Debug, Clone, Copy)]
pub struct Tracer {
    /// Which spans are recorded.
    pub instrumentations: Instrumentations,
    /// The sampling rate when no plugin sets one.
    pub sampling_rate: f64,
}

impl Default for Tracer {
    fn default() -> Self {
        Tracer {
            instrumentations: Instrumentations::default(),
            sampling_rate: 0.01,
        }
    }
}

impl Tracer {
    /// `tracing_instrumentations` and `tracing_sampling_rate` from the settings.
    pub fn from_settings(settings: &Settings) -> Tracer {
        Tracer {
            instrumentations: settings.tracing_instrumentations,
            sampling_rate: settings.tracing_sampling_rate.get(),
        }
    }
}

/// Kong's trace-id-based sampler: the first 8 bytes of the trace id, read as the native
/// integer Kong's FFI cast reads, against `rate` of the u64 range. Rates of 1 and 0 are
/// always and never.
pub fn sample(trace_id: &[u8; 16], rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    let mut head = [0u8; 8];
    head.copy_from_slice(&trace_id[..8]);
    (u64::from_ne_bytes(head) as f64) < rate * 2f64.powi(64)
}

/// The plugin phases that get spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginPhase {
    /// `kong.rewrite.plugin.<name>`.
    Rewrite,
    /// `kong.access.plugin.<name>`.
    Access,
    /// `kong.header_filter.plugin.<name>`.
    HeaderFilter,
    /// `kong.log.plugin.<name>` (gangway's).
    Log,
}

/// What a span covers; its [`fmt::Display`] is the span name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanName {
    /// `kong`: the whole request, head read to response sent.
    Request,
    /// `kong.router`.
    Router,
    /// A plugin handler.
    Plugin(PluginPhase, &'static str),
    /// `kong.balancer`: one upstream try, connect to response end.
    Balancer,
    /// `kong.upstream.connect` (gangway's): a new upstream connection, TLS included.
    UpstreamConnect,
    /// `kong.upstream.response` (gangway's): request sent to response head received.
    UpstreamResponse,
}

impl fmt::Display for SpanName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpanName::Request => f.write_str("kong"),
            SpanName::Router => f.write_str("kong.router"),
            SpanName::Plugin(phase, name) => {
                let phase = match phase {
                    PluginPhase::Rewrite => "rewrite",
                    PluginPhase::Access => "access",
                    PluginPhase::HeaderFilter => "header_filter",
                    PluginPhase::Log => "log",
                };
                write!(f, "kong.{phase}.plugin.{name}")
            }
            SpanName::Balancer => f.write_str("kong.balancer"),
            SpanName::UpstreamConnect => f.write_str("kong.upstream.connect"),
            SpanName::UpstreamResponse => f.write_str("kong.upstream.response"),
        }
    }
}

/// OpenTelemetry's span kinds, with its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Work inside gangway.
    Internal = 1,
    /// The request gangway serves.
    Server = 2,
    /// A call gangway makes (the upstream).
    Client = 3,
}

/// One recorded span. Times are nanoseconds since the request's head was read.
#[derive(Debug, Clone)]
pub struct Span {
    /// What it covers.
    pub name: SpanName,
    /// Its id.
    pub id: [u8; 8],
    /// Index of its parent in the trace's spans; `None` for the request span, whose parent
    /// is the caller's span when one was propagated.
    pub parent: Option<u16>,
    /// Its kind.
    pub kind: SpanKind,
    /// Start, in ns since the request began.
    pub start_ns: u64,
    /// End, in ns since the request began (spans left open end with the request).
    pub end_ns: Option<u64>,
    /// The span failed (Kong's status 2): an upstream try that did not answer.
    pub error: bool,
    /// For `kong.balancer`: the upstream address tried.
    pub peer: Option<SocketAddr>,
    /// For `kong.balancer`: which try (1-based).
    pub try_count: u16,
    /// For `kong.balancer`: the status a failed try produced.
    pub status: Option<u16>,
}

/// What Kong puts on the request span, filled by the proxy when the request begins.
#[derive(Debug, Default, Clone)]
pub struct RequestAttrs {
    /// `http.method`.
    pub method: String,
    /// `http.url`: scheme, host and the request target.
    pub url: String,
    /// `http.host`.
    pub host: String,
    /// `http.scheme`.
    pub scheme: &'static str,
    /// `http.flavor`: "1.1" or "1.0".
    pub flavor: &'static str,
    /// `http.client_ip` (after real_ip resolution).
    pub client_ip: Option<IpAddr>,
    /// `net.peer.ip`: the TCP peer.
    pub peer_ip: Option<IpAddr>,
    /// `kong.request.id`.
    pub request_id: [u8; 32],
    /// `http.status_code`, set when the response head is sent.
    pub status: u16,
    /// `http.route`: the matched route's first path, or empty.
    pub route: String,
}

/// A handle on an open span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanRef(u16);

/// Spans cap per request: a chain never has more plugin phases than this, and a runaway
/// retry loop must not grow the buffer without bound.
const MAX_SPANS: usize = 512;

/// One request's trace. Lives in the connection's [`super::RequestState`] and is reset by
/// [`RequestTrace::begin`] for each request, keeping its buffers.
#[derive(Debug, Default)]
pub struct RequestTrace {
    recording: Instrumentations,
    /// When recording began (the request span's start).
    clock: Option<quanta::Instant>,
    /// The wall clock when the request began, in ns since the epoch.
    pub start_unix_ns: u64,
    /// The trace id: a new one, or the caller's once a plugin extracted it (8-byte ids are
    /// left-padded with zeros, as Kong's OTLP encoder pads them).
    pub trace_id: [u8; 16],
    /// The caller's span, parent of the request span, when a plugin extracted one.
    pub remote_parent: Option<[u8; 8]>,
    /// Whether the trace is exported: Kong's global sampler at first, then the plugin's
    /// decision in access.
    pub sampled: bool,
    /// The global sampling rate this request began with.
    pub sampling_rate: f64,
    /// Request-span attributes.
    pub request: RequestAttrs,
    /// `trace_id` of Kong's serialized log entry: (format, id) pairs, set when a plugin
    /// injected trace headers.
    pub log_trace_ids: Vec<(&'static str, LogTraceId)>,
    /// Whether a plugin propagated this trace (and so owns `trace_id`).
    pub propagated: bool,
    spans: Vec<Span>,
    /// `spans`' `tracing` twins, index for index; a closed one is `Span::none()`.
    tracing_spans: Vec<tracing::Span>,
    reserved_balancer_id: Option<[u8; 8]>,
    open_balancer: Option<u16>,
}

/// A trace id as a log entry's `trace_id` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTraceId {
    /// A 16-byte id, written in hex only when a log plugin serializes the entry.
    Hex([u8; 16]),
    /// An id in its format's own text (aws, datadog, a 64-bit b3 id, ...).
    Text(String),
}

impl std::fmt::Display for LogTraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTraceId::Hex(id) => Hex(id).fmt(f),
            LogTraceId::Text(text) => f.write_str(text),
        }
    }
}

/// How long a thread trusts its wall-clock anchor before reading the wall clock again (so
/// clock steps and drift show within a second).
const ANCHOR_TTL: Duration = Duration::from_secs(1);

thread_local! {
    static ANCHOR: Cell<Option<(quanta::Instant, u64)>> = const { Cell::new(None) };
}

/// The wall-clock time of `now`, in ns since the epoch: the thread's anchor plus the
/// monotonic time since it, so a request pays a TSC read rather than a wall-clock read.
fn unix_ns_at(now: quanta::Instant) -> u64 {
    ANCHOR.with(|anchor| match anchor.get() {
        Some((at, unix)) if now.duration_since(at) < ANCHOR_TTL => {
            unix + now.duration_since(at).as_nanos() as u64
        }
        _ => {
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            anchor.set(Some((now, unix)));
            unix
        }
    })
}

fn span_id() -> [u8; 8] {
    // Zero is OpenTelemetry's invalid id.
    fastrand::u64(1..).to_be_bytes()
}

/// A new random trace id (never all zeros).
pub fn new_trace_id() -> [u8; 16] {
    // Not `u128(1..)`: a ranged draw divides 128-bit integers, a library call per request.
    let id = fastrand::u128(..);
    id.max(1).to_be_bytes()
}

impl RequestTrace {
    /// Starts the trace of a request whose head was just read, for a config with
    /// `exporters`; `traced` says whether the request carries a trace header
    /// ([`is_trace_header`]). With `tracer` off, or no exporter, this is all a request pays.
    pub fn begin(
        &mut self,
        tracer: &Tracer,
        exporters: TraceExporters,
        traced: impl FnOnce() -> bool,
    ) {
        self.propagated = false;
        self.remote_parent = None;
        self.log_trace_ids.clear();
        self.sampled = false;
        self.recording = Instrumentations::default();
        // The last request's spans must not leak into this one's ids (spans own nothing,
        // so this is a length reset).
        self.spans.clear();
        self.tracing_spans.clear();
        if tracer.instrumentations.is_off() || !exporters.any {
            return;
        }
        self.trace_id = new_trace_id();
        self.sampling_rate = tracer.sampling_rate;
        let widest = exporters
            .max_sampling_rate
            .map_or(tracer.sampling_rate, |r| r.max(tracer.sampling_rate));
        // Kong's sampler lets a trace id through at a lower rate only if it does at a higher
        // one, so a request that fails at the widest rate, with no caller context to change
        // its trace id, can never be exported.
        if !sample(&self.trace_id, widest) && !traced() {
            return;
        }
        self.recording = tracer.instrumentations;
        let now = quanta::Instant::now();
        self.clock = Some(now);
        self.start_unix_ns = unix_ns_at(now);
        self.sampled = sample(&self.trace_id, tracer.sampling_rate);
        self.reserved_balancer_id = None;
        self.open_balancer = None;
        self.request.status = 0;
        self.request.route.clear();
        let id = span_id();
        self.tracing_spans.push(tracing::debug_span!(
            target: "kong",
            "kong",
            span_id = %Hex(&id),
            parent_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            kong.request.id = tracing::field::Empty,
            http.status_code = tracing::field::Empty,
            http.route = tracing::field::Empty,
        ));
        self.spans.push(Span {
            name: SpanName::Request,
            id,
            parent: None,
            kind: SpanKind::Server,
            start_ns: 0,
            end_ns: None,
            error: false,
            peer: None,
            try_count: 0,
            status: None,
        });
    }

    /// True when spans are recorded for this request (instrumentation is on).
    pub fn is_recording(&self) -> bool {
        !self.recording.is_off()
    }

    /// True when `what` is among the recorded sources.
    pub fn records(&self, what: Instrumentations) -> bool {
        self.recording.has(what)
    }

    /// The recorded spans; the first is the request span.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// Nanoseconds since the request began.
    pub fn now_ns(&self) -> u64 {
        self.clock.map_or(0, |at| at.elapsed().as_nanos() as u64)
    }

    /// The request span's id, once recording; `None` otherwise.
    pub fn request_span_id(&self) -> Option<[u8; 8]> {
        self.spans
            .first()
            .filter(|_| self.is_recording())
            .map(|s| s.id)
    }

    /// Opens a span of source `what` under the request span (under the open balancer span
    /// for the upstream's connect and response). `None` when `what` is not recorded.
    pub fn open(&mut self, what: Instrumentations, name: SpanName) -> Option<SpanRef> {
        if !self.records(what) || self.spans.len() >= MAX_SPANS {
            return None;
        }
        let (parent, kind) = match name {
            SpanName::Balancer => (Some(0), SpanKind::Client),
            SpanName::UpstreamConnect | SpanName::UpstreamResponse => {
                (Some(self.open_balancer.unwrap_or(0)), SpanKind::Internal)
            }
            _ => (Some(0), SpanKind::Internal),
        };
        let index = self.spans.len() as u16;
        let start_ns = self.now_ns();
        // The first try takes the balancer id already sent upstream, so the spans under it
        // name their parent right from the start (a retry swaps ids at the end).
        let id = match (name, self.reserved_balancer_id) {
            (SpanName::Balancer, Some(reserved))
                if self.open_balancer.is_none()
                    && !self.spans.iter().any(|s| s.name == SpanName::Balancer) =>
            {
                reserved
            }
            _ => span_id(),
        };
        let twin = parent
            .and_then(|p| {
                let p = usize::from(p);
                Some((self.tracing_spans.get(p)?, &self.spans.get(p)?.id))
            })
            .map_or_else(tracing::Span::none, |(parent, parent_id)| {
                tracing_twin(parent, parent_id, name, &id)
            });
        self.tracing_spans.push(twin);
        self.spans.push(Span {
            name,
            id,
            parent,
            kind,
            start_ns,
            end_ns: None,
            error: false,
            peer: None,
            try_count: 0,
            status: None,
        });
        if name == SpanName::Balancer {
            self.open_balancer = Some(index);
        }
        Some(SpanRef(index))
    }

    /// Closes an open span now.
    pub fn close(&mut self, span: Option<SpanRef>) {
        if let Some(SpanRef(i)) = span {
            let now = self.now_ns();
            if let Some(s) = self.spans.get_mut(usize::from(i)) {
                s.end_ns = Some(now);
            }
            if let Some(twin) = self.tracing_spans.get_mut(usize::from(i)) {
                // Dropping the last handle closes a `tracing` span.
                *twin = tracing::Span::none();
            }
        }
    }

    /// Forgets a span opened last that turned out not to happen (a pooled connection needed
    /// no connect).
    pub fn discard(&mut self, span: Option<SpanRef>) {
        if let Some(SpanRef(i)) = span {
            if usize::from(i) + 1 == self.spans.len() {
                self.spans.pop();
                self.tracing_spans.pop();
            }
        }
    }

    /// Opens the `kong.balancer` span of upstream try `try_count` to `peer`.
    pub fn open_balancer(&mut self, try_count: u16, peer: SocketAddr) -> Option<SpanRef> {
        let span = self.open(Instrumentations::BALANCER, SpanName::Balancer)?;
        let s = &mut self.spans[usize::from(span.0)];
        s.try_count = try_count;
        s.peer = Some(peer);
        if let Some(twin) = self.tracing_spans.get(usize::from(span.0)) {
            twin.record("try_count", try_count);
            twin.record("net.peer", tracing::field::display(peer));
        }
        Some(span)
    }

    /// Ends a failed try's balancer span now, with the status the failure maps to.
    pub fn fail_balancer(&mut self, span: Option<SpanRef>, status: u16) {
        if let Some(SpanRef(i)) = span {
            if let Some(s) = self.spans.get_mut(usize::from(i)) {
                s.error = true;
                s.status = Some(status);
            }
            if let Some(twin) = self.tracing_spans.get(usize::from(i)) {
                twin.record("error", true);
                twin.record("http.status_code", status);
            }
            self.close(span);
            self.open_balancer = None;
        }
    }

    /// The span id to send upstream as the parent: the last balancer span's when balancer
    /// spans are recorded (reserved now, given to that span when the request ends, as Kong
    /// pre-creates it), else the request span's. `None` when not recording.
    pub fn upstream_parent_id(&mut self) -> Option<[u8; 8]> {
        if self.records(Instrumentations::BALANCER) {
            return Some(*self.reserved_balancer_id.get_or_insert_with(span_id));
        }
        self.request_span_id()
    }

    /// Ends the request span (and any span still open) now, with the response's status and
    /// the matched route's first path.
    pub fn finish_request(&mut self, status: u16, route_path: Option<&str>) {
        if !self.is_recording() {
            return;
        }
        let now = self.now_ns();
        self.request.status = status;
        self.request.route.clear();
        self.request.route.push_str(route_path.unwrap_or(""));
        for span in &mut self.spans {
            span.end_ns.get_or_insert(now);
        }
        if let Some(reserved) = self.reserved_balancer_id.take() {
            // The last try gets the id sent upstream; the first, which took it, gets the
            // last's own.
            let last = self
                .spans
                .iter()
                .rposition(|s| s.name == SpanName::Balancer);
            if let Some(last) = last.filter(|&l| self.spans[l].id != reserved) {
                let own = self.spans[last].id;
                if let Some(first) = self.spans.iter_mut().find(|s| s.id == reserved) {
                    first.id = own;
                }
                self.spans[last].id = reserved;
                if let Some(twin) = self.tracing_spans.get(last) {
                    twin.record("span_id", tracing::field::display(Hex(&reserved)));
                }
            }
        }
        if let Some(root) = self.tracing_spans.first() {
            root.record("trace_id", tracing::field::display(Hex(&self.trace_id)));
            if let Some(caller) = &self.remote_parent {
                root.record("parent_id", tracing::field::display(Hex(caller)));
            }
            root.record(
                "kong.request.id",
                std::str::from_utf8(&self.request.request_id).unwrap_or_default(),
            );
            root.record("http.status_code", status);
            root.record("http.route", self.request.route.as_str());
        }
        // The request's `tracing` span stays open for the log phase's spans
        // ([`RequestTrace::end_log_phase`]); any other still open closes now, children first.
        while self.tracing_spans.len() > 1 {
            self.tracing_spans.pop();
        }
    }

    /// After the log phase: the request's `tracing` span closes.
    pub fn end_log_phase(&mut self) {
        self.tracing_spans.clear();
    }

    /// The spans as one line, name and duration each (Kong's debug log of collected spans).
    pub fn summary(&self) -> impl fmt::Display + '_ {
        Summary(self)
    }

    /// A copy of the finished trace's data, for an exporter to encode off the worker.
    pub fn finished(&self) -> FinishedTrace {
        FinishedTrace {
            trace_id: self.trace_id,
            remote_parent: self.remote_parent,
            start_unix_ns: self.start_unix_ns,
            request: self.request.clone(),
            spans: self.spans.clone(),
        }
    }
}

/// A finished request's trace as plain owned data ([`RequestTrace::finished`]).
#[derive(Debug, Clone)]
pub struct FinishedTrace {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// The caller's span, parent of the request span.
    pub remote_parent: Option<[u8; 8]>,
    /// When the request began, in ns since the epoch.
    pub start_unix_ns: u64,
    /// Request-span attributes.
    pub request: RequestAttrs,
    /// The spans; the first is the request span.
    pub spans: Vec<Span>,
}

impl FinishedTrace {
    /// `start_unix_ns` plus an offset: a span time on the wall clock.
    pub fn unix_ns(&self, offset_ns: u64) -> u64 {
        self.start_unix_ns + offset_ns
    }

    /// About how many bytes it holds.
    pub fn size(&self) -> usize {
        let r = &self.request;
        std::mem::size_of::<FinishedTrace>()
            + self.spans.len() * std::mem::size_of::<Span>()
            + r.method.len()
            + r.url.len()
            + r.host.len()
            + r.route.len()
    }
}

/// Bytes as lowercase hex: ids in log entries and in `tracing` fields.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The `tracing` span for a recorded span named `name` under `parent`. Plugin spans share a
/// callsite per phase (`tracing` names are static) and carry the plugin in `plugin`; the
/// Kong name is in `otel.name`, which OpenTelemetry layers use as the span's name.
fn tracing_twin(
    parent: &tracing::Span,
    parent_id: &[u8; 8],
    name: SpanName,
    id: &[u8; 8],
) -> tracing::Span {
    use tracing::debug_span;
    let (id, parent_id) = (Hex(id), Hex(parent_id));
    match name {
        SpanName::Request => tracing::Span::none(),
        SpanName::Router => {
            debug_span!(target: "kong", parent: parent, "kong.router", span_id = %id, parent_id = %parent_id)
        }
        SpanName::Plugin(phase, plugin) => {
            let otel_name = name;
            match phase {
                PluginPhase::Rewrite => {
                    debug_span!(target: "kong", parent: parent, "kong.rewrite.plugin", span_id = %id, parent_id = %parent_id, plugin, otel.name = %otel_name)
                }
                PluginPhase::Access => {
                    debug_span!(target: "kong", parent: parent, "kong.access.plugin", span_id = %id, parent_id = %parent_id, plugin, otel.name = %otel_name)
                }
                PluginPhase::HeaderFilter => {
                    debug_span!(target: "kong", parent: parent, "kong.header_filter.plugin", span_id = %id, parent_id = %parent_id, plugin, otel.name = %otel_name)
                }
                PluginPhase::Log => {
                    debug_span!(target: "kong", parent: parent, "kong.log.plugin", span_id = %id, parent_id = %parent_id, plugin, otel.name = %otel_name)
                }
            }
        }
        SpanName::Balancer => debug_span!(
            target: "kong",
            parent: parent,
            "kong.balancer",
            span_id = %id,
            parent_id = %parent_id,
            try_count = tracing::field::Empty,
            net.peer = tracing::field::Empty,
            error = tracing::field::Empty,
            http.status_code = tracing::field::Empty,
        ),
        SpanName::UpstreamConnect => {
            debug_span!(target: "kong", parent: parent, "kong.upstream.connect", span_id = %id, parent_id = %parent_id)
        }
        SpanName::UpstreamResponse => {
            debug_span!(target: "kong", parent: parent, "kong.upstream.response", span_id = %id, parent_id = %parent_id)
        }
    }
}

struct Summary<'a>(&'a RequestTrace);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, span) in self.0.spans.iter().enumerate() {
            let took = span.end_ns.unwrap_or(span.start_ns) - span.start_ns;
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} {:.3}ms", span.name, took as f64 / 1e6)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORTING: TraceExporters = TraceExporters {
        any: true,
        max_sampling_rate: None,
    };

    #[test]
    fn only_requests_an_exporter_could_sample_are_recorded() {
        let mut t = RequestTrace::default();
        let none = TraceExporters::default();
        t.begin(&tracer("all", 1.0), none, || true);
        assert!(!t.is_recording(), "no exporter in the config");
        t.begin(&tracer("all", 1.0), EXPORTING, || false);
        assert!(t.is_recording() && t.request_span_id().is_some());
        t.begin(&tracer("all", 0.0), EXPORTING, || false);
        assert!(!t.is_recording(), "rate 0 and no caller context");
        assert_eq!(t.request_span_id(), None);
        assert!(t.spans().is_empty(), "nothing left of an earlier request");
        t.begin(&tracer("all", 0.0), EXPORTING, || true);
        assert!(
            t.is_recording(),
            "a caller's context may carry a sampled trace id"
        );
        let plugin_rate = TraceExporters {
            any: true,
            max_sampling_rate: Some(1.0),
        };
        t.begin(&tracer("all", 0.0), plugin_rate, || false);
        assert!(
            t.is_recording(),
            "a plugin's own rate widens the global one"
        );
        assert!(
            !t.sampled,
            "the global rate still decides until the plugin runs"
        );
        let recorded = (0..10_000)
            .filter(|_| {
                t.begin(&tracer("all", 0.05), EXPORTING, || false);
                t.is_recording()
            })
            .count();
        assert!(
            (300..700).contains(&recorded),
            "{recorded} of 10000 at 0.05"
        );
        assert!(is_trace_header(b"TraceParent") && !is_trace_header(b"host"));
        for name in TRACE_HEADERS {
            assert!(
                is_trace_header(name.to_ascii_uppercase().as_bytes()),
                "{name}"
            );
            assert!(!is_trace_header(format!("{name}x").as_bytes()), "{name}x");
        }
        assert!(!is_trace_header(&[b'x'; 64]));
    }

    fn tracer(list: &str, rate: f64) -> Tracer {
        Tracer {
            instrumentations: Instrumentations::parse(list).expect("valid list"),
            sampling_rate: rate,
        }
    }

    #[test]
    fn off_records_nothing() {
        let mut t = RequestTrace::default();
        t.begin(&Tracer::default(), EXPORTING, || false);
        assert!(!t.is_recording());
        assert!(t.open(Instrumentations::ROUTER, SpanName::Router).is_none());
        assert!(t.spans().is_empty());
        assert_eq!(t.upstream_parent_id(), None);
    }

    #[test]
    fn spans_nest_under_the_request_and_the_balancer() {
        let mut t = RequestTrace::default();
        t.begin(&tracer("all", 1.0), EXPORTING, || false);
        assert!(t.sampled);
        let router = t.open(Instrumentations::ROUTER, SpanName::Router);
        t.close(router);
        let peer: SocketAddr = "127.0.0.1:80".parse().expect("addr");
        let first = t.open_balancer(1, peer);
        t.fail_balancer(first, 502);
        let second = t.open_balancer(2, peer);
        let connect = t.open(Instrumentations::BALANCER, SpanName::UpstreamConnect);
        t.close(connect);
        let injected = t.upstream_parent_id().expect("recording");
        t.finish_request(200, Some("/x"));
        let spans = t.spans();
        let names: Vec<String> = spans.iter().map(|s| s.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "kong",
                "kong.router",
                "kong.balancer",
                "kong.balancer",
                "kong.upstream.connect"
            ]
        );
        assert_eq!(spans[1].parent, Some(0));
        assert!(spans[2].error && spans[2].status == Some(502));
        assert_eq!(spans[4].parent, second.map(|s| s.0));
        // The id sent upstream is the last try's.
        assert_eq!(spans[3].id, injected);
        assert!(spans.iter().all(|s| s.end_ns.is_some()));
        assert_eq!(t.request.route, "/x");
        let summary = t.summary().to_string();
        assert!(summary.starts_with("kong "), "{summary}");
        assert!(summary.contains(", kong.router "), "{summary}");
    }

    #[test]
    fn only_the_listed_sources_are_recorded() {
        let mut t = RequestTrace::default();
        t.begin(&tracer("request,router", 1.0), EXPORTING, || false);
        assert!(t.open(Instrumentations::ROUTER, SpanName::Router).is_some());
        assert!(
            t.open(
                Instrumentations::PLUGIN_ACCESS,
                SpanName::Plugin(PluginPhase::Access, "acl")
            )
            .is_none()
        );
        // Without balancer spans, the request span is the upstream's parent.
        assert_eq!(t.upstream_parent_id(), t.request_span_id());
    }

    #[test]
    fn the_sampler_follows_kongs_bound() {
        let low = [0u8; 16];
        let high = [0xffu8; 16];
        assert!(sample(&low, 0.5));
        assert!(!sample(&high, 0.5));
        assert!(sample(&high, 1.0));
        assert!(!sample(&low, 0.0));
        let hits = (0..10_000).filter(|_| sample(&new_trace_id(), 0.1)).count();
        assert!((700..1300).contains(&hits), "{hits} of 10000 at 0.1");
    }

    #[test]
    fn span_names_are_kongs() {
        assert_eq!(
            SpanName::Plugin(PluginPhase::HeaderFilter, "cors").to_string(),
            "kong.header_filter.plugin.cors"
        );
        assert_eq!(SpanName::Request.to_string(), "kong");
    }
}
