//! Unit tests for Kong's header propagation.
//!
//! Expected values come from Kong 3.9.3's
//! `spec/01-unit/26-observability/02-propagation_strategies_spec.lua` (its ids and cases are
//! transcribed in the per-format files); cases it lacks come from reading the extractors and
//! injectors under `kong/observability/tracing/propagation/`, and say so.

mod aws_gcp_datadog;
mod b3;
mod jaeger_ot;
mod w3c;

use super::codec::{self, from_hex};
use super::extract::{Found, run};
use super::{Extracted, Format, InjectCtx, baggage_headers, extract, inject};

// Kong's spec ids.
pub(super) const TRACE_16: &str = "0af7651916cd43dd8448eb211c80319c";
pub(super) const TRACE_8: &str = "8448eb211c80319c";
pub(super) const TRACE_8_DEC: &str = "9532127138774266268";
pub(super) const SPAN_1: &str = "b7ad6b7169203331";
pub(super) const SPAN_1_DEC: &str = "13235353014750950193";
pub(super) const SPAN_2: &str = "b7ad6b7169203332";
pub(super) const BIG_TRACE: &str = "fffffffffffffff1";
pub(super) const BIG_TRACE_16: &str = "fffffffffffffffffffffffffffffff1";
pub(super) const BIG_SPAN: &str = "fffffffffffffff3";
pub(super) const BIG_TRACE_DEC: &str = "18446744073709551601";
pub(super) const BIG_SPAN_DEC: &str = "18446744073709551603";
pub(super) const BIG_TRACE_16_DEC: &str = "340282366920938463463374607431768211441";
pub(super) const TOO_LONG: &str = "1234567890123456789012345678901234567890";

/// Request headers as (lower-case name, value) pairs, in request order.
pub(super) type Pairs<'a> = &'a [(&'a str, &'a str)];

/// Hex test ids as bytes.
pub(super) fn hex(s: &str) -> Vec<u8> {
    from_hex(s).expect("test ids are hex")
}

fn hex_opt(s: &str) -> Option<Vec<u8>> {
    (!s.is_empty()).then(|| hex(s))
}

/// Runs `f` with the lookups [`extract`] takes, over `pairs`.
fn with_lookups<T>(
    pairs: Pairs<'_>,
    f: impl FnOnce(&dyn Fn(&str) -> Option<String>, &dyn Fn() -> Vec<(String, String)>) -> T,
) -> T {
    let header = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let headers = || {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    };
    f(&header, &headers)
}

/// The extractor's raw outcome, warnings included.
pub(super) fn found(format: Format, pairs: Pairs<'_>) -> Found {
    with_lookups(pairs, |header, headers| run(format, header, headers))
}

/// The public [`extract`] result.
pub(super) fn extracted(format: Format, pairs: Pairs<'_>) -> Result<Option<Extracted>, String> {
    with_lookups(pairs, |header, headers| extract(format, header, headers))
}

/// Extracts a context Kong accepts without any warning.
pub(super) fn clean(format: Format, pairs: Pairs<'_>) -> Extracted {
    let found = found(format, pairs);
    assert!(found.warnings.is_empty(), "{pairs:?}: {:?}", found.warnings);
    let ctx = found.ctx.expect("a context");
    assert_eq!(extracted(format, pairs), Ok(Some(ctx.clone())));
    ctx
}

/// Kong logs `warning` and drops the context: `extract` reports it as the error.
pub(super) fn rejected(format: Format, pairs: Pairs<'_>, warning: &str) {
    assert_eq!(
        extracted(format, pairs),
        Err(warning.to_owned()),
        "{pairs:?}"
    );
}

/// Kong logs exactly `warnings` but keeps a context, which is returned.
pub(super) fn warned(format: Format, pairs: Pairs<'_>, warnings: &[&str]) -> Extracted {
    let found = found(format, pairs);
    assert_eq!(found.warnings, warnings, "{pairs:?}");
    let ctx = found.ctx.expect("Kong keeps a context");
    assert_eq!(extracted(format, pairs), Ok(Some(ctx.clone())));
    ctx
}

/// An extracted context with hex ids ("" for absent).
pub(super) fn ctx(trace: &str, span: &str, parent: &str, sample: Option<bool>) -> Extracted {
    Extracted {
        trace_id: hex_opt(trace),
        span_id: hex_opt(span),
        parent_id: hex_opt(parent),
        should_sample: sample,
        ..Extracted::default()
    }
}

/// An inject context with hex ids ("" for absent).
pub(super) fn inject_ctx(trace: &str, span: &str, parent: &str, sample: Option<bool>) -> InjectCtx {
    InjectCtx {
        trace_id: hex(trace),
        span_id: hex(span),
        parent_id: hex_opt(parent),
        should_sample: sample,
        baggage: Vec::new(),
        flags: None,
        w3c_flags: None,
        single_header: false,
    }
}

/// Owned, sorted header pairs, for order-independent comparison (Kong's are a Lua table).
pub(super) fn sorted<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, String)> {
    let mut out: Vec<_> = pairs
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    out.sort();
    out
}

/// Sorted headers (baggage included) and the log's trace id entry.
pub(super) type Injection = (Vec<(String, String)>, (&'static str, String));

/// Every header the injector writes (baggage included), and the log's trace id entry.
pub(super) fn injected(format: Format, ctx: &InjectCtx) -> Result<Injection, String> {
    let mut out = Vec::new();
    let trace_id = inject(format, ctx, &mut out)?;
    let baggage = baggage_headers(format, ctx);
    let all = out
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .chain(baggage.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    Ok((sorted(all), trace_id))
}

/// Asserts `format` injects exactly `headers` for `ctx` and logs `trace_id` under `key`.
pub(super) fn assert_injects(
    format: Format,
    ctx: &InjectCtx,
    headers: Pairs<'_>,
    (key, trace_id): (&str, &str),
) {
    let (out, logged) = injected(format, ctx).expect("injectable");
    assert_eq!(out, sorted(headers.iter().copied()), "{ctx:?}");
    assert_eq!(logged, (key, trace_id.to_owned()));
}

/// Kong's extract-then-inject round trip: the injected headers equal the incoming ones.
pub(super) fn round_trip(from: Format, to: Format, headers: Pairs<'_>, trace_id: (&str, &str)) {
    let extracted = clean(from, headers);
    assert_injects(
        to,
        &InjectCtx::from_extracted(&extracted),
        headers,
        trace_id,
    );
}

#[test]
fn format_names_round_trip() {
    let names = [
        "w3c",
        "b3",
        "b3-single",
        "jaeger",
        "ot",
        "datadog",
        "aws",
        "gcp",
    ];
    for (format, name) in Format::ALL.into_iter().zip(names) {
        assert_eq!(format.name(), name);
        assert_eq!(Format::parse(name), Some(format));
    }
    assert_eq!(Format::parse("preserve"), None);
    assert_eq!(Format::parse("W3C"), None);
}

/// Kong's "handles no incoming headers correctly", for every format.
#[test]
fn absent_headers_extract_nothing() {
    let unrelated = [("host", "example.com"), ("x-request-id", "abc")];
    for format in Format::ALL {
        assert_eq!(extracted(format, &[]), Ok(None), "{format:?}");
        assert_eq!(extracted(format, &unrelated), Ok(None), "{format:?}");
    }
}

/// Kong with no callback injects what it extracted; each format reads its own output back.
#[test]
fn inject_then_extract_every_format() {
    let mut sent = inject_ctx(TRACE_16, SPAN_1, SPAN_2, Some(true));
    sent.baggage = vec![("foo".into(), "bar baz".into())];
    for format in Format::ALL {
        let (headers, _) = injected(format, &sent).expect("injectable");
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let got = clean(format, &pairs);
        let trace = match format {
            // ot's default size is 64 bits only without an incoming size; 16 bytes is kept.
            Format::Datadog => hex(TRACE_8),
            _ => hex(TRACE_16),
        };
        assert_eq!(got.trace_id, Some(trace), "{format:?}");
        assert_eq!(got.span_id, Some(hex(SPAN_1)), "{format:?}");
        assert_eq!(got.should_sample, Some(true), "{format:?}");
        let with_parent = matches!(format, Format::B3 | Format::B3Single | Format::Jaeger);
        assert_eq!(got.parent_id.is_some(), with_parent, "{format:?}");
        let with_baggage = matches!(format, Format::Jaeger | Format::Ot);
        assert_eq!(!got.baggage.is_empty(), with_baggage, "{format:?}");
        if with_baggage {
            assert_eq!(got.baggage, sent.baggage, "{format:?}");
        }
    }
}

/// Garbage in every format's headers: extraction must not panic, whatever it decides.
#[test]
fn garbage_never_panics() {
    const NAMES: &[&str] = &[
        "traceparent",
        "b3",
        "tracestate",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "uber-trace-id",
        "uberctx-k",
        "ot-tracer-traceid",
        "ot-tracer-spanid",
        "ot-tracer-sampled",
        "ot-baggage-k",
        "x-amzn-trace-id",
        "x-cloud-trace-context",
        "x-datadog-trace-id",
        "x-datadog-parent-id",
        "x-datadog-sampling-priority",
    ];
    let fixed = [
        "".to_owned(),
        "-".into(),
        "---".into(),
        ":::".into(),
        ";;==;".into(),
        "%".into(),
        "%zz%4".into(),
        "b3=".into(),
        "é".into(),
        "\u{0}".into(),
        format!("{}é/1", "a".repeat(31)),
        format!("{TRACE_16}-é{SPAN_1}"),
        format!("{TRACE_16}-{}é", &SPAN_1[..15]),
        format!("Root=1-{}é;Parent=é", "0".repeat(32)),
        "9".repeat(400),
        "f".repeat(400),
        format!("00-{TRACE_16}-{SPAN_1}-é"),
        format!("{TRACE_16}:{SPAN_1}:{SPAN_2}:é1"),
    ];
    let alphabet: Vec<char> = "0123456789abcdefABCDEFd-:;=/ .%+xRootParentSampledé\u{0}\t"
        .chars()
        .collect();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut values = fixed.to_vec();
    for _ in 0..3000 {
        let len = rng.usize(0..80);
        values.push(
            (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect(),
        );
    }
    for value in &values {
        for name in NAMES {
            let pairs = [(*name, value.as_str())];
            for format in Format::ALL {
                let _ = extracted(format, &pairs);
            }
        }
    }
    // Mixed: one random value per header, all present at once.
    for chunk in values.chunks(NAMES.len()) {
        let pairs: Vec<(&str, &str)> = NAMES
            .iter()
            .copied()
            .zip(chunk.iter().map(String::as_str))
            .collect();
        for format in Format::ALL {
            let _ = extracted(format, &pairs);
        }
    }
}

/// Odd contexts (absent ids, oversized ids, odd lengths) never panic an injector.
#[test]
fn odd_inject_contexts_never_panic() {
    let ids: [&[u8]; 5] = [&[], &[1], &[7; 8], &[9; 16], &[0xff; 40]];
    for trace in ids {
        for span in ids {
            for parent in [None, Some(Vec::new()), Some(vec![3; 20])] {
                let ctx = InjectCtx {
                    trace_id: trace.to_vec(),
                    span_id: span.to_vec(),
                    parent_id: parent.clone(),
                    should_sample: None,
                    baggage: vec![("k é".into(), "v\u{0}%".into())],
                    flags: Some(7),
                    w3c_flags: Some(0xff),
                    single_header: true,
                };
                for format in Format::ALL {
                    let _ = injected(format, &ctx);
                }
            }
        }
    }
}

#[test]
fn codec_helpers() {
    assert_eq!(from_hex("abc"), Some(vec![0x0a, 0xbc]));
    assert_eq!(from_hex("xy"), None);
    assert_eq!(codec::to_hex(&[0x0a, 0xbc]), "0abc");
    assert_eq!(codec::to_id_size(&[1, 2, 3], 2).as_ref(), [2, 3]);
    assert_eq!(codec::to_id_size(&[1], 3).as_ref(), [0, 0, 1]);
    assert_eq!(codec::to_dec(&hex(BIG_TRACE_16)), BIG_TRACE_16_DEC);
    // ngx.unescape_uri: `+` is a space, malformed escapes stay.
    assert_eq!(codec::unescape_uri("b%20r56+7%zz%4"), "b r56 7%zz%4");
    // ngx.escape_uri keeps only RFC 3986 unreserved characters.
    assert_eq!(codec::escape_uri("a b/~-._!*é"), "a%20b%2F~-._%21%2A%C3%A9");
}

#[test]
fn every_extractor_header_is_a_trace_header_for_the_core() {
    for format in Format::ALL {
        for name in super::extract::triggers(format) {
            assert!(
                super::is_trace_header(name.as_bytes()),
                "{name} ({})",
                format.name()
            );
        }
    }
}
