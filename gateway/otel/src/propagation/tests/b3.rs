//! B3 multi (`x-b3-*`) and single (`b3`, `tracestate: b3=`) headers: Kong's b3 extractor with
//! its b3 and b3-single injectors.

use super::super::{Extracted, Format, InjectCtx};
use super::{
    BIG_TRACE_16, SPAN_1, SPAN_2, TOO_LONG, TRACE_8, TRACE_16, assert_injects, clean, ctx,
    extracted, hex, inject_ctx, round_trip, warned,
};

/// Kong's b3 context: span ids may be reused by the receiver.
fn b3(trace: &str, span: &str, parent: &str, sample: Option<bool>) -> Extracted {
    let mut out = ctx(trace, span, parent, sample);
    out.reuse_span_id = out.span_id.clone();
    out
}

fn single(trace: &str, span: &str, parent: &str, sample: Option<bool>) -> Extracted {
    Extracted {
        single_header: true,
        ..b3(trace, span, parent, sample)
    }
}

fn debug(mut ctx: Extracted) -> Extracted {
    ctx.flags = Some(1);
    ctx
}

fn multi<'a>(trace: &'a str, sampled: (&'a str, &'a str)) -> [(&'a str, &'a str); 4] {
    [
        ("x-b3-traceid", trace),
        ("x-b3-spanid", SPAN_1),
        ("x-b3-parentspanid", SPAN_2),
        sampled,
    ]
}

#[test]
fn multi_header_cases() {
    let base = multi(TRACE_16, ("x-b3-sampled", "1"));
    assert_eq!(
        clean(Format::B3, &base),
        b3(TRACE_16, SPAN_1, SPAN_2, Some(true))
    );
    round_trip(Format::B3, Format::B3, &base, ("b3", TRACE_16));

    let unsampled = multi(TRACE_16, ("x-b3-sampled", "0"));
    assert_eq!(
        clean(Format::B3, &unsampled),
        b3(TRACE_16, SPAN_1, SPAN_2, Some(false))
    );
    round_trip(Format::B3, Format::B3, &unsampled, ("b3", TRACE_16));

    // `x-b3-flags: 1` (debug) samples, and is sent back instead of `x-b3-sampled`.
    let flagged = multi(TRACE_16, ("x-b3-flags", "1"));
    let want = debug(b3(TRACE_16, SPAN_1, SPAN_2, Some(true)));
    assert_eq!(clean(Format::B3, &flagged), want);
    round_trip(Format::B3, Format::B3, &flagged, ("b3", TRACE_16));

    // A 64-bit trace id stays 64-bit on the way out.
    let short = multi(TRACE_8, ("x-b3-sampled", "1"));
    assert_eq!(
        clean(Format::B3, &short),
        b3(TRACE_8, SPAN_1, SPAN_2, Some(true))
    );
    round_trip(Format::B3, Format::B3, &short, ("b3", TRACE_8));

    // "true"/"false" are accepted too (Kong's read_multi_header).
    let word = [("x-b3-sampled", "true")];
    assert_eq!(clean(Format::B3, &word), b3("", "", "", Some(true)));
}

#[test]
fn sampling_decision_only() {
    let headers = [("x-b3-sampled", "0")];
    assert_eq!(clean(Format::B3, &headers), b3("", "", "", Some(false)));
    round_trip(Format::B3, Format::B3, &headers, ("b3", ""));
}

#[test]
fn injects_default_16_byte_ids() {
    let sent = inject_ctx(TRACE_16, SPAN_1, SPAN_2, Some(true));
    let want = multi(TRACE_16, ("x-b3-sampled", "1"));
    assert_injects(Format::B3, &sent, &want, ("b3", TRACE_16));
    // No decision at all is sent as "not sampled".
    let undecided = inject_ctx(TRACE_16, SPAN_1, SPAN_2, None);
    let want = multi(TRACE_16, ("x-b3-sampled", "0"));
    assert_injects(Format::B3, &undecided, &want, ("b3", TRACE_16));
}

#[test]
fn invalid_multi_ids_drop_all_ids_but_keep_sampling() {
    let bad_trace = [
        ("x-b3-traceid", "x"),
        ("x-b3-spanid", SPAN_1),
        ("x-b3-parentspanid", SPAN_2),
        ("x-b3-sampled", "0"),
    ];
    let got = warned(
        Format::B3,
        &bad_trace,
        &["x-b3-traceid header invalid; ignoring."],
    );
    assert_eq!(got, b3("", "", "", Some(false)));

    let bad_span = [("x-b3-traceid", TRACE_16), ("x-b3-spanid", "123")];
    let got = warned(
        Format::B3,
        &bad_span,
        &["x-b3-spanid header invalid; ignoring."],
    );
    assert_eq!(got, b3("", "", "", None));

    let bad_parent = [("x-b3-traceid", TRACE_16), ("x-b3-parentspanid", TOO_LONG)];
    let got = warned(
        Format::B3,
        &bad_parent,
        &["x-b3-parentspanid header invalid; ignoring."],
    );
    assert_eq!(got, b3("", "", "", None));

    // An invalid sampled/flags value is ignored, the ids stay.
    let bad_sampled = [
        ("x-b3-traceid", TRACE_16),
        ("x-b3-spanid", SPAN_1),
        ("x-b3-sampled", "yes"),
    ];
    let got = warned(
        Format::B3,
        &bad_sampled,
        &["x-b3-sampled header invalid; ignoring."],
    );
    assert_eq!(got, b3(TRACE_16, SPAN_1, "", None));
    let bad_flags = [
        ("x-b3-traceid", TRACE_16),
        ("x-b3-spanid", SPAN_1),
        ("x-b3-flags", "2"),
    ];
    let got = warned(
        Format::B3,
        &bad_flags,
        &["x-b3-flags header invalid; ignoring."],
    );
    assert_eq!(got, b3(TRACE_16, SPAN_1, "", None));
}

#[test]
fn span_without_trace_is_dropped() {
    let headers = [("x-b3-spanid", SPAN_1), ("x-b3-sampled", "1")];
    assert_eq!(clean(Format::B3, &headers), b3("", "", "", Some(true)));
}

#[test]
fn single_header_sampling_states() {
    for (value, sample, flagged) in [("1", true, false), ("0", false, false), ("d", true, true)] {
        let headers = [("b3", value)];
        let mut want = single("", "", "", Some(sample));
        if flagged {
            want = debug(want);
        }
        assert_eq!(clean(Format::B3, &headers), want, "{value}");
        round_trip(Format::B3, Format::B3Single, &headers, ("b3", ""));
    }
}

#[test]
fn single_header_with_ids() {
    let cases = [
        (
            format!("{TRACE_16}-{SPAN_1}-1-{SPAN_2}"),
            single(TRACE_16, SPAN_1, SPAN_2, Some(true)),
            TRACE_16,
        ),
        (
            format!("{TRACE_16}-{SPAN_1}-0-{SPAN_2}"),
            single(TRACE_16, SPAN_1, SPAN_2, Some(false)),
            TRACE_16,
        ),
        (
            format!("{TRACE_16}-{SPAN_1}-d-{SPAN_2}"),
            debug(single(TRACE_16, SPAN_1, SPAN_2, Some(true))),
            TRACE_16,
        ),
        (
            format!("{TRACE_16}-{SPAN_1}"),
            single(TRACE_16, SPAN_1, "", None),
            TRACE_16,
        ),
        (
            format!("{TRACE_16}-{SPAN_1}-1"),
            single(TRACE_16, SPAN_1, "", Some(true)),
            TRACE_16,
        ),
        (
            format!("{TRACE_8}-{SPAN_1}-1"),
            single(TRACE_8, SPAN_1, "", Some(true)),
            TRACE_8,
        ),
    ];
    for (value, want, trace) in &cases {
        let headers = [("b3", value.as_str())];
        assert_eq!(&clean(Format::B3, &headers), want, "{value}");
        round_trip(Format::B3, Format::B3Single, &headers, ("b3", trace));
    }
}

#[test]
fn single_header_from_tracestate() {
    let value = format!("b3={TRACE_16}-{SPAN_1}-d-{SPAN_2}");
    let want = debug(single(TRACE_16, SPAN_1, SPAN_2, Some(true)));
    assert_eq!(clean(Format::B3, &[("tracestate", &value)]), want);

    // A multi-valued tracestate: the first value starting with `b3=` is used.
    let value = format!("b3={TRACE_16}-{SPAN_1}-1-{SPAN_2}");
    let headers = [
        ("tracestate", "test"),
        ("tracestate", &value),
        ("tracestate", "test2"),
    ];
    assert_eq!(
        clean(Format::B3, &headers),
        single(TRACE_16, SPAN_1, SPAN_2, Some(true))
    );
}

#[test]
fn foreign_tracestate_still_counts_as_b3() {
    // Not in Kong's spec, read from extractors/b3.lua: `tracestate` triggers the b3 extractor,
    // whose context always holds `reuse_span_id`, so Kong stops extracting here, empty-handed.
    assert_eq!(
        extracted(Format::B3, &[("tracestate", "congo=t61rcWkgMzE")]),
        Ok(Some(Extracted::default()))
    );
}

#[test]
fn single_header_wins_and_multi_fills_gaps() {
    // Not in Kong's spec, read from extractors/b3.lua's get_context.
    let value = format!("{TRACE_16}-{SPAN_1}");
    let headers = [
        ("b3", value.as_str()),
        ("x-b3-sampled", "1"),
        ("x-b3-parentspanid", SPAN_2),
    ];
    assert_eq!(
        clean(Format::B3, &headers),
        single(TRACE_16, SPAN_1, SPAN_2, Some(true))
    );
    // An invalid single header falls back to the multi ids, still marked single.
    let headers = [
        ("b3", "garbage"),
        ("x-b3-traceid", TRACE_8),
        ("x-b3-spanid", SPAN_2),
    ];
    let got = warned(
        Format::B3,
        &headers,
        &["b3 single header invalid; ignoring."],
    );
    assert_eq!(got, single(TRACE_8, SPAN_2, "", None));
}

#[test]
fn injects_single_header() {
    let mut sent = inject_ctx(TRACE_16, SPAN_1, SPAN_2, Some(true));
    sent.flags = Some(1);
    sent.single_header = true;
    let value = format!("{TRACE_16}-{SPAN_1}-d-{SPAN_2}");
    assert_injects(Format::B3Single, &sent, &[("b3", &value)], ("b3", TRACE_16));

    let big = InjectCtx {
        trace_id: hex(BIG_TRACE_16),
        ..sent
    };
    let value = format!("{BIG_TRACE_16}-{SPAN_1}-d-{SPAN_2}");
    assert_injects(
        Format::B3Single,
        &big,
        &[("b3", &value)],
        ("b3", BIG_TRACE_16),
    );

    // No ids and no decision: "0".
    let empty = inject_ctx("", "", "", None);
    assert_injects(Format::B3Single, &empty, &[("b3", "0")], ("b3", ""));
}

#[test]
fn invalid_single_headers() {
    let warning = ["b3 single header invalid; ignoring."];
    let values = [
        format!("xxx-{SPAN_1}-1-{SPAN_2}"),
        format!("{TOO_LONG}-{SPAN_1}-1-{SPAN_2}"),
        format!("123-{SPAN_1}-1-{SPAN_2}"),
        String::new(),
        format!("{TRACE_16}-"),
        format!("{TRACE_16}-xxx"),
        format!("{TRACE_16}-{TOO_LONG}-1-{SPAN_2}"),
        format!("{TRACE_16}-123-1-{SPAN_2}"),
        format!("{TRACE_16}-{SPAN_1}-x"),
        format!("{TRACE_16}-{SPAN_1}-d-xxx"),
        format!("{TRACE_16}-{SPAN_1}-d-{TOO_LONG}"),
        format!("{TRACE_16}-{SPAN_1}-d-123"),
    ];
    for value in &values {
        let got = warned(Format::B3, &[("b3", value)], &warning);
        assert_eq!(got, single("", "", "", None), "{value}");
    }
}

#[test]
fn optional_separators_follow_luas_matching_order() {
    // Not in Kong's spec, from its pattern `%-?([01d]?)%-?(%x*)`: a parent right after the
    // span id is taken as such unless it starts with a sampling state character.
    let value = format!("{TRACE_16}-{SPAN_1}-{SPAN_2}");
    assert_eq!(
        clean(Format::B3, &[("b3", &value)]),
        single(TRACE_16, SPAN_1, SPAN_2, None)
    );
    let value = format!("{TRACE_16}-{SPAN_1}1{SPAN_2}");
    assert_eq!(
        clean(Format::B3, &[("b3", &value)]),
        single(TRACE_16, SPAN_1, SPAN_2, Some(true))
    );
    let value = format!("{TRACE_16}-{SPAN_1}-0123456789abcdef");
    warned(
        Format::B3,
        &[("b3", &value)],
        &["b3 single header invalid; ignoring."],
    );
}
