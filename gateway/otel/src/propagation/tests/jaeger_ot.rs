//! Jaeger (`uber-trace-id`, `uberctx-*`) and OpenTracing (`ot-tracer-*`, `ot-baggage-*`).

use super::super::{Extracted, Format, InjectCtx};
use super::{
    BIG_SPAN, BIG_TRACE_16, SPAN_1, SPAN_2, TOO_LONG, TRACE_8, TRACE_16, assert_injects, clean,
    ctx, inject_ctx, injected, rejected, round_trip, warned,
};

fn jaeger(trace: &str, span: &str, parent: &str, sample: bool) -> Extracted {
    let mut out = ctx(trace, span, parent, Some(sample));
    out.reuse_span_id = out.span_id.clone();
    out
}

fn with_baggage(mut ctx: Extracted) -> Extracted {
    ctx.baggage = vec![("foo".into(), "bar".into())];
    ctx
}

fn uber(trace: &str, span: &str, parent: &str, flags: &str) -> String {
    format!("{trace}:{span}:{parent}:{flags}")
}

#[test]
fn jaeger_round_trips() {
    let value = uber(TRACE_16, SPAN_1, SPAN_2, "01");
    let headers = [("uber-trace-id", value.as_str()), ("uberctx-foo", "bar")];
    assert_eq!(
        clean(Format::Jaeger, &headers),
        with_baggage(jaeger(TRACE_16, SPAN_1, SPAN_2, true))
    );
    round_trip(
        Format::Jaeger,
        Format::Jaeger,
        &headers,
        ("jaeger", TRACE_16),
    );

    let value = uber(TRACE_16, SPAN_1, SPAN_2, "00");
    let headers = [("uber-trace-id", value.as_str())];
    assert_eq!(
        clean(Format::Jaeger, &headers),
        jaeger(TRACE_16, SPAN_1, SPAN_2, false)
    );
    round_trip(
        Format::Jaeger,
        Format::Jaeger,
        &headers,
        ("jaeger", TRACE_16),
    );

    let value = uber(TRACE_8, SPAN_1, SPAN_2, "01");
    let headers = [("uber-trace-id", value.as_str())];
    assert_eq!(
        clean(Format::Jaeger, &headers),
        jaeger(TRACE_8, SPAN_1, SPAN_2, true)
    );
    round_trip(
        Format::Jaeger,
        Format::Jaeger,
        &headers,
        ("jaeger", TRACE_8),
    );
}

#[test]
fn jaeger_pads_short_ids() {
    let value = uber(TRACE_16, SPAN_1, "0", "01");
    let want = jaeger(TRACE_16, SPAN_1, "0000000000000000", true);
    assert_eq!(clean(Format::Jaeger, &[("uber-trace-id", &value)]), want);

    let value = uber(TRACE_16, "123", SPAN_2, "01");
    let want = jaeger(TRACE_16, "0000000000000123", SPAN_2, true);
    assert_eq!(clean(Format::Jaeger, &[("uber-trace-id", &value)]), want);

    // Kong pads "1234" to 16 bytes with an original size of 2; a short id is a 64-bit id here.
    let value = uber("1234", SPAN_1, SPAN_2, "01");
    let want = jaeger("0000000000001234", SPAN_1, SPAN_2, true);
    assert_eq!(clean(Format::Jaeger, &[("uber-trace-id", &value)]), want);

    // Jaeger clients drop leading zeros: 31 digits are a 128-bit id.
    let value = uber(&TRACE_16[1..], SPAN_1, SPAN_2, "1");
    assert_eq!(
        clean(Format::Jaeger, &[("uber-trace-id", &value)]),
        jaeger(TRACE_16, SPAN_1, SPAN_2, true)
    );
}

#[test]
fn jaeger_injects_16_byte_default_with_baggage() {
    let mut sent = inject_ctx(TRACE_16, SPAN_1, SPAN_2, Some(true));
    sent.baggage = vec![("foo".into(), "bar".into())];
    let value = uber(TRACE_16, SPAN_1, SPAN_2, "01");
    let want = [("uber-trace-id", value.as_str()), ("uberctx-foo", "bar")];
    assert_injects(Format::Jaeger, &sent, &want, ("jaeger", TRACE_16));

    // No parent is written as "0", no decision as "00".
    let bare = inject_ctx(TRACE_16, SPAN_1, "", None);
    let value = uber(TRACE_16, SPAN_1, "0", "00");
    assert_injects(
        Format::Jaeger,
        &bare,
        &[("uber-trace-id", &value)],
        ("jaeger", TRACE_16),
    );
}

#[test]
fn jaeger_baggage_is_uri_coded() {
    let value = uber(TRACE_16, SPAN_1, SPAN_2, "01");
    let headers = [
        ("uber-trace-id", value.as_str()),
        ("uberctx-k", "a%20b+c%2F"),
    ];
    assert_eq!(
        clean(Format::Jaeger, &headers).baggage,
        vec![("k".to_owned(), "a b c/".to_owned())]
    );
    let sent = InjectCtx {
        baggage: vec![("k".into(), "a b c/".into())],
        ..inject_ctx(TRACE_16, SPAN_1, SPAN_2, Some(true))
    };
    let (out, _) = injected(Format::Jaeger, &sent).expect("injectable");
    assert!(
        out.contains(&("uberctx-k".into(), "a%20b%20c%2F".into())),
        "{out:?}"
    );
}

#[test]
fn jaeger_invalid_values() {
    let header = "invalid jaeger uber-trace-id header; ignoring.";
    let trace = "invalid jaeger trace ID; ignoring.";
    let span = "invalid jaeger span ID; ignoring.";
    let flags = "invalid jaeger flags; ignoring.";
    let zeros_32 = "0".repeat(32);
    let cases = [
        (uber("vv", SPAN_1, SPAN_2, "00"), header),
        (uber(TRACE_8, "vv", SPAN_2, "00"), header),
        (uber(TRACE_8, SPAN_1, "vv", "00"), header),
        (uber(TRACE_8, SPAN_1, SPAN_2, "vv"), header),
        (format!("{TRACE_16}:{SPAN_1}:{SPAN_2}"), header),
        // Kong does not URL-decode the header: the `%3A`-encoded form is invalid.
        (format!("{TRACE_16}%3A{SPAN_1}%3A{SPAN_2}%3A01"), header),
        (uber(TOO_LONG, SPAN_1, SPAN_2, "00"), trace),
        (uber(&zeros_32, SPAN_1, SPAN_2, "00"), trace),
        (uber(TRACE_16, TOO_LONG, SPAN_1, "00"), span),
        (uber(TRACE_16, &zeros_32, SPAN_1, "00"), span),
        (uber(TRACE_16, SPAN_1, SPAN_2, "123"), flags),
    ];
    for (value, warning) in &cases {
        rejected(Format::Jaeger, &[("uber-trace-id", value)], warning);
    }
}

#[test]
fn jaeger_invalid_parent_is_logged_but_kept() {
    let warning = ["invalid jaeger parent ID; ignoring."];
    let value = uber(TRACE_16, SPAN_1, "ff", "00");
    let got = warned(Format::Jaeger, &[("uber-trace-id", &value)], &warning);
    assert_eq!(got, jaeger(TRACE_16, SPAN_1, "00000000000000ff", false));
    // A long parent keeps its low 8 bytes, as Kong's to_kong_span_id does.
    let value = uber(TRACE_16, SPAN_1, TOO_LONG, "00");
    let got = warned(Format::Jaeger, &[("uber-trace-id", &value)], &warning);
    assert_eq!(got, jaeger(TRACE_16, SPAN_1, "5678901234567890", false));
}

#[test]
fn injectors_need_trace_and_span_ids() {
    for format in [Format::Jaeger, Format::Ot, Format::Aws, Format::Gcp] {
        let name = format.name();
        let no_trace = inject_ctx("", SPAN_1, "", Some(false));
        let want =
            format!("{name} injector context is invalid: field trace_id not found in context");
        assert_eq!(injected(format, &no_trace), Err(want));
        let no_span = inject_ctx(TRACE_16, "", "", Some(false));
        let want =
            format!("{name} injector context is invalid: field span_id not found in context");
        assert_eq!(injected(format, &no_span), Err(want));
    }
}

fn ot_headers<'a>(
    trace: &'a str,
    span: &'a str,
    sampled: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut out = vec![("ot-tracer-traceid", trace), ("ot-tracer-spanid", span)];
    if let Some(sampled) = sampled {
        out.push(("ot-tracer-sampled", sampled));
    }
    out
}

#[test]
fn ot_round_trips() {
    let mut headers = ot_headers(TRACE_16, SPAN_1, Some("1"));
    headers.push(("ot-baggage-foo", "bar"));
    assert_eq!(
        clean(Format::Ot, &headers),
        with_baggage(ctx(TRACE_16, SPAN_1, "", Some(true)))
    );
    round_trip(Format::Ot, Format::Ot, &headers, ("ot", TRACE_16));

    let headers = ot_headers(TRACE_16, SPAN_1, Some("0"));
    assert_eq!(
        clean(Format::Ot, &headers),
        ctx(TRACE_16, SPAN_1, "", Some(false))
    );
    round_trip(Format::Ot, Format::Ot, &headers, ("ot", TRACE_16));

    let headers = ot_headers(TRACE_16, SPAN_1, None);
    assert_eq!(clean(Format::Ot, &headers), ctx(TRACE_16, SPAN_1, "", None));
    round_trip(Format::Ot, Format::Ot, &headers, ("ot", TRACE_16));

    let mut headers = ot_headers(BIG_TRACE_16, BIG_SPAN, None);
    headers.push(("ot-baggage-foo", "bar"));
    assert_eq!(
        clean(Format::Ot, &headers),
        with_baggage(ctx(BIG_TRACE_16, BIG_SPAN, "", None))
    );
    round_trip(Format::Ot, Format::Ot, &headers, ("ot", BIG_TRACE_16));

    let headers = ot_headers(TRACE_8, SPAN_1, Some("0"));
    assert_eq!(
        clean(Format::Ot, &headers),
        ctx(TRACE_8, SPAN_1, "", Some(false))
    );
    round_trip(Format::Ot, Format::Ot, &headers, ("ot", TRACE_8));
}

#[test]
fn ot_injection_sizes() {
    let mut sent = inject_ctx(TRACE_8, SPAN_1, "", Some(true));
    sent.baggage = vec![("foo".into(), "bar".into())];
    let mut want = ot_headers(TRACE_8, SPAN_1, Some("1"));
    want.push(("ot-baggage-foo", "bar"));
    assert_eq!(
        injected(Format::Ot, &sent).map(|(h, _)| h),
        Ok(super::sorted(want.iter().copied()))
    );
    // Kong's "default injection size is 8B" passes a padded 16-byte id with no original size
    // and gets 8 bytes; here a 16-byte id means a 128-bit original, which ot keeps. Other
    // lengths fall back to ot's 8-byte default.
    let long = InjectCtx {
        trace_id: super::hex(TRACE_16),
        ..sent.clone()
    };
    assert_eq!(
        injected(Format::Ot, &long).map(|(_, t)| t),
        Ok(("ot", TRACE_16.to_owned()))
    );
    let odd = InjectCtx {
        trace_id: vec![0x12, 0x34],
        ..sent
    };
    assert_eq!(
        injected(Format::Ot, &odd).map(|(_, t)| t),
        Ok(("ot", "0000000000001234".to_owned()))
    );
}

#[test]
fn ot_baggage_needs_its_prefix() {
    let mut headers = ot_headers(TRACE_16, SPAN_1, Some("1"));
    headers.push(("otttttbaggage-foo", "bar"));
    assert_eq!(
        clean(Format::Ot, &headers),
        ctx(TRACE_16, SPAN_1, "", Some(true))
    );
}

#[test]
fn ot_invalid_values() {
    rejected(
        Format::Ot,
        &[("ot-tracer-traceid", "xx")],
        "ot-tracer-traceid header invalid; ignoring.",
    );
    // Not in Kong's spec, read from extractors/ot.lua: a bad span id drops both ids but the
    // sampling decision is kept; a bad decision is ignored.
    let headers = [
        ("ot-tracer-traceid", TRACE_16),
        ("ot-tracer-spanid", "12"),
        ("ot-tracer-sampled", "1"),
    ];
    let got = warned(
        Format::Ot,
        &headers,
        &["ot-tracer-spanid header invalid; ignoring."],
    );
    assert_eq!(got, ctx("", "", "", Some(true)));
    let headers = ot_headers(TRACE_16, SPAN_1, Some("maybe"));
    let got = warned(
        Format::Ot,
        &headers,
        &["ot-tracer-sampled header invalid; ignoring."],
    );
    assert_eq!(got, ctx(TRACE_16, SPAN_1, "", None));
}
