//! Kong 3.9's tracing-header propagation: one extractor and one injector per header format
//! (`kong/observability/tracing/propagation/{extractors,injectors}`).
//!
//! * [`extract`] reads a format's headers into an [`Extracted`] context, with Kong's validation
//!   rules and warning texts. A warning that makes Kong drop the context comes back as `Err`;
//!   warnings Kong logs while still keeping a (partial) context are logged here with `tracing`
//!   and the context is returned, so the caller stops at the same extractor Kong would.
//! * [`inject`] writes an [`InjectCtx`] as a format's headers and returns the formatted trace id
//!   Kong records in the log's `trace_id` table. Jaeger and ot baggage headers have
//!   request-dependent names, so they come from [`baggage_headers`].
//!
//! Ids are raw bytes. Kong remembers each extracted trace id's original size and lets the
//! injectors keep it where the target format allows several sizes; here the length of the trace
//! id itself carries that size: 8 bytes when the incoming header held a 64-bit id, 16 otherwise.

mod b3;
mod codec;
mod extract;
mod inject;

pub(crate) use codec::{to_hex, to_id_array, traceparent};

#[cfg(test)]
mod tests;

/// A header format, as Kong names it in `config.propagation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// W3C Trace Context: `traceparent`.
    W3c,
    /// Zipkin B3 multi-header (`x-b3-*`); its extractor also reads the single `b3` header.
    B3,
    /// Zipkin B3 single header `b3` (an injector only: extraction goes through [`Format::B3`]).
    B3Single,
    /// Jaeger `uber-trace-id` and `uberctx-*` baggage.
    Jaeger,
    /// OpenTracing `ot-tracer-*` and `ot-baggage-*` baggage.
    Ot,
    /// AWS X-Ray `x-amzn-trace-id`.
    Aws,
    /// Google Cloud `x-cloud-trace-context`.
    Gcp,
    /// Datadog `x-datadog-*` (decimal 64-bit ids).
    Datadog,
}

impl Format {
    /// Every format, in Kong's `FORMATS` order.
    pub const ALL: [Format; 8] = [
        Format::W3c,
        Format::B3,
        Format::B3Single,
        Format::Jaeger,
        Format::Ot,
        Format::Datadog,
        Format::Aws,
        Format::Gcp,
    ];

    /// Kong's name ("w3c", "b3", "b3-single", "jaeger", "ot", "aws", "gcp", "datadog").
    pub fn name(self) -> &'static str {
        match self {
            Format::W3c => "w3c",
            Format::B3 => "b3",
            Format::B3Single => "b3-single",
            Format::Jaeger => "jaeger",
            Format::Ot => "ot",
            Format::Aws => "aws",
            Format::Gcp => "gcp",
            Format::Datadog => "datadog",
        }
    }

    /// Parses Kong's name.
    pub fn parse(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// What an extractor found in the request headers (Kong's extracted ctx). Ids are raw bytes
/// (trace ids 16 bytes, or 8 where the format carries 64-bit ids: b3 64-bit, datadog; span ids 8).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extracted {
    /// The trace id: 8 bytes when the header held an id of at most 64 bits (b3/ot 16-digit
    /// ids, datadog, short jaeger ids), else 16 bytes (zero-padded, or the low 16 bytes of a
    /// longer id, as Kong resizes it).
    pub trace_id: Option<Vec<u8>>,
    /// The sender's span id, the parent of the receiver's span (w3c's `parent-id`, aws's
    /// `Parent`, datadog's `x-datadog-parent-id`, b3/jaeger/ot's span id).
    pub span_id: Option<Vec<u8>>,
    /// The sender's parent span id, for formats that share a span between both sides of the
    /// request (b3, jaeger).
    pub parent_id: Option<Vec<u8>>,
    /// Kong's `reuse_span_id` flag (b3 and jaeger let the receiver reuse the sender's span id):
    /// here the span id to reuse, so `Some` only when the format allows it and a span id came.
    pub reuse_span_id: Option<Vec<u8>>,
    /// The sender's sampling decision, when it sent one.
    pub should_sample: Option<bool>,
    /// Jaeger `uberctx-*` / ot `ot-baggage-*` items, URI-unescaped, header suffix as key.
    pub baggage: Vec<(String, String)>,
    /// B3 debug flag: `Some(1)` for `x-b3-flags: 1` or a `d` sampling state in `b3`.
    pub flags: Option<u8>,
    /// W3C trace flags byte of `traceparent`.
    pub w3c_flags: Option<u8>,
    /// The context came from the b3 single header (`b3`, or `b3=` in `tracestate`), so
    /// "preserve" injection answers with `b3-single`.
    pub single_header: bool,
}

impl Extracted {
    /// Kong's test for "the extractor found something": any field set.
    fn is_empty(&self) -> bool {
        *self == Extracted::default()
    }
}

/// Runs `format`'s extractor over the request headers. `header` returns the first value of a
/// request header by lower-case name; `headers` iterates over all (lower-case name, value)
/// pairs (jaeger `uberctx-*` and ot `ot-baggage-*` baggage need it).
/// Returns None when the format's headers are absent; returns Err(message) when they are
/// present but invalid, with Kong's log message text (Kong logs a warning and treats the
/// context as absent — the caller will do that).
///
/// `Format::B3Single` extracts like `Format::B3` (Kong has one b3 extractor). Kong's b3
/// extractor reports a context whenever any b3 header (or a `tracestate`) is present, even with
/// nothing usable in it; that stays `Ok(Some(..))` so the caller stops there as Kong does.
pub fn extract(
    format: Format,
    header: &dyn Fn(&str) -> Option<String>,
    headers: &dyn Fn() -> Vec<(String, String)>,
) -> Result<Option<Extracted>, String> {
    let found = extract::run(format, header, headers);
    match found.ctx {
        Some(ctx) => {
            for warning in &found.warnings {
                tracing::warn!(format = format.name(), "{warning}");
            }
            Ok(Some(ctx))
        }
        None => match found.warnings.split_last() {
            Some((last, earlier)) => {
                for warning in earlier {
                    tracing::warn!(format = format.name(), "{warning}");
                }
                Err((*last).to_owned())
            }
            None => Ok(None),
        },
    }
}

/// True when a request header named `name` (any case) is one some extractor reads first: a
/// request with no such header has no context to extract, which a caller can tell in one
/// pass over its headers.
pub fn is_trace_header(name: &[u8]) -> bool {
    gangway_pipeline::trace::is_trace_header(name)
}

/// The context to inject (Kong's inject ctx after the plugin's callback).
///
/// An empty `trace_id` or `span_id` stands for Kong's absent field: formats that need it fail,
/// b3 then sends the sampling decision only. The trace id's length is taken as Kong's
/// `trace_id_original_size`: pass an extracted id unchanged (8 bytes for a 64-bit incoming id)
/// so b3, jaeger and ot keep that size.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectCtx {
    /// 16 or 8 bytes; injectors pad/truncate per Kong's `trace_id_allowed_sizes`.
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    pub span_id: Vec<u8>,
    /// The span's parent, written by b3 and jaeger.
    pub parent_id: Option<Vec<u8>>,
    /// The sampling decision; None writes "not sampled" where the format needs a value.
    pub should_sample: Option<bool>,
    /// Baggage for jaeger and ot, see [`baggage_headers`].
    pub baggage: Vec<(String, String)>,
    /// B3 flags as extracted (`Some(1)`: debug); b3 writes `x-b3-flags` instead of
    /// `x-b3-sampled`, b3-single writes the `d` state.
    pub flags: Option<u8>,
    /// W3C flags as extracted; Kong's w3c injector writes only the sampled bit, so this is
    /// carried for the caller.
    pub w3c_flags: Option<u8>,
    /// The context came from a b3 single header.
    pub single_header: bool,
}

impl InjectCtx {
    /// Kong's default when a plugin has no callback: inject what was extracted.
    pub fn from_extracted(extracted: &Extracted) -> InjectCtx {
        InjectCtx {
            trace_id: extracted.trace_id.clone().unwrap_or_default(),
            span_id: extracted.span_id.clone().unwrap_or_default(),
            parent_id: extracted.parent_id.clone(),
            should_sample: extracted.should_sample,
            baggage: extracted.baggage.clone(),
            flags: extracted.flags,
            w3c_flags: extracted.w3c_flags,
            single_header: extracted.single_header,
        }
    }
}

/// Runs `format`'s injector: pushes (header name as Kong writes it, value) pairs to `out`
/// (the caller sets them on the upstream request, replacing any existing value), and returns
/// the formatted trace id Kong records for the log (`trace_id` serialize value key = the
/// format's name, e.g. ("w3c", "0af7651916cd43dd8448eb211c80319c")). Err(message) when the
/// context cannot be injected in this format (Kong's error text).
///
/// b3-single records under "b3", as Kong does. Baggage headers are not pushed here: see
/// [`baggage_headers`].
pub fn inject(
    format: Format,
    ctx: &InjectCtx,
    out: &mut Vec<(&'static str, String)>,
) -> Result<(&'static str, String), String> {
    let injected = inject::run(format, ctx)?;
    out.extend(injected.headers);
    Ok(injected.trace_id)
}

/// The baggage headers Kong's jaeger (`uberctx-<key>`) and ot (`ot-baggage-<key>`) injectors
/// add next to [`inject`]'s headers, values URI-escaped. Empty for the other formats and when
/// [`inject`] would fail for this context.
pub fn baggage_headers(format: Format, ctx: &InjectCtx) -> Vec<(String, String)> {
    inject::run(format, ctx)
        .map(|injected| injected.baggage)
        .unwrap_or_default()
}
