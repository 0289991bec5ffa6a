//! AWS X-Ray (`x-amzn-trace-id`), Google Cloud (`x-cloud-trace-context`) and Datadog
//! (`x-datadog-*`).

use super::super::Format;
use super::{
    BIG_SPAN, BIG_SPAN_DEC, BIG_TRACE, BIG_TRACE_16, BIG_TRACE_16_DEC, BIG_TRACE_DEC, SPAN_1,
    SPAN_1_DEC, TOO_LONG, TRACE_8, TRACE_8_DEC, TRACE_16, assert_injects, clean, ctx, extracted,
    inject_ctx, rejected, round_trip, warned,
};

/// `Root=1-<first 8 hex>-<rest>;Parent=<span>;Sampled=<flag>`, Kong's spec layout.
fn amzn(trace: &str, span: &str, sampled: &str) -> String {
    let (timestamp, unique) = trace.split_at(8.min(trace.len()));
    format!("Root=1-{timestamp}-{unique};Parent={span};Sampled={sampled}")
}

#[test]
fn aws_round_trips() {
    for (trace, sampled) in [(TRACE_16, "1"), (BIG_TRACE_16, "1"), (TRACE_16, "0")] {
        let value = amzn(trace, SPAN_1, sampled);
        let headers = [("x-amzn-trace-id", value.as_str())];
        let want = ctx(trace, SPAN_1, "", Some(sampled == "1"));
        assert_eq!(clean(Format::Aws, &headers), want);
        // Kong logs the plain hex trace id for aws, not the X-Ray form.
        round_trip(Format::Aws, Format::Aws, &headers, ("aws", trace));
    }
}

#[test]
fn aws_layout_variants() {
    let (timestamp, unique) = TRACE_16.split_at(8);
    let want = ctx(TRACE_16, SPAN_1, "", Some(true));
    let values = [
        format!("  Root =   1-{timestamp}-{unique}  ;  Parent= {SPAN_1};  Sampled   =1"),
        format!("Parent={SPAN_1};Root=1-{timestamp}-{unique};Sampled=1"),
        format!("Foo=bar;Root=1-{timestamp}-{unique};Parent={SPAN_1};Sampled=1"),
        format!("Root=1-{timestamp}-{unique};Parent={SPAN_1};Sampled=1;Lineage=a:1;"),
    ];
    for value in &values {
        assert_eq!(
            clean(Format::Aws, &[("x-amzn-trace-id", value)]),
            want,
            "{value}"
        );
    }
    // Not in Kong's spec: each key is optional, so a bare sampling decision is a context.
    let got = clean(Format::Aws, &[("x-amzn-trace-id", "Sampled=0")]);
    assert_eq!(got, ctx("", "", "", Some(false)));
    assert_eq!(
        extracted(Format::Aws, &[("x-amzn-trace-id", "Self=1-abc")]),
        Ok(None)
    );
}

#[test]
fn aws_injects_default_16_byte_ids() {
    let sent = inject_ctx(TRACE_16, SPAN_1, "", Some(true));
    let value = amzn(TRACE_16, SPAN_1, "1");
    assert_injects(
        Format::Aws,
        &sent,
        &[("x-amzn-trace-id", &value)],
        ("aws", TRACE_16),
    );
    let short = inject_ctx(TRACE_8, SPAN_1, "", None);
    let padded = format!("0000000000000000{TRACE_8}");
    let value = amzn(&padded, SPAN_1, "0");
    assert_injects(
        Format::Aws,
        &short,
        &[("x-amzn-trace-id", &value)],
        ("aws", &padded),
    );
}

#[test]
fn aws_invalid_values() {
    let trace = "invalid aws header trace id; ignoring.";
    let parent = "invalid aws header parent id; ignoring.";
    let sampled = "invalid aws header sampled flag; ignoring.";
    let (timestamp, unique) = TRACE_16.split_at(8);
    let cases = [
        (
            format!("Root=0-8448eb21-1c80319c;Parent={SPAN_1};Sampled=0"),
            trace,
        ),
        (
            format!("Root=1-vv-1c80319c;Parent={SPAN_1};Sampled=0"),
            trace,
        ),
        (
            format!("Root=1-8448eb21-vv;Parent={SPAN_1};Sampled=0"),
            trace,
        ),
        (amzn(TRACE_8, SPAN_1, "0"), trace),
        (amzn(TOO_LONG, SPAN_1, "0"), trace),
        (format!("Root=;Parent={SPAN_1};Sampled=0"), trace),
        (
            format!("Root=0-{timestamp}-{unique};Parent={SPAN_1};Sampled=0"),
            trace,
        ),
        (
            format!("Root=1-{timestamp}{unique}-;Parent={SPAN_1}"),
            trace,
        ),
        (
            format!("Root=1-{timestamp}-{unique};Parent=vv;Sampled=0"),
            parent,
        ),
        (amzn(TRACE_16, TOO_LONG, "0"), parent),
        (amzn(TRACE_16, "123", "0"), parent),
        (
            format!("Root=1-{timestamp}-{unique};Parent=;Sampled=0"),
            parent,
        ),
        // Kong checks only the length of Parent and would keep raw text; rejected here.
        (amzn(TRACE_16, "vvvvvvvvvvvvvvvv", "0"), parent),
        (amzn(TRACE_16, SPAN_1, "2"), sampled),
        (amzn(TRACE_16, SPAN_1, ""), sampled),
        (amzn(TRACE_16, SPAN_1, "?"), sampled),
    ];
    for (value, warning) in &cases {
        rejected(Format::Aws, &[("x-amzn-trace-id", value)], warning);
    }
}

fn cloud(value: &str) -> [(&'static str, &str); 1] {
    [("x-cloud-trace-context", value)]
}

#[test]
fn gcp_round_trips() {
    for (flag, sample) in [("1", true), ("0", false)] {
        let value = format!("{TRACE_16}/{SPAN_1_DEC};o={flag}");
        assert_eq!(
            clean(Format::Gcp, &cloud(&value)),
            ctx(TRACE_16, SPAN_1, "", Some(sample))
        );
        round_trip(Format::Gcp, Format::Gcp, &cloud(&value), ("gcp", TRACE_16));
    }
    // Without `;o=` the trace is not sampled; any digit but 1 likewise.
    for value in [
        format!("{TRACE_16}/{SPAN_1_DEC}"),
        format!("{TRACE_16}/{SPAN_1_DEC};o=3"),
    ] {
        assert_eq!(
            clean(Format::Gcp, &cloud(&value)),
            ctx(TRACE_16, SPAN_1, "", Some(false))
        );
    }
}

#[test]
fn gcp_decimal_span_ids() {
    // Not in Kong's spec: small ids are zero-padded, 20 digits beyond 64 bits keep the low
    // 8 bytes (Kong's bn to_binary then to_kong_span_id).
    let value = format!("{TRACE_16}/1;o=1");
    assert_eq!(
        clean(Format::Gcp, &cloud(&value)),
        ctx(TRACE_16, "0000000000000001", "", Some(true))
    );
    let value = format!("{TRACE_16}/99999999999999999999");
    assert_eq!(
        clean(Format::Gcp, &cloud(&value)),
        ctx(TRACE_16, "6bc75e2d630fffff", "", Some(false))
    );
}

#[test]
fn gcp_injects_default_16_byte_ids() {
    let sent = inject_ctx(TRACE_16, SPAN_1, "", Some(true));
    let value = format!("{TRACE_16}/{SPAN_1_DEC};o=1");
    assert_injects(Format::Gcp, &sent, &cloud(&value), ("gcp", TRACE_16));
    let undecided = inject_ctx(TRACE_16, BIG_SPAN, "", None);
    let value = format!("{TRACE_16}/{BIG_SPAN_DEC};o=0");
    assert_injects(Format::Gcp, &undecided, &cloud(&value), ("gcp", TRACE_16));
}

#[test]
fn gcp_invalid_values() {
    let values = [
        format!("123/{SPAN_1_DEC};o=0"),
        format!("{TOO_LONG}/{SPAN_1_DEC};o=0"),
        format!("vvv/{SPAN_1_DEC};o=0"),
        format!("{TRACE_16}/;o=0"),
        format!("{TRACE_16}/{SPAN_1};o=0"),
        format!("{TRACE_16}/{SPAN_1_DEC}0;o=0"),
        format!("{TRACE_16}/{SPAN_1_DEC};o=01"),
        format!("{TRACE_16}/{SPAN_1_DEC};o="),
        format!("{TRACE_16}/{SPAN_1_DEC};o=v"),
        // Kong's regex takes lower-case hex only.
        format!("{}/{SPAN_1_DEC};o=1", TRACE_16.to_uppercase()),
        String::new(),
    ];
    for value in &values {
        rejected(Format::Gcp, &cloud(value), "invalid GCP header; ignoring.");
    }
}

fn dd<'a>(trace: &'a str, parent: &'a str, priority: &'a str) -> Vec<(&'a str, &'a str)> {
    [
        ("x-datadog-trace-id", trace),
        ("x-datadog-parent-id", parent),
        ("x-datadog-sampling-priority", priority),
    ]
    .into_iter()
    .filter(|(_, v)| *v != "-")
    .collect()
}

#[test]
fn datadog_round_trips() {
    let cases = [
        (
            dd(TRACE_8_DEC, SPAN_1_DEC, "1"),
            ctx(TRACE_8, SPAN_1, "", Some(true)),
            TRACE_8_DEC,
        ),
        (
            dd(TRACE_8_DEC, SPAN_1_DEC, "0"),
            ctx(TRACE_8, SPAN_1, "", Some(false)),
            TRACE_8_DEC,
        ),
        (
            dd(TRACE_8_DEC, "-", "1"),
            ctx(TRACE_8, "", "", Some(true)),
            TRACE_8_DEC,
        ),
        (
            dd(TRACE_8_DEC, SPAN_1_DEC, "-"),
            ctx(TRACE_8, SPAN_1, "", None),
            TRACE_8_DEC,
        ),
        (
            dd(BIG_TRACE_DEC, SPAN_1_DEC, "-"),
            ctx(BIG_TRACE, SPAN_1, "", None),
            BIG_TRACE_DEC,
        ),
        (
            dd(TRACE_8_DEC, BIG_SPAN_DEC, "-"),
            ctx(TRACE_8, BIG_SPAN, "", None),
            TRACE_8_DEC,
        ),
    ];
    for (headers, want, trace) in &cases {
        assert_eq!(&clean(Format::Datadog, headers), want, "{headers:?}");
        round_trip(
            Format::Datadog,
            Format::Datadog,
            headers,
            ("datadog", trace),
        );
    }
}

#[test]
fn datadog_extraction_details() {
    // A parent without a trace is dropped; the decision stays.
    let got = clean(Format::Datadog, &dd("-", SPAN_1_DEC, "1"));
    assert_eq!(got, ctx("", "", "", Some(true)));
    // Kong can extract a 128-bit decimal id, although it injects 64 bits only.
    let got = clean(Format::Datadog, &dd(BIG_TRACE_16_DEC, SPAN_1_DEC, "-"));
    assert_eq!(got, ctx(BIG_TRACE_16, SPAN_1, "", None));
    // Not in Kong's spec: surrounding Lua whitespace, user-keep (2) and user-reject (-1)
    // priorities, and oversized decimals (Kong keeps the low 16 bytes).
    let got = clean(
        Format::Datadog,
        &dd(" 9532127138774266268\t", "\x0b1 ", "2"),
    );
    assert_eq!(got, ctx(TRACE_8, "0000000000000001", "", Some(true)));
    assert_eq!(
        clean(Format::Datadog, &dd("-", "-", "-1")),
        ctx("", "", "", Some(false))
    );
    let huge = "12345678901234567890123456789012345678901234567890";
    let got = clean(Format::Datadog, &dd(huge, "-", "-"));
    assert_eq!(got, ctx("aaf83ca15026747af8c7f196ce3f0ad2", "", "", None));
    // Zero is a valid (if useless) id to Kong.
    assert_eq!(
        clean(Format::Datadog, &dd("0", "-", "-")),
        ctx("0000000000000000", "", "", None)
    );
}

#[test]
fn datadog_injects_64_bit_ids() {
    let sent = inject_ctx(TRACE_16, SPAN_1, "", Some(true));
    let want = dd(TRACE_8_DEC, SPAN_1_DEC, "1");
    assert_injects(Format::Datadog, &sent, &want, ("datadog", TRACE_8_DEC));
    // Every field is optional to Kong's datadog injector.
    let empty = inject_ctx("", "", "", None);
    assert_injects(Format::Datadog, &empty, &[], ("datadog", ""));
}

#[test]
fn datadog_invalid_values() {
    let trace = "x-datadog-trace-id header invalid; ignoring.";
    let parent = "x-datadog-parent-id header invalid; ignoring.";
    // Bad ids are logged and dropped; the sampling decision keeps the context.
    let got = warned(Format::Datadog, &dd(TRACE_16, SPAN_1_DEC, "1"), &[trace]);
    assert_eq!(got, ctx("", "", "", Some(true)));
    let got = warned(Format::Datadog, &dd("", SPAN_1_DEC, "1"), &[trace]);
    assert_eq!(got, ctx("", "", "", Some(true)));
    let got = warned(Format::Datadog, &dd(TRACE_8_DEC, SPAN_1, "1"), &[parent]);
    assert_eq!(got, ctx(TRACE_8, "", "", Some(true)));
    let got = warned(Format::Datadog, &dd(TRACE_8_DEC, "", "1"), &[parent]);
    assert_eq!(got, ctx(TRACE_8, "", "", Some(true)));
    // Nothing left: the last warning is the error, Kong moves on.
    rejected(Format::Datadog, &dd("x", "y", "-"), parent);
    rejected(Format::Datadog, &dd("-12", "-", "-"), trace);
    // A bad priority drops the whole context (Kong returns before reading the ids).
    for priority in ["3", "", "true", "+1"] {
        let headers = dd(TRACE_8_DEC, SPAN_1_DEC, priority);
        let warning = "x-datadog-sampling-priority header invalid; ignoring.";
        rejected(Format::Datadog, &headers, warning);
    }
}
