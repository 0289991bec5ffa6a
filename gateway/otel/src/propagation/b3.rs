//! Kong's b3 extractor: the single `b3` header (or `b3=` in `tracestate`) first, then the
//! `x-b3-*` multi headers, merged field by field.

use super::Extracted;
use super::codec::{extracted_trace_id, from_hex, is_hex, span_id};
use super::extract::{Header, Headers, Warnings, bool_header, hex_of_len};

/// Hex ids and sampling state read from one of the two b3 encodings.
#[derive(Debug, Default)]
struct Part {
    trace: Option<String>,
    span: Option<String>,
    parent: Option<String>,
    should_sample: Option<bool>,
    flags: Option<u8>,
    /// An id was malformed: Kong then ignores all ids of this encoding, not its sampling state.
    invalid: bool,
}

/// Reads both encodings. The single header wins for every field it has; the multi headers fill
/// the gaps. Never "nothing": Kong's context always carries its `reuse_span_id` flag.
pub(super) fn extract(
    header: Header<'_>,
    headers: Headers<'_>,
    warnings: &mut Warnings,
) -> Extracted {
    let single = read_single(header, headers, warnings);
    let multi = read_multi(header, warnings);

    let single_header = single.is_some();
    let mut single = single.unwrap_or_default();
    if single.invalid {
        single.trace = None;
        single.span = None;
        single.parent = None;
    }
    let (mut trace, mut span, mut parent) = (single.trace, single.span, single.parent);
    if !multi.invalid {
        trace = trace.or(multi.trace);
        span = span.or(multi.span);
        parent = parent.or(multi.parent);
    }
    // A span without its trace means nothing.
    if trace.is_none() {
        span = None;
        parent = None;
    }

    let span = span.and_then(|s| from_hex(&s)).map(|s| span_id(&s));
    Extracted {
        trace_id: trace
            .and_then(|t| from_hex(&t))
            .map(|t| extracted_trace_id(&t)),
        // b3 shares one span between client and server: the receiver may reuse this id.
        reuse_span_id: span.clone(),
        span_id: span,
        parent_id: parent.and_then(|p| from_hex(&p)).map(|p| span_id(&p)),
        should_sample: single.should_sample.or(multi.should_sample),
        flags: single.flags.or(multi.flags),
        single_header,
        ..Extracted::default()
    }
}

/// The single header, `b3: {trace}-{span}[-{sampled}[-{parent}]]` or a bare sampling state
/// (`1`, `0`, `d`). None when neither `b3` nor a `tracestate` starting with `b3=` is present.
fn read_single(header: Header<'_>, headers: Headers<'_>, warnings: &mut Warnings) -> Option<Part> {
    let value = match header("b3") {
        Some(value) => value,
        None => headers()
            .into_iter()
            .filter(|(name, _)| name == "tracestate")
            .find_map(|(_, value)| {
                value
                    .strip_prefix("b3=")
                    .filter(|rest| !rest.is_empty())
                    .map(str::to_owned)
            })?,
    };
    let mut part = Part::default();
    match value.as_str() {
        "1" => part.should_sample = Some(true),
        "0" => part.should_sample = Some(false),
        // "d" (debug) samples, like `x-b3-flags: 1`.
        "d" => {
            part.should_sample = Some(true);
            part.flags = Some(1);
        }
        _ => match match_single(&value) {
            Some((trace, span, sampled, parent))
                if matches!(trace.len(), 16 | 32) && matches!(parent.len(), 0 | 16) =>
            {
                match sampled {
                    "1" => part.should_sample = Some(true),
                    "0" => part.should_sample = Some(false),
                    "d" => {
                        part.should_sample = Some(true);
                        part.flags = Some(1);
                    }
                    _ => {}
                }
                part.trace = Some(trace.to_owned());
                part.span = Some(span.to_owned());
                part.parent = (!parent.is_empty()).then(|| parent.to_owned());
            }
            _ => {
                warnings.push("b3 single header invalid; ignoring.");
                part.invalid = true;
            }
        },
    }
    Some(part)
}

/// Kong's Lua pattern `^(%x+)%-(%x{16})%-?([01d]?)%-?(%x*)$`, including the order in which Lua
/// tries the optional pieces: the separators are optional, so e.g. a parent id starting with
/// `0`, `1` or `d` right after the span id is read as the sampling state. Returns
/// (trace, span, sampled, parent) with "" for absent pieces.
fn match_single(value: &str) -> Option<(&str, &str, &str, &str)> {
    let (trace, rest) = value.split_once('-')?;
    if !is_hex(trace) {
        return None;
    }
    let span = rest.get(..16)?;
    if !is_hex(span) {
        return None;
    }
    let tail = rest.get(16..)?;
    // Lua tries each `?` piece present first, then absent, and takes the first full match.
    for first_dash in [true, false] {
        let t1 = match (first_dash, tail.strip_prefix('-')) {
            (true, Some(t)) => t,
            (true, None) => continue,
            (false, _) => tail,
        };
        for with_sampled in [true, false] {
            if with_sampled && !matches!(t1.bytes().next(), Some(b'0' | b'1' | b'd')) {
                continue;
            }
            let (sampled, t2) = t1.split_at(usize::from(with_sampled));
            for second_dash in [true, false] {
                let parent = match (second_dash, t2.strip_prefix('-')) {
                    (true, Some(t)) => t,
                    (true, None) => continue,
                    (false, _) => t2,
                };
                if parent.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Some((trace, span, sampled, parent));
                }
            }
        }
    }
    None
}

/// The `x-b3-*` headers. `x-b3-flags: 1` (debug) forces sampling.
fn read_multi(header: Header<'_>, warnings: &mut Warnings) -> Part {
    let mut part = Part {
        should_sample: bool_header(
            header,
            "x-b3-sampled",
            "x-b3-sampled header invalid; ignoring.",
            warnings,
        ),
        ..Part::default()
    };
    match header("x-b3-flags").as_deref() {
        Some("1") => {
            part.should_sample = Some(true);
            part.flags = Some(1);
        }
        // Kong keeps an invalid value as the flags and would forward it verbatim; only the
        // debug flag is kept here.
        Some(_) => warnings.push("x-b3-flags header invalid; ignoring."),
        None => {}
    }
    let ids: [(&str, &[usize], &'static str); 3] = [
        (
            "x-b3-traceid",
            &[16, 32],
            "x-b3-traceid header invalid; ignoring.",
        ),
        (
            "x-b3-spanid",
            &[16],
            "x-b3-spanid header invalid; ignoring.",
        ),
        (
            "x-b3-parentspanid",
            &[16],
            "x-b3-parentspanid header invalid; ignoring.",
        ),
    ];
    let [trace, span, parent] = ids.map(|(name, lens, warning)| {
        let value = header(name);
        if value.as_deref().is_some_and(|v| !hex_of_len(v, lens)) {
            warnings.push(warning);
            part.invalid = true;
            return None;
        }
        value
    });
    part.trace = trace;
    part.span = span;
    part.parent = parent;
    part
}
