//! The extractors for every format but b3 (in `b3.rs`), and the dispatch shared by all.
//!
//! Each extractor returns Kong's `get_context` result (None for Kong's `nil`) and pushes the
//! warnings Kong would log, in order; [`super::extract`] turns that into the public result.

use std::collections::HashSet;

use super::codec::{
    self, extracted_trace_id, extracted_trace_id_sized, from_dec, from_hex, is_dec, is_hex,
    is_lua_space, is_zero, span_id,
};
use super::{Extracted, Format};

/// A request-header lookup by lower-case name (first value).
pub(super) type Header<'a> = &'a dyn Fn(&str) -> Option<String>;
/// All request headers as (lower-case name, value) pairs.
pub(super) type Headers<'a> = &'a dyn Fn() -> Vec<(String, String)>;
/// Warnings Kong logs while extracting, in order.
pub(super) type Warnings = Vec<&'static str>;

/// One extractor run: the context Kong would hand on (None when it returns nothing or an empty
/// table) and the warnings it logged.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub(super) ctx: Option<Extracted>,
    pub(super) warnings: Warnings,
}

/// The headers whose presence makes Kong run a format's extractor (`headers_validate.any`).
fn trigger_headers(format: Format) -> &'static [&'static str] {
    match format {
        Format::W3c => &["traceparent"],
        Format::B3 | Format::B3Single => &[
            "b3",
            "tracestate",
            "x-b3-traceid",
            "x-b3-spanid",
            "x-b3-parentspanid",
            "x-b3-sampled",
            "x-b3-flags",
        ],
        Format::Jaeger => &["uber-trace-id"],
        Format::Ot => &["ot-tracer-sampled", "ot-tracer-traceid", "ot-tracer-spanid"],
        Format::Aws => &["x-amzn-trace-id"],
        Format::Gcp => &["x-cloud-trace-context"],
        Format::Datadog => &[
            "x-datadog-trace-id",
            "x-datadog-parent-id",
            "x-datadog-sampling-priority",
        ],
    }
}

/// The core's list of trace headers ([`super::is_trace_header`]) holds every extractor's.
#[cfg(test)]
pub(super) fn triggers(format: Format) -> &'static [&'static str] {
    trigger_headers(format)
}

/// Runs `format`'s extractor if any of its headers is present.
pub(super) fn run(format: Format, header: Header<'_>, headers: Headers<'_>) -> Found {
    if !trigger_headers(format).iter().any(|h| header(h).is_some()) {
        return Found::default();
    }
    let mut warnings = Vec::new();
    let ctx = match format {
        Format::W3c => w3c(header, &mut warnings),
        // Kong's b3 context always carries `reuse_span_id = true`, so it is never "empty":
        // it is reported even when nothing usable came.
        Format::B3 | Format::B3Single => {
            let ctx = super::b3::extract(header, headers, &mut warnings);
            return Found {
                ctx: Some(ctx),
                warnings,
            };
        }
        Format::Jaeger => jaeger(header, headers, &mut warnings),
        Format::Ot => ot(header, headers, &mut warnings),
        Format::Aws => aws(header, &mut warnings),
        Format::Gcp => gcp(header, &mut warnings),
        Format::Datadog => datadog(header, &mut warnings),
    };
    Found {
        ctx: ctx.filter(|ctx| !ctx.is_empty()),
        warnings,
    }
}

/// Logs `warning` and gives up on the context, Kong's `kong.log.warn(..); return`.
fn reject(warnings: &mut Warnings, warning: &'static str) -> Option<Extracted> {
    warnings.push(warning);
    None
}

/// `traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
fn w3c(header: Header<'_>, warnings: &mut Warnings) -> Option<Extracted> {
    let value = header("traceparent").filter(|v| !v.is_empty())?;
    let parts: Vec<&str> = value.split('-').collect();
    let [version, trace, parent, flags] = parts.as_slice() else {
        return reject(warnings, "invalid W3C traceparent header; ignoring.");
    };
    if !parts.iter().all(|p| is_hex(p)) {
        return reject(warnings, "invalid W3C traceparent header; ignoring.");
    }
    if *version != "00" {
        return reject(warnings, "invalid W3C Trace Context version; ignoring.");
    }
    if trace.len() != 32 || is_zero(trace) {
        return reject(warnings, "invalid W3C trace context trace ID; ignoring.");
    }
    if parent.len() != 16 || is_zero(parent) {
        return reject(warnings, "invalid W3C trace context parent ID; ignoring.");
    }
    let Some(flags) = (flags.len() == 2)
        .then(|| u8::from_str_radix(flags, 16).ok())
        .flatten()
    else {
        return reject(warnings, "invalid W3C trace context flags; ignoring.");
    };
    Some(Extracted {
        trace_id: Some(extracted_trace_id(&from_hex(trace)?)),
        // w3c's parent-id is the caller's span, the receiver's parent: Kong's span_id.
        span_id: Some(span_id(&from_hex(parent)?)),
        should_sample: Some(flags & 1 == 1),
        w3c_flags: Some(flags),
        ..Extracted::default()
    })
}

/// `uber-trace-id: <trace>:<span>:<parent>:<flags>`, hex without fixed widths.
fn jaeger(header: Header<'_>, headers: Headers<'_>, warnings: &mut Warnings) -> Option<Extracted> {
    let value = header("uber-trace-id").filter(|v| !v.is_empty())?;
    let parts: Vec<&str> = value.split(':').collect();
    let [trace, span, parent, flags] = parts.as_slice() else {
        return reject(warnings, "invalid jaeger uber-trace-id header; ignoring.");
    };
    if !parts.iter().all(|p| is_hex(p)) {
        return reject(warnings, "invalid jaeger uber-trace-id header; ignoring.");
    }
    if trace.len() > 32 || is_zero(trace) {
        return reject(warnings, "invalid jaeger trace ID; ignoring.");
    }
    // Jaeger allows a malformed parent to be ignored; Kong only logs it and still keeps it.
    if parent.len() != 16 && !is_zero(parent) {
        warnings.push("invalid jaeger parent ID; ignoring.");
    }
    if span.len() > 16 || is_zero(span) {
        return reject(warnings, "invalid jaeger span ID; ignoring.");
    }
    let Some(flags) = matches!(flags.len(), 1 | 2)
        .then(|| u8::from_str_radix(flags, 16).ok())
        .flatten()
    else {
        return reject(warnings, "invalid jaeger flags; ignoring.");
    };
    let span = span_id(&from_hex(span)?);
    Some(Extracted {
        trace_id: Some(extracted_trace_id(&from_hex(trace)?)),
        span_id: Some(span.clone()),
        parent_id: Some(span_id(&from_hex(parent)?)),
        reuse_span_id: Some(span),
        should_sample: Some(flags % 2 == 1),
        baggage: baggage(headers, "uberctx-"),
        ..Extracted::default()
    })
}

/// `ot-tracer-traceid` (16 or 32 hex), `ot-tracer-spanid` (16 hex), `ot-tracer-sampled`.
fn ot(header: Header<'_>, headers: Headers<'_>, warnings: &mut Warnings) -> Option<Extracted> {
    let should_sample = bool_header(
        header,
        "ot-tracer-sampled",
        "ot-tracer-sampled header invalid; ignoring.",
        warnings,
    );
    let mut invalid = false;
    let trace = header("ot-tracer-traceid");
    if trace.as_deref().is_some_and(|t| !hex_of_len(t, &[16, 32])) {
        warnings.push("ot-tracer-traceid header invalid; ignoring.");
        invalid = true;
    }
    let span = header("ot-tracer-spanid");
    if span.as_deref().is_some_and(|s| !hex_of_len(s, &[16])) {
        warnings.push("ot-tracer-spanid header invalid; ignoring.");
        invalid = true;
    }
    let (trace, span) = match trace {
        Some(trace) if !invalid => (Some(trace), span),
        _ => (None, None),
    };
    Some(Extracted {
        trace_id: trace
            .and_then(|t| from_hex(&t))
            .map(|t| extracted_trace_id(&t)),
        span_id: span.and_then(|s| from_hex(&s)).map(|s| span_id(&s)),
        should_sample,
        baggage: baggage(headers, "ot-baggage-"),
        ..Extracted::default()
    })
}

/// `x-amzn-trace-id: Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=<0|1>`, keys in any order,
/// unknown keys ignored.
fn aws(header: Header<'_>, warnings: &mut Warnings) -> Option<Extracted> {
    let value = header("x-amzn-trace-id")?;
    let mut ctx = Extracted::default();
    for pair in value.split(';') {
        let mut kv = pair.split('=');
        let key = kv.next().unwrap_or_default().trim_matches(is_lua_space);
        let val = kv.next().unwrap_or_default().trim_matches(is_lua_space);
        match key {
            "Root" => {
                let parts: Vec<&str> = val.split('-').collect();
                let valid = val.len() == 35
                    && matches!(parts.as_slice(), ["1", ts, uid]
                        if ts.len() == 8 && uid.len() == 24 && is_hex(ts) && is_hex(uid));
                if !valid {
                    return reject(warnings, "invalid aws header trace id; ignoring.");
                }
                // The X-Ray id is version-timestamp-unique; timestamp and unique part together
                // are the 128-bit trace id.
                let hex: String = parts.get(1..).unwrap_or_default().concat();
                ctx.trace_id = Some(extracted_trace_id(&from_hex(&hex)?));
            }
            "Parent" => {
                // Kong checks only the length; a non-hex parent would pass through its
                // `from_hex` as raw text, so it is rejected here instead.
                if val.len() != 16 || !is_hex(val) {
                    return reject(warnings, "invalid aws header parent id; ignoring.");
                }
                ctx.span_id = Some(span_id(&from_hex(val)?));
            }
            "Sampled" => match val {
                "0" => ctx.should_sample = Some(false),
                "1" => ctx.should_sample = Some(true),
                _ => return reject(warnings, "invalid aws header sampled flag; ignoring."),
            },
            _ => {}
        }
    }
    Some(ctx)
}

/// `x-cloud-trace-context: <32 lower hex>/<decimal span id, 1-20 digits>[;o=<digit>]`.
fn gcp(header: Header<'_>, warnings: &mut Warnings) -> Option<Extracted> {
    let value = header("x-cloud-trace-context")?;
    let Some((trace, span, flag)) = parse_gcp(&value) else {
        return reject(warnings, "invalid GCP header; ignoring.");
    };
    let span = from_dec(span)?;
    Some(Extracted {
        trace_id: Some(extracted_trace_id(&from_hex(trace)?)),
        // Twenty digits can exceed 64 bits; Kong keeps the low 8 bytes.
        span_id: Some((span.low as u64).to_be_bytes().to_vec()),
        should_sample: Some(flag == Some('1')),
        ..Extracted::default()
    })
}

/// Matches Kong's `^([0-9a-f]{32})/([0-9]{1,20})(;o=([0-9]))?$`.
fn parse_gcp(value: &str) -> Option<(&str, &str, Option<char>)> {
    let trace = value.get(..32)?;
    let rest = value.get(32..)?.strip_prefix('/')?;
    if !trace
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if !(1..=20).contains(&digits) {
        return None;
    }
    let (span, tail) = rest.split_at(digits);
    if tail.is_empty() {
        return Some((trace, span, None));
    }
    let flag = tail.strip_prefix(";o=")?;
    let mut chars = flag.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() => Some((trace, span, Some(c))),
        _ => None,
    }
}

/// `x-datadog-trace-id` / `x-datadog-parent-id` (decimal) and `x-datadog-sampling-priority`.
fn datadog(header: Header<'_>, warnings: &mut Warnings) -> Option<Extracted> {
    let should_sample = match header("x-datadog-sampling-priority").as_deref() {
        Some("1" | "2") => Some(true),
        Some("0" | "-1") => Some(false),
        Some(_) => {
            return reject(
                warnings,
                "x-datadog-sampling-priority header invalid; ignoring.",
            );
        }
        None => None,
    };
    let trace = header("x-datadog-trace-id").and_then(|t| {
        let id = decimal_id(&t);
        if id.is_none() {
            warnings.push("x-datadog-trace-id header invalid; ignoring.");
        }
        id
    });
    let parent = header("x-datadog-parent-id").and_then(|p| {
        let id = decimal_id(&p);
        if id.is_none() {
            warnings.push("x-datadog-parent-id header invalid; ignoring.");
        }
        id
    });
    let parent = parent.filter(|_| trace.is_some());
    Some(Extracted {
        trace_id: trace.map(|t| extracted_trace_id_sized(&t.low.to_be_bytes(), t.bytes)),
        // datadog's parent id is the caller's span: Kong's span_id.
        span_id: parent.map(|p| (p.low as u64).to_be_bytes().to_vec()),
        should_sample,
        ..Extracted::default()
    })
}

/// Kong's `^%s*(%d+)%s*$`, any number of digits.
fn decimal_id(value: &str) -> Option<codec::Decimal> {
    let digits = value.trim_matches(is_lua_space);
    if is_dec(digits) {
        from_dec(digits)
    } else {
        None
    }
}

/// Whether `value` is hex of one of the `lens` (Kong's length check plus `%X` test).
pub(super) fn hex_of_len(value: &str, lens: &[usize]) -> bool {
    lens.contains(&value.len()) && is_hex(value)
}

/// A `1`/`true`/`0`/`false` sampling header (b3 multi, ot); anything else is logged and
/// ignored.
pub(super) fn bool_header(
    header: Header<'_>,
    name: &str,
    warning: &'static str,
    warnings: &mut Warnings,
) -> Option<bool> {
    match header(name).as_deref() {
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        Some(_) => {
            warnings.push(warning);
            None
        }
        None => None,
    }
}

/// Baggage from every `<prefix><key>` header, URI-unescaped; a repeated key keeps its first
/// value, like the single-value header lookup.
fn baggage(headers: Headers<'_>, prefix: &str) -> Vec<(String, String)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (name, value) in headers() {
        if let Some(key) = name.strip_prefix(prefix)
            && seen.insert(key.to_owned())
        {
            out.push((key.to_owned(), codec::unescape_uri(&value)));
        }
    }
    out
}
